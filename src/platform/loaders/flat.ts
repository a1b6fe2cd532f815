/**
 * The flat-binary loader: the image's bytes are copied to one physical address
 * and the processor starts at that address in the chosen mode.
 */
import type { Cpu } from '../../cpu/cpu.js';
import { enterRealMode, powerOn } from '../../cpu/reset.js';
import { hex, ImageError } from './errors.js';
import { enterFlatMode, PhysicalLayout, setEntry } from './layout.js';

/** Real-address mode, flat 32-bit protected mode or 64-bit mode (numbers and strings both accepted). */
export type StartMode = 'real' | '32' | '64' | 32 | 64;

/**
 * Loads `image` at physical `address` and starts there: real mode at
 * CS:IP = (address >> 4):(address & 0xF); 32-bit mode with the boot GDT; 64-bit
 * mode with the boot GDT and identity-mapped page tables (placed by layout.ts).
 */
export function loadFlat(cpu: Cpu, image: Uint8Array, address: number, mode: StartMode, memorySize = cpu.memory.size): void {
  if (image.length === 0) throw new ImageError('the image is empty');
  if (!Number.isSafeInteger(address) || address < 0) throw new ImageError(`bad load address ${address}`);
  const m = String(mode);
  if (m !== 'real' && m !== '32' && m !== '64') throw new ImageError(`unknown start mode '${m}' (real, 32 or 64)`);
  // Real mode reaches F000:FFFF at most (SDM vol. 3A, 20.1.1): the start must be below 1 MiB.
  if (m === 'real' && address >= 0x100000) throw new ImageError(`real mode cannot start at ${hex(address)}: above 1 MiB`);
  if (m === '32' && address >= 2 ** 32) throw new ImageError(`32-bit mode cannot start at ${hex(address)}: above 4 GiB`);
  const layout = new PhysicalLayout(memorySize);
  layout.claim(address, image.length, 'the image');
  powerOn(cpu);
  cpu.memory.load(address, image);
  if (m === 'real') { enterRealMode(cpu, address >>> 4, address & 0xf); return; }
  enterFlatMode(cpu, layout, m === '32' ? 32 : 64);
  setEntry(cpu, address);
}
