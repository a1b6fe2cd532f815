import { describe, expect, it } from 'vitest';
import { Cpu } from './cpu.js';
import { hasFeature } from './cpuid.js';
import type { MsrHandler } from './msr.js';
import { SKYLAKE } from './profile.js';
import { runFragment, type FragmentResult } from './testing.js';
import { FS, GS, RAX, RCX, RDX } from './regs.js';

const WRMSR = [0x0f, 0x30], RDMSR = [0x0f, 0x32], RDTSC = [0x0f, 0x31], NOP = [0x90], CPUID = [0x0f, 0xa2];
const GP0 = { kind: 'exception', vector: 13, errorCode: 0 };
const HALT = { kind: 'halt' };

interface Op { code: number[]; ecx: number; value?: bigint; setup?: (c: Cpu) => void; mode?: 64 | 32 }

/** Runs `code` with ECX = the MSR and EDX:EAX = value (upper halves of RAX/RDX set to garbage). */
function msr({ code, ecx, value = 0n, setup, mode }: Op): FragmentResult {
  return runFragment(code, {
    mode,
    setup: (c) => {
      c.setReg64(RCX, 0xdead_0000_0000_0000n | BigInt(ecx >>> 0));
      c.setReg64(RAX, 0xdead_0000_0000_0000n | (value & 0xffff_ffffn));
      c.setReg64(RDX, 0xdead_0000_0000_0000n | ((value >> 32n) & 0xffff_ffffn));
      setup?.(c);
    },
  });
}

/** EDX:EAX after the run. */
function edxEax(cpu: Cpu): bigint {
  return (cpu.reg64(RDX) << 32n) | cpu.reg64(RAX);
}

const read = (ecx: number, setup?: (c: Cpu) => void, mode?: 64 | 32): FragmentResult => msr({ code: RDMSR, ecx, setup, mode });
const write = (ecx: number, value: bigint, setup?: (c: Cpu) => void, mode?: 64 | 32): FragmentResult =>
  msr({ code: WRMSR, ecx, value, setup, mode });
/** WRMSR then RDMSR of the same MSR: returns the value read back. */
function roundTrip(ecx: number, value: bigint, setup?: (c: Cpu) => void): bigint {
  const r = msr({ code: [...WRMSR, ...RDMSR], ecx, value, setup });
  expect(r.stop, `MSR 0x${ecx.toString(16)} ← 0x${value.toString(16)}`).toEqual(HALT);
  return edxEax(r.cpu);
}

describe('RDMSR/WRMSR (SDM vol. 2, RDMSR, WRMSR)', () => {
  it('RDMSR loads EDX:EAX and clears bits 63:32 of RAX and RDX', () => {
    const { cpu, stop } = read(0x277);
    expect(stop).toEqual(HALT);
    expect(cpu.reg64(RAX)).toBe(0x00070406n);
    expect(cpu.reg64(RDX)).toBe(0x00070406n);
  });

  it('CPL > 0 raises #GP(0) for both, before anything changes', () => {
    for (const code of [RDMSR, WRMSR]) {
      const r = msr({ code, ecx: 0xc0000081, value: 5n, setup: (c) => { c.cpl = 3; } });
      expect(r.stop).toEqual(GP0);
      expect(r.cpu.msrs.starLo).toBe(0);
    }
  });

  it('an MSR that does not exist raises #GP(0) (SDM vol. 2, RDMSR: "reserved or unimplemented")', () => {
    for (const n of [0x5, 0x1234, 0xc0000105, 0x40000000, 0x10a, 0x1b, 0x6e0, 0x802, 0x345]) {
      expect(read(n).stop, `0x${n.toString(16)}`).toEqual(GP0);
      expect(write(n, 0n).stop, `0x${n.toString(16)}`).toEqual(GP0);
    }
  });

  it('only ECX selects the MSR: bits 63:32 of RCX are ignored', () => {
    const { cpu } = read(0xc0000080, (c) => { c.setReg64(RCX, 0xffff_ffff_c000_0080n); });
    expect(cpu.reg64(RAX)).toBe(0x501n); // SCE | LME | LMA of flat 64-bit mode
  });

  it('a read-only MSR raises #GP(0) on WRMSR', () => {
    for (const n of [0xfe, 0x17, 0x179, 0x38e]) expect(write(n, 0n).stop, `0x${n.toString(16)}`).toEqual(GP0);
  });

  it('every MSR that exists accepts the value it reads (read-only ones excepted)', () => {
    const sep = hasFeature(new Cpu(), 'sep') ? [0x174, 0x175, 0x176] : [];
    const list = [...sep, 0x10, 0x3a, 0x3b, 0x48, 0x8b, 0xc1, 0xc2, 0xc3, 0xc4, 0x17a, 0x186, 0x189,
      0x1a0, 0x1d9, 0x200, 0x213, 0xda0, 0x250, 0x258, 0x259, 0x268, 0x26f, 0x277, 0x2ff, 0x309, 0x30b, 0x38d, 0x38f, 0x390,
      0xc0000080, 0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, 0xc0000100, 0xc0000101, 0xc0000102, 0xc0000103];
    for (const n of list) {
      // rdmsr; wrmsr; rdmsr — the TSC moves on between the reads, everything else reads the same.
      const r = msr({ code: [...RDMSR, ...WRMSR, ...RDMSR], ecx: n });
      expect(r.stop, `0x${n.toString(16)}`).toEqual(HALT);
    }
  });
});

describe('IA32_EFER (SDM vol. 3A, 2.2.1 "Extended Feature Enable Register"; 10.8.5)', () => {
  it('SCE and NXE are read/write; LMA reads as the processor set it', () => {
    expect(roundTrip(0xc0000080, 0x900n)).toBe(0xd00n); // LME|NXE written; LMA (bit 10) stays 1
    expect(roundTrip(0xc0000080, 0x100n)).toBe(0x500n); // SCE cleared
  });

  it('LMA is read-only: writing 0 there is ignored', () => {
    const { cpu } = msr({ code: WRMSR, ecx: 0xc0000080, value: 0x101n });
    expect(cpu.efer).toBe(0x501);
    expect(cpu.codeSize).toBe(8);
  });

  it('reserved bits raise #GP(0): bits 1-7, 9, 12-63 (FFXSR and TCE are AMD only)', () => {
    for (const v of [0x502n, 0x580n, 0x700n, 0x1500n, 0x4500n, 0x8500n, 0x1_0000_0500n]) {
      expect(write(0xc0000080, v).stop, v.toString(16)).toEqual(GP0);
    }
  });

  it('changing LME while CR0.PG = 1 raises #GP(0)', () => {
    const r = write(0xc0000080, 0x401n); // flat 64-bit mode has PG = 1; clear LME
    expect(r.stop).toEqual(GP0);
    expect(r.cpu.efer).toBe(0x501);
  });

  it('with paging off, LME can be set (LMA stays 0 until CR0.PG is set)', () => {
    const { cpu, stop } = write(0xc0000080, 0x100n, undefined, 32);
    expect(stop).toEqual(HALT);
    expect(cpu.efer).toBe(0x100);
    expect(cpu.codeSize).toBe(4);
  });

  it('IA32_MISC_ENABLE.XD_DISABLE makes NXE reserved (SDM vol. 4, 1A0H bit 34)', () => {
    const r = write(0xc0000080, 0xd01n, (c) => { c.msrs.miscEnableHi = 1 << 2; });
    expect(r.stop).toEqual(GP0);
  });
});

describe('SYSCALL/SYSENTER MSRs (SDM vol. 3A, 5.8.7, 5.8.8; vol. 2, WRMSR)', () => {
  it('STAR, LSTAR, CSTAR, FMASK, KERNEL_GS_BASE and SYSENTER_* land in the fields SYSCALL/SWAPGS/SYSENTER read', () => {
    const cases: [number, bigint, (c: Cpu) => [number, number]][] = [
      [0xc0000081, 0x0023_0010_dead_beefn, (c) => [c.msrs.starLo, c.msrs.starHi]],
      [0xc0000082, 0xffff_ffff_8100_0000n, (c) => [c.msrs.lstarLo, c.msrs.lstarHi]],
      [0xc0000083, 0x1234_5678_9abc_def0n, (c) => [c.msrs.cstarLo, c.msrs.cstarHi]],
      [0xc0000084, 0x0004_7700n, (c) => [c.msrs.fmask, 0]],
      [0xc0000102, 0xffff_8880_0000_1000n, (c) => [c.msrs.kernelGsBaseLo, c.msrs.kernelGsBaseHi]],
    ];
    // The SYSENTER MSRs exist when CPUID announces SEP, i.e. once SYSENTER is in the opcode table.
    if (hasFeature(new Cpu(), 'sep')) {
      cases.push(
        [0x174, 0x10n, (c) => [c.msrs.sysenterCsLo, c.msrs.sysenterCsHi]],
        [0x175, 0xffff_8000_0000_2000n, (c) => [c.msrs.sysenterEspLo, c.msrs.sysenterEspHi]],
        [0x176, 0x0000_7fff_ffff_f000n, (c) => [c.msrs.sysenterEipLo, c.msrs.sysenterEipHi]]);
    } else {
      for (const n of [0x174, 0x175, 0x176]) expect(read(n).stop).toEqual(GP0);
    }
    for (const [n, v, field] of cases) {
      expect(roundTrip(n, v)).toBe(v);
      const { cpu } = write(n, v);
      const [lo, hi] = field(cpu);
      expect((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0), `0x${n.toString(16)}`).toBe(v);
    }
  });

  it('a non-canonical LSTAR, KERNEL_GS_BASE, SYSENTER_ESP/EIP raises #GP(0); CSTAR is not checked', () => {
    for (const n of [0xc0000082, 0xc0000102, 0x175, 0x176]) expect(write(n, 0x0000_8000_0000_0000n).stop).toEqual(GP0);
    if (hasFeature(new Cpu(), 'sep')) expect(write(0x175, 0x0000_7fff_0000_0000n).stop).toEqual(HALT);
    expect(write(0xc0000083, 0x0000_8000_0000_0000n).stop).toEqual(HALT);
  });

  it('IA32_FMASK bits 63:32 are reserved', () => {
    expect(write(0xc0000084, 0x1_0000_0000n).stop).toEqual(GP0);
  });
});

describe('IA32_FS_BASE, IA32_GS_BASE (SDM vol. 3A, 3.4.4)', () => {
  it('write the FS and GS bases, which FS:/GS: addressing then uses', () => {
    // wrmsr (FS_BASE ← 0x20000); mov eax, fs:[0x10]
    const { cpu, stop } = msr({
      code: [...WRMSR, 0x64, 0x8b, 0x04, 0x25, 0x10, 0, 0, 0], ecx: 0xc0000100, value: 0x20000n,
      setup: (c) => c.memory.load(0x20010, new Uint8Array([0x78, 0x56, 0x34, 0x12])),
    });
    expect(stop).toEqual(HALT);
    expect(cpu.segBase[2 * FS]).toBe(0x20000);
    expect(cpu.reg64(RAX)).toBe(0x12345678n);
    const gs = write(0xc0000101, 0xffff_8000_0000_0000n);
    expect([gs.cpu.segBase[2 * GS], gs.cpu.segBase[2 * GS + 1]]).toEqual([0, 0xffff8000 | 0]);
    expect(roundTrip(0xc0000101, 0xffff_8000_0000_0000n)).toBe(0xffff_8000_0000_0000n);
  });

  it('a non-canonical base raises #GP(0) and leaves the base unchanged', () => {
    const r = write(0xc0000100, 0x0001_0000_0000_0000n);
    expect(r.stop).toEqual(GP0);
    expect([r.cpu.segBase[2 * FS], r.cpu.segBase[2 * FS + 1]]).toEqual([0, 0]);
  });
});

describe('time-stamp counter MSRs (SDM vol. 3B, 18.17)', () => {
  it('writing IA32_TIME_STAMP_COUNTER makes the next RDTSC read the value, then it advances', () => {
    const a = msr({ code: [...WRMSR, ...RDTSC], ecx: 0x10, value: 0x1_0000_1000n });
    expect(edxEax(a.cpu)).toBe(0x1_0000_1000n);
    const b = msr({ code: [...WRMSR, ...NOP, ...NOP, ...RDTSC], ecx: 0x10, value: 1000n });
    expect(edxEax(b.cpu)).toBe(1002n);
    const c = msr({ code: [...WRMSR, ...RDMSR], ecx: 0x10, value: 0xffff_ffff_ffff_fff0n });
    expect(edxEax(c.cpu)).toBe(0xffff_ffff_ffff_fff0n);
  });

  it('a TSC write moves IA32_TSC_ADJUST by the same amount (18.17.3)', () => {
    // At the first instruction's retirement the TSC would read 1; writing 1000 adds 999.
    const { cpu } = msr({ code: [...WRMSR, 0xb9, 0x3b, 0, 0, 0, ...RDMSR], ecx: 0x10, value: 1000n });
    expect(edxEax(cpu)).toBe(999n);
  });

  it('writing IA32_TSC_ADJUST adds the difference to the TSC', () => {
    // wrmsr (TSC_ADJUST ← 500); rdtsc: 1 instruction retired before, plus 500
    const { cpu } = msr({ code: [...WRMSR, ...RDTSC], ecx: 0x3b, value: 500n });
    expect(edxEax(cpu)).toBe(501n);
    expect(roundTrip(0x3b, 0xffff_ffff_ffff_ff00n)).toBe(0xffff_ffff_ffff_ff00n); // -256
  });

  it('IA32_TSC_AUX holds 32 bits; RDTSCP returns them in ECX; bits 63:32 are reserved', () => {
    const { cpu } = msr({ code: [...WRMSR, 0x0f, 0x01, 0xf9], ecx: 0xc0000103, value: 0x8000_0003n });
    expect(cpu.reg64(RCX)).toBe(0x8000_0003n);
    expect(write(0xc0000103, 0x1_0000_0000n).stop).toEqual(GP0);
  });
});

describe('IA32_PAT (SDM vol. 3A, 13.12.2)', () => {
  it('resets to 0007040600070406H and takes the types UC, WC, WT, WP, WB, UC-', () => {
    expect(edxEax(read(0x277).cpu)).toBe(0x0007_0406_0007_0406n);
    expect(roundTrip(0x277, 0x0706_0504_0100_0607n)).toBe(0x0706_0504_0100_0607n);
  });

  it('a reserved type (2, 3, 8-255) in any entry raises #GP(0)', () => {
    for (const v of [0x0007_0406_0007_0402n, 0x0307_0406_0007_0406n, 0x0007_0406_0008_0406n, 0x8007_0406_0007_0406n]) {
      expect(write(0x277, v).stop, v.toString(16)).toEqual(GP0);
    }
  });
});

describe('MTRRs (SDM vol. 3A, 13.11.2)', () => {
  it('IA32_MTRRCAP: 10 variable ranges, fixed ranges, WC, no SMRR', () => {
    expect(edxEax(read(0xfe).cpu)).toBe(0x50an);
  });

  it('IA32_MTRR_DEF_TYPE keeps type, FE and E; reserved bits and types raise #GP(0)', () => {
    expect(roundTrip(0x2ff, 0xc06n)).toBe(0xc06n);
    for (const v of [0x100n, 0x1000n, 0xc02n, 0xc07n, 0x1_0000_0006n]) expect(write(0x2ff, v).stop, v.toString(16)).toEqual(GP0);
  });

  it('variable ranges exist as many as MTRRCAP.VCNT says; reserved bits of base and mask raise #GP(0)', () => {
    expect(roundTrip(0x200, 0x7f_8000_0006n)).toBe(0x7f_8000_0006n); // base below 2^39, WB
    expect(roundTrip(0x213, 0x7f_ffff_f800n)).toBe(0x7f_ffff_f800n); // PHYSMASK9: valid, mask
    expect(read(0x214).stop).toEqual(GP0); // PHYSBASE10 does not exist
    expect(write(0x200, 0x80_0000_0006n).stop).toEqual(GP0); // bit 39 >= MAXPHYADDR
    expect(write(0x200, 0x106n).stop).toEqual(GP0); // bits 11:8
    expect(write(0x200, 0x2n).stop).toEqual(GP0); // type 2
    expect(write(0x201, 0x400n).stop).toEqual(GP0); // PHYSMASK bits 10:0
  });

  it('fixed-range MTRRs hold eight valid types each', () => {
    for (const n of [0x250, 0x258, 0x259, 0x268, 0x26f]) {
      expect(roundTrip(n, 0x0605_0401_0006_0504n)).toBe(0x0605_0401_0006_0504n);
      expect(write(n, 0x0605_0401_0006_0507n).stop).toEqual(GP0);
    }
    expect(read(0x260).stop).toEqual(GP0);
  });
});

describe('IA32_FEATURE_CONTROL (SDM vol. 4, 3AH; vol. 3C, 24.7)', () => {
  it('resets unlocked with VMX off; once the lock bit is set every write raises #GP(0)', () => {
    expect(edxEax(read(0x3a).cpu)).toBe(0n);
    const { cpu, stop } = msr({ code: [...WRMSR, ...WRMSR], ecx: 0x3a, value: 1n });
    expect(stop).toEqual(GP0);
    expect(cpu.msrs.featureControl).toBe(1);
  });

  it('the VMX enables raise #GP(0) while CPUID does not announce VMX', () => {
    expect(write(0x3a, 4n).stop).toEqual(GP0);
    expect(write(0x3a, 2n).stop).toEqual(GP0);
    expect(write(0x3a, 0x100n).stop).toEqual(GP0);
  });
});

describe('identification and miscellaneous MSRs (SDM vol. 4, table 2-2)', () => {
  it('IA32_PLATFORM_ID reports platform 1 in bits 52:50', () => {
    expect(edxEax(read(0x17).cpu)).toBe(1n << 50n);
  });

  it('IA32_BIOS_SIGN_ID: write 0, CPUID leaf 1, read the microcode revision (SDM vol. 3A, 10.11.7.1)', () => {
    const { cpu } = msr({
      code: [...WRMSR, 0xb8, 1, 0, 0, 0, ...CPUID, 0xb9, 0x8b, 0, 0, 0, ...RDMSR], ecx: 0x8b,
    });
    expect(edxEax(cpu)).toBe(0xf0n << 32n);
    expect(write(0x8b, 1n).stop).toEqual(GP0);
  });

  it('IA32_MISC_ENABLE: fast strings, perfmon available and ENABLE MONITOR FSM at reset; read-only bits keep their values', () => {
    expect(edxEax(read(0x1a0).cpu)).toBe(0x4_1881n);
    expect(roundTrip(0x1a0, 0x4_0044_0000n)).toBe(0x4_0044_1880n); // limit CPUID, MONITOR, XD disable
    expect(write(0x1a0, 0x8n).stop).toEqual(GP0); // bit 3 (TCC): no thermal monitor
  });

  it('IA32_MISC_ENABLE[18] (ENABLE MONITOR FSM) is R/W where CPUID announces MONITOR; 0 hides CPUID.01H:ECX[3] (SDM vol. 4, 1A0H)', () => {
    // wrmsr (bit 18 clear); mov eax, 1; cpuid
    const off = msr({ code: [...WRMSR, 0xb8, 1, 0, 0, 0, ...CPUID], ecx: 0x1a0, value: 0n });
    expect(off.stop).toEqual(HALT);
    expect(off.cpu.msrs.miscEnableLo & (1 << 18)).toBe(0);
    expect((off.cpu.reg64(RCX) >> 3n) & 1n).toBe(0n);
    expect((msr({ code: [0xb8, 1, 0, 0, 0, ...CPUID], ecx: 0 }).cpu.reg64(RCX) >> 3n) & 1n).toBe(1n);
    // A profile without MONITOR: the bit reads 0 and writing it raises #GP(0).
    const cpu = new Cpu({ memorySize: 1 << 20, profile: { ...SKYLAKE, features: SKYLAKE.features.filter((f) => f !== 'monitor') } });
    expect(cpu.msrs.read(cpu, 0x1a0)).toBe(0x1881);
    expect(() => cpu.msrs.write(cpu, 0x1a0, 0x4_1881, 0)).toThrow();
    expect([cpu.excVector, cpu.excCode]).toEqual([13, 0]);
  });

  it('IA32_XSS exists with XSAVES (CPUID.(EAX=0DH,ECX=1):EAX[3]); it reads 0 and every bit is reserved (SDM vol. 4, DA0H)', () => {
    expect(edxEax(read(0xda0).cpu)).toBe(0n);
    expect(roundTrip(0xda0, 0n)).toBe(0n);
    for (const v of [1n, 0x100n, 0x1_0000_0000n]) expect(write(0xda0, v).stop).toEqual(GP0);
  });

  it('IA32_MCG_CAP reports no banks; IA32_MCG_STATUS keeps RIPV, EIPV, MCIP', () => {
    expect(edxEax(read(0x179).cpu)).toBe(0n);
    expect(roundTrip(0x17a, 7n)).toBe(7n);
    expect(write(0x17a, 8n).stop).toEqual(GP0);
  });

  it('IA32_DEBUGCTL keeps LBR, BTF and the freeze bits; TR/BTS and reserved bits raise #GP(0)', () => {
    expect(roundTrip(0x1d9, 0x1803n)).toBe(0x1803n);
    for (const v of [0x40n, 0x80n, 0x4n, 0x1_0000_0000n]) expect(write(0x1d9, v).stop).toEqual(GP0);
  });

  it('speculation controls exist as CPUID leaf 7 EDX announces them (IBRS, STIBP, SSBD; IBPB, L1D flush)', () => {
    expect(roundTrip(0x48, 7n)).toBe(7n);
    expect(write(0x48, 8n).stop).toEqual(GP0);
    expect(write(0x49, 1n).stop).toEqual(HALT);
    expect(read(0x49).stop).toEqual(GP0); // IA32_PRED_CMD is write-only
    expect(write(0x10b, 1n).stop).toEqual(HALT);
    expect(write(0x10b, 2n).stop).toEqual(GP0);
    expect(read(0x10a).stop).toEqual(GP0); // IA32_ARCH_CAPABILITIES is not announced
  });
});

describe('architectural performance monitoring, version 2 (SDM vol. 3B, 20.2)', () => {
  it('a write to IA32_PMCx sets bits 31:0 and sign-extends bit 31 to the 48-bit width', () => {
    expect(roundTrip(0xc1, 0xabcdn)).toBe(0xabcdn);
    expect(roundTrip(0xc4, 0x1234_8000_0000n)).toBe(0xffff_8000_0000n);
    expect(read(0xc5).stop).toEqual(GP0); // four counters
  });

  it('event selects: bits 63:32 and AnyThread (21) are reserved in version 2', () => {
    expect(roundTrip(0x186, 0x43_003cn)).toBe(0x43_003cn);
    expect(write(0x187, 0x20_0000n).stop).toEqual(GP0);
    expect(write(0x187, 0x1_0000_0000n).stop).toEqual(GP0);
  });

  it('fixed counters are 48 bits wide; IA32_FIXED_CTR_CTRL has EN and PMI per counter', () => {
    expect(roundTrip(0x30b, 0xffff_ffff_ffffn)).toBe(0xffff_ffff_ffffn);
    expect(write(0x309, 0x1_0000_0000_0000n).stop).toEqual(GP0);
    expect(read(0x30c).stop).toEqual(GP0);
    expect(roundTrip(0x38d, 0xbbbn)).toBe(0xbbbn);
    expect(write(0x38d, 0x4n).stop).toEqual(GP0);
  });

  it('global control enables counters 0-3 and fixed 0-2; global status reads 0 and is read-only', () => {
    expect(roundTrip(0x38f, 0x7_0000_000fn)).toBe(0x7_0000_000fn);
    expect(write(0x38f, 0x10n).stop).toEqual(GP0);
    expect(edxEax(read(0x38e).cpu)).toBe(0n);
    expect(roundTrip(0x390, 0xc000_0007_0000_000fn)).toBe(0xc000_0007_0000_000fn);
  });

  it('counters hold what was written: they do not count events', () => {
    const { cpu } = msr({ code: [...WRMSR, ...NOP, ...NOP, ...RDMSR], ecx: 0xc1, value: 5n,
      setup: (c) => { c.msrs.perfEvtSel[0] = 0x43_00c0; c.msrs.perfGlobalCtrlLo = 1; } });
    expect(edxEax(cpu)).toBe(5n);
  });
});

describe('MSR handlers of other units', () => {
  /** A stand-in for the local APIC: IA32_APIC_BASE only. */
  function fakeApic(): MsrHandler & { written: bigint[] } {
    return {
      msrLo: 0, msrHi: 0, written: [],
      rdmsr(n) { if (n !== 0x1b) return false; this.msrLo = 0xfee00900; this.msrHi = 0; return true; },
      wrmsr(n, lo, hi) { if ((lo & 0xff) !== 0) return false; this.written.push(BigInt(n) << 64n | BigInt(hi) << 32n | BigInt(lo)); return true; },
    };
  }

  it('an attached handler answers RDMSR/WRMSR; its refusal raises #GP(0)', () => {
    const apic = fakeApic();
    const { cpu, stop } = msr({ code: [...WRMSR, ...RDMSR], ecx: 0x1b, value: 0xfee00800n, setup: (c) => c.msrs.attach(0x1b, 0x1b, apic) });
    expect(stop).toEqual(HALT);
    expect(apic.written).toEqual([(0x1bn << 64n) | 0xfee00800n]);
    expect(edxEax(cpu)).toBe(0xfee00900n);
    expect(write(0x1b, 1n, (c) => c.msrs.attach(0x1b, 0x1b, fakeApic())).stop).toEqual(GP0);
  });

  it('a range is attached MSR by MSR', () => {
    const h = fakeApic();
    const r = read(0x1b, (c) => c.msrs.attach(0x10, 0x1b, h));
    expect(r.cpu.msrs.handlerOf(0x10)).toBe(h);
    expect(r.cpu.msrs.handlerOf(0x1c)).toBeUndefined();
    expect(read(0x10, (c) => c.msrs.attach(0x10, 0x1b, h)).stop).toEqual(GP0); // the handler refuses 10H
  });
});

describe('reset (SDM vol. 3A, 10.1.1, table 10-1)', () => {
  it('puts back the power-up values: PAT, MISC_ENABLE, an unlocked FEATURE_CONTROL, XCR0 = 1, FCW 0040H', () => {
    const { cpu } = msr({ code: [...WRMSR], ecx: 0x277, value: 0n, setup: (c) => { c.msrs.featureControl = 1; c.msrs.xcr0 = 3; c.msrs.x87.fcw = 0x37f; c.msrs.mtrrVariable[3] = 5; } });
    expect(cpu.msrs.patLo).toBe(0);
    cpu.msrs.reset();
    expect([cpu.msrs.patLo, cpu.msrs.patHi, cpu.msrs.miscEnableLo, cpu.msrs.featureControl, cpu.msrs.xcr0, cpu.msrs.x87.fcw, cpu.msrs.x87.ftw, cpu.msrs.mtrrVariable[3]])
      .toEqual([0x00070406, 0x00070406, 0x41881, 0, 1, 0x0040, 0xff, 0]);
  });
});
