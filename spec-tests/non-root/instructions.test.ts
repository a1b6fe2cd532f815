/**
 * Instructions that exit from non-root operation, and what the exit records
 * (SDM vol. 3C, 26.1.3 "Instructions That Cause VM Exits Conditionally", 26.3
 * "Changes to Instruction Behavior in VMX Non-Root Operation", 28.2.1 "Basic
 * VM-Exit Information": exit qualification and guest-linear address).
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import type { Vmcs } from '../../src/vmx/vmcs.js';
import { GUEST_CODE, runInGuest } from '../../src/vmx/testing.js';

const VMCALL = [0x0f, 0x01, 0xc1];
const PROC = Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
const SECONDARY = Field.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
const on = (v: Vmcs, field: number, bits: number): void => v.set(field, v.lo(field) | bits);

describe('INS and OUTS (26.1.3, 28.2.1: guest-linear address of the memory operand)', () => {
  it('OUTSB exits with the linear address of DS:RSI, INSB with that of ES:RDI', () => {
    const outs = runInGuest([0x6e, ...VMCALL], (v, cpu) => { on(v, PROC, 1 << 24); cpu.setReg64(6, 0x60000n); });
    expect(outs.reason).toBe(ExitReason.IO_INSTRUCTION);
    expect(outs.vmcs.num(Field.GUEST_LINEAR_ADDRESS)).toBe(0x60000);
    expect(Number(outs.qualification) & 0x18).toBe(0x10); // string, OUT
    const ins = runInGuest([0x6c, ...VMCALL], (v, cpu) => { on(v, PROC, 1 << 24); cpu.setReg64(7, 0x61000n); });
    expect(ins.vmcs.num(Field.GUEST_LINEAR_ADDRESS)).toBe(0x61000);
    expect(Number(ins.qualification) & 0x18).toBe(0x18); // string, IN
  });
});

describe('LMSW (26.1.3; table 28-3 exit qualification)', () => {
  const LMSW_AX = [0x0f, 0x01, 0xf0];
  it('does not exit when its source leaves a host-owned PE clear, whatever CR0.PE is', () => {
    const r = runInGuest([...LMSW_AX, ...VMCALL], (v, cpu) => {
      v.set(Field.CR0_GUEST_HOST_MASK, 1); v.set(Field.CR0_READ_SHADOW, 0); cpu.setReg64(0, 0n);
    });
    expect(r.reason).toBe(ExitReason.VMCALL);
  });

  it('exits when it changes a host-owned MP against the shadow, with its 16-bit operand in bits 31:16', () => {
    const r = runInGuest([...LMSW_AX, ...VMCALL], (v, cpu) => {
      v.set(Field.CR0_GUEST_HOST_MASK, 2); v.set(Field.CR0_READ_SHADOW, 2); cpu.setReg64(0, 0xfff0n);
    });
    expect(r.reason).toBe(ExitReason.CONTROL_REGISTER_ACCESS);
    expect(r.qualification).toBe(0xfff00030n); // CR0, access type 3 (LMSW), register operand, source FFF0H
  });
});

describe('CR0 guest/host mask and read shadow are natural-width (26.3)', () => {
  it('MOV from CR0 reads bit 63 from the shadow when the mask owns it', () => {
    const r = runInGuest([0x0f, 0x20, 0xc0, ...VMCALL], (v) => { // mov rax, cr0
      v.set(Field.CR0_GUEST_HOST_MASK, 0, 0x80000000); v.set(Field.CR0_READ_SHADOW, 0, 0x80000000);
    });
    expect(r.cpu.reg64(0) >> 63n).toBe(1n);
  });
});

describe('exit qualifications that hold a displacement (28.2.1)', () => {
  it('VMPTRLD [rbx+10H] in the guest exits (reason 21) with qualification 10H', () => {
    const r = runInGuest([0x0f, 0xc7, 0x73, 0x10, ...VMCALL]);
    expect(r.reason).toBe(ExitReason.VMPTRLD);
    expect(r.qualification).toBe(0x10n);
  });

  it('SGDT [rbx-10H] with descriptor-table exiting: the displacement sign-extended to 64 bits', () => {
    const r = runInGuest([0x0f, 0x01, 0x43, 0xf0, ...VMCALL], (v) => { on(v, PROC, 1 << 31); on(v, SECONDARY, 1 << 2); });
    expect(r.reason).toBe(ExitReason.GDTR_IDTR_ACCESS);
    expect(r.qualification).toBe(0xfffffffffffffff0n);
  });

  it('SGDT [rip+10H]: the displacement plus the next instruction\'s RIP', () => {
    const r = runInGuest([0x0f, 0x01, 0x05, 0x10, 0, 0, 0, ...VMCALL], (v) => { on(v, PROC, 1 << 31); on(v, SECONDARY, 1 << 2); });
    expect(r.qualification).toBe(BigInt(GUEST_CODE + 7 + 0x10));
  });
});

describe('TPR shadow (30.1.1 "Virtualized APIC Registers", 30.1.2 "TPR Virtualization")', () => {
  const VAPIC = 0x34000; // a page of the harness's scratch area
  const MOV_CR8_RAX = [0x44, 0x0f, 0x22, 0xc0], MOV_RBX_CR8 = [0x44, 0x0f, 0x20, 0xc3];
  const shadow = (threshold: number, vtpr: number) => (v: Vmcs, cpu: import('../../src/cpu/cpu.js').Cpu): void => {
    on(v, PROC, 1 << 21);
    v.set(Field.VIRTUAL_APIC_ADDRESS, VAPIC);
    v.set(Field.TPR_THRESHOLD, threshold);
    cpu.memory.write32(VAPIC + 0x80, vtpr);
  };

  it('MOV to CR8 writes VTPR[7:4] and clears the rest; MOV from CR8 reads it back; the TPR itself is untouched', () => {
    const r = runInGuest([0xb8, 5, 0, 0, 0, ...MOV_CR8_RAX, ...MOV_RBX_CR8, ...VMCALL], (v, cpu) => {
      shadow(0, 0xff)(v, cpu);
    });
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.memory.read32(VAPIC + 0x80)).toBe(0x50);
    expect(r.cpu.reg64(3)).toBe(5n);
    expect(r.cpu.cr8.readCr8()).toBe(0);
  });

  it('going below the TPR threshold exits after the instruction (reason 43, trap-like)', () => {
    const r = runInGuest([0xb8, 3, 0, 0, 0, ...MOV_CR8_RAX, ...VMCALL], shadow(6, 0x60));
    expect(r.reason).toBe(ExitReason.TPR_BELOW_THRESHOLD);
    expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE + 5 + 4);
    expect(r.cpu.memory.read32(VAPIC + 0x80)).toBe(0x30);
  });

  it('a TPR threshold above VTPR[7:4] fails VM entry (27.2.1.1, VMfailValid 7)', () => {
    const r = runInGuest(VMCALL, shadow(6, 0x50));
    expect(r.entered).toBe(false);
    expect(r.vmx.lastEntryFailure?.check).toBe('TPR threshold above VTPR');
  });
});

describe('PAUSE (26.1.3; 25.6.13 PLE_GAP and PLE_WINDOW)', () => {
  const PAUSE = [0xf3, 0x90];
  it('exits with PAUSE exiting; a plain NOP does not', () => {
    const r = runInGuest([0x90, ...PAUSE, ...VMCALL], (v) => on(v, PROC, 1 << 30));
    expect(r.reason).toBe(ExitReason.PAUSE);
    expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE + 1);
    expect(r.vmcs.lo(Field.VM_EXIT_INSTRUCTION_LENGTH)).toBe(2);
  });

  it('PAUSE-loop exiting: a spin loop of PAUSEs exits once it has lasted more than PLE_WINDOW ticks', () => {
    // spin: pause; jmp spin — a PAUSE every 2 instructions (2 TSC ticks), within a gap of 10.
    const r = runInGuest([...PAUSE, 0xeb, 0xfc], (v) => {
      on(v, PROC, 1 << 31); on(v, SECONDARY, 1 << 10);
      v.set(Field.PLE_GAP, 10); v.set(Field.PLE_WINDOW, 100);
    }, { budget: 10_000 });
    expect(r.reason).toBe(ExitReason.PAUSE);
    // The loop's first PAUSE at tick 0; the exit at the first PAUSE more than 100 ticks later (tick 102).
    expect(r.cpu.insnCount).toBe(102 + 1); // guest instructions retired, then the host's HLT
  });
});
