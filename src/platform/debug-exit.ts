/**
 * QEMU's isa-debug-exit device at port 0xF4, one byte wide: writing v ends
 * the run with exit status (v << 1) | 1 (so a guest can never report 0).
 * Wider writes are split by the bus and only their low byte reaches 0xF4;
 * reads return all ones (the device has no readable register).
 */
import type { PortBus, PortSize } from './ports.js';

export const DEBUG_EXIT_PORT = 0xf4;

export class DebugExit {
  /** `onExit(status)` is called synchronously from the OUT; the run loop stops the processor there. */
  constructor(private readonly onExit: (status: number) => void) {}

  attach(bus: PortBus, port = DEBUG_EXIT_PORT): void {
    bus.register(port, 1, this);
  }

  read(_port: number, _size: PortSize): number {
    return 0xff;
  }

  write(_port: number, _size: PortSize, value: number): void {
    this.onExit(((value & 0xff) << 1) | 1);
  }
}
