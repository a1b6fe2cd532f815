/**
 * fast-check arbitraries for VMX: VMCS configurations that pass every VM-entry
 * check, configurations that break exactly one named check, guest states per
 * processor mode, and instruction streams that non-root operation may turn
 * into VM exits (I/O, MSR and control-register accesses).
 *
 * Every arbitrary yields a plain value (numbers, bigints, arrays, strings) so
 * that fast-check shrinks it and prints it readably; `applyVmcsConfig` and
 * `applyViolation` turn those values into VMCS fields and processor registers.
 *
 * @example
 * ```ts
 * import fc from 'fast-check';
 * import { validVmcsConfig, applyVmcsConfig, guestMode, runInGuest } from 'hvsim/fuzz';
 * fc.assert(fc.property(validVmcsConfig(SKYLAKE_VMX), (c) =>
 *   runInGuest([0x0f, 0xa2], (v, cpu) => applyVmcsConfig(c, v, cpu), { mode: guestMode(c) }).exited));
 * ```
 */
import fc from 'fast-check';
import { Field } from '../vmcs/fields.js';
import {
  InterruptionType, PinBasedControls as PIN, PrimaryProcessorBasedControls as PROC,
  SecondaryProcessorBasedControls as SEC, VmEntryControls as ENTRY, VmExitControls as EXIT,
} from '../vmcs/controls.js';
import { VmEntryFailureQualification } from '../vmcs/qualifications.js';
import type { Cpu } from '../src/cpu/cpu.js';
import { MAXPHYADDR } from '../src/cpu/paging.js';
import { EFER_LMA, EFER_LME } from '../src/cpu/regs.js';
import type { AllowedSettings, VmxCapabilities } from '../src/vmx/capabilities.js';
import type { EntryCheckFailure } from '../src/vmx/entry-checks.js';
import { GUEST_CODE, GUEST_STACK, SCRATCH_PAGES, type GuestMode } from '../src/vmx/testing.js';
import type { Vmcs } from '../src/vmx/vmcs.js';

const bit = (n: number): number => (1 << n) >>> 0;
const bits = (...ns: number[]): number => ns.reduce((m, n) => (m | bit(n)) >>> 0, 0);
const F = Field;

// ---- guest state ------------------------------------------------------------------

/**
 * The processor mode of a guest: 'long' (IA-32e mode, 64-bit code), 'protected'
 * (32-bit protected mode with 32-bit paging), 'protected-unpaged' (CR0.PG = 0:
 * enters only with "unrestricted guest", which SKYLAKE_VMX does not offer, so
 * there it fails the guest CR0 fixed-bits check of 27.3.1.1).
 */
export type GuestKind = 'long' | 'protected' | 'protected-unpaged';

/** Guest register state: what goes to the guest-state area, and the GPRs the processor holds at VM entry. */
export interface GuestState {
  readonly kind: GuestKind;
  readonly cr0: number;
  readonly cr4: number;
  readonly rflags: number;
  readonly rip: bigint;
  readonly rsp: bigint;
  /** RAX..R15 by register number (RSP's slot is ignored: RSP comes from the VMCS). */
  readonly gprs: readonly bigint[];
}

const CR0_PE = bit(0), CR0_ET = bit(4), CR0_NE = bit(5), CR0_PG = bit(31);
/** CR0 bits a guest may choose freely here: MP, EM, TS, WP, AM (SDM vol. 3A, 2.5). */
const CR0_FREE = bits(1, 2, 3, 16, 18);
const CR4_PAE = bit(5), CR4_VMXE = bit(13), CR4_PCIDE = bit(17);
/**
 * CR4 bits a guest may choose freely: TSD, DE, PSE, PGE, PCE, OSFXSR, OSXMMEXCPT.
 * Not SMEP/SMAP (the harness's pages are user pages), not LA57 (4-level tables).
 */
const CR4_FREE = bits(2, 3, 4, 7, 8, 9, 10);
/** RFLAGS bits chosen freely: CF, PF, AF, ZF, SF, IF, DF, OF, IOPL, NT, AC (not TF, RF, VM). */
const RFLAGS_FREE = bits(0, 2, 4, 6, 7, 9, 10, 11, 12, 13, 14, 18);
const RFLAGS_IF = bit(9);

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
/** A canonical 48-bit linear address (SDM vol. 1, 3.3.7.1). */
const canonical = fc.tuple(fc.boolean(), fc.bigInt({ min: 0n, max: (1n << 47n) - 1n }))
  .map(([high, a]) => (high ? a | 0xffff800000000000n : a));

export interface GuestStateOptions {
  /**
   * True (default): RIP in the harness's code page and RSP in its stack, so that
   * runInGuest can run the guest. False: any RIP and RSP the checks allow.
   */
  readonly runnable?: boolean;
}

/** A guest state of `kind` that passes the guest-state checks of 27.3.1 (but CR0.PG for 'protected-unpaged'). */
export function guestState(kind: GuestKind, o: GuestStateOptions = {}): fc.Arbitrary<GuestState> {
  const long = kind === 'long';
  const runnable = o.runnable ?? true;
  const rip = runnable ? fc.integer({ min: 0, max: 0xf00 }).map((k) => BigInt(GUEST_CODE + k))
    : long ? canonical : u32.map(BigInt);
  const rsp = runnable ? fc.integer({ min: 0, max: 0x100 }).map((k) => BigInt(GUEST_STACK - 16 * k)) : u64;
  return fc.record({
    cr0: u32.map((r) => (CR0_PE | CR0_ET | CR0_NE | (kind === 'protected-unpaged' ? 0 : CR0_PG) | (r & CR0_FREE)) >>> 0),
    // PCIDE exists only in IA-32e mode (27.3.1.1).
    cr4: u32.map((r) => (CR4_VMXE | (long ? CR4_PAE | (r & CR4_PCIDE) : 0) | (r & CR4_FREE)) >>> 0),
    rflags: u32.map((r) => (2 | (r & RFLAGS_FREE)) >>> 0),
    rip, rsp,
    gprs: fc.array(u64, { minLength: 16, maxLength: 16 }),
  }).map((s) => ({ kind, ...s }));
}

/** The harness mode (src/vmx/testing.ts) a guest kind runs in. */
export function modeOf(kind: GuestKind): GuestMode {
  return kind === 'long' ? 64 : 32;
}

// ---- valid configurations -----------------------------------------------------------

/** A VMCS configuration: control settings, the non-root decisions' fields, and a guest state. */
export interface VmcsConfig {
  readonly guest: GuestState;
  readonly pin: number;
  readonly proc: number;
  /** Used only with "activate secondary controls"; otherwise any value (the processor ignores it, 25.6.2). */
  readonly secondary: number;
  readonly exit: number;
  readonly entry: number;
  readonly exceptionBitmap: number;
  readonly pfecMask: number;
  readonly pfecMatch: number;
  readonly cr0Mask: number;
  readonly cr0Shadow: number;
  readonly cr4Mask: number;
  readonly cr4Shadow: number;
  /** Physical addresses of I/O bitmaps A and B and of the MSR bitmaps: distinct free pages. */
  readonly ioBitmapA: number;
  readonly ioBitmapB: number;
  readonly msrBitmaps: number;
  readonly tscOffset: bigint;
  /** CR3-target values; their number is the CR3-target count. */
  readonly cr3Targets: readonly bigint[];
}

/**
 * Controls the configurations choose among, where the capabilities allow their
 * 1-setting: those whose requirements are handled here (dependencies below) or
 * which have none. Others (MTF, TPR shadow, EPT, ...) stay at their allowed-0 setting.
 */
const CHOOSABLE = {
  pin: bits(PIN.EXTERNAL_INTERRUPT_EXITING, PIN.NMI_EXITING, PIN.VIRTUAL_NMIS),
  proc: bits(PROC.INTERRUPT_WINDOW_EXITING, PROC.USE_TSC_OFFSETTING, PROC.HLT_EXITING, PROC.INVLPG_EXITING,
    PROC.MWAIT_EXITING, PROC.RDPMC_EXITING, PROC.RDTSC_EXITING, PROC.CR3_LOAD_EXITING, PROC.CR3_STORE_EXITING,
    PROC.CR8_LOAD_EXITING, PROC.CR8_STORE_EXITING, PROC.NMI_WINDOW_EXITING, PROC.MOV_DR_EXITING,
    PROC.UNCONDITIONAL_IO_EXITING, PROC.USE_IO_BITMAPS, PROC.USE_MSR_BITMAPS, PROC.MONITOR_EXITING,
    PROC.PAUSE_EXITING, PROC.ACTIVATE_SECONDARY_CONTROLS),
  secondary: bits(SEC.DESCRIPTOR_TABLE_EXITING, SEC.ENABLE_RDTSCP, SEC.WBINVD_EXITING, SEC.RDRAND_EXITING,
    SEC.ENABLE_INVPCID, SEC.RDSEED_EXITING),
  exit: bits(EXIT.SAVE_DEBUG_CONTROLS, EXIT.ACKNOWLEDGE_INTERRUPT_ON_EXIT, EXIT.SAVE_IA32_PAT, EXIT.LOAD_IA32_PAT,
    EXIT.SAVE_IA32_EFER, EXIT.LOAD_IA32_EFER),
  entry: bits(ENTRY.LOAD_DEBUG_CONTROLS, ENTRY.LOAD_IA32_PAT, ENTRY.LOAD_IA32_EFER),
};

/** A control value: the must-be-1 bits plus a random choice of the choosable ones the capabilities allow. */
const controls = (s: AllowedSettings, choosable: number) => u32.map((r) => (s.allowed0 | (r & choosable & s.allowed1)) >>> 0);

/** Three distinct free pages (SCRATCH_PAGES) for the bitmaps. */
const bitmapPages = fc.uniqueArray(fc.integer({ min: 0, max: 15 }), { minLength: 3, maxLength: 3 })
  .map((ps) => ps.map((p) => SCRATCH_PAGES + 4096 * p));

export interface VmcsConfigOptions extends GuestStateOptions {
  /** Guest kinds to choose among (default 'long' and 'protected'). */
  readonly kinds?: readonly GuestKind[];
}

/**
 * Configurations that pass every VM-entry check (27.2, 27.3.1) on `caps`:
 * random allowed control settings with the SDM's dependencies respected
 * (27.2.1.1: "virtual NMIs" needs "NMI exiting", "NMI-window exiting" needs
 * "virtual NMIs"; the secondary controls count only with "activate secondary
 * controls"; 27.2.4: "host address-space size" is 1 for a host in IA-32e mode,
 * "IA-32e mode guest" follows the guest kind), a random exception bitmap, #PF
 * error-code mask and match, CR0/CR4 guest/host masks and read shadows,
 * bitmap addresses, TSC offset, CR3-target values and guest state.
 */
export function validVmcsConfig(caps: VmxCapabilities, o: VmcsConfigOptions = {}): fc.Arbitrary<VmcsConfig> {
  const kinds = o.kinds ?? (['long', 'protected'] as const);
  const small = fc.oneof(fc.integer({ min: 0, max: 31 }), u32);
  return fc.constantFrom(...kinds).chain((kind) => fc.record({
    guest: guestState(kind, o),
    pin: controls(caps.pin, CHOOSABLE.pin),
    proc: controls(caps.proc, CHOOSABLE.proc),
    secondary: controls(caps.secondary, CHOOSABLE.secondary),
    ignoredSecondary: u32,
    exit: controls(caps.exit, CHOOSABLE.exit),
    entry: controls(caps.entry, CHOOSABLE.entry),
    exceptionBitmap: u32,
    pfecMask: small,
    pfecMatch: small,
    cr0Mask: u32, cr0Shadow: u32, cr4Mask: u32, cr4Shadow: u32,
    pages: bitmapPages,
    tscOffset: u64,
    cr3Targets: fc.array(u64, { maxLength: Math.min(4, (caps.misc >>> 16) & 0x1ff) }),
  })).map(({ pages, ignoredSecondary, ...c }) => {
    let { pin, proc } = c;
    const { exit, entry } = c;
    // 27.2.1.1: virtual NMIs need NMI exiting; NMI-window exiting needs virtual NMIs.
    if (!(pin & bit(PIN.NMI_EXITING))) pin &= ~bit(PIN.VIRTUAL_NMIS);
    if (!(pin & bit(PIN.VIRTUAL_NMIS))) proc &= ~bit(PROC.NMI_WINDOW_EXITING);
    // Without "activate secondary controls" the secondary field is ignored (25.6.2): any value.
    const secondary = proc & bit(PROC.ACTIVATE_SECONDARY_CONTROLS) ? c.secondary : ignoredSecondary;
    const long = c.guest.kind === 'long';
    const ia32e = bit(ENTRY.IA_32E_MODE_GUEST);
    return {
      ...c,
      pin: pin >>> 0, proc: proc >>> 0, secondary: secondary >>> 0,
      exit: (exit | bit(EXIT.HOST_ADDRESS_SPACE_SIZE)) >>> 0,
      entry: (long ? entry | ia32e : entry & ~ia32e) >>> 0,
      ioBitmapA: pages[0]!, ioBitmapB: pages[1]!, msrBitmaps: pages[2]!,
    };
  });
}

const lo32 = (x: bigint): number => Number(x & 0xffffffffn) | 0;
const hi32 = (x: bigint): number => Number((x >> 32n) & 0xffffffffn) | 0;

/**
 * Writes a configuration into `v` (a validVmcs of the same guest kind) and,
 * given the processor, the guest GPRs it holds at VM entry.
 */
export function applyVmcsConfig(c: VmcsConfig, v: Vmcs, cpu?: Cpu): void {
  v.set(F.PIN_BASED_VM_EXECUTION_CONTROLS, c.pin);
  v.set(F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, c.proc);
  v.set(F.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, c.secondary);
  v.set(F.PRIMARY_VM_EXIT_CONTROLS, c.exit);
  v.set(F.VM_ENTRY_CONTROLS, c.entry);
  v.set(F.EXCEPTION_BITMAP, c.exceptionBitmap);
  v.set(F.PAGE_FAULT_ERROR_CODE_MASK, c.pfecMask);
  v.set(F.PAGE_FAULT_ERROR_CODE_MATCH, c.pfecMatch);
  v.set(F.CR0_GUEST_HOST_MASK, c.cr0Mask);
  v.set(F.CR0_READ_SHADOW, c.cr0Shadow);
  v.set(F.CR4_GUEST_HOST_MASK, c.cr4Mask);
  v.set(F.CR4_READ_SHADOW, c.cr4Shadow);
  v.set(F.ADDRESS_OF_IO_BITMAP_A, c.ioBitmapA);
  v.set(F.ADDRESS_OF_IO_BITMAP_B, c.ioBitmapB);
  v.set(F.ADDRESS_OF_MSR_BITMAPS, c.msrBitmaps);
  v.set(F.TSC_OFFSET, lo32(c.tscOffset), hi32(c.tscOffset));
  v.set(F.CR3_TARGET_COUNT, c.cr3Targets.length);
  c.cr3Targets.forEach((t, k) => v.set(F.CR3_TARGET_VALUE_0 + 2 * k, lo32(t), hi32(t)));
  const g = c.guest;
  v.set(F.GUEST_CR0, g.cr0);
  v.set(F.GUEST_CR4, g.cr4);
  v.set(F.GUEST_RFLAGS, g.rflags);
  v.set(F.GUEST_RIP, lo32(g.rip), hi32(g.rip));
  v.set(F.GUEST_RSP, lo32(g.rsp), hi32(g.rsp));
  if (cpu !== undefined) g.gprs.forEach((x, r) => { if (r !== 4) cpu.setReg64(r, x); });
}

/** The harness mode of a configuration's guest. */
export function guestMode(c: VmcsConfig): GuestMode {
  return modeOf(c.guest.kind);
}

// ---- violations ---------------------------------------------------------------------

/** One rule of 27.2 / 27.3.1 and a way to break it. */
export interface Violation {
  /** The check name entry-checks.ts reports (EntryCheckFailure.check). */
  readonly check: string;
  readonly section: string;
  readonly kind: EntryCheckFailure['kind'];
  /** Exit qualification of a guest-state failure (27.8); 0 unless given. */
  readonly qualification?: number;
  /** Guest kinds the mutation is meant for (default: 'long' and 'protected'). */
  readonly kinds?: readonly GuestKind[];
  /** Whether the capabilities allow this way of breaking the rule (default: always). */
  readonly applies?: (caps: VmxCapabilities) => boolean;
  /** Breaks the rule in a valid VMCS; `k` (a random 31-bit number) varies how. */
  readonly mutate: (v: Vmcs, k: number, caps: VmxCapabilities) => void;
}

const or = (v: Vmcs, enc: number, m: number): void => v.set(enc, v.lo(enc) | m, v.hi(enc));
const clear = (v: Vmcs, enc: number, m: number): void => v.set(enc, v.lo(enc) & ~m, v.hi(enc));
/** The k-th (mod count) set bit of `mask`. */
function pickBit(mask: number, k: number): number {
  const set: number[] = [];
  for (let b = 0; b < 32; b++) if ((mask >>> b) & 1) set.push(b);
  return set[k % set.length]!;
}
/** Bits 63:32 of a physical address with a bit at or above MAXPHYADDR (27.2.1.1 and others). */
const beyondPa = (k: number): number => bit(MAXPHYADDR - 32 + (k % (64 - MAXPHYADDR)));
/** Bits 63:32 of a non-canonical 48-bit address: bits 63:47 not all equal. */
const nonCanonicalHi = (k: number): number => (0x8000 + (k % 0x7fff0000)) | 0;
/** A control field broken against its capability: an allowed-0 bit cleared or a bit outside allowed-1 set (A.3-A.5). */
function wrongControl(v: Vmcs, enc: number, s: AllowedSettings, k: number): void {
  const reserved = ~s.allowed1 >>> 0;
  const choices = (s.allowed0 | reserved) >>> 0;
  const b = pickBit(choices, k);
  // Whatever the value was: clear a must-be-1 bit, or set a must-be-0 bit.
  if ((s.allowed0 >>> b) & 1) clear(v, enc, bit(b)); else or(v, enc, bit(b));
}
const allows = (group: 'pin' | 'proc' | 'secondary' | 'exit' | 'entry', b: number) =>
  (caps: VmxCapabilities): boolean => ((caps[group].allowed1 >>> b) & 1) === 1;
/** An invalid PAT: byte k % 8 holds 2, 3 or 8-255 (SDM vol. 3A, 13.12.2). */
function badPat(v: Vmcs, enc: number, k: number): void {
  const types = [2, 3, 8, 0x10, 0x80, 0xff];
  const byte = k % 8, t = types[(k >>> 3) % types.length]!;
  const lo = v.lo(enc), hi = v.hi(enc);
  const sh = 8 * (byte & 3), m = ~(0xff << sh);
  if (byte < 4) v.set(enc, (lo & m) | (t << sh), hi); else v.set(enc, lo, (hi & m) | (t << sh));
}
/** An EFER value with a bit other than SCE, LME, LMA, NXE set (SDM vol. 3A, 2.2.1). */
function badEfer(v: Vmcs, enc: number, k: number): void {
  const defined = bits(0, 8, 10, 11);
  const b = pickBit(~defined >>> 0, k);
  v.set(enc, v.lo(enc) | bit(b), k & 0x100 ? 1 : 0);
}
/** Sets an injected event (25.8.3). */
const inject = (v: Vmcs, info: number, code = 0, length = 0): void => {
  v.set(F.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD, info | 0);
  v.set(F.VM_ENTRY_EXCEPTION_ERROR_CODE, code);
  v.set(F.VM_ENTRY_INSTRUCTION_LENGTH, length);
};
const VALID = 0x80000000 | 0, DELIVER_CODE = bit(11);
const type = (t: number): number => t << 8;
const ERROR_CODE_VECTORS = [8, 10, 11, 12, 13, 14, 17];
const NO_ERROR_CODE_VECTORS = [0, 1, 3, 4, 5, 6, 7, 9, 16, 18, 19, 20];

const sel = (n: number): number => F.GUEST_ES_SELECTOR + 2 * n;
const base = (n: number): number => F.GUEST_ES_BASE + 2 * n;
const limit = (n: number): number => F.GUEST_ES_LIMIT + 2 * n;
const ar = (n: number): number => F.GUEST_ES_ACCESS_RIGHTS + 2 * n;
const ES = 0, CS = 1, SS = 2, DS = 3, FS = 4, GS = 5, LDTR = 6, TR = 7;
const HOST_SELECTOR: Record<string, number> = {
  CS: F.HOST_CS_SELECTOR, SS: F.HOST_SS_SELECTOR, DS: F.HOST_DS_SELECTOR, ES: F.HOST_ES_SELECTOR,
  FS: F.HOST_FS_SELECTOR, GS: F.HOST_GS_SELECTOR, TR: F.HOST_TR_SELECTOR,
};
const HOST_BASE: Record<string, number> = {
  'host FS base': F.HOST_FS_BASE, 'host GS base': F.HOST_GS_BASE, 'host GDTR base': F.HOST_GDTR_BASE,
  'host IDTR base': F.HOST_IDTR_BASE, 'host TR base': F.HOST_TR_BASE,
  'host IA32_SYSENTER_ESP': F.HOST_IA32_SYSENTER_ESP, 'host IA32_SYSENTER_EIP': F.HOST_IA32_SYSENTER_EIP,
};
const GUEST_CANONICAL: Record<string, [number, string]> = {
  'guest IA32_SYSENTER_ESP': [F.GUEST_IA32_SYSENTER_ESP, '27.3.1.1'],
  'guest IA32_SYSENTER_EIP': [F.GUEST_IA32_SYSENTER_EIP, '27.3.1.1'],
  'guest GDTR base': [F.GUEST_GDTR_BASE, '27.3.1.3'],
  'guest IDTR base': [F.GUEST_IDTR_BASE, '27.3.1.3'],
};
const MSR_AREAS: Record<string, [number, number, string]> = {
  'VM-exit MSR-store address': [F.VM_EXIT_MSR_STORE_COUNT, F.VM_EXIT_MSR_STORE_ADDRESS, '27.2.1.2'],
  'VM-exit MSR-load address': [F.VM_EXIT_MSR_LOAD_COUNT, F.VM_EXIT_MSR_LOAD_ADDRESS, '27.2.1.2'],
  'VM-entry MSR-load address': [F.VM_ENTRY_MSR_LOAD_COUNT, F.VM_ENTRY_MSR_LOAD_ADDRESS, '27.2.1.3'],
};
/** Guest segments as virtual-8086 mode needs them (27.3.1.2): base = selector × 16, limit FFFFH, access rights F3H. */
function virtual8086Segments(v: Vmcs, k: number): void {
  for (let n = 0; n < 6; n++) {
    const s = (k + 0x100 * n) & 0xffff;
    v.set(sel(n), s); v.set(base(n), s << 4); v.set(limit(n), 0xffff); v.set(ar(n), 0xf3);
  }
}

const C1 = '27.2.1.1', C2 = '27.2.1.2', C3 = '27.2.1.3', H2 = '27.2.2', H3 = '27.2.3', H4 = '27.2.4';
const G1 = '27.3.1.1', G2 = '27.3.1.2', G3 = '27.3.1.3', G4 = '27.3.1.4', G5 = '27.3.1.5';
const LONG = ['long'] as const, PROTECTED = ['protected'] as const;

/**
 * The violations, by id. Each breaks one rule so that, in a configuration of
 * validVmcsConfig, that rule is the first the checks find (27.2 in the order
 * the SDM lists them, then 27.3.1).
 */
export const VIOLATIONS: Readonly<Record<string, Violation>> = {
  // ---- 27.2.1.1 VM-execution control fields
  'pin reserved': { check: 'pin-based controls reserved bits', section: C1, kind: 'controls',
    mutate: (v, k, c) => wrongControl(v, F.PIN_BASED_VM_EXECUTION_CONTROLS, c.pin, k) },
  'primary reserved': { check: 'primary processor-based controls reserved bits', section: C1, kind: 'controls',
    mutate: (v, k, c) => wrongControl(v, F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, c.proc, k) },
  'secondary reserved': { check: 'secondary processor-based controls reserved bits', section: C1, kind: 'controls',
    applies: (c) => allows('proc', PROC.ACTIVATE_SECONDARY_CONTROLS)(c) && (c.secondary.allowed1 >>> 0) !== 0xffffffff,
    mutate: (v, k, c) => {
      or(v, F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, bit(PROC.ACTIVATE_SECONDARY_CONTROLS));
      wrongControl(v, F.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, c.secondary, k);
    } },
  'CR3-target count': { check: 'CR3-target count', section: C1, kind: 'controls',
    mutate: (v, k, c) => v.set(F.CR3_TARGET_COUNT, ((c.misc >>> 16) & 0x1ff) + 1 + (k % 1000)) },
  'I/O bitmap A unaligned': { check: 'I/O-bitmap addresses', section: C1, kind: 'controls',
    applies: allows('proc', PROC.USE_IO_BITMAPS),
    mutate: (v, k) => { or(v, F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, bit(PROC.USE_IO_BITMAPS)); v.set(F.ADDRESS_OF_IO_BITMAP_A, SCRATCH_PAGES + 1 + (k % 0xfff)); } },
  'I/O bitmap B beyond MAXPHYADDR': { check: 'I/O-bitmap addresses', section: C1, kind: 'controls',
    applies: allows('proc', PROC.USE_IO_BITMAPS),
    mutate: (v, k) => { or(v, F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, bit(PROC.USE_IO_BITMAPS)); v.set(F.ADDRESS_OF_IO_BITMAP_B, SCRATCH_PAGES, beyondPa(k)); } },
  'MSR bitmaps unaligned': { check: 'MSR-bitmap address', section: C1, kind: 'controls',
    applies: allows('proc', PROC.USE_MSR_BITMAPS),
    mutate: (v, k) => { or(v, F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, bit(PROC.USE_MSR_BITMAPS)); v.set(F.ADDRESS_OF_MSR_BITMAPS, SCRATCH_PAGES + 1 + (k % 0xfff)); } },
  'virtual NMIs without NMI exiting': { check: 'virtual NMIs without NMI exiting', section: C1, kind: 'controls',
    applies: allows('pin', PIN.VIRTUAL_NMIS),
    mutate: (v) => { clear(v, F.PIN_BASED_VM_EXECUTION_CONTROLS, bit(PIN.NMI_EXITING)); or(v, F.PIN_BASED_VM_EXECUTION_CONTROLS, bit(PIN.VIRTUAL_NMIS)); } },
  'NMI-window exiting without virtual NMIs': { check: 'NMI-window exiting without virtual NMIs', section: C1, kind: 'controls',
    applies: allows('proc', PROC.NMI_WINDOW_EXITING),
    mutate: (v) => { clear(v, F.PIN_BASED_VM_EXECUTION_CONTROLS, bit(PIN.VIRTUAL_NMIS)); or(v, F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, bit(PROC.NMI_WINDOW_EXITING)); } },
  // ---- 27.2.1.2 VM-exit control fields, 27.2.1.3 VM-entry control fields
  'exit reserved': { check: 'VM-exit controls reserved bits', section: C2, kind: 'controls',
    mutate: (v, k, c) => wrongControl(v, F.PRIMARY_VM_EXIT_CONTROLS, c.exit, k) },
  ...Object.fromEntries(Object.entries(MSR_AREAS).map(([check, [count, address, section]]) => [check, {
    check, section, kind: 'controls',
    // With a non-zero count, bits 3:0 of the address must be 0.
    mutate: (v: Vmcs, k: number) => { v.set(count, 1 + (k % 512)); v.set(address, SCRATCH_PAGES + 1 + (k % 15)); },
  } satisfies Violation])),
  'entry reserved': { check: 'VM-entry controls reserved bits', section: C3, kind: 'controls',
    mutate: (v, k, c) => wrongControl(v, F.VM_ENTRY_CONTROLS, c.entry, k) },
  'injection type 1': { check: 'event injection: interruption type', section: C3, kind: 'controls',
    mutate: (v, k) => inject(v, VALID | type(1) | (k & 0xff)) },
  'injection NMI vector': { check: 'event injection: vector', section: C3, kind: 'controls',
    mutate: (v, k) => inject(v, VALID | type(InterruptionType.NMI) | ((3 + (k % 253)) & 0xff)) },
  'injection exception vector': { check: 'event injection: vector', section: C3, kind: 'controls',
    mutate: (v, k) => inject(v, VALID | type(InterruptionType.HARDWARE_EXCEPTION) | (32 + (k % 224))) },
  'injection missing error code': { check: 'event injection: deliver error code', section: C3, kind: 'controls',
    mutate: (v, k) => inject(v, VALID | type(InterruptionType.HARDWARE_EXCEPTION) | ERROR_CODE_VECTORS[k % 7]!) },
  'injection extra error code': { check: 'event injection: deliver error code', section: C3, kind: 'controls',
    mutate: (v, k) => inject(v, VALID | DELIVER_CODE | type(InterruptionType.HARDWARE_EXCEPTION) | NO_ERROR_CODE_VECTORS[k % 12]!) },
  'injection reserved bits': { check: 'event injection: reserved bits', section: C3, kind: 'controls',
    mutate: (v, k) => inject(v, VALID | bit(12 + (k % 19)) | type(InterruptionType.HARDWARE_EXCEPTION) | 6) },
  'injection error code bits 31:16': { check: 'event injection: error code', section: C3, kind: 'controls',
    mutate: (v, k) => inject(v, VALID | DELIVER_CODE | type(InterruptionType.HARDWARE_EXCEPTION) | 13, 0x10000 << (k % 16)) },
  'injection instruction length': { check: 'event injection: instruction length', section: C3, kind: 'controls',
    mutate: (v, k) => inject(v, VALID | type([4, 5, 6][k % 3]!) | 3, 0, 16 + (k % 5000)) },

  // ---- 27.2.2 host control registers and MSRs
  'host CR0 fixed bits': { check: 'host CR0 fixed bits', section: H2, kind: 'host',
    mutate: (v, k, c) => (k & 1 ? v.set(F.HOST_CR0, v.lo(F.HOST_CR0), 1 << (k % 32)) : clear(v, F.HOST_CR0, bit(pickBit(c.cr0Fixed0, k >>> 1)))) },
  'host CR4 fixed bits': { check: 'host CR4 fixed bits', section: H2, kind: 'host',
    mutate: (v, k, c) => (k & 1 ? clear(v, F.HOST_CR4, bit(pickBit(c.cr4Fixed0, k >>> 1))) : or(v, F.HOST_CR4, bit(pickBit(~c.cr4Fixed1 >>> 0, k >>> 1)))) },
  'host CR3': { check: 'host CR3', section: H2, kind: 'host', mutate: (v, k) => v.set(F.HOST_CR3, v.lo(F.HOST_CR3), beyondPa(k)) },
  ...Object.fromEntries(['host IA32_SYSENTER_ESP', 'host IA32_SYSENTER_EIP'].map((name) => [name, {
    check: `${name} canonical`, section: H2, kind: 'host',
    mutate: (v: Vmcs, k: number) => v.set(HOST_BASE[name]!, k, nonCanonicalHi(k)),
  } satisfies Violation])),
  'host IA32_PAT': { check: 'host IA32_PAT', section: H2, kind: 'host', applies: allows('exit', EXIT.LOAD_IA32_PAT),
    mutate: (v, k) => { or(v, F.PRIMARY_VM_EXIT_CONTROLS, bit(EXIT.LOAD_IA32_PAT)); badPat(v, F.HOST_IA32_PAT, k); } },
  'host IA32_EFER reserved bits': { check: 'host IA32_EFER reserved bits', section: H2, kind: 'host', applies: allows('exit', EXIT.LOAD_IA32_EFER),
    mutate: (v, k) => { or(v, F.PRIMARY_VM_EXIT_CONTROLS, bit(EXIT.LOAD_IA32_EFER)); badEfer(v, F.HOST_IA32_EFER, k); } },
  'host IA32_EFER.LMA and LME': { check: 'host IA32_EFER.LMA and LME', section: H2, kind: 'host', applies: allows('exit', EXIT.LOAD_IA32_EFER),
    mutate: (v, k) => { or(v, F.PRIMARY_VM_EXIT_CONTROLS, bit(EXIT.LOAD_IA32_EFER)); v.set(F.HOST_IA32_EFER, [EFER_LME, EFER_LMA, 0][k % 3]!); } },
  // ---- 27.2.3 host segment and descriptor-table registers
  ...Object.fromEntries(Object.entries(HOST_SELECTOR).map(([s, enc]) => [`host ${s} selector RPL and TI`, {
    check: `host ${s} selector RPL and TI`, section: H3, kind: 'host',
    mutate: (v: Vmcs, k: number) => v.set(enc, v.lo(enc) | (1 + (k % 7))),
  } satisfies Violation])),
  'host CS selector null': { check: 'host CS selector null', section: H3, kind: 'host', mutate: (v) => v.set(F.HOST_CS_SELECTOR, 0) },
  'host TR selector null': { check: 'host TR selector null', section: H3, kind: 'host', mutate: (v) => v.set(F.HOST_TR_SELECTOR, 0) },
  ...Object.fromEntries(['host FS base', 'host GS base', 'host GDTR base', 'host IDTR base', 'host TR base'].map((name) => [name, {
    check: `${name} canonical`, section: H3, kind: 'host',
    mutate: (v: Vmcs, k: number) => v.set(HOST_BASE[name]!, k, nonCanonicalHi(k)),
  } satisfies Violation])),
  // ---- 27.2.4 address-space size (the processor is in IA-32e mode)
  'host address-space size in IA-32e mode': { check: 'host address-space size in IA-32e mode', section: H4, kind: 'host',
    // Without "load IA32_EFER" on exit, so that 27.2.2's EFER rule does not come first.
    mutate: (v) => clear(v, F.PRIMARY_VM_EXIT_CONTROLS, bit(EXIT.HOST_ADDRESS_SPACE_SIZE) | bit(EXIT.LOAD_IA32_EFER)) },
  'host CR4.PAE': { check: 'host CR4.PAE', section: H4, kind: 'host', mutate: (v) => clear(v, F.HOST_CR4, CR4_PAE) },
  'host RIP canonical': { check: 'host RIP canonical', section: H4, kind: 'host', mutate: (v, k) => v.set(F.HOST_RIP, v.lo(F.HOST_RIP), nonCanonicalHi(k)) },

  // ---- 27.3.1.1 guest control registers, debug registers and MSRs
  'guest CR0 fixed bits': { check: 'guest CR0 fixed bits', section: G1, kind: 'guest',
    mutate: (v, k, c) => (k & 1 ? v.set(F.GUEST_CR0, v.lo(F.GUEST_CR0), 1 << (k % 32)) : clear(v, F.GUEST_CR0, bit(pickBit(c.cr0Fixed0, k >>> 1)))) },
  'guest CR4 fixed bits': { check: 'guest CR4 fixed bits', section: G1, kind: 'guest',
    mutate: (v, k, c) => (k & 1 ? clear(v, F.GUEST_CR4, bit(pickBit(c.cr4Fixed0, k >>> 1))) : or(v, F.GUEST_CR4, bit(pickBit(~c.cr4Fixed1 >>> 0, k >>> 1)))) },
  'guest IA32_DEBUGCTL reserved bits': { check: 'guest IA32_DEBUGCTL reserved bits', section: G1, kind: 'guest',
    applies: allows('entry', ENTRY.LOAD_DEBUG_CONTROLS),
    mutate: (v, k) => {
      or(v, F.VM_ENTRY_CONTROLS, bit(ENTRY.LOAD_DEBUG_CONTROLS));
      v.set(F.GUEST_IA32_DEBUGCTL, k & 1 ? 0 : bit(pickBit(~0x1803 >>> 0, k >>> 1)), k & 1 ? 1 + (k >>> 1) : 0);
    } },
  'IA-32e mode guest without CR4.PAE': { check: 'IA-32e mode guest without CR0.PG and CR4.PAE', section: G1, kind: 'guest', kinds: LONG,
    mutate: (v) => clear(v, F.GUEST_CR4, CR4_PAE) },
  'guest CR4.PCIDE outside IA-32e mode': { check: 'guest CR4.PCIDE outside IA-32e mode', section: G1, kind: 'guest', kinds: PROTECTED,
    applies: (c) => (c.cr4Fixed1 & CR4_PCIDE) !== 0, mutate: (v) => or(v, F.GUEST_CR4, CR4_PCIDE) },
  'guest CR3': { check: 'guest CR3', section: G1, kind: 'guest', mutate: (v, k) => v.set(F.GUEST_CR3, v.lo(F.GUEST_CR3), beyondPa(k)) },
  'guest DR7 bits 63:32': { check: 'guest DR7 bits 63:32', section: G1, kind: 'guest', applies: allows('entry', ENTRY.LOAD_DEBUG_CONTROLS),
    mutate: (v, k) => { or(v, F.VM_ENTRY_CONTROLS, bit(ENTRY.LOAD_DEBUG_CONTROLS)); v.set(F.GUEST_DR7, 0x400, 1 + k); } },
  ...Object.fromEntries(Object.entries(GUEST_CANONICAL).map(([name, [enc, section]]) => [name, {
    check: `${name} canonical`, section, kind: 'guest',
    mutate: (v: Vmcs, k: number) => v.set(enc, k, nonCanonicalHi(k)),
  } satisfies Violation])),
  'guest IA32_PAT': { check: 'guest IA32_PAT', section: G1, kind: 'guest', applies: allows('entry', ENTRY.LOAD_IA32_PAT),
    mutate: (v, k) => { or(v, F.VM_ENTRY_CONTROLS, bit(ENTRY.LOAD_IA32_PAT)); badPat(v, F.GUEST_IA32_PAT, k); } },
  'guest IA32_EFER reserved bits': { check: 'guest IA32_EFER reserved bits', section: G1, kind: 'guest', applies: allows('entry', ENTRY.LOAD_IA32_EFER),
    mutate: (v, k) => { or(v, F.VM_ENTRY_CONTROLS, bit(ENTRY.LOAD_IA32_EFER)); badEfer(v, F.GUEST_IA32_EFER, k); } },
  'guest IA32_EFER.LMA': { check: 'guest IA32_EFER.LMA', section: G1, kind: 'guest', applies: allows('entry', ENTRY.LOAD_IA32_EFER),
    mutate: (v) => { or(v, F.VM_ENTRY_CONTROLS, bit(ENTRY.LOAD_IA32_EFER)); v.set(F.GUEST_IA32_EFER, v.lo(F.GUEST_IA32_EFER) ^ EFER_LMA); } },
  'guest IA32_EFER.LME': { check: 'guest IA32_EFER.LME', section: G1, kind: 'guest', applies: allows('entry', ENTRY.LOAD_IA32_EFER),
    mutate: (v) => { or(v, F.VM_ENTRY_CONTROLS, bit(ENTRY.LOAD_IA32_EFER)); v.set(F.GUEST_IA32_EFER, v.lo(F.GUEST_IA32_EFER) ^ EFER_LME); } },
  // ---- 27.3.1.2 segment registers
  'guest TR selector TI': { check: 'guest TR selector TI', section: G2, kind: 'guest', mutate: (v) => or(v, sel(TR), 4) },
  'guest LDTR selector TI': { check: 'guest LDTR selector TI', section: G2, kind: 'guest',
    mutate: (v) => { v.set(ar(LDTR), 0x82); v.set(sel(LDTR), 0x2c); } },
  'guest SS selector RPL': { check: 'guest SS selector RPL', section: G2, kind: 'guest', mutate: (v, k) => or(v, sel(SS), 1 + (k % 3)) },
  'guest CS base bits 63:32': { check: 'guest CS base bits 63:32', section: G2, kind: 'guest', mutate: (v, k) => v.set(base(CS), 0, 1 + (k % 0x7fff)) },
  'guest FS base canonical': { check: 'guest FS base canonical', section: G2, kind: 'guest', mutate: (v, k) => v.set(base(FS), 0, nonCanonicalHi(k)) },
  'guest CS type': { check: 'guest CS type', section: G2, kind: 'guest', mutate: (v, k) => v.set(ar(CS), (v.lo(ar(CS)) & ~0xf) | [0, 1, 2, 3, 5, 7, 8, 10, 12, 14][k % 10]!) },
  'guest SS type': { check: 'guest SS type', section: G2, kind: 'guest', mutate: (v, k) => v.set(ar(SS), (v.lo(ar(SS)) & ~0xf) | [0, 1, 2, 4, 5, 6, 8, 9, 11, 15][k % 10]!) },
  'guest DS type': { check: 'guest DS type', section: G2, kind: 'guest', mutate: (v, k) => v.set(ar(DS), (v.lo(ar(DS)) & ~0xf) | [0, 2, 4, 6, 8, 9, 10, 12, 13, 14][k % 10]!) },
  'guest CS S bit': { check: 'guest CS S bit', section: G2, kind: 'guest', mutate: (v) => clear(v, ar(CS), 0x10) },
  'guest CS DPL': { check: 'guest CS DPL', section: G2, kind: 'guest', mutate: (v, k) => or(v, ar(CS), (1 + (k % 3)) << 5) },
  'guest ES P bit': { check: 'guest ES P bit', section: G2, kind: 'guest', mutate: (v) => clear(v, ar(ES), 0x80) },
  'guest GS access rights bits 11:8': { check: 'guest GS access rights bits 11:8', section: G2, kind: 'guest', mutate: (v, k) => or(v, ar(GS), (1 + (k % 15)) << 8) },
  'guest CS D/B bit': { check: 'guest CS D/B bit', section: G2, kind: 'guest', kinds: LONG, mutate: (v) => or(v, ar(CS), 1 << 14) },
  'guest SS G bit': { check: 'guest SS G bit', section: G2, kind: 'guest', mutate: (v, k) => v.set(limit(SS), 0xfffff000 - 0x1000 * (k % 0xfff00)) },
  'guest CS access rights bits 31:17': { check: 'guest CS access rights bits 31:17', section: G2, kind: 'guest', mutate: (v, k) => or(v, ar(CS), bit(17 + (k % 15))) },
  'guest TR type': { check: 'guest TR type', section: G2, kind: 'guest', mutate: (v, k) => v.set(ar(TR), (v.lo(ar(TR)) & ~0xf) | [0, 1, 2, 9, 12, 14][k % 6]!) },
  'guest TR unusable': { check: 'guest TR unusable', section: G2, kind: 'guest', mutate: (v) => or(v, ar(TR), 1 << 16) },
  'guest LDTR type': { check: 'guest LDTR type', section: G2, kind: 'guest', mutate: (v, k) => v.set(ar(LDTR), 0x80 | [0, 1, 3, 9, 11][k % 5]!) },
  // ---- 27.3.1.3 descriptor-table registers
  ...Object.fromEntries(['guest GDTR base', 'guest IDTR base'].map((name) => [name, {
    check: `${name} canonical`, section: G3, kind: 'guest',
    mutate: (v: Vmcs, k: number) => v.set(GUEST_CANONICAL[name]![0], k, nonCanonicalHi(k)),
  } satisfies Violation])),
  'guest GDTR limit': { check: 'guest GDTR limit', section: G3, kind: 'guest', mutate: (v, k) => v.set(F.GUEST_GDTR_LIMIT, 0x10000 << (k % 16)) },
  'guest IDTR limit': { check: 'guest IDTR limit', section: G3, kind: 'guest', mutate: (v, k) => v.set(F.GUEST_IDTR_LIMIT, 0xfff | (0x10000 << (k % 16))) },
  // ---- 27.3.1.4 RIP and RFLAGS
  'guest RIP bits 63:48': { check: 'guest RIP bits 63:48', section: G4, kind: 'guest', kinds: LONG,
    mutate: (v, k) => v.set(F.GUEST_RIP, v.lo(F.GUEST_RIP), (0x10000 + (k % 0xfffe0000)) | 0) },
  'guest RIP bits 63:32': { check: 'guest RIP bits 63:32', section: G4, kind: 'guest', kinds: PROTECTED,
    mutate: (v, k) => v.set(F.GUEST_RIP, v.lo(F.GUEST_RIP), 1 + k) },
  'guest RFLAGS reserved bits': { check: 'guest RFLAGS reserved bits', section: G4, kind: 'guest',
    mutate: (v, k) => (k % 5 === 0 ? clear(v, F.GUEST_RFLAGS, 2) : or(v, F.GUEST_RFLAGS, bit(pickBit(0xffc08028, k)))) },
  'guest RFLAGS.VM': { check: 'guest RFLAGS.VM', section: G4, kind: 'guest', kinds: LONG,
    // With segments fit for virtual-8086 mode, so that 27.3.1.2 passes and the IA-32e rule is the first broken.
    mutate: (v, k) => { virtual8086Segments(v, k); or(v, F.GUEST_RFLAGS, bit(17)); v.set(F.GUEST_RIP, v.lo(F.GUEST_RIP), 0); } },
  'guest RFLAGS.IF for an injected external interrupt': { check: 'guest RFLAGS.IF for an injected external interrupt', section: G4, kind: 'guest',
    mutate: (v, k) => { inject(v, VALID | type(InterruptionType.EXTERNAL_INTERRUPT) | (k & 0xff)); clear(v, F.GUEST_RFLAGS, RFLAGS_IF); } },
  // ---- 27.3.1.5 non-register state
  'guest activity state': { check: 'guest activity state', section: G5, kind: 'guest', mutate: (v, k) => v.set(F.GUEST_ACTIVITY_STATE, 4 + k) },
  'guest HLT state with SS.DPL not 0': { check: 'guest HLT state with SS.DPL not 0', section: G5, kind: 'guest',
    // A consistent CPL-3 guest: CS and SS with RPL = DPL = 3.
    mutate: (v) => {
      v.set(sel(CS), 0x0b); or(v, ar(CS), 0x60); v.set(sel(SS), 0x13); or(v, ar(SS), 0x60);
      v.set(F.GUEST_ACTIVITY_STATE, 1);
    } },
  'guest activity state with STI or MOV-SS blocking': { check: 'guest activity state with STI or MOV-SS blocking', section: G5, kind: 'guest',
    mutate: (v) => { v.set(F.GUEST_ACTIVITY_STATE, 1); v.set(F.GUEST_INTERRUPTIBILITY_STATE, 2); } },
  'event injection in this activity state': { check: 'event injection in this activity state', section: G5, kind: 'guest',
    mutate: (v, k) => { v.set(F.GUEST_ACTIVITY_STATE, 1); inject(v, VALID | type(InterruptionType.HARDWARE_EXCEPTION) | NO_ERROR_CODE_VECTORS.filter((n) => n !== 1 && n !== 18)[k % 10]!); } },
  'guest interruptibility reserved bits': { check: 'guest interruptibility reserved bits', section: G5, kind: 'guest',
    mutate: (v, k) => v.set(F.GUEST_INTERRUPTIBILITY_STATE, bit(5 + (k % 27))) },
  'guest blocking by STI and MOV SS': { check: 'guest blocking by STI and MOV SS', section: G5, kind: 'guest',
    mutate: (v) => v.set(F.GUEST_INTERRUPTIBILITY_STATE, 3) },
  'guest blocking by STI with IF = 0': { check: 'guest blocking by STI with IF = 0', section: G5, kind: 'guest',
    mutate: (v) => { v.set(F.GUEST_INTERRUPTIBILITY_STATE, 1); clear(v, F.GUEST_RFLAGS, RFLAGS_IF); } },
  'guest blocking for an injected external interrupt': { check: 'guest blocking for an injected external interrupt', section: G5, kind: 'guest',
    mutate: (v, k) => { inject(v, VALID | type(InterruptionType.EXTERNAL_INTERRUPT) | (k & 0xff)); or(v, F.GUEST_RFLAGS, RFLAGS_IF); v.set(F.GUEST_INTERRUPTIBILITY_STATE, 1 + (k & 1)); } },
  'guest MOV-SS blocking for an injected NMI': { check: 'guest MOV-SS blocking for an injected NMI', section: G5, kind: 'guest',
    mutate: (v) => { inject(v, VALID | type(InterruptionType.NMI) | 2); v.set(F.GUEST_INTERRUPTIBILITY_STATE, 2); } },
  'guest STI blocking for an injected NMI': { check: 'guest STI blocking for an injected NMI', section: G5, kind: 'guest',
    qualification: VmEntryFailureQualification.NMI_INJECTION,
    mutate: (v) => { inject(v, VALID | type(InterruptionType.NMI) | 2); or(v, F.GUEST_RFLAGS, RFLAGS_IF); v.set(F.GUEST_INTERRUPTIBILITY_STATE, 1); } },
  'guest blocking by SMI outside SMM': { check: 'guest blocking by SMI outside SMM', section: G5, kind: 'guest',
    mutate: (v) => v.set(F.GUEST_INTERRUPTIBILITY_STATE, 4) },
  'guest enclave interruption': { check: 'guest enclave interruption', section: G5, kind: 'guest',
    mutate: (v) => v.set(F.GUEST_INTERRUPTIBILITY_STATE, 16) },
  'guest pending debug exceptions reserved bits': { check: 'guest pending debug exceptions reserved bits', section: G5, kind: 'guest',
    mutate: (v, k) => (k & 1 ? v.set(F.GUEST_PENDING_DEBUG_EXCEPTIONS, 0, 1 + (k >>> 1)) : v.set(F.GUEST_PENDING_DEBUG_EXCEPTIONS, bit(pickBit(0xfffeaff0, k >>> 1)))) },
  'guest pending BS': { check: 'guest pending BS', section: G5, kind: 'guest',
    // Blocking by STI with RFLAGS.TF = 1 needs BS = 1 (IA32_DEBUGCTL.BTF is 0).
    mutate: (v) => { v.set(F.GUEST_INTERRUPTIBILITY_STATE, 1); or(v, F.GUEST_RFLAGS, RFLAGS_IF | bit(8)); } },
  'VMCS link pointer unaligned': { check: 'VMCS link pointer', section: G5, kind: 'guest',
    qualification: VmEntryFailureQualification.INVALID_VMCS_LINK_POINTER,
    mutate: (v, k) => v.set(F.VMCS_LINK_POINTER, SCRATCH_PAGES + 1 + (k % 0xfff)) },
  'VMCS link pointer revision': { check: 'VMCS link pointer revision', section: G5, kind: 'guest',
    qualification: VmEntryFailureQualification.INVALID_VMCS_LINK_POINTER,
    // A page nothing writes: its first word (0) is not the revision identifier.
    mutate: (v) => v.set(F.VMCS_LINK_POINTER, 0x50000) },
};

/** A valid configuration with one violation (an id of VIOLATIONS) applied with parameter `k`. */
export interface ViolatingConfig {
  readonly config: VmcsConfig;
  readonly violation: string;
  readonly k: number;
}

/**
 * Configurations that break exactly one VM-entry rule: a validVmcsConfig plus
 * one violation of VIOLATIONS that applies to the capabilities and guest kind.
 */
export function violatingVmcsConfig(caps: VmxCapabilities, o: VmcsConfigOptions = {}): fc.Arbitrary<ViolatingConfig> {
  const ids = Object.keys(VIOLATIONS).filter((id) => VIOLATIONS[id]!.applies?.(caps) ?? true);
  return validVmcsConfig(caps, o).chain((config) => {
    const fit = ids.filter((id) => (VIOLATIONS[id]!.kinds ?? ['long', 'protected']).includes(config.guest.kind));
    return fc.record({
      config: fc.constant(config),
      violation: fc.constantFrom(...fit),
      k: fc.nat(),
    });
  });
}

/** Writes a violating configuration into `v` (and the guest GPRs into `cpu`). */
export function applyViolation(c: ViolatingConfig, v: Vmcs, caps: VmxCapabilities, cpu?: Cpu): void {
  applyVmcsConfig(c.config, v, cpu);
  VIOLATIONS[c.violation]!.mutate(v, c.k, caps);
}

// ---- instruction streams ----------------------------------------------------------------

/** An instruction to run in the guest, with the registers it needs and what it does. */
export interface GuestInstruction {
  readonly bytes: readonly number[];
  /** Register values to set before the entry (register number → value). */
  readonly regs: Readonly<Record<number, bigint>>;
  readonly text: string;
}

/** IN/OUT/INS/OUTS: the port, access size and form (SDM vol. 2, IN, OUT, INS, OUTS). */
export interface IoInstruction extends GuestInstruction {
  readonly port: number;
  readonly size: 1 | 2 | 4;
  readonly isIn: boolean;
  /** Port given by an imm8 (else DX). */
  readonly immediate: boolean;
  readonly string: boolean;
  readonly rep: boolean;
  /** Linear address of the memory operand of INS/OUTS (flat segments): RDI or RSI. */
  readonly linear: bigint;
}

/** Data address for INS/OUTS (mapped in the harness, outside its tables). */
export const IO_DATA = 0x60000;
const RAX = 0, RCX = 1, RDX = 2, RSI = 6, RDI = 7;

/** Ports: any, and ones at the edges of bitmaps A/B and of the port space. */
const port = fc.oneof(
  fc.integer({ min: 0, max: 0xffff }),
  fc.constantFrom(0, 0x7ffd, 0x7ffe, 0x7fff, 0x8000, 0xfffd, 0xfffe, 0xffff),
  fc.integer({ min: 0, max: 0xff }),
);

/**
 * IN and OUT (imm8 and DX forms), INS and OUTS (with or without REP), access
 * sizes 1, 2 and 4. `mode` is the guest's code size: in 64-bit mode string
 * instructions use RSI/RDI with 64-bit addresses.
 */
export function ioInstruction(mode: GuestMode = 64): fc.Arbitrary<IoInstruction> {
  return fc.record({
    form: fc.constantFrom('imm', 'dx', 'string'),
    size: fc.constantFrom(1, 2, 4) as fc.Arbitrary<1 | 2 | 4>,
    isIn: fc.boolean(),
    rep: fc.boolean(),
    port,
    dxHigh: u64,
    count: fc.integer({ min: 1, max: 3 }),
    offset: fc.integer({ min: 0, max: 0xff0 }),
  }).map(({ form, size, isIn, rep, port: p0, dxHigh, count, offset }) => {
    const immediate = form === 'imm', string = form === 'string';
    const p = immediate ? p0 & 0xff : p0;
    const wide = size === 1 ? 0 : 1;
    const opcode = string ? (isIn ? 0x6c : 0x6e) + wide : immediate ? (isIn ? 0xe4 : 0xe6) + wide : (isIn ? 0xec : 0xee) + wide;
    const bytes = [...(size === 2 ? [0x66] : []), ...(string && rep ? [0xf3] : []), opcode, ...(immediate ? [p] : [])];
    const linear = BigInt(IO_DATA + offset);
    const regs: Record<number, bigint> = { [RDX]: (dxHigh & ~0xffffn) | BigInt(p), [RAX]: dxHigh };
    if (string) { regs[isIn ? RDI : RSI] = linear; regs[RCX] = BigInt(count); }
    const name = string ? (isIn ? 'ins' : 'outs') : isIn ? 'in' : 'out';
    const text = `${string && rep ? 'rep ' : ''}${name} size ${size} port 0x${p.toString(16)}${immediate ? ' (imm8)' : ' (dx)'}`;
    return { bytes, regs, text, port: p, size, isIn, immediate, string, rep: string && rep, linear: mode === 64 ? linear : linear & 0xffffffffn };
  });
}

/** RDMSR or WRMSR of the MSR in ECX (SDM vol. 2, RDMSR, WRMSR). */
export interface MsrAccess extends GuestInstruction {
  readonly write: boolean;
  /** ECX: bits 63:32 of RCX are ignored. */
  readonly msr: number;
}

/** MSR numbers: the two ranges the MSR bitmaps cover, their edges, and outside them (25.6.9). */
const msrNumber = fc.oneof(
  fc.integer({ min: 0, max: 0x1fff }),
  fc.integer({ min: 0xc0000000, max: 0xc0001fff }),
  fc.constantFrom(0, 0x1fff, 0x2000, 0xbfffffff, 0xc0000000, 0xc0001fff, 0xc0002000, 0xffffffff, 0x40000000),
  u32,
);

/** RDMSR/WRMSR with a random ECX (and random bits 63:32 of RCX); WRMSR writes EDX:EAX = 0. */
export function msrAccess(): fc.Arbitrary<MsrAccess> {
  return fc.record({ write: fc.boolean(), msr: msrNumber, high: u32 }).map(({ write, msr, high }) => ({
    bytes: write ? [0x0f, 0x30] : [0x0f, 0x32],
    regs: { [RCX]: (BigInt(high) << 32n) | BigInt(msr), [RAX]: 0n, [RDX]: 0n },
    text: `${write ? 'wrmsr' : 'rdmsr'} 0x${msr.toString(16)}`,
    write, msr,
  }));
}

/** An access to CR0 or CR4 (SDM vol. 2, MOV CR, CLTS, LMSW). */
export interface CrAccess extends GuestInstruction {
  readonly op: 'mov-to' | 'mov-from' | 'clts' | 'lmsw';
  readonly cr: 0 | 4;
  /** General-purpose register of MOV CR or register-form LMSW. */
  readonly gpr: number;
  /** What MOV to CR writes as a change of the guest's value: bits to flip (only bits that keep the mode). */
  readonly flip: number;
  /** LMSW's 16-bit source. */
  readonly source: number;
}

/**
 * MOV to/from CR0 and CR4 with any GPR but RSP (REX.B for R8-R15 in 64-bit
 * mode), CLTS, and register-form LMSW (`ops` chooses among them). The value MOV to CR writes is the
 * guest's own with `flip` applied (the test puts it in the register): CR0 bits
 * MP, EM, TS, WP, AM; CR4 bits TSD, DE, PGE, PCE, OSFXSR, OSXMMEXCPT; flipping
 * them never faults nor changes the paging mode.
 */
export function crAccess(mode: GuestMode = 64, ops: readonly CrAccess['op'][] = ['mov-to', 'mov-from', 'clts', 'lmsw']): fc.Arbitrary<CrAccess> {
  const gprs = mode === 64 ? [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] : [0, 1, 2, 3, 5, 6, 7];
  return fc.record({
    op: fc.constantFrom(...ops),
    cr: fc.constantFrom(0, 4) as fc.Arbitrary<0 | 4>,
    gpr: fc.constantFrom(...gprs),
    r: u32,
    source: fc.integer({ min: 0, max: 0xffff }),
  }).map(({ op, cr, gpr, r, source }) => {
    const rex = gpr >= 8 ? [0x41] : [];
    const modrm = 0xc0 | (cr << 3) | (gpr & 7);
    const flip = (r & (cr === 0 ? CR0_FREE : bits(2, 3, 7, 8, 9, 10))) >>> 0;
    switch (op) {
      case 'mov-to': return { op, cr, gpr, flip, source: 0, regs: {}, bytes: [...rex, 0x0f, 0x22, modrm], text: `mov cr${cr}, r${gpr} (flip 0x${flip.toString(16)})` };
      case 'mov-from': return { op, cr, gpr, flip: 0, source: 0, regs: {}, bytes: [...rex, 0x0f, 0x20, modrm], text: `mov r${gpr}, cr${cr}` };
      case 'clts': return { op, cr: 0, gpr: 0, flip: 0, source: 0, regs: {}, bytes: [0x0f, 0x06], text: 'clts' };
      default: return {
        op, cr: 0, gpr, flip: 0, source, regs: { [gpr]: BigInt(source) },
        bytes: [...rex, 0x0f, 0x01, 0xf0 | (gpr & 7)], text: `lmsw r${gpr} = 0x${source.toString(16)}`,
      };
    }
  });
}
