/**
 * SDM vol. 3C, 27.2.1 "Checks on VMX Controls": VM-execution (27.2.1.1),
 * VM-exit (27.2.1.2) and VM-entry (27.2.1.3) control fields. A failure is
 * VMfailValid with VM-instruction error 7. Each test breaks one rule of a
 * valid VMCS and expects exactly that rule to be reported.
 */
import { describe, expect, it } from 'vitest';
import { checkControls } from '../../src/vmx/entry-checks.js';
import { validVmcs } from '../../src/vmx/valid-vmcs.js';
import type { Vmcs } from '../../src/vmx/vmcs.js';
import { bit, caps, clearField, cpu, everything, expectFailure, F, firstFailure, notOffered, orField, vmcs } from './fixture.js';

const PIN = F.PIN_BASED_VM_EXECUTION_CONTROLS, PROC = F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
const SEC = F.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, EXIT = F.PRIMARY_VM_EXIT_CONTROLS;
const ENTRY = F.VM_ENTRY_CONTROLS, INFO = F.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD;
const controls = (check: string, section = '27.2.1.1') => ({ kind: 'controls' as const, check, section });
/** A valid VMCS checked against capabilities that offer every control. */
const expectWide = (mutate: (v: Vmcs) => void, check: string, section = '27.2.1.1') =>
  expectFailure(vmcs(mutate), controls(check, section), everything);
const passesWide = (mutate: (v: Vmcs) => void) => expect(firstFailure(vmcs(mutate), everything)).toBeNull();

/** Valid EPTP: write-back, 4-level walk (bits 5:3 = 3), PML4 at 300000H. */
const EPTP = 0x300000 | (3 << 3) | 6;

describe('SDM 27.2.1 (checks on VMX controls): the valid VMCS', () => {
  it('27.2: validVmcs passes the control checks, for a 64-bit and a 32-bit guest', () => {
    expect(checkControls(cpu, validVmcs(caps), caps)).toBeNull();
    expect(checkControls(cpu, validVmcs(caps, { guest: 'protected' }), caps)).toBeNull();
  });
});

describe('SDM 27.2.1.1 (VM-execution control fields)', () => {
  it('27.2.1.1: a must-be-1 pin-based bit (default1 bit 1) cleared', () => {
    const f = expectFailure(vmcs((v) => clearField(v, PIN, bit(1))), controls('pin-based controls reserved bits'));
    expect(f.detail).toBe(
      'pin-based VM-execution controls = 0x14: bit 1 must be 1: IA32_VMX_TRUE_PINBASED_CTLS allowed-0 = 0x16');
  });
  it('27.2.1.1: a pin-based control the capabilities do not offer set', () => {
    const b = notOffered(caps.pin);
    const f = expectFailure(vmcs((v) => orField(v, PIN, bit(b))), controls('pin-based controls reserved bits'));
    expect(f.detail).toContain(`bit ${b} must be 0: IA32_VMX_TRUE_PINBASED_CTLS allowed-1 = 0x${caps.pin.allowed1.toString(16)}`);
  });
  it('27.2.1.1: a primary processor-based control the capabilities do not offer set', () => {
    expectFailure(vmcs((v) => orField(v, PROC, bit(notOffered(caps.proc)))),
      controls('primary processor-based controls reserved bits'));
  });
  it('27.2.1.1: a must-be-1 primary processor-based bit (default1 bit 26) cleared', () => {
    const f = expectFailure(vmcs((v) => clearField(v, PROC, bit(26))),
      controls('primary processor-based controls reserved bits'));
    expect(f.detail).toContain('bit 26 must be 1');
  });
  it('27.2.1.1: a secondary control the capabilities do not offer set, with "activate secondary controls"', () => {
    expectFailure(vmcs((v) => orField(v, SEC, bit(notOffered(caps.secondary)))),
      controls('secondary processor-based controls reserved bits'));
  });
  it('27.2.1.1: secondary controls are not checked while "activate secondary controls" is 0', () => {
    const v = vmcs((v) => { clearField(v, PROC, bit(31)); v.set(SEC, -1); });
    expect(checkControls(cpu, v, caps)).toBeNull();
  });
  it('27.2.1.1: tertiary controls, every bit reserved, with "activate tertiary controls"', () => {
    expectWide((v) => { orField(v, PROC, bit(17)); v.set(F.TERTIARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, 1); },
      'tertiary processor-based controls reserved bits');
  });
  it('27.2.1.1: CR3-target count above the 4 of IA32_VMX_MISC[24:16]', () => {
    expect(firstFailure(vmcs((v) => v.set(F.CR3_TARGET_COUNT, 4)))).toBeNull();
    expectFailure(vmcs((v) => v.set(F.CR3_TARGET_COUNT, 5)), controls('CR3-target count'));
  });
  it('27.2.1.1: I/O bitmap A not 4-KByte aligned with "use I/O bitmaps"', () => {
    expectFailure(vmcs((v) => { orField(v, PROC, bit(25)); v.set(F.ADDRESS_OF_IO_BITMAP_A, 0x1008); }),
      controls('I/O-bitmap addresses'));
  });
  it('27.2.1.1: I/O bitmap B beyond the physical-address width (39 bits)', () => {
    expectFailure(vmcs((v) => { orField(v, PROC, bit(25)); v.set(F.ADDRESS_OF_IO_BITMAP_B, 0, 0x80); }),
      controls('I/O-bitmap addresses'));
    const highest = vmcs((v) => { orField(v, PROC, bit(25)); v.set(F.ADDRESS_OF_IO_BITMAP_B, 0xfffff000, 0x7f); });
    expect(firstFailure(highest)).toBeNull();
  });
  it('27.2.1.1: MSR-bitmap address not aligned with "use MSR bitmaps"', () => {
    expectFailure(vmcs((v) => { orField(v, PROC, bit(28)); v.set(F.ADDRESS_OF_MSR_BITMAPS, 0x2001); }),
      controls('MSR-bitmap address'));
  });
  it('27.2.1.1: virtual-APIC address not aligned with "use TPR shadow"', () => {
    expectWide((v) => { orField(v, PROC, bit(21)); v.set(F.VIRTUAL_APIC_ADDRESS, 0x200010); }, 'virtual-APIC address');
  });
  it('27.2.1.1: TPR threshold bits 31:4 set with "use TPR shadow" and no virtual-interrupt delivery', () => {
    expectWide((v) => { orField(v, PROC, bit(21)); v.set(F.VIRTUAL_APIC_ADDRESS, 0x200000); v.set(F.TPR_THRESHOLD, 0x10); },
      'TPR threshold bits 31:4');
  });
  it('27.2.1.1: TPR threshold above VTPR[7:4] (byte 80H of the virtual-APIC page)', () => {
    cpu.memory.write8(0x210080, 0x20); // VTPR: priority class 2
    const tpr = (threshold: number) => (v: Vmcs) => {
      orField(v, PROC, bit(21)); v.set(F.VIRTUAL_APIC_ADDRESS, 0x210000); v.set(F.TPR_THRESHOLD, threshold);
    };
    passesWide(tpr(2));
    expectWide(tpr(3), 'TPR threshold above VTPR');
  });
  it('27.2.1.1: "virtual NMIs" without "NMI exiting"', () => {
    expectFailure(vmcs((v) => orField(v, PIN, bit(5))), controls('virtual NMIs without NMI exiting'));
    expect(firstFailure(vmcs((v) => orField(v, PIN, bit(5) | bit(3))))).toBeNull();
  });
  it('27.2.1.1: "NMI-window exiting" without "virtual NMIs"', () => {
    expectFailure(vmcs((v) => orField(v, PROC, bit(22))), controls('NMI-window exiting without virtual NMIs'));
  });
  it('27.2.1.1: APIC-access address not aligned with "virtualize APIC accesses"', () => {
    expectWide((v) => { orField(v, SEC, bit(0)); v.set(F.APIC_ACCESS_ADDRESS, 0xfee00800); }, 'APIC-access address');
  });
  it('27.2.1.1: "APIC-register virtualization" without "use TPR shadow"', () => {
    expectWide((v) => orField(v, SEC, bit(8)), 'APIC virtualization without TPR shadow');
  });
  it('27.2.1.1: "virtualize x2APIC mode" together with "virtualize APIC accesses"', () => {
    expectWide((v) => { orField(v, PROC, bit(21)); orField(v, SEC, bit(0) | bit(4)); },
      'virtualize x2APIC mode with APIC accesses');
  });
  it('27.2.1.1: "virtual-interrupt delivery" without "external-interrupt exiting"', () => {
    expectWide((v) => { orField(v, PROC, bit(21)); orField(v, SEC, bit(9)); },
      'virtual-interrupt delivery without external-interrupt exiting');
  });
  /** Posted interrupts with everything they need but the rule under test. */
  const posted = (v: Vmcs) => {
    orField(v, PIN, bit(0) | bit(7)); orField(v, PROC, bit(21)); orField(v, SEC, bit(9)); orField(v, EXIT, bit(15));
    v.set(F.POSTED_INTERRUPT_NOTIFICATION_VECTOR, 0xf2); v.set(F.POSTED_INTERRUPT_DESCRIPTOR_ADDRESS, 0x220040);
  };
  it('27.2.1.1: "process posted interrupts" and its requirements', () => {
    passesWide(posted);
    expectWide((v) => { posted(v); clearField(v, SEC, bit(9)); }, 'posted interrupts without virtual-interrupt delivery');
    expectWide((v) => { posted(v); clearField(v, EXIT, bit(15)); }, 'posted interrupts without acknowledge interrupt on exit');
  });
  it('27.2.1.1: posted-interrupt notification vector above 255', () => {
    expectWide((v) => { posted(v); v.set(F.POSTED_INTERRUPT_NOTIFICATION_VECTOR, 0x100); },
      'posted-interrupt notification vector');
  });
  it('27.2.1.1: posted-interrupt descriptor address with bits 5:0 set', () => {
    expectWide((v) => { posted(v); v.set(F.POSTED_INTERRUPT_DESCRIPTOR_ADDRESS, 0x220020); },
      'posted-interrupt descriptor address');
  });
  it('27.2.1.1: VPID 0000H with "enable VPID"', () => {
    expectWide((v) => orField(v, SEC, bit(5)), 'VPID');
    passesWide((v) => { orField(v, SEC, bit(5)); v.set(F.VIRTUAL_PROCESSOR_IDENTIFIER, 1); });
  });
  it('27.2.1.1: EPTP with a page-walk length other than 4, or memory type 1', () => {
    passesWide((v) => { orField(v, SEC, bit(1)); v.set(F.EPT_POINTER, EPTP); });
    expectWide((v) => { orField(v, SEC, bit(1)); v.set(F.EPT_POINTER, 0x300006); }, 'EPTP');
    expectWide((v) => { orField(v, SEC, bit(1)); v.set(F.EPT_POINTER, 0x300019); }, 'EPTP');
  });
  it('27.2.1.1: "enable PML" without "enable EPT"', () => {
    expectWide((v) => orField(v, SEC, bit(17)), 'PML without EPT');
  });
  it('27.2.1.1: PML address not aligned with "enable PML"', () => {
    expectWide((v) => { orField(v, SEC, bit(1) | bit(17)); v.set(F.EPT_POINTER, EPTP); v.set(F.PML_ADDRESS, 0x240100); },
      'PML address');
  });
  it('27.2.1.1: "sub-page write permissions for EPT" without "enable EPT"; SPPTP not aligned', () => {
    expectWide((v) => orField(v, SEC, bit(23)), 'sub-page write permissions without EPT');
    expectWide((v) => {
      orField(v, SEC, bit(1) | bit(23)); v.set(F.EPT_POINTER, EPTP); v.set(F.SUB_PAGE_PERMISSION_TABLE_POINTER, 0x250001);
    }, 'SPPTP');
  });
  it('27.2.1.1: "unrestricted guest" without "enable EPT"', () => {
    expectWide((v) => orField(v, SEC, bit(7)), 'unrestricted guest or mode-based execute control without EPT');
  });
  it('27.2.1.1: VM-function controls, every bit reserved, with "enable VM functions"', () => {
    expectWide((v) => { orField(v, SEC, bit(13)); v.set(F.VM_FUNCTION_CONTROLS, 1); }, 'VM-function controls reserved bits');
  });
  it('27.2.1.1: VMREAD-bitmap address not aligned with "VMCS shadowing"', () => {
    expectWide((v) => { orField(v, SEC, bit(14)); v.set(F.VMREAD_BITMAP_ADDRESS, 0x1004); }, 'VMREAD-bitmap address');
  });
  it('27.2.1.1: VMWRITE-bitmap address beyond MAXPHYADDR with "VMCS shadowing"', () => {
    expectWide((v) => { orField(v, SEC, bit(14)); v.set(F.VMWRITE_BITMAP_ADDRESS, 0x1000, 0x200); }, 'VMWRITE-bitmap address');
  });
  it('27.2.1.1: virtualization-exception information address beyond MAXPHYADDR with "EPT-violation #VE"', () => {
    expectWide((v) => {
      orField(v, SEC, bit(1) | bit(18)); v.set(F.EPT_POINTER, EPTP);
      v.set(F.VIRTUALIZATION_EXCEPTION_INFORMATION_ADDRESS, 0, 0x100);
    }, 'virtualization-exception information address');
  });
  it('27.2.1.1: "Intel PT uses guest physical addresses" without "clear IA32_RTIT_CTL"', () => {
    expectWide((v) => { orField(v, SEC, bit(1) | bit(24)); v.set(F.EPT_POINTER, EPTP); orField(v, ENTRY, bit(18)); },
      'Intel PT uses guest physical addresses');
  });
});

describe('SDM 27.2.1.2 (VM-exit control fields)', () => {
  it('27.2.1.2: a must-be-1 VM-exit control (default1 bit 0) cleared', () => {
    const f = expectFailure(vmcs((v) => clearField(v, EXIT, bit(0))), controls('VM-exit controls reserved bits', '27.2.1.2'));
    expect(f.detail).toContain('IA32_VMX_TRUE_EXIT_CTLS allowed-0');
  });
  it('27.2.1.2: a VM-exit control the capabilities do not offer set', () => {
    expectFailure(vmcs((v) => orField(v, EXIT, bit(notOffered(caps.exit)))),
      controls('VM-exit controls reserved bits', '27.2.1.2'));
  });
  it('27.2.1.2: secondary VM-exit controls, every bit reserved, with "activate secondary controls"', () => {
    expectWide((v) => { orField(v, EXIT, bit(31)); v.set(F.SECONDARY_VM_EXIT_CONTROLS, 2); },
      'secondary VM-exit controls reserved bits', '27.2.1.2');
  });
  it('27.2.1.2: "save VMX-preemption timer value" without "activate VMX-preemption timer"', () => {
    expectWide((v) => orField(v, EXIT, bit(22)), 'save VMX-preemption timer value without the timer', '27.2.1.2');
    passesWide((v) => { orField(v, EXIT, bit(22)); orField(v, PIN, bit(6)); });
  });
  it('27.2.1.2: VM-exit MSR-store address not 16-byte aligned with a non-zero count', () => {
    expect(firstFailure(vmcs((v) => v.set(F.VM_EXIT_MSR_STORE_ADDRESS, 0x1008)))).toBeNull(); // count 0: not checked
    expectFailure(vmcs((v) => { v.set(F.VM_EXIT_MSR_STORE_COUNT, 1); v.set(F.VM_EXIT_MSR_STORE_ADDRESS, 0x1008); }),
      controls('VM-exit MSR-store address', '27.2.1.2'));
  });
  it('27.2.1.2: VM-exit MSR-load area whose last byte is beyond MAXPHYADDR', () => {
    const top = 2 ** 39 - 16; // the last 16-byte entry below 2^39
    const area = (count: number) => (v: Vmcs) => {
      v.set(F.VM_EXIT_MSR_LOAD_COUNT, count); v.set(F.VM_EXIT_MSR_LOAD_ADDRESS, top % 2 ** 32, Math.floor(top / 2 ** 32));
    };
    expect(firstFailure(vmcs(area(1)))).toBeNull();
    expectFailure(vmcs(area(2)), controls('VM-exit MSR-load address', '27.2.1.2'));
  });
});

describe('SDM 27.2.1.3 (VM-entry control fields)', () => {
  const entryCheck = (check: string) => controls(check, '27.2.1.3');
  const inject = (info: number, code = 0, length = 0) => vmcs((v) => {
    v.set(INFO, info); v.set(F.VM_ENTRY_EXCEPTION_ERROR_CODE, code); v.set(F.VM_ENTRY_INSTRUCTION_LENGTH, length);
  });
  it('27.2.1.3: a must-be-1 VM-entry control (default1 bit 12) cleared', () => {
    expectFailure(vmcs((v) => clearField(v, ENTRY, bit(12))), entryCheck('VM-entry controls reserved bits'));
  });
  it('27.2.1.3: event injection with interruption type 1 (reserved)', () => {
    expectFailure(inject(0x80000100 | 0), entryCheck('event injection: interruption type'));
  });
  it('27.2.1.3: event injection with type 7 (other event) is reserved where "monitor trap flag" is not offered', () => {
    const noMtf = { ...caps, proc: { ...caps.proc, allowed1: caps.proc.allowed1 & ~bit(27) } };
    expectFailure(inject(0x80000700 | 0), entryCheck('event injection: interruption type'), noMtf);
    expect(firstFailure(inject(0x80000700 | 0), everything)).toBeNull(); // pending MTF VM exit
  });
  it('27.2.1.3: an NMI with vector 3', () => {
    expectFailure(inject(0x80000203 | 0), entryCheck('event injection: vector'));
  });
  it('27.2.1.3: a hardware exception with vector 32', () => {
    expectFailure(inject(0x80000320 | 0), entryCheck('event injection: vector'));
  });
  it('27.2.1.3: #GP without its error code, #UD with one', () => {
    expect(firstFailure(inject(0x80000b0d | 0))).toBeNull();
    expectFailure(inject(0x8000030d | 0), entryCheck('event injection: deliver error code'));
    expectFailure(inject(0x80000b06 | 0), entryCheck('event injection: deliver error code'));
  });
  it('27.2.1.3: no error code for a real-mode guest ("unrestricted guest", CR0.PE = 0)', () => {
    const realMode = (info: number) => vmcs((v) => {
      orField(v,
        SEC, bit(1) | bit(7)); v.set(F.EPT_POINTER, EPTP); clearField(v, F.GUEST_CR0, bit(0) | bit(31)); v.set(INFO, info);
    });
    expect(checkControls(cpu, realMode(0x8000030d | 0), everything)).toBeNull();
    expect(checkControls(cpu, realMode(0x80000b0d | 0), everything))
      .toMatchObject(entryCheck('event injection: deliver error code'));
  });
  it('27.2.1.3: interruption-information bits 30:12 set', () => {
    expectFailure(inject(0x80001b0d | 0), entryCheck('event injection: reserved bits'));
  });
  it('27.2.1.3: an error code with bits 31:16 set', () => {
    expect(firstFailure(inject(0x80000b0d | 0, 0xfffc))).toBeNull();
    expectFailure(inject(0x80000b0d | 0, 0x10000), entryCheck('event injection: error code'));
  });
  it('27.2.1.3: a software interrupt with instruction length 0 or 16', () => {
    expect(firstFailure(inject(0x80000480 | 0, 0, 2))).toBeNull();
    expectFailure(inject(0x80000480 | 0, 0, 0), entryCheck('event injection: instruction length'));
    expectFailure(inject(0x80000603 | 0, 0, 16), entryCheck('event injection: instruction length'));
  });
  it('27.2.1.3: VM-entry MSR-load address not 16-byte aligned', () => {
    expectFailure(vmcs((v) => { v.set(F.VM_ENTRY_MSR_LOAD_COUNT, 3); v.set(F.VM_ENTRY_MSR_LOAD_ADDRESS, 0x5004); }),
      entryCheck('VM-entry MSR-load address'));
  });
  it('27.2.1.3: "entry to SMM" outside SMM', () => {
    expectWide((v) => orField(v, ENTRY, bit(10)), 'SMM controls outside SMM', '27.2.1.3');
  });
});

describe('SDM 27.2.1 (order of the checks)', () => {
  it('27.2.1.1: pin-based reserved bits are reported before the CR3-target count', () => {
    expectFailure(vmcs((v) => { clearField(v, PIN, bit(1)); v.set(F.CR3_TARGET_COUNT, 9); }),
      controls('pin-based controls reserved bits'));
  });
  it('27.2.1.1 before 27.2.1.3: an execution-control failure hides an event-injection failure', () => {
    expectFailure(vmcs((v) => { orField(v, PROC, bit(22)); v.set(INFO, 0x80000100 | 0); }),
      controls('NMI-window exiting without virtual NMIs'));
  });
  it('27.2.1.2 before 27.2.1.3: the VM-exit MSR-store area before the VM-entry controls', () => {
    expectFailure(vmcs((v) => {
      v.set(F.VM_EXIT_MSR_STORE_COUNT, 1); v.set(F.VM_EXIT_MSR_STORE_ADDRESS, 1); clearField(v, ENTRY, bit(12));
    }),
      controls('VM-exit MSR-store address', '27.2.1.2'));
  });
  it('27.2 before 27.3: a control failure is reported before a broken guest state', () => {
    expectFailure(vmcs((v) => { v.set(F.CR3_TARGET_COUNT, 5); v.set(F.GUEST_RFLAGS, 0); }), controls('CR3-target count'));
  });
});
