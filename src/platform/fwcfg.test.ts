import { describe, expect, it } from 'vitest';
import { FwCfg } from './fwcfg.js';
import { PortBus } from './ports.js';

function setup() {
  const bus = new PortBus();
  new FwCfg({ memorySize: 0x1_2345_6000, cpuCount: 4 }).attach(bus);
  const item = (key: number, n: number) => {
    bus.write(0x510, 2, key);
    return Array.from({ length: n }, () => bus.read(0x511, 1));
  };
  return { bus, item };
}

describe('fw_cfg traditional I/O interface (QEMU docs/specs/fw_cfg.rst)', () => {
  it('signature "QEMU" and ID 1 (traditional interface, no DMA)', () => {
    const { item } = setup();
    expect(String.fromCharCode(...item(0x0000, 4))).toBe('QEMU');
    expect(item(0x0001, 4)).toEqual([1, 0, 0, 0]);
  });

  it('RAM size (u64 LE), CPU count and max CPUs (u16 LE), an empty file directory (u32 BE count)', () => {
    const { item } = setup();
    expect(item(0x0003, 8)).toEqual([0x00, 0x60, 0x45, 0x23, 0x01, 0, 0, 0]);
    expect(item(0x0005, 2)).toEqual([4, 0]);
    expect(item(0x000f, 2)).toEqual([4, 0]);
    expect(item(0x0019, 4)).toEqual([0, 0, 0, 0]);
  });

  it('selecting resets the offset; reads past the end and of unknown items return 0; byte writes to the selector are ignored', () => {
    const { bus, item } = setup();
    expect(item(0x0000, 6)).toEqual([0x51, 0x45, 0x4d, 0x55, 0, 0]);
    expect(item(0x1234, 3)).toEqual([0, 0, 0]);
    bus.write(0x510, 2, 0x0000);
    bus.read(0x511, 1);
    bus.write(0x510, 1, 0x05); // not a 16-bit write: no selection
    expect(bus.read(0x511, 1)).toBe(0x45);
  });
});
