/**
 * Test fixtures of the debugger: a tiny flat 64-bit guest whose every
 * instruction and exit is known, and engines over it and over the bundled
 * guests (guests/*.bin).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { vmConfig } from '../hv/config.js';
import { PcMachine } from '../platform/machine.js';
import { DebugEngine, type EngineOptions } from './engine.js';
import { DebugSession, PROMPT, SerialLines } from './repl.js';
import { machineCaptureRules, stateFingerprint, type Snapshotted } from './snapshot.js';

/**
 * Loaded at 0x1000 as a flat binary in 64-bit mode (the loader's identity-mapped
 * page tables, EPT beneath):
 *
 * | address | instruction | under the hypervisor |
 * |---|---|---|
 * | 0x1000 | mov rdi, 0x2000 | |
 * | 0x1007 | mov byte [rdi], 1 | writes 0x2000 |
 * | 0x100a | mov al, [rdi] | reads 0x2000 |
 * | 0x100c | out 0x80, al | exit #1 IO_INSTRUCTION, port 0x80 |
 * | 0x100e | cpuid | exit #2 CPUID |
 * | 0x1010 | inc rax | |
 * | 0x1013 | cli | |
 * | 0x1014 | hlt | exit #3 HLT; with IF = 0 the VM halts for good |
 */
export const TINY_PROGRAM: Uint8Array = Uint8Array.from([
  0x48, 0xc7, 0xc7, 0x00, 0x20, 0x00, 0x00,
  0xc6, 0x07, 0x01,
  0x8a, 0x07,
  0xe6, 0x80,
  0x0f, 0xa2,
  0x48, 0xff, 0xc0,
  0xfa,
  0xf4,
]);

/** An engine over TINY_PROGRAM. */
export function tinyEngine(options: EngineOptions = {}): DebugEngine {
  return DebugEngine.create({ ...options, config: vmConfig({}), image: TINY_PROGRAM, load: { format: 'flat', load: 0x1000, mode: '64' } });
}

/** The bytes of a bundled guest. */
export function guestImage(name: string): Uint8Array {
  return readFileSync(fileURLToPath(new URL(`../../guests/${name}`, import.meta.url)));
}

/** An engine over a bundled guest, loaded as `hvsim run` loads it. */
export function guestEngine(name: string, options: EngineOptions = {}): DebugEngine {
  return DebugEngine.create({ ...options, config: vmConfig({}), image: guestImage(name) });
}

/** A session over a bundled guest (or the tiny program), its serial output collected with the commands' output. */
export function guestSession(name: string | 'tiny', options: EngineOptions = {}): DebugSession {
  const serial = new SerialLines();
  const withSerial = { ...options, serialOut: (b: number) => serial.push(b) };
  const engine = name === 'tiny' ? tinyEngine(withSerial) : guestEngine(name, withSerial);
  return new DebugSession(engine, { serial });
}

/** Fields of the processor's lazy-flags record (flags.ts): RFLAGS materialized stands for them. */
const LAZY_FLAGS = new Set(['flags', 'lazyMask', 'lfOp', 'lfSize', 'lfALo', 'lfAHi', 'lfBLo', 'lfBHi', 'lfRLo', 'lfRHi', 'lfCarryIn']);
/** The MMU's fields that follow from the processor's state (the rest are its fast entries' bookkeeping). */
const MMU_STATE = new Set(['canonicalShift', 'user', 'cpl3', 'implicit', 'watch', 'translator']);

/**
 * The state fingerprint of a VM or a bare machine (`opaque`: the debugger's own hooks) (snapshot.ts) without what is not state: the
 * lazy-flags record becomes RFLAGS (compiled and interpreted code leave
 * different operands behind for the same flags), the MMU keeps only what
 * follows from the processor's state (not its fast entries' epochs), and the
 * count of paging-TLB hits after a fast-entry miss goes (a restore drops the
 * fast entries, so more lookups reach the TLB).
 */
export function architecturalFingerprint(vm: Snapshotted, opaque: readonly object[] = []): Map<string, string> {
  const machine = vm instanceof PcMachine ? vm : vm.machine, root = vm instanceof PcMachine ? 'machine' : 'vm.machine';
  const fp = stateFingerprint(vm, machineCaptureRules(machine, opaque));
  const keep = (path: string, test: (key: string) => boolean, extra = ''): void => {
    const text = fp.get(path);
    if (text === undefined) throw new Error(`no ${path} in the fingerprint`);
    fp.set(path, text.split(',').filter((kv) => test(kv.slice(0, kv.indexOf(':')))).join(',') + extra);
  };
  keep(`${root}.cpus[0]`, (k) => !LAZY_FLAGS.has(k), `,rflags:${machine.cpu.rflags}`);
  keep(`${root}.cpus[0].mmu`, (k) => MMU_STATE.has(k));
  fp.delete(`${root}.cpus[0].paging.counters`);
  return fp;
}

/** The lines of a transcript file (src/debug/transcripts/NAME.txt). */
export function transcriptFile(name: string): string[] {
  const text = readFileSync(fileURLToPath(new URL(`./transcripts/${name}.txt`, import.meta.url)), 'utf8');
  return text.replace(/\n$/, '').split('\n');
}

/** The commands of a transcript (its prompt lines), as a script. */
export function transcriptScript(lines: readonly string[]): string {
  return lines.filter((l) => l.startsWith(PROMPT)).map((l) => l.slice(PROMPT.length)).join('\n');
}

/** The output of the `nth` command `command` in a transcript (up to the next prompt). */
export function outputOf(lines: readonly string[], command: string, nth = 0): string[] {
  const starts = lines.flatMap((l, k) => (l === `${PROMPT}${command}` ? [k] : []));
  const k = starts[nth];
  if (k === undefined) throw new Error(`no command '${command}' in the transcript`);
  const end = lines.findIndex((l, j) => j > k && l.startsWith(PROMPT));
  return lines.slice(k + 1, end < 0 ? undefined : end);
}
