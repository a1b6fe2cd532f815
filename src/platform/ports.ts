/**
 * The I/O port address space (SDM vol. 1, 19.2 "I/O Port Addressing": 64K
 * 8-bit ports; 16- and 32-bit ports are consecutive 8-bit ports) and the small
 * PC system ports every firmware and kernel pokes.
 *
 * Values cross the bus as the processor passes them: size 1 → 0..0xFF,
 * size 2 → 0..0xFFFF, size 4 → an int32 (all ones reads as -1), matching
 * `NO_PORTS` in src/cpu/cpu.ts.
 */
import type { PortIo } from '../cpu/cpu.js';

export type PortSize = 1 | 2 | 4;

/** A device on the bus. `port` is the absolute port number; values are normalised as above. */
export interface PortDevice {
  read(port: number, size: PortSize): number;
  write(port: number, size: PortSize, value: number): void;
}

/** Normalises a value of `size` bytes to the bus convention. */
function fit(value: number, size: PortSize): number {
  return size === 4 ? value | 0 : size === 2 ? value & 0xffff : value & 0xff;
}

export class PortBus implements PortIo {
  private readonly devices: (PortDevice | null)[] = [null];
  private readonly owner = new Uint16Array(0x10000);
  /** Per port: a mask of the access sizes (1|2|4) the owner answers whole. */
  private readonly accepts = new Uint8Array(0x10000);

  /**
   * Claims ports first..first+count-1 for `device`. `sizes` is the set of access
   * sizes (1|2|4 or-ed) the device takes whole at those ports. A wider access it
   * does not take is split into byte accesses, little-endian, each going to
   * whoever owns that byte's port (as the ISA bus does); a byte access it does
   * not take is unclaimed. Throws if a port is already claimed (a wiring error).
   */
  register(first: number, count: number, device: PortDevice, sizes = 1): void {
    let index = this.devices.indexOf(device);
    if (index < 0) { index = this.devices.length; this.devices.push(device); }
    for (let p = first; p < first + count; p++) {
      if (p < 0 || p > 0xffff) throw new RangeError(`port 0x${p.toString(16)} is outside the I/O space`);
      if (this.owner[p] !== 0) throw new Error(`port 0x${p.toString(16)} is already claimed`);
      this.owner[p] = index;
      this.accepts[p] = sizes;
    }
  }

  read(port: number, size: PortSize): number {
    port &= 0xffff;
    const d = this.devices[this.owner[port]!];
    if (d && (this.accepts[port]! & size) !== 0) return fit(d.read(port, size), size);
    if (size === 1) return 0xff; // unclaimed: the data lines float high
    let v = 0;
    for (let k = 0; k < size; k++) v |= this.read((port + k) & 0xffff, 1) << (8 * k);
    return fit(v, size);
  }

  write(port: number, size: PortSize, value: number): void {
    port &= 0xffff;
    value = fit(value, size);
    const d = this.devices[this.owner[port]!];
    if (d && (this.accepts[port]! & size) !== 0) { d.write(port, size, value); return; }
    if (size === 1) return; // unclaimed: dropped
    for (let k = 0; k < size; k++) this.write((port + k) & 0xffff, 1, (value >>> (8 * k)) & 0xff);
  }
}

/** What port 0x61 needs of the 8254: channel 2's gate input and OUT level. */
export interface Channel2 {
  setGate(channel: number, level: boolean): void;
  output(channel: number): boolean;
}

/**
 * Port 0x61 (NMI status and control / "port B"), port 0x92 (System Control
 * Port A, fast A20 and fast reset) and port 0x80 (POST code).
 *
 * - 0x61: bits 3-0 are read/write (bit 0 = 8254 channel 2 gate, bit 1 = speaker
 *   data enable, bits 2-3 = SERR#/IOCHK# NMI disables); bit 4 (refresh cycle
 *   toggle) flips on every read — deterministic, and any loop waiting for it to
 *   change ends; bit 5 = channel 2 OUT; bits 7-6 (NMI sources) read 0.
 * - 0x92: bit 1 = A20 gate, read/write; bit 0 = 1 asks for a fast reset
 *   (`onReset`) and reads back 0; the other bits are kept.
 * - 0x80: keeps the last POST code written and reads it back.
 *
 * A20 starts enabled: the processor model does not wrap addresses at 1 MiB.
 */
export class SystemPorts implements PortDevice {
  /** A20 gate (port 0x92 bit 1, or the 8042 output port bit 1). */
  a20Enabled = true;
  /** The last byte written to port 0x80. */
  postCode = 0;
  private portB = 0;
  private refresh = 0;
  private port92 = 0;

  constructor(private readonly pit: Channel2, private readonly onReset: () => void = () => {}) {}

  attach(bus: PortBus): void {
    bus.register(0x61, 1, this);
    bus.register(0x80, 1, this);
    bus.register(0x92, 1, this);
  }

  /** A reset request from port 0x92 or the 8042. */
  reset(): void { this.onReset(); }

  read(port: number): number {
    switch (port) {
      case 0x61:
        this.refresh ^= 0x10;
        return this.portB | this.refresh | (this.pit.output(2) ? 0x20 : 0);
      case 0x92: return (this.port92 & ~3) | (this.a20Enabled ? 2 : 0);
      default: return this.postCode;
    }
  }

  write(port: number, _size: PortSize, value: number): void {
    switch (port) {
      case 0x61:
        this.portB = value & 0x0f;
        this.pit.setGate(2, (value & 1) !== 0);
        return;
      case 0x92:
        this.port92 = value & ~1;
        this.a20Enabled = (value & 2) !== 0;
        if (value & 1) this.reset();
        return;
      default: this.postCode = value;
    }
  }
}

/**
 * The 8042 keyboard controller with nothing attached to it: the status
 * register (0x64) always shows an empty output buffer and an empty input buffer
 * (bits 0 and 1 clear), the system flag (bit 2) and "keyboard not inhibited"
 * (bit 4) set, and bit 3 telling whether the last write was a command.
 * Commands that answer with data produce nothing, so drivers time out.
 *
 * A20 and reset are honoured: command 0xD1 followed by a data byte writes the
 * output port (bit 1 = A20 gate, bit 0 = 0 resets the processor), 0xDD/0xDF
 * disable/enable A20, and 0xF0-0xFF with bit 0 clear pulse the reset line.
 * Command 0x60 takes the next data byte as the command byte (kept, unused).
 */
export class Kbc8042 implements PortDevice {
  /** The command byte (written by command 0x60). */
  commandByte = 0;
  private lastWasCommand = false;
  private pending = 0;

  constructor(private readonly system: SystemPorts) {}

  attach(bus: PortBus): void {
    bus.register(0x60, 1, this);
    bus.register(0x64, 1, this);
  }

  read(port: number): number {
    if (port === 0x64) return 0x14 | (this.lastWasCommand ? 0x08 : 0);
    return 0; // output buffer empty: nothing to read
  }

  write(port: number, _size: PortSize, value: number): void {
    this.lastWasCommand = port === 0x64;
    if (port === 0x64) {
      this.pending = 0;
      if (value === 0xd1 || value === 0x60) this.pending = value;
      else if (value === 0xdd) this.system.a20Enabled = false;
      else if (value === 0xdf) this.system.a20Enabled = true;
      else if (value >= 0xf0 && (value & 1) === 0) this.system.reset();
      return;
    }
    const command = this.pending;
    this.pending = 0;
    if (command === 0xd1) {
      this.system.a20Enabled = (value & 2) !== 0;
      if ((value & 1) === 0) this.system.reset();
    } else if (command === 0x60) {
      this.commandByte = value;
    } // else: a byte for the keyboard, which is absent
  }
}
