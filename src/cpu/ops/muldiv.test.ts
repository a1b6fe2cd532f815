import { describe, expect, it } from 'vitest';
import { exec, STATUS, table } from './rows.testkit.js';
import { CODE_ADDRESS, DATA_ADDRESS } from '../testing.js';
import { AF, CF, OF, PF, RAX, RBX, RCX, RDX, SF, ZF } from '../regs.js';

const M64 = (1n << 64n) - 1n;
const u64 = (v: bigint): bigint => v & M64;
const s64 = (v: bigint): bigint => BigInt.asIntN(64, v);



const OTHERS = SF | ZF | AF | PF;

describe('MUL (SDM vol. 2, MUL)', () => {
  table([
    ['mul bl: AX = AL × BL; CF = OF = 1 when AH ≠ 0; SF/ZF/AF/PF kept (documented choice)',
      [0xf6, 0xe3], { [RAX]: 0xffff_ffff_ffff_0080n, [RBX]: 2n }, OTHERS, { [RAX]: 0xffff_ffff_ffff_0100n }, CF | OF | OTHERS],
    ['mul bl: AH = 0 clears CF and OF',
      [0xf6, 0xe3], { [RAX]: 0x10n, [RBX]: 0x0fn }, CF | OF, { [RAX]: 0xf0n }, 0],
    ['mul cx: DX:AX; bits 63:16 of RAX and RDX kept',
      [0x66, 0xf7, 0xe1], { [RAX]: 0x1111_ffffn, [RDX]: 0x2222_0000n, [RCX]: 0xffffn }, 0,
      { [RAX]: 0x1111_0001n, [RDX]: 0x2222_fffen }, CF | OF],
    ['mul ecx: EDX:EAX, both zero-extended',
      [0xf7, 0xe1], { [RAX]: 0xffff_ffffn, [RDX]: 0x1234_5678_9abc_def0n, [RCX]: 0xffff_ffffn }, 0,
      { [RAX]: 1n, [RDX]: 0xffff_fffen }, CF | OF],
    ['mul ecx with a small product: EDX = 0',
      [0xf7, 0xe1], { [RAX]: 0xaaaa_aaaa_0000_0003n, [RDX]: -1n, [RCX]: 5n }, CF | OF, { [RAX]: 15n, [RDX]: 0n }, 0],
    ['mul rcx: (2^64 - 1)^2',
      [0x48, 0xf7, 0xe1], { [RAX]: -1n, [RCX]: -1n }, 0, { [RAX]: 1n, [RDX]: 0xffff_ffff_ffff_fffen }, CF | OF],
    ['mul rcx: 2^32 × 2^32 = 2^64',
      [0x48, 0xf7, 0xe1], { [RAX]: 1n << 32n, [RCX]: 1n << 32n }, 0, { [RAX]: 0n, [RDX]: 1n }, CF | OF],
    ['mul rcx: the carry out of the low 64 bits lands in RDX',
      [0x48, 0xf7, 0xe1], { [RAX]: 0x1234_5678_9abc_def0n, [RCX]: 0x10n }, 0,
      { [RAX]: 0x2345_6789_abcd_ef00n, [RDX]: 1n }, CF | OF],
  ]);
});

describe('IMUL (SDM vol. 2, IMUL)', () => {
  table([
    ['imul bl: -128 × -1 = 128 does not fit AL → CF = OF = 1',
      [0xf6, 0xeb], { [RAX]: 0x80n, [RBX]: 0xffn }, 0, { [RAX]: 0x0080n }, CF | OF],
    ['imul bl: -2 × 3 = -6 fits AL',
      [0xf6, 0xeb], { [RAX]: 0xfen, [RBX]: 3n }, CF | OF, { [RAX]: 0xfffan }, 0],
    ['imul cx: -1 × -1 = 1; bits 63:16 kept',
      [0x66, 0xf7, 0xe9], { [RAX]: 0xffffn, [RDX]: 0x5555_5555n, [RCX]: 0xffffn }, 0,
      { [RAX]: 1n, [RDX]: 0x5555_0000n }, 0],
    ['imul ecx: -2^31 × -1 = 2^31 does not fit EAX',
      [0xf7, 0xe9], { [RAX]: 0x8000_0000n, [RCX]: 0xffff_ffffn }, 0, { [RAX]: 0x8000_0000n, [RDX]: 0n }, CF | OF],
    ['imul ecx: -2^31 × 2 = -2^32',
      [0xf7, 0xe9], { [RAX]: 0x8000_0000n, [RCX]: 2n }, 0, { [RAX]: 0n, [RDX]: 0xffff_ffffn }, CF | OF],
    ['imul rcx: -1 × (2^63 - 1) fits RAX; RDX is the sign',
      [0x48, 0xf7, 0xe9], { [RAX]: -1n, [RCX]: 0x7fff_ffff_ffff_ffffn }, 0,
      { [RAX]: 0x8000_0000_0000_0001n, [RDX]: -1n }, 0],
    ['imul rcx: -2^63 × -2^63 = 2^126',
      [0x48, 0xf7, 0xe9], { [RAX]: 1n << 63n, [RCX]: 1n << 63n }, 0,
      { [RAX]: 0n, [RDX]: 0x4000_0000_0000_0000n }, CF | OF],
    ['imul rcx: -3 × 5',
      [0x48, 0xf7, 0xe9], { [RAX]: -3n, [RCX]: 5n }, 0, { [RAX]: -15n, [RDX]: -1n }, 0],
    ['imul rcx: 2^32 × -2^32 = -2^64 (high half significant)',
      [0x48, 0xf7, 0xe9], { [RAX]: 1n << 32n, [RCX]: -(1n << 32n) }, 0, { [RAX]: 0n, [RDX]: -1n }, CF | OF],
    ['imul eax, ebx (0F AF): truncated to 32 bits and zero-extended',
      [0x0f, 0xaf, 0xc3], { [RAX]: 0x7_0001_0000n, [RBX]: 0x1_0000n }, 0, { [RAX]: 0n }, CF | OF],
    ['imul rax, rbx: -7 × 6',
      [0x48, 0x0f, 0xaf, 0xc3], { [RAX]: -7n, [RBX]: 6n }, CF | OF, { [RAX]: -42n }, 0],
    ['imul rax, rbx: 2^62 × 2 overflows into the sign',
      [0x48, 0x0f, 0xaf, 0xc3], { [RAX]: 1n << 62n, [RBX]: 2n }, 0, { [RAX]: 1n << 63n }, CF | OF],
    ['imul ax, bx: 0x100 × 0x100; bits 63:16 kept',
      [0x66, 0x0f, 0xaf, 0xc3], { [RAX]: 0xabcd_0100n, [RBX]: 0x100n }, 0, { [RAX]: 0xabcd_0000n }, CF | OF],
    ['imul eax, ebx, 125 (6B: imm8 sign-extended)',
      [0x6b, 0xc3, 0x7d], { [RBX]: 0xffff_fffen }, 0, { [RAX]: 0xffff_ff06n }, 0],
    ['imul rax, rbx, -128: 2^56 × -128 = -2^63 fits',
      [0x48, 0x6b, 0xc3, 0x80], { [RBX]: 1n << 56n }, CF | OF, { [RAX]: 1n << 63n }, 0],
    ['imul eax, ebx, 0x12345678 (69: imm32)',
      [0x69, 0xc3, 0x78, 0x56, 0x34, 0x12], { [RBX]: 0x100n }, 0, { [RAX]: 0x3456_7800n }, CF | OF],
    ['imul ax, bx, 0x8000 (66 69: imm16): 1 × -32768 fits',
      [0x66, 0x69, 0xc3, 0x00, 0x80], { [RBX]: 1n }, 0, { [RAX]: 0x8000n }, 0],
    ['imul ax, bx, 0x8000: -1 × -32768 = 32768 does not fit',
      [0x66, 0x69, 0xc3, 0x00, 0x80], { [RBX]: 0xffffn }, 0, { [RAX]: 0x8000n }, CF | OF],
    ['imul rax, rbx, imm32 0x80000000 is sign-extended to -2^31',
      [0x48, 0x69, 0xc3, 0, 0, 0, 0x80], { [RBX]: 2n }, 0, { [RAX]: 0xffff_ffff_0000_0000n }, 0],
  ]);
});

describe('DIV (SDM vol. 2, DIV)', () => {
  table([
    ['div bl: AL = quotient, AH = remainder; bits 63:16 kept; flags kept (documented choice)',
      [0xf6, 0xf3], { [RAX]: 0x5555_0100n, [RBX]: 7n }, STATUS, { [RAX]: 0x5555_0424n }, STATUS],
    ['div cx: DX:AX / CX',
      [0x66, 0xf7, 0xf1], { [RDX]: 1n, [RAX]: 0n, [RCX]: 2n }, 0, { [RAX]: 0x8000n, [RDX]: 0n }, 0],
    ['div ecx: EDX:EAX / ECX',
      [0xf7, 0xf1], { [RDX]: 1n, [RAX]: 0n, [RCX]: 0x10n }, 0, { [RAX]: 0x1000_0000n, [RDX]: 0n }, 0],
    ['div ecx: the largest quotient that fits',
      [0xf7, 0xf1], { [RDX]: 7n, [RAX]: 0xffff_ffffn, [RCX]: 8n }, 0, { [RAX]: 0xffff_ffffn, [RDX]: 7n }, 0],
    ['div rcx: 2^64 / 3',
      [0x48, 0xf7, 0xf1], { [RDX]: 1n, [RAX]: 0n, [RCX]: 3n }, 0, { [RAX]: 0x5555_5555_5555_5555n, [RDX]: 1n }, 0],
    ['div rcx: by 2^63',
      [0x48, 0xf7, 0xf1], { [RDX]: 0x1234n, [RAX]: 0x8000_0000_0000_0005n, [RCX]: 1n << 63n }, 0,
      { [RAX]: 0x2469n, [RDX]: 5n }, 0],
    ['div rcx: (2^64 - 1)^2 / (2^64 - 1)',
      [0x48, 0xf7, 0xf1], { [RDX]: 0xffff_ffff_ffff_fffen, [RAX]: 1n, [RCX]: -1n }, 0,
      { [RAX]: 0xffff_ffff_ffff_ffffn, [RDX]: 0n }, 0],
    ['div rcx: divisor 2^32 + 1',
      [0x48, 0xf7, 0xf1], { [RDX]: 0n, [RAX]: 0x1234_0000_123bn, [RCX]: 0x1_0000_0001n }, 0,
      { [RAX]: 0x1234n, [RDX]: 7n }, 0],
  ]);

  it('div dword [rbx] reads its divisor from memory', () => {
    const { cpu } = exec([0xf7, 0x33], { [RBX]: BigInt(DATA_ADDRESS), [RAX]: 100n, [RDX]: 0n }, 0, [7, 0, 0, 0]);
    expect(cpu.reg64(RAX)).toBe(14n);
    expect(cpu.reg64(RDX)).toBe(2n);
  });
});

describe('IDIV (SDM vol. 2, IDIV): truncation toward zero, remainder takes the dividend\'s sign', () => {
  table([
    ['idiv bl: -7 / 2 = -3 rest -1',
      [0xf6, 0xfb], { [RAX]: 0xfff9n, [RBX]: 2n }, 0, { [RAX]: 0xfffdn }, 0],
    ['idiv bl: -128 / 1 = -128 fits',
      [0xf6, 0xfb], { [RAX]: 0xff80n, [RBX]: 1n }, 0, { [RAX]: 0x0080n }, 0],
    ['idiv cx: -65536 / 2 = -32768 fits',
      [0x66, 0xf7, 0xf9], { [RDX]: 0xffffn, [RAX]: 0n, [RCX]: 2n }, 0, { [RAX]: 0x8000n, [RDX]: 0n }, 0],
    ['idiv ecx: -2^31 / 1',
      [0xf7, 0xf9], { [RDX]: 0xffff_ffffn, [RAX]: 0x8000_0000n, [RCX]: 1n }, 0, { [RAX]: 0x8000_0000n, [RDX]: 0n }, 0],
    ['idiv ecx: 100 / -7 = -14 rest 2',
      [0xf7, 0xf9], { [RDX]: 0n, [RAX]: 100n, [RCX]: 0xffff_fff9n }, 0, { [RAX]: 0xffff_fff2n, [RDX]: 2n }, 0],
    ['idiv ecx: -100 / 7 = -14 rest -2',
      [0xf7, 0xf9], { [RDX]: 0xffff_ffffn, [RAX]: 0xffff_ff9cn, [RCX]: 7n }, 0,
      { [RAX]: 0xffff_fff2n, [RDX]: 0xffff_fffen }, 0],
    ['idiv rcx: -2^63 / 1',
      [0x48, 0xf7, 0xf9], { [RDX]: -1n, [RAX]: 1n << 63n, [RCX]: 1n }, 0, { [RAX]: 1n << 63n, [RDX]: 0n }, 0],
    ['idiv rcx: -2^64 / 2^32',
      [0x48, 0xf7, 0xf9], { [RDX]: -1n, [RAX]: 0n, [RCX]: 1n << 32n }, 0, { [RAX]: -(1n << 32n), [RDX]: 0n }, 0],
    ['idiv rcx: (2^64 + 5) / -3',
      [0x48, 0xf7, 0xf9], { [RDX]: 1n, [RAX]: 5n, [RCX]: -3n }, 0, { [RAX]: 0xaaaa_aaaa_aaaa_aaa9n, [RDX]: 0n }, 0],
    ['idiv rcx: -2^70 / 2^48 (a divisor above 32 bits)',
      [0x48, 0xf7, 0xf9], { [RDX]: 0xffff_ffff_ffff_ffc0n, [RAX]: 0n, [RCX]: 1n << 48n }, 0,
      { [RAX]: -(1n << 22n), [RDX]: 0n }, 0],
    ['idiv rcx: -(2^64 + 1) / 2^32 = -2^32 rest -1',
      [0x48, 0xf7, 0xf9], { [RDX]: 0xffff_ffff_ffff_fffen, [RAX]: -1n, [RCX]: 1n << 32n }, 0,
      { [RAX]: -(1n << 32n), [RDX]: -1n }, 0],
  ]);
});

describe('#DE (SDM vol. 2, DIV/IDIV: divide by zero or quotient too large)', () => {
  const cases: [string, number[], Record<number, bigint>][] = [
    ['div bl by 0', [0xf6, 0xf3], { [RAX]: 0x1234n, [RBX]: 0n }],
    ['div bl: 0x800 / 8 = 256 does not fit AL', [0xf6, 0xf3], { [RAX]: 0x800n, [RBX]: 8n }],
    ['div cx: 0x10000 / 1 does not fit AX', [0x66, 0xf7, 0xf1], { [RDX]: 1n, [RAX]: 0n, [RCX]: 1n }],
    ['div ecx: EDX = ECX', [0xf7, 0xf1], { [RDX]: 8n, [RAX]: 0n, [RCX]: 8n }],
    ['div ecx by 0 (bits 63:32 of RCX are not part of it)', [0xf7, 0xf1], { [RAX]: 1n, [RCX]: 0x1_0000_0000n }],
    ['div rcx: RDX = RCX', [0x48, 0xf7, 0xf1], { [RDX]: 5n, [RAX]: 0n, [RCX]: 5n }],
    ['div rcx by 0', [0x48, 0xf7, 0xf1], { [RDX]: 0n, [RAX]: 5n, [RCX]: 0n }],
    ['idiv bl: -128 / -1', [0xf6, 0xfb], { [RAX]: 0xff80n, [RBX]: 0xffn }],
    ['idiv cx: -65536 / -2 = 32768', [0x66, 0xf7, 0xf9], { [RDX]: 0xffffn, [RAX]: 0n, [RCX]: 0xfffen }],
    ['idiv ecx: -2^31 / -1', [0xf7, 0xf9], { [RDX]: 0xffff_ffffn, [RAX]: 0x8000_0000n, [RCX]: 0xffff_ffffn }],
    ['idiv ecx: 2^31 / 1', [0xf7, 0xf9], { [RDX]: 0n, [RAX]: 0x8000_0000n, [RCX]: 1n }],
    ['idiv rcx: -2^63 / -1', [0x48, 0xf7, 0xf9], { [RDX]: -1n, [RAX]: 1n << 63n, [RCX]: -1n }],
    ['idiv rcx: 2^63 / 1', [0x48, 0xf7, 0xf9], { [RDX]: 0n, [RAX]: 1n << 63n, [RCX]: 1n }],
    ['idiv rcx: -2^127 / -1', [0x48, 0xf7, 0xf9], { [RDX]: 1n << 63n, [RAX]: 0n, [RCX]: -1n }],
    ['idiv rcx by 0', [0x48, 0xf7, 0xf9], { [RDX]: -1n, [RAX]: -1n, [RCX]: 0n }],
  ];
  for (const [title, code, regs] of cases) {
    it(`${title}: #DE before any register or flag changes`, () => {
      const all = { [RAX]: 0n, [RDX]: 0x7777n, ...regs };
      const { cpu, stop } = exec(code, all, ZF | CF);
      expect(stop).toEqual({ kind: 'exception', vector: 0, errorCode: null });
      expect(cpu.rip).toBe(BigInt(CODE_ADDRESS));
      expect(cpu.reg64(RAX)).toBe(u64(all[RAX]!));
      expect(cpu.reg64(RDX)).toBe(u64(all[RDX]!));
      expect(cpu.rflags & STATUS).toBe(ZF | CF);
    });
  }
});

describe('64-bit MUL/IMUL/DIV/IDIV against BigInt arithmetic (SDM vol. 2, MUL, IMUL, DIV, IDIV)', () => {
  const values = [
    0x0123_4567_89ab_cdefn, 0xfedc_ba98_7654_3210n, 0xffff_ffff_0000_0001n, 0x8000_0000_0000_0001n,
    0x0000_0001_ffff_ffffn, 0x7fff_ffff_ffff_ffffn, 0x0000_0000_dead_beefn, 0xc000_0000_0000_0003n,
  ];
  it('mul rcx and imul rcx give the 128-bit product', () => {
    for (const a of values) {
      for (const b of values) {
        for (const [code, signed] of [[[0x48, 0xf7, 0xe1], false], [[0x48, 0xf7, 0xe9], true]] as const) {
          const { cpu } = exec(code, { [RAX]: a, [RCX]: b });
          const p = signed ? s64(a) * s64(b) : a * b;
          expect(cpu.reg64(RAX)).toBe(u64(p));
          expect(cpu.reg64(RDX)).toBe(u64(p >> 64n));
          const fits = signed ? p === s64(p) : p >> 64n === 0n;
          expect(cpu.rflags & (CF | OF)).toBe(fits ? 0 : CF | OF);
        }
      }
    }
  });
  it('div rcx and idiv rcx give quotient and remainder', () => {
    for (const a of values) {
      for (const b of values) {
        // DIV: RDX:RAX = (a mod b) : b — the quotient then fits.
        const hi = a % b, n = (hi << 64n) | b;
        let r = exec([0x48, 0xf7, 0xf1], { [RDX]: hi, [RAX]: b, [RCX]: b });
        expect(r.cpu.reg64(RAX)).toBe(n / b);
        expect(r.cpu.reg64(RDX)).toBe(n % b);
        // IDIV of the sign-extended 64-bit a by b (BigInt division truncates like IDIV).
        const sa = s64(a), sb = s64(b);
        r = exec([0x48, 0xf7, 0xf9], { [RDX]: sa < 0n ? -1n : 0n, [RAX]: a, [RCX]: b });
        expect(r.stop.kind).toBe('halt');
        expect(r.cpu.reg64(RAX)).toBe(u64(sa / sb));
        expect(r.cpu.reg64(RDX)).toBe(u64(sa % sb));
      }
    }
  });
});
