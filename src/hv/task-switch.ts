/**
 * TASK_SWITCH VM exits (exit reason 9): in VMX non-root operation every task
 * switch exits once its privilege checks have passed (SDM vol. 3C, 26.4.2
 * "Treatment of Task Switches"), and the hypervisor carries it out as the
 * guest's processor would have (SDM vol. 3A, 8.3; 6.12.2), on the guest's
 * state: the processor is put in the guest's context (27.3.2, without
 * counting an entry), the switch runs there (src/cpu/task-switch.ts
 * emulateTaskSwitch), the guest-state area takes the result (28.3) and the
 * processor is the host again (28.5), without counting an exit.
 *
 * What the exit gives (28.2.1, 28.2.4, 28.2.5): the new TSS selector and the
 * source (CALL, IRET, JMP, task gate in the IDT) in the qualification; RIP at
 * the instruction or at the event; for CALL, IRET, JMP and INT n, INT3, INTO,
 * INT1 the instruction's length; for a task gate in the IDT, the event in the
 * IDT-vectoring information. The switch is that event's delivery: injectPending
 * (interrupts.ts) does not deliver it again.
 */
import { InterruptionType } from '../../vmcs/controls.js';
import { Field } from '../../vmcs/fields.js';
import { FAULT } from '../cpu/cpu.js';
import { secondException, takeDebugStatus } from '../cpu/interrupts.js';
import { insnClass } from '../cpu/insn-class.js';
import { jumpRelative } from '../cpu/operands.js';
import { Vector } from '../cpu/regs.js';
import { emulateTaskSwitch, TaskSwitchSource } from '../cpu/task-switch.js';
import { loadGuestState } from '../vmx/entry.js';
import { leaveNonRoot, loadHostState, saveGuestState } from '../vmx/exit.js';
import type { ExitRecord } from './record.js';
import type { HandlerResult, Vm } from './vm.js';

const CR0_TS = 1 << 3;

/** The TASK_SWITCH handler of defaultHandlers (handlers.ts). */
export function taskSwitchExit(e: ExitRecord, vm: Vm): HandlerResult {
  const unhandled = (detail: string): HandlerResult => ({ kind: 'unhandled', reason: e.reason, name: e.name, detail });
  // Under shadow paging the guest's CR3 is not the processor's: the TSS accesses and the new task's CR3
  // would have to go through the shadows. Not emulated.
  if (vm.shadow !== null) return unhandled('task switches are emulated only with EPT (not under shadow paging)');
  const g = vm.guest, cpu = vm.cpu, vmx = vm.vmx;
  const q = Number(e.qualification & 0xffffffffn);
  const selector = q & 0xffff, source = (q >>> 30) as TaskSwitchSource;
  // The event a task gate in the IDT delivers: EXT is 1 but for INT n, INT3 and INTO (6.13; vol. 2 INT n);
  // an error code goes on the new task's stack (6.12.2); a software event's instruction completes.
  let ext = 0, code = -1, advance = 0, eventType = -1, eventVector = -1;
  if (source === TaskSwitchSource.IDT) {
    const x = e.idtVectoring;
    if (x === null) return unhandled('a task switch through the IDT without IDT-vectoring information');
    eventType = x.type; eventVector = x.vector;
    const software = x.type === InterruptionType.SOFTWARE_INTERRUPT || x.type === InterruptionType.SOFTWARE_EXCEPTION;
    ext = software ? 0 : 1;
    if (x.errorCode !== null) code = x.errorCode;
    if (software || x.type === InterruptionType.PRIVILEGED_SOFTWARE_EXCEPTION) advance = e.length;
  } else {
    advance = e.length; // CALL, JMP, IRET: the old task saves the next instruction's EIP (8.3 step 8)
  }
  const cr0Mask = g.read(Field.CR0_GUEST_HOST_MASK);

  // ---- in the guest's context ----
  if (!loadGuestState(vmx, cpu)) {
    leaveNonRoot(vmx, cpu);
    loadHostState(vmx, cpu);
    return unhandled('the guest PDPTEs do not load');
  }
  // IRET ends blocking by NMI before it reads anything (as the processor's IRET does, src/cpu/ops/segment.ts).
  if (source === TaskSwitchSource.IRET) cpu.nmiBlocked = false;
  // The instruction's class, for the cost model's counts (as the processor would have counted it).
  const cls = advance !== 0 && cpu.classCounts !== null ? insnClass(cpu.blocks.peek().insns[0]!) : -1;
  if (advance !== 0) jumpRelative(cpu, cpu.codeSize, advance);
  let committed = false, pending = false;
  try {
    pending = emulateTaskSwitch(cpu, selector, source, ext, code);
    committed = true;
  } catch (err) {
    if (err !== FAULT) {
      leaveNonRoot(vmx, cpu);
      loadHostState(vmx, cpu);
      throw err;
    }
  }
  if (cpu.vmExit) {
    // The switch touched guest-physical memory that EPT leaves out (a device page): nothing to emulate it with.
    cpu.vmExit = false;
    cpu.excVector = -1;
    leaveNonRoot(vmx, cpu);
    loadHostState(vmx, cpu);
    return unhandled(`the task switch to TSS ${hex(selector)} reaches guest-physical memory that is not RAM`);
  }
  let inject: { vector: number; code: number | null } | null = null;
  let shutdown = false;
  if (!committed) {
    // A fault before the commit point: nothing changed, RIP stays at the instruction or event (8.3).
    if (advance !== 0) jumpRelative(cpu, cpu.codeSize, -advance);
    let vector = cpu.excVector, faultCode: number | null = cpu.excHasCode ? cpu.excCode : null;
    // A fault while delivering a hardware exception follows table 6-5 (6.15).
    if (eventType === InterruptionType.HARDWARE_EXCEPTION) {
      const v = secondException(eventVector, vector);
      if (v < 0) shutdown = true;
      else if (v === Vector.DF) { vector = Vector.DF; faultCode = 0; }
    }
    inject = { vector, code: faultCode };
  } else {
    // The instruction (or software event) completed: it retires, and its STI/MOV SS shadow is over.
    if (advance !== 0) cpu.insnCount++;
    if (cls >= 0) cpu.classCounts![cls]++;
    cpu.interruptShadowEnd = -1;
    if (pending) {
      // An exception of the new task, before its first instruction (8.3 step 13, the T flag of its TSS).
      if (cpu.excVector === Vector.DB) takeDebugStatus(cpu);
      inject = { vector: cpu.excVector, code: cpu.excHasCode ? cpu.excCode : null };
    }
  }
  cpu.excVector = -1;
  const ts = (cpu.cr0 & CR0_TS) !== 0;
  saveGuestState(vmx, cpu);
  // ---- the host again ----
  leaveNonRoot(vmx, cpu);
  loadHostState(vmx, cpu);

  // Every task switch sets CR0.TS (8.3, table 8-2): where the host owns TS, the guest sees it in the read shadow.
  if (committed && ts && (cr0Mask & CR0_TS) !== 0) g.write(Field.CR0_READ_SHADOW, g.read(Field.CR0_READ_SHADOW) | CR0_TS);
  if (shutdown) return { kind: 'shutdown' };
  if (inject !== null) g.inject({ vector: inject.vector, type: InterruptionType.HARDWARE_EXCEPTION, errorCode: inject.code });
  return 'resume';
}

function hex(v: number): string { return `0x${v.toString(16)}`; }
