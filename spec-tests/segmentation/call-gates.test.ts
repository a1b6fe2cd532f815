/**
 * Call gates in far JMP and far CALL, and the far RET back: SDM vol. 3A 5.8.3
 * "Call Gates", 5.8.3.1 "IA-32e Mode Call Gates", 5.8.4 "Accessing a Code
 * Segment Through a Call Gate", 5.8.5 "Stack Switching", 5.8.6 "Returning from
 * a Called Procedure"; vol. 2 JMP, CALL and RET "Operation".
 */
import { describe, expect, it } from 'vitest';
import { Cpu, SegAttr } from '../../src/cpu/cpu.js';
import { run } from '../../src/cpu/run.js';
import { CS, DS, ES, RSP, SS, TR } from '../../src/cpu/regs.js';
import {
  CODE, enterRing, GDT, load, longModeMachine, read64, SEL, segmentDescriptor, STACK, TSS, write32,
  writeGdt,
} from '../machine.js';

const KERNEL = 0x3000, KSTACK = 0x8000, HLT = 0xf4;

/** Selectors of the GDT gdt32() lays out. */
const S = {
  CODE0: 0x08, DATA0: 0x10, CODE3: 0x1b, DATA3: 0x23, TSS: 0x28,
  GATE32: 0x33, GATE16: 0x3b, GATE_DPL0: 0x40, GATE_NP: 0x4b, GATE_DATA: 0x53, GATE_CODE3: 0x58,
  CODE0_SMALL: 0x60, GATE_SMALL: 0x6b, CONFORMING0: 0x70, GATE_CONFORMING: 0x7b,
} as const;

/** A call gate's two dwords (SDM vol. 3A, 5.8.3, figure 5-8): type 0xC (32-bit) or 4 (16-bit). */
function gate(selector: number, offset: number, o: { type?: number; dpl?: number; count?: number; present?: boolean } = {}): [number, number] {
  const type = o.type ?? 0xc, dpl = o.dpl ?? 3, count = o.count ?? 0, p = o.present ?? true;
  return [((selector << 16) | (offset & 0xffff)) | 0,
    ((offset & 0xffff0000) | ((p ? 1 : 0) << 15) | (dpl << 13) | (type << 8) | count) | 0];
}


/**
 * 32-bit protected mode (no paging) at CPL 3: a GDT with ring-0/ring-3 code and
 * data, a 32-bit TSS with SS0:ESP0 = DATA0:KSTACK, and the gates of S.
 */
function protectedMachine(cpl = 3): Cpu {
  const cpu = new Cpu({ memorySize: 4 << 20 });
  cpu.enterFlat32();
  cpu.deliverExceptions = false;
  writeGdt(cpu, [
    [0, 0],
    segmentDescriptor(0, 0xfffff, 0x9a, 0xc),          // 0x08 ring-0 code
    segmentDescriptor(0, 0xfffff, 0x92, 0xc),          // 0x10 ring-0 data
    segmentDescriptor(0, 0xfffff, 0xfa, 0xc),          // 0x18 ring-3 code
    segmentDescriptor(0, 0xfffff, 0xf2, 0xc),          // 0x20 ring-3 data
    segmentDescriptor(TSS, 0x67, 0x89, 0),             // 0x28 32-bit TSS
    gate(S.CODE0, KERNEL, { count: 2 }),               // 0x30 32-bit gate, 2 dword parameters
    gate(S.CODE0, KERNEL, { type: 4, count: 1 }),      // 0x38 16-bit gate, 1 word parameter
    gate(S.CODE0, KERNEL, { dpl: 0 }),                 // 0x40 gate DPL 0
    gate(S.CODE0, KERNEL, { present: false }),         // 0x48 gate not present
    gate(S.DATA0, KERNEL),                             // 0x50 gate to a data segment
    gate(S.CODE3, KERNEL, { dpl: 0 }),                 // 0x58 gate to ring-3 code
    segmentDescriptor(0, 0xfff, 0x9a, 0x4),            // 0x60 ring-0 code, limit 0xFFF
    gate(0x60, KERNEL),                                // 0x68 gate to an offset beyond that limit
    segmentDescriptor(0, 0xfffff, 0x9e, 0xc),          // 0x70 ring-0 conforming code
    gate(0x70, KERNEL),                                // 0x78 gate to conforming code
  ]);
  write32(cpu, TSS + 4, KSTACK);  // ESP0
  write32(cpu, TSS + 8, S.DATA0); // SS0
  cpu.setSegment(TR, S.TSS, TSS, 0, 0x67, 0x8b);
  enterRing(cpu, cpl);
  cpu.gpr[2 * RSP] = STACK;
  cpu.ripLo = CODE;
  return cpu;
}

const read32 = (cpu: Cpu, pa: number): number => Number(read64(cpu, pa) & 0xffffffffn);
const read16 = (cpu: Cpu, pa: number): number => Number(read64(cpu, pa) & 0xffffn);
/** CALL ptr16:32 (9A) and JMP ptr16:32 (EA): the offset is ignored for a gate. */
const callFar = (sel: number): number[] => [0x9a, 0, 0, 0, 0, sel & 0xff, sel >> 8];
const jmpFar = (sel: number): number[] => [0xea, 0, 0, 0, 0, sel & 0xff, sel >> 8];
const esp = (cpu: Cpu): number => cpu.gpr[2 * RSP]! >>> 0;

/** The state a faulting far transfer must leave untouched. */
function expectUnchanged(cpu: Cpu, cs: number, ss: number, sp: number, cpl: number): void {
  expect(cpu.segSel[CS]).toBe(cs);
  expect(cpu.segSel[SS]).toBe(ss);
  expect(esp(cpu)).toBe(sp);
  expect(cpu.cpl).toBe(cpl);
  expect(cpu.ripLo).toBe(CODE);
}

describe('SDM 5.8.5: CALL through a 32-bit call gate to a more privileged level', () => {
  it('switches to SS0:ESP0 from the TSS and builds old SS, old ESP, 2 parameters, CS, EIP (figure 5-13)', () => {
    const cpu = protectedMachine(3);
    // push 0x11111111; push 0x22222222; call 0x33:0
    load(cpu, CODE, [0x68, 0x11, 0x11, 0x11, 0x11, 0x68, 0x22, 0x22, 0x22, 0x22, ...callFar(S.GATE32)]);
    load(cpu, KERNEL, [HLT]);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    expect(cpu.cpl).toBe(0);
    expect(cpu.segSel[CS]).toBe(S.CODE0);
    expect(cpu.segSel[SS]).toBe(S.DATA0);
    expect(cpu.ripLo).toBe(KERNEL + 1);
    const sp = esp(cpu);
    expect(sp).toBe(KSTACK - 24);
    expect(read32(cpu, sp)).toBe(CODE + 17);            // return EIP
    expect(read32(cpu, sp + 4)).toBe(S.CODE3);          // caller's CS
    expect(read32(cpu, sp + 8)).toBe(0x22222222);       // parameters, in the caller's order
    expect(read32(cpu, sp + 12)).toBe(0x11111111);
    expect(read32(cpu, sp + 16)).toBe(STACK - 8);       // caller's ESP
    expect(read32(cpu, sp + 20)).toBe(S.DATA3);         // caller's SS
  });

  it('RETF 8 returns to CPL 3: CS, SS, ESP restored past the parameters, DS with DPL 0 nulled (5.8.6; vol. 2 RET)', () => {
    const cpu = protectedMachine(3);
    load(cpu, CODE, [0x68, 0x11, 0x11, 0x11, 0x11, 0x68, 0x22, 0x22, 0x22, 0x22, ...callFar(S.GATE32)]);
    // mov ax, 0x10; mov ds, ax; retf 8
    load(cpu, KERNEL, [0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0xca, 0x08, 0x00]);
    expect(run(cpu, 6)).toEqual({ kind: 'budget' });
    expect(cpu.cpl).toBe(3);
    expect(cpu.segSel[CS]).toBe(S.CODE3);
    expect(cpu.segSel[SS]).toBe(S.DATA3);
    expect(esp(cpu)).toBe(STACK);                       // STACK - 8 + 8: both copies released
    expect(cpu.ripLo).toBe(CODE + 17);
    expect(cpu.segSel[DS]).toBe(0);                     // DPL 0 < CPL 3: nulled
    expect(cpu.segAttr[DS]! & SegAttr.UNUSABLE).toBe(SegAttr.UNUSABLE);
    expect(cpu.segSel[ES]).toBe(S.DATA3);               // DPL 3 stays
  });

  it('a 16-bit gate pushes words and copies word parameters; RETF 2 (o16) returns (5.8.3, 5.8.5)', () => {
    const cpu = protectedMachine(3);
    // push word 0x1234; call 0x3b:0
    load(cpu, CODE, [0x66, 0x68, 0x34, 0x12, ...callFar(S.GATE16)]);
    load(cpu, KERNEL, [0x66, 0xca, 0x02, 0x00]); // o16 retf 2
    expect(run(cpu, 2)).toEqual({ kind: 'budget' });
    expect(cpu.cpl).toBe(0);
    expect(cpu.ripLo).toBe(KERNEL);
    const sp = esp(cpu);
    expect(sp).toBe(KSTACK - 10);
    expect(read16(cpu, sp)).toBe(CODE + 11);            // IP
    expect(read16(cpu, sp + 2)).toBe(S.CODE3);
    expect(read16(cpu, sp + 4)).toBe(0x1234);           // the word parameter
    expect(read16(cpu, sp + 6)).toBe(STACK - 2);        // SP
    expect(read16(cpu, sp + 8)).toBe(S.DATA3);
    expect(run(cpu, 1)).toEqual({ kind: 'budget' });
    expect(cpu.cpl).toBe(3);
    expect(cpu.segSel[CS]).toBe(S.CODE3);
    expect(esp(cpu)).toBe(STACK);
    expect(cpu.ripLo).toBe(CODE + 11);
  });

  it('a not-present new stack segment raises #SS(SS0) and leaves CS, SS, ESP and CPL as they were (5.8.5)', () => {
    const cpu = protectedMachine(3);
    write32(cpu, GDT + 0x10 + 4, segmentDescriptor(0, 0xfffff, 0x12, 0xc)[1]); // ring-0 data, P = 0
    load(cpu, CODE, callFar(S.GATE32));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 12, errorCode: S.DATA0 });
    expectUnchanged(cpu, S.CODE3, S.DATA3, STACK, 3);
  });

  it('the frame must fit within the new stack segment\'s limit, else #SS(SS0) before anything is pushed (5.3; vol. 2 CALL)', () => {
    // SS0 byte-granular with limit 0x7FFF: the 24-byte frame below KSTACK = 0x8000 ends on its last byte.
    for (const [limit, stop] of [[0x7fff, { kind: 'halt' }], [0x7ffe, { kind: 'exception', vector: 12, errorCode: S.DATA0 }]] as const) {
      const cpu = protectedMachine(3);
      const [lo, hi] = segmentDescriptor(0, limit, 0x92, 0x4);
      write32(cpu, GDT + 0x10, lo); write32(cpu, GDT + 0x10 + 4, hi);
      load(cpu, CODE, [0x68, 0x11, 0x11, 0x11, 0x11, 0x68, 0x22, 0x22, 0x22, 0x22, ...callFar(S.GATE32)]);
      load(cpu, KERNEL, [HLT]);
      expect(run(cpu, 10)).toEqual(stop);
      if (stop.kind === 'exception') {
        expect([cpu.segSel[CS], cpu.segSel[SS], esp(cpu), cpu.cpl]).toEqual([S.CODE3, S.DATA3, STACK - 8, 3]);
        expect(cpu.ripLo).toBe(CODE + 10); // the CALL
        expect(read32(cpu, KSTACK - 4)).toBe(0);
      }
    }
  });

  it('an SS0 with RPL ≠ new CPL raises #TS(SS0) (5.8.5)', () => {
    const cpu = protectedMachine(3);
    write32(cpu, TSS + 8, S.DATA3);
    load(cpu, CODE, callFar(S.GATE32));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 10, errorCode: S.DATA3 & 0xfffc });
    expectUnchanged(cpu, S.CODE3, S.DATA3, STACK, 3);
  });

  it('a gate offset beyond the target limit raises #GP(0) after the stack switch, undone (vol. 2 CALL "MORE-PRIVILEGE")', () => {
    const cpu = protectedMachine(3);
    load(cpu, CODE, callFar(S.GATE_SMALL));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
    expectUnchanged(cpu, S.CODE3, S.DATA3, STACK, 3);
  });
});

describe('SDM 5.8.6 and vol. 2 RET: a faulting far return changes nothing', () => {
  it('RETF to CPL 3 with a stacked SS of RPL 0 raises #GP(SS selector) with CS, SS, ESP and CPL kept', () => {
    const cpu = protectedMachine(0);
    [CODE + 0x100, S.CODE3, STACK - 0x100, S.DATA0].forEach((v, k) => write32(cpu, STACK - 16 + 4 * k, v));
    cpu.gpr[2 * RSP] = STACK - 16;
    load(cpu, CODE, [0xcb]);
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: S.DATA0 });
    expectUnchanged(cpu, S.CODE0, S.DATA0, STACK - 16, 0);
  });

  it('RETF at the same level to an offset beyond the CS limit raises #GP(0) with ESP and CS kept', () => {
    const cpu = protectedMachine(0);
    [0x2000, S.CODE0_SMALL].forEach((v, k) => write32(cpu, STACK - 8 + 4 * k, v));
    cpu.gpr[2 * RSP] = STACK - 8;
    load(cpu, CODE, [0xcb]);
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
    expectUnchanged(cpu, S.CODE0, S.DATA0, STACK - 8, 0);
  });
});

describe('SDM 5.8.4: gate and target checks (table 5-1)', () => {
  it('gate DPL < CPL raises #GP(gate selector)', () => {
    const cpu = protectedMachine(3);
    load(cpu, CODE, callFar(S.GATE_DPL0 | 3));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: S.GATE_DPL0 });
    expectUnchanged(cpu, S.CODE3, S.DATA3, STACK, 3);
  });

  it('gate DPL < RPL raises #GP(gate selector)', () => {
    const cpu = protectedMachine(0);
    load(cpu, CODE, callFar(S.GATE_DPL0 | 1));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: S.GATE_DPL0 });
  });

  it('a gate that is not present raises #NP(gate selector)', () => {
    const cpu = protectedMachine(3);
    load(cpu, CODE, callFar(S.GATE_NP));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 11, errorCode: S.GATE_NP & 0xfffc });
  });

  it('a gate whose selector names a data segment raises #GP(that selector)', () => {
    const cpu = protectedMachine(3);
    load(cpu, CODE, callFar(S.GATE_DATA));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: S.DATA0 });
  });

  it('a target code segment with DPL > CPL raises #GP(code selector)', () => {
    const cpu = protectedMachine(0);
    load(cpu, CODE, callFar(S.GATE_CODE3));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: S.CODE3 & 0xfffc });
    expectUnchanged(cpu, S.CODE0, S.DATA0, STACK, 0);
  });

  it('JMP through a gate to a non-conforming segment with DPL < CPL raises #GP(code selector): JMP never changes CPL', () => {
    const cpu = protectedMachine(3);
    load(cpu, CODE, jmpFar(S.GATE32));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: S.CODE0 });
    expectUnchanged(cpu, S.CODE3, S.DATA3, STACK, 3);
  });

  it('a task gate with DPL < CPL as a far-transfer target raises #GP(gate selector) (SDM vol. 3A, 8.3 "Task Switching")', () => {
    const cpu = protectedMachine(3);
    write32(cpu, GDT + 0x40 + 4, gate(S.TSS, 0, { type: 5, dpl: 0 })[1]);
    load(cpu, CODE, callFar(S.GATE_DPL0 | 3));
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: S.GATE_DPL0 });
    expectUnchanged(cpu, S.CODE3, S.DATA3, STACK, 3);
  });
});

describe('SDM 5.8.4: transfers through a gate at the same privilege level', () => {
  it('JMP through a gate loads CS:EIP from the gate, with no stack change', () => {
    const cpu = protectedMachine(0);
    load(cpu, CODE, jmpFar(S.GATE32));
    load(cpu, KERNEL, [HLT]);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    expect(cpu.segSel[CS]).toBe(S.CODE0);
    expect(cpu.ripLo).toBe(KERNEL + 1);
    expect(esp(cpu)).toBe(STACK);
    expect(cpu.segSel[SS]).toBe(S.DATA0);
  });

  it('JMP from CPL 3 through a gate to conforming ring-0 code keeps CPL 3 (CS.RPL = CPL)', () => {
    const cpu = protectedMachine(3);
    load(cpu, CODE, jmpFar(S.GATE_CONFORMING));
    expect(run(cpu, 1)).toEqual({ kind: 'budget' });
    expect(cpu.cpl).toBe(3);
    expect(cpu.segSel[CS]).toBe(S.CONFORMING0 | 3);
    expect(cpu.ripLo).toBe(KERNEL);
  });

  it('CALL through a gate to a segment at CPL pushes CS:EIP on the current stack (vol. 2 CALL "SAME-PRIVILEGE")', () => {
    const cpu = protectedMachine(0);
    load(cpu, CODE, callFar(S.GATE32));
    load(cpu, KERNEL, [HLT]);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    expect(esp(cpu)).toBe(STACK - 8);                   // no parameters copied without a stack switch
    expect(read32(cpu, STACK - 8)).toBe(CODE + 7);
    expect(read32(cpu, STACK - 4)).toBe(S.CODE0);
    expect(cpu.segSel[SS]).toBe(S.DATA0);
  });
});

// ---- IA-32e mode -------------------------------------------------------------------

const GATE64 = 0x40, POINTER = 0x2000;

/** A 16-byte 64-bit call gate at GDT offset `at` (SDM vol. 3A, 5.8.3.1, figure 5-9). */
function gate64(cpu: Cpu, at: number, selector: number, offset: number, o: { dpl?: number; type?: number; upperType?: number } = {}): void {
  const [lo, hi] = gate(selector, offset, { type: o.type ?? 0xc, dpl: o.dpl ?? 3 });
  write32(cpu, GDT + at, lo);
  write32(cpu, GDT + at + 4, hi);
  write32(cpu, GDT + at + 8, 0);
  write32(cpu, GDT + at + 12, (o.upperType ?? 0) << 8);
  cpu.gdtrLimit = Math.max(cpu.gdtrLimit, at + 15);
}

/** 64-bit mode at CPL 3 on flatGdt(), RSP0 = KSTACK, about to run `call far [POINTER]` with POINTER → sel:0. */
function userMachine64(sel: number): Cpu {
  const cpu = longModeMachine();
  cpu.deliverExceptions = false;
  write32(cpu, TSS + 4, KSTACK); // RSP0
  cpu.cpl = 3;
  cpu.setSegment(CS, SEL.CODE64_USER, 0, 0, 0xffffffff, cpu.segAttr[CS]! | (3 << 5));
  for (const s of [SS, DS, ES]) cpu.setSegment(s, SEL.DATA_USER, 0, 0, 0xffffffff, cpu.segAttr[s]! | (3 << 5));
  write32(cpu, POINTER, 0);
  write32(cpu, POINTER + 4, sel);
  load(cpu, CODE, [0xff, 0x1c, 0x25, POINTER & 0xff, POINTER >> 8, 0, 0]); // call far [POINTER] (m16:32)
  return cpu;
}

describe('SDM 5.8.3.1: IA-32e mode call gates', () => {
  it('CALL from CPL 3 through a 64-bit gate: RSP0, null SS with RPL 0, 8-byte pushes of SS, RSP, CS, RIP', () => {
    const cpu = userMachine64(GATE64 | 3);
    gate64(cpu, GATE64, SEL.CODE64, KERNEL);
    load(cpu, KERNEL, [HLT]);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    expect(cpu.cpl).toBe(0);
    expect(cpu.segSel[CS]).toBe(SEL.CODE64);
    expect(cpu.segSel[SS]).toBe(0);
    expect(cpu.rip).toBe(BigInt(KERNEL + 1));
    const sp = esp(cpu);
    expect(sp).toBe(KSTACK - 32);
    expect(read64(cpu, sp)).toBe(BigInt(CODE + 7));
    expect(read64(cpu, sp + 8)).toBe(BigInt(SEL.CODE64_USER));
    expect(read64(cpu, sp + 16)).toBe(BigInt(STACK));
    expect(read64(cpu, sp + 24)).toBe(BigInt(SEL.DATA_USER));
  });

  it('REX.W RETF (48 CB) returns to CPL 3 with the caller\'s CS, SS and RSP', () => {
    const cpu = userMachine64(GATE64 | 3);
    gate64(cpu, GATE64, SEL.CODE64, KERNEL);
    load(cpu, KERNEL, [0x48, 0xcb]);
    expect(run(cpu, 2)).toEqual({ kind: 'budget' });
    expect(cpu.cpl).toBe(3);
    expect(cpu.segSel[CS]).toBe(SEL.CODE64_USER);
    expect(cpu.segSel[SS]).toBe(SEL.DATA_USER);
    expect(cpu.reg64(RSP)).toBe(BigInt(STACK));
    expect(cpu.rip).toBe(BigInt(CODE + 7));
  });

  it('a nonzero type in the upper 8 bytes raises #GP(gate selector)', () => {
    const cpu = userMachine64(GATE64 | 3);
    gate64(cpu, GATE64, SEL.CODE64, KERNEL, { upperType: 0xc });
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: GATE64 });
    expect(cpu.cpl).toBe(3);
    expect(cpu.reg64(RSP)).toBe(BigInt(STACK));
  });

  it('a target that is not 64-bit code (L = 0) raises #GP(code selector)', () => {
    const cpu = userMachine64(GATE64 | 3);
    gate64(cpu, GATE64, SEL.CODE32, KERNEL);
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: SEL.CODE32 });
  });

  it('a 16-bit call gate (type 4) is invalid in IA-32e mode: #GP(gate selector)', () => {
    const cpu = userMachine64(GATE64 | 3);
    gate64(cpu, GATE64, SEL.CODE64, KERNEL, { type: 4 });
    expect(run(cpu, 1)).toEqual({ kind: 'exception', vector: 13, errorCode: GATE64 });
  });
});
