import { describe, expect, it } from 'vitest';
import { PcMachine } from './machine.js';
import { loadImage } from './loaders/index.js';
import type { Cpu } from '../cpu/cpu.js';

/** 32-bit code: the master 8259A's ICW1-4 (vectors 20H..), then its mask (OCW1). */
function picInit(mask: number): number[] {
  return [0xb0, 0x11, 0xe6, 0x20, 0xb0, 0x20, 0xe6, 0x21, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x01, 0xe6, 0x21, 0xb0, mask, 0xe6, 0x21];
}

/** An IDT at 2000H with 32-bit interrupt gates (vector, handler below 64 KiB) in the current CS. */
function interruptGates(cpu: Cpu, gates: readonly [number, number][]): void {
  for (const [vector, handler] of gates) {
    cpu.memory.load(0x2000 + vector * 8, Uint8Array.of(handler & 0xff, handler >> 8, cpu.segSel[1]!, 0, 0, 0x8e, 0, 0));
  }
  cpu.idtrLo = 0x2000; cpu.idtrLimit = Math.max(...gates.map(([v]) => v)) * 8 + 7;
}

/**
 * The machine's interrupt path: an interrupt that becomes deliverable through a
 * port write that does not move the 8259A's INTR line (an EOI uncovering a
 * waiting lower-priority request) is still taken (SDM vol. 3A, 6.8.1; 8259A
 * datasheet, priority resolution).
 */
describe('PcMachine interrupt delivery', () => {
  it('IRQ 0 and IRQ 1 both wait; after the EOI of IRQ 0 the handler of IRQ 1 runs', () => {
    const m = new PcMachine({ memorySize: 4 << 20 });
    const cpu = m.cpu;
    // 32-bit flat protected mode; the IDT is built below.
    const code: number[] = [
      ...picInit(0xfc), // IRQ 0 and 1 unmasked
      0xfb,             // sti
      0xf4,             // hlt: IRQ 0's handler, then IRQ 1's, run from here
      0xfa, 0xf4,       // cli; hlt
    ];
    loadImage(cpu, Uint8Array.from(code), { format: 'flat', load: 0x1000, mode: '32' });
    cpu.gpr[2 * 4] = 0x8000;
    // IDT at 0x2000 with 32-bit interrupt gates for vectors 0x20 and 0x21.
    interruptGates(cpu, [[0x20, 0x3000], [0x21, 0x3100]]);
    // Handler 0x20: inc ebx; mov al, 0x20; out 0x20, al (EOI); iret. Handler 0x21: inc esi; EOI; iret.
    cpu.memory.load(0x3000, Uint8Array.of(0x43, 0xb0, 0x20, 0xe6, 0x20, 0xcf));
    cpu.memory.load(0x3100, Uint8Array.of(0x46, 0xb0, 0x20, 0xe6, 0x20, 0xcf));
    // Run to the HLT (ICW1 resets the edge detection, so the lines are raised after it).
    expect(m.run(12)).toEqual({ kind: 'halt' });
    expect(cpu.halted).toBe(true);
    // Both lines rise while the processor halts and stay up (an 8259A request must last
    // until its acknowledge, else it reads as spurious IRQ 7): IRQ 1 waits behind IRQ 0.
    m.ports.pic.setIrq(0, true);
    m.ports.pic.setIrq(1, true);
    const stop = m.run(10_000);
    expect(stop).toEqual({ kind: 'halt' });
    expect(cpu.gpr[2 * 3]).toBe(1); // IRQ 0 once
    expect(cpu.gpr[2 * 6]).toBe(1); // IRQ 1 once, after IRQ 0's EOI
  });
});

describe('CR8 and the local APIC (SDM vol. 3A, 11.8.6)', () => {
  it('MOV CR8 writes TPR[7:4] of the APIC and reads it back', () => {
    const m = new PcMachine({ memorySize: 4 << 20 });
    // mov eax, 9; mov cr8, rax; mov rbx, cr8; hlt
    loadImage(m.cpu, Uint8Array.of(0xb8, 9, 0, 0, 0, 0x44, 0x0f, 0x22, 0xc0, 0x44, 0x0f, 0x20, 0xc3, 0xf4),
      { format: 'flat', load: 0x1000, mode: '64' });
    expect(m.run(100)).toEqual({ kind: 'halt' });
    expect(m.apic.tpr).toBe(0x90);
    expect(m.cpu.gpr[2 * 3]).toBe(9);
  });
});

describe('device deadlines armed by the running guest', () => {
  it('a PIT channel 0 programmed while the guest runs (no HLT) interrupts it on time, not when the budget ends (8254 mode 2; SDM vol. 3A, 6.8.1)', () => {
    const m = new PcMachine({ memorySize: 4 << 20 });
    const cpu = m.cpu;
    const code: number[] = [
      ...picInit(0xfe), // only IRQ 0 unmasked
      // PIT channel 0, mode 2, count 100 (about 84 µs: 84,000 instructions of guest time).
      0xb0, 0x34, 0xe6, 0x43, 0xb0, 100, 0xe6, 0x40, 0xb0, 0, 0xe6, 0x40,
      0xfb,             // sti
      0x41,             // spin: inc ecx
      0x85, 0xdb,       // test ebx, ebx
      0x74, 0xfb,       // jz spin (until the handler has run)
      0xfa, 0xf4,       // cli; hlt
    ];
    loadImage(cpu, Uint8Array.from(code), { format: 'flat', load: 0x1000, mode: '32' });
    cpu.gpr[2 * 4] = 0x8000;
    interruptGates(cpu, [[0x20, 0x3000]]);
    // Handler: inc ebx; EOI; iret.
    cpu.memory.load(0x3000, Uint8Array.of(0x43, 0xb0, 0x20, 0xe6, 0x20, 0xcf));
    expect(m.run(100_000_000)).toEqual({ kind: 'halt' });
    expect(cpu.gpr[2 * 3]).toBe(1);
    // 100 PIT ticks at 1.193182 MHz are 83,810 ns, and the count loads on the next tick (838 ns):
    // the spin loop, 3 instructions a turn, ends within those (before the fix it ran the whole budget).
    const spun = cpu.gpr[2 * 1]!;
    expect(spun * 3).toBeGreaterThan(83_810);
    expect(spun * 3).toBeLessThan(83_810 + 838 + 3);
  });
});
