/**
 * Helpers for the paging spec tests: page tables written into a processor's
 * physical memory for each paging mode, and accesses that report the fault
 * they raise.
 */
import { Cpu, FAULT } from '../../src/cpu/cpu.js';
import type { CpuProfile } from '../../src/cpu/profile.js';
import { skylakeWith } from '../../src/cpu/testing.js';

export const PTE_P = 1n, PTE_RW = 2n, PTE_US = 4n, PTE_PWT = 8n, PTE_PCD = 16n;
export const PTE_A = 0x20n, PTE_D = 0x40n, PTE_PS = 0x80n, PTE_G = 0x100n, PTE_XD = 1n << 63n;
/** An ordinary user-accessible, writable, present entry. */
export const PTE_URW = PTE_P | PTE_RW | PTE_US;

export const CR0_PE = 1, CR0_WP = 1 << 16, CR0_PG = 1 << 31;
export const CR4_PSE = 1 << 4, CR4_PAE = 1 << 5, CR4_PGE = 1 << 7, CR4_LA57 = 1 << 12;
export const CR4_PCIDE = 1 << 17, CR4_SMEP = 1 << 20, CR4_SMAP = 1 << 21;
export const EFER_LME = 1 << 8, EFER_LMA = 1 << 10, EFER_NXE = 1 << 11;

export const KIB = 0x1000, MIB2 = 0x200000, MIB4 = 0x400000, GIB = 0x40000000;

export function read64(cpu: Cpu, pa: number): bigint {
  let v = 0n;
  for (let k = 7; k >= 0; k--) v = (v << 8n) | BigInt(cpu.memory.read8(pa + k));
  return v;
}

export function write64(cpu: Cpu, pa: number, v: bigint): void {
  for (let k = 0; k < 8; k++) cpu.memory.write8(pa + k, Number((v >> BigInt(8 * k)) & 0xffn));
}

export function read32(cpu: Cpu, pa: number): number {
  return Number(read64(cpu, pa) & 0xffffffffn);
}

export function write32(cpu: Cpu, pa: number, v: number): void {
  for (let k = 0; k < 4; k++) cpu.memory.write8(pa + k, (v >>> (8 * k)) & 0xff);
}

/** A bump allocator of zeroed 4-KiB pages for paging structures. */
class Frames {
  constructor(private readonly cpu: Cpu, private next: number) {}
  alloc(): number {
    const pa = this.next;
    this.next += KIB;
    for (let k = 0; k < KIB; k++) this.cpu.memory.write8(pa + k, 0);
    return pa;
  }
}

/**
 * 4-level or 5-level paging structures (SDM vol. 3A, 4.5). Tables that map() has
 * to create get `tableFlags` (default P, R/W, U/S: the leaf decides the rights).
 */
export class Tables64 {
  private readonly frames: Frames;
  readonly root: number;
  constructor(readonly cpu: Cpu, readonly levels: 4 | 5 = 4, at = 0x800000, public tableFlags = PTE_URW) {
    this.frames = new Frames(cpu, at);
    this.root = this.frames.alloc();
  }

  /** Index of `lin` in the table of `level` (1 = page table). */
  private index(lin: bigint, level: number): number {
    return Number((lin >> BigInt(3 + 9 * level)) & 511n);
  }

  /**
   * Physical address of the entry of `level` that translates `lin`, creating the
   * tables above it; `level` 1 is the PTE, 2 the PDE, 3 the PDPTE, 4 the PML4E.
   */
  entry(lin: bigint, level: number): number {
    let table = this.root;
    for (let l = this.levels; l > level; l--) {
      const at = table + 8 * this.index(lin, l);
      let e = read64(this.cpu, at);
      if ((e & PTE_P) === 0n) {
        const t = this.frames.alloc();
        e = BigInt(t) | this.tableFlags;
        write64(this.cpu, at, e);
      }
      table = Number(e & 0x000ffffffffff000n);
    }
    return table + 8 * this.index(lin, level);
  }

  /** Maps the page of `size` bytes (4 KiB, 2 MiB or 1 GiB) at `lin` to `pa` with `flags`. */
  map(lin: bigint, pa: number | bigint, flags = PTE_URW, size = KIB): number {
    const level = size === KIB ? 1 : size === MIB2 ? 2 : 3;
    const at = this.entry(lin, level);
    write64(this.cpu, at, BigInt(pa) | flags | (level > 1 ? PTE_PS : 0n));
    return at;
  }

  /** Identity-maps [0, bytes) with 4-KiB user-writable pages. */
  identity(bytes: number, flags = PTE_URW): void {
    for (let pa = 0; pa < bytes; pa += KIB) this.map(BigInt(pa), pa, flags);
  }

  /** Points CR3 at the tables and takes them up (as a loader would: see mmu.flush()). */
  activate(cr3Low12 = 0): void {
    this.cpu.cr3Lo = this.root | cr3Low12;
    this.cpu.cr3Hi = 0;
    if (this.levels === 5) this.cpu.cr4 |= CR4_LA57;
    this.cpu.mmu.flush();
  }
}

/** 32-bit paging structures (SDM vol. 3A, 4.3). */
export class Tables32 {
  private readonly frames: Frames;
  readonly root: number;
  constructor(readonly cpu: Cpu, at = 0x800000, public tableFlags = PTE_URW) {
    this.frames = new Frames(cpu, at);
    this.root = this.frames.alloc();
  }

  pde(lin: number): number { return this.root + 4 * (lin >>> 22); }

  pte(lin: number): number {
    const at = this.pde(lin);
    let e = read32(this.cpu, at);
    if ((e & 1) === 0) { e = this.frames.alloc() | Number(this.tableFlags); write32(this.cpu, at, e); }
    return (e & ~0xfff) + 4 * ((lin >>> 12) & 0x3ff);
  }

  map(lin: number, pa: number, flags = Number(PTE_URW)): number {
    const at = this.pte(lin);
    write32(this.cpu, at, pa | flags);
    return at;
  }

  /** A 4-MiB page: `paHigh` is physical-address bits 38:32 (PSE-36, in PDE bits 19:13). */
  mapLarge(lin: number, pa: number, flags = Number(PTE_URW), paHigh = 0): number {
    const at = this.pde(lin);
    write32(this.cpu, at, (pa & 0xffc00000) | (paHigh << 13) | flags | Number(PTE_PS));
    return at;
  }

  identity(bytes: number, flags = Number(PTE_URW)): void {
    for (let pa = 0; pa < bytes; pa += KIB) this.map(pa, pa, flags);
  }
}

/** PAE paging structures (SDM vol. 3A, 4.4): a 32-byte PDPT and its page directories. */
export class TablesPae {
  private readonly frames: Frames;
  readonly pdpt: number;
  constructor(readonly cpu: Cpu, at = 0x800000, public tableFlags = PTE_URW) {
    this.frames = new Frames(cpu, at);
    this.pdpt = this.frames.alloc();
  }

  /** The PDPTE for `lin` (bits 31:30): present, with no other flag (others are reserved). */
  pdpte(lin: number): number { return this.pdpt + 8 * (lin >>> 30); }

  pde(lin: number): number {
    const at = this.pdpte(lin);
    let e = read64(this.cpu, at);
    if ((e & PTE_P) === 0n) { e = BigInt(this.frames.alloc()) | PTE_P; write64(this.cpu, at, e); }
    return Number(e & 0xfffff000n) + 8 * ((lin >>> 21) & 511);
  }

  pte(lin: number): number {
    const at = this.pde(lin);
    let e = read64(this.cpu, at);
    if ((e & PTE_P) === 0n) { e = BigInt(this.frames.alloc()) | this.tableFlags; write64(this.cpu, at, e); }
    return Number(e & 0xfffff000n) + 8 * ((lin >>> 12) & 511);
  }

  map(lin: number, pa: number | bigint, flags = PTE_URW): number {
    const at = this.pte(lin);
    write64(this.cpu, at, BigInt(pa) | flags);
    return at;
  }

  mapLarge(lin: number, pa: number | bigint, flags = PTE_URW): number {
    const at = this.pde(lin);
    write64(this.cpu, at, BigInt(pa) | flags | PTE_PS);
    return at;
  }

  identity(bytes: number, flags = PTE_URW): void {
    for (let pa = 0; pa < bytes; pa += KIB) this.map(pa, pa, flags);
  }
}

/** A processor in flat 64-bit mode at CPL 0 with `tables` built by `build` and active. */
export function longModeCpu(build: (t: Tables64) => void, levels: 4 | 5 = 4, profile?: CpuProfile): { cpu: Cpu; t: Tables64 } {
  // 5-level paging needs a processor with LA57 (CPUID.(EAX=07H,ECX=0):ECX[16]), which Skylake lacks.
  const cpu = new Cpu({ memorySize: 16 * 1024 * 1024, profile: profile ?? (levels === 5 ? skylakeWith({ add: ['la57'] }) : undefined) });
  cpu.enterFlat64();
  const t = new Tables64(cpu, levels);
  build(t);
  t.activate();
  return { cpu, t };
}

/** The result of an access: its value, or the exception it raised. */
export type Outcome = { value: number } | { vector: number; code: number };

/** Runs `f` (an MMU access) and reports its value or the exception it raised. */
export function attempt(cpu: Cpu, f: () => number | void): Outcome {
  try {
    return { value: f() ?? 0 };
  } catch (e) {
    if (e !== FAULT) throw e;
    return { vector: cpu.excVector, code: cpu.excCode };
  }
}

/** A #PF outcome with error code `code`. */
export function pf(code: number): Outcome { return { vector: 14, code }; }

/** Linear address bits 31:0 and 63:32 of a bigint address, for the MMU's (lo, hi) arguments. */
export function lohi(lin: bigint): [number, number] {
  return [Number(lin & 0xffffffffn) | 0, Number((lin >> 32n) & 0xffffffffn) | 0];
}

/** Little-endian bytes of a 32-bit or 64-bit immediate. */
export function le(v: number | bigint, bytes: number): number[] {
  const b = BigInt(v), out: number[] = [];
  for (let k = 0; k < bytes; k++) out.push(Number((b >> BigInt(8 * k)) & 0xffn));
  return out;
}

/**
 * A processor in flat 32-bit protected mode with paging on through CR3 = `cr3`
 * and CR4 = `cr4` (32-bit paging, or PAE paging with CR4.PAE), taken up as a
 * loader would (the PDPTEs are read from memory by mmu.flush()).
 */
export function legacyCpu(build: (cpu: Cpu) => number, cr4 = 0): Cpu {
  const cpu = new Cpu({ memorySize: 16 * 1024 * 1024 });
  cpu.enterFlat32();
  cpu.cr3Lo = build(cpu);
  cpu.cr4 = cr4;
  cpu.cr0 |= CR0_PG;
  cpu.mmu.flush();
  return cpu;
}
