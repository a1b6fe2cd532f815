import { describe, expect, it } from 'vitest';
import { runFragment } from '../../src/cpu/testing.js';
import {
  CR4_PAE, CR4_PSE, GIB, legacyCpu, longModeCpu, MIB2, PTE_A, PTE_D, read32, read64, Tables32, Tables64,
  TablesPae, write64,
} from './tables.js';

const LIN = 0x12_3456_7000n;
const A_D = PTE_A | PTE_D;

/** A and D of the entries that translate `lin`, from the PML4E (level 4) down to the PTE. */
function flags(t: Tables64, lin: bigint, levels: number[] = [4, 3, 2, 1]): bigint[] {
  return levels.map((l) => read64(t.cpu, t.entry(lin, l)) & A_D);
}

/** SDM vol. 3A, 4.8 "Accessed and Dirty Flags". */
describe('SDM 4.8 (accessed and dirty flags)', () => {
  it('a read sets the accessed flag in every entry used and no dirty flag', () => {
    const { cpu, t } = longModeCpu((tt) => tt.map(LIN, 0x5000));
    expect(flags(t, LIN)).toEqual([0n, 0n, 0n, 0n]);
    cpu.mmu.read8(0x3456_7000, 0x12);
    expect(flags(t, LIN)).toEqual([PTE_A, PTE_A, PTE_A, PTE_A]);
  });

  it('a write sets the dirty flag in the PTE only (the entry that maps the page)', () => {
    const { cpu, t } = longModeCpu((tt) => tt.map(LIN, 0x5000));
    cpu.mmu.write32(0x3456_7000, 0x12, 7);
    expect(flags(t, LIN)).toEqual([PTE_A, PTE_A, PTE_A, A_D]);
  });

  it('the first write after reads walks again and sets D, although the translation is cached', () => {
    const { cpu, t } = longModeCpu((tt) => tt.map(LIN, 0x5000));
    for (let k = 0; k < 3; k++) cpu.mmu.read32(0x3456_7000, 0x12);
    expect(flags(t, LIN, [1])).toEqual([PTE_A]);
    cpu.mmu.write8(0x3456_7001, 0x12, 1);
    expect(flags(t, LIN, [1])).toEqual([A_D]);
  });

  it('a 2-MiB page gets D in its PDE, a 1-GiB page in its PDPTE', () => {
    const { cpu, t } = longModeCpu((tt) => {
      tt.map(0x4000_0000n, 0x20_0000, undefined, MIB2);
      tt.map(0x80_0000_0000n, 0, undefined, GIB);
    });
    cpu.mmu.write8(0x4000_0010, 0, 1);
    cpu.mmu.write8(0x10, 0x80, 1);
    expect(flags(t, 0x4000_0000n, [4, 3, 2])).toEqual([PTE_A, PTE_A, A_D]);
    expect(flags(t, 0x80_0000_0000n, [4, 3])).toEqual([PTE_A, A_D]);
  });

  it('flags cleared by software without invalidation may stay clear: the TLB remembers them (4.10.4.3)', () => {
    const { cpu, t } = longModeCpu((tt) => tt.map(LIN, 0x5000));
    cpu.mmu.write8(0x3456_7000, 0x12, 1);
    const pte = t.entry(LIN, 1);
    write64(cpu, pte, read64(cpu, pte) & ~A_D);
    cpu.mmu.write8(0x3456_7000, 0x12, 2);
    expect(flags(t, LIN, [1])).toEqual([0n]);
    // After INVLPG the next write walks the structures and sets both again.
    cpu.paging.invlpg(0x3456_7000, 0x12);
    cpu.mmu.write8(0x3456_7000, 0x12, 3);
    expect(flags(t, LIN, [1])).toEqual([A_D]);
  });

  it('store and read-modify-write instructions set D in the PTEs of the pages they write', () => {
    // mov [rbx], eax ; add [rsi], eax
    let t!: Tables64;
    const { cpu, stop } = runFragment([0x89, 0x03, 0x01, 0x06], {
      setup: (c) => {
        t = new Tables64(c);
        t.identity(0x100000);
        t.map(0x40_0000n, 0x6000);
        t.map(0x40_1000n, 0x7000);
        t.activate();
        c.gpr[2 * 0] = 5;
        c.gpr[2 * 3] = 0x40_0000;
        c.gpr[2 * 6] = 0x40_1000;
      },
    });
    expect(stop).toEqual({ kind: 'halt' });
    expect(cpu.memory.read8(0x6000)).toBe(5);
    expect(cpu.memory.read8(0x7000)).toBe(5);
    expect(flags(t, 0x40_0000n, [1])).toEqual([A_D]);
    expect(flags(t, 0x40_1000n, [1])).toEqual([A_D]);
    // The code page was only fetched from: accessed, not dirty.
    expect(flags(t, 0x1000n, [1])).toEqual([PTE_A]);
  });

  it('32-bit paging: A in the PDE and PTE, D in the PTE; a 4-MiB page gets D in its PDE', () => {
    let t!: Tables32;
    const cpu = legacyCpu((c) => {
      t = new Tables32(c);
      t.map(0x1000, 0x5000);
      t.mapLarge(0x80_0000, 0x80_0000);
      return t.root;
    }, CR4_PSE);
    cpu.mmu.write8(0x1000, 0, 1);
    cpu.mmu.write8(0x80_0010, 0, 1);
    expect(read32(cpu, t.pde(0x1000)) & 0x60).toBe(0x20);
    expect(read32(cpu, t.pte(0x1000)) & 0x60).toBe(0x60);
    expect(read32(cpu, t.pde(0x80_0000)) & 0x60).toBe(0x60);
  });

  it('PAE paging: the PDPTEs (registers) get no accessed flag; the PDE and PTE do', () => {
    let t!: TablesPae;
    const cpu = legacyCpu((c) => {
      t = new TablesPae(c);
      t.map(0x1000, 0x5000);
      return t.pdpt;
    }, CR4_PAE);
    cpu.mmu.write8(0x1000, 0, 1);
    expect(read64(cpu, t.pdpte(0x1000)) & A_D).toBe(0n);
    expect(read64(cpu, t.pde(0x1000)) & A_D).toBe(PTE_A);
    expect(read64(cpu, t.pte(0x1000)) & A_D).toBe(A_D);
  });
});
