/**
 * CPU profiles: what a named processor reports (CPUID leaves, capability MSRs)
 * and the behaviour the SDM leaves to the implementation.
 *
 * A profile lists the features the real part has *and* the model may offer.
 * CPUID announces a listed feature only when the model also implements it:
 * features that are instructions are checked against the opcode table, and
 * features that are MSRs of another unit against the handlers registered in
 * the MSR file (cpuid.ts, FEATURES). So a profile never makes CPUID announce
 * what the model lacks; a feature missing from the list is never announced.
 */

/**
 * Feature names, spelled as Linux's /proc/cpuinfo spells them where it has a
 * name. The CPUID leaf, register and bit of each are in cpuid.ts (FEATURES).
 */
export type CpuFeature =
  // CPUID.01H:EDX
  | 'fpu' | 'vme' | 'de' | 'pse' | 'tsc' | 'msr' | 'pae' | 'mce' | 'cx8' | 'apic' | 'sep' | 'mtrr'
  | 'pge' | 'mca' | 'cmov' | 'pat' | 'pse36' | 'clflush' | 'mmx' | 'fxsr' | 'sse' | 'sse2' | 'ss'
  // CPUID.01H:ECX
  | 'pni' | 'pclmulqdq' | 'monitor' | 'vmx' | 'smx' | 'est' | 'ssse3' | 'fma' | 'cx16' | 'pdcm'
  | 'pcid' | 'sse4_1' | 'sse4_2' | 'x2apic' | 'movbe' | 'popcnt' | 'tsc_deadline_timer' | 'aes'
  | 'xsave' | 'avx' | 'f16c' | 'rdrand'
  // CPUID.06H:EAX
  | 'arat'
  // CPUID.(EAX=07H,ECX=0):EBX, ECX, EDX
  | 'fsgsbase' | 'tsc_adjust' | 'bmi1' | 'avx2' | 'fdp_excptn_only' | 'smep' | 'bmi2' | 'erms'
  | 'invpcid' | 'zero_fcs_fds' | 'rdseed' | 'adx' | 'smap' | 'clflushopt' | 'umip' | 'la57' | 'rdpid'
  | 'md_clear' | 'spec_ctrl' | 'intel_stibp' | 'flush_l1d' | 'arch_capabilities' | 'ssbd'
  // CPUID.(EAX=0DH,ECX=1):EAX
  | 'xsaveopt' | 'xsavec' | 'xgetbv1' | 'xsaves'
  // CPUID.80000001H:ECX, EDX
  | 'lahf_lm' | 'abm' | '3dnowprefetch' | 'syscall' | 'nx' | 'pdpe1gb' | 'rdtscp' | 'lm'
  // CPUID.80000007H:EDX
  | 'invariant_tsc';

/** One cache level as CPUID leaf 4 describes it (SDM vol. 2, CPUID, leaf 04H). */
export interface CacheLevel {
  readonly level: number;
  /** 1 data, 2 instruction, 3 unified. */
  readonly type: 1 | 2 | 3;
  readonly ways: number;
  readonly sets: number;
  readonly lineSize: number;
  /** Shared by every logical processor of the package (otherwise private to one). */
  readonly shared: boolean;
  /** Inclusive of the lower levels (EDX[1]); complex indexing (EDX[2]). */
  readonly inclusive: boolean;
  readonly complexIndexing: boolean;
}

/** Architectural performance monitoring (SDM vol. 3B, 20.2; CPUID leaf 0AH). */
export interface PerfMon {
  readonly version: number;
  /** General-purpose counters per logical processor and their width in bits. */
  readonly counters: number;
  readonly counterWidth: number;
  readonly fixedCounters: number;
  readonly fixedWidth: number;
}

export interface CpuProfile {
  /** Lower-case microarchitecture name, e.g. 'skylake'. */
  readonly name: string;
  /** 12-character vendor string of CPUID leaf 0. */
  readonly vendor: string;
  /** Brand string of CPUID leaves 80000002H-80000004H (at most 47 characters). */
  readonly brand: string;
  /** CPUID.01H:EAX: stepping, model, family, type, extended model and family. */
  readonly signature: number;
  /** Highest basic and extended CPUID leaves. */
  readonly maxBasicLeaf: number;
  readonly maxExtendedLeaf: number;
  /** IA32_BIOS_SIGN_ID[63:32]: the microcode revision. */
  readonly microcode: number;
  /** IA32_PLATFORM_ID[52:50]. */
  readonly platformId: number;
  readonly features: readonly CpuFeature[];
  /**
   * MAXPHYADDR and the linear-address width (CPUID.80000008H:EAX). Paging
   * exports no constant for them yet; these are the values it uses (39/48).
   */
  readonly physicalAddressBits: number;
  readonly linearAddressBits: number;
  /** IA32_MTRRCAP.VCNT: variable-range MTRR pairs (at most 32 here). */
  readonly variableMtrrs: number;
  readonly perfMon: PerfMon | null;
  readonly caches: readonly CacheLevel[];
  /** IA32_ARCH_CAPABILITIES value (lo, hi) when the 'arch_capabilities' feature is listed. */
  readonly archCapabilities: readonly [number, number];
}

/**
 * Intel Core i7-6700 (Skylake client, family 6 model 5EH stepping 3) with its
 * last microcode (F0H), as far as the model offers it. Left out because the
 * model lacks them (add a name once its unit implements all of it): VME (no
 * virtual-8086 mode extensions), MMX, SSE3 and later vector extensions, AVX,
 * AES, PCLMULQDQ, ADX, CLFLUSHOPT, EIST and thermal monitoring, MCE/MCA (no
 * machine-check banks), SMX, MD_CLEAR (VERW), DS/PEBS/PDCM. The part has no
 * LA57, UMIP or RDPID (later microarchitectures), so neither does the profile.
 * RDRAND/RDSEED draw from a seeded deterministic generator (ops/random.ts);
 * MWAIT returns at once (ops/system.ts); XSAVES/XRSTORS manage no supervisor
 * state (IA32_XSS = 0). VMX, the APIC and x2APIC are announced once their
 * units attach their MSRs (cpuid.ts).
 */
export const SKYLAKE: CpuProfile = {
  name: 'skylake',
  vendor: 'GenuineIntel',
  brand: 'hvsim Skylake model',
  signature: 0x000506e3,
  maxBasicLeaf: 0x16,
  maxExtendedLeaf: 0x80000008,
  microcode: 0xf0,
  platformId: 1,
  features: [
    'fpu', 'de', 'pse', 'tsc', 'msr', 'pae', 'cx8', 'apic', 'sep', 'mtrr', 'pge', 'cmov', 'pat', 'pse36',
    'clflush', 'fxsr', 'sse', 'sse2', 'ss',
    'monitor', 'vmx', 'cx16', 'pcid', 'x2apic', 'movbe', 'popcnt', 'tsc_deadline_timer', 'xsave', 'rdrand',
    'arat',
    'fsgsbase', 'tsc_adjust', 'bmi1', 'fdp_excptn_only', 'smep', 'bmi2', 'erms', 'invpcid', 'zero_fcs_fds', 'rdseed',
    'smap',
    'spec_ctrl', 'intel_stibp', 'flush_l1d', 'ssbd',
    'xsaveopt', 'xsavec', 'xgetbv1', 'xsaves',
    'lahf_lm', 'abm', '3dnowprefetch', 'syscall', 'nx', 'pdpe1gb', 'rdtscp', 'lm',
    'invariant_tsc',
  ],
  physicalAddressBits: 39,
  linearAddressBits: 48,
  variableMtrrs: 10,
  // Skylake reports version 4; the model offers version 2 (no AnyThread, no
  // IA32_PERF_GLOBAL_STATUS_SET/INUSE), which version-4 software also accepts.
  perfMon: { version: 2, counters: 4, counterWidth: 48, fixedCounters: 3, fixedWidth: 48 },
  caches: [
    { level: 1, type: 1, ways: 8, sets: 64, lineSize: 64, shared: false, inclusive: false, complexIndexing: false },
    { level: 1, type: 2, ways: 8, sets: 64, lineSize: 64, shared: false, inclusive: false, complexIndexing: false },
    { level: 2, type: 3, ways: 4, sets: 1024, lineSize: 64, shared: false, inclusive: false, complexIndexing: false },
    { level: 3, type: 3, ways: 16, sets: 8192, lineSize: 64, shared: true, inclusive: true, complexIndexing: true },
  ],
  archCapabilities: [0, 0],
};

/** The profiles by name (`--profile NAME`). */
export const PROFILES: Readonly<Record<string, CpuProfile>> = { skylake: SKYLAKE };
