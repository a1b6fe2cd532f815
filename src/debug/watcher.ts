/**
 * Address breakpoints and watchpoints as the processor sees them, shared by
 * the debugger's engines (engine.ts over hvsim's VM, bare-engine.ts over a
 * bare machine): the breakpoints become ranges of linear and physical
 * addresses, looked up by the processor's execution hook (Cpu.executionHook,
 * once per block boundary: how many instructions of the coming block may run
 * before one to stop in front of) and by its data watch (Cpu.externalWatch,
 * which puts data accesses on the MMU's slow path while set).
 */
import { type Cpu, type ExecutionHook } from '../cpu/cpu.js';
import type { DataWatch } from '../cpu/mmu.js';
import { installDataWatch } from '../cpu/ops/debug-registers.js';
import { CS } from '../cpu/regs.js';
import { instructionsBefore, type Breakpoint } from './breakpoints.js';

/** A data or execute watchpoint that was hit. */
export interface WatchHit {
  /** Linear address of the access (the instruction, for an execute watch). */
  readonly linear: bigint;
  /** Physical address of its first byte. */
  readonly physical: number;
  readonly size: number;
  readonly write: boolean;
}

interface ExecRange { readonly bp: Breakpoint; readonly hi: number; readonly loStart: number; readonly loEnd: number }
interface PhysRange { readonly bp: Breakpoint; readonly start: number; readonly end: number }
interface DataRange extends ExecRange { readonly read: boolean; readonly write: boolean }
interface DataPhysRange extends PhysRange { readonly read: boolean; readonly write: boolean }

/**
 * The engine's hooks into the processor: the execution hook (address
 * breakpoints, execute watchpoints) and the data watch (read/write watchpoints).
 * They note the first hit and make the run stop at the next instruction
 * boundary (`onHit` tells the engine's run loop, e.g. Vm.breakRequested).
 */
export class Watcher implements ExecutionHook, DataWatch {
  execLinear: ExecRange[] = [];
  execPhysical: PhysRange[] = [];
  dataLinear: DataRange[] = [];
  dataPhysical: DataPhysRange[] = [];
  /** An address breakpoint at this exact spot is stepped over (the command starts on it). */
  skip: { insns: number; lo: number; hi: number } | null = null;
  hit: { bp: Breakpoint; access: WatchHit | null } | null = null;

  constructor(private readonly cpu: Cpu, private readonly onHit: () => void = () => {}) {}

  /** An address breakpoint at the instruction the processor stands on does not stop the command that starts there. */
  skipHere(): void {
    const cpu = this.cpu, mode = cpu.codeSize, base = mode === 8 ? 0 : cpu.segBase[2 * CS]!;
    this.skip = { insns: cpu.insnCount, lo: mode === 8 ? cpu.ripLo >>> 0 : (base + cpu.ripLo) >>> 0, hi: mode === 8 ? cpu.ripHi : 0 };
  }

  /** The step over the breakpoint the command started on is done once the processor has moved. */
  moved(): void {
    if (this.skip !== null && this.cpu.insnCount !== this.skip.insns) this.skip = null;
  }

  /** Puts data accesses on the MMU's slow path for the data watchpoints, or takes them off (Cpu.externalWatch). */
  armData(on: boolean): void {
    const cpu = this.cpu;
    if ((cpu.externalWatch !== null) === on) return;
    cpu.externalWatch = on ? this : null;
    installDataWatch(cpu);
  }

  /** Rebuilds the ranges from the breakpoints. */
  set(bps: readonly Breakpoint[]): void {
    this.execLinear = []; this.execPhysical = []; this.dataLinear = []; this.dataPhysical = [];
    for (const bp of bps) {
      const s = bp.spec;
      if (s.kind === 'address') this.execLinear.push(...linearRanges(bp, s.address, 1));
      if (s.kind !== 'watch') continue;
      const read = s.access === 'read' || s.access === 'access', write = s.access === 'write' || s.access === 'access';
      if (s.space === 'linear') {
        if (s.access === 'execute') this.execLinear.push(...linearRanges(bp, s.address, s.length));
        else this.dataLinear.push(...linearRanges(bp, s.address, s.length).map((r) => ({ ...r, read, write })));
      } else {
        const r = { bp, start: Number(s.address), end: Number(s.address) + s.length };
        if (s.access === 'execute') this.execPhysical.push(r);
        else this.dataPhysical.push({ ...r, read, write });
      }
    }
  }

  get wantsExecution(): boolean { return this.execLinear.length > 0 || this.execPhysical.length > 0; }
  get wantsData(): boolean { return this.dataLinear.length > 0 || this.dataPhysical.length > 0; }

  private execAt(lo: number, hi: number, phys: number): Breakpoint | null {
    for (const r of this.execLinear) if (r.hi === hi && lo >= r.loStart && lo < r.loEnd) return r.bp;
    for (const r of this.execPhysical) if (phys >= r.start && phys < r.end) return r.bp;
    return null;
  }

  private stopHere(bp: Breakpoint, lo: number, hi: number, phys: number): number {
    this.hit = { bp, access: { linear: (BigInt(hi >>> 0) << 32n) | BigInt(lo), physical: phys, size: 0, write: false } };
    this.onHit();
    return 0;
  }

  /** An execution breakpoint or watchpoint is set at linear (lo, hi) or physical `phys`. */
  private readonly isExecPoint = (lo: number, hi: number, phys: number): boolean => this.execAt(lo, hi, phys) !== null;

  allow(cpu: Cpu, limit: number): number {
    const mode = cpu.codeSize, ip = cpu.ripLo, base = mode === 8 ? 0 : cpu.segBase[2 * CS]!;
    const lo = mode === 8 ? ip >>> 0 : (base + ip) >>> 0, hi = mode === 8 ? cpu.ripHi : 0;
    const s = this.skip, skipHere = s !== null && s.insns === cpu.insnCount && s.lo === lo && s.hi === hi;
    if (!skipHere && this.execPhysical.length === 0) {
      const bp = this.execAt(lo, hi, -1);
      if (bp !== null) return this.stopHere(bp, lo, hi, -1);
    }
    // The block about to run: how many of its instructions come before one to stop at.
    const block = cpu.blocks.peek();
    if (!skipHere) {
      const bp = this.execAt(lo, hi, block.phys);
      if (bp !== null) return this.stopHere(bp, lo, hi, block.phys);
    }
    return instructionsBefore(cpu, block, limit, this.isExecPoint);
  }

  access(lo: number, hi: number, size: number, write: boolean, pa: number): void {
    if (this.hit !== null) return;
    const a = lo >>> 0;
    let bp: Breakpoint | null = null;
    for (const r of this.dataLinear) {
      if ((write ? r.write : r.read) && r.hi === hi && a < r.loEnd && r.loStart < a + size) { bp = r.bp; break; }
    }
    if (bp === null) {
      for (const r of this.dataPhysical) {
        if ((write ? r.write : r.read) && pa < r.end && r.start < pa + size) { bp = r.bp; break; }
      }
    }
    if (bp === null) return;
    this.hit = { bp, access: { linear: (BigInt(hi >>> 0) << 32n) | BigInt(a), physical: pa, size, write } };
    this.onHit();
    // A data breakpoint is a trap: the instruction completes, then the run stops.
    this.cpu.stop({ kind: 'stop' });
  }
}

/** [address, address + length) as ranges that do not cross a 4-GiB boundary (bits 63:32 fixed in each). */
function linearRanges(bp: Breakpoint, address: bigint, length: number): ExecRange[] {
  const out: ExecRange[] = [];
  let at = BigInt.asUintN(64, address), left = BigInt(length);
  while (left > 0n) {
    const lo = Number(at & 0xffffffffn), n = Number(left < BigInt(2 ** 32 - lo) ? left : BigInt(2 ** 32 - lo));
    out.push({ bp, hi: Number(at >> 32n) | 0, loStart: lo, loEnd: lo + n });
    at = BigInt.asUintN(64, at + BigInt(n)); left -= BigInt(n);
  }
  return out;
}
