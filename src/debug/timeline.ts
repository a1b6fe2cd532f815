/**
 * Time travel, one implementation for both of the debugger's engines: over
 * hvsim's own VM (engine.ts) and over a bare machine running the image's own
 * hypervisor (bare-engine.ts). What differs between them — what is
 * snapshotted (a Vm or a PcMachine), the engine's own state kept with each
 * snapshot, how a run forward reaches a point — is the engine's part (a
 * `Traveller`); the rest is here.
 *
 * Runs are deterministic, so the timeline keeps snapshots (snapshot.ts: every
 * object of the machine's state and memory page by page, sharing what did not
 * change) and goes back by restoring the nearest earlier one and running
 * forward to the point asked for. A snapshot is taken at the start and then,
 * when the engine stops (an exit, or a slice boundary), once `interval`
 * instruction-equivalents have passed since the previous one (an exit counts
 * as EXIT_COST instructions: what replaying it costs); when there are more
 * than `maxSnapshots`, every second one goes and the interval doubles. Going
 * back therefore replays at most one interval.
 *
 * Changes a user makes (gdb's register and memory writes; a handler replaced
 * in `vm.handlers`) change the run from where they are made: the recorded
 * future is dropped, a snapshot of the changed state is taken there (never
 * thinned out), and going back to before the change undoes it.
 *
 * The guest's serial output is passed on once: a byte replayed while going
 * forward again over a stretch already run is not printed twice.
 */
import { captureState, restoreState, snapshotBytes, type CaptureRules, type Snapshotted, type StateSnapshot } from './snapshot.js';

/** Where a run stands (see each engine's file comment for what `atExit` means there). */
export interface Position {
  /** VM exits so far (at an exit: its sequence number). */
  readonly exits: number;
  /** Standing at exit `exits` (the VM engine: before its handler; the bare engine: at HOST_RIP, nothing of the handler run). */
  readonly atExit: boolean;
  /** Instructions retired. */
  readonly insns: number;
}

/** Orders positions along a run: negative when `a` comes before `b`. */
export function comparePositions(a: Position, b: Position): number {
  return a.exits - b.exits || (a.atExit ? 0 : 1) - (b.atExit ? 0 : 1) || a.insns - b.insns;
}

/** Default instruction-equivalents between two snapshots. */
export const SNAPSHOT_INTERVAL = 2_000_000;
/** What replaying one exit costs, in instructions (a handler and a VM entry). */
export const EXIT_COST = 300;
/** Snapshots kept before every second one goes. */
export const MAX_SNAPSHOTS = 512;

/** The replay of a recorded stretch did not repeat it: a broken invariant of the model's determinism. */
export class ReplayDivergence extends Error {}

/** The engine's part of time travel (see the file comment). */
export interface Traveller<Saved> {
  /** Where the run stands now. */
  position(): Position;
  /** The engine's own state to keep with a snapshot taken now (what the machine's state does not hold). */
  save(): Saved;
  /** Puts the engine's own state back at `pos`, once the machine's has been restored. */
  restore(saved: Saved, pos: Position): void;
  /** Forgets what the engine recorded of the run after exit `exits` (that future is being rewritten). */
  forgetAfter(exits: number): void;
  /** Runs forward with no breakpoint to `target`; 'arrived' once there, else what stopped the run. */
  runTo(target: Position): string;
  /** The error that says a replay did not repeat the run, with where the processor stands. */
  divergence(what: string): ReplayDivergence;
}

/** Settings of a timeline. */
export interface TimelineOptions {
  /** Instruction-equivalents between snapshots (default SNAPSHOT_INTERVAL). */
  readonly snapshotInterval?: number;
  /** Snapshots kept before thinning (default MAX_SNAPSHOTS). */
  readonly maxSnapshots?: number;
  /** Bytes the guest writes to COM1 (each once, replays included). */
  readonly serialOut?: (byte: number) => void;
}

interface Snap<Saved> {
  readonly pos: Position;
  readonly state: StateSnapshot;
  readonly saved: Saved;
  /** Taken right after a write the user made: never thinned out. */
  readonly mutation: boolean;
}

/** Snapshots held, the interval between them now, and the memory they take together. */
export interface SnapshotStats { readonly count: number; readonly interval: number; readonly bytes: number }

/** The snapshots of one run and the way back along it (see the file comment). */
export class Timeline<Saved> {
  private readonly maxSnapshots: number;
  private readonly serialOut: (byte: number) => void;
  private interval: number;
  private snapshots: Snap<Saved>[] = [];
  private lastSnapshotAt: Position;
  private readonly mutations: Position[] = [];
  /** Instructions retired at each exit (index seq - 1), for every exit recorded. */
  private readonly exitInsns: number[] = [];
  private serialCount = 0;
  private serialShown = 0;
  /** Where the run started (before anything ran). */
  readonly start: Position;

  /** Takes the first snapshot, of the engine as it stands now. */
  constructor(private readonly machine: Snapshotted, private readonly rules: CaptureRules,
    private readonly host: Traveller<Saved>, options: TimelineOptions = {}) {
    this.maxSnapshots = Math.max(2, options.maxSnapshots ?? MAX_SNAPSHOTS);
    this.interval = options.snapshotInterval ?? SNAPSHOT_INTERVAL;
    this.serialOut = options.serialOut ?? ((): void => {});
    this.start = this.lastSnapshotAt = host.position();
    this.takeSnapshot(false);
  }

  // ---- the guest's serial output ---------------------------------------------------------

  /** A byte the guest wrote to COM1: passed on unless it was already, before going back. */
  serial(byte: number): void {
    this.serialCount++;
    if (this.serialCount > this.serialShown) {
      this.serialShown = this.serialCount;
      this.serialOut(byte);
    }
  }

  /** Serial bytes written so far on this run (kept with each snapshot by the engine). */
  get serialBytes(): number { return this.serialCount; }
  set serialBytes(n: number) { this.serialCount = n; }

  // ---- exits ---------------------------------------------------------------------------------

  /** Exit `seq` happened with `insns` instructions retired. */
  noteExit(seq: number, insns: number): void {
    this.exitInsns[seq - 1] = insns;
  }

  // ---- snapshots -----------------------------------------------------------------------------

  /** Takes a snapshot here when an interval has passed since the last one (and none is here already). */
  maybeSnapshot(): void {
    const p = this.host.position(), last = this.lastSnapshotAt;
    const cost = (p.insns - last.insns) + EXIT_COST * (p.exits - last.exits);
    if (cost < this.interval || comparePositions(p, last) <= 0) return;
    this.takeSnapshot(false);
  }

  private takeSnapshot(mutation: boolean): void {
    const pos = this.host.position();
    const k = this.snapshots.findIndex((s) => comparePositions(s.pos, pos) >= 0);
    if (k >= 0 && comparePositions(this.snapshots[k]!.pos, pos) === 0) {
      if (!mutation) { this.lastSnapshotAt = pos; return; }
      this.snapshots.splice(k, 1);
    }
    const before = this.snapshotBefore(pos);
    const snap: Snap<Saved> = { pos, mutation, state: captureState(this.machine, this.rules, before?.state ?? null), saved: this.host.save() };
    const at = this.snapshots.findIndex((s) => comparePositions(s.pos, pos) > 0);
    if (at < 0) this.snapshots.push(snap); else this.snapshots.splice(at, 0, snap);
    this.lastSnapshotAt = pos;
    if (this.snapshots.length > this.maxSnapshots) this.thin();
  }

  /** Every second snapshot goes (never the first, the last, or one taken after a write); the interval doubles. */
  private thin(): void {
    const last = this.snapshots.length - 1;
    this.snapshots = this.snapshots.filter((s, k) => k === 0 || k === last || s.mutation || k % 2 === 0);
    this.interval *= 2;
  }

  /** The latest snapshot at or before `pos`. */
  private snapshotBefore(pos: Position): Snap<Saved> | undefined {
    let found: Snap<Saved> | undefined;
    for (const s of this.snapshots) {
      if (comparePositions(s.pos, pos) > 0) break;
      found = s;
    }
    return found;
  }

  stats(): SnapshotStats {
    return { count: this.snapshots.length, interval: this.interval, bytes: snapshotBytes(this.snapshots.map((s) => s.state)) };
  }

  // ---- going back ----------------------------------------------------------------------------

  /**
   * Goes to `target` on the recorded run (or forward on it): restores the
   * latest snapshot at or before it and runs to it, with no breakpoint.
   * Returns how many of the user's changes made after `target` this undid.
   */
  goTo(target: Position): number {
    let undone = 0;
    while (this.mutations.length > 0 && comparePositions(target, this.mutations.at(-1)!) < 0) {
      const m = this.mutations.pop()!;
      this.snapshots = this.snapshots.filter((s) => comparePositions(s.pos, m) < 0);
      this.forgetAfter(m.exits);
      undone++;
    }
    const snap = this.snapshotBefore(target)!;
    restoreState(this.machine, snap.state);
    this.host.restore(snap.saved, snap.pos);
    this.lastSnapshotAt = snap.pos;
    const reached = this.host.runTo(target);
    if (reached !== 'arrived') throw this.host.divergence(`the run ${reached === 'ended' ? 'ended' : 'stopped'} before the point asked for`);
    return undone;
  }

  /** The position of exit `n` exits back from `p` (the exit stood at does not count); null before the first. */
  exitBack(p: Position, n: number): Position | null {
    const seq = p.atExit ? p.exits - n : p.exits - n + 1;
    if (seq < 1) return null;
    const insns = this.exitInsns[seq - 1];
    if (insns === undefined) throw this.host.divergence(`exit #${seq} has no record`);
    return { exits: seq, atExit: true, insns };
  }

  /**
   * The position `n` steps back from `p`, where the guest stood the first
   * time; null at the start. A step is an instruction retired; with
   * `exitIsStep` (the bare engine: a VM exit does not retire the exiting
   * instruction) a VM exit is one too, and the position after it is the exit.
   */
  stepsBack(p: Position, n: number, exitIsStep: boolean): Position | null {
    const s0 = this.start, steps = (q: Position): number => q.insns + (exitIsStep ? q.exits : 0);
    if (comparePositions(p, s0) <= 0) return null;
    const to = Math.max(steps(s0), steps(p) - n);
    // Exits that came before that point: the steps at exit j (index j - 1) are below `to`.
    const at = (j: number): number => this.exitInsns[j]! + (exitIsStep ? j + 1 : 0);
    let lo = 0, hi = Math.min(this.exitInsns.length, p.exits);
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (at(mid) < to) lo = mid + 1; else hi = mid;
    }
    if (exitIsStep && lo < p.exits && lo < this.exitInsns.length && at(lo) === to) return { exits: lo + 1, atExit: true, insns: this.exitInsns[lo]! };
    return { exits: lo, atExit: false, insns: to - (exitIsStep ? lo : 0) };
  }

  // ---- changes the user makes ----------------------------------------------------------------

  /**
   * The user changed the machine at the position: the recorded future is
   * dropped and the changed state snapshotted.
   */
  mutated(): void {
    const pos = this.host.position();
    this.snapshots = this.snapshots.filter((s) => comparePositions(s.pos, pos) < 0);
    this.forgetAfter(pos.exits);
    this.mutations.push(pos);
    this.serialShown = this.serialCount;
    this.takeSnapshot(true);
  }

  private forgetAfter(exits: number): void {
    this.exitInsns.length = Math.min(this.exitInsns.length, exits);
    this.host.forgetAfter(exits);
  }
}
