import { describe, expect, it } from 'vitest';
import { Cpu } from '../cpu.js';
import { runFragment } from '../testing.js';
import { AF, CF, OF, PF, RAX, RBX, R9, SF, ZF } from '../regs.js';
import { nextRandom, seedRandom } from './random.js';

const RDRAND_EAX = [0x0f, 0xc7, 0xf0], RDSEED_EAX = [0x0f, 0xc7, 0xf8];
const GARBAGE = 0xdead_beef_dead_beefn;
const UD = { kind: 'exception', vector: 6, errorCode: null };
const ARITH = CF | PF | AF | ZF | SF | OF;

/** The 32-bit draws a processor seeded with `seed` makes, in order. */
function draws(seed: number, n: number): number[] {
  const s = new Int32Array(4);
  seedRandom(s, seed);
  return Array.from({ length: n }, () => nextRandom(s) >>> 0);
}

describe('the generator (xoshiro128**, seeded by splitmix32)', () => {
  it('gives the reference sequence of xoshiro128** from the state 1, 2, 3, 4', () => {
    const s = Int32Array.of(1, 2, 3, 4);
    const out = Array.from({ length: 6 }, () => nextRandom(s) >>> 0);
    expect(out).toEqual([11520, 0, 5927040, 70819200, 2031721883, 1637235492]);
  });

  it('a processor is seeded from CpuOptions.randomSeed (default 0): same seed, same numbers', () => {
    const a = new Cpu({ memorySize: 1 << 20 }), b = new Cpu({ memorySize: 1 << 20, randomSeed: 0 });
    const c = new Cpu({ memorySize: 1 << 20, randomSeed: 7 });
    expect(Array.from(a.randomState)).toEqual(Array.from(b.randomState));
    expect(Array.from(a.randomState)).not.toEqual(Array.from(c.randomState));
    expect(Array.from(a.randomState).some((w) => w !== 0)).toBe(true);
  });
});

describe('RDRAND/RDSEED (SDM vol. 2, RDRAND, RDSEED; vol. 1, 7.3.17)', () => {
  it('RDRAND r32 loads the next draw, clears bits 63:32, sets CF and clears OF SF ZF AF PF', () => {
    const { cpu, stop } = runFragment(RDRAND_EAX, { rflags: ZF | SF | OF | AF | PF, setup: (c) => c.setReg64(RAX, GARBAGE) });
    expect(stop.kind).toBe('halt');
    expect(cpu.reg64(RAX)).toBe(BigInt(draws(0, 1)[0]!));
    expect(cpu.rflags & ARITH).toBe(CF);
  });

  it('RDRAND r64 takes two draws (bits 31:0 first); r16 one, keeping bits 63:16', () => {
    const [d0, d1] = draws(0, 2);
    const r64 = runFragment([0x49, 0x0f, 0xc7, 0xf1]); // rdrand r9
    expect(r64.cpu.reg64(R9)).toBe(BigInt(d1!) << 32n | BigInt(d0!));
    const r16 = runFragment([0x66, 0x0f, 0xc7, 0xf3], { setup: (c) => c.setReg64(RBX, GARBAGE) }); // rdrand bx
    expect(r16.cpu.reg64(RBX)).toBe(GARBAGE & ~0xffffn | BigInt(d0! & 0xffff));
  });

  it('RDRAND and RDSEED draw from the one stream, in order', () => {
    const { cpu } = runFragment([...RDRAND_EAX, ...RDSEED_EAX]);
    expect(cpu.reg64(RAX)).toBe(BigInt(draws(0, 2)[1]!));
    expect(cpu.rflags & ARITH).toBe(CF);
  });

  it('another seed gives other numbers; the same seed the same ones', () => {
    const seeded = (seed: number): bigint =>
      runFragment(RDSEED_EAX, { setup: (c) => seedRandom(c.randomState, seed) }).cpu.reg64(RAX);
    expect(seeded(42)).toBe(BigInt(draws(42, 1)[0]!));
    expect(seeded(42)).toBe(seeded(42));
    expect(seeded(42)).not.toBe(seeded(43));
  });

  it('work in 32-bit mode and at CPL 3', () => {
    expect(runFragment(RDRAND_EAX, { mode: 32 }).cpu.reg64(RAX)).toBe(BigInt(draws(0, 1)[0]!));
    // At CPL 3 the HLT behind it would fault: stop after the RDSEED.
    const user = runFragment(RDSEED_EAX, { budget: 1, setup: (c) => { c.cpl = 3; } });
    expect(user.stop.kind).toBe('budget');
    expect(user.cpu.rflags & CF).toBe(CF);
  });

  it('F2 and F3 prefixes make other instructions (#UD here); LOCK raises #UD', () => {
    for (const code of [RDRAND_EAX, RDSEED_EAX]) {
      for (const p of [0xf2, 0xf3, 0xf0]) expect(runFragment([p, ...code]).stop).toEqual(UD);
    }
  });
});
