/**
 * The input of the cost model: what one run of a guest did, as event counts.
 *
 * A run under the hypervisor fills every field; a bare run (the same guest
 * without VMX) leaves the hardware-assist fields at 0. Whoever produces the
 * counts (the run loop and `hvsim run --cost`) fills them; this folder only
 * prices them (model.ts) and shows them (report.ts, plot.ts).
 *
 * One convention matters for the prices: an instruction that causes a VM exit
 * and that the handler emulates (an IN, a MOV to CR3 under shadow paging) is
 * counted once in `instructions`, by its class, as if it had retired in the
 * guest. Its exit is counted in `exits` as well. The Prescott calibration in
 * profiles.ts assumes exactly this.
 */

/** Counts of one run, or of one phase of a run. */
export interface CostCounts {
  /** Guest instructions retired, by class: memory = has a memory operand (not I/O); io = IN/OUT/INS/OUTS; privileged = CPL-0-only and system instructions (MOV CR/DR, LGDT, INVLPG, WRMSR/RDMSR, HLT, CLI/STI, IRET, SYSCALL/SYSRET, INT n, ...); ordinary = the rest. */
  instructions: { ordinary: number; memory: number; privileged: number; io: number };
  /** VM exits by the SDM's basic exit-reason name (e.g. 'CPUID', 'IO_INSTRUCTION', 'EPT_VIOLATION', 'EXCEPTION_OR_NMI', 'CONTROL_REGISTER_ACCESS', 'EXTERNAL_INTERRUPT'; the names of vmcs/exit-reasons.ts). Empty for a bare run. */
  exits: Record<string, number>;
  /** VM entries (VMLAUNCH/VMRESUME that succeeded). */
  entries: number;
  /** VMREAD and VMWRITE the root-mode handler issued. */
  vmreads: number;
  vmwrites: number;
  /** Device operations the handler emulated (port accesses, MMIO accesses). */
  deviceOps: number;
  /** Guest page walks (native dimension): walks and the paging-structure entries read. */
  walks: number;
  walkReferences: number;
  /** EPT walks (the second dimension) and the EPT entries read, including those for the guest's own paging-structure accesses. */
  eptWalks: number;
  eptReferences: number;
  /** TLB: translations found after a fast-path miss (hits), misses (= walks), and flushes by cause (keys like 'full', 'cr3', 'invlpg', 'invpcid', 'invvpid', 'invept', 'control', 'vmTransition'). */
  tlbHits: number;
  tlbFlushes: Record<string, number>;
  /** Events the handler injected into the guest. */
  injections: number;
  /** Shadow paging (the hypervisor without EPT): hidden page faults (the shadow lacked an entry the guest's tables have), traps on writes to write-protected guest page tables, guest CR3 switches, shadow entries built. All 0 with EPT. */
  shadow: { hiddenFaults: number; pteWrites: number; cr3Switches: number; entriesBuilt: number };
  /** Counts per guest phase (phase numbers the guest wrote to the phase-marker port; 0 before the first mark), each a CostCounts without `phases`. */
  phases?: Record<number, Omit<CostCounts, 'phases'>>;
}

/** The counts of one phase: a CostCounts without its own phases. */
export type PhaseCounts = Omit<CostCounts, 'phases'>;

/** The flush cause a processor without VPID records for the flush on every VM entry and VM exit. */
export const TRANSITION_FLUSH = 'vmTransition';

/** Counts of a run that did nothing: every number 0, no exits, no flushes, no phases. */
export function emptyCounts(): CostCounts {
  return {
    instructions: { ordinary: 0, memory: 0, privileged: 0, io: 0 },
    exits: {},
    entries: 0,
    vmreads: 0,
    vmwrites: 0,
    deviceOps: 0,
    walks: 0,
    walkReferences: 0,
    eptWalks: 0,
    eptReferences: 0,
    tlbHits: 0,
    tlbFlushes: {},
    injections: 0,
    shadow: { hiddenFaults: 0, pteWrites: 0, cr3Switches: 0, entriesBuilt: 0 },
  };
}

/** Adds two maps of counts key by key; a key missing on one side counts 0 there. */
export function addRecords(a: Readonly<Record<string, number>>, b: Readonly<Record<string, number>>): Record<string, number> {
  const sum: Record<string, number> = { ...a };
  for (const [key, n] of Object.entries(b)) sum[key] = (sum[key] ?? 0) + n;
  return sum;
}

function addPhaseCounts(a: PhaseCounts, b: PhaseCounts): PhaseCounts {
  return {
    instructions: {
      ordinary: a.instructions.ordinary + b.instructions.ordinary,
      memory: a.instructions.memory + b.instructions.memory,
      privileged: a.instructions.privileged + b.instructions.privileged,
      io: a.instructions.io + b.instructions.io,
    },
    exits: addRecords(a.exits, b.exits),
    entries: a.entries + b.entries,
    vmreads: a.vmreads + b.vmreads,
    vmwrites: a.vmwrites + b.vmwrites,
    deviceOps: a.deviceOps + b.deviceOps,
    walks: a.walks + b.walks,
    walkReferences: a.walkReferences + b.walkReferences,
    eptWalks: a.eptWalks + b.eptWalks,
    eptReferences: a.eptReferences + b.eptReferences,
    tlbHits: a.tlbHits + b.tlbHits,
    tlbFlushes: addRecords(a.tlbFlushes, b.tlbFlushes),
    injections: a.injections + b.injections,
    shadow: {
      hiddenFaults: a.shadow.hiddenFaults + b.shadow.hiddenFaults,
      pteWrites: a.shadow.pteWrites + b.shadow.pteWrites,
      cr3Switches: a.shadow.cr3Switches + b.shadow.cr3Switches,
      entriesBuilt: a.shadow.entriesBuilt + b.shadow.entriesBuilt,
    },
  };
}

function addPhases(
  a: Readonly<Record<number, PhaseCounts>>,
  b: Readonly<Record<number, PhaseCounts>>,
): Record<number, PhaseCounts> {
  const sum: Record<number, PhaseCounts> = { ...a };
  for (const [key, counts] of Object.entries(b)) {
    const phase = Number(key);
    const mine = sum[phase];
    sum[phase] = mine === undefined ? counts : addPhaseCounts(mine, counts);
  }
  return sum;
}

/**
 * The counts of two runs (or of two stretches of one run) together: every
 * number added, exit reasons and flush causes added key by key, phases added
 * phase by phase. The result has `phases` only when an input has them.
 */
export function addCounts(a: CostCounts, b: CostCounts): CostCounts {
  const sum: CostCounts = addPhaseCounts(a, b);
  if (a.phases !== undefined || b.phases !== undefined) sum.phases = addPhases(a.phases ?? {}, b.phases ?? {});
  return sum;
}

/** All VM exits of the counts, whatever their reason. */
export function totalExits(counts: PhaseCounts): number {
  return Object.values(counts.exits).reduce((sum, n) => sum + n, 0);
}

/** Every number of the counts (phases excluded) with a dotted name, for checks and messages. */
export function namedNumbers(counts: PhaseCounts): [string, number][] {
  const named: [string, number][] = [
    ['instructions.ordinary', counts.instructions.ordinary],
    ['instructions.memory', counts.instructions.memory],
    ['instructions.privileged', counts.instructions.privileged],
    ['instructions.io', counts.instructions.io],
    ['entries', counts.entries],
    ['vmreads', counts.vmreads],
    ['vmwrites', counts.vmwrites],
    ['deviceOps', counts.deviceOps],
    ['walks', counts.walks],
    ['walkReferences', counts.walkReferences],
    ['eptWalks', counts.eptWalks],
    ['eptReferences', counts.eptReferences],
    ['tlbHits', counts.tlbHits],
    ['injections', counts.injections],
    ['shadow.hiddenFaults', counts.shadow.hiddenFaults],
    ['shadow.pteWrites', counts.shadow.pteWrites],
    ['shadow.cr3Switches', counts.shadow.cr3Switches],
    ['shadow.entriesBuilt', counts.shadow.entriesBuilt],
  ];
  for (const [reason, n] of Object.entries(counts.exits)) named.push([`exits.${reason}`, n]);
  for (const [cause, n] of Object.entries(counts.tlbFlushes)) named.push([`tlbFlushes.${cause}`, n]);
  return named;
}

/**
 * What is wrong with the counts as numbers: each count must be a whole number
 * ≥ 0. One message per bad count (phases included, named "phase N: ..."); an
 * empty list when all is well.
 */
export function countProblems(counts: CostCounts): string[] {
  const problems = badNumbers(counts);
  for (const [phase, phaseCounts] of Object.entries(counts.phases ?? {})) {
    if (!Number.isInteger(Number(phase)) || Number(phase) < 0) problems.push(`phase '${phase}' is not a whole number ≥ 0`);
    for (const message of badNumbers(phaseCounts)) problems.push(`phase ${phase}: ${message}`);
  }
  return problems;
}

function badNumbers(counts: PhaseCounts): string[] {
  return namedNumbers(counts)
    .filter(([, n]) => !Number.isSafeInteger(n) || n < 0)
    .map(([name, n]) => `count ${name} is ${n}, not a whole number ≥ 0`);
}
