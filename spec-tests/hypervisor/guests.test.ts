/**
 * Every bare-metal guest of guests/ run twice through `hvsim run`: on the bare
 * processor (--bare) and under the hypervisor in VMX non-root operation, with
 * the default configuration (EPT, VPID, unrestricted guest, HLT and I/O
 * exiting, MSR bitmaps). The guest cannot tell: same serial output, same exit
 * status, and the same number of guest instructions (handlers count the
 * instructions they emulate, so guest time runs alike).
 *
 * vmx-basic and vmx-ept are hypervisors themselves: the hypervisor hides VMX
 * from its guest (nested virtualization is a later issue), and they say so.
 * smp runs with its one virtual processor.
 */
import { describe, expect, it } from 'vitest';
import { bundledGuest, main } from '../../src/cli/hvsim.js';
import { GUESTS } from './bundled-guests.js';

interface Run { status: number; serial: string; err: string[]; json: { instructions: number; vmExits: Record<string, number> } }

function hvsim(args: string[]): Run {
  const err: string[] = [], serial: number[] = [], out: string[] = [];
  const status = main(['run', ...args], { out: (l) => out.push(l), err: (l) => err.push(l), serial: (b) => serial.push(b) });
  // A second run with --json gives the counts (the output is the same run, deterministic).
  const json: string[] = [];
  main(['run', ...args, '--json'], { out: (l) => json.push(l), err: () => {}, serial: () => {} });
  return { status, serial: Buffer.from(serial).toString('latin1'), err, json: JSON.parse(json[0]!) };
}

describe('a guest runs the same under the hypervisor as on the bare processor', () => {
  for (const [name, options, status] of GUESTS) {
    it(`guests/${name}: same serial output, status ${status} and instruction count (I/O exits, SDM vol. 3C 26.1.3; interrupts injected at VM entry, 27.6, with interrupt-window exiting, 27.7.5)`, () => {
      const args = [bundledGuest(name), ...options, '--max-insns', '50000000'];
      const bare = hvsim([...args, '--bare']), hv = hvsim(args);
      expect(bare.status).toBe(status);
      expect(hv.err).toEqual(bare.err);
      expect(hv.serial).toBe(bare.serial);
      expect(hv.serial.length).toBeGreaterThan(0);
      expect(hv.status).toBe(bare.status);
      expect(hv.json.instructions).toBe(bare.json.instructions);
      // The bare run took no VM exits; the hypervisor's run took at least its I/O exits.
      expect(bare.json.vmExits).toEqual({});
      expect(hv.json.vmExits.IO_INSTRUCTION).toBeGreaterThan(0);
    });
  }
});

describe('a guest that is itself a hypervisor finds no VMX under the hypervisor', () => {
  for (const name of ['vmx-basic.bin', 'vmx-ept.bin']) {
    it(`guests/${name}: CPUID.1:ECX.VMX reads 0 (the hypervisor hides VMX, as one without nested virtualization does); the guest says so and exits with 1 (status 3)`, () => {
      const hv = hvsim([bundledGuest(name), '--max-insns', '50000000']);
      expect(hv.serial).toContain('VMX not supported (CPUID.1:ECX.VMX = 0)');
      expect(hv.status).toBe(3);
      expect(hv.json.vmExits.CPUID).toBeGreaterThan(0);
    });
  }
});

describe('a guest runs the same without EPT, its page tables shadowed by the hypervisor (--no-ept)', () => {
  for (const [name, options, status] of GUESTS) {
    // A guest that starts in real mode needs unrestricted guest, which needs EPT (SDM vol. 3C 27.2.1.1).
    if (options.includes('real')) {
      it(`guests/${name} starts in real mode: without EPT (no unrestricted guest, SDM vol. 3C 27.2.1.1; CR0.PE fixed to 1, A.7) the hypervisor refuses it in one line, status 2`, () => {
        const err: string[] = [], out: string[] = [], serial: number[] = [];
        const status = main(['run', bundledGuest(name), ...options, '--no-ept'],
          { out: (l) => out.push(l), err: (l) => err.push(l), serial: (b) => serial.push(b) });
        expect(status).toBe(2);
        expect(err).toHaveLength(1);
        expect(err[0]).toMatch(/^hvsim: the guest starts in real mode .*unrestricted guest needs EPT/);
        expect([out, serial]).toEqual([[], []]);
      });
      continue;
    }
    it(`guests/${name}: same serial output, status ${status} and instruction count as with EPT and on the bare processor (shadow paging: #PF exits, SDM vol. 3C 25.6.3; CR3-load/store and INVLPG exiting, 26.1.3; guest/host masks, 25.6.6)`, () => {
      const args = [bundledGuest(name), ...options, '--max-insns', '50000000'];
      const bare = hvsim([...args, '--bare']), ept = hvsim(args), shadow = hvsim([...args, '--no-ept']);
      expect(shadow.status).toBe(status);
      expect(shadow.status).toBe(ept.status);
      expect(shadow.err).toEqual(ept.err);
      expect(shadow.serial).toBe(ept.serial);
      expect(shadow.serial).toBe(bare.serial);
      expect(shadow.json.instructions).toBe(ept.json.instructions);
      expect(shadow.json.instructions).toBe(bare.json.instructions);
      // No EPT, so no EPT exits; the guest's page tables were shadowed through #PF exits.
      expect(shadow.json.vmExits.EPT_VIOLATION).toBeUndefined();
      expect(shadow.json.vmExits.EXCEPTION_OR_NMI).toBeGreaterThan(0);
      expect((shadow.json as unknown as { shadow: { hiddenFaults: number } }).shadow.hiddenFaults).toBeGreaterThan(0);
    });
  }
});

describe('guest time does not see the faults a hypervisor hides', () => {
  it('guests/sieve.bin (REP STOSQ over pages shadow paging maps on demand): the same instruction count bare and with --no-ept (SDM vol. 2, REP: a fault part way is restartable; hidden #PF exits, 25.6.3)', () => {
    const args = [bundledGuest('sieve.bin'), '--format', 'flat', '--mode', '64', '--load', '0x1000', '--max-insns', '50000000'];
    const bare = hvsim([...args, '--bare']), shadow = hvsim([...args, '--no-ept']);
    expect(shadow.status).toBe(0);
    expect((shadow.json as unknown as { shadow: { hiddenFaults: number } }).shadow.hiddenFaults).toBeGreaterThan(0);
    expect(shadow.json.instructions).toBe(bare.json.instructions);
  });
});
