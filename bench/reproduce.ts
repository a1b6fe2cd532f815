/**
 * `npm run reproduce`: Adams & Agesen's nanobenchmarks (ASPLOS 2006, figure 4
 * and its raw-data table) on the model. Each guests/nano-*.bin runs a baseline
 * loop (phase 1) and the same loop with the operation (phase 2), N times each;
 * the modelled cycles per operation are (phase 2 − phase 1) / N. The guests
 * run on the bare processor (native), under the hypervisor with shadow paging
 * and no VPID priced as Prescott (the paper's hardware VMM on a Pentium 4
 * 672), and with EPT and VPID priced as Nehalem and Skylake.
 *
 * The Prescott profile's handler prices are calibrated on two rows, `pgfault`
 * and `in` (src/cost/profiles.ts); the other rows are predictions, and their
 * error against the paper is printed as it is.
 */
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { parseArgs, type RunOptions } from '../src/cli/args.js';
import { countBare, countHypervisor } from '../src/cli/cost.js';
import type { CostCounts } from '../src/cost/counts.js';
import { price } from '../src/cost/model.js';
import { NEHALEM, PRESCOTT, SKYLAKE, type CostProfile } from '../src/cost/profiles.js';

/** Iterations of each loop (NANO_N in guests/lib/nano.inc). */
const N = 10_000;

/** The rows of A1's table: native and hardware-VMM cycles on the Pentium 4 672. */
const ROWS: readonly { op: string; native: number; vtx: number; calibrated: boolean }[] = [
  { op: 'syscall', native: 242, vtx: 246, calibrated: false },
  { op: 'in', native: 3209, vtx: 15826, calibrated: true },
  { op: 'cr8wr', native: 150, vtx: 177, calibrated: false },
  { op: 'callret', native: 11, vtx: 11, calibrated: false },
  { op: 'pgfault', native: 1093, vtx: 11242, calibrated: true },
  { op: 'divzero', native: 889, vtx: 1014, calibrated: false },
  { op: 'ptemod', native: 1, vtx: 12733, calibrated: false },
];

const guestDir = fileURLToPath(new URL('../../guests/', import.meta.url));

/** Modelled cycles of one operation: the measured loop less the baseline, per iteration. */
function perOperation(counts: CostCounts, profile: CostProfile): number {
  const p = counts.phases;
  if (p === undefined || p[1] === undefined || p[2] === undefined) throw new Error('the guest marked no phases 1 and 2');
  return (price(p[2], profile).total - price(p[1], profile).total) / N;
}

const quiet = { out: (): void => {}, err: (line: string): void => { console.error(line); }, serial: (): void => {} };
const cell = (v: number): string => v.toFixed(v < 100 ? 1 : 0);
const error = (model: number, paper: number): string => `${model >= paper ? '+' : ''}${((model / paper - 1) * 100).toFixed(1)}%`;

const header = ['operation', 'native A&A', 'native model', 'error', 'VT-x A&A', 'Prescott shadow', 'error', 'Nehalem EPT', 'Skylake EPT'];
const lines: string[][] = [header];
for (const row of ROWS) {
  const path = `${guestDir}nano-${row.op}.bin`;
  const o = parseArgs(['cost', path]) as RunOptions;
  const image = readFileSync(path);
  const bare = countBare(o, image, quiet);
  const shadow = countHypervisor(o, image, false, false, quiet);
  const ept = countHypervisor(o, image, true, true, quiet);
  const native = perOperation(bare, PRESCOTT), vtx = perOperation(shadow, PRESCOTT);
  lines.push([
    row.op + (row.calibrated ? ' (calibrated)' : ''), String(row.native), cell(native), error(native, row.native),
    String(row.vtx), cell(vtx), error(vtx, row.vtx), cell(perOperation(ept, NEHALEM)), cell(perOperation(ept, SKYLAKE)),
  ]);
}
const widths = header.map((_, c) => Math.max(...lines.map((l) => l[c]!.length)));
console.log('Cycles per operation: Adams & Agesen (ASPLOS 2006, Pentium 4 672) beside the model');
for (const l of lines) console.log(l.map((v, c) => (c === 0 ? v.padEnd(widths[c]!) : v.padStart(widths[c]!))).join('  '));
