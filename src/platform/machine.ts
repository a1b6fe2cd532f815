/**
 * A PC: the processor with its port devices, the 8259A pair, the local APIC and
 * the I/O APIC, and the run loop that keeps guest time. Guest time advances
 * with the instructions retired (1 instruction = 1 ns) and, while the processor
 * halts, jumps to the next device deadline, so every run is deterministic.
 */
import { Cpu } from '../cpu/cpu.js';
import type { MmioRegion } from '../cpu/memory.js';
import { MAXPHYADDR } from '../cpu/paging.js';
import type { CpuProfile } from '../cpu/profile.js';
import { run } from '../cpu/run.js';
import { ApicBus, LocalApic, MSR_IA32_APIC_BASE, MSR_IA32_TSC_DEADLINE, X2APIC_MSR_FIRST, X2APIC_MSR_LAST } from './apic.js';
import { IoApic, IOAPIC_DEFAULT_BASE } from './ioapic.js';
import { createPcPorts, type PcPorts } from './pc.js';

export interface MachineOptions {
  /** Bytes of RAM (default 64 MiB). */
  memorySize?: number;
  profile?: CpuProfile;
  /** Bytes the guest writes to COM1. */
  serialOut?: (byte: number) => void;
}

/** Why a machine run ended. */
export type MachineStop =
  | { kind: 'exit'; status: number }       // the guest wrote to the debug-exit port
  | { kind: 'halt' }                       // HLT with nothing that could ever wake it
  | { kind: 'shutdown' }                   // triple fault
  | { kind: 'budget' }
  | { kind: 'exception'; vector: number; errorCode: number | null };

const APIC_PAGE = 0x1000;
/** LVT delivery modes: ExtINT (111b) on LINT0 and NMI (100b) on LINT1, unmasked (SDM vol. 3A, 11.5.1). */
const LVT_EXTINT = 7 << 8, LVT_NMI = 4 << 8;
const APIC_LVT_LINT0 = 0x350, APIC_LVT_LINT1 = 0x360, APIC_SVR = 0xf0;

export class PcMachine {
  readonly cpu: Cpu;
  readonly ports: PcPorts;
  readonly apic: LocalApic;
  readonly ioapic: IoApic;
  private exitStatus: number | null = null;

  constructor(options: MachineOptions = {}) {
    const memorySize = options.memorySize ?? 64 * 1024 * 1024;
    const cpu = new Cpu({ memorySize, profile: options.profile });
    this.cpu = cpu;
    cpu.deliverExceptions = true;
    this.ports = createPcPorts({
      instructions: () => cpu.retired,
      memorySize,
      serialOut: options.serialOut,
      onExit: (status) => { this.exitStatus = status; cpu.stop({ kind: 'stop' }); },
    });
    const clock = this.ports.clock;
    cpu.now = () => clock.ns();

    // The run loop asks for interrupts at every block boundary; the APIC's answer can
    // only change after it signals, the PIC raises INTR, or the guest writes an APIC
    // register or takes a vector. Until then the last "nothing" stands.
    let changed = true;
    const touch = (): void => { changed = true; cpu.signalInterrupt(); };
    const bus = new ApicBus();
    this.apic = new LocalApic({
      id: 0, bsp: true, now: () => clock.ns(), bus, maxPhysAddr: MAXPHYADDR, onEvent: touch,
    });
    this.ioapic = new IoApic(bus, 1);
    const apic = this.apic, pic = this.ports.pic;
    const apicMsrs = {
      get msrLo() { return apic.msrLo; },
      get msrHi() { return apic.msrHi; },
      rdmsr: (msr: number) => apic.rdmsr(msr),
      wrmsr: (msr: number, lo: number, hi: number) => { touch(); return apic.wrmsr(msr, lo, hi); },
    };
    cpu.msrs.attach(MSR_IA32_APIC_BASE, MSR_IA32_APIC_BASE, apicMsrs);
    cpu.msrs.attach(MSR_IA32_TSC_DEADLINE, MSR_IA32_TSC_DEADLINE, apicMsrs);
    cpu.msrs.attach(X2APIC_MSR_FIRST, X2APIC_MSR_LAST, apicMsrs);
    cpu.memory.mapMmio(mmio(() => apic.mmioBase, APIC_PAGE, {
      read: (offset, n) => apic.read(offset, n),
      write: (offset, n, v) => { touch(); apic.write(offset, n, v); },
    }));
    cpu.memory.mapMmio(mmio(() => IOAPIC_DEFAULT_BASE, APIC_PAGE, this.ioapic));

    // The 8259A's INTR reaches the processor through LINT0, programmed as firmware
    // leaves it: virtual-wire mode, LINT0 = ExtINT, LINT1 = NMI (MP spec 3.6.2.2).
    pic.onIntr = (level) => { apic.setLint(0, level); touch(); };
    // MOV CR8 reads and writes the APIC's TPR; lowering it may uncover an interrupt.
    cpu.cr8 = { readCr8: () => apic.readCr8(), writeCr8: (v) => { apic.writeCr8(v); touch(); } };
    // A port access may change what the 8259A would deliver (an EOI, a new mask) without
    // moving its INTR line: every access counts as a change.
    const ports = this.ports.bus;
    cpu.io = {
      read: (port, size) => { const v = ports.read(port, size); touch(); return v; },
      write: (port, size, value) => { ports.write(port, size, value); touch(); },
    };
    apic.write(APIC_SVR, 4, 0x1ff);
    apic.write(APIC_LVT_LINT0, 4, LVT_EXTINT);
    apic.write(APIC_LVT_LINT1, 4, LVT_NMI);
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
    };
  }

  /** Guest time of the next device event, or Infinity. */
  private nextDeadline(): number {
    return Math.min(this.ports.clock.nextDeadline(), this.apic.nextDeadline());
  }

  /** Fires every device event that is due. */
  private runDue(): void {
    this.ports.clock.runDue();
    if (this.apic.nextDeadline() <= this.ports.clock.ns()) { this.apic.tick(); this.cpu.signalInterrupt(); }
  }

  /** Runs until the guest exits, halts for good, shuts down, or `budget` instructions have retired. */
  run(budget: number): MachineStop {
    const cpu = this.cpu, clock = this.ports.clock;
    const end = cpu.insnCount + budget;
    while (cpu.insnCount < end) {
      const slice = Math.max(1, Math.min(end - cpu.insnCount, this.nextDeadline() - clock.ns()));
      const before = cpu.insnCount;
      const stop = run(cpu, slice);
      this.runDue();
      // The budget ran out on events that retire no instruction (an exception loop).
      if (stop.kind === 'budget' && cpu.insnCount === before) return stop;
      if (this.exitStatus !== null) return { kind: 'exit', status: this.exitStatus };
      if (stop.kind === 'shutdown' || stop.kind === 'exception') return stop;
      if (stop.kind === 'halt') {
        // HLT: wait for the next event if an interrupt could end the wait.
        const wake = this.nextDeadline();
        if (cpu.interrupts!.hasInterrupt() && (cpu.rflags & 0x200)) continue;
        if (!(cpu.rflags & 0x200) || wake === Infinity) return { kind: 'halt' };
        clock.skipTo(wake);
        this.runDue();
      }
    }
    return { kind: 'budget' };
  }
}

/** An MMIO region of `size` bytes at a base that may move (-1: switched off). */
function mmio(base: () => number, size: number, device: { read(offset: number, size: 1 | 2 | 4): number; write(offset: number, size: 1 | 2 | 4, value: number): void }): MmioRegion {
  return {
    contains: (pa) => { const b = base(); return b >= 0 && pa >= b && pa < b + size; },
    read: (pa, n) => device.read(pa - base(), n),
    write: (pa, n, v) => device.write(pa - base(), n, v),
  };
}
