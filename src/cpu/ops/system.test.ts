import { describe, expect, it } from 'vitest';
import { runFragment } from '../testing.js';
import type { Cpu } from '../cpu.js';
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

  it('rdtscp reads the TSC and loads ECX with IA32_TSC_AUX[31:0], clearing bits 63:32 of RCX', () => {
    const { cpu, stop } = runFragment(RDTSCP, {
      setup: (c) => {
        c.insnCount = 1000; c.msrs.tscAux = 0x8000_0007 | 0;
        c.setReg64(RAX, GARBAGE); c.setReg64(RCX, GARBAGE); c.setReg64(RDX, GARBAGE);
      },
    });
    expect(stop.kind).toBe('halt');
    expect(cpu.reg64(RAX)).toBe(1000n);
    expect(cpu.reg64(RDX)).toBe(0n);
    expect(cpu.reg64(RCX)).toBe(0x8000_0007n);
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

const XGETBV = [0x0f, 0x01, 0xd0], XSETBV = [0x0f, 0x01, 0xd1];
const OSXSAVE = 1 << 18;
const GP0 = { kind: 'exception', vector: 13, errorCode: 0 };
const UD = { kind: 'exception', vector: 6, errorCode: null };

function xcr(code: number[], ecx: bigint, value: bigint, more?: (c: Cpu) => void) {
  return runFragment(code, {
    setup: (c) => {
      c.cr4 |= OSXSAVE;
      c.setReg64(RCX, ecx); c.setReg64(RAX, GARBAGE & ~0xffff_ffffn | (value & 0xffff_ffffn)); c.setReg64(RDX, value >> 32n);
      more?.(c);
    },
  });
}

describe('XGETBV/XSETBV (SDM vol. 2, XGETBV, XSETBV; vol. 1, 13.3)', () => {
  it('XCR0 resets to 1 (x87); XSETBV 3 enables SSE state; XGETBV reads it into EDX:EAX', () => {
    expect(xcr(XGETBV, 0n, 0n).cpu.reg64(RAX)).toBe(1n);
    const { cpu, stop } = xcr([...XSETBV, ...XGETBV], 0n, 3n);
    expect(stop.kind).toBe('halt');
    expect(cpu.msrs.xcr0).toBe(3);
    expect([cpu.reg64(RAX), cpu.reg64(RDX)]).toEqual([3n, 0n]);
  });

  it('both raise #UD while CR4.OSXSAVE = 0, and with a 66, F2 or F3 prefix (NP 0F 01 D0/D1)', () => {
    for (const code of [XGETBV, XSETBV]) {
      expect(xcr(code, 0n, 1n, (c) => { c.cr4 &= ~OSXSAVE; }).stop).toEqual(UD);
      for (const p of [0x66, 0xf2, 0xf3]) expect(xcr([p, ...code], 0n, 1n).stop).toEqual(UD);
    }
  });

  it('XSETBV raises #GP(0) at CPL > 0, for ECX != 0, XCR0[0] = 0, unsupported bits, and XCR0[2:1] = 10b', () => {
    expect(xcr(XSETBV, 0n, 3n, (c) => { c.cpl = 3; }).stop).toEqual(GP0);
    expect(xcr(XSETBV, 1n, 1n).stop).toEqual(GP0);
    for (const v of [0n, 2n, 5n, 7n, 0x1_0000_0001n, 0x8000_0001n]) {
      const r = xcr(XSETBV, 0n, v);
      expect(r.stop, v.toString(16)).toEqual(GP0);
      expect(r.cpu.msrs.xcr0).toBe(1);
    }
  });

  it('XGETBV works at any CPL; ECX = 1 reads XCR0 AND XINUSE; other ECX values raise #GP(0)', () => {
    // At CPL 3 the HLT behind it would fault: stop after the XGETBV.
    const user = runFragment(XGETBV, { budget: 1, setup: (c) => { c.cr4 |= OSXSAVE; c.cpl = 3; c.setReg64(RCX, 0n); } });
    expect(user.stop.kind).toBe('budget');
    expect(user.cpu.reg64(RAX)).toBe(1n);
    // XINUSE: x87 differs from its initial state (FCW 0040H after power-up); XMM all 0.
    const r = xcr(XGETBV, 1n, 0n, (c) => { c.msrs.xcr0 = 3; });
    expect(r.cpu.reg64(RAX)).toBe(1n);
    const sse = xcr(XGETBV, 1n, 0n, (c) => { c.msrs.xcr0 = 3; c.xmm[63] = 1; c.msrs.x87.initialize(); });
    expect(sse.cpu.reg64(RAX)).toBe(2n);
    expect(xcr(XGETBV, 2n, 0n).stop).toEqual(GP0);
    expect(xcr(XGETBV, 0x1_0000_0000n, 0n).cpu.reg64(RAX)).toBe(1n); // RCX bits 63:32 are ignored
  });
});

describe('RDPMC (SDM vol. 2, RDPMC)', () => {
  const RDPMC = [0x0f, 0x33];
  it('reads the selected counter into EDX:EAX; CPL > 0 needs CR4.PCE', () => {
    const setup = (c: Cpu): void => { c.msrs.pmc[2] = 0x1234; c.msrs.pmc[3] = 0x56; c.setReg64(RCX, 1n); };
    const { cpu } = runFragment(RDPMC, { setup });
    expect([cpu.reg64(RAX), cpu.reg64(RDX)]).toEqual([0x1234n, 0x56n]);
    expect(runFragment(RDPMC, { setup: (c) => { setup(c); c.cpl = 3; } }).stop).toEqual(GP0);
    const user = runFragment(RDPMC, { budget: 1, setup: (c) => { setup(c); c.cpl = 3; c.cr4 |= 1 << 8; } });
    expect(user.stop.kind).toBe('budget');
    expect(user.cpu.reg64(RAX)).toBe(0x1234n);
  });

  it('ECX[30] selects a fixed counter', () => {
    const { cpu } = runFragment(RDPMC, { setup: (c) => { c.msrs.fixedCtr[4] = 99; c.setReg64(RCX, 0x4000_0002n); } });
    expect(cpu.reg64(RAX)).toBe(99n);
  });
});

describe('MONITOR/MWAIT (SDM vol. 2, MONITOR, MWAIT; CPUID leaf 05H)', () => {
  const MONITOR = [0x0f, 0x01, 0xc8], MWAIT = [0x0f, 0x01, 0xc9];
  const at = (rax: bigint, more?: (c: Cpu) => void) => (c: Cpu): void => {
    c.setReg64(RAX, rax); c.setReg64(RCX, 0n); c.setReg64(RDX, GARBAGE); more?.(c);
  };

  it('MONITOR arms the monitor at the 64-byte line of DS:RAX; EDX hints are ignored', () => {
    const { cpu, stop } = runFragment(MONITOR, { setup: at(0x1_2345_6789n) });
    expect(stop.kind).toBe('halt');
    expect(cpu.monitorArmed).toBe(true);
    expect([cpu.monitorLo >>> 0, cpu.monitorHi]).toEqual([0x2345_6780, 1]);
  });

  it('takes rAX at the address size: EAX with a 67h prefix in 64-bit mode, AX in 32-bit code', () => {
    const { cpu } = runFragment([0x67, ...MONITOR], { setup: at(0xffff_ffff_0000_1000n) });
    expect([cpu.monitorLo, cpu.monitorHi]).toEqual([0x1000, 0]);
    const ax = runFragment([0x67, ...MONITOR], { mode: 32, setup: at(0x1_2345n) });
    expect(ax.cpu.monitorLo).toBe(0x2340);
  });

  it('adds the DS base outside 64-bit mode', () => {
    const { cpu } = runFragment(MONITOR, { mode: 32, setup: at(0x1000n, (c) => { c.segBase[2 * 3] = 0x20000; }) });
    expect(cpu.monitorLo).toBe(0x21000);
  });

  it('is checked like a byte load: a non-canonical address raises #GP(0) and arms nothing', () => {
    const r = runFragment(MONITOR, { setup: at(0x0000_8000_0000_0000n) });
    expect(r.stop).toEqual(GP0);
    expect(r.cpu.monitorArmed).toBe(false);
  });

  it('MONITOR raises #GP(0) for any ECX extension (RCX in 64-bit mode; ECX only elsewhere)', () => {
    expect(runFragment(MONITOR, { setup: at(0x1000n, (c) => c.setReg64(RCX, 1n)) }).stop).toEqual(GP0);
    expect(runFragment(MONITOR, { setup: at(0x1000n, (c) => c.setReg64(RCX, 1n << 32n)) }).stop).toEqual(GP0);
    expect(runFragment(MONITOR, { mode: 32, setup: at(0x1000n, (c) => c.setReg64(RCX, 1n << 32n)) }).stop.kind).toBe('halt');
  });

  it('MWAIT returns at once and disarms the monitor; ECX[0] (interrupt break-event) is allowed, other bits raise #GP(0)', () => {
    const { cpu, stop } = runFragment([...MONITOR, ...MWAIT], { setup: at(0x1000n, (c) => { c.setReg64(RAX, 0x1000n); }) });
    expect(stop.kind).toBe('halt');
    expect(cpu.monitorArmed).toBe(false);
    expect(cpu.rip).toBe(0x1000n + 7n); // after the HLT behind the MWAIT
    expect(runFragment(MWAIT, { setup: (c) => c.setReg64(RCX, 1n) }).stop.kind).toBe('halt');
    for (const rcx of [2n, 0x8000_0000n, 1n << 32n]) {
      expect(runFragment(MWAIT, { setup: (c) => c.setReg64(RCX, rcx) }).stop, rcx.toString(16)).toEqual(GP0);
    }
    expect(runFragment(MWAIT, { mode: 32, setup: (c) => c.setReg64(RCX, 1n << 32n) }).stop.kind).toBe('halt');
  });

  it('both raise #UD at CPL > 0, with IA32_MISC_ENABLE[18] = 0, and with a 66, F2 or F3 prefix', () => {
    for (const code of [MONITOR, MWAIT]) {
      expect(runFragment(code, { setup: at(0x1000n, (c) => { c.cpl = 3; }) }).stop).toEqual(UD);
      expect(runFragment(code, { setup: at(0x1000n, (c) => { c.msrs.miscEnableLo &= ~(1 << 18); }) }).stop).toEqual(UD);
      for (const p of [0x66, 0xf2, 0xf3]) expect(runFragment([p, ...code], { setup: at(0x1000n) }).stop).toEqual(UD);
    }
  });
});
