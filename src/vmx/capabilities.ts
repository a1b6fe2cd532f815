/**
 * The VMX capabilities this model offers, as the capability MSRs report them
 * (SDM vol. 3D, appendix A). A control is offered only where the model
 * implements what it does: a real Skylake part offers more (APIC
 * virtualization, posted interrupts, PML, VM functions, ...), which later parts
 * of hvsim add here as they are built.
 */
import { DEFAULT1, VmxMsr } from '../../vmcs/controls.js';
import { VMCS_FIELDS, fieldExists, index as fieldIndex } from '../../vmcs/fields.js';
import type { Capability } from '../../vmcs/controls.js';
import { capabilityBit } from '../../vmcs/controls.js';

/** Allowed settings of a 32-bit control field: bits that must be 1, bits that may be 1 (A.3-A.5). */
export interface AllowedSettings { readonly allowed0: number; readonly allowed1: number }

export interface VmxCapabilities {
  /** VMCS revision identifier (IA32_VMX_BASIC[30:0]). */
  readonly revision: number;
  /** TRUE-MSR settings (IA32_VMX_BASIC[55] = 1: the default1 bits of A.2 may be 0 where these allow). */
  readonly pin: AllowedSettings;
  readonly proc: AllowedSettings;
  readonly secondary: AllowedSettings;
  readonly exit: AllowedSettings;
  readonly entry: AllowedSettings;
  /** IA32_VMX_MISC bits 31:0 (A.6). */
  readonly misc: number;
  /** CR0/CR4 bits fixed to 1 and bits allowed to be 1 in VMX operation (A.7, A.8). */
  readonly cr0Fixed0: number;
  readonly cr0Fixed1: number;
  readonly cr4Fixed0: number;
  readonly cr4Fixed1: number;
}

const bit = (n: number): number => (1 << n) >>> 0;
const bits = (...ns: number[]): number => ns.reduce((m, n) => (m | bit(n)) >>> 0, 0);

/** VMX-preemption timer rate: it counts down once every 2^5 TSC ticks (IA32_VMX_MISC[4:0]). */
export const PREEMPTION_TIMER_SHIFT = 5;
/** CR3-target values the VMCS holds (IA32_VMX_MISC[24:16]). */
export const CR3_TARGET_COUNT = 4;
/** The recommended maximum of MSR-area entries, 512 × (N + 1) with N = IA32_VMX_MISC[27:25] = 0. */
export const MAX_MSR_LIST = 512;

/** What hvsim's VMX offers on the skylake profile. */
export const SKYLAKE_VMX: VmxCapabilities = {
  revision: 4,
  pin: {
    allowed0: DEFAULT1.pin,
    // External-interrupt exiting, NMI exiting, virtual NMIs, VMX-preemption timer (25.6.1).
    allowed1: (DEFAULT1.pin | bits(0, 3, 5, 6)) >>> 0,
  },
  proc: {
    // TRUE_PROCBASED: CR3-load and CR3-store exiting (15, 16) may be 0.
    allowed0: (DEFAULT1.proc & ~bits(15, 16)) >>> 0,
    // Interrupt window, TSC offsetting, HLT, INVLPG, MWAIT, RDPMC, RDTSC, CR3 load/store, CR8 load/store,
    // use TPR shadow, NMI window, MOV DR, unconditional I/O, I/O bitmaps, monitor trap flag, MSR bitmaps,
    // MONITOR, PAUSE exiting, secondary controls (25.6.2).
    allowed1: (DEFAULT1.proc | bits(2, 3, 7, 9, 10, 11, 12, 15, 16, 19, 20, 21, 22, 23, 24, 25, 27, 28, 29, 30, 31)) >>> 0,
  },
  secondary: {
    allowed0: 0,
    // Enable EPT, descriptor-table exiting, enable RDTSCP, enable VPID, WBINVD exiting, unrestricted guest,
    // PAUSE-loop exiting, RDRAND exiting, enable INVPCID, RDSEED exiting, enable XSAVES/XRSTORS (25.6.2).
    allowed1: bits(1, 2, 3, 5, 6, 7, 10, 11, 12, 16, 20),
  },
  exit: {
    // TRUE_EXIT: "save debug controls" (2) may be 0.
    allowed0: (DEFAULT1.exit & ~bit(2)) >>> 0,
    // Save debug controls, host address-space size, acknowledge interrupt on exit, save/load PAT and EFER,
    // save VMX-preemption timer value (25.7.1).
    allowed1: (DEFAULT1.exit | bits(2, 9, 15, 18, 19, 20, 21, 22)) >>> 0,
  },
  entry: {
    // TRUE_ENTRY: "load debug controls" (2) may be 0.
    allowed0: (DEFAULT1.entry & ~bit(2)) >>> 0,
    // Load debug controls, IA-32e mode guest, load PAT, load EFER (25.8.1).
    allowed1: (DEFAULT1.entry | bits(2, 9, 14, 15)) >>> 0,
  },
  // EFER.LMA stored on exit (5), activity states HLT, shutdown and wait-for-SIPI (6-8), four CR3 targets,
  // VMWRITE to any field, VM-exit information fields included (29).
  misc: (PREEMPTION_TIMER_SHIFT | bits(5, 6, 7, 8, 29) | (CR3_TARGET_COUNT << 16)) >>> 0,
  cr0Fixed0: 0x80000021, // PE, NE, PG
  cr0Fixed1: 0xffffffff,
  cr4Fixed0: 0x2000, // VMXE
  // The CR4 bits a Skylake-profile processor supports (cpuid.ts cr4Supported): TSD, DE, PSE, PAE, PGE, PCE,
  // OSFXSR, OSXMMEXCPT, VMXE, FSGSBASE, PCIDE, OSXSAVE, SMEP, SMAP. The part itself also has VME, PVI,
  // MCE and SMXE, which the model lacks.
  cr4Fixed1: bits(2, 3, 4, 5, 7, 8, 9, 10, 13, 16, 17, 18, 20, 21),
};

/** True when the capabilities allow the 1-setting of a control (or the field feature it names). */
export function supports(caps: VmxCapabilities, cap: Capability): boolean {
  const { group, bit: b } = capabilityBit(cap);
  switch (group) {
    case 'pin': case 'proc': case 'secondary': case 'exit': case 'entry':
      return (caps[group].allowed1 & bit(b)) !== 0;
    default:
      return false; // tertiary controls, secondary exit controls, VM functions: not offered
  }
}

/** The highest field index of any VMCS encoding the model supports (IA32_VMX_VMCS_ENUM[9:1], A.9). */
export function highestIndex(caps: VmxCapabilities): number {
  let max = 0;
  for (const f of VMCS_FIELDS) if (fieldExists(f, (c) => supports(caps, c))) max = Math.max(max, fieldIndex(f.encoding));
  return max;
}

/**
 * IA32_VMX_EPT_VPID_CAP bits 31:0 (A.10): execute-only translations (0), page-walk length 4 (6), memory
 * types UC (8) and WB (14) for the EPTP, 2-MByte (16) and 1-GByte (17) pages, INVEPT (20), accessed and
 * dirty flags (21), single-context (25) and all-context (26) INVEPT. No advanced VM-exit information for
 * EPT violations (22): qualification bits 11:9 stay 0.
 */
const EPT_CAPS = bits(0, 6, 8, 14, 16, 17, 20, 21, 25, 26);
/** Bits 63:32: INVVPID (32), individual-address, single-context, all-context, single-context-retaining-globals types (40-43). */
const INVVPID_CAPS = bit(0) | bit(8) | bit(9) | bit(10) | bit(11);

/** Bits 63:32 of IA32_VMX_BASIC: region size 4096, write-back VMCS memory, INS/OUTS information, TRUE MSRs (A.1). */
const BASIC_HI = 0x1000 | (6 << 18) | bit(22) | bit(23);

/**
 * The value of VMX capability MSR `msr` as [bits 31:0, bits 63:32], or null when
 * the MSR does not exist on this model (RDMSR then raises #GP).
 */
export function capabilityMsr(caps: VmxCapabilities, msr: number): [number, number] | null {
  const ctls = (s: AllowedSettings, default1: number, isTrue: boolean): [number, number] =>
    [(isTrue ? s.allowed0 : s.allowed0 | default1) | 0, s.allowed1 | 0];
  switch (msr) {
    case VmxMsr.IA32_VMX_BASIC: return [caps.revision, BASIC_HI];
    case VmxMsr.IA32_VMX_PINBASED_CTLS: return ctls(caps.pin, DEFAULT1.pin, false);
    case VmxMsr.IA32_VMX_PROCBASED_CTLS: return ctls(caps.proc, DEFAULT1.proc, false);
    case VmxMsr.IA32_VMX_EXIT_CTLS: return ctls(caps.exit, DEFAULT1.exit, false);
    case VmxMsr.IA32_VMX_ENTRY_CTLS: return ctls(caps.entry, DEFAULT1.entry, false);
    case VmxMsr.IA32_VMX_TRUE_PINBASED_CTLS: return ctls(caps.pin, 0, true);
    case VmxMsr.IA32_VMX_TRUE_PROCBASED_CTLS: return ctls(caps.proc, 0, true);
    case VmxMsr.IA32_VMX_TRUE_EXIT_CTLS: return ctls(caps.exit, 0, true);
    case VmxMsr.IA32_VMX_TRUE_ENTRY_CTLS: return ctls(caps.entry, 0, true);
    case VmxMsr.IA32_VMX_MISC: return [caps.misc | 0, 0];
    case VmxMsr.IA32_VMX_CR0_FIXED0: return [caps.cr0Fixed0 | 0, 0];
    case VmxMsr.IA32_VMX_CR0_FIXED1: return [caps.cr0Fixed1 | 0, 0];
    case VmxMsr.IA32_VMX_CR4_FIXED0: return [caps.cr4Fixed0 | 0, 0];
    case VmxMsr.IA32_VMX_CR4_FIXED1: return [caps.cr4Fixed1 | 0, 0];
    case VmxMsr.IA32_VMX_VMCS_ENUM: return [highestIndex(caps) << 1, 0];
    // Exists when the primary controls allow "activate secondary controls" (A.3.3).
    case VmxMsr.IA32_VMX_PROCBASED_CTLS2:
      return (caps.proc.allowed1 & bit(31)) !== 0 ? [caps.secondary.allowed0 | 0, caps.secondary.allowed1 | 0] : null;
    // Exists when EPT or VPID is offered (A.10); each half describes what is offered.
    case VmxMsr.IA32_VMX_EPT_VPID_CAP:
      if ((caps.secondary.allowed1 & (bit(1) | bit(5))) === 0) return null;
      return [caps.secondary.allowed1 & bit(1) ? EPT_CAPS | 0 : 0, caps.secondary.allowed1 & bit(5) ? INVVPID_CAPS : 0];
    default:
      // VMFUNC, PROCBASED_CTLS3, EXIT_CTLS2: not offered.
      return null;
  }
}
