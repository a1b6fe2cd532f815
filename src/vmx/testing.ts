/**
 * Running guest code in VMX non-root operation from TypeScript: a testing aid
 * (the VMX counterpart of src/cpu/testing.ts runFragment), used by the
 * property tests in fuzz/.
 *
 * How VMX operation is entered: not by executing VMXON, but by setting what a
 * successful VMXON leaves behind (enterVmxOperation). The VMCS of `validVmcs`
 * is then made current and active as VMPTRLD would (makeCurrent), with launch
 * state clear.
 * Tests of the VMX instructions themselves run real instructions
 * (fuzz/vmcs-lifecycle.test.ts, spec-tests/vmx-instructions).
 *
 * Physical memory (16 MiB) as the harness lays it out, linear = physical in
 * guest and host:
 *   01000H  guest code (GUEST_RIP of validVmcs)    03000H GDT    04000H IDT
 *   02000H  exception handlers, 8 bytes per vector: MOV AL, vector; VMCALL
 *   05000H  TSS                08000H guest stack top (GUEST_RSP)
 *   10000H  the VMCS region    11000H the VMXON region
 *   30000H-3FFFFH  free pages for bitmaps (SCRATCH_PAGES)
 *   100000H host page tables (HOST_CR3): 4-level, 2-MByte pages, identity
 *   200000H guest page tables (GUEST_CR3): 4 KByte pages mapping the 16 MiB
 *           (4-level for a 64-bit guest, 32-bit paging for a protected-mode one)
 *   400000H VMLAUNCH; HLT (the host's own code, `launch: 'instruction'`)
 *   401000H HLT (HOST_RIP: where every VM exit lands)
 * An exception the exception bitmap does not intercept is delivered to the
 * guest and its handler exits with VMCALL (reason 18), AL = the vector.
 */
import { Field } from '../../vmcs/fields.js';
import { Cpu, type StopReason } from '../cpu/cpu.js';
import { buildIdentityMap } from '../cpu/reset.js';
import { run } from '../cpu/run.js';
import { SKYLAKE_VMX, type VmxCapabilities } from './capabilities.js';
import { vmEntry } from './entry.js';
import { validVmcs } from './valid-vmcs.js';
import type { Vmcs } from './vmcs.js';
import { attachVmx, enterVmxOperation, makeCurrent, type Vmx } from './vmx.js';

export const MEMORY_SIZE = 16 * 1024 * 1024;
export const GUEST_CODE = 0x1000;
export const HANDLERS = 0x2000;
export const GUEST_GDT = 0x3000, GUEST_IDT = 0x4000, GUEST_TSS = 0x5000;
export const GUEST_STACK = 0x8000;
export const VMCS_REGION = 0x10000, VMXON_REGION = 0x11000;
/** Pages free for I/O and MSR bitmaps and other test data: 16 pages from here. */
export const SCRATCH_PAGES = 0x30000;
export const HOST_PAGE_TABLES = 0x100000, GUEST_PAGE_TABLES = 0x200000;
/** Where the host executes VMLAUNCH, followed by HLT (the VMfail path). */
export const LAUNCH_ADDRESS = 0x400000;
export const HOST_RIP = 0x401000;

const VMCALL = [0x0f, 0x01, 0xc1], VMLAUNCH = [0x0f, 0x01, 0xc2], HLT = 0xf4;
const PTE_P_RW_US = 7;

export type GuestMode = 64 | 32;

export interface GuestRunOptions {
  /** Instructions to run at most after the entry (default 1000). */
  budget?: number;
  /** 64 (default): IA-32e mode guest; 32: protected mode with 32-bit paging. */
  mode?: GuestMode;
  /** 'direct' (default): vmEntry(vmx, cpu, true); 'instruction': the host executes VMLAUNCH at LAUNCH_ADDRESS. */
  launch?: 'direct' | 'instruction';
  caps?: VmxCapabilities;
  /** A processor to use (e.g. a PcMachine's, for its devices); default a new one with 16 MiB. */
  cpu?: Cpu;
}

export interface GuestRun {
  cpu: Cpu;
  vmx: Vmx;
  /** The current VMCS. */
  vmcs: Vmcs;
  /** VM entry got past the 27.2 checks (no VMfail): the guest ran, or the entry failed as a VM exit (27.8). */
  entered: boolean;
  /** A VM exit happened: the host's HLT at HOST_RIP was reached in root operation. */
  exited: boolean;
  /** EXIT_REASON and EXIT_QUALIFICATION of the VMCS after the exit (-1 and 0n without one). */
  reason: number;
  qualification: bigint;
  /** VM_INSTRUCTION_ERROR after a VMfailValid, else 0. */
  instructionError: number;
  /** How the run stopped; null when VM entry failed with VMfail and nothing ran ('direct' launch). */
  stop: StopReason | null;
}

/** Physical address of the guest PTE that maps `linear` (below 16 MiB) in the harness's guest page tables. */
export function guestPteAddress(linear: number, mode: GuestMode = 64): number {
  const page = Math.floor(linear / 4096);
  if (page >= MEMORY_SIZE / 4096) throw new RangeError('the guest page tables map the first 16 MiB');
  return mode === 64 ? GUEST_PAGE_TABLES + 3 * 4096 + 8 * page : GUEST_PAGE_TABLES + 4096 + 4 * page;
}

/** Guest page tables mapping linear = physical for the 16 MiB with 4-KByte pages (SDM vol. 3A, 4.3, 4.5). */
function buildGuestPageTables(cpu: Cpu, mode: GuestMode): void {
  const m = cpu.memory, pages = MEMORY_SIZE / 4096;
  if (mode === 64) {
    const pml4 = GUEST_PAGE_TABLES, pdpt = pml4 + 4096, pd = pdpt + 4096, pts = pd + 4096;
    m.write32(pml4, pdpt | PTE_P_RW_US);
    m.write32(pdpt, pd | PTE_P_RW_US);
    for (let k = 0; k < pages / 512; k++) m.write32(pd + 8 * k, (pts + 4096 * k) | PTE_P_RW_US);
    for (let p = 0; p < pages; p++) m.write32(pts + 8 * p, (p * 4096) | PTE_P_RW_US);
  } else {
    const pd = GUEST_PAGE_TABLES, pts = pd + 4096;
    for (let k = 0; k < pages / 1024; k++) m.write32(pd + 4 * k, (pts + 4096 * k) | PTE_P_RW_US);
    for (let p = 0; p < pages; p++) m.write32(pts + 4 * p, (p * 4096) | PTE_P_RW_US);
  }
}

/**
 * GDT (null, code 08H, data 10H, busy TSS 18H) and an IDT whose first 32
 * vectors lead to the handlers at HANDLERS (SDM vol. 3A, 3.4.5, 6.11, 6.14.1).
 */
function buildGuestTables(cpu: Cpu, mode: GuestMode): void {
  const m = cpu.memory;
  const code = mode === 64 ? 0x00af9b00 : 0x00cf9b00;
  const words = [0, 0, 0x0000ffff, code, 0x0000ffff, 0x00cf9300, (GUEST_TSS << 16) | 0x67, 0x00008b00];
  words.forEach((w, k) => m.write32(GUEST_GDT + 4 * k, w));
  for (let n = 0; n < 32; n++) {
    const handler = HANDLERS + 8 * n;
    m.load(handler, Uint8Array.of(0xb0, n, ...VMCALL, HLT));
    const gate = mode === 64 ? GUEST_IDT + 16 * n : GUEST_IDT + 8 * n;
    m.write32(gate, (0x08 << 16) | (handler & 0xffff));
    m.write32(gate + 4, (handler & 0xffff0000) | 0x8e00); // present 32/64-bit interrupt gate, DPL 0
  }
}

/** A guest made ready by prepareGuest: everything up to the VM entry. */
export interface PreparedGuest {
  cpu: Cpu;
  vmx: Vmx;
  /** The current VMCS. */
  vmcs: Vmcs;
}

/**
 * Builds the processor and memory above, makes validVmcs(caps, mode) current,
 * lets `configure` change the VMCS and the processor (guest GPRs other than RSP
 * are the processor's at entry) and loads `guestCode` at the VMCS's GUEST_RIP
 * (linear = physical; not when it lies outside memory). Nothing is entered or
 * run: the caller enters with vmEntry(vmx, cpu, true) and runs (benchmarks,
 * and tests that look at the guest's state before it runs).
 */
export function prepareGuest(
  guestCode: ArrayLike<number>, configure?: (v: Vmcs, cpu: Cpu) => void, o: GuestRunOptions = {},
): PreparedGuest {
  const mode = o.mode ?? 64, caps = o.caps ?? SKYLAKE_VMX;
  const cpu = o.cpu ?? new Cpu({ memorySize: MEMORY_SIZE });
  cpu.enterFlat64();
  cpu.deliverExceptions = true;
  const vmx = attachVmx(cpu, caps);
  const m = cpu.memory;

  // A host in normal cache mode (CD = NW = 0): VM entry keeps these bits of CR0 (27.3.2.1).
  cpu.cr0 &= ~0x60000000;
  enterVmxOperation(vmx, cpu, VMXON_REGION);
  // The VMCS current and active, launch state clear.
  const v = validVmcs(vmx.caps, { guest: mode === 64 ? 'long' : 'protected', address: VMCS_REGION });
  makeCurrent(vmx, cpu, v);

  buildIdentityMap(cpu, HOST_PAGE_TABLES, MEMORY_SIZE);
  buildGuestPageTables(cpu, mode);
  buildGuestTables(cpu, mode);
  m.load(LAUNCH_ADDRESS, Uint8Array.of(...VMLAUNCH, HLT));
  m.write8(HOST_RIP, HLT);

  configure?.(v, cpu);
  // A RIP outside memory (a VMCS meant to fail its checks) gets no code: nothing would fetch it.
  const rip = v.hi(Field.GUEST_RIP) === 0 ? v.lo(Field.GUEST_RIP) >>> 0 : MEMORY_SIZE;
  if (rip + guestCode.length <= MEMORY_SIZE) m.load(rip, Uint8Array.from(guestCode));
  return { cpu, vmx, vmcs: v };
}

/**
 * Runs `guestCode` in VMX non-root operation: prepareGuest, then the entry
 * (direct or by VMLAUNCH) and up to `budget` instructions.
 */
export function runInGuest(
  guestCode: ArrayLike<number>, configure?: (v: Vmcs, cpu: Cpu) => void, o: GuestRunOptions = {},
): GuestRun {
  const { cpu, vmx, vmcs: v } = prepareGuest(guestCode, configure, o);
  const budget = o.budget ?? 1000;
  let stop: StopReason | null;
  if (o.launch === 'instruction') {
    cpu.ripLo = LAUNCH_ADDRESS; cpu.ripHi = 0;
    stop = run(cpu, budget + 1);
  } else {
    vmEntry(vmx, cpu, true);
    const failed = vmx.lastEntryFailure !== null && vmx.lastEntryFailure.kind !== 'guest';
    stop = failed ? null : run(cpu, budget);
  }
  const exited = stop !== null && stop.kind === 'halt' && !cpu.nonRoot && cpu.ripHi === 0 && cpu.ripLo === HOST_RIP + 1;
  const instructionError = vmx.lastEntryFailure !== null && vmx.lastEntryFailure.kind !== 'guest'
    ? v.lo(Field.VM_INSTRUCTION_ERROR) : 0;
  return {
    cpu, vmx, vmcs: v,
    entered: instructionError === 0,
    exited,
    reason: exited ? v.lo(Field.EXIT_REASON) >>> 0 : -1,
    qualification: exited ? BigInt(v.hi(Field.EXIT_QUALIFICATION) >>> 0) << 32n | BigInt(v.lo(Field.EXIT_QUALIFICATION) >>> 0) : 0n,
    instructionError,
    stop,
  };
}
