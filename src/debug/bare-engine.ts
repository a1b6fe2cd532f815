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
 * entry failed (VMfailValid, 27.2; or a VM exit with reason bit 31, 27.8).
 *
 * How it sees exits and entries without slowing the guest:
 * - `Vmx.stopOnExit` ends the processor's run after each completed exit;
 * - `Vmx.onEntryFailure` tells of each failed entry (the run stops after the
 *   failing VMLAUNCH/VMRESUME);
 * - after each exit, until the processor is seen in non-root operation again,
 *   the processor's execution hook (Cpu.executionHook) is armed: at each block
 *   boundary of the root-mode code it looks whether the entry has happened,
 *   and then takes the VMCS as the handler left it (what `vmcs diff` shows)
 *   and disarms itself, so that guest code runs at full speed. The hook also
 *   serves address breakpoints, as in the hypervisor engine.
 *
 * Time travel is not offered here: the snapshots of snapshot.ts are taken of
 * hvsim's own VM (src/hv), not of a bare machine.
 */
import { Field } from '../../vmcs/fields.js';
import type { VmcsField } from '../../vmcs/fields.js';
import { ExitReason, EXIT_REASON_VM_ENTRY_FAILURE, exitReasonName } from '../../vmcs/exit-reasons.js';
import { decodeBits, EptViolation, QUALIFICATION_LAYOUTS } from '../../vmcs/qualifications.js';
import { EXTERNAL_BREAK, type Cpu, type ExecutionHook } from '../cpu/cpu.js';
import { PAGE_SIZE } from '../cpu/memory.js';
import { ADDR_HI } from '../cpu/paging.js';
import { CS, IF } from '../cpu/regs.js';
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
import { conditionsHold, instructionsBefore, lastRecords, type Breakpoint, type BreakpointSpec } from './breakpoints.js';
import { existingFields, vmcsState, type VmcsState } from './vmcs-view.js';

/** How the run of a bare machine ended for good. */
export type BareEnd =
  | { readonly kind: 'exit'; readonly status: number }
  | { readonly kind: 'halt' }
  | { readonly kind: 'shutdown' }
  | { readonly kind: 'exception'; readonly vector: number; readonly errorCode: number | null };

/** Why a command of the bare engine came back. */
export interface BareStop {
  /**
   * - step: the steps asked for are done;
   * - exit: a VM exit completed (the processor is at HOST_RIP);
   * - entered: finish-handler: the VM entry succeeded, the processor is in non-root operation;
   * - entry-failed: a VM entry failed (`failure`; with `exit` when it ended in a VM exit, 27.8);
   * - breakpoint, limit, ended.
   */
  readonly reason: 'step' | 'exit' | 'entered' | 'entry-failed' | 'breakpoint' | 'limit' | 'ended';
  readonly breakpoint?: Breakpoint;
  readonly exit?: ExitRecord;
  readonly failure?: EntryCheckFailure;
  readonly ended?: BareEnd;
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
export interface BareSetup {
  readonly image: Uint8Array;
  readonly load?: LoadOptions;
  /** Bytes of RAM (default 64 MiB). */
  readonly memory?: number;
  readonly serialOut?: (byte: number) => void;
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
  readonly limit: number;
}

/** Where an instruction-pointer breakpoint stands: bits 63:32 and 31:0 of the linear address. */
interface AddressPoint { readonly bp: Breakpoint; readonly hi: number; readonly lo: number }

/** The debugger engine over a bare PcMachine (see the file comment). */
export class BareEngine implements ExecutionHook {
  readonly machine: PcMachine;
  readonly cpu: Cpu;
  readonly vmx: Vmx;
  /** The VMCS fields this processor has, in appendix-B order. */
  readonly fields: readonly VmcsField[];
  private readonly bps: Breakpoint[] = [];
  private addressPoints: AddressPoint[] = [];
  private nextId = 1;
  private exitCount = 0;
  private readonly history = new Map<number, BareExitHistory>();
  private lastVmcs: VmcsState | null = null;
  private endedWith: BareEnd | null = null;
  /** A failed VM entry told by the VMX unit during the last turn. */
  private failure: EntryCheckFailure | null = null;
  /** Looking for the next VM entry (after an exit, or before the first entry). */
  private watchEntry = true;
  /** The hook saw the entry and stopped the turn in front of the guest's first instruction. */
  private enteredNow = false;
  private stopAtEntry = false;
  private addressHit: Breakpoint | null = null;
  /** A breakpoint at this spot does not stop the command that starts on it. */
  private skip: { insns: number; hi: number; lo: number } | null = null;
  /** The run stands right after exit `atExitSeq` completed (no instruction of its handler has run). */
  private atExitSeq: number | null = null;
  private lastExitInsns = 0;

  /** Builds the machine and loads the image as `hvsim run --bare` does. Throws ImageError for a bad image. */
  constructor(setup: BareSetup) {
    let vmx: Vmx | null = null;
    this.machine = new PcMachine({ memorySize: setup.memory, serialOut: setup.serialOut, attach: (cpu) => { vmx = attachVmx(cpu); } });
    this.cpu = this.machine.cpu;
    this.vmx = vmx!;
    this.vmx.stopOnExit = true;
    this.vmx.onEntryFailure = (f): void => { this.failure = f; this.cpu.stop({ kind: 'stop' }); };
    this.fields = existingFields(this.vmx.caps);
    loadImage(this.cpu, setup.image, setup.load ?? {});
  }

  // ---- where the processor is ----------------------------------------------------------

  /** VM exits so far. */
  get exits(): number { return this.exitCount; }
  /** Instructions retired so far. */
  get insns(): number { return this.cpu.insnCount; }
  /** Why the run ended for good, or null. */
  get ended(): BareEnd | null { return this.endedWith; }
  /** The exit the processor stands right after (at HOST_RIP, nothing of its handler run), or null. */
  get atExit(): ExitRecord | null { return this.atExitSeq === null ? null : this.history.get(this.atExitSeq)?.record ?? null; }
  /** The most recent exit, or null before the first. */
  get lastExit(): ExitRecord | null { return this.history.get(this.exitCount)?.record ?? null; }
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

  /** Adds a breakpoint (address: a linear RIP in whatever operation the processor is; exit; entry-failure; instruction). */
  addBreakpoint(spec: BreakpointSpec): Breakpoint {
    const bp: Breakpoint = { id: this.nextId++, spec, hits: 0 };
    this.bps.push(bp);
    this.rebuild();
    return bp;
  }

  deleteBreakpoint(id: number): boolean {
    const k = this.bps.findIndex((b) => b.id === id);
    if (k < 0) return false;
    this.bps.splice(k, 1);
    this.rebuild();
    return true;
  }

  get breakpoints(): readonly Breakpoint[] { return this.bps; }

  private rebuild(): void {
    this.addressPoints = [];
    for (const bp of this.bps) {
      if (bp.spec.kind !== 'address') continue;
      const a = BigInt.asUintN(64, bp.spec.address);
      this.addressPoints.push({ bp, hi: Number(a >> 32n) | 0, lo: Number(a & 0xffffffffn) });
    }
  }

  private pointAt(lo: number, hi: number): Breakpoint | null {
    for (const p of this.addressPoints) if (p.lo === lo && p.hi === hi) return p.bp;
    return null;
  }

  /** The processor's execution hook (see the file comment): the VM entry, and address breakpoints. */
  allow(cpu: Cpu, limit: number): number {
    if (this.watchEntry && cpu.nonRoot) {
      this.watchEntry = false;
      this.noteEntry();
      if (this.stopAtEntry) { this.enteredNow = true; return 0; }
    }
    if (this.addressPoints.length === 0) return limit;
    const mode = cpu.codeSize, ip = cpu.ripLo, base = mode === 8 ? 0 : cpu.segBase[2 * CS]!;
    const lo = mode === 8 ? ip >>> 0 : (base + ip) >>> 0, hi = mode === 8 ? cpu.ripHi : 0;
    const s = this.skip, skipHere = s !== null && s.insns === cpu.insnCount && s.lo === lo && s.hi === hi;
    if (!skipHere) {
      const bp = this.pointAt(lo, hi);
      if (bp !== null) { this.addressHit = bp; return 0; }
    }
    return instructionsBefore(cpu, cpu.blocks.peek(), limit, this.isPoint);
  }

  /** An address breakpoint is set at linear (lo, hi). */
  private readonly isPoint = (lo: number, hi: number): boolean => this.pointAt(lo, hi) !== null;

  /** The VM entry after the last exit has happened: its VMCS is what the handler left. */
  private noteEntry(): void {
    const h = this.history.get(this.exitCount), v = this.vmx.current;
    if (h === undefined || v === null || h.atEntry !== null) return;
    this.lastVmcs = h.atEntry = vmcsState(v, this.fields, this.lastVmcs);
  }

  private arm(): void {
    const cpu = this.cpu, on = this.addressPoints.length > 0 || this.watchEntry;
    cpu.executionHook = on ? this : null;
    cpu.breakOnExecute = on ? cpu.breakOnExecute | EXTERNAL_BREAK : cpu.breakOnExecute & ~EXTERNAL_BREAK;
  }

  // ---- running -------------------------------------------------------------------------

  /** Runs `n` steps: an instruction retired, or a VM exit (the exiting instruction does not retire), is one step. */
  step(n: number, limit: number): BareStop {
    return this.run({ steps: n, limit });
  }

  /** Runs to the `n`th next VM exit, stopping at HOST_RIP with the exit complete. */
  nextExit(n: number, limit: number): BareStop {
    return this.run({ exitsLeft: n, limit });
  }

  /** Runs until a breakpoint, the end of the run, or the limit. */
  continue(limit: number): BareStop {
    return this.run({ limit });
  }

  /**
   * Runs the root-mode handler until the processor is back in non-root
   * operation or a VM entry fails (the caller checks that the processor is in
   * VMX root operation).
   */
  finishHandler(limit: number): BareStop {
    return this.run({ toEntry: true, limit });
  }

  private run(goal: BareGoal): BareStop {
    const cpu = this.cpu, machine = this.machine, clock = machine.ports.clock;
    const startInsns = cpu.insnCount, startExits = this.exitCount;
    const mode = cpu.codeSize, base = mode === 8 ? 0 : cpu.segBase[2 * CS]!;
    this.skip = { insns: cpu.insnCount, lo: mode === 8 ? cpu.ripLo >>> 0 : (base + cpu.ripLo) >>> 0, hi: mode === 8 ? cpu.ripHi : 0 };
    this.stopAtEntry = goal.toEntry === true;
    try {
      for (;;) {
        if (this.endedWith !== null) return { reason: 'ended', ended: this.endedWith };
        const done = cpu.insnCount - startInsns + this.exitCount - startExits;
        if (goal.steps !== undefined && done >= goal.steps) return { reason: 'step' };
        const insns = cpu.insnCount;
        if (insns > startInsns) {
          const bp = this.bps.find((b) => b.spec.kind === 'instruction' && b.spec.count === insns);
          if (bp !== undefined) { bp.hits++; return { reason: 'breakpoint', breakpoint: bp }; }
        }
        if (insns >= goal.limit) return { reason: 'limit' };
        let budget = Math.min(SLICE, goal.limit - insns);
        if (goal.steps !== undefined) budget = Math.min(budget, goal.steps - done);
        for (const b of this.bps) if (b.spec.kind === 'instruction' && b.spec.count > insns) budget = Math.min(budget, b.spec.count - insns);
        this.arm();
        this.addressHit = null;
        this.enteredNow = false;
        this.failure = null;
        const slice = Math.max(1, Math.min(budget, machine.nextDeadline() - clock.ns()));
        const before = cpu.insnCount, exitsBefore = this.exitCount;
        const stop = machine.runTurn(0, slice);
        if (cpu.insnCount !== before || stop.kind === 'vm-exit') { this.atExitSeq = null; this.skip = null; }
        const status = machine.debugExitStatus;
        if (status !== null) this.endedWith = { kind: 'exit', status };
        else if (stop.kind === 'shutdown') this.endedWith = { kind: 'shutdown' };
        else if (stop.kind === 'exception') this.endedWith = { kind: 'exception', vector: stop.vector, errorCode: stop.errorCode };
        else if (stop.kind === 'halt' && !this.wake()) this.endedWith = { kind: 'halt' };
        machine.runDue();
        const exit = stop.kind === 'vm-exit' && this.exitCount === exitsBefore ? this.recordExit() : null;
        // Set by the VMX unit's callback and the hook during the turn (the compiler cannot see it).
        const failure = this.failure as EntryCheckFailure | null, addressHit = this.addressHit as Breakpoint | null;
        this.failure = null;
        if (exit !== null && exit.entryFailure) {
          const f = this.vmx.lastEntryFailure ?? undefined;
          const bp = this.bps.find((b) => b.spec.kind === 'entry-failure');
          if (bp !== undefined) { bp.hits++; return { reason: 'breakpoint', breakpoint: bp, exit, failure: f }; }
          if (goal.toEntry === true) return { reason: 'entry-failed', exit, failure: f };
        } else if (failure !== null && failure.kind !== 'guest') {
          const bp = this.bps.find((b) => b.spec.kind === 'entry-failure');
          if (bp !== undefined) { bp.hits++; return { reason: 'breakpoint', breakpoint: bp, failure }; }
          if (goal.toEntry === true) return { reason: 'entry-failed', failure };
        }
        if (addressHit !== null) {
          addressHit.hits++;
          return { reason: 'breakpoint', breakpoint: addressHit };
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
    } finally {
      this.stopAtEntry = false;
      this.skip = null;
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
    return record;
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
