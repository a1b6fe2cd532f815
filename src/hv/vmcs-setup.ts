/**
 * What the hypervisor builds before the first VM entry: its own pages above
 * guest RAM, the EPT that maps RAM, the bitmaps, and a VMCS whose controls
 * follow the VM's configuration and whose host state is a 64-bit VMM's.
 *
 * Host-physical memory: guest RAM [0, memory) is mapped one to one by EPT,
 * except the 20 MiB below 4 GiB (I/O APIC, local APIC: MMIO, left out so that
 * the guest's accesses exit). The hypervisor's pages follow RAM and no EPT
 * entry reaches them:
 *   +0000H VMXON region   +1000H VMCS region   +2000H MSR bitmaps
 *   +3000H I/O bitmap A   +4000H I/O bitmap B  +5000H host GDT
 *   +6000H host TSS       +7000H host IDT      +8000H host stack (top +9000H)
 *   +9000H host page tables (identity, 2-MiB pages), then the EPT tables, or
 *          without EPT the pool of shadow page-table pages (shadow/pool.ts).
 * The host never runs x86 code: a VM exit returns to TypeScript (vm.ts).
 */
import { Field } from '../../vmcs/fields.js';
import {
  PinBasedControls as Pin, PrimaryProcessorBasedControls as Proc, SecondaryProcessorBasedControls as Sec,
  VmEntryControls as Entry, VmExitControls as Exit,
} from '../../vmcs/controls.js';
import type { Cpu } from '../cpu/cpu.js';
import { PAGE_SIZE } from '../cpu/memory.js';
import { buildIdentityMap } from '../cpu/reset.js';
import { EFER_LMA, EFER_LME } from '../cpu/regs.js';
import { CR0_WP, CR4_LA57, CR4_PAE as PAGING_PAE, CR4_PCIDE, CR4_PGE, CR4_PSE, CR4_SMAP, CR4_SMEP } from '../cpu/paging.js';
import type { VmxCapabilities } from '../vmx/capabilities.js';
import { Vmcs } from '../vmx/vmcs.js';
import type { ExitConfig, VmConfig } from './config.js';

const GIB = 2 ** 30, MIB2 = 2 ** 21;
/** The MMIO hole below 4 GiB: I/O APIC at FEC00000H, local APIC at FEE00000H (the loaders' memory map agrees). */
export const MMIO_HOLE = 0xfec00000;
const FOUR_GIB = 2 ** 32;

/** The hypervisor's pages, host-physical addresses. */
export interface HostLayout {
  readonly vmxon: number;
  readonly vmcs: number;
  readonly msrBitmaps: number;
  readonly ioBitmapA: number;
  readonly ioBitmapB: number;
  readonly gdt: number;
  readonly tss: number;
  readonly idt: number;
  readonly stackTop: number;
  readonly pageTables: number;
  /** The EPT tables (none with shadow paging). */
  readonly ept: number;
  /** Shadow paging (no EPT): the pool of shadow page-table pages (shadow/pool.ts) and how many. */
  readonly shadowPool: number;
  readonly shadowPages: number;
  /** Bytes from the first page to the end of the EPT tables or the shadow pool. */
  readonly size: number;
}

/** Guest-physical ranges of RAM: [start, end) pairs, the MMIO hole left out. */
export function ramRanges(memory: number): [number, number][] {
  if (memory <= MMIO_HOLE) return [[0, memory]];
  return memory <= FOUR_GIB ? [[0, MMIO_HOLE]] : [[0, MMIO_HOLE], [FOUR_GIB, memory]];
}

/** Pages of EPT tables for `memory` bytes of RAM: PML4, PDPT, a page directory per GiB, page tables for unaligned ends. */
function eptPages(memory: number): number {
  const ranges = ramRanges(memory);
  return 2 + Math.ceil(memory / GIB) + 2 * ranges.length;
}

/**
 * The hypervisor's pages for `memory` bytes of guest RAM: with `shadowPages`
 * (shadow paging, no EPT) a pool of that many pages takes the EPT tables' place.
 */
export function hostLayout(memory: number, shadowPages = 0): HostLayout {
  const base = memory; // a multiple of 4 KiB (vm.ts checks)
  const tables = shadowPages > 0 ? shadowPages : eptPages(memory);
  // The identity map covers 4 GiB and everything up to the end of the EPT tables or pool (at most 66 of its own pages).
  const end = base + 0x9000 + (66 + tables) * PAGE_SIZE;
  const identityPages = 2 + Math.ceil(Math.max(FOUR_GIB, end) / GIB);
  const ept = base + 0x9000 + identityPages * PAGE_SIZE;
  return {
    vmxon: base, vmcs: base + 0x1000, msrBitmaps: base + 0x2000, ioBitmapA: base + 0x3000, ioBitmapB: base + 0x4000,
    gdt: base + 0x5000, tss: base + 0x6000, idt: base + 0x7000, stackTop: base + 0x9000, pageTables: base + 0x9000,
    ept, shadowPool: ept, shadowPages, size: ept - base + tables * PAGE_SIZE,
  };
}

/** EPT entry bits (29.3.2): read, write, execute; memory type WB (6) in bits 5:3 of a leaf; bit 7 a large page. */
const RWX = 7, WB = 6 << 3, LARGE = 1 << 7;
/** EPTP (25.6.11): memory type WB, page-walk length 4 (value 3 in bits 5:3). */
const EPTP_FLAGS = 6 | (3 << 3);

function write64(cpu: Cpu, at: number, value: number): void {
  cpu.memory.write32(at, value % FOUR_GIB);
  cpu.memory.write32(at + 4, Math.floor(value / FOUR_GIB));
}

/**
 * Builds EPT tables at `at` mapping every RAM range one to one, with 2-MiB pages
 * where a range covers them and 4-KiB pages at unaligned ends (29.3.2). Returns the EPTP.
 */
export function buildEpt(cpu: Cpu, at: number, memory: number): { lo: number; hi: number } {
  let next = at + PAGE_SIZE;
  const page = (): number => { const p = next; next += PAGE_SIZE; return p; };
  const pml4 = at, pdpt = page();
  write64(cpu, pml4, pdpt + RWX);
  const directories = new Map<number, number>();
  const directory = (gpa: number): number => {
    const g = Math.floor(gpa / GIB);
    let pd = directories.get(g);
    if (pd === undefined) { pd = page(); directories.set(g, pd); write64(cpu, pdpt + 8 * g, pd + RWX); }
    return pd;
  };
  for (const [start, end] of ramRanges(memory)) {
    for (let gpa = start; gpa < end;) {
      const pde = directory(gpa) + 8 * (Math.floor(gpa / MIB2) % 512);
      if (gpa % MIB2 === 0 && gpa + MIB2 <= end) {
        write64(cpu, pde, gpa + (WB | LARGE | RWX));
        gpa += MIB2;
        continue;
      }
      const pt = page();
      write64(cpu, pde, pt + RWX);
      const stop = Math.min(end, (Math.floor(gpa / MIB2) + 1) * MIB2);
      for (; gpa < stop; gpa += PAGE_SIZE) write64(cpu, pt + 8 * (Math.floor(gpa / PAGE_SIZE) % 512), gpa + (WB | RWX));
    }
  }
  return { lo: (pml4 % FOUR_GIB) | EPTP_FLAGS, hi: Math.floor(pml4 / FOUR_GIB) };
}

/**
 * The CR0 and CR4 bits the hypervisor must own: those VMX operation fixes (A.7, A.8), PE and PG free under
 * unrestricted guest; without EPT also the bits paging depends on, which shadow paging virtualizes
 * (shadow/shadow.ts): CR0.WP, CR4.PSE, PAE, PGE, PCIDE, SMEP, SMAP, LA57.
 */
export function ownedBits(caps: VmxCapabilities, config: VmConfig): { cr0: number; cr4: number } {
  const free = config.unrestrictedGuest ? 0x80000001 : 0;
  const shadow = config.ept ? { cr0: 0, cr4: 0 } : { cr0: SHADOW_CR0, cr4: SHADOW_CR4 };
  return {
    cr0: ((caps.cr0Fixed0 & ~free) | ~caps.cr0Fixed1 | config.exits.cr0Mask | shadow.cr0) >>> 0,
    cr4: (caps.cr4Fixed0 | ~caps.cr4Fixed1 | config.exits.cr4Mask | shadow.cr4) >>> 0,
  };
}

/** The paging bits of CR0 and CR4 (SDM vol. 3A, 2.5) a shadow-paging hypervisor owns. */
const SHADOW_CR0 = CR0_WP, SHADOW_CR4 = CR4_PSE | PAGING_PAE | CR4_PGE | CR4_PCIDE | CR4_SMEP | CR4_SMAP | CR4_LA57;
/** IA32_EFER, whose accesses exit under shadow paging (the processor runs the guest with other LME and NXE). */
const IA32_EFER = 0xc0000080;

/** The value a guest's CR0 or CR4 write gives the register when the host owns `mask`: the fixed bits forced. */
export function forcedValue(value: number, fixed0: number, fixed1: number, mask: number): number {
  return ((value & ~mask) | (((value | fixed0) & fixed1) & mask)) >>> 0;
}

const bit = (n: number): number => (1 << n) >>> 0;

/** The controls of a configuration (25.6-25.8), each group's must-be-1 bits included. */
function controls(caps: VmxCapabilities, config: VmConfig): { pin: number; proc: number; secondary: number; exit: number; entry: number } {
  // Shadow paging (no EPT) needs the exits on CR3 loads and stores and INVLPG (26.1.3).
  const x: ExitConfig = config.ept ? config.exits : { ...config.exits, invlpg: true, cr3Load: true, cr3Store: true };
  let pin = caps.pin.allowed0 | bit(Pin.EXTERNAL_INTERRUPT_EXITING) | bit(Pin.VIRTUAL_NMIS) | bit(Pin.NMI_EXITING);
  if (x.preemptionTimer !== null) pin |= bit(Pin.ACTIVATE_VMX_PREEMPTION_TIMER);
  const flags: [boolean, number][] = [
    [x.hlt, Proc.HLT_EXITING], [x.invlpg, Proc.INVLPG_EXITING], [x.mwait, Proc.MWAIT_EXITING],
    [x.rdtsc, Proc.RDTSC_EXITING], [x.cr3Load, Proc.CR3_LOAD_EXITING],
    [x.cr3Store, Proc.CR3_STORE_EXITING], [x.cr8Load, Proc.CR8_LOAD_EXITING], [x.cr8Store, Proc.CR8_STORE_EXITING],
    [x.movDr, Proc.MOV_DR_EXITING], [x.io === 'unconditional', Proc.UNCONDITIONAL_IO_EXITING],
    [x.io === 'bitmap', Proc.USE_IO_BITMAPS], [x.msrBitmaps, Proc.USE_MSR_BITMAPS], [x.monitor, Proc.MONITOR_EXITING],
    [x.pause, Proc.PAUSE_EXITING], [x.monitorTrapFlag, Proc.MONITOR_TRAP_FLAG], [true, Proc.ACTIVATE_SECONDARY_CONTROLS],
  ];
  let proc = caps.proc.allowed0;
  for (const [on, b] of flags) if (on) proc |= bit(b);
  // The instructions the profile has run as on the bare processor only with their "enable" controls (26.3).
  let secondary = caps.secondary.allowed0;
  const wanted: [boolean, number][] = [
    [config.ept, Sec.ENABLE_EPT], [config.vpid, Sec.ENABLE_VPID], [config.unrestrictedGuest, Sec.UNRESTRICTED_GUEST],
    [x.wbinvd, Sec.WBINVD_EXITING], [x.rdrand, Sec.RDRAND_EXITING], [x.rdseed, Sec.RDSEED_EXITING],
  ];
  for (const [on, b] of wanted) if (on) secondary |= bit(b);
  for (const b of [Sec.ENABLE_RDTSCP, Sec.ENABLE_INVPCID, Sec.ENABLE_XSAVES_XRSTORS]) secondary |= caps.secondary.allowed1 & bit(b);
  let exit = caps.exit.allowed0 | bit(Exit.HOST_ADDRESS_SPACE_SIZE) | bit(Exit.SAVE_IA32_EFER) | bit(Exit.LOAD_IA32_EFER) |
    bit(Exit.SAVE_IA32_PAT) | bit(Exit.LOAD_IA32_PAT) | bit(Exit.SAVE_DEBUG_CONTROLS);
  if (x.acknowledgeInterruptOnExit) exit |= bit(Exit.ACKNOWLEDGE_INTERRUPT_ON_EXIT);
  const entry = caps.entry.allowed0 | bit(Entry.LOAD_IA32_EFER) | bit(Entry.LOAD_IA32_PAT) | bit(Entry.LOAD_DEBUG_CONTROLS);
  return { pin, proc, secondary, exit, entry };
}

/** IA32_PAT at power-up (SDM vol. 3A, 13.12.4). */
const PAT = 0x00070406;
const CR0_PE = 1, CR0_ET = 1 << 4, CR0_NE = 1 << 5, CR0_PG = 1 << 31, CR4_PAE = 1 << 5, CR4_VMXE = 1 << 13;
/** Host GDT: null, 64-bit code 08H, data 10H, a 64-bit TSS at 18H (two slots). */
const HOST_CODE = 0x00af9b00, HOST_DATA = 0x00cf9300;

/**
 * A VMCS at `layout.vmcs` with the controls of `config`, the hypervisor's host
 * state, the bitmaps and the EPT; the guest-state area is left to the caller.
 */
export function buildVmcs(cpu: Cpu, caps: VmxCapabilities, config: VmConfig, layout: HostLayout, msrIntercepts: readonly number[]): Vmcs {
  const v = new Vmcs(layout.vmcs), F = Field, c = controls(caps, config), x = config.exits;
  v.set(F.PIN_BASED_VM_EXECUTION_CONTROLS, c.pin);
  v.set(F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, c.proc);
  v.set(F.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, c.secondary);
  v.set(F.PRIMARY_VM_EXIT_CONTROLS, c.exit);
  v.set(F.VM_ENTRY_CONTROLS, c.entry);
  // Shadow paging: every #PF exits (25.6.3; bit 14 with mask = match = 0, 26.2).
  v.set(F.EXCEPTION_BITMAP, config.ept ? x.exceptionBitmap : x.exceptionBitmap | (1 << 14));
  v.set(F.PAGE_FAULT_ERROR_CODE_MASK, config.ept ? x.pageFaultErrorCodeMask : 0);
  v.set(F.PAGE_FAULT_ERROR_CODE_MATCH, config.ept ? x.pageFaultErrorCodeMatch : 0);
  const owned = ownedBits(caps, config);
  v.set(F.CR0_GUEST_HOST_MASK, owned.cr0);
  v.set(F.CR4_GUEST_HOST_MASK, owned.cr4);
  v.set(F.VMCS_LINK_POINTER, -1, -1);
  if (x.preemptionTimer !== null) v.set(F.VMX_PREEMPTION_TIMER_VALUE, x.preemptionTimer);
  if (config.vpid) v.set(F.VIRTUAL_PROCESSOR_IDENTIFIER, 1);

  // Bitmaps (25.6.4, 25.6.9): every port exits but those passed through; the MSRs in the list exit.
  const m = cpu.memory;
  for (let k = 0; k < 2 * PAGE_SIZE; k += 4) m.write32(layout.ioBitmapA + k, -1);
  for (const port of x.ioPassthrough) {
    const at = layout.ioBitmapA + (port >>> 3);
    m.write8(at, m.read8(at) & ~(1 << (port & 7)));
  }
  for (let k = 0; k < PAGE_SIZE; k += 4) m.write32(layout.msrBitmaps + k, 0);
  for (const msr of config.ept ? msrIntercepts : [...msrIntercepts, IA32_EFER]) {
    // Read bitmap for low MSRs at 0, high MSRs (C0000000H-C0001FFFH) at 1024; the write bitmaps 2048 further.
    const high = msr >= 0xc0000000, index = high ? msr - 0xc0000000 : msr;
    if (index > 0x1fff) continue;
    for (const base of [high ? 1024 : 0, high ? 3072 : 2048]) {
      const at = layout.msrBitmaps + base + (index >>> 3);
      m.write8(at, m.read8(at) | (1 << (index & 7)));
    }
  }
  v.set(F.ADDRESS_OF_IO_BITMAP_A, layout.ioBitmapA);
  v.set(F.ADDRESS_OF_IO_BITMAP_B, layout.ioBitmapB);
  v.set(F.ADDRESS_OF_MSR_BITMAPS, layout.msrBitmaps);
  if (config.ept) {
    const eptp = buildEpt(cpu, layout.ept, config.memory);
    v.set(F.EPT_POINTER, eptp.lo, eptp.hi);
  }

  // Host state (25.5): a 64-bit VMM with flat segments, its own GDT, TSS and page tables.
  m.write32(layout.gdt + 8, 0x0000ffff); m.write32(layout.gdt + 12, HOST_CODE);
  m.write32(layout.gdt + 16, 0x0000ffff); m.write32(layout.gdt + 20, HOST_DATA);
  m.write32(layout.gdt + 24, ((layout.tss & 0xffff) << 16) | 0x67);
  m.write32(layout.gdt + 28, (layout.tss & 0xff000000) | 0x8b00 | ((layout.tss >>> 16) & 0xff));
  buildIdentityMap(cpu, layout.pageTables, Math.max(FOUR_GIB, layout.vmxon + layout.size));
  v.set(F.HOST_CR0, ((CR0_PE | CR0_ET | CR0_NE | CR0_PG | caps.cr0Fixed0) & caps.cr0Fixed1) | 0);
  v.set(F.HOST_CR3, layout.pageTables);
  v.set(F.HOST_CR4, ((CR4_PAE | CR4_VMXE | caps.cr4Fixed0) & caps.cr4Fixed1) | 0);
  v.set(F.HOST_CS_SELECTOR, 0x08);
  for (const enc of [F.HOST_SS_SELECTOR, F.HOST_DS_SELECTOR, F.HOST_ES_SELECTOR, F.HOST_FS_SELECTOR, F.HOST_GS_SELECTOR]) v.set(enc, 0x10);
  v.set(F.HOST_TR_SELECTOR, 0x18);
  v.set(F.HOST_TR_BASE, layout.tss);
  v.set(F.HOST_GDTR_BASE, layout.gdt);
  v.set(F.HOST_IDTR_BASE, layout.idt);
  v.set(F.HOST_RSP, layout.stackTop);
  // Where the host would continue: a HLT it never reaches, as the exit returns to TypeScript first.
  v.set(F.HOST_RIP, layout.stackTop - PAGE_SIZE);
  m.write8(layout.stackTop - PAGE_SIZE, 0xf4);
  v.set(F.HOST_IA32_PAT, PAT, PAT);
  v.set(F.HOST_IA32_EFER, EFER_LME | EFER_LMA);
  return v;
}
