import { describe, expect, it } from 'vitest';
import { vmConfig } from '../hv/config.js';
import { createVm, type Vm } from '../hv/vm.js';
import { captureState, diffFingerprints, restoreState, stateFingerprint, vmCaptureRules, type CaptureRules } from './snapshot.js';
import { architecturalFingerprint, guestImage } from './testing.js';

/** Runs, handles and resumes until `n` more exits have been handled. */
function exits(vm: Vm, n: number): void {
  for (let k = 0; k < n; k++) {
    const e = vm.runUntilExit(1e8);
    if ('kind' in e) throw new Error(`the guest stopped: ${JSON.stringify(e)}`);
    if (vm.handle(e) !== 'resume' || vm.resume() !== null) throw new Error('the guest stopped');
  }
}

function demo(): { vm: Vm; rules: CaptureRules } {
  const vm = createVm(vmConfig({}));
  vm.load(guestImage('demo.bin'));
  return { vm, rules: vmCaptureRules(vm) };
}

/**
 * The MMU's epoch moves when restoring drops its fast entries (a cache, mmu.ts);
 * every other part of the state is as it was.
 */
const CACHES = ['vm.machine.cpus[0].mmu'];

describe('state snapshots', () => {
  it("restore the platform's devices: 8254, 8259As, 16550, CMOS, local APIC, I/O APIC, the clock and its timers", () => {
    const { vm, rules } = demo();
    exits(vm, 1450); // the demo has programmed the 8254 and taken its first timer interrupts (exit 1445) by now
    const snap = captureState(vm, rules);
    const p = vm.machine.ports;
    const devices: Record<string, object> = {
      pit: p.pit, pic: p.pic, uart: p.uart, cmos: p.cmos, clock: p.clock, apic: vm.machine.apic, ioapic: vm.machine.ioapic, vmcs: vm.vmcs,
    };
    const before = Object.fromEntries(Object.entries(devices).map(([k, d]) => [k, stateFingerprint(vm, rules, d)]));
    const whole = stateFingerprint(vm, rules);
    exits(vm, 300);
    // What a guest could do next: mask every IRQ at the 8259A, raise the TPR, program an I/O APIC redirection entry.
    p.pic.write(0x21, 1, 0xff);
    vm.machine.apic.write(0x80, 4, 0x20);
    vm.machine.ioapic.write(0x00, 4, 0x12);
    vm.machine.ioapic.write(0x10, 4, 0x0000a030);
    const changed = Object.entries(devices).filter(([k, d]) => diffFingerprints(before[k]!, stateFingerprint(vm, rules, d)).length > 0).map(([k]) => k);
    // The run moved them on (so that restoring them is seen to work).
    expect(changed).toEqual(['pit', 'pic', 'uart', 'cmos', 'clock', 'apic', 'ioapic', 'vmcs']);
    restoreState(vm, snap);
    for (const [k, d] of Object.entries(devices)) expect([k, diffFingerprints(before[k]!, stateFingerprint(vm, rules, d))]).toEqual([k, []]);
    expect(diffFingerprints(whole, stateFingerprint(vm, rules))).toEqual(CACHES);
  });

  it('a restored run goes on exactly as the first time: the same exits, the same state', () => {
    const { vm, rules } = demo();
    exits(vm, 1440); // just before the first timer interrupts: they come within the 150 exits recorded
    const snap = captureState(vm, rules);
    const record = (): string[] => {
      const out: string[] = [];
      for (let k = 0; k < 150; k++) {
        // Different slices the second time: a run cut into slices is the same run.
        const e = vm.runUntilExit(k % 2 === 0 ? 1e8 : 9973);
        if ('kind' in e) { if (e.kind === 'budget') { k--; continue; } throw new Error('stopped'); }
        out.push(`${e.seq} ${e.name} ${e.rip} ${e.qualification} ${e.instructions}`);
        vm.handle(e);
        vm.resume();
      }
      return out;
    };
    const first = record(), state = architecturalFingerprint(vm);
    restoreState(vm, snap);
    expect(record()).toEqual(first);
    expect(diffFingerprints(state, architecturalFingerprint(vm))).toEqual([]);
  });

  it('shares unchanged chunks and pages with the snapshot it is compared to; pages touched later read as zeros after a restore', () => {
    const { vm, rules } = demo();
    exits(vm, 10);
    const first = captureState(vm, rules);
    const again = captureState(vm, rules, first);
    expect(first.ownBytes).toBeGreaterThan(100_000);
    expect(again.ownBytes).toBe(0);
    expect(again.pages.get(0x100)).toBe(first.pages.get(0x100));
    // A page no one touched yet, touched now.
    const memory = vm.cpu.memory, ppn = 0x3000;
    expect(memory.isAllocated(ppn)).toBe(false);
    memory.write8(ppn * 4096 + 5, 0xab);
    const third = captureState(vm, rules, again);
    expect(third.ownBytes).toBe(4096);
    restoreState(vm, first);
    expect(memory.read8(ppn * 4096 + 5)).toBe(0);
    restoreState(vm, third);
    expect(memory.read8(ppn * 4096 + 5)).toBe(0xab);
  });

  it('leaves accessors and functions alone and keeps the objects: a restore writes values into the same objects', () => {
    const { vm, rules } = demo();
    const cpu = vm.cpu, gpr = cpu.gpr, vmcs = vm.vmcs;
    const snap = captureState(vm, rules);
    exits(vm, 5);
    const handlers = vm.handlers.get(30);
    vm.handlers.delete(30);
    restoreState(vm, snap);
    expect(vm.cpu.gpr).toBe(gpr);
    expect(vm.vmcs).toBe(vmcs);
    expect(vm.handlers.get(30)).toBe(handlers);
    expect(vm.exits).toBe(0);
  });
});
