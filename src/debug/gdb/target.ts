/**
 * What the GDB remote stub drives: one guest processor that can be stopped,
 * inspected and resumed. The real implementation sits over an hvsim VM; tests
 * use fake-target.ts.
 *
 * Everything here is synchronous: the model runs in the same process as the
 * stub. A long `continue` is not one call but a series of
 * {@link GdbTarget.resume} calls, each running at most a slice of
 * instructions; between two slices the stub gives the event loop a turn, so
 * the Ctrl-C byte (0x03) that gdb sends can be read. Once it has arrived the
 * stub stops calling `resume` and reports SIGINT. A slice ends on an
 * instruction boundary, so a run cut into slices is the same run, instruction
 * for instruction, as one uninterrupted run.
 */

/**
 * Register values in the order of the target description
 * (`X86_64_REGISTERS` in target-description.ts): element n is register n.
 * Each value is an unsigned bigint of the register's width (64 bits for rax,
 * 32 for eflags, 80 for st0, 128 for xmm0); the stub keeps only that many low
 * bits. Registers the model does not hold (the x87 stack and control
 * registers in hvsim) read as 0.
 */
export type RegisterFile = readonly bigint[];

/**
 * Breakpoint and watchpoint kinds, as the `Z`/`z` packet types 0-4 name them:
 * software breakpoint, hardware breakpoint, write, read and access watchpoint.
 */
export type BreakpointKind = 'sw' | 'hw' | 'write' | 'read' | 'access';

/**
 * Why the guest stopped (or ended). The stub turns each into a stop reply.
 *
 * - `breakpoint`: RIP reached `address`, where a breakpoint of `type` is set;
 *   the instruction there has NOT executed and RIP equals `address` (the stub
 *   reports `swbreak`/`hwbreak`, so gdb adjusts nothing).
 * - `watchpoint`: the instruction just executed accessed `address`, inside a
 *   watchpoint of `type`; RIP is past that instruction (a trap, like an x86
 *   data breakpoint).
 * - `step`: the one instruction of {@link GdbTarget.step} completed.
 * - `vm-exit`: a VM exit the user asked to stop on happened; `reason` is
 *   text for the user (e.g. "VM exit: CPUID (exit reason 10)"). gdb sees a
 *   SIGTRAP stop; the stub prints `reason` on gdb's console and
 *   `monitor stop-reason` repeats it.
 * - `exited`: the guest ended the run itself (e.g. through the debug-exit
 *   port) with `status` (0-255).
 * - `shutdown`: the guest was shut down (triple fault, a VMX abort); gdb sees
 *   the process killed by SIGKILL and the stub prints `reason`.
 * - `interrupted`: the run was stopped from outside (Ctrl-C in gdb, or the
 *   target's own stop request); gdb sees SIGINT.
 */
export type StopEvent =
  | { readonly kind: 'breakpoint'; readonly type: 'sw' | 'hw'; readonly address: bigint }
  | { readonly kind: 'watchpoint'; readonly type: 'write' | 'read' | 'access'; readonly address: bigint }
  | { readonly kind: 'step' }
  | { readonly kind: 'vm-exit'; readonly reason: string }
  | { readonly kind: 'exited'; readonly status: number }
  | { readonly kind: 'shutdown'; readonly reason: string }
  | { readonly kind: 'interrupted' };

/** The guest processor as the GDB stub sees it. All methods are synchronous. */
export interface GdbTarget {
  /** All registers, in target-description order (see {@link RegisterFile}). */
  readRegisters(): RegisterFile;
  /**
   * Writes register `index` (target-description order) with `value`, already
   * cut to the register's width. Returns false if the register cannot take
   * the value (the stub answers gdb with an error).
   */
  writeRegister(index: number, value: bigint): boolean;
  /**
   * Reads guest linear memory. Returns the bytes from `address` on, at most
   * `length` of them: fewer when the range runs into an unmapped page, and
   * null when `address` itself is unmapped.
   */
  readMemory(address: bigint, length: number): Uint8Array | null;
  /** Writes guest linear memory; false (and nothing written) if any byte is unmapped. */
  writeMemory(address: bigint, bytes: Uint8Array): boolean;
  /**
   * Executes exactly one guest instruction (breakpoints at the current RIP do
   * not hit first; gdb removes them before it steps) and tells why it stopped:
   * normally `step`, or a watchpoint, exit, shutdown or VM exit that the
   * instruction caused.
   */
  step(): StopEvent;
  /**
   * Runs the guest for at most `instructionLimit` instructions. Returns the
   * event that stopped it, or null when the limit ran out first, in which case
   * the guest stands at an instruction boundary and the stub calls `resume`
   * again after giving the event loop a turn. A breakpoint at the RIP the call
   * starts at hits before anything executes (gdb steps over its own
   * breakpoints before it continues).
   */
  resume(instructionLimit: number): StopEvent | null;
  /**
   * Sets a breakpoint (`sw`, `hw`: `length` is gdb's kind, 1 on x86) or a
   * watchpoint over `length` bytes at `address`. Returns false if it cannot
   * be set (no debug register left, bad length).
   */
  setBreakpoint(kind: BreakpointKind, address: bigint, length: number): boolean;
  /** Removes what {@link GdbTarget.setBreakpoint} set; false if there was no such one. */
  removeBreakpoint(kind: BreakpointKind, address: bigint, length: number): boolean;
  /**
   * Runs a `monitor` command and returns its text output ("" for none). The
   * stub answers `monitor stop-reason` itself; every other command comes here.
   */
  monitor(command: string): string;
  /** gdb killed the guest (`kill`): the session ends. */
  kill(): void;
  /** gdb detached: the session ends and the guest is left as it is. */
  detach(): void;
}
