/**
 * The debugger's command language over a BareEngine (`hvsim debug IMAGE
 * --bare`): the same commands as over hvsim's hypervisor (repl.ts) where they
 * mean something on a bare machine, answered from the processor as it is —
 * in VMX root operation (the user's hypervisor) or in non-root operation (its
 * guest) — and from the current VMCS. `finish-handler` is the bare machine's
 * own: it runs the root-mode handler until the VM entry after it. Time
 * travel (`back-exit`, `reverse-step`, `snapshots`), watchpoints,
 * `translate` and `sregs` read and move the whole machine, as over hvsim's
 * hypervisor, with the code shared where the two agree (breakpoints.ts,
 * inspect.ts, system-registers.ts, timeline.ts).
 */
import { InternalError } from '../cpu/run.js';
import { CS, VECTOR_NAMES } from '../cpu/regs.js';
import { disassemble, type Syntax } from '../hv/disassemble.js';
import type { ExitRecord } from '../hv/record.js';
import { instructionErrorText } from '../../vmcs/instruction-errors.js';
import { describeBreakpoint, parseBreakSpec, parseWatchSpec } from './breakpoints.js';
import type { BareEnd, BareEngine, BareStop, VmInstructionFailure } from './bare-engine.js';
import { exitLines, snapshotsLine, traceLines, translateLines, whyEntryFailedLines } from './inspect.js';
import { processorSystemRegisters, sregsLines } from './system-registers.js';
import { atMost, CommandTable, DebugInputError, didYouMean, parseCount, parseNumber, type NamedCommand } from './names.js';
import type { CommandResult, SerialLines } from './repl.js';
import { bitNames, decodeField, fieldLine, findField, hex, RFLAGS_BITS, VMCS_GROUPS, vmcsDiff, type VmcsState } from './vmcs-view.js';

/** Settings of a bare session. */
export interface BareSessionOptions {
  readonly syntax?: Syntax;
  /** Run commands stop once this many instructions have retired in all (default 1e10). */
  readonly maxInsns?: number;
  readonly serial?: SerialLines;
  /** Commands come from gdb's `monitor`: quit is refused, and a command that moves the processor says gdb's view is stale. */
  readonly monitor?: boolean;
}

interface BareCommand extends NamedCommand {
  /** Moves the processor (gdb is told its view is stale after one from `monitor`). */
  readonly moves?: boolean;
  readonly run: (s: BareSession, args: readonly string[]) => string[];
}

const GPRS: Readonly<Record<string, number>> = {
  rax: 0, rcx: 1, rdx: 2, rbx: 3, rsp: 4, rbp: 5, rsi: 6, rdi: 7,
  r8: 8, r9: 9, r10: 10, r11: 11, r12: 12, r13: 13, r14: 14, r15: 15,
};


function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function hex64(v: bigint): string {
  return `0x${BigInt.asUintN(64, v).toString(16).padStart(16, '0')}`;
}


const COMMANDS: readonly BareCommand[] = [
  { name: 'help', aliases: ['h', '?'], usage: 'help [COMMAND]', help: 'Lists the commands, or explains one.', run: (s, a) => s.help(a[0]) },
  { name: 'quit', aliases: ['q'], usage: 'quit', help: 'Ends the session.', run: () => [] },
  {
    name: 'step', aliases: ['s', 'si', 'stepi'], usage: 'step [N]', moves: true,
    help: 'Runs N instructions (default 1), root-mode or guest; a VM exit counts as one (the exiting instruction does not retire): a step on it stops at HOST_RIP.',
    run: (s, a) => { atMost(a, 1, 'step [N]'); const n = parseCount(a[0], 1, 'the number of steps'); return s.stopLines(s.engine.step(n, s.maxInsns)); },
  },
  {
    name: 'next-exit', aliases: ['ne', 'nexit'], usage: 'next-exit [N]', moves: true,
    help: 'Runs to the Nth next VM exit (default 1) and stops once it has completed: at the first instruction of the root-mode handler (HOST_RIP), the exit information in the current VMCS.',
    run: (s, a) => { atMost(a, 1, 'next-exit [N]'); const n = parseCount(a[0], 1, 'the number of exits'); return s.stopLines(s.engine.nextExit(n, s.maxInsns)); },
  },
  {
    name: 'continue', aliases: ['c', 'cont'], usage: 'continue', moves: true,
    help: 'Runs until a breakpoint, the end of the run, or the instruction limit (--max-insns).',
    run: (s, a) => { atMost(a, 0, 'continue'); return s.stopLines(s.engine.continue(s.maxInsns)); },
  },
  {
    name: 'finish-handler', aliases: ['fh', 'finish'], usage: 'finish-handler', moves: true,
    help: 'Runs the root-mode handler until the processor is back in VMX non-root operation (its VMRESUME or VMLAUNCH succeeded) or a VM entry fails: ' +
      'VMfailInvalid, VMfailValid (a failed check of SDM 27.2, or the instruction\'s own: VMLAUNCH of a launched VMCS, VMRESUME of one not launched), ' +
      'or an exit with reason bit 31 (why-entry-failed then names the check or the VM-instruction error).',
    run: (s, a) => { atMost(a, 0, 'finish-handler'); return s.finishHandler(); },
  },
  {
    name: 'back-exit', aliases: ['be'], usage: 'back-exit [N]', moves: true,
    help: 'Goes back N VM exits (default 1), to right after that exit completed, at HOST_RIP: registers, VMCSs, devices and memory as they were.',
    run: (s, a) => { atMost(a, 1, 'back-exit [N]'); return s.stopLines(s.engine.backExit(parseCount(a[0], 1, 'the number of exits'))); },
  },
  {
    name: 'reverse-step', aliases: ['rs', 'rsi'], usage: 'reverse-step [N]', moves: true,
    help: 'Goes back N steps (default 1; an instruction retired or a VM exit is one, as for step), to where the processor first stood then.',
    run: (s, a) => { atMost(a, 1, 'reverse-step [N]'); return s.stopLines(s.engine.reverseStep(parseCount(a[0], 1, 'the number of steps'))); },
  },
  {
    name: 'watch', aliases: [], usage: 'watch [read|write|access|exec] ADDR [LENGTH]',
    help: 'Stops after an instruction, root-mode or guest, reads or writes (access: either) LENGTH bytes (default 1) at a linear ADDR (through the paging ' +
      'the processor uses then), or a physical p:ADDR, or before one at such an address executes (exec). The VMX unit\'s own accesses (VMCS, EPT walks) are not seen.',
    run: (s, a) => s.setWatch(a),
  },
  {
    name: 'break', aliases: ['b'], usage: 'break ADDR | break exit [REASON] [FIELD=VALUE ...] | break entry-failure | break insn N',
    help: 'Sets a breakpoint: at a linear RIP (root-mode or guest code alike); on a VM exit, of any reason or one, with conditions on qualification fields ' +
      '(port=0x80, DIRECTION=OUT), exit-record fields (rip, vector) or VMCS fields (GUEST_RIP=0x1000), all of which must hold; on a failed VM entry; ' +
      'or when N instructions have retired.',
    run: (s, a) => s.setBreak(a),
  },
  {
    name: 'breakpoints', aliases: ['bl', 'info'], usage: 'breakpoints', help: 'Lists the breakpoints with their numbers and hit counts.',
    run: (s) => {
      const bps = s.engine.breakpoints;
      return bps.length === 0 ? ['no breakpoints'] : bps.map((b) => `${b.id}: ${describeBreakpoint(b.spec)} (hit ${b.hits} time${b.hits === 1 ? '' : 's'})`);
    },
  },
  {
    name: 'delete', aliases: ['d'], usage: 'delete N | delete all', help: 'Removes breakpoint N, or all of them.',
    run: (s, a) => {
      if (a.length !== 1) throw new DebugInputError('delete takes a breakpoint number or all: delete 1, delete all');
      if (a[0]!.toLowerCase() === 'all') {
        const n = s.engine.breakpoints.length;
        for (const b of [...s.engine.breakpoints]) s.engine.deleteBreakpoint(b.id);
        return [`deleted ${plural(n, 'breakpoint')}`];
      }
      const id = Number(parseNumber(a[0]!, 'a breakpoint number'));
      if (!s.engine.deleteBreakpoint(id)) throw new DebugInputError(`there is no breakpoint ${id} (breakpoints lists them)`);
      return [`deleted breakpoint ${id}`];
    },
  },
  {
    name: 'where', aliases: ['status'], usage: 'where',
    help: 'Where the processor stands: in VMX root operation (and in the handler of which exit), in non-root operation, or outside VMX; RIP and the instruction there; counts.',
    run: (s, a) => { atMost(a, 0, 'where'); return [s.whereLine()]; },
  },
  {
    name: 'exit', aliases: [], usage: 'exit',
    help: 'The last VM exit, decoded from the VMCS as the exit left it: reason, guest RIP and instruction, qualification by field, addresses, events.',
    run: (s, a) => { atMost(a, 0, 'exit'); return s.exitLines(); },
  },
  {
    name: 'vmcs', aliases: [], usage: 'vmcs [FIELD | GROUP | all | diff]',
    help: 'The current VMCS by SDM field name, decoded (GROUP: control, exit, guest, host). diff: what the root-mode handler changed between the exit and the VM entry after it (or so far).',
    run: (s, a) => { atMost(a, 1, 'vmcs [FIELD | GROUP | all | diff]'); return a[0]?.toLowerCase() === 'diff' ? s.vmcsDiffLines() : s.vmcsLines(a[0]); },
  },
  {
    name: 'regs', aliases: ['registers', 'r'], usage: 'regs', help: 'The processor\'s general-purpose registers, RIP and RFLAGS (root-mode or guest, as it stands).',
    run: (s, a) => { atMost(a, 0, 'regs'); return s.regsLines(); },
  },
  {
    name: 'sregs', aliases: [], usage: 'sregs',
    help: 'The processor\'s segment registers (selector, base, limit, access rights), GDTR, IDTR, CR0, CR2, CR3, CR4, CR8 and EFER: the host\'s in VMX root ' +
      'operation, the guest\'s in non-root operation (CR0 and CR4 as it reads them through the read shadows).',
    run: (s, a) => { atMost(a, 0, 'sregs'); return sregsLines(processorSystemRegisters(s.engine.cpu, s.engine.vmx.current)); },
  },
  {
    name: 'translate', aliases: ['t'], usage: 'translate ADDR [read|write|fetch]',
    help: 'How a linear ADDR becomes physical, level by level: through the host\'s paging in VMX root operation; in non-root operation through the guest\'s ' +
      'paging and, when the current VMCS enables EPT, the EPT walk of each guest entry and of the result (the 2-D walk).',
    run: (s, a) => s.translate(a),
  },
  {
    name: 'x', aliases: [], usage: 'x ADDR [N]',
    help: 'N bytes (default 64) at ADDR: linear through the processor\'s paging as it stands (the guest\'s and the EPT in non-root operation), or p:ADDR physical.',
    run: (s, a) => {
      if (a.length < 1 || a.length > 2) throw new DebugInputError('x takes an address and a byte count: x 0x1000 32, x p:0x1000, x rsp');
      return s.dumpLines(a[0]!, parseCount(a[1], 64, 'the byte count', 1 << 20));
    },
  },
  {
    name: 'disasm', aliases: ['u', 'dis'], usage: 'disasm [ADDR] [N] [--att]',
    help: 'N instructions (default 8) from the linear ADDR (default: the next one), formatted by iced-x86; --att for AT&T syntax.',
    run: (s, a) => s.disasm(a),
  },
  {
    name: 'trace', aliases: [], usage: 'trace [N]', help: 'The last N VM exits (default 10), oldest first.',
    run: (s, a) => { atMost(a, 1, 'trace [N]'); return traceLines(s.engine.trace(parseCount(a[0], 10, 'the number of exits', 1e6))); },
  },
  {
    name: 'why-entry-failed', aliases: ['wef'], usage: 'why-entry-failed', help: 'The VM-entry check that failed last, by name and SDM section, with the values involved.',
    run: (s, a) => { atMost(a, 0, 'why-entry-failed'); return s.whyEntryFailed(); },
  },
  {
    name: 'snapshots', aliases: [], usage: 'snapshots',
    help: 'The time-travel snapshots of the machine held: how many, how far apart, and the memory they take.',
    run: (s, a) => { atMost(a, 0, 'snapshots'); return [snapshotsLine(s.engine.snapshotStats())]; },
  },
];

const TABLE = new CommandTable(COMMANDS);

/** A debugging session over a bare machine (see the file comment). */
export class BareSession {
  readonly syntax: Syntax;
  readonly maxInsns: number;
  private readonly serial: SerialLines | null;
  private readonly monitor: boolean;

  constructor(readonly engine: BareEngine, options: BareSessionOptions = {}) {
    this.syntax = options.syntax ?? 'intel';
    this.maxInsns = options.maxInsns ?? 1e10;
    this.serial = options.serial ?? null;
    this.monitor = options.monitor ?? false;
  }

  /** Runs one line to its end. */
  execute(line: string): CommandResult {
    const words = line.trim().split(/\s+/).filter((w) => w !== '');
    if (words.length === 0) return { lines: [], quit: false };
    const name = words[0]!.toLowerCase();
    let lines: string[];
    try {
      const def = TABLE.find(name);
      if (def === undefined) throw TABLE.unknown(words[0]!);
      if (def.name === 'quit') {
        if (this.monitor) throw new DebugInputError("quit ends the hvsim session, not gdb's: use gdb's detach or kill");
        return { lines: this.serial?.take(true) ?? [], quit: true };
      }
      lines = def.run(this, words.slice(1));
      if (this.monitor && def.moves === true) lines.push("(gdb still shows the old registers: 'maintenance flush register-cache' reads them again)");
    } catch (e) {
      lines = errorLines(e);
    }
    return { lines: [...(this.serial?.take() ?? []), ...lines], quit: false };
  }

  /** The same as `execute` (a run is bounded by --max-insns; Ctrl-C does not stop it). */
  executeAsync(line: string): Promise<CommandResult> {
    return Promise.resolve(this.execute(line));
  }

  /** What is left to print when the session ends. */
  endLines(): string[] {
    return this.serial?.take(true) ?? [];
  }

  /** Completion of command names for the REPL. */
  complete(line: string): [string[], string] {
    const words = line.split(/\s+/), last = words.at(-1) ?? '';
    const candidates = words.length <= 1 ? TABLE.names : TABLE.find(words[0]!)?.name === 'vmcs'
      ? ['diff', 'all', ...VMCS_GROUPS.flatMap((g) => g.names), ...this.engine.fields.map((f) => f.name)] : [];
    return [candidates.filter((c) => c.toUpperCase().startsWith(last.toUpperCase())), last];
  }

  help(topic: string | undefined): string[] {
    return TABLE.help(topic, 'commands with --bare (an alias in brackets; help COMMAND explains one):',
      'addresses: 0x1000 linear (through the paging the processor uses now), p:0x1000 physical, rip, rsp+8');
  }

  // ---- running ---------------------------------------------------------------------------

  finishHandler(): string[] {
    const e = this.engine;
    if (e.ended !== null) return [endedLine(e.ended)];
    if (!e.vmx.on) throw new DebugInputError('finish-handler runs a root-mode handler: the processor is not in VMX operation');
    if (e.cpu.nonRoot) throw new DebugInputError('finish-handler runs a root-mode handler: the processor is in VMX non-root operation (next-exit runs to the next exit)');
    return this.stopLines(e.finishHandler(this.maxInsns));
  }

  /** What a command's stop means, then where the processor stands. */
  stopLines(stop: BareStop): string[] {
    const lines: string[] = [];
    switch (stop.reason) {
      case 'breakpoint': {
        const a = stop.access;
        lines.push(`breakpoint ${stop.breakpoint!.id}, ${describeBreakpoint(stop.breakpoint!.spec)}` +
          (a === undefined ? '' : `: ${a.write ? 'write' : 'read'} of ${plural(a.size, 'byte')} at ${hex(a.linear)} (physical ${hex(a.physical)})`));
        if (stop.exit !== undefined) lines.push(exitSummary(stop.exit));
        if (stop.failure !== undefined || stop.instruction !== undefined) lines.push(failureLine(stop));
        break;
      }
      case 'arrived':
        if (stop.undoneWrites !== undefined) lines.push(`(${plural(stop.undoneWrites, 'write')} made later in the run undone)`);
        break;
      case 'start': lines.push('there is nothing earlier: this is the start of the run'); break;
      case 'exit': lines.push(exitSummary(stop.exit!)); break;
      case 'entered': lines.push('VM entry succeeded: the processor is back in VMX non-root operation'); break;
      case 'entry-failed': lines.push(failureLine(stop)); break;
      case 'limit': lines.push('stopped: the instruction limit ran out'); break;
      case 'ended': lines.push(endedLine(stop.ended!)); return lines;
      case 'step': break;
    }
    if (this.engine.ended !== null) lines.push(endedLine(this.engine.ended));
    else lines.push(this.whereLine());
    return lines;
  }

  // ---- looking ---------------------------------------------------------------------------

  private instruction(linear: bigint, ip: bigint, syntax: Syntax = this.syntax): { text: string; length: number; bytes: Uint8Array } | null {
    const r = this.engine.read('linear', linear, 15, 'fetch');
    if (r.bytes.length === 0) return null;
    const d = disassemble(r.bytes, (this.engine.cpu.codeSize * 8) as 16 | 32 | 64, ip, syntax);
    return { ...d, bytes: r.bytes.subarray(0, Math.max(1, d.length)) };
  }

  private ripLinear(): bigint {
    const cpu = this.engine.cpu;
    return cpu.codeSize === 8 ? cpu.rip : (BigInt(cpu.segBase[2 * CS]! >>> 0) + cpu.rip) & 0xffffffffn;
  }

  whereLine(): string {
    const e = this.engine, cpu = e.cpu;
    const counts = `[${plural(e.insns, 'instruction')}, ${plural(e.exits, 'exit')}]`;
    if (e.ended !== null) return `the run has ended ${counts}`;
    const insn = this.instruction(this.ripLinear(), cpu.rip);
    const at = `rip ${hex(cpu.rip)}${insn === null ? '' : `  ${insn.text}`}  ${counts}`;
    const last = e.lastExit, at_ = e.atExit;
    if (at_ !== null) return `at exit #${at_.seq} ${at_.name} (reason ${at_.reason}), first instruction of the root-mode handler (HOST_RIP), VMX root operation: ${at}`;
    if (cpu.nonRoot) return `in VMX non-root operation (the guest): ${at}`;
    if (!e.vmx.on) return `outside VMX operation: ${at}`;
    const h = last === null || e.exitAt(last.seq)?.atEntry !== null ? '' : ` (the handler of exit #${last.seq} ${last.name})`;
    return `in VMX root operation${h}: ${at}`;
  }

  exitLines(): string[] {
    const e = this.engine, x = e.lastExit;
    if (x === null) return ['no VM exit yet'];
    const h = e.exitAt(x.seq)!;
    const state = e.atExit !== null ? 'its handler has not run yet' : h.atEntry !== null ? 'handled (the VM entry after it succeeded)' : 'its handler is running';
    const lines = [`exit #${x.seq}: ${x.name} (basic exit reason ${x.reason})${x.entryFailure ? ', a failed VM entry' : ''}, ${state}`];
    lines.push(...exitLines(x, false).slice(1));
    lines.push(`  the VMCS at ${hex(h.vmcsAddress)}; the handler at HOST_RIP ${hex(h.atExit.host['HOST_RIP'] ?? 0n)}`);
    return lines;
  }

  vmcsLines(arg: string | undefined): string[] {
    const e = this.engine, v = e.vmx.current;
    if (v === null) return ['no VMCS is current (VMPTRLD makes one current)'];
    const reason = e.lastExit?.reason ?? null;
    const line = (name: string, encoding: number): string =>
      fieldLine(name, (BigInt(v.hi(encoding) >>> 0) << 32n) | BigInt(v.lo(encoding) >>> 0), reason);
    if (arg === undefined || arg.toLowerCase() === 'all') {
      return [`the current VMCS, at ${hex(v.address)}:`,
        ...VMCS_GROUPS.flatMap((g) => [`${g.title}:`, ...e.fields.filter((f) => f.type === g.type).map((f) => `  ${line(f.name, f.encoding)}`)])];
    }
    const group = VMCS_GROUPS.find((g) => g.names.includes(arg.toLowerCase()));
    if (group !== undefined) return e.fields.filter((f) => f.type === group.type).map((f) => line(f.name, f.encoding));
    const f = findField(arg, e.fields);
    return [line(f.name, f.encoding)];
  }

  vmcsDiffLines(): string[] {
    const e = this.engine, last = e.lastExit;
    if (last === null) return ['no VM exit yet: no handler has changed the VMCS'];
    const h = e.exitAt(last.seq)!, lines: string[] = [];
    const changes = (a: VmcsState, b: VmcsState): string[] => {
      const d = vmcsDiff(a, b, e.fields);
      if (d.length === 0) return ['    (no field changed)'];
      return d.map((c) => {
        const meaning = decodeField(c.name, c.after, last.reason);
        return `    ${c.name}: ${hex(c.before)} -> ${hex(c.after)}${meaning === '' ? '' : `  ${meaning}`}`;
      });
    };
    if (e.atExit !== null) {
      const prev = e.exitAt(last.seq - 1);
      if (prev !== undefined && prev.atEntry !== null) {
        lines.push(`by the handler of exit #${prev.record.seq} ${prev.record.name} (its VMCS at the exit -> the VM entry after it):`, ...changes(prev.atExit, prev.atEntry));
        lines.push(`by the guest and exit #${last.seq} ${last.name} (that VM entry -> the exit):`, ...changes(prev.atEntry, h.atExit));
      } else {
        lines.push(`at exit #${last.seq} ${last.name}: its handler has not run yet${last.seq > 1 ? ' (the previous exit\'s VM entry was not seen)' : ''}`);
      }
      return lines;
    }
    if (h.atEntry !== null) {
      lines.push(`by the handler of exit #${last.seq} ${last.name} (its VMCS at the exit -> the VM entry after it):`, ...changes(h.atExit, h.atEntry));
      return lines;
    }
    const v = e.vmx.current;
    if (v === null || v.address !== h.vmcsAddress) {
      return [`the handler of exit #${last.seq} ${last.name} has made ${v === null ? 'no VMCS' : `the VMCS at ${hex(v.address)}`} current, not exit #${last.seq}'s (at ${hex(h.vmcsAddress)})`];
    }
    lines.push(`by the handler of exit #${last.seq} ${last.name} so far (its VMCS at the exit -> now):`, ...changes(h.atExit, e.vmcsNow()!));
    return lines;
  }

  regsLines(): string[] {
    const cpu = this.engine.cpu;
    const order: [string, number][] = [['rax', 0], ['rbx', 3], ['rcx', 1], ['rdx', 2], ['rsi', 6], ['rdi', 7], ['rbp', 5], ['rsp', 4],
      ['r8', 8], ['r9', 9], ['r10', 10], ['r11', 11], ['r12', 12], ['r13', 13], ['r14', 14], ['r15', 15]];
    const lines: string[] = [];
    for (let k = 0; k < order.length; k += 4) lines.push(order.slice(k, k + 4).map(([n, r]) => `${n.padEnd(3)} ${hex64(cpu.reg64(r))}`).join('  '));
    const flags = cpu.rflags >>> 0, mode = cpu.codeSize === 8 ? '64-bit' : cpu.codeSize === 4 ? '32-bit' : '16-bit';
    const op = cpu.nonRoot ? 'VMX non-root' : this.engine.vmx.on ? 'VMX root' : 'outside VMX';
    lines.push(`rip ${hex64(cpu.rip)}  rflags ${hex(flags)} [ ${bitNames(BigInt(flags), RFLAGS_BITS, false)} ]  cpl ${cpu.cpl}  ${mode} code, ${op}`);
    return lines;
  }

  private parseAddress(text: string): { space: 'linear' | 'physical'; address: bigint } {
    const m = /^(?:([pl]):)?(.+)$/i.exec(text)!;
    const space = m[1]?.toLowerCase() === 'p' ? 'physical' : 'linear', body = m[2]!;
    if (/^(0x[0-9a-f_]+|[\d_]+)$/i.test(body)) return { space, address: parseNumber(body, 'an address') };
    const expr = /^\$?([a-z][a-z0-9]*)\s*(?:([+-])\s*(\S+))?$/i.exec(body);
    if (expr === null) throw new DebugInputError(`malformed address '${text}': write 0x1000, p:0x1000 (physical) or a register such as rip or rsp+8`);
    const name = expr[1]!.toLowerCase(), cpu = this.engine.cpu;
    let base: bigint;
    if (name === 'rip') base = this.ripLinear();
    else if (name in GPRS) base = cpu.reg64(GPRS[name]!);
    else throw new DebugInputError(`malformed address '${text}': '${name}' is not a register${didYouMean(name, ['rip', ...Object.keys(GPRS)])}`);
    const offset = expr[3] === undefined ? 0n : parseNumber(expr[3], 'an address offset');
    return { space, address: BigInt.asUintN(64, expr[2] === '-' ? base - offset : base + offset) };
  }

  dumpLines(text: string, count: number): string[] {
    const at = this.parseAddress(text), r = this.engine.read(at.space, at.address, count), lines: string[] = [];
    for (let k = 0; k < r.bytes.length; k += 16) {
      const row = r.bytes.subarray(k, k + 16);
      const hexes = [...row].map((b) => b.toString(16).padStart(2, '0')).join(' ');
      const chars = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
      lines.push(`${at.space === 'physical' ? 'p:' : ''}${hex(at.address + BigInt(k))}: ${hexes.padEnd(47)}  |${chars}|`);
    }
    if (r.stop !== null) lines.push(r.bytes.length === 0 ? `cannot read: ${r.stop}` : `(stopped after ${plural(r.bytes.length, 'byte')}: ${r.stop})`);
    return lines;
  }

  disasm(args: readonly string[]): string[] {
    let syntax = this.syntax;
    const rest = args.filter((a) => {
      if (a === '--att') { syntax = 'att'; return false; }
      if (a === '--intel') { syntax = 'intel'; return false; }
      return true;
    });
    atMost(rest, 2, 'disasm [ADDR] [N] [--att]');
    const cpu = this.engine.cpu, here = this.ripLinear();
    let linear = here, ip = cpu.rip;
    if (rest.length > 0) {
      const at = this.parseAddress(rest[0]!);
      if (at.space !== 'linear') throw new DebugInputError('disasm takes a linear address, not a p: one');
      linear = at.address;
      ip = cpu.codeSize === 8 ? linear : BigInt.asUintN(32, linear - BigInt(cpu.segBase[2 * CS]! >>> 0));
    }
    const count = parseCount(rest[1], 8, 'the instruction count', 1000), lines: string[] = [];
    for (let k = 0; k < count; k++) {
      const insn = this.instruction(linear, ip, syntax);
      if (insn === null) { lines.push(`${hex(linear)}: cannot read: ${this.engine.read('linear', linear, 1, 'fetch').stop}`); break; }
      const bytes = [...insn.bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ');
      lines.push(`${linear === here ? '=>' : '  '} ${hex(linear)}  ${bytes.padEnd(30)}  ${insn.text}`);
      const step = BigInt(Math.max(1, insn.length));
      linear = BigInt.asUintN(64, linear + step); ip = BigInt.asUintN(64, ip + step);
    }
    return lines;
  }

  whyEntryFailed(): string[] {
    const i = this.engine.instructionFailed;
    if (i !== null) return [`${i.instruction} at ${hex(i.rip)} failed as an instruction (SDM 31.3), before any check of the VM entry (27.2):`, `  ${vmFailText(i)}`];
    return whyEntryFailedLines(this.engine.vmx.lastEntryFailure);
  }

  setWatch(args: readonly string[]): string[] {
    const bp = this.engine.addBreakpoint(parseWatchSpec(args, (text) => this.parseAddress(text)));
    return [`breakpoint ${bp.id}, ${describeBreakpoint(bp.spec)}`];
  }

  translate(args: readonly string[]): string[] {
    if (args.length < 1 || args.length > 2) throw new DebugInputError('translate takes an address and an access: translate 0x1000 write');
    const access = args[1]?.toLowerCase() ?? 'read';
    if (access !== 'read' && access !== 'write' && access !== 'fetch') throw new DebugInputError(`the access is read, write or fetch, not '${args[1]}'`);
    const at = this.parseAddress(args[0]!);
    if (at.space !== 'linear') throw new DebugInputError('translate takes a linear address, not a p: one');
    return translateLines(this.engine.translation(), at.address, access);
  }

  setBreak(args: readonly string[]): string[] {
    const spec = parseBreakSpec(args, this.engine.fields, this.engine.insns, (text) => {
      const at = this.parseAddress(text);
      if (at.space !== 'linear') throw new DebugInputError('with --bare a breakpoint address is linear (0x1000), as RIP is: not a p: one');
      return { kind: 'address', address: at.address };
    });
    const bp = this.engine.addBreakpoint(spec);
    return [`breakpoint ${bp.id}, ${describeBreakpoint(spec)}`];
  }
}

function exitSummary(x: ExitRecord): string {
  return `VM exit #${x.seq} ${x.name} (reason ${x.reason})${x.entryFailure ? ', a failed VM entry' : ''} at guest rip ${hex(x.rip)}${x.insn === null ? '' : `: ${x.insn}`}`;
}

/** What a VMLAUNCH/VMRESUME that failed as an instruction stored: VMfailInvalid, or VMfailValid with its error (31.2, 31.4). */
function vmFailText(i: VmInstructionFailure): string {
  if (i.error === null) return 'VMfailInvalid (CF = 1): there is no current VMCS (the current-VMCS pointer is invalid)';
  return `VMfailValid (ZF = 1), VM-instruction error ${i.error}: ${instructionErrorText(i.error) ?? 'not a number table 31-1 defines'}`;
}

function failureLine(stop: BareStop): string {
  const i = stop.instruction;
  if (i !== undefined) return `VM entry failed: ${i.instruction} at ${hex(i.rip)} failed with ${vmFailText(i)}`;
  const f = stop.failure;
  const how = stop.exit !== undefined ? `, ended in VM exit #${stop.exit.seq} ${stop.exit.name} (reason ${stop.exit.reason}, bit 31 set)` : '';
  return f === undefined ? `VM entry failed${how}` : `VM entry failed${how}: ${f.check} (SDM ${f.section}): ${f.detail} (see why-entry-failed)`;
}

/** Why the run ended, in one line. */
export function endedLine(end: BareEnd): string {
  switch (end.kind) {
    case 'exit': return `the machine exited with status ${end.status} (debug-exit port)`;
    case 'halt': return 'the processor halted and nothing can wake it';
    case 'shutdown': return 'the processor shut down (triple fault)';
    case 'exception': return `unhandled exception ${VECTOR_NAMES[end.vector] ?? `vector ${end.vector}`}`;
  }
}

function errorLines(e: unknown): string[] {
  if (e instanceof DebugInputError) return [`error: ${e.message}`];
  if (e instanceof InternalError) return [`internal error: ${e.message}`, `internal error: ${e.state}`];
  return [`internal error: ${e instanceof Error ? e.message : String(e)}`];
}
