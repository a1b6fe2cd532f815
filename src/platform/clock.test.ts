import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Clock, NS_PER_INSTRUCTION, tickTime, ticksAt } from './clock.js';

/** Exact reference: floor(ns * hz / 1e9) and ceil(tick * 1e9 / hz) in BigInt. */
const refTicks = (ns: number, hz: number): number => Number((BigInt(ns) * BigInt(hz)) / 1_000_000_000n);
const refTime = (tick: number, hz: number): number =>
  Number((BigInt(tick) * 1_000_000_000n + BigInt(hz) - 1n) / BigInt(hz));

describe('Clock (DESIGN "Determinism": guest time = instructions retired)', () => {
  it('runs at 1 ns per instruction, plus time skipped while halted', () => {
    let insns = 0;
    const clock = new Clock(() => insns);
    expect(NS_PER_INSTRUCTION).toBe(1);
    insns = 12345;
    expect(clock.ns()).toBe(12345);
    clock.skipTo(20000);
    expect(clock.ns()).toBe(20000);
    clock.skipTo(100); // never backwards
    expect(clock.ns()).toBe(20000);
    insns = 12346;
    expect(clock.ns()).toBe(20001);
  });

  it('converts between ns and oscillator ticks exactly (PIT 1.193182 MHz, RTC 32.768 kHz)', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 50 }), fc.constantFrom(1_193_182, 32768), (ns, hz) => {
      expect(ticksAt(ns, hz)).toBe(refTicks(ns, hz));
      const tick = refTicks(ns, hz);
      expect(tickTime(tick, hz)).toBe(refTime(tick, hz));
      expect(ticksAt(tickTime(tick, hz), hz)).toBe(tick);
      if (tickTime(tick, hz) > 0) expect(ticksAt(tickTime(tick, hz) - 1, hz)).toBe(tick - 1);
    }), { numRuns: 500 });
  });

  it('fires due timers in deadline order, ties in creation order, and reports the next deadline', () => {
    let insns = 0;
    const clock = new Clock(() => insns);
    const fired: string[] = [];
    const a = clock.timer((d) => fired.push(`a@${d}`));
    const b = clock.timer((d) => fired.push(`b@${d}`));
    const c = clock.timer((d) => fired.push(`c@${d}`));
    expect(clock.nextDeadline()).toBe(Infinity);
    c.set(50); b.set(100); a.set(100);
    expect(clock.nextDeadline()).toBe(50);
    insns = 99;
    clock.runDue();
    expect(fired).toEqual(['c@50']);
    expect(clock.nextDeadline()).toBe(100);
    insns = 100;
    clock.runDue();
    expect(fired).toEqual(['c@50', 'a@100', 'b@100']);
    expect(clock.nextDeadline()).toBe(Infinity);
  });

  it('lets a periodic timer re-arm itself and catches up deterministically', () => {
    let insns = 0;
    const clock = new Clock(() => insns);
    const seen: number[] = [];
    const t = clock.timer((d) => { seen.push(d); t.set(d + 30); });
    t.set(30);
    insns = 100;
    clock.runDue();
    expect(seen).toEqual([30, 60, 90]);
    expect(clock.nextDeadline()).toBe(120);
    t.cancel();
    expect(clock.nextDeadline()).toBe(Infinity);
  });

  it('stops with an error when a timer re-arms itself in the past (would never return)', () => {
    const clock = new Clock(() => 10);
    const t = clock.timer((d) => t.set(d));
    t.set(5);
    expect(() => clock.runDue()).toThrow(/re-armed/);
  });
});
