/**
 * The instruction loop. Executes cached blocks instruction by instruction,
 * retiring exactly the requested number of instructions, and checks one
 * pending-work word at each instruction boundary.
 */
import { followsLink, NO_LINK, type Block } from './blocks.js';
import type { Insn } from './insn.js';
import { insnClass } from './insn-class.js';
import { EXTERNAL_BREAK, FAULT, Pending, type Cpu, type InterruptSource, type StopReason } from './cpu.js';
import { deliverException, deliverInterrupt, deliverNmi, takeDebugStatus } from './interrupts.js';
import { compileBlock } from './jit/compile.js';
import { GPR_NAMES, IF, RF, TF, Vector } from './regs.js';
import { jumpRelative } from './operands.js';
import { init, startup } from './reset.js';
import { insnsWithinCodeLimit } from './segment-limits.js';

/** DR6.BS: the #DB came from single-stepping (SDM vol. 3B, 18.2.3). */
const DR6_BS = 1 << 14;

/** An internal invariant broke: the model stops with the guest state around it. */
export class InternalError extends Error {
  constructor(message: string, override readonly cause: unknown, readonly state: string) { super(message); }
}

/** The registers, for an internal error's report. */
function describeState(cpu: Cpu): string {
  const regs = GPR_NAMES.map((n, k) => `${n}=${cpu.reg64(k).toString(16)}`).join(' ');
  return `${regs} rflags=${(cpu.rflags >>> 0).toString(16)} cs=${cpu.segSel[1]!.toString(16)} cpl=${cpu.cpl} ` +
    `cr0=${(cpu.cr0 >>> 0).toString(16)} cr3=${(cpu.cr3Lo >>> 0).toString(16)} cr4=${(cpu.cr4 >>> 0).toString(16)} insns=${cpu.insnCount}`;
}

/** Advances RIP past an instruction of `len` bytes in code of `mode` bytes. */
function advance(cpu: Cpu, mode: number, len: number): void {
  if (mode === 8) {
    const s = (cpu.ripLo >>> 0) + len;
    cpu.ripLo = s | 0;
    if (s > 0xffffffff) cpu.ripHi = (cpu.ripHi + 1) | 0;
  } else {
    cpu.ripLo = mode === 4 ? (cpu.ripLo + len) | 0 : (cpu.ripLo + len) & 0xffff;
  }
}

/** execBlock's result when an instruction raised (the exception or VM exit is in the cpu's exc fields). */
const FAULTED = -1;

/**
 * Executes up to `limit` instructions of `block` from its first. RIP is the
 * block's address on entry. Returns the number retired, or FAULTED with RIP at
 * the faulting instruction (after it, for a trap) and the retired ones counted.
 */
function execBlock(cpu: Cpu, block: Block, limit: number): number {
  const insns = block.insns, mode = block.mode;
  let n = insns.length < limit ? insns.length : limit;
  if (mode !== 8 && n > 0) {
    // The block may have been decoded under another CS: run only what lies within this one's limit (5.3).
    n = insnsWithinCodeLimit(cpu, block, cpu.ripLo, n);
    if (n === 0) cpu.raise(Vector.GP, 0);
  }
  // Compiled code computes RIPs inside the block without a carry into or borrow from bits 63:32.
  const rl = cpu.ripLo, rh = cpu.ripHi;
  if (block.compiled !== null && n === insns.length &&
      (mode !== 8 || ((rl >>> 0) + block.length <= 0xffffffff && (rl >>> 0) + block.lowest >= 0))) {
    return execCompiled(cpu, block);
  }
  const links = block.links;
  let k = 0;
  for (; k < n; k++) {
    const i = insns[k]!;
    const lo = cpu.ripLo, hi = cpu.ripHi;
    cpu.blockIndex = k;
    advance(cpu, mode, i.len);
    const nextLo = cpu.ripLo;
    try {
      i.exec(cpu, i);
    } catch (e) {
      if (e !== FAULT) throw e;
      if (!cpu.excTrap) { cpu.ripLo = lo; cpu.ripHi = hi; }
      retire(cpu, block, cpu.excTrap ? k + 1 : k);
      cpu.blockIndex = 0;
      return FAULTED;
    }
    // A conditional branch taken leaves the block (a relative jump changes bits 31:0 of RIP unless by 4 GiB),
    // and so does a link that goes elsewhere than decoded (blocks.ts followsLink): a back edge not taken.
    if (cpu.pending !== 0 || (links[k] !== NO_LINK ? !followsLink(cpu, block, k, rl, rh)
      : i.def.exits === true && cpu.ripLo !== nextLo)) { k++; break; }
  }
  retire(cpu, block, k);
  cpu.blockIndex = 0;
  return k;
}

/** The first k instructions of `block` retired: counted, and by class when the cost model asks. */
function retire(cpu: Cpu, block: Block, k: number): void {
  cpu.insnCount += k;
  const c = cpu.classCounts;
  if (c !== null) {
    const p = block.classes, at = 4 * k;
    c[0] += p[at]!; c[1] += p[at + 1]!; c[2] += p[at + 2]!; c[3] += p[at + 3]!;
  }
}

function execCompiled(cpu: Cpu, block: Block): number {
  const lo = cpu.ripLo, hi = cpu.ripHi;
  let k: number;
  try {
    k = block.compiled!(cpu);
    cpu.blockIndex = 0;
  } catch (e) {
    if (e !== FAULT) throw e;
    const j = cpu.blockIndex;
    const off = block.offsets[j]! + (cpu.excTrap ? block.insns[j]!.len : 0);
    cpu.ripLo = block.mode === 2 ? (lo + off) & 0xffff : (lo + off) | 0;
    cpu.ripHi = hi;
    retire(cpu, block, cpu.excTrap ? j + 1 : j);
    cpu.blockIndex = 0;
    return FAULTED;
  }
  retire(cpu, block, k);
  return k;
}

/**
 * Takes a waiting external interrupt at this instruction boundary if RFLAGS.IF
 * allows it and no STI/MOV SS shadow blocks it (SDM vol. 3A, 6.8.1, 6.8.3).
 * Returns how many instructions may run before looking again.
 */
function acceptInterrupt(cpu: Cpu, limit: number): number {
  if (cpu.nonRoot) return cpu.virt.acceptEvents(cpu, limit);
  const source = cpu.interrupts;
  if (source === null) return limit;
  if (cpu.startupPending) acceptStartup(cpu, source);
  if (cpu.waitForSipi) return limit;
  const nmi = !cpu.nmiBlocked && source.hasNmi !== undefined && source.hasNmi();
  if (!nmi && ((cpu.flags & IF) === 0 || !source.hasInterrupt())) return limit;
  if (cpu.insnCount < cpu.interruptShadowEnd) return Math.min(limit, cpu.interruptShadowEnd - cpu.insnCount);
  if (nmi) {
    // An NMI comes before a maskable interrupt and blocks further NMIs until IRET (6.7.1, 6.9).
    source.takeNmi!();
    cpu.nmiBlocked = true;
    deliverNmi(cpu);
  } else {
    deliverInterrupt(cpu, source.acknowledge());
  }
  return limit;
}

/**
 * INIT, then a start-up IPI, in the order they take effect: an INIT puts an
 * application processor into wait-for-SIPI, where a SIPI that came with it starts it.
 */
function acceptStartup(cpu: Cpu, source: InterruptSource): void {
  cpu.startupPending = false;
  // INIT is held pending while it is blocked (VMX root operation, SDM vol. 3C, 24.8).
  if (!cpu.initBlocked && source.takeInit?.()) init(cpu);
  const vector = source.takeSipi?.() ?? -1;
  if (vector >= 0) startup(cpu, vector);
}

/**
 * An instruction breakpoint is a fault: #DB before the instruction at a DRn
 * address with R/W = 00, unless RFLAGS.RF is set (SDM vol. 3B, 18.3.1.1).
 */
function checkInstructionBreakpoints(cpu: Cpu): void {
  if (cpu.flags & RF) return;
  let lo = cpu.ripLo, hi = cpu.ripHi;
  if (cpu.codeSize !== 8) { lo = (lo + cpu.segBase[2]!) | 0; hi = 0; }
  let hits = 0;
  for (let n = 0; n < 4; n++) {
    if ((cpu.breakOnExecute >> n) & 1 && cpu.dr[2 * n] === lo && cpu.dr[2 * n + 1] === hi) hits |= 1 << n;
  }
  if (hits === 0) return;
  cpu.excDr6 |= hits;
  cpu.raise(Vector.DB);
}

/**
 * The run loop's look at execution breakpoints, made only while any is armed:
 * the guest's own (DR0-DR3, one instruction at a time), then an external
 * debugger's (Cpu.executionHook). Returns how many instructions may run.
 */
function executionBreakpoints(cpu: Cpu, limit: number): number {
  const armed = cpu.breakOnExecute;
  if ((armed & 0xf) !== 0) {
    limit = 1;
    checkInstructionBreakpoints(cpu);
  }
  const hook = cpu.executionHook;
  return (armed & EXTERNAL_BREAK) !== 0 && hook !== null ? hook.allow(cpu, limit) : limit;
}

function internalError(cpu: Cpu, e: unknown): InternalError {
  return new InternalError(`internal error at rip=0x${cpu.rip.toString(16)}: ${String(e)}`, e, describeState(cpu));
}

/** Takes back instruction `i`, just executed: RIP to its start, not retired (Pending.VM_EXIT). */
function unretire(cpu: Cpu, i: Insn): void {
  jumpRelative(cpu, cpu.codeSize, -cpu.virt.exitingLength());
  cpu.insnCount--;
  if (cpu.classCounts !== null) cpu.classCounts[insnClass(i)]--;
}

/**
 * An instruction or event raised: delivers the exception or completes the VM
 * exit. False when the run stops there instead (a raw processor without delivery).
 */
function onFault(cpu: Cpu): boolean {
  if (!cpu.vmExit && !cpu.deliverExceptions) {
    if (cpu.excVector === Vector.DB) takeDebugStatus(cpu);
    cpu.stopReason = { kind: 'exception', vector: cpu.excVector, errorCode: cpu.excHasCode ? cpu.excCode : null };
    return false;
  }
  afterFault(cpu);
  return true;
}

/**
 * Delivers the exception just raised, or completes the VM exit that an
 * instruction or the delivery itself caused (SDM vol. 3C, 26.2).
 */
function afterFault(cpu: Cpu): void {
  if (!cpu.vmExit) {
    try {
      deliverException(cpu);
      return;
    } catch (e) {
      if (e !== FAULT || !cpu.vmExit) throw internalError(cpu, e);
    }
  }
  cpu.virt.completeExit(cpu);
}

/** Runs until `budget` more instructions have retired or something stops the run. */
export function run(cpu: Cpu, budget: number): StopReason {
  const end = cpu.insnCount + budget;
  cpu.pending &= ~Pending.STOP;
  // Events delivered without an instruction retiring (a handler that faults on its
  // first instruction loops forever on hardware) count against the budget too.
  let stalled = 0;
  while (cpu.insnCount < end) {
    if (stalled > budget) break;
    const before = cpu.insnCount;
    try {
      cpu.excTrap = false;
      // A processor with no interrupt source and outside non-root operation has no events to take.
      let limit = cpu.interrupts !== null || cpu.nonRoot ? acceptInterrupt(cpu, end - cpu.insnCount) : end - cpu.insnCount;
      if (cpu.halted || cpu.waitForSipi) { cpu.stopReason = { kind: 'halt' }; return cpu.stopReason; }
      // RFLAGS.TF at the start of an instruction: a #DB trap after it (SDM vol. 3B, 18.3.1.4).
      const singleStep = (cpu.flags & TF) !== 0 && cpu.insnCount >= cpu.interruptShadowEnd;
      if (singleStep) limit = 1;
      if (cpu.breakOnExecute !== 0) {
        limit = executionBreakpoints(cpu, limit);
        // An external debugger stops in front of this instruction (nothing of it has run).
        if (limit === 0) { cpu.stopReason = { kind: 'stop' }; return cpu.stopReason; }
      }
      let block = cpu.blocks.lookup();
      if (++block.entries === cpu.compileThreshold) {
        block = cpu.blocks.rebuild(block);
        block.compiled = compileBlock(block);
      }
      // A fault returns here rather than unwinding further: exceptions and VM exits are frequent.
      const executed = execBlock(cpu, block, limit);
      if (executed === FAULTED) {
        if (!onFault(cpu)) return cpu.stopReason;
      } else if ((cpu.pending & Pending.VM_EXIT) !== 0) {
        // The last instruction became a VM exit without unwinding: it did not retire.
        cpu.pending &= ~Pending.VM_EXIT;
        unretire(cpu, block.insns[executed - 1]!);
        afterFault(cpu);
      } else {
        // RF suppresses instruction breakpoints for one instruction (18.3.1.1).
        if (cpu.flags & RF) cpu.flags &= ~RF;
        if (cpu.dataBreakHits !== 0) {
          // Data breakpoints are traps: #DB after the instruction that touched the data (18.3.1.2).
          cpu.excDr6 |= cpu.dataBreakHits;
          cpu.dataBreakHits = 0;
          cpu.raiseTrap(Vector.DB, 0);
        }
        if (singleStep) {
          cpu.excDr6 |= DR6_BS;
          cpu.raiseTrap(Vector.DB, 0);
        }
      }
    } catch (e) {
      if (e !== FAULT) throw internalError(cpu, e);
      if (!onFault(cpu)) return cpu.stopReason;
    }
    stalled = cpu.insnCount === before ? stalled + 1 : 0;
    if (cpu.pending !== 0) {
      const p = cpu.pending;
      cpu.pending = 0;
      if (p & Pending.STOP) return cpu.stopReason;
    }
  }
  cpu.stopReason = { kind: 'budget' };
  return cpu.stopReason;
}
