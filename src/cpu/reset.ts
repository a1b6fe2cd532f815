/**
 * The processor's state after power-up, RESET and INIT (SDM vol. 3A, 10.1.1,
 * table 10-1 "IA-32 and Intel 64 Processor States Following Power-up, Reset, or
 * INIT"), and the start states a loader leaves behind: real-address mode, flat
 * 32-bit protected mode and 64-bit mode, with the GDT they use in memory.
 */
import { EFER_LMA, EFER_LME, SegAttr, type Cpu } from './cpu.js';
import { CR0_CD, CR0_NW, CR0_PE, CR0_PG, CR4_PAE } from './paging.js';
import { CS, LDTR, RDX, RSP, SEG_NAMES, TR } from './regs.js';
import { attrOf, baseOf, limitOf } from './segments.js';

/** CR0.ET (SDM vol. 3A, 2.5): reserved, reads 1 on the processors since the Pentium 4. */
export const CR0_ET = 1 << 4;

/** Access rights "Present, R/W, Accessed" of table 10-1 (type 3, S = 1): every segment after reset. */
export const RESET_SEG_ATTR = SegAttr.P | SegAttr.S | 0x3;
/**
 * LDTR after reset: "Present, R/W" read as type 2 (LDT). TR: the table says the
 * same, but type 2 is no TSS type; we take type 11 (busy 32-bit TSS), the type a
 * VM entry accepts for TR (SDM vol. 3C, 27.3.1.2), as QEMU and Bochs do.
 */
export const RESET_LDTR_ATTR = SegAttr.P | 0x2;
export const RESET_TR_ATTR = SegAttr.P | 0xb;

/** What RESET and INIT share (table 10-1): the register file of a processor starting at F000:FFF0. */
function resetCommon(cpu: Cpu): void {
  // EAX = 0: no BIST was requested (10.1.2). EDX = the processor signature, as
  // CPUID.01H:EAX reports it (table 10-1 note 3); R8-R15 and the rest 0.
  cpu.gpr.fill(0);
  cpu.gpr[2 * RDX] = cpu.profile.signature;
  cpu.ripLo = 0xfff0;
  cpu.ripHi = 0;
  // Table 10-1 note 1: the 10 most significant bits of EFLAGS are undefined; we clear them.
  cpu.rflags = 0x2;
  cpu.cr2Lo = 0; cpu.cr2Hi = 0;
  cpu.cr3Lo = 0; cpu.cr3Hi = 0;
  cpu.cr4 = 0;
  cpu.cpl = 0;
  cpu.halted = false;
  cpu.waitForSipi = false;
  // Paging is off, so IA32_EFER.LMA reads 0 (SDM vol. 3A, 10.8.5).
  cpu.efer &= ~EFER_LMA;
  cpu.setSegment(CS, 0xf000, 0xffff0000 | 0, 0, 0xffff, RESET_SEG_ATTR);
  for (let s = 0; s < 6; s++) if (s !== CS) cpu.setSegment(s, 0, 0, 0, 0xffff, RESET_SEG_ATTR);
  cpu.setSegment(LDTR, 0, 0, 0, 0xffff, RESET_LDTR_ATTR);
  cpu.setSegment(TR, 0, 0, 0, 0xffff, RESET_TR_ATTR);
  cpu.gdtrLo = 0; cpu.gdtrHi = 0; cpu.gdtrLimit = 0xffff;
  cpu.idtrLo = 0; cpu.idtrHi = 0; cpu.idtrLimit = 0xffff;
  cpu.pdpte.fill(0);
  // The local APIC's TPR (CR8) is 0 after power-up, RESET and INIT (SDM vol. 3A,
  // "Local APIC State After Power-Up or Reset" and "... After an INIT Reset").
  cpu.cr8.writeCr8(0);
  cpu.dr.fill(0);
  cpu.dr6 = 0xffff0ff0 | 0;
  cpu.dr7 = 0x400;
  // TLBs are invalid after RESET and INIT (SDM vol. 3A, 10.1); the decoded-block
  // cache is a cache of memory, dropped with them.
  cpu.mmu.flush();
  cpu.blocks.clear();
  cpu.updateModes();
}

/**
 * Power-up or RESET# (SDM vol. 3A, 10.1.1, table 10-1): real-address mode at
 * F000:FFF0 with CS.base = FFFF0000H, so the first fetch is at FFFFFFF0H.
 */
export function powerOn(cpu: Cpu): void {
  cpu.cr0 = 0x60000010; // CD, NW, ET
  // "All other MSRs: undefined" at power-up; we choose IA32_EFER = 0.
  cpu.efer = 0;
  resetCommon(cpu);
  cpu.msrs.reset(); // MSR values, XCR0 and the x87 state at power-up (SDM vol. 3A, table 10-1)
  cpu.xmm.fill(0);
  cpu.mxcsr = 0x1f80;
  // Time-stamp counter: 0 at power-up and RESET.
  cpu.tscOffset = 0 - cpu.now(); // (0 - n, not -n: no negative zero)
}

/**
 * INIT# (table 10-1): like RESET, but CR0.CD and CR0.NW are kept (note 2), and
 * the x87/MMX/SSE state, MXCSR, the TSC, the MSRs and the caches are unchanged.
 * IA32_EFER is an MSR, so INIT keeps it, except LMA, which follows CR0.PG = 0.
 */
export function init(cpu: Cpu): void {
  cpu.cr0 = (cpu.cr0 & (CR0_CD | CR0_NW)) | CR0_ET;
  resetCommon(cpu);
  // The BSP restarts at the reset vector; an application processor waits for a
  // start-up IPI (SDM vol. 3A, 9.4.2 "MP Initialization Protocol Requirements and Restrictions").
  cpu.waitForSipi = !cpu.bsp;
}

/**
 * A start-up IPI with vector VV (SDM vol. 3A, 9.4.3; 11.6.1 "Start-Up"): a
 * processor in wait-for-SIPI starts in real-address mode at 000VV000H, with
 * CS = VV00H and IP = 0. Anywhere else the SIPI is ignored.
 */
export function startup(cpu: Cpu, vector: number): void {
  if (!cpu.waitForSipi) return;
  cpu.waitForSipi = false;
  cpu.setSegment(CS, (vector << 8) & 0xffff, (vector & 0xff) << 12, 0, 0xffff, cpu.segAttr[CS]!);
  cpu.ripLo = 0; cpu.ripHi = 0;
}

// ---- start states a loader leaves ----------------------------------------

/**
 * The boot GDT (SDM vol. 3A, 3.4.5, figure 3-8): flat 4 GiB descriptors, base 0,
 * limit FFFFFH with G = 1, DPL 0, accessed bit already set so that loading them
 * writes nothing.
 */
export const GDT_CODE32 = 0x08, GDT_DATA = 0x10, GDT_CODE64 = 0x18;
export const GDT_SIZE = 32;
/** Address the helpers below use for the GDT when the caller names none (below the EBDA). */
export const DEFAULT_GDT_ADDRESS = 0x90000;

/** Descriptor high dwords: type | S | P in bits 15:8, limit 19:16 = F, then AVL/L/D/G. */
const DESC_CODE32_HI = 0x00cf9b00, DESC_DATA_HI = 0x00cf9300, DESC_CODE64_HI = 0x00af9b00;
/** Low dword of every flat descriptor: base 15:0 = 0, limit 15:0 = FFFFH. */
const DESC_FLAT_LO = 0x0000ffff;

function writeBootGdt(cpu: Cpu, base: number): void {
  const m = cpu.memory;
  if (base < 0 || base + GDT_SIZE > m.size) throw new RangeError(`the GDT at 0x${base.toString(16)} is outside memory`);
  const words = [0, 0, DESC_FLAT_LO, DESC_CODE32_HI, DESC_FLAT_LO, DESC_DATA_HI, DESC_FLAT_LO, DESC_CODE64_HI];
  for (let i = 0; i < words.length; i++) for (let b = 0; b < 4; b++) m.write8(base + 4 * i + b, (words[i]! >>> (8 * b)) & 0xff);
  cpu.blocks.clear(); // written behind the MMU's back: drop any code decoded from here
  cpu.gdtrLo = base | 0; cpu.gdtrHi = 0; cpu.gdtrLimit = GDT_SIZE - 1;
}

/** Loads CS and the five data segments from the boot GDT (what far JMP and MOV Sreg would load). */
function loadFlatSegments(cpu: Cpu, codeSel: number, codeHi: number): void {
  for (let s = 0; s < 6; s++) {
    if (s !== CS) cpu.setSegment(s, GDT_DATA, 0, 0, 0xffffffff, attrOf(DESC_DATA_HI));
  }
  cpu.setSegment(CS, codeSel, 0, 0, 0xffffffff, attrOf(codeHi));
}

/**
 * Real-address mode with CS:IP = cs:ip (SDM vol. 3A, 20.1.1: base = selector × 16)
 * and DS = ES = FS = GS = SS = cs, the "tiny model" a flat real-mode program
 * expects; SP = 0, so the first push lands at offset FFFEH. IDTR covers the
 * real-mode interrupt vector table (base 0, limit 3FFH, 20.1.4).
 */
export function enterRealMode(cpu: Cpu, cs: number, ip: number): void {
  cpu.cr0 = CR0_ET; // PE = PG = 0; caches on, as firmware leaves them
  cpu.cr4 = 0;
  cpu.efer = 0;
  cpu.cpl = 0;
  cpu.rflags = 0x2;
  cs &= 0xffff;
  for (let s = 0; s < 6; s++) cpu.setSegment(s, cs, cs << 4, 0, 0xffff, RESET_SEG_ATTR);
  cpu.idtrLo = 0; cpu.idtrHi = 0; cpu.idtrLimit = 0x3ff;
  cpu.gpr[2 * RSP] = 0; cpu.gpr[2 * RSP + 1] = 0;
  cpu.ripLo = ip & 0xffff;
  cpu.ripHi = 0;
  cpu.mmu.flush();
  cpu.updateModes();
}

/**
 * Flat 32-bit protected mode, paging off (SDM vol. 3A, 10.9.1): CR0.PE = 1, the
 * boot GDT at `gdtAddress`, CS = 08H (32-bit code), the data segments = 10H.
 * IDTR limit 0: until the guest loads its own IDT any exception escalates to
 * a triple fault rather than vectoring through garbage (6.10, 6.15 #DF).
 */
export function enterProtectedFlat32(cpu: Cpu, gdtAddress = DEFAULT_GDT_ADDRESS): void {
  writeBootGdt(cpu, gdtAddress);
  cpu.cr0 = CR0_ET | CR0_PE;
  cpu.cr4 = 0;
  cpu.efer = 0;
  cpu.cpl = 0;
  cpu.rflags = 0x2;
  cpu.idtrLo = 0; cpu.idtrHi = 0; cpu.idtrLimit = 0;
  cpu.mmu.flush();
  loadFlatSegments(cpu, GDT_CODE32, DESC_CODE32_HI);
  cpu.updateModes();
}

/**
 * 64-bit mode (SDM vol. 3A, 10.8.5 "Initializing IA-32e Mode"): CR4.PAE = 1,
 * CR3 = `pml4Physical`, EFER.LME = 1, CR0.PG|PE = 1, so EFER.LMA = 1; CS = 18H
 * with L = 1, the data segments = 10H, all from the boot GDT at `gdtAddress`.
 * The page tables at `pml4Physical` are the caller's (see buildIdentityMap).
 */
export function enterLongMode64(cpu: Cpu, pml4Physical: number, gdtAddress = DEFAULT_GDT_ADDRESS): void {
  if (pml4Physical % 4096 !== 0) throw new RangeError('the PML4 must be 4 KiB aligned (SDM vol. 3A, 4.5)');
  writeBootGdt(cpu, gdtAddress);
  cpu.cr4 = CR4_PAE;
  cpu.cr3Lo = pml4Physical % 2 ** 32 | 0;
  cpu.cr3Hi = Math.floor(pml4Physical / 2 ** 32);
  cpu.efer = EFER_LME | EFER_LMA;
  cpu.cr0 = CR0_PG | CR0_ET | CR0_PE;
  cpu.cpl = 0;
  cpu.rflags = 0x2;
  cpu.idtrLo = 0; cpu.idtrHi = 0; cpu.idtrLimit = 0;
  cpu.mmu.flush();
  loadFlatSegments(cpu, GDT_CODE64, DESC_CODE64_HI);
  cpu.updateModes();
}

/** Paging-structure entry bits (SDM vol. 3A, 4.5, tables 4-15 to 4-18). */
const PTE_P = 1, PTE_RW = 2, PTE_PS = 0x80;
const GIB = 2 ** 30;

/** Bytes of page tables buildIdentityMap writes to map `bytes` of physical addresses. */
export function identityMapSize(bytes: number): number {
  const gib = Math.max(1, Math.ceil(bytes / GIB));
  return 4096 * (2 + gib); // PML4, one PDPT (512 GiB), one page directory per GiB
}

/**
 * Writes 4-level page tables at `base` (4 KiB aligned) mapping linear = physical
 * for [0, bytes rounded up to 1 GiB) with 2 MiB pages, supervisor, writable
 * (SDM vol. 3A, 4.5.4). At most 512 GiB. Returns the PML4's address (= base).
 */
export function buildIdentityMap(cpu: Cpu, base: number, bytes: number): number {
  const gib = Math.max(1, Math.ceil(bytes / GIB));
  if (gib > 512) throw new RangeError('the identity map covers at most 512 GiB');
  if (base % 4096 !== 0) throw new RangeError('page tables must be 4 KiB aligned');
  const m = cpu.memory;
  const entry = (at: number, lo: number, hi: number): void => {
    for (let b = 0; b < 4; b++) m.write8(at + b, (lo >>> (8 * b)) & 0xff);
    for (let b = 0; b < 4; b++) m.write8(at + 4 + b, (hi >>> (8 * b)) & 0xff);
  };
  const pml4 = base, pdpt = base + 4096, pd = base + 8192;
  for (let i = 0; i < 4096; i++) { m.write8(pml4 + i, 0); m.write8(pdpt + i, 0); }
  entry(pml4, pdpt | PTE_P | PTE_RW, 0);
  for (let g = 0; g < gib; g++) {
    const dir = pd + 4096 * g;
    entry(pdpt + 8 * g, (dir % 2 ** 32) | PTE_P | PTE_RW, Math.floor(dir / 2 ** 32));
    for (let i = 0; i < 512; i++) {
      const pa = g * GIB + i * 2 ** 21;
      entry(dir + 8 * i, (pa % 2 ** 32) | PTE_P | PTE_RW | PTE_PS, Math.floor(pa / 2 ** 32));
    }
  }
  cpu.blocks.clear();
  return pml4;
}

/**
 * Segment registers (of ES..GS) whose hidden part differs from the GDT
 * descriptor their selector names, read from physical memory (for tests and
 * debugging: a loader's state must survive the guest reloading a selector).
 */
export function segmentsUnlikeGdt(cpu: Cpu): string[] {
  const bad: string[] = [];
  const m = cpu.memory;
  const dword = (a: number): number => (m.read8(a) | m.read8(a + 1) << 8 | m.read8(a + 2) << 16 | m.read8(a + 3) << 24) | 0;
  for (let s = 0; s < 6; s++) {
    const sel = cpu.segSel[s]!, at = (cpu.gdtrLo >>> 0) + (sel & 0xfff8);
    const lo = dword(at), hi = dword(at + 4);
    if ((sel & 4) || (sel & 0xfff8) + 7 > cpu.gdtrLimit || cpu.segBase[2 * s] !== baseOf(lo, hi) ||
        cpu.segLimit[s] !== limitOf(lo, hi) || cpu.segAttr[s] !== attrOf(hi)) bad.push(SEG_NAMES[s]!);
  }
  return bad;
}
