/**
 * Building EPT paging structures in the harness's memory (SDM vol. 3C, 29.3.2;
 * numbering of the SDM of December 2024): a 4-level EPT whose tables are taken
 * from EPT_TABLES upwards, mapping guest-physical pages to host-physical ones
 * with the permissions and memory type a test asks for.
 */
import type { Cpu } from '../../src/cpu/cpu.js';
import { Field } from '../../vmcs/fields.js';
import type { Vmcs } from '../../src/vmx/vmcs.js';

/** Where the EPT tables go: above the harness's guest page tables (src/vmx/testing.ts). */
export const EPT_TABLES = 0x600000;
/** EPT permission bits (table 29-6). */
export const EPT_R = 1, EPT_W = 2, EPT_X = 4, EPT_RWX = 7;
/** Memory type WB in bits 5:3 of an entry that maps a page. */
export const EPT_WB = 6 << 3;
export const EPT_LARGE = 1 << 7, EPT_ACCESSED = 1 << 8, EPT_DIRTY = 1 << 9;

export class EptTables {
  readonly pml4: number;
  private next: number;

  constructor(private readonly cpu: Cpu, base = EPT_TABLES) {
    this.pml4 = base;
    this.next = base + 0x1000;
    for (let k = 0; k < 1024; k++) cpu.memory.write32(base + 4 * k, 0);
  }

  /** The EPTP for these tables: WB, walk length 4, and bit 6 when `accessedDirty` (25.6.11). */
  eptp(accessedDirty = false): number {
    return this.pml4 | (3 << 3) | 6 | (accessedDirty ? 1 << 6 : 0);
  }

  /**
   * Maps the guest-physical page of `gpa` (4 KiB, or 2 MiB / 1 GiB with `level`
   * 2 / 3) to `hpa` with entry bits `bits` (permissions, memory type, ...).
   * Tables on the way get all permissions.
   */
  map(gpa: number, hpa: number, bits: number, level = 1): void {
    const at = this.entry(gpa, level, true);
    const m = this.cpu.memory;
    m.write32(at, ((hpa % 2 ** 32) & ~0xfff) | bits | (level > 1 ? EPT_LARGE : 0));
    m.write32(at + 4, Math.floor(hpa / 2 ** 32));
  }

  /** Maps guest-physical [0, bytes) to the same host-physical addresses, with 2-MiB pages, RWX and WB. */
  identity(bytes: number): void {
    for (let a = 0; a < bytes; a += 0x200000) this.map(a, a, EPT_RWX | EPT_WB, 2);
  }

  /**
   * The physical address of the entry at `level` (4 = PML4E ... 1 = PTE) on the
   * walk for `gpa`; with `create`, missing tables (or a large page in the way,
   * which is split into 4-KiB pages of the same rights) are made.
   */
  entry(gpa: number, level: number, create = false): number {
    const m = this.cpu.memory;
    let table = this.pml4;
    for (let l = 4; ; l--) {
      const shift = 3 + 9 * l, index = Math.floor(gpa / 2 ** shift) % 512;
      const at = table + 8 * index;
      if (l === level) return at;
      let e = m.read32(at);
      if ((e & 7) === 0 || (e & EPT_LARGE) !== 0) {
        if (!create) throw new Error(`no EPT table at level ${l} for ${gpa.toString(16)}`);
        const t = this.next;
        this.next += 0x1000;
        for (let k = 0; k < 1024; k++) m.write32(t + 4 * k, 0);
        if ((e & EPT_LARGE) !== 0) {
          // Split the large page into the next level's pages with its rights.
          const base = (e & ~0xfff) >>> 0, size = 2 ** (shift - 9);
          for (let k = 0; k < 512; k++) m.write32(t + 8 * k, (base + k * size) | (e & 0x7f) | (l - 1 > 1 ? EPT_LARGE : 0));
        }
        e = t | EPT_RWX;
        m.write32(at, e); m.write32(at + 4, 0);
      }
      table = (e & ~0xfff) >>> 0;
    }
  }
}

/** Turns on "enable EPT" (secondary bit 1, with "activate secondary controls") with `eptp`, and more secondary `bits`. */
export function enableEpt(v: Vmcs, eptp: number, bits = 0): void {
  const proc = Field.PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, sec = Field.SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS;
  v.set(proc, v.lo(proc) | (1 << 31));
  v.set(sec, v.lo(sec) | 2 | bits);
  v.set(Field.EPT_POINTER, eptp);
}
