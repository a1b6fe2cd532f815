/**
 * Control transfer within a code segment and flag control: Jcc, JMP, CALL, RET
 * (near), LOOP/LOOPcc/JrCXZ, SETcc, INT3/INT n/INTO/INT1, HLT, UD0/UD1/UD2,
 * CLC/STC/CMC/CLD/STD (SDM vol. 2, each instruction's page).
 */
import { Intercept } from '../virtualization.js';
import type { Cpu } from '../cpu.js';
import { getCF, setStatusFlags, testCondition } from '../flags.js';
import { Follow, Im, OpMap, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import type { Emitter } from '../jit/emitter.js';
import {
  adjustRsp, branchRelative, checkRelativeTarget, jumpAbsolute, jumpRelative, pop, push, readRm, setReg, writeRm,
} from '../operands.js';
import { CF, DF, RCX, Vector } from '../regs.js';
import { getOF } from '../flags.js';

const TWO = OpMap.TWO * 256;

/**
 * Compiled Jcc / JMP rel: RIP becomes the next instruction, then the branch is
 * taken or not. A Jcc inside the block leaves it only when taken.
 */
function compileJump(conditional: boolean) {
  return (e: Emitter, i: Insn): boolean => {
    // The target's check may raise: flags exact before it. An unconditional jump not last in its
    // block is one the block follows (blocks.ts): the code for its target comes next.
    if (!conditional) {
      e.flush();
      e.emit(e.branchTarget(i));
      return true;
    }
    const taken = e.condition(i.opcode & 0xf);
    if (e.linked) {
      // A back edge the block follows (blocks.ts): it goes on at the target when taken.
      e.exitIf(`!${taken}`, e.ripStatement(e.nextOffset));
      e.flush();
      e.emit(e.branchTarget(i));
      return true;
    }
    if (e.last) {
      e.flush();
      e.emit(`if (${taken}) { ${e.branchTarget(i)} } else { ${e.ripStatement(e.nextOffset)} }`);
    } else {
      e.exitIf(taken, e.branchTarget(i));
    }
    return true;
  };
}

/**
 * Compiled CALL rel32 in 64-bit mode: the target checked first (branchRelative
 * raises #GP(0) for a non-canonical one, as callRel does), then the return
 * address pushed on the flat stack, then RIP set. A fault leaves RSP as it was.
 */
function compileCall(e: Emitter, i: Insn): boolean {
  if (e.mode !== 8 || i.opSize !== 8) return false;
  e.flush();
  e.emit(`cpu.blockIndex = ${e.index};`);
  const target = e.local(), near = `${target} >= 0 && ${target} <= 0xffffffff`;
  // A target in the block's 4 GiB is as canonical as RIP; another goes through the check (and RIP is set there).
  e.emit(`const ${target} = (rl >>> 0) + ${e.nextOffset + i.imm};`);
  e.emit(`if (!(${near})) { ${e.ripStatement(e.nextOffset)} branchRelative(cpu, 8, ${i.imm}); }`);
  e.pushFlat({ lo: e.let(`(rl + ${e.nextOffset}) | 0`), hi: 'rh' }, 8);
  e.emit(`if (${near}) { cpu.ripLo = ${target} | 0; cpu.ripHi = rh; }`);
  return true;
}

/**
 * Compiled RET (C3) in 64-bit mode: the return address popped from the flat
 * stack; a non-canonical one is #GP(0) with RSP as it was (jumpAbsolute, ret).
 */
function compileRet(e: Emitter, i: Insn): boolean {
  if (e.mode !== 8 || i.opSize !== 8 || i.opcode !== 0xc3) return false;
  const top = e.topFlat(8), v = top.value;
  e.emit(`if (((${v.hi} << cpu.mmu.canonicalShift) >> cpu.mmu.canonicalShift) !== ${v.hi}) cpu.raise(${Vector.GP}, 0);`);
  top.pop();
  e.emit(`cpu.ripLo = ${v.lo}; cpu.ripHi = ${v.hi};`);
  return true;
}

function jcc(cpu: Cpu, i: Insn): void {
  if (testCondition(cpu, i.opcode & 0xf)) branchRelative(cpu, i.opSize, i.imm);
}

function jmpRel(cpu: Cpu, i: Insn): void {
  branchRelative(cpu, i.opSize, i.imm);
}

function jmpIndirect(cpu: Cpu, i: Insn): void {
  const t = readRm(cpu, i, i.opSize);
  jumpAbsolute(cpu, i.opSize, t, cpu.tHi);
}

/** CALL rel: push the next instruction's address, then jump. */
function callRel(cpu: Cpu, i: Insn): void {
  checkRelativeTarget(cpu, i.opSize, i.imm);
  push(cpu, i.opSize, cpu.ripLo, cpu.ripHi);
  jumpRelative(cpu, i.opSize, i.imm);
}

/** CALL r/m: the target is read before the return address is pushed. */
function callIndirect(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const t = readRm(cpu, i, z), th = cpu.tHi;
  const s = cpu.mmu.canonicalShift;
  if (z === 8 && ((th << s) >> s) !== th) cpu.raise(Vector.GP, 0);
  push(cpu, z, cpu.ripLo, cpu.ripHi);
  jumpAbsolute(cpu, z, t, th);
}

/** RET / RET imm16: pop the return address, then release imm16 bytes. */
function ret(cpu: Cpu, i: Insn): void {
  const z = i.opSize;
  const lo = pop(cpu, z), hi = cpu.tHi;
  try {
    jumpAbsolute(cpu, z, lo, hi);
  } catch (e) {
    adjustRsp(cpu, -z);
    throw e;
  }
  if (i.imm) adjustRsp(cpu, i.imm);
}

/** The count register of LOOP and JrCXZ is CX, ECX or RCX by address size. */
function counterIsZero(cpu: Cpu, i: Insn): boolean {
  const g = cpu.gpr;
  if (i.adSize === 8) return g[2 * RCX] === 0 && g[2 * RCX + 1] === 0;
  return (i.adSize === 4 ? g[2 * RCX] : g[2 * RCX]! & 0xffff) === 0;
}

function decrementCounter(cpu: Cpu, i: Insn): void {
  const g = cpu.gpr;
  if (i.adSize === 8) {
    if (g[2 * RCX] === 0) g[2 * RCX + 1] = (g[2 * RCX + 1]! - 1) | 0;
    g[2 * RCX] = (g[2 * RCX]! - 1) | 0;
  } else if (i.adSize === 4) {
    setReg(cpu, RCX, 4, (g[2 * RCX]! - 1) | 0, 0);
  } else {
    setReg(cpu, RCX, 2, g[2 * RCX]! - 1, 0);
  }
}

/** E0 LOOPNE, E1 LOOPE, E2 LOOP: decrement the count without touching flags, then branch. */
function loop(cpu: Cpu, i: Insn): void {
  const g = cpu.gpr, lo = g[2 * RCX]!, hi = g[2 * RCX + 1]!;
  decrementCounter(cpu, i);
  if (counterIsZero(cpu, i)) return;
  const kind = i.opcode & 3;
  if (kind === 0 && testCondition(cpu, 4)) return;
  if (kind === 1 && !testCondition(cpu, 4)) return;
  try {
    branchRelative(cpu, i.opSize, i.imm);
  } catch (e) {
    // A target out of range is #GP(0) with the count as it was: the instruction did not happen.
    g[2 * RCX] = lo; g[2 * RCX + 1] = hi;
    throw e;
  }
}

function jrcxz(cpu: Cpu, i: Insn): void {
  if (counterIsZero(cpu, i)) branchRelative(cpu, i.opSize, i.imm);
}

function setcc(cpu: Cpu, i: Insn): void {
  writeRm(cpu, i, 1, testCondition(cpu, i.opcode & 0xf) ? 1 : 0, 0);
}

// Event kinds of interrupts.ts: 1 INT n, 2 INT3/INTO, 3 INT1 (their gate checks differ).
function int3(cpu: Cpu, i: Insn): void { cpu.raiseTrap(Vector.BP, 2, i.len); }
function int1(cpu: Cpu, i: Insn): void { cpu.raiseTrap(Vector.DB, 3, i.len); }
function intN(cpu: Cpu, i: Insn): void { cpu.raiseTrap(i.imm, 1, i.len); }
function into(cpu: Cpu, i: Insn): void { if (getOF(cpu)) cpu.raiseTrap(Vector.OF, 2, i.len); }
function ud(cpu: Cpu): void { cpu.raise(Vector.UD); }

/** HLT: privileged; the processor waits for an interrupt, NMI or reset (SDM vol. 2, HLT). */
function hlt(cpu: Cpu, i: Insn): void {
  if (cpu.cpl !== 0) cpu.raise(Vector.GP, 0);
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, Intercept.HLT)) return;
  cpu.halted = true;
  cpu.stop({ kind: 'halt' });
}

function flagOp(mask: number, value: number | 'toggle') {
  return (cpu: Cpu): void => {
    if (value === 'toggle') setStatusFlags(cpu, CF, getCF(cpu) ^ CF);
    else cpu.flags = (cpu.rflags & ~mask) | value;
  };
}

const def = (name: string, exec: OpDef['exec'], extra: Omit<OpDef, 'name' | 'exec'> = {}): OpDef =>
  ({ name, exec, ...extra });
const branch = { size: Sz.F64, ends: true } as const;

const entries: Record<number, Entry> = {
  0xe8: def('call', callRel, { ...branch, imm: Im.Jz, follow: Follow.CALL, compile: compileCall }),
  0xe9: def('jmp', jmpRel, { ...branch, imm: Im.Jz, follow: Follow.JUMP, compile: compileJump(false) }),
  0xeb: def('jmp', jmpRel, { ...branch, imm: Im.Jb, follow: Follow.JUMP, compile: compileJump(false) }),
  0xc2: def('ret', ret, { ...branch, imm: Im.Iw, follow: Follow.RETURN }),
  0xc3: def('ret', ret, { ...branch, follow: Follow.RETURN, compile: compileRet }),
  0xe0: def('loopne', loop, { ...branch, imm: Im.Jb }),
  0xe1: def('loope', loop, { ...branch, imm: Im.Jb }),
  0xe2: def('loop', loop, { ...branch, imm: Im.Jb }),
  0xe3: def('jrcxz', jrcxz, { ...branch, imm: Im.Jb }),
  0xcc: def('int3', int3, { ends: true }),
  0xcd: def('int', intN, { imm: Im.Ub, ends: true }),
  0xce: def('into', into, { inv64: true, ends: true }),
  0xf1: def('int1', int1, { ends: true }),
  0xf4: def('hlt', hlt, { ends: true }),
  0xf5: def('cmc', flagOp(CF, 'toggle')),
  0xf8: def('clc', flagOp(CF, 0)),
  0xf9: def('stc', flagOp(CF, CF)),
  0xfc: def('cld', flagOp(DF, 0)),
  0xfd: def('std', flagOp(DF, DF)),
  0xff: { group: [undefined, undefined,
    def('call', callIndirect, { modrm: true, size: Sz.F64, ends: true }), undefined,
    def('jmp', jmpIndirect, { modrm: true, size: Sz.F64, ends: true })] },
  [TWO + 0x0b]: def('ud2', ud, { ends: true }),
  [TWO + 0xb9]: def('ud1', ud, { modrm: true, ends: true }),
  [TWO + 0xff]: def('ud0', ud, { modrm: true, ends: true }),
};
for (let cc = 0; cc < 16; cc++) {
  entries[0x70 + cc] = def('j', jcc, { size: Sz.F64, exits: true, follow: Follow.CONDITIONAL, imm: Im.Jb, compile: compileJump(true) });
  entries[TWO + 0x80 + cc] = def('j', jcc, { size: Sz.F64, exits: true, follow: Follow.CONDITIONAL, imm: Im.Jz, compile: compileJump(true) });
  entries[TWO + 0x90 + cc] = def('set', setcc, { modrm: true, size: Sz.B });
}

export const CONTROL_TABLE = entries;
