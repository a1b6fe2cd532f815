/**
 * The bare-metal guests of guests/ run on the PC (PcMachine): each prints its
 * findings on COM1 and stops by writing 0 to the debug-exit port (status
 * (0 << 1) | 1 = 1), except triple.bin, which shuts down. The binaries are the
 * committed ones (guests/build.sh rebuilds them from the .asm sources).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/hvsim.js';
import { loadImage, type LoadOptions } from '../../src/platform/loaders/index.js';
import { PcMachine, type MachineStop } from '../../src/platform/machine.js';

const guestPath = (name: string): string => new URL(`../../guests/${name}`, import.meta.url).pathname;

/** Flat images above the real-mode area: the guests' `org 0x100000`. */
const FLAT64: LoadOptions = { format: 'flat', mode: '64', load: 0x100000 };

function runGuest(name: string, options: LoadOptions, cpus = 1): { stop: MachineStop; lines: string[]; machine: PcMachine } {
  const serial: number[] = [];
  const machine = new PcMachine({ cpus, serialOut: (b) => serial.push(b) });
  loadImage(machine.cpu, readFileSync(guestPath(name)), options);
  const stop = machine.run(2_000_000);
  return { stop, lines: Buffer.from(serial).toString('latin1').split('\n'), machine };
}

const EXIT_OK: MachineStop = { kind: 'exit', status: 1 };

describe('guests/modes.bin: real mode → protected mode → 64-bit → compatibility → 64-bit', () => {
  it('SDM vol. 3A 10.1.1, 10.9.1 "Switching to Protected Mode", 10.8.5 "Initializing IA-32e Mode", 5.2.1 (CS.L selects 64-bit or compatibility mode)', () => {
    const { stop, lines } = runGuest('modes.bin', { format: 'flat', mode: 'real', load: 0x7c00 });
    expect(lines).toEqual([
      'real mode: CR0=00000010',                          // ET only: PE = PG = 0
      'protected mode: CR0=00000011',                     // PE
      '64-bit mode: CR0=80000011 EFER=00000500',          // PG; EFER.LME and LMA
      // Vol. 2, 2.2.1: 40H is INC EAX outside 64-bit mode, a REX prefix in it.
      'compatibility mode: EFER=00000500 probe EAX=00000001',
      '64-bit mode again: probe EAX=00000000',
      '',
    ]);
    expect(stop).toEqual(EXIT_OK);
  });
});

describe('guests/paging.bin: every paging mode, and a stale TLB entry', () => {
  it('SDM vol. 3A 4.3 (32-bit paging, 4 KiB and 4 MiB pages), 4.4 (PAE, 2 MiB pages), 4.5 (4-level), 4.8 (A and D flags), 4.10.4 (INVLPG)', () => {
    const { stop, lines } = runGuest('paging.bin', {});
    expect(lines).toEqual([
      // Flags 063: P, R/W, A, D (the write set both); 0E3 adds PS.
      '32-bit paging, 4 KiB page 00400000 -> page A: read 11111111 flags 00000063',
      '32-bit paging, 4 MiB page 80000000 -> physical 0: read 22222222 flags 000000e3',
      'PAE paging, 2 MiB page 40000000 -> physical 0: read 33333333 flags 000000e3',
      '4-level paging, 4 KiB page ffff800000000000 -> page D: read 44444444 flags 00000063',
      // 4.10.4.4: a changed PTE may go unseen until invalidated; the model keeps
      // the cached translation, INVLPG (4.10.4.1) drops it.
      'PTE -> page E without INVLPG: read 44444444, after INVLPG: read 55555555',
      '',
    ]);
    expect(stop).toEqual(EXIT_OK);
  });
});

describe('guests/exceptions.bin: delivery through 64-bit IDT gates, error codes, fault or trap', () => {
  it('SDM vol. 3A 6.15 (#DE, #BP, #UD, #GP, #PF), 6.13 (error code), 4.7 (page-fault error code), 4.6.1 (CR0.WP)', () => {
    const { stop, lines } = runGuest('exceptions.bin', FLAT64);
    expect(lines).toEqual([
      'exception 0x0 rip +0x0',                           // #DE: fault, no error code
      'exception 0x3 rip +0x1',                           // #BP: trap, RIP after INT3 (6.5)
      'exception 0x6 rip +0x0',                           // #UD
      'exception 0xd error 0x48 rip +0x0',                // #GP(selector 4BH): index beyond the GDT limit, RPL not in the error code
      'exception 0xd error 0x0 rip +0x0',                 // #GP(0): non-canonical address (3.3.7.1)
      'exception 0xe error 0x2 cr2 0x200000 rip +0x0',    // #PF: P = 0, W/R = 1
      'not-present page mapped by the handler, read back 0x1234',
      'CR0.WP=0: supervisor write to a read-only page, read back 0x5678',
      'exception 0xe error 0x3 cr2 0x201000 rip +0x0',    // #PF: P = 1, W/R = 1
      'CR0.WP=1: page made writable by the handler, read back 0x9abc',
      'all exceptions handled',
      '',
    ]);
    expect(stop).toEqual(EXIT_OK);
  });
});

describe('guests/apic-timer.bin: the local APIC timer in xAPIC mode', () => {
  it('SDM vol. 3A 11.4.4 (IA32_APIC_BASE), 11.4.6, 11.4.8 (ID, version), 11.9 (SVR), 11.5.4 (timer), 11.8.4-11.8.5 (ISR, EOI)', () => {
    const { stop, lines } = runGuest('apic-timer.bin', FLAT64);
    expect(lines).toEqual([
      'IA32_APIC_BASE 0xfee00900',                        // base, global enable (11), BSP (8)
      'APIC ID register 0x0',                             // ID 0 in bits 31:24
      'APIC version register 0x60015',                    // max LVT entry 6, version 15H
      'SVR 0x1ff',
      'one-shot timer: interrupts 0x1, ISR[95:64] in the handler 0x1, after EOI 0x0, current count 0x0',
      'periodic timer: interrupts 0x3, LVT timer 0x30040', // periodic (17), masked (16), vector 40H
      '',
    ]);
    expect(stop).toEqual(EXIT_OK);
  });
});

describe('guests/syscall.bin: ring 3, SYSCALL/SYSRET and INT 0x80 through a DPL-3 gate', () => {
  it('SDM vol. 2 SYSCALL, SYSRET, IRET; vol. 3A 5.8.8 (STAR, LSTAR, FMASK), 8.7 (TSS.RSP0), 6.14.4 (stack switch), 5.10.1 (gate DPL)', () => {
    const { stop, lines, machine } = runGuest('syscall.bin', FLAT64);
    expect(lines).toEqual([
      // CS = STAR[63:48] + 16 | 3, SS = STAR[63:48] + 8 | 3 after SYSRETQ (and IRETQ);
      // RFLAGS = R11 & ~FMASK (TF, IF, DF) in the kernel, CS = STAR[47:32], SS = + 8.
      'syscall rax=0x1 from cs=0x2b ss=0x23, r11=0x202, kernel rflags=0x2 cs=0x8 ss=0x10',
      'syscall rax=0x2 from cs=0x2b ss=0x23, r11=0x202, kernel rflags=0x2 cs=0x8 ss=0x10',
      'syscall rax=0x3 from cs=0x2b ss=0x23, r11=0x602, kernel rflags=0x2 cs=0x8 ss=0x10',
      // 5 quadwords (SS, RSP, RFLAGS, CS, RIP) below the 16-aligned RSP0.
      'int 0x80 rax=0x80: frame at TSS.RSP0-0x28, saved cs=0x2b ss=0x23 rflags=0x202',
      'exit from ring 3',
      '',
    ]);
    expect(stop).toEqual(EXIT_OK);
    expect(machine.cpu.cpl).toBe(0);
  });
});

describe('guests/smp.bin: INIT-SIPI-SIPI starts the application processors', () => {
  const MULTIBOOT: LoadOptions = { format: 'multiboot' };
  it('SDM vol. 3A 9.4 (MP initialization), 11.6.1 (ICR: INIT, start-up, fixed IPIs, shorthands), 11.4.6 (APIC ID)', () => {
    const { stop, lines, machine } = runGuest('smp.bin', MULTIBOOT, 4);
    expect(lines).toEqual([
      'smp: processors (fw_cfg) 00000004',
      'smp: application processors up 00000003',
      'cpu up in protected mode, APIC ID 00000001',
      'cpu took the fixed IPI, APIC ID 00000001',
      'cpu up in protected mode, APIC ID 00000002',
      'cpu took the fixed IPI, APIC ID 00000002',
      'cpu up in protected mode, APIC ID 00000003',
      'cpu took the fixed IPI, APIC ID 00000003',
      'smp: done',
      '',
    ]);
    expect(stop).toEqual(EXIT_OK);
    // Each AP ran from its SIPI and now halts in the IPI wait loop with interrupts on.
    for (const cpu of machine.cpus.slice(1)) {
      expect(cpu.insnCount).toBeGreaterThan(10);
      expect(cpu.halted).toBe(true);
    }
  });

  it('on one processor the IPIs reach no one and nothing else changes', () => {
    const { stop, lines } = runGuest('smp.bin', MULTIBOOT, 1);
    expect(lines).toEqual(['smp: processors (fw_cfg) 00000001', 'smp: application processors up 00000000', 'smp: done', '']);
    expect(stop).toEqual(EXIT_OK);
  });

  it('interleaves the processors the same way every run (DESIGN, determinism)', () => {
    const counts = (): number[] => runGuest('smp.bin', MULTIBOOT, 3).machine.cpus.map((c) => c.insnCount);
    const first = counts();
    expect(counts()).toEqual(first);
    expect(first.every((n) => n > 0)).toBe(true);
  });
});

describe('guests/triple.bin: a triple fault shuts the machine down', () => {
  it('SDM vol. 3A 6.10 (IDT limit), 6.15 "Interrupt 8 - Double Fault Exception" (shutdown)', () => {
    const { stop, lines } = runGuest('triple.bin', FLAT64);
    expect(lines).toEqual(['empty IDT loaded, executing UD2', '']);
    expect(stop).toEqual({ kind: 'shutdown' });
  });

  it('through the command line: exit status 10', () => {
    const err: string[] = [], serial: number[] = [];
    const status = main(['run', guestPath('triple.bin'), '--bare', '--format', 'flat', '--mode', '64', '--load', '0x100000'],
      { out: () => {}, err: (l) => err.push(l), serial: (b) => serial.push(b) });
    expect(status).toBe(10);
    expect(err.join('\n')).toContain('shutdown: triple fault');
    expect(Buffer.from(serial).toString('latin1')).toBe('empty IDT loaded, executing UD2\n');
  });
});

describe('guests/vmx-basic.bin through the command line: a failed VM entry names its check', () => {
  it('SDM 27.2.1.1 (pin-based controls reserved bits) and 27.3.1.4 (guest RFLAGS): one stderr line each, the run goes on', () => {
    const err: string[] = [], serial: number[] = [];
    const status = main(['run', guestPath('vmx-basic.bin'), '--bare'], { out: () => {}, err: (l) => err.push(l), serial: (b) => serial.push(b) });
    expect(status).toBe(1);
    expect(err).toEqual([
      'hvsim: VM entry failed with VMfailValid(7): pin-based controls reserved bits (SDM 27.2.1.1): ' +
        'pin-based VM-execution controls = 0x14: bit 1 must be 1: IA32_VMX_TRUE_PINBASED_CTLS allowed-0 = 0x16',
      'hvsim: VM entry failed with exit reason 0x80000021: guest RFLAGS reserved bits (SDM 27.3.1.4): ' +
        'guest RFLAGS = 0x0: bits 63:22, 15, 5, 3 must be 0 and bit 1 must be 1',
    ]);
    expect(Buffer.from(serial).toString('latin1')).toContain('vmx-basic: done\n');
  });
});
