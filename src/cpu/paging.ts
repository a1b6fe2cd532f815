/**
 * Paging (SDM vol. 3A, chapter 4): the walks of 32-bit, PAE, 4-level and
 * 5-level paging, access rights (4.6), page-fault error codes (4.7), accessed
 * and dirty flags (4.8), and the TLB with PCIDs and global pages (4.10).
 *
 * The TLB here holds translations as the SDM describes them: the physical page,
 * the combined access rights, the dirty flag, whether the page is global, the
 * PCID and the page size. It is direct-mapped, so it evicts whenever two pages
 * collide, which 4.10.2 allows; a large page is cached as 4-KiB fragments
 * (4.10.2.3), each invalidated with the whole page. Translations are used until
 * invalidated: a guest that changes a paging-structure entry without INVLPG, MOV
 * to CR3 or INVPCID keeps the old translation while it stays cached. The MMU's
 * fast entries (mmu.ts) are decisions derived from these; whatever drops
 * entries here drops those too.
 */
import type { Cpu } from './cpu.js';
import { hasFeature } from './cpuid.js';
import { FilledSlots } from './filled-slots.js';
import { PAGE_MASK, PAGE_SIZE } from './memory.js';
import { Access, type Translator } from './mmu.js';
import { AC, EFER_LMA, EFER_LME, EFER_NXE, Vector } from './regs.js';

/**
 * Physical-address width, CPUID.80000008H:EAX[7:0] (SDM vol. 3A, 4.1.4): 39 bits,
 * as on many client parts (Skylake). Address bits at or above it in CR3 and in
 * paging-structure entries are reserved.
 */
export const MAXPHYADDR = 39;

/** Control-register bits paging uses (SDM vol. 3A, 2.5). */
export const CR0_PE = 1 << 0, CR0_WP = 1 << 16, CR0_NW = 1 << 29, CR0_CD = 1 << 30, CR0_PG = 1 << 31;
export const CR4_PSE = 1 << 4, CR4_PAE = 1 << 5, CR4_PGE = 1 << 7, CR4_LA57 = 1 << 12;
export const CR4_PCIDE = 1 << 17, CR4_SMEP = 1 << 20, CR4_SMAP = 1 << 21;

/** Page-fault error code (SDM vol. 3A, 4.7, figure 4-12). */
export const PF_P = 1, PF_W = 2, PF_U = 4, PF_RSVD = 8, PF_I = 16;

/** Paging-structure entry bits (SDM vol. 3A, 4.3-4.5). */
const P = 1, A = 1 << 5, D = 1 << 6, PS = 1 << 7, G = 1 << 8;

/** Bits of a physical address above bit 31 that MAXPHYADDR allows. */
export const ADDR_HI = (1 << (MAXPHYADDR - 32)) - 1;
/** 4-level/5-level entries: bits 51:MAXPHYADDR reserved (4.5, tables 4-14 to 4-20). */
export const RSVD_HI_IA32E = ((1 << 20) - 1) & ~ADDR_HI;
/** PAE page-directory and page-table entries: bits 62:MAXPHYADDR reserved (4.4.2, tables 4-9 to 4-11). */
const RSVD_HI_PAE = 0x7fffffff & ~ADDR_HI;
/** PAE PDPTE: bits 2:1, 8:5 and 63:MAXPHYADDR reserved (4.4.1, table 4-8). */
export const PDPTE_RSVD_LO = 0x1e6;
export const PDPTE_RSVD_HI = ~ADDR_HI;
/** 4-MiB PDE (PSE-36): bits 21:(M-19) reserved, with M = min(MAXPHYADDR, 40) (4.3, table 4-4). */
const PSE36_BITS = Math.min(MAXPHYADDR, 40) - 32;
const PSE36_RSVD = (1 << 22) - (1 << (PSE36_BITS + 13));
/** Large-page entries: bits 29:13 (1 GiB) or 20:13 (2 MiB) of the frame address are reserved. */
const RSVD_1G = 0x3fffe000, RSVD_2M = 0x1fe000;
/** CR3 bits 63:MAXPHYADDR are reserved in IA-32e mode (SDM vol. 2, MOV CR). */
export const CR3_RSVD_HI = ~ADDR_HI;

export const enum PagingMode { NONE, BITS32, PAE, LEVEL4, LEVEL5 }

/** The paging mode the control registers select (SDM vol. 3A, 4.1.1, table 4-1). */
export function pagingMode(cpu: { readonly cr0: number; readonly cr4: number; readonly efer: number }): PagingMode {
  if ((cpu.cr0 & CR0_PG) === 0) return PagingMode.NONE;
  if ((cpu.cr4 & CR4_PAE) === 0) return PagingMode.BITS32;
  if ((cpu.efer & EFER_LME) === 0) return PagingMode.PAE;
  return cpu.cr4 & CR4_LA57 ? PagingMode.LEVEL5 : PagingMode.LEVEL4;
}

/** What a guest-physical access is, for the exits of a nested translation (SDM vol. 3C, 28.2.1, table 28-7). */
export const enum GuestPhysical {
  /** The translation of a linear address (or, with paging off, a linear address itself). */
  FINAL,
  /** A paging-structure entry read or updated while translating a linear address. */
  PAGING_ENTRY,
  /** An access without a linear address: the PDPTE loads of MOV to CR (4.4.1). */
  NO_LINEAR,
}

/**
 * A second dimension of translation beneath paging (EPT, vol. 3C 29.3): in VMX
 * non-root operation every guest-physical address paging produces or reads
 * through is translated again. The processor knows nothing of VMX; the
 * hardware-assist unit installs this while a guest with EPT runs.
 */
export interface NestedPaging {
  /** Names the nested structures in TLB tags (1, 2, ...): their combined mappings never mix. */
  readonly tag: number;
  /** Guest paging-structure accesses count as writes (EPT accessed and dirty flags, 29.3.5). */
  readonly pagingWrites: boolean;
  /**
   * The rights of the last translation, for the combined mapping it becomes part of: read 1,
   * write 2, execute 4, and 8 when a write needs no walk to set a dirty flag.
   */
  readonly rights: number;
  /**
   * The host-physical address for guest-physical `gpa` accessed as `access`;
   * raises the VM exit of a violation or misconfiguration. (lo, hi) is the
   * linear address of a FINAL or PAGING_ENTRY access.
   */
  translate(gpa: number, access: Access, kind: GuestPhysical, lo: number, hi: number): number;
}

/** A tag's nested-structures part counts in units of 2^28 (above VPID × 4096 + PCID). */
const NESTED_TAG_UNIT = 2 ** 28;

/** The VPID part of a tag (VPID × 4096 + PCID), as a tag with PCID 0. */
function vpidOf(key: number): number {
  return key - (key & 0xfff);
}

/** CR3 as one number (exact: bits 63:52 are reserved). */
function cr3Of(cpu: Cpu): number {
  return cpu.cr3Hi * 0x100000000 + (cpu.cr3Lo >>> 0);
}

/** What else a walk depends on besides CR3 and memory: the paging mode, CR4.PSE and PGE, EFER.NXE. */
function walkContext(cpu: Cpu, mode: PagingMode): number {
  return mode | (cpu.cr4 & (CR4_PSE | CR4_PGE)) | (cpu.efer & EFER_NXE);
}

/** The kept-set slot of TLB slot `at` for an entry walked under `cr3` and `context`. */
function keptSlot(at: number, cr3: number, context: number): number {
  return (at ^ (Math.imul((cr3 / PAGE_SIZE) ^ context, 0x9e3779b1) >>> (32 - TLB_BITS))) & TLB_MASK;
}

/** The current PCID: CR3[11:0] when CR4.PCIDE = 1, else 000H (4.10.1). */
export function currentPcid(cpu: Cpu): number {
  return cpu.cr4 & CR4_PCIDE ? cpu.cr3Lo & 0xfff : 0;
}

/** The CR0 and CR4 bits the MMU's fast entries depend on (their bit positions do not overlap EFER's NXE and LMA). */
const CONTEXT_CR0 = CR0_PE | CR0_WP | CR0_PG;
const CONTEXT_CR4 = CR4_PSE | CR4_PAE | CR4_PGE | CR4_LA57 | CR4_PCIDE | CR4_SMEP | CR4_SMAP;

// TLB entry information: combined rights, flags, and the page size as (log2 - 12) in bits 15:8; under
// nested paging, the nested rights of the final access (read, write, execute, dirty flag set) in bits 19:16.
const T_W = 1, T_U = 2, T_XD = 4, T_D = 8, T_G = 16;
const T_NESTED_SHIFT = 16;
const TLB_BITS = 11, TLB_SIZE = 1 << TLB_BITS, TLB_MASK = TLB_SIZE - 1;

/**
 * The TLB slot of a non-global entry: the page number's low bits mixed with the
 * tag (VPID × 4096 + PCID), so that address spaces switched with MOV to CR3, and
 * a VMM and its guests, keep their entries side by side (4.10.1; vol. 3C, 29.1).
 * Global entries, usable under any PCID of their VPID, live in the slot of PCID 0.
 */
function slot(lo: number, key: number): number {
  // Mappings of one VPID and PCID under different nested structures share a slot: the operations that
  // invalidate them for the VPID do so for every nested tag (vol. 3C, 29.4.3.1), and find them there.
  const pcid = key % NESTED_TAG_UNIT;
  // The multiplier's high bits mix every bit of the tag in (VPID × 4096 has none below bit 12).
  return ((lo >>> 12) ^ (Math.imul(pcid, 0x9e3779b1) >>> (32 - TLB_BITS))) & TLB_MASK;
}

/** Whether the nested rights in TLB entry information allow the access; a write also needs the nested dirty flag set. */
function nestedAllows(info: number, access: Access): boolean {
  const r = info >>> T_NESTED_SHIFT;
  return access === Access.EXEC ? (r & 4) !== 0 : access === Access.WRITE ? (r & 10) === 10 : (r & 1) !== 0;
}

export class Paging implements Translator {
  /**
   * The flat map that enterFlat64 sets up without page tables in memory (a model
   * convenience): linear = physical until MOV to CR3, a change of paging mode,
   * or mmu.flush().
   */
  identity = false;
  /**
   * The virtual-processor identifier the TLB tags new entries with and uses
   * (SDM vol. 3C, 29.1): 0 in VMX root operation and in guests without VPID.
   * Entries are tagged with VPID × 4096 + PCID.
   */
  vpid = 0;
  /** The nested translation of a guest with EPT, or null (29.3). */
  nested: NestedPaging | null = null;
  /**
   * Counts for the cost model: translations served by the TLB after a fast-path
   * miss (`hits`), walks and the paging-structure entries they read, and
   * invalidations by cause (each call, whatever it dropped).
   */
  readonly counters = {
    hits: 0, walks: 0, references: 0,
    flushes: { full: 0, control: 0, cr3: 0, invlpg: 0, invpcid: 0, invvpid: 0, invept: 0 },
  };

  private readonly tag = new Float64Array(TLB_SIZE).fill(NaN);
  private readonly filled = new FilledSlots(TLB_SIZE >> 3);
  private readonly tags = [this.tag];
  /** What each entry's walk depended on: CR3 and the paging controls (walkContext), and memory's page-table write count. */
  private readonly entryCr3 = new Float64Array(TLB_SIZE);
  private readonly entryContext = new Int32Array(TLB_SIZE);
  private readonly entryWrites = new Float64Array(TLB_SIZE);
  /**
   * Entries a full flush removed, kept with what their walks depended on. A
   * later miss that finds its page here, under the same CR3 and controls and with
   * no page-table write since, takes the entry back: exactly what walking again
   * would build (same structures, accessed flags already set), without the walk.
   * The slot mixes in CR3 and the controls, so that address spaces a processor
   * alternates between (a VMM and its guest) keep their entries side by side.
   */
  private readonly kept = {
    tag: new Float64Array(TLB_SIZE).fill(NaN), pcid: new Int32Array(TLB_SIZE), frame: new Float64Array(TLB_SIZE),
    info: new Int32Array(TLB_SIZE), cr3: new Float64Array(TLB_SIZE), context: new Int32Array(TLB_SIZE),
    writes: new Float64Array(TLB_SIZE),
  };
  private readonly pcid = new Int32Array(TLB_SIZE);
  private readonly frame = new Float64Array(TLB_SIZE);
  private readonly info = new Int32Array(TLB_SIZE);
  /** Fragments of large pages may be cached (INVLPG must then look beyond one entry). */
  private large = false;
  /** Physical addresses of the entries the walk in progress used (host-physical under nested paging), and as the guest named them. */
  private readonly used = new Float64Array(5);
  private readonly usedGuest = new Float64Array(5);
  private usedCount = 0;
  private readonly scratch = new Int32Array(8);

  constructor(private readonly cpu: Cpu) {}

  // ---- translation ---------------------------------------------------------

  translate(lo: number, hi: number, access: Access): number {
    const cpu = this.cpu;
    if (this.identity) return hi * 0x100000 + (lo >>> 12);
    const mode = pagingMode(cpu);
    // Without paging, linear addresses are physical (guest-physical under EPT); outside IA-32e mode they
    // are 32 bits (4.1.1).
    if (mode === PagingMode.NONE) {
      const n = this.nested;
      return n === null ? lo >>> 12 : Math.floor(n.translate(lo >>> 0, access, GuestPhysical.FINAL, lo, 0) / PAGE_SIZE);
    }
    if (mode < PagingMode.LEVEL4) hi = 0;
    const vpn = hi * 0x100000 + (lo >>> 12), pcid = this.key();
    let idx = this.find(lo, vpn, pcid);
    // PAE walks start at the PDPTE registers, not at CR3: those entries are not kept.
    if (idx < 0 && mode !== PagingMode.PAE) idx = this.takeBack(lo, vpn, pcid, mode);
    if (idx >= 0) {
      const info = this.info[idx]!;
      // Rights come from the cached entry: after a guest relaxes them without
      // invalidating, this is the "spurious" fault of 4.10.4.3, which invalidates (4.10.4.1).
      if (!this.allows(info, access)) this.fault(lo, hi, access, PF_P, mode);
      // A write through an entry whose dirty flag is clear walks again to set it (4.8), and so does an
      // access the nested rights do not allow: the walk makes the EPT exit.
      if ((access !== Access.WRITE || (info & T_D) !== 0) && (this.nested === null || nestedAllows(info, access))) {
        this.noteCacheable(info, access);
        this.counters.hits++;
        return this.frame[idx]!;
      }
    }
    return this.walk(lo, hi, access, mode, vpn, pcid);
  }

  /** The tag of the current context: VPID × 4096 + PCID, and the nested structures' tag × 2^28. */
  private key(): number {
    return this.vpidKey(this.vpid) + currentPcid(this.cpu);
  }

  /** The tag of `vpid` with PCID 0 under the current nested structures. */
  private vpidKey(vpid: number): number {
    return (this.nested === null ? 0 : this.nested.tag) * NESTED_TAG_UNIT + vpid * 4096;
  }

  /**
   * The slot of a usable entry for page `vpn` under tag `key`, or -1; global
   * entries serve every PCID of their VPID (4.10.2.4; vol. 3C, 29.1).
   */
  private find(lo: number, vpn: number, key: number): number {
    const own = slot(lo, key);
    if (this.tag[own] === vpn && this.pcid[own] === key && (this.info[own]! & T_G) === 0) return own;
    const base = vpidOf(key), global = slot(lo, base);
    return this.tag[global] === vpn && (this.info[global]! & T_G) !== 0 && vpidOf(this.pcid[global]!) === base ? global : -1;
  }

  /** Walks the paging structures for (lo, hi), checks the access, sets A/D and caches the translation. */
  private walk(lo: number, hi: number, access: Access, mode: PagingMode, vpn: number, pcid: number): number {
    const cpu = this.cpu;
    const nxe = (cpu.efer & EFER_NXE) !== 0;
    let rights = T_W | T_U, xd = 0, frame = 0, shift = 12, leaf = 0;
    this.usedCount = 0;
    this.counters.walks++;

    if (mode === PagingMode.BITS32) {
      // 32-bit paging (4.3): no reserved bits except in a 4-MiB PDE.
      const pdeAt = this.entryAddress(((cpu.cr3Lo & ~PAGE_MASK) >>> 0) + (lo >>> 22) * 4, lo, hi);
      const pde = this.read32(pdeAt);
      if ((pde & P) === 0) this.fault(lo, hi, access, 0, mode);
      if ((pde & PS) !== 0 && (cpu.cr4 & CR4_PSE) !== 0) {
        if ((pde & PSE36_RSVD) !== 0) this.fault(lo, hi, access, PF_P | PF_RSVD, mode);
        rights &= pde >> 1;
        shift = 22;
        // Bits 31:22 of the address, and bits (M-1):32 from PDE bits (M-20):13 (PSE-36).
        frame = ((pde >>> 22) << 10) + ((pde >>> 13) & ((1 << PSE36_BITS) - 1)) * 0x100000 + ((lo >>> 12) & 0x3ff);
        leaf = pde;
        this.used[this.usedCount++] = pdeAt;
      } else {
        this.used[this.usedCount++] = pdeAt;
        const pteAt = this.entryAddress(((pde & ~PAGE_MASK) >>> 0) + ((lo >>> 12) & 0x3ff) * 4, lo, hi);
        const pte = this.read32(pteAt);
        if ((pte & P) === 0) this.fault(lo, hi, access, 0, mode);
        rights &= (pde >> 1) & (pte >> 1);
        frame = pte >>> 12;
        leaf = pte;
        this.used[this.usedCount++] = pteAt;
      }
    } else {
      // PAE (4.4.2) starts at the PDPTE registers; 4-level and 5-level (4.5) at CR3.
      let level: number, table: number, rsvdHi: number;
      if (mode === PagingMode.PAE) {
        const k = lo >>> 30, pLo = cpu.pdpte[2 * k]!, pHi = cpu.pdpte[2 * k + 1]!;
        if ((pLo & P) === 0) this.fault(lo, hi, access, 0, mode);
        level = 2;
        table = (pHi & ADDR_HI) * 2 ** 32 + ((pLo & ~PAGE_MASK) >>> 0);
        rsvdHi = RSVD_HI_PAE;
      } else {
        level = mode === PagingMode.LEVEL5 ? 5 : 4;
        table = (cpu.cr3Hi & ADDR_HI) * 2 ** 32 + ((cpu.cr3Lo & ~PAGE_MASK) >>> 0);
        rsvdHi = RSVD_HI_IA32E;
      }
      // Bit 63 is XD with EFER.NXE = 1, reserved otherwise.
      if (!nxe) rsvdHi |= 1 << 31;
      for (;; level--) {
        shift = 3 + 9 * level; // 12, 21, 30, 39, 48 for levels 1-5
        const index = shift < 30 ? (lo >>> shift) & 511
          : shift === 30 ? ((lo >>> 30) | (hi << 2)) & 511 : (hi >>> (shift - 32)) & 511;
        const at = this.entryAddress(table + index * 8, lo, hi);
        const eLo = this.read32(at), eHi = this.read32(at + 4);
        if ((eLo & P) === 0) this.fault(lo, hi, access, 0, mode);
        const isLeaf = level === 1 || (level <= 3 && (eLo & PS) !== 0);
        // PS is reserved in PML4Es and PML5Es; large-page frames have reserved low bits.
        const rsvdLo = level >= 4 ? PS : !isLeaf || level === 1 ? 0 : level === 3 ? RSVD_1G : RSVD_2M;
        if ((eHi & rsvdHi) !== 0 || (eLo & rsvdLo) !== 0) this.fault(lo, hi, access, PF_P | PF_RSVD, mode);
        // PS is reserved in a PDPTE too when the processor has no 1-GByte pages (CPUID.80000001H:EDX.Page1GB, 4.5.4).
        if (isLeaf && level === 3 && !hasFeature(cpu, 'pdpe1gb')) this.fault(lo, hi, access, PF_P | PF_RSVD, mode);
        rights &= eLo >> 1;
        if (eHi < 0) xd = T_XD;
        this.used[this.usedCount++] = at;
        if (isLeaf) {
          const sizeMask = (1 << (shift - 12)) - 1;
          frame = (eHi & ADDR_HI) * 0x100000 + (((eLo >>> 12) & ~sizeMask) >>> 0) + ((lo >>> 12) & sizeMask);
          leaf = eLo;
          break;
        }
        table = (eHi & ADDR_HI) * 2 ** 32 + ((eLo & ~PAGE_MASK) >>> 0);
      }
    }

    let info = (rights & (T_W | T_U)) | xd | ((shift - 12) << 8);
    if ((leaf & G) !== 0 && (cpu.cr4 & CR4_PGE) !== 0) info |= T_G;
    if ((leaf & D) !== 0) info |= T_D;
    if (!this.allows(info, access)) this.fault(lo, hi, access, PF_P, mode);
    // 4.8: the access succeeds, so every entry used gets its accessed flag, and a
    // write sets the dirty flag in the entry that maps the page.
    for (let k = 0; k < this.usedCount; k++) this.setBits(k, A, lo, hi);
    if (access === Access.WRITE) { this.setBits(this.usedCount - 1, D, lo, hi); info |= T_D; }
    this.markPageTables();
    const n = this.nested;
    if (n !== null) {
      // The page itself, through the nested structures (29.3.2): its rights join the entry's.
      frame = Math.floor(n.translate(frame * PAGE_SIZE + (lo & PAGE_MASK), access, GuestPhysical.FINAL, lo, hi) / PAGE_SIZE);
      info |= n.rights << T_NESTED_SHIFT;
    }
    const idx = slot(lo, (info & T_G) !== 0 ? vpidOf(pcid) : pcid);
    this.tag[idx] = vpn;
    this.filled.note(idx);
    this.pcid[idx] = pcid;
    this.frame[idx] = frame;
    this.info[idx] = info;
    this.entryCr3[idx] = cr3Of(cpu);
    this.entryContext[idx] = walkContext(cpu, mode);
    this.entryWrites[idx] = cpu.memory.pageTableWrites;
    if (shift > 12) this.large = true;
    this.noteCacheable(info, access);
    return frame;
  }

  /**
   * The pages the walk just read entries from hold paging structures: writes to
   * them now take the slow path on every processor, where memory counts them.
   */
  private markPageTables(): void {
    for (let k = 0; k < this.usedCount; k++) this.watchTable(this.used[k]!);
  }

  /**
   * The page of physical address `pa` holds paging structures (the nested ones
   * too): writes to it take the slow path on every processor and are counted,
   * so that entries kept across a full flush are not taken back after them.
   */
  watchTable(pa: number): void {
    const cpu = this.cpu, ppn = Math.floor(pa / PAGE_SIZE);
    if (cpu.memory.markPageTable(ppn)) for (const p of cpu.peers) p.mmu.protectPage(ppn);
  }



  /** The kept entry for `vpn` if it is still what a walk would build; it goes back into the TLB. */
  private takeBack(lo: number, vpn: number, pcid: number, mode: PagingMode): number {
    const k = this.kept, cpu = this.cpu, cr3 = cr3Of(cpu), context = walkContext(cpu, mode);
    let at = slot(lo, pcid), from = keptSlot(at, cr3, context);
    if (k.tag[from] !== vpn || k.pcid[from] !== pcid || (k.info[from]! & T_G) !== 0) {
      at = slot(lo, vpidOf(pcid)); from = keptSlot(at, cr3, context);
      if (k.tag[from] !== vpn || (k.info[from]! & T_G) === 0 || vpidOf(k.pcid[from]!) !== vpidOf(pcid)) return -1;
    }
    if (k.cr3[from] !== cr3 || k.context[from] !== context || k.writes[from] !== cpu.memory.pageTableWrites) return -1;
    k.tag[from] = NaN;
    this.tag[at] = vpn; this.pcid[at] = k.pcid[from]!; this.frame[at] = k.frame[from]!; this.info[at] = k.info[from]!;
    this.entryCr3[at] = cr3; this.entryContext[at] = context; this.entryWrites[at] = k.writes[from]!;
    this.filled.note(at);
    if ((k.info[from]! >> 8) !== 0) this.large = true;
    return at;
  }

  /** Whether rights `info` allow the access (SDM vol. 3A, 4.6.1). */
  private allows(info: number, access: Access): boolean {
    const cpu = this.cpu;
    if (cpu.mmu.user) {
      if ((info & T_U) === 0) return false;
      if (access === Access.WRITE) return (info & T_W) !== 0;
      return access !== Access.EXEC || (info & T_XD) === 0;
    }
    if (access === Access.EXEC) {
      // SMEP: no supervisor-mode fetches from user-mode addresses.
      return (info & T_XD) === 0 && ((info & T_U) === 0 || (cpu.cr4 & CR4_SMEP) === 0);
    }
    // SMAP: supervisor-mode data accesses to user-mode addresses need CPL < 3 and
    // RFLAGS.AC = 1; an implicit access at CPL 3 never has them.
    if ((info & T_U) !== 0 && (cpu.cr4 & CR4_SMAP) !== 0 && (cpu.cpl === 3 || (cpu.flags & AC) === 0)) return false;
    // CR0.WP = 0 lets supervisor-mode writes through read-only translations.
    return access !== Access.WRITE || (info & T_W) !== 0 || (cpu.cr0 & CR0_WP) === 0;
  }

  /** A supervisor data access to a user page under SMAP depends on RFLAGS.AC: keep it out of the fast TLB. */
  private noteCacheable(info: number, access: Access): void {
    const mmu = this.cpu.mmu;
    if (!mmu.user && access !== Access.EXEC && (info & T_U) !== 0 && (this.cpu.cr4 & CR4_SMAP) !== 0) {
      mmu.cacheable = false;
    }
  }

  /** Raises #PF for (lo, hi) with error-code bits `code` plus those that describe the access (4.7). */
  private fault(lo: number, hi: number, access: Access, code: number, mode: PagingMode): never {
    const cpu = this.cpu;
    if (access === Access.WRITE) code |= PF_W;
    if (cpu.mmu.user) code |= PF_U;
    // I/D: an instruction fetch with SMEP, or with PAE/IA-32e paging and EFER.NXE.
    if (access === Access.EXEC &&
        ((cpu.cr4 & CR4_SMEP) !== 0 || ((cpu.cr4 & CR4_PAE) !== 0 && (cpu.efer & EFER_NXE) !== 0))) code |= PF_I;
    this.invalidateLinear(lo, hi);
    cpu.cr2PrevLo = cpu.cr2Lo; cpu.cr2PrevHi = cpu.cr2Hi;
    cpu.cr2Lo = lo;
    cpu.cr2Hi = mode >= PagingMode.LEVEL4 ? hi : 0;
    return cpu.raise(Vector.PF, code);
  }

  /**
   * Drops the TLB entries of the current tag for the page of linear address
   * (lo, hi), with every fragment when it is part of a large page: as a page
   * fault does for its page (4.10.4.1), and a nested translation's exit for the
   * linear address it came from (vol. 3C, 29.4.3.1).
   */
  invalidateLinear(lo: number, hi: number): void {
    const pcid = this.key(), idx = this.find(lo, hi * 0x100000 + (lo >>> 12), pcid);
    if (idx >= 0 && (this.info[idx]! >> 8) !== 0) { this.dropPage(lo, hi, pcid, true); return; }
    if (idx >= 0) this.tag[idx] = NaN;
    this.cpu.mmu.dropPage(lo);
  }

  private read32(pa: number): number {
    const page = this.cpu.memory.page(Math.floor(pa / PAGE_SIZE));
    return page === null ? -1 : page.getInt32(pa & PAGE_MASK, true);
  }

  /**
   * Where the walk reads the paging-structure entry at physical address `pa`:
   * under nested paging `pa` is guest-physical and is translated, as a read, or
   * as a write when the nested A/D flags make it one (vol. 3C, 29.3.3.2).
   */
  private entryAddress(pa: number, lo: number, hi: number): number {
    this.counters.references++;
    this.usedGuest[this.usedCount] = pa;
    const n = this.nested;
    if (n === null) return pa;
    return n.translate(pa, n.pagingWrites ? Access.WRITE : Access.READ, GuestPhysical.PAGING_ENTRY, lo, hi);
  }

  /**
   * Sets `bits` in the k-th entry the walk used. Under nested paging without
   * A/D flags the update is a write the nested structures must allow (29.3.3.2).
   */
  private setBits(k: number, bits: number, lo: number, hi: number): void {
    const pa = this.used[k]!, page = this.cpu.memory.page(Math.floor(pa / PAGE_SIZE));
    if (page === null) return;
    const v = page.getInt32(pa & PAGE_MASK, true);
    if ((v & bits) === bits) return;
    const n = this.nested;
    if (n !== null && !n.pagingWrites) n.translate(this.usedGuest[k]!, Access.WRITE, GuestPhysical.PAGING_ENTRY, lo, hi);
    page.setInt32(pa & PAGE_MASK, v | bits, true);
  }

  // ---- PDPTE registers -----------------------------------------------------

  /**
   * Loads PDPTE0-3 from the 32-byte table at CR3[31:5] (SDM vol. 3A, 4.4.1).
   * With `check`, a present entry with a reserved bit set loads nothing and
   * returns false: the MOV to CR that loads them raises #GP(0).
   */
  loadPdptes(cr3Lo: number, check = true): boolean {
    const s = this.scratch, n = this.nested;
    let base = (cr3Lo & ~0x1f) >>> 0;
    // Under nested paging the 32-byte table is read through it, as reads with no linear address (vol. 3C, 29.3.3.2).
    if (n !== null) base = n.translate(base, Access.READ, GuestPhysical.NO_LINEAR, 0, 0);
    for (let k = 0; k < 4; k++) {
      const lo = this.read32(base + 8 * k), hi = this.read32(base + 8 * k + 4);
      if (check && (lo & P) !== 0 && ((lo & PDPTE_RSVD_LO) !== 0 || (hi & PDPTE_RSVD_HI) !== 0)) return false;
      s[2 * k] = lo; s[2 * k + 1] = hi;
    }
    this.cpu.pdpte.set(s);
    return true;
  }

  // ---- invalidation (SDM vol. 3A, 4.10.4) ----------------------------------

  /**
   * Translator hook of mmu.flush(): everything goes, and the control registers are taken up anew
   * (under nested paging the PDPTEs are the VM entry's to load, vol. 3C 27.3.2.4).
   */
  flush(): void {
    this.counters.flushes.full++;
    this.dropEntries(-1, true);
    this.identity = false;
    if (pagingMode(this.cpu) === PagingMode.PAE && this.nested === null) this.loadPdptes(this.cpu.cr3Lo, false);
    this.updateWidth();
  }

  /** Linear-address width: 57 bits with CR4.LA57 in IA-32e mode (SDM vol. 3A, 4.5.1). */
  updateWidth(): void {
    const cpu = this.cpu;
    cpu.mmu.canonicalShift = (cpu.cr4 & CR4_LA57) !== 0 && (cpu.efer & EFER_LMA) !== 0 ? 7 : 16;
  }

  /** Drops every entry of every PCID, global ones included. */
  flushAll(): void {
    this.counters.flushes.control++;
    this.dropEntries(-1, true);
  }

  /** MOV to CR3 (4.10.4.1): drops the new PCID's non-global entries unless `noFlush`. */
  cr3Loaded(noFlush: boolean): void {
    this.counters.flushes.cr3++;
    this.identity = false;
    if (!noFlush) this.dropEntries(this.key(), false);
    // The fast entries belong to the previous PCID.
    this.cpu.mmu.flushFast();
  }

  /** INVLPG: the page's entries for the current PCID, and global ones for any PCID, of the current VPID (4.10.4.1). */
  invlpg(lo: number, hi: number): void {
    this.counters.flushes.invlpg++;
    this.dropPage(lo, hi, this.key(), true);
  }

  /**
   * INVPCID (SDM vol. 2, INVPCID): type 0, the non-global entries of `pcid` for
   * the page of (lo, hi); 1, all non-global entries of `pcid`; 2, all entries;
   * 3, all non-global entries.
   */
  invpcid(type: number, pcid: number, lo: number, hi: number): void {
    this.counters.flushes.invpcid++;
    const key = this.vpid * 4096 + pcid;
    switch (type) {
      case 0: this.dropPage(lo, hi, key, false); break;
      case 1: this.dropEntries(key, false); break;
      case 2: this.dropEntries(-1, true); break;
      default: this.dropEntries(-1, false);
    }
  }

  /** Drops non-global entries of `pcid` (-1: of every PCID), and global ones when `globals`. */
  private dropEntries(pcid: number, globals: boolean): void {
    const tag = this.tag;
    if (pcid < 0 && globals) {
      this.keep();
      this.filled.clear(this.tags);
      this.large = false;
    } else {
      for (let k = 0; k < TLB_SIZE; k++) if (this.owned(k, pcid, globals)) tag[k] = NaN;
    }
    this.cpu.mmu.flushFast();
  }

  /** Moves the live entries to the kept set before a full flush empties the TLB. */
  private keep(): void {
    const k = this.kept, f = this.filled, n = f.size;
    if (n < 0) return; // more filled than tracked: nothing kept
    for (let j = 0; j < n; j++) {
      const at = f.at(j);
      if (this.tag[at] !== this.tag[at]) continue; // empty (NaN)
      const to = keptSlot(at, this.entryCr3[at]!, this.entryContext[at]!);
      k.tag[to] = this.tag[at]!; k.pcid[to] = this.pcid[at]!; k.frame[to] = this.frame[at]!; k.info[to] = this.info[at]!;
      k.cr3[to] = this.entryCr3[at]!; k.context[to] = this.entryContext[at]!; k.writes[to] = this.entryWrites[at]!;
    }
  }

  /**
   * Drops the entries for the page holding linear address (lo, hi): those of
   * `pcid`, and global ones when `globals`. Every cached fragment of a large
   * page goes with it (4.10.2.3).
   */
  private dropPage(lo: number, hi: number, pcid: number, globals: boolean): void {
    if (pagingMode(this.cpu) < PagingMode.LEVEL4) hi = 0;
    const vpn = hi * 0x100000 + (lo >>> 12), tag = this.tag, info = this.info;
    const own = slot(lo, pcid), global = slot(lo, vpidOf(pcid));
    if (tag[own] === vpn && this.owned(own, pcid, globals)) tag[own] = NaN;
    if (tag[global] === vpn && this.owned(global, pcid, globals)) tag[global] = NaN;
    if (!this.large) { this.cpu.mmu.dropPage(lo); return; }
    for (let k = 0; k < TLB_SIZE; k++) {
      const size = 2 ** ((info[k]! >> 8) & 0xff);
      if (size > 1 && Math.floor(tag[k]! / size) === Math.floor(vpn / size) && this.owned(k, pcid, globals)) tag[k] = NaN;
    }
    this.cpu.mmu.flushFast();
  }

  /** Entry k is a global one of `pcid`'s VPID and `globals`, or a non-global one of `pcid` (-1: any of either). */
  private owned(k: number, pcid: number, globals: boolean): boolean {
    const own = this.pcid[k]! % NESTED_TAG_UNIT;
    pcid %= NESTED_TAG_UNIT;
    if ((this.info[k]! & T_G) !== 0) return globals && (pcid < 0 || vpidOf(own) === vpidOf(pcid));
    return pcid < 0 || own === pcid;
  }

  /**
   * INVVPID (SDM vol. 3C, 31.3 INVVPID; 29.4.3.3): type 0, the mappings of
   * linear address (lo, hi) tagged `vpid`; 1, all mappings tagged `vpid`; 2, all
   * mappings of every VPID but 0000H; 3, those of `vpid` but global ones.
   */
  invvpid(type: number, vpid: number, lo: number, hi: number): void {
    this.counters.flushes.invvpid++;
    const tag = this.tag, vpn = hi * 0x100000 + (lo >>> 12);
    for (let k = 0; k < TLB_SIZE; k++) {
      if (tag[k] !== tag[k]) continue;
      // Combined mappings go for every nested tag (29.4.3.1).
      const v = Math.floor(this.pcid[k]! / 4096) & 0xffff, size = 2 ** ((this.info[k]! >> 8) & 0xff);
      const drop = type === 2 ? v !== 0
        : v === vpid && (type === 1 || (type === 3 ? (this.info[k]! & T_G) === 0
          : Math.floor(tag[k]! / size) === Math.floor(vpn / size)));
      if (drop) tag[k] = NaN;
    }
    this.cpu.mmu.flushFast();
  }

  /**
   * INVEPT (vol. 3C, 31.3; 29.4.3.1): drops the combined mappings made under
   * nested tag `tag`, or under any nested tag when `tag` < 0.
   */
  invept(tag: number): void {
    this.counters.flushes.invept++;
    const keys = this.tag;
    for (let k = 0; k < TLB_SIZE; k++) {
      if (keys[k] !== keys[k]) continue;
      const t = Math.floor(this.pcid[k]! / NESTED_TAG_UNIT);
      if (tag < 0 ? t !== 0 : t === tag) keys[k] = NaN;
    }
    this.kept.tag.fill(NaN);
    this.cpu.mmu.flushFast();
  }

  /**
   * Makes `vpid` the current VPID after a VM entry or exit that keeps the TLB
   * (VPIDs in use: 29.4.3.1); the control registers are taken up anew.
   */
  switchVpid(vpid: number): void {
    const cpu = this.cpu;
    this.vpid = vpid;
    this.identity = false;
    this.updateWidth();
    cpu.mmu.switchContext(this.key(), cr3Of(cpu),
      (cpu.cr0 & CONTEXT_CR0) | (cpu.cr4 & CONTEXT_CR4) | (cpu.efer & (EFER_NXE | EFER_LMA)));
  }
}
