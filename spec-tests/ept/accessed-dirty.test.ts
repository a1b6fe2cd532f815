/**
 * Accessed and dirty flags for EPT (SDM vol. 3C, December 2024 numbering,
 * 29.3.5): with EPTP bit 6 = 1 the processor sets bit 8 (accessed) of every
 * EPT paging-structure entry used to translate a guest-physical address, and
 * bit 9 (dirty) of the entry that maps the page when it writes to it; guest
 * paging-structure accesses then count as writes, for the dirty flags and for
 * EPT violations (29.3.3.2; table 28-7: such a violation sets bits 0 and 1).
 * With bit 6 = 0 the flags are not touched.
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import type { Cpu } from '../../src/cpu/cpu.js';
import { GUEST_CODE, GUEST_PAGE_TABLES, guestPteAddress, runInGuest } from '../../src/vmx/testing.js';
import {
  EPT_ACCESSED, EPT_DIRTY, EPT_R, EPT_RWX, EPT_TABLES, EPT_WB, EPT_X, EptTables, eptGuest, exitOf, loadRax, storeRax, VMCALL,
} from './ept-tables.js';

const DATA = 0x50000, UNUSED = 0x60000;
/** The guest page table holding DATA's and the code's PTEs, and the guest PML4. */
const DATA_PT = guestPteAddress(DATA) & ~0xfff, GUEST_PML4 = GUEST_PAGE_TABLES;
/** A 2-MiB EPT page the guest also touches (identity, 10-12 MiB). */
const BIG = 0xa00000;
const AD = EPT_ACCESSED | EPT_DIRTY;

/** 4-KiB EPT leaves for the first 4 MiB (data, code, guest page tables), 2-MiB ones above. */
function build(accessedDirty: boolean, capture: (t: EptTables) => void, setup: (t: EptTables, cpu: Cpu) => void = () => {}) {
  return eptGuest((t, _v, cpu) => {
    t.map(DATA, DATA, EPT_RWX | EPT_WB);
    t.map(DATA_PT, DATA_PT, EPT_RWX | EPT_WB);
    setup(t, cpu);
    capture(t);
  }, { accessedDirty });
}

/** Bits 9:8 (dirty, accessed) of the EPT entry at `level` on the walk for `gpa`. */
const flags = (t: EptTables, cpu: Cpu, gpa: number, level: number): number => cpu.memory.read32(t.entry(gpa, level)) & AD;

const READ_DATA = [...loadRax(DATA), ...loadRax(BIG + 8), ...VMCALL];
const WRITE_DATA = [0xb8, 9, 0, 0, 0, ...storeRax(DATA), ...storeRax(BIG + 8), ...VMCALL];

describe('29.3.5: EPTP bit 6 = 1, accessed flags in every entry used and dirty flags on writes', () => {
  it('29.3.5: a read sets A in the PML4E, PDPTE, PDE and PTE of its walk, and leaves D of the leaf clear', () => {
    let t!: EptTables;
    const r = runInGuest(READ_DATA, build(true, (x) => { t = x; }));
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    for (const level of [4, 3, 2]) expect(flags(t, r.cpu, DATA, level) & EPT_ACCESSED, `level ${level}`).toBe(EPT_ACCESSED);
    expect(flags(t, r.cpu, DATA, 1)).toBe(EPT_ACCESSED);
    // The 2-MiB page: A in the PDE that maps it, no D.
    expect(flags(t, r.cpu, BIG, 2)).toBe(EPT_ACCESSED);
  });

  it('29.3.5: a write sets D in the leaf that maps the page: a PTE, and a PDE with bit 7', () => {
    let t!: EptTables;
    const r = runInGuest(WRITE_DATA, build(true, (x) => { t = x; }));
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(flags(t, r.cpu, DATA, 1)).toBe(AD);
    expect(flags(t, r.cpu, BIG, 2)).toBe(AD);
    // D exists only in entries that map a page: the PDE above DATA's PTE gets A alone.
    expect(flags(t, r.cpu, DATA, 2)).toBe(EPT_ACCESSED);
  });

  it('29.3.5: an instruction fetch sets A, not D, in the code page\'s leaf; a page nobody touched keeps both clear', () => {
    let t!: EptTables;
    const r = runInGuest(READ_DATA, build(true, (x) => { t = x; }));
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(flags(t, r.cpu, GUEST_CODE, 1)).toBe(EPT_ACCESSED);
    expect(flags(t, r.cpu, UNUSED, 1)).toBe(0);
  });

  it('29.3.5: guest paging-structure accesses are writes: D is set in the leaves of the pages holding the guest PML4 and PTEs, on a read', () => {
    let t!: EptTables;
    // A and D already set in the guest's entries: no guest A/D update is needed, the walk alone writes.
    const r = runInGuest(READ_DATA, build(true, (x) => { t = x; }, (_t, cpu) => {
      for (const at of [GUEST_PML4, guestPteAddress(DATA), guestPteAddress(GUEST_CODE)]) cpu.memory.write32(at, cpu.memory.read32(at) | 0x60);
    }));
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(flags(t, r.cpu, DATA_PT, 1)).toBe(AD);
    expect(flags(t, r.cpu, GUEST_PML4, 1)).toBe(AD);
  });

  it('29.3.3.2 with 29.3.5: a guest page table in an EPT read-only page is a violation with bits 0 and 1 (qualification ABH), even with its A/D set', () => {
    const far = 0x300000, pte = guestPteAddress(far), page = pte & ~0xfff;
    const r = runInGuest([...loadRax(far), ...VMCALL], build(true, () => {}, (t, cpu) => {
      cpu.memory.write32(pte, cpu.memory.read32(pte) | 0x60);
      t.map(page, page, EPT_R | EPT_X | EPT_WB);
    }));
    const e = exitOf(r);
    expect(e.reason).toBe(ExitReason.EPT_VIOLATION);
    expect(e.qualification.toString(16)).toBe('ab'); // read, write, R-X, linear address valid, not its translation
    expect(e.gpa).toBe(pte);
    expect(e.linear).toBe(far);
    // With bit 6 = 0 the same walk only reads the entry: the access completes.
    const plain = runInGuest([...loadRax(far), ...VMCALL], build(false, () => {}, (t, cpu) => {
      cpu.memory.write32(pte, cpu.memory.read32(pte) | 0x60);
      t.map(page, page, EPT_R | EPT_X | EPT_WB);
    }));
    expect(exitOf(plain).reason).toBe(ExitReason.VMCALL);
  });

  it('29.3.5: flags already set stay set; the processor never clears them', () => {
    let t!: EptTables;
    const r = runInGuest(READ_DATA, build(true, (x) => { t = x; }, (tt, cpu) => {
      tt.map(UNUSED, UNUSED, EPT_RWX | EPT_WB | AD);
      const at = tt.entry(DATA, 1);
      cpu.memory.write32(at, cpu.memory.read32(at) | EPT_DIRTY);
    }));
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(flags(t, r.cpu, UNUSED, 1)).toBe(AD);
    expect(flags(t, r.cpu, DATA, 1)).toBe(AD);
  });
});

describe('29.3.5: EPTP bit 6 = 0', () => {
  it('29.3.5: reads, writes and fetches leave bits 8 and 9 of every EPT entry as they were (0)', () => {
    const r = runInGuest([...READ_DATA.slice(0, -3), ...WRITE_DATA], build(false, () => {}));
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.memory.read32(DATA)).toBe(9);
    // Every entry of every EPT table built (the PML4 and the tables after it).
    for (let at = EPT_TABLES; at < EPT_TABLES + 16 * 0x1000; at += 8) {
      expect(r.cpu.memory.read32(at) & AD, `entry at ${at.toString(16)}`).toBe(0);
    }
  });
});
