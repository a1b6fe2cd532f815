/**
 * What compiled kernels need of the x87 FPU and of state saving (SDM vol. 2,
 * each instruction's page; vol. 1, chapters 8, 10.5 and 13): FNINIT, FNCLEX,
 * FLDCW, FNSTCW, FNSTSW (m16 and AX), FWAIT, EMMS, FXSAVE/FXRSTOR, XSAVE,
 * XRSTOR, XSAVEOPT, XSAVEC, XSAVES and XRSTORS (x87 and SSE state; no
 * supervisor state components), and from the same 0F AE group LFENCE, MFENCE,
 * SFENCE and CLFLUSH. The register file is cpu.msrs.x87;
 * XCR0 is cpu.msrs.xcr0 (XGETBV/XSETBV are in system.ts).
 *
 * Not implemented, and decoded as undefined (#UD): x87 arithmetic, loads and
 * stores of data registers, comparisons, transcendental and constant
 * instructions, FSAVE/FNSAVE, FRSTOR, FSTENV/FNSTENV, FLDENV, FINCSTP/FDECSTP,
 * FFREE, FNOP, the 8087/287 leftovers FNENI/FNDISI/FNSETPM, and every MMX
 * instruction except EMMS. A real processor raises #UD for none of the D8-DF
 * escapes; compiled kernels do not execute them.
 *
 * Choices:
 * - x87 exceptions never arise here (nothing computes), but a pending one can
 *   be loaded: FLDCW recomputes FSW.ES and FSW.B from the new masks; FXRSTOR and
 *   XRSTOR load FSW as stored. A waiting instruction (FWAIT, FLDCW, EMMS) with
 *   FSW.ES = 1 raises #MF when CR0.NE = 1; with CR0.NE = 0 the processor would
 *   signal FERR#, which no pin here receives, so nothing happens.
 * - FCW has no bits 15:13 and bit 6 reads as 1: FLDCW, FXRSTOR and XRSTOR load
 *   (value AND 1F3FH) OR 40H, what a processor stores back.
 * - FCS and FDS are deprecated (CPUID.(EAX=07H,ECX=0):EBX[13] = 1) and saved as 0.
 * - FXSAVE and FXRSTOR save and restore XMM registers and MXCSR whatever
 *   CR4.OSFXSR (the SDM leaves it to the implementation).
 * - XINUSE is computed when needed: a component is in use unless it is in its
 *   initial configuration (SDM vol. 1, 13.6); the x87 one includes ST0-ST7 = 0.
 *   XSAVEOPT uses the init optimisation (skips components not in use) but not
 *   the modified optimisation.
 */
import type { Cpu } from '../cpu.js';
import { hasFeature, XCR0_SUPPORTED } from '../cpuid.js';
import { OpMap, Sz, type Entry, type Exec, type Insn, type OpDef } from '../insn.js';
import type { X87State } from '../msr.js';
import { checkSegment, effectiveAddress, readEa, setReg, writeEa } from '../operands.js';
import type { CpuFeature } from '../profile.js';
import { RAX, Vector } from '../regs.js';
import { Intercept } from '../virtualization.js';

const ONE = OpMap.ONE * 256, TWO = OpMap.TWO * 256;

const CR0_MP = 1 << 1, CR0_EM = 1 << 2, CR0_TS = 1 << 3, CR0_NE = 1 << 5;
const CR4_OSXSAVE = 1 << 18;
/** FSW: exception flags 5:0, stack fault, error summary, busy, TOP (SDM vol. 1, 8.1.3). */
const FSW_FLAGS = 0x3f, FSW_ES = 1 << 7, FSW_B = 1 << 15;
/** MXCSR bits this processor supports (MXCSR_MASK; DAZ included). */
export const MXCSR_MASK = 0xffff;
const FCW_MASK = 0x1f3f, FCW_ONE = 0x40;

// ---- checks ------------------------------------------------------------------------

/** x87 instructions: CR0.EM = 1 or CR0.TS = 1 raises #NM (SDM vol. 3A, 2.5, table 2-2). */
function x87Check(cpu: Cpu): void {
  if ((cpu.cr0 & (CR0_EM | CR0_TS)) !== 0) cpu.raise(Vector.NM);
}

/** A waiting instruction raises #MF for a pending unmasked x87 exception (SDM vol. 1, 8.6, 8.7). */
function pendingCheck(cpu: Cpu, s: X87State): void {
  if ((s.fsw & FSW_ES) !== 0 && (cpu.cr0 & CR0_NE) !== 0) cpu.raise(Vector.MF);
}

// ---- x87 control instructions ------------------------------------------------------

/** FNINIT (SDM vol. 2, FINIT/FNINIT). */
function fninit(cpu: Cpu): void {
  x87Check(cpu);
  cpu.msrs.x87.initialize();
}

/** FNCLEX: clears the exception flags, SF, ES and B (SDM vol. 2, FCLEX/FNCLEX). */
function fnclex(cpu: Cpu): void {
  x87Check(cpu);
  cpu.msrs.x87.fsw &= ~(0xff | FSW_B);
}

/** FLDCW m2byte (SDM vol. 2, FLDCW): a waiting instruction. */
function fldcw(cpu: Cpu, i: Insn): void {
  x87Check(cpu);
  const s = cpu.msrs.x87;
  pendingCheck(cpu, s);
  effectiveAddress(cpu, i);
  const v = readEa(cpu, 2);
  s.fcw = (v & FCW_MASK) | FCW_ONE;
  // A flag the new control word unmasks becomes pending for the next waiting instruction.
  if ((s.fsw & FSW_FLAGS & ~s.fcw) !== 0) s.fsw |= FSW_ES | FSW_B;
  else s.fsw &= ~(FSW_ES | FSW_B);
}

/** FNSTCW m2byte (SDM vol. 2, FSTCW/FNSTCW). */
function fnstcw(cpu: Cpu, i: Insn): void {
  x87Check(cpu);
  effectiveAddress(cpu, i);
  writeEa(cpu, 2, cpu.msrs.x87.fcw, 0);
}

/** FNSTSW m2byte (SDM vol. 2, FSTSW/FNSTSW). */
function fnstsw(cpu: Cpu, i: Insn): void {
  x87Check(cpu);
  effectiveAddress(cpu, i);
  writeEa(cpu, 2, cpu.msrs.x87.fsw, 0);
}

/** FNSTSW AX. */
function fnstswAx(cpu: Cpu): void {
  x87Check(cpu);
  setReg(cpu, RAX, 2, cpu.msrs.x87.fsw, 0);
}

/** WAIT/FWAIT: #NM only when CR0.MP = 1 and CR0.TS = 1 (SDM vol. 3A, 2.5, table 2-2). */
function fwait(cpu: Cpu): void {
  if ((cpu.cr0 & (CR0_MP | CR0_TS)) === (CR0_MP | CR0_TS)) cpu.raise(Vector.NM);
  pendingCheck(cpu, cpu.msrs.x87);
}

/**
 * EMMS: tags every x87 register empty (SDM vol. 2, EMMS). As an MMX
 * instruction it raises #UD when CR0.EM = 1 and #NM when CR0.TS = 1.
 */
function emms(cpu: Cpu): void {
  if ((cpu.cr0 & CR0_EM) !== 0) cpu.raise(Vector.UD);
  if ((cpu.cr0 & CR0_TS) !== 0) cpu.raise(Vector.NM);
  const s = cpu.msrs.x87;
  pendingCheck(cpu, s);
  s.ftw = 0;
}

// ---- the save area -------------------------------------------------------------------

/**
 * The image of an FXSAVE/XSAVE area being saved or restored: bytes 0-511 the
 * legacy region, 512-575 the XSAVE header (SDM vol. 1, 10.5.1, table 10-2; 13.4).
 */
const IMG = new Uint8Array(576);
const V = new DataView(IMG.buffer);
/** Linear address of the area, and of its byte being accessed. */
let baseLo = 0, baseHi = 0, aLo = 0, aHi = 0;

function at(cpu: Cpu, off: number): void {
  const s = (baseLo >>> 0) + off;
  aLo = s | 0;
  aHi = cpu.codeSize === 8 && s > 0xffffffff ? (baseHi + 1) | 0 : baseHi;
}

/** Computes the area's address; #GP(0) unless aligned to `align` bytes, "regardless of segment". */
function areaAddress(cpu: Cpu, i: Insn, align: number): void {
  effectiveAddress(cpu, i);
  if ((cpu.eaLo & (align - 1)) !== 0) cpu.raise(Vector.GP, 0);
  baseLo = cpu.eaLo; baseHi = cpu.eaHi;
}

/** Points cpu.eaLo/eaHi at byte `from` of the area and checks bytes [from, to) against its segment (SDM vol. 3A, 5.3, 5.4). */
function checkRange(cpu: Cpu, from: number, to: number, write: boolean): void {
  at(cpu, from);
  cpu.eaLo = aLo; cpu.eaHi = aHi;
  checkSegment(cpu, to - from, write);
}

/** Raises what writing bytes [from, to) of the area would raise, writing nothing. */
function probeStore(cpu: Cpu, from: number, to: number): void {
  checkRange(cpu, from, to, true);
  cpu.mmu.probeWrite(aLo, aHi, to - from);
}

/** Reads bytes [from, to) of the area into IMG (8-byte units; the area is aligned). */
function loadRange(cpu: Cpu, from: number, to: number): void {
  checkRange(cpu, from, to, false);
  const m = cpu.mmu;
  for (let o = from; o < to; o += 8) {
    at(cpu, o);
    V.setInt32(o, m.read64(aLo, aHi), true);
    V.setInt32(o + 4, m.hi, true);
  }
}

/** Writes bytes [from, to) of IMG to the area. */
function storeRange(cpu: Cpu, from: number, to: number): void {
  const m = cpu.mmu;
  for (let o = from; o < to; o += 8) {
    at(cpu, o);
    m.write64(aLo, aHi, V.getInt32(o, true), V.getInt32(o + 4, true));
  }
}

/** XMM registers the mode has: 16 in 64-bit mode, 8 otherwise. */
function xmmCount(cpu: Cpu): number {
  return cpu.codeSize === 8 ? 16 : 8;
}

/**
 * x87 state into bytes 0-23 and 32-159 (SDM vol. 1, 10.5.1, tables 10-2 and
 * 10-3): with REX.W the pointers are 64-bit; otherwise FIP[31:0], FCS, FDP[31:0], FDS.
 */
function putX87(s: X87State, rexW: boolean): void {
  V.setUint16(0, s.fcw, true);
  V.setUint16(2, s.fsw, true);
  IMG[4] = s.ftw; IMG[5] = 0;
  V.setUint16(6, s.fop & 0x7ff, true);
  V.setInt32(8, s.fipLo, true);
  V.setInt32(12, rexW ? s.fipHi : 0, true); // FCS deprecated: 0
  V.setInt32(16, s.fdpLo, true);
  V.setInt32(20, rexW ? s.fdpHi : 0, true); // FDS deprecated: 0
  // ST(j) is physical register (TOP + j) mod 8; bytes 10-15 of each slot are reserved.
  const top = (s.fsw >> 11) & 7;
  for (let j = 0; j < 8; j++) {
    const r = 10 * ((top + j) & 7), o = 32 + 16 * j;
    for (let k = 0; k < 10; k++) IMG[o + k] = s.st[r + k]!;
    for (let k = 10; k < 16; k++) IMG[o + k] = 0;
  }
}

/** x87 state from bytes 0-23 and 32-159 of IMG. */
function getX87(s: X87State, rexW: boolean): void {
  s.fcw = (V.getUint16(0, true) & FCW_MASK) | FCW_ONE;
  s.fsw = V.getUint16(2, true);
  s.ftw = IMG[4]!;
  s.fop = V.getUint16(6, true) & 0x7ff;
  s.fipLo = V.getInt32(8, true); s.fipHi = rexW ? V.getInt32(12, true) : 0;
  s.fdpLo = V.getInt32(16, true); s.fdpHi = rexW ? V.getInt32(20, true) : 0;
  const top = (s.fsw >> 11) & 7;
  for (let j = 0; j < 8; j++) {
    const r = 10 * ((top + j) & 7), o = 32 + 16 * j;
    for (let k = 0; k < 10; k++) s.st[r + k] = IMG[o + k]!;
  }
}

/** Initial x87 configuration (SDM vol. 1, 13.6): FNINIT's state with ST0-ST7 = 0. */
function initX87(s: X87State): void {
  s.initialize();
  s.st.fill(0);
}

function putMxcsr(cpu: Cpu): void {
  V.setInt32(24, cpu.mxcsr, true);
  V.setInt32(28, MXCSR_MASK, true);
}

/** MXCSR from byte 24; setting a reserved bit raises #GP(0) (SDM vol. 2, FXRSTOR, XRSTOR). */
function checkMxcsr(cpu: Cpu): number {
  const v = V.getInt32(24, true);
  if ((v & ~MXCSR_MASK) !== 0) cpu.raise(Vector.GP, 0);
  return v;
}

function putXmm(cpu: Cpu, n: number): void {
  const x = cpu.xmm;
  for (let k = 0; k < 4 * n; k++) V.setInt32(160 + 4 * k, x[k]!, true);
}

function getXmm(cpu: Cpu, n: number): void {
  const x = cpu.xmm;
  for (let k = 0; k < 4 * n; k++) x[k] = V.getInt32(160 + 4 * k, true);
}

/**
 * XINUSE (SDM vol. 1, 13.6): bit 0 unless the x87 state is in its initial
 * configuration, bit 1 unless every XMM register is 0 (MXCSR does not count).
 */
export function xinuse(cpu: Cpu): number {
  const s = cpu.msrs.x87;
  let v = 0;
  if (s.fcw !== 0x037f || s.fsw !== 0 || s.ftw !== 0 || s.fop !== 0 ||
      (s.fipLo | s.fipHi | s.fdpLo | s.fdpHi) !== 0) v = 1;
  else for (let k = 0; k < 80; k++) if (s.st[k] !== 0) { v = 1; break; }
  const x = cpu.xmm;
  for (let k = 0; k < 64; k++) if (x[k] !== 0) { v |= 2; break; }
  return v;
}

// ---- FXSAVE / FXRSTOR ------------------------------------------------------------------

/** FXSAVE/FXSAVE64 m512byte (SDM vol. 2, FXSAVE). Bytes 464-511 are not written. */
function fxsave(cpu: Cpu, i: Insn): void {
  // #NM if CR0.TS or CR0.EM (SDM vol. 2, FXSAVE, "Protected Mode Exceptions").
  if ((cpu.cr0 & (CR0_EM | CR0_TS)) !== 0) cpu.raise(Vector.NM);
  areaAddress(cpu, i, 16);
  const n = xmmCount(cpu);
  probeStore(cpu, 0, 160 + 16 * n);
  putX87(cpu.msrs.x87, i.rexW);
  putMxcsr(cpu);
  putXmm(cpu, n);
  storeRange(cpu, 0, 160 + 16 * n);
}

/** FXRSTOR/FXRSTOR64 m512byte (SDM vol. 2, FXRSTOR). */
function fxrstor(cpu: Cpu, i: Insn): void {
  if ((cpu.cr0 & (CR0_EM | CR0_TS)) !== 0) cpu.raise(Vector.NM);
  areaAddress(cpu, i, 16);
  const n = xmmCount(cpu);
  loadRange(cpu, 0, 160 + 16 * n);
  const mxcsr = checkMxcsr(cpu);
  getX87(cpu.msrs.x87, i.rexW);
  cpu.mxcsr = mxcsr;
  getXmm(cpu, n);
}

// ---- the XSAVE feature set: XSAVE, XSAVEOPT, XSAVEC, XSAVES, XRSTOR, XRSTORS ------------

/** XCOMP_BV[63], in the high half of header bytes 15:8: the area is in the compacted format (SDM vol. 1, 13.4.2). */
const COMPACTED = 0x80000000 | 0;
/** MXCSR's initial value (SDM vol. 1, 13.6). */
const MXCSR_INIT = 0x1f80;


/**
 * The checks of the XSAVE family in priority order (SDM vol. 2, each page's
 * "Exceptions"; vol. 3A, 6.9): #UD if CPUID does not announce `feature` or
 * CR4.OSXSAVE = 0; for XSAVES and XRSTORS (`what` not -1) in non-root operation,
 * the #UD or VM exit of "enable XSAVES/XRSTORS" (SDM vol. 3C, 26.1.3, 26.3);
 * #NM if CR0.TS = 1; #GP(0) at CPL > 0 for XSAVES and XRSTORS; #GP(0) unless
 * the area is 64-byte aligned. Returns RFBM = XCR0 (OR IA32_XSS for XSAVES and
 * XRSTORS) AND EDX:EAX, or -1 when the instruction became a VM exit. Neither
 * XCR0 nor IA32_XSS has a bit above 31, so EDX does not count.
 */
function xsaveStart(cpu: Cpu, i: Insn, feature: CpuFeature, what: Intercept | -1): number {
  if (!hasFeature(cpu, feature) || (cpu.cr4 & CR4_OSXSAVE) === 0) cpu.raise(Vector.UD);
  const supervisor = what !== -1;
  if (supervisor && cpu.nonRoot && cpu.virt.intercept(cpu, i, what)) return -1;
  if ((cpu.cr0 & CR0_TS) !== 0) cpu.raise(Vector.NM);
  if (supervisor && cpu.cpl > 0) cpu.raise(Vector.GP, 0);
  areaAddress(cpu, i, 64);
  return (cpu.msrs.xcr0 | (supervisor ? cpu.msrs.xss : 0)) & cpu.gpr[2 * RAX]! & XCR0_SUPPORTED;
}

/**
 * Writes saved state to the area: the x87 region if `save` has bit 0, MXCSR and
 * MXCSR_MASK if `mxcsr`, the XMM registers if `save` has bit 1, then header
 * bytes 512 to `headerEnd` as the caller put them in IMG. The write is checked
 * from the first byte written to the header's end before anything is written.
 */
function storeComponents(cpu: Cpu, i: Insn, save: number, mxcsr: boolean, headerEnd: number): void {
  const first = (save & 1) !== 0 ? 0 : mxcsr ? 24 : 512;
  probeStore(cpu, first, headerEnd);
  if ((save & 1) !== 0) {
    putX87(cpu.msrs.x87, i.rexW);
    storeRange(cpu, 0, 24);
    storeRange(cpu, 32, 160);
  }
  if (mxcsr) { putMxcsr(cpu); storeRange(cpu, 24, 32); }
  if ((save & 2) !== 0) {
    const n = xmmCount(cpu);
    putXmm(cpu, n);
    storeRange(cpu, 160, 160 + 16 * n);
  }
  storeRange(cpu, 512, headerEnd);
}

/**
 * XSAVE (optimized = false) and XSAVEOPT (SDM vol. 1, 13.7, 13.9). XSAVEOPT
 * skips a component not in use, except MXCSR, which both save whenever RFBM[1] = 1.
 * XSTATE_BV[i] becomes XINUSE[i] where RFBM[i] = 1; the rest of the header is untouched.
 */
function xsave(optimized: boolean): Exec {
  const feature = optimized ? 'xsaveopt' : 'xsave';
  return (cpu, i) => {
    const rfbm = xsaveStart(cpu, i, feature, -1);
    const inuse = xinuse(cpu);
    loadRange(cpu, 512, 520);
    V.setInt32(512, (V.getInt32(512, true) & ~rfbm) | (inuse & rfbm), true);
    storeComponents(cpu, i, optimized ? rfbm & inuse : rfbm, (rfbm & 2) !== 0, 520);
  };
}

/**
 * XSAVEC and XSAVES (SDM vol. 1, 13.10, 13.11): the compacted format, in which
 * components 0 and 1 keep their legacy-region places (13.4.3), with the init
 * optimization. Component i is saved iff RFBM[i] = 1 and it is in use, SSE
 * state counting as in use while MXCSR is not 1F80H (MXCSR belongs to it here);
 * XSTATE_BV ← the components saved, XCOMP_BV ← RFBM with bit 63 set; the rest
 * of the header is untouched. XSAVES may also skip components unmodified since
 * the last XRSTORS (the modified optimization); the model does not.
 */
function xsaveCompacted(supervisor: boolean): Exec {
  const feature = supervisor ? 'xsaves' : 'xsavec', what = supervisor ? Intercept.XSAVES : -1;
  return (cpu, i) => {
    const rfbm = xsaveStart(cpu, i, feature, what);
    if (rfbm < 0) return;
    const save = rfbm & (xinuse(cpu) | (cpu.mxcsr !== MXCSR_INIT ? 2 : 0));
    V.setInt32(512, save, true); V.setInt32(516, 0, true);
    V.setInt32(520, rfbm, true); V.setInt32(524, COMPACTED, true);
    storeComponents(cpu, i, save, (save & 2) !== 0, 528);
  };
}

/**
 * Loads the components RFBM selects (SDM vol. 1, 13.8): from the area where
 * XSTATE_BV has their bit, otherwise their initial configuration. MXCSR comes
 * from the area whenever RFBM[1] = 1 in the standard form (13.8.1); in the
 * compacted form it is part of SSE state and initialized with it (13.8.2).
 * Everything is read, and MXCSR checked, before anything changes.
 */
function restoreComponents(cpu: Cpu, i: Insn, rfbm: number, bv: number, compacted: boolean): void {
  const n = xmmCount(cpu), load = rfbm & bv;
  if ((load & 1) !== 0) { loadRange(cpu, 0, 24); loadRange(cpu, 32, 160); }
  let mxcsr = cpu.mxcsr;
  if ((compacted ? load & 2 : rfbm & 2) !== 0) {
    loadRange(cpu, 24, 32);
    mxcsr = checkMxcsr(cpu);
  } else if ((rfbm & 2) !== 0) {
    mxcsr = MXCSR_INIT;
  }
  if ((load & 2) !== 0) loadRange(cpu, 160, 160 + 16 * n);
  const s = cpu.msrs.x87;
  if ((rfbm & 1) !== 0) {
    if ((load & 1) !== 0) getX87(s, i.rexW); else initX87(s);
  }
  cpu.mxcsr = mxcsr;
  if ((rfbm & 2) !== 0) {
    if ((load & 2) !== 0) getXmm(cpu, n); else cpu.xmm.fill(0, 0, 4 * n);
  }
}

/**
 * The compacted form of XRSTOR and XRSTORS, header in IMG (SDM vol. 1, 13.8.2,
 * 13.12; vol. 2, XRSTOR, XRSTORS "Exceptions"): #GP(0) if XCOMP_BV sets a bit
 * that `enabled` (XCR0, or XCR0 | IA32_XSS) does not, XSTATE_BV sets one that
 * XCOMP_BV does not, or header bytes 63:16 are not 0.
 */
function restoreCompacted(cpu: Cpu, i: Insn, rfbm: number, enabled: number): void {
  const bv = V.getInt32(512, true), bvHi = V.getInt32(516, true);
  const comp = V.getInt32(520, true), compHi = V.getInt32(524, true) & ~COMPACTED;
  if ((comp & ~enabled) !== 0 || compHi !== 0 || (bv & ~comp) !== 0 || bvHi !== 0) cpu.raise(Vector.GP, 0);
  for (let o = 528; o < 576; o += 4) if (V.getInt32(o, true) !== 0) cpu.raise(Vector.GP, 0);
  restoreComponents(cpu, i, rfbm, bv, true);
}

/**
 * XRSTOR (SDM vol. 1, 13.8; vol. 2, XRSTOR "Exceptions"): the standard form,
 * or the compacted form when XCOMP_BV[63] = 1 (#GP(0) without XSAVEC support).
 * The header is one aligned 64-byte block: reading all of it faults no more than reading part.
 */
function xrstor(cpu: Cpu, i: Insn): void {
  const rfbm = xsaveStart(cpu, i, 'xsave', -1);
  loadRange(cpu, 512, 576);
  if (V.getInt32(524, true) < 0) {
    if (!hasFeature(cpu, 'xsavec')) cpu.raise(Vector.GP, 0);
    restoreCompacted(cpu, i, rfbm, cpu.msrs.xcr0);
    return;
  }
  // #GP: XSTATE_BV sets a bit XCR0 does not, or header bytes 23:8 (XCOMP_BV and the next 8) are not 0.
  const bv = V.getInt32(512, true);
  if ((bv & ~cpu.msrs.xcr0) !== 0 || V.getInt32(516, true) !== 0) cpu.raise(Vector.GP, 0);
  for (let o = 520; o < 536; o += 4) if (V.getInt32(o, true) !== 0) cpu.raise(Vector.GP, 0);
  restoreComponents(cpu, i, rfbm, bv, false);
}

/** XRSTORS (SDM vol. 1, 13.12): the compacted form only; #GP(0) if XCOMP_BV[63] = 0. */
function xrstors(cpu: Cpu, i: Insn): void {
  const rfbm = xsaveStart(cpu, i, 'xsaves', Intercept.XRSTORS);
  if (rfbm < 0) return;
  loadRange(cpu, 512, 576);
  if (V.getInt32(524, true) >= 0) cpu.raise(Vector.GP, 0);
  restoreCompacted(cpu, i, rfbm, cpu.msrs.xcr0 | cpu.msrs.xss);
}

// ---- fences and CLFLUSH ------------------------------------------------------------------

/** LFENCE, MFENCE, SFENCE: one instruction completes before the next begins here, so they order nothing more. */
function fence(): void { /* nothing to order */ }

/**
 * CLFLUSH m8 (SDM vol. 2, CLFLUSH): there are no caches to flush; the access is
 * checked as a byte load ("subject to all permission checking and faults
 * associated with a byte load").
 */
function clflush(cpu: Cpu, i: Insn): void {
  effectiveAddress(cpu, i);
  readEa(cpu, 1);
}

// ---- the table ---------------------------------------------------------------------------

const def = (name: string, exec: OpDef['exec']): OpDef => ({ name, exec, modrm: true });
/** A memory form defined only without a mandatory prefix (NP). */
const npMem = (d: OpDef): Entry => ({ mem: { prefixed: [d] } });

export const FPU_TABLE: Record<number, Entry> = {
  [ONE + 0x9b]: { name: 'wait', exec: fwait },
  [ONE + 0xd9]: {
    group: [undefined, undefined, undefined, undefined, undefined,
      { mem: def('fldcw', fldcw) }, undefined, { mem: def('fnstcw', fnstcw) }],
  },
  // DB E2, DB E3: group slot 4 with a register operand, selected by ModRM.rm.
  [ONE + 0xdb]: {
    group: [undefined, undefined, undefined, undefined,
      { reg: { rm: [undefined, undefined, def('fnclex', fnclex), def('fninit', fninit)] } }],
  },
  [ONE + 0xdd]: { group: [undefined, undefined, undefined, undefined, undefined, undefined, undefined, { mem: def('fnstsw', fnstsw) }] },
  [ONE + 0xdf]: { group: [undefined, undefined, undefined, undefined, { reg: { rm: [{ ...def('fnstsw', fnstswAx), size: Sz.W }] } }] },
  [TWO + 0x77]: { prefixed: [{ name: 'emms', exec: emms }] }, // NP 0F 77: other prefixes are #UD
  // Group 15 (SDM vol. 2, table A-6): LDMXCSR and STMXCSR (slots 2, 3) are in sse.ts.
  [TWO + 0xae]: {
    group: [
      npMem(def('fxsave', fxsave)),
      npMem(def('fxrstor', fxrstor)),
      undefined,
      undefined,
      npMem(def('xsave', xsave(false))),
      { mem: { prefixed: [def('xrstor', xrstor)] }, reg: { prefixed: [def('lfence', fence)] } },
      { mem: { prefixed: [def('xsaveopt', xsave(true))] }, reg: { prefixed: [def('mfence', fence)] } },
      { mem: { prefixed: [def('clflush', clflush)] }, reg: { prefixed: [def('sfence', fence)] } },
    ],
  },
  // Group 9 memory forms NP 0F C7 /3, /4, /5 (REX.W: the 64-bit x87 pointer format).
  [TWO + 0xc7]: {
    group: [undefined, undefined, undefined, npMem(def('xrstors', xrstors)), npMem(def('xsavec', xsaveCompacted(false))),
      npMem(def('xsaves', xsaveCompacted(true)))],
  },
};
