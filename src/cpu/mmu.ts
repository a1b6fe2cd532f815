/**
 * Linear memory access: a direct-mapped software TLB in front of a translator
 * (paging.ts; the identity until paging is enabled) and physical memory.
 *
 * The fast path compares one tag and reads through the page's DataView. A tag is
 * the 52-bit linear page number held as a double; a non-canonical address is
 * never entered, so a hit implies the address passed the canonical check
 * (SDM vol. 1, 3.3.7.1). Write entries are never made for pages that hold
 * decoded code, so every write to code takes the slow path and invalidates it.
 *
 * Privilege: there are two sets of entries, one for supervisor-mode and one for
 * user-mode accesses (SDM vol. 3A, 4.6.1); the set in use follows CPL and
 * implicit supervisor-mode accesses, so the fast path never compares a
 * privilege. An entry records a decision ("this access of this kind and
 * privilege is allowed"), and the translator enters one only when that decision
 * holds until the next flush: a write entry only once the page's dirty flag is
 * set, and no supervisor data entry for a user page under SMAP (whose answer
 * depends on RFLAGS.AC). Everything that changes such a decision (CR0.WP, CR3,
 * CR4) flushes these entries; the architectural TLB behind them is paging.ts's.
 */
import { PAGE_MASK, PAGE_SIZE, PhysicalMemory } from './memory.js';
import { FilledSlots } from './filled-slots.js';

export const enum Access { READ = 0, WRITE = 1, EXEC = 2 }

/** Maps a linear page to a physical page number, or raises the fault through the processor. */
export interface Translator {
  translate(linLo: number, linHi: number, access: Access): number;
  /** Drops what the translator caches and takes up the current control registers. */
  flush?(): void;
}

/** What the MMU needs of the processor. */
export interface MmuHost {
  /** Raises #GP(0), or #SS(0) for a stack reference, for a non-canonical address. */
  nonCanonical(): never;
  /**
   * True when writes to the physical page must take the slow path: it holds
   * decoded code, or paging structures (whose writes memory.ts counts).
   */
  isWatchedPage(ppn: number): boolean;
  /** A write landed on a watched page. */
  codeWritten(pa: number, length: number): void;
}

/** Data breakpoints: told of every read and write while set (the MMU then keeps no data TLB entries). */
export interface DataWatch {
  /**
   * An access of `size` bytes at linear address (lo, hi), about to be made;
   * `pa` is the physical address of its first byte (its first page only when
   * it crosses into a second).
   */
  access(lo: number, hi: number, size: number, write: boolean, pa: number): void;
}

export const identityTranslator: Translator = {
  translate: (linLo, linHi) => linHi * 0x100000 + (linLo >>> 12),
};

const TLB_BITS = 10;
const TLB_SIZE = 1 << TLB_BITS;
export const TLB_MASK = TLB_SIZE - 1;
const LAST = PAGE_SIZE - 1;

/** The linear page number of (lo, hi): exact as a double for all 64-bit addresses. */
function vpnOf(lo: number, hi: number): number {
  return hi * 0x100000 + (lo >>> 12);
}

/** Translation contexts whose fast entries are kept at once: a VMM and a few guests. */
const CONTEXTS = 4;

/** The fast entries of one privilege: per access kind, a tag and the page it maps. */
class EntrySet {
  readonly tagR = new Float64Array(TLB_SIZE).fill(NaN);
  readonly tagW = new Float64Array(TLB_SIZE).fill(NaN);
  readonly tagX = new Float64Array(TLB_SIZE).fill(NaN);
  readonly pageR: (DataView | null)[] = new Array<DataView | null>(TLB_SIZE).fill(null);
  readonly pageW: (DataView | null)[] = new Array<DataView | null>(TLB_SIZE).fill(null);
  readonly pageX: (DataView | null)[] = new Array<DataView | null>(TLB_SIZE).fill(null);
  readonly ppnX = new Float64Array(TLB_SIZE);
  readonly ppnW = new Float64Array(TLB_SIZE);
  readonly filled = new FilledSlots(TLB_SIZE >> 3);
  private readonly tags = [this.tagR, this.tagW, this.tagX];

  clear(): void { this.filled.clear(this.tags); }

  drop(idx: number): void { this.tagR[idx] = NaN; this.tagW[idx] = NaN; this.tagX[idx] = NaN; }
}

/**
 * The fast entries of one translation context, both privileges, with what
 * they depend on besides memory (the key: TLB tag, CR3 and the paging
 * controls; see Paging.switchVpid), or no key when unknown.
 */
class FastContext {
  readonly supervisor = new EntrySet();
  readonly user = new EntrySet();
  known = false;
  tag = 0; cr3 = 0; controls = 0;
  /** The MMU epoch while it was current, and when it was last current (for eviction). */
  epoch = 0;
  used = 0;

  matches(tag: number, cr3: number, controls: number): boolean {
    return this.known && this.tag === tag && this.cr3 === cr3 && this.controls === controls;
  }

  clear(): void {
    this.supervisor.clear(); this.user.clear();
    this.known = false;
  }
}

export class Mmu {
  /** High half of the last 64-bit read. */
  hi = 0;
  translator: Translator = identityTranslator;
  /** 16 for 48-bit linear addresses, 7 for 57-bit (CR4.LA57). */
  canonicalShift = 16;
  /** Set while data breakpoints are enabled: every data access takes the slow path and is reported. */
  watch: DataWatch | null = null;

  /**
   * Names the current state of translation: it takes a new value whenever a
   * translation may have changed, and a context switched back to gets its own
   * back. Anything that remembers a translation (block chaining) compares it.
   */
  epoch = 0;
  private epochs = 0;
  /**
   * Set before each translation; a translator clears it when its answer must
   * not be entered in the fast TLB (it depends on state the fast path does not see).
   */
  cacheable = true;
  /** The accesses being made are user-mode accesses (SDM vol. 3A, 4.6.1): CPL 3, not implicit. */
  user = false;
  private cpl3 = false;
  private implicit = false;

  /**
   * Contexts of translation, each with its own fast entries: VM entries and
   * exits alternate between a VMM's and a guest's address spaces, and each
   * keeps its entries while the other runs (switchContext).
   */
  private readonly contexts = Array.from({ length: CONTEXTS }, () => new FastContext());
  private current = this.contexts[0]!;
  private previous = this.contexts[0]!;
  private switches = 0;
  // The set in use, copied into fields so that the fast path reads them directly
  // (compiled blocks too: tagR, pageR, tagW and pageW, jit/emitter.ts).
  tagR = this.current.supervisor.tagR;
  tagW = this.current.supervisor.tagW;
  private tagX = this.current.supervisor.tagX;
  pageR = this.current.supervisor.pageR;
  pageW = this.current.supervisor.pageW;
  private pageX = this.current.supervisor.pageX;
  private ppnX = this.current.supervisor.ppnX;
  private ppnW = this.current.supervisor.ppnW;
  private filled = this.current.supervisor.filled;

  constructor(readonly memory: PhysicalMemory, private readonly host: MmuHost) {}

  // ---- privilege -----------------------------------------------------------

  /** CPL changed: at CPL 3 accesses are user-mode accesses (SDM vol. 3A, 4.6.1). */
  setCpl3(on: boolean): void {
    if (this.cpl3 === on) return;
    this.cpl3 = on;
    this.selectSet();
  }

  /**
   * While on, accesses are implicit supervisor-mode accesses (SDM vol. 3A, 4.6.1):
   * what the processor itself reads or writes in the GDT, LDT, IDT and TSS, at
   * any CPL. Turn it off again in a `finally`; readImplicit/writeImplicit do.
   */
  setImplicitSupervisor(on: boolean): void {
    this.implicit = on;
    this.selectSet();
  }

  /** Reads `size` bytes as an implicit supervisor-mode access (high half of 8 in `this.hi`). */
  readImplicit(lo: number, hi: number, size: number): number {
    const was = this.implicit;
    this.setImplicitSupervisor(true);
    try { return this.read(lo, hi, size); } finally { this.setImplicitSupervisor(was); }
  }

  /** Writes `size` bytes as an implicit supervisor-mode access. */
  writeImplicit(lo: number, hi: number, size: number, vLo: number, vHi: number): void {
    const was = this.implicit;
    this.setImplicitSupervisor(true);
    try { this.write(lo, hi, size, vLo, vHi); } finally { this.setImplicitSupervisor(was); }
  }

  private selectSet(): void {
    this.user = this.cpl3 && !this.implicit;
    const s = this.user ? this.current.user : this.current.supervisor;
    this.tagR = s.tagR; this.tagW = s.tagW; this.tagX = s.tagX;
    this.pageR = s.pageR; this.pageW = s.pageW; this.pageX = s.pageX;
    this.ppnX = s.ppnX; this.ppnW = s.ppnW;
    this.filled = s.filled;
  }

  // ---- invalidation ----------------------------------------------------------

  /**
   * Drops every cached translation, the translator's included, and makes it take
   * up the control registers anew: for code that loads CR0, CR3, CR4 or EFER
   * directly (reset, loaders, VM entry and exit).
   */
  flush(): void {
    this.flushFast();
    this.translator.flush?.();
  }

  /** Drops the fast entries of every context and privilege (the translator's cache stays). */
  flushFast(): void {
    for (const c of this.contexts) c.clear();
    this.newEpoch();
  }

  private newEpoch(): void {
    this.epoch = ++this.epochs;
  }

  /**
   * The translator now works in the context (tag, cr3, controls) (a VM entry
   * or exit switched VPID, CR3 and the paging controls without a flush): the
   * current entries stay with their context, and the new context's entries,
   * if kept, come back with their epoch. The key must name everything the
   * entries' decisions depend on; whatever drops entries drops them in every context.
   */
  switchContext(tag: number, cr3: number, controls: number): void {
    const cur = this.current;
    if (cur.matches(tag, cr3, controls)) return;
    cur.epoch = this.epoch;
    // Entries made since a flush made the key unknown belong to no context.
    if (!cur.known) cur.clear();
    // VM entries and exits alternate between two contexts: the one left last is the likely one.
    let next: FastContext | null = this.previous.matches(tag, cr3, controls) ? this.previous : null;
    for (let k = 0; k < CONTEXTS && next === null; k++) if (this.contexts[k]!.matches(tag, cr3, controls)) next = this.contexts[k]!;
    if (next !== null) {
      this.epoch = next.epoch;
    } else {
      // The least recently used context other than the current one makes room.
      for (const c of this.contexts) if (c !== cur && (next === null || c.used < next.used)) next = c;
      next!.clear();
      next!.known = true; next!.tag = tag; next!.cr3 = cr3; next!.controls = controls;
      this.newEpoch();
    }
    next!.used = ++this.switches;
    this.previous = cur;
    this.current = next!;
    this.selectSet();
  }

  /** Drops the fast entries for the linear page holding address bits 31:0 `lo` (any high half). */
  dropPage(lo: number): void {
    const idx = (lo >>> 12) & TLB_MASK;
    for (const c of this.contexts) {
      c.supervisor.drop(idx); c.user.drop(idx);
      c.epoch = ++this.epochs;
    }
    this.newEpoch();
  }

  /** Drops write entries that map physical page `ppn` (it is now watched: code or paging structures). */
  protectPage(ppn: number): void {
    for (const c of this.contexts) {
      for (const s of [c.supervisor, c.user]) {
        for (let i = 0; i < TLB_SIZE; i++) if (s.ppnW[i] === ppn) s.tagW[i] = NaN;
      }
    }
  }

  /**
   * The physical page number for an access of kind `access` at (lo, hi), with its
   * faults (canonical check, paging); enters nothing in the fast TLB.
   */
  translate(lo: number, hi: number, access: Access): number {
    const s = this.canonicalShift;
    if (((hi << s) >> s) !== hi) this.host.nonCanonical();
    return this.translator.translate(lo, hi, access);
  }

  // ---- reads -------------------------------------------------------------

  read8(lo: number, hi: number): number {
    const idx = (lo >>> 12) & TLB_MASK;
    if (this.tagR[idx] === vpnOf(lo, hi)) return this.pageR[idx]!.getUint8(lo & PAGE_MASK);
    return this.readSlow(lo, hi, 1, Access.READ);
  }

  read16(lo: number, hi: number): number {
    const off = lo & PAGE_MASK, idx = (lo >>> 12) & TLB_MASK;
    if (off < LAST && this.tagR[idx] === vpnOf(lo, hi)) return this.pageR[idx]!.getUint16(off, true);
    return this.readSlow(lo, hi, 2, Access.READ);
  }

  /** Returns the value as a signed 32-bit integer. */
  read32(lo: number, hi: number): number {
    const off = lo & PAGE_MASK, idx = (lo >>> 12) & TLB_MASK;
    if (off <= LAST - 3 && this.tagR[idx] === vpnOf(lo, hi)) return this.pageR[idx]!.getInt32(off, true);
    return this.readSlow(lo, hi, 4, Access.READ);
  }

  /** Returns the low half; the high half is left in `this.hi`. */
  read64(lo: number, hi: number): number {
    const off = lo & PAGE_MASK, idx = (lo >>> 12) & TLB_MASK;
    if (off <= LAST - 7 && this.tagR[idx] === vpnOf(lo, hi)) {
      const p = this.pageR[idx]!;
      this.hi = p.getInt32(off + 4, true);
      return p.getInt32(off, true);
    }
    return this.readSlow(lo, hi, 8, Access.READ);
  }

  /** Reads a value of 1, 2, 4 or 8 bytes (high half of 8 in `this.hi`). */
  read(lo: number, hi: number, size: number): number {
    switch (size) {
      case 1: return this.read8(lo, hi);
      case 2: return this.read16(lo, hi);
      case 4: return this.read32(lo, hi);
      default: return this.read64(lo, hi);
    }
  }

  /** Instruction fetch of one byte (execute access). */
  fetch8(lo: number, hi: number): number {
    const idx = (lo >>> 12) & TLB_MASK;
    if (this.tagX[idx] === vpnOf(lo, hi)) return this.pageX[idx]!.getUint8(lo & PAGE_MASK);
    return this.readSlow(lo, hi, 1, Access.EXEC);
  }

  /** Physical address of an instruction fetch at (lo, hi); raises the fetch's fault. */
  fetchPhysical(lo: number, hi: number): number {
    const idx = (lo >>> 12) & TLB_MASK;
    const ppn = this.tagX[idx] === vpnOf(lo, hi) ? this.ppnX[idx]! : this.resolve(lo, hi, Access.EXEC);
    return ppn * PAGE_SIZE + (lo & PAGE_MASK);
  }

  /**
   * The physical page an instruction fetch at (lo, hi) would use now, if the
   * fast entries hold it; -1 otherwise. No walk, no fault, no side effect.
   */
  cachedFetchPage(lo: number, hi: number): number {
    const idx = (lo >>> 12) & TLB_MASK;
    return this.tagX[idx] === vpnOf(lo, hi) ? this.ppnX[idx]! : -1;
  }

  // ---- writes ------------------------------------------------------------

  write8(lo: number, hi: number, v: number): void {
    const idx = (lo >>> 12) & TLB_MASK;
    if (this.tagW[idx] === vpnOf(lo, hi)) { this.pageW[idx]!.setUint8(lo & PAGE_MASK, v); return; }
    this.writeSlow(lo, hi, 1, v, 0);
  }

  write16(lo: number, hi: number, v: number): void {
    const off = lo & PAGE_MASK, idx = (lo >>> 12) & TLB_MASK;
    if (off < LAST && this.tagW[idx] === vpnOf(lo, hi)) { this.pageW[idx]!.setUint16(off, v, true); return; }
    this.writeSlow(lo, hi, 2, v, 0);
  }

  write32(lo: number, hi: number, v: number): void {
    const off = lo & PAGE_MASK, idx = (lo >>> 12) & TLB_MASK;
    if (off <= LAST - 3 && this.tagW[idx] === vpnOf(lo, hi)) { this.pageW[idx]!.setInt32(off, v, true); return; }
    this.writeSlow(lo, hi, 4, v, 0);
  }

  write64(lo: number, hi: number, vLo: number, vHi: number): void {
    const off = lo & PAGE_MASK, idx = (lo >>> 12) & TLB_MASK;
    if (off <= LAST - 7 && this.tagW[idx] === vpnOf(lo, hi)) {
      const p = this.pageW[idx]!;
      p.setInt32(off, vLo, true);
      p.setInt32(off + 4, vHi, true);
      return;
    }
    this.writeSlow(lo, hi, 8, vLo, vHi);
  }

  /** Writes a value of 1, 2, 4 or 8 bytes. */
  write(lo: number, hi: number, size: number, vLo: number, vHi: number): void {
    switch (size) {
      case 1: this.write8(lo, hi, vLo); return;
      case 2: this.write16(lo, hi, vLo); return;
      case 4: this.write32(lo, hi, vLo); return;
      default: this.write64(lo, hi, vLo, vHi);
    }
  }

  /** Raises the fault a write of `size` bytes would raise; cheap when the write TLB already maps it. */
  checkWrite(lo: number, hi: number, size: number): void {
    const off = lo & PAGE_MASK, idx = (lo >>> 12) & TLB_MASK;
    if (off + size <= PAGE_SIZE && this.tagW[idx] === vpnOf(lo, hi)) return;
    this.probeWrite(lo, hi, size);
  }

  /**
   * Raises the fault that a write of `size` bytes at (lo, hi) would raise,
   * writing no data (paging may set accessed and dirty flags, as a write would).
   */
  probeWrite(lo: number, hi: number, size: number): void {
    this.resolve(lo, hi, Access.WRITE);
    const endLo = (lo + size - 1) | 0;
    if ((endLo ^ lo) >>> 12 !== 0) this.resolve(endLo, endLo >>> 0 < lo >>> 0 ? (hi + 1) | 0 : hi, Access.WRITE);
  }

  // ---- slow paths ----------------------------------------------------------

  /**
   * Translates the page of (lo, hi) and fills the TLB entry for `access` when
   * the translator allows. Returns the physical page number; the page itself may be unbacked.
   */
  private resolve(lo: number, hi: number, access: Access): number {
    this.cacheable = true;
    const ppn = this.translate(lo, hi, access);
    if (!this.cacheable || (this.watch !== null && access !== Access.EXEC)) return ppn;
    const page = this.memory.page(ppn);
    const idx = (lo >>> 12) & TLB_MASK, vpn = vpnOf(lo, hi);
    if (page === null) return ppn;
    this.filled.note(idx);
    if (access === Access.READ) { this.tagR[idx] = vpn; this.pageR[idx] = page; }
    else if (access === Access.EXEC) { this.tagX[idx] = vpn; this.pageX[idx] = page; this.ppnX[idx] = ppn; }
    else if (!this.host.isWatchedPage(ppn)) { this.tagW[idx] = vpn; this.pageW[idx] = page; this.ppnW[idx] = ppn; }
    return ppn;
  }

  /** A read that missed the TLB, crosses a page, or touches unbacked memory. */
  private readSlow(lo: number, hi: number, size: number, access: Access): number {
    const ppn0 = this.resolve(lo, hi, access);
    if (this.watch !== null && access === Access.READ) this.watch.access(lo, hi, size, false, ppn0 * PAGE_SIZE + (lo & PAGE_MASK));
    const off = lo & PAGE_MASK;
    let ppn1 = ppn0;
    if (off + size > PAGE_SIZE) {
      const nLo = (lo - off + PAGE_SIZE) | 0;
      ppn1 = this.resolve(nLo, nLo === 0 ? (hi + 1) | 0 : hi, access);
    } else if (this.memory.page(ppn0) === null) {
      // Memory-mapped I/O: the device sees one access of the full size (two dwords for 8 bytes).
      const pa = ppn0 * PAGE_SIZE + off;
      const vLo = this.memory.readUnbacked(pa, size);
      this.hi = size === 8 ? this.memory.readUnbacked(pa + 4, 4) : 0;
      return vLo;
    }
    let vLo = 0, vHi = 0;
    for (let k = 0; k < size; k++) {
      const o = off + k;
      const b = this.memory.read8(o < PAGE_SIZE ? ppn0 * PAGE_SIZE + o : ppn1 * PAGE_SIZE + o - PAGE_SIZE);
      if (k < 4) vLo |= b << (8 * k); else vHi |= b << (8 * (k - 4));
    }
    this.hi = vHi;
    return vLo;
  }

  /** A write that missed the TLB, crosses a page, or lands on code or unbacked memory. */
  private writeSlow(lo: number, hi: number, size: number, vLo: number, vHi: number): void {
    const ppn0 = this.resolve(lo, hi, Access.WRITE);
    if (this.watch !== null) this.watch.access(lo, hi, size, true, ppn0 * PAGE_SIZE + (lo & PAGE_MASK));
    const off = lo & PAGE_MASK;
    let ppn1 = ppn0;
    if (off + size > PAGE_SIZE) {
      const nLo = (lo - off + PAGE_SIZE) | 0;
      ppn1 = this.resolve(nLo, nLo === 0 ? (hi + 1) | 0 : hi, Access.WRITE);
    } else if (this.memory.page(ppn0) === null) {
      const pa = ppn0 * PAGE_SIZE + off;
      this.memory.writeUnbacked(pa, size, vLo);
      if (size === 8) this.memory.writeUnbacked(pa + 4, 4, vHi);
      return;
    }
    for (let k = 0; k < size; k++) {
      const o = off + k;
      const b = k < 4 ? vLo >>> (8 * k) : vHi >>> (8 * (k - 4));
      this.memory.write8(o < PAGE_SIZE ? ppn0 * PAGE_SIZE + o : ppn1 * PAGE_SIZE + o - PAGE_SIZE, b & 0xff);
    }
    const firstLen = Math.min(size, PAGE_SIZE - off);
    if (this.host.isWatchedPage(ppn0)) this.host.codeWritten(ppn0 * PAGE_SIZE + off, firstLen);
    if (firstLen < size && this.host.isWatchedPage(ppn1)) this.host.codeWritten(ppn1 * PAGE_SIZE, size - firstLen);
  }
}
