/**
 * The 8254 Programmable Interval Timer (Intel 8254 datasheet, order no. 231164):
 * three 16-bit down counters at ports 0x40-0x42, control word register at 0x43.
 *
 * Nothing ticks: the input clock is 1.193182 MHz derived from guest time
 * (`ticksAt(clock.ns(), PIT_HZ)`), and each counter's CE and OUT are computed
 * from the number of CLK pulses since its count was loaded. Only channel 0 has
 * a timer on the Clock, armed for the next rising edge of OUT (that is what
 * IRQ 0 sees); channel 2's OUT is computed when port 0x61 is read.
 *
 * Choices:
 * - A count is loaded into CE on the first CLK pulse after it is written
 *   (the datasheet's "next CLK pulse"); reads before that pulse see the new count.
 * - The IRQ 0 line is driven with OUT at each programming step, and at each
 *   rising edge of OUT it is pulsed low then high, so an edge-triggered PIC sees
 *   exactly one edge per rising OUT edge. Between events it keeps its level
 *   (in mode 3 the real line is low half the time; no edge is lost by this).
 * - Counts of 1 in modes 2 and 3 (illegal per the datasheet) count but give no
 *   edges. Channels 0 and 1 have their gate tied high, as on the PC; channel 2's
 *   gate comes from port 0x61 bit 0 and starts low.
 * - Before the first control word (power-up state is undefined) a counter is
 *   idle with OUT high and CE 0, so programming modes 1-5 makes no IRQ 0 edge.
 */
import { type Clock, tickTime, ticksAt, type Timer } from './clock.js';
import type { PortBus, PortSize } from './ports.js';

/** The 8254 input clock on PCs, Hz. */
export const PIT_HZ = 1_193_182;

function fromBcd(v: number): number {
  return ((v >> 12) & 0xf) * 1000 + ((v >> 8) & 0xf) * 100 + ((v >> 4) & 0xf) * 10 + (v & 0xf);
}

function toBcd(v: number): number {
  return ((Math.floor(v / 1000) % 10) << 12) | ((Math.floor(v / 100) % 10) << 8) | ((Math.floor(v / 10) % 10) << 4) | (v % 10);
}

class Counter {
  /** Control word fields: mode as programmed (M2-M0), effective mode (6 → 2, 7 → 3), RW, BCD. */
  modeBits = 0;
  mode = 0;
  access = 3;
  bcd = false;
  gate: boolean;

  /** Count register: the count last written (raw 16 bits); `armed` once a full count was written. */
  cr = 0;
  armed = false;
  private lsbWritten = false;
  private lsb = 0;

  /** Output latch / status latch and the read toggle for LSB-then-MSB access. */
  private readMsb = false;
  private latched = false;
  private latchValue = 0;
  private statusLatched = false;
  private status = 0;

  /** Counting state: CE holds `n` at CLK tick `loadTick` (e = tick - loadTick); `pausedE` ≥ 0 while the gate holds it. */
  counting = false;
  n = 0x10000;
  loadTick = 0;
  pausedE = -1;
  idleCe = 0;
  idleOut = true;
  /** A count written during counting in modes 2/3 takes over at tick `pendingAt` with its e = 0 at `pendingLoad`. */
  pendingN = 0;
  pendingAt = 0;
  pendingLoad = 0;
  /** CLK tick at which the written count reaches CE (status bit 6, Null Count). */
  nullUntil = Infinity;

  constructor(gate: boolean) { this.gate = gate; }

  private get modulus(): number { return this.bcd ? 10000 : 0x10000; }

  /** The count a CR value stands for: 0 is the largest (2^16, or 10^4 in BCD). */
  private countOf(cr: number): number {
    const v = this.bcd ? fromBcd(cr) : cr;
    return v === 0 ? this.modulus : v;
  }

  /** Applies a count that was due to take over at or before `t`. */
  settle(t: number): void {
    if (this.pendingN !== 0 && t >= this.pendingAt) {
      this.n = this.pendingN;
      this.loadTick = this.pendingLoad;
      this.pendingN = 0;
    }
  }

  private e(t: number): number {
    return this.pausedE >= 0 ? this.pausedE : t > this.loadTick ? t - this.loadTick : 0;
  }

  /** CE as a binary number 0..modulus-1 at tick t (settled). */
  ce(t: number): number {
    if (!this.counting) return this.idleCe;
    const n = this.n, e = this.e(t), m = this.modulus;
    switch (this.mode) {
      case 2: return (n - (e % n)) % m;
      case 3: {
        // Datasheet, mode 3: even counts go N, N-2, ..., 2 in each half; odd counts
        // load N-1 and go down by two to 0 (one extra CLK in the high half).
        const p = e % n, high = (n + 1) >> 1;
        if ((n & 1) === 0) return (n - 2 * (p % (n >> 1))) % m;
        return (n - 1 - 2 * (p < high ? p : p - high)) % m;
      }
      default: return (((n - (e % m)) % m) + m) % m; // modes 0, 1, 4, 5 wrap after terminal count
    }
  }

  /** OUT at tick t (settled). */
  out(t: number): boolean {
    if (!this.counting) return this.idleOut;
    const n = this.n, e = this.e(t);
    switch (this.mode) {
      case 0: case 1: return e >= n;
      case 2: return !this.gate || e % n !== n - 1;
      case 3: return !this.gate || e % n < ((n + 1) >> 1);
      default: return e !== n; // 4, 5: one CLK low at terminal count
    }
  }

  /** The first tick > t at which OUT rises (Infinity if none is coming). */
  nextEdge(t: number): number {
    if (!this.counting || this.pausedE >= 0) return Infinity;
    const old = this.edgeAfter(t, this.n, this.loadTick);
    if (this.pendingN === 0 || old <= this.pendingAt) return old;
    return this.edgeAfter(t, this.pendingN, this.pendingLoad);
  }

  private edgeAfter(t: number, n: number, load: number): number {
    let edge: number;
    switch (this.mode) {
      case 0: case 1: edge = load + n; break;
      case 4: case 5: edge = load + n + 1; break;
      default: {
        if (n < 2) return Infinity;
        const k = t < load ? 1 : Math.floor((t - load) / n) + 1;
        return load + k * n;
      }
    }
    return edge > t ? edge : Infinity;
  }

  /** Control word with RW ≠ 00 (datasheet, "Write Operations"): new mode, counter idle until a count arrives. */
  program(control: number, t: number): void {
    this.idleCe = this.ce(t);
    this.modeBits = (control >> 1) & 7;
    this.mode = this.modeBits > 5 ? this.modeBits - 4 : this.modeBits;
    this.access = (control >> 4) & 3;
    this.bcd = (control & 1) !== 0;
    this.counting = false;
    this.armed = false;
    this.pendingN = 0;
    this.idleOut = this.mode !== 0; // mode 0: OUT low after the control word; other modes: high
    this.nullUntil = Infinity;
    this.lsbWritten = false;
    this.readMsb = false;
    this.latched = false;
    this.statusLatched = false;
  }

  writeCount(value: number, t: number): void {
    if (this.access === 1) { this.load(value, t); return; }
    if (this.access === 2) { this.load(value << 8, t); return; }
    if (!this.lsbWritten) {
      this.lsbWritten = true;
      this.lsb = value;
      // Mode 0: writing the first byte stops counting and OUT goes low at once.
      if (this.mode === 0) { this.idleCe = this.ce(t); this.counting = false; this.idleOut = false; }
      return;
    }
    this.lsbWritten = false;
    this.load(this.lsb | (value << 8), t);
  }

  private load(cr: number, t: number): void {
    this.cr = cr;
    this.armed = true;
    const n = this.countOf(cr);
    if (this.mode === 1 || this.mode === 5) { this.nullUntil = Infinity; return; } // waits for a gate trigger
    if ((this.mode === 2 || this.mode === 3) && this.counting && this.pausedE < 0) {
      // The new count is loaded at the end of the current period (mode 2) or half-cycle (mode 3).
      const e = this.e(t), start = this.loadTick + Math.floor(e / this.n) * this.n;
      const high = (this.n + 1) >> 1;
      if (this.mode === 3 && e % this.n < high) {
        this.pendingAt = start + high;
        this.pendingLoad = this.pendingAt - ((n + 1) >> 1); // continue in the new count's low half
      } else {
        this.pendingAt = this.pendingLoad = start + this.n;
      }
      this.pendingN = n;
      this.nullUntil = this.pendingAt;
      return;
    }
    this.start(n, t);
  }

  /** Loads CE with n on the next CLK pulse (held if the gate disables counting in this mode). */
  private start(n: number, t: number): void {
    this.counting = true;
    this.n = n;
    this.pendingN = 0;
    this.loadTick = t + 1;
    this.pausedE = this.gate || this.mode === 1 || this.mode === 5 ? -1 : 0;
    this.nullUntil = t + 1;
  }

  /** Gate input (datasheet, table "Gate Pin Operations Summary"). */
  setGate(level: boolean, t: number): void {
    if (level === this.gate) return;
    this.gate = level;
    const mode = this.mode;
    if (level) {
      if (mode === 1 || mode === 5 || mode === 2 || mode === 3) {
        // Rising edge: (re)trigger — CE is loaded from CR on the next CLK.
        if (this.armed) this.start(this.countOf(this.cr), t);
      } else if (this.counting && this.pausedE >= 0) {
        this.loadTick = t - this.pausedE; // modes 0/4: counting resumes
        this.pausedE = -1;
      }
    } else if (this.counting && mode !== 1 && mode !== 5 && this.pausedE < 0) {
      this.pausedE = this.e(t); // modes 0/2/3/4: low gate suspends counting
      if (mode === 2 || mode === 3) this.pendingN = 0;
    }
  }

  /** Counter latch command: ignored while a latched count is still unread. */
  latchCount(t: number): void {
    if (this.latched) return;
    this.latched = true;
    this.latchValue = this.bcd ? toBcd(this.ce(t)) : this.ce(t);
  }

  latchStatus(t: number): void {
    if (this.statusLatched) return;
    this.statusLatched = true;
    this.status = (this.out(t) ? 0x80 : 0) | (t < this.nullUntil ? 0x40 : 0) |
      (this.access << 4) | (this.modeBits << 1) | (this.bcd ? 1 : 0);
  }

  read(t: number): number {
    if (this.statusLatched) { this.statusLatched = false; return this.status; }
    const value = this.latched ? this.latchValue : this.bcd ? toBcd(this.ce(t)) : this.ce(t);
    let msb: boolean;
    if (this.access === 3) { msb = this.readMsb; this.readMsb = !msb; } else msb = this.access === 2;
    // The latch holds until the whole count (one byte, or LSB then MSB) has been read.
    if (this.access !== 3 || msb) this.latched = false;
    return msb ? (value >> 8) & 0xff : value & 0xff;
  }
}

export class Pit8254 {
  private readonly counters: Counter[] = [new Counter(true), new Counter(true), new Counter(false)];
  private readonly timer: Timer;
  /** Level last driven on IRQ 0; taken as OUT's idle high, so programming mode 1-5 first drives nothing. */
  private irqLevel = true;

  /** `irq0` drives IRQ 0 with channel 0's OUT. */
  constructor(private readonly clock: Clock, private readonly irq0: (level: boolean) => void = () => {}) {
    this.timer = clock.timer((deadline) => this.edge(deadline));
  }

  attach(bus: PortBus): void {
    bus.register(0x40, 4, this);
  }

  /** Current CLK tick count. */
  private tick(): number {
    return ticksAt(this.clock.ns(), PIT_HZ);
  }

  private counter(channel: number, t: number): Counter {
    const c = this.counters[channel]!;
    c.settle(t);
    return c;
  }

  /** Channel's OUT level now. */
  output(channel: number): boolean {
    const t = this.tick();
    return this.counter(channel, t).out(t);
  }

  /** Channel's GATE input (channel 2 from port 0x61 bit 0). */
  setGate(channel: number, level: boolean): void {
    const t = this.tick();
    this.counter(channel, t).setGate(level, t);
    if (channel === 0) this.changed(t);
  }

  read(port: number, _size: PortSize): number {
    if (port === 0x43) return 0xff; // the control word register cannot be read
    const t = this.tick();
    return this.counter(port - 0x40, t).read(t);
  }

  write(port: number, _size: PortSize, value: number): void {
    const t = this.tick();
    if (port !== 0x43) {
      this.counter(port - 0x40, t).writeCount(value, t);
      if (port === 0x40) this.changed(t);
      return;
    }
    const sc = value >> 6;
    if (sc === 3) {
      // Read-back command: bit 5 = 0 latches count, bit 4 = 0 latches status, bits 3-1 select counters 2-0.
      for (let i = 0; i < 3; i++) {
        if ((value & (2 << i)) === 0) continue;
        const c = this.counter(i, t);
        if ((value & 0x20) === 0) c.latchCount(t);
        if ((value & 0x10) === 0) c.latchStatus(t);
      }
      return;
    }
    const c = this.counter(sc, t);
    if ((value & 0x30) === 0) c.latchCount(t); // counter latch command
    else {
      c.program(value, t);
      if (sc === 0) this.changed(t);
    }
  }

  /** After channel 0 was programmed or gated: drive IRQ 0 with OUT and arm the next edge. */
  private changed(t: number): void {
    const c = this.counters[0]!;
    this.setLine(c.out(t));
    this.arm(c, t);
  }

  private arm(c: Counter, t: number): void {
    const edge = c.nextEdge(t);
    if (edge === Infinity) this.timer.cancel(); else this.timer.set(tickTime(edge, PIT_HZ));
  }

  /** Timer: channel 0's OUT rises now. */
  private edge(deadline: number): void {
    const t = ticksAt(deadline, PIT_HZ);
    const c = this.counter(0, t);
    this.setLine(false);
    this.setLine(true);
    this.arm(c, t);
  }

  private setLine(level: boolean): void {
    if (level === this.irqLevel) return;
    this.irqLevel = level;
    this.irq0(level);
  }
}
