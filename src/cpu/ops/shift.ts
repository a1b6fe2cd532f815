/**
 * Shifts and rotates: group 2 (ROL ROR RCL RCR SHL SHR SAL SAR) and the
 * double-precision shifts SHLD/SHRD (SDM vol. 2, "RCL/RCR/ROL/ROR",
 * "SAL/SAR/SHL/SHR", "SHLD", "SHRD"). Flags are set eagerly.
 *
 * Every size works on a 64-bit value held as two 32-bit halves (lo, hi); an
 * N-bit operand (N = 8, 16, 32) has hi = 0 and is masked back to N bits.
 *
 * Choices where the SDM leaves results undefined (the differential tester masks these):
 * - OF for counts other than 1 is computed as for the last one-bit step:
 *   SHL, SHLD, ROL, RCL: OF = MSB(result) XOR CF; SHR: OF = MSB of the value before
 *   the last step (0 for count > 1); SAR: OF = 0; ROR, RCR, SHRD: OF = the XOR of the
 *   two most-significant result bits. This is what the AMD host does for SHL, ROL and
 *   RCL, and what Intel is reported to do for SHL.
 * - AF after a shift with a non-zero count reads 0 (as after logic instructions).
 *   The AMD host sets it to 1.
 * - SHL/SHR of an 8- or 16-bit operand by count >= N: CF follows the SDM pseudo-code
 *   loop (the last bit shifted out, 0 once every bit has gone).
 * - RCL/RCR of 8/16 bits whose masked count is a multiple of 9/17 (e.g. 9): the value
 *   and CF stay, OF is still recomputed from the result (as on the AMD host).
 * - 16-bit SHLD/SHRD with count > 16 shift the 48-bit pattern DEST:SRC:DEST, the
 *   behaviour documented for Intel P6 and later (the AMD host uses DEST:SRC:SRC);
 *   CF is the last bit shifted out of that pattern and the other flags follow the
 *   usual rules.
 * - A 32-bit register destination is zero-extended into bits 63:32 even when the
 *   masked count is 0 (SDM vol. 1, 3.4.1.1: a 32-bit result is zero-extended into the
 *   64-bit register; the instruction still writes its destination). The AMD host does
 *   this; flags stay unchanged. A memory destination is not written when the count is 0.
 */
import type { Cpu } from '../cpu.js';
import { getCF, PARITY, setStatusFlags } from '../flags.js';
import { Im, OpMap, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import { readRegOp, readRm, setReg, SIZE_MASK, writeBack } from '../operands.js';
import { CF, OF, PF, SF, STATUS_FLAGS, ZF } from '../regs.js';

/** The eight operations of group 2 in ModRM.reg order (/6 is SAL, an alias of SHL). */
export const enum ShiftOp { ROL = 0, ROR, RCL, RCR, SHL, SHR, SAL, SAR }
const NAMES = ['rol', 'ror', 'rcl', 'rcr', 'shl', 'shr', 'sal', 'sar'];

// ---- 64-bit shift primitives ---------------------------------------------------

/** Result of the primitives below: low and high half. */
let L = 0, H = 0;

/** (lo, hi) << c into L, H; any c >= 64 gives 0. */
export function shl64(lo: number, hi: number, c: number): void {
  if (c === 0) { L = lo; H = hi; }
  else if (c < 32) { H = (hi << c) | (lo >>> (32 - c)); L = lo << c; }
  else if (c < 64) { H = lo << (c - 32); L = 0; }
  else { L = 0; H = 0; }
}

/** (lo, hi) >>> c (logical) into L, H; any c >= 64 gives 0. */
export function shr64(lo: number, hi: number, c: number): void {
  if (c === 0) { L = lo; H = hi; }
  else if (c < 32) { L = (lo >>> c) | (hi << (32 - c)); H = hi >>> c; }
  else if (c < 64) { L = hi >>> (c - 32); H = 0; }
  else { L = 0; H = 0; }
}

/** (lo, hi) >> c (arithmetic) into L, H; any c >= 64 gives the sign. */
export function sar64(lo: number, hi: number, c: number): void {
  if (c === 0) { L = lo; H = hi; }
  else if (c < 32) { L = (lo >>> c) | (hi << (32 - c)); H = hi >> c; }
  else if (c < 64) { L = hi >> (c - 32); H = hi >> 31; }
  else { L = hi >> 31; H = L; }
}

/** Low half of the last primitive's result. */
export function resultLo(): number { return L; }
/** High half of the last primitive's result. */
export function resultHi(): number { return H; }

/** Bit n (0-63) of (lo, hi); 0 outside that range. */
export function bitOf(lo: number, hi: number, n: number): number {
  if (n < 0 || n > 63) return 0;
  return (n < 32 ? lo >>> n : hi >>> (n - 32)) & 1;
}

/** SF, ZF and PF of an N-bit result (n = 8, 16, 32 or 64). */
export function szp(n: number, lo: number, hi: number): number {
  let f = PARITY[lo & 0xff] ? PF : 0;
  if (lo === 0 && hi === 0) f |= ZF;
  if (bitOf(lo, hi, n - 1)) f |= SF;
  return f;
}

/** Sign-extends an N-bit value held in lo (n = 8, 16, 32) to 32 bits. */
function signExtend(n: number, lo: number): number {
  return n === 8 ? (lo << 24) >> 24 : n === 16 ? (lo << 16) >> 16 : lo;
}

// ---- group 2 -------------------------------------------------------------------

/**
 * `op` on the `size`-byte value (lo, hi) by the masked count c (1-63), setting the
 * flags. Returns the low half of the result; the high half is left in cpu.tHi.
 */
export function shift(cpu: Cpu, op: ShiftOp, size: number, lo: number, hi: number, c: number): number {
  const n = size * 8, m = SIZE_MASK[size]!;
  let rLo: number, rHi: number, cf: number, of: number;
  let mask = CF | OF, flags = 0;
  switch (op) {
    case ShiftOp.ROL: case ShiftOp.ROR: {
      // SDM vol. 2, ROL/ROR: rotate by (count MOD SIZE); CF and OF change whenever the masked count is non-zero.
      const e = c & (n - 1);
      if (op === ShiftOp.ROL) {
        shl64(lo, hi, e); rLo = L; rHi = H;
        shr64(lo, hi, n - e);
      } else {
        shr64(lo, hi, e); rLo = L; rHi = H;
        shl64(lo, hi, n - e);
      }
      rLo = (rLo | L) & m; rHi = n === 64 ? rHi | H : 0;
      if (op === ShiftOp.ROL) { cf = rLo & 1; of = bitOf(rLo, rHi, n - 1) ^ cf; }
      else { cf = bitOf(rLo, rHi, n - 1); of = cf ^ bitOf(rLo, rHi, n - 2); }
      break;
    }
    case ShiftOp.RCL: case ShiftOp.RCR: {
      // SDM vol. 2, RCL/RCR: an (N+1)-bit rotation through CF by count MOD 9 (8-bit), MOD 17 (16-bit).
      const e = n === 8 ? c % 9 : n === 16 ? c % 17 : c;
      const cin = getCF(cpu) ? 1 : 0;
      if (e === 0) { rLo = lo; rHi = hi; cf = cin; }
      else if (op === ShiftOp.RCL) {
        // result = DEST << e | CF << (e - 1) | DEST >> (N + 1 - e); CF = bit N - e of DEST.
        shl64(lo, hi, e); rLo = L; rHi = H;
        shl64(cin, 0, e - 1); rLo |= L; rHi |= H;
        shr64(lo, hi, n + 1 - e); rLo |= L; rHi |= H;
        cf = bitOf(lo, hi, n - e);
      } else {
        // result = DEST >> e | CF << (N - e) | DEST << (N + 1 - e); CF = bit e - 1 of DEST.
        shr64(lo, hi, e); rLo = L; rHi = H;
        shl64(cin, 0, n - e); rLo |= L; rHi |= H;
        shl64(lo, hi, n + 1 - e); rLo |= L; rHi |= H;
        cf = bitOf(lo, hi, e - 1);
      }
      rLo &= m; if (n !== 64) rHi = 0;
      of = op === ShiftOp.RCL ? bitOf(rLo, rHi, n - 1) ^ cf : bitOf(rLo, rHi, n - 1) ^ bitOf(rLo, rHi, n - 2);
      break;
    }
    case ShiftOp.SHL: case ShiftOp.SAL:
      // SDM vol. 2, SAL/SHL: CF = the last bit shifted out of the MSB.
      shl64(lo, hi, c); rLo = L & m; rHi = n === 64 ? H : 0;
      cf = bitOf(lo, hi, n - c);
      of = bitOf(rLo, rHi, n - 1) ^ cf;
      mask = STATUS_FLAGS; flags = szp(n, rLo, rHi);
      break;
    case ShiftOp.SHR:
      // SDM vol. 2, SHR: CF = the last bit shifted out of the LSB; OF (count 1) = MSB of the original.
      shr64(lo, hi, c); rLo = L; rHi = H;
      cf = bitOf(lo, hi, c - 1);
      of = bitOf(lo, hi, n + c - 2);
      mask = STATUS_FLAGS; flags = szp(n, rLo, rHi);
      break;
    default: {
      // SDM vol. 2, SAR: the sign fills the vacated bits; OF = 0 for count 1.
      const sLo = n === 64 ? lo : signExtend(n, lo), sHi = n === 64 ? hi : sLo >> 31;
      sar64(sLo, sHi, c); rLo = L & m; rHi = n === 64 ? H : 0;
      cf = bitOf(sLo, sHi, c - 1);
      of = 0;
      mask = STATUS_FLAGS; flags = szp(n, rLo, rHi);
      break;
    }
  }
  setStatusFlags(cpu, mask, flags | (cf ? CF : 0) | (of ? OF : 0));
  cpu.tHi = rHi;
  return rLo;
}

/** Where group 2 takes its count from. */
const enum Count { ONE, CL, IMM }

/**
 * SDM vol. 2, SAL/SAR/SHL/SHR: the count is masked to 5 bits (6 bits with a 64-bit
 * operand); a masked count of 0 changes neither the operand nor the flags.
 */
function maskedCount(cpu: Cpu, i: Insn, from: Count): number {
  const raw = from === Count.ONE ? 1 : from === Count.CL ? cpu.gpr[2]! : i.imm;
  return raw & (i.opSize === 8 ? 0x3f : 0x1f);
}

/** Count 0: a 32-bit register destination is still zero-extended (see the header). */
function countZero(cpu: Cpu, i: Insn, lo: number): void {
  if (i.isReg && i.opSize === 4) setReg(cpu, i.rm, 4, lo, 0);
}

function group2(op: ShiftOp, from: Count) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize, c = maskedCount(cpu, i, from);
    const a = readRm(cpu, i, z), ah = cpu.tHi;
    if (c === 0) { countZero(cpu, i, a); return; }
    const r = shift(cpu, op, z, a, ah, c);
    writeBack(cpu, i, z, r, cpu.tHi);
  };
}

// ---- SHLD / SHRD ----------------------------------------------------------------

/**
 * SHLD (left) or SHRD: DEST shifted by c (1-63) with the bits coming in taken from
 * SRC (SDM vol. 2, SHLD, SHRD). Sets the flags; returns the low half, high in cpu.tHi.
 */
export function doubleShift(cpu: Cpu, left: boolean, size: number, d: number, dh: number,
  s: number, sh: number, c: number): number {
  const n = size * 8;
  let rLo: number, rHi = 0, cf: number;
  if (n === 64) {
    if (left) {
      shl64(d, dh, c); rLo = L; rHi = H;
      shr64(s, sh, 64 - c); rLo |= L; rHi |= H;
      cf = bitOf(d, dh, 64 - c);
    } else {
      shr64(d, dh, c); rLo = L; rHi = H;
      shl64(s, sh, 64 - c); rLo |= L; rHi |= H;
      cf = bitOf(d, dh, c - 1);
    }
  } else {
    // A pattern V with DEST in its top N bits (SHLD) or bottom N bits (SHRD), SRC
    // beside it: 32 bits SRC:DEST for 32-bit operands, and 48 bits DEST:SRC:DEST for
    // 16-bit operands, which also gives the count > 16 case its Intel result.
    const vLo = n === 32 ? (left ? s : d) : ((s << 16) | d), vHi = n === 32 ? (left ? d : s) : d;
    if (left) { shr64(vLo, vHi, 32 - c); cf = bitOf(vLo, vHi, 32 + n - c); }
    else { shr64(vLo, vHi, c); cf = bitOf(vLo, vHi, c - 1); }
    rLo = L & SIZE_MASK[size]!;
  }
  // OF: count 1 = sign change; larger counts as for the last one-bit step (see the header).
  const msb = bitOf(rLo, rHi, n - 1);
  const of = left ? msb ^ cf : msb ^ bitOf(rLo, rHi, n - 2);
  setStatusFlags(cpu, STATUS_FLAGS, szp(n, rLo, rHi) | (cf ? CF : 0) | (of ? OF : 0));
  cpu.tHi = rHi;
  return rLo;
}

function shiftDouble(left: boolean, from: Count) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize, c = maskedCount(cpu, i, from);
    const d = readRm(cpu, i, z), dh = cpu.tHi;
    if (c === 0) { countZero(cpu, i, d); return; }
    const s = readRegOp(cpu, i, z), sh = cpu.tHi;
    const r = doubleShift(cpu, left, z, d, dh, s, sh, c);
    writeBack(cpu, i, z, r, cpu.tHi);
  };
}

// ---- the table ---------------------------------------------------------------------

const def = (name: string, exec: OpDef['exec'], extra: Omit<OpDef, 'name' | 'exec'> = {}): OpDef =>
  ({ name, exec, modrm: true, ...extra });

const group = (size: Sz, from: Count, imm: Im = Im.None): Entry => ({
  group: NAMES.map((name, op) => def(name, group2(op, from), { size, imm })),
});

const TWO = OpMap.TWO * 256;

export const SHIFT_TABLE: Record<number, Entry> = {
  0xc0: group(Sz.B, Count.IMM, Im.Ub),
  0xc1: group(Sz.V, Count.IMM, Im.Ub),
  0xd0: group(Sz.B, Count.ONE),
  0xd1: group(Sz.V, Count.ONE),
  0xd2: group(Sz.B, Count.CL),
  0xd3: group(Sz.V, Count.CL),
  [TWO + 0xa4]: def('shld', shiftDouble(true, Count.IMM), { imm: Im.Ub }),
  [TWO + 0xa5]: def('shld', shiftDouble(true, Count.CL)),
  [TWO + 0xac]: def('shrd', shiftDouble(false, Count.IMM), { imm: Im.Ub }),
  [TWO + 0xad]: def('shrd', shiftDouble(false, Count.CL)),
};
