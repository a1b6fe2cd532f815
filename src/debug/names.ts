/**
 * Names a user types into the debugger (commands, exit reasons, VMCS fields,
 * qualification fields), looked up case-insensitively, with "did you mean"
 * suggestions for the ones that match nothing.
 */
import { ExitReason, exitReasonName } from '../../vmcs/exit-reasons.js';

/** A mistake the user made: one line for them, the session goes on. */
export class DebugInputError extends Error {}

/**
 * Edit distance between two strings: insertions, deletions, substitutions and
 * transpositions of neighbours ("stpe" is one edit from "step").
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The candidates closest to `word` (case-insensitive): those that contain it
 * or are within a third of its length in edit distance, best first, at most `max`.
 */
export function closest(word: string, candidates: Iterable<string>, max = 3): string[] {
  const w = word.toUpperCase();
  const scored: [string, number][] = [];
  for (const c of candidates) {
    const u = c.toUpperCase();
    const d = editDistance(w, u);
    const contains = w.length >= 3 && u.includes(w);
    if (d <= Math.max(1, Math.floor(w.length / 3)) || contains) scored.push([c, contains ? Math.min(d, 1) : d]);
  }
  scored.sort((x, y) => x[1] - y[1] || x[0].length - y[0].length || x[0].localeCompare(y[0]));
  return [...new Set(scored.map(([c]) => c))].slice(0, max);
}

/** " (did you mean A or B?)", or "" when nothing is close. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const c = closest(word, candidates);
  if (c.length === 0) return '';
  return ` (did you mean ${c.length === 1 ? c[0] : `${c.slice(0, -1).join(', ')} or ${c.at(-1)}`}?)`;
}

/** Short names for exit reasons, besides the SDM's (appendix C) names. */
export const EXIT_REASON_ALIASES: Readonly<Record<string, number>> = {
  CR_ACCESS: ExitReason.CONTROL_REGISTER_ACCESS,
  MOV_CR: ExitReason.CONTROL_REGISTER_ACCESS,
  IO: ExitReason.IO_INSTRUCTION,
  EXCEPTION: ExitReason.EXCEPTION_OR_NMI,
  NMI: ExitReason.EXCEPTION_OR_NMI,
  INTERRUPT: ExitReason.EXTERNAL_INTERRUPT,
  EPT_MISCONFIG: ExitReason.EPT_MISCONFIGURATION,
  PREEMPTION_TIMER: ExitReason.VMX_PREEMPTION_TIMER_EXPIRED,
  MTF: ExitReason.MONITOR_TRAP_FLAG,
  WBINVD: ExitReason.WBINVD_WBNOINVD,
  INVALID_GUEST_STATE: ExitReason.VM_ENTRY_FAILURE_INVALID_GUEST_STATE,
  MSR_LOADING: ExitReason.VM_ENTRY_FAILURE_MSR_LOADING,
};

/** Every name an exit reason answers to. */
export function exitReasonNames(): string[] {
  return [...Object.keys(ExitReason), ...Object.keys(EXIT_REASON_ALIASES)];
}

/** The basic exit reason a name or number stands for (CR_ACCESS, io_instruction, 30, 0x1e). */
export function parseExitReason(text: string): number {
  const u = text.toUpperCase();
  if (u in ExitReason) return ExitReason[u as keyof typeof ExitReason];
  if (u in EXIT_REASON_ALIASES) return EXIT_REASON_ALIASES[u]!;
  if (/^(0x[0-9a-f]+|\d+)$/i.test(text)) {
    const n = Number(text);
    if (exitReasonName(n) !== undefined) return n;
    throw new DebugInputError(`there is no exit reason ${text} (basic exit reasons are SDM appendix C's)`);
  }
  throw new DebugInputError(`unknown exit reason '${text}'${didYouMean(text, exitReasonNames())}`);
}

/**
 * A number as the user writes it: 0x1f, 31, 0b11111, with `_` between digits;
 * a bigint so that 64-bit addresses stay exact.
 */
export function parseNumber(text: string, what: string): bigint {
  const t = text.replace(/_/g, '');
  if (/^0x[0-9a-f]+$/i.test(t) || /^0b[01]+$/i.test(t) || /^\d+$/.test(t)) {
    const v = BigInt(t);
    if (v >= 1n << 64n) throw new DebugInputError(`${what} '${text}' does not fit in 64 bits`);
    return v;
  }
  throw new DebugInputError(`${what} must be a number like 0x3f8 or 1016, not '${text}'`);
}

/** A count (steps, exits, bytes, lines): a positive integer no larger than `max`. */
export function parseCount(text: string | undefined, fallback: number, what: string, max = 1e12): number {
  if (text === undefined) return fallback;
  if (!/^(0x[0-9a-f_]+|[\d_]+)$/i.test(text)) throw new DebugInputError(`${what} must be a positive integer like 10 or 0x10, not '${text}'`);
  const v = parseNumber(text, what);
  if (v < 1n || v > BigInt(max)) throw new DebugInputError(`${what} must be between 1 and ${max}, not '${text}'`);
  return Number(v);
}

/** A command that takes no more than `n` arguments. */
export function atMost(args: readonly string[], n: number, usage: string): void {
  if (args.length > n) throw new DebugInputError(`too many arguments: ${usage}`);
}

/** A command of a debugger session as its table knows it: names, usage line and help text. */
export interface NamedCommand {
  readonly name: string;
  readonly aliases: readonly string[];
  readonly usage: string;
  readonly help: string;
}

/** A session's commands, found by name or alias; a misspelt one gets a suggestion. Shared by both sessions. */
export class CommandTable<C extends NamedCommand> {
  private readonly byName = new Map<string, C>();
  /** Every name and alias (for completion). */
  readonly names: readonly string[];
  /** The names suggestions are made from: full names, and aliases of three letters or more. */
  private readonly suggested: readonly string[];

  constructor(readonly commands: readonly C[]) {
    for (const c of commands) for (const n of [c.name, ...c.aliases]) this.byName.set(n, c);
    this.names = [...this.byName.keys()];
    this.suggested = this.names.filter((n) => n.length >= 3);
  }

  /** The command a word names (any case), if any. */
  find(word: string): C | undefined {
    return this.byName.get(word.toLowerCase());
  }

  /** The error for a first word that names no command. */
  unknown(word: string): DebugInputError {
    return new DebugInputError(`unknown command '${word}'${didYouMean(word.toLowerCase(), this.suggested)}; help lists the commands`);
  }

  /** `help [TOPIC]`: every command under `heading`, the address forms last; or one command's usage and text. */
  help(topic: string | undefined, heading: string, addresses: string): string[] {
    if (topic === undefined) {
      return [heading, ...this.commands.map((c) => `  ${c.usage}${c.aliases.length > 0 ? `  [${c.aliases.join(', ')}]` : ''}`), addresses];
    }
    const def = this.find(topic);
    if (def === undefined) throw new DebugInputError(`no command '${topic}'${didYouMean(topic, this.suggested)}`);
    return [def.usage, `  ${def.help}`];
  }
}
