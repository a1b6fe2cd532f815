import { describe, expect, it } from 'vitest';
import { DebugExit } from './debug-exit.js';
import { PortBus } from './ports.js';

describe('isa-debug-exit (QEMU, port 0xF4)', () => {
  it('writing v reports exit status (v << 1) | 1', () => {
    const statuses: number[] = [];
    const bus = new PortBus();
    new DebugExit((s) => statuses.push(s)).attach(bus);
    bus.write(0xf4, 1, 0x00);
    bus.write(0xf4, 1, 0x10);
    bus.write(0xf4, 1, 0xff);
    bus.write(0xf4, 2, 0x0131); // split: the low byte reaches 0xF4
    expect(statuses).toEqual([1, 0x21, 0x1ff, 0x63]);
    expect(bus.read(0xf4, 1)).toBe(0xff);
  });
});
