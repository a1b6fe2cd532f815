import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { debugMain, DEBUG_USAGE, isDebugInvocation, type DebugIo } from './debug.js';
import { main } from './hvsim.js';
import { bundledGuest } from './image.js';

const GDB_INSTALLED = (() => {
  const probe = spawnSync('gdb', ['--version'], { encoding: 'utf8' });
  return probe.error === undefined && probe.status === 0;
})();
const SKIP_NOTE = GDB_INSTALLED ? '' : ' [SKIPPED: gdb is not installed; apt-get install -y gdb]';

interface Captured { out: string[]; err: string[]; serial: number[]; io: DebugIo }

function capture(stdin: string | null = null, terminal?: DebugIo['terminal']): Captured {
  const c: Captured = {
    out: [], err: [], serial: [],
    // No history file unless a test names one (never the user's ~/.hvsim_history).
    io: { out: (l) => c.out.push(l), err: (l) => c.err.push(l), serial: (b) => c.serial.push(b), stdinScript: () => stdin, terminal, env: { HVSIM_HISTORY: '' } },
  };
  return c;
}

function commandsFile(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'hvsim-debug-')), 'session.hvsim');
  writeFileSync(file, text);
  return file;
}

const ORACLE = bundledGuest('oracle-hello.bin');

describe('hvsim debug', () => {
  it('runs --commands FILE and prints the transcript: each command after the prompt, then its output', async () => {
    const c = capture();
    const status = await debugMain(['debug', ORACLE, '--commands', commandsFile('next-exit\nvmcs GUEST_RIP\nquit\nregs\n')], c.io);
    expect(status).toBe(0);
    expect(c.err).toEqual([]);
    expect(c.out).toEqual([
      '(hvsim) next-exit',
      'at exit #1 IO_INSTRUCTION (reason 30), before its handler: rip 0x100231  out dx, al  [4 instructions]',
      '(hvsim) vmcs GUEST_RIP',
      'GUEST_RIP = 0x100231',
      '(hvsim) quit',
    ]);
  });

  it('takes the commands from stdin when it is not a terminal; the guest output comes with them; --att', async () => {
    const c = capture('disasm rip 1\ncontinue\n');
    expect(await debugMain(['debug', ORACLE, '--att'], c.io)).toBe(0);
    expect(c.out[1]).toBe('=> 0x100220  3d 02 b0 ad 2b                  cmp $0x2badb002, %eax');
    expect(c.out).toContain('serial| oracle-hello: done');
    expect(c.out.at(-1)).toBe('the guest exited with status 1 (debug-exit port or EXIT hypercall)');
  });

  it('answers bad usage and bad images with one line and status 2', async () => {
    const cases: [string[], RegExp][] = [
      [['debug', '/no/such/image.bin'], /^hvsim: cannot read image '\/no\/such\/image\.bin': no such file$/],
      [['debug', ORACLE, '--bogus'], /^hvsim: unknown option '--bogus'/],
      [['debug', ORACLE, '--bare', '--cpus', '2'], /--cpus does not go with debug --bare/],
      [['debug', ORACLE, '--gdb', 'http'], /--gdb needs a TCP port from 0 to 65535/],
      [['debug', ORACLE, '--commands', '/no/such/file'], /^hvsim: cannot read the commands file '\/no\/such\/file': ENOENT$/],
      [['debug', ORACLE, '--trace', 'x.jsonl'], /--trace is an option of a plain run/],
      [['debug', ORACLE, '--profile', 'pentium'], /unknown profile 'pentium'/],
      [['debug', ORACLE, '--commands'], /--commands needs a value/],
    ];
    for (const [argv, message] of cases) {
      const c = capture();
      expect(await debugMain(argv, c.io)).toBe(2);
      expect(c.err).toHaveLength(1);
      expect(c.err[0]).toMatch(message);
      expect(c.out).toEqual([]);
    }
  });

  it('debugs the image\'s own hypervisor on the bare machine with --bare: exits of its VMCS, its handler, the failed entries', async () => {
    const c = capture();
    const script = 'where\nnext-exit\nfinish-handler\nvmcs diff\nbreak entry-failure\ncontinue\nwhy-entry-failed\nback-exit\nquit\n';
    expect(await debugMain(['debug', bundledGuest('vmx-basic.bin'), '--bare', '--commands', commandsFile(script)], c.io)).toBe(0);
    expect(c.err).toEqual([]);
    const out = c.out.filter((l) => !l.startsWith('serial| '));
    expect(out.slice(0, 9)).toEqual([
      '(hvsim) where',
      'outside VMX operation: rip 0x100220  cmp eax, 0x2badb002  [0 instructions, 0 exits]',
      '(hvsim) next-exit',
      'VM exit #1 CPUID (reason 10) at guest rip 0x10120f: cpuid',
      'at exit #1 CPUID (reason 10), first instruction of the root-mode handler (HOST_RIP), VMX root operation: rip 0x1012c0  push rax  [7247 instructions, 1 exit]',
      '(hvsim) finish-handler',
      'VM entry succeeded: the processor is back in VMX non-root operation',
      'in VMX non-root operation (the guest): rip 0x101211  mov [rel 0x1019d9], ebx  [7321 instructions, 1 exit]',
      '(hvsim) vmcs diff',
    ]);
    expect(out.slice(9, 14)).toEqual([
      'by the handler of exit #1 CPUID (its VMCS at the exit -> the VM entry after it):',
      '    GUEST_RIP: 0x10120f -> 0x101211',
      '(hvsim) break entry-failure',
      'breakpoint 1, on a failed VM entry',
      '(hvsim) continue',
    ]);
    expect(out[14]).toBe('breakpoint 1, on a failed VM entry');
    expect(out[15]).toMatch(/^VM entry failed: pin-based controls reserved bits \(SDM 27\.2\.1\.1\): .*bit 1 must be 1/);
    expect(out).toContain('SDM 27.2.1.1');
    // Back from the failed VM entry (in the handler of exit #7 VMCALL) to that exit, at HOST_RIP.
    expect(out[out.indexOf('(hvsim) back-exit') + 1]).toMatch(/^at exit #7 VMCALL \(reason 18\), first instruction of the root-mode handler \(HOST_RIP\)/);
    expect(c.out).toContain('serial| vmx-basic: VMXON');
  });

  it('has --help, and hvsim --help names it; only debug and run --gdb go to the debugger', async () => {
    const c = capture();
    expect(await debugMain(['debug', '--help'], c.io)).toBe(0);
    expect(c.out).toEqual([DEBUG_USAGE]);
    const out: string[] = [];
    main(['--help'], { out: (l) => out.push(l), err: () => {}, serial: () => {} });
    expect(out[0]).toMatch(/usage: hvsim debug \[IMAGE\] \[options\]/);
    expect(out[0]).toMatch(/--gdb PORT/);
    expect(isDebugInvocation(['debug'])).toBe(true);
    expect(isDebugInvocation(['run', 'x.bin', '--gdb', '0'])).toBe(true);
    expect(isDebugInvocation(['run', 'x.bin'])).toBe(false);
    expect(isDebugInvocation(['cost', 'x.bin'])).toBe(false);
  });

  it('runs the interactive REPL on a terminal until quit', async () => {
    const input = new PassThrough(), output = new PassThrough();
    let shown = '';
    output.on('data', (b: Buffer) => { shown += b.toString('utf8'); });
    const c = capture(null, { input, output });
    const done = debugMain(['debug', ORACLE], c.io);
    input.write('next-exit\n');
    input.write('stpe\n');
    input.write('quit\n');
    expect(await done).toBe(0);
    expect(shown).toContain('at exit #1 IO_INSTRUCTION (reason 30), before its handler');
    expect(shown).toContain("error: unknown command 'stpe' (did you mean step?)");
  });

  it('keeps the REPL\'s history in the file HVSIM_HISTORY names: loaded at the start, the session\'s commands added at the end, bounded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hvsim-history-')), file = join(dir, 'history');
    writeFileSync(file, `${Array.from({ length: 999 }, (_, k) => `step ${k}`).join('\n')}\n`);
    const input = new PassThrough(), output = new PassThrough();
    // A terminal, so that readline takes the up arrow as "the previous command".
    Object.assign(output, { isTTY: true, columns: 200 });
    let shown = '';
    output.on('data', (b: Buffer) => { shown += b.toString('utf8'); });
    const c = capture(null, { input, output });
    c.io = { ...c.io, env: { HVSIM_HISTORY: file } };
    const done = debugMain(['debug', ORACLE], c.io);
    // Up arrow: the last command of the file comes back (readline echoes it after the prompt).
    input.write('\x1b[A');
    await new Promise((r) => setTimeout(r, 50));
    expect(shown).toContain('step 998');
    input.write('\x15next-exit\n');
    input.write('next-exit\n');
    input.write('where\n');
    input.write('quit\n');
    expect(await done).toBe(0);
    expect(c.err).toEqual([]);
    const kept = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
    // 999 + 3 new (the repeated next-exit once), the oldest two dropped beyond 1000.
    expect(kept).toHaveLength(1000);
    expect(kept.slice(0, 1)).toEqual(['step 2']);
    expect(kept.slice(-3)).toEqual(['next-exit', 'where', 'quit']);
    // A script neither reads nor writes it.
    const s = capture('where\n');
    s.io = { ...s.io, env: { HVSIM_HISTORY: file } };
    expect(await debugMain(['debug', ORACLE], s.io)).toBe(0);
    expect(readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').slice(-3)).toEqual(['next-exit', 'where', 'quit']);
  });

  it.skipIf(!GDB_INSTALLED)(`--gdb 0 serves the guest to the real gdb: hvsim debug ends with 0, hvsim run (--bare too) with the guest's status${SKIP_NOTE}`, async () => {
    for (const [command, bare, expected] of [['debug', false, 0], ['run', false, 1], ['run', true, 1]] as const) {
      const c = capture();
      const portSeen = new Promise<number>((resolve) => {
        c.io = { ...c.io, err: (l) => { c.err.push(l); const m = /127\.0\.0\.1:(\d+)/.exec(l); if (m !== null) resolve(Number(m[1])); } };
      });
      const done = debugMain([command, ORACLE, ...(bare ? ['--bare'] : []), '--gdb', '0'], c.io);
      const port = await portSeen;
      const output = await new Promise<string>((resolve, reject) => {
        const gdb = spawn('gdb', ['--batch', '-nx', '-ex', 'set architecture i386:x86-64', '-ex', `target remote 127.0.0.1:${port}`,
          '-ex', 'monitor where', '-ex', 'continue'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let text = '';
        gdb.stdout.on('data', (b: Buffer) => (text += b.toString('utf8')));
        gdb.stderr.on('data', (b: Buffer) => (text += b.toString('utf8')));
        gdb.on('error', reject);
        gdb.on('close', () => resolve(text));
      });
      expect(await done).toBe(expected);
      if (!bare) expect(output).toContain('in the guest: rip 0x100220  cmp eax, 0x2badb002  [0 instructions, 0 exits]');
      expect(output).toMatch(/\[Inferior 1 \(.*\) exited with code 01\]/);
      expect(Buffer.from(c.serial).toString('latin1')).toContain('oracle-hello: done\n');
    }
  });
});
