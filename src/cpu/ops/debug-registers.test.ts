import { describe, expect, it } from 'vitest';
import { runFragment } from '../testing.js';

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
