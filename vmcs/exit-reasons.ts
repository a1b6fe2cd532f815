/**
 * VMX basic exit reasons (SDM vol. 3D, appendix C, table C-1 "Basic Exit
 * Reasons") and the layout of the 32-bit exit-reason field (SDM vol. 3C,
 * 25.9.1 and 28.2.1).
 *
 * Names are the SDM's table entries in UPPER_SNAKE form ("Start-up IPI (SIPI)"
 * → SIPI, "WBINVD or WBNOINVD" → WBINVD_WBNOINVD). Numbers 35, 38, 42, 71, 82
 * and 83 are not used.
 */
import type { BitField } from './qualifications.js';

export const ExitReason = {
  EXCEPTION_OR_NMI: 0,
  EXTERNAL_INTERRUPT: 1,
  TRIPLE_FAULT: 2,
  INIT_SIGNAL: 3,
  SIPI: 4,
  IO_SMI: 5,
  OTHER_SMI: 6,
  INTERRUPT_WINDOW: 7,
  NMI_WINDOW: 8,
  TASK_SWITCH: 9,
  CPUID: 10,
  GETSEC: 11,
  HLT: 12,
  INVD: 13,
  INVLPG: 14,
  RDPMC: 15,
  RDTSC: 16,
  RSM: 17,
  VMCALL: 18,
  VMCLEAR: 19,
  VMLAUNCH: 20,
  VMPTRLD: 21,
  VMPTRST: 22,
  VMREAD: 23,
  VMRESUME: 24,
  VMWRITE: 25,
  VMXOFF: 26,
  VMXON: 27,
  CONTROL_REGISTER_ACCESS: 28,
  MOV_DR: 29,
  IO_INSTRUCTION: 30,
  RDMSR: 31,
  WRMSR: 32,
  VM_ENTRY_FAILURE_INVALID_GUEST_STATE: 33,
  VM_ENTRY_FAILURE_MSR_LOADING: 34,
  MWAIT: 36,
  MONITOR_TRAP_FLAG: 37,
  MONITOR: 39,
  PAUSE: 40,
  VM_ENTRY_FAILURE_MACHINE_CHECK: 41,
  TPR_BELOW_THRESHOLD: 43,
  APIC_ACCESS: 44,
  VIRTUALIZED_EOI: 45,
  GDTR_IDTR_ACCESS: 46,
  LDTR_TR_ACCESS: 47,
  EPT_VIOLATION: 48,
  EPT_MISCONFIGURATION: 49,
  INVEPT: 50,
  RDTSCP: 51,
  VMX_PREEMPTION_TIMER_EXPIRED: 52,
  INVVPID: 53,
  WBINVD_WBNOINVD: 54,
  XSETBV: 55,
  APIC_WRITE: 56,
  RDRAND: 57,
  INVPCID: 58,
  VMFUNC: 59,
  ENCLS: 60,
  RDSEED: 61,
  PAGE_MODIFICATION_LOG_FULL: 62,
  XSAVES: 63,
  XRSTORS: 64,
  PCONFIG: 65,
  SPP_RELATED_EVENT: 66,
  UMWAIT: 67,
  TPAUSE: 68,
  LOADIWKEY: 69,
  ENCLV: 70,
  ENQCMD_PASID_TRANSLATION_FAILURE: 72,
  ENQCMDS_PASID_TRANSLATION_FAILURE: 73,
  BUS_LOCK: 74,
  INSTRUCTION_TIMEOUT: 75,
  SEAMCALL: 76,
  TDCALL: 77,
  RDMSRLIST: 78,
  WRMSRLIST: 79,
  // The four below come from the Intel ISE (USER_MSR and MSR_IMM) and may not
  // be in every SDM revision's appendix C yet.
  URDMSR: 80,
  UWRMSR: 81,
  RDMSR_IMMEDIATE: 84,
  WRMSRNS_IMMEDIATE: 85,
} as const;

export type ExitReasonName = keyof typeof ExitReason;
export type ExitReasonNumber = (typeof ExitReason)[ExitReasonName];

const NAMES: (ExitReasonName | undefined)[] = [];
for (const name of Object.keys(ExitReason) as ExitReasonName[]) NAMES[ExitReason[name]] = name;

/** The name of a basic exit reason (bits 15:0 only), or undefined if the number is unused. */
export function exitReasonName(basic: number): ExitReasonName | undefined {
  return NAMES[basic];
}

/**
 * The exit-reason field (SDM vol. 3C, 25.9.1, table "Format of Exit Reason";
 * 28.2.1). Bits 25:16 and 30 are cleared to 0.
 */
export const EXIT_REASON_FIELD: readonly BitField[] = [
  { name: 'BASIC_EXIT_REASON', lsb: 0, width: 16 },
  // Bit 16 is always cleared to 0 by VM exits.
  { name: 'BUS_LOCK_DETECTED', lsb: 26, width: 1 }, // a bus lock occurred before a VM exit of another reason
  { name: 'ENCLAVE_MODE', lsb: 27, width: 1 }, // the VM exit was incident to enclave mode (SGX)
  { name: 'PENDING_MTF_VM_EXIT', lsb: 28, width: 1 }, // SMM VM exit that took priority over an MTF VM exit
  { name: 'VM_EXIT_FROM_VMX_ROOT_OPERATION', lsb: 29, width: 1 }, // SMM VM exits only
  { name: 'VM_ENTRY_FAILURE', lsb: 31, width: 1 },
];

/** Bit 31 of the exit reason: the "exit" is a VM-entry failure (SDM vol. 3C, 27.8). */
export const EXIT_REASON_VM_ENTRY_FAILURE = 0x80000000;
export const EXIT_REASON_BUS_LOCK_DETECTED = 1 << 26;
export const EXIT_REASON_ENCLAVE_MODE = 1 << 27;
export const EXIT_REASON_PENDING_MTF_VM_EXIT = 1 << 28;
export const EXIT_REASON_FROM_VMX_ROOT = 1 << 29;
