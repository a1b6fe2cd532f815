/**
 * Explaining a translation, for the debugger: how a linear address becomes a
 * guest-physical address (guest paging, SDM vol. 3A, chapter 4) and that a
 * host-physical one (EPT, vol. 3C, 29.3), with every entry read at each level
 * of both dimensions, its bits by name, and why the walk faults or exits.
 *
 * The processor's own walks are in src/cpu/paging.ts and src/vmx/ept.ts;
 * these walkers only describe, and decide nothing the processor does. They
 * read memory and nothing else: no accessed or dirty flag is set, no TLB or
 * EPT cache entry made, no fault or exit raised, no counter moved.
 * translation.test.ts holds the two to the same answers. They follow memory,
 * not caches: after a VMM or guest changes an entry without invalidating, the
 * processor may still use what its TLB holds (4.10.4.3; vol. 3C, 29.4.3).
 */
import type { Cpu } from '../cpu/cpu.js';
import { PAGE_SIZE, type PhysicalMemory } from '../cpu/memory.js';
import {
  CR0_WP, CR4_PAE, CR4_PSE, CR4_SMAP, CR4_SMEP, MAXPHYADDR, PF_I, PF_P, PF_RSVD, PF_U, PF_W, PagingMode, pagingMode,
} from '../cpu/paging.js';
import { AC, EFER_NXE } from '../cpu/regs.js';
import { Ept, LARGE as EPT_LARGE_BIT, RSVD_1G as EPT_1G, RSVD_2M as EPT_2M, RSVD_TABLE as EPT_TABLE, RWX as EPT_RIGHTS } from './ept.js';
import { EptViolation } from '../../vmcs/qualifications.js';

export type AccessKind = 'read' | 'write' | 'fetch';

/** 'flat': the model's paging-free identity map of enterFlat64 (Paging.identity); 'none': CR0.PG = 0. */
export type TranslationMode = 'flat' | 'none' | '32-bit' | 'PAE' | '4-level' | '5-level';

/** An EPT paging-structure entry read (29.3.2). */
export interface EptStep {
  readonly dimension: 'ept';
  /** 4 = EPT PML4E ... 1 = EPT PTE. */
  readonly level: number;
  readonly name: string;
  readonly index: number;
  /** Host-physical address of the entry. */
  readonly address: bigint;
  readonly value: bigint;
  /** R, W, X; in the entry that maps the page its memory type (UC, WC, WT, WP, WB, or MTn if reserved), IPAT, D, large; A. */
  readonly flags: readonly string[];
}

/** A guest paging-structure entry read, or a PAE PDPTE register used (4.3-4.5). */
export interface GuestStep {
  readonly dimension: 'guest';
  /** 5 = PML5E, 4 = PML4E, 3 = PDPTE, 2 = PDE, 1 = PTE. */
  readonly level: number;
  readonly name: string;
  readonly index: number;
  /** Physical address of the entry (guest-physical under EPT); null for a PDPTE register. */
  readonly address: bigint | null;
  /** Where the entry is in host-physical memory (`address` itself without EPT); null when not translated. */
  readonly hostAddress: bigint | null;
  /** The EPT walk that translated `address` (empty without EPT). */
  readonly nested: readonly EptStep[];
  /** The entry; null when its EPT translation failed and it was not read. */
  readonly value: bigint | null;
  /** P, RW, US, PWT, PCD, A, PS, XD; in the entry that maps the page also D, G, PAT. */
  readonly flags: readonly string[];
}

export type Step = GuestStep | EptStep;

export type TranslationOutcome =
  | { readonly kind: 'ok' }
  /** #GP(0) (#SS(0) for a stack reference) before any walk (vol. 1, 3.3.7.1). */
  | { readonly kind: 'non-canonical'; readonly reason: string }
  | { readonly kind: 'page-fault'; readonly errorCode: number; readonly reason: string }
  | { readonly kind: 'ept-violation'; readonly qualification: number; readonly guestPhysical: bigint; readonly reason: string }
  | { readonly kind: 'ept-misconfiguration'; readonly guestPhysical: bigint; readonly reason: string };

export interface Translation {
  /** The linear address explained (bits 31:0 of the one asked for outside IA-32e mode). */
  readonly linear: bigint;
  readonly access: AccessKind;
  /** A user-mode access (SDM vol. 3A, 4.6.1). */
  readonly user: boolean;
  readonly mode: TranslationMode;
  /** Guest-physical addresses go through EPT. */
  readonly ept: boolean;
  /** The guest entries (each with its EPT walk), then the EPT walk of the final guest-physical address. */
  readonly steps: readonly Step[];
  /** Where guest paging leads (the physical address without EPT); null when the guest walk did not finish. */
  readonly guestPhysical: bigint | null;
  /** The host-physical address accessed; null unless the outcome is 'ok'. */
  readonly hostPhysical: bigint | null;
  /** Bytes of the guest page that maps the address; null with paging off or when the walk did not finish. */
  readonly pageSize: number | null;
  readonly outcome: TranslationOutcome;
  /** Paging-structure entries read in both dimensions: 24 for a 4-KiB page, 4-level over 4-level. */
  readonly references: number;
}

/** Guest entry bits (SDM vol. 3A, 4.3-4.5). */
const P = 1n, RW = 2n, US = 4n, A = 0x20n, D = 0x40n, PS = 0x80n, G = 0x100n, XD = 1n << 63n;
const GUEST_FLAGS: readonly [bigint, string][] = [[P, 'P'], [RW, 'RW'], [US, 'US'], [8n, 'PWT'], [16n, 'PCD'], [A, 'A']];
/** Address bits MAXPHYADDR-1:12 of an entry (of CR3, of an EPT entry). */
const ADDRESS = ((1n << BigInt(MAXPHYADDR)) - 1n) & ~0xfffn;
/** Reserved: bits 51:MAXPHYADDR in 4-level and 5-level entries (4.5) and EPT entries (29.3.2), 62:MAXPHYADDR in PAE ones (4.4.2). */
const RSVD_IA32E = (1n << 52n) - (1n << BigInt(MAXPHYADDR));
const RSVD_PAE = (1n << 63n) - (1n << BigInt(MAXPHYADDR));
/** Reserved frame bits of large pages: 29:13 (1 GiB), 20:13 (2 MiB). */
const RSVD_1G = 0x3fffe000n, RSVD_2M = 0x1fe000n;
/** 4-MiB PDE (PSE-36): physical-address bits (M-1):32 in bits (M-20):13, bits 21:(M-19) reserved, M = min(MAXPHYADDR, 40) (4.3). */
const PSE36_BITS = BigInt(Math.min(MAXPHYADDR, 40) - 32);
const PSE36_RSVD = (1n << 22n) - (1n << (PSE36_BITS + 13n));

/** EPT entry bits and reserved low bits, as ept.ts has them (29.3.2, tables 29-1 to 29-6). */
const EPT_RWX = BigInt(EPT_RIGHTS), EPT_LARGE = BigInt(EPT_LARGE_BIT);
const EPT_RSVD_TABLE = BigInt(EPT_TABLE), EPT_RSVD_1G = BigInt(EPT_1G), EPT_RSVD_2M = BigInt(EPT_2M);
/** Memory types in bits 5:3 of the entry that maps a page (29.3.7); 2, 3 and 7 are reserved. */
const MEMORY_TYPES = ['UC', 'WC', 'MT2', 'MT3', 'WT', 'WP', 'WB', 'MT7'];
/** EPT-violation exit qualification (28.2.1, table 28-7). */
const Q_READ = EptViolation.DATA_READ, Q_WRITE = EptViolation.DATA_WRITE, Q_FETCH = EptViolation.INSTRUCTION_FETCH;
const Q_LINEAR_VALID = EptViolation.GUEST_LINEAR_ADDRESS_VALID, Q_TRANSLATION = EptViolation.TRANSLATED_LINEAR_ADDRESS;

const GUEST_NAMES = ['', 'PTE', 'PDE', 'PDPTE', 'PML4E', 'PML5E'];
const EPT_NAMES = ['', 'EPT PTE', 'EPT PDE', 'EPT PDPTE', 'EPT PML4E'];
const MODE_NAMES: Record<number, TranslationMode> = {
  [PagingMode.NONE]: 'none', [PagingMode.BITS32]: '32-bit', [PagingMode.PAE]: 'PAE',
  [PagingMode.LEVEL4]: '4-level', [PagingMode.LEVEL5]: '5-level',
};

/** A guest walk that reached the page: where, how large, the entry that maps it, rights (bit 0 R/W, bit 1 U/S) and XD. */
interface Walked { gpa: bigint; size: number; leaf: bigint; rights: number; xd: boolean }

/** One EPT walk: its steps, and where it led or why it stopped. */
interface EptWalk {
  steps: EptStep[];
  hpa: bigint | null;
  /** The permissions of the entries walked, ANDed (bits 2:0). */
  rights: number;
  failure: { kind: 'violation' | 'misconfiguration'; reason: string } | null;
}

/**
 * What a translation depends on. The processor has it (`translationState`),
 * and so has a guest seen through its VMCS after a VM exit (src/hv), when the
 * processor holds host state.
 */
export interface TranslationState {
  readonly cr0: number; readonly cr3Lo: number; readonly cr3Hi: number; readonly cr4: number; readonly efer: number;
  /** The PDPTE registers of PAE paging, two halves each. */
  readonly pdpte: Int32Array;
  readonly cpl: number;
  /** RFLAGS (AC decides SMAP for supervisor accesses). */
  readonly flags: number;
  readonly memory: PhysicalMemory;
  /** The EPT beneath guest paging, or null. */
  readonly ept: Ept | null;
  /** enterFlat64's paging-free identity map. */
  readonly identity: boolean;
  /** Accesses are user-mode unless told otherwise (CPL 3, not an implicit supervisor access). */
  readonly user: boolean;
  /** 64 minus the linear-address width: 16 (48 bits) or 7 (57 bits, CR4.LA57). */
  readonly canonicalShift: number;
}

/** The processor's own translation state. */
export function translationState(cpu: Cpu): TranslationState {
  const n = cpu.paging.nested;
  if (n !== null && !(n instanceof Ept)) throw new Error('explainTranslation: nested paging other than EPT');
  return {
    cr0: cpu.cr0, cr3Lo: cpu.cr3Lo, cr3Hi: cpu.cr3Hi, cr4: cpu.cr4, efer: cpu.efer, pdpte: cpu.pdpte, cpl: cpu.cpl,
    flags: cpu.flags, memory: cpu.memory, ept: n, identity: cpu.paging.identity, user: cpu.mmu.user,
    canonicalShift: cpu.mmu.canonicalShift,
  };
}

/**
 * Explains how the processor in its current state (CR0, CR3, CR4, EFER, the
 * PDPTE registers, CPL and RFLAGS.AC, the EPT of a guest in VMX non-root
 * operation) translates `linear` for `access`. `options.user` makes it a
 * user-mode (true) or supervisor-mode (false) access; by default it is the
 * kind the processor's accesses now are (CPL 3: user).
 */
export function explainTranslation(
  from: Cpu | TranslationState, linear: bigint, access: AccessKind, options: { user?: boolean } = {},
): Translation {
  const state = 'paging' in from ? translationState(from) : from;
  return new Explainer(state, access, options.user ?? state.user).explain(BigInt.asUintN(64, linear));
}

class Explainer {
  private readonly steps: Step[] = [];
  /** The EPT permissions of each guest entry's page, in the order of `steps` (for the A/D flag writes). */
  private readonly entryRights: number[] = [];
  private references = 0;
  private readonly ept: Ept | null;

  constructor(private readonly cpu: TranslationState, private readonly access: AccessKind, private readonly user: boolean) {
    this.ept = cpu.ept;
  }

  explain(asked: bigint): Translation {
    const cpu = this.cpu;
    if (cpu.identity) {
      // enterFlat64's map: linear = physical without a walk (nested paging is not consulted either).
      if (!this.canonical(asked)) return this.result(asked, 'flat', null, null, null, NON_CANONICAL);
      return this.result(asked, 'flat', asked, asked, null, { kind: 'ok' });
    }
    const mode = pagingMode(cpu), name = MODE_NAMES[mode]!;
    // Outside IA-32e mode linear addresses have 32 bits (4.1.1).
    const linear = mode >= PagingMode.LEVEL4 ? asked : asked & 0xffffffffn;
    if (!this.canonical(linear)) return this.result(linear, name, null, null, null, NON_CANONICAL);
    if (mode === PagingMode.NONE) return this.finish(linear, name, linear, null);

    const w = mode === PagingMode.BITS32 ? this.walk32(linear) : this.walk64(linear, mode);
    if (!('gpa' in w)) return this.result(linear, name, null, null, null, w);
    // The access rights of the translation (4.6).
    const denied = this.denied(w.rights, w.xd);
    if (denied !== null) return this.result(linear, name, w.gpa, null, w.size, this.pageFault(PF_P, denied));
    const ad = this.flagWrites(w.leaf);
    if (ad !== null) return this.result(linear, name, w.gpa, null, w.size, ad);
    return this.finish(linear, name, w.gpa, w.size);
  }

  /** The final guest-physical address through EPT, if any, and the result. */
  private finish(linear: bigint, mode: TranslationMode, gpa: bigint, size: number | null): Translation {
    if (this.ept === null) return this.result(linear, mode, gpa, gpa, size, { kind: 'ok' });
    const own = this.access === 'fetch' ? Q_FETCH : this.access === 'write' ? Q_WRITE : Q_READ;
    const w = this.eptWalk(gpa, own);
    this.steps.push(...w.steps);
    if (w.failure === null) return this.result(linear, mode, gpa, w.hpa, size, { kind: 'ok' });
    return this.result(linear, mode, gpa, null, size, this.eptFailure(w, own, 'final', gpa, 'the page'));
  }

  // ---- guest paging ----------------------------------------------------------

  /** 32-bit paging (4.3): a PDE, then a PTE unless the PDE maps a 4-MiB page (CR4.PSE = 1). */
  private walk32(linear: bigint): Walked | TranslationOutcome {
    const cpu = this.cpu, pse = (cpu.cr4 & CR4_PSE) !== 0;
    const pdIndex = Number(linear >> 22n);
    const pde = this.entry(BigInt((cpu.cr3Lo & ~0xfff) >>> 0) + BigInt(pdIndex * 4), 2, pdIndex, 4, (e) => pse && (e & PS) !== 0n);
    if (typeof pde !== 'bigint') return pde;
    if ((pde & P) === 0n) return this.pageFault(0, 'PDE not present');
    if (pse && (pde & PS) !== 0n) {
      if ((pde & PSE36_RSVD) !== 0n) return this.pageFault(PF_P | PF_RSVD, 'reserved bit set in PDE');
      const base = (pde & 0xffc00000n) | (((pde >> 13n) & ((1n << PSE36_BITS) - 1n)) << 32n);
      return { gpa: base | (linear & 0x3fffffn), size: 0x400000, leaf: pde, rights: Number((pde >> 1n) & 3n), xd: false };
    }
    const ptIndex = Number((linear >> 12n) & 0x3ffn);
    const pte = this.entry((pde & 0xfffff000n) + BigInt(ptIndex * 4), 1, ptIndex, 4, () => true);
    if (typeof pte !== 'bigint') return pte;
    if ((pte & P) === 0n) return this.pageFault(0, 'PTE not present');
    return {
      gpa: (pte & 0xfffff000n) | (linear & 0xfffn), size: PAGE_SIZE, leaf: pte,
      rights: Number((pde >> 1n) & (pte >> 1n) & 3n), xd: false,
    };
  }

  /** PAE paging from the PDPTE registers (4.4), 4-level and 5-level paging from CR3 (4.5). */
  private walk64(linear: bigint, mode: PagingMode): Walked | TranslationOutcome {
    const cpu = this.cpu;
    let level: number, table: bigint, rsvd: bigint;
    if (mode === PagingMode.PAE) {
      const k = Number(linear >> 30n);
      const pdpte = (BigInt(cpu.pdpte[2 * k + 1]! >>> 0) << 32n) | BigInt(cpu.pdpte[2 * k]! >>> 0);
      this.steps.push(guestStep(3, 'PDPTE register', k, null, null, [], pdpte, false));
      this.entryRights.push(7);
      // Their reserved bits were checked when they were loaded (4.4.1).
      if ((pdpte & P) === 0n) return this.pageFault(0, `PDPTE register ${k} not present`);
      level = 2; table = pdpte & ADDRESS; rsvd = RSVD_PAE;
    } else {
      level = mode === PagingMode.LEVEL5 ? 5 : 4;
      table = ((BigInt(cpu.cr3Hi >>> 0) << 32n) | BigInt(cpu.cr3Lo >>> 0)) & ADDRESS;
      rsvd = RSVD_IA32E;
    }
    // Bit 63 is XD with EFER.NXE = 1, reserved otherwise.
    if ((cpu.efer & EFER_NXE) === 0) rsvd |= XD;
    let rights = 3, xd = false;
    for (;; level--) {
      const shift = BigInt(3 + 9 * level), index = Number((linear >> shift) & 511n), name = GUEST_NAMES[level]!;
      const isLeaf = (e: bigint): boolean => level === 1 || (level <= 3 && (e & PS) !== 0n);
      const e = this.entry(table + BigInt(index * 8), level, index, 8, isLeaf);
      if (typeof e !== 'bigint') return e;
      if ((e & P) === 0n) return this.pageFault(0, `${name} not present`);
      // PS is reserved in PML4Es and PML5Es; large-page frames have reserved low bits.
      const leaf = isLeaf(e), rsvdLow = level >= 4 ? PS : !leaf || level === 1 ? 0n : level === 3 ? RSVD_1G : RSVD_2M;
      if ((e & rsvd) !== 0n || (e & rsvdLow) !== 0n) return this.pageFault(PF_P | PF_RSVD, `reserved bit set in ${name}`);
      rights &= Number((e >> 1n) & 3n);
      if ((e & XD) !== 0n) xd = true;
      if (leaf) {
        const size = 1n << shift;
        return { gpa: (e & ADDRESS & -size) | (linear & (size - 1n)), size: Number(size), leaf: e, rights, xd };
      }
      table = e & ADDRESS;
    }
  }

  /**
   * Reads the guest entry at physical address `pa` (guest-physical under EPT,
   * translated first as the processor does: as a write when EPT's A/D flags are
   * on, 29.3.3.2), or returns the outcome of its failed EPT walk. `isLeaf` says
   * whether the value maps the page (for the flags shown).
   */
  private entry(pa: bigint, level: number, index: number, bytes: 4 | 8, isLeaf: (e: bigint) => boolean): bigint | TranslationOutcome {
    const name = GUEST_NAMES[level]!;
    if (this.ept === null) {
      const value = this.read(pa, bytes);
      this.steps.push(guestStep(level, name, index, pa, pa, [], value, isLeaf(value)));
      this.entryRights.push(7);
      return value;
    }
    const own = this.ept.pagingWrites ? Q_READ | Q_WRITE : Q_READ;
    const w = this.eptWalk(pa, own & Q_WRITE ? Q_WRITE : Q_READ);
    const value = w.failure === null ? this.read(w.hpa!, bytes) : null;
    this.steps.push(guestStep(level, name, index, pa, w.hpa, w.steps, value, value !== null && isLeaf(value)));
    this.entryRights.push(w.rights);
    return value ?? this.eptFailure(w, own, 'entry', pa, `the guest ${name} at gpa ${hex(pa)}`);
  }

  /** Why the access rights of the translation deny the access (4.6.1), or null. */
  private denied(rights: number, xd: boolean): string | null {
    const cpu = this.cpu, writable = (rights & 1) !== 0, userPage = (rights & 2) !== 0;
    if (this.user) {
      if (!userPage) return 'user access to a supervisor page';
      if (this.access === 'write') return writable ? null : 'write to a read-only page';
      return this.access === 'fetch' && xd ? 'instruction fetch from an XD page' : null;
    }
    if (this.access === 'fetch') {
      if (xd) return 'instruction fetch from an XD page';
      return userPage && (cpu.cr4 & CR4_SMEP) !== 0 ? 'SMEP: supervisor-mode fetch from a user page' : null;
    }
    // SMAP: supervisor-mode data accesses to user pages need CPL < 3 (an implicit access at CPL 3 never
    // has it) and RFLAGS.AC = 1.
    if (userPage && (cpu.cr4 & CR4_SMAP) !== 0 && (cpu.cpl === 3 || (cpu.flags & AC) === 0)) {
      return 'SMAP: supervisor-mode data access to a user page';
    }
    // CR0.WP = 0 lets supervisor-mode writes through read-only translations.
    return this.access === 'write' && !writable && (cpu.cr0 & CR0_WP) !== 0 ? 'write to a read-only page (CR0.WP = 1)' : null;
  }

  /**
   * The walk succeeded: the accessed flag of every entry used is set, and the
   * dirty flag of the last for a write (4.8). Under EPT without its own A/D
   * flags each update is a write the EPT must allow (29.3.3.2); with them, every
   * entry access was a write already. The outcome of a refused write, or null.
   */
  private flagWrites(leaf: bigint): TranslationOutcome | null {
    if (this.ept === null || this.ept.pagingWrites) return null;
    const updated = new Set<bigint>(), last = this.steps.length - 1;
    for (let k = 0; k <= last; k++) {
      const s = this.steps[k] as GuestStep;
      if (s.hostAddress === null || s.value === null) continue; // a PDPTE register
      // An entry at an address updated before already has its accessed flag.
      const setA = (s.value & A) === 0n && !updated.has(s.hostAddress);
      const setD = k === last && this.access === 'write' && (leaf & D) === 0n;
      updated.add(s.hostAddress);
      // Above memory there is nothing to write: the processor does not try.
      if (!(setA || setD) || s.hostAddress >= BigInt(this.cpu.memory.size) || (this.entryRights[k]! & Q_WRITE) !== 0) continue;
      return this.violation(Q_WRITE, this.entryRights[k]!, 'entry', s.address!,
        `setting the ${setA ? 'accessed' : 'dirty'} flag of the guest ${s.name} at gpa ${hex(s.address!)}: no write permission`);
    }
    return null;
  }

  /** The #PF of this access with error-code bits `code` plus those describing the access (4.7). */
  private pageFault(code: number, reason: string): TranslationOutcome {
    const cpu = this.cpu;
    if (this.access === 'write') code |= PF_W;
    if (this.user) code |= PF_U;
    // I/D: an instruction fetch with SMEP, or with PAE/IA-32e paging and EFER.NXE.
    if (this.access === 'fetch' &&
        ((cpu.cr4 & CR4_SMEP) !== 0 || ((cpu.cr4 & CR4_PAE) !== 0 && (cpu.efer & EFER_NXE) !== 0))) code |= PF_I;
    return { kind: 'page-fault', errorCode: code, reason };
  }

  // ---- EPT ---------------------------------------------------------------------

  /**
   * Walks the EPT paging structures for `gpa` needing permission `need` (1
   * read, 2 write, 4 execute): a not-present entry is a violation, a
   * misconfigured one stops the walk (29.3.3.1), and so does a permission the
   * entries do not all give (29.3.3.2).
   */
  private eptWalk(gpa: bigint, need: number): EptWalk {
    const steps: EptStep[] = [];
    let table = BigInt(this.ept!.pml4), rights = 7;
    for (let level = 4; ; level--) {
      const shift = BigInt(3 + 9 * level), index = Number((gpa >> shift) & 511n);
      const at = table + BigInt(index * 8), e = this.read(at, 8), name = EPT_NAMES[level]!;
      const leaf = level === 1 || (level <= 3 && (e & EPT_LARGE) !== 0n);
      steps.push(eptStep(level, name, index, at, e, leaf));
      if ((e & EPT_RWX) === 0n) return { steps, hpa: null, rights: 0, failure: { kind: 'violation', reason: `${name} not present` } };
      const rsvdLow = !leaf ? EPT_RSVD_TABLE : level === 3 ? EPT_RSVD_1G : level === 2 ? EPT_RSVD_2M : 0n;
      const type = Number((e >> 3n) & 7n);
      // Misconfigured: write without read (execute-only is allowed: IA32_VMX_EPT_VPID_CAP[0] = 1), a reserved
      // bit, a reserved memory type in the entry that maps the page.
      const bad = (e & 3n) === 2n ? 'writable but not readable'
        : (e & RSVD_IA32E) !== 0n || (e & rsvdLow) !== 0n ? 'reserved bit set'
        : leaf && (type === 2 || type === 3 || type === 7) ? `reserved memory type ${type}` : null;
      if (bad !== null) return { steps, hpa: null, rights, failure: { kind: 'misconfiguration', reason: `${name} ${bad}` } };
      rights &= Number(e & EPT_RWX);
      if (leaf) {
        const size = 1n << shift, hpa = (e & ADDRESS & -size) | (gpa & (size - 1n));
        if ((rights & need) !== 0) return { steps, hpa, rights, failure: null };
        const what = need === Q_FETCH ? 'execute' : need === Q_WRITE ? 'write' : 'read';
        return { steps, hpa: null, rights, failure: { kind: 'violation', reason: `no ${what} permission (R W X = ${rwx(rights)})` } };
      }
      table = e & ADDRESS;
    }
  }

  /** The outcome of failed EPT walk `w` for `gpa`, accessed as `own` (Q_READ, Q_WRITE, Q_FETCH bits). */
  private eptFailure(w: EptWalk, own: number, use: 'final' | 'entry', gpa: bigint, what: string): TranslationOutcome {
    const reason = `${what}: ${w.failure!.reason}`;
    if (w.failure!.kind === 'misconfiguration') return { kind: 'ept-misconfiguration', guestPhysical: gpa, reason };
    return this.violation(own, w.rights, use, gpa, reason);
  }

  /**
   * An EPT violation: the qualification holds the access (bits 2:0), the
   * permissions of the walk (5:3), a valid guest-linear address (7) and whether
   * the access was to the translated page rather than a paging-structure entry
   * (8) (28.2.1, table 28-7).
   */
  private violation(own: number, rights: number, use: 'final' | 'entry', gpa: bigint, reason: string): TranslationOutcome {
    const qualification = own | ((rights & 7) << EptViolation.PERMISSIONS_SHIFT) | Q_LINEAR_VALID | (use === 'final' ? Q_TRANSLATION : 0);
    return { kind: 'ept-violation', qualification, guestPhysical: gpa, reason };
  }

  // ---- helpers -------------------------------------------------------------------

  /**
   * A little-endian entry of `bytes` at physical address `pa`, read without
   * side effects: a page never touched reads as zeros (memory allocates it
   * zeroed on first touch), above memory the bus floats (all ones). A device
   * mapped over RAM is not asked (its reads may have side effects).
   */
  private read(pa: bigint, bytes: 4 | 8): bigint {
    this.references++;
    const m = this.cpu.memory, at = Number(pa);
    if (at >= m.size) return bytes === 8 ? (1n << 64n) - 1n : 0xffffffffn;
    if (!m.isAllocated(Math.floor(at / PAGE_SIZE))) return 0n;
    const lo = BigInt(m.read32(at) >>> 0);
    return bytes === 4 ? lo : (BigInt(m.read32(at + 4) >>> 0) << 32n) | lo;
  }

  /** Canonical in the current linear-address width, 48 or 57 bits (vol. 1, 3.3.7.1; vol. 3A, 4.5.1). */
  private canonical(linear: bigint): boolean {
    return BigInt.asUintN(64, BigInt.asIntN(64 - this.cpu.canonicalShift, linear)) === linear;
  }

  private result(
    linear: bigint, mode: TranslationMode, gpa: bigint | null, hpa: bigint | null, size: number | null, outcome: TranslationOutcome,
  ): Translation {
    return Object.freeze({
      linear, access: this.access, user: this.user, mode, ept: this.ept !== null,
      steps: Object.freeze(this.steps.slice()), guestPhysical: gpa, hostPhysical: hpa, pageSize: size,
      outcome: Object.freeze(outcome), references: this.references,
    });
  }
}

const NON_CANONICAL: TranslationOutcome = Object.freeze({ kind: 'non-canonical', reason: 'non-canonical address' });

function guestStep(
  level: number, name: string, index: number, address: bigint | null, hostAddress: bigint | null,
  nested: EptStep[], value: bigint | null, leaf: boolean,
): GuestStep {
  const flags: string[] = [];
  if (value !== null) {
    for (const [bit, n] of GUEST_FLAGS) if ((value & bit) !== 0n) flags.push(n);
    // Bit 7 is PS in PDEs and PDPTEs, PAT in PTEs; D, G and PAT (bit 12 of a large page) only in the entry that maps the page.
    if ((value & PS) !== 0n) flags.push(level === 1 ? 'PAT' : 'PS');
    if (leaf && (value & D) !== 0n) flags.push('D');
    if (leaf && (value & G) !== 0n) flags.push('G');
    if (leaf && level > 1 && (value & 0x1000n) !== 0n) flags.push('PAT');
    if ((value & XD) !== 0n) flags.push('XD');
  }
  return Object.freeze({
    dimension: 'guest', level, name, index, address, hostAddress, nested: Object.freeze(nested), value, flags: Object.freeze(flags),
  });
}

function eptStep(level: number, name: string, index: number, address: bigint, value: bigint, leaf: boolean): EptStep {
  const flags: string[] = [];
  if (value & 1n) flags.push('R');
  if (value & 2n) flags.push('W');
  if (value & 4n) flags.push('X');
  if (leaf) {
    flags.push(MEMORY_TYPES[Number((value >> 3n) & 7n)]!);
    if (value & 0x40n) flags.push('IPAT');
    if (level > 1) flags.push('large');
  }
  if (value & 0x100n) flags.push('A');
  if (leaf && (value & 0x200n)) flags.push('D');
  return Object.freeze({ dimension: 'ept', level, name, index, address, value, flags: Object.freeze(flags) });
}

function rwx(rights: number): string {
  return `${rights & 1}${(rights >> 1) & 1}${(rights >> 2) & 1}`;
}

function hex(v: bigint | number): string {
  return '0x' + v.toString(16);
}

// ---- formatting ------------------------------------------------------------------

/**
 * The lines the REPL prints: the access, one line per guest entry with its EPT
 * walk indented beneath it, the page (with its EPT walk), then the outcome.
 */
export function formatTranslation(t: Translation): string[] {
  const lines = [`linear ${hex(t.linear)}, ${t.access} (${t.user ? 'user' : 'supervisor'}), ` +
    `${t.mode === 'flat' ? 'flat (no page tables)' : t.mode === 'none' ? 'paging off' : `${t.mode} paging`}${t.ept ? ' with EPT' : ''}`];
  const final: EptStep[] = [];
  for (const s of t.steps) {
    if (s.dimension === 'ept') { final.push(s); continue; }
    let line = `guest ${s.name}${s.address === null ? ` ${s.index}` : `[${s.index}]`}`;
    if (s.address !== null) {
      line += t.ept ? ` at gpa ${hex(s.address)} → ${s.hostAddress === null ? 'no translation' : `hpa ${hex(s.hostAddress)}`}`
        : ` at ${hex(s.address)}`;
    }
    if (s.value !== null) line += ` = ${hex(s.value)}${s.flags.length > 0 ? ' ' + s.flags.join(' ') : ''}`;
    lines.push(line);
    for (const n of s.nested) lines.push('  ' + eptLine(n));
  }
  if (t.guestPhysical !== null && (t.outcome.kind === 'ok' || final.length > 0)) {
    const size = t.pageSize === null ? '' : ` (${sizeName(t.pageSize)} page)`;
    lines.push(t.ept
      ? `page gpa ${hex(t.guestPhysical)} → ${t.hostPhysical === null ? 'no translation' : `hpa ${hex(t.hostPhysical)}`}${size}`
      : `page ${hex(t.guestPhysical)}${size}`);
    for (const n of final) lines.push('  ' + eptLine(n));
  }
  lines.push(outcomeLine(t));
  return lines;
}

function eptLine(s: EptStep): string {
  return `${s.name}[${s.index}] at ${hex(s.address)} = ${hex(s.value)}${s.flags.length > 0 ? ' ' + s.flags.join(' ') : ''}`;
}

function sizeName(bytes: number): string {
  return bytes >= 0x40000000 ? `${bytes / 0x40000000} GiB` : bytes >= 0x100000 ? `${bytes / 0x100000} MiB` : `${bytes / 1024} KiB`;
}

function outcomeLine(t: Translation): string {
  const refs = `${t.references} memory reference${t.references === 1 ? '' : 's'}`;
  const o = t.outcome;
  switch (o.kind) {
    case 'ok': return `ok: ${t.ept ? 'host-physical' : 'physical'} ${hex(t.hostPhysical!)} (${refs})`;
    case 'non-canonical': return `#GP(0) (#SS(0) for a stack reference): ${o.reason}`;
    case 'page-fault': {
      const bits = [[PF_P, 'P'], [PF_W, 'W'], [PF_U, 'U'], [PF_RSVD, 'RSVD'], [PF_I, 'I']] as const;
      const names = bits.filter(([b]) => (o.errorCode & b) !== 0).map(([, n]) => n).join(' ');
      return `#PF, error code ${hex(o.errorCode)}${names === '' ? '' : ` (${names})`}: ${o.reason} (${refs})`;
    }
    case 'ept-violation':
      return `EPT violation at gpa ${hex(o.guestPhysical)}, exit qualification ${hex(o.qualification)}: ${o.reason} (${refs})`;
    case 'ept-misconfiguration':
      return `EPT misconfiguration at gpa ${hex(o.guestPhysical)}: ${o.reason} (${refs})`;
  }
}
