/**
 * VM exits (SDM vol. 3C, chapter 28): recording the exit information, saving
 * the guest state, the VM-exit MSR-store area, loading the host state, the
 * VM-exit MSR-load area, and VMX aborts. A VM-entry failure after the checks of
 * 27.2 ends here too, without saving guest state (27.8).
 */
import { Field } from '../../vmcs/fields.js';
import { ExitReason, EXIT_REASON_VM_ENTRY_FAILURE } from '../../vmcs/exit-reasons.js';
import { VmExitControls as X } from '../../vmcs/controls.js';
import { VmxAbort, VMX_ABORT_INDICATOR_OFFSET } from '../../vmcs/layout.js';
import type { Cpu } from '../cpu/cpu.js';
import { materialize } from '../cpu/flags.js';
import { PagingMode, pagingMode } from '../cpu/paging.js';
import { CS, EFER_LMA, EFER_LME, FS, GS, LDTR, RF, RSP, SegAttr, TR } from '../cpu/regs.js';
import { PREEMPTION_TIMER_SHIFT } from './capabilities.js';
import { loadMsrs, storeMsrs } from './msr-areas.js';
import {
  ACCESS_AT, BASE_AT, CONTROL_AT as C, EXIT_AT, GUEST_AT as G, HOST_AT as H, HOST_SELECTOR_AT, LIMIT_AT, PDPTE_FIELDS, SEGMENTS, SELECTOR_AT,
} from './state-fields.js';
import { Derived } from './vmcs.js';
import type { Vmx } from './vmx.js';

/** Interruptibility-state bits (25.4.2, table 25-3). */
const BLOCKING_BY_STI = 1, BLOCKING_BY_MOV_SS = 2, BLOCKING_BY_NMI = 8;
/** Activity states (25.4.2, table 25-4). */
export const ACTIVE = 0, HLT = 1, SHUTDOWN = 2, WAIT_FOR_SIPI = 3;

/** The information a VM exit records (28.2), filled in when the exit is decided. */
export class ExitInfo {
  reason = 0;
  qualificationLo = 0; qualificationHi = 0;
  /** Guest-linear address: written only by exits that define it (28.2.1, "guest-linear address"). */
  hasLinear = false;
  linearLo = 0; linearHi = 0;
  /** Guest-physical address: written only by EPT violations and misconfigurations (28.2.1). */
  hasPhysical = false;
  physical = 0;
  interruptionInfo = 0; interruptionError = 0;
  idtVectoringInfo = 0; idtVectoringError = 0;
  instructionLength = 0;
  instructionInfo = 0;

  /** Starts a new record: everything 0 but the reason. */
  begin(reason: number): void {
    this.reason = reason;
    this.qualificationLo = 0; this.qualificationHi = 0;
    this.hasLinear = false;
    this.hasPhysical = false;
    this.interruptionInfo = 0; this.interruptionError = 0;
    this.idtVectoringInfo = 0; this.idtVectoringError = 0;
    this.instructionLength = 0; this.instructionInfo = 0;
  }
}

/**
 * Completes a VM exit (28.1): writes the exit information, saves the guest
 * state, stores guest MSRs, and loads the host state and MSRs.
 */
export function completeExit(vmx: Vmx, cpu: Cpu): void {
  const v = vmx.current!, e = vmx.exitInfo;
  cpu.vmExit = false;
  const basic = e.reason & 0xffff;
  if (basic < vmx.exitCounts.length) vmx.exitCounts[basic]++;
  // The exit-information fields (28.2): written directly, as no entry check reads them.
  v.put(EXIT_AT.REASON, e.reason, 0);
  v.put(EXIT_AT.QUALIFICATION, e.qualificationLo, e.qualificationHi);
  if (e.hasLinear) v.put(EXIT_AT.LINEAR, e.linearLo, e.linearHi);
  if (e.hasPhysical) v.put(EXIT_AT.PHYSICAL, e.physical % 2 ** 32 | 0, Math.floor(e.physical / 2 ** 32));
  v.put(EXIT_AT.INTERRUPTION_INFO, e.interruptionInfo, 0);
  v.put(EXIT_AT.INTERRUPTION_ERROR, e.interruptionError, 0);
  v.put(EXIT_AT.IDT_VECTORING_INFO, e.idtVectoringInfo, 0);
  v.put(EXIT_AT.IDT_VECTORING_ERROR, e.idtVectoringError, 0);
  v.put(EXIT_AT.INSTRUCTION_LENGTH, e.instructionLength, 0);
  v.put(EXIT_AT.INSTRUCTION_INFO, e.instructionInfo, 0);
  // Every VM exit clears the valid bit of the VM-entry interruption-information field (28.2).
  const vals = v.values, info = vals[C.ENTRY_INTERRUPTION_INFO]!;
  if (info < 0 && v.put(C.ENTRY_INTERRUPTION_INFO, info & 0x7fffffff, 0) !== 0) v.fresh &= ~Derived.CHECKS;
  if ((e.reason & EXIT_REASON_VM_ENTRY_FAILURE) === 0) {
    saveGuestState(vmx, cpu);
    const count = vals[C.EXIT_MSR_STORE_COUNT]!;
    if (count !== 0 && !storeMsrs(cpu, v.num(Field.VM_EXIT_MSR_STORE_ADDRESS), count)) {
      abort(vmx, cpu, VmxAbort.SAVING_GUEST_MSRS);
      return;
    }
  }
  leaveNonRoot(vmx, cpu);
  loadHostState(vmx, cpu);
  const count = vals[C.EXIT_MSR_LOAD_COUNT]!;
  if (count !== 0 && loadMsrs(cpu, v.num(Field.VM_EXIT_MSR_LOAD_ADDRESS), count) !== 0) {
    abort(vmx, cpu, VmxAbort.LOADING_HOST_MSRS);
    return;
  }
  if (vmx.stopOnExit) cpu.stop({ kind: 'vm-exit' });
}

/** Undoes what entering non-root operation changed outside the VMCS (TSC offset); also for src/hv's emulation in the guest's context. */
export function leaveNonRoot(vmx: Vmx, cpu: Cpu): void {
  cpu.nonRoot = false;
  cpu.paging.nested = null; // the host's addresses are physical (29.3)
  cpu.eventDeadline = Infinity;
  vmx.mtfAt = -1;
  vmx.tprBelowThreshold = false;
  vmx.shutdown = false;
  vmx.pendingDebug = 0;
  cpu.tscOffset -= vmx.guestTscOffset;
  vmx.guestTscOffset = 0;
  vmx.injectPending = false;
}

/** 28.3 "Saving Guest State" (also how a hypervisor written in TypeScript takes a loaded guest into its VMCS, src/hv). */
export function saveGuestState(vmx: Vmx, cpu: Cpu): void {
  const v = vmx.current!, vals = v.values, exitControls = vals[C.EXIT]!;
  // The fields every exit saves are written directly (v.put); `changed` collects what the entry checks see.
  // 28.3.1: CR0, CR3, CR4, DR7 (with "save debug controls"), the SYSENTER MSRs, PAT and EFER when saved.
  let changed = v.put(G.CR0, cpu.cr0, 0) | v.put(G.CR3, cpu.cr3Lo, cpu.cr3Hi) | v.put(G.CR4, cpu.cr4, 0);
  if (exitControls & (1 << X.SAVE_DEBUG_CONTROLS)) {
    v.set(Field.GUEST_DR7, cpu.dr7);
    v.set(Field.GUEST_IA32_DEBUGCTL, cpu.msrs.debugCtl);
  }
  const m = cpu.msrs;
  changed |= v.put(G.SYSENTER_CS, m.sysenterCsLo, 0) | v.put(G.SYSENTER_ESP, m.sysenterEspLo, m.sysenterEspHi) |
    v.put(G.SYSENTER_EIP, m.sysenterEipLo, m.sysenterEipHi);
  if (exitControls & (1 << X.SAVE_IA32_PAT)) v.set(Field.GUEST_IA32_PAT, m.patLo, m.patHi);
  if (exitControls & (1 << X.SAVE_IA32_EFER)) v.set(Field.GUEST_IA32_EFER, cpu.efer);
  // IA32_VMX_MISC[5]: the "IA-32e mode guest" entry control follows EFER.LMA.
  const entry = vals[C.ENTRY]!;
  changed |= v.put(C.ENTRY, cpu.efer & EFER_LMA ? entry | (1 << 9) : entry & ~(1 << 9), 0);
  // 28.3.2: segment registers (the hidden parts as the processor holds them), GDTR, IDTR. The fields
  // already hold them when no segment register changed since the entry loaded them from fields that
  // were as an exit saves them (entry.ts loadGuestState sets guestSegWrites).
  // (Written out rather than through put: this loop runs at every exit. Bits 63:32 of the selector,
  // limit and access-rights fields are always 0.)
  let segmentsChanged = 0;
  for (let k = 0; k < 8 && cpu.segWrites !== vmx.guestSegWrites; k++) {
    const s = SEGMENTS[k]!, sel = SELECTOR_AT[k]!, base = BASE_AT[k]!, limit = LIMIT_AT[k]!, ar = ACCESS_AT[k]!;
    const nSel = cpu.segSel[s]!, nLo = cpu.segBase[2 * s]!, nHi = cpu.segBase[2 * s + 1]!;
    const nLimit = cpu.segLimit[s]! | 0, nAr = accessRights(cpu.segAttr[s]!);
    segmentsChanged |= (vals[sel]! ^ nSel) | (vals[base]! ^ nLo) | (vals[base + 1]! ^ nHi) | (vals[limit]! ^ nLimit) | (vals[ar]! ^ nAr);
    vals[sel] = nSel; vals[base] = nLo; vals[base + 1] = nHi; vals[limit] = nLimit; vals[ar] = nAr;
  }
  if (segmentsChanged !== 0) v.fresh &= ~(Derived.CHECKS | Derived.GUEST_SEGMENTS);
  changed |= v.put(G.GDTR_BASE, cpu.gdtrLo, cpu.gdtrHi) | v.put(G.GDTR_LIMIT, cpu.gdtrLimit, 0) |
    v.put(G.IDTR_BASE, cpu.idtrLo, cpu.idtrHi) | v.put(G.IDTR_LIMIT, cpu.idtrLimit, 0);
  // 28.3.3: RIP (of the instruction or event that caused the exit: the caller left it so), RSP, RFLAGS.
  v.put(G.RIP, cpu.ripLo, cpu.ripHi); // not among the checks' inputs (vmcs.ts STALES)
  changed |= v.put(G.RSP, cpu.gpr[2 * RSP]!, cpu.gpr[2 * RSP + 1]!) | v.put(G.RFLAGS, savedRflags(vmx, cpu), 0);
  // 28.3.4: activity and interruptibility state.
  const activity = cpu.waitForSipi ? WAIT_FOR_SIPI : vmx.shutdown ? SHUTDOWN : cpu.halted ? HLT : ACTIVE;
  let blocking = 0;
  if (cpu.insnCount < cpu.interruptShadowEnd) blocking |= cpu.shadowBySs ? BLOCKING_BY_MOV_SS : BLOCKING_BY_STI;
  if (cpu.nmiBlocked) blocking |= BLOCKING_BY_NMI;
  // Pending debug exceptions (28.3.4): what the entry made pending and was not yet delivered.
  changed |= v.put(G.ACTIVITY, activity, 0) | v.put(G.INTERRUPTIBILITY, blocking, 0) | v.put(G.PENDING_DEBUG, vmx.pendingDebug, 0);
  if (changed !== 0) v.fresh &= ~Derived.CHECKS;
  // With EPT and PAE paging, the PDPTEs are saved to the guest PDPTE fields (28.3.4).
  if (cpu.paging.nested !== null && pagingMode(cpu) === PagingMode.PAE) {
    for (let k = 0; k < 4; k++) v.set(PDPTE_FIELDS[k]!, cpu.pdpte[2 * k]!, cpu.pdpte[2 * k + 1]!);
  }
  // "Save VMX-preemption timer value" (28.3.4): what is left of the count, rounded up.
  if (exitControls & (1 << X.SAVE_VMX_PREEMPTION_TIMER_VALUE) && cpu.eventDeadline !== Infinity) {
    const left = Math.max(0, cpu.eventDeadline - cpu.now());
    v.set(Field.VMX_PREEMPTION_TIMER_VALUE, Math.ceil(left / 2 ** PREEMPTION_TIMER_SHIFT));
  }
  cpu.halted = false;
  cpu.waitForSipi = false;
}

/**
 * RFLAGS as a VM exit saves it (28.3.3): RF is 1 after an EPT violation or
 * misconfiguration that did not occur during event delivery, so that the
 * instruction, re-executed, takes no instruction breakpoint again. (During
 * delivery it would be what the event's RFLAGS image held; the model keeps RF.)
 */
function savedRflags(vmx: Vmx, cpu: Cpu): number {
  const e = vmx.exitInfo, rflags = materialize(cpu);
  const ept = e.reason === ExitReason.EPT_VIOLATION || e.reason === ExitReason.EPT_MISCONFIGURATION;
  return ept && (e.idtVectoringInfo & 0x80000000) === 0 ? rflags | RF : rflags;
}

/**
 * A segment's access rights as the VMCS holds them: a null or unusable
 * segment (not present, here) has the "unusable" bit (25.4.1).
 */
export function accessRights(attr: number): number {
  return attr & SegAttr.P ? attr & ~SegAttr.UNUSABLE : attr | SegAttr.UNUSABLE;
}

/** CR0 bits VM entries and exits do not load: ET, NW, CD and reserved bits 28:19, 17, 15:6 (27.3.2.1, 28.5.1). */
export const CR0_KEPT = 0x7ffaffd0;

/** Flat data-segment access rights after a VM exit: read/write, accessed, present, 4-KByte granularity, 32-bit (28.5.2). */
const HOST_DATA = 3 | SegAttr.S | SegAttr.P | SegAttr.DB | SegAttr.G;

/** 28.5 "Loading Host State". */
export function loadHostState(vmx: Vmx, cpu: Cpu): void {
  const v = vmx.current!, vals = v.values, exitControls = vals[C.EXIT]!;
  const host64 = (exitControls & (1 << X.HOST_ADDRESS_SPACE_SIZE)) !== 0;
  // 28.5.1: CR0, CR3, CR4, DR7, MSRs. CR0.ET, NW, CD and the reserved bits 28:19, 17, 15:6 keep their value.
  cpu.cr0 = (vals[H.CR0]! & ~CR0_KEPT) | (cpu.cr0 & CR0_KEPT);
  cpu.cr4 = vals[H.CR4]!;
  cpu.cr3Lo = vals[H.CR3]!; cpu.cr3Hi = vals[H.CR3 + 1]!;
  cpu.dr7 = 0x400;
  const m = cpu.msrs;
  m.debugCtl = 0;
  m.sysenterCsLo = vals[H.SYSENTER_CS]!; m.sysenterCsHi = 0;
  m.sysenterEspLo = vals[H.SYSENTER_ESP]!; m.sysenterEspHi = vals[H.SYSENTER_ESP + 1]!;
  m.sysenterEipLo = vals[H.SYSENTER_EIP]!; m.sysenterEipHi = vals[H.SYSENTER_EIP + 1]!;
  if (exitControls & (1 << X.LOAD_IA32_PAT)) { m.patLo = v.lo(Field.HOST_IA32_PAT); m.patHi = v.hi(Field.HOST_IA32_PAT); }
  if (exitControls & (1 << X.LOAD_IA32_EFER)) cpu.efer = v.lo(Field.HOST_IA32_EFER);
  else cpu.efer = host64 ? cpu.efer | EFER_LMA | EFER_LME : cpu.efer & ~(EFER_LMA | EFER_LME);
  // 28.5.2: segments. Selectors from the host fields; CS, SS, DS, ES, FS, GS flat and present
  // (a null SS, DS, ES, FS or GS is unusable), TR a busy 64- or 32-bit TSS of limit 67H, LDTR unusable.
  // They follow from the host fields and the VM-exit controls alone: loaded into the VMCS's bank once,
  // then used while those stay and the host leaves them alone (vmcs.ts Derived).
  cpu.useSegmentBank(v.hostSegments); // with the code and stack sizes, EFER being loaded
  if ((v.fresh & Derived.HOST_SEGMENTS) === 0 || !v.hostSegments.pristine) {
    loadHostSegments(cpu, vals, host64);
    v.fresh |= Derived.HOST_SEGMENTS;
    cpu.markSegmentBankPristine();
  }
  cpu.gdtrLo = vals[H.GDTR_BASE]!; cpu.gdtrHi = vals[H.GDTR_BASE + 1]!; cpu.gdtrLimit = 0xffff;
  cpu.idtrLo = vals[H.IDTR_BASE]!; cpu.idtrHi = vals[H.IDTR_BASE + 1]!; cpu.idtrLimit = 0xffff;
  // 28.5.3: RIP, RSP; RFLAGS cleared but bit 1.
  cpu.ripLo = vals[H.RIP]!; cpu.ripHi = host64 ? vals[H.RIP + 1]! : 0;
  cpu.gpr[2 * RSP] = vals[H.RSP]!; cpu.gpr[2 * RSP + 1] = host64 ? vals[H.RSP + 1]! : 0;
  cpu.rflags = 2;
  cpu.cpl = 0;
  // NMI blocking: an exit caused by an NMI leaves NMIs blocked for the host; with "virtual NMIs"
  // the guest's blocking was virtual and ends here; without, the processor's blocking persists (chapter 28).
  if (vmx.exitBlocksNmi) cpu.nmiBlocked = true;
  else if (vals[C.PIN]! & (1 << 5)) cpu.nmiBlocked = false;
  vmx.exitBlocksNmi = false;
  cpu.interruptShadowEnd = -1;
  // Without VPID, VM exits invalidate the mappings of VPID 0000H; with it, the host's VPID 0000H
  // entries and the guest's tagged ones both stay (29.4.3.1).
  if (cpu.paging.vpid !== 0) cpu.paging.switchVpid(0);
  else cpu.mmu.flush();
}

/** The segment registers of 28.5.2, from the host-state fields `vals` of a VMCS, after IA32_EFER is loaded. */
function loadHostSegments(cpu: Cpu, vals: Int32Array, host64: boolean): void {
  for (let k = 0; k < 6; k++) {
    const s = SEGMENTS[k]!, sel = vals[HOST_SELECTOR_AT[k]!]!;
    // A null selector (allowed for all but CS, and SS with a 64-bit host) leaves the segment unusable.
    const attr = s === CS ? 0xb | SegAttr.S | SegAttr.P | SegAttr.G | (host64 ? SegAttr.L : SegAttr.DB)
      : sel === 0 ? 0 : HOST_DATA;
    const base = s === FS ? H.FS_BASE : s === GS ? H.GS_BASE : -1;
    cpu.setSegment(s, sel, base < 0 ? 0 : vals[base]!, base < 0 ? 0 : vals[base + 1]!, 0xffffffff, attr);
  }
  cpu.setSegment(TR, vals[H.TR_SELECTOR]!, vals[H.TR_BASE]!, vals[H.TR_BASE + 1]!, 0x67, 0xb | SegAttr.P);
  cpu.setSegment(LDTR, 0, 0, 0, 0, 0);
}

/**
 * A VMX abort (28.7): the abort indicator goes to the VMCS region and the
 * processor shuts down.
 */
function abort(vmx: Vmx, cpu: Cpu, indicator: number): void {
  const v = vmx.current!;
  cpu.memory.write32(v.address + VMX_ABORT_INDICATOR_OFFSET, indicator);
  leaveNonRoot(vmx, cpu);
  cpu.stop({ kind: 'shutdown' });
}
