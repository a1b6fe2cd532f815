/**
 * Running small code fragments on a fresh processor: for unit tests and for
 * users' own tests of instruction semantics.
 */
import { Cpu, type StopReason } from './cpu.js';
import { SKYLAKE, type CpuFeature, type CpuProfile } from './profile.js';
import { run } from './run.js';
import { RSP } from './regs.js';

/**
 * The skylake profile with features added or removed: processors that differ
 * from it in what CPUID announces (tests of a feature's absence, or of one the
 * part lacks such as LA57).
 */
export function skylakeWith(change: { add?: readonly CpuFeature[]; remove?: readonly CpuFeature[] }): CpuProfile {
  const add = change.add ?? [], remove = change.remove ?? [];
  const features = [...SKYLAKE.features.filter((f) => !remove.includes(f)), ...add.filter((f) => !SKYLAKE.features.includes(f))];
  return { ...SKYLAKE, name: `skylake${add.map((f) => `+${f}`).join('')}${remove.map((f) => `-${f}`).join('')}`, features };
}

export const CODE_ADDRESS = 0x1000;
export const STACK_TOP = 0x80000;
export const DATA_ADDRESS = 0x10000;

export interface FragmentOptions {
  /** Code size: 64 (flat 64-bit mode, the default), 32 (flat protected mode). */
  mode?: 64 | 32;
  /** Instructions to run at most (default 10,000). */
  budget?: number;
  /** Initial register values by register number (taken modulo 2^64). */
  regs?: Readonly<Record<number, bigint>>;
  /** Initial RFLAGS. */
  rflags?: number;
  /** Bytes loaded at DATA_ADDRESS. */
  data?: ArrayLike<number>;
  /** Prepares anything else before the run (after regs, rflags and data). */
  setup?: (cpu: Cpu) => void;
  /** The processor modelled (default: skylake). */
  profile?: CpuProfile;
}

export interface FragmentResult { cpu: Cpu; stop: StopReason }

/**
 * Loads `code` at CODE_ADDRESS followed by HLT, points RSP at STACK_TOP and runs
 * it until it halts, raises an exception or exhausts the budget.
 */
export function runFragment(code: ArrayLike<number>, options: FragmentOptions = {}): FragmentResult {
  const cpu = new Cpu({ memorySize: 16 * 1024 * 1024, profile: options.profile });
  if ((options.mode ?? 64) === 64) cpu.enterFlat64(); else cpu.enterFlat32();
  const bytes = new Uint8Array(code.length + 1);
  bytes.set(Array.from(code));
  bytes[code.length] = 0xf4;
  cpu.memory.load(CODE_ADDRESS, bytes);
  cpu.ripLo = CODE_ADDRESS;
  cpu.gpr[2 * RSP] = STACK_TOP;
  for (const [r, v] of Object.entries(options.regs ?? {})) cpu.setReg64(Number(r), BigInt.asUintN(64, v));
  if (options.rflags !== undefined) cpu.rflags = options.rflags;
  if (options.data !== undefined) cpu.memory.load(DATA_ADDRESS, Uint8Array.from(options.data));
  options.setup?.(cpu);
  const stop = run(cpu, options.budget ?? 10_000);
  return { cpu, stop };
}
