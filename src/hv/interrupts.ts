/**
 * Event injection before each VM entry (SDM vol. 3C, 27.6), in the order a VMM
 * must keep:
 * 1. an event whose delivery the exit interrupted (IDT-vectoring information,
 *    28.2.4) is delivered again, before anything else;
 * 2. an NMI from the virtual platform, when the guest does not block NMIs;
 * 3. an external interrupt from the virtual APIC or 8259A, when the guest can
 *    take one: RFLAGS.IF = 1, no STI or MOV SS blocking, active or halted
 *    (26.3.1.2; vol. 3A, 6.8.1).
 * What cannot be injected now waits for the guest: interrupt-window and
 * NMI-window exiting (25.6.2) bring the hypervisor back when it can.
 */
import { InterruptionType } from '../../vmcs/controls.js';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { PrimaryProcessorBasedControls as Proc } from '../../vmcs/controls.js';
import { IF, Vector } from '../cpu/regs.js';
import { ACTIVE, HLT } from '../vmx/exit.js';
import { BLOCKING_BY_MOV_SS, BLOCKING_BY_NMI, BLOCKING_BY_STI, type Guest } from './guest.js';
import type { Vm } from './vm.js';

const INTERRUPT_WINDOW = 1 << Proc.INTERRUPT_WINDOW_EXITING, NMI_WINDOW = 1 << Proc.NMI_WINDOW_EXITING;
const SOFTWARE_TYPES = new Set<number>([
  InterruptionType.SOFTWARE_INTERRUPT, InterruptionType.PRIVILEGED_SOFTWARE_EXCEPTION, InterruptionType.SOFTWARE_EXCEPTION,
]);

/** The guest can take a maskable interrupt at its next instruction boundary. */
export function interruptible(guest: Guest): boolean {
  const activity = guest.read(Field.GUEST_ACTIVITY_STATE);
  return (guest.rflags & IF) !== 0 && (guest.read(Field.GUEST_INTERRUPTIBILITY_STATE) & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS)) === 0 &&
    (activity === ACTIVE || activity === HLT);
}

function nmiAllowed(guest: Guest): boolean {
  return (guest.read(Field.GUEST_INTERRUPTIBILITY_STATE) & (BLOCKING_BY_NMI | BLOCKING_BY_MOV_SS | BLOCKING_BY_STI)) === 0;
}

/**
 * Re-delivers the event the last exit interrupted (28.2.4), unless a handler
 * already injected one, or the exit was the event's task switch through a task
 * gate in the IDT (qualification bits 31:30 = 3, 28.2.1): the TASK_SWITCH handler
 * carried out the switch, which was the event's delivery (task-switch.ts).
 */
function redeliver(guest: Guest): void {
  const info = guest.read(Field.IDT_VECTORING_INFORMATION_FIELD);
  if ((info & 0x80000000) === 0 || guest.injecting) return;
  if ((guest.read(Field.EXIT_REASON) & 0xffff) === ExitReason.TASK_SWITCH && guest.read(Field.EXIT_QUALIFICATION) >>> 30 === 3) return;
  const type = (info >>> 8) & 7;
  guest.inject({
    vector: info & 0xff, type,
    errorCode: info & (1 << 11) ? guest.read(Field.IDT_VECTORING_ERROR_CODE) : null,
    length: SOFTWARE_TYPES.has(type) ? guest.read(Field.VM_EXIT_INSTRUCTION_LENGTH) : undefined,
  });
}

/** Injects what the virtual platform has for the guest, or asks for the window that lets it. */
export function injectPending(vm: Vm): void {
  const guest = vm.guest, source = vm.interrupts;
  redeliver(guest);
  const proc = guest.read(Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS);
  let want = proc & ~(INTERRUPT_WINDOW | NMI_WINDOW);
  if (source.hasNmi?.()) {
    if (!guest.injecting && nmiAllowed(guest)) {
      source.takeNmi!();
      guest.inject({ vector: Vector.NMI, type: InterruptionType.NMI, errorCode: null });
      wake(guest);
    } else {
      want |= NMI_WINDOW;
    }
  }
  if (source.hasInterrupt()) {
    if (!guest.injecting && interruptible(guest)) {
      guest.inject({ vector: source.acknowledge(), type: InterruptionType.EXTERNAL_INTERRUPT, errorCode: null });
      wake(guest);
    } else {
      want |= INTERRUPT_WINDOW;
    }
  }
  if (want !== proc) guest.write(Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, want);
}

/** A guest halted in non-root operation takes the injected event and runs on (27.6, 27.7). */
function wake(guest: Guest): void {
  if (guest.read(Field.GUEST_ACTIVITY_STATE) === HLT) guest.write(Field.GUEST_ACTIVITY_STATE, ACTIVE);
}
