/**
 * The I/O APIC: the Intel 82093AA (datasheet "82093AA I/O Advanced Programmable
 * Interrupt Controller (IOAPIC)", section 3 "Register Description"), as the ICH
 * family integrates it: 24 interrupt inputs, each with a 64-bit redirection
 * entry, sending interrupt messages on the APIC bus.
 *
 * Access: IOREGSEL at offset 00H selects a register, IOWIN at offset 10H reads or
 * writes it as a dword. Other offsets read 0 and ignore writes; IOREGSEL takes
 * byte or dword writes (its bits 7:0), IOWIN reads of 1 or 2 bytes return the low
 * bytes of the dword, and IOWIN writes of other sizes are dropped.
 *
 * Choices:
 * - `setIrq(pin, asserted)` takes the source's request state; the polarity bit is
 *   stored for software but does not invert the input (the platform's wiring
 *   decides what "asserted" means).
 * - The destination field is 8 bits (63:56) in physical and logical mode, as in
 *   the ICH; the 82093AA uses only bits 59:56 in physical mode.
 * - Remote IRR is set when at least one local APIC accepted the level-triggered
 *   message, and cleared by an EOI with the entry's vector or when software
 *   makes the entry edge-triggered.
 * - NMI, SMI, INIT and ExtINT entries are always sent edge-triggered (the datasheet's
 *   delivery-mode descriptions require edge triggering for them); only fixed and
 *   lowest-priority entries use remote IRR.
 */
import { ApicBus, DeliveryMode, newApicMessage, type EoiListener } from './apic.js';

/** The default I/O APIC base address. */
export const IOAPIC_DEFAULT_BASE = 0xfec00000;

export const enum IoApicOffset { IOREGSEL = 0x00, IOWIN = 0x10 }

/** Register indexes behind IOREGSEL (82093AA 3.2 "I/O APIC Registers"). */
export const enum IoApicReg { ID = 0x00, VERSION = 0x01, ARBITRATION = 0x02, REDIRECTION_TABLE = 0x10 }

export const IOAPIC_PINS = 24;
/** Version 11H, maximum redirection entry 17H (82093AA 3.2.2 "IOAPICVER"). */
export const IOAPIC_VERSION = 0x00170011;

// Redirection entry bits (82093AA 3.2.4 "IOREDTBL[23:0]").
const RTE_REMOTE_IRR = 1 << 14, RTE_LEVEL = 1 << 15, RTE_MASKED = 1 << 16;
/** Writable bits of the low dword: vector, delivery mode, destination mode, polarity, trigger, mask. */
const RTE_LOW_WRITABLE = 0x0001afff;

export class IoApic implements EoiListener {
  /** IOAPICID bits 27:24. */
  id = 0;
  /** IOAPICARB bits 27:24: loaded from the ID when the ID is written. */
  arbitrationId = 0;
  ioregsel = 0;
  /** Redirection entries: low dword at 2n, high dword at 2n + 1. */
  readonly redirection = new Uint32Array(IOAPIC_PINS * 2);
  private readonly asserted = new Uint8Array(IOAPIC_PINS);
  private readonly msg = newApicMessage();

  constructor(readonly bus: ApicBus, id = 0) {
    bus.attachEoiListener(this);
    this.reset(id);
  }

  /** Power-up: every entry masked (82093AA 3.2.4), pins idle. */
  reset(id = 0): void {
    this.id = id & 0xf;
    this.arbitrationId = this.id;
    this.ioregsel = 0;
    for (let pin = 0; pin < IOAPIC_PINS; pin++) {
      this.redirection[2 * pin] = RTE_MASKED;
      this.redirection[2 * pin + 1] = 0;
    }
    this.asserted.fill(0);
  }

  read(offset: number, size: 1 | 2 | 4): number {
    let v: number;
    if (offset === IoApicOffset.IOREGSEL) v = this.ioregsel;
    else if (offset === IoApicOffset.IOWIN) v = this.readRegister(this.ioregsel);
    else return 0;
    return size === 4 ? v >>> 0 : v & (size === 1 ? 0xff : 0xffff);
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (offset === IoApicOffset.IOREGSEL) this.ioregsel = value & 0xff;
    else if (offset === IoApicOffset.IOWIN && size === 4) this.writeRegister(this.ioregsel, value >>> 0);
  }

  /** The register at index `index`; unimplemented indexes read 0. */
  readRegister(index: number): number {
    switch (index) {
      case IoApicReg.ID: return (this.id << 24) >>> 0;
      case IoApicReg.VERSION: return IOAPIC_VERSION;
      case IoApicReg.ARBITRATION: return (this.arbitrationId << 24) >>> 0;
    }
    const i = index - IoApicReg.REDIRECTION_TABLE;
    return i >= 0 && i < IOAPIC_PINS * 2 ? this.redirection[i] : 0;
  }

  writeRegister(index: number, value: number): void {
    if (index === IoApicReg.ID) {
      this.id = (value >>> 24) & 0xf;
      this.arbitrationId = this.id;
      return;
    }
    const i = index - IoApicReg.REDIRECTION_TABLE;
    if (i < 0 || i >= IOAPIC_PINS * 2) return; // version, arbitration: read-only
    const pin = i >>> 1;
    if (i & 1) { this.redirection[i] = (value & 0xff000000) >>> 0; return; }
    const old = this.redirection[i];
    let v = (value & RTE_LOW_WRITABLE) | (old & RTE_REMOTE_IRR);
    if (!(v & RTE_LEVEL)) v &= ~RTE_REMOTE_IRR; // an edge entry keeps no remote IRR
    this.redirection[i] = v >>> 0;
    this.service(pin); // unmasking an asserted level input delivers it
  }

  /** Remote IRR of a pin (82093AA 3.2.4, bit 14). */
  remoteIrr(pin: number): boolean {
    return (this.redirection[2 * pin] & RTE_REMOTE_IRR) !== 0;
  }

  /**
   * An interrupt input changes. Edge entries send on the rising edge (a masked
   * edge is lost); level entries send while asserted and remote IRR is clear.
   */
  setIrq(pin: number, asserted: boolean): void {
    if (pin < 0 || pin >= IOAPIC_PINS) return;
    const was = this.asserted[pin] !== 0;
    this.asserted[pin] = asserted ? 1 : 0;
    const lo = this.redirection[2 * pin];
    if (lo & RTE_MASKED) return;
    if (this.levelTriggered(lo)) this.service(pin);
    else if (asserted && !was) this.send(pin, lo, 0);
  }

  /** EOI broadcast from a local APIC: clears remote IRR of the entries with that vector (82093AA 3.2.4). */
  eoi(vector: number): void {
    for (let pin = 0; pin < IOAPIC_PINS; pin++) {
      const lo = this.redirection[2 * pin];
      if ((lo & RTE_REMOTE_IRR) && (lo & 0xff) === vector) {
        this.redirection[2 * pin] = (lo & ~RTE_REMOTE_IRR) >>> 0;
        this.service(pin); // still asserted: the interrupt is sent again
      }
    }
  }

  /** Level entries are those with trigger = level in fixed or lowest-priority mode. */
  private levelTriggered(lo: number): boolean {
    const mode = (lo >>> 8) & 7;
    return (lo & RTE_LEVEL) !== 0 && (mode === DeliveryMode.FIXED || mode === DeliveryMode.LOWEST_PRIORITY);
  }

  private service(pin: number): void {
    const lo = this.redirection[2 * pin];
    if (!this.asserted[pin] || (lo & (RTE_MASKED | RTE_REMOTE_IRR)) || !this.levelTriggered(lo)) return;
    if (this.send(pin, lo, 1) > 0) this.redirection[2 * pin] = (lo | RTE_REMOTE_IRR) >>> 0;
  }

  private send(pin: number, lo: number, trigger: number): number {
    const m = this.msg;
    m.vector = lo & 0xff;
    m.deliveryMode = (lo >>> 8) & 7;
    m.destMode = (lo >>> 11) & 1;
    m.trigger = trigger;
    m.level = 1;
    m.shorthand = 0;
    m.dest = this.redirection[2 * pin + 1] >>> 24;
    m.x2apic = false;
    m.source = null;
    return this.bus.deliver(m); // synchronous, so delivery status (bit 12) always reads idle
  }
}
