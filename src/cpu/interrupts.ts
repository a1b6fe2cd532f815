/**
 * Delivery of exceptions and interrupts through the IVT (real-address mode) or
 * the IDT (protected and IA-32e mode), SDM vol. 3A chapter 6 ("Interrupt and
 * Exception Handling") and vol. 2 "INT n/INTO/INT3/INT1" Operation; and the
 * double-fault rules of 6.15 (table 6-5) ending in shutdown on a triple fault.
 */
import { FAULT, type Cpu } from './cpu.js';
import { SegAttr } from './regs.js';
import { materialize } from './flags.js';
import { jumpRelative, push } from './operands.js';
import { AC, CS, IF, NT, RF, RSP, SS, TF, VM, Vector } from './regs.js';
import {
  attrOf, desc, dplOf, isCode, isConforming, loadCodeSegment, loadNullStack, loadStackSegment, longMode,
  readDescriptor, readTss32Stack, readTss64, tssValue,
} from './segments.js';
import { checkNewStackFrame } from './segment-limits.js';
import { interruptTask } from './task-switch.js';

/** What raised the event: decides the EXT bit, gate-DPL checks and the saved RIP. */
export const enum EventKind {
  /** A fault or abort raised by an instruction or the processor: EXT = 1. */
  EXCEPTION = 0,
  /** INT n: the gate's DPL is checked against CPL; EXT = 0. */
  SOFTWARE_INTERRUPT,
  /** INT3 and INTO: like INT n. */
  SOFTWARE_EXCEPTION,
  /** INT1 (ICEBP): no DPL check, EXT = 1 (SDM vol. 2, INT1). */
  PRIVILEGED_SOFTWARE_EXCEPTION,
  /** An external interrupt (INTR): EXT = 1. */
  EXTERNAL,
  /** A non-maskable interrupt: EXT = 1, vector 2. */
  NMI,
}

/** Exceptions that push an error code (SDM vol. 3A, 6.13, table 6-1). */
export function hasErrorCode(vector: number): boolean {
  return vector === 8 || (vector >= 10 && vector <= 14) || vector === 17 || vector === 21;
}

const enum FaultClass { BENIGN, CONTRIBUTORY, PAGE_FAULT, DOUBLE_FAULT }

/** SDM vol. 3A, 6.15, table 6-4. */
function classOf(vector: number): FaultClass {
  if (vector === 14) return FaultClass.PAGE_FAULT;
  if (vector === 8) return FaultClass.DOUBLE_FAULT;
  if (vector === 0 || (vector >= 10 && vector <= 13)) return FaultClass.CONTRIBUTORY;
  return FaultClass.BENIGN;
}

/**
 * Table 6-5 (SDM vol. 3A, 6.15, "Conditions for Generating a Double Fault"):
 * what exception `second`, raised while delivering exception `first`, becomes:
 * `second` itself (handled serially), #DF, or -1 for a triple fault (shutdown).
 */
export function secondException(first: number, second: number): number {
  const c1 = classOf(first), c2 = classOf(second);
  if (c1 === FaultClass.DOUBLE_FAULT && c2 !== FaultClass.BENIGN) return -1;
  if ((c1 === FaultClass.CONTRIBUTORY && c2 === FaultClass.CONTRIBUTORY) ||
      (c1 === FaultClass.PAGE_FAULT && c2 !== FaultClass.BENIGN)) return Vector.DF;
  return second;
}

/** State a failed delivery restores before the next fault is delivered. */
const saved = {
  rspLo: 0, rspHi: 0, flags: 0, cpl: 0,
  csSel: 0, csBaseLo: 0, csBaseHi: 0, csLimit: 0, csAttr: 0,
  ssSel: 0, ssBaseLo: 0, ssBaseHi: 0, ssLimit: 0, ssAttr: 0,
};

function save(cpu: Cpu): void {
  saved.rspLo = cpu.gpr[2 * RSP]!; saved.rspHi = cpu.gpr[2 * RSP + 1]!;
  saved.flags = materialize(cpu); saved.cpl = cpu.cpl;
  saved.csSel = cpu.segSel[CS]!; saved.csBaseLo = cpu.segBase[2 * CS]!; saved.csBaseHi = cpu.segBase[2 * CS + 1]!;
  saved.csLimit = cpu.segLimit[CS]!; saved.csAttr = cpu.segAttr[CS]!;
  saved.ssSel = cpu.segSel[SS]!; saved.ssBaseLo = cpu.segBase[2 * SS]!; saved.ssBaseHi = cpu.segBase[2 * SS + 1]!;
  saved.ssLimit = cpu.segLimit[SS]!; saved.ssAttr = cpu.segAttr[SS]!;
}

function restore(cpu: Cpu): void {
  cpu.gpr[2 * RSP] = saved.rspLo; cpu.gpr[2 * RSP + 1] = saved.rspHi;
  cpu.rflags = saved.flags; cpu.cpl = saved.cpl;
  cpu.setSegment(CS, saved.csSel, saved.csBaseLo, saved.csBaseHi, saved.csLimit, saved.csAttr);
  cpu.setSegment(SS, saved.ssSel, saved.ssBaseLo, saved.ssBaseHi, saved.ssLimit, saved.ssAttr);
}

/**
 * Delivers the exception the processor just raised (cpu.excVector, excCode),
 * applying the double-fault rules when delivery itself faults. RIP is the
 * saved return address (the faulting instruction, or the next one for traps).
 */
export function deliverException(cpu: Cpu): void {
  deliverEvent(cpu, cpu.excVector, cpu.excKind, cpu.excHasCode ? cpu.excCode : -1);
}

/** The debug conditions of the #DB being raised reach DR6 (SDM vol. 3B, 18.2.3): as it is delivered, or reported. */
export function takeDebugStatus(cpu: Cpu): void {
  cpu.dr6 |= cpu.excDr6;
  cpu.excDr6 = 0;
}

/** Delivers an external interrupt (the vector the controller acknowledged). */
export function deliverInterrupt(cpu: Cpu, vector: number): void {
  cpu.halted = false;
  deliverEvent(cpu, vector, EventKind.EXTERNAL, -1);
}

/** Delivers an NMI through vector 2 (SDM vol. 3A, 6.7); the caller has blocked further NMIs. */
export function deliverNmi(cpu: Cpu): void {
  cpu.halted = false;
  deliverEvent(cpu, Vector.NMI, EventKind.NMI, -1);
}

/** Delivers an event; a fault during delivery follows the double-fault rules (table 6-5). */
function deliverEvent(cpu: Cpu, first: number, kind: EventKind, firstCode: number): void {
  let vector = first, code = firstCode;
  let previous = -1;
  // The event whose delivery raised the one being delivered (-1: none), for VMX's IDT-vectoring information.
  let during = -1, duringKind = 0, duringCode = -1;
  for (;;) {
    save(cpu);
    const k = previous < 0 ? kind : EventKind.EXCEPTION;
    let delivering = false;
    try {
      // In VMX non-root operation the exception bitmap may turn the event into a VM exit (SDM vol. 3C, 26.2).
      if (cpu.nonRoot && k !== EventKind.EXTERNAL && k !== EventKind.NMI) cpu.virt.exception(cpu, vector, k, code, during, duringKind, duringCode);
      if (vector === Vector.DB) takeDebugStatus(cpu);
      delivering = true;
      deliver(cpu, vector, k, code);
      return;
    } catch (e) {
      if (e !== FAULT) throw e;
      restore(cpu);
      // The exception bitmap's own exit for this event (26.2) is complete as it is.
      if (cpu.vmExit && !delivering) throw e;
      // A fault while delivering INT n, INT3, INTO or INT1 is a fault of that
      // instruction: it is reported with RIP at the instruction (vol. 2, INT n "Operation"),
      // and so is a VM exit the delivery causes (vol. 3C, 28.3.3).
      if (k === EventKind.SOFTWARE_INTERRUPT || k === EventKind.SOFTWARE_EXCEPTION || k === EventKind.PRIVILEGED_SOFTWARE_EXCEPTION) {
        jumpRelative(cpu, cpu.codeSize, -cpu.excLength);
      }
      if (cpu.vmExit) {
        // A VM exit from the delivery itself (an EPT violation on the IDT or stack) records the event (28.2.4).
        cpu.virt.exitDuringDelivery(cpu, vector, k, code);
        throw e;
      }
      during = vector; duringKind = k; duringCode = code;
      const second = cpu.excVector;
      // In VMX non-root operation the exception that faulted the delivery meets the exception bitmap
      // before table 6-5 does: if it exits, the exit is one during delivery of the first event, which the
      // IDT-vectoring information records (SDM vol. 3C, 26.2, 28.2.4); only otherwise can it become #DF.
      if (cpu.nonRoot) cpu.virt.exception(cpu, second, EventKind.EXCEPTION, cpu.excHasCode ? cpu.excCode : -1, during, duringKind, duringCode);
      const c1 = classOf(vector), c2 = classOf(second);
      if (c1 === FaultClass.DOUBLE_FAULT && c2 !== FaultClass.BENIGN) {
        // Triple fault: shutdown (SDM vol. 3A, 6.15, "Interrupt 8"), or a VM exit in non-root operation.
        if (cpu.nonRoot) cpu.virt.tripleFault(cpu);
        cpu.stop({ kind: 'shutdown' });
        return;
      }
      if ((c1 === FaultClass.CONTRIBUTORY && c2 === FaultClass.CONTRIBUTORY) ||
          (c1 === FaultClass.PAGE_FAULT && c2 !== FaultClass.BENIGN)) {
        previous = previous < 0 ? vector : previous;
        vector = Vector.DF;
        code = 0;
      } else {
        previous = vector;
        vector = second;
        code = cpu.excHasCode ? cpu.excCode : -1;
      }
    }
  }
}

/**
 * Delivers event `vector` through the IVT or IDT; `code` is the error code to
 * push, or -1. Raises (unwinding with no visible state change besides what
 * restore() puts back) when the delivery faults.
 */
export function deliver(cpu: Cpu, vector: number, kind: EventKind, code: number): void {
  const ext = kind === EventKind.EXCEPTION || kind === EventKind.EXTERNAL || kind === EventKind.NMI ||
    kind === EventKind.PRIVILEGED_SOFTWARE_EXCEPTION ? 1 : 0;
  if (!(cpu.cr0 & 1)) { deliverReal(cpu, vector); return; }
  if (cpu.flags & VM) cpu.raise(Vector.GP, 0); // virtual-8086 mode is not modelled beyond this refusal
  if (longMode(cpu)) deliverLong(cpu, vector, kind, code, ext);
  else deliverProtected(cpu, vector, kind, code, ext);
}

/** Real-address mode: IVT entry of 4 bytes; push FLAGS, CS, IP (SDM vol. 3A, 20.1.4). */
function deliverReal(cpu: Cpu, vector: number): void {
  if (vector * 4 + 3 > cpu.idtrLimit) cpu.raise(Vector.GP, 0);
  const entry = (cpu.idtrLo + vector * 4) | 0;
  const ip = cpu.mmu.read16(entry, 0), cs = cpu.mmu.read16((entry + 2) | 0, 0);
  const flags = materialize(cpu);
  push(cpu, 2, flags, 0);
  push(cpu, 2, cpu.segSel[CS]!, 0);
  push(cpu, 2, cpu.ripLo, 0);
  cpu.rflags = flags & ~(IF | TF | AC | RF);
  cpu.setSegment(CS, cs, cs << 4, 0, cpu.segLimit[CS]!, cpu.segAttr[CS]!);
  cpu.ripLo = ip; cpu.ripHi = 0;
}

/**
 * The error code of a fault on an IDT gate (SDM vol. 3A, 6.13, figure 6-7): the
 * vector in the index field (bits 15:3), IDT = 1, EXT; the same with the 16-byte
 * gates of IA-32e mode.
 */
function gateError(vector: number, ext: number): number {
  return (vector << 3) + 2 + ext;
}

/** Reads the IDT gate of `vector` (8 or 16 bytes) into desc. */
function readGate(cpu: Cpu, vector: number, size: number, ext: number): void {
  if (vector * size + size - 1 > cpu.idtrLimit) cpu.raise(Vector.GP, gateError(vector, ext));
  const s = (cpu.idtrLo >>> 0) + vector * size;
  const lo = s | 0, hi = longMode(cpu) ? (cpu.idtrHi + (s > 0xffffffff ? 1 : 0)) | 0 : 0;
  const m = cpu.mmu;
  // IDT reads are implicit supervisor accesses (SDM vol. 3A, 4.6).
  desc.lo = m.readImplicit(lo, hi, 4);
  desc.hi = m.readImplicit((lo + 4) | 0, hi, 4);
  desc.hi2 = size === 16 ? m.readImplicit((lo + 8) | 0, hi, 4) : 0;
}

/** Checks the gate's present bit and, for software events, its DPL (SDM vol. 3A, 6.12.1.1). */
function checkGate(cpu: Cpu, vector: number, kind: EventKind, ext: number): void {
  const attr = attrOf(desc.hi);
  const software = kind === EventKind.SOFTWARE_INTERRUPT || kind === EventKind.SOFTWARE_EXCEPTION;
  if (software && dplOf(attr) < cpu.cpl) cpu.raise(Vector.GP, gateError(vector, 0));
  if (!(attr & SegAttr.P)) cpu.raise(Vector.NP, gateError(vector, ext));
}

/**
 * Reads the target code segment of the gate in desc; returns the new CPL:
 * the segment's DPL for a non-conforming segment, else CPL (SDM vol. 3A, 6.12.1).
 */
function targetCode(cpu: Cpu, selector: number, ext: number): number {
  if ((selector & 0xfffc) === 0) cpu.raise(Vector.GP, ext);
  readDescriptor(cpu, selector, 8, Vector.GP);
  const attr = attrOf(desc.hi);
  const err = (selector & 0xfffc) | ext;
  if (!isCode(attr) || dplOf(attr) > cpu.cpl) cpu.raise(Vector.GP, err);
  if (!(attr & SegAttr.P)) cpu.raise(Vector.NP, err);
  return isConforming(attr) ? cpu.cpl : dplOf(attr);
}

function deliverProtected(cpu: Cpu, vector: number, kind: EventKind, code: number, ext: number): void {
  readGate(cpu, vector, 8, ext);
  const type = attrOf(desc.hi) & 0x1f;
  // Task gates, and interrupt and trap gates, 16- and 32-bit (SDM vol. 3A, 6.11).
  if (type !== 0x05 && type !== 0x06 && type !== 0x07 && type !== 0x0e && type !== 0x0f) {
    cpu.raise(Vector.GP, gateError(vector, ext));
  }
  checkGate(cpu, vector, kind, ext);
  // A task gate switches to the task its TSS selector names (6.12.2).
  if (type === 0x05) { interruptTask(cpu, desc.lo >>> 16, code, ext); return; }
  const gateLo = desc.lo, gateHi = desc.hi;
  const selector = gateLo >>> 16;
  const offset = (gateHi & 0xffff0000) | (gateLo & 0xffff);
  const size = type & 8 ? 4 : 2;
  const newCpl = targetCode(cpu, selector, ext);
  const codeLo = desc.lo, codeHi = desc.hi;
  const flags = materialize(cpu);
  const oldSs = cpu.segSel[SS]!, oldEsp = cpu.gpr[2 * RSP]!, oldCs = cpu.segSel[CS]!;
  // The handler's stack is written at its privilege level (restore() undoes this on a fault).
  const toInner = newCpl < cpu.cpl;
  cpu.cpl = newCpl;
  if (toInner) {
    readTss32Stack(cpu, newCpl);
    const esp = tssValue.lo, ss = tssValue.hi;
    loadStackSegment(cpu, ss, newCpl);
    cpu.gpr[2 * RSP] = cpu.stackSize === 4 ? esp : (cpu.gpr[2 * RSP]! & ~0xffff) | (esp & 0xffff);
    // The whole frame must fit on the new stack (SDM vol. 2, INT n: #SS(error_code), the new SS selector).
    checkNewStackFrame(cpu, (code >= 0 ? 6 : 5) * size, (ss & 0xfffc) | ext);
    push(cpu, size, oldSs, 0);
    push(cpu, size, oldEsp, 0);
  }
  push(cpu, size, flags, 0);
  push(cpu, size, oldCs, 0);
  push(cpu, size, cpu.ripLo, 0);
  if (code >= 0) push(cpu, size, code, 0);
  desc.lo = codeLo; desc.hi = codeHi;
  loadCodeSegment(cpu, selector, newCpl);
  cpu.ripLo = size === 4 ? offset : offset & 0xffff;
  cpu.ripHi = 0;
  cpu.rflags = flags & ~(TF | NT | VM | RF | ((type & 1) === 0 ? IF : 0));
}

function deliverLong(cpu: Cpu, vector: number, kind: EventKind, code: number, ext: number): void {
  readGate(cpu, vector, 16, ext);
  const type = attrOf(desc.hi) & 0x1f;
  if (type !== 0x0e && type !== 0x0f) cpu.raise(Vector.GP, gateError(vector, ext));
  checkGate(cpu, vector, kind, ext);
  const gateLo = desc.lo, gateHi = desc.hi, offsetHi = desc.hi2;
  const selector = gateLo >>> 16;
  const offsetLo = (gateHi & 0xffff0000) | (gateLo & 0xffff);
  const ist = gateHi & 7;
  const newCpl = targetCode(cpu, selector, ext);
  const attr = attrOf(desc.hi);
  // The handler must be 64-bit code: L = 1, D = 0 (SDM vol. 3A, 6.14.1).
  if (!(attr & SegAttr.L) || (attr & SegAttr.DB)) cpu.raise(Vector.GP, (selector & 0xfffc) | ext);
  const codeLo = desc.lo, codeHi = desc.hi;
  const flags = materialize(cpu);
  const oldSs = cpu.segSel[SS]!, oldRspLo = cpu.gpr[2 * RSP]!, oldRspHi = cpu.gpr[2 * RSP + 1]!;
  const oldCs = cpu.segSel[CS]!;
  const cplChanges = newCpl < cpu.cpl;
  cpu.cpl = newCpl; // the handler's stack is written at its privilege level
  if (ist !== 0 || cplChanges) {
    readTss64(cpu, ist !== 0 ? 0x24 + 8 * (ist - 1) : 4 + 8 * newCpl);
    const s = cpu.mmu.canonicalShift;
    if (((tssValue.hi << s) >> s) !== tssValue.hi) cpu.raise(Vector.SS, ext);
    cpu.gpr[2 * RSP] = tssValue.lo; cpu.gpr[2 * RSP + 1] = tssValue.hi;
  }
  if (cplChanges) loadNullStack(cpu, newCpl); // a null SS with RPL = new CPL (SDM vol. 3A, 6.14.4)
  cpu.gpr[2 * RSP] &= ~15; // the stack is aligned to 16 bytes (6.14.2)
  cpu.stackSize = 8;
  push(cpu, 8, oldSs, 0);
  push(cpu, 8, oldRspLo, oldRspHi);
  push(cpu, 8, flags, 0);
  push(cpu, 8, oldCs, 0);
  push(cpu, 8, cpu.ripLo, cpu.ripHi);
  if (code >= 0) push(cpu, 8, code, 0);
  desc.lo = codeLo; desc.hi = codeHi;
  loadCodeSegment(cpu, selector, newCpl);
  cpu.ripLo = offsetLo; cpu.ripHi = offsetHi;
  cpu.rflags = flags & ~(TF | NT | RF | ((type & 1) === 0 ? IF : 0));
}
