/**
 * The guest as the root-mode handler sees it after a VM exit: its state in
 * the VMCS (read and written with counted VMREADs and VMWRITEs, as a VMM's
 * would be), its general-purpose registers in the processor (a VM exit saves
 * and loads only RSP and RIP of them, SDM vol. 3C, 28.3.3 and 28.5.3), and its
 * memory through its own paging and the EPT.
 *
 * The operations a handler completes an instruction or an event with live
 * here: skipping the instruction (`retire`), injecting an event (27.6), and
 * reading or writing guest-linear memory with the #PF the guest would take.
 */
import { InterruptionType } from '../../vmcs/controls.js';
import { ExitReason as R } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import type { Cpu } from '../cpu/cpu.js';
import { InsnClass } from '../cpu/insn-class.js';
import { hasErrorCode } from '../cpu/interrupts.js';
import { RF, RSP, TF, Vector } from '../cpu/regs.js';
import { PDPTE_FIELDS } from '../vmx/state-fields.js';
import { explainTranslation, type AccessKind, type Translation, type TranslationState } from '../vmx/translation.js';
import type { Vmcs } from '../vmx/vmcs.js';
import type { Vmx } from '../vmx/vmx.js';
import type { GuestView } from './mmio.js';

/** Interruptibility state (25.4.2, table 25-3): blocking by STI, by MOV SS, by NMI. */
export const BLOCKING_BY_STI = 1, BLOCKING_BY_MOV_SS = 2, BLOCKING_BY_NMI = 8;
/** Pending debug exceptions: BS, a single-step trap (25.4.2, table 25-4). */
const PENDING_BS = 1 << 14;
const EFER_LMA = 1 << 10, CS_L = 1 << 13, CS_DB = 1 << 14, CR0_PE = 1, CR4_LA57 = 1 << 12;

/** An event to inject (27.6), or one the VMCS reports (interruption information, 25.8.3). */
export interface GuestEvent {
  readonly vector: number;
  /** Interruption type (vmcs/controls.ts InterruptionType). */
  readonly type: number;
  readonly errorCode: number | null;
  /** Instruction length for software interrupts and exceptions. */
  readonly length?: number;
}

/**
 * The class of the instruction a handler emulates, by its exit reason: I/O,
 * the system instructions (privileged), MMIO through an EPT violation (a
 * memory operand); CPUID, PAUSE, RDRAND and RDSEED are ordinary.
 */
const EXIT_INSN_CLASS: ReadonlyMap<number, number> = new Map([
  [R.IO_INSTRUCTION, InsnClass.IO], [R.EPT_VIOLATION, InsnClass.MEMORY],
  ...[R.HLT, R.INVD, R.INVLPG, R.INVPCID, R.RDPMC, R.RDTSC, R.RDTSCP, R.RDMSR, R.WRMSR, R.CONTROL_REGISTER_ACCESS, R.MOV_DR,
    R.MWAIT, R.MONITOR, R.WBINVD_WBNOINVD, R.XSETBV, R.XSAVES, R.XRSTORS, R.GDTR_IDTR_ACCESS, R.LDTR_TR_ACCESS,
  ].map((r) => [r, InsnClass.PRIVILEGED] as [number, number]),
]);

/** A guest access refused by the guest's paging: the #PF to inject (or #GP for a non-canonical address). */
export class GuestFault {
  constructor(readonly event: GuestEvent, readonly linear: bigint, readonly translation: Translation) {}
}

/**
 * The guest's own paging registers where the VMCS does not hold them: with
 * shadow paging (src/hv/shadow) the guest-state area has the values the
 * processor runs the guest with, and guest-physical memory is RAM only.
 */
export interface GuestPaging {
  readonly cr0: number;
  readonly cr3Lo: number;
  readonly cr3Hi: number;
  readonly cr4: number;
  readonly efer: number;
  /** Guest-physical `pa` is guest RAM (elsewhere a handler's access finds no memory, as EPT leaves it out). */
  isRam(pa: number): boolean;
  /** The hypervisor wrote `length` bytes of guest memory at `pa` for the guest (string I/O, emulation). */
  written(pa: number, length: number): void;
}

export class Guest {
  /** VMREADs and VMWRITEs the handler issued (for the cost model). */
  vmreads = 0;
  vmwrites = 0;
  /** Events injected (for the cost model). */
  injections = 0;
  /** With shadow paging, the guest's own paging registers (vm.ts sets it); null with EPT. */
  paging: GuestPaging | null = null;

  constructor(readonly cpu: Cpu, readonly vmx: Vmx, readonly vmcs: Vmcs) {}

  /** VMREAD: bits 31:0, and the field as a number (exact to 2^53). */
  read(field: number): number { this.vmreads++; return this.vmcs.lo(field); }
  readNum(field: number): number { this.vmreads++; return this.vmcs.num(field); }
  read64(field: number): bigint {
    this.vmreads++;
    return (BigInt(this.vmcs.hi(field) >>> 0) << 32n) | BigInt(this.vmcs.lo(field) >>> 0);
  }
  /** VMWRITE. */
  write(field: number, lo: number, hi = 0): void { this.vmwrites++; this.vmcs.set(field, lo, hi); }
  write64(field: number, v: bigint): void {
    this.write(field, Number(v & 0xffffffffn) | 0, Number((v >> 32n) & 0xffffffffn) | 0);
  }

  /** General-purpose register n (encoding order), unsigned 64-bit; RSP is GUEST_RSP. */
  reg(n: number): bigint {
    if (n === RSP) return this.read64(Field.GUEST_RSP);
    return this.cpu.reg64(n);
  }
  setReg(n: number, v: bigint): void {
    v = BigInt.asUintN(64, v);
    if (n === RSP) this.write64(Field.GUEST_RSP, v);
    else this.cpu.setReg64(n, v);
  }
  /** Bits 31:0 of register n (the low half the processor holds). */
  reg32(n: number): number { return n === RSP ? this.read(Field.GUEST_RSP) >>> 0 : this.cpu.gpr[2 * n]! >>> 0; }

  get rip(): bigint { return this.read64(Field.GUEST_RIP); }
  set rip(v: bigint) { this.write64(Field.GUEST_RIP, BigInt.asUintN(64, v)); }
  get rflags(): number { return this.read(Field.GUEST_RFLAGS) >>> 0; }
  set rflags(v: number) { this.write(Field.GUEST_RFLAGS, v); }

  /** The guest's code size from CS and EFER.LMA: 2, 4 or 8 bytes (SDM vol. 3A, 5.2.1). */
  get codeSize(): 2 | 4 | 8 {
    const ar = this.read(Field.GUEST_CS_ACCESS_RIGHTS);
    if ((this.read(Field.GUEST_IA32_EFER) & EFER_LMA) !== 0 && (ar & CS_L) !== 0) return 8;
    return (this.read(Field.GUEST_CR0) & CR0_PE) !== 0 && (ar & CS_DB) !== 0 ? 4 : 2;
  }
  /** CPL: SS.DPL (25.4.1, 27.3.1.2). */
  get cpl(): number { return (this.read(Field.GUEST_SS_ACCESS_RIGHTS) >>> 5) & 3; }

  /**
   * Completes the instruction at RIP, `length` bytes long, as the processor
   * would: RIP past it (within the code size), the STI/MOV SS shadow over, RF
   * clear, a single-step trap pending when RFLAGS.TF is set, and the
   * instruction counted as retired (guest time runs as on the bare processor).
   */
  retire(length: number): void {
    const size = this.codeSize;
    const mask = size === 8 ? (1n << 64n) - 1n : size === 4 ? 0xffffffffn : 0xffffn;
    this.rip = (this.rip + BigInt(length)) & mask;
    const blocking = this.read(Field.GUEST_INTERRUPTIBILITY_STATE);
    if (blocking & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS)) {
      this.write(Field.GUEST_INTERRUPTIBILITY_STATE, blocking & ~(BLOCKING_BY_STI | BLOCKING_BY_MOV_SS));
    }
    const flags = this.rflags;
    if (flags & RF) this.rflags = flags & ~RF;
    if (flags & TF) this.write(Field.GUEST_PENDING_DEBUG_EXCEPTIONS, this.read(Field.GUEST_PENDING_DEBUG_EXCEPTIONS) | PENDING_BS);
    this.cpu.insnCount++;
    // Its class, as the processor would have counted it (insn-class.ts): known from the exit reason.
    const c = this.cpu.classCounts;
    if (c !== null) c[EXIT_INSN_CLASS.get(this.vmcs.lo(Field.EXIT_REASON) & 0xffff) ?? InsnClass.ORDINARY]!++;
  }

  /** Injects `e` at the next VM entry (27.6): the VM-entry interruption-information field and its companions. */
  inject(e: GuestEvent): void {
    this.injections++;
    const code = e.errorCode !== null;
    this.write(Field.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD, (0x80000000 | (code ? 1 << 11 : 0) | (e.type << 8) | e.vector) | 0);
    if (code) this.write(Field.VM_ENTRY_EXCEPTION_ERROR_CODE, e.errorCode!);
    if (e.length !== undefined) this.write(Field.VM_ENTRY_INSTRUCTION_LENGTH, e.length);
  }

  /** An event is already waiting for the next entry. */
  get injecting(): boolean { return (this.read(Field.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD) & 0x80000000) !== 0; }

  /** Injects hardware exception `vector` (with error code `code` where the vector has one). */
  raise(vector: number, code = 0): void {
    this.inject({ vector, type: InterruptionType.HARDWARE_EXCEPTION, errorCode: hasErrorCode(vector) ? code : null });
  }

  /** Injects the fault a guest access took; a #PF's linear address goes to CR2, which VM entries leave alone (SDM vol. 3A, 4.7). */
  injectFault(fault: GuestFault): void {
    if (fault.event.vector === Vector.PF) this.setCr2(fault.linear);
    this.inject(fault.event);
  }

  /** CR2 is not part of the VMCS: the guest's is the processor's own (28.3.1). */
  setCr2(linear: bigint): void {
    this.cpu.cr2Lo = Number(linear & 0xffffffffn) | 0;
    this.cpu.cr2Hi = Number((linear >> 32n) & 0xffffffffn) | 0;
  }

  /** The guest as the MMIO emulator and the exit records read it. */
  view(): GuestView {
    const g = this; // eslint-disable-line @typescript-eslint/no-this-alias -- the getter below reads the live RFLAGS
    return {
      codeSize: g.codeSize, rip: g.rip, csBase: g.read64(Field.GUEST_CS_BASE),
      fetch: (linear, count) => { const b = g.readLinear(linear, count, 'fetch'); return b instanceof GuestFault ? null : b; },
      reg: (n) => g.reg(n), setReg: (n, v) => g.setReg(n, v),
      get rflags() { return g.rflags; }, setRflags: (v) => { g.rflags = v; },
    };
  }

  /** The guest's translation state from the VMCS: its control registers, PDPTEs, CPL, RFLAGS, and the EPT. */
  translationState(): TranslationState {
    const pdpte = new Int32Array(8), F = Field;
    PDPTE_FIELDS.forEach((f, k) => {
      pdpte[2 * k] = this.vmcs.lo(f); pdpte[2 * k + 1] = this.vmcs.hi(f);
    });
    const cpl = this.cpl, p = this.paging, cr4 = p !== null ? p.cr4 : this.vmcs.lo(F.GUEST_CR4);
    return {
      cr0: p !== null ? p.cr0 : this.vmcs.lo(F.GUEST_CR0), cr3Lo: p !== null ? p.cr3Lo : this.vmcs.lo(F.GUEST_CR3),
      cr3Hi: p !== null ? p.cr3Hi : this.vmcs.hi(F.GUEST_CR3), cr4,
      efer: p !== null ? p.efer : this.vmcs.lo(F.GUEST_IA32_EFER), pdpte, cpl, flags: this.vmcs.lo(F.GUEST_RFLAGS), memory: this.cpu.memory,
      ept: this.eptEnabled ? this.vmx.ept : null, identity: false, user: cpl === 3,
      canonicalShift: cr4 & CR4_LA57 ? 7 : 16,
    };
  }

  private get eptEnabled(): boolean {
    return (this.vmcs.lo(Field.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS) & 2) !== 0;
  }

  /** Where a guest-linear access goes: the host-physical address, or the fault the guest takes. */
  translate(linear: bigint, access: AccessKind, state = this.translationState()): number | GuestFault {
    const t = explainTranslation(state, linear, access);
    // Without EPT, guest-physical is host-physical: outside guest RAM nothing is memory (as EPT leaves it out).
    if (t.outcome.kind === 'ok' && (this.paging === null || this.paging.isRam(Number(t.hostPhysical!)))) return Number(t.hostPhysical!);
    if (t.outcome.kind === 'page-fault') {
      return new GuestFault({ vector: Vector.PF, type: InterruptionType.HARDWARE_EXCEPTION, errorCode: t.outcome.errorCode }, t.linear, t);
    }
    // A non-canonical address (#GP(0)) or an EPT problem: the latter is the hypervisor's, not the guest's.
    return new GuestFault({ vector: Vector.GP, type: InterruptionType.HARDWARE_EXCEPTION, errorCode: 0 }, t.linear, t);
  }

  /**
   * `count` bytes at a guest-linear address, page by page, or the fault of the
   * first page that refuses. `forGuest`: the read is the guest instruction's,
   * made by the hypervisor that emulates it (see `accessed`).
   */
  readLinear(
    linear: bigint, count: number, access: AccessKind = 'read', state = this.translationState(), forGuest = false,
  ): Uint8Array | GuestFault {
    const out = new Uint8Array(count);
    for (let k = 0; k < count;) {
      const at = BigInt.asUintN(64, linear + BigInt(k));
      const pa = this.translate(at, access, state);
      if (pa instanceof GuestFault) return pa;
      const n = Math.min(count - k, 4096 - (pa % 4096));
      if (forGuest) this.accessed(at, pa, n, false);
      for (let j = 0; j < n; j++) out[k + j] = this.physicalByte(pa + j);
      k += n;
    }
    return out;
  }

  /** Writes bytes at a guest-linear address; on a fault nothing of the refused page on is written. `forGuest` as for readLinear. */
  writeLinear(linear: bigint, bytes: Uint8Array, forGuest = false): GuestFault | null {
    const state = this.translationState();
    for (let k = 0; k < bytes.length;) {
      const at = BigInt.asUintN(64, linear + BigInt(k));
      const pa = this.translate(at, 'write', state);
      if (pa instanceof GuestFault) return pa;
      const n = Math.min(bytes.length - k, 4096 - (pa % 4096));
      if (forGuest) this.accessed(at, pa, n, true);
      for (let j = 0; j < n; j++) this.cpu.memory.write8(pa + j, bytes[k + j]!);
      this.cpu.codeWritten(pa, n);
      this.paging?.written(pa, n);
      k += n;
    }
    return null;
  }

  /**
   * The hypervisor makes an access of the guest's instruction for it, at
   * guest-linear `linear` and guest-physical `pa` (emulated string I/O, MMIO,
   * a shadowed page-table write): an external debugger's data watchpoints see
   * it as they see the guest's own (Cpu.externalWatch). The guest's own debug
   * registers are the hypervisor's to emulate and are not told.
   */
  accessed(linear: bigint, pa: number, size: number, write: boolean): void {
    const w = this.cpu.externalWatch;
    if (w !== null) w.access(Number(linear & 0xffffffffn) | 0, Number(linear >> 32n) | 0, size, write, pa);
  }

  /** A byte of host-physical memory (the bus floats above it). */
  private physicalByte(pa: number): number {
    return pa < this.cpu.memory.size ? this.cpu.memory.read8(pa) & 0xff : 0xff;
  }
}
