/**
 * Fast system calls and the 64-bit segment-base instructions: SYSCALL/SYSRET,
 * SYSENTER/SYSEXIT, SWAPGS, RDFSBASE/RDGSBASE/WRFSBASE/WRGSBASE (SDM vol. 2,
 * each instruction's Operation). These load CS and SS with fixed flat
 * descriptors from MSRs, never from the GDT.
 */
import type { Cpu } from '../cpu.js';
import { EFER_LMA, EFER_SCE, SegAttr } from '../regs.js';
import { OpMap, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import { getReg, setReg } from '../operands.js';
import { CS, GS, FS, IF, RCX, RDX, RF, RSP, SS, VM, Vector } from '../regs.js';

const TWO = OpMap.TWO * 256;
const CR4_FSGSBASE = 1 << 16;

const CODE64 = SegAttr.P | SegAttr.S | 0xb | SegAttr.L | SegAttr.G;
const CODE32 = SegAttr.P | SegAttr.S | 0xb | SegAttr.DB | SegAttr.G;
const DATA = SegAttr.P | SegAttr.S | 0x3 | SegAttr.DB | SegAttr.G;

/** Loads flat CS and SS at privilege `cpl` (base 0, limit 4 GiB). */
function loadFlat(cpu: Cpu, cs: number, ss: number, cpl: number, code64: boolean): void {
  cpu.cpl = cpl;
  const dpl = cpl << 5;
  cpu.setSegment(SS, ss, 0, 0, 0xffffffff, DATA | dpl);
  cpu.setSegment(CS, cs, 0, 0, 0xffffffff, (code64 ? CODE64 : CODE32) | dpl);
}

function canonical(cpu: Cpu, hi: number): boolean {
  const s = cpu.mmu.canonicalShift;
  return ((hi << s) >> s) === hi;
}

/** SYSCALL: #UD unless 64-bit mode with EFER.SCE (Intel; SDM vol. 2, SYSCALL). */
function syscall(cpu: Cpu): void {
  if (cpu.codeSize !== 8 || !(cpu.efer & EFER_SCE)) cpu.raise(Vector.UD);
  const m = cpu.msrs, flags = cpu.rflags;
  setReg(cpu, RCX, 8, cpu.ripLo, cpu.ripHi);
  setReg(cpu, 11, 8, flags & ~RF, 0);
  const sel = (m.starHi & 0xffff) & 0xfffc;
  loadFlat(cpu, sel, (sel + 8) & 0xffff, 0, true);
  cpu.rflags = flags & ~m.fmask & ~RF;
  cpu.ripLo = m.lstarLo; cpu.ripHi = m.lstarHi;
}

/** SYSRET: back to CPL 3, 64-bit with REX.W, else compatibility mode. */
function sysret(cpu: Cpu, i: Insn): void {
  if (cpu.codeSize !== 8 || !(cpu.efer & EFER_SCE)) cpu.raise(Vector.UD);
  if (cpu.cpl !== 0) cpu.raise(Vector.GP, 0);
  const g = cpu.gpr, to64 = i.rexW;
  if (to64 && !canonical(cpu, g[2 * RCX + 1]!)) cpu.raise(Vector.GP, 0);
  const base = cpu.msrs.starHi >>> 16;
  loadFlat(cpu, ((to64 ? base + 16 : base) | 3) & 0xffff, ((base + 8) | 3) & 0xffff, 3, to64);
  cpu.rflags = (g[2 * 11]! & 0x3c7fd7) | 2;
  cpu.ripLo = g[2 * RCX]!; cpu.ripHi = to64 ? g[2 * RCX + 1]! : 0;
}

/** SYSENTER: to CPL 0 at SYSENTER_CS:SYSENTER_EIP with the stack at SYSENTER_ESP. */
function sysenter(cpu: Cpu): void {
  const m = cpu.msrs;
  if (!(cpu.cr0 & 1) || (m.sysenterCsLo & 0xfffc) === 0) cpu.raise(Vector.GP, 0);
  const lm = (cpu.efer & EFER_LMA) !== 0;
  cpu.rflags = cpu.rflags & ~(VM | IF | RF);
  const sel = m.sysenterCsLo & 0xfffc;
  loadFlat(cpu, sel, (sel + 8) & 0xffff, 0, lm);
  setReg(cpu, RSP, 8, m.sysenterEspLo, lm ? m.sysenterEspHi : 0);
  cpu.ripLo = m.sysenterEipLo; cpu.ripHi = lm ? m.sysenterEipHi : 0;
}

/** SYSEXIT: to CPL 3 at RDX/EDX with the stack at RCX/ECX (REX.W: 64-bit code). */
function sysexit(cpu: Cpu, i: Insn): void {
  const m = cpu.msrs, g = cpu.gpr;
  if (!(cpu.cr0 & 1) || (m.sysenterCsLo & 0xfffc) === 0 || cpu.cpl !== 0) cpu.raise(Vector.GP, 0);
  const to64 = i.rexW;
  if (to64 && (!canonical(cpu, g[2 * RCX + 1]!) || !canonical(cpu, g[2 * RDX + 1]!))) cpu.raise(Vector.GP, 0);
  const sel = m.sysenterCsLo & 0xffff;
  loadFlat(cpu, ((sel + (to64 ? 32 : 16)) | 3) & 0xffff, ((sel + (to64 ? 40 : 24)) | 3) & 0xffff, 3, to64);
  setReg(cpu, RSP, to64 ? 8 : 4, g[2 * RCX]!, g[2 * RCX + 1]!);
  cpu.ripLo = g[2 * RDX]!; cpu.ripHi = to64 ? g[2 * RDX + 1]! : 0;
}

/** SWAPGS: exchange GS.base with IA32_KERNEL_GS_BASE (64-bit mode, CPL 0). */
function swapgs(cpu: Cpu): void {
  if (cpu.codeSize !== 8) cpu.raise(Vector.UD);
  if (cpu.cpl !== 0) cpu.raise(Vector.GP, 0);
  const m = cpu.msrs, lo = cpu.segBase[2 * GS]!, hi = cpu.segBase[2 * GS + 1]!;
  cpu.setSegmentBase(GS, m.kernelGsBaseLo, m.kernelGsBaseHi);
  m.kernelGsBaseLo = lo; m.kernelGsBaseHi = hi;
}

/** RD/WR FS/GS base: 64-bit mode with CR4.FSGSBASE, else #UD; a written base must be canonical. */
function segmentBase(seg: number, write: boolean) {
  return (cpu: Cpu, i: Insn): void => {
    if (cpu.codeSize !== 8 || !(cpu.cr4 & CR4_FSGSBASE)) cpu.raise(Vector.UD);
    const z = i.opSize;
    if (write) {
      const lo = getReg(cpu, i.rm, z), hi = cpu.tHi;
      if (!canonical(cpu, hi)) cpu.raise(Vector.GP, 0);
      cpu.setSegmentBase(seg, lo, hi);
    } else {
      setReg(cpu, i.rm, z, cpu.segBase[2 * seg]!, cpu.segBase[2 * seg + 1]!);
    }
  };
}

const def = (name: string, exec: OpDef['exec'], extra: Omit<OpDef, 'name' | 'exec'> = {}): OpDef =>
  ({ name, exec, ...extra });
const base = (name: string, seg: number, write: boolean): Entry =>
  ({ reg: { prefixed: [undefined, undefined, def(name, segmentBase(seg, write), { modrm: true, size: Sz.Y, only64: true })] } });

export const FASTCALL_TABLE: Record<number, Entry> = {
  [TWO + 0x05]: def('syscall', syscall, { ends: true }),
  [TWO + 0x07]: def('sysret', sysret, { ends: true }),
  [TWO + 0x34]: def('sysenter', sysenter, { ends: true }),
  [TWO + 0x35]: def('sysexit', sysexit, { ends: true }),
  [TWO + 0x01]: { group: [undefined, undefined, undefined, undefined, undefined, undefined, undefined,
    { reg: { rm: [def('swapgs', swapgs, { only64: true })] } }] },
  [TWO + 0xae]: { group: [base('rdfsbase', FS, false), base('rdgsbase', GS, false),
    base('wrfsbase', FS, true), base('wrgsbase', GS, true)] },
};
