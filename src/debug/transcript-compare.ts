/** Comparing transcripts in tests (vitest's expect), shared by the transcript tests of both sessions. */
import { expect } from 'vitest';

/** Compares two transcripts line by line; a difference is reported with its line number. */
export function expectSameTranscript(actual: readonly string[], expected: readonly string[]): void {
  for (let k = 0; k < Math.max(actual.length, expected.length); k++) {
    expect(`${k + 1}: ${actual[k] ?? '(missing)'}`).toBe(`${k + 1}: ${expected[k] ?? '(missing)'}`);
  }
}
