/**
 * Data movement: MOV forms, MOVZX/MOVSX/MOVSXD, LEA, XCHG, BSWAP, CMOVcc,
 * CBW..CQO, CMPXCHG, CMPXCHG8B/16B, XADD, LAHF/SAHF and the NOP forms
 * (SDM vol. 2, each instruction's page).
 */
import { Intercept } from '../virtualization.js';
import type { Cpu } from '../cpu.js';
import { materialize, setStatusFlags, testCondition } from '../flags.js';
import { Im, OpMap, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import type { Emitter, Pair } from '../jit/emitter.js';
import {
  addSegmentBase, checkSegment, getReg, operandOffset, readEa, readRegOp, readRm, readRmw, setReg, SIZE_MASK,
  writeBack, writeEa, writeRegOp, writeRm,
} from '../operands.js';
import { AF, CF, PF, RAX, RDX, SF, Vector, ZF } from '../regs.js';
import { alu, AluOp } from './alu.js';

const TWO = OpMap.TWO * 256;

/** Compiled MOV: `shape` names destination and source (E = r/m, G = reg, I = imm, R = opcode register). */
function compileMov(shape: 'EG' | 'GE' | 'EI' | 'RI') {
  return (e: Emitter, i: Insn): boolean => {
    if (!i.isReg && i.adSize === 2) return false;
    const z = i.opSize;
    let v: Pair;
    if (shape === 'EG') v = e.readReg(e.regOf(i, z), z);
    else if (shape === 'GE') v = i.isReg ? e.readReg(e.rmOf(i, z), z) : e.readMem(e.address(i), z);
    else v = e.imm(i, z);
    if (shape === 'GE' || shape === 'RI') e.writeReg(e.regOf(i, z), z, v);
    else if (i.isReg) e.writeReg(e.rmOf(i, z), z, v);
    else e.writeMem(e.address(i), z, v);
    return true;
  };
}

function compileLea(e: Emitter, i: Insn): boolean {
  if (i.adSize === 2) return false;
  const a = e.address(i, false);
  e.writeReg(i.reg, i.opSize, { lo: i.opSize === 2 ? `(${a.lo} & 0xffff)` : a.lo, hi: a.hi });
  return true;
}

function movEG(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const v = readRegOp(cpu, i, z);
  writeRm(cpu, i, z, v, cpu.tHi);
}

function movGE(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const v = readRm(cpu, i, z);
  writeRegOp(cpu, i, z, v, cpu.tHi);
}

function movEI(cpu: Cpu, i: Insn): void {
  writeRm(cpu, i, i.opSize, i.imm, i.opSize === 8 ? i.immHi : 0);
}

/** MOV r8, imm8 (B0+r) and MOV r, imm16/32/64 (B8+r). */
function movRI(cpu: Cpu, i: Insn): void {
  setReg(cpu, i.opSize === 1 ? i.regB : i.reg, i.opSize, i.imm, i.opSize === 8 ? i.immHi : 0);
}

/** Linear address of a moffs operand: a full-width offset in the instruction (SDM vol. 2, MOV). */
function moffsAddress(cpu: Cpu, i: Insn): void {
  cpu.eaLo = i.disp;
  cpu.eaHi = i.adSize === 8 ? i.immHi : 0;
  if (i.adSize === 2) cpu.eaLo &= 0xffff;
  if (i.segBase) addSegmentBase(cpu, i.seg);
  cpu.accessSeg = i.seg;
}

function movAO(cpu: Cpu, i: Insn): void {
  moffsAddress(cpu, i);
  const v = readEa(cpu, i.opSize);
  setReg(cpu, RAX, i.opSize, v, cpu.tHi);
}

function movOA(cpu: Cpu, i: Insn): void {
  const v = getReg(cpu, RAX, i.opSize);
  moffsAddress(cpu, i);
  writeEa(cpu, i.opSize, v, cpu.tHi);
}

/** LEA: the offset, truncated to the operand size. */
function lea(cpu: Cpu, i: Insn): void {
  operandOffset(cpu, i);
  writeRegOp(cpu, i, i.opSize, i.opSize === 2 ? cpu.eaLo & 0xffff : cpu.eaLo, cpu.eaHi);
}

/** MOVZX/MOVSX/MOVSXD: source of `from` bytes extended to the operand size. */
function extend(from: number, signed: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    let v = readRm(cpu, i, from);
    if (signed) v = from === 1 ? (v << 24) >> 24 : from === 2 ? (v << 16) >> 16 : v;
    const z = i.opSize;
    writeRegOp(cpu, i, z, v & SIZE_MASK[z]!, signed ? v >> 31 : 0);
  };
}

/** MOVSXD: a source of the operand size, at most 32 bits (SDM vol. 2, MOVSX/MOVSXD: 63 /r MOVSXD r16, r/m16). */
const movsxd16 = extend(2, true), movsxd32 = extend(4, true);
function movsxd(cpu: Cpu, i: Insn): void {
  if (i.opSize === 2) movsxd16(cpu, i); else movsxd32(cpu, i);
}

function xchgEG(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const a = readRmw(cpu, i, z), ah = cpu.tHi;
  const b = readRegOp(cpu, i, z), bh = cpu.tHi;
  writeBack(cpu, i, z, b, bh);
  writeRegOp(cpu, i, z, a, ah);
}

/** 90+r: XCHG r, rAX; 90 without REX.B is NOP (SDM vol. 2, NOP), F3 90 is PAUSE. */
function xchgAX(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  if (i.reg === RAX && z !== 2) {
    // NOP: even 32-bit "xchg eax, eax" leaves RAX alone. F3 90 is PAUSE: it may exit (SDM vol. 3C, 26.1.3).
    if (i.rep === 0xf3 && cpu.nonRoot) cpu.virt.intercept(cpu, i, Intercept.PAUSE);
    return;
  }
  const a = getReg(cpu, RAX, z), ah = cpu.tHi;
  const b = getReg(cpu, i.reg, z), bh = cpu.tHi;
  setReg(cpu, RAX, z, b, bh);
  setReg(cpu, i.reg, z, a, ah);
}

/** BSWAP; with a 16-bit operand the result is undefined and reads 0, as on Intel parts. */
function bswap(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const swap = (v: number): number => ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
  if (z === 2) { setReg(cpu, i.reg, 2, 0, 0); return; }
  const lo = getReg(cpu, i.reg, z), hi = cpu.tHi;
  if (z === 8) setReg(cpu, i.reg, 8, swap(hi), swap(lo));
  else setReg(cpu, i.reg, 4, swap(lo), 0);
}

/**
 * CMOVcc. The source is read whatever the condition; a 32-bit destination has
 * bits 63:32 cleared even when the condition is false (SDM vol. 2, CMOVcc).
 */
function cmov(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const v = readRm(cpu, i, z), vh = cpu.tHi;
  if (testCondition(cpu, i.opcode & 0xf)) writeRegOp(cpu, i, z, v, vh);
  else if (z === 4) setReg(cpu, i.reg, 4, getReg(cpu, i.reg, 4), 0);
}

/** CBW/CWDE/CDQE: sign-extend the lower half of rAX into rAX. */
function cbw(cpu: Cpu, i: Insn): void {
  const g = cpu.gpr;
  if (i.opSize === 2) setReg(cpu, RAX, 2, (g[0]! << 24) >> 24, 0);
  else if (i.opSize === 4) setReg(cpu, RAX, 4, (g[0]! << 16) >> 16, 0);
  else setReg(cpu, RAX, 8, g[0]!, g[0]! >> 31);
}

/** CWD/CDQ/CQO: rDX gets the sign of rAX. */
function cwd(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const sign = z === 2 ? (cpu.gpr[0]! << 16) >> 31 : z === 4 ? cpu.gpr[0]! >> 31 : cpu.gpr[1]! >> 31;
  setReg(cpu, RDX, z, sign & SIZE_MASK[z]!, sign);
}

/**
 * CMPXCHG: compare rAX with the destination; equal: destination ← source,
 * else rAX ← destination. On failure a memory destination is written back with
 * its own value (the locked cycle always writes); a register destination is not
 * written, so its bits 63:32 survive a 32-bit compare, as on hardware.
 */
function cmpxchg(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const d = readRmw(cpu, i, z), dh = cpu.tHi;
  const a = getReg(cpu, RAX, z), ah = cpu.tHi;
  alu(cpu, AluOp.CMP, z, a, ah, d, dh);
  if (d === a && (z !== 8 || dh === ah)) {
    const s = readRegOp(cpu, i, z);
    writeBack(cpu, i, z, s, cpu.tHi);
  } else {
    if (!i.isReg) writeBack(cpu, i, z, d, dh);
    setReg(cpu, RAX, z, d, dh);
  }
}

/**
 * CMPXCHG8B / CMPXCHG16B: compare EDX:EAX (RDX:RAX) with m64 (m128); equal:
 * store ECX:EBX (RCX:RBX) and set ZF, else load the memory into EDX:EAX and clear ZF.
 * CMPXCHG16B needs a 16-byte-aligned operand (#GP(0)).
 */
function cmpxchgWide(cpu: Cpu, i: Insn): void {
  const g = cpu.gpr, m = cpu.mmu;
  operandOffset(cpu, i);
  if (i.segBase) addSegmentBase(cpu, i.seg);
  cpu.accessSeg = i.seg;
  const lo = cpu.eaLo, hi = cpu.eaHi;
  if (i.opSize === 8 && (lo & 15)) cpu.raise(Vector.GP, 0);
  // The operand is always written (SDM vol. 2, CMPXCHG8B): a segment that allows the write allows the read.
  checkSegment(cpu, 2 * i.opSize, true);
  if (i.opSize === 8) {
    const hiLo = (lo + 8) | 0, hiHi = (hiLo >>> 0) < (lo >>> 0) ? (hi + 1) | 0 : hi;
    const m0 = m.read64(lo, hi), m1 = m.hi, m2 = m.read64(hiLo, hiHi), m3 = m.hi;
    m.probeWrite(lo, hi, 16);
    if (m0 === g[0] && m1 === g[1] && m2 === g[4] && m3 === g[5]) {
      m.write64(lo, hi, g[6]!, g[7]!); m.write64(hiLo, hiHi, g[2]!, g[3]!);
      setStatusFlags(cpu, ZF, ZF);
    } else {
      m.write64(lo, hi, m0, m1); m.write64(hiLo, hiHi, m2, m3);
      g[0] = m0; g[1] = m1; g[4] = m2; g[5] = m3;
      setStatusFlags(cpu, ZF, 0);
    }
  } else {
    const m0 = m.read64(lo, hi), m1 = m.hi;
    m.probeWrite(lo, hi, 8);
    if (m0 === g[0] && m1 === g[4]) {
      m.write64(lo, hi, g[6]!, g[2]!);
      setStatusFlags(cpu, ZF, ZF);
    } else {
      m.write64(lo, hi, m0, m1);
      setReg(cpu, RAX, 4, m0, 0); setReg(cpu, RDX, 4, m1, 0);
      setStatusFlags(cpu, ZF, 0);
    }
  }
}

/** XADD: temp ← src + dest; src ← dest; dest ← temp: the destination is written last (one register as both gets the sum). */
function xadd(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const d = readRmw(cpu, i, z), dh = cpu.tHi;
  const s = readRegOp(cpu, i, z), sh = cpu.tHi;
  const r = alu(cpu, AluOp.ADD, z, d, dh, s, sh), rh = cpu.tHi;
  writeRegOp(cpu, i, z, d, dh);
  writeBack(cpu, i, z, r, rh);
}

/** LAHF: AH ← SF:ZF:0:AF:0:PF:1:CF. SAHF: the reverse (SDM vol. 2, LAHF, SAHF). */
function lahf(cpu: Cpu): void {
  setReg(cpu, 16, 1, (materialize(cpu) & 0xd5) | 2, 0);
}
function sahf(cpu: Cpu): void {
  setStatusFlags(cpu, SF | ZF | AF | PF | CF, (cpu.gpr[0]! >> 8) & 0xd5);
}

function nop(): void { /* no operation */ }

const def = (name: string, exec: OpDef['exec'], extra: Omit<OpDef, 'name' | 'exec'> = {}): OpDef =>
  ({ name, exec, ...extra });

const entries: Record<number, Entry> = {
  0x88: def('mov', movEG, { modrm: true, size: Sz.B, compile: compileMov('EG') }),
  0x89: def('mov', movEG, { modrm: true, compile: compileMov('EG') }),
  0x8a: def('mov', movGE, { modrm: true, size: Sz.B, compile: compileMov('GE') }),
  0x8b: def('mov', movGE, { modrm: true, compile: compileMov('GE') }),
  0x8d: def('lea', lea, { modrm: true, memOnly: true, compile: compileLea }),
  0x86: def('xchg', xchgEG, { modrm: true, size: Sz.B, lock: true }),
  0x87: def('xchg', xchgEG, { modrm: true, lock: true }),
  0x98: def('cbw', cbw),
  0x99: def('cwd', cwd),
  0x9e: def('sahf', sahf),
  0x9f: def('lahf', lahf),
  0xa0: def('mov', movAO, { size: Sz.B, imm: Im.Ob }),
  0xa1: def('mov', movAO, { imm: Im.Ob }),
  0xa2: def('mov', movOA, { size: Sz.B, imm: Im.Ob }),
  0xa3: def('mov', movOA, { imm: Im.Ob }),
  0xc6: { group: [def('mov', movEI, { modrm: true, size: Sz.B, imm: Im.Ib, compile: compileMov('EI') })] },
  0xc7: { group: [def('mov', movEI, { modrm: true, imm: Im.Iz, compile: compileMov('EI') })] },
  0x63: { long64: def('movsxd', movsxd, { modrm: true }) },
  [TWO + 0xb6]: def('movzx', extend(1, false), { modrm: true }),
  [TWO + 0xb7]: def('movzx', extend(2, false), { modrm: true }),
  [TWO + 0xbe]: def('movsx', extend(1, true), { modrm: true }),
  [TWO + 0xbf]: def('movsx', extend(2, true), { modrm: true }),
  [TWO + 0xb0]: def('cmpxchg', cmpxchg, { modrm: true, size: Sz.B, lock: true }),
  [TWO + 0xb1]: def('cmpxchg', cmpxchg, { modrm: true, lock: true }),
  [TWO + 0xc0]: def('xadd', xadd, { modrm: true, size: Sz.B, lock: true }),
  [TWO + 0xc1]: def('xadd', xadd, { modrm: true, lock: true }),
  [TWO + 0xc7]: { group: [undefined, { mem: def('cmpxchg8b', cmpxchgWide, { modrm: true, lock: true, size: Sz.Y }) }] },
  // Hint NOPs: 0F 0D, 0F 18-1F with ModRM (prefetches, ENDBR32/64, multi-byte NOP).
  [TWO + 0x0d]: def('nop', nop, { modrm: true }),
};
for (let r = 0; r < 8; r++) {
  entries[0xb0 + r] = def('mov', movRI, { size: Sz.B, imm: Im.Ib, compile: compileMov('RI') });
  entries[0xb8 + r] = def('mov', movRI, { imm: Im.Iv, compile: compileMov('RI') });
  entries[0x90 + r] = def(r === 0 ? 'nop' : 'xchg', xchgAX);
}
for (let cc = 0; cc < 16; cc++) entries[TWO + 0x40 + cc] = def('cmov', cmov, { modrm: true });
for (let r = 0; r < 8; r++) entries[TWO + 0xc8 + r] = def('bswap', bswap);
for (let b = 0x18; b <= 0x1f; b++) entries[TWO + b] = def('nop', nop, { modrm: true });

export const MOVE_TABLE = entries;
