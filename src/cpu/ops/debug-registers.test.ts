import { describe, expect, it } from 'vitest';
import { runFragment } from '../testing.js';
import { updateBreakpoints } from './debug-registers.js';

describe('MOV DR (SDM vol. 2, MOV—Move to/from Debug Registers; vol. 3B, 18.2)', () => {
  it('DR0 holds 64 bits; DR7 reads back with bit 10 set and reserved bits clear', () => {
    // mov dr0, rax; mov rbx, dr0; mov dr7, rcx; mov rdx, dr7
    const { cpu, stop } = runFragment([0x0f, 0x23, 0xc0, 0x0f, 0x21, 0xc3, 0x0f, 0x23, 0xf9, 0x0f, 0x21, 0xfa], {
      setup: (c) => { c.setReg64(0, 0x123456789abcn); c.setReg64(1, 0xd003n); }, // GD (bit 13) clear: it would turn the next MOV DR into #DB
    });
    expect(stop.kind).toBe('halt');
    expect(cpu.reg64(3)).toBe(0x123456789abcn);
    expect(cpu.reg64(2)).toBe(0x403n);
  });

  it('DR4 aliases DR6 when CR4.DE = 0 and is #UD when CR4.DE = 1', () => {
    const { cpu } = runFragment([0x0f, 0x21, 0xe0]); // mov rax, dr4
    expect(cpu.reg64(0)).toBe(0xffff0ff0n);
    const { stop } = runFragment([0x0f, 0x21, 0xe0], { setup: (c) => { c.cr4 |= 1 << 3; } });
    expect(stop).toEqual({ kind: 'exception', vector: 6, errorCode: null });
  });

  it('DR7.GD turns the next MOV DR into #DB with DR6.BD set; CPL 3 gets #GP(0)', () => {
    const gd = runFragment([0x0f, 0x21, 0xc0], { setup: (c) => { c.dr7 |= 1 << 13; } });
    expect(gd.stop).toEqual({ kind: 'exception', vector: 1, errorCode: null });
    expect(gd.cpu.dr6 & (1 << 13)).toBe(1 << 13);
    const user = runFragment([0x0f, 0x21, 0xc0], { setup: (c) => { c.cpl = 3; } });
    expect(user.stop).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
  });

  it('REX.R naming DR8 is #UD; a 1 in bits 63:32 written to DR7 is #GP(0)', () => {
    expect(runFragment([0x44, 0x0f, 0x21, 0xc0]).stop).toEqual({ kind: 'exception', vector: 6, errorCode: null });
    const { stop } = runFragment([0x0f, 0x23, 0xf8], { setup: (c) => c.setReg64(0, 1n << 32n) });
    expect(stop).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
  });
});

describe('breakpoints in DR0-DR3 (SDM vol. 3B, 18.2.4, 18.3.1)', () => {
  const nops = [0x90, 0x90, 0x90, 0x90];
  /** DR7 for breakpoint n: local enable, R/W and LEN fields. */
  const dr7 = (n: number, rw: number, len: number): number => (1 << (2 * n)) | (rw << (16 + 4 * n)) | (len << (18 + 4 * n));

  it('an instruction breakpoint is a fault: #DB before the instruction, DR6.B0 set (18.3.1.1)', () => {
    // mov dr0, rax; mov dr7, rcx; nop x4 — the breakpoint is on the third NOP.
    const code = [0x0f, 0x23, 0xc0, 0x0f, 0x23, 0xf9, ...nops];
    const { cpu, stop } = runFragment(code, { regs: { 0: 0x1008n, 1: BigInt(dr7(0, 0, 0)) } });
    expect(stop).toEqual({ kind: 'exception', vector: 1, errorCode: null });
    expect(cpu.rip).toBe(0x1008n);
    expect(cpu.insnCount).toBe(4);
    expect(cpu.dr6 & 1).toBe(1);
  });

  it('RFLAGS.RF suppresses an instruction breakpoint for one instruction', () => {
    const code = [0x0f, 0x23, 0xc0, 0x0f, 0x23, 0xf9, ...nops];
    const { stop } = runFragment(code, {
      regs: { 0: 0x1006n, 1: BigInt(dr7(0, 0, 0)) },
      setup: (c) => { c.rflags = 0x2; },
    });
    expect(stop.kind).toBe('exception'); // without RF the breakpoint at 0x1006 fires
    const withRf = runFragment([0x90, ...nops], {
      setup: (c) => { c.dr[0] = 0x1000; c.dr7 = 0x400 | dr7(0, 0, 0); updateBreakpoints(c); c.rflags = 0x10002; },
    });
    expect(withRf.stop.kind).toBe('halt');
  });

  it('a data write breakpoint is a trap: #DB after the store, which has happened (18.3.1.2)', () => {
    // mov [rdi + 8], eax, with DR1 on that dword (R/W = 01, LEN = 11: 4 bytes)
    const { cpu, stop } = runFragment([0x89, 0x47, 0x08, 0x90], {
      regs: { 0: 0x11223344n, 7: 0x10000n },
      setup: (c) => { c.dr[2] = 0x10008; c.dr7 = 0x400 | dr7(1, 1, 3); updateBreakpoints(c); },
    });
    expect(stop).toEqual({ kind: 'exception', vector: 1, errorCode: null });
    expect(cpu.rip).toBe(0x1003n);
    expect(cpu.dr6 & 2).toBe(2);
    expect(cpu.memory.dump(0x10008, 4)).toEqual(Uint8Array.of(0x44, 0x33, 0x22, 0x11));
  });

  it('a write-only breakpoint ignores reads; a read/write one catches them', () => {
    const read = [0x8b, 0x47, 0x08, 0x90]; // mov eax, [rdi + 8]
    const writeOnly = runFragment(read, {
      regs: { 7: 0x10000n },
      setup: (c) => { c.dr[0] = 0x10008; c.dr7 = 0x400 | dr7(0, 1, 3); updateBreakpoints(c); },
    });
    expect(writeOnly.stop.kind).toBe('halt');
    const readWrite = runFragment(read, {
      regs: { 7: 0x10000n },
      setup: (c) => { c.dr[0] = 0x1000a; c.dr7 = 0x400 | dr7(0, 3, 0); updateBreakpoints(c); },
    });
    expect(readWrite.stop).toEqual({ kind: 'exception', vector: 1, errorCode: null });
  });
});

describe('I/O breakpoints (SDM vol. 3B, 18.2.4: R/W = 10 with CR4.DE = 1)', () => {
  const dr7Io = (n: number, len: number): number => (1 << (2 * n)) | (2 << (16 + 4 * n)) | (len << (18 + 4 * n));
  it('OUT to a watched port traps after the instruction; without CR4.DE nothing happens', () => {
    const code = [0xb0, 0x41, 0xe6, 0x80, 0x90]; // mov al, 0x41; out 0x80, al; nop
    const arm = (de: boolean) => (c: import('../cpu.js').Cpu): void => {
      c.dr[0] = 0x80; c.dr7 = 0x400 | dr7Io(0, 0); updateBreakpoints(c);
      if (de) c.cr4 |= 1 << 3;
    };
    const hit = runFragment(code, { setup: arm(true) });
    expect(hit.stop).toEqual({ kind: 'exception', vector: 1, errorCode: null });
    expect(hit.cpu.rip).toBe(0x1004n);
    expect(hit.cpu.dr6 & 1).toBe(1);
    expect(runFragment(code, { setup: arm(false) }).stop.kind).toBe('halt');
  });
});
