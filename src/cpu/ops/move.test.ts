import { describe, expect, it } from 'vitest';
import { runFragment } from '../testing.js';
import { PTE_P, PTE_RW, Tables64 } from '../../../spec-tests/paging/tables.js';
import { Vector } from '../regs.js';

describe('MOVSXD (SDM vol. 2, MOVSX/MOVSXD)', () => {
  // The code page, and one data page at 100000H whose successor is not mapped: a read that
  // goes past 100FFFH faults (#PF), so the size of the read shows.
  const setup = (cpu: import('../cpu.js').Cpu): void => {
    const t = new Tables64(cpu);
    t.map(0x1000n, 0x1000, PTE_P | PTE_RW);
    t.map(0x10_0000n, 0x20_0000, PTE_P | PTE_RW);
    t.activate();
    cpu.memory.write32(0x20_0ffc, 0x8001_0000);
  };
  const at = [0x04, 0x25, 0xfe, 0x0f, 0x10, 0x00]; // [100FFEH]

  it('63 /r with 66H (MOVSXD r16, r/m16): reads a word, not a doubleword', () => {
    const { cpu, stop } = runFragment([0x66, 0x63, ...at], { setup, regs: { 0: 0x1234_5678n } });
    expect(stop.kind).toBe('halt');
    expect(cpu.reg64(0)).toBe(0x1234_8001n);
  });

  it('REX.W 63 /r (MOVSXD r64, r/m32): reads a doubleword, which here crosses into the unmapped page (#PF)', () => {
    const { stop } = runFragment([0x48, 0x63, ...at], { setup });
    expect(stop).toMatchObject({ kind: 'exception', vector: Vector.PF });
  });
});
