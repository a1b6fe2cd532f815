import { describe, expect, it } from 'vitest';
import {
  ApicBus, ApicError, ApicReg, DeliveryMode, LocalApic, Lvt, MSR_IA32_APIC_BASE, MSR_IA32_TSC_DEADLINE,
  type LocalApicOptions,
} from './apic.js';

/** A fake clock: tests move `clock.t` by hand. */
function makeClock() {
  const clock = { t: 0, now: () => clock.t };
  return clock;
}

function makeApic(extra: Partial<LocalApicOptions> = {}) {
  const clock = makeClock();
  const apic = new LocalApic({ id: 0, bsp: true, now: clock.now, ...extra });
  return { apic, clock };
}

const msr = (reg: number) => 0x800 + (reg >> 4);

/** Sets SVR[8] (software enable) with spurious vector FFH. */
function enable(apic: LocalApic): void {
  if (apic.x2apicMode) apic.wrmsr(msr(ApicReg.SVR), 0x1ff, 0);
  else apic.write(ApicReg.SVR, 4, 0x1ff);
}

function toX2apic(apic: LocalApic): void {
  expect(apic.wrmsr(MSR_IA32_APIC_BASE, 0xfee00c00 | (apic.baseLo & 0x100), 0)).toBe(true);
}

function rd(apic: LocalApic, m: number): bigint | null {
  return apic.rdmsr(m) ? (BigInt(apic.msrHi) << 32n) | BigInt(apic.msrLo) : null;
}

function bit(r: Uint32Array, v: number): boolean {
  return (r[v >>> 5] & (1 << (v & 31))) !== 0;
}

/** Sends a fixed interrupt to the APIC as a message on its bus. */
function raise(apic: LocalApic, vector: number, trigger = 0): void {
  apic.bus.deliver({
    vector, deliveryMode: DeliveryMode.FIXED, destMode: 0, trigger, level: 1, shorthand: 0,
    dest: apic.id, x2apic: false, source: null,
  });
}

describe('Local APIC state after power-up or reset (SDM 11.4.7.1)', () => {
  it('registers take their documented reset values', () => {
    const { apic } = makeApic();
    expect(apic.read(ApicReg.SVR, 4)).toBe(0xff);
    expect(apic.read(ApicReg.DFR, 4)).toBe(0xffffffff);
    expect(apic.read(ApicReg.TPR, 4)).toBe(0);
    expect(apic.read(ApicReg.LDR, 4)).toBe(0);
    for (const r of [ApicReg.LVT_TIMER, ApicReg.LVT_THERMAL, ApicReg.LVT_PMC, ApicReg.LVT_LINT0,
      ApicReg.LVT_LINT1, ApicReg.LVT_ERROR, ApicReg.LVT_CMCI]) {
      expect(apic.read(r, 4)).toBe(0x10000);
    }
    expect(apic.read(ApicReg.TIMER_INITIAL_COUNT, 4)).toBe(0);
    expect(apic.read(ApicReg.TIMER_DIVIDE, 4)).toBe(0);
  });

  it('IA32_APIC_BASE is FEE00000H with EN, and BSP on the BSP only (SDM 11.4.4)', () => {
    const { apic } = makeApic();
    expect(rd(apic, MSR_IA32_APIC_BASE)).toBe(0xfee00900n);
    const ap = new LocalApic({ id: 1, now: () => 0 });
    expect(rd(ap, MSR_IA32_APIC_BASE)).toBe(0xfee00800n);
    expect(apic.mmioBase).toBe(0xfee00000);
  });

  it('version register: version 15H, max LVT entry 6, EOI-broadcast suppression bit 24 when offered (SDM 11.4.8)', () => {
    expect(makeApic().apic.read(ApicReg.VERSION, 4)).toBe(0x00060015);
    expect(makeApic({ eoiBroadcastSuppression: true }).apic.read(ApicReg.VERSION, 4)).toBe(0x01060015);
  });
});

describe('xAPIC register access (SDM 11.4.1 "The Local APIC Block Diagram")', () => {
  it('Local APIC ID holds the ID in bits 31:24 and is read-only here (SDM 11.4.6)', () => {
    const { apic } = makeApic({ id: 0x12 });
    expect(apic.read(ApicReg.ID, 4)).toBe(0x12000000);
    apic.write(ApicReg.ID, 4, 0x34000000);
    expect(apic.read(ApicReg.ID, 4)).toBe(0x12000000);
  });

  it('byte and word reads return the bytes of the dword; bytes 4-15 of a slot read 0', () => {
    const { apic } = makeApic();
    apic.write(ApicReg.SVR, 4, 0x1a5);
    expect(apic.read(ApicReg.SVR, 1)).toBe(0xa5);
    expect(apic.read(ApicReg.SVR + 1, 1)).toBe(0x01);
    expect(apic.read(ApicReg.SVR, 2)).toBe(0x1a5);
    expect(apic.read(ApicReg.SVR + 4, 4)).toBe(0);
  });

  it('writes that are not aligned 32-bit stores are dropped', () => {
    const { apic } = makeApic();
    apic.write(ApicReg.TPR, 1, 0x40);
    apic.write(ApicReg.TPR, 2, 0x40);
    apic.write(ApicReg.TPR + 4, 4, 0x40);
    expect(apic.read(ApicReg.TPR, 4)).toBe(0);
    apic.write(ApicReg.TPR, 4, 0x40);
    expect(apic.read(ApicReg.TPR, 4)).toBe(0x40);
  });

  it('TPR keeps bits 7:0 only', () => {
    const { apic } = makeApic();
    apic.write(ApicReg.TPR, 4, 0xffffffff);
    expect(apic.read(ApicReg.TPR, 4)).toBe(0xff);
  });

  it('LDR keeps bits 31:24; DFR keeps bits 31:28 and reads 1s below (SDM 11.6.2.2)', () => {
    const { apic } = makeApic();
    apic.write(ApicReg.LDR, 4, 0xabcdef12);
    expect(apic.read(ApicReg.LDR, 4)).toBe(0xab000000);
    apic.write(ApicReg.DFR, 4, 0x00000000);
    expect(apic.read(ApicReg.DFR, 4)).toBe(0x0fffffff);
  });

  it('a reserved offset sets "Illegal Register Address" in ESR (SDM 11.5.3)', () => {
    const { apic } = makeApic();
    expect(apic.read(0x040, 4)).toBe(0);
    apic.write(ApicReg.ESR, 4, 0);
    expect(apic.read(ApicReg.ESR, 4)).toBe(ApicError.ILLEGAL_REGISTER_ADDRESS);
  });

  it('CR8 is TPR[7:4] (SDM 11.8.6 "Task Priority in IA-32e Mode")', () => {
    const { apic } = makeApic();
    apic.writeCr8(0x1b);
    expect(apic.read(ApicReg.TPR, 4)).toBe(0xb0);
    apic.write(ApicReg.TPR, 4, 0x57);
    expect(apic.readCr8()).toBe(5);
  });

  it('the MMIO page is off in x2APIC mode and when disabled (SDM 11.12.2)', () => {
    const { apic } = makeApic();
    apic.write(ApicReg.TPR, 4, 0x20);
    toX2apic(apic);
    expect(apic.mmioBase).toBe(-1);
    expect(apic.read(ApicReg.TPR, 4)).toBe(0);
  });
});

describe('Error handling (SDM 11.5.3)', () => {
  it('ESR reads the errors only after a write, and the next write clears them', () => {
    const { apic } = makeApic();
    enable(apic);
    apic.write(ApicReg.ICR_LOW, 4, 0x00004005); // fixed, vector 5: illegal
    expect(apic.read(ApicReg.ESR, 4)).toBe(0);
    apic.write(ApicReg.ESR, 4, 0);
    expect(apic.read(ApicReg.ESR, 4)).toBe(ApicError.SEND_ILLEGAL_VECTOR);
    apic.write(ApicReg.ESR, 4, 0);
    expect(apic.read(ApicReg.ESR, 4)).toBe(0);
  });

  it('an error raises the LVT error interrupt when unmasked', () => {
    const { apic } = makeApic();
    enable(apic);
    apic.write(ApicReg.LVT_ERROR, 4, 0xfe);
    apic.write(ApicReg.ICR_LOW, 4, 0x00004003);
    expect(apic.pendingVector()).toBe(0xfe);
  });

  it('a received illegal vector (0-15) is not put in IRR and sets "Received Illegal Vector"', () => {
    const { apic } = makeApic();
    enable(apic);
    raise(apic, 7);
    expect(apic.irr[0]).toBe(0);
    apic.write(ApicReg.ESR, 4, 0);
    expect(apic.read(ApicReg.ESR, 4)).toBe(ApicError.RECEIVED_ILLEGAL_VECTOR);
  });

  it('an error LVT with an illegal vector records the error without looping', () => {
    const { apic } = makeApic();
    enable(apic);
    apic.write(ApicReg.LVT_ERROR, 4, 0x02);
    apic.write(0x3f0, 4, 0);
    apic.write(ApicReg.ESR, 4, 0);
    expect(apic.read(ApicReg.ESR, 4)).toBe(ApicError.ILLEGAL_REGISTER_ADDRESS | ApicError.RECEIVED_ILLEGAL_VECTOR);
  });
});

describe('Interrupt priority and acceptance (SDM 11.8.3 "Interrupt, Task, and Processor Priority", 11.8.4)', () => {
  it('PPR is TPR when TPR[7:4] >= ISRV[7:4], else ISRV[7:4]:0 (SDM 11.8.3.1)', () => {
    const { apic } = makeApic();
    enable(apic);
    apic.write(ApicReg.TPR, 4, 0x35);
    expect(apic.read(ApicReg.PPR, 4)).toBe(0x35);
    raise(apic, 0x61);
    expect(apic.acknowledge()).toBe(0x61);
    expect(apic.read(ApicReg.PPR, 4)).toBe(0x60);
    apic.write(ApicReg.TPR, 4, 0x6a);
    expect(apic.read(ApicReg.PPR, 4)).toBe(0x6a);
  });

  it('an interrupt is presented only when its class is above PPR[7:4]', () => {
    const { apic } = makeApic();
    enable(apic);
    apic.write(ApicReg.TPR, 4, 0x30);
    raise(apic, 0x3f);
    expect(apic.pendingVector()).toBe(-1);
    raise(apic, 0x40);
    expect(apic.pendingVector()).toBe(0x40);
    apic.write(ApicReg.TPR, 4, 0x20);
    expect(apic.acknowledge()).toBe(0x40);
    expect(apic.pendingVector()).toBe(-1); // 40H in service blocks class 3
    apic.write(ApicReg.EOI, 4, 0);
    expect(apic.acknowledge()).toBe(0x3f);
  });

  it('an interrupt in service blocks its own class and lower, not higher ones', () => {
    const { apic } = makeApic();
    enable(apic);
    raise(apic, 0x45);
    expect(apic.acknowledge()).toBe(0x45);
    raise(apic, 0x41);
    expect(apic.pendingVector()).toBe(-1);
    raise(apic, 0x51);
    expect(apic.pendingVector()).toBe(0x51);
  });

  it('acknowledge moves IRR to ISR; with nothing deliverable it returns the spurious vector (SDM 11.9)', () => {
    const { apic } = makeApic();
    apic.write(ApicReg.SVR, 4, 0x1ef);
    raise(apic, 0x80);
    expect(apic.acknowledge()).toBe(0x80);
    expect(bit(apic.irr, 0x80)).toBe(false);
    expect(bit(apic.isr, 0x80)).toBe(true);
    expect(apic.acknowledge()).toBe(0xef);
    expect(apic.isr[4]).toBe(1);
  });

  it('IRR, ISR and TMR read as eight dwords at 200H, 100H, 180H; TMR follows the trigger mode', () => {
    const { apic } = makeApic();
    enable(apic);
    raise(apic, 0x21, 1);
    raise(apic, 0xa3);
    expect(apic.read(ApicReg.IRR + 0x10, 4)).toBe(1 << 1);
    expect(apic.read(ApicReg.IRR + 0x50, 4)).toBe(1 << 3);
    expect(apic.read(ApicReg.TMR + 0x10, 4)).toBe(1 << 1);
    expect(apic.read(ApicReg.TMR + 0x50, 4)).toBe(0);
    apic.acknowledge();
    expect(apic.read(ApicReg.ISR + 0x50, 4)).toBe(1 << 3);
  });

  it('EOI clears the highest ISR bit: nested interrupts end in order (SDM 11.8.5)', () => {
    const { apic } = makeApic();
    enable(apic);
    raise(apic, 0x30);
    expect(apic.acknowledge()).toBe(0x30);
    raise(apic, 0x90);
    expect(apic.acknowledge()).toBe(0x90);
    apic.write(ApicReg.EOI, 4, 0);
    expect(bit(apic.isr, 0x90)).toBe(false);
    expect(bit(apic.isr, 0x30)).toBe(true);
    apic.write(ApicReg.EOI, 4, 0);
    expect(apic.isr.every((w) => w === 0)).toBe(true);
  });

  it('APR follows figure "Arbitration Priority Register (APR)" (SDM 11.6.2.4)', () => {
    const { apic } = makeApic();
    enable(apic);
    apic.write(ApicReg.TPR, 4, 0x52);
    expect(apic.read(ApicReg.APR, 4)).toBe(0x52);
    raise(apic, 0x71);
    expect(apic.read(ApicReg.APR, 4)).toBe(0x70);
  });

  it('onEvent fires when an interrupt becomes deliverable, including after EOI and TPR drops', () => {
    let events = 0;
    const { apic } = makeApic({ onEvent: () => { events++; } });
    enable(apic);
    apic.write(ApicReg.TPR, 4, 0xf0);
    raise(apic, 0x50);
    expect(events).toBe(0);
    apic.write(ApicReg.TPR, 4, 0);
    expect(events).toBe(1);
  });
});

describe('Software enable and disable (SDM 11.4.7.2 "Local APIC State After It Has Been Software Disabled")', () => {
  it('clearing SVR[8] sets every LVT mask, and unmasking is ignored until re-enabled', () => {
    const { apic } = makeApic();
    enable(apic);
    apic.write(ApicReg.LVT_TIMER, 4, 0x40);
    apic.write(ApicReg.SVR, 4, 0xff);
    expect(apic.read(ApicReg.LVT_TIMER, 4)).toBe(0x10040);
    apic.write(ApicReg.LVT_TIMER, 4, 0x41);
    expect(apic.read(ApicReg.LVT_TIMER, 4)).toBe(0x10041);
    enable(apic);
    apic.write(ApicReg.LVT_TIMER, 4, 0x41);
    expect(apic.read(ApicReg.LVT_TIMER, 4)).toBe(0x41);
  });

  it('fixed interrupts are dropped while software-disabled; NMI, INIT and SIPI are still answered', () => {
    const bus = new ApicBus();
    const a = new LocalApic({ id: 0, now: () => 0, bus });
    const b = new LocalApic({ id: 1, now: () => 0, bus });
    enable(a);
    b.write(ApicReg.SVR, 4, 0xff);
    a.write(ApicReg.ICR_HIGH, 4, 0x01000000);
    a.write(ApicReg.ICR_LOW, 4, 0x00004050);
    expect(b.irr.every((w) => w === 0)).toBe(true);
    a.write(ApicReg.ICR_LOW, 4, 0x00004400); // NMI
    a.write(ApicReg.ICR_LOW, 4, 0x00004500); // INIT
    a.write(ApicReg.ICR_LOW, 4, 0x00004608); // SIPI, vector 08H
    expect(b.takeNmi()).toBe(true);
    expect(b.takeInit()).toBe(true);
    expect(b.takeSipi()).toBe(0x08);
    expect(b.takeSipi()).toBe(-1);
  });

  it('SVR keeps bits 8:0, and bit 12 only when EOI-broadcast suppression is offered (SDM 11.9)', () => {
    const { apic } = makeApic();
    apic.write(ApicReg.SVR, 4, 0xffffffff);
    expect(apic.read(ApicReg.SVR, 4)).toBe(0x1ff);
    const s = makeApic({ eoiBroadcastSuppression: true }).apic;
    s.write(ApicReg.SVR, 4, 0xffffffff);
    expect(s.read(ApicReg.SVR, 4)).toBe(0x11ff);
  });
});

describe('EOI broadcast to I/O APICs (SDM 11.8.5 "Signaling Interrupt Servicing Completion")', () => {
  function setup(suppress: boolean) {
    const bus = new ApicBus();
    const eois: number[] = [];
    bus.attachEoiListener({ eoi: (v) => eois.push(v) });
    const apic = new LocalApic({ id: 0, now: () => 0, bus, eoiBroadcastSuppression: true });
    apic.write(ApicReg.SVR, 4, suppress ? 0x11ff : 0x1ff);
    return { apic, eois };
  }

  it('a level-triggered interrupt is broadcast at EOI, an edge one is not', () => {
    const { apic, eois } = setup(false);
    raise(apic, 0x60, 1);
    raise(apic, 0x70, 0);
    apic.acknowledge();
    apic.write(ApicReg.EOI, 4, 0);
    apic.acknowledge();
    apic.write(ApicReg.EOI, 4, 0);
    expect(eois).toEqual([0x60]);
  });

  it('SVR bit 12 suppresses the broadcast', () => {
    const { apic, eois } = setup(true);
    raise(apic, 0x60, 1);
    apic.acknowledge();
    apic.write(ApicReg.EOI, 4, 0);
    expect(eois).toEqual([]);
    expect(apic.isr[3]).toBe(0);
  });
});

describe('Local vector table inputs (SDM 11.5.1 "Local Vector Table")', () => {
  it('LVT entries keep their defined bits only (figure "Local Vector Table (LVT)")', () => {
    const { apic } = makeApic();
    enable(apic);
    apic.write(ApicReg.LVT_TIMER, 4, 0xffffffff);
    expect(apic.read(ApicReg.LVT_TIMER, 4)).toBe(0x000700ff);
    apic.write(ApicReg.LVT_LINT0, 4, 0xffffffff);
    expect(apic.read(ApicReg.LVT_LINT0, 4)).toBe(0x0001a7ff);
    apic.write(ApicReg.LVT_ERROR, 4, 0xffffffff);
    expect(apic.read(ApicReg.LVT_ERROR, 4)).toBe(0x000100ff);
    apic.write(ApicReg.LVT_THERMAL, 4, 0xffffffff);
    expect(apic.read(ApicReg.LVT_THERMAL, 4)).toBe(0x000107ff);
  });

  it('LINT1 in NMI mode latches an NMI on the rising edge', () => {
    const { apic } = makeApic();
    enable(apic);
    apic.write(ApicReg.LVT_LINT1, 4, 0x400);
    apic.setLint(1, true);
    apic.setLint(1, true);
    expect(apic.takeNmi()).toBe(true);
    expect(apic.hasNmi).toBe(false);
  });

  it('LINT0 in ExtINT mode is INTR from the 8259 while asserted and unmasked', () => {
    const { apic } = makeApic();
    enable(apic);
    apic.setLint(0, true);
    expect(apic.hasExtInt).toBe(false); // masked at reset
    apic.write(ApicReg.LVT_LINT0, 4, 0x700);
    expect(apic.hasExtInt).toBe(true);
    apic.setLint(0, false);
    expect(apic.hasExtInt).toBe(false);
  });

  it('with the APIC globally disabled LINT0 is INTR and LINT1 is NMI (SDM 11.4.3)', () => {
    const { apic } = makeApic();
    expect(apic.wrmsr(MSR_IA32_APIC_BASE, 0xfee00000, 0)).toBe(true);
    apic.setLint(0, true);
    apic.setLint(1, true);
    expect(apic.hasExtInt).toBe(true);
    expect(apic.takeNmi()).toBe(true);
  });

  it('level-triggered fixed LINT0 sets remote IRR, and EOI clears it and re-delivers while asserted', () => {
    const { apic } = makeApic();
    enable(apic);
    apic.write(ApicReg.LVT_LINT0, 4, 0x8033); // fixed, level, vector 33H
    apic.setLint(0, true);
    expect(apic.read(ApicReg.LVT_LINT0, 4) & 0x4000).toBe(0x4000);
    expect(apic.acknowledge()).toBe(0x33);
    expect(bit(apic.tmr, 0x33)).toBe(true);
    apic.write(ApicReg.EOI, 4, 0);
    expect(apic.pendingVector()).toBe(0x33);
    expect(apic.acknowledge()).toBe(0x33);
    apic.setLint(0, false);
    apic.write(ApicReg.EOI, 4, 0);
    expect(apic.read(ApicReg.LVT_LINT0, 4) & 0x4000).toBe(0);
    expect(apic.pendingVector()).toBe(-1);
  });

  it('thermal, PMC and CMCI events deliver through their entries; a masked entry delivers nothing', () => {
    const { apic } = makeApic();
    enable(apic);
    apic.signalLvt(Lvt.PMC);
    expect(apic.pendingVector()).toBe(-1);
    apic.write(ApicReg.LVT_PMC, 4, 0x400);
    apic.signalLvt(Lvt.PMC);
    expect(apic.takeNmi()).toBe(true);
    apic.write(ApicReg.LVT_CMCI, 4, 0xc1);
    apic.signalLvt(Lvt.CMCI);
    expect(apic.pendingVector()).toBe(0xc1);
  });
});

describe('APIC timer (SDM 11.5.4 "APIC Timer")', () => {
  // The timer input clock is 10 ns per tick before the divider (the default).
  it('one-shot: the current count falls with time, fires once at zero and stays at zero', () => {
    const { apic, clock } = makeApic();
    enable(apic);
    apic.write(ApicReg.TIMER_DIVIDE, 4, 0xb); // divide by 1
    apic.write(ApicReg.LVT_TIMER, 4, 0x40);
    apic.write(ApicReg.TIMER_INITIAL_COUNT, 4, 100);
    expect(apic.nextDeadline()).toBe(1000);
    clock.t = 255;
    expect(apic.read(ApicReg.TIMER_CURRENT_COUNT, 4)).toBe(75);
    apic.tick();
    expect(apic.pendingVector()).toBe(-1);
    clock.t = 1000;
    apic.tick();
    expect(apic.pendingVector()).toBe(0x40);
    expect(apic.read(ApicReg.TIMER_CURRENT_COUNT, 4)).toBe(0);
    expect(apic.nextDeadline()).toBe(Infinity);
    expect(apic.read(ApicReg.TIMER_INITIAL_COUNT, 4)).toBe(100);
  });

  it('divide configuration: bits 3,1:0 select 2, 4, ... 128, and 111b divides by 1 (figure "Divide Configuration Register")', () => {
    const divisors = [[0x0, 2], [0x1, 4], [0x2, 8], [0x3, 16], [0x8, 32], [0x9, 64], [0xa, 128], [0xb, 1]];
    for (const [code, div] of divisors) {
      const { apic } = makeApic();
      apic.write(ApicReg.TIMER_DIVIDE, 4, code!);
      apic.write(ApicReg.TIMER_INITIAL_COUNT, 4, 5);
      expect(apic.nextDeadline()).toBe(5 * 10 * div!);
    }
  });

  it('periodic: the count reloads and the interrupt repeats every period', () => {
    const { apic, clock } = makeApic();
    enable(apic);
    apic.write(ApicReg.TIMER_DIVIDE, 4, 0xb);
    apic.write(ApicReg.LVT_TIMER, 4, 0x20041);
    apic.write(ApicReg.TIMER_INITIAL_COUNT, 4, 10); // period 100 ns
    clock.t = 100;
    apic.tick();
    expect(apic.acknowledge()).toBe(0x41);
    apic.write(ApicReg.EOI, 4, 0);
    expect(apic.nextDeadline()).toBe(200);
    clock.t = 130;
    expect(apic.read(ApicReg.TIMER_CURRENT_COUNT, 4)).toBe(7);
    clock.t = 200;
    apic.tick();
    expect(apic.pendingVector()).toBe(0x41);
    expect(apic.nextDeadline()).toBe(300);
  });

  it('a late tick in periodic mode schedules the next period boundary', () => {
    const { apic, clock } = makeApic();
    apic.write(ApicReg.TIMER_DIVIDE, 4, 0xb);
    apic.write(ApicReg.LVT_TIMER, 4, 0x20041);
    apic.write(ApicReg.TIMER_INITIAL_COUNT, 4, 10);
    clock.t = 345;
    apic.tick();
    expect(apic.nextDeadline()).toBe(400);
  });

  it('a masked timer keeps counting but raises no interrupt', () => {
    const { apic, clock } = makeApic();
    enable(apic);
    apic.write(ApicReg.LVT_TIMER, 4, 0x10040);
    apic.write(ApicReg.TIMER_INITIAL_COUNT, 4, 4); // 4 ticks * 20 ns
    clock.t = 40;
    expect(apic.read(ApicReg.TIMER_CURRENT_COUNT, 4)).toBe(2);
    clock.t = 80;
    apic.tick();
    expect(apic.pendingVector()).toBe(-1);
    expect(apic.read(ApicReg.TIMER_CURRENT_COUNT, 4)).toBe(0);
  });

  it('writing 0 to the initial count stops the timer', () => {
    const { apic, clock } = makeApic();
    apic.write(ApicReg.TIMER_INITIAL_COUNT, 4, 50);
    clock.t = 100;
    apic.write(ApicReg.TIMER_INITIAL_COUNT, 4, 0);
    expect(apic.nextDeadline()).toBe(Infinity);
    expect(apic.read(ApicReg.TIMER_CURRENT_COUNT, 4)).toBe(0);
  });

  it('a divide change while counting keeps the count and continues at the new rate', () => {
    const { apic, clock } = makeApic();
    apic.write(ApicReg.TIMER_DIVIDE, 4, 0xb); // 10 ns per count
    apic.write(ApicReg.TIMER_INITIAL_COUNT, 4, 100);
    clock.t = 400;
    apic.write(ApicReg.TIMER_DIVIDE, 4, 0x0); // 20 ns per count
    expect(apic.read(ApicReg.TIMER_CURRENT_COUNT, 4)).toBe(60);
    expect(apic.nextDeadline()).toBe(400 + 60 * 20);
  });

  it('onDeadline reports each change of the deadline', () => {
    const seen: number[] = [];
    const { apic } = makeApic({ onDeadline: (ns) => seen.push(ns) });
    apic.write(ApicReg.TIMER_DIVIDE, 4, 0xb);
    apic.write(ApicReg.TIMER_INITIAL_COUNT, 4, 7);
    apic.write(ApicReg.TIMER_INITIAL_COUNT, 4, 0);
    expect(seen).toEqual([70, Infinity]);
  });

  it('TSC-deadline mode (SDM 11.5.4.1): initial count ignored, current count 0, fires at TSC >= deadline and clears the MSR', () => {
    const { apic, clock } = makeApic();
    enable(apic);
    apic.write(ApicReg.LVT_TIMER, 4, 0x40050);
    apic.write(ApicReg.TIMER_INITIAL_COUNT, 4, 1000);
    expect(apic.read(ApicReg.TIMER_INITIAL_COUNT, 4)).toBe(0);
    expect(apic.read(ApicReg.TIMER_CURRENT_COUNT, 4)).toBe(0);
    expect(apic.wrmsr(MSR_IA32_TSC_DEADLINE, 5000, 0)).toBe(true);
    expect(rd(apic, MSR_IA32_TSC_DEADLINE)).toBe(5000n);
    expect(apic.nextDeadline()).toBe(5000);
    clock.t = 4999;
    apic.tick();
    expect(apic.pendingVector()).toBe(-1);
    clock.t = 5000;
    apic.tick();
    expect(apic.pendingVector()).toBe(0x50);
    expect(rd(apic, MSR_IA32_TSC_DEADLINE)).toBe(0n);
    expect(apic.nextDeadline()).toBe(Infinity);
  });

  it('TSC-deadline: a deadline already passed fires at once; writing 0 disarms', () => {
    const { apic, clock } = makeApic();
    enable(apic);
    apic.write(ApicReg.LVT_TIMER, 4, 0x40050);
    clock.t = 900;
    apic.wrmsr(MSR_IA32_TSC_DEADLINE, 100, 0);
    expect(apic.pendingVector()).toBe(0x50);
    apic.wrmsr(MSR_IA32_TSC_DEADLINE, 2000, 0);
    apic.wrmsr(MSR_IA32_TSC_DEADLINE, 0, 0);
    expect(apic.nextDeadline()).toBe(Infinity);
  });

  it('IA32_TSC_DEADLINE reads 0 and ignores writes outside TSC-deadline mode', () => {
    const { apic } = makeApic();
    expect(apic.wrmsr(MSR_IA32_TSC_DEADLINE, 5000, 1)).toBe(true);
    expect(rd(apic, MSR_IA32_TSC_DEADLINE)).toBe(0n);
    expect(apic.nextDeadline()).toBe(Infinity);
  });

  it('a timer-mode change through the LVT disarms the timer', () => {
    const { apic } = makeApic();
    apic.write(ApicReg.LVT_TIMER, 4, 0x40050);
    apic.wrmsr(MSR_IA32_TSC_DEADLINE, 5000, 0);
    apic.write(ApicReg.LVT_TIMER, 4, 0x50);
    expect(apic.nextDeadline()).toBe(Infinity);
    apic.write(ApicReg.TIMER_INITIAL_COUNT, 4, 10);
    apic.write(ApicReg.LVT_TIMER, 4, 0x20050);
    expect(apic.nextDeadline()).toBe(Infinity);
    expect(apic.read(ApicReg.TIMER_CURRENT_COUNT, 4)).toBe(0);
  });
});

describe('IA32_APIC_BASE (SDM 11.4.4, 11.12.5 "x2APIC State Transitions")', () => {
  const XAPIC = 0xfee00800, X2APIC = 0xfee00c00, DISABLED = 0xfee00000;

  it('xAPIC → x2APIC → disabled → xAPIC are legal', () => {
    const { apic } = makeApic();
    expect(apic.wrmsr(MSR_IA32_APIC_BASE, X2APIC, 0)).toBe(true);
    expect(apic.x2apicMode).toBe(true);
    expect(apic.wrmsr(MSR_IA32_APIC_BASE, DISABLED, 0)).toBe(true);
    expect(apic.hardwareEnabled).toBe(false);
    expect(apic.wrmsr(MSR_IA32_APIC_BASE, XAPIC, 0)).toBe(true);
    expect(apic.mmioBase).toBe(0xfee00000);
  });

  it('x2APIC → xAPIC raises #GP', () => {
    const { apic } = makeApic();
    toX2apic(apic);
    expect(apic.wrmsr(MSR_IA32_APIC_BASE, XAPIC, 0)).toBe(false);
    expect(apic.x2apicMode).toBe(true);
  });

  it('disabled → x2APIC raises #GP', () => {
    const { apic } = makeApic();
    apic.wrmsr(MSR_IA32_APIC_BASE, DISABLED, 0);
    expect(apic.wrmsr(MSR_IA32_APIC_BASE, X2APIC, 0)).toBe(false);
    expect(apic.hardwareEnabled).toBe(false);
  });

  it('EN=0 with EXTD=1 is invalid: #GP', () => {
    const { apic } = makeApic();
    expect(apic.wrmsr(MSR_IA32_APIC_BASE, 0xfee00400, 0)).toBe(false);
  });

  it('reserved bits (7:0, 9, MAXPHYADDR and above) raise #GP; BSP is read-only', () => {
    const { apic } = makeApic({ maxPhysAddr: 36 });
    expect(apic.wrmsr(MSR_IA32_APIC_BASE, XAPIC | 0x200, 0)).toBe(false);
    expect(apic.wrmsr(MSR_IA32_APIC_BASE, XAPIC | 1, 0)).toBe(false);
    expect(apic.wrmsr(MSR_IA32_APIC_BASE, XAPIC, 0x10)).toBe(false);
    expect(apic.wrmsr(MSR_IA32_APIC_BASE, XAPIC, 0xf)).toBe(true);
    expect(rd(apic, MSR_IA32_APIC_BASE)).toBe(0xffee00900n); // BSP kept
  });

  it('moving the base moves the MMIO page', () => {
    const { apic } = makeApic();
    apic.wrmsr(MSR_IA32_APIC_BASE, 0xfec01800, 0);
    expect(apic.mmioBase).toBe(0xfec01000);
  });

  it('re-enabling after the global enable was cleared finds the reset state (SDM 11.4.3)', () => {
    const { apic } = makeApic();
    enable(apic);
    apic.write(ApicReg.TPR, 4, 0x40);
    apic.write(ApicReg.LVT_TIMER, 4, 0x33);
    raise(apic, 0x90);
    apic.wrmsr(MSR_IA32_APIC_BASE, DISABLED, 0);
    apic.wrmsr(MSR_IA32_APIC_BASE, XAPIC, 0);
    expect(apic.read(ApicReg.TPR, 4)).toBe(0);
    expect(apic.read(ApicReg.SVR, 4)).toBe(0xff);
    expect(apic.read(ApicReg.LVT_TIMER, 4)).toBe(0x10000);
    expect(apic.pendingVector()).toBe(-1);
  });

  it('software disable (SVR[8]) leaves IA32_APIC_BASE alone', () => {
    const { apic } = makeApic();
    apic.write(ApicReg.SVR, 4, 0xff);
    expect(rd(apic, MSR_IA32_APIC_BASE)).toBe(0xfee00900n);
    expect(apic.softwareEnabled).toBe(false);
    expect(apic.hardwareEnabled).toBe(true);
  });

  it('INIT keeps x2APIC mode and the ID and resets the other registers (SDM 11.12.5.1)', () => {
    const { apic } = makeApic({ id: 0x123 });
    toX2apic(apic);
    enable(apic);
    apic.wrmsr(msr(ApicReg.TPR), 0x20, 0);
    apic.initReset();
    expect(apic.x2apicMode).toBe(true);
    expect(rd(apic, msr(ApicReg.ID))).toBe(0x123n);
    expect(rd(apic, msr(ApicReg.TPR))).toBe(0n);
    expect(rd(apic, msr(ApicReg.SVR))).toBe(0xffn);
  });

  it('RESET returns to xAPIC mode at the default base', () => {
    const { apic } = makeApic();
    toX2apic(apic);
    apic.reset();
    expect(rd(apic, MSR_IA32_APIC_BASE)).toBe(0xfee00900n);
  });
});

describe('x2APIC MSR interface (SDM 11.12.1.2 "x2APIC Register Address Space")', () => {
  it('RDMSR and WRMSR of 800H-8FFH raise #GP outside x2APIC mode (SDM 11.12.2)', () => {
    const { apic } = makeApic();
    expect(apic.rdmsr(msr(ApicReg.TPR))).toBe(false);
    expect(apic.wrmsr(msr(ApicReg.TPR), 0, 0)).toBe(false);
  });

  it('the ID is the 32-bit x2APIC ID and the LDR is derived from it (SDM 11.12.10.2)', () => {
    const { apic } = makeApic({ id: 0x25 });
    toX2apic(apic);
    expect(rd(apic, msr(ApicReg.ID))).toBe(0x25n);
    expect(rd(apic, msr(ApicReg.LDR))).toBe(0x00020020n); // cluster 2, bit 5
  });

  it('writes to read-only registers raise #GP', () => {
    const { apic } = makeApic();
    toX2apic(apic);
    for (const r of [ApicReg.ID, ApicReg.VERSION, ApicReg.PPR, ApicReg.LDR, ApicReg.ISR, ApicReg.IRR,
      ApicReg.TIMER_CURRENT_COUNT]) {
      expect(apic.wrmsr(msr(r), 0, 0)).toBe(false);
    }
  });

  it('reads of write-only EOI and SELF IPI raise #GP', () => {
    const { apic } = makeApic();
    toX2apic(apic);
    expect(apic.rdmsr(msr(ApicReg.EOI))).toBe(false);
    expect(apic.rdmsr(msr(ApicReg.SELF_IPI))).toBe(false);
  });

  it('APR, DFR (80EH) and ICR high (831H) do not exist: #GP', () => {
    const { apic } = makeApic();
    toX2apic(apic);
    for (const m of [0x809, 0x80e, 0x831, 0x800, 0x8ff]) {
      expect(apic.rdmsr(m)).toBe(false);
      expect(apic.wrmsr(m, 0, 0)).toBe(false);
    }
  });

  it('non-zero EOI and ESR writes raise #GP', () => {
    const { apic } = makeApic();
    toX2apic(apic);
    expect(apic.wrmsr(msr(ApicReg.EOI), 1, 0)).toBe(false);
    expect(apic.wrmsr(msr(ApicReg.ESR), 1, 0)).toBe(false);
    expect(apic.wrmsr(msr(ApicReg.EOI), 0, 0)).toBe(true);
    expect(apic.wrmsr(msr(ApicReg.ESR), 0, 0)).toBe(true);
  });

  it('reserved bits set raise #GP (SDM 11.12.1.3 "Reserved Bit Checking"), including bits 63:32', () => {
    const { apic } = makeApic();
    toX2apic(apic);
    expect(apic.wrmsr(msr(ApicReg.TPR), 0x100, 0)).toBe(false);
    expect(apic.wrmsr(msr(ApicReg.TPR), 0x10, 1)).toBe(false);
    expect(apic.wrmsr(msr(ApicReg.SVR), 0x3ff, 0)).toBe(false); // bit 9: focus checking not offered
    expect(apic.wrmsr(msr(ApicReg.LVT_TIMER), 0x80000, 0)).toBe(false);
    expect(apic.wrmsr(msr(ApicReg.TIMER_DIVIDE), 0x4, 0)).toBe(false);
    expect(apic.wrmsr(msr(ApicReg.SELF_IPI), 0x100, 0)).toBe(false);
    expect(apic.wrmsr(msr(ApicReg.ICR_LOW), 0x1000, 0)).toBe(false); // no delivery status in x2APIC
    expect(apic.wrmsr(msr(ApicReg.TPR), 0x10, 0)).toBe(true);
    expect(rd(apic, msr(ApicReg.TPR))).toBe(0x10n);
  });

  it('ICR is one 64-bit MSR (830H) with a 32-bit destination', () => {
    const bus = new ApicBus();
    const a = new LocalApic({ id: 0, now: () => 0, bus, bsp: true });
    const b = new LocalApic({ id: 0x1234, now: () => 0, bus });
    for (const x of [a, b]) { toX2apic(x); enable(x); }
    expect(a.wrmsr(msr(ApicReg.ICR_LOW), 0x4077, 0x1234)).toBe(true);
    expect(rd(a, msr(ApicReg.ICR_LOW))).toBe(0x0000123400004077n);
    expect(b.pendingVector()).toBe(0x77);
  });

  it('SELF IPI (83FH) sends a fixed interrupt to this APIC (SDM 11.12.11)', () => {
    const { apic } = makeApic();
    toX2apic(apic);
    enable(apic);
    expect(apic.wrmsr(msr(ApicReg.SELF_IPI), 0x99, 0)).toBe(true);
    expect(apic.pendingVector()).toBe(0x99);
    expect(bit(apic.tmr, 0x99)).toBe(false);
  });

  it('IA32_APIC_BASE, IA32_TSC_DEADLINE and 800H-8FFH belong to the APIC', () => {
    expect([0x1b, 0x6e0, 0x800, 0x8ff, 0x900, 0x10].map(LocalApic.handlesMsr)).toEqual([true, true, true, true, false, false]);
  });
});

describe('Interprocessor interrupts (SDM 11.6 "Issuing Interprocessor Interrupts")', () => {
  function system(n: number) {
    const bus = new ApicBus();
    const apics = Array.from({ length: n }, (_, i) => new LocalApic({ id: i, now: () => 0, bus, bsp: i === 0 }));
    apics.forEach(enable);
    return { bus, apics };
  }
  const send = (a: LocalApic, high: number, low: number) => {
    a.write(ApicReg.ICR_HIGH, 4, high);
    a.write(ApicReg.ICR_LOW, 4, low);
  };
  const pending = (apics: LocalApic[]) => apics.map((a) => a.pendingVector());

  it('fixed IPI in physical mode reaches the APIC with that ID; delivery status reads idle (SDM 11.6.1)', () => {
    const { apics } = system(3);
    send(apics[0]!, 0x02000000, 0x00004051);
    expect(pending(apics)).toEqual([-1, -1, 0x51]);
    expect(apics[0]!.read(ApicReg.ICR_LOW, 4)).toBe(0x00004051);
    expect(apics[0]!.read(ApicReg.ICR_HIGH, 4)).toBe(0x02000000);
  });

  it('physical destination FFH is a broadcast (SDM 11.6.2.1)', () => {
    const { apics } = system(3);
    send(apics[1]!, 0xff000000, 0x00004052);
    expect(pending(apics)).toEqual([0x52, 0x52, 0x52]);
  });

  it('shorthands: self, all including self, all excluding self (SDM 11.6.1)', () => {
    let s = system(3);
    send(s.apics[1]!, 0, 0x00044060);
    expect(pending(s.apics)).toEqual([-1, 0x60, -1]);
    s = system(3);
    send(s.apics[1]!, 0, 0x00084061);
    expect(pending(s.apics)).toEqual([0x61, 0x61, 0x61]);
    s = system(3);
    send(s.apics[1]!, 0x01000000, 0x000c4062); // destination field ignored
    expect(pending(s.apics)).toEqual([0x62, -1, 0x62]);
  });

  it('logical flat model: the MDA is a bit mask over LDR[31:24] (SDM 11.6.2.2)', () => {
    const { apics } = system(4);
    apics.forEach((a, i) => a.write(ApicReg.LDR, 4, (1 << i) << 24));
    send(apics[0]!, 0x0a000000, 0x00004870); // logical, MDA 1010b
    expect(pending(apics)).toEqual([-1, 0x70, -1, 0x70]);
  });

  it('logical cluster model: MDA[7:4] selects the cluster, MDA[3:0] the members (SDM 11.6.2.2)', () => {
    const { apics } = system(4);
    const ldr = [0x11, 0x12, 0x21, 0x22];
    apics.forEach((a, i) => { a.write(ApicReg.DFR, 4, 0x0fffffff); a.write(ApicReg.LDR, 4, ldr[i]! << 24); });
    send(apics[0]!, 0x23000000, 0x00004871);
    expect(pending(apics)).toEqual([-1, -1, 0x71, 0x71]);
    send(apics[0]!, 0xff000000, 0x00004872); // all clusters
    expect(pending(apics)).toEqual([0x72, 0x72, 0x72, 0x72]);
  });

  it('logical x2APIC: cluster in bits 31:16, member bits in 15:0 (SDM 11.12.10.2)', () => {
    const bus = new ApicBus();
    const ids = [0x00, 0x01, 0x10, 0x11];
    const apics = ids.map((id) => new LocalApic({ id, now: () => 0, bus }));
    apics.forEach((a) => { toX2apic(a); enable(a); });
    apics[0]!.wrmsr(msr(ApicReg.ICR_LOW), 0x4873, 0x00010003);
    expect(pending(apics)).toEqual([-1, -1, 0x73, 0x73]);
    apics[0]!.wrmsr(msr(ApicReg.ICR_LOW), 0x4074, 0xffffffff); // physical broadcast
    expect(pending(apics)).toEqual([0x74, 0x74, 0x74, 0x74]);
  });

  it('lowest priority delivers to one target, the one with the lowest arbitration priority (SDM 11.6.2.4)', () => {
    const { apics } = system(3);
    apics.forEach((a, i) => a.write(ApicReg.LDR, 4, (1 << i) << 24));
    apics[0]!.write(ApicReg.TPR, 4, 0x50);
    apics[1]!.write(ApicReg.TPR, 4, 0x20);
    apics[2]!.write(ApicReg.TPR, 4, 0x30);
    send(apics[0]!, 0x07000000, 0x00004961);
    expect(pending(apics)).toEqual([-1, 0x61, -1]);
  });

  it('NMI, INIT, INIT level de-assert and start-up IPIs', () => {
    const { apics } = system(2);
    send(apics[0]!, 0x01000000, 0x00004400);
    expect(apics[1]!.hasNmi).toBe(true);
    send(apics[0]!, 0x01000000, 0x00008500); // INIT level de-assert: no effect
    expect(apics[1]!.takeInit()).toBe(false);
    send(apics[0]!, 0x01000000, 0x00004500);
    send(apics[0]!, 0x01000000, 0x0000469a);
    expect(apics[1]!.takeInit()).toBe(true);
    expect(apics[1]!.takeSipi()).toBe(0x9a);
    expect(apics[0]!.hasInit).toBe(false);
  });

  it('the INIT-SIPI-SIPI start-up sequence keeps a SIPI that arrived before INIT was performed (SDM 11.4.7.3)', () => {
    const { apics } = system(2);
    send(apics[0]!, 0x01000000, 0x000c4500); // INIT to all excluding self
    send(apics[0]!, 0x01000000, 0x000c4610);
    const ap = apics[1]!;
    expect(ap.takeInit()).toBe(true);
    ap.initReset();
    expect(ap.takeSipi()).toBe(0x10);
    expect(ap.read(ApicReg.SVR, 4)).toBe(0xff);
  });

  it('an APIC whose global enable is clear takes no messages (SDM 11.4.3)', () => {
    const { apics } = system(2);
    apics[1]!.wrmsr(MSR_IA32_APIC_BASE, 0xfee00000, 0);
    send(apics[0]!, 0xff000000, 0x00004400);
    expect(apics[1]!.hasNmi).toBe(false);
    expect(apics[0]!.hasNmi).toBe(true);
  });

  it('an ICR write with reserved delivery mode 011b sends nothing', () => {
    const { apics } = system(2);
    send(apics[0]!, 0x01000000, 0x00004340);
    expect(pending(apics)).toEqual([-1, -1]);
  });
});
