/**
 * MMIO instruction emulation against the processor: each supported form runs
 * twice from the same registers, flags and memory value, once on hvsim's
 * processor against RAM (runFragment) and once through emulateMmio against a
 * fake device. The device must see exactly the access the processor made
 * (address, size, value written), and registers and RFLAGS must come out equal,
 * save flags the SDM leaves undefined.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CODE_ADDRESS, runFragment } from '../cpu/testing.js';
import { AF, CF, OF, PF, SF, STATUS_FLAGS, ZF } from '../cpu/regs.js';
import { emulateMmio, type GuestView, type MmioAccess, type MmioResult } from './mmio.js';

type Size = 1 | 2 | 4 | 8;
type Mode = 64 | 32;

/** APIC page: the guest-physical page of the fake device. */
const DEVICE_PAGE = 0xfee00000;
const PAGE = 4096;

// ---- fakes -----------------------------------------------------------------------

type Access = { kind: 'read'; gpa: number; size: number } | { kind: 'write'; gpa: number; size: number; value: bigint };

/** A device returning `value` (truncated to the access size) on reads and recording every access. */
function fakeDevice(value: bigint): MmioAccess & { log: Access[] } {
  const log: Access[] = [];
  return {
    log,
    read(gpa, size) { log.push({ kind: 'read', gpa, size }); return BigInt.asUintN(size * 8, value); },
    write(gpa, size, v) { log.push({ kind: 'write', gpa, size, value: v }); },
  };
}

/** A guest with `code` at `rip` on a page of its own; the next page is unmapped unless `nextPage`. */
function fakeGuest(code: readonly number[], regs: readonly bigint[], rflags: number,
  opts: { codeSize?: 2 | 4 | 8; rip?: bigint; csBase?: bigint; nextPage?: boolean } = {}): GuestView & { regs: bigint[] } {
  const rip = opts.rip ?? BigInt(CODE_ADDRESS);
  const linear = (opts.codeSize ?? 8) === 8 ? rip : rip + (opts.csBase ?? 0n);
  const pageStart = linear & ~0xfffn;
  const mapped = new Uint8Array(opts.nextPage ? 2 * PAGE : PAGE);
  const at = Number(linear - pageStart);
  mapped.set(code.slice(0, mapped.length - at), at);
  const file = [...regs];
  while (file.length < 16) file.push(0n);
  const g: GuestView & { regs: bigint[] } = {
    regs: file,
    codeSize: opts.codeSize ?? 8,
    rip,
    csBase: opts.csBase,
    fetch(at, count) {
      const k = Number(at - pageStart);
      return k < 0 || k + count > mapped.length ? null : mapped.slice(k, k + count);
    },
    reg: (n) => file[n]!,
    setReg: (n, v) => {
      if (v < 0n || v >= 1n << 64n) throw new Error(`register ${n} set to ${v}, out of range`);
      file[n] = v;
    },
    rflags,
    setRflags(v) { g.rflags = v; },
  };
  return g;
}

// ---- the forms -----------------------------------------------------------------

interface Form {
  /** The SDM's name of the form, with its opcode column. */
  name: string;
  op: number[];
  /** Operand size: 66h gives 2, REX.W gives 8. */
  size: Size;
  /** Size of the memory access when not the operand size (MOVZX, MOVSX, MOVSXD). */
  memSize?: Size;
  /** Fixed ModRM.reg (/digit of a group). */
  digit?: number;
  imm?: 0 | 1 | 2 | 4;
  /** MOV with a moffs operand: no ModRM, an address the width of the address size. */
  moffs?: boolean;
  /** What the instruction does with memory: read, write, or read then write. */
  access: 'read' | 'write' | 'rmw';
  /** AF is undefined after AND, OR, XOR and TEST (SDM vol. 2, each one's "Flags Affected"). */
  logic?: boolean;
  /** Also a valid form in 32-bit code. */
  legacy: boolean;
}

const V: readonly Size[] = [2, 4, 8];
const r = (z: Size): string => ({ 1: 'r8', 2: 'r16', 4: 'r32', 8: 'r64' })[z];
const rm = (z: Size): string => `r/m${z * 8}`;
const immName = (z: Size): string => `imm${Math.min(z, 4) * 8}`;
const IMM_BYTES = { 1: 1, 2: 2, 4: 4, 8: 4 } as const;

const FORMS: Form[] = [];
function add(f: Omit<Form, 'legacy'> & { legacy?: boolean }): void {
  FORMS.push({ ...f, legacy: f.legacy ?? f.size !== 8 });
}

// MOV (SDM vol. 2, MOV)
add({ name: 'MOV r/m8, r8 (88 /r)', op: [0x88], size: 1, access: 'write' });
add({ name: 'MOV r8, r/m8 (8A /r)', op: [0x8a], size: 1, access: 'read' });
add({ name: 'MOV r/m8, imm8 (C6 /0 ib)', op: [0xc6], digit: 0, imm: 1, size: 1, access: 'write' });
add({ name: 'MOV AL, moffs8 (A0)', op: [0xa0], moffs: true, size: 1, access: 'read' });
add({ name: 'MOV moffs8, AL (A2)', op: [0xa2], moffs: true, size: 1, access: 'write' });
for (const z of V) {
  add({ name: `MOV ${rm(z)}, ${r(z)} (89 /r)`, op: [0x89], size: z, access: 'write' });
  add({ name: `MOV ${r(z)}, ${rm(z)} (8B /r)`, op: [0x8b], size: z, access: 'read' });
  add({ name: `MOV ${rm(z)}, ${immName(z)} (C7 /0)`, op: [0xc7], digit: 0, imm: IMM_BYTES[z], size: z, access: 'write' });
  const acc = { 2: 'AX', 4: 'EAX', 8: 'RAX' }[z as 2 | 4 | 8];
  add({ name: `MOV ${acc}, moffs${z * 8} (A1)`, op: [0xa1], moffs: true, size: z, access: 'read' });
  add({ name: `MOV moffs${z * 8}, ${acc} (A3)`, op: [0xa3], moffs: true, size: z, access: 'write' });
  // MOVZX, MOVSX (SDM vol. 2, MOVZX, MOVSX/MOVSXD)
  add({ name: `MOVZX ${r(z)}, r/m8 (0F B6 /r)`, op: [0x0f, 0xb6], size: z, memSize: 1, access: 'read' });
  add({ name: `MOVSX ${r(z)}, r/m8 (0F BE /r)`, op: [0x0f, 0xbe], size: z, memSize: 1, access: 'read' });
  add({ name: `MOVZX ${r(z)}, r/m16 (0F B7 /r)`, op: [0x0f, 0xb7], size: z, memSize: 2, access: 'read' });
  add({ name: `MOVSX ${r(z)}, r/m16 (0F BF /r)`, op: [0x0f, 0xbf], size: z, memSize: 2, access: 'read' });
}
add({ name: 'MOVSXD r64, r/m32 (REX.W 63 /r)', op: [0x63], size: 8, memSize: 4, access: 'read', legacy: false });
add({ name: 'MOVSXD r32, r/m32 (63 /r)', op: [0x63], size: 4, memSize: 4, access: 'read', legacy: false });
// ADD OR ADC SBB AND SUB XOR CMP (SDM vol. 2, each page); the opcode is 8 * op + form.
const ALU = ['ADD', 'OR', 'ADC', 'SBB', 'AND', 'SUB', 'XOR', 'CMP'];
ALU.forEach((name, n) => {
  const logic = name === 'AND' || name === 'OR' || name === 'XOR';
  const modifies: 'read' | 'rmw' = name === 'CMP' ? 'read' : 'rmw';
  const hex = (b: number): string => b.toString(16).toUpperCase().padStart(2, '0');
  add({ name: `${name} r/m8, r8 (${hex(8 * n)} /r)`, op: [8 * n], size: 1, access: modifies, logic });
  add({ name: `${name} r8, r/m8 (${hex(8 * n + 2)} /r)`, op: [8 * n + 2], size: 1, access: 'read', logic });
  add({ name: `${name} r/m8, imm8 (80 /${n} ib)`, op: [0x80], digit: n, imm: 1, size: 1, access: modifies, logic });
  for (const z of V) {
    add({ name: `${name} ${rm(z)}, ${r(z)} (${hex(8 * n + 1)} /r)`, op: [8 * n + 1], size: z, access: modifies, logic });
    add({ name: `${name} ${r(z)}, ${rm(z)} (${hex(8 * n + 3)} /r)`, op: [8 * n + 3], size: z, access: 'read', logic });
    add({ name: `${name} ${rm(z)}, ${immName(z)} (81 /${n})`, op: [0x81], digit: n, imm: IMM_BYTES[z], size: z, access: modifies, logic });
    add({ name: `${name} ${rm(z)}, imm8 (83 /${n} ib)`, op: [0x83], digit: n, imm: 1, size: z, access: modifies, logic });
  }
});
// TEST (SDM vol. 2, TEST), XCHG (SDM vol. 2, XCHG)
add({ name: 'TEST r/m8, r8 (84 /r)', op: [0x84], size: 1, access: 'read', logic: true });
add({ name: 'TEST r/m8, imm8 (F6 /0 ib)', op: [0xf6], digit: 0, imm: 1, size: 1, access: 'read', logic: true });
add({ name: 'XCHG r/m8, r8 (86 /r)', op: [0x86], size: 1, access: 'rmw' });
for (const z of V) {
  add({ name: `TEST ${rm(z)}, ${r(z)} (85 /r)`, op: [0x85], size: z, access: 'read', logic: true });
  add({ name: `TEST ${rm(z)}, ${immName(z)} (F7 /0)`, op: [0xf7], digit: 0, imm: IMM_BYTES[z], size: z, access: 'read', logic: true });
  add({ name: `XCHG ${rm(z)}, ${r(z)} (87 /r)`, op: [0x87], size: z, access: 'rmw' });
}

// ---- random operands and their encoding -------------------------------------------

/** Where the memory operand is: its addressing kind and the raw material to build it from. */
interface Params {
  regs: bigint[];
  rflags: number;
  mem: bigint;
  imm: number;
  /** ModRM.reg (a register operand) when the form has no /digit. */
  reg: number;
  kind: 'base' | 'sib' | 'abs' | 'rip';
  mod: number;
  base: number;
  index: number;
  noBase: boolean;
  noIndex: boolean;
  scale: number;
  disp8: number;
  disp32: number;
  smallIndex: number;
  /** Address-size prefix 67h. */
  a67: boolean;
  /** An otherwise empty REX prefix (turns AH-BH into SPL-DIL). */
  forceRex: boolean;
  /** Page offset of the operand. */
  off: number;
}

const params = (memSize: Size): fc.Arbitrary<Params> => fc.record({
  regs: fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { minLength: 16, maxLength: 16 }),
  rflags: fc.nat(0xfff).map((f) => f & STATUS_FLAGS),
  mem: fc.bigInt({ min: 0n, max: (1n << BigInt(memSize * 8)) - 1n }),
  imm: fc.integer({ min: -0x80000000, max: 0x7fffffff }),
  reg: fc.nat(15),
  kind: fc.constantFrom('base', 'sib', 'abs', 'rip'),
  mod: fc.nat(2),
  base: fc.nat(15),
  index: fc.nat(15),
  noBase: fc.boolean(),
  noIndex: fc.boolean(),
  scale: fc.nat(3),
  disp8: fc.integer({ min: -128, max: 127 }),
  disp32: fc.integer({ min: -0x80000000, max: 0x7fffffff }),
  smallIndex: fc.nat(0xfff),
  a67: fc.boolean(),
  forceRex: fc.boolean(),
  off: fc.nat(PAGE - memSize),
});

const le = (v: bigint, n: number): number[] => Array.from({ length: n }, (_, k) => Number((v >> BigInt(8 * k)) & 0xffn));

interface Case { code: number[]; regs: bigint[]; rflags: number; target: number; mem: bigint }

/** 16-bit addressing forms (SDM vol. 2, table 2-1): base and index registers of ModRM.rm. */
const RM16: readonly (readonly number[])[] = [[3, 6], [3, 7], [5, 6], [5, 7], [6], [7], [5], [3]];

/**
 * Encodes `form` with a memory operand at `target` (in RAM), choosing register
 * values that make the operand's effective address come out there.
 */
function build(form: Form, mode: Mode, p: Params): Case {
  const regs = p.regs.map((v) => (mode === 32 ? v & 0xffffffffn : v));
  const adSize = mode === 64 ? (p.a67 ? 4 : 8) : p.a67 ? 2 : 4;
  const adMask = (1n << BigInt(adSize * 8)) - 1n;
  // Below 64 KiB for 16-bit addressing; elsewhere far from the code at CODE_ADDRESS.
  const target = (adSize === 2 ? 0x4000 : 0x20000) + p.off;
  const regCount = mode === 64 ? 16 : 8;
  /** Sets register n so that its bits within the address size equal v. */
  const place = (n: number, v: bigint): void => { regs[n] = (regs[n]! & ~adMask) | (BigInt.asUintN(64, v) & adMask); };

  const prefixes: number[] = [];
  if (form.size === 2) prefixes.push(0x66);
  if (p.a67) prefixes.push(0x67);
  let rexW = form.size === 8 ? 1 : 0, rexR = 0, rexX = 0, rexB = 0;
  const tail: number[] = [];
  let ripDisp = -1; // where a RIP-relative displacement goes in `tail`, filled in once the length is known

  if (form.moffs) {
    tail.push(...le(BigInt(target), adSize));
  } else {
    const reg = (form.digit ?? p.reg) % regCount;
    rexR = reg >> 3;
    let mod = p.mod, rmField: number, sib = -1, disp: bigint = 0n, dispSize = 0;
    if (adSize === 2) {
      rmField = p.base & 7;
      if (mod === 0 && rmField === 6) { disp = BigInt(target); dispSize = 2; }
      else {
        const [b, x] = RM16[rmField]!;
        dispSize = mod;
        disp = mod === 1 ? BigInt(p.disp8) : mod === 2 ? BigInt(p.disp32 & 0xffff) : 0n;
        const xv = x === undefined ? 0n : regs[x]!;
        place(b!, BigInt(target) - disp - xv);
      }
    } else {
      let kind = p.kind;
      if (kind === 'rip' && mode === 32) kind = 'abs';
      let base = p.base % regCount, index = p.index % regCount;
      if (kind === 'base' && (base & 7) === 4) kind = 'sib'; // [rsp]/[r12] need a SIB byte
      const noIndex = kind !== 'sib' || p.noIndex || index === 4; // index field 100b without REX.X: none
      const noBase = kind === 'abs' || kind === 'rip' || (kind === 'sib' && p.noBase);
      if (!noIndex && !noBase && index === base) { index = (index + 1) % regCount; if (index === 4) index++; }
      if (noBase) mod = 0;
      else if (mod === 0 && (base & 7) === 5) mod = 1; // mod 00 with rm/base 101b means no base
      dispSize = mod === 1 ? 1 : mod === 2 || noBase ? 4 : 0;
      const indexValue = noIndex ? 0n : noBase ? BigInt(p.smallIndex) : regs[index]! & adMask;
      if (!noIndex) place(index, indexValue);
      const scaled = indexValue << BigInt(p.scale);
      if (kind === 'rip') { rmField = 5; }
      else if (noBase) {
        disp = BigInt(target) - scaled;
        if (mode === 32 && kind === 'abs') rmField = 5;
        else { rmField = 4; sib = (p.scale << 6) | ((noIndex ? 4 : index & 7) << 3) | 5; }
      } else {
        disp = mod === 1 ? BigInt(p.disp8) : mod === 2 ? BigInt(p.disp32) : 0n;
        place(base, BigInt(target) - disp - scaled);
        if (kind === 'base') rmField = base & 7;
        else { rmField = 4; sib = (p.scale << 6) | ((noIndex ? 4 : index & 7) << 3) | (base & 7); }
      }
      if (!noIndex) rexX = index >> 3;
      if (!noBase) rexB = base >> 3;
      if (kind === 'rip') { dispSize = 4; ripDisp = 1 + (sib >= 0 ? 1 : 0); }
    }
    tail.push((mod << 6) | ((reg & 7) << 3) | rmField);
    if (sib >= 0) tail.push(sib);
    tail.push(...le(BigInt.asUintN(dispSize * 8, disp), dispSize));
  }
  if (form.imm) tail.push(...le(BigInt.asUintN(32, BigInt(p.imm)), form.imm));

  const rex = mode === 64 && (rexW | rexR | rexX | rexB || p.forceRex)
    ? [0x40 | (rexW << 3) | (rexR << 2) | (rexX << 1) | rexB] : [];
  const code = [...prefixes, ...rex, ...form.op, ...tail];
  if (ripDisp >= 0) {
    const at = prefixes.length + rex.length + form.op.length + ripDisp;
    const d = BigInt(target) - BigInt(CODE_ADDRESS + code.length);
    code.splice(at, 4, ...le(BigInt.asUintN(32, d), 4));
  }
  return { code, regs, rflags: p.rflags | 2, target, mem: p.mem };
}

const readRam = (ram: { read8(pa: number): number }, at: number, size: number): bigint => {
  let v = 0n;
  for (let k = size - 1; k >= 0; k--) v = (v << 8n) | BigInt(ram.read8(at + k));
  return v;
};

/** Runs the case on the processor and through emulateMmio, and compares the two. */
function check(form: Form, mode: Mode, c: Case): void {
  const memSize = form.memSize ?? form.size;
  const { cpu, stop } = runFragment(c.code, {
    mode,
    regs: Object.fromEntries(c.regs.map((v, n) => [n, v])),
    rflags: c.rflags,
    setup: (x) => x.memory.load(c.target, Uint8Array.from(le(c.mem, memSize))),
  });
  expect(stop.kind).toBe('halt');
  // One instruction, then HLT: the instruction's length is where HLT was.
  expect(cpu.rip).toBe(BigInt(CODE_ADDRESS + c.code.length + 1));

  const gpa = DEVICE_PAGE + (c.target & 0xfff);
  const guest = fakeGuest(c.code, c.regs, c.rflags, { codeSize: mode === 64 ? 8 : 4 });
  const device = fakeDevice(c.mem);
  const result = emulateMmio(guest, gpa, form.access === 'write', device);
  expect(result).toEqual({ kind: 'done', length: c.code.length });

  for (let n = 0; n < (mode === 64 ? 16 : 8); n++) expect(guest.regs[n], `register ${n}`).toBe(cpu.reg64(n));
  const defined = form.logic ? ~AF : ~0;
  expect(guest.rflags & defined).toBe(cpu.rflags & defined);

  const after = readRam(cpu.memory, c.target, memSize);
  const expected: Access[] = [];
  if (form.access !== 'write') expected.push({ kind: 'read', gpa, size: memSize });
  if (form.access !== 'read') expected.push({ kind: 'write', gpa, size: memSize, value: after });
  // An ALU RMW on a device writes what the processor left in RAM; a read-only form left RAM alone.
  if (form.access === 'read') expect(after).toBe(c.mem);
  expect(device.log).toEqual(expected);
}

const RUNS = { 64: 60, 32: 30 } as const;
for (const mode of [64, 32] as const) {
  describe(`emulateMmio against the processor, ${mode}-bit code (SDM vol. 2, each instruction's Operation)`, () => {
    for (const form of FORMS.filter((f) => mode === 64 || f.legacy)) {
      it(form.name, () => {
        fc.assert(fc.property(params(form.memSize ?? form.size), (p) => check(form, mode, build(form, mode, p))),
          { numRuns: RUNS[mode] });
      });
    }
  });
}

// ---- fixed cases, from the SDM's text -------------------------------------------------

/** Emulates `code` in 64-bit code with the device holding `mem`. */
function emulate(code: number[], opts: { regs?: bigint[]; rflags?: number; mem?: bigint; gpa?: number; write?: boolean;
  guest?: Parameters<typeof fakeGuest>[3] } = {}): { result: MmioResult; guest: ReturnType<typeof fakeGuest>; log: Access[] } {
  const guest = fakeGuest(code, opts.regs ?? [], opts.rflags ?? 2, opts.guest);
  const device = fakeDevice(opts.mem ?? 0n);
  const result = emulateMmio(guest, opts.gpa ?? DEVICE_PAGE + 0x30, opts.write ?? false, device);
  return { result, guest, log: device.log };
}

describe('emulateMmio: results the SDM spells out', () => {
  it('MOV r32, r/m32 zero-extends into bits 63:32 (SDM vol. 1, 3.4.1.1)', () => {
    // mov eax, [rbx]
    const { result, guest, log } = emulate([0x8b, 0x03], { regs: [0xffffffff_ffffffffn, 0n, 0n, 0x30n], mem: 0x12345678n });
    expect(result).toEqual({ kind: 'done', length: 2 });
    expect(guest.regs[0]).toBe(0x12345678n);
    expect(log).toEqual([{ kind: 'read', gpa: DEVICE_PAGE + 0x30, size: 4 }]);
  });

  it('MOV AH, r/m8 without REX writes bits 15:8 and keeps the rest (SDM vol. 2, 2.1.5, table 2-2)', () => {
    // mov ah, [rbx]
    const { guest } = emulate([0x8a, 0x23], { regs: [0x1111_2222_3333_4444n, 0n, 0n, 0x30n], mem: 0xabn });
    expect(guest.regs[0]).toBe(0x1111_2222_3333_ab44n);
  });

  it('MOV r/m8, r8 with REX names SPL, without it AH (SDM vol. 2, 2.2.1.2)', () => {
    const regs = [0xaa00n, 0n, 0n, 0x30n, 0x55n];
    expect(emulate([0x88, 0x23], { regs, write: true }).log).toEqual([{ kind: 'write', gpa: DEVICE_PAGE + 0x30, size: 1, value: 0xaan }]);
    expect(emulate([0x40, 0x88, 0x23], { regs, write: true }).log).toEqual([{ kind: 'write', gpa: DEVICE_PAGE + 0x30, size: 1, value: 0x55n }]);
  });

  it('MOV r/m64, imm32 sign-extends the immediate (SDM vol. 2, MOV: C7 /0 with REX.W)', () => {
    // mov qword [rbx], -2
    const { log } = emulate([0x48, 0xc7, 0x03, 0xfe, 0xff, 0xff, 0xff], { regs: [0n, 0n, 0n, 0x30n], write: true });
    expect(log).toEqual([{ kind: 'write', gpa: DEVICE_PAGE + 0x30, size: 8, value: 0xffff_ffff_ffff_fffen }]);
  });

  it('CMP r/m32, imm8 borrows: CF = SF = 1, ZF = OF = 0, and nothing is written (SDM vol. 2, CMP)', () => {
    // cmp dword [rbx], 1 with [rbx] = 0
    const { result, guest, log } = emulate([0x83, 0x3b, 0x01], { regs: [0n, 0n, 0n, 0x30n], mem: 0n, rflags: 2 | ZF | OF });
    expect(result.kind).toBe('done');
    expect(guest.rflags & STATUS_FLAGS).toBe(CF | SF | PF | AF);
    expect(log).toEqual([{ kind: 'read', gpa: DEVICE_PAGE + 0x30, size: 4 }]);
  });

  it('ADD r/m8, imm8: 7FH + 1 overflows into the sign (SDM vol. 1, 3.4.3.1: OF, SF, AF)', () => {
    const { guest, log } = emulate([0x80, 0x03, 0x01], { regs: [0n, 0n, 0n, 0x30n], mem: 0x7fn });
    expect(guest.rflags & STATUS_FLAGS).toBe(OF | SF | AF);
    expect(log[1]).toEqual({ kind: 'write', gpa: DEVICE_PAGE + 0x30, size: 1, value: 0x80n });
  });

  it('TEST clears CF and OF; AF, undefined, reads 0 as on Intel parts (SDM vol. 2, TEST)', () => {
    // test dword [rbx], 0x80000000 with [rbx] = 0x80000000
    const { guest, log } = emulate([0xf7, 0x03, 0, 0, 0, 0x80], { regs: [0n, 0n, 0n, 0x30n], mem: 0x8000_0000n, rflags: 2 | CF | OF | AF });
    expect(guest.rflags).toBe(2 | SF | PF);
    expect(log).toHaveLength(1);
  });

  it('flags outside the status flags are kept (SDM vol. 1, 3.4.3)', () => {
    const IF = 1 << 9, DF = 1 << 10;
    const { guest } = emulate([0x31, 0x03], { regs: [0n, 0n, 0n, 0x30n], mem: 0n, rflags: 2 | IF | DF | CF });
    expect(guest.rflags).toBe(2 | IF | DF | ZF | PF);
  });

  it('XCHG r/m32, r32 reads, then writes the register, then loads the register (SDM vol. 2, XCHG)', () => {
    const { guest, log } = emulate([0x87, 0x03], { regs: [0x1_0000_0007n, 0n, 0n, 0x30n], mem: 0x99n });
    expect(log).toEqual([
      { kind: 'read', gpa: DEVICE_PAGE + 0x30, size: 4 },
      { kind: 'write', gpa: DEVICE_PAGE + 0x30, size: 4, value: 7n },
    ]);
    expect(guest.regs[0]).toBe(0x99n);
  });

  it('an RMW form is emulated also when the violation reports the write (page mapped read-only, SDM vol. 3C, table 28-7)', () => {
    // or dword [rbx], eax
    const { result, log } = emulate([0x09, 0x03], { regs: [0x100n, 0n, 0n, 0x30n], mem: 1n, write: true });
    expect(result.kind).toBe('done');
    expect(log.map((a) => a.kind)).toEqual(['read', 'write']);
  });

  it('MOVSXD r16, r/m16 reads a word (SDM vol. 2, MOVSX/MOVSXD: 66 63 /r)', () => {
    const { guest, log } = emulate([0x66, 0x63, 0x03], { regs: [0xffff_ffff_ffff_0000n, 0n, 0n, 0x30n], mem: 0x8001n });
    expect(log).toEqual([{ kind: 'read', gpa: DEVICE_PAGE + 0x30, size: 2 }]);
    expect(guest.regs[0]).toBe(0xffff_ffff_ffff_8001n);
  });

  it('the device value is taken at the access size', () => {
    // movzx eax, byte [rbx] from a device answering with stray high bits
    const { guest } = emulate([0x0f, 0xb6, 0x03], { regs: [0n, 0n, 0n, 0x30n], mem: 0xffff_ff80n });
    expect(guest.regs[0]).toBe(0x80n);
  });
});

describe('emulateMmio: fetching the instruction (SDM vol. 3A, 3.4.4)', () => {
  it('uses CS base + EIP in 32-bit code', () => {
    // mov eax, [ebx] at CS:EIP = 10000H:20H
    const { result, guest } = emulate([0x8b, 0x03], {
      regs: [0n, 0n, 0n, 0x30n], mem: 5n, guest: { codeSize: 4, rip: 0x20n, csBase: 0x10000n },
    });
    expect(result).toEqual({ kind: 'done', length: 2 });
    expect(guest.regs[0]).toBe(5n);
  });

  it('decodes in 16-bit code', () => {
    // mov ax, [bx] in 16-bit code (no 66h)
    const { result, guest, log } = emulate([0x8b, 0x07], { regs: [0xffff_0000n, 0n, 0n, 0x30n], mem: 0x1234n, guest: { codeSize: 2 } });
    expect(result).toEqual({ kind: 'done', length: 2 });
    expect(guest.regs[0]).toBe(0xffff_1234n);
    expect(log[0]).toEqual({ kind: 'read', gpa: DEVICE_PAGE + 0x30, size: 2 });
  });

  it('an instruction ending at a page end with the next page unmapped is still emulated', () => {
    // mov eax, [rbx] in the last 2 bytes of the page
    const { result } = emulate([0x8b, 0x03], { regs: [0n, 0n, 0n, 0x30n], guest: { rip: 0x1ffen } });
    expect(result).toEqual({ kind: 'done', length: 2 });
  });

  it('an instruction running onto an unmapped page is unsupported', () => {
    // mov eax, [rbx + disp32] split after the ModRM byte
    const { result } = emulate([0x8b, 0x83, 0x30, 0, 0, 0], { regs: [], guest: { rip: 0x1ffen } });
    expect(result.kind).toBe('unsupported');
    expect((result as { reason: string }).reason).toMatch(/cannot be fetched/);
  });

  it('an instruction split across two mapped pages is emulated', () => {
    const { result } = emulate([0x8b, 0x83, 0x30, 0, 0, 0], { regs: [0n, 0n, 0n, 0n], guest: { rip: 0x1ffen, nextPage: true } });
    expect(result).toEqual({ kind: 'done', length: 6 });
  });
});

describe('emulateMmio: forms it does not emulate are reported, and change nothing', () => {
  const cases: [string, number[], RegExp, { write?: boolean; gpa?: number; codeSize?: 4 }?][] = [
    ['MOVS m32, m32 (A5)', [0xa5], /MOVS/],
    ['REP STOSD (F3 AB)', [0xf3, 0xab], /STOS/],
    ['INC r/m32 (FF /0)', [0xff, 0x03], /INC/],
    ['CMPXCHG r/m32, r32 (0F B1)', [0x0f, 0xb1, 0x03], /CMPXCHG/],
    ['MOVDQA xmm, m128 (66 0F 6F)', [0x66, 0x0f, 0x6f, 0x03], /MOVDQA|0F 6F/],
    ['FNSTCW m2byte (D9 /7)', [0xd9, 0x3b], /FNSTCW/, { write: true }],
    ['MOV r32, r32: no memory operand (8B C0)', [0x8b, 0xc0], /no memory operand/],
    ['an undefined opcode (0F 04)', [0x0f, 0x04], /undefined/],
    ['LOCK MOV (F0 89): #UD', [0xf0, 0x89, 0x03], /undefined/, { write: true }],
    ['a read form whose violation reports a write', [0x8b, 0x03], /reports a write/, { write: true }],
    ['a write form whose violation reports a read', [0x89, 0x03], /reports a read/],
    ['CMP, a read, reported as a write', [0x39, 0x03], /reports a write/, { write: true }],
    ['an access crossing the page end', [0x8b, 0x03], /crosses a page/, { gpa: DEVICE_PAGE + 0xffe }],
    ['the second half of a split access (page offset disagrees)', [0x8b, 0x03], /does not/, { gpa: DEVICE_PAGE }],
    ['ARPL in 32-bit code (63)', [0x63, 0x03], /ARPL/, { codeSize: 4 }],
  ];
  for (const [name, code, reason, o] of cases) {
    it(name, () => {
      const regs = [0x1111n, 0x2222n, 0x3333n, 0x30n];
      const { result, guest, log } = emulate(code, {
        regs, rflags: 2 | CF, write: o?.write, gpa: o?.gpa, guest: { codeSize: o?.codeSize },
      });
      expect(result.kind).toBe('unsupported');
      expect((result as { reason: string }).reason).toMatch(reason);
      expect(log).toEqual([]);
      expect(guest.regs.slice(0, 4)).toEqual(regs);
      expect(guest.rflags).toBe(2 | CF);
    });
  }

  it('an unmapped RIP', () => {
    const guest = fakeGuest([0x8b, 0x03], [], 2);
    guest.fetch = () => null;
    const result = emulateMmio(guest, DEVICE_PAGE, false, fakeDevice(0n));
    expect(result.kind).toBe('unsupported');
  });
});
