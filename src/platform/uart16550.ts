/**
 * A 16550A UART (National Semiconductor PC16550D datasheet): RBR/THR, IER,
 * IIR/FCR, LCR, MCR, LSR, MSR, SCR and the divisor latch (LCR bit 7, DLAB),
 * 16-byte receive FIFO, the interrupt priorities of the IIR table.
 *
 * Choices:
 * - Transmission is instant: a THR write goes to `output` (or, in loopback,
 *   into the receive FIFO) at once, so THR and the transmitter are always
 *   empty (LSR bits 5 and 6 read 1) and a THR write re-raises the THRE
 *   interrupt at once. There is no baud-rate timing on transmit, and the
 *   word length (LCR bits 1-0) is not applied: the whole byte is passed on,
 *   since many guests write to a UART they never programmed (reset LCR = 5 bits).
 * - The receive side uses the baud rate for one thing only: the character
 *   timeout indication (FIFO mode), raised when the FIFO has held data for 4
 *   character times (start + data + parity + stop bits at 115200/divisor baud)
 *   without a character going in or out. Reset divisor: 12 (9600 baud).
 * - `receive(bytes)` is the wire: bytes beyond the FIFO's room overrun (LSR
 *   OE); in 16450 mode (FIFO off) each byte overwrites an unread RBR with OE.
 *   Bytes received in loopback mode are dropped (the serial input is
 *   disconnected). Parity, framing and break errors never occur.
 * - Modem inputs outside loopback: CTS, DSR and DCD asserted, RI not.
 * - The IRQ pin is gated by OUT2 as on PCs; in loopback OUT2 is forced
 *   inactive at the pin, so the IRQ line stays low (the IIR still shows the
 *   pending interrupt).
 */
import type { Clock, Timer } from './clock.js';
import type { PortBus, PortSize } from './ports.js';

/** Interrupt identification codes (IIR bits 3-0). */
export const enum Iir {
  NONE = 0x01, LINE_STATUS = 0x06, RX_DATA = 0x04, RX_TIMEOUT = 0x0c, THR_EMPTY = 0x02, MODEM_STATUS = 0x00,
}

/** LSR bits. */
export const enum Lsr {
  DR = 0x01, OE = 0x02, PE = 0x04, FE = 0x08, BI = 0x10, THRE = 0x20, TEMT = 0x40, RX_FIFO_ERROR = 0x80,
}

const TRIGGER_LEVELS = [1, 4, 8, 14];
const EXTERNAL_MODEM_INPUTS = 0xb0; // DCD, DSR, CTS

export interface UartOptions {
  clock: Clock;
  /** Bytes the guest transmits. */
  output?: (byte: number) => void;
  /** The interrupt line (IRQ 4 for COM1). */
  setIrq?: (level: boolean) => void;
  /** I/O base (default 0x3F8, COM1). */
  base?: number;
}

export class Uart16550 {
  readonly base: number;
  private readonly clock: Clock;
  private readonly output: (byte: number) => void;
  private readonly setIrq: (level: boolean) => void;
  private readonly timer: Timer;

  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private scr = 0;
  private divisor = 12;
  private fifoEnabled = false;
  private trigger = 1;
  private lineErrors = 0;
  private msrInputs = EXTERNAL_MODEM_INPUTS;
  private msrDeltas = 0;
  private thrPending = false;
  private timeoutPending = false;
  private readonly rx = new Uint8Array(16);
  private rxHead = 0;
  private rxCount = 0;
  private irqLevel = false;

  constructor(options: UartOptions) {
    this.base = options.base ?? 0x3f8;
    this.clock = options.clock;
    this.output = options.output ?? (() => {});
    this.setIrq = options.setIrq ?? (() => {});
    this.timer = this.clock.timer(() => { this.timeoutPending = true; this.update(); });
  }

  attach(bus: PortBus): void {
    bus.register(this.base, 8, this);
  }

  /** Free places in the receive buffer (16 in FIFO mode, 1 in 16450 mode). */
  rxRoom(): number {
    return (this.fifoEnabled ? 16 : 1) - this.rxCount;
  }

  /** Bytes arriving on the serial input; returns how many were stored without overrun. */
  receive(bytes: ArrayLike<number>): number {
    if (this.mcr & 0x10) return 0;
    let stored = 0;
    for (let i = 0; i < bytes.length; i++) if (this.push(bytes[i]! & 0xff)) stored++;
    this.update();
    return stored;
  }

  private push(byte: number): boolean {
    const size = this.fifoEnabled ? 16 : 1;
    if (this.rxCount === size) {
      this.lineErrors |= Lsr.OE;
      if (!this.fifoEnabled) this.rx[this.rxHead] = byte; // 16450: the new character replaces the unread one
      return false;
    }
    this.rx[(this.rxHead + this.rxCount) & 15] = byte;
    this.rxCount++;
    this.rxActivity();
    return true;
  }

  /** A character went into or out of the FIFO: the timeout restarts (datasheet, FIFO interrupt mode). */
  private rxActivity(): void {
    this.timeoutPending = false;
    if (this.fifoEnabled && this.rxCount > 0) this.timer.set(this.clock.ns() + 4 * this.charNs());
    else this.timer.cancel();
  }

  /** One character time in ns at the programmed rate and frame. */
  private charNs(): number {
    const lcr = this.lcr;
    const bits = 1 + 5 + (lcr & 3) + ((lcr >> 3) & 1) + ((lcr & 4) !== 0 ? 2 : 1);
    return Math.ceil((bits * (this.divisor || 0x10000) * 1e9) / 115200);
  }

  /** The highest-priority pending interrupt (datasheet, table "Interrupt Control Functions"). */
  private source(): number {
    const ier = this.ier;
    if ((ier & 4) && this.lineErrors) return Iir.LINE_STATUS;
    if (ier & 1) {
      if (this.timeoutPending) return Iir.RX_TIMEOUT;
      if (this.rxCount >= (this.fifoEnabled ? this.trigger : 1)) return Iir.RX_DATA;
    }
    if ((ier & 2) && this.thrPending) return Iir.THR_EMPTY;
    if ((ier & 8) && this.msrDeltas) return Iir.MODEM_STATUS;
    return Iir.NONE;
  }

  private update(): void {
    const level = this.source() !== Iir.NONE && (this.mcr & 0x18) === 0x08; // OUT2 set, not loopback
    if (level !== this.irqLevel) { this.irqLevel = level; this.setIrq(level); }
  }

  private setModemInputs(inputs: number): void {
    const changed = inputs ^ this.msrInputs;
    // MSR bits 0-3: delta CTS, delta DSR, trailing edge of RI, delta DCD.
    this.msrDeltas |= (changed >> 4) & 0x0b;
    if (changed & this.msrInputs & 0x40) this.msrDeltas |= 0x04;
    this.msrInputs = inputs;
  }

  read(port: number, _size: PortSize): number {
    const dlab = (this.lcr & 0x80) !== 0;
    let v: number;
    switch (port - this.base) {
      case 0:
        if (dlab) return this.divisor & 0xff;
        v = this.rx[this.rxHead]!;
        if (this.rxCount > 0) {
          this.rxHead = (this.rxHead + 1) & 15;
          this.rxCount--;
          this.rxActivity();
        }
        break;
      case 1:
        return dlab ? this.divisor >> 8 : this.ier;
      case 2:
        v = this.source();
        if (v === Iir.THR_EMPTY) this.thrPending = false; // reading IIR clears THRE when it is the source
        v |= this.fifoEnabled ? 0xc0 : 0;
        break;
      case 3: return this.lcr;
      case 4: return this.mcr;
      case 5:
        v = (this.rxCount > 0 ? Lsr.DR : 0) | Lsr.THRE | Lsr.TEMT | this.lineErrors;
        this.lineErrors = 0;
        break;
      case 6:
        v = this.msrInputs | this.msrDeltas;
        this.msrDeltas = 0;
        break;
      default: return this.scr;
    }
    this.update();
    return v;
  }

  write(port: number, _size: PortSize, value: number): void {
    const dlab = (this.lcr & 0x80) !== 0;
    switch (port - this.base) {
      case 0:
        if (dlab) { this.divisor = (this.divisor & 0xff00) | value; return; }
        if (this.mcr & 0x10) this.push(value); else this.output(value);
        this.thrPending = true; // written and, instantly, sent: THR is empty again
        break;
      case 1:
        if (dlab) { this.divisor = (this.divisor & 0xff) | (value << 8); return; }
        // Enabling ETBEI while THR is empty raises the THRE interrupt.
        if ((value & ~this.ier & 2) !== 0) this.thrPending = true;
        this.ier = value & 0x0f;
        break;
      case 2: {
        const enable = (value & 1) !== 0;
        // Changing FCR0 clears both FIFOs; other FCR bits are written only with FCR0 = 1.
        if (enable !== this.fifoEnabled || (enable && (value & 2))) { this.rxCount = 0; this.rxHead = 0; }
        this.fifoEnabled = enable;
        if (enable) this.trigger = TRIGGER_LEVELS[value >> 6]!;
        this.rxActivity();
        break;
      }
      case 3: this.lcr = value; return;
      case 4: {
        this.mcr = value & 0x1f;
        const m = this.mcr;
        // Loopback: CTS ← RTS, DSR ← DTR, RI ← OUT1, DCD ← OUT2.
        this.setModemInputs(m & 0x10
          ? ((m & 2) << 3) | ((m & 1) << 5) | ((m & 4) << 4) | ((m & 8) << 4)
          : EXTERNAL_MODEM_INPUTS);
        break;
      }
      case 5: case 6: return; // read-only
      default: this.scr = value; return;
    }
    this.update();
  }
}
