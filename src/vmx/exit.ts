/**
 * VM exits (SDM vol. 3C, chapter 28): recording the exit information, saving
 * the guest state, the VM-exit MSR-store area, loading the host state, the
 * VM-exit MSR-load area, and VMX aborts. A VM-entry failure after the checks of
 * 27.2 ends here too, without saving guest state (27.8).
 */
import { Field } from '../../vmcs/fields.js';
import { EXIT_REASON_VM_ENTRY_FAILURE } from '../../vmcs/exit-reasons.js';
import { VmExitControls as X } from '../../vmcs/controls.js';
import { VmxAbort, VMX_ABORT_INDICATOR_OFFSET } from '../../vmcs/layout.js';
import type { Cpu } from '../cpu/cpu.js';
import { materialize } from '../cpu/flags.js';
import { CS, DS, EFER_LMA, EFER_LME, ES, FS, GS, LDTR, RSP, SegAttr, SS, TR } from '../cpu/regs.js';
import { PREEMPTION_TIMER_SHIFT } from './capabilities.js';
import { loadMsrs, storeMsrs } from './msr-areas.js';
import type { Vmx } from './vmx.js';

/** The segment registers in the order of the VMCS's per-segment fields below. */
export const SEGMENTS = [ES, CS, SS, DS, FS, GS, LDTR, TR];
/** Guest selector, base, limit and access-rights fields per segment, in the order of SEGMENTS (ES..TR). */
export const SEG_SELECTOR = [Field.GUEST_ES_SELECTOR, Field.GUEST_CS_SELECTOR, Field.GUEST_SS_SELECTOR, Field.GUEST_DS_SELECTOR,
  Field.GUEST_FS_SELECTOR, Field.GUEST_GS_SELECTOR, Field.GUEST_LDTR_SELECTOR, Field.GUEST_TR_SELECTOR];
export const SEG_BASE = [Field.GUEST_ES_BASE, Field.GUEST_CS_BASE, Field.GUEST_SS_BASE, Field.GUEST_DS_BASE,
  Field.GUEST_FS_BASE, Field.GUEST_GS_BASE, Field.GUEST_LDTR_BASE, Field.GUEST_TR_BASE];
export const SEG_LIMIT = [Field.GUEST_ES_LIMIT, Field.GUEST_CS_LIMIT, Field.GUEST_SS_LIMIT, Field.GUEST_DS_LIMIT,
  Field.GUEST_FS_LIMIT, Field.GUEST_GS_LIMIT, Field.GUEST_LDTR_LIMIT, Field.GUEST_TR_LIMIT];
export const SEG_ACCESS = [Field.GUEST_ES_ACCESS_RIGHTS, Field.GUEST_CS_ACCESS_RIGHTS, Field.GUEST_SS_ACCESS_RIGHTS,
  Field.GUEST_DS_ACCESS_RIGHTS, Field.GUEST_FS_ACCESS_RIGHTS, Field.GUEST_GS_ACCESS_RIGHTS,
  Field.GUEST_LDTR_ACCESS_RIGHTS, Field.GUEST_TR_ACCESS_RIGHTS];

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
  interruptionInfo = 0; interruptionError = 0;
  idtVectoringInfo = 0; idtVectoringError = 0;
  instructionLength = 0;
  instructionInfo = 0;

  /** Starts a new record: everything 0 but the reason. */
  begin(reason: number): void {
    this.reason = reason;
    this.qualificationLo = 0; this.qualificationHi = 0;
    this.hasLinear = false;
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
  v.set(Field.EXIT_REASON, e.reason);
  v.set(Field.EXIT_QUALIFICATION, e.qualificationLo, e.qualificationHi);
  if (e.hasLinear) v.set(Field.GUEST_LINEAR_ADDRESS, e.linearLo, e.linearHi);
  v.set(Field.VM_EXIT_INTERRUPTION_INFORMATION, e.interruptionInfo);
  v.set(Field.VM_EXIT_INTERRUPTION_ERROR_CODE, e.interruptionError);
  v.set(Field.IDT_VECTORING_INFORMATION_FIELD, e.idtVectoringInfo);
  v.set(Field.IDT_VECTORING_ERROR_CODE, e.idtVectoringError);
  v.set(Field.VM_EXIT_INSTRUCTION_LENGTH, e.instructionLength);
  v.set(Field.VM_EXIT_INSTRUCTION_INFORMATION, e.instructionInfo);
  // Every VM exit clears the valid bit of the VM-entry interruption-information field (28.2).
  v.set(Field.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD, v.lo(Field.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD) & 0x7fffffff);
  if ((e.reason & EXIT_REASON_VM_ENTRY_FAILURE) === 0) {
    saveGuestState(vmx, cpu);
    if (!storeMsrs(cpu, v.num(Field.VM_EXIT_MSR_STORE_ADDRESS), v.lo(Field.VM_EXIT_MSR_STORE_COUNT))) {
      abort(vmx, cpu, VmxAbort.SAVING_GUEST_MSRS);
      return;
    }
  }
  leaveNonRoot(vmx, cpu);
  loadHostState(vmx, cpu);
  if (loadMsrs(cpu, v.num(Field.VM_EXIT_MSR_LOAD_ADDRESS), v.lo(Field.VM_EXIT_MSR_LOAD_COUNT)) !== 0) {
    abort(vmx, cpu, VmxAbort.LOADING_HOST_MSRS);
  }
}

/** Undoes what entering non-root operation changed outside the VMCS (TSC offset). */
function leaveNonRoot(vmx: Vmx, cpu: Cpu): void {
  cpu.nonRoot = false;
  cpu.eventDeadline = Infinity;
  vmx.mtfAt = -1;
  vmx.tprBelowThreshold = false;
  vmx.shutdown = false;
  vmx.pendingDebug = 0;
  cpu.tscOffset -= vmx.guestTscOffset;
  vmx.guestTscOffset = 0;
  vmx.injectPending = false;
}

/** 28.3 "Saving Guest State". */
function saveGuestState(vmx: Vmx, cpu: Cpu): void {
  const v = vmx.current!, exitControls = v.lo(Field.PRIMARY_VM_EXIT_CONTROLS);
  // 28.3.1: CR0, CR3, CR4, DR7 (with "save debug controls"), the SYSENTER MSRs, PAT and EFER when saved.
  v.set(Field.GUEST_CR0, cpu.cr0);
  v.set(Field.GUEST_CR3, cpu.cr3Lo, cpu.cr3Hi);
  v.set(Field.GUEST_CR4, cpu.cr4);
  if (exitControls & (1 << X.SAVE_DEBUG_CONTROLS)) {
    v.set(Field.GUEST_DR7, cpu.dr7);
    v.set(Field.GUEST_IA32_DEBUGCTL, cpu.msrs.debugCtl);
  }
  const m = cpu.msrs;
  v.set(Field.GUEST_IA32_SYSENTER_CS, m.sysenterCsLo);
  v.set(Field.GUEST_IA32_SYSENTER_ESP, m.sysenterEspLo, m.sysenterEspHi);
  v.set(Field.GUEST_IA32_SYSENTER_EIP, m.sysenterEipLo, m.sysenterEipHi);
  if (exitControls & (1 << X.SAVE_IA32_PAT)) v.set(Field.GUEST_IA32_PAT, m.patLo, m.patHi);
  if (exitControls & (1 << X.SAVE_IA32_EFER)) v.set(Field.GUEST_IA32_EFER, cpu.efer);
  // IA32_VMX_MISC[5]: the "IA-32e mode guest" entry control follows EFER.LMA.
  const entry = v.lo(Field.VM_ENTRY_CONTROLS);
  v.set(Field.VM_ENTRY_CONTROLS, cpu.efer & EFER_LMA ? entry | (1 << 9) : entry & ~(1 << 9));
  // 28.3.2: segment registers (the hidden parts as the processor holds them), GDTR, IDTR.
  for (let k = 0; k < 8; k++) {
    const s = SEGMENTS[k]!;
    v.set(SEG_SELECTOR[k]!, cpu.segSel[s]!);
    v.set(SEG_BASE[k]!, cpu.segBase[2 * s]!, cpu.segBase[2 * s + 1]!);
    v.set(SEG_LIMIT[k]!, cpu.segLimit[s]!);
    v.set(SEG_ACCESS[k]!, accessRights(cpu.segAttr[s]!));
  }
  v.set(Field.GUEST_GDTR_BASE, cpu.gdtrLo, cpu.gdtrHi);
  v.set(Field.GUEST_GDTR_LIMIT, cpu.gdtrLimit);
  v.set(Field.GUEST_IDTR_BASE, cpu.idtrLo, cpu.idtrHi);
  v.set(Field.GUEST_IDTR_LIMIT, cpu.idtrLimit);
  // 28.3.3: RIP (of the instruction or event that caused the exit: the caller left it so), RSP, RFLAGS.
  v.set(Field.GUEST_RIP, cpu.ripLo, cpu.ripHi);
  v.set(Field.GUEST_RSP, cpu.gpr[2 * RSP]!, cpu.gpr[2 * RSP + 1]!);
  v.set(Field.GUEST_RFLAGS, materialize(cpu));
  // 28.3.4: activity and interruptibility state.
  v.set(Field.GUEST_ACTIVITY_STATE, cpu.waitForSipi ? WAIT_FOR_SIPI : vmx.shutdown ? SHUTDOWN : cpu.halted ? HLT : ACTIVE);
  let blocking = 0;
  if (cpu.insnCount < cpu.interruptShadowEnd) blocking |= cpu.shadowBySs ? BLOCKING_BY_MOV_SS : BLOCKING_BY_STI;
  if (cpu.nmiBlocked) blocking |= BLOCKING_BY_NMI;
  v.set(Field.GUEST_INTERRUPTIBILITY_STATE, blocking);
  // Pending debug exceptions (28.3.4): what the entry made pending and was not yet delivered.
  v.set(Field.GUEST_PENDING_DEBUG_EXCEPTIONS, vmx.pendingDebug);
  // "Save VMX-preemption timer value" (28.3.4): what is left of the count, rounded up.
  if (exitControls & (1 << X.SAVE_VMX_PREEMPTION_TIMER_VALUE) && cpu.eventDeadline !== Infinity) {
    const left = Math.max(0, cpu.eventDeadline - cpu.now());
    v.set(Field.VMX_PREEMPTION_TIMER_VALUE, Math.ceil(left / 2 ** PREEMPTION_TIMER_SHIFT));
  }
  cpu.halted = false;
  cpu.waitForSipi = false;
}

/**
 * A segment's access rights as the VMCS holds them: a null or unusable
 * segment (not present, here) has the "unusable" bit (25.4.1).
 */
function accessRights(attr: number): number {
  return attr & SegAttr.P ? attr & ~SegAttr.UNUSABLE : attr | SegAttr.UNUSABLE;
}

/** CR0 bits a VM exit does not load: ET, NW, CD and reserved bits 28:19, 17, 15:6 (28.5.1). */
const CR0_KEPT = 0x7ffaffd0;

/** Host selector fields in the order of SEGMENTS (no LDTR: it is loaded null). */
const HOST_SELECTOR = [Field.HOST_ES_SELECTOR, Field.HOST_CS_SELECTOR, Field.HOST_SS_SELECTOR, Field.HOST_DS_SELECTOR,
  Field.HOST_FS_SELECTOR, Field.HOST_GS_SELECTOR];

/** Flat data-segment access rights after a VM exit: read/write, accessed, present, 4-KByte granularity, 32-bit (28.5.2). */
const HOST_DATA = 3 | SegAttr.S | SegAttr.P | SegAttr.DB | SegAttr.G;

/** 28.5 "Loading Host State". */
export function loadHostState(vmx: Vmx, cpu: Cpu): void {
  const v = vmx.current!, exitControls = v.lo(Field.PRIMARY_VM_EXIT_CONTROLS);
  const host64 = (exitControls & (1 << X.HOST_ADDRESS_SPACE_SIZE)) !== 0;
  // 28.5.1: CR0, CR3, CR4, DR7, MSRs. CR0.ET, NW, CD and the reserved bits 28:19, 17, 15:6 keep their value.
  cpu.cr0 = (v.lo(Field.HOST_CR0) & ~CR0_KEPT) | (cpu.cr0 & CR0_KEPT);
  cpu.cr4 = v.lo(Field.HOST_CR4);
  cpu.cr3Lo = v.lo(Field.HOST_CR3); cpu.cr3Hi = v.hi(Field.HOST_CR3);
  cpu.dr7 = 0x400;
  const m = cpu.msrs;
  m.debugCtl = 0;
  m.sysenterCsLo = v.lo(Field.HOST_IA32_SYSENTER_CS); m.sysenterCsHi = 0;
  m.sysenterEspLo = v.lo(Field.HOST_IA32_SYSENTER_ESP); m.sysenterEspHi = v.hi(Field.HOST_IA32_SYSENTER_ESP);
  m.sysenterEipLo = v.lo(Field.HOST_IA32_SYSENTER_EIP); m.sysenterEipHi = v.hi(Field.HOST_IA32_SYSENTER_EIP);
  if (exitControls & (1 << X.LOAD_IA32_PAT)) { m.patLo = v.lo(Field.HOST_IA32_PAT); m.patHi = v.hi(Field.HOST_IA32_PAT); }
  if (exitControls & (1 << X.LOAD_IA32_EFER)) cpu.efer = v.lo(Field.HOST_IA32_EFER);
  else cpu.efer = host64 ? cpu.efer | EFER_LMA | EFER_LME : cpu.efer & ~(EFER_LMA | EFER_LME);
  // 28.5.2: segments. Selectors from the host fields; CS, SS, DS, ES, FS, GS flat and present
  // (a null SS, DS, ES, FS or GS is unusable), TR a busy 64- or 32-bit TSS of limit 67H, LDTR unusable.
  for (let k = 0; k < 6; k++) {
    const s = SEGMENTS[k]!, sel = v.lo(HOST_SELECTOR[k]!);
    // A null selector (allowed for all but CS, and SS with a 64-bit host) leaves the segment unusable.
    const attr = s === CS ? 0xb | SegAttr.S | SegAttr.P | SegAttr.G | (host64 ? SegAttr.L : SegAttr.DB)
      : sel === 0 ? 0 : HOST_DATA;
    let baseLo = 0, baseHi = 0;
    if (s === FS) { baseLo = v.lo(Field.HOST_FS_BASE); baseHi = v.hi(Field.HOST_FS_BASE); }
    if (s === GS) { baseLo = v.lo(Field.HOST_GS_BASE); baseHi = v.hi(Field.HOST_GS_BASE); }
    cpu.setSegment(s, sel, baseLo, baseHi, 0xffffffff, attr);
  }
  cpu.setSegment(TR, v.lo(Field.HOST_TR_SELECTOR), v.lo(Field.HOST_TR_BASE), v.hi(Field.HOST_TR_BASE), 0x67, 0xb | SegAttr.P);
  cpu.setSegment(LDTR, 0, 0, 0, 0, 0);
  cpu.gdtrLo = v.lo(Field.HOST_GDTR_BASE); cpu.gdtrHi = v.hi(Field.HOST_GDTR_BASE); cpu.gdtrLimit = 0xffff;
  cpu.idtrLo = v.lo(Field.HOST_IDTR_BASE); cpu.idtrHi = v.hi(Field.HOST_IDTR_BASE); cpu.idtrLimit = 0xffff;
  // 28.5.3: RIP, RSP; RFLAGS cleared but bit 1.
  cpu.ripLo = v.lo(Field.HOST_RIP); cpu.ripHi = host64 ? v.hi(Field.HOST_RIP) : 0;
  cpu.gpr[2 * RSP] = v.lo(Field.HOST_RSP); cpu.gpr[2 * RSP + 1] = host64 ? v.hi(Field.HOST_RSP) : 0;
  cpu.rflags = 2;
  cpu.cpl = 0;
  // NMI blocking: an exit caused by an NMI leaves NMIs blocked for the host; with "virtual NMIs"
  // the guest's blocking was virtual and ends here; without, the processor's blocking persists (chapter 28).
  if (vmx.exitBlocksNmi) cpu.nmiBlocked = true;
  else if (v.lo(Field.PIN_BASED_VM_EXECUTION_CONTROLS) & (1 << 5)) cpu.nmiBlocked = false;
  vmx.exitBlocksNmi = false;
  cpu.interruptShadowEnd = -1;
  // Without VPID, VM exits invalidate the mappings of VPID 0000H; with it, the host's VPID 0000H
  // entries and the guest's tagged ones both stay (29.4.3.1).
  if (cpu.paging.vpid !== 0) cpu.paging.switchVpid(0);
  else cpu.mmu.flush();
  cpu.paging.updateWidth();
  cpu.updateModes();
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
