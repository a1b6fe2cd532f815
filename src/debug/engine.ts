/**
 * The debugger engine: a VM (createVm + load, as `hvsim run` builds it) that
 * can be stepped instruction by instruction and exit by exit, stopped on
 * breakpoints, and taken back to earlier exits and instructions.
 *
 * Where the guest can stand (a `Position`):
 * - at a VM exit, before its handler runs (`nextExit`, an exit breakpoint);
 * - in the guest, at an instruction boundary, with a number of exits handled
 *   and instructions retired (`step`, an address breakpoint, a watchpoint, the
 *   start). Under the hypervisor an instruction that exits counts as stepped
 *   once its handler has completed it (Guest.retire).
 *
 * Breakpoints (breakpoints.ts). Address breakpoints and execute watchpoints
 * go through the processor's execution hook (Cpu.executionHook): while one is
 * set, the run loop asks the engine at each block boundary how many
 * instructions of the coming block may run before one it must stop in front
 * of, so the guest runs block by block, not instruction by instruction; with
 * none set the hook is disarmed (one bit of Cpu.breakOnExecute that the loop
 * already tests) and the run is as fast as `hvsim run`. Data watchpoints go
 * through the MMU's data watch (Cpu.externalWatch), which puts data accesses
 * on the slow path while set. Exit breakpoints are looked at when an exit
 * happens, instruction-count breakpoints by the budget of each run.
 *
 * Time travel. Runs are deterministic, so the engine keeps snapshots
 * (snapshot.ts: every object of the VM's state and memory page by page,
 * sharing what did not change) and goes back by restoring the nearest earlier
 * one and running forward to the point asked for. A snapshot is taken at the
 * start and then at a stop (an exit, or a slice boundary in the guest) once
 * `snapshotInterval` instruction-equivalents have passed since the previous
 * one (an exit counts as EXIT_COST instructions: what replaying it costs);
 * when there are more than `maxSnapshots`, every second one goes and the
 * interval doubles. Going back therefore replays at most one interval.
 * Each exit's record and VMCS (an immer value sharing structure with the
 * previous exit's) are kept for the last `historyLength` exits.
 *
 * Changes a user makes (gdb's register and memory writes, through `mutate`;
 * a handler replaced or wrapped in `vm.handlers`, noticed at the next
 * command) change the run from where they are made: the recorded future is
 * dropped, a snapshot of the changed state is taken there, and going back to
 * before the change undoes it (the handler table is part of the state). To try
 * a fixed handler on an exit: go back to it, then replace the handler.
 *
 * The guest's serial output is passed on once: a byte replayed while going
 * forward again over a stretch already run is not printed twice.
 */
import type { ExitHandler } from '../hv/handlers.js';
import type { ExitRecord } from '../hv/record.js';
import { createVm, type Vm, type VmStop } from '../hv/vm.js';
import type { VmConfig } from '../hv/config.js';
import type { LoadOptions } from '../platform/loaders/index.js';
import { EXTERNAL_BREAK, type Cpu, type ExecutionHook } from '../cpu/cpu.js';
import type { DataWatch } from '../cpu/mmu.js';
import { installDataWatch } from '../cpu/ops/debug-registers.js';
import { CS } from '../cpu/regs.js';
import type { VmcsField } from '../../vmcs/fields.js';
import { conditionsHold, instructionsBefore, lastRecords, type Breakpoint, type BreakpointSpec } from './breakpoints.js';
import { captureState, restoreState, snapshotBytes, vmCaptureRules, type CaptureRules, type StateSnapshot } from './snapshot.js';
import { existingFields, vmcsState, type VmcsState } from './vmcs-view.js';

/** Where the guest stands on its run (see the file comment). */
export interface Position {
  /** VM exits so far (at an exit: its sequence number). */
  readonly exits: number;
  /** At exit `exits`, before its handler; else in the guest with `exits` exits handled. */
  readonly atExit: boolean;
  /** Guest instructions retired. */
  readonly insns: number;
}

/** Orders positions along a run: negative when `a` comes before `b`. */
export function comparePositions(a: Position, b: Position): number {
  return a.exits - b.exits || (a.atExit ? 0 : 1) - (b.atExit ? 0 : 1) || a.insns - b.insns;
}

/** A data or execute watchpoint that was hit. */
export interface WatchHit {
  /** Linear address of the access (the instruction, for an execute watch). */
  readonly linear: bigint;
  /** Physical address of its first byte. */
  readonly physical: number;
  readonly size: number;
  readonly write: boolean;
}

/** Why a command of the engine came back. */
export interface EngineStop {
  /**
   * - step: the steps asked for are done;
   * - exit: next-exit reached the exit (before its handler);
   * - breakpoint: a breakpoint or watchpoint (`breakpoint`, with `exit` or `access`);
   * - limit: the instruction limit given to `continue` ran out;
   * - ended: the guest stopped for good (`ended`), now or before;
   * - arrived: time travel reached the point asked for;
   * - start: time travel found nothing earlier (the guest stays where it was).
   */
  readonly reason: 'step' | 'exit' | 'breakpoint' | 'limit' | 'ended' | 'arrived' | 'start';
  readonly breakpoint?: Breakpoint;
  readonly exit?: ExitRecord;
  readonly access?: WatchHit;
  readonly ended?: VmStop;
  /** Time travel: writes made after the point arrived at, undone by going there. */
  readonly undoneWrites?: number;
}

/** One exit as the engine keeps it: its record, the VMCS then, and the VMCS its handler left for the next entry. */
export interface ExitHistory {
  readonly record: ExitRecord;
  readonly atExit: VmcsState;
  atEntry: VmcsState | null;
}

/** Settings of the engine. */
export interface EngineOptions {
  /** Bytes the guest writes to COM1 (each once, replays included). */
  readonly serialOut?: (byte: number) => void;
  /** Instruction-equivalents between snapshots (default SNAPSHOT_INTERVAL). */
  readonly snapshotInterval?: number;
  /** Snapshots kept before thinning (default MAX_SNAPSHOTS). */
  readonly maxSnapshots?: number;
  /** Exits whose record and VMCS are kept (default HISTORY_LENGTH). */
  readonly historyLength?: number;
}

/** Default instruction-equivalents between two snapshots. */
export const SNAPSHOT_INTERVAL = 2_000_000;
/** What replaying one exit costs, in instructions (a handler and a VM entry). */
export const EXIT_COST = 300;
/** Snapshots kept before every second one goes. */
export const MAX_SNAPSHOTS = 512;
/** Exits whose record and VMCS are kept. */
export const HISTORY_LENGTH = 4096;
/** Instructions per run of the guest between two looks at the engine's own state. */
const SLICE = 1 << 20;

/** The time-travel state that is the engine's, not the VM's, saved with each snapshot. */
interface EngineSaved {
  readonly pending: ExitRecord | null;
  readonly ended: VmStop | null;
  readonly serialCount: number;
  readonly entryVmcs: VmcsState;
  readonly recent: readonly ExitHistory[];
}

interface Snap {
  readonly pos: Position;
  readonly state: StateSnapshot;
  readonly saved: EngineSaved;
  /** Taken right after a write the user made: never thinned out. */
  readonly mutation: boolean;
}

/** The run loop's goal (one per command). */
interface Goal {
  readonly stepsTo?: number;
  exitsLeft?: number;
  readonly limit?: number;
  readonly target?: Position;
  readonly breakpoints: boolean;
  readonly startInsns: number;
}

/** The replay of a recorded stretch did not repeat it: a broken invariant of the model's determinism. */
export class ReplayDivergence extends Error {}

interface ExecRange { readonly bp: Breakpoint; readonly hi: number; readonly loStart: number; readonly loEnd: number }
interface PhysRange { readonly bp: Breakpoint; readonly start: number; readonly end: number }
interface DataRange extends ExecRange { readonly read: boolean; readonly write: boolean }
interface DataPhysRange extends PhysRange { readonly read: boolean; readonly write: boolean }

/**
 * The engine's hooks into the processor: the execution hook (address
 * breakpoints, execute watchpoints) and the data watch (read/write watchpoints).
 * They note the first hit and make the VM stop at the next instruction boundary.
 */
class Watcher implements ExecutionHook, DataWatch {
  execLinear: ExecRange[] = [];
  execPhysical: PhysRange[] = [];
  dataLinear: DataRange[] = [];
  dataPhysical: DataPhysRange[] = [];
  /** An address breakpoint at this exact spot is stepped over (the command starts on it). */
  skip: { insns: number; lo: number; hi: number } | null = null;
  hit: { bp: Breakpoint; access: WatchHit | null } | null = null;

  constructor(private readonly vm: Vm) {}

  /** Rebuilds the ranges from the breakpoints. */
  set(bps: readonly Breakpoint[]): void {
    this.execLinear = []; this.execPhysical = []; this.dataLinear = []; this.dataPhysical = [];
    for (const bp of bps) {
      const s = bp.spec;
      if (s.kind === 'address') this.execLinear.push(...linearRanges(bp, s.address, 1));
      if (s.kind !== 'watch') continue;
      const read = s.access === 'read' || s.access === 'access', write = s.access === 'write' || s.access === 'access';
      if (s.space === 'linear') {
        if (s.access === 'execute') this.execLinear.push(...linearRanges(bp, s.address, s.length));
        else this.dataLinear.push(...linearRanges(bp, s.address, s.length).map((r) => ({ ...r, read, write })));
      } else {
        const r = { bp, start: Number(s.address), end: Number(s.address) + s.length };
        if (s.access === 'execute') this.execPhysical.push(r);
        else this.dataPhysical.push({ ...r, read, write });
      }
    }
  }

  get wantsExecution(): boolean { return this.execLinear.length > 0 || this.execPhysical.length > 0; }
  get wantsData(): boolean { return this.dataLinear.length > 0 || this.dataPhysical.length > 0; }

  private execAt(lo: number, hi: number, phys: number): Breakpoint | null {
    for (const r of this.execLinear) if (r.hi === hi && lo >= r.loStart && lo < r.loEnd) return r.bp;
    for (const r of this.execPhysical) if (phys >= r.start && phys < r.end) return r.bp;
    return null;
  }

  private stopHere(bp: Breakpoint, lo: number, hi: number, phys: number): number {
    this.hit = { bp, access: { linear: (BigInt(hi >>> 0) << 32n) | BigInt(lo), physical: phys, size: 0, write: false } };
    this.vm.breakRequested = true;
    return 0;
  }

  /** An execution breakpoint or watchpoint is set at linear (lo, hi) or physical `phys`. */
  private readonly isExecPoint = (lo: number, hi: number, phys: number): boolean => this.execAt(lo, hi, phys) !== null;

  allow(cpu: Cpu, limit: number): number {
    const mode = cpu.codeSize, ip = cpu.ripLo, base = mode === 8 ? 0 : cpu.segBase[2 * CS]!;
    const lo = mode === 8 ? ip >>> 0 : (base + ip) >>> 0, hi = mode === 8 ? cpu.ripHi : 0;
    const s = this.skip, skipHere = s !== null && s.insns === cpu.insnCount && s.lo === lo && s.hi === hi;
    if (!skipHere && this.execPhysical.length === 0) {
      const bp = this.execAt(lo, hi, -1);
      if (bp !== null) return this.stopHere(bp, lo, hi, -1);
    }
    // The block about to run: how many of its instructions come before one to stop at.
    const block = cpu.blocks.peek();
    if (!skipHere) {
      const bp = this.execAt(lo, hi, block.phys);
      if (bp !== null) return this.stopHere(bp, lo, hi, block.phys);
    }
    return instructionsBefore(cpu, block, limit, this.isExecPoint);
  }

  access(lo: number, hi: number, size: number, write: boolean, pa: number): void {
    if (this.hit !== null) return;
    const a = lo >>> 0;
    let bp: Breakpoint | null = null;
    for (const r of this.dataLinear) {
      if ((write ? r.write : r.read) && r.hi === hi && a < r.loEnd && r.loStart < a + size) { bp = r.bp; break; }
    }
    if (bp === null) {
      for (const r of this.dataPhysical) {
        if ((write ? r.write : r.read) && pa < r.end && r.start < pa + size) { bp = r.bp; break; }
      }
    }
    if (bp === null) return;
    this.hit = { bp, access: { linear: (BigInt(hi >>> 0) << 32n) | BigInt(a), physical: pa, size, write } };
    this.vm.breakRequested = true;
    // A data breakpoint is a trap: the instruction completes, then the run stops.
    this.vm.cpu.stop({ kind: 'stop' });
  }
}

/** [address, address + length) as ranges that do not cross a 4-GiB boundary (bits 63:32 fixed in each). */
function linearRanges(bp: Breakpoint, address: bigint, length: number): ExecRange[] {
  const out: ExecRange[] = [];
  let at = BigInt.asUintN(64, address), left = BigInt(length);
  while (left > 0n) {
    const lo = Number(at & 0xffffffffn), n = Number(left < BigInt(2 ** 32 - lo) ? left : BigInt(2 ** 32 - lo));
    out.push({ bp, hi: Number(at >> 32n) | 0, loStart: lo, loEnd: lo + n });
    at = BigInt.asUintN(64, at + BigInt(n)); left -= BigInt(n);
  }
  return out;
}

/** How far a command of the engine may run, and where it starts. */
export interface RunOptions {
  /** Stop (reason 'limit') once the guest has retired this many instructions in all. */
  readonly limit?: number;
  /**
   * An address breakpoint at the instruction the command starts on does not
   * stop it before the guest has moved (default: a REPL steps over it). gdb
   * steps over its own breakpoints and wants false.
   */
  readonly stepOverHere?: boolean;
}

/** How a debugging session starts: the VM's configuration and the image with how to load it. */
export interface EngineSetup extends EngineOptions {
  readonly config: VmConfig;
  readonly image: Uint8Array;
  readonly load?: LoadOptions;
}

/**
 * The debugger engine over one VM (see the file comment): run forward
 * (`step`, `nextExit`, `continue`), stop on breakpoints, look back
 * (`backExit`, `reverseStep`, `goTo`). Make one with `DebugEngine.create`.
 */
export class DebugEngine {
  /** The VM under the debugger. */
  readonly vm: Vm;
  /** The VMCS fields this processor has, in appendix-B order. */
  readonly fields: readonly VmcsField[];
  /** Where the run started (the image loaded, before the first VM entry). */
  readonly start: Position;
  private readonly rules: CaptureRules;
  private readonly watcher: Watcher;
  private readonly serialOut: (byte: number) => void;
  private readonly historyLength: number;
  private readonly maxSnapshots: number;
  private interval: number;
  private readonly bps: Breakpoint[] = [];
  private nextId = 1;
  private pendingExit: ExitRecord | null = null;
  private endedWith: VmStop | null = null;
  private readonly history = new Map<number, ExitHistory>();
  /** Instructions retired at each exit (index seq - 1), for every exit recorded. */
  private readonly exitInsns: number[] = [];
  private entryVmcs: VmcsState;
  private lastVmcs: VmcsState;
  private snapshots: Snap[] = [];
  private lastSnapshotAt: Position;
  private readonly mutations: Position[] = [];
  private serialCount = 0;
  private serialShown = 0;
  private armedExecution = false;
  private armedData = false;
  /** The handler table as the run so far used it (a change to it is a change to the run, like a write). */
  private handlerTable: readonly (readonly [number, ExitHandler])[];

  /** Creates the VM, loads the image and takes the first snapshot. Throws VmConfigError or ImageError as createVm and load do. */
  static create(setup: EngineSetup): DebugEngine {
    let engine: DebugEngine | null = null;
    const vm = createVm(setup.config, { serialOut: (b) => engine?.serial(b) });
    vm.load(setup.image, setup.load ?? {});
    engine = new DebugEngine(vm, setup);
    return engine;
  }

  private constructor(vm: Vm, options: EngineOptions) {
    this.vm = vm;
    this.fields = existingFields(vm.vmx.caps);
    this.watcher = new Watcher(vm);
    this.rules = vmCaptureRules(vm, [this.watcher]);
    this.serialOut = options.serialOut ?? ((): void => {});
    this.historyLength = options.historyLength ?? HISTORY_LENGTH;
    this.maxSnapshots = Math.max(2, options.maxSnapshots ?? MAX_SNAPSHOTS);
    this.interval = options.snapshotInterval ?? SNAPSHOT_INTERVAL;
    this.entryVmcs = this.lastVmcs = vmcsState(vm.vmcs, this.fields, null);
    this.start = this.position;
    this.lastSnapshotAt = this.start;
    this.handlerTable = [...vm.handlers];
    this.takeSnapshot(false);
  }

  private serial(byte: number): void {
    this.serialCount++;
    if (this.serialCount > this.serialShown) {
      this.serialShown = this.serialCount;
      this.serialOut(byte);
    }
  }

  // ---- where the guest is ----------------------------------------------------------

  /** The position now. */
  get position(): Position {
    const e = this.pendingExit, insns = this.vm.cpu.insnCount;
    return e !== null ? { exits: e.seq, atExit: true, insns } : { exits: this.vm.exits, atExit: false, insns };
  }

  /** The exit the guest stands at, before its handler; null when it stands in the guest. */
  get atExit(): ExitRecord | null { return this.pendingExit; }

  /** Why the guest stopped for good, or null while it can run. */
  get ended(): VmStop | null { return this.endedWith; }

  /** The exit with this sequence number, if it is among those kept. */
  exitAt(seq: number): ExitHistory | undefined { return this.history.get(seq); }

  /** The most recent exit at or before the position (the one stood at, or the last one handled). */
  get lastExit(): ExitRecord | null {
    return this.pendingExit ?? this.history.get(this.vm.exits)?.record ?? null;
  }

  /** The VMCS as it was at the last VM entry (before the first entry: as built for it). */
  get vmcsAtEntry(): VmcsState { return this.entryVmcs; }

  /** The VMCS's field values now. */
  vmcsNow(): VmcsState {
    return vmcsState(this.vm.vmcs, this.fields, this.lastVmcs);
  }

  /** The last `n` exits up to the position that are still kept, oldest first. */
  trace(n: number): ExitRecord[] {
    return lastRecords(this.history, this.position.exits, n);
  }

  // ---- breakpoints ---------------------------------------------------------------

  /** Adds a breakpoint; returns it with its number. */
  addBreakpoint(spec: BreakpointSpec): Breakpoint {
    const bp: Breakpoint = { id: this.nextId++, spec, hits: 0 };
    this.bps.push(bp);
    this.watcher.set(this.bps);
    return bp;
  }

  /** Removes breakpoint `id`; false when there is none. */
  deleteBreakpoint(id: number): boolean {
    const k = this.bps.findIndex((b) => b.id === id);
    if (k < 0) return false;
    this.bps.splice(k, 1);
    this.watcher.set(this.bps);
    return true;
  }

  /** The breakpoints, in the order they were set. */
  get breakpoints(): readonly Breakpoint[] { return this.bps; }

  // ---- running forward -------------------------------------------------------------

  /** Runs `n` guest instructions (an exiting one counts once its handler completed it); breakpoints stop it early. */
  step(n = 1, options: RunOptions = {}): EngineStop {
    this.noticeHandlerChanges();
    const insns = this.vm.cpu.insnCount;
    return this.runForward({ stepsTo: insns + n, limit: options.limit, breakpoints: true, startInsns: insns }, options.stepOverHere ?? true);
  }

  /** Runs to the `n`th next VM exit and stops before its handler; breakpoints stop it early. */
  nextExit(n = 1, options: RunOptions = {}): EngineStop {
    this.noticeHandlerChanges();
    const insns = this.vm.cpu.insnCount;
    return this.runForward({ exitsLeft: n, limit: options.limit, breakpoints: true, startInsns: insns }, options.stepOverHere ?? true);
  }

  /** Runs until a breakpoint stops it or the guest ends. */
  continue(options: RunOptions = {}): EngineStop {
    this.noticeHandlerChanges();
    const insns = this.vm.cpu.insnCount;
    return this.runForward({ limit: options.limit, breakpoints: true, startInsns: insns }, options.stepOverHere ?? true);
  }

  /**
   * A handler replaced or wrapped since the last command (the user trying a
   * fix) changes the run from here on, as a write does.
   */
  private noticeHandlerChanges(): void {
    const now = this.vm.handlers, was = this.handlerTable;
    if (now.size === was.length && was.every(([reason, h]) => now.get(reason) === h)) return;
    this.mutate(() => {});
  }

  private runForward(goal: Goal, stepOverHere: boolean): EngineStop {
    const cpu = this.vm.cpu;
    if (stepOverHere && this.pendingExit === null) {
      const mode = cpu.codeSize, base = mode === 8 ? 0 : cpu.segBase[2 * CS]!;
      this.watcher.skip = { insns: cpu.insnCount, lo: mode === 8 ? cpu.ripLo >>> 0 : (base + cpu.ripLo) >>> 0, hi: mode === 8 ? cpu.ripHi : 0 };
    } else {
      this.watcher.skip = null;
    }
    try {
      return this.run(goal);
    } finally {
      this.watcher.skip = null;
      this.arm(false);
    }
  }

  /** Arms the processor hooks the breakpoints need (or none). */
  private arm(on: boolean): void {
    const cpu = this.vm.cpu, w = this.watcher;
    const exec = on && w.wantsExecution, data = on && w.wantsData;
    if (exec !== this.armedExecution || (cpu.breakOnExecute & EXTERNAL_BREAK) !== (exec ? EXTERNAL_BREAK : 0)) {
      cpu.executionHook = exec ? w : null;
      cpu.breakOnExecute = exec ? cpu.breakOnExecute | EXTERNAL_BREAK : cpu.breakOnExecute & ~EXTERNAL_BREAK;
      this.armedExecution = exec;
    }
    if (data !== this.armedData || (cpu.externalWatch !== null) !== data) {
      cpu.externalWatch = data ? w : null;
      installDataWatch(cpu);
      this.armedData = data;
    }
  }

  /** The run loop of every command (see Goal). */
  private run(goal: Goal): EngineStop {
    const vm = this.vm, cpu = vm.cpu, w = this.watcher;
    for (;;) {
      if (this.endedWith !== null) return { reason: 'ended', ended: this.endedWith };
      const pending = this.pendingExit;
      if (pending !== null) {
        const t = goal.target;
        if (t !== undefined && t.atExit && t.exits === pending.seq) return { reason: 'arrived' };
        const stop = this.finishExit(goal);
        if (stop !== null) return stop;
        continue;
      }
      const insns = cpu.insnCount, t = goal.target;
      if (t !== undefined && !t.atExit && t.exits === vm.exits && t.insns === insns) return { reason: 'arrived' };
      if (goal.stepsTo !== undefined && insns >= goal.stepsTo) return { reason: 'step' };
      if (goal.breakpoints && insns > goal.startInsns) {
        const bp = this.bps.find((b) => b.spec.kind === 'instruction' && b.spec.count === insns);
        if (bp !== undefined) { bp.hits++; return { reason: 'breakpoint', breakpoint: bp }; }
      }
      if (goal.limit !== undefined && insns >= goal.limit) return { reason: 'limit' };
      let budget = SLICE;
      if (goal.stepsTo !== undefined) budget = Math.min(budget, goal.stepsTo - insns);
      if (goal.limit !== undefined) budget = Math.min(budget, goal.limit - insns);
      if (goal.breakpoints) {
        for (const b of this.bps) if (b.spec.kind === 'instruction' && b.spec.count > insns) budget = Math.min(budget, b.spec.count - insns);
      }
      if (t !== undefined && t.exits === vm.exits) {
        if (t.atExit || t.insns <= insns) throw this.divergence(`the guest is at instruction ${insns} with ${vm.exits} exits, past the point asked for`);
        budget = Math.min(budget, t.insns - insns);
      }
      this.maybeSnapshot();
      this.arm(goal.breakpoints);
      w.hit = null;
      const r = vm.runUntilExit(budget);
      vm.breakRequested = false;
      // The step over the breakpoint the command started on is done once the guest has moved.
      if (w.skip !== null && cpu.insnCount !== w.skip.insns) w.skip = null;
      if ('kind' in r) {
        if (r.kind !== 'budget') this.endedWith = r;
        const hit = this.takeHit(goal, null);
        if (hit !== null) return hit;
        continue;
      }
      this.recordExit(r);
      const hit = this.takeHit(goal, r);
      if (hit !== null) return hit;
      if (t !== undefined) {
        if (r.seq > t.exits) throw this.divergence(`exit #${r.seq} (${r.name}) came before the point asked for`);
        continue;
      }
      if (goal.breakpoints) {
        const bp = this.bps.find((b) => (b.spec.kind === 'exit' && (b.spec.reason === null || b.spec.reason === r.reason) &&
          conditionsHold(b.spec.conditions, r, vm.vmcs)) || (b.spec.kind === 'entry-failure' && r.entryFailure));
        if (bp !== undefined) { bp.hits++; return { reason: 'breakpoint', breakpoint: bp, exit: r }; }
      }
      if (goal.exitsLeft !== undefined && --goal.exitsLeft <= 0) return { reason: 'exit', exit: r };
    }
  }

  /** A watchpoint or address breakpoint the last run stopped on, as the command's result. */
  private takeHit(goal: Goal, exit: ExitRecord | null): EngineStop | null {
    const hit = this.watcher.hit;
    this.watcher.hit = null;
    if (hit === null || !goal.breakpoints) return null;
    hit.bp.hits++;
    const access = hit.access !== null && hit.access.size > 0 ? hit.access : undefined;
    return { reason: 'breakpoint', breakpoint: hit.bp, access, ...(exit === null ? {} : { exit }), ...(this.endedWith === null ? {} : { ended: this.endedWith }) };
  }

  /** The handler of the exit stood at, then the VM entry; a stop when the guest stops there. */
  private finishExit(goal: Goal): EngineStop | null {
    const vm = this.vm, e = this.pendingExit!;
    const result = vm.handle(e);
    this.pendingExit = null;
    if (result !== 'resume') {
      this.endedWith = result;
      return { reason: 'ended', ended: result };
    }
    const failed = vm.resume();
    this.entryVmcs = this.lastVmcs = vmcsState(vm.vmcs, this.fields, this.lastVmcs);
    const h = this.history.get(e.seq);
    if (h !== undefined) h.atEntry = this.entryVmcs;
    if (failed === null) return null;
    this.endedWith = failed;
    const bp = goal.breakpoints ? this.bps.find((b) => b.spec.kind === 'entry-failure') : undefined;
    if (bp !== undefined) { bp.hits++; return { reason: 'breakpoint', breakpoint: bp, ended: failed }; }
    return { reason: 'ended', ended: failed };
  }

  private recordExit(e: ExitRecord): void {
    this.pendingExit = e;
    this.exitInsns[e.seq - 1] = e.instructions;
    this.lastVmcs = vmcsState(this.vm.vmcs, this.fields, this.lastVmcs);
    this.history.set(e.seq, { record: e, atExit: this.lastVmcs, atEntry: null });
    this.history.delete(e.seq - this.historyLength);
    this.maybeSnapshot();
  }

  private divergence(what: string): ReplayDivergence {
    const rip = this.vm.guest.rip;
    return new ReplayDivergence(`time travel: the replay did not repeat the recorded run: ${what} (rip=0x${rip.toString(16)}, ` +
      `${this.vm.cpu.insnCount} instructions, ${this.vm.exits} exits)`);
  }

  // ---- snapshots ---------------------------------------------------------------------

  /** Takes a snapshot here when an interval has passed since the last one (and none is here already). */
  private maybeSnapshot(): void {
    const p = this.position, last = this.lastSnapshotAt;
    const cost = (p.insns - last.insns) + EXIT_COST * (p.exits - last.exits);
    if (cost < this.interval || comparePositions(p, last) <= 0) return;
    this.takeSnapshot(false);
  }

  private takeSnapshot(mutation: boolean): void {
    const pos = this.position;
    const k = this.snapshots.findIndex((s) => comparePositions(s.pos, pos) >= 0);
    if (k >= 0 && comparePositions(this.snapshots[k]!.pos, pos) === 0) {
      if (!mutation) { this.lastSnapshotAt = pos; return; }
      this.snapshots.splice(k, 1);
    }
    const before = this.snapshotBefore(pos);
    const recent = [this.history.get(pos.exits - 1), this.history.get(pos.exits)].filter((h): h is ExitHistory => h !== undefined)
      .map((h) => ({ ...h }));
    const snap: Snap = {
      pos, mutation, state: captureState(this.vm, this.rules, before?.state ?? null),
      saved: { pending: this.pendingExit, ended: this.endedWith, serialCount: this.serialCount, entryVmcs: this.entryVmcs, recent },
    };
    const at = this.snapshots.findIndex((s) => comparePositions(s.pos, pos) > 0);
    if (at < 0) this.snapshots.push(snap); else this.snapshots.splice(at, 0, snap);
    this.lastSnapshotAt = pos;
    if (this.snapshots.length > this.maxSnapshots) this.thin();
  }

  /** Every second snapshot goes (never the first, the last, or one taken after a write); the interval doubles. */
  private thin(): void {
    const last = this.snapshots.length - 1;
    this.snapshots = this.snapshots.filter((s, k) => k === 0 || k === last || s.mutation || k % 2 === 0);
    this.interval *= 2;
  }

  /** The latest snapshot at or before `pos`. */
  private snapshotBefore(pos: Position): Snap | undefined {
    let found: Snap | undefined;
    for (const s of this.snapshots) {
      if (comparePositions(s.pos, pos) > 0) break;
      found = s;
    }
    return found;
  }

  /** Snapshots held, the interval between them now, and the memory they take together. */
  snapshotStats(): { readonly count: number; readonly interval: number; readonly bytes: number } {
    return { count: this.snapshots.length, interval: this.interval, bytes: snapshotBytes(this.snapshots.map((s) => s.state)) };
  }

  private restore(snap: Snap): void {
    restoreState(this.vm, snap.state);
    const s = snap.saved;
    this.pendingExit = s.pending;
    this.endedWith = s.ended;
    this.serialCount = s.serialCount;
    this.entryVmcs = s.entryVmcs;
    for (const h of s.recent) this.history.set(h.record.seq, { ...h });
    this.lastVmcs = this.history.get(snap.pos.exits)?.atExit ?? this.entryVmcs;
    this.vm.breakRequested = false;
    this.armedExecution = this.armedData = false;
    this.arm(false);
    this.lastSnapshotAt = snap.pos;
    this.handlerTable = [...this.vm.handlers];
  }

  // ---- going back --------------------------------------------------------------------

  /**
   * Goes to `target` on the recorded run (or forward on it): restores the
   * latest snapshot at or before it and runs to it, with no breakpoint.
   * A target before a write the user made undoes that write.
   */
  goTo(target: Position): EngineStop {
    this.noticeHandlerChanges();
    let undone = 0;
    while (this.mutations.length > 0 && comparePositions(target, this.mutations.at(-1)!) < 0) {
      const m = this.mutations.pop()!;
      this.snapshots = this.snapshots.filter((s) => comparePositions(s.pos, m) < 0);
      this.forgetAfter(m.exits);
      undone++;
    }
    const snap = this.snapshotBefore(target)!;
    this.restore(snap);
    const stop = this.runForward({ target, breakpoints: false, startInsns: this.vm.cpu.insnCount }, false);
    if (stop.reason !== 'arrived') throw this.divergence(`the run ${stop.reason === 'ended' ? 'ended' : 'stopped'} before the point asked for`);
    return undone > 0 ? { reason: 'arrived', undoneWrites: undone } : stop;
  }

  /** Goes back `n` exits: to the exit before its handler ran (the one stood at does not count). */
  backExit(n = 1): EngineStop {
    const p = this.position, seq = p.atExit ? p.exits - n : p.exits - n + 1;
    if (seq < 1) return { reason: 'start' };
    const insns = this.exitInsns[seq - 1];
    if (insns === undefined) throw this.divergence(`exit #${seq} has no record`);
    return this.goTo({ exits: seq, atExit: true, insns });
  }

  /**
   * Goes back `n` guest instructions: to where the guest stood, the first
   * time, with that many fewer retired (at most back to the start).
   */
  reverseStep(n = 1): EngineStop {
    const p = this.position;
    if (p.insns <= this.start.insns && !p.atExit && p.exits === 0) return { reason: 'start' };
    const insns = Math.max(this.start.insns, p.insns - n);
    // Exits that came before that instruction count was reached.
    let lo = 0, hi = Math.min(this.exitInsns.length, p.exits);
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.exitInsns[mid]! < insns) lo = mid + 1; else hi = mid;
    }
    return this.goTo({ exits: lo, atExit: false, insns });
  }

  // ---- changes the user makes ----------------------------------------------------------

  /**
   * Applies a change the user makes to the guest (a register, memory) at the
   * position: the recorded future is dropped and the changed state snapshotted.
   */
  mutate(change: () => void): void {
    change();
    this.handlerTable = [...this.vm.handlers];
    const pos = this.position;
    this.snapshots = this.snapshots.filter((s) => comparePositions(s.pos, pos) < 0);
    this.forgetAfter(pos.exits);
    this.mutations.push(pos);
    this.serialShown = this.serialCount;
    this.takeSnapshot(true);
  }

  /** Forgets the exits recorded after exit `exits`. */
  private forgetAfter(exits: number): void {
    for (const seq of [...this.history.keys()]) if (seq > exits) this.history.delete(seq);
    this.exitInsns.length = Math.min(this.exitInsns.length, exits);
  }
}
