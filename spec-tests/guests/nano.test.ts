/**
 * The nanobenchmark guests (guests/nano-*.asm on guests/lib/nano.inc), after
 * Adams and Agesen (ASPLOS 2006): each repeats one operation N = 10000 times
 * between hvsim's phase markers (port 0xE0: 1 before the baseline loop, 2
 * before the measured loop, 3 before the report), prints one line on COM1 that
 * proves the operation happened, and ends through the debug-exit port
 * (status 1). Every guest runs through `hvsim run` twice, bare and under the
 * hypervisor with the default configuration (EPT, VPID, I/O bitmaps trapping
 * every port, MSR bitmaps, exception bitmap 0): same line, same instruction
 * count, and under the hypervisor the exits the operation must cause (IN) or
 * must not cause (all the others). The binaries are the committed ones
 * (guests/build.sh rebuilds them).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bundledGuest, main } from '../../src/cli/hvsim.js';
import { loadImage } from '../../src/platform/loaders/index.js';
import { PcMachine } from '../../src/platform/machine.js';

const N = 10_000;

interface Run { status: number; serial: string; err: string[]; json: { instructions: number; vmExits: Record<string, number> } }

/** `hvsim run` once for the serial output, once more with --json for the counts (the same run: deterministic). */
function hvsim(args: string[]): Run {
  const err: string[] = [], serial: number[] = [];
  const status = main(['run', ...args], { out: () => {}, err: (l) => err.push(l), serial: (b) => serial.push(b) });
  const json: string[] = [];
  main(['run', ...args, '--json'], { out: (l) => json.push(l), err: () => {}, serial: () => {} });
  return { status, serial: Buffer.from(serial).toString('latin1'), err, json: JSON.parse(json[0]!) };
}

interface Nano {
  name: string;
  line: string;
  /** Why the line is what it is, and why the hypervisor exits (or not), with the SDM sections. */
  sdm: string;
  /** Exits the operation causes once per iteration under the hypervisor, or null: it causes none. */
  exitPerIteration: string | null;
  /** An exit the operation would cause under another configuration, absent under the default one. */
  absent: string | null;
  /** Instructions one iteration retires besides the loop's DEC and JNZ (a faulting instruction retires none). */
  retired: number;
}

const GUESTS: Nano[] = [
  { name: 'nano-syscall', line: 'nano-syscall: 10000 iterations, 10000 system calls',
    sdm: 'SDM vol. 3A 5.8.8 (SYSCALL/SYSRET in 64-bit mode, from ring 3); vol. 3C 26.1 (neither instruction exits)',
    exitPerIteration: null, absent: null, retired: 3 },
  { name: 'nano-in', line: 'nano-in: 10000 iterations, read 0x5a',
    sdm: 'SDM vol. 2 IN (port 80H reads back the POST code written); vol. 3C 26.1.3 (the I/O bitmaps make every IN exit)',
    exitPerIteration: 'IO_INSTRUCTION', absent: null, retired: 1 },
  { name: 'nano-cr8wr', line: 'nano-cr8wr: 10000 iterations, CR8 0x0',
    sdm: 'SDM vol. 2 MOV to CR8; vol. 3C 26.1.3 (no exit while "CR8-load exiting" is 0)',
    exitPerIteration: null, absent: 'CONTROL_REGISTER_ACCESS', retired: 1 },
  { name: 'nano-callret', line: 'nano-callret: 10000 iterations',
    sdm: 'SDM vol. 2 CALL, RET (near); vol. 3C 26.1 (neither exits)',
    exitPerIteration: null, absent: null, retired: 2 },
  { name: 'nano-pgfault', line: 'nano-pgfault: 10000 iterations, 10000 page faults, CR2 0x200000',
    sdm: 'SDM vol. 3A 4.7 (#PF on a not-present PTE, CR2), 6.15 interrupt 14 (a fault); vol. 3C 25.6.3 (exception bitmap 0: no exit), 29.3 (EPT)',
    exitPerIteration: null, absent: 'EXCEPTION_OR_NMI', retired: 4 },
  { name: 'nano-divzero', line: 'nano-divzero: 10000 iterations, 10000 divide errors',
    sdm: 'SDM vol. 3A 6.15 interrupt 0 (#DE, a fault); vol. 3C 25.6.3 (exception bitmap 0: no exit)',
    exitPerIteration: null, absent: 'EXCEPTION_OR_NMI', retired: 3 },
  { name: 'nano-ptemod', line: 'nano-ptemod: 10000 iterations, PTE 0x201027',
    sdm: 'SDM vol. 3A 4.5 (a 4 KiB PTE), 4.8 (A and D stay 0 on an unused page), 4.10.4 (an unchanged entry needs no INVLPG); vol. 3C 29.3 (with EPT a store to a guest PTE does not exit)',
    exitPerIteration: null, absent: 'EPT_VIOLATION', retired: 1 },
];

describe('the nanobenchmark guests, bare and under the hypervisor', () => {
  for (const g of GUESTS) {
    it(`guests/${g.name}.bin: ${g.sdm}`, () => {
      const args = [bundledGuest(`${g.name}.bin`), '--max-insns', '1000000'];
      const bare = hvsim([...args, '--bare']), hv = hvsim(args);
      expect(bare.status).toBe(1);
      expect(bare.err).toEqual([]);
      expect(bare.serial).toBe(`${g.line}\n`);
      expect(hv.status).toBe(1);
      expect(hv.err).toEqual([]);
      expect(hv.serial).toBe(bare.serial);
      // Guest time runs alike: the hypervisor's handlers count what they emulate.
      expect(hv.json.instructions).toBe(bare.json.instructions);
      expect(bare.json.vmExits).toEqual({});
      const total = Object.values(hv.json.vmExits).reduce((t, n) => t + n, 0);
      if (g.exitPerIteration !== null) {
        expect(hv.json.vmExits[g.exitPerIteration]).toBeGreaterThanOrEqual(N);
      } else {
        // What remains are the phase markers and the serial port's I/O exits.
        expect(total).toBeLessThan(N / 10);
      }
      if (g.absent !== null) expect(hv.json.vmExits[g.absent]).toBeUndefined();
    });
  }
});

describe('the phases of a nanobenchmark: the baseline loop is the measured loop without the operation', () => {
  for (const g of GUESTS) {
    it(`guests/${g.name}.bin: phase 2 retires ${g.retired} × N instructions more than phase 1 (SDM vol. 3A 6.5: a fault does not retire the faulting instruction)`, () => {
      const serial: number[] = [];
      const machine = new PcMachine({ serialOut: (b) => serial.push(b) });
      loadImage(machine.cpu, readFileSync(bundledGuest(`${g.name}.bin`)), {});
      // A mark is taken at the instruction boundary after its OUT, where the processor's turn ends (as src/cost does).
      const marks: [number, number][] = [];
      let marked: number | null = null;
      machine.ports.phase.onPhase = (next) => { marked = next; machine.cpu.stop({ kind: 'stop' }); };
      const stop = machine.run(1_000_000, () => {
        if (marked !== null) marks.push([marked, machine.retired]);
        marked = null;
      });
      expect(stop).toEqual({ kind: 'exit', status: 1 });
      expect(marks.map(([phase]) => phase)).toEqual([1, 2, 3]);
      const baseline = marks[1]![1] - marks[0]![1], measured = marks[2]![1] - marks[1]![1];
      // Two loop instructions an iteration, plus the few of the marker and the counter's MOV.
      expect(baseline - 2 * N).toBeGreaterThanOrEqual(0);
      expect(baseline - 2 * N).toBeLessThan(10);
      expect(measured - baseline).toBe(g.retired * N);
      expect(Buffer.from(serial).toString('latin1')).toBe(`${g.line}\n`);
    });
  }
});
