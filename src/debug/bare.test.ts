/**
 * The debugger over the bare machine (bare-engine.ts, bare-session.ts) on
 * guests/vmx-basic.bin: a real hypervisor in VMX root operation whose guest
 * makes CPUIDs, an OUT to port 80H, an RDMSR, a HLT and a VMCALL (all exit),
 * then two VM entries that fail (27.2.1.1 controls; 27.3.1.4 guest RFLAGS).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bundledGuest } from '../cli/image.js';
import { BareEngine } from './bare-engine.js';
import { BareSession } from './bare-session.js';
import { runScript, SerialLines } from './repl.js';
import { guestImage, outputOf, transcriptFile, transcriptScript } from './testing.js';
import { expectSameTranscript } from './transcript-compare.js';

const IMAGE = new Uint8Array(readFileSync(bundledGuest('vmx-basic.bin')));
/** HOST_RIP of vmx-basic's first VMCS (vm_exit). */
const HANDLER = 0x1012c0n;

function session(guest = 'vmx-basic.bin'): { s: BareSession; e: BareEngine; run: (script: string) => string[] } {
  const serial = new SerialLines();
  const e = new BareEngine({ image: guest === 'vmx-basic.bin' ? IMAGE : guestImage(guest), serialOut: (b) => serial.push(b) });
  const s = new BareSession(e, { serial });
  const run = (script: string): string[] => {
    const out: string[] = [];
    runScript(s, script, (l) => { if (!l.startsWith('serial| ')) out.push(l); });
    return out;
  };
  return { s, e, run };
}

describe('hvsim debug --bare (the image\'s own hypervisor)', () => {
  it('next-exit stops at HOST_RIP with the exit complete; exit decodes it from the VMCS; finish-handler returns to the guest; vmcs diff shows the handler\'s VMWRITE', () => {
    const { e, run } = session();
    expect(run('next-exit\nexit\nvmcs diff\nvmcs EXIT_REASON\nwhere')).toEqual([
      '(hvsim) next-exit',
      'VM exit #1 CPUID (reason 10) at guest rip 0x10120f: cpuid',
      'at exit #1 CPUID (reason 10), first instruction of the root-mode handler (HOST_RIP), VMX root operation: rip 0x1012c0  push rax  [7247 instructions, 1 exit]',
      '(hvsim) exit',
      'exit #1: CPUID (basic exit reason 10), its handler has not run yet',
      '  rip 0x10120f, instruction length 2: cpuid',
      '  qualification 0x0',
      '  7247 instructions since the previous exit, 7247 in all',
      '  the VMCS at 0x112000; the handler at HOST_RIP 0x1012c0',
      '(hvsim) vmcs diff',
      'at exit #1 CPUID: its handler has not run yet',
      '(hvsim) vmcs EXIT_REASON',
      'EXIT_REASON = 0xa  CPUID',
      '(hvsim) where',
      'at exit #1 CPUID (reason 10), first instruction of the root-mode handler (HOST_RIP), VMX root operation: rip 0x1012c0  push rax  [7247 instructions, 1 exit]',
    ]);
    expect(e.cpu.rip).toBe(HANDLER);
    expect(e.cpu.nonRoot).toBe(false);
    // One step runs the handler's first instruction: the processor is in its root-mode code.
    expect(run('step\nvmcs diff')).toEqual([
      '(hvsim) step',
      'in VMX root operation (the handler of exit #1 CPUID): rip 0x1012c1  push rbx  [7248 instructions, 1 exit]',
      '(hvsim) vmcs diff',
      'by the handler of exit #1 CPUID so far (its VMCS at the exit -> now):',
      '    (no field changed)',
    ]);
    expect(run('finish-handler\nvmcs diff\nregs')).toEqual([
      '(hvsim) finish-handler',
      'VM entry succeeded: the processor is back in VMX non-root operation',
      // The handler skipped the CPUID: GUEST_RIP + VM-exit instruction length (28.2.5).
      'in VMX non-root operation (the guest): rip 0x101211  mov [rel 0x1019d9], ebx  [7321 instructions, 1 exit]',
      '(hvsim) vmcs diff',
      'by the handler of exit #1 CPUID (its VMCS at the exit -> the VM entry after it):',
      '    GUEST_RIP: 0x10120f -> 0x101211',
      '(hvsim) regs',
      'rax 0x0000000040000001  rbx 0x0000000047584d56  rcx 0x0000000074736575  rdx 0x0000000074736554',
      'rsi 0x00000000001017cb  rdi 0x0000000000112000  rbp 0x0000000000000020  rsp 0x0000000000111000',
      'r8  0x0000000012000080  r9  0x00000000001012c0  r10 0x00000000001011fc  r11 0x0000000000111000',
      'r12 0x0000000000000000  r13 0x0000000000000000  r14 0x0000000000000000  r15 0x0000000000000000',
      'rip 0x0000000000101211  rflags 0x46 [ PF ZF ]  cpl 0  64-bit code, VMX non-root',
    ]);
    // The handler's CPUID emulation: 'VMXG' 'uest' 'Test' in EBX, ECX, EDX.
    expect(e.cpu.reg64(3)).toBe(0x47584d56n);
    // At the next exit, the diff has both halves: the handler before, the guest and the exit since.
    expect(run('next-exit\nvmcs diff').slice(4)).toEqual([
      'by the handler of exit #1 CPUID (its VMCS at the exit -> the VM entry after it):',
      '    GUEST_RIP: 0x10120f -> 0x101211',
      'by the guest and exit #2 CPUID (that VM entry -> the exit):',
      '    GUEST_RIP: 0x101211 -> 0x101254',
    ]);
  });

  it('break exit with conditions on the qualification and the exit record; a step on an exiting instruction lands at HOST_RIP', () => {
    const { e, run } = session();
    expect(run('break exit IO_INSTRUCTION port=0x3f8\nbreak exit CPUID rip=0x101271\nbreak exit IO_INSTRUCTION port=0x80 DIRECTION=OUT\ncontinue')).toEqual([
      '(hvsim) break exit IO_INSTRUCTION port=0x3f8',
      'breakpoint 1, on VM exit IO_INSTRUCTION PORT_NUMBER=0x3f8',
      '(hvsim) break exit CPUID rip=0x101271',
      'breakpoint 2, on VM exit CPUID rip=0x101271',
      '(hvsim) break exit IO_INSTRUCTION port=0x80 DIRECTION=OUT',
      'breakpoint 3, on VM exit IO_INSTRUCTION PORT_NUMBER=0x80 DIRECTION=OUT',
      '(hvsim) continue',
      // The third CPUID, not the first two.
      'breakpoint 2, on VM exit CPUID rip=0x101271',
      'VM exit #3 CPUID (reason 10) at guest rip 0x101271: cpuid',
      'at exit #3 CPUID (reason 10), first instruction of the root-mode handler (HOST_RIP), VMX root operation: rip 0x1012c0  push rax  [9057 instructions, 3 exits]',
    ]);
    const out = run('continue\nexit');
    expect(out.slice(1, 3)).toEqual(['breakpoint 3, on VM exit IO_INSTRUCTION PORT_NUMBER=0x80 DIRECTION=OUT', 'VM exit #4 IO_INSTRUCTION (reason 30) at guest rip 0x101281: out 0x80, al']);
    expect(out).toContain('  qualification 0x800040: SIZE_OF_ACCESS=0 (1-byte) DIRECTION=0 (OUT) STRING_INSTRUCTION=0 REP_PREFIXED=0 OPERAND_ENCODING=1 (immediate) PORT_NUMBER=0x80');
    // The guest's COM1 output does not exit (not in the I/O bitmap): breakpoint 1 never hit.
    expect(e.breakpoints[0]!.hits).toBe(0);
    run('delete all\nfinish-handler\nstep 2');
    // mov ecx, 3AH; rdmsr: the RDMSR exits (one step, not retired), and the second step stops at the handler.
    expect(run('disasm rip 1')).toEqual(['(hvsim) disasm rip 1', '=> 0x1012c0  50                              push rax']);
    expect(e.lastExit!.name).toBe('RDMSR');
    expect(e.atExit!.seq).toBe(5);
  });

  it('an address breakpoint stops in root-mode and guest code alike', () => {
    const { e, run } = session();
    const out = run('break 0x1012c0\ncontinue\nwhere\ncontinue\ndelete 1\nbreak 0x101283\ncontinue\nwhere');
    expect(out[3]).toBe('breakpoint 1, at 0x1012c0');
    expect(out[4]).toMatch(/^at exit #1 CPUID .*rip 0x1012c0  push rax/);
    expect(out.at(-1)).toMatch(/^in VMX non-root operation \(the guest\): rip 0x101283  mov ecx, 0x3a/);
    // The next continue steps over the breakpoint it starts on, and stops there again at the next exit's handler.
    expect(out.slice(7, 10)).toEqual([
      '(hvsim) continue',
      'breakpoint 1, at 0x1012c0',
      'at exit #2 CPUID (reason 10), first instruction of the root-mode handler (HOST_RIP), VMX root operation: rip 0x1012c0  push rax  [8377 instructions, 2 exits]',
    ]);
    expect(e.breakpoints.map((b) => b.hits)).toEqual([1]);
    expect(e.exits).toBe(4);
  });

  it('finish-handler stops at a failed VM entry: VMfailValid (27.2.1.1), then an exit with reason bit 31 (27.3.1.4); why-entry-failed names the check', () => {
    const { e, run } = session();
    // Exit 7 is the guest's VMCALL; its handler prints the counts, then tries vmcs2 with a bad pin-based control.
    run('next-exit 7');
    expect(e.lastExit!.name).toBe('VMCALL');
    const first = run('finish-handler\nwhy-entry-failed');
    expect(first[1]).toMatch(/^VM entry failed: pin-based controls reserved bits \(SDM 27\.2\.1\.1\): pin-based VM-execution controls = 0x14: bit 1 must be 1/);
    expect(first[2]).toMatch(/^in VMX root operation \(the handler of exit #7 VMCALL\): rip /);
    expect(first.slice(4)).toEqual([
      'the VM entry failed with VMfailValid, VM-instruction error 7 (invalid control fields)',
      'check: pin-based controls reserved bits',
      'SDM 27.2.1.1',
      'detail: pin-based VM-execution controls = 0x14: bit 1 must be 1: IA32_VMX_TRUE_PINBASED_CTLS allowed-0 = 0x16',
    ]);
    const second = run('finish-handler\nwhy-entry-failed\nexit');
    expect(second[1]).toBe('VM entry failed, ended in VM exit #8 VM_ENTRY_FAILURE_INVALID_GUEST_STATE (reason 33, bit 31 set): guest RFLAGS reserved bits (SDM 27.3.1.4): ' +
      'guest RFLAGS = 0x0: bits 63:22, 15, 5, 3 must be 0 and bit 1 must be 1 (see why-entry-failed)');
    expect(second[2]).toMatch(/^at exit #8 VM_ENTRY_FAILURE_INVALID_GUEST_STATE .*HOST_RIP.*rip 0x1015dd/);
    expect(second).toContain('SDM 27.3.1.4');
    expect(second).toContain('exit #8: VM_ENTRY_FAILURE_INVALID_GUEST_STATE (basic exit reason 33), a failed VM entry, its handler has not run yet');
    expect(run('continue')).toEqual(['(hvsim) continue', 'the machine exited with status 1 (debug-exit port)']);
  });

  it('refuses finish-handler outside a root-mode handler; help lists the commands it has now', () => {
    const { s, run } = session();
    expect(run('finish-handler\nnext-exit\nfinish-handler\nfinish-handler\nbogus')).toEqual([
      '(hvsim) finish-handler',
      'error: finish-handler runs a root-mode handler: the processor is not in VMX operation',
      '(hvsim) next-exit',
      'VM exit #1 CPUID (reason 10) at guest rip 0x10120f: cpuid',
      'at exit #1 CPUID (reason 10), first instruction of the root-mode handler (HOST_RIP), VMX root operation: rip 0x1012c0  push rax  [7247 instructions, 1 exit]',
      '(hvsim) finish-handler',
      'VM entry succeeded: the processor is back in VMX non-root operation',
      'in VMX non-root operation (the guest): rip 0x101211  mov [rel 0x1019d9], ebx  [7321 instructions, 1 exit]',
      '(hvsim) finish-handler',
      'error: finish-handler runs a root-mode handler: the processor is in VMX non-root operation (next-exit runs to the next exit)',
      '(hvsim) bogus',
      "error: unknown command 'bogus'; help lists the commands",
    ]);
    const help = s.execute('help').lines.join('\n');
    for (const c of ['back-exit', 'reverse-step', 'snapshots', 'watch', 'translate', 'sregs']) expect(help).toContain(`  ${c}`);
    expect(run('translate p:0x1000\nwatch p:zz\nreverse-step 0')).toEqual([
      '(hvsim) translate p:0x1000', 'error: translate takes a linear address, not a p: one',
      '(hvsim) watch p:zz', "error: malformed address 'p:zz': 'zz' is not a register",
      '(hvsim) reverse-step 0', "error: the number of steps must be between 1 and 1000000000000, not '0'",
    ]);
  });

  it('finish-handler stops at a VMLAUNCH/VMRESUME that fails as an instruction (SDM 31.3): VMfailValid 4 and 5, VMfailInvalid (guests/vmx-vmfail.asm)', () => {
    const { e, run } = session('vmx-vmfail.bin');
    const first = run('next-exit\nfinish-handler\nwhy-entry-failed');
    expect(first.slice(4)).toEqual([
      'VM entry failed: VMLAUNCH at 0x101265 failed with VMfailValid (ZF = 1), VM-instruction error 4: VMLAUNCH with non-clear VMCS',
      'in VMX root operation (the handler of exit #1 CPUID): rip 0x101268  call 0x0000000000101384  [6389 instructions, 1 exit]',
      '(hvsim) why-entry-failed',
      'VMLAUNCH at 0x101265 failed as an instruction (SDM 31.3), before any check of the VM entry (27.2):',
      '  VMfailValid (ZF = 1), VM-instruction error 4: VMLAUNCH with non-clear VMCS',
    ]);
    // The handler ran on no further than the failed instruction: it has not printed its line yet.
    expect(e.cpu.nonRoot).toBe(false);
    expect(run('finish-handler')[1]).toBe('VM entry succeeded: the processor is back in VMX non-root operation');
    const second = run('next-exit\nfinish-handler\nfinish-handler\nwhy-entry-failed\nfinish-handler');
    expect(second[4]).toBe('VM entry failed: VMRESUME at 0x1012bf failed with VMfailInvalid (CF = 1): there is no current VMCS (the current-VMCS pointer is invalid)');
    expect(second[7]).toBe('VM entry failed: VMRESUME at 0x1012f7 failed with VMfailValid (ZF = 1), VM-instruction error 5: VMRESUME with non-launched VMCS');
    expect(second.slice(10, 12)).toEqual([
      'VMRESUME at 0x1012f7 failed as an instruction (SDM 31.3), before any check of the VM entry (27.2):',
      '  VMfailValid (ZF = 1), VM-instruction error 5: VMRESUME with non-launched VMCS',
    ]);
    expect(second[13]).toBe('VM entry succeeded: the processor is back in VMX non-root operation');
    // A breakpoint on failed entries stops there too; going back and forth over it stops again.
    expect(run('break entry-failure\nback-exit\ncontinue')[6]).toMatch(/^VM entry failed: VMRESUME at 0x1012bf failed with VMfailInvalid/);
    expect(run('continue')).toEqual([
      '(hvsim) continue',
      'breakpoint 1, on a failed VM entry',
      'VM entry failed: VMRESUME at 0x1012f7 failed with VMfailValid (ZF = 1), VM-instruction error 5: VMRESUME with non-launched VMCS',
      'in VMX root operation (the handler of exit #2 CPUID): rip 0x1012fa  call 0x0000000000101384  [9004 instructions, 2 exits]',
    ]);
    expect(run('delete all\ncontinue').at(-1)).toBe('the machine exited with status 1 (debug-exit port)');
  });
});

describe('transcripts of hvsim debug --bare', () => {
  const replay = (name: string, guest: string): { actual: string[]; expected: string[] } => {
    const expected = transcriptFile(name), { s } = session(guest), actual: string[] = [];
    runScript(s, transcriptScript(expected), (l) => actual.push(l));
    expectSameTranscript(actual, expected);
    return { actual, expected };
  };

  it('vmx-basic: sregs and translate of the host, reverse-step over an exit, a watchpoint in root-mode code, back-exit after the end', () => {
    const { actual } = replay('bare-vmx-basic', 'vmx-basic.bin');
    // reverse-step from HOST_RIP goes back over the exit (a step) to the guest's CPUID.
    expect(outputOf(actual, 'reverse-step 3')[0]).toMatch(/^at exit #2 CPUID .*\[8377 instructions, 2 exits\]$/);
    expect(outputOf(actual, 'reverse-step')[0]).toBe('in VMX non-root operation (the guest): rip 0x101254  cpuid  [8377 instructions, 1 exit]');
    // The handler's first PUSH writes HOST_RSP - 8 (28.5.1: RSP loaded from HOST_RSP).
    expect(outputOf(actual, 'continue', 0)[0]).toBe('breakpoint 1, watch write of 8 bytes at 0x10fff8: write of 8 bytes at 0x10fff8 (physical 0x10fff8)');
    expect(outputOf(actual, 'back-exit')[0]).toMatch(/^at exit #8 VM_ENTRY_FAILURE_INVALID_GUEST_STATE /);
    // The serial output is printed once, though parts of the run ran twice.
    expect(actual.filter((l) => l === 'serial| vmx-basic: done')).toHaveLength(1);
  });

  it('vmx-ept: the host\'s walk at the EPT violation, the guest\'s 2-D walk through the EPT once back in non-root operation', () => {
    const { actual } = replay('bare-vmx-ept', 'vmx-ept.bin');
    expect(outputOf(actual, 'translate 0x1000')[0]).toBe('linear 0x1000, read (supervisor), 4-level paging');
    expect(outputOf(actual, 'translate rip fetch')[0]).toBe('linear 0x1012ea, fetch (supervisor), 4-level paging with EPT');
    expect(outputOf(actual, 'translate rip fetch')).toContainEqual(expect.stringMatching(/^  EPT PML4E\[0\] at 0x180000 /));
  });

  it('bench-vmexit: back 1000 exits and forward again to the same exit, an execute watchpoint in the guest', () => {
    const { actual } = replay('bare-bench-vmexit', 'bench-vmexit.bin');
    expect(outputOf(actual, 'back-exit 1000')[0]).toMatch(/^at exit #4552 CPUID /);
    expect(outputOf(actual, 'next-exit 1000')[1]).toMatch(/^at exit #5551 CPUID .*\[199988 instructions, 5551 exits\]$/);
  });
});
