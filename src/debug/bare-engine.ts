/**
 * The debugger engine over the bare machine (`hvsim debug IMAGE --bare`): the
 * image runs on a PcMachine with the model's VMX unit, as `hvsim run --bare`
 * runs it, so the hypervisor being debugged is the user's own code in VMX
 * root operation, and the VM exits are those of its VMCS.
 *
 * Where the processor can stand: anywhere at an instruction boundary, in root
 * or non-root operation (or outside VMX). A VM exit stops a run that asks for
 * exits right after the exit completed (SDM 28.1: exit information written,
 * guest state saved, host state loaded), at the first instruction of the
 * root-mode handler (HOST_RIP); the exit record is read from the current VMCS
 * as the exit left it. `finishHandler` runs the handler until the processor
 * is back in non-root operation (its VMRESUME/VMLAUNCH succeeded) or a VM
 * entry failed: VMfailInvalid or VMfailValid (31.2; the checks of 27.2, or
 * the instruction's own: no current VMCS, VMLAUNCH of a launched VMCS,
 * VMRESUME of one not launched, 31.3), or a VM exit with reason bit 31 (27.8).
 *
 * How it sees exits and entries without slowing the guest:
 * - `Vmx.stopOnExit` ends the processor's run after each completed exit;
 * - `Vmx.onEntryFailure` tells of each entry that failed a check of 27.2 or
 *   27.3 (the run stops after the failing VMLAUNCH/VMRESUME);
 * - after each exit, until the processor is seen in non-root operation again,
 *   the processor's execution hook (Cpu.executionHook) is armed: at each block
 *   boundary of the root-mode code it looks whether the entry has happened,
 *   and then takes the VMCS as the handler left it (what `vmcs diff` shows)
 *   and disarms itself, so that guest code runs at full speed. While armed it
 *   also lets a block that ends in VMLAUNCH or VMRESUME (they end a block)
 *   run as a whole and looks at the next boundary: still in root operation
 *   with CF or ZF set, the instruction failed (VMfailInvalid, VMfailValid,
 *   31.2), which the VMX unit tells no one of when its own checks fail it.
 *   The hook also serves address breakpoints and execute watchpoints
 *   (watcher.ts, as in the hypervisor engine); data watchpoints use the MMU's
 *   data watch while set.
 *
 * Time travel (timeline.ts, the same as the hypervisor engine's): snapshots of
 * the whole PcMachine — the processor, its VMX unit with the VMCSs it holds,
 * EPT, the devices, the clock, memory — and going back by restoring the
 * nearest one and running forward. A step is an instruction retired or a VM
 * exit (the exiting instruction does not retire), so `reverseStep` counts
 * exits too.
 */
import { Field } from '../../vmcs/fields.js';
import type { VmcsField } from '../../vmcs/fields.js';
import { ExitReason, EXIT_REASON_VM_ENTRY_FAILURE, exitReasonName } from '../../vmcs/exit-reasons.js';
import { decodeBits, EptViolation, QUALIFICATION_LAYOUTS } from '../../vmcs/qualifications.js';
import { EXTERNAL_BREAK, type Cpu, type ExecutionHook } from '../cpu/cpu.js';
import { PAGE_SIZE } from '../cpu/memory.js';
import { ADDR_HI } from '../cpu/paging.js';
import { CF, IF, ZF } from '../cpu/regs.js';
import { disassemble } from '../hv/disassemble.js';
import type { EventRecord, ExitRecord } from '../hv/record.js';
import { loadImage, type LoadOptions } from '../platform/loaders/index.js';
import { PcMachine } from '../platform/machine.js';
import type { EntryCheckFailure } from '../vmx/entry-checks.js';
import type { Ept } from '../vmx/ept.js';
import { PDPTE_FIELDS } from '../vmx/state-fields.js';
import { explainTranslation, translationState, type AccessKind, type TranslationState } from '../vmx/translation.js';
import type { Vmcs } from '../vmx/vmcs.js';
import { attachVmx, type Vmx } from '../vmx/vmx.js';
import { conditionsHold, lastRecords, type Breakpoint, type BreakpointSpec } from './breakpoints.js';
import { machineCaptureRules } from './snapshot.js';
import { ReplayDivergence, Timeline, type Position, type SnapshotStats, type TimelineOptions, type Traveller } from './timeline.js';
import { existingFields, vmcsState, type VmcsState } from './vmcs-view.js';
import { Watcher, type WatchHit } from './watcher.js';

/** How the run of a bare machine ended for good. */
export type BareEnd =
  | { readonly kind: 'exit'; readonly status: number }
  | { readonly kind: 'halt' }
  | { readonly kind: 'shutdown' }
  | { readonly kind: 'exception'; readonly vector: number; readonly errorCode: number | null };

/**
 * A VMLAUNCH or VMRESUME that failed as an instruction (31.2): VMfailInvalid
 * (`error` null: no current VMCS), or VMfailValid with the VM-instruction
 * error it stored (31.4).
 */
export interface VmInstructionFailure {
  readonly instruction: 'VMLAUNCH' | 'VMRESUME';
  readonly error: number | null;
  /** Where the instruction is (linear). */
  readonly rip: bigint;
}

/** Why a command of the bare engine came back. */
export interface BareStop {
  /**
   * - step: the steps asked for are done;
   * - exit: a VM exit completed (the processor is at HOST_RIP);
   * - entered: finish-handler: the VM entry succeeded, the processor is in non-root operation;
   * - entry-failed: a VM entry failed (`failure` for a failed check, with `exit` when it ended
   *   in a VM exit, 27.8; `instruction` for a VMLAUNCH/VMRESUME that failed before any check);
   * - arrived: time travel reached the point asked for; start: there is nothing earlier;
   * - breakpoint (with `access` for a watchpoint), limit, ended.
   */
  readonly reason: 'step' | 'exit' | 'entered' | 'entry-failed' | 'breakpoint' | 'limit' | 'ended' | 'arrived' | 'start';
  readonly breakpoint?: Breakpoint;
  readonly exit?: ExitRecord;
  readonly failure?: EntryCheckFailure;
  readonly instruction?: VmInstructionFailure;
  readonly access?: WatchHit;
  readonly ended?: BareEnd;
  /** Time travel: writes made after the point arrived at, undone by going there. */
  readonly undoneWrites?: number;
}

/** One exit as the engine keeps it: its record, the VMCS then, and the VMCS its handler entered with. */
export interface BareExitHistory {
  readonly record: ExitRecord;
  /** The address of the VMCS that was current at the exit. */
  readonly vmcsAddress: number;
  readonly atExit: VmcsState;
  /** The current VMCS at the next successful VM entry (null until then, or if the entry was not seen). */
  atEntry: VmcsState | null;
}

/** How a bare debugging session starts. */
export interface BareSetup extends TimelineOptions {
  readonly image: Uint8Array;
  readonly load?: LoadOptions;
  /** Bytes of RAM (default 64 MiB). */
  readonly memory?: number;
}

/** Exits whose record and VMCS are kept. */
export const BARE_HISTORY = 4096;
/** Instructions per turn of the processor between two looks at the engine's goal. */
const SLICE = 1 << 20;

interface BareGoal {
  /** Steps (instructions retired plus VM exits) to make. */
  readonly steps?: number;
  exitsLeft?: number;
  /** Stop at a successful VM entry or a failed one. */
  readonly toEntry?: boolean;
  /** Time travel: run to this point, breakpoints off. */
  readonly target?: Position;
  readonly limit: number;
}

/** The engine's own state kept with each snapshot (the machine's is in the snapshot itself). */
interface BareSaved {
  readonly exitCount: number;
  readonly lastExitInsns: number;
  readonly ended: BareEnd | null;
  readonly watchEntry: boolean;
  readonly atExitSeq: number | null;
  readonly serialCount: number;
  readonly instructionFailure: VmInstructionFailure | null;
  readonly recent: readonly BareExitHistory[];
}

/** The debugger engine over a bare PcMachine (see the file comment). */
export class BareEngine implements ExecutionHook {
  readonly machine: PcMachine;
  readonly cpu: Cpu;
  readonly vmx: Vmx;
  /** The VMCS fields this processor has, in appendix-B order. */
  readonly fields: readonly VmcsField[];
  /** Where the run started (the image loaded). */
  readonly start: Position;
  private readonly watcher: Watcher;
  private readonly timeline: Timeline<BareSaved>;
  private readonly bps: Breakpoint[] = [];
  private nextId = 1;
  private exitCount = 0;
  private readonly history = new Map<number, BareExitHistory>();
  private lastVmcs: VmcsState | null = null;
  private endedWith: BareEnd | null = null;
  /** A failed VM entry told by the VMX unit during the last turn. */
  private failure: EntryCheckFailure | null = null;
  /** A VMLAUNCH/VMRESUME that failed as an instruction, seen during the last turn. */
  private instructionFailure: VmInstructionFailure | null = null;
  /** The last VM entry that failed was a VMLAUNCH/VMRESUME failing as an instruction (why-entry-failed). */
  private lastInstructionFailure: VmInstructionFailure | null = null;
  /** The instruction count right after the VMLAUNCH/VMRESUME that ends the block let run, or -1. */
  private launchDoneAt = -1;
  private launchAt: { readonly instruction: 'VMLAUNCH' | 'VMRESUME'; readonly rip: bigint } | null = null;
  /** Looking for the next VM entry (after an exit, or before the first entry). */
  private watchEntry = true;
  /** The hook saw the entry and stopped the turn in front of the guest's first instruction. */
  private enteredNow = false;
  private stopAtEntry = false;
  /** Breakpoints and watchpoints are looked at (not while time travel replays). */
  private breakpointsOn = true;
  /** The run stands right after exit `atExitSeq` completed (no instruction of its handler has run). */
  private atExitSeq: number | null = null;
  private lastExitInsns = 0;

  /** Builds the machine and loads the image as `hvsim run --bare` does. Throws ImageError for a bad image. */
  constructor(setup: BareSetup) {
    let vmx: Vmx | null = null;
    this.machine = new PcMachine({ memorySize: setup.memory, serialOut: (b) => this.timeline.serial(b), attach: (cpu) => { vmx = attachVmx(cpu); } });
    this.cpu = this.machine.cpu;
    this.vmx = vmx!;
    this.vmx.stopOnExit = true;
    this.vmx.onEntryFailure = (f): void => { this.failure = f; this.lastInstructionFailure = null; this.cpu.stop({ kind: 'stop' }); };
    this.fields = existingFields(this.vmx.caps);
    loadImage(this.cpu, setup.image, setup.load ?? {});
    this.watcher = new Watcher(this.cpu);
    this.timeline = new Timeline(this.machine, machineCaptureRules(this.machine, [this, this.watcher]), this.traveller(), setup);
    this.start = this.timeline.start;
  }

  // ---- where the processor is ----------------------------------------------------------

  /** VM exits so far. */
  get exits(): number { return this.exitCount; }
  /** Instructions retired so far. */
  get insns(): number { return this.cpu.insnCount; }
  /** Where the run stands: exits, instructions, and whether right after an exit (at HOST_RIP). */
  get position(): Position { return { exits: this.exitCount, atExit: this.atExitSeq !== null, insns: this.cpu.insnCount }; }
  /** Why the run ended for good, or null. */
  get ended(): BareEnd | null { return this.endedWith; }
  /** The exit the processor stands right after (at HOST_RIP, nothing of its handler run), or null. */
  get atExit(): ExitRecord | null { return this.atExitSeq === null ? null : this.history.get(this.atExitSeq)?.record ?? null; }
  /** The most recent exit, or null before the first. */
  get lastExit(): ExitRecord | null { return this.history.get(this.exitCount)?.record ?? null; }
  /** The VMLAUNCH/VMRESUME that failed as an instruction, when that is the last VM entry that failed (else null). */
  get instructionFailed(): VmInstructionFailure | null { return this.lastInstructionFailure; }
  /** The exit with this number, if it is kept. */
  exitAt(seq: number): BareExitHistory | undefined { return this.history.get(seq); }
  /** The current VMCS's fields now (null when no VMCS is current). */
  vmcsNow(): VmcsState | null {
    const v = this.vmx.current;
    return v === null ? null : vmcsState(v, this.fields, this.lastVmcs);
  }

  /** The last `n` exits that are kept, oldest first. */
  trace(n: number): ExitRecord[] {
    return lastRecords(this.history, this.exitCount, n);
  }

  // ---- breakpoints ---------------------------------------------------------------------

  /** Adds a breakpoint (address: a linear RIP in whatever operation the processor is; exit; entry-failure; instruction; watch). */
  addBreakpoint(spec: BreakpointSpec): Breakpoint {
    const bp: Breakpoint = { id: this.nextId++, spec, hits: 0 };
    this.bps.push(bp);
    this.watcher.set(this.bps);
    return bp;
  }

  deleteBreakpoint(id: number): boolean {
    const k = this.bps.findIndex((b) => b.id === id);
    if (k < 0) return false;
    this.bps.splice(k, 1);
    this.watcher.set(this.bps);
    return true;
  }

  get breakpoints(): readonly Breakpoint[] { return this.bps; }

  /** The processor's execution hook (see the file comment): the VM entry, a failed VMLAUNCH/VMRESUME, breakpoints. */
  allow(cpu: Cpu, limit: number): number {
    if (this.launchDoneAt >= 0) {
      const done = this.launchDoneAt, launch = this.launchAt!;
      this.launchDoneAt = -1; this.launchAt = null;
      if (!cpu.nonRoot && cpu.insnCount === done && this.failure === null) {
        const flags = cpu.rflags;
        // 31.2: VMfailInvalid sets CF, VMfailValid ZF (the error in the current VMCS).
        if ((flags & (CF | ZF)) !== 0) {
          const error = (flags & CF) !== 0 || this.vmx.current === null ? null : this.vmx.current.lo(Field.VM_INSTRUCTION_ERROR);
          this.instructionFailure = this.lastInstructionFailure = { ...launch, error };
          if (this.stopAtEntry || this.breakpointsOn && this.bps.some((b) => b.spec.kind === 'entry-failure')) return 0;
        }
      }
    }
    if (this.watchEntry && cpu.nonRoot) {
      this.watchEntry = false;
      this.lastInstructionFailure = null;
      this.noteEntry();
      if (this.stopAtEntry) { this.enteredNow = true; return 0; }
    }
    const n = this.breakpointsOn && this.watcher.wantsExecution ? this.watcher.allow(cpu, limit) : limit;
    if (n > 0 && this.watchEntry && !cpu.nonRoot) this.noteLaunch(cpu, n);
    return n;
  }

  /** The block about to run ends in VMLAUNCH or VMRESUME, within the `n` instructions let run: look after it. */
  private noteLaunch(cpu: Cpu, n: number): void {
    const block = cpu.blocks.peek(), k = block.insns.length;
    if (n < k) return;
    const name = block.insns[k - 1]!.def.name;
    if (name !== 'vmlaunch' && name !== 'vmresume') return;
    const lo = BigInt(cpu.codeSize === 8 ? cpu.ripLo >>> 0 : (cpu.segBase[2]! + cpu.ripLo) >>> 0);
    const start = cpu.codeSize === 8 ? (BigInt(cpu.ripHi >>> 0) << 32n) | lo : lo;
    this.launchAt = { instruction: name === 'vmlaunch' ? 'VMLAUNCH' : 'VMRESUME', rip: BigInt.asUintN(64, start + BigInt(block.offsets[k - 1]!)) };
    this.launchDoneAt = cpu.insnCount + k;
  }

  /** The VM entry after the last exit has happened: its VMCS is what the handler left. */
  private noteEntry(): void {
    const h = this.history.get(this.exitCount), v = this.vmx.current;
    if (h === undefined || v === null || h.atEntry !== null) return;
    this.lastVmcs = h.atEntry = vmcsState(v, this.fields, this.lastVmcs);
  }

  private arm(): void {
    const cpu = this.cpu, w = this.watcher, on = (this.breakpointsOn && w.wantsExecution) || this.watchEntry || this.launchDoneAt >= 0;
    cpu.executionHook = on ? this : null;
    cpu.breakOnExecute = on ? cpu.breakOnExecute | EXTERNAL_BREAK : cpu.breakOnExecute & ~EXTERNAL_BREAK;
    w.armData(this.breakpointsOn && w.wantsData);
  }

  // ---- running -------------------------------------------------------------------------

  /** Runs `n` steps: an instruction retired, or a VM exit (the exiting instruction does not retire), is one step. */
  step(n: number, limit: number, stepOverHere = true): BareStop {
    return this.runForward({ steps: n, limit }, stepOverHere);
  }

  /** Runs to the `n`th next VM exit, stopping at HOST_RIP with the exit complete. */
  nextExit(n: number, limit: number): BareStop {
    return this.runForward({ exitsLeft: n, limit }, true);
  }

  /** Runs until a breakpoint, the end of the run, or the limit. */
  continue(limit: number, stepOverHere = true): BareStop {
    return this.runForward({ limit }, stepOverHere);
  }

  /**
   * Runs the root-mode handler until the processor is back in non-root
   * operation or a VM entry fails (the caller checks that the processor is in
   * VMX root operation).
   */
  finishHandler(limit: number): BareStop {
    return this.runForward({ toEntry: true, limit }, true);
  }

  private runForward(goal: BareGoal, stepOverHere: boolean): BareStop {
    if (stepOverHere) this.watcher.skipHere();
    else this.watcher.skip = null;
    this.stopAtEntry = goal.toEntry === true;
    this.breakpointsOn = goal.target === undefined;
    try {
      return this.run(goal);
    } finally {
      this.stopAtEntry = false;
      this.breakpointsOn = true;
      this.watcher.skip = null;
      this.watcher.armData(false);
    }
  }

  private run(goal: BareGoal): BareStop {
    const cpu = this.cpu, machine = this.machine, clock = machine.ports.clock, w = this.watcher;
    const startInsns = cpu.insnCount, startExits = this.exitCount, t = goal.target, bpsOn = t === undefined;
    for (;;) {
      if (t !== undefined && this.exitCount === t.exits && cpu.insnCount === t.insns && t.atExit === (this.atExitSeq !== null)) return { reason: 'arrived' };
      if (this.endedWith !== null) return { reason: 'ended', ended: this.endedWith };
      const done = cpu.insnCount - startInsns + this.exitCount - startExits;
      if (goal.steps !== undefined && done >= goal.steps) return { reason: 'step' };
      const insns = cpu.insnCount;
      if (bpsOn && insns > startInsns) {
        const bp = this.bps.find((b) => b.spec.kind === 'instruction' && b.spec.count === insns);
        if (bp !== undefined) { bp.hits++; return { reason: 'breakpoint', breakpoint: bp }; }
      }
      if (insns >= goal.limit) return { reason: 'limit' };
      let budget = Math.min(SLICE, goal.limit - insns);
      if (goal.steps !== undefined) budget = Math.min(budget, goal.steps - done);
      if (bpsOn) for (const b of this.bps) if (b.spec.kind === 'instruction' && b.spec.count > insns) budget = Math.min(budget, b.spec.count - insns);
      if (t !== undefined) {
        if (this.exitCount > t.exits || (this.exitCount === t.exits && (t.atExit || t.insns < insns))) {
          throw this.divergence(`the processor is at instruction ${insns} with ${this.exitCount} exits, past the point asked for`);
        }
        if (this.exitCount === t.exits) budget = Math.min(budget, t.insns - insns);
      }
      this.timeline.maybeSnapshot();
      this.arm();
      w.hit = null;
      this.enteredNow = false;
      this.failure = null;
      this.instructionFailure = null;
      const slice = Math.max(1, Math.min(budget, machine.nextDeadline() - clock.ns()));
      const before = cpu.insnCount, exitsBefore = this.exitCount;
      const stop = machine.runTurn(0, slice);
      w.moved();
      if (cpu.insnCount !== before || stop.kind === 'vm-exit') this.atExitSeq = null;
      const status = machine.debugExitStatus;
      if (status !== null) this.endedWith = { kind: 'exit', status };
      else if (stop.kind === 'shutdown') this.endedWith = { kind: 'shutdown' };
      else if (stop.kind === 'exception') this.endedWith = { kind: 'exception', vector: stop.vector, errorCode: stop.errorCode };
      else if (stop.kind === 'halt' && !this.wake()) this.endedWith = { kind: 'halt' };
      machine.runDue();
      const exit = stop.kind === 'vm-exit' && this.exitCount === exitsBefore ? this.recordExit() : null;
      // Set by the VMX unit's callback and the hooks during the turn (the compiler cannot see it).
      const failure = this.failure as EntryCheckFailure | null, instruction = this.instructionFailure as VmInstructionFailure | null;
      const hit = w.hit as { bp: Breakpoint; access: WatchHit | null } | null;
      this.failure = null;
      this.instructionFailure = null;
      w.hit = null;
      // The failing VMLAUNCH/VMRESUME the VMX unit told of is not looked at again.
      if (failure !== null) { this.launchDoneAt = -1; this.launchAt = null; }
      if (t !== undefined) {
        if (exit !== null && exit.seq > t.exits) throw this.divergence(`exit #${exit.seq} (${exit.name}) came before the point asked for`);
        continue;
      }
      const entryBp = this.bps.find((b) => b.spec.kind === 'entry-failure');
      if (exit !== null && exit.entryFailure) {
        const f = this.vmx.lastEntryFailure ?? undefined;
        if (entryBp !== undefined) { entryBp.hits++; return { reason: 'breakpoint', breakpoint: entryBp, exit, failure: f }; }
        if (goal.toEntry === true) return { reason: 'entry-failed', exit, failure: f };
      } else if ((failure !== null && failure.kind !== 'guest') || instruction !== null) {
        const how = failure !== null && failure.kind !== 'guest' ? { failure } : { instruction: instruction! };
        if (entryBp !== undefined) { entryBp.hits++; return { reason: 'breakpoint', breakpoint: entryBp, ...how }; }
        if (goal.toEntry === true) return { reason: 'entry-failed', ...how };
      }
      if (hit !== null) {
        hit.bp.hits++;
        const access = hit.access !== null && hit.access.size > 0 ? hit.access : undefined;
        return { reason: 'breakpoint', breakpoint: hit.bp, access, ...(exit === null ? {} : { exit }), ...(this.endedWith === null ? {} : { ended: this.endedWith }) };
      }
      if (this.enteredNow) return { reason: 'entered' };
      if (exit !== null) {
        const v = this.vmx.current;
        const bp = v === null ? undefined : this.bps.find((b) => b.spec.kind === 'exit' &&
          (b.spec.reason === null || b.spec.reason === exit.reason) && conditionsHold(b.spec.conditions, exit, v));
        if (bp !== undefined) { bp.hits++; return { reason: 'breakpoint', breakpoint: bp, exit }; }
        if (goal.exitsLeft !== undefined && --goal.exitsLeft <= 0) return { reason: 'exit', exit };
        if (goal.toEntry === true) return { reason: 'exit', exit };
      }
    }
  }

  /**
   * The processor halted: guest time moves to the next device event if it can
   * wake it (as PcMachine.run does); false when nothing ever will.
   */
  private wake(): boolean {
    const cpu = this.cpu, machine = this.machine;
    let wakeable = cpu.eventDeadline !== Infinity;
    const takes = cpu.nonRoot ? cpu.virt.interruptEndsHalt(cpu) : (cpu.rflags & IF) !== 0;
    if (takes) {
      if (cpu.interrupts!.hasInterrupt()) return true;
      wakeable = true;
    }
    const next = machine.nextDeadline();
    if (!wakeable || next === Infinity) return false;
    machine.ports.clock.skipTo(Math.max(next, machine.ports.clock.ns()));
    return true;
  }

  private recordExit(): ExitRecord {
    const v = this.vmx.current!, seq = ++this.exitCount;
    const record = bareExitRecord(v, this.cpu, seq, this.cpu.insnCount - this.lastExitInsns);
    this.lastExitInsns = this.cpu.insnCount;
    this.lastVmcs = vmcsState(v, this.fields, this.lastVmcs);
    this.history.set(seq, { record, vmcsAddress: v.address, atExit: this.lastVmcs, atEntry: null });
    this.history.delete(seq - BARE_HISTORY);
    this.atExitSeq = seq;
    this.watchEntry = true;
    this.launchDoneAt = -1;
    this.launchAt = null;
    this.timeline.noteExit(seq, this.cpu.insnCount);
    this.timeline.maybeSnapshot();
    return record;
  }

  private divergence(what: string): ReplayDivergence {
    return new ReplayDivergence(`time travel: the replay did not repeat the recorded run: ${what} (rip=0x${this.cpu.rip.toString(16)}, ` +
      `${this.cpu.insnCount} instructions, ${this.exitCount} exits)`);
  }

  // ---- time travel ---------------------------------------------------------------------

  /** The engine's part of time travel (timeline.ts): its own state, and the run forward to a point. */
  private traveller(): Traveller<BareSaved> {
    return {
      position: (): Position => this.position,
      save: (): BareSaved => {
        const recent = [this.history.get(this.exitCount - 1), this.history.get(this.exitCount)]
          .filter((h): h is BareExitHistory => h !== undefined).map((h) => ({ ...h }));
        return {
          exitCount: this.exitCount, lastExitInsns: this.lastExitInsns, ended: this.endedWith, watchEntry: this.watchEntry,
          atExitSeq: this.atExitSeq, serialCount: this.timeline?.serialBytes ?? 0, instructionFailure: this.lastInstructionFailure, recent,
        };
      },
      restore: (s: BareSaved): void => {
        this.exitCount = s.exitCount;
        this.lastExitInsns = s.lastExitInsns;
        this.endedWith = s.ended;
        this.watchEntry = s.watchEntry;
        this.atExitSeq = s.atExitSeq;
        this.lastInstructionFailure = s.instructionFailure;
        this.timeline.serialBytes = s.serialCount;
        for (const h of s.recent) this.history.set(h.record.seq, { ...h });
        this.launchDoneAt = -1;
        this.launchAt = null;
        this.failure = null;
        this.instructionFailure = null;
      },
      forgetAfter: (exits: number): void => {
        for (const seq of [...this.history.keys()]) if (seq > exits) this.history.delete(seq);
      },
      runTo: (target: Position): string => this.runForward({ target, limit: Number.MAX_SAFE_INTEGER }, false).reason,
      divergence: (what: string) => this.divergence(what),
    };
  }

  /** Snapshots held, the interval between them now, and the memory they take together. */
  snapshotStats(): SnapshotStats {
    return this.timeline.stats();
  }

  /** Goes to `target` on the recorded run (restoring the latest snapshot at or before it); a target before a write undoes it. */
  goTo(target: Position): BareStop {
    const undone = this.timeline.goTo(target);
    return undone > 0 ? { reason: 'arrived', undoneWrites: undone } : { reason: 'arrived' };
  }

  /** Goes back `n` exits: to right after that exit completed, at HOST_RIP (the one stood at does not count). */
  backExit(n = 1): BareStop {
    const to = this.timeline.exitBack(this.position, n);
    return to === null ? { reason: 'start' } : this.goTo(to);
  }

  /** Goes back `n` steps (instructions retired and VM exits), to where the processor stood the first time. */
  reverseStep(n = 1): BareStop {
    const to = this.timeline.stepsBack(this.position, n, true);
    return to === null ? { reason: 'start' } : this.goTo(to);
  }

  /** Applies a change the user makes (a register, memory): the recorded future is dropped and the changed state snapshotted. */
  mutate(change: () => void): void {
    change();
    this.timeline.mutated();
  }

  // ---- memory --------------------------------------------------------------------------

  /** How the processor translates linear addresses now (root: the host's paging; non-root: the guest's and the EPT). */
  translation(): TranslationState {
    return translationState(this.cpu);
  }

  /** Up to `count` bytes at `address`: linear (through `state`, the processor's by default) or physical; why it stopped early. */
  read(space: 'linear' | 'physical', address: bigint, count: number, access: AccessKind = 'read',
    state: TranslationState = this.translation()): { bytes: Uint8Array; stop: string | null } {
    const out: number[] = [], memory = this.cpu.memory;
    const byte = (pa: number): number | null => {
      if (pa < 0 || pa >= memory.size) return null;
      return memory.isAllocated(Math.floor(pa / PAGE_SIZE)) ? memory.read8(pa) & 0xff : 0;
    };
    if (space === 'linear') {
      for (let k = 0; k < count;) {
        const at = BigInt.asUintN(64, address + BigInt(k));
        const t = explainTranslation(state, at, access);
        if (t.outcome.kind !== 'ok') return { bytes: Uint8Array.from(out), stop: `linear 0x${at.toString(16)} does not translate: ${t.outcome.reason}` };
        const pa = Number(t.hostPhysical!), n = Math.min(count - k, PAGE_SIZE - (pa % PAGE_SIZE));
        for (let j = 0; j < n; j++) out.push(byte(pa + j) ?? 0xff);
        k += n;
      }
      return { bytes: Uint8Array.from(out), stop: null };
    }
    for (let k = 0; k < count; k++) {
      const a = address + BigInt(k), b = a > BigInt(Number.MAX_SAFE_INTEGER) ? null : byte(Number(a));
      if (b === null) return { bytes: Uint8Array.from(out), stop: `physical 0x${a.toString(16)} is beyond the machine's memory` };
      out.push(b);
    }
    return { bytes: Uint8Array.from(out), stop: null };
  }

  /**
   * Writes bytes at a linear address through the processor's translation (read
   * rights suffice: a debugger may patch read-only code); false and nothing
   * written when a page does not translate to memory.
   */
  writeLinear(address: bigint, bytes: Uint8Array): boolean {
    const state = this.translation(), pas: number[] = [];
    for (let k = 0; k < bytes.length; k++) {
      const t = explainTranslation(state, BigInt.asUintN(64, address + BigInt(k)), 'read');
      if (t.outcome.kind !== 'ok' || Number(t.hostPhysical!) >= this.cpu.memory.size) return false;
      pas.push(Number(t.hostPhysical!));
    }
    pas.forEach((pa, k) => {
      this.cpu.memory.write8(pa, bytes[k]!);
      this.cpu.codeWritten(pa, 1);
    });
    return true;
  }
}

/** EPTP bit 6: accessed and dirty flags for EPT (SDM 25.6.11). */
const EPTP_AD = 1 << 6;
const CR4_LA57 = 1 << 12, EFER_LMA = 1 << 10, CS_L = 1 << 13, CS_DB = 1 << 14, CR0_PE = 1;

function u64(v: Vmcs, f: number): bigint {
  return (BigInt(v.hi(f) >>> 0) << 32n) | BigInt(v.lo(f) >>> 0);
}

function event(info: number, code: number): EventRecord | null {
  if ((info & 0x80000000) === 0) return null;
  return { vector: info & 0xff, type: (info >>> 8) & 7, errorCode: info & (1 << 11) ? code >>> 0 : null };
}

/**
 * The guest's IA32_EFER: without the "load IA32_EFER" and "save IA32_EFER"
 * controls the field is not what the guest has; LMA (and with paging LME) is
 * the "IA-32e mode guest" entry control, which every exit updates (27.3.2.1, 28.2).
 */
function guestEfer(v: Vmcs): number {
  const efer = v.lo(Field.GUEST_IA32_EFER), ia32e = (v.lo(Field.VM_ENTRY_CONTROLS) & (1 << 9)) !== 0;
  const lm = EFER_LMA | (1 << 8);
  return ia32e ? efer | lm : efer & ~lm;
}

/** The guest's translation as the guest-state area of `v` describes it (after an exit: where the guest was), with the EPT it names. */
export function guestTranslation(v: Vmcs, cpu: Cpu): TranslationState {
  const F = Field, pdpte = new Int32Array(8);
  PDPTE_FIELDS.forEach((f, k) => { pdpte[2 * k] = v.lo(f); pdpte[2 * k + 1] = v.hi(f); });
  const cpl = (v.lo(F.GUEST_SS_ACCESS_RIGHTS) >>> 5) & 3, cr4 = v.lo(F.GUEST_CR4);
  const eptOn = (v.lo(F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS) >>> 31) !== 0 &&
    (v.lo(F.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS) & 2) !== 0;
  const lo = v.lo(F.EPT_POINTER), hi = v.hi(F.EPT_POINTER);
  // explainTranslation reads the EPT's EP4TA and its accessed/dirty enable only (as GuestState's view does).
  const ept = eptOn ? { pml4: (hi & ADDR_HI) * 2 ** 32 + ((lo & ~0xfff) >>> 0), pagingWrites: (lo & EPTP_AD) !== 0 } as unknown as Ept : null;
  return {
    cr0: v.lo(F.GUEST_CR0), cr3Lo: v.lo(F.GUEST_CR3), cr3Hi: v.hi(F.GUEST_CR3), cr4, efer: guestEfer(v),
    pdpte, cpl, flags: v.lo(F.GUEST_RFLAGS), memory: cpu.memory, ept, identity: false, user: cpl === 3,
    canonicalShift: cr4 & CR4_LA57 ? 7 : 16,
  };
}

/** The guest's code size by its VMCS state: 8, 4 or 2 bytes. */
function guestCodeSize(v: Vmcs): 2 | 4 | 8 {
  const ar = v.lo(Field.GUEST_CS_ACCESS_RIGHTS);
  if ((guestEfer(v) & EFER_LMA) !== 0 && (ar & CS_L) !== 0) return 8;
  return (v.lo(Field.GUEST_CR0) & CR0_PE) !== 0 && (ar & CS_DB) !== 0 ? 4 : 2;
}

/** The record of the exit just completed, read from the current VMCS `v` as the exit left it (28.2, 28.3). */
export function bareExitRecord(v: Vmcs, cpu: Cpu, seq: number, sinceLast: number): ExitRecord {
  const F = Field, full = v.lo(F.EXIT_REASON) >>> 0, reason = full & 0xffff;
  const qualification = u64(v, F.EXIT_QUALIFICATION), layout = QUALIFICATION_LAYOUTS[reason];
  const rip = u64(v, F.GUEST_RIP), size = guestCodeSize(v);
  const linear = size === 8 ? rip : (rip + u64(v, F.GUEST_CS_BASE)) & 0xffffffffn;
  let insn: string | null = null;
  const entryFailure = (full & EXIT_REASON_VM_ENTRY_FAILURE) !== 0;
  if (!entryFailure) {
    const bytes = new BareReader(cpu).read(linear, guestTranslation(v, cpu));
    if (bytes.length > 0) insn = disassemble(bytes, (size * 8) as 16 | 32 | 64, rip).text;
  }
  const linearValid = reason === ExitReason.EPT_VIOLATION ? (qualification & BigInt(EptViolation.GUEST_LINEAR_ADDRESS_VALID)) !== 0n
    : reason === ExitReason.IO_INSTRUCTION && (qualification & 0x10n) !== 0n;
  return {
    seq, reason, name: exitReasonName(reason) ?? `reason ${reason}`, entryFailure, qualification,
    decoded: layout === undefined ? {} : decodeBits(layout, v.lo(F.EXIT_QUALIFICATION), v.hi(F.EXIT_QUALIFICATION)),
    rip, length: v.lo(F.VM_EXIT_INSTRUCTION_LENGTH), instructionInformation: v.lo(F.VM_EXIT_INSTRUCTION_INFORMATION), insn,
    guestLinear: linearValid ? u64(v, F.GUEST_LINEAR_ADDRESS) : null,
    guestPhysical: reason === ExitReason.EPT_VIOLATION || reason === ExitReason.EPT_MISCONFIGURATION ? u64(v, F.GUEST_PHYSICAL_ADDRESS) : null,
    interruption: event(v.lo(F.VM_EXIT_INTERRUPTION_INFORMATION), v.lo(F.VM_EXIT_INTERRUPTION_ERROR_CODE)),
    idtVectoring: event(v.lo(F.IDT_VECTORING_INFORMATION_FIELD), v.lo(F.IDT_VECTORING_ERROR_CODE)),
    sinceLast, instructions: cpu.insnCount,
  };
}

/** Reads an instruction's bytes (up to 15, fewer at an unmapped page) through a translation, without side effects. */
class BareReader {
  constructor(private readonly cpu: Cpu) {}

  read(linear: bigint, state: TranslationState): Uint8Array {
    const out: number[] = [], memory = this.cpu.memory;
    for (let k = 0; k < 15; k++) {
      const t = explainTranslation(state, BigInt.asUintN(64, linear + BigInt(k)), 'fetch');
      if (t.outcome.kind !== 'ok') break;
      const pa = Number(t.hostPhysical!);
      if (pa >= memory.size) break;
      out.push(memory.isAllocated(Math.floor(pa / PAGE_SIZE)) ? memory.read8(pa) & 0xff : 0);
    }
    return Uint8Array.from(out);
  }
}
