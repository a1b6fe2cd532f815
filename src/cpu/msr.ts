/**
 * Model-specific registers (SDM vol. 4, chapter 2, table 2-2 "IA-32
 * Architectural MSRs"), and the processor state that no other unit owns and
 * that MSRs, CPUID and the XSAVE feature set share: XCR0 and the x87 register
 * file. RDMSR/WRMSR dispatch here by MSR number.
 *
 * Other units attach handlers for the MSRs they implement (the local APIC:
 * IA32_APIC_BASE, IA32_TSC_DEADLINE, the x2APIC range) with `attach`. An MSR
 * that neither a handler nor this file implements raises #GP(0), as does one
 * whose feature the profile's CPUID does not announce.
 *
 * 64-bit MSR values travel as (lo, hi) 32-bit halves; `read` returns lo and
 * leaves hi in `hi`. Fields other units read are plain numbers, 64-bit ones as
 * Lo/Hi pairs (SYSCALL reads star/lstar/cstar/fmask, SWAPGS kernelGsBase,
 * SYSENTER sysenter*).
 *
 * Performance monitoring: the counters hold what software wrote and do not
 * count events; IA32_PERF_GLOBAL_STATUS stays 0 (no counter overflows).
 * IA32_DEBUGCTL: LBR and BTF are stored for the units that will honour them
 * (no branch records are kept; single-step on branches belongs to #DB).
 */
import type { Cpu } from './cpu.js';
import { hasFeature } from './cpuid.js';
import { EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE, FS, GS, Vector } from './regs.js';

/** MSR numbers (SDM vol. 4, table 2-2). */
export const enum Msr {
  IA32_TIME_STAMP_COUNTER = 0x10,
  IA32_PLATFORM_ID = 0x17,
  IA32_APIC_BASE = 0x1b,
  IA32_FEATURE_CONTROL = 0x3a,
  IA32_TSC_ADJUST = 0x3b,
  IA32_SPEC_CTRL = 0x48,
  IA32_PRED_CMD = 0x49,
  IA32_BIOS_SIGN_ID = 0x8b,
  IA32_PMC0 = 0xc1,
  IA32_MTRRCAP = 0xfe,
  IA32_ARCH_CAPABILITIES = 0x10a,
  IA32_FLUSH_CMD = 0x10b,
  IA32_SYSENTER_CS = 0x174,
  IA32_SYSENTER_ESP = 0x175,
  IA32_SYSENTER_EIP = 0x176,
  IA32_MCG_CAP = 0x179,
  IA32_MCG_STATUS = 0x17a,
  IA32_PERFEVTSEL0 = 0x186,
  IA32_MISC_ENABLE = 0x1a0,
  IA32_XSS = 0xda0,
  IA32_DEBUGCTL = 0x1d9,
  IA32_MTRR_PHYSBASE0 = 0x200,
  IA32_MTRR_FIX64K_00000 = 0x250,
  IA32_MTRR_FIX16K_80000 = 0x258,
  IA32_MTRR_FIX16K_A0000 = 0x259,
  IA32_MTRR_FIX4K_C0000 = 0x268,
  IA32_MTRR_FIX4K_F8000 = 0x26f,
  IA32_PAT = 0x277,
  IA32_MTRR_DEF_TYPE = 0x2ff,
  IA32_FIXED_CTR0 = 0x309,
  IA32_FIXED_CTR_CTRL = 0x38d,
  IA32_PERF_GLOBAL_STATUS = 0x38e,
  IA32_PERF_GLOBAL_CTRL = 0x38f,
  IA32_PERF_GLOBAL_OVF_CTRL = 0x390,
  IA32_TSC_DEADLINE = 0x6e0,
  IA32_X2APIC_FIRST = 0x800,
  IA32_X2APIC_LAST = 0x8ff,
  IA32_EFER = 0xc0000080,
  IA32_STAR = 0xc0000081,
  IA32_LSTAR = 0xc0000082,
  IA32_CSTAR = 0xc0000083,
  IA32_FMASK = 0xc0000084,
  IA32_FS_BASE = 0xc0000100,
  IA32_GS_BASE = 0xc0000101,
  IA32_KERNEL_GS_BASE = 0xc0000102,
  IA32_TSC_AUX = 0xc0000103,
}

/**
 * An MSR implemented by another unit. The shape is the local APIC's
 * (src/platform/apic.ts), so a LocalApic can be attached as it is.
 */
export interface MsrHandler {
  /** RDMSR: false raises #GP(0); otherwise the value is in msrLo/msrHi. */
  rdmsr(msr: number): boolean;
  /** WRMSR of hi:lo: false raises #GP(0). */
  wrmsr(msr: number, lo: number, hi: number): boolean;
  msrLo: number;
  msrHi: number;
}

/** IA32_MISC_ENABLE bits (SDM vol. 4, table 2-2, 1A0H). */
export const MISC_FAST_STRINGS = 1 << 0, MISC_PERFMON_AVAILABLE = 1 << 7;
export const MISC_BTS_UNAVAILABLE = 1 << 11, MISC_PEBS_UNAVAILABLE = 1 << 12;
export const MISC_LIMIT_CPUID = 1 << 22;
/** Bit 18, ENABLE MONITOR FSM: 0 makes MONITOR/MWAIT #UD and clears CPUID.01H:ECX.MONITOR (R/W, 1 at reset). */
export const MISC_ENABLE_MONITOR = 1 << 18;
/** Bit 34, XD Bit Disable, in the high half. */
export const MISC_HI_XD_DISABLE = 1 << 2;
/** Read-only bits: writes of either value are ignored. */
const MISC_READ_ONLY = MISC_PERFMON_AVAILABLE | MISC_BTS_UNAVAILABLE | MISC_PEBS_UNAVAILABLE;
/** Bit 18 is stored whatever the profile; it reads as set, and is writable, only where CPUID announces MONITOR. */
const MISC_RESET = MISC_FAST_STRINGS | MISC_READ_ONLY | MISC_ENABLE_MONITOR;

/** IA32_FEATURE_CONTROL bits (SDM vol. 4, 3AH; vol. 3C, 24.7 "Enabling and Entering VMX Operation"). */
export const FEATURE_CONTROL_LOCK = 1 << 0, FEATURE_CONTROL_VMX_IN_SMX = 1 << 1, FEATURE_CONTROL_VMX_OUTSIDE_SMX = 1 << 2;

/** IA32_PAT power-up value: WB, WT, UC-, UC, WB, WT, UC-, UC (SDM vol. 3A, 13.12.4, table 13-12). */
export const PAT_RESET_LO = 0x00070406, PAT_RESET_HI = 0x00070406;

const CR0_PG = 1 << 31;
const TWO32 = 2 ** 32;
/** Most counters any profile may have (IA32_PMC0.. stops short of IA32_PERFEVTSEL0 at 186H). */
const MAX_COUNTERS = 8, MAX_FIXED = 4, MAX_VARIABLE_MTRRS = 32;

/**
 * The x87 FPU register file (SDM vol. 1, 8.1): the data registers as 80-bit
 * images in physical order (R0 at bytes 0-9, ..., R7 at 70-79), and the
 * control, status and abridged tag words, opcode and pointers as FXSAVE lays
 * them out, so that a save and a restore give back every bit.
 */
export class X87State {
  fcw = 0x0040;
  fsw = 0;
  /** Abridged tag word: bit i = 1 when physical register Ri is not empty. */
  ftw = 0xff;
  /** Last non-control instruction's opcode (11 bits), instruction and data pointers. */
  fop = 0;
  fipLo = 0; fipHi = 0;
  fdpLo = 0; fdpHi = 0;
  readonly st = new Uint8Array(80);

  /** Power-up and RESET (SDM vol. 3A, 10.1.1, table 10-1): FCW 0040H, FSW 0, FTW 5555H, registers +0.0. */
  reset(): void {
    this.initialize();
    this.fcw = 0x0040;
    this.ftw = 0xff;
    this.st.fill(0);
  }

  /** FNINIT (SDM vol. 2, FINIT/FNINIT): the data registers are kept; all are tagged empty. */
  initialize(): void {
    this.fcw = 0x037f; this.fsw = 0; this.ftw = 0; this.fop = 0;
    this.fipLo = 0; this.fipHi = 0; this.fdpLo = 0; this.fdpHi = 0;
  }
}

/** A signed 64-bit value from halves, exact while |value| < 2^53. */
function toNumber(lo: number, hi: number): number {
  return (hi | 0) * TWO32 + (lo >>> 0);
}

/** True when PAT or MTRR memory type `t` is one the SDM defines (vol. 3A, 13.3, table 13-8; 13.12.1). */
function validType(t: number, pat: boolean): boolean {
  return t === 0 || t === 1 || t === 4 || t === 5 || t === 6 || (pat && t === 7);
}

/** True when every byte of lo and hi is a valid memory type (IA32_PAT, fixed-range MTRRs). */
function validTypes(lo: number, hi: number, pat: boolean): boolean {
  for (let k = 0; k < 32; k += 8) {
    if (!validType((lo >>> k) & 0xff, pat) || !validType((hi >>> k) & 0xff, pat)) return false;
  }
  return true;
}

export class MsrFile {
  /** High half of the value the last `read` returned. */
  hi = 0;

  // ---- set by the platform --------------------------------------------------
  /** Initial APIC ID (CPUID.01H:EBX[31:24], CPUID.0BH:EDX). */
  apicId = 0;
  /** Logical processors in this processor's package (CPUID topology leaves 04H and 0BH). */
  packageCpus = 1;

  // ---- extended state --------------------------------------------------------
  /** XCR0 (SDM vol. 1, 13.3): bit 0 (x87) is always 1; only bits 0 and 1 are supported. */
  xcr0 = 1;
  /**
   * IA32_XSS (SDM vol. 1, 13.3): the supervisor state components XSAVES and
   * XRSTORS manage. None is supported (CPUID.(EAX=0DH,ECX=1):ECX = EDX = 0), so
   * every bit is reserved and it stays 0.
   */
  xss = 0;
  readonly x87 = new X87State();

  // ---- fast system calls (SDM vol. 3A, 5.8.7, 5.8.8) ----------------------------
  starLo = 0; starHi = 0;
  lstarLo = 0; lstarHi = 0;
  cstarLo = 0; cstarHi = 0;
  /** IA32_FMASK: bits 31:0 (63:32 are reserved). */
  fmask = 0;
  kernelGsBaseLo = 0; kernelGsBaseHi = 0;
  sysenterCsLo = 0; sysenterCsHi = 0;
  sysenterEspLo = 0; sysenterEspHi = 0;
  sysenterEipLo = 0; sysenterEipHi = 0;

  // ---- time-stamp counter (SDM vol. 3B, 18.17) -------------------------------
  /** IA32_TSC_AUX[31:0] (RDTSCP loads it into ECX). */
  tscAux = 0;
  /** IA32_TSC_ADJUST as a signed number (exact while |value| < 2^53). */
  tscAdjust = 0;

  // ---- memory types (SDM vol. 3A, 13.11, 13.12) ------------------------------
  patLo = PAT_RESET_LO; patHi = PAT_RESET_HI;
  mtrrDefType = 0;
  /** Fixed-range MTRRs 250H, 258H, 259H, 268H-26FH: (lo, hi) at 2k, 2k + 1. */
  readonly mtrrFixed = new Int32Array(22);
  /** Variable-range MTRRs: PHYSBASEn at 4n (lo), 4n + 1 (hi); PHYSMASKn at 4n + 2, 4n + 3. */
  readonly mtrrVariable = new Int32Array(4 * MAX_VARIABLE_MTRRS);

  // ---- miscellaneous -----------------------------------------------------------
  miscEnableLo = MISC_RESET; miscEnableHi = 0;
  /** IA32_FEATURE_CONTROL[31:0]: unlocked, VMX off at reset (SDM vol. 4, 3AH). */
  featureControl = 0;
  /** IA32_BIOS_SIGN_ID[63:32]: loaded with the microcode revision by CPUID leaf 1. */
  biosSignHi = 0;
  mcgStatus = 0;
  specCtrl = 0;
  debugCtl = 0;

  // ---- architectural performance monitoring (SDM vol. 3B, 20.2) ---------------------
  /** IA32_PMCn and IA32_FIXED_CTRn as (lo, hi); IA32_PERFEVTSELn as (lo, hi). */
  readonly pmc = new Int32Array(2 * MAX_COUNTERS);
  readonly perfEvtSel = new Int32Array(2 * MAX_COUNTERS);
  readonly fixedCtr = new Int32Array(2 * MAX_FIXED);
  fixedCtrCtrl = 0;
  perfGlobalCtrlLo = 0; perfGlobalCtrlHi = 0;
  perfGlobalOvfCtrlLo = 0; perfGlobalOvfCtrlHi = 0;

  private readonly handlers = new Map<number, MsrHandler>();
  /** Changes whenever a handler is attached (CPUID's announcements depend on them). */
  handlerVersion = 0;

  /**
   * Power-up and RESET (SDM vol. 3A, 10.1.1, table 10-1: XCR0 = 1, the x87
   * values, IA32_PAT and IA32_MISC_ENABLE as documented, "all other MSRs
   * undefined": 0 here). INIT keeps all of it. The TSC (cpu.tscOffset), IA32_EFER
   * and the FS/GS bases live in the Cpu; attached handlers and the platform's
   * apicId/packageCpus stay.
   */
  reset(): void {
    this.xcr0 = 1;
    this.xss = 0;
    this.x87.reset();
    this.starLo = 0; this.starHi = 0; this.lstarLo = 0; this.lstarHi = 0; this.cstarLo = 0; this.cstarHi = 0;
    this.fmask = 0; this.kernelGsBaseLo = 0; this.kernelGsBaseHi = 0;
    this.sysenterCsLo = 0; this.sysenterCsHi = 0; this.sysenterEspLo = 0; this.sysenterEspHi = 0;
    this.sysenterEipLo = 0; this.sysenterEipHi = 0;
    this.tscAux = 0; this.tscAdjust = 0;
    this.patLo = PAT_RESET_LO; this.patHi = PAT_RESET_HI;
    this.mtrrDefType = 0; this.mtrrFixed.fill(0); this.mtrrVariable.fill(0);
    this.miscEnableLo = MISC_RESET; this.miscEnableHi = 0;
    this.featureControl = 0; this.biosSignHi = 0; this.mcgStatus = 0; this.specCtrl = 0; this.debugCtl = 0;
    this.pmc.fill(0); this.perfEvtSel.fill(0); this.fixedCtr.fill(0); this.fixedCtrCtrl = 0;
    this.perfGlobalCtrlLo = 0; this.perfGlobalCtrlHi = 0; this.perfGlobalOvfCtrlLo = 0; this.perfGlobalOvfCtrlHi = 0;
  }

  /** Lets `handler` implement MSRs first..last (inclusive). */
  attach(first: number, last: number, handler: MsrHandler): void {
    for (let n = first >>> 0; n <= last >>> 0; n++) this.handlers.set(n, handler);
    this.handlerVersion++;
  }

  /** The handler attached for MSR `index`, if any. */
  handlerOf(index: number): MsrHandler | undefined {
    return this.handlers.get(index >>> 0);
  }

  /** Time-stamp counter (TSC = guest time in ns + offset), low half; high half in `hi`. */
  readTsc(cpu: Cpu): number {
    return this.ret(cpu.now() + cpu.tscOffset);
  }

  private ret(v: number): number {
    const hi = Math.floor(v / TWO32);
    this.hi = hi | 0;
    return (v - hi * TWO32) | 0;
  }

  private ret2(lo: number, hi: number): number {
    this.hi = hi;
    return lo;
  }

  /** True when (lo, hi) is canonical for the profile's linear-address width (SDM vol. 1, 3.3.7.1). */
  canonical(cpu: Cpu, hi: number): boolean {
    const s = 64 - cpu.profile.linearAddressBits;
    return ((hi << s) >> s) === hi;
  }

  // ---- RDMSR ---------------------------------------------------------------------

  /** RDMSR of MSR `index` (unsigned): returns bits 31:0, leaves 63:32 in `hi`; #GP(0) if it does not exist. */
  read(cpu: Cpu, index: number): number {
    index >>>= 0;
    const h = this.handlers.get(index);
    if (h !== undefined) {
      if (!h.rdmsr(index)) cpu.raise(Vector.GP, 0);
      return this.ret2(h.msrLo | 0, h.msrHi | 0);
    }
    const p = cpu.profile;
    switch (index) {
      case Msr.IA32_TIME_STAMP_COUNTER: return this.readTsc(cpu);
      case Msr.IA32_PLATFORM_ID: return this.ret2(0, (p.platformId & 7) << 18);
      case Msr.IA32_FEATURE_CONTROL: return this.ret2(this.featureControl, 0);
      case Msr.IA32_TSC_ADJUST:
        if (hasFeature(cpu, 'tsc_adjust')) return this.ret(this.tscAdjust);
        break;
      case Msr.IA32_SPEC_CTRL:
        if (this.specCtrlMask(cpu) !== 0) return this.ret2(this.specCtrl, 0);
        break;
      case Msr.IA32_BIOS_SIGN_ID: return this.ret2(0, this.biosSignHi);
      case Msr.IA32_MTRRCAP:
        if (hasFeature(cpu, 'mtrr')) return this.ret2(this.mtrrCap(cpu), 0);
        break;
      case Msr.IA32_ARCH_CAPABILITIES:
        if (hasFeature(cpu, 'arch_capabilities')) return this.ret2(p.archCapabilities[0], p.archCapabilities[1]);
        break;
      case Msr.IA32_SYSENTER_CS:
        if (hasFeature(cpu, 'sep')) return this.ret2(this.sysenterCsLo, this.sysenterCsHi);
        break;
      case Msr.IA32_SYSENTER_ESP:
        if (hasFeature(cpu, 'sep')) return this.ret2(this.sysenterEspLo, this.sysenterEspHi);
        break;
      case Msr.IA32_SYSENTER_EIP:
        if (hasFeature(cpu, 'sep')) return this.ret2(this.sysenterEipLo, this.sysenterEipHi);
        break;
      // No machine-check banks: MCG_CAP.Count = 0 and no extended registers.
      case Msr.IA32_MCG_CAP: return this.ret2(0, 0);
      case Msr.IA32_MCG_STATUS: return this.ret2(this.mcgStatus, 0);
      case Msr.IA32_MISC_ENABLE:
        return this.ret2(hasFeature(cpu, 'monitor') ? this.miscEnableLo : this.miscEnableLo & ~MISC_ENABLE_MONITOR, this.miscEnableHi);
      case Msr.IA32_XSS:
        if (hasFeature(cpu, 'xsaves')) return this.ret2(this.xss, 0);
        break;
      case Msr.IA32_DEBUGCTL: return this.ret2(this.debugCtl, 0);
      case Msr.IA32_PAT:
        if (hasFeature(cpu, 'pat')) return this.ret2(this.patLo, this.patHi);
        break;
      case Msr.IA32_MTRR_DEF_TYPE:
        if (hasFeature(cpu, 'mtrr')) return this.ret2(this.mtrrDefType, 0);
        break;
      case Msr.IA32_FIXED_CTR_CTRL:
        if (p.perfMon !== null) return this.ret2(this.fixedCtrCtrl, 0);
        break;
      case Msr.IA32_PERF_GLOBAL_STATUS:
        if (p.perfMon !== null) return this.ret2(0, 0);
        break;
      case Msr.IA32_PERF_GLOBAL_CTRL:
        if (p.perfMon !== null) return this.ret2(this.perfGlobalCtrlLo, this.perfGlobalCtrlHi);
        break;
      case Msr.IA32_PERF_GLOBAL_OVF_CTRL:
        if (p.perfMon !== null) return this.ret2(this.perfGlobalOvfCtrlLo, this.perfGlobalOvfCtrlHi);
        break;
      case Msr.IA32_EFER:
        if (eferWritable(cpu) !== 0) return this.ret2(cpu.efer, 0);
        break;
      case Msr.IA32_STAR:
        if (hasFeature(cpu, 'lm')) return this.ret2(this.starLo, this.starHi);
        break;
      case Msr.IA32_LSTAR:
        if (hasFeature(cpu, 'lm')) return this.ret2(this.lstarLo, this.lstarHi);
        break;
      case Msr.IA32_CSTAR:
        if (hasFeature(cpu, 'lm')) return this.ret2(this.cstarLo, this.cstarHi);
        break;
      case Msr.IA32_FMASK:
        if (hasFeature(cpu, 'lm')) return this.ret2(this.fmask, 0);
        break;
      case Msr.IA32_FS_BASE: case Msr.IA32_GS_BASE:
        if (hasFeature(cpu, 'lm')) {
          const s = index === Msr.IA32_FS_BASE ? FS : GS;
          return this.ret2(cpu.segBase[2 * s]!, cpu.segBase[2 * s + 1]!);
        }
        break;
      case Msr.IA32_KERNEL_GS_BASE:
        if (hasFeature(cpu, 'lm')) return this.ret2(this.kernelGsBaseLo, this.kernelGsBaseHi);
        break;
      case Msr.IA32_TSC_AUX:
        if (hasFeature(cpu, 'rdtscp') || hasFeature(cpu, 'rdpid')) return this.ret2(this.tscAux, 0);
        break;
      default: {
        const k = this.mtrrIndex(cpu, index);
        if (k >= 0) return this.ret2(this.mtrrVariable[k]!, this.mtrrVariable[k + 1]!);
        const f = this.fixedMtrrIndex(cpu, index);
        if (f >= 0) return this.ret2(this.mtrrFixed[2 * f]!, this.mtrrFixed[2 * f + 1]!);
        const pm = p.perfMon;
        if (pm !== null) {
          let n = index - Msr.IA32_PMC0;
          if (n >= 0 && n < pm.counters) return this.ret2(this.pmc[2 * n]!, this.pmc[2 * n + 1]!);
          n = index - Msr.IA32_PERFEVTSEL0;
          if (n >= 0 && n < pm.counters) return this.ret2(this.perfEvtSel[2 * n]!, this.perfEvtSel[2 * n + 1]!);
          n = index - Msr.IA32_FIXED_CTR0;
          if (n >= 0 && n < pm.fixedCounters) return this.ret2(this.fixedCtr[2 * n]!, this.fixedCtr[2 * n + 1]!);
        }
      }
    }
    return cpu.raise(Vector.GP, 0);
  }

  /**
   * RDPMC's counter selection (SDM vol. 2, RDPMC): ECX[30] = 1 picks fixed
   * counter ECX[29:0], otherwise general-purpose counter ECX[29:0]. Returns the
   * low half (high in `hi`); #GP(0) for a counter that does not exist.
   */
  readPmc(cpu: Cpu, ecx: number): number {
    const pm = cpu.profile.perfMon;
    if (pm === null) cpu.raise(Vector.GP, 0);
    const n = ecx & 0x3fffffff;
    if ((ecx & 0x40000000) !== 0) {
      if ((ecx & 0x80000000) === 0 && n < pm.fixedCounters) return this.ret2(this.fixedCtr[2 * n]!, this.fixedCtr[2 * n + 1]!);
    } else if ((ecx & 0x80000000) === 0 && n < pm.counters) {
      return this.ret2(this.pmc[2 * n]!, this.pmc[2 * n + 1]!);
    }
    return cpu.raise(Vector.GP, 0);
  }

  // ---- WRMSR ---------------------------------------------------------------------

  /** WRMSR of hi:lo to MSR `index` (unsigned); #GP(0) if it does not exist or the value sets reserved bits. */
  write(cpu: Cpu, index: number, lo: number, hi: number): void {
    index >>>= 0; lo |= 0; hi |= 0;
    const h = this.handlers.get(index);
    if (h !== undefined) {
      if (!h.wrmsr(index, lo >>> 0, hi >>> 0)) cpu.raise(Vector.GP, 0);
      return;
    }
    if (!this.tryWrite(cpu, index, lo, hi)) cpu.raise(Vector.GP, 0);
  }

  /** Performs the write; false when it raises #GP(0) (nothing has changed then). */
  private tryWrite(cpu: Cpu, index: number, lo: number, hi: number): boolean {
    const p = cpu.profile;
    switch (index) {
      case Msr.IA32_TIME_STAMP_COUNTER: {
        // SDM vol. 3B, 18.17: the TSC takes the value written (here: as the WRMSR
        // retires, so the next instruction reads it); IA32_TSC_ADJUST moves by the same amount.
        const offset = toNumber(lo, hi) - (cpu.now() + 1);
        this.tscAdjust += offset - cpu.tscOffset;
        cpu.tscOffset = offset;
        return true;
      }
      case Msr.IA32_FEATURE_CONTROL: {
        // SDM vol. 4, 3AH: once the lock bit is set, WRMSR to it raises #GP until RESET.
        if ((this.featureControl & FEATURE_CONTROL_LOCK) !== 0) return false;
        if (hi !== 0 || (lo & ~this.featureControlWritable(cpu)) !== 0) return false;
        this.featureControl = lo;
        return true;
      }
      case Msr.IA32_TSC_ADJUST: {
        if (!hasFeature(cpu, 'tsc_adjust')) return false;
        // SDM vol. 3B, 18.17.3: adding X to IA32_TSC_ADJUST adds X to the TSC.
        const v = toNumber(lo, hi);
        cpu.tscOffset += v - this.tscAdjust;
        this.tscAdjust = v;
        return true;
      }
      case Msr.IA32_SPEC_CTRL: {
        const mask = this.specCtrlMask(cpu);
        if (mask === 0 || hi !== 0 || (lo & ~mask) !== 0) return false;
        this.specCtrl = lo; // speculation controls change nothing architectural
        return true;
      }
      // Write-only commands (IBPB, L1D flush): nothing to do in a model without
      // predictors or caches; reads of them raise #GP (the default case).
      case Msr.IA32_PRED_CMD:
        return hasFeature(cpu, 'spec_ctrl') && hi === 0 && (lo & ~1) === 0;
      case Msr.IA32_FLUSH_CMD:
        return hasFeature(cpu, 'flush_l1d') && hi === 0 && (lo & ~1) === 0;
      case Msr.IA32_BIOS_SIGN_ID:
        // Software writes 0 here, then runs CPUID leaf 1 to load the revision (SDM vol. 3A, 10.11.7.1).
        if (lo !== 0) return false;
        this.biosSignHi = hi;
        return true;
      case Msr.IA32_SYSENTER_CS:
        if (!hasFeature(cpu, 'sep')) return false;
        this.sysenterCsLo = lo; this.sysenterCsHi = hi;
        return true;
      case Msr.IA32_SYSENTER_ESP: case Msr.IA32_SYSENTER_EIP:
        // SDM vol. 2, WRMSR: a non-canonical address in these MSRs raises #GP(0).
        if (!hasFeature(cpu, 'sep') || !this.canonical(cpu, hi)) return false;
        if (index === Msr.IA32_SYSENTER_ESP) { this.sysenterEspLo = lo; this.sysenterEspHi = hi; }
        else { this.sysenterEipLo = lo; this.sysenterEipHi = hi; }
        return true;
      case Msr.IA32_MCG_STATUS:
        // RIPV, EIPV, MCIP (SDM vol. 3B, 16.3.1.2); LMCE_S needs MCG_CAP.MCG_LMCE_P = 1.
        if (hi !== 0 || (lo & ~7) !== 0) return false;
        this.mcgStatus = lo;
        return true;
      case Msr.IA32_MISC_ENABLE: {
        const writableHi = hasFeature(cpu, 'nx') ? MISC_HI_XD_DISABLE : 0;
        const monitor = hasFeature(cpu, 'monitor') ? MISC_ENABLE_MONITOR : 0;
        if ((lo & ~(MISC_FAST_STRINGS | MISC_LIMIT_CPUID | MISC_READ_ONLY | monitor)) !== 0 || (hi & ~writableHi) !== 0) return false;
        this.miscEnableLo = (lo & ~MISC_READ_ONLY) | MISC_READ_ONLY;
        this.miscEnableHi = hi;
        return true;
      }
      case Msr.IA32_XSS:
        // Every bit is reserved: no supervisor state component is supported (SDM vol. 4, DA0H; vol. 1, 13.3).
        return hasFeature(cpu, 'xsaves') && (lo | hi) === 0;
      case Msr.IA32_DEBUGCTL:
        // LBR (0), BTF (1), FREEZE_LBRS_ON_PMI (11), FREEZE_PERFMON_ON_PMI (12). TR/BTS
        // need the DS area, which CPUID does not announce; the rest is reserved.
        if (hi !== 0 || (lo & ~0x1803) !== 0) return false;
        this.debugCtl = lo;
        return true;
      case Msr.IA32_PAT:
        // SDM vol. 3A, 13.12.2: a reserved type (2, 3, 8-255) in any field raises #GP(0).
        if (!hasFeature(cpu, 'pat') || !validTypes(lo, hi, true)) return false;
        this.patLo = lo; this.patHi = hi;
        return true;
      case Msr.IA32_MTRR_DEF_TYPE:
        // SDM vol. 3A, 13.11.2.1: type in 7:0, FE (10), E (11); the rest reserved.
        if (!hasFeature(cpu, 'mtrr') || hi !== 0 || (lo & ~0xcff) !== 0 || !validType(lo & 0xff, false)) return false;
        this.mtrrDefType = lo;
        return true;
      case Msr.IA32_FIXED_CTR_CTRL: {
        const pm = p.perfMon;
        // Per counter: enable (2 bits) and PMI; AnyThread (bit 2) needs version 3.
        if (pm === null || hi !== 0) return false;
        const mask = (2 ** (4 * pm.fixedCounters) - 1) & (pm.version >= 3 ? 0xffffffff : 0xbbbbbbbb);
        if ((lo & ~mask) !== 0) return false;
        this.fixedCtrCtrl = lo;
        return true;
      }
      case Msr.IA32_PERF_GLOBAL_CTRL: {
        const pm = p.perfMon;
        if (pm === null || (lo & ~lowBits(pm.counters)) !== 0 || (hi & ~lowBits(pm.fixedCounters)) !== 0) return false;
        this.perfGlobalCtrlLo = lo; this.perfGlobalCtrlHi = hi;
        return true;
      }
      case Msr.IA32_PERF_GLOBAL_OVF_CTRL: {
        const pm = p.perfMon;
        // Clears overflow indications (none are ever set here); bits 62 and 63 clear OvfBuf and CondChgd.
        if (pm === null || (lo & ~lowBits(pm.counters)) !== 0 || (hi & ~(lowBits(pm.fixedCounters) | 0xc0000000)) !== 0) return false;
        this.perfGlobalOvfCtrlLo = lo; this.perfGlobalOvfCtrlHi = hi;
        return true;
      }
      case Msr.IA32_EFER: return this.writeEfer(cpu, lo, hi);
      case Msr.IA32_STAR:
        if (!hasFeature(cpu, 'lm')) return false;
        this.starLo = lo; this.starHi = hi;
        return true;
      case Msr.IA32_LSTAR: case Msr.IA32_KERNEL_GS_BASE:
        if (!hasFeature(cpu, 'lm') || !this.canonical(cpu, hi)) return false;
        if (index === Msr.IA32_LSTAR) { this.lstarLo = lo; this.lstarHi = hi; }
        else { this.kernelGsBaseLo = lo; this.kernelGsBaseHi = hi; }
        return true;
      case Msr.IA32_CSTAR:
        // Not used by Intel processors (SYSCALL from compatibility mode is #UD); any value is kept.
        if (!hasFeature(cpu, 'lm')) return false;
        this.cstarLo = lo; this.cstarHi = hi;
        return true;
      case Msr.IA32_FMASK:
        if (!hasFeature(cpu, 'lm') || hi !== 0) return false;
        this.fmask = lo;
        return true;
      case Msr.IA32_FS_BASE: case Msr.IA32_GS_BASE: {
        if (!hasFeature(cpu, 'lm') || !this.canonical(cpu, hi)) return false;
        const s = index === Msr.IA32_FS_BASE ? FS : GS;
        cpu.setSegmentBase(s, lo, hi);
        return true;
      }
      case Msr.IA32_TSC_AUX:
        // Bits 63:32 are reserved (SDM vol. 4, C0000103H).
        if (!(hasFeature(cpu, 'rdtscp') || hasFeature(cpu, 'rdpid')) || hi !== 0) return false;
        this.tscAux = lo;
        return true;
      default: {
        const k = this.mtrrIndex(cpu, index);
        if (k >= 0) return this.writeVariableMtrr(cpu, k, lo, hi);
        const f = this.fixedMtrrIndex(cpu, index);
        if (f >= 0) {
          if (!validTypes(lo, hi, false)) return false;
          this.mtrrFixed[2 * f] = lo; this.mtrrFixed[2 * f + 1] = hi;
          return true;
        }
        return this.writeCounter(cpu, index, lo, hi);
      }
    }
  }

  /** IA32_EFER (SDM vol. 3A, 2.2.1; vol. 2, WRMSR). */
  private writeEfer(cpu: Cpu, lo: number, hi: number): boolean {
    const efer = eferAfterWrite(cpu, lo, hi, cpu.efer, cpu.cr0);
    if (efer === null) return false;
    // WRMSR invalidates no TLB entry (SDM vol. 3A, 4.10.4): translations cached
    // under the old NXE may still be used, as on a processor.
    cpu.efer = efer;
    cpu.updateModes();
    return true;
  }

  /**
   * IA32_FEATURE_CONTROL bits that exist: the lock, and the VMX enables when
   * CPUID announces VMX (bit 1 also needs SMX). SDM vol. 4, 3AH: writing an
   * enable the processor does not support raises #GP.
   */
  private featureControlWritable(cpu: Cpu): number {
    const vmx = hasFeature(cpu, 'vmx');
    return FEATURE_CONTROL_LOCK | (vmx && hasFeature(cpu, 'smx') ? FEATURE_CONTROL_VMX_IN_SMX : 0) |
      (vmx ? FEATURE_CONTROL_VMX_OUTSIDE_SMX : 0);
  }

  /** IA32_SPEC_CTRL bits that exist: IBRS (0), STIBP (1), SSBD (2), each as CPUID leaf 7 announces it. */
  private specCtrlMask(cpu: Cpu): number {
    return (hasFeature(cpu, 'spec_ctrl') ? 1 : 0) | (hasFeature(cpu, 'intel_stibp') ? 2 : 0) |
      (hasFeature(cpu, 'ssbd') ? 4 : 0);
  }

  /** IA32_MTRRCAP: VCNT, FIX (fixed ranges), WC (SDM vol. 3A, 13.11.1); no SMRR. WC is therefore a valid MTRR type. */
  private mtrrCap(cpu: Cpu): number {
    return Math.min(cpu.profile.variableMtrrs, MAX_VARIABLE_MTRRS) | (1 << 8) | (1 << 10);
  }

  /** Index into mtrrVariable of a PHYSBASEn/PHYSMASKn MSR, or -1. */
  private mtrrIndex(cpu: Cpu, index: number): number {
    const n = index - Msr.IA32_MTRR_PHYSBASE0;
    if (n < 0 || n >= 2 * Math.min(cpu.profile.variableMtrrs, MAX_VARIABLE_MTRRS) || !hasFeature(cpu, 'mtrr')) return -1;
    return 2 * n;
  }

  /** Number (0-10) of a fixed-range MTRR, or -1. */
  private fixedMtrrIndex(cpu: Cpu, index: number): number {
    let f = -1;
    if (index === Msr.IA32_MTRR_FIX64K_00000) f = 0;
    else if (index === Msr.IA32_MTRR_FIX16K_80000) f = 1;
    else if (index === Msr.IA32_MTRR_FIX16K_A0000) f = 2;
    else if (index >= Msr.IA32_MTRR_FIX4K_C0000 && index <= Msr.IA32_MTRR_FIX4K_F8000) f = 3 + index - Msr.IA32_MTRR_FIX4K_C0000;
    return f >= 0 && hasFeature(cpu, 'mtrr') ? f : -1;
  }

  /**
   * IA32_MTRR_PHYSBASEn: type in 7:0, base in MAXPHYADDR-1:12. PHYSMASKn: valid
   * (11), mask in MAXPHYADDR-1:12. Everything else is reserved (SDM vol. 3A, 13.11.2.3).
   */
  private writeVariableMtrr(cpu: Cpu, k: number, lo: number, hi: number): boolean {
    const hiMask = lowBits(cpu.profile.physicalAddressBits - 32);
    const isMask = (k & 2) !== 0;
    if ((hi & ~hiMask) !== 0) return false;
    if (isMask ? (lo & 0x7ff) !== 0 : (lo & 0xf00) !== 0 || !validType(lo & 0xff, false)) return false;
    this.mtrrVariable[k] = lo; this.mtrrVariable[k + 1] = hi;
    return true;
  }

  /** The performance-monitoring counters and event selects (SDM vol. 3B, 20.2.1, 20.2.2, 20.2.6). */
  private writeCounter(cpu: Cpu, index: number, lo: number, hi: number): boolean {
    const pm = cpu.profile.perfMon;
    if (pm === null) return false;
    let n = index - Msr.IA32_PMC0;
    if (n >= 0 && n < pm.counters) {
      // A write through IA32_PMCx sets bits 31:0 and sign-extends bit 31 to the
      // counter's width; EDX is ignored (full-width writes need IA32_A_PMCx).
      this.pmc[2 * n] = lo;
      this.pmc[2 * n + 1] = (lo >> 31) & lowBits(pm.counterWidth - 32);
      return true;
    }
    n = index - Msr.IA32_PERFEVTSEL0;
    if (n >= 0 && n < pm.counters) {
      // Bits 63:32 are reserved; AnyThread (21) needs version 3.
      if (hi !== 0 || (pm.version < 3 && (lo & (1 << 21)) !== 0)) return false;
      this.perfEvtSel[2 * n] = lo; this.perfEvtSel[2 * n + 1] = 0;
      return true;
    }
    n = index - Msr.IA32_FIXED_CTR0;
    if (n >= 0 && n < pm.fixedCounters) {
      if ((hi & ~lowBits(pm.fixedWidth - 32)) !== 0) return false;
      this.fixedCtr[2 * n] = lo; this.fixedCtr[2 * n + 1] = hi;
      return true;
    }
    return false;
  }
}

/** A mask of the low n bits (0 <= n <= 32). */
function lowBits(n: number): number {
  return n >= 32 ? -1 : (1 << n) - 1;
}

/** EFER bits software may write: SCE and LME with Intel 64, NXE with NX unless XD is disabled (0: no IA32_EFER). */
export function eferWritable(cpu: Cpu): number {
  let w = 0;
  if (hasFeature(cpu, 'lm')) w |= EFER_SCE | EFER_LME;
  if (hasFeature(cpu, 'nx') && (cpu.msrs.miscEnableHi & MISC_HI_XD_DISABLE) === 0) w |= EFER_NXE;
  return w;
}

/**
 * IA32_EFER after WRMSR of (lo, hi) over `efer` with CR0 = `cr0`, or null for
 * #GP(0) (SDM vol. 2, WRMSR; vol. 3A, 2.2.1): a reserved bit or bits 63:32 set,
 * or LME changed while paging is on (10.8.5). LMA is read-only: the value
 * written for it is ignored (it follows CR0.PG and LME).
 */
export function eferAfterWrite(cpu: Cpu, lo: number, hi: number, efer: number, cr0: number): number | null {
  const writable = eferWritable(cpu);
  if (writable === 0 || hi !== 0 || (lo & ~(writable | EFER_LMA)) !== 0) return null;
  if (((lo ^ efer) & EFER_LME) !== 0 && (cr0 & CR0_PG) !== 0) return null;
  return (lo & ~EFER_LMA) | (efer & EFER_LMA);
}
