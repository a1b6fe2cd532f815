/**
 * Multiplication and division: group 3 /4-/7 (MUL, IMUL, DIV, IDIV) and the
 * two- and three-operand IMUL forms (SDM vol. 2, MUL, IMUL, DIV, IDIV).
 * 64-bit operands are multiplied and divided in 32- and 16-bit limbs with plain
 * Number arithmetic (no BigInt): every intermediate stays below 2^53.
 *
 * Undefined flags (the differential tester masks them):
 * - MUL/IMUL: SF, ZF, AF and PF are left unchanged. Intel does not document what its
 *   parts do; the AMD host leaves them unchanged, and so does this model.
 * - DIV/IDIV: all six status flags are left unchanged (the AMD host changes them).
 */
import type { Cpu } from '../cpu.js';
import { setStatusFlags } from '../flags.js';
import { Im, OpMap, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import { getReg, readRegOp, readRm, setReg, writeRegOp } from '../operands.js';
import { CF, OF, RAX, RDX, Vector } from '../regs.js';

const TWO32 = 4294967296;

/**
 * Results of the helpers below, allocated once: a 128-bit value as four 32-bit
 * limbs w0 (least significant) to w3, and a 64-bit remainder r0, r1.
 */
export const WIDE = { w0: 0, w1: 0, w2: 0, w3: 0, r0: 0, r1: 0 };

/** Unsigned 32 × 32 → 64 bits: low half in WIDE.w0, high half in WIDE.w1. */
export function mulU32(a: number, b: number): void {
  const aL = a & 0xffff, aH = a >>> 16, bL = b & 0xffff, bH = b >>> 16;
  const ll = aL * bL, lh = aL * bH, hl = aH * bL;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  WIDE.w0 = ((mid << 16) | (ll & 0xffff)) | 0;
  WIDE.w1 = (aH * bH + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) | 0;
}

/**
 * 64 × 64 → 128 bits of (aLo, aHi) × (bLo, bHi) into WIDE.w0-w3, signed (two's
 * complement operands) or unsigned.
 */
export function mul64(aLo: number, aHi: number, bLo: number, bHi: number, signed: boolean): void {
  mulU32(aLo, bLo); const p00l = WIDE.w0, p00h = WIDE.w1;
  mulU32(aLo, bHi); const p01l = WIDE.w0, p01h = WIDE.w1;
  mulU32(aHi, bLo); const p10l = WIDE.w0, p10h = WIDE.w1;
  mulU32(aHi, bHi); const p11l = WIDE.w0, p11h = WIDE.w1;
  const t1 = (p00h >>> 0) + (p01l >>> 0) + (p10l >>> 0);
  const c1 = Math.floor(t1 / TWO32);
  const t2 = (p01h >>> 0) + (p10h >>> 0) + (p11l >>> 0) + c1;
  const c2 = Math.floor(t2 / TWO32);
  let w2 = t2 | 0, w3 = (p11h + c2) | 0;
  if (signed) {
    // Signed high half = unsigned high half - (a < 0 ? b : 0) - (b < 0 ? a : 0), mod 2^64.
    if (aHi < 0) { const s = (w2 >>> 0) - (bLo >>> 0); w2 = s | 0; w3 = (w3 - bHi - (s < 0 ? 1 : 0)) | 0; }
    if (bHi < 0) { const s = (w2 >>> 0) - (aLo >>> 0); w2 = s | 0; w3 = (w3 - aHi - (s < 0 ? 1 : 0)) | 0; }
  }
  WIDE.w0 = p00l; WIDE.w1 = t1 | 0; WIDE.w2 = w2; WIDE.w3 = w3;
}

/**
 * The full product of two `size`-byte operands, signed or unsigned: the low
 * `size` bytes in (WIDE.w0, WIDE.w1), the high `size` bytes in (WIDE.w2, WIDE.w3).
 * Returns true when the high part is significant, which sets CF and OF
 * (SDM vol. 2, MUL: upper half non-zero; IMUL: the result does not fit the low half).
 */
export function multiply(size: number, aLo: number, aHi: number, bLo: number, bHi: number, signed: boolean): boolean {
  let lo: number, hi: number;
  switch (size) {
    case 1: case 2: {
      const sh = 32 - 8 * size;
      const a = signed ? (aLo << sh) >> sh : aLo, b = signed ? (bLo << sh) >> sh : bLo;
      const p = a * b, unit = size === 1 ? 256 : 65536;
      lo = p & (unit - 1);
      hi = Math.floor(p / unit) & (unit - 1);
      WIDE.w0 = lo; WIDE.w1 = 0; WIDE.w2 = hi; WIDE.w3 = 0;
      return signed ? p !== ((lo << sh) >> sh) : hi !== 0;
    }
    case 4:
      mulU32(aLo, bLo);
      lo = WIDE.w0; hi = WIDE.w1;
      if (signed) hi = (hi - (aLo < 0 ? bLo : 0) - (bLo < 0 ? aLo : 0)) | 0;
      WIDE.w1 = 0; WIDE.w2 = hi; WIDE.w3 = 0;
      return signed ? hi !== lo >> 31 : hi !== 0;
    default:
      mul64(aLo, aHi, bLo, bHi, signed);
      if (!signed) return WIDE.w2 !== 0 || WIDE.w3 !== 0;
      return WIDE.w2 !== WIDE.w1 >> 31 || WIDE.w3 !== WIDE.w1 >> 31;
  }
}

/** Unsigned (a1:a0) >= (b1:b0) on 64-bit values. */
function geU64(a1: number, a0: number, b1: number, b0: number): boolean {
  return a1 !== b1 ? (a1 >>> 0) > (b1 >>> 0) : (a0 >>> 0) >= (b0 >>> 0);
}

/**
 * Unsigned division of the 128-bit (n3:n2:n1:n0) by the 64-bit (d1:d0), which must
 * satisfy (n3:n2) < (d1:d0), so that the quotient fits in 64 bits: quotient into
 * (WIDE.w0, WIDE.w1), remainder into (WIDE.r0, WIDE.r1).
 */
export function divU128(n3: number, n2: number, n1: number, n0: number, d1: number, d0: number): void {
  if (d1 === 0) {
    // Divisor below 2^32: long division in 16-bit digits; each partial dividend is below 2^48.
    const d = d0 >>> 0;
    let r = n2 >>> 0, q1 = 0, q0 = 0;
    for (let k = 0; k < 4; k++) {
      const limb = k < 2 ? n1 : n0, digit = k % 2 === 0 ? limb >>> 16 : limb & 0xffff;
      const t = r * 65536 + digit, qd = Math.floor(t / d);
      r = t - qd * d;
      if (k < 2) q1 = q1 * 65536 + qd; else q0 = q0 * 65536 + qd;
    }
    WIDE.w0 = q0 | 0; WIDE.w1 = q1 | 0; WIDE.r0 = r | 0; WIDE.r1 = 0;
    return;
  }
  // Larger divisors: shift-and-subtract, one quotient bit per step.
  let rh = n3, rl = n2, qh = 0, ql = 0;
  for (let k = 63; k >= 0; k--) {
    const top = rh >>> 31;
    rh = (rh << 1) | (rl >>> 31);
    rl = (rl << 1) | ((k >= 32 ? n1 >>> (k - 32) : n0 >>> k) & 1);
    qh = (qh << 1) | (ql >>> 31);
    ql <<= 1;
    if (top || geU64(rh, rl, d1, d0)) {
      const s = (rl >>> 0) - (d0 >>> 0);
      rl = s | 0;
      rh = (rh - d1 - (s < 0 ? 1 : 0)) | 0;
      ql |= 1;
    }
  }
  WIDE.w0 = ql; WIDE.w1 = qh; WIDE.r0 = rl; WIDE.r1 = rh;
}

// ---- group 3 /4-/7 ----------------------------------------------------------------

/** MUL / IMUL r/m: rDX:rAX (AX for bytes) ← rAX × r/m. */
function mulAcc(signed: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    const b = readRm(cpu, i, z), bh = cpu.tHi;
    const a = getReg(cpu, RAX, z), ah = cpu.tHi;
    const wide = multiply(z, a, ah, b, bh, signed);
    if (z === 1) setReg(cpu, RAX, 2, WIDE.w0 | (WIDE.w2 << 8), 0);
    else { setReg(cpu, RAX, z, WIDE.w0, WIDE.w1); setReg(cpu, RDX, z, WIDE.w2, WIDE.w3); }
    setStatusFlags(cpu, CF | OF, wide ? CF | OF : 0);
  };
}

/**
 * DIV / IDIV r/m (SDM vol. 2, DIV, IDIV): rAX ← quotient, rDX ← remainder (AL, AH for
 * bytes). #DE for a zero divisor or a quotient that does not fit, before any change.
 * IDIV truncates toward zero; the remainder has the dividend's sign.
 */
function divAcc(signed: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize, g = cpu.gpr;
    let d = readRm(cpu, i, z), dh = cpu.tHi;
    if (d === 0 && dh === 0) cpu.raise(Vector.DE);
    if (z <= 2) {
      // The dividend (AX or DX:AX) and every result fit a double exactly.
      const bits = 8 * z, unit = z === 1 ? 256 : 65536;
      const high = z === 1 ? (g[0]! >> 8) & 0xff : g[4]! & 0xffff;
      let num = high * unit + (g[0]! & (unit - 1)), div = d;
      if (signed) {
        num = z === 1 ? (num << 16) >> 16 : num | 0;
        div = (d << (32 - bits)) >> (32 - bits);
      }
      const q = Math.trunc(num / div), r = num - q * div;
      if (signed ? q < -unit / 2 || q >= unit / 2 : q >= unit) cpu.raise(Vector.DE);
      if (z === 1) setReg(cpu, RAX, 2, (q & 0xff) | ((r & 0xff) << 8), 0);
      else { setReg(cpu, RAX, 2, q, 0); setReg(cpu, RDX, 2, r, 0); }
      return;
    }
    // 32- and 64-bit: the dividend as four 32-bit limbs, made non-negative for IDIV.
    let n3: number, n2: number, n1: number, n0: number;
    if (z === 4) { n3 = 0; n2 = 0; n1 = g[4]!; n0 = g[0]!; }
    else { n3 = g[5]!; n2 = g[4]!; n1 = g[1]!; n0 = g[0]!; }
    const nNeg = signed && (z === 4 ? n1 : n3) < 0, dNeg = signed && (z === 4 ? d : dh) < 0;
    if (nNeg) {
      if (z === 4) { n1 = ~n1; n0 = -n0 | 0; if (n0 === 0) n1 = (n1 + 1) | 0; }
      else {
        n3 = ~n3; n2 = ~n2; n1 = ~n1; n0 = -n0 | 0;
        if (n0 === 0) { n1 = (n1 + 1) | 0; if (n1 === 0) { n2 = (n2 + 1) | 0; if (n2 === 0) n3 = (n3 + 1) | 0; } }
      }
    }
    if (dNeg) {
      if (z === 4) d = -d | 0;
      else { dh = d === 0 ? -dh | 0 : ~dh; d = -d | 0; }
    }
    if (z === 4) dh = 0;
    // The quotient fits 64 bits only if the high half of the dividend is below the divisor.
    if (geU64(n3, n2, dh, d)) cpu.raise(Vector.DE);
    divU128(n3, n2, n1, n0, dh, d);
    let q0 = WIDE.w0, q1 = WIDE.w1, r0 = WIDE.r0, r1 = WIDE.r1;
    // Range of the quotient: z bytes unsigned, or signed with magnitude up to 2^(8z-1) when negative.
    const qNeg = nNeg !== dNeg;
    const over = z === 4
      ? q1 !== 0 || (signed && (q0 >>> 0) > (qNeg ? 0x80000000 : 0x7fffffff))
      : signed && ((q1 >>> 0) > 0x80000000 || ((q1 >>> 0) === 0x80000000 && (q0 !== 0 || !qNeg)));
    if (over) cpu.raise(Vector.DE);
    if (qNeg) { q1 = q0 === 0 ? -q1 | 0 : ~q1; q0 = -q0 | 0; }
    if (nNeg) { r1 = r0 === 0 ? -r1 | 0 : ~r1; r0 = -r0 | 0; }
    setReg(cpu, RAX, z, q0, q1);
    setReg(cpu, RDX, z, r0, r1);
  };
}

// ---- IMUL r, r/m and IMUL r, r/m, imm ----------------------------------------------

/** IMUL Gv, Ev (0F AF), Gv, Ev, Iz (69), Gv, Ev, Ib (6B): the product truncated to the operand size. */
function imulTrunc(withImm: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    let b: number, bh: number;
    if (withImm) { b = i.imm; bh = i.immHi; }
    else { b = readRegOp(cpu, i, z); bh = cpu.tHi; }
    const a = readRm(cpu, i, z), ah = cpu.tHi;
    const wide = multiply(z, a, ah, b, bh, true);
    writeRegOp(cpu, i, z, WIDE.w0, WIDE.w1);
    setStatusFlags(cpu, CF | OF, wide ? CF | OF : 0);
  };
}

// ---- the table -------------------------------------------------------------------------

const def = (name: string, exec: OpDef['exec'], extra: Omit<OpDef, 'name' | 'exec'> = {}): OpDef =>
  ({ name, exec, modrm: true, ...extra });

/** Slots 4-7 of group 3; slots 0-3 (TEST, NOT, NEG) belong to alu.ts. */
const group3 = (size: Sz): Entry => ({
  group: [undefined, undefined, undefined, undefined,
    def('mul', mulAcc(false), { size }), def('imul', mulAcc(true), { size }),
    def('div', divAcc(false), { size }), def('idiv', divAcc(true), { size })],
});

export const MULDIV_TABLE: Record<number, Entry> = {
  0xf6: group3(Sz.B),
  0xf7: group3(Sz.V),
  [OpMap.TWO * 256 + 0xaf]: def('imul', imulTrunc(false)),
  0x69: def('imul', imulTrunc(true), { imm: Im.Iz }),
  0x6b: def('imul', imulTrunc(true), { imm: Im.Ib }),
};
