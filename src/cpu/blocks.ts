/**
 * Decoded-code cache. Straight-line runs of instructions ("blocks") are decoded
 * once and kept by the physical address of their first byte. A write to a page
 * that holds cached code drops every block on that page whose bytes it touches
 * (tracked in 64-byte chunks), so self-modifying code sees its new bytes.
 */
import { classPrefix } from './insn-class.js';
import { FAULT, type Cpu } from './cpu.js';
import { Decoder, type ByteSource } from './decoder.js';
import type { Insn } from './insn.js';
import type { CompiledBlock } from './jit/compile.js';
import { PAGE_MASK, PAGE_SIZE } from './memory.js';
import { CS, Vector } from './regs.js';
import { fetchWithinLimit } from './segment-limits.js';
import { OPCODE_TABLE } from './optable.js';

/** Longest block, in instructions. */
const MAX_BLOCK = 64;
const CHUNK_SHIFT = 6;
/** Slots of the jump cache (a power of two). */
const JUMP_CACHE_BITS = 12, JUMP_CACHE_SIZE = 1 << JUMP_CACHE_BITS;

export class Block {
  /** Times the block has been entered. */
  entries = 0;
  /** Set when a write has made the block stale. */
  stale = false;
  /** The compiled form, once the block is hot; null before, or when it cannot be compiled. */
  compiled: CompiledBlock | null = null;
  /** Offset of each instruction from the block's first byte. */
  readonly offsets: Int32Array;
  /** Instructions of each class among the first k (insn-class.ts), for the cost model's counts. */
  readonly classes: Int32Array;
  constructor(
    readonly phys: number,
    /** Code size it was decoded for: 2, 4 or 8. */
    readonly mode: number,
    readonly insns: readonly Insn[],
    /** Bytes the block spans. */
    readonly length: number,
    /** Physical pages its bytes lie on (two when the last instruction crosses a page). */
    readonly ppns: readonly number[],
  ) {
    this.offsets = new Int32Array(insns.length);
    let o = 0;
    insns.forEach((i, k) => { this.offsets[k] = o; o += i.len; });
    this.classes = classPrefix(insns);
  }
}

interface CodePage {
  /** One bit per 64-byte chunk holding decoded bytes. */
  readonly chunks: Uint32Array;
  readonly blocks: Set<Block>;
}

/**
 * Reads instruction bytes through the MMU's execute path: at linear address
 * (lo, hi) in 64-bit mode, else at CS base + offset `lo`, the offset wrapping
 * at 64 KiB in 16-bit code (SDM vol. 3A, 20.1.1) and at 4 GiB in 32-bit code.
 * A byte beyond the CS limit raises #GP(0) before any translation (5.3).
 * Blocks outlive the CS they were decoded under, so the run loop checks the
 * limit again each time a block runs (segment-limits.ts insnsWithinCodeLimit).
 */
class FetchSource implements ByteSource {
  lo = 0; hi = 0; mode = 8; base = 0;
  constructor(private readonly cpu: Cpu) {}
  byte(k: number): number {
    if (this.mode === 8) {
      const s = (this.lo >>> 0) + k;
      return this.cpu.mmu.fetch8(s | 0, s > 0xffffffff ? (this.hi + 1) | 0 : this.hi);
    }
    const off = this.mode === 2 ? (this.lo + k) & 0xffff : (this.lo + k) | 0;
    if (!fetchWithinLimit(this.cpu, off)) this.cpu.raise(Vector.GP, 0);
    return this.cpu.mmu.fetch8((this.base + off) | 0, 0);
  }
}

export class BlockCache {
  readonly decoder = new Decoder(OPCODE_TABLE);
  private readonly blocks = new Map<number, Block>();
  private readonly pages = new Map<number, CodePage>();
  private readonly source: FetchSource;

  constructor(private readonly cpu: Cpu) {
    this.source = new FetchSource(cpu);
  }

  /**
   * The jump cache: per slot (hashed RIP), the block found last at that RIP,
   * CS base and MMU epoch. While the epoch holds, the fetch would translate
   * the same way, so the block is the one find() would give unless stale.
   */
  private readonly jumpBlock: (Block | null)[] = new Array<Block | null>(JUMP_CACHE_SIZE).fill(null);
  private readonly jumpLo = new Int32Array(JUMP_CACHE_SIZE);
  private readonly jumpHi = new Int32Array(JUMP_CACHE_SIZE);
  private readonly jumpBase = new Int32Array(JUMP_CACHE_SIZE);
  private readonly jumpEpoch = new Float64Array(JUMP_CACHE_SIZE).fill(-1);

  /** The block at the current CS:RIP, decoded now if needed. Raises the fetch's fault. */
  lookup(): Block {
    const cpu = this.cpu, lo = cpu.ripLo, hi = cpu.ripHi, base = cpu.segBase[2 * CS]!, epoch = cpu.mmu.epoch;
    const slot = (lo ^ (lo >>> JUMP_CACHE_BITS)) & (JUMP_CACHE_SIZE - 1);
    const b = this.jumpBlock[slot]!;
    if (b !== null && this.jumpLo[slot] === lo && this.jumpHi[slot] === hi && this.jumpBase[slot] === base &&
        this.jumpEpoch[slot] === epoch && !b.stale && b.mode === cpu.codeSize) {
      return b;
    }
    const found = this.find();
    this.jumpBlock[slot] = found;
    this.jumpLo[slot] = lo; this.jumpHi[slot] = hi; this.jumpBase[slot] = base; this.jumpEpoch[slot] = epoch;
    return found;
  }

  /**
   * The block at the current CS:RIP, as lookup() would return it, without
   * taking it as the one that runs next (an external debugger looks ahead
   * with it, run.ts). Raises the fetch's fault.
   */
  peek(): Block {
    return this.find();
  }

  private find(): Block {
    const cpu = this.cpu;
    let lo = cpu.ripLo, hi = cpu.ripHi;
    if (cpu.codeSize !== 8) {
      // The limit comes before the translation of the first byte (SDM vol. 3A, 5.3).
      if (!fetchWithinLimit(cpu, lo)) cpu.raise(Vector.GP, 0);
      lo = (lo + cpu.segBase[2 * CS]!) | 0;
      hi = 0;
    }
    const phys = cpu.mmu.fetchPhysical(lo, hi);
    const b = this.blocks.get(phys);
    if (b !== undefined && b.mode === cpu.codeSize) return b;
    return this.build(lo, hi, phys);
  }

  isCodePage(ppn: number): boolean {
    return this.pages.has(ppn);
  }

  /** Drops the blocks on the page of `pa` if [pa, pa + length) touches their bytes. */
  invalidate(pa: number, length: number): boolean {
    const ppn = Math.floor(pa / PAGE_SIZE);
    const page = this.pages.get(ppn);
    if (page === undefined) return false;
    const first = (pa & PAGE_MASK) >> CHUNK_SHIFT, last = ((pa & PAGE_MASK) + length - 1) >> CHUNK_SHIFT;
    let hit = false;
    for (let c = first; c <= last && c < PAGE_SIZE >> CHUNK_SHIFT; c++) {
      if (page.chunks[c >> 5]! & (1 << (c & 31))) hit = true;
    }
    if (!hit) return false;
    for (const b of page.blocks) this.drop(b);
    return true;
  }

  /** Drops every block (mode changes that alter decoding, tests). */
  clear(): void {
    for (const b of this.blocks.values()) b.stale = true;
    this.blocks.clear();
    this.pages.clear();
  }

  /** Number of cached blocks. */
  get size(): number { return this.blocks.size; }

  private drop(b: Block): void {
    b.stale = true;
    if (this.blocks.get(b.phys) === b) this.blocks.delete(b.phys);
    for (const p of b.ppns) {
      const page = this.pages.get(p);
      if (page === undefined) continue;
      page.blocks.delete(b);
      if (page.blocks.size === 0) this.pages.delete(p);
    }
  }

  private build(lo: number, hi: number, phys: number): Block {
    const cpu = this.cpu, src = this.source, mode = cpu.codeSize;
    // Outside 64-bit mode the source counts offsets from the CS base (`lo` is linear).
    src.base = mode === 8 ? 0 : cpu.segBase[2 * CS]!;
    const first = (lo - src.base) | 0;
    src.lo = first; src.hi = hi; src.mode = mode;
    const insns: Insn[] = [];
    let offset = 0;
    const pageEnd = PAGE_SIZE - (phys & PAGE_MASK);
    for (;;) {
      let insn: Insn;
      if (insns.length === 0) {
        insn = this.decoder.decode(src, mode);
      } else {
        const savedLo = src.lo, cr2Lo = cpu.cr2Lo, cr2Hi = cpu.cr2Hi, vmExit = cpu.vmExit;
        src.lo = (first + offset) | 0;
        src.hi = mode === 8 && (src.lo >>> 0) < (first >>> 0) ? (hi + 1) | 0 : hi;
        try {
          insn = this.decoder.decode(src, mode);
        } catch (e) {
          if (e !== FAULT) throw e;
          // The fault (or the VM exit of a nested translation) is raised when execution reaches this
          // instruction; until then nothing changed.
          src.lo = savedLo; cpu.cr2Lo = cr2Lo; cpu.cr2Hi = cr2Hi; cpu.vmExit = vmExit;
          break;
        }
      }
      insns.push(insn);
      offset += insn.len;
      if (insn.def.ends || offset >= pageEnd || insns.length >= MAX_BLOCK) break;
    }
    const ppn0 = Math.floor(phys / PAGE_SIZE);
    const ppns = [ppn0];
    if (offset > pageEnd) {
      // The last instruction crosses into the next linear page, wherever that is mapped.
      const nLo = (lo + pageEnd) | 0;
      const nHi = mode === 8 && (nLo >>> 0) < (lo >>> 0) ? (hi + 1) | 0 : hi;
      ppns.push(Math.floor(cpu.mmu.fetchPhysical(nLo, nHi) / PAGE_SIZE));
    }
    const block = new Block(phys, mode, insns, offset, ppns);
    const old = this.blocks.get(phys);
    if (old !== undefined) this.drop(old);
    this.blocks.set(phys, block);
    const start = phys & PAGE_MASK;
    this.markCode(ppn0, start, Math.min(PAGE_SIZE, start + offset), block);
    if (ppns.length > 1) this.markCode(ppns[1]!, 0, offset - pageEnd, block);
    return block;
  }

  /** Records that bytes [from, to) of page `ppn` hold the block's code. */
  private markCode(ppn: number, from: number, to: number, block: Block): void {
    let page = this.pages.get(ppn);
    if (page === undefined) {
      page = { chunks: new Uint32Array(PAGE_SIZE >> CHUNK_SHIFT >> 5), blocks: new Set() };
      this.pages.set(ppn, page);
      for (const p of this.cpu.peers) p.mmu.protectPage(ppn);
    }
    page.blocks.add(block);
    for (let c = from >> CHUNK_SHIFT; c <= (to - 1) >> CHUNK_SHIFT; c++) {
      page.chunks[c >> 5] = page.chunks[c >> 5]! | (1 << (c & 31));
    }
  }
}
