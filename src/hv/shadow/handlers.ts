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
import { Field } from '../../../vmcs/fields.js';
import { hasFeature } from '../../cpu/cpuid.js';
import { Decoder, type ByteSource } from '../../cpu/decoder.js';
import { BASE_RIP } from '../../cpu/insn.js';
import { MISC_HI_XD_DISABLE } from '../../cpu/msr.js';
import { OPCODE_TABLE } from '../../cpu/optable.js';
import { CR0_PG, CR4_PCIDE } from '../../cpu/paging.js';
import { EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE, RAX, RCX, RDX, Vector } from '../../cpu/regs.js';
import { GuestFault } from '../guest.js';
import type { ExitHandler } from '../handlers.js';
import { fetchInstruction } from '../mmio.js';
import type { ExitRecord } from '../record.js';
import type { HandlerResult, Vm } from '../vm.js';

/** IA32_EFER (SDM vol. 4, table 2-2). */
export const IA32_EFER = 0xc0000080;

const decoder = new Decoder(OPCODE_TABLE);
const ADDRESS_MASKS: Record<number, bigint> = { 2: 0xffffn, 4: 0xffffffffn, 8: (1n << 64n) - 1n };

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

/** The decoder asked for a byte the guest's translation could not give. */
const BEYOND = new Error('instruction bytes beyond those fetched');

class Bytes implements ByteSource {
  constructor(private readonly bytes: Uint8Array) {}
  byte(k: number): number {
    if (k >= this.bytes.length) throw BEYOND;
    return this.bytes[k]!;
  }
}

/**
 * INVPCID (INVLPG exiting makes it exit when "enable INVPCID" is set, 26.1.3).
 * The instruction is decoded at RIP for its operands, then carried out with its
 * checks (SDM vol. 2, INVPCID): #GP(0) for a type above 3, reserved
 * descriptor bits, a PCID other than 0 without CR4.PCIDE for types 0 and 1, a
 * non-canonical address for type 0; the descriptor read may fault (#PF).
 */
const invpcidExit: ExitHandler = (e, vm) => {
  const g = vm.guest, shadow = shadowOf(vm);
  const bytes = fetchInstruction(g.view());
  if (bytes === null) return unhandled(e, 'INVPCID exit: the instruction at RIP cannot be fetched');
  let i;
  try {
    i = decoder.decode(new Bytes(bytes), g.codeSize);
  } catch (err) {
    if (err !== BEYOND) throw err;
    return unhandled(e, 'INVPCID exit: the instruction at RIP runs onto a page that cannot be fetched');
  }
  if (i.def.name !== 'invpcid' || i.isReg) return unhandled(e, `INVPCID exit, but RIP holds ${i.def.name}`);
  const type = g.codeSize === 8 ? g.reg(i.reg) : g.reg(i.reg) & 0xffffffffn;
  if (type > 3n) { g.raise(Vector.GP, 0); return 'resume'; }
  const mask = ADDRESS_MASKS[i.adSize] ?? ADDRESS_MASKS[8]!;
  const disp = BigInt(i.adSize === 2 ? (i.disp << 16) >> 16 : i.disp | 0);
  let offset = i.base === BASE_RIP ? g.rip + BigInt(i.len) + disp : disp + (i.base >= 0 ? g.reg(i.base) : 0n);
  if (i.index >= 0) offset += g.reg(i.index) << BigInt(i.scale);
  offset &= mask;
  // Outside 64-bit mode the segment base applies and addresses wrap at 4 GiB; in it, only FS and GS have one (SDM vol. 3A, 3.4.4).
  const base = g.codeSize !== 8 || i.seg >= 4 ? g.read64(Field.GUEST_ES_BASE + 2 * i.seg) : 0n;
  const linear = g.codeSize === 8 ? BigInt.asUintN(64, base + offset) : (base + offset) & 0xffffffffn;
  const d = g.readLinear(linear, 16);
  if (d instanceof GuestFault) { g.injectFault(d); return 'resume'; }
  const dv = new DataView(d.buffer);
  const descLo = dv.getInt32(0, true), descHi = dv.getInt32(4, true), addrLo = dv.getInt32(8, true), addrHi = dv.getInt32(12, true);
  const pcid = descLo & 0xfff;
  if (descHi !== 0 || (descLo & ~0xfff) !== 0 || (type <= 1n && pcid !== 0 && (shadow.cr4 & CR4_PCIDE) === 0) ||
      (type === 0n && !canonical(addrHi))) {
    g.raise(Vector.GP, 0);
    return 'resume';
  }
  if (type === 0n) shadow.invalidatePage(addrLo, addrHi);
  else shadow.invalidateAll(type === 2n);
  g.retire(i.len);
  return 'resume';
};

/** IA32_EFER bits software may write: SCE and LME with Intel 64, NXE with NX unless XD is disabled (SDM vol. 3A, 2.2.1). */
function eferWritable(vm: Vm): number {
  let w = 0;
  if (hasFeature(vm.cpu, 'lm')) w |= EFER_SCE | EFER_LME;
  if (hasFeature(vm.cpu, 'nx') && (vm.cpu.msrs.miscEnableHi & MISC_HI_XD_DISABLE) === 0) w |= EFER_NXE;
  return w;
}

/**
 * RDMSR and WRMSR of IA32_EFER on the guest's copy, with WRMSR's checks (SDM
 * vol. 2, WRMSR; vol. 3A, 2.2.1, 10.8.5): #GP(0) for a reserved bit or bits
 * 63:32, and for a change of LME while paging is on; LMA is read-only.
 */
function eferExit(e: ExitRecord, vm: Vm): HandlerResult {
  const g = vm.guest, shadow = shadowOf(vm), writable = eferWritable(vm);
  if (writable === 0) { g.raise(Vector.GP, 0); return 'resume'; }
  if (e.reason === ExitReason.RDMSR) {
    g.setReg(RAX, BigInt(shadow.efer >>> 0));
    g.setReg(RDX, 0n);
  } else {
    const lo = g.reg32(RAX), hi = g.reg32(RDX), old = shadow.efer;
    if (hi !== 0 || (lo & ~(writable | EFER_LMA)) !== 0 || (((lo ^ old) & EFER_LME) !== 0 && (shadow.cr0 & CR0_PG) !== 0)) {
      g.raise(Vector.GP, 0);
      return 'resume';
    }
    shadow.setEfer((lo & ~EFER_LMA) | (old & EFER_LMA));
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
