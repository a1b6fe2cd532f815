/**
 * The guest as the debugger reads and writes it, wherever it stands: its
 * registers (the general-purpose ones in the processor, the rest in the
 * guest-state area of the VMCS, which every stop brings up to date), its
 * memory through its own paging and the EPT, guest-physical and
 * host-physical memory.
 *
 * Reading changes nothing: the VMCS is read directly (not with Guest.read,
 * whose VMREADs the cost model counts), no page is allocated and no device
 * register is read, and translations are explained (vmx/translation.ts),
 * which sets no accessed or dirty flag.
 */
import { Field } from '../../vmcs/fields.js';
import { PAGE_SIZE } from '../cpu/memory.js';
import { ADDR_HI } from '../cpu/paging.js';
import { RSP } from '../cpu/regs.js';
import type { Vm } from '../hv/vm.js';
import { MMIO_HOLE } from '../hv/vmcs-setup.js';
import { PDPTE_FIELDS } from '../vmx/state-fields.js';
import type { Ept } from '../vmx/ept.js';
import { explainTranslation, type AccessKind, type Translation, type TranslationState } from '../vmx/translation.js';
import type { SystemRegisters } from './system-registers.js';

/** Which address space an address is in: guest-linear, guest-physical (`p:`), host-physical (`h:`). */
export type AddressSpace = 'linear' | 'physical' | 'host';

/** Bytes read from the guest: as many as could be, and why the rest could not. */
export interface ReadResult {
  readonly bytes: Uint8Array;
  /** Why reading stopped early (an unmapped page, memory that is not RAM), or null. */
  readonly stop: string | null;
}

/** EPTP bit 6: accessed and dirty flags for EPT (SDM vol. 3C, 25.6.11). */
const EPTP_AD = 1 << 6;
const CR4_LA57 = 1 << 12, EFER_LMA = 1 << 10, CS_L = 1 << 13, CS_DB = 1 << 14, CR0_PE = 1;

/** The guest's state, read without side effects; writes for gdb. */
export class GuestState {
  constructor(readonly vm: Vm) {}

  /** A VMCS field, all 64 bits. */
  field(encoding: number): bigint {
    const v = this.vm.vmcs;
    return (BigInt(v.hi(encoding) >>> 0) << 32n) | BigInt(v.lo(encoding) >>> 0);
  }

  private low(encoding: number): number {
    return this.vm.vmcs.lo(encoding);
  }

  /** General-purpose register n (encoding order); RSP from the VMCS. */
  reg(n: number): bigint {
    return n === RSP ? this.field(Field.GUEST_RSP) : this.vm.cpu.reg64(n);
  }

  get rip(): bigint { return this.field(Field.GUEST_RIP); }
  get rflags(): number { return this.low(Field.GUEST_RFLAGS) >>> 0; }
  get cpl(): number { return (this.low(Field.GUEST_SS_ACCESS_RIGHTS) >>> 5) & 3; }
  get csBase(): bigint { return this.field(Field.GUEST_CS_BASE); }

  /** Code size in bytes: 8 (64-bit mode), 4 or 2 (SDM vol. 3A, 5.2.1). */
  get codeSize(): 2 | 4 | 8 {
    const ar = this.low(Field.GUEST_CS_ACCESS_RIGHTS);
    if ((this.low(Field.GUEST_IA32_EFER) & EFER_LMA) !== 0 && (ar & CS_L) !== 0) return 8;
    return (this.low(Field.GUEST_CR0) & CR0_PE) !== 0 && (ar & CS_DB) !== 0 ? 4 : 2;
  }

  /** The linear address of the next instruction (CS base + RIP outside 64-bit mode, wrapping at 4 GiB). */
  get ripLinear(): bigint {
    return this.codeSize === 8 ? this.rip : (this.csBase + this.rip) & 0xffffffffn;
  }

  /** CR0 or CR4 as the guest reads it: owned bits from the read shadow (SDM vol. 3C, 25.6.6). */
  guestView(cr: 0 | 4): bigint {
    const F = Field;
    const [real, mask, shadow] = cr === 0
      ? [F.GUEST_CR0, F.CR0_GUEST_HOST_MASK, F.CR0_READ_SHADOW] : [F.GUEST_CR4, F.CR4_GUEST_HOST_MASK, F.CR4_READ_SHADOW];
    const m = this.field(mask);
    return (this.field(real) & ~m) | (this.field(shadow) & m);
  }

  /** CR2 (the guest's own is the processor's: VM exits do not touch it, SDM vol. 3C, 28.3.1). */
  get cr2(): bigint {
    const cpu = this.vm.cpu;
    return (BigInt(cpu.cr2Hi >>> 0) << 32n) | BigInt(cpu.cr2Lo >>> 0);
  }

  /** CR8: the local APIC's TPR[7:4]. */
  get cr8(): number { return this.vm.cpu.cr8.readCr8(); }

  /** What `sregs` shows, from the guest-state area (CR0 and CR4 as the guest reads them). */
  systemRegisters(): SystemRegisters {
    const F = Field, f = (encoding: number): bigint => this.field(encoding);
    return {
      segments: SEGMENT_FIELDS.map((s) => ({ name: s.name, selector: f(s.selector), base: f(s.base), limit: f(s.limit), access: f(s.access) })),
      gdtr: { base: f(F.GUEST_GDTR_BASE), limit: f(F.GUEST_GDTR_LIMIT) },
      idtr: { base: f(F.GUEST_IDTR_BASE), limit: f(F.GUEST_IDTR_LIMIT) },
      cr0: { read: this.guestView(0), real: f(F.GUEST_CR0) },
      cr4: { read: this.guestView(4), real: f(F.GUEST_CR4) },
      cr2: this.cr2, cr3: f(F.GUEST_CR3), cr8: this.cr8, efer: f(F.GUEST_IA32_EFER),
    };
  }

  /**
   * How the guest translates linear addresses now: its control registers and
   * PDPTEs in the VMCS, CPL, the EPT. Under shadow paging (no EPT) the
   * processor walks the hypervisor's shadow tables, filled as the guest
   * faults; the guest's own registers (src/hv/shadow) are used instead, so
   * that the debugger sees what the guest sees.
   */
  translationState(): TranslationState {
    const shadow = this.vm.shadow;
    if (shadow !== null) return this.guestPagingState(shadow);
    const F = Field, v = this.vm.vmcs, pdpte = new Int32Array(8);
    PDPTE_FIELDS.forEach((f, k) => { pdpte[2 * k] = v.lo(f); pdpte[2 * k + 1] = v.hi(f); });
    const cpl = this.cpl, cr4 = v.lo(F.GUEST_CR4);
    const ept = (v.lo(F.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS) & 2) !== 0;
    return {
      cr0: v.lo(F.GUEST_CR0), cr3Lo: v.lo(F.GUEST_CR3), cr3Hi: v.hi(F.GUEST_CR3), cr4, efer: v.lo(F.GUEST_IA32_EFER),
      pdpte, cpl, flags: v.lo(F.GUEST_RFLAGS), memory: this.vm.cpu.memory, ept: ept ? this.eptView() : null,
      identity: false, user: cpl === 3, canonicalShift: cr4 & CR4_LA57 ? 7 : 16,
    };
  }

  /** The guest's own paging under shadow paging: its CR0 and CR4 through the read shadows, its CR3 and EFER as it wrote them. */
  private guestPagingState(shadow: { readonly cr3Lo: number; readonly cr3Hi: number; readonly efer: number }): TranslationState {
    const cr0 = Number(this.guestView(0)), cr4 = Number(this.guestView(4)), memory = this.vm.cpu.memory;
    const pdpte = new Int32Array(8);
    // PAE paging: the PDPTE registers MOV to CR3 loaded, read again from the 32-byte table at CR3 (SDM vol. 3A, 4.4.1).
    if ((cr0 >>> 31) !== 0 && (cr4 & 0x20) !== 0 && (shadow.efer & (1 << 8)) === 0) {
      const base = (shadow.cr3Lo & ~0x1f) >>> 0;
      for (let k = 0; k < 8; k++) if (base + 4 * k < memory.size) pdpte[k] = memory.read32(base + 4 * k);
    }
    const cpl = this.cpl;
    return {
      cr0, cr3Lo: shadow.cr3Lo, cr3Hi: shadow.cr3Hi, cr4, efer: shadow.efer, pdpte, cpl, flags: this.rflags, memory,
      ept: null, identity: false, user: cpl === 3, canonicalShift: cr4 & CR4_LA57 ? 7 : 16,
    };
  }

  /**
   * The EPT the VMCS names (EPT_POINTER), which is the one the next VM entry
   * uses (the processor's Ept takes it up only at an entry, 27.3.2).
   * explainTranslation reads its EP4TA and its accessed/dirty enable, nothing else.
   */
  private eptView(): Ept {
    const v = this.vm.vmcs, lo = v.lo(Field.EPT_POINTER), hi = v.hi(Field.EPT_POINTER);
    const view = { pml4: (hi & ADDR_HI) * 2 ** 32 + ((lo & ~0xfff) >>> 0), pagingWrites: (lo & EPTP_AD) !== 0 };
    return view as unknown as Ept;
  }

  /** How the guest translates `linear` for `access` (supervisor or user as its CPL says), entry by entry. */
  translate(linear: bigint, access: AccessKind = 'read'): Translation {
    return explainTranslation(this.translationState(), linear, access);
  }

  /** A byte of physical memory without side effects: RAM never touched reads 0; beyond RAM, null. */
  private physicalByte(pa: number): number | null {
    const memory = this.vm.cpu.memory, ppn = Math.floor(pa / PAGE_SIZE);
    if (pa < 0 || pa >= memory.size) return null;
    return memory.isAllocated(ppn) ? memory.read8(pa) & 0xff : 0;
  }

  /** Whether a guest-physical address is guest RAM (EPT maps RAM one to one, the MMIO hole left out: vmcs-setup.ts). */
  isGuestRam(gpa: number): boolean {
    const size = this.vm.config.memory;
    return gpa >= 0 && gpa < size && !(gpa >= MMIO_HOLE && gpa < 2 ** 32);
  }

  /** Reads up to `count` bytes at `address` in `space`. */
  read(space: AddressSpace, address: bigint, count: number, access: AccessKind = 'read'): ReadResult {
    const out: number[] = [];
    if (space === 'linear') {
      const state = this.translationState();
      for (let k = 0; k < count;) {
        const at = BigInt.asUintN(64, address + BigInt(k));
        const t = explainTranslation(state, at, access);
        if (t.outcome.kind !== 'ok') return { bytes: Uint8Array.from(out), stop: `linear 0x${at.toString(16)} does not translate: ${t.outcome.reason}` };
        const pa = Number(t.hostPhysical!), n = Math.min(count - k, PAGE_SIZE - (pa % PAGE_SIZE));
        for (let j = 0; j < n; j++) out.push(this.physicalByte(pa + j) ?? 0xff);
        k += n;
      }
      return { bytes: Uint8Array.from(out), stop: null };
    }
    for (let k = 0; k < count; k++) {
      const a = address + BigInt(k);
      if (a > BigInt(Number.MAX_SAFE_INTEGER)) return { bytes: Uint8Array.from(out), stop: `0x${a.toString(16)} is beyond physical memory` };
      const pa = Number(a);
      if (space === 'physical' && !this.isGuestRam(pa)) {
        return { bytes: Uint8Array.from(out), stop: `guest-physical 0x${a.toString(16)} is not guest RAM` };
      }
      const b = this.physicalByte(pa);
      if (b === null) return { bytes: Uint8Array.from(out), stop: `host-physical 0x${a.toString(16)} is beyond the machine's memory` };
      out.push(b);
    }
    return { bytes: Uint8Array.from(out), stop: null };
  }

  // ---- writes (gdb) -------------------------------------------------------------------

  /**
   * Sets a general-purpose register (encoding order), RIP or RFLAGS. In the
   * guest (non-root operation) the processor holds the register; at an exit
   * or before the first entry the VMCS does (RSP, RIP, RFLAGS). Both are
   * written, so that reads agree.
   */
  setRegister(which: number | 'rip' | 'rflags', value: bigint): void {
    const cpu = this.vm.cpu, v = this.vm.vmcs, live = cpu.nonRoot;
    const lo = Number(value & 0xffffffffn) | 0, hi = Number((value >> 32n) & 0xffffffffn) | 0;
    if (which === 'rip') {
      v.set(Field.GUEST_RIP, lo, hi);
      if (live) { cpu.ripLo = lo; cpu.ripHi = hi; }
    } else if (which === 'rflags') {
      v.set(Field.GUEST_RFLAGS, lo, 0);
      if (live) cpu.rflags = lo >>> 0;
    } else if (which === RSP) {
      v.set(Field.GUEST_RSP, lo, hi);
      if (live) cpu.setReg64(RSP, value);
    } else {
      cpu.setReg64(which, value);
    }
  }

  /**
   * Writes bytes at a guest-linear address through the guest's translation
   * (read rights suffice: a debugger may patch read-only code); false and
   * nothing written when a page does not translate to RAM.
   */
  writeLinear(address: bigint, bytes: Uint8Array): boolean {
    const state = this.translationState(), pas: number[] = [];
    for (let k = 0; k < bytes.length; k++) {
      const t = explainTranslation(state, BigInt.asUintN(64, address + BigInt(k)), 'read');
      if (t.outcome.kind !== 'ok' || Number(t.hostPhysical!) >= this.vm.cpu.memory.size) return false;
      pas.push(Number(t.hostPhysical!));
    }
    const cpu = this.vm.cpu;
    pas.forEach((pa, k) => {
      cpu.memory.write8(pa, bytes[k]!);
      cpu.codeWritten(pa, 1);
    });
    return true;
  }
}

/** Segment registers in the VMCS's order with their names (ES, CS, SS, DS, FS, GS, LDTR, TR). */
export const SEGMENT_FIELDS: readonly { readonly name: string; readonly selector: number; readonly base: number; readonly limit: number; readonly access: number }[] = (
  ['es', 'cs', 'ss', 'ds', 'fs', 'gs', 'ldtr', 'tr'] as const
).map((name) => {
  const N = name.toUpperCase();
  const f = (suffix: string): number => (Field as Record<string, number>)[`GUEST_${N}_${suffix}`]!;
  return { name, selector: f('SELECTOR'), base: f('BASE'), limit: f('LIMIT'), access: f('ACCESS_RIGHTS') };
});
