import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  FEATURE_CONTROL_LAYOUT,
  IDT_VECTORING_INFORMATION_LAYOUT,
  VMX_BASIC_LAYOUT,
  VMX_EPT_VPID_CAP_LAYOUT,
  VMX_MISC_LAYOUT,
  VMX_VMCS_ENUM_LAYOUT,
  VM_ENTRY_INTERRUPTION_INFORMATION_LAYOUT,
  VM_EXIT_INTERRUPTION_INFORMATION_LAYOUT,
} from './controls.js';
import { EXIT_REASON_FIELD, ExitReason, exitReasonName } from './exit-reasons.js';
import {
  DEBUG_EXCEPTION_QUALIFICATION,
  INSTRUCTION_INFORMATION_LAYOUTS,
  PAGE_FAULT_QUALIFICATION,
  QUALIFICATION_LAYOUTS,
  VmEntryFailureQualification,
  decodeBits,
  encodeBits,
  type BitField,
} from './qualifications.js';

const LAYOUTS: [string, readonly BitField[]][] = [
  ['DEBUG_EXCEPTION_QUALIFICATION', DEBUG_EXCEPTION_QUALIFICATION],
  ['PAGE_FAULT_QUALIFICATION', PAGE_FAULT_QUALIFICATION],
  ['EXIT_REASON_FIELD', EXIT_REASON_FIELD],
  ['FEATURE_CONTROL_LAYOUT', FEATURE_CONTROL_LAYOUT],
  ['VMX_BASIC_LAYOUT', VMX_BASIC_LAYOUT],
  ['VMX_MISC_LAYOUT', VMX_MISC_LAYOUT],
  ['VMX_VMCS_ENUM_LAYOUT', VMX_VMCS_ENUM_LAYOUT],
  ['VMX_EPT_VPID_CAP_LAYOUT', VMX_EPT_VPID_CAP_LAYOUT],
  ['VM_ENTRY_INTERRUPTION_INFORMATION_LAYOUT', VM_ENTRY_INTERRUPTION_INFORMATION_LAYOUT],
  ['VM_EXIT_INTERRUPTION_INFORMATION_LAYOUT', VM_EXIT_INTERRUPTION_INFORMATION_LAYOUT],
  ['IDT_VECTORING_INFORMATION_LAYOUT', IDT_VECTORING_INFORMATION_LAYOUT],
  ...Object.entries(QUALIFICATION_LAYOUTS).map(([r, l]) => [`qualification ${exitReasonName(+r)}`, l!] as [string, readonly BitField[]]),
  ...Object.entries(INSTRUCTION_INFORMATION_LAYOUTS).map(([r, l]) => [`instruction information ${exitReasonName(+r)}`, l!] as [string, readonly BitField[]]),
];

describe('bit-field layouts (SDM vol. 3C, 28.2.1, 28.2.5; vol. 3D, appendix A)', () => {
  it('fields are 1-32 bits wide, inside bits 63:0, disjoint and uniquely named', () => {
    for (const [name, layout] of LAYOUTS) {
      let used = 0n;
      const names = new Set<string>();
      for (const f of layout) {
        expect(f.width >= 1 && f.width <= 32, `${name}.${f.name} width`).toBe(true);
        expect(f.lsb >= 0 && f.lsb + f.width <= 64, `${name}.${f.name} position`).toBe(true);
        const bits = ((1n << BigInt(f.width)) - 1n) << BigInt(f.lsb);
        expect(used & bits, `${name}.${f.name} overlaps`).toBe(0n);
        used |= bits;
        expect(names.has(f.name), `${name}.${f.name} repeated`).toBe(false);
        names.add(f.name);
        for (const v of Object.keys(f.values ?? {})) expect(+v < 2 ** f.width, `${name}.${f.name} value ${v}`).toBe(true);
      }
    }
  });

  it('layouts are keyed by defined basic exit reasons', () => {
    for (const r of [...Object.keys(QUALIFICATION_LAYOUTS), ...Object.keys(INSTRUCTION_INFORMATION_LAYOUTS)]) {
      expect(exitReasonName(+r), r).toBeDefined();
    }
  });

  it('encodeBits then decodeBits gives back every field value', () => {
    for (const [name, layout] of LAYOUTS) {
      const arb = fc.record(Object.fromEntries(layout.map((f) => [f.name, fc.integer({ min: 0, max: 2 ** f.width - 1 })])));
      fc.assert(fc.property(arb, (values) => {
        const [lo, hi] = encodeBits(layout, values);
        expect(decodeBits(layout, lo, hi), name).toEqual(values);
      }), { numRuns: 50 });
    }
  });

  it('decodeBits then encodeBits keeps exactly the layout\'s bits of any value', () => {
    for (const [, layout] of LAYOUTS) {
      fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }), (lo, hi) => {
        const [lo2, hi2] = encodeBits(layout, decodeBits(layout, lo, hi));
        expect(decodeBits(layout, lo2, hi2)).toEqual(decodeBits(layout, lo, hi));
        expect((lo2 & ~lo) | (hi2 & ~hi)).toBe(0); // no bit appears that was not in the value
      }), { numRuns: 50 });
    }
  });

  it('decodes a field that straddles bit 32', () => {
    const layout: BitField[] = [{ name: 'X', lsb: 28, width: 8 }];
    expect(decodeBits(layout, 0xa0000000, 0xb)).toEqual({ X: 0xba });
    expect(encodeBits(layout, { X: 0xba })).toEqual([0xa0000000, 0xb]);
  });
});

describe('exit qualifications (SDM vol. 3C, 28.2.1)', () => {
  it('OUT 80H, AL: 1-byte, OUT, immediate operand, port 80H', () => {
    const l = QUALIFICATION_LAYOUTS[ExitReason.IO_INSTRUCTION]!;
    expect(encodeBits(l, { SIZE_OF_ACCESS: 0, DIRECTION: 0, OPERAND_ENCODING: 1, PORT_NUMBER: 0x80 })).toEqual([0x00800040, 0]);
    // REP INSW with DX = 3F8H: 2-byte, IN, string, REP, DX operand.
    expect(decodeBits(l, 0x03f80039, 0)).toEqual({
      SIZE_OF_ACCESS: 1, DIRECTION: 1, STRING_INSTRUCTION: 1, REP_PREFIXED: 1, OPERAND_ENCODING: 0, PORT_NUMBER: 0x3f8,
    });
  });

  it('MOV CR3, RBX; LMSW with memory operand (table "Exit Qualification for Control-Register Accesses")', () => {
    const l = QUALIFICATION_LAYOUTS[ExitReason.CONTROL_REGISTER_ACCESS]!;
    expect(decodeBits(l, 0x303, 0)).toMatchObject({ CONTROL_REGISTER: 3, ACCESS_TYPE: 0, GENERAL_PURPOSE_REGISTER: 3 });
    expect(decodeBits(l, 0x00010070, 0)).toMatchObject({ ACCESS_TYPE: 3, LMSW_OPERAND_TYPE: 1, LMSW_SOURCE_DATA: 1 });
  });

  it('MOV RAX, DR6 (direction bit 4)', () => {
    expect(decodeBits(QUALIFICATION_LAYOUTS[ExitReason.MOV_DR]!, 0x16, 0)).toEqual({ DEBUG_REGISTER: 6, DIRECTION: 1, GENERAL_PURPOSE_REGISTER: 0 });
  });

  it('EPT violation: a write through a linear address to a read-only page', () => {
    expect(decodeBits(QUALIFICATION_LAYOUTS[ExitReason.EPT_VIOLATION]!, 0x18a, 0)).toMatchObject({
      DATA_READ: 0, DATA_WRITE: 1, INSTRUCTION_FETCH: 0, READABLE: 1, WRITABLE: 0, EXECUTABLE: 0,
      GUEST_LINEAR_ADDRESS_VALID: 1, TRANSLATED_LINEAR_ADDRESS: 1, NMI_UNBLOCKING_DUE_TO_IRET: 0,
    });
  });

  it('task switch through a task gate in the IDT', () => {
    expect(decodeBits(QUALIFICATION_LAYOUTS[ExitReason.TASK_SWITCH]!, 0xc0000028, 0)).toEqual({ TSS_SELECTOR: 0x28, SOURCE: 3 });
  });

  it('#DB single step and #PF linear address', () => {
    expect(decodeBits(DEBUG_EXCEPTION_QUALIFICATION, 1 << 14, 0)).toMatchObject({ BS: 1, BD: 0, B0: 0 });
    expect(decodeBits(PAGE_FAULT_QUALIFICATION, 0x12345000, 0xffff8000)).toEqual({ LINEAR_ADDRESS: 0x12345000, LINEAR_ADDRESS_HIGH: 0xffff8000 });
  });

  it('VM-entry failure qualification codes (27.8): 0, 2 PDPTE, 3 NMI injection, 4 link pointer', () => {
    expect(VmEntryFailureQualification).toEqual({ DEFAULT: 0, PDPTE_LOAD: 2, NMI_INJECTION: 3, INVALID_VMCS_LINK_POINTER: 4 });
    const code = QUALIFICATION_LAYOUTS[ExitReason.VM_ENTRY_FAILURE_INVALID_GUEST_STATE]![0]!;
    expect(Object.keys(code.values!).map(Number)).toEqual([0, 2, 3, 4]);
  });
});

describe('VM-exit instruction information (SDM vol. 3C, 28.2.5)', () => {
  it('VMREAD RAX, RBX: register form, REG1 = RAX, REG2 = RBX', () => {
    const l = INSTRUCTION_INFORMATION_LAYOUTS[ExitReason.VMREAD]!;
    expect(decodeBits(l, (3 << 28) | (1 << 10) | (0 << 3), 0)).toMatchObject({ MEM_REG: 1, REG1: 0, REG2: 3 });
  });

  it('LGDT [RBX+RSI*4] in 64-bit code: scale 4, 64-bit address size, DS, identity LGDT', () => {
    const info = (2 << 0) | (2 << 7) | (3 << 15) | (6 << 18) | (3 << 23) | (2 << 28);
    expect(decodeBits(INSTRUCTION_INFORMATION_LAYOUTS[ExitReason.GDTR_IDTR_ACCESS]!, info, 0)).toEqual({
      SCALING: 2, ADDRESS_SIZE: 2, OPERAND_SIZE: 0, SEGMENT_REGISTER: 3,
      INDEX_REG: 6, INDEX_REG_INVALID: 0, BASE_REG: 3, BASE_REG_INVALID: 0, INSTRUCTION_IDENTITY: 2,
    });
  });

  it('RDRAND and RDSEED share one format: destination in 6:3, operand size in 12:11', () => {
    const l = INSTRUCTION_INFORMATION_LAYOUTS[ExitReason.RDRAND]!;
    expect(INSTRUCTION_INFORMATION_LAYOUTS[ExitReason.RDSEED]).toBe(l);
    expect(decodeBits(l, (9 << 3) | (2 << 11), 0)).toEqual({ OPERAND_REGISTER: 9, OPERAND_SIZE: 2 });
  });
});
