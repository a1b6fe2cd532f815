/**
 * The cost model's counts and `hvsim cost`: exact counts on guests with a
 * known number of events (the nanobenchmarks of guests/: a measured loop of
 * N = 10000 operations after a baseline loop), the same instructions by class
 * on the bare processor, under EPT and under shadow paging, and the command's
 * outputs.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseArgs, type RunOptions } from './args.js';
import { countBare, countHypervisor } from './cost.js';
import { bundledGuest, main } from './hvsim.js';

const N = 10_000;
const quiet = { out: (): void => {}, err: (): void => {}, serial: (): void => {} };

function counts(name: string): { bare: ReturnType<typeof countBare>; ept: ReturnType<typeof countBare>; shadow: ReturnType<typeof countBare> } {
  const path = bundledGuest(name), o = parseArgs(['cost', path]) as RunOptions, image = readFileSync(path);
  return { bare: countBare(o, image, quiet), ept: countHypervisor(o, image, true, true, quiet), shadow: countHypervisor(o, image, false, false, quiet) };
}

function cli(args: string[]): { status: number; out: string[]; err: string[] } {
  const out: string[] = [], err: string[] = [];
  const status = main(args, { out: (l) => out.push(l), err: (l) => err.push(l), serial: () => {} });
  return { status, out, err };
}

describe('counts for the cost model', () => {
  it('nano-in: exactly N IN exits in the measured phase, beside the one OUT that marks the next phase (SDM vol. 3C 26.1.3)', () => {
    const c = counts('nano-in.bin');
    expect(c.ept.phases![2]!.exits).toEqual({ IO_INSTRUCTION: N + 1 });
    expect(c.ept.phases![1]!.exits).toEqual({ IO_INSTRUCTION: 1 });
    expect(c.ept.phases![2]!.instructions.io - c.ept.phases![1]!.instructions.io).toBe(N);
    expect(c.bare.exits).toEqual({});
    // Every exit was followed by an entry; the handler emulated one port access per IN and OUT.
    expect(c.ept.entries).toBe(Object.values(c.ept.exits).reduce((a, b) => a + b, 0));
    expect(c.ept.phases![2]!.deviceOps).toBe(N + 1);
  });

  it('nano-pgfault: N page walks of depth 4 in the measured phase (SDM vol. 3A 4.5: a not-present PTE ends a 4-level walk after 4 entries)', () => {
    const { bare } = counts('nano-pgfault.bin');
    const measured = bare.phases![2]!, baseline = bare.phases![1]!;
    expect(measured.walks - baseline.walks).toBeGreaterThanOrEqual(N);
    expect(measured.walks - baseline.walks).toBeLessThanOrEqual(N + 1);
    expect(measured.walkReferences - 4 * measured.walks).toBeLessThanOrEqual(0);
    expect(measured.walkReferences).toBeGreaterThanOrEqual(4 * N);
  });

  it('the same instructions by class bare, under EPT and under shadow paging (handlers count what they emulate by its class)', () => {
    for (const name of ['demo.bin', 'nano-syscall.bin', 'nano-cr8wr.bin', 'nano-ptemod.bin']) {
      const c = counts(name);
      expect(c.ept.instructions, name).toEqual(c.bare.instructions);
      expect(c.shadow.instructions, name).toEqual(c.bare.instructions);
      const total = Object.values(c.bare.instructions).reduce((a, b) => a + b, 0);
      expect(total, name).toBeGreaterThan(0);
    }
  });

  it('shadow paging without VPID: flushes at every transition, shadow events counted; EPT with VPID: none', () => {
    const c = counts('demo.bin');
    const exits = Object.values(c.shadow.exits).reduce((a, b) => a + b, 0);
    expect(c.shadow.tlbFlushes.vmTransition).toBe(c.shadow.entries + exits);
    expect(c.shadow.shadow.entriesBuilt).toBeGreaterThan(0);
    expect(c.shadow.eptWalks).toBe(0);
    expect(c.ept.tlbFlushes.vmTransition).toBeUndefined();
    expect(c.ept.shadow).toEqual({ hiddenFaults: 0, pteWrites: 0, cr3Switches: 0, entriesBuilt: 0 });
  });
});

describe('hvsim cost', () => {
  it('--json: per profile its name and total cycles, the overhead against the bare run, and the phases', () => {
    const r = cli(['cost', bundledGuest('nano-in.bin'), '--profile', 'prescott,skylake', '--json']);
    expect(r.status).toBe(0);
    const results = JSON.parse(r.out.join('\n')) as { profile: string; totalCycles: number; overhead: { ratio: number }; phases: unknown[] }[];
    expect(results.map((x) => x.profile)).toEqual(['prescott', 'skylake']);
    for (const x of results) {
      expect(x.totalCycles).toBeGreaterThan(0);
      expect(x.overhead.ratio).toBeGreaterThan(1);
      expect(x.phases.length).toBe(4);
    }
    // Prescott's round trip is five times Skylake's: the same exits cost more.
    expect(results[0]!.totalCycles).toBeGreaterThan(results[1]!.totalCycles);
  });

  it('a table per profile on stdout, and --plot FILE.svg draws it', () => {
    const svg = join(mkdtempSync(join(tmpdir(), 'hvsim-cost-')), 'cost.svg');
    const r = cli(['cost', bundledGuest('nano-cr8wr.bin'), '--profile', 'nehalem', '--plot', svg]);
    expect(r.status).toBe(0);
    expect(r.out.join('\n')).toContain('nehalem (EPT)');
    const text = readFileSync(svg, 'utf8');
    expect(text.startsWith('<?xml')).toBe(true);
    expect(text).toContain('nehalem');
  });

  it('run --cost NAME prices the run it made; --json carries the priced result', () => {
    const r = cli(['run', bundledGuest('nano-callret.bin'), '--cost', 'sandybridge', '--json']);
    expect(r.status).toBe(1);
    const json = JSON.parse(r.out[0]!) as { cost: { profile: string; totalCycles: number }[] };
    expect(json.cost[0]!.profile).toBe('sandybridge');
    expect(json.cost[0]!.totalCycles).toBeGreaterThan(0);
  });

  it('an unknown profile: one line naming the known ones, status 2', () => {
    const r = cli(['cost', bundledGuest('nano-in.bin'), '--profile', 'pentium']);
    expect(r.status).toBe(2);
    expect(r.err).toEqual([expect.stringMatching(/^hvsim: unknown cost profile 'pentium' \(known: prescott, .*skylake\)$/)]);
  });
});
