/**
 * A decoded instruction and the declarative opcode table it is decoded from.
 * Decoding happens once per instruction address; the interpreter and the block
 * compiler both work from the fields below.
 */
import type { Cpu } from './cpu.js';
import type { Emitter } from './jit/emitter.js';

export type Exec = (cpu: Cpu, i: Insn) => void;

/** Operand-size rules (SDM vol. 2, 2.2.1.2 and appendix A.2.2 size codes). */
export const enum Sz {
  /** 16/32/64 by operand-size prefix and REX.W (default 32; 16 in 16-bit code). */
  V = 0,
  /** Byte. */
  B,
  /** Word. */
  W,
  /** Doubleword. */
  D,
  /** Quadword. */
  Q,
  /** Defaults to 64 bits in 64-bit mode; 66h gives 16 (push, pop, indirect near branches). */
  D64,
  /** Always 64 bits in 64-bit mode (near relative branches, RET). Intel ignores 66h there. */
  F64,
  /** 32, or 64 with REX.W (MOVD/MOVQ, BMI, CRC32 destination). */
  Y,
  /** 16 or 32 by operand size; REX.W does not make it 64 (port I/O). */
  Z,
  /** Natural width: 64 bits in 64-bit mode, 32 elsewhere, whatever the prefixes (MOV CR/DR, INVPCID). */
  NATURAL,
}

/** Immediate and displacement operands that follow ModRM. */
export const enum Im {
  None = 0,
  /** imm8 sign-extended to the operand size. */
  Ib,
  /** imm8 zero-extended (port numbers, vectors, shift counts, selectors of group 8). */
  Ub,
  /** imm16 */
  Iw,
  /** imm16 or imm32 by operand size; sign-extended to 64 bits for 64-bit operands. */
  Iz,
  /** imm16/32/64 by operand size (MOV r, imm). */
  Iv,
  /** imm16 then imm8 (ENTER). */
  IwIb,
  /** Far pointer: offset (16/32 by operand size) then selector. */
  Ap,
  /** Memory offset the width of the address size (MOV moffs). */
  Ob,
  /** rel8 */
  Jb,
  /** rel16/rel32 by operand size (rel32 in 64-bit mode). */
  Jz,
}

export interface OpDef {
  /** Mnemonic, for diagnostics and disassembly. */
  readonly name: string;
  readonly exec: Exec;
  readonly modrm?: boolean;
  readonly size?: Sz;
  readonly imm?: Im;
  /** LOCK is allowed (with a memory destination); otherwise LOCK raises #UD (SDM vol. 2, LOCK). */
  readonly lock?: boolean;
  /** #UD in 64-bit mode. */
  readonly inv64?: boolean;
  /** #UD outside 64-bit mode. */
  readonly only64?: boolean;
  /** ModRM must name memory: #UD when mod = 11b. */
  readonly memOnly?: boolean;
  /** ModRM must name a register: #UD when mod != 11b. */
  readonly regOnly?: boolean;
  /** ModRM.mod is ignored: r/m always names a register, with no displacement (MOV CR/DR). */
  readonly modIgnored?: boolean;
  /** The ModRM.reg values (with REX.R) that name a register: bit n for register n; others #UD. */
  readonly validRegs?: number;
  /** A VEX form without a VEX.vvvv operand: vvvv must be 1111b, else #UD (SDM vol. 2, 2.3.6). */
  readonly vvvvUnused?: boolean;
  /** Control may leave the straight line after it, or decoding of what follows may change. */
  readonly ends?: boolean;
  /**
   * A conditional branch: the block goes on after it (the branch not taken)
   * and is left there when it is taken (run.ts execBlock, jit/compile.ts).
   */
  readonly exits?: boolean;
  /**
   * A near transfer with a target known at decode time, or one that can be
   * predicted: a direct CALL or JMP, a RET to a CALL earlier in the block, a
   * conditional branch backwards. In 64-bit mode a block may go on at the
   * target (blocks.ts).
   */
  readonly follow?: Follow;
  /**
   * Emits the instruction as JavaScript for the block compiler; returns false
   * when this instance has no template (the compiled block then calls `exec`).
   */
  readonly compile?: (e: Emitter, i: Insn) => boolean;
}

/**
 * The transfers a block may follow (OpDef.follow). A conditional branch is
 * followed when it goes backwards: a loop's back edge, most often taken.
 */
export const enum Follow { CALL = 1, JUMP = 2, RETURN = 3, CONDITIONAL = 4 }

/** An opcode whose meaning depends on ModRM.reg (a group, SDM vol. 2, table A-6). */
export interface Group { readonly group: readonly (Entry | undefined)[] }
/** An opcode whose meaning depends on its mandatory prefix: none, 66, F3, F2. */
export interface Prefixed { readonly prefixed: readonly [Entry?, Entry?, Entry?, Entry?] }
/** An opcode whose meaning depends on ModRM.mod = 11b (register) or memory. */
export interface ByMod { readonly mem?: Entry; readonly reg?: Entry }
/** Register forms selected by ModRM.rm (0F 01 /r with mod = 11b). */
export interface ByRm { readonly rm: readonly (Entry | undefined)[] }
/** An opcode that means different instructions in 64-bit mode and outside it (63: MOVSXD, ARPL). */
export interface ByMode { readonly long64?: Entry; readonly legacy?: Entry }
export type Entry = OpDef | Group | Prefixed | ByMod | ByRm | ByMode;

/** Opcode maps; a table key is map * 256 + opcode byte. */
export const enum OpMap { ONE = 0, TWO = 1, THREE_38 = 2, THREE_3A = 3, VEX_0F = 4, VEX_0F38 = 5, VEX_0F3A = 6 }
export type OpTable = ReadonlyMap<number, Entry>;

/** Register code of the high-byte registers AH, CH, DH, BH: 16 + n for bits 15:8 of register n. */
export const HIGH_BYTE = 16;
/** Memory operand base meaning "the next instruction's RIP" (RIP-relative addressing). */
export const BASE_RIP = 16;

export class Insn {
  exec: Exec;
  def: OpDef;
  /** Length in bytes, 1 to 15. */
  len = 0;
  /** Opcode as map * 256 + byte, for diagnostics. */
  opcode = 0;
  /** Operand size in bytes: 1, 2, 4 or 8 (16 for vector operations). */
  opSize = 4;
  /** Address size in bytes: 2, 4 or 8. */
  adSize = 4;
  /** ModRM.reg with REX.R, or the register in the opcode's low bits with REX.B. */
  reg = 0;
  /** `reg` as a byte register code (0-15, or HIGH_BYTE + n). */
  regB = 0;
  /** ModRM.rm with REX.B when the operand is a register. */
  rm = 0;
  /** `rm` as a byte register code. */
  rmB = 0;
  /** ModRM.mod = 11b, or no ModRM. */
  isReg = true;
  /** Memory operand: base register (-1 none, BASE_RIP), index (-1 none), scale 0-3, displacement. */
  base = -1;
  index = -1;
  scale = 0;
  disp = 0;
  /** Effective segment (after overrides). */
  seg = 3;
  /** The segment base takes part in the linear address (always outside 64-bit mode; FS/GS in it). */
  segBase = false;
  /** The instruction had a segment-override prefix. */
  segOverride = false;
  /** Immediate: low 32 bits (masked to the operand size when narrower), high 32 bits. */
  imm = 0;
  immHi = 0;
  /** Second immediate (ENTER's level, a far pointer's selector). */
  imm2 = 0;
  /** 0, 0xF3 (REP/REPE) or 0xF2 (REPNE), the last of them given. */
  rep = 0;
  lock = false;
  /** Any REX prefix present, and its W bit. */
  rex = false;
  rexW = false;
  /** The operand-size prefix 66h was given (mandatory prefix of vector forms). */
  p66 = false;
  /** VEX.vvvv (inverted back), VEX.L. */
  vvvv = 0;
  vexL = 0;
  /** Code size the instruction was decoded in: 2, 4 or 8. */
  mode = 4;

  constructor(def: OpDef) {
    this.def = def;
    this.exec = def.exec;
  }
}
