/**
 * The flat-binary loader: the image's bytes are copied to one physical address
 * and the processor starts at that address in the chosen mode.
 */
import type { Cpu } from '../cpu/cpu.js';

/** A user-facing problem with an image: the CLI prints it as one line and exits 2. */
export class ImageError extends Error {}

export type StartMode = 64 | 32;

export function loadFlat(cpu: Cpu, image: Uint8Array, address: number, mode: StartMode): void {
  if (image.length === 0) throw new ImageError('the image is empty');
  if (!Number.isSafeInteger(address) || address < 0) throw new ImageError(`bad load address ${address}`);
  if (address + image.length > cpu.memory.size) {
    throw new ImageError(`the image (${image.length} bytes at 0x${address.toString(16)}) does not fit in ` +
      `${cpu.memory.size} bytes of memory`);
  }
  if (mode === 64) cpu.enterFlat64(); else cpu.enterFlat32();
  cpu.memory.load(address, image);
  cpu.ripLo = address | 0;
  cpu.ripHi = 0;
}
