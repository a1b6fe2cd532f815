/**
 * Counts of a run for the cost model, taken from what the model already
 * counts: instructions by class (cpu.classCounts, insn-class.ts), VM exits by
 * reason and EPT walks (the VMX unit), page walks, TLB hits and flushes
 * (paging.ts), and under the hypervisor its entries, VMREADs and VMWRITEs,
 * device operations and injections.
 *
 * Phases: a guest marks them at port 0xE0 (platform/phase-marker.ts). The
 * change takes effect at the next instruction boundary after the marking OUT,
 * which belongs to the old phase, on the bare processor as under the
 * hypervisor: the marker stops the processor's turn, and the run loop calls
 * `sync()` between turns and between exits.
 */
import { exitReasonName } from '../../vmcs/exit-reasons.js';
import type { Cpu } from '../cpu/cpu.js';
import { INSN_CLASSES } from '../cpu/insn-class.js';
import type { PhaseMarker } from '../platform/phase-marker.js';
import type { Vmx } from '../vmx/vmx.js';
import { addCounts, emptyCounts, TRANSITION_FLUSH, type CostCounts, type PhaseCounts } from './counts.js';

/** What a run is counted on: its processors with their VMX units, and the hypervisor's counters when it runs one. */
export interface CountSource {
  readonly units: readonly { readonly cpu: Cpu; readonly vmx: Vmx }[];
  readonly hypervisor?: {
    readonly entries: number; readonly vmreads: number; readonly vmwrites: number;
    readonly deviceOps: number; readonly injections: number;
    /** Without VPID every VM entry and exit flushes the guest's TLB (29.4.3.1). */
    readonly vpid: boolean;
    readonly shadow?: Readonly<CostCounts['shadow']>;
  };
}

/** The counts of the run so far (cumulative). */
export function countsNow(s: CountSource): PhaseCounts {
  const c = emptyCounts();
  for (const { cpu, vmx } of s.units) {
    const k = cpu.classCounts;
    if (k !== null) INSN_CLASSES.forEach((name, i) => { c.instructions[name] += k[i]!; });
    vmx.exitCounts.forEach((n, reason) => {
      if (n > 0) { const name = exitReasonName(reason) ?? `REASON_${reason}`; c.exits[name] = (c.exits[name] ?? 0) + n; }
    });
    const p = cpu.paging.counters;
    c.walks += p.walks; c.walkReferences += p.references; c.tlbHits += p.hits;
    for (const [cause, n] of Object.entries(p.flushes)) if (n > 0) c.tlbFlushes[cause] = (c.tlbFlushes[cause] ?? 0) + n;
    c.eptWalks += vmx.ept.counters.walks; c.eptReferences += vmx.ept.counters.references;
  }
  const h = s.hypervisor;
  if (h !== undefined) {
    c.entries = h.entries; c.vmreads = h.vmreads; c.vmwrites = h.vmwrites; c.deviceOps = h.deviceOps; c.injections = h.injections;
    if (!h.vpid) {
      const exits = Object.values(c.exits).reduce((a, b) => a + b, 0);
      if (h.entries + exits > 0) c.tlbFlushes[TRANSITION_FLUSH] = h.entries + exits;
    }
    if (h.shadow !== undefined) c.shadow = { ...h.shadow };
  }
  return c;
}

/** a − b, field by field (for the part of a run between two snapshots). */
export function subtractCounts(a: PhaseCounts, b: PhaseCounts): PhaseCounts {
  const negated = JSON.parse(JSON.stringify(b), (_k, v: unknown) => (typeof v === 'number' ? -v : v)) as PhaseCounts;
  const d = addCounts(a, negated) as PhaseCounts;
  // Keys that ended at 0 (a cause or reason that did not occur in the part) are left out.
  for (const rec of [d.exits, d.tlbFlushes]) for (const [k, n] of Object.entries(rec)) if (n === 0) delete rec[k];
  return d;
}

/**
 * Turns on class counting on the processors and follows the guest's phase
 * marks. `stopTurn` ends the running processor's turn (so that the mark takes
 * effect at the instruction boundary after it); call `sync()` between turns
 * and exits, and `finish()` at the end.
 */
export class CostRecorder {
  private phase = 0;
  private pending: number | null = null;
  private last: PhaseCounts;
  private readonly phases = new Map<number, PhaseCounts>();

  constructor(private readonly source: () => CountSource, marker: PhaseMarker, stopTurn: () => void) {
    for (const { cpu } of source().units) cpu.classCounts ??= new Float64Array(INSN_CLASSES.length);
    this.phase = marker.phase;
    this.last = countsNow(source());
    marker.onPhase = (next) => { this.pending = next; stopTurn(); };
  }

  /** Applies a phase mark made since the last call. */
  sync(): void {
    if (this.pending === null) return;
    this.close();
    this.phase = this.pending;
    this.pending = null;
  }

  /** The whole run's counts, with `phases` when the guest marked any. */
  finish(): CostCounts {
    this.sync();
    this.close();
    const total = countsNow(this.source());
    if (this.phases.size === 1 && this.phases.has(0)) return total;
    return { ...total, phases: Object.fromEntries(this.phases) };
  }

  /** The counts since the last snapshot go to the current phase. */
  private close(): void {
    const now = countsNow(this.source());
    const part = subtractCounts(now, this.last);
    const before = this.phases.get(this.phase);
    this.phases.set(this.phase, before === undefined ? part : addCounts(before, part) as PhaseCounts);
    this.last = now;
  }
}
