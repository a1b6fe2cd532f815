/**
 * Decoded-code cache. Straight-line runs of instructions ("blocks") are decoded
 * once and kept by the physical address of their first byte. A write to a page
 * that holds cached code drops every block on that page whose bytes it touches
 * (tracked in 64-byte chunks), so self-modifying code sees its new bytes.
 */
import { classPrefix } from './insn-class.js';
import { FAULT, type Cpu } from './cpu.js';
import { Decoder, type ByteSource } from './decoder.js';
import { Follow, type Insn } from './insn.js';
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

/** Block.links: no link after the instruction, or a link within the block's first page (its ppn otherwise). */
export const NO_LINK = -1, SAME_PAGE = -2;

/**
 * What the builder gathered of a block: its instructions with their offsets
 * from the first byte's linear address (signed: a followed transfer may go
 * backwards) and physical addresses, the links, and the code bytes by page.
 */
interface Layout {
  readonly insns: Insn[];
  readonly offsets: number[];
  readonly physAt: number[];
  readonly links: number[];
  /** Physical pages of the code, with the byte ranges [from, to) on each. */
  readonly spans: { ppn: number; from: number; to: number }[];
}

/**
 * A run of instructions decoded once. Straight-line code, which in 64-bit
 * mode may go on at the target of a direct CALL or JMP or of a RET to a CALL
 * in the block (OpDef.follow): a "link". At run time the block is left after
 * a link whose target is not the one decoded (a RET to elsewhere) or whose
 * page no longer maps to the same physical page (followsLink).
 */
export class Block {
  /** Times the block has been entered. */
  entries = 0;
  /** Set when a write has made the block stale. */
  stale = false;
  /** The compiled form, once the block is hot; null before, or when it cannot be compiled. */
  compiled: CompiledBlock | null = null;
  /** Offset of each instruction from the linear address of the block's first byte. */
  readonly offsets: Int32Array;
  /** Physical address of each instruction's first byte. */
  readonly physAt: Float64Array;
  /** Per instruction: NO_LINK, SAME_PAGE, or the physical page its link's target must map to. */
  readonly links: Int32Array;
  /** Lowest offset of an instruction, and the end of the highest, from the first byte. */
  readonly lowest: number;
  readonly length: number;
  /** Physical pages its bytes lie on. */
  readonly ppns: readonly number[];
  /** Instructions of each class among the first k (insn-class.ts), for the cost model's counts. */
  readonly classes: Int32Array;
  readonly insns: readonly Insn[];

  constructor(
    readonly phys: number,
    /** Code size it was decoded for: 2, 4 or 8. */
    readonly mode: number,
    layout: Layout,
  ) {
    const { insns, offsets } = layout;
    this.insns = insns;
    this.offsets = Int32Array.from(offsets);
    this.physAt = Float64Array.from(layout.physAt);
    this.links = Int32Array.from(layout.links);
    this.lowest = Math.min(...offsets);
    this.length = Math.max(...insns.map((i, k) => offsets[k]! + i.len));
    this.ppns = [...new Set(layout.spans.map((s) => s.ppn))];
    this.classes = classPrefix(insns);
  }
}

/**
 * After instruction k of `block`, entered at (rl, rh), was a link: does
 * execution go on at the next instruction of the block? RIP must be the
 * target decoded, and a target outside the first page must still be fetched
 * from the same physical page (the fast entries hold it).
 */
export function followsLink(cpu: Cpu, block: Block, k: number, rl: number, rh: number): boolean {
  if (cpu.ripLo !== ((rl + block.offsets[k + 1]!) | 0) || cpu.ripHi !== rh) return false;
  const ppn = block.links[k]!;
  return ppn === SAME_PAGE || cpu.mmu.cachedFetchPage(cpu.ripLo, rh) === ppn;
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

/** Bits 63:32 of the 64-bit address (lo, hi) + offset, an offset that carries at most once. */
export function highHalf(lo: number, hi: number, offset: number): number {
  const t = (lo >>> 0) + offset;
  return t > 0xffffffff ? (hi + 1) | 0 : t < 0 ? (hi - 1) | 0 : hi;
}

/** Is offset `target` from the block's first byte (linear bits 31:0 `lo`) on the first byte's page? */
function onFirstPage(lo: number, target: number): boolean {
  return (((lo + target) ^ lo) >>> 12) === 0;
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
   * The block to run in place of `block`, the one at the current RIP, which
   * has become hot: decoded again if it has a transfer it may follow but did not, for
   * the fast entries may now map the target's page (they seldom do the first
   * time code runs after a VM entry or exit). Not compiled yet.
   */
  rebuild(block: Block): Block {
    const cpu = this.cpu;
    const unfollowed = block.insns.some((i, k) => i.def.follow !== undefined && block.links[k] === NO_LINK);
    if (block.mode !== 8 || !unfollowed || cpu.codeSize !== 8) return block;
    const cr2Lo = cpu.cr2Lo, cr2Hi = cpu.cr2Hi, vmExit = cpu.vmExit;
    try {
      const hot = this.build(cpu.ripLo, cpu.ripHi, block.phys);
      hot.entries = block.entries;
      return hot;
    } catch (e) {
      // Only where a translation changed without invalidation: the block as it was still serves.
      if (e !== FAULT) throw e;
      cpu.cr2Lo = cr2Lo; cpu.cr2Hi = cr2Hi; cpu.vmExit = vmExit;
      return block;
    }
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
    const layout: Layout = { insns: [], offsets: [], physAt: [], links: [], spans: [] };
    const { insns, offsets } = layout;
    // The straight run being decoded: where it starts (offset and physical address) and its page ends.
    let runStart = 0, runPhys = phys, offset = 0;
    /** Return addresses (offsets) of the CALLs followed so far, for the RETs to come. */
    const returns: number[] = [];
    for (;;) {
      let insn: Insn;
      if (insns.length === 0) {
        insn = this.decoder.decode(src, mode);
      } else {
        const savedLo = src.lo, cr2Lo = cpu.cr2Lo, cr2Hi = cpu.cr2Hi, vmExit = cpu.vmExit;
        src.lo = (first + offset) | 0;
        src.hi = mode === 8 ? highHalf(first, hi, offset) : hi;
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
      offsets.push(offset);
      layout.physAt.push(runPhys + offset - runStart);
      layout.links.push(NO_LINK);
      const next = offset + insn.len, pageEnd = runStart + PAGE_SIZE - (runPhys & PAGE_MASK);
      if (next >= pageEnd || insns.length >= MAX_BLOCK) { offset = next; break; }
      offset = next;
      const follow = insn.def.follow, target = mode === 8 ? this.linkTarget(insn, next, returns) : null;
      // A jump back into the block would unroll a loop: not followed.
      const loops = target !== null && (follow === Follow.JUMP || follow === Follow.CONDITIONAL) && offsets.includes(target);
      const targetPhys = target === null || loops ? -1 : this.linkPhysical(lo, hi, phys, target);
      if (targetPhys < 0) {
        if (insn.def.ends) break;
        continue;
      }
      layout.spans.push({ ppn: Math.floor(runPhys / PAGE_SIZE), from: runPhys & PAGE_MASK, to: (runPhys & PAGE_MASK) + next - runStart });
      layout.links[insns.length - 1] = onFirstPage(lo, target!) ? SAME_PAGE : Math.floor(targetPhys / PAGE_SIZE);
      if (follow === Follow.CALL) returns.push(next);
      if (follow === Follow.RETURN) returns.pop();
      runStart = offset = target!;
      runPhys = targetPhys;
    }
    // The last straight run; its last instruction may cross into the next linear page, wherever that is mapped.
    const runPage = runPhys & PAGE_MASK, runEnd = runPage + offset - runStart;
    layout.spans.push({ ppn: Math.floor(runPhys / PAGE_SIZE), from: runPage, to: Math.min(PAGE_SIZE, runEnd) });
    if (runEnd > PAGE_SIZE) {
      const nextPage = runStart - runPage + PAGE_SIZE;
      const nHi = mode === 8 ? highHalf(lo, hi, nextPage) : hi;
      layout.spans.push({ ppn: Math.floor(cpu.mmu.fetchPhysical((lo + nextPage) | 0, nHi) / PAGE_SIZE), from: 0, to: runEnd - PAGE_SIZE });
    }
    const block = new Block(phys, mode, layout);
    const old = this.blocks.get(phys);
    if (old !== undefined) this.drop(old);
    this.blocks.set(phys, block);
    for (const span of layout.spans) this.markCode(span.ppn, span.from, span.to, block);
    return block;
  }

  /**
   * Where the block may go on after `insn` (OpDef.follow), ending at offset
   * `next`: a direct CALL's or JMP's target, a backward conditional branch's,
   * or a RET's to the last CALL followed (popped from `returns` by the
   * caller). Null for any other.
   */
  private linkTarget(insn: Insn, next: number, returns: readonly number[]): number | null {
    if (insn.opSize !== 8) return null;
    switch (insn.def.follow) {
      case Follow.CALL: case Follow.JUMP: return next + insn.imm;
      case Follow.CONDITIONAL: return insn.imm < 0 ? next + insn.imm : null;
      case Follow.RETURN: return returns.length > 0 ? returns[returns.length - 1]! : null;
      default: return null;
    }
  }

  /**
   * The physical address of a link's target at `target` from the block's
   * first byte (linear (lo, hi), physical `phys`), or -1 where the block must
   * end instead: a target outside the block's 4 GiB, or on another page that
   * the fast entries do not map for fetches (finding out would walk the page
   * tables ahead of execution).
   */
  private linkPhysical(lo: number, hi: number, phys: number, target: number): number {
    const t = (lo >>> 0) + target;
    if (t < 0 || t > 0xffffffff) return -1;
    if (onFirstPage(lo, target)) return phys - (lo & PAGE_MASK) + (t & PAGE_MASK);
    const ppn = this.cpu.mmu.cachedFetchPage(t | 0, hi);
    return ppn < 0 ? -1 : ppn * PAGE_SIZE + (t & PAGE_MASK);
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
