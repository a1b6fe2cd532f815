/**
 * What the VM-entry check tests share: a processor in IA-32e mode (or outside
 * it), the checks run in VM entry's order (controls, host state, guest state;
 * SDM vol. 3C, 27.2 then 27.3.1), and capabilities that offer every control,
 * so that rules about controls the skylake model does not offer can be reached.
 */
import { expect } from 'vitest';
import { Cpu } from '../../src/cpu/cpu.js';
import { enterLongMode64 } from '../../src/cpu/reset.js';
import { SKYLAKE_VMX, type AllowedSettings, type VmxCapabilities } from '../../src/vmx/capabilities.js';
import { checkControls, checkGuestState, checkHostState, type EntryCheckFailure } from '../../src/vmx/entry-checks.js';
import { validVmcs, type ValidVmcsOptions } from '../../src/vmx/valid-vmcs.js';
import type { Vmcs } from '../../src/vmx/vmcs.js';

export { Field as F } from '../../vmcs/fields.js';
export const caps = SKYLAKE_VMX;

/** Every control of the five 32-bit groups may be 1 (allowed-0 as on skylake), and every bit of CR4 31:0. */
export const everything: VmxCapabilities = {
  ...SKYLAKE_VMX,
  pin: { allowed0: SKYLAKE_VMX.pin.allowed0, allowed1: 0xffffffff },
  proc: { allowed0: SKYLAKE_VMX.proc.allowed0, allowed1: 0xffffffff },
  secondary: { allowed0: 0, allowed1: 0xffffffff },
  exit: { allowed0: SKYLAKE_VMX.exit.allowed0, allowed1: 0xffffffff },
  entry: { allowed0: SKYLAKE_VMX.entry.allowed0, allowed1: 0xffffffff },
  cr4Fixed1: 0xffffffff,
};

/** A processor in 64-bit mode (IA32_EFER.LMA = 1), as a VMM executing VMLAUNCH would be. */
export function longModeCpu(): Cpu {
  const cpu = new Cpu({ memorySize: 4 * 1024 * 1024 });
  enterLongMode64(cpu, 0x1000);
  return cpu;
}

/** A processor outside IA-32e mode (IA32_EFER.LMA = 0). */
export function legacyCpu(): Cpu {
  const cpu = new Cpu({ memorySize: 4 * 1024 * 1024 });
  cpu.enterFlat32();
  return cpu;
}

export const cpu = longModeCpu();

/** The first failure of a VM entry, checks in the order VMLAUNCH makes them; null if all pass. */
export function firstFailure(v: Vmcs, c: VmxCapabilities = caps, on: Cpu = cpu): EntryCheckFailure | null {
  return checkControls(on, v, c) ?? checkHostState(on, v, c) ?? checkGuestState(on, v, c);
}

/** A valid VMCS with `mutate` applied. */
export function vmcs(mutate: (v: Vmcs) => void = () => {}, o?: ValidVmcsOptions): Vmcs {
  const v = validVmcs(caps, o);
  mutate(v);
  return v;
}

export interface Expected {
  kind: EntryCheckFailure['kind'];
  check: string;
  section: string;
  qualification?: number;
}

/** Asserts that the first failure is `e` (qualification 0 unless given). */
export function expectFailure(v: Vmcs, e: Expected, c: VmxCapabilities = caps, on: Cpu = cpu): EntryCheckFailure {
  const f = firstFailure(v, c, on);
  expect(f, 'a check should fail').not.toBeNull();
  expect({ kind: f!.kind, check: f!.check, section: f!.section, qualification: f!.qualification })
    .toEqual({ qualification: 0, ...e });
  return f!;
}

/** Sets bits in a 32-bit field. */
export function orField(v: Vmcs, enc: number, bits: number): void {
  v.set(enc, v.lo(enc) | bits, v.hi(enc));
}
/** Clears bits in a 32-bit field. */
export function clearField(v: Vmcs, enc: number, bits: number): void {
  v.set(enc, v.lo(enc) & ~bits, v.hi(enc));
}
export const bit = (n: number): number => (1 << n) >>> 0;

/** The lowest control bit a group neither requires nor allows: one the capabilities do not offer. */
export function notOffered(s: AllowedSettings): number {
  for (let b = 0; b < 32; b++) if (((s.allowed0 | s.allowed1) & bit(b)) === 0) return b;
  throw new Error('every control of the group is offered');
}
