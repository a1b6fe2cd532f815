/**
 * The slots of a direct-mapped cache filled since its last clear, so that
 * clearing touches only those: VM entries and exits flush the TLBs, and a
 * workload between two of them fills few slots. Past `capacity` fills the
 * clear falls back to wiping every slot.
 */
export class FilledSlots {
  private readonly slots: Int32Array;
  private count = 0;

  constructor(private readonly capacity: number) {
    this.slots = new Int32Array(capacity);
  }

  note(idx: number): void {
    if (this.count < this.capacity) this.slots[this.count] = idx;
    this.count++;
  }

  /** How many slots were filled since the last clear, or -1 when more than are tracked. */
  get size(): number { return this.count > this.capacity ? -1 : this.count; }

  /** The k-th slot filled (0 <= k < size; a slot may appear more than once). */
  at(k: number): number { return this.slots[k]!; }

  /** Sets every filled slot of each tag array to NaN (empty). */
  clear(tags: readonly Float64Array[]): void {
    if (this.count > this.capacity) {
      for (const t of tags) t.fill(NaN);
    } else {
      const slots = this.slots;
      for (const t of tags) for (let k = 0; k < this.count; k++) t[slots[k]!] = NaN;
    }
    this.count = 0;
  }
}
