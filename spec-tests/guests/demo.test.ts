/**
 * guests/demo.bin, the default guest of `npm start`: a Multiboot kernel that
 * climbs from protected mode to long mode, prints CPUID facts and MSR values,
 * runs three ring-3 tasks (A: Fibonacci numbers, B: primes, C: CRC-32), each in
 * its own address space, preempted by the PIT's IRQ 0, and halts with
 * interrupts off once every task has ended. The binary is the committed one
 * (guests/build.sh rebuilds it from guests/demo.asm); the order of the tasks'
 * lines follows from where the ticks fall, the same on every run.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { IF } from '../../src/cpu/regs.js';
import { loadImage } from '../../src/platform/loaders/index.js';
import { PcMachine, type MachineStop } from '../../src/platform/machine.js';

const IMAGE = new URL('../../guests/demo.bin', import.meta.url).pathname;

interface Run { stop: MachineStop; lines: string[]; machine: PcMachine }

/** Runs the image as `hvsim run` does (format detected: Multiboot) with room to spare. */
function runDemo(): Run {
  const serial: number[] = [];
  const machine = new PcMachine({ serialOut: (b) => serial.push(b) });
  const loaded = loadImage(machine.cpu, readFileSync(IMAGE), {});
  expect(loaded.format).toBe('multiboot');
  const stop = machine.run(20_000_000);
  return { stop, lines: Buffer.from(serial).toString('latin1').split('\n'), machine };
}

const BOOT = [
  // Multiboot 0.6.96 3.2: the loader's magic 2BADB002H in EAX.
  'hvsim demo: started by a Multiboot loader, in 32-bit protected mode',
  // CR0: PG, ET, PE; CR4: PGE, PAE.
  'hvsim demo: 64-bit mode, 4-level paging: CR0 0x80000011, CR4 0xa0',
];

const CPUID = [
  'cpuid: GenuineIntel, highest basic leaf 0x16, highest extended leaf 0x80000008',
  // Leaf 1 EAX = 000506E3H: DisplayModel = extended model 5 : model EH for family 6.
  'cpuid: family 0x6 model 0x5e stepping 0x3, "hvsim Skylake model"',
  'cpuid: 39 physical and 48 linear address bits',
];

const MSRS = [
  'msr: IA32_PAT 0x7040600070406',                     // WB WT UC- UC, twice
  // STAR[63:48] = 18H (SYSRET), STAR[47:32] = 08H (SYSCALL); LSTAR = syscall_entry; FMASK: TF IF DF.
  'msr: IA32_STAR 0x18000800000000, IA32_LSTAR 0x10066f, IA32_FMASK 0x700',
  'msr: IA32_EFER 0xd01',                              // SCE, LME, LMA, NXE
];

const TASKS = [
  // One PML4 per task; the same linear page backed by a different physical page in each.
  'kernel: task A: PML4 at 0x107000, its page 0x400000 is at physical 0x10b000',
  'kernel: task B: PML4 at 0x10d000, its page 0x400000 is at physical 0x111000',
  'kernel: task C: PML4 at 0x113000, its page 0x400000 is at physical 0x117000',
  // A's first slice starts on a tick; then round robin A, B, C on every IRQ 0.
  'A: fib(16) = 987',
  'A: fib(18) = 2584',
  'C: crc32("123456789") = cbf43926',                  // the CRC-32 check value
  'A: fib(20) = 6765',
  'B: prime number 400 is 2741',
  'C: crc32 of the first 8192 bytes of 00 01 .. ff 00 01 .. = b6675307',
  'A: fib(22) = 17711',
  'B: prime number 800 is 6133',
  'C: crc32 of the first 16384 bytes of 00 01 .. ff 00 01 .. = e81722f0',
  'C: crc32 of the first 24576 bytes of 00 01 .. ff 00 01 .. = 900fceee',
  'B: prime number 1200 is 9733',
  'C: crc32 of the first 32768 bytes of 00 01 .. ff 00 01 .. = 217726b2',
  'C: crc32 of the first 40960 bytes of 00 01 .. ff 00 01 .. = c2f6910f',
  'B: prime number 1600 is 13499',
  'C: crc32 of the first 49152 bytes of 00 01 .. ff 00 01 .. = 779385c3',
  'C: now reading the kernel at 0x100000',
  // A user read of a present supervisor-only page: #PF, error code P | U/S, CR2 = the address.
  'kernel: task C: #PF at 0x100000, error code 0x5 (protection, read, user mode): killed, ran 9 ticks, wrote 8 lines',
  'A: fib(24) = 46368',
  'B: prime number 2000 is 17389',
  'B: prime number 2400 is 21383',
  'kernel: task B exited with status 0, ran 18 ticks, wrote 6 lines',
  'A: fib(26) = 121393',
  'kernel: task A exited with status 0, ran 27 ticks, wrote 6 lines',
  // 55 ticks: the one that ends the kernel's HLT and 9 + 18 + 27 in the tasks.
  'kernel: all tasks done: 55 timer ticks, 49 task switches (MOV to CR3), 20 lines written',
];

describe('guests/demo.bin: the default guest, a preemptive multitasking kernel', () => {
  let run: Run;
  beforeAll(() => { run = runDemo(); });

  it('Multiboot 3.2 entry in protected mode, then long mode: SDM vol. 3A 10.8.5 (initializing IA-32e mode), 4.5 (4-level paging), 4.10.2.4 (CR4.PGE)', () => {
    expect(run.lines.slice(0, 2)).toEqual(BOOT);
  });

  it('CPUID leaves 0, 1, 80000000H, 80000002H-80000004H and 80000008H (SDM vol. 2A, CPUID: DisplayFamily and DisplayModel)', () => {
    expect(run.lines.slice(2, 5)).toEqual(CPUID);
  });

  it('RDMSR and WRMSR: IA32_PAT at power-up (SDM vol. 3A 13.12.4), STAR, LSTAR and FMASK (5.8.8), IA32_EFER (2.2.1)', () => {
    expect(run.lines.slice(5, 8)).toEqual(MSRS);
  });

  it('the complete transcript: ring-3 tasks in their own address spaces, SYSCALL/SYSRET (5.8.8), IRQ 0 through a 64-bit interrupt gate onto TSS.RSP0 (6.14.1, 6.14.4, 8.7), U/S and #PF (4.6, 4.7)', () => {
    expect(run.lines).toEqual([...BOOT, ...CPUID, ...MSRS, ...TASKS, '']);
  });

  it('ends with HLT with interrupts off in ring 0: the machine halts for good (SDM vol. 2 HLT; vol. 3A 6.8.1)', () => {
    expect(run.stop).toEqual({ kind: 'halt' });
    const cpu = run.machine.cpu;
    expect(cpu.halted).toBe(true);
    expect(cpu.cpl).toBe(0);
    expect(cpu.rflags & IF).toBe(0);
  });

  it('every task switch is a MOV to CR3 (SDM vol. 3A 4.10.4.1): the 49 the guest counts and the one that enabled paging', () => {
    expect(run.machine.cpu.paging.counters.flushes.cr3).toBe(49 + 1);
  });

  it('runs the same way every time, in 2 to 20 million instructions (DESIGN, determinism)', () => {
    const again = runDemo();
    expect(again.lines).toEqual(run.lines);
    expect(again.machine.retired).toBe(run.machine.retired);
    expect(run.machine.retired).toBeGreaterThan(2_000_000);
    expect(run.machine.retired).toBeLessThan(20_000_000);
  });
});
