/**
 * Guest speed benchmarks: `npm run bench`. Each workload runs in 64-bit mode on
 * the bare processor model, or as a guest in VMX non-root operation (the page
 * walks, the VM exits), and prints guest MIPS (million guest instructions
 * retired per second of host time) or exits per second, the best of five runs,
 * each measurement in a process of its own.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Cpu } from '../src/cpu/cpu.js';
import { run } from '../src/cpu/run.js';
import { loadImage } from '../src/platform/loaders/index.js';
import { PcMachine } from '../src/platform/machine.js';
import { vmEntry } from '../src/vmx/entry.js';
import { MEMORY_SIZE, prepareGuest } from '../src/vmx/testing.js';
import { attachVmx } from '../src/vmx/vmx.js';
import { EptTables, enableEpt } from '../spec-tests/ept/ept-tables.js';
import { ExitReason } from '../vmcs/exit-reasons.js';
import { Field } from '../vmcs/fields.js';

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
/** Runs of each measurement; the best counts (the first ones also pay for warming up the JIT). */
const ROUNDS = 5;

function measure(w: Workload): { mips: number; insns: number } {
  let best = 0, insns = 0;
  for (let round = 0; round < ROUNDS; round++) {
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
  for (let round = 0; round < ROUNDS; round++) {
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

/** Sweeps over the buffer in the page-walk workload. */
const SWEEPS = 400;

/**
 * The page-walk loop, run by a 64-bit guest at GUEST_CODE: one qword read in
 * each 4-KiB page of the 16 MiB the harness's guest page tables map, SWEEPS
 * times over. 4096 pages are twice the paging TLB's 2048 direct-mapped
 * entries (and four times the MMU's 1024 fast ones): each page evicts the one
 * 8 MiB before it, so every read misses and walks. The buffer holds the code,
 * the page tables and the VMCS too; the loop only reads.
 */
const PAGE_WALK_LOOP = [
  0xb9, SWEEPS & 0xff, SWEEPS >> 8, 0, 0, // mov ecx, SWEEPS
  0x31, 0xff, //                         outer: xor edi, edi          ; rdi = the buffer's start, 0
  0xbe, 0x00, 0x00, 0x00, 0x01, //       mov esi, 1000000H            ; rsi = its end, 16 MiB
  0x48, 0x8b, 0x07, //                   inner: mov rax, [rdi]        ; one qword of the page
  0x48, 0x81, 0xc7, 0x00, 0x10, 0x00, 0x00, // add rdi, 4096          ; the next page
  0x48, 0x39, 0xf7, //                   cmp rdi, rsi
  0x72, 0xf1, //                         jb inner                     ; (-15)
  0xff, 0xc9, //                         dec ecx
  0x75, 0xe6, //                         jnz outer                    ; (-26)
  0x0f, 0x01, 0xc1, //                   vmcall                       ; back to the host
];

/**
 * Guest MIPS on the page-walk loop in VMX non-root operation with VPID 1,
 * without EPT and with an identity EPT (2-MiB pages): under EPT each guest
 * walk translates its four guest-physical entry addresses and the page's
 * through EPT as well (SDM vol. 3C, 29.3.2). EPT's cache of guest-physical
 * mappings (ept.ts) keeps the few pages of guest page tables, so about one EPT
 * walk, the page's, comes with each guest walk.
 */
function measurePageWalks(ept: boolean): { mips: number; insns: number; walks: number; eptWalks: number } {
  let best = 0, insns = 0, walks = 0, eptWalks = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const { cpu, vmx, vmcs } = prepareGuest(PAGE_WALK_LOOP, (v, c) => {
      const sec = Field.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
      v.set(sec, v.lo(sec) | (1 << 5));
      v.set(Field.VIRTUAL_PROCESSOR_IDENTIFIER, 1);
      if (ept) {
        const t = new EptTables(c);
        t.identity(MEMORY_SIZE);
        enableEpt(v, t.eptp());
      }
    });
    vmEntry(vmx, cpu, true);
    const before = cpu.insnCount;
    const t0 = performance.now();
    run(cpu, 1e10);
    const ms = performance.now() - t0;
    if (cpu.nonRoot || vmcs.lo(Field.EXIT_REASON) !== ExitReason.VMCALL) {
      throw new Error(`page-walk benchmark: no VMCALL exit (exit reason ${vmcs.lo(Field.EXIT_REASON)})`);
    }
    insns = cpu.insnCount - before;
    walks = cpu.paging.counters.walks;
    eptWalks = vmx.ept.counters.walks;
    best = Math.max(best, insns / ms / 1000);
  }
  return { mips: best, insns, walks, eptWalks };
}

/** The measurements, by name: each prints its line. */
const measurements = new Map<string, () => string>();
for (const w of workloads) {
  measurements.set(w.name, () => {
    const { mips, insns } = measure(w);
    return `${w.name.padEnd(20)} ${mips.toFixed(1).padStart(7)} MIPS  (${insns.toLocaleString('en-US')} guest instructions)`;
  });
}
for (const ept of [false, true]) {
  const name = `page walks, EPT ${ept ? 'on' : 'off'}`;
  measurements.set(name, () => {
    const r = measurePageWalks(ept);
    const counts = `${r.insns.toLocaleString('en-US')} guest instructions, ${r.walks.toLocaleString('en-US')} page walks` +
      (ept ? `, ${r.eptWalks.toLocaleString('en-US')} EPT walks` : '');
    return `${name.padEnd(20)} ${r.mips.toFixed(1).padStart(7)} MIPS  (${counts})`;
  });
}
measurements.set('VM exits (CPUID)', () => {
  const exits = measureExits();
  return `${'VM exits (CPUID)'.padEnd(20)} ${(exits.perSecond / 1e6).toFixed(2).padStart(7)} M exits/s  (1,000,000 exit round trips, ${exits.insns.toLocaleString('en-US')} guest instructions)`;
});

// Each measurement runs in a process of its own, as `hvsim run` would: the JIT's
// feedback from one workload's code does not weigh on the next one's.
const only = process.argv[2];
if (only !== undefined) {
  const m = measurements.get(only);
  if (m === undefined) {
    console.error(`bench: no measurement named '${only}' (${[...measurements.keys()].join(', ')})`);
    process.exit(2);
  }
  console.log(m());
} else {
  const self = fileURLToPath(import.meta.url);
  for (const name of measurements.keys()) {
    process.stdout.write(execFileSync(process.execPath, [self, name], { encoding: 'utf8' }));
  }
}
