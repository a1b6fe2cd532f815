/**
 * Instruction classes for the cost model: I/O (IN, OUT, INS, OUTS); privileged
 * (the system instructions of SDM vol. 3A 2.8 "System Instruction Summary":
 * descriptor-table and task registers, MOV CR/DR, LMSW/SMSW, CLTS, INVD,
 * WBINVD, INVLPG, INVPCID, HLT, RDMSR/WRMSR, RDPMC, RDTSC(P), SYSCALL/SYSRET,
 * SYSENTER/SYSEXIT, SWAPGS, XSETBV, XSAVES/XRSTORS, MONITOR/MWAIT; and the
 * instructions that change the interrupt flag or go through the IDT: CLI, STI,
 * IRET, INT n); memory (an explicit memory operand, or a string instruction);
 * ordinary (the rest). Counted per block executed, with no work per
 * instruction, only when `cpu.classCounts` is set.
 */
import type { Insn } from './insn.js';

export const InsnClass = { ORDINARY: 0, MEMORY: 1, PRIVILEGED: 2, IO: 3 } as const;
export const INSN_CLASSES = ['ordinary', 'memory', 'privileged', 'io'] as const;

const IO = new Set(['in', 'out', 'ins', 'insb', 'outs', 'outsb']);
const PRIVILEGED = new Set([
  'lgdt', 'lidt', 'lldt', 'ltr', 'sgdt', 'sidt', 'sldt', 'str', 'lmsw', 'smsw', 'clts', 'invd', 'wbinvd', 'invlpg',
  'invpcid', 'hlt', 'rdmsr', 'wrmsr', 'rdpmc', 'rdtsc', 'rdtscp', 'syscall', 'sysret', 'sysenter', 'sysexit', 'swapgs',
  'xsetbv', 'xsaves', 'xrstors', 'monitor', 'mwait', 'cli', 'sti', 'iret', 'int', 'int1', 'int3', 'into',
]);
const STRING = new Set(['movs', 'cmps', 'stos', 'lods', 'scas']);
/** MOV to/from CR and DR: 0F 20-23 (the opcode as map * 256 + byte). */
const MOV_CR_DR_FIRST = 0x120, MOV_CR_DR_LAST = 0x123;

export function insnClass(i: Insn): number {
  const name = i.def.name;
  if (IO.has(name)) return InsnClass.IO;
  if (PRIVILEGED.has(name) || (i.opcode >= MOV_CR_DR_FIRST && i.opcode <= MOV_CR_DR_LAST)) return InsnClass.PRIVILEGED;
  if (!i.isReg || STRING.has(name)) return InsnClass.MEMORY;
  return InsnClass.ORDINARY;
}

/** Counts by class of the first k instructions, for every k: 4 numbers per k (k = 0 .. n). */
export function classPrefix(insns: readonly Insn[]): Int32Array {
  const p = new Int32Array(4 * (insns.length + 1));
  for (let k = 0; k < insns.length; k++) {
    for (let c = 0; c < 4; c++) p[4 * (k + 1) + c] = p[4 * k + c]!;
    p[4 * (k + 1) + insnClass(insns[k]!)]!++;
  }
  return p;
}
