import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { costCountsArbitrary } from './arbitraries.js';
import { addCounts, countProblems, emptyCounts, namedNumbers, totalExits, type CostCounts } from './counts.js';

/** Counts with a few fields set, the rest 0. */
function counts(patch: Partial<CostCounts>): CostCounts {
  return { ...emptyCounts(), ...patch };
}

describe('emptyCounts', () => {
  it('has every number at 0, no exits, no flushes and no phases', () => {
    const c = emptyCounts();
    expect(namedNumbers(c).every(([, n]) => n === 0)).toBe(true);
    expect(namedNumbers(c)).toHaveLength(18);
    expect(c.exits).toEqual({});
    expect(c.tlbFlushes).toEqual({});
    expect(c.phases).toBeUndefined();
  });

  it('returns a fresh object each time', () => {
    const a = emptyCounts();
    a.instructions.ordinary = 5;
    a.exits.CPUID = 1;
    expect(emptyCounts().instructions.ordinary).toBe(0);
    expect(emptyCounts().exits).toEqual({});
  });
});

describe('addCounts', () => {
  it('adds numbers, exit reasons and flush causes key by key', () => {
    const a = counts({
      instructions: { ordinary: 1, memory: 2, privileged: 3, io: 4 },
      exits: { CPUID: 2, HLT: 1 },
      tlbFlushes: { cr3: 5 },
      shadow: { hiddenFaults: 1, pteWrites: 2, cr3Switches: 3, entriesBuilt: 4 },
      entries: 3,
    });
    const b = counts({
      instructions: { ordinary: 10, memory: 20, privileged: 30, io: 40 },
      exits: { CPUID: 1, IO_INSTRUCTION: 7 },
      tlbFlushes: { cr3: 1, invlpg: 2 },
      shadow: { hiddenFaults: 10, pteWrites: 0, cr3Switches: 0, entriesBuilt: 1 },
      entries: 8,
      walkReferences: 9,
    });
    const sum = addCounts(a, b);
    expect(sum.instructions).toEqual({ ordinary: 11, memory: 22, privileged: 33, io: 44 });
    expect(sum.exits).toEqual({ CPUID: 3, HLT: 1, IO_INSTRUCTION: 7 });
    expect(sum.tlbFlushes).toEqual({ cr3: 6, invlpg: 2 });
    expect(sum.shadow).toEqual({ hiddenFaults: 11, pteWrites: 2, cr3Switches: 3, entriesBuilt: 5 });
    expect(sum.entries).toBe(11);
    expect(sum.walkReferences).toBe(9);
    expect(sum.phases).toBeUndefined();
  });

  it('adds phases phase by phase, keeping phases only one side has', () => {
    const a = counts({ phases: { 0: counts({ entries: 1 }), 1: counts({ entries: 2 }) } });
    const b = counts({ phases: { 1: counts({ entries: 10 }), 2: counts({ entries: 20 }) } });
    const sum = addCounts(a, b);
    expect(Object.keys(sum.phases ?? {})).toEqual(['0', '1', '2']);
    expect(sum.phases?.[0]?.entries).toBe(1);
    expect(sum.phases?.[1]?.entries).toBe(12);
    expect(sum.phases?.[2]?.entries).toBe(20);
    expect(addCounts(a, emptyCounts()).phases).toEqual(a.phases);
  });

  it('leaves its inputs unchanged', () => {
    const a = counts({ exits: { CPUID: 1 } });
    addCounts(a, counts({ exits: { CPUID: 5 } }));
    expect(a.exits).toEqual({ CPUID: 1 });
  });

  it('has emptyCounts as identity and is commutative (properties)', () => {
    fc.assert(
      fc.property(costCountsArbitrary({ phases: true }), costCountsArbitrary(), (a, b) => {
        expect(addCounts(a, emptyCounts())).toEqual(a);
        expect(addCounts(a, b)).toEqual(addCounts(b, a));
      }),
    );
  });

  it('adds every number (property): each named number of the sum is the sum of the named numbers', () => {
    fc.assert(
      fc.property(costCountsArbitrary(), costCountsArbitrary(), (a, b) => {
        const named = new Map(namedNumbers(addCounts(a, b)));
        const expected = new Map<string, number>();
        for (const [name, n] of [...namedNumbers(a), ...namedNumbers(b)]) expected.set(name, (expected.get(name) ?? 0) + n);
        expect(named).toEqual(expected);
      }),
    );
  });
});

describe('totalExits', () => {
  it('adds the exits of every reason', () => {
    expect(totalExits(counts({ exits: { CPUID: 1000, IO_INSTRUCTION: 24, HLT: 0 } }))).toBe(1024);
    expect(totalExits(emptyCounts())).toBe(0);
  });
});

describe('countProblems', () => {
  it('is empty for whole counts ≥ 0', () => {
    expect(countProblems(counts({ exits: { CPUID: 3 }, walks: 7, phases: { 0: counts({ walks: 7 }) } }))).toEqual([]);
  });

  it('names each negative, fractional or non-finite count, phases included', () => {
    const bad = counts({
      entries: -1,
      vmreads: 1.5,
      exits: { CPUID: Number.NaN },
      tlbFlushes: { cr3: Infinity },
      phases: { 3: counts({ deviceOps: -2 }) },
    });
    expect(countProblems(bad)).toEqual([
      'count entries is -1, not a whole number ≥ 0',
      'count vmreads is 1.5, not a whole number ≥ 0',
      'count exits.CPUID is NaN, not a whole number ≥ 0',
      'count tlbFlushes.cr3 is Infinity, not a whole number ≥ 0',
      'phase 3: count deviceOps is -2, not a whole number ≥ 0',
    ]);
  });
});
