import { describe, expect, it } from 'vitest';
import { runFragment } from '../testing.js';
import { AF, CF, OF, PF, SF, ZF } from '../regs.js';

const STATUS = CF | PF | AF | ZF | SF | OF;

describe('ALU (SDM vol. 2, ADD/SUB/AND/OR/XOR/CMP/INC/DEC/NEG)', () => {
  it('add rax, rbx carries out of bit 63 and sets ZF', () => {
    const { cpu, stop } = runFragment([0x48, 0x01, 0xd8], {
      setup: (c) => { c.setReg64(0, 0xffffffffffffffffn); c.setReg64(3, 1n); },
    });
    expect(stop.kind).toBe('halt');
    expect(cpu.reg64(0)).toBe(0n);
    expect(cpu.rflags & STATUS).toBe(CF | ZF | PF | AF);
  });

  it('add eax, ebx zero-extends into bits 63:32 (SDM vol. 1, 3.4.1.1)', () => {
    const { cpu } = runFragment([0x01, 0xd8], {
      setup: (c) => { c.setReg64(0, 0x1234567800000001n); c.setReg64(3, 2n); },
    });
    expect(cpu.reg64(0)).toBe(3n);
  });

  it('sub al, 1 from 0x80 overflows', () => {
    const { cpu } = runFragment([0x2c, 0x01], { setup: (c) => c.setReg64(0, 0x80n) });
    expect(cpu.reg64(0)).toBe(0x7fn);
    expect(cpu.rflags & OF).toBe(OF);
    expect(cpu.rflags & CF).toBe(0);
  });

  it('adc propagates the carry across 64 bits', () => {
    // stc; adc rax, rbx
    const { cpu } = runFragment([0xf9, 0x48, 0x11, 0xd8], {
      setup: (c) => { c.setReg64(0, 0xffffffffn); c.setReg64(3, 0n); },
    });
    expect(cpu.reg64(0)).toBe(0x100000000n);
    expect(cpu.rflags & CF).toBe(0);
  });

  it('inc leaves CF alone; dec to zero sets ZF', () => {
    // stc; inc rax; dec rbx
    const { cpu } = runFragment([0xf9, 0x48, 0xff, 0xc0, 0x48, 0xff, 0xcb], {
      setup: (c) => { c.setReg64(3, 1n); },
    });
    expect(cpu.reg64(0)).toBe(1n);
    expect(cpu.rflags & (CF | ZF)).toBe(CF | ZF);
  });

  it('xor ah, ah addresses bits 15:8 without REX', () => {
    const { cpu } = runFragment([0x30, 0xe4], { setup: (c) => c.setReg64(0, 0xffffn) });
    expect(cpu.reg64(0)).toBe(0xffn);
  });

  it('LOCK on a register destination is #UD (SDM vol. 2, LOCK)', () => {
    const { stop } = runFragment([0xf0, 0x01, 0xd8]);
    expect(stop).toEqual({ kind: 'exception', vector: 6, errorCode: null });
  });

  it('sums 1..1000 in a loop', () => {
    // mov ecx, 1000; L: add rax, rcx; dec rcx; jnz L
    const { cpu, stop } = runFragment([0xb9, 0xe8, 0x03, 0, 0, 0x48, 0x01, 0xc8, 0x48, 0xff, 0xc9, 0x75, 0xf8]);
    expect(stop.kind).toBe('halt');
    expect(cpu.reg64(0)).toBe(500500n);
    expect(cpu.insnCount).toBe(1 + 3 * 1000 + 1);
  });
});
