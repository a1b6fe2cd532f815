/**
 * Instruction decoder for the legacy, REX and VEX encodings (SDM vol. 2,
 * chapter 2): prefixes, opcode maps, ModRM/SIB, displacements and immediates in
 * 16-, 32- and 64-bit code. Decoding never raises: an undefined encoding decodes
 * to an instruction that raises #UD when executed, one longer than 15 bytes to
 * one that raises #GP(0) (SDM vol. 2, 2.3.11). Only a fault of the fetch itself
 * (a page fault on the code bytes) propagates.
 */
import { Vector } from './regs.js';
import {
  BASE_RIP, HIGH_BYTE, Im, Insn, OpMap, Sz,
  type ByMod, type ByMode, type ByRm, type Entry, type Group, type OpDef, type OpTable, type Prefixed,
} from './insn.js';
import { CS, DS, ES, FS, GS, SS } from './regs.js';

/** Where the decoder reads instruction bytes: byte k of the instruction. */
export interface ByteSource { byte(k: number): number }

/** An encoding the processor does not define. */
export const UNDEFINED: OpDef = { name: '(bad)', exec: (cpu) => cpu.raise(Vector.UD), ends: true };
/** An instruction longer than 15 bytes. */
export const TOO_LONG: OpDef = { name: '(too long)', exec: (cpu) => cpu.raise(Vector.GP, 0), ends: true };

const MAX_LENGTH = 15;

/** 16-bit addressing forms of ModRM.rm (SDM vol. 2, table 2-1): base, index. */
const RM16_BASE = [3, 3, 5, 5, 6, 7, 5, 3];
const RM16_INDEX = [6, 7, 6, 7, -1, -1, -1, -1];

class TooLong { }
const TOO_LONG_SIGNAL = new TooLong();

/**
 * Set by select(): a mandatory prefix chose the definition. A 66 slot holding
 * the same entry as the no-prefix slot means 66h is an operand-size prefix
 * there (BSF, MOVBE), not a mandatory one.
 */
let selectedByPrefix = false;

/** Resolves a group, prefix or mod selection down to one definition. */
function select(e: Entry | undefined, modrm: number, mandatory: number, mode: number): OpDef | undefined {
  selectedByPrefix = false;
  for (;;) {
    if (e === undefined) return undefined;
    if ('exec' in e) return e;
    if ('long64' in e || 'legacy' in e) { e = mode === 8 ? (e as ByMode).long64 : (e as ByMode).legacy; continue; }
    if ('group' in e) e = (e as Group).group[(modrm >> 3) & 7];
    else if ('prefixed' in e) {
      const slots = (e as Prefixed).prefixed;
      e = slots[mandatory];
      selectedByPrefix = mandatory !== 1 || e !== slots[0];
    }
    else if ('rm' in e) e = (modrm >> 6) === 3 ? (e as ByRm).rm[modrm & 7] : undefined;
    else e = (modrm >> 6) === 3 ? (e as ByMod).reg : (e as ByMod).mem;
  }
}

/** True when the entry needs ModRM before it can be resolved or executed. */
function needsModrm(e: Entry, mode: number, mandatory: number): boolean {
  if ('long64' in e || 'legacy' in e) {
    const m = mode === 8 ? (e as ByMode).long64 : (e as ByMode).legacy;
    return m !== undefined && needsModrm(m, mode, mandatory);
  }
  // A prefix selection needs ModRM only if the form it selects does (EMMS has none).
  if ('prefixed' in e) {
    const m = (e as Prefixed).prefixed[mandatory];
    return m !== undefined && needsModrm(m, mode, mandatory);
  }
  return !('exec' in e) || e.modrm === true;
}

export class Decoder {
  constructor(private readonly table: OpTable) {}

  /** Decodes one instruction in code of `mode` bytes (2, 4 or 8). */
  decode(src: ByteSource, mode: number): Insn {
    try {
      return this.decodeOrThrow(src, mode);
    } catch (e) {
      if (e !== TOO_LONG_SIGNAL) throw e;
      const insn = new Insn(TOO_LONG);
      insn.len = MAX_LENGTH;
      insn.mode = mode;
      return insn;
    }
  }

  private decodeOrThrow(src: ByteSource, mode: number): Insn {
    let k = 0;
    const next = (): number => {
      if (k >= MAX_LENGTH) throw TOO_LONG_SIGNAL;
      return src.byte(k++);
    };

    // Legacy prefixes, then REX immediately before the opcode (SDM vol. 2, 2.1.1 and 2.2.1).
    let p66 = false, p67 = false, lock = false, rep = 0, seg = -1, rex = 0;
    let b = next();
    for (;;) {
      if (b === 0x66) p66 = true;
      else if (b === 0x67) p67 = true;
      else if (b === 0xf0) lock = true;
      else if (b === 0xf2 || b === 0xf3) rep = b;
      // ES, CS, SS and DS overrides are ignored in 64-bit mode (SDM vol. 2, 2.1.1).
      else if (b === 0x26) { if (mode !== 8) seg = ES; }
      else if (b === 0x2e) { if (mode !== 8) seg = CS; }
      else if (b === 0x36) { if (mode !== 8) seg = SS; }
      else if (b === 0x3e) { if (mode !== 8) seg = DS; }
      else if (b === 0x64) seg = FS;
      else if (b === 0x65) seg = GS;
      else if (mode === 8 && (b & 0xf0) === 0x40) { rex = b; b = next(); if ((b & 0xf0) === 0x40) continue; break; }
      else break;
      rex = 0; // a REX prefix followed by a legacy prefix is ignored
      b = next();
    }

    // Opcode and map; VEX (SDM vol. 2, 2.3.5).
    let map: number = OpMap.ONE;
    let vex = false, vexW = false, vvvv = 0, vexL = 0, mandatory = rep === 0xf3 ? 2 : rep === 0xf2 ? 3 : p66 ? 1 : 0;
    if (b === 0x0f) {
      b = next();
      if (b === 0x38) { map = OpMap.THREE_38; b = next(); }
      else if (b === 0x3a) { map = OpMap.THREE_3A; b = next(); }
      else map = OpMap.TWO;
    } else if ((b === 0xc4 || b === 0xc5) && (mode === 8 || (src.byte(k) & 0xc0) === 0xc0)) {
      {
        if (p66 || rep || rex || lock) return this.undefined(k, mode);
        const v1 = next();
        let vmap = 1, v2 = v1;
        if (b === 0xc4) {
          vmap = v1 & 0x1f;
          rex = 0x40 | ((~v1 >> 5) & 7);
          v2 = next();
          vexW = (v2 & 0x80) !== 0;
          if (mode !== 8) rex = 0;
        } else {
          rex = mode === 8 ? 0x40 | ((~v1 >> 5) & 4) : 0;
        }
        if (vexW && mode === 8) rex |= 8;
        vvvv = (~v2 >> 3) & 0xf;
        if (mode !== 8) vvvv &= 7;
        vexL = (v2 >> 2) & 1;
        mandatory = v2 & 3;
        if (vmap < 1 || vmap > 3) return this.undefined(k, mode);
        map = OpMap.VEX_0F + vmap - 1;
        vex = true;
        b = next();
      }
    }

    const entry = this.table.get(map * 256 + b);
    if (entry === undefined) return this.undefined(k, mode);

    let modrm = 0;
    const hasModrm = needsModrm(entry, mode, mandatory);
    if (hasModrm) modrm = next();
    const def = select(entry, modrm, mandatory, mode);
    if (def === undefined) return this.undefined(k, mode);

    if ((def.inv64 && mode === 8) || (def.only64 && mode !== 8)) return this.undefined(k, mode);
    if (vex && vexL !== 0 && !def.name.startsWith('v')) return this.undefined(k, mode);
    if (vex && def.vvvvUnused && vvvv !== 0) return this.undefined(k, mode);

    const insn = new Insn(def);
    insn.mode = mode;
    insn.opcode = map * 256 + b;
    insn.rep = rep;
    insn.lock = lock;
    insn.rex = rex !== 0;
    insn.rexW = (rex & 8) !== 0;
    insn.p66 = p66;
    insn.vvvv = vvvv;
    insn.vexL = vexL;

    // Operand size (SDM vol. 2, 2.2.1.2, table 2-4) and address size. A 66h that
    // selected the form as its mandatory prefix does not also change the size.
    const sizePrefix = p66 && !(selectedByPrefix && mandatory === 1);
    const v = mode === 8 ? (rex & 8 ? 8 : sizePrefix ? 2 : 4) : (mode === 4) !== sizePrefix ? 4 : 2;
    switch (def.size ?? Sz.V) {
      case Sz.V: insn.opSize = v; break;
      case Sz.B: insn.opSize = 1; break;
      case Sz.W: insn.opSize = 2; break;
      case Sz.D: insn.opSize = 4; break;
      case Sz.Q: insn.opSize = 8; break;
      case Sz.D64: insn.opSize = mode === 8 ? (sizePrefix && !(rex & 8) ? 2 : 8) : v; break;
      case Sz.F64: insn.opSize = mode === 8 ? 8 : v; break;
      case Sz.Y: insn.opSize = mode === 8 && (rex & 8) ? 8 : 4; break;
      case Sz.Z: insn.opSize = v === 8 ? 4 : v; break;
      case Sz.NATURAL: insn.opSize = mode === 8 ? 8 : 4; break;
    }
    insn.adSize = mode === 8 ? (p67 ? 4 : 8) : (mode === 4) !== p67 ? 4 : 2;

    // Registers named by the opcode or ModRM.
    if (hasModrm) {
      const mod = def.modIgnored ? 3 : modrm >> 6, rm = modrm & 7;
      insn.reg = ((modrm >> 3) & 7) | ((rex & 4) << 1);
      if (mod === 3) {
        insn.isReg = true;
        insn.rm = rm | ((rex & 1) << 3);
        // A register form may still address memory through DS or an override (MONITOR: DS:rAX).
        insn.seg = seg >= 0 ? seg : DS;
      } else {
        insn.isReg = false;
        let defaultSeg = DS;
        if (insn.adSize === 2) {
          if (mod === 0 && rm === 6) { insn.disp = next() | (next() << 8); }
          else {
            insn.base = RM16_BASE[rm]!; insn.index = RM16_INDEX[rm]!;
            if (insn.base === 5) defaultSeg = SS;
            if (mod === 1) insn.disp = (next() << 24) >> 24;
            else if (mod === 2) insn.disp = next() | (next() << 8);
          }
        } else {
          let base = rm;
          if (rm === 4) {
            const sib = next();
            insn.scale = sib >> 6;
            const index = ((sib >> 3) & 7) | ((rex & 2) << 2);
            insn.index = index === 4 ? -1 : index;
            base = sib & 7;
            if (base === 5 && mod === 0) base = -1;
            else base |= (rex & 1) << 3;
          } else if (rm === 5 && mod === 0) {
            base = mode === 8 ? BASE_RIP : -1;
          } else {
            base |= (rex & 1) << 3;
          }
          insn.base = base;
          if (base === 4 || base === 5) defaultSeg = SS;
          if (mod === 1) insn.disp = (next() << 24) >> 24;
          else if (mod === 2 || base === -1 || base === BASE_RIP) {
            insn.disp = next() | (next() << 8) | (next() << 16) | (next() << 24);
          }
        }
        insn.seg = seg >= 0 ? seg : defaultSeg;
      }
      if (def.validRegs !== undefined && !((def.validRegs >> insn.reg) & 1)) return this.undefined(k, mode);
      if (def.memOnly && mod === 3) return this.undefined(k, mode);
      if (def.regOnly && mod !== 3) return this.undefined(k, mode);
    } else {
      insn.reg = (b & 7) | ((rex & 1) << 3);
      insn.rm = insn.reg;
      insn.seg = seg >= 0 ? seg : DS;
    }
    insn.segOverride = seg >= 0;
    insn.segBase = mode !== 8 || insn.seg === FS || insn.seg === GS;
    const hasRex = rex !== 0;
    insn.regB = !hasRex && insn.reg >= 4 && insn.reg < 8 ? HIGH_BYTE + insn.reg - 4 : insn.reg;
    insn.rmB = !hasRex && insn.rm >= 4 && insn.rm < 8 ? HIGH_BYTE + insn.rm - 4 : insn.rm;

    // LOCK: only with a memory destination of an instruction that allows it (SDM vol. 2, LOCK).
    if (lock && (!def.lock || insn.isReg)) return this.undefined(k, mode);

    // Immediates and relative displacements.
    const z = insn.opSize;
    switch (def.imm ?? Im.None) {
      case Im.None: break;
      case Im.Ib: insn.imm = (next() << 24) >> 24; insn.immHi = insn.imm >> 31; break;
      case Im.Ub: insn.imm = next(); break;
      case Im.Iw: insn.imm = next() | (next() << 8); break;
      case Im.Iz:
        insn.imm = z === 2 ? next() | (next() << 8) : next() | (next() << 8) | (next() << 16) | (next() << 24);
        insn.immHi = insn.imm >> 31;
        break;
      case Im.Iv:
        if (z === 2) insn.imm = next() | (next() << 8);
        else {
          insn.imm = next() | (next() << 8) | (next() << 16) | (next() << 24);
          if (z === 8) insn.immHi = next() | (next() << 8) | (next() << 16) | (next() << 24);
        }
        break;
      case Im.IwIb: insn.imm = next() | (next() << 8); insn.imm2 = next(); break;
      case Im.Ap:
        insn.imm = z === 2 ? next() | (next() << 8) : next() | (next() << 8) | (next() << 16) | (next() << 24);
        insn.imm2 = next() | (next() << 8);
        break;
      case Im.Ob:
        insn.isReg = false;
        insn.base = -1; insn.index = -1;
        insn.disp = next() | (next() << 8);
        if (insn.adSize >= 4) insn.disp |= (next() << 16) | (next() << 24);
        if (insn.adSize === 8) insn.immHi = next() | (next() << 8) | (next() << 16) | (next() << 24);
        break;
      case Im.Jb: insn.imm = (next() << 24) >> 24; break;
      case Im.Jz:
        insn.imm = z === 2 ? ((next() | (next() << 8)) << 16) >> 16
          : next() | (next() << 8) | (next() << 16) | (next() << 24);
        break;
    }
    if (z === 1) insn.imm &= 0xff;
    else if (z === 2 && def.imm !== Im.Jb && def.imm !== Im.Jz) insn.imm &= 0xffff;

    insn.len = k;
    return insn;
  }

  private undefined(k: number, mode: number): Insn {
    const insn = new Insn(UNDEFINED);
    insn.len = k;
    insn.mode = mode;
    return insn;
  }
}
