import { describe, expect, it } from 'vitest';
import { DATA_ADDRESS, runFragment } from '../testing.js';
import { AF, CF, OF, PF, RAX, RBX, RCX, SF, ZF } from '../regs.js';

const STATUS = CF | PF | AF | ZF | SF | OF;

/** Runs `code` with the given registers and status flags. */
function exec(code: number[], regs: Record<number, bigint>, flags = 0, mem?: number[]) {
  return runFragment(code, {
    setup: (c) => {
      for (const [r, v] of Object.entries(regs)) c.setReg64(Number(r), v);
      c.rflags = flags;
      if (mem) c.memory.load(DATA_ADDRESS, Uint8Array.from(mem));
    },
  });
}

/** [title, code, RAX in, RCX in, RBX in, flags in, RAX out, status flags out] */
type Row = [string, number[], bigint, bigint, bigint, number, bigint, number];

function table(rows: Row[]): void {
  for (const [title, code, rax, rcx, rbx, fin, out, fout] of rows) {
    it(title, () => {
      const { cpu, stop } = exec(code, { [RAX]: rax, [RCX]: rcx, [RBX]: rbx }, fin);
      expect(stop.kind).toBe('halt');
      expect(cpu.reg64(RAX).toString(16)).toBe(out.toString(16));
      expect(cpu.rflags & STATUS).toBe(fout);
    });
  }
}

describe('SAL/SHL, SHR, SAR (SDM vol. 2, SAL/SAR/SHL/SHR)', () => {
  table([
    ['shl al, 1: CF = old MSB, OF = MSB(result) XOR CF; bits above AL kept',
      [0xd0, 0xe0], 0x1234_0081n, 0n, 0n, 0, 0x1234_0002n, CF | OF],
    ['shl eax, 4: CF = last bit out; OF for count > 1 = MSB XOR CF (documented choice)',
      [0xc1, 0xe0, 4], 0xffff_ffff_9000_0001n, 0n, 0n, 0, 0x10n, CF | OF],
    ['shl rax, 63: SF and PF from the result, AF = 0',
      [0x48, 0xc1, 0xe0, 63], 3n, 0n, 0n, AF, 0x8000_0000_0000_0000n, CF | SF | PF],
    ['shl rax, cl with CL = 64: the count is masked to 6 bits → 0, nothing changes',
      [0x48, 0xd3, 0xe0], 0x8000_0000_0000_0001n, 64n, 0n, CF | ZF | OF, 0x8000_0000_0000_0001n, CF | ZF | OF],
    ['shl eax, cl with CL = 32: masked to 0; flags kept but EAX is still zero-extended (SDM vol. 1, 3.4.1.1)',
      [0xd3, 0xe0], 0xffff_ffff_8000_0000n, 32n, 0n, SF | AF, 0x8000_0000n, SF | AF],
    ['shl eax, 0 (imm): zero-extends, flags kept',
      [0xc1, 0xe0, 0], 0xdead_beef_0000_0001n, 0n, 0n, PF | OF, 1n, PF | OF],
    ['shl al, 8 (count = operand size): CF = bit 0, result 0',
      [0xc0, 0xe0, 8], 0x1234_0001n, 0n, 0n, 0, 0x1234_0000n, CF | OF | ZF | PF],
    ['shl al, 9 (count > operand size): result 0, CF = 0 as the pseudo-code loop gives',
      [0xc0, 0xe0, 9], 0xffn, 0n, 0n, CF, 0n, ZF | PF],
    ['shl ax, 16: CF = bit 0; bits 63:16 kept',
      [0x66, 0xc1, 0xe0, 16], 0xaaaa_8001n, 0n, 0n, 0, 0xaaaa_0000n, CF | OF | ZF | PF],
    ['sal eax, 4 (group 2 /6 is SAL = SHL)',
      [0xc1, 0xf0, 4], 1n, 0n, 0n, CF | OF, 0x10n, 0],
    ['shr al, 1: CF = old bit 0, OF = old MSB',
      [0xd0, 0xe8], 0x81n, 0n, 0n, 0, 0x40n, CF | OF],
    ['shr rax, 33: across the 32-bit halves',
      [0x48, 0xc1, 0xe8, 33], 0x8000_0001_0000_0000n, 0n, 0n, OF, 0x4000_0000n, CF | PF],
    ['shr ax, cl with CL = 31 (> 16): result 0, CF = 0',
      [0x66, 0xd3, 0xe8], 0xffffn, 31n, 0n, 0, 0n, ZF | PF],
    ['sar al, 1: the sign fills in, OF = 0',
      [0xd0, 0xf8], 0x81n, 0n, 0n, OF, 0xc0n, CF | SF | PF],
    ['sar eax, 31: all sign bits; CF = bit 30; zero-extended into RAX',
      [0xc1, 0xf8, 31], 0x1_8000_0000n, 0n, 0n, 0, 0xffff_ffffn, SF | PF],
    ['sar ax, 20 (count > 16): every bit and CF become the sign',
      [0x66, 0xc1, 0xf8, 20], 0x8000n, 0n, 0n, 0, 0xffffn, CF | SF | PF],
    ['sar rax, 63',
      [0x48, 0xc1, 0xf8, 63], 0x8000_0000_0000_0000n, 0n, 0n, 0, 0xffff_ffff_ffff_ffffn, SF | PF],
    ['sar rax, 1 of a positive value: CF = old bit 0',
      [0x48, 0xd1, 0xf8], 0x7fff_ffff_ffff_ffffn, 0n, 0n, 0, 0x3fff_ffff_ffff_ffffn, CF | PF],
  ]);

  it('shl byte [rbx], 1 and shr qword [rbx], cl work on memory', () => {
    const { cpu } = exec([0xd0, 0x23, 0x48, 0xd3, 0x2b], { [RBX]: BigInt(DATA_ADDRESS), [RCX]: 4n }, 0,
      [0xc0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]);
    // shl byte: 0xc0 → 0x80; then the qword 0x7766554433221180 >> 4.
    expect(Array.from(cpu.memory.dump(DATA_ADDRESS, 8))).toEqual([0x18, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x07]);
    expect(cpu.rflags & CF).toBe(0);
  });

  it('a masked count of 0 on memory writes nothing and keeps the flags', () => {
    const { cpu } = exec([0xd3, 0x23], { [RBX]: BigInt(DATA_ADDRESS), [RCX]: 0x20n }, CF | ZF, [1, 2, 3, 4]);
    expect(Array.from(cpu.memory.dump(DATA_ADDRESS, 4))).toEqual([1, 2, 3, 4]);
    expect(cpu.rflags & STATUS).toBe(CF | ZF);
  });
});

describe('ROL/ROR/RCL/RCR (SDM vol. 2, RCL/RCR/ROL/ROR)', () => {
  const OTHERS = SF | ZF | AF | PF;
  table([
    ['rol al, 1: CF = new LSB, OF = MSB XOR CF; SF/ZF/AF/PF untouched',
      [0xd0, 0xc0], 0x81n, 0n, 0n, OTHERS, 0x03n, CF | OF | OTHERS],
    ['rol al, 8: count MOD 8 = 0 leaves the value, CF and OF still set from it',
      [0xc0, 0xc0, 8], 0x81n, 0n, 0n, OF, 0x81n, CF],
    ['rol ax, 4',
      [0x66, 0xc1, 0xc0, 4], 0xffff_1234n, 0n, 0n, 0, 0xffff_2341n, CF | OF],
    ['rol rax, 4: bits cross from bit 63 into bit 0',
      [0x48, 0xc1, 0xc0, 4], 0xf000_0000_0000_0001n, 0n, 0n, 0, 0x1fn, CF | OF],
    ['rol eax, cl with CL = 0: zero-extends, flags kept',
      [0xd3, 0xc0], 0x1_0000_0001n, 0n, 0n, OF, 1n, OF],
    ['ror eax, 1: CF = new MSB, OF = XOR of the two top bits',
      [0xd1, 0xc8], 1n, 0n, 0n, 0, 0x8000_0000n, CF | OF],
    ['ror rax, 36',
      [0x48, 0xc1, 0xc8, 36], 0xf_0000_0000n, 0n, 0n, OF, 0xf000_0000_0000_0000n, CF],
    ['ror al, 3',
      [0xc0, 0xc8, 3], 0x81n, 0n, 0n, CF | OF, 0x30n, 0],
    ['rcl al, 1: CF enters bit 0, the MSB leaves into CF',
      [0xd0, 0xd0], 0x80n, 0n, 0n, CF, 0x01n, CF | OF],
    ['rcl al, 9: count MOD 9 = 0 leaves value and CF; OF = MSB XOR CF (choice)',
      [0xc0, 0xd0, 9], 0x81n, 0n, 0n, 0, 0x81n, OF],
    ['rcl ax, 17: count MOD 17 = 0',
      [0x66, 0xc1, 0xd0, 17], 0x8001n, 0n, 0n, CF | ZF, 0x8001n, CF | ZF],
    ['rcl ax, 16: a 17-bit rotation by 16',
      [0x66, 0xc1, 0xd0, 16], 0x0001n, 0n, 0n, CF, 0x8000n, CF],
    ['rcl rax, 32: a 65-bit rotation',
      [0x48, 0xc1, 0xd0, 32], 0x1_8000_0000n, 0n, 0n, CF, 0x8000_0000_8000_0000n, CF],
    ['rcl eax, 31',
      [0xc1, 0xd0, 31], 0x2n, 0n, 0n, CF, 0x4000_0000n, CF | OF],
    ['rcr al, 1: CF enters the MSB, OF = XOR of the two top result bits',
      [0xd0, 0xd8], 0x01n, 0n, 0n, CF, 0x80n, CF | OF],
    ['rcr rax, 1',
      [0x48, 0xd1, 0xd8], 0x8000_0000_0000_0001n, 0n, 0n, 0, 0x4000_0000_0000_0000n, CF | OF],
    ['rcr eax, 31',
      [0xc1, 0xd8, 31], 0xffff_ffffn, 0n, 0n, 0, 0xffff_fffdn, CF],
    ['rcr ax, 17 (MOD 17 = 0) and CF kept',
      [0x66, 0xc1, 0xd8, 17], 0x4000n, 0n, 0n, CF, 0x4000n, CF | OF],
  ]);
});

describe('SHLD/SHRD (SDM vol. 2, SHLD, SHRD)', () => {
  table([
    ['shld eax, ebx, 4: bits come in from EBX; CF = last bit out of EAX',
      [0x0f, 0xa4, 0xd8, 4], 0x1234_5678n, 0n, 0x9abc_def0n, 0, 0x2345_6789n, CF | OF],
    ['shld rax, rbx, 1: OF = sign change',
      [0x48, 0x0f, 0xa4, 0xd8, 1], 0x8000_0000_0000_0000n, 0n, 0x8000_0000_0000_0000n, 0, 1n, CF | OF],
    ['shld rax, rbx, cl with CL = 36',
      [0x48, 0x0f, 0xa5, 0xd8], 0x0000_0001_2345_6789n, 36n, 0xabcd_ef01_2345_6789n, 0, 0x3456_789a_bcde_f012n, PF],
    ['shrd rax, rbx, cl with CL = 60',
      [0x48, 0x0f, 0xad, 0xd8], 0xf000_0000_0000_0000n, 60n, 0x123n, 0, 0x123fn, PF],
    ['shrd eax, ebx, 8',
      [0x0f, 0xac, 0xd8, 8], 0xffff_ffff_1122_3344n, 0n, 0xaabb_ccddn, 0, 0xdd11_2233n, SF | PF],
    ['shrd ax, bx, 1: OF = sign change; bits 63:16 kept',
      [0x66, 0x0f, 0xac, 0xd8, 1], 0x5555_0001n, 0n, 1n, 0, 0x5555_8000n, CF | OF | SF | PF],
    ['shld ax, bx, 16 (count = operand size): the result is BX',
      [0x66, 0x0f, 0xa4, 0xd8, 16], 0x1234n, 0n, 0xabcdn, 0, 0xabcdn, SF | OF],
    ['shld ax, bx, 17 (> 16, undefined): Intel P6 pattern AX:BX:AX (documented choice)',
      [0x66, 0x0f, 0xa4, 0xd8, 17], 0x1234n, 0n, 0xabcdn, 0, 0x579an, CF | OF | PF],
    ['shrd ax, bx, 20 (> 16, undefined): Intel P6 pattern AX:BX:AX (documented choice)',
      [0x66, 0x0f, 0xac, 0xd8, 20], 0x1234n, 0n, 0xabcdn, 0, 0x4abcn, CF | OF],
    ['shld eax, ebx, 0: flags kept, EAX zero-extended',
      [0x0f, 0xa4, 0xd8, 0], 0x7_0000_0005n, 0n, 0xffff_ffffn, CF | SF, 5n, CF | SF],
    ['shrd rax, rbx, cl with CL = 64: masked to 0, nothing changes',
      [0x48, 0x0f, 0xad, 0xd8], 0x1234n, 64n, 0xffffn, ZF, 0x1234n, ZF],
  ]);

  it('shld dword [rcx], ebx, 8 on memory', () => {
    const { cpu } = exec([0x0f, 0xa4, 0x19, 8], { [RCX]: BigInt(DATA_ADDRESS), [RBX]: 0xaabb_ccddn }, 0,
      [0x44, 0x33, 0x22, 0x11]);
    // 0x11223344 << 8 | 0xaa = 0x223344aa; CF = bit 24 of 0x11223344 = 1.
    expect(Array.from(cpu.memory.dump(DATA_ADDRESS, 4))).toEqual([0xaa, 0x44, 0x33, 0x22]);
    expect(cpu.rflags & (CF | ZF | SF)).toBe(CF);
  });
});
