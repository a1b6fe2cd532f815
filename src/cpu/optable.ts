/**
 * The opcode table: one declarative source for the decoder, the interpreter,
 * the block compiler and the tests. Each ops module contributes the entries it
 * implements, keyed by map * 256 + opcode byte (insn.ts, OpMap); groups and
 * prefix selections that several modules share are merged slot by slot, and a
 * slot claimed twice is an error at load time.
 */
import type { ByMod, ByMode, Entry, OpTable } from './insn.js';
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

type Slots = readonly (Entry | undefined)[];

function mergeSlots(a: Slots, b: Slots, where: string): (Entry | undefined)[] {
  const out: (Entry | undefined)[] = [];
  for (let k = 0; k < Math.max(a.length, b.length); k++) {
    out[k] = a[k] === undefined ? b[k] : b[k] === undefined ? a[k] : merge(a[k]!, b[k]!, `${where}[${k}]`);
  }
  return out;
}

/** Combines two entries for one opcode; throws when both define the same slot. */
export function merge(a: Entry, b: Entry, where: string): Entry {
  if ('group' in a && 'group' in b) return { group: mergeSlots(a.group, b.group, where) };
  if ('prefixed' in a && 'prefixed' in b) {
    const s = mergeSlots(a.prefixed, b.prefixed, where);
    return { prefixed: [s[0], s[1], s[2], s[3]] };
  }
  if ('rm' in a && 'rm' in b) return { rm: mergeSlots(a.rm, b.rm, where) };
  const modeA = 'long64' in a || 'legacy' in a, modeB = 'long64' in b || 'legacy' in b;
  if (modeA && modeB) {
    const [x, y] = [a as ByMode, b as ByMode];
    if ((x.long64 && y.long64) || (x.legacy && y.legacy)) throw new Error(`opcode table: ${where} is defined twice`);
    return { long64: x.long64 ?? y.long64, legacy: x.legacy ?? y.legacy };
  }
  if (!modeA && !modeB && !('exec' in a) && !('exec' in b) && !('group' in a) && !('group' in b) &&
      !('prefixed' in a) && !('prefixed' in b) && !('rm' in a) && !('rm' in b)) {
    if ((a as ByMod).mem !== undefined && (b as ByMod).mem !== undefined ||
        (a as ByMod).reg !== undefined && (b as ByMod).reg !== undefined) {
      throw new Error(`opcode table: ${where} is defined twice`);
    }
    const [x, y] = [a as ByMod, b as ByMod];
    return { mem: x.mem ?? y.mem, reg: x.reg ?? y.reg };
  }
  throw new Error(`opcode table: ${where} is defined twice`);
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
]);
