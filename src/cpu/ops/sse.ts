/**
 * The SSE/SSE2 subset that compiled 64-bit code uses: 128-bit and scalar moves,
 * MOVD/MOVQ, the bitwise logic forms, the packed-integer operations of string
 * and memory routines (compare, min/max, shuffles, unpacks, shifts, SAD, ...),
 * and LDMXCSR/STMXCSR (SDM vol. 2, each instruction's page).
 *
 * Only the 66h (XMM) forms of the packed-integer instructions are defined. The
 * MMX forms (no mandatory prefix) stay undefined and decode to #UD: compiled
 * 64-bit code does not use MMX registers.
 *
 * Operands are staged in module-level scratch vectors (D = destination,
 * S = source, T = temporary) so that each operation can use byte, word and
 * doubleword views of them without allocating. The views assume a
 * little-endian host, as the x86 register layout is; the check below makes a
 * big-endian host fail at load rather than compute wrong lanes.
 */
import type { Cpu } from '../cpu.js';
import { Im, OpMap, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import { checkSegment, effectiveAddress, readEa, readRegOp, readRm, setReg, writeEa, writeRm } from '../operands.js';
import { Vector } from '../regs.js';

const TWO = OpMap.TWO * 256;

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) throw new Error('sse.ts needs a little-endian host');

const D = new Int32Array(4), S = new Int32Array(4), T = new Int32Array(4);
const d8 = new Uint8Array(D.buffer), s8 = new Uint8Array(S.buffer), t8 = new Uint8Array(T.buffer);
const d16 = new Uint16Array(D.buffer), s16 = new Uint16Array(S.buffer);
const di8 = new Int8Array(D.buffer), si8 = new Int8Array(S.buffer);
const di16 = new Int16Array(D.buffer), si16 = new Int16Array(S.buffer);

const CR0_EM = 1 << 2, CR0_TS = 1 << 3, CR4_OSFXSR = 1 << 9;

/**
 * The checks every SSE instruction makes before anything else: #UD when
 * CR0.EM = 1 or CR4.OSFXSR = 0, then #NM when CR0.TS = 1 (SDM vol. 3A, 13.1
 * and each instruction's "Exceptions" table; #UD ranks above #NM, vol. 3A, 6.9).
 */
export function sseCheck(cpu: Cpu): void {
  if ((cpu.cr0 & CR0_EM) !== 0 || (cpu.cr4 & CR4_OSFXSR) === 0) cpu.raise(Vector.UD);
  if ((cpu.cr0 & CR0_TS) !== 0) cpu.raise(Vector.NM);
}

/** Copies one 128-bit value: four lanes of `from` at f to `to` at t. */
function copy4(to: Int32Array, t: number, from: Int32Array, f: number): void {
  to[t] = from[f]!; to[t + 1] = from[f + 1]!; to[t + 2] = from[f + 2]!; to[t + 3] = from[f + 3]!;
}

// ---- 128-bit memory access ------------------------------------------------------

/** Reads 16 bytes at cpu.eaLo/eaHi into `out` (nothing is written before both halves are read). */
function readMem128(cpu: Cpu, out: Int32Array): void {
  checkSegment(cpu, 16, false);
  const m = cpu.mmu, lo = cpu.eaLo, hi = cpu.eaHi;
  const lo2 = (lo + 8) | 0;
  const hi2 = cpu.codeSize === 8 && (lo2 >>> 0) < (lo >>> 0) ? (hi + 1) | 0 : hi;
  const a = m.read64(lo, hi), b = m.hi;
  const c = m.read64(lo2, hi2);
  out[0] = a; out[1] = b; out[2] = c; out[3] = m.hi;
}

/** Writes lanes r..r+3 of `src` as 16 bytes at cpu.eaLo/eaHi; a fault leaves memory unchanged. */
function writeMem128(cpu: Cpu, src: Int32Array, r: number): void {
  checkSegment(cpu, 16, true);
  const m = cpu.mmu, lo = cpu.eaLo, hi = cpu.eaHi;
  const lo2 = (lo + 8) | 0;
  const hi2 = cpu.codeSize === 8 && (lo2 >>> 0) < (lo >>> 0) ? (hi + 1) | 0 : hi;
  // Only a store that crosses a page can fault after its first half is written.
  if ((lo & 0xfff) > 0xff0) m.probeWrite(lo, hi, 16);
  m.write64(lo, hi, src[r]!, src[r + 1]!);
  m.write64(lo2, hi2, src[r + 2]!, src[r + 3]!);
}

/**
 * Computes the address of a 128-bit memory operand. Legacy-SSE forms other than
 * the unaligned moves need a 16-byte aligned operand: #GP(0) otherwise
 * (SDM vol. 1, 4.1.1; vol. 2, e.g. MOVAPS: "not aligned on a 16-byte boundary,
 * regardless of segment"). The check uses the linear address.
 */
function address128(cpu: Cpu, i: Insn, aligned: boolean): void {
  effectiveAddress(cpu, i);
  if (aligned && (cpu.eaLo & 15) !== 0) cpu.raise(Vector.GP, 0);
}

/** Copies the xmm/m128 source operand into S. */
function loadSource(cpu: Cpu, i: Insn, aligned: boolean): void {
  if (i.isReg) {
    const x = cpu.xmm, r = 4 * i.rm;
    copy4(S, 0, x, r);
    return;
  }
  address128(cpu, i, aligned);
  readMem128(cpu, S);
}

/** Reads the xmm/m64 source: the low quadword of XMM[rm] or 8 bytes of memory (high half in cpu.tHi). */
function readQword(cpu: Cpu, i: Insn): number {
  if (i.isReg) { cpu.tHi = cpu.xmm[4 * i.rm + 1]!; return cpu.xmm[4 * i.rm]!; }
  effectiveAddress(cpu, i);
  return readEa(cpu, 8);
}

// ---- moves ----------------------------------------------------------------------

/** MOVUPS/MOVAPS/MOVDQU/MOVDQA/LDDQU xmm, xmm/m128. */
function load128(name: string, aligned: boolean, memOnly = false): OpDef {
  return {
    name, modrm: true, memOnly, exec: (cpu, i) => {
      sseCheck(cpu);
      loadSource(cpu, i, aligned);
      const x = cpu.xmm, r = 4 * i.reg;
      copy4(x, r, S, 0);
    },
  };
}

/** MOVUPS/MOVAPS/MOVDQU/MOVDQA/MOVNTxx xmm/m128, xmm. */
function store128(name: string, aligned: boolean, memOnly = false): OpDef {
  return {
    name, modrm: true, memOnly, exec: (cpu, i) => {
      sseCheck(cpu);
      const x = cpu.xmm, r = 4 * i.reg;
      if (i.isReg) {
        const d = 4 * i.rm;
        copy4(x, d, x, r);
        return;
      }
      address128(cpu, i, aligned);
      writeMem128(cpu, x, r);
    },
  };
}

/**
 * MOVSS (lanes = 1) / MOVSD (lanes = 2) xmm, xmm/m: a register source replaces
 * only the low lanes; a memory source also zeroes the rest (SDM vol. 2, MOVSS, MOVSD).
 */
function movScalarLoad(name: string, lanes: number): OpDef {
  return {
    name, modrm: true, exec: (cpu, i) => {
      sseCheck(cpu);
      const x = cpu.xmm, r = 4 * i.reg;
      if (i.isReg) {
        const s = 4 * i.rm;
        x[r] = x[s]!;
        if (lanes === 2) x[r + 1] = x[s + 1]!;
        return;
      }
      effectiveAddress(cpu, i);
      if (lanes === 2) { x[r] = readEa(cpu, 8); x[r + 1] = cpu.tHi; }
      else { x[r] = readEa(cpu, 4); x[r + 1] = 0; }
      x[r + 2] = 0; x[r + 3] = 0;
    },
  };
}

/** MOVSS / MOVSD xmm/m, xmm. */
function movScalarStore(name: string, lanes: number): OpDef {
  return {
    name, modrm: true, exec: (cpu, i) => {
      sseCheck(cpu);
      const x = cpu.xmm, r = 4 * i.reg;
      if (i.isReg) {
        const d = 4 * i.rm;
        x[d] = x[r]!;
        if (lanes === 2) x[d + 1] = x[r + 1]!;
        return;
      }
      effectiveAddress(cpu, i);
      if (lanes === 2) writeEa(cpu, 8, x[r]!, x[r + 1]!);
      else writeEa(cpu, 4, x[r]!, 0);
    },
  };
}

/** MOVD/MOVQ xmm, r/m32/64 (66 0F 6E): zero-extends into the whole register. */
function movdLoad(cpu: Cpu, i: Insn): void {
  sseCheck(cpu);
  const lo = readRm(cpu, i, i.opSize);
  const x = cpu.xmm, r = 4 * i.reg;
  x[r] = lo; x[r + 1] = i.opSize === 8 ? cpu.tHi : 0; x[r + 2] = 0; x[r + 3] = 0;
}

/** MOVD/MOVQ r/m32/64, xmm (66 0F 7E); a 32-bit GPR destination zeroes bits 63:32. */
function movdStore(cpu: Cpu, i: Insn): void {
  sseCheck(cpu);
  const x = cpu.xmm, r = 4 * i.reg;
  writeRm(cpu, i, i.opSize, x[r]!, x[r + 1]!);
}

/** MOVQ xmm, xmm/m64 (F3 0F 7E): bits 127:64 of the destination are zeroed. */
function movqLoad(cpu: Cpu, i: Insn): void {
  sseCheck(cpu);
  const lo = readQword(cpu, i), hi = cpu.tHi;
  const x = cpu.xmm, r = 4 * i.reg;
  x[r] = lo; x[r + 1] = hi; x[r + 2] = 0; x[r + 3] = 0;
}

/** MOVQ xmm/m64, xmm (66 0F D6): an XMM destination has bits 127:64 zeroed. */
function movqStore(cpu: Cpu, i: Insn): void {
  sseCheck(cpu);
  const x = cpu.xmm, r = 4 * i.reg;
  if (i.isReg) {
    const d = 4 * i.rm;
    x[d] = x[r]!; x[d + 1] = x[r + 1]!; x[d + 2] = 0; x[d + 3] = 0;
    return;
  }
  effectiveAddress(cpu, i);
  writeEa(cpu, 8, x[r]!, x[r + 1]!);
}

/**
 * Loads quadword `h` (0 low, 1 high) of XMM[reg], the rest unchanged: from m64
 * (MOVLPS/MOVLPD, MOVHPS/MOVHPD) or, in the register forms, from the other
 * quadword of XMM[rm] (MOVHLPS: high → low; MOVLHPS: low → high).
 */
function loadHalf(name: string, h: number, memOnly: boolean): OpDef {
  return {
    name, modrm: true, memOnly, exec: (cpu, i) => {
      sseCheck(cpu);
      const x = cpu.xmm, r = 4 * i.reg + 2 * h;
      let lo: number, hi: number;
      if (i.isReg) {
        const s = 4 * i.rm + 2 * (1 - h);
        lo = x[s]!; hi = x[s + 1]!;
      } else {
        effectiveAddress(cpu, i);
        lo = readEa(cpu, 8); hi = cpu.tHi;
      }
      x[r] = lo; x[r + 1] = hi;
    },
  };
}

/** MOVLPS/MOVLPD/MOVHPS/MOVHPD m64, xmm: stores quadword `h` of XMM[reg]. */
function storeHalf(name: string, h: number): OpDef {
  return {
    name, modrm: true, memOnly: true, exec: (cpu, i) => {
      sseCheck(cpu);
      const x = cpu.xmm, r = 4 * i.reg + 2 * h;
      effectiveAddress(cpu, i);
      writeEa(cpu, 8, x[r]!, x[r + 1]!);
    },
  };
}

/**
 * MOVNTI m32/m64, r (0F C3): a general-purpose store with a non-temporal hint.
 * Its exception list has no CR0.EM/TS or CR4.OSFXSR conditions (SDM vol. 2, MOVNTI),
 * so it does not make the SSE checks.
 */
function movnti(cpu: Cpu, i: Insn): void {
  const lo = readRegOp(cpu, i, i.opSize), hi = cpu.tHi;
  writeRm(cpu, i, i.opSize, lo, hi);
}

// ---- MXCSR ----------------------------------------------------------------------

/** Bits of MXCSR that may be set: MXCSR_MASK (SDM vol. 1, 11.6.6); 31:16 are reserved. */
const MXCSR_MASK = 0xffff;

/** LDMXCSR m32: #GP(0) when a reserved bit would be set (SDM vol. 2, LDMXCSR). */
function ldmxcsr(cpu: Cpu, i: Insn): void {
  sseCheck(cpu);
  effectiveAddress(cpu, i);
  const v = readEa(cpu, 4);
  if ((v & ~MXCSR_MASK) !== 0) cpu.raise(Vector.GP, 0);
  cpu.mxcsr = v;
}

/** STMXCSR m32 (SDM vol. 2, STMXCSR). */
function stmxcsr(cpu: Cpu, i: Insn): void {
  sseCheck(cpu);
  effectiveAddress(cpu, i);
  writeEa(cpu, 4, cpu.mxcsr, 0);
}

// ---- packed operations on D (destination) and S (source) ------------------------------

/**
 * An operation xmm1, xmm2/m128 (aligned memory): D = XMM[reg], S = the source;
 * `op` leaves the result in D, which is written back to XMM[reg].
 */
function packed(name: string, op: (i: Insn) => void, imm = false): OpDef {
  return {
    name, modrm: true, imm: imm ? Im.Ub : Im.None, exec: (cpu, i) => {
      sseCheck(cpu);
      loadSource(cpu, i, true);
      const x = cpu.xmm, r = 4 * i.reg;
      copy4(D, 0, x, r);
      op(i);
      copy4(x, r, D, 0);
    },
  };
}

/** A shift of XMM[rm] by imm8 (groups 12-14, register forms only). */
function shiftImm(name: string, shift: (n: number) => void): OpDef {
  return {
    name, modrm: true, regOnly: true, imm: Im.Ub, exec: (cpu, i) => {
      sseCheck(cpu);
      const x = cpu.xmm, r = 4 * i.rm;
      copy4(D, 0, x, r);
      shift(i.imm);
      copy4(x, r, D, 0);
    },
  };
}

/** A shift of XMM[reg] by the unsigned 64-bit count in the low quadword of xmm2/m128. */
function shiftXmm(name: string, shift: (n: number) => void): OpDef {
  // Counts above 255 shift like 255: every element width is already exceeded.
  return packed(name, () => shift(S[1] !== 0 || (S[0]! >>> 0) > 255 ? 255 : S[0]!));
}

// Logic (SDM vol. 2, PAND/PANDN/POR/PXOR; ANDPS/ANDNPS/ORPS/XORPS and the PD forms).
function pand(): void { for (let k = 0; k < 4; k++) D[k] = D[k]! & S[k]!; }
function pandn(): void { for (let k = 0; k < 4; k++) D[k] = ~D[k]! & S[k]!; }
function por(): void { for (let k = 0; k < 4; k++) D[k] = D[k]! | S[k]!; }
function pxor(): void { for (let k = 0; k < 4; k++) D[k] = D[k]! ^ S[k]!; }

// Wrap-around add and subtract (the typed arrays truncate to the element width).
function paddb(): void { for (let k = 0; k < 16; k++) d8[k] = d8[k]! + s8[k]!; }
function paddw(): void { for (let k = 0; k < 8; k++) d16[k] = d16[k]! + s16[k]!; }
function paddd(): void { for (let k = 0; k < 4; k++) D[k] = D[k]! + S[k]!; }
function paddq(): void {
  for (let k = 0; k < 4; k += 2) {
    const lo = (D[k]! >>> 0) + (S[k]! >>> 0);
    D[k + 1] = D[k + 1]! + S[k + 1]! + (lo > 0xffffffff ? 1 : 0);
    D[k] = lo;
  }
}
function psubb(): void { for (let k = 0; k < 16; k++) d8[k] = d8[k]! - s8[k]!; }
function psubw(): void { for (let k = 0; k < 8; k++) d16[k] = d16[k]! - s16[k]!; }
function psubd(): void { for (let k = 0; k < 4; k++) D[k] = D[k]! - S[k]!; }
function psubq(): void {
  for (let k = 0; k < 4; k += 2) {
    const lo = (D[k]! >>> 0) - (S[k]! >>> 0);
    D[k + 1] = D[k + 1]! - S[k + 1]! - (lo < 0 ? 1 : 0);
    D[k] = lo;
  }
}

// Compares: all ones where true (SDM vol. 2, PCMPEQB/W/D, PCMPGTB/W/D — signed).
function pcmpeqb(): void { for (let k = 0; k < 16; k++) d8[k] = d8[k] === s8[k] ? 0xff : 0; }
function pcmpeqw(): void { for (let k = 0; k < 8; k++) d16[k] = d16[k] === s16[k] ? 0xffff : 0; }
function pcmpeqd(): void { for (let k = 0; k < 4; k++) D[k] = D[k] === S[k] ? -1 : 0; }
function pcmpgtb(): void { for (let k = 0; k < 16; k++) d8[k] = di8[k]! > si8[k]! ? 0xff : 0; }
function pcmpgtw(): void { for (let k = 0; k < 8; k++) d16[k] = di16[k]! > si16[k]! ? 0xffff : 0; }
function pcmpgtd(): void { for (let k = 0; k < 4; k++) D[k] = D[k]! > S[k]! ? -1 : 0; }

function pminub(): void { for (let k = 0; k < 16; k++) if (s8[k]! < d8[k]!) d8[k] = s8[k]!; }
function pmaxub(): void { for (let k = 0; k < 16; k++) if (s8[k]! > d8[k]!) d8[k] = s8[k]!; }
/** PAVGB: (a + b + 1) >> 1, unsigned. */
function pavgb(): void { for (let k = 0; k < 16; k++) d8[k] = (d8[k]! + s8[k]! + 1) >> 1; }
/** PMULLW: low 16 bits of each signed product. */
function pmullw(): void { for (let k = 0; k < 8; k++) d16[k] = Math.imul(di16[k]!, si16[k]!); }

/** PMULUDQ: the unsigned 64-bit products of doublewords 0 and 2. */
function pmuludq(): void {
  for (let k = 0; k < 4; k += 2) {
    const a = D[k]! >>> 0, b = S[k]! >>> 0;
    const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
    // Schoolbook product in 16-bit pieces: every partial sum stays below 2^53.
    const low = al * bl, mid1 = ah * bl, mid2 = al * bh;
    const carry = ((low >>> 16) + (mid1 & 0xffff) + (mid2 & 0xffff)) >>> 16;
    D[k + 1] = ah * bh + (mid1 >>> 16) + (mid2 >>> 16) + carry;
    D[k] = Math.imul(a, b);
  }
}

/** PSADBW: per quadword, the sum of absolute byte differences in bits 15:0, the rest zero. */
function psadbw(): void {
  for (let q = 0; q < 2; q++) {
    let sum = 0;
    for (let k = 8 * q; k < 8 * q + 8; k++) {
      const diff = d8[k]! - s8[k]!;
      sum += diff < 0 ? -diff : diff;
    }
    D[2 * q] = sum; D[2 * q + 1] = 0;
  }
}

/** PMOVMSKB r32/64, xmm: the top bit of each byte; the GPR is zero-extended (SDM vol. 2, PMOVMSKB). */
function pmovmskb(cpu: Cpu, i: Insn): void {
  sseCheck(cpu);
  const x = cpu.xmm, r = 4 * i.rm;
  let m = 0;
  for (let k = 0; k < 16; k++) m |= ((x[r + (k >> 2)]! >>> (8 * (k & 3) + 7)) & 1) << k;
  setReg(cpu, i.reg, 4, m, 0);
}

/** PEXTRW r32/64, xmm, imm8: word imm8[2:0], zero-extended. */
function pextrw(cpu: Cpu, i: Insn): void {
  sseCheck(cpu);
  const j = i.imm & 7;
  setReg(cpu, i.reg, 4, (cpu.xmm[4 * i.rm + (j >> 1)]! >>> (16 * (j & 1))) & 0xffff, 0);
}

/** PINSRW xmm, r32/m16, imm8: replaces word imm8[2:0] with the low word of the source. */
function pinsrw(cpu: Cpu, i: Insn): void {
  sseCheck(cpu);
  const v = readRm(cpu, i, 2) & 0xffff;
  const j = i.imm & 7, n = 4 * i.reg + (j >> 1), sh = 16 * (j & 1);
  cpu.xmm[n] = (cpu.xmm[n]! & ~(0xffff << sh)) | (v << sh);
}

// Shuffles (SDM vol. 2, PSHUFD, PSHUFLW, PSHUFHW, SHUFPS, SHUFPD).
function pshufd(i: Insn): void {
  for (let k = 0; k < 4; k++) D[k] = S[(i.imm >> (2 * k)) & 3]!;
}
/** PSHUFLW (base 0) / PSHUFHW (base 4): shuffles four words; the other quadword is copied. */
function pshufw(base: number): (i: Insn) => void {
  return (i) => {
    copy4(D, 0, S, 0);
    for (let k = 0; k < 4; k++) d16[base + k] = s16[base + ((i.imm >> (2 * k)) & 3)]!;
  };
}
function shufps(i: Insn): void {
  const a = D[i.imm & 3]!, b = D[(i.imm >> 2) & 3]!;
  D[0] = a; D[1] = b; D[2] = S[(i.imm >> 4) & 3]!; D[3] = S[(i.imm >> 6) & 3]!;
}
function shufpd(i: Insn): void {
  const a = 2 * (i.imm & 1), b = 2 * ((i.imm >> 1) & 1);
  const lo = D[a]!, hi = D[a + 1]!;
  D[0] = lo; D[1] = hi; D[2] = S[b]!; D[3] = S[b + 1]!;
}

/**
 * PUNPCKL* (from = 0) / PUNPCKH* (from = 8): interleaves elements of `e` bytes
 * from one half of D and S, D's element first (SDM vol. 2, PUNPCKLBW...).
 */
function punpck(e: number, from: number): () => void {
  return () => {
    for (let k = 0; k < 8; k += e) {
      for (let b = 0; b < e; b++) {
        t8[2 * k + b] = d8[from + k + b]!;
        t8[2 * k + e + b] = s8[from + k + b]!;
      }
    }
    copy4(D, 0, T, 0);
  };
}

/** PACKUSWB: signed words of D then S saturated to unsigned bytes. */
function packuswb(): void {
  for (let k = 0; k < 16; k++) {
    const w = k < 8 ? di16[k]! : si16[k - 8]!;
    t8[k] = w < 0 ? 0 : w > 0xff ? 0xff : w;
  }
  copy4(D, 0, T, 0);
}

// Shifts of D by n (0..255). Logical shifts past the element width give zero;
// arithmetic ones fill with the sign (SDM vol. 2, PSLLW/PSRLW/PSRAW...).
function psllw(n: number): void { for (let k = 0; k < 8; k++) d16[k] = n > 15 ? 0 : d16[k]! << n; }
function psrlw(n: number): void { for (let k = 0; k < 8; k++) d16[k] = n > 15 ? 0 : d16[k]! >>> n; }
function psraw(n: number): void { for (let k = 0; k < 8; k++) di16[k] = di16[k]! >> (n > 15 ? 15 : n); }
function pslld(n: number): void { for (let k = 0; k < 4; k++) D[k] = n > 31 ? 0 : D[k]! << n; }
function psrld(n: number): void { for (let k = 0; k < 4; k++) D[k] = n > 31 ? 0 : D[k]! >>> n; }
function psrad(n: number): void { for (let k = 0; k < 4; k++) D[k] = D[k]! >> (n > 31 ? 31 : n); }
function psllq(n: number): void {
  for (let k = 0; k < 4; k += 2) {
    const lo = D[k]!, hi = D[k + 1]!;
    if (n > 63) { D[k] = 0; D[k + 1] = 0; }
    else if (n >= 32) { D[k] = 0; D[k + 1] = lo << (n - 32); }
    else if (n > 0) { D[k] = lo << n; D[k + 1] = (hi << n) | (lo >>> (32 - n)); }
  }
}
function psrlq(n: number): void {
  for (let k = 0; k < 4; k += 2) {
    const lo = D[k]!, hi = D[k + 1]!;
    if (n > 63) { D[k] = 0; D[k + 1] = 0; }
    else if (n >= 32) { D[k] = hi >>> (n - 32); D[k + 1] = 0; }
    else if (n > 0) { D[k] = (lo >>> n) | (hi << (32 - n)); D[k + 1] = hi >>> n; }
  }
}
/** PSLLDQ: shifts the whole register left by n bytes (n > 15 clears it). */
function pslldq(n: number): void { for (let k = 15; k >= 0; k--) d8[k] = k >= n ? d8[k - n]! : 0; }
function psrldq(n: number): void { for (let k = 0; k < 16; k++) d8[k] = k + n < 16 ? d8[k + n]! : 0; }

// ---- the table ------------------------------------------------------------------

/** An entry defined only with the 66h mandatory prefix. */
function p66(e: Entry): Entry { return { prefixed: [undefined, e] }; }
/** An entry defined with no prefix (PS) and with 66h (PD), the same operation. */
function psPd(ps: string, pd: string, op: () => void): Entry {
  return { prefixed: [packed(ps, op), packed(pd, op)] };
}

const MOVLPS = loadHalf('movlps', 0, false);
const MOVHPS = loadHalf('movhps', 1, false);

export const SSE_TABLE: Record<number, Entry> = {
  [TWO + 0x10]: { prefixed: [load128('movups', false), load128('movupd', false), movScalarLoad('movss', 1), movScalarLoad('movsd', 2)] },
  [TWO + 0x11]: { prefixed: [store128('movups', false), store128('movupd', false), movScalarStore('movss', 1), movScalarStore('movsd', 2)] },
  [TWO + 0x12]: { prefixed: [{ mem: MOVLPS, reg: { ...MOVLPS, name: 'movhlps' } }, loadHalf('movlpd', 0, true)] },
  [TWO + 0x13]: { prefixed: [storeHalf('movlps', 0), storeHalf('movlpd', 0)] },
  [TWO + 0x16]: { prefixed: [{ mem: MOVHPS, reg: { ...MOVHPS, name: 'movlhps' } }, loadHalf('movhpd', 1, true)] },
  [TWO + 0x17]: { prefixed: [storeHalf('movhps', 1), storeHalf('movhpd', 1)] },
  [TWO + 0x28]: { prefixed: [load128('movaps', true), load128('movapd', true)] },
  [TWO + 0x29]: { prefixed: [store128('movaps', true), store128('movapd', true)] },
  [TWO + 0x2b]: { prefixed: [store128('movntps', true, true), store128('movntpd', true, true)] },
  [TWO + 0x54]: psPd('andps', 'andpd', pand),
  [TWO + 0x55]: psPd('andnps', 'andnpd', pandn),
  [TWO + 0x56]: psPd('orps', 'orpd', por),
  [TWO + 0x57]: psPd('xorps', 'xorpd', pxor),
  [TWO + 0x60]: p66(packed('punpcklbw', punpck(1, 0))),
  [TWO + 0x61]: p66(packed('punpcklwd', punpck(2, 0))),
  [TWO + 0x62]: p66(packed('punpckldq', punpck(4, 0))),
  [TWO + 0x64]: p66(packed('pcmpgtb', pcmpgtb)),
  [TWO + 0x65]: p66(packed('pcmpgtw', pcmpgtw)),
  [TWO + 0x66]: p66(packed('pcmpgtd', pcmpgtd)),
  [TWO + 0x67]: p66(packed('packuswb', packuswb)),
  [TWO + 0x68]: p66(packed('punpckhbw', punpck(1, 8))),
  [TWO + 0x69]: p66(packed('punpckhwd', punpck(2, 8))),
  [TWO + 0x6a]: p66(packed('punpckhdq', punpck(4, 8))),
  [TWO + 0x6c]: p66(packed('punpcklqdq', punpck(8, 0))),
  [TWO + 0x6d]: p66(packed('punpckhqdq', punpck(8, 8))),
  [TWO + 0x6e]: p66({ name: 'movd', modrm: true, size: Sz.Y, exec: movdLoad }),
  [TWO + 0x6f]: { prefixed: [undefined, load128('movdqa', true), load128('movdqu', false)] },
  [TWO + 0x70]: {
    prefixed: [undefined, packed('pshufd', pshufd, true), packed('pshufhw', pshufw(4), true),
      packed('pshuflw', pshufw(0), true)],
  },
  [TWO + 0x71]: { group: [undefined, undefined, p66(shiftImm('psrlw', psrlw)), undefined, p66(shiftImm('psraw', psraw)), undefined, p66(shiftImm('psllw', psllw))] },
  [TWO + 0x72]: { group: [undefined, undefined, p66(shiftImm('psrld', psrld)), undefined, p66(shiftImm('psrad', psrad)), undefined, p66(shiftImm('pslld', pslld))] },
  [TWO + 0x73]: {
    group: [undefined, undefined, p66(shiftImm('psrlq', psrlq)), p66(shiftImm('psrldq', psrldq)),
      undefined, undefined, p66(shiftImm('psllq', psllq)), p66(shiftImm('pslldq', pslldq))],
  },
  [TWO + 0x74]: p66(packed('pcmpeqb', pcmpeqb)),
  [TWO + 0x75]: p66(packed('pcmpeqw', pcmpeqw)),
  [TWO + 0x76]: p66(packed('pcmpeqd', pcmpeqd)),
  [TWO + 0x7e]: {
    prefixed: [undefined, { name: 'movd', modrm: true, size: Sz.Y, exec: movdStore },
      { name: 'movq', modrm: true, exec: movqLoad }],
  },
  [TWO + 0x7f]: { prefixed: [undefined, store128('movdqa', true), store128('movdqu', false)] },
  [TWO + 0xae]: {
    // NP 0F AE /2 and /3: a mandatory-prefix position holds only the no-prefix form.
    group: [undefined, undefined, { mem: { prefixed: [{ name: 'ldmxcsr', modrm: true, exec: ldmxcsr }] } },
      { mem: { prefixed: [{ name: 'stmxcsr', modrm: true, exec: stmxcsr }] } }],
  },
  [TWO + 0xc3]: { prefixed: [{ name: 'movnti', modrm: true, memOnly: true, size: Sz.Y, exec: movnti }] },
  [TWO + 0xc4]: p66({ name: 'pinsrw', modrm: true, imm: Im.Ub, exec: pinsrw }),
  [TWO + 0xc5]: p66({ name: 'pextrw', modrm: true, regOnly: true, imm: Im.Ub, exec: pextrw }),
  [TWO + 0xc6]: { prefixed: [packed('shufps', shufps, true), packed('shufpd', shufpd, true)] },
  [TWO + 0xd1]: p66(shiftXmm('psrlw', psrlw)),
  [TWO + 0xd2]: p66(shiftXmm('psrld', psrld)),
  [TWO + 0xd3]: p66(shiftXmm('psrlq', psrlq)),
  [TWO + 0xd4]: p66(packed('paddq', paddq)),
  [TWO + 0xd5]: p66(packed('pmullw', pmullw)),
  [TWO + 0xd6]: p66({ name: 'movq', modrm: true, exec: movqStore }),
  [TWO + 0xd7]: p66({ name: 'pmovmskb', modrm: true, regOnly: true, exec: pmovmskb }),
  [TWO + 0xda]: p66(packed('pminub', pminub)),
  [TWO + 0xdb]: p66(packed('pand', pand)),
  [TWO + 0xde]: p66(packed('pmaxub', pmaxub)),
  [TWO + 0xdf]: p66(packed('pandn', pandn)),
  [TWO + 0xe0]: p66(packed('pavgb', pavgb)),
  [TWO + 0xe1]: p66(shiftXmm('psraw', psraw)),
  [TWO + 0xe2]: p66(shiftXmm('psrad', psrad)),
  [TWO + 0xe7]: p66(store128('movntdq', true, true)),
  [TWO + 0xeb]: p66(packed('por', por)),
  [TWO + 0xef]: p66(packed('pxor', pxor)),
  [TWO + 0xf0]: { prefixed: [undefined, undefined, undefined, load128('lddqu', false, true)] },
  [TWO + 0xf1]: p66(shiftXmm('psllw', psllw)),
  [TWO + 0xf2]: p66(shiftXmm('pslld', pslld)),
  [TWO + 0xf3]: p66(shiftXmm('psllq', psllq)),
  [TWO + 0xf4]: p66(packed('pmuludq', pmuludq)),
  [TWO + 0xf6]: p66(packed('psadbw', psadbw)),
  [TWO + 0xf8]: p66(packed('psubb', psubb)),
  [TWO + 0xf9]: p66(packed('psubw', psubw)),
  [TWO + 0xfa]: p66(packed('psubd', psubd)),
  [TWO + 0xfb]: p66(packed('psubq', psubq)),
  [TWO + 0xfc]: p66(packed('paddb', paddb)),
  [TWO + 0xfd]: p66(packed('paddw', paddw)),
  [TWO + 0xfe]: p66(packed('paddd', paddd)),
};
