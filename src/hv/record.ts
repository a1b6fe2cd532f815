/**
 * Exit records: what one VM exit was, as an immutable value (frozen with
 * immer) for handlers, traces and the debugger. It is the tool's observation
 * of the VMCS after the exit, not the handler's work: building it issues no
 * counted VMREAD.
 */
import { freeze } from 'immer';
import { ExitReason, EXIT_REASON_VM_ENTRY_FAILURE, exitReasonName } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { decodeBits, EptViolation, QUALIFICATION_LAYOUTS } from '../../vmcs/qualifications.js';
import type { Vmcs } from '../vmx/vmcs.js';
import { disassemble } from './disassemble.js';
import { fetchInstruction } from './mmio.js';
import type { Guest } from './guest.js';

/** An event the exit reports (VM-exit interruption information or IDT-vectoring information, 25.9.2, 25.9.3). */
export interface EventRecord {
  readonly vector: number;
  /** Interruption type (vmcs/controls.ts InterruptionType). */
  readonly type: number;
  readonly errorCode: number | null;
}

export interface ExitRecord {
  /** 1 for the first exit of the VM, then 2, 3, ... */
  readonly seq: number;
  /** The basic exit reason (bits 15:0, appendix C). */
  readonly reason: number;
  /** Its name as the SDM spells it, e.g. IO_INSTRUCTION. */
  readonly name: string;
  /** Bit 31: the exit is a failed VM entry (27.8). */
  readonly entryFailure: boolean;
  readonly qualification: bigint;
  /** The qualification's named fields (vmcs/qualifications.ts); empty for reasons without a layout. */
  readonly decoded: Readonly<Record<string, number>>;
  /** GUEST_RIP after the exit: the instruction that exited, or the next one to run (28.3.3). */
  readonly rip: bigint;
  /** VM-exit instruction length (0 where the exit does not give one, 28.2.5). */
  readonly length: number;
  readonly instructionInformation: number;
  /** The instruction at GUEST_RIP as iced-x86 formats it (formatted when first read); null when it cannot be fetched. */
  readonly insn: string | null;
  /** Guest-linear and guest-physical address fields, where this exit writes them (28.2.1). */
  readonly guestLinear: bigint | null;
  readonly guestPhysical: bigint | null;
  /** VM-exit interruption information (exceptions, NMIs, external interrupts with acknowledge-on-exit). */
  readonly interruption: EventRecord | null;
  /** IDT-vectoring information: the event whose delivery the exit interrupted (28.2.4). */
  readonly idtVectoring: EventRecord | null;
  /** Guest instructions retired since the previous exit (or since the first entry), and in all. */
  readonly sinceLast: number;
  readonly instructions: number;
}

function event(info: number, code: number): EventRecord | null {
  if ((info & 0x80000000) === 0) return null;
  return { vector: info & 0xff, type: (info >>> 8) & 7, errorCode: info & (1 << 11) ? code >>> 0 : null };
}

function u64(v: Vmcs, f: number): bigint {
  return (BigInt(v.hi(f) >>> 0) << 32n) | BigInt(v.lo(f) >>> 0);
}

/** The guest-linear address field is meaningful: EPT violations with bit 7, INS/OUTS (28.2.1). */
function linearValid(reason: number, qualification: bigint): boolean {
  if (reason === ExitReason.EPT_VIOLATION) return (qualification & BigInt(EptViolation.GUEST_LINEAR_ADDRESS_VALID)) !== 0n;
  return reason === ExitReason.IO_INSTRUCTION && (qualification & 0x10n) !== 0n; // bit 4: a string instruction
}

/** The record of the exit just completed; `seq` and `sinceLast` come from the VM. */
export function exitRecord(guest: Guest, seq: number, sinceLast: number): ExitRecord {
  const v = guest.vmcs, F = Field;
  const full = v.lo(F.EXIT_REASON) >>> 0, reason = full & 0xffff;
  const qualification = u64(v, F.EXIT_QUALIFICATION);
  const layout = QUALIFICATION_LAYOUTS[reason];
  const decoded = layout === undefined ? {} : decodeBits(layout, v.lo(F.EXIT_QUALIFICATION), v.hi(F.EXIT_QUALIFICATION));
  const rip = u64(v, F.GUEST_RIP);
  let text: string | null | undefined;
  const record = {
    seq, reason, name: exitReasonName(reason) ?? `reason ${reason}`,
    entryFailure: (full & EXIT_REASON_VM_ENTRY_FAILURE) !== 0,
    qualification, decoded, rip,
    length: v.lo(F.VM_EXIT_INSTRUCTION_LENGTH), instructionInformation: v.lo(F.VM_EXIT_INSTRUCTION_INFORMATION),
    insn: null as string | null,
    guestLinear: linearValid(reason, qualification) ? u64(v, F.GUEST_LINEAR_ADDRESS) : null,
    guestPhysical: reason === ExitReason.EPT_VIOLATION || reason === ExitReason.EPT_MISCONFIGURATION ? u64(v, F.GUEST_PHYSICAL_ADDRESS) : null,
    interruption: event(v.lo(F.VM_EXIT_INTERRUPTION_INFORMATION), v.lo(F.VM_EXIT_INTERRUPTION_ERROR_CODE)),
    idtVectoring: event(v.lo(F.IDT_VECTORING_INFORMATION_FIELD), v.lo(F.IDT_VECTORING_ERROR_CODE)),
    sinceLast, instructions: guest.cpu.insnCount,
  };
  // The bytes are fetched now (the guest may change them once resumed); iced-x86 formats them when asked.
  const bits = guest.codeSize * 8 as 16 | 32 | 64, bytes = fetchInstruction(guest.view());
  Object.defineProperty(record, 'insn', {
    enumerable: true,
    get: () => {
      if (text === undefined) text = bytes === null ? null : disassemble(bytes, bits, rip).text;
      return text;
    },
  });
  return freeze(record) as ExitRecord;
}
