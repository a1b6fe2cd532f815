/**
 * The GDB stub's target (gdb/target.ts) over the debugger engine: gdb sees the
 * guest of an hvsim VM — its registers (the general-purpose ones, RIP,
 * RFLAGS, the segment selectors, FS and GS base, CR0/2/3/4/8, EFER; SSE
 * state; the x87 registers read as 0), its memory at guest-linear addresses
 * through its own paging and the EPT, breakpoints and watchpoints through
 * the engine, single steps, and continues in slices. `monitor` runs the
 * debugger's own commands (repl.ts) on the same engine: `monitor vmcs
 * GUEST_RIP`, `monitor exit`, `monitor break-exit IO_INSTRUCTION port=0x3f8`,
 * `monitor back-exit`, `monitor help`.
 */
import { Field } from '../../vmcs/fields.js';
import type { Cpu } from '../cpu/cpu.js';
import type { VmStop } from '../hv/vm.js';
import type { BreakpointKind, GdbTarget, RegisterFile, StopEvent } from './gdb/target.js';
import { GDB_REGISTER, X86_64_REGISTERS } from './gdb/target-description.js';
import type { DebugEngine, EngineStop } from './engine.js';
import { GuestState } from './guest-state.js';
import { GdbPoints, pointEvent } from './gdb-points.js';
import { DebugSession } from './repl.js';

/** gdb's general registers in its order, as x86 encoding numbers. */
export const GDB_GPR_ORDER = [0, 3, 1, 2, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15];
/** Segment selectors in gdb's order (cs ss ds es fs gs). */
const GDB_SEGMENTS = [Field.GUEST_CS_SELECTOR, Field.GUEST_SS_SELECTOR, Field.GUEST_DS_SELECTOR,
  Field.GUEST_ES_SELECTOR, Field.GUEST_FS_SELECTOR, Field.GUEST_GS_SELECTOR];

/** What ended a gdb session over a VmTarget. */
export type SessionEnd = 'kill' | 'detach';

/** A GdbTarget over a DebugEngine (see the file comment). */
export class VmTarget implements GdbTarget {
  private readonly guest: GuestState;
  private readonly session: DebugSession;
  private readonly points: GdbPoints;

  /** `onEnd` is called when gdb kills or detaches. */
  constructor(readonly engine: DebugEngine, private readonly onEnd: (how: SessionEnd) => void = () => {}) {
    this.guest = new GuestState(engine.vm);
    this.session = new DebugSession(engine, { monitor: true });
    this.points = new GdbPoints(engine);
  }

  readRegisters(): RegisterFile {
    const g = this.guest, cpu = this.engine.vm.cpu, values = X86_64_REGISTERS.map(() => 0n);
    GDB_GPR_ORDER.forEach((n, k) => { values[k] = g.reg(n); });
    values[GDB_REGISTER.rip] = g.rip;
    values[GDB_REGISTER.eflags] = BigInt(g.rflags);
    GDB_SEGMENTS.forEach((f, k) => { values[GDB_REGISTER.cs + k] = g.field(f); });
    processorOwnRegisters(cpu, values);
    values[GDB_REGISTER.fs_base] = g.field(Field.GUEST_FS_BASE);
    values[GDB_REGISTER.gs_base] = g.field(Field.GUEST_GS_BASE);
    values[GDB_REGISTER.cr0] = g.guestView(0);
    values[GDB_REGISTER.cr2] = g.cr2;
    values[GDB_REGISTER.cr3] = g.field(Field.GUEST_CR3);
    values[GDB_REGISTER.cr4] = g.guestView(4);
    values[GDB_REGISTER.cr8] = BigInt(g.cr8);
    values[GDB_REGISTER.efer] = g.field(Field.GUEST_IA32_EFER);
    return values;
  }

  /** The general-purpose registers, RIP and RFLAGS can be written; the rest cannot. */
  writeRegister(index: number, value: bigint): boolean {
    let which: number | 'rip' | 'rflags';
    if (index < 16) which = GDB_GPR_ORDER[index]!;
    else if (index === GDB_REGISTER.rip) which = 'rip';
    else if (index === GDB_REGISTER.eflags) which = 'rflags';
    else return false;
    const current = which === 'rflags' ? BigInt(this.guest.rflags) : which === 'rip' ? this.guest.rip : this.guest.reg(which);
    // gdb writes back registers it did not change: only a real change rewrites the run's future.
    if (current !== value) this.engine.mutate(() => this.guest.setRegister(which, value));
    return true;
  }

  readMemory(address: bigint, length: number): Uint8Array | null {
    const r = this.guest.read('linear', address, length);
    return r.bytes.length === 0 ? null : r.bytes;
  }

  writeMemory(address: bigint, bytes: Uint8Array): boolean {
    if (this.guest.read('linear', address, bytes.length).bytes.length !== bytes.length) return false;
    let ok = false;
    this.engine.mutate(() => { ok = this.guest.writeLinear(address, bytes); });
    return ok;
  }

  step(): StopEvent {
    return this.event(this.engine.step(1, { stepOverHere: true })) ?? { kind: 'step' };
  }

  resume(instructionLimit: number): StopEvent | null {
    const limit = this.engine.vm.cpu.insnCount + instructionLimit;
    return this.event(this.engine.continue({ limit, stepOverHere: false }));
  }

  setBreakpoint(kind: BreakpointKind, address: bigint, length: number): boolean {
    return this.points.set(kind, address, length);
  }

  removeBreakpoint(kind: BreakpointKind, address: bigint, length: number): boolean {
    return this.points.remove(kind, address, length);
  }

  /** A debugger command (repl.ts); `break-exit REASON ...` is `break exit REASON ...`. */
  monitor(command: string): string {
    const line = command.replace(/^break-exit\b/i, 'break exit');
    const lines = this.session.execute(line).lines;
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }

  kill(): void {
    this.onEnd('kill');
  }

  detach(): void {
    this.onEnd('detach');
  }

  /** The stop gdb is told of, or null when the run only used up its slice (or its one step). */
  private event(stop: EngineStop): StopEvent | null {
    switch (stop.reason) {
      case 'step': case 'limit': case 'arrived': case 'start': return null;
      case 'exit': return vmExitEvent(stop);
      case 'ended': return endedEvent(stop.ended!);
      case 'breakpoint': break;
    }
    const bp = stop.breakpoint!;
    const hit = pointEvent(bp, stop.access, this.points);
    if (hit !== null) return hit;
    if (stop.exit !== undefined) return vmExitEvent(stop);
    if (stop.ended !== undefined) return endedEvent(stop.ended);
    return { kind: 'vm-exit', reason: `stopped by hvsim breakpoint ${bp.id}` };
  }
}

/**
 * The registers the processor holds for root-mode and guest code alike (no
 * VMCS field has them): XMM0-15, MXCSR, IA32_KERNEL_GS_BASE.
 */
export function processorOwnRegisters(cpu: Cpu, values: bigint[]): void {
  for (let k = 0; k < 16; k++) {
    let v = 0n;
    for (let lane = 3; lane >= 0; lane--) v = (v << 32n) | BigInt(cpu.xmm[4 * k + lane]! >>> 0);
    values[GDB_REGISTER.xmm0 + k] = v;
  }
  values[GDB_REGISTER.mxcsr] = BigInt(cpu.mxcsr >>> 0);
  values[GDB_REGISTER.k_gs_base] = (BigInt(cpu.msrs.kernelGsBaseHi >>> 0) << 32n) | BigInt(cpu.msrs.kernelGsBaseLo >>> 0);
}

function vmExitEvent(stop: EngineStop): StopEvent {
  const e = stop.exit!;
  return { kind: 'vm-exit', reason: `VM exit: ${e.name} (exit reason ${e.reason}) at 0x${e.rip.toString(16)}` };
}

function endedEvent(stop: VmStop): StopEvent {
  switch (stop.kind) {
    case 'exit': return { kind: 'exited', status: stop.status & 0xff };
    case 'halt': return { kind: 'exited', status: 0 };
    case 'shutdown': return { kind: 'shutdown', reason: 'triple fault' };
    case 'budget': return { kind: 'interrupted' };
    case 'entry-failed': return { kind: 'shutdown', reason: `VM entry failed: ${stop.failure.check} (SDM ${stop.failure.section}): ${stop.failure.detail}` };
    case 'unhandled': return { kind: 'shutdown', reason: `VM exit ${stop.name} has no handler: ${stop.detail}` };
  }
}
