/**
 * Properties of VMX non-root operation and VM entry, each against the SDM
 * section that states it (vol. 3C): the VM-entry checks (27.2, 27.3.1), the
 * saving and loading of state on VM exit (28.3, 28.5), the decisions of
 * non-root operation for I/O, MSR, exceptions and control registers (26.1.3,
 * 26.2, 26.3, 25.6.9) and the exit information (28.2.1, 28.2.5). Guests run
 * through src/vmx/testing.ts runInGuest; lengths are checked against
 * iced-x86 (fuzz/iced.ts).
 *
 * Bounded runs with fixed seeds: HVSIM_FUZZ_RUNS multiplies the number of
 * cases, HVSIM_FUZZ_SEED moves the seeds.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Field as F } from '../vmcs/fields.js';
import { ExitReason, EXIT_REASON_VM_ENTRY_FAILURE } from '../vmcs/exit-reasons.js';
import { VmInstructionError } from '../vmcs/instruction-errors.js';
import { Cpu } from '../src/cpu/cpu.js';
import { enterLongMode64 } from '../src/cpu/reset.js';
import { SKYLAKE_VMX } from '../src/vmx/capabilities.js';
import { checkControls, checkGuestState, checkHostState, type EntryCheckFailure } from '../src/vmx/entry-checks.js';
import {
  GUEST_CODE, HANDLERS, LAUNCH_ADDRESS, SCRATCH_PAGES, guestPteAddress, runInGuest, type GuestMode, type GuestRun,
} from '../src/vmx/testing.js';
import { vmEntry } from '../src/vmx/entry.js';
import { validVmcs } from '../src/vmx/valid-vmcs.js';
import type { Vmcs } from '../src/vmx/vmcs.js';
import { icedDecode } from './iced.js';
import {
  VIOLATIONS, applyViolation, applyVmcsConfig, crAccess, guestMode, guestState, ioInstruction, msrAccess,
  validVmcsConfig, violatingVmcsConfig, type GuestKind, type VmcsConfig,
} from './vmx-arbitraries.js';

const SCALE = Math.max(1, Math.floor(Number(process.env.HVSIM_FUZZ_RUNS) || 1));
const SEED = Number(process.env.HVSIM_FUZZ_SEED ?? 0x7e5) | 0;
const runs = (n: number, salt: number): fc.Parameters<unknown> => ({ numRuns: n * SCALE, seed: SEED + salt });

const caps = SKYLAKE_VMX;
const VMCALL = [0x0f, 0x01, 0xc1];
const CF = 1, ZF = 0x40, IF = 0x200, OF = 0x800;
const bit = (n: number): number => (1 << n) >>> 0;
const u32 = fc.integer({ min: 0, max: 0xffffffff });

/** A processor in IA-32e mode, as a VMM executing VMLAUNCH is (27.2.4 reads its IA32_EFER.LMA). */
const checkCpu = new Cpu({ memorySize: 4 * 1024 * 1024 });
enterLongMode64(checkCpu, 0x1000);

/** The first failure of the checks, in the order VM entry makes them (27.2, then 27.3.1). */
function firstFailure(v: Vmcs): EntryCheckFailure | null {
  return checkControls(checkCpu, v, caps) ?? checkHostState(checkCpu, v, caps) ?? checkGuestState(checkCpu, v, caps);
}
const baseVmcs = (kind: GuestKind): Vmcs => validVmcs(caps, { guest: kind === 'long' ? 'long' : 'protected' });
function vmcsOf(c: VmcsConfig): Vmcs {
  const v = baseVmcs(c.guest.kind);
  applyVmcsConfig(c, v);
  return v;
}

/** The length iced-x86 decodes for the first instruction of `bytes`. */
const icedLength = (bytes: readonly number[], mode: GuestMode): number => icedDecode(bytes, mode).length;
const hexOf = (n: number): string => `0x${(n >>> 0).toString(16)}`;
const setRegs = (cpu: Cpu, regs: Readonly<Record<number, bigint>>): void => {
  for (const [r, x] of Object.entries(regs)) cpu.setReg64(Number(r), BigInt.asUintN(64, x));
};
/** Sets or clears control bits of a 32-bit field. */
const control = (v: Vmcs, enc: number, set: number, clear = 0): void => v.set(enc, (v.lo(enc) | set) & ~clear);
const PROC = F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, SECONDARY = F.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;

/** The exit was an exit of `reason` at GUEST_CODE whose instruction length is iced's for `bytes`. */
function expectInstructionExit(r: GuestRun, reason: number, bytes: readonly number[], mode: GuestMode): void {
  expect(r.exited, 'a VM exit').toBe(true);
  expect(r.reason).toBe(reason);
  // 28.3.3: RIP references the instruction that caused the exit; 28.2.4: its length.
  expect(r.vmcs.num(F.GUEST_RIP)).toBe(GUEST_CODE);
  expect(r.vmcs.lo(F.VM_EXIT_INSTRUCTION_LENGTH)).toBe(icedLength(bytes, mode));
}
/** No exit at the instruction: it completed and the VMCALL after it exited (reason 18), or it faulted into the guest's handler. */
function expectNoExit(r: GuestRun, reasonNot: number): void {
  expect(r.exited, 'a VM exit (the VMCALL sentinel)').toBe(true);
  expect(r.reason).not.toBe(reasonNot);
  expect(r.reason).toBe(ExitReason.VMCALL);
}

describe('VM-entry checks on valid configurations (SDM vol. 3C, 27.2, 27.3.1)', () => {
  it('27.2, 27.3.1: every configuration of validVmcsConfig passes checkControls, checkHostState and checkGuestState', () => {
    fc.assert(fc.property(validVmcsConfig(caps, { runnable: false }), (c) => {
      const v = vmcsOf(c);
      expect(checkControls(checkCpu, v, caps)).toBeNull();
      expect(checkHostState(checkCpu, v, caps)).toBeNull();
      expect(checkGuestState(checkCpu, v, caps)).toBeNull();
    }), runs(300, 1));
  });

  it('27.3.1.1: a 32-bit guest with CR0.PG = 0 fails the guest CR0 fixed bits without "unrestricted guest" (IA32_VMX_CR0_FIXED0)', () => {
    fc.assert(fc.property(guestState('protected-unpaged', { runnable: false }), (g) => {
      const v = baseVmcs('protected');
      v.set(F.GUEST_CR0, g.cr0); v.set(F.GUEST_CR4, g.cr4); v.set(F.GUEST_RFLAGS, g.rflags);
      const f = firstFailure(v);
      expect({ kind: f?.kind, check: f?.check, section: f?.section })
        .toEqual({ kind: 'guest', check: 'guest CR0 fixed bits', section: '27.3.1.1' });
    }), runs(50, 2));
  });

  it('27.3.1, 27.7.5, 27.7.6, 28.3.3, 28.5: a valid configuration enters; CPUID exits with length 2 at its RIP; the host state is loaded', () => {
    fc.assert(fc.property(validVmcsConfig(caps), (c) => {
      const r = runInGuest([0x0f, 0xa2], (v, cpu) => applyVmcsConfig(c, v, cpu), { mode: guestMode(c) });
      expect(r.entered).toBe(true);
      expect(r.exited).toBe(true);
      // Before the first instruction: an NMI-window exit (27.7.6: no virtual-NMI blocking; it takes priority
      // over interrupt-window exits), else an interrupt-window exit when RFLAGS.IF = 1 (27.7.5: no STI or
      // MOV-SS blocking after this entry), else CPUID exits unconditionally (26.1.2).
      const proc = c.proc;
      const expected = proc & bit(22) ? ExitReason.NMI_WINDOW
        : proc & bit(2) && c.guest.rflags & IF ? ExitReason.INTERRUPT_WINDOW : ExitReason.CPUID;
      expect(r.reason).toBe(expected);
      const v = r.vmcs;
      if (expected === ExitReason.CPUID) expect(v.lo(F.VM_EXIT_INSTRUCTION_LENGTH)).toBe(2);
      // 28.3.3: RIP of CPUID (or of the instruction that did not run), RSP, RFLAGS as the guest had them.
      expect(BigInt(v.num(F.GUEST_RIP))).toBe(c.guest.rip);
      expect(BigInt.asUintN(64, (BigInt(v.hi(F.GUEST_RSP)) << 32n) | BigInt(v.lo(F.GUEST_RSP) >>> 0))).toBe(c.guest.rsp);
      expect(v.lo(F.GUEST_RFLAGS) >>> 0).toBe(c.guest.rflags);
      // 28.5.3: RIP and RSP from the host-state area (the host's HLT at HOST_RIP has run), RFLAGS = 2.
      expect(r.cpu.rip).toBe(BigInt(v.num(F.HOST_RIP) + 1));
      expect(r.cpu.reg64(4)).toBe(BigInt(v.num(F.HOST_RSP)));
      expect(r.cpu.rflags).toBe(2);
      // 28.5.1, 28.5.2: CR3 and CS from the host-state area.
      expect(r.cpu.cr3Lo).toBe(v.lo(F.HOST_CR3));
      expect(r.cpu.segSel[1]).toBe(v.lo(F.HOST_CS_SELECTOR));
      expect(r.cpu.nonRoot).toBe(false);
      // 31.3 VMLAUNCH "Operation": a successful entry makes the launch state "launched".
      expect(v.launched).toBe(true);
    }), runs(150, 3));
  });
});

describe('VM-entry checks: one broken rule fails with exactly that rule (27.2, 27.3.1, 27.8, 31.3)', () => {
  const ids = Object.keys(VIOLATIONS).filter((id) => VIOLATIONS[id]!.applies?.(caps) ?? true);

  it('the table covers at least 25 distinct checks of controls, host state and guest state', () => {
    const checks = new Set(Object.values(VIOLATIONS).map((x) => `${x.kind}: ${x.check}`));
    expect(checks.size).toBeGreaterThanOrEqual(25);
    for (const kind of ['controls', 'host', 'guest']) {
      expect([...checks].filter((c) => c.startsWith(kind)).length).toBeGreaterThanOrEqual(8);
    }
  });

  it('every violation of the table, on the plain validVmcs, is the first failure (kind, check, section, qualification)', () => {
    for (const id of ids) {
      const x = VIOLATIONS[id]!;
      for (const kind of x.kinds ?? ['long', 'protected'] as const) {
        for (const k of [0, 1, 2, 3, 5, 8, 13, 100, 12345, 0x7fffffff]) {
          const v = baseVmcs(kind);
          x.mutate(v, k, caps);
          const f = firstFailure(v);
          expect({ id, kind, k, failure: f && { kind: f.kind, check: f.check, section: f.section, qualification: f.qualification } })
            .toEqual({ id, kind, k, failure: { kind: x.kind, check: x.check, section: x.section, qualification: x.qualification ?? 0 } });
        }
      }
    }
  });

  it('27.2, 27.3.1: a random valid configuration with one violation fails with exactly that check', () => {
    fc.assert(fc.property(violatingVmcsConfig(caps, { runnable: false }), (c) => {
      const v = baseVmcs(c.config.guest.kind);
      applyViolation(c, v, caps);
      const x = VIOLATIONS[c.violation]!, f = firstFailure(v);
      expect(f && { kind: f.kind, check: f.check, section: f.section, qualification: f.qualification })
        .toEqual({ kind: x.kind, check: x.check, section: x.section, qualification: x.qualification ?? 0 });
    }), runs(500, 4));
  });

  it('31.3 VMLAUNCH, 27.8: through the instruction, VMfailValid(7) for controls, VMfailValid(8) for host state, exit reason 80000021H for guest state', () => {
    fc.assert(fc.property(violatingVmcsConfig(caps), (c) => {
      const r = runInGuest(VMCALL, (v, cpu) => applyViolation(c, v, caps, cpu), { mode: guestMode(c.config), launch: 'instruction' });
      const x = VIOLATIONS[c.violation]!;
      expect(r.vmx.lastEntryFailure?.check).toBe(x.check);
      expect(r.vmcs.launched).toBe(false);
      if (x.kind === 'guest') {
        expect(r.exited).toBe(true);
        expect(hexOf(r.reason)).toBe(hexOf(ExitReason.VM_ENTRY_FAILURE_INVALID_GUEST_STATE | EXIT_REASON_VM_ENTRY_FAILURE));
        expect(r.qualification).toBe(BigInt(x.qualification ?? 0));
      } else {
        // VMfailValid: ZF = 1, CF = 0, the error number in the VM-instruction error field; VMLAUNCH falls through to the HLT after it.
        expect(r.exited).toBe(false);
        expect(r.stop).toEqual({ kind: 'halt' });
        expect(r.cpu.rip).toBe(BigInt(LAUNCH_ADDRESS + 4));
        expect(r.cpu.rflags & (CF | ZF)).toBe(ZF);
        expect(r.instructionError).toBe(x.kind === 'controls'
          ? VmInstructionError.ENTRY_INVALID_CONTROL_FIELDS : VmInstructionError.ENTRY_INVALID_HOST_STATE);
      }
    }), runs(150, 5));
  });
});

describe('VM entries after one that passed: checks are made again on changed inputs (27.2, 27.3.1)', () => {
  it('27.2, 27.3.1: a configuration that entered and exited, then given one violation, fails the next entry with exactly that check', () => {
    fc.assert(fc.property(violatingVmcsConfig(caps), (c) => {
      const r = runInGuest(VMCALL, (v, cpu) => applyVmcsConfig(c.config, v, cpu), { mode: guestMode(c.config) });
      expect(r.exited).toBe(true);
      applyViolation(c, r.vmcs, caps, r.cpu);
      vmEntry(r.vmx, r.cpu, false);
      expect(r.vmx.lastEntryFailure?.check).toBe(VIOLATIONS[c.violation]!.check);
    }), runs(150, 6));
  });
});

describe('I/O instructions (26.1.3 "I/O instructions", 25.6.4 I/O bitmaps, 28.2.1 table 28-5)', () => {
  const BITMAP_A = SCRATCH_PAGES, BITMAP_B = SCRATCH_PAGES + 0x1000;
  const ioCase = fc.constantFrom<GuestMode>(64, 32).chain((mode) => fc.record({
    mode: fc.constant(mode),
    insn: ioInstruction(mode),
    useBitmaps: fc.boolean(),
    unconditional: fc.boolean(),
    /** Bitmap bits set relative to the accessed port, and anywhere. */
    near: fc.array(fc.integer({ min: -4, max: 4 }), { maxLength: 4 }),
    far: fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 8 }),
  }));

  it('26.1.3: IN/OUT/INS/OUTS exit iff a bitmap bit of a port of the access is set (or the access wraps past FFFFH), or with unconditional I/O exiting and no bitmaps; the qualification has size, direction, string, REP, operand encoding, port', () => {
    fc.assert(fc.property(ioCase, ({ mode, insn, useBitmaps, unconditional, near, far }) => {
      const set = new Set([...near.map((d) => (insn.port + d) & 0xffff), ...far]);
      const r = runInGuest([...insn.bytes, ...VMCALL], (v, cpu) => {
        control(v, PROC, (useBitmaps ? bit(25) : 0) | (unconditional ? bit(24) : 0), (useBitmaps ? 0 : bit(25)) | (unconditional ? 0 : bit(24)));
        v.set(F.ADDRESS_OF_IO_BITMAP_A, BITMAP_A);
        v.set(F.ADDRESS_OF_IO_BITMAP_B, BITMAP_B);
        for (const p of set) {
          const at = (p < 0x8000 ? BITMAP_A : BITMAP_B) + ((p & 0x7fff) >>> 3);
          cpu.memory.write8(at, cpu.memory.read8(at) | (1 << (p & 7)));
        }
        setRegs(cpu, insn.regs);
      }, { mode });
      let exits = unconditional;
      if (useBitmaps) {
        exits = insn.port + insn.size > 0x10000;
        for (let p = insn.port; p < insn.port + insn.size; p++) if (set.has(p & 0xffff)) exits = true;
      }
      if (!exits) { expectNoExit(r, ExitReason.IO_INSTRUCTION); return; }
      expectInstructionExit(r, ExitReason.IO_INSTRUCTION, insn.bytes, mode);
      const q = (insn.size - 1) | (insn.isIn ? 8 : 0) | (insn.string ? 16 : 0) | (insn.rep ? 32 : 0) |
        (insn.immediate ? 64 : 0) | (insn.port << 16);
      expect(hexOf(Number(r.qualification))).toBe(hexOf(q));
      if (insn.string) {
        // 28.2.5, table 28-8: the address size, and the segment of OUTS.
        const info = r.vmcs.lo(F.VM_EXIT_INSTRUCTION_INFORMATION);
        expect((info >>> 7) & 7).toBe(mode === 64 ? 2 : 1);
        if (!insn.isIn) expect((info >>> 15) & 7).toBe(3);
      }
    }), runs(400, 6));
  });
});

describe('RDMSR and WRMSR (26.1.3, 25.6.9 MSR bitmaps)', () => {
  const msrCase = fc.record({
    insn: msrAccess(),
    useBitmaps: fc.boolean(),
    own: fc.boolean(),
    near: fc.array(fc.integer({ min: -9, max: 9 }), { maxLength: 4 }),
    /** The bit of the same MSR for the other direction (read vs write). */
    other: fc.boolean(),
  });
  /** Offset of the bitmap (read low, read high, write low, write high) and bit for an MSR; null outside both ranges. */
  const slot = (msr: number, write: boolean): { byte: number; bit: number } | null => {
    let base: number;
    if (msr <= 0x1fff) base = 0; else if (msr >= 0xc0000000 && msr <= 0xc0001fff) base = 1024; else return null;
    const n = msr & 0x1fff;
    return { byte: base + (write ? 2048 : 0) + (n >>> 3), bit: n & 7 };
  };

  it('25.6.9: RDMSR/WRMSR exit iff the bitmap bit for ECX is set, ECX is outside 0-1FFFH and C0000000H-C0001FFFH, or the bitmaps are off', () => {
    fc.assert(fc.property(msrCase, ({ insn, useBitmaps, own, near, other }) => {
      const bitsSet: { byte: number; bit: number }[] = [];
      const add = (msr: number, write: boolean): void => { const s = slot(msr >>> 0, write); if (s !== null) bitsSet.push(s); };
      if (own) add(insn.msr, insn.write);
      if (other) add(insn.msr, !insn.write);
      for (const d of near) if (d !== 0) add(insn.msr + d, insn.write);
      const r = runInGuest([...insn.bytes, ...VMCALL], (v, cpu) => {
        control(v, PROC, useBitmaps ? bit(28) : 0, useBitmaps ? 0 : bit(28));
        v.set(F.ADDRESS_OF_MSR_BITMAPS, SCRATCH_PAGES);
        for (const s of bitsSet) cpu.memory.write8(SCRATCH_PAGES + s.byte, cpu.memory.read8(SCRATCH_PAGES + s.byte) | (1 << s.bit));
        setRegs(cpu, insn.regs);
      });
      const mine = slot(insn.msr, insn.write);
      const exits = !useBitmaps || mine === null || own;
      const reason = insn.write ? ExitReason.WRMSR : ExitReason.RDMSR;
      if (exits) expectInstructionExit(r, reason, insn.bytes, 64);
      else expectNoExit(r, reason);
    }), runs(400, 7));
  });
});

describe('Exceptions and the exception bitmap (26.2, 28.2.2, 28.3.3)', () => {
  const PF = 14;
  /** A guest that raises one exception: bytes, the vector, interruption type, error code, offset of the faulting instruction. */
  interface Raise { name: string; bytes: number[]; vector: number; type: 3 | 5 | 6; code: number | null; at: number; setup?: (v: Vmcs, cpu: Cpu) => void }
  const others = (mode: GuestMode): Raise[] => [
    { name: '#UD (UD2)', bytes: [0x0f, 0x0b], vector: 6, type: 3, code: null, at: 0 },
    { name: '#BP (INT3)', bytes: [0xcc], vector: 3, type: 6, code: null, at: 0 },
    { name: '#DE (DIV by 0)', bytes: [0x31, 0xc9, 0xf7, 0xf1], vector: 0, type: 3, code: null, at: 2 },
    // MOV DS with a selector beyond the GDT limit (1FH): #GP(selector) (SDM vol. 2, MOV).
    { name: '#GP (MOV DS, 28H)', bytes: [0x66, 0xb8, 0x28, 0x00, 0x8e, 0xd8], vector: 13, type: 3, code: 0x28, at: 4 },
    ...(mode === 32 ? [{
      name: '#OF (INTO)', bytes: [0xce], vector: 4, type: 6 as const, code: null, at: 0,
      setup: (v: Vmcs) => v.set(F.GUEST_RFLAGS, v.lo(F.GUEST_RFLAGS) | OF),
    }] : []),
  ];
  const pageFault = (mode: GuestMode) => fc.record({
    kind: fc.constantFrom(...(mode === 64 ? ['not-present', 'read-only', 'reserved'] as const : ['not-present', 'read-only'] as const)),
    write: fc.boolean(),
    page: fc.integer({ min: 0, max: 15 }),
    offset: fc.integer({ min: 0, max: 0xff8 }),
  }).map(({ kind, write, page, offset }): Raise & { linear: number } => {
    const linear = 0x700000 + 0x1000 * page + offset, w = write || kind === 'read-only';
    const code = (kind === 'not-present' ? 0 : 1) | (w ? 2 : 0) | (kind === 'reserved' ? 8 : 0);
    // mov rax/eax, [rbx] or mov [rbx], rax/eax
    const bytes = [...(mode === 64 ? [0x48] : []), w ? 0x89 : 0x8b, 0x03];
    return {
      name: `#PF ${kind} ${w ? 'write' : 'read'} at ${hexOf(linear)}`, bytes, vector: PF, type: 3, code, at: 0, linear,
      setup: (v, cpu) => {
        const pte = guestPteAddress(linear, mode), frame = linear & ~0xfff;
        if (kind === 'not-present') cpu.memory.write32(pte, frame & ~1);
        if (kind === 'read-only') cpu.memory.write32(pte, frame | 5);
        if (kind === 'reserved') cpu.memory.write32(pte + 4, 1 << 10); // bit 42: beyond MAXPHYADDR (SDM vol. 3A, 4.5.4)
        cpu.setReg64(3, BigInt(linear));
        // CR0.WP: supervisor writes to read-only pages fault (SDM vol. 3A, 4.6.1).
        v.set(F.GUEST_CR0, v.lo(F.GUEST_CR0) | bit(16));
        cpu.cr2Lo = 0x0badc0de; // the guest's CR2 before the fault
      },
    };
  });
  const exceptionCase = fc.constantFrom<GuestMode>(64, 32).chain((mode) => fc.record({
    mode: fc.constant(mode),
    raise: fc.oneof(pageFault(mode), fc.constantFrom(...others(mode))) as fc.Arbitrary<Raise & { linear?: number }>,
    bitmap: fc.oneof(u32, fc.constantFrom(0, 0xffffffff)),
    mask: fc.oneof(fc.integer({ min: 0, max: 15 }), u32),
    match: fc.option(fc.oneof(fc.integer({ min: 0, max: 15 }), u32), { nil: null }),
  }));

  it('26.2: an exception exits iff its exception-bitmap bit is set; a #PF iff bit 14 = ((PFEC & mask) = match); the interruption information, error code, #PF qualification and RIP are right (28.2.2, 28.3.3)', () => {
    fc.assert(fc.property(exceptionCase, ({ mode, raise, bitmap, mask, match: m }) => {
      // With match null the match is the masked error code itself, so both sides of the #PF rule are reached.
      const match = m ?? (raise.code ?? 0) & mask;
      const r = runInGuest([...raise.bytes, ...VMCALL], (v, cpu) => {
        v.set(F.EXCEPTION_BITMAP, bitmap);
        v.set(F.PAGE_FAULT_ERROR_CODE_MASK, mask);
        v.set(F.PAGE_FAULT_ERROR_CODE_MATCH, match);
        raise.setup?.(v, cpu);
      }, { mode });
      const set = ((bitmap >>> raise.vector) & 1) === 1;
      const exits = raise.vector === PF ? set === (((raise.code! & mask) >>> 0) === (match >>> 0)) : set;
      expect(r.exited).toBe(true);
      if (!exits) {
        // Delivered through the guest IDT: the handler for the vector exits by VMCALL with AL = vector.
        expect(r.reason).toBe(ExitReason.VMCALL);
        expect(r.cpu.gpr[0]! & 0xff).toBe(raise.vector);
        expect(r.vmcs.num(F.GUEST_RIP)).toBe(HANDLERS + 8 * raise.vector + 2);
        if (raise.vector === PF) expect(r.cpu.cr2Lo >>> 0).toBe(raise.linear);
        return;
      }
      expect(r.reason).toBe(ExitReason.EXCEPTION_OR_NMI);
      const info = (0x80000000 | raise.vector | (raise.type << 8) | (raise.code !== null ? bit(11) : 0)) >>> 0;
      expect(hexOf(r.vmcs.lo(F.VM_EXIT_INTERRUPTION_INFORMATION))).toBe(hexOf(info));
      if (raise.code !== null) expect(r.vmcs.lo(F.VM_EXIT_INTERRUPTION_ERROR_CODE)).toBe(raise.code);
      // 28.3.3: a fault's RIP is the faulting instruction's; INT3/INTO's is the INT3/INTO instruction.
      expect(r.vmcs.num(F.GUEST_RIP)).toBe(GUEST_CODE + raise.at);
      // 28.2.4: software exceptions report the instruction length.
      if (raise.type === 6) expect(r.vmcs.lo(F.VM_EXIT_INSTRUCTION_LENGTH)).toBe(icedLength(raise.bytes.slice(raise.at), mode));
      if (raise.vector === PF) {
        // 28.2.1: the qualification is the linear address; 26.2 / 28.1: CR2 is not loaded.
        expect(r.qualification).toBe(BigInt(raise.linear!));
        expect(r.cpu.cr2Lo >>> 0).toBe(0x0badc0de);
      }
    }), runs(400, 8));
  });
});

describe('CR0 and CR4 guest/host masks and read shadows (26.1.3, 26.3, 28.2.1 table 28-3)', () => {
  const crCase = fc.constantFrom<GuestMode>(64, 32).chain((mode) => fc.record({
    mode: fc.constant(mode),
    insn: crAccess(mode, ['mov-to', 'mov-from', 'clts']),
    guest: guestState(mode === 64 ? 'long' : 'protected'),
    mask: fc.oneof(fc.constant(0), u32, u32.map((x) => x & 0x7000f)),
    /** The shadow: random, or equal to what the guest writes up to some flipped bits. */
    shadow: fc.oneof(u32.map((x) => ({ random: x, flip: 0 })), fc.integer({ min: 0, max: 0xff }).map((f) => ({ random: null, flip: f }))),
  }));

  it('26.1.3: MOV to CR0/CR4 exits iff a bit set in the mask differs from the shadow; else host-owned bits keep their value (26.3); MOV from CR0/CR4 reads (CR & ~mask) | (shadow & mask); CLTS exits iff mask.TS and shadow.TS', () => {
    fc.assert(fc.property(crCase, ({ mode, insn, guest, mask, shadow: s }) => {
      const current = insn.cr === 0 ? (guest.cr0 | 0x10) >>> 0 : guest.cr4;
      const value = (current ^ insn.flip) >>> 0;
      const shadow = (s.random ?? (value ^ s.flip)) >>> 0;
      const r = runInGuest([...insn.bytes, ...VMCALL], (v, cpu) => {
        v.set(F.GUEST_CR0, guest.cr0); v.set(F.GUEST_CR4, guest.cr4);
        v.set(insn.cr === 0 ? F.CR0_GUEST_HOST_MASK : F.CR4_GUEST_HOST_MASK, mask);
        v.set(insn.cr === 0 ? F.CR0_READ_SHADOW : F.CR4_READ_SHADOW, shadow);
        if (insn.op === 'mov-to') cpu.setReg64(insn.gpr, BigInt(value));
        if (insn.op === 'mov-from') cpu.setReg64(insn.gpr, 0xdeadbeefdeadbeefn);
      }, { mode });
      const saved = r.vmcs.lo(insn.cr === 0 ? F.GUEST_CR0 : F.GUEST_CR4) >>> 0;
      switch (insn.op) {
        case 'mov-to': {
          if (((value ^ shadow) & mask) !== 0) {
            expectInstructionExit(r, ExitReason.CONTROL_REGISTER_ACCESS, insn.bytes, mode);
            expect(hexOf(Number(r.qualification))).toBe(hexOf(insn.cr | (insn.gpr << 8)));
          } else {
            expectNoExit(r, ExitReason.CONTROL_REGISTER_ACCESS);
            expect(hexOf(saved)).toBe(hexOf((value & ~mask) | (current & mask)));
          }
          break;
        }
        case 'mov-from':
          expectNoExit(r, ExitReason.CONTROL_REGISTER_ACCESS);
          expect(r.cpu.reg64(insn.gpr)).toBe(BigInt(((current & ~mask) | (shadow & mask)) >>> 0));
          break;
        case 'clts': {
          const TS = 8;
          if (mask & TS && shadow & TS) {
            expectInstructionExit(r, ExitReason.CONTROL_REGISTER_ACCESS, insn.bytes, mode);
            expect(Number(r.qualification)).toBe(2 << 4);
          } else {
            expectNoExit(r, ExitReason.CONTROL_REGISTER_ACCESS);
            expect(saved & TS).toBe(mask & TS ? current & TS : 0);
          }
          break;
        }
      }
    }), runs(400, 9));
  });
});

describe('VM-exit instruction length (28.2.4) against iced-x86', () => {
  /** An instruction that exits with `reason` once `setup` sets its control. */
  interface Exiting { name: string; bytes: number[]; reason: number; setup?: (v: Vmcs) => void; memory?: boolean; modes?: GuestMode[] }
  const proc = (b: number) => (v: Vmcs): void => control(v, PROC, bit(b));
  const secondary = (b: number, p = 0) => (v: Vmcs): void => { control(v, PROC, bit(31) | p); control(v, SECONDARY, bit(b)); };
  const FORMS: Exiting[] = [
    { name: 'cpuid', bytes: [0x0f, 0xa2], reason: ExitReason.CPUID },
    { name: 'invd', bytes: [0x0f, 0x08], reason: ExitReason.INVD },
    { name: 'rdtsc', bytes: [0x0f, 0x31], reason: ExitReason.RDTSC, setup: proc(12) },
    { name: 'rdpmc', bytes: [0x0f, 0x33], reason: ExitReason.RDPMC, setup: proc(11) },
    { name: 'hlt', bytes: [0xf4], reason: ExitReason.HLT, setup: proc(7) },
    { name: 'rdmsr', bytes: [0x0f, 0x32], reason: ExitReason.RDMSR },
    { name: 'wrmsr', bytes: [0x0f, 0x30], reason: ExitReason.WRMSR },
    { name: 'in al, dx', bytes: [0xec], reason: ExitReason.IO_INSTRUCTION, setup: proc(24) },
    { name: 'out 80h, eax', bytes: [0xe7, 0x80], reason: ExitReason.IO_INSTRUCTION, setup: proc(24) },
    { name: 'invlpg m', bytes: [0x0f, 0x01], reason: ExitReason.INVLPG, setup: proc(9), memory: true },
    { name: 'wbinvd', bytes: [0x0f, 0x09], reason: ExitReason.WBINVD_WBNOINVD, setup: secondary(6) },
    { name: 'rdtscp', bytes: [0x0f, 0x01, 0xf9], reason: ExitReason.RDTSCP, setup: secondary(3, bit(12)) },
    { name: 'mov rbx, cr3', bytes: [0x0f, 0x20, 0xdb], reason: ExitReason.CONTROL_REGISTER_ACCESS, setup: proc(16) },
    { name: 'mov cr3, rbx', bytes: [0x0f, 0x22, 0xdb], reason: ExitReason.CONTROL_REGISTER_ACCESS, setup: proc(15) },
    { name: 'mov cr8, rax', bytes: [0x44, 0x0f, 0x22, 0xc0], reason: ExitReason.CONTROL_REGISTER_ACCESS, setup: proc(19), modes: [64] },
    { name: 'mov rax, dr7', bytes: [0x0f, 0x21, 0xf8], reason: ExitReason.MOV_DR, setup: proc(23) },
    { name: 'sgdt m', bytes: [0x0f, 0x01], reason: ExitReason.GDTR_IDTR_ACCESS, setup: secondary(2), memory: true },
    { name: 'str m', bytes: [0x0f, 0x00], reason: ExitReason.LDTR_TR_ACCESS, setup: secondary(2), memory: true },
    { name: 'vmcall', bytes: [0x0f, 0x01, 0xc1], reason: ExitReason.VMCALL },
    { name: 'vmptrld m', bytes: [0x0f, 0xc7], reason: ExitReason.VMPTRLD, memory: true },
    { name: 'vmread rax, rbx', bytes: [0x0f, 0x78, 0xd8], reason: ExitReason.VMREAD },
    { name: 'vmxoff', bytes: [0x0f, 0x01, 0xc4], reason: ExitReason.VMXOFF },
  ];
  /** ModRM.reg of the memory forms: INVLPG /7, SGDT /0, STR /1, VMPTRLD /6. */
  const REG: Record<string, number> = { 'invlpg m': 7, 'sgdt m': 0, 'str m': 1, 'vmptrld m': 6 };
  const modrmMemory = fc.record({
    mod: fc.integer({ min: 0, max: 2 }), rm: fc.integer({ min: 0, max: 7 }), sib: fc.integer({ min: 0, max: 255 }),
    disp: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }),
  });
  const SEGMENT_PREFIXES = [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65];
  const lengthCase = fc.constantFrom<GuestMode>(64, 32).chain((mode) => fc.record({
    mode: fc.constant(mode),
    form: fc.constantFrom(...FORMS.filter((f) => (f.modes ?? [64, 32]).includes(mode))),
    prefixes: fc.array(fc.constantFrom(...SEGMENT_PREFIXES), { maxLength: 4 }),
    m: modrmMemory,
  }));

  it('28.2.4: the VM-exit instruction length of an exiting instruction, with segment prefixes and any memory operand, is the decoder\'s length', () => {
    fc.assert(fc.property(lengthCase, ({ mode, form, prefixes, m }) => {
      let tail: number[] = [];
      if (form.memory) {
        tail = [(m.mod << 6) | (REG[form.name]! << 3) | m.rm];
        const sib = m.rm === 4;
        if (sib) tail.push(m.sib);
        const disp32 = m.mod === 2 || (m.mod === 0 && (m.rm === 5 || (sib && (m.sib & 7) === 5)));
        tail.push(...(disp32 ? m.disp : m.mod === 1 ? m.disp.slice(0, 1) : []));
      }
      // Legacy prefixes first: a REX prefix (MOV CR8) stays next to the opcode.
      const ordered = [...prefixes, ...form.bytes, ...tail];
      const r = runInGuest([...ordered, ...VMCALL], (v) => form.setup?.(v), { mode });
      expect(r.exited).toBe(true);
      expect({ name: form.name, reason: r.reason }).toEqual({ name: form.name, reason: form.reason });
      expect(r.vmcs.lo(F.VM_EXIT_INSTRUCTION_LENGTH)).toBe(icedLength(ordered, mode));
      expect(r.vmcs.lo(F.VM_EXIT_INSTRUCTION_LENGTH)).toBe(ordered.length);
      expect(r.vmcs.num(F.GUEST_RIP)).toBe(GUEST_CODE);
    }), runs(300, 10));
  });
});

