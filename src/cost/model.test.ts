import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { costCountsArbitrary, costProfileArbitrary, EXIT_REASON_NAMES, FLUSH_CAUSES } from './arbitraries.js';
import { addCounts, emptyCounts, type CostCounts } from './counts.js';
import { compatibilityProblems, evaluate, microseconds, overhead, price, type PhaseBreakdown } from './model.js';
import { COST_PROFILES, NEHALEM, PRESCOTT, SKYLAKE, type CostPrices, type CostProfile } from './profiles.js';

/** Counts with a few fields set, the rest 0. */
function counts(patch: Partial<CostCounts>): CostCounts {
  return { ...emptyCounts(), ...patch };
}

/** The sum of the four parts. */
function sumOfParts(b: PhaseBreakdown): number {
  return b.guest.total + b.transitions.total + b.handlers.total + b.walks.total;
}

const anyProfile: fc.Arbitrary<CostProfile> = fc.oneof(fc.constantFrom(...COST_PROFILES), costProfileArbitrary());

describe('price: hand-computed examples', () => {
  it('1000 CPUID exits (and their 1000 entries) on prescott cost 1000 × (3963 + 4064)', () => {
    const b = price(counts({ exits: { CPUID: 1000 }, entries: 1000 }), PRESCOTT);
    expect(b.transitions).toEqual({ exits: 1_763_000, entries: 2_200_000, total: 3_963_000 });
    expect(b.handlers.software).toBe(4_064_000);
    expect(b.total).toBe(1000 * (3963 + 4064));
    expect(b.exitReasons).toEqual([{ reason: 'CPUID', count: 1000, cycles: 8_027_000 }]);
  });

  it('prices one event of each kind on prescott at its price', () => {
    const single: [Partial<CostCounts>, number][] = [
      [{ instructions: { ordinary: 1, memory: 0, privileged: 0, io: 0 } }, 1],
      [{ instructions: { ordinary: 0, memory: 1, privileged: 0, io: 0 } }, 2],
      [{ instructions: { ordinary: 0, memory: 0, privileged: 1, io: 0 } }, 121],
      [{ instructions: { ordinary: 0, memory: 0, privileged: 0, io: 1 } }, 3209],
      [{ exits: { HLT: 1 } }, 1763 + 4064],
      [{ entries: 1 }, 2200],
      [{ vmreads: 1 }, 178],
      [{ vmwrites: 1 }, 171],
      [{ deviceOps: 1 }, 2639],
      [{ walks: 1 }, 0],
      [{ walkReferences: 1 }, 11],
      [{ eptWalks: 1 }, 0],
      [{ eptReferences: 1 }, 7],
      [{ tlbHits: 1 }, 0],
      [{ tlbFlushes: { cr3: 1 } }, 121],
      [{ tlbFlushes: { vmTransition: 1 } }, 0],
      [{ injections: 1 }, 0],
      [{ shadow: { hiddenFaults: 1, pteWrites: 0, cr3Switches: 0, entriesBuilt: 0 } }, 0],
      [{ shadow: { hiddenFaults: 0, pteWrites: 1, cr3Switches: 0, entriesBuilt: 0 } }, 50],
      [{ shadow: { hiddenFaults: 0, pteWrites: 0, cr3Switches: 1, entriesBuilt: 0 } }, 46],
      [{ shadow: { hiddenFaults: 0, pteWrites: 0, cr3Switches: 0, entriesBuilt: 1 } }, 46],
    ];
    for (const [patch, expected] of single) expect(price(counts(patch), PRESCOTT).total, JSON.stringify(patch)).toBe(expected);
  });

  it('puts each count in its part', () => {
    const b = price(
      counts({
        instructions: { ordinary: 100, memory: 50, privileged: 2, io: 1 },
        exits: { IO_INSTRUCTION: 1 },
        entries: 1,
        vmreads: 3,
        vmwrites: 1,
        deviceOps: 1,
        walkReferences: 8,
        eptReferences: 40,
        tlbFlushes: { invept: 1 },
      }),
      NEHALEM,
    );
    expect(b.guest).toEqual({ ordinary: 100, memory: 100, privileged: 242, io: 2474, total: 2916 });
    expect(b.transitions).toEqual({ exits: 564, entries: 445, total: 1009 });
    expect(b.handlers).toEqual({ software: 991, vmreads: 99, vmwrites: 28, deviceOps: 672, injections: 0, shadow: 0, total: 1790 });
    expect(b.walks).toEqual({ native: 88, ept: 280, tlbHits: 0, tlbFlushes: 121, total: 489 });
    expect(b.total).toBe(2916 + 1009 + 1790 + 489);
    expect(b.profile).toBe('nehalem');
    expect(b.phases).toEqual([]);
  });

  it('makes a 2-D walk (4 guest + 20 EPT references) about 4.2× a native one, as C1 measured (3.9–4.6×)', () => {
    const native = price(counts({ walks: 1, walkReferences: 4 }), NEHALEM).walks.total;
    const twoD = price(counts({ walks: 1, walkReferences: 4, eptWalks: 5, eptReferences: 20 }), NEHALEM).walks.total;
    expect(native).toBe(44);
    expect(twoD).toBe(44 + 140);
    expect(twoD / native).toBeGreaterThan(3.9);
    expect(twoD / native).toBeLessThan(4.6);
  });
});

describe('price reproduces A1 figure 4 on prescott where its prices come from it: `in`, `pgfault` (calibrated), native `syscall` (PRIVILEGED)', () => {
  const tenReads = { entries: 1, vmreads: 10 };

  it('`in`: 15826', () => {
    const c = counts({ ...tenReads, instructions: { ordinary: 0, memory: 0, privileged: 0, io: 1 }, exits: { IO_INSTRUCTION: 1 }, vmwrites: 1, deviceOps: 1 });
    expect(price(c, PRESCOTT).total).toBe(15826);
  });

  it('`pgfault`: 11242 − native 1093 in transitions and handler', () => {
    const b = price(counts({ ...tenReads, exits: { EXCEPTION_OR_NMI: 1 }, vmwrites: 2, injections: 1 }), PRESCOTT);
    expect(b.transitions.total + b.handlers.total).toBe(11242 - 1093);
  });

  it('`syscall` (native): 242 for the SYSCALL/SYSRET pair', () => {
    expect(price(counts({ instructions: { ordinary: 0, memory: 0, privileged: 2, io: 0 } }), PRESCOTT).total).toBe(242);
  });
});

/** Signed error of a model figure against a published one, in percent. */
const errorPercent = (model: number, published: number): number => ((model - published) / published) * 100;

describe('price predicts the uncalibrated `ptemod` rows of A1 (hardware VMM, cycles) on prescott', () => {
  const write = {
    entries: 1, vmreads: 10, vmwrites: 1,
    instructions: { ordinary: 0, memory: 1, privileged: 0, io: 0 },
    exits: { EXCEPTION_OR_NMI: 1 },
  };
  const pteWrite = { hiddenFaults: 0, pteWrites: 1, cr3Switches: 0, entriesBuilt: 0 };

  it('`ptemod`: 10030 against A1 12733, 21.2% low', () => {
    const total = price(counts({ ...write, shadow: pteWrite }), PRESCOTT).total;
    expect(total).toBe(2 + 3963 + 10 * 178 + 171 + 4064 + 50);
    expect(total).toBe(10030);
    expect(errorPercent(total, 12733)).toBeCloseTo(-21.2, 1);
  });

  it('`ptemod` not-present-to-present: 10076 against A1 17020, 40.8% low', () => {
    const total = price(counts({ ...write, shadow: { ...pteWrite, entriesBuilt: 1 } }), PRESCOTT).total;
    expect(total).toBe(10030 + 46);
    expect(errorPercent(total, 17020)).toBeCloseTo(-40.8, 1);
  });

  it('`ptemod` present-to-not-present: 10030 against A1 9154, 9.6% high', () => {
    const total = price(counts({ ...write, shadow: pteWrite }), PRESCOTT).total;
    expect(errorPercent(total, 9154)).toBeCloseTo(9.6, 1);
  });
});

describe('exit reasons', () => {
  it('get their exits plus a share of entries and shared handler work, most costly first', () => {
    const b = price(counts({ exits: { CPUID: 1, IO_INSTRUCTION: 3 }, entries: 4, vmreads: 40, deviceOps: 3 }), PRESCOTT);
    // shared = 4 × 2200 + 40 × 178 + 3 × 2639 = 23837; per exit 1763 + 4064 = 5827
    expect(b.exitReasons).toEqual([
      { reason: 'IO_INSTRUCTION', count: 3, cycles: 3 * 5827 + (23837 * 3) / 4 },
      { reason: 'CPUID', count: 1, cycles: 5827 + 23837 / 4 },
    ]);
    expect(b.exitReasons[0]!.cycles + b.exitReasons[1]!.cycles).toBe(b.transitions.total + b.handlers.total);
  });

  it('leave out reasons with no exit and break ties by name', () => {
    const b = price(counts({ exits: { RDMSR: 2, HLT: 0, CPUID: 2 }, entries: 4 }), SKYLAKE);
    expect(b.exitReasons.map((e) => e.reason)).toEqual(['CPUID', 'RDMSR']);
  });

  it('add up to transitions + handlers whenever there are exits (property)', () => {
    fc.assert(
      fc.property(costCountsArbitrary(), anyProfile, (c, profile) => {
        const b = price(c, profile);
        const attributed = b.exitReasons.reduce((sum, e) => sum + e.cycles, 0);
        if (b.exitReasons.length === 0) return;
        const expected = b.transitions.total + b.handlers.total;
        expect(Math.abs(attributed - expected)).toBeLessThanOrEqual(1e-6 * Math.max(1, expected));
        for (let k = 1; k < b.exitReasons.length; k++) expect(b.exitReasons[k]!.cycles).toBeLessThanOrEqual(b.exitReasons[k - 1]!.cycles);
      }),
    );
  });
});

describe('price: properties', () => {
  it('total equals the sum of its parts, and each part the sum of its fields', () => {
    fc.assert(
      fc.property(costCountsArbitrary({ phases: true }), anyProfile, (c, profile) => {
        const b = price(c, profile);
        for (const part of [b, ...b.phases.map((p) => p.cost)]) {
          expect(part.total).toBe(sumOfParts(part));
          const { guest: g, transitions: t, handlers: h, walks: w } = part;
          expect(g.total).toBe(g.ordinary + g.memory + g.privileged + g.io);
          expect(t.total).toBe(t.exits + t.entries);
          expect(h.total).toBe(h.software + h.vmreads + h.vmwrites + h.deviceOps + h.injections + h.shadow);
          expect(w.total).toBe(w.native + w.ept + w.tlbHits + w.tlbFlushes);
        }
      }),
    );
  });

  /** One kind of event: how to add k of it (exit reasons and flush causes take a key), and what one costs. */
  interface EventKind {
    readonly bump: (c: CostCounts, k: number, reason: string, cause: string) => void;
    readonly unitPrice: (p: CostPrices, cause: string) => number;
  }
  const kinds: EventKind[] = [
    { bump: (c, k) => (c.instructions.ordinary += k), unitPrice: (p) => p.instruction.ordinary },
    { bump: (c, k) => (c.instructions.memory += k), unitPrice: (p) => p.instruction.memory },
    { bump: (c, k) => (c.instructions.privileged += k), unitPrice: (p) => p.instruction.privileged },
    { bump: (c, k) => (c.instructions.io += k), unitPrice: (p) => p.instruction.io },
    { bump: (c, k, reason) => (c.exits[reason] = (c.exits[reason] ?? 0) + k), unitPrice: (p) => p.vmExit + p.handlerPerExit },
    { bump: (c, k) => (c.entries += k), unitPrice: (p) => p.vmEntry },
    { bump: (c, k) => (c.vmreads += k), unitPrice: (p) => p.vmread },
    { bump: (c, k) => (c.vmwrites += k), unitPrice: (p) => p.vmwrite },
    { bump: (c, k) => (c.deviceOps += k), unitPrice: (p) => p.deviceOp },
    { bump: (c, k) => (c.walks += k), unitPrice: () => 0 },
    { bump: (c, k) => (c.walkReferences += k), unitPrice: (p) => p.walkReference },
    { bump: (c, k) => (c.eptWalks += k), unitPrice: () => 0 },
    { bump: (c, k) => (c.eptReferences += k), unitPrice: (p) => p.eptReference },
    { bump: (c, k) => (c.tlbHits += k), unitPrice: (p) => p.tlbHit },
    {
      bump: (c, k, _reason, cause) => (c.tlbFlushes[cause] = (c.tlbFlushes[cause] ?? 0) + k),
      unitPrice: (p, cause) => (cause === 'vmTransition' ? p.transitionFlush : p.tlbFlush),
    },
    { bump: (c, k) => (c.injections += k), unitPrice: (p) => p.injection },
    { bump: (c, k) => (c.shadow.hiddenFaults += k), unitPrice: (p) => p.shadow.hiddenFault },
    { bump: (c, k) => (c.shadow.pteWrites += k), unitPrice: (p) => p.shadow.pteWrite },
    { bump: (c, k) => (c.shadow.cr3Switches += k), unitPrice: (p) => p.shadow.cr3Switch },
    { bump: (c, k) => (c.shadow.entriesBuilt += k), unitPrice: (p) => p.shadow.entryBuilt },
  ];
  const eventArgs = [
    fc.nat({ max: kinds.length - 1 }),
    fc.integer({ min: 1, max: 100_000 }),
    fc.constantFrom(...EXIT_REASON_NAMES),
    fc.constantFrom(...FLUSH_CAUSES),
  ] as const;

  it('charges k events of one kind exactly k times their price, on any prices', () => {
    fc.assert(
      fc.property(anyProfile, ...eventArgs, (profile, which, k, reason, cause) => {
        const c = emptyCounts();
        kinds[which]!.bump(c, k, reason, cause);
        expect(price(c, profile).total).toBe(k * kinds[which]!.unitPrice(profile.prices, cause));
      }),
    );
  });

  it('is monotonic: more of any single event never lowers the total or any part', () => {
    fc.assert(
      fc.property(costCountsArbitrary(), anyProfile, ...eventArgs, (c, profile, which, k, reason, cause) => {
        const more = structuredClone(c);
        kinds[which]!.bump(more, k, reason, cause);
        const before = price(c, profile);
        const after = price(more, profile);
        expect(after.total).toBeGreaterThanOrEqual(before.total);
        expect(after.guest.total).toBeGreaterThanOrEqual(before.guest.total);
        expect(after.transitions.total).toBeGreaterThanOrEqual(before.transitions.total);
        expect(after.handlers.total).toBeGreaterThanOrEqual(before.handlers.total);
        expect(after.walks.total).toBeGreaterThanOrEqual(before.walks.total);
      }),
    );
  });

  it('is additive: two runs together cost what they cost apart', () => {
    fc.assert(
      fc.property(costCountsArbitrary(), costCountsArbitrary(), fc.constantFrom(...COST_PROFILES), (a, b, profile) => {
        expect(price(addCounts(a, b), profile).total).toBe(price(a, profile).total + price(b, profile).total);
      }),
    );
  });

  it('prices each phase on its own, and phases that make up a run add up to it', () => {
    fc.assert(
      fc.property(costCountsArbitrary({ phases: true }), fc.constantFrom(...COST_PROFILES), (c, profile) => {
        const b = price(c, profile);
        expect(b.phases.map((p) => p.phase)).toEqual(Object.keys(c.phases ?? {}).map(Number).sort((x, y) => x - y));
        expect(b.phases.reduce((sum, p) => sum + p.cost.total, 0)).toBe(b.total);
      }),
    );
  });

  it('costs nothing for empty counts', () => {
    for (const profile of COST_PROFILES) expect(price(emptyCounts(), profile).total).toBe(0);
  });
});

describe('overhead', () => {
  const guest = { instructions: { ordinary: 1000, memory: 400, privileged: 10, io: 2 }, walkReferences: 40 };
  const bare = counts({ ...guest, phases: { 0: counts({ ...guest }) } });
  const virtualized = counts({
    ...guest,
    exits: { IO_INSTRUCTION: 2 },
    entries: 2,
    vmreads: 6,
    eptReferences: 200,
    phases: { 0: counts({ ...guest }), 1: counts({ exits: { IO_INSTRUCTION: 2 }, entries: 2, vmreads: 6, eptReferences: 200 }) },
  });

  it('is the ratio and difference of totals, per phase too (a phase one run lacks counts 0)', () => {
    const v = price(virtualized, SKYLAKE);
    const n = price(bare, SKYLAKE);
    // bare: 1000 + 800 + 1210 + 4222 + 440 = 7672; extra: 2 × (410 + 810) + 2 × 324 + 6 × 24 + 200 × 7 = 4632
    expect(n.total).toBe(7672);
    expect(v.total).toBe(7672 + 4632);
    const o = overhead(v, n);
    expect(o.extraCycles).toBe(4632);
    expect(o.ratio).toBeCloseTo((7672 + 4632) / 7672, 12);
    expect(o.phases).toEqual([
      { phase: 0, ratio: 1, extraCycles: 0 },
      { phase: 1, ratio: null, extraCycles: 4632 },
    ]);
  });

  it('refuses runs priced on different profiles', () => {
    expect(() => overhead(price(virtualized, SKYLAKE), price(bare, NEHALEM))).toThrow(/skylake.*nehalem/);
  });
});

describe('compatibilityProblems', () => {
  it('is empty for an EPT run on a part with EPT and VPID', () => {
    expect(compatibilityProblems(counts({ exits: { EPT_VIOLATION: 3 }, entries: 3, eptWalks: 5, eptReferences: 20 }), SKYLAKE)).toEqual([]);
  });

  it('flags EPT work on a part without EPT, and a TLB kept across transitions on a part without VPID', () => {
    const problems = compatibilityProblems(counts({ exits: { CPUID: 1 }, entries: 1, eptWalks: 5 }), PRESCOTT);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/EPT walks.*no EPT/);
    expect(problems[1]).toMatch(/no VPID/);
    expect(compatibilityProblems(counts({ entries: 1, tlbFlushes: { vmTransition: 2 } }), PRESCOTT)).toEqual([]);
  });

  it('flags transition flushes on a part with VPID, unknown exit-reason names and bad numbers', () => {
    const problems = compatibilityProblems(counts({ exits: { CR_ACCESS: 1 }, entries: -1, tlbFlushes: { vmTransition: 2 } }), NEHALEM);
    expect(problems).toEqual([
      'count entries is -1, not a whole number ≥ 0',
      "exit reason 'CR_ACCESS' is not a basic exit-reason name of the SDM",
      'the run flushed the TLB at 2 VM transitions, which Intel Core i7 / Xeon 5500 (Nehalem) avoids with VPID: its refill walks are extra',
    ]);
  });
});

describe('evaluate', () => {
  it('prices the run and its bare run, with the overhead', () => {
    const work = { instructions: { ordinary: 2000, memory: 0, privileged: 0, io: 0 } };
    const r = evaluate({ profile: NEHALEM, counts: counts({ ...work, exits: { HLT: 1 }, entries: 1 }), native: counts(work), label: 'nehalem ept' });
    expect(r.label).toBe('nehalem ept');
    expect(r.cost.total).toBe(2000 + 1009 + 991);
    expect(r.native?.total).toBe(2000);
    expect(r.overhead).toEqual({ ratio: 2, extraCycles: 2000, phases: [] });
    expect(r.problems).toEqual([]);
  });

  it('reports what is wrong with the bare run too', () => {
    const r = evaluate({ profile: NEHALEM, counts: counts({ exits: { HLT: 1 }, entries: 1 }), native: counts({ exits: { HLT: 1 }, walks: -3 }) });
    expect(r.problems).toEqual(['bare run: count walks is -3, not a whole number ≥ 0', 'bare run: it has 1 VM exits and 0 VM entries']);
  });

  it('labels a run by its profile name and leaves out what it was not given', () => {
    const r = evaluate({ profile: SKYLAKE, counts: emptyCounts() });
    expect(r.label).toBe('skylake');
    expect(r.native).toBeUndefined();
    expect(r.overhead).toBeUndefined();
  });
});

describe('microseconds', () => {
  it('divides by the clock', () => {
    expect(microseconds(3800, PRESCOTT)).toBeCloseTo(1, 12);
    expect(microseconds(2500, SKYLAKE)).toBeCloseTo(1, 12);
  });
});
