import { describe, expect, it } from 'vitest';
import { runFragment, skylakeWith } from '../../src/cpu/testing.js';
import { RAX, RBX } from '../../src/cpu/regs.js';
import {
  attempt, CR0_WP, EFER_NXE, GIB, KIB, le, lohi, longModeCpu, MIB2, pf, PTE_A, PTE_P, PTE_PS, PTE_URW, PTE_XD,
  read64, Tables64, write64,
} from './tables.js';

/** SDM vol. 3A, 4.5 "4-Level Paging and 5-Level Paging". */
describe('SDM 4.5 (4-level and 5-level paging): translation', () => {
  it('translates a 4-KiB page through PML4E, PDPTE, PDE and PTE', () => {
    const { cpu } = longModeCpu((t) => t.map(0x7f12_3456_7000n, 0x0034_5000));
    cpu.memory.load(0x345abc, Uint8Array.of(0x78, 0x56, 0x34, 0x12));
    const [lo, hi] = lohi(0x7f12_3456_7abcn);
    expect(cpu.mmu.read32(lo, hi)).toBe(0x12345678);
  });

  it('translates a 2-MiB page (PDE with PS = 1): bits 20:0 of the address are the offset', () => {
    const { cpu } = longModeCpu((t) => t.map(0x4000_0000n, 0x0060_0000, PTE_URW, MIB2));
    cpu.memory.load(0x6f_1234, Uint8Array.of(0xaa));
    expect(cpu.mmu.read8(0x400f_1234, 0)).toBe(0xaa);
  });

  it('translates a 1-GiB page (PDPTE with PS = 1): bits 29:0 are the offset', () => {
    // Linear 0x80_4000_0000 (PML4 index 1, PDPT index 1) maps physical 0 - 1 GiB.
    const { cpu } = longModeCpu((t) => t.map(0x80_4000_0000n, 0, PTE_URW, GIB));
    cpu.memory.load(0xabc123, Uint8Array.of(0x5a));
    const [lo, hi] = lohi(0x80_40ab_c123n);
    expect(cpu.mmu.read8(lo, hi)).toBe(0x5a);
  });

  it('5-level paging (CR4.LA57) walks a PML5E first and accepts 57-bit canonical addresses', () => {
    const lin = 0x0001_0000_0000_1000n; // bit 48 set: PML5 index 1, non-canonical with 4 levels
    const { cpu } = longModeCpu((t) => t.map(lin, 0x5000), 5);
    cpu.memory.load(0x5008, Uint8Array.of(0x99));
    expect(cpu.mmu.canonicalShift).toBe(7);
    const [lo, hi] = lohi(lin + 8n);
    expect(cpu.mmu.read8(lo, hi)).toBe(0x99);
  });

  it('in 4-level paging an address with bits 63:47 not all equal is non-canonical: #GP(0), not #PF', () => {
    const { cpu } = longModeCpu((t) => t.map(0n, 0x5000));
    const [lo, hi] = lohi(0x0100_0000_0000_0000n);
    expect(attempt(cpu, () => cpu.mmu.read8(lo, hi))).toEqual({ vector: 13, code: 0 });
  });

  it('runs code from a remapped page: fetches go through the page tables', () => {
    // Code linked at linear 0x40_0000_1000 lives at physical 0x3000: mov eax, 42; mov ebx, [rip - 10]
    const { cpu, stop } = runFragment([], {
      setup: (c) => {
        const t = new Tables64(c);
        t.identity(0x100000);
        t.map(0x40_0000_1000n, 0x3000);
        t.activate();
        c.memory.load(0x3000, Uint8Array.of(0xb8, ...le(42, 4), 0x8b, 0x1d, ...le(-11, 4), 0xf4));
        [c.ripLo, c.ripHi] = lohi(0x40_0000_1000n);
      },
    });
    expect(stop).toEqual({ kind: 'halt' });
    expect(cpu.gpr[2 * RAX]).toBe(42);
    expect(cpu.gpr[2 * RBX]).toBe(0x2ab8); // the bytes b8 2a 00 00 at 0x40_0000_1000
  });
});

describe('SDM 4.5 and 4.7: not-present entries and reserved bits', () => {
  it('P = 0 at any level raises #PF with P = 0 (error code 0 for a supervisor read) and CR2 = the address', () => {
    const lin = 0x12_3456_7890n;
    for (const level of [4, 3, 2, 1]) {
      const { cpu, t } = longModeCpu((tt) => tt.map(lin & ~0xfffn, 0x5000));
      const at = t.entry(lin, level);
      write64(cpu, at, read64(cpu, at) & ~PTE_P);
      cpu.mmu.flush();
      const [lo, hi] = lohi(lin);
      expect(attempt(cpu, () => cpu.mmu.read8(lo, hi))).toEqual(pf(0));
      expect([cpu.cr2Lo, cpu.cr2Hi]).toEqual([lo, hi]);
    }
  });

  it('an address bit at or above MAXPHYADDR (39) in any entry is reserved: #PF with P and RSVD', () => {
    for (const level of [4, 3, 2, 1]) {
      const { cpu, t } = longModeCpu((tt) => tt.map(0x20_0000_0000n, 0x5000));
      const at = t.entry(0x20_0000_0000n, level);
      write64(cpu, at, read64(cpu, at) | (1n << 39n));
      cpu.mmu.flush();
      expect(attempt(cpu, () => cpu.mmu.read8(0, 0x20))).toEqual(pf(0b1001));
    }
  });

  it('bits 51:MAXPHYADDR are reserved but bits 62:52 are ignored', () => {
    const { cpu, t } = longModeCpu((tt) => tt.map(0x20_0000_0000n, 0x5000));
    const pte = t.entry(0x20_0000_0000n, 1);
    write64(cpu, pte, read64(cpu, pte) | (0x7ffn << 52n));
    cpu.mmu.flush();
    expect(attempt(cpu, () => cpu.mmu.read8(0, 0x20))).toEqual({ value: 0 });
    write64(cpu, pte, read64(cpu, pte) | (1n << 51n));
    cpu.mmu.flush();
    expect(attempt(cpu, () => cpu.mmu.read8(0, 0x20))).toEqual(pf(0b1001));
  });

  it('PS is reserved in a PML4E (4.5.4, table 4-15)', () => {
    const { cpu, t } = longModeCpu((tt) => tt.map(0x20_0000_0000n, 0x5000));
    const at = t.entry(0x20_0000_0000n, 4);
    write64(cpu, at, read64(cpu, at) | PTE_PS);
    cpu.mmu.flush();
    expect(attempt(cpu, () => cpu.mmu.read8(0, 0x20))).toEqual(pf(0b1001));
  });

  it('PS is reserved in a PDPTE on a processor without 1-GByte pages (CPUID.80000001H:EDX.Page1GB[bit 26] = 0; 4.5.4, table 4-15)', () => {
    const noPage1GB = skylakeWith({ remove: ['pdpe1gb'] });
    const { cpu } = longModeCpu((t) => t.map(0x80_4000_0000n, 0, PTE_URW, GIB), 4, noPage1GB);
    const [lo, hi] = lohi(0x80_4000_1000n);
    expect(attempt(cpu, () => cpu.mmu.read8(lo, hi))).toEqual(pf(0b1001)); // P and RSVD
    expect(attempt(cpu, () => cpu.mmu.write8(lo, hi, 1))).toEqual(pf(0b1011)); // P, W and RSVD
    // The same tables on skylake, which has 1-GByte pages, translate.
    const skylake = longModeCpu((t) => t.map(0x80_4000_0000n, 0, PTE_URW, GIB)).cpu;
    expect(attempt(skylake, () => skylake.mmu.read8(lo, hi))).toEqual({ value: 0 });
  });

  it('bits 20:13 of a 2-MiB PDE and bits 29:13 of a 1-GiB PDPTE are reserved; bit 12 (PAT) is not', () => {
    const { cpu } = longModeCpu((t) => {
      t.map(0x4000_0000n, 0x60_0000 | 0x1000, PTE_URW, MIB2); // PAT set: fine
      t.map(0x4020_0000n, 0x60_0000 | 0x2000, PTE_URW, MIB2);
      t.map(0x80_0000_0000n, 0x1000, PTE_URW, GIB);
      t.map(0x80_4000_0000n, 0x2000_0000, PTE_URW, GIB);
    });
    expect(attempt(cpu, () => cpu.mmu.read8(0x4000_0000, 0))).toEqual({ value: 0 });
    expect(attempt(cpu, () => cpu.mmu.read8(0x4020_0000, 0))).toEqual(pf(0b1001));
    expect(attempt(cpu, () => cpu.mmu.read8(0, 0x80))).toEqual({ value: 0 });
    expect(attempt(cpu, () => cpu.mmu.read8(0x4000_0000, 0x80))).toEqual(pf(0b1001));
  });

  it('XD (bit 63) is reserved while EFER.NXE = 0 and the execute-disable bit when NXE = 1', () => {
    const { cpu } = longModeCpu((t) => t.map(0x20_0000_0000n, 0x5000, PTE_URW | PTE_XD));
    expect(attempt(cpu, () => cpu.mmu.read8(0, 0x20))).toEqual(pf(0b1001));
    cpu.efer |= EFER_NXE;
    expect(attempt(cpu, () => cpu.mmu.read8(0, 0x20))).toEqual({ value: 0 });
  });

  it('a reserved bit is reported even when a lower level is not present: the walk stops at the first bad entry', () => {
    const { cpu, t } = longModeCpu((tt) => tt.map(0x20_0000_0000n, 0x5000, 0n));
    const pdpte = t.entry(0x20_0000_0000n, 3);
    write64(cpu, pdpte, read64(cpu, pdpte) | (1n << 45n));
    cpu.mmu.flush();
    expect(attempt(cpu, () => cpu.mmu.read8(0, 0x20))).toEqual(pf(0b1001));
  });

  it('a fault sets no accessed flag (4.8: flags are set only for a translation that is used)', () => {
    const { cpu, t } = longModeCpu((tt) => tt.map(0x20_0000_0000n, 0x5000, PTE_P));
    cpu.cr0 |= CR0_WP;
    cpu.mmu.flush();
    expect(attempt(cpu, () => cpu.mmu.write8(0, 0x20, 1))).toEqual(pf(0b0011));
    expect(read64(cpu, t.entry(0x20_0000_0000n, 4)) & PTE_A).toBe(0n);
    expect(read64(cpu, t.entry(0x20_0000_0000n, 1)) & PTE_A).toBe(0n);
  });

  it('maps a physical page above 4 GiB, below 2^MAXPHYADDR', () => {
    const { cpu } = longModeCpu((t) => t.map(0x1000n, 0x80_0000_0000n - BigInt(KIB)));
    // Physical 0x7f_ffff_f000 is beyond the 16 MiB of RAM: reads float high, the walk itself succeeds.
    expect(attempt(cpu, () => cpu.mmu.read32(0x1000, 0))).toEqual({ value: -1 });
  });
});
