/**
 * Emulation of the guest instruction behind an EPT violation on an MMIO page.
 *
 * Device registers (local APIC, I/O APIC) are left out of EPT, so the guest's
 * access exits with reason 48 (SDM vol. 3C, 29.3.3.2). The VMCS gives the
 * guest-physical address and the direction (exit qualification bits 0 and 1,
 * table 28-7) but, for EPT violations, neither the instruction length nor its
 * information (28.2.5 lists the exits that save them). So the hypervisor decodes
 * the instruction at guest CS:RIP itself, performs the access on its device
 * model, and writes the result to the guest's registers and flags as the
 * instruction would have. This module does that for the instructions guests
 * use on device registers; everything else is reported, never guessed.
 *
 * After a VM exit the processor holds host state, so the guest is seen through
 * a GuestView that the hypervisor builds over the VMCS and guest memory.
 */
import { Decoder, TOO_LONG, UNDEFINED, type ByteSource } from '../cpu/decoder.js';
import { FlagOp, materialize, setLazy, setLazyCarry, setLazyLogic, type FlagState } from '../cpu/flags.js';
import { BASE_RIP, HIGH_BYTE, OpMap, type Insn } from '../cpu/insn.js';
import { PAGE_SIZE } from '../cpu/memory.js';
import { OPCODE_TABLE } from '../cpu/optable.js';
import { CF, STATUS_FLAGS } from '../cpu/regs.js';

/** The device model behind the guest-physical address. Values are zero-extended to 64 bits. */
export interface MmioAccess {
  read(gpa: number, size: 1 | 2 | 4 | 8): bigint;
  write(gpa: number, size: 1 | 2 | 4 | 8, value: bigint): void;
}

/** The guest as the VMCS and guest memory show it after the exit. */
export interface GuestView {
  /** Code size of the guest's CS: 2, 4 or 8 bytes. */
  codeSize: 2 | 4 | 8;
  /** GUEST_RIP: the address of the instruction that made the access. */
  rip: bigint;
  /** CS base (GUEST_CS_BASE); taken as 0 when absent. Unused in 64-bit mode (SDM vol. 3A, 3.4.4). */
  csBase?: bigint;
  /** Up to `count` bytes at a guest linear address through the guest's translation, or null when unmapped. */
  fetch(linear: bigint, count: number): Uint8Array | null;
  /** General-purpose register n (0-15, encoding order), as an unsigned 64-bit value. */
  reg(n: number): bigint;
  setReg(n: number, value: bigint): void;
  rflags: number;
  setRflags(v: number): void;
}

/** Done: the caller advances GUEST_RIP by `length` and clears RFLAGS.RF, as an instruction's completion does. */
export type MmioResult = { kind: 'done'; length: number } | { kind: 'unsupported'; reason: string };

type Size = 1 | 2 | 4 | 8;

const decoder = new Decoder(OPCODE_TABLE);

const MAX_LENGTH = 15;
const TWO = OpMap.TWO * 256;
const MASK: readonly bigint[] = [0n, 0xffn, 0xffffn, 0n, 0xffffffffn, 0n, 0n, 0n, 0xffffffffffffffffn];

/** The operations of opcodes 00-3F and group 1 in encoding order (SDM vol. 2, table A-6), and TEST. */
const enum Op { ADD = 0, OR, ADC, SBB, AND, SUB, XOR, CMP, TEST }

/** What the instruction does with its memory operand. */
const enum Dir { READ, WRITE, READ_WRITE }

/** The decoder asked for a byte past those the guest's translation could give. */
class BeyondFetch { }
const BEYOND_FETCH = new BeyondFetch();

class FetchedBytes implements ByteSource {
  constructor(private readonly bytes: Uint8Array) {}
  byte(k: number): number {
    if (k >= this.bytes.length) throw BEYOND_FETCH;
    return this.bytes[k]!;
  }
}

/** Scratch flag record: flags.ts derives the status flags exactly as the processor does. */
const flagState: FlagState = {
  flags: 0, lazyMask: 0, lfOp: FlagOp.ADD, lfSize: 1,
  lfALo: 0, lfAHi: 0, lfBLo: 0, lfBHi: 0, lfRLo: 0, lfRHi: 0, lfCarryIn: 0,
};

const unsupported = (reason: string): MmioResult => ({ kind: 'unsupported', reason });

/**
 * Emulates the instruction at guest RIP, whose access to `gpa` (a read, or a
 * write when `write`) caused the EPT violation, against `device`. Changes the
 * guest's registers and RFLAGS only on success; never throws on its own account.
 */
export function emulateMmio(guest: GuestView, gpa: number, write: boolean, device: MmioAccess): MmioResult {
  const bytes = fetchInstruction(guest);
  if (bytes === null) return unsupported(`instruction bytes at RIP ${hex(guest.rip)} cannot be fetched`);
  let i: Insn;
  try {
    i = decoder.decode(new FetchedBytes(bytes), guest.codeSize);
  } catch (e) {
    if (e !== BEYOND_FETCH) throw e;
    return unsupported(`instruction at RIP ${hex(guest.rip)} runs onto a page that cannot be fetched`);
  }
  if (i.def === UNDEFINED) return unsupported(`undefined encoding at RIP ${hex(guest.rip)} (the guest would take #UD)`);
  if (i.def === TOO_LONG) return unsupported(`instruction at RIP ${hex(guest.rip)} is longer than 15 bytes (#GP)`);
  const what = describe(i);
  if (i.isReg) return unsupported(`${what} has no memory operand`);

  // Each form: the memory operand's size and direction, and how to carry it out.
  const z = i.opSize as Size;
  const op = i.opcode;
  let run: () => void;
  let size: Size = z, dir: Dir;
  if (op === 0x88 || op === 0x89) {
    // MOV r/m, r
    dir = Dir.WRITE;
    run = () => device.write(gpa, z, getReg(guest, regOperand(i), z));
  } else if (op === 0x8a || op === 0x8b) {
    // MOV r, r/m
    dir = Dir.READ;
    run = () => setReg(guest, regOperand(i), z, readDevice(device, gpa, z));
  } else if (op === 0xa0 || op === 0xa1) {
    // MOV AL/rAX, moffs
    dir = Dir.READ;
    run = () => setReg(guest, 0, z, readDevice(device, gpa, z));
  } else if (op === 0xa2 || op === 0xa3) {
    // MOV moffs, AL/rAX
    dir = Dir.WRITE;
    run = () => device.write(gpa, z, getReg(guest, 0, z));
  } else if ((op === 0xc6 || op === 0xc7) && i.def.name === 'mov') {
    // MOV r/m, imm
    dir = Dir.WRITE;
    run = () => device.write(gpa, z, immediate(i, z));
  } else if (op === TWO + 0xb6 || op === TWO + 0xb7 || op === TWO + 0xbe || op === TWO + 0xbf ||
    i.def.name === 'movsxd') {
    // MOVZX/MOVSX r, r/m8 or r/m16; MOVSXD r, r/m32, or r/m16 with a 16-bit operand size (SDM vol. 2,
    // MOVSX/MOVSXD). 63 outside 64-bit mode is ARPL.
    const signed = op !== TWO + 0xb6 && op !== TWO + 0xb7;
    const from: Size = op === 0x63 ? (z === 2 ? 2 : 4) : (op & 1) ? 2 : 1;
    size = from;
    dir = Dir.READ;
    run = () => {
      let v = readDevice(device, gpa, from);
      if (signed) v = BigInt.asUintN(64, BigInt.asIntN(from * 8, v));
      setReg(guest, i.reg, z, v & MASK[z]!);
    };
  } else if (op < 0x40 && (op & 7) < 4) {
    // ADD OR ADC SBB AND SUB XOR CMP: r/m, r (bit 1 clear) or r, r/m (bit 1 set)
    const aluOp: Op = op >> 3, toReg = (op & 2) !== 0;
    dir = toReg || aluOp === Op.CMP ? Dir.READ : Dir.READ_WRITE;
    run = toReg
      ? () => {
        const b = readDevice(device, gpa, z);
        const r = arith(guest, aluOp, z, getReg(guest, regOperand(i), z), b);
        if (aluOp !== Op.CMP) setReg(guest, regOperand(i), z, r);
      }
      : () => modify(guest, device, gpa, aluOp, z, getReg(guest, regOperand(i), z));
  } else if (op >= 0x80 && op <= 0x83) {
    // Group 1: OP r/m, imm (82 is 80's alias outside 64-bit mode)
    const aluOp: Op = i.reg & 7;
    dir = aluOp === Op.CMP ? Dir.READ : Dir.READ_WRITE;
    run = () => modify(guest, device, gpa, aluOp, z, immediate(i, z));
  } else if (op === 0x84 || op === 0x85) {
    // TEST r/m, r
    dir = Dir.READ;
    run = () => modify(guest, device, gpa, Op.TEST, z, getReg(guest, regOperand(i), z));
  } else if ((op === 0xf6 || op === 0xf7) && i.def.name === 'test') {
    // TEST r/m, imm (group 3 /0; /1 is its alias)
    dir = Dir.READ;
    run = () => modify(guest, device, gpa, Op.TEST, z, immediate(i, z));
  } else if (op === 0x86 || op === 0x87) {
    // XCHG r/m, r: a read then a write, locked whatever the prefix (SDM vol. 2, XCHG)
    dir = Dir.READ_WRITE;
    run = () => {
      const m = readDevice(device, gpa, z);
      device.write(gpa, z, getReg(guest, regOperand(i), z));
      setReg(guest, regOperand(i), z, m);
    };
  } else {
    return unsupported(`${what} is not emulated on MMIO`);
  }

  // An RMW instruction reads first, so a page missing from EPT reports the read;
  // a page mapped read-only reports the write (SDM vol. 3C, 28.2.1, table 28-7).
  if (dir === Dir.READ && write) return unsupported(`${what} reads memory but the EPT violation reports a write`);
  if (dir === Dir.WRITE && !write) return unsupported(`${what} writes memory but the EPT violation reports a read`);
  if ((gpa % PAGE_SIZE) + size > PAGE_SIZE) {
    return unsupported(`${what}: ${size}-byte access at ${hex(BigInt(gpa))} crosses a page boundary`);
  }
  // Paging and EPT keep bits 11:0 of the address (SDM vol. 3A, 4.3; vol. 3C, 29.3.2), so an operand whose
  // offset disagrees there is not the one that faulted (the second page of a split access, or changed code).
  if (guest.codeSize === 8 && !i.segBase) {
    const low = operandLow12(guest, i);
    if (low !== gpa % PAGE_SIZE) {
      return unsupported(`${what}: operand offset ends in ${hex(BigInt(low))}, the EPT violation's address ` +
        `${hex(BigInt(gpa))} does not (an access split across pages?)`);
    }
  }
  run();
  return { kind: 'done', length: i.len };
}

/** Up to 15 bytes at CS:RIP; only those before the page end when the next page is not mapped. */
/** Up to 15 bytes at the guest's CS:RIP, fewer when the next page cannot be fetched; null when none can. */
export function fetchInstruction(guest: GuestView): Uint8Array | null {
  // The linear address wraps at 4 GiB outside 64-bit mode (SDM vol. 3A, 3.4.4 and 3.3).
  const linear = guest.codeSize === 8 ? guest.rip : (guest.rip + (guest.csBase ?? 0n)) & 0xffffffffn;
  const all = guest.fetch(linear, MAX_LENGTH);
  if (all !== null) return all;
  const toPageEnd = PAGE_SIZE - Number(linear & 0xfffn);
  return toPageEnd < MAX_LENGTH ? guest.fetch(linear, toPageEnd) : null;
}

/** The register operand ModRM.reg as a register code of its size (AH-BH are HIGH_BYTE + n without REX). */
function regOperand(i: Insn): number {
  return i.opSize === 1 ? i.regB : i.reg;
}

function getReg(guest: GuestView, code: number, size: Size): bigint {
  if (size === 1 && code >= HIGH_BYTE) return (guest.reg(code - HIGH_BYTE) >> 8n) & 0xffn;
  return guest.reg(code) & MASK[size]!;
}

/** A 32-bit write zeroes bits 63:32; 8- and 16-bit writes keep the rest (SDM vol. 1, 3.4.1.1). */
function setReg(guest: GuestView, code: number, size: Size, v: bigint): void {
  if (size === 8 || size === 4) { guest.setReg(code, v & MASK[size]!); return; }
  const n = code >= HIGH_BYTE ? code - HIGH_BYTE : code;
  const shift = code >= HIGH_BYTE ? 8n : 0n;
  const field = MASK[size]! << shift;
  guest.setReg(n, (guest.reg(n) & (MASK[8]! ^ field)) | ((v << shift) & field));
}

function readDevice(device: MmioAccess, gpa: number, size: Size): bigint {
  return device.read(gpa, size) & MASK[size]!;
}

/** The immediate at the operand size (the decoder has already sign-extended imm8/imm32). */
function immediate(i: Insn, size: Size): bigint {
  const lo = BigInt(i.imm >>> 0);
  return size === 8 ? (BigInt(i.immHi >>> 0) << 32n) | lo : lo & MASK[size]!;
}

/** OP m, src: read, compute and set flags, write back unless CMP or TEST. */
function modify(guest: GuestView, device: MmioAccess, gpa: number, op: Op, size: Size, src: bigint): void {
  const r = arith(guest, op, size, readDevice(device, gpa, size), src);
  if (op !== Op.CMP && op !== Op.TEST) device.write(gpa, size, r);
}

/**
 * a OP b at `size` bytes; sets the six status flags in the guest's RFLAGS as the
 * processor does (flags.ts, SDM vol. 1, 3.4.3.1 and each instruction's "Flags
 * Affected"). AND/OR/XOR/TEST leave AF undefined; flags.ts reads it as 0, as Intel parts do.
 */
function arith(guest: GuestView, op: Op, size: Size, a: bigint, b: bigint): bigint {
  const m = MASK[size]!;
  const s = flagState;
  s.flags = guest.rflags; s.lazyMask = 0;
  const aLo = lo32(a), aHi = size === 8 ? hi32(a) : 0, bLo = lo32(b), bHi = size === 8 ? hi32(b) : 0;
  const cin = (op === Op.ADC || op === Op.SBB) && (guest.rflags & CF) ? 1n : 0n;
  let r: bigint;
  switch (op) {
    case Op.ADD: case Op.ADC: r = (a + b + cin) & m; break;
    case Op.SUB: case Op.SBB: case Op.CMP: r = (a - b - cin) & m; break;
    case Op.OR: r = a | b; break;
    case Op.XOR: r = a ^ b; break;
    default: r = a & b; break;
  }
  const rLo = lo32(r), rHi = size === 8 ? hi32(r) : 0;
  switch (op) {
    case Op.ADD: setLazy(s, FlagOp.ADD, size, aLo, aHi, bLo, bHi, rLo, rHi); break;
    case Op.SUB: case Op.CMP: setLazy(s, FlagOp.SUB, size, aLo, aHi, bLo, bHi, rLo, rHi); break;
    case Op.ADC: setLazyCarry(s, FlagOp.ADC, size, Number(cin), aLo, aHi, bLo, bHi, rLo, rHi); break;
    case Op.SBB: setLazyCarry(s, FlagOp.SBB, size, Number(cin), aLo, aHi, bLo, bHi, rLo, rHi); break;
    default: setLazyLogic(s, size, rLo, rHi); break;
  }
  guest.setRflags((guest.rflags & ~STATUS_FLAGS) | (materialize(s) & STATUS_FLAGS));
  return r;
}

const lo32 = (v: bigint): number => Number(v & 0xffffffffn) | 0;
const hi32 = (v: bigint): number => Number((v >> 32n) & 0xffffffffn) | 0;

/** Bits 11:0 of the memory operand's offset (base + index * scale + displacement; RIP-relative from the next instruction). */
function operandLow12(guest: GuestView, i: Insn): number {
  let ea = i.disp & 0xfff;
  if (i.base === BASE_RIP) ea += Number((guest.rip + BigInt(i.len)) & 0xfffn);
  else if (i.base >= 0) ea += Number(guest.reg(i.base) & 0xfffn);
  if (i.index >= 0) ea += Number(guest.reg(i.index) & 0xfffn) << i.scale;
  return ea & 0xfff;
}

/** "ADD (opcode 01)": the instruction named for reasons. */
function describe(i: Insn): string {
  const map = i.opcode >> 8, byte = (i.opcode & 0xff).toString(16).toUpperCase().padStart(2, '0');
  const prefix = ['', '0F ', '0F 38 ', '0F 3A ', 'VEX.0F ', 'VEX.0F38 ', 'VEX.0F3A '][map] ?? '';
  return `${i.def.name.toUpperCase()} (opcode ${prefix}${byte}H)`;
}

function hex(v: bigint): string {
  return `${v.toString(16).toUpperCase()}H`;
}
