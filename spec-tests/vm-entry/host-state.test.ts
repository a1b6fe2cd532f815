/**
 * SDM vol. 3C, 27.2.2 "Checks on Host Control Registers, MSRs, and SSP",
 * 27.2.3 "Checks on Host Segment and Descriptor-Table Registers" and 27.2.4
 * "Checks Related to Address-Space Size". A failure is VMfailValid with
 * VM-instruction error 8. Each test breaks one rule of a valid VMCS.
 */
import { describe, expect, it } from 'vitest';
import { checkHostState } from '../../src/vmx/entry-checks.js';
import { validVmcs } from '../../src/vmx/valid-vmcs.js';
import type { Vmcs } from '../../src/vmx/vmcs.js';
import { bit, caps, clearField, cpu, everything, expectFailure, F, firstFailure, legacyCpu, orField, vmcs } from './fixture.js';

const EXIT = F.PRIMARY_VM_EXIT_CONTROLS;
const host = (check: string, section: string) => ({ kind: 'host' as const, check, section });
const LOAD_PAT = bit(19), LOAD_EFER = bit(21), HOST_ADDRESS_SPACE_SIZE = bit(9);
const CR4_LA57 = bit(12), CR4_PCIDE = bit(17), CR4_PAE = bit(5);

/** A VMCS for a VMM outside IA-32e mode: 32-bit host and guest, run on a processor with IA32_EFER.LMA = 0. */
const legacy = legacyCpu();
const hostOutsideIa32e = (mutate: (v: Vmcs) => void = () => {}) => vmcs((v) => {
  clearField(v, EXIT, HOST_ADDRESS_SPACE_SIZE);
  clearField(v, F.HOST_CR4, CR4_PAE);
  mutate(v);
}, { guest: 'protected' });

describe('SDM 27.2.2 (host control registers, MSRs and SSP)', () => {
  it('27.2: validVmcs passes the host-state checks on a processor in IA-32e mode', () => {
    expect(checkHostState(cpu, validVmcs(caps), caps)).toBeNull();
    expect(firstFailure(validVmcs(caps))).toBeNull();
  });
  it('27.2.2: host CR0 with NE (a FIXED0 bit) clear', () => {
    const f = expectFailure(vmcs((v) => clearField(v, F.HOST_CR0, bit(5))), host('host CR0 fixed bits', '27.2.2'));
    expect(f.detail).toBe('host CR0 = 0x80000011: bit 5 must be 1 (FIXED0 = 0x80000021)');
  });
  it('27.2.2: host CR0 with a bit of 63:32 set', () => {
    expectFailure(vmcs((v) => v.set(F.HOST_CR0, v.lo(F.HOST_CR0), 1)), host('host CR0 fixed bits', '27.2.2'));
  });
  it('27.2.2: host CR4 with VMXE clear', () => {
    expectFailure(vmcs((v) => clearField(v, F.HOST_CR4, bit(13))), host('host CR4 fixed bits', '27.2.2'));
  });
  it('27.2.2: host CR4 with a bit FIXED1 does not allow (PKE, bit 22)', () => {
    const f = expectFailure(vmcs((v) => orField(v, F.HOST_CR4, bit(22))), host('host CR4 fixed bits', '27.2.2'));
    expect(f.detail).toContain('bit 22 must be 0');
  });
  it('27.2.2: host CR3 with a bit beyond MAXPHYADDR', () => {
    expectFailure(vmcs((v) => v.set(F.HOST_CR3, 0x1000, 0x80)), host('host CR3', '27.2.2'));
    expect(firstFailure(vmcs((v) => v.set(F.HOST_CR3, 0x1000, 0x7f)))).toBeNull();
  });
  it('27.2.2: host IA32_SYSENTER_ESP not canonical', () => {
    expectFailure(vmcs((v) => v.set(F.HOST_IA32_SYSENTER_ESP, 0, 0x00008000)),
      host('host IA32_SYSENTER_ESP canonical', '27.2.2'));
  });
  it('27.2.2: host IA32_SYSENTER_EIP not canonical', () => {
    expectFailure(vmcs((v) => v.set(F.HOST_IA32_SYSENTER_EIP, 0, 0x7fff0000)),
      host('host IA32_SYSENTER_EIP canonical', '27.2.2'));
  });
  it('27.2.2: canonicality is in 57 bits when the host CR4 field sets LA57 (a processor with LA57)', () => {
    // IA32_VMX_CR4_FIXED1 of a processor with 5-level paging allows LA57 (A.8); Skylake's does not.
    const la57 = { ...caps, cr4Fixed1: (caps.cr4Fixed1 | CR4_LA57) >>> 0 };
    const bit47 = vmcs((v) => { orField(v, F.HOST_CR4, CR4_LA57); v.set(F.HOST_IA32_SYSENTER_ESP, 0, 0x00008000); });
    expect(firstFailure(bit47, la57)).toBeNull();
    expectFailure(vmcs((v) => { orField(v, F.HOST_CR4, CR4_LA57); v.set(F.HOST_IA32_SYSENTER_ESP, 0, 0x01000000); }),
      host('host IA32_SYSENTER_ESP canonical', '27.2.2'), la57);
  });
  it('27.2.2, A.8: on skylake, without 5-level paging, host CR4.LA57 is a bit FIXED1 does not allow', () => {
    const f = expectFailure(vmcs((v) => orField(v, F.HOST_CR4, CR4_LA57)), host('host CR4 fixed bits', '27.2.2'));
    expect(f.detail).toContain('bit 12 must be 0');
  });
  it('27.2.2: host IA32_PAT with a reserved memory type (2) under "load IA32_PAT"', () => {
    expect(firstFailure(vmcs((v) => orField(v, EXIT, LOAD_PAT)))).toBeNull();
    expectFailure(vmcs((v) => { orField(v, EXIT, LOAD_PAT); v.set(F.HOST_IA32_PAT, 0x00070406, 0x00020406); }),
      host('host IA32_PAT', '27.2.2'));
  });
  it('27.2.2: host IA32_EFER with a reserved bit under "load IA32_EFER"', () => {
    expect(firstFailure(vmcs((v) => orField(v, EXIT, LOAD_EFER)))).toBeNull();
    expectFailure(vmcs((v) => { orField(v, EXIT, LOAD_EFER); v.set(F.HOST_IA32_EFER, 0x502); }),
      host('host IA32_EFER reserved bits', '27.2.2'));
  });
  it('27.2.2: host IA32_EFER.LME differs from "host address-space size"', () => {
    expectFailure(vmcs((v) => { orField(v, EXIT, LOAD_EFER); v.set(F.HOST_IA32_EFER, 0x400); }),
      host('host IA32_EFER.LMA and LME', '27.2.2'));
  });
});

describe('SDM 27.2.2 (host state for controls the skylake model does not offer)', () => {
  const S = '27.2.2';
  it('27.2.2: host CR4.CET without CR0.WP', () => {
    expectFailure(vmcs((v) => orField(v, F.HOST_CR4, bit(23))), host('host CR4.CET without CR0.WP', S), everything);
  });
  it('27.2.2: host IA32_S_CET reserved bits, canonical S_CET, SSP and SSP-table address under "load CET state"', () => {
    expectFailure(vmcs((v) => { orField(v, EXIT, bit(28)); v.set(F.HOST_IA32_S_CET, 0x40); }),
      host('host IA32_S_CET reserved bits', S), everything);
    expectFailure(vmcs((v) => { orField(v, EXIT, bit(28)); v.set(F.HOST_IA32_S_CET, 0, 0x00100000); }),
      host('host IA32_S_CET canonical', S), everything);
    expectFailure(vmcs((v) => { orField(v, EXIT, bit(28)); v.set(F.HOST_SSP, 0, 0x00100000); }),
      host('host SSP canonical', S), everything);
    expectFailure(vmcs((v) => { orField(v, EXIT, bit(28)); v.set(F.HOST_IA32_INTERRUPT_SSP_TABLE_ADDR, 0, 0x00100000); }),
      host('host IA32_INTERRUPT_SSP_TABLE_ADDR canonical', S), everything);
  });
  it('27.2.2: host IA32_PERF_GLOBAL_CTRL enabling a fifth counter of four under "load IA32_PERF_GLOBAL_CTRL"', () => {
    const allCounters = vmcs((v) => { orField(v, EXIT, bit(12)); v.set(F.HOST_IA32_PERF_GLOBAL_CTRL, 0xf, 0x7); });
    expect(firstFailure(allCounters, everything)).toBeNull();
    expectFailure(vmcs((v) => { orField(v, EXIT, bit(12)); v.set(F.HOST_IA32_PERF_GLOBAL_CTRL, 0x10); }),
      host('host IA32_PERF_GLOBAL_CTRL', S), everything);
  });
  it('27.2.2: host IA32_PKRS bits 63:32 under "load PKRS"', () => {
    expectFailure(vmcs((v) => { orField(v, EXIT, bit(29)); v.set(F.HOST_IA32_PKRS, 0, 1); }),
      host('host IA32_PKRS', S), everything);
  });
});

describe('SDM 27.2.3 (host segment and descriptor-table registers)', () => {
  it('27.2.3: host SS selector with RPL 3', () => {
    const f = expectFailure(vmcs((v) => v.set(F.HOST_SS_SELECTOR, 0x13)), host('host SS selector RPL and TI', '27.2.3'));
    expect(f.detail).toBe('host SS selector = 0x13: bits 2:0 must be 0');
  });
  it('27.2.3: host TR selector with TI set', () => {
    expectFailure(vmcs((v) => v.set(F.HOST_TR_SELECTOR, 0x1c)), host('host TR selector RPL and TI', '27.2.3'));
  });
  it('27.2.3: host CS selector 0000H', () => {
    expectFailure(vmcs((v) => v.set(F.HOST_CS_SELECTOR, 0)), host('host CS selector null', '27.2.3'));
  });
  it('27.2.3: host TR selector 0000H', () => {
    expectFailure(vmcs((v) => v.set(F.HOST_TR_SELECTOR, 0)), host('host TR selector null', '27.2.3'));
  });
  it('27.2.3: host SS selector 0000H is allowed only with "host address-space size"', () => {
    expect(firstFailure(vmcs((v) => v.set(F.HOST_SS_SELECTOR, 0)))).toBeNull();
    expectFailure(hostOutsideIa32e((v) => v.set(F.HOST_SS_SELECTOR, 0)), host('host SS selector null', '27.2.3'), caps, legacy);
  });
  it('27.2.3: host FS, GS or IDTR base not canonical', () => {
    expectFailure(vmcs((v) => v.set(F.HOST_FS_BASE, 0, 0x00010000)), host('host FS base canonical', '27.2.3'));
    expectFailure(vmcs((v) => v.set(F.HOST_GS_BASE, 0, 0x80000000)), host('host GS base canonical', '27.2.3'));
    expectFailure(vmcs((v) => v.set(F.HOST_IDTR_BASE, 0, 0x0000ffff)), host('host IDTR base canonical', '27.2.3'));
  });
  it('27.2.3: host GDTR base not canonical', () => {
    expectFailure(vmcs((v) => v.set(F.HOST_GDTR_BASE, 0, 0xfffe0000)), host('host GDTR base canonical', '27.2.3'));
    expect(firstFailure(vmcs((v) => v.set(F.HOST_GDTR_BASE, 0, 0xffff8000)))).toBeNull();
  });
  it('27.2.3: host TR base not canonical', () => {
    expectFailure(vmcs((v) => v.set(F.HOST_TR_BASE, 0, 0x00800000)), host('host TR base canonical', '27.2.3'));
  });
});

describe('SDM 27.2.4 (address-space size)', () => {
  it('27.2.4: a 32-bit host and guest pass on a processor outside IA-32e mode', () => {
    expect(firstFailure(hostOutsideIa32e(), caps, legacy)).toBeNull();
  });
  it('27.2.4: "IA-32e mode guest" while IA32_EFER.LMA = 0', () => {
    expectFailure(vmcs(), host('IA-32e mode guest outside IA-32e mode', '27.2.4'), caps, legacy);
  });
  it('27.2.4: "host address-space size" while IA32_EFER.LMA = 0', () => {
    expectFailure(vmcs(() => {}, { guest: 'protected' }),
      host('host address-space size outside IA-32e mode', '27.2.4'), caps, legacy);
  });
  it('27.2.4: "host address-space size" 0 while IA32_EFER.LMA = 1', () => {
    expectFailure(hostOutsideIa32e(), host('host address-space size in IA-32e mode', '27.2.4'));
  });
  it('27.2.4: host CR4.PCIDE with "host address-space size" 0', () => {
    expectFailure(hostOutsideIa32e((v) => orField(v, F.HOST_CR4, CR4_PCIDE)), host('host CR4.PCIDE', '27.2.4'), caps, legacy);
  });
  it('27.2.4: host RIP above 4 GBytes with "host address-space size" 0', () => {
    expectFailure(hostOutsideIa32e((v) => v.set(F.HOST_RIP, 0x1000, 1)), host('host RIP bits 63:32', '27.2.4'), caps, legacy);
  });
  it('27.2.4: host CR4.PAE clear with "host address-space size" 1', () => {
    expectFailure(vmcs((v) => clearField(v, F.HOST_CR4, CR4_PAE)), host('host CR4.PAE', '27.2.4'));
  });
  it('27.2.4: host RIP not canonical with "host address-space size" 1', () => {
    expectFailure(vmcs((v) => v.set(F.HOST_RIP, 0, 0x00008000)), host('host RIP canonical', '27.2.4'));
  });
});

describe('SDM 27.2.2-27.2.4 (order of the checks)', () => {
  it('27.2.2 before 27.2.3: host CR0 is reported before a bad selector', () => {
    expectFailure(vmcs((v) => { clearField(v, F.HOST_CR0, bit(0)); v.set(F.HOST_CS_SELECTOR, 0); }),
      host('host CR0 fixed bits', '27.2.2'));
  });
  it('27.2.3 before 27.2.4: a bad selector before a non-canonical host RIP', () => {
    expectFailure(vmcs((v) => { v.set(F.HOST_DS_SELECTOR, 0x11); v.set(F.HOST_RIP, 0, 0x00008000); }),
      host('host DS selector RPL and TI', '27.2.3'));
  });
  it('27.2.3: selectors in the SDM order CS, SS, DS, ES, FS, GS, TR (CS before ES)', () => {
    expectFailure(vmcs((v) => { v.set(F.HOST_ES_SELECTOR, 0x11); v.set(F.HOST_CS_SELECTOR, 0x0b); }),
      host('host CS selector RPL and TI', '27.2.3'));
  });
  it('27.2.4 is checked against the processor: the same VMCS fails only outside IA-32e mode', () => {
    const v = vmcs(() => {}, { guest: 'protected' });
    expect(checkHostState(cpu, v, caps)).toBeNull();
    expect(checkHostState(legacy, v, caps)).toMatchObject(host('host address-space size outside IA-32e mode', '27.2.4'));
  });
});
