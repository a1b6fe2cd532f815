/**
 * Non-root operation: events and the controls that turn them into VM exits —
 * event injection at VM entry, the monitor trap flag, the VMX-preemption timer,
 * interrupt-window exiting, software exceptions, IDT-vectoring information and
 * triple faults (SDM vol. 3C, 26.2 "Other Causes of VM Exits", 26.5.1 "VMX-
 * Preemption Timer", 26.7 "Features Specific to VMX Non-Root Operation", 27.6
 * "Event Injection", 28.2 "Recording VM-Exit Information").
 */
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { run } from '../../src/cpu/run.js';
import { GUEST_CODE, GUEST_IDT, runInGuest } from '../../src/vmx/testing.js';

const VMCALL = [0x0f, 0x01, 0xc1], NOP = 0x90, INT3 = 0xcc, HLT = 0xf4;
const PIN = Field.PIN_BASED_VM_EXECUTION_CONTROLS, PROC = Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
const setBits = (field: number, bits: number) => (v: import('../../src/vmx/vmcs.js').Vmcs): void => {
  v.set(field, v.lo(field) | bits);
};

describe('event injection (27.6)', () => {
  it('a hardware exception with an error code is delivered through the guest IDT before any guest instruction', () => {
    // #GP(0x1234) injected: the harness's handler for vector 13 exits with VMCALL and AL = 13.
    const r = runInGuest([NOP, ...VMCALL], (v) => {
      v.set(Field.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD, 13 | (3 << 8) | (1 << 11) | 0x80000000);
      v.set(Field.VM_ENTRY_EXCEPTION_ERROR_CODE, 0x1234);
    });
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[0]! & 0xff).toBe(13);
    // The handler's frame: error code, then the RIP of the first guest instruction (not executed).
    const rsp = r.vmcs.num(Field.GUEST_RSP);
    expect(r.cpu.memory.read32(rsp)).toBe(0x1234);
    expect(r.cpu.memory.read32(rsp + 8)).toBe(GUEST_CODE);
    // The valid bit of the VM-entry interruption-information field is clear after the exit (28.2).
    expect(r.vmcs.lo(Field.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD) >>> 31).toBe(0);
  });

  it('a software interrupt pushes RIP + the VM-entry instruction length', () => {
    const r = runInGuest([NOP, NOP, ...VMCALL], (v) => {
      v.set(Field.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD, 3 | (4 << 8) | 0x80000000); // INT 3 as type 4, length 2
      v.set(Field.VM_ENTRY_INSTRUCTION_LENGTH, 2);
    });
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[0]! & 0xff).toBe(3);
    expect(r.cpu.memory.read32(r.vmcs.num(Field.GUEST_RSP))).toBe(GUEST_CODE + 2);
  });

  it('the injected event is not subject to the exception bitmap (27.6.1)', () => {
    const r = runInGuest([NOP, ...VMCALL], (v) => {
      v.set(Field.EXCEPTION_BITMAP, 1 << 6);
      v.set(Field.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD, 6 | (3 << 8) | 0x80000000);
    });
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[0]! & 0xff).toBe(6);
  });
});

describe('monitor trap flag (26.5.2)', () => {
  it('exits after the first guest instruction, with RIP at the next one', () => {
    const r = runInGuest([NOP, NOP, ...VMCALL], setBits(PROC, 1 << 27));
    expect(r.reason).toBe(ExitReason.MONITOR_TRAP_FLAG);
    expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE + 1);
  });

  it('an entry into HLT or shutdown exits at once: the MTF exit wakes the processor; the state is saved', () => {
    for (const activity of [1, 2]) {
      const r = runInGuest([NOP, ...VMCALL], (v) => { setBits(PROC, 1 << 27)(v); v.set(Field.GUEST_ACTIVITY_STATE, activity); });
      expect(r.reason).toBe(ExitReason.MONITOR_TRAP_FLAG);
      expect(r.vmcs.lo(Field.GUEST_ACTIVITY_STATE)).toBe(activity);
      expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE);
    }
  });

  it('after an injected event, exits before the handler runs', () => {
    const r = runInGuest([NOP, ...VMCALL], (v) => {
      setBits(PROC, 1 << 27)(v);
      v.set(Field.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD, 6 | (3 << 8) | 0x80000000);
    });
    expect(r.reason).toBe(ExitReason.MONITOR_TRAP_FLAG);
    expect(r.vmcs.num(Field.GUEST_RIP)).toBe(0x2000 + 8 * 6); // the #UD handler's first instruction
  });
});

describe('VMX-preemption timer (26.5.1)', () => {
  it('a value of 0 exits before any guest instruction', () => {
    const r = runInGuest([NOP, ...VMCALL], (v) => { setBits(PIN, 1 << 6)(v); v.set(Field.VMX_PREEMPTION_TIMER_VALUE, 0); });
    expect(r.reason).toBe(ExitReason.VMX_PREEMPTION_TIMER_EXPIRED);
    expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE);
  });

  it('counts down once every 2^5 instructions of guest time, and saves what is left when asked', () => {
    // A loop of NOPs and a jump: 100 timer ticks = 3200 instructions.
    const loop = [NOP, 0xeb, 0xfd];
    const r = runInGuest(loop, (v) => {
      setBits(PIN, 1 << 6)(v);
      v.set(Field.VMX_PREEMPTION_TIMER_VALUE, 100);
      setBits(Field.PRIMARY_VM_EXIT_CONTROLS, 1 << 22)(v);
    }, { budget: 10_000 });
    expect(r.reason).toBe(ExitReason.VMX_PREEMPTION_TIMER_EXPIRED);
    expect(r.cpu.insnCount).toBe(3200 + 1); // 3200 guest instructions, then the host's HLT
    expect(r.vmcs.lo(Field.VMX_PREEMPTION_TIMER_VALUE)).toBe(0);
  });

  it('ends a guest HLT (activity state HLT is saved); the processor names the deadline for the platform', () => {
    const r = runInGuest([HLT], (v) => { setBits(PIN, 1 << 6)(v); v.set(Field.VMX_PREEMPTION_TIMER_VALUE, 10); });
    // A bare processor does not move time while halted; a machine skips to cpu.eventDeadline (platform/machine.ts).
    expect(r.stop?.kind).toBe('halt');
    expect(r.cpu.nonRoot).toBe(true);
    expect(r.cpu.eventDeadline).toBe(10 * 32);
    r.cpu.now = (): number => 10 * 32;
    run(r.cpu, 10);
    expect(r.vmcs.lo(Field.EXIT_REASON)).toBe(ExitReason.VMX_PREEMPTION_TIMER_EXPIRED);
    expect(r.vmcs.lo(Field.GUEST_ACTIVITY_STATE)).toBe(1);
    expect(r.cpu.nonRoot).toBe(false);
  });
});

describe('interrupt-window exiting (27.7.5)', () => {
  it('exits at once when RFLAGS.IF = 1, and not before STI has taken effect', () => {
    const open = runInGuest([NOP, ...VMCALL], (v) => { setBits(PROC, 1 << 2)(v); v.set(Field.GUEST_RFLAGS, 0x202); });
    expect(open.reason).toBe(ExitReason.INTERRUPT_WINDOW);
    expect(open.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE);
    // STI; NOP: the window opens after the instruction following STI (blocking by STI, 25.4.2).
    const sti = runInGuest([0xfb, NOP, NOP, ...VMCALL], setBits(PROC, 1 << 2));
    expect(sti.reason).toBe(ExitReason.INTERRUPT_WINDOW);
    expect(sti.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE + 2);
  });
});

describe('exceptions that exit (26.2; 28.2.2 interruption information; 28.2.4 IDT-vectoring information)', () => {
  it('INT3 exits as a software exception (type 6) with RIP at the INT3 and its length', () => {
    const r = runInGuest([NOP, INT3, ...VMCALL], (v) => v.set(Field.EXCEPTION_BITMAP, 1 << 3));
    expect(r.reason).toBe(ExitReason.EXCEPTION_OR_NMI);
    expect(r.vmcs.lo(Field.VM_EXIT_INTERRUPTION_INFORMATION) >>> 0).toBe((3 | (6 << 8) | 0x80000000) >>> 0);
    expect(r.vmcs.lo(Field.VM_EXIT_INSTRUCTION_LENGTH)).toBe(1);
    expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE + 1);
  });

  it('a #NP raised while delivering INT3 exits with the INT3 in the IDT-vectoring information', () => {
    // Vector 3's gate is made not present: delivering it raises #NP(3 << 3 | IDT), which the bitmap intercepts.
    const r = runInGuest([INT3, ...VMCALL], (v, cpu) => {
      v.set(Field.EXCEPTION_BITMAP, 1 << 11);
      cpu.memory.write32(GUEST_IDT + 16 * 3 + 4, cpu.memory.read32(GUEST_IDT + 16 * 3 + 4) & ~0x8000);
    });
    expect(r.reason).toBe(ExitReason.EXCEPTION_OR_NMI);
    expect(r.vmcs.lo(Field.VM_EXIT_INTERRUPTION_INFORMATION) >>> 0).toBe((11 | (3 << 8) | (1 << 11) | 0x80000000) >>> 0);
    expect(r.vmcs.lo(Field.VM_EXIT_INTERRUPTION_ERROR_CODE)).toBe(3 * 8 + 2); // #NP(vector 3 in the index, IDT)
    expect(r.vmcs.lo(Field.IDT_VECTORING_INFORMATION_FIELD) >>> 0).toBe((3 | (6 << 8) | 0x80000000) >>> 0);
  });

  it('26.2, 28.2.4: a #NP raised while delivering a #GP meets the exception bitmap before table 6-5: it exits, with the #GP in the IDT-vectoring information, instead of becoming #DF', () => {
    // mov rbx, 8000000000000000H; mov rax, [rbx]: #GP(0); its gate is made not present: #NP(13 << 3 | IDT).
    const r = runInGuest([0x48, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x48, 0x8b, 0x03, ...VMCALL], (v, cpu) => {
      v.set(Field.EXCEPTION_BITMAP, 1 << 11);
      cpu.memory.write32(GUEST_IDT + 16 * 13 + 4, cpu.memory.read32(GUEST_IDT + 16 * 13 + 4) & ~0x8000);
    });
    expect(r.reason).toBe(ExitReason.EXCEPTION_OR_NMI);
    expect(r.vmcs.lo(Field.VM_EXIT_INTERRUPTION_INFORMATION) >>> 0).toBe((11 | (3 << 8) | (1 << 11) | 0x80000000) >>> 0);
    // Index 13, IDT (bit 1), EXT (bit 0): the fault happened while delivering a hardware exception (6.13).
    expect(r.vmcs.lo(Field.VM_EXIT_INTERRUPTION_ERROR_CODE)).toBe(13 * 8 + 2 + 1);
    expect(r.vmcs.lo(Field.IDT_VECTORING_INFORMATION_FIELD) >>> 0).toBe((13 | (3 << 8) | (1 << 11) | 0x80000000) >>> 0);
    expect(r.vmcs.lo(Field.IDT_VECTORING_ERROR_CODE)).toBe(0);
    expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE + 10); // the faulting MOV: the #GP was not delivered
  });

  it('a triple fault exits with reason 2 instead of shutting down', () => {
    // An empty IDT: #UD cannot be delivered, nor #DF: triple fault (SDM vol. 3A, 6.15).
    const r = runInGuest([0x0f, 0x0b], (v) => v.set(Field.GUEST_IDTR_LIMIT, 0));
    expect(r.reason).toBe(ExitReason.TRIPLE_FAULT);
  });
});

describe('TSC offsetting (26.3)', () => {
  it('RDTSC in the guest returns the TSC plus TSC_OFFSET', () => {
    const plain = runInGuest([0x0f, 0x31, ...VMCALL]);
    const offset = runInGuest([0x0f, 0x31, ...VMCALL], (v) => { setBits(PROC, 1 << 3)(v); v.set(Field.TSC_OFFSET, 0x10000000, 0); });
    const tsc = (r: typeof plain): number => r.cpu.gpr[2 * 2]! * 2 ** 32 + (r.cpu.gpr[0]! >>> 0);
    expect(tsc(offset) - tsc(plain)).toBe(0x10000000);
    // After the exit the host reads the TSC without the offset.
    expect(offset.cpu.tscOffset).toBe(plain.cpu.tscOffset);
  });
});

describe('activity states at VM entry (27.7, 25.4.2)', () => {
  it('shutdown: the guest runs nothing and external events do not wake it; the machine does not stop with it', () => {
    const r = runInGuest([0x90, ...VMCALL], (v) => v.set(Field.GUEST_ACTIVITY_STATE, 2));
    expect(r.stop?.kind).toBe('halt');
    expect(r.cpu.nonRoot).toBe(true);
    expect(r.cpu.insnCount).toBe(0);
  });

  it('HLT: the guest waits; the preemption timer ends the wait with activity state HLT saved', () => {
    const r = runInGuest([0x90, ...VMCALL], (v) => {
      v.set(Field.GUEST_ACTIVITY_STATE, 1);
      setBits(PIN, 1 << 6)(v);
      v.set(Field.VMX_PREEMPTION_TIMER_VALUE, 0);
    });
    expect(r.reason).toBe(ExitReason.VMX_PREEMPTION_TIMER_EXPIRED);
    expect(r.vmcs.lo(Field.GUEST_ACTIVITY_STATE)).toBe(1);
    expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE);
  });
});

describe('#DB and DR6 (28.1: a #DB that exits leaves DR6 alone; table 28-1, its exit qualification)', () => {
  it('a single-step #DB that the bitmap intercepts exits with BS in the qualification; DR6 keeps its value', () => {
    const r = runInGuest([0x90, 0x90, ...VMCALL], (v) => {
      v.set(Field.GUEST_RFLAGS, 0x102); // TF
      v.set(Field.EXCEPTION_BITMAP, 1 << 1);
    });
    expect(r.reason).toBe(ExitReason.EXCEPTION_OR_NMI);
    expect(r.vmcs.lo(Field.VM_EXIT_INTERRUPTION_INFORMATION) >>> 0).toBe((1 | (3 << 8) | 0x80000000) >>> 0);
    expect(r.qualification).toBe(0x4000n); // BS
    expect(r.cpu.dr6 & 0x4000).toBe(0);
    expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE + 1); // a trap: after the single-stepped NOP
  });

  it('delivered in the guest instead, the #DB sets DR6.BS', () => {
    const r = runInGuest([0x90, 0x90, ...VMCALL], (v) => v.set(Field.GUEST_RFLAGS, 0x102));
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[0]! & 0xff).toBe(1); // the #DB handler's VMCALL
    expect(r.cpu.dr6 & 0x4000).toBe(0x4000);
  });
});

describe('external events in non-root operation (26.2, 25.6.1; 28.2.2 interruption information)', () => {
  /** An interrupt source that offers what the test names (src/cpu/cpu.ts InterruptSource). */
  function source(o: { vector?: number; nmi?: boolean; init?: boolean; sipi?: number }): import('../../src/cpu/cpu.js').InterruptSource {
    let nmi = o.nmi ?? false, init = o.init ?? false, sipi = o.sipi ?? -1, vector = o.vector ?? -1;
    return {
      hasInterrupt: () => vector >= 0,
      acknowledge: () => { const v = vector; vector = -1; return v; },
      hasNmi: () => nmi,
      takeNmi: () => { nmi = false; },
      takeInit: () => { const r = init; init = false; return r; },
      takeSipi: () => { const v = sipi; sipi = -1; return v; },
    };
  }

  it('external-interrupt exiting with "acknowledge interrupt on exit": reason 1, the vector in the interruption information, whatever RFLAGS.IF says', () => {
    const r = runInGuest([0x90, ...VMCALL], (v, cpu) => {
      setBits(PIN, 1 << 0)(v);
      setBits(Field.PRIMARY_VM_EXIT_CONTROLS, 1 << 15)(v);
      cpu.interrupts = source({ vector: 0x30 });
    });
    expect(r.reason).toBe(ExitReason.EXTERNAL_INTERRUPT);
    expect(r.vmcs.lo(Field.VM_EXIT_INTERRUPTION_INFORMATION) >>> 0).toBe(0x80000030);
    expect(r.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE);
  });

  it('without acknowledge on exit the interrupt stays pending and the information is not valid', () => {
    const src = source({ vector: 0x31 });
    const r = runInGuest([0x90, ...VMCALL], (v, cpu) => { setBits(PIN, 1 << 0)(v); cpu.interrupts = src; });
    expect(r.reason).toBe(ExitReason.EXTERNAL_INTERRUPT);
    expect(r.vmcs.lo(Field.VM_EXIT_INTERRUPTION_INFORMATION) >>> 31).toBe(0);
    expect(src.hasInterrupt()).toBe(true);
  });

  it('without external-interrupt exiting the interrupt is delivered through the guest IDT when IF = 1', () => {
    const r = runInGuest([0x90, ...VMCALL], (v, cpu) => { v.set(Field.GUEST_RFLAGS, 0x202); cpu.interrupts = source({ vector: 13 }); });
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[0]! & 0xff).toBe(13); // the handler of vector 13 ran (external, so no error code)
  });

  it('NMI exiting: reason 0 with an NMI (type 2, vector 2); NMIs stay blocked for the host', () => {
    const r = runInGuest([0x90, ...VMCALL], (v, cpu) => { setBits(PIN, 1 << 3)(v); cpu.interrupts = source({ nmi: true }); });
    expect(r.reason).toBe(ExitReason.EXCEPTION_OR_NMI);
    expect(r.vmcs.lo(Field.VM_EXIT_INTERRUPTION_INFORMATION) >>> 0).toBe((2 | (2 << 8) | 0x80000000) >>> 0);
    expect(r.cpu.nmiBlocked).toBe(true);
  });

  it('INIT always exits (reason 3)', () => {
    const r = runInGuest([0x90, ...VMCALL], (_v, cpu) => { cpu.interrupts = source({ init: true }); cpu.startupPending = true; });
    expect(r.reason).toBe(ExitReason.INIT_SIGNAL);
  });

  it('a SIPI to a guest in wait-for-SIPI exits (reason 4) with the vector as qualification', () => {
    const r = runInGuest([0x90, ...VMCALL], (v, cpu) => {
      v.set(Field.GUEST_ACTIVITY_STATE, 3);
      cpu.interrupts = source({ sipi: 0x12 });
      cpu.startupPending = true;
    });
    expect(r.reason).toBe(ExitReason.SIPI);
    expect(r.qualification).toBe(0x12n);
    expect(r.vmcs.lo(Field.GUEST_ACTIVITY_STATE)).toBe(3);
  });
});

describe('a halted guest on the PC (26.2; platform time skips to the next device event)', () => {
  it('HLT with RFLAGS.IF = 0 under external-interrupt exiting ends when the APIC timer fires: a VM exit', async () => {
    const { PcMachine } = await import('../../src/platform/machine.js');
    const m = new PcMachine({});
    const r = runInGuest([0xfa, 0xf4, ...VMCALL], (v) => { // cli; hlt
      setBits(PIN, 1 << 0)(v);
      setBits(Field.PRIMARY_VM_EXIT_CONTROLS, 1 << 15)(v);
    }, { cpu: m.cpu });
    expect(r.stop?.kind).toBe('halt');
    expect(r.cpu.nonRoot).toBe(true);
    // The local APIC timer, one-shot, vector 40H, in 10,000 ns (SDM vol. 3A, 11.5.4).
    m.apic.write(0x3e0, 4, 0xb); // divide by 1
    m.apic.write(0x320, 4, 0x40);
    m.apic.write(0x380, 4, 10_000);
    m.run(100_000);
    expect(r.vmcs.lo(Field.EXIT_REASON)).toBe(ExitReason.EXTERNAL_INTERRUPT);
    expect(r.vmcs.lo(Field.VM_EXIT_INTERRUPTION_INFORMATION) >>> 0).toBe(0x80000040);
    expect(r.vmcs.lo(Field.GUEST_ACTIVITY_STATE)).toBe(1); // HLT
  });
});

describe('NMIs delivered in the guest (SDM vol. 3A, 6.7.1: not masked by RFLAGS.IF)', () => {
  it('without NMI exiting an NMI reaches the guest through vector 2 even with IF = 0, and NMIs are then blocked', () => {
    const nmiSource = (): import('../../src/cpu/cpu.js').InterruptSource => {
      let pending = true;
      return { hasInterrupt: () => false, acknowledge: () => 0, hasNmi: () => pending, takeNmi: () => { pending = false; } };
    };
    const r = runInGuest([0xfa, 0x90, ...VMCALL], (_v, cpu) => { cpu.interrupts = nmiSource(); });
    expect(r.reason).toBe(ExitReason.VMCALL);
    expect(r.cpu.gpr[0]! & 0xff).toBe(2); // the vector-2 handler's VMCALL
    expect(r.vmcs.lo(Field.GUEST_INTERRUPTIBILITY_STATE) & 8).toBe(8); // blocking by NMI saved (25.4.2)
  });
});

describe('pending debug exceptions at VM entry (27.7.3)', () => {
  const BS = 1 << 14;
  it('BS makes a #DB trap before the first guest instruction: delivered with DR6.BS, or an exit with BS in the qualification', () => {
    const delivered = runInGuest([NOP, ...VMCALL], (v) => v.set(Field.GUEST_PENDING_DEBUG_EXCEPTIONS, BS));
    expect(delivered.reason).toBe(ExitReason.VMCALL);
    expect(delivered.cpu.gpr[0]! & 0xff).toBe(1);
    expect(delivered.cpu.dr6 & BS).toBe(BS);
    expect(delivered.vmcs.lo(Field.GUEST_PENDING_DEBUG_EXCEPTIONS)).toBe(0); // nothing left pending at the exit
    const exits = runInGuest([NOP, ...VMCALL], (v) => {
      v.set(Field.GUEST_PENDING_DEBUG_EXCEPTIONS, BS);
      v.set(Field.EXCEPTION_BITMAP, 1 << 1);
    });
    expect(exits.reason).toBe(ExitReason.EXCEPTION_OR_NMI);
    expect(exits.qualification).toBe(BigInt(BS));
    expect(exits.vmcs.num(Field.GUEST_RIP)).toBe(GUEST_CODE);
  });

  it('an injected hardware exception makes them lost', () => {
    const r = runInGuest([NOP, ...VMCALL], (v) => {
      v.set(Field.GUEST_PENDING_DEBUG_EXCEPTIONS, BS);
      v.set(Field.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD, 6 | (3 << 8) | 0x80000000); // #UD
    });
    expect(r.cpu.gpr[0]! & 0xff).toBe(6);
    expect(r.cpu.dr6 & BS).toBe(0);
  });
});
