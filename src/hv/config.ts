/**
 * A VM's configuration: one immutable value (frozen with immer) saying what the
 * guest gets (memory, CPU profile) and which VMX controls the hypervisor uses.
 * `vmConfig` fills in the defaults; derive variants with immer's `produce`.
 * vmcs-setup.ts turns a configuration into VMCS controls, and createVm
 * reports a configuration the processor refuses by the VM-entry check that
 * fails, with its SDM section.
 */
import { freeze, produce } from 'immer';

/** Exits the hypervisor asks for (SDM vol. 3C, 25.6). Each has a default handler (handlers.ts). */
export interface ExitConfig {
  /** HLT exiting: the handler moves guest time to the next device event. Off: the guest halts in non-root operation. */
  readonly hlt: boolean;
  readonly invlpg: boolean;
  readonly rdtsc: boolean;
  readonly mwait: boolean;
  readonly monitor: boolean;
  readonly pause: boolean;
  readonly wbinvd: boolean;
  readonly cr3Load: boolean;
  readonly cr3Store: boolean;
  readonly cr8Load: boolean;
  readonly cr8Store: boolean;
  readonly movDr: boolean;
  readonly rdrand: boolean;
  readonly rdseed: boolean;
  /** 'unconditional': every IN/OUT exits; 'bitmap': the I/O bitmaps decide, every port exiting but `ioPassthrough`. */
  readonly io: 'unconditional' | 'bitmap';
  /** Ports the guest reaches without an exit (with io = 'bitmap'): the devices behind them see the guest directly. */
  readonly ioPassthrough: readonly number[];
  /** MSR bitmaps: only the MSRs the hypervisor emulates (and `msrIntercepts`) exit. Off: every RDMSR/WRMSR exits. */
  readonly msrBitmaps: boolean;
  readonly msrIntercepts: readonly number[];
  /** Exceptions that exit (bit n: vector n); the default handler reflects them into the guest. */
  readonly exceptionBitmap: number;
  readonly pageFaultErrorCodeMask: number;
  readonly pageFaultErrorCodeMatch: number;
  /** CR0 and CR4 bits the hypervisor owns besides those the guest cannot hold in VMX operation (25.6.6). */
  readonly cr0Mask: number;
  readonly cr4Mask: number;
  /** VMX-preemption timer value loaded at every entry (26.5.1), or null for none. */
  readonly preemptionTimer: number | null;
  /** Monitor trap flag: an exit after every guest instruction (26.5.2). */
  readonly monitorTrapFlag: boolean;
  /** "Acknowledge interrupt on exit" (25.7.1): the host's interrupt vector is in the exit's interruption information. */
  readonly acknowledgeInterruptOnExit: boolean;
}

export interface VmConfig {
  /** Bytes of guest RAM (a multiple of 4 KiB). */
  readonly memory: number;
  /** The CPU profile the guest sees (src/cpu/profile.ts PROFILES). */
  readonly profile: string;
  /**
   * EPT (29.3): guest-physical memory through nested paging; the local APIC and I/O APIC pages left out (MMIO).
   * Off: the hypervisor shadows the guest's page tables (src/hv/shadow), which needs `unrestrictedGuest: false`
   * (27.2.1.1) and a guest that starts in protected mode.
   */
  readonly ept: boolean;
  /** VPID (29.1): the guest's TLB entries survive VM exits. */
  readonly vpid: boolean;
  /** Unrestricted guest (25.6.2): real mode and unpaged protected mode in non-root operation; needs EPT. */
  readonly unrestrictedGuest: boolean;
  /** Without EPT: pages of the hypervisor's shadow page-table pool; null sizes it from `memory` (shadow/pool.ts). */
  readonly shadowPages: number | null;
  readonly exits: ExitConfig;
}

export const DEFAULT_EXITS: ExitConfig = freeze({
  hlt: true, invlpg: false, rdtsc: false, mwait: false, monitor: false, pause: false, wbinvd: false,
  cr3Load: false, cr3Store: false, cr8Load: false, cr8Store: false, movDr: false, rdrand: false, rdseed: false,
  io: 'bitmap', ioPassthrough: [], msrBitmaps: true, msrIntercepts: [],
  exceptionBitmap: 0, pageFaultErrorCodeMask: 0, pageFaultErrorCodeMatch: 0,
  cr0Mask: 0, cr4Mask: 0, preemptionTimer: null, monitorTrapFlag: false, acknowledgeInterruptOnExit: true,
}, true);

export const DEFAULT_CONFIG: VmConfig = freeze({
  memory: 64 * 1024 * 1024, profile: 'skylake', ept: true, vpid: true, unrestrictedGuest: true, shadowPages: null,
  exits: DEFAULT_EXITS,
}, true);

/** A configuration as a user writes it: any part may be left out. */
export type VmConfigInput = Partial<Omit<VmConfig, 'exits'>> & { readonly exits?: Partial<ExitConfig> };

/** The defaults with `input` over them, frozen. */
export function vmConfig(input: VmConfigInput = {}): VmConfig {
  return produce(DEFAULT_CONFIG, (d) => {
    const { exits, ...rest } = input;
    Object.assign(d, rest);
    if (exits !== undefined) Object.assign(d.exits, exits);
  });
}
