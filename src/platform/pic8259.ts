/**
 * The PC's pair of 8259A interrupt controllers (Intel 8259A datasheet, order
 * no. 231468): master at 0x20/0x21 with the slave's INT on its IR2, slave at
 * 0xA0/0xA1, and the edge/level control registers ELCR1/ELCR2 at 0x4D0/0x4D1
 * (as on Intel PIIX/ICH chipsets).
 *
 * Choices:
 * - IRR: a line set to level-triggered (ELCR bit, or ICW1 LTIM for the whole
 *   chip) requests while it is high; an edge-triggered line requests from its
 *   rising edge. In both modes a line that falls before the acknowledge drops
 *   its request (datasheet, "Edge and Level Triggered Modes": the IR input must
 *   stay high until the first INTA, else a default IR7 occurs).
 * - INT, once raised, stays raised until the INTA sequence (or ICW1), so a
 *   request that disappears in between gives the spurious vector of IR7: base+7
 *   of the master (IRQ 7), or of the slave (IRQ 15) with the master's ISR bit 2
 *   set, as on real PCs. The spurious IR7 sets no ISR bit.
 * - ICW1 also clears IRR and ISR; the 8080/85 mode (ICW4 bit 0 = 0) and
 *   buffered mode are accepted and ignored (vectors are always 8086 style).
 * - Before any ICW the pair is as a PC BIOS leaves it: vector bases 0x08 and
 *   0x70, cascade on IR2, every line masked but the master's IR2.
 */
import type { PortBus, PortSize } from './ports.js';

/** The IR with the highest priority among `bits` given the lowest-priority IR `lowest`; -1 if none. */
function highest(bits: number, lowest: number): number {
  for (let i = 1; i <= 8; i++) {
    const ir = (lowest + i) & 7;
    if (bits & (1 << ir)) return ir;
  }
  return -1;
}

/** Priority rank of `ir` (0 = highest). */
function rank(ir: number, lowest: number): number {
  return (ir - lowest - 1) & 7;
}

/** One 8259A. */
export class Pic8259 {
  irr = 0;
  isr = 0;
  imr = 0xff;
  /** Levels of the IR inputs. */
  lines = 0;
  elcr = 0;
  ltim = false;
  vectorBase = 0;
  /** ICW3: on the master, the IRs with a slave; on the slave, its ID. */
  icw3 = 0;
  single = false;
  autoEoi = false;
  rotateOnAutoEoi = false;
  sfnm = false;
  /** The IR with the lowest priority (7 after ICW1; changed by rotation). */
  lowest = 7;
  specialMask = false;
  readIsr = false;
  poll = false;
  /** Next initialisation word expected (2, 3, 4) or 0 when operational. */
  initStep = 0;
  needIcw4 = false;
  /** INT output (latched until INTA). */
  int = false;

  constructor(readonly isMaster: boolean, readonly elcrMask: number, private readonly onInt: (level: boolean) => void) {}

  private get levelMask(): number { return this.ltim ? 0xff : this.elcr; }

  setLine(ir: number, level: boolean): void {
    const m = 1 << ir;
    if (level) {
      if ((this.lines & m) === 0 || (this.levelMask & m) !== 0) this.irr |= m;
      this.lines |= m;
    } else {
      this.lines &= ~m;
      this.irr &= ~m;
    }
    this.update();
  }

  /** The IR this chip would deliver now, or -1 (datasheet, "Priority Resolver"; SFNM; special mask mode). */
  resolve(): number {
    const req = this.irr & ~this.imr;
    if (req === 0) return -1;
    const ir = highest(req, this.lowest);
    let blocking = this.isr;
    if (this.specialMask) blocking &= ~this.imr;
    if (this.isMaster && this.sfnm) blocking &= ~this.icw3;
    const s = highest(blocking, this.lowest);
    return s >= 0 && rank(s, this.lowest) <= rank(ir, this.lowest) ? -1 : ir;
  }

  update(): void {
    if (!this.int && this.initStep === 0 && this.resolve() >= 0) this.setInt(true);
  }

  setInt(level: boolean): void {
    if (this.int === level) return;
    this.int = level;
    this.onInt(level);
  }

  /** The INTA cycle's effect for `ir`: IRR cleared (level lines request again while high), ISR set unless AEOI. */
  take(ir: number): void {
    const m = 1 << ir;
    this.irr &= ~m;
    if (this.lines & this.levelMask & m) this.irr |= m;
    if (this.autoEoi) { if (this.rotateOnAutoEoi) this.lowest = ir; } else this.isr |= m;
  }

  /** Ends the INTA sequence: INT drops, and rises again if another request wins. */
  finish(): void {
    this.setInt(false);
    this.update();
  }

  readCommand(): number {
    if (this.poll) {
      // Poll command (OCW3 P=1): the read acts as an INTA; bit 7 = request, bits 2-0 = IR.
      this.poll = false;
      const ir = this.resolve();
      if (ir < 0) return 0;
      this.take(ir);
      this.finish();
      return 0x80 | ir;
    }
    return this.readIsr ? this.isr : this.irr;
  }

  writeCommand(v: number): void {
    if (v & 0x10) { this.icw1(v); return; }
    if (v & 0x08) {
      // OCW3: ESMM/SMM (bits 6-5), P (bit 2), RR/RIS (bits 1-0).
      if (v & 0x40) this.specialMask = (v & 0x20) !== 0;
      if (v & 0x02) this.readIsr = (v & 0x01) !== 0;
      this.poll = (v & 0x04) !== 0;
      this.update();
      return;
    }
    // OCW2: R, SL, EOI (bits 7-5) and level L2-L0.
    const level = v & 7;
    switch (v >> 5) {
      case 1: case 5: { // non-specific EOI (rotate on it if R)
        let candidates = this.isr;
        if (this.specialMask) candidates &= ~this.imr; // datasheet: masked ISR bits are not cleared in SMM
        const ir = highest(candidates, this.lowest);
        if (ir >= 0) { this.isr &= ~(1 << ir); if (v & 0x80) this.lowest = ir; }
        break;
      }
      case 3: this.isr &= ~(1 << level); break; // specific EOI
      case 7: this.isr &= ~(1 << level); this.lowest = level; break; // rotate on specific EOI
      case 6: this.lowest = level; break; // set priority
      case 4: this.rotateOnAutoEoi = true; break;
      case 0: this.rotateOnAutoEoi = false; break;
      default: break; // 2: no operation
    }
    this.update();
  }

  private icw1(v: number): void {
    // Datasheet, "Initialization Command Words": edge sense reset, IMR cleared, IR7
    // lowest priority, special mask mode off, status read = IRR, ICW4 functions 0 unless IC4.
    this.single = (v & 0x02) !== 0;
    this.ltim = (v & 0x08) !== 0;
    this.needIcw4 = (v & 0x01) !== 0;
    this.imr = 0;
    this.isr = 0;
    this.irr = this.lines & this.levelMask;
    this.lowest = 7;
    this.specialMask = false;
    this.readIsr = false;
    this.poll = false;
    this.autoEoi = false;
    this.rotateOnAutoEoi = false;
    this.sfnm = false;
    this.initStep = 2;
    this.setInt(false);
  }

  readData(): number { return this.imr; }

  writeData(v: number): void {
    switch (this.initStep) {
      case 2:
        this.vectorBase = v & 0xf8;
        this.initStep = this.single ? (this.needIcw4 ? 4 : 0) : 3;
        break;
      case 3:
        this.icw3 = v;
        this.initStep = this.needIcw4 ? 4 : 0;
        break;
      case 4:
        this.autoEoi = (v & 0x02) !== 0;
        this.sfnm = (v & 0x10) !== 0;
        this.initStep = 0;
        break;
      default:
        this.imr = v; // OCW1
    }
    this.update();
  }

  writeElcr(v: number): void {
    this.elcr = v & this.elcrMask;
    this.irr = (this.irr & ~this.levelMask) | (this.lines & this.levelMask);
    this.update();
  }
}

export class PicPair {
  readonly master: Pic8259;
  readonly slave: Pic8259;
  /** Called when INTR changes (the run loop may set its pending-work flag). */
  onIntr: (level: boolean) => void = () => {};

  constructor() {
    this.master = new Pic8259(true, 0xf8, (level) => this.onIntr(level));
    this.slave = new Pic8259(false, 0xde, (level) => this.master.setLine(2, level));
    this.master.vectorBase = 0x08;
    this.master.icw3 = 0x04;
    this.master.imr = 0xfb;
    this.slave.vectorBase = 0x70;
    this.slave.icw3 = 2;
  }

  attach(bus: PortBus): void {
    bus.register(0x20, 2, this);
    bus.register(0xa0, 2, this);
    bus.register(0x4d0, 2, this);
  }

  /** A device's interrupt line: IRQ 0-7 on the master, 8-15 on the slave. */
  setIrq(line: number, level: boolean): void {
    if (line < 8) this.master.setLine(line, level); else this.slave.setLine(line - 8, level);
  }

  /** The processor's INTR input. */
  intr(): boolean {
    return this.master.int;
  }

  /**
   * The INTA cycle: returns the vector and updates IRR/ISR; a request that went
   * away gives the spurious IR7 vector of the chip that lost it.
   */
  acknowledge(): number {
    const master = this.master, slave = this.slave;
    const ir = master.resolve();
    let vector: number;
    if (ir < 0) {
      vector = master.vectorBase | 7;
    } else {
      master.take(ir);
      if (!master.single && (master.icw3 & (1 << ir)) !== 0) {
        const sir = slave.resolve();
        if (sir >= 0) slave.take(sir);
        vector = slave.vectorBase | (sir < 0 ? 7 : sir);
        slave.finish();
      } else {
        vector = master.vectorBase | ir;
      }
    }
    master.finish();
    return vector;
  }

  read(port: number, _size: PortSize): number {
    switch (port) {
      case 0x20: return this.master.readCommand();
      case 0x21: return this.master.readData();
      case 0xa0: return this.slave.readCommand();
      case 0xa1: return this.slave.readData();
      case 0x4d0: return this.master.elcr;
      default: return this.slave.elcr;
    }
  }

  write(port: number, _size: PortSize, value: number): void {
    switch (port) {
      case 0x20: this.master.writeCommand(value); break;
      case 0x21: this.master.writeData(value); break;
      case 0xa0: this.slave.writeCommand(value); break;
      case 0xa1: this.slave.writeData(value); break;
      case 0x4d0: this.master.writeElcr(value); break;
      default: this.slave.writeElcr(value);
    }
  }
}
