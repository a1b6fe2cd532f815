/**
 * Processor profiles of the cost model: the price in core cycles of each event
 * the counts hold (counts.ts), per Intel microarchitecture, as data.
 *
 * Sources are cited by the IDs of /work/shared/research/cost-figures.md, with
 * its tags: [R] read in the primary source, [S] secondary, [D] arithmetic on
 * [R] figures. "Modelling choice" marks a value no source gives; its comment
 * says why that value.
 *
 * - A1: Adams & Agesen, "A Comparison of Software and Hardware Techniques for
 *   x86 Virtualization", ASPLOS 2006 (table 1, figure 4 and its raw-data
 *   appendix; 3.8 GHz Pentium 4 672 and a 2.66 GHz pre-production Core 2 Duo).
 * - B1: Agesen, Mattson, Rugina, Sheldon, "Software Techniques for Avoiding
 *   Hardware Virtualization Exits", USENIX ATC 2012 (table 1, hardware
 *   round-trip latency, one harness for Prescott to Sandy Bridge).
 * - C1: Bhargava, Serebrin, Spadini, Manne, "Accelerating Two-Dimensional Page
 *   Walks for Virtualized Systems", ASPLOS 2008 (table 1 and the simulated
 *   Opteron parameters).
 * - SplitX: Landau, Ben-Yehuda, Gordon, WIOV 2011 (Xeon X5570, KVM).
 * - Shalabi: "The Cost of Virtualization Exits", 2014 (i7-3960X, KVM).
 * - Li: Wanpeng Li's kvm@vger patches 2019–2020 (Skylake-SP, kvm-unit-tests
 *   vmexit.flat).
 *
 * How the figures without a direct source are derived (each profile's
 * comments name the rule):
 *
 * - SPLIT. B1 gives the round trip (exit + entry) of every part from Prescott
 *   to Sandy Bridge; A1 table 1 gives entry and exit separately for the P4
 *   (2409 / 1931) and the Core 2 (937 / 1186), from another harness. We split
 *   B1's round trip in A1's proportion: the P4's for Prescott, the Core 2's for
 *   Merom and every later part.
 * - VMCS. A1 gives VMREAD/VMWRITE for the P4 (178 / 171) and the Core 2
 *   (52 / 44). For later parts we scale the Core 2 figures by the part's round
 *   trip over Merom's, assuming VMCS access improved with the same microcode
 *   as the transitions.
 * - CALIBRATION (Prescott). A1's nanobenchmark table has seven rows
 *   (syscall, in, cr8wr, call/ret, pgfault, divzero, ptemod); we calibrate on
 *   two of them, `pgfault` and `in`, and on nothing else. A1 says a typical
 *   exit needs about ten VMREADs. Taking ten VMREADs per exit, one VMWRITE to
 *   advance RIP after an emulated instruction and two to inject a fault
 *   (interruption information and error code), the model reproduces those two
 *   figures of its hardware VMM (figure 4, cycles) exactly when
 *     handlerPerExit = 11242 − 1093 − 3963 − 10×178 − 2×171 = 4064 (`pgfault`
 *       11242, native 1093: exit, software MMU looks at the guest's tables,
 *       reflects the fault);
 *     deviceOp = 15826 − 3209 − 3963 − 1780 − 171 − 4064 = 2639 (`in` 15826).
 * - SHADOW. The shadow-paging prices are modelling choices built from prices
 *   the profile already has (walk reference 11, memory instruction 2), the
 *   same formula on every part; they are NOT fitted to A1's `ptemod` figures:
 *     shadow.entryBuilt = 4×11 + 2 = 46: building one shadow entry is a walk
 *       of the guest's 4-level tables for the address it maps (4 walk
 *       references) and the write of the entry (one memory instruction). On a
 *       hidden fault this walk repeats the one handlerPerExit already covers,
 *       so there it overstates;
 *     shadow.cr3Switch = entryBuilt = 46: finding or making the shadow root of
 *       the new CR3, priced as building one entry;
 *     shadow.pteWrite = 4×11 + 2 + 2 + 2 = 50: emulating the trapped store
 *       (fetching the instruction, a walk of the guest's tables for RIP and a
 *       memory read of its bytes; making the store, one memory instruction;
 *       the walk of the written address is the one every #PF exit makes, in
 *       handlerPerExit) plus updating one shadow entry (one memory
 *       instruction, its place known from the trace). The decoder's own work
 *       has no source and no price.
 *   Checked against A1 (not calibrated), with the same per-event sum as the
 *   calibration (the guest's store as one memory instruction, the round trip,
 *   ten VMREADs, one VMWRITE, handlerPerExit, then the shadow events):
 *     `ptemod` 12733: the model gives 2 + 3963 + 1780 + 171 + 4064 + 50 =
 *       10030, 21.2% low;
 *     `ptemod` not-present-to-present 17020 (appendix; the write builds one
 *       shadow entry at once): 10030 + 46 = 10076, 40.8% low;
 *     `ptemod` present-to-not-present 9154 (appendix, marked unused): 10030,
 *       9.6% high.
 *   So the model prices a traced page-table write on Prescott about a fifth
 *   below A1's VMM and an eager fill far below it: what A1's VMM spends
 *   beyond these events (decoding, its own bookkeeping) the model does not
 *   see.
 * - SCALE. Handler software without a figure of its own (deviceOp, and
 *   handlerPerExit where the part has no figure): the Prescott calibration ×
 *   the part's round trip / Prescott's (3963), assuming the VMM's
 *   software got faster in cycles as the transitions did. Where a part has an
 *   independent figure (Nehalem, Sandy Bridge, Skylake handler cost) it agrees
 *   with this rule within 8%: 4064 × 1009/3963 = 1035 against 991, and
 *   4064 × 784/3963 = 804 against 866. Those three figures come from KVM's
 *   whole exit path, which includes a few VMREADs of its own; the model prices
 *   the handler's VMREAD and VMWRITE on top, so it overstates them slightly.
 * - BUS. A native IN/OUT waits for the chipset's bus, not the core: A1's native
 *   `in` of port 0x80 takes 3209 cycles at 3.8 GHz, 0.8445 µs. We keep that
 *   time on every part and convert it at the part's clock.
 *
 * Prices shared by every part, all modelling choices, are the constants below
 * with their reasons.
 */

/** Prices of one guest instruction, by the classes of CostCounts.instructions (core cycles). */
export interface InstructionPrices {
  readonly ordinary: number;
  readonly memory: number;
  readonly privileged: number;
  readonly io: number;
}

/** Prices of the shadow-paging work of the handler, by the events of CostCounts.shadow (core cycles). */
export interface ShadowPrices {
  readonly hiddenFault: number;
  readonly pteWrite: number;
  readonly cr3Switch: number;
  readonly entryBuilt: number;
}

/** The price of each counted event on one processor, in core cycles (whole numbers). */
export interface CostPrices {
  /** VM exit + VM entry, hardware only (for reference: vmExit + vmEntry equals it). */
  readonly roundTrip: number;
  /** One VM entry (VMLAUNCH/VMRESUME), hardware only. */
  readonly vmEntry: number;
  /** One VM exit, hardware only. */
  readonly vmExit: number;
  /** One VMREAD and one VMWRITE issued by the handler. */
  readonly vmread: number;
  readonly vmwrite: number;
  /** One guest instruction of each class. */
  readonly instruction: InstructionPrices;
  /** Handler software every exit pays, whatever its reason (save and restore, dispatch, the common path). */
  readonly handlerPerExit: number;
  /** One device operation (port or MMIO access) emulated by the handler, beyond the generic per-exit cost. */
  readonly deviceOp: number;
  /** One event injected by the handler, beyond its VMWRITEs and the generic per-exit cost. */
  readonly injection: number;
  /** Shadow-paging work, per event. */
  readonly shadow: ShadowPrices;
  /** One paging-structure entry read by a guest (native-dimension) page walk. */
  readonly walkReference: number;
  /** One EPT entry read (the second dimension). */
  readonly eptReference: number;
  /** One TLB hit after a fast-path miss. */
  readonly tlbHit: number;
  /** One TLB flush of any cause except the flush of a VM transition. */
  readonly tlbFlush: number;
  /** One TLB flush at a VM entry or exit (cause 'vmTransition', parts without VPID). */
  readonly transitionFlush: number;
}

/** A processor the cost model can price a run on. */
export interface CostProfile {
  /** Lower-case microarchitecture name, e.g. 'skylake' (`--profile NAME`). */
  readonly name: string;
  /** The name people know the part by. */
  readonly fullName: string;
  /** The year the microarchitecture launched. */
  readonly launchYear: number;
  /** Extended page tables (second-dimension translation) and virtual-processor identifiers (tagged TLB). */
  readonly ept: boolean;
  readonly vpid: boolean;
  /** Clock of the part the figures were measured on, GHz (cycles ÷ (clockGHz × 1000) = µs). */
  readonly clockGHz: number;
  /** The part(s) and sources behind the figures, in a few words. */
  readonly measuredOn: string;
  /** Prices in core cycles. */
  readonly prices: CostPrices;
}

/**
 * Ordinary instruction: 1 cycle. Modelling choice: the model sees no pipeline,
 * so an instruction with neither memory operand nor system effect costs one
 * issue slot's worth; real code runs between 0.25 and a few cycles per
 * instruction, around 1 on average for integer code on all these parts.
 */
const ORDINARY = 1;

/**
 * Instruction with a memory operand: 2 cycles. Modelling choice: the model
 * sees no caches; we charge one cycle more than an ordinary instruction for an
 * access that almost always hits the L1 data cache and overlaps other work.
 * Its address translation is priced apart (walk references).
 */
const MEMORY = 2;

/**
 * Privileged or system instruction: 121 cycles. [D] from A1 figure 4 (P4): a
 * SYSCALL/SYSRET round trip costs 242 cycles natively, 121 per instruction; A1
 * also gives 150 for a CR8 write and 60 for CLI on the same part, so 121 is
 * typical of the class. No figure exists for later parts; modelling choice:
 * we keep the P4 figure on all of them (it overstates newer parts, on the
 * native and the virtual run alike).
 */
const PRIVILEGED = 121;

/**
 * Guest page-walk reference: 11 cycles. Modelling choice from C1's simulated
 * Opteron [R]: 11 cycles from a page-walk-cache miss to an L2 hit. The model
 * counts every entry a walk reads and sees no cache, so we price a read as the
 * L2 hit that paging-structure entries typically are.
 */
const WALK_REFERENCE = 11;

/**
 * EPT reference: 7 cycles. [D] from C1 table 1: with no page-walk caching, a
 * 2-D walk (4 guest + 20 nested references) took on average 4.164× a native
 * 4-reference walk (4.01, 3.90, 3.91, 4.57, 4.43 over five workloads). With
 * 11 cycles per guest reference, 4×11 + 20×p = 4.164 × 4×11 gives p = 6.96:
 * nested entries hit the caches more often than guest ones.
 */
const EPT_REFERENCE = 7;

/**
 * TLB hit after a fast-path miss: 0 cycles. Modelling choice: the fast path is
 * the model's host-side shortcut, not a structure of the processor; a
 * translation the TLB holds costs nothing beyond the instruction that uses it.
 */
const TLB_HIT = 0;

/**
 * TLB flush: 121 cycles. Modelling choice: the work of discarding entries,
 * priced as one more system instruction (PRIVILEGED); what a flush costs
 * afterwards is the refill, which the counts carry as walks.
 */
const TLB_FLUSH = 121;

/**
 * Flush at a VM transition (no VPID): 0 cycles. B1's round trips were measured
 * on the parts themselves, so on Prescott, Merom and Penryn they include the
 * flush those parts make on every entry and exit ([S] jauu.net in
 * cost-figures §3d); the refill is counted as walks.
 */
const TRANSITION_FLUSH = 0;

/**
 * Injection: 0 cycles beyond its VMWRITEs (priced per VMWRITE) and the
 * generic per-exit software. Modelling choice: the delivery through the guest
 * IDT happens during VM entry and is the delivery a bare run makes too (which
 * the counts do not charge either); the Prescott calibration put the
 * reflection of a fault in handlerPerExit.
 */
const INJECTION = 0;

/**
 * Hidden page fault: 0 cycles beyond its exit, the generic handler and the
 * shadow entries it builds (each priced as entryBuilt). Modelling choice: the
 * walk of the guest's tables that tells a hidden fault from a true one is
 * part of handlerPerExit as calibrated on A1's page-fault path, which makes
 * the same walk.
 */
const HIDDEN_FAULT = 0;

/**
 * Building one shadow entry: 46 cycles. Modelling choice (SHADOW in the module
 * comment): a walk of the guest's 4-level tables for the address the entry
 * maps, 4 × WALK_REFERENCE = 44, plus writing the entry, one MEMORY
 * instruction, 2. Not fitted to A1's not-present-to-present `ptemod`.
 */
const ENTRY_BUILT = 4 * WALK_REFERENCE + MEMORY;

/**
 * Switching CR3 under shadow paging: 46 cycles. Modelling choice: finding or
 * making the shadow root of the new CR3, priced as building one entry
 * (ENTRY_BUILT).
 */
const CR3_SWITCH = ENTRY_BUILT;

/**
 * A guest write to a traced page table: 50 cycles beyond its exit, VMREADs,
 * VMWRITE and the generic per-exit software. Modelling choice (SHADOW in the
 * module comment): emulating the trapped store, i.e. fetching the instruction
 * (a walk of the guest's tables for RIP, 4 × WALK_REFERENCE = 44, and a MEMORY
 * read of its bytes, 2) and making the store (MEMORY, 2), plus updating one
 * shadow entry (MEMORY, 2): 44 + 2 + 2 + 2 = 50. The walk of the written
 * address is the one handlerPerExit covers on every #PF exit; the decoder's
 * own work has no source and no price. Not fitted to A1's `ptemod`: the model
 * gives 10030 cycles for it against A1's 12733 (21.2% low).
 */
const PTE_WRITE = 4 * WALK_REFERENCE + 3 * MEMORY;

/**
 * Intel Pentium 4 672 (Prescott), the first VT-x part. handlerPerExit and
 * deviceOp are the CALIBRATION of the module comment; the shadow prices are
 * the SHADOW modelling choices, as on every part.
 */
export const PRESCOTT: CostProfile = {
  name: 'prescott',
  fullName: 'Intel Pentium 4 (Prescott)',
  launchYear: 2005, // B1 table 1 [R]: 3Q2005
  ept: false, // first-generation VT-x: no MMU support (A1 [R]); EPT came with Nehalem (cost-figures §3d)
  vpid: false, // VPID came with Nehalem (cost-figures §3d [S])
  clockGHz: 3.8, // A1 setup [R]: 3.8 GHz Pentium 4 672
  measuredOn: 'Pentium 4 672, 3.8 GHz (A1); round trip from B1',
  prices: {
    roundTrip: 3963, // B1 table 1 [R]
    vmEntry: 2200, // SPLIT: 3963 × 2409/(2409 + 1931) = 2199.7
    vmExit: 1763, // SPLIT: 3963 − 2200 (A1 table 1 page-fault exit: 1931)
    vmread: 178, // A1 table 1 [R]
    vmwrite: 171, // A1 table 1 [R]
    instruction: {
      ordinary: ORDINARY,
      memory: MEMORY,
      privileged: PRIVILEGED,
      io: 3209, // A1 figure 4 [R]: native `in` of port 0x80
    },
    handlerPerExit: 4064, // CALIBRATION on A1 `pgfault`
    deviceOp: 2639, // CALIBRATION on A1 `in`
    injection: INJECTION,
    shadow: {
      hiddenFault: HIDDEN_FAULT,
      pteWrite: PTE_WRITE, // SHADOW: 4 × 11 + 3 × 2 = 50 (modelling choice, not calibrated)
      cr3Switch: CR3_SWITCH, // SHADOW: as entryBuilt, 46 (modelling choice: finding or making the new shadow root)
      entryBuilt: ENTRY_BUILT, // SHADOW: 4 × 11 + 2 = 46 (modelling choice, not calibrated)
    },
    walkReference: WALK_REFERENCE,
    eptReference: EPT_REFERENCE,
    tlbHit: TLB_HIT,
    tlbFlush: TLB_FLUSH,
    transitionFlush: TRANSITION_FLUSH,
  },
};

/** Intel Core 2 (Merom), VT-x without EPT or VPID. */
export const MEROM: CostProfile = {
  name: 'merom',
  fullName: 'Intel Core 2 (Merom)',
  launchYear: 2006, // B1 table 1 [R]: 2Q2006
  ept: false, // cost-figures §3d: EPT came with Nehalem
  vpid: false, // cost-figures §3d [S]: VPID came with Nehalem
  clockGHz: 2.66, // A1 table 1 [R]: 2.66 GHz Core 2 Duo (its entry/exit and VMCS figures); B1 does not give its clock
  measuredOn: 'Core 2 Duo, 2.66 GHz (A1 table 1); round trip from B1',
  prices: {
    roundTrip: 1579, // B1 table 1 [R]
    vmEntry: 697, // SPLIT: 1579 × 937/(937 + 1186) = 696.9
    vmExit: 882, // SPLIT: 1579 − 697 (A1 table 1 page-fault exit: 1186)
    vmread: 52, // A1 table 1 [R]
    vmwrite: 44, // A1 table 1 [R]
    instruction: {
      ordinary: ORDINARY,
      memory: MEMORY,
      privileged: PRIVILEGED,
      io: 2246, // BUS: 0.8445 µs × 2.66 GHz = 2246.3
    },
    handlerPerExit: 1619, // SCALE: 4064 × 1579/3963 = 1619.2
    deviceOp: 1051, // SCALE: 2639 × 1579/3963 = 1051.5
    injection: INJECTION,
    shadow: {
      hiddenFault: HIDDEN_FAULT,
      pteWrite: PTE_WRITE, // SHADOW: 4 × 11 + 3 × 2 = 50 (modelling choice, not calibrated)
      cr3Switch: CR3_SWITCH, // SHADOW: as entryBuilt, 46 (modelling choice: finding or making the new shadow root)
      entryBuilt: ENTRY_BUILT, // SHADOW: 4 × 11 + 2 = 46 (modelling choice, not calibrated)
    },
    walkReference: WALK_REFERENCE,
    eptReference: EPT_REFERENCE,
    tlbHit: TLB_HIT,
    tlbFlush: TLB_FLUSH,
    transitionFlush: TRANSITION_FLUSH,
  },
};

/** Intel Core 2 (Penryn), VT-x without EPT or VPID. */
export const PENRYN: CostProfile = {
  name: 'penryn',
  fullName: 'Intel Core 2 (Penryn)',
  launchYear: 2008, // B1 table 1 [R]: 1Q2008
  ept: false, // cost-figures §3d: EPT came with Nehalem
  vpid: false, // cost-figures §3d [S]: VPID came with Nehalem
  clockGHz: 3.0, // modelling choice: B1 does not name its Penryn part; 3.0 GHz is a typical desktop Penryn (Core 2 Duo E8400)
  measuredOn: 'round trip from B1 (part not named); the rest derived',
  prices: {
    roundTrip: 1266, // B1 table 1 [R]
    vmEntry: 559, // SPLIT: 1266 × 937/2123 = 558.8
    vmExit: 707, // SPLIT: 1266 − 559
    vmread: 42, // VMCS: 52 × 1266/1579 = 41.7
    vmwrite: 35, // VMCS: 44 × 1266/1579 = 35.3
    instruction: {
      ordinary: ORDINARY,
      memory: MEMORY,
      privileged: PRIVILEGED,
      io: 2533, // BUS: 0.8445 µs × 3.0 GHz = 2533.4
    },
    handlerPerExit: 1298, // SCALE: 4064 × 1266/3963 = 1298.3
    deviceOp: 843, // SCALE: 2639 × 1266/3963 = 843.0
    injection: INJECTION,
    shadow: {
      hiddenFault: HIDDEN_FAULT,
      pteWrite: PTE_WRITE, // SHADOW: 4 × 11 + 3 × 2 = 50 (modelling choice, not calibrated)
      cr3Switch: CR3_SWITCH, // SHADOW: as entryBuilt, 46 (modelling choice: finding or making the new shadow root)
      entryBuilt: ENTRY_BUILT, // SHADOW: 4 × 11 + 2 = 46 (modelling choice, not calibrated)
    },
    walkReference: WALK_REFERENCE,
    eptReference: EPT_REFERENCE,
    tlbHit: TLB_HIT,
    tlbFlush: TLB_FLUSH,
    transitionFlush: TRANSITION_FLUSH,
  },
};

/** Intel Nehalem (Core i7, Xeon 5500): the first part with EPT and VPID. */
export const NEHALEM: CostProfile = {
  name: 'nehalem',
  fullName: 'Intel Core i7 / Xeon 5500 (Nehalem)',
  launchYear: 2009, // B1 table 1 [R]: 3Q2009
  ept: true, // cost-figures §3d: EPT and VPID Nov 2008 (Nehalem); VMware's EPT paper used Xeon 5500
  vpid: true, // cost-figures §3d [S]
  clockGHz: 2.93, // SplitX [R]: Xeon X5570, 2.93 GHz (its handler figure below)
  measuredOn: 'Xeon X5570, 2.93 GHz (SplitX); round trip from B1',
  prices: {
    roundTrip: 1009, // B1 table 1 [R]
    vmEntry: 445, // SPLIT: 1009 × 937/2123 = 445.3
    vmExit: 564, // SPLIT: 1009 − 445
    vmread: 33, // VMCS: 52 × 1009/1579 = 33.2
    vmwrite: 28, // VMCS: 44 × 1009/1579 = 28.1
    instruction: {
      ordinary: ORDINARY,
      memory: MEMORY,
      privileged: PRIVILEGED,
      io: 2474, // BUS: 0.8445 µs × 2.93 GHz = 2474.3
    },
    handlerPerExit: 991, // [D] SplitX [R] direct cost of one KVM exit ≈2000 − B1's 1009
    deviceOp: 672, // SCALE: 2639 × 1009/3963 = 671.9
    injection: INJECTION,
    shadow: {
      hiddenFault: HIDDEN_FAULT,
      pteWrite: PTE_WRITE, // SHADOW: 4 × 11 + 3 × 2 = 50 (modelling choice, not calibrated)
      cr3Switch: CR3_SWITCH, // SHADOW: as entryBuilt, 46 (modelling choice: finding or making the new shadow root)
      entryBuilt: ENTRY_BUILT, // SHADOW: 4 × 11 + 2 = 46 (modelling choice, not calibrated)
    },
    walkReference: WALK_REFERENCE,
    eptReference: EPT_REFERENCE,
    tlbHit: TLB_HIT,
    tlbFlush: TLB_FLUSH,
    transitionFlush: TRANSITION_FLUSH,
  },
};

/** Intel Westmere (Xeon 5600, Core i7 32 nm). */
export const WESTMERE: CostProfile = {
  name: 'westmere',
  fullName: 'Intel Xeon 5600 / Core i7 (Westmere)',
  launchYear: 2010, // B1 table 1 [R]: 1Q2010
  ept: true, // cost-figures §3d: EPT since Nehalem
  vpid: true, // cost-figures §3d [S]: VPID since Nehalem
  clockGHz: 3.33, // B1 [R] converts its exit cost at 3.33 GHz; we take that as its machine's clock
  measuredOn: 'round trip from B1 (3.33 GHz machine); the rest derived',
  prices: {
    roundTrip: 761, // B1 table 1 [R]
    vmEntry: 336, // SPLIT: 761 × 937/2123 = 335.9
    vmExit: 425, // SPLIT: 761 − 336
    vmread: 25, // VMCS: 52 × 761/1579 = 25.1
    vmwrite: 21, // VMCS: 44 × 761/1579 = 21.2
    instruction: {
      ordinary: ORDINARY,
      memory: MEMORY,
      privileged: PRIVILEGED,
      io: 2812, // BUS: 0.8445 µs × 3.33 GHz = 2812.1
    },
    handlerPerExit: 780, // SCALE: 4064 × 761/3963 = 780.4
    deviceOp: 507, // SCALE: 2639 × 761/3963 = 506.8
    injection: INJECTION,
    shadow: {
      hiddenFault: HIDDEN_FAULT,
      pteWrite: PTE_WRITE, // SHADOW: 4 × 11 + 3 × 2 = 50 (modelling choice, not calibrated)
      cr3Switch: CR3_SWITCH, // SHADOW: as entryBuilt, 46 (modelling choice: finding or making the new shadow root)
      entryBuilt: ENTRY_BUILT, // SHADOW: 4 × 11 + 2 = 46 (modelling choice, not calibrated)
    },
    walkReference: WALK_REFERENCE,
    eptReference: EPT_REFERENCE,
    tlbHit: TLB_HIT,
    tlbFlush: TLB_FLUSH,
    transitionFlush: TRANSITION_FLUSH,
  },
};

/** Intel Sandy Bridge (2nd-generation Core i7, Xeon E5). */
export const SANDYBRIDGE: CostProfile = {
  name: 'sandybridge',
  fullName: 'Intel Core i7 2nd gen / Xeon E5 (Sandy Bridge)',
  launchYear: 2011, // B1 table 1 [R]: 1Q2011
  ept: true, // cost-figures §3d: EPT since Nehalem
  vpid: true, // cost-figures §3d [S]: VPID since Nehalem
  clockGHz: 3.3, // Intel's base clock of the i7-3960X that Shalabi measured (the handler figure below); B1 does not give its clock
  measuredOn: 'Core i7-3960X, 3.3 GHz (Shalabi); round trip from B1',
  prices: {
    roundTrip: 784, // B1 table 1 [R]
    vmEntry: 346, // SPLIT: 784 × 937/2123 = 346.0
    vmExit: 438, // SPLIT: 784 − 346
    vmread: 26, // VMCS: 52 × 784/1579 = 25.8
    vmwrite: 22, // VMCS: 44 × 784/1579 = 21.8
    instruction: {
      ordinary: ORDINARY,
      memory: MEMORY,
      privileged: PRIVILEGED,
      io: 2787, // BUS: 0.8445 µs × 3.3 GHz = 2786.8
    },
    handlerPerExit: 866, // [D] Shalabi [R] KVM VMCALL round trip with the handler cut short ≈1600–1700, midpoint 1650 − B1's 784
    deviceOp: 522, // SCALE: 2639 × 784/3963 = 522.1
    injection: INJECTION,
    shadow: {
      hiddenFault: HIDDEN_FAULT,
      pteWrite: PTE_WRITE, // SHADOW: 4 × 11 + 3 × 2 = 50 (modelling choice, not calibrated)
      cr3Switch: CR3_SWITCH, // SHADOW: as entryBuilt, 46 (modelling choice: finding or making the new shadow root)
      entryBuilt: ENTRY_BUILT, // SHADOW: 4 × 11 + 2 = 46 (modelling choice, not calibrated)
    },
    walkReference: WALK_REFERENCE,
    eptReference: EPT_REFERENCE,
    tlbHit: TLB_HIT,
    tlbFlush: TLB_FLUSH,
    transitionFlush: TRANSITION_FLUSH,
  },
};

/**
 * Intel Skylake, figures from Skylake-SP servers. No single-harness hardware
 * round trip exists for it (cost-figures "gaps" 4); the published figure is
 * KVM's whole VMCALL round trip, which we split into hardware and software in
 * Sandy Bridge's proportion.
 */
export const SKYLAKE: CostProfile = {
  name: 'skylake',
  fullName: 'Intel Core 6th gen / Xeon Scalable (Skylake)',
  launchYear: 2015, // Skylake client parts, Aug 2015 (the Skylake-SP servers measured came in 2017)
  ept: true, // cost-figures §3d: EPT since Nehalem
  vpid: true, // cost-figures §3d [S]: VPID since Nehalem
  clockGHz: 2.5, // Li [R]: "Skylake server, 2.5 GHz" (vmexit.flat, 1,800 cycles vmentry+vmexit)
  measuredOn: 'Skylake-SP servers, 2.5 GHz (Li, KVM vmexit.flat); hardware share derived',
  prices: {
    roundTrip: 734, // [D] Li [R] KVM vmcall 1529–1559 (midpoint 1544) × Sandy Bridge's hardware share 784/1650 = 733.6
    vmEntry: 324, // SPLIT: 734 × 937/2123 = 324.0
    vmExit: 410, // SPLIT: 734 − 324
    vmread: 24, // VMCS: 52 × 734/1579 = 24.2
    vmwrite: 20, // VMCS: 44 × 734/1579 = 20.5 (20.45)
    instruction: {
      ordinary: ORDINARY,
      memory: MEMORY,
      privileged: PRIVILEGED,
      io: 2111, // BUS: 0.8445 µs × 2.5 GHz = 2111.2
    },
    handlerPerExit: 810, // [D] Li [R] KVM vmcall 1544 − 734 hardware
    deviceOp: 489, // SCALE: 2639 × 734/3963 = 488.8
    injection: INJECTION,
    shadow: {
      hiddenFault: HIDDEN_FAULT,
      pteWrite: PTE_WRITE, // SHADOW: 4 × 11 + 3 × 2 = 50 (modelling choice, not calibrated)
      cr3Switch: CR3_SWITCH, // SHADOW: as entryBuilt, 46 (modelling choice: finding or making the new shadow root)
      entryBuilt: ENTRY_BUILT, // SHADOW: 4 × 11 + 2 = 46 (modelling choice, not calibrated)
    },
    walkReference: WALK_REFERENCE,
    eptReference: EPT_REFERENCE,
    tlbHit: TLB_HIT,
    tlbFlush: TLB_FLUSH,
    transitionFlush: TRANSITION_FLUSH,
  },
};

/** Every profile, oldest first. */
export const COST_PROFILES: readonly CostProfile[] = [PRESCOTT, MEROM, PENRYN, NEHALEM, WESTMERE, SANDYBRIDGE, SKYLAKE];

/** The profile of that name (lower case, e.g. 'skylake'), or undefined if there is none. */
export function findProfile(name: string): CostProfile | undefined {
  return COST_PROFILES.find((p) => p.name === name);
}
