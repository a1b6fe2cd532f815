/**
 * Relative branches in 64-bit mode: a target outside the canonical range is
 * #GP(0) at the branch itself — RIP still the branch's, the stack untouched —
 * not at the fetch of the target (SDM vol. 2, Jcc, JMP and CALL, "64-Bit Mode
 * Exceptions"), interpreted or compiled.
 */
import { describe, expect, it } from 'vitest';
import { Cpu } from '../cpu.js';
import { RCX, RSP, Vector, ZF } from '../regs.js';
import { run } from '../run.js';

/** Linear 7FFF_FFFF_F000H, the last page below the canonical hole, mapped to physical CODE. */
const PAGE_HI = 0x7fff, PAGE_LO = 0xfffff000 | 0, CODE = 0x5000, TABLES = 0x10000, STACK = 0x80000;

/** A 64-bit processor whose last canonical page holds `code` at its end. */
function atCanonicalEdge(code: readonly number[], compileThreshold: number): Cpu {
  const cpu = new Cpu({ memorySize: 1 << 20 });
  cpu.enterFlat64();
  // PML4[255] -> PDPT[511] -> PD[511] -> PT[511] -> CODE; PML4[0] -> PDPT[0] -> PD[0] -> PT[128] -> the stack page.
  const [pml4, pdpt, pd, pt, pdpt0, pd0, pt0] = [0, 1, 2, 3, 4, 5, 6].map((k) => TABLES + 0x1000 * k);
  const link = (table: number, index: number, to: number): void => { cpu.memory.write32(table + 8 * index, to | 3); };
  link(pml4!, 255, pdpt!); link(pdpt!, 511, pd!); link(pd!, 511, pt!); link(pt!, 511, CODE);
  link(pml4!, 0, pdpt0!); link(pdpt0!, 0, pd0!); link(pd0!, 0, pt0!); link(pt0!, (STACK >> 12) - 1, STACK - 0x1000);
  cpu.cr3Lo = pml4!; cpu.paging.identity = false; cpu.mmu.flush();
  const at = 0x1000 - code.length;
  cpu.memory.load(CODE + at, Uint8Array.from(code));
  cpu.ripLo = PAGE_LO + at; cpu.ripHi = PAGE_HI;
  cpu.gpr[2 * RSP] = STACK;
  cpu.compileThreshold = compileThreshold;
  return cpu;
}

describe('SDM vol. 2 Jcc, JMP, CALL, LOOP (64-bit mode exceptions): a non-canonical target is #GP(0) at the branch', () => {
  const cases: [string, number[], (cpu: Cpu) => void][] = [
    ['JMP rel32', [0xe9, 0x00, 0x01, 0x00, 0x00], () => {}],
    ['JZ rel32, taken', [0x0f, 0x84, 0x00, 0x01, 0x00, 0x00], (cpu) => { cpu.rflags = 2 | ZF; }],
    ['CALL rel32', [0xe8, 0x00, 0x01, 0x00, 0x00], () => {}],
    ['LOOP rel8 (RCX 2: taken; the count stays 2)', [0xe2, 0x7f], (cpu) => { cpu.gpr[2 * RCX] = 2; }],
  ];
  for (const [name, branch, setup] of cases) {
    for (const threshold of [Infinity, 1]) {
      it(`${name} ${threshold === 1 ? 'compiled' : 'interpreted'}: RIP at the branch, RSP unchanged`, () => {
        // Two NOPs first, so that the branch is inside its block.
        const cpu = atCanonicalEdge([0x90, 0x90, ...branch], threshold);
        setup(cpu);
        const stop = run(cpu, 10);
        expect(stop).toEqual({ kind: 'exception', vector: Vector.GP, errorCode: 0 });
        expect([cpu.ripHi, cpu.ripLo >>> 0]).toEqual([PAGE_HI, (PAGE_LO >>> 0) + 0x1000 - branch.length]);
        expect(cpu.gpr[2 * RSP]).toBe(STACK);
        expect(cpu.insnCount).toBe(2);
        if (branch[0] === 0xe2) expect(cpu.gpr[2 * RCX]).toBe(2);
      });
    }
  }

  it('JZ not taken goes on to the next instruction', () => {
    const cpu = atCanonicalEdge([0x0f, 0x84, 0x00, 0x01, 0x00, 0x00, 0xf4], 1);
    cpu.rflags = 2;
    // The HLT is the page's last byte; it halts the processor.
    expect(run(cpu, 10).kind).toBe('halt');
  });
});

describe('SDM vol. 2 CALL and RET (near, 64-bit mode): compiled as interpreted', () => {
  it('RET to a non-canonical return address is #GP(0) at the RET, RSP unchanged', () => {
    for (const threshold of [Infinity, 1]) {
      // push a non-canonical address (mov rax, 8000_0000_0000H; push rax); nop; ret
      const cpu = atCanonicalEdge([0x48, 0xb8, 0, 0, 0, 0, 0, 0x80, 0, 0, 0x50, 0x90, 0xc3], threshold);
      const stop = run(cpu, 10);
      expect(stop).toEqual({ kind: 'exception', vector: Vector.GP, errorCode: 0 });
      expect([cpu.ripHi, cpu.ripLo >>> 0]).toEqual([PAGE_HI, (PAGE_LO >>> 0) + 0x1000 - 1]);
      expect(cpu.gpr[2 * RSP]).toBe(STACK - 8);
      expect(cpu.insnCount).toBe(3);
    }
  });

  it('CALL whose push faults (#PF: the stack page is not mapped) leaves RSP and RIP at the CALL', () => {
    for (const threshold of [Infinity, 1]) {
      // nop; call rel32 to the next instruction; the stack below STACK - 0x1000 is not mapped
      const cpu = atCanonicalEdge([0x90, 0xe8, 0, 0, 0, 0, 0xf4], threshold);
      cpu.gpr[2 * RSP] = STACK - 0x1000;
      const stop = run(cpu, 10);
      expect(stop.kind).toBe('exception');
      expect(stop.kind === 'exception' && stop.vector).toBe(Vector.PF);
      expect([cpu.ripHi, cpu.ripLo >>> 0]).toEqual([PAGE_HI, (PAGE_LO >>> 0) + 0x1000 - 6]);
      expect(cpu.gpr[2 * RSP]).toBe(STACK - 0x1000);
    }
  });

  it('CALL then RET return to the instruction after the CALL with RSP restored', () => {
    for (const threshold of [Infinity, 1]) {
      // call +1 (over the hlt); hlt; ret — the RET returns to the HLT
      const cpu = atCanonicalEdge([0xe8, 1, 0, 0, 0, 0xf4, 0xc3], threshold);
      expect(run(cpu, 10).kind).toBe('halt');
      expect([cpu.ripHi, cpu.ripLo >>> 0]).toEqual([PAGE_HI, (PAGE_LO >>> 0) + 0x1000 - 1]);
      expect(cpu.gpr[2 * RSP]).toBe(STACK);
      expect(cpu.memory.read32(STACK - 0x1000 + 0xff8)).toBe((PAGE_LO + 0x1000 - 2) | 0);
    }
  });
});
