/**
 * Lazy arithmetic flags. ADD/SUB-family and logic instructions record their
 * operands and result; the six status flags are derived only when read.
 * Everything else sets flags eagerly through setStatusFlags().
 *
 * Flag definitions: SDM vol. 1, appendix A (EFLAGS cross-reference) and each
 * instruction's "Flags Affected" section in vol. 2.
 */
import { AF, CF, OF, PF, SF, STATUS_FLAGS, ZF } from './regs.js';

/** How the lazy flags are derived from the recorded operands. */
export const enum FlagOp { ADD = 1, ADC, SUB, SBB, LOGIC, INC, DEC }

/** The fields of the processor that hold lazy flags. */
export interface FlagState {
  /** RFLAGS as last materialized; bits in lazyMask are stale. */
  flags: number;
  /** Status flags that must be derived from the lazy record. */
  lazyMask: number;
  lfOp: FlagOp;
  /** Operand size in bytes: 1, 2, 4 or 8. */
  lfSize: number;
  lfALo: number; lfAHi: number;
  lfBLo: number; lfBHi: number;
  lfRLo: number; lfRHi: number;
  /** Carry in of ADC/SBB. */
  lfCarryIn: number;
}

/** PF: 1 when the low byte of the result has an even number of set bits. */
export const PARITY = new Uint8Array(256);
for (let v = 0; v < 256; v++) {
  let bits = 0;
  for (let b = 0; b < 8; b++) bits += (v >> b) & 1;
  PARITY[v] = bits & 1 ? 0 : 1;
}

/** Records an arithmetic result. INC and DEC leave CF as it was (SDM vol. 2, INC/DEC). */
export function setLazy(s: FlagState, op: FlagOp, size: number,
  aLo: number, aHi: number, bLo: number, bHi: number, rLo: number, rHi: number): void {
  if (op === FlagOp.INC || op === FlagOp.DEC) {
    if (s.lazyMask & CF) s.flags = (s.flags & ~CF) | lazyCF(s);
    s.lazyMask = STATUS_FLAGS & ~CF;
  } else {
    s.lazyMask = STATUS_FLAGS;
  }
  s.lfOp = op; s.lfSize = size;
  s.lfALo = aLo; s.lfAHi = aHi; s.lfBLo = bLo; s.lfBHi = bHi; s.lfRLo = rLo; s.lfRHi = rHi;
}

/** Records an ADC/SBB result with its carry in. */
export function setLazyCarry(s: FlagState, op: FlagOp, size: number, carryIn: number,
  aLo: number, aHi: number, bLo: number, bHi: number, rLo: number, rHi: number): void {
  s.lazyMask = STATUS_FLAGS;
  s.lfOp = op; s.lfSize = size; s.lfCarryIn = carryIn;
  s.lfALo = aLo; s.lfAHi = aHi; s.lfBLo = bLo; s.lfBHi = bHi; s.lfRLo = rLo; s.lfRHi = rHi;
}

/** Records a logic result: CF = OF = 0; AF is undefined and reads 0 as on Intel parts. */
export function setLazyLogic(s: FlagState, size: number, rLo: number, rHi: number): void {
  s.lazyMask = STATUS_FLAGS;
  s.lfOp = FlagOp.LOGIC; s.lfSize = size; s.lfRLo = rLo; s.lfRHi = rHi;
}

/** Unsigned a < b on values of the given size (narrow values are already masked). */
function below(size: number, aLo: number, aHi: number, bLo: number, bHi: number): boolean {
  if (size === 8 && aHi !== bHi) return (aHi >>> 0) < (bHi >>> 0);
  return (aLo >>> 0) < (bLo >>> 0);
}

/** The sign bit of a value of the given size. */
export function signOf(size: number, lo: number, hi: number): number {
  switch (size) {
    case 1: return (lo >>> 7) & 1;
    case 2: return (lo >>> 15) & 1;
    case 4: return lo >>> 31;
    default: return hi >>> 31;
  }
}

export function lazyCF(s: FlagState): number {
  const z = s.lfSize;
  switch (s.lfOp) {
    case FlagOp.ADD: return below(z, s.lfRLo, s.lfRHi, s.lfALo, s.lfAHi) ? CF : 0;
    case FlagOp.ADC:
      return below(z, s.lfRLo, s.lfRHi, s.lfALo, s.lfAHi) ||
        (s.lfCarryIn !== 0 && s.lfRLo === s.lfALo && (z !== 8 || s.lfRHi === s.lfAHi)) ? CF : 0;
    case FlagOp.SUB: return below(z, s.lfALo, s.lfAHi, s.lfBLo, s.lfBHi) ? CF : 0;
    case FlagOp.SBB:
      return below(z, s.lfALo, s.lfAHi, s.lfBLo, s.lfBHi) ||
        (s.lfCarryIn !== 0 && s.lfALo === s.lfBLo && (z !== 8 || s.lfAHi === s.lfBHi)) ? CF : 0;
    default: return 0;
  }
}

export function lazyZF(s: FlagState): number {
  return s.lfRLo === 0 && (s.lfSize !== 8 || s.lfRHi === 0) ? ZF : 0;
}

export function lazySF(s: FlagState): number {
  return signOf(s.lfSize, s.lfRLo, s.lfRHi) ? SF : 0;
}

export function lazyOF(s: FlagState): number {
  const z = s.lfSize;
  let x: number, xh: number;
  switch (s.lfOp) {
    case FlagOp.ADD: case FlagOp.ADC: case FlagOp.INC:
      x = (s.lfALo ^ s.lfRLo) & (s.lfBLo ^ s.lfRLo);
      xh = (s.lfAHi ^ s.lfRHi) & (s.lfBHi ^ s.lfRHi);
      break;
    case FlagOp.SUB: case FlagOp.SBB: case FlagOp.DEC:
      x = (s.lfALo ^ s.lfBLo) & (s.lfALo ^ s.lfRLo);
      xh = (s.lfAHi ^ s.lfBHi) & (s.lfAHi ^ s.lfRHi);
      break;
    default: return 0;
  }
  return signOf(z, x, xh) ? OF : 0;
}

function lazyAF(s: FlagState): number {
  return s.lfOp === FlagOp.LOGIC ? 0 : (s.lfALo ^ s.lfBLo ^ s.lfRLo) & AF;
}

function lazyPF(s: FlagState): number {
  return PARITY[s.lfRLo & 0xff] ? PF : 0;
}

/** Folds the lazy record into s.flags and returns RFLAGS. */
export function materialize(s: FlagState): number {
  const m = s.lazyMask;
  if (m === 0) return s.flags;
  let f = s.flags & ~m;
  if (m & CF) f |= lazyCF(s);
  f |= lazyPF(s) | lazyAF(s) | lazyZF(s) | lazySF(s) | lazyOF(s);
  s.flags = f;
  s.lazyMask = 0;
  return f;
}

/** Replaces the bits of `mask` with those of `value`, after materializing the rest. */
export function setStatusFlags(s: FlagState, mask: number, value: number): void {
  // Lazy flags that `mask` replaces all need not be computed first.
  if ((s.lazyMask & ~mask) === 0) s.lazyMask = 0;
  s.flags = (materialize(s) & ~mask) | (value & mask);
}

export function getCF(s: FlagState): number {
  return s.lazyMask & CF ? lazyCF(s) : s.flags & CF;
}
export function getZF(s: FlagState): number {
  return s.lazyMask & ZF ? lazyZF(s) : s.flags & ZF;
}
export function getSF(s: FlagState): number {
  return s.lazyMask & SF ? lazySF(s) : s.flags & SF;
}
export function getOF(s: FlagState): number {
  return s.lazyMask & OF ? lazyOF(s) : s.flags & OF;
}
export function getPF(s: FlagState): number {
  return s.lazyMask & PF ? lazyPF(s) : s.flags & PF;
}

/**
 * Condition code tttn (SDM vol. 2, appendix B.1.4.7, table B-10): true when
 * Jcc/SETcc/CMOVcc with this low nibble would take effect.
 */
export function testCondition(s: FlagState, cc: number): boolean {
  let r: boolean;
  switch (cc >> 1) {
    case 0: r = getOF(s) !== 0; break;
    case 1: r = getCF(s) !== 0; break;
    case 2: r = getZF(s) !== 0; break;
    case 3: r = getCF(s) !== 0 || getZF(s) !== 0; break;
    case 4: r = getSF(s) !== 0; break;
    case 5: r = getPF(s) !== 0; break;
    case 6: r = (getSF(s) !== 0) !== (getOF(s) !== 0); break;
    default: r = getZF(s) !== 0 || (getSF(s) !== 0) !== (getOF(s) !== 0); break;
  }
  return (cc & 1) ? !r : r;
}
