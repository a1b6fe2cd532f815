/**
 * CPUID (SDM vol. 2, CPUID, table 3-8 "Information Returned by CPUID
 * Instruction"): the leaves of the processor's profile, limited to what the
 * model implements.
 *
 * A feature is announced when the profile lists it, the features it depends
 * on are announced, the model does not lack it altogether, its probe
 * instruction decodes (it is in the opcode table) and the MSR it names has a
 * handler attached (another unit implements it). The result, and the CR4 bits
 * it makes available, are computed once per processor and again after a
 * handler is attached. Some bits follow the processor's state when CPUID executes:
 * OSXSAVE (CR4.OSXSAVE), APIC (IA32_APIC_BASE[11]), SYSCALL (64-bit mode only
 * on Intel), NX (IA32_MISC_ENABLE XD Bit Disable), MONITOR (IA32_MISC_ENABLE
 * ENABLE MONITOR FSM), HTT (more than one logical processor in the package);
 * HYPERVISOR is always 0.
 *
 * Leaves beyond the highest basic or extended leaf return the highest basic
 * leaf's data, as Intel processors do (SDM vol. 2, CPUID: "If a value entered
 * for CPUID.EAX is higher than the maximum input value for basic or extended
 * function ... the data for the highest basic information leaf is returned").
 * Leaves 15H and 16H (TSC/crystal ratio, frequencies) return 0, "not
 * enumerated": the model's time base is instructions, and what they last in
 * seconds is the platform's choice.
 */
import type { Cpu } from './cpu.js';
import { TOO_LONG, UNDEFINED } from './decoder.js';
import type { CpuFeature } from './profile.js';

/** Registers of a leaf. */
const EAX = 0, EBX = 1, ECX = 2, EDX = 3;
/** Feature words: the leaves that hold feature bits. */
const L1 = 0, L6 = 1, L7 = 2, LD1 = 3, E1 = 4, E7 = 5;
const WORDS = 6;

interface FeatureBit {
  readonly word: number;
  readonly reg: number;
  readonly bit: number;
  /** An instruction of the feature (64-bit code) that must be in the opcode table. */
  readonly probe?: readonly number[];
  /** An MSR of another unit that must have a handler attached. */
  readonly msr?: number;
  readonly requires?: CpuFeature;
  /**
   * The CR4 bits the feature makes available: without it they are reserved,
   * and MOV to CR4 setting one is #GP(0) (SDM vol. 2, CPUID, table 3-11 and the
   * leaf 07H entries, name each bit's feature; vol. 3A, 2.5).
   */
  readonly cr4?: number;
  /** Nothing in the model implements the feature: it is never announced, whatever a profile lists. */
  readonly absent?: true;
}

const f = (word: number, reg: number, bit: number, more: Omit<FeatureBit, 'word' | 'reg' | 'bit'> = {}): FeatureBit =>
  ({ word, reg, bit, ...more });

/**
 * CR4 bits (SDM vol. 3A, 2.5, figure 2-7), by position: this module sits below
 * the instruction modules that name them.
 */
const CR4_VME = 1 << 0, CR4_PVI = 1 << 1, CR4_TSD = 1 << 2, CR4_DE = 1 << 3, CR4_PSE = 1 << 4, CR4_PAE = 1 << 5;
const CR4_MCE = 1 << 6, CR4_PGE = 1 << 7, CR4_PCE = 1 << 8, CR4_OSFXSR = 1 << 9, CR4_OSXMMEXCPT = 1 << 10;
const CR4_UMIP = 1 << 11, CR4_LA57 = 1 << 12, CR4_VMXE = 1 << 13, CR4_SMXE = 1 << 14, CR4_FSGSBASE = 1 << 16;
const CR4_PCIDE = 1 << 17, CR4_OSXSAVE = 1 << 18, CR4_SMEP = 1 << 20, CR4_SMAP = 1 << 21;
/**
 * CR4 bits no CPUID feature flag names, which every processor of the model
 * has: PCE (RDPMC at any CPL) and OSXMMEXCPT (SIMD floating-point exceptions).
 */
const CR4_ALWAYS = CR4_PCE | CR4_OSXMMEXCPT;

/** Where each feature is announced (SDM vol. 2, CPUID, tables 3-10, 3-11 and the leaf 7, 0DH, 80000001H entries). */
export const FEATURES: Readonly<Record<CpuFeature, FeatureBit>> = {
  fpu: f(L1, EDX, 0, { probe: [0xdb, 0xe3] }), // FNINIT
  vme: f(L1, EDX, 1, { cr4: CR4_VME | CR4_PVI, absent: true }),
  de: f(L1, EDX, 2, { cr4: CR4_DE }),
  pse: f(L1, EDX, 3, { cr4: CR4_PSE }),
  tsc: f(L1, EDX, 4, { probe: [0x0f, 0x31], cr4: CR4_TSD }),
  msr: f(L1, EDX, 5, { probe: [0x0f, 0x32] }),
  pae: f(L1, EDX, 6, { cr4: CR4_PAE }),
  mce: f(L1, EDX, 7, { cr4: CR4_MCE, absent: true }), // no machine-check exception source
  cx8: f(L1, EDX, 8, { probe: [0x0f, 0xc7, 0x08] }),
  apic: f(L1, EDX, 9, { msr: 0x1b }),
  sep: f(L1, EDX, 11, { probe: [0x0f, 0x34] }),
  mtrr: f(L1, EDX, 12),
  pge: f(L1, EDX, 13, { cr4: CR4_PGE }),
  mca: f(L1, EDX, 14, { requires: 'mce', absent: true }), // no machine-check banks
  cmov: f(L1, EDX, 15, { probe: [0x0f, 0x40, 0xc0] }),
  pat: f(L1, EDX, 16),
  pse36: f(L1, EDX, 17),
  clflush: f(L1, EDX, 19, { probe: [0x0f, 0xae, 0x38] }),
  mmx: f(L1, EDX, 23, { probe: [0x0f, 0x6f, 0xc0] }), // MOVQ mm, mm
  fxsr: f(L1, EDX, 24, { probe: [0x0f, 0xae, 0x00], cr4: CR4_OSFXSR }),
  sse: f(L1, EDX, 25, { probe: [0x0f, 0x28, 0xc0] }), // MOVAPS
  sse2: f(L1, EDX, 26, { probe: [0x66, 0x0f, 0x6f, 0xc0], requires: 'sse' }), // MOVDQA
  ss: f(L1, EDX, 27),
  pni: f(L1, ECX, 0, { probe: [0xf2, 0x0f, 0x12, 0xc0] }), // MOVDDUP
  pclmulqdq: f(L1, ECX, 1, { probe: [0x66, 0x0f, 0x3a, 0x44, 0xc0, 0x00] }),
  monitor: f(L1, ECX, 3, { probe: [0x0f, 0x01, 0xc8] }),
  vmx: f(L1, ECX, 5, { msr: 0x480, cr4: CR4_VMXE }), // IA32_VMX_BASIC: a VMX unit is attached
  smx: f(L1, ECX, 6, { probe: [0x0f, 0x37], cr4: CR4_SMXE }), // GETSEC
  est: f(L1, ECX, 7, { msr: 0x199 }), // IA32_PERF_CTL
  ssse3: f(L1, ECX, 9, { probe: [0x66, 0x0f, 0x38, 0x00, 0xc0] }), // PSHUFB
  fma: f(L1, ECX, 12, { probe: [0xc4, 0xe2, 0xf9, 0x98, 0xc0] }), // VFMADD132PD
  cx16: f(L1, ECX, 13, { probe: [0x48, 0x0f, 0xc7, 0x08] }),
  pdcm: f(L1, ECX, 15, { msr: 0x345 }), // IA32_PERF_CAPABILITIES
  pcid: f(L1, ECX, 17, { cr4: CR4_PCIDE }),
  sse4_1: f(L1, ECX, 19, { probe: [0x66, 0x0f, 0x38, 0x17, 0xc0] }), // PTEST
  sse4_2: f(L1, ECX, 20, { probe: [0xf2, 0x0f, 0x38, 0xf0, 0xc0] }), // CRC32
  x2apic: f(L1, ECX, 21, { msr: 0x802, requires: 'apic' }), // the x2APIC ID register
  movbe: f(L1, ECX, 22, { probe: [0x0f, 0x38, 0xf0, 0x00] }),
  popcnt: f(L1, ECX, 23, { probe: [0xf3, 0x0f, 0xb8, 0xc0] }),
  tsc_deadline_timer: f(L1, ECX, 24, { msr: 0x6e0, requires: 'apic' }),
  aes: f(L1, ECX, 25, { probe: [0x66, 0x0f, 0x38, 0xdc, 0xc0] }),
  xsave: f(L1, ECX, 26, { probe: [0x0f, 0xae, 0x20], cr4: CR4_OSXSAVE }),
  avx: f(L1, ECX, 28, { probe: [0xc5, 0xfc, 0x28, 0xc0], requires: 'xsave' }), // VMOVAPS ymm
  f16c: f(L1, ECX, 29, { probe: [0xc4, 0xe2, 0x79, 0x13, 0xc0] }),
  rdrand: f(L1, ECX, 30, { probe: [0x0f, 0xc7, 0xf0] }),
  arat: f(L6, EAX, 2),
  fsgsbase: f(L7, EBX, 0, { probe: [0xf3, 0x0f, 0xae, 0xc0], cr4: CR4_FSGSBASE }), // RDFSBASE
  tsc_adjust: f(L7, EBX, 1),
  bmi1: f(L7, EBX, 3, { probe: [0xc4, 0xe2, 0x78, 0xf2, 0xc0] }), // ANDN
  avx2: f(L7, EBX, 5, { probe: [0xc5, 0xfd, 0xfe, 0xc0], requires: 'avx' }), // VPADDD ymm
  fdp_excptn_only: f(L7, EBX, 6),
  smep: f(L7, EBX, 7, { cr4: CR4_SMEP }),
  bmi2: f(L7, EBX, 8, { probe: [0xc4, 0xe2, 0x78, 0xf5, 0xc0] }), // BZHI
  erms: f(L7, EBX, 9, { probe: [0xf3, 0xa4] }),
  invpcid: f(L7, EBX, 10, { probe: [0x66, 0x0f, 0x38, 0x82, 0x00] }),
  zero_fcs_fds: f(L7, EBX, 13),
  rdseed: f(L7, EBX, 18, { probe: [0x0f, 0xc7, 0xf8] }),
  adx: f(L7, EBX, 19, { probe: [0x66, 0x0f, 0x38, 0xf6, 0xc0] }),
  smap: f(L7, EBX, 20, { probe: [0x0f, 0x01, 0xcb], cr4: CR4_SMAP }), // STAC
  clflushopt: f(L7, EBX, 23, { probe: [0x66, 0x0f, 0xae, 0x38] }),
  umip: f(L7, ECX, 2, { cr4: CR4_UMIP, absent: true }), // SGDT, SIDT, SLDT, SMSW, STR run at any CPL
  la57: f(L7, ECX, 16, { cr4: CR4_LA57 }),
  rdpid: f(L7, ECX, 22, { probe: [0xf3, 0x0f, 0xc7, 0xf8] }),
  md_clear: f(L7, EDX, 10),
  spec_ctrl: f(L7, EDX, 26),
  intel_stibp: f(L7, EDX, 27),
  flush_l1d: f(L7, EDX, 28),
  arch_capabilities: f(L7, EDX, 29),
  ssbd: f(L7, EDX, 31),
  xsaveopt: f(LD1, EAX, 0, { probe: [0x0f, 0xae, 0x30], requires: 'xsave' }),
  xsavec: f(LD1, EAX, 1, { probe: [0x0f, 0xc7, 0x20], requires: 'xsave' }),
  xgetbv1: f(LD1, EAX, 2, { probe: [0x0f, 0x01, 0xd0], requires: 'xsave' }),
  xsaves: f(LD1, EAX, 3, { probe: [0x0f, 0xc7, 0x28], requires: 'xsave' }),
  lahf_lm: f(E1, ECX, 0, { probe: [0x9f] }),
  abm: f(E1, ECX, 5, { probe: [0xf3, 0x0f, 0xbd, 0xc0] }), // LZCNT
  '3dnowprefetch': f(E1, ECX, 8, { probe: [0x0f, 0x0d, 0x08] }), // PREFETCHW
  syscall: f(E1, EDX, 11, { probe: [0x0f, 0x05] }),
  nx: f(E1, EDX, 20),
  pdpe1gb: f(E1, EDX, 26),
  rdtscp: f(E1, EDX, 27, { probe: [0x0f, 0x01, 0xf9] }),
  lm: f(E1, EDX, 29),
  invariant_tsc: f(E7, EDX, 8),
};

/** True when the opcode table decodes `bytes` as one instruction of exactly that length. */
function decodes(cpu: Cpu, bytes: readonly number[]): boolean {
  const insn = cpu.blocks.decoder.decode({ byte: (k) => bytes[k] ?? 0x90 }, 8);
  return insn.def !== UNDEFINED && insn.def !== TOO_LONG && insn.len === bytes.length;
}

interface Announced {
  readonly version: number;
  readonly words: Int32Array;
  /** The CR4 bits that are not reserved: those of the announced features, and CR4_ALWAYS. */
  readonly cr4Supported: number;
}
const announcedByCpu = new WeakMap<Cpu, Announced>();

function computeAnnounced(cpu: Cpu): Announced {
  const listed = new Set(cpu.profile.features);
  const ok = new Map<CpuFeature, boolean>();
  const available = (name: CpuFeature): boolean => {
    let v = ok.get(name);
    if (v !== undefined) return v;
    const b = FEATURES[name];
    v = listed.has(name) && b.absent !== true && (b.requires === undefined || available(b.requires)) &&
      (b.probe === undefined || decodes(cpu, b.probe)) &&
      (b.msr === undefined || cpu.msrs.handlerOf(b.msr) !== undefined);
    ok.set(name, v);
    return v;
  };
  const words = new Int32Array(4 * WORDS);
  let cr4Supported = CR4_ALWAYS;
  for (const name of listed) {
    const b = FEATURES[name];
    if (!available(name)) continue;
    words[4 * b.word + b.reg] |= 1 << b.bit;
    cr4Supported |= b.cr4 ?? 0;
  }
  return { version: cpu.msrs.handlerVersion, words, cr4Supported };
}

/** What `cpu` announces, recomputed when a unit has attached MSR handlers since. */
function announcedOf(cpu: Cpu): Announced {
  let a = announcedByCpu.get(cpu);
  if (a === undefined || a.version !== cpu.msrs.handlerVersion) {
    a = computeAnnounced(cpu);
    announcedByCpu.set(cpu, a);
  }
  return a;
}

/** The statically announced feature words of `cpu` (4 registers per word). */
function announced(cpu: Cpu): Int32Array {
  return announcedOf(cpu).words;
}

/**
 * The CR4 bits `cpu` supports: a bit whose feature CPUID does not announce is
 * reserved, and MOV to CR4 setting it is #GP(0) (SDM vol. 2, MOV CR; vol. 3A,
 * 2.5). IA32_VMX_CR4_FIXED1 reports the same bits (SDM vol. 3D, A.8).
 */
export function cr4Supported(cpu: Cpu): number {
  return announcedOf(cpu).cr4Supported;
}

/**
 * True when CPUID announces `feature` on this processor (its static part:
 * the bits that follow CR4, IA32_APIC_BASE or the mode are not consulted).
 */
export function hasFeature(cpu: Cpu, feature: CpuFeature): boolean {
  const b = FEATURES[feature];
  return ((announced(cpu)[4 * b.word + b.reg]! >>> b.bit) & 1) === 1;
}

/** Supported XCR0 bits (CPUID.(EAX=0DH,ECX=0):EAX): x87 and SSE. */
export const XCR0_SUPPORTED = 3;
/**
 * Bytes of an XSAVE area holding x87 and SSE state: the legacy region and the
 * header (SDM vol. 1, 13.4). The compacted format has the same size: components
 * 0 and 1 always sit in the legacy region (13.4.3), and no component from 2 up
 * is supported (leaf 0DH reports none), so there are no compacted offsets to compute.
 */
export const XSAVE_AREA_SIZE = 576;
/** Smallest and largest monitor-line size of MONITOR/MWAIT (CPUID.05H:EAX, EBX): one cache line. */
export const MONITOR_LINE_SIZE = 64;

/** CPUID.01H:ECX.XSAVE, CPUID.01H:ECX.MONITOR and CPUID.01H:EDX.APIC. */
const FEATURE_BIT_XSAVE = 1 << 26, FEATURE_BIT_MONITOR = 1 << 3, FEATURE_BIT_APIC = 1 << 9;
const MISC_LIMIT_CPUID = 1 << 22, MISC_ENABLE_MONITOR = 1 << 18, MISC_HI_XD_DISABLE = 1 << 2;
const APIC_BASE_EN = 1 << 11;

/** Smallest power of two >= n (n >= 1). */
function pow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** Four characters of `s` from `at` as a little-endian dword (NUL past the end). */
function dword(s: string, at: number): number {
  let v = 0;
  for (let k = 3; k >= 0; k--) v = (v << 8) | (at + k < s.length ? s.charCodeAt(at + k) & 0xff : 0);
  return v;
}

/** Associativity code of CPUID.80000006H:ECX[15:12] (SDM vol. 2, CPUID, leaf 80000006H). */
function l2AssociativityCode(ways: number): number {
  switch (ways) {
    case 1: return 1;
    case 2: return 2;
    case 4: return 4;
    case 8: return 6;
    case 16: return 8;
    case 32: return 0xa;
    default: return 7; // "see CPUID leaf 04H, sub-leaf 2"
  }
}

/**
 * The mode state some leaves reflect (CR4.OSXSAVE, 64-bit mode): the
 * processor's own, or a guest's as a hypervisor emulating CPUID sees it.
 */
export interface CpuidState { readonly cr4: number; readonly mode64: boolean }

/**
 * Writes what CPUID returns for EAX = leaf, ECX = subleaf into out[0..3]
 * (EAX, EBX, ECX, EDX). Has no side effects; the CPUID instruction itself also
 * loads IA32_BIOS_SIGN_ID for leaf 1.
 */
export function cpuid(
  cpu: Cpu, leaf: number, subleaf: number, out: Int32Array, state: CpuidState = cpu,
): void {
  const p = cpu.profile, m = cpu.msrs;
  leaf >>>= 0; subleaf >>>= 0;
  out[0] = 0; out[1] = 0; out[2] = 0; out[3] = 0;
  // IA32_MISC_ENABLE[22] limits CPUID.00H:EAX to 2 (SDM vol. 4, 1A0H).
  const maxBasic = (m.miscEnableLo & MISC_LIMIT_CPUID) !== 0 && p.maxBasicLeaf > 2 ? 2 : p.maxBasicLeaf;
  if (leaf >= 0x80000000 ? leaf > p.maxExtendedLeaf : leaf > maxBasic) leaf = maxBasic;
  const w = announced(cpu);
  switch (leaf) {
    case 0:
      out[EAX] = maxBasic;
      out[EBX] = dword(p.vendor, 0); out[EDX] = dword(p.vendor, 4); out[ECX] = dword(p.vendor, 8);
      return;
    case 1: {
      const n = m.packageCpus;
      out[EAX] = p.signature;
      // Brand index 0, CLFLUSH line size in 8-byte units, addressable logical processor IDs, initial APIC ID.
      out[EBX] = (8 << 8) | (Math.min(pow2(n), 0xff) << 16) | ((m.apicId & 0xff) << 24);
      let ecx = w[4 * L1 + ECX]!, edx = w[4 * L1 + EDX]!;
      if ((ecx & FEATURE_BIT_XSAVE) !== 0 && (state.cr4 & CR4_OSXSAVE) !== 0) ecx |= 1 << 27;
      // IA32_MISC_ENABLE[18] = 0 (ENABLE MONITOR FSM) hides MONITOR/MWAIT (SDM vol. 4, 1A0H).
      if ((m.miscEnableLo & MISC_ENABLE_MONITOR) === 0) ecx &= ~FEATURE_BIT_MONITOR;
      if ((edx & FEATURE_BIT_APIC) !== 0) {
        // CPUID.01H:EDX.APIC reads 0 while IA32_APIC_BASE[11] (global enable) is 0.
        const h = m.handlerOf(0x1b)!;
        if (!h.rdmsr(0x1b) || (h.msrLo & APIC_BASE_EN) === 0) edx &= ~FEATURE_BIT_APIC;
      }
      if (n > 1) edx |= 1 << 28; // HTT
      out[ECX] = ecx; out[EDX] = edx;
      return;
    }
    case 2:
      // One iteration; descriptor FFH: "use CPUID leaf 04H for cache parameters".
      out[EAX] = 0x0000ff01;
      return;
    case 4: {
      const c = p.caches[subleaf];
      if (c === undefined) return; // type 0: no more caches
      const ids = pow2(m.packageCpus);
      out[EAX] = c.type | (c.level << 5) | (1 << 8) | (((c.shared ? ids : 1) - 1) << 14) | ((Math.min(ids, 64) - 1) << 26);
      out[EBX] = (c.lineSize - 1) | ((c.ways - 1) << 22);
      out[ECX] = c.sets - 1;
      out[EDX] = (c.inclusive ? 2 : 0) | (c.complexIndexing ? 4 : 0);
      return;
    }
    case 5:
      // MONITOR/MWAIT (SDM vol. 2, CPUID leaf 05H): monitor lines of 64 bytes; MWAIT extensions
      // enumerated (ECX[0]) and interrupts as break events even with IF = 0 (ECX[1]). EDX reports no
      // C-state sub-states: MWAIT waits for nothing here (ops/system.ts), and with none enumerated
      // Linux keeps using HLT to idle, which the model does cheaply.
      if ((w[4 * L1 + ECX]! & FEATURE_BIT_MONITOR) === 0) return;
      out[EAX] = MONITOR_LINE_SIZE; out[EBX] = MONITOR_LINE_SIZE; out[ECX] = 3;
      return;
    case 6:
      out[EAX] = w[4 * L6 + EAX]!;
      return;
    case 7:
      if (subleaf === 0) { out[EBX] = w[4 * L7 + EBX]!; out[ECX] = w[4 * L7 + ECX]!; out[EDX] = w[4 * L7 + EDX]!; }
      return;
    case 0xa: {
      const pm = p.perfMon;
      if (pm === null) return;
      out[EAX] = pm.version | (pm.counters << 8) | (pm.counterWidth << 16) | (7 << 24);
      out[EBX] = 0; // all seven architectural events available
      out[EDX] = pm.fixedCounters | (pm.fixedWidth << 5);
      return;
    }
    case 0xb: case 0x1f: {
      // One thread per core; every logical processor of the package is a core.
      out[EDX] = m.apicId;
      if (subleaf === 0) { out[EAX] = 0; out[EBX] = 1; out[ECX] = (1 << 8) | 0; }
      else if (subleaf === 1) {
        out[EAX] = Math.log2(pow2(m.packageCpus)); out[EBX] = m.packageCpus; out[ECX] = (2 << 8) | 1;
      } else out[ECX] = subleaf & 0xff;
      return;
    }
    case 0xd:
      if ((w[4 * L1 + ECX]! & FEATURE_BIT_XSAVE) === 0) return;
      if (subleaf === 0) {
        out[EAX] = XCR0_SUPPORTED;
        out[EBX] = XSAVE_AREA_SIZE; // for the components XCR0 enables: all are in the legacy region
        out[ECX] = XSAVE_AREA_SIZE;
      } else if (subleaf === 1) {
        // XSAVEOPT, XSAVEC, XGETBV with ECX = 1, XSAVES/IA32_XSS; EBX: the compacted size for
        // XCR0 | IA32_XSS; ECX/EDX: the IA32_XSS bits supported, none (no supervisor state).
        out[EAX] = w[4 * LD1 + EAX]!;
        out[EBX] = XSAVE_AREA_SIZE;
      }
      return;
    case 0x80000000:
      out[EAX] = p.maxExtendedLeaf;
      return;
    case 0x80000001: {
      let edx = w[4 * E1 + EDX]!;
      // Intel reports SYSCALL only to 64-bit code (SDM vol. 2, CPUID: "available in 64-bit mode").
      if (!state.mode64) edx &= ~(1 << 11);
      if ((m.miscEnableHi & MISC_HI_XD_DISABLE) !== 0) edx &= ~(1 << 20);
      out[ECX] = w[4 * E1 + ECX]!;
      out[EDX] = edx;
      return;
    }
    case 0x80000002: case 0x80000003: case 0x80000004: {
      const at = 16 * (leaf - 0x80000002);
      for (let r = 0; r < 4; r++) out[r] = dword(p.brand, at + 4 * r);
      return;
    }
    case 0x80000006:
      // L2: line size, associativity code, size in KiB.
      for (let k = 0; k < p.caches.length; k++) {
        const c = p.caches[k]!;
        if (c.level === 2) out[ECX] = c.lineSize | (l2AssociativityCode(c.ways) << 12) | ((c.ways * c.sets * c.lineSize / 1024) << 16);
      }
      return;
    case 0x80000007:
      out[EDX] = w[4 * E7 + EDX]!;
      return;
    case 0x80000008:
      out[EAX] = p.physicalAddressBits | (p.linearAddressBits << 8);
      return;
    default:
      return; // reserved or not announced: zeros
  }
}
