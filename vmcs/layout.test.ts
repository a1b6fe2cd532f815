import { describe, expect, it } from 'vitest';
import { VMCS_FIELDS } from './fields.js';
import {
  VMCS_DATA_END,
  VMCS_DATA_OFFSET,
  VMCS_LAUNCH_STATE_OFFSET,
  VMCS_REGION_SIZE,
  VMCS_REVISION_OFFSET,
  VMCS_SHADOW_INDICATOR,
  VMX_ABORT_INDICATOR_OFFSET,
  fieldOffset,
} from './layout.js';

describe('hvsim VMCS region layout (SDM vol. 3C, 25.2; vmcs/layout.md)', () => {
  it('keeps the SDM header: revision identifier at 0 (bit 31 shadow indicator), VMX-abort indicator at 4', () => {
    expect(VMCS_REVISION_OFFSET).toBe(0);
    expect(VMCS_SHADOW_INDICATOR).toBe(0x80000000);
    expect(VMX_ABORT_INDICATOR_OFFSET).toBe(4);
    expect(VMCS_LAUNCH_STATE_OFFSET >= 8 && VMCS_LAUNCH_STATE_OFFSET < VMCS_DATA_OFFSET).toBe(true);
  });

  it('the region fits the architectural maximum of 4096 bytes (A.1)', () => {
    expect(VMCS_REGION_SIZE <= 4096).toBe(true);
    expect(VMCS_DATA_END <= VMCS_REGION_SIZE).toBe(true);
  });

  it('every field has a distinct 8-byte-aligned slot in the data area, in encoding order', () => {
    const offsets = VMCS_FIELDS.map((f) => fieldOffset(f.encoding));
    expect(new Set(offsets).size).toBe(VMCS_FIELDS.length);
    for (const o of offsets) {
      expect(o % 8).toBe(0);
      expect(o >= VMCS_DATA_OFFSET && o + 8 <= VMCS_DATA_END).toBe(true);
    }
    const byEncoding = [...VMCS_FIELDS].sort((a, b) => a.encoding - b.encoding).map((f) => fieldOffset(f.encoding));
    expect(byEncoding).toEqual([...byEncoding].sort((a, b) => a - b));
  });

  it('the high access of a 64-bit field is the upper dword of its slot; other widths have none', () => {
    for (const f of VMCS_FIELDS) {
      expect(fieldOffset(f.encoding | 1)).toBe(f.width === '64' ? fieldOffset(f.encoding) + 4 : -1);
    }
  });

  it('encodings without a field give -1', () => {
    for (const enc of [0x482c, 0x681e | 0x1000, 0x681e | 0x8000, 0x10000681e, -2, 1.5, 0x7ffe]) {
      expect(fieldOffset(enc), String(enc)).toBe(-1);
    }
  });
});
