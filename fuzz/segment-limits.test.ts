/**
 * Segment limit and type checks against an independent reference (SDM vol.
 * 3A, December 2024 numbering: 5.3 "Limit Checking", 5.4 "Type Checking",
 * 5.4.1 "Null Segment Selector Checking"): for random limits, offsets, access
 * sizes, expand-up or expand-down segments, B (D/B) flags, segment types and
 * access kinds, the model faults exactly when the reference says so, with
 * #SS(0) for SS and #GP(0) otherwise, both through its check function and
 * through instructions, interpreted and compiled.
 *
 * The reference is written here from the SDM, not from src/cpu/segment-limits.ts.
 * One choice is the model's: 5.3 leaves open whether an access that wraps
 * past the end of an expand-up segment whose limit is FFFFFFFFH faults; the
 * model lets it wrap, and the reference says so.
 *
 * Bounded runs with fixed seeds: HVSIM_FUZZ_RUNS multiplies the number of
 * cases, HVSIM_FUZZ_SEED moves the seeds.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Cpu, FAULT, SegAttr } from '../src/cpu/cpu.js';
import { run } from '../src/cpu/run.js';
import { CS, DS, ES, FS, GS, RAX, RBX, SS, Vector } from '../src/cpu/regs.js';
import { checkOffset } from '../src/cpu/segment-limits.js';

const SCALE = Math.max(1, Math.floor(Number(process.env.HVSIM_FUZZ_RUNS) || 1));
const SEED = Number(process.env.HVSIM_FUZZ_SEED ?? 0x5e6) | 0;
const runs = (n: number, salt: number): fc.Parameters<unknown> => ({ numRuns: n * SCALE, seed: SEED + salt });

/** Segment types of table 3-1 that matter here: the type field (bits 3:0) and whether the segment is usable. */
interface Kind { name: string; type: number; usable: boolean }
const KINDS: Kind[] = [
  { name: 'data read/write', type: 0x3, usable: true },
  { name: 'data read-only', type: 0x1, usable: true },
  { name: 'data read/write expand-down', type: 0x7, usable: true },
  { name: 'data read-only expand-down', type: 0x5, usable: true },
  { name: 'code execute/read', type: 0xb, usable: true },
  { name: 'code execute-only', type: 0x9, usable: true },
  { name: 'code execute/read conforming', type: 0xf, usable: true },
  { name: 'null (unusable)', type: 0x3, usable: false },
];

interface Access { seg: number; limit: number; offset: number; size: number; kind: Kind; big: boolean; write: boolean }

/** The SDM's rules, for protected mode outside 64-bit mode: may the access be made? */
function allowedBySdm(a: Access): boolean {
  const { type, usable } = a.kind;
  // 5.4.1: no memory reference through a null selector.
  if (!usable) return false;
  const code = (type & 8) !== 0;
  // 5.4: no writes to code or read-only data; no reads of execute-only code.
  if (a.write && (code || (type & 2) === 0)) return false;
  if (!a.write && code && (type & 2) === 0) return false;
  const first = a.offset, last = a.offset + a.size - 1;
  // 5.3: expand-down data segments hold offsets limit + 1 to FFFFFFFFH (B = 1) or FFFFH (B = 0).
  if (!code && (type & 4) !== 0) return first > a.limit && last <= (a.big ? 0xffffffff : 0xffff);
  // Expand-up: 0 to the limit (the 4-GiB case as the model chooses, see above).
  return a.limit === 0xffffffff || last <= a.limit;
}

const attrOf = (a: Access): number =>
  a.kind.usable ? SegAttr.P | SegAttr.S | a.kind.type | (a.big ? SegAttr.DB : 0) : SegAttr.UNUSABLE;

/** Limits: small, around 64 KiB, anywhere, and the 4-GiB maximum. */
const limit = fc.oneof(fc.integer({ min: 0, max: 0x3fff }), fc.integer({ min: 0xfff0, max: 0x1000f }),
  fc.nat({ max: 0xffffffff }), fc.constant(0xffffffff));

/** An access near one of the edges that matter: the limit, FFFFH, FFFFFFFFH, or anywhere. */
const access = (segs: number[], sizes: number[]): fc.Arbitrary<Access> =>
  fc.record({
    seg: fc.constantFrom(...segs), limit, size: fc.constantFrom(...sizes), kind: fc.constantFrom(...KINDS),
    big: fc.boolean(), write: fc.boolean(), edge: fc.constantFrom(-1, 0xffff, 0xffffffff),
    delta: fc.integer({ min: -20, max: 20 }), anywhere: fc.nat({ max: 0xffffffff }), far: fc.boolean(),
  }).map(({ edge, delta, anywhere, far, ...a }) => {
    const at = far ? anywhere : (edge === -1 ? a.limit : edge) + delta;
    return { ...a, offset: Math.min(0xffffffff, Math.max(0, at)) };
  });

const expected = (a: Access): number | null => (allowedBySdm(a) ? null : a.seg === SS ? Vector.SS : Vector.GP);

describe('segment limit and type checks (SDM vol. 3A 5.3, 5.4) against a reference', () => {
  it('checkOffset faults exactly when the reference forbids the access, #SS(0) for SS', () => {
    const cpu = new Cpu({ memorySize: 1 << 20 });
    cpu.enterFlat32();
    fc.assert(fc.property(access([ES, CS, SS, DS, FS, GS], [1, 2, 4, 8, 10, 16, 512]), (a) => {
      cpu.setSegment(a.seg, 0x10, 0, 0, a.limit, attrOf(a));
      let vector: number | null = null;
      try { checkOffset(cpu, a.seg, a.offset, a.size, a.write); } catch (e) {
        if (e !== FAULT) throw e;
        vector = cpu.excVector;
        expect(cpu.excCode).toBe(0);
      }
      expect(vector).toBe(expected(a));
    }), runs(2000, 1));
  });

  it('MOV to and from memory faults as the reference says, interpreted and compiled', () => {
    // MOV r/m, r (88/89) and MOV r, r/m (8A/8B) with [EBX], through a segment-override prefix.
    const PREFIX = [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65];
    fc.assert(fc.property(access([ES, SS, DS, FS, GS], [1, 2, 4]), (a) => {
      const opcode = (a.write ? 0x88 : 0x8a) | (a.size === 1 ? 0 : 1);
      const code = [PREFIX[a.seg]!, ...(a.size === 2 ? [0x66] : []), opcode, 0x03, 0xf4];
      for (const threshold of [Infinity, 1]) {
        const cpu = new Cpu({ memorySize: 1 << 20 });
        cpu.enterFlat32();
        cpu.deliverExceptions = false;
        cpu.compileThreshold = threshold;
        cpu.memory.load(0x1000, Uint8Array.from(code));
        cpu.ripLo = 0x1000;
        cpu.gpr[2 * RBX] = a.offset | 0;
        cpu.gpr[2 * RAX] = 0x5a;
        cpu.setSegment(a.seg, 0x10, 0, 0, a.limit, attrOf(a));
        const stop = run(cpu, 10);
        const vector = expected(a);
        expect(stop).toEqual(vector === null ? { kind: 'halt' } : { kind: 'exception', vector, errorCode: 0 });
      }
    }), runs(300, 2));
  });
});
