/**
 * A VMCS that passes every VM-entry check (SDM vol. 3C, 27.2 and 27.3.1) on
 * the given capabilities, for a processor in IA-32e mode: the base of test
 * VMCSs (mutate one field to break one rule) and of fast-check arbitraries.
 *
 * Host: 64-bit ("host address-space size" = 1), CR0 = PE|ET|NE|PG, CR4 =
 * PAE|VMXE, flat selectors CS = 08H, SS/DS/ES/FS/GS = 10H, TR = 18H.
 * Guest: 64-bit ("IA-32e mode guest" = 1) or, with `guest: 'protected'`,
 * 32-bit protected mode with paging; flat segments, a busy TSS, LDTR
 * unusable, RFLAGS = 2, DR7 = 400H, active, no event injected, VMCS link
 * pointer FFFFFFFF_FFFFFFFFH.
 * Controls: the allowed-0 settings of each group (the TRUE MSRs), plus
 * "activate secondary controls", "host address-space size" and, for a 64-bit
 * guest, "IA-32e mode guest".
 */
import { Field } from '../../vmcs/fields.js';
import { PrimaryProcessorBasedControls, VmEntryControls, VmExitControls } from '../../vmcs/controls.js';
import { EFER_LMA, EFER_LME, SegAttr } from '../cpu/regs.js';
import type { VmxCapabilities } from './capabilities.js';
import { Vmcs } from './vmcs.js';

export interface ValidVmcsOptions {
  /** 'long' (default): a 64-bit guest in IA-32e mode; 'protected': 32-bit protected mode, paging on, not IA-32e mode. */
  readonly guest?: 'long' | 'protected';
  /** Physical address of the VMCS region (the current-VMCS pointer). Default 10000H. */
  readonly address?: number;
}

const CR0_PE = 1 << 0, CR0_ET = 1 << 4, CR0_NE = 1 << 5, CR0_PG = 1 << 31;
const CR4_PAE = 1 << 5, CR4_VMXE = 1 << 13;
/** IA32_PAT at power-up: WB, WT, UC-, UC, WB, WT, UC-, UC (SDM vol. 3A, 13.12.4). */
const PAT_LO = 0x00070406, PAT_HI = 0x00070406;

/** Access rights (25.4.1, table 25-2). */
const CODE64 = SegAttr.P | SegAttr.S | 0xb | SegAttr.L | SegAttr.G; // execute/read, accessed; L = 1, D = 0
const CODE32 = SegAttr.P | SegAttr.S | 0xb | SegAttr.DB | SegAttr.G;
const DATA = SegAttr.P | SegAttr.S | 0x3 | SegAttr.DB | SegAttr.G; // read/write, accessed
const BUSY_TSS = SegAttr.P | 0xb; // busy 32-bit or 64-bit TSS, byte granularity

const HOST_RIP = 0x00401000, HOST_RSP = 0x00080000;
const HOST_CR3 = 0x00100000, GUEST_CR3 = 0x00200000;
const GDT_BASE = 0x00003000, IDT_BASE = 0x00004000, TSS_BASE = 0x00005000;
const GUEST_RIP = 0x00001000, GUEST_RSP = 0x00008000;

export function validVmcs(caps: VmxCapabilities, o: ValidVmcsOptions = {}): Vmcs {
  const long = (o.guest ?? 'long') === 'long';
  const v = new Vmcs(o.address ?? 0x10000);
  const set = (enc: number, lo: number, hi = 0): void => v.set(enc, lo, hi);
  const F = Field;

  // Controls (25.6-25.8): the must-be-1 bits, secondary controls active (all 0), a 64-bit host.
  set(F.PIN_BASED_VM_EXECUTION_CONTROLS, caps.pin.allowed0);
  set(F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS,
    caps.proc.allowed0 | (1 << PrimaryProcessorBasedControls.ACTIVATE_SECONDARY_CONTROLS));
  set(F.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, caps.secondary.allowed0);
  set(F.PRIMARY_VM_EXIT_CONTROLS, caps.exit.allowed0 | (1 << VmExitControls.HOST_ADDRESS_SPACE_SIZE));
  set(F.VM_ENTRY_CONTROLS, caps.entry.allowed0 | (long ? 1 << VmEntryControls.IA_32E_MODE_GUEST : 0));

  // Host state (25.5): what a 64-bit VMM runs with.
  const hostCr0 = (CR0_PE | CR0_ET | CR0_NE | CR0_PG | caps.cr0Fixed0) & caps.cr0Fixed1;
  const hostCr4 = (CR4_PAE | CR4_VMXE | caps.cr4Fixed0) & caps.cr4Fixed1;
  set(F.HOST_CR0, hostCr0);
  set(F.HOST_CR3, HOST_CR3);
  set(F.HOST_CR4, hostCr4);
  set(F.HOST_CS_SELECTOR, 0x08);
  for (const enc of [F.HOST_SS_SELECTOR, F.HOST_DS_SELECTOR, F.HOST_ES_SELECTOR, F.HOST_FS_SELECTOR, F.HOST_GS_SELECTOR]) set(enc, 0x10);
  set(F.HOST_TR_SELECTOR, 0x18);
  set(F.HOST_TR_BASE, TSS_BASE);
  set(F.HOST_GDTR_BASE, GDT_BASE);
  set(F.HOST_IDTR_BASE, IDT_BASE);
  set(F.HOST_RIP, HOST_RIP);
  set(F.HOST_RSP, HOST_RSP);
  // Used only with "load IA32_PAT"/"load IA32_EFER", but valid, so tests may turn those on.
  set(F.HOST_IA32_PAT, PAT_LO, PAT_HI);
  set(F.HOST_IA32_EFER, EFER_LME | EFER_LMA);

  // Guest state (25.4).
  const guestCr0 = (CR0_PE | CR0_ET | CR0_NE | CR0_PG | caps.cr0Fixed0) & caps.cr0Fixed1;
  const guestCr4 = ((long ? CR4_PAE : 0) | CR4_VMXE | caps.cr4Fixed0) & caps.cr4Fixed1;
  set(F.GUEST_CR0, guestCr0);
  set(F.GUEST_CR3, GUEST_CR3);
  set(F.GUEST_CR4, guestCr4);
  set(F.GUEST_DR7, 0x400);
  set(F.GUEST_RFLAGS, 0x2);
  set(F.GUEST_RIP, GUEST_RIP);
  set(F.GUEST_RSP, GUEST_RSP);
  // ES, CS, SS, DS, FS, GS: flat 4-GByte segments from a GDT with code at 08H and data at 10H.
  for (let n = 0; n < 6; n++) {
    const code = n === 1;
    set(F.GUEST_ES_SELECTOR + 2 * n, code ? 0x08 : 0x10);
    set(F.GUEST_ES_BASE + 2 * n, 0);
    set(F.GUEST_ES_LIMIT + 2 * n, 0xffffffff);
    set(F.GUEST_ES_ACCESS_RIGHTS + 2 * n, code ? (long ? CODE64 : CODE32) : DATA);
  }
  set(F.GUEST_LDTR_SELECTOR, 0);
  set(F.GUEST_LDTR_ACCESS_RIGHTS, SegAttr.UNUSABLE);
  set(F.GUEST_TR_SELECTOR, 0x18);
  set(F.GUEST_TR_BASE, TSS_BASE);
  set(F.GUEST_TR_LIMIT, 0x67); // the 104-byte TSS
  set(F.GUEST_TR_ACCESS_RIGHTS, BUSY_TSS);
  set(F.GUEST_GDTR_BASE, GDT_BASE);
  set(F.GUEST_GDTR_LIMIT, 0x1f);
  set(F.GUEST_IDTR_BASE, IDT_BASE);
  set(F.GUEST_IDTR_LIMIT, 0xfff);
  set(F.GUEST_IA32_PAT, PAT_LO, PAT_HI);
  set(F.GUEST_IA32_EFER, long ? EFER_LME | EFER_LMA : 0);
  set(F.GUEST_ACTIVITY_STATE, 0);
  set(F.GUEST_INTERRUPTIBILITY_STATE, 0);
  set(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0);
  set(F.VMCS_LINK_POINTER, -1, -1);
  return v;
}
