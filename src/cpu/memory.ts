/**
 * Physical memory: sparse 4 KiB pages allocated on first touch. Addresses at or
 * beyond `size` are unbacked: reads return all ones and writes are dropped, as
 * on a PC bus with nothing decoding the address.
 */
export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
export const PAGE_MASK = PAGE_SIZE - 1;

/**
 * A device decoding a range of physical addresses (memory-mapped I/O). The
 * range may move (the local APIC's base is an MSR): `contains` is asked on
 * every access that is not to RAM.
 */
export interface MmioRegion {
  contains(pa: number): boolean;
  /** An access of 1, 2 or 4 bytes at physical address `pa`. */
  read(pa: number, size: 1 | 2 | 4): number;
  write(pa: number, size: 1 | 2 | 4, value: number): void;
}

export class PhysicalMemory {
  /** Bytes of RAM; a multiple of the page size. */
  readonly size: number;
  private readonly pages: (DataView | undefined)[] = [];
  private readonly mmio: MmioRegion[] = [];
  /** Pages some walk has read paging-structure entries from (1 per page of RAM). */
  private readonly pageTables: Uint8Array;
  /**
   * Counts writes to those pages. A translation a walk made at one count is the
   * one a new walk would make while the count stands: paging.ts keeps flushed TLB
   * entries against it, and reuses one instead of walking again.
   */
  pageTableWrites = 0;

  constructor(size: number) {
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) {
      throw new RangeError(`memory size must be a positive multiple of ${PAGE_SIZE} bytes, not ${size}`);
    }
    this.size = size;
    this.pageTables = new Uint8Array(size / PAGE_SIZE);
  }

  /** Notes that page `ppn` holds paging structures; true the first time. */
  markPageTable(ppn: number): boolean {
    if (ppn >= this.pageTables.length || this.pageTables[ppn] === 1) return false;
    this.pageTables[ppn] = 1;
    return true;
  }

  isPageTable(ppn: number): boolean {
    return this.pageTables[ppn] === 1;
  }

  /** The page with physical page number `ppn`, allocated now if it is RAM; null if unbacked. */
  page(ppn: number): DataView | null {
    const p = this.pages[ppn];
    if (p !== undefined) return p;
    if (ppn < 0 || ppn * PAGE_SIZE >= this.size) return null;
    if (this.mmioAt(ppn * PAGE_SIZE) !== null) return null; // a device shadows the RAM here
    const view = new DataView(new ArrayBuffer(PAGE_SIZE));
    this.pages[ppn] = view;
    return view;
  }

  /** Adds a memory-mapped device; its pages are never RAM. */
  mapMmio(region: MmioRegion): void {
    this.mmio.push(region);
  }

  private mmioAt(pa: number): MmioRegion | null {
    for (const r of this.mmio) if (r.contains(pa)) return r;
    return null;
  }

  /**
   * An access that missed RAM: a device if one decodes the address, else the
   * bus floats (reads all ones, writes vanish). 8-byte accesses go as two dwords.
   */
  readUnbacked(pa: number, size: number): number {
    const r = this.mmioAt(pa);
    if (r === null) return size === 1 ? 0xff : size === 2 ? 0xffff : -1;
    return r.read(pa, (size > 4 ? 4 : size) as 1 | 2 | 4);
  }

  writeUnbacked(pa: number, size: number, value: number): void {
    const r = this.mmioAt(pa);
    if (r !== null) r.write(pa, (size > 4 ? 4 : size) as 1 | 2 | 4, value);
  }

  /** True when the page has been touched (for snapshots and statistics). */
  isAllocated(ppn: number): boolean {
    return this.pages[ppn] !== undefined;
  }

  read8(pa: number): number {
    const p = this.page(Math.floor(pa / PAGE_SIZE));
    return p === null ? this.readUnbacked(pa, 1) & 0xff : p.getUint8(pa & PAGE_MASK);
  }

  write8(pa: number, v: number): void {
    const ppn = Math.floor(pa / PAGE_SIZE), p = this.page(ppn);
    if (this.pageTables[ppn] === 1) this.pageTableWrites++;
    if (p !== null) p.setUint8(pa & PAGE_MASK, v);
    else this.writeUnbacked(pa, 1, v);
  }

  /** A dword at a 4-aligned physical address (VMX structures, page tables). */
  read32(pa: number): number {
    const p = this.page(Math.floor(pa / PAGE_SIZE));
    return p === null ? this.readUnbacked(pa, 4) : p.getInt32(pa & PAGE_MASK, true);
  }

  write32(pa: number, v: number): void {
    const ppn = Math.floor(pa / PAGE_SIZE), p = this.page(ppn);
    if (this.pageTables[ppn] === 1) this.pageTableWrites++;
    if (p !== null) p.setInt32(pa & PAGE_MASK, v, true);
    else this.writeUnbacked(pa, 4, v);
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
