import { describe, expect, it } from 'vitest';
import type { Cpu } from '../cpu.js';
import { DATA_ADDRESS, runFragment, type FragmentResult } from '../testing.js';

const OSFXSR = 1 << 9;
const D = DATA_ADDRESS; // 16-byte aligned; RSI points here in every test
const GP0 = { kind: 'exception', vector: 13, errorCode: 0 };
const UD = { kind: 'exception', vector: 6, errorCode: null };
const NM = { kind: 'exception', vector: 7, errorCode: null };

// Recurring register values: lanes named after the register they start in.
const A = 0xa3a3a3a3_a2a2a2a2_a1a1a1a1_a0a0a0a0n;
const B = 0xb3b3b3b3_b2b2b2b2_b1b1b1b1_b0b0b0b0n;
const BYTES0 = 0x0f0e0d0c_0b0a0908_07060504_03020100n; // byte k = k
const BYTES1 = 0x1f1e1d1c_1b1a1918_17161514_13121110n; // byte k = 0x10 + k
const WORDS = 0x7777_6666_5555_4444_3333_2222_1111_0000n; // word k = 0x1111 * k

function hex(s: string): number[] {
  return s.trim().split(/\s+/).map((b) => parseInt(b, 16));
}

function setX(cpu: Cpu, n: number, v: bigint): void {
  for (let k = 0; k < 4; k++) cpu.xmm[4 * n + k] = Number((v >> BigInt(32 * k)) & 0xffffffffn) | 0;
}

function getX(cpu: Cpu, n: number): bigint {
  let v = 0n;
  for (let k = 3; k >= 0; k--) v = (v << 32n) | BigInt(cpu.xmm[4 * n + k]! >>> 0);
  return v;
}

function poke(cpu: Cpu, addr: number, v: bigint, size = 16): void {
  const b = new Uint8Array(size);
  for (let k = 0; k < size; k++) b[k] = Number((v >> BigInt(8 * k)) & 0xffn);
  cpu.memory.load(addr, b);
}

function peek(cpu: Cpu, addr: number, size = 16): bigint {
  const b = cpu.memory.dump(addr, size);
  let v = 0n;
  for (let k = size - 1; k >= 0; k--) v = (v << 8n) | BigInt(b[k]!);
  return v;
}

interface Setup {
  /** XMM register values. */
  x?: Record<number, bigint>;
  /** General-purpose register values. */
  r?: Record<number, bigint>;
  /** Memory: [address, value, size in bytes]. */
  m?: [number, bigint, number?][];
  /** Leave CR4.OSFXSR clear. */
  noOsfxsr?: boolean;
  cr0?: number;
}

/** Runs `code` (hex bytes) with CR4.OSFXSR set, RSI = DATA_ADDRESS and the given state. */
function run(code: string, s: Setup = {}): FragmentResult {
  return runFragment(hex(code), {
    setup: (c) => {
      if (!s.noOsfxsr) c.cr4 |= OSFXSR;
      if (s.cr0 !== undefined) c.cr0 |= s.cr0;
      c.setReg64(6, BigInt(D));
      for (const [n, v] of Object.entries(s.x ?? {})) setX(c, Number(n), v);
      for (const [n, v] of Object.entries(s.r ?? {})) c.setReg64(Number(n), v);
      for (const [a, v, size] of s.m ?? []) poke(c, a, v, size);
    },
  });
}

/** Runs a two-operand xmm0, xmm1 instruction and returns the new xmm0. */
function op01(code: string, x0: bigint, x1: bigint): bigint {
  const { cpu, stop } = run(code, { x: { 0: x0, 1: x1 } });
  expect(stop.kind).toBe('halt');
  return getX(cpu, 0);
}

describe('SSE availability checks (SDM vol. 3A, 13.1.3; vol. 2 exception tables)', () => {
  it('CR4.OSFXSR = 0 makes an SSE instruction #UD', () => {
    const { cpu, stop } = run('0f 10 06', { noOsfxsr: true, m: [[D, A]] });
    expect(stop).toEqual(UD);
    expect(getX(cpu, 0)).toBe(0n);
  });

  it('CR0.EM = 1 makes an SSE instruction #UD', () => {
    expect(run('66 0f ef c0', { cr0: 1 << 2 }).stop).toEqual(UD);
  });

  it('CR0.TS = 1 makes an SSE instruction #NM', () => {
    expect(run('66 0f ef c0', { cr0: 1 << 3 }).stop).toEqual(NM);
  });

  it('#UD for CR0.EM ranks above #NM for CR0.TS (SDM vol. 3A, 6.9)', () => {
    expect(run('66 0f ef c0', { cr0: (1 << 2) | (1 << 3) }).stop).toEqual(UD);
  });

  it('LDMXCSR, PMOVMSKB and MOVD make the checks too', () => {
    expect(run('0f ae 16', { noOsfxsr: true }).stop).toEqual(UD);
    expect(run('66 0f d7 c0', { cr0: 1 << 3 }).stop).toEqual(NM);
    expect(run('66 0f 6e c0', { noOsfxsr: true }).stop).toEqual(UD);
  });

  it('MOVNTI is not an SSE-state instruction: no CR4.OSFXSR check (SDM vol. 2, MOVNTI)', () => {
    const { cpu, stop } = run('0f c3 06', { noOsfxsr: true, r: { 0: 0x12345678n } });
    expect(stop.kind).toBe('halt');
    expect(peek(cpu, D, 8)).toBe(0x12345678n);
  });

  it('the MMX forms (no prefix) are not implemented: #UD', () => {
    expect(run('0f fc c1').stop).toEqual(UD); // paddb mm0, mm1
    expect(run('0f ef c0').stop).toEqual(UD); // pxor mm0, mm0
    expect(run('0f 71 f0 04').stop).toEqual(UD); // psllw mm0, 4
  });
});

describe('128-bit moves (SDM vol. 2, MOVUPS/MOVUPD/MOVAPS/MOVAPD/MOVDQA/MOVDQU/LDDQU/MOVNTxx)', () => {
  it('movups xmm0, [rsi+1] loads unaligned', () => {
    const { cpu } = run('0f 10 46 01', { m: [[D + 1, BYTES1]] });
    expect(getX(cpu, 0)).toBe(BYTES1);
  });

  it('movups [rsi+1], xmm2 stores 16 bytes unaligned and nothing else', () => {
    const { cpu } = run('0f 11 56 01', { x: { 2: BYTES1 } });
    expect(peek(cpu, D + 1)).toBe(BYTES1);
    expect(peek(cpu, D, 1)).toBe(0n);
    expect(peek(cpu, D + 17, 1)).toBe(0n);
  });

  it('movupd loads and stores unaligned', () => {
    // movupd xmm3, [rsi+3]; movupd [rsi+0x25], xmm3
    const { cpu } = run('66 0f 10 5e 03 66 0f 11 5e 25', { m: [[D + 3, A]] });
    expect(getX(cpu, 3)).toBe(A);
    expect(peek(cpu, D + 0x25)).toBe(A);
  });

  it('movups xmm9, xmm2 copies registers (REX.R)', () => {
    const { cpu } = run('44 0f 10 ca', { x: { 2: B, 9: A } });
    expect(getX(cpu, 9)).toBe(B);
  });

  it('movaps/movapd/movdqa load and store aligned operands', () => {
    // movaps xmm1, [rsi]; movaps [rsi+16], xmm1; movapd xmm10, [rsi+16]; movdqa xmm2, [rsi];
    // movdqa [rsi+32], xmm11
    const { cpu, stop } = run(
      '0f 28 0e 0f 29 4e 10 66 44 0f 28 56 10 66 0f 6f 16 66 44 0f 7f 5e 20',
      { m: [[D, A]], x: { 11: B } },
    );
    expect(stop.kind).toBe('halt');
    expect(getX(cpu, 1)).toBe(A);
    expect(peek(cpu, D + 16)).toBe(A);
    expect(getX(cpu, 10)).toBe(A);
    expect(getX(cpu, 2)).toBe(A);
    expect(peek(cpu, D + 32)).toBe(B);
  });

  it('register forms of the stores: movaps xmm0, xmm1 (0F 29 /r, mod 11)', () => {
    const { cpu } = run('0f 29 c8', { x: { 0: A, 1: B } });
    expect(getX(cpu, 0)).toBe(B);
  });

  it('movdqa xmm12, xmm3 and movdqu xmm4, xmm12', () => {
    const { cpu } = run('66 44 0f 6f e3 f3 41 0f 6f e4', { x: { 3: A } });
    expect(getX(cpu, 12)).toBe(A);
    expect(getX(cpu, 4)).toBe(A);
  });

  it('movdqu loads and stores unaligned', () => {
    // movdqu xmm2, [rsi+7]; movdqu [rsi+0x29], xmm2
    const { cpu, stop } = run('f3 0f 6f 56 07 f3 0f 7f 56 29', { m: [[D + 7, BYTES0]] });
    expect(stop.kind).toBe('halt');
    expect(getX(cpu, 2)).toBe(BYTES0);
    expect(peek(cpu, D + 0x29)).toBe(BYTES0);
  });

  it('lddqu xmm6, [rsi+3] loads unaligned; its register form is #UD', () => {
    const { cpu } = run('f2 0f f0 76 03', { m: [[D + 3, B]] });
    expect(getX(cpu, 6)).toBe(B);
    expect(run('f2 0f f0 c1').stop).toEqual(UD);
  });

  it('movntdq and movntps store aligned; their register forms are #UD', () => {
    // movntdq [rsi], xmm5; movntps [rsi+16], xmm6
    const { cpu } = run('66 0f e7 2e 0f 2b 76 10', { x: { 5: A, 6: B } });
    expect(peek(cpu, D)).toBe(A);
    expect(peek(cpu, D + 16)).toBe(B);
    expect(run('66 0f e7 c1').stop).toEqual(UD);
    expect(run('0f 2b c1').stop).toEqual(UD);
  });

  it('a store across a page boundary that faults on the second page writes nothing', () => {
    // movdqu [rsi+0xff8], xmm1 spans pages 0x10 and 0x11; page 0x11 faults (SDM vol. 3A, 6.5: faults restart cleanly)
    const { cpu, stop } = runFragment(hex('f3 0f 7f 8e f8 0f 00 00'), {
      setup: (c) => {
        c.cr4 |= OSFXSR;
        c.setReg64(6, BigInt(D));
        setX(c, 1, A);
        c.mmu.translator = {
          translate: (lo, hi) => ((lo >>> 12) === 0x11 ? c.raise(14, 2) : hi * 0x100000 + (lo >>> 12)),
        };
      },
    });
    expect(stop).toEqual({ kind: 'exception', vector: 14, errorCode: 2 });
    expect(peek(cpu, D + 0xff8, 8)).toBe(0n);
  });

  it('misaligned movaps/movapd/movdqa loads are #GP(0) and leave the register (SDM vol. 2, MOVAPS)', () => {
    for (const code of ['0f 28 4e 08', '66 0f 28 4e 04', '66 0f 6f 4e 01']) {
      const { cpu, stop } = run(code, { x: { 1: B }, m: [[D, A, 32]] });
      expect(stop).toEqual(GP0);
      expect(getX(cpu, 1)).toBe(B);
    }
  });

  it('misaligned movaps/movapd/movdqa/movntdq/movntps stores are #GP(0) and write nothing', () => {
    for (const code of ['0f 29 4e 08', '66 0f 29 4e 04', '66 0f 7f 4e 24', '66 0f e7 4e 08', '0f 2b 4e 04']) {
      const { cpu, stop } = run(code, { x: { 1: B } });
      expect(stop).toEqual(GP0);
      expect(peek(cpu, D, 64)).toBe(0n);
    }
  });
});

describe('scalar moves (SDM vol. 2, MOVSS, MOVSD)', () => {
  it('movss xmm0, xmm1 replaces lane 0 only', () => {
    expect(op01('f3 0f 10 c1', A, B)).toBe(0xa3a3a3a3_a2a2a2a2_a1a1a1a1_b0b0b0b0n);
  });

  it('movss xmm0, [rsi] zeroes lanes 1-3', () => {
    const { cpu } = run('f3 0f 10 06', { x: { 0: A }, m: [[D, 0xffffffff_12345678n, 8]] });
    expect(getX(cpu, 0)).toBe(0x12345678n);
  });

  it('movss [rsi+2], xmm0 writes 4 bytes', () => {
    const { cpu } = run('f3 0f 11 46 02', { x: { 0: A } });
    expect(peek(cpu, D, 8)).toBe(0x0000a0a0_a0a00000n);
  });

  it('movss xmm0, xmm1 in the store form (F3 0F 11, mod 11) merges too', () => {
    expect(op01('f3 0f 11 c8', A, B)).toBe(0xa3a3a3a3_a2a2a2a2_a1a1a1a1_b0b0b0b0n);
  });

  it('movsd xmm0, xmm1 replaces the low quadword only', () => {
    expect(op01('f2 0f 10 c1', A, B)).toBe(0xa3a3a3a3_a2a2a2a2_b1b1b1b1_b0b0b0b0n);
    expect(op01('f2 0f 11 c8', A, B)).toBe(0xa3a3a3a3_a2a2a2a2_b1b1b1b1_b0b0b0b0n);
  });

  it('movsd xmm0, [rsi] zeroes the high quadword; movsd [rsi+0x12], xmm0 writes 8 bytes', () => {
    const { cpu } = run('f2 0f 10 06 f2 0f 11 46 12', { x: { 0: A }, m: [[D, 0x01234567_89abcdefn, 8]] });
    expect(getX(cpu, 0)).toBe(0x01234567_89abcdefn);
    expect(peek(cpu, D + 0x10)).toBe(0x000000_01234567_89abcdef_0000n);
  });

  it('scalar memory operands need no alignment', () => {
    const { cpu, stop } = run('f2 0f 10 46 03', { m: [[D + 3, 0x1122334455667788n, 8]] });
    expect(stop.kind).toBe('halt');
    expect(getX(cpu, 0)).toBe(0x1122334455667788n);
  });
});

describe('MOVD/MOVQ (SDM vol. 2, MOVD/MOVQ; MOVQ)', () => {
  it('movd xmm0, eax zero-extends to 128 bits', () => {
    const { cpu } = run('66 0f 6e c0', { x: { 0: A }, r: { 0: 0xfedcba98_76543210n } });
    expect(getX(cpu, 0)).toBe(0x76543210n);
  });

  it('movq xmm0, rax (66 REX.W 0F 6E)', () => {
    const { cpu } = run('66 48 0f 6e c0', { x: { 0: A }, r: { 0: 0xfedcba98_76543210n } });
    expect(getX(cpu, 0)).toBe(0xfedcba98_76543210n);
  });

  it('movd eax, xmm1 zeroes bits 63:32 of RAX; movq rax, xmm1 copies 64 bits', () => {
    const r1 = run('66 0f 7e c8', { x: { 1: B }, r: { 0: -1n } });
    expect(r1.cpu.reg64(0)).toBe(0xb0b0b0b0n);
    const r2 = run('66 48 0f 7e c8', { x: { 1: B }, r: { 0: -1n } });
    expect(r2.cpu.reg64(0)).toBe(0xb1b1b1b1_b0b0b0b0n);
  });

  it('movq r9, xmm15 and movq xmm15, r9 (REX.W.R.B)', () => {
    const r1 = run('66 4d 0f 7e f9', { x: { 15: A } });
    expect(r1.cpu.reg64(9)).toBe(0xa1a1a1a1_a0a0a0a0n);
    const r2 = run('66 4d 0f 6e f9', { x: { 15: A }, r: { 9: 0x8000000000000001n } });
    expect(getX(r2.cpu, 15)).toBe(0x8000000000000001n);
  });

  it('movd xmm2, [rsi] and movd [rsi+0x14], xmm2', () => {
    const { cpu } = run('66 0f 6e 16 66 0f 7e 56 14', { x: { 2: A }, m: [[D, 0x01234567_89abcdefn, 8]] });
    expect(getX(cpu, 2)).toBe(0x89abcdefn);
    expect(peek(cpu, D + 0x10)).toBe(0x89abcdef_00000000n);
  });

  it('movq xmm4, xmm5 (F3 0F 7E) zeroes bits 127:64', () => {
    const { cpu } = run('f3 0f 7e e5', { x: { 4: A, 5: B } });
    expect(getX(cpu, 4)).toBe(0xb1b1b1b1_b0b0b0b0n);
  });

  it('movq xmm3, [rsi+1] (F3 0F 7E) loads unaligned and zeroes bits 127:64', () => {
    const { cpu } = run('f3 0f 7e 5e 01', { x: { 3: A }, m: [[D + 1, 0x01234567_89abcdefn, 8]] });
    expect(getX(cpu, 3)).toBe(0x01234567_89abcdefn);
  });

  it('movq [rsi+1], xmm3 (66 0F D6) writes 8 bytes', () => {
    const { cpu } = run('66 0f d6 5e 01', { x: { 3: A } });
    expect(peek(cpu, D)).toBe(0xa1a1a1a1_a0a0a0a0_00n);
  });

  it('movq xmm5, xmm0 (66 0F D6, mod 11) zeroes bits 127:64 of the destination', () => {
    const { cpu } = run('66 0f d6 c5', { x: { 0: A, 5: B } });
    expect(getX(cpu, 5)).toBe(0xa1a1a1a1_a0a0a0a0n);
  });

  it('movd and movdqu work in 32-bit protected mode', () => {
    // movdqu xmm0, [esi]; movd eax, xmm0
    const { cpu, stop } = runFragment(hex('f3 0f 6f 06 66 0f 7e c0'), {
      mode: 32,
      setup: (c) => { c.cr4 |= OSFXSR; c.setReg64(6, BigInt(D)); poke(c, D, A); },
    });
    expect(stop.kind).toBe('halt');
    expect(getX(cpu, 0)).toBe(A);
    expect(cpu.reg64(0)).toBe(0xa0a0a0a0n);
  });
});

describe('half moves (SDM vol. 2, MOVLPS/MOVHPS/MOVLPD/MOVHPD/MOVHLPS/MOVLHPS)', () => {
  const M = 0x01234567_89abcdefn;

  it('movlps/movlpd xmm0, [rsi] replace the low quadword', () => {
    for (const code of ['0f 12 06', '66 0f 12 06']) {
      const { cpu } = run(code, { x: { 0: A }, m: [[D, M, 8]] });
      expect(getX(cpu, 0)).toBe(0xa3a3a3a3_a2a2a2a2_01234567_89abcdefn);
    }
  });

  it('movhps/movhpd xmm0, [rsi] replace the high quadword', () => {
    for (const code of ['0f 16 06', '66 0f 16 06']) {
      const { cpu } = run(code, { x: { 0: A }, m: [[D, M, 8]] });
      expect(getX(cpu, 0)).toBe(0x01234567_89abcdef_a1a1a1a1_a0a0a0a0n);
    }
  });

  it('movlps/movlpd [rsi], xmm0 store the low quadword; movhps/movhpd the high one', () => {
    for (const code of ['0f 13 06', '66 0f 13 06']) {
      expect(peek(run(code, { x: { 0: A } }).cpu, D)).toBe(0xa1a1a1a1_a0a0a0a0n);
    }
    for (const code of ['0f 17 06', '66 0f 17 06']) {
      expect(peek(run(code, { x: { 0: A } }).cpu, D)).toBe(0xa3a3a3a3_a2a2a2a2n);
    }
  });

  it('movhlps xmm0, xmm1 (0F 12, mod 11) moves the high quadword of xmm1 to the low of xmm0', () => {
    expect(op01('0f 12 c1', A, B)).toBe(0xa3a3a3a3_a2a2a2a2_b3b3b3b3_b2b2b2b2n);
  });

  it('movlhps xmm0, xmm1 (0F 16, mod 11) moves the low quadword of xmm1 to the high of xmm0', () => {
    expect(op01('0f 16 c1', A, B)).toBe(0xb1b1b1b1_b0b0b0b0_a1a1a1a1_a0a0a0a0n);
  });

  it('the register forms of MOVLPD/MOVHPD and of the stores are #UD', () => {
    for (const code of ['66 0f 12 c1', '66 0f 16 c1', '0f 13 c1', '0f 17 c1', '66 0f 13 c1']) {
      expect(run(code).stop).toEqual(UD);
    }
  });
});

describe('MOVNTI (SDM vol. 2, MOVNTI)', () => {
  it('movnti [rsi], eax stores 32 bits; movnti [rsi+8], rax 64', () => {
    const { cpu } = run('0f c3 06 48 0f c3 46 08', { r: { 0: 0xfedcba98_76543210n }, m: [[D, -1n]] });
    expect(peek(cpu, D)).toBe(0xfedcba98_76543210_ffffffff_76543210n);
  });

  it('has no register form: #UD', () => {
    expect(run('0f c3 c0').stop).toEqual(UD);
  });
});

describe('logic (SDM vol. 2, PAND/PANDN/POR/PXOR, ANDPS/ANDNPS/ORPS/XORPS, ANDPD/ANDNPD/ORPD/XORPD)', () => {
  const X = 0x00ff00ff_f0f0f0f0_0000ffff_ccccccccn;
  const Y = 0x0f0f0f0f_ff00ff00_ffff0000_aaaaaaaan;
  const AND = 0x000f000f_f000f000_00000000_88888888n;
  const ANDN = 0x0f000f00_0f000f00_ffff0000_22222222n;
  const OR = 0x0fff0fff_fff0fff0_ffffffff_eeeeeeeen;
  const XOR = 0x0ff00ff0_0ff00ff0_ffffffff_66666666n;
  const cases: [string, string, bigint][] = [
    ['pand', '66 0f db c1', AND], ['pandn', '66 0f df c1', ANDN],
    ['por', '66 0f eb c1', OR], ['pxor', '66 0f ef c1', XOR],
    ['andps', '0f 54 c1', AND], ['andnps', '0f 55 c1', ANDN],
    ['orps', '0f 56 c1', OR], ['xorps', '0f 57 c1', XOR],
    ['andpd', '66 0f 54 c1', AND], ['andnpd', '66 0f 55 c1', ANDN],
    ['orpd', '66 0f 56 c1', OR], ['xorpd', '66 0f 57 c1', XOR],
  ];
  it.each(cases)('%s xmm0, xmm1', (_name, code, expected) => {
    expect(op01(code, X, Y)).toBe(expected);
  });

  it('pand xmm0, [rsi] and xorps xmm0, [rsi] read aligned memory', () => {
    expect(getX(run('66 0f db 06', { x: { 0: X }, m: [[D, Y]] }).cpu, 0)).toBe(AND);
    expect(getX(run('0f 57 06', { x: { 0: X }, m: [[D, Y]] }).cpu, 0)).toBe(XOR);
  });

  it('pxor xmm8, [rsi+8] is #GP(0): legacy SSE m128 operands must be aligned (SDM vol. 2, PXOR)', () => {
    const { cpu, stop } = run('66 44 0f ef 46 08', { x: { 8: X } });
    expect(stop).toEqual(GP0);
    expect(getX(cpu, 8)).toBe(X);
  });

  it('pxor xmm0, xmm0 zeroes the register', () => {
    expect(op01('66 0f ef c0', A, B)).toBe(0n);
  });
});

describe('packed add and subtract (SDM vol. 2, PADDB/W/D/Q, PSUBB/W/D/Q)', () => {
  const P = 0x80000000_00000001_ffffffff_7fff80ffn;
  const Q = 0xffffffff_ffffffff_00000001_80010101n;
  const cases: [string, string, bigint][] = [
    ['paddb', '66 0f fc c1', 0x7fffffff_ffffff00_ffffff00_ff008100n],
    ['paddw', '66 0f fd c1', 0x7fffffff_ffff0000_ffff0000_00008200n],
    ['paddd', '66 0f fe c1', 0x7fffffff_00000000_00000000_00008200n],
    ['paddq', '66 0f d4 c1', 0x80000000_00000000_00000001_00008200n],
    ['psubb', '66 0f f8 c1', 0x81010101_01010102_fffffffe_fffe7ffen],
    ['psubw', '66 0f f9 c1', 0x80010001_00010002_fffffffe_fffe7ffen],
    ['psubd', '66 0f fa c1', 0x80000001_00000002_fffffffe_fffe7ffen],
    ['psubq', '66 0f fb c1', 0x80000000_00000002_fffffffd_fffe7ffen],
  ];
  it.each(cases)('%s xmm0, xmm1 wraps per element', (_name, code, expected) => {
    expect(op01(code, P, Q)).toBe(expected);
  });

  it('paddb xmm0, [rsi]', () => {
    const { cpu } = run('66 0f fc 06', { x: { 0: P }, m: [[D, Q]] });
    expect(getX(cpu, 0)).toBe(0x7fffffff_ffffff00_ffffff00_ff008100n);
  });

  it('paddq xmm0, [rsi+4] is #GP(0)', () => {
    expect(run('66 0f d4 46 04').stop).toEqual(GP0);
  });
});

describe('compares and byte min/max (SDM vol. 2, PCMPEQB/W/D, PCMPGTB/W/D, PMINUB, PMAXUB)', () => {
  const C1 = 0x80000000_00000005_12345678_00ff807fn;
  const C2 = 0x7fffffff_00000005_12355678_01ff7f80n;
  const cases: [string, string, bigint][] = [
    ['pcmpeqb', '66 0f 74 c1', 0x00000000_ffffffff_ff00ffff_00ff0000n],
    ['pcmpeqw', '66 0f 75 c1', 0x00000000_ffffffff_0000ffff_00000000n],
    ['pcmpeqd', '66 0f 76 c1', 0x00000000_ffffffff_00000000_00000000n],
    ['pcmpgtb', '66 0f 64 c1', 0x00ffffff_00000000_00000000_000000ffn],
    ['pcmpgtw', '66 0f 65 c1', 0x0000ffff_00000000_00000000_00000000n],
    ['pcmpgtd', '66 0f 66 c1', 0n],
    ['pminub', '66 0f da c1', 0x7f000000_00000005_12345678_00ff7f7fn],
    ['pmaxub', '66 0f de c1', 0x80ffffff_00000005_12355678_01ff8080n],
  ];
  it.each(cases)('%s xmm0, xmm1', (_name, code, expected) => {
    expect(op01(code, C1, C2)).toBe(expected);
  });

  it('pcmpgtd compares signed doublewords', () => {
    expect(op01('66 0f 66 c1', C2, C1)).toBe(0xffffffff_00000000_ffffffff_ffffffffn);
  });
});

describe('PMOVMSKB (SDM vol. 2, PMOVMSKB)', () => {
  it('pmovmskb eax, xmm0 gathers the byte sign bits and zeroes the rest of RAX', () => {
    const { cpu } = run('66 0f d7 c0', { x: { 0: 0x80000000_00000005_12345678_00ff807fn }, r: { 0: -1n } });
    expect(cpu.reg64(0)).toBe(0x8006n);
  });

  it('pmovmskb r10d, xmm13 (REX.R.B)', () => {
    const { cpu } = run('66 45 0f d7 d5', { x: { 13: (1n << 128n) - 1n } });
    expect(cpu.reg64(10)).toBe(0xffffn);
  });

  it('has no memory form: #UD', () => {
    expect(run('66 0f d7 06').stop).toEqual(UD);
  });
});

describe('shuffles (SDM vol. 2, PSHUFD, PSHUFLW, PSHUFHW, SHUFPS, SHUFPD)', () => {
  it('pshufd xmm0, xmm1, 0x1b reverses the doublewords', () => {
    expect(op01('66 0f 70 c1 1b', A, B)).toBe(0xb0b0b0b0_b1b1b1b1_b2b2b2b2_b3b3b3b3n);
  });

  it('pshufd xmm0, [rsi], 0 broadcasts doubleword 0', () => {
    const { cpu } = run('66 0f 70 06 00', { m: [[D, 0xdeadbeefn]] });
    expect(getX(cpu, 0)).toBe(0xdeadbeef_deadbeef_deadbeef_deadbeefn);
  });

  it('pshufd xmm0, xmm0 reads the source before writing', () => {
    expect(op01('66 0f 70 c0 1b', A, B)).toBe(0xa0a0a0a0_a1a1a1a1_a2a2a2a2_a3a3a3a3n);
  });

  it('pshuflw xmm0, xmm1, 0x1b reverses the low words and copies the high quadword', () => {
    expect(op01('f2 0f 70 c1 1b', A, WORDS)).toBe(0x7777_6666_5555_4444_0000_1111_2222_3333n);
  });

  it('pshufhw xmm0, xmm1, 0x1b reverses the high words and copies the low quadword', () => {
    expect(op01('f3 0f 70 c1 1b', A, WORDS)).toBe(0x4444_5555_6666_7777_3333_2222_1111_0000n);
  });

  it('shufps xmm0, xmm1, 0x4e takes two lanes from each', () => {
    expect(op01('0f c6 c1 4e', A, B)).toBe(0xb1b1b1b1_b0b0b0b0_a3a3a3a3_a2a2a2a2n);
  });

  it('shufpd xmm0, xmm1, 2', () => {
    expect(op01('66 0f c6 c1 02', A, B)).toBe(0xb3b3b3b3_b2b2b2b2_a1a1a1a1_a0a0a0a0n);
  });

  it('pshufd with a misaligned memory operand is #GP(0)', () => {
    expect(run('66 0f 70 46 01 00').stop).toEqual(GP0);
  });
});

describe('unpack and pack (SDM vol. 2, PUNPCKLBW.../PUNPCKHBW..., PACKUSWB)', () => {
  const cases: [string, string, bigint][] = [
    ['punpcklbw', '66 0f 60 c1', 0x17071606_15051404_13031202_11011000n],
    ['punpcklwd', '66 0f 61 c1', 0x17160706_15140504_13120302_11100100n],
    ['punpckldq', '66 0f 62 c1', 0x17161514_07060504_13121110_03020100n],
    ['punpcklqdq', '66 0f 6c c1', 0x17161514_13121110_07060504_03020100n],
    ['punpckhbw', '66 0f 68 c1', 0x1f0f1e0e_1d0d1c0c_1b0b1a0a_19091808n],
    ['punpckhwd', '66 0f 69 c1', 0x1f1e0f0e_1d1c0d0c_1b1a0b0a_19180908n],
    ['punpckhdq', '66 0f 6a c1', 0x1f1e1d1c_0f0e0d0c_1b1a1918_0b0a0908n],
    ['punpckhqdq', '66 0f 6d c1', 0x1f1e1d1c_1b1a1918_0f0e0d0c_0b0a0908n],
  ];
  it.each(cases)('%s xmm0, xmm1', (_name, code, expected) => {
    expect(op01(code, BYTES0, BYTES1)).toBe(expected);
  });

  it('punpcklbw xmm0, xmm0 doubles each low byte', () => {
    expect(op01('66 0f 60 c0', BYTES0, 0n)).toBe(0x07070606_05050404_03030202_01010000n);
  });

  it('packuswb xmm0, xmm1 saturates signed words to unsigned bytes', () => {
    const x0 = 0x0080_007f_ffff_8000_7fff_0100_00ff_0000n;
    const x1 = 0x0010_00fe_0200_fffe_0004_0003_0002_0001n;
    expect(op01('66 0f 67 c1', x0, x1)).toBe(0x10feff00_04030201_807f0000_ffffff00n);
  });
});

describe('shifts (SDM vol. 2, PSLLW/D/Q, PSRLW/D/Q, PSRAW/D, PSLLDQ, PSRLDQ)', () => {
  const SH = 0x8421_0ff0_f00f_1234_8000_0001_7fff_ffffn;
  const PSLLW4 = 0x4210_ff00_00f0_2340_0000_0010_fff0_fff0n;
  const PSRLW4 = 0x0842_00ff_0f00_0123_0800_0000_07ff_0fffn;
  const PSRAW4 = 0xf842_00ff_ff00_0123_f800_0000_07ff_ffffn;
  const PSLLD4 = 0x4210ff00_00f12340_00000010_fffffff0n;
  const PSRLD4 = 0x084210ff_0f00f123_08000000_07ffffffn;
  const PSRAD4 = 0xf84210ff_ff00f123_f8000000_07ffffffn;
  const PSLLQ4 = 0x4210ff0f_00f12340_00000017_fffffff0n;
  const PSRLQ4 = 0x084210ff_0f00f123_08000000_17ffffffn;

  const imm: [string, string, bigint][] = [
    ['psllw', '66 0f 71 f0 04', PSLLW4], ['psrlw', '66 0f 71 d0 04', PSRLW4],
    ['psraw', '66 0f 71 e0 04', PSRAW4], ['pslld', '66 0f 72 f0 04', PSLLD4],
    ['psrld', '66 0f 72 d0 04', PSRLD4], ['psrad', '66 0f 72 e0 04', PSRAD4],
    ['psllq', '66 0f 73 f0 04', PSLLQ4], ['psrlq', '66 0f 73 d0 04', PSRLQ4],
  ];
  it.each(imm)('%s xmm0, 4', (_name, code, expected) => {
    expect(op01(code, SH, 0n)).toBe(expected);
  });

  const byXmm: [string, string, bigint][] = [
    ['psllw', '66 0f f1 c1', PSLLW4], ['psrlw', '66 0f d1 c1', PSRLW4],
    ['psraw', '66 0f e1 c1', PSRAW4], ['pslld', '66 0f f2 c1', PSLLD4],
    ['psrld', '66 0f d2 c1', PSRLD4], ['psrad', '66 0f e2 c1', PSRAD4],
    ['psllq', '66 0f f3 c1', PSLLQ4], ['psrlq', '66 0f d3 c1', PSRLQ4],
  ];
  it.each(byXmm)('%s xmm0, xmm1 takes the count from bits 63:0 only', (_name, code, expected) => {
    expect(op01(code, SH, 0xffffffff_ffffffff_00000000_00000004n)).toBe(expected);
  });

  it('psllq xmm14, 33 and psrlq xmm14, 33 move bits across the doubleword halves', () => {
    expect(getX(run('66 41 0f 73 f6 21', { x: { 14: SH } }).cpu, 14)).toBe(0xe01e2468_00000000_fffffffe_00000000n);
    expect(getX(run('66 41 0f 73 d6 21', { x: { 14: SH } }).cpu, 14)).toBe(0x00000000_421087f8_00000000_40000000n);
  });

  it('counts past the element width: logical shifts give 0, arithmetic ones the sign', () => {
    expect(op01('66 0f 71 f0 10', SH, 0n)).toBe(0n); // psllw 16
    expect(op01('66 0f 72 d0 20', SH, 0n)).toBe(0n); // psrld 32
    expect(op01('66 0f 73 d0 40', SH, 0n)).toBe(0n); // psrlq 64
    expect(op01('66 0f 71 e0 10', SH, 0n)).toBe(0xffff_0000_ffff_0000_ffff_0000_0000_ffffn); // psraw 16
    expect(op01('66 0f 72 e0 c8', SH, 0n)).toBe(0xffffffff_ffffffff_ffffffff_00000000n); // psrad 200
  });

  it('a count of 2^32 + 4 in xmm1 is past every width (SDM vol. 2, PSRLQ: COUNT > 63)', () => {
    const n = 0x00000001_00000004n;
    expect(op01('66 0f d3 c1', SH, n)).toBe(0n);
    expect(op01('66 0f e2 c1', SH, n)).toBe(0xffffffff_ffffffff_ffffffff_00000000n);
  });

  it('a count of 0 leaves the register unchanged', () => {
    expect(op01('66 0f 73 f0 00', SH, 0n)).toBe(SH);
  });

  it('psllq xmm0, [rsi] reads the count from aligned memory; misaligned is #GP(0)', () => {
    expect(getX(run('66 0f f3 06', { x: { 0: SH }, m: [[D, 4n]] }).cpu, 0)).toBe(PSLLQ4);
    expect(run('66 0f f3 46 08', { x: { 0: SH } }).stop).toEqual(GP0);
  });

  it('pslldq xmm0, 3 and psrldq xmm0, 3 shift whole bytes', () => {
    expect(op01('66 0f 73 f8 03', BYTES0, 0n)).toBe(0x0c0b0a09_08070605_04030201_00000000n);
    expect(op01('66 0f 73 d8 03', BYTES0, 0n)).toBe(0x0000000f_0e0d0c0b_0a090807_06050403n);
  });

  it('pslldq xmm9, 5 (REX.B); pslldq by 16 clears the register', () => {
    expect(getX(run('66 41 0f 73 f9 05', { x: { 9: BYTES0 } }).cpu, 9)).toBe(0x0a090807_06050403_02010000_00000000n);
    expect(op01('66 0f 73 f8 10', BYTES0, 0n)).toBe(0n);
  });

  it('the immediate shift groups have no memory forms: #UD', () => {
    expect(run('66 0f 73 3e 03').stop).toEqual(UD); // pslldq [rsi], 3
    expect(run('66 0f 71 36 04').stop).toEqual(UD); // psllw [rsi], 4
  });
});

describe('multiply, average, SAD (SDM vol. 2, PMULLW, PMULUDQ, PAVGB, PSADBW)', () => {
  it('pmullw keeps the low words of the signed products', () => {
    const x0 = 0xfffe_0000_0100_1234_7fff_8000_ffff_0003n;
    const x1 = 0x0003_1234_0100_0010_7fff_0002_ffff_0005n;
    expect(op01('66 0f d5 c1', x0, x1)).toBe(0xfffa_0000_0000_2340_0001_0000_0001_000fn);
  });

  it('pmuludq multiplies doublewords 0 and 2 to unsigned quadwords', () => {
    const x0 = 0x55555555_12345678_aaaaaaaa_ffffffffn;
    const x1 = 0x66666666_9abcdef0_77777777_ffffffffn;
    // 0xffffffff^2 = 0xfffffffe00000001; 0x12345678 * 0x9abcdef0 = 0x0b00ea4e242d2080
    expect(op01('66 0f f4 c1', x0, x1)).toBe(0x0b00ea4e_242d2080_fffffffe_00000001n);
  });

  it('pavgb rounds up: (a + b + 1) >> 1', () => {
    const x0 = 0x00000000_00000000_107f80fe_0201ff00n;
    const x1 = 0x01010101_01010101_11807fff_0202ff00n;
    expect(op01('66 0f e0 c1', x0, x1)).toBe(0x01010101_01010101_118080ff_0202ff00n);
  });

  it('psadbw sums absolute byte differences per quadword', () => {
    const x0 = 0xffffffff_ffffffff_60504030_2010ff00n;
    const x1 = 0x00000000_00000000_004f4130_102000ffn;
    // low: 255 + 255 + 16 + 16 + 0 + 1 + 1 + 96 = 640; high: 8 * 255 = 2040
    expect(op01('66 0f f6 c1', x0, x1)).toBe(0x00000000_000007f8_00000000_00000280n);
  });
});

describe('word insert and extract (SDM vol. 2, PEXTRW, PINSRW)', () => {
  it('pextrw eax, xmm0, 5 zero-extends the word into RAX', () => {
    const { cpu } = run('66 0f c5 c0 05', { x: { 0: WORDS }, r: { 0: -1n } });
    expect(cpu.reg64(0)).toBe(0x5555n);
  });

  it('pextrw r11d, xmm9, 2; only imm8[2:0] selects (0x0a = word 2)', () => {
    expect(run('66 45 0f c5 d9 02', { x: { 9: WORDS } }).cpu.reg64(11)).toBe(0x2222n);
    expect(run('66 45 0f c5 d9 0a', { x: { 9: WORDS } }).cpu.reg64(11)).toBe(0x2222n);
  });

  it('pinsrw xmm0, eax, 5 replaces word 5', () => {
    const { cpu } = run('66 0f c4 c0 05', { x: { 0: WORDS }, r: { 0: 0xabcd1234n } });
    expect(getX(cpu, 0)).toBe(0x7777_6666_1234_4444_3333_2222_1111_0000n);
  });

  it('pinsrw xmm0, [rsi+1], 2 reads 16 bits of unaligned memory', () => {
    const { cpu } = run('66 0f c4 46 01 02', { x: { 0: WORDS }, m: [[D + 1, 0xffbeefn, 3]] });
    expect(getX(cpu, 0)).toBe(0x7777_6666_5555_4444_3333_beef_1111_0000n);
  });

  it('pextrw has no memory form in this encoding: #UD', () => {
    expect(run('66 0f c5 06 01').stop).toEqual(UD);
  });
});

describe('MXCSR (SDM vol. 2, LDMXCSR, STMXCSR)', () => {
  it('ldmxcsr [rsi] loads; stmxcsr [rsi+4] stores', () => {
    const { cpu } = run('0f ae 16 0f ae 5e 04', { m: [[D, 0x1fc0n, 4]] });
    expect(cpu.mxcsr).toBe(0x1fc0);
    expect(peek(cpu, D + 4, 4)).toBe(0x1fc0n);
  });

  it('stmxcsr stores the reset value 0x1F80', () => {
    expect(peek(run('0f ae 5e 04').cpu, D + 4, 4)).toBe(0x1f80n);
  });

  it('ldmxcsr with a reserved bit set is #GP(0) and leaves MXCSR', () => {
    const { cpu, stop } = run('0f ae 16', { m: [[D, 0x00011f80n, 4]] });
    expect(stop).toEqual(GP0);
    expect(cpu.mxcsr).toBe(0x1f80);
  });

  it('ldmxcsr has no register form: #UD', () => {
    expect(run('0f ae d0').stop).toEqual(UD);
  });
});

describe('compiled-code kernels', () => {
  it('a strlen-style scan: pxor, movdqa, pcmpeqb, pmovmskb, test, jnz', () => {
    // pxor xmm0, xmm0; L: movdqa xmm1, [rdi]; pcmpeqb xmm1, xmm0; pmovmskb eax, xmm1;
    // test eax, eax; jnz done; add rdi, 16; jmp L; done:
    const code = '66 0f ef c0 66 0f 6f 0f 66 0f 74 c8 66 0f d7 c1 85 c0 75 06 48 83 c7 10 eb ea';
    const text = new TextEncoder().encode('hello, world: a string of 37 bytes.!');
    const { cpu, stop } = runFragment(hex(code), {
      setup: (c) => { c.cr4 |= OSFXSR; c.setReg64(7, BigInt(D)); c.memory.load(D, text); },
    });
    expect(stop.kind).toBe('halt');
    expect(text.length).toBe(36);
    expect(cpu.reg64(7)).toBe(BigInt(D + 32));
    expect(cpu.reg64(0)).toBe(0xfff0n); // the NUL at offset 36 = 32 + 4, and zeroes after it
  });
});
