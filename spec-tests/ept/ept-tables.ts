/**
 * Building EPT paging structures in the harness's memory (SDM vol. 3C, 29.3.2;
 * numbering of the SDM of December 2024): a 4-level EPT whose tables are taken
 * from EPT_TABLES upwards, mapping guest-physical pages to host-physical ones
 * with the permissions and memory type a test asks for.
 */
import type { Cpu } from '../../src/cpu/cpu.js';
import { run } from '../../src/cpu/run.js';
import { vmEntry } from '../../src/vmx/entry.js';
import { MEMORY_SIZE, type GuestRun } from '../../src/vmx/testing.js';
import type { Vmcs } from '../../src/vmx/vmcs.js';
import { Field } from '../../vmcs/fields.js';

/** Where the EPT tables go: above the harness's guest page tables (src/vmx/testing.ts). */
export const EPT_TABLES = 0x600000;
/** EPT permission bits (table 29-6). */
export const EPT_R = 1, EPT_W = 2, EPT_X = 4, EPT_RWX = 7;
/** Memory type WB in bits 5:3 of an entry that maps a page. */
export const EPT_WB = 6 << 3;
export const EPT_LARGE = 1 << 7, EPT_ACCESSED = 1 << 8, EPT_DIRTY = 1 << 9;

export class EptTables {
  readonly pml4: number;
  private next: number;

  constructor(private readonly cpu: Cpu, base = EPT_TABLES) {
    this.pml4 = base;
    this.next = base + 0x1000;
    for (let k = 0; k < 1024; k++) cpu.memory.write32(base + 4 * k, 0);
  }

  /** The EPTP for these tables: WB, walk length 4, and bit 6 when `accessedDirty` (25.6.11). */
  eptp(accessedDirty = false): number {
    return this.pml4 | (3 << 3) | 6 | (accessedDirty ? 1 << 6 : 0);
  }

  /**
   * Maps the guest-physical page of `gpa` (4 KiB, or 2 MiB / 1 GiB with `level`
   * 2 / 3) to `hpa` with entry bits `bits` (permissions, memory type, ...).
   * Tables on the way get all permissions.
   */
  map(gpa: number, hpa: number, bits: number, level = 1): void {
    const at = this.entry(gpa, level, true);
    const m = this.cpu.memory;
    m.write32(at, ((hpa % 2 ** 32) & ~0xfff) | bits | (level > 1 ? EPT_LARGE : 0));
    m.write32(at + 4, Math.floor(hpa / 2 ** 32));
  }

  /** Maps guest-physical [0, bytes) to the same host-physical addresses, with 2-MiB pages, RWX and WB. */
  identity(bytes: number): void {
    for (let a = 0; a < bytes; a += 0x200000) this.map(a, a, EPT_RWX | EPT_WB, 2);
  }

  /**
   * The physical address of the entry at `level` (4 = PML4E ... 1 = PTE) on the
   * walk for `gpa`; with `create`, missing tables (or a large page in the way,
   * which is split into 4-KiB pages of the same rights) are made.
   */
  entry(gpa: number, level: number, create = false): number {
    const m = this.cpu.memory;
    let table = this.pml4;
    for (let l = 4; ; l--) {
      const shift = 3 + 9 * l, index = Math.floor(gpa / 2 ** shift) % 512;
      const at = table + 8 * index;
      if (l === level) return at;
      let e = m.read32(at);
      if ((e & 7) === 0 || (e & EPT_LARGE) !== 0) {
        if (!create) throw new Error(`no EPT table at level ${l} for ${gpa.toString(16)}`);
        const t = this.next;
        this.next += 0x1000;
        for (let k = 0; k < 1024; k++) m.write32(t + 4 * k, 0);
        if ((e & EPT_LARGE) !== 0) {
          // Split the large page into the next level's pages with its rights.
          const base = (e & ~0xfff) >>> 0, size = 2 ** (shift - 9);
          for (let k = 0; k < 512; k++) m.write32(t + 8 * k, (base + k * size) | (e & 0x7f) | (l - 1 > 1 ? EPT_LARGE : 0));
        }
        e = t | EPT_RWX;
        m.write32(at, e); m.write32(at + 4, 0);
      }
      table = (e & ~0xfff) >>> 0;
    }
  }
}

/** Turns on "enable EPT" (secondary bit 1, with "activate secondary controls") with `eptp`, and more secondary `bits`. */
export function enableEpt(v: Vmcs, eptp: number, bits = 0): void {
  const proc = Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, sec = Field.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
  v.set(proc, v.lo(proc) | (1 << 31));
  v.set(sec, v.lo(sec) | 2 | bits);
  v.set(Field.EPT_POINTER, eptp);
}

// ---- guest and host code for the EPT tests -------------------------------------------------------

export const VMCALL = [0x0f, 0x01, 0xc1];
/** mov rax, [abs32]: the address as a 32-bit displacement (SIB form, no base). */
export const loadRax = (a: number): number[] => [0x48, 0x8b, 0x04, 0x25, ...le32(a)];
/** mov [abs32], rax. */
export const storeRax = (a: number): number[] => [0x48, 0x89, 0x04, 0x25, ...le32(a)];
/** mov rax, imm64. */
export const movRax = (v: number): number[] => [0x48, 0xb8, ...le32(v % 2 ** 32), ...le32(Math.floor(v / 2 ** 32))];
/** INVEPT rcx, [rax] and INVVPID rcx, [rax] (66 0F 38 80 / 81 /r). */
export const INVEPT_RCX_RAX = [0x66, 0x0f, 0x38, 0x80, 0x08], INVVPID_RCX_RAX = [0x66, 0x0f, 0x38, 0x81, 0x08];

export function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

/** Where host code runs after a VM exit, and the INVEPT/INVVPID descriptor it uses (free pages of the harness). */
export const HOST_CODE = 0x402000, DESCRIPTOR = 0x403000;
export const CF = 1, ZF = 0x40;

/**
 * Runs `code` in VMX root operation after a VM exit (the host halted at
 * HOST_RIP), then PUSHFQ; POP RDX; HLT. Returns RFLAGS after `code`.
 */
export function runHost(r: GuestRun, code: number[]): number {
  const cpu = r.cpu, bytes = Uint8Array.from([...code, 0x9c, 0x5a, 0xf4]);
  cpu.memory.load(HOST_CODE, bytes);
  cpu.codeWritten(HOST_CODE, bytes.length); // a decoded block of earlier host code there goes
  cpu.ripLo = HOST_CODE; cpu.ripHi = 0; cpu.halted = false;
  run(cpu, 100);
  return cpu.gpr[2 * 2]!;
}

/** The host executes INVEPT of `type` with descriptor (EPTP, 0) (31.3 INVEPT); returns RFLAGS after it. */
export function inveptHost(r: GuestRun, type: number, eptpLo: number, eptpHi = 0): number {
  const m = r.cpu.memory;
  m.write32(DESCRIPTOR, eptpLo); m.write32(DESCRIPTOR + 4, eptpHi);
  m.write32(DESCRIPTOR + 8, 0); m.write32(DESCRIPTOR + 12, 0);
  return runHost(r, [...movRax(DESCRIPTOR), 0xb9, ...le32(type), ...INVEPT_RCX_RAX]);
}

/** The host executes INVVPID of `type` for `vpid` (and linear address 0) (31.3 INVVPID); returns RFLAGS. */
export function invvpidHost(r: GuestRun, type: number, vpid: number): number {
  const m = r.cpu.memory;
  m.write32(DESCRIPTOR, vpid); m.write32(DESCRIPTOR + 4, 0);
  m.write32(DESCRIPTOR + 8, 0); m.write32(DESCRIPTOR + 12, 0);
  return runHost(r, [...movRax(DESCRIPTOR), 0xb9, ...le32(type), ...INVVPID_RCX_RAX]);
}

/** VMRESUME (as the instruction's VM entry, 27) at guest RIP `rip` (default: the saved one), then runs the guest. */
export function resume(r: GuestRun, rip?: number, budget = 100): void {
  if (rip !== undefined) r.vmcs.set(Field.GUEST_RIP, rip);
  vmEntry(r.vmx, r.cpu, false);
  run(r.cpu, budget);
}

/** The exit information of the last VM exit, read from the VMCS (28.2.1). */
export function exitOf(r: GuestRun): { reason: number; qualification: number; gpa: number; linear: number; rip: number } {
  const v = r.vmcs;
  return {
    reason: v.lo(Field.EXIT_REASON) >>> 0, qualification: v.num(Field.EXIT_QUALIFICATION),
    gpa: v.num(Field.GUEST_PHYSICAL_ADDRESS), linear: v.num(Field.GUEST_LINEAR_ADDRESS), rip: v.num(Field.GUEST_RIP),
  };
}

/**
 * A runInGuest `configure` that maps the harness's 16 MiB through an identity
 * EPT (2-MiB pages, RWX, WB), lets `setup` change it and the VMCS, and turns on
 * "enable EPT" with the tables' EPTP (bit 6 with `accessedDirty`) and secondary `bits`.
 */
export function eptGuest(
  setup: (t: EptTables, v: Vmcs, cpu: Cpu) => void = () => {}, o: { accessedDirty?: boolean; secondary?: number } = {},
): (v: Vmcs, cpu: Cpu) => void {
  return (v, cpu) => {
    const t = new EptTables(cpu);
    t.identity(MEMORY_SIZE);
    enableEpt(v, t.eptp(o.accessedDirty), o.secondary);
    setup(t, v, cpu);
  };
}
