/**
 * Shadow paging: how the hypervisor virtualizes the guest's MMU without EPT,
 * as the first VT-x monitors did on processors that had none (config `ept:
 * false`). The processor in VMX non-root operation then walks the tables at
 * GUEST_CR3 in host-physical memory (SDM vol. 3C, 29.3 applies only with
 * "enable EPT"), so GUEST_CR3 names tables the hypervisor builds — the shadow
 * page tables — whose entries map each guest-linear page straight to the
 * host-physical page that backs it (guest RAM is at the same addresses on host
 * and guest) with the rights the guest's own tables give it.
 *
 * What the guest sees of its paging is the hypervisor's copy: CR3 (CR3-load
 * and CR3-store exiting, 26.1.3), the paging bits of CR0 and CR4 (owned through
 * the guest/host masks, read from the read shadows, 25.6.6), IA32_EFER (its MSR
 * accesses exit). The processor runs the guest with CR0.PE = PG = 1 (without
 * unrestricted guest, IA32_VMX_CR0_FIXED0 fixes them, 27.3.1.1 and A.7), CR0.WP =
 * 1 (so that write protection holds at CPL 0 too), CR4.PAE = 1, CR4.PCIDE = 0,
 * and EFER.LME = LMA = the guest's LMA, EFER.NXE = 1 (so a fetch's #PF says I/D).
 *
 * Format: one the processor walks — 4-level paging (4.5) while the guest is in
 * IA-32e mode, PAE paging (4.4) otherwise, for 32-bit and PAE guests and for a
 * guest with paging off, whose shadow is an identity map of guest RAM (2-MiB
 * pages where a 2-MiB region is all RAM, 4-KiB pages elsewhere). Guest large
 * pages (4 MiB, 2 MiB, 1 GiB) are shadowed with 4-KiB pages, so that a single
 * 4-KiB page inside one can be write-protected.
 *
 * Faults (exception bitmap bit 14, 25.6.3): a #PF exit is a hidden fault when
 * the guest's own walk (guest-walk.ts) allows the access: the walk's accessed
 * and dirty flags are set (4.8), the missing shadow entries are built and the
 * guest resumes without noticing. Otherwise it is a true fault and the guest
 * gets the #PF its tables give (error code and CR2, 4.7), or the #DF or triple
 * fault of table 6-5 when the #PF came while delivering another event. A leaf
 * is writable only once the guest's dirty flag is set, so the first write
 * traps and sets it. A guest-physical address outside RAM (the local APIC and
 * I/O APIC, or nothing) is never mapped: the access is emulated by the code
 * that serves EPT violations (handlers.ts guestPhysicalAccess).
 *
 * Coherence: every guest page that holds a paging structure some shadow page
 * is derived from is write-protected in every shadow (pool.ts keeps, per guest
 * frame, the shadow pages sourced from it and the writable leaves that map it).
 * A guest write to such a page exits with a #PF its walk allows; the hypervisor
 * then drops every shadow page derived from that guest page ("unprotects" it),
 * makes the faulting mapping writable and lets the instruction execute again:
 * the processor performs the write, whatever the instruction, and the page is
 * protected again when a walk next shadows it. Where that cannot make progress
 * — the written page lies on the walk of the written address itself (a
 * recursive or self-mapping table), or the same instruction faults again on the
 * same address without having retired — the write is emulated instead with
 * mmio.ts's instruction emulator on guest memory, and only the shadow entries
 * derived from the guest entries it changed are dropped.
 *
 * TLB: translations the processor caches from the shadows are tagged with the
 * guest's VPID and survive VM exits (29.4.3.1). Dropping shadow entries does
 * not invalidate them, so a guest that changes an entry without INVLPG may keep
 * using the old translation, as it may on the bare processor; INVLPG and MOV to
 * CR3 invalidate with INVVPID exactly what the guest's instruction would
 * (individual address, or all non-global: global shadow leaves carry the
 * guest's G flag and the processor runs with the guest's CR4.PGE). Making a
 * shadow entry stricter (write protection) invalidates its address; a
 * writable translation dropped from the shadows without invalidation is noted,
 * and protecting its page later flushes the guest's TLB.
 *
 * Roots: up to MAX_ROOTS shadow roots are kept, keyed by the guest's top-level
 * table (its CR3, or the PDPTE registers' table for PAE paging) in the current
 * paging mode; MOV to CR3 switches to the cached root, which write protection
 * has kept coherent, or builds a new one (the least recently used goes).
 * A change of CR0.PG or WP, CR4.PAE, PSE, PGE, SMEP, SMAP, PCIDE or LA57, or
 * EFER.NXE or LMA, drops every shadow (a "flush"); so does running out of pool
 * pages (counted as a pool reset too), after which the shadows are rebuilt as
 * the guest faults.
 */
import { InterruptionType } from '../../../vmcs/controls.js';
import { Field } from '../../../vmcs/fields.js';
import { hasFeature } from '../../cpu/cpuid.js';
import { PAGE_SIZE } from '../../cpu/memory.js';
import { Access } from '../../cpu/mmu.js';
import {
  CR0_PE, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PCIDE, CR4_PGE, CR4_PSE, CR4_SMAP, CR4_SMEP, PF_I, PF_U, PF_W,
  PagingMode, pagingMode,
} from '../../cpu/paging.js';
import { EFER_LMA, EFER_LME, EFER_NXE, Vector } from '../../cpu/regs.js';
import { InternalError } from '../../cpu/run.js';
import { PDPTE_FIELDS } from '../../vmx/state-fields.js';
import type { GuestPaging } from '../guest.js';
import { guestPhysicalAccess } from '../handlers.js';
import { emulateMmio, type MmioAccess } from '../mmio.js';
import type { ExitRecord } from '../record.js';
import type { HandlerResult, Vm } from '../vm.js';
import { forcedValue } from '../vmcs-setup.js';
import { A, D, entryFrame, G, GuestWalk, guestPagingState, P, PS, RW, US } from './guest-walk.js';
import { ENTRIES, ShadowPool } from './pool.js';

/** Shadow roots kept for quick MOV to CR3: one per guest address space a small OS switches between. */
export const MAX_ROOTS = 8;

/** What shadow paging did, for the cost model: each a count since the VM was created. */
export interface ShadowCounters {
  /** #PF exits the guest's tables allow: shadow entries built, the guest resumed without a fault. */
  hiddenFaults: number;
  /** #PF exits the guest's tables refuse: the #PF (or #DF) injected into the guest. */
  trueFaults: number;
  /** #PF exits on guest-physical addresses outside RAM: the access emulated (MMIO). */
  mmioFaults: number;
  /** Guest writes to its own paging structures that a shadow was derived from (write-protected pages). */
  pteWrites: number;
  /** Of those, the writes the hypervisor emulated instead of letting the guest's instruction make them. */
  emulatedWrites: number;
  /** MOV to CR3. */
  cr3Switches: number;
  /** MOV to CR3 (or a paging-mode change) that found its shadow root cached. */
  rootHits: number;
  /** Shadow entries written: tables and leaves. */
  entriesBuilt: number;
  /** Guest pages write-protected because a shadow page was derived from them. */
  protects: number;
  /** INVLPG and INVPCID served. */
  invalidations: number;
  /** Every shadow dropped: paging-mode changes and pool resets. */
  flushes: number;
  /** Of those, because the pool ran out of pages. */
  poolResets: number;
}

/** The CR0, CR4 and EFER bits the shadows depend on (their positions do not overlap). */
const MODE_CR0 = CR0_PG | CR0_WP;
const MODE_CR4 = CR4_PSE | CR4_PAE | CR4_PGE | CR4_SMEP | CR4_SMAP | CR4_PCIDE | CR4_LA57;
const MODE_EFER = EFER_NXE | EFER_LMA;
const FOUR_GIB = 2 ** 32;
/** Bytes each entry of a table of level 1-4 maps. */
const SPAN = [0, 2 ** 12, 2 ** 21, 2 ** 30, 2 ** 39];
const XD_HI = 0x80000000 | 0;

/**
 * A VM's shadow paging (see the module comment): the guest's paging registers,
 * the shadow roots and pool, the #PF, CR and INVLPG work, and the counters.
 * vm.ts creates one when the configuration has no EPT.
 */
export class ShadowPaging implements GuestPaging {
  readonly counters: ShadowCounters = {
    hiddenFaults: 0, trueFaults: 0, mmioFaults: 0, pteWrites: 0, emulatedWrites: 0, cr3Switches: 0, rootHits: 0,
    entriesBuilt: 0, protects: 0, invalidations: 0, flushes: 0, poolResets: 0,
  };
  /** The guest's CR3 and IA32_EFER, as it wrote them. */
  cr3Lo = 0;
  cr3Hi = 0;
  efer = 0;
  /** The guest's view of CR0 and CR4 (read shadows for the bits the hypervisor owns), as of the last CR exit. */
  cr0 = 0;
  cr4 = 0;
  readonly pool: ShadowPool;
  private readonly walker: GuestWalk;
  private readonly state = guestPagingState();
  /** End of guest RAM: guest-physical addresses below it are memory, at the same host-physical address. */
  readonly ramEnd: number;
  /** Per guest frame: a writable translation of it was dropped from the shadows without invalidating the TLB. */
  private readonly staleWritable: Uint8Array;
  private readonly rootPage = new Int32Array(MAX_ROOTS).fill(-1);
  private readonly rootKey = new Float64Array(MAX_ROOTS);
  private readonly rootStamp = new Float64Array(MAX_ROOTS);
  /** PAE roots: the PDPTE registers their entries were built from. */
  private readonly rootPdpte = new Int32Array(8 * MAX_ROOTS);
  private current = -1;
  private stamp = 0;
  private modeKey = -1;
  private readonly scratch: Int32Array;
  private readonly nx: boolean;
  /** The last write to a protected page served by unprotecting it: where, and the instruction count then. */
  private lastRip = -1n;
  private lastLo = 0;
  private lastHi = 0;
  private lastCount = -1;

  constructor(private readonly vm: Vm) {
    const memory = vm.config.memory;
    this.ramEnd = memory;
    const frames = Math.floor(memory / PAGE_SIZE);
    this.pool = new ShadowPool(vm.cpu.memory, vm.layout.shadowPool, vm.layout.shadowPages, frames);
    // The guest's CPUID is the processor's (VMX hidden): its 1-GByte pages are the processor's.
    this.walker = new GuestWalk(vm.cpu.memory, memory, hasFeature(vm.cpu, 'pdpe1gb'));
    this.staleWritable = new Uint8Array(frames);
    this.scratch = new Int32Array(vm.layout.shadowPages);
    this.nx = hasFeature(vm.cpu, 'nx');
  }

  // ---- the guest's paging registers ---------------------------------------------------

  /** The guest's paging mode (SDM vol. 3A, 4.1.1, table 4-1). */
  mode(): PagingMode {
    return pagingMode(this);
  }

  isRam(pa: number): boolean {
    return pa >= 0 && pa < this.ramEnd;
  }

  /** Why the guest cannot run under shadow paging in its present state, or null. */
  unsupported(): string | null {
    if ((this.cr0 & CR0_PE) === 0) {
      return 'the guest switched to real mode (CR0.PE = 0): without EPT there is no unrestricted guest ' +
        '(SDM vol. 3C 27.2.1.1), and IA32_VMX_CR0_FIXED0 keeps CR0.PE = 1 in VMX non-root operation (A.7)';
    }
    if (this.mode() === PagingMode.LEVEL5) return 'the guest enabled 5-level paging (CR4.LA57), which the shadow paging does not build';
    return null;
  }

  /** The guest's view of CR0 or CR4 from the VMCS: its own bits, and the read shadow's under the mask (25.6.6). */
  private visible(cr: 0 | 4): number {
    const g = this.vm.guest, F = Field;
    const mask = g.read(cr === 0 ? F.CR0_GUEST_HOST_MASK : F.CR4_GUEST_HOST_MASK);
    return ((g.read(cr === 0 ? F.GUEST_CR0 : F.GUEST_CR4) & ~mask) | (g.read(cr === 0 ? F.CR0_READ_SHADOW : F.CR4_READ_SHADOW) & mask)) >>> 0;
  }

  private key(): number {
    return (this.cr0 & MODE_CR0) | (this.cr4 & MODE_CR4) | (this.efer & MODE_EFER);
  }

  /** The registers the processor runs the guest with (see the module comment), into the guest-state area. */
  private writeReal(): void {
    const g = this.vm.guest, caps = this.vm.vmx.caps, F = Field;
    const paging = (this.cr0 & CR0_PG) !== 0;
    let cr4 = (this.cr4 | CR4_PAE) & ~(CR4_PSE | CR4_PCIDE | CR4_LA57);
    if (!paging) cr4 &= ~(CR4_PGE | CR4_SMEP | CR4_SMAP);
    g.write(F.GUEST_CR0, forcedValue(this.cr0 | CR0_PE | CR0_PG | CR0_WP, caps.cr0Fixed0, caps.cr0Fixed1, g.read(F.CR0_GUEST_HOST_MASK)));
    g.write(F.GUEST_CR4, forcedValue(cr4 >>> 0, caps.cr4Fixed0, caps.cr4Fixed1, g.read(F.CR4_GUEST_HOST_MASK)));
    const lma = this.efer & EFER_LMA;
    g.write(F.GUEST_IA32_EFER, (this.efer & ~(EFER_LME | EFER_LMA)) | (lma !== 0 ? EFER_LME | EFER_LMA : 0) | (this.nx ? EFER_NXE : 0));
  }

  /**
   * Takes the guest's paging registers from the guest-state area the loader's
   * state was saved to (vm.ts), drops every shadow and points GUEST_CR3 at the
   * root for the guest's mode.
   */
  takeGuestState(): void {
    const v = this.vm.vmcs, cpu = this.vm.cpu;
    this.cr3Lo = v.lo(Field.GUEST_CR3);
    this.cr3Hi = v.hi(Field.GUEST_CR3);
    this.efer = v.lo(Field.GUEST_IA32_EFER);
    this.cr0 = this.visible(0);
    this.cr4 = this.visible(4);
    // The guest's PDPTE registers (4.4.1) live in the guest PDPTE fields, which VM entry reads only with EPT.
    if (this.mode() === PagingMode.PAE) PDPTE_FIELDS.forEach((f, k) => v.set(f, cpu.pdpte[2 * k]!, cpu.pdpte[2 * k + 1]!));
    this.modeKey = this.key();
    this.reset();
    this.writeReal();
    this.selectRoot();
  }

  /**
   * The guest's CR0, CR4 or EFER changed (a CR exit, LMSW, CLTS, WRMSR): the
   * processor's values follow, and a change of a bit the shadows depend on drops
   * them all; under PAE paging, reloaded PDPTE registers renew the root's entries.
   */
  controlsWritten(): void {
    this.cr0 = this.visible(0);
    this.cr4 = this.visible(4);
    this.writeReal();
    const key = this.key();
    if (key !== this.modeKey) {
      this.modeKey = key;
      this.dropAll();
      this.selectRoot();
    } else if (this.mode() === PagingMode.PAE) {
      this.selectRoot();
    }
  }

  /** WRMSR to IA32_EFER: the guest's value (the caller made the instruction's checks). */
  setEfer(value: number): void {
    this.efer = value;
    this.controlsWritten();
  }

  /**
   * MOV to CR3 of (lo, hi), after the instruction's checks and, under PAE
   * paging, the PDPTE load: the root for the new tables, and the guest's
   * non-global translations invalidated (4.10.4.1) unless PCID's no-flush bit
   * asked otherwise and the root stayed the same (the processor keeps no
   * separate PCIDs for the guest: CR4.PCIDE is 0 while it runs).
   */
  loadCr3(lo: number, hi: number, noFlush: boolean): void {
    this.counters.cr3Switches++;
    const before = this.current >= 0 ? this.rootPage[this.current]! : -1;
    this.cr3Lo = lo;
    this.cr3Hi = hi;
    if (this.mode() !== PagingMode.NONE) this.selectRoot();
    if (!noFlush || this.rootPage[this.current] !== before) this.invvpid(3, 0, 0);
  }

  // ---- roots ------------------------------------------------------------------------

  /** Points GUEST_CR3 at the shadow root of the guest's current tables, cached or new. */
  private selectRoot(): void {
    const mode = this.mode();
    if (mode === PagingMode.LEVEL5) return; // unsupported(): the VM stops
    const key = mode === PagingMode.NONE ? -1 : mode === PagingMode.PAE ? (this.cr3Lo & ~0x1f) >>> 0
      : entryFrame(this.cr3Lo, mode === PagingMode.LEVEL4 ? this.cr3Hi : 0) * PAGE_SIZE;
    let slot = -1;
    for (let k = 0; k < MAX_ROOTS; k++) if (this.rootPage[k]! >= 0 && this.rootKey[k] === key) slot = k;
    if (slot >= 0) {
      this.counters.rootHits++;
      if (mode === PagingMode.PAE && !this.samePdptes(slot)) {
        this.clearRoot(this.rootPage[slot]!);
        this.keepPdptes(slot);
      }
    } else {
      slot = this.newRoot(key, mode);
    }
    this.current = slot;
    this.rootStamp[slot] = ++this.stamp;
    this.vm.guest.write(Field.GUEST_CR3, this.pool.address(this.rootPage[slot]!), 0);
  }

  /** A root slot for `key`, its page allocated: a free slot, or the least recently used root's, evicted. */
  private newRoot(key: number, mode: PagingMode): number {
    let slot = -1;
    for (let k = 0; k < MAX_ROOTS && slot < 0; k++) if (this.rootPage[k]! < 0) slot = k;
    if (slot < 0) {
      slot = 0;
      for (let k = 1; k < MAX_ROOTS; k++) if (this.rootStamp[k]! < this.rootStamp[slot]!) slot = k;
      this.freeTree(this.rootPage[slot]!, true);
      this.rootPage[slot] = -1;
    }
    const gfn = mode === PagingMode.LEVEL4 ? key / PAGE_SIZE : -1;
    let page = this.pool.allocate(mode === PagingMode.LEVEL4 ? 4 : 3, gfn, 0, 0, -1);
    if (page < 0) {
      this.counters.poolResets++;
      this.dropAll();
      slot = 0;
      page = this.pool.allocate(mode === PagingMode.LEVEL4 ? 4 : 3, gfn, 0, 0, -1);
      if (page < 0) throw this.broken('the shadow-page pool has no page for a root after a reset');
    }
    this.rootPage[slot] = page;
    this.rootKey[slot] = key;
    if (mode === PagingMode.PAE) this.keepPdptes(slot);
    return slot;
  }

  private samePdptes(slot: number): boolean {
    const v = this.vm.vmcs;
    for (let k = 0; k < 4; k++) {
      if (this.rootPdpte[8 * slot + 2 * k] !== v.lo(PDPTE_FIELDS[k]!) || this.rootPdpte[8 * slot + 2 * k + 1] !== v.hi(PDPTE_FIELDS[k]!)) return false;
    }
    return true;
  }

  private keepPdptes(slot: number): void {
    const v = this.vm.vmcs;
    for (let k = 0; k < 4; k++) {
      this.rootPdpte[8 * slot + 2 * k] = v.lo(PDPTE_FIELDS[k]!);
      this.rootPdpte[8 * slot + 2 * k + 1] = v.hi(PDPTE_FIELDS[k]!);
    }
  }

  /** Every page free, no root (the caller selects one). */
  private reset(): void {
    this.pool.reset();
    this.rootPage.fill(-1);
    this.current = -1;
    this.lastCount = -1;
  }

  /**
   * Drops every shadow; the guest's translations go with them (INVVPID, all
   * contexts of its VPID), as they would at a change of paging mode (4.10.4.1).
   */
  private dropAll(): void {
    this.counters.flushes++;
    this.reset();
    this.invvpid(1, 0, 0);
  }

  // ---- faults -----------------------------------------------------------------------

  /** The guest's paging state for a walk, from the hypervisor's copy and the VMCS. */
  private guestState(): void {
    const s = this.state, g = this.vm.guest;
    s.mode = this.mode();
    s.cr0 = this.cr0; s.cr4 = this.cr4; s.efer = this.efer; s.cr3Lo = this.cr3Lo; s.cr3Hi = this.cr3Hi;
    if (s.mode === PagingMode.PAE) {
      // The hypervisor's copy of the guest's PDPTE registers (loaded at MOV to CR0/CR3/CR4, 4.4.1).
      const v = this.vm.vmcs;
      for (let k = 0; k < 4; k++) { s.pdpte[2 * k] = v.lo(PDPTE_FIELDS[k]!); s.pdpte[2 * k + 1] = v.hi(PDPTE_FIELDS[k]!); }
    }
    s.cpl = g.cpl;
    s.flags = g.rflags;
  }

  /** Walks the guest's tables for (lo, hi) as the faulting access did; the walk is `this.walker`'s. */
  walk(lo: number, hi: number, access: Access, user: boolean): GuestWalk {
    this.guestState();
    return this.walker.walk(this.state, lo, hi, access, user);
  }

  /**
   * A #PF exit (the exception bitmap intercepts vector 14): the qualification
   * holds the linear address, the interruption information the error code of
   * the fault on the shadow, which gives the kind of access (28.2.1, 28.2.2).
   */
  pageFault(e: ExitRecord): HandlerResult {
    const vm = this.vm, code = e.interruption?.errorCode ?? 0;
    if (this.mode() === PagingMode.LEVEL5) return unhandled(e, this.unsupported()!);
    const lo = Number(e.qualification & 0xffffffffn) | 0, hi = Number((e.qualification >> 32n) & 0xffffffffn) | 0;
    const access = (code & PF_I) !== 0 ? Access.EXEC : (code & PF_W) !== 0 ? Access.WRITE : Access.READ;
    const user = (code & PF_U) !== 0, write = access === Access.WRITE;
    const w = this.walk(lo, hi, access, user);
    if (!w.ok) return this.trueFault(e, w.errorCode);
    w.setAccessedDirty(write);
    const gpa = w.physical(lo);
    if (!this.isRam(w.frame * PAGE_SIZE)) {
      this.counters.mmioFaults++;
      return guestPhysicalAccess(e, vm, gpa, e.qualification, write, access === Access.EXEC);
    }
    if (write && this.pool.isSourced(w.frame)) return this.protectedWrite(e, w, lo, hi, user, gpa);
    if (write && !user && !w.writable && w.user && !this.canSplitRights()) {
      // CR0.WP = 0 lets the supervisor write a read-only user page; a supervisor-only writable shadow
      // leaf would also let later supervisor accesses past SMAP (or fetches past SMEP without XD).
      return this.emulateWrite(e, gpa);
    }
    this.counters.hiddenFaults++;
    this.map(w, lo, hi, access, user);
    return 'resume';
  }

  /**
   * Whether a supervisor write that CR0.WP = 0 lets through a read-only user
   * page can be given a supervisor-only writable leaf: not under SMAP, and
   * under SMEP only with XD to stop supervisor fetches.
   */
  private canSplitRights(): boolean {
    return (this.cr4 & CR4_SMAP) === 0 && ((this.cr4 & CR4_SMEP) === 0 || this.nx);
  }

  /**
   * The guest's tables refuse the access: it gets the #PF, with CR2 (SDM vol.
   * 3A, 4.7, 6.15). A #PF while delivering a #PF is a #DF, and a fault while
   * delivering a #DF a triple fault (table 6-5); a #PF after a contributory
   * exception, an interrupt or a benign exception is delivered as it is.
   */
  private trueFault(e: ExitRecord, code: number): HandlerResult {
    const g = this.vm.guest, during = e.idtVectoring;
    this.counters.trueFaults++;
    if (during !== null && during.type === InterruptionType.HARDWARE_EXCEPTION) {
      if (during.vector === Vector.DF) return { kind: 'shutdown' };
      if (during.vector === Vector.PF) {
        g.setCr2(e.qualification);
        g.raise(Vector.DF, 0);
        return 'resume';
      }
    }
    g.setCr2(e.qualification);
    g.raise(Vector.PF, code);
    return 'resume';
  }



  /** Builds the shadow entries for the walk; on a full pool, drops every shadow and builds again. */
  private map(w: GuestWalk, lo: number, hi: number, access: Access, user: boolean): void {
    if (this.build(w, lo, hi, access, user)) return;
    this.counters.poolResets++;
    this.dropAll();
    this.selectRoot();
    if (!this.build(w, lo, hi, access, user)) throw this.broken('the shadow-page pool cannot hold one translation after a reset');
  }

  /**
   * A guest write to a page a shadow is derived from. Unprotect and re-execute,
   * or emulate where that cannot make progress (module comment).
   */
  private protectedWrite(e: ExitRecord, w: GuestWalk, lo: number, hi: number, user: boolean, gpa: number): HandlerResult {
    this.counters.pteWrites++;
    const frame = w.frame, count = this.vm.cpu.insnCount;
    let onOwnWalk = false;
    for (let k = 0; k < w.count; k++) if (Math.floor(w.address[k]! / PAGE_SIZE) === frame) onOwnWalk = true;
    const again = this.lastRip === e.rip && this.lastLo === lo && this.lastHi === hi && this.lastCount === count;
    // A supervisor write CR0.WP = 0 lets through to a read-only user page needs emulation anyway (pageFault).
    if (onOwnWalk || again || (!user && !w.writable && w.user && !this.canSplitRights())) return this.emulateWrite(e, gpa);
    this.lastRip = e.rip; this.lastLo = lo; this.lastHi = hi; this.lastCount = count;
    this.unprotect(frame);
    this.map(w, lo, hi, Access.WRITE, user);
    return 'resume';
  }

  /** Drops every shadow page derived from guest frame `frame`; the frame is no longer write-protected. */
  unprotect(frame: number): void {
    const pool = this.pool, n = pool.sourcesOf(frame, this.scratch);
    for (let k = 0; k < n; k++) {
      const p = this.scratch[k]!;
      if (pool.level[p] === 0 || !pool.onSourceList(p)) continue; // freed with an earlier one's subtree
      if (pool.parent[p] < 0) this.clearRoot(p);
      else this.zap(p);
    }
  }

  /**
   * Emulates the guest instruction at RIP that writes guest-physical `gpa`
   * (mmio.ts's emulator over guest memory); the shadow entries derived from the
   * guest entries it changes are dropped (`written`).
   */
  private emulateWrite(e: ExitRecord, gpa: number): HandlerResult {
    this.counters.emulatedWrites++;
    const m = this.vm.cpu.memory, cpu = this.vm.cpu, guest = this.vm.guest;
    // The #PF exit's qualification is the linear address the instruction accesses (28.2.1).
    const memory: MmioAccess = {
      read: (pa, size) => {
        guest.accessed(e.qualification, pa, size, false);
        let v = 0n;
        for (let k = size - 1; k >= 0; k--) v = (v << 8n) | BigInt(m.read8(pa + k) & 0xff);
        return v;
      },
      write: (pa, size, value) => {
        guest.accessed(e.qualification, pa, size, true);
        for (let k = 0; k < size; k++) m.write8(pa + k, Number((value >> BigInt(8 * k)) & 0xffn));
        cpu.codeWritten(pa, size);
        this.written(pa, size);
      },
    };
    const r = emulateMmio(this.vm.guest.view(), gpa, true, memory);
    if (r.kind === 'unsupported') {
      return unhandled(e, `the guest writes guest-physical 0x${gpa.toString(16)}, a page its shadowed paging structures use, ` +
        `where only emulation can complete the write: ${r.reason}`);
    }
    this.vm.guest.retire(r.length);
    return 'resume';
  }

  /**
   * `length` bytes of guest memory at `pa` were written by the hypervisor on the
   * guest's behalf (an emulated instruction, a string I/O instruction): the
   * shadow entries derived from the guest entries in those bytes are dropped.
   */
  written(pa: number, length: number): void {
    const pool = this.pool, size = this.mode() === PagingMode.BITS32 ? 4 : 8;
    for (let at = pa; at < pa + length;) {
      const frame = Math.floor(at / PAGE_SIZE), end = Math.min(pa + length, (frame + 1) * PAGE_SIZE);
      if (pool.isSourced(frame)) {
        const first = Math.floor((at - frame * PAGE_SIZE) / size), last = Math.floor((end - 1 - frame * PAGE_SIZE) / size);
        const n = pool.sourcesOf(frame, this.scratch);
        for (let k = 0; k < n; k++) {
          const p = this.scratch[k]!;
          if (pool.level[p] === 0 || !pool.onSourceList(p)) continue;
          for (let g = first; g <= last; g++) this.dropDerived(p, g, size);
        }
      }
      at = end;
    }
  }

  /** Drops the entries of shadow page `p` derived from entry `g` of its guest table (entries of `size` bytes). */
  private dropDerived(p: number, g: number, size: number): void {
    if (size === 8) { this.clearEntry(p, g, true); return; }
    // A 32-bit guest's table of 1024 entries: a page directory quarter holds two 2-MiB entries per 4-MiB PDE,
    // a page-table half 512 of the PTEs.
    const part = this.pool.part[p]!;
    if (this.pool.level[p] === 2) {
      const i = g - 256 * part;
      if (i >= 0 && i < 256) { this.clearEntry(p, 2 * i, true); this.clearEntry(p, 2 * i + 1, true); }
    } else {
      const i = g - ENTRIES * part;
      if (i >= 0 && i < ENTRIES) this.clearEntry(p, i, true);
    }
  }

  // ---- invalidation -------------------------------------------------------------------

  /**
   * INVLPG or INVPCID of one address (4.10.4.1): the shadow leaf of (lo, hi) in
   * the current root goes, and the guest's translations of the address.
   */
  invalidatePage(lo: number, hi: number): void {
    this.counters.invalidations++;
    if (this.mode() < PagingMode.LEVEL4) hi = 0;
    const slot = this.mode() === PagingMode.NONE ? -1 : this.leafSlot(lo, hi);
    if (slot >= 0) this.clearEntry(Math.floor(slot / ENTRIES), slot % ENTRIES, false);
    this.invvpid(0, lo, hi);
  }

  /** INVPCID of a context or of all (SDM vol. 2, INVPCID): the shadows are coherent; the translations go. */
  invalidateAll(globals: boolean): void {
    this.counters.invalidations++;
    this.invvpid(globals ? 1 : 3, 0, 0);
  }

  /**
   * The shadow leaf that maps linear address (lo, hi) in the current root, bits
   * 31:0 (for the debugger and tests); 0 when the shadow has none.
   */
  leafEntry(lo: number, hi: number): number {
    if (this.current < 0 || this.mode() === PagingMode.NONE) return 0;
    const slot = this.leafSlot(lo, this.mode() < PagingMode.LEVEL4 ? 0 : hi);
    return slot < 0 ? 0 : this.pool.lo(Math.floor(slot / ENTRIES), slot % ENTRIES);
  }

  /** The slot of the shadow leaf for (lo, hi) in the current root, or -1. */
  private leafSlot(lo: number, hi: number): number {
    const pool = this.pool;
    let p = this.rootPage[this.current]!;
    for (let level = pool.level[p]!; level > 1; level--) {
      const i = level === 4 ? (hi >>> 7) & 511 : level === 2 ? (lo >>> 21) & 511
        : pool.level[this.rootPage[this.current]!] === 4 ? ((lo >>> 30) | (hi << 2)) & 511 : lo >>> 30;
      const e = pool.lo(p, i);
      if ((e & P) === 0 || (e & PS) !== 0) return -1;
      p = pool.pageAt((e & ~0xfff) >>> 0);
      if (p < 0) return -1;
    }
    return p * ENTRIES + ((lo >>> 12) & 511);
  }

  /**
   * INVVPID of the guest's VPID (31.3 INVVPID; 29.4.3.3): type 0 one linear
   * address, 1 everything, 3 all but global translations. Without VPIDs every
   * VM entry invalidates them anyway (29.4.3.1).
   */
  private invvpid(type: number, lo: number, hi: number): void {
    const vpid = this.vm.guest.read(Field.VIRTUAL_PROCESSOR_IDENTIFIER);
    if (vpid !== 0) this.vm.cpu.paging.invvpid(type, vpid, lo, hi);
    if (type === 1 || vpid === 0) this.staleWritable.fill(0);
  }

  // ---- building -------------------------------------------------------------------------

  /**
   * The shadow entries that map (lo, hi) as the walk `w` found it, from the
   * current root down; false when the pool ran out of pages.
   */
  private build(w: GuestWalk, lo: number, hi: number, access: Access, user: boolean): boolean {
    const mode = this.state.mode, root = this.rootPage[this.current]!;
    let p: number;
    if (mode === PagingMode.LEVEL4) {
      p = this.table(root, (hi >>> 7) & 511, 3, entryFrame(w.lo[0]!, w.hi[0]!), 0);
      if (p < 0) return false;
      p = this.table(p, ((lo >>> 30) | (hi << 2)) & 511, 2, w.leafLevel === 3 ? -1 : entryFrame(w.lo[1]!, w.hi[1]!), 0);
      if (p < 0) return false;
      p = this.table(p, (lo >>> 21) & 511, 1, w.leafLevel >= 2 ? -1 : entryFrame(w.lo[2]!, w.hi[2]!), 0);
    } else {
      // PAE format: the root is a PDPT; each of its entries a page directory.
      const k = lo >>> 30;
      const gfn = mode === PagingMode.PAE ? entryFrame(this.state.pdpte[2 * k]!, this.state.pdpte[2 * k + 1]!)
        : mode === PagingMode.BITS32 ? entryFrame(this.cr3Lo, 0) : -1;
      p = this.table(root, k, 2, gfn, mode === PagingMode.BITS32 ? k : 0);
      if (p < 0) return false;
      const i = (lo >>> 21) & 511;
      if (mode === PagingMode.NONE) {
        const base = (lo & ~0x1fffff) >>> 0;
        if (base + SPAN[2]! <= this.ramEnd) {
          this.source(p);
          this.pool.set(p, i, base | P | RW | US | A | D | PS, 0);
          this.counters.entriesBuilt++;
          return true;
        }
        p = this.table(p, i, 1, -1, 0);
      } else {
        const table = w.leafLevel === 2 ? -1 : mode === PagingMode.PAE ? entryFrame(w.lo[0]!, w.hi[0]!) : w.lo[0]! >>> 12;
        p = this.table(p, i, 1, table, mode === PagingMode.BITS32 && table >= 0 ? (lo >>> 21) & 1 : 0);
      }
    }
    if (p < 0) return false;
    this.leaf(p, (lo >>> 12) & 511, w, access, user);
    return true;
  }

  /** Page `p` is about to hold an entry derived from its guest table: it goes on the table's source list. */
  private source(p: number): void {
    const pool = this.pool;
    if (pool.gfn[p]! >= 0 && !pool.onSourceList(p) && pool.addSource(p)) this.protect(pool.gfn[p]!);
  }

  /**
   * The table of `level` that entry `i` of page `p` points to, built if absent:
   * sourced from guest frame `gfn` (part `part`), or -1 for none. -1 when the
   * pool is empty.
   */
  private table(p: number, i: number, level: number, gfn: number, part: number): number {
    const pool = this.pool;
    this.source(p);
    const e = pool.lo(p, i);
    if ((e & P) !== 0) {
      const c = pool.pageAt((e & ~0xfff) >>> 0);
      const expected = gfn < pool.frames ? gfn : -1;
      if (c < 0 || pool.level[c] !== level || pool.gfn[c] !== expected || pool.part[c] !== part) {
        throw this.broken(`shadow entry ${i} of pool page ${p} (level ${pool.level[p]}) does not lead to the table of ` +
          `guest frame ${expected.toString(16)} part ${part} the guest's walk gives`);
      }
      return c;
    }
    const c = pool.allocate(level, gfn, part, pool.linear[p]! + i * SPAN[pool.level[p]!]!, p * ENTRIES + i);
    if (c < 0) return -1;
    // PAE PDPTEs have no R/W, U/S or A (4.4.1); elsewhere the tables allow everything and the leaf decides (4.6).
    const paeRoot = pool.level[p] === 3 && pool.parent[p]! < 0;
    pool.set(p, i, pool.address(c) | (paeRoot ? P : P | RW | US | A), Math.floor(pool.address(c) / FOUR_GIB));
    this.counters.entriesBuilt++;
    return c;
  }

  /**
   * Writes the 4-KiB leaf of the walk into entry `i` of page table `p`: the
   * guest's rights, writable only once the guest's dirty flag is set and never
   * for a page a shadow is derived from; G with the guest's CR4.PGE.
   */
  private leaf(p: number, i: number, w: GuestWalk, access: Access, user: boolean): void {
    const pool = this.pool, slot = p * ENTRIES + i;
    this.source(p);
    let writable = w.writable && w.dirty, u = w.user, xd = w.noExecute;
    if (access === Access.WRITE && !user && !w.writable) {
      // CR0.WP = 0 let a supervisor write through a read-only translation (4.6.1): the leaf is writable for
      // the supervisor only; a user access faults and gets the guest's rights back (and so does a supervisor
      // fetch under SMEP, through XD).
      writable = true;
      if (u && (this.cr4 & CR4_SMEP) !== 0) xd = true;
      u = false;
    }
    if (writable && pool.isSourced(w.frame)) writable = false;
    const old = pool.lo(p, i);
    if ((old & (P | RW)) === (P | RW)) pool.rmapRemove(slot, entryFrame(old, pool.hi(p, i)));
    const frame = w.frame;
    const g = w.global && (this.cr4 & CR4_PGE) !== 0;
    const lo = (((frame % 0x100000) * PAGE_SIZE) | P | A | w.cache | (writable ? RW | D : 0) | (u ? US : 0) | (g ? G : 0)) | 0;
    pool.set(p, i, lo, Math.floor(frame / 0x100000) | (xd && this.nx ? XD_HI : 0));
    if (writable) pool.rmapAdd(slot, frame);
    this.counters.entriesBuilt++;
  }

  /**
   * Guest frame `frame` now holds a paging structure a shadow is derived from:
   * every writable shadow leaf of it loses R/W, and the guest's translations of
   * those addresses go; if a writable translation of it may be cached
   * unrecorded, every translation of the guest goes.
   */
  private protect(frame: number): void {
    const pool = this.pool;
    this.counters.protects++;
    for (let s = pool.firstWritable(frame); s >= 0; s = pool.firstWritable(frame)) {
      const p = Math.floor(s / ENTRIES), i = s % ENTRIES;
      pool.set(p, i, pool.lo(p, i) & ~RW, pool.hi(p, i));
      pool.rmapRemove(s, frame);
      const linear = pool.linear[p]! + i * PAGE_SIZE;
      this.invvpid(0, linear % FOUR_GIB | 0, signExtend(Math.floor(linear / FOUR_GIB)));
    }
    if (this.staleWritable[frame] === 1) this.invvpid(1, 0, 0);
  }

  // ---- dropping -------------------------------------------------------------------------

  /** Entry `i` of page `p` goes, with the tables under it; `stale`: its translation may stay cached. */
  private clearEntry(p: number, i: number, stale: boolean): void {
    const pool = this.pool, lo = pool.lo(p, i);
    if ((lo & P) === 0) return;
    if (pool.level[p]! > 1 && (lo & PS) === 0) {
      const c = pool.pageAt((lo & ~0xfff) >>> 0);
      if (c >= 0 && pool.level[c] !== 0) this.freeTree(c, stale);
    } else if (pool.level[p] === 1 && (lo & RW) !== 0) {
      const frame = entryFrame(lo, pool.hi(p, i));
      pool.rmapRemove(p * ENTRIES + i, frame);
      if (stale && frame < this.staleWritable.length) this.staleWritable[frame] = 1;
    }
    pool.set(p, i, 0, 0);
  }

  /** A non-root page goes: its parent's entry is cleared, it and its subtree return to the pool. */
  private zap(p: number): void {
    const slot = this.pool.parent[p]!;
    this.pool.set(Math.floor(slot / ENTRIES), slot % ENTRIES, 0, 0);
    this.freeTree(p, true);
  }

  /** A root keeps its page but loses every entry, and its place on its source list. */
  private clearRoot(p: number): void {
    for (let i = 0; i < ENTRIES; i++) this.clearEntry(p, i, true);
    this.pool.removeSource(p);
  }

  /** Page `p` and everything under it return to the pool (its parent's entry is the caller's). */
  private freeTree(p: number, stale: boolean): void {
    const pool = this.pool, level = pool.level[p]!;
    for (let i = 0; i < ENTRIES; i++) {
      const lo = pool.lo(p, i);
      if ((lo & P) === 0) continue;
      if (level > 1 && (lo & PS) === 0) {
        const c = pool.pageAt((lo & ~0xfff) >>> 0);
        if (c >= 0 && pool.level[c] !== 0) this.freeTree(c, stale);
      } else if (level === 1 && (lo & RW) !== 0) {
        const frame = entryFrame(lo, pool.hi(p, i));
        pool.rmapRemove(p * ENTRIES + i, frame);
        if (stale && frame < this.staleWritable.length) this.staleWritable[frame] = 1;
      }
    }
    pool.removeSource(p);
    pool.release(p);
  }

  /** A broken invariant of the shadows: the run stops with the guest's state (DESIGN.md, Errors). */
  private broken(what: string): InternalError {
    const g = this.vm.guest;
    return new InternalError(`shadow paging: ${what}`, null,
      `guest rip=${g.rip.toString(16)} cr3=${(this.cr3Hi >>> 0).toString(16)}:${(this.cr3Lo >>> 0).toString(16)} ` +
      `cr0=${(this.cr0 >>> 0).toString(16)} cr4=${(this.cr4 >>> 0).toString(16)} efer=${(this.efer >>> 0).toString(16)}`);
  }
}

/** Bits 63:32 of a canonical linear address from bits 47:32 (4.5). */
function signExtend(high16: number): number {
  return (high16 >= 0x8000 ? high16 | 0xffff0000 : high16) | 0;
}

function unhandled(e: ExitRecord, detail: string): HandlerResult {
  return { kind: 'unhandled', reason: e.reason, name: e.name, detail };
}
