/**
 * Guest speed benchmarks: `npm run bench`. Each workload runs in 64-bit mode on
 * the bare processor model and prints guest MIPS (million guest instructions
 * retired per second of host time), the best of several runs.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Cpu } from '../src/cpu/cpu.js';
import { run } from '../src/cpu/run.js';
import { loadImage } from '../src/platform/loaders/index.js';
import { PcMachine } from '../src/platform/machine.js';
import { attachVmx } from '../src/vmx/vmx.js';

interface Workload {
  name: string;
  /** A flat binary in guests/, loaded at 0x1000 and entered in 64-bit mode; it ends in HLT. */
  image: string;
  /** Run through the loader, under its identity-mapped 4-level page tables (else flat, paging off). */
  paged?: boolean;
}

const workloads: Workload[] = [
  { name: 'alu loop', image: 'bench-alu.bin' },
  { name: 'memory-copy loop', image: 'bench-copy.bin' },
  { name: 'sieve, paged', image: 'sieve.bin', paged: true },
];

const guestDir = fileURLToPath(new URL('../../guests/', import.meta.url));

function measure(w: Workload): { mips: number; insns: number } {
  let best = 0, insns = 0;
  for (let round = 0; round < 3; round++) {
    const cpu = new Cpu({ memorySize: 16 * 1024 * 1024 });
    if (w.paged) {
      loadImage(cpu, readFileSync(guestDir + w.image), { format: 'flat', load: 0x1000, mode: '64' });
    } else {
      cpu.enterFlat64();
      cpu.memory.load(0x1000, readFileSync(guestDir + w.image));
      cpu.ripLo = 0x1000;
    }
    cpu.gpr[8] = 0x80000; // rsp
    const t0 = performance.now();
    const stop = run(cpu, 1e10);
    const ms = performance.now() - t0;
    if (stop.kind !== 'halt') throw new Error(`${w.name}: stopped with ${JSON.stringify(stop)}`);
    insns = cpu.insnCount;
    best = Math.max(best, insns / ms / 1000);
  }
  return { mips: best, insns };
}

/**
 * VM exits per second: guests/bench-vmexit.bin is a hypervisor in root mode on
 * the model whose 64-bit guest runs CPUID 1,000,000 times; each CPUID exits and
 * the guest hypervisor's handler resumes the guest (a full exit + entry round trip).
 */
function measureExits(): { perSecond: number; insns: number } {
  let best = 0, insns = 0;
  const image = readFileSync(guestDir + 'bench-vmexit.bin');
  for (let round = 0; round < 3; round++) {
    const serial: number[] = [];
    const machine = new PcMachine({ attach: (cpu) => { attachVmx(cpu); }, serialOut: (b) => serial.push(b) });
    loadImage(machine.cpu, image, {});
    const t0 = performance.now();
    const stop = machine.run(1e10);
    const ms = performance.now() - t0;
    const out = Buffer.from(serial).toString('latin1');
    if (stop.kind !== 'exit' || stop.status !== 1 || !/1000000|f4240/i.test(out)) {
      throw new Error(`VM-exit benchmark: stopped with ${JSON.stringify(stop)}: ${out}`);
    }
    insns = machine.retired;
    best = Math.max(best, 1e6 / ms * 1000);
  }
  return { perSecond: best, insns };
}

for (const w of workloads) {
  const { mips, insns } = measure(w);
  console.log(`${w.name.padEnd(20)} ${mips.toFixed(1).padStart(7)} MIPS  (${insns.toLocaleString('en-US')} guest instructions)`);
}

const exits = measureExits();
console.log(`${'VM exits (CPUID)'.padEnd(20)} ${(exits.perSecond / 1e6).toFixed(2).padStart(7)} M exits/s  (1,000,000 exit round trips, ${exits.insns.toLocaleString('en-US')} guest instructions)`);
