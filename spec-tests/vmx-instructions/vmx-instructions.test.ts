/**
 * The VMX instructions outside the guest: VMXON, VMXOFF, VMCLEAR, VMPTRLD,
 * VMPTRST, VMREAD, VMWRITE, VMLAUNCH/VMRESUME's own checks and VMCALL in root
 * operation (SDM vol. 3C, chapter 31 "VMX Instruction Reference", each
 * instruction's "Operation"; 31.2 "Conventions" for VMsucceed and VMfail).
 */
import { describe, expect, it } from 'vitest';
import { Field } from '../../vmcs/fields.js';
import { VmInstructionError } from '../../vmcs/instruction-errors.js';
import type { Cpu } from '../../src/cpu/cpu.js';
import { runFragment } from '../../src/cpu/testing.js';
import { attachVmx, type Vmx } from '../../src/vmx/vmx.js';

const VMXON_REGION = 0x20000, VMCS_A = 0x21000, VMCS_B = 0x22000, POINTER = 0x10000;
const REVISION = 4;
const CF = 1, ZF = 0x40;

// Instructions with [rax] as memory operand, and register forms with rax (field) and rbx (value).
const VMXON = [0xf3, 0x0f, 0xc7, 0x30], VMCLEAR = [0x66, 0x0f, 0xc7, 0x30], VMPTRLD = [0x0f, 0xc7, 0x30];
const VMPTRST = [0x0f, 0xc7, 0x38], VMREAD_RBX_RAX = [0x0f, 0x78, 0xc3], VMWRITE_RAX_RBX = [0x0f, 0x79, 0xc3];
const VMLAUNCH = [0x0f, 0x01, 0xc2], VMRESUME = [0x0f, 0x01, 0xc3], VMXOFF = [0x0f, 0x01, 0xc4], VMCALL = [0x0f, 0x01, 0xc1];
/** mov rax, imm64 / mov rbx, imm64 */
const movRax = (v: number): number[] => [0x48, 0xb8, ...le64(v)];
const movRbx = (v: number): number[] => [0x48, 0xbb, ...le64(v)];
/** pushfq; pop rcx: RFLAGS after an instruction, into RCX */
const SAVE_FLAGS = [0x9c, 0x59];

function le64(v: number | bigint): number[] {
  const out: number[] = [];
  let x = BigInt.asUintN(64, BigInt(v));
  for (let k = 0; k < 8; k++) { out.push(Number(x & 0xffn)); x >>= 8n; }
  return out;
}

interface Options { vmxe?: boolean; featureControl?: number; ne?: boolean; revision?: number }

/** Runs `code` on a VMX-capable processor prepared for VMXON; the VMXON and VMCS regions carry the revision. */
function run(code: number[], o: Options = {}): { cpu: Cpu; vmx: Vmx; stop: ReturnType<typeof runFragment>['stop'] } {
  let vmx!: Vmx;
  const { cpu, stop } = runFragment(code, {
    setup: (c) => {
      vmx = attachVmx(c);
      if (o.vmxe ?? true) c.cr4 |= 0x2000;
      if (o.ne ?? true) c.cr0 |= 0x20;
      c.msrs.featureControl = o.featureControl ?? 5; // locked, VMX outside SMX
      for (const at of [VMXON_REGION, VMCS_A, VMCS_B]) c.memory.write32(at, o.revision ?? REVISION);
    },
  });
  return { cpu, vmx, stop };
}

/** Writes the 8-byte pointer `value` at POINTER and points RAX at it. */
const pointer = (value: number): number[] => [...movRbx(value), 0x48, 0xb8, ...le64(POINTER), 0x48, 0x89, 0x18];

const vmxon = [...pointer(VMXON_REGION), ...VMXON];
const vmptrld = (a: number): number[] => [...pointer(a), ...VMPTRLD];
const vmclear = (a: number): number[] => [...pointer(a), ...VMCLEAR];
const vmwrite = (field: number, value: number): number[] => [...movRax(field), ...movRbx(value), ...VMWRITE_RAX_RBX];
const vmread = (field: number): number[] => [...movRax(field), ...movRbx(0), ...VMREAD_RBX_RAX];
const flagsAfter = (insn: number[]): number[] => [...insn, ...SAVE_FLAGS];


describe('VMXON (SDM vol. 3C, 31.3 "VMXON—Enter VMX Operation")', () => {
  it('#UD when CR4.VMXE = 0', () => {
    expect(run(vmxon, { vmxe: false }).stop).toEqual({ kind: 'exception', vector: 6, errorCode: null });
  });

  it('#GP(0) when IA32_FEATURE_CONTROL is unlocked or VMX outside SMX is off', () => {
    expect(run(vmxon, { featureControl: 4 }).stop).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
    expect(run(vmxon, { featureControl: 1 }).stop).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
  });

  it('#GP(0) when CR0 lacks a bit IA32_VMX_CR0_FIXED0 requires (NE)', () => {
    expect(run(vmxon, { ne: false }).stop).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
  });

  it('VMfailInvalid for a wrong revision identifier or an unaligned region', () => {
    const bad = run(flagsAfter(vmxon), { revision: 7 });
    expect(bad.cpu.gpr[2]! & (CF | ZF)).toBe(CF);
    expect(bad.vmx.on).toBe(false);
    const unaligned = run(flagsAfter([...pointer(VMXON_REGION + 8), ...VMXON]));
    expect(unaligned.cpu.gpr[2]! & (CF | ZF)).toBe(CF);
  });

  it('VMsucceed enters VMX operation; a second VMXON fails (VMfailInvalid without a current VMCS)', () => {
    const ok = run(flagsAfter(vmxon));
    expect(ok.cpu.gpr[2]! & (CF | ZF)).toBe(0);
    expect(ok.vmx.on).toBe(true);
    const twice = run([...vmxon, ...flagsAfter(VMXON)]);
    expect(twice.cpu.gpr[2]! & (CF | ZF)).toBe(CF);
  });

  it('in VMX root operation with a current VMCS, VMXON is VMfailValid(15)', () => {
    const r = run([...vmxon, ...vmptrld(VMCS_A), ...flagsAfter(vmxon)]);
    expect(r.cpu.gpr[2]! & (CF | ZF)).toBe(ZF);
    expect(r.vmx.current!.lo(Field.VM_INSTRUCTION_ERROR)).toBe(VmInstructionError.VMXON_IN_ROOT);
  });
});

describe('VMCS pointers (31.3 VMPTRLD, VMPTRST, VMCLEAR)', () => {
  it('VMPTRLD makes the VMCS current and VMPTRST stores its address', () => {
    const r = run([...vmxon, ...vmptrld(VMCS_A), 0x48, 0xb8, ...le64(POINTER + 8), ...VMPTRST]);
    expect(r.cpu.memory.read32(POINTER + 8)).toBe(VMCS_A);
    expect(r.cpu.memory.read32(POINTER + 12)).toBe(0);
  });

  it('VMPTRST without a current VMCS stores FFFFFFFF_FFFFFFFFH', () => {
    const r = run([...vmxon, 0x48, 0xb8, ...le64(POINTER + 8), ...VMPTRST]);
    expect(r.cpu.memory.read32(POINTER + 8)).toBe(-1);
    expect(r.cpu.memory.read32(POINTER + 12)).toBe(-1);
  });

  it('VMPTRLD errors: invalid address (9), the VMXON pointer (10), wrong revision (11)', () => {
    const prefix = [...vmxon, ...vmptrld(VMCS_A)];
    for (const [addr, error] of [[VMCS_B + 4, 9], [VMXON_REGION, 10]] as const) {
      const r = run([...prefix, ...flagsAfter(vmptrld(addr))]);
      expect(r.cpu.gpr[2]! & (CF | ZF)).toBe(ZF);
      expect(r.vmx.current!.lo(Field.VM_INSTRUCTION_ERROR)).toBe(error);
    }
    const rev = run([...prefix, 0xc7, 0x04, 0x25, ...le64(VMCS_B).slice(0, 4), 9, 0, 0, 0, ...flagsAfter(vmptrld(VMCS_B))]);
    expect(rev.vmx.current!.lo(Field.VM_INSTRUCTION_ERROR)).toBe(VmInstructionError.VMPTRLD_INCORRECT_REVISION);
  });

  it('VMCLEAR errors: invalid address (2), the VMXON pointer (3); without a current VMCS they are VMfailInvalid', () => {
    const withCurrent = [...vmxon, ...vmptrld(VMCS_A)];
    const a = run([...withCurrent, ...flagsAfter(vmclear(VMCS_B + 1))]);
    expect(a.vmx.current!.lo(Field.VM_INSTRUCTION_ERROR)).toBe(VmInstructionError.VMCLEAR_INVALID_ADDRESS);
    const b = run([...withCurrent, ...flagsAfter(vmclear(VMXON_REGION))]);
    expect(b.vmx.current!.lo(Field.VM_INSTRUCTION_ERROR)).toBe(VmInstructionError.VMCLEAR_VMXON_POINTER);
    const c = run([...vmxon, ...flagsAfter(vmclear(VMXON_REGION))]);
    expect(c.cpu.gpr[2]! & (CF | ZF)).toBe(CF);
  });

  it('VMCLEAR of the current VMCS makes the pointer invalid and writes the data to memory; a copy of the region loads the same data', () => {
    const guestRip = 0x123456;
    const copy = [
      // rep movsb 4096 bytes VMCS_A -> VMCS_B
      0x48, 0xbe, ...le64(VMCS_A), 0x48, 0xbf, ...le64(VMCS_B), 0x48, 0xb9, ...le64(4096), 0xf3, 0xa4,
    ];
    const r = run([...vmxon, ...vmptrld(VMCS_A), ...vmwrite(Field.GUEST_RIP, guestRip), ...vmclear(VMCS_A),
      ...copy, ...vmptrld(VMCS_B), ...vmread(Field.GUEST_RIP)]);
    expect(r.stop.kind).toBe('halt');
    expect(r.vmx.current!.address).toBe(VMCS_B);
    expect(r.cpu.gpr[2 * 3]).toBe(guestRip);
  });
});

describe('VMREAD and VMWRITE (31.3; encodings 25.11.2)', () => {
  const base = [...vmxon, ...vmptrld(VMCS_A)];

  it('a natural-width field round-trips all 64 bits in 64-bit mode', () => {
    const r = run([...base, ...movRax(Field.GUEST_RSP), 0x48, 0xbb, ...le64(0x0123456789abcdefn), ...VMWRITE_RAX_RBX,
      ...vmread(Field.GUEST_RSP)]);
    expect(r.cpu.reg64(3)).toBe(0x0123456789abcdefn);
  });

  it('a 16-bit field keeps bits 15:0 of what is written', () => {
    const r = run([...base, ...vmwrite(Field.GUEST_CS_SELECTOR, 0x12345678), ...vmread(Field.GUEST_CS_SELECTOR)]);
    expect(r.cpu.reg64(3)).toBe(0x5678n);
  });

  it('the high encoding of a 64-bit field reads and writes bits 63:32', () => {
    const r = run([...base, ...vmwrite(Field.TSC_OFFSET, 0x11112222), ...vmwrite(Field.TSC_OFFSET | 1, 0x3333),
      ...vmread(Field.TSC_OFFSET)]);
    expect(r.cpu.reg64(3)).toBe(0x0000333311112222n);
    const hi = run([...base, ...vmwrite(Field.TSC_OFFSET, 0x11112222), ...vmwrite(Field.TSC_OFFSET | 1, 0x3333),
      ...vmread(Field.TSC_OFFSET | 1)]);
    expect(hi.cpu.reg64(3)).toBe(0x3333n);
  });

  it('an encoding no field has is VMfailValid(12); so is a field of a capability the model does not offer (PML address)', () => {
    for (const enc of [0x7fff, Field.PML_ADDRESS]) {
      const r = run([...base, ...flagsAfter(vmread(enc))]);
      expect(r.cpu.gpr[2]! & (CF | ZF)).toBe(ZF);
      expect(r.vmx.current!.lo(Field.VM_INSTRUCTION_ERROR)).toBe(VmInstructionError.UNSUPPORTED_VMCS_COMPONENT);
    }
  });

  it('VMWRITE to a VM-exit information field succeeds: IA32_VMX_MISC[29] is 1 on this model', () => {
    const r = run([...base, ...flagsAfter(vmwrite(Field.EXIT_QUALIFICATION, 77)), ...vmread(Field.EXIT_QUALIFICATION)]);
    expect(r.cpu.gpr[2]! & (CF | ZF)).toBe(0);
    expect(r.cpu.reg64(3)).toBe(77n);
  });

  it('without a current VMCS, VMREAD and VMWRITE are VMfailInvalid', () => {
    const r = run([...vmxon, ...flagsAfter(vmread(Field.GUEST_RIP))]);
    expect(r.cpu.gpr[2]! & (CF | ZF)).toBe(CF);
  });

  it('outside VMX operation they are #UD', () => {
    expect(run(vmread(Field.GUEST_RIP)).stop).toEqual({ kind: 'exception', vector: 6, errorCode: null });
  });
});

describe('VMLAUNCH, VMRESUME, VMCALL and VMXOFF in root operation (31.3)', () => {
  it('VMLAUNCH without a current VMCS is VMfailInvalid', () => {
    expect(run([...vmxon, ...flagsAfter(VMLAUNCH)]).cpu.gpr[2]! & (CF | ZF)).toBe(CF);
  });

  it('VMRESUME of a VMCS whose launch state is clear is VMfailValid(5)', () => {
    const r = run([...vmxon, ...vmclear(VMCS_A), ...vmptrld(VMCS_A), ...flagsAfter(VMRESUME)]);
    expect(r.vmx.current!.lo(Field.VM_INSTRUCTION_ERROR)).toBe(VmInstructionError.VMRESUME_NONLAUNCHED_VMCS);
  });

  it('VMLAUNCH of a VMCS that fails the control checks is VMfailValid(7) and names the check', () => {
    const r = run([...vmxon, ...vmclear(VMCS_A), ...vmptrld(VMCS_A), ...flagsAfter(VMLAUNCH)]);
    expect(r.cpu.gpr[2]! & (CF | ZF)).toBe(ZF);
    expect(r.vmx.current!.lo(Field.VM_INSTRUCTION_ERROR)).toBe(VmInstructionError.ENTRY_INVALID_CONTROL_FIELDS);
    expect(r.vmx.lastEntryFailure?.kind).toBe('controls');
  });

  it('VMCALL in VMX root operation is VMfailValid(1)', () => {
    const r = run([...vmxon, ...vmptrld(VMCS_A), ...flagsAfter(VMCALL)]);
    expect(r.vmx.current!.lo(Field.VM_INSTRUCTION_ERROR)).toBe(VmInstructionError.VMCALL_IN_ROOT);
  });

  it('VMCALL outside VMX operation is #UD', () => {
    expect(run(VMCALL).stop).toEqual({ kind: 'exception', vector: 6, errorCode: null });
  });

  it('VMXOFF leaves VMX operation: VMPTRLD is #UD afterwards', () => {
    const r = run([...vmxon, ...VMXOFF, ...vmptrld(VMCS_A)]);
    expect(r.stop).toEqual({ kind: 'exception', vector: 6, errorCode: null });
    expect(r.vmx.on).toBe(false);
  });
});
