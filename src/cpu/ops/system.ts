/**
 * System instructions: RDTSC, RDTSCP, RDPMC, RDMSR, WRMSR, CPUID, XGETBV,
 * XSETBV (SDM vol. 2, each instruction's page).
 *
 * The time-stamp counter is deterministic: it advances with the instructions
 * retired, never with the host clock (DESIGN): TSC = instructions retired before
 * the RDTSC + tscOffset.
 */
import type { Cpu } from '../cpu.js';
import { cpuid as cpuidLeaf, hasFeature, XCR0_SUPPORTED } from '../cpuid.js';
import { OpMap, type Entry, type Insn, type OpDef } from '../insn.js';
import { setReg } from '../operands.js';
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

const def = (name: string, exec: OpDef['exec']): OpDef => ({ name, exec });

export const SYSTEM_TABLE: Record<number, Entry> = {
  [TWO + 0x30]: def('wrmsr', wrmsr),
  [TWO + 0x31]: def('rdtsc', rdtsc),
  [TWO + 0x32]: def('rdmsr', rdmsr),
  [TWO + 0x33]: def('rdpmc', rdpmc),
  [TWO + 0xa2]: def('cpuid', cpuid),
  // Group 7 register forms: NP 0F 01 D0/D1 (reg = 2, rm = 0/1), 0F 01 F9 (reg = 7, rm = 1).
  [TWO + 0x01]: {
    group: [undefined, undefined, { reg: { rm: [{ prefixed: [def('xgetbv', xgetbv)] }, { prefixed: [def('xsetbv', xsetbv)] }] } },
      undefined, undefined, undefined, undefined,
      { reg: { rm: [undefined, def('rdtscp', rdtscp)] } }],
  },
};
