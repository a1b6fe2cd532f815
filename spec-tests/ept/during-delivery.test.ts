/**
 * EPT violations during event delivery (SDM vol. 3C, December 2024 numbering,
 * 28.2.4 "Information for VM Exits During Event Delivery"): an EPT violation
 * while the processor reads the guest IDT or pushes onto the guest stack
 * records the event being delivered in the IDT-vectoring information field
 * (bits 7:0 vector, 10:8 type, 11 error code valid, 31 valid) and its error
 * code in the IDT-vectoring error code; events injected by VM entry count too.
 * An exit while fetching the handler's first instruction is not during delivery.
 * The exit qualification is that of any EPT violation (28.2.1, table 28-7).
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field as F } from '../../vmcs/fields.js';
import {
  GUEST_CODE, GUEST_IDT, GUEST_STACK, HANDLERS, guestPteAddress, runInGuest, type GuestRun,
} from '../../src/vmx/testing.js';
import { EPT_R, EPT_WB, EPT_X, eptGuest, exitOf, movRax, VMCALL } from './ept-tables.js';

const UD2 = [0x0f, 0x0b];
const STACK_PAGE = GUEST_STACK - 0x1000;
/** IDT-vectoring information: valid, error code valid, interruption types (25.9.3). */
const VALID = 0x80000000, HAS_CODE = 0x800, HARDWARE_EXCEPTION = 3 << 8, EXTERNAL = 0, SOFTWARE_INTERRUPT = 4 << 8;

const vectoring = (r: GuestRun): number => r.vmcs.lo(F.IDT_VECTORING_INFORMATION_FIELD) >>> 0;
/** An IDT-vectoring information value as an unsigned number. */
const info = (bits: number): number => bits >>> 0;
const vectoringError = (r: GuestRun): number => r.vmcs.lo(F.IDT_VECTORING_ERROR_CODE);

/** The guest IDT page not present in EPT. */
const noIdt = eptGuest((t) => t.map(GUEST_IDT, GUEST_IDT, 0));
/** The guest stack page read-only (and executable) in EPT: delivery's pushes violate. */
const readOnlyStack = eptGuest((t) => t.map(STACK_PAGE, STACK_PAGE, EPT_R | EPT_X | EPT_WB));

describe('28.2.4: an EPT violation while delivering an exception', () => {
  it('28.2.4: #UD with the guest IDT page not present: the gate read violates (181H at the 16-byte gate 6), IDT-vectoring 80000306H', () => {
    const r = runInGuest([...UD2, ...VMCALL], noIdt);
    const e = exitOf(r);
    expect(e.reason).toBe(ExitReason.EPT_VIOLATION);
    expect(e.qualification).toBe(0x181);
    expect(e.gpa).toBe(GUEST_IDT + 16 * 6);
    expect(e.linear).toBe(GUEST_IDT + 16 * 6);
    expect(vectoring(r)).toBe(info(VALID | HARDWARE_EXCEPTION | 6));
    expect(e.rip).toBe(GUEST_CODE); // the event was not delivered: RIP still references the faulting UD2
  });

  it('28.2.4: #PF (error code 2) with the stack read-only: the push violates (1AAH), IDT-vectoring 80000B0EH with error code 2', () => {
    const far = 0x300000;
    // mov rax, far; mov [rax], rax: a write to a guest-not-present page.
    const r = runInGuest([...movRax(far), 0x48, 0x89, 0x00, ...VMCALL], eptGuest((t, _v, cpu) => {
      cpu.memory.write32(guestPteAddress(far), 0);
      t.map(STACK_PAGE, STACK_PAGE, EPT_R | EPT_X | EPT_WB);
    }));
    const e = exitOf(r);
    expect(e.reason).toBe(ExitReason.EPT_VIOLATION);
    expect(e.qualification).toBe(0x1aa);
    expect(Math.floor(e.gpa / 0x1000) * 0x1000).toBe(STACK_PAGE);
    expect(vectoring(r)).toBe(info(VALID | HAS_CODE | HARDWARE_EXCEPTION | 14));
    expect(vectoringError(r)).toBe(2);
    expect(e.rip).toBe(GUEST_CODE + 10);
  });

  it('28.2.4: #GP(0) for a non-canonical address with the stack read-only: IDT-vectoring 80000B0DH, error code 0', () => {
    // mov rbx, 8000000000000000H; mov rax, [rbx]
    const r = runInGuest([0x48, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x48, 0x8b, 0x03, ...VMCALL], readOnlyStack);
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    expect(vectoring(r)).toBe(info(VALID | HAS_CODE | HARDWARE_EXCEPTION | 13));
    expect(vectoringError(r)).toBe(0);
  });

  it('28.2.4: INT 10H with the stack read-only: IDT-vectoring type 4 (software interrupt), vector 10H, no error code', () => {
    const r = runInGuest([0xcd, 0x10, ...VMCALL], readOnlyStack);
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    expect(vectoring(r)).toBe(info(VALID | SOFTWARE_INTERRUPT | 0x10));
  });
});

describe('28.2.4: events injected by VM entry (27.6), and what is not during delivery', () => {
  it('28.2.4 with 27.6.1: an injected #UD whose IDT gate is EPT not-present: IDT-vectoring 80000306H, RIP = GUEST_RIP', () => {
    const r = runInGuest(VMCALL, eptGuest((t, v) => {
      t.map(GUEST_IDT, GUEST_IDT, 0);
      v.set(F.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD, VALID | HARDWARE_EXCEPTION | 6);
    }));
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    expect(vectoring(r)).toBe(info(VALID | HARDWARE_EXCEPTION | 6));
    expect(exitOf(r).rip).toBe(GUEST_CODE);
    // 28.2 (VM exits clear the valid bit of the VM-entry interruption-information field).
    expect(r.vmcs.lo(F.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD) >>> 31).toBe(0);
  });

  it('28.2.4 with 27.6.1: an injected external interrupt 20H (type 0): IDT-vectoring 80000020H', () => {
    const r = runInGuest(VMCALL, eptGuest((t, v) => {
      t.map(GUEST_IDT, GUEST_IDT, 0);
      v.set(F.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD, VALID | EXTERNAL | 0x20);
      v.set(F.GUEST_RFLAGS, 0x202); // 27.3.1.4: an external interrupt is injected only with RFLAGS.IF = 1
    }));
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    expect(exitOf(r).gpa).toBe(GUEST_IDT + 16 * 0x20);
    expect(vectoring(r)).toBe(info(VALID | EXTERNAL | 0x20));
  });

  it('28.2.4: a violation fetching the handler\'s first instruction is not during delivery: IDT-vectoring invalid (bit 31 = 0)', () => {
    const r = runInGuest([...UD2, ...VMCALL], eptGuest((t) => t.map(HANDLERS, HANDLERS, EPT_R | EPT_WB)));
    const e = exitOf(r);
    expect(e.reason).toBe(ExitReason.EPT_VIOLATION);
    expect(e.qualification).toBe(0x18c); // fetch, readable, not writable or executable
    expect(e.gpa).toBe(HANDLERS + 8 * 6);
    expect(vectoring(r) >>> 31).toBe(0);
    expect(e.rip).toBe(HANDLERS + 8 * 6); // delivery completed: RIP is the handler's
  });

  it('28.2.4: an ordinary EPT violation (no event being delivered) leaves IDT-vectoring invalid', () => {
    const r = runInGuest([...movRax(0x50000), 0x48, 0x8b, 0x00, ...VMCALL], eptGuest((t) => t.map(0x50000, 0x50000, 0)));
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    expect(vectoring(r) >>> 31).toBe(0);
  });
});
