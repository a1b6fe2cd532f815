/**
 * The cost model of hvsim: event counts of a run → modelled core cycles on a
 * named processor, as text, JSON and an SVG chart.
 *
 * counts.ts (the input) → model.ts (`price`, `overhead`, `evaluate`, with the
 * prices of profiles.ts) → report.ts (`renderText`, `renderJson`) and
 * plot.ts (`renderSvg`). arbitraries.ts has fast-check arbitraries of the
 * input for property tests.
 */
export {
  type CostCounts, type PhaseCounts, TRANSITION_FLUSH, emptyCounts, addCounts, addRecords, totalExits, namedNumbers, countProblems,
} from './counts.js';
export {
  type CostProfile, type CostPrices, type InstructionPrices, type ShadowPrices,
  PRESCOTT, MEROM, PENRYN, NEHALEM, WESTMERE, SANDYBRIDGE, SKYLAKE, COST_PROFILES, findProfile,
} from './profiles.js';
export {
  type GuestCycles, type TransitionCycles, type HandlerCycles, type WalkCycles, type ExitReasonCost, type PhaseBreakdown,
  type PhaseCost, type CostBreakdown, type OverheadFigures, type Overhead, type CostRun, type CostResult,
  guestCycles, transitionCycles, shadowCycles, handlerCycles, flushPrice, walkCycles, exitReasonCosts, pricePhase, price,
  compareTotals, overhead, microseconds, compatibilityProblems, evaluate,
} from './model.js';
export {
  type TextOptions, type JsonOptions, type BreakdownJson, type ExitJson, type OverheadJson, type PhaseJson, type CostJson,
  formatCycles, formatRatio, formatShare, formatOverhead, alignColumns, renderText, toJson, renderJson, renderJsonLines,
} from './report.js';
export { escapeXml, compactCycles, niceStep, yAxis, renderSvg } from './plot.js';
export {
  type CountsShape, type CostCountsOptions, EXIT_REASON_NAMES, FLUSH_CAUSES,
  phaseCountsArbitrary, costCountsArbitrary, costPricesArbitrary, costProfileArbitrary,
} from './arbitraries.js';
