/** The `hvsim` command: main() returns the exit status; output goes through `out` and `err`. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cpu } from '../cpu/cpu.js';
import { GPR_NAMES, VECTOR_NAMES } from '../cpu/regs.js';
import { run } from '../cpu/run.js';
import { ImageError, loadFlat } from '../platform/loaders/index.js';
import { parseArgs, UsageError, USAGE, type RunOptions } from './args.js';

const VERSION = '0.1.0';
/** A bundled guest: guests/NAME in the package, found from this module in src/ or dist/. */
export function bundledGuest(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'guests', name);
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) throw new ImageError(`the bundled guest ${name} is missing from this installation`);
    dir = up;
  }
}

export type Print = (line: string) => void;

/** Exit statuses (documented in --help and the README). */
const EXIT = { halt: 0, usage: 2, budget: 3, exception: 4, shutdown: 5 } as const;

function hex(v: bigint): string { return `0x${v.toString(16)}`; }

function readImage(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ImageError(`cannot read image '${path}': ${code === 'ENOENT' ? 'no such file' : code ?? String(e)}`);
  }
}

function runCommand(o: RunOptions, out: Print): number {
  const path = o.image ?? bundledGuest('sieve.bin');
  const image = readImage(path);
  const cpu = new Cpu({ memorySize: o.memory });
  loadFlat(cpu, image, o.load, o.mode);
  const t0 = performance.now();
  const stop = run(cpu, o.maxInsns);
  const seconds = (performance.now() - t0) / 1000;
  const mips = cpu.insnCount / seconds / 1e6;
  const status = EXIT[stop.kind === 'stop' ? 'halt' : stop.kind];
  const regs = Object.fromEntries(GPR_NAMES.map((n, k) => [n, hex(cpu.reg64(k))]));
  if (o.json) {
    out(JSON.stringify({ image: path, stop, rip: hex(cpu.rip), instructions: cpu.insnCount,
      seconds: Number(seconds.toFixed(3)), mips: Number(mips.toFixed(1)), registers: regs }));
    return status;
  }
  let what: string;
  if (stop.kind === 'halt') what = 'halted';
  else if (stop.kind === 'budget') what = 'stopped: instruction budget exhausted';
  else if (stop.kind === 'exception') {
    what = `stopped: unhandled exception ${VECTOR_NAMES[stop.vector] ?? `vector ${stop.vector}`}` +
      (stop.errorCode !== null ? ` (error code 0x${stop.errorCode.toString(16)})` : '');
  } else if (stop.kind === 'shutdown') what = 'shutdown: triple fault';
  else what = 'stopped';
  out(`hvsim: ${path} on the bare processor (${o.mode}-bit mode, loaded at 0x${o.load.toString(16)})`);
  out(`${what} at rip=${hex(cpu.rip)} after ${cpu.insnCount.toLocaleString('en-US')} instructions`);
  for (let k = 0; k < 16; k += 4) {
    out(GPR_NAMES.slice(k, k + 4).map((n, j) => `${n.padStart(3)}=${hex(cpu.reg64(k + j)).padStart(18)}`).join('  '));
  }
  if (o.stats) out(`${cpu.insnCount} instructions in ${seconds.toFixed(3)} s: ${mips.toFixed(1)} MIPS`);
  return status;
}

export function main(argv: readonly string[], out: Print, err: Print): number {
  try {
    const cmd = parseArgs(argv);
    if (cmd.command === 'help') { out(USAGE); return 0; }
    if (cmd.command === 'version') { out(VERSION); return 0; }
    return runCommand(cmd, out);
  } catch (e) {
    if (e instanceof UsageError || e instanceof ImageError) {
      err(`hvsim: ${e.message}`);
      return EXIT.usage;
    }
    throw e;
  }
}
