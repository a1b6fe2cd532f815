import { describe, expect, it } from 'vitest';
import { VmInstructionError, instructionErrorName, instructionErrorText } from './instruction-errors.js';

describe('VM-instruction error numbers (SDM vol. 3C, 31.4, table 31-1)', () => {
  it('spot checks', () => {
    expect(VmInstructionError.VMCALL_IN_ROOT).toBe(1);
    expect(VmInstructionError.VMLAUNCH_NONCLEAR_VMCS).toBe(4);
    expect(VmInstructionError.VMRESUME_NONLAUNCHED_VMCS).toBe(5);
    expect(VmInstructionError.ENTRY_INVALID_CONTROL_FIELDS).toBe(7);
    expect(VmInstructionError.ENTRY_INVALID_HOST_STATE).toBe(8);
    expect(VmInstructionError.VMPTRLD_INCORRECT_REVISION).toBe(11);
    expect(VmInstructionError.UNSUPPORTED_VMCS_COMPONENT).toBe(12);
    expect(VmInstructionError.VMWRITE_READ_ONLY).toBe(13);
    expect(VmInstructionError.VMXON_IN_ROOT).toBe(15);
    expect(VmInstructionError.ENTRY_EVENTS_BLOCKED_BY_MOV_SS).toBe(26);
    expect(VmInstructionError.INVALID_OPERAND_INVEPT_INVVPID).toBe(28);
  });

  it('the SDM text of a few errors', () => {
    expect(instructionErrorText(7)).toBe('VM entry with invalid control field(s)');
    expect(instructionErrorText(12)).toBe('VMREAD/VMWRITE from/to unsupported VMCS component');
    expect(instructionErrorText(28)).toBe('Invalid operand to INVEPT/INVVPID');
  });

  it('every named error has text and a reverse name; 14, 21, 27 and 0 are unused', () => {
    for (const [name, n] of Object.entries(VmInstructionError)) {
      expect(instructionErrorText(n)).toBeTypeOf('string');
      expect(instructionErrorName(n)).toBe(name);
    }
    for (const unused of [0, 14, 21, 27, 29]) {
      expect(instructionErrorText(unused)).toBeUndefined();
      expect(instructionErrorName(unused)).toBeUndefined();
    }
    const numbers = Object.values(VmInstructionError);
    expect(new Set(numbers).size).toBe(numbers.length);
  });
});
