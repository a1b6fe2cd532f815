/**
 * What the processor asks of a hardware-assist unit. The processor knows
 * nothing of VMX (DESIGN, layers): the VMX instructions decode here and call
 * `vmx`, and the few instructions and events that can leave non-root operation
 * call the unit while `cpu.nonRoot` is set. Without a unit, VMX instructions
 * are #UD and nothing is intercepted.
 *
 * A method that decides on a VM exit performs it by throwing (like a fault,
 * the instruction is unwound); the run loop then calls `completeExit`.
 */
import type { Cpu } from './cpu.js';
import type { Insn } from './insn.js';
import { Vector } from './regs.js';

/** The VMX instructions (SDM vol. 3C, chapter 31 "VMX Instruction Reference"). */
export const enum VmxInstruction {
  VMXON, VMXOFF, VMCLEAR, VMPTRLD, VMPTRST, VMREAD, VMWRITE, VMLAUNCH, VMRESUME, VMCALL, INVEPT, INVVPID, VMFUNC,
}

/**
 * Instructions whose only operand for the exit decision is the instruction
 * itself (SDM vol. 3C, 26.1.2 "Instructions That Cause VM Exits Unconditionally"
 * and 26.1.3 "Instructions That Cause VM Exits Conditionally").
 */
export const enum Intercept {
  CPUID, GETSEC, INVD, XSETBV, HLT, INVLPG, RDPMC, RDTSC, RDTSCP, RDMSR, WRMSR, PAUSE, WBINVD,
  MWAIT, MONITOR, RDRAND, RDSEED, INVPCID, LGDT, LIDT, SGDT, SIDT, LLDT, LTR, SLDT, STR, MOV_DR, XSAVES, XRSTORS,
}

export interface Virtualization {
  /** A VMX instruction, in root or non-root operation. */
  vmx(cpu: Cpu, i: Insn, op: VmxInstruction): void;
  /**
   * Non-root: whether the controls make this instruction a VM exit. When true
   * the exit is recorded and Pending.VM_EXIT set; the handler must return at
   * once without effect (the run loop takes the instruction back). Faults the
   * decision itself raises (#UD for a disabled RDTSCP, INVPCID) unwind as usual.
   */
  intercept(cpu: Cpu, i: Insn, what: Intercept): boolean;
  /** Non-root: IN, OUT, INS, OUTS to `port` with operand size `size` (26.1.3, I/O bitmaps). */
  io(cpu: Cpu, i: Insn, port: number, size: number, isIn: boolean, string: boolean): void;
  /**
   * Non-root MOV to CR0, CR3, CR4 or CR8 from register `source` (value hi:lo),
   * CLTS (source -1, lo = CR0 with TS clear) or LMSW (source -2, lo = its 16-bit
   * operand): exits, or returns bits 31:0 of the value to write (CR0 and CR4 bits
   * that the guest/host mask owns keep their current value, 26.3), or -1 for a
   * MOV to CR8 that the unit virtualized (nothing left to write).
   */
  writeCr(cpu: Cpu, i: Insn, cr: number, lo: number, hi: number, source: number): number;
  /**
   * Non-root MOV from CR0/CR3/CR4/CR8 (destination register) or SMSW (-1):
   * exits, or returns bits 31:0 the guest reads, bits 63:32 in cpu.tHi.
   */
  readCr(cpu: Cpu, i: Insn, cr: number, destination: number): number;
  /**
   * Non-root: exception `vector` of `kind` (interrupts.ts EventKind) with error
   * code `code` (-1: none) is about to be delivered; exits if the exception bitmap
   * says so (26.2). `during` is the vector of the event whose delivery raised it
   * (-1: none), with its kind and error code (for the IDT-vectoring information, 28.2.4).
   */
  exception(cpu: Cpu, vector: number, kind: number, code: number, during: number, duringKind: number, duringCode: number): void;
  /** Non-root: the VM exit just decided arose while delivering event `vector` of `kind` with error code `code` (-1: none). */
  exitDuringDelivery(cpu: Cpu, vector: number, kind: number, code: number): void;
  /** Non-root: takes the events waiting at an instruction boundary (26.7, 27.7); returns what acceptInterrupt would. */
  acceptEvents(cpu: Cpu, limit: number): number;
  /**
   * Non-root: a task switch to the TSS `selector` from `source` (task-switch.ts
   * TaskSwitchSource: 0 CALL, 1 IRET, 2 JMP, 3 task gate in the IDT), by an
   * instruction `length` bytes long (0 for an event), once the checks that
   * precede it passed: a VM exit, always (26.4.2 "Treatment of Task Switches").
   */
  taskSwitch(cpu: Cpu, selector: number, source: number, length: number): void;
  /** Non-root: a triple fault exits instead of shutting down (26.2). */
  tripleFault(cpu: Cpu): void;
  /** Finishes the VM exit that a method above started. */
  completeExit(cpu: Cpu): void;
  /** Length of the instruction whose VM exit `intercept` recorded. */
  exitingLength(): number;
  /** Non-root: whether an external interrupt would end the guest's HLT now (delivered, or as a VM exit). */
  interruptEndsHalt(cpu: Cpu): boolean;
}

function ud(cpu: Cpu): never { return cpu.raise(Vector.UD); }
function none(): void {}

/** No hardware assist: VMX instructions are undefined (CPUID.1:ECX.VMX = 0). */
export const NO_VIRTUALIZATION: Virtualization = {
  vmx: ud,
  intercept: () => false,
  io: none,
  writeCr: (_cpu, _i, _cr, lo) => lo,
  readCr: () => 0,
  exception: none,
  exitDuringDelivery: none,
  acceptEvents: (_cpu, limit) => limit,
  taskSwitch: none,
  tripleFault: none,
  completeExit: none,
  exitingLength: () => 0,
  interruptEndsHalt: () => false,
};
