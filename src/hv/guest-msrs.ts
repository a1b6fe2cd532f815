/**
 * MSRs whose guest value sits in the VMCS while the host runs: a VM exit saves
 * them to the guest-state area and loads the host's (28.3.1, 28.5.1), so a
 * handler that served RDMSR or WRMSR of one of them on the processor would
 * touch the host's value. These are served from and to the guest-state field;
 * a write is checked by the processor's own WRMSR (#GP for a non-canonical
 * address, a reserved PAT type or EFER bit, LME changed under paging), with
 * the guest's value (and, for EFER, the guest's CR0) in place for that moment.
 */
import { Field } from '../../vmcs/fields.js';
import type { Cpu } from '../cpu/cpu.js';
import { FS, GS } from '../cpu/regs.js';
import type { Guest } from './guest.js';

type Pair = [number, number];

/** Where the processor holds one of these MSRs. */
interface Holder { get(cpu: Cpu): Pair; set(cpu: Cpu, v: Pair): void }

const segmentBase = (s: number): Holder => ({
  get: (cpu) => [cpu.segBase[2 * s]!, cpu.segBase[2 * s + 1]!],
  set: (cpu, [lo, hi]) => { cpu.setSegmentBase(s, lo, hi); },
});

/** Each MSR, its guest-state field (appendix B) and where the processor holds it. */
const GUEST_STATE_MSRS: ReadonlyMap<number, { field: number; holder: Holder }> = new Map([
  [0x174, { field: Field.GUEST_IA32_SYSENTER_CS, holder: {
    get: (cpu) => [cpu.msrs.sysenterCsLo, cpu.msrs.sysenterCsHi],
    set: (cpu, [lo, hi]) => { cpu.msrs.sysenterCsLo = lo; cpu.msrs.sysenterCsHi = hi; } } }],
  [0x175, { field: Field.GUEST_IA32_SYSENTER_ESP, holder: {
    get: (cpu) => [cpu.msrs.sysenterEspLo, cpu.msrs.sysenterEspHi],
    set: (cpu, [lo, hi]) => { cpu.msrs.sysenterEspLo = lo; cpu.msrs.sysenterEspHi = hi; } } }],
  [0x176, { field: Field.GUEST_IA32_SYSENTER_EIP, holder: {
    get: (cpu) => [cpu.msrs.sysenterEipLo, cpu.msrs.sysenterEipHi],
    set: (cpu, [lo, hi]) => { cpu.msrs.sysenterEipLo = lo; cpu.msrs.sysenterEipHi = hi; } } }],
  [0x1d9, { field: Field.GUEST_IA32_DEBUGCTL, holder: {
    get: (cpu) => [cpu.msrs.debugCtl, 0],
    set: (cpu, [lo]) => { cpu.msrs.debugCtl = lo; } } }],
  [0x277, { field: Field.GUEST_IA32_PAT, holder: {
    get: (cpu) => [cpu.msrs.patLo, cpu.msrs.patHi],
    set: (cpu, [lo, hi]) => { cpu.msrs.patLo = lo; cpu.msrs.patHi = hi; } } }],
  [0xc0000080, { field: Field.GUEST_IA32_EFER, holder: {
    get: (cpu) => [cpu.efer, 0],
    set: (cpu, [lo]) => { cpu.efer = lo; } } }],
  [0xc0000100, { field: Field.GUEST_FS_BASE, holder: segmentBase(FS) }],
  [0xc0000101, { field: Field.GUEST_GS_BASE, holder: segmentBase(GS) }],
]);

/** The MSR's guest value lives in the guest-state area. */
export function isGuestStateMsr(msr: number): boolean {
  return GUEST_STATE_MSRS.has(msr);
}

/** RDMSR of such an MSR: the guest's value, from its guest-state field. */
export function readGuestStateMsr(g: Guest, msr: number): bigint {
  return g.read64(GUEST_STATE_MSRS.get(msr)!.field);
}

/**
 * WRMSR of such an MSR: `write` (the processor's WRMSR) runs with the guest's
 * value in place; what it leaves goes to the guest-state field and the host's
 * value comes back. `write` returns false when it raised #GP (nothing changes).
 */
export function writeGuestStateMsr(g: Guest, msr: number, write: () => boolean): boolean {
  const { field, holder } = GUEST_STATE_MSRS.get(msr)!, cpu = g.cpu;
  const host = holder.get(cpu), hostCr0 = cpu.cr0, guest = g.read64(field);
  holder.set(cpu, [Number(guest & 0xffffffffn) | 0, Number(guest >> 32n) | 0]);
  // EFER's checks look at CR0.PG (SDM vol. 3A, 10.8.5): the guest's, for that moment.
  if (msr === 0xc0000080) cpu.cr0 = g.read(Field.GUEST_CR0);
  const done = write();
  if (done) { const [lo, hi] = holder.get(cpu); g.write(field, lo, hi); }
  holder.set(cpu, host);
  cpu.cr0 = hostCr0;
  if (msr === 0xc0000080) cpu.updateModes();
  return done;
}
