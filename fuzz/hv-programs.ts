/**
 * Guest programs for testing a hypervisor's exits: random sequences of
 * instructions that may exit (CPUID, IN/OUT, RDMSR/WRMSR, MOV CR0/CR3/CR4/CR8,
 * CLTS, RDTSC(P), INVLPG, INVPCID, PAUSE, WBINVD, MOV DR) between ordinary ones, with a
 * random choice of the exits the hypervisor asks for, and the list of exits the
 * SDM says those controls call for (vol. 3C, 26.1: unconditional exits; 26.1.3:
 * exits under the controls of 25.6). A program is 64-bit code for a flat
 * binary (hvsim's loader maps it and starts it in ring 0) ending in CLI; HLT.
 *
 *   fc.assert(fc.property(hypervisorProgram(), (p) => {
 *     const vm = createVm(vmConfig({ exits: p.exits }));
 *     vm.load(programImage(p), { format: 'flat', mode: '64', load: PROGRAM_BASE });
 *     ... run it, and compare the exits with expectedExits(p, masksOf(vm)) ...
 *   }));
 */
import fc from 'fast-check';
import { ExitReason } from '../vmcs/exit-reasons.js';
import type { ExitConfig } from '../src/hv/config.js';

/** Where programImage() is loaded and started (a flat binary in 64-bit mode). */
export const PROGRAM_BASE = 0x100000;
/** The stack steps that need one use (the loader maps the first MiBs one to one). */
export const STACK_TOP = PROGRAM_BASE + 0x80000;

/** Why a step's exiting instruction exits (or not): the control it depends on. */
export type ExitCause =
  | { kind: 'always'; reason: number }                          // 26.1.2
  | { kind: 'io'; ports: readonly number[] }                    // 26.1.3, unconditional I/O or the I/O bitmaps
  | { kind: 'msr'; msr: number; write: boolean }                // the MSR bitmaps
  | { kind: 'control'; reason: number; control: keyof ExitConfig }
  | { kind: 'cr0'; flip: number } | { kind: 'cr4'; flip: number }; // MOV to CR0/CR4 under the guest/host masks (25.6.6)

/** An instruction of a step that may exit: its offset in the step, its length, and what decides. */
export interface ExitPoint { readonly at: number; readonly length: number; readonly cause: ExitCause }

/** One step: a few instructions, some of which may exit. */
export interface ProgramStep {
  readonly bytes: readonly number[];
  readonly points: readonly ExitPoint[];
  readonly text: string;
}

export interface HypervisorProgram {
  readonly steps: readonly ProgramStep[];
  /** The exits the hypervisor takes (the rest as vmConfig's defaults). */
  readonly exits: Partial<ExitConfig>;
}

/** An exit as a trace lists it: basic reason, guest RIP and VM-exit instruction length. */
export interface ExpectedExit { readonly reason: number; readonly rip: number; readonly length: number }

const R = ExitReason;
const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const movEax = (v: number): number[] => [0xb8, ...le32(v)];
const movEcx = (v: number): number[] => [0xb9, ...le32(v)];
const movEdx = (v: number): number[] => [0xba, ...le32(v)];

/** Setup instructions that never exit, the instruction that may, and more that never do. */
function step(before: number[], insn: number[], after: number[], cause: ExitCause, text: string): ProgramStep {
  return { bytes: [...before, ...insn, ...after], points: [{ at: before.length, length: insn.length, cause }], text };
}

/** Register-only arithmetic: never exits. */
const ordinary: fc.Arbitrary<ProgramStep> = fc.record({ form: fc.integer({ min: 0, max: 3 }), v: fc.integer({ min: 0, max: 0xffffffff }) })
  .map(({ form, v }) => {
    const bytes = [
      [0xbb, ...le32(v)],          // mov ebx, imm32
      [0x01, 0xd8],                // add eax, ebx
      [0x0f, 0xaf, 0xc3],          // imul eax, ebx
      [0x48, 0x31, 0xc3],          // xor rbx, rax
    ][form]!;
    return { bytes, points: [], text: ['mov ebx', 'add', 'imul', 'xor'][form]! };
  });

/**
 * CPUID of a leaf whose values the hypervisor gives as the processor does but
 * for two bits of leaf 1's ECX it changes on purpose (5, VMX: not offered; 31,
 * running under a hypervisor), which the step clears after it.
 */
const cpuid = fc.constantFrom(0, 1, 7, 0x80000000, 0x80000001, 0x80000008).map((leaf) =>
  step([...movEax(leaf), 0x31, 0xc9], [0x0f, 0xa2], leaf === 1 ? [0x81, 0xe1, ...le32(~0x80000020)] : [],
    { kind: 'always', reason: R.CPUID }, `cpuid 0x${leaf.toString(16)}`));

/** IN/OUT on the POST port and the CMOS index/data ports, byte and word, imm8 and DX forms. */
const io = fc.record({
  port: fc.constantFrom(0x70, 0x71, 0x80), isIn: fc.boolean(), word: fc.boolean(), dx: fc.boolean(), value: fc.integer({ min: 0, max: 0x7f }),
}).map(({ port, isIn, word, dx, value }) => {
  const opcode = (dx ? (isIn ? 0xec : 0xee) : (isIn ? 0xe4 : 0xe6)) + (word ? 1 : 0);
  const insn = [...(word ? [0x66] : []), opcode, ...(dx ? [] : [port])];
  const ports = word ? [port, port + 1] : [port];
  return step([...movEax(value), ...movEdx(port)], insn, [], { kind: 'io', ports }, `${isIn ? 'in' : 'out'} ${word ? 16 : 8}-bit port 0x${port.toString(16)}${dx ? ' (dx)' : ''}`);
});

/** MSRs any guest may write and read back (SDM vol. 4, table 2-2); the values keep them valid. */
const MSRS: readonly [number, (v: number) => [number, number]][] = [
  [0x174, (v) => [v & 0xffff, 0]],           // IA32_SYSENTER_CS
  [0x175, (v) => [v, 0]],                    // IA32_SYSENTER_ESP
  [0x176, (v) => [v, 0]],                    // IA32_SYSENTER_EIP
  [0xc0000081, (v) => [v, v ^ 0x5a5a5a5a]],  // IA32_STAR
  [0xc0000084, (v) => [v, 0]],               // IA32_FMASK
  [0xc0000102, (v) => [v, 0]],               // IA32_KERNEL_GS_BASE
  [0xc0000103, (v) => [v, 0]],               // IA32_TSC_AUX
  [0xc0000100, (v) => [v, 0]],               // IA32_FS_BASE
  [0xc0000101, (v) => [v, 0]],               // IA32_GS_BASE
  [0x277, (v) => [v & 1 ? 0x00070406 : 0x06060606, 0x00070406]], // IA32_PAT: valid memory types only
  [0xc0000080, (v) => [0x500 | (v & 0x801), 0]],                  // IA32_EFER: LME and LMA as they are, SCE and NXE free
];

const msr = fc.record({ which: fc.integer({ min: 0, max: MSRS.length - 1 }), write: fc.boolean(), v: fc.integer({ min: 0, max: 0xffffffff }) })
  .map(({ which, write, v }) => {
    const [number, value] = MSRS[which]!;
    const [lo, hi] = value(v);
    return step([...movEcx(number), ...movEax(lo), ...movEdx(hi)], write ? [0x0f, 0x30] : [0x0f, 0x32], [],
      { kind: 'msr', msr: number, write }, `${write ? 'wrmsr' : 'rdmsr'} 0x${number.toString(16)}`);
  });

/** CR0 bits a ring-0 guest may flip without a fault or a change of mode: MP, EM, TS, NE, WP, AM. */
const CR0_FLIPPABLE = [1 << 1, 1 << 2, 1 << 3, 1 << 5, 1 << 16, 1 << 18];
/** CR4 bits likewise: TSD, DE, PCE, OSXMMEXCPT. */
const CR4_FLIPPABLE = [1 << 2, 1 << 3, 1 << 8, 1 << 10];
const flipOf = (bits: readonly number[]): fc.Arbitrary<number> =>
  fc.subarray([...bits], { minLength: 1 }).map((b) => b.reduce((x, y) => x | y, 0) >>> 0);

/** MOV rax, CRn; XOR eax, flip; MOV CRn, rax (MOV from CR0/CR4 never exits, 26.1.3). */
const movToCr = fc.oneof(
  flipOf(CR0_FLIPPABLE).map((flip) => step([0x0f, 0x20, 0xc0, 0x35, ...le32(flip)], [0x0f, 0x22, 0xc0], [], { kind: 'cr0', flip }, `mov cr0 ^ 0x${flip.toString(16)}`)),
  flipOf(CR4_FLIPPABLE).map((flip) => step([0x0f, 0x20, 0xe0, 0x35, ...le32(flip)], [0x0f, 0x22, 0xe0], [], { kind: 'cr4', flip }, `mov cr4 ^ 0x${flip.toString(16)}`)),
);

const control = (reason: number, c: keyof ExitConfig): ExitCause => ({ kind: 'control', reason, control: c });
const CR_ACCESS = R.CONTROL_REGISTER_ACCESS;

/** Exits under a processor-based control of their own (25.6.2). */
const controlled: fc.Arbitrary<ProgramStep> = fc.oneof(
  fc.constant(step([], [0x0f, 0x20, 0xd8], [], control(CR_ACCESS, 'cr3Store'), 'mov rax, cr3')),
  // MOV to CR3 of the value MOV from CR3 gives: two exit points (the CR3-target count is 0, 26.1.3).
  fc.constant({ bytes: [0x0f, 0x20, 0xd8, 0x0f, 0x22, 0xd8], text: 'mov rax, cr3; mov cr3, rax', points: [
    { at: 0, length: 3, cause: control(CR_ACCESS, 'cr3Store') }, { at: 3, length: 3, cause: control(CR_ACCESS, 'cr3Load') }] }),
  fc.constant(step([], [0x44, 0x0f, 0x20, 0xc0], [], control(CR_ACCESS, 'cr8Store'), 'mov rax, cr8')),
  fc.integer({ min: 0, max: 15 }).map((v) => step(movEax(v), [0x44, 0x0f, 0x22, 0xc0], [], control(CR_ACCESS, 'cr8Load'), `mov cr8, ${v}`)),
  fc.constant(step([], [0x0f, 0x31], [], control(R.RDTSC, 'rdtsc'), 'rdtsc')),
  fc.constant(step([], [0x0f, 0x01, 0xf9], [], control(R.RDTSCP, 'rdtsc'), 'rdtscp')),
  fc.integer({ min: 0, max: 0x3ff }).map((page) => step(movEax(page << 12), [0x0f, 0x01, 0x38], [], control(R.INVLPG, 'invlpg'), `invlpg [0x${(page << 12).toString(16)}]`)),
  // INVPCID rax, [rsp] with the descriptor (PCID 0, an address) pushed on a stack of its own (STACK_TOP):
  // with "enable INVPCID", under INVLPG exiting.
  fc.record({ type: fc.integer({ min: 0, max: 3 }), page: fc.integer({ min: 0, max: 0x3ff }) }).map(({ type, page }) =>
    step([0xbc, ...le32(STACK_TOP), 0x68, ...le32(page << 12), 0x6a, 0x00, ...movEax(type)], [0x66, 0x0f, 0x38, 0x82, 0x04, 0x24], [0x48, 0x83, 0xc4, 0x10],
      control(R.INVPCID, 'invlpg'), `invpcid type ${type} [0x${(page << 12).toString(16)}]`)),
  fc.constant(step([], [0xf3, 0x90], [], control(R.PAUSE, 'pause'), 'pause')),
  fc.constant(step([], [0x0f, 0x09], [], control(R.WBINVD_WBNOINVD, 'wbinvd'), 'wbinvd')),
  fc.constant(step([], [0x0f, 0x21, 0xf8], [], control(R.MOV_DR, 'movDr'), 'mov rax, dr7')),
  fc.constant(step(movEax(0x400), [0x0f, 0x23, 0xf8], [], control(R.MOV_DR, 'movDr'), 'mov dr7, rax')),
);

/** Ports and MSRs the choices below draw from. */
const PASSTHROUGH_PORTS = [0x70, 0x71, 0x80, 0x81];
const INTERCEPTABLE_MSRS = MSRS.map(([n]) => n);

/** A random choice of the exits of vmConfig's `exits` that these programs exercise. */
export const exitChoices: fc.Arbitrary<Partial<ExitConfig>> = fc.record({
  hlt: fc.boolean(), invlpg: fc.boolean(), rdtsc: fc.boolean(), pause: fc.boolean(), wbinvd: fc.boolean(),
  cr3Load: fc.boolean(), cr3Store: fc.boolean(), cr8Load: fc.boolean(), cr8Store: fc.boolean(), movDr: fc.boolean(),
  io: fc.constantFrom('unconditional', 'bitmap') as fc.Arbitrary<'unconditional' | 'bitmap'>,
  ioPassthrough: fc.subarray(PASSTHROUGH_PORTS),
  msrBitmaps: fc.boolean(),
  msrIntercepts: fc.subarray(INTERCEPTABLE_MSRS),
  cr0Mask: fc.subarray(CR0_FLIPPABLE).map((b) => b.reduce((x, y) => x | y, 0)),
  cr4Mask: fc.subarray(CR4_FLIPPABLE).map((b) => b.reduce((x, y) => x | y, 0)),
});

/** Any one step. */
export const programStep: fc.Arbitrary<ProgramStep> = fc.oneof(ordinary, cpuid, io, msr, movToCr, controlled);

/** A program of 1 to `maxSteps` steps and the exits its hypervisor takes. */
export function hypervisorProgram(maxSteps = 12): fc.Arbitrary<HypervisorProgram> {
  return fc.record({ steps: fc.array(programStep, { minLength: 1, maxLength: maxSteps }), exits: exitChoices });
}

/** The flat binary: the steps in order, then CLI; HLT. */
export function programImage(p: HypervisorProgram): Uint8Array {
  return Uint8Array.from([...p.steps.flatMap((s) => s.bytes), 0xfa, 0xf4]);
}

/** What the VMCS holds that the expectation needs beyond the configuration: the CR0/CR4 guest/host masks. */
export interface OwnedBits { readonly cr0Mask: number; readonly cr4Mask: number; readonly msrIntercepts: readonly number[] }

/**
 * The exits, in order, that the SDM says the program takes with `exits`
 * (defaults as vmConfig's: HLT exiting and I/O bitmaps on), given the masks the
 * VMCS holds and the MSRs the hypervisor intercepts besides the configured ones.
 * Exits of the hypervisor's own making (its timer) are not in it.
 */
export function expectedExits(p: HypervisorProgram, owned: OwnedBits): ExpectedExit[] {
  const x = p.exits, out: ExpectedExit[] = [];
  let at = PROGRAM_BASE;
  for (const s of p.steps) {
    for (const e of s.points) if (exits(e.cause, x, owned)) out.push({ reason: reasonOf(e.cause), rip: at + e.at, length: e.length });
    at += s.bytes.length;
  }
  // CLI; HLT: HLT exiting (26.1.3), on unless turned off.
  if (x.hlt !== false) out.push({ reason: R.HLT, rip: at + 1, length: 1 });
  return out;
}

function reasonOf(c: ExitCause): number {
  switch (c.kind) {
    case 'always': case 'control': return c.reason;
    case 'io': return R.IO_INSTRUCTION;
    case 'msr': return c.write ? R.WRMSR : R.RDMSR;
    default: return R.CONTROL_REGISTER_ACCESS;
  }
}

function exits(c: ExitCause, x: Partial<ExitConfig>, owned: OwnedBits): boolean {
  switch (c.kind) {
    case 'always': return true;
    // Unconditional I/O exiting, or a bit set in the I/O bitmaps for any port the access touches (25.6.4).
    case 'io': return x.io === 'unconditional' || c.ports.some((port) => !(x.ioPassthrough ?? []).includes(port));
    // Without MSR bitmaps every RDMSR/WRMSR exits; with them, those whose bit is set (25.6.9).
    case 'msr': return x.msrBitmaps === false || owned.msrIntercepts.includes(c.msr);
    // A bit set in the mask whose new value differs from the read shadow: the flipped bits (25.6.6, 26.1.3).
    case 'cr0': return (c.flip & owned.cr0Mask) !== 0;
    case 'cr4': return (c.flip & owned.cr4Mask) !== 0;
    // These controls are off unless chosen (vmConfig's defaults).
    case 'control': return x[c.control] === true;
  }
}
