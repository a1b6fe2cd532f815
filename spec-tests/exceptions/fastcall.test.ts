/** SYSCALL/SYSRET, SYSENTER/SYSEXIT and SWAPGS (SDM vol. 2, each instruction's Operation). */
import { describe, expect, it } from 'vitest';
import { EFER_SCE } from '../../src/cpu/cpu.js';
import { run } from '../../src/cpu/run.js';
import { CS, GS, SS } from '../../src/cpu/regs.js';
import { CODE, load, longModeMachine } from '../machine.js';

const HLT = 0xf4;

describe('SYSCALL and SYSRET (64-bit mode)', () => {
  it('SYSCALL saves RIP in RCX and RFLAGS in R11, masks RFLAGS with FMASK, enters CPL 0 at LSTAR', () => {
    const cpu = longModeMachine();
    cpu.efer |= EFER_SCE;
    cpu.msrs.starHi = (0x23 << 16) | 0x08;      // SYSRET base 0x23, SYSCALL CS 0x08
    cpu.msrs.lstarLo = 0x4000; cpu.msrs.fmask = 0x200; // clear IF
    load(cpu, 0x4000, [HLT]);
    load(cpu, CODE, [0x0f, 0x05]);
    cpu.rflags = 0x246;
    run(cpu, 5);
    expect(cpu.rip).toBe(0x4001n);
    expect(cpu.reg64(1)).toBe(BigInt(CODE + 2));
    expect(cpu.reg64(11)).toBe(0x246n);
    expect(cpu.rflags & 0x200).toBe(0);
    expect(cpu.segSel[CS]).toBe(0x08);
    expect(cpu.segSel[SS]).toBe(0x10);
    expect(cpu.cpl).toBe(0);
  });

  it('SYSRET with REX.W returns to 64-bit CPL 3 at RCX with RFLAGS from R11; CS = STAR[63:48] + 16 | 3', () => {
    const cpu = longModeMachine();
    cpu.efer |= EFER_SCE;
    cpu.msrs.starHi = (0x1b << 16) | 0x08;
    cpu.setReg64(1, 0x5000n);
    cpu.setReg64(11, 0x202n);
    load(cpu, 0x5000, [0x90]);
    load(cpu, CODE, [0x48, 0x0f, 0x07]);
    run(cpu, 2);
    expect(cpu.rip).toBe(0x5001n);
    expect(cpu.cpl).toBe(3);
    expect(cpu.segSel[CS]).toBe(0x2b);
    expect(cpu.segSel[SS]).toBe(0x23);
    expect(cpu.rflags).toBe(0x202);
    expect(cpu.codeSize).toBe(8);
  });

  it('SYSRET at CPL 3 raises #GP(0); SYSCALL with EFER.SCE = 0 raises #UD', () => {
    const a = longModeMachine();
    a.deliverExceptions = false;
    a.efer |= EFER_SCE;
    a.cpl = 3;
    load(a, CODE, [0x48, 0x0f, 0x07]);
    expect(run(a, 2)).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
    const b = longModeMachine();
    b.deliverExceptions = false;
    b.efer &= ~EFER_SCE;
    load(b, CODE, [0x0f, 0x05]);
    expect(run(b, 2)).toEqual({ kind: 'exception', vector: 6, errorCode: null });
  });
});

describe('SYSENTER, SYSEXIT and SWAPGS', () => {
  it('SYSENTER loads CS from SYSENTER_CS, SS = CS + 8, RSP and RIP from the MSRs; SYSEXIT returns to CPL 3', () => {
    const cpu = longModeMachine();
    cpu.msrs.sysenterCsLo = 0x08;
    cpu.msrs.sysenterEspLo = 0x7000; cpu.msrs.sysenterEipLo = 0x4000;
    load(cpu, 0x4000, [0x48, 0x0f, 0x35]); // sysexit (64-bit)
    cpu.setReg64(2, 0x6000n); cpu.setReg64(1, 0x8000n);
    load(cpu, CODE, [0x0f, 0x34]);
    expect(run(cpu, 2).kind).toBe('budget'); // SYSENTER, SYSEXIT
    expect(cpu.rip).toBe(0x6000n);
    expect(cpu.reg64(4)).toBe(0x8000n);
    expect(cpu.segSel[CS]).toBe(0x08 + 32 | 3);
    expect(cpu.segSel[SS]).toBe(0x08 + 40 | 3);
    expect(cpu.cpl).toBe(3);
  });

  it('SWAPGS exchanges GS.base and IA32_KERNEL_GS_BASE', () => {
    const cpu = longModeMachine();
    cpu.segBase[2 * GS] = 0x1111; cpu.msrs.kernelGsBaseLo = 0x2222;
    load(cpu, CODE, [0x0f, 0x01, 0xf8, HLT]);
    run(cpu, 5);
    expect(cpu.segBase[2 * GS]).toBe(0x2222);
    expect(cpu.msrs.kernelGsBaseLo).toBe(0x1111);
  });
});
