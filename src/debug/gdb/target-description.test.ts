import { describe, expect, it } from 'vitest';
import { GDB_REGISTER, REGISTER_FILE_BYTES, X86_64_REGISTERS, X86_64_TARGET_XML } from './target-description.js';

describe('x86-64 target description', () => {
  it('numbers registers as the g packet lays them out', () => {
    expect(X86_64_REGISTERS).toHaveLength(66);
    expect(X86_64_REGISTERS.slice(0, 16).map((info) => info.name)).toEqual([
      'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp',
      'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
    ]);
    expect(GDB_REGISTER.rip).toBe(16);
    expect(GDB_REGISTER.eflags).toBe(17);
    expect(GDB_REGISTER.cs).toBe(18);
    expect(GDB_REGISTER.gs).toBe(23);
    expect(GDB_REGISTER.st0).toBe(24);
    expect(GDB_REGISTER.fctrl).toBe(32);
    expect(GDB_REGISTER.fop).toBe(39);
    expect(GDB_REGISTER.xmm0).toBe(40);
    expect(GDB_REGISTER.mxcsr).toBe(56);
    expect(GDB_REGISTER.fs_base).toBe(57);
    expect(GDB_REGISTER.k_gs_base).toBe(59);
    expect(GDB_REGISTER.cr0).toBe(60);
    expect(GDB_REGISTER.efer).toBe(65);
    expect(REGISTER_FILE_BYTES).toBe(16 * 8 + 8 + 4 + 6 * 4 + 8 * 10 + 8 * 4 + 16 * 16 + 4 + 3 * 8 + 6 * 8);
  });

  it('describes every register, in order, with its number and width', () => {
    const regs = [...X86_64_TARGET_XML.matchAll(/<reg name="([^"]+)" bitsize="(\d+)" type="([^"]+)" regnum="(\d+)"/g)];
    expect(regs.map((match) => [match[1], Number(match[2]), match[3], Number(match[4])])).toEqual(
      X86_64_REGISTERS.map((info, index) => [info.name, info.bitSize, info.type, index]),
    );
  });

  it('names the architecture and the features gdb looks for, in order', () => {
    expect(X86_64_TARGET_XML).toContain('<architecture>i386:x86-64</architecture>');
    const features = [...X86_64_TARGET_XML.matchAll(/<feature name="([^"]+)">/g)].map((match) => match[1]);
    expect(features).toEqual(['org.gnu.gdb.i386.core', 'org.gnu.gdb.i386.sse', 'org.gnu.gdb.i386.segments', 'org.hvsim.system']);
    expect(X86_64_TARGET_XML.match(/<\/feature>/g)).toHaveLength(4);
  });

  it('defines every non-predefined type it uses before the register that uses it', () => {
    const predefined = new Set(['int', 'int32', 'int64', 'data_ptr', 'code_ptr', 'i387_ext']);
    for (const info of X86_64_REGISTERS) {
      if (predefined.has(info.type)) continue;
      const definition = X86_64_TARGET_XML.search(new RegExp(`<(flags|union|vector) id="${info.type}"`));
      expect(definition, info.type).toBeGreaterThan(0);
      expect(definition).toBeLessThan(X86_64_TARGET_XML.indexOf(`<reg name="${info.name}"`));
    }
  });

  it('is ASCII, with balanced flags and union elements', () => {
    expect(/^[\x09\x0a\x20-\x7e]*$/.test(X86_64_TARGET_XML)).toBe(true);
    const count = (pattern: RegExp) => (X86_64_TARGET_XML.match(pattern) ?? []).length;
    expect(count(/<flags /g)).toBe(count(/<\/flags>/g));
    expect(count(/<union /g)).toBe(count(/<\/union>/g));
    expect(count(/<target /g)).toBe(1);
    expect(X86_64_TARGET_XML.trimEnd().endsWith('</target>')).toBe(true);
  });

  it('puts the flag fields of EFLAGS and CR0 at the SDM bit positions', () => {
    // SDM vol. 1, 3.4.3: IF is bit 9; SDM vol. 3A, 2.5: CR0.PG is bit 31.
    expect(X86_64_TARGET_XML).toMatch(/<flags id="i386_eflags" size="4">[^]*<field name="IF" start="9" end="9"\/>/);
    expect(X86_64_TARGET_XML).toMatch(/<flags id="hvsim_cr0" size="8">[^]*<field name="PG" start="31" end="31"\/>/);
  });
});
