import { describe, expect, it } from 'vitest';
import { capabilityBit, type Capability } from './controls.js';
import {
  Field,
  VMCS_ENCODING_RESERVED_MASK,
  VMCS_FIELDS,
  accessType,
  fieldByEncoding,
  fieldByName,
  fieldExists,
  fieldType,
  fieldWidth,
  index,
  makeEncoding,
} from './fields.js';

describe('VMCS field table (SDM vol. 3D, appendix B)', () => {
  it('every encoding decodes (25.11.2) to its table\'s width and type, with access type full', () => {
    for (const f of VMCS_FIELDS) {
      expect({ name: f.name, width: fieldWidth(f.encoding), type: fieldType(f.encoding), access: accessType(f.encoding) })
        .toEqual({ name: f.name, width: f.width, type: f.type, access: 0 });
    }
  });

  it('no encoding sets a reserved bit (bits 31:15 and 12, 25.11.2)', () => {
    expect(VMCS_ENCODING_RESERVED_MASK >>> 0).toBe(0xffff9000);
    for (const f of VMCS_FIELDS) expect(f.encoding & VMCS_ENCODING_RESERVED_MASK).toBe(0);
  });

  it('encodings and names are unique', () => {
    expect(new Set(VMCS_FIELDS.map((f) => f.encoding)).size).toBe(VMCS_FIELDS.length);
    expect(new Set(VMCS_FIELDS.map((f) => f.name)).size).toBe(VMCS_FIELDS.length);
  });

  it('makeEncoding rebuilds each encoding from width, type and index (25.11.2)', () => {
    for (const f of VMCS_FIELDS) expect(makeEncoding(f.width, f.type, index(f.encoding))).toBe(f.encoding);
    expect(makeEncoding('64', 'guest', 0, 1)).toBe(0x2801);
  });

  it('indexes within each table run from 0 without gaps, except the SDM\'s unused indexes', () => {
    // Unused in appendix B: 64-bit control 35, 36, 39, 40 (2046H-2050H); 64-bit read-only 1 (2402H);
    // 32-bit guest 22 (482CH).
    const unused = new Set([0x2046, 0x2048, 0x204e, 0x2050, 0x2402, 0x482c]);
    const groups = new Map<string, number[]>();
    for (const f of VMCS_FIELDS) {
      const key = `${f.width}/${f.type}`;
      groups.set(key, [...(groups.get(key) ?? []), f.encoding]);
    }
    expect(groups.size).toBe(15); // B.1.1-B.1.3 (no 16-bit read-only fields), B.2.1-B.2.4, B.3.1-B.3.4, B.4.1-B.4.4
    for (const encs of groups.values()) {
      const sorted = [...encs].sort((a, b) => a - b);
      const last = sorted[sorted.length - 1]!;
      for (let e = sorted[0]!; e <= last; e += 2) {
        expect(encs.includes(e) || unused.has(e), `encoding ${e.toString(16)}`).toBe(true);
      }
      expect(index(sorted[0]!)).toBe(0);
    }
  });

  it('well-known encodings match the SDM', () => {
    expect(Field.GUEST_RIP).toBe(0x681e);
    expect(Field.GUEST_RSP).toBe(0x681c);
    expect(Field.GUEST_RFLAGS).toBe(0x6820);
    expect(Field.VMCS_LINK_POINTER).toBe(0x2800);
    expect(Field.EXIT_REASON).toBe(0x4402);
    expect(Field.EXIT_QUALIFICATION).toBe(0x6400);
    expect(Field.VM_INSTRUCTION_ERROR).toBe(0x4400);
    expect(Field.EPT_POINTER).toBe(0x201a);
    expect(Field.VIRTUAL_PROCESSOR_IDENTIFIER).toBe(0x0000);
    expect(Field.HOST_RIP).toBe(0x6c16);
    expect(Field.HOST_RSP).toBe(0x6c14);
    expect(Field.PIN_BASED_VM_EXECUTION_CONTROLS).toBe(0x4000);
    expect(Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS).toBe(0x4002);
    expect(Field.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS).toBe(0x401e);
    expect(Field.PRIMARY_VM_EXIT_CONTROLS).toBe(0x400c);
    expect(Field.VM_ENTRY_CONTROLS).toBe(0x4012);
    expect(Field.CR0_GUEST_HOST_MASK).toBe(0x6000);
    expect(Field.GUEST_INTERRUPTIBILITY_STATE).toBe(0x4824);
    expect(Field.VMX_PREEMPTION_TIMER_VALUE).toBe(0x482e);
    expect(Field.VM_EXIT_INSTRUCTION_LENGTH).toBe(0x440c);
    expect(Field.GUEST_PHYSICAL_ADDRESS).toBe(0x2400);
    expect(Field.TSC_MULTIPLIER).toBe(0x2032);
    expect(Field.HOST_IA32_SYSENTER_CS).toBe(0x4c00);
  });

  it('fieldByEncoding accepts the high access (encoding | 1) of 64-bit fields only (25.11.2)', () => {
    expect(fieldByEncoding(0x2800)).toEqual({ field: fieldByName('VMCS_LINK_POINTER'), high: false });
    expect(fieldByEncoding(0x2801)).toEqual({ field: fieldByName('VMCS_LINK_POINTER'), high: true });
    expect(fieldByEncoding(0x201b)?.field.name).toBe('EPT_POINTER');
    expect(fieldByEncoding(0x681f)).toBeUndefined(); // natural width: full access only
    expect(fieldByEncoding(0x4403)).toBeUndefined(); // 32-bit: full access only
    expect(fieldByEncoding(0x0001)).toBeUndefined(); // 16-bit: full access only
    expect(fieldByEncoding(0x482c)).toBeUndefined(); // unused index
    expect(fieldByEncoding(0x681e | 0x1000)).toBeUndefined(); // reserved bit 12
    expect(fieldByEncoding(0x681e | 0x8000)).toBeUndefined(); // reserved bit 15
    // The lookup is prebuilt: the same object each time (VMREAD/VMWRITE allocate nothing).
    expect(fieldByEncoding(0x681e)).toBe(fieldByEncoding(0x681e));
  });

  it('fieldByName finds each field; unknown names give undefined', () => {
    for (const f of VMCS_FIELDS) expect(fieldByName(f.name)).toBe(f);
    expect(fieldByName('GUEST_RIP_HIGH')).toBeUndefined();
  });

  it('every required capability names a defined control bit', () => {
    for (const f of VMCS_FIELDS) {
      for (const cap of [f.requires, f.orRequires]) {
        if (cap !== null) expect(capabilityBit(cap).bit, `${f.name} ${cap}`).toBeTypeOf('number');
      }
      if (f.requires === null) expect(f.orRequires).toBeNull();
    }
  });

  it('fields exist with their capability (appendix B notes)', () => {
    const only = (...caps: Capability[]) => (c: Capability) => caps.includes(c);
    const vpid = fieldByName('VIRTUAL_PROCESSOR_IDENTIFIER')!;
    expect(fieldExists(vpid, only())).toBe(false);
    expect(fieldExists(vpid, only('secondary.ENABLE_VPID'))).toBe(true);
    // Guest IA32_PAT: "load IA32_PAT" VM-entry control or "save IA32_PAT" VM-exit control.
    const pat = fieldByName('GUEST_IA32_PAT')!;
    expect(fieldExists(pat, only('exit.SAVE_IA32_PAT'))).toBe(true);
    expect(fieldExists(pat, only('entry.LOAD_IA32_PAT'))).toBe(true);
    expect(fieldExists(pat, only('exit.LOAD_IA32_PAT'))).toBe(false);
    expect(fieldExists(fieldByName('GUEST_RIP')!, only())).toBe(true);
    expect(fieldByName('EPT_POINTER')!.requires).toBe('secondary.ENABLE_EPT');
    expect(fieldByName('VMX_PREEMPTION_TIMER_VALUE')!.requires).toBe('pin.ACTIVATE_VMX_PREEMPTION_TIMER');
    expect(fieldByName('SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS')!.requires).toBe('proc.ACTIVATE_SECONDARY_CONTROLS');
  });
});
