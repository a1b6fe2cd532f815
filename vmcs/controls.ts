/**
 * VMX control bits and other bit-level formats of the VMCS and of the VMX
 * capability MSRs, as data.
 *
 * - Control bit positions: SDM vol. 3C, 25.6.1 (pin-based), 25.6.2 (primary,
 *   secondary, tertiary processor-based), 25.7.1 (VM-exit), 25.8.1 (VM-entry),
 *   25.6.14 (VM-function controls). Key names are the SDM's control names in
 *   UPPER_SNAKE form ("activate VMX-preemption timer" →
 *   ACTIVATE_VMX_PREEMPTION_TIMER).
 * - Default1 classes: SDM vol. 3D, appendix A.3.1, A.3.2, A.4, A.5.
 * - Guest non-register state formats: SDM vol. 3C, 25.4.2.
 * - Event-information formats: 25.8.3 (VM-entry), 25.9.2 / 28.2.2 (VM-exit
 *   interruption information), 25.9.3 / 28.2.4 (IDT-vectoring information).
 * - Capability MSRs: SDM vol. 3D, appendix A; IA32_FEATURE_CONTROL: vol. 3C,
 *   24.7 and vol. 4, table 2-2.
 *
 * A "capability" is a string `group.CONTROL` (e.g. `secondary.ENABLE_VPID`)
 * naming the 1-setting of one control; VMCS fields in fields.ts say which
 * capability they exist with.
 */
import type { BitField } from './qualifications.js';

/** Pin-based VM-execution controls (SDM vol. 3C, 25.6.1). */
export const PinBasedControls = {
  EXTERNAL_INTERRUPT_EXITING: 0,
  NMI_EXITING: 3,
  VIRTUAL_NMIS: 5,
  ACTIVATE_VMX_PREEMPTION_TIMER: 6,
  PROCESS_POSTED_INTERRUPTS: 7,
} as const;

/** Primary processor-based VM-execution controls (SDM vol. 3C, 25.6.2). */
export const PrimaryProcessorBasedControls = {
  INTERRUPT_WINDOW_EXITING: 2,
  USE_TSC_OFFSETTING: 3,
  HLT_EXITING: 7,
  INVLPG_EXITING: 9,
  MWAIT_EXITING: 10,
  RDPMC_EXITING: 11,
  RDTSC_EXITING: 12,
  CR3_LOAD_EXITING: 15,
  CR3_STORE_EXITING: 16,
  ACTIVATE_TERTIARY_CONTROLS: 17,
  CR8_LOAD_EXITING: 19,
  CR8_STORE_EXITING: 20,
  USE_TPR_SHADOW: 21,
  NMI_WINDOW_EXITING: 22,
  MOV_DR_EXITING: 23,
  UNCONDITIONAL_IO_EXITING: 24,
  USE_IO_BITMAPS: 25,
  MONITOR_TRAP_FLAG: 27,
  USE_MSR_BITMAPS: 28,
  MONITOR_EXITING: 29,
  PAUSE_EXITING: 30,
  ACTIVATE_SECONDARY_CONTROLS: 31,
} as const;

/** Secondary processor-based VM-execution controls (SDM vol. 3C, 25.6.2). */
export const SecondaryProcessorBasedControls = {
  VIRTUALIZE_APIC_ACCESSES: 0,
  ENABLE_EPT: 1,
  DESCRIPTOR_TABLE_EXITING: 2,
  ENABLE_RDTSCP: 3,
  VIRTUALIZE_X2APIC_MODE: 4,
  ENABLE_VPID: 5,
  WBINVD_EXITING: 6,
  UNRESTRICTED_GUEST: 7,
  APIC_REGISTER_VIRTUALIZATION: 8,
  VIRTUAL_INTERRUPT_DELIVERY: 9,
  PAUSE_LOOP_EXITING: 10,
  RDRAND_EXITING: 11,
  ENABLE_INVPCID: 12,
  ENABLE_VM_FUNCTIONS: 13,
  VMCS_SHADOWING: 14,
  ENABLE_ENCLS_EXITING: 15,
  RDSEED_EXITING: 16,
  ENABLE_PML: 17,
  EPT_VIOLATION_VE: 18,
  CONCEAL_VMX_FROM_PT: 19,
  ENABLE_XSAVES_XRSTORS: 20,
  PASID_TRANSLATION: 21,
  MODE_BASED_EXECUTE_CONTROL_FOR_EPT: 22,
  SUB_PAGE_WRITE_PERMISSIONS_FOR_EPT: 23,
  INTEL_PT_USES_GUEST_PHYSICAL_ADDRESSES: 24,
  USE_TSC_SCALING: 25,
  ENABLE_USER_WAIT_AND_PAUSE: 26,
  ENABLE_PCONFIG: 27,
  ENABLE_ENCLV_EXITING: 28,
  VMM_BUS_LOCK_DETECTION: 30,
  INSTRUCTION_TIMEOUT: 31,
} as const;

/**
 * Tertiary processor-based VM-execution controls, a 64-bit field (SDM vol. 3C,
 * 25.6.2). Bit 5 is not named here.
 */
export const TertiaryProcessorBasedControls = {
  LOADIWKEY_EXITING: 0,
  ENABLE_HLAT: 1,
  EPT_PAGING_WRITE_CONTROL: 2,
  GUEST_PAGING_VERIFICATION: 3,
  IPI_VIRTUALIZATION: 4,
  ENABLE_MSR_LIST_INSTRUCTIONS: 6,
  VIRTUALIZE_IA32_SPEC_CTRL: 7,
} as const;

/** Primary VM-exit controls (SDM vol. 3C, 25.7.1). */
export const VmExitControls = {
  SAVE_DEBUG_CONTROLS: 2,
  HOST_ADDRESS_SPACE_SIZE: 9,
  LOAD_IA32_PERF_GLOBAL_CTRL: 12,
  ACKNOWLEDGE_INTERRUPT_ON_EXIT: 15,
  SAVE_IA32_PAT: 18,
  LOAD_IA32_PAT: 19,
  SAVE_IA32_EFER: 20,
  LOAD_IA32_EFER: 21,
  SAVE_VMX_PREEMPTION_TIMER_VALUE: 22,
  CLEAR_IA32_BNDCFGS: 23,
  CONCEAL_VMX_FROM_PT: 24,
  CLEAR_IA32_RTIT_CTL: 25,
  CLEAR_IA32_LBR_CTL: 26,
  CLEAR_UINV: 27,
  LOAD_CET_STATE: 28,
  LOAD_PKRS: 29,
  SAVE_IA32_PERF_GLOBAL_CTRL: 30,
  ACTIVATE_SECONDARY_CONTROLS: 31,
} as const;

/**
 * Secondary VM-exit controls, a 64-bit field present when the primary control
 * "activate secondary controls" (bit 31) is 1. The two bits named here are
 * FRED's (FRED specification, "VMX interactions"); other bits are not modelled.
 */
export const SecondaryVmExitControls = {
  SAVE_FRED: 0,
  LOAD_FRED: 1,
} as const;

/** VM-entry controls (SDM vol. 3C, 25.8.1). Bit 23 is FRED's. */
export const VmEntryControls = {
  LOAD_DEBUG_CONTROLS: 2,
  IA_32E_MODE_GUEST: 9,
  ENTRY_TO_SMM: 10,
  DEACTIVATE_DUAL_MONITOR_TREATMENT: 11,
  LOAD_IA32_PERF_GLOBAL_CTRL: 13,
  LOAD_IA32_PAT: 14,
  LOAD_IA32_EFER: 15,
  LOAD_IA32_BNDCFGS: 16,
  CONCEAL_VMX_FROM_PT: 17,
  LOAD_IA32_RTIT_CTL: 18,
  LOAD_UINV: 19,
  LOAD_CET_STATE: 20,
  LOAD_GUEST_IA32_LBR_CTL: 21,
  LOAD_PKRS: 22,
  LOAD_FRED: 23,
} as const;

/** VM-function controls (SDM vol. 3C, 25.6.14); capability MSR IA32_VMX_VMFUNC (A.11). */
export const VmFunctionControls = {
  EPTP_SWITCHING: 0,
} as const;

/**
 * Capabilities that are not a control's 1-setting. SEAM: the field exists only
 * for Intel TDX's SEAM VMX root operation, which hvsim never models.
 */
export const OtherFeatures = {
  SEAM: 0,
} as const;

/** Every group of named bits a capability can come from. */
export const CONTROL_GROUPS = {
  pin: PinBasedControls,
  proc: PrimaryProcessorBasedControls,
  secondary: SecondaryProcessorBasedControls,
  tertiary: TertiaryProcessorBasedControls,
  exit: VmExitControls,
  exit2: SecondaryVmExitControls,
  entry: VmEntryControls,
  vmfunc: VmFunctionControls,
  feature: OtherFeatures,
} as const;

export type ControlGroup = keyof typeof CONTROL_GROUPS;

/** `group.CONTROL`: the 1-setting of one control (or one other feature) a VMCS field exists with. */
export type Capability = {
  [G in ControlGroup]: `${G}.${Extract<keyof (typeof CONTROL_GROUPS)[G], string>}`;
}[ControlGroup];

/** Splits a capability into its group and bit position. */
export function capabilityBit(cap: Capability): { group: ControlGroup; bit: number } {
  const dot = cap.indexOf('.');
  const group = cap.slice(0, dot) as ControlGroup;
  const bits = CONTROL_GROUPS[group] as Record<string, number>;
  return { group, bit: bits[cap.slice(dot + 1)]! };
}

/** The 32-bit mask with the given bit positions set. */
export function maskOf(bits: readonly number[]): number {
  let m = 0;
  for (const b of bits) m |= 1 << b;
  return m >>> 0;
}

/**
 * Default1 classes: bits that the non-TRUE capability MSRs report as always 1
 * (allowed-0 setting 1). Software that uses the TRUE MSRs (IA32_VMX_BASIC[55]
 * = 1) may clear those of them the TRUE MSR allows (SDM vol. 3D, A.2).
 * Two of these are defined controls: CR3-load/CR3-store exiting and
 * save/load debug controls, which older processors forced to 1.
 */
export const DEFAULT1_BITS = {
  pin: [1, 2, 4], // A.3.1
  proc: [1, 4, 5, 6, 8, 13, 14, 15, 16, 26], // A.3.2
  exit: [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 14, 16, 17], // A.4
  entry: [0, 1, 2, 3, 4, 5, 6, 7, 8, 12], // A.5
} as const;

export const DEFAULT1 = {
  pin: maskOf(DEFAULT1_BITS.pin),
  proc: maskOf(DEFAULT1_BITS.proc),
  exit: maskOf(DEFAULT1_BITS.exit),
  entry: maskOf(DEFAULT1_BITS.entry),
} as const;

/** VMX capability MSRs (SDM vol. 3D, appendix A; vol. 4, table 2-2) and IA32_FEATURE_CONTROL. */
export const VmxMsr = {
  IA32_FEATURE_CONTROL: 0x3a,
  IA32_VMX_BASIC: 0x480,
  IA32_VMX_PINBASED_CTLS: 0x481,
  IA32_VMX_PROCBASED_CTLS: 0x482,
  IA32_VMX_EXIT_CTLS: 0x483,
  IA32_VMX_ENTRY_CTLS: 0x484,
  IA32_VMX_MISC: 0x485,
  IA32_VMX_CR0_FIXED0: 0x486,
  IA32_VMX_CR0_FIXED1: 0x487,
  IA32_VMX_CR4_FIXED0: 0x488,
  IA32_VMX_CR4_FIXED1: 0x489,
  IA32_VMX_VMCS_ENUM: 0x48a,
  IA32_VMX_PROCBASED_CTLS2: 0x48b,
  IA32_VMX_EPT_VPID_CAP: 0x48c,
  IA32_VMX_TRUE_PINBASED_CTLS: 0x48d,
  IA32_VMX_TRUE_PROCBASED_CTLS: 0x48e,
  IA32_VMX_TRUE_EXIT_CTLS: 0x48f,
  IA32_VMX_TRUE_ENTRY_CTLS: 0x490,
  IA32_VMX_VMFUNC: 0x491,
  IA32_VMX_PROCBASED_CTLS3: 0x492,
  IA32_VMX_EXIT_CTLS2: 0x493,
} as const;

/**
 * Which capability MSR reports each control group. 32-bit groups: bits 31:0
 * are the allowed 0-settings, bits 63:32 the allowed 1-settings (A.3-A.5);
 * `true` is the TRUE MSR used when IA32_VMX_BASIC[55] = 1. 64-bit groups
 * (tertiary, exit2, vmfunc) report only allowed 1-settings (A.3.4, A.4.2, A.11).
 */
export const CAPABILITY_MSR = {
  pin: { msr: VmxMsr.IA32_VMX_PINBASED_CTLS, true: VmxMsr.IA32_VMX_TRUE_PINBASED_CTLS },
  proc: { msr: VmxMsr.IA32_VMX_PROCBASED_CTLS, true: VmxMsr.IA32_VMX_TRUE_PROCBASED_CTLS },
  secondary: { msr: VmxMsr.IA32_VMX_PROCBASED_CTLS2, true: null },
  tertiary: { msr: VmxMsr.IA32_VMX_PROCBASED_CTLS3, true: null },
  exit: { msr: VmxMsr.IA32_VMX_EXIT_CTLS, true: VmxMsr.IA32_VMX_TRUE_EXIT_CTLS },
  exit2: { msr: VmxMsr.IA32_VMX_EXIT_CTLS2, true: null },
  entry: { msr: VmxMsr.IA32_VMX_ENTRY_CTLS, true: VmxMsr.IA32_VMX_TRUE_ENTRY_CTLS },
  vmfunc: { msr: VmxMsr.IA32_VMX_VMFUNC, true: null },
} as const;

/** IA32_FEATURE_CONTROL (MSR 3AH) bits (SDM vol. 3C, 24.7; vol. 4, table 2-2). */
export const FeatureControl = {
  LOCK: 0,
  ENABLE_VMX_INSIDE_SMX: 1,
  ENABLE_VMX_OUTSIDE_SMX: 2,
  SENTER_GLOBAL_ENABLE: 15,
  SGX_LAUNCH_CONTROL_ENABLE: 17,
  SGX_GLOBAL_ENABLE: 18,
  LMCE_ON: 20,
} as const;

export const FEATURE_CONTROL_LAYOUT: readonly BitField[] = [
  { name: 'LOCK', lsb: 0, width: 1 },
  { name: 'ENABLE_VMX_INSIDE_SMX', lsb: 1, width: 1 },
  { name: 'ENABLE_VMX_OUTSIDE_SMX', lsb: 2, width: 1 },
  { name: 'SENTER_LOCAL_FUNCTION_ENABLES', lsb: 8, width: 7 },
  { name: 'SENTER_GLOBAL_ENABLE', lsb: 15, width: 1 },
  { name: 'SGX_LAUNCH_CONTROL_ENABLE', lsb: 17, width: 1 },
  { name: 'SGX_GLOBAL_ENABLE', lsb: 18, width: 1 },
  { name: 'LMCE_ON', lsb: 20, width: 1 },
];

/** IA32_VMX_BASIC (SDM vol. 3D, A.1). Bit 31 is always 0. */
export const VMX_BASIC_LAYOUT: readonly BitField[] = [
  { name: 'VMCS_REVISION_IDENTIFIER', lsb: 0, width: 31 },
  { name: 'VMCS_REGION_SIZE', lsb: 32, width: 13 }, // bytes, at most 4096
  { name: 'PHYSICAL_ADDRESS_WIDTH_32', lsb: 48, width: 1 }, // always 0 on Intel 64 processors
  { name: 'DUAL_MONITOR_TREATMENT', lsb: 49, width: 1 },
  { name: 'VMCS_MEMORY_TYPE', lsb: 50, width: 4, values: { 0: 'UC', 6: 'WB' } },
  { name: 'INS_OUTS_INSTRUCTION_INFORMATION', lsb: 54, width: 1 },
  { name: 'TRUE_CONTROLS', lsb: 55, width: 1 }, // the IA32_VMX_TRUE_*_CTLS MSRs exist
  { name: 'NO_HARDWARE_EXCEPTION_ERROR_CODE_CHECK', lsb: 56, width: 1 }, // VM entry may inject any hardware exception with or without error code
  { name: 'NESTED_EXCEPTION', lsb: 58, width: 1 }, // FRED: bit 13 of event information fields
];

/** IA32_VMX_MISC (SDM vol. 3D, A.6). */
export const VMX_MISC_LAYOUT: readonly BitField[] = [
  { name: 'PREEMPTION_TIMER_TSC_RATE', lsb: 0, width: 5 }, // timer counts down when TSC bit X changes
  { name: 'STORE_EFER_LMA_ON_EXIT', lsb: 5, width: 1 }, // VM exits store EFER.LMA into "IA-32e mode guest"
  { name: 'ACTIVITY_STATE_HLT', lsb: 6, width: 1 },
  { name: 'ACTIVITY_STATE_SHUTDOWN', lsb: 7, width: 1 },
  { name: 'ACTIVITY_STATE_WAIT_FOR_SIPI', lsb: 8, width: 1 },
  { name: 'INTEL_PT_IN_VMX_OPERATION', lsb: 14, width: 1 },
  { name: 'RDMSR_SMBASE_IN_SMM', lsb: 15, width: 1 },
  { name: 'CR3_TARGET_VALUES', lsb: 16, width: 9 },
  { name: 'MAX_MSR_LIST_SIZE', lsb: 25, width: 3 }, // recommended maximum is 512 * (N + 1) entries
  { name: 'SMM_MONITOR_CTL_BIT2', lsb: 28, width: 1 },
  { name: 'VMWRITE_ANY_FIELD', lsb: 29, width: 1 }, // VMWRITE may write VM-exit information fields
  { name: 'ZERO_LENGTH_INSTRUCTION_INJECTION', lsb: 30, width: 1 },
  { name: 'MSEG_REVISION_IDENTIFIER', lsb: 32, width: 32 },
];

/** IA32_VMX_VMCS_ENUM (SDM vol. 3D, A.9): the highest index value of any VMCS encoding. */
export const VMX_VMCS_ENUM_LAYOUT: readonly BitField[] = [
  { name: 'HIGHEST_INDEX', lsb: 1, width: 9 },
];

/** IA32_VMX_EPT_VPID_CAP (SDM vol. 3D, A.10). */
export const VMX_EPT_VPID_CAP_LAYOUT: readonly BitField[] = [
  { name: 'EXECUTE_ONLY', lsb: 0, width: 1 },
  { name: 'PAGE_WALK_LENGTH_4', lsb: 6, width: 1 },
  { name: 'PAGE_WALK_LENGTH_5', lsb: 7, width: 1 },
  { name: 'MEMORY_TYPE_UC', lsb: 8, width: 1 },
  { name: 'MEMORY_TYPE_WB', lsb: 14, width: 1 },
  { name: 'PDE_2MB_PAGES', lsb: 16, width: 1 },
  { name: 'PDPTE_1GB_PAGES', lsb: 17, width: 1 },
  { name: 'INVEPT', lsb: 20, width: 1 },
  { name: 'ACCESSED_AND_DIRTY_FLAGS', lsb: 21, width: 1 },
  { name: 'ADVANCED_EPT_VIOLATION_INFORMATION', lsb: 22, width: 1 },
  { name: 'SUPERVISOR_SHADOW_STACK_CONTROL', lsb: 23, width: 1 },
  { name: 'INVEPT_SINGLE_CONTEXT', lsb: 25, width: 1 },
  { name: 'INVEPT_ALL_CONTEXT', lsb: 26, width: 1 },
  { name: 'INVVPID', lsb: 32, width: 1 },
  { name: 'INVVPID_INDIVIDUAL_ADDRESS', lsb: 40, width: 1 },
  { name: 'INVVPID_SINGLE_CONTEXT', lsb: 41, width: 1 },
  { name: 'INVVPID_ALL_CONTEXT', lsb: 42, width: 1 },
  { name: 'INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS', lsb: 43, width: 1 },
  { name: 'MAX_HLAT_PREFIX_SIZE', lsb: 48, width: 6 },
];

/** Interruption types of the event-information fields (SDM vol. 3C, 25.8.3, 25.9.2). Type 1 is reserved. */
export const InterruptionType = {
  EXTERNAL_INTERRUPT: 0,
  NMI: 2,
  HARDWARE_EXCEPTION: 3,
  SOFTWARE_INTERRUPT: 4,
  PRIVILEGED_SOFTWARE_EXCEPTION: 5,
  SOFTWARE_EXCEPTION: 6,
  OTHER_EVENT: 7, // VM-entry injection only: vector 0 = pending MTF VM exit
} as const;

const INTERRUPTION_TYPE_VALUES: Record<number, string> = {
  0: 'external interrupt',
  2: 'NMI',
  3: 'hardware exception',
  4: 'software interrupt',
  5: 'privileged software exception',
  6: 'software exception',
  7: 'other event',
};

/** Bit positions shared by the three event-information fields. */
export const InterruptionInformation = {
  VECTOR_LSB: 0, // 7:0
  TYPE_LSB: 8, // 10:8
  DELIVER_ERROR_CODE: 11,
  NMI_UNBLOCKING_DUE_TO_IRET: 12, // VM-exit interruption information only
  NESTED_EXCEPTION: 13, // FRED; only when IA32_VMX_BASIC[58] = 1
  VALID: 31,
} as const;

const EVENT_COMMON: readonly BitField[] = [
  { name: 'VECTOR', lsb: 0, width: 8 },
  { name: 'INTERRUPTION_TYPE', lsb: 8, width: 3, values: INTERRUPTION_TYPE_VALUES },
  { name: 'DELIVER_ERROR_CODE', lsb: 11, width: 1 },
];
const NESTED: BitField = { name: 'NESTED_EXCEPTION', lsb: 13, width: 1 };
const VALID: BitField = { name: 'VALID', lsb: 31, width: 1 };

/** VM-entry interruption-information field (SDM vol. 3C, 25.8.3). Bits 30:12 reserved but for FRED's bit 13. */
export const VM_ENTRY_INTERRUPTION_INFORMATION_LAYOUT: readonly BitField[] = [...EVENT_COMMON, NESTED, VALID];

/** VM-exit interruption-information field (SDM vol. 3C, 25.9.2; 28.2.2). */
export const VM_EXIT_INTERRUPTION_INFORMATION_LAYOUT: readonly BitField[] = [
  ...EVENT_COMMON,
  { name: 'NMI_UNBLOCKING_DUE_TO_IRET', lsb: 12, width: 1 },
  NESTED,
  VALID,
];

/** IDT-vectoring information field (SDM vol. 3C, 25.9.3; 28.2.4). Bit 12 is undefined. */
export const IDT_VECTORING_INFORMATION_LAYOUT: readonly BitField[] = [...EVENT_COMMON, NESTED, VALID];

/** Guest interruptibility state (SDM vol. 3C, 25.4.2). Bits 31:5 reserved. */
export const Interruptibility = {
  BLOCKING_BY_STI: 0,
  BLOCKING_BY_MOV_SS: 1,
  BLOCKING_BY_SMI: 2,
  BLOCKING_BY_NMI: 3,
  ENCLAVE_INTERRUPTION: 4,
} as const;

/** Guest activity state (SDM vol. 3C, 25.4.2). */
export const ActivityState = {
  ACTIVE: 0,
  HLT: 1,
  SHUTDOWN: 2,
  WAIT_FOR_SIPI: 3,
} as const;

/**
 * Guest pending debug exceptions (SDM vol. 3C, 25.4.2): bits
 * 3:0 are B3-B0; the rest of 63:17 and 15, 13, 10:4 are reserved.
 */
export const PendingDebugExceptions = {
  B0: 0,
  B1: 1,
  B2: 2,
  B3: 3,
  BLD: 11, // bus-lock detection
  ENABLED_BREAKPOINT: 12,
  BS: 14,
  RTM: 16,
} as const;
