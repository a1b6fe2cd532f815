import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { costCountsArbitrary } from './arbitraries.js';
import { emptyCounts, type CostCounts } from './counts.js';
import { evaluate, type CostResult } from './model.js';
import { COST_PROFILES, NEHALEM, PRESCOTT, SKYLAKE } from './profiles.js';
import { alignColumns, formatCycles, formatOverhead, formatRatio, formatShare, renderJson, renderJsonLines, renderText, toJson, type CostJson } from './report.js';

function counts(patch: Partial<CostCounts>): CostCounts {
  return { ...emptyCounts(), ...patch };
}

const guestWork = { instructions: { ordinary: 50_000, memory: 20_000, privileged: 300, io: 40 }, walks: 500, walkReferences: 2000 };
const bare = counts({ ...guestWork, phases: { 0: counts(guestWork) } });
const underHypervisor = counts({
  ...guestWork,
  exits: { IO_INSTRUCTION: 40, CPUID: 12, EXTERNAL_INTERRUPT: 5, HLT: 3, RDMSR: 2, WRMSR: 1, CONTROL_REGISTER_ACCESS: 1 },
  entries: 64,
  vmreads: 640,
  vmwrites: 70,
  deviceOps: 40,
  eptWalks: 2500,
  eptReferences: 10_000,
  injections: 5,
});

/** Every profile on the same counts with the bare run. */
const results: CostResult[] = COST_PROFILES.map((profile) => evaluate({ profile, counts: underHypervisor, native: bare }));

describe('number formatting', () => {
  it('groups digits by three and rounds to whole cycles', () => {
    expect([0, 7, 999, 1000, 1234567.4, 1234567.5, -1234, 1e12].map(formatCycles)).toEqual([
      '0', '7', '999', '1,000', '1,234,567', '1,234,568', '-1,234', '1,000,000,000,000',
    ]);
  });

  it('writes ratios, shares and overheads', () => {
    expect(formatRatio(4.214)).toBe('4.21×');
    expect(formatRatio(null)).toBe('n/a');
    expect(formatShare(1, 3)).toBe('33.3%');
    expect(formatShare(0, 0)).toBe('0.0%');
    expect(formatOverhead({ ratio: 2.5, extraCycles: 1500 })).toBe('2.50× (+1,500)');
    expect(formatOverhead({ ratio: 0.5, extraCycles: -20 })).toBe('0.50× (-20)');
  });

  it('aligns the first column left and the others right', () => {
    expect(alignColumns([['name', 'n'], ['a', '1000'], ['long name', '5']])).toEqual(['name          n', 'a          1000', 'long name     5']);
  });
});

describe('renderText', () => {
  const text = renderText(results);

  it('names every profile with its total', () => {
    for (const r of results) {
      expect(text).toContain(r.profile.name);
      expect(text).toContain(formatCycles(r.cost.total));
    }
  });

  it('has a summary table with aligned columns, one row per profile, and the overhead', () => {
    const lines = text.split('\n');
    const header = lines.findIndex((l) => l.startsWith('profile'));
    const table = lines.slice(header, header + 1 + results.length);
    expect(table[0]).toMatch(/^profile\s+guest\s+transitions\s+handlers\s+page walks\s+total\s+µs\s+vs native$/);
    expect(new Set(table.map((l) => l.length)).size).toBe(1);
    const prescottRow = table.find((l) => l.startsWith('prescott'))!;
    const o = results[0]!.overhead!;
    expect(prescottRow).toContain(formatOverhead(o));
    expect(prescottRow).toContain(formatCycles(results[0]!.cost.guest.total));
  });

  it('lists the top exit reasons by cost with their counts, and says how many more there are', () => {
    const section = text.slice(text.indexOf('\nprescott: '));
    expect(section).toMatch(/IO_INSTRUCTION\s+40\s+[\d,]+\s+[\d.]+%/);
    expect(section).toContain('(2 more exit reasons)');
    expect(renderText(results, { topExits: 10 })).not.toContain('more exit reasons');
  });

  it('shows phases with their overhead, and notes the problems of the counts', () => {
    const withPhases = evaluate({
      profile: PRESCOTT,
      counts: counts({ ...underHypervisor, eptReferences: 0, eptWalks: 0, phases: { 0: counts(guestWork), 1: counts({ exits: { CPUID: 2 }, entries: 2 }) } }),
      native: bare,
    });
    const out = renderText([withPhases]);
    expect(out).toMatch(/\n {2}phase\s+guest\s+transitions\s+handlers\s+page walks\s+total\s+vs native\n/);
    // phase 1: 2 × (1763 + 2200) in transitions, 2 × 4064 in the handler; the bare run has no phase 1
    expect(out).toMatch(/\n {2}1\s+0\s+7,926\s+8,128\s+0\s+16,054\s+n\/a \(\+16,054\)\n/);
    expect(out).toContain('note: Intel Pentium 4 (Prescott) has no VPID');
  });

  it('says so when a run has no exits, and names the profile beside a label', () => {
    const out = renderText([evaluate({ profile: SKYLAKE, counts: bare, label: 'skylake bare' })]);
    expect(out).toContain('skylake bare [skylake]: Intel');
    expect(out).toContain('  no VM exits');
    expect(out).not.toContain('vs native');
  });

  it('contains each profile name and its total for any counts (property)', () => {
    fc.assert(
      fc.property(fc.subarray([...COST_PROFILES], { minLength: 1 }), costCountsArbitrary(), (profiles, c) => {
        const rs = profiles.map((profile) => evaluate({ profile, counts: c }));
        const out = renderText(rs);
        for (const r of rs) {
          expect(out).toContain(`${r.profile.name}: `);
          expect(out).toContain(`total ${formatCycles(r.cost.total)} cycles`);
        }
      }),
    );
  });
});

describe('JSON', () => {
  it('gives per profile its name, totalCycles, the breakdown and the top exits', () => {
    const json = JSON.parse(renderJson(results)) as CostJson[];
    expect(json.map((j) => j.profile)).toEqual(COST_PROFILES.map((p) => p.name));
    json.forEach((j, k) => {
      const r = results[k]!;
      expect(j.totalCycles).toBe(r.cost.total);
      const b = j.breakdown;
      expect(b.guest.total + b.transitions.total + b.handlers.total + b.walks.total).toBe(j.totalCycles);
      expect(j.topExits[0]).toEqual({ reason: 'IO_INSTRUCTION', count: 40, cycles: Math.round(r.cost.exitReasons[0]!.cycles) });
      expect(j.topExits).toHaveLength(7);
      expect(j.native?.totalCycles).toBe(r.native!.total);
      expect(j.overhead?.extraCycles).toBe(r.cost.total - r.native!.total);
    });
  });

  it('rounds the ratio to 4 decimals and the time to 3', () => {
    const [j] = toJson([evaluate({ profile: NEHALEM, counts: counts({ instructions: { ordinary: 3, memory: 0, privileged: 0, io: 0 }, exits: { HLT: 1 }, entries: 1 }), native: counts({ instructions: { ordinary: 3, memory: 0, privileged: 0, io: 0 } }) })]);
    expect(j!.overhead).toEqual({ ratio: 667.6667, extraCycles: 2000 });
    expect(j!.microseconds).toBe(0.684);
  });

  it('limits top exits on request, and leaves out native and overhead without a bare run', () => {
    const [j] = toJson([evaluate({ profile: SKYLAKE, counts: underHypervisor })], { topExits: 2 });
    expect(j!.topExits.map((e) => e.reason)).toEqual(['IO_INSTRUCTION', 'CPUID']);
    expect('native' in j!).toBe(false);
    expect('overhead' in j!).toBe(false);
  });

  it('writes one parseable object per line as JSON lines', () => {
    const lines = renderJsonLines(results).split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(results.length);
    expect(lines.map((l) => (JSON.parse(l) as CostJson).profile)).toEqual(COST_PROFILES.map((p) => p.name));
  });

  it('carries the phases of the run with their overhead', () => {
    const [j] = toJson([evaluate({ profile: SKYLAKE, counts: counts({ phases: { 2: counts({ exits: { CPUID: 1 }, entries: 1 }) } }), native: bare })]);
    // 410 exit + 810 handler + 324 entry
    expect(j!.phases).toEqual([
      expect.objectContaining({ phase: 2, totalCycles: 1544, topExits: [{ reason: 'CPUID', count: 1, cycles: 1544 }], overhead: { ratio: null, extraCycles: 1544 } }),
    ]);
  });
});
