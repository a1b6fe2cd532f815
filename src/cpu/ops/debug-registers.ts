/**
 * MOV to and from the debug registers (SDM vol. 2, "MOV—Move to/from Debug
 * Registers"; vol. 3B, 18.2 "Debug Registers"), and INVD/WBINVD, which have
 * nothing to do on a model without caches beyond their privilege check.
 */
import { Intercept } from '../virtualization.js';
import { EXTERNAL_BREAK, type Cpu } from '../cpu.js';
import type { DataWatch } from '../mmu.js';
import { OpMap, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import { getReg, setReg } from '../operands.js';
import { VM, Vector } from '../regs.js';

const TWO = OpMap.TWO * 256;
const CR4_DE = 1 << 3;
/** DR7.GD (general detect) and DR6.BD (18.2.3, 18.2.4). */
const DR7_GD = 1 << 13, DR6_BD = 1 << 13;
/** DR6: B0-B3, BD, BS, BT are defined; bits 4-11 and 16-31 read 1, bit 12 reads 0 (no RTM). */
const DR6_DEFINED = 0xe00f, DR6_FIXED1 = 0xffff0ff0 | 0;
/** DR7: bit 10 reads 1; bits 11, 12, 14 and 15 read 0. */
const DR7_DEFINED = 0xffff23ff | 0, DR7_FIXED1 = 0x400;

/** The checks before either direction, in the SDM's order; returns the register number (DR4/5 → DR6/7). */
function debugRegister(cpu: Cpu, i: Insn): number {
  if ((cpu.flags & VM) !== 0 || cpu.cpl !== 0) cpu.raise(Vector.GP, 0);
  let n = i.reg;
  if (n === 4 || n === 5) {
    if (cpu.cr4 & CR4_DE) cpu.raise(Vector.UD);
    n += 2;
  }
  if (cpu.dr7 & DR7_GD) {
    // General detect: a fault, with DR6.BD set and GD cleared for the handler.
    cpu.excDr6 |= DR6_BD;
    cpu.dr7 &= ~DR7_GD;
    cpu.raise(Vector.DB);
  }
  return n;
}

function movFromDr(cpu: Cpu, i: Insn): void {
  const n = debugRegister(cpu, i);
  // After the #UD, #GP and general-detect checks (SDM vol. 3C, 26.1.1).
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, Intercept.MOV_DR)) return;
  const lo = n < 4 ? cpu.dr[2 * n]! : n === 6 ? cpu.dr6 : cpu.dr7;
  const hi = n < 4 ? cpu.dr[2 * n + 1]! : 0;
  setReg(cpu, i.rm, i.opSize, lo, hi);
}

function movToDr(cpu: Cpu, i: Insn): void {
  const n = debugRegister(cpu, i);
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, Intercept.MOV_DR)) return;
  const lo = getReg(cpu, i.rm, i.opSize), hi = i.opSize === 8 ? cpu.tHi : 0;
  if (n < 4) { cpu.dr[2 * n] = lo; cpu.dr[2 * n + 1] = hi; }
  else if (hi !== 0) cpu.raise(Vector.GP, 0); // bits 63:32 of DR6 and DR7 are reserved
  else if (n === 6) cpu.dr6 = (lo & DR6_DEFINED) | DR6_FIXED1;
  else cpu.dr7 = (lo & DR7_DEFINED) | DR7_FIXED1;
  updateBreakpoints(cpu);
}

/** DR7 field of breakpoint n: enabled (L or G), R/W and LEN (SDM vol. 3B, 18.2.4). */
const enabled = (dr7: number, n: number): boolean => ((dr7 >> (2 * n)) & 3) !== 0;
const rwOf = (dr7: number, n: number): number => (dr7 >>> (16 + 4 * n)) & 3;
/** LEN 00, 01, 11, 10 cover 1, 2, 4 and 8 bytes. */
const LENGTH = [1, 2, 8, 4];

/**
 * Recomputes which breakpoints are live after a write to DR0-DR3 or DR7:
 * instruction breakpoints (R/W = 00) for the run loop, data breakpoints
 * (R/W = 01 writes, 11 reads or writes) through the MMU's watch, I/O
 * breakpoints (R/W = 10, with CR4.DE = 1) for the port instructions.
 */
export function updateBreakpoints(cpu: Cpu): void {
  const dr7 = cpu.dr7;
  let exec = 0, data = 0, io = 0;
  for (let n = 0; n < 4; n++) {
    if (!enabled(dr7, n)) continue;
    const rw = rwOf(dr7, n);
    if (rw === 0) exec |= 1 << n;
    else if (rw === 1 || rw === 3) data |= 1 << n;
    else io |= 1 << n;
  }
  // Bit 4 is an external debugger's, not a DRn (cpu.ts EXTERNAL_BREAK).
  cpu.breakOnExecute = exec | (cpu.breakOnExecute & EXTERNAL_BREAK);
  cpu.breakOnIo = io;
  cpu.dataBreakWatch = data === 0 ? null : {
    access(lo: number, hi: number, size: number, write: boolean): void {
      for (let n = 0; n < 4; n++) {
        if (!((data >> n) & 1) || (!write && rwOf(cpu.dr7, n) === 1)) continue;
        const len = LENGTH[(cpu.dr7 >>> (18 + 4 * n)) & 3]!;
        const start = (cpu.dr[2 * n]! & ~(len - 1)) >>> 0;
        if (cpu.dr[2 * n + 1] !== hi) continue;
        const a = lo >>> 0;
        if (a < start + len && start < a + size) { cpu.dataBreakHits |= 1 << n; cpu.signalInterrupt(); }
      }
    },
  };
  installDataWatch(cpu);
}

/**
 * Gives the MMU the watch that reports data accesses to the guest's data
 * breakpoints (Cpu.dataBreakWatch) and to an external debugger
 * (Cpu.externalWatch), either or both; none keeps data accesses on the fast path.
 */
export function installDataWatch(cpu: Cpu): void {
  const own = cpu.dataBreakWatch, external = cpu.externalWatch;
  const watch: DataWatch | null = own === null ? external : external === null ? own : {
    access(lo: number, hi: number, size: number, write: boolean, pa: number): void {
      own.access(lo, hi, size, write, pa);
      external.access(lo, hi, size, write, pa);
    },
  };
  if ((watch === null) !== (cpu.mmu.watch === null)) cpu.mmu.flushFast();
  cpu.mmu.watch = watch;
}

/**
 * After a port access: an I/O breakpoint whose port range overlaps it is hit,
 * and a #DB trap follows the instruction (SDM vol. 3B, 18.2.4, 18.3.1.2).
 */
export function noteIoAccess(cpu: Cpu, port: number, size: number): void {
  if (!(cpu.cr4 & CR4_DE)) return;
  for (let n = 0; n < 4; n++) {
    if (!((cpu.breakOnIo >> n) & 1)) continue;
    const len = LENGTH[(cpu.dr7 >>> (18 + 4 * n)) & 3]!;
    const start = cpu.dr[2 * n]! & 0xffff & ~(len - 1);
    if (port < start + len && start < port + size) { cpu.dataBreakHits |= 1 << n; cpu.signalInterrupt(); }
  }
}

/**
 * INVD/WBINVD: privileged (#GP(0) above CPL 0); the model keeps no caches. In
 * non-root operation INVD always exits, WBINVD under "WBINVD exiting" (SDM vol. 3C, 26.1.2, 26.1.3).
 */
function cacheInvalidate(cpu: Cpu, i: Insn): void {
  if ((cpu.cr0 & 1) && cpu.cpl !== 0) cpu.raise(Vector.GP, 0);
  if (cpu.nonRoot && cpu.virt.intercept(cpu, i, i.opcode === TWO + 0x08 ? Intercept.INVD : Intercept.WBINVD)) return;
}

const def = (name: string, exec: OpDef['exec'], extra: Omit<OpDef, 'name' | 'exec'> = {}): OpDef =>
  ({ name, exec, ...extra });
/** r/m is a general register of natural width whatever ModRM.mod says; DR8-DR15 do not exist (#UD). */
const drOp = { modrm: true, modIgnored: true, size: Sz.NATURAL, validRegs: 0xff } as const;

export const DEBUG_REGISTER_TABLE: Record<number, Entry> = {
  [TWO + 0x21]: def('mov', movFromDr, drOp),
  [TWO + 0x23]: def('mov', movToDr, { ...drOp, ends: true }),
  [TWO + 0x08]: def('invd', cacheInvalidate),
  [TWO + 0x09]: def('wbinvd', cacheInvalidate),
};
