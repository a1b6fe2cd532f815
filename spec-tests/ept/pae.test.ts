/**
 * A 32-bit guest with PAE paging under EPT (SDM vol. 3C, December 2024
 * numbering): 27.3.1.6 (with "enable EPT" the PDPTE fields are checked: a
 * present one with a reserved bit fails the entry, reason 33 with bit 31,
 * qualification 2, 27.8), 27.3.2.4 (VM entry loads PDPTE0-3 from the guest
 * PDPTE fields, not from memory at CR3), 28.3.4 (a VM exit saves them to the
 * fields), and MOV to CR3, which loads them from guest-physical CR3[31:5]
 * through EPT (SDM vol. 3A, 4.4.1; vol. 3C, 29.3.3.2: an EPT violation there
 * has no guest-linear address, qualification bit 7 = 0).
 */
import { describe, expect, it } from 'vitest';
import { ExitReason, EXIT_REASON_VM_ENTRY_FAILURE } from '../../vmcs/exit-reasons.js';
import { Field as F } from '../../vmcs/fields.js';
import type { Cpu } from '../../src/cpu/cpu.js';
import { runInGuest } from '../../src/vmx/testing.js';
import type { Vmcs } from '../../src/vmx/vmcs.js';
import { EPT_RWX, EPT_WB, EptTables, eptGuest, exitOf, le32, VMCALL } from './ept-tables.js';

const CR4_PAE = 0x20;
/** PAE tables: the PDPT at CR3, and two page directories mapping 16 MiB with 2-MiB pages that differ at 12 MiB. */
const PDPT = 0x220000, PD_A = 0x221000, PD_B = 0x222000, PDPT2 = 0x223000, PDPT2_HOST = 0x224000;
const PROBE = 0xc00000, VIA_A = 0xaaaa0000, VIA_B = 0xbbbb0000;
const PDPTE_FIELDS = [F.GUEST_PDPTE0, F.GUEST_PDPTE1, F.GUEST_PDPTE2, F.GUEST_PDPTE3];

/** mov eax, [PROBE]; vmcall (32-bit code). */
const READ_PROBE = [0xa1, ...le32(PROBE), ...VMCALL];
/** mov eax, imm32; mov cr3, eax; vmcall. */
const movCr3 = (cr3: number): number[] => [0xb8, ...le32(cr3), 0x0f, 0x22, 0xd8, ...VMCALL];

function buildTables(cpu: Cpu): void {
  const m = cpu.memory;
  for (const [pd, probe] of [[PD_A, PROBE], [PD_B, 0xe00000]] as const) {
    for (let k = 0; k < 8; k++) m.write32(pd + 8 * k, (k === 6 ? probe : k * 0x200000) | 0x83); // P, RW, PS
  }
  m.write32(PROBE, VIA_A); m.write32(0xe00000, VIA_B);
  m.write32(PDPT, PD_A | 1); // memory: PDPTE0 → PD_A
}

/**
 * A PAE guest: CR4.PAE, CR3 = PDPT (which names PD_A), the PDPTE fields
 * `fields` (default: PDPTE0 → PD_B); with `ept`, through an identity EPT.
 */
function paeGuest(o: { ept?: boolean; fields?: number[][]; setup?: (t: EptTables | null, cpu: Cpu) => void } = {}) {
  const configure = (v: Vmcs, cpu: Cpu, t: EptTables | null): void => {
    buildTables(cpu);
    v.set(F.GUEST_CR4, v.lo(F.GUEST_CR4) | CR4_PAE);
    v.set(F.GUEST_CR3, PDPT);
    (o.fields ?? [[PD_B | 1, 0]]).forEach(([lo, hi], k) => v.set(PDPTE_FIELDS[k]!, lo!, hi));
    o.setup?.(t, cpu);
  };
  return o.ept === false ? (v: Vmcs, cpu: Cpu) => configure(v, cpu, null) : eptGuest((t, v, cpu) => configure(v, cpu, t));
}

describe('27.3.2.4: VM entry with EPT and PAE paging loads the PDPTEs from the guest PDPTE fields', () => {
  it('27.3.2.4: memory at CR3 says PD_A, the PDPTE0 field says PD_B: the guest translates through PD_B', () => {
    const r = runInGuest(READ_PROBE, paeGuest(), { mode: 32 });
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[0]! >>> 0).toBe(VIA_B);
  });

  it('27.3.2.4: without EPT the same entry loads them from memory at CR3: PD_A', () => {
    const r = runInGuest(READ_PROBE, paeGuest({ ept: false }), { mode: 32 });
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[0]! >>> 0).toBe(VIA_A);
  });
});

describe('27.3.1.6: the PDPTE fields are checked (VM-entry failure, 27.8)', () => {
  const cases: [string, number, number][] = [
    ['bit 1 (bits 2:1 reserved)', PD_B | 1 | 2, 0],
    ['bit 5 (bits 8:5 reserved)', PD_B | 1 | 0x20, 0],
    ['bit 8', PD_B | 1 | 0x100, 0],
    ['bit 39 (bits 63:MAXPHYADDR reserved)', PD_B | 1, 0x80],
    ['bit 63', PD_B | 1, 0x80000000 | 0],
  ];
  for (const [what, lo, hi] of cases) {
    it(`27.3.1.6: a present PDPTE1 field with ${what}: exit reason 80000021H, qualification 2`, () => {
      const r = runInGuest(READ_PROBE, paeGuest({ fields: [[PD_B | 1, 0], [lo, hi]] }), { mode: 32 });
      expect(r.entered).toBe(true);
      expect(exitOf(r).reason).toBe((EXIT_REASON_VM_ENTRY_FAILURE | ExitReason.VM_ENTRY_FAILURE_INVALID_GUEST_STATE) >>> 0);
      expect(exitOf(r).qualification).toBe(2);
    });
  }

  it('27.3.1.6: reserved bits in a PDPTE field whose P = 0 are not checked', () => {
    const r = runInGuest(READ_PROBE, paeGuest({ fields: [[PD_B | 1, 0], [0x1e6, 0xffffffff | 0]] }), { mode: 32 });
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[0]! >>> 0).toBe(VIA_B);
  });
});

describe('28.3.4 and MOV to CR3: the PDPTEs at a VM exit, and loaded through EPT', () => {
  it('28.3.4: a VM exit saves the PDPTEs the guest uses into the fields', () => {
    const fields = [[PD_B | 1, 0], [PD_A | 1, 0], [0, 0], [PD_A | 1, 0]];
    const r = runInGuest(READ_PROBE, paeGuest({ fields }), { mode: 32 });
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    PDPTE_FIELDS.forEach((f, k) => expect([r.vmcs.lo(f), r.vmcs.hi(f)]).toEqual(fields[k]));
  });

  it('29.3 / 28.3.4: MOV to CR3 reads the new PDPTEs through EPT (guest-physical PDPT2 → host page PDPT2_HOST); the exit saves them', () => {
    const r = runInGuest(movCr3(PDPT2), paeGuest({
      setup: (t, cpu) => {
        const m = cpu.memory;
        m.write32(PDPT2, PD_A | 1); // what the guest-physical address would hold without EPT
        [PD_B | 1, PD_A | 1, 0, PD_B | 1].forEach((e, k) => m.write32(PDPT2_HOST + 8 * k, e));
        t!.map(PDPT2, PDPT2_HOST, EPT_RWX | EPT_WB);
      },
    }), { mode: 32 });
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(PDPTE_FIELDS.map((f) => r.vmcs.lo(f) >>> 0)).toEqual([PD_B | 1, PD_A | 1, 0, PD_B | 1]);
    expect(r.vmcs.lo(F.GUEST_CR3)).toBe(PDPT2);
  });

  it('29.3.3.2, table 28-7: MOV to CR3 whose PDPT page is EPT not-present: an EPT violation, qualification 1 (a read, bit 7 clear), GPA = CR3[31:5]', () => {
    const cr3 = PDPT2 + 0x40;
    const r = runInGuest(movCr3(cr3), paeGuest({ setup: (t) => t!.map(PDPT2, PDPT2, 0) }), { mode: 32 });
    const e = exitOf(r);
    expect(e.reason).toBe(ExitReason.EPT_VIOLATION);
    expect(e.qualification).toBe(1);
    expect(e.gpa.toString(16)).toBe(cr3.toString(16));
    expect(e.rip).toBe(0x1005); // the MOV to CR3: it did not complete
    expect(r.vmcs.lo(F.GUEST_CR3)).toBe(PDPT);
    expect(r.vmcs.lo(F.GUEST_PDPTE0)).toBe(PD_B | 1);
  });

  it('SDM vol. 2 MOV CR, vol. 3A 4.4.1: MOV to CR3 with a reserved bit in a present PDPTE read through EPT: #GP(0) in the guest', () => {
    const r = runInGuest(movCr3(PDPT2), paeGuest({
      setup: (_t, cpu) => { cpu.memory.write32(PDPT2, PD_A | 1 | 4); },
    }), { mode: 32 });
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[0]! & 0xff).toBe(13); // the harness's #GP handler: MOV AL, 13; VMCALL
    expect(r.vmcs.lo(F.GUEST_PDPTE0)).toBe(PD_B | 1);
  });
});
