/**
 * The hypervisor's exits, as a property: for random guest programs built from
 * instructions that may exit and a random choice of the exits the hypervisor
 * takes, the run under the hypervisor exits exactly where the SDM says the
 * controls call for it (vol. 3C 26.1, 25.6), each exit with the exiting
 * instruction's RIP and length (28.2.5, 28.3.3), and the guest ends in the same
 * state as on the bare processor: the default handlers emulate each
 * instruction exactly (the programs clear the two CPUID bits the hypervisor
 * changes on purpose). A fixed seed per run (HVSIM_FUZZ_SEED moves it);
 * HVSIM_FUZZ_RUNS multiplies the number of cases.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Field } from '../vmcs/fields.js';
import { GPR_NAMES } from '../src/cpu/regs.js';
import { loadImage } from '../src/platform/loaders/index.js';
import { PcMachine } from '../src/platform/machine.js';
import { vmConfig } from '../src/hv/config.js';
import { EMULATED_MSRS } from '../src/hv/handlers.js';
import { createVm, type Vm } from '../src/hv/vm.js';
import { ExitReason } from '../vmcs/exit-reasons.js';
import { memoryOperand } from '../src/hv/memory-operand.js';
import { expectedExits, hypervisorProgram, programImage, PROGRAM_BASE, STACK_TOP, type ExpectedExit, type HypervisorProgram } from './hv-programs.js';

const RUNS = 60 * Math.max(1, Math.floor(Number(process.env.HVSIM_FUZZ_RUNS) || 1));
const SEED = Number(process.env.HVSIM_FUZZ_SEED ?? 0x6876) | 0;
const BUDGET = 10_000;
const MEMORY = 16 << 20;
const LOAD = { format: 'flat', mode: '64', load: PROGRAM_BASE } as const;

/** What the guest can see of itself: its registers, flags and control registers as it reads them. */
interface GuestState { gprs: string[]; rip: string; rflags: number; cr0: number; cr3: number; cr4: number; instructions: number }

function bareRun(image: Uint8Array): GuestState {
  const m = new PcMachine({ memorySize: MEMORY });
  loadImage(m.cpu, image, { ...LOAD, memorySize: MEMORY });
  expect(m.run(BUDGET)).toEqual({ kind: 'halt' });
  const c = m.cpu;
  return {
    gprs: GPR_NAMES.map((_, k) => c.reg64(k).toString(16)), rip: c.rip.toString(16), rflags: c.rflags,
    cr0: c.cr0 | 0, cr3: c.cr3Lo | 0, cr4: c.cr4 | 0, instructions: c.insnCount,
  };
}

/** The guest's view: bits the host owns read as the read shadow has them (25.6.6). */
function guestView(vm: Vm): GuestState {
  const g = vm.guest, v = vm.vmcs;
  const seen = (value: number, shadow: number, mask: number): number => (v.lo(value) & ~v.lo(mask)) | (v.lo(shadow) & v.lo(mask));
  return {
    gprs: GPR_NAMES.map((_, k) => g.reg(k).toString(16)), rip: g.rip.toString(16), rflags: g.rflags,
    cr0: seen(Field.GUEST_CR0, Field.CR0_READ_SHADOW, Field.CR0_GUEST_HOST_MASK) | 0,
    cr3: v.lo(Field.GUEST_CR3) | 0,
    cr4: seen(Field.GUEST_CR4, Field.CR4_READ_SHADOW, Field.CR4_GUEST_HOST_MASK) | 0,
    instructions: vm.instructions,
  };
}

function hypervisorRun(p: HypervisorProgram, image: Uint8Array): { exits: ExpectedExit[]; vm: Vm; stop: string } {
  const vm = createVm(vmConfig({ memory: MEMORY, exits: p.exits }));
  vm.load(image, LOAD);
  const exits: ExpectedExit[] = [];
  for (;;) {
    const e = vm.runUntilExit(BUDGET);
    if ('kind' in e) return { exits, vm, stop: e.kind };
    // The host's own timer is not the guest's doing (the programs arm none, so there is none).
    exits.push({ reason: e.reason, rip: Number(e.rip), length: e.length });
    if (e.reason === ExitReason.INVPCID) {
      // INVPCID rax, [rsp] (28.2.5): the type register RAX in bits 31:28, the operand at the pushed descriptor.
      expect((e.instructionInformation >>> 28) & 15).toBe(0);
      expect(memoryOperand(vm.guest, e.instructionInformation, e.qualification)).toBe(BigInt(STACK_TOP - 16));
    }
    const result = vm.handle(e);
    if (result !== 'resume') return { exits, vm, stop: result.kind };
    const failed = vm.resume();
    if (failed !== null) return { exits, vm, stop: failed.kind };
  }
}

describe('the hypervisor exits where the controls say and the guest cannot tell (SDM vol. 3C 25.6, 26.1, 28.2)', () => {
  it(`${RUNS} random programs: the trace is the expected exits, with RIP and length; final state as on the bare processor`, () => {
    fc.assert(fc.property(hypervisorProgram(), (p) => {
      const image = programImage(p);
      const bare = bareRun(image);
      const hv = hypervisorRun(p, image);
      const v = hv.vm.vmcs;
      const intercepted = p.exits.msrBitmaps === false ? [] : [...EMULATED_MSRS, ...(p.exits.msrIntercepts ?? [])];
      const expected = expectedExits(p, { cr0Mask: v.lo(Field.CR0_GUEST_HOST_MASK), cr4Mask: v.lo(Field.CR4_GUEST_HOST_MASK), msrIntercepts: intercepted });
      const listing = p.steps.map((s) => s.text).join('; ');
      expect(hv.exits, listing).toEqual(expected);
      // The guest halted with interrupts off: under HLT exiting the handler says so, without it the processor halts.
      expect(hv.stop).toBe('halt');
      expect(guestView(hv.vm), listing).toEqual(bare);
    }), { seed: SEED, numRuns: RUNS });
  });

  it('each kind of step can exit and can run without an exit (the property is not vacuous)', () => {
    let exiting = 0, silent = 0;
    for (const p of fc.sample(hypervisorProgram(), { seed: SEED, numRuns: 200 })) {
      const e = expectedExits(p, { cr0Mask: 1 << 5, cr4Mask: 1 << 13, msrIntercepts: EMULATED_MSRS });
      const steps = p.steps.reduce((n, s) => n + s.points.length, 0) + (p.exits.hlt !== false ? 1 : 0);
      exiting += e.length;
      silent += steps - e.length;
    }
    expect(exiting).toBeGreaterThan(200);
    expect(silent).toBeGreaterThan(200);
  });
});
