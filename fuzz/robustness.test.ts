/**
 * DESIGN, "Errors": no guest byte sequence makes the model throw a JavaScript
 * error at its user or hang the host process; an instruction budget bounds every run.
 *
 * Random code (and random registers) run in flat 64-bit and 32-bit protected mode:
 * `run` must return a StopReason of kind 'halt', 'exception' or 'budget' without
 * throwing, and retire at most the budget (exactly the budget when it stops for
 * it). A second property gives the guest 64 KiB of RAM and places the code at its
 * end, so execution runs off into unbacked memory (reads all ones, writes
 * dropped: memory.ts). HVSIM_FUZZ_RUNS multiplies the number of cases.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Cpu } from '../src/cpu/cpu.js';
import { run } from '../src/cpu/run.js';
import { CODE_ADDRESS, STACK_TOP } from '../src/cpu/testing.js';
import { CF, DF, OF, PF, RSP, SF, ZF } from '../src/cpu/regs.js';
import { runInGuest } from '../src/vmx/testing.js';
import { attachVmx } from '../src/vmx/vmx.js';

const SCALE = Math.max(1, Math.floor(Number(process.env.HVSIM_FUZZ_RUNS) || 1));
const BUDGET = 2000;
const SEED = 0x0b0c5;

/** Register values that reach edge cases: zero, small, sign boundaries, all ones, non-canonical. */
const arbReg = fc.oneof(
  fc.constantFrom(0n, 1n, 0x7fn, 0x80n, 0xffffn, 0x7fffffffn, 0x80000000n, 0xffffffffn,
    0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn, 0x0000800000000000n),
  fc.bigInt({ min: 0n, max: 0xffffn }),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
);

interface Case {
  code: Uint8Array;
  /** null: all registers zero (RSP at the stack); else 16 values, RSP among them. */
  regs: bigint[] | null;
  flags: number;
}

const arbCase = (maxLength: number): fc.Arbitrary<Case> => fc.record({
  code: fc.uint8Array({ minLength: 1, maxLength }),
  regs: fc.option(fc.array(arbReg, { minLength: 16, maxLength: 16 }), { nil: null }),
  flags: fc.constantFrom(0, CF, ZF, CF | ZF | SF | OF | PF, DF, DF | CF),
});

interface Outcome { kind: string; insns: number; vector: number }

/**
 * Runs one case. Any JavaScript error escaping `run`, a stop kind other than
 * halt/exception/budget, or a count over the budget is a failure.
 */
function runCase(c: Case, mode: 64 | 32, memorySize: number, codeAt: number, stackTop: number): Outcome {
  const cpu = new Cpu({ memorySize });
  if (mode === 64) cpu.enterFlat64(); else cpu.enterFlat32();
  cpu.memory.load(codeAt, c.code);
  cpu.ripLo = codeAt;
  if (c.regs !== null) {
    for (let r = 0; r < 16; r++) cpu.setReg64(r, mode === 64 ? c.regs[r]! : c.regs[r]! & 0xffffffffn);
  } else {
    cpu.gpr[2 * RSP] = stackTop;
  }
  cpu.rflags = c.flags;
  const stop = run(cpu, BUDGET); // throws only on a model defect: fails the property
  expect(['halt', 'exception', 'budget']).toContain(stop.kind);
  expect(cpu.insnCount).toBeLessThanOrEqual(BUDGET);
  let vector = -1;
  if (stop.kind === 'budget') expect(cpu.insnCount).toBe(BUDGET);
  if (stop.kind === 'exception') {
    vector = stop.vector;
    // INT n stops with vector n: any of the 256 vectors (SDM vol. 3A, 6.2).
    expect(Number.isInteger(stop.vector) && stop.vector >= 0 && stop.vector < 256).toBe(true);
    expect(stop.errorCode === null || Number.isInteger(stop.errorCode)).toBe(true);
  }
  return { kind: stop.kind, insns: cpu.insnCount, vector };
}

/** Counts of stop kinds and exception vectors, printed once as information. */
function summarize(title: string, outcomes: Outcome[]): string {
  const kinds = new Map<string, number>();
  for (const o of outcomes) {
    const k = o.kind === 'exception' ? `#${o.vector}` : o.kind;
    kinds.set(k, (kinds.get(k) ?? 0) + 1);
  }
  const insns = outcomes.reduce((s, o) => s + o.insns, 0);
  return `${title}: ${outcomes.length} runs, ${insns} instructions; ` +
    [...kinds.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ');
}

describe('robustness: random guest code never throws or runs past the budget (DESIGN, Errors)', () => {
  for (const mode of [64, 32] as const) {
    it(`${mode}-bit: random bytes at ${CODE_ADDRESS.toString(16)}h in 16 MiB, the rest zero`, () => {
      const outcomes: Outcome[] = [];
      fc.assert(fc.property(arbCase(300), (c) => {
        outcomes.push(runCase(c, mode, 16 * 1024 * 1024, CODE_ADDRESS, STACK_TOP));
      }), { seed: SEED + mode, numRuns: 1000 * SCALE });
      console.log(summarize(`robustness ${mode}-bit, 16 MiB`, outcomes));
      expect(outcomes.length).toBeGreaterThanOrEqual(1000 * SCALE);
    });

    it(`${mode}-bit: code at the end of 64 KiB runs off into unbacked memory`, () => {
      const size = 64 * 1024;
      const outcomes: Outcome[] = [];
      fc.assert(fc.property(arbCase(64), (c) => {
        outcomes.push(runCase(c, mode, size, size - c.code.length, 0x8000));
      }), { seed: SEED + 1 + mode, numRuns: 500 * SCALE });
      console.log(summarize(`robustness ${mode}-bit, 64 KiB`, outcomes));
      expect(outcomes.length).toBeGreaterThanOrEqual(500 * SCALE);
    });
  }

  it('a fixed case: bytes past the end of RAM read as FFh, FF FF is #UD (SDM vol. 2, table A-6: FF /7)', () => {
    // nop at the last byte of 64 KiB, then the fetch continues into unbacked memory.
    const out = runCase({ code: Uint8Array.from([0x90]), regs: null, flags: 0 }, 64, 64 * 1024, 64 * 1024 - 1, 0x8000);
    expect(out).toEqual({ kind: 'exception', insns: 1, vector: 6 });
  });

  it('a fixed case: REP STOSQ with RCX = 2^64 - 1 stops at the budget (SDM vol. 2, REP: interruptible)', () => {
    const regs = new Array<bigint>(16).fill(0n);
    regs[1] = (1n << 64n) - 1n; // RCX
    regs[4] = 0x8000n;          // RSP
    regs[7] = 0x10000n;         // RDI
    const out = runCase({ code: Uint8Array.from([0xf3, 0x48, 0xab]), regs, flags: 0 }, 64, 1024 * 1024, CODE_ADDRESS, 0x8000);
    expect(out).toEqual({ kind: 'budget', insns: BUDGET, vector: -1 });
  });

  it('a fixed case: an endless loop stops at the budget (SDM vol. 2, JMP)', () => {
    const out = runCase({ code: Uint8Array.from([0xeb, 0xfe]), regs: null, flags: 0 }, 32, 1024 * 1024, CODE_ADDRESS, 0x8000);
    expect(out).toEqual({ kind: 'budget', insns: BUDGET, vector: -1 });
  });
});

describe('robustness with exceptions delivered through random tables (DESIGN: Errors)', () => {
  it('random code over a random IDT and GDT ends in halt, shutdown or budget, never a throw or a hang', () => {
    const kinds = new Map<string, number>();
    fc.assert(fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 128 }),
      fc.uint8Array({ minLength: 4096, maxLength: 4096 }),
      fc.uint8Array({ minLength: 64, maxLength: 64 }),
      fc.boolean(),
      (code, idt, gdt, longMode) => {
        const cpu = new Cpu({ memorySize: 1 << 20 });
        if (longMode) cpu.enterFlat64(); else cpu.enterFlat32();
        cpu.deliverExceptions = true;
        cpu.memory.load(0x20000, idt);
        cpu.memory.load(0x30000, gdt);
        cpu.idtrLo = 0x20000; cpu.idtrLimit = 4095;
        cpu.gdtrLo = 0x30000; cpu.gdtrLimit = 63;
        cpu.memory.load(CODE_ADDRESS, code);
        cpu.ripLo = CODE_ADDRESS;
        cpu.gpr[2 * RSP] = STACK_TOP;
        const stop = run(cpu, BUDGET);
        kinds.set(stop.kind, (kinds.get(stop.kind) ?? 0) + 1);
        expect(['halt', 'shutdown', 'budget']).toContain(stop.kind);
        expect(cpu.insnCount).toBeLessThanOrEqual(BUDGET);
      }), { numRuns: 400 * SCALE, seed: SEED });
    expect(kinds.size).toBeGreaterThan(1);
  });
});

describe('robustness with VMX (DESIGN: Errors)', () => {
  /** VMX instructions with [rax] / rax, rbx operands, and plain bytes between them. */
  const VMX_PIECES: number[][] = [
    [0xf3, 0x0f, 0xc7, 0x30], [0x66, 0x0f, 0xc7, 0x30], [0x0f, 0xc7, 0x30], [0x0f, 0xc7, 0x38],
    [0x0f, 0x78, 0xc3], [0x0f, 0x79, 0xc3], [0x0f, 0x78, 0x18], [0x0f, 0x79, 0x18],
    [0x0f, 0x01, 0xc2], [0x0f, 0x01, 0xc3], [0x0f, 0x01, 0xc1], [0x0f, 0x01, 0xc4], [0x0f, 0x01, 0xd4],
    [0x66, 0x0f, 0x38, 0x80, 0x18], [0x66, 0x0f, 0x38, 0x81, 0x18],
  ];
  /** Operand values: pointers to 4-KByte-aligned regions in memory, the encodings of real fields, and noise. */
  const arbOperand = fc.oneof(
    fc.constantFrom(0x20000n, 0x21000n, 0x22000n, 0x10000n, 0x20008n),
    fc.constantFrom(0x681en, 0x4000n, 0x4002n, 0x401en, 0x6c16n, 0x4402n, 0x2800n, 0x0n),
    arbReg,
  );
  const arbVmxCode = fc.array(fc.oneof(
    fc.constantFrom(...VMX_PIECES).map((p) => Uint8Array.from(p)),
    fc.uint8Array({ minLength: 1, maxLength: 6 }),
  ), { minLength: 1, maxLength: 24 }).map((parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  });

  it('random sequences of VMX instructions on a VMX-capable processor end in halt, exception, shutdown or budget', () => {
    fc.assert(fc.property(arbVmxCode, arbOperand, arbOperand, (code, rax, rbx) => {
      const cpu = new Cpu({ memorySize: 4 << 20 });
      cpu.enterFlat64();
      attachVmx(cpu);
      cpu.cr0 |= 0x20; cpu.cr4 |= 0x2000; cpu.msrs.featureControl = 5;
      for (const at of [0x20000, 0x21000, 0x22000]) cpu.memory.write32(at, 4);
      cpu.memory.load(CODE_ADDRESS, code);
      cpu.ripLo = CODE_ADDRESS;
      cpu.gpr[2 * RSP] = STACK_TOP;
      cpu.setReg64(0, rax); cpu.setReg64(3, rbx);
      const stop = run(cpu, BUDGET);
      expect(['halt', 'exception', 'shutdown', 'budget']).toContain(stop.kind);
      expect(cpu.insnCount).toBeLessThanOrEqual(BUDGET);
    }), { numRuns: 400 * SCALE, seed: SEED + 7 });
  });

  it('random guest code in VMX non-root operation ends in a VM exit, halt, shutdown or budget', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 200 }), (code) => {
      const r = runInGuest(code, undefined, { budget: BUDGET });
      expect(r.stop).not.toBeNull();
      expect(['halt', 'exception', 'shutdown', 'budget']).toContain(r.stop!.kind);
      expect(r.cpu.insnCount).toBeLessThanOrEqual(BUDGET + 1);
    }), { numRuns: 300 * SCALE, seed: SEED + 8 });
  });
});
