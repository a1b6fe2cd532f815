import { describe, expect, it } from 'vitest';
import { Access } from '../../src/cpu/mmu.js';
import {
  attempt, CR4_PSE, CR4_SMEP, EFER_NXE, legacyCpu, MIB4, pf, PTE_P, PTE_PS, PTE_URW, read32, Tables32, write32,
} from './tables.js';

/** SDM vol. 3A, 4.3 "32-Bit Paging". */
describe('SDM 4.3 (32-bit paging)', () => {
  it('translates a 4-KiB page through a PDE and a PTE', () => {
    const cpu = legacyCpu((c) => {
      const t = new Tables32(c);
      t.map(0xc012_3000, 0x0004_5000);
      return t.root;
    });
    cpu.memory.load(0x45ffc, Uint8Array.of(1, 2, 3, 4));
    expect(cpu.mmu.read32(0xc012_3ffc | 0, 0)).toBe(0x04030201);
  });

  it('a PDE with PS = 1 maps a 4-MiB page when CR4.PSE = 1', () => {
    const cpu = legacyCpu((c) => {
      const t = new Tables32(c);
      t.mapLarge(0x8000_0000, 0x0040_0000);
      return t.root;
    }, CR4_PSE);
    cpu.memory.load(0x7f_0000, Uint8Array.of(0x66));
    expect(cpu.mmu.read8(0x803f_0000 | 0, 0)).toBe(0x66);
  });

  it('with CR4.PSE = 0 the PS flag is ignored: the PDE points to a page table', () => {
    const cpu = legacyCpu((c) => {
      const t = new Tables32(c);
      t.map(0x8000_0000, 0x9000); // creates the page table at the PDE
      write32(c, t.pde(0x8000_0000), read32(c, t.pde(0x8000_0000)) | Number(PTE_PS));
      return t.root;
    });
    cpu.memory.load(0x9010, Uint8Array.of(0x77));
    expect(cpu.mmu.read8(0x8000_0010 | 0, 0)).toBe(0x77);
  });

  it('PSE-36: PDE bits 19:13 give physical-address bits 38:32 of a 4-MiB page', () => {
    const cpu = legacyCpu((c) => {
      const t = new Tables32(c);
      t.mapLarge(0x0040_0000, 0x0080_0000, Number(PTE_URW), 0x45);
      return t.root;
    }, CR4_PSE);
    // Physical 0x45_0080_0000 + 0x1_2345: page number 0x45_0081_2.
    expect(cpu.mmu.translate(0x0041_2345, 0, Access.READ)).toBe(0x45_0081_2);
  });

  it('PDE bits 21:20 of a 4-MiB page are reserved with MAXPHYADDR = 39: #PF with RSVD', () => {
    const cpu = legacyCpu((c) => {
      const t = new Tables32(c);
      write32(c, t.pde(0x0040_0000), 0x0080_0000 | (1 << 20) | Number(PTE_URW | PTE_PS));
      return t.root;
    }, CR4_PSE);
    expect(attempt(cpu, () => cpu.mmu.read8(0x0040_0000, 0))).toEqual(pf(0b1001));
  });

  it('32-bit paging has no reserved bits in a PTE and linear addresses are 32 bits', () => {
    const cpu = legacyCpu((c) => {
      const t = new Tables32(c);
      t.map(0x1000, 0x2000, Number(PTE_URW) | 0x180); // PAT and G set
      return t.root;
    });
    cpu.memory.load(0x2000, Uint8Array.of(0x31));
    expect(cpu.mmu.read8(0x1000, 0)).toBe(0x31);
  });

  it('I/D is set for a fetch only with CR4.SMEP = 1: there is no XD in 32-bit paging (4.7)', () => {
    const cpu = legacyCpu((c) => new Tables32(c).root);
    cpu.efer |= EFER_NXE;
    expect(attempt(cpu, () => cpu.mmu.fetch8(0x5000, 0))).toEqual(pf(0));
    cpu.cr4 |= CR4_SMEP;
    expect(attempt(cpu, () => cpu.mmu.fetch8(0x5000, 0))).toEqual(pf(0b10000));
    expect(cpu.cr2Lo).toBe(0x5000);
  });

  it('a not-present PTE under a present PDE: #PF with P = 0; a write sets W/R', () => {
    const cpu = legacyCpu((c) => {
      const t = new Tables32(c);
      t.map(0x3000, 0x3000, 0);
      return t.root;
    });
    expect(attempt(cpu, () => cpu.mmu.write8(0x3008, 0, 1))).toEqual(pf(0b10));
    expect(cpu.cr2Lo).toBe(0x3008);
    expect(PTE_P).toBe(1n);
  });

  it('a 4-MiB page is cached and invalidated as a whole (4.10.2.3)', () => {
    let pde = 0;
    const cpu = legacyCpu((c) => {
      const t = new Tables32(c);
      pde = t.mapLarge(0x0040_0000, 0x0040_0000);
      return t.root;
    }, CR4_PSE);
    cpu.memory.load(0x40_0000, Uint8Array.of(0xa1));
    cpu.memory.load(0x7f_f000, Uint8Array.of(0xa2));
    expect(cpu.mmu.read8(0x0040_0000, 0)).toBe(0xa1);
    expect(cpu.mmu.read8(0x007f_f000, 0)).toBe(0xa2);
    write32(cpu, pde, 0x0080_0000 | Number(PTE_URW | PTE_PS));
    // Stale until invalidated; INVLPG of any address in the page drops every fragment.
    expect(cpu.mmu.read8(0x007f_f000, 0)).toBe(0xa2);
    cpu.paging.invlpg(0x0040_1234, 0);
    expect(cpu.mmu.translate(0x007f_f000, 0, Access.READ)).toBe((0x0080_0000 + MIB4 - 0x1000) / 0x1000);
    expect(cpu.mmu.translate(0x0040_0000, 0, Access.READ)).toBe(0x800);
  });
});
