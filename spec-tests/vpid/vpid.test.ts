/**
 * VPIDs and the tagged TLB (SDM vol. 3C, 29.1 "Virtual Processor Identifiers",
 * 29.4.3 "Maintaining Consistency": VM entries and exits invalidate nothing
 * when VPIDs are in use, and all mappings of VPID 0000H when they are not;
 * 31.3 INVVPID): a guest's stale translation survives exits and entries until
 * INVVPID removes it.
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { VmInstructionError } from '../../vmcs/instruction-errors.js';
import type { Cpu } from '../../src/cpu/cpu.js';
import { run } from '../../src/cpu/run.js';
import { vmEntry } from '../../src/vmx/entry.js';
import { guestPteAddress, runInGuest, type GuestRun } from '../../src/vmx/testing.js';

const X = 0x50000, OTHER = 0x51000;
const VMCALL = [0x0f, 0x01, 0xc1];
// mov al, [X]; vmcall; mov bl, [X]; vmcall
const GUEST = [0x8a, 0x04, 0x25, 0x00, 0x00, 0x05, 0x00, ...VMCALL, 0x8a, 0x1c, 0x25, 0x00, 0x00, 0x05, 0x00, ...VMCALL];
const INVVPID_RCX_RAX = [0x66, 0x0f, 0x38, 0x81, 0x08]; // invvpid rcx, [rax]

function withVpid(vpid: number) {
  return (v: import('../../src/vmx/vmcs.js').Vmcs, cpu: Cpu): void => {
    cpu.memory.write8(X, 0x11);
    cpu.memory.write8(OTHER, 0x22);
    if (vpid !== 0) {
      v.set(Field.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, v.lo(Field.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS) | (1 << 5));
      v.set(Field.VIRTUAL_PROCESSOR_IDENTIFIER, vpid);
    }
  };
}

/** After the guest's first VMCALL: the host maps X to OTHER in the guest's tables, runs `host` code, and resumes the guest. */
function remapAndResume(r: GuestRun, host: number[] = []): void {
  const cpu = r.cpu;
  cpu.memory.write32(guestPteAddress(X), OTHER | 7);
  if (host.length > 0) {
    cpu.memory.load(0x402000, Uint8Array.from([...host, 0xf4]));
    cpu.ripLo = 0x402000; cpu.ripHi = 0; cpu.halted = false; // the host left its HLT
    run(cpu, 100);
  }
  r.vmcs.set(Field.GUEST_RIP, r.vmcs.lo(Field.GUEST_RIP) + 3);
  vmEntry(r.vmx, cpu, false);
  run(cpu, 100);
}

describe('the TLB across VM exits and entries (29.4.3.1)', () => {
  it('without VPIDs, the transitions flush: the guest sees its remapped page', () => {
    const r = runInGuest(GUEST, withVpid(0));
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[0]! & 0xff).toBe(0x11);
    remapAndResume(r);
    expect(r.cpu.gpr[2 * 3]! & 0xff).toBe(0x22);
  });

  it('with a VPID, the guest keeps using its cached translation: the stale mapping stays visible', () => {
    const r = runInGuest(GUEST, withVpid(1));
    expect(r.cpu.gpr[0]! & 0xff).toBe(0x11);
    remapAndResume(r);
    expect(r.vmcs.lo(Field.EXIT_REASON)).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[2 * 3]! & 0xff).toBe(0x11);
  });

  for (const [type, name] of [[0, 'individual address'], [1, 'single context'], [2, 'all contexts'], [3, 'single context retaining globals']] as const) {
    it(`INVVPID type ${type} (${name}) in the host removes it: the guest sees the remapped page`, () => {
      const r = runInGuest(GUEST, withVpid(1));
      // Descriptor at 0x403000: VPID 1, linear address X.
      r.cpu.memory.write32(0x403000, 1); r.cpu.memory.write32(0x403004, 0);
      r.cpu.memory.write32(0x403008, X); r.cpu.memory.write32(0x40300c, 0);
      const host = [0x48, 0xb8, 0x00, 0x30, 0x40, 0, 0, 0, 0, 0, 0xb9, type, 0, 0, 0, ...INVVPID_RCX_RAX];
      remapAndResume(r, host);
      expect(r.cpu.gpr[2 * 3]! & 0xff).toBe(0x22);
    });
  }

  it('INVVPID of another VPID leaves the guest\'s translation alone', () => {
    const r = runInGuest(GUEST, withVpid(1));
    r.cpu.memory.write32(0x403000, 2); r.cpu.memory.write32(0x403004, 0);
    const host = [0x48, 0xb8, 0x00, 0x30, 0x40, 0, 0, 0, 0, 0, 0xb9, 1, 0, 0, 0, ...INVVPID_RCX_RAX];
    remapAndResume(r, host);
    expect(r.cpu.gpr[2 * 3]! & 0xff).toBe(0x11);
  });
});

describe('INVVPID operands (31.3 INVVPID: VMfailValid(28))', () => {
  const cases: [string, number, number, number][] = [
    ['type 4 is not supported', 4, 1, 0],
    ['VPID 0 for type 1', 1, 0, 0],
    ['bits 63:16 of the descriptor set', 1, 0x10001, 0],
    ['a non-canonical address for type 0', 0, 1, 0x8000],
  ];
  for (const [name, type, descLo, addrHi] of cases) {
    it(name, () => {
      const r = runInGuest(VMCALL, withVpid(1));
      const cpu = r.cpu;
      cpu.memory.write32(0x403000, descLo); cpu.memory.write32(0x403004, 0);
      cpu.memory.write32(0x403008, 0); cpu.memory.write32(0x40300c, addrHi);
      cpu.memory.load(0x402000, Uint8Array.from([0x48, 0xb8, 0x00, 0x30, 0x40, 0, 0, 0, 0, 0, 0xb9, type, 0, 0, 0,
        ...INVVPID_RCX_RAX, 0x9c, 0x5a, 0xf4])); // pushfq; pop rdx; hlt
      cpu.ripLo = 0x402000; cpu.ripHi = 0; cpu.halted = false;
      run(cpu, 100);
      expect(cpu.gpr[2 * 2]! & 0x41).toBe(0x40); // ZF: VMfailValid
      expect(r.vmcs.lo(Field.VM_INSTRUCTION_ERROR)).toBe(VmInstructionError.INVALID_OPERAND_INVEPT_INVVPID);
    });
  }
});
