/**
 * Differential testing of the model's instruction semantics against the host
 * processor (fuzz/native/native.ts runs one instruction natively at CPL 3 in
 * 64-bit mode). For each instruction form of the opcode table a random machine
 * state is built so that every memory reference lands in the native data
 * window and every control transfer lands on the HLT-filled code page; both
 * sides run the instruction and their final states are compared, masking only
 * what the SDM leaves undefined.
 */
import fc from 'fast-check';
import { Cpu, type StopReason } from '../src/cpu/cpu.js';
import { OpMap } from '../src/cpu/insn.js';
import { run } from '../src/cpu/run.js';
import { AF, CF, DF, GPR_NAMES, IF, OF, PF, RF, SF, VECTOR_NAMES, ZF } from '../src/cpu/regs.js';
import {
  edgeBiasedInteger, instructionArbitrary, isStringForm,
  type EncodeOptions, type GeneratedInstruction, type InstructionForm, type MemoryOperand,
} from './instructions.js';
import { CODE_BASE, DATA_BASE, DATA_SIZE, runNative, SIG, type MachineState, type NativeOutcome } from './native/native.js';

const RCX = 1, RDX = 2, RBX = 3, RSP = 4, RBP = 5, RSI = 6, RDI = 7;
const MASK64 = (1n << 64n) - 1n;
const STATUS = CF | PF | AF | ZF | SF | OF;
const PAGE = 4096;
/** Where RSP points: the middle of the data window, so PUSH and POP both stay inside it. */
export const STACK_POINTER = BigInt(DATA_BASE + 4096);
/** The model's physical memory: enough to back the native code page at CODE_BASE (0x40000000). */
const MODEL_MEMORY = 0x41000000 + 0x1000;
/** Instructions the model may run: the instruction, then the HLT that stops it. */
const MODEL_BUDGET = 4;

/** How instructions are encoded for the differential test: everything aimed at the native pages. */
export const NATIVE_ENCODING: EncodeOptions = {
  branchesInPage: true,
  codeAddress: CODE_BASE,
  dataWindow: { base: DATA_BASE, size: DATA_SIZE },
};

// ---- what is not compared ---------------------------------------------------------

/** A form left out of the differential test, matched by mnemonic or by opcode (map * 256 + byte, /reg). */
export interface Skip {
  readonly names?: readonly string[];
  readonly opcodes?: readonly { readonly key: number; readonly reg?: number }[];
  /** Only the encodings with a register operand (ModRM.mod = 11b) are left out; memory forms are tested. */
  readonly registerForm?: boolean;
  readonly reason: string;
}

const ONE = OpMap.ONE * 256, TWO = OpMap.TWO * 256;

/**
 * Every form the differential test leaves out, with the reason. The host runs
 * the instruction as an ordinary Linux process at CPL 3, so privileged,
 * I/O, time-dependent and environment-dependent instructions cannot be compared.
 */
export const SKIPS: readonly Skip[] = [
  { names: ['hlt'], reason: 'privileged (#GP at CPL 3), and it is the end marker that fills the code page' },
  { names: ['cli', 'sti'], reason: 'IOPL-sensitive: the host runs with IOPL 0 (SDM vol. 2, CLI/STI)' },
  { names: ['int', 'int1', 'int3', 'into'], reason: 'software interrupts end in the host kernel (SIGTRAP/SIGSEGV), not in a comparable state' },
  { names: ['ud0', 'ud1', 'ud2', '(bad)'], reason: 'defined to raise #UD; nothing to compare' },
  {
    names: ['in', 'out', 'ins', 'outs', 'insb', 'insw', 'insd', 'outsb', 'outsw', 'outsd'],
    opcodes: [0xe4, 0xe5, 0xe6, 0xe7, 0xec, 0xed, 0xee, 0xef, 0x6c, 0x6d, 0x6e, 0x6f].map((b) => ({ key: ONE + b })),
    reason: 'I/O: privileged at IOPL 0 and has no effect to compare',
  },
  { names: ['rdtsc', 'rdtscp', 'rdpmc'], reason: 'reads time or performance counters' },
  { names: ['rdrand', 'rdseed'], reason: 'random numbers' },
  { names: ['cpuid', 'xgetbv', 'rdpid'], reason: 'reports the host processor and OS configuration, not the model\'s' },
  {
    names: ['syscall', 'sysret', 'sysenter', 'sysexit', 'iret', 'iretd', 'iretq', 'retf', 'lret', 'callf', 'jmpf'],
    opcodes: [{ key: ONE + 0xff, reg: 3 }, { key: ONE + 0xff, reg: 5 }, { key: ONE + 0xca }, { key: ONE + 0xcb },
      { key: ONE + 0xcf }, { key: TWO + 0x05 }, { key: TWO + 0x07 }, { key: TWO + 0x34 }, { key: TWO + 0x35 }],
    reason: 'far transfers and system calls load CS/SS from the host\'s descriptor tables or enter its kernel',
  },
  {
    names: ['lds', 'les', 'lfs', 'lgs', 'lss'],
    opcodes: [{ key: ONE + 0x8c }, { key: ONE + 0x8e }, { key: TWO + 0xa0 }, { key: TWO + 0xa1 },
      { key: TWO + 0xa8 }, { key: TWO + 0xa9 }, { key: TWO + 0xb2 }, { key: TWO + 0xb4 }, { key: TWO + 0xb5 }],
    reason: 'segment registers: the host\'s selectors and descriptors differ from the model\'s flat setup',
  },
  {
    names: ['sgdt', 'sidt', 'sldt', 'str', 'smsw', 'lgdt', 'lidt', 'lldt', 'ltr', 'lmsw', 'lar', 'lsl', 'verr', 'verw',
      'clts', 'invd', 'wbinvd', 'invlpg', 'rdmsr', 'wrmsr', 'swapgs', 'xsetbv', 'monitor', 'mwait', 'clac', 'stac'],
    opcodes: [{ key: TWO + 0x00 }, { key: TWO + 0x01 }, { key: TWO + 0x06 }, { key: TWO + 0x08 }, { key: TWO + 0x09 },
      { key: TWO + 0x20 }, { key: TWO + 0x21 }, { key: TWO + 0x22 }, { key: TWO + 0x23 }, { key: TWO + 0x30 },
      { key: TWO + 0x32 }, { key: TWO + 0x02 }, { key: TWO + 0x03 }],
    reason: 'system instructions: privileged, or descriptor-table reads the host kernel emulates (UMIP)',
  },
  { names: ['rdfsbase', 'rdgsbase', 'wrfsbase', 'wrgsbase'], reason: 'FS/GS bases belong to the host process (and FSGSBASE is off there)' },
  {
    names: ['fxsave', 'fxrstor', 'xsave', 'xrstor', 'xsaveopt', 'xsavec', 'xsaves', 'xrstors', 'fxsave64', 'fxrstor64'],
    reason: 'extended-state images include x87 and host-specific state the model does not hold',
  },
  {
    opcodes: [{ key: TWO + 0x0d }], registerForm: true,
    reason: 'vendor-specific: 0F 0D with a register operand is #UD on AMD (PREFETCH/PREFETCHW need memory)',
  },
];

function matches(s: Skip, form: InstructionForm): boolean {
  const key = form.map * 256 + form.opcode;
  return s.names?.includes(form.name) === true ||
    s.opcodes?.some((o) => o.key === key && (o.reg === undefined || o.reg === form.reg)) === true;
}

/** The reason `form` is left out of the differential test, or null when it is tested. */
export function skipReason(form: InstructionForm): string | null {
  for (const s of SKIPS) if (!s.registerForm && matches(s, form)) return s.reason;
  return null;
}

/** What decides an undefined flag or result: the operand size, the masked count, the host's final flags. */
export interface UndefinedContext {
  readonly opSize: number;
  /** Shift/rotate count after masking to 5 (6 with 64-bit operands) bits; 0 for other instructions. */
  readonly count: number;
  /** RFLAGS the host ended with. */
  readonly hostFlags: number;
}

/** The flags an instruction leaves undefined, with the SDM section that says so. */
export interface UndefinedFlags {
  readonly flags: number | ((u: UndefinedContext) => number);
  readonly sdm: string;
}

/** SHL/SHR/SAL: AF for a nonzero count, OF unless the count is 1, CF when the count reaches the operand size. */
const shiftLogical = (u: UndefinedContext): number =>
  u.count === 0 ? 0 : AF | (u.count !== 1 ? OF : 0) | (u.count >= 8 * u.opSize ? CF : 0);
const shiftArith = (u: UndefinedContext): number => (u.count === 0 ? 0 : AF | (u.count !== 1 ? OF : 0));
const rotate = (u: UndefinedContext): number => (u.count === 0 || u.count === 1 ? 0 : OF);
const doubleShift = (u: UndefinedContext): number =>
  u.count === 0 ? 0 : u.count > 8 * u.opSize ? STATUS : AF | (u.count !== 1 ? OF : 0);

/**
 * The one table of undefined flags, by mnemonic: these flag bits are masked
 * from the comparison (each instruction's "Flags Affected" section in SDM vol. 2).
 */
export const UNDEFINED_FLAGS: Readonly<Record<string, UndefinedFlags>> = {
  and: { flags: AF, sdm: 'SDM vol. 2, AND: "The state of the AF flag is undefined"' },
  or: { flags: AF, sdm: 'SDM vol. 2, OR: AF undefined' },
  xor: { flags: AF, sdm: 'SDM vol. 2, XOR: AF undefined' },
  test: { flags: AF, sdm: 'SDM vol. 2, TEST: AF undefined' },
  mul: { flags: SF | ZF | AF | PF, sdm: 'SDM vol. 2, MUL: SF, ZF, AF and PF undefined' },
  imul: { flags: SF | ZF | AF | PF, sdm: 'SDM vol. 2, IMUL: SF, ZF, AF and PF undefined' },
  div: { flags: STATUS, sdm: 'SDM vol. 2, DIV: CF, OF, SF, ZF, AF and PF undefined' },
  idiv: { flags: STATUS, sdm: 'SDM vol. 2, IDIV: CF, OF, SF, ZF, AF and PF undefined' },
  bsf: { flags: CF | OF | SF | AF | PF, sdm: 'SDM vol. 2, BSF: CF, OF, SF, AF and PF undefined' },
  bsr: { flags: CF | OF | SF | AF | PF, sdm: 'SDM vol. 2, BSR: CF, OF, SF, AF and PF undefined' },
  bt: { flags: OF | SF | AF | PF, sdm: 'SDM vol. 2, BT: OF, SF, AF and PF undefined' },
  bts: { flags: OF | SF | AF | PF, sdm: 'SDM vol. 2, BTS: OF, SF, AF and PF undefined' },
  btr: { flags: OF | SF | AF | PF, sdm: 'SDM vol. 2, BTR: OF, SF, AF and PF undefined' },
  btc: { flags: OF | SF | AF | PF, sdm: 'SDM vol. 2, BTC: OF, SF, AF and PF undefined' },
  shl: { flags: shiftLogical, sdm: 'SDM vol. 2, SAL/SAR/SHL/SHR: AF undefined for a nonzero count, OF unless 1-bit, CF for SHL/SHR when count >= size' },
  sal: { flags: shiftLogical, sdm: 'SDM vol. 2, SAL/SAR/SHL/SHR (as SHL)' },
  shr: { flags: shiftLogical, sdm: 'SDM vol. 2, SAL/SAR/SHL/SHR (as SHL)' },
  sar: { flags: shiftArith, sdm: 'SDM vol. 2, SAL/SAR/SHL/SHR: AF undefined for a nonzero count, OF unless 1-bit' },
  rol: { flags: rotate, sdm: 'SDM vol. 2, RCL/RCR/ROL/ROR: OF defined only for 1-bit rotates' },
  ror: { flags: rotate, sdm: 'SDM vol. 2, RCL/RCR/ROL/ROR: OF defined only for 1-bit rotates' },
  rcl: { flags: rotate, sdm: 'SDM vol. 2, RCL/RCR/ROL/ROR: OF defined only for 1-bit rotates' },
  rcr: { flags: rotate, sdm: 'SDM vol. 2, RCL/RCR/ROL/ROR: OF defined only for 1-bit rotates' },
  shld: { flags: doubleShift, sdm: 'SDM vol. 2, SHLD: AF undefined, OF unless 1-bit; count > size: all flags undefined' },
  shrd: { flags: doubleShift, sdm: 'SDM vol. 2, SHRD: AF undefined, OF unless 1-bit; count > size: all flags undefined' },
  lzcnt: { flags: OF | SF | AF | PF, sdm: 'SDM vol. 2, LZCNT: OF, SF, PF and AF undefined' },
  tzcnt: { flags: OF | SF | AF | PF, sdm: 'SDM vol. 2, TZCNT: OF, SF, PF and AF undefined' },
  andn: { flags: AF | PF, sdm: 'SDM vol. 2, ANDN: AF and PF undefined' },
  bextr: { flags: AF | SF | PF, sdm: 'SDM vol. 2, BEXTR: AF, SF and PF undefined' },
  blsi: { flags: AF | PF, sdm: 'SDM vol. 2, BLSI: AF and PF undefined' },
  blsmsk: { flags: AF | PF, sdm: 'SDM vol. 2, BLSMSK: AF and PF undefined' },
  blsr: { flags: AF | PF, sdm: 'SDM vol. 2, BLSR: AF and PF undefined' },
  bzhi: { flags: AF | PF, sdm: 'SDM vol. 2, BZHI: AF and PF undefined' },
};

/** Opcodes whose count operand decides undefined flags: map*256+byte → where the count comes from. */
const COUNT_SOURCE: Readonly<Record<number, 'imm' | 'one' | 'cl'>> = {
  [ONE + 0xc0]: 'imm', [ONE + 0xc1]: 'imm', [ONE + 0xd0]: 'one', [ONE + 0xd1]: 'one', [ONE + 0xd2]: 'cl', [ONE + 0xd3]: 'cl',
  [TWO + 0xa4]: 'imm', [TWO + 0xac]: 'imm', [TWO + 0xa5]: 'cl', [TWO + 0xad]: 'cl',
};

function maskedCount(c: DifferentialCase): number {
  const { form, layout } = c.insn;
  const src = COUNT_SOURCE[form.map * 256 + form.opcode];
  if (src === undefined) return 0;
  const raw = src === 'one' ? 1 : src === 'imm' ? Number(layout.imm ?? 0n) : Number(c.state.gpr[RCX]! & 0xffn);
  return raw & (layout.opSize === 8 ? 63 : 31);
}

/** Parts of the result the SDM leaves undefined for this case: a register mask or memory bytes to ignore. */
interface UndefinedResult { gpr?: { reg: number; mask: bigint }; mem?: { offset: number; length: number }; why: string }

function undefinedResult(c: DifferentialCase, u: UndefinedContext, ea: bigint | null): UndefinedResult | null {
  const { form, layout } = c.insn;
  switch (form.name) {
    case 'bsf': case 'bsr':
      // SDM vol. 2, BSF/BSR: "If the content of the source operand is 0, the content of the destination operand is undefined."
      return (u.hostFlags & ZF) ? { gpr: { reg: layout.reg, mask: MASK64 }, why: 'BSF/BSR destination with a zero source' } : null;
    case 'bswap':
      // SDM vol. 2, BSWAP: with a 16-bit operand the result is undefined.
      return layout.opSize === 2 ? { gpr: { reg: layout.reg, mask: 0xffffn }, why: 'BSWAP r16' } : null;
    case 'shld': case 'shrd':
      // SDM vol. 2, SHLD/SHRD: "If the count is greater than the operand size, the result is undefined."
      if (u.count <= 8 * u.opSize) return null;
      if (layout.rm !== null) return { gpr: { reg: layout.rm, mask: (1n << BigInt(8 * u.opSize)) - 1n }, why: 'SHLD/SHRD count > operand size' };
      return ea === null ? null : { mem: { offset: Number(ea) - DATA_BASE, length: u.opSize }, why: 'SHLD/SHRD count > operand size' };
    default:
      return null;
  }
}

// ---- machine states -------------------------------------------------------------

/** One differential test case: an instruction and the state it starts from. */
export interface DifferentialCase {
  readonly insn: GeneratedInstruction;
  readonly state: MachineState;
  /** How to find the case again (seed and index); shown in mismatch reports. */
  readonly label?: string;
}

/** xorshift32: cheap deterministic filler for the XMM registers and the 8 KiB data window. */
function prng(seed: number): () => number {
  let x = seed | 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    return x >>> 0;
  };
}

const F32_EDGES = [0, -0, 1, -1, 0.5, 1.5, 2.5, -2.5, 3.4028234663852886e38, 1.1754943508222875e-38, 1e-45,
  Infinity, -Infinity, NaN, 2147483648, -2147483648, 2147483520, 9.223372036854776e18, 16777216, 0.1];
const F64_EDGES = [0, -0, 1, -1, 0.5, 1.5, 2.5, -2.5, Number.MAX_VALUE, 2.2250738585072014e-308, 5e-324,
  Infinity, -Infinity, NaN, 2147483648, -2147483649, 2147483647.5, 9.223372036854776e18, -9.223372036854776e18, 0.1];

/** XMM contents: per register random bytes, float32 or float64 lanes with edge values, or small integers. */
function fillXmm(seed: number): Uint8Array {
  const next = prng(seed), out = new Uint8Array(256), view = new DataView(out.buffer);
  for (let r = 0; r < 16; r++) {
    const kind = next() % 5;
    for (let k = 0; k < 4; k++) {
      const o = 16 * r + 4 * k, pick = next();
      if (kind === 0) view.setUint32(o, next(), true);
      else if (kind === 1) view.setFloat32(o, pick & 1 ? F32_EDGES[pick % F32_EDGES.length]! : (next() / 0x10000 - 32768), true);
      else if (kind === 2 && (k & 1) === 0) {
        view.setFloat64(o, pick & 1 ? F64_EDGES[pick % F64_EDGES.length]! : (next() - 0x80000000) / 977, true);
      } else if (kind === 3) view.setInt32(o, (pick % 5) - 1, true);
      else if (kind === 4) view.setUint32(o, [0, 0x7f, 0x80, 0xff][pick & 3]! * 0x01010101 ^ (next() & 0x80008000), true);
    }
  }
  if (seed & 1) out.fill(0, 16 * (seed >>> 28), 16 * (seed >>> 28) + 16); // sometimes an all-zero register
  return out;
}

function fillMemory(seed: number): Uint8Array {
  const next = prng(seed), out = new Uint8Array(DATA_SIZE);
  for (let k = 0; k < DATA_SIZE; k += 4) {
    const v = next();
    out[k] = v; out[k + 1] = v >>> 8; out[k + 2] = v >>> 16; out[k + 3] = v >>> 24;
  }
  return out;
}

function read64(mem: Uint8Array, off: number): bigint {
  let v = 0n;
  for (let k = 7; k >= 0; k--) v = (v << 8n) | BigInt(mem[off + k] ?? 0);
  return v;
}
function write64(mem: Uint8Array, off: number, v: bigint): void {
  for (let k = 0; k < 8; k++) mem[off + k] = Number((v >> BigInt(8 * k)) & 0xffn);
}

/** The linear address of the instruction's memory operand in the given state (64-bit mode, no FS/GS). */
export function effectiveAddress(insn: GeneratedInstruction, gpr: readonly bigint[]): bigint | null {
  const { mem, moffs, addressSize } = insn.layout;
  if (moffs !== null) return moffs;
  if (mem === null) return null;
  let ea = BigInt(mem.disp);
  if (mem.base === 16) ea += BigInt(CODE_BASE + insn.bytes.length);
  else if (mem.base >= 0) ea += gpr[mem.base]!;
  if (mem.index >= 0) ea += gpr[mem.index]! << BigInt(mem.scale);
  return addressSize === 4 ? BigInt.asUintN(32, ea) : BigInt.asUintN(64, ea);
}

/** Random raw material of a case; turned into a consistent state by `buildCase`. */
interface Raw {
  insn: GeneratedInstruction;
  gpr: bigint[];
  flags: number;
  xmmSeed: number;
  memSeed: number;
  dice: number[];
  memValue: bigint;
  memValue2: bigint;
  upper: bigint;
}

/** True when register `r` takes part in the memory operand's address. */
function usesRegister(m: MemoryOperand | null, r: number): boolean {
  return m !== null && (m.base === r || m.index === r);
}

/** A pointer into the data window at [lo, hi) bytes, 8-byte aligned when `align`. */
function windowPointer(d: number, lo: number, hi: number, align = false): bigint {
  let off = lo + (d % (hi - lo));
  if (align) off &= ~7;
  return BigInt(DATA_BASE + off);
}

/** A code-page address past the instruction: where HLT waits. */
function codeTarget(d: number, len: number): bigint {
  return BigInt(CODE_BASE + len + (d % (PAGE - len)));
}

/**
 * Makes a raw random state consistent with the instruction: memory operands
 * inside the data window, the stack in the window, implicit pointers (string
 * instructions, XLAT, ENTER/LEAVE) in it, branch targets on the code page.
 * Returns null when the instruction's operands cannot all be satisfied
 * (for instance BT [rax], rax).
 */
function buildCase(r: Raw): DifferentialCase | null {
  const { insn } = r;
  const { form, layout } = insn;
  const gpr = r.gpr.slice();
  const dice = r.dice;
  const mem = fillMemory(r.memSeed);
  const key = form.map * 256 + form.opcode;
  const garbageUpper = (v: bigint): bigint => (layout.addressSize === 4 && dice[9]! % 3 === 0 ? v | (r.upper << 32n) : v);
  gpr[RSP] = STACK_POINTER;
  if (layout.rm !== null && SKIPS.some((s) => s.registerForm && matches(s, form))) return null;

  // Implicit operands (SDM vol. 2: MOVS/CMPS/STOS/LODS/SCAS, XLAT, ENTER, LEAVE, MASKMOVDQU, LOOP, JrCXZ).
  if (isStringForm(form)) {
    gpr[RSI] = garbageUpper(windowPointer(dice[1]!, 1024, 7000));
    gpr[RDI] = garbageUpper(windowPointer(dice[2]!, 1024, 7000));
    gpr[RCX] = garbageUpper(BigInt(dice[3]! % 17));
  } else if (key === ONE + 0xd7) {
    gpr[RBX] = garbageUpper(windowPointer(dice[1]!, 1024, 6500));
  } else if (key === ONE + 0xc8 || key === ONE + 0xc9) {
    gpr[RBP] = windowPointer(dice[1]!, 2048, 6000, true);
    // ENTER: the new stack top (RSP - 8 * (level + 1) - size) must stay in the window; the host touches it.
    if (key === ONE + 0xc8 && 8 * ((layout.imm2! & 31) + 1) + Number(layout.imm!) > 4096 - 64) return null;
  } else if (key === TWO + 0xf7 && form.prefix === 0x66) {
    gpr[RDI] = garbageUpper(windowPointer(dice[2]!, 1024, 7000)); // MASKMOVDQU stores through DS:rDI
  } else if (key >= ONE + 0xe0 && key <= ONE + 0xe3) {
    gpr[RCX] = garbageUpper([0n, 1n, 2n, 3n, 0x100000000n, 0x100000001n, 0xffffffffn, r.gpr[RCX]!][dice[3]! & 7]!);
  }

  // The ModRM memory operand: base and index registers chosen so the address lands in the window.
  let ea = effectiveAddress(insn, gpr);
  if (layout.mem !== null && form.name !== 'lea') {
    const m = layout.mem;
    const offset = (1024 + (dice[0]! % 6144)) & ~(dice[0]! & 1 ? 15 : 0); // 16-byte aligned half of the time
    const target = BigInt(DATA_BASE + offset);
    const small = BigInt(dice[4]! % 64);
    if (m.index >= 0) gpr[m.index] = garbageUpper(small);
    if (m.base >= 0 && m.base < 16 && m.base !== RSP) {
      const k = 1n << BigInt(m.scale);
      if (m.index === m.base) {
        gpr[m.base] = garbageUpper(BigInt.asUintN(64, (target - BigInt(m.disp)) / (1n + k)));
      } else {
        gpr[m.base] = garbageUpper(BigInt.asUintN(64, target - BigInt(m.disp) - (m.index >= 0 ? small * k : 0n)));
      }
    }
    ea = effectiveAddress(insn, gpr);
    if (ea === null || ea < BigInt(DATA_BASE) || ea >= BigInt(DATA_BASE + DATA_SIZE - 64)) return null;
    // Boundary values where the operand is read, half of the time.
    if (dice[5]! & 1) {
      const off = Number(ea) - DATA_BASE;
      write64(mem, off, r.memValue);
      write64(mem, off + 8, r.memValue2);
    }
  } else if (layout.moffs !== null && ea !== null && dice[5]! & 1) {
    write64(mem, Number(ea) - DATA_BASE, r.memValue);
  }

  const len = insn.bytes.length;
  const sp = Number(STACK_POINTER) - DATA_BASE;
  if (key === ONE + 0xc2 || key === ONE + 0xc3) {
    // RET: the return address lands on the HLT-filled code page.
    write64(mem, sp, codeTarget(dice[6]!, len));
  } else if (key === ONE + 0x9d) {
    mem[sp + 1] = mem[sp + 1]! & ~1; // POPF: keep TF clear, a single-step trap would end the host run early
  } else if (key === ONE + 0xff && (form.reg === 2 || form.reg === 4)) {
    // Near CALL/JMP through r/m: the target is an address on the code page.
    const t = codeTarget(dice[6]!, len);
    if (layout.rm !== null) {
      if (layout.rm === RSP) return null;
      gpr[layout.rm] = t;
    } else {
      write64(mem, Number(ea!) - DATA_BASE, t);
    }
  } else if (form.map === OpMap.TWO && [0xa3, 0xab, 0xb3, 0xbb].includes(form.opcode) && layout.mem !== null) {
    // BT/BTS/BTR/BTC m, r: the register is a signed bit offset from the operand (SDM vol. 2, BT): keep it small.
    const m = layout.mem;
    if (layout.reg === m.base || layout.reg === m.index) return null;
    gpr[layout.reg] = BigInt.asUintN(64, BigInt((dice[7]! % 16000) - 8000));
  } else if (form.map === OpMap.TWO && (form.opcode === 0xb0 || form.opcode === 0xb1) && dice[7]! & 1 &&
    !usesRegister(layout.mem, 0)) {
    // CMPXCHG: make the accumulator equal to the destination half of the time.
    const z = BigInt(8 * layout.opSize), mask = (1n << z) - 1n;
    const dest = layout.rm !== null ? gpr[layout.rm]! : read64(mem, Number(ea!) - DATA_BASE);
    if (layout.opSize === 1 && layout.rm !== null && layout.rex === 0 && layout.rm >= 4) {
      gpr[0] = (gpr[0]! & ~0xffn) | ((gpr[layout.rm - 4]! >> 8n) & 0xffn);
    } else {
      gpr[0] = (gpr[0]! & ~mask) | (dest & mask);
    }
  } else if (form.map === OpMap.TWO && form.opcode === 0xc7 && form.reg === 1 && ea !== null && dice[7]! & 1 &&
    !usesRegister(layout.mem, 0) && !usesRegister(layout.mem, RDX)) {
    // CMPXCHG8B/16B: make EDX:EAX (RDX:RAX) equal to memory half of the time.
    const off = Number(ea) - DATA_BASE;
    if (layout.opSize === 8) { gpr[0] = read64(mem, off); gpr[RDX] = read64(mem, off + 8); }
    else { gpr[0] = read64(mem, off) & 0xffffffffn; gpr[RDX] = read64(mem, off + 4) & 0xffffffffn; }
  }

  // One case in 25: a non-canonical address (SDM vol. 1, 3.3.7.1: #GP, or #SS through RSP/RBP), which must
  // fault before the instruction changes anything; for near branches a non-canonical target (SDM vol. 2, JMP: #GP).
  if (dice[8]! % 25 === 0) {
    const m = layout.mem, top = 1n << 63n;
    if (key === ONE + 0xc2 || key === ONE + 0xc3) {
      write64(mem, sp, read64(mem, sp) ^ top);
    } else if (key === ONE + 0xff && (form.reg === 2 || form.reg === 4) && layout.rm !== null) {
      gpr[layout.rm] = gpr[layout.rm]! ^ top;
    } else if (key === ONE + 0xff && (form.reg === 2 || form.reg === 4) && ea !== null && dice[8]! & 1) {
      write64(mem, Number(ea) - DATA_BASE, read64(mem, Number(ea) - DATA_BASE) ^ top);
    } else if (m !== null && layout.addressSize === 8 && m.base >= 0 && m.base < 16 && m.base !== RSP &&
      m.base !== m.index && form.name !== 'lea') {
      gpr[m.base] = gpr[m.base]! ^ top;
    }
  }

  const state: MachineState = {
    gpr,
    rflags: BigInt((r.flags & (STATUS | DF)) | 2),
    xmm: fillXmm(r.xmmSeed),
    mem,
  };
  return { insn, state };
}

/**
 * Random differential cases for one form (64-bit mode), or null where the
 * random operands could not be made consistent (rare; callers drop them).
 */
export function differentialCase(form: InstructionForm): fc.Arbitrary<DifferentialCase | null> {
  return fc.record({
    insn: instructionArbitrary(form, 64, NATIVE_ENCODING),
    gpr: fc.array(edgeBiasedInteger(64), { minLength: 16, maxLength: 16 }),
    flags: fc.nat({ max: 0xfff }),
    xmmSeed: fc.integer(),
    memSeed: fc.integer(),
    dice: fc.array(fc.nat({ max: 0xffff }), { minLength: 10, maxLength: 10 }),
    memValue: edgeBiasedInteger(64),
    memValue2: edgeBiasedInteger(64),
    upper: fc.bigInt({ min: 1n, max: 0xffffffffn }),
  }).map(buildCase);
}

// ---- running the model -------------------------------------------------------------

interface ModelOutcome {
  stop: StopReason;
  rip: bigint;
  gpr: bigint[];
  rflags: number;
  xmm: Uint8Array;
  mem: Uint8Array;
}

function pageBytes(cpu: Cpu, pa: number): Uint8Array {
  const view = cpu.memory.page(pa / PAGE)!;
  return new Uint8Array(view.buffer, view.byteOffset, PAGE);
}

/** Runs the case on a fresh model at CPL 3 in flat 64-bit mode, with the host's page layout. */
function runModel(c: DifferentialCase): ModelOutcome {
  const cpu = new Cpu({ memorySize: MODEL_MEMORY });
  cpu.enterFlat64();
  cpu.cpl = 3;
  cpu.cr4 |= 1 << 9; // CR4.OSFXSR: SSE enabled, as Linux runs the host
  cpu.msrs.x87.initialize(); // the runner starts each case from the XSAVE initial state: FNINIT's FCW 037FH
  const { state } = c;
  for (let r = 0; r < 16; r++) {
    cpu.gpr[2 * r] = Number(state.gpr[r]! & 0xffffffffn) | 0;
    cpu.gpr[2 * r + 1] = Number((state.gpr[r]! >> 32n) & 0xffffffffn) | 0;
  }
  cpu.rflags = Number(state.rflags) | IF; // the host always runs with IF = 1
  new Uint8Array(cpu.xmm.buffer, cpu.xmm.byteOffset, 256).set(state.xmm);
  const code = pageBytes(cpu, CODE_BASE);
  code.fill(0xf4);
  code.set(c.insn.bytes);
  pageBytes(cpu, DATA_BASE).set(state.mem.subarray(0, PAGE));
  pageBytes(cpu, DATA_BASE + PAGE).set(state.mem.subarray(PAGE));
  cpu.ripLo = CODE_BASE;
  cpu.ripHi = 0;
  const stop = run(cpu, MODEL_BUDGET);
  const gpr: bigint[] = [];
  for (let r = 0; r < 16; r++) gpr.push(cpu.reg64(r));
  const mem = new Uint8Array(DATA_SIZE);
  mem.set(pageBytes(cpu, DATA_BASE), 0);
  mem.set(pageBytes(cpu, DATA_BASE + PAGE), PAGE);
  return {
    stop, rip: cpu.rip, gpr, rflags: cpu.rflags,
    xmm: new Uint8Array(cpu.xmm.buffer.slice(cpu.xmm.byteOffset, cpu.xmm.byteOffset + 256)), mem,
  };
}

// ---- comparing -----------------------------------------------------------------------

/** One disagreement between the model and the host. */
export interface Mismatch {
  readonly form: InstructionForm;
  readonly bytes: Uint8Array;
  readonly label: string;
  /** Bytes, form, operands, both outcomes, what differs and the initial state. */
  readonly message: string;
}

/** The result of {@link compareWithHost}. */
export interface ComparisonReport {
  readonly cases: number;
  readonly mismatches: readonly Mismatch[];
  /** Host outcomes by kind (e.g. `SIGSEGV@HLT`, `SIGFPE`), for coverage statistics. */
  readonly outcomes: Readonly<Record<string, number>>;
}

const SI_KERNEL = 0x80;
const SIGNAL_NAMES: Record<number, string> = { 11: 'SIGSEGV', 8: 'SIGFPE', 4: 'SIGILL', 5: 'SIGTRAP', 7: 'SIGBUS', 14: 'SIGALRM', 31: 'SIGSYS' };
const FLAG_NAMES: [number, string][] = [[CF, 'CF'], [PF, 'PF'], [AF, 'AF'], [ZF, 'ZF'], [SF, 'SF'], [1 << 8, 'TF'],
  [IF, 'IF'], [DF, 'DF'], [OF, 'OF'], [3 << 12, 'IOPL'], [1 << 14, 'NT'], [1 << 18, 'AC'], [1 << 21, 'ID']];

const hex = (v: bigint | number): string => '0x' + v.toString(16);
const hexBytes = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
const flagList = (f: number): string => FLAG_NAMES.filter(([b]) => f & b).map(([, n]) => n).join(' ') || '-';

/** The vectors of the model that stand for a host signal (Linux x86 traps: arch/x86/kernel/traps.c). */
function expectedVectors(h: NativeOutcome): number[] | 'budget' | null {
  switch (h.signal) {
    case SIG.SEGV: return h.siCode === SI_KERNEL ? [13] : null; // #GP; MAPERR/ACCERR would be #PF, which no run here expects
    case SIG.FPE: return h.siCode === 1 || h.siCode === 2 ? [0] : [16, 19]; // FPE_INTDIV/INTOVF: #DE; else x87/SIMD
    case SIG.ILL: return [6];
    case SIG.TRAP: return [1, 3];
    case SIG.BUS: return [12, 17]; // #SS, #AC
    case SIG.ALRM: return 'budget';
    default: return null;
  }
}

function hostOutcomeText(h: NativeOutcome, len: number): string {
  const name = SIGNAL_NAMES[h.signal] ?? `signal ${h.signal}`;
  const off = Number(h.rip - BigInt(CODE_BASE));
  const where = off >= len && off < PAGE ? ' (the HLT after it: the instruction completed)' : off === 0 ? ' (the instruction faulted)' : '';
  return `${name} si_code=${h.siCode} at ${hex(h.rip)}${where}`;
}

function modelOutcomeText(m: ModelOutcome): string {
  if (m.stop.kind === 'exception') {
    const v = VECTOR_NAMES[m.stop.vector] ?? `vector ${m.stop.vector}`;
    return `${v}${m.stop.errorCode === null ? '' : `(${m.stop.errorCode})`} at ${hex(m.rip)}`;
  }
  return `${m.stop.kind} at ${hex(m.rip)}`;
}

function regName(r: number): string { return GPR_NAMES[r] ?? `r${r}`; }

/** A short text of the generated operands: operand size, registers, memory operand. */
export function describeOperands(insn: GeneratedInstruction): string {
  const { layout, form } = insn;
  const parts = [`op${8 * layout.opSize}`];
  if (layout.addressSize !== 8) parts.push(`addr${8 * layout.addressSize}`);
  if (form.modrm) parts.push(`reg=${layout.reg}`);
  if (layout.rm !== null) parts.push(`rm=${layout.rm}`);
  if (layout.mem) {
    const m = layout.mem;
    const terms: string[] = [];
    if (m.base === 16) terms.push('rip'); else if (m.base >= 0) terms.push(regName(m.base));
    if (m.index >= 0) terms.push(`${regName(m.index)}*${1 << m.scale}`);
    if (m.disp || terms.length === 0) terms.push(m.disp < 0 ? '-' + hex(-m.disp) : hex(m.disp));
    parts.push(`[${terms.join('+').replace('+-', '-')}]`);
  }
  if (layout.moffs !== null) parts.push(`moffs=${hex(layout.moffs)}`);
  if (layout.vex) parts.push(`vex(W=${+layout.vex.w} L=${layout.vex.l} vvvv=${layout.vex.vvvv})`);
  if (layout.imm !== null && layout.branchTarget === null) parts.push(`imm=${hex(layout.imm)}`);
  if (layout.imm2 !== null) parts.push(`imm2=${layout.imm2}`);
  if (layout.branchTarget !== null) parts.push(`target=+${layout.branchTarget}`);
  return parts.join(' ');
}

function xmmText(x: Uint8Array, r: number): string {
  let s = '';
  for (let k = 15; k >= 0; k--) s += x[16 * r + k]!.toString(16).padStart(2, '0');
  return '0x' + s;
}

/** Compares one case; returns the list of differences (empty when the model agrees with the host). */
function compareOne(c: DifferentialCase, h: NativeOutcome, m: ModelOutcome): string[] {
  const diffs: string[] = [];
  const { insn, state } = c;
  const expected = expectedVectors(h);
  if (expected === 'budget') {
    if (m.stop.kind !== 'budget') diffs.push('outcome: the host never stopped; the model did');
  } else if (expected === null || m.stop.kind !== 'exception' || !expected.includes(m.stop.vector)) {
    diffs.push('outcome');
  }
  if (h.rip !== m.rip && expected !== 'budget') diffs.push(`rip: host ${hex(h.rip)} model ${hex(m.rip)}`);

  const count = maskedCount(c);
  const hostFlags = Number(h.state.rflags);
  const u: UndefinedContext = { opSize: insn.layout.opSize, count, hostFlags };
  const rule = UNDEFINED_FLAGS[insn.form.name];
  // Only an instruction that completed leaves undefined flags; a faulting one leaves RFLAGS alone.
  const completed = h.rip !== BigInt(CODE_BASE);
  const undefinedFlags = rule && completed ? (typeof rule.flags === 'number' ? rule.flags : rule.flags(u)) : 0;
  const ea = effectiveAddress(insn, state.gpr);
  const undef = completed ? undefinedResult(c, u, ea) : null;

  for (let r = 0; r < 16; r++) {
    let hv = h.state.gpr[r]!, mv = m.gpr[r]!;
    if (undef?.gpr?.reg === r) { hv &= ~undef.gpr.mask & MASK64; mv &= ~undef.gpr.mask & MASK64; }
    if (hv !== mv) diffs.push(`${regName(r)}: host ${hex(h.state.gpr[r]!)} model ${hex(m.gpr[r]!)} (initial ${hex(state.gpr[r]!)})`);
  }
  const cmpMask = ~(RF | undefinedFlags) >>> 0;
  const hf = (hostFlags & cmpMask) >>> 0, mf = (m.rflags & cmpMask) >>> 0;
  if (hf !== mf) {
    diffs.push(`rflags: host ${hex(hostFlags)} [${flagList(hostFlags)}] model ${hex(m.rflags)} [${flagList(m.rflags)}]` +
      ` differ in ${flagList(hf ^ mf)}${undefinedFlags ? ` (masked as undefined: ${flagList(undefinedFlags)})` : ''}`);
  }
  for (let r = 0; r < 16; r++) {
    for (let k = 0; k < 16; k++) {
      if (h.state.xmm[16 * r + k] !== m.xmm[16 * r + k]) {
        diffs.push(`xmm${r}: host ${xmmText(h.state.xmm, r)} model ${xmmText(m.xmm, r)} (initial ${xmmText(state.xmm, r)})`);
        break;
      }
    }
  }
  let memDiffs = 0;
  for (let k = 0; k < DATA_SIZE; k++) {
    if (undef?.mem && k >= undef.mem.offset && k < undef.mem.offset + undef.mem.length) continue;
    if (h.state.mem[k] === m.mem[k]) continue;
    if (memDiffs++ < 4) {
      const at = k & ~7;
      diffs.push(`mem[${hex(DATA_BASE + at)}]: host ${hexBytes(h.state.mem.subarray(at, at + 8))}` +
        ` model ${hexBytes(m.mem.subarray(at, at + 8))} (initial ${hexBytes(state.mem.subarray(at, at + 8))})`);
      k = at + 7;
    }
  }
  if (memDiffs > 4) diffs.push(`... and more differing memory bytes`);
  return diffs;
}

function initialStateText(c: DifferentialCase): string {
  const { state, insn } = c;
  const regs = state.gpr.map((v, r) => `${regName(r)}=${hex(v)}`).join(' ');
  const lines = [`  initial: ${regs}`, `  initial rflags=${hex(state.rflags)} [${flagList(Number(state.rflags))}] (IF set in the model)`];
  const ea = effectiveAddress(insn, state.gpr);
  if (ea !== null && ea >= BigInt(DATA_BASE) && ea < BigInt(DATA_BASE + DATA_SIZE - 16)) {
    const off = Number(ea) - DATA_BASE;
    lines.push(`  initial memory at ${hex(ea)}: ${hexBytes(state.mem.subarray(off, off + 16))}`);
  }
  const sp = Number(STACK_POINTER) - DATA_BASE;
  lines.push(`  initial memory at rsp ${hex(STACK_POINTER)}: ${hexBytes(state.mem.subarray(sp, sp + 16))}`);
  const xs = new Set<number>([insn.layout.reg & 15]);
  if (insn.layout.rm !== null) xs.add(insn.layout.rm & 15);
  if (insn.layout.vex) xs.add(insn.layout.vex.vvvv);
  lines.push('  initial ' + [...xs].sort((a, b) => a - b).map((r) => `xmm${r}=${xmmText(state.xmm, r)}`).join(' '));
  return lines.join('\n');
}

/**
 * Runs every case natively (in one batch) and on the model, and compares the
 * outcomes: host SIGSEGV (#GP) at RIP ⇔ model #GP at the same RIP (after a
 * completed instruction this is the HLT behind it), SIGFPE ⇔ #DE, SIGILL ⇔ #UD,
 * then all 16 GPRs, RIP, RFLAGS (RF and the SDM's undefined flags masked), the
 * XMM registers and the data window.
 */
export function compareWithHost(cases: readonly DifferentialCase[]): ComparisonReport {
  const host = runNative(cases.map((c) => ({ code: c.insn.bytes, state: c.state })));
  // The runner's 200 ms timeout is wall-clock time: a case descheduled on a busy machine can end in SIGALRM
  // without looping. Those run once more; a real endless loop times out again.
  const timedOut = host.flatMap((h, k) => (h.signal === SIG.ALRM ? [k] : []));
  const again = runNative(timedOut.map((k) => ({ code: cases[k]!.insn.bytes, state: cases[k]!.state })));
  timedOut.forEach((k, j) => { host[k] = again[j]!; });
  const mismatches: Mismatch[] = [];
  const outcomes: Record<string, number> = {};
  cases.forEach((c, k) => {
    const h = host[k]!;
    const len = c.insn.bytes.length;
    const off = Number(h.rip - BigInt(CODE_BASE));
    const kind = (SIGNAL_NAMES[h.signal] ?? String(h.signal)) + (h.signal === SIG.SEGV && off >= len && off < PAGE ? '@HLT' : '');
    outcomes[kind] = (outcomes[kind] ?? 0) + 1;
    let m: ModelOutcome | undefined, diffs: string[];
    try {
      m = runModel(c);
      diffs = compareOne(c, h, m);
    } catch (e) {
      diffs = [`the model threw: ${e instanceof Error ? e.stack ?? e.message : String(e)}`];
    }
    if (diffs.length === 0) return;
    const label = c.label ?? `case ${k}`;
    const message = [
      `${c.insn.form.text}: ${hexBytes(c.insn.bytes)}  [${describeOperands(c.insn)}]  (${label})`,
      `  host: ${hostOutcomeText(h, len)}; model: ${m ? modelOutcomeText(m) : 'threw'}`,
      ...diffs.map((d) => `  differs: ${d}`),
      initialStateText(c),
    ].join('\n');
    mismatches.push({ form: c.insn.form, bytes: c.insn.bytes, label, message });
  });
  return { cases: cases.length, mismatches, outcomes };
}
