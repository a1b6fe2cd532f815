/**
 * Integer arithmetic and logic: ADD OR ADC SBB AND SUB XOR CMP, TEST, INC, DEC,
 * NEG, NOT (SDM vol. 2, each instruction's page). Flags are lazy (flags.ts).
 */
import type { Cpu } from '../cpu.js';
import { FlagOp, getCF, setLazy, setLazyCarry, setLazyLogic } from '../flags.js';
import { Im, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import type { Emitter, Pair } from '../jit/emitter.js';
import { readRegOp, readRm, readRmw, SIZE_MASK, getReg, setReg, writeBack, writeRegOp } from '../operands.js';

/** The eight operations of opcodes 00-3F and group 1, in encoding order. */
export const enum AluOp { ADD = 0, OR, ADC, SBB, AND, SUB, XOR, CMP, TEST }
const NAMES = ['add', 'or', 'adc', 'sbb', 'and', 'sub', 'xor', 'cmp', 'test'];

/** a OP b at `size` bytes, setting the flags; returns the low half, high half in cpu.tHi. */
export function alu(cpu: Cpu, op: AluOp, size: number, aLo: number, aHi: number, bLo: number, bHi: number): number {
  const m = SIZE_MASK[size]!;
  let rLo: number, rHi = 0;
  switch (op) {
    case AluOp.ADD: case AluOp.ADC: {
      const cin = op === AluOp.ADC && getCF(cpu) ? 1 : 0;
      if (size === 8) {
        const s = (aLo >>> 0) + (bLo >>> 0) + cin;
        rLo = s | 0;
        rHi = (aHi + bHi + (s > 0xffffffff ? 1 : 0)) | 0;
      } else {
        rLo = (aLo + bLo + cin) & m;
      }
      if (op === AluOp.ADC) setLazyCarry(cpu, FlagOp.ADC, size, cin, aLo, aHi, bLo, bHi, rLo, rHi);
      else setLazy(cpu, FlagOp.ADD, size, aLo, aHi, bLo, bHi, rLo, rHi);
      break;
    }
    case AluOp.SUB: case AluOp.SBB: case AluOp.CMP: {
      const cin = op === AluOp.SBB && getCF(cpu) ? 1 : 0;
      if (size === 8) {
        const s = (aLo >>> 0) - (bLo >>> 0) - cin;
        rLo = s | 0;
        rHi = (aHi - bHi - (s < 0 ? 1 : 0)) | 0;
      } else {
        rLo = (aLo - bLo - cin) & m;
      }
      if (op === AluOp.SBB) setLazyCarry(cpu, FlagOp.SBB, size, cin, aLo, aHi, bLo, bHi, rLo, rHi);
      else setLazy(cpu, FlagOp.SUB, size, aLo, aHi, bLo, bHi, rLo, rHi);
      break;
    }
    case AluOp.OR: rLo = aLo | bLo; rHi = aHi | bHi; setLazyLogic(cpu, size, rLo, rHi); break;
    case AluOp.XOR: rLo = aLo ^ bLo; rHi = aHi ^ bHi; setLazyLogic(cpu, size, rLo, rHi); break;
    default: rLo = aLo & bLo; rHi = aHi & bHi; setLazyLogic(cpu, size, rLo, rHi); break;
  }
  if (size !== 8) rHi = 0;
  cpu.tHi = rHi;
  return rLo;
}

/**
 * Emits a OP b for the block compiler: the same arithmetic as alu(). Returns the
 * result and `commit`, which records the flags; callers commit after their write,
 * so a faulting write leaves the flags as they were.
 */
export function emitAlu(e: Emitter, op: AluOp, z: number, a: Pair, b: Pair): { r: Pair; commit: () => void } {
  const m = e.mask(z);
  switch (op) {
    case AluOp.ADD: case AluOp.ADC: {
      const cin = op === AluOp.ADC ? e.let(e.carry()) : '0';
      let r: Pair;
      if (z === 8) {
        const s = e.let(`(${a.lo} >>> 0) + (${b.lo} >>> 0) + ${cin}`);
        r = { lo: e.let(`${s} | 0`), hi: e.let(`(${a.hi} + ${b.hi} + (${s} > 0xffffffff ? 1 : 0)) | 0`) };
      } else {
        r = { lo: e.let(`(${a.lo} + ${b.lo} + ${cin}) & ${m}`), hi: '0' };
      }
      return { r, commit: () => e.produce(op === AluOp.ADC ? FlagOp.ADC : FlagOp.ADD, z, a, b, r, cin) };
    }
    case AluOp.SUB: case AluOp.SBB: case AluOp.CMP: {
      const cin = op === AluOp.SBB ? e.let(e.carry()) : '0';
      let r: Pair;
      if (z === 8) {
        const s = e.let(`(${a.lo} >>> 0) - (${b.lo} >>> 0) - ${cin}`);
        r = { lo: e.let(`${s} | 0`), hi: e.let(`(${a.hi} - ${b.hi} - (${s} < 0 ? 1 : 0)) | 0`) };
      } else {
        r = { lo: e.let(`(${a.lo} - ${b.lo} - ${cin}) & ${m}`), hi: '0' };
      }
      return { r, commit: () => e.produce(op === AluOp.SBB ? FlagOp.SBB : FlagOp.SUB, z, a, b, r, cin) };
    }
    default: {
      const js = op === AluOp.OR ? '|' : op === AluOp.XOR ? '^' : '&';
      const r = { lo: e.let(`${a.lo} ${js} ${b.lo}`), hi: z === 8 ? e.let(`${a.hi} ${js} ${b.hi}`) : '0' };
      return { r, commit: () => e.produce(FlagOp.LOGIC, z, r, r, r) };
    }
  }
}

/**
 * The compiled form of the four ALU operand shapes: reads, computes, writes,
 * and only then records flags, so a faulting write leaves the flags untouched.
 */
function compileAlu(op: AluOp, shape: 'EG' | 'GE' | 'AI' | 'EI') {
  return (e: Emitter, i: Insn): boolean => {
    if (!i.isReg && i.adSize === 2) return false;
    const z = i.opSize;
    let addr: Pair | null = null;
    const rm = (): Pair => {
      if (i.isReg) return e.readReg(e.rmOf(i, z), z);
      addr = e.address(i);
      return e.readMem(addr, z);
    };
    let a: Pair, b: Pair;
    switch (shape) {
      case 'EG': b = e.readReg(e.regOf(i, z), z); a = rm(); break;
      case 'GE': b = rm(); a = e.readReg(e.regOf(i, z), z); break;
      case 'AI': a = e.readReg(0, z); b = e.imm(i, z); break;
      default: a = rm(); b = e.imm(i, z); break;
    }
    const { r, commit } = emitAlu(e, op, z, a, b);
    if (writes(op)) {
      if (shape === 'GE') e.writeReg(e.regOf(i, z), z, r);
      else if (shape === 'AI') e.writeReg(0, z, r);
      else if (addr === null) e.writeReg(e.rmOf(i, z), z, r);
      else e.writeMem(addr, z, r);
    }
    commit();
    return true;
  };
}

/** CMP and TEST only set flags. */
function writes(op: AluOp): boolean { return op !== AluOp.CMP && op !== AluOp.TEST; }

/** OP r/m, reg */
function aluEG(op: AluOp) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    const b = readRegOp(cpu, i, z), bh = cpu.tHi;
    const a = writes(op) ? readRmw(cpu, i, z) : readRm(cpu, i, z), ah = cpu.tHi;
    const r = alu(cpu, op, z, a, ah, b, bh);
    if (writes(op)) writeBack(cpu, i, z, r, cpu.tHi);
  };
}

/** OP reg, r/m */
function aluGE(op: AluOp) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    const b = readRm(cpu, i, z), bh = cpu.tHi;
    const a = readRegOp(cpu, i, z), ah = cpu.tHi;
    const r = alu(cpu, op, z, a, ah, b, bh);
    if (writes(op)) writeRegOp(cpu, i, z, r, cpu.tHi);
  };
}

/** OP AL/eAX, imm */
function aluAI(op: AluOp) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    const a = getReg(cpu, 0, z), ah = cpu.tHi;
    const r = alu(cpu, op, z, a, ah, i.imm, z === 8 ? i.immHi : 0);
    if (writes(op)) setReg(cpu, 0, z, r, cpu.tHi);
  };
}

/** OP r/m, imm (group 1, F6/F7 /0 TEST) */
function aluEI(op: AluOp) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    const a = writes(op) ? readRmw(cpu, i, z) : readRm(cpu, i, z), ah = cpu.tHi;
    const r = alu(cpu, op, z, a, ah, i.imm, z === 8 ? i.immHi : 0);
    if (writes(op)) writeBack(cpu, i, z, r, cpu.tHi);
  };
}

/** INC/DEC: CF is left alone (SDM vol. 2, INC, DEC). */
function incDec(cpu: Cpu, z: number, a: number, ah: number, dec: boolean): number {
  let r: number, rh = 0;
  if (z === 8) {
    const s = (a >>> 0) + (dec ? -1 : 1);
    r = s | 0;
    rh = (ah + (s > 0xffffffff ? 1 : s < 0 ? -1 : 0)) | 0;
  } else {
    r = (a + (dec ? -1 : 1)) & SIZE_MASK[z]!;
  }
  setLazy(cpu, dec ? FlagOp.DEC : FlagOp.INC, z, a, ah, 1, 0, r, rh);
  cpu.tHi = rh;
  return r;
}

/** Compiled INC/DEC on a register or memory operand. */
function compileIncDec(dec: boolean, opcodeRegister: boolean) {
  return (e: Emitter, i: Insn): boolean => {
    if (!i.isReg && i.adSize === 2 && !opcodeRegister) return false;
    const z = i.opSize;
    const reg = opcodeRegister ? i.reg : e.rmOf(i, z);
    let addr: Pair | null = null;
    let a: Pair;
    if (opcodeRegister || i.isReg) a = e.readReg(reg, z);
    else { addr = e.address(i); a = e.readMem(addr, z); }
    const delta = dec ? -1 : 1;
    let r: Pair;
    if (z === 8) {
      const s = e.let(`(${a.lo} >>> 0) + ${delta}`);
      r = { lo: e.let(`${s} | 0`), hi: e.let(`(${a.hi} + (${s} > 0xffffffff ? 1 : ${s} < 0 ? -1 : 0)) | 0`) };
    } else {
      r = { lo: e.let(`(${a.lo} + ${delta}) & ${e.mask(z)}`), hi: '0' };
    }
    if (addr !== null) e.writeMem(addr, z, r); else e.writeReg(reg, z, r);
    e.produce(dec ? FlagOp.DEC : FlagOp.INC, z, a, { lo: '1', hi: '0' }, r);
    return true;
  };
}

function incDecRm(dec: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    const a = readRmw(cpu, i, z), ah = cpu.tHi;
    const r = incDec(cpu, z, a, ah, dec);
    writeBack(cpu, i, z, r, cpu.tHi);
  };
}

/** INC/DEC r16/r32 (40-4F outside 64-bit mode). */
function incDecReg(dec: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    const a = getReg(cpu, i.reg, z), ah = cpu.tHi;
    const r = incDec(cpu, z, a, ah, dec);
    setReg(cpu, i.reg, z, r, cpu.tHi);
  };
}

function neg(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const a = readRmw(cpu, i, z), ah = cpu.tHi;
  const r = alu(cpu, AluOp.SUB, z, 0, 0, a, ah);
  writeBack(cpu, i, z, r, cpu.tHi);
}

function not(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const a = readRm(cpu, i, z), ah = cpu.tHi;
  writeBack(cpu, i, z, ~a & SIZE_MASK[z]!, z === 8 ? ~ah : 0);
}

function def(name: string, exec: OpDef['exec'], extra: Omit<OpDef, 'name' | 'exec'> = {}): OpDef {
  return { name, exec, ...extra };
}

const entries: Record<number, Entry> = {};
for (let op = 0; op < 8; op++) {
  const name = NAMES[op]!, lock = op !== AluOp.CMP;
  const eg = compileAlu(op, 'EG'), ge = compileAlu(op, 'GE'), ai = compileAlu(op, 'AI');
  entries[op * 8 + 0] = def(name, aluEG(op), { modrm: true, size: Sz.B, lock, compile: eg });
  entries[op * 8 + 1] = def(name, aluEG(op), { modrm: true, lock, compile: eg });
  entries[op * 8 + 2] = def(name, aluGE(op), { modrm: true, size: Sz.B, compile: ge });
  entries[op * 8 + 3] = def(name, aluGE(op), { modrm: true, compile: ge });
  entries[op * 8 + 4] = def(name, aluAI(op), { size: Sz.B, imm: Im.Ib, compile: ai });
  entries[op * 8 + 5] = def(name, aluAI(op), { imm: Im.Iz, compile: ai });
}
const group1 = (size: Sz, imm: Im, inv64 = false): Entry => ({
  group: NAMES.slice(0, 8).map((name, op) =>
    def(name, aluEI(op), { modrm: true, size, imm, lock: op !== AluOp.CMP, inv64, compile: compileAlu(op, 'EI') })),
});
entries[0x80] = group1(Sz.B, Im.Ib);
entries[0x81] = group1(Sz.V, Im.Iz);
entries[0x82] = group1(Sz.B, Im.Ib, true);
entries[0x83] = group1(Sz.V, Im.Ib);
const testEG = compileAlu(AluOp.TEST, 'EG'), testAI = compileAlu(AluOp.TEST, 'AI');
entries[0x84] = def('test', aluEG(AluOp.TEST), { modrm: true, size: Sz.B, compile: testEG });
entries[0x85] = def('test', aluEG(AluOp.TEST), { modrm: true, compile: testEG });
entries[0xa8] = def('test', aluAI(AluOp.TEST), { size: Sz.B, imm: Im.Ib, compile: testAI });
entries[0xa9] = def('test', aluAI(AluOp.TEST), { imm: Im.Iz, compile: testAI });
for (let r = 0; r < 8; r++) {
  entries[0x40 + r] = def('inc', incDecReg(false), { inv64: true, compile: compileIncDec(false, true) });
  entries[0x48 + r] = def('dec', incDecReg(true), { inv64: true, compile: compileIncDec(true, true) });
}
// Group 3 (F6/F7): TEST, NOT, NEG here; MUL, IMUL, DIV, IDIV in muldiv.ts.
const test3 = (size: Sz, imm: Im) => def('test', aluEI(AluOp.TEST), { modrm: true, size, imm });
entries[0xf6] = { group: [test3(Sz.B, Im.Ib), test3(Sz.B, Im.Ib),
  def('not', not, { modrm: true, size: Sz.B, lock: true }), def('neg', neg, { modrm: true, size: Sz.B, lock: true })] };
entries[0xf7] = { group: [test3(Sz.V, Im.Iz), test3(Sz.V, Im.Iz),
  def('not', not, { modrm: true, lock: true }), def('neg', neg, { modrm: true, lock: true })] };
// Group 4 (FE) and the INC/DEC half of group 5 (FF).
const incRm = compileIncDec(false, false), decRm = compileIncDec(true, false);
entries[0xfe] = { group: [def('inc', incDecRm(false), { modrm: true, size: Sz.B, lock: true, compile: incRm }),
  def('dec', incDecRm(true), { modrm: true, size: Sz.B, lock: true, compile: decRm })] };
entries[0xff] = { group: [def('inc', incDecRm(false), { modrm: true, lock: true, compile: incRm }),
  def('dec', incDecRm(true), { modrm: true, lock: true, compile: decRm })] };

export const ALU_TABLE = entries;
