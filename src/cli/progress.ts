/**
 * The progress line of a long run: on a terminal's stderr, once a run has
 * taken PROGRESS_AFTER_MS, one line rewritten in place at most every
 * PROGRESS_EVERY_MS (instructions so far, MIPS, VM exits), cleared at the end.
 * The host's clock only decides when to print, never what the guest sees.
 */
export const PROGRESS_AFTER_MS = 2000;
export const PROGRESS_EVERY_MS = 500;

export class Progress {
  private readonly start: number;
  private next: number;
  private shown = false;

  /** `write` puts text on the terminal (null: no progress line); `now` is the host's clock in ms. */
  constructor(private readonly write: ((text: string) => void) | null, private readonly now: () => number = () => performance.now()) {
    this.start = now();
    this.next = this.start + PROGRESS_AFTER_MS;
  }

  /** Called often during the run; prints when it is time. `exits` is null without a hypervisor. */
  update(instructions: number, exits: number | null): void {
    if (this.write === null) return;
    const t = this.now();
    if (t < this.next) return;
    this.next = t + PROGRESS_EVERY_MS;
    const mips = instructions / ((t - this.start) * 1000);
    const exitText = exits === null ? '' : `, ${exits.toLocaleString('en-US')} VM exits`;
    this.write(`\rhvsim: ${instructions.toLocaleString('en-US')} instructions, ${mips.toFixed(1)} MIPS${exitText}\x1b[K`);
    this.shown = true;
  }

  /** Clears the line, if one was printed, before the run's own output. */
  done(): void {
    if (this.shown) this.write!('\r\x1b[K');
    this.shown = false;
  }
}
