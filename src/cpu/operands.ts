/**
 * Operand access shared by every instruction: registers of each size, effective
 * addresses (SDM vol. 2, 2.1.5 and 2.2.1.6), ModRM operands and the stack.
 * A 64-bit value travels as (lo, hi); reads return lo and leave hi in cpu.tHi.
 */
import type { Cpu } from './cpu.js';
import { BASE_RIP, HIGH_BYTE, type Insn } from './insn.js';
import { CS, RSP, SS, Vector } from './regs.js';
import { checkOffset, NO_LIMIT } from './segment-limits.js';

/** Value mask of a narrow operand size: 1 → 0xff, 2 → 0xffff, 4 and 8 → all bits. */
export const SIZE_MASK = [0, 0xff, 0xffff, 0, -1, 0, 0, 0, -1] as const;

/** Reads register `r` (a byte register code when size is 1). */
export function getReg(cpu: Cpu, r: number, size: number): number {
  const g = cpu.gpr;
  switch (size) {
    case 8: cpu.tHi = g[2 * r + 1]!; return g[2 * r]!;
    case 4: cpu.tHi = 0; return g[2 * r]!;
    case 2: cpu.tHi = 0; return g[2 * r]! & 0xffff;
    default:
      cpu.tHi = 0;
      return r < HIGH_BYTE ? g[2 * r]! & 0xff : (g[2 * (r - HIGH_BYTE)]! >> 8) & 0xff;
  }
}

/** Writes register `r`. A 32-bit write zeroes bits 63:32 (SDM vol. 1, 3.4.1.1); narrower writes merge. */
export function setReg(cpu: Cpu, r: number, size: number, lo: number, hi: number): void {
  const g = cpu.gpr;
  switch (size) {
    case 8: g[2 * r] = lo; g[2 * r + 1] = hi; return;
    case 4: g[2 * r] = lo; g[2 * r + 1] = 0; return;
    case 2: g[2 * r] = (g[2 * r]! & ~0xffff) | (lo & 0xffff); return;
    default:
      if (r < HIGH_BYTE) g[2 * r] = (g[2 * r]! & ~0xff) | (lo & 0xff);
      else { const n = 2 * (r - HIGH_BYTE); g[n] = (g[n]! & ~0xff00) | ((lo & 0xff) << 8); }
  }
}

/**
 * Computes the offset of the memory operand into cpu.eaLo/eaHi:
 * base + index * scale + displacement at the address size (LEA's result).
 */
export function operandOffset(cpu: Cpu, i: Insn): void {
  const g = cpu.gpr;
  let lo: number, hi: number;
  if (i.adSize === 8) {
    lo = i.disp; hi = i.disp >> 31;
    if (i.base >= 0) {
      const bLo = i.base === BASE_RIP ? cpu.ripLo : g[2 * i.base]!;
      const bHi = i.base === BASE_RIP ? cpu.ripHi : g[2 * i.base + 1]!;
      const s = (lo >>> 0) + (bLo >>> 0);
      lo = s | 0; hi = (hi + bHi + (s > 0xffffffff ? 1 : 0)) | 0;
    }
    if (i.index >= 0) {
      let xLo = g[2 * i.index]!, xHi = g[2 * i.index + 1]!;
      if (i.scale) { xHi = (xHi << i.scale) | (xLo >>> (32 - i.scale)); xLo <<= i.scale; }
      const s = (lo >>> 0) + (xLo >>> 0);
      lo = s | 0; hi = (hi + xHi + (s > 0xffffffff ? 1 : 0)) | 0;
    }
  } else {
    hi = 0;
    if (i.adSize === 4) {
      lo = i.disp;
      if (i.base >= 0) lo = (lo + (i.base === BASE_RIP ? cpu.ripLo : g[2 * i.base]!)) | 0;
      if (i.index >= 0) lo = (lo + (g[2 * i.index]! << i.scale)) | 0;
    } else {
      lo = i.disp;
      if (i.base >= 0) lo += g[2 * i.base]!;
      if (i.index >= 0) lo += g[2 * i.index]!;
      lo &= 0xffff;
    }
  }
  cpu.eaLo = lo; cpu.eaHi = hi;
}

/** Adds the base of segment `seg` to the offset in cpu.eaLo/eaHi (SDM vol. 3A, 3.4). */
export function addSegmentBase(cpu: Cpu, seg: number): void {
  const s = (cpu.eaLo >>> 0) + (cpu.segBase[2 * seg]! >>> 0);
  cpu.eaLo = s | 0;
  cpu.eaHi = cpu.codeSize === 8 ? (cpu.eaHi + cpu.segBase[2 * seg + 1]! + (s > 0xffffffff ? 1 : 0)) | 0 : 0;
}

/** Computes the linear address of the memory operand into cpu.eaLo/eaHi. */
export function effectiveAddress(cpu: Cpu, i: Insn): void {
  operandOffset(cpu, i);
  if (i.segBase) addSegmentBase(cpu, i.seg);
  cpu.accessSeg = i.seg;
}

/**
 * Checks an access of `size` bytes at the last effective address against the
 * limit and type of its segment, cpu.accessSeg (SDM vol. 3A, 5.3, 5.4): #GP(0),
 * or #SS(0) for SS. In 64-bit mode and on flat segments this is one comparison.
 * Operands read or written in several parts are checked whole, once.
 */
export function checkSegment(cpu: Cpu, size: number, write: boolean): void {
  const seg = cpu.accessSeg;
  if ((write ? cpu.segWriteMax[seg]! : cpu.segReadMax[seg]!) === NO_LIMIT) return;
  checkOffset(cpu, seg, (cpu.eaLo - cpu.segBase[2 * seg]!) >>> 0, size, write);
}

/** Reads the ModRM r/m operand of `size` bytes. */
export function readRm(cpu: Cpu, i: Insn, size: number): number {
  if (i.isReg) return getReg(cpu, size === 1 ? i.rmB : i.rm, size);
  effectiveAddress(cpu, i);
  return readEa(cpu, size);
}

/**
 * Reads the r/m operand of a read-modify-write instruction. A memory operand is
 * checked for writing first, so the instruction faults before it changes any
 * state, flags included (a fault leaves the processor as before the instruction).
 */
export function readRmw(cpu: Cpu, i: Insn, size: number): number {
  if (i.isReg) return getReg(cpu, size === 1 ? i.rmB : i.rm, size);
  effectiveAddress(cpu, i);
  const lo = readEa(cpu, size), hi = cpu.tHi;
  checkSegment(cpu, size, true);
  cpu.mmu.checkWrite(cpu.eaLo, cpu.eaHi, size);
  cpu.tHi = hi;
  return lo;
}

/** Reads `size` bytes at the last effective address, after the segment checks. */
export function readEa(cpu: Cpu, size: number): number {
  checkSegment(cpu, size, false);
  return readLinear(cpu, size);
}

/** Writes `size` bytes at the last effective address, after the segment checks. */
export function writeEa(cpu: Cpu, size: number, lo: number, hi: number): void {
  checkSegment(cpu, size, true);
  cpu.mmu.write(cpu.eaLo, cpu.eaHi, size, lo, hi);
}

/** Reads `size` bytes at the last linear address, whose segment checks are done. */
function readLinear(cpu: Cpu, size: number): number {
  const m = cpu.mmu;
  const lo = m.read(cpu.eaLo, cpu.eaHi, size);
  cpu.tHi = size === 8 ? m.hi : 0;
  return lo;
}

/** Writes the ModRM r/m operand (computing its address). */
export function writeRm(cpu: Cpu, i: Insn, size: number, lo: number, hi: number): void {
  if (i.isReg) { setReg(cpu, size === 1 ? i.rmB : i.rm, size, lo, hi); return; }
  effectiveAddress(cpu, i);
  writeEa(cpu, size, lo, hi);
}

/** The dwords of the last 128-bit memory operand readM128 read: bits 31:0 at 0 ... bits 127:96 at 3. */
export const m128 = new Int32Array(4);

/** Reads a 128-bit memory operand (the descriptors of INVPCID, INVVPID, INVEPT) into m128. */
export function readM128(cpu: Cpu, i: Insn): void {
  effectiveAddress(cpu, i);
  checkSegment(cpu, 16, false);
  const m = cpu.mmu, aLo = cpu.eaLo, aHi = cpu.eaHi;
  m128[0] = m.read64(aLo, aHi); m128[1] = m.hi;
  const s8 = (aLo >>> 0) + 8;
  m128[2] = m.read64(s8 | 0, i.mode === 8 ? (aHi + (s8 > 0xffffffff ? 1 : 0)) | 0 : 0); m128[3] = m.hi;
}

/** Writes the r/m operand that readRm just read (read-modify-write: the address is reused). */
export function writeBack(cpu: Cpu, i: Insn, size: number, lo: number, hi: number): void {
  if (i.isReg) setReg(cpu, size === 1 ? i.rmB : i.rm, size, lo, hi);
  else writeEa(cpu, size, lo, hi);
}

/** Reads the ModRM reg operand. */
export function readRegOp(cpu: Cpu, i: Insn, size: number): number {
  return getReg(cpu, size === 1 ? i.regB : i.reg, size);
}

/** Writes the ModRM reg operand. */
export function writeRegOp(cpu: Cpu, i: Insn, size: number, lo: number, hi: number): void {
  setReg(cpu, size === 1 ? i.regB : i.reg, size, lo, hi);
}

// ---- the stack (SDM vol. 1, 6.2) ----------------------------------------------

/**
 * Linear address of SS:(RSP + delta) at the stack size, into cpu.eaLo/eaHi,
 * for an access of `size` bytes, checked against SS's limit and type.
 */
function stackAddress(cpu: Cpu, delta: number, size: number, write: boolean): void {
  stackAddressFrom(cpu, cpu.gpr[2 * RSP]!, cpu.gpr[2 * RSP + 1]!, delta, size, write);
}

/**
 * Linear address of SS:(base + delta) with base wrapped to the stack size.
 * Outside 64-bit stacks the offset is checked against SS (SDM vol. 3A, 5.3,
 * 5.4: #SS(0)). The stack size, not the code size, decides: an interrupt from
 * compatibility mode pushes a 64-bit frame before CS changes (6.14.2).
 */
function stackAddressFrom(cpu: Cpu, baseLo: number, baseHi: number, delta: number, size: number, write: boolean): void {
  let lo = baseLo, hi = 0;
  if (cpu.stackSize === 8) {
    hi = baseHi;
    const s = (lo >>> 0) + delta;
    lo = s | 0;
    hi = (hi + (s > 0xffffffff ? 1 : s < 0 ? -1 : 0)) | 0;
  } else {
    lo = cpu.stackSize === 4 ? (lo + delta) | 0 : (lo + delta) & 0xffff;
    if ((write ? cpu.segWriteMax[SS]! : cpu.segReadMax[SS]!) !== NO_LIMIT) checkOffset(cpu, SS, lo >>> 0, size, write);
    const s = (lo >>> 0) + (cpu.segBase[2 * SS]! >>> 0);
    lo = s | 0;
  }
  cpu.eaLo = lo; cpu.eaHi = hi; cpu.accessSeg = SS;
}

/** Adds `delta` to the stack pointer at the stack size. */
export function adjustRsp(cpu: Cpu, delta: number): void {
  const g = cpu.gpr;
  if (cpu.stackSize === 8) {
    const s = (g[2 * RSP]! >>> 0) + delta;
    g[2 * RSP] = s | 0;
    g[2 * RSP + 1] = (g[2 * RSP + 1]! + (s > 0xffffffff ? 1 : s < 0 ? -1 : 0)) | 0;
  } else if (cpu.stackSize === 4) {
    g[2 * RSP] = (g[2 * RSP]! + delta) | 0;
  } else {
    g[2 * RSP] = (g[2 * RSP]! & ~0xffff) | ((g[2 * RSP]! + delta) & 0xffff);
  }
}

/** Pushes a value of `size` bytes; nothing changes if the write faults. */
export function push(cpu: Cpu, size: number, lo: number, hi: number): void {
  stackAddress(cpu, -size, size, true);
  cpu.mmu.write(cpu.eaLo, cpu.eaHi, size, lo, hi);
  adjustRsp(cpu, -size);
}

/**
 * PUSH of a segment register: a slot of `size` bytes, of which only the low
 * 16 bits are written; the rest keeps its value (SDM vol. 2, PUSH: recent Core
 * processors make a 16-bit move when the operand size is 32 or 64 bits).
 */
export function pushSelector(cpu: Cpu, size: number, selector: number): void {
  stackAddress(cpu, -size, size, true);
  cpu.mmu.write(cpu.eaLo, cpu.eaHi, 2, selector, 0);
  adjustRsp(cpu, -size);
}

/** Reads the value `offset` bytes above the top of the stack without popping it. */
export function peek(cpu: Cpu, size: number, offset: number): number {
  stackAddress(cpu, offset, size, false);
  return readLinear(cpu, size);
}

/** Reads `size` bytes at SS:(base + delta), as ENTER reads enclosing frames. */
export function readStack(cpu: Cpu, baseLo: number, baseHi: number, delta: number, size: number): number {
  stackAddressFrom(cpu, baseLo, baseHi, delta, size, false);
  return readLinear(cpu, size);
}

/** Pops a value of `size` bytes (hi in cpu.tHi). */
export function pop(cpu: Cpu, size: number): number {
  const lo = peek(cpu, size, 0);
  adjustRsp(cpu, size);
  return lo;
}

// ---- RIP ----------------------------------------------------------------------

/**
 * Sets RIP to the next instruction's address plus `dispLo/dispHi`, truncated to the
 * operand size outside 64-bit operation (SDM vol. 2, JMP: "tempEIP AND 0000FFFFH").
 */
export function jumpRelative(cpu: Cpu, size: number, disp: number): void {
  if (size === 8) {
    const s = (cpu.ripLo >>> 0) + (disp >>> 0);
    cpu.ripHi = (cpu.ripHi + (disp >> 31) + (s > 0xffffffff ? 1 : 0)) | 0;
    cpu.ripLo = s | 0;
  } else {
    cpu.ripLo = size === 4 ? (cpu.ripLo + disp) | 0 : (cpu.ripLo + disp) & 0xffff;
    cpu.ripHi = 0;
  }
}

/**
 * The target check of a relative branch (Jcc, JMP, CALL, JrCXZ): a target
 * outside the canonical range in 64-bit mode, or beyond the CS limit outside
 * it, is #GP(0) at the branch, RIP and the stack untouched (SDM vol. 2, each
 * one's "Operation" and exceptions; vol. 3A 5.3).
 */
export function checkRelativeTarget(cpu: Cpu, size: number, disp: number): void {
  if (size !== 8) {
    const target = size === 4 ? (cpu.ripLo + disp) >>> 0 : (cpu.ripLo + disp) & 0xffff;
    if (target > cpu.segLimit[CS]!) cpu.raise(Vector.GP, 0);
    return;
  }
  const hi = (cpu.ripHi + (disp >> 31) + ((cpu.ripLo >>> 0) + (disp >>> 0) > 0xffffffff ? 1 : 0)) | 0;
  const c = cpu.mmu.canonicalShift;
  if (((hi << c) >> c) !== hi) cpu.raise(Vector.GP, 0);
}

/** A relative branch taken: RIP (already past the instruction) moves by `disp`, the target checked. */
export function branchRelative(cpu: Cpu, size: number, disp: number): void {
  checkRelativeTarget(cpu, size, disp);
  jumpRelative(cpu, size, disp);
}

/** Sets RIP to an absolute target at the operand size. */
export function jumpAbsolute(cpu: Cpu, size: number, lo: number, hi: number): void {
  if (size === 8) {
    const s = cpu.mmu.canonicalShift;
    if (((hi << s) >> s) !== hi) cpu.raise(13, 0);
    cpu.ripLo = lo; cpu.ripHi = hi;
  } else {
    cpu.ripLo = size === 4 ? lo : lo & 0xffff;
    cpu.ripHi = 0;
  }
}

/**
 * Points RIP back at the instruction so that it executes again: a repeated
 * string or I/O instruction that has not finished (16/32-bit IP wraps).
 */
export function repeatInstruction(cpu: Cpu, i: Insn): void {
  if (i.mode === 8) {
    const s = (cpu.ripLo >>> 0) - i.len;
    cpu.ripLo = s | 0;
    if (s < 0) cpu.ripHi = (cpu.ripHi - 1) | 0;
  } else {
    cpu.ripLo = i.mode === 4 ? (cpu.ripLo - i.len) | 0 : (cpu.ripLo - i.len) & 0xffff;
  }
}
