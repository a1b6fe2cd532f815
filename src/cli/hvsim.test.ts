import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseArgs, parseSize, UsageError } from './args.js';
import { bundledGuest, main } from './hvsim.js';

function capture(argv: string[]): { status: number; out: string[]; err: string[]; serial: string } {
  const out: string[] = [], err: string[] = [], serial: number[] = [];
  const status = main(argv, { out: (l) => out.push(l), err: (l) => err.push(l), serial: (b) => serial.push(b) });
  return { status, out, err, serial: Buffer.from(serial).toString('latin1') };
}

describe('hvsim run', () => {
  it('runs the bundled default guest under the hypervisor: three tasks, timer interrupts, halt with IF = 0 (status 0), as on the bare processor', () => {
    const r = capture(['run']);
    expect(r.err).toEqual([]);
    expect(r.status).toBe(0);
    const lines = r.serial.split('\n');
    expect(lines[0]).toBe('hvsim demo: started by a Multiboot loader, in 32-bit protected mode');
    expect(lines.at(-2)).toBe('kernel: all tasks done: 55 timer ticks, 49 task switches (MOV to CR3), 20 lines written');
    expect(capture(['run', '--bare']).serial).toBe(r.serial);
  });

  it('--trace writes one JSON object per VM exit: seq, reason, name, rip, len, qualification, decoded, insn, sinceLast', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hvsim-'));
    const file = join(dir, 'trace.jsonl');
    const r = capture(['run', '--trace', file, '--max-insns', '100000']);
    expect(r.status).toBe(8);
    const exits = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(exits.length).toBeGreaterThan(10);
    exits.forEach((e, k) => expect(e.seq).toBe(k + 1));
    // The demo's first exits: its serial output, polling LSR (IN from 3FDH) and writing THR (OUT to 3F8H), SDM vol. 3C table 28-5.
    expect(exits[0]).toMatchObject({ reason: 30, name: 'IO_INSTRUCTION', len: 1, qualification: '0x3fd0008', insn: 'in al, dx',
      decoded: { SIZE_OF_ACCESS: 0, DIRECTION: 1, STRING_INSTRUCTION: 0, REP_PREFIXED: 0, OPERAND_ENCODING: 0, PORT_NUMBER: 0x3fd } });
    expect(exits[1]).toMatchObject({ reason: 30, len: 1, qualification: '0x3f80000', insn: 'out dx, al' });
    expect(exits.every((e) => /^0x[0-9a-f]+$/.test(e.rip) && typeof e.sinceLast === 'number')).toBe(true);
    const cpuid = exits.find((e) => e.name === 'CPUID');
    expect(cpuid).toMatchObject({ reason: 10, len: 2, insn: 'cpuid', qualification: '0x0' });
  });

  it('runs the sieve as a flat 64-bit image: 148933 primes below 2,000,000, halted with IF = 0 (status 0)', () => {
    const r = capture(['run', bundledGuest('sieve.bin'), '--bare', '--format', 'flat', '--mode', '64', '--json']);
    expect(r.err).toEqual([]);
    expect(r.status).toBe(0);
    const result = JSON.parse(r.out[0]!);
    expect(result.stop).toEqual({ kind: 'halt' });
    expect(BigInt(result.registers.rax)).toBe(148933n);
    expect(BigInt(result.registers.rdx)).toBe(142913828922n);
  });

  it('--stats counts the VM exits of a hypervisor on the model by reason, and the walks of both dimensions (vmx-ept: 3 EPT violations, 1 misconfiguration)', () => {
    const r = capture(['run', bundledGuest('vmx-ept.bin'), '--bare', '--stats']);
    expect(r.status).toBe(1);
    const exits = r.err.find((l) => l.includes('VM exits'));
    expect(exits).toBe('hvsim: 7 VM exits: EPT_VIOLATION 3, VMCALL 2, HLT 1, EPT_MISCONFIGURATION 1');
    expect(r.err.some((l) => /^hvsim: \d+ EPT walks \(\d+ entries read\)$/.test(l))).toBe(true);
    const json = JSON.parse(capture(['run', bundledGuest('vmx-ept.bin'), '--bare', '--json']).out[0]!);
    expect(json.vmExits).toEqual({ EPT_VIOLATION: 3, VMCALL: 2, HLT: 1, EPT_MISCONFIGURATION: 1 });
    expect(json.paging.flushes.invept).toBe(5);
    expect(json.ept.walks).toBeGreaterThan(0);
    expect(json.ept.references).toBeGreaterThanOrEqual(json.ept.walks);
  });

  it('exits with the debug-exit status (v << 1) | 1 when the guest writes v to port 0xF4', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hvsim-'));
    const image = join(dir, 'exit.bin');
    writeFileSync(image, Uint8Array.of(0xb0, 0x10, 0xe6, 0xf4, 0xf4)); // mov al, 0x10; out 0xf4, al; hlt
    const r = capture(['run', image, '--format', 'flat', '--mode', '32']);
    expect(r.status).toBe(0x21);
    expect(r.err).toEqual([]);
  });

  it('runs a flat image and reports an exhausted budget with status 8', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hvsim-'));
    const image = join(dir, 'loop.bin');
    writeFileSync(image, Uint8Array.of(0xeb, 0xfe)); // jmp $
    const r = capture(['run', image, '--max-insns', '1000']);
    expect(r.status).toBe(8);
    expect(r.err.join('\n')).toContain('instruction budget exhausted after 1,000 instructions');
  });

  it('reports a triple fault with status 10: #UD with no IDT (SDM vol. 3A, 6.15)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hvsim-'));
    const image = join(dir, 'ud.bin');
    writeFileSync(image, Uint8Array.of(0x0f, 0x0b)); // ud2; the loader leaves the IDT limit 0
    const r = capture(['run', image, '--bare']);
    expect(r.status).toBe(10);
    expect(r.err.join('\n')).toContain('shutdown: triple fault');
  });

  it('rejects a missing image with one line and status 2', () => {
    const r = capture(['run', '/nonexistent/image.bin']);
    expect(r.status).toBe(2);
    expect(r.err).toEqual(["hvsim: cannot read image '/nonexistent/image.bin': no such file"]);
    expect(r.out).toEqual([]);
  });

  it('rejects an empty image and one that does not fit in memory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hvsim-'));
    const empty = join(dir, 'empty.bin');
    writeFileSync(empty, new Uint8Array(0));
    expect(capture(['run', empty]).err).toEqual(['hvsim: the image is empty']);
    const big = join(dir, 'big.bin');
    writeFileSync(big, new Uint8Array(8192));
    const r = capture(['run', big, '--bare', '--memory', '8K']);
    expect(r.status).toBe(2);
    expect(r.err[0]).toMatch(/does not fit in 8192 bytes of memory/);
  });
});

describe('command-line parsing', () => {
  it('reads sizes with units', () => {
    expect(parseSize('4096', 'x')).toBe(4096);
    expect(parseSize('0x1000', 'x')).toBe(4096);
    expect(parseSize('64M', 'x')).toBe(64 * 1024 * 1024);
    expect(parseSize('1g', 'x')).toBe(1024 ** 3);
    expect(() => parseSize('12Q', 'x')).toThrow(UsageError);
  });

  it('names the problem with bad options', () => {
    expect(() => parseArgs(['run', '--frobnicate'])).toThrow("unknown option '--frobnicate'");
    expect(() => parseArgs(['run', '--mode', '16'])).toThrow("--mode must be real, 32 or 64, not '16'");
    expect(() => parseArgs(['run', '--max-insns'])).toThrow('--max-insns needs a value');
    expect(() => parseArgs(['run', 'a.bin', 'b.bin'])).toThrow('more than one image');
    expect(() => parseArgs(['run', '--cpus', '0'])).toThrow("--cpus must be 1 to 255, not '0'");
    expect(() => parseArgs(['run', '--cpus', '256'])).toThrow("--cpus must be 1 to 255, not '256'");
    expect(parseArgs(['run', '--cpus', '8'])).toMatchObject({ cpus: 8 });
    expect(() => parseArgs(['fly'])).toThrow("unknown command 'fly'");
    const r = capture(['run', '--memory', '5000']);
    expect(r).toEqual({ status: 2, out: [], err: ['hvsim: --memory must be a multiple of 4K'], serial: '' });
  });

  it('answers --help and --version', () => {
    expect(capture(['--help']).out[0]).toMatch(/^usage: hvsim run/);
    expect(capture(['--version']).out).toEqual(['0.1.0']);
  });

  it('bad input loses nothing: a trace file and a plot keep their contents when the run is refused before it starts (status 2)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hvsim-'));
    const trace = join(dir, 'trace.jsonl'), plot = join(dir, 'cost.svg');
    writeFileSync(trace, 'earlier trace\n');
    writeFileSync(plot, '<svg/>');
    // A real-mode guest without EPT (no unrestricted guest): refused after the outputs were checked.
    const modes = [bundledGuest('modes.bin'), '--format', 'flat', '--mode', 'real', '--load', '0x7c00'];
    expect(capture(['run', ...modes, '--no-ept', '--trace', trace]).status).toBe(2);
    expect(capture(['cost', ...modes, '--profile', 'prescott', '--plot', plot]).status).toBe(2);
    expect(readFileSync(trace, 'utf8')).toBe('earlier trace\n');
    expect(readFileSync(plot, 'utf8')).toBe('<svg/>');
  });
});
