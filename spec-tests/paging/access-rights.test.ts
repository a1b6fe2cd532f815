import { describe, expect, it } from 'vitest';
import { writeCr0, writeCr4 } from '../../src/cpu/ops/control-registers.js';
import { AC } from '../../src/cpu/regs.js';
import {
  attempt, CR0_WP, CR4_SMAP, CR4_SMEP, EFER_NXE, longModeCpu, pf, PTE_P, PTE_RW, PTE_URW, PTE_US, PTE_XD, read64,
  write64,
} from './tables.js';

const USER_RW = 0x10_0000, USER_RO = 0x20_0000, SUPER_RW = 0x30_0000, SUPER_RO = 0x40_0000;

/** One page of each kind: user/supervisor × writable/read-only, all mapped to physical 0x5000. */
function rightsCpu() {
  return longModeCpu((t) => {
    t.map(BigInt(USER_RW), 0x5000, PTE_P | PTE_RW | PTE_US);
    t.map(BigInt(USER_RO), 0x5000, PTE_P | PTE_US);
    t.map(BigInt(SUPER_RW), 0x5000, PTE_P | PTE_RW);
    t.map(BigInt(SUPER_RO), 0x5000, PTE_P);
  });
}

const read = (cpu: ReturnType<typeof rightsCpu>['cpu'], at: number) => attempt(cpu, () => cpu.mmu.read8(at, 0));
const write = (cpu: ReturnType<typeof rightsCpu>['cpu'], at: number) => attempt(cpu, () => cpu.mmu.write8(at, 0, 1));
const fetch = (cpu: ReturnType<typeof rightsCpu>['cpu'], at: number) => attempt(cpu, () => cpu.mmu.fetch8(at, 0));
const OK = { value: 0 };
const OK1 = { value: 1 };

/** SDM vol. 3A, 4.6 "Access Rights" and 4.7 "Page-Fault Exceptions" (the error code). */
describe('SDM 4.6.1 (determination of access rights): user-mode accesses', () => {
  it('CPL 3 may read user pages only: #PF with P and U/S for a supervisor page', () => {
    const { cpu } = rightsCpu();
    cpu.cpl = 3;
    expect(read(cpu, USER_RO)).toEqual(OK);
    expect(read(cpu, SUPER_RW)).toEqual(pf(0b101));
    expect(fetch(cpu, SUPER_RW)).toEqual(pf(0b101)); // I/D stays 0 without SMEP or NXE
    expect(write(cpu, SUPER_RW)).toEqual(pf(0b111));
  });

  it('CPL 3 may write only where R/W = 1 at every level, whatever CR0.WP', () => {
    const { cpu } = rightsCpu();
    cpu.cpl = 3;
    expect(write(cpu, USER_RW)).toEqual(OK);
    expect(write(cpu, USER_RO)).toEqual(pf(0b111));
    writeCr0(cpu, cpu.cr0 | CR0_WP, 0);
    expect(write(cpu, USER_RO)).toEqual(pf(0b111));
  });

  it('U/S = 0 or R/W = 0 in a paging-structure entry above the PTE restricts every page below it', () => {
    const { cpu, t } = rightsCpu();
    const pde = t.entry(BigInt(USER_RW), 2);
    write64(cpu, pde, read64(cpu, pde) & ~PTE_US);
    cpu.mmu.flush();
    cpu.cpl = 3;
    expect(read(cpu, USER_RW)).toEqual(pf(0b101));
    cpu.cpl = 0;
    write64(cpu, pde, (read64(cpu, pde) | PTE_US) & ~PTE_RW);
    cpu.mmu.flush();
    cpu.cpl = 3;
    expect(read(cpu, USER_RW)).toEqual(OK);
    expect(write(cpu, USER_RW)).toEqual(pf(0b111));
  });
});

describe('SDM 4.6.1: supervisor-mode accesses', () => {
  it('CR0.WP = 0 lets supervisor writes through read-only pages; WP = 1 does not (W/R set, U/S clear)', () => {
    const { cpu } = rightsCpu();
    expect(cpu.cr0 & CR0_WP).toBe(0);
    expect(write(cpu, SUPER_RO)).toEqual(OK);
    expect(write(cpu, USER_RO)).toEqual(OK);
    writeCr0(cpu, cpu.cr0 | CR0_WP, 0);
    expect(write(cpu, SUPER_RO)).toEqual(pf(0b011));
    expect(write(cpu, USER_RO)).toEqual(pf(0b011));
    expect(write(cpu, SUPER_RW)).toEqual(OK);
  });

  it('with EFER.NXE = 1, XD = 1 at any level forbids fetches at every CPL; reads stay allowed', () => {
    const { cpu, t } = rightsCpu();
    cpu.efer |= EFER_NXE;
    const pdpte = t.entry(BigInt(USER_RW), 3);
    write64(cpu, pdpte, read64(cpu, pdpte) | PTE_XD);
    cpu.mmu.flush();
    expect(fetch(cpu, USER_RW)).toEqual(pf(0b10001));
    expect(read(cpu, USER_RW)).toEqual(OK);
    cpu.cpl = 3;
    expect(fetch(cpu, USER_RW)).toEqual(pf(0b10101));
  });

  it('SMEP: supervisor fetches from user pages #PF with P and I/D; user fetches from them are fine', () => {
    const { cpu } = rightsCpu();
    expect(fetch(cpu, USER_RO)).toEqual(OK);
    writeCr4(cpu, cpu.cr4 | CR4_SMEP, 0);
    expect(fetch(cpu, USER_RO)).toEqual(pf(0b10001));
    expect(fetch(cpu, SUPER_RO)).toEqual(OK);
    expect(read(cpu, USER_RO)).toEqual(OK); // SMEP is about fetches only
    cpu.cpl = 3;
    expect(fetch(cpu, USER_RO)).toEqual(OK);
  });

  it('SMAP: supervisor data accesses to user pages need RFLAGS.AC = 1; fetches are not affected', () => {
    const { cpu } = rightsCpu();
    writeCr4(cpu, cpu.cr4 | CR4_SMAP, 0);
    expect(read(cpu, USER_RW)).toEqual(pf(0b0001));
    expect(write(cpu, USER_RW)).toEqual(pf(0b0011));
    expect(fetch(cpu, USER_RW)).toEqual(OK);
    expect(read(cpu, SUPER_RW)).toEqual(OK);
    cpu.flags |= AC;
    expect(read(cpu, USER_RW)).toEqual(OK);
    expect(write(cpu, USER_RW)).toEqual(OK);
    // WP still applies to a user read-only page under SMAP with AC = 1.
    writeCr0(cpu, cpu.cr0 | CR0_WP, 0);
    expect(write(cpu, USER_RO)).toEqual(pf(0b0011));
  });

  it('SMAP: clearing AC after an allowed access takes effect at once (no cached permission survives)', () => {
    const { cpu } = rightsCpu();
    writeCr4(cpu, cpu.cr4 | CR4_SMAP, 0);
    cpu.flags |= AC;
    for (let k = 0; k < 3; k++) expect(read(cpu, USER_RW)).toEqual(OK);
    cpu.flags &= ~AC;
    expect(read(cpu, USER_RW)).toEqual(pf(0b0001));
  });

  it('SMAP: implicit supervisor-mode accesses at CPL 3 never reach user pages, even with AC = 1', () => {
    const { cpu } = rightsCpu();
    writeCr4(cpu, cpu.cr4 | CR4_SMAP, 0);
    cpu.flags |= AC;
    cpu.cpl = 3;
    expect(attempt(cpu, () => cpu.mmu.readImplicit(USER_RW, 0, 4))).toEqual(pf(0b0001));
    expect(attempt(cpu, () => cpu.mmu.writeImplicit(USER_RW, 0, 4, 0, 0))).toEqual(pf(0b0011));
    // The explicit user-mode access is fine, and the implicit flag did not stick after the fault.
    expect(read(cpu, USER_RW)).toEqual(OK);
    expect(cpu.mmu.user).toBe(true);
    // At CPL < 3 an implicit access follows AC like an explicit one.
    cpu.cpl = 0;
    expect(attempt(cpu, () => cpu.mmu.readImplicit(USER_RW, 0, 1))).toEqual(OK);
  });
});

describe('SDM 4.6.1: implicit supervisor-mode accesses (descriptor tables, IDT, TSS)', () => {
  it('are supervisor-mode accesses at CPL 3: a supervisor page is readable, and a fault has U/S = 0', () => {
    const { cpu } = rightsCpu();
    cpu.cpl = 3;
    expect(read(cpu, SUPER_RO)).toEqual(pf(0b101));
    expect(attempt(cpu, () => cpu.mmu.readImplicit(SUPER_RO, 0, 1))).toEqual(OK);
    expect(attempt(cpu, () => cpu.mmu.readImplicit(0x50_0000, 0, 1))).toEqual(pf(0));
    // The user-mode view is unchanged afterwards.
    expect(read(cpu, SUPER_RO)).toEqual(pf(0b101));
  });
});

describe('TLB entries and privilege (SDM 4.10.2.2: the TLB holds access rights, checked on every access)', () => {
  it('a translation used at CPL 0 does not let CPL 3 read or write the supervisor page', () => {
    const { cpu } = rightsCpu();
    expect(write(cpu, SUPER_RW)).toEqual(OK);
    expect(read(cpu, SUPER_RW)).toEqual(OK1);
    cpu.cpl = 3;
    expect(read(cpu, SUPER_RW)).toEqual(pf(0b101));
    expect(write(cpu, SUPER_RW)).toEqual(pf(0b111));
    cpu.cpl = 0;
    expect(read(cpu, SUPER_RW)).toEqual(OK1);
  });

  it('a supervisor write through a read-only user page (WP = 0) does not open it to CPL 3 writes', () => {
    const { cpu } = rightsCpu();
    expect(write(cpu, USER_RO)).toEqual(OK);
    cpu.cpl = 3;
    expect(write(cpu, USER_RO)).toEqual(pf(0b111));
    expect(read(cpu, USER_RO)).toEqual(OK1);
  });

  it('setting CR0.WP after supervisor writes through a read-only page makes the next one fault', () => {
    const { cpu } = rightsCpu();
    for (let k = 0; k < 3; k++) expect(write(cpu, SUPER_RO)).toEqual(OK);
    writeCr0(cpu, cpu.cr0 | CR0_WP, 0);
    expect(write(cpu, SUPER_RO)).toEqual(pf(0b011));
  });

  it('PTE_URW is the helpers\' user read/write entry', () => {
    expect(PTE_URW).toBe(PTE_P | PTE_RW | PTE_US);
  });
});
