/**
 * Segment-register and descriptor-table instructions: MOV/PUSH/POP Sreg,
 * LDS/LES/LFS/LGS/LSS, far JMP/CALL/RET, IRET, LGDT/LIDT/SGDT/SIDT,
 * LLDT/LTR/SLDT/STR, LAR/LSL/VERR/VERW, ARPL, CLI/STI (SDM vol. 2, each
 * instruction's Operation section; vol. 3A chapters 3 and 5).
 */
import type { Cpu } from '../cpu.js';
import { SegAttr } from '../regs.js';
import { setStatusFlags } from '../flags.js';
import { Im, OpMap, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import { adjustRsp, effectiveAddress, getReg, peek, push, readRm, setReg, writeRm } from '../operands.js';
import { CS, DS, ES, FS, GS, IF, IOPL, LDTR, NT, RSP, SS, TR, VIF, VIP, VM, Vector, ZF } from '../regs.js';
import {
  attrOf, baseOf, checkDirectCodeTarget, desc, dplOf, isCode, isConforming, limitOf, loadCodeSegment,
  loadDataSegment, loadNull, longMode, nullInaccessibleSegments, protectedMode, readDescriptor,
} from '../segments.js';

const TWO = OpMap.TWO * 256;

/** Blocks interrupts for the next instruction (MOV SS, POP SS, STI). */
function shadow(cpu: Cpu): void {
  cpu.interruptShadowEnd = cpu.retired + 2;
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

/** PUSH Sreg: recent Intel parts write 16 bits into the operand-size slot (SDM vol. 2, PUSH note). */
function pushSreg(seg: number) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    const top = getReg(cpu, RSP, 8), topHi = cpu.tHi;
    push(cpu, 2, cpu.segSel[seg]!, 0);
    if (z !== 2) { setReg(cpu, RSP, 8, top, topHi); adjustRsp(cpu, -z); }
  };
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
    const lo = cpu.eaLo, hi = cpu.eaHi;
    const off = cpu.mmu.read(lo, hi, z), offHi = z === 8 ? cpu.mmu.hi : 0;
    const sel = cpu.mmu.read16((lo + z) | 0, hi);
    loadDataSegment(cpu, seg, sel);
    setReg(cpu, i.reg, z, off, offHi);
    if (seg === SS) shadow(cpu);
  };
}

// ---- far transfers -------------------------------------------------------------

/** Checks the new RIP against the CS limit outside 64-bit mode (#GP(0)). */
function checkLimit(cpu: Cpu, offset: number): void {
  if (cpu.codeSize !== 8 && (offset >>> 0) > cpu.segLimit[CS]!) cpu.raise(Vector.GP, 0);
}

/**
 * Transfers to selector:offset as a far JMP or CALL to a code segment at the
 * current privilege level (SDM vol. 3A, 5.8.1). Call gates and task switches
 * are not modelled: they raise #GP(selector).
 */
function farTransfer(cpu: Cpu, selector: number, offLo: number, offHi: number, z: number): void {
  if (!protectedMode(cpu)) {
    cpu.setSegment(CS, selector, selector << 4, 0, cpu.segLimit[CS]!, cpu.segAttr[CS]!);
    cpu.ripLo = z === 2 ? offLo & 0xffff : offLo; cpu.ripHi = 0;
    return;
  }
  if ((selector & 0xfffc) === 0) cpu.raise(Vector.GP, 0);
  readDescriptor(cpu, selector);
  const attr = attrOf(desc.hi);
  if (!(attr & SegAttr.S)) cpu.raise(Vector.GP, selector & 0xfffc);
  checkDirectCodeTarget(cpu, selector);
  if (!(attr & SegAttr.P)) cpu.raise(Vector.NP, selector & 0xfffc);
  const to64 = longMode(cpu) && (attr & SegAttr.L) !== 0;
  const lo = to64 ? offLo : z === 2 ? offLo & 0xffff : offLo;
  if (!to64 && (lo >>> 0) > limitOf(desc.lo, desc.hi)) cpu.raise(Vector.GP, 0);
  loadCodeSegment(cpu, selector, cpu.cpl);
  cpu.ripLo = lo; cpu.ripHi = to64 ? offHi : 0;
}

/** JMP ptr16:16/32 (EA) */
function jmpFarDirect(cpu: Cpu, i: Insn): void {
  farTransfer(cpu, i.imm2, i.imm, 0, i.opSize);
}

/** CALL ptr16:16/32 (9A): push CS then the return offset. */
function callFarDirect(cpu: Cpu, i: Insn): void {
  callFar(cpu, i.imm2, i.imm, 0, i.opSize);
}

function callFar(cpu: Cpu, selector: number, offLo: number, offHi: number, z: number): void {
  const cs = cpu.segSel[CS]!, retLo = cpu.ripLo, retHi = cpu.ripHi;
  const spLo = cpu.gpr[2 * RSP]!, spHi = cpu.gpr[2 * RSP + 1]!;
  push(cpu, z, cs, 0);
  push(cpu, z, retLo, retHi);
  try {
    farTransfer(cpu, selector, offLo, offHi, z);
  } catch (e) {
    cpu.gpr[2 * RSP] = spLo; cpu.gpr[2 * RSP + 1] = spHi;
    throw e;
  }
}

/** Reads a far pointer m16:16/32/64 operand: offset (lo/hi) and selector. */
function readFarPointer(cpu: Cpu, i: Insn): { sel: number; lo: number; hi: number } {
  if (i.isReg) cpu.raise(Vector.UD);
  effectiveAddress(cpu, i);
  const z = i.opSize, a = cpu.eaLo, ah = cpu.eaHi;
  const lo = cpu.mmu.read(a, ah, z), hi = z === 8 ? cpu.mmu.hi : 0;
  return { lo, hi, sel: cpu.mmu.read16((a + z) | 0, ah) };
}

/** JMP m16:16/32/64 (FF /5) */
function jmpFarIndirect(cpu: Cpu, i: Insn): void {
  const p = readFarPointer(cpu, i);
  farTransfer(cpu, p.sel, p.lo, p.hi, i.opSize);
}

/** CALL m16:16/32/64 (FF /3) */
function callFarIndirect(cpu: Cpu, i: Insn): void {
  const p = readFarPointer(cpu, i);
  callFar(cpu, p.sel, p.lo, p.hi, i.opSize);
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
 * also pops SS:rSP (SDM vol. 2, RET "Operation", protected mode).
 */
function retFar(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const offLo = peek(cpu, z, 0), offHi = cpu.tHi;
  const sel = peek(cpu, z, z) & 0xffff;
  if (!protectedMode(cpu)) {
    adjustRsp(cpu, 2 * z + i.imm);
    cpu.setSegment(CS, sel, sel << 4, 0, cpu.segLimit[CS]!, cpu.segAttr[CS]!);
    cpu.ripLo = z === 2 ? offLo & 0xffff : offLo; cpu.ripHi = 0;
    return;
  }
  const rpl = sel & 3;
  checkReturnTarget(cpu, sel);
  const codeLo = desc.lo, codeHi = desc.hi;
  if (rpl === cpu.cpl) {
    adjustRsp(cpu, 2 * z + i.imm);
    desc.lo = codeLo; desc.hi = codeHi;
    loadCodeSegment(cpu, sel, rpl);
  } else {
    const spLo = peek(cpu, z, 2 * z + i.imm), spHi = cpu.tHi;
    const ss = peek(cpu, z, 3 * z + i.imm) & 0xffff;
    desc.lo = codeLo; desc.hi = codeHi;
    loadCodeSegment(cpu, sel, rpl);
    loadDataSegment(cpu, SS, ss);
    setReg(cpu, RSP, z === 8 ? 8 : cpu.stackSize, spLo, spHi);
    adjustRsp(cpu, i.imm);
    nullInaccessibleSegments(cpu);
  }
  const to64 = cpu.codeSize === 8;
  cpu.ripLo = to64 || z !== 2 ? offLo : offLo & 0xffff;
  cpu.ripHi = to64 ? offHi : 0;
  checkLimit(cpu, cpu.ripLo);
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

/** IRET/IRETD/IRETQ (CF). Ends the blocking of NMIs (SDM vol. 3A, 6.7.1). */
function iret(cpu: Cpu, i: Insn): void {
  iretFrame(cpu, i);
  cpu.nmiBlocked = false;
}

function iretFrame(cpu: Cpu, i: Insn): void {
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
  // NT = 1 asks for a task return: #GP(0) in IA-32e mode; task switching is not modelled.
  if (cpu.rflags & NT) cpu.raise(Vector.GP, 0);
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
    if (rpl !== oldCpl) nullInaccessibleSegments(cpu);
  } else {
    adjustRsp(cpu, 3 * z);
    desc.lo = codeLo; desc.hi = codeHi;
    loadCodeSegment(cpu, sel, rpl);
  }
  iretFlags(cpu, flags, z, oldCpl);
  const to64 = cpu.codeSize === 8;
  cpu.ripLo = to64 || z !== 2 ? ipLo : ipLo & 0xffff;
  cpu.ripHi = to64 ? ipHi : 0;
  checkLimit(cpu, cpu.ripLo);
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
    const a = cpu.eaLo, ah = cpu.eaHi, n = cpu.codeSize === 8 ? 10 : 6;
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
    if (set && !(flags & IF)) shadow(cpu);
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
  0xea: def('jmp', jmpFarDirect, { imm: Im.Ap, inv64: true, ...far }),
  0x9a: def('call', callFarDirect, { imm: Im.Ap, inv64: true, ...far }),
  0xca: def('retf', retFar, { imm: Im.Iw, ...far }),
  0xcb: def('retf', retFar, far),
  0xcf: def('iret', iret, far),
  0xff: { group: [undefined, undefined, undefined,
    def('call', callFarIndirect, { modrm: true, memOnly: true, ...far }), undefined,
    def('jmp', jmpFarIndirect, { modrm: true, memOnly: true, ...far })] },
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
