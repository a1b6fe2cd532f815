import { describe, expect, it } from 'vitest';
import { PhaseMarker } from './phase-marker.js';
import { PortBus } from './ports.js';

describe("hvsim's phase-marker port (0xE0)", () => {
  it('records the phase written, telling the listener the old and the new phase', () => {
    const bus = new PortBus(), marker = new PhaseMarker(), changes: [number, number][] = [];
    marker.attach(bus);
    marker.onPhase = (next, previous) => changes.push([next, previous]);
    expect(marker.phase).toBe(0);
    bus.write(0xe0, 1, 1);
    bus.write(0xe0, 2, 0x0302); // split: the low byte reaches 0xE0
    expect(changes).toEqual([[1, 0], [2, 1]]);
    expect(marker.phase).toBe(2);
    expect(bus.read(0xe0, 1)).toBe(0xff);
  });
});
