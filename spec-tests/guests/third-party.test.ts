/**
 * Unmodified third-party Multiboot kernels from Debian's archive, booted by
 * hvsim's Multiboot loader on the bare PC (installed by .ci/run; skipped where
 * the package is missing). Nothing of theirs is in this repository.
 *
 * grub-invaders (/boot/invaders.exec): an ELF32 Multiboot kernel, a Space
 * Invaders game that draws on the VGA text screen at B8000H and runs forever.
 * Xen (/boot/xen-4.17-amd64.gz): a hypervisor, a gzip-compressed ELF32
 * Multiboot kernel that climbs to 64-bit mode and reports on COM1.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/hvsim.js';
import { loadImage } from '../../src/platform/loaders/index.js';
import { PcMachine } from '../../src/platform/machine.js';

const INVADERS = '/boot/invaders.exec';

/** The 80x25 VGA text screen as lines of characters (attribute bytes left out). */
function screen(m: PcMachine): string[] {
  const rows: string[] = [];
  for (let r = 0; r < 25; r++) {
    let s = '';
    for (let c = 0; c < 80; c++) {
      const ch = m.cpu.memory.read8(0xb8000 + 2 * (80 * r + c));
      s += ch >= 0x20 && ch < 0x7f ? String.fromCharCode(ch) : ' ';
    }
    rows.push(s.trimEnd());
  }
  return rows;
}

describe.skipIf(!existsSync(INVADERS))('grub-invaders, a Multiboot game (Debian package grub-invaders)', () => {
  it('boots through the Multiboot loader (ELF32, Multiboot 0.6.96 3.1) and draws the invaders and the ship', () => {
    const m = new PcMachine({});
    const loaded = loadImage(m.cpu, readFileSync(INVADERS), {});
    expect(loaded.format).toBe('multiboot');
    // The game loops forever: it must still run (no exception, no shutdown) when the budget ends.
    expect(m.run(20_000_000)).toEqual({ kind: 'budget' });
    const rows = screen(m);
    // Five rows of eight invaders, drawn as "-*-" on every other line from the top.
    const invaderRows = rows.filter((r) => (r.match(/-\*-/g) ?? []).length === 8);
    expect(invaderRows.length).toBe(5);
    // The player's ship near the bottom.
    expect(rows.slice(20).some((r) => r.includes('/ \\'))).toBe(true);
  });
});

const XEN = '/boot/xen-4.17-amd64.gz';

describe.skipIf(!existsSync(XEN))('Xen 4.17, a Multiboot hypervisor (Debian package xen-hypervisor-4.17-amd64)', () => {
  it('boots from its gzip image, prints its banner on COM1 and stops for want of a dom0 kernel, rebooting by triple fault', () => {
    const err: string[] = [], serial: number[] = [];
    // No BIOS here: Xen is told not to run its real-mode BIOS calls (no-real-mode, edd=off, vga=none).
    const status = main(['run', XEN, '--memory', '512M', '--cmdline', 'no-real-mode edd=off vga=none console=com1 com1=115200,8n1'],
      { out: () => {}, err: (l) => err.push(l), serial: (b) => serial.push(b) });
    const text = Buffer.from(serial).toString('latin1');
    expect(text).toMatch(/^\(XEN\) Xen version 4\.17/m);
    expect(text).toContain('(XEN) Bootloader: hvsim');
    expect(text).toContain('(XEN) Command line: edd=off vga=none console=com1 com1=115200,8n1');
    expect(text).toContain('dom0 kernel not specified');
    expect(status).toBe(10); // Xen reboots; without a reset path the model shuts down on its triple fault
    expect(err.join('\n')).toContain('shutdown: triple fault');
  });
});
