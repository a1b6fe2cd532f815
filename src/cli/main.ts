#!/usr/bin/env node
/** The `hvsim` command. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Cpu } from '../cpu/cpu.js';
import { GPR_NAMES, VECTOR_NAMES } from '../cpu/regs.js';
import { run } from '../cpu/run.js';
import { ImageError, loadFlat } from '../platform/flat.js';
import { parseArgs, UsageError, USAGE, type RunOptions } from './args.js';

const VERSION = '0.1.0';
const DEFAULT_GUEST = fileURLToPath(new URL('../../guests/sieve.bin', import.meta.url));

/** Exit statuses (documented in --help and the README). */
const EXIT = { halt: 0, usage: 2, budget: 3, exception: 4 } as const;

function hex(v: bigint): string { return `0x${v.toString(16)}`; }

function readImage(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ImageError(`cannot read image '${path}': ${code === 'ENOENT' ? 'no such file' : code ?? String(e)}`);
  }
}

function runCommand(o: RunOptions): number {
  const path = o.image ?? DEFAULT_GUEST;
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
    console.log(JSON.stringify({ image: path, stop, rip: hex(cpu.rip), instructions: cpu.insnCount,
      seconds: Number(seconds.toFixed(3)), mips: Number(mips.toFixed(1)), registers: regs }));
    return status;
  }
  let what: string;
  if (stop.kind === 'halt') what = 'halted';
  else if (stop.kind === 'budget') what = 'stopped: instruction budget exhausted';
  else if (stop.kind === 'exception') {
    what = `stopped: unhandled exception ${VECTOR_NAMES[stop.vector] ?? `vector ${stop.vector}`}` +
      (stop.errorCode !== null ? ` (error code 0x${stop.errorCode.toString(16)})` : '');
  } else what = 'stopped';
  console.log(`hvsim: ${path} on the bare processor (${o.mode}-bit mode, loaded at 0x${o.load.toString(16)})`);
  console.log(`${what} at rip=${hex(cpu.rip)} after ${cpu.insnCount.toLocaleString('en-US')} instructions`);
  for (let k = 0; k < 16; k += 4) {
    console.log(GPR_NAMES.slice(k, k + 4).map((n, j) => `${n.padStart(3)}=${hex(cpu.reg64(k + j)).padStart(18)}`).join('  '));
  }
  if (o.stats) console.log(`${cpu.insnCount} instructions in ${seconds.toFixed(3)} s: ${mips.toFixed(1)} MIPS`);
  return status;
}

function main(argv: readonly string[]): number {
  try {
    const cmd = parseArgs(argv);
    if (cmd.command === 'help') { console.log(USAGE); return 0; }
    if (cmd.command === 'version') { console.log(VERSION); return 0; }
    return runCommand(cmd);
  } catch (e) {
    if (e instanceof UsageError || e instanceof ImageError) {
      console.error(`hvsim: ${e.message}`);
      return EXIT.usage;
    }
    throw e;
  }
}

process.exitCode = main(process.argv.slice(2));
