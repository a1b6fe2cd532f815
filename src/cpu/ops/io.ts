/**
 * Port I/O: IN, OUT, INS, OUTS (SDM vol. 2, each instruction's page; vol. 1,
 * chapter 19 "Input/Output": 19.5 I/O privilege level and the I/O permission
 * bitmap). The ports themselves are the platform's (cpu.io).
 */
import type { Cpu } from '../cpu.js';
import { Im, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import { addSegmentBase, checkSegment, getReg, repeatInstruction, setReg } from '../operands.js';
import { DF, ES, IOPL, RCX, RDI, RDX, RSI, TR, VM, Vector } from '../regs.js';
import { noteIoAccess } from './debug-registers.js';

/**
 * In protected mode with CPL > IOPL (or in virtual-8086 mode), each port the
 * access touches must have its bit clear in the TSS's I/O permission bitmap,
 * else #GP(0) (SDM vol. 1, 19.5.2).
 */
export function checkIoPermission(cpu: Cpu, port: number, size: number): void {
  if (!(cpu.cr0 & 1)) return;
  const flags = cpu.rflags;
  if (!(flags & VM) && cpu.cpl <= (flags & IOPL) >> 12) return;
  const limit = cpu.segLimit[TR]!, baseLo = cpu.segBase[2 * TR]!, baseHi = cpu.segBase[2 * TR + 1]!;
  const tssType = cpu.segAttr[TR]! & 0xf;
  if ((tssType !== 0x9 && tssType !== 0xb) || limit < 0x67) cpu.raise(Vector.GP, 0);
  // The TSS reads are implicit supervisor accesses (SDM vol. 3A, 4.6).
  const mapBase = cpu.mmu.readImplicit((baseLo + 0x66) | 0, baseHi, 2);
  const byte = mapBase + (port >>> 3);
  if (byte + 1 > limit) cpu.raise(Vector.GP, 0);
  const bits = cpu.mmu.readImplicit((baseLo + byte) | 0, baseHi, 2);
  if ((bits >>> (port & 7)) & ((1 << size) - 1)) cpu.raise(Vector.GP, 0);
}

/** The port and access size of IN/OUT: imm8 or DX; AL, AX or EAX. */
function portOf(cpu: Cpu, i: Insn): number {
  return i.def.imm === Im.Ub ? i.imm : cpu.gpr[2 * RDX]! & 0xffff;
}
const accessSize = (i: Insn): 1 | 2 | 4 => i.opSize as 1 | 2 | 4;

function inAcc(cpu: Cpu, i: Insn): void {
  const port = portOf(cpu, i), z = accessSize(i);
  checkIoPermission(cpu, port, z);
  if (cpu.nonRoot) cpu.virt.io(cpu, i, port, z, true, false);
  setReg(cpu, 0, z, cpu.io.read(port, z), 0);
  if (cpu.breakOnIo !== 0) noteIoAccess(cpu, port, z);
}

function outAcc(cpu: Cpu, i: Insn): void {
  const port = portOf(cpu, i), z = accessSize(i);
  checkIoPermission(cpu, port, z);
  if (cpu.nonRoot) cpu.virt.io(cpu, i, port, z, false, false);
  cpu.io.write(port, z, getReg(cpu, 0, z));
  if (cpu.breakOnIo !== 0) noteIoAccess(cpu, port, z);
}

/** Steps an address-size register by ±size. */
function step(cpu: Cpu, reg: number, ad: number, delta: number): void {
  const lo = getReg(cpu, reg, ad), hi = cpu.tHi;
  if (ad === 8) {
    const s = (lo >>> 0) + delta;
    setReg(cpu, reg, 8, s | 0, (hi + (s > 0xffffffff ? 1 : s < 0 ? -1 : 0)) | 0);
  } else {
    setReg(cpu, reg, ad, (lo + delta) | 0, 0);
  }
}

function counterZero(cpu: Cpu, ad: number): boolean {
  const lo = getReg(cpu, RCX, ad);
  return lo === 0 && cpu.tHi === 0;
}

/**
 * INS/OUTS: one element per execution; with REP the instruction re-executes
 * (RIP points back at it) until rCX is 0, so every element is one retired step
 * and the run loop can look at events in between.
 */
function stringIo(isIn: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    const ad = i.adSize, z = accessSize(i), port = cpu.gpr[2 * RDX]! & 0xffff;
    if (i.rep && counterZero(cpu, ad)) return;
    checkIoPermission(cpu, port, z);
    const delta = cpu.rflags & DF ? -z : z;
    // The memory operand: ES:rDI for INS (not overridable), seg:rSI for OUTS.
    cpu.eaLo = getReg(cpu, isIn ? RDI : RSI, ad); cpu.eaHi = cpu.tHi;
    if (isIn ? cpu.codeSize !== 8 : i.segBase) addSegmentBase(cpu, isIn ? ES : i.seg);
    cpu.accessSeg = isIn ? ES : i.seg;
    // The I/O-permission #GP comes before the VM exit (SDM vol. 3C, 26.1.1), which reports the operand's address.
    if (cpu.nonRoot) cpu.virt.io(cpu, i, port, z, isIn, true);
    // The memory operand is checked before the port is touched (SDM vol. 3A, 5.3, 5.4).
    checkSegment(cpu, z, isIn);
    if (isIn) {
      cpu.mmu.checkWrite(cpu.eaLo, cpu.eaHi, z);
      cpu.mmu.write(cpu.eaLo, cpu.eaHi, z, cpu.io.read(port, z), 0);
      step(cpu, RDI, ad, delta);
    } else {
      cpu.io.write(port, z, cpu.mmu.read(cpu.eaLo, cpu.eaHi, z));
      step(cpu, RSI, ad, delta);
    }
    if (cpu.breakOnIo !== 0) noteIoAccess(cpu, port, z);
    if (i.rep) {
      step(cpu, RCX, ad, -1);
      if (!counterZero(cpu, ad)) repeatInstruction(cpu, i);
    }
  };
}


const def = (name: string, exec: OpDef['exec'], extra: Omit<OpDef, 'name' | 'exec'> = {}): OpDef =>
  ({ name, exec, ...extra });
// I/O ends a block: a port write can raise an interrupt or end the run.
const io = { ends: true } as const;

export const IO_TABLE: Record<number, Entry> = {
  0xe4: def('in', inAcc, { size: Sz.B, imm: Im.Ub, ...io }),
  0xe5: def('in', inAcc, { size: Sz.Z, imm: Im.Ub, ...io }),
  0xe6: def('out', outAcc, { size: Sz.B, imm: Im.Ub, ...io }),
  0xe7: def('out', outAcc, { size: Sz.Z, imm: Im.Ub, ...io }),
  0xec: def('in', inAcc, { size: Sz.B, ...io }),
  0xed: def('in', inAcc, { size: Sz.Z, ...io }),
  0xee: def('out', outAcc, { size: Sz.B, ...io }),
  0xef: def('out', outAcc, { size: Sz.Z, ...io }),
  0x6c: def('insb', stringIo(true), { size: Sz.B, ...io }),
  0x6d: def('ins', stringIo(true), { size: Sz.Z, ...io }),
  0x6e: def('outsb', stringIo(false), { size: Sz.B, ...io }),
  0x6f: def('outs', stringIo(false), { size: Sz.Z, ...io }),
};
