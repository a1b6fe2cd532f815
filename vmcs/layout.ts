/**
 * hvsim's in-memory VMCS region layout (see layout.md). The SDM fixes only the
 * first 8 bytes (SDM vol. 3C, 25.2 "Format of the VMCS Region"); the rest is
 * implementation-specific and software must use VMREAD/VMWRITE only.
 *
 *   0-3   VMCS revision identifier (bits 30:0), shadow-VMCS indicator (bit 31)
 *   4-7   VMX-abort indicator
 *   8     launch state (hvsim: 0 = clear, 1 = launched)
 *   9-15  reserved (0)
 *   16-   data area: one 8-byte slot per field of VMCS_FIELDS, in ascending
 *         encoding order; a field's value sits in the low bytes of its slot
 *         (little-endian), the high access of a 64-bit field at slot + 4.
 */
import { VMCS_FIELDS } from './fields.js';

export const VMCS_REVISION_OFFSET = 0;
/** Bit 31 of the first dword: 1 = shadow VMCS (25.2, 25.10). */
export const VMCS_SHADOW_INDICATOR = 0x80000000;
export const VMX_ABORT_INDICATOR_OFFSET = 4;
export const VMCS_LAUNCH_STATE_OFFSET = 8;
export const VMCS_DATA_OFFSET = 16;
export const VMCS_SLOT_SIZE = 8;

/** Launch-state values stored at VMCS_LAUNCH_STATE_OFFSET (25.1: "clear" or "launched"). */
export const LaunchState = { CLEAR: 0, LAUNCHED: 1 } as const;

/** VMX-abort indicator values written on a VMX abort (SDM vol. 3C, 28.7). */
export const VmxAbort = {
  SAVING_GUEST_MSRS: 1,
  HOST_PDPTE_CHECK: 2,
  VMCS_CORRUPTED: 3,
  LOADING_HOST_MSRS: 4,
  MACHINE_CHECK_DURING_VM_EXIT: 5,
  IA32E_HOST_ADDRESS_SPACE_SIZE_0: 6, // in IA-32e mode before the exit, "host address-space size" was 0
} as const;

/** The size hvsim reports in IA32_VMX_BASIC[44:32]: one 4-KByte page, the architectural maximum (A.1). */
export const VMCS_REGION_SIZE = 4096;

const SORTED = [...VMCS_FIELDS].sort((a, b) => a.encoding - b.encoding);

/** One past the last byte the data area uses. */
export const VMCS_DATA_END = VMCS_DATA_OFFSET + SORTED.length * VMCS_SLOT_SIZE;

// Indexed by the 15 meaningful encoding bits (bits 31:15 must be 0): -1 = no field.
const OFFSETS = new Int16Array(0x8000).fill(-1);
SORTED.forEach((f, i) => {
  const slot = VMCS_DATA_OFFSET + i * VMCS_SLOT_SIZE;
  OFFSETS[f.encoding] = slot;
  if (f.width === '64') OFFSETS[f.encoding | 1] = slot + 4;
});

/**
 * The byte offset in the VMCS region of the field an encoding names (high
 * accesses of 64-bit fields: the slot's upper dword), or -1 if no field has
 * that encoding.
 */
export function fieldOffset(enc: number): number {
  if (enc !== (enc & 0x7fff)) return -1; // reserved bits 31:15 set, negative or not an integer
  return OFFSETS[enc]!;
}
