/**
 * Time travel with --bare, as a property (like time-travel.test.ts over
 * hvsim's VM): whatever the moves back and forth — back-exit, reverse-step,
 * steps, exits, runs with an address breakpoint or a watchpoint armed —
 * going back to a point of the run and forward again gives the run recorded
 * the first time: the same exits (reason, RIP, qualification, instruction
 * counts) and the same final state of the whole machine, object by object
 * and page by page. Bounded runs; HVSIM_FUZZ_RUNS multiplies them.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BareEngine } from './bare-engine.js';
import { diffFingerprints } from './snapshot.js';
import { architecturalFingerprint, guestImage } from './testing.js';

const SCALE = Math.max(1, Math.floor(Number(process.env.HVSIM_FUZZ_RUNS) || 1));
const SEED = Number(process.env.HVSIM_FUZZ_SEED ?? 0x3a5e) | 0;

type Move =
  | { readonly kind: 'back-exit' | 'reverse-step' | 'step' | 'next-exit'; readonly n: number }
  | { readonly kind: 'break-at-exit-rip'; readonly fraction: number }
  | { readonly kind: 'watch'; readonly access: 'read' | 'write' | 'access'; readonly address: number };

const move: fc.Arbitrary<Move> = fc.oneof(
  fc.record({ kind: fc.constant('back-exit' as const), n: fc.integer({ min: 1, max: 400 }) }),
  fc.record({ kind: fc.constant('reverse-step' as const), n: fc.integer({ min: 1, max: 8000 }) }),
  fc.record({ kind: fc.constant('step' as const), n: fc.integer({ min: 1, max: 500 }) }),
  fc.record({ kind: fc.constant('next-exit' as const), n: fc.integer({ min: 1, max: 50 }) }),
  fc.record({ kind: fc.constant('break-at-exit-rip' as const), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }),
  // The handler's stack (HOST_RSP is 0x110000 in lib/vmx64.inc), its exit counter, the guest's code.
  fc.record({ kind: fc.constant('watch' as const), access: fc.constantFrom('read' as const, 'write' as const, 'access' as const),
    address: fc.constantFrom(0x10fff0, 0x10ffe0, 0x101231, 0x113000) }),
);

const END = 60_000;

function exitTrace(e: BareEngine): string[] {
  return e.trace(1e6).map((r) => `#${r.seq} ${r.name} rip=${r.rip.toString(16)} q=${r.qualification.toString(16)} at ${r.instructions} +${r.sinceLast}`);
}

function apply(e: BareEngine, m: Move, total: number): void {
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
      // A step is an instruction or an exit: the sum goes back by n (at most to the start).
      if (s.reason !== 'start') expect(e.insns + e.exits).toBe(Math.max(0, before.insns + before.exits - m.n));
      break;
    }
    case 'step': e.step(m.n, END); break;
    case 'next-exit': e.nextExit(m.n, END); break;
    case 'break-at-exit-rip': {
      const at = e.exitAt(1 + Math.floor(m.fraction * (total - 1)))?.record.rip ?? 0x101231n;
      const bp = e.addBreakpoint({ kind: 'address', address: at });
      const s = e.continue(Math.min(END, before.insns + 20_000));
      if (s.reason === 'breakpoint') expect(e.cpu.rip).toBe(at);
      e.deleteBreakpoint(bp.id);
      break;
    }
    case 'watch': {
      const bp = e.addBreakpoint({ kind: 'watch', space: 'linear', access: m.access, address: BigInt(m.address), length: 8 });
      const s = e.continue(Math.min(END, before.insns + 20_000));
      if (s.reason === 'breakpoint' && m.access !== 'access') expect(s.access?.write).toBe(m.access === 'write');
      e.deleteBreakpoint(bp.id);
      break;
    }
  }
}

describe('time travel with --bare', () => {
  it('bench-vmexit: going back to any point and forward again repeats the run (about 1,660 exits, snapshots every 2,000 instruction-equivalents, thinned)', () => {
    const e = new BareEngine({ image: guestImage('bench-vmexit.bin'), snapshotInterval: 2000, maxSnapshots: 64 });
    const runToEnd = (): void => {
      // Moves forward may have gone past the end: back to it first.
      if (e.insns + e.exits > END) e.reverseStep(e.insns + e.exits - END);
      expect(e.continue(END).reason).toBe('limit');
    };
    runToEnd();
    const trace = exitTrace(e), state = architecturalFingerprint(e.machine, [e]);
    expect(trace.length).toBeGreaterThan(1000);
    expect(e.snapshotStats().count).toBeGreaterThan(10);
    fc.assert(fc.property(fc.array(move, { minLength: 1, maxLength: 4 }), (ms) => {
      for (const m of ms) apply(e, m, trace.length);
      runToEnd();
      expect(exitTrace(e)).toEqual(trace);
      expect(diffFingerprints(state, architecturalFingerprint(e.machine, [e]))).toEqual([]);
    }), { numRuns: 10 * SCALE, seed: SEED });
  });

  it('vmx-vmfail: back over the failed VMLAUNCH/VMRESUME of its handler and forward again repeats them', () => {
    const e = new BareEngine({ image: guestImage('vmx-vmfail.bin') });
    e.addBreakpoint({ kind: 'entry-failure' });
    const failures = (): string[] => {
      const out: string[] = [];
      for (;;) {
        const s = e.continue(1e7);
        if (s.reason !== 'breakpoint') { expect(s.reason).toBe('ended'); return out; }
        out.push(`${s.instruction?.instruction} ${s.instruction?.error} at ${e.insns}`);
      }
    };
    const first = failures();
    expect(first).toEqual(['VMLAUNCH 4 at 6389', 'VMRESUME null at 7586', 'VMRESUME 5 at 9004']);
    const end = architecturalFingerprint(e.machine, [e]);
    // From the end (after exit #4, the VMCALL) back to exit #2, before its handler ran.
    expect(e.backExit(3).reason).toBe('arrived');
    expect(failures()).toEqual(first.slice(1));
    expect(diffFingerprints(end, architecturalFingerprint(e.machine, [e]))).toEqual([]);
  });
});
