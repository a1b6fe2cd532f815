import { describe, expect, it } from 'vitest';
import { Clock } from './clock.js';
import { Cmos } from './cmos.js';
import { PortBus } from './ports.js';

const S = 1e9;

function setup(memorySize?: number) {
  let insns = 0;
  const clock = new Clock(() => insns);
  const irq: boolean[] = [];
  const cmos = new Cmos({ clock, memorySize, setIrq: (l) => irq.push(l) });
  const bus = new PortBus();
  cmos.attach(bus);
  const read = (reg: number) => { bus.write(0x70, 1, reg); return bus.read(0x71, 1); };
  const write = (reg: number, v: number) => { bus.write(0x70, 1, reg); bus.write(0x71, 1, v); };
  /** Seconds, minutes, hours, day of week, day, month, year, century. */
  const time = () => [0, 2, 4, 6, 7, 8, 9, 0x32].map(read);
  return {
    clock, cmos, bus, irq, read, write, time,
    at(ns: number) { insns = ns; clock.runDue(); },
    get line() { return irq.length > 0 && irq[irq.length - 1]!; },
  };
}

describe('MC146818 RTC and CMOS RAM (MC146818A datasheet)', () => {
  it('starts at the fixed epoch 2024-01-01 00:00:00 (Monday) in BCD, 24 h; register D says RAM valid', () => {
    const s = setup();
    expect(s.time()).toEqual([0x00, 0x00, 0x00, 0x02, 0x01, 0x01, 0x24, 0x20]);
    expect(s.read(0x0a)).toBe(0x26);
    expect(s.read(0x0b)).toBe(0x02);
    expect(s.read(0x0d)).toBe(0x80);
  });

  it('advances with guest time: 1 day 13:59:58 later, in BCD and then binary (register B DM)', () => {
    const s = setup();
    s.at((86400 + 13 * 3600 + 59 * 60 + 58) * S + 123);
    expect(s.time()).toEqual([0x58, 0x59, 0x13, 0x03, 0x02, 0x01, 0x24, 0x20]);
    s.write(0x0b, 0x06); // binary, 24 h
    expect(s.time()).toEqual([58, 59, 13, 3, 2, 1, 24, 20]);
    s.write(0x0b, 0x04); // binary, 12 h: 1 PM = 0x81
    expect(s.read(4)).toBe(0x81);
    s.write(0x0b, 0x00); // BCD, 12 h
    expect(s.read(4)).toBe(0x81);
    s.at(24 * 3600 * 365 * S); // 2024 is a leap year: day 365 is 2024-12-31
    s.write(0x0b, 0x02);
    expect(s.time()).toEqual([0x00, 0x00, 0x00, 0x03, 0x31, 0x12, 0x24, 0x20]);
  });

  it('UIP (register A bit 7) is set in the last 2228 µs before each update, never otherwise', () => {
    const s = setup();
    s.at(S - 2_228_001);
    expect(s.read(0x0a) & 0x80).toBe(0);
    s.at(S - 2_228_000);
    expect(s.read(0x0a) & 0x80).toBe(0x80);
    expect(s.read(0)).toBe(0x00);
    s.at(S);
    expect(s.read(0x0a) & 0x80).toBe(0);
    expect(s.read(0)).toBe(0x01);
  });

  it('SET (register B bit 7) freezes the clock for setting; clearing it restarts from the written time', () => {
    const s = setup();
    s.at(10 * S);
    s.write(0x0b, 0x82 | 0x10); // SET (UIE asked, but SET clears it)
    expect(s.read(0x0b)).toBe(0x82);
    s.write(0, 0x30); s.write(2, 0x15); s.write(4, 0x23);
    s.write(7, 0x28); s.write(8, 0x02); s.write(9, 0x25);
    s.at(20 * S);
    expect(s.read(0)).toBe(0x30); // frozen
    expect(s.read(0x0a) & 0x80).toBe(0); // SET clears UIP
    s.write(0x0b, 0x02);
    s.at(21 * S + 500);
    // 2025-02-28 23:15:31 (a Friday), one second after SET was cleared.
    expect(s.time()).toEqual([0x31, 0x15, 0x23, 0x06, 0x28, 0x02, 0x25, 0x20]);
    s.at(21 * S + 29 * 60 * S + 29 * S);
    expect(s.time().slice(0, 6)).toEqual([0x00, 0x45, 0x23, 0x06, 0x28, 0x02]);
  });

  it('periodic interrupt: RS = 6 (1024 Hz) with PIE raises IRQ 8; register C reads PF|IRQF and clears', () => {
    const s = setup();
    s.write(0x0b, 0x42); // PIE
    const period = 1e9 / 1024; // 976562.5 ns: 32 ticks of 32.768 kHz
    expect(s.clock.nextDeadline()).toBe(Math.ceil(period));
    s.at(Math.ceil(period));
    expect(s.line).toBe(true);
    expect(s.read(0x0c)).toBe(0xc0);
    expect(s.line).toBe(false);
    expect(s.read(0x0c)).toBe(0x00);
    expect(s.clock.nextDeadline()).toBe(Math.ceil(2 * period));
    s.write(0x0a, 0x2f); // RS = 15: 2 Hz
    expect(s.clock.nextDeadline()).toBe(S / 2);
    // PF (and UF) are set even without PIE (UIE); no interrupt then.
    s.write(0x0b, 0x02);
    s.at(S);
    expect(s.read(0x0c)).toBe(0x50);
    expect(s.line).toBe(false);
  });

  it('update-ended interrupt (UIE) once a second; alarm (AIE) at the programmed time with don\'t-care bytes', () => {
    const s = setup();
    s.write(0x0b, 0x12); // UIE
    expect(s.clock.nextDeadline()).toBe(S);
    s.at(S);
    expect(s.line).toBe(true);
    expect(s.read(0x0c)).toBe(0xd0); // IRQF, UF; PF from the default 1024 Hz rate
    expect(s.clock.nextDeadline()).toBe(2 * S);

    s.write(0x0b, 0x22); // AIE only
    s.write(1, 0x05); s.write(3, 0xc0); s.write(5, 0xff); // at second 5 of any minute
    s.at(4 * S);
    expect(s.read(0x0c) & 0x20).toBe(0);
    s.at(5 * S);
    expect(s.line).toBe(true);
    expect(s.read(0x0c) & 0xa0).toBe(0xa0);
  });

  it('a divider reset (DV = 11x) stops the clock; the first update comes 500 ms after it is removed', () => {
    const s = setup();
    s.write(0x0a, 0x76);
    s.at(5 * S);
    expect(s.read(0)).toBe(0x00);
    s.write(0x0a, 0x26);
    s.at(5 * S + S / 2 - 1);
    expect(s.read(0)).toBe(0x00);
    s.at(5 * S + S / 2);
    expect(s.read(0)).toBe(0x01);
  });

  it('port 0x70 bit 7 disables NMI; NVRAM bytes are plain storage; memory size in 0x15-0x18, 0x30/31, 0x34/35', () => {
    const s = setup(512 * 1024 * 1024);
    s.bus.write(0x70, 1, 0x80 | 0x40);
    expect(s.cmos.nmiDisabled).toBe(true);
    s.bus.write(0x71, 1, 0xa5);
    expect(s.read(0x40)).toBe(0xa5);
    expect(s.cmos.nmiDisabled).toBe(false);
    expect(s.read(0x15) | (s.read(0x16) << 8)).toBe(640);
    expect(s.read(0x17) | (s.read(0x18) << 8)).toBe(0xffff); // 523264 KiB capped
    expect(s.read(0x30) | (s.read(0x31) << 8)).toBe(0xffff);
    expect(s.read(0x34) | (s.read(0x35) << 8)).toBe((512 - 16) * 16);
    const small = setup(8 * 1024 * 1024);
    expect(small.read(0x17) | (small.read(0x18) << 8)).toBe(7 * 1024);
    expect(small.read(0x34) | (small.read(0x35) << 8)).toBe(0);
    let sum = 0;
    for (let i = 0x10; i <= 0x2d; i++) sum += small.read(i);
    expect((small.read(0x2e) << 8) | small.read(0x2f)).toBe(sum);
  });

  it('writing one time register while the clock runs sets that field and keeps the sub-second phase', () => {
    const s = setup();
    s.at(3 * S + S / 4);
    s.write(2, 0x42); // minutes
    expect(s.time().slice(0, 3)).toEqual([0x03, 0x42, 0x00]);
    s.at(4 * S - 1);
    expect(s.read(0)).toBe(0x03);
    s.at(4 * S);
    expect(s.read(0)).toBe(0x04);
  });
});
