/**
 * Segment-register and descriptor-table instructions: MOV/PUSH/POP Sreg,
 * LDS/LES/LFS/LGS/LSS, far JMP/CALL/RET, IRET, LGDT/LIDT/SGDT/SIDT,
 * LLDT/LTR/SLDT/STR, LAR/LSL/VERR/VERW, ARPL, CLI/STI (SDM vol. 2, each
 * instruction's Operation section; vol. 3A chapters 3 and 5).
 */
import { FAULT, type Cpu } from '../cpu.js';
import { SegAttr } from '../regs.js';
import { setStatusFlags } from '../flags.js';
import { Im, OpMap, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import { adjustRsp, checkSegment, effectiveAddress, getReg, peek, push, pushSelector, readRm, setReg, writeRm } from '../operands.js';
import { checkNewStackFrame } from '../segment-limits.js';
import { CS, DS, ES, FS, GS, IF, IOPL, LDTR, NT, RSP, SS, TR, VIF, VIP, VM, Vector, ZF } from '../regs.js';
import {
  attrOf, baseOf, checkDirectCodeTarget, desc, dplOf, isCode, isConforming, limitOf, loadCodeSegment,
  loadDataSegment, loadNull, loadNullStack, loadStackSegment, longMode, nullInaccessibleSegments, protectedMode,
  readDescriptor, readTss32Stack, readTss64, tssValue,
} from '../segments.js';
import { farTaskSwitch, taskReturn } from '../task-switch.js';
import { Intercept } from '../virtualization.js';

const TWO = OpMap.TWO * 256;

/** Blocks interrupts for the next instruction: MOV SS and POP SS (`bySs`), STI. */
function shadow(cpu: Cpu, bySs = true): void {
  cpu.interruptShadowEnd = cpu.retired + 2;
  cpu.shadowBySs = bySs;
}

// ---- MOV, PUSH, POP with segment registers ------------------------------------

/** MOV Sreg, r/m16 (8E /seg): CS cannot be loaded (the table leaves /1, /6, /7 undefined: #UD). */
function movToSreg(cpu: Cpu, i: Insn): void {
  const seg = i.reg & 7;
  loadDataSegment(cpu, seg, readRm(cpu, i, 2));
  if (seg === SS) shadow(cpu);
}

/** MOV r/m, Sreg (8C /seg): a register destination gets the selector zero-extended; memory 16 bits. */
function movFromSreg(cpu: Cpu, i: Insn): void {
  writeRm(cpu, i, i.opSize, cpu.segSel[i.reg & 7]!, 0);
}

/** PUSH Sreg: recent Intel parts write 16 bits into the bottom of the operand-size slot (SDM vol. 2, PUSH note). */
function pushSreg(seg: number) {
  return (cpu: Cpu, i: Insn): void => { pushSelector(cpu, i.opSize, cpu.segSel[seg]!); };
}

function popSreg(seg: number) {
  return (cpu: Cpu, i: Insn): void => {
    const sel = peek(cpu, 2, 0);
    loadDataSegment(cpu, seg, sel);
    adjustRsp(cpu, i.opSize);
    if (seg === SS) shadow(cpu);
  };
}

/** LDS/LES/LFS/LGS/LSS r, m16:16/32/64: offset then selector. */
function loadFarPointer(seg: number) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    effectiveAddress(cpu, i);
    checkSegment(cpu, z + 2, false);
    const lo = cpu.eaLo, hi = cpu.eaHi;
    const off = cpu.mmu.read(lo, hi, z), offHi = z === 8 ? cpu.mmu.hi : 0;
    const sel = cpu.mmu.read16((lo + z) | 0, hi);
    loadDataSegment(cpu, seg, sel);
    setReg(cpu, i.reg, z, off, offHi);
    if (seg === SS) shadow(cpu);
  };
}

// ---- far transfers -------------------------------------------------------------

/**
 * CS, SS, RSP, RFLAGS and CPL before a far transfer. A fault puts them back, so
 * that far JMP/CALL/RET and IRET are fault-atomic: the run loop restores only RIP.
 */
const before = {
  rspLo: 0, rspHi: 0, flags: 0, cpl: 0,
  csSel: 0, csBaseLo: 0, csBaseHi: 0, csLimit: 0, csAttr: 0,
  ssSel: 0, ssBaseLo: 0, ssBaseHi: 0, ssLimit: 0, ssAttr: 0,
};

function saveTransfer(cpu: Cpu): void {
  const b = before;
  b.rspLo = cpu.gpr[2 * RSP]!; b.rspHi = cpu.gpr[2 * RSP + 1]!;
  b.flags = cpu.rflags; b.cpl = cpu.cpl;
  b.csSel = cpu.segSel[CS]!; b.csBaseLo = cpu.segBase[2 * CS]!; b.csBaseHi = cpu.segBase[2 * CS + 1]!;
  b.csLimit = cpu.segLimit[CS]!; b.csAttr = cpu.segAttr[CS]!;
  b.ssSel = cpu.segSel[SS]!; b.ssBaseLo = cpu.segBase[2 * SS]!; b.ssBaseHi = cpu.segBase[2 * SS + 1]!;
  b.ssLimit = cpu.segLimit[SS]!; b.ssAttr = cpu.segAttr[SS]!;
}

function restoreTransfer(cpu: Cpu): void {
  const b = before;
  cpu.gpr[2 * RSP] = b.rspLo; cpu.gpr[2 * RSP + 1] = b.rspHi;
  cpu.rflags = b.flags; cpu.cpl = b.cpl;
  cpu.setSegment(CS, b.csSel, b.csBaseLo, b.csBaseHi, b.csLimit, b.csAttr);
  cpu.setSegment(SS, b.ssSel, b.ssBaseLo, b.ssBaseHi, b.ssLimit, b.ssAttr);
}

/** Wraps a far-transfer handler (once, at table build) so that a fault leaves CS, SS, RSP, RFLAGS and CPL as they were. */
function faultAtomic(exec: OpDef['exec']): OpDef['exec'] {
  return (cpu: Cpu, i: Insn): void => {
    saveTransfer(cpu);
    try {
      exec(cpu, i);
    } catch (e) {
      if (e === FAULT) restoreTransfer(cpu);
      throw e;
    }
  };
}

/**
 * Checks a new instruction pointer: canonical when the target is 64-bit code,
 * else within the code segment's limit; #GP(0) otherwise (SDM vol. 2, JMP/CALL/RET).
 */
function checkTarget(cpu: Cpu, lo: number, hi: number, to64: boolean, limit: number): void {
  if (to64) {
    const s = cpu.mmu.canonicalShift;
    if (((hi << s) >> s) !== hi) cpu.raise(Vector.GP, 0);
  } else if ((lo >>> 0) > (limit >>> 0)) {
    cpu.raise(Vector.GP, 0);
  }
}

/**
 * Far JMP (call = false) or CALL to selector:offset (SDM vol. 2, JMP and CALL
 * "Operation"): a code segment, a call gate, or (outside IA-32e mode) a task
 * gate or available TSS, which switch tasks (task-switch.ts). `len` is the
 * instruction's length, which a TASK_SWITCH VM exit records (SDM vol. 3C, 28.2.5).
 */
function farTransfer(cpu: Cpu, selector: number, offLo: number, offHi: number, z: number, call: boolean, len: number): void {
  if (!protectedMode(cpu)) {
    if (call) { push(cpu, z, cpu.segSel[CS]!, 0); push(cpu, z, cpu.ripLo, 0); }
    cpu.setSegment(CS, selector, selector << 4, 0, cpu.segLimit[CS]!, cpu.segAttr[CS]!);
    cpu.ripLo = z === 2 ? offLo & 0xffff : offLo; cpu.ripHi = 0;
    return;
  }
  if ((selector & 0xfffc) === 0) cpu.raise(Vector.GP, 0);
  readDescriptor(cpu, selector);
  const attr = attrOf(desc.hi), type = attr & 0x1f;
  if (attr & SegAttr.S) directTransfer(cpu, selector, offLo, offHi, z, call);
  // Type 0xC is a 32-bit call gate, or a 64-bit one in IA-32e mode, where the 16-bit type 4 is invalid (SDM vol. 3A, 5.8.3.1).
  else if (type === 0x0c || (type === 0x04 && !longMode(cpu))) gateTransfer(cpu, selector, call);
  // Task gates (5) and available TSSs (1, 9) switch tasks, except in IA-32e mode (SDM vol. 3A, 8.7): there
  // they, and anything else (busy TSSs included), raise #GP(selector).
  else if (!longMode(cpu) && (type === 0x05 || type === 0x01 || type === 0x09)) farTaskSwitch(cpu, selector, call, len);
  else cpu.raise(Vector.GP, selector & 0xfffc);
}

/** To a code segment at the current privilege level (SDM vol. 3A, 5.8.1; vol. 2, CALL "CONFORMING/NONCONFORMING-CODE-SEGMENT"). */
function directTransfer(cpu: Cpu, selector: number, offLo: number, offHi: number, z: number, call: boolean): void {
  checkDirectCodeTarget(cpu, selector);
  const attr = attrOf(desc.hi);
  if (!(attr & SegAttr.P)) cpu.raise(Vector.NP, selector & 0xfffc);
  const to64 = longMode(cpu) && (attr & SegAttr.L) !== 0;
  const lo = z === 2 ? offLo & 0xffff : offLo, hi = z === 8 ? offHi : 0;
  checkTarget(cpu, lo, hi, to64, limitOf(desc.lo, desc.hi));
  if (call) {
    // The return address goes on the caller's stack, with the caller's stack size.
    push(cpu, z, cpu.segSel[CS]!, 0);
    push(cpu, z, cpu.ripLo, cpu.ripHi);
  }
  loadCodeSegment(cpu, selector, cpu.cpl);
  cpu.ripLo = lo; cpu.ripHi = hi;
}

/** Parameters a call gate copies from the caller's stack (at most 31). */
const params = new Int32Array(32);

/**
 * Through a call gate in `desc` (SDM vol. 3A, 5.8.3-5.8.5; vol. 2, JMP and CALL
 * "CALL-GATE", "MORE-PRIVILEGE", "SAME-PRIVILEGE"). A CALL to a more privileged
 * non-conforming segment switches to the stack the TSS gives for the new CPL.
 */
function gateTransfer(cpu: Cpu, gateSel: number, call: boolean): void {
  const lm = longMode(cpu), cpl = cpu.cpl, gateErr = gateSel & 0xfffc;
  if (lm) {
    // A 64-bit gate takes 16 bytes; the type field of its upper half must be 0 (SDM vol. 3A, 5.8.3.1).
    readDescriptor(cpu, gateSel, 16);
    if (desc.hi3 & 0x1f00) cpu.raise(Vector.GP, gateErr);
  }
  const attr = attrOf(desc.hi), gateDpl = dplOf(attr);
  // SDM vol. 3A, 5.8.4: CPL <= gate DPL and RPL <= gate DPL.
  if (gateDpl < cpl || gateDpl < (gateSel & 3)) cpu.raise(Vector.GP, gateErr);
  if (!(attr & SegAttr.P)) cpu.raise(Vector.NP, gateErr);
  const size = lm ? 8 : attr & 8 ? 4 : 2;
  const csSel = desc.lo >>> 16;
  // 64-bit gates copy no parameters (SDM vol. 3A, 5.8.3.1); elsewhere bits 4:0 count them.
  const count = lm ? 0 : desc.hi & 0x1f;
  const offLo = size === 2 ? desc.lo & 0xffff : (desc.hi & 0xffff0000) | (desc.lo & 0xffff);
  const offHi = lm ? desc.hi2 : 0;
  if ((csSel & 0xfffc) === 0) cpu.raise(Vector.GP, 0);
  readDescriptor(cpu, csSel);
  const code = attrOf(desc.hi), dpl = dplOf(code), csErr = csSel & 0xfffc;
  // CALL may enter a more privileged segment; JMP keeps CPL, so a non-conforming target needs DPL = CPL (5.8.4, table 5-1).
  if (!isCode(code) || dpl > cpl || (!call && !isConforming(code) && dpl !== cpl)) cpu.raise(Vector.GP, csErr);
  // IA-32e mode: the target must be 64-bit code, L = 1 and D = 0 (5.8.3.1).
  if (lm && (!(code & SegAttr.L) || (code & SegAttr.DB))) cpu.raise(Vector.GP, csErr);
  if (!(code & SegAttr.P)) cpu.raise(Vector.NP, csErr);
  const newCpl = isConforming(code) ? cpl : dpl;
  const codeLo = desc.lo, codeHi = desc.hi;
  const oldCs = cpu.segSel[CS]!, retLo = cpu.ripLo, retHi = cpu.ripHi;
  const oldSs = cpu.segSel[SS]!, oldSpLo = cpu.gpr[2 * RSP]!, oldSpHi = cpu.gpr[2 * RSP + 1]!;
  const inner = newCpl < cpl; // only a CALL gets here with a lower DPL
  if (inner) {
    // Model choice: the parameters are read at the caller's privilege level, before the switch.
    for (let k = 0; k < count; k++) params[k] = peek(cpu, size, k * size);
    if (lm) {
      // RSPn from the 64-bit TSS and a null SS with RPL = new CPL (5.8.5, 5.8.3.1).
      readTss64(cpu, 4 + 8 * newCpl);
      const s = cpu.mmu.canonicalShift;
      if (((tssValue.hi << s) >> s) !== tssValue.hi) cpu.raise(Vector.SS, 0);
      loadNullStack(cpu, newCpl);
      cpu.gpr[2 * RSP] = tssValue.lo; cpu.gpr[2 * RSP + 1] = tssValue.hi;
    } else {
      // SSn:ESPn from the TSS; the new SS is checked as in 5.8.5 (#TS, #SS(selector)).
      readTss32Stack(cpu, newCpl);
      const esp = tssValue.lo, ss = tssValue.hi;
      loadStackSegment(cpu, ss, newCpl);
      cpu.gpr[2 * RSP] = esp; cpu.gpr[2 * RSP + 1] = 0;
      // SS:rSP, the parameters and CS:rIP must fit on the new stack (SDM vol. 2, CALL: #SS(SS selector)).
      checkNewStackFrame(cpu, (4 + count) * size, ss & 0xfffc);
    }
  }
  checkTarget(cpu, offLo, offHi, lm, limitOf(codeLo, codeHi));
  // CS and CPL change before the pushes: the new stack is written at the new privilege level.
  desc.lo = codeLo; desc.hi = codeHi;
  loadCodeSegment(cpu, csSel, newCpl);
  if (inner) {
    // The new stack: old SS, old rSP, the parameters in the caller's order, then CS:rIP (5.8.5, figure 5-13).
    push(cpu, size, oldSs, 0);
    push(cpu, size, oldSpLo, size === 8 ? oldSpHi : 0);
    for (let k = count - 1; k >= 0; k--) push(cpu, size, params[k]!, 0);
  }
  if (call) {
    push(cpu, size, oldCs, 0);
    push(cpu, size, retLo, size === 8 ? retHi : 0);
  }
  cpu.ripLo = offLo; cpu.ripHi = offHi;
}

/** JMP ptr16:16/32 (EA) */
function jmpFarDirect(cpu: Cpu, i: Insn): void {
  farTransfer(cpu, i.imm2, i.imm, 0, i.opSize, false, i.len);
}

/** CALL ptr16:16/32 (9A) */
function callFarDirect(cpu: Cpu, i: Insn): void {
  farTransfer(cpu, i.imm2, i.imm, 0, i.opSize, true, i.len);
}

/** The far pointer readFarPointer read: offset (lo/hi) and selector. */
const pointer = { sel: 0, lo: 0, hi: 0 };

/** Reads a far pointer m16:16/32/64 operand into `pointer`. */
function readFarPointer(cpu: Cpu, i: Insn): void {
  if (i.isReg) cpu.raise(Vector.UD);
  effectiveAddress(cpu, i);
  checkSegment(cpu, i.opSize + 2, false);
  const z = i.opSize, a = cpu.eaLo, ah = cpu.eaHi;
  pointer.lo = cpu.mmu.read(a, ah, z);
  pointer.hi = z === 8 ? cpu.mmu.hi : 0;
  pointer.sel = cpu.mmu.read16((a + z) | 0, ah);
}

/** JMP m16:16/32/64 (FF /5) */
function jmpFarIndirect(cpu: Cpu, i: Insn): void {
  readFarPointer(cpu, i);
  farTransfer(cpu, pointer.sel, pointer.lo, pointer.hi, i.opSize, false, i.len);
}

/** CALL m16:16/32/64 (FF /3) */
function callFarIndirect(cpu: Cpu, i: Insn): void {
  readFarPointer(cpu, i);
  farTransfer(cpu, pointer.sel, pointer.lo, pointer.hi, i.opSize, true, i.len);
}

/**
 * The checks on the code segment a far RET or IRET returns to (SDM vol. 2, RET
 * and IRET "Operation"): not null, RPL >= CPL, code, DPL = RPL (conforming:
 * DPL <= RPL), present. Leaves the descriptor in `desc`; returns its access rights.
 */
function checkReturnTarget(cpu: Cpu, sel: number): number {
  const rpl = sel & 3, err = sel & 0xfffc;
  if (err === 0) cpu.raise(Vector.GP, 0);
  if (rpl < cpu.cpl) cpu.raise(Vector.GP, err);
  readDescriptor(cpu, sel);
  const attr = attrOf(desc.hi);
  if (!isCode(attr) || (isConforming(attr) ? dplOf(attr) > rpl : dplOf(attr) !== rpl)) cpu.raise(Vector.GP, err);
  if (!(attr & SegAttr.P)) cpu.raise(Vector.NP, err);
  return attr;
}

/**
 * RET far (CB, CA imm16): pops the offset and CS; returning to an outer level
 * also pops SS:rSP (SDM vol. 2, RET "Operation", protected mode). imm16 is
 * released from both stacks, as the parameters a call gate copied are on both.
 */
function retFar(cpu: Cpu, i: Insn): void {
  const z = i.opSize, n = i.imm;
  const offLo = peek(cpu, z, 0), offHi = cpu.tHi;
  const sel = peek(cpu, z, z) & 0xffff;
  if (!protectedMode(cpu)) {
    adjustRsp(cpu, 2 * z + n);
    cpu.setSegment(CS, sel, sel << 4, 0, cpu.segLimit[CS]!, cpu.segAttr[CS]!);
    cpu.ripLo = z === 2 ? offLo & 0xffff : offLo; cpu.ripHi = 0;
    return;
  }
  const rpl = sel & 3, outer = rpl !== cpu.cpl;
  checkReturnTarget(cpu, sel);
  const codeLo = desc.lo, codeHi = desc.hi;
  let spLo = 0, spHi = 0, ss = 0;
  if (outer) {
    // The caller's SS:rSP lie above the parameters (SDM vol. 3A, 5.8.6).
    spLo = peek(cpu, z, 2 * z + n); spHi = cpu.tHi;
    ss = peek(cpu, z, 3 * z + n) & 0xffff;
  } else {
    adjustRsp(cpu, 2 * z + n);
  }
  desc.lo = codeLo; desc.hi = codeHi;
  loadCodeSegment(cpu, sel, rpl);
  if (outer) {
    loadDataSegment(cpu, SS, ss);
    setReg(cpu, RSP, z === 8 ? 8 : cpu.stackSize, spLo, spHi);
    adjustRsp(cpu, n); // release the parameters from the caller's stack too
  }
  const to64 = cpu.codeSize === 8;
  const lo = to64 || z !== 2 ? offLo : offLo & 0xffff, hi = to64 ? offHi : 0;
  checkTarget(cpu, lo, hi, to64, cpu.segLimit[CS]!);
  cpu.ripLo = lo; cpu.ripHi = hi;
  if (outer) nullInaccessibleSegments(cpu);
}

/**
 * The flags IRET may change (SDM vol. 2, IRET "Operation"): IOPL only at CPL 0,
 * IF only when CPL <= IOPL; VIP, VIF, VM are never loaded here (V86 returns refused).
 */
function iretFlags(cpu: Cpu, value: number, z: number, cpl: number): void {
  let mask = 0x3f7fd5 & ~(IOPL | IF | VIP | VIF | VM);
  if (z === 2) mask &= 0xffff;
  const iopl = (cpu.rflags & IOPL) >> 12;
  if (cpl === 0) mask |= IOPL;
  if (cpl <= iopl) mask |= IF;
  cpu.rflags = (cpu.rflags & ~mask) | (value & mask);
}

/**
 * IRET/IRETD/IRETQ (CF). Ends the blocking of NMIs (SDM vol. 3A, 6.7.1), even
 * when the return then faults ("IRET may unblock NMIs even if it causes a
 * fault", vol. 3C, 28.2.3): the unblocking comes first.
 */
function iret(cpu: Cpu, i: Insn): void {
  if (cpu.nmiBlocked) {
    cpu.nmiBlocked = false;
    cpu.iretUnblockedNmiAt = cpu.insnCount + cpu.blockIndex;
  }
  iretFrame(cpu, i);
}

/** The instruction running (or faulting) now is an IRET that ended NMI blocking. */
export function iretUnblockedNmi(cpu: Cpu): boolean {
  return cpu.iretUnblockedNmiAt === cpu.insnCount + cpu.blockIndex;
}

function iretFrame(cpu: Cpu, i: Insn): void {
  // Protected mode with NT = 1: a task return, which reads no stack; #GP(0) in IA-32e mode
  // (SDM vol. 2, IRET "Operation", TASK-RETURN; vol. 3A, 8.7).
  if ((cpu.cr0 & 1) && !(cpu.flags & VM) && (cpu.rflags & NT)) {
    if (longMode(cpu)) cpu.raise(Vector.GP, 0);
    taskReturn(cpu, i.len);
    return;
  }
  const z = i.opSize;
  const ipLo = peek(cpu, z, 0), ipHi = cpu.tHi;
  const sel = peek(cpu, z, z) & 0xffff;
  const flags = peek(cpu, z, 2 * z);
  if (!(cpu.cr0 & 1)) {
    adjustRsp(cpu, 3 * z);
    cpu.setSegment(CS, sel, sel << 4, 0, cpu.segLimit[CS]!, cpu.segAttr[CS]!);
    cpu.ripLo = z === 2 ? ipLo & 0xffff : ipLo; cpu.ripHi = 0;
    // Real mode: every flag but VM, VIP, VIF may be loaded.
    const mask = (z === 2 ? 0xffff : 0x3f7fd5) & ~(VM | VIP | VIF);
    cpu.rflags = (cpu.rflags & ~mask) | (flags & mask);
    return;
  }
  if (cpu.flags & VM) cpu.raise(Vector.GP, 0); // virtual-8086 mode is not modelled
  const rpl = sel & 3, lm = longMode(cpu);
  // Returning to virtual-8086 mode is refused cleanly.
  if (!lm && z === 4 && cpu.cpl === 0 && (flags & VM)) cpu.raise(Vector.GP, 0);
  const attr = checkReturnTarget(cpu, sel);
  const codeLo = desc.lo, codeHi = desc.hi;
  const oldCpl = cpu.cpl;
  // In 64-bit mode IRET always pops SS:RSP; elsewhere only when returning outward.
  if (rpl !== oldCpl || cpu.codeSize === 8) {
    const spLo = peek(cpu, z, 3 * z), spHi = cpu.tHi;
    const ss = peek(cpu, z, 4 * z) & 0xffff;
    desc.lo = codeLo; desc.hi = codeHi;
    loadCodeSegment(cpu, sel, rpl);
    if (lm && (ss & 0xfffc) === 0 && (attr & SegAttr.L) && rpl !== 3) loadNull(cpu, SS, ss);
    else loadDataSegment(cpu, SS, ss);
    setReg(cpu, RSP, cpu.codeSize === 8 ? 8 : cpu.stackSize === 4 || z !== 2 ? 4 : 2, spLo, spHi);
  } else {
    adjustRsp(cpu, 3 * z);
    desc.lo = codeLo; desc.hi = codeHi;
    loadCodeSegment(cpu, sel, rpl);
  }
  const to64 = cpu.codeSize === 8;
  const lo = to64 || z !== 2 ? ipLo : ipLo & 0xffff, hi = to64 ? ipHi : 0;
  checkTarget(cpu, lo, hi, to64, cpu.segLimit[CS]!);
  iretFlags(cpu, flags, z, oldCpl);
  cpu.ripLo = lo; cpu.ripHi = hi;
  if (rpl !== oldCpl) nullInaccessibleSegments(cpu);
}

// ---- descriptor tables ----------------------------------------------------------

function requireCpl0(cpu: Cpu): void {
  if (protectedMode(cpu) && cpu.cpl !== 0) cpu.raise(Vector.GP, 0);
  if (cpu.flags & VM) cpu.raise(Vector.GP, 0);
}

/** LGDT/LIDT m16&32 (m16&64 in 64-bit mode; 24-bit base with a 16-bit operand). */
function loadTableRegister(idt: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    requireCpl0(cpu);
    effectiveAddress(cpu, i);
    // Descriptor-table exiting (SDM vol. 3C, 26.1.3), after the privilege check (26.1.1).
    if (cpu.nonRoot && cpu.virt.intercept(cpu, i, idt ? Intercept.LIDT : Intercept.LGDT)) return;
    checkSegment(cpu, cpu.codeSize === 8 ? 10 : 6, false);
    const a = cpu.eaLo, ah = cpu.eaHi;
    const limit = cpu.mmu.read16(a, ah);
    let lo = cpu.mmu.read32((a + 2) | 0, ah), hi = 0;
    if (cpu.codeSize === 8) hi = cpu.mmu.read32((a + 6) | 0, ah);
    else if (i.opSize === 2) lo &= 0xffffff;
    if (cpu.codeSize === 8) {
      const s = cpu.mmu.canonicalShift;
      if (((hi << s) >> s) !== hi) cpu.raise(Vector.GP, 0);
    }
    if (idt) { cpu.idtrLo = lo; cpu.idtrHi = hi; cpu.idtrLimit = limit; }
    else { cpu.gdtrLo = lo; cpu.gdtrHi = hi; cpu.gdtrLimit = limit; }
  };
}

/** SGDT/SIDT: limit then base (8 bytes in 64-bit mode, else 4). */
function storeTableRegister(idt: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    effectiveAddress(cpu, i);
    if (cpu.nonRoot && cpu.virt.intercept(cpu, i, idt ? Intercept.SIDT : Intercept.SGDT)) return;
    const a = cpu.eaLo, ah = cpu.eaHi, n = cpu.codeSize === 8 ? 10 : 6;
    checkSegment(cpu, n, true);
    cpu.mmu.probeWrite(a, ah, n);
    cpu.mmu.write16(a, ah, idt ? cpu.idtrLimit : cpu.gdtrLimit);
    cpu.mmu.write32((a + 2) | 0, ah, idt ? cpu.idtrLo : cpu.gdtrLo);
    if (n === 10) cpu.mmu.write32((a + 6) | 0, ah, idt ? cpu.idtrHi : cpu.gdtrHi);
  };
}

/** LLDT r/m16 (SDM vol. 2, LLDT): a GDT selector of an LDT descriptor, or null. */
function lldt(cpu: Cpu, i: Insn): void {
  if (!protectedMode(cpu)) cpu.raise(Vector.UD);
  requireCpl0(cpu);
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, Intercept.LLDT)) return;
  const sel = readRm(cpu, i, 2);
  if ((sel & 0xfffc) === 0) { loadNull(cpu, LDTR, sel); return; }
  if (sel & 4) cpu.raise(Vector.GP, sel & 0xfffc);
  const lm = longMode(cpu);
  readDescriptor(cpu, sel, lm ? 16 : 8);
  const attr = attrOf(desc.hi);
  if ((attr & 0x1f) !== 0x02) cpu.raise(Vector.GP, sel & 0xfffc);
  if (!(attr & SegAttr.P)) cpu.raise(Vector.NP, sel & 0xfffc);
  cpu.setSegment(LDTR, sel, baseOf(desc.lo, desc.hi), lm ? desc.hi2 : 0, limitOf(desc.lo, desc.hi), attr);
}

/** LTR r/m16: an available TSS in the GDT, marked busy (SDM vol. 2, LTR). */
function ltr(cpu: Cpu, i: Insn): void {
  if (!protectedMode(cpu)) cpu.raise(Vector.UD);
  requireCpl0(cpu);
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, Intercept.LTR)) return;
  const sel = readRm(cpu, i, 2);
  if ((sel & 0xfffc) === 0 || (sel & 4)) cpu.raise(Vector.GP, sel & 0xfffc);
  const lm = longMode(cpu);
  readDescriptor(cpu, sel, lm ? 16 : 8);
  const attr = attrOf(desc.hi);
  const type = attr & 0x1f;
  if (lm ? type !== 0x09 : type !== 0x09 && type !== 0x01) cpu.raise(Vector.GP, sel & 0xfffc);
  if (!(attr & SegAttr.P)) cpu.raise(Vector.NP, sel & 0xfffc);
  // Mark busy in the descriptor: type bit 1.
  const s = (cpu.gdtrLo >>> 0) + (sel & 0xfff8) + 4;
  cpu.mmu.writeImplicit(s | 0, lm ? (cpu.gdtrHi + (s > 0xffffffff ? 1 : 0)) | 0 : 0, 4, desc.hi | (1 << 9), 0);
  cpu.setSegment(TR, sel, baseOf(desc.lo, desc.hi), lm ? desc.hi2 : 0, limitOf(desc.lo, desc.hi), attr | 2);
}

function storeSelector(seg: number) {
  return (cpu: Cpu, i: Insn): void => {
    if (!protectedMode(cpu)) cpu.raise(Vector.UD);
    if (cpu.nonRoot && cpu.virt.intercept(cpu, i, seg === TR ? Intercept.STR : Intercept.SLDT)) return;
    writeRm(cpu, i, i.opSize, cpu.segSel[seg]!, 0);
  };
}

/**
 * The descriptor a LAR/LSL/VERR/VERW may look at, or false (SDM vol. 2, LAR):
 * inside its table and visible at max(CPL, RPL) unless conforming code.
 */
function visibleDescriptor(cpu: Cpu, sel: number, systemTypes: number): boolean {
  if ((sel & 0xfffc) === 0) return false;
  try {
    readDescriptor(cpu, sel);
  } catch {
    return false;
  }
  const attr = attrOf(desc.hi);
  if (!(attr & SegAttr.S)) {
    if (!((systemTypes >> (attr & 0xf)) & 1)) return false;
  } else if (isCode(attr) && isConforming(attr)) {
    return true;
  }
  return dplOf(attr) >= cpu.cpl && dplOf(attr) >= (sel & 3);
}

// System types LAR accepts (legacy: 1,2,3,4,5,9,B,C; IA-32e: 2,9,B,C) and LSL (no gates).
const LAR_TYPES = 0b0001101000111110, LAR_TYPES_64 = 0b0001101000000100;
const LSL_TYPES = 0b0000101000001110, LSL_TYPES_64 = 0b0000101000000100;

function larLsl(limit: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    if (!protectedMode(cpu)) cpu.raise(Vector.UD);
    const sel = readRm(cpu, i, 2);
    const lm = longMode(cpu);
    const types = limit ? (lm ? LSL_TYPES_64 : LSL_TYPES) : (lm ? LAR_TYPES_64 : LAR_TYPES);
    if (!visibleDescriptor(cpu, sel, types)) { setStatusFlags(cpu, ZF, 0); return; }
    const v = limit ? limitOf(desc.lo, desc.hi) | 0 : desc.hi & 0x00ffff00;
    setReg(cpu, i.reg, i.opSize, i.opSize === 2 ? v & 0xffff : v, 0);
    setStatusFlags(cpu, ZF, ZF);
  };
}

function verify(write: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    if (!protectedMode(cpu)) cpu.raise(Vector.UD);
    const sel = readRm(cpu, i, 2);
    let ok = visibleDescriptor(cpu, sel, 0);
    if (ok) {
      const attr = attrOf(desc.hi);
      ok = (attr & SegAttr.S) !== 0 && (write ? (attr & 0xa) === 2 : !isCode(attr) || (attr & 2) !== 0);
    }
    setStatusFlags(cpu, ZF, ok ? ZF : 0);
  };
}

/** ARPL r/m16, r16 (63 outside 64-bit mode). */
function arpl(cpu: Cpu, i: Insn): void {
  if (!protectedMode(cpu)) cpu.raise(Vector.UD);
  const dest = readRm(cpu, i, 2), src = getReg(cpu, i.reg, 2);
  if ((dest & 3) < (src & 3)) {
    writeRm(cpu, i, 2, (dest & ~3) | (src & 3), 0);
    setStatusFlags(cpu, ZF, ZF);
  } else {
    setStatusFlags(cpu, ZF, 0);
  }
}

// ---- CLI/STI ---------------------------------------------------------------------

/** CLI/STI in protected mode need CPL <= IOPL (SDM vol. 2, CLI/STI; the VME/PVI variants are not modelled). */
function interruptFlag(set: boolean) {
  return (cpu: Cpu): void => {
    const flags = cpu.rflags;
    if ((cpu.cr0 & 1) && cpu.cpl > ((flags & IOPL) >> 12)) cpu.raise(Vector.GP, 0);
    if (set && !(flags & IF)) shadow(cpu, false);
    cpu.rflags = set ? flags | IF : flags & ~IF;
  };
}

const def = (name: string, exec: OpDef['exec'], extra: Omit<OpDef, 'name' | 'exec'> = {}): OpDef =>
  ({ name, exec, ...extra });
const far = { ends: true } as const;
/** An r32/m16 selector operand: 16 bits in memory, the operand size in a register (only bits 15:0 are used). */
const selectorOperand = (name: string, exec: OpDef['exec']): Entry =>
  ({ mem: def(name, exec, { modrm: true, size: Sz.W }), reg: def(name, exec, { modrm: true }) });

const entries: Record<number, Entry> = {
  0x8c: { group: [ES, CS, SS, DS, FS, GS].map(() => ({
    mem: def('mov', movFromSreg, { modrm: true, size: Sz.W }), reg: def('mov', movFromSreg, { modrm: true }) })) },
  0x8e: { group: [ES, CS, SS, DS, FS, GS].map((seg) => seg === CS ? undefined : {
    mem: def('mov', movToSreg, { modrm: true, size: Sz.W, ends: seg === SS }),
    reg: def('mov', movToSreg, { modrm: true, ends: seg === SS }) }) },
  0x06: def('push', pushSreg(ES), { inv64: true }),
  0x0e: def('push', pushSreg(CS), { inv64: true }),
  0x16: def('push', pushSreg(SS), { inv64: true }),
  0x1e: def('push', pushSreg(DS), { inv64: true }),
  0x07: def('pop', popSreg(ES), { inv64: true }),
  0x17: def('pop', popSreg(SS), { inv64: true, ends: true }),
  0x1f: def('pop', popSreg(DS), { inv64: true }),
  [TWO + 0xa0]: def('push', pushSreg(FS), { size: Sz.D64 }),
  [TWO + 0xa1]: def('pop', popSreg(FS), { size: Sz.D64 }),
  [TWO + 0xa8]: def('push', pushSreg(GS), { size: Sz.D64 }),
  [TWO + 0xa9]: def('pop', popSreg(GS), { size: Sz.D64 }),
  0xc4: def('les', loadFarPointer(ES), { modrm: true, memOnly: true, inv64: true }),
  0xc5: def('lds', loadFarPointer(DS), { modrm: true, memOnly: true, inv64: true }),
  [TWO + 0xb2]: def('lss', loadFarPointer(SS), { modrm: true, memOnly: true, ends: true }),
  [TWO + 0xb4]: def('lfs', loadFarPointer(FS), { modrm: true, memOnly: true }),
  [TWO + 0xb5]: def('lgs', loadFarPointer(GS), { modrm: true, memOnly: true }),
  0xea: def('jmp', faultAtomic(jmpFarDirect), { imm: Im.Ap, inv64: true, ...far }),
  0x9a: def('call', faultAtomic(callFarDirect), { imm: Im.Ap, inv64: true, ...far }),
  0xca: def('retf', faultAtomic(retFar), { imm: Im.Iw, ...far }),
  0xcb: def('retf', faultAtomic(retFar), far),
  0xcf: def('iret', faultAtomic(iret), far),
  0xff: { group: [undefined, undefined, undefined,
    def('call', faultAtomic(callFarIndirect), { modrm: true, memOnly: true, ...far }), undefined,
    def('jmp', faultAtomic(jmpFarIndirect), { modrm: true, memOnly: true, ...far })] },
  0xfa: def('cli', interruptFlag(false)),
  0xfb: def('sti', interruptFlag(true), { ends: true }),
  [TWO + 0x00]: { group: [
    { mem: def('sldt', storeSelector(LDTR), { modrm: true, size: Sz.W }), reg: def('sldt', storeSelector(LDTR), { modrm: true }) },
    { mem: def('str', storeSelector(TR), { modrm: true, size: Sz.W }), reg: def('str', storeSelector(TR), { modrm: true }) },
    selectorOperand('lldt', lldt), selectorOperand('ltr', ltr),
    selectorOperand('verr', verify(false)), selectorOperand('verw', verify(true))] },
  [TWO + 0x01]: { group: [
    { mem: def('sgdt', storeTableRegister(false), { modrm: true }) },
    { mem: def('sidt', storeTableRegister(true), { modrm: true }) },
    { mem: def('lgdt', loadTableRegister(false), { modrm: true, size: Sz.D64 }) },
    { mem: def('lidt', loadTableRegister(true), { modrm: true, size: Sz.D64 }) }] },
  [TWO + 0x02]: def('lar', larLsl(false), { modrm: true }),
  [TWO + 0x03]: def('lsl', larLsl(true), { modrm: true }),
  0x63: { legacy: def('arpl', arpl, { modrm: true }) },
};

export const SEGMENT_TABLE = entries;
