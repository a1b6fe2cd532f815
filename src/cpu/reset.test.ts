import { describe, expect, it } from 'vitest';
import { Cpu, EFER_LMA, EFER_LME } from './cpu.js';
import {
  buildIdentityMap, enterLongMode64, enterProtectedFlat32, enterRealMode, GDT_CODE32, GDT_CODE64,
  GDT_DATA, identityMapSize, init, powerOn, segmentsUnlikeGdt,
} from './reset.js';
import { CS, DS, ES, FS, GS, LDTR, RAX, RBX, RDX, SS, TR } from './regs.js';
import { CR0_CD, CR0_NW } from './paging.js';
import { run } from './run.js';
import { attrOf, baseOf, limitOf } from './segments.js';

/** Descriptor `sel` of the GDT in memory, decoded: base, limit (scaled by G), VMCS-layout access rights. */
function gdtDescriptor(cpu: Cpu, sel: number): { base: number; limit: number; attr: number } {
  const v = new DataView(cpu.memory.dump((cpu.gdtrLo >>> 0) + sel, 8).buffer);
  const lo = v.getUint32(0, true), hi = v.getUint32(4, true);
  return { base: baseOf(lo, hi) >>> 0, limit: limitOf(lo, hi), attr: attrOf(hi) };
}

/** A processor with state a reset must overwrite. */
function dirty(): Cpu {
  const cpu = new Cpu({ memorySize: 16 * 1024 * 1024 });
  cpu.enterFlat64();
  cpu.gpr.fill(0x5a5a5a5a);
  cpu.rip = 0x123456789n;
  cpu.rflags = 0x246;
  cpu.cr2Lo = 0x1000; cpu.cr3Lo = 0x2000; cpu.cr4 = 0x6a0;
  cpu.gdtrLo = 0x5000; cpu.gdtrLimit = 0x7f; cpu.idtrLo = 0x6000; cpu.idtrLimit = 0xfff;
  cpu.dr.fill(7); cpu.dr6 = 0x4000; cpu.dr7 = 0x7ff;
  cpu.xmm.fill(0x11111111); cpu.mxcsr = 0x9fc0;
  cpu.insnCount = 5000; cpu.tscOffset = 77; cpu.cr8.writeCr8(0xf);
  return cpu;
}

describe('power-up and RESET (SDM vol. 3A, 10.1.1, table 10-1)', () => {
  it('starts at F000:FFF0 with CS.base FFFF0000H in real mode, CR0 = 60000010H', () => {
    const cpu = dirty();
    powerOn(cpu);
    expect(cpu.ripLo).toBe(0xfff0);
    expect(cpu.ripHi).toBe(0);
    expect([cpu.segSel[CS], cpu.segBase[2 * CS]! >>> 0, cpu.segLimit[CS], cpu.segAttr[CS]]).toEqual([0xf000, 0xffff0000, 0xffff, 0x93]);
    for (const s of [SS, DS, ES, FS, GS]) {
      expect([cpu.segSel[s], cpu.segBase[2 * s], cpu.segLimit[s], cpu.segAttr[s]]).toEqual([0, 0, 0xffff, 0x93]);
    }
    expect(cpu.cr0 >>> 0).toBe(0x60000010);
    expect([cpu.cr2Lo, cpu.cr3Lo, cpu.cr4, cpu.efer, cpu.cpl]).toEqual([0, 0, 0, 0, 0]);
    expect(cpu.rflags).toBe(2);
    expect(cpu.codeSize).toBe(2);
    expect(cpu.stackSize).toBe(2);
  });

  it('EDX holds the processor signature (i7-6700: 000506E3H); EAX (no BIST) and the other registers are 0', () => {
    const cpu = dirty();
    powerOn(cpu);
    expect(cpu.reg64(RDX)).toBe(0x506e3n);
    for (let r = 0; r < 16; r++) if (r !== RDX) expect(cpu.reg64(r)).toBe(0n);
  });

  it('GDTR/IDTR base 0 limit FFFFH; LDTR/TR present; DR6 FFFF0FF0H, DR7 400H; MXCSR 1F80H; TSC 0', () => {
    const cpu = dirty();
    powerOn(cpu);
    expect([cpu.gdtrLo, cpu.gdtrHi, cpu.gdtrLimit, cpu.idtrLo, cpu.idtrHi, cpu.idtrLimit]).toEqual([0, 0, 0xffff, 0, 0, 0xffff]);
    expect([cpu.segSel[LDTR], cpu.segBase[2 * LDTR], cpu.segLimit[LDTR], cpu.segAttr[LDTR]]).toEqual([0, 0, 0xffff, 0x82]);
    expect([cpu.segSel[TR], cpu.segBase[2 * TR], cpu.segLimit[TR], cpu.segAttr[TR]]).toEqual([0, 0, 0xffff, 0x8b]);
    expect(Array.from(cpu.dr)).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(cpu.dr6 >>> 0).toBe(0xffff0ff0);
    expect(cpu.dr7).toBe(0x400);
    expect(cpu.xmm.every((x) => x === 0)).toBe(true);
    expect(cpu.mxcsr).toBe(0x1f80);
    expect(cpu.retired + cpu.tscOffset).toBe(0);
    expect(cpu.cr8.readCr8()).toBe(0);
  });
});

describe('INIT (SDM vol. 3A, 10.1.1, table 10-1 and its note 2)', () => {
  it('resets the registers like RESET but keeps CR0.CD/NW, SSE state, MXCSR and the TSC', () => {
    const cpu = dirty();
    cpu.cr0 = (0x80000011 | CR0_CD) | 0; // NW clear, CD set
    init(cpu);
    expect(cpu.cr0 >>> 0).toBe(0x40000010);
    expect(cpu.ripLo).toBe(0xfff0);
    expect(cpu.segBase[2 * CS]! >>> 0).toBe(0xffff0000);
    expect(cpu.reg64(RDX)).toBe(0x506e3n);
    expect(cpu.reg64(RAX)).toBe(0n);
    expect(cpu.xmm.every((x) => x === 0x11111111)).toBe(true);
    expect(cpu.mxcsr).toBe(0x9fc0);
    expect(cpu.tscOffset).toBe(77);
    expect(cpu.dr7).toBe(0x400);
    expect(cpu.codeSize).toBe(2);
  });

  it('keeps IA32_EFER (an MSR) but LMA follows CR0.PG = 0 (10.8.5)', () => {
    const cpu = dirty();
    cpu.cr0 = 0x80000011 | CR0_NW | CR0_CD;
    init(cpu);
    expect(cpu.cr0 >>> 0).toBe(0x60000010);
    expect(cpu.efer & (EFER_LME | EFER_LMA)).toBe(EFER_LME);
  });
});

describe('loader start states', () => {
  it('real mode: CS:IP as given, base = selector × 16, the data segments = CS (SDM vol. 3A, 20.1.1)', () => {
    const cpu = dirty();
    powerOn(cpu);
    enterRealMode(cpu, 0x7c0, 0x12);
    expect([cpu.segSel[CS], cpu.segBase[2 * CS], cpu.segLimit[CS]]).toEqual([0x7c0, 0x7c00, 0xffff]);
    expect([cpu.segSel[SS], cpu.segBase[2 * SS], cpu.segSel[DS], cpu.segBase[2 * DS]]).toEqual([0x7c0, 0x7c00, 0x7c0, 0x7c00]);
    expect(cpu.ripLo).toBe(0x12);
    expect(cpu.cr0 & 0x80000001).toBe(0);
    expect(cpu.idtrLimit).toBe(0x3ff);
    expect(cpu.codeSize).toBe(2);
  });

  it('flat 32-bit: CR0.PE, CS = 08H 32-bit code, data = 10H, hidden state = the GDT in memory (SDM vol. 3A, 3.4.5)', () => {
    const cpu = dirty();
    powerOn(cpu);
    enterProtectedFlat32(cpu, 0x3000);
    expect(cpu.cr0 >>> 0).toBe(0x11);
    expect([cpu.gdtrLo, cpu.gdtrLimit]).toEqual([0x3000, 31]);
    expect(cpu.segSel[CS]).toBe(GDT_CODE32);
    expect(cpu.segSel[SS]).toBe(GDT_DATA);
    expect(cpu.segAttr[CS]).toBe(0xc09b);
    expect(cpu.segAttr[DS]).toBe(0xc093);
    expect(segmentsUnlikeGdt(cpu)).toEqual([]);
    expect(gdtDescriptor(cpu, GDT_CODE64).attr).toBe(0xa09b);
    cpu.memory.write8(0x3000 + GDT_CODE32 + 5, 0x9a); // the checker is not vacuous: clear CS's accessed bit
    expect(segmentsUnlikeGdt(cpu)).toEqual(['cs']);
    expect(cpu.codeSize).toBe(4);
    expect(cpu.stackSize).toBe(4);
  });

  it('64-bit: EFER.LME/LMA, CR4.PAE, CR0.PG|PE, CR3, CS = 18H with L = 1 (SDM vol. 3A, 10.8.5)', () => {
    const cpu = dirty();
    powerOn(cpu);
    buildIdentityMap(cpu, 0x10000, 2 ** 32);
    enterLongMode64(cpu, 0x10000, 0x3000);
    expect(cpu.efer).toBe(EFER_LME | EFER_LMA);
    expect(cpu.cr4).toBe(1 << 5);
    expect(cpu.cr0 >>> 0).toBe(0x80000011);
    expect([cpu.cr3Lo, cpu.cr3Hi]).toEqual([0x10000, 0]);
    expect(cpu.segSel[CS]).toBe(GDT_CODE64);
    expect(cpu.segAttr[CS]).toBe(0xa09b);
    expect(segmentsUnlikeGdt(cpu)).toEqual([]);
    expect(cpu.codeSize).toBe(8);
  });

  it('the identity map: PML4 → PDPT → one PD per GiB of 2 MiB pages, P|RW|PS (SDM vol. 3A, 4.5.4)', () => {
    const cpu = new Cpu({ memorySize: 16 * 1024 * 1024 });
    expect(identityMapSize(2 ** 32)).toBe(6 * 4096);
    buildIdentityMap(cpu, 0x20000, 2 ** 32);
    const q = (a: number): bigint => new DataView(cpu.memory.dump(a, 8).buffer).getBigUint64(0, true);
    expect(q(0x20000)).toBe(0x21003n);
    expect(q(0x20008)).toBe(0n);
    for (let g = 0; g < 4; g++) expect(q(0x21000 + 8 * g)).toBe(BigInt(0x22003 + 0x1000 * g));
    expect(q(0x21000 + 8 * 4)).toBe(0n);
    expect(q(0x22000)).toBe(0x83n);
    expect(q(0x22008)).toBe(0x200083n);
    expect(q(0x25000 + 8 * 511)).toBe(0xffe00083n); // last 2 MiB page below 4 GiB
  });

  it('the 64-bit state runs code, and reloading DS/SS and CS from the GDT keeps the same values', () => {
    const cpu = new Cpu({ memorySize: 16 * 1024 * 1024 });
    powerOn(cpu);
    enterLongMode64(cpu, buildIdentityMap(cpu, 0x10000, 2 ** 32), 0x3000);
    const code = [
      0xb9, 0x10, 0x00, 0x00, 0x00, // mov ecx, 10h
      0x8e, 0xd9, // mov ds, ecx
      0x8e, 0xd1, // mov ss, ecx
      0x6a, 0x18, // push 18h
      0x48, 0x8d, 0x15, 0x03, 0x00, 0x00, 0x00, // lea rdx, [rip + 3]
      0x52, // push rdx
      0x48, 0xcb, // retfq
      0xbb, 0x2a, 0x00, 0x00, 0x00, // mov ebx, 42
      0xf4, // hlt
    ];
    const before = Array.from(cpu.segAttr);
    cpu.memory.load(0x1000, Uint8Array.from(code));
    cpu.rip = 0x1000n;
    cpu.gpr[2 * 4] = 0x8000;
    expect(run(cpu, 100)).toEqual({ kind: 'halt' });
    expect(cpu.reg64(RBX)).toBe(42n);
    expect(cpu.segSel[CS]).toBe(0x18);
    expect(Array.from(cpu.segAttr).slice(0, 6)).toEqual(before.slice(0, 6));
    expect(segmentsUnlikeGdt(cpu)).toEqual([]);
  });
});
