/**
 * Unrestricted guests (SDM vol. 3C, December 2024 numbering: 25.6.2 the
 * "unrestricted guest" control, 26.6 unrestricted guests, 27.3.1.1 CR0.PE and
 * CR0.PG are not checked with it) under EPT (29.3: with CR0.PG = 0 a linear
 * address is a guest-physical address, translated by EPT). The guest runs in
 * real-address mode (CR0.PE = 0) and in protected mode without paging.
 *
 * That a VM entry with CR0.PE = 0 or CR0.PG = 0 fails the guest CR0 check
 * without "unrestricted guest" is tested in spec-tests/vm-entry/guest-state
 * and fuzz/vmx.test.ts ('protected-unpaged'); it is not repeated here.
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field as F } from '../../vmcs/fields.js';
import type { Cpu, PortIo } from '../../src/cpu/cpu.js';
import { runInGuest } from '../../src/vmx/testing.js';
import type { Vmcs } from '../../src/vmx/vmcs.js';
import { EPT_RWX, EPT_WB, EptTables, eptGuest, exitOf, le32, VMCALL } from './ept-tables.js';

const UNRESTRICTED_GUEST = 1 << 7;
const CR0_PE = 1, CR0_PG = 0x80000000;
const DATA = 0x50000, OTHER = 0x51000;

/** A port space that records OUTs and answers IN with 40H + the port's low byte. */
function ports(): PortIo & { writes: [number, number, number][] } {
  const writes: [number, number, number][] = [];
  return { writes, read: (port) => (0x40 + port) & 0xff, write: (port, size, value) => { writes.push([port, size, value]); } };
}

/**
 * A real-mode guest (CR0.PE = PG = 0) at CS:IP = 0100H:0000H (linear 1000H),
 * DS = 5000H, SS:SP = 0000H:7000H, the IVT at 0: segment bases are selector × 16,
 * limits FFFFH, access rights 93H (data) and 9BH (code), as after real-mode
 * loads (SDM vol. 3A, 20.1.1). `code` goes to linear 1000H.
 */
function realMode(code: number[], setup: (t: EptTables, cpu: Cpu) => void = () => {}) {
  return eptGuest((t, v: Vmcs, cpu) => {
    v.set(F.GUEST_CR0, v.lo(F.GUEST_CR0) & ~(CR0_PE | CR0_PG));
    const selectors = [0, 0x100, 0, 0x5000, 0, 0]; // ES, CS, SS, DS, FS, GS
    selectors.forEach((sel, n) => {
      v.set(F.GUEST_ES_SELECTOR + 2 * n, sel); v.set(F.GUEST_ES_BASE + 2 * n, sel << 4);
      v.set(F.GUEST_ES_LIMIT + 2 * n, 0xffff); v.set(F.GUEST_ES_ACCESS_RIGHTS + 2 * n, n === 1 ? 0x9b : 0x93);
    });
    v.set(F.GUEST_IDTR_BASE, 0); v.set(F.GUEST_IDTR_LIMIT, 0x3ff);
    v.set(F.GUEST_RIP, 0); v.set(F.GUEST_RSP, 0x7000);
    cpu.memory.load(0x1000, Uint8Array.from(code));
    cpu.memory.write32(DATA, 0x1111); cpu.memory.write32(OTHER, 0x2222);
    setup(t, cpu);
  }, { secondary: UNRESTRICTED_GUEST });
}

/** Protected mode without paging (CR0.PE = 1, PG = 0): the harness's flat 32-bit segments, code at 1000H. */
function unpaged(setup: (t: EptTables, cpu: Cpu) => void = () => {}) {
  return eptGuest((t, v, cpu) => {
    v.set(F.GUEST_CR0, v.lo(F.GUEST_CR0) & ~CR0_PG);
    cpu.memory.write32(DATA, 0x1111); cpu.memory.write32(OTHER, 0x2222);
    setup(t, cpu);
  }, { secondary: UNRESTRICTED_GUEST });
}

describe('26.6 / 29.3: a real-mode guest (CR0.PE = 0) with "unrestricted guest"', () => {
  it('26.6: code at CS:IP 0100H:0000H runs; its read of DS:0 goes through EPT (remapped page); OUT and IN reach the ports; VMCALL exits with IP', () => {
    const io = ports();
    // mov ax, [0]; mov bx, ax; mov dx, 1234H; mov al, 5AH; out dx, al; in al, 71H; mov cl, al; vmcall
    const code = [0xa1, 0, 0, 0x89, 0xc3, 0xba, 0x34, 0x12, 0xb0, 0x5a, 0xee, 0xe4, 0x71, 0x88, 0xc1, ...VMCALL];
    const r = runInGuest([], realMode(code, (t, cpu) => { t.map(DATA, OTHER, EPT_RWX | EPT_WB); cpu.io = io; }), { mode: 32 });
    const e = exitOf(r);
    expect(e.reason).toBe(ExitReason.VMCALL);
    expect(e.rip).toBe(0xf); // the VMCALL's offset in CS (28.3.3)
    expect(r.vmcs.lo(F.GUEST_CS_SELECTOR)).toBe(0x100);
    expect(r.vmcs.lo(F.GUEST_CR0) & (CR0_PE | CR0_PG)).toBe(0);
    expect(r.cpu.gpr[2 * 3]! & 0xffff).toBe(0x2222); // BX: the remapped page
    expect(io.writes).toEqual([[0x1234, 1, 0x5a]]);
    expect(r.cpu.gpr[2 * 1]! & 0xff).toBe(0xb1); // CL: IN AL, 71H
  });

  it('29.3.3.2: a real-mode read of an EPT not-present page: qualification 181H, guest-linear = guest-physical = DS base + offset, RIP = IP', () => {
    // nop; mov ax, [10H]; vmcall
    const r = runInGuest([], realMode([0x90, 0xa1, 0x10, 0, ...VMCALL], (t) => t.map(DATA, DATA, 0)), { mode: 32 });
    const e = exitOf(r);
    expect(e.reason).toBe(ExitReason.EPT_VIOLATION);
    expect(e.qualification).toBe(0x181);
    expect(e.gpa).toBe(DATA + 0x10);
    expect(e.linear).toBe(DATA + 0x10);
    expect(e.rip).toBe(1);
  });

  it('26.6 / 29.3: INT 21H reads its IVT entry through EPT: guest-physical page 0 remapped to a page whose vector 21H leads to 0600H:0010H', () => {
    const ivtCopy = 0x52000;
    const r = runInGuest([], realMode([0xcd, 0x21, ...VMCALL], (t, cpu) => {
      cpu.memory.write32(4 * 0x21, 0x0100 << 16); // the IVT in host page 0 is not the one used
      cpu.memory.write32(ivtCopy + 4 * 0x21, (0x0600 << 16) | 0x10);
      cpu.memory.load(0x6010, Uint8Array.of(0xbb, 0x42, 0x42, ...VMCALL)); // mov bx, 4242H; vmcall
      t.map(0, ivtCopy, EPT_RWX | EPT_WB);
    }), { mode: 32 });
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(r.vmcs.lo(F.GUEST_CS_SELECTOR)).toBe(0x600);
    expect(exitOf(r).rip).toBe(0x13);
    expect(r.cpu.gpr[2 * 3]! & 0xffff).toBe(0x4242);
    // The return frame (FLAGS, CS, IP) went to SS:SP - 6, guest-physical 6FFAH, identity-mapped.
    expect(r.cpu.memory.read32(0x7000 - 6) & 0xffff).toBe(2); // IP after INT 21H
    expect(r.cpu.memory.read32(0x7000 - 4) & 0xffff).toBe(0x100);
  });
});

describe('26.6 / 29.3: protected mode without paging (CR0.PE = 1, CR0.PG = 0) with "unrestricted guest"', () => {
  it('29.3: linear addresses are guest-physical: MOV EAX, [50000H] reads the page EPT maps there; VMCALL exits with EIP', () => {
    // mov eax, [DATA]; vmcall
    const r = runInGuest([0xa1, ...le32(DATA), ...VMCALL], unpaged((t) => t.map(DATA, OTHER, EPT_RWX | EPT_WB)), { mode: 32 });
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(exitOf(r).rip).toBe(0x1005);
    expect(r.cpu.gpr[0]! >>> 0).toBe(0x2222);
    expect(r.vmcs.lo(F.GUEST_CR0) & (CR0_PE | CR0_PG)).toBe(CR0_PE);
  });

  it('29.3.3.2: a store to an EPT read-only page: qualification 18AH (bits 7 and 8: the linear address is the access\'s own)', () => {
    // mov [DATA + 4], eax
    const r = runInGuest([0xa3, ...le32(DATA + 4), ...VMCALL], unpaged((t) => t.map(DATA, DATA, 1 | EPT_WB)), { mode: 32 });
    const e = exitOf(r);
    expect(e.reason).toBe(ExitReason.EPT_VIOLATION);
    expect(e.qualification).toBe(0x18a);
    expect(e.gpa).toBe(DATA + 4);
    expect(e.linear).toBe(DATA + 4);
    expect(e.rip).toBe(0x1000);
  });
});
