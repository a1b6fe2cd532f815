/**
 * MONITOR, MWAIT, RDRAND, RDSEED, XSAVES and XRSTORS in non-root operation
 * (SDM vol. 3C, 25.6.2 "Processor-Based VM-Execution Controls", 26.1.1
 * "Relative Priority of Faults and VM Exits", 26.1.3 "Instructions That Cause
 * VM Exits Conditionally", 26.3 "Changes to Instruction Behavior in VMX
 * Non-Root Operation", 28.2.1 exit qualification, 28.2.5 VM-exit instruction
 * information).
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import type { Cpu } from '../../src/cpu/cpu.js';
import { capabilityMsr, SKYLAKE_VMX } from '../../src/vmx/capabilities.js';
import { GUEST_CODE, runInGuest, SCRATCH_PAGES } from '../../src/vmx/testing.js';
import type { Vmcs } from '../../src/vmx/vmcs.js';

const VMCALL = [0x0f, 0x01, 0xc1];
const MONITOR = [0x0f, 0x01, 0xc8], MWAIT = [0x0f, 0x01, 0xc9];
const PROC = Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
const SECONDARY = Field.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
const P_MWAIT = 1 << 10, P_MONITOR = 1 << 29;
const S_RDRAND = 1 << 11, S_RDSEED = 1 << 16, S_XSAVES = 1 << 20;
const CR4_OSXSAVE = 1 << 18;
const DATA = SCRATCH_PAGES; // 64-byte aligned, mapped linear = physical in the guest

const on = (field: number, bits: number) => (v: Vmcs): void => v.set(field, v.lo(field) | bits);
/** The guest's exception handler exited with VMCALL and AL = the vector (src/vmx/testing.ts). */
const vectorOf = (cpu: Cpu): number => cpu.gpr[0]! & 0xff;

describe('the capability MSRs offer the controls (25.6.2; appendix A.3)', () => {
  it('MWAIT exiting (10) and MONITOR exiting (29) may be 1; so may RDRAND exiting (11), RDSEED exiting (16), enable XSAVES/XRSTORS (20)', () => {
    const proc = capabilityMsr(SKYLAKE_VMX, 0x48e)![1] >>> 0; // IA32_VMX_TRUE_PROCBASED_CTLS, allowed 1-settings
    expect(proc & (P_MWAIT | P_MONITOR)).toBe((P_MWAIT | P_MONITOR) >>> 0);
    const secondary = capabilityMsr(SKYLAKE_VMX, 0x48b)![1] >>> 0; // IA32_VMX_PROCBASED_CTLS2
    expect(secondary & (S_RDRAND | S_RDSEED | S_XSAVES)).toBe(S_RDRAND | S_RDSEED | S_XSAVES);
  });
});

describe('MONITOR and MWAIT (26.1.3; 28.2.1: MWAIT\'s qualification tells whether the monitor is armed)', () => {
  const regs = (rcx: bigint) => (_v: Vmcs, cpu: Cpu): void => { cpu.setReg64(0, BigInt(DATA)); cpu.setReg64(1, rcx); };

  it('"MONITOR exiting": an exit with qualification 0, the instruction\'s length, guest RIP at the MONITOR; nothing armed', () => {
    const r = runInGuest([0x90, ...MONITOR, ...VMCALL], (v, cpu) => { on(PROC, P_MONITOR)(v); regs(0n)(v, cpu); });
    expect(r.reason).toBe(ExitReason.MONITOR);
    expect(r.qualification).toBe(0n);
    expect(r.vmcs.lo(Field.VM_EXIT_INSTRUCTION_LENGTH)).toBe(3);
    expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE + 1);
    expect(r.cpu.monitorArmed).toBe(false);
  });

  it('without it MONITOR arms the monitor in the guest', () => {
    const r = runInGuest([...MONITOR, ...VMCALL], regs(0n));
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.monitorArmed).toBe(true);
    expect(r.cpu.monitorLo).toBe(DATA);
  });

  it('the exit comes before the #GP of an ECX extension; without the control the guest gets the #GP', () => {
    expect(runInGuest(MONITOR, (v, cpu) => { on(PROC, P_MONITOR)(v); regs(1n)(v, cpu); }).reason).toBe(ExitReason.MONITOR);
    const fault = runInGuest(MONITOR, regs(1n));
    expect([fault.reason, vectorOf(fault.cpu)]).toEqual([ExitReason.VMCALL, 13]);
  });

  it('#UD comes before the exit (26.1.1): with IA32_MISC_ENABLE[18] = 0 the guest gets #UD', () => {
    const r = runInGuest(MONITOR, (v, cpu) => { on(PROC, P_MONITOR)(v); regs(0n)(v, cpu); cpu.msrs.miscEnableLo &= ~(1 << 18); });
    expect([r.reason, vectorOf(r.cpu)]).toEqual([ExitReason.VMCALL, 6]);
  });

  it('"MWAIT exiting": qualification 0 with the monitor unarmed, 1 after a MONITOR', () => {
    const cold = runInGuest([...MWAIT, ...VMCALL], (v, cpu) => { on(PROC, P_MWAIT)(v); regs(0n)(v, cpu); });
    expect(cold.reason).toBe(ExitReason.MWAIT);
    expect(cold.qualification).toBe(0n);
    expect(cold.vmcs.lo(Field.VM_EXIT_INSTRUCTION_LENGTH)).toBe(3);
    expect(cold.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE);
    const armed = runInGuest([...MONITOR, ...MWAIT, ...VMCALL], (v, cpu) => { on(PROC, P_MWAIT)(v); regs(0n)(v, cpu); });
    expect(armed.reason).toBe(ExitReason.MWAIT);
    expect(armed.qualification).toBe(1n);
    expect(armed.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE + 3);
  });

  it('MWAIT exits before the #GP of a reserved ECX bit; without the control it returns at once', () => {
    expect(runInGuest(MWAIT, (v, cpu) => { on(PROC, P_MWAIT)(v); regs(2n)(v, cpu); }).reason).toBe(ExitReason.MWAIT);
    const r = runInGuest([...MONITOR, ...MWAIT, ...VMCALL], regs(0n));
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.monitorArmed).toBe(false);
  });
});

describe('RDRAND and RDSEED (26.1.3; 28.2.5: destination register and operand size)', () => {
  const cases: [string, number[], number, number, number][] = [
    // [name, code, control, exit reason, instruction information]
    ['rdrand r9d', [0x41, 0x0f, 0xc7, 0xf1], S_RDRAND, ExitReason.RDRAND, (9 << 3) | (1 << 11)],
    ['rdrand bx', [0x66, 0x0f, 0xc7, 0xf3], S_RDRAND, ExitReason.RDRAND, 3 << 3],
    ['rdrand rax', [0x48, 0x0f, 0xc7, 0xf0], S_RDRAND, ExitReason.RDRAND, 2 << 11],
    ['rdseed edx', [0x0f, 0xc7, 0xfa], S_RDSEED, ExitReason.RDSEED, (2 << 3) | (1 << 11)],
    ['rdseed r15', [0x49, 0x0f, 0xc7, 0xff], S_RDSEED, ExitReason.RDSEED, (15 << 3) | (2 << 11)],
  ];

  for (const [name, code, control, reason, info] of cases) {
    it(`${name}: exits with information 0x${info.toString(16)}, its length, RIP unchanged`, () => {
      const r = runInGuest([...code, ...VMCALL], on(SECONDARY, control));
      expect(r.reason).toBe(reason);
      expect(r.vmcs.lo(Field.VM_EXIT_INSTRUCTION_INFORMATION)).toBe(info);
      expect(r.vmcs.lo(Field.VM_EXIT_INSTRUCTION_LENGTH)).toBe(code.length);
      expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE);
      expect(r.qualification).toBe(0n);
    });
  }

  it('each control intercepts only its instruction; without them both run (CF = 1)', () => {
    const other = runInGuest([0x0f, 0xc7, 0xf8, ...VMCALL], on(SECONDARY, S_RDRAND)); // RDSEED with RDRAND exiting
    expect(other.reason).toBe(ExitReason.VMCALL);
    expect(other.vmcs.lo(Field.GUEST_RFLAGS) & 1).toBe(1);
    expect(runInGuest([0x0f, 0xc7, 0xf0, ...VMCALL], on(SECONDARY, S_RDSEED)).reason).toBe(ExitReason.VMCALL);
  });
});

describe('XSAVES and XRSTORS (26.3: #UD without "enable XSAVES/XRSTORS"; 26.1.3: the XSS-exiting bitmap)', () => {
  const XSAVES_RSI = [0x0f, 0xc7, 0x6e, 0x40], XRSTORS_RSI = [0x0f, 0xc7, 0x5e, 0x40]; // [rsi+40H]
  /** CR4.OSXSAVE in the guest: skylake announces XSAVE, so its CR4_FIXED1 allows it (A.8). */
  const caps = SKYLAKE_VMX;
  const guest = (controls: number, bitmap: number, more?: (cpu: Cpu) => void) => (v: Vmcs, cpu: Cpu): void => {
    on(SECONDARY, controls)(v);
    v.set(Field.GUEST_CR4, v.lo(Field.GUEST_CR4) | CR4_OSXSAVE);
    v.set(Field.XSS_EXITING_BITMAP, bitmap, bitmap);
    cpu.msrs.xcr0 = 3;
    cpu.setReg64(0, 0xffff_ffff_ffff_ffffn); // EDX:EAX: every component
    cpu.setReg64(2, 0xffff_ffff_ffff_ffffn);
    cpu.setReg64(6, BigInt(DATA - 0x40));
    more?.(cpu);
  };

  it('without the control both raise #UD in the guest', () => {
    for (const code of [XSAVES_RSI, XRSTORS_RSI]) {
      const r = runInGuest([...code, ...VMCALL], guest(0, -1), { caps });
      expect([r.reason, vectorOf(r.cpu)]).toEqual([ExitReason.VMCALL, 6]);
    }
  });

  it('with it and the whole bitmap set they do not exit: IA32_XSS is 0, so EDX:EAX AND IA32_XSS AND the bitmap is 0', () => {
    const r = runInGuest([...XSAVES_RSI, ...XRSTORS_RSI, ...VMCALL], guest(S_XSAVES, -1), { caps });
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.memory.read32(DATA + 524) >>> 0).toBe(0x80000000); // XSAVES wrote XCOMP_BV = RFBM | 2^63
    expect(r.cpu.memory.read32(DATA + 520)).toBe(3);
  });

  it('the rule itself, with an IA32_XSS bit forced (the model never sets one): an exit only where all three share a bit', () => {
    const xss = (cpu: Cpu): void => { cpu.msrs.xss = 1 << 8; };
    const exits = runInGuest([...XSAVES_RSI, ...VMCALL], guest(S_XSAVES, 1 << 8, xss), { caps });
    expect(exits.reason).toBe(ExitReason.XSAVES);
    expect(exits.qualification).toBe(0x40n); // the displacement (28.2.1)
    // Memory-operand format: address size 64 (2 << 7), segment DS (3 << 15), no index (bit 22), base RSI (6 << 23).
    expect(exits.vmcs.lo(Field.VM_EXIT_INSTRUCTION_INFORMATION)).toBe((2 << 7) | (3 << 15) | (1 << 22) | (6 << 23));
    expect(exits.vmcs.lo(Field.VM_EXIT_INSTRUCTION_LENGTH)).toBe(4);
    expect(exits.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE);
    const restores = runInGuest([...XRSTORS_RSI, ...VMCALL], guest(S_XSAVES, 1 << 8, xss), { caps });
    expect(restores.reason).toBe(ExitReason.XRSTORS);
    // A bit the bitmap lacks, or one EDX:EAX lacks: no exit.
    expect(runInGuest([...XSAVES_RSI, ...VMCALL], guest(S_XSAVES, 1 << 9, xss), { caps }).reason).toBe(ExitReason.VMCALL);
    const eax = (cpu: Cpu): void => { xss(cpu); cpu.setReg64(0, 3n); };
    expect(runInGuest([...XSAVES_RSI, ...VMCALL], guest(S_XSAVES, 1 << 8, eax), { caps }).reason).toBe(ExitReason.VMCALL);
  });
});
