import { describe, expect, it } from 'vitest';
import type { Cpu } from '../cpu.js';
import { run } from '../run.js';
import { CODE_ADDRESS, DATA_ADDRESS, runFragment } from '../testing.js';
import { CF, DF, DS, ES, FS, RAX, RBX, RCX, RDI, RSI, SF, ZF } from '../regs.js';

const SRC = DATA_ADDRESS;            // 0x10000
const DST = DATA_ADDRESS + 0x8000;   // 0x18000
const BIG = 1_000_000;

/** Bytes 0..n-1 of a pattern that does not repeat with a short period. */
function pattern(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed;
  for (let k = 0; k < n; k++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; b[k] = x >>> 24; }
  return b;
}

function regs(c: Cpu, rsi: bigint, rdi: bigint, rcx: bigint): void {
  c.setReg64(RSI, rsi); c.setReg64(RDI, rdi); c.setReg64(RCX, rcx);
}

/** Loads bytes into physical memory. */
const load = (c: Cpu, pa: number, bytes: ArrayLike<number>): void => c.memory.load(pa, Uint8Array.from(bytes));
const std = (c: Cpu): void => { c.rflags = c.rflags | DF; };

describe('MOVS (SDM vol. 2, MOVS/MOVSB/MOVSW/MOVSD/MOVSQ)', () => {
  const sizes: [string, number[], number][] = [
    ['movsb', [0xa4], 1], ['movsw', [0x66, 0xa5], 2], ['movsd', [0xa5], 4], ['movsq', [0x48, 0xa5], 8],
  ];
  for (const [name, code, z] of sizes) {
    it(`${name} copies ${z} bytes and advances RSI/RDI by ${z} (DF = 0)`, () => {
      const data = pattern(16);
      const { cpu, stop } = runFragment(code, {
        setup: (c) => { load(c, SRC, data); regs(c, BigInt(SRC), BigInt(DST), 77n); },
      });
      expect(stop.kind).toBe('halt');
      expect(Array.from(cpu.memory.dump(DST, 16))).toEqual([...data.slice(0, z), ...new Array(16 - z).fill(0)]);
      expect(cpu.reg64(RSI)).toBe(BigInt(SRC + z));
      expect(cpu.reg64(RDI)).toBe(BigInt(DST + z));
      expect(cpu.reg64(RCX)).toBe(77n); // no REP: the count register is untouched
    });

    it(`${name} with DF = 1 decrements RSI/RDI by ${z}`, () => {
      const data = pattern(16);
      const { cpu } = runFragment(code, {
        setup: (c) => { load(c, SRC, data); regs(c, BigInt(SRC + 8), BigInt(DST + 8), 0n); std(c); },
      });
      expect(Array.from(cpu.memory.dump(DST + 8, z))).toEqual(Array.from(data.slice(8, 8 + z)));
      expect(cpu.memory.dump(DST + 8 + z, 1)[0]).toBe(0);
      expect(cpu.reg64(RSI)).toBe(BigInt(SRC + 8 - z));
      expect(cpu.reg64(RDI)).toBe(BigInt(DST + 8 - z));
    });

    it(`rep ${name} copies 10000 bytes' worth forward and backward (SDM vol. 2, REP)`, () => {
      const n = 10000 / z, data = pattern(10000, z);
      for (const back of [false, true]) {
        const { cpu, stop } = runFragment([0xf3, ...code], {
          budget: BIG,
          setup: (c) => {
            load(c, SRC, data);
            if (back) { regs(c, BigInt(SRC + 10000 - z), BigInt(DST + 10000 - z), BigInt(n)); std(c); }
            else regs(c, BigInt(SRC), BigInt(DST), BigInt(n));
          },
        });
        expect(stop.kind).toBe('halt');
        expect(cpu.memory.dump(DST, 10000)).toEqual(data);
        expect(cpu.memory.dump(DST - 8, 8)).toEqual(new Uint8Array(8));
        expect(cpu.memory.dump(DST + 10000, 8)).toEqual(new Uint8Array(8));
        expect(cpu.reg64(RCX)).toBe(0n);
        expect(cpu.reg64(RSI)).toBe(BigInt(back ? SRC - z : SRC + 10000));
        expect(cpu.reg64(RDI)).toBe(BigInt(back ? DST - z : DST + 10000));
      }
    });
  }

  it('rep movsb with RCX = 0 changes nothing (SDM vol. 2, REP)', () => {
    const { cpu } = runFragment([0xf3, 0xa4], {
      setup: (c) => { load(c, SRC, pattern(4)); regs(c, BigInt(SRC), BigInt(DST), 0n); },
    });
    expect(cpu.memory.dump(DST, 4)).toEqual(new Uint8Array(4));
    expect(cpu.reg64(RSI)).toBe(BigInt(SRC));
    expect(cpu.reg64(RDI)).toBe(BigInt(DST));
    expect(cpu.reg64(RCX)).toBe(0n);
  });

  it('rep movsb with RCX = 1 copies one byte', () => {
    const data = pattern(4);
    const { cpu } = runFragment([0xf3, 0xa4], {
      setup: (c) => { load(c, SRC, data); regs(c, BigInt(SRC), BigInt(DST), 1n); },
    });
    expect(Array.from(cpu.memory.dump(DST, 2))).toEqual([data[0], 0]);
    expect(cpu.reg64(RCX)).toBe(0n);
    expect(cpu.reg64(RSI)).toBe(BigInt(SRC + 1));
  });

  it('rep movsb with RDI = RSI + 1 replicates the first byte, across pages (SDM vol. 2, MOVS: byte by byte)', () => {
    const { cpu } = runFragment([0xf3, 0xa4], {
      budget: BIG,
      setup: (c) => { load(c, SRC + 0xff0, [0x5a, 1, 2, 3]); regs(c, BigInt(SRC + 0xff0), BigInt(SRC + 0xff1), 5000n); },
    });
    expect(cpu.memory.dump(SRC + 0xff0, 5001)).toEqual(new Uint8Array(5001).fill(0x5a));
    expect(cpu.memory.dump(SRC + 0xff0 + 5001, 1)[0]).toBe(0);
    expect(cpu.reg64(RDI)).toBe(BigInt(SRC + 0xff1 + 5000));
  });

  it('rep movsd with RDI = RSI + 2 follows element-by-element semantics', () => {
    const data = pattern(64);
    const { cpu } = runFragment([0xf3, 0xa5], {
      setup: (c) => { load(c, SRC, data); regs(c, BigInt(SRC), BigInt(SRC + 2), 12n); },
    });
    // Reference: each element reads 4 bytes (after earlier writes), then writes 4 bytes.
    const ref = data.slice();
    for (let k = 0; k < 12; k++) ref.copyWithin(2 + 4 * k, 4 * k, 4 * k + 4);
    expect(cpu.memory.dump(SRC, 64)).toEqual(ref);
  });

  it('rep movsb with RDI < RSI overlapping acts as a forward memmove', () => {
    const data = pattern(9000);
    const { cpu } = runFragment([0xf3, 0xa4], {
      budget: BIG,
      setup: (c) => { load(c, SRC + 100, data); regs(c, BigInt(SRC + 100), BigInt(SRC + 3), 9000n); },
    });
    expect(cpu.memory.dump(SRC + 3, 9000)).toEqual(data);
  });

  it('67h: 32-bit address size in 64-bit mode uses ESI/EDI/ECX, wraps at 2^32 and zero-extends (SDM vol. 1, 3.3.7)', () => {
    const { cpu } = runFragment([0x67, 0xf3, 0xa4], {
      setup: (c) => {
        load(c, 0, [0x11, 0x22]);
        // ESI = 0xfffffffe: the first two bytes come from unbacked memory (all ones), then offset 0.
        regs(c, 0xabcd_0000_ffff_fffen, 0x1234_0000_0000_0000n | BigInt(DST), 0x1_0000_0004n);
      },
    });
    expect(Array.from(cpu.memory.dump(DST, 5))).toEqual([0xff, 0xff, 0x11, 0x22, 0]);
    expect(cpu.reg64(RSI)).toBe(2n);
    expect(cpu.reg64(RDI)).toBe(BigInt(DST + 4));
    expect(cpu.reg64(RCX)).toBe(0n);
  });

  it('67h: 32-bit address size with RCX = 2^32 · k repeats zero times and leaves RCX alone', () => {
    const { cpu } = runFragment([0x67, 0xf3, 0xa4], {
      setup: (c) => regs(c, 0x5_0000_0000n | BigInt(SRC), 0x5_0000_0000n | BigInt(DST), 0x3_0000_0000n),
    });
    expect(cpu.reg64(RSI)).toBe(0x5_0000_0000n | BigInt(SRC));
    expect(cpu.reg64(RCX)).toBe(0x3_0000_0000n);
  });

  it('16-bit address size (67h in 32-bit mode) wraps SI/DI at 64 KiB and keeps bits 31:16', () => {
    const { cpu } = runFragment([0x67, 0xf3, 0xa4], {
      mode: 32,
      setup: (c) => {
        load(c, 0xffff, [0x33]); load(c, 0, [0x44]);
        regs(c, 0x1234_ffffn, 0x5678_0000n | 0x8000n, 0xbeef_0002n);
      },
    });
    expect(Array.from(cpu.memory.dump(0x8000, 2))).toEqual([0x33, 0x44]);
    expect(cpu.reg64(RSI)).toBe(0x1234_0001n);
    expect(cpu.reg64(RDI)).toBe(0x5678_8002n);
    expect(cpu.reg64(RCX)).toBe(0xbeef_0000n);
  });

  it('segments: the source honours an override, the destination is always ES (SDM vol. 2, MOVS)', () => {
    // 32-bit mode: DS base 0x20000, ES base 0x30000, FS base 0x40000. fs movsb; es movsb
    const { cpu } = runFragment([0x64, 0xa4, 0x26, 0xa4], {
      mode: 32,
      setup: (c) => {
        const attr = c.segAttr[DS]!, limit = 0xffffffff;
        c.setSegment(DS, 0x10, 0x20000, 0, limit, attr);
        c.setSegment(ES, 0x10, 0x30000, 0, limit, attr);
        c.setSegment(FS, 0x10, 0x40000, 0, limit, attr);
        load(c, 0x20010, [0xd5, 0xd6]);
        load(c, 0x30010, [0xe5, 0xe6]);
        load(c, 0x40010, [0xf5, 0xf6]);
        regs(c, 0x10n, 0x20n, 0n);
      },
    });
    expect(Array.from(cpu.memory.dump(0x30020, 3))).toEqual([0xf5, 0xe6, 0]);
    expect(cpu.memory.dump(0x20020, 2)).toEqual(new Uint8Array(2));
  });

  it('in 64-bit mode ES and DS bases are ignored; an FS override adds the FS base (SDM vol. 1, 3.4.2.1)', () => {
    const { cpu } = runFragment([0x64, 0xa4, 0xa4], {
      setup: (c) => {
        c.segBase[2 * ES] = 0x100000; c.segBase[2 * DS] = 0x100000; c.segBase[2 * FS] = 0x40000;
        load(c, 0x40010, [0xf5]); load(c, 0x11, [0xd6]);
        regs(c, 0x10n, BigInt(DST), 0n);
      },
    });
    expect(Array.from(cpu.memory.dump(DST, 2))).toEqual([0xf5, 0xd6]);
  });

  it('F2 on MOVS repeats by the count alone, like F3 (Intel behaviour)', () => {
    const data = pattern(8);
    const { cpu } = runFragment([0xf2, 0xa4], {
      setup: (c) => { load(c, SRC, data); regs(c, BigInt(SRC), BigInt(DST), 8n); },
    });
    expect(cpu.memory.dump(DST, 8)).toEqual(data);
    expect(cpu.reg64(RCX)).toBe(0n);
  });
});

describe('REP is interruptible and restartable (SDM vol. 2, REP)', () => {
  it('a long rep movsb retires in chunks: a budget stop leaves RIP on it with consistent registers', () => {
    const data = pattern(100_000);
    const { cpu, stop } = runFragment([0xf3, 0xa4], {
      budget: 1,
      setup: (c) => { load(c, SRC, data); regs(c, BigInt(SRC), BigInt(SRC + 0x20000), 100_000n); },
    });
    expect(stop.kind).toBe('budget');
    expect(cpu.rip).toBe(BigInt(CODE_ADDRESS));
    const done = 100_000n - cpu.reg64(RCX);
    expect(done > 0n && done < 100_000n).toBe(true);
    expect(cpu.reg64(RSI)).toBe(BigInt(SRC) + done);
    expect(cpu.reg64(RDI)).toBe(BigInt(SRC + 0x20000) + done);
    expect(cpu.memory.dump(SRC + 0x20000, Number(done))).toEqual(data.slice(0, Number(done)));
    expect(cpu.memory.dump(SRC + 0x20000 + Number(done), 1)[0]).toBe(0);
    // Continue where it stopped.
    expect(run(cpu, BIG).kind).toBe('halt');
    expect(cpu.memory.dump(SRC + 0x20000, 100_000)).toEqual(data);
    expect(cpu.reg64(RCX)).toBe(0n);
  });

  it('a fault mid-way leaves RIP on the instruction and the registers after the completed iterations', () => {
    // 10 bytes up from 0x7ffffffffffc: the fifth is at the first non-canonical address → #GP(0).
    const { cpu, stop } = runFragment([0xf3, 0xaa], {
      setup: (c) => { c.setReg64(RDI, 0x7fff_ffff_fffcn); c.setReg64(RCX, 10n); },
    });
    expect(stop).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
    expect(cpu.rip).toBe(BigInt(CODE_ADDRESS));
    expect(cpu.reg64(RDI)).toBe(0x8000_0000_0000n);
    expect(cpu.reg64(RCX)).toBe(6n);
  });

  it('a fault on the first iteration changes no register (a 32-bit update would zero-extend them)', () => {
    // fs movsb with 32-bit addresses; FS's base makes FS:ESI non-canonical → #GP(0).
    const { cpu, stop } = runFragment([0x64, 0x67, 0xf3, 0xa4], {
      setup: (c) => {
        c.segBase[2 * FS + 1] = 0x12345678;
        regs(c, 0x1_0000_0010n, 0x1_0000_0000n | BigInt(DST), 0x1_0000_0003n);
      },
    });
    expect(stop).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
    expect(cpu.reg64(RSI)).toBe(0x1_0000_0010n);
    expect(cpu.reg64(RDI)).toBe(0x1_0000_0000n | BigInt(DST));
    expect(cpu.reg64(RCX)).toBe(0x1_0000_0003n);
  });

  it('rep stosb over the code that follows it: the new bytes execute', () => {
    // rep stosb writes two NOPs over the ud2 right after it.
    const { stop } = runFragment([0xf3, 0xaa, 0x0f, 0x0b], {
      setup: (c) => { c.setReg64(RAX, 0x90n); c.setReg64(RDI, BigInt(CODE_ADDRESS + 2)); c.setReg64(RCX, 2n); },
    });
    expect(stop.kind).toBe('halt');
  });
});

describe('STOS (SDM vol. 2, STOS/STOSB/STOSW/STOSD/STOSQ)', () => {
  const sizes: [string, number[], number][] = [
    ['stosb', [0xaa], 1], ['stosw', [0x66, 0xab], 2], ['stosd', [0xab], 4], ['stosq', [0x48, 0xab], 8],
  ];
  const value = 0x8877_6655_4433_2211n;
  const bytesOf = (z: number): number[] => [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88].slice(0, z);
  for (const [name, code, z] of sizes) {
    it(`${name} stores the low ${z} bytes of RAX, forward and backward`, () => {
      for (const back of [false, true]) {
        const { cpu } = runFragment(code, {
          setup: (c) => { c.setReg64(RAX, value); c.setReg64(RDI, BigInt(DST + 8)); if (back) std(c); },
        });
        expect(Array.from(cpu.memory.dump(DST + 8, 9))).toEqual([...bytesOf(z), ...new Array(9 - z).fill(0)]);
        expect(cpu.reg64(RDI)).toBe(BigInt(DST + 8 + (back ? -z : z)));
      }
    });

    it(`rep ${name} fills 10000 bytes' worth forward and backward; RCX = 0 stores nothing`, () => {
      const n = 10000 / z, fill = new Uint8Array(10000);
      for (let k = 0; k < 10000; k++) fill[k] = bytesOf(z)[k % z]!;
      for (const back of [false, true]) {
        const start = back ? DST + 10000 - z : DST + 1; // also an unaligned start
        const base = back ? DST : DST + 1;
        const { cpu, stop } = runFragment([0xf3, ...code], {
          budget: BIG,
          setup: (c) => { c.setReg64(RAX, value); c.setReg64(RDI, BigInt(start)); c.setReg64(RCX, BigInt(n)); if (back) std(c); },
        });
        expect(stop.kind).toBe('halt');
        expect(cpu.memory.dump(base, 10000)).toEqual(fill);
        expect(cpu.memory.dump(base - 1, 1)[0]).toBe(0);
        expect(cpu.memory.dump(base + 10000, 1)[0]).toBe(0);
        expect(cpu.reg64(RCX)).toBe(0n);
        expect(cpu.reg64(RDI)).toBe(BigInt(back ? DST - z : DST + 1 + 10000));
      }
      const { cpu } = runFragment([0xf3, ...code], {
        setup: (c) => { c.setReg64(RAX, value); c.setReg64(RDI, BigInt(DST)); c.setReg64(RCX, 0n); },
      });
      expect(cpu.memory.dump(DST, 8)).toEqual(new Uint8Array(8));
      expect(cpu.reg64(RDI)).toBe(BigInt(DST));
    });
  }

  it('rep stosq of 2 MiB (memset) with 32-bit address size in 64-bit mode', () => {
    const { cpu, stop } = runFragment([0x67, 0xf3, 0x48, 0xab], {
      budget: BIG,
      setup: (c) => { c.setReg64(RAX, -1n & 0xffff_ffff_ffff_ffffn); c.setReg64(RDI, 0xff_0010_0000n); c.setReg64(RCX, 0x4_0000n); },
    });
    expect(stop.kind).toBe('halt');
    const out = cpu.memory.dump(0x10_0000 - 1, 0x20_0002);
    expect(out[0]).toBe(0);
    expect(out[0x20_0001]).toBe(0);
    expect(out.subarray(1, 0x20_0001).every((b) => b === 0xff)).toBe(true);
    expect(cpu.reg64(RDI)).toBe(0x30_0000n);
    expect(cpu.reg64(RCX)).toBe(0n);
  });
});

describe('LODS (SDM vol. 2, LODS/LODSB/LODSW/LODSD/LODSQ)', () => {
  it('lodsb merges AL; lodsw merges AX; lodsd zero-extends into RAX; lodsq loads RAX', () => {
    const data = pattern(16);
    const cases: [number[], number, bigint][] = [
      [[0xac], 1, 0xffff_ffff_ffff_ff00n], [[0x66, 0xad], 2, 0xffff_ffff_ffff_0000n], [[0xad], 4, 0n], [[0x48, 0xad], 8, 0n],
    ];
    for (const [code, z, keep] of cases) {
      const { cpu } = runFragment(code, {
        setup: (c) => { load(c, SRC, data); c.setReg64(RAX, -1n & 0xffff_ffff_ffff_ffffn); c.setReg64(RSI, BigInt(SRC)); },
      });
      let v = 0n;
      for (let k = z - 1; k >= 0; k--) v = (v << 8n) | BigInt(data[k]!);
      expect(cpu.reg64(RAX)).toBe(keep | v);
      expect(cpu.reg64(RSI)).toBe(BigInt(SRC + z));
    }
  });

  it('rep lodsb leaves the last byte in AL; backward with DF = 1', () => {
    const data = pattern(5000);
    for (const back of [false, true]) {
      const { cpu } = runFragment([0xf3, 0xac], {
        budget: BIG,
        setup: (c) => { load(c, SRC, data); c.setReg64(RSI, BigInt(back ? SRC + 4999 : SRC)); c.setReg64(RCX, 5000n); if (back) std(c); },
      });
      expect(cpu.reg64(RAX)).toBe(BigInt(data[back ? 0 : 4999]!));
      expect(cpu.reg64(RSI)).toBe(BigInt(back ? SRC - 1 : SRC + 5000));
      expect(cpu.reg64(RCX)).toBe(0n);
    }
  });
});

describe('CMPS (SDM vol. 2, CMPS/CMPSB/CMPSW/CMPSD/CMPSQ)', () => {
  it('cmpsb sets flags as CMP [RSI], [RDI]', () => {
    const cases: [number, number, number][] = [[5, 5, ZF], [3, 5, CF | SF], [5, 3, 0]];
    for (const [a, b, flags] of cases) {
      const { cpu } = runFragment([0xa6], {
        setup: (c) => { load(c, SRC, [a]); load(c, DST, [b]); regs(c, BigInt(SRC), BigInt(DST), 0n); },
      });
      expect(cpu.rflags & (CF | ZF | SF)).toBe(flags);
      expect(cpu.reg64(RSI)).toBe(BigInt(SRC + 1));
      expect(cpu.reg64(RDI)).toBe(BigInt(DST + 1));
    }
  });

  it('cmpsq compares 64 bits; cmpsw compares 16', () => {
    const r = runFragment([0x48, 0xa7], {
      setup: (c) => {
        load(c, SRC, [0, 0, 0, 0, 0, 0, 0, 1]); load(c, DST, [0, 0, 0, 0, 0, 0, 0, 2]);
        regs(c, BigInt(SRC), BigInt(DST), 0n);
      },
    });
    expect(r.cpu.rflags & (CF | ZF)).toBe(CF);
    expect(r.cpu.reg64(RSI)).toBe(BigInt(SRC + 8));
    const w = runFragment([0x66, 0xa7], {
      setup: (c) => { load(c, SRC, [1, 2, 3]); load(c, DST, [1, 2, 4]); regs(c, BigInt(SRC), BigInt(DST), 0n); },
    });
    expect(w.cpu.rflags & ZF).toBe(ZF);
    expect(w.cpu.reg64(RDI)).toBe(BigInt(DST + 2));
  });

  it('repe cmpsb stops after the first difference with RCX/RSI/RDI past it (SDM vol. 2, REP)', () => {
    const data = pattern(100);
    const other = data.slice(); other[37] = data[37]! ^ 1;
    const { cpu } = runFragment([0xf3, 0xa6], {
      setup: (c) => { load(c, SRC, data); load(c, DST, other); regs(c, BigInt(SRC), BigInt(DST), 100n); },
    });
    expect(cpu.reg64(RCX)).toBe(100n - 38n);
    expect(cpu.reg64(RSI)).toBe(BigInt(SRC + 38));
    expect(cpu.reg64(RDI)).toBe(BigInt(DST + 38));
    expect(cpu.rflags & ZF).toBe(0);
  });

  it('repe cmpsb over 10000 equal bytes ends with RCX = 0 and ZF = 1; a difference at 9000 is found', () => {
    const data = pattern(10000);
    const eq = runFragment([0xf3, 0xa6], {
      budget: BIG,
      setup: (c) => { load(c, SRC, data); load(c, DST, data); regs(c, BigInt(SRC), BigInt(DST), 10000n); },
    });
    expect(eq.cpu.reg64(RCX)).toBe(0n);
    expect(eq.cpu.rflags & ZF).toBe(ZF);
    const other = data.slice(); other[9000] = data[9000]! ^ 0x80;
    const ne = runFragment([0xf3, 0xa6], {
      budget: BIG,
      setup: (c) => { load(c, SRC, data); load(c, DST, other); regs(c, BigInt(SRC), BigInt(DST), 10000n); },
    });
    expect(ne.cpu.reg64(RCX)).toBe(10000n - 9001n);
    expect(ne.cpu.reg64(RSI)).toBe(BigInt(SRC + 9001));
    expect(ne.cpu.rflags & ZF).toBe(0);
  });

  it('repne cmpsd stops at the first equal dword, backward with DF = 1', () => {
    const a = new Uint8Array(40), b = new Uint8Array(40).fill(9);
    a[12] = 9; a[13] = 9; a[14] = 9; a[15] = 9; // dword 3 equal
    const { cpu } = runFragment([0xf2, 0xa7], {
      setup: (c) => { load(c, SRC, a); load(c, DST, b); regs(c, BigInt(SRC + 36), BigInt(DST + 36), 10n); std(c); },
    });
    // Elements 9, 8, ..., 3 are compared: 7 iterations.
    expect(cpu.reg64(RCX)).toBe(3n);
    expect(cpu.reg64(RSI)).toBe(BigInt(SRC + 8));
    expect(cpu.reg64(RDI)).toBe(BigInt(DST + 8));
    expect(cpu.rflags & ZF).toBe(ZF);
  });

  it('repe cmpsb with RCX = 0 leaves the flags alone', () => {
    const { cpu } = runFragment([0xf9, 0xf3, 0xa6], { setup: (c) => regs(c, BigInt(SRC), BigInt(DST), 0n) });
    expect(cpu.rflags & (CF | ZF)).toBe(CF);
    expect(cpu.reg64(RSI)).toBe(BigInt(SRC));
  });
});

describe('SCAS (SDM vol. 2, SCAS/SCASB/SCASW/SCASD/SCASQ)', () => {
  it('repne scasb finds a byte: RDI one past it, RCX decremented by the bytes scanned, ZF = 1', () => {
    const data = pattern(5000); data.fill(0x11); data[4321] = 0x42;
    const { cpu } = runFragment([0xf2, 0xae], {
      budget: BIG,
      setup: (c) => { load(c, DST, data); c.setReg64(RAX, 0x42n); c.setReg64(RDI, BigInt(DST)); c.setReg64(RCX, 5000n); },
    });
    expect(cpu.reg64(RDI)).toBe(BigInt(DST + 4322));
    expect(cpu.reg64(RCX)).toBe(5000n - 4322n);
    expect(cpu.rflags & ZF).toBe(ZF);
  });

  it('repne scasb that does not find the byte ends with RCX = 0 and ZF = 0', () => {
    const { cpu } = runFragment([0xf2, 0xae], {
      setup: (c) => { load(c, DST, new Uint8Array(64).fill(1)); c.setReg64(RAX, 0x42n); c.setReg64(RDI, BigInt(DST)); c.setReg64(RCX, 64n); },
    });
    expect(cpu.reg64(RCX)).toBe(0n);
    expect(cpu.reg64(RDI)).toBe(BigInt(DST + 64));
    expect(cpu.rflags & ZF).toBe(0);
  });

  it('repe scasq skips equal quadwords; flags as CMP RAX, [RDI]', () => {
    const q = [0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01];
    const mem = [...q, ...q, ...q, 0xf0, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01];
    const { cpu } = runFragment([0xf3, 0x48, 0xaf], {
      setup: (c) => { load(c, DST, mem); c.setReg64(RAX, 0x0123456789abcdefn); c.setReg64(RDI, BigInt(DST)); c.setReg64(RCX, 10n); },
    });
    expect(cpu.reg64(RCX)).toBe(6n);
    expect(cpu.reg64(RDI)).toBe(BigInt(DST + 32));
    expect(cpu.rflags & (ZF | CF)).toBe(CF); // 0x..ef - 0x..f0 borrows
  });

  it('scasw compares AX only; scasd in 32-bit mode', () => {
    const w = runFragment([0x66, 0xaf], {
      setup: (c) => { load(c, DST, [0x34, 0x12]); c.setReg64(RAX, 0xffff_1234n); c.setReg64(RDI, BigInt(DST)); },
    });
    expect(w.cpu.rflags & ZF).toBe(ZF);
    expect(w.cpu.reg64(RDI)).toBe(BigInt(DST + 2));
    const d = runFragment([0xaf], {
      mode: 32,
      setup: (c) => { load(c, DST, [1, 0, 0, 0]); c.setReg64(RAX, 2n); c.setReg64(RDI, BigInt(DST)); },
    });
    expect(d.cpu.rflags & (ZF | CF)).toBe(0);
    expect(d.cpu.reg64(RDI)).toBe(BigInt(DST + 4));
  });
});

describe('XLAT (SDM vol. 2, XLAT/XLATB)', () => {
  const table = pattern(256, 7);
  it('AL ← [RBX + AL], the rest of RAX kept', () => {
    const { cpu } = runFragment([0xd7], {
      setup: (c) => { load(c, SRC, table); c.setReg64(RBX, BigInt(SRC)); c.setReg64(RAX, 0x1234_00c8n); },
    });
    expect(cpu.reg64(RAX)).toBe(0x1234_0000n | BigInt(table[0xc8]!));
  });

  it('67h uses EBX (bits 63:32 ignored); 32-bit mode honours a segment override', () => {
    const r = runFragment([0x67, 0xd7], {
      setup: (c) => { load(c, SRC, table); c.setReg64(RBX, 0x7_0000_0000n | BigInt(SRC)); c.setReg64(RAX, 3n); },
    });
    expect(r.cpu.reg64(RAX)).toBe(BigInt(table[3]!));
    const s = runFragment([0x64, 0xd7], {
      mode: 32,
      setup: (c) => {
        c.setSegment(FS, 0x10, 0x40000, 0, 0xffffffff, c.segAttr[DS]!);
        load(c, 0x40000 + SRC, table); c.setReg64(RBX, BigInt(SRC)); c.setReg64(RAX, 0xffn);
      },
    });
    expect(s.cpu.reg64(RAX)).toBe(BigInt(table[0xff]!));
  });

  it('16-bit address size wraps BX + AL at 64 KiB', () => {
    const { cpu } = runFragment([0x67, 0xd7], {
      mode: 32,
      setup: (c) => { load(c, 0x0001, [0x99]); c.setReg64(RBX, 0x1_ffffn); c.setReg64(RAX, 2n); },
    });
    expect(cpu.reg64(RAX)).toBe(0x99n);
  });
});
