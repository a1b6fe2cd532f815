import { describe, expect, it } from 'vitest';
import { Clock } from './clock.js';
import { PortBus } from './ports.js';
import { Uart16550 } from './uart16550.js';

const COM1 = 0x3f8;
const RBR = COM1, THR = COM1, IER = COM1 + 1, IIR = COM1 + 2, FCR = COM1 + 2, LCR = COM1 + 3;
const MCR = COM1 + 4, LSR = COM1 + 5, MSR = COM1 + 6, SCR = COM1 + 7;

function setup() {
  let insns = 0;
  const clock = new Clock(() => insns);
  const sent: number[] = [];
  const irq: boolean[] = [];
  const uart = new Uart16550({ clock, output: (b) => sent.push(b), setIrq: (l) => irq.push(l) });
  const bus = new PortBus();
  uart.attach(bus);
  return {
    clock, uart, bus, sent, irq,
    out: (port: number, v: number) => bus.write(port, 1, v),
    inb: (port: number) => bus.read(port, 1),
    at(ns: number) { insns = ns; clock.runDue(); },
    get line() { return irq.length > 0 && irq[irq.length - 1]!; },
  };
}

/** 115200 8N1, FIFOs on (trigger 14), DTR|RTS|OUT2 — the usual PC driver setup. */
function init(s: ReturnType<typeof setup>, fcr = 0xc7) {
  s.out(LCR, 0x80); s.out(THR, 0x01); s.out(IER, 0x00); // DLAB: divisor 1
  s.out(LCR, 0x03);
  s.out(FCR, fcr);
  s.out(MCR, 0x0b);
}

describe('16550A UART (PC16550D datasheet)', () => {
  it('divisor latch is reached with DLAB and leaves RBR/THR/IER alone; scratch register holds a byte', () => {
    const s = setup();
    s.out(LCR, 0x80);
    s.out(COM1, 0x34); s.out(COM1 + 1, 0x12);
    expect(s.inb(COM1)).toBe(0x34);
    expect(s.inb(COM1 + 1)).toBe(0x12);
    s.out(LCR, 0x03);
    expect(s.inb(IER)).toBe(0x00);
    expect(s.inb(LCR)).toBe(0x03);
    s.out(SCR, 0x5a);
    expect(s.inb(SCR)).toBe(0x5a);
    expect(s.sent).toEqual([]);
  });

  it('reset state: IIR 0x01 (no interrupt), LSR 0x60 (THR and transmitter empty)', () => {
    const s = setup();
    expect(s.inb(IIR)).toBe(0x01);
    expect(s.inb(LSR)).toBe(0x60);
  });

  it('sends a string with THRE interrupts: IIR C2 on each empty THR, reading IIR clears it, OUT2 gates IRQ 4', () => {
    const s = setup();
    init(s);
    expect(s.inb(IIR)).toBe(0xc1); // FIFOs enabled (bits 7-6), nothing pending
    s.out(IER, 0x02); // ETBEI with THR empty: THRE interrupt at once
    expect(s.line).toBe(true);
    const iirs: number[] = [];
    for (const ch of 'hi!') {
      // Interrupt handler: identify, then refill THR.
      iirs.push(s.inb(IIR));
      expect(s.line).toBe(false);
      iirs.push(s.inb(IIR));
      s.out(THR, ch.charCodeAt(0));
      expect(s.line).toBe(true); // instant transmission: THR empty again
    }
    iirs.push(s.inb(IIR));
    s.out(IER, 0x00); // nothing left: the driver turns ETBEI off
    expect(iirs).toEqual([0xc2, 0xc1, 0xc2, 0xc1, 0xc2, 0xc1, 0xc2]);
    expect(String.fromCharCode(...s.sent)).toBe('hi!');
    expect(s.irq.filter((l) => l).length).toBe(4); // four rising edges on IRQ 4

    // Without OUT2 the interrupt is pending in IIR but the line stays low.
    s.out(MCR, 0x03);
    s.out(IER, 0x02);
    expect(s.inb(IIR)).toBe(0xc2);
    expect(s.line).toBe(false);
  });

  it('receive: RX data available at the FIFO trigger level (IIR C4), drained through RBR with LSR DR', () => {
    const s = setup();
    init(s, 0x87); // trigger level 8
    s.out(IER, 0x01);
    s.uart.receive([1, 2, 3, 4, 5, 6, 7]);
    expect(s.inb(IIR)).toBe(0xc1); // below the trigger (no timeout yet)
    s.uart.receive([8]);
    expect(s.inb(IIR)).toBe(0xc4);
    expect(s.line).toBe(true);
    const got: number[] = [];
    while (s.inb(LSR) & 1) got.push(s.inb(RBR));
    expect(got).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(s.inb(IIR)).toBe(0xc1);
    expect(s.line).toBe(false);
  });

  it('character timeout (IIR CC) after 4 character times with data below the trigger; reading RBR clears it', () => {
    const s = setup();
    init(s, 0xc7); // trigger 14; 115200 8N1: 10 bits = 86806 ns per character
    s.out(IER, 0x01);
    s.uart.receive([0x41]);
    const charNs = Math.ceil((10 * 1e9) / 115200);
    expect(s.clock.nextDeadline()).toBe(4 * charNs);
    s.at(4 * charNs - 1);
    expect(s.inb(IIR)).toBe(0xc1);
    s.at(4 * charNs);
    expect(s.inb(IIR)).toBe(0xcc);
    expect(s.line).toBe(true);
    expect(s.inb(RBR)).toBe(0x41);
    expect(s.inb(IIR)).toBe(0xc1);
    expect(s.clock.nextDeadline()).toBe(Infinity);
  });

  it('overrun: bytes beyond the 16-byte FIFO set LSR OE (a line status interrupt) and are lost; LSR read clears it', () => {
    const s = setup();
    init(s);
    s.out(IER, 0x05);
    const bytes = Array.from({ length: 18 }, (_, i) => i);
    expect(s.uart.rxRoom()).toBe(16);
    expect(s.uart.receive(bytes)).toBe(16);
    expect(s.inb(IIR)).toBe(0xc6); // line status is the highest priority
    expect(s.inb(LSR)).toBe(0x63); // DR, OE, THRE, TEMT
    expect(s.inb(LSR)).toBe(0x61);
    expect(s.inb(IIR)).toBe(0xc4); // then RX data (16 ≥ trigger 14)
    expect(s.inb(RBR)).toBe(0);
  });

  it('16450 mode (FIFO off): one-byte RBR, a second byte overruns and replaces it; IIR bits 7-6 clear', () => {
    const s = setup();
    init(s, 0x00);
    s.out(IER, 0x01);
    expect(s.uart.receive([0x10, 0x20])).toBe(1);
    expect(s.inb(IIR)).toBe(0x04);
    expect(s.inb(LSR) & 0x03).toBe(0x03);
    expect(s.inb(RBR)).toBe(0x20);
    expect(s.inb(IIR)).toBe(0x01);
  });

  it('loopback (MCR bit 4): THR comes back in RBR, modem outputs loop to MSR with deltas, IRQ pin held low', () => {
    const s = setup();
    init(s);
    s.out(IER, 0x09);
    s.inb(MSR); // clear deltas
    s.out(MCR, 0x10 | 0x08 | 0x01); // LOOP, OUT2, DTR
    const msr = s.inb(MSR);
    // DSR ← DTR, DCD ← OUT2; CTS (was 1 from the outside) dropped: DCTS; DSR and DCD unchanged from outside.
    expect(msr & 0xf0).toBe(0xa0);
    expect(msr & 0x0f).toBe(0x01);
    s.out(THR, 0x5a);
    expect(s.sent).toEqual([]);
    expect(s.inb(LSR) & 1).toBe(1);
    expect(s.inb(IIR)).toBe(0xc1); // below trigger, no timeout yet
    expect(s.inb(RBR)).toBe(0x5a);
    s.out(MCR, 0x10 | 0x04); // OUT1 → RI; DTR and OUT2 drop
    expect(s.inb(IIR)).toBe(0xc0); // modem status interrupt pending ...
    expect(s.line).toBe(false); // ... but loopback forces the OUT2 pin inactive
    expect(s.inb(MSR)).toBe(0x40 | 0x02 | 0x08); // RI; delta DSR, delta DCD
    s.out(MCR, 0x10);
    expect(s.inb(MSR) & 0x04).toBe(0x04); // trailing edge of RI
    expect(s.uart.receive([1])).toBe(0); // the serial input is disconnected in loopback
  });

  it('FCR bit 1 clears the receive FIFO; FCR bits 7-6 pick the trigger level (1, 4, 8, 14)', () => {
    const s = setup();
    init(s, 0x41); // FIFO on, trigger 4
    s.out(IER, 0x01);
    s.uart.receive([1, 2, 3]);
    expect(s.inb(IIR)).toBe(0xc1);
    s.uart.receive([4]);
    expect(s.inb(IIR)).toBe(0xc4);
    s.out(FCR, 0x43); // clear RX FIFO
    expect(s.inb(LSR) & 1).toBe(0);
    expect(s.inb(IIR)).toBe(0xc1);
    expect(s.line).toBe(false);
  });
});
