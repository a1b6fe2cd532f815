/**
 * SDM vol. 3C, 27.3.1 "Checks on the Guest State Area": control and debug
 * registers and MSRs (27.3.1.1), segment registers (27.3.1.2),
 * descriptor-table registers (27.3.1.3), RIP and RFLAGS (27.3.1.4),
 * non-register state (27.3.1.5). A failure is a VM exit with basic reason 33
 * ("VM-entry failure due to invalid guest state") and the exit qualification
 * of 28.2.1. Each test breaks one rule of a valid VMCS.
 */
import { describe, expect, it } from 'vitest';
import { checkGuestState } from '../../src/vmx/entry-checks.js';
import { validVmcs } from '../../src/vmx/valid-vmcs.js';
import type { Vmcs } from '../../src/vmx/vmcs.js';
import { VmEntryFailureQualification } from '../../vmcs/qualifications.js';
import { bit, caps, clearField, cpu, everything, expectFailure, F, firstFailure, orField, vmcs } from './fixture.js';

const ENTRY = F.VM_ENTRY_CONTROLS, INFO = F.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD;
const guest = (check: string, section: string, qualification?: number) =>
  ({ kind: 'guest' as const, check, section, ...(qualification === undefined ? {} : { qualification }) });
const passes = (v: Vmcs) => expect(firstFailure(v)).toBeNull();
const protectedGuest = (mutate: (v: Vmcs) => void = () => {}) => vmcs(mutate, { guest: 'protected' });

const LOAD_DEBUG_CONTROLS = bit(2), LOAD_PAT = bit(14), LOAD_EFER = bit(15);
const CR0_PE = bit(0), CR0_NE = bit(5), CR0_CD = bit(30), CR0_PG = bit(31);
const CR4_PAE = bit(5), CR4_VMXE = bit(13), CR4_PCIDE = bit(17);
const RFLAGS_IF = 0x200, RFLAGS_TF = 0x100, RFLAGS_VM = 0x20000;
/** Guest segment register n (ES, CS, SS, DS, FS, GS, LDTR, TR) fields. */
const sel = (n: number) => F.GUEST_ES_SELECTOR + 2 * n, base = (n: number) => F.GUEST_ES_BASE + 2 * n;
const limit = (n: number) => F.GUEST_ES_LIMIT + 2 * n, ar = (n: number) => F.GUEST_ES_ACCESS_RIGHTS + 2 * n;
const ES = 0, CS = 1, SS = 2, DS = 3, FS = 4, GS = 5, LDTR = 6, TR = 7;

/** Virtual-8086 segments: selector, base = selector × 16, limit FFFFH, access rights F3H; RFLAGS.VM = 1. */
function virtual8086(v: Vmcs): void {
  for (let n = 0; n < 6; n++) {
    v.set(sel(n), 0x1000 + 0x100 * n); v.set(base(n), (0x1000 + 0x100 * n) << 4); v.set(limit(n), 0xffff); v.set(ar(n), 0xf3);
  }
  v.set(F.GUEST_RFLAGS, 0x2 | RFLAGS_VM);
}
/** "Unrestricted guest" (with a valid EPTP) and a real-mode CR0 (PE = PG = 0), checked on `everything`. */
function unrestricted(v: Vmcs): void {
  orField(v, F.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, bit(1) | bit(7));
  v.set(F.EPT_POINTER, 0x300000 | (3 << 3) | 6);
  clearField(v, F.GUEST_CR0, CR0_PE | CR0_PG);
}

describe('SDM 27.3.1 (checks on the guest-state area): the valid VMCS', () => {
  it('27.3.1: validVmcs passes the guest-state checks, 64-bit and 32-bit protected-mode guests', () => {
    expect(checkGuestState(cpu, validVmcs(caps), caps)).toBeNull();
    expect(checkGuestState(cpu, validVmcs(caps, { guest: 'protected' }), caps)).toBeNull();
    passes(validVmcs(caps, { guest: 'protected' }));
  });
});

describe('SDM 27.3.1.1 (guest control registers, debug registers and MSRs)', () => {
  const S = '27.3.1.1';
  it('27.3.1.1: guest CR0 with NE (FIXED0) clear', () => {
    const f = expectFailure(vmcs((v) => clearField(v, F.GUEST_CR0, CR0_NE)), guest('guest CR0 fixed bits', S));
    expect(f.detail).toContain('bit 5 must be 1');
  });
  it('27.3.1.1: guest CR0.CD and NW are never checked', () => {
    passes(vmcs((v) => orField(v, F.GUEST_CR0, CR0_CD)));
  });
  it('27.3.1.1: with "unrestricted guest" PE and PG may be 0, but PG = 1 needs PE = 1', () => {
    expect(firstFailure(protectedGuest(unrestricted), everything)).toBeNull();
    expectFailure(protectedGuest((v) => { unrestricted(v); orField(v, F.GUEST_CR0, CR0_PG); }),
      guest('guest CR0.PG without PE', S), everything);
  });
  it('27.3.1.1: guest CR4 with VMXE clear', () => {
    expectFailure(vmcs((v) => clearField(v, F.GUEST_CR4, CR4_VMXE)), guest('guest CR4 fixed bits', S));
  });
  it('27.3.1.1: guest CR4 with bit 32 set', () => {
    expectFailure(vmcs((v) => v.set(F.GUEST_CR4, v.lo(F.GUEST_CR4), 1)), guest('guest CR4 fixed bits', S));
  });
  it('27.3.1.1: guest IA32_DEBUGCTL reserved bit 2 under "load debug controls"', () => {
    passes(vmcs((v) => v.set(F.GUEST_IA32_DEBUGCTL, 4))); // not loaded, not checked
    expectFailure(vmcs((v) => { orField(v, ENTRY, LOAD_DEBUG_CONTROLS); v.set(F.GUEST_IA32_DEBUGCTL, 4); }),
      guest('guest IA32_DEBUGCTL reserved bits', S));
  });
  it('27.3.1.1: "IA-32e mode guest" with CR4.PAE clear', () => {
    expectFailure(vmcs((v) => clearField(v, F.GUEST_CR4, CR4_PAE)), guest('IA-32e mode guest without CR0.PG and CR4.PAE', S));
  });
  it('27.3.1.1: CR4.PCIDE outside IA-32e mode', () => {
    expectFailure(protectedGuest((v) => orField(v, F.GUEST_CR4, CR4_PCIDE)), guest('guest CR4.PCIDE outside IA-32e mode', S));
  });
  it('27.3.1.1: guest CR3 beyond MAXPHYADDR', () => {
    expectFailure(vmcs((v) => v.set(F.GUEST_CR3, 0x2000, 0x100)), guest('guest CR3', S));
  });
  it('27.3.1.1: guest DR7 bits 63:32 under "load debug controls"', () => {
    expectFailure(vmcs((v) => { orField(v, ENTRY, LOAD_DEBUG_CONTROLS); v.set(F.GUEST_DR7, 0x400, 1); }),
      guest('guest DR7 bits 63:32', S));
  });
  it('27.3.1.1: guest IA32_SYSENTER_ESP and IA32_SYSENTER_EIP not canonical', () => {
    expectFailure(vmcs((v) => v.set(F.GUEST_IA32_SYSENTER_ESP, 0, 0x7fff8000)), guest('guest IA32_SYSENTER_ESP canonical', S));
    expectFailure(vmcs((v) => v.set(F.GUEST_IA32_SYSENTER_EIP, 0, 0x00008000)), guest('guest IA32_SYSENTER_EIP canonical', S));
    passes(vmcs((v) => v.set(F.GUEST_IA32_SYSENTER_EIP, 0, 0xffff8000)));
  });
  it('27.3.1.1: guest IA32_PAT with memory type 3 under "load IA32_PAT"', () => {
    passes(vmcs((v) => orField(v, ENTRY, LOAD_PAT)));
    expectFailure(vmcs((v) => { orField(v, ENTRY, LOAD_PAT); v.set(F.GUEST_IA32_PAT, 0x03, 0); }), guest('guest IA32_PAT', S));
  });
  it('27.3.1.1: guest IA32_EFER under "load IA32_EFER": reserved bit, LMA, LME', () => {
    passes(vmcs((v) => orField(v, ENTRY, LOAD_EFER)));
    passes(protectedGuest((v) => orField(v, ENTRY, LOAD_EFER)));
    expectFailure(vmcs((v) => { orField(v, ENTRY, LOAD_EFER); v.set(F.GUEST_IA32_EFER, 0x1500); }),
      guest('guest IA32_EFER reserved bits', S));
    expectFailure(vmcs((v) => { orField(v, ENTRY, LOAD_EFER); v.set(F.GUEST_IA32_EFER, 0x100); }),
      guest('guest IA32_EFER.LMA', S));
    expectFailure(vmcs((v) => { orField(v, ENTRY, LOAD_EFER); v.set(F.GUEST_IA32_EFER, 0x400); }),
      guest('guest IA32_EFER.LME', S));
  });
});

describe('SDM 27.3.1.1 (guest state for controls the skylake model does not offer)', () => {
  const S = '27.3.1.1';
  const wide = (mutate: (v: Vmcs) => void, check: string, section = S) =>
    expectFailure(vmcs(mutate), guest(check, section), everything);
  it('27.3.1.1: guest CR4.CET without CR0.WP', () => {
    wide((v) => orField(v, F.GUEST_CR4, bit(23)), 'guest CR4.CET without CR0.WP');
  });
  it('27.3.1.1: guest IA32_S_CET reserved bits, S_CET and SSP-table address not canonical, under "load CET state"', () => {
    wide((v) => { orField(v, ENTRY, bit(20)); v.set(F.GUEST_IA32_S_CET, 0x80); }, 'guest IA32_S_CET reserved bits');
    wide((v) => { orField(v, ENTRY, bit(20)); v.set(F.GUEST_IA32_S_CET, 0, 0x00400000); }, 'guest IA32_S_CET canonical');
    wide((v) => { orField(v, ENTRY, bit(20)); v.set(F.GUEST_IA32_INTERRUPT_SSP_TABLE_ADDR, 0, 0x00400000); },
      'guest IA32_INTERRUPT_SSP_TABLE_ADDR canonical');
  });
  it('27.3.1.1: guest IA32_PERF_GLOBAL_CTRL with a fourth fixed counter of three', () => {
    wide((v) => { orField(v, ENTRY, bit(13)); v.set(F.GUEST_IA32_PERF_GLOBAL_CTRL, 0, 0x8); }, 'guest IA32_PERF_GLOBAL_CTRL');
  });
  it('27.3.1.1: guest IA32_BNDCFGS with bit 2 set under "load IA32_BNDCFGS"', () => {
    wide((v) => { orField(v, ENTRY, bit(16)); v.set(F.GUEST_IA32_BNDCFGS, 0x1004); }, 'guest IA32_BNDCFGS');
  });
  it('27.3.1.1: guest IA32_RTIT_CTL and IA32_LBR_CTL, all bits reserved without Intel PT and arch LBRs', () => {
    wide((v) => { orField(v, ENTRY, bit(18)); v.set(F.GUEST_IA32_RTIT_CTL, 1); }, 'guest IA32_RTIT_CTL');
    wide((v) => { orField(v, ENTRY, bit(21)); v.set(F.GUEST_IA32_LBR_CTL, 1); }, 'guest IA32_LBR_CTL');
  });
  it('27.3.1.1: guest IA32_PKRS bits 63:32; guest UINV bits 15:8', () => {
    wide((v) => { orField(v, ENTRY, bit(22)); v.set(F.GUEST_IA32_PKRS, 0, 2); }, 'guest IA32_PKRS');
    wide((v) => { orField(v, ENTRY, bit(19)); v.set(F.GUEST_UINV, 0x1f0); }, 'guest UINV');
  });
  it('27.3.1.4: guest SSP with bits 1:0 set under "load CET state"', () => {
    wide((v) => { orField(v, ENTRY, bit(20)); v.set(F.GUEST_SSP, 0x1002); }, 'guest SSP', '27.3.1.4');
  });
});

describe('SDM 27.3.1.2 (guest segment registers)', () => {
  const S = '27.3.1.2';
  it('27.3.1.2: TR selector with TI set', () => {
    expectFailure(vmcs((v) => v.set(sel(TR), 0x1c)), guest('guest TR selector TI', S));
  });
  it('27.3.1.2: a usable LDTR with TI set (an unusable one is not checked)', () => {
    passes(vmcs((v) => v.set(sel(LDTR), 0x2c)));
    expectFailure(vmcs((v) => { v.set(sel(LDTR), 0x2c); v.set(ar(LDTR), 0x82); v.set(limit(LDTR), 0xff); }),
      guest('guest LDTR selector TI', S));
  });
  it('27.3.1.2: SS.RPL differs from CS.RPL', () => {
    expectFailure(vmcs((v) => v.set(sel(SS), 0x13)), guest('guest SS selector RPL', S));
  });
  it('27.3.1.2: a virtual-8086 guest passes; a base other than selector × 16 fails', () => {
    passes(protectedGuest(virtual8086));
    expectFailure(protectedGuest((v) => { virtual8086(v); v.set(base(DS), 0); }), guest('guest DS base in virtual-8086 mode', S));
  });
  it('27.3.1.2: TR base not canonical', () => {
    expectFailure(vmcs((v) => v.set(base(TR), 0, 0x00008000)), guest('guest TR base canonical', S));
  });
  it('27.3.1.2: GS base not canonical', () => {
    expectFailure(vmcs((v) => v.set(base(GS), 0, 0x12340000)), guest('guest GS base canonical', S));
    passes(vmcs((v) => v.set(base(GS), 0, 0xffff8000)));
  });
  it('27.3.1.2: FS base not canonical; a usable LDTR base not canonical', () => {
    expectFailure(vmcs((v) => v.set(base(FS), 0, 0x00020000)), guest('guest FS base canonical', S));
    passes(vmcs((v) => v.set(base(LDTR), 0, 0x00020000)));
    expectFailure(vmcs((v) => { v.set(ar(LDTR), 0x82); v.set(limit(LDTR), 0xff); v.set(base(LDTR), 0, 0x00020000); }),
      guest('guest LDTR base canonical', S));
  });
  it('27.3.1.2: CS base bits 63:32 set', () => {
    expectFailure(vmcs((v) => v.set(base(CS), 0, 1)), guest('guest CS base bits 63:32', S));
  });
  it('27.3.1.2: SS base bits 63:32, checked only when SS is usable', () => {
    expectFailure(vmcs((v) => v.set(base(SS), 0, 1)), guest('guest SS base bits 63:32', S));
    passes(vmcs((v) => { v.set(base(SS), 0, 1); v.set(ar(SS), 0x10000); v.set(sel(SS), 0); }));
  });
  it('27.3.1.2: DS and ES base bits 63:32 when usable', () => {
    expectFailure(vmcs((v) => v.set(base(DS), 0, 2)), guest('guest DS base bits 63:32', S));
    expectFailure(vmcs((v) => v.set(base(ES), 0, 2)), guest('guest ES base bits 63:32', S));
  });
  it('27.3.1.2: virtual-8086 limit other than FFFFH', () => {
    expectFailure(protectedGuest((v) => { virtual8086(v); v.set(limit(ES), 0xfffff); }),
      guest('guest ES limit in virtual-8086 mode', S));
  });
  it('27.3.1.2: virtual-8086 access rights other than F3H', () => {
    expectFailure(protectedGuest((v) => { virtual8086(v); v.set(ar(GS), 0xf1); }),
      guest('guest GS access rights in virtual-8086 mode', S));
  });
  it('27.3.1.2: CS type 3 without "unrestricted guest"', () => {
    expectFailure(vmcs((v) => v.set(ar(CS), 0xa093)), guest('guest CS type', S));
  });
  it('27.3.1.2: CS type 3 (data) with "unrestricted guest" needs DPL 0', () => {
    expect(firstFailure(protectedGuest((v) => { unrestricted(v); v.set(ar(CS), 0xc093); }), everything)).toBeNull();
    expectFailure(protectedGuest((v) => { unrestricted(v); v.set(ar(CS), 0xc0f3); v.set(ar(SS), 0xc0f3); }),
      guest('guest CS DPL', S), everything);
  });
  it('27.3.1.2: SS type 11 (code)', () => {
    expectFailure(vmcs((v) => v.set(ar(SS), 0xc09b)), guest('guest SS type', S));
  });
  it('27.3.1.2: DS not accessed (type 1 clear)', () => {
    expectFailure(vmcs((v) => v.set(ar(DS), 0xc092)), guest('guest DS type', S));
  });
  it('27.3.1.2: ES an execute-only code segment', () => {
    expectFailure(vmcs((v) => v.set(ar(ES), 0xc099)), guest('guest ES type', S));
  });
  it('27.3.1.2: FS a system segment (S = 0)', () => {
    expectFailure(vmcs((v) => v.set(ar(FS), 0xc083)), guest('guest FS S bit', S));
  });
  it('27.3.1.2: non-conforming CS with DPL other than SS.DPL', () => {
    expectFailure(vmcs((v) => v.set(ar(CS), 0xa0fb)), guest('guest CS DPL', S));
  });
  it('27.3.1.2: conforming CS with DPL above SS.DPL', () => {
    passes(vmcs((v) => v.set(ar(CS), 0xa09f)));
    expectFailure(vmcs((v) => v.set(ar(CS), 0xa0ff)), guest('guest CS DPL', S));
  });
  it('27.3.1.2: SS.DPL differs from SS.RPL', () => {
    expectFailure(vmcs((v) => { v.set(ar(CS), 0xa09f); v.set(ar(SS), 0xc0f3); }), guest('guest SS DPL', S));
  });
  it('27.3.1.2: SS.DPL not 0 with CR0.PE = 0 ("unrestricted guest")', () => {
    expectFailure(protectedGuest((v) => { unrestricted(v); v.set(ar(CS), 0xc09f); v.set(ar(SS), 0xc0f3); }),
      guest('guest SS DPL', S), everything);
  });
  it('27.3.1.2: DS.DPL below the RPL of its selector', () => {
    expectFailure(vmcs((v) => v.set(sel(DS), 0x13)), guest('guest DS DPL', S));
  });
  it('27.3.1.2: GS not present', () => {
    expectFailure(vmcs((v) => v.set(ar(GS), 0xc013)), guest('guest GS P bit', S));
  });
  it('27.3.1.2: CS access-rights bits 11:8 set', () => {
    expectFailure(vmcs((v) => orField(v, ar(CS), 0x100)), guest('guest CS access rights bits 11:8', S));
  });
  it('27.3.1.2: CS with L and D/B both 1 in IA-32e mode', () => {
    expectFailure(vmcs((v) => orField(v, ar(CS), 0x4000)), guest('guest CS D/B bit', S));
  });
  it('27.3.1.2: DS limit FFFFFFFFH with G = 0', () => {
    expectFailure(vmcs((v) => v.set(ar(DS), 0x4093)), guest('guest DS G bit', S));
  });
  it('27.3.1.2: SS limit 000FFFF0H with G = 1', () => {
    expectFailure(vmcs((v) => v.set(limit(SS), 0xffff0)), guest('guest SS G bit', S));
  });
  it('27.3.1.2: SS access-rights bit 17 set', () => {
    expectFailure(vmcs((v) => orField(v, ar(SS), 0x20000)), guest('guest SS access rights bits 31:17', S));
  });
  it('27.3.1.2: unusable DS, ES, FS, GS are not checked', () => {
    passes(vmcs((v) => {
      for (const n of [DS, ES, FS, GS]) { v.set(ar(n), 0x10000); v.set(sel(n), 0); v.set(limit(n), 0xfff0); }
    }));
  });
  it('27.3.1.2: TR type 3 (busy 16-bit TSS) in IA-32e mode; allowed outside it', () => {
    expectFailure(vmcs((v) => v.set(ar(TR), 0x83)), guest('guest TR type', S));
    passes(protectedGuest((v) => v.set(ar(TR), 0x83)));
  });
  it('27.3.1.2: TR with S = 1', () => {
    expectFailure(vmcs((v) => v.set(ar(TR), 0x9b)), guest('guest TR S bit', S));
  });
  it('27.3.1.2: TR not present, with bits 11:8 or 31:17 set, or G against its limit', () => {
    expectFailure(vmcs((v) => v.set(ar(TR), 0x0b)), guest('guest TR P bit', S));
    expectFailure(vmcs((v) => v.set(ar(TR), 0x28b)), guest('guest TR access rights bits 11:8', S));
    expectFailure(vmcs((v) => v.set(ar(TR), 0x808b)), guest('guest TR G bit', S));
    expectFailure(vmcs((v) => v.set(ar(TR), 0x4008b)), guest('guest TR access rights bits 31:17', S));
  });
  it('27.3.1.2: TR unusable', () => {
    expectFailure(vmcs((v) => v.set(ar(TR), 0x1008b)), guest('guest TR unusable', S));
  });
  it('27.3.1.2: a usable LDTR of type 3, with S = 1, or not present', () => {
    expectFailure(vmcs((v) => v.set(ar(LDTR), 0x83)), guest('guest LDTR type', S));
    expectFailure(vmcs((v) => v.set(ar(LDTR), 0x92)), guest('guest LDTR S bit', S));
    expectFailure(vmcs((v) => v.set(ar(LDTR), 0x02)), guest('guest LDTR P bit', S));
  });
});

describe('SDM 27.3.1.3 (guest descriptor-table registers)', () => {
  it('27.3.1.3: GDTR or IDTR base not canonical', () => {
    expectFailure(vmcs((v) => v.set(F.GUEST_GDTR_BASE, 0, 0x00010000)), guest('guest GDTR base canonical', '27.3.1.3'));
    expectFailure(vmcs((v) => v.set(F.GUEST_IDTR_BASE, 0, 0xfffe0000)), guest('guest IDTR base canonical', '27.3.1.3'));
  });
  it('27.3.1.3: GDTR limit above FFFFH', () => {
    expectFailure(vmcs((v) => v.set(F.GUEST_GDTR_LIMIT, 0x1ffff)), guest('guest GDTR limit', '27.3.1.3'));
  });
  it('27.3.1.3: IDTR limit above FFFFH', () => {
    expectFailure(vmcs((v) => v.set(F.GUEST_IDTR_LIMIT, 0x10000)), guest('guest IDTR limit', '27.3.1.3'));
  });
});

describe('SDM 27.3.1.4 (guest RIP, RFLAGS)', () => {
  const S = '27.3.1.4';
  it('27.3.1.4: RIP above 4 GBytes outside IA-32e mode', () => {
    expectFailure(protectedGuest((v) => v.set(F.GUEST_RIP, 0x1000, 1)), guest('guest RIP bits 63:32', S));
  });
  it('27.3.1.4: RIP above 4 GBytes in compatibility mode (CS.L = 0)', () => {
    expectFailure(vmcs((v) => { v.set(ar(CS), 0xc09b); v.set(F.GUEST_RIP, 0x1000, 1); }), guest('guest RIP bits 63:32', S));
  });
  it('27.3.1.4: in 64-bit mode bits 63:48 of RIP must be identical (bit 47 may differ)', () => {
    passes(vmcs((v) => v.set(F.GUEST_RIP, 0, 0x00008000)));
    expectFailure(vmcs((v) => v.set(F.GUEST_RIP, 0, 0x00010000)), guest('guest RIP bits 63:48', S));
  });
  it('27.3.1.4: RFLAGS with reserved bit 3 set, or bit 1 clear', () => {
    expectFailure(vmcs((v) => v.set(F.GUEST_RFLAGS, 0xa)), guest('guest RFLAGS reserved bits', S));
    expectFailure(vmcs((v) => v.set(F.GUEST_RFLAGS, 0)), guest('guest RFLAGS reserved bits', S));
  });
  it('27.3.1.4: RFLAGS.VM with "IA-32e mode guest"', () => {
    expectFailure(vmcs(virtual8086), guest('guest RFLAGS.VM', S));
  });
  it('27.3.1.4: RFLAGS.IF = 0 while injecting an external interrupt', () => {
    passes(vmcs((v) => { v.set(INFO, 0x80000020 | 0); v.set(F.GUEST_RFLAGS, 0x2 | RFLAGS_IF); }));
    expectFailure(vmcs((v) => v.set(INFO, 0x80000020 | 0)), guest('guest RFLAGS.IF for an injected external interrupt', S));
  });
});

describe('SDM 27.3.1.5 (guest non-register state)', () => {
  const S = '27.3.1.5';
  const state = (activity: number, interruptibility: number, rflags = 0x2, info = 0) => vmcs((v) => {
    v.set(F.GUEST_ACTIVITY_STATE, activity); v.set(F.GUEST_INTERRUPTIBILITY_STATE, interruptibility);
    v.set(F.GUEST_RFLAGS, rflags); v.set(INFO, info);
  });
  it('27.3.1.5: activity state 4', () => {
    passes(state(1, 0));
    expectFailure(state(4, 0), guest('guest activity state', S));
  });
  it('27.3.1.5: HLT with SS.DPL 3', () => {
    const v = vmcs((w) => {
      w.set(sel(CS), 0x0b); w.set(ar(CS), 0xa0fb); w.set(sel(SS), 0x13); w.set(ar(SS), 0xc0f3); w.set(F.GUEST_ACTIVITY_STATE, 1);
    });
    expectFailure(v, guest('guest HLT state with SS.DPL not 0', S));
  });
  it('27.3.1.5: HLT with blocking by STI', () => {
    expectFailure(state(1, 1, 0x202), guest('guest activity state with STI or MOV-SS blocking', S));
  });
  it('27.3.1.5: events allowed per activity state (HLT: #DB yes, #GP no; shutdown: #MC; wait-for-SIPI: none)', () => {
    passes(state(1, 0, 0x2, 0x80000301 | 0));
    passes(state(2, 0, 0x2, 0x80000312 | 0));
    expectFailure(state(1, 0, 0x2, 0x80000b0d | 0), guest('event injection in this activity state', S));
    expectFailure(state(3, 0, 0x2, 0x80000202 | 0), guest('event injection in this activity state', S));
  });
  it('27.3.1.5: interruptibility bit 5 (reserved)', () => {
    expectFailure(state(0, 0x20), guest('guest interruptibility reserved bits', S));
  });
  it('27.3.1.5: blocking by STI and by MOV SS together', () => {
    expectFailure(state(0, 3, 0x202), guest('guest blocking by STI and MOV SS', S));
  });
  it('27.3.1.5: blocking by STI with RFLAGS.IF = 0', () => {
    passes(state(0, 1, 0x202));
    expectFailure(state(0, 1, 0x2), guest('guest blocking by STI with IF = 0', S));
  });
  it('27.3.1.5: blocking by MOV SS while injecting an external interrupt', () => {
    expectFailure(state(0, 2, 0x202, 0x80000020 | 0), guest('guest blocking for an injected external interrupt', S));
  });
  it('27.3.1.5: blocking by MOV SS while injecting an NMI', () => {
    expectFailure(state(0, 2, 0x2, 0x80000202 | 0), guest('guest MOV-SS blocking for an injected NMI', S));
  });
  it('27.3.1.5: blocking by SMI outside SMM', () => {
    expectFailure(state(0, 4), guest('guest blocking by SMI outside SMM', S));
  });
  it('27.3.1.5: blocking by STI while injecting an NMI: exit qualification 3 (this model requires bit 0 = 0)', () => {
    expectFailure(state(0, 1, 0x202, 0x80000202 | 0),
      guest('guest STI blocking for an injected NMI', S, VmEntryFailureQualification.NMI_INJECTION));
  });
  it('27.3.1.5: virtual-NMI blocking while injecting an NMI with "virtual NMIs"', () => {
    const nmi = (pin: number) => vmcs((v) => {
      orField(v, F.PIN_BASED_VM_EXECUTION_CONTROLS, pin); v.set(F.GUEST_INTERRUPTIBILITY_STATE, 8); v.set(INFO, 0x80000202 | 0);
    });
    passes(nmi(0));
    expectFailure(nmi(bit(3) | bit(5)), guest('guest virtual-NMI blocking for an injected NMI', S));
  });
  it('27.3.1.5: enclave interruption without SGX', () => {
    expectFailure(state(0, 0x10), guest('guest enclave interruption', S));
  });
  it('27.3.1.5: pending debug exceptions with reserved bit 4 or bit 32 set', () => {
    expectFailure(vmcs((v) => v.set(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0x10)),
      guest('guest pending debug exceptions reserved bits', S));
    expectFailure(vmcs((v) => v.set(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0, 1)),
      guest('guest pending debug exceptions reserved bits', S));
  });
  it('27.3.1.5: BS must follow RFLAGS.TF under blocking by STI', () => {
    const bs = (pending: number, rflags: number) => vmcs((v) => {
      v.set(F.GUEST_INTERRUPTIBILITY_STATE, 1); v.set(F.GUEST_RFLAGS, rflags); v.set(F.GUEST_PENDING_DEBUG_EXCEPTIONS, pending);
    });
    passes(bs(0x4000, 0x2 | RFLAGS_IF | RFLAGS_TF));
    passes(bs(0, 0x2 | RFLAGS_IF));
    expectFailure(bs(0, 0x2 | RFLAGS_IF | RFLAGS_TF), guest('guest pending BS', S));
    expectFailure(bs(0x4000, 0x2 | RFLAGS_IF), guest('guest pending BS', S));
  });
  it('27.3.1.5: pending RTM debug exception: bit 12 must be 1, and the processor must support RTM', () => {
    expect(expectFailure(vmcs((v) => v.set(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0x10000)), guest('guest pending RTM', S)).detail)
      .toContain('bit 12 must be 1');
    expect(expectFailure(vmcs((v) => v.set(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0x11000)), guest('guest pending RTM', S)).detail)
      .toContain('needs RTM support');
  });
  it('27.3.1.5: with "entry to SMM" (checked alone: outside SMM the control fails 27.2.1.3 first)', () => {
    const smm = (activity: number, intr: number) => vmcs((v) => {
      orField(v, ENTRY, bit(10)); v.set(F.GUEST_ACTIVITY_STATE, activity); v.set(F.GUEST_INTERRUPTIBILITY_STATE, intr);
    });
    expect(checkGuestState(cpu, smm(3, 0), everything)).toMatchObject(guest('guest wait-for-SIPI with entry to SMM', S));
    expect(checkGuestState(cpu, smm(0, 0), everything)).toMatchObject(guest('guest entry to SMM without blocking by SMI', S));
  });
  it('27.3.1.5: VMCS link pointer not 4-KByte aligned: qualification 4', () => {
    expectFailure(vmcs((v) => v.set(F.VMCS_LINK_POINTER, 0x30010, 0)),
      guest('VMCS link pointer', S, VmEntryFailureQualification.INVALID_VMCS_LINK_POINTER));
  });
  it('27.3.1.5: VMCS link pointer to a region with another revision identifier: qualification 4', () => {
    cpu.memory.write32(0x31000, caps.revision);
    cpu.memory.write32(0x32000, caps.revision + 1);
    passes(vmcs((v) => v.set(F.VMCS_LINK_POINTER, 0x31000, 0)));
    expectFailure(vmcs((v) => v.set(F.VMCS_LINK_POINTER, 0x32000, 0)),
      guest('VMCS link pointer revision', S, VmEntryFailureQualification.INVALID_VMCS_LINK_POINTER));
  });
  it('27.3.1.5: VMCS link pointer equal to the current-VMCS pointer: qualification 4', () => {
    cpu.memory.write32(0x33000, caps.revision);
    expectFailure(vmcs((v) => v.set(F.VMCS_LINK_POINTER, 0x33000, 0), { address: 0x33000 }),
      guest('VMCS link pointer is the current VMCS', S, VmEntryFailureQualification.INVALID_VMCS_LINK_POINTER));
  });
});

describe('SDM 27.3.1 (order of the checks)', () => {
  it('27.3.1.1 before 27.3.1.4: guest CR0 is reported before RFLAGS', () => {
    expectFailure(vmcs((v) => { clearField(v, F.GUEST_CR0, CR0_NE); v.set(F.GUEST_RFLAGS, 0); }),
      guest('guest CR0 fixed bits', '27.3.1.1'));
  });
  it('27.3.1.2 before 27.3.1.5: a TR selector with TI before a bad activity state', () => {
    expectFailure(vmcs((v) => { v.set(sel(TR), 0x1c); v.set(F.GUEST_ACTIVITY_STATE, 9); }),
      guest('guest TR selector TI', '27.3.1.2'));
  });
  it('27.3.1.2: access rights are checked rule by rule, not register by register: GS type before DS present', () => {
    expectFailure(vmcs((v) => { v.set(ar(DS), 0xc013); v.set(ar(GS), 0xc092); }), guest('guest GS type', '27.3.1.2'));
  });
  it('27.3.1.5: the link pointer (qualification 4) comes after the pending debug exceptions (qualification 0)', () => {
    expectFailure(vmcs((v) => { v.set(F.VMCS_LINK_POINTER, 1, 0); v.set(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0x20); }),
      guest('guest pending debug exceptions reserved bits', '27.3.1.5'));
  });
});
