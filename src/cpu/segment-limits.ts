/**
 * Segment limit and type checks on data accesses and instruction fetches
 * outside 64-bit mode (SDM vol. 3A, 5.3 "Limit Checking", 5.4 "Type
 * Checking"; the #GP/#SS lists of each instruction in vol. 2).
 *
 * The hot path needs one comparison in the usual case. For each segment
 * register the processor keeps, per kind of access, the last offset an access
 * may touch (Cpu.segReadMax, Cpu.segWriteMax), recomputed whenever the
 * segment's hidden part or 64-bit mode changes (Cpu.setSegment,
 * Cpu.updateModes):
 * - NO_LIMIT in 64-bit mode, where no limit or type checks apply (5.3.1), and
 *   for a usable expand-up segment of 4 GiB that allows the access; an access
 *   there is never checked (5.3: where the effective limit is FFFFFFFFH,
 *   accesses that wrap "may or may not" fault; this model lets them wrap);
 * - the limit, for a usable expand-up segment that allows the access: the
 *   caller compares offset + size - 1 with it;
 * - -1 where every access must take the slow path (segmentAllows): expand-down
 *   segments, and segments whose type forbids the access or that are unusable
 *   (the slow path applies those rules only in protected mode).
 */
import type { Block } from './blocks.js';
import type { Cpu } from './cpu.js';
import { CS, RSP, SegAttr, SS, VM, Vector } from './regs.js';

/** Bound meaning "no check": above every offset + size - 1. */
export const NO_LIMIT = 2 ** 33;

const isCodeSegment = (attr: number): boolean => (attr & 8) !== 0;
/** A data segment with the E (expand-down) bit (SDM vol. 3A, 3.4.5.1, table 3-1). */
const isExpandDown = (attr: number): boolean => (attr & 0xc) === 4;

/** Type checks of 5.4 for a usable segment: may `attr` be read (write = false) or written? */
function typeAllows(attr: number, write: boolean): boolean {
  // Code segments are never writable; they are readable when type bit 1 (R) is set.
  // Data segments are always readable; writable when type bit 1 (W) is set.
  if (write) return !isCodeSegment(attr) && (attr & 2) !== 0;
  return !isCodeSegment(attr) || (attr & 2) !== 0;
}

/** Recomputes the bounds of segment register `seg` (ES-GS) for the current mode. */
export function updateSegmentBounds(cpu: Cpu, seg: number): void {
  if (cpu.codeSize === 8) {
    cpu.segReadMax[seg] = NO_LIMIT; cpu.segWriteMax[seg] = NO_LIMIT;
    return;
  }
  const attr = cpu.segAttr[seg]!, limit = cpu.segLimit[seg]!;
  const plain = (attr & SegAttr.UNUSABLE) === 0 && !isExpandDown(attr);
  const bound = limit === 0xffffffff ? NO_LIMIT : limit;
  cpu.segReadMax[seg] = plain && typeAllows(attr, false) ? bound : -1;
  cpu.segWriteMax[seg] = plain && typeAllows(attr, true) ? bound : -1;
}

/**
 * The rules themselves: may `size` bytes at `offset` (0 to 2^32 - 1) in
 * segment register `seg` be read or written, outside 64-bit mode?
 * - Protected mode (not virtual-8086 mode) checks the type (5.4) and that the
 *   segment is usable (5.4.1: a null selector loaded in DS, ES, FS or GS).
 *   Real-address and virtual-8086 mode do not (vol. 2 "Real-Address Mode
 *   Exceptions" list only limit violations): code there writes through CS.
 * - The limit (5.3), in every mode, with the cached limit: expand-up, offsets
 *   0 to limit; expand-down, limit + 1 to FFFFH, or FFFFFFFFH when B is set.
 */
export function segmentAllows(cpu: Cpu, seg: number, offset: number, size: number, write: boolean): boolean {
  const attr = cpu.segAttr[seg]!, limit = cpu.segLimit[seg]!;
  if ((cpu.cr0 & 1) !== 0 && (cpu.flags & VM) === 0) {
    if ((attr & SegAttr.UNUSABLE) !== 0 || !typeAllows(attr, write)) return false;
  }
  const last = offset + size - 1;
  if (isExpandDown(attr)) return offset > limit && last <= ((attr & SegAttr.DB) !== 0 ? 0xffffffff : 0xffff);
  return limit === 0xffffffff || last <= limit;
}

/**
 * Checks an access of `size` bytes at `offset` in `seg` and raises #SS(0) for
 * SS, #GP(0) for any other segment (vol. 2, "Protected Mode Exceptions" of
 * each instruction). Callers outside the hot path call it directly; hot paths
 * first compare with the bound (operands.ts checkSegment).
 */
export function checkOffset(cpu: Cpu, seg: number, offset: number, size: number, write: boolean): void {
  if (offset + size - 1 <= (write ? cpu.segWriteMax[seg]! : cpu.segReadMax[seg]!)) return;
  if (!segmentAllows(cpu, seg, offset, size, write)) cpu.raise(seg === SS ? Vector.SS : Vector.GP, 0);
}

/**
 * The frame of `bytes` an inner-privilege call or interrupt pushes on the stack
 * it has just switched to: it must fit below SP within the new SS, else
 * #SS(errorCode), the new SS selector (vol. 2, CALL and INT n: "#SS(error_code)
 * If pushing ... exceeds the bounds of the stack segment when a stack switch
 * occurs"). Checked before anything is pushed.
 */
export function checkNewStackFrame(cpu: Cpu, bytes: number, errorCode: number): void {
  if (cpu.stackSize === 8) return;
  const sp = cpu.gpr[2 * RSP]!;
  const offset = cpu.stackSize === 4 ? (sp - bytes) >>> 0 : (sp - bytes) & 0xffff;
  if (!segmentAllows(cpu, SS, offset, bytes, true)) cpu.raise(Vector.SS, errorCode);
}

/**
 * How many of the first `n` instructions of `block`, which starts at offset
 * `ip` in CS, lie wholly within the CS limit (5.3: fetching an instruction any
 * byte of which is beyond the limit raises #GP(0)). 16-bit code wraps its IP
 * at 64 KiB, so with a limit of FFFFH or more it never leaves CS.
 */
export function insnsWithinCodeLimit(cpu: Cpu, block: Block, ip: number, n: number): number {
  const limit = cpu.segLimit[CS]!, start = ip >>> 0;
  if (limit === 0xffffffff || (block.mode === 2 && limit >= 0xffff) || start + block.length - 1 <= limit) return n;
  let k = 0;
  while (k < n && start + block.offsets[k]! + block.insns[k]!.len - 1 <= limit) k++;
  return k;
}

/** Outside 64-bit mode, the byte at offset `off` (wrapped at the code size) of CS may be fetched (5.3). */
export function fetchWithinLimit(cpu: Cpu, off: number): boolean {
  const limit = cpu.segLimit[CS]!;
  return limit === 0xffffffff || off >>> 0 <= limit;
}
