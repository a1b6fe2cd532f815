/**
 * Accesses the hypervisor makes for the guest's instruction — the memory side
 * of emulated INS (SDM vol. 2, INS; an I/O exit, vol. 3C 26.1.3) and the
 * device access of an MMIO instruction (an EPT violation, 29.3.3.2) — reach an
 * external debugger's data watch (Cpu.externalWatch) with their guest-linear
 * and guest-physical addresses, as the guest's own accesses do.
 */
import { describe, expect, it } from 'vitest';
import type { DataWatch } from '../cpu/mmu.js';
import { vmConfig } from './config.js';
import { createVm } from './vm.js';

const LOAD = 0x100000, BUFFER = LOAD + 0x800, APIC_VERSION = 0xfee00030;
const imm32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];

interface Access { linear: number; physical: number; size: number; write: boolean }

describe('accesses the hypervisor emulates (SDM vol. 3C 26.1.3 I/O exits, 29.3.3.2 EPT violations) are seen by an external data watch', () => {
  it('REP INSB writes each byte at its address; a MOV from the local APIC reads the register', () => {
    const code = [
      0xbf, ...imm32(BUFFER), // mov edi, BUFFER
      0xb9, ...imm32(4), // mov ecx, 4
      0xba, ...imm32(0x80), // mov edx, 80h
      0xf3, 0x6c, // rep insb
      0xa1, ...imm32(APIC_VERSION), // mov eax, [FEE00030h]
      0xf4, // hlt
    ];
    const vm = createVm(vmConfig({ memory: 32 << 20 }));
    vm.load(Uint8Array.from(code), { format: 'flat', mode: '32', load: LOAD });
    const seen: Access[] = [];
    const watch: DataWatch = {
      access: (lo, hi, size, write, pa) => { seen.push({ linear: hi * 2 ** 32 + (lo >>> 0), physical: pa, size, write }); },
    };
    vm.cpu.externalWatch = watch;
    const reasons: string[] = [];
    for (;;) {
      const e = vm.runUntilExit(10_000);
      if ('kind' in e) throw new Error(`stopped: ${JSON.stringify(e)}`);
      reasons.push(e.name);
      const r = vm.handle(e);
      if (r !== 'resume') { expect(r).toEqual({ kind: 'halt' }); break; }
      expect(vm.resume()).toBeNull();
    }
    expect(reasons).toContain('IO_INSTRUCTION');
    expect(reasons).toContain('EPT_VIOLATION');
    expect(seen).toEqual([
      ...[0, 1, 2, 3].map((k) => ({ linear: BUFFER + k, physical: BUFFER + k, size: 1, write: true })),
      { linear: APIC_VERSION, physical: APIC_VERSION, size: 4, write: false },
    ]);
  });
});
