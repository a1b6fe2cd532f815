/**
 * Native differential-testing oracle: runs single x86-64 instructions on the
 * host CPU (Linux x86-64 only) from a given register/flag/memory state and
 * reports the exact final state. The C side lives in runner.c next to this
 * file; it is compiled with gcc on first use and cached in the temp directory
 * keyed by a hash of its source.
 *
 * Binary formats (little-endian) — see runner.c for the authoritative copy:
 *
 * Case (CASE_SIZE = 416 + DATA_SIZE bytes)
 *   0    code[16]       16   u32 codeLen (1..15)   20   u32 reserved (0)
 *   24   u64 gpr[16] (RAX RCX RDX RBX RSP RBP RSI RDI R8..R15)
 *   152  u64 rflags     160  xmm[16][16]           416  mem[DATA_SIZE]
 *
 * Result (RESULT_SIZE = 408 + DATA_SIZE bytes)
 *   0    u32 signal     4    u32 si_code           8    u64 rip
 *   16   u64 gpr[16]    144  u64 rflags            152  xmm[16][16]
 *   408  mem[DATA_SIZE]
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The 4096-byte RWX page holding the instruction (rest filled with HLT). */
export const CODE_BASE = 0x40000000;
/** The RW data window, filled from the case and reported back. */
export const DATA_BASE = 0x10000000;
export const DATA_SIZE = 8192;

/** Linux x86-64 signal numbers a case can end with. */
export const SIG: { SEGV: number; FPE: number; ILL: number; TRAP: number; BUS: number; ALRM: number } = {
  SEGV: 11,
  FPE: 8,
  ILL: 4,
  TRAP: 5,
  BUS: 7,
  ALRM: 14,
};
// Not part of SIG, but can appear in NativeOutcome.signal: 31 (SIGSYS) when the
// case executed a system call (blocked by the runner's seccomp filter), and
// 0xFFFFFFFF if the runner saw something impossible.

export interface MachineState {
  /** 16 GPRs in encoding order: RAX RCX RDX RBX RSP RBP RSI RDI R8..R15. */
  gpr: bigint[];
  rflags: bigint;
  /** XMM0..XMM15, 16 bytes each, little-endian. */
  xmm: Uint8Array;
  /** The DATA_SIZE-byte window at DATA_BASE. */
  mem: Uint8Array;
}

export interface NativeCase {
  code: Uint8Array;
  state: MachineState;
}

export interface NativeOutcome {
  /** Signal number that ended the case (see SIG; 31 = SIGSYS; 0xFFFFFFFF = impossible). */
  signal: number;
  /** si_code, read from the u32 field as signed (SI_KERNEL = 0x80, SEGV_MAPERR = 1, ...). */
  siCode: number;
  /** RIP from the signal's ucontext: the faulting instruction for faults, the next one for traps. */
  rip: bigint;
  state: MachineState;
}

const C_CODE = 0;
const C_CODELEN = 16;
const C_RESERVED = 20;
const C_GPR = 24;
const C_RFLAGS = 152;
const C_XMM = 160;
const C_MEM = 416;
const CASE_SIZE = C_MEM + DATA_SIZE;

const R_SIGNAL = 0;
const R_SICODE = 4;
const R_RIP = 8;
const R_GPR = 16;
const R_RFLAGS = 144;
const R_XMM = 152;
const R_MEM = 408;
const RESULT_SIZE = R_MEM + DATA_SIZE;

/** Cases per runner process; bounds the size of the stdin/stdout buffers. */
const CHUNK = 4096;

const MASK64 = (1n << 64n) - 1n;

function findSource(): string {
  const candidates = [
    new URL('./runner.c', import.meta.url),
    // When bundled into dist/fuzz/, fall back to the source tree.
    new URL('../../fuzz/native/runner.c', import.meta.url),
    new URL('../fuzz/native/runner.c', import.meta.url),
  ];
  for (const u of candidates) {
    const p = fileURLToPath(u);
    if (fs.existsSync(p)) return p;
  }
  throw new Error(`hvsim native: runner.c not found (looked at ${candidates.map((u) => fileURLToPath(u)).join(', ')})`);
}

let runnerPath: string | undefined;

/** Compile runner.c (once per source hash) and return the binary's path. */
function buildRunner(): string {
  if (runnerPath !== undefined) return runnerPath;
  const src = findSource();
  const text = fs.readFileSync(src);
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 12);
  const dir = path.join(os.tmpdir(), `hvsim-native-${hash}`);
  const bin = path.join(dir, 'runner');
  if (!fs.existsSync(bin)) {
    fs.mkdirSync(dir, { recursive: true });
    const tmp = path.join(dir, `runner.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
    const r = spawnSync('gcc', ['-O2', '-fno-stack-protector', '-Wall', '-o', tmp, src], { encoding: 'utf8' });
    if (r.error) {
      throw new Error(`hvsim native: cannot run gcc: ${r.error.message}`);
    }
    if (r.status !== 0) {
      try {
        fs.rmSync(tmp, { force: true });
      } catch {
        // ignore
      }
      throw new Error(`hvsim native: gcc failed (status ${r.status}):\n${r.stderr}`);
    }
    // Atomic publish: parallel workers each build their own temp file and the
    // last rename wins with an identical binary.
    fs.renameSync(tmp, bin);
  }
  runnerPath = bin;
  return bin;
}

let available: boolean | undefined;

/** True when on Linux x86-64 and gcc builds the runner. */
export function nativeAvailable(): boolean {
  if (available !== undefined) return available;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    available = false;
    return false;
  }
  try {
    buildRunner();
    available = true;
  } catch {
    available = false;
  }
  return available;
}

function encodeCase(c: NativeCase, buf: Buffer, off: number, index: number): void {
  const { code, state } = c;
  if (code.length < 1 || code.length > 15) {
    throw new Error(`hvsim native: case ${index}: code length ${code.length} not in 1..15`);
  }
  if (state.gpr.length !== 16) throw new Error(`hvsim native: case ${index}: need 16 GPRs, got ${state.gpr.length}`);
  if (state.xmm.length !== 256) throw new Error(`hvsim native: case ${index}: xmm must be 256 bytes`);
  if (state.mem.length !== DATA_SIZE) throw new Error(`hvsim native: case ${index}: mem must be ${DATA_SIZE} bytes`);
  buf.fill(0, off, off + C_MEM);
  buf.set(code, off + C_CODE);
  buf.writeUInt32LE(code.length, off + C_CODELEN);
  buf.writeUInt32LE(0, off + C_RESERVED);
  for (let i = 0; i < 16; i++) {
    buf.writeBigUInt64LE(BigInt.asUintN(64, state.gpr[i]!), off + C_GPR + 8 * i);
  }
  buf.writeBigUInt64LE(BigInt.asUintN(64, state.rflags), off + C_RFLAGS);
  buf.set(state.xmm, off + C_XMM);
  buf.set(state.mem, off + C_MEM);
}

function decodeResult(buf: Buffer, off: number): NativeOutcome {
  const gpr: bigint[] = [];
  for (let i = 0; i < 16; i++) gpr.push(buf.readBigUInt64LE(off + R_GPR + 8 * i) & MASK64);
  return {
    signal: buf.readUInt32LE(off + R_SIGNAL),
    siCode: buf.readInt32LE(off + R_SICODE),
    rip: buf.readBigUInt64LE(off + R_RIP),
    state: {
      gpr,
      rflags: buf.readBigUInt64LE(off + R_RFLAGS),
      xmm: new Uint8Array(buf.subarray(off + R_XMM, off + R_XMM + 256)),
      mem: new Uint8Array(buf.subarray(off + R_MEM, off + R_MEM + DATA_SIZE)),
    },
  };
}

function runChunk(bin: string, cases: NativeCase[], base: number): NativeOutcome[] {
  const input = Buffer.alloc(cases.length * CASE_SIZE);
  cases.forEach((c, i) => encodeCase(c, input, i * CASE_SIZE, base + i));
  const r = spawnSync(bin, [], {
    input,
    maxBuffer: cases.length * RESULT_SIZE + (1 << 20),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const stderr = r.stderr ? r.stderr.toString('utf8') : '';
  if (r.error) throw new Error(`hvsim native: runner failed: ${r.error.message}\n${stderr}`);
  if (r.status !== 0 || r.signal !== null) {
    throw new Error(`hvsim native: runner exited with status ${r.status} signal ${r.signal}:\n${stderr}`);
  }
  const out = r.stdout;
  if (out.length !== cases.length * RESULT_SIZE) {
    throw new Error(
      `hvsim native: runner wrote ${out.length} bytes, expected ${cases.length * RESULT_SIZE}:\n${stderr}`,
    );
  }
  const results: NativeOutcome[] = [];
  for (let i = 0; i < cases.length; i++) results.push(decodeResult(out, i * RESULT_SIZE));
  return results;
}

/** Run each case natively; one outcome per case, in order. */
export function runNative(cases: NativeCase[]): NativeOutcome[] {
  if (cases.length === 0) return [];
  const bin = buildRunner();
  const results: NativeOutcome[] = [];
  for (let i = 0; i < cases.length; i += CHUNK) {
    results.push(...runChunk(bin, cases.slice(i, i + CHUNK), i));
  }
  return results;
}
