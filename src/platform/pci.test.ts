import { describe, expect, it } from 'vitest';
import { bdf, PciHost } from './pci.js';
import { PortBus } from './ports.js';

describe('PCI configuration mechanism #1 (PCI Local Bus Specification 3.0, 3.2.2.3.2)', () => {
  it('CONFIG_ADDRESS reads back what was written (Linux pci_check_type1 probe)', () => {
    const bus = new PortBus();
    new PciHost().attach(bus);
    bus.write(0xcfb, 1, 0x01); // not a configuration access
    bus.write(0xcf8, 4, 0x80000000);
    expect(bus.read(0xcf8, 4)).toBe(0x80000000 | 0);
    bus.write(0xcf8, 4, 0x8000f8ac);
    expect(bus.read(0xcf8, 4)).toBe(0x8000f8ac | 0);
  });

  it('an empty bus reads all ones at every size and offset (master abort); writes are dropped', () => {
    const bus = new PortBus();
    new PciHost().attach(bus);
    bus.write(0xcf8, 4, 0x80000000); // bus 0 device 0 function 0, vendor/device ID
    expect(bus.read(0xcfc, 4)).toBe(-1);
    expect(bus.read(0xcfc, 2)).toBe(0xffff);
    expect(bus.read(0xcfe, 2)).toBe(0xffff);
    expect(bus.read(0xcff, 1)).toBe(0xff);
    bus.write(0xcfc, 4, 0);
    expect(bus.read(0xcfc, 4)).toBe(-1);
  });

  it('routes data-port accesses to an attached function at register + (port & 3), only with bit 31 set', () => {
    const bus = new PortBus();
    const host = new PciHost();
    host.attach(bus);
    const log: string[] = [];
    host.attachFunction(bdf(0, 3, 1), {
      configRead: (offset, size) => { log.push(`r${size}@${offset}`); return 0x8086; },
      configWrite: (offset, size, v) => { log.push(`w${size}@${offset}=${v}`); },
    });
    bus.write(0xcf8, 4, 0x80001904); // bus 0, device 3, function 1, register 4
    expect(bus.read(0xcfe, 2)).toBe(0x8086);
    bus.write(0xcfd, 1, 7);
    bus.write(0xcf8, 4, 0x00001904); // enable bit clear
    expect(bus.read(0xcfc, 4)).toBe(-1);
    expect(log).toEqual(['r2@6', 'w1@5=7']);
  });
});
