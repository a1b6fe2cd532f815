/**
 * Integer arithmetic and logic: ADD OR ADC SBB AND SUB XOR CMP, TEST, INC, DEC,
 * NEG, NOT (SDM vol. 2, each instruction's page). Flags are lazy (flags.ts).
 */
import type { Cpu } from '../cpu.js';
import { FlagOp, getCF, setLazy, setLazyCarry, setLazyLogic } from '../flags.js';
import { Im, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import { readRegOp, readRm, SIZE_MASK, getReg, setReg, writeBack, writeRegOp } from '../operands.js';

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

/** CMP and TEST only set flags. */
function writes(op: AluOp): boolean { return op !== AluOp.CMP && op !== AluOp.TEST; }

/** OP r/m, reg */
function aluEG(op: AluOp) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    const b = readRegOp(cpu, i, z), bh = cpu.tHi;
    const a = readRm(cpu, i, z), ah = cpu.tHi;
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
    const a = readRm(cpu, i, z), ah = cpu.tHi;
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

function incDecRm(dec: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    const z = i.opSize;
    const a = readRm(cpu, i, z), ah = cpu.tHi;
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
  const a = readRm(cpu, i, z), ah = cpu.tHi;
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
  entries[op * 8 + 0] = def(name, aluEG(op), { modrm: true, size: Sz.B, lock });
  entries[op * 8 + 1] = def(name, aluEG(op), { modrm: true, lock });
  entries[op * 8 + 2] = def(name, aluGE(op), { modrm: true, size: Sz.B });
  entries[op * 8 + 3] = def(name, aluGE(op), { modrm: true });
  entries[op * 8 + 4] = def(name, aluAI(op), { size: Sz.B, imm: Im.Ib });
  entries[op * 8 + 5] = def(name, aluAI(op), { imm: Im.Iz });
}
const group1 = (size: Sz, imm: Im, inv64 = false): Entry => ({
  group: NAMES.slice(0, 8).map((name, op) =>
    def(name, aluEI(op), { modrm: true, size, imm, lock: op !== AluOp.CMP, inv64 })),
});
entries[0x80] = group1(Sz.B, Im.Ib);
entries[0x81] = group1(Sz.V, Im.Iz);
entries[0x82] = group1(Sz.B, Im.Ib, true);
entries[0x83] = group1(Sz.V, Im.Ib);
entries[0x84] = def('test', aluEG(AluOp.TEST), { modrm: true, size: Sz.B });
entries[0x85] = def('test', aluEG(AluOp.TEST), { modrm: true });
entries[0xa8] = def('test', aluAI(AluOp.TEST), { size: Sz.B, imm: Im.Ib });
entries[0xa9] = def('test', aluAI(AluOp.TEST), { imm: Im.Iz });
for (let r = 0; r < 8; r++) {
  entries[0x40 + r] = def('inc', incDecReg(false), { inv64: true });
  entries[0x48 + r] = def('dec', incDecReg(true), { inv64: true });
}
// Group 3 (F6/F7): TEST, NOT, NEG here; MUL, IMUL, DIV, IDIV in muldiv.ts.
const test3 = (size: Sz, imm: Im) => def('test', aluEI(AluOp.TEST), { modrm: true, size, imm });
entries[0xf6] = { group: [test3(Sz.B, Im.Ib), test3(Sz.B, Im.Ib),
  def('not', not, { modrm: true, size: Sz.B, lock: true }), def('neg', neg, { modrm: true, size: Sz.B, lock: true })] };
entries[0xf7] = { group: [test3(Sz.V, Im.Iz), test3(Sz.V, Im.Iz),
  def('not', not, { modrm: true, lock: true }), def('neg', neg, { modrm: true, lock: true })] };
// Group 4 (FE) and the INC/DEC half of group 5 (FF).
entries[0xfe] = { group: [def('inc', incDecRm(false), { modrm: true, size: Sz.B, lock: true }),
  def('dec', incDecRm(true), { modrm: true, size: Sz.B, lock: true })] };
entries[0xff] = { group: [def('inc', incDecRm(false), { modrm: true, lock: true }),
  def('dec', incDecRm(true), { modrm: true, lock: true })] };

export const ALU_TABLE = entries;
