/**
 * End-to-end: the real gdb (the Debian `gdb` package) against the stub over
 * TCP with the bare target (`hvsim debug guests/vmx-basic.bin --bare --gdb`):
 * gdb debugs the image's own hypervisor — a breakpoint at its exit handler
 * (HOST_RIP), registers and memory there, single steps, monitor commands on
 * its VMCS, an exit breakpoint, going back an exit. Skipped, with the reason
 * in the test name, only when `gdb` is not installed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { BareEngine } from './bare-engine.js';
import { BareTarget } from './bare-target.js';
import { startGdbServer, type GdbServer } from './gdb/server.js';
import { guestImage } from './testing.js';

const GDB_INSTALLED = (() => {
  const probe = spawnSync('gdb', ['--version'], { encoding: 'utf8' });
  return probe.error === undefined && probe.status === 0;
})();
const SKIP_NOTE = GDB_INSTALLED ? '' : ' [SKIPPED: gdb is not installed; apt-get install -y gdb]';

function runGdb(port: number, commands: readonly string[]): Promise<string> {
  const args = ['--batch', '-nx', '-ex', 'set architecture i386:x86-64', '-ex', `target remote 127.0.0.1:${port}`];
  for (const c of commands) args.push('-ex', c);
  return new Promise((resolve, reject) => {
    const gdb = spawn('gdb', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    gdb.stdout.on('data', (b: Buffer) => (text += b.toString('utf8')));
    gdb.stderr.on('data', (b: Buffer) => (text += b.toString('utf8')));
    const timer = setTimeout(() => gdb.kill('SIGKILL'), 60_000);
    gdb.on('error', reject);
    gdb.on('close', () => { clearTimeout(timer); resolve(text); });
  });
}

let server: GdbServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});

describe('real gdb against the bare target', () => {
  it.skipIf(!GDB_INSTALLED)(`debugs vmx-basic's own hypervisor: HOST_RIP breakpoint, registers, stepi, monitor vmcs/exit/break-exit/back-exit${SKIP_NOTE}`, async () => {
    const engine = new BareEngine({ image: guestImage('vmx-basic.bin') });
    let ended = '';
    server = await startGdbServer(new BareTarget(engine, (how) => { ended = how; }));
    const output = await runGdb(server.port, [
      'info registers rip',
      'break *0x1012c0',
      'continue',
      'info registers rip cr4 efer',
      'x/2xb 0x1012c0',
      'monitor exit',
      'stepi',
      'info registers rip',
      'delete',
      'monitor break-exit IO_INSTRUCTION port=0x80',
      'continue',
      'monitor vmcs EXIT_QUALIFICATION',
      'monitor back-exit 2',
      'maintenance flush register-cache',
      'info registers rip',
      'monitor where',
      'kill',
    ]);
    expect(output).not.toMatch(/target description|Remote 'g' packet reply is too long|Truncated register/i);
    const lines = output.split('\n').map((l) => l.trimEnd());
    // The image starts outside VMX at its Multiboot entry.
    expect(lines).toContainEqual(expect.stringMatching(/^rip +0x100220 +0x100220$/));
    expect(lines).toContain('Breakpoint 1 at 0x1012c0');
    expect(lines).toContain('Breakpoint 1, 0x00000000001012c0 in ?? ()');
    // The host's registers after the exit loaded them (28.5): VMXE in CR4, long mode.
    expect(lines).toContainEqual(expect.stringMatching(/^cr4 +0x2020 +\[ PAE VMXE \]$/));
    expect(lines).toContainEqual(expect.stringMatching(/^efer +0x500 +\[ LME LMA \]$/));
    expect(lines).toContain('0x1012c0:\t0x50\t0x53');
    expect(lines).toContain('exit #1: CPUID (basic exit reason 10), its handler has not run yet');
    expect(lines).toContainEqual(expect.stringMatching(/^rip +0x1012c1 +0x1012c1$/));
    expect(lines).toContain('VM exit: IO_INSTRUCTION (exit reason 30) at 0x101281, now at HOST_RIP');
    expect(lines).toContainEqual(expect.stringMatching(/^EXIT_QUALIFICATION = 0x800040 .*PORT_NUMBER=0x80$/));
    expect(lines).toContainEqual(expect.stringMatching(/^at exit #2 CPUID \(reason 10\), first instruction of the root-mode handler/));
    expect(lines).toContainEqual(expect.stringMatching(/^\[Inferior 1 \(.*\) killed\]$/));
    expect(ended).toBe('kill');
    expect(engine.exits).toBe(2);
    expect(engine.cpu.rip).toBe(0x1012c0n);
  });
});
