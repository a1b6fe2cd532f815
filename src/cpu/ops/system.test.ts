import { describe, expect, it } from 'vitest';
import { runFragment } from '../testing.js';
import { RAX, RCX, RDX, RSI } from '../regs.js';

const RDTSC = [0x0f, 0x31];
const RDTSCP = [0x0f, 0x01, 0xf9];
const GARBAGE = 0xdead_beef_dead_beefn;

describe('RDTSC/RDTSCP (SDM vol. 2, RDTSC, RDTSCP; TSC = instructions retired + offset)', () => {
  it('rdtsc as the first instruction reads 0 into EDX:EAX and clears bits 63:32 of RAX and RDX', () => {
    const { cpu, stop } = runFragment(RDTSC, {
      setup: (c) => { c.setReg64(RAX, GARBAGE); c.setReg64(RDX, GARBAGE); },
    });
    expect(stop.kind).toBe('halt');
    expect(cpu.reg64(RAX)).toBe(0n);
    expect(cpu.reg64(RDX)).toBe(0n);
  });

  it('equals the instruction count and increases with it', () => {
    // rdtsc; mov esi, eax; mov ecx, 10; L: dec ecx; jnz L; rdtsc
    // (each rdtsc begins a straight-line block, where the run loop's count is exact)
    const { cpu, stop } = runFragment([...RDTSC, 0x89, 0xc6, 0xb9, 10, 0, 0, 0, 0xff, 0xc9, 0x75, 0xfc, ...RDTSC]);
    expect(stop.kind).toBe('halt');
    expect(cpu.reg64(RSI)).toBe(0n);
    expect(cpu.reg64(RAX)).toBe(3n + 2n * 10n);
    expect(cpu.reg64(RDX)).toBe(0n);
  });

  it('splits a TSC above 2^32 into EDX:EAX, adding the TSC offset', () => {
    const { cpu } = runFragment(RDTSC, { setup: (c) => { c.insnCount = 0x1_2345_6789; c.tscOffset = 0x3_0000_0001; } });
    expect(cpu.reg64(RAX)).toBe(0x2345_678an);
    expect(cpu.reg64(RDX)).toBe(4n);
  });

  it('wraps modulo 2^64 when the offset is negative', () => {
    const { cpu } = runFragment(RDTSC, { setup: (c) => { c.insnCount = 5; c.tscOffset = -6; } });
    expect(cpu.reg64(RAX)).toBe(0xffff_ffffn);
    expect(cpu.reg64(RDX)).toBe(0xffff_ffffn);
  });

  it('rdtscp reads the TSC and loads ECX with IA32_TSC_AUX (0 until MSRs exist)', () => {
    const { cpu, stop } = runFragment(RDTSCP, {
      setup: (c) => { c.insnCount = 1000; c.setReg64(RAX, GARBAGE); c.setReg64(RCX, GARBAGE); c.setReg64(RDX, GARBAGE); },
    });
    expect(stop.kind).toBe('halt');
    expect(cpu.reg64(RAX)).toBe(1000n);
    expect(cpu.reg64(RDX)).toBe(0n);
    expect(cpu.reg64(RCX)).toBe(0n);
  });

  it('rdtsc works in 32-bit mode', () => {
    const { cpu } = runFragment(RDTSC, { mode: 32, setup: (c) => { c.tscOffset = 0x1_0000_0007; } });
    expect(cpu.reg64(RAX)).toBe(7n);
    expect(cpu.reg64(RDX)).toBe(1n);
  });

  it('CR4.TSD = 1 with CPL > 0 raises #GP(0); with CPL 0 it reads the TSC', () => {
    for (const code of [RDTSC, RDTSCP]) {
      const user = runFragment(code, { setup: (c) => { c.cr4 |= 1 << 2; c.cpl = 3; c.setReg64(RAX, GARBAGE); } });
      expect(user.stop).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
      expect(user.cpu.reg64(RAX)).toBe(GARBAGE);
      const kernel = runFragment(code, { setup: (c) => { c.cr4 |= 1 << 2; c.tscOffset = 9; } });
      expect(kernel.stop.kind).toBe('halt');
      expect(kernel.cpu.reg64(RAX)).toBe(9n);
    }
  });
});

describe('RDTSC inside a block counts the instructions before it exactly', () => {
  // mov ecx, 100; L: nop; nop; nop; rdtsc; dec ecx; jnz L (rel8 -9).
  // The loop block is interpreted at first and compiled after 32 entries.
  const code = [0xb9, 100, 0, 0, 0, 0x90, 0x90, 0x90, 0x0f, 0x31, 0xff, 0xc9, 0x75, 0xf7];

  it('iteration k reads 1 + 6k + 3 (SDM vol. 2, RDTSC; DESIGN: time is the instruction count)', () => {
    // Stop right after the RDTSC of iteration k: 1 + 6k + 4 instructions retired.
    for (const k of [0, 1, 40, 99]) {
      const { cpu, stop } = runFragment(code, { budget: 1 + 6 * k + 4 });
      expect(stop.kind).toBe('budget');
      expect(cpu.gpr[RAX]).toBe(1 + 6 * k + 3);
    }
  });

  it('the last iteration reads the same when the whole loop runs compiled', () => {
    const { cpu, stop } = runFragment(code, { budget: 10_000 });
    expect(stop.kind).toBe('halt');
    expect(cpu.gpr[RAX]).toBe(1 + 6 * 99 + 3);
    expect(cpu.insnCount).toBe(1 + 6 * 100 + 1);
  });
});
