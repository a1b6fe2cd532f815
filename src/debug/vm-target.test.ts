import { spawn, spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { GDB_REGISTER } from './gdb/target-description.js';
import { startGdbServer, type GdbServer } from './gdb/server.js';
import { guestEngine, tinyEngine } from './testing.js';
import { VmTarget, type SessionEnd } from './vm-target.js';

const GDB_INSTALLED = (() => {
  const probe = spawnSync('gdb', ['--version'], { encoding: 'utf8' });
  return probe.error === undefined && probe.status === 0;
})();
const SKIP_NOTE = GDB_INSTALLED ? '' : ' [SKIPPED: gdb is not installed; apt-get install -y gdb]';

describe('VmTarget', () => {
  it("reads the guest's registers in the target description's order", () => {
    const t = new VmTarget(tinyEngine());
    const r = t.readRegisters();
    expect(r[GDB_REGISTER.rip]).toBe(0x1000n);
    // The flat loader's 64-bit code segment is GDT entry 3; its data segment, entry 2.
    expect([r[GDB_REGISTER.cs], r[GDB_REGISTER.ss], r[GDB_REGISTER.ds], r[GDB_REGISTER.es]]).toEqual([0x18n, 0x10n, 0x10n, 0x10n]);
    expect(r[GDB_REGISTER.eflags]! & 2n).toBe(2n);
    // The guest's view of CR0 (through the read shadow): PE, ET, PG.
    expect(r[GDB_REGISTER.cr0]).toBe(0x80000011n);
    expect(r[GDB_REGISTER.efer]! & 0x500n).toBe(0x500n);
    expect(r[GDB_REGISTER.mxcsr]).toBe(0x1f80n);
    expect(r[GDB_REGISTER.st0]).toBe(0n);
    t.step();
    expect(t.readRegisters()[GDB_REGISTER.rdi]).toBe(0x2000n);
  });

  it('steps, resumes in slices, stops at breakpoints (gdb steps over its own) and watchpoints, and reports the end', () => {
    const t = new VmTarget(tinyEngine());
    expect(t.resume(1)).toBeNull();
    expect(t.readRegisters()[GDB_REGISTER.rip]).toBe(0x1007n);
    expect(t.setBreakpoint('sw', 0x1010n, 1)).toBe(true);
    expect(t.setBreakpoint('write', 0x2000n, 1)).toBe(true);
    expect(t.resume(100)).toEqual({ kind: 'watchpoint', type: 'write', address: 0x2000n });
    expect(t.readRegisters()[GDB_REGISTER.rip]).toBe(0x100an);
    expect(t.resume(100)).toEqual({ kind: 'breakpoint', type: 'sw', address: 0x1010n });
    // A breakpoint at the RIP a resume starts at hits at once (gdb removes it and steps first).
    expect(t.resume(100)).toEqual({ kind: 'breakpoint', type: 'sw', address: 0x1010n });
    expect(t.removeBreakpoint('sw', 0x1010n, 1)).toBe(true);
    expect(t.removeBreakpoint('sw', 0x1010n, 1)).toBe(false);
    expect(t.step()).toEqual({ kind: 'step' });
    expect(t.resume(100)).toEqual({ kind: 'exited', status: 0 });
  });

  it('runs the debugger\'s commands as monitor commands: break-exit, exit, vmcs, back-exit', () => {
    const t = new VmTarget(tinyEngine());
    expect(t.monitor('break-exit CPUID')).toBe('breakpoint 1, on VM exit CPUID\n');
    expect(t.resume(100)).toEqual({ kind: 'vm-exit', reason: 'VM exit: CPUID (exit reason 10) at 0x100e' });
    expect(t.monitor('vmcs GUEST_RIP')).toBe('GUEST_RIP = 0x100e\n');
    expect(t.monitor('exit').split('\n')[0]).toBe('exit #2: CPUID (basic exit reason 10), before its handler');
    const back = t.monitor('back-exit');
    expect(back).toMatch(/^at exit #1 IO_INSTRUCTION/);
    expect(back).toMatch(/maintenance flush register-cache/);
    expect(t.readRegisters()[GDB_REGISTER.rip]).toBe(0x100cn);
    expect(t.monitor('nosuch')).toBe("error: unknown command 'nosuch'; help lists the commands\n");
  });

  it('reads and writes guest-linear memory through paging; writes change the run from there', () => {
    const e = tinyEngine();
    const t = new VmTarget(e);
    expect(t.readMemory(0x1000n, 3)).toEqual(Uint8Array.from([0x48, 0xc7, 0xc7]));
    expect(t.readMemory(0x8000_0000_0000_0000n, 4)).toBeNull();
    // Patch `mov byte [rdi], 1` into `mov byte [rdi], 7`, run it, see 7.
    expect(t.writeMemory(0x1009n, Uint8Array.from([7]))).toBe(true);
    e.step(2);
    expect(t.readMemory(0x2000n, 1)).toEqual(Uint8Array.from([7]));
    expect(t.writeMemory(0x8000_0000_0000_0000n, Uint8Array.from([1]))).toBe(false);
    expect(t.writeRegister(GDB_REGISTER.rax, 0x55n)).toBe(true);
    expect(t.readRegisters()[GDB_REGISTER.rax]).toBe(0x55n);
    expect(t.writeRegister(GDB_REGISTER.cr0, 0n)).toBe(false);
  });

  it('tells who created it when gdb kills or detaches', () => {
    const ends: SessionEnd[] = [];
    const t = new VmTarget(tinyEngine(), (how) => ends.push(how));
    t.detach();
    t.kill();
    expect(ends).toEqual(['detach', 'kill']);
  });
});

let server: GdbServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});

/** Runs gdb in batch mode against the stub; its output. */
function gdbBatch(port: number, commands: readonly string[]): Promise<{ code: number | null; output: string }> {
  const args = ['--batch', '-nx', '-ex', 'set architecture i386:x86-64', '-ex', `target remote 127.0.0.1:${port}`];
  for (const c of commands) args.push('-ex', c);
  return new Promise((resolve, reject) => {
    const gdb = spawn('gdb', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    gdb.stdout.on('data', (b: Buffer) => (output += b.toString('utf8')));
    gdb.stderr.on('data', (b: Buffer) => (output += b.toString('utf8')));
    const timer = setTimeout(() => gdb.kill('SIGKILL'), 60_000);
    gdb.on('error', reject);
    gdb.on('close', (code) => { clearTimeout(timer); resolve({ code, output }); });
  });
}

describe('real gdb against an hvsim guest', () => {
  it.skipIf(!GDB_INSTALLED)(`oracle-hello: break at an address, continue, stepi, info registers, x/4xb, monitor exit and break-exit, back-exit, kill${SKIP_NOTE}`, async () => {
    const engine = guestEngine('oracle-hello.bin');
    const ends: SessionEnd[] = [];
    server = await startGdbServer(new VmTarget(engine, (how) => ends.push(how)));
    const { code, output } = await gdbBatch(server.port, [
      'info registers rip', 'break *0x1004e2', 'continue', 'stepi', 'info registers rip', 'x/4xb $pc', 'monitor exit',
      'delete', 'monitor break-exit IO_INSTRUCTION port=0x3f8', 'continue', 'monitor vmcs GUEST_RIP', 'monitor back-exit',
      'maintenance flush register-cache', 'info registers rip', 'kill',
    ]);
    const lines = output.split('\n').map((l) => l.trimEnd());
    expect(output).not.toMatch(/target description|Remote 'g' packet reply is too long|Truncated register/i);
    expect(lines).toContainEqual(expect.stringMatching(/^rip +0x100220 +0x100220$/));
    expect(lines).toContain('Breakpoint 1 at 0x1004e2');
    expect(lines).toContain('Breakpoint 1, 0x00000000001004e2 in ?? ()');
    // stepi over `in al, dx`: the instruction exits, the handler completes it, one step.
    expect(lines).toContain('0x00000000001004e3 in ?? ()');
    expect(lines).toContainEqual(expect.stringMatching(/^rip +0x1004e3 +0x1004e3$/));
    expect(lines).toContain('0x1004e3:\t0xa8\t0x20\t0x74\t0xfb');
    expect(lines).toContain('exit #5: IO_INSTRUCTION (basic exit reason 30), handled');
    expect(lines).toContain('breakpoint 2, on VM exit IO_INSTRUCTION PORT_NUMBER=0x3f8');
    expect(lines).toContain('VM exit: IO_INSTRUCTION (exit reason 30) at 0x1004ed');
    expect(lines).toContain('GUEST_RIP = 0x1004ed');
    expect(lines).toContainEqual(expect.stringMatching(/^at exit #5 IO_INSTRUCTION \(reason 30\), before its handler: rip 0x1004e2/));
    expect(lines).toContainEqual(expect.stringMatching(/^rip +0x1004e2 +0x1004e2$/));
    expect(lines).toContainEqual(expect.stringMatching(/^\[Inferior 1 \(.*\) killed\]$/));
    expect(code).toBe(0);
    expect(ends).toEqual(['kill']);
    expect(engine.atExit?.seq).toBe(5);
  });
});
