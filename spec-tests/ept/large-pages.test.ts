/**
 * EPT large pages and EPT misconfigurations (SDM vol. 3C, December 2024
 * numbering): 29.3.2 (tables 29-1 to 29-6: an EPT PDPTE with bit 7 maps a
 * 1-GByte page, bits 29:12 reserved; an EPT PDE with bit 7 maps a 2-MByte
 * page, bits 20:12 reserved; bits 7:3 of a PML4E and bits 6:3 of an entry
 * that references a table are reserved; bits 51:MAXPHYADDR are reserved),
 * 29.3.3.1 (an EPT misconfiguration: bits 2:0 = 010B or 110B; a present entry
 * with a reserved bit set; a reserved memory type 2, 3 or 7 in the entry that
 * maps the page), 29.3.3.3 (prioritization: the walk stops at the first
 * not-present or misconfigured entry; permissions are evaluated only once the
 * walk has produced the physical address). MAXPHYADDR is 39 here (paging.ts).
 *
 * The guest reaches guest-physical addresses above 1 GiB through linear
 * 700000H (its guest PTE is rewritten), so the EPT PDPTE and PDE on their walk
 * are their own, not those that map the guest's code.
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import type { Cpu } from '../../src/cpu/cpu.js';
import { GUEST_PAGE_TABLES, guestPteAddress, runInGuest, type GuestRun } from '../../src/vmx/testing.js';
import {
  EPT_LARGE, EPT_R, EPT_RWX, EPT_W, EPT_WB, EPT_X, EptTables, eptGuest, exitOf, loadRax, storeRax, VMCALL,
} from './ept-tables.js';

const LINEAR = 0x700000;
const GIB = 0x40000000, MIB2 = 0x200000;
/** A 1-GiB EPT page at guest-physical 1 GiB (host-physical 0); a 2-MiB one at 1 GiB + 10 MiB (host-physical C00000H). */
const G1 = GIB + 0xabc000, G2 = GIB + 5 * MIB2 + 0x1ab000, H2 = 0xc00000;
/** A 4-KiB EPT page at 1 GiB + 2 MiB, host-physical 70000H. */
const G4 = GIB + MIB2, H4 = 0x70000;

/** Guest linear pages LINEAR + k·4 KiB map guest-physical `gpa` + k·4 KiB; `setup` then builds the EPT. */
function through(gpa: number, setup: (t: EptTables, cpu: Cpu) => void, pages = 1) {
  return eptGuest((t, _v, cpu) => {
    for (let k = 0; k < pages; k++) cpu.memory.write32(guestPteAddress(LINEAR + 0x1000 * k), (gpa + 0x1000 * k) | 7);
    setup(t, cpu);
  });
}
const read = (offset = 0): number[] => [...loadRax(LINEAR + offset), ...VMCALL];

/** Sets `lo` bits (and `hi` bits 63:32) in the EPT entry at `level` on the walk for `gpa`. */
function orEntry(t: EptTables, cpu: Cpu, gpa: number, level: number, lo: number, hi = 0): void {
  const at = t.entry(gpa, level), m = cpu.memory;
  m.write32(at, m.read32(at) | lo);
  m.write32(at + 4, m.read32(at + 4) | hi);
}

function expectMisconfiguration(r: GuestRun, gpa: number): void {
  const e = exitOf(r);
  expect(e.reason).toBe(ExitReason.EPT_MISCONFIGURATION);
  expect(e.qualification).toBe(0);
  expect(e.gpa.toString(16)).toBe(gpa.toString(16));
}
function expectRead(r: GuestRun, value: number): void {
  expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
  expect(Number(r.cpu.reg64(0) & 0xffffffffn).toString(16)).toBe(value.toString(16));
}

describe('29.3.2: 1-GByte and 2-MByte EPT pages (tables 29-2, 29-4)', () => {
  it('29.3.2: an EPT PDPTE with bit 7 maps 1 GiB: the host-physical address is its bits 51:30 plus guest-physical bits 29:0', () => {
    const r = runInGuest(read(0x18), through(G1, (t, cpu) => {
      t.map(G1, 0, EPT_RWX | EPT_WB, 3);
      cpu.memory.write32(G1 - GIB + 0x18, 0x1a1a1a1a);
    }));
    expectRead(r, 0x1a1a1a1a);
    // Two linear pages → two guest-physical pages of the same EPT page.
    const r2 = runInGuest([...read(0x1ff8)], through(G1, (t, cpu) => {
      t.map(G1, 0, EPT_RWX | EPT_WB, 3);
      cpu.memory.write32(G1 - GIB + 0x1ff8, 0x2b2b2b2b);
    }, 2));
    expectRead(r2, 0x2b2b2b2b);
  });

  it('29.3.2: an EPT PDE with bit 7 maps 2 MiB: bits 51:21 plus guest-physical bits 20:0; a store lands there', () => {
    const r = runInGuest([0xb8, 0x77, 0, 0, 0, ...storeRax(LINEAR + 0x1010), ...read(0x18)], through(G2, (t, cpu) => {
      t.map(G2 & ~(MIB2 - 1), H2, EPT_RWX | EPT_WB, 2);
      cpu.memory.write32(H2 + (G2 & (MIB2 - 1)) + 0x18, 0x3c3c3c3c);
    }, 2));
    expectRead(r, 0x3c3c3c3c);
    expect(r.cpu.memory.read32(H2 + (G2 & (MIB2 - 1)) + 0x1010)).toBe(0x77);
  });

  it('29.3.2: rights of a large page AND with the levels above: a 2-MiB page R-X under a PDPTE RWX refuses a store (qualification 1AAH)', () => {
    const r = runInGuest([...storeRax(LINEAR), ...VMCALL], through(G2, (t) => t.map(G2 & ~(MIB2 - 1), H2, EPT_R | EPT_X | EPT_WB, 2)));
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    expect(exitOf(r).qualification).toBe(0x1aa);
    expect(exitOf(r).gpa).toBe(G2);
  });
});

describe('29.3.3.1: EPT misconfigurations (exit reason 49, qualification 0, guest-physical address 28.2.1)', () => {
  it('29.3.3.1: reserved bits 29:12 of a 1-GiB page (bits 12, 20, 29)', () => {
    for (const bit of [12, 20, 29]) {
      expectMisconfiguration(runInGuest(read(), through(G1, (t) => t.map(G1, (1 << bit) >>> 0, EPT_RWX | EPT_WB, 3))), G1);
    }
  });

  it('29.3.3.1: reserved bits 20:12 of a 2-MiB page (bits 12, 16, 20)', () => {
    for (const bit of [12, 16, 20]) {
      expectMisconfiguration(runInGuest(read(), through(G2, (t) => t.map(G2 & ~(MIB2 - 1), H2 | (1 << bit), EPT_RWX | EPT_WB, 2))), G2);
    }
  });

  it('29.3.3.1 (table 29-1): bit 7 of an EPT PML4E is reserved: the guest\'s first access (its PML4E at GUEST_CR3) is misconfigured', () => {
    expectMisconfiguration(runInGuest(VMCALL, eptGuest((t, _v, cpu) => orEntry(t, cpu, 0, 4, EPT_LARGE))), GUEST_PAGE_TABLES);
  });

  it('29.3.3.1: reserved bits 7:3 of an EPT PML4E, and 6:3 of a PDPTE or PDE that references a table', () => {
    for (const bit of [3, 4, 5, 6]) {
      expectMisconfiguration(runInGuest(VMCALL, eptGuest((t, _v, cpu) => orEntry(t, cpu, 0, 4, 1 << bit))), GUEST_PAGE_TABLES);
      for (const level of [3, 2]) {
        expectMisconfiguration(runInGuest(read(), through(G4, (t, cpu) => {
          t.map(G4, H4, EPT_RWX | EPT_WB);
          orEntry(t, cpu, G4, level, 1 << bit);
        })), G4);
      }
    }
  });

  it('29.3.3.1: memory type 2, 3 or 7 in the entry that maps the page (PTE, 2-MiB PDE, 1-GiB PDPTE); 0, 1, 4, 5, 6 are fine', () => {
    for (const type of [0, 1, 2, 3, 4, 5, 6, 7]) {
      const bad = type === 2 || type === 3 || type === 7;
      const cases: [number, (t: EptTables) => void][] = [
        [G4, (t) => t.map(G4, H4, EPT_RWX | (type << 3))],
        [G2, (t) => t.map(G2 & ~(MIB2 - 1), H2, EPT_RWX | (type << 3), 2)],
        [G1, (t) => t.map(G1, 0, EPT_RWX | (type << 3), 3)],
      ];
      for (const [gpa, build] of cases) {
        const r = runInGuest(read(), through(gpa, build));
        if (bad) expectMisconfiguration(r, gpa);
        else expect(exitOf(r).reason, `type ${type} at ${gpa.toString(16)}`).toBe(ExitReason.VMCALL);
      }
    }
  });

  it('29.3.3.1: an address bit at or above MAXPHYADDR (39; bits 39 and 51) in any present entry; bits 63:52 are ignored', () => {
    for (const level of [3, 2, 1]) {
      for (const hiBit of [7, 19]) {
        expectMisconfiguration(runInGuest(read(), through(G4, (t, cpu) => {
          t.map(G4, H4, EPT_RWX | EPT_WB);
          orEntry(t, cpu, G4, level, 0, 1 << hiBit);
        })), G4);
      }
      const ignored = runInGuest(read(), through(G4, (t, cpu) => {
        t.map(G4, H4, EPT_RWX | EPT_WB);
        orEntry(t, cpu, G4, level, 0, 0xfff00000 | 0);
      }));
      expect(exitOf(ignored).reason, `bits 63:52 at level ${level}`).toBe(ExitReason.VMCALL);
    }
    for (const [gpa, build] of [[G2, (t: EptTables) => t.map(G2 & ~(MIB2 - 1), H2, EPT_RWX | EPT_WB, 2)],
      [G1, (t: EptTables) => t.map(G1, 0, EPT_RWX | EPT_WB, 3)]] as const) {
      expectMisconfiguration(runInGuest(read(), through(gpa, (t, cpu) => {
        build(t);
        orEntry(t, cpu, gpa, gpa === G1 ? 3 : 2, 0, 1 << 7);
      })), gpa);
    }
  });

  it('29.3.3.1: bits 2:0 = 010B (write-only) at a PDE that references a table, 110B (write/execute) at a PTE', () => {
    expectMisconfiguration(runInGuest(read(), through(G4, (t, cpu) => {
      t.map(G4, H4, EPT_RWX | EPT_WB);
      const at = t.entry(G4, 2);
      cpu.memory.write32(at, (cpu.memory.read32(at) & ~7) | EPT_W);
    })), G4);
    expectMisconfiguration(runInGuest(read(), through(G4, (t) => t.map(G4, H4, EPT_W | EPT_X | EPT_WB))), G4);
  });

  it('29.3.2 (table 29-6): bit 7 of a PTE and bit 6 (ignore PAT) are not reserved; nor are bits 11:8 of any entry', () => {
    const r = runInGuest(read(), through(G4, (t, cpu) => {
      t.map(G4, H4, EPT_RWX | EPT_WB | 0xfc0);
      for (const level of [4, 3, 2]) orEntry(t, cpu, G4, level, 0xe00);
    }));
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
  });

  it('29.3.3.1: a guest paging-structure entry in a misconfigured page: the guest-physical address is the entry\'s', () => {
    const far = 0x300000, pte = guestPteAddress(far);
    const r = runInGuest([...loadRax(far), ...VMCALL], eptGuest((t) => t.map(pte & ~0xfff, pte & ~0xfff, EPT_RWX | (7 << 3))));
    expectMisconfiguration(r, pte);
  });
});

describe('29.3.3.3: the walk stops at the first not-present or misconfigured entry; permissions come after the walk', () => {
  it('29.3.3.3: a misconfigured PDE (reserved bit 3) above a not-present PTE: a misconfiguration', () => {
    expectMisconfiguration(runInGuest(read(), through(G4, (t, cpu) => {
      t.map(G4, H4, 0);
      orEntry(t, cpu, G4, 2, 1 << 3);
    })), G4);
  });

  it('29.3.3.3: a not-present PDE (bits 2:0 = 0) above a misconfigured PTE: an EPT violation, bits 3-5 = 0 (qualification 181H)', () => {
    const r = runInGuest(read(), through(G4, (t, cpu) => {
      t.map(G4, H4, EPT_W | EPT_WB); // write-only: misconfigured, were it reached
      const at = t.entry(G4, 2);
      cpu.memory.write32(at, cpu.memory.read32(at) & ~7);
    }));
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    expect(exitOf(r).qualification).toBe(0x181);
    expect(exitOf(r).gpa).toBe(G4);
  });

  it('29.3.2: a not-present entry\'s other bits are ignored: memory type 7 and bit 39 in a PTE with bits 2:0 = 0 make a violation', () => {
    const r = runInGuest(read(), through(G4, (t, cpu) => {
      t.map(G4, H4, 7 << 3);
      orEntry(t, cpu, G4, 1, 0, 1 << 7);
    }));
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    expect(exitOf(r).qualification).toBe(0x181);
  });

  it('29.3.3.3: a store through a PDPTE without W to a leaf with memory type 7: the misconfiguration, not the violation', () => {
    const r = runInGuest([...storeRax(LINEAR), ...VMCALL], through(G4, (t, cpu) => {
      t.map(G4, H4, EPT_RWX | (7 << 3));
      const at = t.entry(G4, 3);
      cpu.memory.write32(at, (cpu.memory.read32(at) & ~7) | EPT_R | EPT_X);
    }));
    expectMisconfiguration(r, G4);
  });

  it('29.3.3.3: a violation for the permissions needs the whole walk: a read-only PDPTE over a 1-GiB page refuses the store (qualification 18AH)', () => {
    const r = runInGuest([...storeRax(LINEAR), ...VMCALL], through(G1, (t) => t.map(G1, 0, EPT_R | EPT_WB, 3)));
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    expect(exitOf(r).qualification).toBe(0x18a);
  });
});
