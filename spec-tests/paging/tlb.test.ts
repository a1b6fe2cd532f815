import { describe, expect, it } from 'vitest';
import type { Cpu } from '../../src/cpu/cpu.js';
import { writeCr0, writeCr3, writeCr4 } from '../../src/cpu/ops/control-registers.js';
import { RAX, RCX, RDX, RSI } from '../../src/cpu/regs.js';
import { runFragment } from '../../src/cpu/testing.js';
import {
  attempt, CR0_PG, CR0_WP, CR4_PCIDE, CR4_PGE, legacyCpu, longModeCpu, MIB2, pf, PTE_G, PTE_P, PTE_URW,
  PTE_US, read64, Tables32, Tables64, write32, write64,
} from './tables.js';

const X = 0x40_0000, Y = 0x40_1000;
/** Physical pages and the byte each holds. */
const PAGES: [number, number][] = [[0x5000, 0x11], [0x6000, 0x22], [0x7000, 0x33], [0x8000, 0x44]];
const NO_FLUSH = 1 << 31; // bit 63 of a MOV to CR3 source, in the high half

function fill(cpu: Cpu): void {
  for (const [pa, v] of PAGES) cpu.memory.write8(pa, v);
}

/** Long mode with X → 0x5000 and Y → 0x7000 (X global when `globalX`); remap() rewrites a PTE. */
function tlbCpu(globalX = false) {
  const { cpu, t } = longModeCpu((tt) => {
    tt.map(BigInt(X), 0x5000, PTE_URW | (globalX ? PTE_G : 0n));
    tt.map(BigInt(Y), 0x7000);
  });
  fill(cpu);
  const remap = (lin: number, pa: number, tables: Tables64 = t): void => {
    const at = tables.entry(BigInt(lin), 1);
    write64(cpu, at, (read64(cpu, at) & PTE_G) | BigInt(pa) | PTE_URW);
  };
  const rd = (lin: number): number => cpu.mmu.read8(lin, 0);
  return { cpu, t, remap, rd };
}

/** SDM vol. 3A, 4.10 "Caching Translation Information". */
describe('SDM 4.10.2 and 4.10.4 (TLB use and invalidation)', () => {
  it('a translation stays in use after its PTE changes, until INVLPG', () => {
    const { cpu, remap, rd } = tlbCpu();
    expect(rd(X)).toBe(0x11);
    remap(X, 0x6000);
    expect(rd(X)).toBe(0x11);
    expect(attempt(cpu, () => cpu.mmu.fetch8(X, 0))).toEqual({ value: 0x11 });
    cpu.paging.invlpg(X, 0);
    expect(rd(X)).toBe(0x22);
  });

  it('INVLPG drops only the page named', () => {
    const { cpu, remap, rd } = tlbCpu();
    expect([rd(X), rd(Y)]).toEqual([0x11, 0x33]);
    remap(X, 0x6000); remap(Y, 0x8000);
    cpu.paging.invlpg(Y, 0);
    expect([rd(X), rd(Y)]).toEqual([0x11, 0x44]);
  });

  it('MOV to CR3 drops non-global translations, even when CR3 does not change', () => {
    const { cpu, remap, rd } = tlbCpu();
    rd(X);
    remap(X, 0x6000);
    writeCr3(cpu, cpu.cr3Lo, cpu.cr3Hi);
    expect(rd(X)).toBe(0x22);
  });

  it('with CR4.PGE = 1, a global page (G = 1) survives MOV to CR3; INVLPG drops it', () => {
    const { cpu, remap, rd } = tlbCpu(true);
    writeCr4(cpu, cpu.cr4 | CR4_PGE, 0);
    expect([rd(X), rd(Y)]).toEqual([0x11, 0x33]);
    remap(X, 0x6000); remap(Y, 0x8000);
    writeCr3(cpu, cpu.cr3Lo, 0);
    expect([rd(X), rd(Y)]).toEqual([0x11, 0x44]);
    cpu.paging.invlpg(X, 0);
    expect(rd(X)).toBe(0x22);
  });

  it('G = 1 without CR4.PGE makes no global entry', () => {
    const { cpu, remap, rd } = tlbCpu(true);
    rd(X);
    remap(X, 0x6000);
    writeCr3(cpu, cpu.cr3Lo, 0);
    expect(rd(X)).toBe(0x22);
  });

  it('MOV to CR4 that changes PGE drops every entry, global ones included', () => {
    const { cpu, remap, rd } = tlbCpu(true);
    writeCr4(cpu, cpu.cr4 | CR4_PGE, 0);
    rd(X);
    remap(X, 0x6000);
    writeCr4(cpu, cpu.cr4 & ~CR4_PGE, 0);
    expect(rd(X)).toBe(0x22);
  });

  it('MOV to CR4 of a bit that does not affect translation (OSFXSR) keeps the TLB', () => {
    const { cpu, remap, rd } = tlbCpu();
    rd(X);
    remap(X, 0x6000);
    writeCr4(cpu, cpu.cr4 | (1 << 9), 0);
    expect(rd(X)).toBe(0x11);
  });

  it('MOV to CR0 that changes only WP keeps translations (the TLB holds rights, not decisions)', () => {
    const { cpu, remap, rd } = tlbCpu();
    rd(X);
    remap(X, 0x6000);
    writeCr0(cpu, cpu.cr0 | CR0_WP, 0);
    expect(rd(X)).toBe(0x11);
  });

  it('MOV to CR0 that clears PG drops every entry (32-bit paging, global pages included)', () => {
    let t!: Tables32;
    const cpu = legacyCpu((c) => {
      t = new Tables32(c);
      t.identity(0x10_0000);
      t.map(X, 0x5000, Number(PTE_URW | PTE_G));
      return t.root;
    }, CR4_PGE);
    fill(cpu);
    expect(cpu.mmu.read8(X, 0)).toBe(0x11);
    write32(cpu, t.pte(X), 0x6000 | Number(PTE_URW | PTE_G));
    writeCr0(cpu, cpu.cr0 & ~CR0_PG, 0);
    writeCr0(cpu, cpu.cr0 | CR0_PG, 0);
    expect(cpu.mmu.read8(X, 0)).toBe(0x22);
  });

  it('a page fault drops the entry that caused it: a relaxed PTE faults at most once (4.10.4.1, 4.10.4.3)', () => {
    const { cpu, t, rd } = tlbCpu();
    const pte = t.entry(BigInt(X), 1);
    write64(cpu, pte, 0x5000n | PTE_P | PTE_US); // read-only
    cpu.paging.invlpg(X, 0);
    cpu.cpl = 3;
    expect(rd(X)).toBe(0x11);
    write64(cpu, pte, read64(cpu, pte) | 2n); // R/W = 1, without invalidation
    expect(attempt(cpu, () => cpu.mmu.write8(X, 0, 9))).toEqual(pf(0b111));
    expect(attempt(cpu, () => cpu.mmu.write8(X, 0, 9))).toEqual({ value: 0 });
    expect(cpu.memory.read8(0x5000)).toBe(9);
  });

  it('INVLPG of any address in a 2-MiB page drops every cached part of it (4.10.2.3)', () => {
    const { cpu, t } = longModeCpu((tt) => tt.map(0x4000_0000n, 0x20_0000, PTE_URW, MIB2));
    cpu.memory.write8(0x20_0000, 1); cpu.memory.write8(0x3f_f000, 2);
    cpu.memory.write8(0x60_0000, 3); cpu.memory.write8(0x7f_f000, 4);
    expect([cpu.mmu.read8(0x4000_0000, 0), cpu.mmu.read8(0x401f_f000, 0)]).toEqual([1, 2]);
    const pde = t.entry(0x4000_0000n, 2);
    write64(cpu, pde, (read64(cpu, pde) & ~0x000f_ffff_ffe0_0000n) | 0x60_0000n);
    expect(cpu.mmu.read8(0x401f_f000, 0)).toBe(2);
    cpu.paging.invlpg(0x4001_2345, 0);
    expect([cpu.mmu.read8(0x4000_0000, 0), cpu.mmu.read8(0x401f_f000, 0)]).toEqual([3, 4]);
  });
});

describe('SDM 4.10.1 (process-context identifiers)', () => {
  /** Two address spaces: tables A (PCID 0 first) and B, each mapping X differently. */
  function pcidCpu() {
    const s = tlbCpu(true);
    const b = new Tables64(s.cpu, 4, 0xa0_0000);
    b.map(BigInt(X), 0x6000);
    writeCr4(s.cpu, s.cpu.cr4 | CR4_PCIDE | CR4_PGE, 0);
    return { ...s, b };
  }

  it('entries are tagged with the PCID: switching with the no-flush bit keeps both address spaces cached', () => {
    const { cpu, t, b, remap, rd } = pcidCpu();
    expect(rd(Y)).toBe(0x33); // PCID 0
    writeCr3(cpu, b.root | 1, NO_FLUSH);
    expect(cpu.cr3Hi).toBe(0); // bit 63 is not stored
    expect(cpu.cr3Lo).toBe(b.root | 1);
    b.map(BigInt(Y), 0x8000);
    expect(rd(Y)).toBe(0x44); // PCID 1's own translation
    remap(Y, 0x6000, t);
    writeCr3(cpu, t.root, NO_FLUSH);
    expect(rd(Y)).toBe(0x33); // PCID 0's entry, kept
    writeCr3(cpu, t.root, 0);
    expect(rd(Y)).toBe(0x22); // flushed: PCID 0 walks again
  });

  it('MOV to CR3 without the no-flush bit drops only the new PCID\'s non-global entries', () => {
    const { cpu, t, b, remap, rd } = pcidCpu();
    writeCr3(cpu, b.root | 1, 0);
    b.map(BigInt(Y), 0x8000);
    expect(rd(Y)).toBe(0x44);
    b.map(BigInt(Y), 0x5000);
    writeCr3(cpu, t.root, 0); // flushes PCID 0, not PCID 1
    remap(Y, 0x7000);
    writeCr3(cpu, b.root | 1, NO_FLUSH);
    expect(rd(Y)).toBe(0x44);
  });

  it('a global entry serves every PCID (4.10.2.4)', () => {
    const { cpu, b, rd } = pcidCpu();
    expect(rd(X)).toBe(0x11); // global in tables A
    writeCr3(cpu, b.root | 1, 0);
    expect(rd(X)).toBe(0x11); // B maps X to 0x6000, but the global entry is used
  });

  it('clearing CR4.PCIDE drops the entries of every PCID', () => {
    const { cpu, t, b, rd } = pcidCpu();
    expect(rd(X)).toBe(0x11); // global entry from tables A
    writeCr3(cpu, b.root | 1, 0);
    expect(rd(X)).toBe(0x11);
    writeCr3(cpu, t.root, NO_FLUSH);
    writeCr4(cpu, cpu.cr4 & ~CR4_PCIDE, 0);
    writeCr3(cpu, b.root, 0);
    expect(rd(X)).toBe(0x22);
  });

  it('INVPCID types: 0 one page of one PCID, 1 one PCID, 2 everything, 3 everything but globals', () => {
    const run = (type: number, pcid: number, lin: number) => {
      const s = pcidCpu();
      s.rd(X); s.rd(Y);
      s.remap(X, 0x6000); s.remap(Y, 0x8000);
      s.cpu.paging.invpcid(type, pcid, lin, 0);
      return [s.rd(X), s.rd(Y)];
    };
    expect(run(0, 0, Y)).toEqual([0x11, 0x44]);
    expect(run(0, 0, X)).toEqual([0x11, 0x33]); // X is global: type 0 keeps it
    expect(run(0, 5, Y)).toEqual([0x11, 0x33]); // another PCID
    expect(run(1, 0, 0)).toEqual([0x11, 0x44]);
    expect(run(1, 5, 0)).toEqual([0x11, 0x33]);
    expect(run(2, 0, 0)).toEqual([0x22, 0x44]);
    expect(run(3, 0, 0)).toEqual([0x11, 0x44]);
  });
});

// ---- the instructions ---------------------------------------------------------

const INVLPG_RBX = [0x0f, 0x01, 0x3b];
const INVPCID_RCX_RSI = [0x66, 0x0f, 0x38, 0x82, 0x0e];
const MOV_AL_RBX = [0x8a, 0x03], MOV_DL_RBX = [0x8a, 0x13];
/** mov dword [rdi], imm32 */
const storeRdi = (v: number): number[] => [0xc7, 0x07, v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >>> 24];
const DESC = 0x9000;

/**
 * Runs `code` in long mode with X → 0x5000, the paging structures identity-mapped,
 * RBX = X and RDI = the address of X's PTE; `setup` adds to it.
 */
function guest(code: number[], setup?: (c: Cpu, t: Tables64) => void) {
  return runFragment(code, {
    setup: (c) => {
      const t = new Tables64(c);
      t.identity(0x10_0000);
      for (let pa = 0x80_0000; pa < 0x81_0000; pa += 0x1000) t.map(BigInt(pa), pa);
      t.map(BigInt(X), 0x5000);
      t.activate();
      fill(c);
      c.gpr[2 * 3] = X;
      c.gpr[2 * 7] = t.entry(BigInt(X), 1);
      setup?.(c, t);
    },
  });
}

describe('INVLPG (SDM vol. 2, INVLPG)', () => {
  it('invalidates the page of its memory operand', () => {
    const { cpu, stop } = guest([...MOV_AL_RBX, ...storeRdi(0x6007), 0x8a, 0x0b, ...INVLPG_RBX, ...MOV_DL_RBX]);
    expect(stop).toEqual({ kind: 'halt' });
    expect([cpu.gpr[2 * RAX]! & 0xff, cpu.gpr[2 * RCX]! & 0xff, cpu.gpr[2 * RDX]! & 0xff]).toEqual([0x11, 0x11, 0x22]);
  });

  it('is #GP(0) at CPL > 0', () => {
    const { stop } = guest(INVLPG_RBX, (c) => { c.cpl = 3; });
    expect(stop).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
  });

  it('is a no-op for a non-canonical address in 64-bit mode', () => {
    const { stop } = guest(INVLPG_RBX, (c) => { c.gpr[2 * 3 + 1] = 0x8000_0000 | 0; });
    expect(stop).toEqual({ kind: 'halt' });
  });

  it('a code page remapped and invalidated runs its new code (the decoded-block cache follows the TLB)', () => {
    // call rsi three times; X → 0x5000 "mov eax, 1; ret", then → 0x6000 "mov eax, 2; ret".
    const CALL_RSI = [0xff, 0xd6];
    const code = [...CALL_RSI, 0x89, 0xc5, // mov ebp, eax
      ...storeRdi(0x6007), ...CALL_RSI, 0x89, 0xc1, // mov ecx, eax (stale translation: still 1)
      ...INVLPG_RBX, ...CALL_RSI]; // now 2
    const { cpu, stop } = guest(code, (c) => {
      c.gpr[2 * RSI] = X;
      c.memory.load(0x5000, Uint8Array.of(0xb8, 1, 0, 0, 0, 0xc3));
      c.memory.load(0x6000, Uint8Array.of(0xb8, 2, 0, 0, 0, 0xc3));
    });
    expect(stop).toEqual({ kind: 'halt' });
    expect([cpu.gpr[2 * 5], cpu.gpr[2 * RCX], cpu.gpr[2 * RAX]]).toEqual([1, 1, 2]);
  });
});

describe('INVPCID (SDM vol. 2, INVPCID)', () => {
  /** Descriptor: PCID (bits 63:0 of the first quadword), linear address (second). */
  const desc = (c: Cpu, pcid: bigint, lin: bigint): void => {
    write64(c, DESC, pcid);
    write64(c, DESC + 8, lin);
    c.gpr[2 * RSI] = DESC;
  };

  it('type 0 invalidates the address in its descriptor', () => {
    const { cpu, stop } = guest([...MOV_AL_RBX, ...storeRdi(0x6007), ...INVPCID_RCX_RSI, ...MOV_DL_RBX],
      (c) => { desc(c, 0n, BigInt(X)); c.gpr[2 * RCX] = 0; });
    expect(stop).toEqual({ kind: 'halt' });
    expect([cpu.gpr[2 * RAX]! & 0xff, cpu.gpr[2 * RDX]! & 0xff]).toEqual([0x11, 0x22]);
  });

  it('type 0 for another address leaves the translation; type 3 drops it', () => {
    for (const [type, expected] of [[0, 0x11], [3, 0x22]] as const) {
      const { cpu, stop } = guest([...MOV_AL_RBX, ...storeRdi(0x6007), ...INVPCID_RCX_RSI, ...MOV_DL_RBX],
        (c) => { desc(c, 0n, BigInt(X + 0x1000)); c.gpr[2 * RCX] = type; });
      expect(stop).toEqual({ kind: 'halt' });
      expect(cpu.gpr[2 * RDX]! & 0xff).toBe(expected);
    }
  });

  it('#GP(0): type above 3, descriptor bits 63:12 set, a non-canonical type-0 address, CPL > 0', () => {
    const GP = { kind: 'exception', vector: 13, errorCode: 0 };
    expect(guest(INVPCID_RCX_RSI, (c) => { desc(c, 0n, 0n); c.gpr[2 * RCX] = 4; }).stop).toEqual(GP);
    expect(guest(INVPCID_RCX_RSI, (c) => { desc(c, 0n, 0n); c.gpr[2 * RCX + 1] = 1; }).stop).toEqual(GP);
    expect(guest(INVPCID_RCX_RSI, (c) => { desc(c, 0x1000n, 0n); c.gpr[2 * RCX] = 2; }).stop).toEqual(GP);
    expect(guest(INVPCID_RCX_RSI, (c) => { desc(c, 0n, 0x8000_0000_0000n); c.gpr[2 * RCX] = 0; }).stop).toEqual(GP);
    expect(guest(INVPCID_RCX_RSI, (c) => { desc(c, 0n, 0x8000_0000_0000n); c.gpr[2 * RCX] = 1; }).stop)
      .toEqual({ kind: 'halt' }); // the address matters to type 0 only
    expect(guest(INVPCID_RCX_RSI, (c) => { desc(c, 0n, 0n); c.cpl = 3; }).stop).toEqual(GP);
  });

  it('#GP(0) for types 0 and 1 naming a PCID other than 000H while CR4.PCIDE = 0; types 2, 3 ignore it', () => {
    const GP = { kind: 'exception', vector: 13, errorCode: 0 };
    for (const type of [0, 1]) {
      expect(guest(INVPCID_RCX_RSI, (c) => { desc(c, 7n, 0n); c.gpr[2 * RCX] = type; }).stop).toEqual(GP);
    }
    for (const type of [2, 3]) {
      expect(guest(INVPCID_RCX_RSI, (c) => { desc(c, 7n, 0n); c.gpr[2 * RCX] = type; }).stop).toEqual({ kind: 'halt' });
    }
  });

  it('the descriptor read can page-fault; a register operand is #UD', () => {
    expect(guest(INVPCID_RCX_RSI, (c) => { c.gpr[2 * RSI] = 0x7f_0000; c.gpr[2 * RCX] = 0; }).stop)
      .toEqual({ kind: 'exception', vector: 14, errorCode: 0 });
    expect(guest([0x66, 0x0f, 0x38, 0x82, 0xce]).stop).toEqual({ kind: 'exception', vector: 6, errorCode: null });
  });
});

/**
 * A full flush (VM entries and exits without VPID, CR0.PG changes) empties the
 * TLB; the model keeps the flushed entries to spare the next walks, and takes
 * one back only while no paging structure has been written since. These tests
 * hold that the flush stays exact (SDM vol. 3A, 4.10.4.1; vol. 3C, 29.4.3).
 */
describe('full flushes stay exact while the model keeps flushed entries', () => {
  it('a PTE changed before a full flush is seen after it', () => {
    const { cpu, remap, rd } = tlbCpu();
    expect(rd(X)).toBe(0x11);
    remap(X, 0x6000);
    expect(rd(X)).toBe(0x11); // stale until invalidated
    cpu.mmu.flush();
    expect(rd(X)).toBe(0x22);
  });

  it('a PTE changed after the flush, before the next access, is seen too', () => {
    const { cpu, remap, rd } = tlbCpu();
    expect(rd(X)).toBe(0x11);
    cpu.mmu.flush();
    remap(X, 0x6000);
    expect(rd(X)).toBe(0x22);
  });

  it('with no paging-structure write, the translation after a flush is the same one, taken back without a walk', () => {
    const { cpu, rd } = tlbCpu();
    expect(rd(X)).toBe(0x11);
    const paging = cpu.paging as unknown as { walk: (...a: unknown[]) => number };
    const walk = paging.walk.bind(paging);
    let walks = 0;
    paging.walk = (...a: unknown[]): number => { walks++; return walk(...a); };
    cpu.mmu.flush();
    expect(rd(X)).toBe(0x11);
    expect(walks).toBe(0);
  });

  it('a flushed entry is not taken back under another CR3', () => {
    const { cpu, rd } = tlbCpu();
    expect(rd(X)).toBe(0x11);
    // A second address space that maps X elsewhere (built before the flush), then a switch with a full flush.
    const other = new Tables64(cpu, 4, 0xc00000);
    other.map(BigInt(X), 0x6000);
    other.identity(0x10000);
    const first = cpu.cr3Lo;
    cpu.cr3Lo = other.root;
    cpu.mmu.flush();
    expect(rd(X)).toBe(0x22);
    // Back to the first address space: its flushed entry is valid again, and right.
    cpu.cr3Lo = first;
    cpu.mmu.flush();
    expect(rd(X)).toBe(0x11);
  });
});
