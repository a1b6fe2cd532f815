/**
 * Segment limit and type checks on memory accesses outside 64-bit mode:
 * SDM vol. 3A 5.3 "Limit Checking", 5.3.1 "Limit Checking in 64-bit Mode",
 * 5.4 "Type Checking", 5.4.1 "Null Segment Selector Checking"; vol. 2, the
 * "Protected Mode Exceptions" and "Real-Address Mode Exceptions" of each
 * instruction (#GP(0) for CS, DS, ES, FS, GS; #SS(0) for SS), and REP
 * ("the registers are updated after each iteration").
 *
 * The segments' hidden parts are set directly (Cpu.setSegment): these tests
 * are about the checks on each access, not about loading segment registers.
 * Each case runs twice, interpreted and compiled (compileThreshold 1), and
 * the two must agree.
 */
import { describe, expect, it } from 'vitest';
import { Cpu, SegAttr, type StopReason } from '../../src/cpu/cpu.js';
import { run } from '../../src/cpu/run.js';
import { CS, DS, ES, FS, RAX, RBP, RBX, RCX, RDI, RSI, RSP, SS, Vector } from '../../src/cpu/regs.js';

const CODE = 0x1000, HLT = 0xf4;
/** Access rights: a present non-system segment of `type`, 32-bit (B/D = 1) unless `big` is false. */
const seg = (type: number, big = true): number => SegAttr.P | SegAttr.S | type | (big ? SegAttr.DB : 0);
const DATA_RW = seg(3), DATA_RO = seg(1), DATA_RW_DOWN = seg(7), CODE_XO = seg(9), CODE_XR = seg(0xb);
/** A base away from 0, so that offsets and linear addresses differ. */
const BASE = 0x100000;

type Mode = 'protected32' | 'real' | 'long64';

interface Case {
  mode?: Mode;
  code: number[];
  regs?: Partial<Record<number, number>>;
  /** Segments to set: [register, limit, access rights] with base BASE. */
  segs?: [number, number, number][];
  /** Anything else before the run. */
  setup?: (cpu: Cpu) => void;
  budget?: number;
}

/** A processor in `mode` with flat segments, the code at CS:CODE followed by HLT. */
function machine(c: Case, compileThreshold: number): Cpu {
  const cpu = new Cpu({ memorySize: 4 << 20 });
  const mode = c.mode ?? 'protected32';
  if (mode === 'long64') cpu.enterFlat64();
  else cpu.enterFlat32();
  if (mode === 'real') {
    cpu.cr0 &= ~1;
    for (let s = 0; s < 6; s++) cpu.setSegment(s, 0, 0, 0, 0xffff, seg(s === CS ? 0xb : 3, false));
  }
  cpu.deliverExceptions = false;
  cpu.compileThreshold = compileThreshold;
  cpu.memory.load(CODE, Uint8Array.from([...c.code, HLT]));
  cpu.ripLo = CODE;
  cpu.gpr[2 * RSP] = 0x9000;
  for (const [r, v] of Object.entries(c.regs ?? {})) cpu.gpr[2 * Number(r)] = v!;
  for (const [s, limit, attr] of c.segs ?? []) cpu.setSegment(s, cpu.segSel[s]!, BASE, 0, limit, attr);
  c.setup?.(cpu);
  return cpu;
}

interface Outcome { cpu: Cpu; stop: StopReason }

/** Runs the case interpreted and compiled; expects the same registers, RIP and count; returns the interpreted run. */
function runBoth(c: Case): Outcome {
  const runs = [Infinity, 1].map((threshold) => {
    const cpu = machine(c, threshold);
    return { cpu, stop: run(cpu, c.budget ?? 10_000) };
  });
  const [a, b] = runs as [Outcome, Outcome];
  expect(b.stop).toEqual(a.stop);
  expect(Array.from(b.cpu.gpr)).toEqual(Array.from(a.cpu.gpr));
  expect(b.cpu.ripLo).toBe(a.cpu.ripLo);
  expect(b.cpu.insnCount).toBe(a.cpu.insnCount);
  return a;
}

const GP0: StopReason = { kind: 'exception', vector: Vector.GP, errorCode: 0 };
const SS0: StopReason = { kind: 'exception', vector: Vector.SS, errorCode: 0 };
const HALT: StopReason = { kind: 'halt' };

/** MOV EAX, [EBX] (8B 03), MOV [EBX], EAX (89 03), MOV AL, [EBX] (8A 03). */
const LOAD32 = [0x8b, 0x03], STORE32 = [0x89, 0x03], LOAD8 = [0x8a, 0x03];

/** Runs `code` with EBX = offset and DS as given; returns the stop reason. */
function access(code: number[], offset: number, limit: number, attr: number, s = DS): StopReason {
  return runBoth({ code, regs: { [RBX]: offset | 0 }, segs: [[s, limit, attr]] }).stop;
}

describe('SDM vol. 3A 5.3: expand-up segments, offsets 0 to the limit', () => {
  it('the last byte of the segment is in; one past is #GP(0)', () => {
    expect(access(LOAD8, 0xfff, 0xfff, DATA_RW)).toEqual(HALT);
    expect(access(LOAD8, 0x1000, 0xfff, DATA_RW)).toEqual(GP0);
  });

  it('a doubleword ending on the last byte is in; one straddling the limit is #GP(0)', () => {
    expect(access(LOAD32, 0xffc, 0xfff, DATA_RW)).toEqual(HALT);
    expect(access(LOAD32, 0xffd, 0xfff, DATA_RW)).toEqual(GP0);
    expect(access(STORE32, 0xffe, 0xfff, DATA_RW)).toEqual(GP0);
  });

  it('a faulting instruction changes nothing: RIP at it, the destination unchanged', () => {
    const { cpu, stop } = runBoth({ code: LOAD32, regs: { [RBX]: 0xffd, [RAX]: 0x1234 }, segs: [[DS, 0xfff, DATA_RW]] });
    expect(stop).toEqual(GP0);
    expect(cpu.ripLo).toBe(CODE);
    expect(cpu.gpr[2 * RAX]).toBe(0x1234);
  });

  it('the data is read at base + offset', () => {
    const { cpu } = runBoth({
      code: LOAD32, regs: { [RBX]: 0x10 }, segs: [[DS, 0xfff, DATA_RW]],
      setup: (c) => c.memory.load(BASE + 0x10, Uint8Array.of(0x78, 0x56, 0x34, 0x12)),
    });
    expect(cpu.gpr[2 * RAX]).toBe(0x12345678);
  });

  it('an override names the segment checked: FS with a small limit', () => {
    expect(access([0x64, ...LOAD32], 0x100, 0xff, DATA_RW, FS)).toEqual(GP0);
    expect(access([0x64, ...LOAD32], 0xfc, 0xff, DATA_RW, FS)).toEqual(HALT);
  });

  it('a read-modify-write faults before writing or changing flags (ADD [EBX], EAX)', () => {
    const { cpu, stop } = runBoth({
      code: [0x01, 0x03], regs: { [RBX]: 0xffe }, segs: [[DS, 0xfff, DATA_RW]],
    });
    expect(stop).toEqual(GP0);
    expect(cpu.memory.read8(BASE + 0xffe)).toBe(0);
  });
});

describe('SDM vol. 3A 5.3: expand-down segments, offsets limit + 1 to the upper bound', () => {
  it('32-bit (B = 1): limit + 1 up to FFFFFFFFH', () => {
    expect(access(LOAD8, 0xfff, 0xfff, DATA_RW_DOWN)).toEqual(GP0);
    expect(access(LOAD8, 0x1000, 0xfff, DATA_RW_DOWN)).toEqual(HALT);
    expect(access(LOAD32, 0xfffffffc, 0xfff, DATA_RW_DOWN)).toEqual(HALT);
    expect(access(LOAD32, 0xffe, 0xfff, DATA_RW_DOWN)).toEqual(GP0);
  });

  it('16-bit (B = 0): limit + 1 up to FFFFH', () => {
    const down16 = seg(7, false);
    expect(access(LOAD32, 0xfffc, 0xfff, down16)).toEqual(HALT);
    expect(access(LOAD32, 0xfffd, 0xfff, down16)).toEqual(GP0);
    expect(access(LOAD8, 0x10000, 0xfff, down16)).toEqual(GP0);
  });
});

describe('vol. 2 "Protected Mode Exceptions": #SS(0) for SS, #GP(0) for the others', () => {
  it('an SS override beyond the limit is #SS(0)', () => {
    expect(access([0x36, ...LOAD32], 0x1000, 0xfff, DATA_RW, SS)).toEqual(SS0);
  });

  it('[EBP] uses SS by default: #SS(0)', () => {
    const c: Case = { code: [0x8b, 0x45, 0x00], regs: { [RBP]: 0x2000 }, segs: [[SS, 0xfff, DATA_RW]] };
    expect(runBoth(c).stop).toEqual(SS0);
  });
});

describe('SDM vol. 3A 5.4: type checks', () => {
  it('a read-only data segment can be read, not written: #GP(0)', () => {
    expect(access(LOAD32, 0x10, 0xfff, DATA_RO)).toEqual(HALT);
    expect(access(STORE32, 0x10, 0xfff, DATA_RO)).toEqual(GP0);
    expect(access([0xff, 0x03], 0x10, 0xfff, DATA_RO)).toEqual(GP0); // INC dword [EBX]
  });

  it('an execute-only code segment cannot be read through CS: #GP(0)', () => {
    const c = (attr: number): Case => ({ code: [0x2e, ...LOAD32], regs: { [RBX]: 0x10 }, setup: (cpu) => {
      cpu.setSegment(CS, 0x08, 0, 0, 0xffffffff, attr);
    } });
    expect(runBoth(c(CODE_XO)).stop).toEqual(GP0);
    expect(runBoth(c(CODE_XR)).stop).toEqual(HALT);
  });

  it('a code segment is never writable, readable or not: #GP(0)', () => {
    const { stop } = runBoth({ code: [0x2e, ...STORE32], regs: { [RBX]: 0x10 }, setup: (cpu) => {
      cpu.setSegment(CS, 0x08, 0, 0, 0xffffffff, CODE_XR);
    } });
    expect(stop).toEqual(GP0);
  });

  it('a code segment loaded as a data segment is read by the same rule (readable: yes)', () => {
    expect(access(LOAD32, 0x10, 0xfff, CODE_XR)).toEqual(HALT);
    expect(access(LOAD32, 0x10, 0xfff, CODE_XO)).toEqual(GP0);
  });

  it('5.4.1: a data access through a null (unusable) segment register is #GP(0)', () => {
    const { stop } = runBoth({ code: LOAD32, regs: { [RBX]: 0x10 }, setup: (cpu) => {
      cpu.setSegment(DS, 0, 0, 0, 0, SegAttr.UNUSABLE);
    } });
    expect(stop).toEqual(GP0);
  });
});

describe('string instructions (vol. 2, REP: the registers are updated after each iteration)', () => {
  it('REP STOSB stops at the ES limit with ECX and EDI showing the bytes stored', () => {
    const { cpu, stop } = runBoth({
      code: [0xf3, 0xaa], regs: { [RAX]: 0xab, [RDI]: 0xff0, [RCX]: 0x20 }, segs: [[ES, 0xfff, DATA_RW]],
    });
    expect(stop).toEqual(GP0);
    expect(cpu.gpr[2 * RDI]).toBe(0x1000);
    expect(cpu.gpr[2 * RCX]).toBe(0x10);
    expect(cpu.memory.read8(BASE + 0xfff)).toBe(0xab);
    expect(cpu.memory.read8(BASE + 0x1000)).toBe(0);
  });

  it('a long REP STOSD (the page-at-a-time path) stops at the last whole element', () => {
    const { cpu, stop } = runBoth({
      code: [0xf3, 0xab], regs: { [RAX]: -1, [RDI]: 0, [RCX]: 0x1000 }, segs: [[ES, 0x1ffe, DATA_RW]],
    });
    expect(stop).toEqual(GP0);
    expect(cpu.gpr[2 * RDI]).toBe(0x1ffc);
    expect(cpu.gpr[2 * RCX]).toBe(0x1000 - 0x7ff);
    expect(cpu.memory.read8(BASE + 0x1ffb)).toBe(0xff);
    expect(cpu.memory.read8(BASE + 0x1ffc)).toBe(0);
  });

  it('REP MOVSB checks the source in DS (#GP) and the destination in ES', () => {
    const src = runBoth({
      code: [0xf3, 0xa4], regs: { [RSI]: 0x800, [RDI]: 0, [RCX]: 0x1000 }, segs: [[DS, 0xfff, DATA_RW]],
    });
    expect(src.stop).toEqual(GP0);
    expect(src.cpu.gpr[2 * RSI]).toBe(0x1000);
    expect(src.cpu.gpr[2 * RCX]).toBe(0x800);
    const dst = runBoth({
      code: [0xf3, 0xa4], regs: { [RSI]: 0, [RDI]: 0, [RCX]: 0x10 }, segs: [[ES, 0xfff, DATA_RO]],
    });
    expect(dst.stop).toEqual(GP0);
    expect(dst.cpu.gpr[2 * RCX]).toBe(0x10);
  });

  it('LODSD through an SS override beyond the limit is #SS(0); XLAT checks DS', () => {
    expect(runBoth({ code: [0x36, 0xad], regs: { [RSI]: 0xffe }, segs: [[SS, 0xfff, DATA_RW]] }).stop).toEqual(SS0);
    expect(runBoth({ code: [0xd7], regs: { [RBX]: 0xff0, [RAX]: 0x10 }, segs: [[DS, 0xfff, DATA_RW]] }).stop).toEqual(GP0);
  });
});

describe('SDM vol. 3A 5.3, vol. 2 PUSH/POP/CALL: the stack against the SS limit (#SS(0))', () => {
  it('PUSH below an expand-down stack\'s limit is #SS(0), ESP unchanged', () => {
    // PUSH EAX; PUSH EAX with ESP = 0x8008 and SS expand-down with limit 0x7fff.
    const { cpu, stop } = runBoth({ code: [0x50, 0x50, 0x50], regs: { [RSP]: 0x8008 }, segs: [[SS, 0x7fff, DATA_RW_DOWN]] });
    expect(stop).toEqual(SS0);
    expect(cpu.gpr[2 * RSP]).toBe(0x8000);
    expect(cpu.ripLo).toBe(CODE + 2);
  });

  it('POP above an expand-up stack\'s limit is #SS(0)', () => {
    const { cpu, stop } = runBoth({ code: [0x58], regs: { [RSP]: 0xfffe }, segs: [[SS, 0xffff, DATA_RW]] });
    expect(stop).toEqual(SS0);
    expect(cpu.gpr[2 * RSP]).toBe(0xfffe);
  });

  it('CALL pushes its return address within the limit or raises #SS(0)', () => {
    const c = (sp: number): Case => ({ code: [0xe8, 0, 0, 0, 0], regs: { [RSP]: sp }, segs: [[SS, 0x7fff, DATA_RW_DOWN]] });
    expect(runBoth(c(0x8004)).stop).toEqual(HALT);
    expect(runBoth(c(0x8002)).stop).toEqual(SS0);
  });
});

describe('real-address mode (vol. 2 "Real-Address Mode Exceptions"): the cached limit, no type checks', () => {
  it('a word at offset FFFFH is #GP(0); through SS ([BP]) #SS(0)', () => {
    const word = (code: number[], r: number): StopReason => runBoth({ mode: 'real', code, regs: { [r]: 0xffff } }).stop;
    expect(word([0x8b, 0x07], RBX)).toEqual(GP0); // MOV AX, [BX]
    expect(word([0x8b, 0x46, 0x00], RBP)).toEqual(SS0); // MOV AX, [BP+0]
    expect(word([0x8a, 0x07], RBX)).toEqual(HALT); // MOV AL, [BX]
  });

  it('writes through CS are allowed (no type checks outside protected mode)', () => {
    expect(runBoth({ mode: 'real', code: [0x2e, 0x88, 0x07], regs: { [RBX]: 0x2000 } }).stop).toEqual(HALT);
  });

  it('a larger cached limit ("unreal mode") reaches beyond 64 KiB', () => {
    // MOV EAX, [EBX] with 67h and 66h prefixes in 16-bit code.
    const c: Case = { mode: 'real', code: [0x67, 0x66, 0x8b, 0x03], regs: { [RBX]: 0x20000 },
      setup: (cpu) => cpu.setSegment(DS, 0, 0, 0, 0xffffffff, DATA_RW) };
    expect(runBoth(c).stop).toEqual(HALT);
  });
});

describe('SDM vol. 3A 5.3.1: no limit or type checks in 64-bit mode', () => {
  it('DS with a small limit and read-only type is not consulted', () => {
    const { stop } = runBoth({
      mode: 'long64', code: [0x89, 0x03, 0x8b, 0x03], regs: { [RBX]: 0x20000 },
      setup: (cpu) => { cpu.setSegment(DS, 0x10, 0, 0, 0xff, DATA_RO); cpu.setSegment(SS, 0x10, 0, 0, 0xff, DATA_RO); },
    });
    expect(stop).toEqual(HALT);
  });

  it('a PUSH in 64-bit mode ignores the SS limit', () => {
    const { stop } = runBoth({ mode: 'long64', code: [0x50, 0x58], setup: (cpu) => cpu.setSegment(SS, 0x10, 0, 0, 0xff, DATA_RW) });
    expect(stop).toEqual(HALT);
  });
});

describe('SDM vol. 3A 5.3: instruction fetch beyond the CS limit is #GP(0)', () => {
  // NOP; NOP; MOV EAX, imm32 (5 bytes at CODE + 2 .. CODE + 6).
  const code = [0x90, 0x90, 0xb8, 1, 2, 3, 4];
  const withCsLimit = (limit: number): Case => ({ code, setup: (cpu) => {
    cpu.setSegment(CS, 0x08, 0, 0, limit, CODE_XR);
  } });

  it('the instruction that crosses the limit faults, after those before it retired', () => {
    const { cpu, stop } = runBoth(withCsLimit(CODE + 5));
    expect(stop).toEqual(GP0);
    expect(cpu.ripLo).toBe(CODE + 2);
    expect(cpu.insnCount).toBe(2);
  });

  it('an instruction ending on the limit runs; the next, beyond it, faults', () => {
    const { cpu, stop } = runBoth(withCsLimit(CODE + 6));
    expect(stop).toEqual(GP0);
    expect(cpu.ripLo).toBe(CODE + 7);
    expect(cpu.gpr[2 * RAX]).toBe(0x04030201);
  });

  it('a block decoded under a larger limit is cut at the new one', () => {
    for (const threshold of [Infinity, 1]) {
      const cpu = machine({ code }, threshold);
      expect(run(cpu, 100)).toEqual(HALT);
      cpu.ripLo = CODE; cpu.halted = false;
      cpu.setSegment(CS, 0x08, 0, 0, CODE + 5, CODE_XR);
      expect(run(cpu, 100)).toEqual(GP0);
      expect(cpu.ripLo).toBe(CODE + 2);
    }
  });

  it('RIP itself beyond the limit faults before the fetch is translated', () => {
    const { cpu, stop } = runBoth({ code, setup: (c) => { c.setSegment(CS, 0x08, 0, 0, CODE - 1, CODE_XR); } });
    expect(stop).toEqual(GP0);
    expect(cpu.insnCount).toBe(0);
  });
});

describe('SDM vol. 2 JMP, Jcc, CALL (near, relative): a target beyond the CS limit is #GP(0) at the branch', () => {
  // NOP; then the branch to CODE + 0x40, beyond a CS limit of CODE + 0x20.
  const limited = (branch: number[], regs: Case['regs'] = {}): Case => ({ code: [0x90, ...branch], regs, setup: (cpu) => {
    cpu.setSegment(CS, 0x08, 0, 0, CODE + 0x20, CODE_XR);
  } });
  const cases: [string, number[], number][] = [
    ['JMP rel32', [0xe9, 0x3a, 0, 0, 0], 0], // next at CODE + 6: 6 + 3AH = 40H
    ['JZ rel8, taken', [0x31, 0xc0, 0x74, 0x3b], 1], // XOR EAX, EAX sets ZF; next at CODE + 5: 5 + 3BH = 40H
    ['CALL rel32', [0xe8, 0x3a, 0, 0, 0], 0],
  ];
  for (const [name, branch, before] of cases) {
    it(`${name}: RIP at the branch, ESP unchanged`, () => {
      const { cpu, stop } = runBoth(limited(branch));
      expect(stop).toEqual(GP0);
      expect(cpu.ripLo).toBe(CODE + 1 + (before === 1 ? 2 : 0));
      expect(cpu.gpr[2 * RSP]).toBe(0x9000);
      expect(cpu.insnCount).toBe(1 + before);
    });
  }

  it('a branch not taken to such a target does not fault', () => {
    // MOV EAX, 1; TEST EAX, EAX: ZF = 0, so the JZ beyond the limit is not taken.
    const { stop } = runBoth(limited([0xb8, 1, 0, 0, 0, 0x85, 0xc0, 0x74, 0x30]));
    expect(stop).toEqual(HALT);
  });
});

describe('SDM vol. 3A 5.3: compiled blocks check as the interpreter does', () => {
  it('a hot loop storing up to the limit faults at the first store beyond it', () => {
    // loop: MOV [EBX], EAX; ADD EBX, 4; DEC ECX; JNZ loop
    const { cpu, stop } = runBoth({
      code: [0x89, 0x03, 0x83, 0xc3, 0x04, 0x49, 0x75, 0xf8], regs: { [RBX]: 0, [RCX]: 1000, [RAX]: 7 },
      segs: [[DS, 0x3ff, DATA_RW]],
    });
    expect(stop).toEqual(GP0);
    expect(cpu.gpr[2 * RBX]).toBe(0x400);
    expect(cpu.gpr[2 * RCX]).toBe(1000 - 256);
    expect(cpu.ripLo).toBe(CODE);
  });

  it('a hot loop reading through SS faults with #SS(0)', () => {
    // loop: MOV EAX, [EBP]; ADD EBP, 4; DEC ECX; JNZ loop
    const { cpu, stop } = runBoth({
      code: [0x8b, 0x45, 0x00, 0x83, 0xc5, 0x04, 0x49, 0x75, 0xf7], regs: { [RBP]: 0, [RCX]: 1000 },
      segs: [[SS, 0x3ff, DATA_RW]],
    });
    expect(stop).toEqual(SS0);
    expect(cpu.gpr[2 * RBP]).toBe(0x400);
  });
});

describe('SDM vol. 2 PUSH: a segment register pushed with a 32- or 64-bit operand size moves 16 bits into the bottom of its slot', () => {
  it('32-bit: the slot\'s upper half keeps what was there (PUSH DS)', () => {
    // mov eax, -1; push eax; pop eax; push ds; pop eax
    const { cpu, stop } = runBoth({ code: [0xb8, 0xff, 0xff, 0xff, 0xff, 0x50, 0x58, 0x1e, 0x58] });
    expect(stop).toEqual(HALT);
    expect(cpu.gpr[2 * RAX]! >>> 0).toBe(0xffff0000 + cpu.segSel[DS]!);
    expect(cpu.gpr[2 * RSP]).toBe(0x9000);
  });

  it('64-bit: bits 63:16 keep what was there (PUSH FS)', () => {
    // mov rax, -1; push rax; pop rax; push fs; pop rax
    const { cpu, stop } = runBoth({ mode: 'long64', code: [0x48, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff, 0x50, 0x58, 0x0f, 0xa0, 0x58] });
    expect(stop).toEqual(HALT);
    expect([cpu.gpr[2 * RAX]! >>> 0, cpu.gpr[2 * RAX + 1]]).toEqual([0xffff0000 + cpu.segSel[FS]!, -1]);
    expect(cpu.gpr[2 * RSP]).toBe(0x9000);
  });
});
