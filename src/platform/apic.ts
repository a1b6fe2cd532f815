/**
 * The local APIC in xAPIC and x2APIC mode, and the APIC bus that carries
 * interrupt messages between local APICs and I/O APICs.
 *
 * Section numbers are those of Intel SDM vol. 3A chapter 11 "Advanced Programmable
 * Interrupt Controller (APIC)" in the current edition (chapter 10 in older ones);
 * the titles are quoted so a section can be found in any edition.
 *
 * Time: the APIC reads guest time through `now()` (ns; with 1 instruction = 1 ns
 * this is also the TSC that IA32_TSC_DEADLINE compares with). It never schedules
 * anything itself: `nextDeadline()` is the time at which the owner must call
 * `tick()` (Infinity when the timer is idle), and the optional `onDeadline` hook
 * reports every change of it so a scheduler can be kept in step. The timer's
 * current count is computed from `now()` when read, so it needs no ticking.
 *
 * Events: `onEvent` is called when something the processor must look at becomes
 * pending (a deliverable interrupt, NMI, SMI, INIT, SIPI, ExtINT); the run loop
 * sets its pending-work flag there and consumes the events at an instruction
 * boundary through `pendingVector()/acknowledge()`, `takeNmi()`, `takeInit()`,
 * `takeSipi()`, `takeSmi()`, `hasExtInt/acknowledgeExtInt()`.
 *
 * Choices where the SDM leaves the behaviour open or model-specific:
 * - MMIO (11.4.1 "The Local APIC Block Diagram": registers are 16-byte aligned and
 *   accessed as aligned 32-bit loads and stores). Reads of 1, 2 or 4 bytes inside
 *   the first dword of a register return those bytes of it; the other 12 bytes of
 *   each 16-byte slot read as 0. Writes take effect only as 32-bit stores at a
 *   16-byte-aligned offset; any other write is dropped.
 * - The xAPIC ID register is read-only (11.4.6 "Local APIC ID": writability is model
 *   specific); the ID is the initial APIC ID given to the constructor.
 * - Fixed and lowest-priority interrupts reaching a software-disabled APIC are
 *   dropped (11.4.7.2 names only INIT, NMI, SMI and SIPI as answered normally).
 * - ICR delivery is synchronous, so the delivery-status bit always reads 0 (idle).
 * - Lowest-priority delivery (11.6.2.4 "Lowest Priority Delivery Mode") goes to the
 *   software-enabled target with the lowest arbitration priority (APR), ties to
 *   the APIC attached to the bus first. Lowest-priority IPIs are supported, so the
 *   "Redirectable IPI" error is never set.
 * - An IPI with an illegal vector (0-15) in fixed or lowest-priority mode sets "Send
 *   Illegal Vector" and is not sent. INIT level de-assert is accepted and has no
 *   effect (11.6.1: not supported on the Pentium 4 and later). ICR delivery modes
 *   011 and 111 (reserved) send nothing.
 * - LINT0/LINT1 and I/O APIC pins take the asserted state of their source; the
 *   polarity bit is stored for software but does not invert the input.
 * - Timer mode 11b (reserved) counts as one-shot. A write to the LVT timer that
 *   changes the mode disarms the timer (11.5.4.1) by clearing the initial count
 *   and IA32_TSC_DEADLINE. A divide-configuration write while counting keeps the
 *   current count and continues at the new rate.
 * - Version register: 0x15, max LVT entry 6 (CMCI present), bit 24 when
 *   EOI-broadcast suppression is offered. The timer's input clock is
 *   `timerTickNs` ns per tick before the divider (default 10 ns, a 100 MHz clock).
 */

/** Delivery modes of messages, LVT entries and the ICR (11.5.1 "Local Vector Table", 11.6.1 "Interrupt Command Register (ICR)"). */
export const enum DeliveryMode {
  FIXED = 0, LOWEST_PRIORITY = 1, SMI = 2, NMI = 4, INIT = 5, STARTUP = 6, EXTINT = 7,
}

/** ICR destination shorthands (11.6.1). */
export const enum Shorthand { NONE = 0, SELF = 1, ALL_INCLUDING_SELF = 2, ALL_EXCLUDING_SELF = 3 }

/** Error Status Register bits (11.5.3 "Error Handling"). Checksum and accept errors are P6/Pentium only. */
export const enum ApicError {
  REDIRECTABLE_IPI = 0x10, SEND_ILLEGAL_VECTOR = 0x20, RECEIVED_ILLEGAL_VECTOR = 0x40,
  ILLEGAL_REGISTER_ADDRESS = 0x80,
}

/** LVT entries in the order of their registers at 320H-370H, then CMCI (2F0H). */
export const enum Lvt { TIMER = 0, THERMAL = 1, PMC = 2, LINT0 = 3, LINT1 = 4, ERROR = 5, CMCI = 6 }

/**
 * xAPIC register offsets in the 4-KiB page (11.4.1, table "Local APIC Register Address Map").
 * The x2APIC MSR of a register is 800H + (offset >> 4) (11.12.1.2 "x2APIC Register Address Space").
 */
export const enum ApicReg {
  ID = 0x020, VERSION = 0x030, TPR = 0x080, APR = 0x090, PPR = 0x0a0, EOI = 0x0b0, RRD = 0x0c0,
  LDR = 0x0d0, DFR = 0x0e0, SVR = 0x0f0, ISR = 0x100, TMR = 0x180, IRR = 0x200, ESR = 0x280,
  LVT_CMCI = 0x2f0, ICR_LOW = 0x300, ICR_HIGH = 0x310, LVT_TIMER = 0x320, LVT_THERMAL = 0x330,
  LVT_PMC = 0x340, LVT_LINT0 = 0x350, LVT_LINT1 = 0x360, LVT_ERROR = 0x370,
  TIMER_INITIAL_COUNT = 0x380, TIMER_CURRENT_COUNT = 0x390, TIMER_DIVIDE = 0x3e0, SELF_IPI = 0x3f0,
}

export const MSR_IA32_APIC_BASE = 0x1b;
export const MSR_IA32_TSC_DEADLINE = 0x6e0;
export const X2APIC_MSR_FIRST = 0x800;
export const X2APIC_MSR_LAST = 0x8ff;
/** The default xAPIC page (11.4.4 "Local APIC Status and Location"). */
export const APIC_DEFAULT_BASE = 0xfee00000;

// IA32_APIC_BASE bits (11.4.4, 11.12.1 "Detecting and Enabling x2APIC Mode").
const BASE_BSP = 1 << 8, BASE_EXTD = 1 << 10, BASE_EN = 1 << 11;

// SVR bits (11.9 "Spurious Interrupt").
const SVR_ENABLE = 1 << 8, SVR_SUPPRESS_EOI_BROADCAST = 1 << 12;

// LVT and ICR bits (11.5.1, 11.6.1).
const LVT_MASKED = 1 << 16, LVT_REMOTE_IRR = 1 << 14, LVT_LEVEL = 1 << 15;
const ICR_LOGICAL = 1 << 11, ICR_ASSERT = 1 << 14, ICR_LEVEL = 1 << 15;

/** Writable bits of each LVT entry (11.5.1, figure "Local Vector Table (LVT)"). */
const LVT_WRITABLE = [0x000700ff, 0x000107ff, 0x000107ff, 0x0001a7ff, 0x0001a7ff, 0x000100ff, 0x000107ff];
/** Read-only bits: delivery status, and remote IRR on LINT0/1. */
const LVT_READ_ONLY = [0x1000, 0x1000, 0x1000, 0x5000, 0x5000, 0x1000, 0x1000];

// Timer modes, LVT timer bits 18:17 (11.5.4 "APIC Timer").
const TIMER_PERIODIC = 1, TIMER_TSC_DEADLINE = 2;

/** An interrupt message on the APIC bus. Objects are reused: valid only during `ApicBus.deliver`. */
export interface ApicMessage {
  vector: number;
  deliveryMode: number;
  /** 0 physical, 1 logical. */
  destMode: number;
  /** 0 edge, 1 level. */
  trigger: number;
  /** 1 assert, 0 de-assert. */
  level: number;
  shorthand: number;
  /** Destination: 8 bits in xAPIC format, 32 bits in x2APIC format. */
  dest: number;
  /** True when `dest` is a 32-bit x2APIC destination (broadcast FFFF_FFFFH instead of FFH). */
  x2apic: boolean;
  /** The sending local APIC (for the SELF and ALL_EXCLUDING_SELF shorthands); null from an I/O APIC. */
  source: LocalApic | null;
}

export function newApicMessage(): ApicMessage {
  return { vector: 0, deliveryMode: 0, destMode: 0, trigger: 0, level: 1, shorthand: 0, dest: 0, x2apic: false, source: null };
}

/** Something that hears EOIs of level-triggered interrupts (an I/O APIC). */
export interface EoiListener { eoi(vector: number): void }

/**
 * The system bus as far as interrupts go: routes messages from local APICs and
 * I/O APICs to the local APICs they address, and EOI broadcasts to I/O APICs
 * (11.6 "Issuing Interprocessor Interrupts", 11.6.2 "Determining IPI Destination").
 */
export class ApicBus {
  readonly apics: LocalApic[] = [];
  private readonly eoiListeners: EoiListener[] = [];

  attach(apic: LocalApic): void {
    if (!this.apics.includes(apic)) this.apics.push(apic);
  }

  attachEoiListener(listener: EoiListener): void {
    this.eoiListeners.push(listener);
  }

  /** Delivers one message; returns how many local APICs accepted it. */
  deliver(msg: ApicMessage): number {
    const apics = this.apics;
    if (msg.deliveryMode === DeliveryMode.LOWEST_PRIORITY) {
      // 11.6.2.4: one processor among the destinations, the one at the lowest priority.
      let best: LocalApic | null = null;
      let bestPriority = 256;
      for (let i = 0; i < apics.length; i++) {
        const a = apics[i];
        if (!a.softwareEnabled || !this.targets(a, msg)) continue;
        const p = a.arbitrationPriority();
        if (p < bestPriority) { best = a; bestPriority = p; }
      }
      return best !== null && best.accept(msg) ? 1 : 0;
    }
    let accepted = 0;
    for (let i = 0; i < apics.length; i++) {
      const a = apics[i];
      if (this.targets(a, msg) && a.accept(msg)) accepted++;
    }
    return accepted;
  }

  /** A local APIC's EOI for a level-triggered vector (11.8.5 "Signaling Interrupt Servicing Completion"). */
  eoi(vector: number): void {
    for (let i = 0; i < this.eoiListeners.length; i++) this.eoiListeners[i].eoi(vector);
  }

  private targets(a: LocalApic, msg: ApicMessage): boolean {
    if (!a.hardwareEnabled) return false; // 11.4.3: as if the processor had no APIC
    switch (msg.shorthand) {
      case Shorthand.SELF: return a === msg.source;
      case Shorthand.ALL_INCLUDING_SELF: return true;
      case Shorthand.ALL_EXCLUDING_SELF: return a !== msg.source;
      default: return a.matchesDestination(msg.destMode, msg.dest, msg.x2apic);
    }
  }
}

export interface LocalApicOptions {
  /** Initial APIC ID (CPUID.01H:EBX[31:24], the x2APIC ID in CPUID.0BH:EDX). */
  id: number;
  /** IA32_APIC_BASE.BSP after RESET (default false). */
  bsp?: boolean;
  /** Guest time in ns; also the TSC for IA32_TSC_DEADLINE. */
  now: () => number;
  /** The bus IPIs go out on; the APIC attaches itself. Default: a bus of its own (self IPIs only). */
  bus?: ApicBus;
  /** ns per timer input tick before the divider (default 10). */
  timerTickNs?: number;
  /** MAXPHYADDR for the reserved bits of IA32_APIC_BASE (default 46). */
  maxPhysAddr?: number;
  /** Offer EOI-broadcast suppression (version bit 24, SVR bit 12; 11.8.5). Default false. */
  eoiBroadcastSuppression?: boolean;
  /** Called whenever `nextDeadline()` changes. */
  onDeadline?: (deadlineNs: number) => void;
  /** Called when an interrupt or event becomes pending for the processor. */
  onEvent?: () => void;
}

/** Index of the highest set bit of a 256-bit register held as 8 dwords, or -1. */
function highestBit(r: Uint32Array): number {
  for (let i = 7; i >= 0; i--) {
    const w = r[i];
    if (w !== 0) return i * 32 + 31 - Math.clz32(w);
  }
  return -1;
}

export class LocalApic {
  /** The initial APIC ID; the xAPIC ID register holds its low 8 bits. */
  readonly id: number;
  readonly bus: ApicBus;

  /** IA32_APIC_BASE, low and high halves. */
  baseLo = 0;
  baseHi = 0;

  readonly irr = new Uint32Array(8);
  readonly isr = new Uint32Array(8);
  readonly tmr = new Uint32Array(8);
  readonly lvt = new Uint32Array(7);
  tpr = 0;
  svr = 0xff;
  /** xAPIC logical destination and destination format (x2APIC derives its LDR from the ID). */
  ldr = 0;
  dfr = 0xffffffff;
  /** ESR as software reads it, and the errors found since the last ESR write (11.5.3). */
  esr = 0;
  private errorsSinceWrite = 0;
  private inErrorDelivery = false;
  icrLo = 0;
  icrHi = 0;

  // Timer (11.5.4): the count started at `timerStart` from `timerInitial`, counting every `tickNs`.
  timerInitial = 0;
  timerDivide = 0;
  private tickNs: number;
  private timerStart = 0;
  private deadline = Infinity;
  tscDeadlineLo = 0;
  tscDeadlineHi = 0;

  // Events held for the processor.
  private nmi = false;
  private smi = false;
  private init = false;
  private sipiVector = -1;
  private extIntLatched = false;
  private readonly lintAsserted = [false, false];

  /** RDMSR results (unsigned halves); valid after `rdmsr` returned true. */
  msrLo = 0;
  msrHi = 0;

  private readonly now: () => number;
  private readonly timerTickNs: number;
  private readonly bsp: boolean;
  private readonly basePhysMaskHi: number;
  private readonly suppressionOffered: boolean;
  private readonly onDeadline: ((ns: number) => void) | undefined;
  private readonly onEvent: (() => void) | undefined;
  private readonly msg = newApicMessage();

  constructor(options: LocalApicOptions) {
    this.id = options.id >>> 0;
    this.now = options.now;
    this.bsp = options.bsp ?? false;
    this.timerTickNs = options.timerTickNs ?? 10;
    this.tickNs = this.timerTickNs * 2;
    const maxPhys = options.maxPhysAddr ?? 46;
    this.basePhysMaskHi = maxPhys >= 64 ? -1 >>> 0 : ((2 ** (maxPhys - 32)) - 1) >>> 0;
    this.suppressionOffered = options.eoiBroadcastSuppression ?? false;
    this.onDeadline = options.onDeadline;
    this.onEvent = options.onEvent;
    this.bus = options.bus ?? new ApicBus();
    this.bus.attach(this);
    this.msg.source = this;
    this.reset();
  }

  // ---------------------------------------------------------------- state

  /** IA32_APIC_BASE[11]: the APIC is globally enabled. */
  get hardwareEnabled(): boolean { return (this.baseLo & BASE_EN) !== 0; }
  /** IA32_APIC_BASE[10]: x2APIC mode. */
  get x2apicMode(): boolean { return (this.baseLo & BASE_EXTD) !== 0; }
  /** SVR[8], and the APIC globally enabled. */
  get softwareEnabled(): boolean { return this.hardwareEnabled && (this.svr & SVR_ENABLE) !== 0; }

  /** Physical address of the xAPIC page, or -1 when the MMIO interface is off (disabled or x2APIC; 11.12.2). */
  get mmioBase(): number {
    if (!this.hardwareEnabled || this.x2apicMode) return -1;
    return this.baseHi * 0x100000000 + ((this.baseLo & 0xfffff000) >>> 0);
  }

  /** RESET (11.4.7.1 "Local APIC State After Power-Up or Reset"): xAPIC mode at FEE00000H. */
  reset(): void {
    this.baseLo = (APIC_DEFAULT_BASE | BASE_EN | (this.bsp ? BASE_BSP : 0)) >>> 0;
    this.baseHi = 0;
    this.nmi = this.smi = this.init = this.extIntLatched = false;
    this.sipiVector = -1;
    this.resetRegisters();
  }

  /**
   * INIT (11.4.7.3 "Local APIC State After an INIT Reset"; 11.12.5.1 "x2APIC States":
   * the mode and the APIC ID are kept, every other register is initialized). The
   * processor calls this when it performs the INIT that `takeInit()` reported;
   * events already held (a SIPI that followed the INIT) stay.
   */
  initReset(): void {
    this.resetRegisters();
  }

  private resetRegisters(): void {
    this.irr.fill(0); this.isr.fill(0); this.tmr.fill(0);
    this.lvt.fill(LVT_MASKED);
    this.tpr = 0; this.svr = 0xff; this.ldr = 0; this.dfr = 0xffffffff;
    this.esr = 0; this.errorsSinceWrite = 0;
    this.icrLo = 0; this.icrHi = 0;
    this.timerInitial = 0;
    this.timerDivide = 0;
    this.tickNs = this.timerTickNs * 2;
    this.tscDeadlineLo = this.tscDeadlineHi = 0;
    this.setDeadline(Infinity);
  }

  get version(): number {
    return 0x15 | (6 << 16) | (this.suppressionOffered ? 1 << 24 : 0);
  }

  /** The LDR as software reads it; in x2APIC mode derived from the ID (11.12.10.2 "Deriving Logical x2APIC ID from the Local x2APIC ID"). */
  get logicalDestination(): number {
    if (this.x2apicMode) return (((this.id >>> 4) << 16) | (1 << (this.id & 0xf))) >>> 0;
    return this.ldr;
  }

  /** Processor priority (11.8.3.1 "Task and Processor Priorities"). */
  processorPriority(): number {
    const isrv = Math.max(highestBit(this.isr), 0);
    return (this.tpr >>> 4) >= (isrv >>> 4) ? this.tpr : isrv & 0xf0;
  }

  /** Arbitration priority (11.6.2.4, figure "Arbitration Priority Register (APR)"). */
  arbitrationPriority(): number {
    const isrv = Math.max(highestBit(this.isr), 0);
    const irrv = Math.max(highestBit(this.irr), 0);
    const tprClass = this.tpr >>> 4;
    if (tprClass >= irrv >>> 4 && tprClass > isrv >>> 4) return this.tpr;
    return Math.max(this.tpr & 0xf0, isrv & 0xf0, irrv & 0xf0);
  }

  // ---------------------------------------------------------------- processor interface

  /**
   * The fixed interrupt the APIC would present now: the highest IRR vector whose
   * priority class is above PPR's (11.8.4 "Interrupt Acceptance for Fixed Interrupts"), or -1.
   */
  pendingVector(): number {
    const v = highestBit(this.irr);
    if (v < 0 || (v >>> 4) <= (this.processorPriority() >>> 4)) return -1;
    return v;
  }

  /**
   * Interrupt acknowledge: moves the highest deliverable IRR bit to ISR and returns
   * its vector. With nothing deliverable (priority raised since the request) it
   * returns the spurious vector and leaves ISR alone (11.9 "Spurious Interrupt").
   */
  acknowledge(): number {
    const v = this.pendingVector();
    if (v < 0) return this.svr & 0xff;
    const bit = 1 << (v & 31);
    this.irr[v >>> 5] &= ~bit;
    this.isr[v >>> 5] |= bit;
    return v;
  }

  get hasNmi(): boolean { return this.nmi; }
  get hasSmi(): boolean { return this.smi; }
  get hasInit(): boolean { return this.init; }
  get hasSipi(): boolean { return this.sipiVector >= 0; }

  /** Consumes a pending NMI. */
  takeNmi(): boolean { const r = this.nmi; this.nmi = false; return r; }
  takeSmi(): boolean { const r = this.smi; this.smi = false; return r; }
  /** Consumes a pending INIT; the processor then performs INIT and calls `initReset()`. */
  takeInit(): boolean { const r = this.init; this.init = false; return r; }
  /** Consumes a pending start-up IPI: its vector (start at vector << 12), or -1. */
  takeSipi(): number { const v = this.sipiVector; this.sipiVector = -1; return v; }

  /**
   * INTR from an external (8259) controller: an ExtINT message, LINT0/1 asserted with
   * delivery mode ExtINT (11.5.1), or LINT0 itself when the APIC is globally
   * disabled (11.4.3: then the processor is one without an on-chip APIC).
   */
  get hasExtInt(): boolean {
    if (this.extIntLatched) return true;
    if (!this.hardwareEnabled) return this.lintAsserted[0];
    for (let pin = 0; pin < 2; pin++) {
      const e = this.lvt[Lvt.LINT0 + pin];
      if (this.lintAsserted[pin] && !(e & LVT_MASKED) && ((e >>> 8) & 7) === DeliveryMode.EXTINT) return true;
    }
    return false;
  }

  /** The processor ran the INTA cycle for an ExtINT (the vector came from the 8259). */
  acknowledgeExtInt(): void { this.extIntLatched = false; }

  /** MOV from CR8: TPR[7:4] (11.8.6 "Task Priority in IA-32e Mode"). */
  readCr8(): number { return this.tpr >>> 4; }

  /** MOV to CR8: TPR[7:4] = value[3:0], TPR[3:0] = 0 (11.8.6.1). */
  writeCr8(value: number): void {
    this.tpr = (value & 0xf) << 4;
    this.notifyIfDeliverable();
  }

  /** A local interrupt pin (LINT0/LINT1) changes: `asserted` is the source's request state. */
  setLint(pin: 0 | 1, asserted: boolean): void {
    const was = this.lintAsserted[pin];
    this.lintAsserted[pin] = asserted;
    if (!this.hardwareEnabled) {
      // 11.4.3: without an APIC, LINT0 is INTR and LINT1 is NMI (edge).
      if (pin === 1 && asserted && !was) this.latchNmi();
      else if (pin === 0 && asserted) this.event();
      return;
    }
    const e = this.lvt[Lvt.LINT0 + pin];
    if (e & LVT_MASKED) return;
    const mode = (e >>> 8) & 7;
    if (mode === DeliveryMode.EXTINT) { if (asserted) this.event(); return; } // always level (11.5.1)
    if (pin === 0 && mode === DeliveryMode.FIXED && (e & LVT_LEVEL)) { this.serviceLint0Level(); return; }
    if (asserted && !was) this.deliverLocal(mode, e & 0xff); // edge (LINT1 is edge only, 11.5.1)
  }

  /** Thermal, performance-counter overflow or CMCI event: delivered through its LVT entry. */
  signalLvt(entry: Lvt.THERMAL | Lvt.PMC | Lvt.CMCI): void {
    this.fireLvt(entry);
  }

  // ---------------------------------------------------------------- timer

  /** Guest time (ns) at which `tick()` must be called next; Infinity when idle. */
  nextDeadline(): number { return this.deadline; }

  /** Runs the timer up to `now()`: fires the LVT timer interrupt if the deadline passed (11.5.4). */
  tick(): void {
    const t = this.now();
    if (t < this.deadline) return;
    const mode = this.timerMode();
    if (mode === TIMER_PERIODIC) {
      // Reload: the count restarts from the initial count at each period boundary.
      const period = this.timerInitial * this.tickNs;
      this.setDeadline(this.timerStart + (Math.floor((t - this.timerStart) / period) + 1) * period);
    } else {
      // One-shot stops at 0; TSC-deadline disarms itself and clears the MSR (11.5.4.1).
      if (mode === TIMER_TSC_DEADLINE) this.tscDeadlineLo = this.tscDeadlineHi = 0;
      this.setDeadline(Infinity);
    }
    this.fireLvt(Lvt.TIMER);
  }

  private timerMode(): number { return (this.lvt[Lvt.TIMER] >>> 17) & 3; }

  /** The current-count register, computed from the time elapsed (11.5.4). */
  currentCount(): number {
    if (this.timerInitial === 0 || this.timerMode() === TIMER_TSC_DEADLINE) return 0;
    const ticks = Math.floor((this.now() - this.timerStart) / this.tickNs);
    if (this.timerMode() === TIMER_PERIODIC) return this.timerInitial - (ticks % this.timerInitial);
    return ticks >= this.timerInitial ? 0 : this.timerInitial - ticks;
  }

  private setDeadline(ns: number): void {
    if (ns === this.deadline) return;
    this.deadline = ns;
    this.onDeadline?.(ns);
  }

  private writeInitialCount(value: number): void {
    if (this.timerMode() === TIMER_TSC_DEADLINE) return; // 11.5.4.1: ignored
    // 11.5.4: a write starts counting from the new value; 0 stops the timer.
    this.timerInitial = value >>> 0;
    this.timerStart = this.now();
    this.setDeadline(this.timerInitial === 0 ? Infinity : this.timerStart + this.timerInitial * this.tickNs);
  }

  private writeDivide(value: number): void {
    const count = this.currentCount();
    this.timerDivide = value & 0xb;
    // 11.5.4, figure "Divide Configuration Register": bits 3,1:0; 111b divides by 1.
    const code = ((this.timerDivide >>> 1) & 4) | (this.timerDivide & 3);
    this.tickNs = this.timerTickNs * (1 << ((code + 1) & 7));
    if (count > 0) {
      // Keep the current count; the rest of the period runs at the new rate.
      this.timerStart = this.now() - (this.timerInitial - count) * this.tickNs;
      this.setDeadline(this.timerStart + this.timerInitial * this.tickNs);
    }
  }

  private writeLvt(index: number, value: number): void {
    let v = (value & LVT_WRITABLE[index]) | (this.lvt[index] & LVT_READ_ONLY[index]);
    if (!(this.svr & SVR_ENABLE)) v |= LVT_MASKED; // 11.4.7.2: masks stay set while software-disabled
    const oldMode = this.timerMode();
    this.lvt[index] = v >>> 0;
    if (index === Lvt.TIMER && this.timerMode() !== oldMode) {
      // 11.5.4.1: a write that changes the timer mode disarms the timer.
      this.timerInitial = 0;
      this.tscDeadlineLo = this.tscDeadlineHi = 0;
      this.setDeadline(Infinity);
    }
    if (index === Lvt.LINT0) this.serviceLint0Level();
  }

  private writeTscDeadline(lo: number, hi: number): void {
    if (this.timerMode() !== TIMER_TSC_DEADLINE) return; // 11.5.4.1: writes ignored in other modes
    this.tscDeadlineLo = lo >>> 0;
    this.tscDeadlineHi = hi >>> 0;
    // Non-zero arms; 0 disarms. A deadline already passed fires at once.
    const d = this.tscDeadlineHi * 0x100000000 + this.tscDeadlineLo;
    this.setDeadline(d === 0 ? Infinity : d);
    this.tick();
  }

  // ---------------------------------------------------------------- acceptance

  /** Whether this APIC is addressed by a destination (11.6.2.1 physical, 11.6.2.2 logical, 11.12.10 x2APIC). */
  matchesDestination(destMode: number, dest: number, x2apicFormat: boolean): boolean {
    dest >>>= 0;
    if (dest === (x2apicFormat ? 0xffffffff : 0xff)) return true; // broadcast, physical and logical
    const x2 = this.x2apicMode;
    if (destMode === 0) return dest === (x2 ? this.id : this.id & 0xff);
    if (x2) {
      // Logical x2APIC: cluster in bits 31:16, a bit per member in 15:0 (11.12.10.2).
      const ldr = this.logicalDestination;
      return dest >>> 16 === ldr >>> 16 && (dest & ldr & 0xffff) !== 0;
    }
    const id = this.ldr >>> 24;
    const model = this.dfr >>> 28;
    if (model === 0xf) return (id & dest) !== 0; // flat model: MDA is a bit mask
    if (model === 0) return id >>> 4 === dest >>> 4 && (id & dest & 0xf) !== 0; // cluster model
    return false;
  }

  /** A message addressed to this APIC (called by the bus). Returns whether it was accepted. */
  accept(msg: ApicMessage): boolean {
    return this.acceptInterrupt(msg.deliveryMode, msg.vector, msg.trigger);
  }

  /** 11.8.4 and figure "Interrupt Acceptance Flow Chart for the Local APIC". */
  private acceptInterrupt(mode: number, vector: number, trigger: number): boolean {
    switch (mode) {
      case DeliveryMode.FIXED:
      case DeliveryMode.LOWEST_PRIORITY: {
        if (!this.softwareEnabled) return false;
        if (vector < 16) { this.signalError(ApicError.RECEIVED_ILLEGAL_VECTOR); return false; }
        const i = vector >>> 5, bit = 1 << (vector & 31);
        this.irr[i] |= bit;
        // TMR records the trigger mode for the EOI (11.8.4).
        if (trigger) this.tmr[i] |= bit; else this.tmr[i] &= ~bit;
        this.notifyIfDeliverable();
        return true;
      }
      case DeliveryMode.NMI: this.latchNmi(); return true;
      case DeliveryMode.SMI: this.smi = true; this.event(); return true;
      case DeliveryMode.INIT: this.init = true; this.event(); return true;
      case DeliveryMode.STARTUP: this.sipiVector = vector & 0xff; this.event(); return true;
      case DeliveryMode.EXTINT: this.extIntLatched = true; this.event(); return true;
      default: return false;
    }
  }

  private latchNmi(): void { this.nmi = true; this.event(); }
  private event(): void { this.onEvent?.(); }
  private notifyIfDeliverable(): void { if (this.pendingVector() >= 0) this.event(); }

  /** A local source fires through its LVT entry (11.5.1). */
  private fireLvt(index: number): void {
    const e = this.lvt[index];
    if (e & LVT_MASKED) return;
    if (index === Lvt.TIMER || index === Lvt.ERROR) { this.deliverLocal(DeliveryMode.FIXED, e & 0xff); return; }
    const mode = (e >>> 8) & 7;
    // INIT and ExtINT are not supported for the thermal, PMC and CMCI entries (11.5.1).
    if (mode === DeliveryMode.INIT || mode === DeliveryMode.EXTINT) return;
    this.deliverLocal(mode, e & 0xff);
  }

  private deliverLocal(mode: number, vector: number): void {
    if (mode === DeliveryMode.FIXED || mode === DeliveryMode.SMI || mode === DeliveryMode.NMI ||
        mode === DeliveryMode.INIT || mode === DeliveryMode.EXTINT) {
      this.acceptInterrupt(mode, vector, 0);
    } // other encodings are reserved for LVT entries: nothing is delivered
  }

  /** Level-triggered fixed LINT0: delivered while asserted and remote IRR is clear (11.5.1). */
  private serviceLint0Level(): void {
    const e = this.lvt[Lvt.LINT0];
    if (!this.lintAsserted[0] || (e & (LVT_MASKED | LVT_REMOTE_IRR)) || !(e & LVT_LEVEL) ||
        ((e >>> 8) & 7) !== DeliveryMode.FIXED || !this.hardwareEnabled) return;
    if (this.acceptInterrupt(DeliveryMode.FIXED, e & 0xff, 1)) this.lvt[Lvt.LINT0] = (e | LVT_REMOTE_IRR) >>> 0;
  }

  /** 11.5.3: errors are collected, and each one raises the error LVT interrupt. */
  private signalError(bit: number): void {
    this.errorsSinceWrite |= bit;
    if (this.inErrorDelivery) return; // an illegal error vector must not recurse
    this.inErrorDelivery = true;
    this.fireLvt(Lvt.ERROR);
    this.inErrorDelivery = false;
  }

  /** EOI (11.8.5 "Signaling Interrupt Servicing Completion"). */
  private eoi(): void {
    const v = highestBit(this.isr);
    if (v < 0) return;
    const i = v >>> 5, bit = 1 << (v & 31);
    this.isr[i] &= ~bit;
    if (this.tmr[i] & bit) {
      const lint0 = this.lvt[Lvt.LINT0];
      if ((lint0 & LVT_REMOTE_IRR) && (lint0 & 0xff) === v) {
        this.lvt[Lvt.LINT0] = (lint0 & ~LVT_REMOTE_IRR) >>> 0;
        this.serviceLint0Level();
      }
      // Level-triggered: broadcast to the I/O APICs unless suppressed (SVR bit 12).
      if (!(this.svr & SVR_SUPPRESS_EOI_BROADCAST)) this.bus.eoi(v);
    }
    this.notifyIfDeliverable();
  }

  // ---------------------------------------------------------------- IPIs

  /** Sends the IPI the ICR describes (11.6.1); `dest` is 8-bit (xAPIC) or 32-bit (x2APIC). */
  private sendIpi(icr: number, dest: number): void {
    const mode = (icr >>> 8) & 7;
    const vector = icr & 0xff;
    if (mode === 3 || mode === DeliveryMode.EXTINT) return; // reserved for IPIs
    if ((mode === DeliveryMode.FIXED || mode === DeliveryMode.LOWEST_PRIORITY) && vector < 16) {
      this.signalError(ApicError.SEND_ILLEGAL_VECTOR);
      return;
    }
    // INIT level de-assert (level 0, trigger level): only synchronized arbitration IDs on old parts.
    if (mode === DeliveryMode.INIT && !(icr & ICR_ASSERT) && (icr & ICR_LEVEL)) return;
    const m = this.msg;
    m.vector = vector;
    m.deliveryMode = mode;
    m.destMode = (icr & ICR_LOGICAL) ? 1 : 0;
    m.trigger = (icr & ICR_LEVEL) ? 1 : 0;
    m.level = (icr & ICR_ASSERT) ? 1 : 0;
    m.shorthand = (icr >>> 18) & 3;
    m.dest = dest >>> 0;
    m.x2apic = this.x2apicMode;
    this.bus.deliver(m);
  }

  // ---------------------------------------------------------------- register file

  /** Reads register `index` (= xAPIC offset >> 4), the parts both modes share. */
  private readRegister(index: number): number {
    if (index >= 0x10 && index < 0x28) {
      const r = index < 0x18 ? this.isr : index < 0x20 ? this.tmr : this.irr;
      return r[index & 7];
    }
    if (index >= 0x32 && index <= 0x37) return this.lvt[index - 0x32];
    switch (index) {
      case 0x02: return this.x2apicMode ? this.id : ((this.id & 0xff) << 24) >>> 0;
      case 0x03: return this.version;
      case 0x08: return this.tpr;
      case 0x09: return this.arbitrationPriority();
      case 0x0a: return this.processorPriority();
      case 0x0d: return this.logicalDestination;
      case 0x0e: return this.dfr;
      case 0x0f: return this.svr;
      case 0x28: return this.esr;
      case 0x2f: return this.lvt[Lvt.CMCI];
      case 0x30: return this.icrLo;
      case 0x31: return this.icrHi;
      case 0x38: return this.timerInitial;
      case 0x39: return this.currentCount();
      case 0x3e: return this.timerDivide;
      default: return 0; // EOI, remote read (RRD)
    }
  }

  /** Writes register `index` with the bits that mode allows already chosen. */
  private writeRegister(index: number, value: number): void {
    if (index >= 0x32 && index <= 0x37) { this.writeLvt(index - 0x32, value); return; }
    switch (index) {
      case 0x08: this.tpr = value & 0xff; this.notifyIfDeliverable(); return;
      case 0x0b: this.eoi(); return;
      case 0x0d: this.ldr = (value & 0xff000000) >>> 0; return;
      case 0x0e: this.dfr = (value | 0x0fffffff) >>> 0; return; // bits 27:0 read as 1s
      case 0x0f: {
        this.svr = value & (0x1ff | (this.suppressionOffered ? SVR_SUPPRESS_EOI_BROADCAST : 0));
        // 11.4.7.2: software-disabling sets every LVT mask bit.
        if (!(this.svr & SVR_ENABLE)) for (let i = 0; i < 7; i++) this.lvt[i] = (this.lvt[i] | LVT_MASKED) >>> 0;
        this.notifyIfDeliverable();
        return;
      }
      case 0x28:
        // 11.5.3: a write moves the errors found since the last write into ESR.
        this.esr = this.errorsSinceWrite;
        this.errorsSinceWrite = 0;
        return;
      case 0x2f: this.writeLvt(Lvt.CMCI, value); return;
      case 0x38: this.writeInitialCount(value); return;
      case 0x3e: this.writeDivide(value); return;
    }
  }

  // ---------------------------------------------------------------- xAPIC MMIO

  /** xAPIC registers that exist (reads and writes elsewhere set "Illegal Register Address"). */
  private static xapicDefined(index: number): boolean {
    return (index >= 0x02 && index <= 0x03) || (index >= 0x08 && index <= 0x28) || (index >= 0x2f && index <= 0x39) ||
      index === 0x3e;
  }

  /** MMIO read at `offset` in the APIC page. Returns an unsigned value of `size` bytes. */
  read(offset: number, size: 1 | 2 | 4): number {
    if (this.mmioBase < 0) return 0;
    const index = (offset >>> 4) & 0xff;
    if (!LocalApic.xapicDefined(index)) { this.signalError(ApicError.ILLEGAL_REGISTER_ADDRESS); return 0; }
    const within = offset & 0xf;
    if (within >= 4) return 0;
    const v = this.readRegister(index) >>> (within * 8);
    return size === 4 ? v >>> 0 : v & (size === 1 ? 0xff : 0xffff);
  }

  /** MMIO write at `offset` in the APIC page (only aligned 32-bit stores take effect; see the header). */
  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (this.mmioBase < 0) return;
    const index = (offset >>> 4) & 0xff;
    if (!LocalApic.xapicDefined(index)) { this.signalError(ApicError.ILLEGAL_REGISTER_ADDRESS); return; }
    if (size !== 4 || (offset & 0xf) !== 0) return;
    switch (index) {
      case 0x30: // writing the low dword sends the IPI (11.6.1)
        this.icrLo = value & 0x000ccfff;
        this.sendIpi(this.icrLo, this.icrHi >>> 24);
        return;
      case 0x31: this.icrHi = (value & 0xff000000) >>> 0; return;
      default: this.writeRegister(index, value);
    }
  }

  // ---------------------------------------------------------------- MSRs

  /** True for the MSRs this unit implements: IA32_APIC_BASE, IA32_TSC_DEADLINE and 800H-8FFH. */
  static handlesMsr(msr: number): boolean {
    return msr === MSR_IA32_APIC_BASE || msr === MSR_IA32_TSC_DEADLINE || (msr >= X2APIC_MSR_FIRST && msr <= X2APIC_MSR_LAST);
  }

  /** RDMSR. Returns false when the access raises #GP(0); otherwise the value is in msrLo/msrHi. */
  rdmsr(msr: number): boolean {
    this.msrHi = 0;
    if (msr === MSR_IA32_APIC_BASE) { this.msrLo = this.baseLo; this.msrHi = this.baseHi; return true; }
    if (msr === MSR_IA32_TSC_DEADLINE) {
      // 11.5.4.1: reads 0 outside TSC-deadline mode.
      const on = this.timerMode() === TIMER_TSC_DEADLINE;
      this.msrLo = on ? this.tscDeadlineLo : 0;
      this.msrHi = on ? this.tscDeadlineHi : 0;
      return true;
    }
    const index = msr - X2APIC_MSR_FIRST;
    // 11.12.2 "x2APIC Register Availability": #GP outside x2APIC mode; 11.12.1.2: reserved and write-only MSRs #GP.
    if (!this.x2apicMode || !LocalApic.x2apicReadable(index)) return false;
    this.msrLo = this.readRegister(index) >>> 0;
    if (index === 0x30) this.msrHi = this.icrHi;
    return true;
  }

  private static x2apicReadable(index: number): boolean {
    return index === 0x02 || index === 0x03 || index === 0x08 || index === 0x0a || index === 0x0d ||
      (index >= 0x0f && index <= 0x28) || index === 0x2f || index === 0x30 || (index >= 0x32 && index <= 0x39) ||
      index === 0x3e;
  }

  /** x2APIC writable bits per register, or -1 if WRMSR to it raises #GP (11.12.1.2, table "Local APIC Register Address Map Supported by x2APIC"). */
  private x2apicWritable(index: number): number {
    if (index >= 0x32 && index <= 0x37) return LVT_WRITABLE[index - 0x32] | LVT_READ_ONLY[index - 0x32];
    switch (index) {
      case 0x08: return 0xff;
      case 0x0b: case 0x28: return 0; // EOI and ESR: only 0 may be written
      case 0x0f: return 0x1ff | (this.suppressionOffered ? SVR_SUPPRESS_EOI_BROADCAST : 0);
      case 0x2f: return LVT_WRITABLE[Lvt.CMCI] | LVT_READ_ONLY[Lvt.CMCI];
      case 0x30: return 0x000ccfff;
      case 0x38: return -1 >>> 0;
      case 0x3e: return 0xb;
      case 0x3f: return 0xff;
      default: return -1;
    }
  }

  /** WRMSR of (hi:lo). Returns false when the access raises #GP(0). */
  wrmsr(msr: number, lo: number, hi: number): boolean {
    lo >>>= 0; hi >>>= 0;
    if (msr === MSR_IA32_APIC_BASE) return this.writeApicBase(lo, hi);
    if (msr === MSR_IA32_TSC_DEADLINE) { this.writeTscDeadline(lo, hi); return true; }
    const index = msr - X2APIC_MSR_FIRST;
    if (!this.x2apicMode) return false;
    const writable = this.x2apicWritable(index);
    // 11.12.1.3 "Reserved Bit Checking": non-zero writes to reserved bits raise #GP; the
    // upper 32 bits are reserved except in the ICR.
    if (writable === -1 || (lo & ~writable) !== 0 || (hi !== 0 && index !== 0x30)) return false;
    if (index === 0x30) {
      this.icrLo = lo;
      this.icrHi = hi;
      this.sendIpi(lo, hi);
    } else if (index === 0x3f) {
      // SELF IPI: a fixed, edge-triggered IPI to this APIC (11.12.11 "SELF IPI Register").
      this.sendIpi(lo | (Shorthand.SELF << 18), 0);
    } else {
      this.writeRegister(index, lo);
    }
    return true;
  }

  /** IA32_APIC_BASE transitions (11.4.4; 11.12.5 "x2APIC State Transitions"). */
  private writeApicBase(lo: number, hi: number): boolean {
    // Reserved: bits 7:0, 9, and MAXPHYADDR and above. BSP (bit 8) is read-only.
    if ((lo & 0x2ff) !== 0 || (hi & ~this.basePhysMaskHi) !== 0) return false;
    const en = (lo & BASE_EN) !== 0, extd = (lo & BASE_EXTD) !== 0;
    const wasEn = this.hardwareEnabled, wasX2 = this.x2apicMode;
    if (!en && extd) return false; // EN=0, EXTD=1 is the invalid state
    if (wasX2 && en && !extd) return false; // x2APIC → xAPIC is illegal (go through disabled)
    if (!wasEn && extd) return false; // disabled → x2APIC is illegal (go through xAPIC)
    this.baseLo = ((lo & ~BASE_BSP) | (this.baseLo & BASE_BSP)) >>> 0;
    this.baseHi = hi;
    // 11.4.3: clearing the global enable loses the APIC's state (back to the power-up state).
    if (wasEn && !en) this.resetRegisters();
    return true;
  }
}
