/**
 * The hypervisor: a VM on a PC built around the processor model, its guest
 * run in VMX non-root operation and every VM exit serviced by a handler
 * written in TypeScript, as KVM or VMware's monitor would.
 *
 *   const vm = createVm(vmConfig({ memory: 32 << 20 }), { serialOut });
 *   vm.load(image);                    // the guest's state as the loader leaves it
 *   const stop = vm.run(1e9);          // run, handle, resume until the guest stops
 * or, one exit at a time:
 *   const e = vm.runUntilExit();       // an ExitRecord, or a VmStop
 *   vm.handle(e);                      // the handler table (replace or wrap any handler)
 *   vm.resume();                       // VMRESUME
 *
 * The platform devices (PIC, PIT, UART, CMOS, local APIC, I/O APIC, ...) are
 * the VM's virtual devices: the guest reaches ports through I/O exits and the
 * APIC pages through EPT violations. Their interrupts are injected at VM entry
 * (27.6), with interrupt-window exiting when the guest cannot take one
 * (interrupts.ts). The host gets control back at each device event the way a
 * VMM does, by an interrupt of its own: when guest time reaches the next
 * device deadline the host's timer interrupt arrives and, with external-
 * interrupt exiting, exits the guest (reason 1, vector HOST_TIMER_VECTOR in
 * the exit's interruption information with "acknowledge interrupt on exit").
 *
 * Guest time: 1 ns per guest instruction retired, executed or emulated by a
 * handler (Guest.retire), so a guest sees the same time under the hypervisor
 * as on the bare processor; handlers take no guest time.
 */
import { Field } from '../../vmcs/fields.js';
import type { Cpu, InterruptSource } from '../cpu/cpu.js';
import { PROFILES } from '../cpu/profile.js';
import { powerOn } from '../cpu/reset.js';
import { loadImage, type LoadOptions, type LoadResult } from '../platform/loaders/index.js';
import { PcMachine } from '../platform/machine.js';
import { SKYLAKE_VMX } from '../vmx/capabilities.js';
import { checkControls, checkGuestState, checkHostState, type EntryCheckFailure } from '../vmx/entry-checks.js';
import { vmEntry } from '../vmx/entry.js';
import { loadHostState, saveGuestState } from '../vmx/exit.js';
import type { Vmcs } from '../vmx/vmcs.js';
import { attachVmx, enterVmxOperation, makeCurrent, type Vmx } from '../vmx/vmx.js';
import type { VmConfig } from './config.js';
import { Guest } from './guest.js';
import { defaultHandlers, EMULATED_MSRS, type ExitHandler } from './handlers.js';
import { injectPending } from './interrupts.js';
import { exitRecord, type ExitRecord } from './record.js';
import { buildVmcs, forcedValue, hostLayout, MMIO_HOLE, ownedBits, type HostLayout } from './vmcs-setup.js';
import { installShadowHandlers } from './shadow/handlers.js';
import { MIN_POOL_PAGES, shadowPoolPages } from './shadow/pool.js';
import { ShadowPaging } from './shadow/shadow.js';

/** Why a guest that starts in real mode cannot run without EPT (one line for the CLI). */
const REAL_MODE_NEEDS_EPT = 'the guest starts in real mode (CR0.PE = 0), which VMX non-root operation runs only as an ' +
  'unrestricted guest, and unrestricted guest needs EPT (SDM vol. 3C 27.2.1.1): run it with EPT';

/** The vector of the host's timer interrupt (the host's choice; Linux uses ECH for its local APIC timer). */
export const HOST_TIMER_VECTOR = 0xec;

/** Why a VM stopped running. */
export type VmStop =
  | { readonly kind: 'exit'; readonly status: number }      // the guest wrote to the debug-exit port, or asked by hypercall
  | { readonly kind: 'halt' }                                // the guest halted and nothing can wake it
  | { readonly kind: 'shutdown' }                            // triple fault
  | { readonly kind: 'budget' }
  | { readonly kind: 'entry-failed'; readonly failure: EntryCheckFailure }
  | { readonly kind: 'unhandled'; readonly reason: number; readonly name: string; readonly detail: string };

/** A handler's verdict: re-enter the guest, or stop the VM. */
export type HandlerResult = 'resume' | VmStop;

/** The configuration is refused: by a VM-entry check (named, with its SDM section) or for another reason. */
export class VmConfigError extends Error {
  constructor(message: string, readonly failure: EntryCheckFailure | null = null) { super(message); }
}

export interface VmOptions {
  /** Bytes the guest writes to COM1. */
  serialOut?: (byte: number) => void;
}

export class Vm {
  readonly machine: PcMachine;
  readonly cpu: Cpu;
  readonly vmx: Vmx;
  readonly vmcs: Vmcs;
  readonly guest: Guest;
  readonly layout: HostLayout;
  /** Without EPT (config.ept false): the shadow paging that virtualizes the guest's MMU, and its counters; else null. */
  readonly shadow: ShadowPaging | null;
  /** The handler of each basic exit reason; replace or wrap entries to change how exits are served. */
  readonly handlers: Map<number, ExitHandler>;
  /** The guest's interrupt controllers (local APIC, 8259A through LINT0): what the hypervisor injects from. */
  readonly interrupts: InterruptSource;
  /** VM exits so far, successful VM entries, and device operations the handlers emulated (port and MMIO accesses). */
  exits = 0;
  entries = 0;
  deviceOps = 0;
  /** Where the guest's COM1 bytes (and hypercall prints) go. */
  readonly serialOut: (byte: number) => void;
  /**
   * Set by a debugger (src/debug) from its breakpoint or watchpoint hook: the
   * running runUntilExit returns at the next instruction boundary, in the
   * guest, as if its budget had run out ({ kind: 'budget' }); it clears the flag.
   */
  breakRequested = false;
  /** The host's timer interrupt is pending (it exits the guest at the next instruction boundary). */
  private hostInterrupt = false;
  private lastExitAt = 0;
  private entered = false;
  /** Shadow paging and a guest in real mode: it cannot be entered (load() and the first entry refuse it). */
  private realModeGuest = false;

  constructor(readonly config: VmConfig, options: VmOptions = {}) {
    const profile = PROFILES[config.profile];
    if (profile === undefined) throw new VmConfigError(`unknown CPU profile '${config.profile}' (known: ${Object.keys(PROFILES).join(', ')})`);
    if (!Number.isSafeInteger(config.memory) || config.memory < 0x100000 || config.memory % 4096 !== 0) {
      throw new VmConfigError(`guest memory must be a multiple of 4 KiB and at least 1 MiB, not ${config.memory}`);
    }
    this.serialOut = options.serialOut ?? ((): void => {});
    const shadowPages = config.ept ? 0 : config.shadowPages ?? shadowPoolPages(config.memory);
    if (!config.ept && (!Number.isSafeInteger(shadowPages) || shadowPages < MIN_POOL_PAGES)) {
      throw new VmConfigError(`the shadow-page pool needs at least ${MIN_POOL_PAGES} pages, not ${shadowPages}`);
    }
    this.layout = hostLayout(config.memory, shadowPages);
    if (!config.ept && config.memory + this.layout.size > MMIO_HOLE) {
      // PAE paging's CR3 has 32 bits: shadow roots, after guest RAM, must lie below the MMIO hole.
      throw new VmConfigError(`without EPT guest memory and the hypervisor's ${this.layout.size} bytes must fit below ` +
        `0x${MMIO_HOLE.toString(16)}: at most ${Math.floor((MMIO_HOLE - this.layout.size) / 2 ** 20)} MiB of guest memory`);
    }
    let vmx: Vmx | null = null;
    this.machine = new PcMachine({
      memorySize: config.memory, hostMemory: this.layout.size, profile,
      serialOut: this.serialOut, attach: (cpu) => { vmx = attachVmx(cpu, SKYLAKE_VMX); },
    });
    this.cpu = this.machine.cpu;
    this.vmx = vmx!;
    this.vmx.stopOnExit = true;
    this.interrupts = this.machine.interruptSources[0]!;
    // The processor's own interrupt controller is the host's: it raises only the host's timer interrupt.
    this.cpu.interrupts = {
      hasInterrupt: () => this.hostInterrupt,
      acknowledge: () => { this.hostInterrupt = false; return HOST_TIMER_VECTOR; },
    };
    this.vmcs = buildVmcs(this.cpu, this.vmx.caps, config, this.layout, [...EMULATED_MSRS, ...config.exits.msrIntercepts]);
    this.guest = new Guest(this.cpu, this.vmx, this.vmcs);
    this.handlers = defaultHandlers();
    // Without EPT the hypervisor shadows the guest's page tables (shadow/shadow.ts) and serves the exits that needs.
    this.shadow = config.ept ? null : new ShadowPaging(this);
    if (this.shadow !== null) {
      this.guest.paging = this.shadow;
      installShadowHandlers(this.handlers);
    }
    // Without an image the guest starts where a processor does at power-up: real mode at the reset vector.
    powerOn(this.cpu);
    this.takeGuestState();
  }

  /** Loads an image into guest memory and takes the guest's starting state from the loader (Multiboot, ELF, flat). */
  load(image: Uint8Array, options: LoadOptions = {}): LoadResult {
    if (this.entered) throw new VmConfigError('the guest is already running: load images before the first run');
    const result = loadImage(this.cpu, image, { ...options, memorySize: this.config.memory });
    this.takeGuestState();
    if (this.realModeGuest) throw new VmConfigError(REAL_MODE_NEEDS_EPT);
    return result;
  }

  /**
   * The processor's state becomes the guest-state area (as a VM exit saves it,
   * 28.3), the bits VMX operation fixes forced with the guest's own values in
   * the read shadows (25.6.6); then the processor becomes the host (28.5).
   */
  private takeGuestState(): void {
    const cpu = this.cpu, v = this.vmcs, caps = this.vmx.caps, owned = ownedBits(caps, this.config);
    makeCurrent(this.vmx, cpu, v);
    saveGuestState(this.vmx, cpu);
    v.set(Field.CR0_READ_SHADOW, cpu.cr0);
    v.set(Field.CR4_READ_SHADOW, cpu.cr4);
    v.set(Field.GUEST_CR0, forcedValue(cpu.cr0, caps.cr0Fixed0, caps.cr0Fixed1, owned.cr0));
    v.set(Field.GUEST_CR4, forcedValue(cpu.cr4, caps.cr4Fixed0, caps.cr4Fixed1, owned.cr4));
    v.set(Field.GUEST_IA32_EFER, cpu.efer);
    v.set(Field.GUEST_IA32_PAT, cpu.msrs.patLo, cpu.msrs.patHi);
    v.set(Field.GUEST_DR7, cpu.dr7);
    v.set(Field.GUEST_IA32_DEBUGCTL, cpu.msrs.debugCtl);
    v.set(Field.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD, 0);
    // Shadow paging: the guest's paging registers become the hypervisor's copy; the processor's point at the shadows.
    this.realModeGuest = this.shadow !== null && (cpu.cr0 & 1) === 0;
    this.shadow?.takeGuestState();
    loadHostState(this.vmx, cpu);
    enterVmxOperation(this.vmx, cpu, this.layout.vmxon);
    makeCurrent(this.vmx, cpu, v);
    // The configuration passes the checks of 27.2 and 27.3.1, or is refused by the first that fails.
    const failure = checkControls(cpu, v, caps) ?? checkHostState(cpu, v, caps) ??
      (this.realModeGuest ? null : checkGuestState(cpu, v, caps));
    if (failure !== null) {
      throw new VmConfigError(`the configuration fails the VM-entry check '${failure.check}' (SDM ${failure.section}): ${failure.detail}`, failure);
    }
  }

  /** Guest instructions retired so far. */
  get instructions(): number { return this.cpu.insnCount; }

  /**
   * Runs the guest until its next VM exit (entering it first if it has not
   * run yet) and returns the exit's record, or why the VM stopped. At most
   * `budget` guest instructions run.
   */
  runUntilExit(budget = Infinity): ExitRecord | VmStop {
    if (!this.entered) {
      if (this.realModeGuest) throw new VmConfigError(REAL_MODE_NEEDS_EPT);
      this.entered = true;
      const stop = this.enter(true);
      if (stop !== null) return stop;
    }
    const cpu = this.cpu, machine = this.machine, clock = machine.ports.clock;
    const end = cpu.insnCount + budget;
    for (;;) {
      if (!cpu.nonRoot) return this.recordExit();
      const left = end - cpu.insnCount;
      if (left <= 0) return this.stopInGuest({ kind: 'budget' });
      const slice = Math.max(1, Math.min(left, machine.nextDeadline() - clock.ns()));
      const stop = machine.runTurn(0, slice);
      const status = machine.debugExitStatus;
      if (status !== null) return this.stopInGuest({ kind: 'exit', status });
      if (stop.kind === 'vm-exit' || !cpu.nonRoot) return this.recordExit();
      if (stop.kind === 'shutdown') return this.stopInGuest({ kind: 'shutdown' });
      if (stop.kind === 'halt') {
        // The guest halted in non-root operation (HLT exiting off): time moves to the next device event.
        const next = machine.nextDeadline();
        if (next === Infinity) return this.stopInGuest({ kind: 'halt' });
        clock.skipTo(next);
      }
      // A device event is due: it fires, and the host's timer interrupt exits the guest.
      if (clock.ns() >= machine.nextDeadline() || stop.kind === 'halt') {
        machine.runDue();
        this.hostInterrupt = true;
        cpu.signalInterrupt();
      }
      // After the device events of this boundary, so that the run goes on exactly as it would have.
      if (this.breakRequested) {
        this.breakRequested = false;
        return this.stopInGuest({ kind: 'budget' });
      }
    }
  }

  /**
   * The VM stops while the processor is still in non-root operation: the
   * guest-state area takes the processor's state, as at an exit (28.3), so
   * that `guest` shows where the guest is; running on continues from the processor.
   */
  private stopInGuest(stop: VmStop): VmStop {
    saveGuestState(this.vmx, this.cpu);
    return stop;
  }

  private recordExit(): ExitRecord {
    this.exits++;
    // The host takes its own interrupt once back in root operation.
    this.hostInterrupt = false;
    const since = this.cpu.insnCount - this.lastExitAt;
    this.lastExitAt = this.cpu.insnCount;
    return exitRecord(this.guest, this.exits, since);
  }

  /** Serves `exit` with the handler of its reason; an exit with none stops the VM. */
  handle(exit: ExitRecord): HandlerResult {
    const handler = this.handlers.get(exit.reason);
    const result: HandlerResult = handler === undefined
      ? { kind: 'unhandled', reason: exit.reason, name: exit.name, detail: `no handler for exit reason ${exit.reason} (${exit.name})` }
      : handler(exit, this);
    const status = this.machine.debugExitStatus;
    return status !== null ? { kind: 'exit', status } : result;
  }

  /**
   * Re-enters the guest (VMRESUME): first the events the devices have for it
   * are injected, or an interrupt window is asked for (interrupts.ts). Returns
   * null, or why the entry failed.
   */
  resume(): VmStop | null {
    injectPending(this);
    return this.enter(false);
  }

  private enter(launch: boolean): VmStop | null {
    vmEntry(this.vmx, this.cpu, launch);
    const failure = this.vmx.lastEntryFailure;
    if (failure === null) this.entries++;
    if (failure === null || failure.kind === 'guest') return null; // a guest-state failure is an exit (27.8)
    return { kind: 'entry-failed', failure };
  }

  /**
   * Runs, handles and resumes until the guest stops or `budget` guest
   * instructions have retired; `between` is called before each stretch in the guest.
   */
  run(budget = Infinity, between?: () => void): VmStop {
    const end = this.cpu.insnCount + budget;
    for (;;) {
      between?.();
      const e = this.runUntilExit(end - this.cpu.insnCount);
      if ('kind' in e) return e;
      const result = this.handle(e);
      if (result !== 'resume') return result;
      const failed = this.resume();
      if (failed !== null) return failed;
    }
  }

  /**
   * The guest waits (HLT): guest time moves to the next device event until an
   * interrupt it can take is there. False when nothing will ever wake it.
   */
  idle(canTake: () => boolean): boolean {
    const machine = this.machine, clock = machine.ports.clock;
    for (;;) {
      if (canTake()) return true;
      const next = machine.nextDeadline();
      if (next === Infinity) return false;
      clock.skipTo(Math.max(next, clock.ns()));
      machine.runDue();
    }
  }

  /** The guest-physical address is a device's register page (local APIC or I/O APIC): MMIO, not memory. */
  isMmio(gpa: number): boolean {
    return gpa >= MMIO_HOLE && gpa < 2 ** 32;
  }
}

/** A VM for `config` (see VmConfig; vmConfig() fills in the defaults). Throws VmConfigError when the processor refuses it. */
export function createVm(config: VmConfig, options: VmOptions = {}): Vm {
  return new Vm(config, options);
}
