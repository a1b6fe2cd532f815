/**
 * hvsim's phase-marker port, 0xE0, one byte wide: a guest writes a phase
 * number there to mark where the cost model's per-phase counts begin
 * (e.g. a benchmark's baseline loop, then its measured loop). The run starts
 * in phase 0. Reads return all ones; wider writes reach it only with their
 * low byte, as the bus splits them.
 */
import type { PortBus, PortSize } from './ports.js';

export const PHASE_MARKER_PORT = 0xe0;

export class PhaseMarker {
  /** The phase the guest last marked. */
  phase = 0;
  /** Called synchronously from the OUT, before the phase changes: counts up to here belong to the old phase. */
  onPhase: ((next: number, previous: number) => void) | null = null;

  attach(bus: PortBus, port = PHASE_MARKER_PORT): void {
    bus.register(port, 1, this);
  }

  read(_port: number, _size: PortSize): number {
    return 0xff;
  }

  write(_port: number, _size: PortSize, value: number): void {
    const next = value & 0xff;
    this.onPhase?.(next, this.phase);
    this.phase = next;
  }
}
