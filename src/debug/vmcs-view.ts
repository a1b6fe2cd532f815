/**
 * The VMCS as the debugger shows it: every field by its SDM name (vmcs/fields.ts)
 * with its value, control and information fields decoded bit by bit by name
 * (vmcs/controls.ts, vmcs/qualifications.ts), and the difference between two
 * moments.
 *
 * A moment's field values are a `VmcsState`: an immutable value made with
 * immer, one group per field type (control, VM-exit information, guest state,
 * host state). Each exit's state is produced from the previous one, so the
 * groups an exit did not change (the host state, usually the controls) are
 * shared, not copied.
 */
import { freeze, produce } from 'immer';
import {
  ActivityState, CONTROL_GROUPS, IDT_VECTORING_INFORMATION_LAYOUT, Interruptibility, PendingDebugExceptions,
  VM_ENTRY_INTERRUPTION_INFORMATION_LAYOUT, VM_EXIT_INTERRUPTION_INFORMATION_LAYOUT, type ControlGroup,
} from '../../vmcs/controls.js';
import { EXIT_REASON_FIELD, exitReasonName } from '../../vmcs/exit-reasons.js';
import { fieldExists, VMCS_FIELDS, type FieldType, type VmcsField } from '../../vmcs/fields.js';
import { instructionErrorText } from '../../vmcs/instruction-errors.js';
import { decodeBits, INSTRUCTION_INFORMATION_LAYOUTS, QUALIFICATION_LAYOUTS, type BitField } from '../../vmcs/qualifications.js';
import { VECTOR_NAMES } from '../cpu/regs.js';
import { supports, type VmxCapabilities } from '../vmx/capabilities.js';
import type { Vmcs } from '../vmx/vmcs.js';
import { DebugInputError, didYouMean } from './names.js';

/** Field values of one VMCS at one moment, by field type and SDM name (immutable, immer). */
export type VmcsState = { readonly [T in FieldType]: Readonly<Record<string, bigint>> };

/** The four groups, with the names the `vmcs GROUP` command takes. */
export const VMCS_GROUPS: readonly { readonly type: FieldType; readonly names: readonly string[]; readonly title: string }[] = [
  { type: 'control', names: ['control', 'controls'], title: 'control fields (SDM 25.6-25.8)' },
  { type: 'read-only', names: ['exit', 'exit-info', 'read-only'], title: 'VM-exit information fields (SDM 25.9)' },
  { type: 'guest', names: ['guest'], title: 'guest-state fields (SDM 25.4)' },
  { type: 'host', names: ['host'], title: 'host-state fields (SDM 25.5)' },
];

/** The fields that exist on a processor with these capabilities (appendix B notes), in appendix-B order. */
export function existingFields(caps: VmxCapabilities): readonly VmcsField[] {
  return VMCS_FIELDS.filter((f) => fieldExists(f, (c) => supports(caps, c)));
}

function value(vmcs: Vmcs, f: VmcsField): bigint {
  return (BigInt(vmcs.hi(f.encoding) >>> 0) << 32n) | BigInt(vmcs.lo(f.encoding) >>> 0);
}

/** The values of `fields` in `vmcs` now, produced from `previous` (sharing what did not change). */
export function vmcsState(vmcs: Vmcs, fields: readonly VmcsField[], previous: VmcsState | null): VmcsState {
  if (previous === null) {
    const fresh: Record<FieldType, Record<string, bigint>> = { control: {}, 'read-only': {}, guest: {}, host: {} };
    for (const f of fields) fresh[f.type][f.name] = value(vmcs, f);
    return freeze(fresh, true);
  }
  return produce(previous, (draft) => {
    for (const f of fields) {
      const v = value(vmcs, f);
      if (previous[f.type][f.name] !== v) draft[f.type][f.name] = v;
    }
  });
}

/** A field by name, case-insensitively; a name that is none gets one line with the closest names. */
export function findField(name: string, fields: readonly VmcsField[]): VmcsField {
  const u = name.toUpperCase();
  const f = fields.find((x) => x.name === u);
  if (f !== undefined) return f;
  if (VMCS_FIELDS.some((x) => x.name === u)) {
    throw new DebugInputError(`the VMCS field ${u} does not exist on this processor (its control is not offered)`);
  }
  throw new DebugInputError(`unknown VMCS field '${name}'${didYouMean(name, [...fields.map((x) => x.name), ...VMCS_GROUPS.flatMap((g) => g.names)])}`);
}

/** A value in hexadecimal as the debugger prints it: 0x3f8 (a number is taken as unsigned 32-bit). */
export function hex(v: bigint | number): string {
  return `0x${(typeof v === 'number' ? v >>> 0 : v).toString(16)}`;
}

/** Control fields and the named bits of each (vmcs/controls.ts). */
const CONTROL_FIELD_BITS: Readonly<Record<string, ControlGroup>> = {
  PIN_BASED_VM_EXECUTION_CONTROLS: 'pin',
  PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS: 'proc',
  SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS: 'secondary',
  TERTIARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS: 'tertiary',
  PRIMARY_VM_EXIT_CONTROLS: 'exit',
  SECONDARY_VM_EXIT_CONTROLS: 'exit2',
  VM_ENTRY_CONTROLS: 'entry',
  VM_FUNCTION_CONTROLS: 'vmfunc',
};

const CR0_BITS: Record<string, number> = { PE: 0, MP: 1, EM: 2, TS: 3, ET: 4, NE: 5, WP: 16, AM: 18, NW: 29, CD: 30, PG: 31 };
const CR4_BITS: Record<string, number> = {
  VME: 0, PVI: 1, TSD: 2, DE: 3, PSE: 4, PAE: 5, MCE: 6, PGE: 7, PCE: 8, OSFXSR: 9, OSXMMEXCPT: 10, UMIP: 11, LA57: 12,
  VMXE: 13, SMXE: 14, FSGSBASE: 16, PCIDE: 17, OSXSAVE: 18, SMEP: 20, SMAP: 21, PKE: 22, CET: 23, PKS: 24,
};
const EFER_BITS: Record<string, number> = { SCE: 0, LME: 8, LMA: 10, NXE: 11 };
/** RFLAGS (SDM vol. 1, 3.4.3). */
export const RFLAGS_BITS: Record<string, number> = {
  CF: 0, PF: 2, AF: 4, ZF: 6, SF: 7, TF: 8, IF: 9, DF: 10, OF: 11, NT: 14, RF: 16, VM: 17, AC: 18, VIF: 19, VIP: 20, ID: 21,
};

/**
 * The names of the bits of `bits` set in `v`, in bit order ("PE ET PG"),
 * then the set bits that have no name ("; other bits 1 2 4": reserved,
 * default1 or not modelled).
 */
export function bitNames(v: bigint, bits: Readonly<Record<string, number>>, showUnnamed = true): string {
  const names: string[] = [], others: number[] = [];
  for (let b = 0; b < 64; b++) {
    if (((v >> BigInt(b)) & 1n) === 0n) continue;
    const name = Object.keys(bits).find((k) => bits[k] === b);
    if (name !== undefined) names.push(name);
    else others.push(b);
  }
  const rest = showUnnamed && others.length > 0 ? `other bit${others.length === 1 ? '' : 's'} ${others.join(' ')}` : '';
  return names.length === 0 ? rest : rest === '' ? names.join(' ') : `${names.join(' ')}; ${rest}`;
}

/** A decoded layout: "NAME=value (meaning) ..." for each field of it. */
export function layoutText(layout: readonly BitField[], v: bigint): string {
  const d = decodeBits(layout, Number(v & 0xffffffffn), Number(v >> 32n));
  return layout.map((f) => {
    const x = d[f.name]!, meaning = f.values?.[x];
    return `${f.name}=${f.width >= 8 ? hex(x) : x}${meaning === undefined ? '' : ` (${meaning})`}`;
  }).join(' ');
}

/** Access rights (SDM vol. 3C, 25.4.1, table 25-2). */
function accessRightsText(v: bigint): string {
  const n = Number(v);
  if (n & (1 << 16)) return 'unusable';
  const parts = [`type=${n & 0xf}`, n & 0x10 ? 'S' : 'system', `DPL=${(n >> 5) & 3}`];
  for (const [bit, name] of [[7, 'P'], [12, 'AVL'], [13, 'L'], [14, 'D/B'], [15, 'G']] as const) if (n & (1 << bit)) parts.push(name);
  return parts.join(' ');
}

/**
 * What a field's value means, when it is more than a number: control bits by
 * name, an information field by its layout (the qualification and the
 * instruction information by the exit reason's), CR0/CR4/EFER/RFLAGS bits,
 * access rights, the activity state, the VM-instruction error. "" for plain values.
 */
export function decodeField(name: string, v: bigint, reason: number | null): string {
  const control = CONTROL_FIELD_BITS[name];
  if (control !== undefined) return bitNames(v, CONTROL_GROUPS[control] as Record<string, number>);
  switch (name) {
    case 'EXIT_REASON': {
      const basic = Number(v & 0xffffn);
      return `${exitReasonName(basic) ?? `reason ${basic}`}${v >> 16n !== 0n ? ` ${layoutText(EXIT_REASON_FIELD.slice(1), v)}` : ''}`;
    }
    case 'EXIT_QUALIFICATION': {
      const layout = reason === null ? undefined : QUALIFICATION_LAYOUTS[reason];
      return layout === undefined ? '' : layoutText(layout, v);
    }
    case 'VM_EXIT_INSTRUCTION_INFORMATION': {
      const layout = reason === null ? undefined : INSTRUCTION_INFORMATION_LAYOUTS[reason];
      return layout === undefined ? '' : layoutText(layout, v);
    }
    case 'VM_EXIT_INTERRUPTION_INFORMATION': return eventText(v, VM_EXIT_INTERRUPTION_INFORMATION_LAYOUT);
    case 'IDT_VECTORING_INFORMATION_FIELD': return eventText(v, IDT_VECTORING_INFORMATION_LAYOUT);
    case 'VM_ENTRY_INTERRUPTION_INFORMATION_FIELD': return eventText(v, VM_ENTRY_INTERRUPTION_INFORMATION_LAYOUT);
    case 'GUEST_INTERRUPTIBILITY_STATE': return v === 0n ? 'no blocking' : bitNames(v, Interruptibility);
    case 'GUEST_ACTIVITY_STATE': return Object.keys(ActivityState).find((k) => BigInt(ActivityState[k as keyof typeof ActivityState]) === v) ?? '';
    case 'GUEST_PENDING_DEBUG_EXCEPTIONS': return v === 0n ? '' : bitNames(v, PendingDebugExceptions);
    case 'VM_INSTRUCTION_ERROR': return v === 0n ? '' : instructionErrorText(Number(v)) ?? '';
    case 'EXCEPTION_BITMAP': return v === 0n ? '' : bitNames(v, Object.fromEntries(Object.entries(VECTOR_NAMES).map(([k, n]) => [n, Number(k)])));
    case 'GUEST_RFLAGS': return bitNames(v, RFLAGS_BITS, false);
    case 'GUEST_IA32_EFER': case 'HOST_IA32_EFER': return bitNames(v, EFER_BITS);
  }
  if (/^(GUEST|HOST)_CR0$|^CR0_(READ_SHADOW|GUEST_HOST_MASK)$/.test(name)) return bitNames(v, CR0_BITS);
  if (/^(GUEST|HOST)_CR4$|^CR4_(READ_SHADOW|GUEST_HOST_MASK)$/.test(name)) return bitNames(v, CR4_BITS);
  if (/_ACCESS_RIGHTS$/.test(name)) return accessRightsText(v);
  return '';
}

function eventText(v: bigint, layout: readonly BitField[]): string {
  if ((v & 0x80000000n) === 0n) return 'not valid';
  const vector = Number(v & 0xffn), type = Number((v >> 8n) & 7n);
  const name = type === 3 || type === 6 ? VECTOR_NAMES[vector] : undefined;
  return `${layoutText(layout, v)}${name === undefined ? '' : ` [${name}]`}`;
}

/** "NAME = value  meaning" for one field. */
export function fieldLine(name: string, v: bigint, reason: number | null): string {
  const meaning = decodeField(name, v, reason);
  return `${name} = ${hex(v)}${meaning === '' ? '' : `  ${meaning}`}`;
}

/** One field that differs between two states. */
export interface FieldChange {
  readonly name: string;
  readonly type: FieldType;
  readonly before: bigint;
  readonly after: bigint;
}

/** The fields whose values differ from `a` to `b`, in appendix-B order (groups shared by both are skipped whole). */
export function vmcsDiff(a: VmcsState, b: VmcsState, fields: readonly VmcsField[]): FieldChange[] {
  const out: FieldChange[] = [];
  for (const f of fields) {
    if (a[f.type] === b[f.type]) continue;
    const before = a[f.type][f.name], after = b[f.type][f.name];
    if (before !== undefined && after !== undefined && before !== after) out.push({ name: f.name, type: f.type, before, after });
  }
  return out;
}
