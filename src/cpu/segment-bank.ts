/**
 * The hidden parts of the segment registers as one object: the processor
 * works on the bank it was given (Cpu.useSegmentBank), so that VM entries and
 * exits can switch between the guest's and the host's segment registers of a
 * VMCS without copying them (src/vmx entry.ts, exit.ts).
 */

/** Segment registers in encoding order, then LDTR (6) and TR (7). */
const SEGMENTS = 8;

export class SegmentBank {
  /**
   * Per segment register ES-GS, the last offset a read or a write may touch
   * without a closer look, or NO_LIMIT (segment-limits.ts).
   */
  readonly readMax = new Float64Array(6);
  readonly writeMax = new Float64Array(6);
  /** Base (lo/hi), limit and access rights in the VMCS layout, and selector. */
  readonly base = new Int32Array(2 * SEGMENTS);
  readonly limit = new Uint32Array(SEGMENTS);
  readonly attr = new Int32Array(SEGMENTS);
  readonly sel = new Uint16Array(SEGMENTS);
  /**
   * Holds what its owner last loaded into it (Cpu.markSegmentBankPristine),
   * untouched since: cleared when the processor leaves it after changing a
   * segment register in it.
   */
  pristine = false;
}
