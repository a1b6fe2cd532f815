/**
 * Building blocks for spec tests: descriptors, gates and TSSs written into guest
 * memory exactly as the SDM lays them out, and a processor set up on them.
 */
import { Cpu, SegAttr } from '../src/cpu/cpu.js';
import { CS, DS, ES, FS, GS, SS, TR } from '../src/cpu/regs.js';

export const GDT = 0x5000, IDT = 0x6000, TSS = 0x7000, CODE = 0x1000, STACK = 0x9000;
/** Selectors of the GDT laid out by flatGdt(). */
export const SEL = { CODE64: 0x08, DATA: 0x10, CODE32: 0x18, CODE64_USER: 0x23, DATA_USER: 0x2b, TSS: 0x30 } as const;

/**
 * Selectors of the flat 32-bit rings that the protected-mode GDTs of the
 * segmentation tests start with: ring-0 code and data, ring-3 code and data (RPL 3).
 */
export const RING = { CODE0: 0x08, DATA0: 0x10, CODE3: 0x1b, DATA3: 0x23 } as const;
/** Their access rights (32-bit, 4-KByte granularity, accessed). */
export const CODE32_ATTR = SegAttr.P | SegAttr.S | 0xb | SegAttr.DB | SegAttr.G;
export const DATA32_ATTR = SegAttr.P | SegAttr.S | 0x3 | SegAttr.DB | SegAttr.G;

/** Puts the processor at CPL `cpl` on the flat code and data segments of that ring (RING). */
export function enterRing(cpu: Cpu, cpl: number): void {
  const code = cpl === 3 ? RING.CODE3 : RING.CODE0, data = cpl === 3 ? RING.DATA3 : RING.DATA0;
  cpu.cpl = cpl;
  cpu.setSegment(CS, code, 0, 0, 0xffffffff, CODE32_ATTR | (cpl << 5));
  for (const s of [SS, DS, ES, FS, GS]) cpu.setSegment(s, data, 0, 0, 0xffffffff, DATA32_ATTR | (cpl << 5));
}

/** Writes descriptor pairs as the GDT at GDT and points GDTR at them. */
export function writeGdt(cpu: Cpu, entries: [number, number][]): void {
  entries.forEach(([lo, hi], k) => { write32(cpu, GDT + 8 * k, lo); write32(cpu, GDT + 8 * k + 4, hi); });
  cpu.gdtrLo = GDT; cpu.gdtrHi = 0; cpu.gdtrLimit = entries.length * 8 - 1;
}

/** A code/data segment descriptor (SDM vol. 3A, 3.4.5, figure 3-8). `access` is bits 15:8, `flags` bits 23:20. */
export function segmentDescriptor(base: number, limit: number, access: number, flags: number): [number, number] {
  const lo = ((base & 0xffff) << 16) | (limit & 0xffff);
  const hi = (base & 0xff000000) | ((flags & 0xf) << 20) | (limit & 0xf0000) | ((access & 0xff) << 8) | ((base >>> 16) & 0xff);
  return [lo | 0, hi | 0];
}

export function write32(cpu: Cpu, pa: number, v: number): void {
  for (let k = 0; k < 4; k++) cpu.memory.write8(pa + k, (v >>> (8 * k)) & 0xff);
}
export function read64(cpu: Cpu, pa: number): bigint {
  let v = 0n;
  for (let k = 7; k >= 0; k--) v = (v << 8n) | BigInt(cpu.memory.read8(pa + k));
  return v;
}

/**
 * A GDT: null, 64-bit ring-0 code, ring-0 data, 32-bit ring-0 code, 64-bit
 * ring-3 code, ring-3 data, and a 16-byte 64-bit TSS descriptor (8.2.3).
 */
export function flatGdt(cpu: Cpu): void {
  const entries: [number, number][] = [
    [0, 0],
    segmentDescriptor(0, 0xfffff, 0x9a, 0xa),
    segmentDescriptor(0, 0xfffff, 0x92, 0xc),
    segmentDescriptor(0, 0xfffff, 0x9a, 0xc),
    segmentDescriptor(0, 0xfffff, 0xfa, 0xa),
    segmentDescriptor(0, 0xfffff, 0xf2, 0xc),
    segmentDescriptor(TSS, 0x67, 0x89, 0),
    [0, 0],
  ];
  entries.forEach(([lo, hi], k) => { write32(cpu, GDT + 8 * k, lo); write32(cpu, GDT + 8 * k + 4, hi); });
  cpu.gdtrLo = GDT; cpu.gdtrHi = 0; cpu.gdtrLimit = entries.length * 8 - 1;
}

/** A 64-bit interrupt (type 0xE) or trap (0xF) gate (SDM vol. 3A, 6.14.1, figure 6-8). */
export function gate64(cpu: Cpu, vector: number, handler: number, opts: { type?: number; dpl?: number; ist?: number; present?: boolean } = {}): void {
  const type = opts.type ?? 0xe, dpl = opts.dpl ?? 0, ist = opts.ist ?? 0, p = opts.present ?? true;
  const at = IDT + 16 * vector;
  write32(cpu, at, (SEL.CODE64 << 16) | (handler & 0xffff));
  write32(cpu, at + 4, (handler & 0xffff0000) | ((p ? 1 : 0) << 15) | (dpl << 13) | (type << 8) | ist);
  write32(cpu, at + 8, 0);
  write32(cpu, at + 12, 0);
}

/** A processor in 64-bit mode on flatGdt(), CS/SS/DS loaded from it, IDT at IDT, TR on the TSS. */
export function longModeMachine(): Cpu {
  const cpu = new Cpu({ memorySize: 4 << 20 });
  cpu.enterFlat64();
  cpu.deliverExceptions = true;
  flatGdt(cpu);
  const code = SegAttr.P | SegAttr.S | 0xb | SegAttr.L | SegAttr.G;
  const data = SegAttr.P | SegAttr.S | 0x3 | SegAttr.DB | SegAttr.G;
  cpu.setSegment(CS, SEL.CODE64, 0, 0, 0xffffffff, code);
  for (const s of [SS, DS, ES, FS, GS]) cpu.setSegment(s, SEL.DATA, 0, 0, 0xffffffff, data);
  cpu.setSegment(TR, SEL.TSS, TSS, 0, 0x67, 0x8b);
  cpu.idtrLo = IDT; cpu.idtrHi = 0; cpu.idtrLimit = 256 * 16 - 1;
  cpu.gpr[2 * 4] = STACK;
  cpu.ripLo = CODE;
  return cpu;
}

/** Writes bytes at a physical address. */
export function load(cpu: Cpu, pa: number, bytes: number[]): void {
  cpu.memory.load(pa, Uint8Array.from(bytes));
}
