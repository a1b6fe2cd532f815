/**
 * `hvsim debug [IMAGE] [run options]`: the debugger (src/debug) on a guest
 * run as `hvsim run` runs it. Commands come from a script (`--commands FILE`,
 * or stdin when it is not a terminal: the transcript, each command after the
 * prompt and then its output, goes to stdout) or from the interactive REPL
 * (node:readline, with history and completion of commands and VMCS field
 * names, kept between sessions in ~/.hvsim_history or $HVSIM_HISTORY:
 * src/debug/history-file.ts). `--gdb PORT` serves the session to gdb instead
 * (after the script, if any), over hvsim's hypervisor or, with `--bare`, over
 * the bare machine; `hvsim run [--bare] --gdb PORT` does the same for a plain run.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { PROFILES } from '../cpu/profile.js';
import { vmConfig } from '../hv/config.js';
import { VmConfigError, type VmStop } from '../hv/vm.js';
import { ImageError } from '../platform/loaders/index.js';
import { BareEngine, type BareEnd } from '../debug/bare-engine.js';
import { BareSession } from '../debug/bare-session.js';
import { BareTarget } from '../debug/bare-target.js';
import { DebugEngine } from '../debug/engine.js';
import { startGdbServer } from '../debug/gdb/server.js';
import type { GdbTarget } from '../debug/gdb/target.js';
import { appendHistory, historyPath, HISTORY_LINES, loadHistory, SessionHistory } from '../debug/history-file.js';
import { DebugSession, PROMPT, runScript, SerialLines } from '../debug/repl.js';
import { VmTarget } from '../debug/vm-target.js';
import { EXIT, parseArgs, UsageError, USAGE, type RunOptions } from './args.js';
import { bundledGuest, readImage, type Print } from './image.js';

/** The text of `hvsim debug --help`. */
export const DEBUG_USAGE = `usage: hvsim debug [IMAGE] [options]

Runs IMAGE under hvsim's hypervisor, as 'hvsim run' does, in a debugger:
step guest instructions and VM exits, stop on a RIP, an exit reason with
conditions on its qualification or VMCS fields, a failed VM entry, a memory
access or an instruction count; see each exit decoded, the VMCS by field
name and what the handler changed; go back to earlier exits and instructions
(registers, VMCS, devices and memory as they were). 'help' in the debugger
lists its commands. With no IMAGE, debugs the bundled guests/demo.bin.

options (and the image options of 'hvsim run': --format, --load, --mode,
--cmdline, --memory, --profile, --no-vpid, --no-ept, --max-insns):
  --commands FILE   run the commands in FILE and print the transcript (each
                    command after the prompt, then its output); commands also
                    come from stdin when it is not a terminal
  --gdb PORT        serve the guest to gdb on 127.0.0.1:PORT (0: a free port,
                    printed on stderr): in gdb, target remote 127.0.0.1:PORT;
                    'monitor help' lists the debugger's commands there
  --bare            run IMAGE on the bare machine, as 'hvsim run --bare' does,
                    to debug its own hypervisor: the VM exits are those of its
                    VMCS; next-exit stops at HOST_RIP, finish-handler runs the
                    root-mode handler to its VM entry; with --gdb, gdb debugs
                    the hypervisor (and its guest) as the processor runs them
  --att             disassemble in AT&T syntax (default Intel)
  -h, --help        this text

'hvsim run IMAGE [--bare] --gdb PORT' serves a plain run to gdb the same way
and ends with the run's exit status.

The REPL keeps its history in ~/.hvsim_history (HVSIM_HISTORY names another
file; set but empty: none); scripts neither read nor add to it.

exit status: 0; 2 bad usage or a bad image.`;

/** Where `hvsim debug` reads and writes. */
export interface DebugIo {
  readonly out: Print;
  readonly err: Print;
  /** The guest's serial bytes while gdb drives it. */
  readonly serial: (byte: number) => void;
  /** The commands on stdin when it is not a terminal (read whole), or null for a terminal. */
  readonly stdinScript: () => string | null;
  /** The terminal of the interactive REPL. */
  readonly terminal?: { readonly input: NodeJS.ReadableStream; readonly output: NodeJS.WritableStream };
  /** The environment (HVSIM_HISTORY) and home directory the REPL's history file is found by (default: the process's). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly home?: string;
}

/** The command line of `hvsim debug` and of `hvsim run --gdb`, split from the run options. */
interface DebugOptions {
  /** The run options; null when help was asked for. */
  readonly run: RunOptions | null;
  readonly debug: boolean;
  readonly commands: string | null;
  readonly gdb: number | null;
  readonly att: boolean;
  readonly help: boolean;
}

/** True when `argv` is a debugger invocation: `debug ...`, or `run ... --gdb PORT` (src/cli/main.ts routes it here). */
export function isDebugInvocation(argv: readonly string[]): boolean {
  return argv[0] === 'debug' || (argv[0] === 'run' && argv.includes('--gdb'));
}

function parseDebugArgs(argv: readonly string[]): DebugOptions {
  const debug = argv[0] === 'debug', rest: string[] = [];
  let commands: string | null = null, gdb: number | null = null, att = false, help = false;
  for (let k = 1; k < argv.length; k++) {
    const a = argv[k]!;
    const value = (): string => {
      const v = argv[++k];
      if (v === undefined || v.startsWith('--')) throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === '--gdb') {
      const v = value();
      if (!/^\d+$/.test(v) || Number(v) > 65535) throw new UsageError(`--gdb needs a TCP port from 0 to 65535 (0: a free one), not '${v}'`);
      gdb = Number(v);
    } else if (debug && a === '--commands') commands = value();
    else if (debug && a === '--att') att = true;
    else if (debug && (a === '-h' || a === '--help')) help = true;
    else rest.push(a);
  }
  const o = parseArgs(['run', ...rest]);
  // `hvsim run --gdb PORT --help`: the help of run.
  if (o.command !== 'run') return { run: null, debug, commands, gdb, att, help: true };
  if (o.cpus !== 1) throw new UsageError(o.bare ? 'the debugger runs one processor: --cpus does not go with debug --bare' : 'the hypervisor runs one virtual processor: --cpus does not go with debug or --gdb');
  const plain = [o.trace !== null && '--trace', o.serial !== null && '--serial', o.json && '--json', o.stats && '--stats',
    o.costProfiles.length > 0 && '--cost'].filter((x): x is string => x !== false);
  if (plain.length > 0) throw new UsageError(`${plain.join(', ')} ${plain.length === 1 ? 'is an option' : 'are options'} of a plain run, not of debug or --gdb`);
  if (!(o.profile in PROFILES)) throw new UsageError(`unknown profile '${o.profile}' (known: ${Object.keys(PROFILES).join(', ')})`);
  return { run: o, debug, commands, gdb, att, help };
}

/** The exit status of `hvsim run` for a guest, or a bare machine, that stopped so (args.ts EXIT); 0 while it runs on. */
function runStatus(stop: VmStop | BareEnd | null): number {
  if (stop === null) return 0;
  return stop.kind === 'exit' ? stop.status : EXIT[stop.kind];
}

/**
 * Runs `hvsim debug ...` or `hvsim run ... --gdb PORT`; resolves to the exit
 * status once the script, the REPL or the gdb session has ended.
 */
export async function debugMain(argv: readonly string[], io: DebugIo): Promise<number> {
  let o: DebugOptions, run: RunOptions, engine: DebugEngine, script: string | null = null;
  const serial = new SerialLines();
  let gdbRunning = false;
  try {
    o = parseDebugArgs(argv);
    if (o.help || o.run === null) { io.out(o.debug ? DEBUG_USAGE : USAGE); return 0; }
    const r = run = o.run;
    if (o.commands !== null) {
      try {
        script = readFileSync(o.commands, 'utf8');
      } catch (e) {
        throw new UsageError(`cannot read the commands file '${o.commands}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
    }
    const image = readImage(r.image ?? bundledGuest('demo.bin'));
    if (r.bare) {
      const bare = new BareEngine({ image, memory: r.memory, load: { format: r.format, load: r.load, mode: r.mode, cmdline: r.cmdline || undefined },
        serialOut: (b) => { if (gdbRunning) io.serial(b); else serial.push(b); } });
      const session = new BareSession(bare, { syntax: o.att ? 'att' : 'intel', maxInsns: r.maxInsns, serial });
      if (o.gdb !== null) {
        if (script !== null) runScript(session, script, io.out);
        for (const line of serial.take()) io.out(line);
        gdbRunning = true;
        const served = await serveGdb((finish) => new BareTarget(bare, finish), o.gdb, io);
        return o.debug ? 0 : served !== 0 ? served : runStatus(bare.ended);
      }
      script ??= io.stdinScript();
      if (script !== null) { runScript(session, script, io.out); return 0; }
      if (io.terminal === undefined) return 0;
      await interactive(session, io.terminal, `hvsim debugger, bare machine (the image's own hypervisor in VMX root operation), ` +
        `${(r.memory / 2 ** 20).toFixed(0)} MiB; help lists the commands`, io);
      return 0;
    }
    engine = DebugEngine.create({
      config: vmConfig({ memory: r.memory, profile: r.profile, vpid: r.vpid, ept: r.ept, unrestrictedGuest: r.ept }),
      image, load: { format: r.format, load: r.load, mode: r.mode, cmdline: r.cmdline || undefined },
      // While gdb drives the guest its output goes straight through; in a transcript it comes with the commands.
      serialOut: (b) => { if (gdbRunning) io.serial(b); else serial.push(b); },
    });
  } catch (e) {
    if (e instanceof UsageError || e instanceof ImageError || e instanceof VmConfigError) {
      io.err(`hvsim: ${e.message}`);
      return 2;
    }
    throw e;
  }
  const session = new DebugSession(engine, { syntax: o.att ? 'att' : 'intel', maxInsns: run.maxInsns, serial });
  if (o.gdb !== null) {
    if (script !== null) runScript(session, script, io.out);
    for (const line of serial.take()) io.out(line);
    gdbRunning = true;
    const served = await serveGdb((finish) => new VmTarget(engine, finish), o.gdb, io);
    return o.debug ? 0 : served !== 0 ? served : runStatus(engine.ended);
  }
  script ??= io.stdinScript();
  if (script !== null) {
    runScript(session, script, io.out);
    return 0;
  }
  if (io.terminal === undefined) return 0;
  await interactive(session, io.terminal, `hvsim debugger: ${engine.vm.config.profile} guest, ${(engine.vm.config.memory / 2 ** 20).toFixed(0)} MiB; help lists the commands`, io);
  return 0;
}

/**
 * Serves a target (made with the callback that ends the session) to gdb until
 * the session ends (gdb kills, detaches or goes away); 0, or 2 when the port
 * cannot be listened on.
 */
async function serveGdb(makeTarget: (finish: () => void) => GdbTarget, port: number, io: DebugIo): Promise<number> {
  let finish: () => void = () => {};
  const ended = new Promise<void>((resolve) => { finish = resolve; });
  const target = makeTarget(() => finish());
  let server;
  try {
    server = await startGdbServer(target, { port, onDisconnect: () => finish() });
  } catch (e) {
    io.err(`hvsim: cannot listen on 127.0.0.1:${port}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    return 2;
  }
  io.err(`hvsim: gdb stub listening on 127.0.0.1:${server.port} (in gdb: target remote 127.0.0.1:${server.port})`);
  await ended;
  await server.close();
  return 0;
}

/**
 * The interactive REPL: readline with history (loaded from the history file
 * and added to it at the end, history-file.ts) and completion; Ctrl-C stops a
 * running command; quit or Ctrl-D ends it.
 */
function interactive(session: Pick<DebugSession, 'executeAsync' | 'endLines' | 'complete'>, terminal: NonNullable<DebugIo['terminal']>,
  banner: string, io: Pick<DebugIo, 'err' | 'env' | 'home'>): Promise<void> {
  return new Promise((resolve) => {
    const file = historyPath(io.env ?? process.env, io.home);
    const previous = file === null ? [] : loadHistory(file);
    const added = new SessionHistory(previous.at(-1) ?? null);
    const rl = createInterface({
      input: terminal.input, output: terminal.output, prompt: PROMPT, historySize: HISTORY_LINES,
      // readline's history is newest first.
      history: [...previous].reverse(),
      completer: (line: string) => session.complete(line),
    });
    const print = (line: string): void => { terminal.output.write(`${line}\n`); };
    let running = false, interrupted = false;
    const queue: string[] = [];
    rl.on('SIGINT', () => {
      if (running) interrupted = true;
      else { print('(quit or Ctrl-D leaves the debugger)'); rl.prompt(); }
    });
    const next = async (): Promise<void> => {
      const line = queue.shift();
      if (line === undefined) { rl.prompt(); return; }
      running = true; interrupted = false;
      const r = await session.executeAsync(line, () => interrupted);
      running = false;
      r.lines.forEach(print);
      if (r.quit) { rl.close(); return; }
      await next();
    };
    rl.on('line', (line) => {
      added.add(line);
      queue.push(line);
      if (!running && queue.length === 1) void next();
    });
    rl.on('close', () => {
      session.endLines().forEach(print);
      const problem = file === null ? null : appendHistory(file, added.added);
      if (problem !== null) io.err(`hvsim: ${problem}`);
      resolve();
    });
    print(banner);
    rl.prompt();
  });
}
