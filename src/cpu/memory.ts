/**
 * Physical memory: sparse 4 KiB pages allocated on first touch. Addresses at or
 * beyond `size` are unbacked: reads return all ones and writes are dropped, as
 * on a PC bus with nothing decoding the address.
 */
export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
export const PAGE_MASK = PAGE_SIZE - 1;

export class PhysicalMemory {
  /** Bytes of RAM; a multiple of the page size. */
  readonly size: number;
  private readonly pages: (DataView | undefined)[] = [];

  constructor(size: number) {
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) {
      throw new RangeError(`memory size must be a positive multiple of ${PAGE_SIZE} bytes, not ${size}`);
    }
    this.size = size;
  }

  /** The page with physical page number `ppn`, allocated now if it is RAM; null if unbacked. */
  page(ppn: number): DataView | null {
    const p = this.pages[ppn];
    if (p !== undefined) return p;
    if (ppn < 0 || ppn * PAGE_SIZE >= this.size) return null;
    const view = new DataView(new ArrayBuffer(PAGE_SIZE));
    this.pages[ppn] = view;
    return view;
  }

  /** True when the page has been touched (for snapshots and statistics). */
  isAllocated(ppn: number): boolean {
    return this.pages[ppn] !== undefined;
  }

  read8(pa: number): number {
    const p = this.page(Math.floor(pa / PAGE_SIZE));
    return p === null ? 0xff : p.getUint8(pa & PAGE_MASK);
  }

  write8(pa: number, v: number): void {
    const p = this.page(Math.floor(pa / PAGE_SIZE));
    if (p !== null) p.setUint8(pa & PAGE_MASK, v);
  }

  /** Copies bytes into physical memory (image loading, tests). */
  load(pa: number, bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) this.write8(pa + i, bytes[i]!);
  }

  /** Copies bytes out of physical memory. */
  dump(pa: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = this.read8(pa + i);
    return out;
  }
}
