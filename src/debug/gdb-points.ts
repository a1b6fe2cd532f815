/**
 * gdb's breakpoints and watchpoints (`Z`/`z` packets) as breakpoints of a
 * debugger engine, for both gdb targets (vm-target.ts over hvsim's VM,
 * bare-target.ts over a bare machine): one engine breakpoint per gdb point,
 * found again by kind, address and length when gdb removes it.
 */
import type { Breakpoint, BreakpointSpec } from './breakpoints.js';
import type { BreakpointKind, StopEvent } from './gdb/target.js';
import type { WatchHit } from './watcher.js';

/** What the points need of an engine. */
export interface PointEngine {
  addBreakpoint(spec: BreakpointSpec): Breakpoint;
  deleteBreakpoint(id: number): boolean;
}

/** gdb's points and the engine's numbers for them. */
export class GdbPoints {
  /** "kind:address:length" -> the engine's breakpoint number. */
  private readonly points = new Map<string, number>();

  constructor(private readonly engine: PointEngine) {}

  /** Sets a gdb point: an address breakpoint (`sw`, `hw`, length 1) or a linear watchpoint of 1 to 4096 bytes; false when gdb's arguments cannot be. */
  set(kind: BreakpointKind, address: bigint, length: number): boolean {
    const key = `${kind}:${address}:${length}`;
    if (this.points.has(key)) return true;
    if (kind === 'sw' || kind === 'hw') {
      if (length !== 1) return false;
      this.points.set(key, this.engine.addBreakpoint({ kind: 'address', address }).id);
      return true;
    }
    if (length < 1 || length > 4096) return false;
    this.points.set(key, this.engine.addBreakpoint({ kind: 'watch', space: 'linear', access: kind, address, length }).id);
    return true;
  }

  /** Removes a gdb point; false when there is no such one. */
  remove(kind: BreakpointKind, address: bigint, length: number): boolean {
    const key = `${kind}:${address}:${length}`, id = this.points.get(key);
    if (id === undefined) return false;
    this.points.delete(key);
    return this.engine.deleteBreakpoint(id);
  }

  /** How gdb set the address breakpoint with this engine number: `sw` or `hw` (hw for one set by a monitor command). */
  typeOf(id: number): 'sw' | 'hw' {
    const key = [...this.points].find(([, n]) => n === id)?.[0];
    return key?.startsWith('sw:') === true ? 'sw' : 'hw';
  }
}

/** The stop of gdb's own breakpoint or watchpoint (set through `points`), or null for the debugger's other kinds. */
export function pointEvent(bp: Breakpoint, access: WatchHit | undefined, points: GdbPoints): StopEvent | null {
  const spec = bp.spec;
  if (spec.kind === 'address') return { kind: 'breakpoint', type: points.typeOf(bp.id), address: spec.address };
  if (spec.kind === 'watch' && spec.access !== 'execute' && access !== undefined) {
    const a = access.linear > spec.address ? access.linear : spec.address;
    return { kind: 'watchpoint', type: spec.access, address: a };
  }
  return null;
}
