import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { EXTERNAL_BREAK } from '../cpu/cpu.js';
import type { ExitHandler } from '../hv/handlers.js';
import { parseCondition } from './breakpoints.js';
import { comparePositions, type DebugEngine } from './engine.js';
import { GuestState } from './guest-state.js';
import { whyEntryFailedLines } from './inspect.js';
import { guestEngine, tinyEngine } from './testing.js';

const rip = (e: DebugEngine): bigint => new GuestState(e.vm).rip;
const byte = (e: DebugEngine, at: bigint): number => new GuestState(e.vm).read('linear', at, 1).bytes[0]!;

describe('running forward', () => {
  it('steps guest instructions; an instruction that exits counts once its handler has completed it', () => {
    const e = tinyEngine();
    expect(e.step(3).reason).toBe('step');
    expect(e.position).toEqual({ exits: 0, atExit: false, insns: 3 });
    expect(rip(e)).toBe(0x100cn);
    // OUT 80H exits (IO_INSTRUCTION); the handler retires it: one step.
    expect(e.step().reason).toBe('step');
    expect(e.position).toEqual({ exits: 1, atExit: false, insns: 4 });
    expect(rip(e)).toBe(0x100en);
    expect(e.atExit).toBeNull();
  });

  it('next-exit stops before the handler: GUEST_RIP is the exiting instruction, not yet retired', () => {
    const e = tinyEngine();
    const s = e.nextExit();
    expect(s.reason).toBe('exit');
    expect(s.exit).toMatchObject({ seq: 1, name: 'IO_INSTRUCTION', rip: 0x100cn, instructions: 3 });
    expect(s.exit!.decoded.PORT_NUMBER).toBe(0x80);
    expect(e.position).toEqual({ exits: 1, atExit: true, insns: 3 });
    expect(e.atExit?.seq).toBe(1);
    expect(rip(e)).toBe(0x100cn);
    expect(e.nextExit(2).exit).toMatchObject({ seq: 3, name: 'HLT', rip: 0x1014n });
    // The HLT handler finds IF = 0: the guest has stopped for good, and stays so.
    expect(e.continue()).toEqual({ reason: 'ended', ended: { kind: 'halt' } });
    expect(e.step().reason).toBe('ended');
  });

  it('stops at an address breakpoint before the instruction there, in the middle of a block, and steps over it on continue', () => {
    const e = tinyEngine();
    const bp = e.addBreakpoint({ kind: 'address', address: 0x100an });
    const s = e.continue();
    expect(s).toMatchObject({ reason: 'breakpoint', breakpoint: { id: bp.id, hits: 1 } });
    expect(e.position).toEqual({ exits: 0, atExit: false, insns: 2 });
    expect(rip(e)).toBe(0x100an);
    // The hook is armed only while a command runs.
    expect(e.vm.cpu.breakOnExecute & EXTERNAL_BREAK).toBe(0);
    expect(e.vm.cpu.executionHook).toBeNull();
    // Continuing from it executes it; without stepOverHere (gdb's way) it stops there at once.
    expect(e.continue({ stepOverHere: false }).reason).toBe('breakpoint');
    expect(e.position.insns).toBe(2);
    expect(e.continue()).toEqual({ reason: 'ended', ended: { kind: 'halt' } });
  });

  it('stops on an exit by reason and condition: qualification fields (or short names), record fields, VMCS fields', () => {
    const e = guestEngine('oracle-hello.bin');
    const fields = e.fields;
    const port = e.addBreakpoint({ kind: 'exit', reason: ExitReason.IO_INSTRUCTION, conditions: [parseCondition('port=0x3f8', 30, fields)] });
    const s = e.continue();
    expect(s.breakpoint?.id).toBe(port.id);
    expect(s.exit).toMatchObject({ seq: 2, rip: 0x100238n });
    expect(s.exit!.decoded.PORT_NUMBER).toBe(0x3f8);
    e.deleteBreakpoint(port.id);
    e.addBreakpoint({ kind: 'exit', reason: 30, conditions: [parseCondition('DIRECTION=IN', 30, fields)] });
    expect(e.continue().exit).toMatchObject({ seq: 5, insn: 'in al, dx' });
    e.deleteBreakpoint(e.breakpoints[0]!.id);
    e.addBreakpoint({ kind: 'exit', reason: null, conditions: [parseCondition('GUEST_RIP=0x1004ed', null, fields), parseCondition('rip!=0', null, fields)] });
    expect(e.continue().exit).toMatchObject({ seq: 6, rip: 0x1004edn });
  });

  it('stops when the guest has retired N instructions', () => {
    const e = tinyEngine();
    e.addBreakpoint({ kind: 'instruction', count: 5 });
    expect(e.continue().reason).toBe('breakpoint');
    expect(e.position).toEqual({ exits: 2, atExit: false, insns: 5 });
    expect(rip(e)).toBe(0x1010n);
    expect(e.continue().reason).toBe('ended');
  });

  it('watchpoints: a write or read of linear or physical memory stops after the instruction; execute stops before it', () => {
    const e = tinyEngine();
    e.addBreakpoint({ kind: 'watch', space: 'linear', access: 'write', address: 0x2000n, length: 1 });
    e.addBreakpoint({ kind: 'watch', space: 'physical', access: 'read', address: 0x2000n, length: 4 });
    e.addBreakpoint({ kind: 'watch', space: 'physical', access: 'execute', address: 0x100en, length: 1 });
    let s = e.continue();
    expect(s).toMatchObject({ reason: 'breakpoint', breakpoint: { id: 1 }, access: { linear: 0x2000n, physical: 0x2000, size: 1, write: true } });
    expect(rip(e)).toBe(0x100an);
    expect(byte(e, 0x2000n)).toBe(1);
    s = e.continue();
    expect(s).toMatchObject({ breakpoint: { id: 2 }, access: { write: false } });
    expect(rip(e)).toBe(0x100cn);
    s = e.continue();
    expect(s.breakpoint?.id).toBe(3);
    expect(e.position).toEqual({ exits: 1, atExit: false, insns: 4 });
    expect(rip(e)).toBe(0x100en);
  });
});

describe('going back', () => {
  it('reverse-step restores registers and memory; running forward again repeats the run', () => {
    const e = tinyEngine({ snapshotInterval: 1 });
    e.step(2);
    expect(byte(e, 0x2000n)).toBe(1);
    expect(e.reverseStep().reason).toBe('arrived');
    expect(e.position).toEqual({ exits: 0, atExit: false, insns: 1 });
    expect(rip(e)).toBe(0x1007n);
    expect(byte(e, 0x2000n)).toBe(0);
    expect(new GuestState(e.vm).reg(7)).toBe(0x2000n);
    e.step();
    expect(byte(e, 0x2000n)).toBe(1);
    expect(e.reverseStep(100).reason).toBe('arrived');
    expect(e.position).toEqual(e.start);
    expect(e.reverseStep().reason).toBe('start');
  });

  it('back-exit goes to the previous exit before its handler, with the exit record and the VMCS of then', () => {
    const e = tinyEngine();
    e.nextExit(3);
    expect(e.backExit()).toEqual({ reason: 'arrived' });
    expect(e.atExit).toMatchObject({ seq: 2, name: 'CPUID' });
    expect(e.vm.vmcs.lo(Field.EXIT_REASON)).toBe(ExitReason.CPUID);
    expect(rip(e)).toBe(0x100en);
    e.step();
    expect(e.backExit()).toEqual({ reason: 'arrived' });
    expect(e.atExit?.seq).toBe(2);
    expect(e.backExit(5).reason).toBe('start');
    expect(e.atExit?.seq).toBe(2);
    // Forward again: the same exits.
    expect(e.nextExit().exit).toMatchObject({ seq: 3, name: 'HLT', instructions: 7 });
  });

  it("a user's write changes the run from there; going back to before it undoes it", () => {
    const e = tinyEngine();
    e.step(5);
    const g = new GuestState(e.vm);
    const rax = g.reg(0);
    e.mutate(() => g.setRegister(0, 0x1234n));
    e.step();
    expect(g.reg(0)).toBe(0x1235n);
    expect(e.reverseStep().reason).toBe('arrived');
    expect(g.reg(0)).toBe(0x1234n);
    const s = e.reverseStep();
    expect(s.undoneWrites).toBe(1);
    e.step(2);
    expect(g.reg(0)).toBe(rax + 1n);
  });

  it('try again: go back to an exit, replace its handler, run on with it; going back before the change undoes it', () => {
    const e = tinyEngine();
    const g = new GuestState(e.vm);
    e.continue();
    const real = g.reg(0);
    e.backExit(2);
    expect(e.atExit?.name).toBe('CPUID');
    const original = e.vm.handlers.get(ExitReason.CPUID)!;
    e.vm.handlers.set(ExitReason.CPUID, (x, vm) => { vm.guest.setReg(0, 0x41n); vm.guest.retire(x.length); return 'resume'; });
    expect(e.continue().reason).toBe('ended');
    expect(g.reg(0)).toBe(0x42n);
    // Back and forth after the change: the new handler is part of the run now.
    e.backExit();
    e.continue();
    expect(g.reg(0)).toBe(0x42n);
    // Before the change, the old handler: the change is undone.
    expect(e.backExit(3).undoneWrites).toBe(1);
    expect(e.vm.handlers.get(ExitReason.CPUID)).toBe(original);
    e.continue();
    expect(g.reg(0)).toBe(real);
  });

  it('prints the serial output once, however often a stretch is run again', () => {
    let out = '';
    const e = guestEngine('oracle-hello.bin', { serialOut: (b) => { out += String.fromCharCode(b); }, snapshotInterval: 20_000 });
    e.continue();
    const once = out;
    expect(once).toContain('oracle-hello: done');
    e.backExit(500);
    e.continue();
    e.reverseStep(9000);
    e.continue();
    expect(out).toBe(once);
  });

  it('keeps at most maxSnapshots snapshots, thinning them, and still goes back anywhere', () => {
    const e = guestEngine('oracle-hello.bin', { snapshotInterval: 500, maxSnapshots: 4 });
    const trace = (): string[] => e.trace(2000).map((r) => `${r.seq} ${r.name} ${r.rip} ${r.instructions}`);
    e.continue();
    const all = trace();
    const stats = e.snapshotStats();
    expect(stats.count).toBeLessThanOrEqual(5);
    expect(stats.interval).toBeGreaterThan(500);
    expect(stats.bytes).toBeGreaterThan(0);
    expect(all).toHaveLength(882);
    for (const seq of [700, 3, 1]) {
      e.goTo({ exits: seq, atExit: true, insns: e.exitAt(seq)!.record.instructions });
      expect(e.atExit?.seq).toBe(seq);
    }
    e.continue();
    expect(trace()).toEqual(all);
  });

  it('orders positions: an exit comes after the guest stood at its instruction count, before its handler', () => {
    expect(comparePositions({ exits: 1, atExit: true, insns: 3 }, { exits: 0, atExit: false, insns: 3 })).toBeGreaterThan(0);
    expect(comparePositions({ exits: 1, atExit: true, insns: 3 }, { exits: 1, atExit: false, insns: 4 })).toBeLessThan(0);
    expect(comparePositions({ exits: 1, atExit: false, insns: 4 }, { exits: 1, atExit: false, insns: 4 })).toBe(0);
  });
});

describe('failed VM entries', () => {
  const wrap = (e: DebugEngine, reason: number, after: (e: DebugEngine) => void): void => {
    const handler: ExitHandler = e.vm.handlers.get(reason)!;
    e.vm.handlers.set(reason, (x, vm) => { const r = handler(x, vm); after(e); return r; });
  };

  it('an invalid guest state is an exit with bit 31 (27.8): a break entry-failure stops there, why-entry-failed names the check', () => {
    const e = tinyEngine();
    // The CPUID handler leaves CR0.PG = 1 with CR0.PE = 0.
    wrap(e, ExitReason.CPUID, (x) => x.vm.vmcs.set(Field.GUEST_CR0, x.vm.vmcs.lo(Field.GUEST_CR0) & ~1));
    const bp = e.addBreakpoint({ kind: 'entry-failure' });
    const s = e.continue();
    expect(s.breakpoint?.id).toBe(bp.id);
    expect(s.exit).toMatchObject({ seq: 3, reason: ExitReason.VM_ENTRY_FAILURE_INVALID_GUEST_STATE, entryFailure: true });
    const why = whyEntryFailedLines(e.vm.vmx.lastEntryFailure);
    expect(why[0]).toMatch(/exit with reason 33 and bit 31 set/);
    expect(why[1]).toMatch(/^check: \S+/);
    expect(why[2]).toMatch(/^SDM 27\.3\.1/);
  });

  it('invalid control fields fail VMRESUME with VMfailValid(7): the guest stops, why-entry-failed says which check', () => {
    const e = tinyEngine();
    wrap(e, ExitReason.IO_INSTRUCTION, (x) => x.vm.vmcs.set(Field.PIN_BASED_VM_EXECUTION_CONTROLS, 0));
    const s = e.continue();
    expect(s.reason).toBe('ended');
    expect(s.ended).toMatchObject({ kind: 'entry-failed', failure: { kind: 'controls' } });
    const why = whyEntryFailedLines(e.vm.vmx.lastEntryFailure);
    expect(why[0]).toMatch(/VM-instruction error 7/);
    expect(why[2]).toMatch(/^SDM 27\.2\.1/);
    // Going back before the failure, the entry that follows has not failed yet.
    e.backExit();
    expect(whyEntryFailedLines(e.vm.vmx.lastEntryFailure)[0]).toMatch(/^no VM entry has failed/);
  });
});
