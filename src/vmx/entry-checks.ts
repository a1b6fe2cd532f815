/**
 * The checks VMLAUNCH and VMRESUME make on the VMCS before they load anything
 * (SDM vol. 3C, 27.2 "Checks on VMX Controls and Host-State Area" and 27.3.1
 * "Checks on the Guest State Area"). Each checker returns the FIRST rule
 * broken, in the order the SDM lists the rules, or null when all hold:
 *   checkControls   27.2.1          → VMfailValid(7)
 *   checkHostState  27.2.2 - 27.2.4 → VMfailValid(8)
 *   checkGuestState 27.3.1.1 - 5    → VM exit, reason 33 (invalid guest state)
 * The SDM lets a processor make the 27.2 checks in any order ("an indication
 * by error number of one cause does not imply that there are not also other
 * errors"); hvsim makes them in the order they are listed. The 27.2.4
 * address-space checks concern controls and host fields together; hvsim
 * reports them as host-state failures (error 8), as Bochs and KVM do.
 *
 * This is the hot path of every VM entry: on success nothing is allocated.
 * Failure objects and their detail strings are built only in the `return
 * fail(...)` of a broken rule.
 *
 * Rules about controls the model does not offer (EPT, VPID, APIC
 * virtualization, PML, CET, ...) are written compactly: the reserved-bit
 * checks reject those controls before the rules can be reached, until
 * capabilities.ts offers them.
 */
import type { Cpu } from '../cpu/cpu.js';
import { MAXPHYADDR } from '../cpu/paging.js';
import { EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE } from '../cpu/regs.js';
import { Field } from '../../vmcs/fields.js';
import {
  ActivityState, Interruptibility, InterruptionType, PendingDebugExceptions, PinBasedControls,
  PrimaryProcessorBasedControls, SecondaryProcessorBasedControls, VmEntryControls, VmExitControls,
} from '../../vmcs/controls.js';
import { VmEntryFailureQualification } from '../../vmcs/qualifications.js';
import type { AllowedSettings, VmxCapabilities } from './capabilities.js';
import type { Vmcs } from './vmcs.js';
import { ACCESS_AT, BASE_AT, CONTROL_AT as C, GUEST_AT as G, LIMIT_AT, SELECTOR_AT } from './state-fields.js';

export interface EntryCheckFailure {
  /** 'controls' → VMfailValid(7), 'host' → VMfailValid(8), 'guest' → VM exit with reason 33. */
  readonly kind: 'controls' | 'host' | 'guest';
  /** A short stable name of the rule. */
  readonly check: string;
  /** The SDM section that states the rule (current layout, chapter 27 = VM Entries). */
  readonly section: string;
  /** The field(s) and value(s) involved, and what would pass. */
  readonly detail: string;
  /** Guest failures: the exit qualification (VmEntryFailureQualification); 0 otherwise. */
  readonly qualification: number;
}

function fail(
  kind: EntryCheckFailure['kind'], check: string, section: string, detail: string, qualification = 0,
): EntryCheckFailure {
  return { kind, check, section, detail, qualification };
}

// ---- value helpers -------------------------------------------------------------

const bit = (n: number): number => (1 << n) >>> 0;
const hex = (n: number): string => `0x${(n >>> 0).toString(16)}`;
function hex64(lo: number, hi: number): string {
  return hi === 0 ? hex(lo) : `0x${(hi >>> 0).toString(16)}${(lo >>> 0).toString(16).padStart(8, '0')}`;
}

/** Bits 63:32 of a physical address that lie beyond MAXPHYADDR. */
const PA_HI_RESERVED = ~((1 << (MAXPHYADDR - 32)) - 1);
const PA_LIMIT = 2 ** MAXPHYADDR;
/** True when a 64-bit value (hi = bits 63:32) sets a bit beyond the physical-address width. */
const beyondPa = (hi: number): boolean => (hi & PA_HI_RESERVED) !== 0;
const PA_TEXT = `bits 63:${MAXPHYADDR} must be 0 (MAXPHYADDR = ${MAXPHYADDR})`;

/**
 * Linear-address width of guest-state canonicality checks: the model's 48
 * bits (4-level paging; the skylake profile reports 48 linear-address bits).
 */
const GUEST_LINEAR_BITS = 48;
/**
 * Canonical in `width` bits (SDM vol. 1, 3.3.7.1): bits 63:width-1 all equal.
 * Only the upper half matters for widths above 32.
 */
function canonical(hi: number, width: number): boolean {
  const s = hi >> (width - 33);
  return s === 0 || s === -1;
}

/** IA32_PAT: each of the 8 bytes 0 (UC), 1 (WC), 4 (WT), 5 (WP), 6 (WB) or 7 (UC-) (SDM vol. 3A, 13.12.2). */
function patValid(lo: number, hi: number): boolean {
  for (let i = 0; i < 8; i++) {
    const t = ((i < 4 ? lo : hi) >>> (8 * (i & 3))) & 0xff;
    if (t === 2 || t === 3 || t > 7) return false;
  }
  return true;
}

/** IA32_EFER bits that exist here: SCE, LME, LMA, NXE (SDM vol. 3A, 2.2.1). */
const EFER_DEFINED = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
/**
 * IA32_DEBUGCTL bits the model implements (the mask WRMSR accepts in
 * src/cpu/msr.ts): LBR, BTF, FREEZE_LBRS_ON_PMI, FREEZE_PERFMON_ON_PMI.
 */
const DEBUGCTL_DEFINED = 0x1803;
const DEBUGCTL_BTF = 1 << 1;
/**
 * IA32_PERF_GLOBAL_CTRL: one enable per general-purpose counter (bits 31:0) and per
 * fixed counter (bits 63:32) (SDM vol. 3B, "Architectural Performance Monitoring Version 2").
 */
function perfGlobalCtrlValid(cpu: Cpu, lo: number, hi: number): boolean {
  const pm = cpu.profile.perfMon;
  if (pm === null) return lo === 0 && hi === 0;
  return (lo & ~lowBits(pm.counters)) === 0 && (hi & ~lowBits(pm.fixedCounters)) === 0;
}
const lowBits = (n: number): number => (n >= 32 ? -1 : (1 << n) - 1);

/** The bits of a control field set against its capability MSR: must-be-1 bits that are 0, must-be-0 bits that are 1. */
const wrongBits = (value: number, s: AllowedSettings): number => ((~value & s.allowed0) | (value & ~s.allowed1)) >>> 0;

/** The failure for a control field with reserved bits set wrongly (SDM vol. 3D, appendix A.3-A.5). */
function controlBitsFailure(
  check: string, section: string, field: string, msr: string, value: number, s: AllowedSettings, wrong: number,
): EntryCheckFailure {
  const b = 31 - Math.clz32(wrong & -wrong);
  const must = (s.allowed0 >>> b) & 1;
  const allowed = must === 1 ? `allowed-0 = ${hex(s.allowed0)}` : `allowed-1 = ${hex(s.allowed1)}`;
  return fail('controls', check, section, `${field} = ${hex(value)}: bit ${b} must be ${must}: ${msr} ${allowed}`);
}

/** The detail for a CR0/CR4 field against its fixed bits (SDM vol. 3D, A.7, A.8). */
function fixedBitsDetail(reg: string, lo: number, hi: number, fixed0: number, fixed1: number): string {
  if (hi !== 0) return `${reg} = ${hex64(lo, hi)}: bits 63:32 must be 0 (FIXED1 bits 63:32 are 0)`;
  const must1 = ~lo & fixed0;
  if (must1 !== 0) return `${reg} = ${hex(lo)}: bit ${31 - Math.clz32(must1 & -must1)} must be 1 (FIXED0 = ${hex(fixed0)})`;
  const must0 = lo & ~fixed1;
  return `${reg} = ${hex(lo)}: bit ${31 - Math.clz32(must0 & -must0)} must be 0 (FIXED1 = ${hex(fixed1)})`;
}
const fixedBitsOk = (lo: number, hi: number, fixed0: number, fixed1: number): boolean =>
  hi === 0 && (~lo & fixed0) === 0 && (lo & ~fixed1) === 0;

/**
 * The G bit agrees with the limit (27.3.1.2): any of limit bits 11:0 clear →
 * G = 0; any of bits 31:20 set → G = 1.
 */
function granularityOk(limit: number, ar: number): boolean {
  if ((limit & 0xfff) !== 0xfff && (ar & AR_G) !== 0) return false;
  if ((limit & 0xfff00000) !== 0 && (ar & AR_G) === 0) return false;
  return true;
}

// ---- bits --------------------------------------------------------------------

const PIN = PinBasedControls, PROC = PrimaryProcessorBasedControls, SEC = SecondaryProcessorBasedControls;
const EXIT = VmExitControls, ENTRY = VmEntryControls;

const PIN_EXTERNAL_INTERRUPT_EXITING = bit(PIN.EXTERNAL_INTERRUPT_EXITING);
const PIN_NMI_EXITING = bit(PIN.NMI_EXITING);
const PIN_VIRTUAL_NMIS = bit(PIN.VIRTUAL_NMIS);
const PIN_PREEMPTION_TIMER = bit(PIN.ACTIVATE_VMX_PREEMPTION_TIMER);
const PIN_POSTED_INTERRUPTS = bit(PIN.PROCESS_POSTED_INTERRUPTS);

const PROC_TERTIARY = bit(PROC.ACTIVATE_TERTIARY_CONTROLS);
const PROC_USE_TPR_SHADOW = bit(PROC.USE_TPR_SHADOW);
const PROC_NMI_WINDOW_EXITING = bit(PROC.NMI_WINDOW_EXITING);
const PROC_USE_IO_BITMAPS = bit(PROC.USE_IO_BITMAPS);
const PROC_MONITOR_TRAP_FLAG = bit(PROC.MONITOR_TRAP_FLAG);
const PROC_USE_MSR_BITMAPS = bit(PROC.USE_MSR_BITMAPS);
const PROC_SECONDARY = bit(PROC.ACTIVATE_SECONDARY_CONTROLS);

const SEC_VIRTUALIZE_APIC_ACCESSES = bit(SEC.VIRTUALIZE_APIC_ACCESSES);
const SEC_ENABLE_EPT = bit(SEC.ENABLE_EPT);
const SEC_VIRTUALIZE_X2APIC_MODE = bit(SEC.VIRTUALIZE_X2APIC_MODE);
const SEC_ENABLE_VPID = bit(SEC.ENABLE_VPID);
const SEC_UNRESTRICTED_GUEST = bit(SEC.UNRESTRICTED_GUEST);
const SEC_APIC_REGISTER_VIRTUALIZATION = bit(SEC.APIC_REGISTER_VIRTUALIZATION);
const SEC_VIRTUAL_INTERRUPT_DELIVERY = bit(SEC.VIRTUAL_INTERRUPT_DELIVERY);
const SEC_ENABLE_VM_FUNCTIONS = bit(SEC.ENABLE_VM_FUNCTIONS);
const SEC_VMCS_SHADOWING = bit(SEC.VMCS_SHADOWING);
const SEC_ENABLE_PML = bit(SEC.ENABLE_PML);
const SEC_EPT_VIOLATION_VE = bit(SEC.EPT_VIOLATION_VE);
const SEC_MODE_BASED_EXECUTE = bit(SEC.MODE_BASED_EXECUTE_CONTROL_FOR_EPT);
const SEC_SUB_PAGE_WRITE = bit(SEC.SUB_PAGE_WRITE_PERMISSIONS_FOR_EPT);
const SEC_PT_USES_GPA = bit(SEC.INTEL_PT_USES_GUEST_PHYSICAL_ADDRESSES);

const EXIT_HOST_ADDRESS_SPACE_SIZE = bit(EXIT.HOST_ADDRESS_SPACE_SIZE);
const EXIT_LOAD_PERF_GLOBAL_CTRL = bit(EXIT.LOAD_IA32_PERF_GLOBAL_CTRL);
const EXIT_ACKNOWLEDGE_INTERRUPT = bit(EXIT.ACKNOWLEDGE_INTERRUPT_ON_EXIT);
const EXIT_LOAD_PAT = bit(EXIT.LOAD_IA32_PAT);
const EXIT_LOAD_EFER = bit(EXIT.LOAD_IA32_EFER);
const EXIT_SAVE_PREEMPTION_TIMER = bit(EXIT.SAVE_VMX_PREEMPTION_TIMER_VALUE);
const EXIT_CLEAR_RTIT_CTL = bit(EXIT.CLEAR_IA32_RTIT_CTL);
const EXIT_LOAD_CET_STATE = bit(EXIT.LOAD_CET_STATE);
const EXIT_LOAD_PKRS = bit(EXIT.LOAD_PKRS);
const EXIT_SECONDARY = bit(EXIT.ACTIVATE_SECONDARY_CONTROLS);

const ENTRY_LOAD_DEBUG_CONTROLS = bit(ENTRY.LOAD_DEBUG_CONTROLS);
const ENTRY_IA32E_MODE_GUEST = bit(ENTRY.IA_32E_MODE_GUEST);
const ENTRY_TO_SMM = bit(ENTRY.ENTRY_TO_SMM);
const ENTRY_DEACTIVATE_DUAL_MONITOR = bit(ENTRY.DEACTIVATE_DUAL_MONITOR_TREATMENT);
const ENTRY_LOAD_PERF_GLOBAL_CTRL = bit(ENTRY.LOAD_IA32_PERF_GLOBAL_CTRL);
const ENTRY_LOAD_PAT = bit(ENTRY.LOAD_IA32_PAT);
const ENTRY_LOAD_EFER = bit(ENTRY.LOAD_IA32_EFER);
const ENTRY_LOAD_BNDCFGS = bit(ENTRY.LOAD_IA32_BNDCFGS);
const ENTRY_LOAD_RTIT_CTL = bit(ENTRY.LOAD_IA32_RTIT_CTL);
const ENTRY_LOAD_UINV = bit(ENTRY.LOAD_UINV);
const ENTRY_LOAD_CET_STATE = bit(ENTRY.LOAD_CET_STATE);
const ENTRY_LOAD_LBR_CTL = bit(ENTRY.LOAD_GUEST_IA32_LBR_CTL);
const ENTRY_LOAD_PKRS = bit(ENTRY.LOAD_PKRS);

/** IA32_VMX_MISC bit 30: VM entry may inject software events with instruction length 0 (A.6). */
const MISC_ZERO_LENGTH_INJECTION = bit(30);
/** IA32_VMX_MISC bits 8:6: activity states 1-3 supported (A.6). */
const MISC_ACTIVITY_SHIFT = 5;

/** VM-entry interruption-information field (25.8.3). */
const INFO_VALID = bit(31);
const INFO_DELIVER_ERROR_CODE = bit(11);
const INFO_RESERVED = 0x7ffff000; // bits 30:12 (bit 13 is FRED's, not offered: IA32_VMX_BASIC[58] = 0)
/**
 * Exceptions that deliver an error code: #DF, #TS, #NP, #SS, #GP, #PF, #AC
 * (27.2.1.3). IA32_VMX_BASIC[56] is 0 on this model, so the rule applies;
 * #CP (21) has none on a processor without CET.
 */
const ERROR_CODE_VECTORS = bit(8) | bit(10) | bit(11) | bit(12) | bit(13) | bit(14) | bit(17);

const CR0_PE = 1 << 0, CR0_WP = 1 << 16, CR0_NW = 1 << 29, CR0_CD = 1 << 30, CR0_PG = 1 << 31;
const CR4_PAE = 1 << 5, CR4_LA57 = 1 << 12, CR4_PCIDE = 1 << 17, CR4_CET = 1 << 23;
const RFLAGS_FIXED1 = 1 << 1, RFLAGS_TF = 1 << 8, RFLAGS_IF = 1 << 9, RFLAGS_VM = 1 << 17;
/** RFLAGS bits 31:22, 15, 5 and 3 are reserved (63:32 too) (27.3.1.4). */
const RFLAGS_RESERVED = 0xffc08028 | 0;

/** Access-rights layout (25.4.1, table 25-2). */
const AR_TYPE = 0xf, AR_S = 1 << 4, AR_P = 1 << 7, AR_L = 1 << 13, AR_DB = 1 << 14, AR_G = 1 << 15;
const AR_UNUSABLE = 1 << 16;
const AR_RESERVED_LOW = 0xf00; // bits 11:8
const AR_RESERVED_HIGH = 0xfffe0000 | 0; // bits 31:17

const STI = bit(Interruptibility.BLOCKING_BY_STI), MOV_SS = bit(Interruptibility.BLOCKING_BY_MOV_SS);
const SMI = bit(Interruptibility.BLOCKING_BY_SMI), NMI = bit(Interruptibility.BLOCKING_BY_NMI);
const ENCLAVE = bit(Interruptibility.ENCLAVE_INTERRUPTION);
const INTERRUPTIBILITY_RESERVED = 0xffffffe0 | 0; // bits 31:5

const PD_BS = bit(PendingDebugExceptions.BS), PD_RTM = bit(PendingDebugExceptions.RTM);
const PD_ENABLED_BREAKPOINT = bit(PendingDebugExceptions.ENABLED_BREAKPOINT);
/**
 * Pending debug exceptions: bits 11:4, 13, 15 and 63:17 reserved (27.3.1.5).
 * Bit 11 (BLD) stays reserved: the model has no OS bus-lock detection.
 */
const PD_RESERVED = 0xfffeaff0 | 0;
/** With RTM set, bits 11:0, 15:13 and 63:17 must be 0 (27.3.1.5). */
const PD_RTM_RESERVED = 0xfffeefff | 0;

/**
 * EPT capabilities the EPTP rules assume (IA32_VMX_EPT_VPID_CAP, A.10), used
 * only once capabilities.ts offers "enable EPT": memory types UC and WB,
 * 4-level walks, accessed and dirty flags, no supervisor shadow-stack control.
 */
const EPT_MEMORY_TYPE_UC = 0, EPT_MEMORY_TYPE_WB = 6;

/**
 * The EPTP rules of 27.2.1.1, which INVEPT applies to its descriptor too (31.3):
 * a supported memory type (UC or WB), a walk length of 4 (bits 5:3 = 3), bit 7
 * (supervisor shadow stacks) not offered, bits 11:8 and 63:MAXPHYADDR reserved.
 */
export function eptpValid(lo: number, hi: number): boolean {
  const type = lo & 7, walk = (lo >>> 3) & 7;
  return (type === EPT_MEMORY_TYPE_UC || type === EPT_MEMORY_TYPE_WB) && walk === 3 && (lo & 0xf80) === 0 && !beyondPa(hi);
}

// ---- fields -----------------------------------------------------------------

const F = Field;
const PIN_CTLS = F.PIN_BASED_VM_EXECUTION_CONTROLS;
const PROC_CTLS = F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
const SEC_CTLS = F.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
const TERTIARY_CTLS = F.TERTIARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
const EXIT_CTLS = F.PRIMARY_VM_EXIT_CONTROLS;
const EXIT2_CTLS = F.SECONDARY_VM_EXIT_CONTROLS;
const ENTRY_CTLS = F.VM_ENTRY_CONTROLS;
const ENTRY_INFO = F.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD;
const GUEST_CR0 = F.GUEST_CR0;

/** Selector, base, limit and access-rights encodings of ES..GS, LDTR, TR (index = regs.ts numbering). */
const ES = 0, CS = 1, SS = 2, DS = 3, FS = 4, GS = 5, LDTR = 6, TR = 7;
const SEG_NAME = ['ES', 'CS', 'SS', 'DS', 'FS', 'GS', 'LDTR', 'TR'] as const;
/** The SDM lists the segment registers as CS, SS, DS, ES, FS, GS. */
const SIX = Uint8Array.of(CS, SS, DS, ES, FS, GS);

/** Guest segment state, read once per check (module scratch: nothing allocated per entry). */
const gSel = new Int32Array(8), gLimit = new Int32Array(8), gAr = new Int32Array(8);
const gBaseLo = new Int32Array(8), gBaseHi = new Int32Array(8);

const HOST_SELECTOR = [
  F.HOST_ES_SELECTOR, F.HOST_CS_SELECTOR, F.HOST_SS_SELECTOR, F.HOST_DS_SELECTOR,
  F.HOST_FS_SELECTOR, F.HOST_GS_SELECTOR, 0, F.HOST_TR_SELECTOR,
] as const;
/** 27.2.3 lists the host selectors as CS, SS, DS, ES, FS, GS, TR. */
const HOST_SELECTOR_ORDER = Uint8Array.of(CS, SS, DS, ES, FS, GS, TR);

// ---- 27.2.1 checks on VMX controls ------------------------------------------

/** SDM 27.2.1: the VM-execution, VM-exit and VM-entry control fields. Failure → VMfailValid(7). */
export function checkControls(cpu: Cpu, v: Vmcs, caps: VmxCapabilities): EntryCheckFailure | null {
  let bad: EntryCheckFailure | null;
  // ---- 27.2.1.1 VM-execution control fields
  const S1 = '27.2.1.1';
  const pin = v.lo(PIN_CTLS);
  let wrong = wrongBits(pin, caps.pin);
  if (wrong !== 0) {
    return controlBitsFailure('pin-based controls reserved bits', S1, 'pin-based VM-execution controls',
      'IA32_VMX_TRUE_PINBASED_CTLS', pin, caps.pin, wrong);
  }
  const proc = v.lo(PROC_CTLS);
  wrong = wrongBits(proc, caps.proc);
  if (wrong !== 0) {
    return controlBitsFailure('primary processor-based controls reserved bits', S1,
      'primary processor-based VM-execution controls', 'IA32_VMX_TRUE_PROCBASED_CTLS', proc, caps.proc, wrong);
  }
  // With "activate secondary controls" 0 the secondary controls are not checked and act as 0.
  const sec = (proc & PROC_SECONDARY) !== 0 ? v.lo(SEC_CTLS) : 0;
  if ((proc & PROC_SECONDARY) !== 0) {
    wrong = wrongBits(sec, caps.secondary);
    if (wrong !== 0) {
      return controlBitsFailure('secondary processor-based controls reserved bits', S1,
        'secondary processor-based VM-execution controls', 'IA32_VMX_PROCBASED_CTLS2', sec, caps.secondary, wrong);
    }
  }
  // No tertiary control is offered (IA32_VMX_PROCBASED_CTLS3 reports none), so every bit is reserved;
  // the tertiary rules (HLAT, IPI virtualization, ...) therefore never apply.
  if ((proc & PROC_TERTIARY) !== 0 && (v.lo(TERTIARY_CTLS) !== 0 || v.hi(TERTIARY_CTLS) !== 0)) {
    return fail('controls', 'tertiary processor-based controls reserved bits', S1,
      `tertiary processor-based VM-execution controls = ${hex64(v.lo(TERTIARY_CTLS), v.hi(TERTIARY_CTLS))}: ` +
      'must be 0 (IA32_VMX_PROCBASED_CTLS3 allows no 1-setting)');
  }
  const cr3Targets = v.lo(F.CR3_TARGET_COUNT) >>> 0, maxTargets = (caps.misc >>> 16) & 0x1ff;
  if (cr3Targets > maxTargets) {
    return fail('controls', 'CR3-target count', S1,
      `CR3-target count = ${cr3Targets}: must be at most ${maxTargets} (IA32_VMX_MISC[24:16])`);
  }
  if ((proc & PROC_USE_IO_BITMAPS) !== 0) {
    bad = addressFailure(v, F.ADDRESS_OF_IO_BITMAP_A, 'I/O-bitmap addresses', 'address of I/O bitmap A');
    if (bad !== null) return bad;
    bad = addressFailure(v, F.ADDRESS_OF_IO_BITMAP_B, 'I/O-bitmap addresses', 'address of I/O bitmap B');
    if (bad !== null) return bad;
  }
  if ((proc & PROC_USE_MSR_BITMAPS) !== 0) {
    bad = addressFailure(v, F.ADDRESS_OF_MSR_BITMAPS, 'MSR-bitmap address', 'address of MSR bitmaps');
    if (bad !== null) return bad;
  }
  const tprShadow = (proc & PROC_USE_TPR_SHADOW) !== 0;
  if (tprShadow) {
    bad = addressFailure(v, F.VIRTUAL_APIC_ADDRESS, 'virtual-APIC address', 'virtual-APIC address');
    if (bad !== null) return bad;
    if ((sec & SEC_VIRTUAL_INTERRUPT_DELIVERY) === 0) {
      const threshold = v.lo(F.TPR_THRESHOLD);
      if ((threshold & ~0xf) !== 0) {
        return fail('controls', 'TPR threshold bits 31:4', S1, `TPR threshold = ${hex(threshold)}: bits 31:4 must be 0`);
      }
      bad = vtprFailure(cpu, v);
      if (bad !== null) return bad;
    }
  }
  if ((pin & PIN_NMI_EXITING) === 0 && (pin & PIN_VIRTUAL_NMIS) !== 0) {
    return fail('controls', 'virtual NMIs without NMI exiting', S1,
      `pin-based controls = ${hex(pin)}: "virtual NMIs" (bit 5) needs "NMI exiting" (bit 3)`);
  }
  if ((pin & PIN_VIRTUAL_NMIS) === 0 && (proc & PROC_NMI_WINDOW_EXITING) !== 0) {
    return fail('controls', 'NMI-window exiting without virtual NMIs', S1,
      `primary processor-based controls = ${hex(proc)}: "NMI-window exiting" (bit 22) needs "virtual NMIs" (pin-based bit 5)`);
  }
  if ((sec & SEC_VIRTUALIZE_APIC_ACCESSES) !== 0) {
    bad = addressFailure(v, F.APIC_ACCESS_ADDRESS, 'APIC-access address', 'APIC-access address');
    if (bad !== null) return bad;
  }
  const apicVirtualization = SEC_VIRTUALIZE_X2APIC_MODE | SEC_APIC_REGISTER_VIRTUALIZATION | SEC_VIRTUAL_INTERRUPT_DELIVERY;
  if (!tprShadow && (sec & apicVirtualization) !== 0) {
    return fail('controls', 'APIC virtualization without TPR shadow', S1,
      `secondary controls = ${hex(sec)}: "virtualize x2APIC mode", "APIC-register virtualization" and ` +
      '"virtual-interrupt delivery" need "use TPR shadow"');
  }
  if ((sec & SEC_VIRTUALIZE_X2APIC_MODE) !== 0 && (sec & SEC_VIRTUALIZE_APIC_ACCESSES) !== 0) {
    return fail('controls', 'virtualize x2APIC mode with APIC accesses', S1,
      `secondary controls = ${hex(sec)}: "virtualize x2APIC mode" (bit 4) needs "virtualize APIC accesses" (bit 0) = 0`);
  }
  if ((sec & SEC_VIRTUAL_INTERRUPT_DELIVERY) !== 0 && (pin & PIN_EXTERNAL_INTERRUPT_EXITING) === 0) {
    return fail('controls', 'virtual-interrupt delivery without external-interrupt exiting', S1,
      `pin-based controls = ${hex(pin)}: "virtual-interrupt delivery" needs "external-interrupt exiting" (bit 0)`);
  }
  const exit = v.lo(EXIT_CTLS);
  if ((pin & PIN_POSTED_INTERRUPTS) !== 0) {
    if ((sec & SEC_VIRTUAL_INTERRUPT_DELIVERY) === 0) {
      return fail('controls', 'posted interrupts without virtual-interrupt delivery', S1,
        `secondary controls = ${hex(sec)}: bit 9 must be 1`);
    }
    if ((exit & EXIT_ACKNOWLEDGE_INTERRUPT) === 0) {
      return fail('controls', 'posted interrupts without acknowledge interrupt on exit', S1,
        `VM-exit controls = ${hex(exit)}: bit 15 must be 1`);
    }
    const vector = v.lo(F.POSTED_INTERRUPT_NOTIFICATION_VECTOR);
    if ((vector & 0xff00) !== 0) {
      return fail('controls', 'posted-interrupt notification vector', S1, `vector = ${hex(vector)}: bits 15:8 must be 0`);
    }
    const lo = v.lo(F.POSTED_INTERRUPT_DESCRIPTOR_ADDRESS), hi = v.hi(F.POSTED_INTERRUPT_DESCRIPTOR_ADDRESS);
    if ((lo & 0x3f) !== 0 || beyondPa(hi)) {
      return fail('controls', 'posted-interrupt descriptor address', S1, `address = ${hex64(lo, hi)}: bits 5:0 and ${PA_TEXT}`);
    }
  }
  if ((sec & SEC_ENABLE_VPID) !== 0 && v.lo(F.VIRTUAL_PROCESSOR_IDENTIFIER) === 0) {
    return fail('controls', 'VPID', S1, 'VPID = 0: must not be 0000H with "enable VPID"');
  }
  const ept = (sec & SEC_ENABLE_EPT) !== 0;
  if (ept) {
    const lo = v.lo(F.EPT_POINTER), hi = v.hi(F.EPT_POINTER);
    if (!eptpValid(lo, hi)) {
      return fail('controls', 'EPTP', S1,
        `EPTP = ${hex64(lo, hi)}: memory type must be 0 or 6, bits 5:3 must be 3, bits 11:7 and ${PA_TEXT}`);
    }
  }
  if ((sec & SEC_ENABLE_PML) !== 0) {
    if (!ept) return fail('controls', 'PML without EPT', S1, `secondary controls = ${hex(sec)}: "enable PML" needs "enable EPT"`);
    bad = addressFailure(v, F.PML_ADDRESS, 'PML address', 'PML address');
    if (bad !== null) return bad;
  }
  if ((sec & (SEC_UNRESTRICTED_GUEST | SEC_MODE_BASED_EXECUTE)) !== 0 && !ept) {
    return fail('controls', 'unrestricted guest or mode-based execute control without EPT', S1,
      `secondary controls = ${hex(sec)}: bits 7 and 22 need "enable EPT" (bit 1)`);
  }
  if ((sec & SEC_SUB_PAGE_WRITE) !== 0) {
    if (!ept) {
      return fail('controls', 'sub-page write permissions without EPT', S1,
        `secondary controls = ${hex(sec)}: bit 23 needs "enable EPT"`);
    }
    bad = addressFailure(v, F.SUB_PAGE_PERMISSION_TABLE_POINTER, 'SPPTP', 'sub-page-permission-table pointer');
    if (bad !== null) return bad;
  }
  if ((sec & SEC_ENABLE_VM_FUNCTIONS) !== 0) {
    // No VM function is offered (IA32_VMX_VMFUNC is not reported): every bit is reserved.
    const lo = v.lo(F.VM_FUNCTION_CONTROLS), hi = v.hi(F.VM_FUNCTION_CONTROLS);
    if (lo !== 0 || hi !== 0) {
      return fail('controls', 'VM-function controls reserved bits', S1, `VM-function controls = ${hex64(lo, hi)}: must be 0`);
    }
  }
  if ((sec & SEC_VMCS_SHADOWING) !== 0) {
    bad = addressFailure(v, F.VMREAD_BITMAP_ADDRESS, 'VMREAD-bitmap address', 'VMREAD-bitmap address');
    if (bad !== null) return bad;
    bad = addressFailure(v, F.VMWRITE_BITMAP_ADDRESS, 'VMWRITE-bitmap address', 'VMWRITE-bitmap address');
    if (bad !== null) return bad;
  }
  if ((sec & SEC_EPT_VIOLATION_VE) !== 0) {
    const name = 'virtualization-exception information address';
    bad = addressFailure(v, F.VIRTUALIZATION_EXCEPTION_INFORMATION_ADDRESS, name, name);
    if (bad !== null) return bad;
  }
  const entry = v.lo(ENTRY_CTLS);
  if ((sec & SEC_PT_USES_GPA) !== 0 && (!ept || (entry & ENTRY_LOAD_RTIT_CTL) === 0 || (exit & EXIT_CLEAR_RTIT_CTL) === 0)) {
    return fail('controls', 'Intel PT uses guest physical addresses', S1,
      '"Intel PT uses guest physical addresses" needs "enable EPT", "load IA32_RTIT_CTL" (entry) and ' +
      '"clear IA32_RTIT_CTL" (exit)');
  }

  // ---- 27.2.1.2 VM-exit control fields
  const S2 = '27.2.1.2';
  wrong = wrongBits(exit, caps.exit);
  if (wrong !== 0) {
    return controlBitsFailure('VM-exit controls reserved bits', S2, 'primary VM-exit controls', 'IA32_VMX_TRUE_EXIT_CTLS',
      exit, caps.exit, wrong);
  }
  // No secondary VM-exit control is offered (IA32_VMX_EXIT_CTLS2 is not reported): every bit is reserved.
  if ((exit & EXIT_SECONDARY) !== 0 && (v.lo(EXIT2_CTLS) !== 0 || v.hi(EXIT2_CTLS) !== 0)) {
    return fail('controls', 'secondary VM-exit controls reserved bits', S2,
      `secondary VM-exit controls = ${hex64(v.lo(EXIT2_CTLS), v.hi(EXIT2_CTLS))}: must be 0`);
  }
  if ((pin & PIN_PREEMPTION_TIMER) === 0 && (exit & EXIT_SAVE_PREEMPTION_TIMER) !== 0) {
    return fail('controls', 'save VMX-preemption timer value without the timer', S2,
      `VM-exit controls = ${hex(exit)}: bit 22 needs "activate VMX-preemption timer" (pin-based bit 6)`);
  }
  bad = msrAreaFailure(v, F.VM_EXIT_MSR_STORE_COUNT, F.VM_EXIT_MSR_STORE_ADDRESS, 'VM-exit MSR-store address', S2);
  if (bad !== null) return bad;
  bad = msrAreaFailure(v, F.VM_EXIT_MSR_LOAD_COUNT, F.VM_EXIT_MSR_LOAD_ADDRESS, 'VM-exit MSR-load address', S2);
  if (bad !== null) return bad;

  // ---- 27.2.1.3 VM-entry control fields
  const S3 = '27.2.1.3';
  wrong = wrongBits(entry, caps.entry);
  if (wrong !== 0) {
    return controlBitsFailure('VM-entry controls reserved bits', S3, 'VM-entry controls', 'IA32_VMX_TRUE_ENTRY_CTLS',
      entry, caps.entry, wrong);
  }
  const info = v.lo(ENTRY_INFO);
  if ((info & INFO_VALID) !== 0) {
    const type = (info >>> 8) & 7, vector = info & 0xff;
    // Type 1 is always reserved; type 7 (other event) without the 1-setting of "monitor trap flag".
    if (type === 1 || (type === InterruptionType.OTHER_EVENT && (caps.proc.allowed1 & PROC_MONITOR_TRAP_FLAG) === 0)) {
      return fail('controls', 'event injection: interruption type', S3,
        `VM-entry interruption information = ${hex(info)}: type ${type} is reserved`);
    }
    if ((type === InterruptionType.NMI && vector !== 2) || (type === InterruptionType.HARDWARE_EXCEPTION && vector > 31) ||
        (type === InterruptionType.OTHER_EVENT && vector !== 0)) {
      return fail('controls', 'event injection: vector', S3,
        `VM-entry interruption information = ${hex(info)}: vector ${vector} does not fit type ${type} ` +
        '(NMI: 2, hardware exception: 0-31, other event: 0)');
    }
    // Error code iff a hardware exception that delivers one, in protected mode ("unrestricted guest" 0 or CR0.PE 1).
    const ug = (sec & SEC_UNRESTRICTED_GUEST) !== 0;
    const wants = type === InterruptionType.HARDWARE_EXCEPTION && (!ug || (v.lo(GUEST_CR0) & CR0_PE) !== 0) &&
      vector < 32 && (ERROR_CODE_VECTORS & bit(vector)) !== 0;
    const delivers = (info & INFO_DELIVER_ERROR_CODE) !== 0;
    if (delivers !== wants) {
      return fail('controls', 'event injection: deliver error code', S3,
        `VM-entry interruption information = ${hex(info)}: bit 11 must be ${wants ? 1 : 0} for type ${type} vector ${vector}`);
    }
    if ((info & INFO_RESERVED) !== 0) {
      return fail('controls', 'event injection: reserved bits', S3,
        `VM-entry interruption information = ${hex(info)}: bits 30:12 must be 0`);
    }
    if (delivers) {
      const code = v.lo(F.VM_ENTRY_EXCEPTION_ERROR_CODE);
      if ((code & 0xffff0000) !== 0) {
        return fail('controls', 'event injection: error code', S3,
          `VM-entry exception error code = ${hex(code)}: bits 31:16 must be 0`);
      }
    }
    if (type === InterruptionType.SOFTWARE_INTERRUPT || type === InterruptionType.PRIVILEGED_SOFTWARE_EXCEPTION ||
        type === InterruptionType.SOFTWARE_EXCEPTION) {
      const length = v.lo(F.VM_ENTRY_INSTRUCTION_LENGTH) >>> 0;
      const min = (caps.misc & MISC_ZERO_LENGTH_INJECTION) !== 0 ? 0 : 1;
      if (length < min || length > 15) {
        return fail('controls', 'event injection: instruction length', S3,
          `VM-entry instruction length = ${length}: must be ${min}-15`);
      }
    }
  }
  bad = msrAreaFailure(v, F.VM_ENTRY_MSR_LOAD_COUNT, F.VM_ENTRY_MSR_LOAD_ADDRESS, 'VM-entry MSR-load address', S3);
  if (bad !== null) return bad;
  // The model has no SMM: every VM entry is from outside SMM.
  if ((entry & (ENTRY_TO_SMM | ENTRY_DEACTIVATE_DUAL_MONITOR)) !== 0) {
    return fail('controls', 'SMM controls outside SMM', S3,
      `VM-entry controls = ${hex(entry)}: "entry to SMM" (bit 10) and "deactivate dual-monitor treatment" (bit 11) ` +
      'must be 0 outside SMM');
  }
  return null;
}

/** A 4-KByte-aligned physical address control within MAXPHYADDR (27.2.1.1): its failure, or null. */
function addressFailure(v: Vmcs, enc: number, check: string, name: string): EntryCheckFailure | null {
  const lo = v.lo(enc), hi = v.hi(enc);
  if ((lo & 0xfff) === 0 && !beyondPa(hi)) return null;
  return fail('controls', check, '27.2.1.1', `${name} = ${hex64(lo, hi)}: bits 11:0 and ${PA_TEXT}`);
}

/**
 * An MSR area (27.2.1.2, 27.2.1.3): with a non-zero count, the address has
 * bits 3:0 clear and fits MAXPHYADDR, and so does its last byte, address +
 * count × 16 - 1 (computed without truncation).
 */
function msrAreaFailure(v: Vmcs, countEnc: number, addressEnc: number, check: string, section: string): EntryCheckFailure | null {
  const count = v.lo(countEnc) >>> 0;
  if (count === 0) return null;
  const lo = v.lo(addressEnc), hi = v.hi(addressEnc);
  if ((lo & 0xf) !== 0 || beyondPa(hi)) {
    return fail('controls', check, section, `${check} = ${hex64(lo, hi)} (count ${count}): bits 3:0 and ${PA_TEXT}`);
  }
  const last = hi * 2 ** 32 + (lo >>> 0) + count * 16 - 1;
  if (last >= PA_LIMIT) {
    return fail('controls', check, section,
      `${check} = ${hex64(lo, hi)} with count ${count}: last byte ` +
      `${hex64(last % 2 ** 32, Math.floor(last / 2 ** 32))} is beyond MAXPHYADDR = ${MAXPHYADDR}`);
  }
  return null;
}

/**
 * 27.2.1.1: with "use TPR shadow" and neither "virtual-interrupt delivery" nor
 * "virtualize APIC accesses", the TPR threshold must not exceed VTPR[7:4]. It
 * reads the virtual-APIC page, so unlike the other control checks its answer
 * can change without a VMWRITE: VM entry makes it every time.
 */
export function vtprFailure(cpu: Cpu, v: Vmcs): EntryCheckFailure | null {
  // Read by value index: this check is made at every VM entry.
  const vals = v.values, proc = vals[C.PROC]!;
  const sec = (proc & PROC_SECONDARY) !== 0 ? vals[C.PROC2]! : 0;
  if ((proc & PROC_USE_TPR_SHADOW) === 0 || (sec & (SEC_VIRTUAL_INTERRUPT_DELIVERY | SEC_VIRTUALIZE_APIC_ACCESSES)) !== 0) {
    return null;
  }
  // VTPR is byte 80H of the virtual-APIC page (30.1.1).
  const threshold = v.lo(F.TPR_THRESHOLD) & 0xf;
  const vtpr = cpu.memory.read8(v.num(F.VIRTUAL_APIC_ADDRESS) + 0x80);
  if (threshold <= vtpr >>> 4) return null;
  return fail('controls', 'TPR threshold above VTPR', '27.2.1.1',
    `TPR threshold = ${threshold}: must not exceed VTPR[7:4] = ${vtpr >>> 4}`);
}

// ---- 27.2.2 - 27.2.4 checks on the host-state area ----------------------------

/** SDM 27.2.2-27.2.4: host control registers, MSRs, segments, address-space size. Failure → VMfailValid(8). */
export function checkHostState(cpu: Cpu, v: Vmcs, caps: VmxCapabilities): EntryCheckFailure | null {
  let bad: EntryCheckFailure | null;
  // ---- 27.2.2 host control registers, MSRs and SSP
  const S2 = '27.2.2';
  // The fixed bits as int32 (capabilities hold them unsigned): passing doubles would box them.
  const cr0Fixed0 = caps.cr0Fixed0 | 0, cr0Fixed1 = caps.cr0Fixed1 | 0;
  const cr4Fixed0 = caps.cr4Fixed0 | 0, cr4Fixed1 = caps.cr4Fixed1 | 0;
  const cr0 = v.lo(F.HOST_CR0), cr0Hi = v.hi(F.HOST_CR0);
  if (!fixedBitsOk(cr0, cr0Hi, cr0Fixed0, cr0Fixed1)) {
    return fail('host', 'host CR0 fixed bits', S2, fixedBitsDetail('host CR0', cr0, cr0Hi, cr0Fixed0, cr0Fixed1));
  }
  const cr4 = v.lo(F.HOST_CR4), cr4Hi = v.hi(F.HOST_CR4);
  if (!fixedBitsOk(cr4, cr4Hi, cr4Fixed0, cr4Fixed1)) {
    return fail('host', 'host CR4 fixed bits', S2, fixedBitsDetail('host CR4', cr4, cr4Hi, cr4Fixed0, cr4Fixed1));
  }
  if ((cr4 & CR4_CET) !== 0 && (cr0 & CR0_WP) === 0) {
    return fail('host', 'host CR4.CET without CR0.WP', S2,
      `host CR4 = ${hex(cr4)}, CR0 = ${hex(cr0)}: CET (bit 23) needs WP (bit 16)`);
  }
  const cr3Hi = v.hi(F.HOST_CR3);
  if (beyondPa(cr3Hi)) return fail('host', 'host CR3', S2, `host CR3 = ${hex64(v.lo(F.HOST_CR3), cr3Hi)}: ${PA_TEXT}`);
  // Host canonicality is relative to the linear-address width the host will use: 57 bits with host CR4.LA57.
  const width = (cr4 & CR4_LA57) !== 0 ? 57 : 48;
  bad = canonicalFailure('host', v, F.HOST_IA32_SYSENTER_ESP, 'host IA32_SYSENTER_ESP', S2, width);
  if (bad !== null) return bad;
  bad = canonicalFailure('host', v, F.HOST_IA32_SYSENTER_EIP, 'host IA32_SYSENTER_EIP', S2, width);
  if (bad !== null) return bad;
  const exit = v.lo(EXIT_CTLS);
  if ((exit & EXIT_LOAD_CET_STATE) !== 0) {
    // Compact: not offered. IA32_S_CET bits 9:6 reserved; S_CET, SSP and the SSP-table address canonical.
    if ((v.lo(F.HOST_IA32_S_CET) & 0x3c0) !== 0) {
      return fail('host', 'host IA32_S_CET reserved bits', S2,
        `host IA32_S_CET = ${hex64(v.lo(F.HOST_IA32_S_CET), v.hi(F.HOST_IA32_S_CET))}: bits 9:6 must be 0`);
    }
    bad = canonicalFailure('host', v, F.HOST_IA32_S_CET, 'host IA32_S_CET', S2, width);
    if (bad !== null) return bad;
    bad = canonicalFailure('host', v, F.HOST_SSP, 'host SSP', S2, width);
    if (bad !== null) return bad;
    bad = canonicalFailure('host', v, F.HOST_IA32_INTERRUPT_SSP_TABLE_ADDR, 'host IA32_INTERRUPT_SSP_TABLE_ADDR', S2, width);
    if (bad !== null) return bad;
  }
  if ((exit & EXIT_LOAD_PERF_GLOBAL_CTRL) !== 0 &&
      !perfGlobalCtrlValid(cpu, v.lo(F.HOST_IA32_PERF_GLOBAL_CTRL), v.hi(F.HOST_IA32_PERF_GLOBAL_CTRL))) {
    return fail('host', 'host IA32_PERF_GLOBAL_CTRL', S2,
      `host IA32_PERF_GLOBAL_CTRL = ${hex64(v.lo(F.HOST_IA32_PERF_GLOBAL_CTRL), v.hi(F.HOST_IA32_PERF_GLOBAL_CTRL))}: ` +
      'reserved bits set');
  }
  if ((exit & EXIT_LOAD_PAT) !== 0 && !patValid(v.lo(F.HOST_IA32_PAT), v.hi(F.HOST_IA32_PAT))) {
    return fail('host', 'host IA32_PAT', S2,
      `host IA32_PAT = ${hex64(v.lo(F.HOST_IA32_PAT), v.hi(F.HOST_IA32_PAT))}: each byte must be 0, 1, 4, 5, 6 or 7`);
  }
  const hostSize = (exit & EXIT_HOST_ADDRESS_SPACE_SIZE) !== 0;
  if ((exit & EXIT_LOAD_EFER) !== 0) {
    const efer = v.lo(F.HOST_IA32_EFER), eferHi = v.hi(F.HOST_IA32_EFER);
    if (eferHi !== 0 || (efer & ~EFER_DEFINED) !== 0) {
      return fail('host', 'host IA32_EFER reserved bits', S2,
        `host IA32_EFER = ${hex64(efer, eferHi)}: only SCE, LME, LMA, NXE may be 1`);
    }
    if (((efer & EFER_LMA) !== 0) !== hostSize || ((efer & EFER_LME) !== 0) !== hostSize) {
      return fail('host', 'host IA32_EFER.LMA and LME', S2,
        `host IA32_EFER = ${hex(efer)}: LMA and LME must each be ${hostSize ? 1 : 0} ("host address-space size")`);
    }
  }
  if ((exit & EXIT_LOAD_PKRS) !== 0 && v.hi(F.HOST_IA32_PKRS) !== 0) {
    return fail('host', 'host IA32_PKRS', S2,
      `host IA32_PKRS = ${hex64(v.lo(F.HOST_IA32_PKRS), v.hi(F.HOST_IA32_PKRS))}: bits 63:32 must be 0`);
  }

  // ---- 27.2.3 host segment and descriptor-table registers
  const S3 = '27.2.3';
  for (let i = 0; i < HOST_SELECTOR_ORDER.length; i++) {
    const n = HOST_SELECTOR_ORDER[i]!, sel = v.lo(HOST_SELECTOR[n]!);
    if ((sel & 7) !== 0) {
      return fail('host', `host ${SEG_NAME[n]} selector RPL and TI`, S3,
        `host ${SEG_NAME[n]} selector = ${hex(sel)}: bits 2:0 must be 0`);
    }
  }
  if (v.lo(F.HOST_CS_SELECTOR) === 0) return fail('host', 'host CS selector null', S3, 'host CS selector = 0: must not be 0000H');
  if (v.lo(F.HOST_TR_SELECTOR) === 0) return fail('host', 'host TR selector null', S3, 'host TR selector = 0: must not be 0000H');
  if (!hostSize && v.lo(F.HOST_SS_SELECTOR) === 0) {
    return fail('host', 'host SS selector null', S3, 'host SS selector = 0: must not be 0000H with "host address-space size" 0');
  }
  bad = canonicalFailure('host', v, F.HOST_FS_BASE, 'host FS base', S3, width);
  if (bad !== null) return bad;
  bad = canonicalFailure('host', v, F.HOST_GS_BASE, 'host GS base', S3, width);
  if (bad !== null) return bad;
  bad = canonicalFailure('host', v, F.HOST_GDTR_BASE, 'host GDTR base', S3, width);
  if (bad !== null) return bad;
  bad = canonicalFailure('host', v, F.HOST_IDTR_BASE, 'host IDTR base', S3, width);
  if (bad !== null) return bad;
  bad = canonicalFailure('host', v, F.HOST_TR_BASE, 'host TR base', S3, width);
  if (bad !== null) return bad;

  // ---- 27.2.4 address-space size (IA32_EFER.LMA of the processor executing VMLAUNCH/VMRESUME)
  const S4 = '27.2.4';
  const entry = v.lo(ENTRY_CTLS);
  const ia32eGuest = (entry & ENTRY_IA32E_MODE_GUEST) !== 0;
  if ((cpu.efer & EFER_LMA) === 0) {
    if (ia32eGuest) {
      return fail('host', 'IA-32e mode guest outside IA-32e mode', S4, 'IA32_EFER.LMA = 0: "IA-32e mode guest" must be 0');
    }
    if (hostSize) {
      return fail('host', 'host address-space size outside IA-32e mode', S4,
        'IA32_EFER.LMA = 0: "host address-space size" must be 0');
    }
  } else if (!hostSize) {
    return fail('host', 'host address-space size in IA-32e mode', S4, 'IA32_EFER.LMA = 1: "host address-space size" must be 1');
  }
  const ripLo = v.lo(F.HOST_RIP), ripHi = v.hi(F.HOST_RIP);
  if (!hostSize) {
    // Listed by the SDM, though the IA32_EFER.LMA rules above already reject it.
    if (ia32eGuest) {
      return fail('host', 'IA-32e mode guest without host address-space size', S4,
        '"host address-space size" = 0: "IA-32e mode guest" must be 0');
    }
    if ((cr4 & CR4_PCIDE) !== 0) {
      return fail('host', 'host CR4.PCIDE', S4,
        `host CR4 = ${hex(cr4)}: PCIDE (bit 17) must be 0 with "host address-space size" 0`);
    }
    if (ripHi !== 0) return fail('host', 'host RIP bits 63:32', S4, `host RIP = ${hex64(ripLo, ripHi)}: bits 63:32 must be 0`);
  } else {
    if ((cr4 & CR4_PAE) === 0) {
      return fail('host', 'host CR4.PAE', S4, `host CR4 = ${hex(cr4)}: PAE (bit 5) must be 1 with "host address-space size" 1`);
    }
    if (!canonical(ripHi, width)) {
      return fail('host', 'host RIP canonical', S4, `host RIP = ${hex64(ripLo, ripHi)}: must be canonical (${width} bits)`);
    }
  }
  return null;
}

/** The failure for an address field that is not canonical in `width` bits, or null when it is. */
function canonicalFailure(
  kind: 'host' | 'guest', v: Vmcs, enc: number, name: string, section: string, width = GUEST_LINEAR_BITS,
): EntryCheckFailure | null {
  const lo = v.lo(enc), hi = v.hi(enc);
  if (canonical(hi, width)) return null;
  return fail(kind, `${name} canonical`, section, `${name} = ${hex64(lo, hi)}: must be canonical (${width} bits)`);
}

// ---- 27.3.1 checks on the guest-state area ------------------------------------

/** SDM 27.3.1.1-27.3.1.5: the guest-state area. Failure → VM exit with reason 33. */
export function checkGuestState(cpu: Cpu, v: Vmcs, caps: VmxCapabilities): EntryCheckFailure | null {
  let bad: EntryCheckFailure | null;
  const proc = v.lo(PROC_CTLS);
  const sec = (proc & PROC_SECONDARY) !== 0 ? v.lo(SEC_CTLS) : 0;
  const pin = v.lo(PIN_CTLS), entry = v.lo(ENTRY_CTLS);
  const ug = (sec & SEC_UNRESTRICTED_GUEST) !== 0;
  const ia32e = (entry & ENTRY_IA32E_MODE_GUEST) !== 0;

  // ---- 27.3.1.1 control registers, debug registers and MSRs
  const S1 = '27.3.1.1';
  const cr0 = v.lo(GUEST_CR0), cr0Hi = v.hi(GUEST_CR0);
  // PE and PG are not checked with "unrestricted guest"; NW and CD never (VM entry does not change them).
  const fixed0 = caps.cr0Fixed0 & ~(CR0_NW | CR0_CD) & (ug ? ~(CR0_PE | CR0_PG) : -1);
  const fixed1 = caps.cr0Fixed1 | CR0_NW | CR0_CD;
  if (!fixedBitsOk(cr0, cr0Hi, fixed0, fixed1)) {
    return fail('guest', 'guest CR0 fixed bits', S1, fixedBitsDetail('guest CR0', cr0, cr0Hi, fixed0, fixed1));
  }
  if ((cr0 & CR0_PG) !== 0 && (cr0 & CR0_PE) === 0) {
    return fail('guest', 'guest CR0.PG without PE', S1, `guest CR0 = ${hex(cr0)}: PG (bit 31) needs PE (bit 0)`);
  }
  const cr4 = v.lo(F.GUEST_CR4), cr4Hi = v.hi(F.GUEST_CR4);
  const cr4Fixed0 = caps.cr4Fixed0 | 0, cr4Fixed1 = caps.cr4Fixed1 | 0;
  if (!fixedBitsOk(cr4, cr4Hi, cr4Fixed0, cr4Fixed1)) {
    return fail('guest', 'guest CR4 fixed bits', S1, fixedBitsDetail('guest CR4', cr4, cr4Hi, cr4Fixed0, cr4Fixed1));
  }
  if ((cr4 & CR4_CET) !== 0 && (cr0 & CR0_WP) === 0) {
    return fail('guest', 'guest CR4.CET without CR0.WP', S1,
      `guest CR4 = ${hex(cr4)}, CR0 = ${hex(cr0)}: CET (bit 23) needs WP (bit 16)`);
  }
  const debugControls = (entry & ENTRY_LOAD_DEBUG_CONTROLS) !== 0;
  const debugctl = v.lo(F.GUEST_IA32_DEBUGCTL), debugctlHi = v.hi(F.GUEST_IA32_DEBUGCTL);
  if (debugControls && (debugctlHi !== 0 || (debugctl & ~DEBUGCTL_DEFINED) !== 0)) {
    return fail('guest', 'guest IA32_DEBUGCTL reserved bits', S1,
      `guest IA32_DEBUGCTL = ${hex64(debugctl, debugctlHi)}: only bits 0, 1, 11, 12 may be 1`);
  }
  if (ia32e && ((cr0 & CR0_PG) === 0 || (cr4 & CR4_PAE) === 0)) {
    return fail('guest', 'IA-32e mode guest without CR0.PG and CR4.PAE', S1,
      `guest CR0 = ${hex(cr0)}, CR4 = ${hex(cr4)}: "IA-32e mode guest" needs PG and PAE`);
  }
  if (!ia32e && (cr4 & CR4_PCIDE) !== 0) {
    return fail('guest', 'guest CR4.PCIDE outside IA-32e mode', S1,
      `guest CR4 = ${hex(cr4)}: PCIDE (bit 17) needs "IA-32e mode guest"`);
  }
  if (beyondPa(v.hi(F.GUEST_CR3))) {
    return fail('guest', 'guest CR3', S1, `guest CR3 = ${hex64(v.lo(F.GUEST_CR3), v.hi(F.GUEST_CR3))}: ${PA_TEXT}`);
  }
  if (debugControls && v.hi(F.GUEST_DR7) !== 0) {
    return fail('guest', 'guest DR7 bits 63:32', S1,
      `guest DR7 = ${hex64(v.lo(F.GUEST_DR7), v.hi(F.GUEST_DR7))}: bits 63:32 must be 0`);
  }
  bad = canonicalFailure('guest', v, F.GUEST_IA32_SYSENTER_ESP, 'guest IA32_SYSENTER_ESP', S1);
  if (bad !== null) return bad;
  bad = canonicalFailure('guest', v, F.GUEST_IA32_SYSENTER_EIP, 'guest IA32_SYSENTER_EIP', S1);
  if (bad !== null) return bad;
  if ((entry & ENTRY_LOAD_CET_STATE) !== 0) {
    // Compact: not offered. IA32_S_CET bits 9:6 reserved; S_CET and the SSP-table address canonical.
    if ((v.lo(F.GUEST_IA32_S_CET) & 0x3c0) !== 0) {
      return fail('guest', 'guest IA32_S_CET reserved bits', S1,
        `guest IA32_S_CET = ${hex64(v.lo(F.GUEST_IA32_S_CET), v.hi(F.GUEST_IA32_S_CET))}: bits 9:6 must be 0`);
    }
    bad = canonicalFailure('guest', v, F.GUEST_IA32_S_CET, 'guest IA32_S_CET', S1);
    if (bad !== null) return bad;
    bad = canonicalFailure('guest', v, F.GUEST_IA32_INTERRUPT_SSP_TABLE_ADDR, 'guest IA32_INTERRUPT_SSP_TABLE_ADDR', S1);
    if (bad !== null) return bad;
  }
  if ((entry & ENTRY_LOAD_PERF_GLOBAL_CTRL) !== 0 &&
      !perfGlobalCtrlValid(cpu, v.lo(F.GUEST_IA32_PERF_GLOBAL_CTRL), v.hi(F.GUEST_IA32_PERF_GLOBAL_CTRL))) {
    return fail('guest', 'guest IA32_PERF_GLOBAL_CTRL', S1,
      `guest IA32_PERF_GLOBAL_CTRL = ${hex64(v.lo(F.GUEST_IA32_PERF_GLOBAL_CTRL), v.hi(F.GUEST_IA32_PERF_GLOBAL_CTRL))}: ` +
      'reserved bits set');
  }
  if ((entry & ENTRY_LOAD_PAT) !== 0 && !patValid(v.lo(F.GUEST_IA32_PAT), v.hi(F.GUEST_IA32_PAT))) {
    return fail('guest', 'guest IA32_PAT', S1,
      `guest IA32_PAT = ${hex64(v.lo(F.GUEST_IA32_PAT), v.hi(F.GUEST_IA32_PAT))}: each byte must be 0, 1, 4, 5, 6 or 7`);
  }
  if ((entry & ENTRY_LOAD_EFER) !== 0) {
    const efer = v.lo(F.GUEST_IA32_EFER), eferHi = v.hi(F.GUEST_IA32_EFER);
    if (eferHi !== 0 || (efer & ~EFER_DEFINED) !== 0) {
      return fail('guest', 'guest IA32_EFER reserved bits', S1,
        `guest IA32_EFER = ${hex64(efer, eferHi)}: only SCE, LME, LMA, NXE may be 1`);
    }
    if (((efer & EFER_LMA) !== 0) !== ia32e) {
      return fail('guest', 'guest IA32_EFER.LMA', S1,
        `guest IA32_EFER = ${hex(efer)}: LMA must be ${ia32e ? 1 : 0} ("IA-32e mode guest")`);
    }
    if ((cr0 & CR0_PG) !== 0 && ((efer & EFER_LME) !== 0) !== ia32e) {
      return fail('guest', 'guest IA32_EFER.LME', S1,
        `guest IA32_EFER = ${hex(efer)}: with CR0.PG = 1, LME must be ${ia32e ? 1 : 0} ("IA-32e mode guest")`);
    }
  }
  if ((entry & ENTRY_LOAD_BNDCFGS) !== 0) {
    // Compact: not offered. Bits 11:2 reserved, bits 63:12 (the base) canonical.
    const lo = v.lo(F.GUEST_IA32_BNDCFGS), hi = v.hi(F.GUEST_IA32_BNDCFGS);
    if ((lo & 0xffc) !== 0 || !canonical(hi, GUEST_LINEAR_BITS)) {
      return fail('guest', 'guest IA32_BNDCFGS', S1,
        `guest IA32_BNDCFGS = ${hex64(lo, hi)}: bits 11:2 must be 0, bits 63:12 canonical`);
    }
  }
  // Compact, not offered: the model has no Intel PT nor architectural LBRs, so every bit of those MSRs is reserved.
  if ((entry & ENTRY_LOAD_RTIT_CTL) !== 0 && (v.lo(F.GUEST_IA32_RTIT_CTL) !== 0 || v.hi(F.GUEST_IA32_RTIT_CTL) !== 0)) {
    return fail('guest', 'guest IA32_RTIT_CTL', S1, 'guest IA32_RTIT_CTL: reserved bits set');
  }
  if ((entry & ENTRY_LOAD_LBR_CTL) !== 0 && (v.lo(F.GUEST_IA32_LBR_CTL) !== 0 || v.hi(F.GUEST_IA32_LBR_CTL) !== 0)) {
    return fail('guest', 'guest IA32_LBR_CTL', S1, 'guest IA32_LBR_CTL: reserved bits set');
  }
  if ((entry & ENTRY_LOAD_PKRS) !== 0 && v.hi(F.GUEST_IA32_PKRS) !== 0) {
    return fail('guest', 'guest IA32_PKRS', S1,
      `guest IA32_PKRS = ${hex64(v.lo(F.GUEST_IA32_PKRS), v.hi(F.GUEST_IA32_PKRS))}: bits 63:32 must be 0`);
  }
  if ((entry & ENTRY_LOAD_UINV) !== 0 && (v.lo(F.GUEST_UINV) & 0xff00) !== 0) {
    return fail('guest', 'guest UINV', S1, `guest UINV = ${hex(v.lo(F.GUEST_UINV))}: bits 15:8 must be 0`);
  }

  // ---- 27.3.1.2 segment registers
  bad = checkGuestSegments(v, cr0, ug, ia32e);
  if (bad !== null) return bad;

  // ---- 27.3.1.3 descriptor-table registers
  const S3 = '27.3.1.3';
  bad = canonicalFailure('guest', v, F.GUEST_GDTR_BASE, 'guest GDTR base', S3);
  if (bad !== null) return bad;
  bad = canonicalFailure('guest', v, F.GUEST_IDTR_BASE, 'guest IDTR base', S3);
  if (bad !== null) return bad;
  if ((v.lo(F.GUEST_GDTR_LIMIT) & 0xffff0000) !== 0) {
    return fail('guest', 'guest GDTR limit', S3, `guest GDTR limit = ${hex(v.lo(F.GUEST_GDTR_LIMIT))}: bits 31:16 must be 0`);
  }
  if ((v.lo(F.GUEST_IDTR_LIMIT) & 0xffff0000) !== 0) {
    return fail('guest', 'guest IDTR limit', S3, `guest IDTR limit = ${hex(v.lo(F.GUEST_IDTR_LIMIT))}: bits 31:16 must be 0`);
  }

  // ---- 27.3.1.4 RIP, RFLAGS and SSP
  const S4 = '27.3.1.4';
  const csL = (gAr[CS]! & AR_L) !== 0;
  bad = guestRipFailure(v);
  if (bad !== null) return bad;
  const rflags = v.lo(F.GUEST_RFLAGS), rflagsHi = v.hi(F.GUEST_RFLAGS);
  if (rflagsHi !== 0 || (rflags & RFLAGS_RESERVED) !== 0 || (rflags & RFLAGS_FIXED1) === 0) {
    return fail('guest', 'guest RFLAGS reserved bits', S4,
      `guest RFLAGS = ${hex64(rflags, rflagsHi)}: bits 63:22, 15, 5, 3 must be 0 and bit 1 must be 1`);
  }
  if ((rflags & RFLAGS_VM) !== 0 && (ia32e || (cr0 & CR0_PE) === 0)) {
    return fail('guest', 'guest RFLAGS.VM', S4,
      `guest RFLAGS = ${hex(rflags)}: VM (bit 17) must be 0 with "IA-32e mode guest" or CR0.PE = 0`);
  }
  const info = v.lo(ENTRY_INFO);
  const injecting = (info & INFO_VALID) !== 0;
  const injType = (info >>> 8) & 7, injVector = info & 0xff;
  if (injecting && injType === InterruptionType.EXTERNAL_INTERRUPT && (rflags & RFLAGS_IF) === 0) {
    return fail('guest', 'guest RFLAGS.IF for an injected external interrupt', S4, `guest RFLAGS = ${hex(rflags)}: IF must be 1`);
  }
  if ((entry & ENTRY_LOAD_CET_STATE) !== 0) {
    // Compact: not offered. SSP bits 1:0 zero; bits 63:32 zero outside 64-bit mode, canonical in it.
    const lo = v.lo(F.GUEST_SSP), hi = v.hi(F.GUEST_SSP);
    if ((lo & 3) !== 0 || (!(ia32e && csL) && hi !== 0) || !canonical(hi, GUEST_LINEAR_BITS)) {
      return fail('guest', 'guest SSP', S4,
        `guest SSP = ${hex64(lo, hi)}: bits 1:0 must be 0, and bits 63:32 0 outside 64-bit mode`);
    }
  }

  // ---- 27.3.1.5 non-register state
  const S5 = '27.3.1.5';
  const activity = v.lo(F.GUEST_ACTIVITY_STATE) >>> 0;
  if (activity > 3 || (activity !== 0 && (caps.misc & bit(MISC_ACTIVITY_SHIFT + activity)) === 0)) {
    return fail('guest', 'guest activity state', S5,
      `guest activity state = ${activity}: must be 0-3 and supported (IA32_VMX_MISC[8:6])`);
  }
  if (activity === ActivityState.HLT && (gAr[SS]! & 0x60) !== 0) {
    return fail('guest', 'guest HLT state with SS.DPL not 0', S5, `guest SS access rights = ${hex(gAr[SS]!)}: HLT needs DPL 0`);
  }
  const intr = v.lo(F.GUEST_INTERRUPTIBILITY_STATE);
  if (activity !== ActivityState.ACTIVE && (intr & (STI | MOV_SS)) !== 0) {
    return fail('guest', 'guest activity state with STI or MOV-SS blocking', S5,
      `guest activity state = ${activity}, interruptibility = ${hex(intr)}: blocking by STI or MOV SS needs the active state`);
  }
  if (injecting && !injectionAllowed(activity, injType, injVector)) {
    return fail('guest', 'event injection in this activity state', S5,
      `guest activity state = ${activity}: an event of type ${injType} vector ${injVector} would be blocked`);
  }
  if (activity === ActivityState.WAIT_FOR_SIPI && (entry & ENTRY_TO_SMM) !== 0) {
    return fail('guest', 'guest wait-for-SIPI with entry to SMM', S5, 'wait-for-SIPI is not allowed with "entry to SMM"');
  }
  if ((intr & INTERRUPTIBILITY_RESERVED) !== 0) {
    return fail('guest', 'guest interruptibility reserved bits', S5,
      `guest interruptibility state = ${hex(intr)}: bits 31:5 must be 0`);
  }
  if ((intr & (STI | MOV_SS)) === (STI | MOV_SS)) {
    return fail('guest', 'guest blocking by STI and MOV SS', S5,
      `guest interruptibility state = ${hex(intr)}: bits 0 and 1 must not both be 1`);
  }
  if ((intr & STI) !== 0 && (rflags & RFLAGS_IF) === 0) {
    return fail('guest', 'guest blocking by STI with IF = 0', S5,
      `guest interruptibility state = ${hex(intr)}, RFLAGS = ${hex(rflags)}: blocking by STI needs IF = 1`);
  }
  if (injecting && injType === InterruptionType.EXTERNAL_INTERRUPT && (intr & (STI | MOV_SS)) !== 0) {
    return fail('guest', 'guest blocking for an injected external interrupt', S5,
      `guest interruptibility state = ${hex(intr)}: bits 1:0 must be 0`);
  }
  if (injecting && injType === InterruptionType.NMI && (intr & MOV_SS) !== 0) {
    return fail('guest', 'guest MOV-SS blocking for an injected NMI', S5,
      `guest interruptibility state = ${hex(intr)}: bit 1 must be 0`);
  }
  // The model never runs in SMM.
  if ((intr & SMI) !== 0) {
    return fail('guest', 'guest blocking by SMI outside SMM', S5,
      `guest interruptibility state = ${hex(intr)}: bit 2 must be 0 outside SMM`);
  }
  if ((entry & ENTRY_TO_SMM) !== 0 && (intr & SMI) === 0) {
    return fail('guest', 'guest entry to SMM without blocking by SMI', S5,
      `guest interruptibility state = ${hex(intr)}: bit 2 must be 1`);
  }
  // "A processor may require bit 0 (blocking by STI) to be 0" when injecting an NMI: this model does,
  // and reports it with exit qualification 3, the one the SDM gives this failure.
  if (injecting && injType === InterruptionType.NMI && (intr & STI) !== 0) {
    return fail('guest', 'guest STI blocking for an injected NMI', S5,
      `guest interruptibility state = ${hex(intr)}: bit 0 must be 0`, VmEntryFailureQualification.NMI_INJECTION);
  }
  if ((pin & PIN_VIRTUAL_NMIS) !== 0 && injecting && injType === InterruptionType.NMI && (intr & NMI) !== 0) {
    return fail('guest', 'guest virtual-NMI blocking for an injected NMI', S5,
      `guest interruptibility state = ${hex(intr)}: bit 3 must be 0`);
  }
  // Enclave interruption needs SGX, which the model does not have.
  if ((intr & ENCLAVE) !== 0) {
    return fail('guest', 'guest enclave interruption', S5,
      `guest interruptibility state = ${hex(intr)}: bit 4 needs bit 1 = 0 and SGX ` +
      '(CPUID.(EAX=07H,ECX=0):EBX[2]), which this processor lacks');
  }
  const pd = v.lo(F.GUEST_PENDING_DEBUG_EXCEPTIONS), pdHi = v.hi(F.GUEST_PENDING_DEBUG_EXCEPTIONS);
  if (pdHi !== 0 || (pd & PD_RESERVED) !== 0) {
    return fail('guest', 'guest pending debug exceptions reserved bits', S5,
      `guest pending debug exceptions = ${hex64(pd, pdHi)}: bits 63:17, 15, 13 and 11:4 must be 0`);
  }
  if ((intr & (STI | MOV_SS)) !== 0 || activity === ActivityState.HLT) {
    const tf = (rflags & RFLAGS_TF) !== 0, btf = (debugctl & DEBUGCTL_BTF) !== 0, bs = (pd & PD_BS) !== 0;
    if (tf && !btf && !bs) {
      return fail('guest', 'guest pending BS', S5,
        'pending debug exceptions BS (bit 14) must be 1 with RFLAGS.TF = 1 and IA32_DEBUGCTL.BTF = 0');
    }
    if ((!tf || btf) && bs) {
      return fail('guest', 'guest pending BS', S5,
        'pending debug exceptions BS (bit 14) must be 0 with RFLAGS.TF = 0 or IA32_DEBUGCTL.BTF = 1');
    }
  }
  if ((pd & PD_RTM) !== 0) {
    if ((pd & PD_RTM_RESERVED) !== 0 || (pd & PD_ENABLED_BREAKPOINT) === 0) {
      return fail('guest', 'guest pending RTM', S5,
        `guest pending debug exceptions = ${hex(pd)}: with RTM, bits 11:0 and 15:13 must be 0 and bit 12 must be 1`);
    }
    // The skylake profile does not enumerate RTM (CPUID.(EAX=07H,ECX=0):EBX[11] = 0).
    return fail('guest', 'guest pending RTM', S5,
      'pending debug exceptions RTM (bit 16) needs RTM support, which this processor lacks');
  }
  const linkLo = v.lo(F.VMCS_LINK_POINTER), linkHi = v.hi(F.VMCS_LINK_POINTER);
  if (linkLo !== -1 || linkHi !== -1) {
    const Q = VmEntryFailureQualification.INVALID_VMCS_LINK_POINTER;
    if ((linkLo & 0xfff) !== 0 || beyondPa(linkHi)) {
      return fail('guest', 'VMCS link pointer', S5, `VMCS link pointer = ${hex64(linkLo, linkHi)}: bits 11:0 and ${PA_TEXT}`, Q);
    }
    const link = linkHi * 2 ** 32 + (linkLo >>> 0);
    const header = cpu.memory.read32(link);
    const shadow = (sec & SEC_VMCS_SHADOWING) !== 0 ? 1 : 0;
    if ((header & 0x7fffffff) !== caps.revision || header >>> 31 !== shadow) {
      return fail('guest', 'VMCS link pointer revision', S5,
        `VMCS at ${hex64(linkLo, linkHi)} starts ${hex(header)}: bits 30:0 must be revision ${caps.revision}, ` +
        `bit 31 must be ${shadow} ("VMCS shadowing")`, Q);
    }
    // Outside SMM (always, here): the link pointer must not be the current-VMCS pointer.
    if (link === v.address) {
      return fail('guest', 'VMCS link pointer is the current VMCS', S5,
        `VMCS link pointer = ${hex64(linkLo, linkHi)}: must differ from the current-VMCS pointer`, Q);
    }
  }
  return null;
}

/**
 * 27.3.1.4: guest RIP bits 63:32 are 0 outside 64-bit mode, and bits 63:N
 * identical in it. The one guest check whose field changes at nearly every
 * entry (a VMM advances RIP past the exiting instruction), so VM entry makes it
 * even when the rest of the guest state is known to pass.
 */
export function guestRipFailure(v: Vmcs): EntryCheckFailure | null {
  // Read by value index: this check is made at every VM entry.
  const vals = v.values, ia32e = (vals[C.ENTRY]! & ENTRY_IA32E_MODE_GUEST) !== 0;
  const csL = (vals[G.CS_ACCESS]! & AR_L) !== 0;
  const ripLo = vals[G.RIP]!, ripHi = vals[G.RIP + 1]!;
  if (!ia32e || !csL) {
    if (ripHi === 0) return null;
    return fail('guest', 'guest RIP bits 63:32', '27.3.1.4',
      `guest RIP = ${hex64(ripLo, ripHi)}: bits 63:32 must be 0 outside 64-bit mode`);
  }
  // "bits 63:N must be identical" with N = 48 linear-address bits: bits 63:48, not the canonical 63:47.
  const top = ripHi >> (GUEST_LINEAR_BITS - 32);
  if (top === 0 || top === -1) return null;
  return fail('guest', 'guest RIP bits 63:48', '27.3.1.4',
    `guest RIP = ${hex64(ripLo, ripHi)}: bits 63:${GUEST_LINEAR_BITS} must be identical`);
}

/**
 * Events that may be injected in each activity state (27.3.1.5): any when
 * active; in HLT external interrupts, NMIs, #DB, #MC and pending MTF VM exits;
 * in shutdown NMIs and #MC; none in wait-for-SIPI.
 */
function injectionAllowed(activity: number, type: number, vector: number): boolean {
  switch (activity) {
    case ActivityState.ACTIVE: return true;
    case ActivityState.HLT:
      return type === InterruptionType.EXTERNAL_INTERRUPT || type === InterruptionType.NMI ||
        (type === InterruptionType.HARDWARE_EXCEPTION && (vector === 1 || vector === 18)) ||
        (type === InterruptionType.OTHER_EVENT && vector === 0);
    case ActivityState.SHUTDOWN:
      return type === InterruptionType.NMI || (type === InterruptionType.HARDWARE_EXCEPTION && vector === 18);
    default: return false;
  }
}


/** The rules TR and a usable LDTR share after their type (27.3.1.2); TR must also be usable. */
function systemSegmentFailure(n: number): EntryCheckFailure | null {
  const a = gAr[n]!;
  if ((a & AR_S) !== 0) return segFail(n, 'S bit', 'S (bit 4) must be 0');
  if ((a & AR_P) === 0) return segFail(n, 'P bit', 'P (bit 7) must be 1');
  if ((a & AR_RESERVED_LOW) !== 0) return segFail(n, 'access rights bits 11:8', 'bits 11:8 must be 0');
  if (!granularityOk(gLimit[n]!, a)) return segFail(n, 'G bit', 'G must agree with the limit');
  if (n === TR && (a & AR_UNUSABLE) !== 0) return segFail(n, 'unusable', 'TR must be usable (bit 16 = 0)');
  if ((a & AR_RESERVED_HIGH) !== 0) return segFail(n, 'access rights bits 31:17', 'bits 31:17 must be 0');
  return null;
}

/** Guest segment n (scratch arrays) is usable: access-rights bit 16 clear. */
const usable = (n: number): boolean => (gAr[n]! & AR_UNUSABLE) === 0;

function segFail(n: number, check: string, what: string): EntryCheckFailure {
  return fail('guest', `guest ${SEG_NAME[n]} ${check}`, '27.3.1.2',
    `guest ${SEG_NAME[n]}: selector ${hex(gSel[n]!)}, base ${hex64(gBaseLo[n]!, gBaseHi[n]!)}, ` +
    `limit ${hex(gLimit[n]!)}, access rights ${hex(gAr[n]!)}: ${what}`);
}

/** The first register, in the SDM's order CS, SS, DS, ES, FS, GS, whose bit is set in `mask` (bit n = register n). */
function firstInOrder(mask: number): number {
  for (let i = 0; i < 6; i++) if ((mask & (1 << SIX[i]!)) !== 0) return SIX[i]!;
  return -1;
}

/**
 * SDM 27.3.1.2: selectors, bases, limits, then access rights, each as the SDM
 * lists them. The access-rights rules that apply to all of CS, SS, DS, ES, FS
 * and GS are evaluated in one pass into masks (bit n: register n breaks the
 * rule) and reported rule by rule in the SDM's order.
 */
function checkGuestSegments(v: Vmcs, cr0: number, ug: boolean, ia32e: boolean): EntryCheckFailure | null {
  const values = v.values;
  for (let n = 0; n < 8; n++) {
    gSel[n] = values[SELECTOR_AT[n]!]!;
    gLimit[n] = values[LIMIT_AT[n]!]!;
    gAr[n] = values[ACCESS_AT[n]!]!;
    gBaseLo[n] = values[BASE_AT[n]!]!;
    gBaseHi[n] = values[BASE_AT[n]! + 1]!;
  }
  const v86 = (v.lo(F.GUEST_RFLAGS) & RFLAGS_VM) !== 0;

  // Selector fields.
  if ((gSel[TR]! & 4) !== 0) return segFail(TR, 'selector TI', 'TI (bit 2) must be 0');
  if (usable(LDTR) && (gSel[LDTR]! & 4) !== 0) return segFail(LDTR, 'selector TI', 'TI (bit 2) must be 0 when LDTR is usable');
  if (!v86 && !ug && (gSel[SS]! & 3) !== (gSel[CS]! & 3)) {
    return segFail(SS, 'selector RPL', `RPL must equal CS.RPL = ${gSel[CS]! & 3}`);
  }

  // Base-address fields.
  if (v86) {
    for (let i = 0; i < 6; i++) {
      const n = SIX[i]!;
      if (gBaseHi[n] !== 0 || gBaseLo[n] !== gSel[n]! << 4) {
        return segFail(n, 'base in virtual-8086 mode', `base must be ${hex(gSel[n]! << 4)} (selector × 16)`);
      }
    }
  }
  if (!canonical(gBaseHi[TR]!, GUEST_LINEAR_BITS)) return segFail(TR, 'base canonical', 'base must be canonical');
  if (!canonical(gBaseHi[FS]!, GUEST_LINEAR_BITS)) return segFail(FS, 'base canonical', 'base must be canonical');
  if (!canonical(gBaseHi[GS]!, GUEST_LINEAR_BITS)) return segFail(GS, 'base canonical', 'base must be canonical');
  if (usable(LDTR) && !canonical(gBaseHi[LDTR]!, GUEST_LINEAR_BITS)) {
    return segFail(LDTR, 'base canonical', 'base must be canonical when usable');
  }
  if (gBaseHi[CS] !== 0) return segFail(CS, 'base bits 63:32', 'bits 63:32 of the base must be 0');
  if (usable(SS) && gBaseHi[SS] !== 0) return segFail(SS, 'base bits 63:32', 'bits 63:32 of the base must be 0 when usable');
  if (usable(DS) && gBaseHi[DS] !== 0) return segFail(DS, 'base bits 63:32', 'bits 63:32 of the base must be 0 when usable');
  if (usable(ES) && gBaseHi[ES] !== 0) return segFail(ES, 'base bits 63:32', 'bits 63:32 of the base must be 0 when usable');

  // Limit fields.
  if (v86) {
    for (let i = 0; i < 6; i++) {
      const n = SIX[i]!;
      if (gLimit[n] !== 0xffff) return segFail(n, 'limit in virtual-8086 mode', 'limit must be 0000FFFFH');
    }
  }

  // Access-rights fields of CS, SS, DS, ES, FS, GS.
  if (v86) {
    for (let i = 0; i < 6; i++) {
      const n = SIX[i]!;
      if (gAr[n] !== 0xf3) return segFail(n, 'access rights in virtual-8086 mode', 'access rights must be 000000F3H');
    }
  } else {
    // One pass over the registers the rules apply to (CS, and the others when usable).
    let dataTypeBad = 0, sBad = 0, dataDplBad = 0, pBad = 0, lowBad = 0, gBad = 0, highBad = 0;
    for (let n = 0; n < 6; n++) {
      const a = gAr[n]!;
      if (n !== CS && (a & AR_UNUSABLE) !== 0) continue;
      const m = 1 << n, type = a & AR_TYPE;
      if (n !== CS && n !== SS) {
        // DS, ES, FS, GS: accessed; a code segment readable; DPL not below RPL (data, non-conforming code).
        if ((type & 1) === 0 || ((type & 8) !== 0 && (type & 2) === 0)) dataTypeBad |= m;
        if (!ug && type <= 11 && ((a >>> 5) & 3) < (gSel[n]! & 3)) dataDplBad |= m;
      }
      if ((a & AR_S) === 0) sBad |= m;
      if ((a & AR_P) === 0) pBad |= m;
      if ((a & AR_RESERVED_LOW) !== 0) lowBad |= m;
      if (!granularityOk(gLimit[n]!, a)) gBad |= m;
      if ((a & AR_RESERVED_HIGH) !== 0) highBad |= m;
    }
    // Type.
    const csType = gAr[CS]! & AR_TYPE;
    if (!(csType === 9 || csType === 11 || csType === 13 || csType === 15 || (ug && csType === 3))) {
      return segFail(CS, 'type', ug ? 'type must be 3, 9, 11, 13 or 15' : 'type must be 9, 11, 13 or 15 (accessed code)');
    }
    const ssType = gAr[SS]! & AR_TYPE;
    if (usable(SS) && ssType !== 3 && ssType !== 7) return segFail(SS, 'type', 'type must be 3 or 7 (read/write accessed data)');
    if (dataTypeBad !== 0) {
      const n = firstInOrder(dataTypeBad);
      return segFail(n, 'type',
        (gAr[n]! & 1) === 0 ? 'type bit 0 (accessed) must be 1' : 'a code segment must be readable (type bit 1)');
    }
    // S.
    if (sBad !== 0) return segFail(firstInOrder(sBad), 'S bit', 'S (bit 4) must be 1');
    // DPL.
    const csDpl = (gAr[CS]! >>> 5) & 3, ssDpl = (gAr[SS]! >>> 5) & 3;
    if (csType === 3 && csDpl !== 0) return segFail(CS, 'DPL', 'DPL must be 0 with type 3');
    if ((csType === 9 || csType === 11) && csDpl !== ssDpl) {
      return segFail(CS, 'DPL', `DPL of non-conforming code must equal SS.DPL = ${ssDpl}`);
    }
    if ((csType === 13 || csType === 15) && csDpl > ssDpl) {
      return segFail(CS, 'DPL', `DPL of conforming code must not exceed SS.DPL = ${ssDpl}`);
    }
    if (!ug && ssDpl !== (gSel[SS]! & 3)) return segFail(SS, 'DPL', 'DPL must equal the selector RPL');
    if ((csType === 3 || (cr0 & CR0_PE) === 0) && ssDpl !== 0) {
      return segFail(SS, 'DPL', 'DPL must be 0 with CS type 3 or CR0.PE = 0');
    }
    if (dataDplBad !== 0) {
      return segFail(firstInOrder(dataDplBad), 'DPL', 'DPL must not be below the selector RPL (data or non-conforming code)');
    }
    // P, reserved bits 11:8, D/B of CS in 64-bit mode, G, reserved bits 31:17.
    if (pBad !== 0) return segFail(firstInOrder(pBad), 'P bit', 'P (bit 7) must be 1');
    if (lowBad !== 0) return segFail(firstInOrder(lowBad), 'access rights bits 11:8', 'bits 11:8 must be 0');
    if (ia32e && (gAr[CS]! & AR_L) !== 0 && (gAr[CS]! & AR_DB) !== 0) {
      return segFail(CS, 'D/B bit', 'D/B (bit 14) must be 0 with L = 1 in IA-32e mode');
    }
    if (gBad !== 0) {
      return segFail(firstInOrder(gBad), 'G bit',
        'G must be 0 if limit bits 11:0 are not all 1, and 1 if any of limit bits 31:20 is 1');
    }
    if (highBad !== 0) return segFail(firstInOrder(highBad), 'access rights bits 31:17', 'bits 31:17 must be 0');
  }

  // TR.
  const trType = gAr[TR]! & AR_TYPE;
  if (ia32e ? trType !== 11 : trType !== 3 && trType !== 11) {
    return segFail(TR, 'type', ia32e ? 'type must be 11 (busy 64-bit TSS)' : 'type must be 3 or 11 (busy TSS)');
  }
  const tr = systemSegmentFailure(TR);
  if (tr !== null) return tr;
  // LDTR, when usable.
  if (usable(LDTR)) {
    if ((gAr[LDTR]! & AR_TYPE) !== 2) return segFail(LDTR, 'type', 'type must be 2 (LDT)');
    return systemSegmentFailure(LDTR);
  }
  return null;
}
