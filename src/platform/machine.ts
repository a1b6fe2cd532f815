/**
 * A PC: the processor with its port devices, the 8259A pair, the local APIC and
 * the I/O APIC, and the run loop that keeps guest time. Guest time advances
 * with the instructions retired (1 instruction = 1 ns) and, while the processor
 * halts, jumps to the next device deadline, so every run is deterministic.
 */
import { Cpu, type InterruptSource, type StopReason } from '../cpu/cpu.js';
import { PhysicalMemory, type MmioRegion } from '../cpu/memory.js';
import { MAXPHYADDR } from '../cpu/paging.js';
import type { CpuProfile } from '../cpu/profile.js';
import { IF } from '../cpu/regs.js';
import { run } from '../cpu/run.js';
import { ApicBus, LocalApic, MSR_IA32_APIC_BASE, MSR_IA32_TSC_DEADLINE, X2APIC_MSR_FIRST, X2APIC_MSR_LAST } from './apic.js';
import { IoApic, IOAPIC_DEFAULT_BASE } from './ioapic.js';
import { createPcPorts, type PcPorts } from './pc.js';

export interface MachineOptions {
  /** Bytes of RAM (default 64 MiB). */
  memorySize?: number;
  /**
   * Bytes of physical memory above RAM that the firmware does not report (the
   * BIOS data area, CMOS, fw_cfg and the loaders see `memorySize` only): where
   * a hypervisor keeps its own structures (src/hv). Default 0.
   */
  hostMemory?: number;
  profile?: CpuProfile;
  /** Bytes the guest writes to COM1. */
  serialOut?: (byte: number) => void;
  /** Logical processors (default 1): processor 0 is the BSP, the others wait for INIT and SIPI. */
  cpus?: number;
  /** Called for each processor once it is built: hardware-assist units (VMX) attach here. */
  attach?: (cpu: Cpu) => void;
}

/** Why a machine run ended. */
export type MachineStop =
  | { kind: 'exit'; status: number }       // the guest wrote to the debug-exit port
  | { kind: 'halt' }                       // every processor halted with nothing that could ever wake it
  | { kind: 'shutdown' }                   // triple fault
  | { kind: 'budget' }
  | { kind: 'exception'; vector: number; errorCode: number | null };

/** Most processors a machine models (APIC IDs fit the xAPIC's 8-bit destination, broadcast 0xFF excluded). */
export const MAX_CPUS = 255;
/**
 * Instructions a processor runs before the next one takes its turn. Processors
 * take turns in a fixed order, so a run interleaves the same way every time;
 * within a turn guest time advances with the running processor, and a round
 * lasts as long as its longest turn.
 */
export const QUANTUM = 1000;
/** A lone processor's round: it has no one to take turns with, so the length only bounds the time between `onRound` calls. */
export const SOLO_QUANTUM = 1 << 22;

const APIC_PAGE = 0x1000;
/** LVT delivery modes: ExtINT (111b) on LINT0 and NMI (100b) on LINT1, unmasked (SDM vol. 3A, 11.5.1). */
const LVT_EXTINT = 7 << 8, LVT_NMI = 4 << 8;
const APIC_LVT_LINT0 = 0x350, APIC_LVT_LINT1 = 0x360, APIC_SVR = 0xf0;

export class PcMachine {
  /** The logical processors; cpus[0] is the bootstrap processor. */
  readonly cpus: readonly Cpu[];
  /** Each processor's local APIC (APIC ID = index). */
  readonly apics: readonly LocalApic[];
  readonly ports: PcPorts;
  readonly ioapic: IoApic;
  /** Bytes of RAM, as the firmware reports it. */
  readonly memorySize: number;
  /** Each processor's interrupt controller as its `interrupts` source: the local APIC, with the 8259A through LINT0. */
  readonly interruptSources: readonly InterruptSource[];
  private exitStatus: number | null = null;
  /** The processor whose turn it is: MMIO to the APIC page reaches its own APIC. */
  private current = 0;
  /** Guest time at the start of this round, and the running processor's count then. */
  private roundStart = 0;
  private turnStart = 0;

  constructor(options: MachineOptions = {}) {
    const memorySize = options.memorySize ?? 64 * 1024 * 1024;
    this.memorySize = memorySize;
    const n = options.cpus ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > MAX_CPUS) throw new RangeError(`a machine has 1 to ${MAX_CPUS} processors, not ${n}`);
    const cpus: Cpu[] = [], apics: LocalApic[] = [], sources: InterruptSource[] = [];
    this.cpus = cpus; this.apics = apics; this.interruptSources = sources;
    this.ports = createPcPorts({
      // Guest time: the rounds so far, plus the running processor's part of this one.
      instructions: () => {
        const cpu = cpus[this.current];
        return this.roundStart + (cpu === undefined ? 0 : cpu.retired - this.turnStart);
      },
      memorySize,
      cpuCount: n,
      serialOut: options.serialOut,
      onExit: (status) => { this.exitStatus = status; cpus[this.current]!.stop({ kind: 'stop' }); },
    });
    const clock = this.ports.clock, pic = this.ports.pic, bus = new ApicBus();
    clock.onSooner = () => this.endSliceEarly();
    const memory = new PhysicalMemory(memorySize + (options.hostMemory ?? 0));
    this.ioapic = new IoApic(bus, 1);
    // A port access may change what the 8259A would deliver (an EOI, a new mask)
    // without moving its INTR line: every access counts as a change.
    const touchAll = (): void => { for (const t of touches) t(); };
    const touches: (() => void)[] = [];
    const ports = this.ports.bus;
    const io = {
      read: (port: number, size: 1 | 2 | 4) => { const v = ports.read(port, size); touchAll(); return v; },
      write: (port: number, size: 1 | 2 | 4, value: number) => { ports.write(port, size, value); touchAll(); },
    };
    for (let i = 0; i < n; i++) {
      const cpu = new Cpu({ memory, profile: options.profile });
      const apic = new LocalApic({ id: i, bsp: i === 0, now: () => clock.ns(), bus, maxPhysAddr: MAXPHYADDR, onEvent: () => touch() });
      const touch = this.attach(cpu, apic);
      cpu.bsp = i === 0;
      cpu.waitForSipi = i !== 0; // application processors wait for INIT and SIPI (SDM vol. 3A, 9.4.2)
      cpu.msrs.apicId = i;
      cpu.msrs.packageCpus = n;
      cpu.io = io;
      cpus.push(cpu); apics.push(apic); touches.push(touch); sources.push(cpu.interrupts!);
    }
    for (const cpu of cpus) {
      cpu.peers = cpus;
      options.attach?.(cpu);
    }
    memory.mapMmio({
      contains: (pa) => { const b = apics[this.current]!.mmioBase; return b >= 0 && pa >= b && pa < b + APIC_PAGE; },
      read: (pa, size) => { const a = apics[this.current]!; return a.read(pa - a.mmioBase, size); },
      write: (pa, size, v) => { const a = apics[this.current]!; touches[this.current]!(); a.write(pa - a.mmioBase, size, v); this.endSliceEarly(); },
    });
    memory.mapMmio(mmio(() => IOAPIC_DEFAULT_BASE, APIC_PAGE, this.ioapic));

    // The 8259A's INTR reaches every processor's LINT0; firmware leaves the BSP in
    // virtual-wire mode, LINT0 = ExtINT and LINT1 = NMI (MP spec 3.6.2.2), the others masked.
    pic.onIntr = (level) => { for (let i = 0; i < n; i++) { apics[i]!.setLint(0, level); touches[i]!(); } };
    writeBiosDataArea(memory, memorySize);
    const bsp = apics[0]!;
    bsp.write(APIC_SVR, 4, 0x1ff);
    bsp.write(APIC_LVT_LINT0, 4, LVT_EXTINT);
    bsp.write(APIC_LVT_LINT1, 4, LVT_NMI);
  }

  /** The bootstrap processor. */
  get cpu(): Cpu { return this.cpus[0]!; }
  /** The status the guest asked for at the debug-exit port ((value << 1) | 1), or null. */
  get debugExitStatus(): number | null { return this.exitStatus; }
  /** The bootstrap processor's local APIC. */
  get apic(): LocalApic { return this.apics[0]!; }

  /** Instructions retired by all processors together. */
  get retired(): number {
    let total = 0;
    for (const cpu of this.cpus) total += cpu.insnCount;
    return total;
  }

  /** Connects a processor to its local APIC; returns the APIC's "look again" signal. */
  private attach(cpu: Cpu, apic: LocalApic): () => void {
    const pic = this.ports.pic;
    // The run loop asks for interrupts at every block boundary; the APIC's answer can
    // only change after it signals, the PIC raises INTR, or the guest writes an APIC
    // register or takes a vector. Until then the last "nothing" stands.
    let changed = true;
    const touch = (): void => {
      changed = true;
      cpu.signalInterrupt();
      if (apic.hasInit || apic.hasSipi) cpu.startupPending = true;
    };
    const apicMsrs = {
      get msrLo() { return apic.msrLo; },
      get msrHi() { return apic.msrHi; },
      rdmsr: (msr: number) => apic.rdmsr(msr),
      wrmsr: (msr: number, lo: number, hi: number) => { touch(); const done = apic.wrmsr(msr, lo, hi); this.endSliceEarly(); return done; },
    };
    cpu.msrs.attach(MSR_IA32_APIC_BASE, MSR_IA32_APIC_BASE, apicMsrs);
    cpu.msrs.attach(MSR_IA32_TSC_DEADLINE, MSR_IA32_TSC_DEADLINE, apicMsrs);
    cpu.msrs.attach(X2APIC_MSR_FIRST, X2APIC_MSR_LAST, apicMsrs);
    const clock = this.ports.clock;
    cpu.now = () => clock.ns();
    cpu.deliverExceptions = true;
    // MOV CR8 reads and writes the APIC's TPR; lowering it may uncover an interrupt.
    cpu.cr8 = { readCr8: () => apic.readCr8(), writeCr8: (v) => { apic.writeCr8(v); touch(); } };
    cpu.interrupts = {
      hasInterrupt: () => {
        if (!changed) return false;
        const any = apic.hasExtInt || apic.pendingVector() >= 0;
        changed = any;
        return any;
      },
      acknowledge: () => {
        changed = true;
        if (apic.hasExtInt) { apic.acknowledgeExtInt(); return pic.acknowledge(); }
        return apic.acknowledge();
      },
      hasNmi: () => apic.hasNmi,
      takeNmi: () => { apic.takeNmi(); },
      takeInit: () => {
        if (!apic.takeInit()) return false;
        apic.initReset();
        changed = true;
        return true;
      },
      takeSipi: () => apic.takeSipi(),
    };
    return touch;
  }

  /** Guest time of the next device event, or Infinity. */
  nextDeadline(): number {
    let d = this.ports.clock.nextDeadline();
    for (const a of this.apics) d = Math.min(d, a.nextDeadline());
    for (const c of this.cpus) d = Math.min(d, c.eventDeadline);
    return d;
  }

  /**
   * Runs processor `i` for at most `n` instructions: its turn in a round, or a
   * stretch of a guest under the hypervisor. A device deadline the guest arms
   * for before the end (a timer programmed through a port, the APIC page or an
   * MSR) ends the turn at that instruction.
   */
  runTurn(i: number, n: number): StopReason {
    const clock = this.ports.clock;
    clock.sliceEnd = clock.ns() + n;
    const stop = run(this.cpus[i]!, n);
    clock.sliceEnd = Infinity;
    return stop;
  }

  /** A deadline now comes before the running turn's end: the turn stops after this instruction. */
  private endSliceEarly(): void {
    const clock = this.ports.clock;
    if (clock.sliceEnd !== Infinity && this.nextDeadline() < clock.sliceEnd) this.cpus[this.current]!.stop({ kind: 'stop' });
  }

  /** Fires every device event that is due. */
  runDue(): void {
    const clock = this.ports.clock;
    clock.runDue();
    for (let i = 0; i < this.apics.length; i++) {
      const a = this.apics[i]!;
      if (a.nextDeadline() <= clock.ns()) { a.tick(); this.cpus[i]!.signalInterrupt(); }
    }
  }

  /**
   * Runs until the guest exits, every processor halts for good, one shuts down,
   * or `budget` instructions (all processors together) have retired.
   * `onRound` is called between rounds (a round is at most QUANTUM
   * instructions per processor, or SOLO_QUANTUM for a lone processor).
   */
  run(budget: number, onRound?: () => void): MachineStop {
    const cpus = this.cpus, clock = this.ports.clock;
    const quantum = cpus.length === 1 ? SOLO_QUANTUM : QUANTUM;
    let left = budget;
    while (left > 0) {
      const slice = Math.max(1, Math.min(quantum, this.nextDeadline() - clock.ns()));
      let longest = 0, stalled = false;
      for (let i = 0; i < cpus.length && left > 0; i++) {
        const cpu = cpus[i]!, before = cpu.insnCount;
        this.current = i;
        this.turnStart = cpu.retired;
        const stop = this.runTurn(i, Math.min(slice, left));
        const ran = cpu.insnCount - before;
        left -= ran;
        if (ran > longest) longest = ran;
        if (this.exitStatus !== null) return this.endRound(longest, { kind: 'exit', status: this.exitStatus });
        if (stop.kind === 'shutdown' || stop.kind === 'exception') return this.endRound(longest, stop);
        // The budget ran out on events that retire no instruction (an exception loop).
        if (stop.kind === 'budget' && ran === 0) stalled = true;
      }
      this.endRound(longest, null);
      onRound?.();
      this.runDue();
      if (stalled) return { kind: 'budget' };
      if (cpus.every(idle) && !this.wake()) return { kind: 'halt' };
    }
    return { kind: 'budget' };
  }

  /** Closes a round that lasted `longest` instructions of guest time. */
  private endRound<T>(longest: number, result: T): T {
    this.roundStart += longest;
    this.current = 0;
    this.turnStart = this.cpus[0]!.retired;
    return result;
  }

  /**
   * Every processor is idle (halted or waiting for a SIPI): moves time to the next
   * device event if it could wake one of them. False when nothing ever will.
   */
  private wake(): boolean {
    let wakeable = false;
    for (const cpu of this.cpus) {
      if (cpu.startupPending) return true;
      if (cpu.eventDeadline !== Infinity) wakeable = true; // an event of the processor's own (VMX-preemption timer)
      // An interrupt ends HLT when it can be taken: RFLAGS.IF, or in a guest whose
      // interrupts exit to the VMM whatever IF says (external-interrupt exiting).
      const takes = cpu.nonRoot ? cpu.virt.interruptEndsHalt(cpu) : (cpu.rflags & IF) !== 0;
      if (cpu.waitForSipi || !takes) continue;
      if (cpu.interrupts!.hasInterrupt()) return true;
      wakeable = true;
    }
    const wake = this.nextDeadline();
    if (!wakeable || wake === Infinity) return false;
    this.ports.clock.skipTo(wake);
    this.runDue();
    return true;
  }
}

/**
 * The BIOS data area at 400H as PC firmware leaves it for the loader and the
 * kernel (IBM PC/AT BIOS data area layout): COM1's I/O port, the equipment
 * word (one serial port), the base memory size in KiB, and the segment of the
 * extended BIOS data area just below 640 KiB. Kernels read these to find low
 * memory they may use (e.g. for an AP start-up trampoline).
 */
function writeBiosDataArea(memory: PhysicalMemory, memorySize: number): void {
  const ebda = Math.min(memorySize, 0x9fc00);
  const w16 = (at: number, v: number): void => { memory.write8(at, v & 0xff); memory.write8(at + 1, v >>> 8); };
  w16(0x400, 0x3f8);            // COM1
  w16(0x40e, ebda >>> 4);       // EBDA segment
  w16(0x410, 1 << 9);           // equipment: one serial port (bits 11:9)
  w16(0x413, ebda >>> 10);      // base memory in KiB
}

/** Halted, or waiting for a start-up IPI. */
function idle(cpu: Cpu): boolean {
  return cpu.halted || cpu.waitForSipi;
}

/** An MMIO region of `size` bytes at a base that may move (-1: switched off). */
function mmio(base: () => number, size: number, device: { read(offset: number, size: 1 | 2 | 4): number; write(offset: number, size: 1 | 2 | 4, value: number): void }): MmioRegion {
  return {
    contains: (pa) => { const b = base(); return b >= 0 && pa >= b && pa < b + size; },
    read: (pa, n) => device.read(pa - base(), n),
    write: (pa, n, v) => device.write(pa - base(), n, v),
  };
}
