import { describe, expect, it } from 'vitest';
import { Clock } from './clock.js';
import { PIT_HZ, Pit8254 } from './pit8254.js';
import { PortBus } from './ports.js';

/** Reference conversions in BigInt (independent of clock.ts). */
const tickOf = (ns: number): number => Number((BigInt(ns) * BigInt(PIT_HZ)) / 1_000_000_000n);
const nsOf = (tick: number): number => Number((BigInt(tick) * 1_000_000_000n + BigInt(PIT_HZ) - 1n) / BigInt(PIT_HZ));

function setup() {
  let insns = 0;
  const clock = new Clock(() => insns);
  const irq: boolean[] = [];
  const pit = new Pit8254(clock, (level) => irq.push(level));
  const bus = new PortBus();
  pit.attach(bus);
  return {
    clock, pit, bus, irq,
    at(ns: number) { insns = ns; clock.runDue(); },
    /** Counter latch command, then LSB and MSB. */
    latched(channel: number): number {
      bus.write(0x43, 1, channel << 6);
      const lsb = bus.read(0x40 + channel, 1);
      return lsb | (bus.read(0x40 + channel, 1) << 8);
    },
  };
}

/** Rising edges seen on the IRQ 0 line, which starts low. */
function edges(levels: boolean[]): number {
  let n = 0, last = false;
  for (const level of levels) { if (level && !last) n++; last = level; }
  return n;
}

describe('8254 PIT (Intel 8254 datasheet)', () => {
  it('mode 2 at 100 Hz (as Linux programs it): IRQ 0 deadlines every 11932 CLKs and counter reads', () => {
    const p = setup();
    const LATCH = 11932; // (1193182 + 50) / 100
    p.bus.write(0x43, 1, 0x34); // counter 0, LSB then MSB, mode 2, binary
    p.bus.write(0x40, 1, LATCH & 0xff);
    p.bus.write(0x40, 1, LATCH >> 8);
    // Loaded on the next CLK (tick 1); OUT rises at the end of each period.
    for (let k = 1; k <= 5; k++) {
      const deadline = p.clock.nextDeadline();
      expect(deadline).toBe(nsOf(1 + k * LATCH));
      p.at(deadline);
      expect(edges(p.irq)).toBe(k);
    }
    // Datasheet mode 2: CE counts N..1 and reloads; read it with a counter latch command.
    for (const ns of [60_000_000, 60_000_123, 61_234_567]) {
      p.at(ns);
      const e = tickOf(ns) - 1;
      expect(p.latched(0)).toBe(LATCH - (e % LATCH));
    }
  });

  it('mode 2: a count written while counting takes effect at the end of the current period', () => {
    const p = setup();
    p.bus.write(0x43, 1, 0x34);
    p.bus.write(0x40, 1, 1000 & 0xff);
    p.bus.write(0x40, 1, 1000 >> 8);
    p.at(nsOf(500));
    p.bus.write(0x40, 1, 200);
    p.bus.write(0x40, 1, 0);
    expect(p.clock.nextDeadline()).toBe(nsOf(1001)); // old period still ends on time
    p.at(nsOf(1001));
    expect(p.clock.nextDeadline()).toBe(nsOf(1201)); // then periods of 200
    p.at(nsOf(1100));
    expect(p.latched(0)).toBe(200 - 99);
  });

  it('mode 0 (interrupt on terminal count): OUT low until the count expires, one edge, counter wraps', () => {
    const p = setup();
    p.bus.write(0x43, 1, 0x30); // counter 0, LSB/MSB, mode 0
    expect(p.pit.output(0)).toBe(false);
    p.bus.write(0x40, 1, 100);
    p.bus.write(0x40, 1, 0);
    expect(p.clock.nextDeadline()).toBe(nsOf(101)); // 1 CLK to load + N to reach 0
    p.at(nsOf(101) - 1);
    expect(p.pit.output(0)).toBe(false);
    expect(p.latched(0)).toBe(1);
    p.at(nsOf(101));
    expect(p.pit.output(0)).toBe(true);
    expect(edges(p.irq)).toBe(1);
    expect(p.clock.nextDeadline()).toBe(Infinity);
    p.at(nsOf(103));
    expect(p.latched(0)).toBe(0xfffe);
    // Writing the first byte of a new count drops OUT at once (datasheet, mode 0).
    p.bus.write(0x40, 1, 10);
    expect(p.pit.output(0)).toBe(false);
    expect(p.irq[p.irq.length - 1]).toBe(false);
  });

  it('counter latch freezes the value until both bytes are read; LSB-only and MSB-only access', () => {
    const p = setup();
    p.bus.write(0x43, 1, 0x34);
    p.bus.write(0x40, 1, 0x00);
    p.bus.write(0x40, 1, 0x10); // 4096
    p.at(nsOf(11)); // e = 10 → CE = 4086 = 0x0FF6
    p.bus.write(0x43, 1, 0x00);
    p.at(nsOf(500));
    p.bus.write(0x43, 1, 0x00); // a second latch before reading is ignored
    expect(p.bus.read(0x40, 1)).toBe(0xf6);
    expect(p.bus.read(0x40, 1)).toBe(0x0f);
    // Unlatched reads follow the counter again: e = 499 → 3597 = 0x0E0D.
    expect(p.bus.read(0x40, 1)).toBe(0x0d);
    expect(p.bus.read(0x40, 1)).toBe(0x0e);

    p.bus.write(0x43, 1, 0x54); // counter 1, LSB only, mode 2
    p.bus.write(0x41, 1, 0x80); // count 0x0080
    p.at(nsOf(511)); // counter 1 loaded at tick 501; e = 10
    expect(p.bus.read(0x41, 1)).toBe(0x76);
    expect(p.bus.read(0x41, 1)).toBe(0x76);
    p.bus.write(0x43, 1, 0x64); // counter 1, MSB only, mode 2
    p.bus.write(0x41, 1, 0x02); // count 0x0200
    p.at(nsOf(512 + 0x100)); // e = 0x100 → 0x100: MSB 0x01
    expect(p.bus.read(0x41, 1)).toBe(0x01);
  });

  it('BCD counting: count 1000 (0x1000 in BCD) reads back in BCD', () => {
    const p = setup();
    p.bus.write(0x43, 1, 0x35); // mode 2, BCD
    p.bus.write(0x40, 1, 0x00);
    p.bus.write(0x40, 1, 0x10);
    p.at(nsOf(1 + 1)); // e = 1 → 999
    expect(p.latched(0)).toBe(0x0999);
    expect(p.clock.nextDeadline()).toBe(nsOf(1 + 1000));
    p.bus.write(0x43, 1, 0x31); // mode 0, BCD, count 0 = 10000
    p.bus.write(0x40, 1, 0);
    p.bus.write(0x40, 1, 0);
    p.at(nsOf(2 + 1 + 1));
    expect(p.latched(0)).toBe(0x9999);
  });

  it('read-back command latches status (OUT, null count, RW, mode, BCD) and count', () => {
    const p = setup();
    p.bus.write(0x43, 1, 0xb6); // counter 2, LSB/MSB, mode 3, binary
    p.bus.write(0x43, 1, 0xe8); // read-back: status only, counter 2
    expect(p.bus.read(0x42, 1)).toBe(0x80 | 0x40 | 0x30 | (3 << 1)); // OUT high, null count
    p.bus.write(0x42, 1, 0x34);
    p.bus.write(0x42, 1, 0x12);
    p.pit.setGate(2, true);
    p.at(nsOf(10));
    p.bus.write(0x43, 1, 0xc8); // read-back: count and status, counter 2
    expect(p.bus.read(0x42, 1) & 0x40).toBe(0); // count loaded: null count clear
    const lsb = p.bus.read(0x42, 1);
    const msb = p.bus.read(0x42, 1);
    // Mode 3, even N: CE goes down by 2 per CLK from the load at tick 1: e = 9 → 0x1234 - 18.
    expect(lsb | (msb << 8)).toBe(0x1234 - 18);
  });

  it('mode 3 square wave on counter 2: OUT high for ceil(N/2) CLKs, low for floor(N/2); gate low forces OUT high', () => {
    const p = setup();
    p.bus.write(0x43, 1, 0xb6);
    p.bus.write(0x42, 1, 5);
    p.bus.write(0x42, 1, 0);
    p.pit.setGate(2, true); // gate rising: load on the next CLK (tick 1)
    const outs: boolean[] = [];
    for (let t = 1; t < 11; t++) { p.at(nsOf(t)); outs.push(p.pit.output(2)); }
    expect(outs).toEqual([true, true, true, false, false, true, true, true, false, false]);
    p.at(nsOf(14));
    p.pit.setGate(2, false);
    expect(p.pit.output(2)).toBe(true);
  });

  it('mode 0 on counter 2 with gate: counting pauses while the gate is low (PIT calibration loops)', () => {
    const p = setup();
    p.bus.write(0x43, 1, 0xb0); // counter 2, mode 0
    p.bus.write(0x42, 1, 0xff);
    p.bus.write(0x42, 1, 0xff);
    p.at(nsOf(100));
    expect(p.latched(2)).toBe(0xffff); // gate low: CE holds the count
    p.pit.setGate(2, true);
    p.at(nsOf(200));
    expect(p.latched(2)).toBe(0xffff - 100);
    p.pit.setGate(2, false);
    p.at(nsOf(300));
    expect(p.latched(2)).toBe(0xffff - 100);
  });

  it('mode 1 (one-shot) needs a gate trigger; mode 4 strobes OUT low for one CLK', () => {
    const p = setup();
    p.bus.write(0x43, 1, 0xb2); // counter 2, mode 1
    p.bus.write(0x42, 1, 10);
    p.bus.write(0x42, 1, 0);
    p.at(nsOf(50));
    expect(p.pit.output(2)).toBe(true); // armed, not triggered
    p.pit.setGate(2, true); // trigger at tick 50 → load at 51
    p.at(nsOf(55));
    expect(p.pit.output(2)).toBe(false);
    p.at(nsOf(61));
    expect(p.pit.output(2)).toBe(true);

    p.bus.write(0x43, 1, 0x38); // counter 0, mode 4
    p.bus.write(0x40, 1, 20);
    p.bus.write(0x40, 1, 0); // at tick 61 → load at 62, OUT low at 82, rises at 83
    expect(p.clock.nextDeadline()).toBe(nsOf(83));
    p.at(nsOf(82));
    expect(p.pit.output(0)).toBe(false);
    p.at(nsOf(83));
    expect(p.pit.output(0)).toBe(true);
    expect(edges(p.irq)).toBe(1);
  });

  it('mode 3: a count written during the high half takes over at the end of that half-cycle', () => {
    const p = setup();
    p.bus.write(0x43, 1, 0x36); // counter 0, mode 3
    p.bus.write(0x40, 1, 100);
    p.bus.write(0x40, 1, 0); // loaded at tick 1: high 1-50, low 51-100, edge at 101
    p.at(nsOf(20));
    p.bus.write(0x40, 1, 40);
    p.bus.write(0x40, 1, 0);
    p.at(nsOf(50));
    expect(p.pit.output(0)).toBe(true);
    p.at(nsOf(51)); // new count from its low half: 20 CLKs low, then edges every 40
    expect(p.pit.output(0)).toBe(false);
    expect(p.latched(0)).toBe(40);
    expect(p.clock.nextDeadline()).toBe(nsOf(71));
    p.at(nsOf(71));
    expect(p.clock.nextDeadline()).toBe(nsOf(111));
  });
});
