/**
 * What the debugger stops on, as data: a guest RIP, a VM exit (by reason, with
 * conditions on its qualification fields, on VMCS fields or on the exit
 * record), a failed VM entry, a guest instruction count, and watchpoints on
 * guest-linear or guest-physical memory. Also the parser of the conditions a
 * user writes (`IO_INSTRUCTION port=0x3f8`, `CR_ACCESS CONTROL_REGISTER=3`).
 */
import { exitReasonName } from '../../vmcs/exit-reasons.js';
import type { VmcsField } from '../../vmcs/fields.js';
import { QUALIFICATION_LAYOUTS, type BitField } from '../../vmcs/qualifications.js';
import type { ExitRecord } from '../hv/record.js';
import type { Vmcs } from '../vmx/vmcs.js';
import { highHalf, type Block } from '../cpu/blocks.js';
import type { Cpu } from '../cpu/cpu.js';
import { CS } from '../cpu/regs.js';
import { atMost, DebugInputError, didYouMean, parseCount, parseExitReason, parseNumber } from './names.js';
import { hex } from './vmcs-view.js';

/** Kinds of memory access a watchpoint catches; `access` is read or write. */
export type WatchAccess = 'read' | 'write' | 'access' | 'execute';

/** Where a condition takes its value from. */
export type ConditionSource = 'qualification' | 'vmcs' | 'record';

/** One condition of an exit breakpoint: FIELD=VALUE or FIELD!=VALUE. */
export interface ExitCondition {
  /** The field's name as the SDM or vmcs/ spells it (PORT_NUMBER, GUEST_RIP), or a record property (rip). */
  readonly field: string;
  readonly source: ConditionSource;
  readonly equal: boolean;
  readonly value: bigint;
  /** The VMCS field encoding, for source 'vmcs'. */
  readonly encoding?: number;
  /** The condition as the user wrote its value, with the field's full name (PORT_NUMBER=0x3f8, DIRECTION=IN). */
  readonly text: string;
}

/** What to stop on. */
export type BreakpointSpec =
  /** The guest is about to execute the instruction at this linear address. */
  | { readonly kind: 'address'; readonly address: bigint }
  /** A VM exit, before its handler runs: any reason (null) or one, and every condition true. */
  | { readonly kind: 'exit'; readonly reason: number | null; readonly conditions: readonly ExitCondition[] }
  /** A VM entry fails: VMfailValid (27.2) or an exit with bit 31 of the exit reason (27.8). */
  | { readonly kind: 'entry-failure' }
  /** The guest has retired exactly this many instructions. */
  | { readonly kind: 'instruction'; readonly count: number }
  /** An access to [address, address + length) of guest-linear or guest-physical memory. */
  | { readonly kind: 'watch'; readonly space: 'linear' | 'physical'; readonly access: WatchAccess; readonly address: bigint; readonly length: number };

/** A breakpoint the engine holds: its number, what it stops on, and how often it did. */
export interface Breakpoint {
  readonly id: number;
  readonly spec: BreakpointSpec;
  hits: number;
}

/** Exit-record properties a condition may name (lower case, as a user types them). */
const RECORD_FIELDS: Readonly<Record<string, (e: ExitRecord) => bigint | null>> = {
  rip: (e) => e.rip,
  length: (e) => BigInt(e.length),
  qualification: (e) => e.qualification,
  vector: (e) => (e.interruption === null ? null : BigInt(e.interruption.vector)),
  gpa: (e) => e.guestPhysical,
  gla: (e) => e.guestLinear,
};

/** Short names for qualification fields (each used only where the exit's layout has the field). */
const QUALIFICATION_ALIASES: Readonly<Record<string, string>> = {
  PORT: 'PORT_NUMBER',
  CR: 'CONTROL_REGISTER',
  DR: 'DEBUG_REGISTER',
  GPR: 'GENERAL_PURPOSE_REGISTER',
  SIZE: 'SIZE_OF_ACCESS',
  DIR: 'DIRECTION',
  ACCESS: 'ACCESS_TYPE',
};

function layoutsFor(reason: number | null): readonly BitField[] {
  if (reason !== null) return QUALIFICATION_LAYOUTS[reason] ?? [];
  const all = new Map<string, BitField>();
  for (const layout of Object.values(QUALIFICATION_LAYOUTS)) for (const f of layout ?? []) if (!all.has(f.name)) all.set(f.name, f);
  return [...all.values()];
}

/** The value a condition names: a number, or one of the field's named values (IN, OUT, MOV_to_CR). */
function conditionValue(text: string, field: BitField | undefined, name: string): bigint {
  if (field?.values !== undefined && !/^(0x[0-9a-f_]+|0b[01_]+|[\d_]+)$/i.test(text)) {
    const want = text.toUpperCase().replace(/[\s-]+/g, '_');
    for (const [k, v] of Object.entries(field.values)) if (v.toUpperCase().replace(/[\s-]+/g, '_') === want) return BigInt(k);
    throw new DebugInputError(`${name} has no value '${text}' (its values: ${Object.values(field.values).map((v) => v.replace(/\s+/g, '_')).join(', ')})`);
  }
  return parseNumber(text, `the value of ${name}`);
}

/**
 * Parses one condition `FIELD=VALUE` or `FIELD!=VALUE` of an exit breakpoint
 * on `reason` (null: any reason). FIELD is, case-insensitively, a qualification
 * field of the reason's layout (or a short name: port, cr, dr, gpr, size, dir,
 * access), an exit-record property (rip, length, qualification, vector, gpa,
 * gla), or a VMCS field of `fields`.
 */
export function parseCondition(text: string, reason: number | null, fields: readonly VmcsField[]): ExitCondition {
  const m = /^([A-Za-z_][\w]*)\s*(!=|==|=)\s*(\S+)$/.exec(text);
  if (m === null) throw new DebugInputError(`a condition is FIELD=VALUE or FIELD!=VALUE, e.g. port=0x3f8, not '${text}'`);
  const [, rawName, op, rawValue] = m as unknown as [string, string, string, string];
  const upper = rawName.toUpperCase(), equal = op !== '!=';
  const layout = layoutsFor(reason);
  const qualificationName = layout.some((f) => f.name === upper) ? upper : QUALIFICATION_ALIASES[upper];
  const q = layout.find((f) => f.name === qualificationName);
  const shown = (field: string): string => `${field}${equal ? '=' : '!='}${rawValue}`;
  if (q !== undefined) return { field: q.name, source: 'qualification', equal, value: conditionValue(rawValue, q, q.name), text: shown(q.name) };
  const lower = rawName.toLowerCase();
  if (lower in RECORD_FIELDS) return { field: lower, source: 'record', equal, value: conditionValue(rawValue, undefined, lower), text: shown(lower) };
  const v = fields.find((f) => f.name === upper);
  if (v !== undefined) {
    return { field: v.name, source: 'vmcs', equal, value: conditionValue(rawValue, undefined, v.name), encoding: v.encoding, text: shown(v.name) };
  }
  const candidates = [...layout.map((f) => f.name), ...Object.keys(QUALIFICATION_ALIASES).map((a) => a.toLowerCase()), ...Object.keys(RECORD_FIELDS), ...fields.map((f) => f.name)];
  const where = reason === null ? 'any exit' : exitReasonName(reason) ?? `reason ${reason}`;
  throw new DebugInputError(`'${rawName}' is not a field of ${where}'s qualification, of the exit record or of the VMCS${didYouMean(rawName, candidates)}`);
}

/** True when every condition holds for `exit`, with the VMCS as the exit left it. */
export function conditionsHold(conditions: readonly ExitCondition[], exit: ExitRecord, vmcs: Vmcs): boolean {
  for (const c of conditions) {
    let v: bigint | null;
    if (c.source === 'qualification') {
      const d = exit.decoded[c.field];
      v = d === undefined ? null : BigInt(d);
    } else if (c.source === 'record') {
      v = RECORD_FIELDS[c.field]!(exit);
    } else {
      v = (BigInt(vmcs.hi(c.encoding!) >>> 0) << 32n) | BigInt(vmcs.lo(c.encoding!) >>> 0);
    }
    if (v === null || (v === c.value) !== c.equal) return false;
  }
  return true;
}

/** One line saying what a breakpoint stops on. */
export function describeBreakpoint(spec: BreakpointSpec): string {
  switch (spec.kind) {
    case 'address': return `at ${hex(spec.address)}`;
    case 'exit': {
      const reason = spec.reason === null ? 'any' : exitReasonName(spec.reason) ?? `reason ${spec.reason}`;
      const conds = spec.conditions.map((c) => c.text);
      return `on VM exit ${[reason, ...conds].join(' ')}`;
    }
    case 'entry-failure': return 'on a failed VM entry';
    case 'instruction': return `at instruction ${spec.count}`;
    case 'watch': {
      const at = `${spec.space === 'physical' ? 'p:' : ''}${hex(spec.address)}`;
      const what = spec.access === 'access' ? 'read or write' : spec.access;
      return `watch ${what} of ${spec.length} byte${spec.length === 1 ? '' : 's'} at ${at}`;
    }
  }
}

/**
 * The arguments of `break`: an exit (with a reason and conditions on fields),
 * a failed entry, an instruction count (`+N` from `insnsNow`), or an address,
 * which `address` turns into the session's own kind of breakpoint.
 */
export function parseBreakSpec(args: readonly string[], fields: readonly VmcsField[], insnsNow: number,
  address: (text: string) => BreakpointSpec): BreakpointSpec {
  const usage = 'break ADDR | break exit [REASON] [FIELD=VALUE ...] | break entry-failure | break insn N';
  if (args.length === 0) throw new DebugInputError(`break needs something to stop on: ${usage}`);
  const what = args[0]!.toLowerCase();
  if (what === 'exit') {
    let reason: number | null = null, rest = args.slice(1);
    if (rest.length > 0 && !rest[0]!.includes('=')) { reason = parseExitReason(rest[0]!); rest = rest.slice(1); }
    return { kind: 'exit', reason, conditions: rest.map((c) => parseCondition(c, reason, fields)) };
  }
  if (what === 'entry-failure' || what === 'entry-failed') {
    atMost(args, 1, usage);
    return { kind: 'entry-failure' };
  }
  if (what === 'insn' || what === 'instruction') {
    if (args.length !== 2) throw new DebugInputError('break insn takes an instruction count: break insn 5000, or break insn +100 from here');
    const rel = args[1]!.startsWith('+'), n = parseCount(rel ? args[1]!.slice(1) : args[1], 0, 'the instruction count', Number.MAX_SAFE_INTEGER);
    return { kind: 'instruction', count: rel ? insnsNow + n : n };
  }
  atMost(args, 1, usage);
  return address(args[0]!);
}

/**
 * The arguments of `watch`: an access (read, write, access or rw, exec;
 * write by default), an address that `address` resolves to a linear or
 * physical one (refusing others), and a length (default 1).
 */
export function parseWatchSpec(args: readonly string[], address: (text: string) => { space: 'linear' | 'physical'; address: bigint }): BreakpointSpec {
  const kinds: Readonly<Record<string, WatchAccess>> = { read: 'read', write: 'write', access: 'access', rw: 'access', exec: 'execute', execute: 'execute' };
  let rest = args, access: WatchAccess = 'write';
  if (rest.length > 0 && rest[0]!.toLowerCase() in kinds) { access = kinds[rest[0]!.toLowerCase()]!; rest = rest.slice(1); }
  if (rest.length < 1 || rest.length > 2) throw new DebugInputError('watch takes an access, an address and a length: watch write 0x2000 4, watch read p:0x2000');
  const at = address(rest[0]!);
  const length = parseCount(rest[1], 1, 'the length', 1 << 20);
  return { kind: 'watch', space: at.space, access, address: at.address, length };
}

/** The records of at most the last `n` exits up to exit `upTo` still kept in `history` (by seq), oldest first. */
export function lastRecords(history: ReadonlyMap<number, { readonly record: ExitRecord }>, upTo: number, n: number): ExitRecord[] {
  const out: ExitRecord[] = [];
  for (let seq = upTo; seq >= 1 && out.length < n; seq--) {
    const h = history.get(seq);
    if (h === undefined) break;
    out.push(h.record);
  }
  return out.reverse();
}

/**
 * How many of the first `limit` instructions of `block` (the block at RIP)
 * run before the first, from the second on, that `stopsAt` (its linear address
 * and physical address); `limit` when none does. Linear addresses wrap as RIP
 * does in the block's code size.
 */
export function instructionsBefore(cpu: Cpu, block: Block, limit: number, stopsAt: (lo: number, hi: number, phys: number) => boolean): number {
  const mode = cpu.codeSize, ip = cpu.ripLo, base = mode === 8 ? 0 : cpu.segBase[2 * CS]!;
  const lo = mode === 8 ? ip >>> 0 : (base + ip) >>> 0, hi = mode === 8 ? cpu.ripHi : 0;
  const n = Math.min(limit, block.insns.length), offsets = block.offsets;
  for (let k = 1; k < n; k++) {
    const off = offsets[k]!;
    let klo: number, khi = hi;
    if (mode === 8) { klo = (lo + off) >>> 0; khi = highHalf(lo, hi, off); }
    else klo = mode === 4 ? (base + ip + off) >>> 0 : (base + ((ip + off) & 0xffff)) >>> 0;
    if (stopsAt(klo, khi, block.physAt[k]!)) return k;
  }
  return limit;
}
