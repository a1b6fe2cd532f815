/**
 * VM entries (SDM vol. 3C, chapter 27), after VMLAUNCH/VMRESUME's own checks:
 * the checks on controls and host state (27.2, VMfailValid 7 or 8), the checks
 * on guest state (27.3.1) and its loading (27.3.2), the VM-entry MSR-load area
 * (27.4), and event injection (27.6), which happens at the first instruction
 * boundary in non-root operation. A failure after 27.2 is a VM exit with bit 31
 * of the exit reason set (27.8).
 */
import { ExitReason, EXIT_REASON_VM_ENTRY_FAILURE } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { VmInstructionError } from '../../vmcs/instruction-errors.js';
import { VmEntryControls as N } from '../../vmcs/controls.js';
import type { Cpu } from '../cpu/cpu.js';
import { deliverException, EventKind } from '../cpu/interrupts.js';
import { jumpRelative } from '../cpu/operands.js';
import { CR3_RSVD_HI, PDPTE_RSVD_LO, PagingMode, pagingMode } from '../cpu/paging.js';
import { EFER_LMA, EFER_LME, RSP, SegAttr } from '../cpu/regs.js';
import { checkControls, checkGuestState, checkHostState, guestRipFailure, vtprFailure } from './entry-checks.js';
import { accessRights, CR0_KEPT, HLT, SHUTDOWN, WAIT_FOR_SIPI } from './exit.js';
import { ACCESS_AT, BASE_AT, CONTROL_AT as C, GUEST_AT as G, LIMIT_AT, PDPTE_FIELDS, SEGMENTS, SELECTOR_AT } from './state-fields.js';
import { PREEMPTION_TIMER_SHIFT } from './capabilities.js';
import { loadMsrs } from './msr-areas.js';
import { Derived, type Vmcs } from './vmcs.js';
import type { Vmx } from './vmx.js';

/** Pending debug exceptions bits (25.4.2, table 25-4): enabled breakpoint, BS. */
const PENDING_ENABLED_BREAKPOINT = 1 << 12, PENDING_BS = 1 << 14;
/** VM-entry failure qualifications (27.8). */
const QUALIFICATION_PDPTE = 2;

/**
 * VM entry from VMLAUNCH (launch) or VMRESUME, once the instruction's checks
 * passed. Returns normally in every case: VMfailValid sets the flags, a
 * guest-state failure has already completed as a VM exit.
 */
export function vmEntry(vmx: Vmx, cpu: Cpu, launch: boolean): void {
  const v = vmx.current!, caps = vmx.caps;
  // On the inputs of the last entry that passed, the checks pass again, but for those that read memory
  // or change with nearly every entry (guest RIP): only those are made. The first failing check in the
  // SDM's order is the same either way.
  const lma = cpu.efer & EFER_LMA, recheck = (v.fresh & Derived.CHECKS) === 0 || v.checkedLma !== lma;
  let failure = recheck ? checkControls(cpu, v, caps) : vtprFailure(cpu, v);
  if (failure === null && recheck) failure = checkHostState(cpu, v, caps);
  if (failure !== null) {
    vmx.entryFailed(failure);
    vmx.failValid(cpu, failure.kind === 'controls'
      ? VmInstructionError.ENTRY_INVALID_CONTROL_FIELDS : VmInstructionError.ENTRY_INVALID_HOST_STATE);
    return;
  }
  // From here on a failure is a VM exit to the host (27.8); the instruction itself succeeded.
  vmx.succeed(cpu);
  failure = recheck ? checkGuestState(cpu, v, caps) : guestRipFailure(v);
  // The VMCS-link-pointer check reads the linked region (27.3.1.5): with one, the checks are made every time.
  const vals = v.values;
  if (failure === null && recheck && vals[C.VMCS_LINK_POINTER] === -1 && vals[C.VMCS_LINK_POINTER + 1] === -1) {
    v.fresh |= Derived.CHECKS;
    v.checkedLma = lma;
  }
  if (failure !== null) {
    vmx.entryFailed(failure);
    entryFailure(vmx, cpu, ExitReason.VM_ENTRY_FAILURE_INVALID_GUEST_STATE, failure.qualification);
    return;
  }
  vmx.lastEntryFailure = null;
  if (!loadGuestState(vmx, cpu)) {
    vmx.entryFailed({
      kind: 'guest', check: 'guest PDPTEs', section: '27.3.1.6',
      detail: 'a present PDPTE referenced by guest CR3 has a reserved bit set', qualification: QUALIFICATION_PDPTE,
    });
    entryFailure(vmx, cpu, ExitReason.VM_ENTRY_FAILURE_INVALID_GUEST_STATE, QUALIFICATION_PDPTE);
    return;
  }
  const count = vals[C.ENTRY_MSR_LOAD_COUNT]!;
  const bad = count === 0 ? 0 : loadMsrs(cpu, v.num(Field.VM_ENTRY_MSR_LOAD_ADDRESS), count, true);
  if (bad !== 0) {
    entryFailure(vmx, cpu, ExitReason.VM_ENTRY_FAILURE_MSR_LOADING, bad);
    return;
  }
  if (launch) v.launched = true;
  vmx.pauseLoopStart = -1;
  // 27.6: an event to inject is delivered at the first boundary in the guest (acceptEvents).
  const info = vals[C.ENTRY_INTERRUPTION_INFO]!;
  vmx.injectPending = info < 0;
  // Pending debug exceptions (27.7.3): BS, or B3-B0 with "enabled breakpoint", make a #DB trap at the
  // first boundary, unless the entry injects an external interrupt, NMI, hardware exception or privileged
  // software exception (they are lost), or MOV SS blocks them, or the guest waits for a SIPI or is shut down.
  const pending = vals[G.PENDING_DEBUG]!;
  const valid = (pending & PENDING_BS) !== 0 || ((pending & PENDING_ENABLED_BREAKPOINT) !== 0 && (pending & 0xf) !== 0);
  const type = (info >>> 8) & 7;
  const lost = vmx.injectPending && (type === 0 || type === 2 || type === 3 || type === 5);
  vmx.pendingDebug = valid && !lost && !(cpu.insnCount < cpu.interruptShadowEnd && cpu.shadowBySs) &&
    !cpu.waitForSipi && !vmx.shutdown ? pending & (0xf | PENDING_BS) : 0;
  // Monitor trap flag (26.5.2): an MTF VM exit after the first guest instruction, or right
  // after the delivery of an injected event (27.7.8, pending MTF VM exits).
  const proc = vals[C.PROC]!;
  // An entry into HLT or shutdown has its MTF exit at once: it wakes the processor (26.5.2).
  const immediate = vmx.injectPending || cpu.halted;
  vmx.mtfAt = proc & (1 << 27) && !cpu.waitForSipi ? cpu.insnCount + (immediate ? 0 : 1) : -1;
  // VMX-preemption timer (26.5.1): the value counts down once every 2^X TSC ticks (IA32_VMX_MISC[4:0]).
  cpu.eventDeadline = vals[C.PIN]! & (1 << 6)
    ? cpu.now() + (v.lo(Field.VMX_PREEMPTION_TIMER_VALUE) >>> 0) * 2 ** PREEMPTION_TIMER_SHIFT : Infinity;
}

/** A VM-entry failure after the host-state checks: a VM exit with bit 31 of the reason set (27.8). */
function entryFailure(vmx: Vmx, cpu: Cpu, reason: number, qualification: number): void {
  const e = vmx.exitInfo;
  e.begin((reason | EXIT_REASON_VM_ENTRY_FAILURE) >>> 0);
  e.qualificationLo = qualification;
  vmx.completeExit(cpu);
}

/**
 * 27.3.2 "Loading Guest State". False when PDPTE loading fails (27.3.1.6).
 * Also how a hypervisor written in TypeScript puts the processor in its guest's
 * context to emulate something on the guest's state (src/hv/task-switch.ts).
 */
export function loadGuestState(vmx: Vmx, cpu: Cpu): boolean {
  const v = vmx.current!, vals = v.values, entry = vals[C.ENTRY]!;
  const ia32e = (entry & (1 << N.IA_32E_MODE_GUEST)) !== 0;
  // 27.3.2.1: control registers, debug registers, MSRs.
  // ET, CD, NW and the reserved bits keep their value (27.3.2.1), as at VM exits (28.5.1).
  cpu.cr0 = (vals[G.CR0]! & ~CR0_KEPT) | (cpu.cr0 & CR0_KEPT);
  cpu.cr4 = vals[G.CR4]!;
  cpu.cr3Lo = vals[G.CR3]!; cpu.cr3Hi = vals[G.CR3 + 1]!;
  if (entry & (1 << N.LOAD_DEBUG_CONTROLS)) {
    cpu.dr7 = v.lo(Field.GUEST_DR7);
    cpu.msrs.debugCtl = v.lo(Field.GUEST_IA32_DEBUGCTL);
  }
  const m = cpu.msrs;
  m.sysenterCsLo = vals[G.SYSENTER_CS]!; m.sysenterCsHi = 0;
  m.sysenterEspLo = vals[G.SYSENTER_ESP]!; m.sysenterEspHi = vals[G.SYSENTER_ESP + 1]!;
  m.sysenterEipLo = vals[G.SYSENTER_EIP]!; m.sysenterEipHi = vals[G.SYSENTER_EIP + 1]!;
  if (entry & (1 << N.LOAD_IA32_PAT)) { m.patLo = v.lo(Field.GUEST_IA32_PAT); m.patHi = v.hi(Field.GUEST_IA32_PAT); }
  if (entry & (1 << N.LOAD_IA32_EFER)) cpu.efer = v.lo(Field.GUEST_IA32_EFER);
  else {
    // Without "load IA32_EFER", LMA follows "IA-32e mode guest", and so does LME when paging is on.
    cpu.efer = ia32e ? cpu.efer | EFER_LMA : cpu.efer & ~EFER_LMA;
    if (cpu.cr0 & 0x80000000) cpu.efer = ia32e ? cpu.efer | EFER_LME : cpu.efer & ~EFER_LME;
  }
  // 27.3.2.2: segment registers and descriptor-table registers. They follow from the segment fields,
  // "IA-32e mode guest" and EFER.LMA: loaded into the VMCS's bank once, then used while those stay (vmcs.ts Derived).
  const key = (ia32e ? 2 : 0) | (cpu.efer & EFER_LMA ? 1 : 0), bank = v.guestSegments;
  cpu.useSegmentBank(bank); // with the code and stack sizes, EFER being loaded
  if ((v.fresh & Derived.GUEST_SEGMENTS) === 0 || v.guestSegmentsKey !== key || !bank.pristine) {
    v.guestSegmentsSaved = loadGuestSegments(cpu, vals, ia32e);
    v.guestSegmentsKey = key;
    v.fresh |= Derived.GUEST_SEGMENTS;
    cpu.markSegmentBankPristine();
  }
  vmx.guestSegWrites = v.guestSegmentsSaved ? cpu.segWrites : -1;
  cpu.gdtrLo = vals[G.GDTR_BASE]!; cpu.gdtrHi = vals[G.GDTR_BASE + 1]!; cpu.gdtrLimit = vals[G.GDTR_LIMIT]! & 0xffff;
  cpu.idtrLo = vals[G.IDTR_BASE]!; cpu.idtrHi = vals[G.IDTR_BASE + 1]!; cpu.idtrLimit = vals[G.IDTR_LIMIT]! & 0xffff;
  // 27.3.2.3: RIP, RSP, RFLAGS; CPL is SS.DPL.
  cpu.ripLo = vals[G.RIP]!; cpu.ripHi = vals[G.RIP + 1]!;
  cpu.gpr[2 * RSP] = vals[G.RSP]!; cpu.gpr[2 * RSP + 1] = vals[G.RSP + 1]!;
  cpu.rflags = vals[G.RFLAGS]!;
  cpu.cpl = (vals[G.SS_ACCESS]! >>> 5) & 3;
  // Without VPIDs, VM entry invalidates the linear and combined mappings of VPID 0000H; with them,
  // the guest's own tagged mappings stay and are used (29.4.3.1).
  const proc = vals[C.PROC]!, secondary = proc & (1 << 31) ? vals[C.PROC2]! : 0;
  // With "enable EPT", guest-physical addresses go through the EPT the EPTP names (29.3).
  const ept = (secondary & (1 << 1)) !== 0;
  if (ept) vmx.ept.use(v.lo(Field.EPT_POINTER), v.hi(Field.EPT_POINTER));
  cpu.paging.nested = ept ? vmx.ept : null;
  // (Either takes up CR4 and EFER: the linear-address width.)
  if (secondary & (1 << 5)) cpu.paging.switchVpid(vals[C.VPID]!);
  else cpu.mmu.flush();
  // 27.3.1.6 / 27.3.2.4: PAE paging loads the PDPTEs from guest CR3, or with EPT from the guest PDPTE fields.
  if (pagingMode(cpu) === PagingMode.PAE && !(ept ? loadPdpteFields(v, cpu) : cpu.paging.loadPdptes(cpu.cr3Lo))) return false;
  // 27.3.2.5 (non-register state): interruptibility and activity.
  const blocking = vals[G.INTERRUPTIBILITY]!;
  cpu.interruptShadowEnd = blocking & 3 ? cpu.insnCount + 1 : -1;
  cpu.shadowBySs = (blocking & 2) !== 0;
  cpu.nmiBlocked = (blocking & 8) !== 0;
  const activity = vals[G.ACTIVITY]!;
  // Shutdown (27.7.2 "Activity State"): like HLT, but only INIT and NMIs end it, as VM exits.
  cpu.halted = activity === HLT || activity === SHUTDOWN;
  vmx.shutdown = activity === SHUTDOWN;
  cpu.waitForSipi = activity === WAIT_FOR_SIPI;
  cpu.nonRoot = true;
  // TSC offsetting (26.3): RDTSC and RDMSR of IA32_TIME_STAMP_COUNTER see TSC + offset while in the guest.
  if (proc & (1 << 3)) {
    vmx.guestTscOffset = v.hi(Field.TSC_OFFSET) * 0x100000000 + (v.lo(Field.TSC_OFFSET) >>> 0);
    cpu.tscOffset += vmx.guestTscOffset;
  }
  return true;
}

/**
 * The segment registers of 27.3.2.2 from the guest fields `vals` of a VMCS; an
 * unusable segment holds no access. True when the fields hold what a VM exit
 * would save of the segments as loaded (exit.ts saveGuestState).
 */
function loadGuestSegments(cpu: Cpu, vals: Int32Array, ia32e: boolean): boolean {
  let saved = true;
  for (let k = 0; k < 8; k++) {
    const ar = vals[ACCESS_AT[k]!]!, base = BASE_AT[k]!, baseHi = ia32e ? vals[base + 1]! : 0;
    const attr = ar & SegAttr.UNUSABLE ? ar & SegAttr.DPL : ar & 0xf0ff;
    cpu.setSegment(SEGMENTS[k]!, vals[SELECTOR_AT[k]!]!, vals[base]!, baseHi, vals[LIMIT_AT[k]!]! >>> 0, attr);
    if (accessRights(attr) !== ar || baseHi !== vals[base + 1]) saved = false;
  }
  return saved;
}

/**
 * With EPT and PAE paging, VM entry loads the PDPTEs from the guest PDPTE
 * fields (27.3.2.4); a present one with a reserved bit set (bits 2:1, 8:5,
 * 63:MAXPHYADDR) fails the entry (27.3.1.6).
 */
function loadPdpteFields(v: Vmcs, cpu: Cpu): boolean {
  for (let k = 0; k < 4; k++) {
    const lo = v.lo(PDPTE_FIELDS[k]!), hi = v.hi(PDPTE_FIELDS[k]!);
    if ((lo & 1) !== 0 && ((lo & PDPTE_RSVD_LO) !== 0 || (hi & CR3_RSVD_HI) !== 0)) return false;
  }
  for (let k = 0; k < 4; k++) {
    cpu.pdpte[2 * k] = v.lo(PDPTE_FIELDS[k]!); cpu.pdpte[2 * k + 1] = v.hi(PDPTE_FIELDS[k]!);
  }
  return true;
}

/**
 * Delivers the event of the VM-entry interruption-information field in the
 * guest (27.6.1): vectored through the guest IDT as if it had occurred there,
 * not subject to the exception bitmap. A software interrupt or exception
 * pushes RIP + the VM-entry instruction length.
 */
export function injectEvent(vmx: Vmx, cpu: Cpu): void {
  const v = vmx.current!;
  const info = v.lo(Field.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD);
  const vector = info & 0xff, type = (info >>> 8) & 7;
  vmx.injectPending = false;
  vmx.injecting = info;
  cpu.halted = false;
  let kind: EventKind;
  switch (type) {
    case 0: kind = EventKind.EXTERNAL; break;
    case 2: kind = EventKind.NMI; cpu.nmiBlocked = true; break;
    case 4: kind = EventKind.SOFTWARE_INTERRUPT; break;
    case 5: kind = EventKind.PRIVILEGED_SOFTWARE_EXCEPTION; break;
    case 6: kind = EventKind.SOFTWARE_EXCEPTION; break;
    default: kind = EventKind.EXCEPTION; // hardware exception (3)
  }
  cpu.excLength = 0;
  if (type >= 4) {
    cpu.excLength = v.lo(Field.VM_ENTRY_INSTRUCTION_LENGTH);
    jumpRelative(cpu, cpu.codeSize, cpu.excLength);
  }
  cpu.excVector = vector;
  cpu.excKind = kind;
  cpu.excHasCode = (info & (1 << 11)) !== 0;
  cpu.excCode = v.lo(Field.VM_ENTRY_EXCEPTION_ERROR_CODE);
  cpu.excTrap = type >= 4;
  try {
    deliverException(cpu);
  } finally {
    vmx.injecting = 0;
  }
}
