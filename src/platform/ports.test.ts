import { describe, expect, it } from 'vitest';
import { Clock } from './clock.js';
import { Pit8254, PIT_HZ } from './pit8254.js';
import { Kbc8042, PortBus, type PortDevice, type PortSize, SystemPorts } from './ports.js';

/** A device that records accesses and answers with port-derived bytes. */
function recorder() {
  const log: string[] = [];
  const dev: PortDevice = {
    read(port: number, size: PortSize) { log.push(`r${size}@${port.toString(16)}`); return size === 1 ? port & 0xff : 0x12345678; },
    write(port: number, size: PortSize, v: number) { log.push(`w${size}@${port.toString(16)}=${(v >>> 0).toString(16)}`); },
  };
  return { log, dev };
}

describe('PortBus (SDM vol. 1, 19.2 "I/O Port Addressing")', () => {
  it('unclaimed ports read all ones (size 4 as int32 -1) and drop writes', () => {
    const bus = new PortBus();
    expect(bus.read(0x1234, 1)).toBe(0xff);
    expect(bus.read(0x1234, 2)).toBe(0xffff);
    expect(bus.read(0x1234, 4)).toBe(-1);
    bus.write(0x1234, 4, 0xdeadbeef);
    expect(bus.read(0x1234, 4)).toBe(-1);
  });

  it('splits a word or dword access to a byte-only device into little-endian byte accesses', () => {
    const bus = new PortBus();
    const { log, dev } = recorder();
    bus.register(0x300, 3, dev);
    expect(bus.read(0x300, 4)).toBe(0xff020100 | 0); // 0x303 is unclaimed
    bus.write(0x301, 2, 0xbeef);
    expect(log).toEqual(['r1@300', 'r1@301', 'r1@302', 'w1@301=ef', 'w1@302=be']);
  });

  it('passes accesses of the sizes a device accepts whole, normalised to the size', () => {
    const bus = new PortBus();
    const { log, dev } = recorder();
    bus.register(0x400, 4, dev, 4);
    expect(bus.read(0x400, 4)).toBe(0x12345678);
    bus.write(0x400, 4, 0xffffffff);
    expect(log).toEqual(['r4@400', 'w4@400=ffffffff']);
    expect(bus.read(0x400, 1)).toBe(0xff); // a byte access it does not take is unclaimed
    expect(() => bus.register(0x403, 2, dev)).toThrow(/already claimed/);
  });
});

function system() {
  let insns = 0;
  const clock = new Clock(() => insns);
  const pit = new Pit8254(clock);
  const resets: number[] = [];
  const sys = new SystemPorts(pit, () => resets.push(insns));
  const kbc = new Kbc8042(sys);
  const bus = new PortBus();
  pit.attach(bus); sys.attach(bus); kbc.attach(bus);
  return { sys, kbc, bus, resets, at(ns: number) { insns = ns; } };
}

describe('PC system ports', () => {
  it('port 0x61: refresh toggle (bit 4) flips on each read; bit 0 gates PIT channel 2, bit 5 shows its OUT', () => {
    const s = system();
    const a = s.bus.read(0x61, 1), b = s.bus.read(0x61, 1);
    expect((a ^ b) & 0x10).toBe(0x10);
    // Channel 2 mode 0, count 100: OUT low until terminal count, counting only with the gate on.
    s.bus.write(0x43, 1, 0xb0);
    s.bus.write(0x42, 1, 100);
    s.bus.write(0x42, 1, 0);
    s.bus.write(0x61, 1, 0x01);
    expect(s.bus.read(0x61, 1) & 0x0f).toBe(0x01);
    expect(s.bus.read(0x61, 1) & 0x20).toBe(0);
    s.at(Math.ceil((102 * 1e9) / PIT_HZ));
    expect(s.bus.read(0x61, 1) & 0x20).toBe(0x20);
  });

  it('port 0x92 keeps A20 (bit 1) and asks for a reset with bit 0; port 0x80 keeps the POST code', () => {
    const s = system();
    expect(s.sys.a20Enabled).toBe(true);
    s.bus.write(0x92, 1, 0x00);
    expect(s.sys.a20Enabled).toBe(false);
    expect(s.bus.read(0x92, 1)).toBe(0x00);
    s.bus.write(0x92, 1, 0x02);
    expect(s.bus.read(0x92, 1)).toBe(0x02);
    expect(s.resets).toEqual([]);
    s.bus.write(0x92, 1, 0x03);
    expect(s.resets.length).toBe(1);
    expect(s.bus.read(0x92, 1)).toBe(0x02);
    s.bus.write(0x80, 1, 0x42);
    expect(s.sys.postCode).toBe(0x42);
  });

  it('8042: status shows empty buffers; 0xD1 + data and 0xDD/0xDF set A20; 0xFE pulses reset', () => {
    const s = system();
    expect(s.bus.read(0x64, 1) & 0x03).toBe(0); // OBF and IBF clear
    expect(s.bus.read(0x64, 1) & 0x04).toBe(0x04); // system flag
    s.bus.write(0x64, 1, 0xd1);
    expect(s.bus.read(0x64, 1) & 0x08).toBe(0x08); // last write was a command
    s.bus.write(0x60, 1, 0xdd); // output port: A20 off, reset line high (inactive)
    expect(s.sys.a20Enabled).toBe(false);
    s.bus.write(0x64, 1, 0xdf);
    expect(s.sys.a20Enabled).toBe(true);
    s.bus.write(0x60, 1, 0xff); // data without a command: for the (absent) keyboard
    expect(s.sys.a20Enabled).toBe(true);
    expect(s.resets).toEqual([]);
    s.bus.write(0x64, 1, 0xfe);
    expect(s.resets.length).toBe(1);
  });
});
