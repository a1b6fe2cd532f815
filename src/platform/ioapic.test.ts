import { describe, expect, it } from 'vitest';
import { ApicBus, ApicReg, LocalApic } from './apic.js';
import { IoApic, IoApicOffset, IoApicReg } from './ioapic.js';

/** An I/O APIC and `n` software-enabled local APICs (IDs 0..n-1) on one bus. */
function system(n = 2) {
  const bus = new ApicBus();
  const apics = Array.from({ length: n }, (_, id) => new LocalApic({ id, now: () => 0, bus, bsp: id === 0 }));
  for (const a of apics) a.write(ApicReg.SVR, 4, 0x1ff);
  const io = new IoApic(bus, 2);
  return { bus, apics, io };
}

function readReg(io: IoApic, index: number): number {
  io.write(IoApicOffset.IOREGSEL, 4, index);
  return io.read(IoApicOffset.IOWIN, 4);
}

function writeReg(io: IoApic, index: number, value: number): void {
  io.write(IoApicOffset.IOREGSEL, 4, index);
  io.write(IoApicOffset.IOWIN, 4, value);
}

/** Programs redirection entry `pin` (82093AA 3.2.4 "IOREDTBL[23:0]"). */
function route(io: IoApic, pin: number, low: number, dest = 0): void {
  writeReg(io, IoApicReg.REDIRECTION_TABLE + 2 * pin + 1, dest << 24);
  writeReg(io, IoApicReg.REDIRECTION_TABLE + 2 * pin, low);
}

const LEVEL = 1 << 15, MASK = 1 << 16, REMOTE_IRR = 1 << 14, LOGICAL = 1 << 11;

/** The processor takes the interrupt and its handler writes EOI. */
function serviceAndEoi(apic: LocalApic): number {
  const v = apic.acknowledge();
  apic.write(ApicReg.EOI, 4, 0);
  return v;
}

describe('I/O APIC registers (82093AA 3.2 "I/O APIC Registers")', () => {
  it('IOAPICVER reads 00170011H: version 11H, 24 redirection entries (3.2.2)', () => {
    const { io } = system();
    expect(readReg(io, IoApicReg.VERSION)).toBe(0x00170011);
    writeReg(io, IoApicReg.VERSION, 0);
    expect(readReg(io, IoApicReg.VERSION)).toBe(0x00170011);
  });

  it('IOAPICID holds the ID in bits 27:24; IOAPICARB is loaded from it (3.2.1, 3.2.3)', () => {
    const { io } = system();
    expect(readReg(io, IoApicReg.ID)).toBe(0x02000000);
    writeReg(io, IoApicReg.ID, 0xf5ffffff);
    expect(readReg(io, IoApicReg.ID)).toBe(0x05000000);
    expect(readReg(io, IoApicReg.ARBITRATION)).toBe(0x05000000);
    writeReg(io, IoApicReg.ARBITRATION, 0);
    expect(readReg(io, IoApicReg.ARBITRATION)).toBe(0x05000000);
  });

  it('IOREGSEL keeps bits 7:0 and reads back; other offsets read 0', () => {
    const { io } = system();
    io.write(IoApicOffset.IOREGSEL, 1, 0x1234);
    expect(io.read(IoApicOffset.IOREGSEL, 4)).toBe(0x34);
    expect(io.read(0x20, 4)).toBe(0);
  });

  it('redirection entries are masked after reset (3.2.4)', () => {
    const { io } = system();
    for (let pin = 0; pin < 24; pin++) {
      expect(readReg(io, 0x10 + 2 * pin)).toBe(MASK);
      expect(readReg(io, 0x11 + 2 * pin)).toBe(0);
    }
    expect(readReg(io, 0x40)).toBe(0); // past entry 23
  });

  it('a redirection entry keeps its writable bits; delivery status and remote IRR are read-only (3.2.4)', () => {
    const { io } = system();
    writeReg(io, 0x12, 0xffffffff);
    writeReg(io, 0x13, 0xffffffff);
    expect(readReg(io, 0x12)).toBe(0x0001afff);
    expect(readReg(io, 0x13)).toBe(0xff000000);
  });

  it('byte reads of IOWIN return the low bytes of the selected register', () => {
    const { io } = system();
    io.write(IoApicOffset.IOREGSEL, 4, IoApicReg.VERSION);
    expect(io.read(IoApicOffset.IOWIN, 1)).toBe(0x11);
    expect(io.read(IoApicOffset.IOWIN, 2)).toBe(0x0011);
  });
});

describe('Edge-triggered inputs (82093AA 3.2.4, trigger mode 0)', () => {
  it('the rising edge sends one interrupt; holding the input does not repeat it', () => {
    const { apics, io } = system();
    route(io, 4, 0x34, 1);
    io.setIrq(4, true);
    expect(apics[1]!.pendingVector()).toBe(0x34);
    expect(serviceAndEoi(apics[1]!)).toBe(0x34);
    io.setIrq(4, true);
    expect(apics[1]!.pendingVector()).toBe(-1);
    io.setIrq(4, false);
    io.setIrq(4, true);
    expect(apics[1]!.pendingVector()).toBe(0x34);
    expect(apics[0]!.pendingVector()).toBe(-1);
  });

  it('an edge on a masked input is lost, and unmasking does not recover it', () => {
    const { apics, io } = system();
    route(io, 1, MASK | 0x31, 0);
    io.setIrq(1, true);
    route(io, 1, 0x31, 0);
    expect(apics[0]!.pendingVector()).toBe(-1);
  });

  it('the local APIC records an edge interrupt with TMR clear, so its EOI is not broadcast', () => {
    const { apics, io, bus } = system();
    const eois: number[] = [];
    bus.attachEoiListener({ eoi: (v) => eois.push(v) });
    route(io, 2, 0x42, 0);
    io.setIrq(2, true);
    expect(serviceAndEoi(apics[0]!)).toBe(0x42);
    expect(eois).toEqual([]);
  });
});

describe('Level-triggered inputs and remote IRR (82093AA 3.2.4; SDM 11.8.5)', () => {
  it('assert → remote IRR set, TMR set → EOI clears remote IRR; deasserted input sends nothing more', () => {
    const { apics, io } = system();
    route(io, 9, LEVEL | 0x59, 0);
    io.setIrq(9, true);
    expect(io.remoteIrr(9)).toBe(true);
    expect(readReg(io, 0x10 + 18) & REMOTE_IRR).toBe(REMOTE_IRR);
    const apic = apics[0]!;
    expect(apic.acknowledge()).toBe(0x59);
    expect((apic.tmr[0x59 >>> 5]! >>> (0x59 & 31)) & 1).toBe(1);
    io.setIrq(9, false); // the device was serviced
    apic.write(ApicReg.EOI, 4, 0);
    expect(io.remoteIrr(9)).toBe(false);
    expect(apic.pendingVector()).toBe(-1);
  });

  it('an input still asserted at EOI is sent again', () => {
    const { apics, io } = system();
    route(io, 9, LEVEL | 0x59, 0);
    io.setIrq(9, true);
    expect(serviceAndEoi(apics[0]!)).toBe(0x59);
    expect(io.remoteIrr(9)).toBe(true);
    expect(apics[0]!.pendingVector()).toBe(0x59);
  });

  it('while remote IRR is set, further assertions send nothing', () => {
    const { apics, io } = system();
    route(io, 9, LEVEL | 0x59, 0);
    io.setIrq(9, true);
    apics[0]!.acknowledge();
    io.setIrq(9, false);
    io.setIrq(9, true);
    expect(apics[0]!.pendingVector()).toBe(-1);
  });

  it('an EOI for another vector leaves remote IRR set', () => {
    const { io } = system();
    route(io, 9, LEVEL | 0x59, 0);
    io.setIrq(9, true);
    io.setIrq(9, false);
    io.eoi(0x60);
    expect(io.remoteIrr(9)).toBe(true);
    io.eoi(0x59);
    expect(io.remoteIrr(9)).toBe(false);
  });

  it('unmasking an asserted level input sends it', () => {
    const { apics, io } = system();
    route(io, 11, MASK | LEVEL | 0x5b, 1);
    io.setIrq(11, true);
    expect(apics[1]!.pendingVector()).toBe(-1);
    route(io, 11, LEVEL | 0x5b, 1);
    expect(apics[1]!.pendingVector()).toBe(0x5b);
    expect(io.remoteIrr(11)).toBe(true);
  });

  it('remote IRR stays clear when no local APIC accepted the message', () => {
    const { apics, io } = system();
    apics[0]!.write(ApicReg.SVR, 4, 0xff); // software-disabled: drops fixed interrupts
    route(io, 9, LEVEL | 0x59, 0);
    io.setIrq(9, true);
    expect(io.remoteIrr(9)).toBe(false);
  });

  it('making the entry edge-triggered clears remote IRR', () => {
    const { io } = system();
    route(io, 9, LEVEL | 0x59, 0);
    io.setIrq(9, true);
    route(io, 9, 0x59, 0);
    expect(io.remoteIrr(9)).toBe(false);
  });
});

describe('Delivery modes and destinations (82093AA 3.2.4)', () => {
  it('logical destination reaches every APIC whose LDR matches (flat model)', () => {
    const { apics, io } = system(3);
    apics.forEach((a, i) => a.write(ApicReg.LDR, 4, (1 << i) << 24));
    route(io, 5, LOGICAL | 0x65, 0x05);
    io.setIrq(5, true);
    expect(apics.map((a) => a.pendingVector())).toEqual([0x65, -1, 0x65]);
  });

  it('lowest priority picks the APIC at the lowest priority', () => {
    const { apics, io } = system(3);
    apics.forEach((a, i) => a.write(ApicReg.LDR, 4, (1 << i) << 24));
    apics[0]!.write(ApicReg.TPR, 4, 0x40);
    apics[1]!.write(ApicReg.TPR, 4, 0x40);
    apics[2]!.write(ApicReg.TPR, 4, 0x10);
    route(io, 6, LOGICAL | 0x100 | 0x66, 0x07);
    io.setIrq(6, true);
    expect(apics.map((a) => a.pendingVector())).toEqual([-1, -1, 0x66]);
  });

  it('NMI mode latches an NMI at the destination, edge-triggered even if the entry says level', () => {
    const { apics, io } = system();
    route(io, 7, LEVEL | 0x400, 1);
    io.setIrq(7, true);
    expect(apics[1]!.takeNmi()).toBe(true);
    expect(io.remoteIrr(7)).toBe(false);
  });

  it('ExtINT mode asks the processor to fetch the vector from the 8259', () => {
    const { apics, io } = system();
    route(io, 0, 0x700, 0);
    io.setIrq(0, true);
    expect(apics[0]!.hasExtInt).toBe(true);
    apics[0]!.acknowledgeExtInt();
    expect(apics[0]!.hasExtInt).toBe(false);
  });

  it('physical destination FFH broadcasts to all local APICs', () => {
    const { apics, io } = system(3);
    route(io, 3, 0x73, 0xff);
    io.setIrq(3, true);
    expect(apics.map((a) => a.pendingVector())).toEqual([0x73, 0x73, 0x73]);
  });
});
