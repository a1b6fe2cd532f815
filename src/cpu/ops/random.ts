/**
 * RDRAND and RDSEED (SDM vol. 2, RDRAND, RDSEED; vol. 1, 7.3.17).
 *
 * The model is deterministic (DESIGN): both draw from one generator kept in
 * the processor (cpu.randomState), seeded from CpuOptions.randomSeed, never from
 * the host. The generator is xoshiro128** (four 32-bit words, 32 bits per step);
 * its state is filled from the seed by the splitmix32 sequence. Neither
 * instruction ever fails here: CF is always 1, as on a part whose entropy
 * source keeps up (the SDM lets software see CF = 0 and retry; it need not).
 */
import type { Cpu } from '../cpu.js';
import { hasFeature } from '../cpuid.js';
import { setStatusFlags } from '../flags.js';
import { OpMap, type Entry, type Insn, type OpDef } from '../insn.js';
import { setReg } from '../operands.js';
import { CF, STATUS_FLAGS, Vector } from '../regs.js';
import { Intercept } from '../virtualization.js';

const TWO = OpMap.TWO * 256;

/** Fills `state` from `seed` (splitmix32: a Weyl sequence through a 32-bit finalizer). */
export function seedRandom(state: Int32Array, seed: number): void {
  let x = seed | 0;
  for (let k = 0; k < 4; k++) {
    x = (x + 0x9e3779b9) | 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    state[k] = z ^ (z >>> 16);
  }
  // xoshiro must not start from all zeros.
  if ((state[0]! | state[1]! | state[2]! | state[3]!) === 0) state[0] = 1;
}

/** The next 32 random bits (xoshiro128**). */
export function nextRandom(state: Int32Array): number {
  const s0 = state[0]!, s1 = state[1]!, s2 = state[2]! ^ s0, s3 = state[3]! ^ s1;
  const m = Math.imul(s1, 5);
  const result = Math.imul((m << 7) | (m >>> 25), 9);
  state[0] = s0 ^ s3;
  state[1] = s1 ^ s2;
  state[2] = s2 ^ (s1 << 9);
  state[3] = (s3 << 11) | (s3 >>> 21);
  return result;
}

/**
 * RDRAND r16/r32/r64 (NFx 0F C7 /6) and RDSEED (NFx 0F C7 /7): the register
 * gets a random value, CF = 1, OF SF ZF AF PF = 0. #UD when CPUID does not
 * announce the instruction; in non-root operation "RDRAND exiting" / "RDSEED
 * exiting" make it a VM exit (SDM vol. 3C, 26.1.3).
 */
function random(seed: boolean): (cpu: Cpu, i: Insn) => void {
  const feature = seed ? 'rdseed' : 'rdrand', what = seed ? Intercept.RDSEED : Intercept.RDRAND;
  return (cpu, i) => {
    if (!hasFeature(cpu, feature)) cpu.raise(Vector.UD);
    if (cpu.nonRoot && cpu.virt.intercept(cpu, i, what)) return;
    const s = cpu.randomState;
    const lo = nextRandom(s), hi = i.opSize === 8 ? nextRandom(s) : 0;
    setReg(cpu, i.rm, i.opSize, lo, hi);
    setStatusFlags(cpu, STATUS_FLAGS, CF);
  };
}

const def = (name: string, exec: OpDef['exec']): OpDef => ({ name, exec, modrm: true });
/** A register form with no mandatory prefix; 66h is its operand-size prefix (NFx: F2/F3 are other instructions). */
const nfx = (d: OpDef): Entry => ({ reg: { prefixed: [d, d] } });

export const RANDOM_TABLE: Record<number, Entry> = {
  // Group 9 register forms; the memory forms of slots 6 and 7 are VMX instructions (ops/vmx.ts).
  [TWO + 0xc7]: {
    group: [undefined, undefined, undefined, undefined, undefined, undefined,
      nfx(def('rdrand', random(false))), nfx(def('rdseed', random(true)))],
  },
};
