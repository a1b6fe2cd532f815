/**
 * Every VMCS field and its encoding (SDM vol. 3D, appendix B "Field Encoding
 * in VMCS"), and the structure of encodings (SDM vol. 3C, 25.11.2, table 25-21
 * "Structure of VMCS Component Encoding").
 *
 * Naming scheme: the field name of appendix B, without "(full)"/"(high)" and
 * without parenthesised abbreviations, in UPPER_SNAKE form: hyphens, spaces
 * and slashes become "_", "I/O" becomes "IO". The SDM's "Guest"/"Host" prefix
 * stays where the SDM has it. Examples: "Guest RIP" → GUEST_RIP, "Exit
 * qualification" → EXIT_QUALIFICATION, "Pin-based VM-execution controls" →
 * PIN_BASED_VM_EXECUTION_CONTROLS, "Virtual-processor identifier (VPID)" →
 * VIRTUAL_PROCESSOR_IDENTIFIER, "EPT pointer (EPTP)" → EPT_POINTER,
 * "CR0 guest/host mask" → CR0_GUEST_HOST_MASK, "Address of I/O bitmap A" →
 * ADDRESS_OF_IO_BITMAP_A, "EOI-exit bitmap 0" → EOI_EXIT_BITMAP_0.
 *
 * A 64-bit field has two encodings: the full one (listed here, bit 0 = 0) and
 * the high one (encoding | 1), which accesses bits 63:32. fieldByEncoding
 * accepts both.
 *
 * `requires` is the capability (controls.ts) whose 1-setting the field exists
 * with, per the notes of appendix B; `orRequires` is the second capability
 * where the SDM says "either ... or". null = the field always exists.
 *
 * The FRED fields (injected-event data, original-event data, guest and host
 * IA32_FRED_*) come from the FRED specification ("VMX interactions"); SDM
 * revisions that have folded FRED in list them in appendix B.
 */
import type { Capability } from './controls.js';

export type FieldWidth = '16' | '64' | '32' | 'natural';
export type FieldType = 'control' | 'read-only' | 'guest' | 'host';

/** Encoding bits 14:13 (width) and 11:10 (type), in their numeric order (25.11.2). */
const WIDTHS: readonly FieldWidth[] = ['16', '64', '32', 'natural'];
const TYPES: readonly FieldType[] = ['control', 'read-only', 'guest', 'host'];

/** Bits that must be 0 in a field encoding: 31:15 and 12 (25.11.2). */
export const VMCS_ENCODING_RESERVED_MASK = 0xffff9000;

/** Bit 0: 0 = full, 1 = high (the upper 32 bits of a 64-bit field). */
export function accessType(enc: number): 0 | 1 {
  return (enc & 1) as 0 | 1;
}
/** Bits 9:1: the index among fields of the same width and type. */
export function index(enc: number): number {
  return (enc >>> 1) & 0x1ff;
}
/** Bits 11:10: 0 control, 1 VM-exit information (read-only), 2 guest state, 3 host state. */
export function fieldType(enc: number): FieldType {
  return TYPES[(enc >>> 10) & 3]!;
}
/** Bits 14:13: 0 16-bit, 1 64-bit, 2 32-bit, 3 natural-width. */
export function fieldWidth(enc: number): FieldWidth {
  return WIDTHS[(enc >>> 13) & 3]!;
}
/** Builds an encoding from its parts (the inverse of the four functions above). */
export function makeEncoding(width: FieldWidth, type: FieldType, idx: number, high: 0 | 1 = 0): number {
  return (WIDTHS.indexOf(width) << 13) | (TYPES.indexOf(type) << 10) | ((idx & 0x1ff) << 1) | high;
}

type Row = readonly [name: string, encoding: number, requires?: Capability | null, orRequires?: Capability];

/** One appendix-B table: every row has the table's width and type. */
function table<const R extends readonly Row[]>(width: FieldWidth, type: FieldType, rows: R) {
  return { width, type, rows };
}

const EPT = 'secondary.ENABLE_EPT';
const VID = 'secondary.VIRTUAL_INTERRUPT_DELIVERY';

const TABLES = [
  // B.1.1 16-bit control fields
  table('16', 'control', [
    ['VIRTUAL_PROCESSOR_IDENTIFIER', 0x0000, 'secondary.ENABLE_VPID'],
    ['POSTED_INTERRUPT_NOTIFICATION_VECTOR', 0x0002, 'pin.PROCESS_POSTED_INTERRUPTS'],
    ['EPTP_INDEX', 0x0004, 'secondary.EPT_VIOLATION_VE'],
    ['HLAT_PREFIX_SIZE', 0x0006, 'tertiary.ENABLE_HLAT'],
    ['LAST_PID_POINTER_INDEX', 0x0008, 'tertiary.IPI_VIRTUALIZATION'],
  ]),
  // B.1.2 16-bit guest-state fields
  table('16', 'guest', [
    ['GUEST_ES_SELECTOR', 0x0800],
    ['GUEST_CS_SELECTOR', 0x0802],
    ['GUEST_SS_SELECTOR', 0x0804],
    ['GUEST_DS_SELECTOR', 0x0806],
    ['GUEST_FS_SELECTOR', 0x0808],
    ['GUEST_GS_SELECTOR', 0x080a],
    ['GUEST_LDTR_SELECTOR', 0x080c],
    ['GUEST_TR_SELECTOR', 0x080e],
    ['GUEST_INTERRUPT_STATUS', 0x0810, VID],
    ['PML_INDEX', 0x0812, 'secondary.ENABLE_PML'],
    ['GUEST_UINV', 0x0814, 'entry.LOAD_UINV', 'exit.CLEAR_UINV'],
  ]),
  // B.1.3 16-bit host-state fields
  table('16', 'host', [
    ['HOST_ES_SELECTOR', 0x0c00],
    ['HOST_CS_SELECTOR', 0x0c02],
    ['HOST_SS_SELECTOR', 0x0c04],
    ['HOST_DS_SELECTOR', 0x0c06],
    ['HOST_FS_SELECTOR', 0x0c08],
    ['HOST_GS_SELECTOR', 0x0c0a],
    ['HOST_TR_SELECTOR', 0x0c0c],
  ]),
  // B.2.1 64-bit control fields
  table('64', 'control', [
    ['ADDRESS_OF_IO_BITMAP_A', 0x2000],
    ['ADDRESS_OF_IO_BITMAP_B', 0x2002],
    ['ADDRESS_OF_MSR_BITMAPS', 0x2004, 'proc.USE_MSR_BITMAPS'],
    ['VM_EXIT_MSR_STORE_ADDRESS', 0x2006],
    ['VM_EXIT_MSR_LOAD_ADDRESS', 0x2008],
    ['VM_ENTRY_MSR_LOAD_ADDRESS', 0x200a],
    ['EXECUTIVE_VMCS_POINTER', 0x200c],
    ['PML_ADDRESS', 0x200e, 'secondary.ENABLE_PML'],
    ['TSC_OFFSET', 0x2010],
    ['VIRTUAL_APIC_ADDRESS', 0x2012, 'proc.USE_TPR_SHADOW'],
    ['APIC_ACCESS_ADDRESS', 0x2014, 'secondary.VIRTUALIZE_APIC_ACCESSES'],
    ['POSTED_INTERRUPT_DESCRIPTOR_ADDRESS', 0x2016, 'pin.PROCESS_POSTED_INTERRUPTS'],
    ['VM_FUNCTION_CONTROLS', 0x2018, 'secondary.ENABLE_VM_FUNCTIONS'],
    ['EPT_POINTER', 0x201a, EPT],
    ['EOI_EXIT_BITMAP_0', 0x201c, VID],
    ['EOI_EXIT_BITMAP_1', 0x201e, VID],
    ['EOI_EXIT_BITMAP_2', 0x2020, VID],
    ['EOI_EXIT_BITMAP_3', 0x2022, VID],
    ['EPTP_LIST_ADDRESS', 0x2024, 'vmfunc.EPTP_SWITCHING'],
    ['VMREAD_BITMAP_ADDRESS', 0x2026, 'secondary.VMCS_SHADOWING'],
    ['VMWRITE_BITMAP_ADDRESS', 0x2028, 'secondary.VMCS_SHADOWING'],
    ['VIRTUALIZATION_EXCEPTION_INFORMATION_ADDRESS', 0x202a, 'secondary.EPT_VIOLATION_VE'],
    ['XSS_EXITING_BITMAP', 0x202c, 'secondary.ENABLE_XSAVES_XRSTORS'],
    ['ENCLS_EXITING_BITMAP', 0x202e, 'secondary.ENABLE_ENCLS_EXITING'],
    ['SUB_PAGE_PERMISSION_TABLE_POINTER', 0x2030, 'secondary.SUB_PAGE_WRITE_PERMISSIONS_FOR_EPT'],
    ['TSC_MULTIPLIER', 0x2032, 'secondary.USE_TSC_SCALING'],
    ['TERTIARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS', 0x2034, 'proc.ACTIVATE_TERTIARY_CONTROLS'],
    ['ENCLV_EXITING_BITMAP', 0x2036, 'secondary.ENABLE_ENCLV_EXITING'],
    ['LOW_PASID_DIRECTORY_ADDRESS', 0x2038, 'secondary.PASID_TRANSLATION'],
    ['HIGH_PASID_DIRECTORY_ADDRESS', 0x203a, 'secondary.PASID_TRANSLATION'],
    ['SHARED_EPT_POINTER', 0x203c, 'feature.SEAM'],
    ['PCONFIG_EXITING_BITMAP', 0x203e, 'secondary.ENABLE_PCONFIG'],
    ['HYPERVISOR_MANAGED_LINEAR_ADDRESS_TRANSLATION_POINTER', 0x2040, 'tertiary.ENABLE_HLAT'],
    ['PID_POINTER_TABLE_ADDRESS', 0x2042, 'tertiary.IPI_VIRTUALIZATION'],
    ['SECONDARY_VM_EXIT_CONTROLS', 0x2044, 'exit.ACTIVATE_SECONDARY_CONTROLS'],
    ['IA32_SPEC_CTRL_MASK', 0x204a, 'tertiary.VIRTUALIZE_IA32_SPEC_CTRL'],
    ['IA32_SPEC_CTRL_SHADOW', 0x204c, 'tertiary.VIRTUALIZE_IA32_SPEC_CTRL'],
    ['INJECTED_EVENT_DATA', 0x2052, 'entry.LOAD_FRED'],
  ]),
  // B.2.2 64-bit read-only data fields
  table('64', 'read-only', [
    ['GUEST_PHYSICAL_ADDRESS', 0x2400, EPT],
    ['ORIGINAL_EVENT_DATA', 0x2404, 'entry.LOAD_FRED'],
  ]),
  // B.2.3 64-bit guest-state fields
  table('64', 'guest', [
    ['VMCS_LINK_POINTER', 0x2800],
    ['GUEST_IA32_DEBUGCTL', 0x2802],
    ['GUEST_IA32_PAT', 0x2804, 'entry.LOAD_IA32_PAT', 'exit.SAVE_IA32_PAT'],
    ['GUEST_IA32_EFER', 0x2806, 'entry.LOAD_IA32_EFER', 'exit.SAVE_IA32_EFER'],
    ['GUEST_IA32_PERF_GLOBAL_CTRL', 0x2808, 'entry.LOAD_IA32_PERF_GLOBAL_CTRL', 'exit.SAVE_IA32_PERF_GLOBAL_CTRL'],
    ['GUEST_PDPTE0', 0x280a, EPT],
    ['GUEST_PDPTE1', 0x280c, EPT],
    ['GUEST_PDPTE2', 0x280e, EPT],
    ['GUEST_PDPTE3', 0x2810, EPT],
    ['GUEST_IA32_BNDCFGS', 0x2812, 'entry.LOAD_IA32_BNDCFGS', 'exit.CLEAR_IA32_BNDCFGS'],
    ['GUEST_IA32_RTIT_CTL', 0x2814, 'entry.LOAD_IA32_RTIT_CTL', 'exit.CLEAR_IA32_RTIT_CTL'],
    ['GUEST_IA32_LBR_CTL', 0x2816, 'entry.LOAD_GUEST_IA32_LBR_CTL', 'exit.CLEAR_IA32_LBR_CTL'],
    ['GUEST_IA32_PKRS', 0x2818, 'entry.LOAD_PKRS'],
    ['GUEST_IA32_FRED_CONFIG', 0x281a, 'entry.LOAD_FRED', 'exit2.SAVE_FRED'],
    ['GUEST_IA32_FRED_RSP1', 0x281c, 'entry.LOAD_FRED', 'exit2.SAVE_FRED'],
    ['GUEST_IA32_FRED_RSP2', 0x281e, 'entry.LOAD_FRED', 'exit2.SAVE_FRED'],
    ['GUEST_IA32_FRED_RSP3', 0x2820, 'entry.LOAD_FRED', 'exit2.SAVE_FRED'],
    ['GUEST_IA32_FRED_STKLVLS', 0x2822, 'entry.LOAD_FRED', 'exit2.SAVE_FRED'],
    ['GUEST_IA32_FRED_SSP1', 0x2824, 'entry.LOAD_FRED', 'exit2.SAVE_FRED'],
    ['GUEST_IA32_FRED_SSP2', 0x2826, 'entry.LOAD_FRED', 'exit2.SAVE_FRED'],
    ['GUEST_IA32_FRED_SSP3', 0x2828, 'entry.LOAD_FRED', 'exit2.SAVE_FRED'],
  ]),
  // B.2.4 64-bit host-state fields
  table('64', 'host', [
    ['HOST_IA32_PAT', 0x2c00, 'exit.LOAD_IA32_PAT'],
    ['HOST_IA32_EFER', 0x2c02, 'exit.LOAD_IA32_EFER'],
    ['HOST_IA32_PERF_GLOBAL_CTRL', 0x2c04, 'exit.LOAD_IA32_PERF_GLOBAL_CTRL'],
    ['HOST_IA32_PKRS', 0x2c06, 'exit.LOAD_PKRS'],
    ['HOST_IA32_FRED_CONFIG', 0x2c08, 'exit2.LOAD_FRED'],
    ['HOST_IA32_FRED_RSP1', 0x2c0a, 'exit2.LOAD_FRED'],
    ['HOST_IA32_FRED_RSP2', 0x2c0c, 'exit2.LOAD_FRED'],
    ['HOST_IA32_FRED_RSP3', 0x2c0e, 'exit2.LOAD_FRED'],
    ['HOST_IA32_FRED_STKLVLS', 0x2c10, 'exit2.LOAD_FRED'],
    ['HOST_IA32_FRED_SSP1', 0x2c12, 'exit2.LOAD_FRED'],
    ['HOST_IA32_FRED_SSP2', 0x2c14, 'exit2.LOAD_FRED'],
    ['HOST_IA32_FRED_SSP3', 0x2c16, 'exit2.LOAD_FRED'],
  ]),
  // B.3.1 32-bit control fields
  table('32', 'control', [
    ['PIN_BASED_VM_EXECUTION_CONTROLS', 0x4000],
    ['PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS', 0x4002],
    ['EXCEPTION_BITMAP', 0x4004],
    ['PAGE_FAULT_ERROR_CODE_MASK', 0x4006],
    ['PAGE_FAULT_ERROR_CODE_MATCH', 0x4008],
    ['CR3_TARGET_COUNT', 0x400a],
    ['PRIMARY_VM_EXIT_CONTROLS', 0x400c],
    ['VM_EXIT_MSR_STORE_COUNT', 0x400e],
    ['VM_EXIT_MSR_LOAD_COUNT', 0x4010],
    ['VM_ENTRY_CONTROLS', 0x4012],
    ['VM_ENTRY_MSR_LOAD_COUNT', 0x4014],
    ['VM_ENTRY_INTERRUPTION_INFORMATION_FIELD', 0x4016],
    ['VM_ENTRY_EXCEPTION_ERROR_CODE', 0x4018],
    ['VM_ENTRY_INSTRUCTION_LENGTH', 0x401a],
    ['TPR_THRESHOLD', 0x401c, 'proc.USE_TPR_SHADOW'],
    ['SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS', 0x401e, 'proc.ACTIVATE_SECONDARY_CONTROLS'],
    ['PLE_GAP', 0x4020, 'secondary.PAUSE_LOOP_EXITING'],
    ['PLE_WINDOW', 0x4022, 'secondary.PAUSE_LOOP_EXITING'],
    ['INSTRUCTION_TIMEOUT_CONTROL', 0x4024, 'secondary.INSTRUCTION_TIMEOUT'],
  ]),
  // B.3.2 32-bit read-only data fields
  table('32', 'read-only', [
    ['VM_INSTRUCTION_ERROR', 0x4400],
    ['EXIT_REASON', 0x4402],
    ['VM_EXIT_INTERRUPTION_INFORMATION', 0x4404],
    ['VM_EXIT_INTERRUPTION_ERROR_CODE', 0x4406],
    ['IDT_VECTORING_INFORMATION_FIELD', 0x4408],
    ['IDT_VECTORING_ERROR_CODE', 0x440a],
    ['VM_EXIT_INSTRUCTION_LENGTH', 0x440c],
    ['VM_EXIT_INSTRUCTION_INFORMATION', 0x440e],
  ]),
  // B.3.3 32-bit guest-state fields
  table('32', 'guest', [
    ['GUEST_ES_LIMIT', 0x4800],
    ['GUEST_CS_LIMIT', 0x4802],
    ['GUEST_SS_LIMIT', 0x4804],
    ['GUEST_DS_LIMIT', 0x4806],
    ['GUEST_FS_LIMIT', 0x4808],
    ['GUEST_GS_LIMIT', 0x480a],
    ['GUEST_LDTR_LIMIT', 0x480c],
    ['GUEST_TR_LIMIT', 0x480e],
    ['GUEST_GDTR_LIMIT', 0x4810],
    ['GUEST_IDTR_LIMIT', 0x4812],
    ['GUEST_ES_ACCESS_RIGHTS', 0x4814],
    ['GUEST_CS_ACCESS_RIGHTS', 0x4816],
    ['GUEST_SS_ACCESS_RIGHTS', 0x4818],
    ['GUEST_DS_ACCESS_RIGHTS', 0x481a],
    ['GUEST_FS_ACCESS_RIGHTS', 0x481c],
    ['GUEST_GS_ACCESS_RIGHTS', 0x481e],
    ['GUEST_LDTR_ACCESS_RIGHTS', 0x4820],
    ['GUEST_TR_ACCESS_RIGHTS', 0x4822],
    ['GUEST_INTERRUPTIBILITY_STATE', 0x4824],
    ['GUEST_ACTIVITY_STATE', 0x4826],
    ['GUEST_SMBASE', 0x4828],
    ['GUEST_IA32_SYSENTER_CS', 0x482a],
    // Index 22 (482CH) is not used.
    ['VMX_PREEMPTION_TIMER_VALUE', 0x482e, 'pin.ACTIVATE_VMX_PREEMPTION_TIMER'],
  ]),
  // B.3.4 32-bit host-state field
  table('32', 'host', [
    ['HOST_IA32_SYSENTER_CS', 0x4c00],
  ]),
  // B.4.1 natural-width control fields
  table('natural', 'control', [
    ['CR0_GUEST_HOST_MASK', 0x6000],
    ['CR4_GUEST_HOST_MASK', 0x6002],
    ['CR0_READ_SHADOW', 0x6004],
    ['CR4_READ_SHADOW', 0x6006],
    ['CR3_TARGET_VALUE_0', 0x6008],
    ['CR3_TARGET_VALUE_1', 0x600a],
    ['CR3_TARGET_VALUE_2', 0x600c],
    ['CR3_TARGET_VALUE_3', 0x600e],
  ]),
  // B.4.2 natural-width read-only data fields
  table('natural', 'read-only', [
    ['EXIT_QUALIFICATION', 0x6400],
    ['IO_RCX', 0x6402],
    ['IO_RSI', 0x6404],
    ['IO_RDI', 0x6406],
    ['IO_RIP', 0x6408],
    ['GUEST_LINEAR_ADDRESS', 0x640a],
  ]),
  // B.4.3 natural-width guest-state fields
  table('natural', 'guest', [
    ['GUEST_CR0', 0x6800],
    ['GUEST_CR3', 0x6802],
    ['GUEST_CR4', 0x6804],
    ['GUEST_ES_BASE', 0x6806],
    ['GUEST_CS_BASE', 0x6808],
    ['GUEST_SS_BASE', 0x680a],
    ['GUEST_DS_BASE', 0x680c],
    ['GUEST_FS_BASE', 0x680e],
    ['GUEST_GS_BASE', 0x6810],
    ['GUEST_LDTR_BASE', 0x6812],
    ['GUEST_TR_BASE', 0x6814],
    ['GUEST_GDTR_BASE', 0x6816],
    ['GUEST_IDTR_BASE', 0x6818],
    ['GUEST_DR7', 0x681a],
    ['GUEST_RSP', 0x681c],
    ['GUEST_RIP', 0x681e],
    ['GUEST_RFLAGS', 0x6820],
    ['GUEST_PENDING_DEBUG_EXCEPTIONS', 0x6822],
    ['GUEST_IA32_SYSENTER_ESP', 0x6824],
    ['GUEST_IA32_SYSENTER_EIP', 0x6826],
    ['GUEST_IA32_S_CET', 0x6828, 'entry.LOAD_CET_STATE'],
    ['GUEST_SSP', 0x682a, 'entry.LOAD_CET_STATE'],
    ['GUEST_IA32_INTERRUPT_SSP_TABLE_ADDR', 0x682c, 'entry.LOAD_CET_STATE'],
  ]),
  // B.4.4 natural-width host-state fields
  table('natural', 'host', [
    ['HOST_CR0', 0x6c00],
    ['HOST_CR3', 0x6c02],
    ['HOST_CR4', 0x6c04],
    ['HOST_FS_BASE', 0x6c06],
    ['HOST_GS_BASE', 0x6c08],
    ['HOST_TR_BASE', 0x6c0a],
    ['HOST_GDTR_BASE', 0x6c0c],
    ['HOST_IDTR_BASE', 0x6c0e],
    ['HOST_IA32_SYSENTER_ESP', 0x6c10],
    ['HOST_IA32_SYSENTER_EIP', 0x6c12],
    ['HOST_RSP', 0x6c14],
    ['HOST_RIP', 0x6c16],
    ['HOST_IA32_S_CET', 0x6c18, 'exit.LOAD_CET_STATE'],
    ['HOST_SSP', 0x6c1a, 'exit.LOAD_CET_STATE'],
    ['HOST_IA32_INTERRUPT_SSP_TABLE_ADDR', 0x6c1c, 'exit.LOAD_CET_STATE'],
  ]),
] as const;

export type FieldName = (typeof TABLES)[number]['rows'][number][0];

export interface VmcsField {
  readonly name: FieldName;
  /** The full encoding (bit 0 = 0). */
  readonly encoding: number;
  /** As declared by the appendix-B table the field is in (tests check it against the encoding). */
  readonly width: FieldWidth;
  readonly type: FieldType;
  readonly requires: Capability | null;
  readonly orRequires: Capability | null;
}

export const VMCS_FIELDS: readonly VmcsField[] = Object.freeze(
  TABLES.flatMap((t) =>
    (t.rows as readonly Row[]).map((r) =>
      Object.freeze({
        name: r[0] as FieldName,
        encoding: r[1],
        width: t.width,
        type: t.type,
        requires: r[2] ?? null,
        orRequires: r[3] ?? null,
      }),
    ),
  ),
);

/** Field name → full encoding, so code can write `Field.GUEST_RIP`. */
export const Field = Object.freeze(
  Object.fromEntries(VMCS_FIELDS.map((f) => [f.name, f.encoding])),
) as { readonly [N in FieldName]: number };

export interface FieldLookup {
  readonly field: VmcsField;
  /** The encoding addressed bits 63:32 of a 64-bit field (access type 1). */
  readonly high: boolean;
}

// Built once: a lookup per encoding (full and, for 64-bit fields, high), so
// VMREAD/VMWRITE find their field without allocating.
const BY_ENCODING = new Map<number, FieldLookup>();
const BY_NAME = new Map<string, VmcsField>();
for (const f of VMCS_FIELDS) {
  BY_ENCODING.set(f.encoding, Object.freeze({ field: f, high: false }));
  if (f.width === '64') BY_ENCODING.set(f.encoding | 1, Object.freeze({ field: f, high: true }));
  BY_NAME.set(f.name, f);
}

/**
 * The field an encoding names, and whether it is the high access of a 64-bit
 * field; undefined for an encoding no field has (VMREAD/VMWRITE then fail with
 * error 12, "unsupported VMCS component").
 */
export function fieldByEncoding(enc: number): FieldLookup | undefined {
  return BY_ENCODING.get(enc);
}

export function fieldByName(name: string): VmcsField | undefined {
  return BY_NAME.get(name);
}

/**
 * Whether a field exists on a processor, given which capabilities (1-settings
 * of controls) it supports (appendix B notes).
 */
export function fieldExists(f: VmcsField, supports: (cap: Capability) => boolean): boolean {
  if (f.requires === null) return true;
  return supports(f.requires) || (f.orRequires !== null && supports(f.orRequires));
}
