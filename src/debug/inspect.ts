/**
 * What the debugger prints: where the guest stands, why a command stopped,
 * an exit record decoded, registers, memory, disassembly, translations, the
 * VMCS and its differences, the trace of exits, a failed VM entry. Every
 * function returns lines; nothing here changes the guest.
 */
import { InterruptionType } from '../../vmcs/controls.js';
import { INSTRUCTION_INFORMATION_LAYOUTS, QUALIFICATION_LAYOUTS } from '../../vmcs/qualifications.js';
import { VECTOR_NAMES } from '../cpu/regs.js';
import { disassemble, type Syntax } from '../hv/disassemble.js';
import type { EventRecord, ExitRecord } from '../hv/record.js';
import type { VmStop } from '../hv/vm.js';
import type { EntryCheckFailure } from '../vmx/entry-checks.js';
import { explainTranslation, formatTranslation, type AccessKind, type TranslationState } from '../vmx/translation.js';
import { describeBreakpoint } from './breakpoints.js';
import type { DebugEngine, EngineStop } from './engine.js';
import { EXIT_COST, type SnapshotStats } from './timeline.js';
import type { AddressSpace, GuestState } from './guest-state.js';
import { bitNames, decodeField, fieldLine, hex, layoutText, RFLAGS_BITS, VMCS_GROUPS, vmcsDiff, findField, type FieldChange } from './vmcs-view.js';
import { DebugInputError } from './names.js';

/** Longest x86 instruction (SDM vol. 2, 2.3.11). */
const MAX_INSTRUCTION = 15;

function hex64(v: bigint): string {
  return `0x${BigInt.asUintN(64, v).toString(16).padStart(16, '0')}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The instruction at linear `address` (`ip` for relative targets), as iced-x86 formats it, with its length. */
export function instructionAt(g: GuestState, address: bigint, ip: bigint, syntax: Syntax = 'intel'): { text: string; length: number; bytes: Uint8Array } | null {
  const r = g.read('linear', address, MAX_INSTRUCTION, 'fetch');
  if (r.bytes.length === 0) return null;
  const d = disassemble(r.bytes, (g.codeSize * 8) as 16 | 32 | 64, ip, syntax);
  return { ...d, bytes: r.bytes.subarray(0, Math.max(1, d.length)) };
}

/** One line: where the guest stands now. */
export function whereLine(engine: DebugEngine, g: GuestState): string {
  const p = engine.position, insn = instructionAt(g, g.ripLinear, g.rip);
  const at = `rip ${hex(g.rip)}${insn === null ? '' : `  ${insn.text}`}`;
  const counts = p.atExit ? plural(p.insns, 'instruction') : `${plural(p.insns, 'instruction')}, ${plural(p.exits, 'exit')}`;
  const e = engine.atExit;
  if (engine.ended !== null) return `the guest has stopped (${plural(p.insns, 'instruction')}, ${plural(p.exits, 'exit')})`;
  if (e !== null) return `at exit #${e.seq} ${e.name} (reason ${e.reason}), before its handler: ${at}  [${counts}]`;
  return `in the guest: ${at}  [${counts}]`;
}

/** Why the guest stopped for good, in one line. */
export function endedLine(stop: VmStop): string {
  switch (stop.kind) {
    case 'exit': return `the guest exited with status ${stop.status} (debug-exit port or EXIT hypercall)`;
    case 'halt': return 'the guest halted with interrupts off: nothing can wake it';
    case 'shutdown': return 'the guest shut down (triple fault)';
    case 'budget': return 'the instruction budget ran out';
    case 'entry-failed': return `VM entry failed: ${stop.failure.check} (SDM ${stop.failure.section}): ${stop.failure.detail} (see why-entry-failed)`;
    case 'unhandled': return `VM exit ${stop.name} stopped the VM: ${stop.detail}`;
  }
}

/** What a command's stop means, then where the guest stands. */
export function stopLines(stop: EngineStop, engine: DebugEngine, g: GuestState): string[] {
  const lines: string[] = [];
  switch (stop.reason) {
    case 'breakpoint': {
      const bp = stop.breakpoint!;
      let line = `breakpoint ${bp.id}, ${describeBreakpoint(bp.spec)}`;
      const a = stop.access;
      if (a !== undefined) line += `: ${a.write ? 'write' : 'read'} of ${plural(a.size, 'byte')} at ${hex(a.linear)} (physical ${hex(a.physical)})`;
      lines.push(line);
      if (stop.ended !== undefined) lines.push(endedLine(stop.ended));
      break;
    }
    case 'limit': lines.push('stopped: the instruction limit ran out'); break;
    case 'ended': lines.push(endedLine(stop.ended!)); return lines;
    case 'start': lines.push('there is nothing earlier: this is the start of the run'); break;
    case 'arrived':
      if (stop.undoneWrites !== undefined) lines.push(`(${plural(stop.undoneWrites, 'write')} made later in the run undone)`);
      break;
    case 'step': case 'exit': break;
  }
  lines.push(whereLine(engine, g));
  return lines;
}

function eventText(e: EventRecord): string {
  const types: Record<number, string> = Object.fromEntries(Object.entries(InterruptionType).map(([k, v]) => [v, k.toLowerCase().replace(/_/g, ' ')]));
  const name = e.type === InterruptionType.HARDWARE_EXCEPTION || e.type === InterruptionType.SOFTWARE_EXCEPTION ? VECTOR_NAMES[e.vector] : undefined;
  return `vector ${e.vector}${name === undefined ? '' : ` (${name})`}, ${types[e.type] ?? `type ${e.type}`}` +
    (e.errorCode === null ? '' : `, error code ${hex(e.errorCode)}`);
}

/** An exit record, every part decoded by name. */
export function exitLines(e: ExitRecord, pending: boolean): string[] {
  const lines = [`exit #${e.seq}: ${e.name} (basic exit reason ${e.reason})${e.entryFailure ? ', a failed VM entry' : ''}${pending ? ', before its handler' : ', handled'}`];
  lines.push(`  rip ${hex(e.rip)}, instruction length ${e.length}${e.insn === null ? '' : `: ${e.insn}`}`);
  const q = QUALIFICATION_LAYOUTS[e.reason];
  lines.push(`  qualification ${hex(e.qualification)}${q === undefined ? '' : `: ${layoutText(q, e.qualification)}`}`);
  const ii = INSTRUCTION_INFORMATION_LAYOUTS[e.reason];
  if (ii !== undefined) lines.push(`  instruction information ${hex(e.instructionInformation)}: ${layoutText(ii, BigInt(e.instructionInformation >>> 0))}`);
  if (e.guestLinear !== null) lines.push(`  guest-linear address ${hex(e.guestLinear)}`);
  if (e.guestPhysical !== null) lines.push(`  guest-physical address ${hex(e.guestPhysical)}`);
  if (e.interruption !== null) lines.push(`  interruption: ${eventText(e.interruption)}`);
  if (e.idtVectoring !== null) lines.push(`  during delivery of: ${eventText(e.idtVectoring)}`);
  lines.push(`  ${plural(e.sinceLast, 'instruction')} since the previous exit, ${e.instructions} in all`);
  return lines;
}

/** One line per exit, oldest first. */
export function traceLines(records: readonly ExitRecord[]): string[] {
  if (records.length === 0) return ['no VM exit yet'];
  const width = Math.max(...records.map((r) => r.name.length));
  return records.map((r) => `#${r.seq} ${r.name.padEnd(width)} rip ${hex(r.rip)}  ${(r.insn ?? '?').padEnd(20)} qualification ${hex(r.qualification)}  +${r.sinceLast}`);
}

/** The general-purpose registers, RIP and RFLAGS. */
export function regsLines(g: GuestState): string[] {
  // gdb's order, by encoding number.
  const order: [string, number][] = [['rax', 0], ['rbx', 3], ['rcx', 1], ['rdx', 2], ['rsi', 6], ['rdi', 7], ['rbp', 5], ['rsp', 4],
    ['r8', 8], ['r9', 9], ['r10', 10], ['r11', 11], ['r12', 12], ['r13', 13], ['r14', 14], ['r15', 15]];
  const lines: string[] = [];
  for (let k = 0; k < order.length; k += 4) {
    lines.push(order.slice(k, k + 4).map(([name, n]) => `${name.padEnd(3)} ${hex64(g.reg(n))}`).join('  '));
  }
  const flags = g.rflags, mode = g.codeSize === 8 ? '64-bit' : g.codeSize === 4 ? '32-bit' : '16-bit';
  lines.push(`rip ${hex64(g.rip)}  rflags ${hex(flags)} [ ${bitNames(BigInt(flags), RFLAGS_BITS, false)} ]  cpl ${g.cpl}  ${mode} code`);
  return lines;
}

/** The `snapshots` line: how many, how far apart, and the memory they take. */
export function snapshotsLine(st: SnapshotStats): string {
  return `${plural(st.count, 'snapshot')}, one every ${st.interval.toLocaleString('en-US')} instruction-equivalents ` +
    `(an exit counts as ${EXIT_COST}), ${(st.bytes / 1024).toFixed(0)} KiB together`;
}

/** Where an address names memory: its space and value. */
export interface Address {
  readonly space: AddressSpace;
  readonly address: bigint;
}

function addressText(a: Address): string {
  return `${a.space === 'physical' ? 'p:' : a.space === 'host' ? 'h:' : ''}${hex(a.address)}`;
}

/** A hex dump, 16 bytes a line, with the bytes as text. */
export function dumpLines(g: GuestState, at: Address, count: number): string[] {
  const r = g.read(at.space, at.address, count);
  const lines: string[] = [];
  for (let k = 0; k < r.bytes.length; k += 16) {
    const row = r.bytes.subarray(k, k + 16);
    const hexes = [...row].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const text = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${addressText({ space: at.space, address: at.address + BigInt(k) })}: ${hexes.padEnd(47)}  |${text}|`);
  }
  if (r.stop !== null) lines.push(r.bytes.length === 0 ? `cannot read: ${r.stop}` : `(stopped after ${plural(r.bytes.length, 'byte')}: ${r.stop})`);
  return lines;
}

/** `count` instructions from `at` (the next one's by default), the next instruction marked `=>`. */
export function disasmLines(g: GuestState, at: Address | null, count: number, syntax: Syntax): string[] {
  const here = g.ripLinear;
  let linear: bigint, ip: bigint;
  if (at === null) { linear = here; ip = g.rip; }
  else if (at.space !== 'linear') throw new DebugInputError('disasm takes a guest-linear address (p: and h: addresses are not code the guest runs at)');
  else { linear = at.address; ip = g.codeSize === 8 ? linear : BigInt.asUintN(32, linear - g.csBase); }
  const lines: string[] = [];
  for (let k = 0; k < count; k++) {
    const insn = instructionAt(g, linear, ip, syntax);
    if (insn === null) {
      lines.push(`${hex(linear)}: cannot read: ${g.read('linear', linear, 1, 'fetch').stop}`);
      break;
    }
    const mark = linear === here ? '=>' : '  ';
    const bytes = [...insn.bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    lines.push(`${mark} ${hex(linear)}  ${bytes.padEnd(30)}  ${insn.text}`);
    const step = BigInt(Math.max(1, insn.length));
    linear = BigInt.asUintN(64, linear + step); ip = BigInt.asUintN(64, ip + step);
  }
  return lines;
}

/**
 * The walk of a linear address, level by level (vmx/translation.ts): through
 * the paging `state` describes and, where it names one, the EPT (the 2-D walk).
 */
export function translateLines(state: TranslationState, linear: bigint, access: AccessKind): string[] {
  return formatTranslation(explainTranslation(state, linear, access));
}

/** The VMCS: every field, one group, or one field, with its meaning. */
export function vmcsLines(engine: DebugEngine, g: GuestState, arg: string | undefined): string[] {
  const reason = engine.lastExit?.reason ?? null;
  const line = (name: string, encoding: number): string => fieldLine(name, g.field(encoding), reason);
  if (arg === undefined || arg.toLowerCase() === 'all') {
    return VMCS_GROUPS.flatMap((grp) => [`${grp.title}:`, ...engine.fields.filter((f) => f.type === grp.type).map((f) => `  ${line(f.name, f.encoding)}`)]);
  }
  const group = VMCS_GROUPS.find((grp) => grp.names.includes(arg.toLowerCase()));
  if (group !== undefined) return engine.fields.filter((f) => f.type === group.type).map((f) => line(f.name, f.encoding));
  const f = findField(arg, engine.fields);
  return [line(f.name, f.encoding)];
}

function changeLines(changes: readonly FieldChange[], reason: number | null): string[] {
  if (changes.length === 0) return ['    (no field changed)'];
  return changes.map((c) => {
    const meaning = decodeField(c.name, c.after, reason);
    return `    ${c.name}: ${hex(c.before)} -> ${hex(c.after)}${meaning === '' ? '' : `  ${meaning}`}`;
  });
}

/**
 * What changed in the VMCS: by the handler of the previous exit (its VMCS at
 * the exit against the one it entered the guest with), then by the guest and
 * this exit (that entry against now).
 */
export function vmcsDiffLines(engine: DebugEngine): string[] {
  const p = engine.position, fields = engine.fields;
  const now = engine.atExit !== null ? engine.exitAt(p.exits)?.atExit ?? engine.vmcsNow() : engine.vmcsNow();
  const handledSeq = engine.atExit !== null ? p.exits - 1 : p.exits;
  const lines: string[] = [];
  const reason = engine.lastExit?.reason ?? null;
  const handled = handledSeq >= 1 ? engine.exitAt(handledSeq) : undefined;
  if (handledSeq >= 1) {
    if (handled === undefined || handled.atEntry === null) {
      lines.push(`  the VMCS of exit #${handledSeq} is no longer kept`);
    } else {
      lines.push(`by the handler of exit #${handledSeq} ${handled.record.name} (its VMCS at the exit -> the VM entry after it):`);
      lines.push(...changeLines(vmcsDiff(handled.atExit, handled.atEntry, fields), handled.record.reason));
    }
  }
  const since = handledSeq >= 1 ? `the VM entry after exit #${handledSeq}` : 'the first VM entry';
  const until = engine.atExit !== null ? `exit #${p.exits} ${engine.atExit.name}` : 'now';
  lines.push(`by the guest${engine.atExit !== null ? ' and the exit' : ''} (${since} -> ${until}):`);
  const entry = handled?.atEntry ?? (handledSeq < 1 ? engine.vmcsAtEntry : null);
  if (entry === null) lines.push('    (that VM entry is no longer kept)');
  else lines.push(...changeLines(vmcsDiff(entry, now, fields), reason));
  return lines;
}

/** The failing VM-entry check, by name and SDM section, with the values involved (both sessions). */
export function whyEntryFailedLines(f: EntryCheckFailure | null): string[] {
  if (f === null) return ['no VM entry has failed: the last one passed every check of SDM 27.2 and 27.3'];
  const result = f.kind === 'controls' ? 'VMfailValid, VM-instruction error 7 (invalid control fields)'
    : f.kind === 'host' ? 'VMfailValid, VM-instruction error 8 (invalid host-state fields)'
      : `a VM exit with reason 33 and bit 31 set (invalid guest state), exit qualification ${f.qualification}`;
  return [`the VM entry failed with ${result}`, `check: ${f.check}`, `SDM ${f.section}`, `detail: ${f.detail}`];
}
