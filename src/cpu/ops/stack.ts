/**
 * The stack: PUSH and POP in all general-purpose forms, PUSHF/POPF, PUSHA/POPA,
 * ENTER/LEAVE (SDM vol. 2, each instruction's page; vol. 1, 6.2).
 */
import type { Cpu } from '../cpu.js';
import { Im, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import type { Emitter } from '../jit/emitter.js';
import { adjustRsp, getReg, peek, pop, push, readRm, readStack, setReg, writeRm } from '../operands.js';
import {
  AC, AF, CF, DF, ID, IF, IOPL, NT, OF, PF, RBP, RF, RSP, SF, TF, VM, ZF,
} from '../regs.js';

/** Compiled PUSH r / POP r in 64-bit mode, where the stack is flat and 64 bits wide. */
function compilePushPop(isPush: boolean) {
  return (e: Emitter, i: Insn): boolean => {
    if (e.mode !== 8) return false;
    const z = i.opSize;
    if (isPush) {
      e.pushFlat(e.readReg(i.reg, z), z);
    } else {
      const top = e.topFlat(z);
      top.pop();
      e.writeReg(i.reg, z, top.value);
    }
    return true;
  };
}

function pushReg(cpu: Cpu, i: Insn): void {
  const v = getReg(cpu, i.reg, i.opSize);
  push(cpu, i.opSize, v, cpu.tHi);
}

function popReg(cpu: Cpu, i: Insn): void {
  const v = pop(cpu, i.opSize);
  setReg(cpu, i.reg, i.opSize, v, cpu.tHi);
}

function pushImm(cpu: Cpu, i: Insn): void {
  push(cpu, i.opSize, i.imm, i.opSize === 8 ? i.immHi : 0);
}

function pushRm(cpu: Cpu, i: Insn): void {
  const v = readRm(cpu, i, i.opSize);
  push(cpu, i.opSize, v, cpu.tHi);
}

/** POP r/m: an RSP-based address is computed after RSP is incremented (SDM vol. 2, POP). */
function popRm(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const v = pop(cpu, z), vh = cpu.tHi;
  try {
    writeRm(cpu, i, z, v, vh);
  } catch (e) {
    adjustRsp(cpu, -z);
    throw e;
  }
}

/** PUSHF: RFLAGS with VM and RF cleared in the image (SDM vol. 2, PUSHF). */
function pushf(cpu: Cpu, i: Insn): void {
  push(cpu, i.opSize, cpu.rflags & ~(VM | RF), 0);
}

/**
 * POPF outside virtual-8086 mode (SDM vol. 2, POPF): at CPL 0 every flag but
 * VM, VIP, VIF may change; above CPL 0 IOPL keeps its value and IF changes only
 * when CPL <= IOPL. RF is cleared.
 */
function popf(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const v = pop(cpu, z);
  let mask = CF | PF | AF | ZF | SF | TF | DF | OF | NT;
  if (z !== 2) mask |= AC | ID;
  const iopl = (cpu.rflags & IOPL) >> 12;
  if (cpu.cpl === 0) mask |= IOPL | IF;
  else if (cpu.cpl <= iopl) mask |= IF;
  cpu.rflags = (cpu.rflags & ~mask & ~RF) | (v & mask);
}

/** PUSHA/PUSHAD: AX CX DX BX original-SP BP SI DI. */
function pusha(cpu: Cpu, i: Insn): void {
  const z = i.opSize, sp = getReg(cpu, RSP, z);
  for (let r = 0; r < 8; r++) push(cpu, z, r === RSP ? sp : getReg(cpu, r, z), 0);
}

/** POPA/POPAD: the saved SP is skipped. */
function popa(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  for (let r = 7; r >= 0; r--) {
    const v = peek(cpu, z, (7 - r) * z);
    if (r !== RSP) setReg(cpu, r, z, v, 0);
  }
  adjustRsp(cpu, 8 * z);
}

/** ENTER imm16, imm8: make a stack frame with `level` nested frame pointers (SDM vol. 2, ENTER). */
function enter(cpu: Cpu, i: Insn): void {
  const z = i.opSize, level = i.imm2 & 31, s = cpu.stackSize;
  const oldRsp = getReg(cpu, RSP, 8), oldRspHi = cpu.tHi;
  const bp = getReg(cpu, RBP, 8), bpHi = cpu.tHi;
  try {
    push(cpu, z, bp, bpHi);
    const frame = getReg(cpu, RSP, s), frameHi = cpu.tHi;
    if (level > 0) {
      for (let k = 1; k < level; k++) {
        const v = readStack(cpu, bp, bpHi, -k * z, z);
        push(cpu, z, v, cpu.tHi);
      }
      push(cpu, z, frame, frameHi);
    }
    adjustRsp(cpu, -i.imm);
    if (i.imm > 0) readStack(cpu, cpu.gpr[2 * RSP]!, cpu.gpr[2 * RSP + 1]!, 0, 1); // must be writable
    setReg(cpu, RBP, z, frame, frameHi);
  } catch (e) {
    setReg(cpu, RSP, 8, oldRsp, oldRspHi);
    throw e;
  }
}

/** LEAVE: rSP ← rBP, then pop rBP. */
function leave(cpu: Cpu, i: Insn): void {
  const s = cpu.stackSize;
  const oldLo = cpu.gpr[2 * RSP]!, oldHi = cpu.gpr[2 * RSP + 1]!;
  const bp = getReg(cpu, RBP, s);
  setReg(cpu, RSP, s, bp, cpu.tHi);
  try {
    const v = pop(cpu, i.opSize);
    setReg(cpu, RBP, i.opSize, v, cpu.tHi);
  } catch (e) {
    cpu.gpr[2 * RSP] = oldLo; cpu.gpr[2 * RSP + 1] = oldHi;
    throw e;
  }
}

const def = (name: string, exec: OpDef['exec'], extra: Omit<OpDef, 'name' | 'exec'> = {}): OpDef =>
  ({ name, exec, ...extra });

const entries: Record<number, Entry> = {
  0x68: def('push', pushImm, { size: Sz.D64, imm: Im.Iz }),
  0x6a: def('push', pushImm, { size: Sz.D64, imm: Im.Ib }),
  0x8f: { group: [def('pop', popRm, { modrm: true, size: Sz.D64 })] },
  0x9c: def('pushf', pushf, { size: Sz.D64 }),
  0x9d: def('popf', popf, { size: Sz.D64, ends: true }),
  0x60: def('pusha', pusha, { inv64: true }),
  0x61: def('popa', popa, { inv64: true }),
  0xc8: def('enter', enter, { size: Sz.D64, imm: Im.IwIb }),
  0xc9: def('leave', leave, { size: Sz.D64 }),
  0xff: { group: [undefined, undefined, undefined, undefined, undefined, undefined,
    def('push', pushRm, { modrm: true, size: Sz.D64 })] },
};
for (let r = 0; r < 8; r++) {
  entries[0x50 + r] = def('push', pushReg, { size: Sz.D64, compile: compilePushPop(true) });
  entries[0x58 + r] = def('pop', popReg, { size: Sz.D64, compile: compilePushPop(false) });
}

export const STACK_TABLE = entries;
