import { describe, expect, it } from 'vitest';
import {
  CODE_BASE,
  DATA_BASE,
  DATA_SIZE,
  type MachineState,
  type NativeCase,
  nativeAvailable,
  runNative,
  SIG,
} from './native.js';

const RAX = 0;
const RCX = 1;
const RBX = 3;
const RSP = 4;
const RSI = 6;

const CF = 1n << 0n;
const ZF = 1n << 6n;
const DF = 1n << 10n;
const RF_BIT1 = 1n << 1n;
const MASK64 = (1n << 64n) - 1n;

function blankState(): MachineState {
  const gpr = new Array<bigint>(16).fill(0n);
  gpr[RSP] = BigInt(DATA_BASE + DATA_SIZE / 2);
  return { gpr, rflags: RF_BIT1, xmm: new Uint8Array(256), mem: new Uint8Array(DATA_SIZE) };
}

function mk(code: number[], setup?: (s: MachineState) => void): NativeCase {
  const state = blankState();
  setup?.(state);
  return { code: Uint8Array.from(code), state };
}

function run1(c: NativeCase) {
  const [r] = runNative([c]);
  expect(r).toBeDefined();
  return r!;
}

function le64(bytes: Uint8Array, off: number): bigint {
  let v = 0n;
  for (let i = 7; i >= 0; i--) v = (v << 8n) | BigInt(bytes[off + i]!);
  return v;
}

/** Small deterministic PRNG (xorshift64*) for reproducible random cases. */
function rng(seed: bigint): () => bigint {
  let x = seed & MASK64;
  return () => {
    x ^= x >> 12n;
    x ^= (x << 25n) & MASK64;
    x ^= x >> 27n;
    return (x * 0x2545f4914f6cdd1dn) & MASK64;
  };
}

describe.skipIf(!nativeAvailable())('native oracle', () => {
  it('add rax, rbx', () => {
    const r = run1(
      mk([0x48, 0x01, 0xd8], (s) => {
        s.gpr[RAX] = 5n;
        s.gpr[RBX] = 7n;
      }),
    );
    expect(r.signal).toBe(SIG.SEGV);
    expect(r.rip).toBe(BigInt(CODE_BASE + 3));
    expect(r.state.gpr[RAX]).toBe(12n);
    expect(r.state.gpr[RBX]).toBe(7n);
    expect(r.state.rflags & CF).toBe(0n);
    expect(r.state.rflags & ZF).toBe(0n);
  });

  it('add eax, ebx zero-extends and sets CF and ZF', () => {
    const r = run1(
      mk([0x01, 0xd8], (s) => {
        s.gpr[RAX] = 0xffff_ffff_ffff_ffffn;
        s.gpr[RBX] = 1n;
      }),
    );
    expect(r.signal).toBe(SIG.SEGV);
    expect(r.rip).toBe(BigInt(CODE_BASE + 2));
    expect(r.state.gpr[RAX]).toBe(0n);
    expect(r.state.rflags & CF).toBe(CF);
    expect(r.state.rflags & ZF).toBe(ZF);
  });

  it('div rcx by zero raises SIGFPE at the instruction', () => {
    const r = run1(
      mk([0x48, 0xf7, 0xf1], (s) => {
        s.gpr[RAX] = 100n;
        s.gpr[RCX] = 0n;
      }),
    );
    expect(r.signal).toBe(SIG.FPE);
    expect(r.rip).toBe(BigInt(CODE_BASE));
    expect(r.state.gpr[RAX]).toBe(100n);
  });

  it('mov [rsi], rax writes the data window', () => {
    const value = 0x1122_3344_5566_7788n;
    const r = run1(
      mk([0x48, 0x89, 0x06], (s) => {
        s.gpr[RAX] = value;
        s.gpr[RSI] = BigInt(DATA_BASE + 16);
        s.mem.fill(0xaa);
      }),
    );
    expect(r.signal).toBe(SIG.SEGV);
    expect(r.rip).toBe(BigInt(CODE_BASE + 3));
    expect(Array.from(r.state.mem.subarray(16, 24))).toEqual([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
    expect(r.state.mem[15]).toBe(0xaa);
    expect(r.state.mem[24]).toBe(0xaa);
  });

  it('push rax moves rsp down and stores rax', () => {
    const value = 0xdead_beef_cafe_f00dn;
    const sp = BigInt(DATA_BASE + 4096);
    const r = run1(
      mk([0x50], (s) => {
        s.gpr[RAX] = value;
        s.gpr[RSP] = sp;
      }),
    );
    expect(r.signal).toBe(SIG.SEGV);
    expect(r.rip).toBe(BigInt(CODE_BASE + 1));
    expect(r.state.gpr[RSP]).toBe(sp - 8n);
    expect(le64(r.state.mem, 4096 - 8)).toBe(value);
  });

  it('movdqa xmm1, xmm2 copies xmm2', () => {
    const r = run1(
      mk([0x66, 0x0f, 0x6f, 0xca], (s) => {
        for (let i = 0; i < 256; i++) s.xmm[i] = (i * 37 + 11) & 0xff;
      }),
    );
    expect(r.signal).toBe(SIG.SEGV);
    expect(r.rip).toBe(BigInt(CODE_BASE + 4));
    const init = new Uint8Array(256);
    for (let i = 0; i < 256; i++) init[i] = (i * 37 + 11) & 0xff;
    expect(Array.from(r.state.xmm.subarray(16, 32))).toEqual(Array.from(init.subarray(32, 48)));
    // Every other register is reported unchanged.
    expect(Array.from(r.state.xmm.subarray(0, 16))).toEqual(Array.from(init.subarray(0, 16)));
    expect(Array.from(r.state.xmm.subarray(32))).toEqual(Array.from(init.subarray(32)));
  });

  it('ud2 raises SIGILL at the instruction', () => {
    const r = run1(mk([0x0f, 0x0b]));
    expect(r.signal).toBe(SIG.ILL);
    expect(r.rip).toBe(BigInt(CODE_BASE));
  });

  it('jmp $ is stopped by the alarm', () => {
    const r = run1(mk([0xeb, 0xfe]));
    expect(r.signal).toBe(SIG.ALRM);
    expect(r.rip).toBe(BigInt(CODE_BASE));
  });

  it('int3 raises SIGTRAP after the instruction', () => {
    const r = run1(mk([0xcc]));
    expect(r.signal).toBe(SIG.TRAP);
    expect(r.rip).toBe(BigInt(CODE_BASE + 1));
  });

  it('initial DF=1 is visible in the result rflags', () => {
    const r = run1(mk([0x90], (s) => (s.rflags = RF_BIT1 | DF)));
    expect(r.signal).toBe(SIG.SEGV);
    expect(r.rip).toBe(BigInt(CODE_BASE + 1));
    expect(r.state.rflags & DF).toBe(DF);
    const r2 = run1(mk([0x90]));
    expect(r2.state.rflags & DF).toBe(0n);
  });

  it('all GPRs round-trip through a nop', () => {
    const r = run1(
      mk([0x90], (s) => {
        for (let i = 0; i < 16; i++) s.gpr[i] = 0x0101_0101_0101_0101n * BigInt(i + 1);
        s.gpr[RSP] = BigInt(DATA_BASE + 256);
      }),
    );
    for (let i = 0; i < 16; i++) {
      expect(r.state.gpr[i]).toBe(i === RSP ? BigInt(DATA_BASE + 256) : 0x0101_0101_0101_0101n * BigInt(i + 1));
    }
  });

  it('a syscall from the case is contained (SIGSYS) and later cases still run', () => {
    const rs = runNative([
      mk([0x0f, 0x05], (s) => (s.gpr[RAX] = 60n)), // exit(0) if it were allowed
      mk([0x48, 0x01, 0xd8], (s) => {
        s.gpr[RAX] = 1n;
        s.gpr[RBX] = 2n;
      }),
    ]);
    expect(rs[0]!.signal).toBe(31); // SIGSYS
    expect(rs[1]!.signal).toBe(SIG.SEGV);
    expect(rs[1]!.state.gpr[RAX]).toBe(3n);
  });

  it('loading FS in a case does not break the runner', () => {
    // mov fs, eax with eax = 0 (8E E0), then a normal case.
    const rs = runNative([mk([0x8e, 0xe0]), mk([0x48, 0xff, 0xc0], (s) => (s.gpr[RAX] = 41n))]);
    expect(rs[0]!.signal).toBe(SIG.SEGV);
    expect(rs[0]!.rip).toBe(BigInt(CODE_BASE + 2));
    expect(rs[1]!.state.gpr[RAX]).toBe(42n);
  });

  it('extended state does not leak between cases (YMM upper, MXCSR, x87)', () => {
    const mxcsrMem = (s: MachineState) => {
      s.gpr[RSI] = BigInt(DATA_BASE);
      s.mem.set([0xc0, 0x9f, 0, 0], 0); // 0x9FC0: FZ | RC=up | all masked
    };
    const rs = runNative([
      mk([0xc5, 0xfd, 0x76, 0xc0]), // vpcmpeqd ymm0, ymm0, ymm0
      mk([0xc4, 0xe3, 0x7d, 0x39, 0xc1, 0x01]), // vextracti128 xmm1, ymm0, 1
      mk([0x0f, 0xae, 0x16], mxcsrMem), // ldmxcsr [rsi]
      mk([0x0f, 0xae, 0x1e], (s) => (s.gpr[RSI] = BigInt(DATA_BASE))), // stmxcsr [rsi]
      mk([0xd9, 0xe8]), // fld1
      mk([0xdf, 0xe0], (s) => (s.gpr[RAX] = 0xffffn)), // fnstsw ax
    ]);
    expect(rs.map((r) => r.signal)).toEqual(new Array(6).fill(SIG.SEGV));
    expect(Array.from(rs[0]!.state.xmm.subarray(0, 16))).toEqual(new Array(16).fill(0xff));
    expect(Array.from(rs[1]!.state.xmm.subarray(16, 32))).toEqual(new Array(16).fill(0));
    expect(Array.from(rs[3]!.state.mem.subarray(0, 4))).toEqual([0x80, 0x1f, 0, 0]);
    expect(rs[5]!.state.gpr[RAX]).toBe(0n); // TOP = 0, no exceptions
  });

  it('2000 random add/sub cases match BigInt arithmetic', () => {
    const next = rng(0x1234_5678_9abc_def1n);
    const cases: NativeCase[] = [];
    const expected: { rax: bigint; cf: bigint; zf: bigint }[] = [];
    for (let i = 0; i < 2000; i++) {
      const a = next();
      const b = i % 7 === 0 ? a : next(); // some equal operands to hit ZF
      const isAdd = (next() & 1n) === 0n;
      cases.push(
        mk(isAdd ? [0x48, 0x01, 0xd8] : [0x48, 0x29, 0xd8], (s) => {
          s.gpr[RAX] = a;
          s.gpr[RBX] = b;
          s.rflags = RF_BIT1 | (next() & 0x8d5n); // random initial status flags
        }),
      );
      const rax = isAdd ? (a + b) & MASK64 : (a - b) & MASK64;
      const cf = isAdd ? (a + b > MASK64 ? CF : 0n) : a < b ? CF : 0n;
      expected.push({ rax, cf, zf: rax === 0n ? ZF : 0n });
    }
    const rs = runNative(cases);
    expect(rs).toHaveLength(2000);
    let mismatches = 0;
    rs.forEach((r, i) => {
      const e = expected[i]!;
      if (
        r.signal !== SIG.SEGV ||
        r.rip !== BigInt(CODE_BASE + 3) ||
        r.state.gpr[RAX] !== e.rax ||
        (r.state.rflags & CF) !== e.cf ||
        (r.state.rflags & ZF) !== e.zf
      ) {
        mismatches++;
      }
    });
    expect(mismatches).toBe(0);
  });
});
