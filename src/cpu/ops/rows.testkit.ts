/**
 * Table-driven instruction tests: each row runs a fragment from given registers
 * and flags and checks registers and status flags after it. Imported by tests only.
 */
import { expect, it } from 'vitest';
import { AF, CF, OF, PF, SF, ZF } from '../regs.js';
import { runFragment } from '../testing.js';

export const STATUS = CF | PF | AF | ZF | SF | OF;

/** [title, code, registers in, flags in, registers out, status flags out] */
export type Row = [string, number[], Record<number, bigint>, number, Record<number, bigint>, number];

/** Runs `code` from the given registers, flags and data bytes (at DATA_ADDRESS). */
export function exec(code: readonly number[], regs: Record<number, bigint>, flags = 0, data?: number[], mode: 64 | 32 = 64) {
  return runFragment(code, { mode, regs, rflags: flags, data });
}

/** One test per row; register values compare modulo 2^64. */
export function table(rows: Row[]): void {
  for (const [title, code, regs, fin, out, fout] of rows) {
    it(title, () => {
      const { cpu, stop } = exec(code, regs, fin);
      expect(stop.kind).toBe('halt');
      for (const [r, v] of Object.entries(out)) expect(cpu.reg64(Number(r)).toString(16)).toBe(BigInt.asUintN(64, v).toString(16));
      expect(cpu.rflags & STATUS).toBe(fout);
    });
  }
}
