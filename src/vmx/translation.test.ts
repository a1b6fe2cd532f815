/**
 * explainTranslation against the processor: for each setup the explanation is
 * made first, then the processor makes the same access, and the two must agree
 * on the host-physical address (the value read or written), the #PF error code
 * (SDM vol. 3A, 4.7), the EPT violation's qualification and guest-physical
 * address (vol. 3C, 28.2.1, table 28-7) or the misconfiguration (29.3.3.1).
 * Explaining must change nothing: memory, accessed/dirty flags, TLBs, EPT
 * caches and counters are the same before and after.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { Field } from '../../vmcs/fields.js';
import { Cpu } from '../cpu/cpu.js';
import { PhysicalMemory } from '../cpu/memory.js';
import { run } from '../cpu/run.js';
import {
  attempt, CR0_WP, CR4_PAE, CR4_PSE, CR4_SMAP, CR4_SMEP, EFER_NXE, GIB, KIB, legacyCpu, lohi, longModeCpu, MIB2,
  PTE_A, PTE_D, PTE_P, PTE_PS, PTE_RW, PTE_URW, PTE_US, PTE_XD, read64, Tables32, TablesPae, write64,
} from '../../spec-tests/paging/tables.js';
import { EPT_R, EPT_RWX, EPT_W, EPT_WB, EPT_X, EptTables, enableEpt } from '../../spec-tests/ept/ept-tables.js';
import { vmEntry } from './entry.js';
import { GUEST_CODE, MEMORY_SIZE, guestPteAddress, prepareGuest } from './testing.js';
import { explainTranslation, formatTranslation, type AccessKind, type Translation, type TranslationOutcome } from './translation.js';
import type { Vmcs } from './vmcs.js';

const VMCALL = [0x0f, 0x01, 0xc1];
const AC = 1 << 18;

/** True with probability `percent` % (unbiased: fast-check's bias towards small values would make rare events common). */
const chance = (percent: number): fc.Arbitrary<boolean> => fc.noBias(fc.nat(99)).map((n) => n < percent);
/** A guest paging-structure entry's bits: mostly present, XD and reserved bits now and then. */
const entryBits = fc.record({
  p: chance(93), rw: chance(70), us: fc.boolean(), a: fc.boolean(), d: fc.boolean(), xd: chance(12), rsvd: chance(4),
});

// ---- explaining changes nothing ------------------------------------------------

const ids = new WeakMap<object, number>();
let nextId = 0;
function idOf(o: object): number {
  let id = ids.get(o);
  if (id === undefined) { id = ++nextId; ids.set(o, id); }
  return id;
}

/** The state reachable from `v` (the TLBs' typed arrays, counters, flags), not following the processor or memory. */
function state(v: unknown, seen = new Set<unknown>()): unknown {
  if (typeof v === 'function') return 'function';
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Cpu || v instanceof PhysicalMemory) return 'processor';
  if (v instanceof DataView) return `view ${idOf(v)}`;
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
  if (seen.has(v)) return `seen ${idOf(v)}`;
  seen.add(v);
  if (v instanceof Map) return [...v.entries()].map(([k, x]) => [k, state(x, seen)]);
  if (Array.isArray(v)) return v.map((x) => state(x, seen));
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, state(x, seen)]));
}

/** Memory (which pages exist, their bytes), the write count of page tables, CR2, paging, MMU and EPT state. */
function snapshot(cpu: Cpu): unknown {
  const m = cpu.memory, pages: string[] = [];
  for (let ppn = 0; ppn < m.size / 4096; ppn++) {
    if (!m.isAllocated(ppn)) continue;
    const view = m.page(ppn)!;
    pages.push(`${ppn} ${createHash('sha1').update(new Uint8Array(view.buffer, view.byteOffset, 4096)).digest('hex')}`);
  }
  return {
    pages, pageTableWrites: m.pageTableWrites, cr2: [cpu.cr2Lo, cpu.cr2Hi],
    paging: state(cpu.paging), mmu: state(cpu.mmu), nested: state(cpu.paging.nested),
  };
}

/** Explains, checking that the explanation changed nothing. */
function explainPure(cpu: Cpu, linear: bigint, access: AccessKind, options?: { user?: boolean }): Translation {
  const before = snapshot(cpu), counters = { ...cpu.paging.counters };
  const t = explainTranslation(cpu, linear, access, options);
  expect(snapshot(cpu)).toEqual(before);
  expect(cpu.paging.counters).toEqual(counters);
  expect(Object.isFrozen(t) && Object.isFrozen(t.steps) && Object.isFrozen(t.outcome)).toBe(true);
  return t;
}

/** The outcome without its text, as the processor reports it. */
function bare(o: TranslationOutcome): unknown {
  const { reason: _reason, ...rest } = o as TranslationOutcome & { reason?: string };
  return rest;
}

// ---- a guest with EPT -----------------------------------------------------------

/** mov rbx, imm64 (48 BB) and mov rax, imm64 (48 B8). */
const movImm64 = (op: number, v: bigint): number[] => [0x48, op, ...Array.from({ length: 8 }, (_, k) => Number((v >> BigInt(8 * k)) & 0xffn))];
/** The access to [rbx]: mov rax, [rbx] (48 8B 03); mov [rbx], rax (48 89 03); jmp rbx (FF E3). */
const ACCESS: Record<AccessKind, number[]> = { read: [0x48, 0x8b, 0x03], write: [0x48, 0x89, 0x03], fetch: [0xff, 0xe3] };
const MARK = 0x5eed_0000_0000_0000n;

function accessCode(access: AccessKind, linear: bigint): number[] {
  return [...movImm64(0xbb, linear), ...movImm64(0xb8, MARK | linear), ...ACCESS[access], ...VMCALL];
}

/** Enters the prepared guest (VPID 1: its TLB entries survive the exit) and checks that the entry succeeded. */
function enter(g: ReturnType<typeof prepareGuest>): void {
  vmEntry(g.vmx, g.cpu, true);
  expect(g.vmx.lastEntryFailure).toBeNull();
  expect(g.cpu.nonRoot).toBe(true);
}

/** Every exception exits (reason 0), #PF with its error code; the VPID is 1. */
function interceptAll(v: Vmcs): void {
  v.set(Field.EXCEPTION_BITMAP, -1);
  const sec = Field.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
  v.set(sec, v.lo(sec) | (1 << 5));
  v.set(Field.VIRTUAL_PROCESSOR_IDENTIFIER, 1);
}

/** What the processor did: the outcome as explainTranslation names it, from the VM exit. */
function exitOutcome(cpu: Cpu, v: Vmcs, linear: bigint): unknown {
  expect(cpu.nonRoot).toBe(false);
  const reason = v.lo(Field.EXIT_REASON);
  switch (reason) {
    case ExitReason.VMCALL: return { kind: 'ok' };
    case ExitReason.EXCEPTION_OR_NMI: {
      const vector = v.lo(Field.VM_EXIT_INTERRUPTION_INFORMATION) & 0xff;
      if (vector === 13) return { kind: 'non-canonical' };
      expect(vector).toBe(14);
      expect(BigInt(v.num(Field.EXIT_QUALIFICATION))).toBe(linear); // the faulting address (28.1)
      return { kind: 'page-fault', errorCode: v.lo(Field.VM_EXIT_INTERRUPTION_ERROR_CODE) };
    }
    case ExitReason.EPT_VIOLATION:
      expect(BigInt(v.num(Field.GUEST_LINEAR_ADDRESS))).toBe(linear);
      return { kind: 'ept-violation', qualification: v.lo(Field.EXIT_QUALIFICATION), guestPhysical: BigInt(v.num(Field.GUEST_PHYSICAL_ADDRESS)) };
    case ExitReason.EPT_MISCONFIGURATION:
      return { kind: 'ept-misconfiguration', guestPhysical: BigInt(v.num(Field.GUEST_PHYSICAL_ADDRESS)) };
    default: throw new Error(`unexpected exit reason ${reason}`);
  }
}

/** Explains `access` at `linear` in the entered guest, runs the guest's access, and checks that the two agree. */
function explainThenRun(g: ReturnType<typeof prepareGuest>, linear: bigint, access: AccessKind): Translation {
  const t = explainPure(g.cpu, linear, access);
  const ok = t.outcome.kind === 'ok';
  if (ok && access === 'fetch') g.cpu.memory.load(Number(t.hostPhysical!), Uint8Array.from(VMCALL));
  const before = ok && access === 'read' ? read64(g.cpu, Number(t.hostPhysical!)) : 0n;
  run(g.cpu, 20);
  expect(exitOutcome(g.cpu, g.vmcs, linear)).toEqual(bare(t.outcome));
  if (ok && access === 'read') expect(g.cpu.reg64(0)).toBe(before);
  if (ok && access === 'write') expect(read64(g.cpu, Number(t.hostPhysical!))).toBe(MARK | linear);
  if (ok && access === 'fetch') expect(BigInt(g.vmcs.num(Field.GUEST_RIP))).toBe(linear);
  return t;
}

describe('explainTranslation under EPT (vol. 3C, 29.3.2): the 2-D walk', () => {
  /** EPT mapping everything with 4-KiB pages where the walk for DATA goes: its guest tables and the page. */
  const DATA = 0x50000;
  function fourKib(access: AccessKind, setup: (t: EptTables, cpu: Cpu) => void = () => {}, accessedDirty = false) {
    return prepareGuest(accessCode(access, BigInt(DATA)), (v, cpu) => {
      interceptAll(v);
      const t = new EptTables(cpu);
      t.identity(MEMORY_SIZE);
      for (const page of [0x200000, 0x201000, 0x202000, 0x203000, DATA]) t.map(page, page, EPT_RWX | EPT_WB);
      setup(t, cpu);
      enableEpt(v, t.eptp(accessedDirty));
      write64(cpu, DATA, 0x1122334455667788n);
    });
  }

  it('4-level guest paging over 4-level EPT, 4-KiB pages: 24 references (4 guest entries × (4 EPT + 1) + 4 EPT for the page)', () => {
    const g = fourKib('read');
    enter(g);
    const t = explainThenRun(g, BigInt(DATA), 'read');
    expect(t.outcome).toEqual({ kind: 'ok' });
    expect(t.mode).toBe('4-level');
    expect(t.references).toBe(24);
    expect(t.guestPhysical).toBe(BigInt(DATA));
    expect(t.hostPhysical).toBe(BigInt(DATA));
    expect(t.pageSize).toBe(KIB);
    const guest = t.steps.filter((s) => s.dimension === 'guest');
    expect(guest.map((s) => s.name)).toEqual(['PML4E', 'PDPTE', 'PDE', 'PTE']);
    expect(guest.map((s) => s.nested.length)).toEqual([4, 4, 4, 4]);
    expect(t.steps.filter((s) => s.dimension === 'ept').map((s) => s.name)).toEqual(['EPT PML4E', 'EPT PDPTE', 'EPT PDE', 'EPT PTE']);
    expect(g.cpu.reg64(0)).toBe(0x1122334455667788n);
  });

  it('formats one line per entry, nested EPT entries indented; the accessed flags the walk sets show in the next explanation (4.8)', () => {
    const g = fourKib('read');
    enter(g);
    const lines = formatTranslation(explainPure(g.cpu, BigInt(DATA), 'read'));
    expect(lines[0]).toBe('linear 0x50000, read (supervisor), 4-level paging with EPT');
    expect(lines[1]).toBe('guest PML4E[0] at gpa 0x200000 → hpa 0x200000 = 0x201007 P RW US');
    expect(lines[2]).toBe('  EPT PML4E[0] at 0x600000 = 0x601007 R W X');
    expect(lines[5]).toBe('  EPT PTE[0] at 0x603000 = 0x200037 R W X WB');
    expect(lines[16]).toBe('guest PTE[80] at gpa 0x203280 → hpa 0x203280 = 0x50007 P RW US');
    expect(lines[21]).toBe('page gpa 0x50000 → hpa 0x50000 (4 KiB page)');
    expect(lines.at(-1)).toBe('ok: host-physical 0x50000 (24 memory references)');
    expect(lines).toHaveLength(27);
    run(g.cpu, 20);
    // The host's explanation after the exit: no EPT, the guest's page tables are no longer CR3's.
    vmEntry(g.vmx, g.cpu, false);
    const again = explainPure(g.cpu, BigInt(DATA), 'read');
    expect((again.steps[0] as { flags: readonly string[] }).flags).toEqual(['P', 'RW', 'US', 'A']);
  });

  it('EPT with 2-MiB pages: 3 references per EPT walk, the EPT PDE is the leaf', () => {
    const g = prepareGuest(accessCode('read', 0x300000n), (v, cpu) => {
      interceptAll(v);
      const t = new EptTables(cpu);
      t.identity(MEMORY_SIZE);
      enableEpt(v, t.eptp());
    });
    enter(g);
    const t = explainThenRun(g, 0x300000n, 'read');
    expect(t.references).toBe(4 * (3 + 1) + 3);
    expect(t.steps.at(-1)).toMatchObject({ dimension: 'ept', name: 'EPT PDE', flags: ['R', 'W', 'X', 'WB', 'large'] });
  });

  it('a guest-physical page EPT maps elsewhere: hostPhysical is where the load reads', () => {
    const g = fourKib('read', (t, cpu) => { t.map(DATA, 0x51000, EPT_RWX | EPT_WB); write64(cpu, 0x51000, 0xabcdefn); });
    enter(g);
    const t = explainThenRun(g, BigInt(DATA), 'read');
    expect(t.hostPhysical).toBe(0x51000n);
    expect(g.cpu.reg64(0)).toBe(0xabcdefn);
  });

  it('a not-present EPT PTE for the page: violation, qualification 181H (read, linear valid, translation)', () => {
    const g = fourKib('read', (t) => t.map(DATA, DATA, 0));
    enter(g);
    const t = explainThenRun(g, BigInt(DATA), 'read');
    expect(t.outcome).toMatchObject({ kind: 'ept-violation', qualification: 0x181, guestPhysical: BigInt(DATA) });
    expect(formatTranslation(t).at(-1)).toBe('EPT violation at gpa 0x50000, exit qualification 0x181: the page: EPT PTE not present (24 memory references)');
  });

  it('a write to a page EPT maps read/execute: bits 1, 3 and 5', () => {
    const g = fourKib('write', (t) => t.map(DATA, DATA, EPT_R | EPT_X | EPT_WB));
    enter(g);
    expect(explainThenRun(g, BigInt(DATA), 'write').outcome).toMatchObject({ qualification: 2 | (5 << 3) | 0x180 });
  });

  it('a fetch from a page EPT maps read/write: bits 2, 3 and 4', () => {
    const g = fourKib('fetch', (t) => t.map(DATA, DATA, EPT_R | EPT_W | EPT_WB));
    enter(g);
    expect(explainThenRun(g, BigInt(DATA), 'fetch').outcome).toMatchObject({ qualification: 4 | (3 << 3) | 0x180 });
  });

  /** A guest reading FAR, whose guest PTE is in a page of its own (not the one with the code's PTE), with `setup` on an identity EPT. */
  const FAR = 0x300000, FAR_PTE = guestPteAddress(FAR);
  function far(access: AccessKind, setup: (t: EptTables) => void, accessedDirty = false) {
    return prepareGuest(accessCode(access, BigInt(FAR)), (v, cpu) => {
      interceptAll(v);
      const t = new EptTables(cpu);
      t.identity(MEMORY_SIZE);
      setup(t);
      enableEpt(v, t.eptp(accessedDirty));
    });
  }

  it('the guest PTE\'s page not present in EPT: bit 7 without bit 8; the guest-physical address is the entry\'s', () => {
    const g = far('read', (t) => t.map(FAR_PTE, FAR_PTE, 0));
    enter(g);
    const t = explainThenRun(g, BigInt(FAR), 'read');
    expect(t.outcome).toMatchObject({ kind: 'ept-violation', qualification: 0x81, guestPhysical: BigInt(FAR_PTE) });
    expect(t.steps.at(-1)).toMatchObject({ dimension: 'guest', name: 'PTE', hostAddress: null, value: null });
  });

  it('setting the accessed flag of a guest PTE in a page EPT maps read/execute: a write violation on the entry (4.8; 29.3.3.2)', () => {
    const g = far('read', (t) => t.map(FAR_PTE, FAR_PTE, EPT_R | EPT_X | EPT_WB));
    enter(g);
    const t = explainThenRun(g, BigInt(FAR), 'read');
    expect(t.outcome).toMatchObject({ kind: 'ept-violation', qualification: 2 | (5 << 3) | 0x80, guestPhysical: BigInt(FAR_PTE) });
    expect(t.outcome.kind === 'ept-violation' && t.outcome.reason).toMatch(/^setting the accessed flag of the guest PTE/);
  });

  it('with EPT accessed and dirty flags, guest entry reads are writes: a read-only page of guest PTEs exits with bits 0, 1 and 3', () => {
    const g = far('read', (t) => t.map(FAR_PTE, FAR_PTE, EPT_R | EPT_WB), true);
    enter(g);
    const t = explainThenRun(g, BigInt(FAR), 'read');
    expect(t.outcome).toMatchObject({ kind: 'ept-violation', qualification: 3 | (1 << 3) | 0x80, guestPhysical: BigInt(FAR_PTE) });
  });

  it('EPT misconfigurations: write without read, a reserved memory type', () => {
    for (const bits of [EPT_W | EPT_WB, EPT_RWX | (7 << 3)]) {
      const g = fourKib('read', (t) => t.map(DATA, DATA, bits));
      enter(g);
      const t = explainThenRun(g, BigInt(DATA), 'read');
      expect(t.outcome).toMatchObject({ kind: 'ept-misconfiguration', guestPhysical: BigInt(DATA) });
    }
  });

  it('a not-present guest PTE: #PF with error code 0, no EPT walk for the page', () => {
    const g = fourKib('read', (_t, cpu) => cpu.memory.write32(guestPteAddress(DATA), 0));
    enter(g);
    const t = explainThenRun(g, BigInt(DATA), 'read');
    expect(t.outcome).toEqual({ kind: 'page-fault', errorCode: 0, reason: 'PTE not present' });
    expect(t.references).toBe(20);
    expect(t.guestPhysical).toBeNull();
  });
});

/**
 * Random setups: a linear address in PML4 slot 1 whose guest PDPT, PD and PT
 * (and page) lie in pages that EPT maps with random permissions, memory types
 * and host-physical addresses; random guest entry flags and leaf level, CR0.WP,
 * CR4.SMEP/SMAP, EFER.NXE, EPT A/D flags, and access. The guest's code is
 * reached through PML4 slot 0, which stays mapped.
 */
describe('explainTranslation under EPT agrees with the processor on random setups (29.3; 4.6, 4.7, 4.8)', () => {
  const TABLES = [0x700000, 0x701000, 0x702000]; // guest PDPT, PD, PT (guest-physical)
  const PAGE = 0x710000; // guest-physical pages PAGE + k × 4 KiB
  const eptBits = fc.record({
    perms: fc.oneof({ arbitrary: fc.constant(7), weight: 4 }, { arbitrary: fc.nat(7), weight: 1 }),
    type: fc.oneof({ arbitrary: fc.constant(6), weight: 17 }, { arbitrary: fc.constantFrom(0, 2, 7), weight: 3 }),
    moved: fc.boolean(),
  });
  const setup = fc.record({
    entries: fc.tuple(entryBits, entryBits, entryBits, entryBits), leafLevel: fc.constantFrom(1, 1, 1, 2, 3),
    tables: fc.tuple(eptBits, eptBits, eptBits), page: eptBits, k: fc.nat(15), offset: fc.nat(511).map((n) => n * 8),
    wp: fc.boolean(), smep: fc.boolean(), smap: fc.boolean(), nxe: chance(70), accessedDirty: fc.boolean(),
    access: fc.constantFrom<AccessKind>('read', 'write', 'fetch'),
  });

  it('hostPhysical, #PF error code, EPT violation qualification or misconfiguration', () => {
    fc.assert(fc.property(setup, (s) => {
      const gpa = PAGE + s.k * KIB, linear = 0x80_0000_0000n + BigInt(gpa + s.offset);
      let expectedHpa = 0;
      const g = prepareGuest(accessCode(s.access, linear), (v, cpu) => {
        interceptAll(v);
        // The guest's code page is a supervisor page (the harness's are user pages): SMEP lets it run.
        cpu.memory.write32(guestPteAddress(GUEST_CODE), GUEST_CODE | 3);
        v.set(Field.GUEST_CR0, v.lo(Field.GUEST_CR0) | (s.wp ? CR0_WP : 0));
        v.set(Field.GUEST_CR4, v.lo(Field.GUEST_CR4) | (s.smep ? CR4_SMEP : 0) | (s.smap ? CR4_SMAP : 0));
        if (s.nxe) cpu.efer |= EFER_NXE;
        const t = new EptTables(cpu);
        t.identity(MEMORY_SIZE);
        // Each guest table at a host page of its own (moved: 30000H above), with the EPT bits drawn.
        const hpa = TABLES.map((page, n) => {
          const e = s.tables[n]!, at = e.moved ? page + 0x30000 : page;
          t.map(page, at, e.perms | (e.type << 3));
          return at;
        });
        expectedHpa = (s.page.moved ? 0x720000 + s.k * KIB : gpa) + s.offset;
        t.map(gpa, expectedHpa - s.offset, s.page.perms | (s.page.type << 3));
        enableEpt(v, t.eptp(s.accessedDirty));
        // Guest entries: PML4E[1] (in the harness's PML4), PDPTE[0], PDE[3], PTE[110H + k]; a large leaf maps the same address.
        const at = [0x200008, hpa[0]!, hpa[1]! + 8 * 3, hpa[2]! + 8 * (0x110 + s.k)];
        const frames = [TABLES[0]!, s.leafLevel === 3 ? 0 : TABLES[1]!, s.leafLevel === 2 ? 0x600000 : TABLES[2]!, gpa];
        for (let n = 0; n < 4; n++) {
          const level = 4 - n, e = s.entries[n]!, leaf = level === s.leafLevel;
          if (level < s.leafLevel) break;
          let bits = (e.p ? PTE_P : 0n) | (e.rw ? PTE_RW : 0n) | (e.us ? PTE_US : 0n) | (e.a ? PTE_A : 0n) | (e.xd ? PTE_XD : 0n);
          if (leaf && e.d) bits |= PTE_D;
          if (leaf && level > 1) bits |= PTE_PS;
          if (e.rsvd) bits |= level === 4 ? PTE_PS : 1n << 51n;
          write64(cpu, at[n]!, BigInt(frames[n]!) | bits);
        }
        write64(cpu, expectedHpa, 0x0123_4567_89ab_cdefn);
      });
      enter(g);
      const t = explainThenRun(g, linear, s.access);
      if (t.outcome.kind === 'ok') expect(t.hostPhysical).toBe(BigInt(expectedHpa));
      expect(formatTranslation(t).length).toBeGreaterThan(1);
    }), { numRuns: 300 });
  });
});

// ---- paging without EPT ---------------------------------------------------------

/** The processor's access at (lo, hi): its value (read), what it wrote (write), or the fault. */
function processorAccess(cpu: Cpu, linear: bigint, access: AccessKind, implicit: boolean) {
  const [lo, hi] = lohi(linear);
  return attempt(cpu, () => {
    if (access === 'fetch') return cpu.mmu.fetch8(lo, hi);
    if (access === 'write') {
      if (implicit) cpu.mmu.writeImplicit(lo, hi, 4, 0x600dcafe, 0); else cpu.mmu.write32(lo, hi, 0x600dcafe);
      return 0x600dcafe;
    }
    return implicit ? cpu.mmu.readImplicit(lo, hi, 4) : cpu.mmu.read32(lo, hi);
  });
}

/** Explains, makes the access, and checks that the two agree (value at hostPhysical, or #PF and CR2, or #GP). */
function agree(cpu: Cpu, linear: bigint, access: AccessKind, implicit = false): Translation {
  const t = explainPure(cpu, linear, access, implicit ? { user: false } : undefined);
  const got = processorAccess(cpu, linear, access, implicit);
  const o = t.outcome;
  if (o.kind === 'ok') {
    const pa = Number(t.hostPhysical!);
    const want = access === 'fetch' ? cpu.memory.read8(pa) : cpu.memory.read32(pa);
    expect(got).toEqual({ value: want });
  } else if (o.kind === 'page-fault') {
    expect(got).toEqual({ vector: 14, code: o.errorCode });
    expect(BigInt(cpu.cr2Hi >>> 0) << 32n | BigInt(cpu.cr2Lo >>> 0)).toBe(t.linear);
  } else {
    expect(o.kind).toBe('non-canonical');
    expect(got).toEqual({ vector: 13, code: 0 });
  }
  return t;
}

describe('explainTranslation without EPT agrees with the processor (4.5, 4.6, 4.7)', () => {
  const setup = fc.record({
    levels: fc.constantFrom<4 | 5>(4, 4, 5),
    // Canonical in both widths, but for the last two: canonical only with 57 bits, and in neither.
    base: fc.constantFrom(0n, 0x40_0000_0000n, 0x7fff_c000_0000n, 0xffff_8000_4000_0000n, 0xff00_0000_0000_0000n, 0x0100_0000_0000_0000n)
      .chain((b) => b >= 0xff00_0000_0000_0000n || b === 0x0100_0000_0000_0000n ? fc.constantFrom(b, 0x40_0000_0000n) : fc.constant(b)),
    offset: fc.nat(0x1ffffc).map((n) => n & ~3), page: fc.nat(63),
    entries: fc.array(entryBits, { minLength: 5, maxLength: 5 }), leafLevel: fc.constantFrom(1, 1, 2, 3),
    wp: fc.boolean(), smep: fc.boolean(), smap: fc.boolean(), nxe: chance(70), ac: fc.boolean(), cpl3: fc.boolean(),
    implicit: fc.boolean(), access: fc.constantFrom<AccessKind>('read', 'write', 'fetch'),
  });

  it('4-level and 5-level paging, random entries, privilege and controls', () => {
    fc.assert(fc.property(setup, (s) => {
      const linear = s.base + BigInt(s.offset);
      let expectedPa = 0;
      const { cpu } = longModeCpu((t) => {
        const c = t.cpu;
        c.cr0 = s.wp ? c.cr0 | CR0_WP : c.cr0 & ~CR0_WP;
        c.cr4 |= (s.smep ? CR4_SMEP : 0) | (s.smap ? CR4_SMAP : 0);
        c.efer = s.nxe ? c.efer | EFER_NXE : c.efer & ~EFER_NXE;
        if (s.ac) c.flags |= AC;
        // Build the chain, then rewrite each entry with the drawn bits (frames kept; a large leaf maps 0 or 400000H).
        const size = s.leafLevel === 1 ? KIB : s.leafLevel === 2 ? MIB2 : GIB;
        const frame = s.leafLevel === 1 ? 0x300000 + s.page * KIB : s.leafLevel === 2 ? 0x400000 : 0;
        t.map(linear, frame, PTE_URW, size);
        expectedPa = frame + s.offset % size;
        c.memory.write32(expectedPa, expectedPa ^ 0x5a5a5a5a);
        const at = Array.from({ length: s.levels }, (_, n) => t.entry(linear, s.levels - n));
        for (let n = 0; n < s.levels; n++) {
          const level = s.levels - n, e = s.entries[n]!, leaf = level === s.leafLevel;
          if (level < s.leafLevel) break;
          const old = read64(c, at[n]!) & 0x000f_ffff_ffff_f000n;
          let bits = (e.p ? PTE_P : 0n) | (e.rw ? PTE_RW : 0n) | (e.us ? PTE_US : 0n) | (e.a ? PTE_A : 0n) | (e.xd ? PTE_XD : 0n);
          if (leaf && e.d) bits |= PTE_D;
          if (leaf && level > 1) bits |= PTE_PS;
          if (e.rsvd) bits |= level >= 4 ? PTE_PS : 1n << 51n;
          write64(c, at[n]!, old | bits);
        }
      }, s.levels);
      if (s.cpl3) cpu.cpl = 3;
      const t = agree(cpu, linear, s.access, s.implicit && s.access !== 'fetch');
      if (t.outcome.kind === 'ok') expect(t.hostPhysical).toBe(BigInt(expectedPa));
      expect(t.references).toBeLessThanOrEqual(s.levels);
    }), { numRuns: 400 });
  });

  it('a user-mode read of a supervisor page: #PF with P and U set (4.6.1)', () => {
    const { cpu } = longModeCpu((t) => t.map(0x1234_5000n, 0x300000, PTE_P | PTE_RW));
    cpu.cpl = 3;
    const t = agree(cpu, 0x1234_5678n, 'read');
    expect(t.outcome).toEqual({ kind: 'page-fault', errorCode: 5, reason: 'user access to a supervisor page' });
    expect(t.references).toBe(4);
    expect(formatTranslation(t).at(-1)).toBe('#PF, error code 0x5 (P U): user access to a supervisor page (4 memory references)');
  });

  it('a non-canonical address: #GP(0), nothing walked (vol. 1, 3.3.7.1)', () => {
    const { cpu } = longModeCpu((t) => t.map(0n, 0x300000));
    const t = agree(cpu, 0x0000_8000_0000_0000n, 'read');
    expect(t.outcome.kind).toBe('non-canonical');
    expect(t.steps).toHaveLength(0);
  });

  it('32-bit paging with a 4-MiB page above 4 GiB (PSE-36, 4.3): the PDE is the leaf', () => {
    const cpu = legacyCpu((c) => {
      const t = new Tables32(c);
      t.map(0x1000, 0x5000);
      t.mapLarge(0x80000000, 0x00400000, Number(PTE_URW), 3);
      return t.root;
    }, CR4_PSE);
    const t = explainPure(cpu, 0x8012_3456n, 'read');
    expect(t.mode).toBe('32-bit');
    expect(t.hostPhysical).toBe(0x3_0052_3456n);
    expect(t.pageSize).toBe(0x400000);
    expect(t.steps.map((s) => s.name)).toEqual(['PDE']);
    expect(cpu.mmu.translate(0x80123456, 0, 0)).toBe(0x3_0052_3456 / KIB | 0);
    const small = agree(cpu, 0x1abcn, 'write');
    expect(small.hostPhysical).toBe(0x5abcn);
    expect(small.references).toBe(2);
  });

  it('PAE paging starts at the PDPTE registers, which are not memory references (4.4.1)', () => {
    const cpu = legacyCpu((c) => {
      const t = new TablesPae(c);
      t.map(0x4000_2000, 0x6000, PTE_URW | PTE_XD);
      return t.pdpt;
    }, CR4_PAE);
    cpu.efer |= EFER_NXE;
    cpu.mmu.flush();
    const t = agree(cpu, 0x4000_2010n, 'fetch');
    expect(t.mode).toBe('PAE');
    expect(t.steps.map((s) => s.name)).toEqual(['PDPTE register', 'PDE', 'PTE']);
    expect(t.references).toBe(2);
    expect(t.outcome).toEqual({ kind: 'page-fault', errorCode: 0x11, reason: 'instruction fetch from an XD page' });
    expect(formatTranslation(t)[1]).toBe('guest PDPTE register 1 = 0x801001 P');
    expect(agree(cpu, 0x4000_2010n, 'read').hostPhysical).toBe(0x6010n);
  });

  it('the flat map of enterFlat64 (no page tables): linear = physical, nothing read', () => {
    const cpu = new Cpu({ memorySize: 16 * 1024 * 1024 });
    cpu.enterFlat64();
    const t = agree(cpu, 0x123456n, 'read');
    expect(t).toMatchObject({ mode: 'flat', hostPhysical: 0x123456n, references: 0, steps: [] });
  });
});
