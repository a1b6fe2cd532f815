/**
 * The memory operand of an exiting instruction, as the VM-exit instruction
 * information and the exit qualification describe it (SDM vol. 3C, 28.2.5,
 * tables 28-9 to 28-15): scaling in bits 1:0, address size in 9:7, segment in
 * 17:15, index register in 21:18 (bit 22: none), base register in 26:23
 * (bit 27: none); the displacement is the exit qualification.
 */
import { ES } from '../cpu/regs.js';
import { Field } from '../../vmcs/fields.js';
import type { Guest } from './guest.js';

/** Address sizes 16, 32 and 64 bits, by the instruction information's encoding. */
const ADDRESS_MASKS = [0xffffn, 0xffffffffn, (1n << 64n) - 1n];

/** The mask of the address size in `info` (bits 9:7). */
export function addressMask(info: number): bigint {
  return ADDRESS_MASKS[(info >>> 7) & 7] ?? ADDRESS_MASKS[2]!;
}

/** Segment `segment`'s base as it applies: outside 64-bit mode every base, in it only FS's and GS's (SDM vol. 3A, 3.4.4). */
export function segmentBase(g: Guest, segment: number): bigint {
  return g.codeSize !== 8 || segment >= 4 ? g.read64(Field.GUEST_ES_BASE + 2 * (segment - ES)) : 0n;
}

/** The linear address `offset` in `segment` names: 64 bits in 64-bit mode, wrapping at 4 GiB elsewhere. */
export function linearAddress(g: Guest, segment: number, offset: bigint): bigint {
  const linear = segmentBase(g, segment) + offset;
  return g.codeSize === 8 ? linear & ((1n << 64n) - 1n) : linear & 0xffffffffn;
}

/** The linear address of the memory operand described by `info` and `displacement` (sign-extended already). */
export function memoryOperand(g: Guest, info: number, displacement: bigint): bigint {
  const mask = addressMask(info);
  let offset = displacement;
  if ((info & (1 << 27)) === 0) offset += g.reg((info >>> 23) & 15);
  if ((info & (1 << 22)) === 0) offset += g.reg((info >>> 18) & 15) << BigInt(info & 3);
  return linearAddress(g, (info >>> 15) & 7, offset & mask);
}
