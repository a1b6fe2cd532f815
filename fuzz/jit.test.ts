/**
 * The block compiler against the interpreter: random loops of the instruction
 * forms that have compiled templates (mixed with forms the compiled code calls
 * the interpreter for) end in exactly the same state whichever way they run.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Cpu } from '../src/cpu/cpu.js';
import { run } from '../src/cpu/run.js';

const CODE = 0x1000, DATA = 0x20000, STACK = 0x30000;
const RUNS = 300 * Number(process.env.HVSIM_FUZZ_RUNS ?? 1);

// Registers a generated instruction may write: not RSP, RBX (data pointer) or R15 (loop counter).
const WRITABLE = [0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
const reg = fc.constantFrom(...WRITABLE);
const anyReg = fc.integer({ min: 0, max: 15 });
const imm32 = fc.oneof(fc.constantFrom(0, 1, -1, 0x7fffffff, -0x80000000, 0x80, 0xff), fc.integer());

function rex(w: boolean, r: number, b: number, x = 0): number[] {
  const v = 0x40 | (w ? 8 : 0) | ((r >> 3) << 2) | ((x >> 3) << 1) | (b >> 3);
  return v === 0x40 ? [] : [v];
}
const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const modrmReg = (r: number, rm: number): number => 0xc0 | ((r & 7) << 3) | (rm & 7);
/** [rbx + disp8] with disp8 a multiple of 8 in 0..120 */
const memRbx = (r: number, disp: number): number[] => [0x40 | ((r & 7) << 3) | 3, disp];

/** Operand-size choice: 64 (REX.W), 32, 16 (66h), 8 (byte opcode). */
const size = fc.constantFrom(8, 4, 2, 1);

const aluRegReg = fc.record({ op: fc.integer({ min: 0, max: 7 }), z: size, d: reg, s: anyReg, dir: fc.boolean() })
  .map(({ op, z, d, s, dir }) => {
    const p = z === 2 ? [0x66] : [];
    // Byte registers without REX would name AH..BH: keep REX so codes 4-7 are SPL..DIL, except avoid RSP.
    const base = op * 8 + (z === 1 ? 0 : 1) + (dir ? 2 : 0);
    const [r, rm] = dir ? [d, s] : [s, d];
    return [...p, ...rex(z === 8, r, rm), base, modrmReg(r, rm)];
  });

const aluRegMem = fc.record({ op: fc.integer({ min: 0, max: 7 }), z: size, r: reg, disp: fc.integer({ min: 0, max: 15 }), dir: fc.boolean() })
  .map(({ op, z, r, disp, dir }) => {
    const p = z === 2 ? [0x66] : [];
    return [...p, ...rex(z === 8, r, 3), op * 8 + (z === 1 ? 0 : 1) + (dir ? 2 : 0), ...memRbx(r, disp * 8)];
  });

const aluImm = fc.record({ op: fc.integer({ min: 0, max: 7 }), z: size, d: reg, imm: imm32, mem: fc.boolean(), disp: fc.integer({ min: 0, max: 15 }) })
  .map(({ op, z, d, imm, mem, disp }) => {
    const p = z === 2 ? [0x66] : [];
    const modrm = mem ? [0x40 | (op << 3) | 3, disp * 8] : [0xc0 | (op << 3) | (d & 7)];
    if (z === 1) return [...rex(false, 0, mem ? 3 : d), 0x80, ...modrm, imm & 0xff];
    const wide = (imm & 1) === 0;
    const body = wide ? [0x81, ...modrm, ...(z === 2 ? le32(imm).slice(0, 2) : le32(imm))] : [0x83, ...modrm, imm & 0xff];
    return [...p, ...rex(z === 8, 0, mem ? 3 : d), ...body];
  });

const incDec = fc.record({ dec: fc.boolean(), z: size, d: reg, mem: fc.boolean(), disp: fc.integer({ min: 0, max: 15 }) })
  .map(({ dec, z, d, mem, disp }) => {
    const p = z === 2 ? [0x66] : [];
    const modrm = mem ? [0x40 | ((dec ? 1 : 0) << 3) | 3, disp * 8] : [0xc0 | ((dec ? 1 : 0) << 3) | (d & 7)];
    return [...p, ...rex(z === 8, 0, mem ? 3 : d), z === 1 ? 0xfe : 0xff, ...modrm];
  });

const mov = fc.record({ z: size, d: reg, s: anyReg, kind: fc.integer({ min: 0, max: 3 }), imm: imm32, disp: fc.integer({ min: 0, max: 15 }) })
  .map(({ z, d, s, kind, imm, disp }) => {
    const p = z === 2 ? [0x66] : [];
    switch (kind) {
      case 0: return [...p, ...rex(z === 8, s, d), z === 1 ? 0x88 : 0x89, modrmReg(s, d)];
      case 1: return [...p, ...rex(z === 8, d, 3), z === 1 ? 0x8a : 0x8b, ...memRbx(d, disp * 8)];
      case 2: return [...p, ...rex(z === 8, s, 3), z === 1 ? 0x88 : 0x89, ...memRbx(s, disp * 8)];
      default: return z === 1 ? [...rex(false, 0, d), 0xb0 + (d & 7), imm & 0xff]
        : [...p, ...rex(z === 8, 0, d), 0xb8 + (d & 7), ...(z === 2 ? le32(imm).slice(0, 2) : le32(imm)), ...(z === 8 ? le32(~imm) : [])];
    }
  });

const lea = fc.record({ z: fc.constantFrom(8, 4, 2), d: reg, base: anyReg, index: anyReg, scale: fc.integer({ min: 0, max: 3 }), disp: imm32, a32: fc.boolean() })
  .map(({ z, d, base, index, scale, disp, a32 }) => {
    const p = [...(z === 2 ? [0x66] : []), ...(a32 ? [0x67] : [])];
    const idx = index === 4 ? 5 : index;
    return [...p, ...rex(z === 8, d, base, idx), 0x8d, 0x84 | ((d & 7) << 3), (scale << 6) | ((idx & 7) << 3) | (base & 7), ...le32(disp)];
  });

const pushPop = fc.record({ r: reg }).map(({ r }) => [...rex(false, 0, r), 0x50 + (r & 7), ...rex(false, 0, r), 0x58 + (r & 7)]);

/** A conditional branch over a one-byte NOP: both paths end at the same place. */
const jcc = fc.integer({ min: 0, max: 15 }).map((cc) => [0x70 + cc, 0x01, 0x90]);
const setcc = fc.record({ cc: fc.integer({ min: 0, max: 15 }), d: reg }).map(({ cc, d }) => [...rex(false, 0, d), 0x0f, 0x90 + cc, 0xc0 | (d & 7)]);
const cmov = fc.record({ cc: fc.integer({ min: 0, max: 15 }), d: reg, s: anyReg, w: fc.boolean() })
  .map(({ cc, d, s, w }) => [...rex(w, d, s), 0x0f, 0x40 + cc, modrmReg(d, s)]);
const flagOps = fc.constantFrom(0xf8, 0xf9, 0xf5).map((b) => [b]); // clc, stc, cmc

/** A flag producer straight before a conditional branch: the compiler derives the condition from it. */
const testAndBranch = fc.tuple(fc.oneof(aluRegReg, aluImm, incDec), jcc).map(([a, b]) => [...a, ...b]);

/**
 * CALL, RET, JMP and backward Jcc that blocks follow (blocks.ts links): call L; jmp M; L: ret; M:, the
 * same with a callee that returns past the JMP (add qword [rsp], 8 before its RET), which leaves the
 * block, and a loop entered in its middle.
 */
const callRet = fc.constantFrom<number[]>(
  [0xe8, 0x02, 0, 0, 0, 0xeb, 0x01, 0xc3],
  [0xe8, 0x02, 0, 0, 0, 0xeb, 0x06, 0x48, 0x83, 0x04, 0x24, 0x08, 0xc3],
  // mov r10d, 3; jmp M; L: inc r11d; M: dec r10d; jnz L: a back edge into code before the block.
  [0x41, 0xba, 3, 0, 0, 0, 0xeb, 0x03, 0x41, 0xff, 0xc3, 0x41, 0xff, 0xca, 0x75, 0xf8],
);

const instruction = fc.oneof(aluRegReg, aluRegMem, aluImm, incDec, mov, lea, pushPop, jcc, setcc, cmov, flagOps,
  testAndBranch, testAndBranch, callRet);

/** The program: 40 passes over the body, counted in R15, then HLT. */
function program(body: number[][]): Uint8Array {
  const flat = body.flat();
  const loop = [...flat, 0x49, 0xff, 0xcf, 0x0f, 0x85, ...le32(-(flat.length + 3 + 6))];
  return Uint8Array.from([0x41, 0xbf, ...le32(40), ...loop, 0xf4]);
}

function execute(code: Uint8Array, regs: number[], flags: number, data: Uint8Array, compile: boolean): Cpu {
  const cpu = new Cpu({ memorySize: 1 << 20 });
  cpu.enterFlat64();
  cpu.compileThreshold = compile ? 2 : Infinity;
  cpu.memory.load(CODE, code);
  cpu.memory.load(DATA, data);
  regs.forEach((v, k) => { cpu.gpr[k] = v; });
  cpu.gpr[2 * 4] = STACK; cpu.gpr[2 * 4 + 1] = 0;
  cpu.gpr[2 * 3] = DATA; cpu.gpr[2 * 3 + 1] = 0;
  cpu.rflags = flags;
  cpu.ripLo = CODE;
  run(cpu, 100_000);
  return cpu;
}

function snapshot(cpu: Cpu): object {
  return {
    stop: cpu.stopReason, rip: cpu.rip, insns: cpu.insnCount, rflags: cpu.rflags,
    gpr: Array.from(cpu.gpr), data: Array.from(cpu.memory.dump(DATA, 128)),
    stack: Array.from(cpu.memory.dump(STACK - 64, 64)),
  };
}

describe('block compiler = interpreter', () => {
  it('random loops end in the same registers, flags, memory and instruction count', () => {
    fc.assert(fc.property(
      fc.array(instruction, { minLength: 1, maxLength: 24 }),
      fc.array(fc.integer(), { minLength: 32, maxLength: 32 }),
      fc.integer({ min: 0, max: 0xfff }),
      fc.uint8Array({ minLength: 128, maxLength: 128 }),
      (body, regs, flagBits, data) => {
        const code = program(body);
        const flags = (flagBits & 0x8d5) | 2; // CF PF AF ZF SF OF
        const interpreted = snapshot(execute(code, regs, flags, data, false));
        const compiled = snapshot(execute(code, regs, flags, data, true));
        expect(compiled).toEqual(interpreted);
      }), { numRuns: RUNS, seed: 0x5eed });
  });
});
