import { describe, expect, it } from 'vitest';
import { Cpu } from '../cpu.js';
import type { CpuFeature } from '../profile.js';
import { RAX, RBX, RCX, RSI } from '../regs.js';
import { DATA_ADDRESS, runFragment, skylakeWith } from '../testing.js';
import { cr4Supported } from '../cpuid.js';
import { CR0_TS, CR4_FSGSBASE } from './control-registers.js';
import { CR0_PG, CR4_LA57, CR4_PAE, CR4_PCIDE, CR4_SMAP } from '../paging.js';
import { AC } from '../regs.js';
import { Tables64 } from '../../../spec-tests/paging/tables.js';

const GP = { kind: 'exception', vector: 13, errorCode: 0 } as const;
const UD = { kind: 'exception', vector: 6, errorCode: null } as const;
const HALT = { kind: 'halt' } as const;
const EFER_LME = 1 << 8, EFER_LMA = 1 << 10;

const le32 = (v: number): number[] => [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >>> 24];
const MOV_RAX_CR0 = [0x0f, 0x20, 0xc0], MOV_CR0_RAX = [0x0f, 0x22, 0xc0];
const MOV_RAX_CR3 = [0x0f, 0x20, 0xd8], MOV_CR3_RAX = [0x0f, 0x22, 0xd8];
const MOV_RAX_CR4 = [0x0f, 0x20, 0xe0], MOV_CR4_RAX = [0x0f, 0x22, 0xe0];
const MOV_CR8_RAX = [0x44, 0x0f, 0x22, 0xc0], MOV_RAX_CR8 = [0x44, 0x0f, 0x20, 0xc0];
const movEax = (v: number): number[] => [0xb8, ...le32(v)];
const orEax = (v: number): number[] => [0x0d, ...le32(v)];
const andEax = (v: number): number[] => [0x25, ...le32(v)];

const r64 = (cpu: Cpu, r: number): bigint => cpu.reg64(r);

describe('MOV from control registers (SDM vol. 2, MOV—Move to/from Control Registers)', () => {
  it('reads CR0, CR2, CR3, CR4 as 64-bit values in 64-bit mode without REX.W', () => {
    const { cpu, stop } = runFragment([...MOV_RAX_CR0, 0x0f, 0x20, 0xd1, 0x0f, 0x20, 0xdb], {
      setup: (c) => { c.cr2Lo = 0x1234_5678; c.cr2Hi = 0x7fff; c.setReg64(RBX, -1n & 0xffff_ffff_ffff_ffffn); },
    });
    expect(stop).toEqual(HALT);
    expect(r64(cpu, RAX)).toBe(BigInt(cpu.cr0 >>> 0));
    expect(r64(cpu, RCX)).toBe(0x7fff_1234_5678n);
    expect(r64(cpu, RBX)).toBe(BigInt(cpu.cr3Lo >>> 0));
  });

  it('outside 64-bit mode the operand is 32 bits', () => {
    const { cpu, stop } = runFragment(MOV_RAX_CR4, { mode: 32, setup: (c) => { c.cr4 = 0x200; } });
    expect(stop).toEqual(HALT);
    expect(cpu.gpr[2 * RAX]).toBe(0x200);
  });

  it('CR1, CR5-CR7 and CR9-CR15 (CR10, CR12 here) are #UD, before the privilege check; LOCK is #UD', () => {
    for (const code of [[0x0f, 0x20, 0xc8], [0x0f, 0x22, 0xe8], [0x0f, 0x20, 0xf8], [0x44, 0x0f, 0x20, 0xc8],
      [0x44, 0x0f, 0x22, 0xf8], [0x44, 0x0f, 0x20, 0xd0], [0x44, 0x0f, 0x22, 0xe0],
      [0xf0, 0x0f, 0x20, 0xc0], [0xf0, 0x0f, 0x22, 0xc0]]) {
      expect(runFragment(code).stop).toEqual(UD);
      expect(runFragment(code, { setup: (c) => { c.cpl = 3; } }).stop).toEqual(UD);
    }
  });

  it('CPL > 0 is #GP(0) for reads and writes', () => {
    for (const code of [MOV_RAX_CR0, MOV_CR3_RAX, MOV_RAX_CR8]) {
      expect(runFragment(code, { setup: (c) => { c.cpl = 1; } }).stop).toEqual(GP);
    }
  });
});

describe('MOV to CR0 (SDM vol. 2, MOV CR; vol. 3A, 2.5)', () => {
  it('bits 63:32 are reserved: #GP(0)', () => {
    const { cpu, stop } = runFragment([...MOV_RAX_CR0, 0x48, 0x0f, 0xba, 0xe8, 0x20, ...MOV_CR0_RAX]); // bts rax, 32
    expect(stop).toEqual(GP);
    expect(cpu.cr0 & CR0_PG).not.toBe(0);
  });

  it('other reserved bits are ignored and ET stays 1', () => {
    const { cpu, stop } = runFragment([...MOV_RAX_CR0, ...andEax(~0x10), ...orEax(0x400), ...MOV_CR0_RAX], { mode: 32 });
    expect(stop).toEqual(HALT);
    expect(cpu.cr0 & 0x410).toBe(0x10);
  });

  it('PG = 1 with PE = 0, and NW = 1 with CD = 0, are #GP(0)', () => {
    expect(runFragment([...movEax(0x8000_0010 | 0), ...MOV_CR0_RAX], { mode: 32 }).stop).toEqual(GP);
    expect(runFragment([...movEax(0x2000_0011), ...MOV_CR0_RAX], { mode: 32 }).stop).toEqual(GP);
    expect(runFragment([...movEax(0x6000_0011), ...MOV_CR0_RAX], { mode: 32 }).stop).toEqual(HALT);
  });

  it('CLTS clears CR0.TS; it is #GP(0) at CPL > 0 (SDM vol. 2, CLTS)', () => {
    const { cpu, stop } = runFragment([0x0f, 0x06], { setup: (c) => { c.cr0 |= CR0_TS; } });
    expect(stop).toEqual(HALT);
    expect(cpu.cr0 & CR0_TS).toBe(0);
    expect(runFragment([0x0f, 0x06], { setup: (c) => { c.cpl = 3; } }).stop).toEqual(GP);
  });

  it('LMSW loads PE, MP, EM and TS but cannot clear PE (SDM vol. 2, LMSW)', () => {
    // lmsw ax with AX = 0xfffe: MP, EM, TS set; PE stays 1; nothing else changes.
    const { cpu, stop } = runFragment([0x66, 0xb8, 0xfe, 0xff, 0x0f, 0x01, 0xf0], { mode: 32 });
    expect(stop).toEqual(HALT);
    expect(cpu.cr0 & 0xffff).toBe(0x1f);
    // Memory form: 16 bits at [ebx].
    const m = runFragment([0x0f, 0x01, 0x33], { mode: 32, setup: (c) => { c.gpr[2 * RBX] = 0x9000; c.memory.write8(0x9000, 0x8); } });
    expect(m.stop).toEqual(HALT);
    expect(m.cpu.cr0 & 0xf).toBe(0x9);
    expect(runFragment([0x0f, 0x01, 0xf0], { setup: (c) => { c.cpl = 3; } }).stop).toEqual(GP);
  });

  it('SMSW stores CR0: the register form at the operand size, the memory form as 16 bits, at any CPL', () => {
    const { cpu, stop } = runFragment([0x0f, 0x01, 0xe0, 0x66, 0x0f, 0x01, 0xe1, 0x48, 0x0f, 0x01, 0xe2, 0x0f, 0x01, 0x23], {
      setup: (c) => {
        c.setReg64(RAX, 0x1111_2222_3333_4444n); c.setReg64(RCX, 0x1111_2222_3333_4444n);
        c.setReg64(2, 0x1111_2222_3333_4444n); c.gpr[2 * RBX] = 0x9000;
        for (let k = 0; k < 4; k++) c.memory.write8(0x9000 + k, 0xaa);
      },
    });
    expect(stop).toEqual(HALT);
    const cr0 = BigInt(cpu.cr0 >>> 0);
    expect(r64(cpu, RAX)).toBe(cr0);
    expect(r64(cpu, RCX)).toBe(0x1111_2222_3333_0000n | (cr0 & 0xffffn));
    expect(r64(cpu, 2)).toBe(cr0);
    expect(Array.from(cpu.memory.dump(0x9000, 4))).toEqual([cpu.cr0 & 0xff, (cpu.cr0 >> 8) & 0xff, 0xaa, 0xaa]);
    // At CPL 3 SMSW runs (no UMIP here); the #GP(0) is the HLT's after it.
    const user = runFragment([0x0f, 0x01, 0xe0], { setup: (c) => { c.cpl = 3; } });
    expect(user.stop).toEqual(GP);
    expect(r64(user.cpu, RAX)).toBe(BigInt(user.cpu.cr0 >>> 0));
    expect(user.cpu.ripLo).toBe(0x1003);
  });
});

/** 32-bit protected mode with 4-level tables identity-mapping the first MiB at CR3, EFER.LME = 1. */
function preLongMode(c: Cpu): void {
  const t = new Tables64(c);
  t.identity(0x10_0000);
  c.gpr[2 * RBX] = t.root;
  c.efer |= EFER_LME;
}
const MOV_CR3_EBX = [0x0f, 0x22, 0xdb];
const SET_PAE = [...MOV_RAX_CR4, ...orEax(CR4_PAE), ...MOV_CR4_RAX];
const SET_PG = [...MOV_RAX_CR0, ...orEax(CR0_PG), ...MOV_CR0_RAX];

describe('IA-32e mode activation (SDM vol. 3A, 10.8.5; 4.1.2)', () => {
  it('setting CR0.PG with EFER.LME = 1 and CR4.PAE = 1 sets EFER.LMA: compatibility mode, 4-level paging', () => {
    const { cpu, stop } = runFragment([...MOV_CR3_EBX, ...SET_PAE, ...SET_PG], { mode: 32, setup: preLongMode });
    expect(stop).toEqual(HALT);
    expect(cpu.efer & EFER_LMA).toBe(EFER_LMA);
    expect(cpu.codeSize).toBe(4); // CS.L = 0
    expect(cpu.memory.read8(cpu.cr3Lo) & 0x20).toBe(0x20); // the walk used the PML4E
  });

  it('setting CR0.PG with EFER.LME = 1 and CR4.PAE = 0 is #GP(0); LMA stays 0', () => {
    const { cpu, stop } = runFragment([...MOV_CR3_EBX, ...SET_PG], { mode: 32, setup: preLongMode });
    expect(stop).toEqual(GP);
    expect(cpu.efer & EFER_LMA).toBe(0);
    expect(cpu.cr0 & CR0_PG).toBe(0);
  });

  it('clearing CR0.PG in compatibility mode leaves IA-32e mode (LMA = 0); not while CR4.PCIDE = 1', () => {
    const CLEAR_PG = [...MOV_RAX_CR0, ...andEax(0x7fff_ffff), ...MOV_CR0_RAX];
    const a = runFragment([...MOV_CR3_EBX, ...SET_PAE, ...SET_PG, ...CLEAR_PG], { mode: 32, setup: preLongMode });
    expect(a.stop).toEqual(HALT);
    expect(a.cpu.efer & EFER_LMA).toBe(0);
    const SET_PCIDE = [...MOV_RAX_CR4, ...orEax(CR4_PCIDE), ...MOV_CR4_RAX];
    const b = runFragment([...MOV_CR3_EBX, ...SET_PAE, ...SET_PG, ...SET_PCIDE, ...CLEAR_PG], { mode: 32, setup: preLongMode });
    expect(b.stop).toEqual(GP);
    expect(b.cpu.efer & EFER_LMA).toBe(EFER_LMA);
  });

  it('in 64-bit mode clearing CR0.PG, clearing CR4.PAE and changing CR4.LA57 (on a processor with LA57) are #GP(0)', () => {
    expect(runFragment([...MOV_RAX_CR0, 0x48, 0x0f, 0xba, 0xf0, 31, ...MOV_CR0_RAX]).stop).toEqual(GP); // btr rax, 31
    expect(runFragment([...MOV_RAX_CR4, ...andEax(~CR4_PAE), ...MOV_CR4_RAX]).stop).toEqual(GP);
    const la57 = skylakeWith({ add: ['la57'] }), SET_LA57 = [...MOV_RAX_CR4, ...orEax(CR4_LA57), ...MOV_CR4_RAX];
    expect(runFragment(SET_LA57, { profile: la57 }).stop).toEqual(GP);
    expect(runFragment(SET_LA57, { profile: la57, mode: 32 }).stop).toEqual(HALT); // outside IA-32e mode it may change
  });
});

describe('MOV to CR4 (SDM vol. 2, MOV CR; vol. 3A, 2.5, 4.10.1)', () => {
  it('a reserved bit (PKE 22, UMIP 11, LA57 12 and MCE 6 on skylake, 31), or one of bits 63:32, is #GP(0)', () => {
    for (const bit of [22, 11, 12, 6, 31]) {
      expect(cr4Supported(new Cpu()) & (1 << bit)).toBe(0);
      expect(runFragment([...MOV_RAX_CR4, ...orEax(1 << bit), ...MOV_CR4_RAX]).stop).toEqual(GP);
    }
    expect(runFragment([...MOV_RAX_CR4, 0x48, 0x0f, 0xba, 0xe8, 40, ...MOV_CR4_RAX]).stop).toEqual(GP);
    const ok = runFragment([...MOV_RAX_CR4, ...orEax(1 << 9 | 1 << 7), ...MOV_CR4_RAX]);
    expect(ok.stop).toEqual(HALT);
    expect(ok.cpu.cr4 & 0x280).toBe(0x280);
  });

  it('a bit of a feature CPUID does not announce is reserved: PCIDE without PCID, SMAP without SMAP, FSGSBASE without FSGSBASE', () => {
    const cases: [number, CpuFeature][] = [[CR4_PCIDE, 'pcid'], [CR4_SMAP, 'smap'], [CR4_FSGSBASE, 'fsgsbase']];
    for (const [bit, feature] of cases) {
      const code = [...MOV_RAX_CR4, ...orEax(bit), ...MOV_CR4_RAX];
      expect(runFragment(code, { profile: skylakeWith({ remove: [feature] }) }).stop, feature).toEqual(GP);
      const ok = runFragment(code);
      expect(ok.stop, feature).toEqual(HALT);
      expect(ok.cpu.cr4 & bit).toBe(bit);
    }
  });

  it('CR4.PCIDE can be set only in IA-32e mode and with CR3[11:0] = 0', () => {
    const SET_PCIDE = [...MOV_RAX_CR4, ...orEax(CR4_PCIDE), ...MOV_CR4_RAX];
    expect(runFragment(SET_PCIDE, { mode: 32 }).stop).toEqual(GP);
    expect(runFragment(SET_PCIDE, { setup: (c) => { c.cr3Lo = 0x8; } }).stop).toEqual(GP);
    const ok = runFragment(SET_PCIDE);
    expect(ok.stop).toEqual(HALT);
    expect(ok.cpu.cr4 & CR4_PCIDE).toBe(CR4_PCIDE);
  });
});

describe('MOV to CR3 (SDM vol. 2, MOV CR)', () => {
  it('in IA-32e mode bits 63:MAXPHYADDR are reserved: #GP(0); bit 63 too while CR4.PCIDE = 0', () => {
    for (const bit of [39, 51, 62, 63]) {
      const { cpu, stop } = runFragment([...MOV_RAX_CR3, 0x48, 0x0f, 0xba, 0xe8, bit, ...MOV_CR3_RAX]);
      expect(stop).toEqual(GP);
      expect(cpu.cr3Hi).toBe(0);
    }
  });

  it('with CR4.PCIDE = 1, bit 63 of the source is not stored', () => {
    const code = [...MOV_RAX_CR4, ...orEax(CR4_PCIDE), ...MOV_CR4_RAX,
      ...MOV_RAX_CR3, 0x48, 0x0f, 0xba, 0xe8, 63, 0x0c, 0x05, ...MOV_CR3_RAX]; // bts rax, 63; or al, 5
    const { cpu, stop } = runFragment(code, {
      setup: (c) => { const t = new Tables64(c); t.identity(0x10_0000); t.activate(); },
    });
    expect(stop).toEqual(HALT);
    expect([cpu.cr3Hi, cpu.cr3Lo & 0xfff]).toEqual([0, 5]);
  });

  it('outside IA-32e mode CR3 takes the 32-bit source, PCD and PWT included', () => {
    const { cpu, stop } = runFragment([...movEax(0x1234_5018), ...MOV_CR3_RAX], { mode: 32 });
    expect(stop).toEqual(HALT);
    expect([cpu.cr3Lo, cpu.cr3Hi]).toEqual([0x1234_5018, 0]);
  });

  it('the instruction after a MOV to CR3 is fetched through the new tables', () => {
    // Tables B map linear page 0x1000 to physical 0x3000, whose copy of the code continues differently.
    const code = [...MOV_CR3_EBX, ...movEax(1)];
    const { cpu, stop } = runFragment(code, {
      setup: (c) => {
        const b = new Tables64(c, 4, 0xa0_0000);
        b.identity(0x10_0000);
        b.map(0x1000n, 0x3000);
        c.memory.load(0x3000 + code.length - 5, Uint8Array.of(...movEax(2), 0xf4));
        c.gpr[2 * RBX] = b.root;
      },
    });
    expect(stop).toEqual(HALT);
    expect(cpu.gpr[2 * RAX]).toBe(2);
  });
});

describe('MOV to/from CR8 (SDM vol. 3A, 10.8.6.1)', () => {
  it('CR8 bits 3:0 are TPR bits 7:4; bits 63:4 are reserved', () => {
    const { cpu, stop } = runFragment([...movEax(5), ...MOV_CR8_RAX, 0x31, 0xc0, ...MOV_RAX_CR8]);
    expect(stop).toEqual(HALT);
    expect(cpu.cr8.readCr8()).toBe(5);
    expect(r64(cpu, RAX)).toBe(5n);
    expect(runFragment([...movEax(16), ...MOV_CR8_RAX]).stop).toEqual(GP);
  });
});

describe('INVPCID (SDM vol. 2, INVPCID)', () => {
  // invpcid rax, [rsi]: type in RAX, the 16-byte descriptor at DATA_ADDRESS (PCID 0, address 0).
  const INVPCID = [0x66, 0x0f, 0x38, 0x82, 0x06];
  const regs = { [RSI]: BigInt(DATA_ADDRESS) };

  it('is #UD when CPUID.(EAX=07H,ECX=0):EBX.INVPCID[bit 10] = 0', () => {
    for (const type of [0n, 2n]) {
      const { stop } = runFragment(INVPCID, { regs: { ...regs, [RAX]: type }, profile: skylakeWith({ remove: ['invpcid'] }) });
      expect(stop).toEqual(UD);
    }
  });

  it('with INVPCID announced, invalidates: type 2 (all contexts) drops a cached translation', () => {
    const { cpu, stop } = runFragment(INVPCID, { regs: { ...regs, [RAX]: 2n } });
    expect(stop).toEqual(HALT);
    expect(cpu.paging.counters.flushes.invpcid).toBe(1);
  });
});

describe('STAC and CLAC (SDM vol. 2, STAC, CLAC; vol. 3A, 4.6.1)', () => {
  const STAC = [0x0f, 0x01, 0xcb], CLAC = [0x0f, 0x01, 0xca];

  it('set and clear RFLAGS.AC at CPL 0', () => {
    const set = runFragment(STAC);
    expect(set.stop).toEqual(HALT);
    expect(set.cpu.rflags & AC).toBe(AC);
    const clear = runFragment(CLAC, { rflags: 2 | AC });
    expect(clear.stop).toEqual(HALT);
    expect(clear.cpu.rflags & AC).toBe(0);
  });

  it('are #UD when CPUID.(EAX=07H,ECX=0):EBX.SMAP[bit 20] = 0, and at CPL > 0', () => {
    const noSmap = skylakeWith({ remove: ['smap'] });
    expect(runFragment(STAC, { profile: noSmap }).stop).toEqual(UD);
    expect(runFragment(CLAC, { profile: noSmap }).stop).toEqual(UD);
    expect(runFragment(STAC, { setup: (c) => { c.cpl = 3; } }).stop).toEqual(UD);
  });
});
