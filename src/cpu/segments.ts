/**
 * Segmentation: reading descriptors from the GDT/LDT and loading segment
 * registers with the protection checks of SDM vol. 3A chapter 3 ("Protected-
 * Mode Memory Management") and chapter 5 ("Protection"), and the pseudo-code of
 * MOV/POP Sreg, LDS/LES/LFS/LGS/LSS, JMP/CALL/RET far and IRET in vol. 2.
 */
import type { Cpu } from './cpu.js';
import { EFER_LMA, SegAttr } from './regs.js';
import { CS, LDTR, SS, TR, VM, Vector } from './regs.js';

/** The descriptor last read by readDescriptor: its two dwords (and the third and fourth of a 16-byte one). */
export const desc = { lo: 0, hi: 0, hi2: 0, hi3: 0 };

/** Access rights (VMCS layout) of a descriptor's high dword. */
export function attrOf(hi: number): number { return (hi >>> 8) & 0xf0ff; }
export function baseOf(lo: number, hi: number): number {
  return ((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) | 0;
}
export function limitOf(lo: number, hi: number): number {
  const raw = (hi & 0xf0000) | (lo & 0xffff);
  return (hi & (1 << 23)) ? ((raw << 12) | 0xfff) >>> 0 : raw;
}

/** True in protected mode outside virtual-8086 mode. */
export function protectedMode(cpu: Cpu): boolean {
  return (cpu.cr0 & 1) !== 0 && (cpu.flags & VM) === 0;
}

/** True in IA-32e mode (long mode: 64-bit or compatibility sub-mode). */
export function longMode(cpu: Cpu): boolean { return (cpu.efer & EFER_LMA) !== 0; }

/** Scratch: the linear address descriptorAddress found, and the 64-bit value readTss64 read. */
const at = { lo: 0, hi: 0 };
export const tssValue = { lo: 0, hi: 0 };

/**
 * Puts the linear address of the descriptor `selector` names in `at`; false when
 * it lies beyond its table's limit (or the LDT is unusable). `size` is 8, or 16
 * for system descriptors in IA-32e mode.
 */
function descriptorAddress(cpu: Cpu, selector: number, size: number): boolean {
  const index = selector & 0xfff8;
  let baseLo: number, baseHi: number, limit: number;
  if (selector & 4) {
    if (cpu.segAttr[LDTR]! & SegAttr.UNUSABLE) return false;
    baseLo = cpu.segBase[2 * LDTR]!; baseHi = cpu.segBase[2 * LDTR + 1]!; limit = cpu.segLimit[LDTR]!;
  } else {
    baseLo = cpu.gdtrLo; baseHi = cpu.gdtrHi; limit = cpu.gdtrLimit;
  }
  if (index + size - 1 > limit) return false;
  const s = (baseLo >>> 0) + index;
  at.lo = s | 0;
  at.hi = longMode(cpu) ? (baseHi + (s > 0xffffffff ? 1 : 0)) | 0 : 0;
  return true;
}

/**
 * Reads the descriptor of `selector` into `desc`; raises `vector`(selector) when
 * it lies outside its table. Descriptor-table reads are supervisor accesses.
 */
export function readDescriptor(cpu: Cpu, selector: number, size = 8, vector: number = Vector.GP): void {
  if (!descriptorAddress(cpu, selector, size)) cpu.raise(vector, selector & 0xfffc);
  const m = cpu.mmu, lo = at.lo, hi = at.hi;
  // Descriptor-table reads are implicit supervisor accesses (SDM vol. 3A, 4.6).
  desc.lo = m.readImplicit(lo, hi, 4);
  desc.hi = m.readImplicit((lo + 4) | 0, hi, 4);
  desc.hi2 = size === 16 ? m.readImplicit((lo + 8) | 0, hi, 4) : 0;
  desc.hi3 = size === 16 ? m.readImplicit((lo + 12) | 0, hi, 4) : 0;
}

/** Sets the accessed bit of the descriptor last read, in memory, if it is clear. */
function markAccessed(cpu: Cpu, selector: number): void {
  if (desc.hi & (1 << 8)) return;
  descriptorAddress(cpu, selector, 8);
  desc.hi |= 1 << 8;
  cpu.mmu.writeImplicit((at.lo + 4) | 0, at.hi, 4, desc.hi, 0);
}

/** Loads the hidden part from the descriptor in `desc`. */
function loadFromDescriptor(cpu: Cpu, seg: number, selector: number): void {
  cpu.setSegment(seg, selector, baseOf(desc.lo, desc.hi), 0, limitOf(desc.lo, desc.hi), attrOf(desc.hi));
}

/** Marks a segment register unusable after a null selector load (SDM vol. 3C, 25.4.1: "unusable"). */
export function loadNull(cpu: Cpu, seg: number, selector: number): void {
  cpu.setSegment(seg, selector, 0, 0, 0, SegAttr.UNUSABLE);
}

/**
 * Loads SS with a null selector whose RPL is `cpl`; the hidden DPL keeps the
 * CPL (SDM vol. 3A, 5.8.5 and 6.14.4: IA-32e mode inner stacks have a null SS).
 */
export function loadNullStack(cpu: Cpu, cpl: number): void {
  cpu.setSegment(SS, cpl, 0, 0, 0, SegAttr.UNUSABLE | (cpl << 5));
}

/** Real-address and virtual-8086 mode: base = selector × 16 (SDM vol. 3A, 20.1.1). */
function loadRealMode(cpu: Cpu, seg: number, selector: number): void {
  const attr = (cpu.flags & VM)
    ? SegAttr.P | SegAttr.S | (seg === CS ? 0xb : 0x3) | (3 << 5)
    : cpu.segAttr[seg]! & ~SegAttr.UNUSABLE | SegAttr.P;
  const limit = (cpu.flags & VM) ? 0xffff : cpu.segLimit[seg]!;
  cpu.setSegment(seg, selector, selector << 4, 0, limit, attr);
}

const isCode = (attr: number): boolean => (attr & SegAttr.S) !== 0 && (attr & 8) !== 0;
const isConforming = (attr: number): boolean => (attr & 0xc) === 0xc;
const isReadable = (attr: number): boolean => (attr & 2) !== 0;
const isWritableData = (attr: number): boolean => (attr & SegAttr.S) !== 0 && (attr & 0xa) === 2;
const dplOf = (attr: number): number => (attr >> 5) & 3;

/**
 * Loads DS, ES, FS, GS or SS with `selector` (MOV Sreg, POP Sreg, LxS;
 * SDM vol. 2, MOV "Operation": the protected-mode checks in order).
 */
export function loadDataSegment(cpu: Cpu, seg: number, selector: number): void {
  if (!protectedMode(cpu)) { loadRealMode(cpu, seg, selector); return; }
  const rpl = selector & 3, cpl = cpu.cpl;
  if ((selector & 0xfffc) === 0) {
    // A null SS is allowed only in 64-bit mode at CPL < 3 with RPL = CPL.
    if (seg === SS && !(cpu.codeSize === 8 && cpl !== 3 && rpl === cpl)) cpu.raise(Vector.GP, 0);
    if (seg === SS) loadNullStack(cpu, cpl);
    else loadNull(cpu, seg, selector);
    return;
  }
  readDescriptor(cpu, selector);
  const attr = attrOf(desc.hi);
  const err = selector & 0xfffc;
  if (seg === SS) {
    if (rpl !== cpl || !isWritableData(attr) || dplOf(attr) !== cpl) cpu.raise(Vector.GP, err);
    if (!(attr & SegAttr.P)) cpu.raise(Vector.SS, err);
  } else {
    if (!(attr & SegAttr.S) || (isCode(attr) && !isReadable(attr))) cpu.raise(Vector.GP, err);
    if (!isCode(attr) || !isConforming(attr)) {
      if (rpl > dplOf(attr) || cpl > dplOf(attr)) cpu.raise(Vector.GP, err);
    }
    if (!(attr & SegAttr.P)) cpu.raise(Vector.NP, err);
  }
  markAccessed(cpu, selector);
  loadFromDescriptor(cpu, seg, selector);
}

/**
 * Checks a code-segment descriptor in `desc` as the target of a far JMP/CALL/RET
 * or an interrupt, and loads CS with RPL = `newCpl`. Raises #GP/#NP(selector).
 */
export function loadCodeSegment(cpu: Cpu, selector: number, newCpl: number): void {
  const attr = attrOf(desc.hi);
  const err = selector & 0xfffc;
  if (!isCode(attr)) cpu.raise(Vector.GP, err);
  // IA-32e mode: L and D both set is reserved (SDM vol. 3A, 5.2.1).
  if (longMode(cpu) && (attr & SegAttr.L) && (attr & SegAttr.DB)) cpu.raise(Vector.GP, err);
  if (!(attr & SegAttr.P)) cpu.raise(Vector.NP, err);
  markAccessed(cpu, selector);
  cpu.cpl = newCpl;
  cpu.setSegment(CS, (selector & 0xfffc) | newCpl, baseOf(desc.lo, desc.hi), 0, limitOf(desc.lo, desc.hi), attrOf(desc.hi));
}

/**
 * Privilege checks of a direct far JMP/CALL to a code segment (SDM vol. 3A,
 * 5.8.1): conforming needs DPL <= CPL; non-conforming needs RPL <= CPL and
 * DPL = CPL. CPL does not change.
 */
export function checkDirectCodeTarget(cpu: Cpu, selector: number): void {
  const attr = attrOf(desc.hi), rpl = selector & 3, dpl = dplOf(attr), err = selector & 0xfffc;
  if (!isCode(attr)) cpu.raise(Vector.GP, err);
  // IA-32e mode: L and D both set is reserved (SDM vol. 2, CALL "CONFORMING-CODE-SEGMENT").
  if (longMode(cpu) && (attr & SegAttr.L) && (attr & SegAttr.DB)) cpu.raise(Vector.GP, err);
  if (isConforming(attr) ? dpl > cpu.cpl : rpl > cpu.cpl || dpl !== cpu.cpl) cpu.raise(Vector.GP, err);
}

/** Reads the 64-bit TSS's RSPn or ISTn field (SDM vol. 3A, 8.7, figure 8-11) into tssValue. */
export function readTss64(cpu: Cpu, offset: number): void {
  if (offset + 7 > cpu.segLimit[TR]!) cpu.raise(Vector.TS, cpu.segSel[TR]! & 0xfffc);
  const s = (cpu.segBase[2 * TR]! >>> 0) + offset;
  const lo = s | 0, hi = (cpu.segBase[2 * TR + 1]! + (s > 0xffffffff ? 1 : 0)) | 0;
  tssValue.lo = cpu.mmu.readImplicit(lo, hi, 8);
  tssValue.hi = cpu.mmu.hi;
}

/**
 * Reads the 32-bit TSS's ESPn (tssValue.lo) and SSn (tssValue.hi) for privilege
 * level n (SDM vol. 3A, 8.2.1); a 16-bit TSS (type 1 or 3) holds SPn and SSn at
 * 2 + 4n (SDM vol. 2, CALL "MORE-PRIVILEGE"; vol. 3A, 8.6).
 */
export function readTss32Stack(cpu: Cpu, n: number): void {
  const tss16 = (cpu.segAttr[TR]! & 8) === 0;
  const off = tss16 ? 2 + 4 * n : 4 + 8 * n, size = tss16 ? 2 : 4;
  if (off + size + 1 > cpu.segLimit[TR]!) cpu.raise(Vector.TS, cpu.segSel[TR]! & 0xfffc);
  const base = cpu.segBase[2 * TR]!;
  tssValue.lo = cpu.mmu.readImplicit((base + off) | 0, 0, size);
  tssValue.hi = cpu.mmu.readImplicit((base + off + size) | 0, 0, 2);
}

/**
 * Loads SS for an inner-privilege stack switch (interrupts, call gates):
 * the new SS must be a present writable data segment with DPL = RPL = newCpl.
 * Raises #TS(selector), #SS(selector) (SDM vol. 3A, 6.12.1).
 */
export function loadStackSegment(cpu: Cpu, selector: number, newCpl: number): void {
  const err = selector & 0xfffc;
  if (err === 0) cpu.raise(Vector.TS, 0);
  readDescriptor(cpu, selector, 8, Vector.TS);
  const attr = attrOf(desc.hi);
  if ((selector & 3) !== newCpl || !isWritableData(attr) || dplOf(attr) !== newCpl) cpu.raise(Vector.TS, err);
  if (!(attr & SegAttr.P)) cpu.raise(Vector.SS, err);
  markAccessed(cpu, selector);
  loadFromDescriptor(cpu, SS, selector);
}

/**
 * After a return to an outer privilege level, data segment registers the new
 * CPL may not use are made null (SDM vol. 2, RET/IRET: "FOR each of segment
 * register ES, FS, GS, and DS ... IF DPL < CPL and not conforming code ... null").
 */
export function nullInaccessibleSegments(cpu: Cpu): void {
  for (let seg = 0; seg < 6; seg++) {
    if (seg === CS || seg === SS) continue;
    const attr = cpu.segAttr[seg]!;
    if (attr & SegAttr.UNUSABLE) continue;
    if ((!isCode(attr) || !isConforming(attr)) && dplOf(attr) < cpu.cpl) loadNull(cpu, seg, 0);
  }
}

export { dplOf, isCode, isConforming };
