/**
 * EPT, the extended page tables (SDM vol. 3C, 29.3): the second dimension of
 * translation in VMX non-root operation. Every guest-physical address the
 * guest uses (the final address of a linear access, each guest
 * paging-structure entry, the PDPTEs a MOV to CR loads) is translated here
 * through the 4-level EPT paging structures that the EPTP names, with their
 * permissions, misconfigurations, large pages and accessed/dirty flags.
 *
 * Guest-physical mappings (29.4.1) are cached per EP4TA and used until INVEPT
 * invalidates them, as on a processor: a VMM that weakens an EPT entry without
 * INVEPT may see the old translation used. The combined mappings (linear →
 * host-physical) are the paging TLB's (paging.ts), tagged with `tag`.
 */
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { EptViolation, NMI_UNBLOCKING_DUE_TO_IRET } from '../../vmcs/qualifications.js';
import type { Cpu } from '../cpu/cpu.js';
import { PAGE_MASK, PAGE_SIZE } from '../cpu/memory.js';
import { Access } from '../cpu/mmu.js';
import { iretUnblockedNmi } from '../cpu/ops/segment.js';
import { ADDR_HI, GuestPhysical, RSVD_HI_IA32E, type NestedPaging } from '../cpu/paging.js';
import type { ExitInfo } from './exit.js';

/** EPT entry bits (29.3.2, tables 29-1 to 29-6); translation.ts describes entries with them too. */
export const R = 1, W = 2, X = 4, RWX = 7, LARGE = 1 << 7, ACCESSED = 1 << 8, DIRTY = 1 << 9;
/**
 * Reserved low bits: 7:3 in entries that reference a table; 29:12 (1 GiB) and
 * 20:12 (2 MiB) in large pages. Bits 51:MAXPHYADDR are reserved as in 4-level
 * paging (paging.ts RSVD_HI_IA32E).
 */
export const RSVD_TABLE = 0xf8, RSVD_1G = 0x3ffff000, RSVD_2M = 0x1ff000;
/** EPTP (25.6.11): bit 6 enables accessed and dirty flags. */
const EPTP_AD = 1 << 6;

/** Cached guest-physical mappings: direct-mapped by guest-physical page. */
const CACHE_BITS = 10, CACHE_SIZE = 1 << CACHE_BITS, CACHE_MASK = CACHE_SIZE - 1;
/** A cached mapping's dirty flag is set (or A/D flags are off): a write need not walk to set it. */
const CACHED_DIRTY = 8;


/** Counts for the cost model: EPT walks and the EPT entries they read (the exits they cause are counted as exits). */
export interface EptCounters { walks: number; references: number }

export class Ept implements NestedPaging {
  /** The TLB tag of the current EP4TA (1, 2, ...: one per EPT PML4 address met). */
  tag = 0;
  pagingWrites = false;
  rights = 0;
  readonly counters: EptCounters = { walks: 0, references: 0 };
  /** The EPT PML4 table's address (EP4TA, bits 51:12 of the EPTP). */
  private ep4ta = 0;
  private readonly tags = new Map<number, number>();
  private readonly cacheGpn = new Float64Array(CACHE_SIZE).fill(NaN);
  private readonly cacheTag = new Int32Array(CACHE_SIZE);
  private readonly cacheHpn = new Float64Array(CACHE_SIZE);
  private readonly cacheRights = new Int32Array(CACHE_SIZE);
  /** Host-physical addresses of the entries the walk in progress used. */
  private readonly used = new Float64Array(4);

  constructor(private readonly cpu: Cpu, private readonly exitInfo: ExitInfo, private readonly exit: () => never) {}

  /** The EP4TA in use: where walks start (for translation.ts, which explains them). */
  get pml4(): number { return this.ep4ta; }

  /** Makes `eptp` (bits 31:0, 63:32) the EPTP of the guest being entered (27.3.2). */
  use(eptpLo: number, eptpHi: number): void {
    this.ep4ta = (eptpHi & ADDR_HI) * 2 ** 32 + ((eptpLo & ~PAGE_MASK) >>> 0);
    this.tag = this.tagOf(this.ep4ta);
    this.pagingWrites = (eptpLo & EPTP_AD) !== 0;
  }

  /** The tag of EP4TA `pml4`: mappings of different EPT structures never mix (29.4.1). */
  tagOf(pml4: number): number {
    let t = this.tags.get(pml4);
    if (t === undefined) { t = this.tags.size + 1; this.tags.set(pml4, t); }
    return t;
  }

  translate(gpa: number, access: Access, kind: GuestPhysical, lo: number, hi: number): number {
    const gpn = Math.floor(gpa / PAGE_SIZE), at = gpn & CACHE_MASK;
    if (this.cacheGpn[at] === gpn && this.cacheTag[at] === this.tag) {
      const rights = this.cacheRights[at]!;
      if ((rights & accessRight(access)) !== 0 && (access !== Access.WRITE || (rights & CACHED_DIRTY) !== 0)) {
        this.rights = rights;
        return this.cacheHpn[at]! * PAGE_SIZE + (gpa & PAGE_MASK);
      }
    }
    return this.walk(gpa, access, kind, lo, hi);
  }

  /**
   * Walks the EPT paging structures for `gpa` (29.3.2): an EPT misconfiguration
   * stops the walk at the entry (29.3.3.1), a not-present entry is an EPT
   * violation, and so is an access the entries' permissions do not allow (29.3.3.2).
   */
  private walk(gpa: number, access: Access, kind: GuestPhysical, lo: number, hi: number): number {
    const memory = this.cpu.memory;
    this.counters.walks++;
    let table = this.ep4ta, rights = RWX, count = 0, hpn = 0, leafAt = 0, leaf = 0;
    const gLo = gpa % 2 ** 32 | 0, gHi = Math.floor(gpa / 2 ** 32);
    for (let level = 4; ; level--) {
      const shift = 3 + 9 * level; // 39, 30, 21, 12
      const index = shift === 39 ? (gHi >>> 7) & 511 : shift === 30 ? ((gLo >>> 30) | (gHi << 2)) & 511 : (gLo >>> shift) & 511;
      const entryAt = table + index * 8;
      const eLo = memory.read32(entryAt), eHi = memory.read32(entryAt + 4);
      this.counters.references++;
      this.cpu.paging.watchTable(entryAt);
      this.used[count++] = entryAt;
      if ((eLo & RWX) === 0) this.violation(gpa, access, 0, kind, lo, hi);
      const isLeaf = level === 1 || (level <= 3 && (eLo & LARGE) !== 0);
      const rsvdLo = !isLeaf ? RSVD_TABLE : level === 3 ? RSVD_1G : level === 2 ? RSVD_2M : 0;
      const type = (eLo >>> 3) & 7;
      // Misconfigured (29.3.3.1): write without read; a reserved bit; a reserved memory type (2, 3, 7) in the
      // entry that maps the page. Execute-only (100B) is allowed: IA32_VMX_EPT_VPID_CAP[0] = 1.
      if ((eLo & (R | W)) === W || (eHi & RSVD_HI_IA32E) !== 0 || (eLo & rsvdLo) !== 0 ||
          (isLeaf && (type === 2 || type === 3 || type === 7))) {
        this.misconfiguration(gpa, kind, lo, hi);
      }
      rights &= eLo;
      if (isLeaf) {
        const sizeMask = (1 << (shift - 12)) - 1;
        hpn = (eHi & ADDR_HI) * 0x100000 + (((eLo >>> 12) & ~sizeMask) >>> 0) + (pageOf(gLo, gHi) & sizeMask);
        leafAt = entryAt; leaf = eLo;
        break;
      }
      table = (eHi & ADDR_HI) * 2 ** 32 + ((eLo & ~PAGE_MASK) >>> 0);
    }
    if ((rights & accessRight(access)) === 0) this.violation(gpa, access, rights, kind, lo, hi);
    // Accessed and dirty flags (29.3.5): A in every entry used, D in the leaf for a write.
    let dirty = CACHED_DIRTY;
    if (this.pagingWrites) {
      for (let k = 0; k < count; k++) setBits(memory, this.used[k]!, ACCESSED);
      if (access === Access.WRITE) setBits(memory, leafAt, DIRTY);
      else if ((leaf & DIRTY) === 0) dirty = 0;
    }
    const at = hpnSlot(gpa);
    this.cacheGpn[at] = Math.floor(gpa / PAGE_SIZE); this.cacheTag[at] = this.tag;
    this.cacheHpn[at] = hpn; this.cacheRights[at] = this.rights = (rights & RWX) | dirty;
    return hpn * PAGE_SIZE + (gpa & PAGE_MASK);
  }

  /** An EPT violation (29.3.3.2): exit reason 48 with the qualification of table 28-7. */
  private violation(gpa: number, access: Access, rights: number, kind: GuestPhysical, lo: number, hi: number): never {
    this.drop(gpa, kind, lo, hi);
    const e = this.exitInfo;
    e.begin(ExitReason.EPT_VIOLATION);
    // A guest paging-structure access that A/D flags make a write reports both read and write.
    const Q = EptViolation;
    let q = access === Access.EXEC ? Q.INSTRUCTION_FETCH : access === Access.WRITE ? Q.DATA_WRITE : Q.DATA_READ;
    if (kind === GuestPhysical.PAGING_ENTRY && access === Access.WRITE && this.pagingWrites) q |= Q.DATA_READ;
    q |= (rights & RWX) << Q.PERMISSIONS_SHIFT;
    // Bit 12: the access was an IRET's, which had ended NMI blocking (28.2.3).
    if (iretUnblockedNmi(this.cpu)) q |= NMI_UNBLOCKING_DUE_TO_IRET;
    if (kind !== GuestPhysical.NO_LINEAR) {
      q |= Q.GUEST_LINEAR_ADDRESS_VALID;
      if (kind === GuestPhysical.FINAL) q |= Q.TRANSLATED_LINEAR_ADDRESS;
      e.hasLinear = true; e.linearLo = lo; e.linearHi = hi;
    }
    e.qualificationLo = q;
    e.hasPhysical = true; e.physical = gpa;
    return this.exit();
  }

  /** An EPT misconfiguration (29.3.3.1): exit reason 49, qualification 0, the guest-physical address. */
  private misconfiguration(gpa: number, kind: GuestPhysical, lo: number, hi: number): never {
    this.drop(gpa, kind, lo, hi);
    const e = this.exitInfo;
    e.begin(ExitReason.EPT_MISCONFIGURATION);
    e.hasPhysical = true; e.physical = gpa;
    return this.exit();
  }

  /**
   * An EPT-induced exit invalidates the guest-physical mappings of the address,
   * and the combined mappings of the linear address it translated (29.4.3.1).
   */
  private drop(gpa: number, kind: GuestPhysical, lo: number, hi: number): void {
    const at = hpnSlot(gpa);
    if (this.cacheGpn[at] === Math.floor(gpa / PAGE_SIZE)) this.cacheGpn[at] = NaN;
    if (kind !== GuestPhysical.NO_LINEAR) this.cpu.paging.invalidateLinear(lo, hi);
  }

  /**
   * INVEPT (31.3): type 1 invalidates the guest-physical and combined mappings
   * of the EP4TA in `eptpLo/Hi`, type 2 those of every EP4TA.
   */
  invalidate(type: number, eptpLo: number, eptpHi: number): void {
    const tag = type === 1 ? this.tagOf((eptpHi & ADDR_HI) * 2 ** 32 + ((eptpLo & ~PAGE_MASK) >>> 0)) : -1;
    for (let k = 0; k < CACHE_SIZE; k++) if (tag < 0 || this.cacheTag[k] === tag) this.cacheGpn[k] = NaN;
    this.cpu.paging.invept(tag);
  }
}

/** The EPT permission bit an access needs (29.3.3.2). */
function accessRight(access: Access): number {
  return access === Access.EXEC ? X : access === Access.WRITE ? W : R;
}

function pageOf(lo: number, hi: number): number {
  return hi * 0x100000 + (lo >>> 12);
}

function hpnSlot(gpa: number): number {
  return Math.floor(gpa / PAGE_SIZE) & CACHE_MASK;
}

function setBits(memory: Cpu['memory'], pa: number, bits: number): void {
  const v = memory.read32(pa);
  if ((v & bits) !== bits) memory.write32(pa, v | bits);
}
