/**
 * Linear memory access: a direct-mapped software TLB in front of a translation
 * hook (identity until paging is enabled) and physical memory.
 *
 * The fast path compares one tag and reads through the page's DataView. A tag is
 * the 52-bit linear page number held as a double; a non-canonical address is
 * never entered, so a hit implies the address passed the canonical check
 * (SDM vol. 1, 3.3.7.1). Write entries are never made for pages that hold
 * decoded code, so every write to code takes the slow path and invalidates it.
 */
import { PAGE_MASK, PAGE_SIZE, PhysicalMemory } from './memory.js';

export const enum Access { READ = 0, WRITE = 1, EXEC = 2 }

/** Maps a linear page to a physical page number, or raises the fault through the processor. */
export interface Translator {
  translate(linLo: number, linHi: number, access: Access): number;
}

/** What the MMU needs of the processor. */
export interface MmuHost {
  /** Raises #GP(0), or #SS(0) for a stack reference, for a non-canonical address. */
  nonCanonical(): never;
  /** True when the physical page holds decoded code. */
  isCodePage(ppn: number): boolean;
  /** A write landed on a page that holds decoded code. */
  codeWritten(pa: number, length: number): void;
}

export const identityTranslator: Translator = {
  translate: (linLo, linHi) => linHi * 0x100000 + (linLo >>> 12),
};

const TLB_BITS = 10;
const TLB_SIZE = 1 << TLB_BITS;
const TLB_MASK = TLB_SIZE - 1;
const LAST = PAGE_SIZE - 1;

/** The linear page number of (lo, hi): exact as a double for all 64-bit addresses. */
function vpnOf(lo: number, hi: number): number {
  return hi * 0x100000 + (lo >>> 12);
}

export class Mmu {
  /** High half of the last 64-bit read. */
  hi = 0;
  translator: Translator = identityTranslator;
  /** 16 for 48-bit linear addresses, 7 for 57-bit (CR4.LA57). */
  canonicalShift = 16;

  private readonly tagR = new Float64Array(TLB_SIZE).fill(NaN);
  private readonly tagW = new Float64Array(TLB_SIZE).fill(NaN);
  private readonly tagX = new Float64Array(TLB_SIZE).fill(NaN);
  private readonly pageR: (DataView | null)[] = new Array(TLB_SIZE).fill(null);
  private readonly pageW: (DataView | null)[] = new Array(TLB_SIZE).fill(null);
  private readonly pageX: (DataView | null)[] = new Array(TLB_SIZE).fill(null);
  private readonly ppnX = new Float64Array(TLB_SIZE);
  private readonly ppnW = new Float64Array(TLB_SIZE);

  constructor(readonly memory: PhysicalMemory, private readonly host: MmuHost) {}

  /** Counts flushes: anything that remembers a translation (block chaining) compares it. */
  epoch = 0;

  /** Drops every cached translation. */
  flush(): void {
    this.tagR.fill(NaN); this.tagW.fill(NaN); this.tagX.fill(NaN);
    this.epoch++;
  }

  /** Drops write entries that map physical page `ppn` (it now holds code). */
  protectCode(ppn: number): void {
    for (let i = 0; i < TLB_SIZE; i++) if (this.ppnW[i] === ppn) this.tagW[i] = NaN;
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
    if (this.tagX[idx] !== vpnOf(lo, hi)) this.resolve(lo, hi, Access.EXEC);
    return this.ppnX[idx]! * PAGE_SIZE + (lo & PAGE_MASK);
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

  /** Raises the fault that a write of `size` bytes at (lo, hi) would raise, writing nothing. */
  probeWrite(lo: number, hi: number, size: number): void {
    this.resolve(lo, hi, Access.WRITE);
    const endLo = (lo + size - 1) | 0;
    if ((endLo ^ lo) >>> 12 !== 0) this.resolve(endLo, endLo >>> 0 < lo >>> 0 ? (hi + 1) | 0 : hi, Access.WRITE);
  }

  // ---- slow paths ----------------------------------------------------------

  /**
   * Translates the page of (lo, hi) and fills the TLB entry for `access`.
   * Returns the physical page number; the page itself may be unbacked.
   */
  private resolve(lo: number, hi: number, access: Access): number {
    const s = this.canonicalShift;
    if (((hi << s) >> s) !== hi) this.host.nonCanonical();
    const ppn = this.translator.translate(lo, hi, access);
    const page = this.memory.page(ppn);
    const idx = (lo >>> 12) & TLB_MASK, vpn = vpnOf(lo, hi);
    if (page === null) return ppn;
    if (access === Access.READ) { this.tagR[idx] = vpn; this.pageR[idx] = page; }
    else if (access === Access.EXEC) { this.tagX[idx] = vpn; this.pageX[idx] = page; this.ppnX[idx] = ppn; }
    else if (!this.host.isCodePage(ppn)) { this.tagW[idx] = vpn; this.pageW[idx] = page; this.ppnW[idx] = ppn; }
    return ppn;
  }

  /** A read that missed the TLB, crosses a page, or touches unbacked memory. */
  private readSlow(lo: number, hi: number, size: number, access: Access): number {
    const ppn0 = this.resolve(lo, hi, access);
    const off = lo & PAGE_MASK;
    let ppn1 = ppn0;
    if (off + size > PAGE_SIZE) {
      const nLo = (lo - off + PAGE_SIZE) | 0;
      ppn1 = this.resolve(nLo, nLo === 0 ? (hi + 1) | 0 : hi, access);
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
    const off = lo & PAGE_MASK;
    let ppn1 = ppn0;
    if (off + size > PAGE_SIZE) {
      const nLo = (lo - off + PAGE_SIZE) | 0;
      ppn1 = this.resolve(nLo, nLo === 0 ? (hi + 1) | 0 : hi, Access.WRITE);
    }
    for (let k = 0; k < size; k++) {
      const o = off + k;
      const b = k < 4 ? vLo >>> (8 * k) : vHi >>> (8 * (k - 4));
      this.memory.write8(o < PAGE_SIZE ? ppn0 * PAGE_SIZE + o : ppn1 * PAGE_SIZE + o - PAGE_SIZE, b & 0xff);
    }
    const firstLen = Math.min(size, PAGE_SIZE - off);
    if (this.host.isCodePage(ppn0)) this.host.codeWritten(ppn0 * PAGE_SIZE + off, firstLen);
    if (firstLen < size && this.host.isCodePage(ppn1)) this.host.codeWritten(ppn1 * PAGE_SIZE, size - firstLen);
  }
}
