/**
 * A test double for the GDB stub's tests: a {@link GdbTarget} with an
 * in-memory x86-64 register file and 64 KiB of memory at linear addresses
 * 0x0000-0xFFFF. It is not the model: it "executes" a handful of real x86-64
 * encodings, enough for deterministic runs that gdb disassembles the same way:
 *
 * | bytes | instruction | effect here |
 * |---|---|---|
 * | 90 | nop | |
 * | 48 ff c0 | inc rax | rax += 1 |
 * | eb rel8 | jmp short | RIP += 2 + rel8 |
 * | 88 07 | mov [rdi], al | write access at rdi |
 * | 8a 07 | mov al, [rdi] | read access at rdi |
 * | 0f a2 | cpuid | eax=ebx=ecx=edx=0; a `vm-exit` stop if `monitor stop-on-cpuid on` |
 * | f4 | hlt | the guest exits with status al |
 * | anything else | | shutdown (triple fault) |
 */
import { GDB_REGISTER, X86_64_REGISTERS } from './target-description.js';
import type { BreakpointKind, GdbTarget, RegisterFile, StopEvent } from './target.js';

/** Size of the fake's memory, mapped at linear address 0. */
export const FAKE_MEMORY_SIZE = 0x10000;
/** Where RIP starts. */
export const FAKE_ENTRY = 0x1000n;

interface Watchpoint {
  readonly kind: 'write' | 'read' | 'access';
  readonly address: bigint;
  readonly length: number;
}

/** A deterministic in-memory target for tests (see the file comment). */
export class FakeTarget implements GdbTarget {
  /** Guest memory at linear addresses 0..FAKE_MEMORY_SIZE-1. */
  readonly memory = new Uint8Array(FAKE_MEMORY_SIZE);
  /** Register values in target-description order. */
  readonly registers: bigint[] = X86_64_REGISTERS.map(() => 0n);
  /** Instructions executed so far. */
  instructions = 0;
  /** Number of resume calls (slices) so far. */
  resumeCalls = 0;
  /** Whether a CPUID stops the run as a VM exit. */
  stopOnCpuid = false;
  /** Set by kill() / detach(). */
  killed = false;
  detached = false;
  private readonly breakpoints = new Set<string>();
  private readonly watchpoints: Watchpoint[] = [];

  constructor(program: Uint8Array = new Uint8Array(0)) {
    this.memory.set(program, Number(FAKE_ENTRY));
    this.set('rip', FAKE_ENTRY);
    this.set('rsp', 0x8000n);
    this.set('eflags', 0x202n);
    this.set('cs', 0x10n);
    for (const name of ['ss', 'ds', 'es', 'fs', 'gs'] as const) this.set(name, 0x18n);
    this.set('fctrl', 0x37fn);
    this.set('mxcsr', 0x1f80n);
    this.set('cr0', 0x80000011n);
    this.set('cr3', 0x9000n);
    this.set('cr4', 0x20n);
    this.set('efer', 0x500n);
  }

  /** A register by name. */
  get(name: keyof typeof GDB_REGISTER): bigint {
    return this.registers[GDB_REGISTER[name]]!;
  }

  /** Sets a register by name (cut to its width). */
  set(name: keyof typeof GDB_REGISTER, value: bigint): void {
    const index = GDB_REGISTER[name];
    this.registers[index] = BigInt.asUintN(X86_64_REGISTERS[index]!.bitSize, value);
  }

  readRegisters(): RegisterFile {
    return this.registers.slice();
  }

  /** The x87 registers (24-39) are refused, as a model without an FPU would. */
  writeRegister(index: number, value: bigint): boolean {
    const info = X86_64_REGISTERS[index];
    if (info === undefined || (index >= GDB_REGISTER.st0 && index <= GDB_REGISTER.fop)) return false;
    this.registers[index] = BigInt.asUintN(info.bitSize, value);
    return true;
  }

  readMemory(address: bigint, length: number): Uint8Array | null {
    if (address < 0n || address >= BigInt(FAKE_MEMORY_SIZE)) return null;
    const start = Number(address);
    return this.memory.slice(start, Math.min(FAKE_MEMORY_SIZE, start + length));
  }

  writeMemory(address: bigint, bytes: Uint8Array): boolean {
    if (address < 0n || address + BigInt(bytes.length) > BigInt(FAKE_MEMORY_SIZE)) return false;
    this.memory.set(bytes, Number(address));
    return true;
  }

  step(): StopEvent {
    return this.execute() ?? { kind: 'step' };
  }

  resume(instructionLimit: number): StopEvent | null {
    this.resumeCalls++;
    for (let n = 0; n < instructionLimit; n++) {
      const rip = this.get('rip');
      if (this.breakpoints.has(`sw:${rip}`)) return { kind: 'breakpoint', type: 'sw', address: rip };
      if (this.breakpoints.has(`hw:${rip}`)) return { kind: 'breakpoint', type: 'hw', address: rip };
      const event = this.execute();
      if (event !== null) return event;
    }
    return null;
  }

  setBreakpoint(kind: BreakpointKind, address: bigint, length: number): boolean {
    if (kind === 'sw' || kind === 'hw') {
      if (length !== 1) return false;
      this.breakpoints.add(`${kind}:${address}`);
      return true;
    }
    if (length < 1 || length > 8) return false;
    this.watchpoints.push({ kind, address, length });
    return true;
  }

  removeBreakpoint(kind: BreakpointKind, address: bigint, length: number): boolean {
    if (kind === 'sw' || kind === 'hw') return this.breakpoints.delete(`${kind}:${address}`);
    const index = this.watchpoints.findIndex((w) => w.kind === kind && w.address === address && w.length === length);
    if (index < 0) return false;
    this.watchpoints.splice(index, 1);
    return true;
  }

  monitor(command: string): string {
    switch (command) {
      case 'hello': return 'Hello from the fake target\n';
      case 'count': return `${this.instructions} instructions\n`;
      case 'stop-on-cpuid on': this.stopOnCpuid = true; return '';
      case 'stop-on-cpuid off': this.stopOnCpuid = false; return '';
      default: return `unknown command: ${command}\n`;
    }
  }

  kill(): void {
    this.killed = true;
  }

  detach(): void {
    this.detached = true;
  }

  private byteAt(address: bigint): number | null {
    return address >= 0n && address < BigInt(FAKE_MEMORY_SIZE) ? this.memory[Number(address)]! : null;
  }

  private watchHit(address: bigint, access: 'write' | 'read'): StopEvent | null {
    for (const w of this.watchpoints) {
      if ((w.kind === access || w.kind === 'access') && address >= w.address && address < w.address + BigInt(w.length)) {
        return { kind: 'watchpoint', type: w.kind, address };
      }
    }
    return null;
  }

  /** Executes the instruction at RIP; returns the stop it causes, if any. */
  private execute(): StopEvent | null {
    const rip = this.get('rip');
    const op = this.byteAt(rip);
    const next = this.byteAt(rip + 1n);
    this.instructions++;
    const shutdown: StopEvent = { kind: 'shutdown', reason: `triple fault (#UD at 0x${rip.toString(16)}, no IDT)` };
    switch (op) {
      case 0x90:
        this.set('rip', rip + 1n);
        return null;
      case 0x48:
        if (next !== 0xff || this.byteAt(rip + 2n) !== 0xc0) return shutdown;
        this.set('rax', this.get('rax') + 1n);
        this.set('rip', rip + 3n);
        return null;
      case 0xeb:
        if (next === null) return shutdown;
        this.set('rip', rip + 2n + BigInt((next << 24) >> 24));
        return null;
      case 0x88:
      case 0x8a: {
        const rdi = this.get('rdi');
        if (next !== 0x07 || this.byteAt(rdi) === null) return shutdown;
        if (op === 0x88) this.memory[Number(rdi)] = Number(this.get('rax') & 0xffn);
        else this.set('rax', (this.get('rax') & ~0xffn) | BigInt(this.memory[Number(rdi)]!));
        this.set('rip', rip + 2n);
        return this.watchHit(rdi, op === 0x88 ? 'write' : 'read');
      }
      case 0x0f:
        if (next !== 0xa2) return shutdown;
        for (const name of ['rax', 'rbx', 'rcx', 'rdx'] as const) this.set(name, 0n);
        this.set('rip', rip + 2n);
        return this.stopOnCpuid ? { kind: 'vm-exit', reason: `VM exit: CPUID (exit reason 10) at 0x${rip.toString(16)}` } : null;
      case 0xf4:
        this.set('rip', rip + 1n);
        return { kind: 'exited', status: Number(this.get('rax') & 0xffn) };
      default:
        return shutdown;
    }
  }
}

/**
 * The program the stub's tests load at {@link FAKE_ENTRY} (0x1000):
 *
 * | address | bytes | instruction |
 * |---|---|---|
 * | 0x1000 | 48 ff c0 | inc rax |
 * | 0x1003 | 90 x 13 | nop |
 * | 0x1010 | 48 ff c0 | inc rax |
 * | 0x1013 | 0f a2 | cpuid |
 * | 0x1015 | 48 ff c0 | inc rax |
 * | 0x1018 | 88 07 | mov [rdi], al |
 * | 0x101a | 8a 07 | mov al, [rdi] |
 * | 0x101c | 48 ff c0 | inc rax |
 * | 0x101f | f4 | hlt |
 * | 0x1020 | eb fe | jmp 0x1020 (spins forever) |
 */
export const DEMO_PROGRAM: Uint8Array = Uint8Array.from([
  0x48, 0xff, 0xc0,
  ...new Array<number>(13).fill(0x90),
  0x48, 0xff, 0xc0,
  0x0f, 0xa2,
  0x48, 0xff, 0xc0,
  0x88, 0x07,
  0x8a, 0x07,
  0x48, 0xff, 0xc0,
  0xf4,
  0xeb, 0xfe,
]);
