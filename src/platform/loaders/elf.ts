/**
 * ELF executables (System V ABI, "ELF header" and "Program header"; the
 * x86-64 psABI for EM_X86_64). Segments are loaded by physical address
 * (p_paddr); bytes from p_filesz to p_memsz are zeroed.
 *
 * A plain ELF starts at e_entry: ELF32 (EM_386) in flat 32-bit protected mode,
 * ELF64 (EM_X86_64) in 64-bit mode with identity-mapped page tables.
 */
import type { Cpu } from '../../cpu/cpu.js';
import { powerOn } from '../../cpu/reset.js';
import { hex, ImageError } from './errors.js';
import { enterFlatMode, PhysicalLayout, setEntry } from './layout.js';

export const EM_386 = 3, EM_X86_64 = 62;
const ET_EXEC = 2, PT_LOAD = 1;
const ELFCLASS32 = 1, ELFCLASS64 = 2, ELFDATA2LSB = 1;

export interface ElfSegment {
  /** Index in the program-header table. */
  index: number;
  offset: number;
  vaddr: bigint;
  paddr: number;
  filesz: number;
  memsz: number;
}

export interface ElfImage {
  bits: 32 | 64;
  entry: bigint;
  /** The PT_LOAD segments with p_memsz > 0. */
  segments: ElfSegment[];
}

export function isElf(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
}

/** Reads and checks the ELF header and PT_LOAD program headers. */
export function parseElf(bytes: Uint8Array): ElfImage {
  if (!isElf(bytes)) throw new ImageError('not an ELF file (no \\x7fELF magic)');
  if (bytes.length < 16) throw new ImageError('truncated ELF: the identification bytes are cut short');
  const cls = bytes[4]!;
  if (cls !== ELFCLASS32 && cls !== ELFCLASS64) throw new ImageError(`unsupported ELF class ${cls} (1 = ELF32, 2 = ELF64)`);
  if (bytes[5] !== ELFDATA2LSB) throw new ImageError('unsupported ELF data encoding: x86 images are little-endian (ELFDATA2LSB)');
  const bits = cls === ELFCLASS32 ? 32 : 64;
  const ehsize = bits === 32 ? 52 : 64;
  if (bytes.length < ehsize) {
    throw new ImageError(`truncated ELF: the ELF${bits} header needs ${ehsize} bytes, the file has ${bytes.length}`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (o: number): number => v.getUint16(o, true);
  const u32 = (o: number): number => v.getUint32(o, true);
  const u64 = (o: number): bigint => v.getBigUint64(o, true);
  // Addresses and sizes as numbers: values beyond 2^53 are far outside memory and fail those checks.
  const word = (o: number): number => (bits === 32 ? u32(o) : Number(u64(o)));

  const type = u16(16), machine = u16(18);
  if (type !== ET_EXEC) throw new ImageError(`ELF type ${type} is not an executable (ET_EXEC = 2)`);
  const want = bits === 32 ? EM_386 : EM_X86_64;
  if (machine !== want) {
    throw new ImageError(`unsupported ELF machine ${machine} for ELF${bits} (expected ${bits === 32 ? 'EM_386 = 3' : 'EM_X86_64 = 62'})`);
  }
  const entry = bits === 32 ? BigInt(u32(24)) : u64(24);
  const phoff = word(bits === 32 ? 28 : 32);
  const phentsize = u16(bits === 32 ? 42 : 54), phnum = u16(bits === 32 ? 44 : 56);
  const phsize = bits === 32 ? 32 : 56;
  if (phnum === 0) throw new ImageError('the ELF has no program headers');
  if (phentsize !== phsize) throw new ImageError(`bad ELF e_phentsize ${phentsize} (ELF${bits} program headers are ${phsize} bytes)`);
  if (phoff + phnum * phsize > bytes.length) {
    throw new ImageError(`truncated ELF: ${phnum} program headers at offset ${hex(phoff)} run past the end of the file (${bytes.length} bytes)`);
  }
  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phsize;
    if (u32(p) !== PT_LOAD) continue;
    const s: ElfSegment = bits === 32
      ? { index: i, offset: u32(p + 4), vaddr: BigInt(u32(p + 8)), paddr: u32(p + 12), filesz: u32(p + 16), memsz: u32(p + 20) }
      : { index: i, offset: word(p + 8), vaddr: u64(p + 16), paddr: word(p + 24), filesz: word(p + 32), memsz: word(p + 40) };
    if (s.filesz > s.memsz) throw new ImageError(`ELF segment ${i}: p_filesz (${s.filesz}) exceeds p_memsz (${s.memsz})`);
    if (s.offset + s.filesz > bytes.length) {
      throw new ImageError(`truncated ELF: segment ${i} needs file bytes [${hex(s.offset)}, ${hex(s.offset + s.filesz)}), ` +
        `the file has ${bytes.length}`);
    }
    if (s.memsz > 0) segments.push(s);
  }
  if (segments.length === 0) throw new ImageError('the ELF has no loadable (PT_LOAD) segment');
  return { bits, entry, segments };
}

/** Claims each segment's physical range in `layout` and copies it into memory, zeroing the rest of p_memsz. */
export function loadElfSegments(cpu: Cpu, elf: ElfImage, bytes: Uint8Array, layout: PhysicalLayout): void {
  const m = cpu.memory;
  for (const s of elf.segments) {
    layout.claim(s.paddr, s.memsz, `ELF segment ${s.index}`);
    m.load(s.paddr, bytes.subarray(s.offset, s.offset + s.filesz));
    for (let a = s.paddr + s.filesz; a < s.paddr + s.memsz; a++) m.write8(a, 0);
  }
}

/** Throws unless `entry` lies in memory the start mode can reach (RAM, within the identity map). */
export function checkEntry(entry: bigint, limit: number): void {
  if (entry >= BigInt(limit)) throw new ImageError(`the entry point ${hex(entry)} lies outside memory`);
}

/** Loads a plain ELF executable and leaves the processor at its entry point. */
export function loadElf(cpu: Cpu, bytes: Uint8Array, memorySize = cpu.memory.size): ElfImage {
  const elf = parseElf(bytes);
  powerOn(cpu);
  const layout = new PhysicalLayout(memorySize);
  loadElfSegments(cpu, elf, bytes, layout);
  checkEntry(elf.entry, memorySize); // RAM is identity-mapped in 64-bit mode
  enterFlatMode(cpu, layout, elf.bits);
  setEntry(cpu, elf.entry);
  return elf;
}
