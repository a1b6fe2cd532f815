/**
 * The shadow-paging hypervisor's guest walk against the processor's own walk
 * (src/cpu/paging.ts): for random paging structures of every mode, the same
 * access on two identical machines — one walked by GuestWalk, one made by the
 * processor — must give the same outcome (the physical address, or the #PF
 * error code) and leave the same accessed and dirty flags in memory.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  attempt, CR0_WP, CR4_PAE, CR4_PSE, CR4_SMAP, CR4_SMEP, EFER_NXE, GIB, KIB, legacyCpu, lohi, longModeCpu, MIB2,
  PTE_A, PTE_D, PTE_P, PTE_PS, PTE_RW, PTE_URW, PTE_US, PTE_XD, read64, Tables32, TablesPae, write32, write64,
} from '../../../spec-tests/paging/tables.js';
import type { Cpu } from '../../cpu/cpu.js';
import { hasFeature } from '../../cpu/cpuid.js';
import { skylakeWith } from '../../cpu/testing.js';
import { Access } from '../../cpu/mmu.js';
import { PF_I, PF_P, PF_RSVD, PF_U, PF_W, pagingMode } from '../../cpu/paging.js';
import { GuestWalk, guestPagingState } from './guest-walk.js';

const AC = 1 << 18;
const TABLES = 0x800000, TABLES_END = 0x808000;
/** The 32-bit page table (or 4-MiB page) of a large PDE: CR4.PSE decides which (4.3). */
const LARGE = 0xc00000;
type Kind = 'read' | 'write' | 'fetch';
const ACCESS: Record<Kind, Access> = { read: Access.READ, write: Access.WRITE, fetch: Access.EXEC };

/** True with probability `percent` % (fast-check's bias towards small values would make rare events common). */
const chance = (percent: number): fc.Arbitrary<boolean> => fc.noBias(fc.nat(99)).map((n) => n < percent);
const entryBits = fc.record({
  p: chance(92), rw: chance(70), us: fc.boolean(), a: fc.boolean(), d: fc.boolean(), xd: chance(15), rsvd: chance(5),
});
type Bits = typeof entryBits extends fc.Arbitrary<infer T> ? T : never;
/** A processor without 1-GByte pages: PS is reserved in its PDPTEs (SDM vol. 3A, 4.5.4). */
const NO_PAGE_1GB = skylakeWith({ remove: ['pdpe1gb'] });

/** The guest walk of `cpu`'s own state for (linear, access), as the hypervisor makes it. */
function guestWalk(cpu: Cpu, linear: bigint, kind: Kind, user: boolean): GuestWalk {
  const s = guestPagingState();
  s.mode = pagingMode(cpu); s.cr0 = cpu.cr0; s.cr4 = cpu.cr4; s.efer = cpu.efer;
  s.cr3Lo = cpu.cr3Lo; s.cr3Hi = cpu.cr3Hi; s.pdpte.set(cpu.pdpte); s.cpl = cpu.cpl; s.flags = cpu.flags;
  const [lo, hi] = lohi(linear);
  return new GuestWalk(cpu.memory, cpu.memory.size, hasFeature(cpu, 'pdpe1gb')).walk(s, lo, hi, ACCESS[kind], user);
}

/** The processor's access: the value it read or fetched (a write writes 600DCAFEH), or its exception. */
function processor(cpu: Cpu, linear: bigint, kind: Kind, implicit: boolean) {
  const [lo, hi] = lohi(linear);
  return attempt(cpu, () => {
    if (kind === 'fetch') return cpu.mmu.fetch8(lo, hi);
    if (kind === 'write') {
      if (implicit) cpu.mmu.writeImplicit(lo, hi, 4, 0x600dcafe, 0); else cpu.mmu.write32(lo, hi, 0x600dcafe);
      return 0x600dcafe;
    }
    return implicit ? cpu.mmu.readImplicit(lo, hi, 4) : cpu.mmu.read32(lo, hi);
  });
}

/** The paging structures of the tests: from 800000H, and the page table of a 4-MiB PDE without CR4.PSE. */
function tableBytes(cpu: Cpu): Buffer {
  return Buffer.concat([cpu.memory.dump(TABLES, TABLES_END - TABLES), cpu.memory.dump(LARGE, KIB)]);
}

/** Where two dumps first differ (-1: nowhere), with the bytes there. */
function firstDifference(a: Buffer, b: Buffer): [number, number, number] {
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return [k, a[k]!, b[k]!];
  return [-1, 0, 0];
}

/**
 * Builds the same machine twice with `build`, walks on the first and accesses
 * on the second; checks they agree and returns the walk.
 */
function agree(build: () => Cpu, linear: bigint, kind: Kind, implicit: boolean): GuestWalk {
  const mine = build(), theirs = build();
  const w = guestWalk(mine, linear, kind, mine.cpl === 3 && !implicit);
  const got = processor(theirs, linear, kind, implicit);
  if (w.ok) {
    const pa = w.physical(lohi(linear)[0]);
    w.setAccessedDirty(kind === 'write');
    expect(got).toEqual({ value: kind === 'fetch' ? mine.memory.read8(pa) : kind === 'write' ? 0x600dcafe : mine.memory.read32(pa) });
    if (kind === 'write') expect(theirs.memory.read32(pa)).toBe(0x600dcafe);
  } else {
    expect(got).toEqual({ vector: 14, code: w.errorCode });
  }
  expect(firstDifference(tableBytes(mine), tableBytes(theirs))).toEqual([-1, 0, 0]);
  return w;
}

const controls = fc.record({
  wp: fc.boolean(), smep: fc.boolean(), smap: fc.boolean(), nxe: chance(70), ac: fc.boolean(), cpl3: fc.boolean(),
  implicit: fc.boolean(), access: fc.constantFrom<Kind>('read', 'write', 'fetch'), offset: fc.nat(0xffc).map((n) => n & ~3),
});
type Controls = typeof controls extends fc.Arbitrary<infer T> ? T : never;

function applyControls(c: Cpu, s: Controls): void {
  c.cr0 = s.wp ? c.cr0 | CR0_WP : c.cr0 & ~CR0_WP;
  c.cr4 |= (s.smep ? CR4_SMEP : 0) | (s.smap ? CR4_SMAP : 0);
  c.efer = s.nxe ? c.efer | EFER_NXE : c.efer & ~EFER_NXE;
  if (s.ac) c.flags |= AC;
  c.mmu.flush();
  if (s.cpl3) c.cpl = 3;
}

function bits64(e: Bits, level: number, leaf: boolean): bigint {
  let b = (e.p ? PTE_P : 0n) | (e.rw ? PTE_RW : 0n) | (e.us ? PTE_US : 0n) | (e.a ? PTE_A : 0n) | (e.xd ? PTE_XD : 0n);
  if (leaf && e.d) b |= PTE_D;
  if (leaf && level > 1) b |= PTE_PS;
  if (e.rsvd) b |= level === 4 ? PTE_PS : 1n << 51n;
  return b;
}

describe('the guest walk decides as the processor does, and sets the same accessed and dirty flags', () => {
  it('SDM 4.5 (4-level paging), 4.6 (access rights), 4.7 (#PF error code), 4.8 (A/D): random 4-KiB, 2-MiB and 1-GiB mappings, with and without 1-GByte pages', () => {
    const setup = fc.record({
      c: controls, entries: fc.array(entryBits, { minLength: 4, maxLength: 4 }), leafLevel: fc.constantFrom(1, 1, 2, 3),
      page1GB: chance(75),
      base: fc.constantFrom(0x40_0000_0000n, 0xffff_8000_4000_0000n, 0x7fff_c000_0000n),
    });
    fc.assert(fc.property(setup, (s) => {
      const size = s.leafLevel === 1 ? KIB : s.leafLevel === 2 ? MIB2 : GIB;
      const frame = s.leafLevel === 1 ? 0x300000 : s.leafLevel === 2 ? 0x400000 : 0;
      const linear = s.base + BigInt(s.c.offset);
      const build = (): Cpu => longModeCpu((t) => {
        const c = t.cpu;
        t.map(linear, frame, PTE_URW, size);
        c.memory.write32(frame + s.c.offset, (frame + s.c.offset) ^ 0x5a5a5a5a);
        for (let n = 0; n < 4; n++) {
          const level = 4 - n;
          if (level < s.leafLevel) break;
          const at = t.entry(linear, level), old = read64(c, at) & 0x000f_ffff_ffff_f000n;
          write64(c, at, old | bits64(s.entries[n]!, level, level === s.leafLevel));
        }
        applyControls(c, s.c);
      }, 4, s.page1GB ? undefined : NO_PAGE_1GB).cpu;
      agree(build, linear, s.c.access, s.c.implicit && s.c.access !== 'fetch');
    }), { numRuns: 500 });
  });

  it('SDM 4.4 (PAE paging from the PDPTE registers): random 4-KiB and 2-MiB mappings, XD with EFER.NXE', () => {
    const setup = fc.record({ c: controls, entries: fc.array(entryBits, { minLength: 2, maxLength: 2 }), large: fc.boolean() });
    fc.assert(fc.property(setup, (s) => {
      const lin = 0x4020_0000 + s.c.offset, frame = s.large ? 0x400000 : 0x300000;
      const build = (): Cpu => {
        const cpu = legacyCpu((c) => {
          const t = new TablesPae(c);
          const leafAt = s.large ? t.mapLarge(lin, frame) : t.map(lin, frame);
          const ats = s.large ? [leafAt] : [t.pde(lin), leafAt];
          ats.forEach((at, n) => {
            const level = s.large ? 2 : 2 - n, old = read64(c, at) & 0x000f_ffff_ffff_f000n;
            write64(c, at, old | bits64(s.entries[n]!, level, at === leafAt));
          });
          return t.pdpt;
        }, CR4_PAE);
        cpu.memory.write32(frame + (lin % (s.large ? MIB2 : KIB)), 0x12345678);
        applyControls(cpu, s.c);
        return cpu;
      };
      agree(build, BigInt(lin), s.c.access, s.c.implicit && s.c.access !== 'fetch');
    }), { numRuns: 400 });
  });

  it('SDM 4.3 (32-bit paging): random 4-KiB and 4-MiB mappings with and without CR4.PSE', () => {
    const setup = fc.record({
      c: controls, entries: fc.array(entryBits, { minLength: 2, maxLength: 2 }), large: fc.boolean(), pse: fc.boolean(),
    });
    fc.assert(fc.property(setup, (s) => {
      const lin = 0x40c0_5000 + s.c.offset;
      const build = (): Cpu => {
        const cpu = legacyCpu((c) => {
          const t = new Tables32(c);
          const flags = (e: Bits, leaf: boolean): number => (e.p ? 1 : 0) | (e.rw ? 2 : 0) | (e.us ? 4 : 0) | (e.a ? 0x20 : 0) |
            (leaf && e.d ? 0x40 : 0);
          if (s.large) {
            // A 4-MiB PDE; bit 21 is reserved (PSE-36 with MAXPHYADDR 39). Without CR4.PSE, PS is ignored and
            // the PDE points to a page table at LARGE.
            t.mapLarge(lin, LARGE, flags(s.entries[0]!, true) | (s.entries[0]!.rsvd ? 1 << 21 : 0));
            write32(c, LARGE + 4 * ((lin >>> 12) & 0x3ff), 0x300000 | flags(s.entries[1]!, true));
          } else {
            const pte = t.map(lin, 0x300000, flags(s.entries[1]!, true));
            write32(c, t.pde(lin), (0x801000 | flags(s.entries[0]!, false)) >>> 0);
            expect(pte).toBe(0x801000 + 4 * 5);
          }
          return t.root;
        }, s.pse ? CR4_PSE : 0);
        cpu.memory.write32(0x300000 + (lin & 0xfff), 0x0badf00d);
        cpu.memory.write32(LARGE + (lin & 0x3fffff), 0x0c0ffee0);
        applyControls(cpu, s.c);
        return cpu;
      };
      agree(build, BigInt(lin), s.c.access, s.c.implicit && s.c.access !== 'fetch');
    }), { numRuns: 400 });
  });
});

describe('guest walk cases', () => {
  const map64 = (flags: bigint, size = KIB, frame = 0x300000) => () => longModeCpu((t) => t.map(0x1234_5000n, frame, flags, size)).cpu;

  it('SDM 4.5, 4.8: a write through a 4-KiB page sets A in all four entries and D in the PTE only', () => {
    const w = agree(map64(PTE_URW), 0x1234_5678n, 'write', false);
    expect(w.ok).toBe(true);
    expect(w.count).toBe(4);
    expect(w.leafLevel).toBe(1);
    expect(w.frame).toBe(0x300);
    expect(Array.from(w.lo).map((v) => v & 0x60)).toEqual([0x20, 0x20, 0x20, 0x60, 0]);
  });

  it('SDM 4.5: a 1-GiB page (PDPTE with PS) maps bits 29:0 of the address; a read sets A but not D', () => {
    const w = agree(map64(PTE_URW, GIB, 0), 0x1234_5678n, 'read', false);
    expect(w).toMatchObject({ ok: true, leafLevel: 3, count: 2, frame: 0x1234_5678 >>> 12, dirty: false });
  });

  it('SDM 4.6.1, 4.7: a user read of a supervisor page is #PF with P and U', () => {
    const build = (): Cpu => { const c = map64(PTE_P | PTE_RW)(); c.cpl = 3; return c; };
    expect(agree(build, 0x1234_5000n, 'read', false).errorCode).toBe(PF_P | PF_U);
  });

  it('SDM 4.6.1: CR0.WP = 0 lets a supervisor write through a read-only page; with WP = 1 it is #PF with P and W', () => {
    expect(agree(map64(PTE_P | PTE_US), 0x1234_5000n, 'write', false).ok).toBe(true);
    const wp = (): Cpu => { const c = map64(PTE_P | PTE_US)(); c.cr0 |= CR0_WP; return c; };
    expect(agree(wp, 0x1234_5000n, 'write', false).errorCode).toBe(PF_P | PF_W);
  });

  it('SDM 4.6.1, 4.7: a fetch from an XD page with EFER.NXE is #PF with P and I; without NXE, XD is a reserved bit (RSVD)', () => {
    const nx = (nxe: boolean) => (): Cpu => { const c = map64(PTE_URW | PTE_XD)(); if (nxe) c.efer |= EFER_NXE; else c.efer &= ~EFER_NXE; return c; };
    expect(agree(nx(true), 0x1234_5000n, 'fetch', false).errorCode).toBe(PF_P | PF_I);
    expect(agree(nx(false), 0x1234_5000n, 'read', false).errorCode).toBe(PF_P | PF_RSVD);
  });

  it('SDM 4.6.1: SMEP refuses a supervisor fetch from a user page (#PF P and I); SMAP a supervisor read unless RFLAGS.AC', () => {
    const smep = (): Cpu => { const c = map64(PTE_URW)(); c.cr4 |= CR4_SMEP; return c; };
    expect(agree(smep, 0x1234_5000n, 'fetch', false).errorCode).toBe(PF_P | PF_I);
    const smap = (ac: boolean) => (): Cpu => { const c = map64(PTE_URW)(); c.cr4 |= CR4_SMAP; if (ac) c.flags |= AC; return c; };
    expect(agree(smap(false), 0x1234_5000n, 'read', false).errorCode).toBe(PF_P);
    expect(agree(smap(true), 0x1234_5000n, 'read', false).ok).toBe(true);
  });

  it('SDM 4.3: a 4-MiB page with CR4.PSE is one PDE; A and D are set in it', () => {
    const build = (): Cpu => legacyCpu((c) => { const t = new Tables32(c); t.mapLarge(0x8000_0000, 0x400000); return t.root; }, CR4_PSE);
    const w = agree(build, 0x8012_3456n, 'write', false);
    expect(w).toMatchObject({ ok: true, leafLevel: 2, count: 1, narrow: true, frame: (0x400000 + 0x123456) >>> 12 });
    expect(w.lo[0]! & 0x60).toBe(0x60);
  });
});
