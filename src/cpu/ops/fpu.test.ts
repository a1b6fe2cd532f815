import { describe, expect, it } from 'vitest';
import type { Cpu } from '../cpu.js';
import { DATA_ADDRESS, runFragment, type FragmentResult } from '../testing.js';
import { RAX, RDX, RSI } from '../regs.js';

const D = DATA_ADDRESS; // 64-byte aligned; RSI points here
const CR0_MP = 1 << 1, CR0_EM = 1 << 2, CR0_TS = 1 << 3, CR0_NE = 1 << 5;
const CR4_OSFXSR = 1 << 9, CR4_OSXSAVE = 1 << 18;
const HALT = { kind: 'halt' };
const GP0 = { kind: 'exception', vector: 13, errorCode: 0 };
const UD = { kind: 'exception', vector: 6, errorCode: null };
const NM = { kind: 'exception', vector: 7, errorCode: null };
const MF = { kind: 'exception', vector: 16, errorCode: null };

const FNINIT = [0xdb, 0xe3], FNCLEX = [0xdb, 0xe2], FWAIT = [0x9b], EMMS = [0x0f, 0x77];
const FNSTCW = [0xd9, 0x3e], FLDCW = [0xd9, 0x2e], FNSTSW = [0xdd, 0x3e], FNSTSW_AX = [0xdf, 0xe0];
const FXSAVE = [0x0f, 0xae, 0x06], FXRSTOR = [0x0f, 0xae, 0x0e];
const FXSAVE64 = [0x48, ...FXSAVE], FXRSTOR64 = [0x48, ...FXRSTOR];
const XSAVE = [0x0f, 0xae, 0x26], XRSTOR = [0x0f, 0xae, 0x2e], XSAVEOPT = [0x0f, 0xae, 0x36];
const XSAVE64 = [0x48, ...XSAVE], XRSTOR64 = [0x48, ...XRSTOR];
const XSAVEC = [0x0f, 0xc7, 0x26], XSAVES = [0x0f, 0xc7, 0x2e], XRSTORS = [0x0f, 0xc7, 0x1e];
const XSAVEC64 = [0x48, ...XSAVEC], XSAVES64 = [0x48, ...XSAVES], XRSTORS64 = [0x48, ...XRSTORS];

function run(code: number[], setup?: (c: Cpu) => void, mode?: 64 | 32): FragmentResult {
  return runFragment(code, { mode, setup: (c) => { c.gpr[2 * RSI] = D; setup?.(c); } });
}

function u16(cpu: Cpu, a: number): number { return cpu.memory.read8(a) | cpu.memory.read8(a + 1) << 8; }
function u32(cpu: Cpu, a: number): number { return (u16(cpu, a) | u16(cpu, a + 2) << 16) >>> 0; }
function fill(cpu: Cpu, a: number, n: number, v: number): void { cpu.memory.load(a, new Uint8Array(n).fill(v)); }
function put32(cpu: Cpu, a: number, v: number): void {
  cpu.memory.load(a, new Uint8Array([v & 0xff, v >>> 8 & 0xff, v >>> 16 & 0xff, v >>> 24]));
}

/** A distinctive x87 and SSE state: TOP = 3, register Ri's bytes are 0x10 * i + k. */
function distinctState(c: Cpu): void {
  const s = c.msrs.x87;
  s.fcw = 0x027f; s.fsw = 0x1800 | 0x21; s.ftw = 0xa5; s.fop = 0x5d9;
  s.fipLo = 0x11223344; s.fipHi = 0x5566; s.fdpLo = 0x778899aa | 0; s.fdpHi = 0xbbcc;
  for (let i = 0; i < 8; i++) for (let k = 0; k < 10; k++) s.st[10 * i + k] = 0x10 * i + k;
  for (let k = 0; k < 64; k++) c.xmm[k] = (0x01010101 * (k + 1)) | 0;
  c.mxcsr = 0x9fc0;
  c.cr4 |= CR4_OSFXSR; // for the XORPS that clobbers XMM0 between a save and a restore
}

describe('x87 control instructions (SDM vol. 2, FINIT/FNINIT, FLDCW, FSTCW, FSTSW, FCLEX, WAIT)', () => {
  it('after power-up FCW reads 0040H (SDM vol. 3A, table 10-1); FNINIT loads 037FH and clears FSW and the tags', () => {
    expect(u16(run(FNSTCW).cpu, D)).toBe(0x0040);
    const { cpu } = run([...FNINIT, ...FNSTCW], distinctState);
    expect(u16(cpu, D)).toBe(0x037f);
    expect([cpu.msrs.x87.fsw, cpu.msrs.x87.ftw, cpu.msrs.x87.fop, cpu.msrs.x87.fipLo, cpu.msrs.x87.fdpHi]).toEqual([0, 0, 0, 0, 0]);
    expect(cpu.msrs.x87.st[79]).toBe(0x79); // the data registers are kept
  });

  it('FLDCW loads the control word; bits 15:13 do not exist and bit 6 reads 1', () => {
    const ones = run([...FLDCW, 0xd9, 0x7e, 0x02], (c) => fill(c, D, 2, 0xff)); // fldcw [rsi]; fnstcw [rsi+2]
    expect(u16(ones.cpu, D + 2)).toBe(0x1f7f);
    const zeros = run([...FLDCW, 0xd9, 0x7e, 0x02], (c) => fill(c, D, 2, 0));
    expect(u16(zeros.cpu, D + 2)).toBe(0x0040);
  });

  it('FNSTSW stores the status word with TOP to memory and to AX; FNCLEX clears flags 7:0 and B', () => {
    const { cpu } = run([...FNSTSW, ...FNSTSW_AX, ...FNCLEX, 0xdd, 0x7e, 0x02], (c) => {
      c.msrs.x87.fsw = 0xb8ff; c.setReg64(RAX, 0x1234_5678_0000_0000n);
    });
    expect(u16(cpu, D)).toBe(0xb8ff);
    expect(cpu.reg64(RAX)).toBe(0x1234_5678_0000_b8ffn);
    expect(u16(cpu, D + 2)).toBe(0x3800);
  });

  it('a flag that FLDCW unmasks is pending: FWAIT then raises #MF with CR0.NE = 1 (SDM vol. 1, 8.7)', () => {
    // fsw.ZE set and masked; fldcw with ZM = 0; fwait
    const setup = (ne: number) => (c: Cpu): void => {
      c.msrs.x87.fcw = 0x037f; c.msrs.x87.fsw = 0x0004; c.cr0 |= ne; put32(c, D, 0x037b);
    };
    const r = run([...FLDCW, ...FWAIT], setup(CR0_NE));
    expect(r.stop).toEqual(MF);
    expect(r.cpu.msrs.x87.fsw).toBe(0x8084); // ES and B set
    expect(r.cpu.rip).toBe(0x1002n); // the FWAIT faulted
    expect(run([...FLDCW, ...FWAIT], setup(0)).stop).toEqual(HALT); // CR0.NE = 0: FERR# is not wired
    expect(run([...FLDCW, ...FNCLEX, ...FWAIT], setup(CR0_NE)).stop).toEqual(HALT); // no-wait FNCLEX clears it
    // A control word that keeps the flag masked leaves nothing pending.
    const masked = run([...FLDCW, ...FWAIT], (c) => { setup(CR0_NE)(c); put32(c, D, 0x027f); });
    expect(masked.stop).toEqual(HALT);
    expect(masked.cpu.msrs.x87.fsw).toBe(0x0004);
    // FLDCW is itself a waiting instruction: with the exception pending it raises #MF before loading.
    const again = run([...FLDCW, 0xd9, 0x6e, 0x04], (c) => { setup(CR0_NE)(c); put32(c, D + 4, 0x037f); });
    expect(again.stop).toEqual(MF);
    expect(again.cpu.msrs.x87.fcw).toBe(0x037b);
  });

  it('x87 instructions raise #NM when CR0.EM or CR0.TS is 1 (SDM vol. 3A, 2.5, table 2-2)', () => {
    for (const code of [FNINIT, FNCLEX, FNSTCW, FLDCW, FNSTSW, FNSTSW_AX]) {
      expect(run(code, (c) => { c.cr0 |= CR0_TS; }).stop).toEqual(NM);
      expect(run(code, (c) => { c.cr0 |= CR0_EM; }).stop).toEqual(NM);
    }
  });

  it('WAIT raises #NM only when CR0.MP and CR0.TS are both 1', () => {
    expect(run(FWAIT, (c) => { c.cr0 |= CR0_TS; }).stop).toEqual(HALT);
    expect(run(FWAIT, (c) => { c.cr0 |= CR0_EM | CR0_MP; }).stop).toEqual(HALT);
    expect(run(FWAIT, (c) => { c.cr0 |= CR0_TS | CR0_MP; }).stop).toEqual(NM);
  });

  it('EMMS tags every register empty; #UD with CR0.EM, #NM with CR0.TS (SDM vol. 2, EMMS)', () => {
    const { cpu } = run(EMMS, (c) => { c.msrs.x87.ftw = 0xff; });
    expect(cpu.msrs.x87.ftw).toBe(0);
    expect(run(EMMS, (c) => { c.cr0 |= CR0_EM; }).stop).toEqual(UD);
    expect(run(EMMS, (c) => { c.cr0 |= CR0_TS; }).stop).toEqual(NM);
    for (const p of [0x66, 0xf2, 0xf3]) expect(run([p, ...EMMS]).stop).toEqual(UD); // NP 0F 77
  });

  it('x87 arithmetic is not implemented: FLD1 and FADD decode as undefined (#UD)', () => {
    expect(run([0xd9, 0xe8]).stop).toEqual(UD);
    expect(run([0xd8, 0x06]).stop).toEqual(UD);
  });
});

describe('FXSAVE/FXRSTOR (SDM vol. 2, FXSAVE, FXRSTOR; vol. 1, 10.5.1, tables 10-2 and 10-3)', () => {
  it('FXSAVE64 lays out FCW FSW FTW FOP FIP FDP MXCSR MXCSR_MASK, ST0-ST7 in stack order, XMM0-15; 464-511 untouched', () => {
    const { cpu, stop } = run(FXSAVE64, (c) => { distinctState(c); fill(c, D, 512, 0xee); });
    expect(stop).toEqual(HALT);
    expect([u16(cpu, D), u16(cpu, D + 2), cpu.memory.read8(D + 4), cpu.memory.read8(D + 5), u16(cpu, D + 6)])
      .toEqual([0x027f, 0x1821, 0xa5, 0, 0x5d9]);
    expect([u32(cpu, D + 8), u32(cpu, D + 12), u32(cpu, D + 16), u32(cpu, D + 20)]).toEqual([0x11223344, 0x5566, 0x778899aa, 0xbbcc]);
    expect([u32(cpu, D + 24), u32(cpu, D + 28)]).toEqual([0x9fc0, 0xffff]);
    // ST0 = R3 (TOP = 3), ST5 = R0; bytes 10-15 of each slot are 0.
    expect(Array.from(cpu.memory.dump(D + 32, 16))).toEqual([...Array.from({ length: 10 }, (_, k) => 0x30 + k), 0, 0, 0, 0, 0, 0]);
    expect(cpu.memory.read8(D + 32 + 5 * 16)).toBe(0x00);
    expect(cpu.memory.read8(D + 32 + 4 * 16 + 9)).toBe(0x79);
    expect(u32(cpu, D + 160)).toBe(0x01010101);
    expect(u32(cpu, D + 160 + 16 * 15 + 12)).toBe(0x40404040);
    expect(Array.from(cpu.memory.dump(D + 416, 96)).every((b) => b === 0xee)).toBe(true);
  });

  it('FXSAVE without REX.W stores 32-bit FIP and FDP with FCS = FDS = 0 (deprecated, CPUID.07H:EBX[13])', () => {
    const { cpu } = run(FXSAVE, (c) => { distinctState(c); fill(c, D, 512, 0xee); });
    expect([u32(cpu, D + 8), u32(cpu, D + 12), u32(cpu, D + 16), u32(cpu, D + 20)]).toEqual([0x11223344, 0, 0x778899aa, 0]);
  });

  it('FXRSTOR64 of an FXSAVE64 image gives back every x87 and SSE bit', () => {
    const { cpu, stop } = run([...FXSAVE64, ...FNINIT, 0x0f, 0x57, 0xc0, ...FXRSTOR64], distinctState);
    const want = run([], distinctState).cpu;
    expect(stop).toEqual(HALT);
    expect({ ...cpu.msrs.x87, st: Array.from(cpu.msrs.x87.st) }).toEqual({ ...want.msrs.x87, st: Array.from(want.msrs.x87.st) });
    expect(Array.from(cpu.xmm)).toEqual(Array.from(want.xmm));
    expect(cpu.mxcsr).toBe(0x9fc0);
  });

  it('FXRSTOR without REX.W loads 32-bit pointers (bits 63:32 become 0)', () => {
    const { cpu } = run([...FXSAVE64, ...FXRSTOR], distinctState);
    expect([cpu.msrs.x87.fipLo >>> 0, cpu.msrs.x87.fipHi, cpu.msrs.x87.fdpLo >>> 0, cpu.msrs.x87.fdpHi]).toEqual([0x11223344, 0, 0x778899aa, 0]);
  });

  it('outside 64-bit mode only XMM0-7 are saved and restored', () => {
    const { cpu } = run([...FXSAVE], (c) => { distinctState(c); fill(c, D, 512, 0xee); }, 32);
    expect(u32(cpu, D + 160 + 16 * 7)).toBe(0x1d1d1d1d);
    expect(Array.from(cpu.memory.dump(D + 288, 128)).every((b) => b === 0xee)).toBe(true);
  });

  it('a misaligned area raises #GP(0); CR0.TS or CR0.EM raises #NM', () => {
    for (const code of [FXSAVE64, FXRSTOR64]) {
      expect(run(code, (c) => { c.gpr[2 * RSI] = D + 8; }).stop).toEqual(GP0);
      expect(run(code, (c) => { c.cr0 |= CR0_TS; }).stop).toEqual(NM);
      expect(run(code, (c) => { c.cr0 |= CR0_EM; }).stop).toEqual(NM);
    }
  });

  it('FXRSTOR of an MXCSR with reserved bits raises #GP(0) and changes nothing', () => {
    const r = run(FXRSTOR64, (c) => { fill(c, D, 512, 0x11); put32(c, D + 24, 0x10000); });
    expect(r.stop).toEqual(GP0);
    expect(r.cpu.mxcsr).toBe(0x1f80);
    expect(r.cpu.msrs.x87.fcw).toBe(0x0040);
    expect(r.cpu.xmm[0]).toBe(0);
  });
});

describe('XSAVE/XRSTOR/XSAVEOPT (SDM vol. 1, 13.7-13.9; vol. 2, XSAVE, XRSTOR, XSAVEOPT)', () => {
  /** XSAVE-enabled, XCR0 = x87 | SSE, EDX:EAX = the instruction mask. */
  const on = (mask: number, more?: (c: Cpu) => void) => (c: Cpu): void => {
    c.cr4 |= CR4_OSXSAVE; c.msrs.xcr0 = 3; c.setReg64(RAX, BigInt(mask)); c.setReg64(RDX, 0n); more?.(c);
  };
  const bv = (cpu: Cpu): number => u32(cpu, D + 512);

  it('#UD when CR4.OSXSAVE = 0; #NM when CR0.TS = 1; #GP(0) unless 64-byte aligned', () => {
    for (const code of [XSAVE, XRSTOR, XSAVEOPT]) {
      expect(run(code).stop).toEqual(UD);
      expect(run(code, on(3, (c) => { c.cr0 |= CR0_TS; })).stop).toEqual(NM);
      expect(run(code, on(3, (c) => { c.gpr[2 * RSI] = D + 16; })).stop).toEqual(GP0);
    }
  });

  it('XSAVE with RFBM = x87 writes the x87 region only and XSTATE_BV[0]; other header bits are kept', () => {
    const { cpu } = run(XSAVE64, on(1, (c) => { distinctState(c); fill(c, D, 576, 0xee); put32(c, D + 512, 0x80000006); }));
    expect(u16(cpu, D)).toBe(0x027f);
    expect(cpu.memory.read8(D + 32)).toBe(0x30);
    expect(u32(cpu, D + 24)).toBe(0xeeeeeeee); // MXCSR not saved
    expect(u32(cpu, D + 160)).toBe(0xeeeeeeee); // XMM not saved
    expect(bv(cpu)).toBe(0x80000007 >>> 0);
    expect(u32(cpu, D + 516)).toBe(0xeeeeeeee);
  });

  it('XSAVE with RFBM = SSE writes MXCSR, MXCSR_MASK and XMM0-15 and sets XSTATE_BV[1]; EAX beyond XCR0 is ignored', () => {
    const { cpu } = run(XSAVE, on(0xfffffffe, (c) => { distinctState(c); fill(c, D, 576, 0xee); fill(c, D + 512, 8, 0); }));
    expect(u16(cpu, D)).toBe(0xeeee);
    expect([u32(cpu, D + 24), u32(cpu, D + 28)]).toEqual([0x9fc0, 0xffff]);
    expect(u32(cpu, D + 400)).toBe(0x3d3d3d3d);
    expect(bv(cpu)).toBe(2);
  });

  it('XSTATE_BV[i] is XINUSE[i]: components in their initial configuration are reported 0', () => {
    const { cpu } = run([...FNINIT, ...XSAVE], on(3, (c) => fill(c, D + 512, 8, 0xff)));
    expect(bv(cpu)).toBe(0xfffffffc >>> 0);
  });

  it('XRSTOR loads the components RFBM and XSTATE_BV select and initializes those RFBM selects but XSTATE_BV does not', () => {
    // Save everything, clobber, restore x87 only from the image, SSE to its initial state.
    const { cpu } = run([...XSAVE64, ...FNINIT, 0xc6, 0x86, 0x00, 0x02, 0, 0, 0x01, ...XRSTOR64], on(3, distinctState));
    // mov byte [rsi+512], 1 made XSTATE_BV = x87 only
    const s = cpu.msrs.x87;
    expect([s.fcw, s.fsw, s.ftw, s.fop, s.fipHi, s.st[35]]).toEqual([0x027f, 0x1821, 0xa5, 0x5d9, 0x5566, 0x35]);
    expect(Array.from(cpu.xmm).every((v) => v === 0)).toBe(true);
    expect(cpu.mxcsr).toBe(0x9fc0); // MXCSR is loaded whenever RFBM[1] = 1 (13.8.1)
  });

  it('XRSTOR with RFBM = x87 leaves SSE state and MXCSR alone; XSTATE_BV[0] = 0 initializes x87 state', () => {
    const { cpu } = run(XRSTOR, on(1, (c) => { distinctState(c); fill(c, D, 576, 0); put32(c, D + 24, 0x1f80); }));
    const s = cpu.msrs.x87;
    expect([s.fcw, s.fsw, s.ftw, s.fipLo, s.st.every((b) => b === 0)]).toEqual([0x037f, 0, 0, 0, true]);
    expect(cpu.xmm[0]).toBe(0x01010101);
    expect(cpu.mxcsr).toBe(0x9fc0);
  });

  it('XRSTOR raises #GP(0) for an XSTATE_BV bit not in XCR0, a non-zero XCOMP_BV[62:0] or header bytes 23:16, reserved MXCSR bits', () => {
    const cases: ((c: Cpu) => void)[] = [
      (c) => put32(c, D + 512, 4),
      (c) => { c.msrs.xcr0 = 1; put32(c, D + 512, 2); },
      (c) => put32(c, D + 516, 1),
      (c) => put32(c, D + 520, 1),
      (c) => put32(c, D + 524, 0x40000000),
      (c) => put32(c, D + 532, 1),
      (c) => put32(c, D + 24, 0x20000),
    ];
    for (const more of cases) {
      const r = run(XRSTOR, on(3, (c) => { fill(c, D, 576, 0); put32(c, D + 24, 0x1f80); distinctState(c); more(c); }));
      expect(r.stop).toEqual(GP0);
      expect(r.cpu.msrs.x87.fcw).toBe(0x027f); // nothing changed
      expect(r.cpu.xmm[0]).toBe(0x01010101);
    }
  });

  it('XSAVEOPT does not write components in their initial configuration, but always writes MXCSR', () => {
    const { cpu } = run([...FNINIT, ...XSAVEOPT], on(3, (c) => { fill(c, D, 576, 0xee); fill(c, D + 512, 8, 0); c.xmm[1] = 1; }));
    expect(u16(cpu, D)).toBe(0xeeee); // x87 not in use: not written
    expect(u32(cpu, D + 24)).toBe(0x1f80);
    expect(u32(cpu, D + 164)).toBe(1); // SSE in use: written
    expect(bv(cpu)).toBe(2);
  });

  it('an XSAVE/XRSTOR round trip in 32-bit mode restores XMM0-7 and the x87 state', () => {
    const { cpu } = run([...XSAVE, ...FNINIT, 0x0f, 0x57, 0xc0, ...XRSTOR], on(3, distinctState), 32);
    expect(cpu.msrs.x87.fcw).toBe(0x027f);
    expect(cpu.xmm[0]).toBe(0x01010101);
    expect(cpu.msrs.x87.fipHi).toBe(0); // 32-bit format
  });
});

describe('XSAVEC/XSAVES/XRSTORS and the compacted XRSTOR (SDM vol. 1, 13.4.3, 13.8.2, 13.10-13.12; vol. 2, XSAVEC, XSAVES, XRSTORS, XRSTOR)', () => {
  const on = (mask: number, more?: (c: Cpu) => void) => (c: Cpu): void => {
    c.cr4 |= CR4_OSXSAVE; c.msrs.xcr0 = 3; c.setReg64(RAX, BigInt(mask)); c.setReg64(RDX, 0n); more?.(c);
  };
  /** Header qwords: XSTATE_BV (bytes 7:0) and XCOMP_BV (bytes 15:8). */
  const header = (cpu: Cpu): bigint[] => [0, 8].map((o) => BigInt(u32(cpu, D + 512 + o + 4)) << 32n | BigInt(u32(cpu, D + 512 + o)));
  const COMPACTED = 1n << 63n;

  it('#UD when CR4.OSXSAVE = 0 or with a 66h prefix; #NM when CR0.TS = 1; #GP(0) unless 64-byte aligned', () => {
    for (const code of [XSAVEC, XSAVES, XRSTORS]) {
      expect(run(code).stop).toEqual(UD);
      expect(run([0x66, ...code], on(3)).stop).toEqual(UD);
      expect(run(code, on(3, (c) => { c.cr0 |= CR0_TS; })).stop).toEqual(NM);
      expect(run(code, on(3, (c) => { c.gpr[2 * RSI] = D + 32; })).stop).toEqual(GP0);
    }
  });

  it('XSAVES and XRSTORS raise #GP(0) at CPL > 0; XSAVEC runs at any CPL', () => {
    for (const code of [XSAVES, XRSTORS]) expect(run(code, on(3, (c) => { c.cpl = 3; })).stop).toEqual(GP0);
    // At CPL 3 the HLT behind it would fault: stop after the XSAVEC.
    const user = runFragment(XSAVEC, { budget: 1, setup: (c) => { c.gpr[2 * RSI] = D; on(3, (x) => { x.cpl = 3; })(c); } });
    expect(user.stop.kind).toBe('budget');
    expect(header(user.cpu)[1]).toBe(COMPACTED | 3n);
  });

  it('XSAVEC64 writes components 0 and 1 at their legacy-region places; XSTATE_BV = RFBM AND XINUSE, XCOMP_BV = RFBM | 2^63; bytes 63:16 of the header are untouched', () => {
    const { cpu } = run(XSAVEC64, on(0xffffffff, (c) => { distinctState(c); fill(c, D, 576, 0xee); }));
    expect(u16(cpu, D)).toBe(0x027f);
    expect(u32(cpu, D + 8)).toBe(0x11223344);
    expect(u32(cpu, D + 12)).toBe(0x5566); // 64-bit FIP with REX.W
    expect(cpu.memory.read8(D + 32)).toBe(0x30); // ST0 = R3 (TOP = 3)
    expect([u32(cpu, D + 24), u32(cpu, D + 28)]).toEqual([0x9fc0, 0xffff]);
    expect(u32(cpu, D + 400)).toBe(0x3d3d3d3d); // XMM15
    expect(header(cpu)).toEqual([3n, COMPACTED | 3n]);
    expect(u32(cpu, D + 528)).toBe(0xeeeeeeee);
    expect(u32(cpu, D + 572)).toBe(0xeeeeeeee);
  });

  it('the init optimization: a component in its initial configuration is not written and its XSTATE_BV bit is 0', () => {
    // After FNINIT with XMM = 0 and MXCSR = 1F80H nothing is in use: only the header is written.
    const idle = run([...FNINIT, ...XSAVEC], on(3, (c) => fill(c, D, 576, 0xee)));
    expect(u16(idle.cpu, D)).toBe(0xeeee);
    expect(u32(idle.cpu, D + 24)).toBe(0xeeeeeeee);
    expect(header(idle.cpu)).toEqual([0n, COMPACTED | 3n]);
    // MXCSR other than 1F80H puts SSE state in use for the compacted saves (XMM all 0).
    const mxcsr = run([...FNINIT, ...XSAVEC], on(3, (c) => { fill(c, D, 576, 0xee); c.mxcsr = 0x1fc0; }));
    expect(u32(mxcsr.cpu, D + 24)).toBe(0x1fc0);
    expect(u32(mxcsr.cpu, D + 160)).toBe(0);
    expect(header(mxcsr.cpu)).toEqual([2n, COMPACTED | 3n]);
  });

  it('RFBM = XCR0 AND EDX:EAX selects the components and makes XCOMP_BV', () => {
    const { cpu } = run(XSAVEC, on(1, (c) => { distinctState(c); fill(c, D, 576, 0xee); }));
    expect(u16(cpu, D)).toBe(0x027f);
    expect(u32(cpu, D + 24)).toBe(0xeeeeeeee); // SSE not in RFBM: MXCSR and XMM not written
    expect(u32(cpu, D + 160)).toBe(0xeeeeeeee);
    expect(header(cpu)).toEqual([1n, COMPACTED | 1n]);
  });

  it('XSAVES saves as XSAVEC does (IA32_XSS = 0: no supervisor components)', () => {
    const a = run(XSAVES64, on(3, distinctState)), b = run(XSAVEC64, on(3, distinctState));
    expect(a.stop).toEqual(HALT);
    const area = (cpu: Cpu): number[] => Array.from({ length: 576 }, (_, k) => cpu.memory.read8(D + k));
    expect(area(a.cpu)).toEqual(area(b.cpu));
    expect(header(a.cpu)).toEqual([3n, COMPACTED | 3n]);
  });

  it('XRSTORS64 and the compacted XRSTOR64 give back what XSAVES64/XSAVEC64 saved', () => {
    // save; fninit; xorps xmm0, xmm0; ldmxcsr [rsi-4] (1F80H); restore
    const clobber = [...FNINIT, 0x0f, 0x57, 0xc0, 0x0f, 0xae, 0x56, 0xfc];
    const clobbered = run(clobber, on(3, (c) => { distinctState(c); put32(c, D - 4, 0x1f80); })).cpu;
    expect([clobbered.msrs.x87.fcw, clobbered.xmm[0], clobbered.mxcsr]).toEqual([0x037f, 0, 0x1f80]);
    for (const [save, restore] of [[XSAVES64, XRSTORS64], [XSAVEC64, XRSTOR64]]) {
      const { cpu, stop } = run([...save!, ...clobber, ...restore!], on(3, (c) => { distinctState(c); put32(c, D - 4, 0x1f80); }));
      expect(stop).toEqual(HALT);
      const s = cpu.msrs.x87;
      expect([s.fcw, s.fsw, s.ftw, s.fop, s.fipLo, s.fipHi, s.fdpHi, s.st[35]]).toEqual([0x027f, 0x1821, 0xa5, 0x5d9, 0x11223344, 0x5566, 0xbbcc, 0x35]);
      expect(cpu.xmm[0]).toBe(0x01010101);
      expect(cpu.mxcsr).toBe(0x9fc0);
    }
  });

  it('compacted restore: XSTATE_BV[1] = 0 initializes SSE state with MXCSR = 1F80H (the standard form would load MXCSR)', () => {
    const image = (c: Cpu): void => {
      distinctState(c); fill(c, D, 576, 0);
      put32(c, D + 24, 0x1fc0); put32(c, D + 520, 3); put32(c, D + 524, 0x80000000); // XSTATE_BV = 0
    };
    for (const code of [XRSTORS, XRSTOR]) {
      const { cpu, stop } = run(code, on(3, image));
      expect(stop).toEqual(HALT);
      expect(cpu.mxcsr).toBe(0x1f80);
      expect(Array.from(cpu.xmm).every((v) => v === 0)).toBe(true);
      expect(cpu.msrs.x87.fcw).toBe(0x037f); // x87 initialized too
    }
  });

  it('compacted restore with RFBM = x87 leaves SSE state and MXCSR alone', () => {
    const { cpu } = run(XRSTORS, on(1, (c) => { distinctState(c); fill(c, D, 576, 0); put32(c, D + 524, 0x80000000); }));
    expect(cpu.msrs.x87.fcw).toBe(0x037f);
    expect([cpu.xmm[0], cpu.mxcsr]).toEqual([0x01010101, 0x9fc0]);
  });

  it('XRSTORS and the compacted XRSTOR raise #GP(0) for a bad header or MXCSR, changing nothing', () => {
    /** A valid compacted image of x87 and SSE state; `more` spoils it. */
    const cases: [number[], (c: Cpu) => void][] = [
      [XRSTORS, (c) => put32(c, D + 524, 0)], // XCOMP_BV[63] = 0: XRSTORS has no standard form
      [XRSTORS, (c) => put32(c, D + 520, 7)], // XCOMP_BV sets a bit not in XCR0 | IA32_XSS
      [XRSTORS, (c) => put32(c, D + 524, 0x80000001)],
      [XRSTORS, (c) => put32(c, D + 520, 1)], // XSTATE_BV[1] = 1 but XCOMP_BV[1] = 0
      [XRSTORS, (c) => put32(c, D + 516, 1)],
      [XRSTORS, (c) => put32(c, D + 528, 1)], // header bytes 63:16 not 0
      [XRSTORS, (c) => put32(c, D + 572, 0x01000000)],
      [XRSTORS, (c) => put32(c, D + 24, 0x20000)], // reserved MXCSR bit
      [XRSTOR, (c) => { c.msrs.xcr0 = 1; put32(c, D + 512, 1); put32(c, D + 520, 3); }], // XCOMP_BV[1] = 1, XCR0[1] = 0
      [XRSTOR, (c) => put32(c, D + 560, 1)],
    ];
    for (const [code, more] of cases) {
      const r = run(code, on(3, (c) => {
        fill(c, D, 576, 0); put32(c, D + 24, 0x1f80); put32(c, D + 512, 3); put32(c, D + 520, 3); put32(c, D + 524, 0x80000000);
        distinctState(c); more(c);
      }));
      expect(r.stop).toEqual(GP0);
      expect(r.cpu.msrs.x87.fcw).toBe(0x027f);
      expect(r.cpu.xmm[0]).toBe(0x01010101);
    }
  });
});

describe('LFENCE, MFENCE, SFENCE, CLFLUSH (SDM vol. 2)', () => {
  it('the fences execute as no-ops; CLFLUSH checks its address like a byte load', () => {
    const { stop, cpu } = run([0x0f, 0xae, 0xe8, 0x0f, 0xae, 0xf0, 0x0f, 0xae, 0xf8, 0x0f, 0xae, 0x3e]);
    expect(stop).toEqual(HALT);
    expect(cpu.rip).toBe(0x100dn); // after the HLT at 100CH
    expect(run([0x0f, 0xae, 0x3e], (c) => c.setReg64(RSI, 0x0000_8000_0000_0000n)).stop).toEqual(GP0);
  });

  it('with a 66h prefix they are other instructions (CLFLUSHOPT...): #UD here', () => {
    expect(run([0x66, 0x0f, 0xae, 0x3e]).stop).toEqual(UD);
    expect(run([0x66, 0x0f, 0xae, 0x06]).stop).toEqual(UD);
  });
});
