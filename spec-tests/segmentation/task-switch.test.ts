/**
 * Hardware task switching: SDM vol. 3A 8.3 "Task Switching" (steps 1-14, table
 * 8-1 "Exception Conditions Checked During a Task Switch"), 8.4 "Task Linking"
 * (table 8-2 "Effect of a Task Switch on Busy Flag, NT Flag, Previous Task Link
 * Field, and TS Flag"), 8.6 "16-Bit Task-State Segment (TSS)", 8.7 "Task
 * Management in 64-bit Mode", 6.12.2 "Interrupt Tasks"; vol. 2 JMP, CALL, IRET
 * and INT n "Operation"; vol. 3B 18.3.1.5 "Task-Switch Exception Condition".
 */
import { describe, expect, it } from 'vitest';
import { Cpu, SegAttr } from '../../src/cpu/cpu.js';
import { run } from '../../src/cpu/run.js';
import { CS, DS, ES, FS, GS, LDTR, NT, RAX, RBX, RSP, SS, TR } from '../../src/cpu/regs.js';
import {
  CODE, DATA32_ATTR, enterRing, GDT, IDT, gate64, load, longModeMachine, read64, SEL, segmentDescriptor,
  STACK, write32, writeGdt,
} from '../machine.js';

const HLT = 0xf4, IRET = 0xcf;
/** The new task's code and stack; the TSSs of the tasks; an LDT. */
const B_CODE = 0x3000, KSTACK = 0x8000, HANDLER = 0x3800;
const TSS_A = 0x7000, TSS_B = 0x7100, TSS_C = 0x7200, TSS_X = 0x7400, LDT = 0x7800, LDT_DATA = 0x100000;

/** Selectors of the GDT taskMachine() lays out. */
const S = {
  CODE0: 0x08, DATA0: 0x10, CODE3: 0x1b, DATA3: 0x23,
  TSS_A: 0x28, TSS_B: 0x30, GATE_B: 0x38, TSS_C: 0x40, LDT: 0x48, TSS_SMALL: 0x50, TSS_NP: 0x58,
  GATE_A: 0x60, GATE_B_DPL0: 0x68, CODE0_SMALL: 0x70, LDT_DATA: 0x04,
} as const;

/** A task gate (SDM vol. 3A, 8.2.5, figure 8-5): TSS selector in bits 31:16, type 5. */
function taskGate(tss: number, dpl: number, present = true): [number, number] {
  return [(tss << 16) | 0, ((present ? 1 : 0) << 15) | (dpl << 13) | (5 << 8)];
}


const read32 = (cpu: Cpu, pa: number): number => Number(read64(cpu, pa) & 0xffffffffn);
const read16 = (cpu: Cpu, pa: number): number => Number(read64(cpu, pa) & 0xffffn);
const write16 = (cpu: Cpu, pa: number, v: number): void => {
  cpu.memory.write8(pa, v & 0xff); cpu.memory.write8(pa + 1, (v >> 8) & 0xff);
};
/** The type field of the GDT descriptor `sel` (bits 11:8 of its high dword). */
const gdtType = (cpu: Cpu, sel: number): number => (read32(cpu, GDT + (sel & 0xfff8) + 4) >> 8) & 0xf;
const esp = (cpu: Cpu): number => cpu.gpr[2 * RSP]! >>> 0;
const reg32 = (cpu: Cpu, n: number): number => cpu.gpr[2 * n]! >>> 0;
/** JMP ptr16:32 (EA) and CALL ptr16:32 (9A); the offset is ignored for a TSS or task gate. */
const jmpFar = (sel: number): number[] => [0xea, 0, 0, 0, 0, sel & 0xff, sel >> 8];
const callFar = (sel: number): number[] => [0x9a, 0, 0, 0, 0, sel & 0xff, sel >> 8];

interface Tss32 {
  eip?: number; eflags?: number; gpr?: number[]; cs?: number; ss?: number; data?: number;
  ldt?: number; cr3?: number; trap?: boolean; link?: number;
}

/** Writes a 32-bit TSS (SDM vol. 3A, 8.2.1, figure 8-2). gpr: EAX..EDI; data: ES, DS, FS, GS. */
function writeTss32(cpu: Cpu, base: number, t: Tss32 = {}): void {
  for (let k = 0; k < 0x68; k += 4) write32(cpu, base + k, 0);
  write32(cpu, base, t.link ?? 0);
  write32(cpu, base + 0x1c, t.cr3 ?? 0);
  write32(cpu, base + 0x20, t.eip ?? B_CODE);
  write32(cpu, base + 0x24, t.eflags ?? 0x2);
  const gpr = t.gpr ?? [0xa0, 0xc0, 0xd0, 0xb0, KSTACK, 0xbb, 0x51, 0xd1];
  gpr.forEach((v, n) => write32(cpu, base + 0x28 + 4 * n, v));
  const data = t.data ?? S.DATA0;
  [data, t.cs ?? S.CODE0, t.ss ?? S.DATA0, data, data, data].forEach((v, s) => write32(cpu, base + 0x48 + 4 * s, v));
  write32(cpu, base + 0x60, t.ldt ?? 0);
  write32(cpu, base + 0x64, t.trap ? 1 : 0);
}

/**
 * 32-bit protected mode without paging, running task A (TR = TSS_A, busy) at
 * CPL `cpl` with EAX..EDI = 1..8 (ESP = STACK); TSS B is available and starts at
 * B_CODE at CPL 0 with ESP = KSTACK. Exceptions stop the run unless a test turns
 * delivery on.
 */
function taskMachine(cpl = 0): Cpu {
  const cpu = new Cpu({ memorySize: 8 << 20 });
  cpu.enterFlat32();
  cpu.deliverExceptions = false;
  const entries: [number, number][] = [
    [0, 0],
    segmentDescriptor(0, 0xfffff, 0x9a, 0xc),          // 0x08 ring-0 code
    segmentDescriptor(0, 0xfffff, 0x92, 0xc),          // 0x10 ring-0 data
    segmentDescriptor(0, 0xfffff, 0xfa, 0xc),          // 0x18 ring-3 code
    segmentDescriptor(0, 0xfffff, 0xf2, 0xc),          // 0x20 ring-3 data
    segmentDescriptor(TSS_A, 0x67, 0x8b, 0),           // 0x28 32-bit TSS, busy (the current task)
    segmentDescriptor(TSS_B, 0x67, 0x89, 0),           // 0x30 32-bit TSS, available, DPL 0
    taskGate(S.TSS_B, 3),                              // 0x38 task gate to B, DPL 3
    segmentDescriptor(TSS_C, 0x2b, 0x81, 0),           // 0x40 16-bit TSS, available
    segmentDescriptor(LDT, 0xf, 0x82, 0),              // 0x48 LDT
    segmentDescriptor(TSS_X, 0x60, 0x89, 0),           // 0x50 32-bit TSS with a limit below 67H
    segmentDescriptor(TSS_X, 0x67, 0x09, 0),           // 0x58 32-bit TSS, not present
    taskGate(S.TSS_A, 3),                              // 0x60 task gate to A (busy)
    taskGate(S.TSS_B, 0),                              // 0x68 task gate to B, DPL 0
    segmentDescriptor(0, 0xfff, 0x9a, 0x4),            // 0x70 ring-0 code, limit FFFH
  ];
  writeGdt(cpu, entries);
  const [ldtLo, ldtHi] = segmentDescriptor(LDT_DATA, 0xfff, 0x92, 0x4);
  write32(cpu, LDT, ldtLo); write32(cpu, LDT + 4, ldtHi);
  cpu.idtrLo = IDT; cpu.idtrLimit = 256 * 8 - 1;
  writeTss32(cpu, TSS_A, { eip: 0, gpr: [0, 0, 0, 0, 0, 0, 0, 0], cs: 0, ss: 0, data: 0 });
  writeTss32(cpu, TSS_B);
  cpu.setSegment(TR, S.TSS_A, TSS_A, 0, 0x67, 0x8b);
  enterRing(cpu, cpl);
  for (let n = 0; n < 8; n++) cpu.gpr[2 * n] = n + 1;
  cpu.gpr[2 * RSP] = STACK;
  cpu.ripLo = CODE;
  return cpu;
}

/** Writes an 8-byte IDT entry (SDM vol. 3A, 6.11, figure 6-2). */
function idtEntry(cpu: Cpu, vector: number, [lo, hi]: [number, number]): void {
  write32(cpu, IDT + 8 * vector, lo);
  write32(cpu, IDT + 8 * vector + 4, hi);
}

/** The task-A state that a switch refused before its commit point must leave as it was. */
function expectNoSwitch(cpu: Cpu): void {
  expect(cpu.segSel[TR]).toBe(S.TSS_A);
  expect(gdtType(cpu, S.TSS_A)).toBe(0xb);
  expect(gdtType(cpu, S.TSS_B)).toBe(0x9);
  expect(read32(cpu, TSS_A + 0x20)).toBe(0);         // nothing saved
  expect(read32(cpu, TSS_B)).toBe(0);                // no link written
  expect(cpu.cr0 & 8).toBe(0);                       // CR0.TS untouched
  expect(cpu.ripLo).toBe(CODE);
  expect(reg32(cpu, RAX)).toBe(1);
}

describe('SDM 8.3 and table 8-2: JMP to an available 32-bit TSS', () => {
  it('saves task A, frees it, loads task B busy with its registers, sets CR0.TS, leaves NT and the link as they were', () => {
    const cpu = taskMachine(0);
    cpu.rflags = 0x2 | NT | 1;                         // NT and CF in the old task
    write32(cpu, TSS_B, 0x1234);                       // link field: JMP leaves it alone
    load(cpu, CODE, jmpFar(S.TSS_B));
    expect(run(cpu, 1)).toEqual({ kind: 'budget' });
    // The new task: TR, busy bits (steps 6, 10, 11), TS (table 8-2).
    expect(cpu.segSel[TR]).toBe(S.TSS_B);
    expect(cpu.segBase[2 * TR]).toBe(TSS_B);
    expect(cpu.segAttr[TR]! & 0xf).toBe(0xb);
    expect(gdtType(cpu, S.TSS_A)).toBe(0x9);
    expect(gdtType(cpu, S.TSS_B)).toBe(0xb);
    expect(cpu.cr0 & 8).toBe(8);
    expect(read32(cpu, TSS_B)).toBe(0x1234);
    // Step 12: EFLAGS (NT from the TSS: 0), EIP, general registers, segments.
    expect(cpu.rflags).toBe(0x2);
    expect(cpu.ripLo).toBe(B_CODE);
    expect([0, 1, 2, 3, 5, 6, 7].map((n) => reg32(cpu, n))).toEqual([0xa0, 0xc0, 0xd0, 0xb0, 0xbb, 0x51, 0xd1]);
    expect(esp(cpu)).toBe(KSTACK);
    expect(cpu.segSel[CS]).toBe(S.CODE0);
    expect([SS, DS, ES, FS, GS].map((s) => cpu.segSel[s])).toEqual([S.DATA0, S.DATA0, S.DATA0, S.DATA0, S.DATA0]);
    expect(cpu.segAttr[SS]).toBe(DATA32_ATTR | 1);      // loaded from the descriptor, accessed
    expect(cpu.cpl).toBe(0);
    // Step 8: task A's dynamic fields; the saved EFLAGS keeps NT for a JMP (table 8-2, "NT flag of old task").
    expect(read32(cpu, TSS_A + 0x20)).toBe(CODE + 7);
    expect(read32(cpu, TSS_A + 0x24)).toBe(0x2 | NT | 1);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((n) => read32(cpu, TSS_A + 0x28 + 4 * n))).toEqual([1, 2, 3, 4, STACK, 6, 7, 8]);
    expect([0, 1, 2, 3, 4, 5].map((s) => read16(cpu, TSS_A + 0x48 + 4 * s)))
      .toEqual([S.DATA0, S.CODE0, S.DATA0, S.DATA0, S.DATA0, S.DATA0]);
  });

  it('the new task runs: its first instruction executes at CPL 3 when its CS has RPL 3 (8.3: CPL from the TSS)', () => {
    const cpu = taskMachine(0);
    writeTss32(cpu, TSS_B, { cs: S.CODE3, ss: S.DATA3, data: S.DATA3 });
    load(cpu, CODE, jmpFar(S.TSS_B));
    load(cpu, B_CODE, [0x40, 0x90]);                    // inc eax; nop
    expect(run(cpu, 3)).toEqual({ kind: 'budget' });
    expect(cpu.cpl).toBe(3);
    expect(cpu.segSel[CS]).toBe(S.CODE3);
    expect(cpu.segSel[SS]).toBe(S.DATA3);
    expect(reg32(cpu, RAX)).toBe(0xa1);
    expect(cpu.ripLo).toBe(B_CODE + 2);
  });
});

describe('SDM 8.4 and table 8-2: CALL through a task gate, then IRET with NT = 1', () => {
  it('CALL from CPL 3 nests task B (link, NT, both busy); IRET returns to A after the CALL with its registers', () => {
    const cpu = taskMachine(3);
    load(cpu, CODE, callFar(S.GATE_B | 3));
    load(cpu, B_CODE, [0xb8, 0x55, 0x55, 0x55, 0x55, IRET]); // mov eax, 55555555h; iret
    expect(run(cpu, 1)).toEqual({ kind: 'budget' });
    expect(cpu.segSel[TR]).toBe(S.TSS_B);
    expect(read16(cpu, TSS_B)).toBe(S.TSS_A);           // previous-task link
    expect(cpu.rflags & NT).toBe(NT);
    expect(gdtType(cpu, S.TSS_A)).toBe(0xb);             // CALL: the old task stays busy
    expect(gdtType(cpu, S.TSS_B)).toBe(0xb);
    expect(cpu.cpl).toBe(0);
    expect(cpu.ripLo).toBe(B_CODE);
    expect(esp(cpu)).toBe(KSTACK);                       // nothing pushed: a task CALL uses no stack
    expect(run(cpu, 2)).toEqual({ kind: 'budget' });
    // IRET (vol. 2, TASK-RETURN): back to A, B freed, A still busy.
    expect(cpu.segSel[TR]).toBe(S.TSS_A);
    expect(gdtType(cpu, S.TSS_A)).toBe(0xb);
    expect(gdtType(cpu, S.TSS_B)).toBe(0x9);
    expect(cpu.cpl).toBe(3);
    expect(cpu.segSel[CS]).toBe(S.CODE3);
    expect(cpu.segSel[SS]).toBe(S.DATA3);
    expect(cpu.ripLo).toBe(CODE + 7);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((n) => reg32(cpu, n))).toEqual([1, 2, 3, 4, STACK, 6, 7, 8]);
    expect(cpu.rflags & NT).toBe(0);
    // Step 7: B's saved EFLAGS has NT cleared by the IRET; its EIP is past the IRET.
    expect(read32(cpu, TSS_B + 0x24) & NT).toBe(0);
    expect(read32(cpu, TSS_B + 0x20)).toBe(B_CODE + 6);
    expect(read32(cpu, TSS_B + 0x28)).toBe(0x55555555);
    expect(cpu.cr0 & 8).toBe(8);
  });

  it('IRET with NT = 1 whose link names an available (not busy) TSS raises #TS(link) and changes nothing (table 8-1)', () => {
    const cpu = taskMachine(0);
    write32(cpu, TSS_A, S.TSS_B);
    cpu.rflags = 0x2 | NT;
    load(cpu, CODE, [IRET]);
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 10, errorCode: S.TSS_B });
    expect(cpu.segSel[TR]).toBe(S.TSS_A);
    expect(gdtType(cpu, S.TSS_A)).toBe(0xb);
    expect(cpu.rflags & NT).toBe(NT);
  });

  it('IRET with NT = 1 and a null link raises #TS(0), reading no stack (vol. 2 IRET, table 6-6)', () => {
    const cpu = taskMachine(0);
    cpu.rflags = 0x2 | NT;
    cpu.gpr[2 * RSP] = 0xfffffff0;                       // a stack read would wrap; none is made
    load(cpu, CODE, [IRET]);
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 10, errorCode: 0 });
  });
});

describe('SDM 6.12.2: interrupts and exceptions through a task gate in the IDT', () => {
  it('a #GP with an error code switches to task B, nested, with the error code on the new stack; EIP saved is the fault\'s', () => {
    const cpu = taskMachine(3);
    cpu.deliverExceptions = true;
    idtEntry(cpu, 13, taskGate(S.TSS_B, 0));             // DPL 0: not checked for an exception
    load(cpu, CODE, [0x66, 0xb8, 0xf8, 0xff, 0x8e, 0xd8]); // mov ax, 0FFF8h; mov ds, ax (#GP(FFF8h))
    load(cpu, B_CODE, [HLT]);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    expect(cpu.segSel[TR]).toBe(S.TSS_B);
    expect(cpu.cpl).toBe(0);
    expect(cpu.ripLo).toBe(B_CODE + 1);
    expect(esp(cpu)).toBe(KSTACK - 4);
    expect(read32(cpu, KSTACK - 4)).toBe(0xfff8);
    expect(cpu.rflags & NT).toBe(NT);
    expect(read16(cpu, TSS_B)).toBe(S.TSS_A);
    expect(gdtType(cpu, S.TSS_A)).toBe(0xb);
    expect(read32(cpu, TSS_A + 0x20)).toBe(CODE + 4);   // the faulting MOV DS
    expect(read32(cpu, TSS_A + 0x28)).toBe(0xfff8);     // EAX as the fault left it
  });

  it('INT n through a task gate of DPL 3 switches with no error code; the saved EIP follows the INT', () => {
    const cpu = taskMachine(3);
    cpu.deliverExceptions = true;
    idtEntry(cpu, 0x41, taskGate(S.TSS_B, 3));
    load(cpu, CODE, [0xcd, 0x41]);
    load(cpu, B_CODE, [HLT]);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    expect(cpu.segSel[TR]).toBe(S.TSS_B);
    expect(esp(cpu)).toBe(KSTACK);
    expect(read32(cpu, TSS_A + 0x20)).toBe(CODE + 2);
  });

  it('INT n through a task gate with DPL < CPL raises #GP(vector × 8 + 2); a #GP task gate then takes it', () => {
    const cpu = taskMachine(3);
    cpu.deliverExceptions = true;
    idtEntry(cpu, 0x40, taskGate(S.TSS_C, 0));
    idtEntry(cpu, 13, taskGate(S.TSS_B, 0));
    load(cpu, CODE, [0xcd, 0x40]);
    load(cpu, B_CODE, [HLT]);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    expect(cpu.segSel[TR]).toBe(S.TSS_B);
    expect(read32(cpu, KSTACK - 4)).toBe(0x40 * 8 + 2);
    expect(gdtType(cpu, S.TSS_C)).toBe(0x1);             // the refused target was never touched
  });
});

describe('SDM 8.3 steps 1-4, table 8-1: checks before the commit point leave the old task untouched', () => {
  it('JMP to the current (busy) TSS raises #GP(selector)', () => {
    const cpu = taskMachine(0);
    load(cpu, CODE, jmpFar(S.TSS_A));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: S.TSS_A });
    expectNoSwitch(cpu);
  });

  it('CALL through a task gate to a busy TSS raises #GP(TSS selector) (vol. 2 CALL "TASK-GATE")', () => {
    const cpu = taskMachine(3);
    load(cpu, CODE, callFar(S.GATE_A | 3));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: S.TSS_A });
    expectNoSwitch(cpu);
    expect(cpu.cpl).toBe(3);
  });

  it('JMP from CPL 3 to a TSS of DPL 0 raises #GP(selector) (8.3 step 2)', () => {
    const cpu = taskMachine(3);
    load(cpu, CODE, jmpFar(S.TSS_B));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: S.TSS_B });
    expectNoSwitch(cpu);
  });

  it('JMP at CPL 0 with a selector of RPL 3 to a TSS of DPL 0 raises #GP(selector) (8.3 step 2)', () => {
    const cpu = taskMachine(0);
    load(cpu, CODE, jmpFar(S.TSS_B | 3));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: S.TSS_B });
    expectNoSwitch(cpu);
  });

  it('CALL from CPL 3 through a task gate of DPL 0 raises #GP(gate selector)', () => {
    const cpu = taskMachine(3);
    load(cpu, CODE, callFar(S.GATE_B_DPL0 | 3));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: S.GATE_B_DPL0 });
    expectNoSwitch(cpu);
  });

  it('a TSS limit below 67H raises #TS(selector) (8.3 step 3)', () => {
    const cpu = taskMachine(0);
    load(cpu, CODE, jmpFar(S.TSS_SMALL));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 10, errorCode: S.TSS_SMALL });
    expectNoSwitch(cpu);
  });

  it('a TSS that is not present raises #NP(selector) (8.3 step 3)', () => {
    const cpu = taskMachine(0);
    load(cpu, CODE, jmpFar(S.TSS_NP));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 11, errorCode: S.TSS_NP });
    expectNoSwitch(cpu);
  });

  it('a task gate that is not present raises #NP(gate selector) (vol. 2 JMP "TASK-GATE")', () => {
    const cpu = taskMachine(0);
    const [lo, hi] = taskGate(S.TSS_B, 3, false);
    write32(cpu, GDT + S.GATE_B, lo); write32(cpu, GDT + S.GATE_B + 4, hi);
    load(cpu, CODE, jmpFar(S.GATE_B));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 11, errorCode: S.GATE_B });
    expectNoSwitch(cpu);
  });

  it('a task gate whose TSS selector has TI = 1 raises #GP(TSS selector) (table 8-1: TSS in the GDT)', () => {
    const cpu = taskMachine(0);
    write32(cpu, GDT + S.GATE_B, (S.TSS_B | 4) << 16);
    load(cpu, CODE, jmpFar(S.GATE_B));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: S.TSS_B | 4 });
    expectNoSwitch(cpu);
  });

  it('a new EFLAGS with VM = 1 is refused with #GP(0) before the commit point (virtual-8086 mode is not modelled)', () => {
    const cpu = taskMachine(0);
    writeTss32(cpu, TSS_B, { eflags: 0x20002 });
    load(cpu, CODE, jmpFar(S.TSS_B));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
    expectNoSwitch(cpu);
  });
});

describe('SDM 8.3 step 13, table 8-1: faults after the commit point happen in the new task', () => {
  it('an SS selector naming a code segment raises #TS(SS) with task B installed, A freed and EIP at B\'s first instruction', () => {
    const cpu = taskMachine(0);
    writeTss32(cpu, TSS_B, { ss: S.CODE0 });
    load(cpu, CODE, jmpFar(S.TSS_B));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 10, errorCode: S.CODE0 });
    expect(cpu.segSel[TR]).toBe(S.TSS_B);
    expect(gdtType(cpu, S.TSS_A)).toBe(0x9);
    expect(gdtType(cpu, S.TSS_B)).toBe(0xb);
    expect(cpu.ripLo).toBe(B_CODE);
    expect(reg32(cpu, RAX)).toBe(0xa0);
    expect(cpu.segSel[SS]).toBe(S.CODE0);
    expect(cpu.segAttr[SS]! & SegAttr.UNUSABLE).toBe(SegAttr.UNUSABLE);
    expect(read32(cpu, TSS_A + 0x20)).toBe(CODE + 7);
  });

  it('a data selector beyond the GDT limit raises #TS(selector), not #GP (table 8-1)', () => {
    const cpu = taskMachine(0);
    writeTss32(cpu, TSS_B, { data: 0x1f8 });
    load(cpu, CODE, jmpFar(S.TSS_B));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 10, errorCode: 0x1f8 });
    expect(cpu.segSel[TR]).toBe(S.TSS_B);
  });

  it('a not-present code segment raises #NP(CS selector)', () => {
    const cpu = taskMachine(0);
    write32(cpu, GDT + S.CODE0_SMALL + 4, segmentDescriptor(0, 0xfff, 0x1a, 0x4)[1]);
    writeTss32(cpu, TSS_B, { cs: S.CODE0_SMALL });
    load(cpu, CODE, jmpFar(S.TSS_B));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 11, errorCode: S.CODE0_SMALL });
    expect(cpu.segSel[TR]).toBe(S.TSS_B);
  });

  it('an LDT selector that names a data segment raises #TS(LDT selector)', () => {
    const cpu = taskMachine(0);
    writeTss32(cpu, TSS_B, { ldt: S.DATA0 });
    load(cpu, CODE, jmpFar(S.TSS_B));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 10, errorCode: S.DATA0 });
    expect(cpu.segSel[TR]).toBe(S.TSS_B);
  });

  it('an EIP beyond the new CS limit raises #GP(0) in the new task (vol. 2 JMP "TASK-STATE-SEGMENT")', () => {
    const cpu = taskMachine(0);
    writeTss32(cpu, TSS_B, { cs: S.CODE0_SMALL, eip: 0x2000 });
    load(cpu, CODE, jmpFar(S.TSS_B));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
    expect(cpu.segSel[TR]).toBe(S.TSS_B);
    expect(cpu.ripLo).toBe(0x2000);
  });

  it('with delivery on, a post-commit #TS goes through the IDT from the new task', () => {
    const cpu = taskMachine(0);
    cpu.deliverExceptions = true;
    writeTss32(cpu, TSS_B, { data: 0x1f8 });
    idtEntry(cpu, 10, [(S.CODE0 << 16) | HANDLER, 0x8e00 | 0]); // 32-bit interrupt gate
    load(cpu, CODE, jmpFar(S.TSS_B));
    load(cpu, HANDLER, [HLT]);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    expect(cpu.segSel[TR]).toBe(S.TSS_B);
    expect(cpu.ripLo).toBe(HANDLER + 1);
    expect(esp(cpu)).toBe(KSTACK - 16);                   // error code, EIP, CS, EFLAGS on B's stack
    expect(read32(cpu, KSTACK - 16)).toBe(0x1f8);
    expect(read32(cpu, KSTACK - 12)).toBe(B_CODE);
  });
});

describe('SDM 8.3 step 13: the LDT of the new task', () => {
  it('loads LDTR from the TSS, then DS from that LDT', () => {
    const cpu = taskMachine(0);
    writeTss32(cpu, TSS_B, { ldt: S.LDT, data: S.LDT_DATA });
    load(cpu, CODE, jmpFar(S.TSS_B));
    expect(run(cpu, 1)).toEqual({ kind: 'budget' });
    expect(cpu.segSel[LDTR]).toBe(S.LDT);
    expect(cpu.segBase[2 * LDTR]).toBe(LDT);
    expect(cpu.segSel[DS]).toBe(S.LDT_DATA);
    expect(cpu.segBase[2 * DS]).toBe(LDT_DATA);
    expect(cpu.segLimit[DS]).toBe(0xfff);
  });
});

describe('SDM vol. 3B 18.3.1.5: the T flag of the new TSS', () => {
  it('raises a #DB trap before the new task\'s first instruction, with DR6.BT set', () => {
    const cpu = taskMachine(0);
    writeTss32(cpu, TSS_B, { trap: true });
    load(cpu, CODE, jmpFar(S.TSS_B));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 1, errorCode: null });
    expect(cpu.segSel[TR]).toBe(S.TSS_B);
    expect(cpu.ripLo).toBe(B_CODE);
    expect(cpu.dr6 & 0x8000).toBe(0x8000);
  });
});

describe('SDM 8.6: 16-bit TSSs', () => {
  /** A 16-bit TSS (figure 8-10): IP, FLAGS, AX..DI, ES, CS, SS, DS, LDT. */
  function writeTss16(cpu: Cpu, base: number): void {
    for (let k = 0; k < 0x30; k += 2) write16(cpu, base + k, 0);
    write16(cpu, base + 14, B_CODE);
    write16(cpu, base + 16, 0x0003);
    for (let n = 0; n < 8; n++) write16(cpu, base + 18 + 2 * n, 0x1001 + n);
    [S.DATA0, S.CODE0, S.DATA0, S.DATA0].forEach((v, s) => write16(cpu, base + 34 + 2 * s, v));
  }

  it('JMP to a 16-bit TSS loads words: upper register halves FFFFH, FS and GS null, type 3 in TR', () => {
    const cpu = taskMachine(0);
    writeTss16(cpu, TSS_C);
    load(cpu, CODE, jmpFar(S.TSS_C));
    expect(run(cpu, 1)).toEqual({ kind: 'budget' });
    expect(cpu.segSel[TR]).toBe(S.TSS_C);
    expect(cpu.segAttr[TR]! & 0xf).toBe(0x3);
    expect(gdtType(cpu, S.TSS_C)).toBe(0x3);
    expect(cpu.ripLo).toBe(B_CODE);
    expect(cpu.rflags).toBe(0x3);
    expect(reg32(cpu, RAX)).toBe(0xffff1001);
    expect(reg32(cpu, RBX)).toBe(0xffff1004);
    expect(cpu.segSel[DS]).toBe(S.DATA0);
    expect(cpu.segSel[FS]).toBe(0);
    expect(cpu.segAttr[GS]! & SegAttr.UNUSABLE).toBe(SegAttr.UNUSABLE);
  });

  it('leaving a 16-bit task saves IP, FLAGS, AX..DI and ES, CS, SS, DS as words, and frees it (type 1)', () => {
    const cpu = taskMachine(0);
    writeTss16(cpu, TSS_C);
    write16(cpu, TSS_C + 44, 0xeeee);                    // beyond the 16-bit TSS: untouched
    write32(cpu, GDT + S.TSS_C + 4, segmentDescriptor(TSS_C, 0x2b, 0x83, 0)[1]);
    cpu.setSegment(TR, S.TSS_C, TSS_C, 0, 0x2b, 0x83);
    cpu.gpr[2 * RAX] = 0x12345678;
    load(cpu, CODE, jmpFar(S.TSS_B));
    expect(run(cpu, 1)).toEqual({ kind: 'budget' });
    expect(cpu.segSel[TR]).toBe(S.TSS_B);
    expect(gdtType(cpu, S.TSS_C)).toBe(0x1);
    expect(gdtType(cpu, S.TSS_A)).toBe(0xb);             // not involved
    expect(read16(cpu, TSS_C + 14)).toBe(CODE + 7);
    expect(read16(cpu, TSS_C + 16)).toBe(0x2);
    expect(read16(cpu, TSS_C + 18)).toBe(0x5678);
    expect(read16(cpu, TSS_C + 26)).toBe(STACK);
    expect([0, 1, 2, 3].map((s) => read16(cpu, TSS_C + 34 + 2 * s))).toEqual([S.DATA0, S.CODE0, S.DATA0, S.DATA0]);
    expect(read16(cpu, TSS_C + 44)).toBe(0xeeee);
  });
});

describe('SDM 8.3 step 12: CR3 from the new TSS with paging on', () => {
  const PD_A = 0x20000, PD_B = 0x21000, PT0 = 0x22000, PT_A1 = 0x23000, PT_B1 = 0x24000;
  // mov eax, [400000h]; jmp far TSS_B      and, in B: mov ebx, [400000h]; hlt
  const codeA = [0xa1, 0x00, 0x00, 0x40, 0x00, ...jmpFar(0x30)];
  const codeB = [0x8b, 0x1d, 0x00, 0x00, 0x40, 0x00, HLT];

  it('32-bit paging: B sees its own mapping of 400000H after the switch, and CR3 = its PDBR', () => {
    const cpu = taskMachine(0);
    for (let k = 0; k < 1024; k++) write32(cpu, PT0 + 4 * k, (k << 12) | 3);
    write32(cpu, PT_A1, 0x30000 | 3);
    write32(cpu, PT_B1, 0x31000 | 3);
    write32(cpu, PD_A, PT0 | 3); write32(cpu, PD_A + 4, PT_A1 | 3);
    write32(cpu, PD_B, PT0 | 3); write32(cpu, PD_B + 4, PT_B1 | 3);
    write32(cpu, 0x30000, 0xaaaa0000); write32(cpu, 0x31000, 0xbbbb0000);
    writeTss32(cpu, TSS_B, { cr3: PD_B });
    cpu.cr3Lo = PD_A; cpu.cr0 |= 0x80000000; cpu.mmu.flush();
    load(cpu, CODE, codeA);
    load(cpu, B_CODE, codeB);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    expect(read32(cpu, TSS_A + 0x28)).toBe(0xaaaa0000);  // A's EAX, read through A's tables
    expect(reg32(cpu, RBX)).toBe(0xbbbb0000);            // the TLB entry of A's mapping is gone
    expect(cpu.cr3Lo).toBe(PD_B);
    expect(read32(cpu, TSS_A + 0x1c)).toBe(0);           // CR3 is not saved in the old TSS
  });

  /** PAE paging: PDPT_A → PD_A, PDPT_B → PD_B; 2-MiB pages, 400000H mapped to 400000H (A) or 600000H (B). */
  function paeMachine(): Cpu {
    const cpu = taskMachine(0);
    const PDPT_A = 0x20000, PDPT_B = 0x20020, PA = 0x21000, PB = 0x22000;
    write32(cpu, PDPT_A, PA | 1); write32(cpu, PDPT_B, PB | 1);
    for (const pd of [PA, PB]) { write32(cpu, pd, 0x83); write32(cpu, pd + 8, 0x200083); }
    write32(cpu, PA + 16, 0x400083); write32(cpu, PB + 16, 0x600083);
    write32(cpu, 0x400000, 0xaaaa0000); write32(cpu, 0x600000, 0xbbbb0000);
    writeTss32(cpu, TSS_B, { cr3: PDPT_B });
    cpu.cr4 |= 1 << 5;
    cpu.cr3Lo = PDPT_A; cpu.cr0 |= 0x80000000; cpu.mmu.flush();
    load(cpu, CODE, codeA);
    load(cpu, B_CODE, codeB);
    return cpu;
  }

  it('PAE paging: the PDPTE registers are reloaded from the new CR3 (SDM vol. 3A, 4.4.1)', () => {
    const cpu = paeMachine();
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    expect(cpu.cr3Lo).toBe(0x20020);
    expect(cpu.pdpte[0]).toBe(0x22000 | 1);
    expect(read32(cpu, TSS_A + 0x28)).toBe(0xaaaa0000);
    expect(reg32(cpu, RBX)).toBe(0xbbbb0000);
  });

  it('PAE paging: a new PDPTE with a reserved bit set raises #GP(0) after the commit point, CR3 not loaded', () => {
    const cpu = paeMachine();
    write32(cpu, 0x20028, 0x23000 | 1 | (1 << 5));       // PDPT_B[1]: P with reserved bit 5
    expect(run(cpu, 10)).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
    expect(cpu.segSel[TR]).toBe(S.TSS_B);
    expect(cpu.ripLo).toBe(B_CODE);
    expect(cpu.cr3Lo).toBe(0x20000);
  });
});

describe('SDM 8.7: IA-32e mode has no task switching', () => {
  const POINTER = 0x2000;

  it('JMP far to an available TSS descriptor raises #GP(selector)', () => {
    const cpu = longModeMachine();
    cpu.deliverExceptions = false;
    write32(cpu, POINTER, 0); write32(cpu, POINTER + 4, SEL.TSS);
    write32(cpu, GDT + SEL.TSS + 4, segmentDescriptor(0x7000, 0x67, 0x89, 0)[1]); // available, type 9
    load(cpu, CODE, [0xff, 0x2c, 0x25, POINTER & 0xff, POINTER >> 8, 0, 0]); // jmp far [POINTER]
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: SEL.TSS });
    expect(cpu.segSel[TR]).toBe(SEL.TSS);
    expect(cpu.rip).toBe(BigInt(CODE));
  });

  it('IRETQ with NT = 1 raises #GP(0)', () => {
    const cpu = longModeMachine();
    cpu.deliverExceptions = false;
    cpu.rflags = 0x2 | NT;
    load(cpu, CODE, [0x48, IRET]);
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
  });

  it('INT n through a task gate (type 5) in the IDT raises #GP(vector × 8 + 2), the vector in the index field (6.13)', () => {
    const cpu = longModeMachine();
    gate64(cpu, 0x40, 0, { type: 5 });
    gate64(cpu, 13, HANDLER);
    load(cpu, CODE, [0xcd, 0x40]);
    load(cpu, HANDLER, [HLT]);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    expect(cpu.rip).toBe(BigInt(HANDLER + 1));
    expect(read64(cpu, esp(cpu))).toBe(BigInt(0x40 * 8 + 2));
  });
});
