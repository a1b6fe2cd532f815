/**
 * VM entries after one that passed (SDM vol. 3C, 27.2, 27.3.1; numbering of the
 * SDM of December 2024). The model makes the checks of a VMCS again only when a
 * field they read has changed since it last passed them; these tests hold the
 * checks whose answer depends on something else: the virtual-APIC page in
 * memory, the processor's IA32_EFER.LMA, and guest RIP, which the model leaves
 * out of that comparison because it changes at nearly every entry. (fuzz/vmx.test.ts holds the same for one violation of every kind.)
 */
import { describe, expect, it } from 'vitest';
import { ExitReason, EXIT_REASON_VM_ENTRY_FAILURE } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { VmInstructionError } from '../../vmcs/instruction-errors.js';
import { EFER_LMA } from '../../src/cpu/regs.js';
import { vmEntry } from '../../src/vmx/entry.js';
import { SCRATCH_PAGES, runInGuest } from '../../src/vmx/testing.js';

const VMCALL = [0x0f, 0x01, 0xc1];
const PROC = Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
const VAPIC = SCRATCH_PAGES + 0x4000;

describe('a second VM entry makes the checks whose inputs lie outside the VMCS fields', () => {
  it('27.2.1.1: TPR threshold against VTPR reads the virtual-APIC page each time: VTPR lowered in memory alone fails the next entry', () => {
    const r = runInGuest(VMCALL, (v, cpu) => {
      v.set(PROC, v.lo(PROC) | (1 << 21)); // use TPR shadow
      v.set(Field.VIRTUAL_APIC_ADDRESS, VAPIC);
      v.set(Field.TPR_THRESHOLD, 6);
      cpu.memory.write32(VAPIC + 0x80, 0x60);
    });
    expect(r.reason).toBe(ExitReason.VMCALL);
    r.cpu.memory.write8(VAPIC + 0x80, 0x50);
    vmEntry(r.vmx, r.cpu, false);
    expect(r.vmx.lastEntryFailure?.check).toBe('TPR threshold above VTPR');
    expect(r.vmcs.lo(Field.VM_INSTRUCTION_ERROR)).toBe(VmInstructionError.ENTRY_INVALID_CONTROL_FIELDS);
  });

  it('27.2.4: the address-space checks read IA32_EFER.LMA of the processor: a host outside IA-32e mode fails the next entry', () => {
    const r = runInGuest(VMCALL);
    expect(r.reason).toBe(ExitReason.VMCALL);
    r.cpu.efer &= ~EFER_LMA;
    vmEntry(r.vmx, r.cpu, false);
    expect(r.vmx.lastEntryFailure?.check).toBe('IA-32e mode guest outside IA-32e mode');
    expect(r.vmcs.lo(Field.VM_INSTRUCTION_ERROR)).toBe(VmInstructionError.ENTRY_INVALID_HOST_STATE);
  });

  it('27.3.1.4: guest RIP is checked at every entry: a non-canonical RIP after a passing entry fails with exit reason 80000021H', () => {
    const r = runInGuest(VMCALL);
    expect(r.reason).toBe(ExitReason.VMCALL);
    r.vmcs.set(Field.GUEST_RIP, 0x1000, 0x12340000);
    vmEntry(r.vmx, r.cpu, false);
    expect(r.vmx.lastEntryFailure?.check).toBe('guest RIP bits 63:48');
    expect(r.vmcs.lo(Field.EXIT_REASON) >>> 0)
      .toBe((ExitReason.VM_ENTRY_FAILURE_INVALID_GUEST_STATE | EXIT_REASON_VM_ENTRY_FAILURE) >>> 0);
  });

});
