import { describe, expect, it } from 'vitest';
import type { Cpu } from '../../src/cpu/cpu.js';
import { RBX } from '../../src/cpu/regs.js';
import { runFragment } from '../../src/cpu/testing.js';
import {
  attempt, CR0_PG, CR4_PAE, CR4_PGE, EFER_NXE, le, legacyCpu, MIB2, pf, PTE_P, PTE_URW, PTE_XD, read64, TablesPae,
  write64,
} from './tables.js';

const MOV_CR3_EAX = [0x0f, 0x22, 0xd8], MOV_CR4_EAX = [0x0f, 0x22, 0xe0], MOV_CR0_EAX = [0x0f, 0x22, 0xc0];
const MOV_EAX_CR0 = [0x0f, 0x20, 0xc0], MOV_EAX_CR3 = [0x0f, 0x20, 0xd8], MOV_EAX_CR4 = [0x0f, 0x20, 0xe0];
const movEax = (v: number): number[] => [0xb8, ...le(v, 4)];
/** mov ebx, [abs32] */
const loadEbx = (at: number): number[] => [0x8b, 0x1d, ...le(at, 4)];
const PDPT = 0x800000;

/** Enables PAE paging from flat protected mode: CR3 = PDPT, CR4.PAE = 1, then CR0.PG = 1. */
const ENABLE_PAE = [...movEax(PDPT), ...MOV_CR3_EAX, ...movEax(CR4_PAE), ...MOV_CR4_EAX,
  ...MOV_EAX_CR0, 0x0d, ...le(CR0_PG, 4), ...MOV_CR0_EAX];

/** PAE tables at PDPT identity-mapping the first MiB and the PDPT's page; `more` adds mappings. */
function tables(c: Cpu, more?: (t: TablesPae) => void): TablesPae {
  const t = new TablesPae(c, PDPT);
  t.identity(0x100000);
  t.map(PDPT, PDPT); // the PDPT itself, for the tests that rewrite it
  more?.(t);
  return t;
}

/** SDM vol. 3A, 4.4 "PAE Paging". */
describe('SDM 4.4.1 (PDPTE registers)', () => {
  it('MOV to CR0 that enables PAE paging loads the PDPTEs; translation then uses them', () => {
    const { cpu, stop } = runFragment([...ENABLE_PAE, ...loadEbx(0x4000_0010)], {
      mode: 32,
      setup: (c) => {
        tables(c, (t) => t.map(0x4000_0000, 0x5000));
        c.memory.load(0x5010, Uint8Array.of(0xef, 0xbe, 0xad, 0xde));
      },
    });
    expect(stop).toEqual({ kind: 'halt' });
    expect(cpu.gpr[2 * RBX]! >>> 0).toBe(0xdeadbeef);
    expect(cpu.pdpte[2]! & 1).toBe(1);
  });

  it('a present PDPTE with a reserved bit makes the MOV to CR0 #GP(0); paging stays off', () => {
    const { cpu, stop } = runFragment(ENABLE_PAE, {
      mode: 32,
      setup: (c) => { const t = tables(c); write64(c, t.pdpte(0x4000_0000), 0x9000n | PTE_P | 2n); },
    });
    expect(stop).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
    expect(cpu.cr0 & CR0_PG).toBe(0);
  });

  it('each reserved PDPTE bit (2:1, 8:5, 63:MAXPHYADDR) faults; a not-present PDPTE is not checked', () => {
    for (const bad of [2n, 4n, 0x20n, 0x100n, 1n << 39n, 1n << 63n]) {
      const { stop } = runFragment(ENABLE_PAE, {
        mode: 32,
        setup: (c) => { const t = tables(c); write64(c, t.pdpte(0x8000_0000), 0x9000n | PTE_P | bad); },
      });
      expect(stop).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
    }
    const { cpu, stop } = runFragment([...ENABLE_PAE, ...loadEbx(0x8000_0000)], {
      mode: 32,
      setup: (c) => { const t = tables(c); write64(c, t.pdpte(0x8000_0000), 0x9000n | 0x1e6n); },
    });
    expect(stop).toEqual({ kind: 'exception', vector: 14, errorCode: 0 });
    expect(cpu.cr2Lo >>> 0).toBe(0x8000_0000);
  });

  it('MOV to CR3 under PAE paging loads the PDPTEs from the new CR3, with the #GP check; CR3 is kept on #GP', () => {
    const other = 0x900000;
    const { cpu, stop } = runFragment([...ENABLE_PAE, ...movEax(other), ...MOV_CR3_EAX], {
      mode: 32,
      setup: (c) => {
        tables(c);
        write64(c, other, 0x9000n | PTE_P | 0x40n); // bit 6: reserved in a PDPTE
      },
    });
    expect(stop).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
    expect(cpu.cr3Lo).toBe(PDPT);
  });

  it('the PDPTE registers, not memory, are used until a MOV to CR3 reloads them', () => {
    // Clear PDPTE1 in memory, INVLPG: still translated; reload CR3: #PF (P = 0).
    const code = [...ENABLE_PAE, ...loadEbx(0x4000_0000),
      0xc7, 0x05, ...le(PDPT + 8, 4), ...le(0, 4), // mov dword [PDPT + 8], 0
      0x0f, 0x01, 0x3d, ...le(0x4000_0000, 4), // invlpg [0x40000000]
      0x89, 0xd9, // mov ecx, ebx
      ...loadEbx(0x4000_0004),
      ...MOV_EAX_CR3, ...MOV_CR3_EAX,
      ...loadEbx(0x4000_0000)];
    const { cpu, stop } = runFragment(code, {
      mode: 32,
      setup: (c) => {
        tables(c, (t) => t.map(0x4000_0000, 0x5000));
        c.memory.load(0x5000, Uint8Array.of(1, 0, 0, 0, 2, 0, 0, 0));
      },
    });
    expect(stop).toEqual({ kind: 'exception', vector: 14, errorCode: 0 });
    expect(cpu.gpr[2 * 1]).toBe(1);
    expect(cpu.gpr[2 * RBX]).toBe(2);
  });

  it('MOV to CR4 changing PGE under PAE paging reloads the PDPTEs', () => {
    const code = [...ENABLE_PAE,
      0xc7, 0x05, ...le(PDPT + 8, 4), ...le(0, 4), // mov dword [PDPT + 8], 0
      ...MOV_EAX_CR4, 0x0d, ...le(CR4_PGE, 4), ...MOV_CR4_EAX,
      ...loadEbx(0x4000_0000)];
    const { cpu, stop } = runFragment(code, { mode: 32, setup: (c) => { tables(c, (t) => t.map(0x4000_0000, 0x5000)); } });
    expect(stop).toEqual({ kind: 'exception', vector: 14, errorCode: 0 });
    expect(cpu.pdpte[2]).toBe(0);
  });
});

describe('SDM 4.4.2 (linear-address translation with PAE paging)', () => {
  it('translates 4-KiB and 2-MiB pages', () => {
    const cpu = legacyCpu((c) => {
      const t = new TablesPae(c);
      t.map(0xc000_1000, 0x6000);
      t.mapLarge(0x4020_0000, 0x20_0000);
      return t.pdpt;
    }, CR4_PAE);
    cpu.memory.load(0x6004, Uint8Array.of(0x11));
    cpu.memory.load(0x21_2345, Uint8Array.of(0x22));
    expect(cpu.mmu.read8(0xc000_1004 | 0, 0)).toBe(0x11);
    expect(cpu.mmu.read8(0x4021_2345, 0)).toBe(0x22);
    expect(MIB2).toBe(0x20_0000);
  });

  it('bits 62:MAXPHYADDR of a PDE or PTE are reserved (unlike 4-level paging, where 62:52 are ignored)', () => {
    let pte = 0;
    const cpu = legacyCpu((c) => {
      const t = new TablesPae(c);
      pte = t.map(0x1000, 0x6000);
      return t.pdpt;
    }, CR4_PAE);
    write64(cpu, pte, read64(cpu, pte) | (1n << 52n));
    expect(attempt(cpu, () => cpu.mmu.read8(0x1000, 0))).toEqual(pf(0b1001));
  });

  it('with EFER.NXE = 1, XD forbids fetches: #PF with P and I/D (4.6.1, 4.7)', () => {
    const cpu = legacyCpu((c) => {
      const t = new TablesPae(c);
      t.map(0x1000, 0x6000, PTE_URW | PTE_XD);
      return t.pdpt;
    }, CR4_PAE);
    cpu.efer |= EFER_NXE;
    expect(attempt(cpu, () => cpu.mmu.read8(0x1000, 0))).toEqual({ value: 0 });
    expect(attempt(cpu, () => cpu.mmu.fetch8(0x1000, 0))).toEqual(pf(0b10001));
  });
});
