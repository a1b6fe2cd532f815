/**
 * The shadow-page pool's bookkeeping: pages handed out zeroed and taken back,
 * the per-frame lists of pages sourced from a guest page (write protection),
 * and the reverse map of writable leaves.
 */
import { describe, expect, it } from 'vitest';
import { PhysicalMemory } from '../../cpu/memory.js';
import { ENTRIES, MIN_POOL_PAGES, ShadowPool, shadowPoolPages } from './pool.js';

const BASE = 0x100000;

function pool(pages = 4): { memory: PhysicalMemory; p: ShadowPool } {
  const memory = new PhysicalMemory(2 * 1024 * 1024);
  return { memory, p: new ShadowPool(memory, BASE, pages, 256) };
}

describe('the shadow-page pool', () => {
  it('sizes itself from guest memory: 1/64 of its pages, 256 to 8192', () => {
    expect(shadowPoolPages(16 * 1024 * 1024)).toBe(256);
    expect(shadowPoolPages(1024 * 1024 * 1024)).toBe(4096);
    expect(shadowPoolPages(4 * 1024 ** 3)).toBe(8192);
    expect(MIN_POOL_PAGES).toBeGreaterThanOrEqual(2 * 4);
  });

  it('hands out zeroed pages until it is empty (-1), and takes them back', () => {
    const { memory, p } = pool(2);
    memory.write32(BASE, -1);
    const a = p.allocate(1, 5, 0, 0x1000, 3);
    expect(a).toBe(0);
    expect(p.lo(a, 0)).toBe(0);
    expect([p.level[a], p.gfn[a], p.parent[a], p.linear[a]]).toEqual([1, 5, 3, 0x1000]);
    const b = p.allocate(2, 300, 0, 0, -1);
    expect(p.gfn[b]).toBe(-1); // a frame beyond guest RAM is no source
    expect(p.allocate(1, 1, 0, 0, -1)).toBe(-1);
    p.release(a);
    expect(p.available).toBe(1);
    expect(p.pageAt(p.address(b) + 8)).toBe(b);
    expect(p.pageAt(BASE - 1)).toBe(-1);
  });

  it('writing an entry of a page the processor walked counts as a paging-structure write (memory.ts pageTableWrites)', () => {
    const { memory, p } = pool();
    const a = p.allocate(1, 5, 0, 0, -1);
    const before = memory.pageTableWrites;
    p.set(a, 1, 0x1234, 0);
    expect(memory.pageTableWrites).toBe(before);
    memory.markPageTable(p.address(a) / 4096);
    p.set(a, 2, 0x5678, 0);
    expect(memory.pageTableWrites).toBe(before + 1);
    expect([p.lo(a, 1), p.lo(a, 2)]).toEqual([0x1234, 0x5678]);
  });

  it('a frame is protected while a page sourced from it is on its list; the first addition says so', () => {
    const { p } = pool();
    const a = p.allocate(1, 7, 0, 0, -1), b = p.allocate(1, 7, 1, 0, -1), out = new Int32Array(4);
    expect(p.isSourced(7)).toBe(false);
    expect(p.addSource(a)).toBe(true);
    expect(p.addSource(b)).toBe(false);
    expect(p.addSource(b)).toBe(false);
    expect(Array.from(out.subarray(0, p.sourcesOf(7, out))).sort()).toEqual([a, b]);
    p.removeSource(a);
    expect(p.isSourced(7)).toBe(true);
    p.removeSource(b);
    expect(p.isSourced(7)).toBe(false);
    expect(p.sourcesOf(7, out)).toBe(0);
  });

  it('the reverse map lists the writable leaves of a frame, in any order of removal', () => {
    const { p } = pool();
    const slots = [3, ENTRIES + 9, 2 * ENTRIES + 511];
    for (const s of slots) p.rmapAdd(s, 42);
    p.rmapAdd(slots[0]!, 42); // once only
    const seen: number[] = [];
    p.rmapRemove(slots[1]!, 42);
    for (let s = p.firstWritable(42); s >= 0; s = p.firstWritable(42)) { seen.push(s); p.rmapRemove(s, 42); }
    expect(seen.sort((x, y) => x - y)).toEqual([slots[0], slots[2]]);
    expect(p.firstWritable(42)).toBe(-1);
  });
});
