import { describe, expect, it } from 'vitest';
import { Cpu, FAULT } from './cpu.js';
import { Access } from './mmu.js';
import { Tables64, PTE_P, PTE_RW, PTE_US, PTE_D, read64 } from '../../spec-tests/paging/tables.js';

/** Long mode with tables: 0x10_0000 user RW, 0x20_0000 supervisor RW (both → 0x5000). */
function cpuWithTables(): { cpu: Cpu; t: Tables64 } {
  const cpu = new Cpu({ memorySize: 16 * 1024 * 1024 });
  cpu.enterFlat64();
  const t = new Tables64(cpu);
  t.map(0x10_0000n, 0x5000, PTE_P | PTE_RW | PTE_US);
  t.map(0x20_0000n, 0x5000, PTE_P | PTE_RW);
  t.activate();
  return { cpu, t };
}

function faults(cpu: Cpu, f: () => void): number | null {
  try { f(); return null; } catch (e) { if (e !== FAULT) throw e; return cpu.excCode; }
}

describe('MMU fast entries (mmu.ts; SDM vol. 3A, 4.6.1 access rights, 4.8 dirty flags, 4.10 TLBs)', () => {
  it('enterFlat64 maps linear = physical with no tables; mmu.flush() takes up CR3', () => {
    const cpu = new Cpu({ memorySize: 1 << 20 });
    cpu.enterFlat64();
    cpu.memory.write8(0x4321, 7);
    expect(cpu.mmu.read8(0x4321, 0)).toBe(7);
    cpu.cr3Lo = 0x9000; // empty PML4
    cpu.mmu.flush();
    expect(faults(cpu, () => cpu.mmu.read8(0x4321, 0))).toBe(0);
    expect(cpu.cr2Lo).toBe(0x4321);
  });

  it('the first write to a page walks (and sets D) even after reads filled the read entry', () => {
    const { cpu, t } = cpuWithTables();
    const pte = t.entry(0x10_0000n, 1);
    const epoch = cpu.mmu.epoch;
    cpu.mmu.read32(0x10_0000, 0);
    expect(read64(cpu, pte) & PTE_D).toBe(0n);
    cpu.mmu.write32(0x10_0004, 0, 1);
    expect(read64(cpu, pte) & PTE_D).toBe(PTE_D);
    expect(cpu.mmu.epoch).toBe(epoch); // fills do not count as flushes
  });

  it('the user and supervisor entries are separate: CPL changes never widen access', () => {
    const { cpu } = cpuWithTables();
    cpu.mmu.write8(0x20_0000, 0, 1);
    cpu.cpl = 3;
    expect(cpu.mmu.user).toBe(true);
    expect(faults(cpu, () => cpu.mmu.read8(0x20_0000, 0))).toBe(0b101);
    expect(cpu.mmu.read8(0x10_0000, 0)).toBe(1);
    cpu.cpl = 0;
    expect(cpu.mmu.user).toBe(false);
    expect(cpu.mmu.read8(0x20_0000, 0)).toBe(1);
  });

  it('implicit supervisor accesses use the supervisor view at CPL 3 and restore the user view after a fault', () => {
    const { cpu } = cpuWithTables();
    cpu.cpl = 3;
    expect(cpu.mmu.readImplicit(0x20_0000, 0, 1)).toBe(0);
    expect(faults(cpu, () => cpu.mmu.readImplicit(0x30_0000, 0, 1))).toBe(0);
    expect(cpu.mmu.user).toBe(true);
    cpu.mmu.setImplicitSupervisor(true);
    expect(cpu.mmu.user).toBe(false);
    cpu.mmu.setImplicitSupervisor(false);
    expect(cpu.mmu.user).toBe(true);
  });

  it('translate() gives the physical page with the access\'s faults and fills nothing', () => {
    const { cpu } = cpuWithTables();
    expect(cpu.mmu.translate(0x10_0123, 0, Access.WRITE)).toBe(5);
    cpu.cpl = 3;
    expect(faults(cpu, () => cpu.mmu.translate(0x20_0000, 0, Access.READ))).toBe(0b101);
    expect(faults(cpu, () => cpu.mmu.translate(0, 0x8000, Access.READ))).toBe(0); // non-canonical: #GP(0)
    expect(cpu.excVector).toBe(13);
  });

  it('flushes and page drops bump the epoch that block chaining compares', () => {
    const { cpu } = cpuWithTables();
    const e0 = cpu.mmu.epoch;
    cpu.paging.invlpg(0x10_0000, 0);
    const e1 = cpu.mmu.epoch;
    cpu.mmu.flushFast();
    expect(e1).toBeGreaterThan(e0);
    expect(cpu.mmu.epoch).toBeGreaterThan(e1);
  });

  it('a page that starts holding code loses its write entries in both privilege views', () => {
    const { cpu } = cpuWithTables();
    cpu.mmu.write8(0x10_0000, 0, 1);
    cpu.cpl = 3;
    cpu.mmu.write8(0x10_0001, 0, 2);
    cpu.mmu.protectPage(5);
    let written = 0;
    const host = cpu as unknown as { codeWritten: (pa: number, n: number) => void; isWatchedPage: (p: number) => boolean };
    host.isWatchedPage = (p) => p === 5;
    host.codeWritten = () => { written++; };
    cpu.mmu.write8(0x10_0002, 0, 3);
    cpu.cpl = 0;
    cpu.mmu.write8(0x10_0003, 0, 4);
    expect(written).toBe(2);
  });
});

describe('MMU translation contexts (mmu.ts switchContext; VM entries and exits with VPIDs, SDM vol. 3C, 29.4.3.1)', () => {
  it('a context switched back to has its entries and its epoch again, so block chains made in it stay valid', () => {
    const { cpu } = cpuWithTables();
    cpu.paging.switchVpid(0);
    cpu.mmu.read32(0x10_0000, 0);
    const host = cpu.mmu.epoch;
    cpu.paging.switchVpid(1);
    expect(cpu.mmu.epoch).not.toBe(host);
    const guest = cpu.mmu.epoch;
    cpu.paging.switchVpid(0);
    expect(cpu.mmu.epoch).toBe(host);
    cpu.paging.switchVpid(1);
    expect(cpu.mmu.epoch).toBe(guest);
  });

  it('a flush in one context takes every context\'s entries: the epoch of a context switched back to is new', () => {
    const { cpu } = cpuWithTables();
    cpu.paging.switchVpid(0);
    const host = cpu.mmu.epoch;
    cpu.paging.switchVpid(1);
    cpu.mmu.flushFast();
    cpu.paging.switchVpid(0);
    expect(cpu.mmu.epoch).not.toBe(host);
  });

  it('a page that becomes code in one context loses its write entries in the others: a write there still drops the decoded code', () => {
    const { cpu } = cpuWithTables();
    cpu.paging.switchVpid(1);
    cpu.mmu.write8(0x10_0010, 0, 0x90); // a write entry for the page in this context
    cpu.paging.switchVpid(0);
    cpu.memory.write8(0x5000, 0xf4); // HLT at the physical page both map
    cpu.ripLo = 0x10_0000;
    const block = cpu.blocks.lookup(); // decoded: the page is now watched
    expect(block.stale).toBe(false);
    cpu.paging.switchVpid(1);
    cpu.mmu.write8(0x10_0000, 0, 0x90);
    expect(block.stale).toBe(true);
  });
});
