/**
 * Hardware task switching in legacy protected mode: SDM vol. 3A chapter 8
 * ("Task Management"): 8.3 "Task Switching", 8.4 "Task Linking", 8.6 "16-Bit
 * Task-State Segment (TSS)"; 6.12.2 "Interrupt Tasks"; vol. 2 JMP, CALL, IRET
 * and INT n "Operation". IA-32e mode has no task switching (8.7): the callers
 * refuse every cause there before coming here.
 *
 * A switch has two halves. Up to the commit point (8.3 steps 1-11) every check
 * is made and everything that could fault is read or probed first, so a fault
 * leaves the old task exactly as it was. After it (steps 12-13) a fault belongs
 * to the new task: it is delivered from here, on the new task's state, and the
 * instruction or event that switched tasks completes. (The SDM allows a step-12
 * fault to be handled in the old environment; the only one modelled, a bad PDPTE
 * on the CR3 load, is treated like the step-13 faults, as Bochs does.)
 */
import { FAULT, type Cpu } from './cpu.js';
import { deliverException, takeDebugStatus } from './interrupts.js';
import { CR0_TS, writeCr3 } from './ops/control-registers.js';
import { push } from './operands.js';
import { CR0_PG } from './paging.js';
import { CS, DS, ES, FS, GS, LDTR, NT, SegAttr, SS, TR, VM, Vector } from './regs.js';
import {
  attrOf, baseOf, desc, dplOf, isCode, isConforming, limitOf, loadCodeSegment, loadDataSegment, loadNull,
  loadStackSegment, readDescriptor,
} from './segments.js';

/** What started the switch: the columns of SDM vol. 3A, 8.4, table 8-2. */
const enum Cause { JMP, CALL, IRET, EVENT }

/** The EFLAGS bits a task switch loads from a 32-bit TSS (reserved bits stay at their fixed values). */
const EFLAGS_BITS = 0x3f7fd5;
/** DR6.BT: the #DB came from the T flag of the new task's TSS (SDM vol. 3B, 18.2.3). */
const DR6_BT = 1 << 15;
/** The busy bit of a TSS descriptor: bit 1 of its type (SDM vol. 3A, 8.2.2). */
const BUSY = 1 << 9;

/**
 * Offsets in a TSS, 32-bit (figure 8-2) or 16-bit (figure 8-10). Both lay out
 * EIP, EFLAGS, the eight general registers, the segment selectors (six in a
 * 32-bit TSS, ES CS SS DS in a 16-bit one) and the LDT selector in that order,
 * in fields of 4 or 2 bytes; the smallest valid limits are 67H and 2BH (8.3 step 3).
 */
const eipField = (is32: boolean): number => (is32 ? 0x20 : 14);
const minLimit = (is32: boolean): number => (is32 ? 0x67 : 0x2b);
const sregCount = (is32: boolean): number => (is32 ? 6 : 4);
/** Bytes of the dynamic fields a switch saves: EIP through the last selector. */
const savedBytes = (is32: boolean): number => (is32 ? 4 : 2) * (10 + sregCount(is32));
const TSS32_CR3 = 0x1c, TSS32_T = 0x64;

/** The new task's state, read from its TSS before the commit point. */
const next = { cr3: 0, eip: 0, eflags: 0, ldt: 0, trap: false };
const nextGpr = new Int32Array(8);
const nextSel = new Uint16Array(6);

// TSS and descriptor-table accesses are implicit supervisor accesses (SDM vol. 3A, 4.6); legacy linear addresses are 32-bit.
const read = (cpu: Cpu, at: number, size: number): number => cpu.mmu.readImplicit(at | 0, 0, size);
const write = (cpu: Cpu, at: number, size: number, v: number): void => cpu.mmu.writeImplicit(at | 0, 0, size, v, 0);

/** Raises the fault a supervisor write of `size` bytes at `at` would raise, writing nothing. */
function probe(cpu: Cpu, at: number, size: number): void {
  cpu.mmu.setImplicitSupervisor(true);
  try { cpu.mmu.probeWrite(at | 0, 0, size); } finally { cpu.mmu.setImplicitSupervisor(false); }
}

/**
 * Reads the new task's state into `next`: the reads of 8.3 step 12, made before
 * the commit (step 5 wants it all in memory). A 16-bit TSS holds no CR3, FS,
 * GS or T flag (8.6). Where the SDM says only that the upper halves of the
 * registers "are modified and not maintained", they are loaded as FFFFH, and FS
 * and GS get null selectors, as Bochs (this project's oracle) does.
 */
function readTask(cpu: Cpu, base: number, is32: boolean): void {
  const w = is32 ? 4 : 2, eip = base + eipField(is32), gpr = eip + 2 * w, sreg = gpr + 8 * w;
  next.eip = read(cpu, eip, w);
  next.eflags = read(cpu, eip + w, w);
  for (let n = 0; n < 8; n++) nextGpr[n] = is32 ? read(cpu, gpr + w * n, 4) : 0xffff0000 | read(cpu, gpr + w * n, 2);
  for (let s = 0; s < 6; s++) nextSel[s] = s < sregCount(is32) ? read(cpu, sreg + w * s, 2) : 0;
  next.ldt = read(cpu, sreg + w * sregCount(is32), 2);
  next.cr3 = is32 ? read(cpu, base + TSS32_CR3, 4) : 0;
  next.trap = is32 && (read(cpu, base + TSS32_T, 2) & 1) !== 0;
}

/** Saves the current task's dynamic fields into its TSS (8.3 step 8): EIP, EFLAGS, registers, selectors. */
function saveTask(cpu: Cpu, base: number, is32: boolean, eflags: number): void {
  const w = is32 ? 4 : 2, eip = base + eipField(is32), gpr = eip + 2 * w, sreg = gpr + 8 * w;
  write(cpu, eip, w, cpu.ripLo);
  write(cpu, eip + w, w, eflags);
  for (let n = 0; n < 8; n++) write(cpu, gpr + w * n, w, cpu.gpr[2 * n]!);
  for (let s = 0; s < sregCount(is32); s++) write(cpu, sreg + w * s, 2, cpu.segSel[s]!);
}

/** LDTR from the new TSS: null, or a present LDT descriptor in the GDT; else #TS(selector) (table 8-1). */
function loadTaskLdt(cpu: Cpu, sel: number): void {
  if ((sel & 0xfffc) === 0) { loadNull(cpu, LDTR, sel); return; }
  if (sel & 4) cpu.raise(Vector.TS, sel & 0xfffc);
  readDescriptor(cpu, sel, 8, Vector.TS);
  const attr = attrOf(desc.hi);
  if ((attr & 0x1f) !== 0x02 || !(attr & SegAttr.P)) cpu.raise(Vector.TS, sel & 0xfffc);
  cpu.setSegment(LDTR, sel, baseOf(desc.lo, desc.hi), 0, limitOf(desc.lo, desc.hi), attr);
}

/**
 * CS from the new TSS; its RPL is the new CPL (8.3). Table 8-1: not null, in
 * its table, a code segment with DPL = RPL (conforming: DPL <= RPL), else
 * #TS(selector); not present, #NP(selector).
 */
function loadTaskCode(cpu: Cpu, sel: number): void {
  const err = sel & 0xfffc, rpl = sel & 3;
  if (err === 0) cpu.raise(Vector.TS, 0);
  readDescriptor(cpu, sel, 8, Vector.TS);
  const attr = attrOf(desc.hi), dpl = dplOf(attr);
  if (!isCode(attr) || (isConforming(attr) ? dpl > rpl : dpl !== rpl)) cpu.raise(Vector.TS, err);
  loadCodeSegment(cpu, sel, rpl);
}

/** DS, ES, FS, GS from the new TSS: MOV's checks (vol. 2, MOV), but reported as #TS, #NP as table 8-1 gives them. */
function loadTaskData(cpu: Cpu, seg: number, sel: number): void {
  try {
    loadDataSegment(cpu, seg, sel);
  } catch (e) {
    if (e === FAULT && cpu.excVector === Vector.GP) cpu.excVector = Vector.TS;
    throw e;
  }
}

/** Set while emulateTaskSwitch runs: an event after the commit point is left in cpu.exc* for its caller. */
let deferring = false, deferred = false;

/**
 * An event raised after the commit point: delivered now, in the new task, before
 * its first instruction (8.3, note to step 13). Without exception delivery (tests
 * of single instructions) the run stops on it, as run() does for other faults.
 */
function eventInNewTask(cpu: Cpu): void {
  if (deferring) { deferred = true; return; }
  if (cpu.deliverExceptions) { deliverException(cpu); return; }
  if (cpu.excVector === Vector.DB) takeDebugStatus(cpu);
  cpu.stop({ kind: 'exception', vector: cpu.excVector, errorCode: cpu.excHasCode ? cpu.excCode : null });
}

/**
 * Switches to the task whose TSS `sel` names (SDM vol. 3A, 8.3, steps 1-14;
 * table 8-1; table 8-2). `ext` is the EXT bit of error codes (1 for an event external to
 * the program); `code` is an error code to push on the new task's stack, or -1.
 */
function switchTasks(cpu: Cpu, sel: number, cause: Cause, ext: number, code: number): void {
  const iret = cause === Cause.IRET, nest = cause === Cause.CALL || cause === Cause.EVENT;
  const err = (sel & 0xfffc) | ext;
  // Steps 1-4, table 8-1: a TSS descriptor in the GDT (#GP, #TS for IRET), busy for IRET and available
  // otherwise (#GP; #TS for IRET), present (#NP), with a limit that holds the whole TSS (#TS).
  const selVector = iret ? Vector.TS : Vector.GP;
  if ((sel & 4) || (sel & 0xfffc) === 0 || (sel & 0xfff8) + 7 > cpu.gdtrLimit) cpu.raise(selVector, err);
  readDescriptor(cpu, sel);
  const descHi = desc.hi, attr = attrOf(descHi), type = attr & 0x1f;
  if (iret ? type !== 0x03 && type !== 0x0b : type !== 0x01 && type !== 0x09) cpu.raise(selVector, err);
  if (!(attr & SegAttr.P)) cpu.raise(Vector.NP, err);
  const is32 = (type & 8) !== 0, base = baseOf(desc.lo, descHi), limit = limitOf(desc.lo, descHi);
  if (limit < minLimit(is32)) cpu.raise(Vector.TS, err);

  // The old TSS takes the saved state, and JMP and IRET clear its descriptor's busy bit:
  // both must be writable (SDM vol. 3A, 6.15, "Interrupt 10", table 6-6: #TS(old TSS)).
  const oldSel = cpu.segSel[TR]!, old32 = (cpu.segAttr[TR]! & 8) !== 0, oldBase = cpu.segBase[2 * TR]!;
  const oldErr = (oldSel & 0xfffc) | ext;
  if (cpu.segLimit[TR]! < minLimit(old32)) cpu.raise(Vector.TS, oldErr);
  if (!nest && ((oldSel & 4) || (oldSel & 0xfff8) + 7 > cpu.gdtrLimit)) cpu.raise(Vector.TS, oldErr);
  const oldDescAt = cpu.gdtrLo + (oldSel & 0xfff8) + 4, newDescAt = cpu.gdtrLo + (sel & 0xfff8) + 4;

  // Step 5: everything the switch touches must be in memory; read and probe it all now.
  readTask(cpu, base, is32);
  // Virtual-8086 mode is not modelled: as elsewhere in hvsim, it is refused with #GP(0),
  // here before the commit point so that nothing has changed (the SDM would enter it).
  if (next.eflags & VM) cpu.raise(Vector.GP, 0);
  probe(cpu, oldBase + eipField(old32), savedBytes(old32));
  if (nest) probe(cpu, base, 2);
  if (!nest) probe(cpu, oldDescAt, 4);
  if (!iret) probe(cpu, newDescAt, 4);
  const oldDescHi = nest ? 0 : read(cpu, oldDescAt, 4);

  // ---- past every check: steps 6-11 commit to the switch ----
  const eflags = cpu.rflags;
  // Step 6: JMP and IRET free the old task; CALL and events leave it busy.
  if (!nest) write(cpu, oldDescAt, 4, oldDescHi & ~BUSY);
  // Steps 7-8: IRET clears NT in the saved image; JMP, CALL and events leave it (table 8-2).
  saveTask(cpu, oldBase, old32, iret ? eflags & ~NT : eflags);
  // Step 9 and 8.4: CALL and events link the new task back to the old one (and set NT below).
  if (nest) write(cpu, base, 2, oldSel);
  // Step 10: the new task becomes busy (IRET's already is); step 11: TR, with the busy type cached.
  if (!iret) write(cpu, newDescAt, 4, descHi | BUSY);
  cpu.setSegment(TR, sel, base, 0, limit, attr | 2);
  // Every task switch sets CR0.TS (2.5, table 8-2).
  cpu.cr0 |= CR0_TS;

  // Step 12: the new task's registers. The segment registers get their selectors with unusable
  // hidden parts: step 13 reads and checks the descriptors.
  cpu.rflags = (next.eflags & (is32 ? EFLAGS_BITS : EFLAGS_BITS & 0xffff)) | (nest ? NT : 0);
  cpu.ripLo = next.eip; cpu.ripHi = 0;
  for (let n = 0; n < 8; n++) { cpu.gpr[2 * n] = nextGpr[n]!; cpu.gpr[2 * n + 1] = 0; }
  cpu.cpl = nextSel[CS]! & 3;
  loadNull(cpu, LDTR, next.ldt);
  for (let s = 0; s < 6; s++) loadNull(cpu, s, nextSel[s]!);

  // Steps 12-13: faults from here on happen in the context of the new task.
  try {
    // The PDBR is loaded only with paging on (step 12), through MOV to CR3's path: PAE paging
    // reloads the PDPTEs (#GP(0) on a bad one), and the TLB is flushed. A 16-bit TSS has none (8.6).
    if (is32 && (cpu.cr0 & CR0_PG)) writeCr3(cpu, next.cr3, 0);
    // Model choice where the order is model specific (table 8-1): LDTR, CS, SS, then DS, ES, FS, GS.
    loadTaskLdt(cpu, next.ldt);
    loadTaskCode(cpu, nextSel[CS]!);
    loadStackSegment(cpu, nextSel[SS]!, cpu.cpl);
    loadTaskData(cpu, DS, nextSel[DS]!);
    loadTaskData(cpu, ES, nextSel[ES]!);
    loadTaskData(cpu, FS, nextSel[FS]!);
    loadTaskData(cpu, GS, nextSel[GS]!);
    // 6.12.2, vol. 2 INT n "TASK-GATE": an exception's error code goes on the new task's stack,
    // a word for a 16-bit TSS, a doubleword for a 32-bit one (model choice: the TSS's size).
    if (code >= 0) push(cpu, is32 ? 4 : 2, code, 0);
    // Vol. 2 JMP/CALL/IRET/INT n: IF EIP not within code segment limit THEN #GP(0) (INT n: #GP(EXT)).
    if ((cpu.ripLo >>> 0) > cpu.segLimit[CS]!) cpu.raise(Vector.GP, 0);
  } catch (e) {
    if (e !== FAULT) throw e;
    // Selector error codes carry EXT when an external event caused the switch (6.13).
    if (cpu.excHasCode && cpu.excVector !== Vector.PF) cpu.excCode |= ext;
    eventInNewTask(cpu);
    return;
  }
  // SDM vol. 3B, 18.3.1.5: the T flag of the new TSS raises a #DB trap before its first instruction.
  if (next.trap) {
    cpu.excDr6 |= DR6_BT;
    cpu.excVector = Vector.DB; cpu.excHasCode = false; cpu.excCode = 0; cpu.excKind = 0;
    eventInNewTask(cpu);
  }
}

/**
 * Where a task switch comes from, as the exit qualification of a TASK_SWITCH
 * VM exit encodes it in bits 31:30 (SDM vol. 3C, 28.2.1, "Exit Qualification
 * for Task Switches"): CALL, IRET, JMP, or a task gate in the IDT.
 */
export const enum TaskSwitchSource { CALL = 0, IRET = 1, JMP = 2, IDT = 3 }

const CAUSE_OF: readonly Cause[] = [Cause.CALL, Cause.IRET, Cause.JMP, Cause.EVENT];

/**
 * In VMX non-root operation a task switch is a VM exit once the checks that
 * precede it have passed (SDM vol. 3C, 26.4.2 "Treatment of Task Switches"):
 * the unit takes it (virtualization.ts taskSwitch) before anything changes.
 */
function hook(cpu: Cpu, tss: number, source: TaskSwitchSource, length: number): void {
  if (cpu.nonRoot) cpu.virt.taskSwitch(cpu, tss, source, length);
}

/**
 * Far JMP or CALL to the TSS descriptor or task gate in `desc`, named by
 * `selector` (SDM vol. 2, JMP and CALL "TASK-GATE", "TASK-STATE-SEGMENT"):
 * its DPL must be at least CPL and the selector's RPL, else #GP(selector);
 * a task gate must be present, else #NP(gate selector). `length` is the
 * instruction's (for a VM exit, 28.2.5).
 */
export function farTaskSwitch(cpu: Cpu, selector: number, call: boolean, length: number): void {
  const attr = attrOf(desc.hi), dpl = dplOf(attr), err = selector & 0xfffc;
  if (dpl < cpu.cpl || dpl < (selector & 3)) cpu.raise(Vector.GP, err);
  let tss = selector;
  if ((attr & 0x1f) === 0x05) {
    if (!(attr & SegAttr.P)) cpu.raise(Vector.NP, err);
    tss = desc.lo >>> 16; // the gate's TSS selector (8.2.5, figure 8-5)
  }
  hook(cpu, tss, call ? TaskSwitchSource.CALL : TaskSwitchSource.JMP, length);
  switchTasks(cpu, tss, call ? Cause.CALL : Cause.JMP, 0, -1);
}

/**
 * IRET with EFLAGS.NT = 1: back to the task in the current TSS's previous-task
 * link (SDM vol. 2, IRET "TASK-RETURN"; 8.4). `length` is the instruction's.
 */
export function taskReturn(cpu: Cpu, length: number): void {
  const link = read(cpu, cpu.segBase[2 * TR]!, 2);
  hook(cpu, link, TaskSwitchSource.IRET, length);
  switchTasks(cpu, link, Cause.IRET, 0, -1);
}

/**
 * An interrupt or exception through a task gate in the IDT whose gate checks
 * have passed (SDM vol. 3A, 6.12.2; vol. 2 INT n "TASK-GATE"). `code` is the
 * error code to push on the new task's stack, or -1.
 */
export function interruptTask(cpu: Cpu, tssSelector: number, code: number, ext: number): void {
  // The length of INT n, INT3, INTO is recorded with the IDT-vectoring information (exitDuringDelivery).
  hook(cpu, tssSelector, TaskSwitchSource.IDT, 0);
  switchTasks(cpu, tssSelector, Cause.EVENT, ext, code);
}

/**
 * The task switch alone, without the VM exit: for a hypervisor that emulates
 * the switch a TASK_SWITCH VM exit reported (src/hv/task-switch.ts), on the
 * guest's state. The checks that precede the exit (privilege, gate) were made
 * by the guest's processor; the switch's own checks (8.3 steps 1-11, table
 * 8-1) are made here and raise as the processor's would, with nothing changed.
 * An event raised after the commit point (8.3 step 13, the T flag) is not
 * delivered: it is left in cpu.excVector, excHasCode, excCode (and excDr6),
 * and the result is true; it belongs to the new task.
 * `ext` is the EXT bit of error codes; `code` an error code to push, or -1.
 */
export function emulateTaskSwitch(cpu: Cpu, tss: number, source: TaskSwitchSource, ext: number, code: number): boolean {
  deferring = true; deferred = false;
  try {
    switchTasks(cpu, tss, CAUSE_OF[source]!, ext, code);
  } finally {
    deferring = false;
  }
  return deferred;
}
