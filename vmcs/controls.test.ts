import { describe, expect, it } from 'vitest';
import {
  CAPABILITY_MSR,
  CONTROL_GROUPS,
  DEFAULT1,
  DEFAULT1_BITS,
  IDT_VECTORING_INFORMATION_LAYOUT,
  InterruptionType,
  VMX_BASIC_LAYOUT,
  VMX_EPT_VPID_CAP_LAYOUT,
  VMX_MISC_LAYOUT,
  VM_ENTRY_INTERRUPTION_INFORMATION_LAYOUT,
  VM_EXIT_INTERRUPTION_INFORMATION_LAYOUT,
  VmxMsr,
  capabilityBit,
  maskOf,
} from './controls.js';
import { decodeBits, type BitField } from './qualifications.js';

describe('VMX controls (SDM vol. 3C, 25.6-25.8)', () => {
  it('bit positions are distinct within each group and fit the field (32 bits; 64 for tertiary, exit2)', () => {
    for (const [group, bits] of Object.entries(CONTROL_GROUPS)) {
      const positions = Object.values(bits) as number[];
      expect(new Set(positions).size, group).toBe(positions.length);
      const limit = group === 'tertiary' || group === 'exit2' ? 64 : 32;
      for (const p of positions) expect(p >= 0 && p < limit, `${group} ${p}`).toBe(true);
    }
  });

  it('well-known controls sit where the SDM puts them', () => {
    expect(capabilityBit('pin.NMI_EXITING')).toEqual({ group: 'pin', bit: 3 });
    expect(capabilityBit('pin.ACTIVATE_VMX_PREEMPTION_TIMER').bit).toBe(6);
    expect(capabilityBit('proc.HLT_EXITING').bit).toBe(7);
    expect(capabilityBit('proc.USE_MSR_BITMAPS').bit).toBe(28);
    expect(capabilityBit('proc.ACTIVATE_SECONDARY_CONTROLS').bit).toBe(31);
    expect(capabilityBit('secondary.ENABLE_EPT').bit).toBe(1);
    expect(capabilityBit('secondary.UNRESTRICTED_GUEST').bit).toBe(7);
    expect(capabilityBit('tertiary.IPI_VIRTUALIZATION').bit).toBe(4);
    expect(capabilityBit('exit.HOST_ADDRESS_SPACE_SIZE').bit).toBe(9);
    expect(capabilityBit('exit.ACKNOWLEDGE_INTERRUPT_ON_EXIT').bit).toBe(15);
    expect(capabilityBit('entry.IA_32E_MODE_GUEST').bit).toBe(9);
    expect(capabilityBit('entry.LOAD_IA32_EFER').bit).toBe(15);
  });

  it('default1 classes are the appendix A allowed-0 values of the non-TRUE MSRs (A.3.1, A.3.2, A.4, A.5)', () => {
    expect(DEFAULT1.pin).toBe(0x16);
    expect(DEFAULT1.proc).toBe(0x0401e172);
    expect(DEFAULT1.exit).toBe(0x00036dff);
    expect(DEFAULT1.entry).toBe(0x000011ff);
  });

  it('the only named controls in a default1 class are CR3-load/store exiting and save/load debug controls (A.2)', () => {
    const named: string[] = [];
    for (const group of ['pin', 'proc', 'exit', 'entry'] as const) {
      for (const [name, bit] of Object.entries(CONTROL_GROUPS[group])) {
        if ((DEFAULT1_BITS[group] as readonly number[]).includes(bit)) named.push(`${group}.${name}`);
      }
    }
    expect(named.sort()).toEqual(['entry.LOAD_DEBUG_CONTROLS', 'exit.SAVE_DEBUG_CONTROLS', 'proc.CR3_LOAD_EXITING', 'proc.CR3_STORE_EXITING']);
  });

  it('maskOf sets bit 31 without going negative', () => {
    expect(maskOf([31])).toBe(0x80000000);
    expect(maskOf([0, 31])).toBe(0x80000001);
  });
});

describe('VMX capability MSRs (SDM vol. 3D, appendix A)', () => {
  it('MSR indices run 480H-493H without repeats; IA32_FEATURE_CONTROL is 3AH', () => {
    const vmx = Object.entries(VmxMsr).filter(([n]) => n !== 'IA32_FEATURE_CONTROL').map(([, v]) => v).sort((a, b) => a - b);
    expect(vmx).toEqual(Array.from({ length: 0x14 }, (_, i) => 0x480 + i));
    expect(VmxMsr.IA32_FEATURE_CONTROL).toBe(0x3a);
    expect(VmxMsr.IA32_VMX_TRUE_PINBASED_CTLS).toBe(0x48d);
    expect(VmxMsr.IA32_VMX_VMFUNC).toBe(0x491);
    expect(CAPABILITY_MSR.proc).toEqual({ msr: 0x482, true: 0x48e });
  });

  it('decodes a Skylake IA32_VMX_BASIC value (A.1)', () => {
    // 00DA0400_00000004H: revision 4, 1024-byte region, WB, INS/OUTS information, TRUE MSRs.
    expect(decodeBits(VMX_BASIC_LAYOUT, 0x00000004, 0x00da0400)).toEqual({
      VMCS_REVISION_IDENTIFIER: 4,
      VMCS_REGION_SIZE: 0x400,
      PHYSICAL_ADDRESS_WIDTH_32: 0,
      DUAL_MONITOR_TREATMENT: 1,
      VMCS_MEMORY_TYPE: 6,
      INS_OUTS_INSTRUCTION_INFORMATION: 1,
      TRUE_CONTROLS: 1,
      NO_HARDWARE_EXCEPTION_ERROR_CODE_CHECK: 0,
      NESTED_EXCEPTION: 0,
    });
  });

  it('decodes a Skylake IA32_VMX_EPT_VPID_CAP value (A.10)', () => {
    // 00000F01_06734141H: execute-only, 4-level walks, UC/WB, 2-MByte and 1-GByte pages, INVEPT (single,
    // all), A/D flags, advanced EPT-violation information, INVVPID with all four types.
    expect(decodeBits(VMX_EPT_VPID_CAP_LAYOUT, 0x06734141, 0x00000f01)).toEqual({
      EXECUTE_ONLY: 1, PAGE_WALK_LENGTH_4: 1, PAGE_WALK_LENGTH_5: 0, MEMORY_TYPE_UC: 1, MEMORY_TYPE_WB: 1,
      PDE_2MB_PAGES: 1, PDPTE_1GB_PAGES: 1, INVEPT: 1, ACCESSED_AND_DIRTY_FLAGS: 1,
      ADVANCED_EPT_VIOLATION_INFORMATION: 1, SUPERVISOR_SHADOW_STACK_CONTROL: 0,
      INVEPT_SINGLE_CONTEXT: 1, INVEPT_ALL_CONTEXT: 1, INVVPID: 1, INVVPID_INDIVIDUAL_ADDRESS: 1,
      INVVPID_SINGLE_CONTEXT: 1, INVVPID_ALL_CONTEXT: 1, INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS: 1,
      MAX_HLAT_PREFIX_SIZE: 0,
    });
  });

  it('IA32_VMX_MISC: activity states at bits 8:6, CR3-target count at 24:16 (A.6)', () => {
    const d = decodeBits(VMX_MISC_LAYOUT, (1 << 6) | (1 << 8) | (4 << 16) | 5, 0);
    expect(d.ACTIVITY_STATE_HLT).toBe(1);
    expect(d.ACTIVITY_STATE_SHUTDOWN).toBe(0);
    expect(d.ACTIVITY_STATE_WAIT_FOR_SIPI).toBe(1);
    expect(d.CR3_TARGET_VALUES).toBe(4);
    expect(d.PREEMPTION_TIMER_TSC_RATE).toBe(5);
  });
});

describe('event information fields (SDM vol. 3C, 25.8.3, 25.9.2, 25.9.3)', () => {
  it('a valid #PF with error code decodes as vector 14, hardware exception, deliver error code', () => {
    const d = decodeBits(VM_EXIT_INTERRUPTION_INFORMATION_LAYOUT, 0x80000b0e, 0);
    expect(d).toMatchObject({ VECTOR: 14, INTERRUPTION_TYPE: InterruptionType.HARDWARE_EXCEPTION, DELIVER_ERROR_CODE: 1, VALID: 1, NMI_UNBLOCKING_DUE_TO_IRET: 0 });
  });

  it('interruption types: 0 external interrupt ... 7 other event; 1 reserved', () => {
    expect(InterruptionType).toEqual({
      EXTERNAL_INTERRUPT: 0, NMI: 2, HARDWARE_EXCEPTION: 3, SOFTWARE_INTERRUPT: 4,
      PRIVILEGED_SOFTWARE_EXCEPTION: 5, SOFTWARE_EXCEPTION: 6, OTHER_EVENT: 7,
    });
    const type = VM_ENTRY_INTERRUPTION_INFORMATION_LAYOUT.find((f) => f.name === 'INTERRUPTION_TYPE')!;
    expect(type.values?.[1]).toBeUndefined();
    expect(type.values?.[7]).toBe('other event');
  });

  it('only the VM-exit interruption information has NMI unblocking due to IRET (bit 12)', () => {
    const has12 = (l: readonly BitField[]) => l.some((f) => f.lsb === 12);
    expect(has12(VM_EXIT_INTERRUPTION_INFORMATION_LAYOUT)).toBe(true);
    expect(has12(VM_ENTRY_INTERRUPTION_INFORMATION_LAYOUT)).toBe(false);
    expect(has12(IDT_VECTORING_INFORMATION_LAYOUT)).toBe(false);
  });
});
