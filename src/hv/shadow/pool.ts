/**
 * The shadow-page pool: the pages above guest RAM where the hypervisor keeps
 * the page tables the processor walks in place of the guest's (shadow paging,
 * shadow.ts), and what the hypervisor knows about each of them, in typed
 * arrays indexed by pool page:
 *
 * - its level (4 = PML4, 3 = PDPT, 2 = page directory, 1 = page table; 0 free),
 *   the linear address its first entry maps, and the entry of its parent that
 *   points to it (a slot: page × 512 + index; -1 for a root);
 * - its source: the guest page (frame number) whose paging-structure entries
 *   its entries are derived from, and which part of it (a 32-bit guest table of
 *   1024 entries is shadowed by two page tables or four page directories of
 *   512); -1 for a page derived from no guest table (a guest large page split
 *   into 4-KiB entries, the identity map of a guest with paging off, the PDPT
 *   of PAE paging built from PDPTE registers);
 * - per guest frame, the list of pool pages sourced from it (while one is, the
 *   frame is write-protected in every shadow), and the list of shadow leaf
 *   entries that map the frame writable (the reverse map that protection
 *   walks).
 *
 * Lists are doubly linked through Int32Arrays: nothing is allocated per entry.
 * Entries are read and written through the pages' DataViews; a write to a page
 * the processor has walked moves PhysicalMemory.pageTableWrites, as a store to
 * a paging structure would, so that the processor does not take back a
 * translation it kept across a flush (src/cpu/paging.ts) over a changed entry.
 */
import { PAGE_SIZE, type PhysicalMemory } from '../../cpu/memory.js';

/** Entries per shadow page: every shadow format is 8-byte entries (SDM vol. 3A, 4.4 and 4.5). */
export const ENTRIES = 512;

/** Pool pages for `memory` bytes of guest RAM when the configuration does not say: 1/64 of RAM, 256 to 8192 pages. */
export function shadowPoolPages(memory: number): number {
  return Math.min(8192, Math.max(256, Math.floor(memory / PAGE_SIZE / 64)));
}

/** The fewest pool pages a VM may have: a root and a path of three tables, twice over. */
export const MIN_POOL_PAGES = 8;

/** The pool's pages and bookkeeping (see the module comment); shadow.ts decides what goes in them. */
export class ShadowPool {
  /** 4 (PML4) to 1 (page table); 0 while free. */
  readonly level: Int8Array;
  /** The guest frame the page's entries derive from, or -1. */
  readonly gfn: Int32Array;
  /** Which part of a 32-bit guest table: quarter 0-3 (page directories), half 0-1 (page tables); else 0. */
  readonly part: Int8Array;
  /** Linear address (bits 47:0, unsigned) of the page's first entry. */
  readonly linear: Float64Array;
  /** The slot of the parent entry that points to the page; -1 for a root. */
  readonly parent: Int32Array;
  /** 1 while the page is on its frame's source list. */
  private readonly sourced: Uint8Array;
  private readonly srcNext: Int32Array;
  private readonly srcPrev: Int32Array;
  private readonly srcHead: Int32Array;
  /** Reverse map of writable leaves: per slot, the neighbours on its frame's list; per frame, the first slot. */
  private readonly rmapNext: Int32Array;
  private readonly rmapPrev: Int32Array;
  private readonly rmapHead: Int32Array;
  private readonly inRmap: Uint8Array;
  private readonly freeList: Int32Array;
  private freeCount = 0;
  private readonly views: (DataView | null)[];

  /**
   * `pages` pool pages at host-physical `base` (4-KiB aligned) in `memory`,
   * for a guest with `frames` 4-KiB frames of RAM.
   */
  constructor(private readonly memory: PhysicalMemory, readonly base: number, readonly pages: number, readonly frames: number) {
    this.level = new Int8Array(pages);
    this.gfn = new Int32Array(pages);
    this.part = new Int8Array(pages);
    this.linear = new Float64Array(pages);
    this.parent = new Int32Array(pages);
    this.sourced = new Uint8Array(pages);
    this.srcNext = new Int32Array(pages);
    this.srcPrev = new Int32Array(pages);
    this.srcHead = new Int32Array(frames);
    this.rmapNext = new Int32Array(pages * ENTRIES);
    this.rmapPrev = new Int32Array(pages * ENTRIES);
    this.rmapHead = new Int32Array(frames);
    this.inRmap = new Uint8Array(pages * ENTRIES);
    this.freeList = new Int32Array(pages);
    this.views = new Array<DataView | null>(pages).fill(null);
    this.reset();
  }

  /** Every page free, every list empty. */
  reset(): void {
    this.level.fill(0);
    this.sourced.fill(0);
    this.srcHead.fill(-1);
    this.rmapHead.fill(-1);
    this.inRmap.fill(0);
    // Pages are handed out lowest first.
    for (let k = 0; k < this.pages; k++) this.freeList[k] = this.pages - 1 - k;
    this.freeCount = this.pages;
  }

  /** Pages left. */
  get available(): number { return this.freeCount; }

  /** Host-physical address of pool page `p`. */
  address(p: number): number { return this.base + p * PAGE_SIZE; }

  /** The pool page at host-physical address `pa`, or -1 when `pa` is not in the pool. */
  pageAt(pa: number): number {
    const p = Math.floor((pa - this.base) / PAGE_SIZE);
    return p >= 0 && p < this.pages ? p : -1;
  }

  /**
   * A zeroed page for a table of `level` sourced from guest frame `gfn` (part
   * `part`), mapping from linear address `linear`, pointed to by slot `parent`;
   * -1 when the pool is empty.
   */
  allocate(level: number, gfn: number, part: number, linear: number, parent: number): number {
    if (this.freeCount === 0) return -1;
    const p = this.freeList[--this.freeCount]!;
    const view = this.view(p);
    new Uint8Array(view.buffer, view.byteOffset, PAGE_SIZE).fill(0);
    this.touched(p);
    this.level[p] = level;
    this.gfn[p] = gfn < this.frames ? gfn : -1;
    this.part[p] = part;
    this.linear[p] = linear;
    this.parent[p] = parent;
    this.sourced[p] = 0;
    return p;
  }

  /** Returns page `p` to the pool; the caller has emptied it of writable leaves and taken it off its source list. */
  release(p: number): void {
    this.level[p] = 0;
    this.freeList[this.freeCount++] = p;
  }

  // ---- entries ----------------------------------------------------------------

  private view(p: number): DataView {
    let v = this.views[p];
    if (v === null || v === undefined) {
      v = this.memory.page(Math.floor(this.address(p) / PAGE_SIZE));
      if (v === null) throw new RangeError(`shadow pool page ${p} at ${this.address(p).toString(16)} is not memory`);
      this.views[p] = v;
    }
    return v;
  }

  /** Bits 31:0 of entry `i` of page `p`. */
  lo(p: number, i: number): number { return this.view(p).getInt32(8 * i, true); }
  /** Bits 63:32. */
  hi(p: number, i: number): number { return this.view(p).getInt32(8 * i + 4, true); }

  /** Writes entry `i` of page `p`. */
  set(p: number, i: number, lo: number, hi: number): void {
    const v = this.view(p);
    v.setInt32(8 * i, lo, true);
    v.setInt32(8 * i + 4, hi, true);
    this.touched(p);
  }

  /** A paging structure the processor has walked was written: its kept translations must not come back (memory.ts). */
  private touched(p: number): void {
    if (this.memory.isPageTable(Math.floor(this.address(p) / PAGE_SIZE))) this.memory.pageTableWrites++;
  }

  // ---- source lists -------------------------------------------------------------

  /** Some pool page is sourced from guest frame `frame`: the frame is write-protected. */
  isSourced(frame: number): boolean {
    return frame >= 0 && frame < this.frames && this.srcHead[frame]! >= 0;
  }

  onSourceList(p: number): boolean { return this.sourced[p] === 1; }

  /** Puts page `p` on its frame's source list; true when the frame had none before (it must be protected now). */
  addSource(p: number): boolean {
    const f = this.gfn[p]!;
    if (f < 0 || this.sourced[p] === 1) return false;
    const head = this.srcHead[f]!;
    this.srcNext[p] = head;
    this.srcPrev[p] = -1;
    if (head >= 0) this.srcPrev[head] = p;
    this.srcHead[f] = p;
    this.sourced[p] = 1;
    return head < 0;
  }

  removeSource(p: number): void {
    if (this.sourced[p] !== 1) return;
    const f = this.gfn[p]!, next = this.srcNext[p]!, prev = this.srcPrev[p]!;
    if (prev >= 0) this.srcNext[prev] = next; else this.srcHead[f] = next;
    if (next >= 0) this.srcPrev[next] = prev;
    this.sourced[p] = 0;
  }

  /** The pages sourced from `frame`, into `out` (as many as fit); returns how many. */
  sourcesOf(frame: number, out: Int32Array): number {
    let n = 0;
    for (let p = this.srcHead[frame]!; p >= 0 && n < out.length; p = this.srcNext[p]!) out[n++] = p;
    return n;
  }

  // ---- reverse map of writable leaves -------------------------------------------

  /** Slot `slot` (page × 512 + index) holds a writable leaf mapping guest frame `frame`. */
  rmapAdd(slot: number, frame: number): void {
    if (frame < 0 || frame >= this.frames || this.inRmap[slot] === 1) return;
    const head = this.rmapHead[frame]!;
    this.rmapNext[slot] = head;
    this.rmapPrev[slot] = -1;
    if (head >= 0) this.rmapPrev[head] = slot;
    this.rmapHead[frame] = slot;
    this.inRmap[slot] = 1;
  }

  /** Slot `slot` no longer holds a writable leaf of `frame`. */
  rmapRemove(slot: number, frame: number): void {
    if (this.inRmap[slot] !== 1) return;
    const next = this.rmapNext[slot]!, prev = this.rmapPrev[slot]!;
    if (prev >= 0) this.rmapNext[prev] = next; else this.rmapHead[frame] = next;
    if (next >= 0) this.rmapPrev[next] = prev;
    this.inRmap[slot] = 0;
  }

  /** The first writable leaf slot of `frame`, or -1. */
  firstWritable(frame: number): number {
    return frame >= 0 && frame < this.frames ? this.rmapHead[frame]! : -1;
  }
}
