import { describe, expect, it } from 'vitest';
import { exec, STATUS, table } from './rows.testkit.js';
import { DATA_ADDRESS, runFragment } from '../testing.js';
import { AF, CF, OF, PF, RAX, RBX, RCX, RDX, SF, ZF } from '../regs.js';

const D = BigInt(DATA_ADDRESS);
const UD = { kind: 'exception', vector: 6, errorCode: null };



/** Memory at DATA_ADDRESS after running `code` with `mem` loaded there. */
function memAfter(code: number[], regs: Record<number, bigint>, mem: number[], flags = 0) {
  const { cpu, stop } = exec(code, regs, flags, mem);
  expect(stop.kind).toBe('halt');
  return { bytes: Array.from(cpu.memory.dump(DATA_ADDRESS, mem.length)), flags: cpu.rflags & STATUS, cpu };
}

describe('BT/BTS/BTR/BTC (SDM vol. 2, BT, BTS, BTR, BTC)', () => {
  table([
    ['bt eax, ecx: CF = the bit; ZF and the undefined flags are kept',
      [0x0f, 0xa3, 0xc8], { [RAX]: 0x10n, [RCX]: 4n }, ZF | SF | OF, {}, CF | ZF | SF | OF],
    ['bt eax, ecx with ECX = 36: a register operand takes the offset modulo 32',
      [0x0f, 0xa3, 0xc8], { [RAX]: 0x10n, [RCX]: 36n }, 0, {}, CF],
    ['bt rax, rcx with RCX = 63',
      [0x48, 0x0f, 0xa3, 0xc8], { [RAX]: 1n << 63n, [RCX]: 63n }, CF, {}, CF],
    ['bt eax, ecx: a clear bit clears CF and leaves EAX (no write, RAX bits 63:32 kept)',
      [0x0f, 0xa3, 0xc8], { [RAX]: 0xffff_fffe_0000_0000n, [RCX]: 0n }, CF, { [RAX]: 0xffff_fffe_0000_0000n }, 0],
    ['bts rax, rcx sets bit 40',
      [0x48, 0x0f, 0xab, 0xc8], { [RAX]: 0n, [RCX]: 40n }, CF, { [RAX]: 1n << 40n }, 0],
    ['btr rax, rcx clears bit 33',
      [0x48, 0x0f, 0xb3, 0xc8], { [RAX]: -1n, [RCX]: 33n }, 0, { [RAX]: ~(1n << 33n) }, CF],
    ['btc eax, ecx complements bit 31 and zero-extends',
      [0x0f, 0xbb, 0xc8], { [RAX]: 0xffff_ffff_0000_0000n, [RCX]: 31n }, CF, { [RAX]: 0x8000_0000n }, 0],
    ['bt eax, 33 (0F BA /4): imm8 taken modulo 32',
      [0x0f, 0xba, 0xe0, 33], { [RAX]: 2n }, 0, {}, CF],
    ['bts rax, 63 (0F BA /5)',
      [0x48, 0x0f, 0xba, 0xe8, 63], { [RAX]: 1n }, 0, { [RAX]: (1n << 63n) | 1n }, 0],
    ['btr eax, 5 (0F BA /6) zero-extends',
      [0x0f, 0xba, 0xf0, 5], { [RAX]: 0x5_0000_0020n }, 0, { [RAX]: 0n }, CF],
    ['btc ax, 15 (0F BA /7) keeps bits 63:16',
      [0x66, 0x0f, 0xba, 0xf8, 15], { [RAX]: 0x1234_0000n }, CF, { [RAX]: 0x1234_8000n }, 0],
  ]);

  it('bt dword [rbx], ecx with ECX = 35 tests bit 3 of the dword at RBX + 4', () => {
    const mem = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0, 0, 0];
    expect(memAfter([0x0f, 0xa3, 0x0b], { [RBX]: D + 8n, [RCX]: 35n }, mem).flags).toBe(CF);
  });

  it('bt dword [rbx], ecx with ECX = -1 tests bit 31 of the dword at RBX - 4 (signed bit offset)', () => {
    const mem = [0, 0, 0, 0, 0, 0, 0, 0x80];
    expect(memAfter([0x0f, 0xa3, 0x0b], { [RBX]: D + 8n, [RCX]: 0xffff_ffffn }, mem).flags).toBe(CF);
  });

  it('bts qword [rbx], rcx with RCX = -65 sets bit 63 of the qword at RBX - 16', () => {
    const r = memAfter([0x48, 0x0f, 0xab, 0x0b], { [RBX]: D + 16n, [RCX]: -65n }, new Array(24).fill(0), CF);
    expect(r.bytes).toEqual([0, 0, 0, 0, 0, 0, 0, 0x80, ...new Array(16).fill(0)]);
    expect(r.flags).toBe(0);
  });

  it('bts word [rbx], cx with CX = 0xFFFF (-1) sets bit 15 of the word at RBX - 2', () => {
    const r = memAfter([0x66, 0x0f, 0xab, 0x0b], { [RBX]: D + 2n, [RCX]: 0xffffn }, [0, 0, 0x11, 0x22]);
    expect(r.bytes).toEqual([0, 0x80, 0x11, 0x22]);
  });

  it('btr qword [rbx], rcx: a 64-bit offset of -2^35 + 5 moves the address down by 2^32', () => {
    const r = memAfter([0x48, 0x0f, 0xb3, 0x0b], { [RBX]: D + (1n << 32n), [RCX]: -(1n << 35n) + 5n }, [0xff, 0xff]);
    expect(r.bytes).toEqual([0xdf, 0xff]);
    expect(r.flags).toBe(CF);
  });

  it('btc dword [rbx], 35 (imm8): the offset is taken modulo 32, no bit-base displacement', () => {
    const r = memAfter([0x0f, 0xba, 0x3b, 35], { [RBX]: D }, [0, 0, 0, 0, 0xff]);
    expect(r.bytes).toEqual([0x08, 0, 0, 0, 0xff]);
    expect(r.flags).toBe(0);
  });

  it('in 32-bit code the bit-base address wraps at the address size', () => {
    // bt dword [ebx], ecx with EBX = DATA + 4, ECX = -33: dword at DATA - 4, bit 31.
    const { cpu, stop } = exec([0x0f, 0xa3, 0x0b], { [RBX]: D + 4n, [RCX]: 0xffff_ffdfn }, 0, undefined, 32);
    expect(stop.kind).toBe('halt');
    expect(cpu.rflags & CF).toBe(0);
    const r = runFragment([0x0f, 0xbb, 0x0b], {
      mode: 32,
      setup: (c) => { c.setReg64(RBX, D + 4n); c.setReg64(RCX, 0xffff_ffdfn); c.memory.load(DATA_ADDRESS - 4, Uint8Array.from([0, 0, 0, 0x80])); },
    });
    expect(Array.from(r.cpu.memory.dump(DATA_ADDRESS - 4, 4))).toEqual([0, 0, 0, 0]);
    expect(r.cpu.rflags & CF).toBe(CF);
  });

  it('LOCK is allowed on BTS/BTR/BTC with a memory operand (SDM vol. 2, LOCK)', () => {
    const r = memAfter([0xf0, 0x0f, 0xab, 0x0b, 0xf0, 0x0f, 0xba, 0x33, 1], { [RBX]: D, [RCX]: 3n }, [0x02]);
    expect(r.bytes).toEqual([0x08]);
    expect(r.flags).toBe(CF);
  });

  it('LOCK BT, and LOCK BTS on a register, are #UD', () => {
    expect(exec([0xf0, 0x0f, 0xa3, 0x0b], { [RBX]: D }).stop).toEqual(UD);
    expect(exec([0xf0, 0x0f, 0xab, 0xc8], {}).stop).toEqual(UD);
    expect(exec([0x0f, 0xba, 0xc0, 1], {}).stop).toEqual(UD); // 0F BA /0 is undefined
  });
});

describe('BSF/BSR (SDM vol. 2, BSF, BSR)', () => {
  const garbage = 0xdead_beef_cafe_f00dn;
  table([
    ['bsf eax, ebx: index of the lowest set bit; ZF = 0, CF/OF/SF/AF = 0, PF from the index (choice)',
      [0x0f, 0xbc, 0xc3], { [RAX]: garbage, [RBX]: 0x0001_0000n }, STATUS, { [RAX]: 16n }, 0],
    ['bsf rax, rbx',
      [0x48, 0x0f, 0xbc, 0xc3], { [RBX]: 1n << 63n }, 0, { [RAX]: 63n }, PF],
    ['bsr rax, rbx: index of the highest set bit',
      [0x48, 0x0f, 0xbd, 0xc3], { [RBX]: 0x1_0000_ffffn }, 0, { [RAX]: 32n }, 0],
    ['bsr ax, bx (66h) keeps bits 63:16',
      [0x66, 0x0f, 0xbd, 0xc3], { [RAX]: -1n, [RBX]: 0xf0n }, 0, { [RAX]: 0xffff_ffff_ffff_0007n }, 0],
    ['bsf eax, ebx with EBX = 0: ZF = 1, RAX entirely unchanged (documented choice)',
      [0x0f, 0xbc, 0xc3], { [RAX]: garbage, [RBX]: 0xffff_ffff_0000_0000n }, STATUS, { [RAX]: garbage }, ZF | PF],
    ['bsr rax, rbx with RBX = 0',
      [0x48, 0x0f, 0xbd, 0xc3], { [RAX]: garbage, [RBX]: 0n }, CF, { [RAX]: garbage }, ZF | PF],
    ['bsf with F2h is still BSF',
      [0xf2, 0x0f, 0xbc, 0xc3], { [RBX]: 0x80n }, 0, { [RAX]: 7n }, 0],
  ]);

  it('bsf eax, [rbx] reads memory', () => {
    const { cpu } = exec([0x0f, 0xbc, 0x03], { [RBX]: D }, 0, [0, 0, 0x40, 0]);
    expect(cpu.reg64(RAX)).toBe(22n);
  });
});

describe('TZCNT/LZCNT/POPCNT (SDM vol. 2, TZCNT, LZCNT, POPCNT)', () => {
  table([
    ['tzcnt eax, ebx of 0 = 32, CF = 1; OF/SF/AF/PF read 0 (choice)',
      [0xf3, 0x0f, 0xbc, 0xc3], { [RAX]: -1n, [RBX]: 0n }, STATUS, { [RAX]: 32n }, CF],
    ['tzcnt eax, ebx of 8 = 3',
      [0xf3, 0x0f, 0xbc, 0xc3], { [RBX]: 8n }, CF, { [RAX]: 3n }, 0],
    ['tzcnt eax, ebx of 1 = 0, ZF = 1',
      [0xf3, 0x0f, 0xbc, 0xc3], { [RBX]: 1n }, 0, { [RAX]: 0n }, ZF],
    ['tzcnt rax, rbx counts across the halves',
      [0xf3, 0x48, 0x0f, 0xbc, 0xc3], { [RBX]: 1n << 32n }, 0, { [RAX]: 32n }, 0],
    ['tzcnt rax, rbx of 0 = 64',
      [0xf3, 0x48, 0x0f, 0xbc, 0xc3], { [RBX]: 0n }, 0, { [RAX]: 64n }, CF],
    ['tzcnt ax, bx of 0 = 16; bits 63:16 kept',
      [0x66, 0xf3, 0x0f, 0xbc, 0xc3], { [RAX]: 0x5555_0000n, [RBX]: 0xffff_0000n }, 0, { [RAX]: 0x5555_0010n }, CF],
    ['lzcnt eax, ebx of 0 = 32',
      [0xf3, 0x0f, 0xbd, 0xc3], { [RBX]: 0n }, 0, { [RAX]: 32n }, CF],
    ['lzcnt eax, ebx of 1 = 31',
      [0xf3, 0x0f, 0xbd, 0xc3], { [RBX]: 1n }, STATUS, { [RAX]: 31n }, 0],
    ['lzcnt eax, ebx of 2^31 = 0, ZF = 1',
      [0xf3, 0x0f, 0xbd, 0xc3], { [RBX]: 0x8000_0000n }, 0, { [RAX]: 0n }, ZF],
    ['lzcnt rax, rbx of 0xFFFFFFFF = 32',
      [0xf3, 0x48, 0x0f, 0xbd, 0xc3], { [RBX]: 0xffff_ffffn }, 0, { [RAX]: 32n }, 0],
    ['lzcnt rax, rbx of 0 = 64',
      [0xf3, 0x48, 0x0f, 0xbd, 0xc3], { [RBX]: 0n }, 0, { [RAX]: 64n }, CF],
    ['lzcnt ax, bx of 0xFF = 8',
      [0x66, 0xf3, 0x0f, 0xbd, 0xc3], { [RAX]: -1n, [RBX]: 0xffn }, 0, { [RAX]: 0xffff_ffff_ffff_0008n }, 0],
    ['popcnt eax, ebx: every flag cleared but ZF',
      [0xf3, 0x0f, 0xb8, 0xc3], { [RAX]: -1n, [RBX]: 0xffff_ffffn }, STATUS, { [RAX]: 32n }, 0],
    ['popcnt eax, ebx of 0: ZF = 1',
      [0xf3, 0x0f, 0xb8, 0xc3], { [RBX]: 0n }, STATUS, { [RAX]: 0n }, ZF],
    ['popcnt rax, rbx',
      [0xf3, 0x48, 0x0f, 0xb8, 0xc3], { [RBX]: 0xf0f0_f0f0_f0f0_f0f1n }, 0, { [RAX]: 33n }, 0],
    ['popcnt ax, bx keeps bits 63:16',
      [0x66, 0xf3, 0x0f, 0xb8, 0xc3], { [RAX]: 0x7_0000_0000n, [RBX]: 0x1_ffffn }, 0, { [RAX]: 0x7_0000_0010n }, 0],
  ]);

  it('0F B8 without F3h is #UD', () => {
    expect(exec([0x0f, 0xb8, 0xc3], {}).stop).toEqual(UD);
    expect(exec([0xf2, 0x0f, 0xb8, 0xc3], {}).stop).toEqual(UD);
  });
});

// VEX encodings below: C4, RXB.map (E2 = 0F38, E3 = 0F3A), W.vvvv.L.pp, opcode, ModRM.
// With ModRM C3 the ModRM.reg operand is rAX and r/m is rBX; vvvv 1110b (inverted) is rCX.
const V = (pp: number, w = false): number => 0x70 | pp | (w ? 0x80 : 0);

describe('BMI1 (SDM vol. 2, ANDN, BLSR, BLSMSK, BLSI, BEXTR)', () => {
  table([
    ['andn eax, ecx, ebx = NOT ECX AND EBX; CF = OF = 0, AF = 0 and PF from the result (choice)',
      [0xc4, 0xe2, V(0), 0xf2, 0xc3], { [RAX]: -1n, [RCX]: 0xf0f0_f0f0n, [RBX]: 0xffff_0000n }, CF | OF | AF,
      { [RAX]: 0x0f0f_0000n }, PF],
    ['andn rax, rcx, rbx with result 0 sets ZF',
      [0xc4, 0xe2, V(0, true), 0xf2, 0xc3], { [RCX]: -1n, [RBX]: 0x1234_0000_0000n }, 0, { [RAX]: 0n }, ZF | PF],
    ['andn rax, rcx, rbx sets SF from bit 63',
      [0xc4, 0xe2, V(0, true), 0xf2, 0xc3], { [RCX]: 0n, [RBX]: 1n << 63n }, 0, { [RAX]: 1n << 63n }, SF | PF],
    ['blsr ecx, ebx (vvvv is the destination): lowest set bit cleared, CF = 0',
      [0xc4, 0xe2, V(0), 0xf3, 0xcb], { [RBX]: 0x58n, [RCX]: -1n }, CF, { [RCX]: 0x50n }, PF],
    ['blsr ecx, ebx of 0: CF = 1',
      [0xc4, 0xe2, V(0), 0xf3, 0xcb], { [RBX]: 0n }, 0, { [RCX]: 0n }, CF | ZF | PF],
    ['blsr rcx, rbx of 2^32: the borrow crosses the halves',
      [0xc4, 0xe2, V(0, true), 0xf3, 0xcb], { [RBX]: 1n << 32n }, 0, { [RCX]: 0n }, ZF | PF],
    ['blsmsk ecx, ebx: mask up to the lowest set bit, ZF = 0',
      [0xc4, 0xe2, V(0), 0xf3, 0xd3], { [RBX]: 0x58n }, ZF, { [RCX]: 0x0fn }, PF],
    ['blsmsk ecx, ebx of 0: all ones, CF = 1',
      [0xc4, 0xe2, V(0), 0xf3, 0xd3], { [RBX]: 0n }, 0, { [RCX]: 0xffff_ffffn }, CF | SF | PF],
    ['blsmsk rcx, rbx of 2^32',
      [0xc4, 0xe2, V(0, true), 0xf3, 0xd3], { [RBX]: 1n << 32n }, 0, { [RCX]: 0x1_ffff_ffffn }, PF],
    ['blsi ecx, ebx: isolates the lowest set bit, CF = 1 for a non-zero source',
      [0xc4, 0xe2, V(0), 0xf3, 0xdb], { [RBX]: 0x58n }, 0, { [RCX]: 0x08n }, CF],
    ['blsi ecx, ebx of 0: CF = 0, ZF = 1',
      [0xc4, 0xe2, V(0), 0xf3, 0xdb], { [RBX]: 0n }, CF, { [RCX]: 0n }, ZF | PF],
    ['blsi rcx, rbx of 2^63',
      [0xc4, 0xe2, V(0, true), 0xf3, 0xdb], { [RBX]: 1n << 63n }, 0, { [RCX]: 1n << 63n }, CF | SF | PF],
    ['bextr eax, ebx, ecx: START 4, LEN 8; ZF from the result, CF = OF = 0',
      [0xc4, 0xe2, V(0), 0xf7, 0xc3], { [RBX]: 0x1_2340n, [RCX]: 0x0804n }, CF | OF, { [RAX]: 0x34n }, 0],
    ['bextr eax, ebx, ecx: START 32 ≥ operand size gives 0',
      [0xc4, 0xe2, V(0), 0xf7, 0xc3], { [RBX]: -1n, [RCX]: 0x0820n }, 0, { [RAX]: 0n }, ZF | PF],
    ['bextr eax, ebx, ecx: LEN 0 gives 0',
      [0xc4, 0xe2, V(0), 0xf7, 0xc3], { [RBX]: -1n, [RCX]: 0x0004n }, 0, { [RAX]: 0n }, ZF | PF],
    ['bextr rax, rbx, rcx: START 32, LEN 32',
      [0xc4, 0xe2, V(0, true), 0xf7, 0xc3], { [RBX]: 0x1234_5678_0000_0000n, [RCX]: 0x2020n }, 0,
      { [RAX]: 0x1234_5678n }, PF],
    ['bextr rax, rbx, rcx: LEN 255 takes every bit from START',
      [0xc4, 0xe2, V(0, true), 0xf7, 0xc3], { [RBX]: 0xf000_0000_0000_0000n, [RCX]: 0xff3cn }, 0, { [RAX]: 0xfn }, PF],
  ]);
});

describe('BMI2 (SDM vol. 2, BZHI, PDEP, PEXT, MULX, SARX/SHLX/SHRX, RORX)', () => {
  const KEEP = CF | ZF | OF; // flags the instructions without flag results must leave alone
  table([
    ['bzhi eax, ebx, ecx: bits 8 and up cleared, CF = 0',
      [0xc4, 0xe2, V(0), 0xf5, 0xc3], { [RBX]: -1n, [RCX]: 8n }, CF, { [RAX]: 0xffn }, PF],
    ['bzhi eax, ebx, ecx: index 32 > 31 keeps the source, CF = 1',
      [0xc4, 0xe2, V(0), 0xf5, 0xc3], { [RAX]: -1n, [RBX]: 0xffff_ffffn, [RCX]: 32n }, 0, { [RAX]: 0xffff_ffffn }, CF | SF | PF],
    ['bzhi eax, ebx, ecx: only ECX[7:0] is the index',
      [0xc4, 0xe2, V(0), 0xf5, 0xc3], { [RBX]: -1n, [RCX]: 0x108n }, 0, { [RAX]: 0xffn }, PF],
    ['bzhi rax, rbx, rcx: index 40',
      [0xc4, 0xe2, V(0, true), 0xf5, 0xc3], { [RBX]: -1n, [RCX]: 40n }, 0, { [RAX]: 0xff_ffff_ffffn }, PF],
    ['bzhi rax, rbx, rcx: index 0',
      [0xc4, 0xe2, V(0, true), 0xf5, 0xc3], { [RBX]: -1n, [RCX]: 0n }, 0, { [RAX]: 0n }, ZF | PF],
    ['bzhi rax, rbx, rcx: index 64',
      [0xc4, 0xe2, V(0, true), 0xf5, 0xc3], { [RBX]: -1n, [RCX]: 64n }, 0, { [RAX]: -1n }, CF | SF | PF],
    ['pdep eax, ecx, ebx: source bits deposited at the mask positions; flags kept',
      [0xc4, 0xe2, V(3), 0xf5, 0xc3], { [RCX]: 0b101n, [RBX]: 0xf0n }, KEEP, { [RAX]: 0x50n }, KEEP],
    ['pdep rax, rcx, rbx across the halves',
      [0xc4, 0xe2, V(3, true), 0xf5, 0xc3], { [RCX]: 0b1010n, [RBX]: 0x8000_0001_8000_0001n }, 0,
      { [RAX]: 0x8000_0000_8000_0000n }, 0],
    ['pext eax, ecx, ebx: the bits at the mask positions packed low',
      [0xc4, 0xe2, V(2), 0xf5, 0xc3], { [RCX]: 0x50n, [RBX]: 0xf0n }, KEEP, { [RAX]: 0x5n }, KEEP],
    ['pext rax, rcx, rbx across the halves',
      [0xc4, 0xe2, V(2, true), 0xf5, 0xc3], { [RCX]: 1n << 63n, [RBX]: 0x8000_0000_0000_0001n }, 0, { [RAX]: 2n }, 0],
    ['mulx eax, ecx, ebx: EDX × EBX, low half to ECX (vvvv), high half to EAX; flags kept',
      [0xc4, 0xe2, V(3), 0xf6, 0xc3], { [RDX]: 0xffff_ffffn, [RBX]: 2n }, KEEP, { [RCX]: 0xffff_fffen, [RAX]: 1n }, KEEP],
    ['mulx rax, rcx, rbx',
      [0xc4, 0xe2, V(3, true), 0xf6, 0xc3], { [RDX]: 1n << 63n, [RBX]: 4n }, 0, { [RCX]: 0n, [RAX]: 2n }, 0],
    ['mulx rax, rax, rbx: with one register for both halves, the high half wins',
      [0xc4, 0xe2, 0xfb, 0xf6, 0xc3], { [RDX]: (1n << 63n) | 1n, [RBX]: 4n }, 0, { [RAX]: 2n }, 0],
    ['shlx eax, ebx, ecx: count masked to 5 bits; zero-extends; flags kept',
      [0xc4, 0xe2, V(1), 0xf7, 0xc3], { [RAX]: -1n, [RBX]: 0x8000_0001n, [RCX]: 33n }, KEEP, { [RAX]: 2n }, KEEP],
    ['shlx rax, rbx, rcx: count masked to 6 bits',
      [0xc4, 0xe2, V(1, true), 0xf7, 0xc3], { [RBX]: 0x1000_0000_0000_0001n, [RCX]: 68n }, 0, { [RAX]: 0x10n }, 0],
    ['sarx eax, ebx, ecx',
      [0xc4, 0xe2, V(2), 0xf7, 0xc3], { [RBX]: 0x8000_0000n, [RCX]: 31n }, 0, { [RAX]: 0xffff_ffffn }, 0],
    ['sarx rax, rbx, rcx',
      [0xc4, 0xe2, V(2, true), 0xf7, 0xc3], { [RBX]: 1n << 63n, [RCX]: 63n }, 0, { [RAX]: -1n }, 0],
    ['shrx eax, ebx, ecx',
      [0xc4, 0xe2, V(3), 0xf7, 0xc3], { [RBX]: 0x8000_0000n, [RCX]: 31n }, 0, { [RAX]: 1n }, 0],
    ['shrx rax, rbx, rcx',
      [0xc4, 0xe2, V(3, true), 0xf7, 0xc3], { [RBX]: 1n << 32n, [RCX]: 32n }, 0, { [RAX]: 1n }, 0],
    ['rorx eax, ebx, 4 (VEX.0F3A F0, imm8); flags kept',
      [0xc4, 0xe3, 0x7b, 0xf0, 0xc3, 4], { [RBX]: 0x1234_5678n }, KEEP, { [RAX]: 0x8123_4567n }, KEEP],
    ['rorx eax, ebx, 36: the count is masked to 5 bits',
      [0xc4, 0xe3, 0x7b, 0xf0, 0xc3, 36], { [RBX]: 0x1234_5678n }, 0, { [RAX]: 0x8123_4567n }, 0],
    ['rorx rax, rbx, 36',
      [0xc4, 0xe3, 0xfb, 0xf0, 0xc3, 36], { [RBX]: 0xf_0000_0000n }, 0, { [RAX]: 0xf000_0000_0000_0000n }, 0],
  ]);

  it('VEX.L = 1 is #UD; RORX with VEX.vvvv ≠ 1111b is #UD', () => {
    expect(exec([0xc4, 0xe2, V(0) | 4, 0xf2, 0xc3], {}).stop).toEqual(UD);
    expect(exec([0xc4, 0xe2, V(2) | 4, 0xf5, 0xc3], {}).stop).toEqual(UD);
    expect(exec([0xc4, 0xe3, V(3), 0xf0, 0xc3, 4], {}).stop).toEqual(UD);
    expect(exec([0xc4, 0xe2, V(1), 0xf3, 0xc3], {}).stop).toEqual(UD); // group 17 /0 is undefined
  });

  it('outside 64-bit mode VEX.W does not select 64 bits (SDM vol. 2, RORX: "W1 ignored")', () => {
    const { cpu, stop } = exec([0xc4, 0xe3, 0xfb, 0xf0, 0xc3, 4], { [RBX]: 0x1234_5678n }, 0, undefined, 32);
    expect(stop.kind).toBe('halt');
    expect(cpu.reg64(RAX)).toBe(0x8123_4567n);
  });
});

describe('MOVBE (SDM vol. 2, MOVBE)', () => {
  it('movbe eax, [rbx] byte-reverses a dword and zero-extends', () => {
    const { cpu } = exec([0x0f, 0x38, 0xf0, 0x03], { [RAX]: -1n, [RBX]: D }, 0, [0x11, 0x22, 0x33, 0x44]);
    expect(cpu.reg64(RAX)).toBe(0x1122_3344n);
  });
  it('movbe rax, [rbx] byte-reverses a qword', () => {
    const { cpu } = exec([0x48, 0x0f, 0x38, 0xf0, 0x03], { [RBX]: D }, 0, [1, 2, 3, 4, 5, 6, 7, 8]);
    expect(cpu.reg64(RAX)).toBe(0x0102_0304_0506_0708n);
  });
  it('movbe ax, [rbx] (66h) byte-reverses a word and keeps bits 63:16', () => {
    const { cpu } = exec([0x66, 0x0f, 0x38, 0xf0, 0x03], { [RAX]: -1n, [RBX]: D }, 0, [0xaa, 0xbb]);
    expect(cpu.reg64(RAX)).toBe(0xffff_ffff_ffff_aabbn);
  });
  it('movbe [rbx], ecx / rcx / cx store byte-reversed', () => {
    const run = (code: number[], rcx: bigint) =>
      memAfter(code, { [RBX]: D, [RCX]: rcx }, new Array(9).fill(0xee)).bytes;
    expect(run([0x0f, 0x38, 0xf1, 0x0b], 0x1122_3344n)).toEqual([0x11, 0x22, 0x33, 0x44, 0xee, 0xee, 0xee, 0xee, 0xee]);
    expect(run([0x48, 0x0f, 0x38, 0xf1, 0x0b], 0x0102_0304_0506_0708n)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 0xee]);
    expect(run([0x66, 0x0f, 0x38, 0xf1, 0x0b], 0xaabbn)).toEqual([0xaa, 0xbb, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee]);
  });
  it('a register operand, or an F3h prefix, is #UD', () => {
    expect(exec([0x0f, 0x38, 0xf0, 0xc3], {}).stop).toEqual(UD);
    expect(exec([0xf3, 0x0f, 0x38, 0xf0, 0x03], { [RBX]: D }).stop).toEqual(UD);
  });
});
