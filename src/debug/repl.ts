/**
 * The debugger's command language over a DebugEngine: one command a line,
 * each answered with lines of text. `DebugSession.execute` runs a line
 * synchronously (scripts, transcripts, gdb's `monitor`); `executeAsync` runs
 * the commands that move the guest in slices with a turn of the event loop
 * between them, so that Ctrl-C can stop a long `continue` (the interactive
 * REPL, src/cli/debug.ts). `runScript` prints a transcript: each command
 * after the prompt, then its output, so that sessions are reproducible.
 *
 * A mistake in a command (an unknown command, a malformed address, a VMCS
 * field that does not exist) is answered with one line starting `error:`,
 * with a suggestion where one is close; the session goes on.
 */
import { InternalError } from '../cpu/run.js';
import type { Syntax } from '../hv/disassemble.js';
import { VmConfigError } from '../hv/vm.js';
import { exitReasonName } from '../../vmcs/exit-reasons.js';
import { QUALIFICATION_LAYOUTS } from '../../vmcs/qualifications.js';
import { describeBreakpoint, parseBreakSpec, parseWatchSpec } from './breakpoints.js';
import type { DebugEngine, EngineStop, RunOptions } from './engine.js';
import { GuestState } from './guest-state.js';
import {
  disasmLines, dumpLines, exitLines, regsLines, snapshotsLine, stopLines, traceLines, translateLines, vmcsDiffLines, vmcsLines,
  whereLine, whyEntryFailedLines, type Address,
} from './inspect.js';
import {
  atMost, CommandTable, DebugInputError, didYouMean, exitReasonNames, parseCount, parseExitReason, parseNumber, type NamedCommand,
} from './names.js';
import { sregsLines } from './system-registers.js';
import { VMCS_GROUPS } from './vmcs-view.js';

/** The prompt scripts and the REPL show. */
export const PROMPT = '(hvsim) ';
/** Instructions a run command executes between two looks for Ctrl-C. */
const REPL_SLICE = 5_000_000;

/** Collects the guest's serial output between commands, as whole lines. */
export class SerialLines {
  private partial = '';
  private readonly done: string[] = [];

  /** A byte the guest wrote to COM1. */
  push(byte: number): void {
    if (byte === 10) { this.done.push(this.partial); this.partial = ''; }
    else if (byte !== 13) this.partial += String.fromCharCode(byte);
  }

  /**
   * The lines finished since the last call, each marked as the guest's; with
   * `all`, the unfinished one too (at the end of a session).
   */
  take(all = false): string[] {
    const lines = this.done.splice(0);
    if (all && this.partial !== '') { lines.push(this.partial); this.partial = ''; }
    return lines.map((l) => `serial| ${l}`);
  }
}

/** A command's answer. */
export interface CommandResult {
  readonly lines: readonly string[];
  /** The user asked to end the session. */
  readonly quit: boolean;
}

type RunCommand = Generator<void, string[], void>;
type Output = string[] | RunCommand;

interface CommandDef extends NamedCommand {
  /** Moves the guest (gdb is told its view is stale after one from `monitor`). */
  readonly moves?: boolean;
  readonly run: (s: DebugSession, args: readonly string[]) => Output;
}

const GPRS: Readonly<Record<string, number>> = {
  rax: 0, rcx: 1, rdx: 2, rbx: 3, rsp: 4, rbp: 5, rsi: 6, rdi: 7,
  r8: 8, r9: 9, r10: 10, r11: 11, r12: 12, r13: 13, r14: 14, r15: 15,
};

/**
 * An address: `0x1000` (guest-linear), `p:0x1000` (guest-physical),
 * `h:0x1000` (host-physical), or a register with an offset (`rsp+8`, `rip`).
 */
export function parseAddress(text: string, g: GuestState): Address {
  const m = /^(?:([plh]):)?(.+)$/i.exec(text)!;
  const prefix = m[1]?.toLowerCase(), body = m[2]!;
  const space = prefix === 'p' ? 'physical' : prefix === 'h' ? 'host' : 'linear';
  const expr = /^\$?([a-z][a-z0-9]*)\s*(?:([+-])\s*(\S+))?$/i.exec(body);
  let address: bigint;
  if (expr !== null && !/^0x/i.test(body) && !/^\d/.test(body)) {
    const name = expr[1]!.toLowerCase();
    let base: bigint;
    if (name === 'rip') base = g.ripLinear;
    else if (name in GPRS) base = g.reg(GPRS[name]!);
    else throw new DebugInputError(`malformed address '${text}': '${name}' is not a register${didYouMean(name, ['rip', ...Object.keys(GPRS)])}; write 0x1000, p:0x1000 (guest-physical), h:0x1000 (host-physical) or rsp+8`);
    const offset = expr[3] === undefined ? 0n : parseNumber(expr[3], 'an address offset');
    address = BigInt.asUintN(64, expr[2] === '-' ? base - offset : base + offset);
  } else if (/^(0x[0-9a-f_]+|[\d_]+)$/i.test(body)) {
    address = parseNumber(body, 'an address');
  } else {
    throw new DebugInputError(`malformed address '${text}': write 0x1000, p:0x1000 (guest-physical), h:0x1000 (host-physical) or a register such as rip or rsp+8`);
  }
  return { space, address };
}


const COMMANDS: readonly CommandDef[] = [
  {
    name: 'help', aliases: ['h', '?'], usage: 'help [COMMAND]',
    help: 'Lists the commands, or explains one.',
    run: (s, args) => s.help(args[0]),
  },
  {
    name: 'quit', aliases: ['q'], usage: 'quit',
    help: 'Ends the session.',
    run: () => [],
  },
  {
    name: 'step', aliases: ['s', 'si', 'stepi'], usage: 'step [N]', moves: true,
    help: 'Runs N guest instructions (default 1). An instruction that exits counts once its handler has completed it. Breakpoints stop it early.',
    run: (s, args) => { atMost(args, 1, 'step [N]'); const n = parseCount(args[0], 1, 'the number of steps'); return s.sliced((o) => s.engine.step(n - s.movedBy(), o), 'insns'); },
  },
  {
    name: 'next-exit', aliases: ['ne', 'nexit'], usage: 'next-exit [N]', moves: true,
    help: 'Runs to the Nth next VM exit (default 1) and stops before its handler runs. Breakpoints stop it early.',
    run: (s, args) => { atMost(args, 1, 'next-exit [N]'); const n = parseCount(args[0], 1, 'the number of exits'); return s.sliced((o) => s.engine.nextExit(n - s.movedBy(), o), 'exits'); },
  },
  {
    name: 'continue', aliases: ['c', 'cont'], usage: 'continue', moves: true,
    help: 'Handles the exit stood at (if any) and runs until a breakpoint, the end of the guest, or the instruction limit (--max-insns).',
    run: (s, args) => { atMost(args, 0, 'continue'); return s.sliced((o) => s.engine.continue(o), 'none'); },
  },
  {
    name: 'back-exit', aliases: ['be'], usage: 'back-exit [N]', moves: true,
    help: 'Goes back N VM exits (default 1), to before the handler of that exit ran: registers, VMCS, devices and memory as they were.',
    run: (s, args) => { atMost(args, 1, 'back-exit [N]'); return s.travel(s.engine.backExit(parseCount(args[0], 1, 'the number of exits'))); },
  },
  {
    name: 'reverse-step', aliases: ['rs', 'rsi'], usage: 'reverse-step [N]', moves: true,
    help: 'Goes back N guest instructions (default 1), to where the guest first stood with that many fewer retired.',
    run: (s, args) => { atMost(args, 1, 'reverse-step [N]'); return s.travel(s.engine.reverseStep(parseCount(args[0], 1, 'the number of instructions'))); },
  },
  {
    name: 'break', aliases: ['b'], usage: 'break ADDR | break exit [REASON] [FIELD=VALUE ...] | break entry-failure | break insn N',
    help: 'Sets a breakpoint: at a guest-linear RIP (p:ADDR: a guest-physical one); on a VM exit, of any reason or one (IO_INSTRUCTION, CR_ACCESS, 30), ' +
      'with conditions on qualification fields (port=0x3f8, CONTROL_REGISTER=3, DIRECTION=IN), exit-record fields (rip, vector, gpa) or VMCS fields ' +
      '(GUEST_RIP=0x1000), all of which must hold; on a failed VM entry; or when the guest has retired N instructions.',
    run: (s, args) => s.setBreak(args),
  },
  {
    name: 'watch', aliases: [], usage: 'watch [read|write|access|exec] ADDR [LENGTH]',
    help: 'Stops after an instruction reads or writes (access: either) LENGTH bytes (default 1) at a guest-linear ADDR, or a guest-physical p:ADDR, ' +
      'or before one at such an address executes (exec). Accesses the hypervisor makes for the guest (string I/O, MMIO emulation) are not seen.',
    run: (s, args) => s.setWatch(args),
  },
  {
    name: 'breakpoints', aliases: ['bl', 'info'], usage: 'breakpoints',
    help: 'Lists the breakpoints and watchpoints with their numbers and hit counts.',
    run: (s, args) => {
      if (args.length > 0 && !/^(b|break|breakpoints|watch|watchpoints)$/i.test(args[0]!)) {
        throw new DebugInputError(`unknown info '${args[0]}' (info breakpoints lists the breakpoints; try help)`);
      }
      const bps = s.engine.breakpoints;
      return bps.length === 0 ? ['no breakpoints'] : bps.map((b) => `${b.id}: ${describeBreakpoint(b.spec)} (hit ${b.hits} time${b.hits === 1 ? '' : 's'})`);
    },
  },
  {
    name: 'delete', aliases: ['d'], usage: 'delete N | delete all',
    help: 'Removes breakpoint N, or all of them.',
    run: (s, args) => {
      if (args.length !== 1) throw new DebugInputError('delete takes a breakpoint number or all: delete 1, delete all');
      if (args[0]!.toLowerCase() === 'all') {
        const n = s.engine.breakpoints.length;
        for (const b of [...s.engine.breakpoints]) s.engine.deleteBreakpoint(b.id);
        return [`deleted ${n} breakpoint${n === 1 ? '' : 's'}`];
      }
      const id = Number(parseNumber(args[0]!, 'a breakpoint number'));
      if (!s.engine.deleteBreakpoint(id)) throw new DebugInputError(`there is no breakpoint ${id} (breakpoints lists them)`);
      return [`deleted breakpoint ${id}`];
    },
  },
  {
    name: 'where', aliases: ['status'], usage: 'where',
    help: 'Where the guest stands: at an exit before its handler, or in the guest; RIP and the instruction there; instructions and exits so far.',
    run: (s, args) => { atMost(args, 0, 'where'); return [whereLine(s.engine, s.guest)]; },
  },
  {
    name: 'exit', aliases: [], usage: 'exit',
    help: 'The exit stood at (or the last one handled), decoded: reason, RIP and instruction, qualification and instruction information by field, addresses, events.',
    run: (s, args) => {
      atMost(args, 0, 'exit');
      const e = s.engine.lastExit;
      return e === null ? ['no VM exit yet'] : exitLines(e, s.engine.atExit !== null);
    },
  },
  {
    name: 'vmcs', aliases: [], usage: 'vmcs [FIELD | GROUP | all | diff]',
    help: 'The VMCS: every field by its SDM name with its value, control and information fields decoded by name. GROUP: control, exit, guest or host. ' +
      'diff: what the handler of the last exit changed, and what changed since the VM entry after it.',
    run: (s, args) => {
      atMost(args, 1, 'vmcs [FIELD | GROUP | all | diff]');
      return args[0]?.toLowerCase() === 'diff' ? vmcsDiffLines(s.engine) : vmcsLines(s.engine, s.guest, args[0]);
    },
  },
  {
    name: 'regs', aliases: ['registers', 'r'], usage: 'regs',
    help: 'The general-purpose registers, RIP and RFLAGS.',
    run: (s, args) => { atMost(args, 0, 'regs'); return regsLines(s.guest); },
  },
  {
    name: 'sregs', aliases: [], usage: 'sregs',
    help: 'Segment registers (selector, base, limit, access rights), GDTR, IDTR, CR0, CR2, CR3, CR4, CR8 and EFER.',
    run: (s, args) => { atMost(args, 0, 'sregs'); return sregsLines(s.guest.systemRegisters()); },
  },
  {
    name: 'x', aliases: [], usage: 'x ADDR [N]',
    help: 'N bytes (default 64) at ADDR: guest-linear (through the guest\'s paging and EPT), p:ADDR guest-physical, h:ADDR host-physical.',
    run: (s, args) => {
      if (args.length < 1 || args.length > 2) throw new DebugInputError('x takes an address and a byte count: x 0x1000 32, x p:0x1000, x rsp');
      return dumpLines(s.guest, parseAddress(args[0]!, s.guest), parseCount(args[1], 64, 'the byte count', 1 << 20));
    },
  },
  {
    name: 'translate', aliases: ['t'], usage: 'translate ADDR [read|write|fetch]',
    help: 'How the guest-linear ADDR becomes guest-physical and host-physical: every guest paging entry with its EPT walk, level by level, and the outcome.',
    run: (s, args) => {
      if (args.length < 1 || args.length > 2) throw new DebugInputError('translate takes an address and an access: translate 0x1000 write');
      const access = args[1]?.toLowerCase() ?? 'read';
      if (access !== 'read' && access !== 'write' && access !== 'fetch') throw new DebugInputError(`the access is read, write or fetch, not '${args[1]}'`);
      const at = parseAddress(args[0]!, s.guest);
      if (at.space !== 'linear') throw new DebugInputError('translate takes a guest-linear address, not a p: or h: one');
      return translateLines(s.guest.translationState(), at.address, access);
    },
  },
  {
    name: 'disasm', aliases: ['u', 'dis'], usage: 'disasm [ADDR] [N] [--att]',
    help: 'N instructions (default 8) from ADDR (default: the next one), formatted by iced-x86; --att for AT&T syntax, --intel for Intel.',
    run: (s, args) => {
      let syntax: Syntax = s.syntax;
      const rest = args.filter((a) => {
        if (a === '--att') { syntax = 'att'; return false; }
        if (a === '--intel') { syntax = 'intel'; return false; }
        return true;
      });
      atMost(rest, 2, 'disasm [ADDR] [N] [--att]');
      const at = rest.length > 0 ? parseAddress(rest[0]!, s.guest) : null;
      return disasmLines(s.guest, at, parseCount(rest[1], 8, 'the instruction count', 1000), syntax);
    },
  },
  {
    name: 'trace', aliases: [], usage: 'trace [N]',
    help: 'The last N VM exits (default 10) up to where the guest stands, oldest first.',
    run: (s, args) => { atMost(args, 1, 'trace [N]'); return traceLines(s.engine.trace(parseCount(args[0], 10, 'the number of exits', 1e6))); },
  },
  {
    name: 'why-entry-failed', aliases: ['wef'], usage: 'why-entry-failed',
    help: 'The VM-entry check that failed, by name and SDM section, with the values involved.',
    run: (s, args) => { atMost(args, 0, 'why-entry-failed'); return whyEntryFailedLines(s.engine.vm.vmx.lastEntryFailure); },
  },
  {
    name: 'snapshots', aliases: [], usage: 'snapshots',
    help: 'The time-travel snapshots held: how many, how far apart, and the memory they take.',
    run: (s, args) => {
      atMost(args, 0, 'snapshots');
      return [snapshotsLine(s.engine.snapshotStats())];
    },
  },
];

const TABLE = new CommandTable(COMMANDS);
/** Every command name and alias (for completion). */
export const COMMAND_NAMES = TABLE.names;

/** Settings of a session. */
export interface SessionOptions {
  /** Disassembly syntax by default (`--att` on the command line). */
  readonly syntax?: Syntax;
  /** Run commands stop after the guest has retired this many instructions in all (default 1e10). */
  readonly maxInsns?: number;
  /** Where the guest's serial output is collected (printed with each command's output). */
  readonly serial?: SerialLines;
  /** Commands come from gdb's `monitor`: quit is refused, and a command that moves the guest says gdb's view is stale. */
  readonly monitor?: boolean;
}

/** One debugging session: the engine, the guest's view, and the command language. */
export class DebugSession {
  readonly guest: GuestState;
  syntax: Syntax;
  private readonly maxInsns: number;
  private readonly serial: SerialLines | null;
  private readonly monitor: boolean;
  /** Instructions or exits at the start of the running command (what `movedBy` counts from). */
  private moveStart = 0;
  private moveUnit: 'insns' | 'exits' | 'none' = 'none';

  constructor(readonly engine: DebugEngine, options: SessionOptions = {}) {
    this.guest = new GuestState(engine.vm);
    this.syntax = options.syntax ?? 'intel';
    this.maxInsns = options.maxInsns ?? 1e10;
    this.serial = options.serial ?? null;
    this.monitor = options.monitor ?? false;
  }

  /** Runs one line to its end. */
  execute(line: string): CommandResult {
    const r = this.start(line);
    if (!('gen' in r)) return r;
    let next = r.gen.next();
    while (next.done !== true) next = r.gen.next();
    return this.finish(r.def, next.value);
  }

  /**
   * Runs one line; a command that moves the guest runs in slices with a turn
   * of the event loop between them, and stops when `interrupted()` says so.
   */
  async executeAsync(line: string, interrupted: () => boolean): Promise<CommandResult> {
    const r = this.start(line);
    if (!('gen' in r)) return r;
    let next = r.gen.next();
    while (next.done !== true) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (interrupted()) return this.finish(r.def, ['interrupted', whereLine(this.engine, this.guest)]);
      next = r.gen.next();
    }
    return this.finish(r.def, next.value);
  }

  private start(line: string): CommandResult | { gen: RunCommand; def: CommandDef } {
    const words = line.trim().split(/\s+/).filter((w) => w !== '');
    if (words.length === 0) return { lines: [], quit: false };
    const def = TABLE.find(words[0]!);
    try {
      if (def === undefined) throw TABLE.unknown(words[0]!);
      if (def.name === 'quit') {
        if (this.monitor) throw new DebugInputError("quit ends the hvsim session, not gdb's: use gdb's detach or kill");
        return { lines: this.serial?.take(true) ?? [], quit: true };
      }
      const out = def.run(this, words.slice(1));
      if (Array.isArray(out)) return this.finish(def, out);
      return { gen: this.guard(out), def };
    } catch (e) {
      return { lines: this.withSerial(errorLines(e)), quit: false };
    }
  }

  /** A run command's generator, its errors turned into lines like any command's. */
  private *guard(gen: RunCommand): RunCommand {
    try {
      return yield* gen;
    } catch (e) {
      return errorLines(e);
    }
  }

  private finish(def: CommandDef, lines: readonly string[]): CommandResult {
    const out = [...lines];
    if (this.monitor && def.moves === true) out.push("(gdb still shows the old registers: 'maintenance flush register-cache' reads them again)");
    return { lines: this.withSerial(out), quit: false };
  }

  /** What is left to print when the session ends: the guest's unfinished serial line. */
  endLines(): string[] {
    return this.serial?.take(true) ?? [];
  }

  private withSerial(lines: readonly string[]): string[] {
    const serial = this.serial?.take() ?? [];
    return [...serial, ...lines];
  }

  // ---- helpers the commands use ------------------------------------------------------

  /** How far the running command has moved the guest: instructions or exits since it started. */
  movedBy(): number {
    if (this.moveUnit === 'none') return 0;
    return (this.moveUnit === 'insns' ? this.engine.position.insns : this.engine.vm.exits) - this.moveStart;
  }

  /** A run command in slices of REPL_SLICE instructions; the first steps over a breakpoint it starts on. */
  *sliced(call: (o: RunOptions) => EngineStop, unit: 'insns' | 'exits' | 'none'): RunCommand {
    this.moveUnit = unit;
    this.moveStart = unit === 'exits' ? this.engine.vm.exits : this.engine.position.insns;
    let stepOverHere = true;
    for (;;) {
      const cpu = this.engine.vm.cpu;
      const limit = Math.min(cpu.insnCount + REPL_SLICE, this.maxInsns);
      const stop = call({ limit, stepOverHere });
      stepOverHere = false;
      if (stop.reason !== 'limit' || cpu.insnCount >= this.maxInsns) {
        this.moveUnit = 'none';
        return stopLines(stop, this.engine, this.guest);
      }
      yield;
    }
  }

  /** The lines after time travel. */
  travel(stop: EngineStop): string[] {
    return stopLines(stop, this.engine, this.guest);
  }

  help(topic: string | undefined): string[] {
    return TABLE.help(topic, 'commands (an alias in brackets; help COMMAND explains one):',
      'addresses: 0x1000 guest-linear, p:0x1000 guest-physical, h:0x1000 host-physical, rip, rsp+8');
  }

  setBreak(args: readonly string[]): string[] {
    const spec = parseBreakSpec(args, this.engine.fields, this.engine.position.insns, (text) => {
      const at = parseAddress(text, this.guest);
      if (at.space === 'host') throw new DebugInputError('a breakpoint address is guest-linear (0x1000) or guest-physical (p:0x1000), not host-physical');
      return at.space === 'linear' ? { kind: 'address', address: at.address }
        : { kind: 'watch', space: 'physical', access: 'execute', address: at.address, length: 1 };
    });
    const bp = this.engine.addBreakpoint(spec);
    return [`breakpoint ${bp.id}, ${describeBreakpoint(spec)}`];
  }

  setWatch(args: readonly string[]): string[] {
    const bp = this.engine.addBreakpoint(parseWatchSpec(args, (text) => {
      const at = parseAddress(text, this.guest);
      if (at.space === 'host') throw new DebugInputError('a watchpoint is on guest-linear (0x2000) or guest-physical (p:0x2000) memory, not host-physical');
      return { space: at.space, address: at.address };
    }));
    return [`breakpoint ${bp.id}, ${describeBreakpoint(bp.spec)}`];
  }

  /**
   * Completion for node:readline: command names for the first word; exit
   * reasons and conditions after `break exit`; VMCS fields and groups after `vmcs`.
   */
  complete(line: string): [string[], string] {
    const words = line.split(/\s+/);
    const last = words.at(-1) ?? '';
    let candidates: readonly string[];
    if (words.length <= 1) candidates = COMMAND_NAMES;
    else {
      const cmd = TABLE.find(words[0]!)?.name;
      if (cmd === 'vmcs') candidates = ['diff', 'all', ...VMCS_GROUPS.flatMap((g) => g.names), ...this.engine.fields.map((f) => f.name)];
      else if (cmd === 'help') candidates = COMMAND_NAMES;
      else if (cmd === 'break' && words.length === 2) candidates = ['exit', 'entry-failure', 'insn', 'rip'];
      else if (cmd === 'break' && words[1]?.toLowerCase() === 'exit') {
        const reason = words.length > 3 ? safeReason(words[2]!) : null;
        const layout = reason === null ? [] : QUALIFICATION_LAYOUTS[reason] ?? [];
        candidates = words.length === 3 ? exitReasonNames() : [...layout.map((f) => `${f.name}=`), ...this.engine.fields.map((f) => `${f.name}=`), 'rip=', 'vector=', 'port='];
      } else if (cmd === 'watch' && words.length === 2) candidates = ['read', 'write', 'access', 'exec'];
      else if (cmd === 'translate' && words.length === 3) candidates = ['read', 'write', 'fetch'];
      else candidates = [];
    }
    const upper = last.toUpperCase();
    const hits = candidates.filter((c) => c.toUpperCase().startsWith(upper));
    return [hits.length > 0 ? hits : [], last];
  }
}

function safeReason(text: string): number | null {
  try {
    const r = parseExitReason(text);
    return exitReasonName(r) === undefined ? null : r;
  } catch {
    return null;
  }
}

/** A command's failure as lines: the user's mistake in one line, anything else as an internal error. */
function errorLines(e: unknown): string[] {
  // A configuration the processor refuses shows when the guest first runs (a real-mode guest without EPT).
  if (e instanceof DebugInputError || e instanceof VmConfigError) return [`error: ${e.message}`];
  // A broken invariant of the model: where, with the state around it (run.ts InternalError).
  if (e instanceof InternalError) return [`internal error: ${e.message}`, `internal error: ${e.state}`];
  const message = e instanceof Error ? e.message : String(e);
  return [`internal error: ${message}`];
}

/**
 * Runs a script: each non-empty line is printed after the prompt, then its
 * output (lines starting with # are printed and not run). Stops after `quit`.
 */
export function runScript(session: Pick<DebugSession, 'execute' | 'endLines'>, script: string, print: (line: string) => void): void {
  for (const raw of script.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '') continue;
    print(`${PROMPT}${line}`);
    if (line.startsWith('#')) continue;
    const r = session.execute(line);
    r.lines.forEach(print);
    if (r.quit) return;
  }
  session.endLines().forEach(print);
}
