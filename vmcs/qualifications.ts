/**
 * Layouts of the exit qualification (SDM vol. 3C, 28.2.1) and of the VM-exit
 * instruction-information field (28.2.5), per basic exit reason, as lists of
 * bit fields; and one decoder for any such layout (also used for the
 * capability-MSR layouts in controls.ts).
 *
 * A layout lists only the defined fields; bits it does not name are reserved,
 * cleared or undefined. Fields are at most 32 bits wide, so a decoded value is
 * an exact number; a 64-bit quantity (a linear address, a displacement) is two
 * fields, NAME (bits 31:0) and NAME_HIGH (bits 63:32), as the VMCS itself
 * splits 64-bit fields into full and high halves.
 */
import { ExitReason } from './exit-reasons.js';

export type BitField = {
  name: string;
  lsb: number;
  width: number;
  /** Names of the field's defined values, for display. */
  values?: Record<number, string>;
};

/**
 * Extracts each field of `layout` from the 64-bit value (lo = bits 31:0,
 * hi = bits 63:32).
 */
export function decodeBits(layout: readonly BitField[], lo: number, hi: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of layout) out[f.name] = extract(f.lsb, f.width, lo >>> 0, hi >>> 0);
  return out;
}

function extract(lsb: number, width: number, lo: number, hi: number): number {
  const mask = width === 32 ? 0xffffffff : (1 << width) - 1;
  if (lsb >= 32) return ((hi >>> (lsb - 32)) & mask) >>> 0;
  if (lsb + width <= 32) return ((lo >>> lsb) & mask) >>> 0;
  // The field straddles bit 32: low part from lo, the rest from hi.
  const lowBits = 32 - lsb;
  const highPart = hi & ((1 << (width - lowBits)) - 1);
  return (lo >>> lsb) + highPart * 2 ** lowBits;
}

/**
 * The inverse of decodeBits: builds [lo, hi] from field values (missing
 * fields are 0; each value is truncated to its field's width).
 */
export function encodeBits(layout: readonly BitField[], values: Record<string, number>): [number, number] {
  let lo = 0;
  let hi = 0;
  for (const f of layout) {
    const v = values[f.name];
    if (v === undefined) continue;
    const fieldMax = 2 ** f.width;
    const value = ((v % fieldMax) + fieldMax) % fieldMax;
    // Place the value bit-group by bit-group on each side of bit 32.
    if (f.lsb < 32) {
      const lowBits = Math.min(f.width, 32 - f.lsb);
      lo = (lo | ((value % 2 ** lowBits) * 2 ** f.lsb)) >>> 0;
      if (f.width > lowBits) hi = (hi | Math.floor(value / 2 ** lowBits)) >>> 0;
    } else {
      hi = (hi | (value * 2 ** (f.lsb - 32))) >>> 0;
    }
  }
  return [lo, hi];
}

// ---------------------------------------------------------------------------
// Value names shared by several layouts.

const GPR: Record<number, string> = {
  0: 'RAX', 1: 'RCX', 2: 'RDX', 3: 'RBX', 4: 'RSP', 5: 'RBP', 6: 'RSI', 7: 'RDI',
  8: 'R8', 9: 'R9', 10: 'R10', 11: 'R11', 12: 'R12', 13: 'R13', 14: 'R14', 15: 'R15',
};
const SEGMENT: Record<number, string> = { 0: 'ES', 1: 'CS', 2: 'SS', 3: 'DS', 4: 'FS', 5: 'GS' };
const ADDRESS_SIZE: Record<number, string> = { 0: '16-bit', 1: '32-bit', 2: '64-bit' };
const SCALING: Record<number, string> = { 0: 'no scaling', 1: 'scale by 2', 2: 'scale by 4', 3: 'scale by 8' };

const NMI_UNBLOCKING: BitField = { name: 'NMI_UNBLOCKING_DUE_TO_IRET', lsb: 12, width: 1 };
const ASYNCHRONOUS: BitField = { name: 'ASYNCHRONOUS_TO_INSTRUCTION_EXECUTION', lsb: 16, width: 1 };

/** A 64-bit quantity that is the whole exit qualification. */
function whole64(name: string): readonly BitField[] {
  return [
    { name, lsb: 0, width: 32 },
    { name: `${name}_HIGH`, lsb: 32, width: 32 },
  ];
}

// ---------------------------------------------------------------------------
// Exit qualifications (SDM vol. 3C, 28.2.1).

/** Debug exceptions: exception-or-NMI exits for #DB (table "Exit Qualification for Debug Exceptions"). */
export const DEBUG_EXCEPTION_QUALIFICATION: readonly BitField[] = [
  { name: 'B0', lsb: 0, width: 1 },
  { name: 'B1', lsb: 1, width: 1 },
  { name: 'B2', lsb: 2, width: 1 },
  { name: 'B3', lsb: 3, width: 1 },
  { name: 'BLD', lsb: 11, width: 1 }, // bus-lock detection
  { name: 'BD', lsb: 13, width: 1 },
  { name: 'BS', lsb: 14, width: 1 },
  { name: 'RTM', lsb: 16, width: 1 },
];

/** Page faults: exception-or-NMI exits for #PF save the faulting linear address. */
export const PAGE_FAULT_QUALIFICATION: readonly BitField[] = whole64('LINEAR_ADDRESS');

/**
 * Instructions with a memory operand save its displacement, sign-extended to
 * 64 bits (undefined for register operands).
 */
const DISPLACEMENT = whole64('DISPLACEMENT');

const TASK_SWITCH: readonly BitField[] = [
  { name: 'TSS_SELECTOR', lsb: 0, width: 16 },
  { name: 'SOURCE', lsb: 30, width: 2, values: { 0: 'CALL', 1: 'IRET', 2: 'JMP', 3: 'task gate in IDT' } },
];

const CONTROL_REGISTER_ACCESS: readonly BitField[] = [
  { name: 'CONTROL_REGISTER', lsb: 0, width: 4 }, // 0 for CLTS and LMSW
  { name: 'ACCESS_TYPE', lsb: 4, width: 2, values: { 0: 'MOV to CR', 1: 'MOV from CR', 2: 'CLTS', 3: 'LMSW' } },
  { name: 'LMSW_OPERAND_TYPE', lsb: 6, width: 1, values: { 0: 'register', 1: 'memory' } },
  { name: 'GENERAL_PURPOSE_REGISTER', lsb: 8, width: 4, values: GPR }, // MOV CR only
  { name: 'LMSW_SOURCE_DATA', lsb: 16, width: 16 },
];

const MOV_DR: readonly BitField[] = [
  { name: 'DEBUG_REGISTER', lsb: 0, width: 3 },
  { name: 'DIRECTION', lsb: 4, width: 1, values: { 0: 'MOV to DR', 1: 'MOV from DR' } },
  { name: 'GENERAL_PURPOSE_REGISTER', lsb: 8, width: 4, values: GPR },
];

/**
 * I/O instructions; also I/O SMIs, whose qualification describes the I/O
 * instruction that retired just before the SMI in the same format (SDM vol. 3C,
 * SMM chapter, "SMM VM Exits").
 */
const IO_INSTRUCTION: readonly BitField[] = [
  { name: 'SIZE_OF_ACCESS', lsb: 0, width: 3, values: { 0: '1-byte', 1: '2-byte', 3: '4-byte' } },
  { name: 'DIRECTION', lsb: 3, width: 1, values: { 0: 'OUT', 1: 'IN' } },
  { name: 'STRING_INSTRUCTION', lsb: 4, width: 1 },
  { name: 'REP_PREFIXED', lsb: 5, width: 1 },
  { name: 'OPERAND_ENCODING', lsb: 6, width: 1, values: { 0: 'DX', 1: 'immediate' } },
  { name: 'PORT_NUMBER', lsb: 16, width: 16 },
];

const APIC_ACCESS: readonly BitField[] = [
  { name: 'PAGE_OFFSET', lsb: 0, width: 12 }, // linear accesses only
  {
    name: 'ACCESS_TYPE', lsb: 12, width: 4, values: {
      0: 'linear access for a data read during instruction execution',
      1: 'linear access for a data write during instruction execution',
      2: 'linear access for an instruction fetch',
      3: 'linear access (read or write) during event delivery',
      10: 'guest-physical access during event delivery',
      15: 'guest-physical access for an instruction fetch or during instruction execution',
    },
  },
  ASYNCHRONOUS,
];

/** The bits of the EPT-violation qualification the model sets (table 28-7), for code that builds one. */
export const EptViolation = {
  DATA_READ: 1 << 0,
  DATA_WRITE: 1 << 1,
  INSTRUCTION_FETCH: 1 << 2,
  /** Bits 5:3: the R, W, X bits (2:0) of the EPT entries used, ANDed. */
  PERMISSIONS_SHIFT: 3,
  GUEST_LINEAR_ADDRESS_VALID: 1 << 7,
  TRANSLATED_LINEAR_ADDRESS: 1 << 8,
} as const;

/** Bit 12 of several qualifications and of the VM-exit interruption information (28.2.3). */
export const NMI_UNBLOCKING_DUE_TO_IRET = 1 << 12;

const EPT_VIOLATION: readonly BitField[] = [
  { name: 'DATA_READ', lsb: 0, width: 1 },
  { name: 'DATA_WRITE', lsb: 1, width: 1 },
  { name: 'INSTRUCTION_FETCH', lsb: 2, width: 1 },
  // Bits 5:3 are the AND of bits 2:0 of the EPT entries used (the permissions the access had).
  { name: 'READABLE', lsb: 3, width: 1 },
  { name: 'WRITABLE', lsb: 4, width: 1 },
  { name: 'EXECUTABLE', lsb: 5, width: 1 }, // supervisor-mode executable if mode-based execute control is 1
  { name: 'USER_MODE_EXECUTABLE', lsb: 6, width: 1 },
  { name: 'GUEST_LINEAR_ADDRESS_VALID', lsb: 7, width: 1 },
  // When bit 7 is 1: 1 = access to the translation of a linear address, 0 = access to a paging-structure entry.
  { name: 'TRANSLATED_LINEAR_ADDRESS', lsb: 8, width: 1 },
  // Bits 11:9 need "advanced VM-exit information for EPT violations" (IA32_VMX_EPT_VPID_CAP[22]) and bits 7, 8 = 1.
  { name: 'USER_MODE_LINEAR_ADDRESS', lsb: 9, width: 1 },
  { name: 'READ_WRITE_PAGE', lsb: 10, width: 1 },
  { name: 'EXECUTE_DISABLE_PAGE', lsb: 11, width: 1 },
  NMI_UNBLOCKING,
  { name: 'SHADOW_STACK_ACCESS', lsb: 13, width: 1 },
  { name: 'SUPERVISOR_SHADOW_STACK', lsb: 14, width: 1 }, // EPT entry bit 60 was 1 (supervisor shadow-stack control)
  { name: 'GUEST_PAGING_VERIFICATION', lsb: 15, width: 1 },
  ASYNCHRONOUS,
];

/**
 * VM-entry failure due to invalid guest state: the qualification is a code
 * (SDM vol. 3C, 27.8). 1 is not used.
 */
export const VmEntryFailureQualification = {
  DEFAULT: 0,
  PDPTE_LOAD: 2,
  NMI_INJECTION: 3, // NMI injected while blocking by STI
  INVALID_VMCS_LINK_POINTER: 4,
} as const;

const VM_ENTRY_FAILURE_INVALID_GUEST_STATE: readonly BitField[] = [
  {
    name: 'CODE', lsb: 0, width: 32, values: {
      0: 'no further information',
      2: 'failure loading the PDPTEs',
      3: 'NMI injection while the guest blocks events by STI',
      4: 'invalid VMCS link pointer',
    },
  },
];

export const QUALIFICATION_LAYOUTS: Partial<Record<number, readonly BitField[]>> = {
  [ExitReason.SIPI]: [{ name: 'SIPI_VECTOR', lsb: 0, width: 8 }],
  [ExitReason.IO_SMI]: IO_INSTRUCTION,
  [ExitReason.TASK_SWITCH]: TASK_SWITCH,
  [ExitReason.INVLPG]: whole64('LINEAR_ADDRESS'),
  [ExitReason.VMCLEAR]: DISPLACEMENT,
  [ExitReason.VMPTRLD]: DISPLACEMENT,
  [ExitReason.VMPTRST]: DISPLACEMENT,
  [ExitReason.VMREAD]: DISPLACEMENT,
  [ExitReason.VMWRITE]: DISPLACEMENT,
  [ExitReason.VMXON]: DISPLACEMENT,
  [ExitReason.CONTROL_REGISTER_ACCESS]: CONTROL_REGISTER_ACCESS,
  [ExitReason.MOV_DR]: MOV_DR,
  [ExitReason.IO_INSTRUCTION]: IO_INSTRUCTION,
  [ExitReason.VM_ENTRY_FAILURE_INVALID_GUEST_STATE]: VM_ENTRY_FAILURE_INVALID_GUEST_STATE,
  // The 1-based index of the VM-entry MSR-load entry that failed.
  [ExitReason.VM_ENTRY_FAILURE_MSR_LOADING]: [{ name: 'MSR_LOAD_ENTRY_NUMBER', lsb: 0, width: 32 }],
  [ExitReason.MWAIT]: [{ name: 'MONITOR_HARDWARE_ARMED', lsb: 0, width: 1 }],
  [ExitReason.APIC_ACCESS]: APIC_ACCESS,
  [ExitReason.VIRTUALIZED_EOI]: [{ name: 'VECTOR', lsb: 0, width: 8 }],
  [ExitReason.GDTR_IDTR_ACCESS]: DISPLACEMENT,
  [ExitReason.LDTR_TR_ACCESS]: DISPLACEMENT,
  [ExitReason.EPT_VIOLATION]: EPT_VIOLATION,
  [ExitReason.INVEPT]: DISPLACEMENT,
  [ExitReason.INVVPID]: DISPLACEMENT,
  [ExitReason.APIC_WRITE]: [{ name: 'PAGE_OFFSET', lsb: 0, width: 12 }],
  [ExitReason.INVPCID]: DISPLACEMENT,
  [ExitReason.PAGE_MODIFICATION_LOG_FULL]: [NMI_UNBLOCKING, ASYNCHRONOUS],
  [ExitReason.XSAVES]: DISPLACEMENT,
  [ExitReason.XRSTORS]: DISPLACEMENT,
  [ExitReason.SPP_RELATED_EVENT]: [
    { name: 'SPP_MISS', lsb: 11, width: 1, values: { 0: 'SPP misconfiguration', 1: 'SPP miss' } },
    NMI_UNBLOCKING,
  ],
  [ExitReason.INSTRUCTION_TIMEOUT]: [{ name: 'VM_CONTEXT_INVALID', lsb: 0, width: 1 }, NMI_UNBLOCKING],
};

// ---------------------------------------------------------------------------
// VM-exit instruction information (SDM vol. 3C, 28.2.5).

const SCALING_FIELD: BitField = { name: 'SCALING', lsb: 0, width: 2, values: SCALING };
const REG1: BitField = { name: 'REG1', lsb: 3, width: 4, values: GPR };
const ADDRESS_SIZE_FIELD: BitField = { name: 'ADDRESS_SIZE', lsb: 7, width: 3, values: ADDRESS_SIZE };
const MEM_REG: BitField = { name: 'MEM_REG', lsb: 10, width: 1, values: { 0: 'memory', 1: 'register' } };
const SEGMENT_FIELD: BitField = { name: 'SEGMENT_REGISTER', lsb: 15, width: 3, values: SEGMENT };
/** Bits 27:18 of every memory-operand format: index and base registers. */
const INDEX_BASE: readonly BitField[] = [
  { name: 'INDEX_REG', lsb: 18, width: 4, values: GPR },
  { name: 'INDEX_REG_INVALID', lsb: 22, width: 1 },
  { name: 'BASE_REG', lsb: 23, width: 4, values: GPR },
  { name: 'BASE_REG_INVALID', lsb: 27, width: 1 },
];
const REG2: BitField = { name: 'REG2', lsb: 28, width: 4, values: GPR };

/** INS and OUTS (when IA32_VMX_BASIC[54] = 1). The segment register is undefined for INS. */
const INS_OUTS: readonly BitField[] = [ADDRESS_SIZE_FIELD, SEGMENT_FIELD];

/** INVEPT, INVPCID, INVVPID: memory operand plus the type register in REG2. Bit 10 is 0. */
const INVEPT_INVPCID_INVVPID: readonly BitField[] = [SCALING_FIELD, ADDRESS_SIZE_FIELD, SEGMENT_FIELD, ...INDEX_BASE, REG2];

const LIDT_LGDT_SIDT_SGDT: readonly BitField[] = [
  SCALING_FIELD,
  ADDRESS_SIZE_FIELD,
  { name: 'OPERAND_SIZE', lsb: 11, width: 1, values: { 0: '16-bit', 1: '32-bit' } },
  SEGMENT_FIELD,
  ...INDEX_BASE,
  { name: 'INSTRUCTION_IDENTITY', lsb: 28, width: 2, values: { 0: 'SGDT', 1: 'SIDT', 2: 'LGDT', 3: 'LIDT' } },
];

const LLDT_LTR_SLDT_STR: readonly BitField[] = [
  SCALING_FIELD,
  REG1,
  ADDRESS_SIZE_FIELD,
  MEM_REG,
  SEGMENT_FIELD,
  ...INDEX_BASE,
  { name: 'INSTRUCTION_IDENTITY', lsb: 28, width: 2, values: { 0: 'SLDT', 1: 'STR', 2: 'LLDT', 3: 'LTR' } },
];

/** RDRAND, RDSEED, TPAUSE, UMWAIT: a register operand only. */
const RDRAND_RDSEED_TPAUSE_UMWAIT: readonly BitField[] = [
  { name: 'OPERAND_REGISTER', lsb: 3, width: 4, values: GPR },
  { name: 'OPERAND_SIZE', lsb: 11, width: 2, values: { 0: '16-bit', 1: '32-bit', 2: '64-bit' } },
];

/** VMCLEAR, VMPTRLD, VMPTRST, VMXON, XRSTORS, XSAVES: a memory operand. Bit 10 is 0. */
const MEMORY_OPERAND: readonly BitField[] = [SCALING_FIELD, ADDRESS_SIZE_FIELD, SEGMENT_FIELD, ...INDEX_BASE];

/** VMREAD, VMWRITE: REG1 is the register operand (if MEM_REG = 1), REG2 holds the field encoding. */
const VMREAD_VMWRITE: readonly BitField[] = [
  SCALING_FIELD,
  REG1,
  ADDRESS_SIZE_FIELD,
  MEM_REG,
  SEGMENT_FIELD,
  ...INDEX_BASE,
  REG2,
];

/** LOADIWKEY: two XMM register operands. */
const LOADIWKEY: readonly BitField[] = [
  { name: 'REG1', lsb: 3, width: 4 },
  { name: 'REG2', lsb: 28, width: 4 },
];

export const INSTRUCTION_INFORMATION_LAYOUTS: Partial<Record<number, readonly BitField[]>> = {
  [ExitReason.VMCLEAR]: MEMORY_OPERAND,
  [ExitReason.VMPTRLD]: MEMORY_OPERAND,
  [ExitReason.VMPTRST]: MEMORY_OPERAND,
  [ExitReason.VMREAD]: VMREAD_VMWRITE,
  [ExitReason.VMWRITE]: VMREAD_VMWRITE,
  [ExitReason.VMXON]: MEMORY_OPERAND,
  [ExitReason.IO_INSTRUCTION]: INS_OUTS,
  [ExitReason.GDTR_IDTR_ACCESS]: LIDT_LGDT_SIDT_SGDT,
  [ExitReason.LDTR_TR_ACCESS]: LLDT_LTR_SLDT_STR,
  [ExitReason.INVEPT]: INVEPT_INVPCID_INVVPID,
  [ExitReason.INVVPID]: INVEPT_INVPCID_INVVPID,
  [ExitReason.RDRAND]: RDRAND_RDSEED_TPAUSE_UMWAIT,
  [ExitReason.INVPCID]: INVEPT_INVPCID_INVVPID,
  [ExitReason.RDSEED]: RDRAND_RDSEED_TPAUSE_UMWAIT,
  [ExitReason.XSAVES]: MEMORY_OPERAND,
  [ExitReason.XRSTORS]: MEMORY_OPERAND,
  [ExitReason.UMWAIT]: RDRAND_RDSEED_TPAUSE_UMWAIT,
  [ExitReason.TPAUSE]: RDRAND_RDSEED_TPAUSE_UMWAIT,
  [ExitReason.LOADIWKEY]: LOADIWKEY,
};
