import { describe, expect, it } from 'vitest';
import type { Block } from './blocks.js';
import { Cpu } from './cpu.js';
import { run } from './run.js';
import { runFragment, CODE_ADDRESS } from './testing.js';
import { RAX, RBX, RCX, RSP } from './regs.js';
import { instructionsBefore } from '../debug/breakpoints.js';
import { longModeCpu } from '../../spec-tests/paging/tables.js';

/** The blocks the cache holds. */
function blocksOf(cpu: Cpu): Block[] {
  return [...(cpu.blocks as unknown as { blocks: Map<number, Block> }).blocks.values()];
}

/**
 * Self-modifying code: a write to bytes that were decoded takes effect for the
 * next instruction fetched from them, even inside the block being executed
 * (SDM vol. 3A, 11.6 "Self-Modifying Code").
 */
describe('decoded-code cache and self-modifying code (SDM vol. 3A, 11.6)', () => {
  it('a store into the next instruction of the same block is seen by that instruction', () => {
    // mov byte [rip + 1], 0x2a ; patches the imm8 of the following "mov al, 0"
    // mov al, 0
    const code = [0xc6, 0x05, 0x01, 0x00, 0x00, 0x00, 0x2a, 0xb0, 0x00];
    const { cpu, stop } = runFragment(code);
    expect(stop.kind).toBe('halt');
    expect(cpu.gpr[2 * RAX]! & 0xff).toBe(0x2a);
  });

  it('a compiled loop that rewrites its own immediate runs as the interpreter does', () => {
    // mov ecx, 100
    // L: add eax, 0x01        ; 83 c0 ib at 0x1005: its imm8 at 0x1007 is the patched byte
    //    inc byte [rip - 7]   ; fe 05 disp32 at 0x1008, next 0x100e: 0x100e - 7 = 0x1007
    //    dec ecx
    //    jnz L                ; rel8 -13
    const body = [0x83, 0xc0, 0x01, 0xfe, 0x05, 0xf9, 0xff, 0xff, 0xff, 0xff, 0xc9, 0x75, 0xf3];
    const code = [0xb9, 100, 0, 0, 0, ...body];
    const interpreted = runFragment(code, { setup: (c) => { c.compileThreshold = Infinity; } });
    const compiled = runFragment(code, { setup: (c) => { c.compileThreshold = 2; } });
    // The imm8 goes 1, 2, ..., 100: EAX = 5050.
    expect(interpreted.cpu.gpr[2 * RAX]).toBe(5050);
    expect(compiled.cpu.gpr[2 * RAX]).toBe(5050);
    expect(compiled.cpu.insnCount).toBe(interpreted.cpu.insnCount);
  });

  it('a compiled instruction that writes decoded bytes completes before its block stops', () => {
    // L: push rax; pop rax; add [rbx], eax; dec ecx; jnz L with RSP and RBX inside the loop's own
    // 64-byte chunk, past its last byte: the PUSH and the ADD each drop the block and end it after
    // themselves. The PUSH must still move RSP, and the ADD record its flags: its last addition
    // carries (the dword ends at 0), and DEC keeps CF (SDM vol. 2, DEC).
    const body = [0x50, 0x58, 0x01, 0x03, 0xff, 0xc9, 0x75, 0xf6];
    const code = [0xb9, 50, 0, 0, 0, ...body];
    const regs = { [RAX]: 1n, [RBX]: BigInt(CODE_ADDRESS + 0x30), [RSP]: BigInt(CODE_ADDRESS + 0x28) };
    const setup = (threshold: number) => (c: Cpu): void => {
      c.compileThreshold = threshold;
      c.memory.load(CODE_ADDRESS + 0x30, Uint8Array.of(0xce, 0xff, 0xff, 0xff)); // -50
    };
    const interpreted = runFragment(code, { regs, setup: setup(Infinity) });
    // Each write drops the block: only a threshold of 1 runs the loop compiled.
    const compiled = runFragment(code, { regs, setup: setup(1) });
    expect(interpreted.stop.kind).toBe('halt');
    expect(interpreted.cpu.rflags & 1).toBe(1);
    expect(compiled.stop).toEqual(interpreted.stop);
    expect(Array.from(compiled.cpu.gpr)).toEqual(Array.from(interpreted.cpu.gpr));
    expect(compiled.cpu.rflags).toBe(interpreted.cpu.rflags);
    expect(compiled.cpu.memory.read8(CODE_ADDRESS + 0x30)).toBe(0);
  });

  it('a store to data beside the code, outside its 64-byte chunks, keeps the decoded blocks', () => {
    // mov ecx, 1000; L: mov [rip + 0x200], ecx; dec ecx; jnz L  — the data lies in the same page.
    const code = [0xb9, 0xe8, 0x03, 0, 0, 0x89, 0x0d, 0x00, 0x02, 0, 0, 0xff, 0xc9, 0x75, 0xf6];
    const { cpu, stop } = runFragment(code, { setup: (c) => { c.compileThreshold = 2; } });
    expect(stop.kind).toBe('halt');
    expect(cpu.memory.dump(CODE_ADDRESS + 11 + 0x200, 4)).toEqual(Uint8Array.of(1, 0, 0, 0));
    expect(cpu.gpr[2 * RCX]).toBe(0);
    // Two blocks, the entry's and the loop's, both through JNZ to HLT: nothing was dropped and rebuilt per iteration.
    expect(cpu.blocks.size).toBe(2);
  });

  it('a conditional branch goes on in its block when not taken and leaves it when taken, compiled or not', () => {
    // mov ecx, 10 ; L: test cl, 1 ; jz even ; inc eax ; even: dec ecx ; jnz L ; (hlt)
    const code = [0xb9, 10, 0, 0, 0, 0xf6, 0xc1, 0x01, 0x74, 0x02, 0xff, 0xc0, 0xff, 0xc9, 0x75, 0xf5];
    const interpreted = runFragment(code, { setup: (c) => { c.compileThreshold = Infinity; } });
    const compiled = runFragment(code, { setup: (c) => { c.compileThreshold = 1; } });
    for (const r of [interpreted, compiled]) {
      expect(r.stop.kind).toBe('halt');
      expect(r.cpu.gpr[2 * RAX]).toBe(5); // the odd values of ECX, 9 7 5 3 1
      expect(r.cpu.insnCount).toBe(1 + 10 * 4 + 5 + 1);
      // No block ends at the JZ or the JNZ: each goes on to the HLT.
      expect(r.cpu.blocks.size).toBeGreaterThanOrEqual(3);
      for (const b of blocksOf(r.cpu)) expect(b.insns.at(-1)!.def.name).toBe('hlt');
    }
    expect(compiled.cpu.rflags).toBe(interpreted.cpu.rflags);
  });

  it('an instruction straddling a page boundary is invalidated by a write to its second page', () => {
    const cpu = new Cpu({ memorySize: 1 << 20 });
    cpu.enterFlat64();
    // At 0x1ffb: mov eax, imm32 (b8 + 4 bytes) ends at 0x2000; its last imm byte is at 0x1fff.
    // Put "mov eax, 0x11223344" at 0x1ffd so that bytes 0x2000.. hold the imm's high part, then HLT.
    const at = 0x1ffd;
    cpu.memory.load(at, Uint8Array.of(0xb8, 0x44, 0x33, 0x22, 0x11, 0xf4));
    cpu.ripLo = at;
    expect(run(cpu, 100).kind).toBe('halt');
    expect(cpu.gpr[2 * RAX]).toBe(0x11223344);
    // Rewrite the high imm byte on the second page through the processor's own store path.
    cpu.mmu.write8(0x2001, 0, 0x77);
    cpu.ripLo = at;
    cpu.halted = false; // leave the HLT state, as an interrupt would
    expect(run(cpu, 100).kind).toBe('halt');
    expect(cpu.gpr[2 * RAX]).toBe(0x77223344);
  });
});

/**
 * Links: in 64-bit mode a block goes on at the target of a direct CALL or JMP
 * and at a RET's to a CALL in the block (blocks.ts). Whatever the guest does,
 * it must run as if each instruction were fetched where RIP points then.
 */
describe('blocks that follow CALL, JMP and RET', () => {
  const rel32 = (v: number): number[] => [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff];
  /** mov ecx, 20; L: call F; <between>; dec ecx; jnz L; hlt; F: <callee>; ret, at 0x1000. */
  function callLoop(between: number[], callee: number[]): number[] {
    const afterCall = [...between, 0xff, 0xc9], jnz = -(5 + afterCall.length + 2);
    return [0xb9, 20, 0, 0, 0, 0xe8, ...rel32(afterCall.length + 2 + 1), ...afterCall, 0x75, jnz & 0xff, 0xf4, ...callee, 0xc3];
  }
  const names = (b: Block): string => b.insns.map((i) => i.def.name).join(' ');

  it('the callee and the return are part of the caller\'s block, and interpreted and compiled runs agree', () => {
    // between: add eax, ebx; callee: inc ebx. EBX counts the calls; EAX sums 1..20.
    const code = callLoop([0x01, 0xd8], [0xff, 0xc3]);
    const interpreted = runFragment(code, { setup: (c) => { c.compileThreshold = Infinity; } });
    for (const threshold of [1, 2, 32]) {
      const compiled = runFragment(code, { setup: (c) => { c.compileThreshold = threshold; } });
      expect(compiled.stop.kind).toBe('halt');
      expect(compiled.cpu.gpr[2 * RAX]).toBe(210);
      expect(compiled.cpu.gpr[2 * RBX]).toBe(20);
      expect(compiled.cpu.insnCount).toBe(1 + 20 * 6 + 1);
      expect(Array.from(compiled.cpu.gpr)).toEqual(Array.from(interpreted.cpu.gpr));
      expect(compiled.cpu.rflags).toBe(interpreted.cpu.rflags);
      expect(blocksOf(compiled.cpu).map(names)).toContain('call inc ret add dec j hlt');
    }
  });

  it('a RET to elsewhere than after its CALL leaves the block at the address it returned to', () => {
    // between: inc eax (2 bytes), skipped: the callee adds 2 to its return address (add qword [rsp], 2).
    const code = callLoop([0xff, 0xc0], [0x48, 0x83, 0x04, 0x24, 0x02]);
    for (const threshold of [Infinity, 1, 2]) {
      const { cpu, stop } = runFragment(code, { setup: (c) => { c.compileThreshold = threshold; } });
      expect(stop.kind).toBe('halt');
      expect(cpu.gpr[2 * RAX]).toBe(0);
      expect(cpu.gpr[2 * RCX]).toBe(0);
      expect(cpu.insnCount).toBe(1 + 20 * 5 + 1);
    }
  });

  it('a JMP forward is followed; one back into its block ends the block (no unrolled loops)', () => {
    // jmp +1; (int3); inc eax; dec ecx; jnz back to the jmp, with ECX = 10.
    const code = [0xb9, 10, 0, 0, 0, 0xeb, 0x01, 0xcc, 0xff, 0xc0, 0xff, 0xc9, 0x75, 0xf7];
    const { cpu, stop } = runFragment(code, { setup: (c) => { c.compileThreshold = 1; } });
    expect(stop.kind).toBe('halt');
    expect(cpu.gpr[2 * RAX]).toBe(10);
    expect(blocksOf(cpu).map(names)).toContain('jmp inc dec j hlt');
    // jmp $: the block holds the jump alone, however often it runs.
    const self = runFragment([0xeb, 0xfe], { budget: 100, setup: (c) => { c.compileThreshold = 1; } });
    expect(self.stop.kind).toBe('budget');
    expect(blocksOf(self.cpu).map(names)).toEqual(['jmp']);
  });

  it('a conditional branch backwards is followed when taken and leaves the block when not', () => {
    // mov ecx, 5; jmp M; L: inc eax; M: dec ecx; jnz L — the block at M goes on at L.
    const code = [0xb9, 5, 0, 0, 0, 0xeb, 0x02, 0xff, 0xc0, 0xff, 0xc9, 0x75, 0xfa];
    for (const threshold of [Infinity, 1, 2]) {
      const { cpu, stop } = runFragment(code, { setup: (c) => { c.compileThreshold = threshold; } });
      expect(stop.kind).toBe('halt');
      expect(cpu.gpr[2 * RAX]).toBe(4);
      expect(cpu.gpr[2 * RCX]).toBe(0);
      expect(cpu.insnCount).toBe(2 + 5 * 2 + 4 + 1);
      expect(blocksOf(cpu).map(names)).toContain('mov jmp dec j inc dec j hlt');
    }
  });

  it('a callee on another page: a write to its bytes drops the caller\'s block (SDM vol. 3A, 11.6)', () => {
    // The caller at 1000H calls F at 3000H: mov eax, 1; ret. Then the processor stores 2 over the immediate.
    const cpu = new Cpu({ memorySize: 1 << 20 });
    cpu.enterFlat64();
    cpu.compileThreshold = 2;
    cpu.memory.load(0x1000, Uint8Array.of(0xb9, 20, 0, 0, 0, 0xe8, ...rel32(0x3000 - 0x100a), 0xff, 0xc9, 0x75, 0xf7, 0xf4));
    cpu.memory.load(0x3000, Uint8Array.of(0xb8, 1, 0, 0, 0, 0xc3));
    cpu.gpr[2 * RSP] = 0x8000;
    const again = (): void => { cpu.ripLo = 0x1000; cpu.halted = false; expect(run(cpu, 1000).kind).toBe('halt'); };
    again();
    expect(cpu.gpr[2 * RAX]).toBe(1);
    expect(blocksOf(cpu).some((b) => b.ppns.length === 2 && names(b) === 'call mov ret dec j hlt')).toBe(true);
    cpu.mmu.write8(0x3001, 0, 2);
    again();
    expect(cpu.gpr[2 * RAX]).toBe(2);
  });

  it('a callee whose page is mapped elsewhere after INVLPG runs from its new page (SDM vol. 3A, 4.10.4.1)', () => {
    // Linear 40_0000H maps to physical 5000H (mov eax, 1; ret), then to 6000H (mov eax, 2; ret).
    const F = 0x40_0000;
    const { cpu, t } = longModeCpu((tt) => { tt.identity(0x10_0000); tt.map(BigInt(F), 0x5000); });
    cpu.compileThreshold = 2;
    cpu.memory.load(0x1000, Uint8Array.of(0xb9, 20, 0, 0, 0, 0xe8, ...rel32(F - 0x100a), 0xff, 0xc9, 0x75, 0xf7, 0xf4));
    cpu.memory.load(0x5000, Uint8Array.of(0xb8, 1, 0, 0, 0, 0xc3));
    cpu.memory.load(0x6000, Uint8Array.of(0xb8, 2, 0, 0, 0, 0xc3));
    cpu.gpr[2 * RSP] = 0x8000;
    const again = (): void => { cpu.ripLo = 0x1000; cpu.halted = false; expect(run(cpu, 1000).kind).toBe('halt'); };
    again();
    expect(cpu.gpr[2 * RAX]).toBe(1);
    expect(blocksOf(cpu).some((b) => names(b) === 'call mov ret dec j hlt')).toBe(true);
    t.map(BigInt(F), 0x6000);
    cpu.paging.invlpg(F, 0);
    again();
    expect(cpu.gpr[2 * RAX]).toBe(2);
  });

  it('the debugger finds an address breakpoint inside a followed callee by its linear and physical address', () => {
    const code = callLoop([0x01, 0xd8], [0xff, 0xc3]);
    const { cpu } = runFragment(code, { budget: 1 + 6 * 3, setup: (c) => { c.compileThreshold = 2; } });
    const callAt = CODE_ADDRESS + 5, calleeAt = CODE_ADDRESS + code.length - 3;
    expect(cpu.ripLo).toBe(callAt);
    const block = cpu.blocks.peek();
    expect(names(block)).toBe('call inc ret add dec j hlt');
    expect(instructionsBefore(cpu, block, 100, (lo, hi, phys) => lo === calleeAt && hi === 0 && phys === calleeAt)).toBe(1);
    expect(instructionsBefore(cpu, block, 100, (lo) => lo === callAt + 5)).toBe(3);
  });
});

describe('internal errors (DESIGN: Errors)', () => {
  it('a broken invariant stops the run with the guest RIP and state, not a bare exception', async () => {
    const { InternalError } = await import('./run.js');
    const cpu = new Cpu({ memorySize: 1 << 20 });
    cpu.enterFlat64();
    cpu.memory.load(0x1000, Uint8Array.of(0x90, 0xf4));
    cpu.ripLo = 0x1000;
    cpu.interrupts = { hasInterrupt: () => { throw new Error('broken controller'); }, acknowledge: () => 0 };
    cpu.rflags = 0x202;
    let caught: unknown;
    try { run(cpu, 10); } catch (e) { caught = e; }
    expect(caught).toBeInstanceOf(InternalError);
    expect((caught as Error).message).toBe('internal error at rip=0x1000: Error: broken controller');
    expect((caught as InstanceType<typeof InternalError>).state).toMatch(/^rax=0 rcx=0 .* insns=0$/);
  });
});
