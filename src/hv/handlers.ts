/**
 * The default handler of each exit reason: what makes an unmodified PC guest
 * run under the hypervisor. A handler completes the guest's instruction or
 * event the way the bare processor would have (Guest.retire, Guest.inject)
 * and says whether to re-enter or stop. Users replace or wrap entries of
 * Vm.handlers; a reason with no handler stops the VM, naming the exit.
 */
import { InterruptionType } from '../../vmcs/controls.js';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { FAULT } from '../cpu/cpu.js';
import { cpuid, XCR0_SUPPORTED } from '../cpu/cpuid.js';
import { nextRandom } from '../cpu/ops/random.js';
import { CF, IF, RAX, RBX, RCX, RDX, STATUS_FLAGS, Vector } from '../cpu/regs.js';
import { controlRegisterAccess, movDr } from './control-registers.js';
import { GuestFault, type Guest } from './guest.js';
import { isGuestStateMsr, readGuestStateMsr, writeGuestStateMsr } from './guest-msrs.js';
import { memoryOperand } from './memory-operand.js';
import { hypercall } from './hypercall.js';
import { interruptible } from './interrupts.js';
import { ioInstruction } from './io.js';
import { taskSwitchExit } from './task-switch.js';
import { emulateMmio, type MmioAccess } from './mmio.js';
import type { ExitRecord } from './record.js';
import type { HandlerResult, Vm } from './vm.js';

export type ExitHandler = (exit: ExitRecord, vm: Vm) => HandlerResult;

/** CPUID leaf 40000000H: the highest hypervisor leaf and the signature "hvsimhvsimhv" in EBX, ECX, EDX (as KVM and others do). */
export const HYPERVISOR_SIGNATURE = 'hvsimhvsimhv';
const HYPERVISOR_LEAF = 0x40000000, HYPERVISOR_MAX_LEAF = 0x40000001;
/** Leaf 40000001H EAX: the hypercalls offered (bit n: hypercall n, hypercall.ts). */
export const HYPERCALL_FEATURES = 0x7;
const ECX_VMX = 1 << 5, ECX_HYPERVISOR = 1 << 31;

/**
 * MSRs the hypervisor emulates (their RDMSR/WRMSR exit through the MSR
 * bitmaps): IA32_FEATURE_CONTROL and the VMX capability MSRs, since the guest
 * is not offered VMX.
 */
export const EMULATED_MSRS: readonly number[] = [0x3a, ...Array.from({ length: 0x14 }, (_, k) => 0x480 + k)];
const IA32_FEATURE_CONTROL = 0x3a;

const out = new Int32Array(4);

/** CPUID (26.1.2): the profile's leaves as the guest's mode shows them, VMX hidden, the hypervisor announced (leaf 1 ECX[31], leaves 40000000H+). */
function cpuidExit(e: ExitRecord, vm: Vm): HandlerResult {
  const g = vm.guest, leaf = g.reg32(RAX), subleaf = g.reg32(RCX);
  if (leaf >= HYPERVISOR_LEAF && leaf < 0x50000000) {
    out.fill(0);
    if (leaf === HYPERVISOR_LEAF) {
      const sig = Buffer.from(HYPERVISOR_SIGNATURE, 'latin1');
      out[0] = HYPERVISOR_MAX_LEAF; out[1] = sig.readInt32LE(0); out[2] = sig.readInt32LE(4); out[3] = sig.readInt32LE(8);
    } else if (leaf === HYPERVISOR_MAX_LEAF) {
      out[0] = HYPERCALL_FEATURES;
    }
  } else {
    cpuid(vm.cpu, leaf, subleaf, out, { cr4: g.read(Field.GUEST_CR4), mode64: g.codeSize === 8 });
    if (leaf === 1) out[2] = (out[2]! & ~ECX_VMX) | ECX_HYPERVISOR;
  }
  [RAX, RBX, RCX, RDX].forEach((r, k) => g.setReg(r, BigInt(out[k]! >>> 0)));
  g.retire(e.length);
  return 'resume';
}

/** RDMSR/WRMSR that exit (MSR bitmaps, 25.6.9): emulated MSRs here, the rest carried out on the processor's MSRs, #GP as they would raise it. */
function msrExit(e: ExitRecord, vm: Vm): HandlerResult {
  const g = vm.guest, msr = g.reg32(RCX), write = e.reason === ExitReason.WRMSR;
  if (msr === IA32_FEATURE_CONTROL || (msr >= 0x480 && msr < 0x494)) {
    // VMX is not offered: IA32_FEATURE_CONTROL reads as locked with VMX disabled and cannot be written;
    // the capability MSRs do not exist (SDM vol. 4, table 2-2).
    if (write || msr !== IA32_FEATURE_CONTROL) { g.raise(Vector.GP, 0); return 'resume'; }
    g.setReg(RAX, 1n); g.setReg(RDX, 0n);
    g.retire(e.length);
    return 'resume';
  }
  const writeOnProcessor = (): boolean => !onProcessor(vm, () => vm.cpu.msrs.write(vm.cpu, msr, g.reg32(RAX), g.reg32(RDX)));
  let fault: boolean;
  if (isGuestStateMsr(msr)) {
    // The guest's value is in the guest-state area, the host's on the processor (guest-msrs.ts).
    if (write) fault = !writeGuestStateMsr(g, msr, writeOnProcessor);
    else {
      const v = readGuestStateMsr(g, msr);
      g.setReg(RAX, v & 0xffffffffn); g.setReg(RDX, v >> 32n);
      fault = false;
    }
  } else if (write) fault = !writeOnProcessor();
  else {
    fault = onProcessor(vm, () => {
      const lo = vm.cpu.msrs.read(vm.cpu, msr);
      g.setReg(RAX, BigInt(lo >>> 0)); g.setReg(RDX, BigInt(vm.cpu.msrs.hi >>> 0));
    });
  }
  if (fault) g.raise(Vector.GP, 0);
  else g.retire(e.length);
  return 'resume';
}

/** Runs `f`, which may raise an exception the processor's way; true when it did (the guest takes it instead). */
function onProcessor(vm: Vm, f: () => void): boolean {
  try {
    f();
    return false;
  } catch (err) {
    if (err !== FAULT) throw err;
    vm.cpu.excVector = -1;
    return true;
  }
}

/** HLT (26.1.3): the instruction completes, and guest time moves on to the next device event until an interrupt can end the halt. */
function hltExit(e: ExitRecord, vm: Vm): HandlerResult {
  const g = vm.guest;
  g.retire(e.length);
  const nmi = (): boolean => vm.interrupts.hasNmi?.() === true;
  // With RFLAGS.IF = 0 only an NMI ends the halt, and the platform raises none by itself: the guest has stopped.
  if ((g.rflags & IF) === 0 && !nmi()) return { kind: 'halt' };
  if (vm.idle(() => nmi() || (interruptible(g) && vm.interrupts.hasInterrupt()))) return 'resume';
  return { kind: 'halt' };
}

/** XSETBV (26.1.2): XCR0 with the instruction's checks (SDM vol. 2, XSETBV): #GP for another XCR, x87 off, AVX without SSE, unsupported bits. */
function xsetbvExit(e: ExitRecord, vm: Vm): HandlerResult {
  const g = vm.guest, lo = g.reg32(RAX), hi = g.reg32(RDX);
  if (g.reg32(RCX) !== 0 || hi !== 0 || (lo & 1) === 0 || (lo & 6) === 4 || (lo & ~XCR0_SUPPORTED) !== 0) {
    g.raise(Vector.GP, 0);
    return 'resume';
  }
  vm.cpu.msrs.xcr0 = lo;
  g.retire(e.length);
  return 'resume';
}

/** RDTSC and RDTSCP (RDTSC exiting): the guest's TSC, which is the processor's (no TSC offsetting). */
function rdtscExit(e: ExitRecord, vm: Vm): HandlerResult {
  const g = vm.guest, cpu = vm.cpu, lo = cpu.msrs.readTsc(cpu);
  g.setReg(RAX, BigInt(lo >>> 0)); g.setReg(RDX, BigInt(cpu.msrs.hi >>> 0));
  if (e.reason === ExitReason.RDTSCP) g.setReg(RCX, BigInt(cpu.msrs.tscAux >>> 0));
  g.retire(e.length);
  return 'resume';
}

/** INVLPG (INVLPG exiting): drops the guest's mappings of the address, as INVVPID type 0 for its VPID does (29.4.3.3). */
function invlpgExit(e: ExitRecord, vm: Vm): HandlerResult {
  const g = vm.guest, vpid = g.read(Field.VIRTUAL_PROCESSOR_IDENTIFIER), q = e.qualification;
  vm.cpu.paging.invvpid(0, vpid, Number(q & 0xffffffffn) | 0, Number(q >> 32n) | 0);
  g.retire(e.length);
  return 'resume';
}

const CR4_PCIDE = 1 << 17, CR4_LA57 = 1 << 12;

/** What INVPCID asks for: its type (0-3), and the PCID and linear address of its descriptor. */
export interface InvpcidRequest { readonly type: number; readonly pcid: number; readonly addrLo: number; readonly addrHi: number }

/**
 * The operands of an exiting INVPCID (the type register and the memory operand
 * of its instruction information, 28.2.5) with the instruction's checks (SDM
 * vol. 2, INVPCID): #GP(0) for a type above 3, reserved descriptor bits 63:12,
 * a PCID other than 000H without CR4.PCIDE (as the guest sees CR4) for types 0
 * and 1, a non-canonical address for type 0; the descriptor read may fault.
 * Null when the guest got the fault instead.
 */
export function invpcidRequest(e: ExitRecord, g: Guest): InvpcidRequest | null {
  const info = e.instructionInformation;
  const type = g.reg((info >>> 28) & 15) & (g.codeSize === 8 ? (1n << 64n) - 1n : 0xffffffffn);
  if (type > 3n) { g.raise(Vector.GP, 0); return null; }
  const descriptor = g.readLinear(memoryOperand(g, info, e.qualification), 16, 'read', g.translationState(), true);
  if (descriptor instanceof GuestFault) { g.injectFault(descriptor); return null; }
  const d = new DataView(descriptor.buffer, descriptor.byteOffset, 16);
  const pcid = d.getUint32(0, true) & 0xfff, addrLo = d.getUint32(8, true) | 0, addrHi = d.getUint32(12, true) | 0;
  const mask = g.read(Field.CR4_GUEST_HOST_MASK);
  const cr4 = (g.read(Field.GUEST_CR4) & ~mask) | (g.read(Field.CR4_READ_SHADOW) & mask), shift = cr4 & CR4_LA57 ? 7 : 16;
  if ((d.getUint32(0, true) & ~0xfff) !== 0 || d.getUint32(4, true) !== 0 ||
      (type <= 1n && pcid !== 0 && (cr4 & CR4_PCIDE) === 0) || (type === 0n && ((addrHi << shift) >> shift) !== addrHi)) {
    g.raise(Vector.GP, 0);
    return null;
  }
  return { type: Number(type), pcid, addrLo, addrHi };
}

/**
 * INVPCID (INVLPG exiting with "enable INVPCID", 26.1.3): the guest's mappings
 * it names go, as INVVPID for the guest's VPID removes them: for type 0 the
 * address in every PCID, for type 1 and 3 all non-global mappings, for type 2
 * all. Invalidating more than asked is allowed (4.10.4).
 */
function invpcidExit(e: ExitRecord, vm: Vm): HandlerResult {
  const g = vm.guest, r = invpcidRequest(e, g);
  if (r === null) return 'resume';
  vm.cpu.paging.invvpid(r.type === 0 ? 0 : r.type === 2 ? 1 : 3, g.read(Field.VIRTUAL_PROCESSOR_IDENTIFIER), r.addrLo, r.addrHi);
  g.retire(e.length);
  return 'resume';
}

/**
 * RDRAND and RDSEED (RDRAND/RDSEED exiting, 26.1.3): the register the
 * instruction information names gets the processor's next random value (the
 * same generator the instruction draws from), CF = 1, OF SF ZF AF PF = 0
 * (SDM vol. 2, RDRAND).
 */
function randomExit(e: ExitRecord, vm: Vm): HandlerResult {
  const g = vm.guest, reg = (e.instructionInformation >>> 3) & 15, size = (e.instructionInformation >>> 11) & 3;
  const s = vm.cpu.randomState, lo = BigInt(nextRandom(s) >>> 0), hi = size === 2 ? BigInt(nextRandom(s) >>> 0) : 0n;
  const old = g.reg(reg);
  g.setReg(reg, size === 0 ? (old & ~0xffffn) | (lo & 0xffffn) : (hi << 32n) | lo);
  g.rflags = (g.rflags & ~STATUS_FLAGS) | CF;
  g.retire(e.length);
  return 'resume';
}

/** An instruction with nothing left to do once it exited (INVD, WBINVD, PAUSE, MONITOR, MWAIT returning at once). */
function retireExit(e: ExitRecord, vm: Vm): HandlerResult {
  vm.guest.retire(e.length);
  return 'resume';
}

/** Nothing to complete: the exit only gave the hypervisor control (host interrupt, windows, timer, MTF). */
function resumeExit(): HandlerResult {
  return 'resume';
}

/** VMX instructions in the guest: VMX is not offered, so they are undefined (#UD), as on a processor without it. */
function vmxInstructionExit(_e: ExitRecord, vm: Vm): HandlerResult {
  vm.guest.raise(Vector.UD);
  return 'resume';
}

/**
 * An exception the exception bitmap intercepts (25.6.3) goes back to the guest
 * as it was: same vector and error code; a #PF's address into CR2 (which the
 * exit left unwritten, 28.1); software exceptions with their instruction length.
 */
function exceptionExit(e: ExitRecord, vm: Vm): HandlerResult {
  const x = e.interruption!;
  if (x.type === InterruptionType.NMI) { vm.guest.inject({ vector: Vector.NMI, type: x.type, errorCode: null }); return 'resume'; }
  if (x.vector === Vector.PF) vm.guest.setCr2(e.qualification); // the exit left CR2 unwritten (28.1)
  const soft = x.type === InterruptionType.SOFTWARE_EXCEPTION || x.type === InterruptionType.PRIVILEGED_SOFTWARE_EXCEPTION;
  vm.guest.inject({ vector: x.vector, type: x.type, errorCode: x.errorCode, length: soft ? e.length : undefined });
  return 'resume';
}

/**
 * Reads and writes of guest-physical addresses on the platform's bus: device
 * registers, or nothing (all ones, writes dropped). Device registers are 32
 * bits wide and reading one may have side effects: each is read once, whole.
 */
function busAccess(vm: Vm, linear: bigint | null): MmioAccess {
  const m = vm.cpu.memory;
  return {
    read: (gpa, size) => {
      vm.deviceOps++;
      if (linear !== null) vm.guest.accessed(linear, gpa, size, false);
      if (!vm.isMmio(gpa)) return (1n << BigInt(8 * size)) - 1n;
      if (size === 8) return (BigInt(m.read32(gpa + 4) >>> 0) << 32n) | BigInt(m.read32(gpa) >>> 0);
      const dword = BigInt(m.read32(gpa - (gpa & 3)) >>> 0) >> BigInt(8 * (gpa & 3));
      return dword & ((1n << BigInt(8 * size)) - 1n);
    },
    write: (gpa, size, v) => {
      vm.deviceOps++;
      if (linear !== null) vm.guest.accessed(linear, gpa, size, true);
      if (!vm.isMmio(gpa)) return;
      if (size >= 4) for (let k = 0; k < size; k += 4) m.write32(gpa + k, Number((v >> BigInt(8 * k)) & 0xffffffffn) | 0);
      else for (let k = 0; k < size; k++) m.write8(gpa + k, Number((v >> BigInt(8 * k)) & 0xffn));
    },
  };
}

/**
 * EPT violation (29.3.3.2): an access to a page EPT leaves out. On a device's
 * register page (local APIC, I/O APIC) the instruction is emulated against the
 * device; elsewhere (no RAM there) reads find nothing and writes are dropped.
 */
function eptViolationExit(e: ExitRecord, vm: Vm): HandlerResult {
  return guestPhysicalAccess(e, vm, Number(e.guestPhysical!), e.guestLinear, (e.qualification & 2n) !== 0n, (e.qualification & 4n) !== 0n);
}

/**
 * A guest access to guest-physical `gpa`, which is not RAM, at guest-linear
 * `linear` when known (a write when `write`, an instruction fetch when
 * `fetch`): the emulation EPT violations get, shared with shadow paging's #PF
 * exits whose guest walk leads outside RAM.
 */
export function guestPhysicalAccess(
  e: ExitRecord, vm: Vm, gpa: number, linear: bigint | null, write: boolean, fetch: boolean,
): HandlerResult {
  if (e.idtVectoring !== null || fetch) {
    // During event delivery or an instruction fetch there is no instruction to emulate: nothing can be there.
    return { kind: 'unhandled', reason: e.reason, name: e.name, detail: `guest ${fetch ? 'executes' : 'delivers an event through'} guest-physical ${hex(gpa)}, which is not memory` };
  }
  const r = emulateMmio(vm.guest.view(), gpa, write, busAccess(vm, linear));
  if (r.kind === 'unsupported') return { kind: 'unhandled', reason: e.reason, name: e.name, detail: `MMIO at ${hex(gpa)}: ${r.reason}` };
  vm.guest.retire(r.length);
  return 'resume';
}

function hex(v: number | bigint): string { return `0x${v.toString(16)}`; }

/** The handler table every VM starts with. */
export function defaultHandlers(): Map<number, ExitHandler> {
  const R = ExitReason;
  const table: [number, ExitHandler][] = [
    [R.EXCEPTION_OR_NMI, exceptionExit],
    [R.EXTERNAL_INTERRUPT, resumeExit],
    [R.TRIPLE_FAULT, () => ({ kind: 'shutdown' })],
    [R.TASK_SWITCH, taskSwitchExit],
    [R.INTERRUPT_WINDOW, resumeExit],
    [R.NMI_WINDOW, resumeExit],
    [R.CPUID, cpuidExit],
    [R.HLT, hltExit],
    [R.INVD, retireExit],
    [R.INVLPG, invlpgExit],
    [R.INVPCID, invpcidExit],
    [R.RDTSC, rdtscExit],
    [R.RDTSCP, rdtscExit],
    [R.VMCALL, hypercall],
    [R.CONTROL_REGISTER_ACCESS, controlRegisterAccess],
    [R.MOV_DR, movDr],
    [R.IO_INSTRUCTION, ioInstruction],
    [R.RDMSR, msrExit],
    [R.WRMSR, msrExit],
    [R.MWAIT, retireExit],
    [R.MONITOR_TRAP_FLAG, resumeExit],
    [R.MONITOR, retireExit],
    [R.PAUSE, retireExit],
    [R.EPT_VIOLATION, eptViolationExit],
    [R.VMX_PREEMPTION_TIMER_EXPIRED, resumeExit],
    [R.WBINVD_WBNOINVD, retireExit],
    [R.XSETBV, xsetbvExit],
    [R.RDRAND, randomExit],
    [R.RDSEED, randomExit],
  ];
  for (const r of [R.VMCLEAR, R.VMLAUNCH, R.VMPTRLD, R.VMPTRST, R.VMREAD, R.VMRESUME, R.VMWRITE, R.VMXOFF, R.VMXON,
    R.INVEPT, R.INVVPID, R.VMFUNC]) table.push([r, vmxInstructionExit]);
  return new Map(table);
}
