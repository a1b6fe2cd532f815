/**
 * The TASK_SWITCH handler (task-switch.ts): a 32-bit guest that switches tasks
 * by CALL through a task gate, IRET with NT = 1, JMP to a TSS and a #GP through
 * a task gate in the IDT (SDM vol. 3A, 8.3, 8.4, 6.12.2) ends in the same state
 * under the hypervisor, where each switch is a VM exit (SDM vol. 3C, 26.4.2),
 * as on the bare processor.
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { Cpu } from '../cpu/cpu.js';
import { CS, DS, ES, FS, GS, SS, TR } from '../cpu/regs.js';
import { run } from '../cpu/run.js';
import { loadImage } from '../platform/loaders/index.js';
import { vmConfig } from './config.js';
import type { ExitRecord } from './record.js';
import { createVm, type Vm } from './vm.js';

const LOAD = 0x100000, MEMORY = 32 << 20;
const GDTR = 0xf00, IDTR = 0xf08, GDT = 0x1000, IDT = 0x1800, TSS_A = 0x2000, TSS_B = 0x2100, TSS_C = 0x2200;
const B_CODE = 0x400, C_CODE = 0x500;
const SEL = { CODE: 0x08, DATA: 0x10, TSS_A: 0x18, TSS_B: 0x20, GATE_B: 0x28, TSS_C: 0x30, TSS_NP: 0x38 } as const;
const NP_CODE = 0x600;
const imm32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];

/** A system descriptor (SDM vol. 3A, 3.4.5): base, limit 67H, present, type. */
function tssDescriptor(base: number, type: number): number[] {
  return [0x67, 0, ...imm32(base).slice(0, 3), 0x80 | type, 0, base >>> 24];
}

/**
 * The guest image, loaded at 100000H in 32-bit flat mode: tables, three tasks.
 * With `notPresent`, task A's CALL goes to a TSS that is not present instead:
 * #NP(38H), before the switch's commit point, through an interrupt gate.
 */
function image(notPresent = false): Uint8Array {
  const m = new Uint8Array(0x2300);
  const put = (at: number, bytes: number[]): void => { m.set(bytes, at); };
  // Task A: its own GDT and IDT, TR = TSS A; CALL through a task gate to B, which IRETs back; JMP to B.
  put(0, [
    0x0f, 0x01, 0x15, ...imm32(LOAD + GDTR),            // lgdt [GDTR]
    0x0f, 0x01, 0x1d, ...imm32(LOAD + IDTR),            // lidt [IDTR]
    0xea, ...imm32(LOAD + 0x15), SEL.CODE, 0,           // jmp far 08:next (CS from this GDT)
    0x66, 0xb8, SEL.DATA, 0,                            // next: mov ax, 10H
    0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0x8e, 0xe0, 0x8e, 0xe8, // mov ds, es, ss, fs, gs
    0xbc, ...imm32(LOAD + 0x8000),                      // mov esp, ...
    0x66, 0xb8, SEL.TSS_A, 0, 0x0f, 0x00, 0xd8,         // mov ax, 18H; ltr ax
    0xb8, ...imm32(0x11111111),                         // mov eax, 11111111H
    0xbf, ...imm32(0x77777777),                         // mov edi, 77777777H
    0x9a, 0, 0, 0, 0, SEL.GATE_B, 0,                    // call far 28:0 (task gate to B)
    0xb9, ...imm32(0x33333333),                         // mov ecx, 33333333H
    0xea, 0, 0, 0, 0, SEL.TSS_B, 0,                     // jmp far 20:0 (TSS B)
  ]);
  // Task B: first run returns (IRET, NT = 1); second run loads DS with a selector past the GDT limit: #GP(1238H).
  put(B_CODE, [0xbb, ...imm32(0x22222222), 0xcf, 0xb8, ...imm32(0x1238), 0x8e, 0xd8]);
  // Task C, the #GP handler task: the error code is on its stack.
  put(C_CODE, [0x5a, 0xbe, ...imm32(0x55555555), 0xfa, 0xf4]); // pop edx; mov esi, 55555555H; cli; hlt
  put(GDTR, [0x37, 0, ...imm32(LOAD + GDT)]);
  put(IDTR, [0xff, 0x07, ...imm32(LOAD + IDT)]);
  put(GDT + SEL.CODE, [0xff, 0xff, 0, 0, 0, 0x9a, 0xcf, 0]);
  put(GDT + SEL.DATA, [0xff, 0xff, 0, 0, 0, 0x92, 0xcf, 0]);
  put(GDT + SEL.TSS_A, tssDescriptor(LOAD + TSS_A, 0x9));
  put(GDT + SEL.TSS_B, tssDescriptor(LOAD + TSS_B, 0x9));
  put(GDT + SEL.GATE_B, [0, 0, SEL.TSS_B, 0, 0, 0x85, 0, 0]);
  put(GDT + SEL.TSS_C, tssDescriptor(LOAD + TSS_C, 0x9));
  put(IDT + 8 * 13, [0, 0, SEL.TSS_C, 0, 0, 0x85, 0, 0]); // #GP: task gate to C
  if (notPresent) {
    put(0x3e, [SEL.TSS_NP]);                                        // call far 38:0
    put(GDTR, [0x3f]);
    put(GDT + SEL.TSS_NP, tssDescriptor(LOAD + TSS_C, 0x9).map((b, k) => (k === 5 ? b & 0x7f : b)));
    put(IDT + 8 * 11, [NP_CODE & 0xff, NP_CODE >>> 8, SEL.CODE, 0, 0, 0x8e, (LOAD >>> 16) & 0xff, LOAD >>> 24]);
    put(NP_CODE, [0x5a, 0x58, 0xfa, 0xf4]);                          // pop edx (error code); pop eax (EIP); cli; hlt
  }
  for (const [tss, eip, esp] of [[TSS_B, B_CODE, 0x9000], [TSS_C, C_CODE, 0xa000]] as const) {
    put(tss + 0x20, imm32(LOAD + eip));
    put(tss + 0x24, imm32(2));
    put(tss + 0x38, imm32(LOAD + esp));
    [SEL.DATA, SEL.CODE, SEL.DATA, SEL.DATA, SEL.DATA, SEL.DATA].forEach((s, k) => put(tss + 0x48 + 4 * k, [s, 0]));
  }
  return m;
}

/** `classes`: instructions by class (src/cpu/insn-class.ts): the emulated ones count as the processor counts them. */
interface Final { gpr: number[]; eflags: number; sel: number[]; ts: number; memory: number[]; instructions: number; classes: number[] }

const SEGS = [ES, CS, SS, DS, FS, GS, TR];
/** The task tables as the run left them: the TSSs and the GDT (busy bits). */
function tables(read32: (pa: number) => number): number[] {
  const out: number[] = [];
  for (let a = GDT; a < GDT + 0x38; a += 4) out.push(read32(LOAD + a));
  for (const t of [TSS_A, TSS_B, TSS_C]) for (let a = t; a < t + 0x68; a += 4) out.push(read32(LOAD + a));
  return out;
}

function bare(notPresent = false): Final {
  const cpu = new Cpu({ memorySize: MEMORY });
  cpu.deliverExceptions = true;
  cpu.classCounts = new Float64Array(4);
  loadImage(cpu, image(notPresent), { format: 'flat', mode: '32', load: LOAD, memorySize: MEMORY });
  expect(run(cpu, 1000)).toEqual({ kind: 'halt' });
  return {
    gpr: Array.from({ length: 8 }, (_, n) => cpu.gpr[2 * n]! >>> 0), eflags: cpu.rflags >>> 0,
    sel: SEGS.map((s) => cpu.segSel[s]!), ts: cpu.cr0 & 8,
    memory: tables((pa) => cpu.memory.read32(pa) >>> 0), instructions: cpu.insnCount, classes: Array.from(cpu.classCounts),
  };
}

function underHypervisor(notPresent = false): { final: Final; exits: ExitRecord[]; vm: Vm } {
  const vm = createVm(vmConfig({ memory: MEMORY }));
  vm.load(image(notPresent), { format: 'flat', mode: '32', load: LOAD });
  vm.cpu.classCounts = new Float64Array(4);
  const exits: ExitRecord[] = [];
  for (;;) {
    const e = vm.runUntilExit(10_000);
    if ('kind' in e) throw new Error(`stopped: ${JSON.stringify(e)}`);
    exits.push(e);
    const r = vm.handle(e);
    if (r !== 'resume') { expect(r).toEqual({ kind: 'halt' }); break; }
    expect(vm.resume()).toBeNull();
  }
  const g = vm.guest, mask = g.read(Field.CR0_GUEST_HOST_MASK);
  const cr0 = (g.read(Field.GUEST_CR0) & ~mask) | (g.read(Field.CR0_READ_SHADOW) & mask);
  const selField = [Field.GUEST_ES_SELECTOR, Field.GUEST_CS_SELECTOR, Field.GUEST_SS_SELECTOR, Field.GUEST_DS_SELECTOR,
    Field.GUEST_FS_SELECTOR, Field.GUEST_GS_SELECTOR, Field.GUEST_TR_SELECTOR];
  return {
    vm, exits,
    final: {
      gpr: Array.from({ length: 8 }, (_, n) => Number(g.reg(n) & 0xffffffffn)), eflags: g.rflags,
      sel: selField.map((f) => g.read(f)), ts: cr0 & 8,
      memory: tables((pa) => vm.cpu.memory.read32(pa) >>> 0), instructions: vm.instructions,
      classes: Array.from(vm.cpu.classCounts),
    },
  };
}

describe('TASK_SWITCH exits (SDM vol. 3C 26.4.2) emulated by the hypervisor', () => {
  it('CALL through a task gate, IRET with NT, JMP to a TSS and #GP through a task gate: the same final state as on the bare processor', () => {
    const want = bare();
    // The bare run went where the test means it to: task C (its registers from its TSS) with the #GP
    // error code popped into EDX, linked to B; B saved its EBX (TSS offset 34H) and the EIP of the MOV DS
    // that faulted (20H); A saved the ECX it set before its JMP (2CH).
    expect(want.sel[6]).toBe(SEL.TSS_C);
    expect(want.gpr.slice(0, 7)).toEqual([0, 0, 0x1238, 0, LOAD + 0xa000, 0, 0x55555555]);
    const word = (tss: number, at: number): number => want.memory[14 + (tss - TSS_A) / 0x100 * 26 + at / 4]!;
    expect([word(TSS_C, 0), word(TSS_B, 0x34), word(TSS_A, 0x2c), word(TSS_B, 0x20)]).toEqual([SEL.TSS_B, 0x22222222, 0x33333333, LOAD + B_CODE + 11]);
    const { final, exits } = underHypervisor();
    const switches = exits.filter((e) => e.reason === ExitReason.TASK_SWITCH);
    // Qualification (28.2.1): the TSS selector and the source: CALL (0), IRET (1), JMP (2), task gate in the IDT (3).
    expect(switches.map((e) => Number(e.qualification))).toEqual([
      SEL.TSS_B, SEL.TSS_A | (1 << 30), (SEL.TSS_B | (2 << 30)) >>> 0, (SEL.TSS_C | (3 << 30)) >>> 0,
    ]);
    expect(switches.map((e) => e.length)).toEqual([7, 1, 7, 0]);
    expect(switches[3]!.idtVectoring).toEqual({ vector: 13, type: 3, errorCode: 0x1238 });
    expect(final).toEqual(want);
  });

  it('a fault before the commit point (SDM vol. 3A 8.3 step 4, table 8-1: #NP for a TSS not present) goes to the guest with RIP at the CALL, nothing switched', () => {
    const want = bare(true);
    expect(want.gpr[2]).toBe(SEL.TSS_NP);                  // EDX: the error code
    expect(want.gpr[0]).toBe(LOAD + 0x39);                 // EAX: the EIP pushed, the CALL's
    expect(want.sel[6]).toBe(SEL.TSS_A);
    const { final, exits } = underHypervisor(true);
    expect(exits.filter((e) => e.reason === ExitReason.TASK_SWITCH).map((e) => Number(e.qualification))).toEqual([SEL.TSS_NP]);
    expect(final).toEqual(want);
  });
});
