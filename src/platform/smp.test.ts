/**
 * More than one processor on the PC: start-up by INIT and SIPI, the wait-for-SIPI
 * state, and decoded code shared across processors (SDM vol. 3A, 9.4 "Multiple-
 * Processor (MP) Initialization"; 11.6.1 "Interrupt Command Register (ICR)").
 */
import { describe, expect, it } from 'vitest';
import { PcMachine } from './machine.js';
import { loadImage } from './loaders/index.js';

const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
/** mov dword [addr], value */
const store32 = (addr: number, value: number): number[] => [0xc7, 0x05, ...le32(addr), ...le32(value)];
/** An IPI to APIC ID `dest` with ICR bits 31:0 = `low`. */
const ipi = (dest: number, low: number): number[] => [...store32(0xfee00310, dest << 24), ...store32(0xfee00300, low)];
/** mov ecx, n; loop $ */
const delay = (n: number): number[] => [0xb9, ...le32(n), 0xe2, 0xfe];
const CLI_HLT = [0xfa, 0xf4];
const INIT = 0x4500, SIPI = 0x4600;

/** Two processors; the BSP runs `bsp` (32-bit flat code at 0x1000), `ap` bytes are placed at their addresses. */
function machine(bsp: number[], ap: Record<number, number[]>, cpus = 2): PcMachine {
  const m = new PcMachine({ memorySize: 4 << 20, cpus });
  loadImage(m.cpu, Uint8Array.from(bsp), { format: 'flat', load: 0x1000, mode: '32' });
  for (const [at, bytes] of Object.entries(ap)) m.cpu.memory.load(Number(at), Uint8Array.from(bytes));
  return m;
}

describe('application processors (SDM vol. 3A, 9.4.2, 9.4.3)', () => {
  it('wait for a SIPI after power-up and run nothing until then', () => {
    const m = machine([...delay(100), ...CLI_HLT], {});
    expect(m.run(10_000)).toEqual({ kind: 'halt' });
    expect(m.cpus[1]!.waitForSipi).toBe(true);
    expect(m.cpus[1]!.insnCount).toBe(0);
  });

  it('a SIPI with vector VV starts one in real mode at 000VV000H: CS = VV00H, IP = 0', () => {
    const m = machine([...ipi(1, SIPI | 0x09), ...CLI_HLT], { 0x9000: CLI_HLT });
    expect(m.run(10_000)).toEqual({ kind: 'halt' });
    const ap = m.cpus[1]!;
    expect(ap.waitForSipi).toBe(false);
    expect(ap.halted).toBe(true);
    expect(ap.cr0 & 1).toBe(0);
    expect(ap.segSel[1]).toBe(0x0900);
    expect(ap.segBase[2]).toBe(0x9000);
    expect(ap.ripLo).toBe(2); // after CLI; HLT
  });

  it('a SIPI to a processor that is running is ignored (11.6.1)', () => {
    const m = machine([...ipi(1, SIPI | 0x09), ...delay(5000), ...ipi(1, SIPI | 0x0a), ...CLI_HLT],
      { 0x9000: [0xeb, 0xfe], 0xa000: CLI_HLT }); // jmp $ at 9000H
    expect(m.run(50_000)).toEqual({ kind: 'budget' });
    expect(m.cpus[1]!.segSel[1]).toBe(0x0900);
    expect(m.cpus[1]!.halted).toBe(false);
  });

  it('INIT puts a running AP back into wait-for-SIPI with its registers reset; the next SIPI restarts it', () => {
    const ap = [0x66, 0xb8, ...le32(0x1234), 0xeb, 0xfe]; // mov eax, 1234H; jmp $
    const bsp = [...ipi(1, SIPI | 0x09), ...delay(5000), ...ipi(1, INIT), ...delay(5000)];
    const m = machine([...bsp, ...CLI_HLT], { 0x9000: ap, 0xa000: CLI_HLT });
    expect(m.run(30_000)).toEqual({ kind: 'halt' });
    expect(m.cpus[1]!.waitForSipi).toBe(true);
    expect(m.cpus[1]!.gpr[0]).toBe(0); // EAX after INIT (table 10-1)

    const again = machine([...bsp, ...ipi(1, SIPI | 0x0a), ...CLI_HLT], { 0x9000: ap, 0xa000: CLI_HLT });
    expect(again.run(50_000)).toEqual({ kind: 'halt' });
    expect(again.cpus[1]!.segSel[1]).toBe(0x0a00);
    expect(again.cpus[1]!.gpr[0]).toBe(0);
  });

  it('INIT and a SIPI broadcast to all excluding self start every AP; CPUID reports each initial APIC ID', () => {
    // mov eax, 1; cpuid; cli; hlt (16-bit code)
    const ap = [0x66, 0xb8, ...le32(1), 0x0f, 0xa2, ...CLI_HLT];
    const m = machine([...store32(0xfee00300, 0xc0000 | INIT), ...delay(100),
      ...store32(0xfee00300, 0xc0000 | SIPI | 0x09), ...CLI_HLT], { 0x9000: ap }, 4);
    expect(m.run(100_000)).toEqual({ kind: 'halt' });
    for (let i = 1; i < 4; i++) {
      const ebx = m.cpus[i]!.gpr[2 * 3]!;
      expect(ebx >>> 24).toBe(i);          // CPUID.01H:EBX[31:24], initial APIC ID
      expect((ebx >>> 16) & 0xff).toBe(4); // addressable IDs in the package
      expect(m.cpus[i]!.gpr[2 * 2]! & (1 << 28)).not.toBe(0); // EDX.HTT
    }
  });
});

describe('code shared by processors (SDM vol. 3A, 9.1.3 "Handling Self- and Cross-Modifying Code")', () => {
  it('a store by the BSP replaces code an AP has decoded and is looping in', () => {
    // AP: inc bx; jmp back (a hot loop, compiled after a few rounds).
    const bsp = [
      0xc6, 0x05, ...le32(0x9800), 0,   // mov byte [9800H], 0: the BSP caches a writable TLB entry for the page
      ...ipi(1, SIPI | 0x09),
      ...delay(20_000),
      0x66, 0xc7, 0x05, ...le32(0x9000), 0xfa, 0xf4, // mov word [9000H], F4FAH: cli; hlt over the loop
      ...CLI_HLT,
    ];
    const m = machine(bsp, { 0x9000: [0x43, 0xeb, 0xfd] });
    expect(m.run(1_000_000)).toEqual({ kind: 'halt' });
    const ap = m.cpus[1]!;
    expect(ap.halted).toBe(true);
    expect(ap.gpr[2 * 3]! & 0xffff).toBeGreaterThan(1000); // the loop ran
  });
});

describe('the processors of a machine', () => {
  it('processor n has APIC ID n and only processor 0 is the BSP (SDM vol. 3A, 9.4.1; 11.4.6); 1 to 255 processors exist', () => {
    const m = new PcMachine({ cpus: 3 });
    expect(m.cpus.map((c) => c.msrs.apicId)).toEqual([0, 1, 2]);
    expect(m.cpus.map((c) => c.bsp)).toEqual([true, false, false]);
    expect(() => new PcMachine({ cpus: 0 })).toThrow(/1 to 255/);
  });
});
