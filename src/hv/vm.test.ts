/**
 * The hypervisor's default handlers on small 64-bit guests (flat images at
 * 100000H, entered in 64-bit mode by the flat loader): each handler completes
 * the exiting instruction as the processor would.
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { RAX, RBX, RCX, RDX, RSI } from '../cpu/regs.js';
import { vmConfig, type VmConfigInput } from './config.js';
import { HYPERVISOR_SIGNATURE } from './handlers.js';
import type { ExitRecord } from './record.js';
import { createVm, VmConfigError, type Vm } from './vm.js';

const CLI_HLT = [0xfa, 0xf4];
const mov32 = (opcode: number, v: number): number[] => [opcode, v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
const MOV_EAX = 0xb8, MOV_ECX = 0xb9, MOV_EBX = 0xbb, MOV_ESI = 0xbe;

function guest(code: number[], config: VmConfigInput = {}): { vm: Vm; serial: number[] } {
  const serial: number[] = [];
  const vm = createVm(vmConfig(config), { serialOut: (b) => serial.push(b) });
  vm.load(Uint8Array.from(code), { format: 'flat', mode: '64', load: 0x100000 });
  return { vm, serial };
}

/** Runs to the end, returning every exit record and the stop. */
function runAll(vm: Vm): { exits: ExitRecord[]; stop: unknown } {
  const exits: ExitRecord[] = [];
  for (;;) {
    const e = vm.runUntilExit(100_000);
    if ('kind' in e) return { exits, stop: e };
    exits.push(e);
    const r = vm.handle(e);
    if (r !== 'resume') return { exits, stop: r };
    const f = vm.resume();
    if (f !== null) return { exits, stop: f };
  }
}

describe('the VM configuration', () => {
  it('SDM 27.2.1.1: unrestricted guest without EPT is refused, naming the check and its section', () => {
    expect(() => createVm(vmConfig({ ept: false }))).toThrow(VmConfigError);
    expect(() => createVm(vmConfig({ ept: false }))).toThrow(/SDM 27\.2\.1\.1/);
  });

  it('is immutable: vmConfig freezes it, defaults included', () => {
    const c = vmConfig({ exits: { rdtsc: true } });
    expect(Object.isFrozen(c) && Object.isFrozen(c.exits)).toBe(true);
    expect(c.exits.rdtsc).toBe(true);
    expect(c.exits.hlt).toBe(true);
  });
});

describe('default handlers', () => {
  it('SDM 28.3.1, 28.5.1: an intercepted WRMSR/RDMSR of IA32_SYSENTER_ESP works on the guest-state field, not on the host value the exit loaded', () => {
    // wrmsr 175H = 1234_5678H; rdmsr 175H into EDX:EAX; mov ebx, eax
    const MOV_EDX = 0xba;
    const { vm } = guest([...mov32(MOV_ECX, 0x175), ...mov32(MOV_EAX, 0x12345678), ...mov32(MOV_EDX, 0), 0x0f, 0x30,
      ...mov32(MOV_EAX, 0), 0x0f, 0x32, 0x89, 0xc3, ...CLI_HLT], { exits: { msrBitmaps: false } });
    const { exits, stop } = runAll(vm);
    expect(stop).toEqual({ kind: 'halt' });
    expect(exits.map((e) => e.reason)).toEqual([ExitReason.WRMSR, ExitReason.RDMSR, ExitReason.HLT]);
    expect(vm.vmcs.lo(Field.GUEST_IA32_SYSENTER_ESP)).toBe(0x12345678);
    expect(vm.guest.reg(RBX)).toBe(0x12345678n);
    // The host's own value (HOST_IA32_SYSENTER_ESP, loaded at every exit) is what the processor holds in root operation.
    expect(vm.cpu.msrs.sysenterEspLo).toBe(vm.vmcs.lo(Field.HOST_IA32_SYSENTER_ESP));
  });

  it('SDM 26.1.2 (CPUID exits unconditionally): leaf 1 announces a hypervisor and hides VMX; leaf 40000000H gives the signature', () => {
    const { vm } = guest([...mov32(MOV_EAX, 1), 0x0f, 0xa2, 0x89, 0xce /* mov esi, ecx */,
      ...mov32(MOV_EAX, 0x40000000), 0x0f, 0xa2, ...CLI_HLT]);
    const { exits, stop } = runAll(vm);
    expect(stop).toEqual({ kind: 'halt' });
    expect(exits.map((e) => e.reason)).toEqual([ExitReason.CPUID, ExitReason.CPUID, ExitReason.HLT]);
    expect(exits[0]).toMatchObject({ name: 'CPUID', length: 2, insn: 'cpuid' });
    const ecx = Number(vm.guest.reg(RSI));
    expect(ecx >>> 31).toBe(1);
    expect(ecx & (1 << 5)).toBe(0);
    const sig = Buffer.alloc(12);
    [RBX, RCX, RDX].forEach((r, k) => sig.writeUInt32LE(Number(vm.guest.reg(r)), 4 * k));
    expect(sig.toString('latin1')).toBe(HYPERVISOR_SIGNATURE);
    // Emulated instructions count as retired, as on the bare processor: MOV, CPUID, MOV, MOV, CPUID, CLI, HLT.
    expect(vm.instructions).toBe(7);
  });

  it('SDM vol. 2 OUTS with REP, 28.2.5 (instruction information): REP OUTSB writes RCX bytes from DS:RSI to the port and leaves RCX = 0', () => {
    const text = Buffer.from('hello\n');
    const data = 0x100000 + 32;
    const code = [...mov32(MOV_ESI, data), ...mov32(MOV_ECX, text.length), 0x66, 0xba, 0xf8, 0x03 /* mov dx, 3f8h */,
      0xf3, 0x6e /* rep outsb */, ...CLI_HLT];
    while (code.length < 32) code.push(0x90);
    const { vm, serial } = guest([...code, ...text]);
    const { exits } = runAll(vm);
    expect(Buffer.from(serial).toString('latin1')).toBe('hello\n');
    const outs = exits.find((e) => e.reason === ExitReason.IO_INSTRUCTION)!;
    expect(outs).toMatchObject({ length: 2, insn: 'rep outsb', decoded: { STRING_INSTRUCTION: 1, REP_PREFIXED: 1, PORT_NUMBER: 0x3f8 } });
    expect(outs.guestLinear).toBe(BigInt(data));
    expect(vm.guest.reg(RCX)).toBe(0n);
    expect(vm.guest.reg(RSI)).toBe(BigInt(data + text.length));
  });

  it('hypercalls (VMCALL, 26.1.2): PRINT copies guest memory to the serial output, EXIT stops as the debug-exit port would, with (v << 1) | 1', () => {
    const text = Buffer.from('hi');
    const data = 0x100000 + 48;
    const code = [...mov32(MOV_EAX, 0), ...mov32(MOV_EBX, data), ...mov32(MOV_ECX, text.length), 0x0f, 0x01, 0xc1,
      ...mov32(MOV_EAX, 1), ...mov32(MOV_EBX, 7), 0x0f, 0x01, 0xc1, ...CLI_HLT];
    while (code.length < 48) code.push(0x90);
    const { vm, serial } = guest([...code, ...text]);
    expect(runAll(vm).stop).toEqual({ kind: 'exit', status: 15 });
    expect(Buffer.from(serial).toString('latin1')).toBe('hi');
  });

  it('SDM 25.6.6 (guest/host masks and read shadows): the guest reads its own CR4 while VMX operation keeps CR4.VMXE = 1', () => {
    const { vm } = guest([0x0f, 0x20, 0xe0 /* mov rax, cr4 */, ...CLI_HLT]);
    runAll(vm);
    expect(Number(vm.guest.reg(RAX)) & (1 << 13)).toBe(0);
    expect(vm.vmcs.lo(Field.GUEST_CR4) & (1 << 13)).not.toBe(0);
  });

  it('SDM 26.1.3 (CR4 writes under the mask exit) and vol. 2 MOV CR: setting CR4.VMXE, which the guest is not offered, injects #GP(0) (27.6) without completing the MOV', () => {
    // mov rax, cr4; bts eax, 13; mov cr4, rax
    const { vm } = guest([0x0f, 0x20, 0xe0, 0x0f, 0xba, 0xe8, 0x0d, 0x0f, 0x22, 0xe0, ...CLI_HLT]);
    const e = vm.runUntilExit();
    expect(e).toMatchObject({ name: 'CONTROL_REGISTER_ACCESS', length: 3, insn: 'mov cr4, rax', decoded: { CONTROL_REGISTER: 4, ACCESS_TYPE: 0 } });
    expect(vm.handle(e as ExitRecord)).toBe('resume');
    // Valid, hardware exception (type 3), deliver error code, vector 13; RIP still at the MOV.
    expect(vm.vmcs.lo(Field.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD) >>> 0).toBe(0x80000b0d);
    expect(vm.vmcs.lo(Field.VM_ENTRY_EXCEPTION_ERROR_CODE)).toBe(0);
    expect(vm.guest.rip).toBe((e as ExitRecord).rip);
  });
});
