/**
 * Multiboot version 1 (Multiboot Specification version 0.6.96): the header
 * (3.1), the machine state at entry (3.2) and the boot information (3.3).
 *
 * Memory layout (see also layout.ts):
 * - the kernel where its header or ELF program headers say (p_paddr);
 * - modules above the kernel, in order, page-aligned when header flag 0 asks
 *   (8-byte aligned otherwise);
 * - the boot GDT (32 bytes) and then one block with the boot information,
 *   first-fit in the boot area from 0x90000 (so normally GDT at 0x90000, info
 *   at 0x90020), or above the modules when the boot area is taken. The block:
 *     +0    the information structure (116 bytes, padded to 120)
 *     +120  the memory map (24 bytes an entry: size = 20, base_addr, length, type)
 *     then  the module list (16 bytes a module), then the strings: the command
 *           line, the boot loader name "hvsim", each module's string.
 */
import type { Cpu } from '../../cpu/cpu.js';
import { RAX, RBX } from '../../cpu/regs.js';
import { powerOn } from '../../cpu/reset.js';
import { checkEntry, isElf, loadElfSegments, parseElf } from './elf.js';
import { hex, ImageError } from './errors.js';
import { enterFlatMode, PhysicalLayout, setEntry } from './layout.js';

export const MULTIBOOT_HEADER_MAGIC = 0x1badb002;
/** EAX at entry: tells the kernel a Multiboot-compliant loader started it (3.2). */
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2badb002;
/** The header lies within the first 8192 bytes, 32-bit aligned (3.1.1). */
export const MULTIBOOT_SEARCH = 8192;

/** Header flags (3.1.2). Bits 0-15 are requirements: a loader that lacks one must fail. */
export const MB_PAGE_ALIGN = 1 << 0, MB_MEMORY_INFO = 1 << 1, MB_VIDEO_MODE = 1 << 2, MB_AOUT_KLUDGE = 1 << 16;
const MB_SUPPORTED = MB_PAGE_ALIGN | MB_MEMORY_INFO | MB_VIDEO_MODE; // video: no display, so the request is ignored

/** Information flags (3.3). */
export const MBI_MEMORY = 1 << 0, MBI_CMDLINE = 1 << 2, MBI_MODS = 1 << 3, MBI_MMAP = 1 << 6, MBI_LOADER_NAME = 1 << 9;
export const MBI_SIZE = 120;
export const BOOT_LOADER_NAME = 'hvsim';

export interface BootModule { bytes: Uint8Array; cmdline?: string }
export interface MultibootOptions {
  cmdline?: string;
  modules?: readonly BootModule[];
  /** Bytes of RAM to report and use (default: all of physical memory). */
  memorySize?: number;
}

export interface MultibootHeader {
  /** File offset of the magic. */
  offset: number;
  flags: number;
  headerAddr: number;
  loadAddr: number;
  loadEndAddr: number;
  bssEndAddr: number;
  entryAddr: number;
}

export interface MultibootResult {
  entry: number;
  /** Physical address of the information structure (EBX). */
  info: number;
  /** Where each module landed: [mod_start, mod_end). */
  modules: { start: number; end: number }[];
}

/** File offset of the Multiboot header magic, or -1 when the image has none. */
export function findMultibootHeader(bytes: Uint8Array): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = Math.min(bytes.length, MULTIBOOT_SEARCH) - 12;
  for (let off = 0; off <= end; off += 4) if (v.getUint32(off, true) === MULTIBOOT_HEADER_MAGIC) return off;
  return -1;
}

/** Finds and checks the header (3.1.1, 3.1.2, 3.1.3). */
export function parseMultibootHeader(bytes: Uint8Array): MultibootHeader {
  const offset = findMultibootHeader(bytes);
  if (offset < 0) {
    throw new ImageError(`no Multiboot header (magic ${hex(MULTIBOOT_HEADER_MAGIC)}) in the first ${MULTIBOOT_SEARCH} bytes`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u32 = (i: number): number => v.getUint32(offset + 4 * i, true);
  const flags = u32(1);
  if (((MULTIBOOT_HEADER_MAGIC + flags + u32(2)) | 0) !== 0) {
    throw new ImageError(`bad Multiboot header checksum at offset ${hex(offset)}: magic + flags + checksum must be 0 mod 2^32`);
  }
  const missing = flags & 0xffff & ~MB_SUPPORTED;
  if (missing) throw new ImageError(`the Multiboot header requires features hvsim lacks (flag bits ${hex(missing)})`);
  const h: MultibootHeader = { offset, flags, headerAddr: 0, loadAddr: 0, loadEndAddr: 0, bssEndAddr: 0, entryAddr: 0 };
  if (flags & MB_AOUT_KLUDGE) {
    if (offset + 32 > Math.min(bytes.length, MULTIBOOT_SEARCH)) {
      throw new ImageError('truncated Multiboot header: flag 16 needs the address fields (32 bytes)');
    }
    h.headerAddr = u32(3); h.loadAddr = u32(4); h.loadEndAddr = u32(5); h.bssEndAddr = u32(6); h.entryAddr = u32(7);
  }
  return h;
}

/** Loads the kernel by the header's address fields (3.1.3): returns the entry address. */
function loadAout(cpu: Cpu, bytes: Uint8Array, h: MultibootHeader, layout: PhysicalLayout): number {
  if (h.loadAddr > h.headerAddr) {
    throw new ImageError(`Multiboot load_addr ${hex(h.loadAddr)} is above header_addr ${hex(h.headerAddr)}`);
  }
  // The file offset to load from: the header's offset less (header_addr - load_addr).
  const from = h.offset - (h.headerAddr - h.loadAddr);
  if (from < 0) throw new ImageError('Multiboot header_addr - load_addr reaches before the start of the file');
  const loadEnd = h.loadEndAddr === 0 ? h.loadAddr + bytes.length - from : h.loadEndAddr;
  if (loadEnd < h.loadAddr) throw new ImageError(`Multiboot load_end_addr ${hex(loadEnd)} is below load_addr ${hex(h.loadAddr)}`);
  const size = loadEnd - h.loadAddr;
  if (from + size > bytes.length) {
    throw new ImageError(`truncated image: the Multiboot header asks for ${size} bytes from offset ${hex(from)}, ` +
      `the file has ${bytes.length}`);
  }
  const bssEnd = h.bssEndAddr === 0 ? loadEnd : h.bssEndAddr;
  if (bssEnd < loadEnd) throw new ImageError(`Multiboot bss_end_addr ${hex(bssEnd)} is below load_end_addr ${hex(loadEnd)}`);
  layout.claim(h.loadAddr, bssEnd - h.loadAddr, 'the kernel');
  cpu.memory.load(h.loadAddr, bytes.subarray(from, from + size));
  for (let a = loadEnd; a < bssEnd; a++) cpu.memory.write8(a, 0);
  return h.entryAddr;
}

/**
 * Loads an ELF kernel by its program headers: returns the entry address. An
 * e_entry inside a segment's virtual range is translated to the physical
 * address it was loaded at (a higher-half kernel's entry is virtual).
 */
function loadElfKernel(cpu: Cpu, bytes: Uint8Array, layout: PhysicalLayout): number {
  const elf = parseElf(bytes);
  loadElfSegments(cpu, elf, bytes, layout);
  let entry = elf.entry;
  for (const s of elf.segments) {
    if (entry >= s.vaddr && entry < s.vaddr + BigInt(s.memsz)) { entry = entry - s.vaddr + BigInt(s.paddr); break; }
  }
  if (entry >= 2n ** 32n) throw new ImageError(`the entry point ${hex(entry)} is above 4 GiB: a Multiboot kernel starts in 32-bit mode`);
  return Number(entry);
}

export interface MemoryMapEntry { base: number; length: number; type: 1 | 2 }

/** RAM below the EBDA and above the BIOS area; the APIC hole starts here (when RAM reaches it). */
const EBDA = 0x9fc00, BIOS_ROM = 0xf0000, MIB = 0x100000, APIC_HOLE = 0xfec00000, FOUR_GIB = 2 ** 32;

/**
 * The BIOS-style memory map handed to the kernel (3.3, type 1 = available RAM,
 * 2 = reserved): [0, 0x9FC00) RAM; [0x9FC00, 0xA0000) EBDA; [0xF0000, 1 MiB)
 * BIOS ROM; [1 MiB, top) RAM with top = min(memory, 0xFEC00000); with more
 * memory, [0xFEC00000, 4 GiB) reserved for the I/O APIC and local APIC and the
 * rest of RAM above 4 GiB. The VGA window 0xA0000-0xEFFFF is listed as nothing.
 */
export function memoryMap(memorySize: number): MemoryMapEntry[] {
  const map: MemoryMapEntry[] = [
    { base: 0, length: Math.min(memorySize, EBDA), type: 1 },
    { base: EBDA, length: 0xa0000 - EBDA, type: 2 },
    { base: BIOS_ROM, length: MIB - BIOS_ROM, type: 2 },
  ];
  if (memorySize > MIB) map.push({ base: MIB, length: Math.min(memorySize, APIC_HOLE) - MIB, type: 1 });
  if (memorySize > APIC_HOLE) map.push({ base: APIC_HOLE, length: FOUR_GIB - APIC_HOLE, type: 2 });
  if (memorySize > FOUR_GIB) map.push({ base: FOUR_GIB, length: memorySize - FOUR_GIB, type: 1 });
  return map;
}

/** A byte buffer written little-endian, for the information block. */
class Block {
  readonly bytes: Uint8Array;
  private readonly v: DataView;
  constructor(size: number) { this.bytes = new Uint8Array(size); this.v = new DataView(this.bytes.buffer); }
  u32(o: number, x: number): void { this.v.setUint32(o, x >>> 0, true); }
  u64(o: number, x: number): void { this.v.setBigUint64(o, BigInt(x), true); }
}

/**
 * Loads a Multiboot kernel, its modules and the boot information, and leaves
 * the processor in the state of 3.2.
 */
export function loadMultiboot(cpu: Cpu, bytes: Uint8Array, options: MultibootOptions = {}): MultibootResult {
  const h = parseMultibootHeader(bytes);
  if (!(h.flags & MB_AOUT_KLUDGE) && !isElf(bytes)) {
    throw new ImageError('the Multiboot header has no address fields (flag 16) and the image is not ELF');
  }
  powerOn(cpu);
  const size = options.memorySize ?? cpu.memory.size;
  const layout = new PhysicalLayout(size);
  // Flag 16 takes precedence over the ELF headers when both are present (3.1.3).
  const entry = h.flags & MB_AOUT_KLUDGE ? loadAout(cpu, bytes, h, layout) : loadElfKernel(cpu, bytes, layout);
  checkEntry(BigInt(entry), size);

  const modules = options.modules ?? [];
  const placed = modules.map((mod, i) => {
    const start = layout.place(mod.bytes.length, h.flags & MB_PAGE_ALIGN ? 4096 : 8, `module ${i}`, true);
    if (start + mod.bytes.length > FOUR_GIB) throw new ImageError(`module ${i} would end above 4 GiB, beyond 32-bit mod_end`);
    cpu.memory.load(start, mod.bytes);
    return { start, end: start + mod.bytes.length };
  });

  enterFlatMode(cpu, layout, 32);

  // The information block: structure, memory map, module list, strings.
  const enc = new TextEncoder();
  const cstr = (s: string): Uint8Array => { const b = enc.encode(s); const z = new Uint8Array(b.length + 1); z.set(b); return z; };
  const map = memoryMap(size);
  const strings = [cstr(options.cmdline ?? ''), cstr(BOOT_LOADER_NAME), ...modules.map((m) => cstr(m.cmdline ?? ''))];
  const mmapAt = MBI_SIZE, modsAt = mmapAt + 24 * map.length;
  let strAt = modsAt + 16 * modules.length;
  const total = strAt + strings.reduce((n, s) => n + s.length, 0);
  const info = layout.place(total, 8, 'the Multiboot information');
  if (info + total > FOUR_GIB) throw new ImageError('the Multiboot information would lie above 4 GiB');
  const b = new Block(total);
  const stringAddr: number[] = [];
  for (const s of strings) { b.bytes.set(s, strAt); stringAddr.push(info + strAt); strAt += s.length; }

  b.u32(0, MBI_MEMORY | MBI_CMDLINE | MBI_MODS | MBI_MMAP | MBI_LOADER_NAME);
  // mem_lower/mem_upper in KiB: RAM from 0 and from 1 MiB to the first hole (3.3).
  b.u32(4, Math.floor(Math.min(size, EBDA) / 1024));
  b.u32(8, size > MIB ? Math.floor((Math.min(size, APIC_HOLE) - MIB) / 1024) : 0);
  b.u32(16, stringAddr[0]!);
  b.u32(20, modules.length);
  b.u32(24, info + modsAt);
  b.u32(44, 24 * map.length);
  b.u32(48, info + mmapAt);
  b.u32(64, stringAddr[1]!);
  map.forEach((e, i) => {
    const o = mmapAt + 24 * i;
    b.u32(o, 20); // size of the entry, not counting this field
    b.u64(o + 4, e.base);
    b.u64(o + 12, e.length);
    b.u32(o + 20, e.type);
  });
  placed.forEach((p, i) => {
    const o = modsAt + 16 * i;
    b.u32(o, p.start);
    b.u32(o + 4, p.end);
    b.u32(o + 8, stringAddr[2 + i]!);
  });
  cpu.memory.load(info, b.bytes);

  // 3.2: EAX = magic, EBX = the information's physical address; EFLAGS.VM = IF = 0
  // (enterFlatMode left EFLAGS = 2). Everything else the spec leaves undefined is 0.
  cpu.gpr[2 * RAX] = MULTIBOOT_BOOTLOADER_MAGIC | 0;
  cpu.gpr[2 * RBX] = info;
  setEntry(cpu, entry);
  return { entry, info, modules: placed };
}
