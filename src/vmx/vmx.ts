/**
 * A logical processor's VMX unit: VMX operation and the VMX instructions (SDM
 * vol. 3C, chapter 24 and chapter 31 "VMX Instruction Reference"), the
 * decisions of non-root operation (chapter 26), and the way into and out of
 * the guest (entry.ts, exit.ts). It is the processor's `virt`
 * (src/cpu/virtualization.ts): the processor calls it for VMX instructions and,
 * in non-root operation, for the instructions and events that may exit.
 */
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field, fieldExists, VMCS_FIELDS } from '../../vmcs/fields.js';
import { VmInstructionError } from '../../vmcs/instruction-errors.js';
import { VMCS_SHADOW_INDICATOR } from '../../vmcs/layout.js';
import { NMI_UNBLOCKING_DUE_TO_IRET } from '../../vmcs/qualifications.js';
import { FAULT, Pending, type Cpu } from '../cpu/cpu.js';
import { setStatusFlags } from '../cpu/flags.js';
import { BASE_RIP, type Insn } from '../cpu/insn.js';
import { deliverException, deliverInterrupt, deliverNmi } from '../cpu/interrupts.js';
import { effectiveAddress, getReg, jumpRelative, m128, readEa, readM128, readRm, writeRm } from '../cpu/operands.js';
import { MAXPHYADDR } from '../cpu/paging.js';
import { cr4Supported } from '../cpu/cpuid.js';
import { lmswValue } from '../cpu/ops/control-registers.js';
import { iretUnblockedNmi } from '../cpu/ops/segment.js';
import { AF, CF, EFER_LMA, IF, OF, PF, SF, VM, Vector, ZF } from '../cpu/regs.js';
import { Intercept, VmxInstruction, type Virtualization } from '../cpu/virtualization.js';
import { capabilityMsr, SKYLAKE_VMX, supports, type VmxCapabilities } from './capabilities.js';
import { eptpValid, type EntryCheckFailure } from './entry-checks.js';
import { Ept } from './ept.js';
import { injectEvent, vmEntry } from './entry.js';
import { completeExit, ExitInfo } from './exit.js';
import { instructionInformation, registerOperandInformation } from './instruction-information.js';
import { hasHigh, Vmcs } from './vmcs.js';
import { CONTROL_AT as C } from './state-fields.js';

/** The arithmetic flags VMsucceed and VMfail set (SDM vol. 3C, 31.2 "Conventions"). */
const STATUS = CF | PF | AF | ZF | SF | OF;
/** The invalid current-VMCS pointer (31.2). */
const NO_VMCS = -1;
const CR0_PE = 1, CR4_VMXE = 1 << 13, FEATURE_CONTROL_LOCK = 1, FEATURE_CONTROL_VMX_OUTSIDE_SMX = 4;

/** Pin-based, primary and secondary control bits the decisions below read (25.6). */
const PIN_EXTERNAL_INTERRUPT = 1 << 0, PIN_NMI_EXITING = 1 << 3;
const P_INTERRUPT_WINDOW = 1 << 2, P_HLT = 1 << 7, P_INVLPG = 1 << 9, P_MWAIT = 1 << 10, P_RDPMC = 1 << 11, P_RDTSC = 1 << 12;
const P_CR3_LOAD = 1 << 15, P_CR3_STORE = 1 << 16, P_CR8_LOAD = 1 << 19, P_CR8_STORE = 1 << 20, P_TPR_SHADOW = 1 << 21;
const P_NMI_WINDOW = 1 << 22, P_MOV_DR = 1 << 23, P_UNCONDITIONAL_IO = 1 << 24, P_IO_BITMAPS = 1 << 25;
const P_MSR_BITMAPS = 1 << 28, P_MONITOR = 1 << 29, P_PAUSE = 1 << 30, P_SECONDARY = 1 << 31;
/** Bits 31:30 of a task switch's exit qualification for IRET (28.2.1). */
const TASK_SWITCH_IRET = 1;
/** Basic exit reasons are below this (appendix C). */
const EXIT_REASON_SLOTS = 128;
const S_EPT = 1 << 1, S_DESCRIPTOR_TABLE = 1 << 2, S_RDTSCP = 1 << 3, S_VPID = 1 << 5, S_WBINVD = 1 << 6, S_PAUSE_LOOP = 1 << 10;
const S_RDRAND = 1 << 11, S_INVPCID = 1 << 12, S_RDSEED = 1 << 16, S_XSAVES = 1 << 20;
const X_ACK_INTERRUPT = 1 << 15;

/** The exit reason of each VMX instruction in non-root operation (appendix C). */
const VMX_EXIT: Record<VmxInstruction, number> = {
  [VmxInstruction.VMXON]: ExitReason.VMXON, [VmxInstruction.VMXOFF]: ExitReason.VMXOFF,
  [VmxInstruction.VMCLEAR]: ExitReason.VMCLEAR, [VmxInstruction.VMPTRLD]: ExitReason.VMPTRLD,
  [VmxInstruction.VMPTRST]: ExitReason.VMPTRST, [VmxInstruction.VMREAD]: ExitReason.VMREAD,
  [VmxInstruction.VMWRITE]: ExitReason.VMWRITE, [VmxInstruction.VMLAUNCH]: ExitReason.VMLAUNCH,
  [VmxInstruction.VMRESUME]: ExitReason.VMRESUME, [VmxInstruction.VMCALL]: ExitReason.VMCALL,
  [VmxInstruction.INVEPT]: ExitReason.INVEPT, [VmxInstruction.INVVPID]: ExitReason.INVVPID,
  [VmxInstruction.VMFUNC]: ExitReason.VMFUNC,
};

/** Exit reasons of the intercepted instructions of virtualization.ts (appendix C). */
const INTERCEPT_EXIT: Record<Intercept, number> = {
  [Intercept.CPUID]: ExitReason.CPUID, [Intercept.GETSEC]: ExitReason.GETSEC, [Intercept.INVD]: ExitReason.INVD,
  [Intercept.XSETBV]: ExitReason.XSETBV, [Intercept.HLT]: ExitReason.HLT, [Intercept.INVLPG]: ExitReason.INVLPG,
  [Intercept.RDPMC]: ExitReason.RDPMC, [Intercept.RDTSC]: ExitReason.RDTSC, [Intercept.RDTSCP]: ExitReason.RDTSCP,
  [Intercept.RDMSR]: ExitReason.RDMSR, [Intercept.WRMSR]: ExitReason.WRMSR, [Intercept.PAUSE]: ExitReason.PAUSE,
  [Intercept.WBINVD]: ExitReason.WBINVD_WBNOINVD, [Intercept.MWAIT]: ExitReason.MWAIT, [Intercept.MONITOR]: ExitReason.MONITOR,
  [Intercept.RDRAND]: ExitReason.RDRAND, [Intercept.RDSEED]: ExitReason.RDSEED, [Intercept.INVPCID]: ExitReason.INVPCID,
  [Intercept.LGDT]: ExitReason.GDTR_IDTR_ACCESS, [Intercept.LIDT]: ExitReason.GDTR_IDTR_ACCESS,
  [Intercept.SGDT]: ExitReason.GDTR_IDTR_ACCESS, [Intercept.SIDT]: ExitReason.GDTR_IDTR_ACCESS,
  [Intercept.LLDT]: ExitReason.LDTR_TR_ACCESS, [Intercept.LTR]: ExitReason.LDTR_TR_ACCESS,
  [Intercept.SLDT]: ExitReason.LDTR_TR_ACCESS, [Intercept.STR]: ExitReason.LDTR_TR_ACCESS,
  [Intercept.MOV_DR]: ExitReason.MOV_DR, [Intercept.XSAVES]: ExitReason.XSAVES, [Intercept.XRSTORS]: ExitReason.XRSTORS,
};

export class Vmx implements Virtualization {
  /** In VMX operation (root or non-root), and the VMXON region's address. */
  on = false;
  vmxonPointer = 0;
  /** The current VMCS, or null when the current-VMCS pointer is invalid. */
  current: Vmcs | null = null;
  /** VMCSs the processor holds since their VMPTRLD (active, 25.1), by region address. */
  readonly held = new Map<number, Vmcs>();
  /** The exit being made. */
  readonly exitInfo = new ExitInfo();
  /** Why the last VMLAUNCH/VMRESUME failed a check (null: it passed them all). */
  lastEntryFailure: EntryCheckFailure | null = null;
  /** Told of every failed VM entry, with the check that failed (the CLI prints it). */
  onEntryFailure: ((failure: EntryCheckFailure) => void) | null = null;
  /** Non-root: TSC offset added at entry; event injection waiting for the first boundary; the event being injected. */
  guestTscOffset = 0;
  injectPending = false;
  injecting = 0;
  /** The exit is caused by an NMI: NMIs stay blocked in the host (chapter 28). */
  exitBlocksNmi = false;
  /** Debug exceptions (DR6 bits) the VM entry made pending: a #DB trap at the first boundary (27.7.3). */
  pendingDebug = 0;
  /**
   * cpu.segWrites just after a VM entry loaded the guest's segment registers
   * from fields that hold them as a VM exit would save them; -1 otherwise. While
   * it is still cpu.segWrites, the exit has no segment field to write (exit.ts).
   */
  guestSegWrites = -1;
  /** Monitor trap flag: the instruction count at which a pending MTF VM exit happens, or -1 (26.5.2). */
  mtfAt = -1;
  /** PAUSE-loop exiting: TSC of the first and the last PAUSE of the current loop (-1: none since VM entry). */
  pauseLoopStart = -1;
  lastPause = 0;
  /** The guest is in the shutdown activity state (entered with it): only INIT and NMIs end it. */
  shutdown = false;
  /** A MOV to CR8 took VTPR below the TPR threshold: a trap-like VM exit at the next boundary (30.1.2). */
  tprBelowThreshold = false;
  /** The EPT of the processor (attachVmx): installed beneath paging while a guest with EPT runs. */
  ept!: Ept;
  /** Every completed VM exit stops the run ({ kind: 'vm-exit' }): the root-mode handler is TypeScript (src/hv). */
  stopOnExit = false;
  /** VM exits completed, by basic exit reason (appendix C), VM-entry failures included; for statistics. */
  readonly exitCounts = new Float64Array(EXIT_REASON_SLOTS);

  constructor(readonly caps: VmxCapabilities) {
    VMCS_FIELDS.forEach((f, k) => {
      if (!fieldExists(f, (c) => supports(caps, c))) return;
      this.access[f.encoding] = 2 * k;
      if (f.width === '64') this.access[f.encoding | 1] = 2 * k + 1;
    });
  }

  /** Records a VM entry that failed `failure` (27.2, 27.3.1). */
  entryFailed(failure: EntryCheckFailure): void {
    this.lastEntryFailure = failure;
    this.onEntryFailure?.(failure);
  }

  // ---- results (31.2) ---------------------------------------------------------

  succeed(cpu: Cpu): void { setStatusFlags(cpu, STATUS, 0); }

  failInvalid(cpu: Cpu): void { setStatusFlags(cpu, STATUS, CF); }

  failValid(cpu: Cpu, error: number): void {
    setStatusFlags(cpu, STATUS, ZF);
    this.current!.set(Field.VM_INSTRUCTION_ERROR, error);
  }

  /** VMfail: VMfailValid with a current VMCS, else VMfailInvalid. */
  fail(cpu: Cpu, error: number): void {
    if (this.current !== null) this.failValid(cpu, error);
    else this.failInvalid(cpu);
  }

  // ---- the VMX instructions (chapter 31) ---------------------------------------

  vmx(cpu: Cpu, i: Insn, op: VmxInstruction): void {
    // What a VMM's exit handler runs most: VMREAD and VMWRITE in root operation at CPL 0 in 64-bit mode,
    // where none of the faults below can apply (64-bit mode implies CR0.PE and no virtual-8086 mode).
    const fast = this.on && cpu.codeSize === 8 && !cpu.nonRoot && cpu.cpl === 0;
    if (fast && op === VmxInstruction.VMREAD) { this.vmread(cpu, i); return; }
    if (fast && op === VmxInstruction.VMWRITE) { this.vmwrite(cpu, i); return; }
    // #UD: outside VMX operation (all but VMXON), real mode, virtual-8086 mode, compatibility mode.
    const compatibility = (cpu.efer & EFER_LMA) !== 0 && cpu.codeSize !== 8;
    if (op === VmxInstruction.VMCALL) {
      if (!this.on) cpu.raise(Vector.UD);
      if (cpu.nonRoot) this.exitForInstruction(cpu, i, ExitReason.VMCALL, 0);
      if ((cpu.flags & VM) !== 0 || compatibility) cpu.raise(Vector.UD);
    } else {
      if ((op !== VmxInstruction.VMXON && !this.on) || !(cpu.cr0 & CR0_PE) || (cpu.flags & VM) !== 0 || compatibility) {
        cpu.raise(Vector.UD);
      }
      if (op === VmxInstruction.VMXON && !this.on) { this.vmxon(cpu, i); return; }
      // VMFUNC: the model offers no VM functions (#UD, as on a part without them); INVEPT needs EPT, INVVPID VPID.
      if (op === VmxInstruction.VMFUNC) cpu.raise(Vector.UD);
      if (op === VmxInstruction.INVEPT && (this.caps.secondary.allowed1 & S_EPT) === 0) cpu.raise(Vector.UD);
      if (op === VmxInstruction.INVVPID && (this.caps.secondary.allowed1 & S_VPID) === 0) cpu.raise(Vector.UD);
      if (cpu.nonRoot) {
        displacement(cpu, i);
        this.exitForInstruction(cpu, i, VMX_EXIT[op], instructionInformation(i, op), cpu.tHi, disp.hi);
      }
    }
    if (cpu.cpl > 0) cpu.raise(Vector.GP, 0);
    switch (op) {
      case VmxInstruction.VMXON: this.fail(cpu, VmInstructionError.VMXON_IN_ROOT); return;
      case VmxInstruction.VMXOFF: this.vmxoff(cpu); return;
      case VmxInstruction.VMCLEAR: this.vmclear(cpu, i); return;
      case VmxInstruction.VMPTRLD: this.vmptrld(cpu, i); return;
      case VmxInstruction.VMPTRST: {
        const p = this.current === null ? NO_VMCS : this.current.address;
        writeRm(cpu, i, 8, p === NO_VMCS ? -1 : p | 0, p === NO_VMCS ? -1 : Math.floor(p / 0x100000000));
        this.succeed(cpu);
        return;
      }
      case VmxInstruction.VMREAD: this.vmread(cpu, i); return;
      case VmxInstruction.VMWRITE: this.vmwrite(cpu, i); return;
      case VmxInstruction.VMLAUNCH: this.launch(cpu, true); return;
      case VmxInstruction.VMRESUME: this.launch(cpu, false); return;
      case VmxInstruction.VMCALL: this.fail(cpu, VmInstructionError.VMCALL_IN_ROOT); return;
      case VmxInstruction.INVVPID: this.invvpid(cpu, i); return;
      case VmxInstruction.INVEPT: this.invept(cpu, i); return;
    }
  }

  /** VMXON outside VMX operation (SDM vol. 3C, 31.3 VMXON "Operation"). */
  private vmxon(cpu: Cpu, i: Insn): void {
    if ((cpu.cr4 & CR4_VMXE) === 0) cpu.raise(Vector.UD);
    const c = this.caps, fc = cpu.msrs.featureControl;
    if (cpu.cpl > 0 || ((cpu.cr0 & c.cr0Fixed0) ^ c.cr0Fixed0) !== 0 || (cpu.cr0 & ~c.cr0Fixed1) !== 0 ||
        ((cpu.cr4 & c.cr4Fixed0) ^ c.cr4Fixed0) !== 0 || (cpu.cr4 & ~c.cr4Fixed1) !== 0 ||
        (fc & FEATURE_CONTROL_LOCK) === 0 || (fc & FEATURE_CONTROL_VMX_OUTSIDE_SMX) === 0) {
      cpu.raise(Vector.GP, 0);
    }
    const addr = this.pointerOperand(cpu, i);
    if (addr < 0 || this.revisionMismatch(cpu, addr)) { this.failInvalid(cpu); return; }
    this.on = true;
    this.vmxonPointer = addr;
    this.current = null;
    this.held.clear();
    cpu.initBlocked = true; // INIT is blocked in VMX root operation (24.8)
    this.succeed(cpu);
  }

  /** VMXOFF (31.3): leaves VMX operation; the VMCSs the processor held stay where they are. */
  private vmxoff(cpu: Cpu): void {
    this.on = false;
    this.current = null;
    cpu.initBlocked = false;
    cpu.startupPending = true; // an INIT held while blocked is taken now
    this.succeed(cpu);
  }

  /** VMCLEAR (31.3): the VMCS data goes to its region, launch state "clear". */
  private vmclear(cpu: Cpu, i: Insn): void {
    const addr = this.pointerOperand(cpu, i);
    if (addr < 0) { this.fail(cpu, VmInstructionError.VMCLEAR_INVALID_ADDRESS); return; }
    if (addr === this.vmxonPointer) { this.fail(cpu, VmInstructionError.VMCLEAR_VMXON_POINTER); return; }
    let v = this.held.get(addr);
    if (v === undefined) { v = new Vmcs(addr); v.load(cpu.memory); }
    v.launched = false;
    v.store(cpu.memory);
    this.held.delete(addr);
    cpu.codeWritten(addr, 4096);
    const wasCurrent = this.current !== null && this.current.address === addr;
    if (wasCurrent) this.current = null;
    this.succeed(cpu);
  }

  /** VMPTRLD (31.3): makes the VMCS at the operand current, reading it if the processor does not hold it. */
  private vmptrld(cpu: Cpu, i: Insn): void {
    const addr = this.pointerOperand(cpu, i);
    if (addr < 0) { this.fail(cpu, VmInstructionError.VMPTRLD_INVALID_ADDRESS); return; }
    if (addr === this.vmxonPointer) { this.fail(cpu, VmInstructionError.VMPTRLD_VMXON_POINTER); return; }
    if (this.revisionMismatch(cpu, addr)) { this.fail(cpu, VmInstructionError.VMPTRLD_INCORRECT_REVISION); return; }
    let v = this.held.get(addr);
    if (v === undefined) {
      v = new Vmcs(addr);
      v.load(cpu.memory);
      this.held.set(addr, v);
    }
    this.current = v;
    this.succeed(cpu);
  }

  /** VMREAD r/m, r (31.3): the field named by the register operand. */
  private vmread(cpu: Cpu, i: Insn): void {
    const v = this.current;
    if (v === null) { this.failInvalid(cpu); return; }
    const size = cpu.codeSize === 8 ? 8 : 4;
    const at = this.fieldAccess(getReg(cpu, i.reg, size), cpu.tHi);
    if (at < 0) {
      this.failValid(cpu, VmInstructionError.UNSUPPORTED_VMCS_COMPONENT);
      return;
    }
    const k = at >> 1;
    let lo = v.values[2 * k]!, hi = v.values[2 * k + 1]!;
    if (at & 1) { lo = hi; hi = 0; }
    writeRm(cpu, i, size, lo, size === 8 ? hi : 0);
    this.succeed(cpu);
  }

  /**
   * VMWRITE r, r/m (31.3). Bits beyond the field's width are ignored; a 32-bit
   * write of the full encoding of a 64-bit field clears bits 63:32, a write of
   * its high encoding sets only bits 63:32 (25.11.2).
   */
  private vmwrite(cpu: Cpu, i: Insn): void {
    const v = this.current;
    if (v === null) { this.failInvalid(cpu); return; }
    const size = cpu.codeSize === 8 ? 8 : 4;
    const lo = readRm(cpu, i, size), hi = size === 8 ? cpu.tHi : 0;
    const at = this.fieldAccess(getReg(cpu, i.reg, size), cpu.tHi);
    if (at < 0) {
      this.failValid(cpu, VmInstructionError.UNSUPPORTED_VMCS_COMPONENT);
      return;
    }
    const k = at >> 1;
    // Read-only (VM-exit information) fields take writes when IA32_VMX_MISC[29] says so.
    if (VMCS_FIELDS[k]!.type === 'read-only' && (this.caps.misc & (1 << 29)) === 0) {
      this.failValid(cpu, VmInstructionError.VMWRITE_READ_ONLY);
      return;
    }
    if (at & 1) v.setIndex(k, v.values[2 * k]!, lo);
    else v.setIndex(k, lo, hasHigh(k) ? hi : 0);
    this.succeed(cpu);
  }

  /**
   * INVVPID r, m128 (31.3 INVVPID): the type in the register, the descriptor
   * (VPID in bits 15:0, bits 63:16 reserved, a linear address in 127:64) in memory.
   */
  private invvpid(cpu: Cpu, i: Insn): void {
    const type = getReg(cpu, i.reg, cpu.codeSize === 8 ? 8 : 4), typeHi = cpu.tHi;
    readM128(cpu, i);
    const dLo = m128[0]!, dHi = m128[1]!, addrLo = m128[2]!, addrHi = m128[3]!;
    const vpid = dLo & 0xffff, sh = cpu.mmu.canonicalShift;
    // VMfailValid(28): an unsupported type, reserved descriptor bits, VPID 0 for a type that names one,
    // a non-canonical address for type 0.
    if (typeHi !== 0 || (type >>> 0) > 3 || (dLo & ~0xffff) !== 0 || dHi !== 0 || (type !== 2 && vpid === 0) ||
        (type === 0 && ((addrHi << sh) >> sh) !== addrHi)) {
      this.fail(cpu, VmInstructionError.INVALID_OPERAND_INVEPT_INVVPID);
      return;
    }
    cpu.paging.invvpid(type, vpid, addrLo, addrHi);
    this.succeed(cpu);
  }

  /**
   * INVEPT r, m128 (31.3 INVEPT): the type in the register (1 single-context,
   * 2 all-context), the EPTP in bits 63:0 of the descriptor.
   */
  private invept(cpu: Cpu, i: Insn): void {
    const type = getReg(cpu, i.reg, cpu.codeSize === 8 ? 8 : 4), typeHi = cpu.tHi;
    readM128(cpu, i);
    const eptpLo = m128[0]!, eptpHi = m128[1]!;
    // VMfailValid(28): a type the processor does not support; for single-context, an EPTP VM entry would reject.
    if (typeHi !== 0 || (type !== 1 && type !== 2) || (type === 1 && !eptpValid(eptpLo, eptpHi))) {
      this.fail(cpu, VmInstructionError.INVALID_OPERAND_INVEPT_INVVPID);
      return;
    }
    this.ept.invalidate(type, eptpLo, eptpHi);
    this.succeed(cpu);
  }

  /** VMLAUNCH and VMRESUME (31.3): their own checks, then VM entry (entry.ts). */
  private launch(cpu: Cpu, launch: boolean): void {
    const v = this.current;
    if (v === null) { this.failInvalid(cpu); return; }
    if (cpu.insnCount < cpu.interruptShadowEnd && cpu.shadowBySs) {
      this.failValid(cpu, VmInstructionError.ENTRY_EVENTS_BLOCKED_BY_MOV_SS);
      return;
    }
    if (launch && v.launched) { this.failValid(cpu, VmInstructionError.VMLAUNCH_NONCLEAR_VMCS); return; }
    if (!launch && !v.launched) { this.failValid(cpu, VmInstructionError.VMRESUME_NONLAUNCHED_VMCS); return; }
    vmEntry(this, cpu, launch);
  }

  /**
   * The physical address in the instruction's 64-bit memory operand, or -1 when
   * it is not 4-KByte aligned or exceeds the physical-address width (31.3).
   */
  private pointerOperand(cpu: Cpu, i: Insn): number {
    effectiveAddress(cpu, i);
    const lo = readEa(cpu, 8), hi = cpu.tHi;
    if ((lo & 0xfff) !== 0 || hi < 0 || hi >= 2 ** (MAXPHYADDR - 32)) return -1;
    return hi * 0x100000000 + (lo >>> 0);
  }

  /** The region's revision identifier differs from the processor's, or names a shadow VMCS (not offered). */
  private revisionMismatch(cpu: Cpu, addr: number): boolean {
    const rev = cpu.memory.read32(addr);
    return (rev & ~VMCS_SHADOW_INDICATOR) !== this.caps.revision || (rev & VMCS_SHADOW_INDICATOR) !== 0;
  }

  /**
   * What VMREAD/VMWRITE reach with encoding (lo, hi) (25.11.2): 2k for field k,
   * 2k + 1 for the high half of 64-bit field k, or -1 when no field the model
   * supports has that encoding (appendix B: some need a capability).
   */
  private fieldAccess(lo: number, hi: number): number {
    return hi === 0 && lo === (lo & 0x7fff) ? this.access[lo]! : -1;
  }

  /** Per dense field index: 1 when the model's capabilities give the field. */
  private readonly access = new Int32Array(0x8000).fill(-1);

  // ---- VM exits -----------------------------------------------------------------

  completeExit(cpu: Cpu): void {
    completeExit(this, cpu);
  }

  exitingLength(): number {
    return this.exitInfo.instructionLength;
  }

  interruptEndsHalt(cpu: Cpu): boolean {
    if (this.shutdown) return false;
    return (this.current!.values[C.PIN]! & PIN_EXTERNAL_INTERRUPT) !== 0 || (cpu.flags & IF) !== 0;
  }

  /** Decides a VM exit: records it and unwinds the instruction (virtualization.ts). */
  exit(cpu: Cpu): never {
    cpu.vmExit = true;
    throw FAULT;
  }

  /** A VM exit caused by instruction `i`: reason, qualification and the instruction's length and information. */
  exitForInstruction(cpu: Cpu, i: Insn, reason: number, info: number, qualificationLo = 0, qualificationHi = 0): never {
    this.record(i, reason, info, qualificationLo, qualificationHi);
    return this.exit(cpu);
  }

  /** The same, without unwinding: for `intercept`, whose callers return at once (Pending.VM_EXIT). */
  private instructionExit(cpu: Cpu, i: Insn, reason: number, info: number, qualificationLo = 0, qualificationHi = 0): true {
    this.record(i, reason, info, qualificationLo, qualificationHi);
    cpu.vmExit = true;
    cpu.pending |= Pending.VM_EXIT;
    return true;
  }

  private record(i: Insn, reason: number, info: number, qualificationLo: number, qualificationHi: number): void {
    const e = this.exitInfo;
    e.begin(reason);
    e.instructionLength = i.len;
    e.instructionInfo = info;
    e.qualificationLo = qualificationLo;
    e.qualificationHi = qualificationHi;
  }

  // ---- non-root decisions (chapter 26) ---------------------------------------------

  private get proc(): number { return this.current!.values[C.PROC]!; }
  private get secondary(): number {
    return this.proc & P_SECONDARY ? this.current!.values[C.PROC2]! : 0;
  }

  intercept(cpu: Cpu, i: Insn, what: Intercept): boolean {
    const proc = this.proc;
    let exits: boolean;
    switch (what) {
      case Intercept.CPUID: case Intercept.GETSEC: case Intercept.INVD: case Intercept.XSETBV: exits = true; break;
      case Intercept.HLT: exits = (proc & P_HLT) !== 0; break;
      case Intercept.INVLPG:
        if ((proc & P_INVLPG) === 0) return false;
        // Exit qualification: the linear-address operand (28.2.1).
        return this.instructionExit(cpu, i, ExitReason.INVLPG, 0, cpu.eaLo, cpu.codeSize === 8 ? cpu.eaHi : 0);
      case Intercept.RDPMC: exits = (proc & P_RDPMC) !== 0; break;
      case Intercept.RDTSC: exits = (proc & P_RDTSC) !== 0; break;
      case Intercept.RDTSCP:
        // Without "enable RDTSCP", RDTSCP is #UD in the guest (26.3).
        if ((this.secondary & S_RDTSCP) === 0) cpu.raise(Vector.UD);
        exits = (proc & P_RDTSC) !== 0;
        break;
      case Intercept.RDMSR: case Intercept.WRMSR: exits = this.msrExits(cpu, what === Intercept.WRMSR); break;
      case Intercept.WBINVD: exits = (this.secondary & S_WBINVD) !== 0; break;
      case Intercept.MONITOR: exits = (proc & P_MONITOR) !== 0; break;
      case Intercept.MWAIT:
        if ((proc & P_MWAIT) === 0) return false;
        // Qualification bit 0: the address-range monitoring hardware is armed (28.2.1).
        return this.instructionExit(cpu, i, ExitReason.MWAIT, 0, cpu.monitorArmed ? 1 : 0);
      case Intercept.RDRAND: case Intercept.RDSEED:
        if ((this.secondary & (what === Intercept.RDRAND ? S_RDRAND : S_RDSEED)) === 0) return false;
        return this.instructionExit(cpu, i, INTERCEPT_EXIT[what], registerOperandInformation(i));
      case Intercept.XSAVES: case Intercept.XRSTORS: {
        // Without "enable XSAVES/XRSTORS" they are #UD (26.3). At CPL > 0 their #GP comes first (26.1.1).
        if ((this.secondary & S_XSAVES) === 0) cpu.raise(Vector.UD);
        if (cpu.cpl > 0) return false;
        // 26.1.3: an exit iff EDX:EAX AND IA32_XSS AND the XSS-exiting bitmap has a bit set.
        // IA32_XSS has no bit above 31 here, so EDX and the bitmap's high half cannot share one.
        const eax = cpu.gpr[0]!;
        if ((eax & cpu.msrs.xss & this.current!.lo(Field.XSS_EXITING_BITMAP)) === 0) return false;
        // The memory-operand information and the displacement as qualification (28.2.1, 28.2.5).
        displacement(cpu, i);
        return this.instructionExit(cpu, i, INTERCEPT_EXIT[what],
          instructionInformation(i, -1), cpu.tHi, disp.hi);
      }
      case Intercept.PAUSE: exits = (proc & P_PAUSE) !== 0 || this.pauseLoopExits(cpu); break;
      case Intercept.INVPCID:
        if ((this.secondary & S_INVPCID) === 0) cpu.raise(Vector.UD);
        if ((proc & P_INVLPG) === 0) return false;
        // The memory operand and the type register (bits 31:28) as instruction information, the
        // displacement as qualification (28.2.5, the table for INVEPT, INVPCID and INVVPID; 28.2.1).
        displacement(cpu, i);
        return this.instructionExit(cpu, i, ExitReason.INVPCID, instructionInformation(i, -1) | (i.reg << 28), cpu.tHi, disp.hi);
      case Intercept.MOV_DR:
        if ((proc & P_MOV_DR) === 0) return false;
        // Qualification (table 28-4): DR number, direction (1 = MOV from DR), general register.
        return this.instructionExit(cpu, i, ExitReason.MOV_DR, 0, (i.reg & 7) | (i.opcode & 2 ? 0 : 1 << 4) | (i.rm << 8));
      case Intercept.LGDT: case Intercept.LIDT: case Intercept.SGDT: case Intercept.SIDT:
      case Intercept.LLDT: case Intercept.LTR: case Intercept.SLDT: case Intercept.STR:
        if ((this.secondary & S_DESCRIPTOR_TABLE) === 0) return false;
        displacement(cpu, i);
        return this.instructionExit(cpu, i, INTERCEPT_EXIT[what], descriptorTableInformation(i, what), cpu.tHi, disp.hi);
      default: exits = false;
    }
    return exits && this.instructionExit(cpu, i, INTERCEPT_EXIT[what], 0);
  }

  /**
   * PAUSE-loop exiting (26.1.3, 25.6.13): at CPL 0, a PAUSE less than PLE_GAP TSC
   * ticks after the previous one continues a spin loop; the loop exits once it has
   * lasted more than PLE_WINDOW ticks. The first PAUSE after VM entry starts a loop.
   */
  private pauseLoopExits(cpu: Cpu): boolean {
    if ((this.secondary & S_PAUSE_LOOP) === 0 || cpu.cpl !== 0) return false;
    const v = this.current!, now = cpu.now();
    if (this.pauseLoopStart < 0 || now - this.lastPause > (v.lo(Field.PLE_GAP) >>> 0)) this.pauseLoopStart = now;
    this.lastPause = now;
    return now - this.pauseLoopStart > (v.lo(Field.PLE_WINDOW) >>> 0);
  }

  /** RDMSR/WRMSR exit unless the MSR bitmaps say otherwise (26.1.3, 25.6.9). */
  private msrExits(cpu: Cpu, write: boolean): boolean {
    if ((this.proc & P_MSR_BITMAPS) === 0) return true;
    const msr = cpu.gpr[2 * 1]! >>> 0; // ECX
    let offset: number;
    if (msr <= 0x1fff) offset = 0;
    else if (msr >= 0xc0000000 && msr <= 0xc0001fff) offset = 1024;
    else return true;
    if (write) offset += 2048;
    const n = msr & 0x1fff;
    const byte = cpu.memory.read8(this.current!.num(Field.ADDRESS_OF_MSR_BITMAPS) + offset + (n >>> 3));
    return ((byte >>> (n & 7)) & 1) !== 0;
  }

  io(cpu: Cpu, i: Insn, port: number, size: number, isIn: boolean, string: boolean): void {
    const proc = this.proc;
    let exits: boolean;
    if (proc & P_IO_BITMAPS) {
      // 26.1.3: one bit per port in bitmap A (0-7FFFH) or B (8000H-FFFFH); wrapping past FFFFH exits.
      exits = port + size > 0x10000;
      for (let p = port; !exits && p < port + size; p++) {
        const base = this.current!.num(p < 0x8000 ? Field.ADDRESS_OF_IO_BITMAP_A : Field.ADDRESS_OF_IO_BITMAP_B);
        exits = ((cpu.memory.read8(base + ((p & 0x7fff) >>> 3)) >>> (p & 7)) & 1) !== 0;
      }
    } else {
      exits = (proc & P_UNCONDITIONAL_IO) !== 0;
    }
    if (!exits) return;
    // Qualification (table 28-5): size - 1, direction (1 = IN), string, REP, immediate operand, port.
    const q = (size - 1) | (isIn ? 8 : 0) | (string ? 16 : 0) | (string && i.rep !== 0 ? 32 : 0) |
      (!string && i.def.imm !== undefined ? 64 : 0) | (port << 16);
    const e = this.exitInfo;
    e.begin(ExitReason.IO_INSTRUCTION);
    e.instructionLength = i.len;
    e.qualificationLo = q;
    if (string) {
      // INS/OUTS: the linear address of the memory operand, and the address size and segment (28.2.1, 28.2.5).
      e.hasLinear = true;
      e.linearLo = cpu.eaLo; e.linearHi = cpu.codeSize === 8 ? cpu.eaHi : 0;
      e.instructionInfo = ((i.adSize === 2 ? 0 : i.adSize === 4 ? 1 : 2) << 7) | ((isIn ? 0 : i.seg) << 15);
    }
    this.exit(cpu);
  }

  writeCr(cpu: Cpu, i: Insn, cr: number, lo: number, hi: number, source: number): number {
    const v = this.current!, proc = this.proc;
    const q = (kind: number): number => cr | (kind << 4) | (source >= 0 ? source << 8 : 0);
    if (cr === 0 || cr === 4) {
      const maskField = cr === 0 ? Field.CR0_GUEST_HOST_MASK : Field.CR4_GUEST_HOST_MASK;
      const shadowField = cr === 0 ? Field.CR0_READ_SHADOW : Field.CR4_READ_SHADOW;
      const mask = v.lo(maskField), shadow = v.lo(shadowField);
      const current = cr === 0 ? cpu.cr0 : cpu.cr4;
      if (source === -1) {
        // CLTS (26.1.3): exits when the host owns TS and the shadow's TS is 1; a host-owned TS is left alone.
        if (mask & 8) {
          if (shadow & 8) this.exitForInstruction(cpu, i, ExitReason.CONTROL_REGISTER_ACCESS, 0, q(2));
          return current;
        }
        return lo;
      }
      if (source === -2) {
        // LMSW (26.1.3): exits if it would set a host-owned PE that the shadow has clear, or write a
        // host-owned MP, EM or TS with a value other than the shadow's; the qualification holds the operand.
        const src = lo & 0xffff, owned = mask & 0xf;
        if ((owned & 1 && !(shadow & 1) && src & 1) || ((src ^ shadow) & owned & 0xe) !== 0) {
          const e = this.exitInfo;
          e.begin(ExitReason.CONTROL_REGISTER_ACCESS);
          e.instructionLength = i.len;
          e.qualificationLo = (3 << 4) | (i.isReg ? 0 : 1 << 6) | (src << 16);
          if (!i.isReg) { e.hasLinear = true; e.linearLo = cpu.eaLo; e.linearHi = cpu.codeSize === 8 ? cpu.eaHi : 0; }
          this.exit(cpu);
        }
        return (lmswValue(current, src) & ~owned) | (current & owned);
      }
      // MOV to CR0/CR4 (26.1.3): exits if a host-owned bit (all 64 of the natural-width mask) would differ from the shadow.
      if (((lo ^ shadow) & mask) !== 0 || ((hi ^ v.hi(shadowField)) & v.hi(maskField)) !== 0) {
        this.exitForInstruction(cpu, i, ExitReason.CONTROL_REGISTER_ACCESS, 0, q(0));
      }
      return (lo & ~mask) | (current & mask);
    }
    if (cr === 3 && (proc & P_CR3_LOAD) !== 0) {
      // 26.1.3: no exit for a value among the first CR3-target-count target values.
      const n = v.lo(Field.CR3_TARGET_COUNT);
      let hit = false;
      for (let k = 0; k < n && k < CR3_TARGETS.length; k++) {
        if (v.lo(CR3_TARGETS[k]!) === lo && v.hi(CR3_TARGETS[k]!) === hi) hit = true;
      }
      if (!hit) this.exitForInstruction(cpu, i, ExitReason.CONTROL_REGISTER_ACCESS, 0, q(0));
    }
    if (cr === 8 && (proc & P_CR8_LOAD) !== 0) this.exitForInstruction(cpu, i, ExitReason.CONTROL_REGISTER_ACCESS, 0, q(0));
    if (cr === 8 && (proc & P_TPR_SHADOW) !== 0) {
      // 30.1.2 "TPR Virtualization" (MOV to CR8): VTPR[7:4] = source[3:0], the rest of VTPR cleared;
      // the processor's TPR is not touched. Going below the TPR threshold exits after the instruction.
      if (hi !== 0 || (lo & ~0xf) !== 0) cpu.raise(Vector.GP, 0);
      cpu.memory.write32(this.virtualApic() + 0x80, lo << 4);
      if (lo < (v.lo(Field.TPR_THRESHOLD) & 0xf)) this.tprBelowThreshold = true;
      return -1;
    }
    return lo;
  }

  /** Physical address of the virtual-APIC page (25.6.8). */
  private virtualApic(): number {
    return this.current!.num(Field.VIRTUAL_APIC_ADDRESS);
  }

  readCr(cpu: Cpu, i: Insn, cr: number, destination: number): number {
    const v = this.current!, proc = this.proc;
    const q = cr | (1 << 4) | (destination >= 0 ? destination << 8 : 0);
    cpu.tHi = 0;
    if (cr === 0 || cr === 4) {
      // 26.3: host-owned bits read from the read shadow, all 64 of them.
      const maskField = cr === 0 ? Field.CR0_GUEST_HOST_MASK : Field.CR4_GUEST_HOST_MASK;
      const shadowField = cr === 0 ? Field.CR0_READ_SHADOW : Field.CR4_READ_SHADOW;
      const mask = v.lo(maskField), shadow = v.lo(shadowField);
      cpu.tHi = v.hi(shadowField) & v.hi(maskField);
      return ((cr === 0 ? cpu.cr0 : cpu.cr4) & ~mask) | (shadow & mask);
    }
    if (cr === 3) {
      if (proc & P_CR3_STORE) this.exitForInstruction(cpu, i, ExitReason.CONTROL_REGISTER_ACCESS, 0, q);
      cpu.tHi = cpu.cr3Hi;
      return cpu.cr3Lo;
    }
    if (proc & P_CR8_STORE) this.exitForInstruction(cpu, i, ExitReason.CONTROL_REGISTER_ACCESS, 0, q);
    // With the TPR shadow, MOV from CR8 reads VTPR[7:4] from the virtual-APIC page (30.1.1, 30.1.2).
    if (proc & P_TPR_SHADOW) return (cpu.memory.read8(this.virtualApic() + 0x80) >>> 4) & 0xf;
    return cpu.cr8.readCr8();
  }

  /**
   * Exits during event delivery record the event in the IDT-vectoring
   * information (28.2.4); during a software interrupt or exception, the length
   * of its instruction too (28.2.5), at which RIP then points (28.3.3).
   */
  exitDuringDelivery(cpu: Cpu, vector: number, kind: number, code: number): void {
    const e = this.exitInfo;
    const t = this.injecting !== 0 ? (this.injecting >>> 8) & 7 : interruptionType(kind);
    e.idtVectoringInfo = (vector | (t << 8) | (code >= 0 ? 1 << 11 : 0) | 0x80000000) | 0;
    e.idtVectoringError = code >= 0 ? code : 0;
    if (t >= 4) e.instructionLength = cpu.excLength;
  }

  exception(cpu: Cpu, vector: number, kind: number, code: number, during: number, duringKind: number, duringCode: number): void {
    if (this.injecting !== 0 && during < 0) return; // the injected event itself is not intercepted (27.6.1)
    const v = this.current!;
    let exits = kind !== 1 && ((v.lo(Field.EXCEPTION_BITMAP) >>> vector) & 1) !== 0; // INT n is not an exception
    if (vector === Vector.PF) {
      // 26.2: with bit 14 set, #PF exits iff (PFEC & mask) = match; with it clear, iff they differ.
      const match = (code & v.lo(Field.PAGE_FAULT_ERROR_CODE_MASK)) === v.lo(Field.PAGE_FAULT_ERROR_CODE_MATCH);
      exits = exits === match;
    }
    if (!exits) {
      // MTF: a VM exit follows the delivery, before the handler's first instruction (26.5.2).
      if (this.mtfAt >= 0) this.mtfAt = cpu.insnCount;
      return;
    }
    const e = this.exitInfo;
    e.begin(ExitReason.EXCEPTION_OR_NMI);
    const type = interruptionType(kind);
    e.interruptionInfo = (vector | (type << 8) | (code >= 0 ? 1 << 11 : 0) | 0x80000000) | 0;
    // Bit 12: the fault came from an IRET that had ended NMI blocking (28.2.3); not for exits during delivery.
    if (during < 0 && iretUnblockedNmi(cpu)) e.interruptionInfo |= NMI_UNBLOCKING_DUE_TO_IRET;
    e.interruptionError = code >= 0 ? code : 0;
    if (type === 5 || type === 6) {
      // A software exception exits with RIP at its instruction, and that instruction's length (28.2.5, 28.3.3).
      e.instructionLength = cpu.excLength;
      jumpRelative(cpu, cpu.codeSize, -cpu.excLength);
    }
    if (during >= 0) this.exitDuringDelivery(cpu, during, duringKind, duringCode);
    if (vector === Vector.PF) {
      // The qualification holds the faulting address; CR2 is not loaded (28.1).
      e.qualificationLo = cpu.cr2Lo; e.qualificationHi = cpu.cr2Hi;
      cpu.cr2Lo = cpu.cr2PrevLo; cpu.cr2Hi = cpu.cr2PrevHi;
    } else if (vector === Vector.DB && kind === 0) {
      // A #DB exit: the qualification holds B3-B0, BD, BS (and BT) as DR6 would; DR6 is not updated (28.1, table 28-1).
      e.qualificationLo = cpu.excDr6;
      cpu.excDr6 = 0;
    }
    this.exit(cpu);
  }

  /**
   * A task switch in non-root operation is a VM exit (26.4.2), fault-like: RIP
   * at the instruction, or the event in the IDT-vectoring information (28.2.4,
   * recorded by exitDuringDelivery). Qualification (28.2.1, table "Exit
   * Qualification for Task Switches"): bits 15:0 the selector of the new TSS,
   * bits 31:30 the source. The instruction length for CALL, IRET, JMP (28.2.5).
   * An IRET has not completed: it has not ended blocking by NMI either.
   */
  taskSwitch(cpu: Cpu, selector: number, source: number, length: number): void {
    if (source === TASK_SWITCH_IRET && iretUnblockedNmi(cpu)) cpu.nmiBlocked = true;
    const e = this.exitInfo;
    e.begin(ExitReason.TASK_SWITCH);
    e.qualificationLo = ((selector & 0xffff) | (source << 30)) | 0;
    e.instructionLength = length;
    this.exit(cpu);
  }

  tripleFault(cpu: Cpu): void {
    this.exitInfo.begin(ExitReason.TRIPLE_FAULT);
    this.exit(cpu);
  }

  /**
   * Events at an instruction boundary in non-root operation, in priority order:
   * event injection after VM entry (27.6), INIT and SIPI (26.2), NMIs (NMI exiting
   * or delivery), NMI-window and interrupt-window exits (27.7.5, 27.7.6), external
   * interrupts (external-interrupt exiting, acknowledge on exit; or delivery).
   */
  acceptEvents(cpu: Cpu, limit: number): number {
    if (this.injectPending) injectEvent(this, cpu);
    // TPR below threshold (30.1.2): a trap-like exit, RIP after the MOV to CR8.
    if (this.tprBelowThreshold) {
      this.tprBelowThreshold = false;
      this.exitInfo.begin(ExitReason.TPR_BELOW_THRESHOLD);
      this.exit(cpu);
    }
    const source = cpu.interrupts, pin = this.current!.values[C.PIN]!, proc = this.proc;
    if (cpu.startupPending && source !== null) {
      cpu.startupPending = false;
      // INIT always exits (26.2); a SIPI exits in wait-for-SIPI with the vector as qualification.
      if (source.takeInit?.()) { this.exitInfo.begin(ExitReason.INIT_SIGNAL); this.exit(cpu); }
      const vector = source.takeSipi?.() ?? -1;
      if (vector >= 0 && cpu.waitForSipi) {
        this.exitInfo.begin(ExitReason.SIPI);
        this.exitInfo.qualificationLo = vector;
        this.exit(cpu);
      }
    }
    if (cpu.waitForSipi) return limit;
    // Monitor trap flag (26.5.2): after one guest instruction, or right after an injected or delivered event.
    if (this.mtfAt >= 0) {
      if (cpu.insnCount >= this.mtfAt) { this.exitInfo.begin(ExitReason.MONITOR_TRAP_FLAG); this.exit(cpu); }
      limit = Math.min(limit, this.mtfAt - cpu.insnCount);
    }
    if (this.pendingDebug !== 0) {
      // A #DB trap with the priority of "traps on the previous instruction": after MTF, before NMIs (27.7.3).
      cpu.excDr6 = this.pendingDebug;
      this.pendingDebug = 0;
      cpu.halted = false;
      cpu.excVector = Vector.DB; cpu.excKind = 0; cpu.excHasCode = false; cpu.excCode = 0; cpu.excTrap = true;
      deliverException(cpu);
      return limit;
    }
    if (this.shutdown) {
      // In shutdown, an NMI is a VM exit (with NMI exiting) or ends the state by delivery; nothing else gets in.
      if (source === null || source.hasNmi === undefined || !source.hasNmi()) return limit;
      // An NMI that exits leaves the shutdown state to be saved; one delivered to the guest ends it.
      if ((pin & PIN_NMI_EXITING) === 0) { this.shutdown = false; cpu.halted = false; }
    }
    // VMX-preemption timer (26.5.1): counts down with the TSC and exits at zero, in HLT too.
    if (cpu.eventDeadline !== Infinity) {
      const now = cpu.now();
      if (now >= cpu.eventDeadline) { this.exitInfo.begin(ExitReason.VMX_PREEMPTION_TIMER_EXPIRED); this.exit(cpu); }
      limit = Math.min(limit, cpu.eventDeadline - now);
    }
    const shadow = cpu.insnCount < cpu.interruptShadowEnd;
    const nmi = !shadow && source !== null && source.hasNmi !== undefined && source.hasNmi() && !cpu.nmiBlocked;
    if (nmi && (pin & PIN_NMI_EXITING)) {
      source!.takeNmi!();
      const e = this.exitInfo;
      e.begin(ExitReason.EXCEPTION_OR_NMI);
      e.interruptionInfo = (Vector.NMI | (2 << 8) | 0x80000000) | 0;
      this.exitBlocksNmi = true;
      this.exit(cpu);
    }
    // NMI window: no virtual-NMI blocking and no MOV SS blocking (27.7.6).
    if ((proc & P_NMI_WINDOW) && !cpu.nmiBlocked && !(shadow && cpu.shadowBySs)) {
      this.exitInfo.begin(ExitReason.NMI_WINDOW);
      this.exit(cpu);
    }
    if (nmi) {
      // Delivered to the guest: NMIs are not masked by RFLAGS.IF (SDM vol. 3A, 6.7.1).
      source!.takeNmi!();
      cpu.nmiBlocked = true;
      deliverNmi(cpu);
      return limit;
    }
    if (shadow) return Math.min(limit, cpu.interruptShadowEnd - cpu.insnCount);
    // Interrupt window: RFLAGS.IF = 1 and no STI or MOV SS blocking (27.7.5).
    if ((proc & P_INTERRUPT_WINDOW) && (cpu.flags & IF)) {
      this.exitInfo.begin(ExitReason.INTERRUPT_WINDOW);
      this.exit(cpu);
    }
    if (source === null) return limit;
    if (pin & PIN_EXTERNAL_INTERRUPT) {
      // External interrupts exit whatever RFLAGS.IF says (26.2); with "acknowledge interrupt on exit"
      // the vector is taken from the controller into the interruption information.
      if (!source.hasInterrupt()) return limit;
      const e = this.exitInfo;
      e.begin(ExitReason.EXTERNAL_INTERRUPT);
      if (this.current!.lo(Field.PRIMARY_VM_EXIT_CONTROLS) & X_ACK_INTERRUPT) {
        e.interruptionInfo = (source.acknowledge() | 0x80000000) | 0;
      }
      // A guest in HLT is saved as in HLT: the exit came instead of the wake-up (28.3.4).
      this.exit(cpu);
    }
    if (!(cpu.flags & IF)) return limit;
    if (source.hasInterrupt()) deliverInterrupt(cpu, source.acknowledge());
    return limit;
  }
}


/** CR3-target value fields (25.6.7). */
const CR3_TARGETS = [Field.CR3_TARGET_VALUE_0, Field.CR3_TARGET_VALUE_1, Field.CR3_TARGET_VALUE_2, Field.CR3_TARGET_VALUE_3];

const disp = { hi: 0 };

/**
 * The exit qualification of an instruction with a memory operand (28.2.1):
 * its displacement sign-extended to 64 bits, or with RIP-relative addressing
 * the displacement plus the next instruction's RIP; 0 for a register operand.
 * Bits 31:0 go to cpu.tHi, bits 63:32 to disp.hi.
 */
function displacement(cpu: Cpu, i: Insn): void {
  if (i.isReg) { cpu.tHi = 0; disp.hi = 0; return; }
  if (i.base === BASE_RIP) {
    const s = (cpu.ripLo >>> 0) + i.disp;
    cpu.tHi = s | 0;
    disp.hi = (cpu.ripHi + (s > 0xffffffff ? 1 : s < 0 ? -1 : 0)) | 0;
    return;
  }
  const d = i.adSize === 2 ? (i.disp << 16) >> 16 : i.disp | 0;
  cpu.tHi = d;
  disp.hi = d < 0 ? -1 : 0;
}

/**
 * The interruption type of an event (25.8.3, 25.9.2): external interrupt 0,
 * NMI 2, hardware exception 3, software interrupt 4, privileged software
 * exception (INT1) 5, software exception (INT3, INTO) 6. `kind` is EventKind.
 */
function interruptionType(kind: number): number {
  switch (kind) {
    case 1: return 4;
    case 2: return 6;
    case 3: return 5;
    case 4: return 0;
    case 5: return 2;
    default: return 3;
  }
}

/**
 * VM-exit instruction information for LGDT, LIDT, SGDT, SIDT (table 28-10) and
 * LLDT, LTR, SLDT, STR (table 28-11).
 */
function descriptorTableInformation(i: Insn, what: Intercept): number {
  const identity = what === Intercept.SGDT || what === Intercept.SLDT ? 0 : what === Intercept.SIDT || what === Intercept.STR ? 1
    : what === Intercept.LGDT || what === Intercept.LLDT ? 2 : 3;
  return instructionInformation(i, -1) | (identity << 28) | (i.opSize === 4 ? 1 << 11 : 0);
}

/**
 * What a successful VMXON leaves behind (SDM vol. 3C, 31.3 VMXON "Operation"),
 * for root-mode software written in TypeScript (src/hv) and test harnesses:
 * CR0.NE and CR4.VMXE set, IA32_FEATURE_CONTROL locked with VMX outside SMX,
 * the VMXON region with the revision identifier, no current VMCS, INIT blocked.
 */
export function enterVmxOperation(vmx: Vmx, cpu: Cpu, region: number): void {
  cpu.cr0 |= 1 << 5;
  cpu.cr4 |= CR4_VMXE;
  cpu.msrs.featureControl = FEATURE_CONTROL_LOCK | FEATURE_CONTROL_VMX_OUTSIDE_SMX;
  cpu.memory.write32(region, vmx.caps.revision);
  vmx.on = true;
  vmx.vmxonPointer = region;
  vmx.current = null;
  vmx.held.clear();
  cpu.initBlocked = true;
}

/** What VMPTRLD of a VMCS built in TypeScript leaves behind (31.3): current and active, its region's revision set. */
export function makeCurrent(vmx: Vmx, cpu: Cpu, v: Vmcs): void {
  cpu.memory.write32(v.address, vmx.caps.revision);
  vmx.held.set(v.address, v);
  vmx.current = v;
}

/**
 * Attaches a VMX unit to the processor: its instructions, non-root decisions and
 * capability MSRs. The unit reports `offered`, with IA32_VMX_CR4_FIXED1 limited
 * to the CR4 bits the processor supports: a bit reserved in CR4 is one VMX
 * operation cannot allow to be 1 (SDM vol. 3D, A.8).
 */
export function attachVmx(cpu: Cpu, offered: VmxCapabilities = SKYLAKE_VMX): Vmx {
  const handler = {
    msrLo: 0, msrHi: 0,
    rdmsr(msr: number): boolean {
      const value = capabilityMsr(caps, msr);
      if (value === null) return false;
      [handler.msrLo, handler.msrHi] = value;
      return true;
    },
    wrmsr: (): boolean => false, // the capability MSRs are read-only
  };
  // Attached first: IA32_VMX_BASIC makes CPUID announce VMX, and with it CR4.VMXE.
  cpu.msrs.attach(0x480, 0x493, handler);
  const caps: VmxCapabilities = { ...offered, cr4Fixed1: (offered.cr4Fixed1 & cr4Supported(cpu)) >>> 0 };
  const vmx = new Vmx(caps);
  vmx.ept = new Ept(cpu, vmx.exitInfo, () => vmx.exit(cpu));
  cpu.virt = vmx;
  return vmx;
}

