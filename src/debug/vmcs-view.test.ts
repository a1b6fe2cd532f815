import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { SKYLAKE_VMX } from '../vmx/capabilities.js';
import { Vmcs } from '../vmx/vmcs.js';
import { conditionsHold, describeBreakpoint, parseCondition } from './breakpoints.js';
import { didYouMean, editDistance, parseCount, parseExitReason, parseNumber } from './names.js';
import { decodeField, existingFields, findField, vmcsDiff, vmcsState } from './vmcs-view.js';
import { tinyEngine } from './testing.js';

const fields = existingFields(SKYLAKE_VMX);

describe('VMCS states (immer)', () => {
  it('are frozen and share the groups an exit did not change with the state before', () => {
    const v = new Vmcs(0x1000);
    const a = vmcsState(v, fields, null);
    v.set(Field.GUEST_RIP, 0x1234);
    v.set(Field.EXIT_REASON, ExitReason.CPUID);
    const b = vmcsState(v, fields, a);
    expect(Object.isFrozen(b) && Object.isFrozen(b.guest)).toBe(true);
    expect(b.host).toBe(a.host);
    expect(b.control).toBe(a.control);
    expect(b.guest).not.toBe(a.guest);
    expect(vmcsState(v, fields, b)).toBe(b);
    expect(vmcsDiff(a, b, fields)).toEqual([
      { name: 'EXIT_REASON', type: 'read-only', before: 0n, after: 10n },
      { name: 'GUEST_RIP', type: 'guest', before: 0n, after: 0x1234n },
    ]);
  });

  it('knows only the fields this processor has (appendix B notes), and suggests close names', () => {
    expect(fields.some((f) => f.name === 'EPT_POINTER')).toBe(true);
    expect(fields.some((f) => f.name === 'POSTED_INTERRUPT_DESCRIPTOR_ADDRESS')).toBe(false);
    expect(findField('guest_rip', fields).name).toBe('GUEST_RIP');
    expect(() => findField('POSTED_INTERRUPT_DESCRIPTOR_ADDRESS', fields)).toThrow(/does not exist on this processor/);
    expect(() => findField('GEST_RIP', fields)).toThrow(/did you mean GUEST_RIP/);
  });
});

describe('decoding fields by name', () => {
  it('names control bits (SDM 25.6-25.8) and counts the rest', () => {
    expect(decodeField('PIN_BASED_VM_EXECUTION_CONTROLS', 0x3fn, null)).toBe('EXTERNAL_INTERRUPT_EXITING NMI_EXITING VIRTUAL_NMIS; other bits 1 2 4');
    expect(decodeField('SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS', 0xa2n, null)).toBe('ENABLE_EPT ENABLE_VPID UNRESTRICTED_GUEST');
    expect(decodeField('EXCEPTION_BITMAP', 1n << 14n, null)).toBe('#PF');
  });

  it('decodes the qualification and the instruction information by the exit reason (SDM 28.2.1, 28.2.5)', () => {
    // MOV to CR3 from RAX (table 28-3).
    expect(decodeField('EXIT_QUALIFICATION', 0x3n, ExitReason.CONTROL_REGISTER_ACCESS))
      .toBe('CONTROL_REGISTER=3 ACCESS_TYPE=0 (MOV to CR) LMSW_OPERAND_TYPE=0 (register) GENERAL_PURPOSE_REGISTER=0 (RAX) LMSW_SOURCE_DATA=0x0');
    expect(decodeField('EXIT_QUALIFICATION', 0x3n, ExitReason.CPUID)).toBe('');
    expect(decodeField('EXIT_REASON', 0x80000021n, null)).toBe('VM_ENTRY_FAILURE_INVALID_GUEST_STATE BUS_LOCK_DETECTED=0 ENCLAVE_MODE=0 PENDING_MTF_VM_EXIT=0 VM_EXIT_FROM_VMX_ROOT_OPERATION=0 VM_ENTRY_FAILURE=1');
    expect(decodeField('VM_EXIT_INTERRUPTION_INFORMATION', 0x80000b0en, null)).toMatch(/^VECTOR=0xe INTERRUPTION_TYPE=3 \(hardware exception\) DELIVER_ERROR_CODE=1 .*VALID=1 \[#PF\]$/);
  });

  it('decodes guest state: access rights, activity, interruptibility, CR0, EFER, the VM-instruction error', () => {
    expect(decodeField('GUEST_CS_ACCESS_RIGHTS', 0xa09bn, null)).toBe('type=11 S DPL=0 P L G');
    expect(decodeField('GUEST_LDTR_ACCESS_RIGHTS', 0x10000n, null)).toBe('unusable');
    expect(decodeField('GUEST_ACTIVITY_STATE', 1n, null)).toBe('HLT');
    expect(decodeField('GUEST_INTERRUPTIBILITY_STATE', 1n, null)).toBe('BLOCKING_BY_STI');
    expect(decodeField('GUEST_CR0', 0x80000031n, null)).toBe('PE ET NE PG');
    expect(decodeField('HOST_IA32_EFER', 0xd01n, null)).toBe('SCE LME LMA NXE');
    expect(decodeField('VM_INSTRUCTION_ERROR', 7n, null)).toMatch(/control/i);
    expect(decodeField('GUEST_RSP', 0x1234n, null)).toBe('');
  });
});

describe('exit-breakpoint conditions', () => {
  it('name qualification fields (or their short names), exit-record fields and VMCS fields', () => {
    expect(parseCondition('port=0x3f8', ExitReason.IO_INSTRUCTION, fields)).toMatchObject({ field: 'PORT_NUMBER', source: 'qualification', equal: true, value: 0x3f8n });
    expect(parseCondition('CONTROL_REGISTER=3', ExitReason.CONTROL_REGISTER_ACCESS, fields)).toMatchObject({ field: 'CONTROL_REGISTER', value: 3n });
    expect(parseCondition('direction=in', ExitReason.IO_INSTRUCTION, fields)).toMatchObject({ field: 'DIRECTION', value: 1n, text: 'DIRECTION=in' });
    expect(parseCondition('ACCESS_TYPE=MOV_from_CR', ExitReason.CONTROL_REGISTER_ACCESS, fields)).toMatchObject({ value: 1n });
    expect(parseCondition('GUEST_RIP!=0x1000', null, fields)).toMatchObject({ source: 'vmcs', equal: false, encoding: Field.GUEST_RIP });
    expect(parseCondition('vector=14', ExitReason.EXCEPTION_OR_NMI, fields)).toMatchObject({ source: 'record', field: 'vector' });
    expect(() => parseCondition('prot=1', ExitReason.IO_INSTRUCTION, fields)).toThrow(/did you mean port\?/);
    expect(() => parseCondition('port', ExitReason.IO_INSTRUCTION, fields)).toThrow(/FIELD=VALUE/);
    expect(() => parseCondition('port=0xfffffffffffffffff', ExitReason.IO_INSTRUCTION, fields)).toThrow(/does not fit in 64 bits/);
  });

  it('hold when every one does, with the VMCS as the exit left it', () => {
    const e = tinyEngine();
    const exit = e.nextExit().exit!;
    const hold = (...c: string[]): boolean => conditionsHold(c.map((x) => parseCondition(x, ExitReason.IO_INSTRUCTION, e.fields)), exit, e.vm.vmcs);
    expect(hold('port=0x80')).toBe(true);
    expect(hold('port=0x80', 'GUEST_RIP=0x100c', 'DIRECTION=OUT', 'length=2')).toBe(true);
    expect(hold('port=0x80', 'GUEST_RIP!=0x100c')).toBe(false);
    expect(hold('vector=1')).toBe(false);
    expect(describeBreakpoint({ kind: 'exit', reason: 30, conditions: [parseCondition('port=0x80', 30, e.fields)] })).toBe('on VM exit IO_INSTRUCTION PORT_NUMBER=0x80');
  });
});

describe('names and numbers', () => {
  it('suggest close names, transpositions included', () => {
    expect(editDistance('stpe', 'step')).toBe(1);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(didYouMean('contnue', ['continue', 'step'])).toBe(' (did you mean continue?)');
    expect(didYouMean('zzzz', ['continue', 'step'])).toBe('');
  });

  it('parse exit reasons by SDM name, short name or number, and counts', () => {
    expect(parseExitReason('CR_ACCESS')).toBe(ExitReason.CONTROL_REGISTER_ACCESS);
    expect(parseExitReason('io_instruction')).toBe(30);
    expect(parseExitReason('0x1e')).toBe(30);
    expect(() => parseExitReason('35')).toThrow(/no exit reason 35/);
    expect(() => parseExitReason('CPUIDD')).toThrow(/did you mean CPUID\?/);
    expect(parseNumber('0xffff_8000_0000_0000', 'an address')).toBe(0xffff800000000000n);
    expect(parseCount('0x10', 1, 'the count')).toBe(16);
    expect(() => parseCount('0', 1, 'the count')).toThrow(/between 1 and/);
  });
});
