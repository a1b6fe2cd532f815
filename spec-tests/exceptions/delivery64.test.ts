/**
 * Exception and interrupt delivery in IA-32e mode: SDM vol. 3A 6.14 "Exception
 * and Interrupt Handling in 64-bit Mode", 6.15 "Exception and Interrupt
 * Reference" (error codes, fault vs trap RIP), 6.15 table 6-5 (double faults).
 */
import { describe, expect, it } from 'vitest';
import { run } from '../../src/cpu/run.js';
import { CS, IF, RSP, SS } from '../../src/cpu/regs.js';
import { CODE, gate64, load, longModeMachine, read64, SEL, STACK, TSS, write32 } from '../machine.js';

const HANDLER = 0x3000, DF_HANDLER = 0x3800;
const HLT = 0xf4;

describe('SDM 6.14 (64-bit mode): delivery through a 16-byte IDT gate', () => {
  it('#DE is a fault: the handler sees the faulting RIP, CS, RFLAGS, RSP and SS on an aligned stack (6.14.2)', () => {
    const cpu = longModeMachine();
    gate64(cpu, 0, HANDLER);
    load(cpu, HANDLER, [HLT]);
    load(cpu, CODE, [0xf7, 0xf1]); // div ecx
    cpu.gpr[2 * 4] = STACK - 8; // misaligned: the processor aligns to 16 before pushing
    cpu.rflags = 0x202;
    const stop = run(cpu, 10);
    expect(stop.kind).toBe('halt');
    expect(cpu.rip).toBe(BigInt(HANDLER + 1));
    const rsp = cpu.gpr[2 * RSP]! >>> 0;
    expect(rsp).toBe(STACK - 16 - 40);
    expect(read64(cpu, rsp)).toBe(BigInt(CODE));        // RIP of the faulting DIV
    expect(read64(cpu, rsp + 8)).toBe(BigInt(SEL.CODE64));
    expect(read64(cpu, rsp + 16)).toBe(0x202n);         // RFLAGS with IF
    expect(read64(cpu, rsp + 24)).toBe(BigInt(STACK - 8));
    expect(read64(cpu, rsp + 32)).toBe(BigInt(SEL.DATA));
    expect(cpu.rflags & IF).toBe(0);                    // an interrupt gate clears IF
  });

  it('#GP pushes its error code; a trap gate leaves IF set (6.12.1.3, 6.13)', () => {
    const cpu = longModeMachine();
    gate64(cpu, 13, HANDLER, { type: 0xf });
    load(cpu, HANDLER, [HLT]);
    // mov ax, 0x40; mov ds, ax — selector 0x40 lies beyond the GDT limit: #GP(0x40)
    load(cpu, CODE, [0x66, 0xb8, 0x40, 0x00, 0x8e, 0xd8]);
    cpu.rflags = 0x202;
    run(cpu, 10);
    const rsp = cpu.gpr[2 * RSP]! >>> 0;
    expect(read64(cpu, rsp)).toBe(0x40n);
    expect(read64(cpu, rsp + 8)).toBe(BigInt(CODE + 4));
    expect(cpu.rflags & IF).toBe(IF);
  });

  it('INT3 is a trap: the saved RIP follows the instruction (6.5)', () => {
    const cpu = longModeMachine();
    gate64(cpu, 3, HANDLER, { dpl: 3 });
    load(cpu, HANDLER, [HLT]);
    load(cpu, CODE, [0x90, 0xcc]);
    run(cpu, 10);
    expect(read64(cpu, cpu.gpr[2 * RSP]! >>> 0)).toBe(BigInt(CODE + 2));
    expect(cpu.insnCount).toBe(3);
  });

  it('IRETQ returns to the interrupted code (vol. 2, IRET)', () => {
    const cpu = longModeMachine();
    gate64(cpu, 0x80, HANDLER);
    load(cpu, HANDLER, [0x48, 0xff, 0xc3, 0x48, 0xcf]); // inc rbx; iretq
    load(cpu, CODE, [0xcd, 0x80, 0x48, 0xff, 0xc3, HLT]); // int 0x80; inc rbx; hlt
    const stop = run(cpu, 20);
    expect(stop.kind).toBe('halt');
    expect(cpu.reg64(3)).toBe(2n);
    expect(cpu.gpr[2 * RSP]! >>> 0).toBe(STACK);
    expect(cpu.segSel[CS]).toBe(SEL.CODE64);
  });

  it('a gate with IST = 1 switches to TSS.IST1 (6.14.5)', () => {
    const cpu = longModeMachine();
    gate64(cpu, 2, HANDLER, { ist: 1 });
    load(cpu, HANDLER, [HLT]);
    write32(cpu, TSS + 0x24, 0x8800); // IST1
    load(cpu, CODE, [0xcd, 0x02]);
    run(cpu, 10);
    expect(cpu.gpr[2 * RSP]! >>> 0).toBe(0x8800 - 40);
  });

  it('INT n from CPL 3 through a DPL-0 gate raises #GP(vector << 3 | IDT) at the INT (6.12.1.1, 6.13; vol. 2 INT n)', () => {
    const cpu = longModeMachine();
    gate64(cpu, 0x80, HANDLER, { dpl: 0 });
    gate64(cpu, 13, 0x3400);
    load(cpu, 0x3400, [HLT]);
    write32(cpu, TSS + 4, 0x8000); // RSP0
    cpu.cpl = 3;
    cpu.setSegment(CS, SEL.CODE64_USER, 0, 0, 0xffffffff, cpu.segAttr[CS]! | (3 << 5));
    cpu.setSegment(SS, SEL.DATA_USER, 0, 0, 0xffffffff, cpu.segAttr[SS]! | (3 << 5));
    load(cpu, CODE, [0xcd, 0x80]);
    run(cpu, 10);
    expect(cpu.rip).toBe(0x3401n);
    expect(cpu.cpl).toBe(0);
    const rsp = cpu.gpr[2 * RSP]! >>> 0;
    expect(rsp).toBe(0x8000 - 48);                         // RSP0, with error code
    // Error code: the vector in the index field, IDT = 1, not EXT (the same with 16-byte gates, as Bochs
    // reports too: spec-tests/oracle); the fault belongs to the INT, whose address is the saved RIP.
    expect(read64(cpu, rsp)).toBe(BigInt(0x80 * 8 + 2));
    expect(read64(cpu, rsp + 8)).toBe(BigInt(CODE));
    expect(read64(cpu, rsp + 16)).toBe(BigInt(SEL.CODE64_USER));
    expect(read64(cpu, rsp + 40)).toBe(BigInt(SEL.DATA_USER));
    expect(cpu.segSel[SS]).toBe(0);                        // a null SS with RPL 0 (6.14.4)
  });

  it('a contributory fault while delivering a contributory fault becomes #DF (table 6-5)', () => {
    const cpu = longModeMachine();
    gate64(cpu, 0, HANDLER, { present: false });  // #DE's gate is not present: #NP, contributory
    gate64(cpu, 8, DF_HANDLER);
    load(cpu, DF_HANDLER, [HLT]);
    load(cpu, CODE, [0xf7, 0xf1]);
    run(cpu, 10);
    expect(cpu.rip).toBe(BigInt(DF_HANDLER + 1));
    expect(read64(cpu, cpu.gpr[2 * RSP]! >>> 0)).toBe(0n); // #DF's error code is 0
  });

  it('a fault while delivering #DF shuts the processor down (triple fault)', () => {
    const cpu = longModeMachine();
    cpu.idtrLimit = 0; // every gate lies outside the IDT
    load(cpu, CODE, [0xf7, 0xf1]);
    expect(run(cpu, 10)).toEqual({ kind: 'shutdown' });
  });

  it('a benign exception during delivery is delivered serially, not as #DF (table 6-5)', () => {
    const cpu = longModeMachine();
    // INT3 (benign) through a gate that is not present: #NP, delivered through vector 11.
    gate64(cpu, 3, HANDLER, { present: false, dpl: 3 });
    gate64(cpu, 11, DF_HANDLER);
    load(cpu, DF_HANDLER, [HLT]);
    load(cpu, CODE, [0xcc]);
    run(cpu, 10);
    expect(cpu.rip).toBe(BigInt(DF_HANDLER + 1));
    expect(read64(cpu, cpu.gpr[2 * RSP]! >>> 0)).toBe(BigInt(3 * 8 + 2)); // #NP(vector 3, IDT)
    expect(read64(cpu, (cpu.gpr[2 * RSP]! >>> 0) + 8)).toBe(BigInt(CODE)); // reported at the INT3
  });
});

describe('SDM 4.6: the processor reads the IDT, GDT and TSS as implicit supervisor accesses', () => {
  it('INT 0x80 from CPL 3 is delivered although the tables, the kernel stack and the handler are on supervisor pages', () => {
    const cpu = longModeMachine();
    // 4-level paging: the first 2 MiB supervisor-only (U = 0), the next 2 MiB user (U = 1).
    const PML4 = 0x20000, PDPT = 0x21000, PD = 0x22000;
    write32(cpu, PML4, PDPT | 0x7);
    write32(cpu, PDPT, PD | 0x7);
    write32(cpu, PD, 0x000000 | 0x83);      // present, writable, 2 MiB, supervisor
    write32(cpu, PD + 8, 0x200000 | 0x87);  // present, writable, 2 MiB, user
    cpu.cr3Lo = PML4;
    cpu.cr4 |= 1 << 5;
    cpu.cr0 |= 0x80000001;
    cpu.mmu.flush();
    gate64(cpu, 0x80, HANDLER, { dpl: 3 });
    load(cpu, HANDLER, [HLT]);
    write32(cpu, TSS + 4, 0x8000); // RSP0
    const USER = 0x200000;
    load(cpu, USER, [0xcd, 0x80]);
    cpu.ripLo = USER;
    cpu.gpr[2 * RSP] = USER + 0x1000;
    cpu.cpl = 3;
    cpu.setSegment(CS, SEL.CODE64_USER, 0, 0, 0xffffffff, cpu.segAttr[CS]! | (3 << 5));
    cpu.setSegment(SS, SEL.DATA_USER, 0, 0, 0xffffffff, cpu.segAttr[SS]! | (3 << 5));
    expect(run(cpu, 10).kind).toBe('halt');
    expect(cpu.rip).toBe(BigInt(HANDLER + 1));
    expect(cpu.cpl).toBe(0);
    const rsp = cpu.gpr[2 * RSP]! >>> 0;
    expect(rsp).toBe(0x8000 - 40);
    expect(read64(cpu, rsp)).toBe(BigInt(USER + 2));
    expect(read64(cpu, rsp + 8)).toBe(BigInt(SEL.CODE64_USER));
    expect(read64(cpu, rsp + 24)).toBe(BigInt(USER + 0x1000));
  });
});

describe('SDM 6.7.1: NMI handling', () => {
  it('an NMI is taken with IF = 0, blocks the next NMI until IRET, then the second is taken', () => {
    const cpu = longModeMachine();
    let pending = 1;
    cpu.interrupts = {
      hasInterrupt: () => false, acknowledge: () => -1,
      hasNmi: () => pending > 0, takeNmi: () => { pending--; },
    };
    gate64(cpu, 2, HANDLER);
    // handler: inc rbx; (a second NMI arrives now, blocked); nop; iretq
    load(cpu, HANDLER, [0x48, 0xff, 0xc3, 0x90, 0x48, 0xcf]);
    load(cpu, CODE, [0x90, 0x90, 0x90, HLT]);
    cpu.rflags = 0x2; // IF = 0: NMIs are not maskable
    run(cpu, 2);      // delivers the NMI, runs "inc rbx" and "nop" inside the handler
    expect(cpu.reg64(3)).toBe(1n);
    expect(cpu.nmiBlocked).toBe(true);
    pending = 1;      // a second NMI while the first is being handled
    run(cpu, 1);      // IRETQ: the second NMI must wait for it
    expect(cpu.nmiBlocked).toBe(false);
    run(cpu, 1);      // now the second NMI is delivered and its handler's first instruction runs
    expect(cpu.reg64(3)).toBe(2n);
  });
});

describe('SDM vol. 3B, 18.3.1.4: single-step trap', () => {
  it('with RFLAGS.TF set, #DB follows the first instruction, with DR6.BS set and RIP after it', () => {
    const cpu = longModeMachine();
    gate64(cpu, 1, HANDLER);
    load(cpu, HANDLER, [HLT]);
    load(cpu, CODE, [0x48, 0xff, 0xc3, 0x48, 0xff, 0xc3, HLT]); // inc rbx; inc rbx
    cpu.rflags = 0x102; // TF
    run(cpu, 10);
    expect(cpu.reg64(3)).toBe(1n);                             // only the first INC ran
    expect(cpu.rip).toBe(BigInt(HANDLER + 1));
    expect(read64(cpu, cpu.gpr[2 * RSP]! >>> 0)).toBe(BigInt(CODE + 3));
    expect(cpu.dr6 & (1 << 14)).toBe(1 << 14);
    expect(cpu.rflags & 0x100).toBe(0);                        // the handler runs with TF clear
  });

  it('the instruction that sets TF is not followed by a trap (TF is sampled at its start)', () => {
    const cpu = longModeMachine();
    gate64(cpu, 1, HANDLER);
    load(cpu, HANDLER, [HLT]);
    // pushfq; or qword [rsp], 0x100; popfq (sets TF); inc rbx (then #DB)
    load(cpu, CODE, [0x9c, 0x48, 0x81, 0x0c, 0x24, 0x00, 0x01, 0x00, 0x00, 0x9d, 0x48, 0xff, 0xc3, 0x48, 0xff, 0xc3]);
    run(cpu, 20);
    expect(cpu.reg64(3)).toBe(1n);
    expect(read64(cpu, cpu.gpr[2 * RSP]! >>> 0)).toBe(BigInt(CODE + 13));
  });
});

describe('DESIGN: an instruction budget bounds every run', () => {
  it('a #UD handler that is itself UD2 loops on events, yet the run ends at the budget', () => {
    const cpu = longModeMachine();
    // IST1 resets RSP on every delivery, so the loop never runs out of stack: it is endless.
    gate64(cpu, 6, HANDLER, { ist: 1 });
    write32(cpu, TSS + 0x24, 0x8800);
    load(cpu, HANDLER, [0x0f, 0x0b]);
    load(cpu, CODE, [0x0f, 0x0b]);
    expect(run(cpu, 1000)).toEqual({ kind: 'budget' });
    expect(cpu.insnCount).toBe(0);
  });
});
