/**
 * What EPT-induced VM exits leave behind (SDM vol. 3C, December 2024 numbering):
 * the mappings they invalidate (29.4.3.1), RIP and the instruction length of
 * an exit during the delivery of INT n or INT3 (28.2.5, 28.3.3), RFLAGS.RF
 * (28.3.3); and a real-mode guest whose CS base is 64 KiB or more (vol. 3A,
 * 20.1.1). Each was a model bug these tests found.
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field as F } from '../../vmcs/fields.js';
import { GUEST_CODE, GUEST_STACK, runInGuest, type GuestRun } from '../../src/vmx/testing.js';
import type { Vmcs } from '../../src/vmx/vmcs.js';
import {
  EPT_R, EPT_RWX, EPT_W, EPT_WB, EPT_X, EptTables, eptGuest, exitOf, le32, loadRax, resume, storeRax, VMCALL,
} from './ept-tables.js';

const DATA = 0x50000, OTHER = 0x51000, A = 0x1111, B = 0x2222;
const RF = 1 << 16;

/**
 * mov rax, [DATA]; vmcall; mov [DATA], rax; mov rcx, [DATA]; vmcall. The read
 * succeeds (DATA read-only in EPT); the host then makes DATA's leaf `before`
 * (no INVEPT), so that the store is an EPT violation (R) or misconfiguration
 * (write-only); the host then maps DATA to OTHER, read/write, without INVEPT,
 * relying on 29.4.3.1, and resumes the guest at the read after the store.
 */
function exitThenRemap(before: number, vpid: boolean): { r: GuestRun; reason: number } {
  let t!: EptTables;
  const code = [...loadRax(DATA), ...VMCALL, ...storeRax(DATA), 0x48, 0x8b, 0x0c, 0x25, ...le32(DATA), ...VMCALL];
  const r = runInGuest(code, eptGuest((x, v, cpu) => {
    t = x;
    t.map(DATA, DATA, EPT_R | EPT_WB);
    cpu.memory.write32(DATA, A); cpu.memory.write32(OTHER, B);
    if (vpid) v.set(F.VIRTUAL_PROCESSOR_IDENTIFIER, 1);
  }, { secondary: vpid ? 1 << 5 : 0 }));
  t.map(DATA, DATA, before | EPT_WB);
  resume(r, GUEST_CODE + 11);
  const reason = exitOf(r).reason;
  t.map(DATA, OTHER, EPT_RWX | EPT_WB);
  resume(r, GUEST_CODE + 19);
  return { r, reason };
}

describe('29.4.3.1: an EPT violation or misconfiguration invalidates the mappings of its address', () => {
  // 29.4.3.1: "An EPT violation invalidates any guest-physical mappings (associated with the current
  // EP4TA) that would be used to translate the guest-physical address that caused the EPT violation. If
  // that guest-physical address was the translation of a linear address, the EPT violation also
  // invalidates any combined mappings for that linear address associated with the current PCID, the
  // current VPID and the current EP4TA." Likewise for misconfigurations (guest-physical mappings); and
  // without VPIDs, VM exits and entries invalidate all combined mappings of VPID 0000H.
  // The combined mapping DATA → host DATA (read rights) that the first read made must not survive: not
  // in the TLB with VPIDs, nor in the entries a full flush keeps without them (the host's EPT write counts).
  for (const vpid of [false, true]) {
    it(`29.4.3.1: after an EPT violation at DATA the host remaps DATA without INVEPT; the next read sees the new page${vpid ? ' (VPID 1)' : ''}`, () => {
      const { r, reason } = exitThenRemap(EPT_R, vpid);
      expect(reason).toBe(ExitReason.EPT_VIOLATION);
      expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
      expect(r.cpu.gpr[2]! >>> 0).toBe(B); // not A, through a stale combined mapping
    });
  }
  it('29.4.3.1: the same after an EPT misconfiguration (DATA\'s leaf write-only on the store\'s walk, 29.3.3.1)', () => {
    const { r, reason } = exitThenRemap(EPT_W, false);
    expect(reason).toBe(ExitReason.EPT_MISCONFIGURATION);
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[2]! >>> 0).toBe(B);
  });
});

describe('28.2.5, 28.3.3: an EPT exit during delivery of INT n / INT3', () => {
  // 28.2.5: the VM-exit instruction length is used "for VM exits due to faults encountered during
  // delivery of a software interrupt, privileged software exception, or software exception", and 28.3.3:
  // RIP references the instruction whose execution led to the exit (the VMM re-injects the event with
  // this length, 27.6.1.1, which pushes RIP + length).
  const readOnlyStack = eptGuest((t) => t.map(GUEST_STACK - 0x1000, GUEST_STACK - 0x1000, EPT_R | EPT_X | EPT_WB));
  it('28.2.5 / 28.3.3: INT 10H at 1001H whose pushes violate: GUEST_RIP = 1001H, VM-exit instruction length 2', () => {
    const r = runInGuest([0x90, 0xcd, 0x10, ...VMCALL], readOnlyStack);
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    expect(r.vmcs.lo(F.IDT_VECTORING_INFORMATION_FIELD) >>> 0).toBe(0x80000410);
    expect(r.vmcs.lo(F.VM_EXIT_INSTRUCTION_LENGTH)).toBe(2);
    expect(exitOf(r).rip).toBe(GUEST_CODE + 1);
  });
  it('28.2.5 / 28.3.3: INT3 at 1001H whose pushes violate: type 6, GUEST_RIP = 1001H, length 1', () => {
    const r = runInGuest([0x90, 0xcc, ...VMCALL], readOnlyStack);
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    expect(r.vmcs.lo(F.IDT_VECTORING_INFORMATION_FIELD) >>> 0).toBe(0x80000603);
    expect(r.vmcs.lo(F.VM_EXIT_INSTRUCTION_LENGTH)).toBe(1);
    expect(exitOf(r).rip).toBe(GUEST_CODE + 1);
  });
});

describe('28.3.3: RFLAGS.RF saved by EPT-induced VM exits', () => {
  // 28.3.3: "For APIC-access VM exits and for VM exits caused by EPT violations [and] EPT
  // misconfigurations ..., the value saved [for RF] depends on whether the VM exit occurred during delivery
  // of an event through the IDT: If the VM exit stored 0 for bit 31 for IDT-vectoring information field
  // ..., the value saved is 1."
  it('28.3.3: an EPT violation outside event delivery saves RFLAGS.RF = 1', () => {
    const r = runInGuest([...loadRax(DATA), ...VMCALL], eptGuest((t) => t.map(DATA, DATA, 0)));
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    expect(r.vmcs.lo(F.GUEST_RFLAGS) & RF).toBe(RF);
  });
  it('28.3.3: an EPT misconfiguration outside event delivery saves RFLAGS.RF = 1', () => {
    const r = runInGuest([...loadRax(DATA), ...VMCALL], eptGuest((t) => t.map(DATA, DATA, EPT_W | EPT_WB)));
    expect(exitOf(r).reason).toBe(ExitReason.EPT_MISCONFIGURATION);
    expect(r.vmcs.lo(F.GUEST_RFLAGS) & RF).toBe(RF);
  });
});

describe('vol. 3A 20.1.1: 16-bit code with a CS base of 64 KiB or more', () => {
  // The 64-KiB wrap belongs to the offset (IP + k) only, not to CS base + IP (SDM vol. 3A, 20.1.1:
  // linear = base + 16-bit offset).
  it('SDM vol. 3A 20.1.1 with vol. 3C 26.6: a real-mode (unrestricted) guest at CS:IP 6000H:0000H runs the code at 60000H', () => {
    const r = runInGuest([], eptGuest((_t, v, cpu) => {
      v.set(F.GUEST_CR0, v.lo(F.GUEST_CR0) & ~0x80000001);
      [0, 0x6000, 0, 0, 0, 0].forEach((sel, n) => {
        v.set(F.GUEST_ES_SELECTOR + 2 * n, sel); v.set(F.GUEST_ES_BASE + 2 * n, sel << 4);
        v.set(F.GUEST_ES_LIMIT + 2 * n, 0xffff); v.set(F.GUEST_ES_ACCESS_RIGHTS + 2 * n, n === 1 ? 0x9b : 0x93);
      });
      v.set(F.GUEST_RIP, 0); v.set(F.GUEST_RSP, 0x7000);
      cpu.memory.load(0x60000, Uint8Array.of(0xbb, 0x42, 0x42, ...VMCALL)); // mov bx, 4242H; vmcall
    }, { secondary: 1 << 7 }), { mode: 32, budget: 20 });
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[2 * 3]! & 0xffff).toBe(0x4242);
  });
});

describe('28.2.3: NMI unblocking due to IRET', () => {
  // "An IRET instruction may unblock NMIs even if the instruction causes a fault or VM exit": the exit then
  // reports it in bit 12 (of the EPT-violation qualification, or of the VM-exit interruption information),
  // and the saved interruptibility state no longer shows blocking by NMI.
  const MOV_ESP = (a: number): number[] => [0xbc, ...le32(a)], IRETQ = [0x48, 0xcf];
  const FRAME = 0x70000;
  /** Virtual NMIs (with NMI exiting), the guest entered with (virtual-)NMI blocking when `blocked`. */
  const nmiControls = (v: Vmcs, blocked: boolean): void => {
    v.set(F.PIN_BASED_VM_EXECUTION_CONTROLS, v.lo(F.PIN_BASED_VM_EXECUTION_CONTROLS) | (1 << 3) | (1 << 5));
    v.set(F.GUEST_INTERRUPTIBILITY_STATE, blocked ? 8 : 0);
  };

  for (const blocked of [true, false]) {
    it(`28.2.3, 28.2.1: IRETQ whose frame lies in an EPT not-present page, with NMI blocking ${blocked ? 'on: bit 12 set, blocking not saved' : 'off: bit 12 clear'}`, () => {
      const r = runInGuest([...MOV_ESP(FRAME), ...IRETQ, ...VMCALL], eptGuest((t, v) => {
        t.map(FRAME, FRAME, 0);
        nmiControls(v, blocked);
      }));
      const e = exitOf(r);
      expect(e.reason).toBe(ExitReason.EPT_VIOLATION);
      expect(e.rip).toBe(GUEST_CODE + 5);
      expect((e.qualification >>> 12) & 1).toBe(blocked ? 1 : 0);
      expect(r.vmcs.lo(F.GUEST_INTERRUPTIBILITY_STATE) & 8).toBe(0);
    });
  }

  it('28.2.3, 28.2.2: an IRETQ that faults (#GP, null CS in its frame) and exits through the exception bitmap sets bit 12 of the interruption information', () => {
    const r = runInGuest([...MOV_ESP(FRAME), ...IRETQ, ...VMCALL], eptGuest((_t, v, cpu) => {
      nmiControls(v, true);
      v.set(F.EXCEPTION_BITMAP, 1 << 13);
      // The frame: RIP, CS = 0, RFLAGS, RSP, SS.
      [GUEST_CODE, 0, 2, FRAME, 0x10].forEach((q, k) => { cpu.memory.write32(FRAME + 8 * k, q); cpu.memory.write32(FRAME + 8 * k + 4, 0); });
    }));
    expect(exitOf(r).reason).toBe(ExitReason.EXCEPTION_OR_NMI);
    expect(r.vmcs.lo(F.VM_EXIT_INTERRUPTION_INFORMATION) >>> 0).toBe((0x80000b0d | (1 << 12)) >>> 0);
    expect(r.vmcs.lo(F.GUEST_INTERRUPTIBILITY_STATE) & 8).toBe(0);
  });
});
