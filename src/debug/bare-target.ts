/**
 * The GDB stub's target (gdb/target.ts) over the bare engine (`hvsim debug
 * IMAGE --bare --gdb PORT`): gdb sees the processor as it stands — the
 * image's own hypervisor in VMX root operation, or its guest in non-root
 * operation — its registers (general-purpose, RIP, RFLAGS, segment selectors,
 * FS and GS base, CR0/2/3/4/8, EFER, SSE state), memory at linear addresses
 * through the paging the processor uses now, breakpoints and watchpoints
 * through the engine, single steps (a VM exit is one, as in the REPL) and
 * continues in slices. Writes from gdb go through the engine's `mutate`, so
 * that time travel keeps them. `monitor` runs the bare debugger's commands
 * (bare-session.ts): `monitor vmcs`, `monitor exit`, `monitor break-exit
 * CPUID`, `monitor finish-handler`, `monitor back-exit`, `monitor help`.
 */
import type { BareEnd, BareEngine, BareStop } from './bare-engine.js';
import { BareSession } from './bare-session.js';
import { GdbPoints, pointEvent } from './gdb-points.js';
import type { BreakpointKind, GdbTarget, RegisterFile, StopEvent } from './gdb/target.js';
import { GDB_REGISTER, X86_64_REGISTERS } from './gdb/target-description.js';
import { CS, DS, ES, FS, GS, SS, VECTOR_NAMES } from '../cpu/regs.js';
import { processorSystemRegisters } from './system-registers.js';
import { GDB_GPR_ORDER, processorOwnRegisters, type SessionEnd } from './vm-target.js';

/** Segment registers in gdb's order (cs ss ds es fs gs). */
const GDB_SEGMENTS = [CS, SS, DS, ES, FS, GS];

/** A GdbTarget over a BareEngine (see the file comment). */
export class BareTarget implements GdbTarget {
  private readonly session: BareSession;
  private readonly points: GdbPoints;

  /** `onEnd` is called when gdb kills or detaches. */
  constructor(readonly engine: BareEngine, private readonly onEnd: (how: SessionEnd) => void = () => {}) {
    this.session = new BareSession(engine, { monitor: true });
    this.points = new GdbPoints(engine);
  }

  readRegisters(): RegisterFile {
    const cpu = this.engine.cpu, values = X86_64_REGISTERS.map(() => 0n);
    GDB_GPR_ORDER.forEach((n, k) => { values[k] = cpu.reg64(n); });
    values[GDB_REGISTER.rip] = cpu.rip;
    values[GDB_REGISTER.eflags] = BigInt(cpu.rflags >>> 0);
    const sys = processorSystemRegisters(cpu, this.engine.vmx.current);
    GDB_SEGMENTS.forEach((n, k) => { values[GDB_REGISTER.cs + k] = sys.segments[n]!.selector; });
    values[GDB_REGISTER.fs_base] = sys.segments[FS]!.base;
    values[GDB_REGISTER.gs_base] = sys.segments[GS]!.base;
    processorOwnRegisters(cpu, values);
    values[GDB_REGISTER.cr0] = sys.cr0.read;
    values[GDB_REGISTER.cr2] = sys.cr2;
    values[GDB_REGISTER.cr3] = sys.cr3;
    values[GDB_REGISTER.cr4] = sys.cr4.read;
    values[GDB_REGISTER.cr8] = BigInt(sys.cr8);
    values[GDB_REGISTER.efer] = sys.efer;
    return values;
  }

  /** The general-purpose registers, RIP and RFLAGS can be written; the rest cannot. */
  writeRegister(index: number, value: bigint): boolean {
    const cpu = this.engine.cpu;
    let current: bigint, write: () => void;
    if (index < 16) {
      const n = GDB_GPR_ORDER[index]!;
      current = cpu.reg64(n); write = () => cpu.setReg64(n, value);
    } else if (index === GDB_REGISTER.rip) {
      current = cpu.rip; write = () => { cpu.rip = value; };
    } else if (index === GDB_REGISTER.eflags) {
      current = BigInt(cpu.rflags >>> 0); write = () => { cpu.rflags = Number(value & 0xffffffffn); };
    } else {
      return false;
    }
    // gdb writes back registers it did not change: only a real change rewrites the run's future.
    if (current !== value) this.engine.mutate(write);
    return true;
  }

  readMemory(address: bigint, length: number): Uint8Array | null {
    const r = this.engine.read('linear', address, length);
    return r.bytes.length === 0 ? null : r.bytes;
  }

  writeMemory(address: bigint, bytes: Uint8Array): boolean {
    if (this.engine.read('linear', address, bytes.length).bytes.length !== bytes.length) return false;
    let ok = false;
    this.engine.mutate(() => { ok = this.engine.writeLinear(address, bytes); });
    return ok;
  }

  step(): StopEvent {
    return this.event(this.engine.step(1, Number.MAX_SAFE_INTEGER, true)) ?? { kind: 'step' };
  }

  resume(instructionLimit: number): StopEvent | null {
    return this.event(this.engine.continue(this.engine.insns + instructionLimit, false));
  }

  setBreakpoint(kind: BreakpointKind, address: bigint, length: number): boolean {
    return this.points.set(kind, address, length);
  }

  removeBreakpoint(kind: BreakpointKind, address: bigint, length: number): boolean {
    return this.points.remove(kind, address, length);
  }

  /** A command of the bare debugger (bare-session.ts); `break-exit REASON ...` is `break exit REASON ...`. */
  monitor(command: string): string {
    const lines = this.session.execute(command.replace(/^break-exit\b/i, 'break exit')).lines;
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }

  kill(): void {
    this.onEnd('kill');
  }

  detach(): void {
    this.onEnd('detach');
  }

  /** The stop gdb is told of, or null when the run only used up its slice (or its one step). */
  private event(stop: BareStop): StopEvent | null {
    switch (stop.reason) {
      case 'step': case 'limit': case 'arrived': case 'start': case 'entered': return null;
      case 'exit': return exitEvent(stop);
      case 'ended': return bareEndEvent(stop.ended!);
      case 'entry-failed': return { kind: 'vm-exit', reason: this.session.stopLines(stop)[0]! };
      case 'breakpoint': break;
    }
    const bp = stop.breakpoint!;
    const hit = pointEvent(bp, stop.access, this.points);
    if (hit !== null) return hit;
    if (stop.exit !== undefined) return exitEvent(stop);
    if (stop.ended !== undefined) return bareEndEvent(stop.ended);
    return { kind: 'vm-exit', reason: `stopped by hvsim breakpoint ${bp.id}` };
  }
}

function exitEvent(stop: BareStop): StopEvent {
  const e = stop.exit!;
  return { kind: 'vm-exit', reason: `VM exit: ${e.name} (exit reason ${e.reason}) at 0x${e.rip.toString(16)}, now at HOST_RIP` };
}

/** How the end of a bare run looks to gdb. */
export function bareEndEvent(end: BareEnd): StopEvent {
  switch (end.kind) {
    case 'exit': return { kind: 'exited', status: end.status & 0xff };
    case 'halt': return { kind: 'exited', status: 0 };
    case 'shutdown': return { kind: 'shutdown', reason: 'triple fault' };
    case 'exception': return { kind: 'shutdown', reason: `unhandled exception ${VECTOR_NAMES[end.vector] ?? `vector ${end.vector}`}` };
  }
}
