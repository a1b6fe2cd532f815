/**
 * The block compiler's code emitter. Templates (OpDef.compile) describe an
 * instruction through this interface; the emitter produces JavaScript text made
 * only of numbers and the model's own identifiers, never guest bytes.
 *
 * Flags: the emitter keeps the last flag-setting instruction's operands in
 * locals ("pending producer") and stores the lazy record into the processor
 * only when something may read it: a condition it cannot derive, a helper
 * call, an access that may fault, or the end of the block. A producer whose
 * flags the next producer overwrites is never stored.
 */
import { FlagOp } from '../flags.js';
import { HIGH_BYTE, type Insn } from '../insn.js';
import { CF, CS, OF, PF, RSP, SF, STATUS_FLAGS, ZF } from '../regs.js';
import { NO_LIMIT } from '../segment-limits.js';
import { PAGE_MASK, PAGE_SIZE } from '../memory.js';
import { TLB_MASK } from '../mmu.js';

/** A 64-bit value as two JavaScript expressions (locals or constants). */
export interface Pair { lo: string; hi: string }

/**
 * The linear address of a memory operand, with what its segment checks need
 * outside 64-bit mode: the segment register and the local holding the offset.
 */
export interface Address extends Pair { seg: number; offset: string }

interface Producer {
  op: FlagOp;
  size: number;
  a: Pair; b: Pair; r: Pair;
  carryIn: string;
}

const MASK = ['', '0xff', '0xffff', '', '-1', '', '', '', '-1'];

export class Emitter {
  private readonly out: string[] = [];
  private tmp = 0;
  private pending: Producer | null = null;
  /** Index of the instruction being emitted, and the offsets of its end and start; it is the block's last. */
  index = 0;
  last = false;
  /** The block goes on at the instruction's target (a link, blocks.ts). */
  linked = false;
  /** The instruction's template wrote memory (writeMem). */
  wroteMemory = false;
  nextOffset = 0;
  startOffset = 0;
  /** The block's code size (4 or 8). */
  readonly mode: number;

  constructor(mode: number) { this.mode = mode; }

  /** Appends a statement. */
  emit(line: string): void { this.out.push(line); }

  /** A fresh local name. */
  local(prefix = 't'): string { return `${prefix}${this.tmp++}`; }

  /** Declares a local holding `expr` and returns its name. */
  let(expr: string, prefix = 't'): string {
    const n = this.local(prefix);
    this.out.push(`const ${n} = ${expr};`);
    return n;
  }

  source(): string { return this.out.join('\n'); }

  // ---- registers ------------------------------------------------------------

  /** Reads register `r` (a byte register code when size is 1) into locals. */
  readReg(r: number, size: number): Pair {
    switch (size) {
      case 8: return { lo: this.let(`g[${2 * r}]`), hi: this.let(`g[${2 * r + 1}]`) };
      case 4: return { lo: this.let(`g[${2 * r}]`), hi: '0' };
      case 2: return { lo: this.let(`g[${2 * r}] & 0xffff`), hi: '0' };
      default:
        return r < HIGH_BYTE
          ? { lo: this.let(`g[${2 * r}] & 0xff`), hi: '0' }
          : { lo: this.let(`(g[${2 * (r - HIGH_BYTE)}] >> 8) & 0xff`), hi: '0' };
    }
  }

  /** Writes register `r` with the merge/zero-extension rules of operands.ts setReg. */
  writeReg(r: number, size: number, v: Pair): void {
    switch (size) {
      case 8: this.emit(`g[${2 * r}] = ${v.lo}; g[${2 * r + 1}] = ${v.hi};`); return;
      case 4: this.emit(`g[${2 * r}] = ${v.lo}; g[${2 * r + 1}] = 0;`); return;
      case 2: this.emit(`g[${2 * r}] = (g[${2 * r}] & ~0xffff) | (${v.lo} & 0xffff);`); return;
      default:
        if (r < HIGH_BYTE) this.emit(`g[${2 * r}] = (g[${2 * r}] & ~0xff) | (${v.lo} & 0xff);`);
        else {
          const n = 2 * (r - HIGH_BYTE);
          this.emit(`g[${n}] = (g[${n}] & ~0xff00) | ((${v.lo} & 0xff) << 8);`);
        }
    }
  }

  /** The ModRM reg operand's register code at `size`. */
  regOf(i: Insn, size: number): number { return size === 1 ? i.regB : i.reg; }
  /** The ModRM r/m operand's register code at `size` (when i.isReg). */
  rmOf(i: Insn, size: number): number { return size === 1 ? i.rmB : i.rm; }

  /** An immediate of the instruction as a pair. */
  imm(i: Insn, size: number): Pair {
    return { lo: String(i.imm), hi: size === 8 ? String(i.immHi) : '0' };
  }

  // ---- memory ---------------------------------------------------------------

  /**
   * Emits the linear address of i's memory operand, as operands.ts
   * effectiveAddress computes it; returns the locals holding it. Without the
   * segment (LEA), the offset alone.
   */
  address(i: Insn): Address;
  address(i: Insn, withSegment: false): Pair;
  address(i: Insn, withSegment = true): Address | Pair {
    const lo = this.local('ea'), hi = this.local('eh');
    this.emit(`let ${lo} = ${i.disp}, ${hi} = ${i.adSize === 8 ? i.disp >> 31 : 0};`);
    const add64 = (xLo: string, xHi: string): void => {
      const s = this.local('s');
      this.emit(`const ${s} = (${lo} >>> 0) + (${xLo} >>> 0); ${lo} = ${s} | 0; ${hi} = (${hi} + ${xHi} + (${s} > 0xffffffff ? 1 : 0)) | 0;`);
    };
    const base = i.base === 16 ? null : i.base;
    if (i.adSize === 8) {
      if (i.base === 16) add64(`((rl + ${this.nextOffset}) | 0)`, 'rh');
      else if (base !== null && base >= 0) add64(`g[${2 * base}]`, `g[${2 * base + 1}]`);
      if (i.index >= 0) {
        if (i.scale === 0) add64(`g[${2 * i.index}]`, `g[${2 * i.index + 1}]`);
        else add64(`(g[${2 * i.index}] << ${i.scale})`,
          `((g[${2 * i.index + 1}] << ${i.scale}) | (g[${2 * i.index}] >>> ${32 - i.scale}))`);
      }
    } else if (i.adSize === 4) {
      if (i.base === 16) this.emit(`${lo} = (${lo} + ((rl + ${this.nextOffset}) | 0)) | 0;`);
      else if (base !== null && base >= 0) this.emit(`${lo} = (${lo} + g[${2 * base}]) | 0;`);
      if (i.index >= 0) this.emit(`${lo} = (${lo} + (g[${2 * i.index}] << ${i.scale})) | 0;`);
    } else {
      return { lo: '', hi: '' }; // 16-bit addressing is left to the interpreter
    }
    if (!withSegment) return { lo, hi };
    // Outside 64-bit mode the offset is kept for the segment checks (readMem, writeMem).
    const offset = this.mode === 8 ? '' : this.let(lo, 'off');
    if (i.segBase) {
      const s = this.local('s');
      this.emit(`const ${s} = (${lo} >>> 0) + (cpu.segBase[${2 * i.seg}] >>> 0); ${lo} = ${s} | 0;`);
      this.emit(this.mode === 8
        ? `${hi} = (${hi} + cpu.segBase[${2 * i.seg + 1}] + (${s} > 0xffffffff ? 1 : 0)) | 0;`
        : `${hi} = 0;`);
    }
    this.emit(`cpu.accessSeg = ${i.seg};`);
    return { lo, hi, seg: i.seg, offset };
  }

  /**
   * The segment limit and type checks of an access (SDM vol. 3A, 5.3, 5.4),
   * outside 64-bit mode: one comparison on a flat segment (segment-limits.ts).
   * Accesses at addresses not made by address() (the 64-bit stack) have none.
   */
  private checkSegment(a: Pair | Address, size: number, write: boolean): void {
    if (this.mode === 8 || !('seg' in a)) return;
    const max = write ? 'cpu.segWriteMax' : 'cpu.segReadMax';
    this.emit(`if (${max}[${a.seg}] !== ${NO_LIMIT}) checkOffset(cpu, ${a.seg}, ${a.offset} >>> 0, ${size}, ${write});`);
  }

  /**
   * The fast path of the Mmu's reads and writes (mmu.ts read8..write64),
   * inline: declares the slot and page offset of the access of `size` bytes
   * at `a` and returns the condition under which the fast entry of `kind`
   * (R or W) serves it; otherwise the Mmu's own method takes it.
   */
  private fastEntry(a: Pair, size: number, kind: 'R' | 'W'): { slot: string; off: string; hit: string } {
    const slot = this.let(`(${a.lo} >>> 12) & ${TLB_MASK}`), off = this.let(`${a.lo} & ${PAGE_MASK}`);
    const within = size === 1 ? '' : `${off} <= ${PAGE_SIZE - size} && `;
    return { slot, off, hit: `${within}m.tag${kind}[${slot}] === ${a.hi} * 0x100000 + (${a.lo} >>> 12)` };
  }

  /** Reads `size` bytes at `a` (may fault). */
  readMem(a: Pair | Address, size: number): Pair {
    this.mayFault();
    this.checkSegment(a, size, false);
    const { slot, off, hit } = this.fastEntry(a, size, 'R'), page = `m.pageR[${slot}]`;
    switch (size) {
      case 8: {
        const lo = this.local(), hi = this.local();
        this.emit(`let ${lo}, ${hi}; if (${hit}) { const p = ${page}; ${lo} = p.getInt32(${off}, true); ${hi} = p.getInt32(${off} + 4, true); }` +
          ` else { ${lo} = m.read64(${a.lo}, ${a.hi}); ${hi} = m.hi; }`);
        return { lo, hi };
      }
      case 4: return { lo: this.let(`${hit} ? ${page}.getInt32(${off}, true) : m.read32(${a.lo}, ${a.hi})`), hi: '0' };
      case 2: return { lo: this.let(`${hit} ? ${page}.getUint16(${off}, true) : m.read16(${a.lo}, ${a.hi})`), hi: '0' };
      default: return { lo: this.let(`${hit} ? ${page}.getUint8(${off}) : m.read8(${a.lo}, ${a.hi})`), hi: '0' };
    }
  }

  /**
   * Writes `size` bytes at `a` (may fault). The write may invalidate code or
   * make a device raise an event, which ends the block after this instruction
   * (compile.ts, `wroteMemory`); such pages have no fast write entries.
   */
  writeMem(a: Pair | Address, size: number, v: Pair): void {
    this.mayFault();
    this.checkSegment(a, size, true);
    const { slot, off, hit } = this.fastEntry(a, size, 'W'), page = `m.pageW[${slot}]`;
    switch (size) {
      case 8:
        this.emit(`if (${hit}) { const p = ${page}; p.setInt32(${off}, ${v.lo}, true); p.setInt32(${off} + 4, ${v.hi}, true); }` +
          ` else m.write64(${a.lo}, ${a.hi}, ${v.lo}, ${v.hi});`);
        break;
      case 4: this.emit(`if (${hit}) ${page}.setInt32(${off}, ${v.lo}, true); else m.write32(${a.lo}, ${a.hi}, ${v.lo});`); break;
      case 2: this.emit(`if (${hit}) ${page}.setUint16(${off}, ${v.lo}, true); else m.write16(${a.lo}, ${a.hi}, ${v.lo});`); break;
      default: this.emit(`if (${hit}) ${page}.setUint8(${off}, ${v.lo}); else m.write8(${a.lo}, ${a.hi}, ${v.lo});`);
    }
    this.wroteMemory = true;
  }

  // ---- the flat stack of 64-bit mode ---------------------------------------------

  /** Pushes `size` bytes of `v` (read beforehand); RSP moves only once the write is done. */
  pushFlat(v: Pair, size: number): void {
    const sp = this.readReg(RSP, 8);
    const s = this.let(`(${sp.lo} >>> 0) - ${size}`);
    const a = { lo: this.let(`${s} | 0`), hi: this.let(`(${sp.hi} + (${s} < 0 ? -1 : 0)) | 0`) };
    this.emit('cpu.accessSeg = 2;');
    this.writeMem(a, size, v);
    this.writeReg(RSP, 8, a);
  }

  /** Reads the `size` bytes at the top of the stack; `pop` then moves RSP past them (after any check of the value). */
  topFlat(size: number): { value: Pair; pop: () => void } {
    const sp = this.readReg(RSP, 8);
    this.emit('cpu.accessSeg = 2;');
    const value = this.readMem(sp, size);
    const pop = (): void => {
      const s = this.let(`(${sp.lo} >>> 0) + ${size}`);
      this.writeReg(RSP, 8, { lo: this.let(`${s} | 0`), hi: this.let(`(${sp.hi} + (${s} > 0xffffffff ? 1 : 0)) | 0`) });
    };
    return { value, pop };
  }

  /** Before something that may raise: flags must be exact and the run loop must know where we are. */
  mayFault(): void {
    this.flush();
    this.emit(`cpu.blockIndex = ${this.index};`);
  }

  /**
   * Statements that set RIP to the target of relative branch `i`. A target in
   * the block's 4 GiB (64-bit mode) is as canonical as RIP, and one within the
   * CS limit (32-bit code) needs no more: the rest go to branchRelative, which
   * raises #GP(0) where the target is out of range (operands.ts).
   */
  branchTarget(i: Insn): string {
    const slow = `${this.ripStatement(this.nextOffset)} cpu.blockIndex = ${this.index}; branchRelative(cpu, ${i.opSize}, ${i.imm});`;
    const t = this.local(), offset = this.nextOffset + i.imm;
    if (this.mode === 8 && i.opSize === 8) {
      return `const ${t} = (rl >>> 0) + ${offset}; ` +
        `if (${t} >= 0 && ${t} <= 0xffffffff) { cpu.ripLo = ${t} | 0; cpu.ripHi = rh; } else { ${slow} }`;
    }
    if (this.mode === 4 && i.opSize === 4) {
      return `const ${t} = (rl + ${offset}) >>> 0; if (${t} <= cpu.segLimit[${CS}]) cpu.ripLo = ${t} | 0; else { ${slow} }`;
    }
    return slow;
  }

  /** Sets RIP to block start + offset (no carry: the run loop checks that the block does not wrap). */
  ripStatement(offset: number): string {
    return this.mode === 8 ? `cpu.ripLo = (rl + ${offset}) | 0; cpu.ripHi = rh;` : `cpu.ripLo = (rl + ${offset}) | 0;`;
  }

  // ---- flags ----------------------------------------------------------------

  /** Records a flag-setting result (ADD, ADC, SUB, SBB, LOGIC, INC, DEC). */
  produce(op: FlagOp, size: number, a: Pair, b: Pair, r: Pair, carryIn = '0'): void {
    if (op === FlagOp.INC || op === FlagOp.DEC) {
      // CF survives INC/DEC: settle it in cpu.flags, where the lazy record will read it.
      this.emit(`cpu.flags = (cpu.flags & ~${CF}) | ${this.carry()};`);
    }
    this.pending = { op, size, a, b, r, carryIn };
  }

  /** Stores the pending producer's lazy record into the processor. */
  flush(): void {
    const store = this.storeFlags();
    this.pending = null;
    if (store !== '') this.emit(store);
  }

  /** The statements that store the pending producer's lazy record ('' when none is pending). */
  private storeFlags(): string {
    const p = this.pending;
    if (p === null) return '';
    const mask = p.op === FlagOp.INC || p.op === FlagOp.DEC ? STATUS_FLAGS & ~CF : STATUS_FLAGS;
    return `cpu.lazyMask = ${mask}; cpu.lfOp = ${p.op}; cpu.lfSize = ${p.size};` +
      ` cpu.lfALo = ${p.a.lo}; cpu.lfAHi = ${p.a.hi}; cpu.lfBLo = ${p.b.lo}; cpu.lfBHi = ${p.b.hi};` +
      ` cpu.lfRLo = ${p.r.lo}; cpu.lfRHi = ${p.r.hi}; cpu.lfCarryIn = ${p.carryIn};`;
  }

  /**
   * Leaves the block after this instruction when `condition` holds, with the
   * flags exact and RIP set by `statements`; otherwise the block goes on with
   * the pending producer still pending.
   */
  exitIf(condition: string, statements: string): void {
    this.emit(`if (${condition}) { ${this.storeFlags()} ${statements} return ${this.index + 1}; }`);
  }

  /** CF as 0 or 1. */
  carry(): string {
    const p = this.pending;
    if (p === null) return '(getCF(cpu) & 1)';
    switch (p.op) {
      case FlagOp.LOGIC: return '0';
      case FlagOp.ADD: return `(${this.below(p.size, p.r, p.a)} ? 1 : 0)`;
      case FlagOp.SUB: return `(${this.below(p.size, p.a, p.b)} ? 1 : 0)`;
      default: this.flush(); return '(getCF(cpu) & 1)';
    }
  }

  /** An expression true when condition `cc` (tttn) holds. */
  condition(cc: number): string {
    const p = this.pending;
    const neg = (cc & 1) !== 0;
    let e: string | null = null;
    if (p !== null) {
      const zero = p.size === 8 ? `(${p.r.lo} | ${p.r.hi}) === 0` : `${p.r.lo} === 0`;
      const sign = this.signBit(p.size, p.r);
      const sub = p.op === FlagOp.SUB, logic = p.op === FlagOp.LOGIC;
      switch (cc >> 1) {
        case 2: e = zero; break;
        case 4: e = `${sign} !== 0`; break;
        case 0: if (logic) e = 'false'; break;
        case 1: if (sub) e = this.below(p.size, p.a, p.b); else if (logic) e = 'false'; break;
        case 3: if (sub) e = `(${this.below(p.size, p.a, p.b)} || ${zero})`; else if (logic) e = zero; break;
        case 6: if (sub) e = this.less(p.size, p.a, p.b); else if (logic) e = `${sign} !== 0`; break;
        case 7: if (sub) e = `(${this.less(p.size, p.a, p.b)} || ${zero})`;
          else if (logic) e = `(${zero} || ${sign} !== 0)`; break;
      }
    }
    if (e === null) {
      this.flush();
      // With no lazy flags (after a helper that set them all, say), RFLAGS answers directly.
      return `(cpu.lazyMask === 0 ? ${this.flagsCondition(cc)} : testCondition(cpu, ${cc}))`;
    }
    return neg ? `!(${e})` : `(${e})`;
  }

  /** Condition tttn (SDM vol. 2, appendix B.1.4.7) on the materialized flags in cpu.flags, as flags.ts testCondition. */
  private flagsCondition(cc: number): string {
    const set = (flag: number): string => `(cpu.flags & ${flag}) !== 0`;
    const less = `(${set(SF)}) !== (${set(OF)})`;
    const e = [set(OF), set(CF), set(ZF), set(CF | ZF), set(SF), set(PF), less, `(${set(ZF)} || ${less})`][cc >> 1]!;
    return cc & 1 ? `!(${e})` : `(${e})`;
  }

  private signBit(size: number, v: Pair): string {
    switch (size) {
      case 1: return `(${v.lo} & 0x80)`;
      case 2: return `(${v.lo} & 0x8000)`;
      case 4: return `(${v.lo} >>> 31)`;
      default: return `(${v.hi} >>> 31)`;
    }
  }

  /** Unsigned x < y at `size` (narrow values are masked). */
  private below(size: number, x: Pair, y: Pair): string {
    return size === 8
      ? `((${x.hi} >>> 0) < (${y.hi} >>> 0) || (${x.hi} === ${y.hi} && (${x.lo} >>> 0) < (${y.lo} >>> 0)))`
      : `((${x.lo} >>> 0) < (${y.lo} >>> 0))`;
  }

  /** Signed x < y at `size`. */
  private less(size: number, x: Pair, y: Pair): string {
    switch (size) {
      case 1: return `(((${x.lo} << 24) >> 24) < ((${y.lo} << 24) >> 24))`;
      case 2: return `(((${x.lo} << 16) >> 16) < ((${y.lo} << 16) >> 16))`;
      case 4: return `(${x.lo} < ${y.lo})`;
      default: return `(${x.hi} < ${y.hi} || (${x.hi} === ${y.hi} && (${x.lo} >>> 0) < (${y.lo} >>> 0)))`;
    }
  }

  /** The mask of a narrow size as source text. */
  mask(size: number): string { return MASK[size]!; }
}
