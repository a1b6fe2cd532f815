/**
 * Control registers and TLB instructions: MOV to/from CR0, CR2, CR3, CR4, CR8,
 * CLTS, LMSW, SMSW, INVLPG, INVPCID (SDM vol. 2, each instruction's page; vol.
 * 3A, 2.5 "Control Registers", 4.10.4 "Invalidation of TLBs").
 *
 * writeCr0/writeCr3/writeCr4 are exported for other units that write control
 * registers with MOV's checks and side effects.
 */
import { Intercept } from '../virtualization.js';
import type { Cpu } from '../cpu.js';
import { cr4Supported, hasFeature } from '../cpuid.js';
import { OpMap, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import { effectiveAddress, getReg, m128, readM128, readRm, setReg, writeRm } from '../operands.js';
import {
  CR0_CD, CR0_NW, CR0_PE, CR0_PG, CR0_WP, CR3_RSVD_HI, CR4_LA57, CR4_PAE, CR4_PCIDE, CR4_PGE, CR4_PSE,
  CR4_SMAP, CR4_SMEP, PagingMode, pagingMode,
} from '../paging.js';
import { AC, EFER_LMA, EFER_LME, VM, Vector } from '../regs.js';

const TWO = OpMap.TWO * 256, THREE_38 = OpMap.THREE_38 * 256;

/** CR0 bits other than those paging.ts names (SDM vol. 3A, 2.5, figure 2-7). */
export const CR0_MP = 1 << 1, CR0_EM = 1 << 2, CR0_TS = 1 << 3, CR0_ET = 1 << 4, CR0_NE = 1 << 5, CR0_AM = 1 << 18;
/** The CR0 bits that exist; writes to the other bits of 31:0 are ignored (SDM vol. 2, MOV CR). */
const CR0_DEFINED = CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_NW | CR0_CD | CR0_PG;

/** CR4 bits other than those paging.ts names (SDM vol. 3A, 2.5, figure 2-7). */
export const CR4_TSD = 1 << 2, CR4_DE = 1 << 3, CR4_MCE = 1 << 6, CR4_PCE = 1 << 8;
export const CR4_OSFXSR = 1 << 9, CR4_OSXMMEXCPT = 1 << 10, CR4_VMXE = 1 << 13, CR4_FSGSBASE = 1 << 16;
export const CR4_OSXSAVE = 1 << 18;

/** CR4 bits whose change invalidates the whole TLB (SDM vol. 3A, 4.10.4.1; the processor may always do more). */
const CR4_FLUSH_ALL = CR4_PGE | CR4_PAE | CR4_PSE | CR4_SMEP | CR4_LA57;
/** CR0/CR4 bits whose change reloads the PDPTE registers when PAE paging follows (SDM vol. 3A, 4.4.1). */
const CR0_PDPTE = CR0_PG | CR0_CD | CR0_NW, CR4_PDPTE = CR4_PAE | CR4_PGE | CR4_PSE | CR4_SMEP;

function gp(cpu: Cpu): never { return cpu.raise(Vector.GP, 0); }

/** True when PAE paging would be in use with these control-register values (SDM vol. 3A, 4.1.1). */
function paePaging(cpu: Cpu, cr0: number, cr4: number): boolean {
  return (cr0 & CR0_PG) !== 0 && (cr4 & CR4_PAE) !== 0 && (cpu.efer & EFER_LME) === 0;
}

/** Loads the PDPTE registers from CR3 for MOV to CR0/CR3/CR4, or raises #GP(0) (SDM vol. 3A, 4.4.1). */
function loadPdptes(cpu: Cpu, cr3Lo: number): void {
  if (!cpu.paging.loadPdptes(cr3Lo)) gp(cpu);
}

/** The value MOV to CR0 gives CR0 from bits 31:0 of its source: reserved bits ignored, ET fixed at 1 (SDM vol. 3A, 2.5). */
export function cr0Value(lo: number): number {
  return (lo & CR0_DEFINED) | CR0_ET;
}

/**
 * Whether MOV to CR0 of `v` (cr0Value) over `old` is #GP(0) (SDM vol. 2, MOV CR;
 * vol. 3A, 2.5, 4.1.2): PG without PE, NW without CD, paging on with EFER.LME
 * and CR4.PAE = 0, paging off in 64-bit mode or with CR4.PCIDE = 1. Shared with
 * a hypervisor emulating the instruction on guest state (src/hv).
 */
export function cr0WriteFaults(v: number, old: number, efer: number, cr4: number, mode64: boolean): boolean {
  if ((v & CR0_PG) !== 0 && (v & CR0_PE) === 0) return true;
  if ((v & CR0_NW) !== 0 && (v & CR0_CD) === 0) return true;
  const pagingOn = (v & CR0_PG) !== 0 && (old & CR0_PG) === 0;
  const pagingOff = (v & CR0_PG) === 0 && (old & CR0_PG) !== 0;
  if (pagingOn && (efer & EFER_LME) !== 0 && (cr4 & CR4_PAE) === 0) return true;
  return pagingOff && (mode64 || (cr4 & CR4_PCIDE) !== 0);
}

/**
 * Whether MOV to CR4 of `v` over `old` is #GP(0) (SDM vol. 2, MOV CR; vol. 3A,
 * 2.5, 4.1.2, 4.10.1): a bit outside `supported` (cpuid.ts cr4Supported: a bit
 * whose feature CPUID does not announce is reserved); in IA-32e mode PAE
 * cleared or LA57 changed; PCIDE set outside IA-32e mode or with CR3[11:0] not 0.
 */
export function cr4WriteFaults(v: number, old: number, efer: number, cr3Lo: number, supported: number): boolean {
  const changed = v ^ old, lma = (efer & EFER_LMA) !== 0;
  if ((v & ~supported) !== 0) return true;
  if (lma && ((v & CR4_PAE) === 0 || (changed & CR4_LA57) !== 0)) return true;
  return (v & CR4_PCIDE) !== 0 && (old & CR4_PCIDE) === 0 && (!lma || (cr3Lo & 0xfff) !== 0);
}

/** MOV to CR0 with every check of SDM vol. 2, MOV CR, and vol. 3A, 2.5 and 4.1.2. */
export function writeCr0(cpu: Cpu, lo: number, hi: number): void {
  // Bits 63:32 are reserved (2.5).
  if (hi !== 0) gp(cpu);
  const old = cpu.cr0, v = cr0Value(lo);
  if (cr0WriteFaults(v, old, cpu.efer, cpu.cr4, cpu.codeSize === 8)) gp(cpu);
  const pagingOn = (v & CR0_PG) !== 0 && (old & CR0_PG) === 0;
  const pagingOff = (v & CR0_PG) === 0 && (old & CR0_PG) !== 0;
  if (paePaging(cpu, v, cpu.cr4) && ((v ^ old) & CR0_PDPTE) !== 0) loadPdptes(cpu, cpu.cr3Lo);
  cpu.cr0 = v;
  // SDM vol. 3A, 10.8.5: enabling paging with EFER.LME = 1 activates IA-32e mode; disabling it leaves.
  if (pagingOn && (cpu.efer & EFER_LME) !== 0) cpu.efer |= EFER_LMA;
  if (pagingOff) cpu.efer &= ~EFER_LMA;
  if (pagingOff) cpu.paging.flushAll(); // 4.10.4.1: clearing CR0.PG invalidates every entry
  else if (((v ^ old) & (CR0_PG | CR0_WP)) !== 0) cpu.mmu.flushFast(); // the fast entries' decisions changed
  if (((v ^ old) & CR0_PG) !== 0) cpu.paging.identity = false;
  cpu.paging.updateWidth();
  cpu.updateModes();
}

/** MOV to CR3 (SDM vol. 2, MOV CR; vol. 3A, 4.10.4.1). */
export function writeCr3(cpu: Cpu, lo: number, hi: number): void {
  const pcide = (cpu.cr4 & CR4_PCIDE) !== 0;
  // With CR4.PCIDE = 1, bit 63 of the source asks for no invalidation and is not stored.
  const noFlush = pcide && hi < 0;
  if (pcide) hi &= 0x7fffffff;
  if ((cpu.efer & EFER_LMA) !== 0) {
    if ((hi & CR3_RSVD_HI) !== 0) gp(cpu);
  } else {
    hi = 0;
  }
  if (pagingMode(cpu) === PagingMode.PAE) loadPdptes(cpu, lo);
  cpu.cr3Lo = lo;
  cpu.cr3Hi = hi;
  cpu.paging.cr3Loaded(noFlush);
}

/** MOV to CR4 (SDM vol. 2, MOV CR; vol. 3A, 2.5, 4.1.2, 4.10.1, 4.10.4.1). */
export function writeCr4(cpu: Cpu, lo: number, hi: number): void {
  if (hi !== 0 || cr4WriteFaults(lo, cpu.cr4, cpu.efer, cpu.cr3Lo, cr4Supported(cpu))) gp(cpu);
  const old = cpu.cr4, changed = lo ^ old;
  if (paePaging(cpu, cpu.cr0, lo) && (changed & CR4_PDPTE) !== 0) loadPdptes(cpu, cpu.cr3Lo);
  cpu.cr4 = lo;
  if ((changed & CR4_FLUSH_ALL) !== 0 || (old & ~lo & CR4_PCIDE) !== 0) cpu.paging.flushAll();
  else if ((changed & (CR4_SMAP | CR4_PCIDE)) !== 0) cpu.mmu.flushFast();
  if ((changed & (CR4_PAE | CR4_LA57)) !== 0) cpu.paging.identity = false;
  cpu.paging.updateWidth();
}

/** MOV to CR8: TPR[7:4] ← CR8[3:0], TPR[3:0] ← 0; bits 63:4 are reserved (SDM vol. 3A, 10.8.6.1). */
function writeCr8(cpu: Cpu, lo: number, hi: number): void {
  if (hi !== 0 || (lo & ~0xf) !== 0) gp(cpu);
  cpu.cr8.writeCr8(lo);
}

/**
 * The CR of a MOV CR: ModRM.reg with REX.R. CR1, CR5-CR7 and CR9-CR15 are #UD
 * (the table leaves ModRM.reg 1, 5, 6, 7 undefined; REX.R with 2-4 is caught
 * here), and #UD comes before the privilege check (SDM vol. 3A, 6.9, classes 7 and 8).
 */
function crNumber(cpu: Cpu, i: Insn): number {
  const n = i.reg;
  if (n === 1 || (n > 4 && n !== 8)) cpu.raise(Vector.UD);
  if (cpu.cpl !== 0) gp(cpu);
  return n;
}

/** Operand size of MOV CR: 64 bits in 64-bit mode regardless of REX.W, else 32 (SDM vol. 2, MOV CR). */
function crSize(i: Insn): number { return i.mode === 8 ? 8 : 4; }

/** MOV r, CRn (0F 20). */
function movFromCr(cpu: Cpu, i: Insn): void {
  const n = crNumber(cpu, i);
  let lo = 0, hi = 0;
  switch (n) {
    case 0: lo = cpu.cr0; break;
    case 2: lo = cpu.cr2Lo; hi = cpu.cr2Hi; break;
    case 3: lo = cpu.cr3Lo; hi = cpu.cr3Hi; break;
    case 4: lo = cpu.cr4; break;
    default: lo = cpu.cr8.readCr8();
  }
  // Non-root: CR3/CR8-store exiting, and the read shadows of CR0 and CR4 (SDM vol. 3C, 26.1.3, 26.3).
  if (cpu.nonRoot && n !== 2) { lo = cpu.virt.readCr(cpu, i, n, i.rm); hi = cpu.tHi; }
  setReg(cpu, i.rm, crSize(i), lo, hi);
}

/** MOV CRn, r (0F 22). */
function movToCr(cpu: Cpu, i: Insn): void {
  const n = crNumber(cpu, i), size = crSize(i);
  let lo = getReg(cpu, i.rm, size);
  const hi = cpu.tHi;
  // Non-root: exits under the CR masks, CR3-target list and CR8-load exiting; masked bits keep their value (26.3).
  if (cpu.nonRoot && n !== 2) {
    lo = cpu.virt.writeCr(cpu, i, n, lo, hi, i.rm);
    if (n === 8 && lo === -1) return; // the TPR shadow took it
  }
  switch (n) {
    case 0: writeCr0(cpu, lo, hi); break;
    case 2: cpu.cr2Lo = lo; cpu.cr2Hi = hi; break;
    case 3: writeCr3(cpu, lo, hi); break;
    case 4: writeCr4(cpu, lo, hi); break;
    default: writeCr8(cpu, lo, hi);
  }
}

/** CLTS: CR0.TS ← 0 (SDM vol. 2, CLTS). */
function clts(cpu: Cpu, i: Insn): void {
  if (cpu.cpl !== 0) gp(cpu);
  const v = cpu.cr0 & ~CR0_TS;
  cpu.cr0 = cpu.nonRoot ? cpu.virt.writeCr(cpu, i, 0, v, 0, -1) : v;
}

/** LMSW r/m16: loads CR0 bits 3:0; it can set PE but not clear it (SDM vol. 2, LMSW). */
function lmsw(cpu: Cpu, i: Insn): void {
  if (cpu.cpl !== 0) gp(cpu);
  const src = readRm(cpu, i, 2);
  // In non-root operation the unit sees the source operand (its exit test and qualification use it).
  cpu.cr0 = cpu.nonRoot ? cpu.virt.writeCr(cpu, i, 0, src, 0, -2) : lmswValue(cpu.cr0, src);
  cpu.updateModes();
}

/** CR0 after LMSW with source `src`: bits 3:0 loaded, but PE cannot be cleared (SDM vol. 2, LMSW). */
export function lmswValue(cr0: number, src: number): number {
  return (cr0 & ~(CR0_MP | CR0_EM | CR0_TS)) | (src & (CR0_PE | CR0_MP | CR0_EM | CR0_TS));
}

/**
 * SMSW r/m: the memory form stores 16 bits; the register form writes the
 * operand size, and where the SDM leaves bits above 15 undefined we store
 * CR0's, as Intel processors do (SDM vol. 2, SMSW).
 */
function smsw(cpu: Cpu, i: Insn): void {
  writeRm(cpu, i, i.opSize, cpu.nonRoot ? cpu.virt.readCr(cpu, i, 0, -1) : cpu.cr0, 0);
}

/** INVLPG m (SDM vol. 2, INVLPG): a non-canonical address in 64-bit mode makes it a no-op. */
function invlpg(cpu: Cpu, i: Insn): void {
  if (cpu.cpl !== 0) gp(cpu);
  effectiveAddress(cpu, i);
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, Intercept.INVLPG)) return;
  const s = cpu.mmu.canonicalShift, hi = cpu.eaHi;
  if (((hi << s) >> s) !== hi) return;
  cpu.paging.invlpg(cpu.eaLo, hi);
}

/**
 * INVPCID r, m128 (SDM vol. 2, INVPCID): #UD when CPUID.(EAX=07H,ECX=0):EBX.INVPCID
 * is 0 or in virtual-8086 mode. The type is checked before the descriptor is
 * read (our choice where the SDM gives no order between the two).
 */
function invpcid(cpu: Cpu, i: Insn): void {
  if (!hasFeature(cpu, 'invpcid') || (cpu.flags & VM) !== 0) cpu.raise(Vector.UD);
  if (cpu.cpl !== 0) gp(cpu);
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, Intercept.INVPCID)) return;
  // The type register is 64 bits in 64-bit mode, 32 bits elsewhere.
  const typeLo = getReg(cpu, i.reg, i.mode === 8 ? 8 : 4);
  if (cpu.tHi !== 0 || (typeLo >>> 0) > 3) gp(cpu);
  readM128(cpu, i);
  const descLo = m128[0]!, descHi = m128[1]!, addrLo = m128[2]!, addrHi = m128[3]!;
  // Bits 63:12 of the descriptor are reserved; without PCIDs only PCID 000H may be named.
  if (descHi !== 0 || (descLo & ~0xfff) !== 0) gp(cpu);
  const pcid = descLo & 0xfff;
  if (typeLo <= 1 && pcid !== 0 && (cpu.cr4 & CR4_PCIDE) === 0) gp(cpu);
  const s = cpu.mmu.canonicalShift;
  if (typeLo === 0 && ((addrHi << s) >> s) !== addrHi) gp(cpu);
  cpu.paging.invpcid(typeLo, pcid, addrLo, addrHi);
}

/**
 * STAC and CLAC: RFLAGS.AC ← 1 or 0, lifting or restoring SMAP's protection of
 * user pages from supervisor data accesses (SDM vol. 2, STAC and CLAC; vol.
 * 3A, 4.6.1). #UD when CPUID.(EAX=07H,ECX=0):EBX.SMAP is 0, in virtual-8086
 * mode or at CPL > 0. The MMU keeps such accesses out of its fast path, so
 * nothing cached depends on AC.
 */
function setAlignmentCheck(value: boolean) {
  return (cpu: Cpu): void => {
    if (!hasFeature(cpu, 'smap') || (cpu.flags & VM) !== 0 || cpu.cpl !== 0) cpu.raise(Vector.UD);
    const flags = cpu.rflags;
    cpu.rflags = value ? flags | AC : flags & ~AC;
  };
}

const def = (name: string, exec: OpDef['exec'], extra: Omit<OpDef, 'name' | 'exec'> = {}): OpDef =>
  ({ name, exec, ...extra });
/** Instructions after these may be fetched through other translations or in another mode. */
const serializing = { ends: true } as const;

/**
 * MOV CR: ModRM.reg (with REX.R) names CR0, CR2, CR3, CR4 or CR8, any other is
 * #UD; ModRM.mod is ignored and r/m is a general register of natural width
 * (SDM vol. 2, MOV—Move to/from Control Registers).
 */
const crOp = { modrm: true, modIgnored: true, size: Sz.NATURAL, validRegs: 0b1_0001_1101 } as const;

export const CONTROL_REGISTER_TABLE: Record<number, Entry> = {
  [TWO + 0x20]: def('mov', movFromCr, crOp),
  [TWO + 0x22]: def('mov', movToCr, { ...crOp, ...serializing }),
  [TWO + 0x06]: def('clts', clts, serializing),
  // Group 7 (0F 01): NP 0F 01 CA CLAC and CB STAC (/1, register forms 2 and 3), /4 SMSW, /6 LMSW,
  // /7 INVLPG (memory form; the other forms are others').
  [TWO + 0x01]: {
    group: [undefined,
      { reg: { rm: [undefined, undefined, { prefixed: [def('clac', setAlignmentCheck(false))] },
        { prefixed: [def('stac', setAlignmentCheck(true))] }] } },
      undefined, undefined,
      { mem: def('smsw', smsw, { modrm: true, size: Sz.W }), reg: def('smsw', smsw, { modrm: true }) },
      undefined,
      // LMSW reads 16 bits of either form; the register form is sized as iced-x86 shows it.
      { mem: def('lmsw', lmsw, { modrm: true, size: Sz.W, ...serializing }), reg: def('lmsw', lmsw, { modrm: true, ...serializing }) },
      { mem: def('invlpg', invlpg, { modrm: true, ...serializing }) }],
  },
  // The type register is 64 bits in 64-bit mode, 32 elsewhere; invpcid() reads it so.
  [THREE_38 + 0x82]: {
    prefixed: [undefined, def('invpcid', invpcid, { modrm: true, memOnly: true, size: Sz.NATURAL, ...serializing }),
      undefined, undefined],
  },
};
