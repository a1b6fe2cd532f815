import { describe, expect, it } from 'vitest';
import { createPcPorts } from './pc.js';
import { PIT_HZ } from './pit8254.js';

function machine() {
  let insns = 0;
  const serial: number[] = [];
  const exits: number[] = [];
  const pc = createPcPorts({
    instructions: () => insns, memorySize: 256 * 1024 * 1024, cpuCount: 2,
    serialOut: (b) => serial.push(b), onExit: (s) => exits.push(s),
  });
  const out = (port: number, v: number) => pc.bus.write(port, 1, v);
  const inb = (port: number) => pc.bus.read(port, 1);
  // Linux-style PIC setup: vectors 0x20/0x28, everything unmasked.
  for (const [port, v] of [[0x20, 0x11], [0x21, 0x20], [0x21, 0x04], [0x21, 0x01],
    [0xa0, 0x11], [0xa1, 0x28], [0xa1, 0x02], [0xa1, 0x01], [0x21, 0x00], [0xa1, 0x00]] as const) out(port, v);
  return {
    pc, serial, exits, out, inb,
    /** The run loop's part: run to the next deadline, fire it, take the interrupt if INTR is up. */
    runToNextEvent(): number | undefined {
      insns = Math.max(insns, pc.clock.nextDeadline());
      pc.clock.runDue();
      return pc.pic.intr() ? pc.pic.acknowledge() : undefined;
    },
    get now() { return insns; },
  };
}

describe('createPcPorts: the PC port-I/O platform wired together', () => {
  it('PIT channel 0 in mode 2 at 100 Hz interrupts on IRQ 0 → vector 0x20 every 11932 CLKs', () => {
    const m = machine();
    m.out(0x43, 0x34); m.out(0x40, 11932 & 0xff); m.out(0x40, 11932 >> 8);
    const times: number[] = [];
    for (let k = 0; k < 3; k++) {
      expect(m.runToNextEvent()).toBe(0x20);
      times.push(m.now);
      m.out(0x20, 0x20); // EOI
    }
    const ns = (tick: number) => Number((BigInt(tick) * 1_000_000_000n + BigInt(PIT_HZ) - 1n) / BigInt(PIT_HZ));
    expect(times).toEqual([ns(1 + 11932), ns(1 + 2 * 11932), ns(1 + 3 * 11932)]);
  });

  it('COM1 output reaches the sink; its THRE interrupt arrives as IRQ 4 → vector 0x24', () => {
    const m = machine();
    for (const ch of 'ok\n') m.out(0x3f8, ch.charCodeAt(0));
    expect(String.fromCharCode(...m.serial)).toBe('ok\n');
    m.out(0x3fc, 0x08); // OUT2
    m.out(0x3f9, 0x02); // ETBEI
    expect(m.pc.pic.intr()).toBe(true);
    expect(m.pc.pic.acknowledge()).toBe(0x24);
    expect(m.inb(0x3fa)).toBe(0x02);
  });

  it('RTC periodic interrupt arrives as IRQ 8 → vector 0x28 through the cascade', () => {
    const m = machine();
    m.out(0x70, 0x0b); m.out(0x71, 0x42); // PIE
    expect(m.runToNextEvent()).toBe(0x28);
    m.out(0x70, 0x0c);
    expect(m.inb(0x71)).toBe(0xc0);
  });

  it('fw_cfg, CMOS memory bytes, PCI and debug-exit answer at their ports', () => {
    const m = machine();
    m.pc.bus.write(0x510, 2, 0x0005);
    expect(m.inb(0x511)).toBe(2);
    m.out(0x70, 0x34);
    const low = m.inb(0x71);
    m.out(0x70, 0x35);
    expect(low | (m.inb(0x71) << 8)).toBe((256 - 16) * 16);
    m.pc.bus.write(0xcf8, 4, 0x80000000);
    expect(m.pc.bus.read(0xcfc, 4)).toBe(-1);
    m.out(0xf4, 0x01);
    expect(m.exits).toEqual([3]);
  });
});
