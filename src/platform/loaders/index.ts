/**
 * Image loading: `loadImage` detects the format (Multiboot, ELF, flat binary),
 * loads the image and leaves the processor at its entry point.
 *
 * Physical memory layout. The image goes where it says (Multiboot header or
 * ELF p_paddr) or at `load` (flat). The loader's own structures are placed
 * first-fit in the boot area [0x90000, 0x9F000), below the EBDA, or, when the
 * image occupies it, above the highest byte of the image and modules:
 * - the boot GDT, 32 bytes (normally at 0x90000): null, 08H flat 32-bit code,
 *   10H flat data, 18H flat 64-bit code; GDTR points at it;
 * - 64-bit starts: identity-map page tables, 4 KiB aligned (normally from
 *   0x91000): PML4, PDPT, one page directory per GiB of max(4 GiB, memory),
 *   2 MiB pages;
 * - Multiboot: the information block right after the GDT (normally 0x90020),
 *   modules above the kernel (see multiboot.ts).
 * Every range is checked against the others: an ImageError names any clash.
 */
import type { Cpu } from '../../cpu/cpu.js';
import { isElf, loadElf } from './elf.js';
import { ImageError } from './errors.js';
import { loadFlat, type StartMode } from './flat.js';
import { findMultibootHeader, loadMultiboot, type BootModule } from './multiboot.js';

export { ImageError } from './errors.js';
export { loadFlat, type StartMode } from './flat.js';
export { loadElf, parseElf, isElf } from './elf.js';
export { loadMultiboot, memoryMap, type BootModule } from './multiboot.js';

export type ImageFormat = 'auto' | 'multiboot' | 'elf' | 'flat';

export interface LoadOptions {
  format?: ImageFormat;
  /** Flat binaries: the physical load and start address (default 0x1000). */
  load?: number;
  /** Flat binaries: the start mode (default 64). */
  mode?: StartMode;
  /** Multiboot: the kernel command line. */
  cmdline?: string;
  /** Multiboot: boot modules, each with its string. */
  modules?: readonly BootModule[];
  /** Bytes of RAM the image may use and is told of (default: all of physical memory). */
  memorySize?: number;
}

export interface LoadResult {
  format: 'multiboot' | 'elf' | 'flat';
  /** The mode the processor starts in. */
  mode: 'real' | 32 | 64;
  entry: bigint;
}

/** Multiboot if a header is found, else ELF if the magic matches, else flat. */
export function detectFormat(bytes: Uint8Array): 'multiboot' | 'elf' | 'flat' {
  if (findMultibootHeader(bytes) >= 0) return 'multiboot';
  return isElf(bytes) ? 'elf' : 'flat';
}

export function loadImage(cpu: Cpu, bytes: Uint8Array, options: LoadOptions = {}): LoadResult {
  const format = !options.format || options.format === 'auto' ? detectFormat(bytes) : options.format;
  if (format !== 'multiboot' && (options.cmdline !== undefined || (options.modules?.length ?? 0) > 0)) {
    throw new ImageError(`a command line and modules are for Multiboot kernels; this image is loaded as ${format}`);
  }
  switch (format) {
    case 'multiboot': {
      const r = loadMultiboot(cpu, bytes, options);
      return { format, mode: 32, entry: BigInt(r.entry) };
    }
    case 'elf': {
      const elf = loadElf(cpu, bytes, options.memorySize);
      return { format, mode: elf.bits, entry: elf.entry };
    }
    case 'flat': {
      const mode = options.mode ?? 64;
      const address = options.load ?? 0x1000;
      loadFlat(cpu, bytes, address, mode, options.memorySize);
      return { format, mode: mode === 'real' ? 'real' : Number(mode) as 32 | 64, entry: BigInt(address) };
    }
    default:
      throw new ImageError(`unknown image format '${String(format)}' (auto, multiboot, elf or flat)`);
  }
}
