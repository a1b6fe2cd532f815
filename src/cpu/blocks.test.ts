import { describe, expect, it } from 'vitest';
import type { Block } from './blocks.js';
import { Cpu } from './cpu.js';
import { run } from './run.js';
import { runFragment, CODE_ADDRESS } from './testing.js';
import { RAX, RBX, RCX, RSP } from './regs.js';

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
