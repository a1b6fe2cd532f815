/**
 * Instruction encodings generated from the model's own opcode table
 * (`OPCODE_TABLE`, src/cpu/optable.ts). Every definition reachable through the
 * table's groups, prefix selections and ModRM.mod/rm selections becomes one
 * {@link InstructionForm}; {@link instructionArbitrary} turns a form into random
 * but legal encodings: prefixes, REX or VEX, ModRM/SIB with register and memory
 * operands, displacements and immediates (SDM vol. 2, chapter 2).
 *
 * @example
 * ```ts
 * import fc from 'fast-check';
 * import { anyInstruction } from 'hvsim/fuzz';
 * fc.assert(fc.property(anyInstruction(64), ({ bytes, form }) => myDecoder(bytes).length <= 15));
 * ```
 */
import fc from 'fast-check';
import { OPCODE_TABLE } from '../src/cpu/optable.js';
import { Im, OpMap, Sz, type ByMod, type ByMode, type Entry, type OpDef, type OpTable } from '../src/cpu/insn.js';

/** Code size the instructions are generated for. */
export type Mode = 64 | 32;

/** Constraint on ModRM.mod: any, memory only (mod != 11b), register only (mod = 11b). */
export type ModConstraint = 'any' | 'mem' | 'reg';

/** One encodable instruction form: an opcode-table definition and the path that selects it. */
export interface InstructionForm {
  /** The definition's mnemonic (OpDef.name), e.g. `add`, `j` (Jcc), `set` (SETcc). */
  readonly name: string;
  /** The definition itself (operand size rule, immediate kind, LOCK permission...). */
  readonly def: OpDef;
  /** Opcode map (OpMap): legacy one-byte, 0F, 0F 38, 0F 3A or a VEX map. */
  readonly map: OpMap;
  /** The opcode byte within its map. */
  readonly opcode: number;
  /** The encoding has a ModRM byte. */
  readonly modrm: boolean;
  /** ModRM.reg fixed by an opcode group (/digit), or null for /r. */
  readonly reg: number | null;
  /** ModRM.rm fixed by a register-form selection (implies mod = 11b), or null. */
  readonly rm: number | null;
  /**
   * Mandatory prefix that selects the form: 0 (none), 0x66, 0xF3 or 0xF2 (for VEX
   * forms, VEX.pp); null when the opcode does not depend on such a prefix.
   */
  readonly prefix: number | null;
  /** ModRM.mod constraint (memory-only or register-only forms). */
  readonly mod: ModConstraint;
  /** Encoded with a VEX prefix (maps VEX_0F, VEX_0F38, VEX_0F3A). */
  readonly vex: boolean;
  /** A 66h prefix changes this form's operand size (so the generator may add one). */
  readonly sizePrefix: boolean;
  /** Textual form, e.g. `add 81 /0 iz`, `andn VEX.0F38 F2 /r`, `movsxd 63 /r`. */
  readonly text: string;
}

/** Where the generator put an instruction's memory operand (the decoder's view of it). */
export interface MemoryOperand {
  /** Base register 0-15, -1 for none, 16 for RIP-relative (64-bit mode, ModRM mod = 00b rm = 101b). */
  readonly base: number;
  /** Index register 0-15, or -1 for none. */
  readonly index: number;
  /** Scale as a shift count 0-3 (factor 1, 2, 4, 8). */
  readonly scale: number;
  /** Sign-extended displacement (0 when there is none). */
  readonly disp: number;
}

/** How a generated instruction was put together: enough to give its operands meaning. */
export interface InstructionLayout {
  /** Operand size in bytes as the prefixes select it for this form (SDM vol. 2, 2.2.1.2). */
  readonly opSize: number;
  /** Address size in bytes: 8 or 4 in 64-bit mode, 4 or 2 in 32-bit mode. */
  readonly addressSize: number;
  /** Legacy prefixes in the order emitted (segment, 66, 67, F0, F2/F3, mandatory). */
  readonly prefixes: readonly number[];
  /** The REX byte (0 when absent; VEX forms carry their R/X/B/W here as 0x40 | WRXB). */
  readonly rex: number;
  /** VEX fields, or null for legacy encodings. */
  readonly vex: { readonly w: boolean; readonly l: number; readonly vvvv: number; readonly pp: number } | null;
  /** ModRM.reg extended by REX.R; for opcode-register forms (50+r...), the register with REX.B. */
  readonly reg: number;
  /** The register named by ModRM.rm (with REX.B) when mod = 11b, else null. */
  readonly rm: number | null;
  /** The memory operand of ModRM, or null. */
  readonly mem: MemoryOperand | null;
  /** Absolute address of a moffs operand (MOV A0-A3), or null. */
  readonly moffs: bigint | null;
  /** The first immediate as encoded (zero-extended), or null. */
  readonly imm: bigint | null;
  /** Size in bytes of the first immediate (0 when none). */
  readonly immSize: number;
  /** The second immediate (ENTER's nesting level), or null. */
  readonly imm2: number | null;
  /** Relative branch target as an offset from the instruction's first byte, or null. */
  readonly branchTarget: number | null;
}

/** A generated instruction: its bytes, the form it encodes and how it was built. */
export interface GeneratedInstruction {
  readonly bytes: Uint8Array;
  readonly form: InstructionForm;
  readonly layout: InstructionLayout;
}

/** Options that aim generated addresses at memory the caller controls. */
export interface EncodeOptions {
  /**
   * Keep relative branch targets inside the 4 KiB page that starts at the
   * instruction's first byte, and after the instruction itself.
   */
  readonly branchesInPage?: boolean;
  /** Address the instruction will be placed at (for aiming RIP-relative operands). */
  readonly codeAddress?: number;
  /**
   * A data window. Absolute addresses the encoding fixes by itself (moffs,
   * disp32 without base, RIP-relative when `codeAddress` is given) point inside
   * it, 1 KiB away from its edges; displacements of RSP-based operands stay
   * within ±1 KiB so that RSP can keep pointing at a stack in the window.
   */
  readonly dataWindow?: { readonly base: number; readonly size: number };
}

const MAP_TEXT = ['', '0F ', '0F 38 ', '0F 3A ', '0F ', '0F38 ', '0F3A '];
const PREFIX_OF_SLOT = [0, 0x66, 0xf3, 0xf2] as const;
const hex2 = (b: number): string => b.toString(16).toUpperCase().padStart(2, '0');

const IMM_TEXT: Record<number, string> = {
  [Im.Ib]: ' ib', [Im.Ub]: ' ib', [Im.Iw]: ' iw', [Im.Iz]: ' iz', [Im.Iv]: ' iv', [Im.IwIb]: ' iw ib',
  [Im.Ap]: ' ptr', [Im.Ob]: ' moffs', [Im.Jb]: ' rel8', [Im.Jz]: ' rel32',
};

/** Legacy string instructions (MOVS CMPS STOS LODS SCAS, INS OUTS): the ones a REP prefix applies to. */
const STRING_OPCODES = new Set([0x6c, 0x6d, 0x6e, 0x6f, 0xa4, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf]);
/** CMPS and SCAS, where F2 (REPNE) and F3 (REPE) differ. */
const COMPARE_STRING_OPCODES = new Set([0xa6, 0xa7, 0xae, 0xaf]);

/** True for a legacy string instruction (opcode in map ONE that REP prefixes). */
export function isStringForm(form: InstructionForm): boolean {
  return form.map === OpMap.ONE && STRING_OPCODES.has(form.opcode);
}

interface WalkContext {
  reg: number | null;
  rm: number | null;
  prefixSlot: number | null;
  /**
   * The prefix selection holds the same entry for no prefix and for 66: there 66h
   * is an operand-size prefix, not a mandatory one (BSF, MOVBE; see decoder.ts).
   */
  size66: boolean;
  mod: ModConstraint;
  selected: boolean;
}

function formText(name: string, map: OpMap, opcode: number, ctx: WalkContext, def: OpDef, modrm: boolean): string {
  const vex = map >= OpMap.VEX_0F;
  let s = name + ' ';
  if (vex) s += 'VEX.' + (ctx.prefixSlot ? hex2(PREFIX_OF_SLOT[ctx.prefixSlot]!) + '.' : '') + MAP_TEXT[map]!;
  else s += (ctx.prefixSlot ? hex2(PREFIX_OF_SLOT[ctx.prefixSlot]!) + ' ' : '') + MAP_TEXT[map]!;
  s += hex2(opcode);
  if (modrm) s += ctx.reg === null ? ' /r' : ` /${ctx.reg}`;
  if (ctx.rm !== null) s += ` rm=${ctx.rm}`;
  else if (ctx.mod !== 'any') s += ctx.mod === 'mem' ? ' (mem)' : ' (reg)';
  return s + (IMM_TEXT[def.imm ?? Im.None] ?? '');
}

function modJoin(a: ModConstraint, b: ModConstraint): ModConstraint | undefined {
  if (a === 'any') return b;
  if (b === 'any' || a === b) return a;
  return undefined;
}

function collect(table: OpTable, mode: Mode): InstructionForm[] {
  const out: InstructionForm[] = [];
  const keys = [...table.keys()].sort((a, b) => a - b);
  for (const key of keys) {
    const map = (key >> 8) as OpMap, opcode = key & 0xff;
    const walk = (e: Entry | undefined, ctx: WalkContext): void => {
      if (e === undefined) return;
      if ('exec' in e) {
        const def = e;
        if (mode === 64 && def.inv64) return;
        if (mode === 32 && def.only64) return;
        const modrm = ctx.selected || def.modrm === true;
        let mod: ModConstraint | undefined = ctx.mod;
        if (def.memOnly) mod = modJoin(mod, 'mem');
        if (def.regOnly && mod !== undefined) mod = modJoin(mod, 'reg');
        if (mod === undefined) return; // a memory-only definition under a register selection: not encodable
        const vex = map >= OpMap.VEX_0F;
        const size = def.size ?? Sz.V;
        // SDM vol. 2, table A-6: near CALL/JMP through group 5 are f64 like the relative branches;
        // Intel ignores 66h on them and AMD shortens them, so 66h is never generated there.
        const nearBranch = size === Sz.F64 || (map === OpMap.ONE && opcode === 0xff && (ctx.reg === 2 || ctx.reg === 4));
        const sizePrefix = !vex && (size === Sz.V || size === Sz.D64 || size === Sz.Z) && !nearBranch && (ctx.prefixSlot === null || ctx.size66);
        out.push({
          name: def.name, def, map, opcode, modrm, reg: ctx.reg, rm: ctx.rm,
          prefix: ctx.prefixSlot === null ? (vex ? 0 : null) : PREFIX_OF_SLOT[ctx.prefixSlot]!,
          mod, vex, sizePrefix,
          text: formText(def.name, map, opcode, { ...ctx, mod }, def, modrm),
        });
      } else if ('group' in e) {
        e.group.forEach((g, slot) => walk(g, { ...ctx, reg: slot, selected: true }));
      } else if ('prefixed' in e) {
        const size66 = e.prefixed[1] !== undefined && e.prefixed[1] === e.prefixed[0];
        e.prefixed.forEach((p, slot) => {
          // A prefix selects without ModRM (EMMS); groups, mod and rm selections imply it.
          if (!(size66 && slot === 1)) walk(p, { ...ctx, prefixSlot: slot, size66 });
        });
      } else if ('long64' in e || 'legacy' in e) {
        const m = e as ByMode; // an opcode that means another instruction outside 64-bit mode
        walk(mode === 64 ? m.long64 : m.legacy, ctx);
      } else if ('rm' in e) {
        e.rm.forEach((r, slot) => walk(r, { ...ctx, rm: slot, mod: 'reg', selected: true }));
      } else {
        const m = e as ByMod;
        walk(m.mem, { ...ctx, mod: 'mem', selected: true });
        walk(m.reg, { ...ctx, mod: 'reg', selected: true });
      }
    };
    walk(table.get(key), { reg: null, rm: null, prefixSlot: null, size66: false, mod: 'any', selected: false });
  }
  return out;
}

const formCache = new Map<Mode, readonly InstructionForm[]>();

/**
 * Every instruction form of the model's opcode table that can be encoded in
 * `mode`: definitions marked `inv64` are left out in 64-bit mode, `only64` ones
 * in 32-bit mode. The list is in table-key order and the same array on every call.
 */
export function instructionForms(mode: Mode): readonly InstructionForm[] {
  let forms = formCache.get(mode);
  if (forms === undefined) {
    forms = collect(OPCODE_TABLE, mode);
    formCache.set(mode, forms);
  }
  return forms;
}

// ---- random values ------------------------------------------------------------

const MASK64 = (1n << 64n) - 1n;

/** Boundary values of integer arithmetic (sign and carry edges of each width). */
const EDGES: readonly bigint[] = [
  0n, 1n, 2n, 3n, 0x7fn, 0x80n, 0x81n, 0xffn, 0x100n, 0x7fffn, 0x8000n, 0x8001n, 0xffffn, 0x10000n,
  0x7fffffffn, 0x80000000n, 0x80000001n, 0xffffffffn, 0x100000000n, 0x7fffffffffffffffn,
  0x8000000000000000n, 0x8000000000000001n, MASK64, MASK64 - 1n, 0xffffffffffffff80n,
  0xffffffffffff8000n, 0xffffffff80000000n, 0x00000000ffffff80n, 0x5555555555555555n, 0xaaaaaaaaaaaaaaaan,
];

/**
 * Integers of `bits` bits (as unsigned bigints) biased toward boundary values:
 * 0, 1, -1, 0x7f, 0x80, 0x7fff, 0x8000, 0x7fffffff, 0x80000000, 0xffffffff,
 * 2^63 and their neighbours, small counts (0-64), sign-extended narrow values,
 * and uniformly random ones.
 */
export function edgeBiasedInteger(bits: 8 | 16 | 32 | 64): fc.Arbitrary<bigint> {
  const mask = (1n << BigInt(bits)) - 1n;
  const signExtended = fc.tuple(fc.constantFrom(8, 16, 32), fc.bigInt({ min: 0n, max: MASK64 }))
    .map(([w, v]) => BigInt.asUintN(64, BigInt.asIntN(w, v)));
  return fc.oneof(
    { arbitrary: fc.constantFrom(...EDGES), weight: 4 },
    { arbitrary: fc.bigInt({ min: 0n, max: 64n }), weight: 1 },
    { arbitrary: signExtended, weight: 1 },
    { arbitrary: fc.bigInt({ min: 0n, max: MASK64 }), weight: 4 },
  ).map((v) => v & mask);
}

/** The random decisions one encoding is built from. */
interface Choices {
  seg: number; p66: number; p67: number; lock: number; rep: number; repPick: boolean;
  rex: number; rexBits: number;
  vexW: boolean; vexL: number; vvvv: number; vvvvOnes: number; vex2: boolean;
  mod: number; reg: number; rm: number; alias: number; scale: number; index: number; base: number;
  disp8: number; disp32: number; dispSmall: number;
  imm: bigint; imm2: bigint; target: number; window: number;
}

/** Unbiased: fast-check otherwise favours small integers, which would inflate every prefix probability. */
const percent = fc.noBias(fc.integer({ min: 0, max: 99 }));
const u3 = fc.integer({ min: 0, max: 7 });
const disp32Arb = fc.oneof(
  fc.integer({ min: -0x80000000, max: 0x7fffffff }),
  fc.constantFrom(0, 1, -1, 0x7f, 0x80, -0x80, -0x81, 0x7fffffff, -0x80000000),
);
const choicesArb: fc.Arbitrary<Choices> = fc.record({
  seg: percent, p66: percent, p67: percent, lock: percent, rep: percent, repPick: fc.boolean(),
  rex: percent, rexBits: fc.integer({ min: 0, max: 15 }),
  vexW: fc.boolean(), vexL: percent, vvvv: fc.integer({ min: 0, max: 15 }), vvvvOnes: percent, vex2: fc.boolean(),
  mod: fc.noBias(fc.integer({ min: 0, max: 3 })), reg: u3, rm: u3, alias: percent, scale: fc.integer({ min: 0, max: 3 }), index: u3, base: u3,
  disp8: fc.integer({ min: -128, max: 127 }), disp32: disp32Arb, dispSmall: fc.integer({ min: -1024, max: 1024 }),
  imm: edgeBiasedInteger(64), imm2: edgeBiasedInteger(8), target: fc.nat({ max: 0xffff }), window: fc.nat({ max: 0xffff }),
});

// ---- encoding -----------------------------------------------------------------

const SEGMENT_PREFIXES = [0x26, 0x2e, 0x36, 0x3e]; // ES CS SS DS: no base in 64-bit mode (FS/GS are left out)

/** 16-bit ModRM addressing (SDM vol. 2, table 2-1): base and index of rm = 0-7. */
const RM16_BASE = [3, 3, 5, 5, 6, 7, 5, 3];
const RM16_INDEX = [6, 7, 6, 7, -1, -1, -1, -1];

function le(value: bigint, size: number): number[] {
  const out: number[] = [];
  for (let k = 0; k < size; k++) out.push(Number((value >> BigInt(8 * k)) & 0xffn));
  return out;
}

/** Offset into the data window for an absolute address, 16-byte aligned half of the time. */
function windowOffset(w: { size: number }, pick: number): number {
  const margin = Math.min(1024, w.size >> 2);
  let off = margin + (pick % Math.max(1, w.size - 2 * margin));
  if (pick & 1) off &= ~15;
  return off;
}

function operandSize(form: InstructionForm, mode: Mode, sizePrefix: boolean, w: boolean): number {
  const v = mode === 64 ? (w ? 8 : sizePrefix ? 2 : 4) : sizePrefix ? 2 : 4;
  switch (form.def.size ?? Sz.V) {
    case Sz.B: return 1;
    case Sz.W: return 2;
    case Sz.D: return 4;
    case Sz.Q: return 8;
    case Sz.D64: return mode === 64 ? (sizePrefix && !w ? 2 : 8) : v;
    case Sz.F64: return mode === 64 ? 8 : v;
    case Sz.Y: return mode === 64 && w ? 8 : 4;
    case Sz.Z: return v === 8 ? 4 : v;
    case Sz.NATURAL: return mode === 64 ? 8 : 4;
    default: return v;
  }
}

function immSize(kind: Im, opSize: number, addressSize: number): number {
  switch (kind) {
    case Im.Ib: case Im.Ub: case Im.Jb: return 1;
    case Im.Iw: return 2;
    case Im.Iz: case Im.Jz: return opSize === 2 ? 2 : 4;
    case Im.Iv: return opSize === 2 ? 2 : opSize === 8 ? 8 : 4;
    case Im.IwIb: return 3;
    case Im.Ap: return (opSize === 2 ? 2 : 4) + 2;
    case Im.Ob: return addressSize;
    default: return 0;
  }
}

/** Builds one encoding of `form` from the random choices `c`. */
function encode(form: InstructionForm, mode: Mode, o: EncodeOptions, c: Choices): GeneratedInstruction {
  const m64 = mode === 64;
  const def = form.def;
  // MOV CR/DR ignore ModRM.mod (always registers): generated as mod = 11b.
  const mod = !form.modrm || def.modIgnored ? 3 : form.rm !== null || form.mod === 'reg' ? 3 : form.mod === 'mem' ? c.mod % 3 : c.mod;
  const isMem = form.modrm && mod !== 3;
  // Optional prefixes; dropped again (segment first) if the instruction would exceed 15 bytes.
  let seg = c.seg < 5 ? SEGMENT_PREFIXES[c.seg & 3]! : 0;
  let lock = def.lock === true && isMem && !form.vex && c.lock < 30;
  let p67 = c.p67 < 10;
  const p66 = form.sizePrefix && c.p66 < 30;
  const rep = isStringForm(form) && c.rep < 60 ? (COMPARE_STRING_OPCODES.has(form.opcode) && c.repPick ? 0xf2 : 0xf3) : 0;

  for (;;) {
    const out: number[] = [];
    const prefixes: number[] = [];
    if (seg) prefixes.push(seg);
    if (p66) prefixes.push(0x66);
    if (p67) prefixes.push(0x67);
    if (lock) prefixes.push(0xf0);
    if (rep) prefixes.push(rep);
    if (!form.vex && form.prefix) prefixes.push(form.prefix);
    out.push(...prefixes);

    const addressSize = m64 ? (p67 ? 4 : 8) : p67 ? 2 : 4;
    let rex = 0;
    let vexInfo: InstructionLayout['vex'] = null;
    let w = false;
    // Now and then the same register as both operands (XADD, XCHG and CMPXCHG have cases of their own there).
    const alias = mod === 3 && form.reg === null && form.rm === null && c.alias < 25;
    // A form that names only some registers in ModRM.reg (validRegs, with REX.R) gets one of them.
    const valid = def.validRegs === undefined ? null
      : [...Array(m64 ? 16 : 8).keys()].filter((n) => (def.validRegs! >> n) & 1);
    const fullReg = valid === null ? null : valid[c.reg % valid.length]!;
    const reg = form.reg ?? (fullReg !== null ? fullReg & 7 : c.reg), rm = form.rm ?? (alias ? reg : c.rm);
    let rexBits = alias ? (c.rexBits & ~1) | ((c.rexBits >> 2) & 1) : c.rexBits;
    if (fullReg !== null) rexBits = (rexBits & ~4) | ((fullReg >> 3) << 2);
    if (form.vex) {
      // VEX (SDM vol. 2, 2.3.5): R/X/B/vvvv inverted; outside 64-bit mode R and X must read 1
      // (else C4/C5 is LES/LDS) and vvvv[3] is 0.
      const bits = m64 ? rexBits & 7 : 0;
      w = c.vexW;
      const l = !def.name.startsWith('v') && c.vexL < 10 ? 1 : 0;
      // A form without a vvvv operand needs 1111b (else #UD, SDM vol. 2, 2.3.6): mostly given, sometimes not.
      let vvvv = c.vvvvOnes < (def.vvvvUnused ? 90 : 25) ? 0 : c.vvvv;
      if (!m64) vvvv &= 7;
      const pp = form.prefix === 0x66 ? 1 : form.prefix === 0xf3 ? 2 : form.prefix === 0xf2 ? 3 : 0;
      const mmmmm = form.map - OpMap.VEX_0F + 1;
      const v2 = (w ? 0x80 : 0) | ((~vvvv & 15) << 3) | (l << 2) | pp;
      if (form.map === OpMap.VEX_0F && !w && (bits & 3) === 0 && c.vex2) {
        out.push(0xc5, ((bits & 4) ? 0 : 0x80) | (v2 & 0x7f));
      } else {
        out.push(0xc4, ((~bits & 7) << 5) | mmmmm, v2);
      }
      rex = m64 ? 0x40 | (w ? 8 : 0) | bits : 0;
      vexInfo = { w, l, vvvv, pp };
    } else {
      if (m64 && (c.rex < 60 || (fullReg !== null && fullReg > 7))) rex = 0x40 | rexBits;
      w = (rex & 8) !== 0;
      if (rex) out.push(rex);
      if (form.map === OpMap.TWO) out.push(0x0f);
      else if (form.map === OpMap.THREE_38) out.push(0x0f, 0x38);
      else if (form.map === OpMap.THREE_3A) out.push(0x0f, 0x3a);
    }
    out.push(form.opcode);
    const opSize = operandSize(form, mode, p66, w);

    // ModRM, SIB, displacement (SDM vol. 2, 2.1.5 and 2.2.1).
    let layoutReg = ((form.opcode & 7) | ((rex & 1) << 3));
    let layoutRm: number | null = null;
    let mem: MemoryOperand | null = null;
    let ripDispAt = -1;
    if (form.modrm) {
      out.push((mod << 6) | (reg << 3) | rm);
      layoutReg = reg | ((rex & 4) << 1);
      if (mod === 3) {
        layoutRm = rm | ((rex & 1) << 3);
      } else if (addressSize === 2) {
        let disp = 0, base = RM16_BASE[rm]!, index = RM16_INDEX[rm]!;
        if (mod === 0 && rm === 6) { base = -1; disp = c.disp32 & 0xffff; out.push(...le(BigInt(disp), 2)); }
        else if (mod === 1) { disp = c.disp8; out.push(c.disp8 & 0xff); }
        else if (mod === 2) { disp = c.disp32 & 0xffff; out.push(...le(BigInt(disp), 2)); }
        mem = { base, index, scale: 0, disp };
      } else {
        let base = rm | ((rex & 1) << 3), index = -1, scale = 0;
        if (rm === 4) {
          const idx = c.index | ((rex & 2) << 2);
          index = idx === 4 ? -1 : idx;
          scale = c.scale;
          base = c.base === 5 && mod === 0 ? -1 : c.base | ((rex & 1) << 3);
          out.push((scale << 6) | (c.index << 3) | c.base);
        } else if (rm === 5 && mod === 0) {
          base = m64 ? 16 : -1;
        }
        let disp = 0;
        if (mod === 1) { disp = c.disp8; out.push(disp & 0xff); }
        else if (mod === 2 || base < 0 || base === 16) {
          const win = o.dataWindow;
          if (base === 16 && win && o.codeAddress !== undefined) {
            ripDispAt = out.length; // patched once the length is known
          } else if (base === -1 && win) {
            disp = win.base + windowOffset(win, c.window);
          } else {
            disp = win && base === 4 ? c.dispSmall : c.disp32;
          }
          out.push(...le(BigInt.asUintN(32, BigInt(disp)), 4));
        }
        mem = { base, index, scale, disp };
      }
    }

    // Immediates and relative branch displacements.
    const kind = def.imm ?? Im.None;
    const n = immSize(kind, opSize, addressSize);
    const len = out.length + n;
    let imm: bigint | null = null, imm2: number | null = null, branchTarget: number | null = null;
    let moffs: bigint | null = null;
    if (kind === Im.Jb || kind === Im.Jz) {
      let disp: number;
      if (o.branchesInPage) {
        const room = Math.max(1, Math.min(kind === Im.Jb ? 128 : 0x7fffffff, 4096 - len));
        branchTarget = len + (c.target % room);
        disp = branchTarget - len;
      } else {
        disp = kind === Im.Jb ? c.disp8 : c.disp32;
        branchTarget = len + disp;
      }
      imm = BigInt.asUintN(8 * n, BigInt(disp));
    } else if (kind === Im.Ob) {
      const win = o.dataWindow;
      imm = win ? BigInt(win.base + windowOffset(win, c.window)) : c.imm & ((1n << BigInt(8 * n)) - 1n);
      moffs = imm;
    } else if (kind === Im.IwIb) {
      imm = c.imm & 0xffffn;
      imm2 = Number(c.imm2 & 0xffn);
    } else if (n > 0) {
      imm = c.imm & ((1n << BigInt(8 * n)) - 1n);
    }
    if (kind === Im.IwIb) out.push(...le(imm!, 2), imm2!);
    else if (n > 0) out.push(...le(imm!, n));

    if (len > 15 && (seg || lock || p67)) {
      if (seg) seg = 0; else if (lock) lock = false; else p67 = false;
      continue;
    }
    if (ripDispAt >= 0) {
      const disp = (o.dataWindow!.base + windowOffset(o.dataWindow!, c.window) - (o.codeAddress! + len)) | 0;
      out.splice(ripDispAt, 4, ...le(BigInt.asUintN(32, BigInt(disp)), 4));
      mem = { ...mem!, disp };
    }
    return {
      bytes: Uint8Array.from(out),
      form,
      layout: {
        opSize, addressSize, prefixes, rex, vex: vexInfo, reg: layoutReg, rm: layoutRm, mem, moffs,
        imm, immSize: n, imm2, branchTarget,
      },
    };
  }
}

/**
 * Random legal encodings of one form in `mode`: optional 66h where it changes
 * the operand size, 67h, rare ES/CS/SS/DS segment prefixes, LOCK on memory
 * forms that allow it, REP/REPNE on string instructions, REX with random
 * W/R/X/B in 64-bit mode (or VEX with random W/R/X/B/vvvv; VEX.L = 1 now and
 * then on forms whose mnemonic does not start with `v`, where it must raise
 * #UD, and VEX.vvvv = 1111b a quarter of the time, nine times in ten on forms
 * without a vvvv operand), ModRM with register
 * and memory operands, SIB with index and scale, disp8/disp32, RIP-relative
 * operands, and immediates biased toward boundary values. Never longer than 15
 * bytes. Pass `options` to aim branches and absolute addresses at memory you control.
 */
export function instructionArbitrary(
  form: InstructionForm, mode: Mode, options: EncodeOptions = {},
): fc.Arbitrary<GeneratedInstruction> {
  return choicesArb.map((c) => encode(form, mode, options, c));
}

/** Random legal encodings of any form of {@link instructionForms}(mode), forms chosen uniformly. */
export function anyInstruction(mode: Mode, options: EncodeOptions = {}): fc.Arbitrary<GeneratedInstruction> {
  const forms = instructionForms(mode);
  return fc.tuple(fc.nat({ max: forms.length - 1 }), choicesArb)
    .map(([k, c]) => encode(forms[k]!, mode, options, c));
}
