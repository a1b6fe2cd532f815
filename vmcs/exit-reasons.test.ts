import { describe, expect, it } from 'vitest';
import {
  EXIT_REASON_FIELD,
  EXIT_REASON_VM_ENTRY_FAILURE,
  ExitReason,
  exitReasonName,
} from './exit-reasons.js';
import { decodeBits } from './qualifications.js';

describe('basic exit reasons (SDM vol. 3D, appendix C)', () => {
  it('spot checks against table C-1', () => {
    expect(ExitReason.EXCEPTION_OR_NMI).toBe(0);
    expect(ExitReason.TRIPLE_FAULT).toBe(2);
    expect(ExitReason.CPUID).toBe(10);
    expect(ExitReason.HLT).toBe(12);
    expect(ExitReason.VMCALL).toBe(18);
    expect(ExitReason.CONTROL_REGISTER_ACCESS).toBe(28);
    expect(ExitReason.IO_INSTRUCTION).toBe(30);
    expect(ExitReason.RDMSR).toBe(31);
    expect(ExitReason.WRMSR).toBe(32);
    expect(ExitReason.VM_ENTRY_FAILURE_INVALID_GUEST_STATE).toBe(33);
    expect(ExitReason.VM_ENTRY_FAILURE_MSR_LOADING).toBe(34);
    expect(ExitReason.MONITOR_TRAP_FLAG).toBe(37);
    expect(ExitReason.VM_ENTRY_FAILURE_MACHINE_CHECK).toBe(41);
    expect(ExitReason.EPT_VIOLATION).toBe(48);
    expect(ExitReason.EPT_MISCONFIGURATION).toBe(49);
    expect(ExitReason.VMX_PREEMPTION_TIMER_EXPIRED).toBe(52);
    expect(ExitReason.XSETBV).toBe(55);
    expect(ExitReason.XRSTORS).toBe(64);
    expect(ExitReason.BUS_LOCK).toBe(74);
    expect(ExitReason.WRMSRLIST).toBe(79);
  });

  it('numbers are unique and fit bits 15:0', () => {
    const numbers = Object.values(ExitReason);
    expect(new Set(numbers).size).toBe(numbers.length);
    for (const n of numbers) expect(n >= 0 && n <= 0xffff).toBe(true);
  });

  it('exitReasonName inverts the table; unused numbers have no name', () => {
    for (const [name, n] of Object.entries(ExitReason)) expect(exitReasonName(n)).toBe(name);
    for (const unused of [35, 38, 42, 71, 82, 83, 86, 0xffff]) expect(exitReasonName(unused)).toBeUndefined();
  });
});

describe('exit-reason field (SDM vol. 3C, 25.9.1, 28.2.1)', () => {
  it('a VM-entry failure for invalid guest state reads 80000021H', () => {
    const value = (EXIT_REASON_VM_ENTRY_FAILURE | ExitReason.VM_ENTRY_FAILURE_INVALID_GUEST_STATE) >>> 0;
    expect(value).toBe(0x80000021);
    expect(decodeBits(EXIT_REASON_FIELD, value, 0)).toEqual({
      BASIC_EXIT_REASON: 33,
      BUS_LOCK_DETECTED: 0,
      ENCLAVE_MODE: 0,
      PENDING_MTF_VM_EXIT: 0,
      VM_EXIT_FROM_VMX_ROOT_OPERATION: 0,
      VM_ENTRY_FAILURE: 1,
    });
  });

  it('enclave mode is bit 27, pending MTF bit 28, exit from VMX root bit 29', () => {
    const d = decodeBits(EXIT_REASON_FIELD, (1 << 27) | (1 << 28) | (1 << 29) | ExitReason.OTHER_SMI, 0);
    expect(d).toMatchObject({ BASIC_EXIT_REASON: 6, ENCLAVE_MODE: 1, PENDING_MTF_VM_EXIT: 1, VM_EXIT_FROM_VMX_ROOT_OPERATION: 1, VM_ENTRY_FAILURE: 0 });
  });
});
