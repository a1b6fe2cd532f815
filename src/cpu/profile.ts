/**
 * CPU profiles: what a named processor reports (CPUID leaves, capability MSRs)
 * and the behaviour the SDM leaves to the implementation.
 */
export interface CpuProfile {
  /** Lower-case microarchitecture name, e.g. 'skylake'. */
  readonly name: string;
}

export const SKYLAKE: CpuProfile = { name: 'skylake' };
