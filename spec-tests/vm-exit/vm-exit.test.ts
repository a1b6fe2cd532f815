/**
 * VM exits: the guest state saved, the MSR areas, the host state loaded, and
 * VMX aborts (SDM vol. 3C, 28.3 "Saving Guest State", 28.4 "Saving MSRs", 28.5
 * "Loading Host State", 28.6 "Loading Host MSRs", 28.7 "VMX Aborts"; 27.4
 * "Loading MSRs" and 27.8 "VM-Entry Failures During or After Loading Guest State").
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { CS, DS, FS, GS, LDTR, SS, TR } from '../../src/cpu/regs.js';
import { run } from '../../src/cpu/run.js';
import { vmEntry } from '../../src/vmx/entry.js';
import { GUEST_CODE, runInGuest, SCRATCH_PAGES } from '../../src/vmx/testing.js';

const VMCALL = [0x0f, 0x01, 0xc1];
const IA32_SYSENTER_CS = 0x174, IA32_STAR = 0xc0000081;
const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

/** Writes MSR-area entries (index, value) at `at` (25.7.2, table 25-15). */
function msrArea(mem: { write32(a: number, v: number): void }, at: number, entries: [number, number][]): void {
  entries.forEach(([index, value], k) => {
    mem.write32(at + 16 * k, index); mem.write32(at + 16 * k + 4, 0);
    mem.write32(at + 16 * k + 8, value); mem.write32(at + 16 * k + 12, 0);
  });
}

describe('saving guest state (28.3)', () => {
  it('RIP of the exiting instruction, RSP, RFLAGS, CR3, the segment registers and the interruptibility state', () => {
    // mov rsp, 7000h; sti; vmcall — VMCALL right after STI: blocking by STI is saved.
    const r = runInGuest([0x48, 0xc7, 0xc4, 0x00, 0x70, 0x00, 0x00, 0xfb, ...VMCALL]);
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE + 8);
    expect(r.vmcs.num(Field.GUEST_RSP)).toBe(0x7000);
    expect(r.vmcs.lo(Field.GUEST_RFLAGS)).toBe(0x202);
    expect(r.vmcs.lo(Field.GUEST_INTERRUPTIBILITY_STATE)).toBe(1); // blocking by STI (25.4.2)
    expect(r.vmcs.lo(Field.GUEST_CS_SELECTOR)).toBe(0x08);
    expect(r.vmcs.lo(Field.GUEST_CS_ACCESS_RIGHTS) & 0x20ff).toBe(0x209b); // L, P, S, type 11
    expect(r.vmcs.lo(Field.GUEST_LDTR_ACCESS_RIGHTS) & 0x10000).toBe(0x10000); // unusable
  });

  it('the VM-exit MSR-store area receives the guest\'s MSRs (28.4)', () => {
    const store = SCRATCH_PAGES;
    // wrmsr IA32_SYSENTER_CS := 1234h in the guest; exit with VMCALL.
    const r = runInGuest([0xb9, 0x74, 0x01, 0x00, 0x00, 0xb8, 0x34, 0x12, 0x00, 0x00, 0x31, 0xd2, 0x0f, 0x30, ...VMCALL], (v, cpu) => {
      msrArea(cpu.memory, store, [[IA32_SYSENTER_CS, 0]]);
      v.set(Field.VM_EXIT_MSR_STORE_ADDRESS, store); v.set(Field.VM_EXIT_MSR_STORE_COUNT, 1);
      v.set(Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, v.lo(Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS) | (1 << 28));
      v.set(Field.ADDRESS_OF_MSR_BITMAPS, SCRATCH_PAGES + 0x1000); // all zero: WRMSR does not exit
    });
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.memory.read32(store + 8)).toBe(0x1234);
    // The guest IA32_SYSENTER_CS is saved in the VMCS too, and the host's is loaded (28.3.1, 28.5.1).
    expect(r.vmcs.lo(Field.GUEST_IA32_SYSENTER_CS)).toBe(0x1234);
    expect(r.cpu.msrs.sysenterCsLo).toBe(r.vmcs.lo(Field.HOST_IA32_SYSENTER_CS));
  });

  it('28.3.2: every exit saves the segment registers as the processor holds them then: bases the guest changed between exits, normalized access rights', () => {
    // vmcall; wrmsr IA32_FS_BASE := 5000h; vmcall; wrmsr IA32_KERNEL_GS_BASE := 7000h; swapgs; vmcall
    const wrmsr = (index: number, value: number): number[] => [0xb9, ...le32(index), 0xb8, ...le32(value), 0x31, 0xd2, 0x0f, 0x30];
    const code = [...VMCALL, ...wrmsr(0xc0000100, 0x5000), ...VMCALL, ...wrmsr(0xc0000102, 0x7000), 0x0f, 0x01, 0xf8, ...VMCALL];
    const r = runInGuest(code, (v) => {
      v.set(Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, v.lo(Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS) | (1 << 28));
      v.set(Field.ADDRESS_OF_MSR_BITMAPS, SCRATCH_PAGES + 0x1000); // all zero: WRMSR does not exit
      // An unusable LDTR with other access-rights bits set: the processor keeps only its DPL (27.3.2.2).
      v.set(Field.GUEST_LDTR_ACCESS_RIGHTS, 0x100ff);
    });
    const { cpu, vmx, vmcs: v } = r;
    const resume = (): void => {
      expect(cpu.nonRoot).toBe(false);
      v.set(Field.GUEST_RIP, v.lo(Field.GUEST_RIP) + v.lo(Field.VM_EXIT_INSTRUCTION_LENGTH));
      vmEntry(vmx, cpu, false);
      run(cpu, 100);
      expect(v.lo(Field.EXIT_REASON)).toBe(ExitReason.VMCALL);
    };
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(v.lo(Field.GUEST_LDTR_ACCESS_RIGHTS)).toBe(0x10060);
    expect(v.lo(Field.GUEST_FS_BASE)).toBe(0);
    resume();
    expect(v.lo(Field.GUEST_FS_BASE)).toBe(0x5000);
    resume();
    expect(v.lo(Field.GUEST_GS_BASE)).toBe(0x7000);
    expect(v.lo(Field.GUEST_FS_BASE)).toBe(0x5000);
    // The host's bases are loaded at each exit (28.5.2).
    expect(cpu.segBase[2 * FS]).toBe(v.lo(Field.HOST_FS_BASE));
    expect(cpu.segBase[2 * GS]).toBe(v.lo(Field.HOST_GS_BASE));
  });

  it('27.3.2.2, 28.5.2: each entry and each exit load the segment fields as they are then: VMWRITEs between transitions are seen', () => {
    // vmcall; rdmsr IA32_FS_BASE; vmcall: the guest reads the FS base the second entry loaded.
    const code = [...VMCALL, 0xb9, ...le32(0xc0000100), 0x0f, 0x32, ...VMCALL];
    const r = runInGuest(code, (v) => {
      v.set(Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, v.lo(Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS) | (1 << 28));
      v.set(Field.ADDRESS_OF_MSR_BITMAPS, SCRATCH_PAGES + 0x1000); // all zero: RDMSR does not exit
    });
    const { cpu, vmx, vmcs: v } = r;
    expect(r.reason).toBe(ExitReason.VMCALL);
    v.set(Field.GUEST_RIP, v.lo(Field.GUEST_RIP) + v.lo(Field.VM_EXIT_INSTRUCTION_LENGTH));
    v.set(Field.GUEST_FS_BASE, 0x9000);
    v.set(Field.HOST_FS_BASE, 0x6000);
    v.set(Field.HOST_TR_BASE, 0x3000);
    vmEntry(vmx, cpu, false);
    run(cpu, 100);
    expect(v.lo(Field.EXIT_REASON)).toBe(ExitReason.VMCALL);
    expect(cpu.gpr[0]).toBe(0x9000);
    expect(cpu.segBase[2 * FS]).toBe(0x6000);
    expect(cpu.segBase[2 * TR]).toBe(0x3000);
    expect(v.lo(Field.GUEST_FS_BASE)).toBe(0x9000);
  });

  it('28.5.2: each exit loads the host fields, whatever the host did to its segment registers since the last exit', () => {
    const r = runInGuest([...VMCALL, ...VMCALL]);
    const { cpu, vmx, vmcs: v } = r;
    expect(r.reason).toBe(ExitReason.VMCALL);
    const hostFs = cpu.segBase[2 * FS]!, hostDs = cpu.segSel[DS]!;
    // The host's own changes: WRMSR IA32_FS_BASE, MOV DS.
    cpu.setSegmentBase(FS, 0x4444, 0);
    cpu.setSegment(DS, 0, 0, 0, 0, 0);
    v.set(Field.GUEST_RIP, v.lo(Field.GUEST_RIP) + v.lo(Field.VM_EXIT_INSTRUCTION_LENGTH));
    vmEntry(vmx, cpu, false);
    run(cpu, 100);
    expect(v.lo(Field.EXIT_REASON)).toBe(ExitReason.VMCALL);
    expect(cpu.segBase[2 * FS]).toBe(hostFs);
    expect(cpu.segSel[DS]).toBe(hostDs);
    expect(cpu.segSel[DS]).toBe(v.lo(Field.HOST_DS_SELECTOR));
  });
});

describe('loading host state (28.5)', () => {
  it('selectors from the host fields, flat segments, TR limit 67H, GDTR/IDTR limits FFFFH, RFLAGS 2, DR7 400H, LDTR unusable', () => {
    const r = runInGuest([0xfb, ...VMCALL], (v) => { v.set(Field.GUEST_DR7, 0x401); });
    const cpu = r.cpu, v = r.vmcs;
    expect(r.exited).toBe(true);
    expect(cpu.segSel[CS]).toBe(v.lo(Field.HOST_CS_SELECTOR));
    expect(cpu.segSel[SS]).toBe(v.lo(Field.HOST_SS_SELECTOR));
    expect(cpu.segSel[DS]).toBe(v.lo(Field.HOST_DS_SELECTOR));
    expect(cpu.segLimit[CS]).toBe(0xffffffff);
    expect(cpu.segLimit[TR]).toBe(0x67);
    expect(cpu.segAttr[TR]! & 0x8f).toBe(0x8b); // present, busy TSS
    expect(cpu.segAttr[LDTR]! & 0x80).toBe(0); // unusable
    expect(cpu.gdtrLimit).toBe(0xffff);
    expect(cpu.idtrLimit).toBe(0xffff);
    expect(cpu.rflags).toBe(0x2);
    expect(cpu.dr7).toBe(0x400);
    expect(cpu.codeSize).toBe(8); // "host address-space size": 64-bit mode
    expect(cpu.cpl).toBe(0);
  });

  it('the VM-exit MSR-load area loads host MSRs after the host state (28.6)', () => {
    const load = SCRATCH_PAGES + 0x2000;
    const r = runInGuest(VMCALL, (v, cpu) => {
      msrArea(cpu.memory, load, [[IA32_STAR, 0x55aa]]);
      v.set(Field.VM_EXIT_MSR_LOAD_ADDRESS, load); v.set(Field.VM_EXIT_MSR_LOAD_COUNT, 1);
    });
    expect(r.exited).toBe(true);
    expect(r.cpu.msrs.starLo).toBe(0x55aa);
  });

  it('a failure loading a host MSR is a VMX abort: the indicator in the VMCS region, then shutdown (28.7)', () => {
    const load = SCRATCH_PAGES + 0x2000;
    const r = runInGuest(VMCALL, (v, cpu) => {
      msrArea(cpu.memory, load, [[0xc0000100 + 0x1000, 1]]); // no such MSR: WRMSR would raise #GP
      v.set(Field.VM_EXIT_MSR_LOAD_ADDRESS, load); v.set(Field.VM_EXIT_MSR_LOAD_COUNT, 1);
    });
    expect(r.stop?.kind).toBe('shutdown');
    expect(r.cpu.memory.read32(0x10000 + 4)).toBe(4); // VMX-abort indicator 4: loading host MSRs (28.7)
  });
});

describe('VM-entry failures while loading MSRs (27.4, 27.8)', () => {
  it('a bad VM-entry MSR-load entry fails the entry with reason 34 and the entry\'s 1-based number', () => {
    const area = SCRATCH_PAGES + 0x3000;
    const r = runInGuest(VMCALL, (v, cpu) => {
      msrArea(cpu.memory, area, [[IA32_STAR, 1], [0xc0000100, 0]]); // IA32_FS_BASE may not be loaded here (27.4)
      v.set(Field.VM_ENTRY_MSR_LOAD_ADDRESS, area); v.set(Field.VM_ENTRY_MSR_LOAD_COUNT, 2);
    });
    expect(r.reason).toBe((ExitReason.VM_ENTRY_FAILURE_MSR_LOADING | 0x80000000) >>> 0);
    expect(r.qualification).toBe(2n);
    // The entry before it was loaded (27.4: loading is in order, up to the failing entry).
    expect(r.cpu.msrs.starLo).toBe(1);
  });
});
