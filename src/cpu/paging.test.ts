import { describe, expect, it } from 'vitest';
import { Cpu } from './cpu.js';
import { CR0_PG, CR4_LA57, CR4_PAE, CR4_PCIDE, currentPcid, MAXPHYADDR, pagingMode, PagingMode } from './paging.js';
import { EFER_LME } from './regs.js';
import { PTE_P, PTE_RW, Tables64 } from '../../spec-tests/paging/tables.js';

describe('paging modes (SDM vol. 3A, 4.1.1, table 4-1)', () => {
  it('CR0.PG, CR4.PAE, EFER.LME and CR4.LA57 select none, 32-bit, PAE, 4-level or 5-level paging', () => {
    const cpu = new Cpu({ memorySize: 1 << 20 });
    const modes: [number, number, number, PagingMode][] = [
      [0, CR4_PAE, EFER_LME, PagingMode.NONE],
      [CR0_PG, 0, 0, PagingMode.BITS32],
      [CR0_PG, CR4_PAE, 0, PagingMode.PAE],
      [CR0_PG, CR4_PAE | CR4_LA57, 0, PagingMode.PAE],
      [CR0_PG, CR4_PAE, EFER_LME, PagingMode.LEVEL4],
      [CR0_PG, CR4_PAE | CR4_LA57, EFER_LME, PagingMode.LEVEL5],
    ];
    for (const [cr0, cr4, efer, mode] of modes) {
      cpu.cr0 = cr0 | 1; cpu.cr4 = cr4; cpu.efer = efer;
      expect(pagingMode(cpu)).toBe(mode);
    }
  });

  it('the current PCID is CR3[11:0] only with CR4.PCIDE = 1 (4.10.1)', () => {
    const cpu = new Cpu({ memorySize: 1 << 20 });
    cpu.cr3Lo = 0x5123;
    expect(currentPcid(cpu)).toBe(0);
    cpu.cr4 = CR4_PCIDE;
    expect(currentPcid(cpu)).toBe(0x123);
  });

  it('without paging, linear addresses are physical and 32 bits wide (4.1.1)', () => {
    const cpu = new Cpu({ memorySize: 1 << 20 });
    cpu.memory.write8(0x1234, 0x5a);
    expect(cpu.mmu.read8(0x1234, 0)).toBe(0x5a);
    expect(cpu.paging.translate(0x1234, 7, 0)).toBe(1);
  });

  it('MAXPHYADDR is 39 bits (CPUID.80000008H:EAX[7:0] of a client part)', () => {
    expect(MAXPHYADDR).toBe(39);
  });
});

describe('PDPTE registers (SDM vol. 3A, 4.4.1)', () => {
  it('loadPdptes reads four entries at CR3[31:5], refusing a present entry with a reserved bit', () => {
    const cpu = new Cpu({ memorySize: 1 << 20 });
    const at = 0x3020; // 32-byte aligned, not page aligned
    cpu.memory.load(at, Uint8Array.of(0x01, 0x50, 0, 0, 0, 0, 0, 0, 0x00, 0x60, 0, 0, 0, 0, 0, 0x80));
    expect(cpu.paging.loadPdptes(at | 0x18)).toBe(true); // bits 4:0 of CR3 are ignored
    expect(Array.from(cpu.pdpte.subarray(0, 4))).toEqual([0x5001, 0, 0x6000, 0x80000000 | 0]);
    cpu.memory.write8(at + 8, 0x01); // PDPTE1 now present with bit 63 set: reserved
    expect(cpu.paging.loadPdptes(at)).toBe(false);
    expect(cpu.pdpte[2]).toBe(0x6000); // nothing loaded
  });
});

describe('counters for the cost model (paging.ts counters)', () => {
  it('a miss walks and reads four entries under 4-level paging; the next miss of the fast path is a TLB hit; invalidations count by cause', () => {
    const cpu = new Cpu({ memorySize: 16 * 1024 * 1024 });
    cpu.enterFlat64();
    const t = new Tables64(cpu);
    t.map(0x10_0000n, 0x5000, PTE_P | PTE_RW);
    t.activate();
    const c = cpu.paging.counters, before = { ...c, flushes: { ...c.flushes } };
    cpu.mmu.read32(0x10_0000, 0);
    expect(c.walks - before.walks).toBe(1);
    expect(c.references - before.references).toBe(4);
    cpu.mmu.flushFast(); // the fast entries go; the TLB entry stays
    cpu.mmu.read32(0x10_0000, 0);
    expect(c.walks - before.walks).toBe(1);
    expect(c.hits - before.hits).toBe(1);
    cpu.paging.invlpg(0x10_0000, 0);
    cpu.paging.cr3Loaded(false);
    expect(c.flushes.invlpg - before.flushes.invlpg).toBe(1);
    expect(c.flushes.cr3 - before.flushes.cr3).toBe(1);
    cpu.mmu.read32(0x10_0000, 0);
    expect(c.walks - before.walks).toBe(2);
  });
});
