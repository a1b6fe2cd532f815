/**
 * A VMCS as the processor holds it: every field's value in a typed array
 * (two 32-bit halves per field), with its region address and launch state.
 * The region in memory has hvsim's layout (vmcs/layout.ts); the processor may
 * keep a VMCS here between VMPTRLD and VMCLEAR, and VMCLEAR writes it back
 * (SDM vol. 3C, 25.1 "Overview", 25.11.3 "Initializing a VMCS").
 *
 * Reads and writes here are the processor's own (VM entry, VM exit): they
 * allocate nothing and take encodings the caller knows to exist. VMREAD and
 * VMWRITE check the encoding first (`indexOf`).
 */
import { VMCS_FIELDS } from '../../vmcs/fields.js';
import { fieldOffset, VMCS_LAUNCH_STATE_OFFSET, LaunchState } from '../../vmcs/layout.js';
import { SegmentBank } from '../cpu/segment-bank.js';
import type { PhysicalMemory } from '../cpu/memory.js';

const COUNT = VMCS_FIELDS.length;
/** Full encoding → dense index; -1: no such field. */
const INDEX = new Int16Array(0x8000).fill(-1);
/** Per index: mask of bits 31:0 and whether bits 63:32 exist (64-bit and natural-width fields). */
const LOW_MASK = new Int32Array(COUNT);
const HAS_HIGH = new Uint8Array(COUNT);
VMCS_FIELDS.forEach((f, k) => {
  INDEX[f.encoding] = k;
  LOW_MASK[k] = f.width === '16' ? 0xffff : -1;
  HAS_HIGH[k] = f.width === '64' || f.width === 'natural' ? 1 : 0;
});

/**
 * What the processor derives from the fields and keeps while they stay as they
 * were (Vmcs.fresh): the passed VM-entry checks, and the segment registers as
 * VM entry and VM exit load them (entry.ts, exit.ts).
 */
export const enum Derived { CHECKS = 1, GUEST_SEGMENTS = 2, HOST_SEGMENTS = 4 }

const GUEST_SEGMENT_FIELD = /^GUEST_(ES|CS|SS|DS|FS|GS|LDTR|TR)_(SELECTOR|BASE|LIMIT|ACCESS_RIGHTS)$/;
/**
 * Per index: the Derived bits a change of the field makes stale. The checks
 * read all but the exit-information fields and guest RIP (whose check entry.ts
 * makes every time); the host's segments follow from the host-state fields and
 * the VM-exit controls (host address-space size).
 */
const STALES = Uint8Array.from(VMCS_FIELDS, (f) =>
  (f.type === 'read-only' || f.name === 'GUEST_RIP' ? 0 : Derived.CHECKS) |
  (GUEST_SEGMENT_FIELD.test(f.name) ? Derived.GUEST_SEGMENTS : 0) |
  (f.type === 'host' || f.name === 'PRIMARY_VM_EXIT_CONTROLS' ? Derived.HOST_SEGMENTS : 0));

/** Where bits 31:0 of the field with full encoding `enc` are in Vmcs.values (bits 63:32 follow). */
export function valueAt(enc: number): number {
  return 2 * INDEX[enc]!;
}

/** The dense index of a field's full encoding, or -1 when no field has it. */
export function indexOf(encoding: number): number {
  return encoding === (encoding & 0x7fff) ? INDEX[encoding]! : -1;
}

/** True when the field (by dense index) is 64 bits or natural width. */
export function hasHigh(index: number): boolean {
  return HAS_HIGH[index] === 1;
}

export class Vmcs {
  /** Field values: bits 31:0 of field k at 2k, bits 63:32 at 2k + 1. */
  readonly values = new Int32Array(2 * COUNT);
  launched = false;
  /**
   * Derived bits that still hold: set by whoever derives the thing, cleared by
   * any write that changes a field it was derived from. CHECKS: the VMCS passed
   * the VM-entry checks with IA32_EFER.LMA = checkedLma; on the same inputs they
   * need not be made again.
   */
  fresh = 0;
  checkedLma = 0;
  /**
   * The segment registers as VM entry loads them from the guest fields, with
   * the IA-32e mode guest control and EFER.LMA they were loaded under
   * (guestSegmentsKey), and whether the fields hold what a VM exit would save
   * of them; valid while GUEST_SEGMENTS is fresh and the bank pristine.
   */
  readonly guestSegments = new SegmentBank();
  guestSegmentsKey = 0;
  guestSegmentsSaved = false;
  /** The same as VM exit loads them from the host fields; valid while HOST_SEGMENTS is fresh and the bank pristine. */
  readonly hostSegments = new SegmentBank();

  constructor(readonly address: number) {}

  /** Bits 31:0 of the field with full encoding `enc`. */
  lo(enc: number): number { return this.values[2 * INDEX[enc]!]!; }
  /** Bits 63:32. */
  hi(enc: number): number { return this.values[2 * INDEX[enc]! + 1]!; }
  /** The field as a number (exact up to 2^53: addresses, not arbitrary 64-bit data). */
  num(enc: number): number { return this.hi(enc) * 0x100000000 + (this.lo(enc) >>> 0); }

  /** Writes a field; bits beyond its width are dropped. */
  set(enc: number, lo: number, hi = 0): void {
    this.setIndex(INDEX[enc]!, lo, hi);
  }

  setIndex(k: number, lo: number, hi: number): void {
    lo &= LOW_MASK[k]!;
    hi = HAS_HIGH[k] ? hi : 0;
    if (STALES[k] !== 0 && (this.values[2 * k] !== lo || this.values[2 * k + 1] !== hi)) this.fresh &= ~STALES[k]!;
    this.values[2 * k] = lo;
    this.values[2 * k + 1] = hi;
  }

  /**
   * Writes bits 63:0 of the field at value index `at` (valueAt), already within
   * its width, as VM exits save guest state; returns nonzero when the field
   * changed (the caller then clears what is derived from it in `fresh`).
   */
  put(at: number, lo: number, hi: number): number {
    const values = this.values, changed = (values[at]! ^ lo) | (values[at + 1]! ^ hi);
    values[at] = lo; values[at + 1] = hi;
    return changed;
  }

  /** Reads the VMCS data from its region (VMPTRLD of a VMCS the processor does not hold). */
  load(memory: PhysicalMemory): void {
    for (let k = 0; k < COUNT; k++) {
      const at = this.address + fieldOffset(VMCS_FIELDS[k]!.encoding);
      this.setIndex(k, memory.read32(at), memory.read32(at + 4));
    }
    this.launched = (memory.read8(this.address + VMCS_LAUNCH_STATE_OFFSET) & 0xff) === LaunchState.LAUNCHED;
  }

  /** Writes the VMCS data back to its region (VMCLEAR). */
  store(memory: PhysicalMemory): void {
    for (let k = 0; k < COUNT; k++) {
      const at = this.address + fieldOffset(VMCS_FIELDS[k]!.encoding);
      memory.write32(at, this.values[2 * k]!);
      memory.write32(at + 4, this.values[2 * k + 1]!);
    }
    memory.write8(this.address + VMCS_LAUNCH_STATE_OFFSET, this.launched ? LaunchState.LAUNCHED : LaunchState.CLEAR);
  }
}
