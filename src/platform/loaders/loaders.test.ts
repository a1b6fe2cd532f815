import { describe, expect, it } from 'vitest';
import { Cpu, EFER_LMA, EFER_LME } from '../../cpu/cpu.js';
import { CS, DS, RAX, RBX, RCX, RDX, RSI, RSP, SS } from '../../cpu/regs.js';
import { segmentsUnlikeGdt } from '../../cpu/reset.js';
import { run } from '../../cpu/run.js';
import { detectFormat, ImageError, loadFlat, loadImage, memoryMap, type LoadOptions } from './index.js';

const MIB = 1 << 20;

// ---- image builders ---------------------------------------------------------

interface Seg { paddr: number; vaddr?: bigint; data: ArrayLike<number>; memsz?: number }

/** An ELF32/ELF64 ET_EXEC with one PT_LOAD per segment, data laid out after the headers. */
function buildElf(bits: 32 | 64, entry: bigint, segs: Seg[], o: { machine?: number; type?: number } = {}): Uint8Array {
  const eh = bits === 32 ? 52 : 64, ph = bits === 32 ? 32 : 56;
  const align = (n: number): number => Math.ceil(n / 16) * 16;
  let off = align(eh + ph * segs.length);
  const offsets = segs.map((s) => { const at = off; off = align(off + s.data.length); return at; });
  const out = new Uint8Array(off);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, bits === 32 ? 1 : 2, 1, 1]);
  v.setUint16(16, o.type ?? 2, true);
  v.setUint16(18, o.machine ?? (bits === 32 ? 3 : 62), true);
  v.setUint32(20, 1, true);
  if (bits === 32) {
    v.setUint32(24, Number(entry), true); v.setUint32(28, eh, true);
    v.setUint16(40, eh, true); v.setUint16(42, ph, true); v.setUint16(44, segs.length, true);
  } else {
    v.setBigUint64(24, entry, true); v.setBigUint64(32, BigInt(eh), true);
    v.setUint16(52, eh, true); v.setUint16(54, ph, true); v.setUint16(56, segs.length, true);
  }
  segs.forEach((s, i) => {
    const p = eh + ph * i, vaddr = s.vaddr ?? BigInt(s.paddr), memsz = s.memsz ?? s.data.length;
    v.setUint32(p, 1, true); // PT_LOAD
    if (bits === 32) {
      v.setUint32(p + 4, offsets[i]!, true); v.setUint32(p + 8, Number(vaddr), true); v.setUint32(p + 12, s.paddr, true);
      v.setUint32(p + 16, s.data.length, true); v.setUint32(p + 20, memsz, true);
    } else {
      v.setBigUint64(p + 8, BigInt(offsets[i]!), true); v.setBigUint64(p + 16, vaddr, true);
      v.setBigUint64(p + 24, BigInt(s.paddr), true); v.setBigUint64(p + 32, BigInt(s.data.length), true);
      v.setBigUint64(p + 40, BigInt(memsz), true);
    }
    out.set(Array.from(s.data), offsets[i]!);
  });
  return out;
}

/** A Multiboot header (spec 3.1): magic, flags, checksum, then the optional fields. */
function mbHeader(flags: number, fields: number[] = [], checksumDelta = 0): number[] {
  const words = [0x1badb002, flags, (-(0x1badb002 + flags) + checksumDelta) >>> 0, ...fields];
  return words.flatMap((w) => [w & 0xff, (w >>> 8) & 0xff, (w >>> 16) & 0xff, (w >>> 24) & 0xff]);
}

const le32 = (x: number): number[] => [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, (x >>> 24) & 0xff];
const u32 = (cpu: Cpu, a: number): number => new DataView(cpu.memory.dump(a, 4).buffer).getUint32(0, true);
const u64 = (cpu: Cpu, a: number): bigint => new DataView(cpu.memory.dump(a, 8).buffer).getBigUint64(0, true);
const cstring = (cpu: Cpu, a: number): string => {
  let s = '';
  for (let c = cpu.memory.read8(a); c !== 0; c = cpu.memory.read8(++a)) s += String.fromCharCode(c);
  return s;
};
const cpu64M = (): Cpu => new Cpu({ memorySize: 64 * MIB });
const expectImageError = (f: () => unknown, message: RegExp): void => {
  expect(f).toThrow(ImageError);
  expect(f).toThrow(message);
};

/**
 * A higher-half ELF32 Multiboot kernel: segment 0 (vaddr C0100000H, paddr
 * 100000H) holds the header and code, segment 1 (paddr 102000H) 4 bytes of data
 * and a 4 KiB .bss. The code reads mem_lower, the data and the .bss, reloads
 * DS/SS and CS from the loader's GDT, and halts.
 */
function multibootElf(flags = 0x3): Uint8Array {
  const code = [
    0x8b, 0x4b, 0x04, // mov ecx, [ebx+4]
    0x8b, 0x15, ...le32(0x102000), // mov edx, [102000h]
    0x8b, 0x35, ...le32(0x102100), // mov esi, [102100h]  (.bss)
    0x66, 0xb8, 0x10, 0x00, // mov ax, 10h
    0x8e, 0xd8, // mov ds, ax
    0x8e, 0xd0, // mov ss, ax
    0xea, ...le32(0x100010 + 30), 0x08, 0x00, // jmp 08h:next
    0xf4, // next: hlt
  ];
  const text = [...mbHeader(flags), 0, 0, 0, 0, ...code];
  return buildElf(32, 0xc0100010n, [
    { paddr: 0x100000, vaddr: 0xc0100000n, data: text },
    { paddr: 0x102000, vaddr: 0xc0102000n, data: le32(0x12345678), memsz: 0x1000 },
  ]);
}

// ---- Multiboot ---------------------------------------------------------------

describe('Multiboot v1 (Multiboot Specification 0.6.96)', () => {
  it('loads ELF PT_LOAD segments by p_paddr and zeroes .bss (3.1.3 "the ELF format")', () => {
    const cpu = cpu64M();
    cpu.memory.write8(0x102100, 0xaa); // stale byte in the .bss
    const r = loadImage(cpu, multibootElf());
    expect(r).toEqual({ format: 'multiboot', mode: 32, entry: 0x100010n });
    expect(Array.from(cpu.memory.dump(0x100000, 4))).toEqual([0x02, 0xb0, 0xad, 0x1b]);
    expect(u32(cpu, 0x102000)).toBe(0x12345678);
    expect(cpu.memory.read8(0x102100)).toBe(0);
  });

  it('machine state (3.2): EAX = 2BADB002H, EBX = info, flat 32-bit CS/DS/SS, PE = 1, PG = 0, IF = VM = 0', () => {
    const cpu = cpu64M();
    loadImage(cpu, multibootElf());
    expect(cpu.reg64(RAX)).toBe(0x2badb002n);
    expect(cpu.reg64(RBX)).toBe(0x90020n);
    expect(cpu.rip).toBe(0x100010n); // e_entry C0100010H translated through segment 0
    expect(cpu.cr0 & 0x80000001).toBe(1);
    expect(cpu.efer).toBe(0);
    expect(cpu.rflags).toBe(2);
    expect([cpu.segBase[2 * CS], cpu.segLimit[CS], cpu.segAttr[CS]]).toEqual([0, 0xffffffff, 0xc09b]);
    expect([cpu.segBase[2 * DS], cpu.segLimit[DS], cpu.segAttr[DS]]).toEqual([0, 0xffffffff, 0xc093]);
    expect([cpu.gdtrLo, cpu.gdtrLimit]).toEqual([0x90000, 31]);
    expect(segmentsUnlikeGdt(cpu)).toEqual([]);
    expect(cpu.codeSize).toBe(4);
  });

  it('the kernel runs: reads the info, its data and .bss, reloads segments from the GDT and halts', () => {
    const cpu = cpu64M();
    loadImage(cpu, multibootElf());
    expect(run(cpu, 100)).toEqual({ kind: 'halt' });
    expect(cpu.reg64(RCX)).toBe(639n);
    expect(cpu.reg64(RDX)).toBe(0x12345678n);
    expect(cpu.reg64(RSI)).toBe(0n);
    expect([cpu.segSel[CS], cpu.segSel[DS], cpu.segSel[SS]]).toEqual([0x08, 0x10, 0x10]);
    expect(segmentsUnlikeGdt(cpu)).toEqual([]);
  });

  it('boot information (3.3): flags, mem_lower/upper, cmdline, modules, memory map, boot loader name', () => {
    const cpu = cpu64M();
    const modA = new Uint8Array(5000).fill(0x41), modB = Uint8Array.of(1, 2, 3);
    loadImage(cpu, multibootElf(), {
      cmdline: 'console=ttyS0 quiet',
      modules: [{ bytes: modA, cmdline: 'initrd.img' }, { bytes: modB, cmdline: 'b' }],
    });
    const mbi = 0x90020;
    expect(u32(cpu, mbi)).toBe(0x24d); // mem, cmdline, mods, mmap, boot_loader_name
    expect(u32(cpu, mbi + 4)).toBe(639);
    expect(u32(cpu, mbi + 8)).toBe(63 * 1024);
    expect(cstring(cpu, u32(cpu, mbi + 16))).toBe('console=ttyS0 quiet');
    expect(cstring(cpu, u32(cpu, mbi + 64))).toBe('hvsim');
    // Modules: after the kernel (ends at 103000H), page-aligned (header flag 0).
    expect(u32(cpu, mbi + 20)).toBe(2);
    const mods = u32(cpu, mbi + 24);
    expect([u32(cpu, mods), u32(cpu, mods + 4)]).toEqual([0x103000, 0x103000 + 5000]);
    expect([u32(cpu, mods + 16), u32(cpu, mods + 20)]).toEqual([0x105000, 0x105003]);
    expect(cstring(cpu, u32(cpu, mods + 8))).toBe('initrd.img');
    expect(cstring(cpu, u32(cpu, mods + 24))).toBe('b');
    expect(cpu.memory.dump(0x103000, 5000).every((b) => b === 0x41)).toBe(true);
    expect(Array.from(cpu.memory.dump(0x105000, 3))).toEqual([1, 2, 3]);
    // Memory map: 4 entries of 24 bytes (size = 20, base, length, type).
    expect(u32(cpu, mbi + 44)).toBe(96);
    const mmap = u32(cpu, mbi + 48);
    const entries = [0, 1, 2, 3].map((i) => {
      const e = mmap + 24 * i;
      return [u32(cpu, e), u64(cpu, e + 4), u64(cpu, e + 12), u32(cpu, e + 20)];
    });
    expect(entries).toEqual([
      [20, 0n, 0x9fc00n, 1],
      [20, 0x9fc00n, 0x400n, 2],
      [20, 0xf0000n, 0x10000n, 2],
      [20, 0x100000n, BigInt(63 * MIB), 1],
    ]);
    expect(Array.from(cpu.memory.dump(mmap, 8))).toEqual([20, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('modules are 8-byte aligned when header flag 0 is clear (3.1.2)', () => {
    const cpu = cpu64M();
    loadImage(cpu, multibootElf(0x2), { modules: [{ bytes: new Uint8Array(5) }, { bytes: new Uint8Array(5) }] });
    const mods = u32(cpu, 0x90020 + 24);
    expect([u32(cpu, mods), u32(cpu, mods + 16)]).toEqual([0x103000, 0x103008]);
  });

  it('the memory map above 4 GiB memory: the APIC hole FEC00000H-4 GiB is reserved', () => {
    expect(memoryMap(5 * 2 ** 30).slice(3)).toEqual([
      { base: MIB, length: 0xfec00000 - MIB, type: 1 },
      { base: 0xfec00000, length: 2 ** 32 - 0xfec00000, type: 2 },
      { base: 2 ** 32, length: 2 ** 30, type: 1 },
    ]);
  });

  it('a.out kludge (flag 16): loads by header_addr/load_addr, zeroes to bss_end_addr, starts at entry_addr', () => {
    // File offset 0: 16 bytes of text, the header at 10H, code at 40H. load_end_addr 0 = the rest of the file.
    const file = new Uint8Array(0x50);
    file.fill(0xcc, 0, 16);
    file.set(mbHeader(0x10006, [0x200010, 0x200000, 0, 0x201000, 0x200040]), 0x10); // flag 2 (video) is ignored
    file.set([0xb8, ...le32(0xfeedf00d), 0xf4], 0x40); // mov eax, FEEDF00Dh; hlt
    const cpu = cpu64M();
    cpu.memory.write8(0x200f00, 0x55);
    expect(loadImage(cpu, file)).toEqual({ format: 'multiboot', mode: 32, entry: 0x200040n });
    expect(Array.from(cpu.memory.dump(0x200000, 0x50))).toEqual(Array.from(file));
    expect(cpu.memory.read8(0x200f00)).toBe(0);
    expect(cpu.reg64(RAX)).toBe(0x2badb002n);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    expect(cpu.reg64(RAX)).toBe(0xfeedf00dn);
  });

  it('a.out kludge with load_end_addr: loads only [load_addr, load_end_addr)', () => {
    const file = new Uint8Array(0x100).fill(0x77);
    file.set(mbHeader(0x10000, [0x300000, 0x300000, 0x300040, 0, 0x300000]), 0);
    const cpu = cpu64M();
    loadImage(cpu, file);
    expect(cpu.memory.read8(0x30003f)).toBe(0x77);
    expect(cpu.memory.read8(0x300040)).toBe(0);
  });

  it('the header is found anywhere 32-bit aligned in the first 8192 bytes (3.1.1)', () => {
    const at = (off: number, len: number): Uint8Array => {
      const f = new Uint8Array(len);
      f.set(mbHeader(0x10000, [0x100000 + off, 0x100000, 0, 0, 0x100000]), off);
      return f;
    };
    expect(detectFormat(at(8192 - 32, 9000))).toBe('multiboot');
    expect(detectFormat(at(8192, 9000))).toBe('flat');
    const f = at(0, 64);
    f.copyWithin(2, 0, 40); // misaligned
    f.fill(0, 0, 2);
    expect(detectFormat(f)).toBe('flat');
  });

  it('errors name the problem', () => {
    const cpu = cpu64M();
    const load = (bytes: Uint8Array, o: LoadOptions = {}): unknown => loadImage(cpu, bytes, o);
    expectImageError(() => load(new Uint8Array(64), { format: 'multiboot' }), /no Multiboot header/);
    expectImageError(() => load(Uint8Array.from(mbHeader(0x10000, [0, 0, 0, 0, 0], 1))), /bad Multiboot header checksum/);
    expectImageError(() => load(Uint8Array.from(mbHeader(0x8))), /requires features hvsim lacks \(flag bits 0x8\)/);
    expectImageError(() => load(Uint8Array.from(mbHeader(0x0))), /no address fields .* not ELF/);
    expectImageError(() => load(Uint8Array.from(mbHeader(0x10000).concat([0, 0, 0, 0]))), /truncated Multiboot header/);
    expectImageError(() => load(Uint8Array.from(mbHeader(0x10000, [0x100000, 0x100010, 0, 0, 0x100010]))),
      /load_addr 0x100010 is above header_addr 0x100000/);
    expectImageError(() => load(Uint8Array.from(mbHeader(0x10000, [0x100010, 0x100000, 0, 0, 0x100000]))),
      /reaches before the start of the file/);
    expectImageError(() => load(Uint8Array.from(mbHeader(0x10000, [0x100000, 0x100000, 0x100100, 0, 0x100000]))),
      /truncated image: the Multiboot header asks for 256 bytes/);
    expectImageError(() => load(Uint8Array.from(mbHeader(0x10000, [0x100000, 0x100000, 0x100020, 0x100010, 0x100000]))),
      /bss_end_addr 0x100010 is below load_end_addr 0x100020/);
    expectImageError(() => load(Uint8Array.from(mbHeader(0x10000, [64 * MIB, 64 * MIB, 0, 0, 64 * MIB]))),
      /the kernel \(32 bytes at 0x4000000\) does not fit in 67108864 bytes of memory/);
    expectImageError(() => load(Uint8Array.from(mbHeader(0x10000, [0x100000, 0x100000, 0, 0, 0x8000000]))),
      /the entry point 0x8000000 lies outside memory/);
    expectImageError(() => load(multibootElf(), { modules: [{ bytes: new Uint8Array(63 * MIB) }] }),
      /no room in 67108864 bytes of memory for module 0/);
  });

  it('ELF errors: segment outside memory, overlapping segments, truncated ELF', () => {
    const cpu = cpu64M();
    const hdr = mbHeader(0x2);
    expectImageError(() => loadImage(cpu, buildElf(32, 0x100000n, [{ paddr: 63 * MIB, data: hdr, memsz: 2 * MIB }])),
      /ELF segment 0 \(2097152 bytes at 0x3f00000\) does not fit/);
    expectImageError(() => loadImage(cpu, buildElf(32, 0x100000n, [
      { paddr: 0x100000, data: hdr, memsz: 0x2000 }, { paddr: 0x101000, data: [1] }])),
    /ELF segment 1 \(\[0x101000, 0x101001\)\) overlaps ELF segment 0 \(\[0x100000, 0x102000\)\)/);
    const elf = buildElf(32, 0x100000n, [{ paddr: 0x100000, data: [...hdr, ...new Array(100).fill(0)] }]);
    expectImageError(() => loadImage(cpu, elf.subarray(0, elf.length - 8)), /truncated ELF: segment 0 needs file bytes/);
  });
});

// ---- plain ELF ---------------------------------------------------------------

describe('ELF executables (System V ABI ELF header and program headers)', () => {
  const code64 = [
    0x48, 0xb8, ...le32(0x55667788), ...le32(0x11223344), // mov rax, 1122334455667788h
    0xc7, 0x04, 0x25, ...le32(0x3ff0000), ...le32(0xabcd), // mov dword [3FF0000h], 0ABCDh
    0xb9, 0x10, 0, 0, 0, 0x8e, 0xd9, // mov ecx, 10h; mov ds, ecx
    0x6a, 0x18, 0x48, 0x8d, 0x15, 3, 0, 0, 0, 0x52, 0x48, 0xcb, // push 18h; lea rdx, [rip+3]; push rdx; retfq
    0xf4, // hlt
  ];

  it('ELF64 starts in 64-bit mode at e_entry with an identity map and a GDT the guest can reload from', () => {
    const cpu = cpu64M();
    const r = loadImage(cpu, buildElf(64, 0x400000n, [{ paddr: 0x400000, data: code64, memsz: 0x2000 }]));
    expect(r).toEqual({ format: 'elf', mode: 64, entry: 0x400000n });
    expect(cpu.rip).toBe(0x400000n);
    expect(cpu.efer).toBe(EFER_LME | EFER_LMA);
    expect(cpu.cr4).toBe(1 << 5);
    expect(cpu.cr0 >>> 0).toBe(0x80000011);
    expect([cpu.cr3Lo, cpu.cr3Hi]).toEqual([0x91000, 0]);
    expect([cpu.gdtrLo, cpu.segSel[CS], cpu.codeSize]).toEqual([0x90000, 0x18, 8]);
    expect(segmentsUnlikeGdt(cpu)).toEqual([]);
    // PML4[0] → PDPT at 92000H; PDPT[0..3] → PDs at 93000H-96000H; 2 MiB pages P|RW|PS.
    expect(u64(cpu, 0x91000)).toBe(0x92003n);
    expect(u64(cpu, 0x92000 + 24)).toBe(0x96003n);
    expect(u64(cpu, 0x93000 + 8 * 31)).toBe(0x3e00083n);
    cpu.gpr[2 * RSP] = 0x80000; // the loader leaves RSP = 0: the guest sets up its stack
    expect(run(cpu, 100)).toEqual({ kind: 'halt' });
    expect(cpu.reg64(RAX)).toBe(0x1122334455667788n);
    expect(u32(cpu, 0x3ff0000)).toBe(0xabcd);
    expect(segmentsUnlikeGdt(cpu)).toEqual([]);
  });

  it('ELF32 starts in flat 32-bit protected mode at e_entry', () => {
    const cpu = cpu64M();
    const code = [0xb8, ...le32(7), 0xf4]; // mov eax, 7; hlt
    expect(loadImage(cpu, buildElf(32, 0x200000n, [{ paddr: 0x200000, data: code }]))).toEqual({ format: 'elf', mode: 32, entry: 0x200000n });
    expect([cpu.cr0 & 0x80000001, cpu.efer, cpu.codeSize, cpu.segSel[CS]]).toEqual([1, 0, 4, 0x08]);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    expect(cpu.reg64(RAX)).toBe(7n);
  });

  it('the loader\'s structures move above the image when it occupies the boot area', () => {
    const cpu = cpu64M();
    loadImage(cpu, buildElf(64, 0x80000n, [{ paddr: 0x80000, data: [0xf4], memsz: 0x20000 }]));
    expect([cpu.gdtrLo, cpu.cr3Lo]).toEqual([0xa0000, 0xa1000]);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
  });

  it('errors: not ELF, class, byte order, type, machine, truncated headers, no PT_LOAD, entry outside memory', () => {
    const cpu = cpu64M();
    const ok = buildElf(32, 0x200000n, [{ paddr: 0x200000, data: [0xf4] }]);
    const patch = (at: number, b: number, src = ok): Uint8Array => { const c = src.slice(); c[at] = b; return c; };
    expectImageError(() => loadImage(cpu, new Uint8Array(8), { format: 'elf' }), /not an ELF file/);
    expectImageError(() => loadImage(cpu, patch(4, 3)), /unsupported ELF class 3/);
    expectImageError(() => loadImage(cpu, patch(5, 2)), /little-endian/);
    expectImageError(() => loadImage(cpu, patch(16, 3)), /ELF type 3 is not an executable/);
    expectImageError(() => loadImage(cpu, patch(18, 62)), /unsupported ELF machine 62 for ELF32 \(expected EM_386 = 3\)/);
    expectImageError(() => loadImage(cpu, buildElf(64, 0n, [{ paddr: 0, data: [1] }], { machine: 3 })),
      /unsupported ELF machine 3 for ELF64/);
    expectImageError(() => loadImage(cpu, ok.subarray(0, 40)), /truncated ELF: the ELF32 header needs 52 bytes/);
    expectImageError(() => loadImage(cpu, ok.subarray(0, 70)), /truncated ELF: 1 program headers at offset 0x34/);
    expectImageError(() => loadImage(cpu, patch(52, 0)), /no loadable \(PT_LOAD\) segment/);
    expectImageError(() => loadImage(cpu, buildElf(32, 0x8000000n, [{ paddr: 0x200000, data: [1] }])),
      /the entry point 0x8000000 lies outside memory/);
    expectImageError(() => loadImage(cpu, ok, { cmdline: 'x' }), /command line and modules are for Multiboot/);
  });
});

// ---- flat binaries -----------------------------------------------------------

describe('flat binaries', () => {
  it('real mode: CS:IP = (addr >> 4):(addr & 0xF), DS = SS = CS, and 16-bit code runs (SDM vol. 3A, 20.1.1)', () => {
    const cpu = cpu64M();
    const stub = [0xb8, 0x34, 0x12, 0x8c, 0xcb, 0x8c, 0xd1, 0x50, 0xf4]; // mov ax,1234h; mov bx,cs; mov cx,ss; push ax; hlt
    const r = loadImage(cpu, Uint8Array.from(stub), { load: 0x7c03, mode: 'real' });
    expect(r).toEqual({ format: 'flat', mode: 'real', entry: 0x7c03n });
    expect([cpu.segSel[CS], cpu.segBase[2 * CS], cpu.ripLo, cpu.codeSize]).toEqual([0x7c0, 0x7c00, 3, 2]);
    expect(cpu.cr0 & 1).toBe(0);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    expect([cpu.reg64(RAX), cpu.reg64(RBX), cpu.reg64(RCX)]).toEqual([0x1234n, 0x7c0n, 0x7c0n]);
    expect(Array.from(cpu.memory.dump(0x7c00 + 0xfffe, 2))).toEqual([0x34, 0x12]); // SS:FFFE
  });

  it('64-bit: page tables and GDT as for ELF64, at the start address; 32-bit: GDT only', () => {
    const cpu = cpu64M();
    loadFlat(cpu, Uint8Array.of(0xf4), 0x1000, 64);
    expect([cpu.rip, cpu.codeSize, cpu.cr3Lo, cpu.gdtrLo]).toEqual([0x1000n, 8, 0x91000, 0x90000]);
    expect(run(cpu, 10)).toEqual({ kind: 'halt' });
    loadFlat(cpu, Uint8Array.of(0xf4), 0x1000, '32');
    expect([cpu.rip, cpu.codeSize, cpu.cr0 >>> 0, cpu.gdtrLo]).toEqual([0x1000n, 4, 0x11, 0x90000]);
    expect(segmentsUnlikeGdt(cpu)).toEqual([]);
  });

  it('auto: multiboot if a header is found, else ELF by its magic, else flat', () => {
    expect(detectFormat(multibootElf())).toBe('multiboot');
    expect(detectFormat(buildElf(32, 0n, [{ paddr: 0, data: [1] }]))).toBe('elf');
    expect(detectFormat(Uint8Array.of(0xf4))).toBe('flat');
    const cpu = cpu64M();
    expect(loadImage(cpu, Uint8Array.of(0xf4))).toEqual({ format: 'flat', mode: 64, entry: 0x1000n });
  });

  it('errors: empty, bad address, does not fit, real mode above 1 MiB, no room for page tables', () => {
    const cpu = new Cpu({ memorySize: 64 * 1024 });
    expectImageError(() => loadFlat(cpu, new Uint8Array(0), 0x1000, 64), /the image is empty/);
    expectImageError(() => loadFlat(cpu, Uint8Array.of(1), -1, 64), /bad load address -1/);
    expectImageError(() => loadFlat(cpu, new Uint8Array(0x10000), 0x1000, 32), /the image \(65536 bytes at 0x1000\) does not fit in 65536 bytes/);
    expectImageError(() => loadFlat(cpu, Uint8Array.of(1), 0x100000, 'real'), /real mode cannot start at 0x100000/);
    expectImageError(() => loadFlat(cpu, new Uint8Array(0xa000), 0x1000, 64), /no room in 65536 bytes of memory for the identity-map page tables/);
  });
});
