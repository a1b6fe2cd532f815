/**
 * EPT access rights (SDM vol. 3C, December 2024 numbering): 29.3.2 (a
 * guest-physical address is readable, writable or executable only if bit 0, 1
 * or 2 is 1 in every EPT paging-structure entry used to translate it),
 * 29.3.3.2 (EPT violations: the access the rights do not allow; reads of guest
 * paging structures are data reads, the processor's updates of their accessed
 * and dirty flags are data writes), and the exit qualification of table 28-7
 * (28.2.1): bits 0-2 the access, bits 3-5 the AND of bits 0-2 of the entries,
 * bit 7 "guest-linear address valid", bit 8 "access to the translation of a
 * linear address" (clear for a paging-structure access).
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import type { Cpu } from '../../src/cpu/cpu.js';
import { GUEST_CODE, GUEST_PAGE_TABLES, guestPteAddress, runInGuest, type GuestRun } from '../../src/vmx/testing.js';
import {
  EPT_R, EPT_RWX, EPT_W, EPT_WB, EPT_X, EptTables, eptGuest, exitOf, loadRax, movRax, storeRax, VMCALL,
} from './ept-tables.js';

/** Qualification bits (table 28-7). */
const Q_READ = 1, Q_WRITE = 2, Q_FETCH = 4, Q_LINEAR = 0x80, Q_TRANSLATION = 0x100;
/** Guest paging-structure entry bits: accessed, dirty (SDM vol. 3A, 4.8). */
const PTE_A = 0x20, PTE_D = 0x40;
/** The valid EPT rights: read-only, read/write, execute-only (IA32_VMX_EPT_VPID_CAP[0]), read/execute, all. */
const RIGHTS = [EPT_R, EPT_R | EPT_W, EPT_X, EPT_R | EPT_X, EPT_RWX] as const;
const name = (r: number): string => (r & 1 ? 'R' : '-') + (r & 2 ? 'W' : '-') + (r & 4 ? 'X' : '-');

type Access = 'read' | 'write' | 'fetch';
const ACCESSES: readonly Access[] = ['read', 'write', 'fetch'];
const ACCESS_BIT: Record<Access, number> = { read: Q_READ, write: Q_WRITE, fetch: Q_FETCH };
const MARKER = 0x600d, STORED = 5;

/**
 * The guest code for `access` to linear page `page`: a load of page+8, a store
 * of 5 to page+8, or a jump to the page, where MOV EAX, 600DH; VMCALL waits.
 */
function guestFor(access: Access, page: number): number[] {
  switch (access) {
    case 'read': return [...loadRax(page + 8), ...VMCALL];
    case 'write': return [0xb8, STORED, 0, 0, 0, ...storeRax(page + 8), ...VMCALL];
    case 'fetch': return [...movRax(page), 0xff, 0xe0, ...VMCALL]; // mov rax, page; jmp rax
  }
}
/** Where the guest's access happens: the instruction's RIP (the fetch: the page itself) and the address. */
const accessRip = (access: Access, page: number): number => (access === 'read' ? GUEST_CODE : access === 'write' ? GUEST_CODE + 5 : page);
const accessAddress = (access: Access, page: number): number => (access === 'fetch' ? page : page + 8);

/** Host page `hpa` holds the fetch target (MOV EAX, 600DH; VMCALL) and 0 at offset 8. */
function fillPage(cpu: Cpu, hpa: number): void {
  cpu.memory.load(hpa, Uint8Array.of(0xb8, 0x0d, 0x60, 0, 0, ...VMCALL));
  cpu.memory.write32(hpa + 8, 0); cpu.memory.write32(hpa + 12, 0);
}

/** The access completed: the guest reached its VMCALL with the value read, stored or fetched. */
function expectCompleted(r: GuestRun, access: Access, hpa: number): void {
  const e = exitOf(r);
  expect(e.reason, 'VMCALL after the access').toBe(ExitReason.VMCALL);
  if (access === 'read') expect(r.cpu.reg64(0)).toBe(0n);
  if (access === 'write') expect(r.cpu.memory.read32(hpa + 8)).toBe(STORED);
  if (access === 'fetch') expect(r.cpu.reg64(0)).toBe(BigInt(MARKER));
}

/** An EPT violation of `access` at guest-physical `gpa` for linear `linear`, with rights `rights` (table 28-7). */
function expectViolation(r: GuestRun, q: number, gpa: number, linear: number, rip: number): void {
  const e = exitOf(r);
  expect(e.reason).toBe(ExitReason.EPT_VIOLATION);
  expect(e.qualification.toString(16)).toBe(q.toString(16));
  expect(e.gpa.toString(16)).toBe(gpa.toString(16));
  expect(e.linear.toString(16)).toBe(linear.toString(16));
  expect(e.rip.toString(16)).toBe(rip.toString(16));
}

/** Sets bits 2:0 of the EPT entry at `level` on the walk for `gpa`. */
function setRights(t: EptTables, cpu: Cpu, gpa: number, level: number, rights: number): void {
  const at = t.entry(gpa, level);
  cpu.memory.write32(at, (cpu.memory.read32(at) & ~7) | rights);
}

/** Sets A in every entry of the harness's 64-bit guest page tables, and D in every PTE (SDM vol. 3A, 4.8). */
function presetAccessedDirty(cpu: Cpu): void {
  const m = cpu.memory, or = (at: number, bits: number): void => m.write32(at, m.read32(at) | bits);
  or(GUEST_PAGE_TABLES, PTE_A); or(GUEST_PAGE_TABLES + 0x1000, PTE_A);
  for (let k = 0; k < 8; k++) or(GUEST_PAGE_TABLES + 0x2000 + 8 * k, PTE_A);
  for (let p = 0; p < 4096; p++) or(GUEST_PAGE_TABLES + 0x3000 + 8 * p, PTE_A | PTE_D);
}

/** A page in the first 2 MiB for the leaf tests (its EPT PTE is the leaf). */
const PAGE = 0x60000;

describe('29.3.2 / 29.3.3.2: rights of the EPT PTE against reads, writes and fetches (qualification 28.2.1, table 28-7)', () => {
  for (const access of ACCESSES) {
    it(`29.3.3.2: a ${access} through each valid leaf R/W/X combination; bits 3-5 = the leaf's rights, bits 7 and 8 set`, () => {
      for (const rights of RIGHTS) {
        const r = runInGuest(guestFor(access, PAGE), eptGuest((t, _v, cpu) => {
          fillPage(cpu, PAGE);
          t.map(PAGE, PAGE, rights | EPT_WB);
        }));
        const needed = ACCESS_BIT[access] === Q_READ ? EPT_R : ACCESS_BIT[access] === Q_WRITE ? EPT_W : EPT_X;
        if ((rights & needed) !== 0) expectCompleted(r, access, PAGE);
        else {
          expectViolation(r, ACCESS_BIT[access] | (rights << 3) | Q_LINEAR | Q_TRANSLATION,
            accessAddress(access, PAGE), accessAddress(access, PAGE), accessRip(access, PAGE));
        }
      }
    });
  }

  it('29.3.2 (IA32_VMX_EPT_VPID_CAP[0]): an execute-only page (X without R) runs code, and a read of it is a violation (qualification 1A1H)', () => {
    const fetch = runInGuest(guestFor('fetch', PAGE), eptGuest((t, _v, cpu) => { fillPage(cpu, PAGE); t.map(PAGE, PAGE, EPT_X | EPT_WB); }));
    expectCompleted(fetch, 'fetch', PAGE);
    const read = runInGuest(guestFor('read', PAGE), eptGuest((t, _v, cpu) => { fillPage(cpu, PAGE); t.map(PAGE, PAGE, EPT_X | EPT_WB); }));
    expectViolation(read, 0x1a1, PAGE + 8, PAGE + 8, GUEST_CODE);
  });

  it('29.3.3.2: a violation leaves the access undone (fault-like): the page keeps its value, RIP is at the instruction', () => {
    const r = runInGuest(guestFor('write', PAGE), eptGuest((t, _v, cpu) => { fillPage(cpu, PAGE); t.map(PAGE, PAGE, EPT_R | EPT_WB); }));
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    expect(r.cpu.memory.read32(PAGE + 8)).toBe(0);
    expect(exitOf(r).rip).toBe(GUEST_CODE + 5);
  });
});

/**
 * Upper levels: guest-physical 40200000H (1 GiB + 2 MiB) has an EPT PDPTE and
 * PDE of its own; the guest reaches it at linear 700000H, whose guest PTE
 * names it. The EPT PTE maps it to host-physical 70000H.
 */
const LINEAR = 0x700000, GPA = 0x40200000, HPA = 0x70000;

function upperLevels(pdpte: number, pde: number, pte: number) {
  return eptGuest((t, _v, cpu) => {
    fillPage(cpu, HPA);
    t.map(GPA, HPA, pte | EPT_WB);
    setRights(t, cpu, GPA, 3, pdpte);
    setRights(t, cpu, GPA, 2, pde);
    cpu.memory.write32(guestPteAddress(LINEAR), GPA | 7);
  });
}

describe('29.3.2: rights AND across the levels (PDPTE, PDE, PTE); qualification bits 3-5 are the AND (table 28-7)', () => {
  for (const access of ACCESSES) {
    it(`29.3.2: a ${access} through every valid PDPTE × PDE rights pair (PTE RWX): allowed iff both allow it; bits 3-5 = PDPTE AND PDE`, () => {
      const needed = access === 'read' ? EPT_R : access === 'write' ? EPT_W : EPT_X;
      for (const a of RIGHTS) {
        for (const b of RIGHTS) {
          const r = runInGuest(guestFor(access, LINEAR), upperLevels(a, b, EPT_RWX));
          const and = a & b;
          if ((and & needed) !== 0) expectCompleted(r, access, HPA);
          else {
            const q = ACCESS_BIT[access] | (and << 3) | Q_LINEAR | Q_TRANSLATION;
            expect(exitOf(r).qualification, `PDPTE ${name(a)}, PDE ${name(b)}`).toBe(q);
            expectViolation(r, q, accessAddress(access, GPA), accessAddress(access, LINEAR), accessRip(access, LINEAR));
          }
        }
      }
    });
  }

  it('29.3.2: the leaf alone cannot grant what an upper level withholds: PDPTE R-X, PDE RW-, PTE RWX → only reads', () => {
    expectCompleted(runInGuest(guestFor('read', LINEAR), upperLevels(EPT_R | EPT_X, EPT_R | EPT_W, EPT_RWX)), 'read', HPA);
    const w = runInGuest(guestFor('write', LINEAR), upperLevels(EPT_R | EPT_X, EPT_R | EPT_W, EPT_RWX));
    expect(exitOf(w).qualification).toBe(Q_WRITE | (EPT_R << 3) | Q_LINEAR | Q_TRANSLATION);
    const f = runInGuest(guestFor('fetch', LINEAR), upperLevels(EPT_R | EPT_X, EPT_R | EPT_W, EPT_RWX));
    expect(exitOf(f).qualification).toBe(Q_FETCH | (EPT_R << 3) | Q_LINEAR | Q_TRANSLATION);
  });

  it('29.3.2: the EPT PML4E takes part too: without its W every store is a violation, bits 3-5 = R-X (guest A/D flags preset)', () => {
    const r = runInGuest(guestFor('write', PAGE), eptGuest((t, _v, cpu) => {
      fillPage(cpu, PAGE);
      presetAccessedDirty(cpu);
      setRights(t, cpu, 0, 4, EPT_R | EPT_X);
    }));
    expectViolation(r, Q_WRITE | ((EPT_R | EPT_X) << 3) | Q_LINEAR | Q_TRANSLATION, PAGE + 8, PAGE + 8, GUEST_CODE + 5);
  });

  it('29.3.2: without X in the EPT PML4E the guest\'s first instruction fetch is a violation (qualification 19CH at GUEST_RIP)', () => {
    const r = runInGuest(VMCALL, eptGuest((t, _v, cpu) => setRights(t, cpu, 0, 4, EPT_R | EPT_W)));
    expectViolation(r, Q_FETCH | ((EPT_R | EPT_W) << 3) | Q_LINEAR | Q_TRANSLATION, GUEST_CODE, GUEST_CODE, GUEST_CODE);
  });
});

/**
 * Guest page tables in an EPT read-only page: linear 300000H's guest PTE lies
 * in the guest page table at 204000H, which maps only linear 2-4 MiB (the
 * guest's code and stack are mapped by the one at 203000H).
 */
const FAR = 0x300000, FAR_PTE = guestPteAddress(FAR), FAR_PT_PAGE = FAR_PTE & ~0xfff;

describe('29.3.3.2: accessed and dirty flag updates of guest paging structures are writes (EPTP bit 6 = 0)', () => {
  const readOnlyTables = (pteBits: number) => eptGuest((t, _v, cpu) => {
    cpu.memory.write32(FAR_PTE, FAR | 3 | pteBits);
    t.map(FAR_PT_PAGE, FAR_PT_PAGE, EPT_R | EPT_X | EPT_WB);
  });

  it('29.3.3.2: reading through a guest PTE with A = 0 in an EPT read-only page: a write violation at the PTE (qualification AAH: bit 1, R-X, bit 7, not bit 8)', () => {
    const r = runInGuest([...loadRax(FAR), ...VMCALL], readOnlyTables(0));
    expectViolation(r, Q_WRITE | ((EPT_R | EPT_X) << 3) | Q_LINEAR, FAR_PTE, FAR, GUEST_CODE);
    expect(r.cpu.memory.read32(FAR_PTE) & PTE_A).toBe(0);
  });

  it('29.3.3.2: writing through a guest PTE with A = 1, D = 0 in an EPT read-only page: the dirty-flag update is the violation (AAH)', () => {
    const r = runInGuest([0xb8, STORED, 0, 0, 0, ...storeRax(FAR), ...VMCALL], readOnlyTables(PTE_A));
    expectViolation(r, Q_WRITE | ((EPT_R | EPT_X) << 3) | Q_LINEAR, FAR_PTE, FAR, GUEST_CODE + 5);
    expect(r.cpu.memory.read32(FAR)).toBe(0);
  });

  it('29.3.3.2: reading the guest PTE itself is a data read: with A and D already set, reads and writes through the read-only page complete', () => {
    const read = runInGuest([...loadRax(FAR), ...VMCALL], readOnlyTables(PTE_A | PTE_D));
    expect(exitOf(read).reason).toBe(ExitReason.VMCALL);
    const write = runInGuest([0xb8, STORED, 0, 0, 0, ...storeRax(FAR), ...VMCALL], readOnlyTables(PTE_A | PTE_D));
    expect(exitOf(write).reason).toBe(ExitReason.VMCALL);
    expect(write.cpu.memory.read32(FAR)).toBe(STORED);
  });

  it('29.3.3.2: a guest paging-structure entry in an EPT page without R: a read violation at the entry (qualification 81H plus its rights)', () => {
    const r = runInGuest([...loadRax(FAR), ...VMCALL], eptGuest((t) => t.map(FAR_PT_PAGE, FAR_PT_PAGE, EPT_X | EPT_WB)));
    expectViolation(r, Q_READ | (EPT_X << 3) | Q_LINEAR, FAR_PTE, FAR, GUEST_CODE);
  });
});
