import { describe, expect, it } from 'vitest';
import { vmConfig } from '../hv/config.js';
import { createVm, HOST_TIMER_VECTOR } from '../hv/vm.js';
import { COMMAND_NAMES, DebugSession, PROMPT, runScript } from './repl.js';
import { expectSameTranscript } from './transcript-compare.js';
import { guestImage, guestSession, outputOf, tinyEngine, transcriptFile, transcriptScript } from './testing.js';

/** Runs the commands of a transcript file (its prompt lines) and returns the new transcript. */
function replay(expected: readonly string[], guest: string): string[] {
  const out: string[] = [];
  runScript(guestSession(guest), transcriptScript(expected), (l) => out.push(l));
  return out;
}

describe('transcripts', () => {
  it('oracle-hello: next-exit, exit, vmcs, vmcs diff, a conditional exit breakpoint, back-exit, regs, x, translate, disasm, trace', () => {
    const expected = transcriptFile('oracle-hello');
    const actual = replay(expected, 'oracle-hello.bin');
    expectSameTranscript(actual, expected);
    // What the transcript says agrees with a plain run of the VM (no debugger) ...
    const vm = createVm(vmConfig({}));
    vm.load(guestImage('oracle-hello.bin'));
    const first = vm.runUntilExit();
    if ('kind' in first) throw new Error('no exit');
    expect(outputOf(actual, 'exit')[1]).toBe(`  rip 0x${first.rip.toString(16)}, instruction length ${first.length}: ${first.insn}`);
    expect(outputOf(actual, 'vmcs EXIT_QUALIFICATION')[0]).toMatch(new RegExp(`^EXIT_QUALIFICATION = 0x${first.qualification.toString(16)} .*PORT_NUMBER=0x3fb$`));
    // ... and with itself: the exit breakpoint's stops are IO exits to 3F8H; back-exit lands on the exit before.
    expect(outputOf(actual, 'continue', 0)[1]).toMatch(/^at exit #6 IO_INSTRUCTION .*out dx, al/);
    expect(outputOf(actual, 'continue', 1)).toContainEqual(expect.stringMatching(/^at exit #8 /));
    expect(outputOf(actual, 'back-exit', 0)[0]).toMatch(/^at exit #7 /);
    expect(outputOf(actual, 'vmcs diff', 1)).toContain('    GUEST_RIP: 0x100231 -> 0x100232');
    // The serial output appears once, in order, though parts of the run were run twice.
    expect(actual.filter((l) => l.startsWith('serial| '))).toHaveLength(12);
  });

  it('demo: the host timer exit (vector ECH), the IRQ 0 its handler injects, sregs of a CPL-3 task, then to the final HLT', () => {
    const expected = transcriptFile('demo');
    const actual = replay(expected, 'demo.bin');
    expectSameTranscript(actual, expected);
    expect(outputOf(actual, 'exit')).toContain(`  interruption: vector ${HOST_TIMER_VECTOR}, external interrupt`);
    // Before the handler nothing is injected; after it, IRQ 0 of the 8259A (vector 20H) is (SDM 25.8.3).
    expect(outputOf(actual, 'vmcs VM_ENTRY_INTERRUPTION_INFORMATION_FIELD', 0)[0]).toMatch(/= 0x20 {2}not valid$/);
    expect(outputOf(actual, 'vmcs VM_ENTRY_INTERRUPTION_INFORMATION_FIELD', 1)[0]).toMatch(/= 0x80000020 {2}VECTOR=0x20 INTERRUPTION_TYPE=0 \(external interrupt\)/);
    expect(actual).toContain('serial| kernel: all tasks done: 55 timer ticks, 49 task switches (MOV to CR3), 20 lines written');
  });

  it('tiny guest: watchpoints stop after the access, execute watchpoints and address breakpoints before the instruction', () => {
    const expected = transcriptFile('tiny');
    const actual = replay(expected, 'tiny');
    expectSameTranscript(actual, expected);
    expect(outputOf(actual, 'continue', 0)[1]).toBe('in the guest: rip 0x100a  mov al, [rdi]  [2 instructions, 0 exits]');
    expect(outputOf(actual, 'x p:0x2000 1', 1)).toEqual(['p:0x2000: 00                                               |.|']);
  });

  it('mistakes: each is one line starting error:, with a suggestion where one is close, and the session goes on', () => {
    const expected = transcriptFile('mistakes');
    const actual = replay(expected, 'oracle-hello.bin');
    expectSameTranscript(actual, expected);
    const answers = actual.filter((l) => !l.startsWith(PROMPT));
    expect(answers.filter((l) => l.startsWith('error: ')).length).toBeGreaterThanOrEqual(24);
    expect(outputOf(actual, 'stpe')).toEqual(["error: unknown command 'stpe' (did you mean step?); help lists the commands"]);
    expect(outputOf(actual, 'vmcs GUEST_RIPP')).toEqual(["error: unknown VMCS field 'GUEST_RIPP' (did you mean GUEST_RIP or GUEST_RSP?)"]);
    expect(outputOf(actual, 'where')).toEqual(['in the guest: rip 0x100220  cmp eax, 0x2badb002  [0 instructions, 0 exits]']);
  });
});

describe('the command language', () => {
  it('has help for every command and alias', () => {
    const s = new DebugSession(tinyEngine());
    for (const name of COMMAND_NAMES) {
      const r = s.execute(`help ${name}`).lines;
      expect(r).toHaveLength(2);
      expect(r[1]!.trim().length).toBeGreaterThan(10);
    }
    expect(s.execute('help').lines.length).toBeGreaterThan(COMMAND_NAMES.length / 3);
  });

  it('completes commands, VMCS fields, exit reasons and their conditions', () => {
    const s = new DebugSession(tinyEngine());
    expect(s.complete('ste')[0]).toEqual(['step', 'stepi']);
    expect(s.complete('vmcs GUEST_RI')).toEqual([['GUEST_RIP'], 'GUEST_RI']);
    expect(s.complete('vmcs gu')[0]).toContain('guest');
    expect(s.complete('break exit IO_IN')[0]).toEqual(['IO_INSTRUCTION']);
    expect(s.complete('break exit IO_INSTRUCTION PORT')[0]).toEqual(['PORT_NUMBER=', 'port=']);
    expect(s.complete('nothing-like-this')[0]).toEqual([]);
  });

  it('quit ends a script; an interrupted run stops between slices', async () => {
    const out: string[] = [];
    const s = new DebugSession(tinyEngine());
    runScript(s, 'step\nquit\nstep', (l) => out.push(l));
    expect(out).toEqual([`${PROMPT}step`, 'in the guest: rip 0x1007  mov byte [rdi], 1  [1 instruction, 0 exits]', `${PROMPT}quit`]);
    const demo = guestSession('demo.bin');
    let asked = 0;
    const r = await demo.executeAsync('continue', () => ++asked >= 1);
    expect(r.lines.at(-2)).toBe('interrupted');
    expect(demo.engine.position.insns).toBeGreaterThanOrEqual(5_000_000);
    expect(demo.engine.position.insns).toBeLessThan(10_897_272);
  });

  it("refuses quit from gdb's monitor and says gdb's registers are stale after a command that moves the guest", () => {
    const s = new DebugSession(tinyEngine(), { monitor: true });
    expect(s.execute('quit')).toEqual({ lines: ["error: quit ends the hvsim session, not gdb's: use gdb's detach or kill"], quit: false });
    expect(s.execute('step').lines.at(-1)).toMatch(/maintenance flush register-cache/);
    expect(s.execute('regs').lines.at(-1)).not.toMatch(/maintenance/);
  });
});
