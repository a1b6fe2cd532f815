import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { costCountsArbitrary, costProfileArbitrary, EXIT_REASON_NAMES, FLUSH_CAUSES } from './arbitraries.js';
import { addCounts, countProblems, emptyCounts, namedNumbers, totalExits } from './counts.js';

describe('costCountsArbitrary', () => {
  it('gives whole counts ≥ 0 up to maxCount, with known exit reasons and flush causes', () => {
    fc.assert(
      fc.property(costCountsArbitrary({ maxCount: 50 }), (c) => {
        expect(countProblems(c)).toEqual([]);
        expect(namedNumbers(c).every(([, n]) => n <= 50)).toBe(true);
        for (const reason of Object.keys(c.exits)) expect(EXIT_REASON_NAMES).toContain(reason);
        for (const cause of Object.keys(c.tlbFlushes)) expect(FLUSH_CAUSES).toContain(cause);
        expect(c.phases).toBeUndefined();
      }),
    );
  });

  it('gives bare runs no hardware-assist work', () => {
    fc.assert(
      fc.property(costCountsArbitrary({ shape: 'bare' }), (c) => {
        expect(totalExits(c) + c.entries + c.vmreads + c.vmwrites + c.deviceOps + c.injections + c.eptWalks + c.eptReferences).toBe(0);
        expect(Object.values(c.shadow).every((n) => n === 0)).toBe(true);
        expect(Object.keys(c.tlbFlushes).filter((k) => ['invept', 'invvpid', 'vmTransition'].includes(k))).toEqual([]);
      }),
    );
  });

  it('gives EPT runs no shadow work and shadow runs no EPT walks', () => {
    fc.assert(
      fc.property(costCountsArbitrary({ shape: 'ept' }), costCountsArbitrary({ shape: 'shadow' }), (ept, shadow) => {
        expect(Object.values(ept.shadow).every((n) => n === 0)).toBe(true);
        expect(shadow.eptWalks + shadow.eptReferences).toBe(0);
      }),
    );
  });

  it('gives counts that are the sum of their phases when asked for phases', () => {
    fc.assert(
      fc.property(costCountsArbitrary({ phases: true }), (c) => {
        const phases = Object.values(c.phases ?? {});
        expect(phases.length).toBeGreaterThanOrEqual(1);
        const { phases: _, ...whole } = c;
        expect(phases.reduce((sum, p) => addCounts(sum, p), emptyCounts())).toEqual(whole);
      }),
    );
  });

  it('reaches non-zero values for every field (so that properties over it test something)', () => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(costCountsArbitrary(), (c) => {
        for (const [name, n] of namedNumbers(c)) if (n > 0) seen.add(name.startsWith('exits.') ? 'exits' : name.startsWith('tlbFlushes.') ? 'tlbFlushes' : name);
      }),
      { numRuns: 200 },
    );
    expect(seen.size).toBe(20);
  });
});

describe('costProfileArbitrary', () => {
  it('gives prices that are whole and ≥ 0, with the round trip split into exit and entry', () => {
    fc.assert(
      fc.property(costProfileArbitrary(), (p) => {
        const { instruction, shadow, ...flat } = p.prices;
        for (const n of [...Object.values(flat), ...Object.values(instruction), ...Object.values(shadow)]) {
          expect(Number.isInteger(n) && n >= 0).toBe(true);
        }
        expect(p.prices.roundTrip).toBe(p.prices.vmEntry + p.prices.vmExit);
        expect(p.name).toMatch(/^[a-z][a-z0-9]*$/);
        expect(p.clockGHz).toBeGreaterThan(0);
      }),
    );
  });
});
