import { describe, expect, it } from 'vitest';
import { PicPair } from './pic8259.js';
import { PortBus } from './ports.js';

function setup() {
  const pic = new PicPair();
  const bus = new PortBus();
  pic.attach(bus);
  const out = (port: number, v: number) => bus.write(port, 1, v);
  const inb = (port: number) => bus.read(port, 1);
  return { pic, bus, out, inb };
}

/** Linux's init_8259A with the classic vectors 0x20 (master) and 0x28 (slave), then all lines unmasked. */
function linuxInit(s: ReturnType<typeof setup>, masterIcw4 = 0x01) {
  const { out } = s;
  out(0x21, 0xff); out(0xa1, 0xff);
  out(0x20, 0x11); out(0x21, 0x20); out(0x21, 0x04); out(0x21, masterIcw4); // ICW1-4, master
  out(0xa0, 0x11); out(0xa1, 0x28); out(0xa1, 0x02); out(0xa1, 0x01);       // ICW1-4, slave
  out(0x21, 0x00); out(0xa1, 0x00);
}

const readIsr = (s: ReturnType<typeof setup>, cmd: number) => { s.out(cmd, 0x0b); return s.inb(cmd); };
const readIrr = (s: ReturnType<typeof setup>, cmd: number) => { s.out(cmd, 0x0a); return s.inb(cmd); };

describe('8259A PIC pair (Intel 8259A datasheet)', () => {
  it('after Linux-style ICW1-ICW4, IRQ n gives vector 0x20+n, sets ISR, and EOI clears it', () => {
    const s = setup();
    linuxInit(s);
    expect(s.pic.intr()).toBe(false);
    s.pic.setIrq(0, true);
    expect(s.pic.intr()).toBe(true);
    expect(readIrr(s, 0x20)).toBe(0x01);
    expect(s.pic.acknowledge()).toBe(0x20);
    expect(s.pic.intr()).toBe(false);
    expect(readIsr(s, 0x20)).toBe(0x01);
    expect(readIrr(s, 0x20)).toBe(0x00); // edge-triggered: INTA clears the request
    s.out(0x20, 0x20); // non-specific EOI
    expect(readIsr(s, 0x20)).toBe(0x00);
    // The line is still high: no new edge, no new request.
    expect(s.pic.intr()).toBe(false);
    s.pic.setIrq(0, false);
    s.pic.setIrq(0, true);
    expect(s.pic.acknowledge()).toBe(0x20);
  });

  it('fully nested priority: IRQ 1 beats IRQ 3; IRQ 3 waits for the EOI of IRQ 1; a higher IRQ nests', () => {
    const s = setup();
    linuxInit(s);
    s.pic.setIrq(3, true);
    s.pic.setIrq(1, true);
    expect(s.pic.acknowledge()).toBe(0x21);
    expect(s.pic.intr()).toBe(false); // IRQ 3 is lower than IRQ 1 in service
    s.pic.setIrq(0, true);
    expect(s.pic.intr()).toBe(true); // IRQ 0 is higher: it nests
    expect(s.pic.acknowledge()).toBe(0x20);
    expect(readIsr(s, 0x20)).toBe(0x03);
    s.out(0x20, 0x20); // non-specific EOI ends the highest in service: IRQ 0
    expect(readIsr(s, 0x20)).toBe(0x02);
    expect(s.pic.intr()).toBe(false);
    s.out(0x20, 0x61); // specific EOI for IRQ 1
    expect(s.pic.intr()).toBe(true);
    expect(s.pic.acknowledge()).toBe(0x23);
  });

  it('OCW1 masking holds a request in IRR without INTR; unmasking delivers it', () => {
    const s = setup();
    linuxInit(s);
    s.out(0x21, 0x10); // mask IRQ 4
    expect(s.inb(0x21)).toBe(0x10);
    s.pic.setIrq(4, true);
    expect(s.pic.intr()).toBe(false);
    expect(readIrr(s, 0x20)).toBe(0x10);
    s.out(0x21, 0x00);
    expect(s.pic.intr()).toBe(true);
    expect(s.pic.acknowledge()).toBe(0x24);
  });

  it('slave IRQ 8-15 cascade through master IR2: vector 0x28+n, ISR bit 2 on the master, EOI both', () => {
    const s = setup();
    linuxInit(s);
    s.pic.setIrq(8, true);
    expect(s.pic.intr()).toBe(true);
    expect(s.pic.acknowledge()).toBe(0x28);
    expect(readIsr(s, 0xa0)).toBe(0x01);
    expect(readIsr(s, 0x20)).toBe(0x04);
    s.pic.setIrq(12, true);
    expect(s.pic.intr()).toBe(false); // IRQ 12 < IRQ 8 in service on the slave
    s.out(0xa0, 0x20);
    expect(s.pic.intr()).toBe(false); // the master still has IR2 in service
    s.out(0x20, 0x20);
    expect(s.pic.intr()).toBe(true);
    expect(s.pic.acknowledge()).toBe(0x2c);
  });

  it('spurious IRQ 7: the request disappears before INTA → vector 0x27, no ISR bit', () => {
    const s = setup();
    linuxInit(s);
    s.pic.setIrq(5, true);
    expect(s.pic.intr()).toBe(true);
    s.pic.setIrq(5, false); // datasheet: IR must stay high until the first INTA
    expect(s.pic.acknowledge()).toBe(0x27);
    expect(readIsr(s, 0x20)).toBe(0x00);
    expect(s.pic.intr()).toBe(false);
  });

  it('spurious IRQ 15: a slave request that disappears gives 0x2F with the master IR2 in service', () => {
    const s = setup();
    linuxInit(s);
    s.pic.setIrq(14, true);
    s.out(0xa1, 0x40); // masked after INT was raised
    expect(s.pic.acknowledge()).toBe(0x2f);
    expect(readIsr(s, 0xa0)).toBe(0x00);
    expect(readIsr(s, 0x20)).toBe(0x04);
  });

  it('level-triggered line via ELCR (0x4D1): requests while high, re-requests after EOI; reserved ELCR bits read 0', () => {
    const s = setup();
    linuxInit(s);
    s.out(0x4d1, 0xff);
    expect(s.inb(0x4d1)).toBe(0xde); // IRQ 8 and 13 are always edge
    s.out(0x4d0, 0xff);
    expect(s.inb(0x4d0)).toBe(0xf8); // IRQ 0-2 are always edge
    s.pic.setIrq(11, true);
    expect(s.pic.acknowledge()).toBe(0x2b);
    s.out(0xa0, 0x20); s.out(0x20, 0x20);
    expect(s.pic.intr()).toBe(true); // still high: requests again
    expect(s.pic.acknowledge()).toBe(0x2b);
    s.pic.setIrq(11, false); // the handler quiets the device before its EOIs
    s.out(0xa0, 0x20); s.out(0x20, 0x20);
    expect(s.pic.intr()).toBe(false);
    expect(readIrr(s, 0xa0)).toBe(0x00);
  });

  it('auto-EOI (ICW4 bit 1) leaves ISR clear; rotate on non-specific EOI makes the served IRQ lowest', () => {
    const s = setup();
    linuxInit(s, 0x03);
    s.pic.setIrq(0, true);
    expect(s.pic.acknowledge()).toBe(0x20);
    expect(readIsr(s, 0x20)).toBe(0x00);

    const r = setup();
    linuxInit(r);
    r.pic.setIrq(2 + 1, true); // IRQ 3
    expect(r.pic.acknowledge()).toBe(0x23);
    r.out(0x20, 0xa0); // rotate on non-specific EOI: IRQ 3 lowest, IRQ 4 highest
    r.pic.setIrq(1, true);
    r.pic.setIrq(5, true);
    expect(r.pic.acknowledge()).toBe(0x25);
    r.out(0x20, 0xc7); // set priority: IRQ 7 lowest again
    r.out(0x20, 0x65); // specific EOI for IRQ 5
    expect(r.pic.acknowledge()).toBe(0x21);
  });

  it('special mask mode: masking the IR in service lets lower IRQs through', () => {
    const s = setup();
    linuxInit(s);
    s.pic.setIrq(1, true);
    expect(s.pic.acknowledge()).toBe(0x21);
    s.pic.setIrq(6, true);
    expect(s.pic.intr()).toBe(false);
    s.out(0x20, 0x68); // OCW3: ESMM + SMM
    s.out(0x21, 0x02); // mask IRQ 1 (in service)
    expect(s.pic.intr()).toBe(true);
    expect(s.pic.acknowledge()).toBe(0x26);
  });

  it('poll command (OCW3 P): the next command-port read returns 0x80 | IR and acts as INTA', () => {
    const s = setup();
    linuxInit(s);
    s.pic.setIrq(6, true);
    s.out(0x20, 0x0c);
    expect(s.inb(0x20)).toBe(0x86);
    expect(readIsr(s, 0x20)).toBe(0x40);
    s.out(0x20, 0x0c);
    expect(s.inb(0x20)).toBe(0x00);
  });

  it('ICW1 resets the edge sense: a line already high does not request until it rises again', () => {
    const s = setup();
    s.pic.setIrq(3, true);
    linuxInit(s);
    expect(s.pic.intr()).toBe(false);
    expect(readIrr(s, 0x20)).toBe(0x00);
  });
});
