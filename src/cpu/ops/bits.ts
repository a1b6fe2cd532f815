/**
 * Bit instructions: BT/BTS/BTR/BTC, BSF/BSR, TZCNT/LZCNT/POPCNT, the BMI1/BMI2
 * general-purpose VEX instructions (ANDN BLSR BLSMSK BLSI BZHI PDEP PEXT MULX
 * BEXTR SHLX SARX SHRX RORX) and MOVBE (SDM vol. 2, each instruction's page).
 *
 * Choices where the SDM leaves things undefined (the differential tester masks flags):
 * - BT*: OF, SF, AF and PF are left unchanged (as the AMD host does).
 * - BSF/BSR: a zero source leaves the destination register entirely unchanged, even
 *   bits 63:32 of a 32-bit destination (AMD documents this; Intel parts behave so in
 *   practice). CF, OF, SF, AF, PF are set as for a logic instruction on the index
 *   written (on 0 for a zero source): CF = OF = AF = SF = 0, PF from the index. This
 *   is what the AMD host does.
 * - TZCNT/LZCNT: OF, SF, PF and AF read 0.
 * - ANDN, BLSI, BLSMSK, BLSR, BZHI, BEXTR: AF reads 0, PF (and SF for BEXTR) are
 *   set from the result, as for a logic instruction.
 */
import type { Cpu } from '../cpu.js';
import { PARITY, setStatusFlags } from '../flags.js';
import { Im, OpMap, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import {
  addSegmentBase, getReg, operandOffset, readEa, readRegOp, readRm, setReg, writeEa, writeRm,
} from '../operands.js';
import { CF, PF, RDX, STATUS_FLAGS, ZF } from '../regs.js';
import { multiply, WIDE } from './muldiv.js';
import { resultHi, resultLo, sar64, shl64, shr64, szp } from './shift.js';

// ---- BT, BTS, BTR, BTC ------------------------------------------------------------

const enum BitOp { BT = 0, BTS, BTR, BTC }

/**
 * Bit-base addressing (SDM vol. 2, BT, "Bit(BitBase, BitOffset)"): with a register
 * bit offset and a memory operand, the offset is signed and selects the
 * operand-sized unit at EA + operandSize × (offset SAR log2(8 × operandSize)).
 * Adds that displacement to the offset in cpu.eaLo/eaHi, wrapping at the address size.
 */
function addBitBase(cpu: Cpu, i: Insn, z: number, off: number, offHi: number): void {
  let dLo: number, dHi: number;
  if (z === 8) { dLo = ((off >>> 3) | (offHi << 29)) & ~7; dHi = offHi >> 3; }
  else {
    dLo = z === 4 ? (off >> 5) * 4 : (((off << 16) >> 16) >> 4) * 2;
    dHi = dLo >> 31;
  }
  if (i.adSize === 8) {
    const s = (cpu.eaLo >>> 0) + (dLo >>> 0);
    cpu.eaLo = s | 0;
    cpu.eaHi = (cpu.eaHi + dHi + (s > 0xffffffff ? 1 : 0)) | 0;
  } else {
    cpu.eaLo = i.adSize === 4 ? (cpu.eaLo + dLo) | 0 : (cpu.eaLo + dLo) & 0xffff;
  }
}

/**
 * BT/BTS/BTR/BTC with a register (0F A3/AB/B3/BB) or imm8 (0F BA /4-/7) bit offset.
 * An imm8 offset, and any offset into a register, is taken modulo the operand size.
 * CF ← the selected bit; BTS/BTR/BTC then set, clear or complement it.
 */
function bitTest(op: BitOp, imm: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    let off = i.imm, offHi = 0;
    if (!imm) { off = readRegOp(cpu, i, z); offHi = cpu.tHi; }
    const bit = off & (8 * z - 1);
    let v: number, vh: number;
    if (i.isReg) { v = getReg(cpu, i.rm, z); vh = cpu.tHi; }
    else {
      operandOffset(cpu, i);
      if (!imm) addBitBase(cpu, i, z, off, offHi);
      if (i.segBase) addSegmentBase(cpu, i.seg);
      cpu.accessSeg = i.seg;
      v = readEa(cpu, z); vh = cpu.tHi;
    }
    const high = bit >= 32, m = 1 << (bit & 31);
    const w = high ? vh : v;
    if (op !== BitOp.BT) {
      const nw = op === BitOp.BTS ? w | m : op === BitOp.BTR ? w & ~m : w ^ m;
      if (high) vh = nw; else v = nw;
      if (i.isReg) setReg(cpu, i.rm, z, v, vh);
      else writeEa(cpu, z, v, vh);
    }
    setStatusFlags(cpu, CF, w & m ? CF : 0);
  };
}

// ---- BSF, BSR, TZCNT, LZCNT, POPCNT -----------------------------------------------

const enum Scan { BSF, BSR, TZCNT, LZCNT, POPCNT }

/** Index of the lowest set bit of a non-zero (lo, hi). */
function lowestBit(lo: number, hi: number): number {
  return lo !== 0 ? 31 - Math.clz32(lo & -lo) : 63 - Math.clz32(hi & -hi);
}

/** Index of the highest set bit of a non-zero (lo, hi). */
function highestBit(lo: number, hi: number): number {
  return hi !== 0 ? 63 - Math.clz32(hi) : 31 - Math.clz32(lo);
}

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

function scan(kind: Scan) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize, n = 8 * z;
    const v = readRm(cpu, i, z), vh = cpu.tHi;
    const zero = v === 0 && vh === 0;
    let r: number, flags: number;
    switch (kind) {
      case Scan.BSF: case Scan.BSR:
        // SDM vol. 2, BSF/BSR: ZF = 1 for a zero source, and the destination is not written (see the header).
        if (zero) { setStatusFlags(cpu, STATUS_FLAGS, ZF | PF); return; }
        r = kind === Scan.BSF ? lowestBit(v, vh) : highestBit(v, vh);
        flags = PARITY[r] ? PF : 0;
        break;
      case Scan.TZCNT: case Scan.LZCNT:
        // SDM vol. 2, TZCNT/LZCNT: the operand size for a zero source; CF = source is 0, ZF = result is 0.
        r = zero ? n : kind === Scan.TZCNT ? lowestBit(v, vh) : n - 1 - highestBit(v, vh);
        flags = (zero ? CF : 0) | (r === 0 ? ZF : 0);
        break;
      default:
        // SDM vol. 2, POPCNT: all flags cleared but ZF = source is 0.
        r = popcount32(v) + popcount32(vh);
        flags = zero ? ZF : 0;
        break;
    }
    setReg(cpu, i.reg, z, r, 0);
    setStatusFlags(cpu, STATUS_FLAGS, flags);
  };
}

// ---- BMI1 / BMI2 ---------------------------------------------------------------------

/** Bits k-1:0 set (k = 0-32). */
function lowMask(k: number): number {
  return k >= 32 ? -1 : (1 << k) - 1;
}

/**
 * Writes the result of a flag-setting BMI instruction to register `dest` and sets
 * SF, ZF (unless `noZF`: ZF = 0) and PF from it, CF = `cf`, OF = AF = 0.
 */
function bmiResult(cpu: Cpu, i: Insn, dest: number, rLo: number, rHi: number, cf: boolean, noZF = false): void {
  const z = i.opSize;
  setReg(cpu, dest, z, rLo, rHi);
  let f = szp(8 * z, rLo, z === 8 ? rHi : 0);
  if (noZF) f &= ~ZF;
  setStatusFlags(cpu, STATUS_FLAGS, f | (cf ? CF : 0));
}

/** ANDN r, vvvv, r/m: r ← NOT vvvv AND r/m; SF, ZF from the result; CF = OF = 0. */
function andn(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const b = readRm(cpu, i, z), bh = cpu.tHi;
  const a = getReg(cpu, i.vvvv, z), ah = cpu.tHi;
  bmiResult(cpu, i, i.reg, ~a & b, ~ah & bh, false);
}

const enum Bls { BLSR = 1, BLSMSK, BLSI }

/**
 * Group 17 (VEX.0F38 F3 /1-/3), destination vvvv, source r/m, with SRC - 1 or -SRC:
 * BLSR: SRC AND (SRC - 1), CF = SRC is 0; BLSMSK: SRC XOR (SRC - 1), CF = SRC is 0, ZF = 0;
 * BLSI: SRC AND -SRC, CF = SRC is not 0. OF = 0; SF (and ZF) from the result.
 */
function bls(kind: Bls) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    const s = readRm(cpu, i, z), sh = cpu.tHi;
    const zero = s === 0 && sh === 0;
    let tLo: number, tHi: number;
    if (kind === Bls.BLSI) { tLo = -s | 0; tHi = s === 0 ? -sh | 0 : ~sh; }
    else { tLo = (s - 1) | 0; tHi = s === 0 ? (sh - 1) | 0 : sh; }
    let rLo: number, rHi: number;
    if (kind === Bls.BLSMSK) { rLo = s ^ tLo; rHi = sh ^ tHi; } else { rLo = s & tLo; rHi = sh & tHi; }
    bmiResult(cpu, i, i.vvvv, rLo, rHi, kind === Bls.BLSI ? !zero : zero, kind === Bls.BLSMSK);
  };
}

/** BZHI r, r/m, vvvv: clears bits N and up of r/m, N = vvvv[7:0]; CF = N > operand size - 1. */
function bzhi(cpu: Cpu, i: Insn): void {
  const z = i.opSize, n = 8 * z;
  let s = readRm(cpu, i, z), sh = cpu.tHi;
  const index = getReg(cpu, i.vvvv, z) & 0xff;
  if (index < n) {
    if (index < 32) { s &= lowMask(index); sh = 0; } else sh &= lowMask(index - 32);
  }
  bmiResult(cpu, i, i.reg, s, sh, index > n - 1);
}

/** BEXTR r, r/m, vvvv: LEN bits of r/m from START (vvvv[7:0] START, vvvv[15:8] LEN); ZF from the result, CF = OF = 0. */
function bextr(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const s = readRm(cpu, i, z), sh = cpu.tHi;
  const control = getReg(cpu, i.vvvv, z);
  const start = control & 0xff, len = (control >>> 8) & 0xff;
  shr64(s, sh, start);
  let rLo = resultLo(), rHi = resultHi();
  if (len < 32) { rLo &= lowMask(len); rHi = 0; } else if (len < 64) rHi &= lowMask(len - 32);
  bmiResult(cpu, i, i.reg, rLo, rHi, false);
}

/** PDEP (deposit) or PEXT (extract) r, vvvv, r/m: vvvv is the source, r/m the mask. Flags unaffected. */
function pdepPext(deposit: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    const mLo = readRm(cpu, i, z), mHi = cpu.tHi;
    const sLo = getReg(cpu, i.vvvv, z), sHi = cpu.tHi;
    let rLo = 0, rHi = 0, k = 0;
    for (let half = 0; half < 2; half++) {
      let m = half ? mHi : mLo;
      const src = half ? sHi : sLo;
      while (m !== 0) {
        const b = m & -m;
        if (deposit) {
          // The next low-order source bit goes to this mask position.
          if (((k < 32 ? sLo >>> k : sHi >>> (k - 32)) & 1) !== 0) { if (half) rHi |= b; else rLo |= b; }
        } else if ((src & b) !== 0) {
          // The source bit at this mask position goes to the next low-order result bit.
          if (k < 32) rLo |= 1 << k; else rHi |= 1 << (k - 32);
        }
        k++;
        m ^= b;
      }
    }
    setReg(cpu, i.reg, z, rLo, rHi);
  };
}

/**
 * MULX r, vvvv, r/m: unsigned rDX × r/m; low half to vvvv, then high half to r (so
 * the high half wins when both name one register, SDM vol. 2, MULX). Flags unaffected.
 */
function mulx(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const b = readRm(cpu, i, z), bh = cpu.tHi;
  const a = getReg(cpu, RDX, z), ah = cpu.tHi;
  multiply(z, a, ah, b, bh, false);
  const hLo = WIDE.w2, hHi = WIDE.w3;
  setReg(cpu, i.vvvv, z, WIDE.w0, WIDE.w1);
  setReg(cpu, i.reg, z, hLo, hHi);
}

const enum ShiftX { SHLX, SARX, SHRX, RORX }

/**
 * SHLX/SARX/SHRX r, r/m, vvvv and RORX r, r/m, imm8: the count is masked to 5 bits
 * (6 with a 64-bit operand). Flags unaffected.
 */
function shiftX(kind: ShiftX) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize, n = 8 * z;
    const s = readRm(cpu, i, z), sh = cpu.tHi;
    const c = (kind === ShiftX.RORX ? i.imm : getReg(cpu, i.vvvv, z)) & (n - 1);
    let rLo: number, rHi: number;
    switch (kind) {
      case ShiftX.SHLX: shl64(s, sh, c); rLo = resultLo(); rHi = resultHi(); break;
      case ShiftX.SHRX: shr64(s, sh, c); rLo = resultLo(); rHi = resultHi(); break;
      case ShiftX.SARX: sar64(s, n === 64 ? sh : s >> 31, c); rLo = resultLo(); rHi = resultHi(); break;
      default:
        shr64(s, sh, c); rLo = resultLo(); rHi = resultHi();
        shl64(s, sh, n - c); rLo |= resultLo(); rHi |= resultHi();
        break;
    }
    setReg(cpu, i.reg, z, rLo, n === 64 ? rHi : 0);
  };
}

// ---- MOVBE ----------------------------------------------------------------------------

function swap32(v: number): number {
  return ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
}

/** MOVBE (0F 38 F0 load, F1 store): a byte-reversed move between a register and memory. */
function movbe(load: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    let lo: number, hi = 0;
    const v = load ? readRm(cpu, i, z) : getReg(cpu, i.reg, z), vh = cpu.tHi;
    if (z === 2) lo = ((v & 0xff) << 8) | ((v >>> 8) & 0xff);
    else if (z === 4) lo = swap32(v);
    else { lo = swap32(vh); hi = swap32(v); }
    if (load) setReg(cpu, i.reg, z, lo, hi);
    else writeRm(cpu, i, z, lo, hi);
  };
}

// ---- the table ------------------------------------------------------------------------

const def = (name: string, exec: OpDef['exec'], extra: Omit<OpDef, 'name' | 'exec'> = {}): OpDef =>
  ({ name, exec, modrm: true, ...extra });
/** A VEX-encoded general-purpose instruction: 32-bit, or 64-bit with VEX.W in 64-bit mode. */
const vexDef = (name: string, exec: OpDef['exec'], extra: Omit<OpDef, 'name' | 'exec'> = {}): OpDef =>
  def(name, exec, { size: Sz.Y, ...extra });

const TWO = OpMap.TWO * 256, M38 = OpMap.THREE_38 * 256;
const V38 = OpMap.VEX_0F38 * 256, V3A = OpMap.VEX_0F3A * 256;

const bsf = def('bsf', scan(Scan.BSF)), bsr = def('bsr', scan(Scan.BSR));
const movbeLoad = def('movbe', movbe(true), { memOnly: true });
const movbeStore = def('movbe', movbe(false), { memOnly: true });

export const BITS_TABLE: Record<number, Entry> = {
  [TWO + 0xa3]: def('bt', bitTest(BitOp.BT, false)),
  [TWO + 0xab]: def('bts', bitTest(BitOp.BTS, false), { lock: true }),
  [TWO + 0xb3]: def('btr', bitTest(BitOp.BTR, false), { lock: true }),
  [TWO + 0xbb]: def('btc', bitTest(BitOp.BTC, false), { lock: true }),
  [TWO + 0xba]: {
    group: [undefined, undefined, undefined, undefined,
      def('bt', bitTest(BitOp.BT, true), { imm: Im.Ub }),
      def('bts', bitTest(BitOp.BTS, true), { imm: Im.Ub, lock: true }),
      def('btr', bitTest(BitOp.BTR, true), { imm: Im.Ub, lock: true }),
      def('btc', bitTest(BitOp.BTC, true), { imm: Im.Ub, lock: true })],
  },
  [TWO + 0xbc]: { prefixed: [bsf, bsf, def('tzcnt', scan(Scan.TZCNT)), bsf] },
  [TWO + 0xbd]: { prefixed: [bsr, bsr, def('lzcnt', scan(Scan.LZCNT)), bsr] },
  [TWO + 0xb8]: { prefixed: [undefined, undefined, def('popcnt', scan(Scan.POPCNT)), undefined] },
  [M38 + 0xf0]: { prefixed: [movbeLoad, movbeLoad, undefined, undefined] },
  [M38 + 0xf1]: { prefixed: [movbeStore, movbeStore, undefined, undefined] },
  [V38 + 0xf2]: { prefixed: [vexDef('andn', andn), undefined, undefined, undefined] },
  [V38 + 0xf3]: {
    prefixed: [{
      group: [undefined, vexDef('blsr', bls(Bls.BLSR)), vexDef('blsmsk', bls(Bls.BLSMSK)), vexDef('blsi', bls(Bls.BLSI))],
    }, undefined, undefined, undefined],
  },
  [V38 + 0xf5]: { prefixed: [vexDef('bzhi', bzhi), undefined, vexDef('pext', pdepPext(false)), vexDef('pdep', pdepPext(true))] },
  [V38 + 0xf6]: { prefixed: [undefined, undefined, undefined, vexDef('mulx', mulx)] },
  [V38 + 0xf7]: {
    prefixed: [vexDef('bextr', bextr), vexDef('shlx', shiftX(ShiftX.SHLX)),
      vexDef('sarx', shiftX(ShiftX.SARX)), vexDef('shrx', shiftX(ShiftX.SHRX))],
  },
  [V3A + 0xf0]: { prefixed: [undefined, undefined, undefined, vexDef('rorx', shiftX(ShiftX.RORX), { imm: Im.Ub, vvvvUnused: true })] },
};
