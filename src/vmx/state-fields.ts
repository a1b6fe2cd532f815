/**
 * The VMCS fields that VM entries and exits move at every transition: the
 * guest-state and host-state fields (SDM vol. 3C, 25.4, 25.5), by segment
 * register, and the exit-information fields (25.9), with where their values
 * lie in Vmcs.values (valueAt), so that the transitions index the values
 * directly rather than look encodings up.
 */
import { Field } from '../../vmcs/fields.js';
import { CS, DS, ES, FS, GS, LDTR, SS, TR } from '../cpu/regs.js';
import { valueAt } from './vmcs.js';

/** The segment registers in the order of the VMCS's per-segment fields below. */
export const SEGMENTS = [ES, CS, SS, DS, FS, GS, LDTR, TR];
/** Guest selector, base, limit and access-rights fields per segment, in the order of SEGMENTS (ES..TR). */
export const SEG_SELECTOR = [Field.GUEST_ES_SELECTOR, Field.GUEST_CS_SELECTOR, Field.GUEST_SS_SELECTOR, Field.GUEST_DS_SELECTOR,
  Field.GUEST_FS_SELECTOR, Field.GUEST_GS_SELECTOR, Field.GUEST_LDTR_SELECTOR, Field.GUEST_TR_SELECTOR];
export const SEG_BASE = [Field.GUEST_ES_BASE, Field.GUEST_CS_BASE, Field.GUEST_SS_BASE, Field.GUEST_DS_BASE,
  Field.GUEST_FS_BASE, Field.GUEST_GS_BASE, Field.GUEST_LDTR_BASE, Field.GUEST_TR_BASE];
export const SEG_LIMIT = [Field.GUEST_ES_LIMIT, Field.GUEST_CS_LIMIT, Field.GUEST_SS_LIMIT, Field.GUEST_DS_LIMIT,
  Field.GUEST_FS_LIMIT, Field.GUEST_GS_LIMIT, Field.GUEST_LDTR_LIMIT, Field.GUEST_TR_LIMIT];
export const SEG_ACCESS = [Field.GUEST_ES_ACCESS_RIGHTS, Field.GUEST_CS_ACCESS_RIGHTS, Field.GUEST_SS_ACCESS_RIGHTS,
  Field.GUEST_DS_ACCESS_RIGHTS, Field.GUEST_FS_ACCESS_RIGHTS, Field.GUEST_GS_ACCESS_RIGHTS,
  Field.GUEST_LDTR_ACCESS_RIGHTS, Field.GUEST_TR_ACCESS_RIGHTS];
/** Host selector fields in the order of SEGMENTS (no LDTR: it is loaded null). */
export const HOST_SELECTOR = [Field.HOST_ES_SELECTOR, Field.HOST_CS_SELECTOR, Field.HOST_SS_SELECTOR, Field.HOST_DS_SELECTOR,
  Field.HOST_FS_SELECTOR, Field.HOST_GS_SELECTOR];

/** The guest PDPTE fields, in order: loaded and saved with EPT and PAE paging (25.4.2). */
export const PDPTE_FIELDS = [Field.GUEST_PDPTE0, Field.GUEST_PDPTE1, Field.GUEST_PDPTE2, Field.GUEST_PDPTE3];

/** Value indices of the fields above, in the same order. */
export const SELECTOR_AT = Int32Array.from(SEG_SELECTOR, valueAt);
export const BASE_AT = Int32Array.from(SEG_BASE, valueAt);
export const LIMIT_AT = Int32Array.from(SEG_LIMIT, valueAt);
export const ACCESS_AT = Int32Array.from(SEG_ACCESS, valueAt);
export const HOST_SELECTOR_AT = Int32Array.from(HOST_SELECTOR, valueAt);

/** Value indices of the other guest-state fields every entry loads and every exit saves. */
export const GUEST_AT = {
  CR0: valueAt(Field.GUEST_CR0), CR3: valueAt(Field.GUEST_CR3), CR4: valueAt(Field.GUEST_CR4),
  SYSENTER_CS: valueAt(Field.GUEST_IA32_SYSENTER_CS), SYSENTER_ESP: valueAt(Field.GUEST_IA32_SYSENTER_ESP),
  SYSENTER_EIP: valueAt(Field.GUEST_IA32_SYSENTER_EIP),
  GDTR_BASE: valueAt(Field.GUEST_GDTR_BASE), GDTR_LIMIT: valueAt(Field.GUEST_GDTR_LIMIT),
  IDTR_BASE: valueAt(Field.GUEST_IDTR_BASE), IDTR_LIMIT: valueAt(Field.GUEST_IDTR_LIMIT),
  RIP: valueAt(Field.GUEST_RIP), RSP: valueAt(Field.GUEST_RSP), RFLAGS: valueAt(Field.GUEST_RFLAGS),
  ACTIVITY: valueAt(Field.GUEST_ACTIVITY_STATE), INTERRUPTIBILITY: valueAt(Field.GUEST_INTERRUPTIBILITY_STATE),
  PENDING_DEBUG: valueAt(Field.GUEST_PENDING_DEBUG_EXCEPTIONS), SS_ACCESS: valueAt(Field.GUEST_SS_ACCESS_RIGHTS),
  CS_ACCESS: valueAt(Field.GUEST_CS_ACCESS_RIGHTS),
} as const;

/** Value indices of the host-state fields every exit loads. */
export const HOST_AT = {
  CR0: valueAt(Field.HOST_CR0), CR3: valueAt(Field.HOST_CR3), CR4: valueAt(Field.HOST_CR4),
  SYSENTER_CS: valueAt(Field.HOST_IA32_SYSENTER_CS), SYSENTER_ESP: valueAt(Field.HOST_IA32_SYSENTER_ESP),
  SYSENTER_EIP: valueAt(Field.HOST_IA32_SYSENTER_EIP),
  FS_BASE: valueAt(Field.HOST_FS_BASE), GS_BASE: valueAt(Field.HOST_GS_BASE),
  TR_SELECTOR: valueAt(Field.HOST_TR_SELECTOR), TR_BASE: valueAt(Field.HOST_TR_BASE),
  GDTR_BASE: valueAt(Field.HOST_GDTR_BASE), IDTR_BASE: valueAt(Field.HOST_IDTR_BASE),
  RIP: valueAt(Field.HOST_RIP), RSP: valueAt(Field.HOST_RSP),
} as const;

/** Value indices of the control fields (25.6-25.8) every entry or exit reads. */
export const CONTROL_AT = {
  PIN: valueAt(Field.PIN_BASED_VM_EXECUTION_CONTROLS), PROC: valueAt(Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS),
  PROC2: valueAt(Field.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS), EXIT: valueAt(Field.PRIMARY_VM_EXIT_CONTROLS),
  ENTRY: valueAt(Field.VM_ENTRY_CONTROLS), ENTRY_INTERRUPTION_INFO: valueAt(Field.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD),
  ENTRY_MSR_LOAD_COUNT: valueAt(Field.VM_ENTRY_MSR_LOAD_COUNT), EXIT_MSR_STORE_COUNT: valueAt(Field.VM_EXIT_MSR_STORE_COUNT),
  EXIT_MSR_LOAD_COUNT: valueAt(Field.VM_EXIT_MSR_LOAD_COUNT), VPID: valueAt(Field.VIRTUAL_PROCESSOR_IDENTIFIER),
  VMCS_LINK_POINTER: valueAt(Field.VMCS_LINK_POINTER),
} as const;

/** Value indices of the exit-information fields every exit writes (28.2). */
export const EXIT_AT = {
  REASON: valueAt(Field.EXIT_REASON), QUALIFICATION: valueAt(Field.EXIT_QUALIFICATION),
  LINEAR: valueAt(Field.GUEST_LINEAR_ADDRESS), PHYSICAL: valueAt(Field.GUEST_PHYSICAL_ADDRESS),
  INTERRUPTION_INFO: valueAt(Field.VM_EXIT_INTERRUPTION_INFORMATION), INTERRUPTION_ERROR: valueAt(Field.VM_EXIT_INTERRUPTION_ERROR_CODE),
  IDT_VECTORING_INFO: valueAt(Field.IDT_VECTORING_INFORMATION_FIELD), IDT_VECTORING_ERROR: valueAt(Field.IDT_VECTORING_ERROR_CODE),
  INSTRUCTION_LENGTH: valueAt(Field.VM_EXIT_INSTRUCTION_LENGTH), INSTRUCTION_INFO: valueAt(Field.VM_EXIT_INSTRUCTION_INFORMATION),
} as const;
