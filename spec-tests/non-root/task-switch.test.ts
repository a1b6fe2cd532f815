/**
 * Task switches in VMX non-root operation: SDM vol. 3C 26.4.2 "Treatment of
 * Task Switches" (every task switch is a VM exit, after the privilege checks on
 * a task gate or a TSS descriptor and the IA-32e-mode checks only), 28.2.1
 * (table "Exit Qualification for Task Switches": bits 15:0 the new TSS's
 * selector, bits 31:30 the source, 0 CALL, 1 IRET, 2 JMP, 3 task gate in the
 * IDT), 28.2.4 (IDT-vectoring information), 28.2.5 (VM-exit instruction
 * length), 28.3.3 (RIP of the instruction).
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import type { Cpu } from '../../src/cpu/cpu.js';
import { GUEST_CODE, GUEST_GDT, GUEST_IDT, GUEST_TSS, runInGuest, type GuestRun } from '../../src/vmx/testing.js';
import type { Vmcs } from '../../src/vmx/vmcs.js';

/** The second task's TSS, and its selectors in the guest GDT: TSS B (available), a task gate to it (DPL 3). */
const TSS_B = 0x6000, SEL_TSS_B = 0x20, SEL_GATE_B = 0x28;
const NT = 1 << 14;
const jmpFar = (sel: number): number[] => [0xea, 0, 0, 0, 0, sel & 0xff, sel >> 8];
const callFar = (sel: number): number[] => [0x9a, 0, 0, 0, 0, sel & 0xff, sel >> 8];
const IRET = 0xcf, HLT = 0xf4;

/** Adds TSS B (type `bType`: 9 available, B busy) and a task gate to it to the harness's GDT; an IDT gate of vector 13 and 0x40 to it. */
function taskTables(bType = 0x9, idt = false, present = true) {
  return (v: Vmcs, cpu: Cpu): void => {
    const m = cpu.memory;
    // 32-bit TSS descriptor, base TSS_B, limit 67H, present, DPL 0 (SDM vol. 3A, 8.2.2).
    m.write32(GUEST_GDT + SEL_TSS_B, (TSS_B << 16) | 0x67);
    m.write32(GUEST_GDT + SEL_TSS_B + 4, (TSS_B & 0xff000000) | ((present ? 0x80 : 0) | bType) << 8 | ((TSS_B >>> 16) & 0xff));
    // Task gate, DPL 3 (8.2.5).
    m.write32(GUEST_GDT + SEL_GATE_B, SEL_TSS_B << 16);
    m.write32(GUEST_GDT + SEL_GATE_B + 4, 0xe500);
    v.set(Field.GUEST_GDTR_LIMIT, 0x2f);
    // TSS B: EIP, ESP, selectors (a valid new task, were the switch carried out).
    m.write32(TSS_B + 0x20, GUEST_CODE + 0x100);
    m.write32(TSS_B + 0x24, 2);
    m.write32(TSS_B + 0x38, 0x7000);
    [0x10, 0x08, 0x10, 0x10, 0x10, 0x10].forEach((s, k) => m.write32(TSS_B + 0x48 + 4 * k, s));
    if (idt) {
      for (const vector of [13, 0x40]) {
        m.write32(GUEST_IDT + 8 * vector, SEL_TSS_B << 16);
        m.write32(GUEST_IDT + 8 * vector + 4, 0xe500); // task gate, DPL 3
      }
    }
  };
}

/** What no task switch has touched: TR, TSS B's type, the old TSS's EIP field, CR0.TS. */
function expectNotSwitched(r: GuestRun, bType = 0x9): void {
  expect(r.vmcs.lo(Field.GUEST_TR_SELECTOR)).toBe(0x18);
  expect((r.cpu.memory.read32(GUEST_GDT + SEL_TSS_B + 4) >>> 8) & 0xf).toBe(bType);
  expect(r.cpu.memory.read32(GUEST_TSS + 0x20)).toBe(0);
  expect(r.vmcs.lo(Field.GUEST_CR0) & 8).toBe(0);
}

describe('SDM 26.4.2: a task switch in non-root operation is a VM exit (reason 9)', () => {
  it('JMP ptr16:32 to an available TSS: qualification = selector | source 2 (JMP), length 7, RIP at the JMP', () => {
    const r = runInGuest([0x90, ...jmpFar(SEL_TSS_B), HLT], taskTables(), { mode: 32 });
    expect(r.reason).toBe(ExitReason.TASK_SWITCH);
    expect(r.qualification).toBe(BigInt(SEL_TSS_B | (2 << 30)) & 0xffffffffn);
    expect(r.vmcs.lo(Field.VM_EXIT_INSTRUCTION_LENGTH)).toBe(7);
    expect(r.vmcs.lo(Field.GUEST_RIP)).toBe(GUEST_CODE + 1);
    expect(r.vmcs.lo(Field.IDT_VECTORING_INFORMATION_FIELD) >>> 31).toBe(0);
    expectNotSwitched(r);
  });

  it('CALL through a task gate: the selector is the TSS the gate names (not the gate), source 0 (CALL), length 7', () => {
    const r = runInGuest([...callFar(SEL_GATE_B), HLT], taskTables(), { mode: 32 });
    expect(r.reason).toBe(ExitReason.TASK_SWITCH);
    expect(r.qualification).toBe(BigInt(SEL_TSS_B));
    expect(r.vmcs.lo(Field.VM_EXIT_INSTRUCTION_LENGTH)).toBe(7);
    expect(r.vmcs.lo(Field.GUEST_RIP)).toBe(GUEST_CODE);
    expectNotSwitched(r);
  });

  it('the switch\'s own checks come after the exit: JMP to a not-present TSS exits rather than raising #NP', () => {
    const r = runInGuest([...jmpFar(SEL_TSS_B), HLT], taskTables(0x9, false, false), { mode: 32 });
    expect(r.reason).toBe(ExitReason.TASK_SWITCH);
    expect(r.qualification).toBe(BigInt(SEL_TSS_B | (2 << 30)) & 0xffffffffn);
  });

  it('the privilege check on a TSS descriptor comes first: JMP with RPL 3 to a DPL-0 TSS raises #GP(selector) in the guest, no exit', () => {
    // Vector 13 leads to the harness handler, which exits with VMCALL and AL = 13.
    const r = runInGuest([...jmpFar(SEL_TSS_B | 3), HLT], taskTables(), { mode: 32 });
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[0]! & 0xff).toBe(13);
    expectNotSwitched(r);
  });

  it('IRET with NT = 1: the selector is the previous-task link of the current TSS, source 1 (IRET), length 1', () => {
    const r = runInGuest([IRET, HLT], (v, cpu) => {
      taskTables(0xb)(v, cpu);
      cpu.memory.write32(GUEST_TSS, SEL_TSS_B); // link
      v.set(Field.GUEST_RFLAGS, 2 | NT);
    }, { mode: 32 });
    expect(r.reason).toBe(ExitReason.TASK_SWITCH);
    expect(r.qualification).toBe(BigInt(SEL_TSS_B | (1 << 30)));
    expect(r.vmcs.lo(Field.VM_EXIT_INSTRUCTION_LENGTH)).toBe(1);
    expect(r.vmcs.lo(Field.GUEST_RIP)).toBe(GUEST_CODE);
    expect(r.vmcs.lo(Field.GUEST_RFLAGS) & NT).toBe(NT);
    expectNotSwitched(r, 0xb);
  });

  it('an exception through a task gate in the IDT: source 3, the event in the IDT-vectoring information, RIP at the faulting instruction', () => {
    // MOV EAX, 1238H; MOV DS, AX: the selector is beyond the GDT limit, #GP(1238H) (vol. 2, MOV).
    const r = runInGuest([0xb8, 0x38, 0x12, 0, 0, 0x8e, 0xd8, HLT], taskTables(0x9, true), { mode: 32 });
    expect(r.reason).toBe(ExitReason.TASK_SWITCH);
    expect(r.qualification).toBe(BigInt(SEL_TSS_B | (3 << 30)) & 0xffffffffn);
    // Hardware exception (type 3) 13 with an error code (28.2.4).
    expect(r.vmcs.lo(Field.IDT_VECTORING_INFORMATION_FIELD) >>> 0).toBe((0x80000000 | (1 << 11) | (3 << 8) | 13) >>> 0);
    expect(r.vmcs.lo(Field.IDT_VECTORING_ERROR_CODE)).toBe(0x1238);
    expect(r.vmcs.lo(Field.GUEST_RIP)).toBe(GUEST_CODE + 5);
    expectNotSwitched(r);
  });

  it('INT n through a task gate: source 3, a software interrupt (type 4) in the IDT-vectoring information, length 2, RIP at the INT', () => {
    const r = runInGuest([0x90, 0xcd, 0x40, HLT], taskTables(0x9, true), { mode: 32 });
    expect(r.reason).toBe(ExitReason.TASK_SWITCH);
    expect(r.qualification).toBe(BigInt(SEL_TSS_B | (3 << 30)) & 0xffffffffn);
    expect(r.vmcs.lo(Field.IDT_VECTORING_INFORMATION_FIELD) >>> 0).toBe((0x80000000 | (4 << 8) | 0x40) >>> 0);
    expect(r.vmcs.lo(Field.VM_EXIT_INSTRUCTION_LENGTH)).toBe(2);
    expect(r.vmcs.lo(Field.GUEST_RIP)).toBe(GUEST_CODE + 1);
    expectNotSwitched(r);
  });

  it('IA-32e mode has no task switch (SDM vol. 3A 8.7): a far JMP to a TSS raises #GP(selector) in the guest, no exit', () => {
    const r = runInGuest([0xff, 0x2c, 0x25, 0x00, 0x0f, 0, 0 /* jmp far [0xf00] */, HLT], (v, cpu) => {
      taskTables()(v, cpu);
      cpu.memory.write32(0xf00, 0);
      cpu.memory.write8(0xf04, SEL_TSS_B); cpu.memory.write8(0xf05, 0);
    });
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[0]! & 0xff).toBe(13);
  });
});
