/**
 * Shadow paging (config `ept: false`) on small guests, each run twice: on the
 * bare processor and under the hypervisor without EPT. The guest cannot tell:
 * the same values read, the same #PF error codes and CR2, the same accessed and
 * dirty flags in its paging structures, the same instruction count — while the
 * hypervisor's counters show the hidden faults, protected pages, cached roots
 * and emulated writes that made it so.
 *
 * Guests are flat images at 100000H started by the flat loader in 32-bit
 * protected mode (paging off) or 64-bit mode, their machine code written out
 * below; their paging structures are built by the test in guest memory with the
 * spec tests' table builders before the run.
 */
import { describe, expect, it } from 'vitest';
import {
  CR0_PG, CR0_WP, CR4_PAE, CR4_PGE, CR4_PSE, GIB, KIB, MIB2, PTE_D, PTE_P, PTE_RW, PTE_URW, PTE_US, PTE_XD,
  Tables32, Tables64, TablesPae, write64,
} from '../../../spec-tests/paging/tables.js';
import { PrimaryProcessorBasedControls as Proc } from '../../../vmcs/controls.js';
import { ExitReason } from '../../../vmcs/exit-reasons.js';
import { Field } from '../../../vmcs/fields.js';
import { PagingMode } from '../../cpu/paging.js';
import type { Cpu } from '../../cpu/cpu.js';
import { CS, EFER_NXE, RAX, RCX, RDX } from '../../cpu/regs.js';
import { loadImage } from '../../platform/loaders/index.js';
import { PcMachine } from '../../platform/machine.js';
import { vmConfig, type VmConfigInput } from '../config.js';
import { createVm, VmConfigError, type Vm } from '../vm.js';

const MEMORY = 32 * 1024 * 1024, BUDGET = 1_000_000;
const CODE = 0x100000, IDT = 0x110000, IDTR = 0x110800, HANDLER = 0x111000, RES = 0x120000, DESC = 0x121000, STACK = 0x130000;
/** Guest data pages (physical), each with a recognizable value. */
const PAGE_A = 0x300000, PAGE_B = 0x301000, PAGE_C = 0x302000;

// ---- machine code -------------------------------------------------------------------

const u32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const u64 = (v: bigint): number[] => Array.from({ length: 8 }, (_, k) => Number((BigInt.asUintN(64, v) >> BigInt(8 * k)) & 0xffn));

/** 32-bit protected-mode instructions (flat segments). */
const A32 = {
  movEax: (v: number) => [0xb8, ...u32(v)], movEcx: (v: number) => [0xb9, ...u32(v)], movEdx: (v: number) => [0xba, ...u32(v)],
  movEsp: (v: number) => [0xbc, ...u32(v)], movEdi: (v: number) => [0xbf, ...u32(v)],
  /** mov crN, eax / mov eax, crN (0F 22 / 0F 20, ModRM 11 n 000). */
  toCr: (n: number) => [0x0f, 0x22, 0xc0 | (n << 3)], fromCr: (n: number) => [0x0f, 0x20, 0xc0 | (n << 3)],
  orEax: (v: number) => [0x0d, ...u32(v)],
  /** mov dword [addr], imm32 and cmp dword [addr], imm32: 10 bytes each (the #PF handler skips 10). */
  store: (addr: number, v: number) => [0xc7, 0x05, ...u32(addr), ...u32(v)],
  probe: (addr: number) => [0x81, 0x3d, ...u32(addr), ...u32(0)],
  load: (addr: number) => [0xa1, ...u32(addr)], save: (addr: number) => [0xa3, ...u32(addr)],
  addEdx: (addr: number) => [0x03, 0x15, ...u32(addr)], saveEdx: (addr: number) => [0x89, 0x15, ...u32(addr)],
  invlpg: (addr: number) => [0x0f, 0x01, 0x3d, ...u32(addr)], lidt: (addr: number) => [0x0f, 0x01, 0x1d, ...u32(addr)],
  callEax: [0xff, 0xd0], wrmsr: [0x0f, 0x30], rdmsr: [0x0f, 0x32], out80: [0xe6, 0x80],
  /** Debug exit: mov al, 0; out 0xf4, al (status 1); then cli; hlt. */
  exit: [0xb0, 0x00, 0xe6, 0xf4, 0xfa, 0xf4],
};

/** 64-bit instructions; absolute addresses through a SIB byte (no RIP-relative). */
const A64 = {
  movRax: (v: bigint | number) => [0x48, 0xb8, ...u64(BigInt(v))], movRbx: (v: bigint | number) => [0x48, 0xbb, ...u64(BigInt(v))],
  movRsp: (v: number) => [0x48, 0xbc, ...u64(BigInt(v))], movRcx: (v: bigint | number) => [0x48, 0xb9, ...u64(BigInt(v))],
  toCr3: [0x0f, 0x22, 0xd8], fromCr3: [0x0f, 0x20, 0xd8], movEcx: (v: number) => [0xb9, ...u32(v)],
  /** mov dword [abs32], imm32; mov eax, [abs32]; mov [abs32], eax; mov [abs32], edx. */
  store: (addr: number, v: number) => [0xc7, 0x04, 0x25, ...u32(addr), ...u32(v)],
  save: (addr: number) => [0x89, 0x04, 0x25, ...u32(addr)], saveEdx: (addr: number) => [0x89, 0x14, 0x25, ...u32(addr)],
  /** mov eax, [rbx]; mov [rbx], rax; invlpg [rbx]; invpcid rax, [rcx]. */
  loadRbx: [0x8b, 0x03], storeRbxRax: [0x48, 0x89, 0x03], invlpgRbx: [0x0f, 0x01, 0x3b], invpcid: [0x66, 0x0f, 0x38, 0x82, 0x01],
  exit: [0xb0, 0x00, 0xe6, 0xf4, 0xfa, 0xf4],
};

const code = (...parts: (number[] | readonly number[])[]): Uint8Array => Uint8Array.from(parts.flat());

/**
 * A #PF handler (32-bit interrupt gate at vector 14): records CR2 and the error
 * code at [EDI] and advances EDI; then either skips the 10-byte faulting
 * instruction or ends the run.
 */
function pageFaultHandler(skip: boolean): number[] {
  const record = [0x0f, 0x20, 0xd0 /* mov eax, cr2 */, 0x89, 0x07 /* mov [edi], eax */, 0x58 /* pop eax */,
    0x89, 0x47, 0x04 /* mov [edi+4], eax */, 0x83, 0xc7, 0x08 /* add edi, 8 */];
  return skip ? [...record, 0x83, 0x04, 0x24, 0x0a /* add dword [esp], 10 */, 0xcf /* iretd */] : [...record, ...A32.exit];
}

/** Writes the handler and an IDT whose vector 14 is a 32-bit interrupt gate to it (SDM vol. 3A, 6.11). */
function installHandler(cpu: Cpu, skip: boolean): void {
  cpu.memory.load(HANDLER, Uint8Array.from(pageFaultHandler(skip)));
  const cs = cpu.segSel[CS]!;
  cpu.memory.write32(IDT + 14 * 8, (cs << 16) | (HANDLER & 0xffff));
  cpu.memory.write32(IDT + 14 * 8 + 4, (HANDLER & 0xffff0000) | 0x8e00);
  cpu.memory.write8(IDTR, 0xff); cpu.memory.write8(IDTR + 1, 0x07);
  cpu.memory.write32(IDTR + 2, IDT);
}

/** The start of a 32-bit guest: stack, record pointer, IDT. */
const PROLOGUE32 = [...A32.movEsp(STACK), ...A32.movEdi(RES), ...A32.lidt(IDTR)];

/** Turns paging on: CR4 = `cr4`, CR3 = `cr3`, CR0.PG (and WP when asked). */
function pagingOn32(cr3: number, cr4: number, wp = false): number[] {
  return [...A32.movEax(cr4), ...A32.toCr(4), ...A32.movEax(cr3), ...A32.toCr(3), ...A32.fromCr(0),
    ...A32.orEax(CR0_PG | (wp ? CR0_WP : 0)), ...A32.toCr(0)];
}

// ---- running a guest twice -------------------------------------------------------------

interface Observed {
  stop: string;
  instructions: number;
  registers: bigint[];
  cr2: bigint;
  /** The result area, the paging structures and the data pages. */
  results: number[];
  tables: string;
  pages: string;
}

function observe(cpu: Cpu, stop: { kind: string; status?: number }, reg: (n: number) => bigint): Observed {
  const m = cpu.memory;
  return {
    stop: stop.kind === 'exit' ? `exit ${stop.status}` : stop.kind, instructions: cpu.insnCount,
    registers: [RAX, RCX, RDX].map(reg), cr2: (BigInt(cpu.cr2Hi >>> 0) << 32n) | BigInt(cpu.cr2Lo >>> 0),
    results: Array.from({ length: 16 }, (_, k) => m.read32(RES + 4 * k) >>> 0),
    tables: Buffer.from(m.dump(0x800000, 0x48000)).toString('base64'),
    pages: Buffer.from(m.dump(PAGE_A, 3 * KIB)).toString('base64'),
  };
}

type Setup = (cpu: Cpu) => void;

function bare(image: Uint8Array, mode: '32' | '64', setup: Setup): Observed {
  const machine = new PcMachine({ memorySize: MEMORY });
  loadImage(machine.cpu, image, { format: 'flat', mode, load: CODE, memorySize: MEMORY });
  setup(machine.cpu);
  const stop = machine.run(BUDGET);
  return observe(machine.cpu, stop, (n) => machine.cpu.reg64(n));
}

function shadowed(image: Uint8Array, mode: '32' | '64', setup: Setup, config: VmConfigInput = {}): { vm: Vm; seen: Observed } {
  const vm = createVm(vmConfig({ memory: MEMORY, ept: false, unrestrictedGuest: false, ...config }));
  vm.load(image, { format: 'flat', mode, load: CODE });
  setup(vm.cpu);
  const stop = vm.run(BUDGET);
  return { vm, seen: observe(vm.cpu, stop, (n) => vm.guest.reg(n)) };
}

/** Runs the guest bare and under shadow paging; they must agree. Returns both and the VM. */
function both(image: Uint8Array, mode: '32' | '64', setup: Setup, config: VmConfigInput = {}): { vm: Vm; seen: Observed } {
  const want = bare(image, mode, setup);
  const got = shadowed(image, mode, setup, config);
  expect(got.seen).toEqual(want);
  return got;
}

/** Guest-physical page frames hold their own address plus a tag, so that a read tells which page it reached. */
function fillPages(cpu: Cpu): void {
  for (const pa of [PAGE_A, PAGE_B, PAGE_C]) for (let k = 0; k < KIB; k += 4) cpu.memory.write32(pa + k, (pa + k) ^ 0x5a5a0000);
}

const tag = (pa: number): number => ((pa ^ 0x5a5a0000) >>> 0);

// ---- the paging modes -------------------------------------------------------------------

describe('shadow paging builds what the guest\'s tables give, in every paging mode', () => {
  it('SDM 4.3 (32-bit paging, 4-KiB and 4-MiB pages with CR4.PSE) and 4.8 (A/D): values, flags, CR3 and CR0 as on the bare processor', () => {
    let pte = 0, pde4m = 0;
    const setup: Setup = (cpu) => {
      fillPages(cpu);
      const t = new Tables32(cpu);
      t.mapLarge(0, 0, Number(PTE_P | PTE_RW));                     // 0-4 MiB: code, IDT, results, stack
      pte = t.map(0x4000_0000, PAGE_A);                              // a 4-KiB page
      t.map(0x4000_1000, PAGE_B, Number(PTE_P | PTE_US));            // read-only
      pde4m = t.mapLarge(0x8000_0000, 0x400000);                     // a 4-MiB page at 4 MiB
      cpu.memory.write32(0x405678, 0xfeedf00d);
    };
    const image = code(PROLOGUE32, pagingOn32(0x800000, CR4_PSE),
      A32.store(0x4000_0000, 0x11111111), A32.load(0x4000_0008), A32.save(RES),
      A32.load(0x8000_5678), A32.save(RES + 4), A32.store(0x8000_1000, 0x22222222),
      A32.load(0x4000_1010), A32.save(RES + 8), A32.fromCr(3), A32.save(RES + 12), A32.fromCr(0), A32.save(RES + 16),
      A32.exit);
    const { vm, seen } = both(image, '32', setup);
    expect(seen.results.slice(0, 3)).toEqual([tag(PAGE_A + 8), 0xfeedf00d, tag(PAGE_B + 0x10)]);
    expect(seen.results[3]).toBe(0x800000);
    expect(vm.cpu.memory.read32(pte) & 0x60).toBe(0x60);   // accessed and dirty
    expect(vm.cpu.memory.read32(pde4m) & 0x60).toBe(0x60);
    const c = vm.shadow!.counters;
    expect(c.hiddenFaults).toBeGreaterThanOrEqual(4);
    expect(c.trueFaults).toBe(0);
    expect(vm.vmx.exitCounts[ExitReason.EXCEPTION_OR_NMI]).toBeGreaterThanOrEqual(4);
    // 4-KiB shadow leaves for the 4-MiB page, with the guest's rights.
    expect(vm.shadow!.leafEntry(0x8000_1000, 0) >>> 12).toBe(0x401);
  });

  it('SDM 4.4 (PAE paging: PDPTE registers, 2-MiB pages) and EFER.NXE through the intercepted WRMSR/RDMSR', () => {
    const setup: Setup = (cpu) => {
      fillPages(cpu);
      const t = new TablesPae(cpu);
      t.mapLarge(0, 0, PTE_P | PTE_RW);
      t.mapLarge(0x4000_0000, 0x400000);
      t.map(0x4020_3000, PAGE_C);
      cpu.memory.write32(0x412340, 0x0a0b0c0d);
    };
    const image = code(PROLOGUE32, A32.movEcx(0xc0000080), A32.rdmsr, A32.orEax(EFER_NXE), A32.wrmsr,
      pagingOn32(0x800000, CR4_PAE), A32.load(0x4001_2340), A32.save(RES), A32.store(0x4020_3004, 0x33333333),
      A32.load(0x4020_3004), A32.save(RES + 4), A32.rdmsr, A32.save(RES + 8), A32.exit);
    const { vm, seen } = both(image, '32', setup);
    expect(seen.results.slice(0, 2)).toEqual([0x0a0b0c0d, 0x33333333]);
    expect(seen.results[2]! & EFER_NXE).toBe(EFER_NXE);
    expect(vm.shadow!.efer & EFER_NXE).toBe(EFER_NXE);
    expect(vm.vmx.exitCounts[ExitReason.WRMSR]).toBe(1);
  });

  it('SDM 4.5 (4-level paging: 4-KiB, 2-MiB and 1-GiB pages, an address in the upper half)', () => {
    const setup: Setup = (cpu) => {
      fillPages(cpu);
      const t = new Tables64(cpu);
      t.map(0n, 0, PTE_P | PTE_RW, MIB2);
      t.map(0x7f_0000_0000n, PAGE_A);
      t.map(0x40_0000_0000n, 0, PTE_URW, GIB);
      t.map(0xffff_8000_0020_0000n, 0x400000, PTE_URW, MIB2);
      cpu.memory.write32(0x4abcd0, 0x44444444);
    };
    const image = code(A64.movRsp(STACK), A64.movRax(0x800000), A64.toCr3,
      A64.movRbx(0x7f_0000_0000n), A64.loadRbx, A64.save(RES),
      A64.movRbx(0x40_0030_1004n), A64.loadRbx, A64.save(RES + 4),
      A64.movRbx(0xffff_8000_002a_bcd0n), A64.loadRbx, A64.save(RES + 8), A64.store(RES + 12, 0x55), A64.exit);
    const { vm, seen } = both(image, '64', setup);
    expect(seen.results.slice(0, 3)).toEqual([tag(PAGE_A), tag(PAGE_B + 4), 0x44444444]);
    expect(vm.shadow!.counters.hiddenFaults).toBeGreaterThanOrEqual(4);
  });

  it('SDM vol. 3C A.7 (CR0.PG fixed to 1 without unrestricted guest): guest paging off (the loader\'s 32-bit protected mode) runs on an identity shadow, built lazily', () => {
    const image = code(A32.load(PAGE_A + 4), A32.save(RES), A32.store(PAGE_B, 0x66), A32.exit);
    const { vm, seen } = both(image, '32', fillPages);
    expect(seen.results[0]).toBe(tag(PAGE_A + 4));
    expect(vm.shadow!.mode()).toBe(0);
    expect(vm.shadow!.counters.hiddenFaults).toBeGreaterThanOrEqual(2);
  });
});

// ---- faults ---------------------------------------------------------------------------

describe('hidden and true page faults', () => {
  it('SDM 4.7 (#PF error code, CR2) and 4.6.1 (R/W with CR0.WP): true faults reach the guest\'s handler as on the bare processor', () => {
    const setup: Setup = (cpu) => {
      installHandler(cpu, true);
      fillPages(cpu);
      const t = new Tables32(cpu);
      t.mapLarge(0, 0, Number(PTE_P | PTE_RW));
      t.map(0x4000_0000, PAGE_A, Number(PTE_P | PTE_RW));
      t.map(0x4000_1000, PAGE_B, Number(PTE_P));                    // read-only
      t.mapLarge(0x8000_0000, 0x400000, Number(PTE_URW) | (1 << 21)); // reserved bit 21 (PSE-36, MAXPHYADDR 39)
    };
    const image = code(PROLOGUE32, pagingOn32(0x800000, CR4_PSE, true),
      A32.store(0x4000_2000, 1),      // not present, write: error code 2
      A32.store(0x4000_1000, 2),      // read-only with CR0.WP = 1: error code 3
      A32.probe(0x8000_0000),         // reserved bit: error code 9
      A32.store(0x4000_0000, 3),      // allowed: a hidden fault only
      A32.exit);
    const { vm, seen } = both(image, '32', setup);
    expect(seen.results.slice(0, 6)).toEqual([0x4000_2000, 2, 0x4000_1000, 3, 0x8000_0000, 9]);
    expect(seen.cr2).toBe(0x8000_0000n);
    expect(vm.shadow!.counters.trueFaults).toBe(3);
  });

  it('SDM 6.15 (table 6-5): a true #PF the guest cannot deliver (no IDT) ends in a triple fault, CR2 and flags as on the bare processor', () => {
    const setup: Setup = (cpu) => {
      const t = new Tables32(cpu);
      t.mapLarge(0, 0, Number(PTE_P | PTE_RW));
      t.map(0x4000_0000, PAGE_A, Number(PTE_P));
    };
    const image = code(A32.movEsp(STACK), pagingOn32(0x800000, CR4_PSE, true), A32.load(0x4000_0000), A32.store(0x4000_0000, 1), A32.exit);
    const { vm, seen } = both(image, '32', setup);
    expect(seen.stop).toBe('shutdown');
    expect(seen.cr2).toBe(0x4000_0000n);
    expect(vm.shadow!.counters.trueFaults).toBe(1);
  });

  it('SDM 4.6.1 (XD with EFER.NXE, PAE paging): a fetch from an XD page is a true #PF with I/D set', () => {
    const setup: Setup = (cpu) => {
      installHandler(cpu, false);
      const t = new TablesPae(cpu);
      t.mapLarge(0, 0, PTE_P | PTE_RW);
      t.map(0x4000_0000, PAGE_A, PTE_P | PTE_RW | PTE_XD);
    };
    const image = code(PROLOGUE32, A32.movEcx(0xc0000080), A32.rdmsr, A32.orEax(EFER_NXE), A32.wrmsr,
      pagingOn32(0x800000, CR4_PAE), A32.movEax(0x4000_0010), A32.callEax);
    const { seen } = both(image, '32', setup);
    expect(seen.results.slice(0, 2)).toEqual([0x4000_0010, 0x11]);
  });

  it('SDM 4.6.1 (CR0.WP = 0): a supervisor write to a read-only page succeeds, through a supervisor-only writable shadow leaf', () => {
    let pte = 0;
    const setup: Setup = (cpu) => {
      const t = new Tables32(cpu);
      t.mapLarge(0, 0, Number(PTE_P | PTE_RW));
      pte = t.map(0x4000_0000, PAGE_A, Number(PTE_P | PTE_US));       // user, read-only
    };
    const image = code(PROLOGUE32, pagingOn32(0x800000, CR4_PSE), A32.store(0x4000_0000, 0x77), A32.load(0x4000_0000),
      A32.save(RES), A32.exit);
    const { vm, seen } = both(image, '32', setup);
    expect(seen.results[0]).toBe(0x77);
    expect(vm.cpu.memory.read32(pte) & 0x62).toBe(0x60);                // the guest's entry: A, D, still read-only
    const leaf = vm.shadow!.leafEntry(0x4000_0000, 0);
    expect([leaf & 2, leaf & 4]).toEqual([2, 0]);                       // R/W = 1, U/S = 0
  });

  it('SDM 4.8 (dirty flag): a read builds a read-only leaf; the first write traps, sets D in the guest\'s PTE and makes the leaf writable', () => {
    let pte = 0;
    const setup: Setup = (cpu) => {
      const t = new Tables32(cpu);
      t.mapLarge(0, 0, Number(PTE_P | PTE_RW));
      pte = t.map(0x4000_0000, PAGE_A, Number(PTE_URW));
    };
    const image = code(PROLOGUE32, pagingOn32(0x800000, CR4_PSE), A32.load(0x4000_0000), A32.out80,
      A32.store(0x4000_0000, 0x88), A32.out80, A32.exit);
    const vm = createVm(vmConfig({ memory: MEMORY, ept: false, unrestrictedGuest: false }));
    vm.load(image, { format: 'flat', mode: '32', load: CODE });
    setup(vm.cpu);
    const steps: { guestPte: number; leaf: number; hidden: number }[] = [];
    const io = vm.handlers.get(ExitReason.IO_INSTRUCTION)!;
    vm.handlers.set(ExitReason.IO_INSTRUCTION, (e, v) => {
      if ((Number(e.qualification) >>> 16) === 0x80) {
        steps.push({ guestPte: v.cpu.memory.read32(pte), leaf: v.shadow!.leafEntry(0x4000_0000, 0), hidden: v.shadow!.counters.hiddenFaults });
      }
      return io(e, v);
    });
    expect(vm.run(BUDGET)).toEqual({ kind: 'exit', status: 1 });
    expect(steps).toHaveLength(2);
    expect(steps[0]!.guestPte & 0x60).toBe(0x20);       // accessed, not dirty
    expect(steps[0]!.leaf & 3).toBe(1);                   // present, read-only
    expect(steps[1]!.guestPte & 0x60).toBe(0x60);       // dirty now
    expect(steps[1]!.leaf & 3).toBe(3);                   // writable
    expect(steps[1]!.hidden - steps[0]!.hidden).toBe(1);  // the write's one hidden fault
  });
});

// ---- coherence ------------------------------------------------------------------------

describe('coherence: the guest changes its paging structures', () => {
  /**
   * 4-level paging: linear X → page A through a page table at a page of its own;
   * the guest reads X, points the PTE at page B (a write to a write-protected
   * page) and reads X again (the stale TLB entry), then invalidates and reads.
   */
  function staleGuest(invalidate: number[], global = false): { image: Uint8Array; setup: Setup } {
    const X = 0x7f_0000_0000n;
    let pteAt = 0;
    const setup: Setup = (cpu) => {
      fillPages(cpu);
      const t = new Tables64(cpu);
      t.map(0n, 0, PTE_P | PTE_RW, MIB2);
      t.map(0x80_0000_0000n, 0, PTE_P | PTE_RW | PTE_D, GIB);           // the tables, through a 1-GiB page (dirty)
      pteAt = t.map(X, PAGE_A, PTE_P | PTE_RW | (global ? 0x100n : 0n));
      cpu.memory.write32(DESC, 0); cpu.memory.write32(DESC + 8, 0); cpu.memory.write32(DESC + 12, 0x7f);
    };
    // The PTE through the 1-GiB map of the tables (80_0000_0000H + physical - 0).
    const pteLinear = (): number => pteAt;
    const image = (): Uint8Array => code(A64.movRsp(STACK), A64.movRax(global ? CR4_PAE | CR4_PGE : CR4_PAE),
      [0x0f, 0x22, 0xe0] /* mov cr4, rax */, A64.movRax(0x800000), A64.toCr3,
      A64.movRbx(X), A64.loadRbx, A64.save(RES),
      // The PTE is read first: its page, a paging structure now, must be mapped read-only all the same.
      A64.movRcx(0x80_0000_0000n + BigInt(pteLinear())), [0x48, 0x8b, 0x01] /* mov rax, [rcx] */,
      A64.movRax(BigInt(PAGE_B | 3 | (global ? 0x100 : 0))), [0x48, 0x89, 0x01] /* mov [rcx], rax */,
      A64.loadRbx, A64.save(RES + 4),
      invalidate, A64.movRbx(X), A64.loadRbx, A64.save(RES + 8), A64.exit);
    // The PTE's address is known only once the tables are built: build them once to learn it.
    setup(new PcMachine({ memorySize: MEMORY }).cpu);
    return { image: image(), setup };
  }

  it('SDM 4.10.4 (invalidation): after a PTE write the old translation may stay until INVLPG, on the bare processor and under shadow paging alike', () => {
    const { image, setup } = staleGuest([...A64.movRbx(0x7f_0000_0000n), ...A64.invlpgRbx]);
    const { vm, seen } = both(image, '64', setup);
    expect(seen.results.slice(0, 3)).toEqual([tag(PAGE_A), tag(PAGE_A), tag(PAGE_B)]);
    const c = vm.shadow!.counters;
    expect(c.pteWrites).toBe(1);
    expect(c.invalidations).toBe(1);
  });

  it('SDM 4.10.4.1: MOV to CR3 invalidates the non-global translation; a global one (CR4.PGE, G) stays, as on the bare processor', () => {
    const reload = [...A64.fromCr3, ...A64.toCr3];
    const plain = staleGuest(reload);
    expect(both(plain.image, '64', plain.setup).seen.results.slice(0, 3)).toEqual([tag(PAGE_A), tag(PAGE_A), tag(PAGE_B)]);
    const global = staleGuest(reload, true);
    const { vm, seen } = both(global.image, '64', global.setup);
    expect(seen.results.slice(0, 3)).toEqual([tag(PAGE_A), tag(PAGE_A), tag(PAGE_A)]);
    expect(vm.shadow!.counters.cr3Switches).toBe(2);
    expect(vm.shadow!.counters.rootHits).toBeGreaterThanOrEqual(1);
  });

  it('SDM vol. 2 INVPCID (type 0, individual address), which INVLPG exiting makes exit: the new translation after it', () => {
    const { image, setup } = staleGuest([...A64.movRax(0), ...A64.movRcx(DESC), ...A64.invpcid]);
    const { vm, seen } = both(image, '64', setup);
    expect(seen.results.slice(0, 3)).toEqual([tag(PAGE_A), tag(PAGE_A), tag(PAGE_B)]);
    expect(vm.vmx.exitCounts[ExitReason.INVPCID]).toBe(1);
  });

  it('SDM 29.4.3.1: without VPID every VM entry flushes the guest\'s translations: the new one is used after INVLPG all the same', () => {
    const { image, setup } = staleGuest([...A64.movRbx(0x7f_0000_0000n), ...A64.invlpgRbx]);
    const want = bare(image, '64', setup);
    const { seen } = shadowed(image, '64', setup, { vpid: false });
    expect(seen.results[2]).toBe(want.results[2]);
    expect(seen.instructions).toBe(want.instructions);
  });

  it('SDM 4.10.4: a write to a paging structure on the walk of its own address (a recursive PML4 entry) is emulated, and takes effect as on the bare processor', () => {
    const setup: Setup = (cpu) => {
      fillPages(cpu);
      const t = new Tables64(cpu);
      t.map(0n, 0, PTE_P | PTE_RW, MIB2);
      t.map(0x7f_0000_0000n, PAGE_A);
      t.map(0x1ff_0000_0000n, PAGE_B);                                  // PML4[3]: another PDPT, to page B
      write64(cpu, t.root + 8 * 511, BigInt(t.root) | PTE_P | PTE_RW);  // PML4[511] → the PML4 itself
    };
    // PML4[2] := PML4[0], read and written through the recursive entry (FFFF_FFFF_FFFF_F000H + 8 × index):
    // then 17F_0000_0000H maps page A as 7F_0000_0000H does. Then PML4[2] := PML4[3], and after INVLPG
    // 17F_0000_0000H maps page B: the shadow entries derived from PML4[2] went with the emulated write.
    const copy = (from: number): number[] => [...A64.movRbx(0xffff_ffff_ffff_f000n + BigInt(8 * from)),
      0x48, 0x8b, 0x03 /* mov rax, [rbx] */, ...A64.movRbx(0xffff_ffff_ffff_f010n), ...A64.storeRbxRax];
    const image = code(A64.movRsp(STACK), A64.movRax(0x800000), A64.toCr3, A64.movRbx(0x7f_0000_0000n), A64.loadRbx,
      copy(0), A64.movRbx(0x17f_0000_0000n), A64.loadRbx, A64.save(RES),
      copy(3), A64.movRbx(0x17f_0000_0000n), A64.invlpgRbx, A64.loadRbx, A64.save(RES + 4), A64.exit);
    const { vm, seen } = both(image, '64', setup);
    expect(seen.results.slice(0, 2)).toEqual([tag(PAGE_A), tag(PAGE_B)]);
    expect(vm.shadow!.counters.emulatedWrites).toBe(2);
  });

  it('SDM 4.10.4: a page that becomes a paging structure while the guest may still hold a writable translation of it (dropped from the shadow) is protected all the same', () => {
    const X = 0x7f_0000_0000n, Y = 0x7f_0020_0000n, W = 0x80_0000_0000n;
    let other = 0, pdeY = 0;
    const setup: Setup = (cpu) => {
      fillPages(cpu);
      const t = new Tables64(cpu);
      t.map(0n, 0, PTE_P | PTE_RW, MIB2);
      t.map(W, 0, PTE_P | PTE_RW | PTE_D, GIB);                         // a window on the tables
      t.map(X, PAGE_C, PTE_URW | PTE_D);                                 // X → page C, writable, dirty
      other = t.map(X + 0x1000n, PAGE_A);                                // the PTE next to X's
      t.map(Y, PAGE_A);
      pdeY = t.entry(Y, 2);
    };
    setup(new PcMachine({ memorySize: MEMORY }).cpu);
    const store = (at: bigint, v: number): number[] => [...A64.movRcx(at), ...A64.movRax(v), 0x48, 0x89, 0x01 /* mov [rcx], rax */];
    const image = code(A64.movRsp(STACK), A64.movRax(0x800000), A64.toCr3,
      A64.movRbx(X), [0xc7, 0x03, ...u32(0x1234)],                   // a writable translation of page C
      store(W + BigInt(other), PAGE_B | 3),                              // its page table changes: X's shadow goes, not the TLB's
      store(X, PAGE_B | 3),                                              // page C[0] := page B, through X
      store(W + BigInt(pdeY), PAGE_C | 7),                               // page C becomes Y's page table
      A64.movRbx(Y), A64.loadRbx, A64.save(RES),
      store(X, PAGE_A | 3),                                              // page C[0] := page A, through X again
      A64.movRbx(Y), A64.invlpgRbx, A64.loadRbx, A64.save(RES + 4), A64.exit);
    const { vm, seen } = both(image, '64', setup);
    expect(seen.results.slice(0, 2)).toEqual([tag(PAGE_B), tag(PAGE_A)]);
    expect(vm.shadow!.counters.pteWrites).toBeGreaterThanOrEqual(3);
  });

  it('SDM 4.3: a 32-bit guest that adds a PDE to its page directory (on every walk) has the write emulated', () => {
    const setup: Setup = (cpu) => {
      const t = new Tables32(cpu);
      t.mapLarge(0, 0, Number(PTE_P | PTE_RW));
      t.mapLarge(0x80_0000, 0x80_0000, Number(PTE_P | PTE_RW));      // the page directory itself, at 8 MiB
      cpu.memory.write32(0x40_1234, 0x99999999);
    };
    const image = code(PROLOGUE32, pagingOn32(0x800000, CR4_PSE), A32.store(0x800000 + 4 * 0x100, 0x400000 | 0x87),
      A32.load(0x4000_1234), A32.save(RES), A32.exit);
    const { vm, seen } = both(image, '32', setup);
    expect(seen.results[0]).toBe(0x99999999);
    expect(vm.shadow!.counters.emulatedWrites).toBe(1);
  });

  it('SDM 4.10.4.1 (MOV to CR3): it switches between cached shadow roots, which write protection keeps coherent', () => {
    const setup: Setup = (cpu) => {
      fillPages(cpu);
      for (const [root, page] of [[0x800000, PAGE_A], [0x840000, PAGE_B]] as const) {
        const t = new Tables32(cpu, root);
        t.mapLarge(0, 0, Number(PTE_P | PTE_RW));
        t.map(0x4000_0000, page);
      }
    };
    const switchRead = (root: number): number[] => [...A32.movEax(root), ...A32.toCr(3), ...A32.addEdx(0x4000_0000)];
    const image = code(PROLOGUE32, A32.movEdx(0), pagingOn32(0x800000, CR4_PSE),
      switchRead(0x840000), switchRead(0x800000), switchRead(0x840000), switchRead(0x800000), A32.saveEdx(RES), A32.exit);
    const { vm, seen } = both(image, '32', setup);
    expect(seen.results[0]).toBe((2 * tag(PAGE_A) + 2 * tag(PAGE_B)) >>> 0);
    expect(vm.shadow!.counters.cr3Switches).toBe(5);
    expect(vm.shadow!.counters.rootHits).toBeGreaterThanOrEqual(3);
  });
});

// ---- MMIO, the pool, the configuration ----------------------------------------------------

describe('MMIO, the shadow-page pool and what cannot run without EPT', () => {
  it('the local APIC mapped by the guest\'s tables: #PF exits whose walk leads outside RAM are emulated as EPT violations are', () => {
    const setup: Setup = (cpu) => {
      const t = new Tables32(cpu);
      t.mapLarge(0, 0, Number(PTE_P | PTE_RW));
      t.map(0x5000_0000, 0xfee0_0000, Number(PTE_P | PTE_RW));
    };
    const image = code(PROLOGUE32, pagingOn32(0x800000, CR4_PSE), A32.load(0x5000_0030), A32.save(RES),
      A32.store(0x5000_0080, 0x20), A32.load(0x5000_0080), A32.save(RES + 4), A32.exit);
    const { vm, seen } = both(image, '32', setup);
    expect(seen.results[1]).toBe(0x20);
    expect(vm.shadow!.counters.mmioFaults).toBe(3);
    expect(vm.shadow!.leafEntry(0x5000_0000, 0)).toBe(0);
  });

  it('a pool of 8 pages runs out: every shadow is dropped and rebuilt, and the guest sees nothing of it', () => {
    // Writes ECX to 16 MiB + 2 MiB × k for k = 8..1, then sums them back: each 2-MiB region needs a page table.
    const region = [0x89, 0x0b /* mov [rbx], ecx */, 0x48, 0x81, 0xc3, ...u32(MIB2) /* add rbx, 2 MiB */, 0xff, 0xc9 /* dec ecx */,
      0x75, 0xf3 /* jnz back */];
    const sum = [0x03, 0x13 /* add edx, [rbx] */, 0x48, 0x81, 0xc3, ...u32(MIB2), 0xff, 0xc9, 0x75, 0xf3];
    const image = code(A64.movRsp(STACK), A64.movRbx(0x100_0000), A64.movEcx(8), region,
      A64.movRbx(0x100_0000), A64.movEcx(8), [0x31, 0xd2] /* xor edx, edx */, sum, A64.saveEdx(RES), A64.exit);
    const { vm, seen } = both(image, '64', () => {}, { shadowPages: 8 });
    expect(seen.results[0]).toBe(36);
    expect(vm.shadow!.counters.poolResets).toBeGreaterThanOrEqual(1);
    expect(vm.layout.shadowPages).toBe(8);
  });

  it('SDM 27.2.1.1 and A.7: a guest that starts in real mode cannot run without EPT (no unrestricted guest): one clear error', () => {
    const vm = createVm(vmConfig({ memory: MEMORY, ept: false, unrestrictedGuest: false }));
    expect(() => vm.load(Uint8Array.of(0xf4), { format: 'flat', mode: 'real', load: 0x7c00 })).toThrow(VmConfigError);
    expect(() => vm.runUntilExit()).toThrow(/real mode.*needs EPT/);
    expect(() => createVm(vmConfig({ memory: MEMORY, ept: false, unrestrictedGuest: false, shadowPages: 3 }))).toThrow(/at least 8 pages/);
  });

  it('SDM 25.6.6, 26.1.3, 25.6.3: the guest\'s paging bits are owned, CR3 accesses, INVLPG and #PF exit (a shadow miss during event delivery is a #PF exit too, 26.2); the processor runs a guest with paging off on PAE paging with PE, PG and WP set', () => {
    const { vm } = shadowed(code(A32.exit), '32', () => {});
    const v = vm.vmcs, F = Field, P = Proc;
    expect(v.lo(F.EXCEPTION_BITMAP) & ((1 << 14) | (1 << 8))).toBe(1 << 14);
    expect([v.lo(F.PAGE_FAULT_ERROR_CODE_MASK), v.lo(F.PAGE_FAULT_ERROR_CODE_MATCH)]).toEqual([0, 0]);
    const proc = v.lo(F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS);
    for (const b of [P.CR3_LOAD_EXITING, P.CR3_STORE_EXITING, P.INVLPG_EXITING]) expect((proc >>> b) & 1).toBe(1);
    const owned0 = CR0_PG | 1 | CR0_WP, owned4 = CR4_PAE | CR4_PSE | CR4_PGE;
    expect(v.lo(F.CR0_GUEST_HOST_MASK) & owned0).toBe(owned0);
    expect(v.lo(F.CR4_GUEST_HOST_MASK) & owned4).toBe(owned4);
    expect(v.lo(F.GUEST_CR0) & owned0).toBe(owned0);
    expect(v.lo(F.GUEST_CR4) & CR4_PAE).toBe(CR4_PAE);
    expect(v.lo(F.CR0_READ_SHADOW) & CR0_PG).toBe(0);           // the guest's own CR0: paging off
    expect(vm.shadow!.mode()).toBe(PagingMode.NONE);
    const root = v.lo(F.GUEST_CR3);
    expect(root >= vm.layout.shadowPool && root < vm.layout.shadowPool + vm.layout.shadowPages * KIB).toBe(true);
  });
});
