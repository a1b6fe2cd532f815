import { describe, expect, it } from 'vitest';
import { Progress, PROGRESS_AFTER_MS, PROGRESS_EVERY_MS } from './progress.js';

describe('the progress line', () => {
  it('stays silent for the first two seconds, then rewrites one line at most twice a second, and clears it at the end', () => {
    let t = 0;
    const written: string[] = [];
    const p = new Progress((s) => written.push(s), () => t);
    p.update(1_000_000, 10);
    t = PROGRESS_AFTER_MS - 1; p.update(2_000_000, 20);
    expect(written).toEqual([]);
    t = PROGRESS_AFTER_MS; p.update(4_000_000, 1234);
    expect(written).toEqual(['\rhvsim: 4,000,000 instructions, 2.0 MIPS, 1,234 VM exits\x1b[K']);
    t += PROGRESS_EVERY_MS - 1; p.update(5_000_000, 2000);
    expect(written.length).toBe(1);
    t += 1; p.update(5_000_000, null);
    expect(written[1]).toBe(`\rhvsim: 5,000,000 instructions, ${(5e6 / (t * 1000)).toFixed(1)} MIPS\x1b[K`);
    p.done();
    expect(written[2]).toBe('\r\x1b[K');
  });

  it('prints nothing, not even the clearing, for a run that ends early or without a terminal', () => {
    const written: string[] = [];
    let t = 0;
    const quick = new Progress((s) => written.push(s), () => t);
    quick.update(1, 0);
    quick.done();
    expect(written).toEqual([]);
    const none = new Progress(null, () => t);
    t = 10 * PROGRESS_AFTER_MS;
    none.update(1, 0);
    none.done();
    expect(written).toEqual([]);
  });
});
