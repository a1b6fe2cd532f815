/**
 * End-to-end: the real gdb (the Debian `gdb` package) against the stub over
 * TCP, with the fake target. Skipped, with the reason in the test name, only
 * when `gdb` is not installed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { DEMO_PROGRAM, FakeTarget } from './fake-target.js';
import { startGdbServer, type GdbServer } from './server.js';

const GDB_INSTALLED = (() => {
  const probe = spawnSync('gdb', ['--version'], { encoding: 'utf8' });
  return probe.error === undefined && probe.status === 0;
})();
const SKIP_NOTE = GDB_INSTALLED ? '' : ' [SKIPPED: gdb is not installed; apt-get install -y gdb]';

interface GdbRun {
  readonly code: number | null;
  readonly output: string;
}

/**
 * Runs gdb with `args` and returns its exit code and stdout+stderr. `duringRun`
 * may feed stdin and signal the process; gdb is killed after 60 s.
 */
function runGdb(args: readonly string[], duringRun?: (gdb: ReturnType<typeof spawn>) => Promise<void>): Promise<GdbRun> {
  return new Promise((resolve, reject) => {
    const gdb = spawn('gdb', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    gdb.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    gdb.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const timer = setTimeout(() => gdb.kill('SIGKILL'), 60_000);
    gdb.on('error', reject);
    gdb.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
    if (duringRun === undefined) gdb.stdin.end();
    else duringRun(gdb).catch(reject);
  });
}

function batch(port: number, commands: readonly string[]): string[] {
  const args = ['--batch', '-nx', '-ex', 'set architecture i386:x86-64', '-ex', `target remote 127.0.0.1:${port}`];
  for (const command of commands) args.push('-ex', command);
  return args;
}

function lines(output: string): string[] {
  return output.split('\n').map((line) => line.trimEnd());
}

/** gdb complains this way when it does not take the target description. */
function expectDescriptionAccepted(output: string): void {
  expect(output).not.toMatch(/target description|rejected|Remote 'g' packet reply is too long|Truncated register/i);
}

let server: GdbServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});

describe('real gdb against the stub', () => {
  it.skipIf(!GDB_INSTALLED)(`reads registers and memory, stops at a breakpoint, steps, runs monitor, kills${SKIP_NOTE}`, async () => {
    const target = new FakeTarget(DEMO_PROGRAM);
    server = await startGdbServer(target);
    const { code, output } = await runGdb(
      batch(server.port, ['info registers rip', 'x/4xb 0x1000', 'break *0x1010', 'continue', 'stepi', 'monitor hello', 'kill']),
    );
    expectDescriptionAccepted(output);
    const out = lines(output);
    expect(out).toContain('The target architecture is set to "i386:x86-64".');
    expect(out).toContainEqual(expect.stringMatching(/^rip +0x1000 +0x1000$/));
    expect(out).toContain('0x1000:\t0x48\t0xff\t0xc0\t0x90');
    expect(out).toContain('Breakpoint 1 at 0x1010');
    expect(out).toContain('Breakpoint 1, 0x0000000000001010 in ?? ()');
    expect(out).toContain('0x0000000000001013 in ?? ()');
    expect(out).toContain('Hello from the fake target');
    expect(out).toContainEqual(expect.stringMatching(/^\[Inferior 1 \(.*\) killed\]$/));
    expect(code).toBe(0);
    expect(target.killed).toBe(true);
    expect(target.get('rip')).toBe(0x1013n);
    expect(target.get('rax')).toBe(2n);
  });

  it.skipIf(!GDB_INSTALLED)(`stops on a VM exit and a watchpoint, writes registers, sees the exit${SKIP_NOTE}`, async () => {
    const target = new FakeTarget(DEMO_PROGRAM);
    server = await startGdbServer(target);
    const { code, output } = await runGdb(
      batch(server.port, [
        'monitor stop-on-cpuid on',
        'continue',
        'monitor stop-reason',
        'set $rdi = 0x2000',
        'watch *(char *) 0x2000',
        'continue',
        'delete',
        'info registers eflags cr0 efer mxcsr',
        'set $xmm3.v2_int64[0] = 0x1234',
        'print/x $xmm3.uint128',
        'continue',
      ]),
    );
    expectDescriptionAccepted(output);
    const out = lines(output);
    const vmExit = 'VM exit: CPUID (exit reason 10) at 0x1013';
    expect(out.filter((line) => line === vmExit)).toHaveLength(2);
    expect(out).toContain('Program received signal SIGTRAP, Trace/breakpoint trap.');
    expect(out).toContain('0x0000000000001015 in ?? ()');
    expect(out).toContain('Hardware watchpoint 1: *(char *) 0x2000');
    expect(out).toContain("Old value = 0 '\\000'");
    expect(out).toContain("New value = 1 '\\001'");
    expect(out).toContainEqual(expect.stringMatching(/^eflags +0x202 +\[ IF \]$/));
    expect(out).toContainEqual(expect.stringMatching(/^cr0 +0x80000011 +\[ PE ET PG \]$/));
    expect(out).toContainEqual(expect.stringMatching(/^efer +0x500 +\[ LME LMA \]$/));
    expect(out).toContainEqual(expect.stringMatching(/^mxcsr +0x1f80 +\[ IM DM ZM OM UM PM \]$/));
    expect(out).toContain('$1 = 0x1234');
    expect(out).toContainEqual(expect.stringMatching(/^\[Inferior 1 \(.*\) exited with code 02\]$/));
    expect(code).toBe(0);
    expect(target.get('rdi')).toBe(0x2000n);
    expect(target.get('xmm3')).toBe(0x1234n);
    expect(target.memory[0x2000]).toBe(1);
  });

  it.skipIf(!GDB_INSTALLED)(`interrupts a running guest with Ctrl-C (SIGINT to gdb)${SKIP_NOTE}`, async () => {
    const target = new FakeTarget(DEMO_PROGRAM);
    server = await startGdbServer(target, { sliceInstructions: 1000 });
    const port = server.port;
    const { code, output } = await runGdb(['-nx', '-q'], async (gdb) => {
      gdb.stdin!.write(`target remote 127.0.0.1:${port}\nset $pc = 0x1020\ncontinue\n`);
      // The continue is under way once the stub has run a few slices.
      const deadline = Date.now() + 30_000;
      while (target.resumeCalls < 10) {
        if (Date.now() > deadline) throw new Error('gdb never continued the guest');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      gdb.kill('SIGINT');
      gdb.stdin!.end('info registers rip\nmonitor stop-reason\nkill\nquit\n');
    });
    expectDescriptionAccepted(output);
    expect(output).toContain('Program received signal SIGINT, Interrupt.');
    expect(output).toMatch(/rip +0x1020 +0x1020/);
    expect(output).toContain('interrupted (SIGINT)');
    expect(output).toMatch(/\[Inferior 1 \(.*\) killed\]/);
    expect(code).toBe(0);
    expect(target.instructions).toBeGreaterThanOrEqual(10_000);
    expect(target.get('rip')).toBe(0x1020n);
  });
});
