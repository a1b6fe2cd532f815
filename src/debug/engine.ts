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
 * Time travel (timeline.ts, shared with the bare engine). Runs are
 * deterministic, so the engine keeps snapshots of the VM (snapshot.ts) and
 * goes back by restoring the nearest earlier one and running forward to the
 * point asked for; timeline.ts says when snapshots are taken and thinned.
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
import { EXTERNAL_BREAK } from '../cpu/cpu.js';
import type { VmcsField } from '../../vmcs/fields.js';
import { conditionsHold, lastRecords, type Breakpoint, type BreakpointSpec } from './breakpoints.js';
import { vmCaptureRules } from './snapshot.js';
import { ReplayDivergence, Timeline, type Position, type SnapshotStats, type TimelineOptions, type Traveller } from './timeline.js';
import { existingFields, vmcsState, type VmcsState } from './vmcs-view.js';
import { Watcher, type WatchHit } from './watcher.js';

export { comparePositions, EXIT_COST, MAX_SNAPSHOTS, ReplayDivergence, SNAPSHOT_INTERVAL, type Position } from './timeline.js';
export type { WatchHit } from './watcher.js';

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

/** Settings of the engine: its timeline's (snapshots, serial output), and how many exits it keeps. */
export interface EngineOptions extends TimelineOptions {
  /** Exits whose record and VMCS are kept (default HISTORY_LENGTH). */
  readonly historyLength?: number;
}

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

/** The run loop's goal (one per command). */
interface Goal {
  readonly stepsTo?: number;
  exitsLeft?: number;
  readonly limit?: number;
  readonly target?: Position;
  readonly breakpoints: boolean;
  readonly startInsns: number;
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
  private readonly watcher: Watcher;
  private readonly timeline: Timeline<EngineSaved>;
  private readonly historyLength: number;
  private readonly bps: Breakpoint[] = [];
  private nextId = 1;
  private pendingExit: ExitRecord | null = null;
  private endedWith: VmStop | null = null;
  private readonly history = new Map<number, ExitHistory>();
  private entryVmcs: VmcsState;
  private lastVmcs: VmcsState;
  private armedExecution = false;
  /** The handler table as the run so far used it (a change to it is a change to the run, like a write). */
  private handlerTable: readonly (readonly [number, ExitHandler])[];

  /** Creates the VM, loads the image and takes the first snapshot. Throws VmConfigError or ImageError as createVm and load do. */
  static create(setup: EngineSetup): DebugEngine {
    let engine: DebugEngine | null = null;
    const vm = createVm(setup.config, { serialOut: (b) => engine?.timeline.serial(b) });
    vm.load(setup.image, setup.load ?? {});
    engine = new DebugEngine(vm, setup);
    return engine;
  }

  private constructor(vm: Vm, options: EngineOptions) {
    this.vm = vm;
    this.fields = existingFields(vm.vmx.caps);
    this.watcher = new Watcher(vm.cpu, () => { vm.breakRequested = true; });
    this.historyLength = options.historyLength ?? HISTORY_LENGTH;
    this.entryVmcs = this.lastVmcs = vmcsState(vm.vmcs, this.fields, null);
    this.handlerTable = [...vm.handlers];
    this.timeline = new Timeline(vm, vmCaptureRules(vm, [this.watcher]), this.traveller(), options);
    this.start = this.timeline.start;
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
    if (stepOverHere && this.pendingExit === null) this.watcher.skipHere();
    else this.watcher.skip = null;
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
    w.armData(data);
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
      this.timeline.maybeSnapshot();
      this.arm(goal.breakpoints);
      w.hit = null;
      const r = vm.runUntilExit(budget);
      vm.breakRequested = false;
      w.moved();
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
    this.timeline.noteExit(e.seq, e.instructions);
    this.lastVmcs = vmcsState(this.vm.vmcs, this.fields, this.lastVmcs);
    this.history.set(e.seq, { record: e, atExit: this.lastVmcs, atEntry: null });
    this.history.delete(e.seq - this.historyLength);
    this.timeline.maybeSnapshot();
  }

  private divergence(what: string): ReplayDivergence {
    const rip = this.vm.guest.rip;
    return new ReplayDivergence(`time travel: the replay did not repeat the recorded run: ${what} (rip=0x${rip.toString(16)}, ` +
      `${this.vm.cpu.insnCount} instructions, ${this.vm.exits} exits)`);
  }

  // ---- time travel ------------------------------------------------------------------------

  /** The engine's part of time travel (timeline.ts): its own state, and the run forward to a point. */
  private traveller(): Traveller<EngineSaved> {
    return {
      position: (): Position => this.position,
      save: (): EngineSaved => {
        const pos = this.position;
        const recent = [this.history.get(pos.exits - 1), this.history.get(pos.exits)].filter((h): h is ExitHistory => h !== undefined)
          .map((h) => ({ ...h }));
        return { pending: this.pendingExit, ended: this.endedWith, serialCount: this.timeline?.serialBytes ?? 0, entryVmcs: this.entryVmcs, recent };
      },
      restore: (s: EngineSaved, pos: Position): void => {
        this.pendingExit = s.pending;
        this.endedWith = s.ended;
        this.timeline.serialBytes = s.serialCount;
        this.entryVmcs = s.entryVmcs;
        for (const h of s.recent) this.history.set(h.record.seq, { ...h });
        this.lastVmcs = this.history.get(pos.exits)?.atExit ?? this.entryVmcs;
        this.vm.breakRequested = false;
        this.armedExecution = false;
        this.arm(false);
        this.handlerTable = [...this.vm.handlers];
      },
      forgetAfter: (exits: number): void => this.forgetAfter(exits),
      runTo: (target: Position): string => this.runForward({ target, breakpoints: false, startInsns: this.vm.cpu.insnCount }, false).reason,
      divergence: (what: string) => this.divergence(what),
    };
  }

  /** Snapshots held, the interval between them now, and the memory they take together. */
  snapshotStats(): SnapshotStats {
    return this.timeline.stats();
  }

  /**
   * Goes to `target` on the recorded run (or forward on it): restores the
   * latest snapshot at or before it and runs to it, with no breakpoint.
   * A target before a write the user made undoes that write.
   */
  goTo(target: Position): EngineStop {
    this.noticeHandlerChanges();
    const undone = this.timeline.goTo(target);
    return undone > 0 ? { reason: 'arrived', undoneWrites: undone } : { reason: 'arrived' };
  }

  /** Goes back `n` exits: to the exit before its handler ran (the one stood at does not count). */
  backExit(n = 1): EngineStop {
    const to = this.timeline.exitBack(this.position, n);
    return to === null ? { reason: 'start' } : this.goTo(to);
  }

  /**
   * Goes back `n` guest instructions: to where the guest stood, the first
   * time, with that many fewer retired (at most back to the start).
   */
  reverseStep(n = 1): EngineStop {
    const to = this.timeline.stepsBack(this.position, n, false);
    return to === null ? { reason: 'start' } : this.goTo(to);
  }

  // ---- changes the user makes ----------------------------------------------------------

  /**
   * Applies a change the user makes to the guest (a register, memory) at the
   * position: the recorded future is dropped and the changed state snapshotted.
   */
  mutate(change: () => void): void {
    change();
    this.handlerTable = [...this.vm.handlers];
    this.timeline.mutated();
  }

  /** Forgets the exits recorded after exit `exits`. */
  private forgetAfter(exits: number): void {
    for (const seq of [...this.history.keys()]) if (seq > exits) this.history.delete(seq);
  }
}
