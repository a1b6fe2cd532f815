/**
 * String instructions: MOVS, CMPS, STOS, LODS, SCAS with the REP/REPE/REPNE
 * prefixes, and XLAT (SDM vol. 2, each instruction's page and
 * "REP/REPE/REPZ/REPNE/REPNZ"). INS/OUTS are port I/O and live elsewhere.
 *
 * A repeated instruction runs a bounded chunk of iterations per execution and,
 * when work remains, points RIP back at itself: every chunk retires as one
 * instruction, so the run loop sees budgets and events between chunks. The
 * registers always describe the iterations completed, so a fault is restartable
 * (SDM vol. 2, REP: "the registers are updated after each iteration"). A chunk
 * ends where the count register reaches a multiple of CHUNK, so the instructions
 * retired (guest time) do not depend on where faults interrupted the run: a
 * page fault a hypervisor hides costs the guest no time.
 */
import type { Cpu } from '../cpu.js';
import { getZF } from '../flags.js';
import { Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import { PAGE_MASK, PAGE_SIZE } from '../memory.js';
import { Access } from '../mmu.js';
import { addSegmentBase, getReg, readEa, repeatInstruction, setReg, writeEa } from '../operands.js';
import { NO_LIMIT } from '../segment-limits.js';
import { DF, ES, RAX, RBX, RCX, RDI, RSI } from '../regs.js';
import { alu, AluOp } from './alu.js';

const enum Kind { MOVS, CMPS, STOS, LODS, SCAS }

/** Iterations one execution of a repeated instruction may perform before it yields. */
const CHUNK = 4096;
/** A run shorter than this is not worth the fast path's set-up. */
const MIN_RUN = 8;

/*
 * Working copies of rSI, rDI and rCX while one instruction executes. Module
 * scratch (not per-call objects) so the hot path allocates nothing; no
 * instruction runs inside another, so one set serves every processor.
 */
let siLo = 0, siHi = 0, diLo = 0, diHi = 0, cxLo = 0, cxHi = 0;
/** High half returned by addOffset. */
let outHi = 0;

/**
 * Register `r` as an offset of `ad` bytes (zero-extended): low half; high half in outHi.
 * Offsets go back with setReg(cpu, r, ad, ...): at a 32-bit address size that is a
 * 32-bit register write, which zero-extends; at 16 bits it merges (SDM vol. 1, 3.4.1.1).
 */
function loadOffset(cpu: Cpu, r: number, ad: number): number {
  const g = cpu.gpr;
  outHi = ad === 8 ? g[2 * r + 1]! : 0;
  return ad === 2 ? g[2 * r]! & 0xffff : g[2 * r]!;
}

/** (lo, hi) + delta wrapped at the address size (|delta| < 2^31); high half in outHi. */
function addOffset(lo: number, hi: number, delta: number, ad: number): number {
  if (ad === 8) {
    const s = (lo >>> 0) + delta;
    outHi = (hi + (s > 0xffffffff ? 1 : s < 0 ? -1 : 0)) | 0;
    return s | 0;
  }
  outHi = 0;
  return ad === 4 ? (lo + delta) | 0 : (lo + delta) & 0xffff;
}

/** Linear address of seg:offset into cpu.eaLo/eaHi. */
function linear(cpu: Cpu, seg: number, useBase: boolean, lo: number, hi: number): void {
  cpu.eaLo = lo; cpu.eaHi = hi;
  if (useBase) addSegmentBase(cpu, seg);
  cpu.accessSeg = seg;
}

/** The source operand DS:rSI (segment overridable: the decoder put it in i.seg). */
function srcLinear(cpu: Cpu, i: Insn): void { linear(cpu, i.seg, i.segBase, siLo, siHi); }
/** The destination ES:rDI: never overridable; ES's base is ignored in 64-bit mode (SDM vol. 1, 3.4.2.1). */
function dstLinear(cpu: Cpu, i: Insn): void { linear(cpu, ES, i.mode !== 8, diLo, diHi); }

const usesSrc = (k: Kind): boolean => k === Kind.MOVS || k === Kind.CMPS || k === Kind.LODS;
const usesDst = (k: Kind): boolean => k !== Kind.LODS;

/** One iteration on the working registers; they advance only once it has completed. */
function iterate(cpu: Cpu, i: Insn, kind: Kind, z: number, step: number): void {
  const ad = i.adSize;
  switch (kind) {
    case Kind.MOVS: {
      srcLinear(cpu, i);
      const v = readEa(cpu, z), vh = cpu.tHi;
      dstLinear(cpu, i);
      writeEa(cpu, z, v, vh);
      break;
    }
    case Kind.CMPS: {
      // SDM vol. 2, CMPS: temp ← SRC1 − SRC2 with SRC1 = [rSI], SRC2 = [rDI]; flags as CMP.
      srcLinear(cpu, i);
      const a = readEa(cpu, z), ah = cpu.tHi;
      dstLinear(cpu, i);
      const b = readEa(cpu, z), bh = cpu.tHi;
      alu(cpu, AluOp.CMP, z, a, ah, b, bh);
      break;
    }
    case Kind.STOS: {
      const v = getReg(cpu, RAX, z), vh = cpu.tHi;
      dstLinear(cpu, i);
      writeEa(cpu, z, v, vh);
      break;
    }
    case Kind.LODS: {
      srcLinear(cpu, i);
      const v = readEa(cpu, z);
      setReg(cpu, RAX, z, v, cpu.tHi);
      break;
    }
    default: {
      // SDM vol. 2, SCAS: temp ← rAX − [rDI]; flags as CMP.
      dstLinear(cpu, i);
      const b = readEa(cpu, z), bh = cpu.tHi;
      const a = getReg(cpu, RAX, z), ah = cpu.tHi;
      alu(cpu, AluOp.CMP, z, a, ah, b, bh);
    }
  }
  if (usesSrc(kind)) { siLo = addOffset(siLo, siHi, step, ad); siHi = outHi; }
  if (usesDst(kind)) { diLo = addOffset(diLo, diHi, step, ad); diHi = outHi; }
}

/** Bytes from offset (lo, hi) to the point where it wraps at the address size. */
function bytesToWrap(lo: number, hi: number, ad: number): number {
  if (ad === 2) return 0x10000 - lo;
  if (ad === 4 || hi === -1) return 0x100000000 - (lo >>> 0);
  return 0x100000000;
}

/**
 * Elements of `z` bytes from `offset` (forwards) that fit under the fast bound of
 * `seg` (segment-limits.ts): every one passes the limit and type checks. 0 when
 * even the first needs the full check, which an ordinary iteration makes.
 */
function elementsWithinSegment(max: number, offset: number, z: number): number {
  if (max === NO_LIMIT) return Infinity;
  return max < offset ? 0 : Math.floor((max - offset + 1) / z);
}

/**
 * Physical page of the last linear address for `access`, after a normal access
 * there has succeeded (so translating again cannot fault); -1 when the fast path
 * must not be used: unbacked memory, or a page holding decoded code (its writes
 * must go through the MMU, which invalidates the code).
 */
function fastPage(cpu: Cpu, access: Access): number {
  const ppn = cpu.mmu.translate(cpu.eaLo, cpu.eaHi, access);
  if (cpu.memory.page(ppn) === null || (access === Access.WRITE && cpu.isWatchedPage(ppn))) return -1;
  return ppn;
}

/**
 * REP MOVS/STOS with DF = 0: moves a run of up to `max` elements that lies
 * within one source page and one destination page straight between physical
 * pages. Returns the elements done; 0 when the run is too short (the caller does
 * one ordinary iteration); -n when the run of n elements must go element by
 * element: unbacked memory, code, or a destination overlapping its source from
 * above (exact semantics replicate the bytes the run itself writes). Only the
 * first element of a run can fault: protection is per page, and a run ends
 * where the segments' limits would stop an element (SDM vol. 3A, 5.3).
 */
function fastRun(cpu: Cpu, i: Insn, kind: Kind, z: number, max: number): number {
  const ad = i.adSize;
  dstLinear(cpu, i);
  const dLo = cpu.eaLo, dHi = cpu.eaHi, dOff = dLo & PAGE_MASK;
  let n = Math.min(max, Math.floor(Math.min(bytesToWrap(diLo, diHi, ad), PAGE_SIZE - dOff) / z),
    elementsWithinSegment(cpu.segWriteMax[ES]!, diLo >>> 0, z));
  let sLo = 0, sHi = 0, sOff = 0;
  if (kind === Kind.MOVS) {
    srcLinear(cpu, i);
    sLo = cpu.eaLo; sHi = cpu.eaHi; sOff = sLo & PAGE_MASK;
    n = Math.min(n, Math.floor(Math.min(bytesToWrap(siLo, siHi, ad), PAGE_SIZE - sOff) / z),
      elementsWithinSegment(cpu.segReadMax[i.seg]!, siLo >>> 0, z));
  }
  if (n < MIN_RUN) return 0;
  const bytes = n * z, mmu = cpu.mmu, mem = cpu.memory;

  // Raise what the first element would raise, in its order: read the source, then write.
  let sPpn = -1;
  if (kind === Kind.MOVS) {
    mmu.read8(sLo, sHi);
    sPpn = fastPage(cpu, Access.READ);
    if (sPpn < 0) return -n;
  }
  cpu.eaLo = dLo; cpu.eaHi = dHi; cpu.accessSeg = ES;
  mmu.probeWrite(dLo, dHi, 1);
  const dPpn = fastPage(cpu, Access.WRITE);
  if (dPpn < 0) return -n;
  const dst = mem.page(dPpn)!;

  if (kind === Kind.MOVS) {
    // A destination above the source inside the run reads bytes the run itself wrote.
    if (sPpn === dPpn && dOff > sOff && dOff < sOff + bytes) return -n;
    // Forward copy: exact for dOff <= sOff too, where reads stay ahead of writes.
    const src = mem.page(sPpn)!;
    let k = 0;
    for (; k + 4 <= bytes; k += 4) dst.setInt32(dOff + k, src.getInt32(sOff + k, true), true);
    for (; k < bytes; k++) dst.setUint8(dOff + k, src.getUint8(sOff + k));
    siLo = addOffset(siLo, siHi, bytes, ad); siHi = outHi;
  } else {
    const v = getReg(cpu, RAX, z), vh = cpu.tHi;
    let k = 0;
    if (z === 8) {
      for (; k < bytes; k += 8) { dst.setInt32(dOff + k, v, true); dst.setInt32(dOff + k + 4, vh, true); }
    } else {
      // The element repeated across 32 bits; a run starts on an element, so byte k is pattern byte k & 3.
      const p = z === 1 ? Math.imul(v & 0xff, 0x01010101) : z === 2 ? (v & 0xffff) | (v << 16) : v;
      for (; k + 4 <= bytes; k += 4) dst.setInt32(dOff + k, p, true);
      for (; k < bytes; k++) dst.setUint8(dOff + k, (p >>> (8 * (k & 3))) & 0xff);
    }
  }
  diLo = addOffset(diLo, diHi, bytes, ad); diHi = outHi;
  return n;
}

/** MOVS/CMPS/STOS/LODS/SCAS, with or without a repeat prefix. */
function stringOp(kind: Kind) {
  const src = usesSrc(kind), dst = usesDst(kind);
  const compares = kind === Kind.CMPS || kind === Kind.SCAS;
  const fast = kind === Kind.MOVS || kind === Kind.STOS;
  return (cpu: Cpu, i: Insn): void => {
    const ad = i.adSize, z = i.opSize;
    // DF is a control flag: never lazy.
    const step = cpu.flags & DF ? -z : z;
    siLo = loadOffset(cpu, RSI, ad); siHi = outHi;
    diLo = loadOffset(cpu, RDI, ad); diHi = outHi;
    if (i.rep === 0) {
      iterate(cpu, i, kind, z, step);
      if (src) setReg(cpu, RSI, ad, siLo, siHi);
      if (dst) setReg(cpu, RDI, ad, diLo, diHi);
      return;
    }
    // SDM vol. 2, REP: nothing at all happens while the count register is 0.
    cxLo = loadOffset(cpu, RCX, ad); cxHi = outHi;
    if (cxLo === 0 && cxHi === 0) return;
    // Iterations to the next multiple of CHUNK in the count (CHUNK divides 2^32: the low half decides).
    const chunk = (cxLo & (CHUNK - 1)) || CHUNK;
    let done = 0, slow = 0;
    try {
      for (;;) {
        let n = 0;
        if (fast && step > 0 && slow === 0) {
          n = fastRun(cpu, i, kind, z, chunk - done);
          if (n < 0) { slow = -n; n = 0; }
        }
        if (n === 0) { iterate(cpu, i, kind, z, step); n = 1; if (slow > 0) slow--; }
        done += n;
        cxLo = addOffset(cxLo, cxHi, -n, ad); cxHi = outHi;
        if (cxLo === 0 && cxHi === 0) return;
        // REPE stops on ZF = 0, REPNE on ZF = 1, tested after the count. F2/F3 on MOVS, STOS
        // and LODS both repeat on the count alone, as Intel processors do (the SDM names only F3).
        if (compares && (getZF(cpu) !== 0) !== (i.rep === 0xf3)) return;
        if (done >= chunk) { repeatInstruction(cpu, i); return; }
      }
    } finally {
      // Also on a fault: the registers describe the iterations completed before it.
      if (done > 0) {
        if (src) setReg(cpu, RSI, ad, siLo, siHi);
        if (dst) setReg(cpu, RDI, ad, diLo, diHi);
        setReg(cpu, RCX, ad, cxLo, cxHi);
      }
    }
  };
}

/** XLAT: AL ← [seg:rBX + ZeroExtend(AL)], rBX at the address size; DS overridable (SDM vol. 2, XLAT). */
function xlat(cpu: Cpu, i: Insn): void {
  const ad = i.adSize;
  const b = loadOffset(cpu, RBX, ad), bh = outHi;
  const lo = addOffset(b, bh, cpu.gpr[2 * RAX]! & 0xff, ad);
  linear(cpu, i.seg, i.segBase, lo, outHi);
  setReg(cpu, RAX, 1, readEa(cpu, 1), 0);
}

// A repeated instruction may point RIP back at itself, so every string instruction ends its block.
const def = (name: string, exec: OpDef['exec'], size: Sz): OpDef => ({ name, exec, size, ends: true });

const entries: Record<number, Entry> = { 0xd7: { name: 'xlat', exec: xlat, size: Sz.B } };
const kinds: [number, string, Kind][] = [
  [0xa4, 'movs', Kind.MOVS], [0xa6, 'cmps', Kind.CMPS], [0xaa, 'stos', Kind.STOS],
  [0xac, 'lods', Kind.LODS], [0xae, 'scas', Kind.SCAS],
];
for (const [op, name, kind] of kinds) {
  const exec = stringOp(kind);
  entries[op] = def(name, exec, Sz.B);
  entries[op + 1] = def(name, exec, Sz.V);
}

export const STRING_TABLE = entries;
