import { describe, expect, it } from 'vitest';
import { COST_PROFILES, findProfile, MEROM, PRESCOTT, type CostPrices, type CostProfile } from './profiles.js';

/** Every price of a profile with a dotted name. */
function namedPrices(prices: CostPrices): [string, number][] {
  const named: [string, number][] = [];
  for (const [key, value] of Object.entries(prices)) {
    if (typeof value === 'number') named.push([key, value]);
    else for (const [inner, n] of Object.entries(value as Record<string, number>)) named.push([`${key}.${inner}`, n]);
  }
  return named;
}

const byName = (name: string): CostProfile => {
  const p = findProfile(name);
  if (p === undefined) throw new Error(`no profile ${name}`);
  return p;
};

describe('cost profiles', () => {
  it('include the parts the brief names, oldest first, with unique lower-case names', () => {
    expect(COST_PROFILES.map((p) => p.name)).toEqual(['prescott', 'merom', 'penryn', 'nehalem', 'westmere', 'sandybridge', 'skylake']);
    const years = COST_PROFILES.map((p) => p.launchYear);
    expect([...years].sort((a, b) => a - b)).toEqual(years);
  });

  it('have every price finite, whole and ≥ 0, and 21 prices each', () => {
    for (const p of COST_PROFILES) {
      const prices = namedPrices(p.prices);
      expect(prices).toHaveLength(21);
      for (const [name, n] of prices) {
        expect(Number.isFinite(n), `${p.name} ${name}`).toBe(true);
        expect(Number.isInteger(n), `${p.name} ${name}`).toBe(true);
        expect(n, `${p.name} ${name}`).toBeGreaterThanOrEqual(0);
      }
      expect(Number.isFinite(p.clockGHz) && p.clockGHz > 0).toBe(true);
    }
  });

  it('split each round trip exactly into exit and entry', () => {
    for (const p of COST_PROFILES) expect(p.prices.vmEntry + p.prices.vmExit, p.name).toBe(p.prices.roundTrip);
  });

  it('carry the published round trips of B1 table 1 and A1 table 1 VMCS figures', () => {
    const roundTrips = Object.fromEntries(COST_PROFILES.map((p) => [p.name, p.prices.roundTrip]));
    expect(roundTrips).toMatchObject({ prescott: 3963, merom: 1579, penryn: 1266, nehalem: 1009, westmere: 761, sandybridge: 784 });
    expect([PRESCOTT.prices.vmread, PRESCOTT.prices.vmwrite, MEROM.prices.vmread, MEROM.prices.vmwrite]).toEqual([178, 171, 52, 44]);
  });

  it('have no EPT or VPID before Nehalem, and both from Nehalem on', () => {
    const assist = COST_PROFILES.map((p) => [p.name, p.ept, p.vpid]);
    expect(assist).toEqual([
      ['prescott', false, false],
      ['merom', false, false],
      ['penryn', false, false],
      ['nehalem', true, true],
      ['westmere', true, true],
      ['sandybridge', true, true],
      ['skylake', true, true],
    ]);
  });

  it('get cheaper transitions from Prescott to Westmere (B1: about 80% less)', () => {
    const trips = COST_PROFILES.slice(0, 5).map((p) => p.prices.roundTrip);
    for (let k = 1; k < trips.length; k++) expect(trips[k]).toBeLessThan(trips[k - 1]!);
    expect(1 - byName('westmere').prices.roundTrip / PRESCOTT.prices.roundTrip).toBeCloseTo(0.81, 2);
  });

  it('are found by name, and an unknown name finds nothing', () => {
    expect(findProfile('nehalem')?.fullName).toContain('Nehalem');
    expect(findProfile('Nehalem')).toBeUndefined();
    expect(findProfile('icelake')).toBeUndefined();
  });
});

/**
 * The derived figures must follow the rules profiles.ts states: a typo in the
 * data fails here.
 */
describe('derived figures follow the documented rules', () => {
  const prescott = PRESCOTT.prices;

  it('SPLIT: B1 round trip in A1 proportion (P4 for Prescott, Core 2 for the rest)', () => {
    expect(prescott.vmEntry).toBe(Math.round((3963 * 2409) / (2409 + 1931)));
    for (const p of COST_PROFILES.slice(1)) expect(p.prices.vmEntry, p.name).toBe(Math.round((p.prices.roundTrip * 937) / (937 + 1186)));
  });

  it('VMCS: Core 2 VMREAD/VMWRITE scaled by round trip after Merom', () => {
    for (const p of COST_PROFILES.slice(2)) {
      const r = p.prices.roundTrip / MEROM.prices.roundTrip;
      expect(p.prices.vmread, p.name).toBe(Math.round(52 * r));
      expect(p.prices.vmwrite, p.name).toBe(Math.round(44 * r));
    }
  });

  it('CALIBRATION: only two of A1 figure 4 rows, `pgfault` and `in`, set Prescott software prices', () => {
    expect(prescott.handlerPerExit).toBe(11242 - 1093 - 3963 - 10 * 178 - 2 * 171);
    expect(prescott.deviceOp).toBe(15826 - 3209 - 3963 - 10 * 178 - 171 - prescott.handlerPerExit);
  });

  it('SHADOW: the shadow prices are the same formulas of walk reference and memory prices on every part', () => {
    for (const p of COST_PROFILES) {
      const { walkReference, instruction, shadow } = p.prices;
      const walk = 4 * walkReference;
      expect(shadow.entryBuilt, p.name).toBe(walk + instruction.memory); // walk the guest's 4 levels, write the entry
      expect(shadow.cr3Switch, p.name).toBe(shadow.entryBuilt); // a new root priced as building one entry
      expect(shadow.pteWrite, p.name).toBe(walk + instruction.memory + instruction.memory + instruction.memory); // fetch, store, update one entry
      expect([shadow.pteWrite, shadow.entryBuilt, shadow.cr3Switch], p.name).toEqual([50, 46, 46]);
    }
  });

  it('SCALE: software prices without a figure are Prescott × round trip / 3963', () => {
    const independentHandler = new Set(['nehalem', 'sandybridge', 'skylake']);
    for (const p of COST_PROFILES.slice(1)) {
      const r = p.prices.roundTrip / prescott.roundTrip;
      expect(p.prices.deviceOp, p.name).toBe(Math.round(prescott.deviceOp * r));
      if (!independentHandler.has(p.name)) expect(p.prices.handlerPerExit, p.name).toBe(Math.round(prescott.handlerPerExit * r));
    }
  });

  it('independent handler figures: SplitX, Shalabi and Li minus the hardware round trip', () => {
    expect(byName('nehalem').prices.handlerPerExit).toBe(2000 - 1009);
    expect(byName('sandybridge').prices.handlerPerExit).toBe(1650 - 784);
    const skylake = byName('skylake').prices;
    expect(skylake.roundTrip).toBe(Math.round((1544 * 784) / 1650));
    expect(skylake.handlerPerExit + skylake.roundTrip).toBe(1544);
  });

  it('BUS: a native IN/OUT takes A1 P4 time (3209 cycles at 3.8 GHz) at every clock', () => {
    for (const p of COST_PROFILES) expect(p.prices.instruction.io, p.name).toBe(Math.round((3209 / 3.8) * p.clockGHz));
  });

  it('shared modelling choices are the same on every part', () => {
    for (const p of COST_PROFILES) {
      const { instruction, walkReference, eptReference, tlbHit, tlbFlush, transitionFlush, injection, shadow } = p.prices;
      expect([instruction.ordinary, instruction.memory, instruction.privileged], p.name).toEqual([1, 2, 121]);
      expect([walkReference, eptReference, tlbHit, tlbFlush, transitionFlush, injection, shadow.hiddenFault], p.name).toEqual([11, 7, 0, 121, 0, 0, 0]);
    }
  });
});
