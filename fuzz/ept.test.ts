/**
 * Properties of EPT against an independent reference (SDM vol. 3C, December
 * 2024 numbering: 29.3 EPT, 29.3.2 translation, 29.3.3.1 misconfigurations,
 * 29.3.3.2 violations, 29.3.3.3 their priority, 29.3.5 accessed and dirty
 * flags, 29.4 cached translation information; 28.2.1 the exit qualification,
 * table 28-7; SDM vol. 3A, chapter 4, for the guest's own 4-level paging).
 *
 * The reference below walks random 4-level guest page tables and random EPT
 * tables held in a plain memory model (a Map of 64-bit entries by
 * host-physical address); it is written here from the SDM, without
 * src/vmx/ept.ts or src/cpu/paging.ts. It follows the SDM's order (29.3.3.3):
 * each guest paging-structure entry is read through EPT first (an EPT exit
 * there comes before anything the entry says), then checked (#PF for P = 0 or
 * a reserved bit); once the walk ends the guest's rights are checked (#PF);
 * then the accessed and dirty flags are set, each update an EPT write without
 * EPT A/D flags (29.3.3.2; the SDM leaves the order of these updates and the
 * final access open; the reference sets them first, as the processor needs the
 * translation complete before using it); then the final guest-physical address
 * is translated through EPT with the access's own rights.
 *
 * The random structures sit on a small set of pages so that levels share
 * tables and pages: guest tables at guest-physical p·1 GiB + d·2 MiB + t·4 KiB
 * (p 1-3, d 4-6, t 0-3), data pages at t 4-7, mapped by random EPT PDPTEs,
 * PDEs and PTEs (any rights, memory types, large pages, reserved and ignored
 * bits, A/D flags) onto host blocks 8-16 MiB whose pages 0-3 hold guest tables
 * and 4-7 a pattern naming each 16-byte slot's own address (read as data, or run
 * as MOV EAX, slot; VMCALL). #PF exits through the exception bitmap (26.2).
 *
 * Bounded runs with fixed seeds: HVSIM_FUZZ_RUNS multiplies the number of
 * cases, HVSIM_FUZZ_SEED moves the seeds.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../vmcs/exit-reasons.js';
import { Field as F } from '../vmcs/fields.js';
import type { Cpu } from '../src/cpu/cpu.js';
import { run } from '../src/cpu/run.js';
import { vmEntry } from '../src/vmx/entry.js';
import { GUEST_CODE, GUEST_PAGE_TABLES, runInGuest, type GuestRun } from '../src/vmx/testing.js';
import type { Vmcs } from '../src/vmx/vmcs.js';

const SCALE = Math.max(1, Math.floor(Number(process.env.HVSIM_FUZZ_RUNS) || 1));
const SEED = Number(process.env.HVSIM_FUZZ_SEED ?? 0x7e5) | 0;
const runs = (n: number, salt: number): fc.Parameters<unknown> => ({ numRuns: n * SCALE, seed: SEED + salt });

// ---- layout ------------------------------------------------------------------------------------------

const GIB = 2 ** 30, MIB2 = 2 ** 21, PAGE = 4096;
/** EPT tables (host-physical): the PML4, the PDPT, the identity PD for the harness's 16 MiB, random PDs and PTs. */
const EPT_PML4 = 0x600000, EPT_PDPT = 0x601000, EPT_PD_LOW = 0x602000;
const eptPd = (p: number): number => 0x603000 + (p - 1) * PAGE;
const eptPt = (p: number, d: number): number => 0x610000 + ((p - 1) * 3 + (d - 4)) * PAGE;
/** Host blocks of 2 MiB at 8, 10, 12, 14 MiB: pages 0-3 guest tables, 4-7 data. */
const BLOCKS = 0x800000;
const gpaOf = (p: number, d: number, t: number): number => p * GIB + d * MIB2 + t * PAGE;
const EPTP_BASE = EPT_PML4 | (3 << 3) | 6; // walk length 4, WB (25.6.11)
const EPTP_AD = 1 << 6;
/** Bits 38:12: physical addresses with MAXPHYADDR = 39 (the model's). */
const ADDR = ((1n << 39n) - 1n) & ~0xfffn;
const VALUE = 0x0123456789abcdefn;

function isData(pa: number): boolean {
  return pa >= BLOCKS && pa < BLOCKS + 4 * MIB2 && ((pa / PAGE) & 511) >= 4 && ((pa / PAGE) & 511) < 8;
}

/** The data pattern: each 16-byte slot s holds MOV EAX, s; VMCALL, then s and A55AA55AH. */
function pattern(pa: number): bigint {
  const slot = pa - (pa % 16);
  return pa % 16 === 0 ? 0xb8n | (BigInt(slot) << 8n) | (0xc1010fn << 40n) : BigInt(slot) | (0xa55aa55an << 32n);
}
/** The 16 data pages' bytes, built once. */
const DATA_PAGES: [number, Uint8Array][] = [];
for (let b = 0; b < 4; b++) {
  for (let t = 4; t < 8; t++) {
    const at = BLOCKS + b * MIB2 + t * PAGE, bytes = new Uint8Array(PAGE), view = new DataView(bytes.buffer);
    for (let k = 0; k < PAGE; k += 8) view.setBigUint64(k, pattern(at + k), true);
    DATA_PAGES.push([at, bytes]);
  }
}

/** Host-physical memory as the reference sees it: written entries, the data pattern, zeros. */
class Memory {
  readonly q = new Map<number, bigint>();
  read(pa: number): bigint { return this.q.get(pa) ?? (isData(pa) ? pattern(pa) : 0n); }
  write(pa: number, v: bigint): void { this.q.set(pa, BigInt.asUintN(64, v)); }
  or(pa: number, bits: bigint): void { this.write(pa, this.read(pa) | bits); }
  clone(): Memory { const m = new Memory(); for (const [k, v] of this.q) m.q.set(k, v); return m; }
}

const read64 = (cpu: Cpu, pa: number): bigint =>
  (BigInt(cpu.memory.read32(pa + 4) >>> 0) << 32n) | BigInt(cpu.memory.read32(pa) >>> 0);

// ---- random structures --------------------------------------------------------------------------------

/** An EPT entry: rights, memory type, large page, a reserved bit (index into its list), ignored bits, A/D, target block. */
interface EptGen { rights: number; type: number; large: boolean; rsvd: number; ignored: number; a: boolean; d: boolean; block: number }
/** A guest entry: P, R/W, A, D, PS, a reserved bit, and its target (p, d, t). */
interface GuestGen { present: boolean; rw: boolean; a: boolean; d: boolean; ps: boolean; rsvd: number; p: number; dd: number; t: number }
type AccessKind = 'read' | 'write' | 'fetch';
interface Scenario {
  access: AccessKind; i4: number; i3: number; i2: number; i1: number; slot: number; half: boolean;
  wp: boolean; ad: boolean;
  g4: GuestGen; g3: GuestGen; g2: GuestGen; g1: GuestGen;
  ept3: EptGen[]; ept2: EptGen[]; ept1: EptGen[];
}

const weighted = <T>(common: T, rare: fc.Arbitrary<T>, odds: number): fc.Arbitrary<T> =>
  fc.oneof({ weight: odds, arbitrary: fc.constant(common) }, { weight: 1, arbitrary: rare });

/**
 * EPT entries: 'good' ones are valid with all rights; 'upper' ones (PDPTEs, PDEs) are mostly so;
 * 'table' ones (PTEs of guest-table pages) are often read-only, so that the guest's A/D updates
 * meet them; 'data' ones (PTEs of data pages) vary their rights most.
 */
function eptGen(kind: 'good' | 'upper' | 'table' | 'data'): fc.Arbitrary<EptGen> {
  const good = kind === 'good', data = kind === 'data';
  const readOnly = fc.oneof({ weight: 6, arbitrary: fc.constant(7) }, { weight: 2, arbitrary: fc.constantFrom(1, 5) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 7 }) });
  return fc.record({
    rights: good ? fc.constant(7) : kind === 'table' ? readOnly : weighted(7, fc.integer({ min: 0, max: 7 }), data ? 1 : 20),
    type: good ? fc.constant(6) : weighted(6, fc.integer({ min: 0, max: 7 }), data ? 6 : 40),
    large: weighted(false, fc.constant(true), 3),
    rsvd: good ? fc.constant(-1) : weighted(-1, fc.nat(63), data ? 12 : 80),
    ignored: weighted(0, fc.nat(255), 2),
    a: fc.boolean(), d: fc.boolean(),
    block: fc.nat(3),
  });
}

function guestGen(good: boolean, p: fc.Arbitrary<number>): fc.Arbitrary<GuestGen> {
  return fc.record({
    present: good ? fc.constant(true) : weighted(true, fc.constant(false), 20),
    rw: weighted(true, fc.constant(false), 3),
    a: fc.boolean(), d: fc.boolean(),
    ps: weighted(false, fc.constant(true), 3),
    rsvd: good ? fc.constant(-1) : weighted(-1, fc.nat(63), 30),
    p, dd: fc.integer({ min: 4, max: 6 }), t: fc.nat(3),
  });
}

/**
 * A scenario; `stale` keeps every entry valid, the access a read, and the data
 * page in the 1-GiB region 3 while the guest tables are in regions 1 and 2
 * (so that changing the data page's EPT leaf changes nothing else).
 */
function scenario(stale = false): fc.Arbitrary<Scenario> {
  const tables = stale ? fc.integer({ min: 1, max: 2 }) : fc.integer({ min: 1, max: 3 });
  const data = stale ? fc.constant(3) : fc.integer({ min: 1, max: 3 });
  return fc.record({
    access: stale ? fc.constant<AccessKind>('read') : fc.constantFrom<AccessKind>('read', 'write', 'fetch'),
    i4: fc.integer({ min: 1, max: 255 }), i3: fc.nat(511), i2: fc.integer({ min: 4, max: 6 }), i1: fc.integer({ min: 4, max: 7 }),
    slot: fc.nat(255), half: fc.boolean(),
    wp: fc.boolean(), ad: fc.boolean(),
    g4: guestGen(stale, tables), g3: guestGen(stale, data), g2: guestGen(stale, data),
    g1: guestGen(stale, data).map((g) => ({ ...g, ps: false })),
    ept3: fc.array(eptGen(stale ? 'good' : 'upper'), { minLength: 3, maxLength: 3 }),
    ept2: fc.array(eptGen(stale ? 'good' : 'upper'), { minLength: 9, maxLength: 9 }),
    // PTE k maps page t = k mod 8 of its 2 MiB: guest tables below 4, data from 4.
    ept1: fc.tuple(...range(0, 71).map((k) => eptGen(stale ? 'good' : k % 8 < 4 ? 'table' : 'data'))),
  }).map((s) => (stale
    // The PD and PT are other pages beside the PDPT (regions 1-2); a large page, like the PTE's page, in region 3.
    ? {
      ...s,
      g3: s.g3.ps ? { ...s.g3, p: 3 } : { ...s.g3, p: s.g4.p, dd: s.g4.dd, t: (s.g4.t + 1) % 4 },
      g2: s.g2.ps ? { ...s.g2, p: 3 } : { ...s.g2, p: s.g4.p, dd: s.g4.dd, t: (s.g4.t + 2) % 4 },
    }
    : s));
}

// ---- building the structures in the memory model -------------------------------------------------------

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, k) => from + k);
const HI = range(39, 51);
/** Reserved bits of EPT entries (tables 29-1 to 29-6): 6:3 in PDPTEs/PDEs that reference tables, 29:12 / 20:12 in large pages. */
const EPT_RSVD: Record<string, number[]> = {
  table: [3, 4, 5, 6, ...HI], page1g: [...range(12, 29), ...HI], page2m: [...range(12, 20), ...HI], pte: HI,
};
/** Ignored bits (the same tables): none of them may matter. */
const EPT_IGNORED = { table: [9, 10, 11, 52, 56, 62, 63], leaf: [6, 10, 11, 52, 56, 62, 63], pte: [6, 7, 10, 11, 52, 56, 62, 63] };
/** Reserved bits of guest 4-level entries (SDM vol. 3A, 4.5, tables 4-14 to 4-20), bit 63 with EFER.NXE = 0. */
const GUEST_RSVD: Record<string, number[]> = {
  pml4e: [7, ...HI, 63], table: [...HI, 63], page1g: [...range(13, 29), ...HI, 63], page2m: [...range(13, 20), ...HI, 63], pte: [...HI, 63],
};

function bitsOf(list: number[], mask: number): bigint {
  let v = 0n;
  list.forEach((bit, k) => { if (k < 8 && (mask >> k) & 1) v |= 1n << BigInt(bit); });
  return v;
}

function eptEntry(g: EptGen, level: number, table: number, t: number): bigint {
  const leaf = level === 1 || g.large;
  let v = BigInt(g.rights) | (g.a ? 0x100n : 0n) | (g.d ? 0x200n : 0n);
  const kind = !leaf ? 'table' : level === 3 ? 'page1g' : level === 2 ? 'page2m' : 'pte';
  if (!leaf) v |= BigInt(table);
  else {
    v |= BigInt(g.type) << 3n;
    if (level > 1) v |= 0x80n;
    // 1 GiB: host-physical 0 (the guest-physical offset lands in blocks 0-2); else a block (and the page's own t).
    v |= BigInt(level === 3 ? 0 : BLOCKS + g.block * MIB2 + (level === 1 ? t * PAGE : 0));
  }
  if (g.rsvd >= 0) v |= 1n << BigInt(EPT_RSVD[kind]![g.rsvd % EPT_RSVD[kind]!.length]!);
  v |= bitsOf(!leaf ? EPT_IGNORED.table : level === 1 ? EPT_IGNORED.pte : EPT_IGNORED.leaf, g.ignored);
  return v;
}

function guestEntry(g: GuestGen, level: number, leaf: boolean, address: number): bigint {
  let v = BigInt(address) | (g.present ? 1n : 0n) | (g.rw ? 2n : 0n) | 4n | (g.a ? 0x20n : 0n) | (g.d ? 0x40n : 0n);
  if (leaf && level > 1) v |= 0x80n;
  const kind = level === 4 ? 'pml4e' : !leaf ? 'table' : level === 3 ? 'page1g' : level === 2 ? 'page2m' : 'pte';
  if (g.rsvd >= 0) v |= 1n << BigInt(GUEST_RSVD[kind]![g.rsvd % GUEST_RSVD[kind]!.length]!);
  return v;
}

/** The linear address the guest accesses: PML4 index i4, PDPT i3, PD i2, PT i1, a 16-byte slot (+8 for data). */
function linearOf(s: Scenario): number {
  return s.i4 * 2 ** 39 + s.i3 * GIB + s.i2 * MIB2 + s.i1 * PAGE + s.slot * 16 + (s.access !== 'fetch' && s.half ? 8 : 0);
}

/** Builds the identity EPT, the random EPT and the guest entries of the scenario's walk. */
function build(s: Scenario): Memory {
  const mem = new Memory();
  mem.write(EPT_PML4, BigInt(EPT_PDPT) | 7n);
  mem.write(EPT_PDPT, BigInt(EPT_PD_LOW) | 7n);
  for (let k = 0; k < 8; k++) mem.write(EPT_PD_LOW + 8 * k, BigInt(k * MIB2) | 7n | (6n << 3n) | 0x80n);
  for (let p = 1; p <= 3; p++) {
    mem.write(EPT_PDPT + 8 * p, eptEntry(s.ept3[p - 1]!, 3, eptPd(p), 0));
    for (let d = 4; d <= 6; d++) {
      mem.write(eptPd(p) + 8 * d, eptEntry(s.ept2[(p - 1) * 3 + d - 4]!, 2, eptPt(p, d), 0));
      for (let t = 0; t < 8; t++) mem.write(eptPt(p, d) + 8 * t, eptEntry(s.ept1[((p - 1) * 3 + d - 4) * 8 + t]!, 1, 0, t));
    }
  }
  // The guest entries go where EPT puts their guest-physical addresses (when it maps them at all).
  const place = (gpa: number, value: bigint): void => {
    const hpa = peek(mem, gpa);
    if (hpa !== null) mem.write(hpa, value);
  };
  const table = (g: GuestGen): number => gpaOf(g.p, g.dd, g.t);
  place(GUEST_PAGE_TABLES + 8 * s.i4, guestEntry(s.g4, 4, false, table(s.g4)));
  const pdpt = table(s.g4);
  place(pdpt + 8 * s.i3, guestEntry(s.g3, 3, s.g3.ps, s.g3.ps ? s.g3.p * GIB : table(s.g3)));
  if (s.g3.ps) return mem;
  const pd = table(s.g3);
  place(pd + 8 * s.i2, guestEntry(s.g2, 2, s.g2.ps, s.g2.ps ? s.g2.p * GIB + s.g2.dd * MIB2 : table(s.g2)));
  if (s.g2.ps) return mem;
  place(table(s.g2) + 8 * s.i1, guestEntry(s.g1, 1, true, gpaOf(s.g1.p, s.g1.dd, s.g1.t + 4)));
  return mem;
}

// ---- the reference ----------------------------------------------------------------------------------------

/** What an access does: completes at host-physical `hpa`, an EPT exit (48/49), or a #PF with its error code. */
type Outcome = { kind: 'ok'; hpa: number } | { kind: 'ept'; reason: number; q: number; gpa: number } | { kind: 'pf'; code: number };
class Stop { constructor(readonly outcome: Outcome) {} }

interface EptLeaf { hpa: number; leafAt: number; level: number; used: number[]; rights: number }

/** Misconfigured EPT entry (29.3.3.1): 010B/110B; a reserved bit; memory type 2, 3, 7 in a leaf. Execute-only is supported. */
function misconfigured(e: bigint, level: number, leaf: boolean): boolean {
  if ((e & 3n) === 2n || ((e >> 39n) & 0x1fffn) !== 0n) return true;
  if (!leaf) return (e & (level === 4 ? 0xf8n : 0x78n)) !== 0n;
  const type = Number((e >> 3n) & 7n);
  if (type === 2 || type === 3 || type === 7) return true;
  return (e & (level === 3 ? 0x3ffff000n : level === 2 ? 0x1ff000n : 0n)) !== 0n;
}

/** The EPT walk for `gpa` (29.3.2, 29.3.3.3): where it stops (not present, misconfigured), or the leaf and the rights. */
function eptWalk(mem: Memory, gpa: number): EptLeaf | { stop: 'violation' | 'misconfiguration' } {
  let table = EPT_PML4, rights = 7;
  const used: number[] = [];
  for (let level = 4; ; level--) {
    const size = 2 ** (12 + 9 * (level - 1)), at = table + 8 * (Math.floor(gpa / size) % 512);
    const e = mem.read(at);
    used.push(at);
    if ((e & 7n) === 0n) return { stop: 'violation' };
    const leaf = level === 1 || (level <= 3 && (e & 0x80n) !== 0n);
    if (misconfigured(e, level, leaf)) return { stop: 'misconfiguration' };
    rights &= Number(e & 7n);
    if (leaf) return { hpa: Number(e & ADDR & ~BigInt(size - 1)) + (gpa % size), leafAt: at, level, used, rights };
    table = Number(e & ADDR);
  }
}

/** Where EPT maps `gpa`, whatever the rights (for placing the guest's entries). */
function peek(mem: Memory, gpa: number): number | null {
  const w = eptWalk(mem, gpa);
  return 'stop' in w ? null : w.hpa;
}

/**
 * Translates `gpa` for `access` (29.3.3.2): a violation or misconfiguration
 * stops the reference with the exit (qualification of table 28-7: the access
 * in bits 2:0, both 0 and 1 for a paging-structure access under EPT A/D; the
 * rights' AND in 5:3; bit 7 always (every access here has a linear address),
 * bit 8 for the final access); A/D flags as 29.3.5 sets them.
 */
function eptTranslate(mem: Memory, gpa: number, access: AccessKind, paging: boolean, ad: boolean): number {
  const w = eptWalk(mem, gpa);
  const bits = paging && ad ? 3 : access === 'read' ? 1 : access === 'write' ? 2 : 4;
  const violation = (rights: number): Stop =>
    new Stop({ kind: 'ept', reason: ExitReason.EPT_VIOLATION, q: bits | (rights << 3) | 0x80 | (paging ? 0 : 0x100), gpa });
  if ('stop' in w) {
    throw w.stop === 'misconfiguration' ? new Stop({ kind: 'ept', reason: ExitReason.EPT_MISCONFIGURATION, q: 0, gpa }) : violation(0);
  }
  const need = access === 'read' ? 1 : access === 'write' ? 2 : 4;
  if ((w.rights & need) === 0) throw violation(w.rights);
  if (ad) {
    for (const at of w.used) mem.or(at, 0x100n);
    if (access === 'write') mem.or(w.leafAt, 0x200n);
  }
  return w.hpa;
}

/** Reserved bits of a guest entry (SDM vol. 3A, 4.5): 51:39, 63 (NXE = 0), PS in a PML4E, large frames' low bits. */
function guestReserved(e: bigint, level: number, leaf: boolean): boolean {
  if (((e >> 39n) & 0x1fffn) !== 0n || (e >> 63n) !== 0n) return true;
  if (level === 4) return (e & 0x80n) !== 0n;
  return leaf && (e & (level === 3 ? 0x3fffe000n : level === 2 ? 0x1fe000n : 0n)) !== 0n;
}

/** The reference: the access of scenario `s` at linear `linear` on memory `mem` (which it updates). */
function reference(s: Scenario, mem: Memory, linear: number): Outcome {
  const write = s.access === 'write', ad = s.ad;
  const pf = (code: number): Stop => new Stop({ kind: 'pf', code: code | (write ? 2 : 0) });
  try {
    const idx = [s.i1, s.i2, s.i3, s.i4];
    let table = GUEST_PAGE_TABLES, rw = true, final = 0;
    const used: { gpa: number; hpa: number }[] = [];
    for (let level = 4; ; level--) {
      const gpa = table + 8 * idx[level - 1]!;
      // The entry is read through EPT first (a read; a write with EPT A/D flags, 29.3.5).
      const hpa = eptTranslate(mem, gpa, ad ? 'write' : 'read', true, ad);
      const e = mem.read(hpa);
      if ((e & 1n) === 0n) throw pf(0);
      const leaf = level === 1 || (level <= 3 && (e & 0x80n) !== 0n);
      if (guestReserved(e, level, leaf)) throw pf(1 | 8);
      rw &&= (e & 2n) !== 0n;
      used.push({ gpa, hpa });
      if (leaf) {
        const size = 2 ** (12 + 9 * (level - 1));
        final = Number(e & ADDR & ~BigInt(size - 1)) + (linear % size);
        break;
      }
      table = Number(e & ADDR);
    }
    // SDM vol. 3A, 4.6: supervisor writes need R/W in every entry when CR0.WP = 1.
    if (write && s.wp && !rw) throw pf(1);
    // 4.8: A in every entry, D in the leaf for a write; without EPT A/D each update is an EPT write (29.3.3.2).
    const setFlag = (u: { gpa: number; hpa: number }, bit: bigint): void => {
      if ((mem.read(u.hpa) & bit) !== 0n) return;
      if (!ad) eptTranslate(mem, u.gpa, 'write', true, false);
      mem.or(u.hpa, bit);
    };
    for (const u of used) setFlag(u, 0x20n);
    if (write) setFlag(used[used.length - 1]!, 0x40n);
    return { kind: 'ok', hpa: eptTranslate(mem, final, s.access, false, ad) };
  } catch (e) {
    if (e instanceof Stop) return e.outcome;
    throw e;
  }
}

// ---- running the model ----------------------------------------------------------------------------------

const VMCALL = [0x0f, 0x01, 0xc1];
const imm64 = (v: bigint): number[] => Array.from({ length: 8 }, (_, k) => Number((v >> BigInt(8 * k)) & 0xffn));
/** mov rbx, linear; then MOV RAX, [RBX] / MOV RCX, VALUE; MOV [RBX], RCX / JMP RBX; then VMCALL. */
function guestCode(access: AccessKind, linear: number): number[] {
  const movRbx = [0x48, 0xbb, ...imm64(BigInt(linear))];
  if (access === 'read') return [...movRbx, 0x48, 0x8b, 0x03, ...VMCALL];
  if (access === 'write') return [...movRbx, 0x48, 0xb9, ...imm64(VALUE), 0x48, 0x89, 0x0b, ...VMCALL];
  return [...movRbx, 0xff, 0xe3, ...VMCALL];
}
/** The RIP of the accessing instruction (the fetch: the target itself). */
const accessRip = (access: AccessKind, linear: number): number =>
  access === 'read' ? GUEST_CODE + 10 : access === 'write' ? GUEST_CODE + 20 : linear;

/** Copies the memory model and the data pages into the model's memory, and turns on EPT and #PF exiting. */
function configure(s: Scenario, mem: Memory) {
  return (v: Vmcs, cpu: Cpu): void => {
    for (const [at, bytes] of DATA_PAGES) cpu.memory.load(at, bytes);
    for (const [pa, value] of mem.q) {
      cpu.memory.write32(pa, Number(value & 0xffffffffn) | 0);
      cpu.memory.write32(pa + 4, Number(value >> 32n) | 0);
    }
    const proc = F.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, sec = F.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
    v.set(proc, v.lo(proc) | (1 << 31));
    v.set(sec, v.lo(sec) | 2);
    v.set(F.EPT_POINTER, EPTP_BASE | (s.ad ? EPTP_AD : 0));
    v.set(F.EXCEPTION_BITMAP, 1 << 14);
    if (s.wp) v.set(F.GUEST_CR0, v.lo(F.GUEST_CR0) | 0x10000);
  };
}

/** What the model did, in the reference's terms, for the access at `rip`. */
function observed(r: GuestRun, access: AccessKind, expected: Outcome): unknown {
  const v = r.vmcs, reason = v.lo(F.EXIT_REASON) >>> 0;
  const rip = v.num(F.GUEST_RIP);
  if (reason === ExitReason.EPT_VIOLATION || reason === ExitReason.EPT_MISCONFIGURATION) {
    const q = v.num(F.EXIT_QUALIFICATION);
    return {
      kind: 'ept', reason, q, gpa: v.num(F.GUEST_PHYSICAL_ADDRESS), rip,
      linear: reason === ExitReason.EPT_VIOLATION && (q & 0x80) !== 0 ? v.num(F.GUEST_LINEAR_ADDRESS) : null,
    };
  }
  if (reason === ExitReason.EXCEPTION_OR_NMI) {
    return {
      kind: 'pf', info: v.lo(F.VM_EXIT_INTERRUPTION_INFORMATION) >>> 0, code: v.lo(F.VM_EXIT_INTERRUPTION_ERROR_CODE),
      cr2: v.num(F.EXIT_QUALIFICATION), rip,
    };
  }
  if (reason === ExitReason.VMCALL && expected.kind === 'ok') {
    const hpa = expected.hpa;
    const value = access === 'read' ? r.cpu.reg64(0) : access === 'write' ? read64(r.cpu, hpa) : r.cpu.reg64(0);
    return { kind: 'ok', value, rip: access === 'fetch' ? rip : null };
  }
  return { kind: 'other', reason, rip };
}

/** The reference's outcome in the same terms. */
function predicted(o: Outcome, access: AccessKind, linear: number): unknown {
  const rip = accessRip(access, linear);
  switch (o.kind) {
    case 'ept':
      return { kind: 'ept', reason: o.reason, q: o.q, gpa: o.gpa, rip, linear: o.reason === ExitReason.EPT_VIOLATION ? linear : null };
    case 'pf':
      // 26.2 / 28.2.2: #PF exits with interruption information 80000B0EH, the error code, and CR2's value as qualification.
      return { kind: 'pf', info: 0x80000b0e, code: o.code, cr2: linear, rip };
    case 'ok':
      return {
        kind: 'ok',
        value: access === 'read' ? pattern(o.hpa) : access === 'write' ? VALUE : BigInt(o.hpa),
        rip: access === 'fetch' ? linear + 5 : null,
      };
  }
}

/** The identity EPT entries every guest access uses (code, stack): their A/D flags are not the access's alone. */
const SHARED = new Set([EPT_PML4, EPT_PDPT, ...range(0, 7).map((k) => EPT_PD_LOW + 8 * k)]);

/**
 * After a completed access: every other entry the reference holds (guest and
 * EPT, with their A/D flags) is in the model's memory as the reference has it.
 */
function expectSameEntries(r: GuestRun, mem: Memory): void {
  for (const [pa, value] of mem.q) if (!SHARED.has(pa)) expect(read64(r.cpu, pa), `entry at ${pa.toString(16)}`).toBe(value);
}

describe('EPT against the reference walk (29.3.2, 29.3.3.1-29.3.3.3, 29.3.5; 28.2.1 table 28-7)', () => {
  it('29.3.3.3: a random load, store or fetch through random guest and EPT tables completes at the reference\'s host-physical address, or exits exactly as it says (reason, qualification, GPA, linear address, RIP; #PF error code)', () => {
    const seen = { ok: 0, ept: 0, pf: 0 };
    fc.assert(fc.property(scenario(), (s) => {
      const mem = build(s), linear = linearOf(s);
      const model = configure(s, mem);
      const ref = mem.clone();
      const outcome = reference(s, ref, linear);
      seen[outcome.kind]++;
      const r = runInGuest(guestCode(s.access, linear), model, { budget: 50 });
      expect(observed(r, s.access, outcome)).toEqual(predicted(outcome, s.access, linear));
      // 29.3.5 and SDM vol. 3A 4.8: the flags the access set, in guest and EPT entries alike.
      if (outcome.kind === 'ok') expectSameEntries(r, ref);
    }), runs(100, 1));
    // The generator reaches every kind of outcome.
    expect(seen.ok * seen.ept * seen.pf).toBeGreaterThan(0);
  });
});

// ---- stale translations --------------------------------------------------------------------------------

/** The host's INVEPT single-context for the guest's EPTP (31.3 INVEPT), as an instruction after a VM exit. */
function inveptSingle(r: GuestRun): void {
  const cpu = r.cpu, descriptor = 0x403000, code = 0x402000;
  cpu.memory.write32(descriptor, r.vmcs.lo(F.EPT_POINTER)); cpu.memory.write32(descriptor + 4, 0);
  cpu.memory.write32(descriptor + 8, 0); cpu.memory.write32(descriptor + 12, 0);
  // mov rax, descriptor; mov ecx, 1; invept rcx, [rax]; pushfq; pop rdx; hlt
  const bytes = Uint8Array.of(0x48, 0xb8, ...imm64(BigInt(descriptor)), 0xb9, 1, 0, 0, 0, 0x66, 0x0f, 0x38, 0x80, 0x08, 0x9c, 0x5a, 0xf4);
  cpu.memory.load(code, bytes);
  cpu.codeWritten(code, bytes.length);
  cpu.ripLo = code; cpu.ripHi = 0; cpu.halted = false;
  run(cpu, 20);
  expect(cpu.gpr[4]! & 0x41, 'INVEPT VMsucceed').toBe(0);
}

/** VM entry (as VMRESUME's, 27) at `rip`, then the guest runs to its next exit. */
function resumeAt(r: GuestRun, rip: number): void {
  r.vmcs.set(F.GUEST_RIP, rip);
  vmEntry(r.vmx, r.cpu, false);
  run(r.cpu, 50);
}

interface Change { remap: boolean; rights: number; shift: number }

describe('29.4: a changed EPT leaf and the cached translation', () => {
  it('29.4.2, 29.4.3.1: after a completed read the host weakens or remaps the data page\'s EPT leaf without INVEPT: the next read still uses the old translation; after INVEPT single-context the reference\'s new outcome', () => {
    const change: fc.Arbitrary<Change> = fc.record({ remap: fc.boolean(), rights: fc.constantFrom(0, 2, 4, 6), shift: fc.integer({ min: 1, max: 3 }) });
    fc.assert(fc.property(scenario(true), change, (s, c) => {
      const mem = build(s), linear = linearOf(s);
      const ref = mem.clone();
      const first = reference(s, ref, linear);
      expect(first.kind).toBe('ok');
      const hpa = (first as { hpa: number }).hpa;
      // mov rbx, linear; mov rax, [rbx]; vmcall; mov rcx, [rbx]; vmcall; mov rdx, [rbx]; vmcall
      const code = [0x48, 0xbb, ...imm64(BigInt(linear)), 0x48, 0x8b, 0x03, ...VMCALL, 0x48, 0x8b, 0x0b, ...VMCALL, 0x48, 0x8b, 0x13, ...VMCALL];
      const r = runInGuest(code, configure(s, mem), { budget: 50 });
      expect(r.vmcs.lo(F.EXIT_REASON)).toBe(ExitReason.VMCALL);
      expect(r.cpu.reg64(0)).toBe(pattern(hpa));
      expectSameEntries(r, ref);

      // The host changes the leaf that maps the data page, in the model's memory and the reference's.
      const leaf = eptWalk(ref, finalGpa(s, linear)) as EptLeaf;
      let e = ref.read(leaf.leafAt);
      const remap = c.remap && leaf.level < 3;
      if (remap) {
        const block = (Number((e & ADDR) - BigInt(BLOCKS)) / MIB2 | 0);
        const moved = BigInt(BLOCKS + ((block + c.shift) % 4) * MIB2) - BigInt(BLOCKS + block * MIB2);
        e += moved;
      } else e = (e & ~7n) | BigInt(c.rights);
      ref.write(leaf.leafAt, e);
      r.cpu.memory.write32(leaf.leafAt, Number(e & 0xffffffffn) | 0);
      r.cpu.memory.write32(leaf.leafAt + 4, Number(e >> 32n) | 0);

      // 29.4.2: without INVEPT the cached guest-physical mapping may be used, and the model uses it.
      resumeAt(r, GUEST_CODE + 16);
      expect(r.vmcs.lo(F.EXIT_REASON)).toBe(ExitReason.VMCALL);
      expect(r.cpu.reg64(1)).toBe(pattern(hpa));

      // 29.4.3.1: INVEPT single-context drops it; the third read follows the new leaf.
      inveptSingle(r);
      resumeAt(r, GUEST_CODE + 22);
      const third = reference(s, ref, linear);
      const rip = GUEST_CODE + 22;
      const v = r.vmcs, reason = v.lo(F.EXIT_REASON) >>> 0;
      if (third.kind === 'ok') {
        expect(reason).toBe(ExitReason.VMCALL);
        expect(r.cpu.reg64(2)).toBe(pattern(third.hpa));
        if (remap) expect(third.hpa).not.toBe(hpa);
      } else {
        expect(third.kind).toBe('ept');
        const o = third as { reason: number; q: number; gpa: number };
        expect({ reason, q: v.num(F.EXIT_QUALIFICATION), gpa: v.num(F.GUEST_PHYSICAL_ADDRESS), rip: v.num(F.GUEST_RIP) })
          .toEqual({ reason: o.reason, q: o.q, gpa: o.gpa, rip });
      }
    }), runs(100, 2));
  });
});

/** The guest-physical address the scenario's walk ends at (its tables are all valid in the stale scenarios). */
function finalGpa(s: Scenario, linear: number): number {
  if (s.g3.ps) return s.g3.p * GIB + (linear % GIB);
  if (s.g2.ps) return s.g2.p * GIB + s.g2.dd * MIB2 + (linear % MIB2);
  return gpaOf(s.g1.p, s.g1.dd, s.g1.t + 4) + (linear % PAGE);
}
