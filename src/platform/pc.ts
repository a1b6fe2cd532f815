/**
 * The PC's port-I/O platform in one call: every device of this folder on one
 * PortBus, with the standard ISA interrupt lines (PIT → IRQ 0, COM1 → IRQ 4,
 * RTC → IRQ 8) into the 8259A pair.
 *
 * Ports: 0x20-0x21/0xA0-0xA1 PIC, 0x40-0x43 PIT, 0x60/0x64 8042, 0x61 port B,
 * 0x70-0x71 CMOS/RTC, 0x80 POST, 0x92 port A, 0xE0 phase marker, 0xF4 debug-exit, 0x3F8-0x3FF COM1,
 * 0x4D0-0x4D1 ELCR, 0x510-0x511 fw_cfg, 0xCF8-0xCFF PCI configuration.
 */
import { Clock } from './clock.js';
import { Cmos } from './cmos.js';
import { DebugExit } from './debug-exit.js';
import { FwCfg } from './fwcfg.js';
import { PciHost } from './pci.js';
import { PhaseMarker } from './phase-marker.js';
import { PicPair } from './pic8259.js';
import { Pit8254 } from './pit8254.js';
import { Kbc8042, PortBus, SystemPorts } from './ports.js';
import { Uart16550 } from './uart16550.js';

export interface PcOptions {
  /** Instructions retired so far: the time base (1 instruction = 1 ns). */
  instructions: () => number;
  /** Bytes of RAM (CMOS and fw_cfg report it). */
  memorySize: number;
  /** Processors (fw_cfg); default 1. */
  cpuCount?: number;
  /** Bytes the guest writes to COM1. */
  serialOut?: (byte: number) => void;
  /** The guest wrote to the debug-exit port; `status` = (value << 1) | 1. */
  onExit?: (status: number) => void;
  /** The guest asked for a reset (port 0x92 bit 0, 8042 command 0xFE). */
  onReset?: () => void;
  /** RTC time at guest time 0, seconds since 1970 (default 2024-01-01 00:00:00). */
  rtcEpoch?: number;
}

export interface PcPorts {
  bus: PortBus;
  /** The interrupt source: `intr()` and `acknowledge()` for the processor. */
  pic: PicPair;
  pit: Pit8254;
  uart: Uart16550;
  cmos: Cmos;
  fwcfg: FwCfg;
  pci: PciHost;
  debugExit: DebugExit;
  /** Port 0xE0: the phase the guest marked for the cost model. */
  phase: PhaseMarker;
  /** Ports 0x61/0x80/0x92: `a20Enabled`, `postCode`. */
  system: SystemPorts;
  kbc: Kbc8042;
  clock: Clock;
}

export function createPcPorts(options: PcOptions): PcPorts {
  const clock = new Clock(options.instructions);
  const bus = new PortBus();
  const pic = new PicPair();
  const pit = new Pit8254(clock, (level) => pic.setIrq(0, level));
  const uart = new Uart16550({ clock, output: options.serialOut, setIrq: (level) => pic.setIrq(4, level) });
  const cmos = new Cmos({ clock, memorySize: options.memorySize, epoch: options.rtcEpoch, setIrq: (level) => pic.setIrq(8, level) });
  const fwcfg = new FwCfg({ memorySize: options.memorySize, cpuCount: options.cpuCount });
  const pci = new PciHost();
  const debugExit = new DebugExit(options.onExit ?? (() => {}));
  const phase = new PhaseMarker();
  const system = new SystemPorts(pit, options.onReset);
  const kbc = new Kbc8042(system);
  for (const device of [pic, pit, uart, cmos, fwcfg, pci, debugExit, phase, system, kbc]) device.attach(bus);
  return { bus, pic, pit, uart, cmos, fwcfg, pci, debugExit, phase, system, kbc, clock };
}
