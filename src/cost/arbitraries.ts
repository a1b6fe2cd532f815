/**
 * fast-check arbitraries of the cost model's inputs, for properties over
 * counts and prices (ours in this folder, and users' own: "for all counts,
 * my report ...").
 *
 * @example
 * import fc from 'fast-check';
 * import { costCountsArbitrary } from './arbitraries.js';
 * fc.assert(fc.property(costCountsArbitrary({ shape: 'ept' }), (counts) => myCheck(counts)));
 */
import fc from 'fast-check';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { addCounts, emptyCounts, TRANSITION_FLUSH, type CostCounts, type PhaseCounts } from './counts.js';
import type { CostPrices, CostProfile } from './profiles.js';

/** Which kind of run the counts look like. */
export type CountsShape =
  /** A guest without VMX: no exits, entries, handler work, EPT or shadow work. */
  | 'bare'
  /** A guest under a hypervisor with EPT: no shadow-paging work. */
  | 'ept'
  /** A guest under a hypervisor with shadow paging: no EPT walks. */
  | 'shadow'
  /** Anything: every count may be non-zero. */
  | 'any';

/** Options of costCountsArbitrary. */
export interface CostCountsOptions {
  /** Largest value of any single count (default 1,000,000; keep totals below 2^53 cycles). */
  readonly maxCount?: number;
  /** The kind of run (default 'any'). */
  readonly shape?: CountsShape;
  /**
   * Give the counts phases (default false). The top-level counts are then the
   * sum of the phases, as in a real run.
   */
  readonly phases?: boolean;
}

/** Every basic exit-reason name (vmcs/exit-reasons.ts): the keys of CostCounts.exits. */
export const EXIT_REASON_NAMES: readonly string[] = Object.keys(ExitReason);

/** The TLB flush causes hvsim counts (src/cpu/paging.ts), and the VM-transition flush of a part without VPID. */
export const FLUSH_CAUSES: readonly string[] = ['full', 'control', 'cr3', 'invlpg', 'invpcid', 'invvpid', 'invept', TRANSITION_FLUSH];

/** Flush causes a bare run can have: none issued by a hypervisor or at a VM transition. */
const BARE_FLUSH_CAUSES: readonly string[] = ['full', 'control', 'cr3', 'invlpg', 'invpcid'];

function countsRecord(keys: readonly string[], maxCount: number): fc.Arbitrary<Record<string, number>> {
  return fc.dictionary(fc.constantFrom(...keys), fc.nat({ max: maxCount }), { maxKeys: 6 });
}

/** Any counts, every field drawn on its own. */
function anyPhaseCounts(maxCount: number, flushCauses: readonly string[]): fc.Arbitrary<PhaseCounts> {
  const n = fc.nat({ max: maxCount });
  return fc.record({
    instructions: fc.record({ ordinary: n, memory: n, privileged: n, io: n }),
    exits: countsRecord(EXIT_REASON_NAMES, maxCount),
    entries: n,
    vmreads: n,
    vmwrites: n,
    deviceOps: n,
    walks: n,
    walkReferences: n,
    eptWalks: n,
    eptReferences: n,
    tlbHits: n,
    tlbFlushes: countsRecord(flushCauses, maxCount),
    injections: n,
    shadow: fc.record({ hiddenFaults: n, pteWrites: n, cr3Switches: n, entriesBuilt: n }),
  });
}

const NO_SHADOW = { hiddenFaults: 0, pteWrites: 0, cr3Switches: 0, entriesBuilt: 0 };

/** The counts with the fields a run of that shape cannot have set to 0. */
function shaped(counts: PhaseCounts, shape: CountsShape): PhaseCounts {
  switch (shape) {
    case 'bare':
      return { ...counts, exits: {}, entries: 0, vmreads: 0, vmwrites: 0, deviceOps: 0, eptWalks: 0, eptReferences: 0, injections: 0, shadow: NO_SHADOW };
    case 'ept':
      return { ...counts, shadow: NO_SHADOW };
    case 'shadow':
      return { ...counts, eptWalks: 0, eptReferences: 0 };
    case 'any':
      return counts;
  }
}

/** Counts of one phase (no `phases` field) of the given shape. */
export function phaseCountsArbitrary(options: CostCountsOptions = {}): fc.Arbitrary<PhaseCounts> {
  const shape = options.shape ?? 'any';
  const causes = shape === 'bare' ? BARE_FLUSH_CAUSES : FLUSH_CAUSES;
  return anyPhaseCounts(options.maxCount ?? 1_000_000, causes).map((c) => shaped(c, shape));
}

/** Sums phases into counts whose `phases` are those phases. */
function fromPhases(phases: readonly [number, PhaseCounts][]): CostCounts {
  const whole = phases.reduce<CostCounts>((sum, [, c]) => addCounts(sum, c), emptyCounts());
  return { ...whole, phases: Object.fromEntries(phases) };
}

/** CostCounts of the given shape, with or without phases. */
export function costCountsArbitrary(options: CostCountsOptions = {}): fc.Arbitrary<CostCounts> {
  if (options.phases !== true) return phaseCountsArbitrary(options);
  const phase = fc.tuple(fc.nat({ max: 15 }), phaseCountsArbitrary(options));
  return fc.uniqueArray(phase, { minLength: 1, maxLength: 4, selector: ([n]) => n }).map(fromPhases);
}

/** Prices: every figure a whole number of cycles from 0 to 20,000; roundTrip = vmEntry + vmExit. */
export function costPricesArbitrary(): fc.Arbitrary<CostPrices> {
  const p = fc.nat({ max: 20_000 });
  return fc
    .record({
      vmEntry: p,
      vmExit: p,
      vmread: p,
      vmwrite: p,
      instruction: fc.record({ ordinary: p, memory: p, privileged: p, io: p }),
      handlerPerExit: p,
      deviceOp: p,
      injection: p,
      shadow: fc.record({ hiddenFault: p, pteWrite: p, cr3Switch: p, entryBuilt: p }),
      walkReference: p,
      eptReference: p,
      tlbHit: p,
      tlbFlush: p,
      transitionFlush: p,
    })
    .map((prices) => ({ ...prices, roundTrip: prices.vmEntry + prices.vmExit }));
}

/** A made-up processor with arbitrary prices, for properties that must hold on any profile. */
export function costProfileArbitrary(): fc.Arbitrary<CostProfile> {
  return fc.record({
    name: fc.stringMatching(/^[a-z][a-z0-9]{0,11}$/),
    fullName: fc.string({ maxLength: 40 }),
    launchYear: fc.integer({ min: 2005, max: 2040 }),
    ept: fc.boolean(),
    vpid: fc.boolean(),
    clockGHz: fc.integer({ min: 5, max: 60 }).map((tenths) => tenths / 10),
    measuredOn: fc.constant('arbitrary prices'),
    prices: costPricesArbitrary(),
  });
}
