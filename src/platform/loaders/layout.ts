/**
 * Where a loader puts things in physical memory. Every range the image and the
 * loader use is claimed here, so nothing the loader writes lands on the image.
 *
 * Placement policy (documented in index.ts): the loader's own structures (GDT,
 * page tables, boot information) go first-fit into the boot area
 * [BOOT_AREA_START, BOOT_AREA_END) below the EBDA; what does not fit there, and
 * modules, go first-fit above the highest byte claimed so far.
 */
import type { Cpu } from '../../cpu/cpu.js';
import {
  buildIdentityMap, enterLongMode64, enterProtectedFlat32, GDT_SIZE, identityMapSize,
} from '../../cpu/reset.js';
import { hex, ImageError } from './errors.js';

export const BOOT_AREA_START = 0x90000;
/** The EBDA starts at 0x9FC00 (reserved in the memory map); stop at the page below it. */
export const BOOT_AREA_END = 0x9f000;

interface Range { start: number; end: number; what: string }

function alignUp(v: number, align: number): number { return Math.ceil(v / align) * align; }

export class PhysicalLayout {
  private readonly used: Range[] = [];

  constructor(readonly memorySize: number) {}

  /** One past the highest byte claimed (0 when nothing is). */
  get top(): number {
    let t = 0;
    for (const r of this.used) if (r.end > t) t = r.end;
    return t;
  }

  /** Claims [start, start + size) for `what`: ImageError if it leaves memory or overlaps a claim. */
  claim(start: number, size: number, what: string): void {
    if (!Number.isSafeInteger(start) || start < 0 || start + size > this.memorySize) {
      throw new ImageError(`${what} (${size} bytes at ${hex(start)}) does not fit in ${this.memorySize} bytes of memory`);
    }
    const other = this.overlap(start, start + size);
    if (other !== null) {
      throw new ImageError(`${what} ([${hex(start)}, ${hex(start + size)})) overlaps ${other.what} ` +
        `([${hex(other.start)}, ${hex(other.end)}))`);
    }
    if (size > 0) this.used.push({ start, end: start + size, what });
  }

  /** Finds and claims `size` bytes aligned to `align`: in the boot area first unless `above`. */
  place(size: number, align: number, what: string, above = false): number {
    const at = (above ? null : this.fit(BOOT_AREA_START, Math.min(BOOT_AREA_END, this.memorySize), size, align)) ??
      this.fit(this.top, this.memorySize, size, align);
    if (at === null) throw new ImageError(`no room in ${this.memorySize} bytes of memory for ${what} (${size} bytes)`);
    this.claim(at, size, what);
    return at;
  }

  private overlap(start: number, end: number): Range | null {
    for (const r of this.used) if (start < r.end && r.start < end) return r;
    return null;
  }

  /** First-fit in [from, to): the lowest aligned address whose `size` bytes overlap no claim. */
  private fit(from: number, to: number, size: number, align: number): number | null {
    let at = alignUp(from, align);
    for (;;) {
      if (at + size > to) return null;
      const r = this.overlap(at, at + Math.max(size, 1));
      if (r === null) return at;
      at = alignUp(r.end, align);
    }
  }
}

/** Bytes the 64-bit identity map covers: the low 4 GiB (local APIC, I/O APIC) and all RAM. */
export function identityCoverage(memorySize: number): number { return Math.max(2 ** 32, memorySize); }

/**
 * Leaves the processor in flat 32-bit protected mode or 64-bit mode, with the
 * boot GDT (and for 64-bit mode the identity-map page tables) placed by `layout`.
 */
export function enterFlatMode(cpu: Cpu, layout: PhysicalLayout, mode: 32 | 64): void {
  const gdt = layout.place(GDT_SIZE, 8, 'the boot GDT');
  if (mode === 32) { enterProtectedFlat32(cpu, gdt); return; }
  const cover = identityCoverage(layout.memorySize);
  const tables = layout.place(identityMapSize(cover), 4096, 'the identity-map page tables');
  enterLongMode64(cpu, buildIdentityMap(cpu, tables, cover), gdt);
}

/** Sets RIP to a start address. */
export function setEntry(cpu: Cpu, entry: number | bigint): void {
  cpu.rip = BigInt(entry);
}
