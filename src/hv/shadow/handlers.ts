/**
 * The exits shadow paging adds to the handler table (SDM vol. 3C, 26.1.3 and
 * 25.6.3), wrapping the default handlers where those serve the rest:
 *
 * - #PF (exception bitmap bit 14): hidden or true fault, shadow.ts (a shadow miss
 *   while the guest's IDT or stack is used to deliver an event exits as a #PF
 *   with the event in the IDT-vectoring information, 26.2, 28.2.4);
 * - MOV to/from CR0, CR3, CR4 (control-registers.ts, which hands the guest's
 *   paging registers to shadow.ts), stopping the VM where the guest leaves what
 *   VMX non-root operation without unrestricted guest can run;
 * - INVLPG and INVPCID (INVLPG exiting makes both exit, 26.1.3): the shadow
 *   leaf and the guest's translations of the address;
 * - RDMSR/WRMSR of IA32_EFER: the guest's value is the hypervisor's copy, as
 *   the processor runs the guest with LME = LMA and NXE = 1 (shadow.ts).
 */
import { InterruptionType } from '../../../vmcs/controls.js';
import { ExitReason } from '../../../vmcs/exit-reasons.js';
import { eferAfterWrite, eferWritable } from '../../cpu/msr.js';
import { RAX, RCX, RDX, Vector } from '../../cpu/regs.js';
import { invpcidRequest, type ExitHandler } from '../handlers.js';
import type { ExitRecord } from '../record.js';
import type { HandlerResult, Vm } from '../vm.js';

/** IA32_EFER (SDM vol. 4, table 2-2). */
export const IA32_EFER = 0xc0000080;

function unhandled(e: ExitRecord, detail: string): HandlerResult {
  return { kind: 'unhandled', reason: e.reason, name: e.name, detail };
}

function shadowOf(vm: Vm): NonNullable<Vm['shadow']> {
  const s = vm.shadow;
  if (s === null) throw new Error('a shadow-paging handler was called on a VM with EPT');
  return s;
}

/** An exit for hardware exception `vector` (not an INT n, which the exception bitmap does not see). */
function isHardware(e: ExitRecord, vector: number): boolean {
  const x = e.interruption;
  return x !== null && x.vector === vector && x.type === InterruptionType.HARDWARE_EXCEPTION;
}

function isPageFault(e: ExitRecord): boolean { return isHardware(e, Vector.PF); }

/** Bits 63:32 of a linear address are the sign extension of bit 47 (48-bit linear addresses, SDM vol. 1, 3.3.7.1). */
function canonical(hi: number): boolean {
  return ((hi << 16) >> 16) === hi;
}

/** INVLPG (INVLPG exiting; the qualification holds the linear address, 28.2.1): a non-canonical one makes it a no-op. */
const invlpgExit: ExitHandler = (e, vm) => {
  const q = e.qualification, lo = Number(q & 0xffffffffn) | 0, hi = Number((q >> 32n) & 0xffffffffn) | 0;
  if (canonical(hi)) shadowOf(vm).invalidatePage(lo, hi);
  vm.guest.retire(e.length);
  return 'resume';
};

/**
 * INVPCID (INVLPG exiting makes it exit when "enable INVPCID" is set, 26.1.3),
 * with the instruction's checks (handlers.ts invpcidRequest): type 0 drops the
 * shadow entry of the address, the others every shadow (type 2 with globals).
 */
const invpcidExit: ExitHandler = (e, vm) => {
  const r = invpcidRequest(e, vm.guest);
  if (r === null) return 'resume';
  const shadow = shadowOf(vm);
  if (r.type === 0) shadow.invalidatePage(r.addrLo, r.addrHi);
  else shadow.invalidateAll(r.type === 2);
  vm.guest.retire(e.length);
  return 'resume';
};

/**
 * RDMSR and WRMSR of IA32_EFER on the guest's copy, with WRMSR's checks
 * against the guest's CR0 (msr.ts eferAfterWrite).
 */
function eferExit(e: ExitRecord, vm: Vm): HandlerResult {
  const g = vm.guest, shadow = shadowOf(vm);
  if (eferWritable(vm.cpu) === 0) { g.raise(Vector.GP, 0); return 'resume'; }
  if (e.reason === ExitReason.RDMSR) {
    g.setReg(RAX, BigInt(shadow.efer >>> 0));
    g.setReg(RDX, 0n);
  } else {
    const efer = eferAfterWrite(vm.cpu, g.reg32(RAX), g.reg32(RDX), shadow.efer, shadow.cr0);
    if (efer === null) { g.raise(Vector.GP, 0); return 'resume'; }
    shadow.setEfer(efer);
  }
  g.retire(e.length);
  return 'resume';
}

/** Adds the shadow-paging handlers to `handlers` (a VM's table), wrapping the defaults they pass other exits to. */
export function installShadowHandlers(handlers: Map<number, ExitHandler>): void {
  const R = ExitReason;
  const pass = (reason: number): ExitHandler => {
    const base = handlers.get(reason);
    return base ?? ((e) => unhandled(e, `no handler for exit reason ${e.reason} (${e.name})`));
  };
  const exception = pass(R.EXCEPTION_OR_NMI), control = pass(R.CONTROL_REGISTER_ACCESS);
  const rdmsr = pass(R.RDMSR), wrmsr = pass(R.WRMSR);
  handlers.set(R.EXCEPTION_OR_NMI, (e, vm) => {
    if (isPageFault(e)) return shadowOf(vm).pageFault(e);
    return exception(e, vm);
  });
  handlers.set(R.CONTROL_REGISTER_ACCESS, (e, vm) => {
    const result = control(e, vm), why = shadowOf(vm).unsupported();
    return why === null ? result : unhandled(e, why);
  });
  handlers.set(R.INVLPG, invlpgExit);
  handlers.set(R.INVPCID, invpcidExit);
  handlers.set(R.RDMSR, (e, vm) => vm.guest.reg32(RCX) === IA32_EFER ? eferExit(e, vm) : rdmsr(e, vm));
  handlers.set(R.WRMSR, (e, vm) => vm.guest.reg32(RCX) === IA32_EFER ? eferExit(e, vm) : wrmsr(e, vm));
}
