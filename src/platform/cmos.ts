/**
 * The MC146818 real-time clock and its 128 bytes of CMOS RAM (Motorola MC146818A
 * datasheet), at ports 0x70 (index; bit 7 = NMI disable) and 0x71 (data).
 *
 * Time is deterministic: the clock starts at `epoch` (default 2024-01-01
 * 00:00:00, a Monday) at guest time 0 and advances with guest time (Clock.ns).
 * Nothing ticks: registers are computed from the time when read.
 *
 * Choices:
 * - The update cycle ends at each whole second after the time base started;
 *   UIP (register A bit 7) reads 1 during the 244 µs before the update cycle
 *   and the 1984 µs it lasts (the datasheet's figures for a 32.768 kHz base),
 *   i.e. the last 2228 µs before the second changes. UF is set, and the alarm
 *   compared, when the second changes.
 * - The time base runs only with register A DV = 010 (32.768 kHz). Leaving
 *   another DV value for 010 makes the first update 500 ms later (datasheet).
 *   SET (register B bit 7) freezes the time registers for writing; clearing it
 *   restarts the time from them, the next update one second later. SET also
 *   clears UIE (datasheet). DSE (daylight saving) is ignored.
 * - While the clock runs, time registers always read in the format register B
 *   selects (the real part would keep old bytes after a DM or 24/12 change);
 *   the day of week is computed from the date; writes to a time register set
 *   that field and keep the sub-second phase. Out-of-range values are
 *   normalised (e.g. 25:00 becomes 01:00 the next day).
 * - Byte 0x32 is the century (IBM convention), in the same format as the year.
 * - Reads of port 0x70 return 0xFF (write-only on PCs).
 */
import { type Clock, tickTime, ticksAt, type Timer } from './clock.js';
import type { PortBus, PortSize } from './ports.js';

/** 2024-01-01T00:00:00, seconds since 1970-01-01 in the RTC's own (zone-less) time. */
export const CMOS_EPOCH = 1_704_067_200;

const NS_PER_S = 1e9;
/** UIP window: 244 µs before the update cycle plus the 1984 µs it takes. */
const UIP_NS = 2_228_000;
const TIMEBASE_HZ = 32768;

/** Register indices. */
export const enum Rtc {
  SECONDS = 0, SECONDS_ALARM = 1, MINUTES = 2, MINUTES_ALARM = 3, HOURS = 4, HOURS_ALARM = 5,
  DAY_OF_WEEK = 6, DAY_OF_MONTH = 7, MONTH = 8, YEAR = 9, A = 0x0a, B = 0x0b, C = 0x0c, D = 0x0d, CENTURY = 0x32,
}

/** Register B bits. */
export const enum RegB { SET = 0x80, PIE = 0x40, AIE = 0x20, UIE = 0x10, SQWE = 0x08, DM = 0x04, H24 = 0x02, DSE = 0x01 }

/** Register C bits. */
export const enum RegC { IRQF = 0x80, PF = 0x40, AF = 0x20, UF = 0x10 }

function toBcd(v: number): number { return ((Math.floor(v / 10) % 10) << 4) | (v % 10); }
function fromBcd(v: number): number { return (v >> 4) * 10 + (v & 0xf); }

export interface CmosOptions {
  clock: Clock;
  /** IRQ 8. */
  setIrq?: (level: boolean) => void;
  /** Bytes of RAM, recorded in the standard CMOS bytes. */
  memorySize?: number;
  /** Time at guest time 0, seconds since 1970-01-01 (default CMOS_EPOCH). */
  epoch?: number;
}

export class Cmos {
  /** Port 0x70 bit 7 of the last index write. */
  nmiDisabled = false;
  /** The 128 bytes; time registers are refreshed from the clock when read. */
  readonly ram = new Uint8Array(128);
  private index = 0;
  private readonly clock: Clock;
  private readonly setIrq: (level: boolean) => void;
  private readonly timer: Timer;
  private irqLevel = false;

  /** While running: the time is baseSec + whole seconds since baseNs. */
  private baseSec: number;
  private baseNs = 0;
  /** Periodic-interrupt phase starts when the divider chain starts. */
  private dividerNs = 0;
  /** Seconds value the time bytes in `ram` show (NaN: refresh them). */
  private shownSec = NaN;
  /** Guest time of the last flag evaluation. */
  private syncedNs = 0;

  constructor(options: CmosOptions) {
    this.clock = options.clock;
    this.setIrq = options.setIrq ?? (() => {});
    this.baseSec = options.epoch ?? CMOS_EPOCH;
    this.baseNs = this.syncedNs = this.dividerNs = this.clock.ns();
    this.ram[Rtc.A] = 0x26; // DV = 010 (32.768 kHz), RS = 0110 (1024 Hz)
    this.ram[Rtc.B] = RegB.H24;
    this.ram[Rtc.D] = 0x80; // VRT: RAM and time valid
    if (options.memorySize !== undefined) this.setMemorySize(options.memorySize);
    this.timer = this.clock.timer(() => this.sync());
  }

  attach(bus: PortBus): void {
    bus.register(0x70, 2, this);
  }

  /**
   * Records the memory size as PC firmware does: 0x15/0x16 base memory in KiB,
   * 0x17/0x18 and 0x30/0x31 memory above 1 MiB in KiB, 0x34/0x35 memory above
   * 16 MiB in 64 KiB units (each capped at 0xFFFF); checksum of 0x10-0x2D in 0x2E/0x2F.
   */
  setMemorySize(bytes: number): void {
    const kib = Math.floor(bytes / 1024);
    const set16 = (at: number, v: number): void => {
      v = Math.max(0, Math.min(0xffff, v));
      this.ram[at] = v & 0xff;
      this.ram[at + 1] = v >> 8;
    };
    set16(0x15, Math.min(640, kib));
    set16(0x17, kib - 1024);
    set16(0x30, kib - 1024);
    set16(0x34, Math.floor((bytes - 16 * 1024 * 1024) / 65536));
    let sum = 0;
    for (let i = 0x10; i <= 0x2d; i++) sum += this.ram[i]!;
    this.ram[0x2e] = (sum >> 8) & 0xff;
    this.ram[0x2f] = sum & 0xff;
  }

  private get running(): boolean {
    return (this.ram[Rtc.A]! & 0x70) === 0x20 && (this.ram[Rtc.B]! & RegB.SET) === 0;
  }

  private get dividerRunning(): boolean {
    return (this.ram[Rtc.A]! & 0x70) === 0x20;
  }

  private secondsAt(ns: number): number {
    return this.baseSec + Math.floor((ns - this.baseNs) / NS_PER_S);
  }

  /** Periodic interrupt period in 32.768 kHz ticks (register A RS), 0 if off. */
  private periodTicks(): number {
    const rs = this.ram[Rtc.A]! & 0x0f;
    return rs === 0 ? 0 : rs <= 2 ? 64 << rs : 1 << (rs - 1);
  }

  private periodIndex(ns: number, period: number): number {
    return Math.floor(ticksAt(ns - this.dividerNs, TIMEBASE_HZ) / period);
  }

  /** Brings the flags in register C and the IRQ line up to now, and re-arms the timer. */
  private sync(): void {
    const now = this.clock.ns(), then = this.syncedNs;
    this.syncedNs = now;
    let c = this.ram[Rtc.C]!;
    if (this.dividerRunning) {
      const period = this.periodTicks();
      if (period && this.periodIndex(now, period) > this.periodIndex(then, period)) c |= RegC.PF;
    }
    if (this.running) {
      const from = this.secondsAt(then), to = this.secondsAt(now);
      if (to > from) {
        c |= RegC.UF;
        if (this.alarmBetween(from, to)) c |= RegC.AF;
      }
    }
    const b = this.ram[Rtc.B]!;
    const irqf = (c & b & (RegC.PF | RegC.AF | RegC.UF)) !== 0; // PF/AF/UF line up with PIE/AIE/UIE
    c = irqf ? c | RegC.IRQF : c & ~RegC.IRQF;
    this.ram[Rtc.C] = c;
    if (irqf !== this.irqLevel) { this.irqLevel = irqf; this.setIrq(irqf); }
    this.arm(now);
  }

  /** The next moment a flag that can raise IRQF gets set; none while IRQF is already set. */
  private arm(now: number): void {
    let next = Infinity;
    const b = this.ram[Rtc.B]!;
    if (!this.irqLevel) {
      const period = this.periodTicks();
      if ((b & RegB.PIE) && period && this.dividerRunning) {
        next = this.dividerNs + tickTime((this.periodIndex(now, period) + 1) * period, TIMEBASE_HZ);
      }
      if ((b & (RegB.UIE | RegB.AIE)) && this.running) {
        next = Math.min(next, this.baseNs + (this.secondsAt(now) - this.baseSec + 1) * NS_PER_S);
      }
    }
    if (next === Infinity) this.timer.cancel(); else this.timer.set(next);
  }

  /** Whether a second in (from, to] matches the alarm bytes (0xC0-0xFF = don't care). */
  private alarmBetween(from: number, to: number): boolean {
    const want = (reg: number, limit: number, hours: boolean): number => {
      const v = this.ram[reg]!;
      if ((v & 0xc0) === 0xc0) return -1;
      const n = this.decodeField(v, hours);
      return n < limit ? n : -2; // -2: can never match
    };
    const s = want(Rtc.SECONDS_ALARM, 60, false), m = want(Rtc.MINUTES_ALARM, 60, false), h = want(Rtc.HOURS_ALARM, 24, true);
    if (s === -2 || m === -2 || h === -2) return false;
    const last = Math.min(to, from + 86400);
    for (let t = from + 1; t <= last; t++) {
      const day = ((t % 86400) + 86400) % 86400;
      if ((s < 0 || day % 60 === s) && (m < 0 || Math.floor(day / 60) % 60 === m) && (h < 0 || Math.floor(day / 3600) === h)) return true;
    }
    return false;
  }

  /** A time byte in the current format (register B DM and 24/12) as a binary number; hours as 0-23. */
  private decodeField(v: number, hours: boolean): number {
    const b = this.ram[Rtc.B]!;
    const dec = (x: number): number => (b & RegB.DM ? x : fromBcd(x));
    if (!hours || (b & RegB.H24)) return dec(v);
    return (dec(v & 0x7f) % 12) + (v & 0x80 ? 12 : 0);
  }

  private encodeField(n: number, hours: boolean): number {
    const b = this.ram[Rtc.B]!;
    const enc = (x: number): number => (b & RegB.DM ? x : toBcd(x));
    if (!hours || (b & RegB.H24)) return enc(n);
    return enc(n % 12 || 12) | (n >= 12 ? 0x80 : 0);
  }

  /** Writes the calendar for `sec` into the time bytes. */
  private show(sec: number): void {
    const d = new Date(sec * 1000);
    const year = d.getUTCFullYear();
    const ram = this.ram;
    ram[Rtc.SECONDS] = this.encodeField(d.getUTCSeconds(), false);
    ram[Rtc.MINUTES] = this.encodeField(d.getUTCMinutes(), false);
    ram[Rtc.HOURS] = this.encodeField(d.getUTCHours(), true);
    ram[Rtc.DAY_OF_WEEK] = this.encodeField(d.getUTCDay() + 1, false); // 1 = Sunday
    ram[Rtc.DAY_OF_MONTH] = this.encodeField(d.getUTCDate(), false);
    ram[Rtc.MONTH] = this.encodeField(d.getUTCMonth() + 1, false);
    ram[Rtc.YEAR] = this.encodeField(year % 100, false);
    ram[Rtc.CENTURY] = this.encodeField(Math.floor(year / 100), false);
    this.shownSec = sec;
  }

  /** Reads the calendar back from the time bytes. */
  private parse(): number {
    const ram = this.ram;
    const f = (reg: number): number => this.decodeField(ram[reg]!, reg === Rtc.HOURS);
    const d = new Date(0);
    d.setUTCFullYear(f(Rtc.CENTURY) * 100 + f(Rtc.YEAR), f(Rtc.MONTH) - 1, f(Rtc.DAY_OF_MONTH));
    d.setUTCHours(f(Rtc.HOURS), f(Rtc.MINUTES), f(Rtc.SECONDS), 0);
    return Math.floor(d.getTime() / 1000);
  }

  /** Refreshes the time bytes while the clock runs. */
  private refresh(): void {
    if (!this.running) return;
    const sec = this.secondsAt(this.clock.ns());
    if (sec !== this.shownSec) this.show(sec);
  }

  read(port: number, _size: PortSize): number {
    if (port === 0x70) return 0xff;
    const i = this.index;
    if (i > Rtc.D && i !== Rtc.CENTURY) return this.ram[i]!;
    this.sync();
    switch (i) {
      case Rtc.A: {
        const phase = (this.clock.ns() - this.baseNs) % NS_PER_S;
        const uip = this.running && phase >= NS_PER_S - UIP_NS;
        return (this.ram[Rtc.A]! & 0x7f) | (uip ? 0x80 : 0);
      }
      case Rtc.C: {
        const c = this.ram[Rtc.C]!;
        this.ram[Rtc.C] = 0; // all flags clear on read
        if (this.irqLevel) { this.irqLevel = false; this.setIrq(false); }
        this.arm(this.clock.ns());
        return c;
      }
      case Rtc.B: case Rtc.D: return this.ram[i]!;
      default:
        this.refresh();
        return this.ram[i]!;
    }
  }

  write(port: number, _size: PortSize, value: number): void {
    if (port === 0x70) {
      this.index = value & 0x7f;
      this.nmiDisabled = (value & 0x80) !== 0;
      return;
    }
    const i = this.index;
    if (i > Rtc.D && i !== Rtc.CENTURY) { this.ram[i] = value; return; }
    if (i === Rtc.C || i === Rtc.D) return; // read-only
    this.sync();
    const now = this.clock.ns();
    const wasRunning = this.running, dividerWasRunning = this.dividerRunning;
    this.refresh(); // time bytes current, in the format in force until now (kept if the clock stops)
    switch (i) {
      case Rtc.A:
        this.ram[Rtc.A] = value & 0x7f; // UIP is read-only
        if (this.dividerRunning && !dividerWasRunning) this.dividerNs = now;
        break;
      case Rtc.B:
        if (value & RegB.SET) value &= ~RegB.UIE;
        this.ram[Rtc.B] = value;
        this.shownSec = NaN; // the format may have changed
        break;
      default:
        this.ram[i] = value;
        if (wasRunning) {
          // One field set while running: the sub-second phase is kept.
          this.baseNs += (this.secondsAt(now) - this.baseSec) * NS_PER_S;
          this.baseSec = this.parse();
          this.shownSec = NaN;
        }
    }
    if (!wasRunning && this.running) {
      this.baseSec = this.parse();
      // Clearing SET: the next update a second later; leaving divider reset: 500 ms later.
      this.baseNs = dividerWasRunning ? now : now - NS_PER_S / 2;
      this.shownSec = NaN;
    }
    this.syncedNs = now;
    this.arm(now);
  }
}
