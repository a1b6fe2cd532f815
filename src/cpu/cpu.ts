/**
 * The processor's architectural state and the fields the instruction loop
 * shares. Registers live in typed arrays as 32-bit halves; nothing here is
 * allocated per instruction.
 */
import { BlockCache } from './blocks.js';
import { FlagOp, materialize, type FlagState } from './flags.js';
import { PhysicalMemory } from './memory.js';
import { Mmu, type DataWatch, type MmuHost } from './mmu.js';
import { NO_VIRTUALIZATION, type Virtualization } from './virtualization.js';
import { Paging } from './paging.js';
import { MsrFile } from './msr.js';
import { SKYLAKE, type CpuProfile } from './profile.js';
import { seedRandom } from './ops/random.js';
import { SegmentBank } from './segment-bank.js';
import { updateSegmentBounds } from './segment-limits.js';
import { CS, EFER_LMA, EFER_LME, EFER_SCE, FS, GS, RFLAGS_FIXED1, SegAttr, SS, Vector } from './regs.js';

export { SegAttr, EFER_SCE, EFER_LME, EFER_LMA, EFER_NXE } from './regs.js';

/** Thrown (as this one object) to unwind an instruction that raised an exception. */
export const FAULT = { fault: true } as const;

/** Pending-work bits: checked by the run loop at instruction boundaries. */
export const enum Pending {
  /** Code the current block was decoded from has been written. */
  CODE_WRITTEN = 1,
  /** The run must stop (halt, shutdown, a stop request). */
  STOP = 2,
  /** An interrupt controller raised its output: look for a deliverable interrupt. */
  INTERRUPT = 8,
  /** Decoding state changed (CS size, mode): the next block must be looked up anew. */
  MODE = 4,
  /**
   * The instruction just executed is a VM exit instead (Virtualization.intercept
   * recorded it and the handler returned without effect): the run loop takes
   * it back (RIP, count) and completes the exit.
   */
  VM_EXIT = 16,
}


/** The processor's I/O address space: ports 0-0xFFFF (SDM vol. 1, 19.2). */
export interface PortIo {
  read(port: number, size: 1 | 2 | 4): number;
  write(port: number, size: 1 | 2 | 4, value: number): void;
}

/** CR8's view of the task priority: bits 7:4 of the local APIC's TPR (SDM vol. 3A, 11.8.6). */
export interface TaskPriority {
  readCr8(): number;
  writeCr8(value: number): void;
}

/** Where external interrupts come from (the PIC's INTR line, the local APIC). */
export interface InterruptSource {
  /** True when an interrupt waits to be acknowledged. */
  hasInterrupt(): boolean;
  /** The interrupt-acknowledge cycle: returns the vector. */
  acknowledge(): number;
  /** True when an NMI waits (optional: sources without NMI leave it out). */
  hasNmi?(): boolean;
  /** Takes the waiting NMI. */
  takeNmi?(): void;
  /** Consumes a waiting INIT; true if there was one (the source has reset its APIC). */
  takeInit?(): boolean;
  /** Consumes a waiting start-up IPI: its vector, or -1. */
  takeSipi?(): number;
}

/** The bit of Cpu.breakOnExecute that arms Cpu.executionHook (bits 3:0 are DR0-DR3). */
export const EXTERNAL_BREAK = 1 << 4;

/**
 * An external debugger's view of execution (src/debug): RIP breakpoints that
 * are not the guest's own debug registers. The run loop asks it at an
 * instruction boundary, before the next block runs, while
 * Cpu.breakOnExecute has EXTERNAL_BREAK set; with that bit clear it costs nothing.
 */
export interface ExecutionHook {
  /**
   * At most `limit` instructions are about to run from the current RIP:
   * returns how many may run before one the debugger stops in front of, or 0
   * to end the run here (run() then returns `{ kind: 'stop' }` with nothing
   * executed). It may raise the fetch fault of the next instruction.
   */
  allow(cpu: Cpu, limit: number): number;
}

/** Nothing attached: reads float high, writes are dropped. */
export const NO_PORTS: PortIo = { read: (_p, size) => (size === 4 ? -1 : (1 << (8 * size)) - 1), write: () => {} };

export interface CpuOptions {
  /** Bytes of physical memory (default 64 MiB). */
  memorySize?: number;
  memory?: PhysicalMemory;
  /** The processor modelled (default: skylake). */
  profile?: CpuProfile;
  /** Seed of the generator RDRAND and RDSEED draw from (default 0): the same seed, the same numbers. */
  randomSeed?: number;
}

/** Why the last run stopped. */
export type StopReason =
  | { kind: 'budget' }
  | { kind: 'halt' }
  | { kind: 'exception'; vector: number; errorCode: number | null }
  | { kind: 'shutdown' }
  | { kind: 'stop' }
  /** A VM exit returned control to root-mode software written in TypeScript (src/hv). */
  | { kind: 'vm-exit' };

export class Cpu implements FlagState, MmuHost {
  /** General-purpose registers: low half of register n at 2n, high half at 2n + 1. */
  readonly gpr = new Int32Array(32);
  ripLo = 0;
  ripHi = 0;

  // Lazy flags (see flags.ts).
  flags = RFLAGS_FIXED1;
  lazyMask = 0;
  lfOp: FlagOp = FlagOp.LOGIC;
  lfSize = 4;
  lfALo = 0; lfAHi = 0; lfBLo = 0; lfBHi = 0; lfRLo = 0; lfRHi = 0; lfCarryIn = 0;

  /**
   * The segment registers: the bank in use, and its arrays (segment-bank.ts).
   * Segment registers in encoding order, then LDTR (6) and TR (7): selector,
   * base (lo/hi), limit, access rights in the VMCS layout; for ES-GS the
   * bounds of segment-limits.ts, kept up to date by setSegment and
   * updateModes. Written only through setSegment, setSegmentBase and
   * useSegmentBank, which count the change in segWrites.
   */
  segBank = new SegmentBank();
  segReadMax = this.segBank.readMax;
  segWriteMax = this.segBank.writeMax;
  segBase = this.segBank.base;
  segLimit = this.segBank.limit;
  segAttr = this.segBank.attr;
  segSel = this.segBank.sel;
  /** segWrites when the bank in use was last known pristine. */
  private bankWrites = 0;
  /**
   * Changes to the segment registers so far: a VM exit need not save segments
   * the guest left as its VM entry loaded them (src/vmx/exit.ts).
   */
  segWrites = 0;
  /** GDTR and IDTR: base (lo/hi) and 16-bit limit (SDM vol. 3A, 2.4). */
  gdtrLo = 0; gdtrHi = 0; gdtrLimit = 0xffff;
  idtrLo = 0; idtrHi = 0; idtrLimit = 0xffff;
  /** DR0-DR3 (lo/hi at 2n, 2n+1), DR6, DR7 (SDM vol. 3B, 18.2). */
  readonly dr = new Int32Array(8);
  dr6 = 0xffff0ff0 | 0;
  dr7 = 0x400;
  /**
   * Enabled instruction breakpoints (bit n: DRn), from DR7 (SDM vol. 3B, 18.2.4);
   * bit 4 (EXTERNAL_BREAK) while an external debugger's `executionHook` is armed.
   * The run loop looks at both through this one word.
   */
  breakOnExecute = 0;
  /** Enabled I/O breakpoints (bit n: DRn with R/W = 10; they act while CR4.DE = 1). */
  breakOnIo = 0;
  /** Data breakpoints hit by the instruction executing (bit n: DRn): a #DB trap follows it. */
  dataBreakHits = 0;

  /**
   * Control registers and EFER (SDM vol. 3A, 2.5, 2.2.1). Code that stores them
   * directly, rather than through MOV to CR (ops/control-registers.ts), calls
   * mmu.flush() afterwards so that paging takes them up.
   */
  cr0 = 0x60000010;
  cr2Lo = 0; cr2Hi = 0;
  cr3Lo = 0; cr3Hi = 0;
  cr4 = 0;
  efer = 0;
  /** PAE paging's PDPTE0-3 registers (lo/hi at 2n, 2n + 1), loaded by MOV to CR (SDM vol. 3A, 4.4.1). */
  readonly pdpte = new Int32Array(8);
  /**
   * The task-priority register as CR8 sees it (TPR[7:4], SDM vol. 3A, 11.8.6).
   * A processor on its own keeps the value here; a platform with a local APIC
   * points it at the APIC's TPR.
   */
  cr8: TaskPriority = ((): TaskPriority => {
    let value = 0;
    return { readCr8: () => value, writeCr8: (v) => { value = v & 0xf; } };
  })();
  private cplValue = 0;
  /** Current privilege level; at CPL 3 memory accesses are user-mode accesses (SDM vol. 3A, 4.6.1). */
  get cpl(): number { return this.cplValue; }
  set cpl(v: number) {
    this.cplValue = v;
    this.mmu.setCpl3(v === 3);
  }

  /** XMM0-15, four 32-bit lanes each; MXCSR. */
  readonly xmm = new Int32Array(64);
  mxcsr = 0x1f80;

  /** Code size for decoding (2, 4 or 8 bytes) and stack-pointer size. */
  codeSize = 4;
  stackSize = 4;

  /** A block is compiled to JavaScript once entered this many times (Infinity: interpret only). */
  compileThreshold = 32;

  /** Instructions retired: the time base of the deterministic TSC. */
  insnCount = 0;
  /** Instructions retired by class (insn-class.ts), when the cost model asks for them; null: not counted. */
  classCounts: Float64Array | null = null;
  tscOffset = 0;

  /**
   * Interrupts (and debug traps) are blocked until this many instructions have
   * retired: the shadow after STI, MOV SS and POP SS (SDM vol. 3A, 6.8.3).
   */
  interruptShadowEnd = -1;

  /** Work to look at between instructions (Pending bits). */
  pending = 0;
  stopReason: StopReason = { kind: 'budget' };

  /** The exception being raised. */
  excVector = 0;
  excCode = 0;
  excHasCode = false;
  /** The exception is a trap: RIP stays after the instruction (INT n, INT3, INTO). */
  excTrap = false;
  /** How the event arose (interrupts.ts EventKind): software INT n/INT3/INTO are checked against gate DPL. */
  excKind = 0;
  /** Deliver exceptions through the IVT/IDT (false: an exception stops the run, for tests of single instructions). */
  deliverExceptions = false;
  /**
   * Index in its block of the instruction executing: insnCount counts whole
   * blocks, so insnCount + blockIndex instructions have retired before it.
   */
  blockIndex = 0;
  /** Segment of the memory reference being made, for #SS vs #GP on a bad address. */
  accessSeg = 3;

  /** Scratch: high half of the last 64-bit operand read; the last effective address. */
  tHi = 0;
  eaLo = 0;
  eaHi = 0;

  readonly memory: PhysicalMemory;
  readonly profile: CpuProfile;
  /** MSR state owned by no other unit. */
  readonly msrs = new MsrFile();
  /** External interrupts (null: none attached). */
  interrupts: InterruptSource | null = null;
  /** In the HLT state: no instructions run until an interrupt (SDM vol. 2, HLT). */
  halted = false;
  /** NMIs are blocked from the delivery of one until the next IRET (SDM vol. 3A, 6.7.1). */
  nmiBlocked = false;
  /**
   * The instruction (insnCount + blockIndex while it runs) of the last IRET
   * that ended NMI blocking, or -1. IRET unblocks NMIs even when it then
   * faults, and VMX reports that on the exit (vol. 3C, 28.2.3).
   */
  iretUnblockedNmiAt = -1;
  /** The time base in ns (1 instruction = 1 ns); the platform adds time skipped while halted. */
  now: () => number = () => this.retired;
  /** The I/O ports (the platform attaches its devices here). */
  io: PortIo = NO_PORTS;
  readonly mmu: Mmu;
  /** Page walks and the TLB (paging.ts): the MMU's translator. */
  readonly paging: Paging;
  readonly blocks: BlockCache;

  // ---- state the instruction loop rarely reads (declared last: the hot fields above come first) ----

  /** CR2 before the last #PF loaded it: a #PF that becomes a VM exit leaves CR2 alone (SDM vol. 3C, 28.1). */
  cr2PrevLo = 0; cr2PrevHi = 0;
  /** The shadow comes from MOV SS or POP SS (blocking by MOV SS), not STI (SDM vol. 3C, 25.4.2). */
  shadowBySs = false;
  /**
   * An external debugger (src/debug), not the guest: asked at instruction
   * boundaries while breakOnExecute has EXTERNAL_BREAK set (run.ts).
   */
  executionHook: ExecutionHook | null = null;
  /** An external debugger's data watch; the MMU's `watch` tells it of accesses with the guest's data breakpoints (ops/debug-registers.ts). */
  externalWatch: DataWatch | null = null;
  /** The guest's own data breakpoints as a watch (DR0-DR3 with R/W = 01 or 11), or null. */
  dataBreakWatch: DataWatch | null = null;
  /** The hardware-assist unit (VMX); without one, VMX instructions are #UD. */
  virt: Virtualization = NO_VIRTUALIZATION;
  /** In VMX non-root operation: the instructions and events of virtualization.ts ask `virt`. */
  nonRoot = false;
  /**
   * DR6 bits of the #DB being raised: they reach DR6 when the #DB is delivered,
   * and not when it becomes a VM exit (its exit qualification holds them, SDM vol. 3C, 28.1).
   */
  excDr6 = 0;
  /** Length of the instruction that raised the last software interrupt or exception. */
  excLength = 0;
  /**
   * MONITOR armed the address-monitoring hardware (SDM vol. 2, MONITOR), at the
   * 64-byte line of linear address monitorLo/monitorHi. MWAIT disarms it.
   */
  monitorArmed = false;
  monitorLo = 0; monitorHi = 0;
  /** State of the deterministic generator RDRAND and RDSEED draw from (ops/random.ts). */
  readonly randomState = new Int32Array(4);
  /** Guest time (ns) of an event of the processor's own that ends a HLT (the VMX-preemption timer), or Infinity. */
  eventDeadline = Infinity;
  /** The FAULT being thrown is a VM exit (set by `virt`), not an exception. */
  vmExit = false;
  /** The bootstrap processor: INIT restarts it at the reset vector, not in wait-for-SIPI (SDM vol. 3A, 9.4). */
  bsp = true;
  /** In the wait-for-SIPI state: only INIT and a start-up IPI have any effect (SDM vol. 3A, 9.4.2). */
  waitForSipi = false;
  /** INIT signals are blocked (VMX root operation); unblocking sets startupPending again. */
  initBlocked = false;
  /** An INIT or start-up IPI arrived: the run loop asks the interrupt source at the next boundary. */
  startupPending = false;
  /**
   * The processors sharing this one's physical memory (itself included): code one
   * of them decoded is protected from writes by every one of them.
   */
  peers: readonly Cpu[] = [this];

  constructor(options: CpuOptions = {}) {
    this.memory = options.memory ?? new PhysicalMemory(options.memorySize ?? 64 * 1024 * 1024);
    this.profile = options.profile ?? SKYLAKE;
    this.mmu = new Mmu(this.memory, this);
    this.paging = new Paging(this);
    this.mmu.translator = this.paging;
    this.blocks = new BlockCache(this);
    seedRandom(this.randomState, options.randomSeed ?? 0);
    for (let s = 0; s < 6; s++) updateSegmentBounds(this, s);
  }

  /** Instructions retired before the one executing (the time base of the TSC). */
  get retired(): number { return this.insnCount + this.blockIndex; }

  /** True in 64-bit mode (IA-32e mode with CS.L = 1). */
  get mode64(): boolean { return this.codeSize === 8; }

  /** Raises exception `vector`: unwinds the current instruction (SDM vol. 3A, 6.5). */
  raise(vector: number, errorCode?: number): never {
    this.excKind = 0;
    this.excVector = vector;
    this.excHasCode = errorCode !== undefined;
    this.excCode = errorCode ?? 0;
    throw FAULT;
  }

  /**
   * Raises a software interrupt or exception (INT n = 1, INT3/INTO = 2, INT1 = 3),
   * or a trap (0); RIP stays after the instruction, whose length is `length`.
   */
  raiseTrap(vector: number, kind = 2, length = 0): never {
    this.excTrap = true;
    this.excLength = length;
    this.excVector = vector;
    this.excHasCode = false;
    this.excCode = 0;
    this.excKind = kind;
    throw FAULT;
  }

  /** An interrupt controller's output changed: the run loop looks at it after this instruction. */
  signalInterrupt(): void {
    this.pending |= Pending.INTERRUPT;
  }

  /** Stops the run after this instruction. */
  stop(reason: StopReason): void {
    this.stopReason = reason;
    this.pending |= Pending.STOP;
  }

  nonCanonical(): never {
    return this.raise(this.accessSeg === SS ? Vector.SS : Vector.GP, 0);
  }

  /** Writes to the page take the slow path: it holds paging structures or code some processor decoded. */
  isWatchedPage(ppn: number): boolean {
    if (this.memory.isPageTable(ppn)) return true;
    const peers = this.peers;
    for (let i = 0; i < peers.length; i++) if (peers[i]!.blocks.isCodePage(ppn)) return true;
    return false;
  }

  codeWritten(pa: number, length: number): void {
    const peers = this.peers;
    for (let i = 0; i < peers.length; i++) {
      const p = peers[i]!;
      if (p.blocks.invalidate(pa, length)) p.pending |= Pending.CODE_WRITTEN;
    }
  }

  /** RFLAGS with every lazy flag folded in. */
  get rflags(): number { return materialize(this); }
  set rflags(v: number) { this.flags = (v | RFLAGS_FIXED1) >>> 0; this.lazyMask = 0; }

  /** Recomputes code and stack sizes after CS, SS or EFER change. */
  updateModes(): void {
    const cs = this.segAttr[CS]!;
    const lma = (this.efer & EFER_LMA) !== 0;
    const prev = this.codeSize;
    this.codeSize = lma && (cs & SegAttr.L) ? 8 : (cs & SegAttr.DB) ? 4 : 2;
    this.stackSize = this.codeSize === 8 ? 8 : (this.segAttr[SS]! & SegAttr.DB) ? 4 : 2;
    if (prev !== this.codeSize) {
      this.pending |= Pending.MODE;
      // Limit and type checks apply outside 64-bit mode only (SDM vol. 3A, 5.3.1).
      if (prev === 8 || this.codeSize === 8) for (let s = 0; s < 6; s++) updateSegmentBounds(this, s);
    }
  }

  /** Loads a segment register's hidden part directly (reset, loaders, tests). */
  setSegment(seg: number, selector: number, baseLo: number, baseHi: number, limit: number, attr: number): void {
    this.segSel[seg] = selector;
    this.segBase[2 * seg] = baseLo;
    this.segBase[2 * seg + 1] = baseHi;
    this.segLimit[seg] = limit;
    this.segAttr[seg] = attr;
    this.segWrites++;
    if (seg === CS || seg === SS) this.updateModes();
    if (seg < 6) updateSegmentBounds(this, seg);
  }

  /**
   * Makes `bank` the segment registers in use (VM entries and exits), with
   * the modes that follow from them. Its bounds must have been computed with
   * the same EFER.LMA (they depend on 64-bit mode).
   */
  useSegmentBank(bank: SegmentBank): void {
    if (this.segWrites !== this.bankWrites) this.segBank.pristine = false;
    this.segBank = bank;
    this.segReadMax = bank.readMax; this.segWriteMax = bank.writeMax;
    this.segBase = bank.base; this.segLimit = bank.limit; this.segAttr = bank.attr; this.segSel = bank.sel;
    this.segWrites++;
    this.bankWrites = this.segWrites;
    this.updateModes();
  }

  /** The bank in use holds what its owner loaded into it (see SegmentBank.pristine). */
  markSegmentBankPristine(): void {
    this.segBank.pristine = true;
    this.bankWrites = this.segWrites;
  }

  /** Loads a segment's base alone (SWAPGS, WRFSBASE, WRMSR of IA32_FS_BASE/GS_BASE). */
  setSegmentBase(seg: number, lo: number, hi: number): void {
    this.segBase[2 * seg] = lo;
    this.segBase[2 * seg + 1] = hi;
    this.segWrites++;
  }

  /**
   * Puts the processor in 64-bit mode with flat segments (tests and benchmarks).
   * There are no page tables in memory: the MMU maps linear = physical (a model
   * convenience, see Paging.identity) until MOV to CR3, a change of paging mode,
   * or mmu.flush() after the caller has stored its own CR3.
   */
  enterFlat64(): void {
    this.efer = EFER_LME | EFER_LMA | EFER_SCE;
    this.cr0 |= 0x80000001;
    this.cr4 |= 1 << 5;
    this.mmu.flush();
    this.paging.identity = true;
    const data = SegAttr.P | SegAttr.S | 0x3 | SegAttr.DB | SegAttr.G;
    for (let s = 0; s < 6; s++) this.setSegment(s, s === CS ? 0x08 : 0x10, 0, 0, 0xffffffff, data);
    this.setSegment(CS, 0x08, 0, 0, 0xffffffff, SegAttr.P | SegAttr.S | 0xb | SegAttr.L | SegAttr.G);
  }

  /** Puts the processor in 32-bit protected mode with flat 4 GiB segments. */
  enterFlat32(): void {
    this.efer = 0;
    this.cr0 = (this.cr0 | 1) & 0x7fffffff; // PE = 1, PG = 0: linear = physical
    this.mmu.flush();
    const data = SegAttr.P | SegAttr.S | 0x3 | SegAttr.DB | SegAttr.G;
    for (let s = 0; s < 6; s++) this.setSegment(s, 0x10, 0, 0, 0xffffffff, data);
    this.setSegment(CS, 0x08, 0, 0, 0xffffffff, SegAttr.P | SegAttr.S | 0xb | SegAttr.DB | SegAttr.G);
  }

  /** True when the segment's base takes part in linear addresses in the current mode. */
  usesSegBase(seg: number): boolean {
    return this.codeSize !== 8 || seg === FS || seg === GS;
  }

  /** A 64-bit register as a bigint (debugging, tests; never on the hot path). */
  reg64(n: number): bigint {
    return (BigInt(this.gpr[2 * n + 1]! >>> 0) << 32n) | BigInt(this.gpr[2 * n]! >>> 0);
  }
  setReg64(n: number, v: bigint): void {
    this.gpr[2 * n] = Number(v & 0xffffffffn) | 0;
    this.gpr[2 * n + 1] = Number((v >> 32n) & 0xffffffffn) | 0;
  }
  get rip(): bigint { return (BigInt(this.ripHi >>> 0) << 32n) | BigInt(this.ripLo >>> 0); }
  set rip(v: bigint) {
    this.ripLo = Number(v & 0xffffffffn) | 0;
    this.ripHi = Number((v >> 32n) & 0xffffffffn) | 0;
  }
}
