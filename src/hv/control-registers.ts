/**
 * Control-register and debug-register exits (SDM vol. 3C, 26.1.3; exit
 * qualifications, table 28-3 and 28-4): the handler carries out the
 * guest's MOV to or from CR0, CR3, CR4, CR8, CLTS, LMSW or MOV DR on the
 * guest state, with the checks and side effects of the instruction (SDM vol.
 * 2, MOV CR; vol. 3A, 2.5, 4.1.2, 10.8.5).
 *
 * CR0 and CR4: the guest owns the bits outside the guest/host mask; for the
 * host's bits the guest reads the read shadow (25.6.6). A write exits when it
 * would change an owned bit against its shadow: the shadow takes the guest's
 * value, the register keeps the bits VMX operation fixes (vmcs-setup.ts
 * forcedValue).
 */
import { VmEntryControls } from '../../vmcs/controls.js';
import { Field } from '../../vmcs/fields.js';
import { cr4Supported } from '../cpu/cpuid.js';
import { CR4_DE, CR4_VMXE, cr0Value, cr0WriteFaults, cr4WriteFaults, lmswValue } from '../cpu/ops/control-registers.js';
import { CR0_PG, CR3_RSVD_HI, CR4_PAE, CR4_PCIDE, PDPTE_RSVD_HI, PDPTE_RSVD_LO } from '../cpu/paging.js';
import { EFER_LMA, EFER_LME, Vector } from '../cpu/regs.js';
import { GuestFault, type Guest } from './guest.js';
import type { ExitHandler } from './handlers.js';
import type { HandlerResult, Vm } from './vm.js';
import { forcedValue } from './vmcs-setup.js';
import { PDPTE_FIELDS } from '../vmx/state-fields.js';

const IA_32E_MODE_GUEST = 1 << VmEntryControls.IA_32E_MODE_GUEST;

/** The guest's view of CR0 or CR4: its own bits, and the shadow for the host's (25.6.6). */
function visible(g: Guest, cr: 0 | 4): number {
  const F = Field, mask = g.read(cr === 0 ? F.CR0_GUEST_HOST_MASK : F.CR4_GUEST_HOST_MASK);
  return ((g.read(cr === 0 ? F.GUEST_CR0 : F.GUEST_CR4) & ~mask) | (g.read(cr === 0 ? F.CR0_READ_SHADOW : F.CR4_READ_SHADOW) & mask)) >>> 0;
}

/** Loads the four PDPTEs of PAE paging from guest CR3 into the guest PDPTE fields (4.4.1); false for a reserved bit (#GP). */
function loadPdptes(g: Guest, cr3: number): boolean {
  const base = (cr3 & ~0x1f) >>> 0;
  const entries: [number, number][] = [];
  for (let k = 0; k < 4; k++) {
    const bytes = readGuestPhysical(g, base + 8 * k);
    if (bytes === null) return false;
    const dv = new DataView(bytes.buffer), lo = dv.getInt32(0, true), hi = dv.getInt32(4, true);
    if ((lo & 1) !== 0 && ((lo & PDPTE_RSVD_LO) !== 0 || (hi & PDPTE_RSVD_HI) !== 0)) return false;
    entries.push([lo, hi]);
  }
  entries.forEach(([lo, hi], k) => g.write(PDPTE_FIELDS[k]!, lo, hi));
  return true;
}

/** Eight bytes at a guest-physical address through the EPT, or null when the EPT does not map it. */
function readGuestPhysical(g: Guest, gpa: number): Uint8Array | null {
  const s = g.translationState();
  // A guest with paging off: linear = guest-physical, so the guest walk is empty and only the EPT applies.
  const r = g.readLinear(BigInt(gpa), 8, 'read', { ...s, cr0: s.cr0 & ~CR0_PG });
  return r instanceof GuestFault ? null : r;
}

/**
 * MOV to CR0 or CR4 of `value` (bits 63:32 in `hi`): the instruction's #GP
 * checks, then the shadow and the register, IA-32e mode entered or left, the
 * PDPTEs of PAE paging, and the guest's TLB entries dropped (its VPID).
 */
function writeControl(vm: Vm, cr: 0 | 4, value: number, hi: number): boolean {
  const g = vm.guest, F = Field, caps = vm.vmx.caps, old = visible(g, cr);
  const efer = guestEfer(vm);
  if (hi !== 0) return false;
  const v = cr === 0 ? cr0Value(value) >>> 0 : value >>> 0;
  if (cr === 0) {
    if (cr0WriteFaults(v, old, efer, visible(g, 4), g.codeSize === 8)) return false;
    if ((v ^ old) & CR0_PG) {
      // Paging on with EFER.LME enters IA-32e mode, paging off leaves it (SDM vol. 3A, 10.8.5).
      const nowLma = (v & CR0_PG) !== 0 && (efer & EFER_LME) !== 0;
      setGuestEfer(vm, nowLma ? efer | EFER_LMA : efer & ~EFER_LMA);
      const entry = g.read(F.VM_ENTRY_CONTROLS);
      g.write(F.VM_ENTRY_CONTROLS, nowLma ? entry | IA_32E_MODE_GUEST : entry & ~IA_32E_MODE_GUEST);
    }
  } else if (cr4WriteFaults(v, old, efer, guestCr3(vm)[0], cr4Supported(vm.cpu) & ~CR4_VMXE)) {
    // The guest's CPUID is the processor's with VMX hidden (handlers.ts): CR4.VMXE is reserved for it.
    return false;
  }
  const cr0 = cr === 0 ? v : visible(g, 0), cr4 = cr === 4 ? v : visible(g, 4);
  const pae = (cr0 & CR0_PG) !== 0 && (cr4 & CR4_PAE) !== 0 && (guestEfer(vm) & EFER_LME) === 0;
  if (pae && ((v ^ old) !== 0) && !loadPdptes(g, guestCr3(vm)[0])) return false;
  const mask = g.read(cr === 0 ? F.CR0_GUEST_HOST_MASK : F.CR4_GUEST_HOST_MASK);
  g.write(cr === 0 ? F.CR0_READ_SHADOW : F.CR4_READ_SHADOW, v);
  g.write(cr === 0 ? F.GUEST_CR0 : F.GUEST_CR4,
    cr === 0 ? forcedValue(v, caps.cr0Fixed0, caps.cr0Fixed1, mask) : forcedValue(v, caps.cr4Fixed0, caps.cr4Fixed1, mask));
  // Shadow paging: the processor's CR0, CR4 and EFER follow, and the shadows where a paging bit changed.
  vm.shadow?.controlsWritten();
  flushGuestTlb(vm);
  return true;
}

/** The guest's IA32_EFER: the guest-state field, or with shadow paging the hypervisor's copy (the field is the processor's). */
function guestEfer(vm: Vm): number {
  return vm.shadow !== null ? vm.shadow.efer : vm.guest.read(Field.GUEST_IA32_EFER);
}

function setGuestEfer(vm: Vm, value: number): void {
  if (vm.shadow !== null) vm.shadow.efer = value;
  else vm.guest.write(Field.GUEST_IA32_EFER, value);
}

/** The guest's CR3 (bits 31:0, 63:32): GUEST_CR3, or with shadow paging the hypervisor's copy (GUEST_CR3 is a shadow root). */
function guestCr3(vm: Vm): [number, number] {
  return vm.shadow !== null ? [vm.shadow.cr3Lo, vm.shadow.cr3Hi] : [vm.guest.read(Field.GUEST_CR3), vm.vmcs.hi(Field.GUEST_CR3)];
}

/** The guest's TLB entries go, as a control-register change makes them (4.10.4.1): all of its VPID. */
function flushGuestTlb(vm: Vm): void {
  const vpid = vm.guest.read(Field.VIRTUAL_PROCESSOR_IDENTIFIER);
  if (vpid !== 0) vm.cpu.paging.invvpid(1, vpid, 0, 0);
}

/** A register operand as the guest's code size gives it: 64 bits in 64-bit mode, else bits 31:0. */
function operand(g: Guest, n: number): [number, number] {
  const v = g.reg(n);
  return [Number(v & 0xffffffffn) | 0, g.codeSize === 8 ? Number(v >> 32n) | 0 : 0];
}

export const controlRegisterAccess: ExitHandler = (e, vm): HandlerResult => {
  const g = vm.guest, q = Number(e.qualification & 0xffffffffn), cr = q & 15, type = (q >>> 4) & 3, reg = (q >>> 8) & 15;
  const F = Field;
  let ok = true;
  if (type === 0) {
    const [lo, hi] = operand(g, reg);
    if (cr === 0 || cr === 4) ok = writeControl(vm, cr, lo, hi);
    else if (cr === 3) {
      // CR3-load exiting: CR3 takes the value; PAE paging reloads the PDPTEs; the guest's non-global entries go.
      const pcide = (visible(g, 4) & CR4_PCIDE) !== 0, noFlush = pcide && hi < 0;
      const high = pcide ? hi & 0x7fffffff : hi;
      if ((guestEfer(vm) & EFER_LMA) !== 0 && (high & CR3_RSVD_HI) !== 0) ok = false;
      else if ((visible(g, 0) & CR0_PG) && (visible(g, 4) & CR4_PAE) && !(guestEfer(vm) & EFER_LME) && !loadPdptes(g, lo)) ok = false;
      else if (vm.shadow !== null) vm.shadow.loadCr3(lo, high, noFlush);
      else {
        g.write(F.GUEST_CR3, lo, high);
        const vpid = g.read(F.VIRTUAL_PROCESSOR_IDENTIFIER);
        if (vpid !== 0 && !noFlush) vm.cpu.paging.invvpid(3, vpid, 0, 0);
      }
    } else if (cr === 8) {
      if (hi !== 0 || (lo >>> 0) > 15) ok = false; // bits 63:4 are reserved (vol. 3A, 10.8.6.1)
      else vm.machine.apic.writeCr8(lo);
    }
  } else if (type === 1) {
    const cr3 = guestCr3(vm);
    const value = cr === 3 ? (BigInt(cr3[1] >>> 0) << 32n) | BigInt(cr3[0] >>> 0) : BigInt(vm.machine.apic.readCr8());
    g.setReg(reg, g.codeSize === 8 ? value : value & 0xffffffffn);
  } else if (type === 2) {
    ok = writeControl(vm, 0, visible(g, 0) & ~(1 << 3), 0); // CLTS
  } else {
    ok = writeControl(vm, 0, lmswValue(visible(g, 0), (q >>> 16) & 0xffff), 0); // LMSW
  }
  if (!ok) g.raise(Vector.GP, 0);
  else g.retire(e.length);
  return 'resume';
};

/**
 * MOV DR with MOV-DR exiting: DR0-DR3 and DR6 are the processor's (a VM exit
 * leaves them to the VMM, 28.3.1), DR7 is the guest-state field. DR4 and DR5
 * are DR6 and DR7 unless CR4.DE = 1, which makes them #UD (SDM vol. 3B, 18.2.2).
 */
export const movDr: ExitHandler = (e, vm): HandlerResult => {
  const g = vm.guest, cpu = vm.cpu, q = Number(e.qualification & 0xffffffffn);
  let dr = q & 7;
  const toDr = (q & 0x10) === 0, reg = (q >>> 8) & 15;
  if (dr === 4 || dr === 5) {
    if (visible(g, 4) & CR4_DE) { g.raise(Vector.UD); return 'resume'; }
    dr += 2;
  }
  if (toDr) {
    const [lo, hi] = operand(g, reg);
    if ((dr === 6 || dr === 7) && hi !== 0) { g.raise(Vector.GP, 0); return 'resume'; }
    if (dr < 4) { cpu.dr[2 * dr] = lo; cpu.dr[2 * dr + 1] = hi; }
    else if (dr === 6) cpu.dr6 = (lo | 0xffff0ff0) & ~0x1000;
    else g.write(Field.GUEST_DR7, (lo | 0x400) & ~0xd000);
  } else {
    const v = dr < 4 ? (BigInt(cpu.dr[2 * dr + 1]! >>> 0) << 32n) | BigInt(cpu.dr[2 * dr]! >>> 0)
      : BigInt((dr === 6 ? cpu.dr6 : g.read(Field.GUEST_DR7)) >>> 0);
    g.setReg(reg, g.codeSize === 8 ? v : v & 0xffffffffn);
  }
  g.retire(e.length);
  return 'resume';
};
