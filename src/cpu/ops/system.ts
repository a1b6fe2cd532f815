/**
 * System instructions: RDTSC, RDTSCP, RDPMC, RDMSR, WRMSR, CPUID, XGETBV,
 * XSETBV, MONITOR, MWAIT (SDM vol. 2, each instruction's page).
 *
 * The time-stamp counter is deterministic: it advances with the instructions
 * retired, never with the host clock (DESIGN): TSC = instructions retired before
 * the RDTSC + tscOffset.
 *
 * MWAIT returns at once. The SDM lets the processor leave the optimized state
 * for implementation-dependent events and resume after the MWAIT, so waiting
 * for nothing is within it. Waiting like HLT does not fit the run loop: its
 * halted state ends only by delivering an interrupt, while MWAIT with ECX[0] = 1
 * must also wake on an interrupt that IF = 0 blocks, and on a store to the
 * monitored line by any processor or device. The armed state is kept
 * (cpu.monitorArmed: MONITOR arms, MWAIT disarms, as the wake-up it stands for
 * would) for the MWAIT exit qualification; stores to the line are not watched
 * (that would cost a check on every write), so after such a store the monitor
 * still reads as armed.
 */
import type { Cpu } from '../cpu.js';
import { cpuid as cpuidLeaf, hasFeature, MONITOR_LINE_SIZE, XCR0_SUPPORTED } from '../cpuid.js';
import { OpMap, type Entry, type Insn, type OpDef } from '../insn.js';
import { MISC_ENABLE_MONITOR } from '../msr.js';
import { addSegmentBase, readEa, setReg } from '../operands.js';
import { RAX, RBX, RCX, RDX, Vector } from '../regs.js';
import { Intercept } from '../virtualization.js';
import { xinuse } from './fpu.js';

const TWO = OpMap.TWO * 256;
const CR4_TSD = 1 << 2, CR4_PCE = 1 << 8, CR4_OSXSAVE = 1 << 18;

/** Loads EDX:EAX with lo and hi; 32-bit writes, so bits 63:32 of RAX and RDX clear. */
function setEdxEax(cpu: Cpu, lo: number, hi: number): void {
  setReg(cpu, RAX, 4, lo, 0);
  setReg(cpu, RDX, 4, hi, 0);
}

/** EDX:EAX ← TSC; false when the instruction became a VM exit instead. */
function rdtsc(cpu: Cpu, i: Insn): boolean {
  // SDM vol. 2, RDTSC/RDTSCP: CR4.TSD = 1 and CPL > 0 → #GP(0), before any VM exit (SDM vol. 3C, 26.1.1).
  if (cpu.cr4 & CR4_TSD && cpu.cpl > 0) cpu.raise(Vector.GP, 0);
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, i.opcode === TWO + 0x31 ? Intercept.RDTSC : Intercept.RDTSCP)) return false;
  const lo = cpu.msrs.readTsc(cpu);
  setEdxEax(cpu, lo, cpu.msrs.hi);
  return true;
}

/** RDTSCP also loads ECX with IA32_TSC_AUX[31:0]. */
function rdtscp(cpu: Cpu, i: Insn): void {
  if (!rdtsc(cpu, i)) return;
  setReg(cpu, RCX, 4, cpu.msrs.tscAux, 0);
}

/** RDPMC: CPL > 0 needs CR4.PCE = 1 (SDM vol. 2, RDPMC); the counter is chosen by ECX. */
function rdpmc(cpu: Cpu, i: Insn): void {
  if (cpu.cpl > 0 && (cpu.cr4 & CR4_PCE) === 0) cpu.raise(Vector.GP, 0);
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, Intercept.RDPMC)) return;
  const lo = cpu.msrs.readPmc(cpu, cpu.gpr[2 * RCX]!);
  setEdxEax(cpu, lo, cpu.msrs.hi);
}

/** RDMSR: EDX:EAX ← MSR[ECX]; CPL > 0 (virtual-8086 mode included) → #GP(0) (SDM vol. 2, RDMSR). */
function rdmsr(cpu: Cpu, i: Insn): void {
  if (cpu.cpl !== 0) cpu.raise(Vector.GP, 0);
  // In non-root operation the exit comes before the #GP of an unknown MSR (SDM vol. 3C, 26.1.1).
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, Intercept.RDMSR)) return;
  const lo = cpu.msrs.read(cpu, cpu.gpr[2 * RCX]!);
  setEdxEax(cpu, lo, cpu.msrs.hi);
}

/** WRMSR: MSR[ECX] ← EDX:EAX; the upper halves of RAX, RCX, RDX are ignored (SDM vol. 2, WRMSR). */
function wrmsr(cpu: Cpu, i: Insn): void {
  if (cpu.cpl !== 0) cpu.raise(Vector.GP, 0);
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, Intercept.WRMSR)) return;
  cpu.msrs.write(cpu, cpu.gpr[2 * RCX]!, cpu.gpr[2 * RAX]!, cpu.gpr[2 * RDX]!);
}

const CPUID_OUT = new Int32Array(4);

/**
 * CPUID (SDM vol. 2, CPUID): EAX, EBX, ECX, EDX ← the leaf EAX, subleaf ECX;
 * bits 63:32 of RAX, RBX, RCX, RDX are cleared. Leaf 1 also loads the
 * microcode revision into IA32_BIOS_SIGN_ID[63:32] (SDM vol. 3A, 10.11.7.1).
 */
function cpuid(cpu: Cpu, i: Insn): void {
  // CPUID always exits in non-root operation (SDM vol. 3C, 26.1.2).
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, Intercept.CPUID)) return;
  const leaf = cpu.gpr[2 * RAX]!;
  cpuidLeaf(cpu, leaf, cpu.gpr[2 * RCX]!, CPUID_OUT);
  if (leaf === 1) cpu.msrs.biosSignHi = cpu.profile.microcode;
  setReg(cpu, RAX, 4, CPUID_OUT[0]!, 0);
  setReg(cpu, RBX, 4, CPUID_OUT[1]!, 0);
  setReg(cpu, RCX, 4, CPUID_OUT[2]!, 0);
  setReg(cpu, RDX, 4, CPUID_OUT[3]!, 0);
}

/**
 * XGETBV: EDX:EAX ← XCR[ECX] (SDM vol. 2, XGETBV). ECX = 1 reads XCR0 AND
 * XINUSE where CPUID.(EAX=0DH,ECX=1):EAX[2] announces it; any other ECX → #GP(0).
 */
function xgetbv(cpu: Cpu): void {
  if ((cpu.cr4 & CR4_OSXSAVE) === 0) cpu.raise(Vector.UD);
  const ecx = cpu.gpr[2 * RCX]!;
  let v: number;
  if (ecx === 0) v = cpu.msrs.xcr0;
  else if (ecx === 1 && hasFeature(cpu, 'xgetbv1')) v = cpu.msrs.xcr0 & xinuse(cpu);
  else return cpu.raise(Vector.GP, 0);
  setEdxEax(cpu, v, 0);
}

/**
 * XSETBV: XCR[ECX] ← EDX:EAX (SDM vol. 2, XSETBV). #UD if CR4.OSXSAVE = 0;
 * #GP(0) if CPL > 0, ECX != 0, XCR0[0] = 0, a bit is set that CPUID leaf 0DH
 * does not report, or XCR0[2:1] = 10b (AVX without SSE).
 */
function xsetbv(cpu: Cpu, i: Insn): void {
  if ((cpu.cr4 & CR4_OSXSAVE) === 0) cpu.raise(Vector.UD);
  // XSETBV exits unconditionally, before its CPL and operand checks (SDM vol. 3C, 26.1.2).
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, Intercept.XSETBV)) return;
  if (cpu.cpl !== 0) cpu.raise(Vector.GP, 0);
  const ecx = cpu.gpr[2 * RCX]!, eax = cpu.gpr[2 * RAX]!, edx = cpu.gpr[2 * RDX]!;
  if (ecx !== 0 || edx !== 0 || (eax & 1) === 0 || (eax & ~XCR0_SUPPORTED) !== 0 || (eax & 6) === 4) {
    cpu.raise(Vector.GP, 0);
  }
  cpu.msrs.xcr0 = eax;
}

/**
 * The #UD conditions MONITOR and MWAIT share (SDM vol. 2, MONITOR, MWAIT):
 * CPUID.01H:ECX.MONITOR = 0 (IA32_MISC_ENABLE[18] = 0 clears it, SDM vol. 4,
 * 1A0H) or CPL > 0 (the model does not offer them to ring 3).
 */
function monitorCheck(cpu: Cpu): void {
  if (!hasFeature(cpu, 'monitor') || (cpu.msrs.miscEnableLo & MISC_ENABLE_MONITOR) === 0 || cpu.cpl > 0) cpu.raise(Vector.UD);
}

/** ECX holds bits other than `allowed`: in 64-bit mode all of RCX counts (SDM vol. 2, MONITOR, MWAIT, "64-Bit Mode Exceptions"). */
function rcxReserved(cpu: Cpu, allowed: number): boolean {
  return (cpu.gpr[2 * RCX]! & ~allowed) !== 0 || (cpu.codeSize === 8 && cpu.gpr[2 * RCX + 1] !== 0);
}

/**
 * MONITOR (0F 01 C8): arms the monitor at the line of DS:rAX (RAX, EAX or AX by
 * address size). No extensions are defined: ECX != 0 raises #GP(0); EDX hints
 * are ignored. The address is checked as a byte load ("subject to the permission
 * checking and faults associated with a byte load"). In non-root operation
 * "MONITOR exiting" comes after the #UD checks and before the others (SDM vol.
 * 3C, 26.1.1, 26.1.3).
 * Limitation: the SDM allows a segment override, but the decoder records one
 * (insn.seg) only for ModRM memory operands, and MONITOR's ModRM names a
 * register; so DS is used whatever the prefix until decoder.ts records it there too.
 */
function monitor(cpu: Cpu, i: Insn): void {
  monitorCheck(cpu);
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, Intercept.MONITOR)) return;
  if (rcxReserved(cpu, 0)) cpu.raise(Vector.GP, 0);
  const g = cpu.gpr;
  cpu.eaLo = i.adSize === 2 ? g[2 * RAX]! & 0xffff : g[2 * RAX]!;
  cpu.eaHi = i.adSize === 8 ? g[2 * RAX + 1]! : 0;
  if (i.segBase) addSegmentBase(cpu, i.seg);
  cpu.accessSeg = i.seg;
  readEa(cpu, 1);
  cpu.monitorArmed = true;
  cpu.monitorLo = cpu.eaLo & -MONITOR_LINE_SIZE;
  cpu.monitorHi = cpu.eaHi;
}

/**
 * MWAIT (0F 01 C9): returns at once (see the top of this file). EAX hints are
 * ignored; ECX[0], interrupts as break events (CPUID.05H:ECX[1] = 1), is the
 * only extension, any other ECX bit raises #GP(0). "MWAIT exiting" comes
 * before that #GP (SDM vol. 3C, 26.1.1).
 */
function mwait(cpu: Cpu, i: Insn): void {
  monitorCheck(cpu);
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, Intercept.MWAIT)) return;
  if (rcxReserved(cpu, 1)) cpu.raise(Vector.GP, 0);
  cpu.monitorArmed = false;
}

const def = (name: string, exec: OpDef['exec']): OpDef => ({ name, exec });

export const SYSTEM_TABLE: Record<number, Entry> = {
  [TWO + 0x30]: def('wrmsr', wrmsr),
  [TWO + 0x31]: def('rdtsc', rdtsc),
  [TWO + 0x32]: def('rdmsr', rdmsr),
  [TWO + 0x33]: def('rdpmc', rdpmc),
  [TWO + 0xa2]: def('cpuid', cpuid),
  // Group 7 register forms: NP 0F 01 C8/C9 (reg = 1, rm = 0/1), NP 0F 01 D0/D1 (reg = 2, rm = 0/1),
  // 0F 01 F9 (reg = 7, rm = 1).
  [TWO + 0x01]: {
    group: [undefined, { reg: { rm: [{ prefixed: [def('monitor', monitor)] }, { prefixed: [def('mwait', mwait)] }] } },
      { reg: { rm: [{ prefixed: [def('xgetbv', xgetbv)] }, { prefixed: [def('xsetbv', xsetbv)] }] } },
      undefined, undefined, undefined, undefined,
      { reg: { rm: [undefined, def('rdtscp', rdtscp)] } }],
  },
};
