/**
 * Cached EPT translations and their invalidation (SDM vol. 3C, December 2024
 * numbering): 29.4.1 (guest-physical mappings, from the EPT structures of an
 * EP4TA, and combined mappings, linear → physical, tagged with VPID, PCID and
 * EP4TA), 29.4.2 (a processor may use them while they are cached: a VMM that
 * changes an EPT entry without invalidating may see the old translation used;
 * the model caches them, so the tests below see it), 29.4.3.1 (INVEPT
 * invalidates guest-physical and combined mappings of one EP4TA or all;
 * INVVPID and VM entries/exits without VPID invalidate linear and combined
 * mappings, never guest-physical ones; an EPT violation invalidates the
 * guest-physical mappings that translate its address), and 31.3 INVEPT (its
 * operands, VMfail, #GP at CPL > 0, the VM exit in non-root operation).
 *
 * INVEPT and INVVPID run as host instructions after a VM exit, as a VMM would
 * execute them (ept-tables.ts inveptHost), and the guest is resumed by VM entry.
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { VmInstructionError } from '../../vmcs/instruction-errors.js';
import type { Cpu } from '../../src/cpu/cpu.js';
import { runFragment } from '../../src/cpu/testing.js';
import { runInGuest, VMCS_REGION, type GuestRun } from '../../src/vmx/testing.js';
import { attachVmx } from '../../src/vmx/vmx.js';
import {
  CF, DESCRIPTOR, EPT_R, EPT_RWX, EPT_WB, EptTables, INVEPT_RCX_RAX, ZF, eptGuest, exitOf, inveptHost, invvpidHost,
  le32, movRax, resume, runHost, VMCALL,
} from './ept-tables.js';

const DATA = 0x50000, OTHER = 0x51000;
const A = 0x11111111, B = 0x22222222;
/** mov r64, [abs32] for RAX (0), RCX (1), RBX (3). */
const load = (reg: number): number[] => [0x48, 0x8b, 0x04 | (reg << 3), 0x25, ...le32(DATA)];
/** Three reads of DATA into RAX, RBX and RCX, each followed by VMCALL. */
const THREE_READS = [...load(0), ...VMCALL, ...load(3), ...VMCALL, ...load(1), ...VMCALL];
const RAX = 0, RCX = 1, RBX = 3;
const low32 = (r: GuestRun, reg: number): number => r.cpu.gpr[2 * reg]! >>> 0;

/** The guest continues after the VMCALL it exited on. */
function next(r: GuestRun): void {
  resume(r, exitOf(r).rip + 3);
}

interface Setup { vpid?: number; unpaged?: boolean }

/**
 * A guest whose DATA page the EPT maps to host-physical DATA (holding A);
 * OTHER holds B. With `vpid`, "enable VPID"; with `unpaged`, an unrestricted
 * guest in protected mode without paging (26.x "unrestricted guest", 29.3: its
 * linear addresses are guest-physical addresses).
 */
function guest(code: number[], s: Setup = {}): { r: GuestRun; t: EptTables } {
  let t!: EptTables;
  const r = runInGuest(code, eptGuest((x, v, cpu) => {
    t = x;
    t.map(DATA, DATA, EPT_RWX | EPT_WB);
    cpu.memory.write32(DATA, A); cpu.memory.write32(OTHER, B);
    if (s.vpid !== undefined) v.set(Field.VIRTUAL_PROCESSOR_IDENTIFIER, s.vpid);
    if (s.unpaged) v.set(Field.GUEST_CR0, v.lo(Field.GUEST_CR0) & ~0x80000000);
  }, { secondary: (s.vpid !== undefined ? 1 << 5 : 0) | (s.unpaged ? 1 << 7 : 0) }), { mode: s.unpaged ? 32 : 64 });
  return { r, t };
}

const eptpOf = (r: GuestRun): number => r.vmcs.lo(Field.EPT_POINTER);
const succeeded = (flags: number): number => flags & (CF | ZF);

describe('29.4.2 / 29.4.3.1: a changed EPT leaf and INVEPT (31.3 INVEPT)', () => {
  it('29.4.2: after the host remaps DATA without INVEPT, the guest still reads the old page (cached guest-physical mapping)', () => {
    const { r, t } = guest(THREE_READS);
    expect(low32(r, RAX)).toBe(A);
    t.map(DATA, OTHER, EPT_RWX | EPT_WB);
    next(r);
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(low32(r, RBX)).toBe(A);
  });

  for (const [type, what] of [[1, 'single-context for the guest\'s EPTP'], [2, 'all-context']] as const) {
    it(`29.4.3.1, 31.3 INVEPT: type ${type} (${what}) VMsucceeds and the next read uses the new leaf`, () => {
      const { r, t } = guest(THREE_READS);
      t.map(DATA, OTHER, EPT_RWX | EPT_WB);
      next(r);
      expect(succeeded(inveptHost(r, type, eptpOf(r)))).toBe(0);
      next(r);
      expect(low32(r, RCX)).toBe(B);
    });
  }

  it('29.4.3.1: INVEPT single-context for another EPTP (another EP4TA) leaves the guest\'s mapping in place', () => {
    const { r, t } = guest(THREE_READS);
    t.map(DATA, OTHER, EPT_RWX | EPT_WB);
    expect(succeeded(inveptHost(r, 1, 0x700000 | (3 << 3) | 6))).toBe(0);
    next(r);
    expect(low32(r, RBX)).toBe(A);
  });

  it('29.4.2: a leaf weakened to read-only without INVEPT: the cached mapping still allows the store; after INVEPT it is a violation (18AH)', () => {
    const store = (n: number): number[] => [0xb8, n, 0, 0, 0, 0x48, 0x89, 0x04, 0x25, ...le32(DATA), ...VMCALL];
    const { r, t } = guest([...store(1), ...store(2), ...store(3)]);
    expect(r.cpu.memory.read32(DATA)).toBe(1);
    t.map(DATA, DATA, EPT_R | EPT_WB);
    next(r);
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.memory.read32(DATA)).toBe(2);
    inveptHost(r, 1, eptpOf(r));
    next(r);
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    expect(exitOf(r).qualification).toBe(0x18a);
    expect(r.cpu.memory.read32(DATA)).toBe(2);
  });

  it('29.4.3.1: Ept.invalidate (the operation INVEPT performs) of type 1 for the guest\'s EPTP drops the mapping', () => {
    const { r, t } = guest(THREE_READS);
    t.map(DATA, OTHER, EPT_RWX | EPT_WB);
    r.vmx.ept.invalidate(1, eptpOf(r), 0);
    next(r);
    expect(low32(r, RBX)).toBe(B);
  });

  it('29.4.3.1: an EPT violation invalidates the mappings of its address: once the host maps the page, the guest retries without INVEPT', () => {
    const { r, t } = guest(THREE_READS);
    t.map(DATA, DATA, 0);
    r.vmx.ept.invalidate(2, 0, 0); // forget the first read's mapping: the next read walks to the not-present leaf
    next(r);
    expect(exitOf(r).reason).toBe(ExitReason.EPT_VIOLATION);
    t.map(DATA, OTHER, EPT_RWX | EPT_WB);
    resume(r);
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(low32(r, RBX)).toBe(B);
  });
});

describe('29.4.3.1: with VPIDs, combined mappings outlive exits and entries; INVVPID drops them but not guest-physical mappings', () => {
  it('29.4.3.1: a paged guest with VPID 1: INVVPID single-context leaves the guest-physical mapping (old page); INVEPT then drops it', () => {
    const { r, t } = guest(THREE_READS, { vpid: 1 });
    t.map(DATA, OTHER, EPT_RWX | EPT_WB);
    expect(succeeded(invvpidHost(r, 1, 1))).toBe(0);
    next(r);
    expect(low32(r, RBX)).toBe(A);
    inveptHost(r, 1, eptpOf(r));
    next(r);
    expect(low32(r, RCX)).toBe(B);
  });

  it('29.4.3.1: a paged guest with VPID 1: INVEPT single-context alone drops the combined mapping that survived the exit', () => {
    const { r, t } = guest(THREE_READS, { vpid: 1 });
    t.map(DATA, OTHER, EPT_RWX | EPT_WB);
    inveptHost(r, 1, eptpOf(r));
    next(r);
    expect(low32(r, RBX)).toBe(B);
  });

  it('29.4.3.1 with 26.x "unrestricted guest": an unpaged guest uses guest-physical mappings only, so INVVPID does not remove a stale one; INVEPT does', () => {
    // 32-bit code: mov eax, [DATA]; vmcall; mov ebx, [DATA]; vmcall; mov ecx, [DATA]; vmcall.
    const code = [0xa1, ...le32(DATA), ...VMCALL, 0x8b, 0x1d, ...le32(DATA), ...VMCALL, 0x8b, 0x0d, ...le32(DATA), ...VMCALL];
    const { r, t } = guest(code, { vpid: 1, unpaged: true });
    expect(exitOf(r).reason).toBe(ExitReason.VMCALL);
    expect(low32(r, RAX)).toBe(A);
    t.map(DATA, OTHER, EPT_RWX | EPT_WB);
    for (const type of [1, 2]) expect(succeeded(invvpidHost(r, type, 1))).toBe(0);
    next(r);
    expect(low32(r, RBX)).toBe(A);
    inveptHost(r, 1, eptpOf(r));
    next(r);
    expect(low32(r, RCX)).toBe(B);
  });
});

describe('31.3 INVEPT: operands and faults', () => {
  const failValid = (r: GuestRun, flags: number): void => {
    expect(flags & (CF | ZF)).toBe(ZF);
    expect(r.vmcs.lo(Field.VM_INSTRUCTION_ERROR)).toBe(VmInstructionError.INVALID_OPERAND_INVEPT_INVVPID);
  };

  it('31.3 INVEPT: types 0, 3 and 4 are not supported (IA32_VMX_EPT_VPID_CAP bits 25, 26 only): VMfailValid(28)', () => {
    for (const type of [0, 3, 4]) {
      const { r } = guest(VMCALL);
      failValid(r, inveptHost(r, type, eptpOf(r)));
    }
  });

  it('31.3 INVEPT: a type with bits 63:32 set (the 64-bit register operand) is not supported: VMfailValid(28)', () => {
    const { r } = guest(VMCALL);
    r.cpu.memory.write32(DESCRIPTOR, eptpOf(r)); r.cpu.memory.write32(DESCRIPTOR + 4, 0);
    // mov rcx, 100000001H
    failValid(r, runHost(r, [...movRax(DESCRIPTOR), 0x48, 0xb9, 1, 0, 0, 0, 1, 0, 0, 0, ...INVEPT_RCX_RAX]));
  });

  it('31.3 INVEPT with 27.2.1.1: single-context with an EPTP VM entry would reject: memory type 1, walk length 3, bits 11:7, bit 39', () => {
    const base = 0x600000;
    const cases: [string, number, number][] = [
      ['memory type 1 (WC)', base | (3 << 3) | 1, 0],
      ['page-walk length 3 (bits 5:3 = 2)', base | (2 << 3) | 6, 0],
      ['bit 7', base | (3 << 3) | 6 | 0x80, 0],
      ['bit 11', base | (3 << 3) | 6 | 0x800, 0],
      ['bit 39 (beyond MAXPHYADDR)', base | (3 << 3) | 6, 0x80],
    ];
    for (const [what, lo, hi] of cases) {
      const { r } = guest(VMCALL);
      const flags = inveptHost(r, 1, lo, hi);
      expect(flags & (CF | ZF), what).toBe(ZF);
      expect(r.vmcs.lo(Field.VM_INSTRUCTION_ERROR), what).toBe(VmInstructionError.INVALID_OPERAND_INVEPT_INVVPID);
    }
  });

  it('31.3 INVEPT: single-context accepts an EPTP with bit 6 (A/D flags, supported); all-context ignores the descriptor', () => {
    const { r } = guest(VMCALL);
    expect(succeeded(inveptHost(r, 1, 0x600000 | (1 << 6) | (3 << 3) | 6))).toBe(0);
    expect(succeeded(inveptHost(r, 2, 0xfff, 0xffffffff))).toBe(0);
  });

  it('31.3 INVEPT: without a current VMCS (after VMCLEAR), an unsupported type is VMfailInvalid (CF = 1)', () => {
    const { r } = guest(VMCALL);
    r.cpu.memory.write32(DESCRIPTOR + 16, VMCS_REGION); r.cpu.memory.write32(DESCRIPTOR + 20, 0);
    runHost(r, [...movRax(DESCRIPTOR + 16), 0x66, 0x0f, 0xc7, 0x30]); // vmclear [rax]
    expect(r.vmx.current).toBeNull();
    expect(inveptHost(r, 0, 0) & (CF | ZF)).toBe(CF);
  });

  it('31.3 INVEPT: #GP(0) at CPL 3 in VMX root operation', () => {
    const { stop } = runFragment([...movRax(0x20000), 0xb9, 1, 0, 0, 0, ...INVEPT_RCX_RAX], {
      setup: (cpu: Cpu) => {
        const vmx = attachVmx(cpu);
        cpu.cr4 |= 1 << 13; cpu.cr0 |= 1 << 5; vmx.on = true;
        cpu.cpl = 3;
      },
    });
    expect(stop).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
  });

  it('31.3 INVEPT, 28.2.5: in VMX non-root operation INVEPT exits (reason 50) with the displacement and the instruction information', () => {
    // invept rcx, [rax]: address size 64 (bits 9:7 = 2), DS (17:15 = 3), no index (22), base RAX (26:23 = 0), RCX (31:28 = 1).
    const a = runInGuest([...movRax(0x20000), 0xb9, 7, 0, 0, 0, ...INVEPT_RCX_RAX, ...VMCALL], eptGuest());
    expect(exitOf(a).reason).toBe(ExitReason.INVEPT);
    expect(exitOf(a).qualification).toBe(0);
    expect(a.vmcs.lo(Field.VM_EXIT_INSTRUCTION_INFORMATION) >>> 0).toBe(0x10418100);
    expect(a.vmcs.lo(Field.VM_EXIT_INSTRUCTION_LENGTH)).toBe(5);
    expect(exitOf(a).rip).toBe(0x1000 + 15);
    // invept rdx, [rbx + 10H]: base RBX (3), RDX (2); the qualification is the displacement.
    const b = runInGuest([0x66, 0x0f, 0x38, 0x80, 0x53, 0x10, ...VMCALL], eptGuest());
    expect(exitOf(b).reason).toBe(ExitReason.INVEPT);
    expect(exitOf(b).qualification).toBe(0x10);
    expect(b.vmcs.lo(Field.VM_EXIT_INSTRUCTION_INFORMATION) >>> 0).toBe(0x21c18100);
    expect(b.vmcs.lo(Field.VM_EXIT_INSTRUCTION_LENGTH)).toBe(6);
  });
});
