/**
 * The guest's own page walk, as the shadow-paging hypervisor makes it after a
 * #PF exit (SDM vol. 3A, chapter 4): the guest's paging structures at the
 * guest's CR3 in the guest's paging mode — 32-bit (4.3), PAE from the PDPTE
 * registers (4.4), 4-level or 5-level (4.5) — with the reserved-bit checks of
 * each format, the access rights of 4.6 (U/S, R/W with CR0.WP, XD with
 * EFER.NXE, SMEP, SMAP) and the page-fault error code of 4.7. It decides the
 * same as the processor's walk in src/cpu/paging.ts, entry for entry.
 *
 * The walk only reads. When the access is allowed, `setAccessedDirty` then sets
 * the accessed flags of the entries used and, for a write, the dirty flag of
 * the entry that maps the page, as the processor does on its walk (4.8).
 *
 * Guest-physical memory is host-physical memory below `ramEnd` (guest RAM sits
 * at the same addresses on host and guest); an entry beyond it reads as all
 * ones, as the bus floats there on the bare processor, and is never written.
 * Results are numbers in typed arrays: no object per walk or per entry.
 */
import { PAGE_SIZE, type PhysicalMemory } from '../../cpu/memory.js';
import { Access } from '../../cpu/mmu.js';
import {
  ADDR_HI, CR0_WP, CR4_PAE, CR4_PSE, CR4_SMAP, CR4_SMEP, MAXPHYADDR, PF_I, PF_P, PF_RSVD, PF_U, PF_W, PagingMode,
  RSVD_HI_IA32E,
} from '../../cpu/paging.js';
import { AC, EFER_NXE } from '../../cpu/regs.js';

/** Paging-structure entry bits (SDM vol. 3A, 4.3-4.5, tables 4-4 to 4-20). */
export const P = 1, RW = 2, US = 4, PWT = 8, PCD = 16, A = 0x20, D = 0x40, PS = 0x80, G = 0x100;
/** PAT: bit 7 of a PTE, bit 12 of an entry that maps a large page (4.3-4.5). */
const PAT_LARGE = 0x1000;
/** PAE page-directory and page-table entries: bits 62:MAXPHYADDR reserved (4.4.2, tables 4-9 to 4-11). */
const RSVD_HI_PAE = 0x7fffffff & ~ADDR_HI;
/** Reserved frame bits of large pages: 29:13 of a 1-GiB page, 20:13 of a 2-MiB page (tables 4-10, 4-17, 4-19). */
const RSVD_1G = 0x3fffe000, RSVD_2M = 0x1fe000;
/** 4-MiB PDE (PSE-36): address bits (M-1):32 in bits (M-20):13, bits 21:(M-19) reserved, M = min(MAXPHYADDR, 40) (4.3, table 4-4). */
const PSE36_BITS = Math.min(MAXPHYADDR, 40) - 32;
const PSE36_RSVD = (1 << 22) - (1 << (PSE36_BITS + 13));

/** What a guest walk depends on: the guest's own registers (not those the processor runs it with under shadow paging). */
export interface GuestPagingState {
  mode: PagingMode;
  cr0: number;
  cr3Lo: number;
  cr3Hi: number;
  cr4: number;
  efer: number;
  /** The guest's PDPTE registers of PAE paging, two halves each (4.4.1). */
  readonly pdpte: Int32Array;
  /** CPL and RFLAGS: SMAP depends on them (4.6.1). */
  cpl: number;
  flags: number;
}

/** A fresh state with paging off. */
export function guestPagingState(): GuestPagingState {
  return { mode: PagingMode.NONE, cr0: 0, cr3Lo: 0, cr3Hi: 0, cr4: 0, efer: 0, pdpte: new Int32Array(8), cpl: 0, flags: 0 };
}

/** The guest-physical 4-KiB frame an entry points to (bits MAXPHYADDR-1:12). */
export function entryFrame(lo: number, hi: number): number {
  return (hi & ADDR_HI) * 0x100000 + (lo >>> 12);
}

/** One guest walk and its outcome; reused from walk to walk. */
export class GuestWalk {
  /** The guest's paging allows the access; otherwise `errorCode` is the #PF error code (4.7). */
  ok = false;
  errorCode = 0;
  /** Paging-structure entries used, from the top: guest-physical address, value halves, level (5 = PML5E ... 1 = PTE). */
  count = 0;
  readonly address = new Float64Array(5);
  readonly lo = new Int32Array(5);
  readonly hi = new Int32Array(5);
  readonly level = new Int8Array(5);
  /** 4-byte entries (32-bit paging). */
  narrow = false;
  /** The level of the entry that maps the page: 1 (4 KiB), 2 (2 or 4 MiB), 3 (1 GiB); 0 with paging off. */
  leafLevel = 0;
  /** The guest-physical 4-KiB frame holding the address. */
  frame = 0;
  /** Rights of the translation (4.6): writable and user-mode at every level, XD at some level (with EFER.NXE). */
  writable = false;
  user = false;
  noExecute = false;
  /** The entry that maps the page: G (with CR4.PGE the caller checks), D, and PWT, PCD, PAT as a PTE holds them. */
  global = false;
  dirty = false;
  cache = 0;

  /**
   * `page1GB`: the guest's processor has 1-GByte pages (the CPUID.80000001H:EDX.Page1GB the guest
   * sees); without them PS is reserved in a PDPTE.
   */
  constructor(private readonly memory: PhysicalMemory, private readonly ramEnd: number, private readonly page1GB: boolean) {}

  /** Bits 31:0 of a guest-physical dword, without side effects (an untouched page reads zeros, beyond RAM all ones). */
  private read32(pa: number): number {
    if (pa >= this.ramEnd) return -1;
    return this.memory.isAllocated(Math.floor(pa / PAGE_SIZE)) ? this.memory.read32(pa) : 0;
  }

  private use(at: number, lo: number, hi: number, level: number): void {
    const k = this.count++;
    this.address[k] = at; this.lo[k] = lo; this.hi[k] = hi; this.level[k] = level;
  }

  /**
   * Walks the guest's tables for linear address (lo, hi) and `access` (a
   * user-mode access when `user`). Outside IA-32e mode, bits 63:32 are ignored.
   */
  walk(s: GuestPagingState, lo: number, hi: number, access: Access, user: boolean): this {
    this.count = 0;
    this.ok = false;
    this.errorCode = 0;
    this.narrow = s.mode === PagingMode.BITS32;
    this.global = false; this.dirty = false; this.cache = 0; this.noExecute = false;
    if (s.mode === PagingMode.NONE) {
      // Linear addresses are physical (4.1.1): 32 bits outside IA-32e mode.
      this.frame = lo >>> 12;
      this.leafLevel = 0;
      this.writable = true; this.user = true; this.dirty = true;
      this.ok = true;
      return this;
    }
    let rights = RW | US, leafLo = 0;
    if (s.mode === PagingMode.BITS32) {
      // 32-bit paging (4.3): no reserved bits but in a 4-MiB PDE.
      const pdeAt = ((s.cr3Lo & ~0xfff) >>> 0) + (lo >>> 22) * 4, pde = this.read32(pdeAt);
      this.use(pdeAt, pde, 0, 2);
      if ((pde & P) === 0) return this.fault(s, access, user, 0);
      if ((pde & PS) !== 0 && (s.cr4 & CR4_PSE) !== 0) {
        if ((pde & PSE36_RSVD) !== 0) return this.fault(s, access, user, PF_P | PF_RSVD);
        rights &= pde;
        this.leafLevel = 2;
        this.frame = ((pde >>> 22) << 10) + ((pde >>> 13) & ((1 << PSE36_BITS) - 1)) * 0x100000 + ((lo >>> 12) & 0x3ff);
        leafLo = pde;
        this.cache = (pde & (PWT | PCD)) | ((pde & PAT_LARGE) !== 0 ? PS : 0);
      } else {
        const pteAt = ((pde & ~0xfff) >>> 0) + ((lo >>> 12) & 0x3ff) * 4, pte = this.read32(pteAt);
        this.use(pteAt, pte, 0, 1);
        if ((pte & P) === 0) return this.fault(s, access, user, 0);
        rights &= pde & pte;
        this.leafLevel = 1;
        this.frame = pte >>> 12;
        leafLo = pte;
        this.cache = pte & (PWT | PCD | PS);
      }
    } else {
      // PAE paging starts at the PDPTE registers (4.4.1); 4-level and 5-level at CR3 (4.5).
      let level: number, table: number, rsvdHi: number;
      const nxe = (s.efer & EFER_NXE) !== 0;
      if (s.mode === PagingMode.PAE) {
        const k = lo >>> 30, pLo = s.pdpte[2 * k]!, pHi = s.pdpte[2 * k + 1]!;
        // Their reserved bits were checked when they were loaded.
        if ((pLo & P) === 0) return this.fault(s, access, user, 0);
        level = 2;
        table = entryFrame(pLo, pHi) * PAGE_SIZE;
        rsvdHi = RSVD_HI_PAE;
      } else {
        level = s.mode === PagingMode.LEVEL5 ? 5 : 4;
        table = entryFrame(s.cr3Lo, s.cr3Hi) * PAGE_SIZE;
        rsvdHi = RSVD_HI_IA32E;
      }
      // Bit 63 is XD with EFER.NXE = 1, reserved otherwise (4.4.2, 4.5).
      if (!nxe) rsvdHi |= 1 << 31;
      for (;; level--) {
        const shift = 3 + 9 * level; // 12, 21, 30, 39, 48 for levels 1-5
        const index = shift < 30 ? (lo >>> shift) & 511
          : shift === 30 ? ((lo >>> 30) | (hi << 2)) & 511 : (hi >>> (shift - 32)) & 511;
        const at = table + index * 8, eLo = this.read32(at), eHi = this.read32(at + 4);
        this.use(at, eLo, eHi, level);
        if ((eLo & P) === 0) return this.fault(s, access, user, 0);
        const isLeaf = level === 1 || (level <= 3 && (eLo & PS) !== 0);
        // PS is reserved in PML4Es and PML5Es, and in PDPTEs without 1-GByte pages (4.5.4); large-page
        // frames have reserved low bits.
        const rsvdLo = level >= 4 || (level === 3 && !this.page1GB) ? PS
          : !isLeaf || level === 1 ? 0 : level === 3 ? RSVD_1G : RSVD_2M;
        if ((eHi & rsvdHi) !== 0 || (eLo & rsvdLo) !== 0) return this.fault(s, access, user, PF_P | PF_RSVD);
        rights &= eLo;
        if (eHi < 0) this.noExecute = true;
        if (isLeaf) {
          const pages = (1 << (shift - 12)) - 1;
          this.frame = entryFrame(eLo & ~(pages << 12), eHi) + ((lo >>> 12) & pages);
          this.leafLevel = level;
          leafLo = eLo;
          this.cache = level === 1 ? eLo & (PWT | PCD | PS) : (eLo & (PWT | PCD)) | ((eLo & PAT_LARGE) !== 0 ? PS : 0);
          break;
        }
        table = entryFrame(eLo, eHi) * PAGE_SIZE;
      }
    }
    this.writable = (rights & RW) !== 0;
    this.user = (rights & US) !== 0;
    this.global = (leafLo & G) !== 0;
    this.dirty = (leafLo & D) !== 0;
    if (!this.allows(s, access, user)) return this.fault(s, access, user, PF_P);
    this.ok = true;
    return this;
  }

  /** Whether the translation's rights allow the access (SDM vol. 3A, 4.6.1). */
  private allows(s: GuestPagingState, access: Access, user: boolean): boolean {
    if (user) {
      if (!this.user) return false;
      if (access === Access.WRITE) return this.writable;
      return access !== Access.EXEC || !this.noExecute;
    }
    // SMEP: no supervisor-mode fetches from user-mode pages.
    if (access === Access.EXEC) return !this.noExecute && (!this.user || (s.cr4 & CR4_SMEP) === 0);
    // SMAP: supervisor-mode data accesses to user-mode pages need CPL < 3 and RFLAGS.AC = 1 (an implicit
    // supervisor access at CPL 3 never has them).
    if (this.user && (s.cr4 & CR4_SMAP) !== 0 && (s.cpl === 3 || (s.flags & AC) === 0)) return false;
    // CR0.WP = 0 lets supervisor-mode writes through read-only translations.
    return access !== Access.WRITE || this.writable || (s.cr0 & CR0_WP) === 0;
  }

  /** The walk refuses: #PF with error-code bits `code` and those that describe the access (4.7). */
  private fault(s: GuestPagingState, access: Access, user: boolean, code: number): this {
    if (access === Access.WRITE) code |= PF_W;
    if (user) code |= PF_U;
    // I/D: an instruction fetch with SMEP, or with PAE or IA-32e paging and EFER.NXE.
    if (access === Access.EXEC && ((s.cr4 & CR4_SMEP) !== 0 || ((s.cr4 & CR4_PAE) !== 0 && (s.efer & EFER_NXE) !== 0))) code |= PF_I;
    this.errorCode = code;
    this.ok = false;
    return this;
  }

  /** The guest-physical address `lo` (bits 11:0 of the linear address) lands on. */
  physical(lo: number): number {
    return this.frame * PAGE_SIZE + (lo & 0xfff);
  }

  /**
   * The access is made: the accessed flag of every entry used, and for a write
   * the dirty flag of the entry that maps the page, are set in guest memory
   * (SDM vol. 3A, 4.8), each entry read again first as a locked update would.
   */
  setAccessedDirty(write: boolean): void {
    const m = this.memory;
    for (let k = 0; k < this.count; k++) {
      const at = this.address[k]!;
      if (at >= this.ramEnd) continue; // nothing to write there
      const bits = write && k === this.count - 1 ? A | D : A;
      const v = m.read32(at);
      if ((v & bits) !== bits) m.write32(at, v | bits);
      this.lo[k] = v | bits;
    }
    if (write) this.dirty = true;
  }
}
