/**
 * Guest time and a small timer scheduler for the platform devices.
 *
 * DESIGN "Determinism": time inside the guest advances with the instruction
 * count, never with the host's clock. The fixed rate is one retired instruction
 * = 1 ns (a nominal 1 GHz TSC), the same convention the local APIC model uses.
 * A halted processor retires nothing, so the run loop may move time forward to
 * the next deadline with `skipTo` (still deterministic: it depends only on the
 * instruction stream).
 *
 * Devices compute their registers from `ns()` when they are read, and use timers
 * only for the moments something must happen on its own (an interrupt line
 * rising). The run loop's part:
 *   - run at most `nextDeadline() - ns()` instructions, then call `runDue()`;
 *   - when the processor halts, `skipTo(nextDeadline())` (if finite), `runDue()`.
 */

/** Nanoseconds of guest time per retired instruction (a nominal 1 GHz TSC). */
export const NS_PER_INSTRUCTION = 1;

const NS_PER_S = 1e9;

/** floor(a / b) for non-negative integers a, b below 2^53, exactly (no rounding of the quotient). */
function floorDiv(a: number, b: number): number {
  return (a - (a % b)) / b;
}

/**
 * Clock ticks of a `hz` oscillator completed by time `ns` ≥ 0 (oscillator started
 * at ns 0): floor(ns * hz / 1e9), exact for any integer ns below 2^53 (hz below 9e6).
 */
export function ticksAt(ns: number, hz: number): number {
  const s = floorDiv(ns, NS_PER_S);
  return s * hz + floorDiv((ns - s * NS_PER_S) * hz, NS_PER_S);
}

/** The first ns at which `ticksAt(ns, hz)` reaches `tick` ≥ 0: ceil(tick * 1e9 / hz), exact. */
export function tickTime(tick: number, hz: number): number {
  const q = floorDiv(tick, hz);
  const a = (tick - q * hz) * NS_PER_S;
  const c = floorDiv(a, hz);
  return q * NS_PER_S + (c * hz === a ? c : c + 1);
}

/** A device's timer: one pending deadline at most. Created once by `Clock.timer`. */
export class Timer {
  /** Guest ns at which `fire` runs; Infinity when disarmed. */
  deadline = Infinity;

  constructor(private readonly clock: Clock, readonly fire: (deadline: number) => void) {}

  /** Arms (or re-arms) the timer for guest time `ns`. */
  set(ns: number): void {
    this.deadline = ns;
    this.clock.dirty = true;
    if (ns < this.clock.sliceEnd) this.clock.onSooner?.();
  }

  cancel(): void {
    if (this.deadline !== Infinity) this.set(Infinity);
  }
}

export class Clock {
  private readonly timers: Timer[] = [];
  private skipped = 0;
  private earliest = Infinity;
  /** @internal set by Timer when a deadline changes. */
  dirty = false;
  /**
   * Guest time at which the run loop's current slice ends (Infinity between
   * slices). A timer armed for before then calls `onSooner`, so that the loop
   * can end the slice there: a device programmed by the running guest fires on time.
   */
  sliceEnd = Infinity;
  onSooner: (() => void) | null = null;

  /** `now` returns the number of instructions retired so far. */
  constructor(private readonly now: () => number) {}

  /** Guest time in ns. */
  ns(): number {
    return this.now() * NS_PER_INSTRUCTION + this.skipped;
  }

  /** Moves guest time forward to `ns` without retiring instructions (a halted processor). */
  skipTo(ns: number): void {
    const d = ns - this.ns();
    if (d > 0 && Number.isFinite(d)) this.skipped += d;
  }

  /** Creates a timer; `fire(deadline)` runs from `runDue` once guest time reaches its deadline. */
  timer(fire: (deadline: number) => void): Timer {
    const t = new Timer(this, fire);
    this.timers.push(t);
    return t;
  }

  /** The earliest armed deadline in guest ns, or Infinity if none. */
  nextDeadline(): number {
    if (this.dirty) {
      let e = Infinity;
      for (const t of this.timers) if (t.deadline < e) e = t.deadline;
      this.earliest = e;
      this.dirty = false;
    }
    return this.earliest;
  }

  /**
   * Fires every timer whose deadline has been reached, earliest first; equal
   * deadlines fire in the order the timers were created. A timer may re-arm
   * itself from `fire`, but only for a later time.
   */
  runDue(): void {
    const now = this.ns();
    for (;;) {
      if (this.nextDeadline() > now) return;
      let due: Timer | null = null;
      for (const t of this.timers) if (t.deadline <= now && (due === null || t.deadline < due.deadline)) due = t;
      if (due === null) return;
      const d = due.deadline;
      due.set(Infinity);
      due.fire(d);
      // A broken invariant, not a guest action: without it this loop would never end.
      if (due.deadline <= d) throw new Error(`clock: a timer re-armed itself for ${due.deadline} ns from its deadline ${d} ns`);
    }
  }
}
