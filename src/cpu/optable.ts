/**
 * The opcode table: one declarative source for the decoder, the interpreter,
 * the block compiler and the tests. Each ops module contributes the entries it
 * implements, keyed by map * 256 + opcode byte (insn.ts, OpMap); groups and
 * prefix selections that several modules share are merged slot by slot, and a
 * slot claimed twice is an error at load time.
 */
import type { ByMod, ByMode, ByRm, Entry, Group, OpTable, Prefixed } from './insn.js';
import { ALU_TABLE } from './ops/alu.js';
import { MOVE_TABLE } from './ops/move.js';
import { CONTROL_TABLE } from './ops/control.js';
import { STACK_TABLE } from './ops/stack.js';
import { SHIFT_TABLE } from './ops/shift.js';
import { MULDIV_TABLE } from './ops/muldiv.js';
import { BITS_TABLE } from './ops/bits.js';
import { STRING_TABLE } from './ops/string.js';
import { SSE_TABLE } from './ops/sse.js';
import { SYSTEM_TABLE } from './ops/system.js';
import { CONTROL_REGISTER_TABLE } from './ops/control-registers.js';
import { IO_TABLE } from './ops/io.js';
import { SEGMENT_TABLE } from './ops/segment.js';
import { FASTCALL_TABLE } from './ops/fastcall.js';
import { DEBUG_REGISTER_TABLE } from './ops/debug-registers.js';
import { FPU_TABLE } from './ops/fpu.js';
import { VMX_TABLE } from './ops/vmx.js';
import { RANDOM_TABLE } from './ops/random.js';

type Slots = readonly (Entry | undefined)[];

function mergeSlots(a: Slots, b: Slots, where: string): (Entry | undefined)[] {
  const out: (Entry | undefined)[] = [];
  for (let k = 0; k < Math.max(a.length, b.length); k++) {
    out[k] = a[k] === undefined ? b[k] : b[k] === undefined ? a[k] : merge(a[k]!, b[k]!, `${where}[${k}]`);
  }
  return out;
}

/** The kind of a table entry. */
function kindOf(e: Entry): 'def' | 'group' | 'prefixed' | 'rm' | 'mode' | 'mod' {
  if ('exec' in e) return 'def';
  if ('group' in e) return 'group';
  if ('prefixed' in e) return 'prefixed';
  if ('rm' in e) return 'rm';
  if ('long64' in e || 'legacy' in e) return 'mode';
  return 'mod';
}

/** Combines two entries for one opcode slot by slot; throws when both define the same slot. */
export function merge(a: Entry, b: Entry, where: string): Entry {
  const kind = kindOf(a);
  if (kind !== kindOf(b) || kind === 'def') throw new Error(`opcode table: ${where} is defined twice`);
  const both = (p: Entry | undefined, q: Entry | undefined, half: string): Entry | undefined =>
    p === undefined ? q : q === undefined ? p : merge(p, q, `${where}.${half}`);
  switch (kind) {
    case 'group': return { group: mergeSlots((a as Group).group, (b as Group).group, where) };
    case 'rm': return { rm: mergeSlots((a as ByRm).rm, (b as ByRm).rm, where) };
    case 'prefixed': {
      const s = mergeSlots((a as Prefixed).prefixed, (b as Prefixed).prefixed, where);
      return { prefixed: [s[0], s[1], s[2], s[3]] };
    }
    case 'mode': {
      const [x, y] = [a as ByMode, b as ByMode];
      return { long64: both(x.long64, y.long64, 'long64'), legacy: both(x.legacy, y.legacy, 'legacy') };
    }
    default: {
      const [x, y] = [a as ByMod, b as ByMod];
      return { mem: both(x.mem, y.mem, 'mem'), reg: both(x.reg, y.reg, 'reg') };
    }
  }
}

/** Builds a table from module tables; exported for tests of the merge. */
export function buildTable(parts: readonly Readonly<Record<number, Entry>>[]): OpTable {
  const table = new Map<number, Entry>();
  for (const part of parts) {
    for (const [key, entry] of Object.entries(part)) {
      const k = Number(key);
      const old = table.get(k);
      table.set(k, old === undefined ? entry : merge(old, entry, `opcode 0x${k.toString(16)}`));
    }
  }
  return table;
}

export const OPCODE_TABLE: OpTable = buildTable([
  ALU_TABLE, MOVE_TABLE, CONTROL_TABLE, STACK_TABLE, SHIFT_TABLE, MULDIV_TABLE,
  BITS_TABLE, STRING_TABLE, SSE_TABLE, SYSTEM_TABLE, CONTROL_REGISTER_TABLE, IO_TABLE, SEGMENT_TABLE,
  FPU_TABLE, FASTCALL_TABLE, DEBUG_REGISTER_TABLE, VMX_TABLE, RANDOM_TABLE,
]);
