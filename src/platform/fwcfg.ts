/**
 * QEMU's fw_cfg device, traditional I/O interface (QEMU docs/specs/fw_cfg.rst):
 * a 16-bit selector at 0x510 and a byte-wide data port at 0x511. Selecting an
 * item resets its read offset to 0; each data read returns the next byte, and
 * 0 past the item's end or for an unknown item. No DMA interface (the ID item
 * says so), data writes are ignored, other access sizes are unclaimed.
 */
import type { PortBus, PortSize } from './ports.js';

/** Item selectors. */
export const enum FwCfgKey {
  SIGNATURE = 0x0000, ID = 0x0001, UUID = 0x0002, RAM_SIZE = 0x0003, NOGRAPHIC = 0x0004,
  NB_CPUS = 0x0005, MAX_CPUS = 0x000f, FILE_DIR = 0x0019,
}

export interface FwCfgOptions {
  memorySize: number;
  cpuCount?: number;
  maxCpus?: number;
}

function le(value: number, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = Math.floor(value / 2 ** (8 * i)) & 0xff;
  return out;
}

export class FwCfg {
  private readonly items = new Map<number, Uint8Array>();
  private current: Uint8Array | undefined;
  private offset = 0;

  constructor(options: FwCfgOptions) {
    const cpus = options.cpuCount ?? 1;
    this.items.set(FwCfgKey.SIGNATURE, new TextEncoder().encode('QEMU'));
    this.items.set(FwCfgKey.ID, le(1, 4)); // bit 0: traditional interface; bit 1 (DMA) clear
    this.items.set(FwCfgKey.RAM_SIZE, le(options.memorySize, 8));
    this.items.set(FwCfgKey.NB_CPUS, le(cpus, 2));
    this.items.set(FwCfgKey.MAX_CPUS, le(options.maxCpus ?? cpus, 2));
    this.items.set(FwCfgKey.FILE_DIR, new Uint8Array(4)); // big-endian count of files: 0
    this.select(FwCfgKey.SIGNATURE);
  }

  attach(bus: PortBus): void {
    bus.register(0x510, 1, this, 2);
    bus.register(0x511, 1, this, 1);
  }

  /** Selector bit 14 (write channel) does not change which item is read; bit 15 selects arch-local items (none here). */
  private select(key: number): void {
    this.current = this.items.get(key & 0xbfff);
    this.offset = 0;
  }

  read(port: number, _size: PortSize): number {
    if (port === 0x510) return 0xffff; // the selector is write-only
    const item = this.current;
    if (item === undefined || this.offset >= item.length) return 0;
    return item[this.offset++]!;
  }

  write(port: number, _size: PortSize, value: number): void {
    if (port === 0x510) this.select(value);
  }
}
