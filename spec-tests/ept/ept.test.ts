/**
 * EPT (SDM vol. 3C, 29.3; numbering of the SDM of December 2024): guest-physical
 * addresses translated through the EPT paging structures, EPT violations with
 * their exit qualification (28.2.1, table 28-7), EPT misconfigurations, and
 * the guest-physical-address and guest-linear-address fields (28.2.1).
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { GUEST_CODE, MEMORY_SIZE, guestPteAddress, runInGuest } from '../../src/vmx/testing.js';
import { EPT_R, EPT_RWX, EPT_W, EPT_WB, EPT_X, EptTables, enableEpt } from './ept-tables.js';

const VMCALL = [0x0f, 0x01, 0xc1];
/** mov rax, [abs32]; the address follows as a 32-bit displacement (SIB form, no base). */
const loadRax = (a: number): number[] => [0x48, 0x8b, 0x04, 0x25, a & 0xff, (a >>> 8) & 0xff, (a >>> 16) & 0xff, a >>> 24];
/** mov [abs32], rax. */
const storeRax = (a: number): number[] => [0x48, 0x89, 0x04, 0x25, a & 0xff, (a >>> 8) & 0xff, (a >>> 16) & 0xff, a >>> 24];

/** A page of data the guest reads, and another that holds different bytes. */
const DATA = 0x50000, OTHER = 0x51000;

function withEpt(setup: (t: EptTables) => void, accessedDirty = false) {
  return (v: Parameters<NonNullable<Parameters<typeof runInGuest>[1]>>[0], cpu: Parameters<NonNullable<Parameters<typeof runInGuest>[1]>>[1]): void => {
    const t = new EptTables(cpu);
    t.identity(MEMORY_SIZE);
    setup(t);
    enableEpt(v, t.eptp(accessedDirty));
    cpu.memory.write32(DATA, 0x11111111);
    cpu.memory.write32(OTHER, 0x22222222);
  };
}

describe('EPT translation (29.3.2)', () => {
  it('with an identity EPT the guest runs as without it', () => {
    const r = runInGuest([...loadRax(DATA), ...VMCALL], withEpt(() => {}));
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.reg64(0)).toBe(0x11111111n);
  });

  it('a guest-physical page mapped elsewhere: the guest reads the host-physical page EPT names', () => {
    const r = runInGuest([...loadRax(DATA), ...VMCALL], withEpt((t) => t.map(DATA, OTHER, EPT_RWX | EPT_WB)));
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.reg64(0)).toBe(0x22222222n);
  });
});

describe('EPT violations (29.3.3.2; qualification 28.2.1, table 28-7)', () => {
  it('a read of a not-present page: bits 0, 7 and 8, permissions 0; guest-physical and guest-linear address; RIP at the instruction', () => {
    const r = runInGuest([...loadRax(DATA), ...VMCALL], withEpt((t) => t.map(DATA, DATA, 0)));
    expect(r.reason).toBe(ExitReason.EPT_VIOLATION);
    expect(r.qualification).toBe(0x181n);
    expect(r.vmcs.num(Field.GUEST_PHYSICAL_ADDRESS)).toBe(DATA);
    expect(r.vmcs.num(Field.GUEST_LINEAR_ADDRESS)).toBe(DATA);
    expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE);
  });

  it('a write to a read-only page: bit 1, and bits 3 and 5 (readable, executable); the page is unchanged', () => {
    const r = runInGuest([0xb8, 5, 0, 0, 0, ...storeRax(DATA + 8), ...VMCALL], withEpt((t) => t.map(DATA, DATA, EPT_R | EPT_X | EPT_WB)));
    expect(r.reason).toBe(ExitReason.EPT_VIOLATION);
    expect(r.qualification).toBe(BigInt(2 | (1 << 3) | (1 << 5) | 0x180));
    expect(r.vmcs.num(Field.GUEST_PHYSICAL_ADDRESS)).toBe(DATA + 8);
    expect(r.cpu.memory.read32(DATA + 8)).toBe(0);
    expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE + 5);
  });

  it('an instruction fetch from a page without execute permission: bit 2, readable and writable', () => {
    const r = runInGuest([...VMCALL], withEpt((t) => t.map(GUEST_CODE, GUEST_CODE, EPT_R | EPT_W | EPT_WB)));
    expect(r.reason).toBe(ExitReason.EPT_VIOLATION);
    expect(r.qualification).toBe(BigInt(4 | (3 << 3) | 0x180));
    expect(r.vmcs.num(Field.GUEST_PHYSICAL_ADDRESS)).toBe(GUEST_CODE);
  });

  it('a guest paging-structure entry in a not-present page: bit 7 set, bit 8 clear; the guest-physical address is the entry\'s', () => {
    // Above 2 MiB: its page table is not the one that maps the guest's code.
    const far = 0x300000, pte = guestPteAddress(far);
    const r = runInGuest([...loadRax(far), ...VMCALL], withEpt((t) => t.map(pte, pte, 0)));
    expect(r.reason).toBe(ExitReason.EPT_VIOLATION);
    expect(r.qualification).toBe(0x81n);
    expect(r.vmcs.num(Field.GUEST_PHYSICAL_ADDRESS)).toBe(pte);
    expect(r.vmcs.num(Field.GUEST_LINEAR_ADDRESS)).toBe(far);
  });
});

describe('EPT misconfigurations (29.3.3.1)', () => {
  it('an entry writable but not readable: exit reason 49 with the guest-physical address', () => {
    const r = runInGuest([...loadRax(DATA), ...VMCALL], withEpt((t) => t.map(DATA, DATA, EPT_W | EPT_WB)));
    expect(r.reason).toBe(ExitReason.EPT_MISCONFIGURATION);
    expect(r.qualification).toBe(0n);
    expect(r.vmcs.num(Field.GUEST_PHYSICAL_ADDRESS)).toBe(DATA);
  });

  it('a reserved memory type (2) in the entry that maps the page', () => {
    const r = runInGuest([...loadRax(DATA), ...VMCALL], withEpt((t) => t.map(DATA, DATA, EPT_RWX | (2 << 3))));
    expect(r.reason).toBe(ExitReason.EPT_MISCONFIGURATION);
  });
});

describe('decoding ahead does not take a nested translation\'s exit early (29.3.3.2: the exit belongs to the access that makes it)', () => {
  it('a guest #PF before an instruction that crosses into an EPT-unmapped page is delivered to the guest, not taken for a VM exit', () => {
    // At 9FF6H: mov rax, [300000H] (guest #PF: its PTE is cleared); at 9FFEH: mov eax, 1, which crosses into A000H.
    const code = [...loadRax(0x300000), 0xb8, 1, 0, 0, 0, ...VMCALL];
    const r = runInGuest([], (v, cpu) => {
      withEpt((t) => t.map(0xa000, 0xa000, 0))(v, cpu);
      cpu.memory.write32(guestPteAddress(0x300000), 0);
      cpu.memory.load(0x9ff6, Uint8Array.from(code));
      v.set(Field.GUEST_RIP, 0x9ff6);
    });
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.reg64(0) & 0xffn).toBe(14n); // the guest's #PF handler: mov al, 14; vmcall
  });
});
