/**
 * The cost model: event counts of a run (counts.ts) × the prices of a
 * processor (profiles.ts) = modelled core cycles, in four parts.
 *
 * What it counts:
 * - guest: every retired guest instruction at the price of its class
 *   (ordinary, memory operand, privileged/system, I/O);
 * - transitions: every VM exit and every VM entry at the hardware price;
 * - handlers: the root-mode software, i.e. a fixed cost per exit, each VMREAD
 *   and VMWRITE, each emulated device operation, each injected event, and the
 *   shadow-paging work (hidden faults, traced page-table writes, CR3
 *   switches, shadow entries built);
 * - page walks: every paging-structure entry read by a guest walk and every
 *   EPT entry read, TLB hits, and TLB flushes by cause.
 * The total is exactly the sum of the four parts. Each exit reason is then
 * given the cycles attributable to it: its exits' hardware exit and per-exit
 * software, plus a share of the entries and of the handler work the counts do
 * not tie to a reason (VMREAD/VMWRITE, device operations, injections, shadow
 * work), in proportion to its number of exits. That share is an attribution,
 * not a measurement; the attributions add up to transitions + handlers.
 *
 * What it cannot see: caches (every memory access and walk reference is
 * priced as if it hit the same level), the pipeline and out-of-order overlap
 * (prices add up; a real core hides some of them behind each other), branch
 * prediction, the cache and TLB pollution a handler leaves behind for the
 * guest (SplitX calls it the indirect cost of an exit, up to an order of
 * magnitude above the direct one), other cores, and time the handler waits
 * for devices. Modelled cycles compare techniques and processors on the same
 * counts; they do not predict a run's wall-clock time.
 *
 * Everything here is a pure function of its arguments.
 */
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { countProblems, totalExits, TRANSITION_FLUSH, type CostCounts, type PhaseCounts } from './counts.js';
import type { CostPrices, CostProfile } from './profiles.js';

/** Cycles spent executing the guest's own instructions, by class. */
export interface GuestCycles {
  readonly ordinary: number;
  readonly memory: number;
  readonly privileged: number;
  readonly io: number;
  readonly total: number;
}

/** Cycles of the hardware transitions: VM exits and VM entries. */
export interface TransitionCycles {
  readonly exits: number;
  readonly entries: number;
  readonly total: number;
}

/** Cycles of the root-mode handler's work. */
export interface HandlerCycles {
  /** The fixed software cost every exit pays. */
  readonly software: number;
  readonly vmreads: number;
  readonly vmwrites: number;
  readonly deviceOps: number;
  readonly injections: number;
  /** Hidden faults, traced page-table writes, CR3 switches and shadow entries built, together. */
  readonly shadow: number;
  readonly total: number;
}

/** Cycles of address translation: walk references of both dimensions and TLB work. */
export interface WalkCycles {
  /** Paging-structure entries read by guest (native-dimension) walks. */
  readonly native: number;
  /** EPT entries read (the second dimension). */
  readonly ept: number;
  readonly tlbHits: number;
  readonly tlbFlushes: number;
  readonly total: number;
}

/** The cycles attributed to one exit reason. */
export interface ExitReasonCost {
  /** The basic exit-reason name, as in the counts. */
  readonly reason: string;
  /** Its number of exits. */
  readonly count: number;
  /** Its attributed cycles (not a whole number in general: shares are proportional). */
  readonly cycles: number;
}

/** Modelled cycles of one run (or one phase of it) on one processor. */
export interface PhaseBreakdown {
  /** The profile's name. */
  readonly profile: string;
  readonly guest: GuestCycles;
  readonly transitions: TransitionCycles;
  readonly handlers: HandlerCycles;
  readonly walks: WalkCycles;
  /** guest.total + transitions.total + handlers.total + walks.total. */
  readonly total: number;
  /** Every exit reason with at least one exit, most costly first (ties by name). */
  readonly exitReasons: readonly ExitReasonCost[];
}

/** The breakdown of one guest phase. */
export interface PhaseCost {
  readonly phase: number;
  readonly cost: PhaseBreakdown;
}

/** Modelled cycles of a run on one processor, with its phases when the counts have them. */
export interface CostBreakdown extends PhaseBreakdown {
  /** One breakdown per phase, by ascending phase number; empty when the counts have no phases. */
  readonly phases: readonly PhaseCost[];
}

/** How a virtualized run compares with a bare run of the same guest. */
export interface OverheadFigures {
  /** Virtualized total ÷ bare total; null when the bare run costs 0 cycles. */
  readonly ratio: number | null;
  /** Virtualized total − bare total (negative when virtualized is cheaper). */
  readonly extraCycles: number;
}

/** The overhead of a run, and per phase (every phase either run has). */
export interface Overhead extends OverheadFigures {
  readonly phases: readonly (OverheadFigures & { readonly phase: number })[];
}

/** Cycles of the guest's instructions. */
export function guestCycles(instructions: CostCounts['instructions'], prices: CostPrices): GuestCycles {
  const ordinary = instructions.ordinary * prices.instruction.ordinary;
  const memory = instructions.memory * prices.instruction.memory;
  const privileged = instructions.privileged * prices.instruction.privileged;
  const io = instructions.io * prices.instruction.io;
  return { ordinary, memory, privileged, io, total: ordinary + memory + privileged + io };
}

/** Cycles of VM exits and VM entries (hardware only). */
export function transitionCycles(counts: PhaseCounts, prices: CostPrices): TransitionCycles {
  const exits = totalExits(counts) * prices.vmExit;
  const entries = counts.entries * prices.vmEntry;
  return { exits, entries, total: exits + entries };
}

/** Cycles of the shadow-paging work. */
export function shadowCycles(shadow: CostCounts['shadow'], prices: CostPrices): number {
  return (
    shadow.hiddenFaults * prices.shadow.hiddenFault +
    shadow.pteWrites * prices.shadow.pteWrite +
    shadow.cr3Switches * prices.shadow.cr3Switch +
    shadow.entriesBuilt * prices.shadow.entryBuilt
  );
}

/** Cycles of the root-mode handler. */
export function handlerCycles(counts: PhaseCounts, prices: CostPrices): HandlerCycles {
  const software = totalExits(counts) * prices.handlerPerExit;
  const vmreads = counts.vmreads * prices.vmread;
  const vmwrites = counts.vmwrites * prices.vmwrite;
  const deviceOps = counts.deviceOps * prices.deviceOp;
  const injections = counts.injections * prices.injection;
  const shadow = shadowCycles(counts.shadow, prices);
  return { software, vmreads, vmwrites, deviceOps, injections, shadow, total: software + vmreads + vmwrites + deviceOps + injections + shadow };
}

/** The price of one TLB flush of that cause. */
export function flushPrice(cause: string, prices: CostPrices): number {
  return cause === TRANSITION_FLUSH ? prices.transitionFlush : prices.tlbFlush;
}

/** Cycles of address translation. */
export function walkCycles(counts: PhaseCounts, prices: CostPrices): WalkCycles {
  const native = counts.walkReferences * prices.walkReference;
  const ept = counts.eptReferences * prices.eptReference;
  const tlbHits = counts.tlbHits * prices.tlbHit;
  const tlbFlushes = Object.entries(counts.tlbFlushes).reduce((sum, [cause, n]) => sum + n * flushPrice(cause, prices), 0);
  return { native, ept, tlbHits, tlbFlushes, total: native + ept + tlbHits + tlbFlushes };
}

/** Orders exit reasons most costly first, then by name. */
function byCostThenName(a: ExitReasonCost, b: ExitReasonCost): number {
  if (a.cycles !== b.cycles) return b.cycles - a.cycles;
  return a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0;
}

/**
 * The cycles attributable to each exit reason: its exits × (hardware exit +
 * per-exit software), plus its share (its exits ÷ all exits) of the entries
 * and of the handler work not tied to a reason. Reasons with no exit are left
 * out.
 */
export function exitReasonCosts(
  counts: PhaseCounts,
  prices: CostPrices,
  transitions: TransitionCycles,
  handlers: HandlerCycles,
): ExitReasonCost[] {
  const exits = totalExits(counts);
  const shared = transitions.entries + handlers.total - handlers.software;
  const perExit = prices.vmExit + prices.handlerPerExit;
  return Object.entries(counts.exits)
    .filter(([, count]) => count > 0)
    .map(([reason, count]) => ({ reason, count, cycles: count * perExit + (shared * count) / exits }))
    .sort(byCostThenName);
}

/** The breakdown of counts without looking at their phases. */
export function pricePhase(counts: PhaseCounts, profile: CostProfile): PhaseBreakdown {
  const prices = profile.prices;
  const guest = guestCycles(counts.instructions, prices);
  const transitions = transitionCycles(counts, prices);
  const handlers = handlerCycles(counts, prices);
  const walks = walkCycles(counts, prices);
  return {
    profile: profile.name,
    guest,
    transitions,
    handlers,
    walks,
    total: guest.total + transitions.total + handlers.total + walks.total,
    exitReasons: exitReasonCosts(counts, prices, transitions, handlers),
  };
}

/**
 * Prices a run on a processor: cycles in the guest, in transitions, in the
 * handler and in page walks, their total, the attribution by exit reason,
 * and the same for each phase when the counts have phases. The top-level
 * figures price the top-level counts; phases are priced on their own.
 */
export function price(counts: CostCounts, profile: CostProfile): CostBreakdown {
  const phases = Object.entries(counts.phases ?? {})
    .map(([phase, phaseCounts]) => ({ phase: Number(phase), cost: pricePhase(phaseCounts, profile) }))
    .sort((a, b) => a.phase - b.phase);
  return { ...pricePhase(counts, profile), phases };
}

/** Ratio and difference of two totals. */
export function compareTotals(virtualTotal: number, nativeTotal: number): OverheadFigures {
  return { ratio: nativeTotal === 0 ? null : virtualTotal / nativeTotal, extraCycles: virtualTotal - nativeTotal };
}

function phaseTotal(breakdown: CostBreakdown, phase: number): number {
  return breakdown.phases.find((p) => p.phase === phase)?.cost.total ?? 0;
}

/**
 * What virtualization costs: a priced virtualized run against a priced bare
 * run of the same guest on the same profile. Per phase as well, for every
 * phase either run has (a phase one run lacks counts 0 there).
 * Throws a RangeError when the two were priced on different profiles.
 */
export function overhead(virtual: CostBreakdown, native: CostBreakdown): Overhead {
  if (virtual.profile !== native.profile) {
    throw new RangeError(`overhead: the virtualized run is priced on '${virtual.profile}', the bare run on '${native.profile}'`);
  }
  const numbers = new Set([...virtual.phases, ...native.phases].map((p) => p.phase));
  const phases = [...numbers]
    .sort((a, b) => a - b)
    .map((phase) => ({ phase, ...compareTotals(phaseTotal(virtual, phase), phaseTotal(native, phase)) }));
  return { ...compareTotals(virtual.total, native.total), phases };
}

/** Cycles as microseconds on the profile's clock. */
export function microseconds(cycles: number, profile: CostProfile): number {
  return cycles / (profile.clockGHz * 1000);
}

/**
 * Why pricing these counts on this processor would mislead, one sentence per
 * reason; empty when nothing is wrong. Checks the numbers (whole, ≥ 0), the
 * exit-reason names (those of vmcs/exit-reasons.ts), EPT work on a part
 * without EPT, and TLB flushes at VM transitions that do not match the part's
 * VPID.
 */
export function compatibilityProblems(counts: CostCounts, profile: CostProfile): string[] {
  const problems = countProblems(counts);
  for (const reason of Object.keys(counts.exits)) {
    if (!Object.hasOwn(ExitReason, reason)) problems.push(`exit reason '${reason}' is not a basic exit-reason name of the SDM`);
  }
  if (!profile.ept && (counts.eptWalks > 0 || counts.eptReferences > 0)) {
    problems.push(`the run used EPT (${counts.eptWalks} EPT walks) but ${profile.fullName} has no EPT`);
  }
  const transitionFlushes = counts.tlbFlushes[TRANSITION_FLUSH] ?? 0;
  if (!profile.vpid && counts.entries > 0 && transitionFlushes === 0) {
    problems.push(`${profile.fullName} has no VPID and flushes the TLB at every VM entry and exit, but the run kept its TLB across them: the refill walks are missing`);
  }
  if (profile.vpid && transitionFlushes > 0) {
    problems.push(`the run flushed the TLB at ${transitionFlushes} VM transitions, which ${profile.fullName} avoids with VPID: its refill walks are extra`);
  }
  return problems;
}

/** One run to price: its counts on a profile, and optionally the bare run of the same guest. */
export interface CostRun {
  readonly profile: CostProfile;
  readonly counts: CostCounts;
  /** Counts of the same guest run bare (no VMX), for the overhead. */
  readonly native?: CostCounts;
  /** What to call the run in reports (e.g. 'skylake shadow'); the profile's name when absent. */
  readonly label?: string;
}

/** A priced run, ready for report.ts and plot.ts. */
export interface CostResult {
  readonly label: string;
  readonly profile: CostProfile;
  readonly cost: CostBreakdown;
  /** The bare run priced on the same profile, when given. */
  readonly native?: CostBreakdown;
  readonly overhead?: Overhead;
  /** compatibilityProblems of the counts, and of the bare run's counts (prefixed "bare run:"). */
  readonly problems: readonly string[];
}

/** Bare-run problems: bad numbers, and any hardware-assist work a bare run cannot have done. */
function nativeProblems(native: CostCounts): string[] {
  const problems = countProblems(native);
  if (totalExits(native) > 0 || native.entries > 0) problems.push(`it has ${totalExits(native)} VM exits and ${native.entries} VM entries`);
  return problems.map((p) => `bare run: ${p}`);
}

/** Prices a run, its bare run if given, and the overhead between them. */
export function evaluate(run: CostRun): CostResult {
  const cost = price(run.counts, run.profile);
  const problems = compatibilityProblems(run.counts, run.profile);
  const label = run.label ?? run.profile.name;
  if (run.native === undefined) return { label, profile: run.profile, cost, problems };
  const native = price(run.native, run.profile);
  return {
    label,
    profile: run.profile,
    cost,
    native,
    overhead: overhead(cost, native),
    problems: [...problems, ...nativeProblems(run.native)],
  };
}
