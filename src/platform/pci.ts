/**
 * PCI configuration mechanism #1 (PCI Local Bus Specification 3.0, 3.2.2.3.2):
 * CONFIG_ADDRESS at 0xCF8 (dword accesses only; bit 31 enable, bits 23-16 bus,
 * 15-11 device, 10-8 function, 7-2 register) and CONFIG_DATA at 0xCFC-0xCFF
 * (byte, word or dword at the offset the port adds to the register).
 *
 * The bus is empty unless functions are attached: a read with no function
 * behind it (a master abort) returns all ones and a write is dropped. The
 * address register reads back exactly what was written. Byte and word accesses
 * to 0xCF8-0xCFB are not configuration cycles (unclaimed); a data access that
 * runs past 0xCFF, or with the enable bit clear, reads all ones.
 */
import type { PortBus, PortSize } from './ports.js';

/** A PCI function's 256-byte configuration space. */
export interface PciFunction {
  configRead(offset: number, size: PortSize): number;
  configWrite(offset: number, size: PortSize, value: number): void;
}

/** Bus/device/function as the address register encodes them: bus << 8 | device << 3 | function. */
export function bdf(bus: number, device: number, fn: number): number {
  return (bus << 8) | (device << 3) | fn;
}

const ALL_ONES = [0, 0xff, 0xffff, 0, -1];

export class PciHost {
  /** CONFIG_ADDRESS as last written. */
  address = 0;
  private readonly functions = new Map<number, PciFunction>();

  attach(bus: PortBus): void {
    bus.register(0xcf8, 4, this, 4);
    bus.register(0xcfc, 4, this, 1 | 2 | 4);
  }

  /** Puts a function on the bus at `where` (see `bdf`). */
  attachFunction(where: number, fn: PciFunction): void {
    this.functions.set(where, fn);
  }

  /** The addressed function and the offset of a data-port access, or undefined. */
  private target(port: number, size: PortSize): PciFunction | undefined {
    const a = this.address;
    if (a >= 0 || (port & 3) + size > 4) return undefined;
    return this.functions.get((a >>> 8) & 0xffff);
  }

  read(port: number, size: PortSize): number {
    if (port < 0xcfc) return port === 0xcf8 ? this.address : -1;
    const fn = this.target(port, size);
    return fn ? fn.configRead((this.address & 0xfc) | (port & 3), size) : ALL_ONES[size]!;
  }

  write(port: number, size: PortSize, value: number): void {
    if (port < 0xcfc) { if (port === 0xcf8) this.address = value | 0; return; }
    this.target(port, size)?.configWrite((this.address & 0xfc) | (port & 3), size, value);
  }
}
