/**
 * System instructions: RDTSC, RDTSCP (SDM vol. 2, each instruction's page).
 *
 * The time-stamp counter is deterministic: it advances with the instructions
 * retired, never with the host clock (DESIGN): TSC = instructions retired before
 * the RDTSC + tscOffset.
 */
import type { Cpu } from '../cpu.js';
import { OpMap, type Entry, type OpDef } from '../insn.js';
import { setReg } from '../operands.js';
import { RAX, RCX, RDX, Vector } from '../regs.js';

const TWO = OpMap.TWO * 256;
const CR4_TSD = 1 << 2;

/** EDX:EAX ← TSC; a 32-bit write each, so bits 63:32 of RAX and RDX clear. */
function rdtsc(cpu: Cpu): void {
  // SDM vol. 2, RDTSC/RDTSCP: CR4.TSD = 1 and CPL > 0 → #GP(0).
  if (cpu.cr4 & CR4_TSD && cpu.cpl > 0) cpu.raise(Vector.GP, 0);
  const tsc = cpu.retired + cpu.tscOffset;
  // The counter is 64 bits wide and wraps; the halves hold it modulo 2^64.
  const hi = Math.floor(tsc / 2 ** 32);
  setReg(cpu, RAX, 4, (tsc - hi * 2 ** 32) | 0, 0);
  setReg(cpu, RDX, 4, hi | 0, 0);
}

/**
 * RDTSCP also loads ECX with IA32_TSC_AUX. That MSR arrives with the MSR work;
 * until then it reads as its reset value, 0.
 */
function rdtscp(cpu: Cpu): void {
  rdtsc(cpu);
  setReg(cpu, RCX, 4, 0, 0);
}

const def = (name: string, exec: OpDef['exec']): OpDef => ({ name, exec });

export const SYSTEM_TABLE: Record<number, Entry> = {
  [TWO + 0x31]: def('rdtsc', rdtsc),
  // 0F 01 F9: group 7, mod = 11b, reg = 7, rm = 1.
  [TWO + 0x01]: {
    group: [undefined, undefined, undefined, undefined, undefined, undefined, undefined,
      { reg: { rm: [undefined, def('rdtscp', rdtscp)] } }],
  },
};
