/**
 * iced-x86 as the oracle for instruction lengths and operands (DESIGN, "Oracles").
 * Decodes one instruction with iced and turns what it reports into plain values
 * in hvsim's numbering (src/cpu/insn.ts): register numbers 0-15, byte-register
 * codes (HIGH_BYTE + n for AH..BH), BASE_RIP, scale as a shift count.
 *
 * Decoder options: DecoderOptions.None, i.e. iced's Intel decoder with its
 * invalid-encoding checks on. That is the setting that matches an Intel part:
 * - LOCK on an instruction that does not allow it, or with a register
 *   destination, is INVALID (hardware: #UD, SDM vol. 2, LOCK); NoInvalidCheck
 *   would accept it.
 * - Not `AMD`: 66h is ignored on near branches in 64-bit mode (Intel; hvsim Sz.F64),
 *   UD0 takes a ModRM byte (Intel).
 * - VEX.L = 1 on an instruction that requires L = 0 (BMI, scalar forms) is INVALID.
 * - 0F 0D and 0F 18-1F decode as prefetches, ENDBR, CLDEMOTE, RDSSP or
 *   "reserved NOP": all of them execute as NOPs where the feature is absent or
 *   disabled, with the same length. ForceReservedNop would name them all NOP;
 *   the lengths are the same either way.
 */
import {
  Code, Decoder, DecoderOptions, MemorySizeExt, Mnemonic, OpCodeOperandKind as K, OpKind, Register,
} from 'iced-x86';
import { BASE_RIP, HIGH_BYTE } from '../src/cpu/insn.js';

export const ICED_OPTIONS = DecoderOptions.None;

/** Where an operand lives in the encoding, in hvsim's terms. */
export type Field =
  | 'reg'      // ModRM.reg (with REX.R): Insn.reg / regB
  | 'rm'       // ModRM.rm naming a register (mod = 11b): Insn.rm / rmB
  | 'opcode'   // register in the opcode's low bits (with REX.B): Insn.reg / regB
  | 'vvvv'     // VEX.vvvv: Insn.vvvv
  | 'is4'      // register in imm8[7:4]
  | 'mem'      // ModRM memory operand or moffs
  | 'imm'      // immediate
  | 'branch'   // near branch (rel8/rel16/rel32)
  | 'far'      // far pointer (ptr16:16/32)
  | 'acc'      // implicit AL/AX/EAX/RAX
  | 'other';   // other implicit operands (CL, DX, segment registers, string memory, ...)

export type RegClass = 'gpr' | 'xmm' | 'ymm' | 'seg' | 'cr' | 'dr' | 'mm' | 'other';

export interface IcedOperand {
  field: Field;
  kind: K;
  /** Register operands: hvsim number (byte-register code for 8-bit GPRs), class, size in bytes. */
  reg: number;
  regClass: RegClass;
  regSize: number;
  /** Immediates: the value at `immBits` width (unsigned); sign-extended kinds are marked. */
  imm: bigint;
  immBits: number;
  immSignExtended: boolean;
  /** Second immediate (ENTER's level, a far pointer's selector). */
  second: boolean;
  /** Near branches: the target with the instruction at address 0, and its width in bits. */
  target: bigint;
  targetBits: number;
}

export interface IcedMemory {
  /** -1 none, BASE_RIP, else register number. */
  base: number;
  index: number;
  /** log2 of the scale. */
  scale: number;
  /** Displacement as iced gives it (for RIP/EIP-relative: the absolute target at ip 0). */
  disp: bigint;
  /** Address size in bytes as implied by the base or index register, 0 when neither is present. */
  regAddrSize: number;
  /** Bytes accessed, 0 when iced gives no size. */
  size: number;
  /** Effective segment, 0-5 (ES..GS). */
  seg: number;
  /** The operand is a moffs (A0-A3). */
  moffs: boolean;
}

export interface IcedInsn {
  valid: boolean;
  length: number;
  code: number;
  /** Lower-case mnemonic, e.g. "add". */
  mnemonic: string;
  /** ConditionCode enum value (0 none, 1 = o ... 16 = g), i.e. cc + 1. */
  conditionCode: number;
  ops: IcedOperand[];
  mem: IcedMemory | null;
}

/** hvsim register number of an iced Register, with its class and size. */
export function mapRegister(r: Register): { n: number; cls: RegClass; size: number } {
  if (r >= Register.AL && r <= Register.R15L) {
    // iced order: AL CL DL BL AH CH DH BH SPL BPL SIL DIL R8L..R15L
    const k = r - Register.AL;
    return { n: k < 4 ? k : k < 8 ? HIGH_BYTE + k - 4 : k - 4, cls: 'gpr', size: 1 };
  }
  if (r >= Register.AX && r <= Register.R15W) return { n: r - Register.AX, cls: 'gpr', size: 2 };
  if (r >= Register.EAX && r <= Register.R15D) return { n: r - Register.EAX, cls: 'gpr', size: 4 };
  if (r >= Register.RAX && r <= Register.R15) return { n: r - Register.RAX, cls: 'gpr', size: 8 };
  if (r >= Register.XMM0 && r <= Register.XMM31) return { n: r - Register.XMM0, cls: 'xmm', size: 16 };
  if (r >= Register.YMM0 && r <= Register.YMM31) return { n: r - Register.YMM0, cls: 'ymm', size: 32 };
  if (r >= Register.ES && r <= Register.GS) return { n: r - Register.ES, cls: 'seg', size: 2 };
  if (r >= Register.CR0 && r <= Register.CR15) return { n: r - Register.CR0, cls: 'cr', size: 8 };
  if (r >= Register.DR0 && r <= Register.DR15) return { n: r - Register.DR0, cls: 'dr', size: 8 };
  if (r >= Register.MM0 && r <= Register.MM7) return { n: r - Register.MM0, cls: 'mm', size: 8 };
  return { n: r, cls: 'other', size: 0 };
}

/** Memory base/index register: hvsim number and address size; RIP/EIP map to BASE_RIP. */
function mapAddressRegister(r: Register): { n: number; size: number } {
  if (r === Register.None) return { n: -1, size: 0 };
  if (r === Register.RIP) return { n: BASE_RIP, size: 8 };
  if (r === Register.EIP) return { n: BASE_RIP, size: 4 };
  const m = mapRegister(r);
  return { n: m.cls === 'gpr' ? m.n : -2 - m.n, size: m.size };
}

function fieldOf(k: K): Field {
  switch (k) {
    case K.r8_reg: case K.r16_reg: case K.r32_reg: case K.r64_reg:
    case K.r16_reg_mem: case K.r32_reg_mem: case K.r64_reg_mem:
    case K.seg_reg: case K.mm_reg: case K.xmm_reg: case K.ymm_reg: case K.cr_reg: case K.dr_reg:
      return 'reg';
    case K.r16_rm: case K.r32_rm: case K.r64_rm: case K.mm_rm: case K.xmm_rm: case K.ymm_rm:
    case K.r8_or_mem: case K.r16_or_mem: case K.r32_or_mem: case K.r64_or_mem:
    case K.r32_or_mem_mpx: case K.r64_or_mem_mpx:
    case K.mm_or_mem: case K.xmm_or_mem: case K.ymm_or_mem:
      return 'rm'; // the register form; a memory operand is told apart by its OpKind
    case K.r8_opcode: case K.r16_opcode: case K.r32_opcode: case K.r64_opcode:
      return 'opcode';
    case K.r32_vvvv: case K.r64_vvvv: case K.xmm_vvvv: case K.ymm_vvvv:
      return 'vvvv';
    case K.xmm_is4: case K.ymm_is4:
      return 'is4';
    case K.mem: case K.mem_offs: case K.mem_mpx: case K.mem_mib: case K.sibmem:
    case K.mem_vsib32x: case K.mem_vsib64x: case K.mem_vsib32y: case K.mem_vsib64y:
      return 'mem';
    case K.imm8: case K.imm8sex16: case K.imm8sex32: case K.imm8sex64:
    case K.imm16: case K.imm32: case K.imm32sex64: case K.imm64:
      return 'imm';
    case K.br16_1: case K.br32_1: case K.br64_1: case K.br16_2: case K.br32_4: case K.br64_4:
      return 'branch';
    case K.farbr2_2: case K.farbr4_2:
      return 'far';
    case K.al: case K.ax: case K.eax: case K.rax:
      return 'acc';
    default:
      return 'other';
  }
}

/** Width in bits and sign extension of an immediate OpKind. */
function immShape(kind: OpKind): { bits: number; sx: boolean } {
  switch (kind) {
    case OpKind.Immediate8: case OpKind.Immediate8_2nd: return { bits: 8, sx: false };
    case OpKind.Immediate16: return { bits: 16, sx: false };
    case OpKind.Immediate32: return { bits: 32, sx: false };
    case OpKind.Immediate64: return { bits: 64, sx: false };
    case OpKind.Immediate8to16: return { bits: 16, sx: true };
    case OpKind.Immediate8to32: return { bits: 32, sx: true };
    case OpKind.Immediate8to64: return { bits: 64, sx: true };
    case OpKind.Immediate32to64: return { bits: 64, sx: true };
    default: return { bits: 0, sx: false };
  }
}

/** Operand kinds of each Code, read once from iced's opcode tables. */
const kindsOfCode = new Map<number, K[]>();
function operandKinds(ins: ReturnType<Decoder['decode']>): K[] {
  let ks = kindsOfCode.get(ins.code);
  if (ks === undefined) {
    const info = ins.opCode;
    ks = [];
    for (let n = 0; n < info.opCount; n++) ks.push(info.opKind(n));
    info.free();
    kindsOfCode.set(ins.code, ks);
  }
  return ks;
}

const memorySizes = new Map<number, number>();
function memorySizeBytes(ms: number): number {
  let s = memorySizes.get(ms);
  if (s === undefined) { s = MemorySizeExt.size(ms); memorySizes.set(ms, s); }
  return s;
}

const mnemonicNames = new Map<number, string>();
function mnemonicName(m: Mnemonic): string {
  let s = mnemonicNames.get(m);
  if (s === undefined) { s = (Mnemonic[m] ?? '?').toLowerCase(); mnemonicNames.set(m, s); }
  return s;
}

/** True when `name` is an iced mnemonic (lower case). */
export function isIcedMnemonic(name: string): boolean {
  return Object.prototype.hasOwnProperty.call(Mnemonic, name.charAt(0).toUpperCase() + name.slice(1));
}

/** All iced mnemonics in lower case (for prefix matches such as hvsim's "j" for Jcc). */
export const ICED_MNEMONICS: readonly string[] = Object.keys(Mnemonic)
  .filter((k) => Number.isNaN(Number(k))).map((k) => k.toLowerCase());

const PAD = 32;

/**
 * Decodes the instruction at the start of `bytes` in code of `bitness` bits with
 * the instruction at address 0. The bytes are zero-padded to 32 so that iced
 * never sees a truncated buffer (an instruction has at most 15 bytes).
 */
export function icedDecode(bytes: ArrayLike<number>, bitness: 16 | 32 | 64): IcedInsn {
  const buf = new Uint8Array(Math.max(PAD, bytes.length + PAD));
  for (let k = 0; k < bytes.length; k++) buf[k] = bytes[k]!;
  const dec = new Decoder(bitness, buf, ICED_OPTIONS);
  dec.ip = 0n;
  const ins = dec.decode();
  try {
    const valid = ins.code !== Code.INVALID;
    const out: IcedInsn = {
      valid, length: ins.length, code: ins.code, mnemonic: valid ? mnemonicName(ins.mnemonic) : '(bad)',
      conditionCode: valid ? ins.conditionCode : 0, ops: [], mem: null,
    };
    if (!valid) return out;
    const kinds = operandKinds(ins);
    for (let n = 0; n < ins.opCount; n++) {
      const kind = kinds[n] ?? K.None;
      const opKind = ins.opKind(n);
      const op: IcedOperand = {
        field: fieldOf(kind), kind, reg: -1, regClass: 'other', regSize: 0,
        imm: 0n, immBits: 0, immSignExtended: false, second: false, target: 0n, targetBits: 0,
      };
      if (opKind === OpKind.Register) {
        const m = mapRegister(ins.opRegister(n));
        op.reg = m.n; op.regClass = m.cls; op.regSize = m.size;
      } else if (opKind === OpKind.Memory && op.field === 'other') {
        // Implicit memory (XLAT's [rBX + AL]): hvsim's Insn has no fields for it.
      } else if (opKind === OpKind.Memory) {
        op.field = 'mem';
        const b = mapAddressRegister(ins.memoryBase), x = mapAddressRegister(ins.memoryIndex);
        out.mem = {
          base: b.n, index: x.n, scale: [0, 0, 1, 1, 2, 2, 2, 2, 3][ins.memoryIndexScale] ?? 0,
          disp: ins.memoryDisplacement, regAddrSize: b.size || x.size,
          size: memorySizeBytes(ins.memorySize), seg: mapRegister(ins.memorySegment).n,
          moffs: kind === K.mem_offs,
        };
      } else if (immShape(opKind).bits !== 0 && kind !== K.imm8_const_1) {
        const s = immShape(opKind);
        op.field = 'imm';
        op.imm = BigInt.asUintN(s.bits, ins.immediate(n));
        op.immBits = s.bits; op.immSignExtended = s.sx; op.second = opKind === OpKind.Immediate8_2nd;
      } else if (opKind === OpKind.NearBranch16 || opKind === OpKind.NearBranch32 || opKind === OpKind.NearBranch64) {
        op.field = 'branch';
        op.targetBits = opKind === OpKind.NearBranch16 ? 16 : opKind === OpKind.NearBranch32 ? 32 : 64;
        op.target = BigInt.asUintN(op.targetBits, ins.nearBranchTarget);
      } else if (opKind === OpKind.FarBranch16 || opKind === OpKind.FarBranch32) {
        op.field = 'far';
        op.immBits = opKind === OpKind.FarBranch16 ? 16 : 32;
        op.imm = BigInt(opKind === OpKind.FarBranch16 ? ins.farBranch16 : ins.farBranch32 >>> 0);
        op.target = BigInt(ins.farBranchSelector);
      } else if (op.field !== 'other') {
        op.field = 'other'; // string operands and the like: nothing in Insn to compare
      }
      out.ops.push(op);
    }
    return out;
  } finally {
    ins.free();
    dec.free();
  }
}
