/**
 * Time travel, as a property: whatever the moves back and forth, going back to
 * a point P of a run and forward again gives the run recorded the first time —
 * the same exits (reason, RIP, qualification, instruction counts) and the same
 * final state, object by object and page by page (snapshot.ts fingerprints).
 * Bounded runs; HVSIM_FUZZ_RUNS multiplies them.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { DebugEngine } from './engine.js';
import { diffFingerprints } from './snapshot.js';
import { GuestState } from './guest-state.js';
import { architecturalFingerprint, guestEngine } from './testing.js';

const SCALE = Math.max(1, Math.floor(Number(process.env.HVSIM_FUZZ_RUNS) || 1));
const SEED = Number(process.env.HVSIM_FUZZ_SEED ?? 0x7717) | 0;


type Move =
  | { readonly kind: 'back-exit' | 'reverse-step' | 'step' | 'next-exit'; readonly n: number }
  | { readonly kind: 'go-to-exit' | 'break-at-exit-rip'; readonly fraction: number }
  | { readonly kind: 'watch'; readonly space: 'linear' | 'physical'; readonly access: 'read' | 'write' | 'access'; readonly address: number };

const move: fc.Arbitrary<Move> = fc.oneof(
  fc.record({ kind: fc.constant('back-exit' as const), n: fc.integer({ min: 1, max: 60 }) }),
  fc.record({ kind: fc.constant('reverse-step' as const), n: fc.integer({ min: 1, max: 6000 }) }),
  fc.record({ kind: fc.constant('step' as const), n: fc.integer({ min: 1, max: 800 }) }),
  fc.record({ kind: fc.constant('next-exit' as const), n: fc.integer({ min: 1, max: 25 }) }),
  fc.record({ kind: fc.constant('go-to-exit' as const), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }),
  // Runs with the processor hooks armed: an address breakpoint, a watchpoint (the data accesses take the slow path).
  fc.record({ kind: fc.constant('break-at-exit-rip' as const), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({
    kind: fc.constant('watch' as const), space: fc.constantFrom('linear' as const, 'physical' as const),
    access: fc.constantFrom('read' as const, 'write' as const, 'access' as const), address: fc.integer({ min: 0x6000, max: 0xa0000 }),
  }),
);

function exitTrace(e: DebugEngine): string[] {
  return e.trace(1e6).map((r) => `#${r.seq} ${r.name} rip=${r.rip.toString(16)} q=${r.qualification.toString(16)} at ${r.instructions} +${r.sinceLast}`);
}

/** Applies a move and checks that it went where it says. */
function apply(e: DebugEngine, m: Move, total: number): void {
  const before = e.position;
  switch (m.kind) {
    case 'back-exit': {
      const seq = before.atExit ? before.exits - m.n : before.exits - m.n + 1;
      const s = e.backExit(m.n);
      if (seq < 1) expect(s.reason).toBe('start');
      else expect([s.reason, e.atExit?.seq]).toEqual(['arrived', seq]);
      break;
    }
    case 'reverse-step': {
      const s = e.reverseStep(m.n);
      if (s.reason !== 'start') expect([e.position.insns, e.position.atExit]).toEqual([Math.max(e.start.insns, before.insns - m.n), false]);
      break;
    }
    case 'step': e.step(m.n); break;
    case 'next-exit': e.nextExit(m.n); break;
    case 'break-at-exit-rip': {
      const at = e.exitAt(1 + Math.floor(m.fraction * (total - 1)))!.record.rip;
      const bp = e.addBreakpoint({ kind: 'address', address: at });
      const s = e.continue({ limit: before.insns + 300_000 });
      if (s.reason === 'breakpoint') expect(new GuestState(e.vm).ripLinear).toBe(at);
      e.deleteBreakpoint(bp.id);
      break;
    }
    case 'watch': {
      const bp = e.addBreakpoint({ kind: 'watch', space: m.space, access: m.access, address: BigInt(m.address), length: 8 });
      const s = e.continue({ limit: before.insns + 300_000 });
      if (s.reason === 'breakpoint' && m.access !== 'access') expect(s.access?.write).toBe(m.access === 'write');
      e.deleteBreakpoint(bp.id);
      break;
    }
    case 'go-to-exit': {
      const seq = 1 + Math.floor(m.fraction * (total - 1));
      e.goTo({ exits: seq, atExit: true, insns: e.exitAt(seq)!.record.instructions });
      expect(e.atExit?.seq).toBe(seq);
      break;
    }
  }
}

function property(e: DebugEngine, runToEnd: () => void, moves: fc.Arbitrary<Move[]>, runs: number): void {
  runToEnd();
  const trace = exitTrace(e), state = architecturalFingerprint(e.vm);
  expect(trace.length).toBeGreaterThan(100);
  fc.assert(fc.property(moves, (ms) => {
    for (const m of ms) apply(e, m, trace.length);
    runToEnd();
    expect(exitTrace(e)).toEqual(trace);
    expect(diffFingerprints(state, architecturalFingerprint(e.vm))).toEqual([]);
  }), { numRuns: runs * SCALE, seed: SEED });
}

describe('time travel', () => {
  it('oracle-hello: going back to any point and forward again repeats the run (882 exits, snapshots every 3,000 instruction-equivalents)', () => {
    const e = guestEngine('oracle-hello.bin', { snapshotInterval: 3000 });
    property(e, () => { expect(e.continue().reason).toBe('ended'); }, fc.array(move, { minLength: 1, maxLength: 4 }), 12);
  });

  it('demo: the same through timer interrupts, the 8254, the 8259A and the UART (the first 600,000 instructions)', () => {
    const e = guestEngine('demo.bin', { snapshotInterval: 60_000 });
    const end = 600_000;
    const runToEnd = (): void => {
      // Moves forward may have gone past the end: back to it first.
      if (e.position.insns > end) e.reverseStep(e.position.insns - end);
      expect(e.continue({ limit: end }).reason).toBe('limit');
    };
    property(e, runToEnd, fc.array(move, { minLength: 1, maxLength: 3 }), 5);
    expect(e.trace(1e6).some((r) => r.name === 'EXTERNAL_INTERRUPT')).toBe(true);
  });
});
