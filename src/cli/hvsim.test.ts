import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseArgs, parseSize, UsageError } from './args.js';
import { main } from './hvsim.js';

function capture(argv: string[]): { status: number; out: string[]; err: string[] } {
  const out: string[] = [], err: string[] = [];
  const status = main(argv, (l) => out.push(l), (l) => err.push(l));
  return { status, out, err };
}

describe('hvsim run', () => {
  it('runs the bundled default guest to its halt: 148933 primes below 2,000,000', () => {
    const r = capture(['run', '--json']);
    expect(r.err).toEqual([]);
    expect(r.status).toBe(0);
    const result = JSON.parse(r.out[0]!);
    expect(result.stop).toEqual({ kind: 'halt' });
    expect(BigInt(result.registers.rax)).toBe(148933n);
    expect(BigInt(result.registers.rdx)).toBe(142913828922n);
  });

  it('runs a flat image and reports an exhausted budget with status 3', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hvsim-'));
    const image = join(dir, 'loop.bin');
    writeFileSync(image, Uint8Array.of(0xeb, 0xfe)); // jmp $
    const r = capture(['run', image, '--max-insns', '1000']);
    expect(r.status).toBe(3);
    expect(r.out.join('\n')).toContain('instruction budget exhausted');
    expect(r.out.join('\n')).toContain('after 1,000 instructions');
  });

  it('reports an unhandled exception with status 4', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hvsim-'));
    const image = join(dir, 'ud.bin');
    writeFileSync(image, Uint8Array.of(0x0f, 0x0b)); // ud2
    const r = capture(['run', image]);
    expect(r.status).toBe(4);
    expect(r.out.join('\n')).toContain('unhandled exception #UD');
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
    const r = capture(['run', big, '--memory', '8K']);
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
    expect(() => parseArgs(['run', '--mode', '16'])).toThrow("--mode must be 64 or 32, not '16'");
    expect(() => parseArgs(['run', '--max-insns'])).toThrow('--max-insns needs a value');
    expect(() => parseArgs(['run', 'a.bin', 'b.bin'])).toThrow('more than one image');
    expect(() => parseArgs(['fly'])).toThrow("unknown command 'fly'");
    const r = capture(['run', '--memory', '5000']);
    expect(r).toEqual({ status: 2, out: [], err: ['hvsim: --memory must be a multiple of 4K'] });
  });

  it('answers --help and --version', () => {
    expect(capture(['--help']).out[0]).toMatch(/^usage: hvsim run/);
    expect(capture(['--version']).out).toEqual(['0.1.0']);
  });
});
