/**
 * The `sregs` view, one for both engines: segment registers (selector, base,
 * limit, access rights in the VMCS's format, which is also the processor's,
 * SDM vol. 3C 25.4.1), GDTR, IDTR, CR0, CR2, CR3, CR4, CR8 and EFER. The
 * hypervisor engine reads them from the guest-state area of its VMCS
 * (GuestState.systemRegisters); the bare engine from the processor as it
 * stands (`processorSystemRegisters`): the host's in VMX root operation, the
 * guest's in non-root operation.
 */
import { Field } from '../../vmcs/fields.js';
import type { Cpu } from '../cpu/cpu.js';
import type { Vmcs } from '../vmx/vmcs.js';
import { decodeField, hex } from './vmcs-view.js';

/** One segment register. */
export interface SegmentRegister {
  readonly name: string;
  readonly selector: bigint;
  readonly base: bigint;
  readonly limit: bigint;
  /** Access rights as the VMCS holds them (bit 16: unusable). */
  readonly access: bigint;
}

/** CR0 or CR4: the value software reads (through the read shadow in non-root operation, 25.6.6) and the real one. */
export interface ControlRegister {
  readonly read: bigint;
  readonly real: bigint;
}

/** The system registers `sregs` shows. */
export interface SystemRegisters {
  /** ES, CS, SS, DS, FS, GS, LDTR, TR. */
  readonly segments: readonly SegmentRegister[];
  readonly gdtr: { readonly base: bigint; readonly limit: bigint };
  readonly idtr: { readonly base: bigint; readonly limit: bigint };
  readonly cr0: ControlRegister;
  readonly cr4: ControlRegister;
  readonly cr2: bigint;
  readonly cr3: bigint;
  readonly cr8: number;
  readonly efer: bigint;
}

/** Segment register names in encoding order, the VMCS's and the processor's (ES = 0 ... TR = 7). */
export const SEGMENT_NAMES = ['es', 'cs', 'ss', 'ds', 'fs', 'gs', 'ldtr', 'tr'] as const;

function u64(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/**
 * The processor's system registers as it stands. In non-root operation CR0
 * and CR4 read as the guest reads them: the bits the current VMCS's
 * guest/host masks own come from the read shadows (25.6.6).
 */
export function processorSystemRegisters(cpu: Cpu, vmcs: Vmcs | null): SystemRegisters {
  const segments = SEGMENT_NAMES.map((name, k) => ({
    name, selector: BigInt(cpu.segSel[k]!), base: u64(cpu.segBase[2 * k]!, cpu.segBase[2 * k + 1]!),
    limit: BigInt(cpu.segLimit[k]! >>> 0), access: BigInt(cpu.segAttr[k]! >>> 0),
  }));
  const shadowed = (real: number, mask: number, shadow: number): ControlRegister => {
    const r = BigInt(real >>> 0);
    if (!cpu.nonRoot || vmcs === null) return { read: r, real: r };
    const m = u64(vmcs.lo(mask), vmcs.hi(mask));
    return { read: (r & ~m) | (u64(vmcs.lo(shadow), vmcs.hi(shadow)) & m), real: r };
  };
  return {
    segments,
    gdtr: { base: u64(cpu.gdtrLo, cpu.gdtrHi), limit: BigInt(cpu.gdtrLimit >>> 0) },
    idtr: { base: u64(cpu.idtrLo, cpu.idtrHi), limit: BigInt(cpu.idtrLimit >>> 0) },
    cr0: shadowed(cpu.cr0, Field.CR0_GUEST_HOST_MASK, Field.CR0_READ_SHADOW),
    cr4: shadowed(cpu.cr4, Field.CR4_GUEST_HOST_MASK, Field.CR4_READ_SHADOW),
    cr2: u64(cpu.cr2Lo, cpu.cr2Hi), cr3: u64(cpu.cr3Lo, cpu.cr3Hi), cr8: cpu.cr8.readCr8(), efer: BigInt(cpu.efer >>> 0),
  };
}

function hex64(v: bigint): string {
  return `0x${BigInt.asUintN(64, v).toString(16).padStart(16, '0')}`;
}

/** Segment registers, descriptor tables, control registers and EFER, decoded. */
export function sregsLines(r: SystemRegisters): string[] {
  const lines = r.segments.map((s) => `${s.name.padEnd(4)} ${hex(s.selector).padEnd(6)}  base ${hex64(s.base)}  limit ${hex(s.limit).padEnd(10)}  ` +
    `access ${hex(s.access)} ${decodeField('GUEST_CS_ACCESS_RIGHTS', s.access, null)}`);
  lines.push(`gdtr base ${hex64(r.gdtr.base)}  limit ${hex(r.gdtr.limit)}`);
  lines.push(`idtr base ${hex64(r.idtr.base)}  limit ${hex(r.idtr.limit)}`);
  for (const [n, cr] of [[0, r.cr0], [4, r.cr4]] as const) {
    const name = `GUEST_CR${n}`, bits = decodeField(name, cr.read, null);
    lines.push(`cr${n}  ${hex(cr.read)}${bits === '' ? '' : ` ${bits}`}${cr.read === cr.real ? '' : `  (${name} ${hex(cr.real)}: the guest reads the shadow)`}`);
  }
  lines.push(`cr2  ${hex(r.cr2)}`);
  lines.push(`cr3  ${hex(r.cr3)}`);
  lines.push(`cr8  ${hex(r.cr8)}`);
  const eferBits = decodeField('GUEST_IA32_EFER', r.efer, null);
  lines.push(`efer ${hex(r.efer)}${eferBits === '' ? '' : ` ${eferBits}`}`);
  return lines;
}
