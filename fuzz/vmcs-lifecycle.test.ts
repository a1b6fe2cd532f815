/**
 * Model-based test of the VMCS lifecycle: random sequences of VMXON, VMXOFF,
 * VMCLEAR, VMPTRLD, VMPTRST, VMREAD, VMWRITE, VMLAUNCH and VMRESUME, each
 * executed as a real instruction on one processor, checked against a small
 * model written from the instructions' "Operation" sections (SDM vol. 3C,
 * chapter 31; 31.2 "Conventions" for VMsucceed / VMfailInvalid / VMfailValid;
 * 25.1 and 25.11 for the VMCS states).
 *
 * The model knows, per VMCS region, the field values written (or read back),
 * the launch state, and whether the VMCS would pass VM entry (which fields
 * were last written with a value that breaks a control, host or guest check).
 * A VMCS that stays active across VMXOFF has undefined contents afterwards
 * (25.11.1: software should VMCLEAR it first): the model then accepts any of
 * the results the SDM allows and learns from what it observes.
 *
 * A VMCS made valid (MakeValid: VMWRITE of every field of validVmcs) really
 * enters: the guest is one VMCALL, which exits to the host's HLT.
 * HVSIM_FUZZ_RUNS multiplies the number of sequences.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Field as F, VMCS_FIELDS, fieldByEncoding, fieldExists, fieldType, type FieldWidth } from '../vmcs/fields.js';
import { ExitReason, EXIT_REASON_VM_ENTRY_FAILURE } from '../vmcs/exit-reasons.js';
import { VmInstructionError as E } from '../vmcs/instruction-errors.js';
import { Cpu, type StopReason } from '../src/cpu/cpu.js';
import { MAXPHYADDR } from '../src/cpu/paging.js';
import { buildIdentityMap } from '../src/cpu/reset.js';
import { run } from '../src/cpu/run.js';
import { SKYLAKE_VMX, supports } from '../src/vmx/capabilities.js';
import { validVmcs } from '../src/vmx/valid-vmcs.js';
import { attachVmx, type Vmx } from '../src/vmx/vmx.js';

const SCALE = Math.max(1, Math.floor(Number(process.env.HVSIM_FUZZ_RUNS) || 1));
const SEED = Number(process.env.HVSIM_FUZZ_SEED ?? 0x11fe) | 0;
const caps = SKYLAKE_VMX;

const MEMORY = 8 * 1024 * 1024;
const VMXON_REGION = 0x20000, A = 0x21000, B = 0x22000, C = 0x23000, WRONG_REVISION = 0x24000;
const UNALIGNED = A + 8, BEYOND = 2 ** MAXPHYADDR; // not 4-KByte aligned; beyond the physical-address width
const REGIONS = [VMXON_REGION, A, B, C, WRONG_REVISION];
const ADDRESSES = [...REGIONS, UNALIGNED, BEYOND];
const POINTER = 0x9000, CODE = 0x500000;
const VALID = validVmcs(caps); // its HOST_RIP (a HLT), GUEST_RIP (a VMCALL), HOST_CR3 and GUEST_CR3 are set up below
const CF = 1, ZF = 0x40;

const le64 = (x: bigint): number[] => Array.from({ length: 8 }, (_, k) => Number((BigInt.asUintN(64, x) >> BigInt(8 * k)) & 0xffn));
const movRax = (x: bigint): number[] => [0x48, 0xb8, ...le64(x)];
const movRbx = (x: bigint): number[] => [0x48, 0xbb, ...le64(x)];
const VMXON = [0xf3, 0x0f, 0xc7, 0x30], VMCLEAR = [0x66, 0x0f, 0xc7, 0x30], VMPTRLD = [0x0f, 0xc7, 0x30], VMPTRST = [0x0f, 0xc7, 0x38];
const VMWRITE_RAX_RBX = [0x0f, 0x79, 0xc3], VMREAD_RBX_RAX = [0x0f, 0x78, 0xc3];
const VMLAUNCH = [0x0f, 0x01, 0xc2], VMRESUME = [0x0f, 0x01, 0xc3], VMXOFF = [0x0f, 0x01, 0xc4];

// ---- the model -------------------------------------------------------------------------

type Kind = 'controls' | 'host' | 'guest';
/** Why a VMCS would fail VM entry: per kind, the causes ('zeros' for a never-written VMCS, or a field name). */
type Broken = Record<Kind, Set<string>> | 'unknown';
interface Region {
  /** Known field values by full or high encoding's full field; a field missing here is unknown when `unknown`, else 0. */
  fields: Map<number, bigint>;
  unknown: boolean;
  launch: 'clear' | 'launched' | 'unknown';
  broken: Broken;
}
interface Model {
  on: boolean;
  vmxonPointer: number;
  current: number | null;
  /** Regions made active by VMPTRLD and not VMCLEARed since (25.11.1). */
  active: Set<number>;
  regions: Map<number, Region>;
}

function newModel(): Model {
  const regions = new Map<number, Region>();
  for (const r of REGIONS) {
    regions.set(r, { fields: new Map(), unknown: false, launch: 'clear', broken: { controls: new Set(['zeros']), host: new Set(['zeros']), guest: new Set(['zeros']) } });
  }
  return { on: false, vmxonPointer: -1, current: null, active: new Set(), regions };
}

/** The result of one instruction: #UD, VMsucceed, VMfailInvalid, VMfailValid(n), or VM entry then exit (reason). */
type Result = { ud: true } | { ud: false; flags: 'succeed' | 'failInvalid' } | { ud: false; flags: 'failValid'; error: number }
  | { ud: false; flags: 'exit'; reason: number };

// ---- the processor ---------------------------------------------------------------------

interface Real { cpu: Cpu; vmx: Vmx; next: number }

function newReal(): Real {
  const cpu = new Cpu({ memorySize: MEMORY });
  cpu.enterFlat64();
  const vmx = attachVmx(cpu, caps);
  cpu.cr0 |= 1 << 5; // NE (IA32_VMX_CR0_FIXED0)
  cpu.cr4 |= 1 << 13; // VMXE
  cpu.msrs.featureControl = 5; // locked, VMX outside SMX
  for (const r of REGIONS) cpu.memory.write32(r, r === WRONG_REVISION ? caps.revision + 1 : caps.revision);
  buildIdentityMap(cpu, VALID.num(F.HOST_CR3), MEMORY);
  buildIdentityMap(cpu, VALID.num(F.GUEST_CR3), MEMORY);
  cpu.memory.load(VALID.num(F.GUEST_RIP), Uint8Array.of(0x0f, 0x01, 0xc1)); // the guest: VMCALL
  cpu.memory.write8(VALID.num(F.HOST_RIP), 0xf4); // the host after a VM exit: HLT
  return { cpu, vmx, next: CODE };
}

/** Runs `code` then HLT at a fresh address in root operation. */
function exec(real: Real, code: number[]): StopReason {
  const { cpu } = real, at = real.next;
  cpu.memory.load(at, Uint8Array.from([...code, 0xf4]));
  real.next = (at + code.length + 16) & ~15;
  cpu.ripLo = at; cpu.ripHi = 0;
  cpu.halted = false;
  return run(cpu, 20_000);
}

/** Runs a VMX instruction sequence and reads what happened. */
function observe(real: Real, code: number[]): Result {
  const { cpu, vmx } = real;
  const stop = exec(real, code);
  if (stop.kind === 'exception') {
    expect(stop).toEqual({ kind: 'exception', vector: 6, errorCode: null });
    return { ud: true };
  }
  expect(stop).toEqual({ kind: 'halt' });
  const hostRip = VALID.num(F.HOST_RIP) + 1;
  if (cpu.ripLo === hostRip && cpu.ripHi === 0) return { ud: false, flags: 'exit', reason: vmx.current!.lo(F.EXIT_REASON) >>> 0 };
  const f = cpu.rflags & (CF | ZF);
  if (f === 0) return { ud: false, flags: 'succeed' };
  if (f === CF) return { ud: false, flags: 'failInvalid' };
  expect(f).toBe(ZF);
  return { ud: false, flags: 'failValid', error: vmx.current!.lo(F.VM_INSTRUCTION_ERROR) };
}

function setPointer(real: Real, address: number): void {
  real.cpu.memory.write32(POINTER, address % 2 ** 32);
  real.cpu.memory.write32(POINTER + 4, Math.floor(address / 2 ** 32));
}

// ---- model rules (31.2, 31.3) -------------------------------------------------------------

const hex = (n: number): string => `0x${n.toString(16)}`;
const region = (m: Model, addr: number): Region => m.regions.get(addr)!;
/** VMfail(n): VMfailValid with a current VMCS (the error goes to its VM-instruction error field), else VMfailInvalid. */
function vmfail(m: Model, error: number): Result {
  if (m.current === null) return { ud: false, flags: 'failInvalid' };
  region(m, m.current).fields.set(F.VM_INSTRUCTION_ERROR, BigInt(error));
  return { ud: false, flags: 'failValid', error };
}
const SUCCEED: Result = { ud: false, flags: 'succeed' };
const UD: Result = { ud: true };
/** 31.3: a memory operand that is a VMCS or VMXON pointer must be 4-KByte aligned and within MAXPHYADDR. */
const validAddress = (a: number): boolean => a % 4096 === 0 && a < 2 ** MAXPHYADDR;
/** Data of a VMCS active across VMXOFF is undefined (25.11.1). */
function forget(r: Region): void {
  r.fields.clear(); r.unknown = true; r.launch = 'unknown'; r.broken = 'unknown';
}

/** A 64-bit field's value as the width keeps it (25.11.2). */
function truncate(width: FieldWidth, x: bigint): bigint {
  return width === '16' ? x & 0xffffn : width === '32' ? x & 0xffffffffn : BigInt.asUintN(64, x);
}

// ---- fields the commands use --------------------------------------------------------------------

interface FieldChoice {
  readonly name: string;
  /** Encoding as given to VMREAD/VMWRITE (bits 63:32 included). */
  readonly encoding: bigint;
  /** null: no field has the encoding on this model (VMfailValid(12)). */
  readonly width: FieldWidth | null;
  /** Writes of `valid` pass, of anything else break VM entry of `kind`. */
  readonly breaks?: { kind: Kind; valid: bigint };
}
const FIELDS: FieldChoice[] = [
  { name: 'CR0_READ_SHADOW', encoding: BigInt(F.CR0_READ_SHADOW), width: 'natural' },
  { name: 'CR0_GUEST_HOST_MASK', encoding: BigInt(F.CR0_GUEST_HOST_MASK), width: 'natural' },
  { name: 'EXCEPTION_BITMAP', encoding: BigInt(F.EXCEPTION_BITMAP), width: '32' },
  { name: 'TSC_OFFSET', encoding: BigInt(F.TSC_OFFSET), width: '64' },
  { name: 'TSC_OFFSET_HIGH', encoding: BigInt(F.TSC_OFFSET | 1), width: '32' },
  { name: 'GUEST_IA32_SYSENTER_CS', encoding: BigInt(F.GUEST_IA32_SYSENTER_CS), width: '32' },
  { name: 'HOST_IA32_SYSENTER_CS', encoding: BigInt(F.HOST_IA32_SYSENTER_CS), width: '32' },
  { name: 'GUEST_LDTR_SELECTOR', encoding: BigInt(F.GUEST_LDTR_SELECTOR), width: '16' },
  // Read-only fields take VMWRITE: IA32_VMX_MISC[29] = 1 on this model.
  { name: 'EXIT_QUALIFICATION', encoding: BigInt(F.EXIT_QUALIFICATION), width: 'natural' },
  { name: 'VM_INSTRUCTION_ERROR', encoding: BigInt(F.VM_INSTRUCTION_ERROR), width: '32' },
  { name: 'EXIT_REASON', encoding: BigInt(F.EXIT_REASON), width: '32' },
  { name: 'PIN_BASED_VM_EXECUTION_CONTROLS', encoding: BigInt(F.PIN_BASED_VM_EXECUTION_CONTROLS), width: '32',
    breaks: { kind: 'controls', valid: BigInt(VALID.lo(F.PIN_BASED_VM_EXECUTION_CONTROLS)) } },
  { name: 'HOST_CR4', encoding: BigInt(F.HOST_CR4), width: 'natural', breaks: { kind: 'host', valid: BigInt(VALID.lo(F.HOST_CR4)) } },
  { name: 'GUEST_RFLAGS', encoding: BigInt(F.GUEST_RFLAGS), width: 'natural', breaks: { kind: 'guest', valid: BigInt(VALID.lo(F.GUEST_RFLAGS)) } },
  // No field: an unused encoding, a field of a capability the model lacks (PML), bits 63:32 set.
  { name: 'encoding 7FFFH', encoding: 0x7fffn, width: null },
  { name: 'PML_ADDRESS', encoding: BigInt(F.PML_ADDRESS), width: null },
  { name: 'GUEST_RIP | 1 << 32', encoding: BigInt(F.GUEST_RIP) | (1n << 32n), width: null },
];
/** The stored field a choice reads or writes: the full encoding, and whether the access is to bits 63:32. */
function target(c: FieldChoice): { enc: number; high: boolean } {
  const found = fieldByEncoding(Number(c.encoding & 0x7fffn))!;
  return { enc: found.field.encoding, high: found.high };
}

/** Fields MakeValid writes: every writable field the model supports, with validVmcs's values. */
const WRITABLE = VMCS_FIELDS.filter((f) => f.type !== 'read-only' && fieldExists(f, (cap) => supports(caps, cap)));

// ---- commands ------------------------------------------------------------------------------------

type Cmd = fc.Command<Model, Real>;
const addressName = (a: number): string =>
  ({ [VMXON_REGION]: 'VMXON region', [A]: 'A', [B]: 'B', [C]: 'C', [WRONG_REVISION]: 'wrong-revision', [UNALIGNED]: 'unaligned', [BEYOND]: 'beyond MAXPHYADDR' })[a]!;

function expectResult(actual: Result, expected: Result, what: string): void {
  expect(actual, what).toEqual(expected);
}

class Vmxon implements Cmd {
  constructor(readonly addr: number) {}
  check(): boolean { return true; }
  run(m: Model, r: Real): void {
    setPointer(r, this.addr);
    const actual = observe(r, [...movRax(BigInt(POINTER)), ...VMXON]);
    let expected: Result;
    if (m.on) expected = vmfail(m, E.VMXON_IN_ROOT);
    // Outside VMX operation: the region's address and revision identifier (31.3 VMXON "Operation").
    else if (!validAddress(this.addr) || this.addr === WRONG_REVISION) expected = { ud: false, flags: 'failInvalid' };
    else {
      m.on = true; m.vmxonPointer = this.addr; m.current = null;
      expected = SUCCEED;
    }
    expectResult(actual, expected, this.toString());
  }
  toString(): string { return `VMXON(${addressName(this.addr)})`; }
}

class Vmxoff implements Cmd {
  check(): boolean { return true; }
  run(m: Model, r: Real): void {
    const actual = observe(r, VMXOFF);
    if (!m.on) { expectResult(actual, UD, 'VMXOFF'); return; }
    m.on = false; m.current = null;
    for (const a of m.active) forget(region(m, a));
    m.active.clear();
    expectResult(actual, SUCCEED, 'VMXOFF');
  }
  toString(): string { return 'VMXOFF'; }
}

class Vmclear implements Cmd {
  constructor(readonly addr: number) {}
  check(): boolean { return true; }
  run(m: Model, r: Real): void {
    setPointer(r, this.addr);
    const actual = observe(r, [...movRax(BigInt(POINTER)), ...VMCLEAR]);
    let expected: Result;
    if (!m.on) expected = UD;
    else if (!validAddress(this.addr)) expected = vmfail(m, E.VMCLEAR_INVALID_ADDRESS);
    else if (this.addr === m.vmxonPointer) expected = vmfail(m, E.VMCLEAR_VMXON_POINTER);
    else {
      // The VMCS data goes to the region, its launch state becomes clear; it is no longer current or active.
      region(m, this.addr).launch = 'clear';
      m.active.delete(this.addr);
      if (m.current === this.addr) m.current = null;
      expected = SUCCEED;
    }
    expectResult(actual, expected, this.toString());
  }
  toString(): string { return `VMCLEAR(${addressName(this.addr)})`; }
}

class Vmptrld implements Cmd {
  constructor(readonly addr: number) {}
  check(): boolean { return true; }
  run(m: Model, r: Real): void {
    setPointer(r, this.addr);
    const actual = observe(r, [...movRax(BigInt(POINTER)), ...VMPTRLD]);
    let expected: Result;
    if (!m.on) expected = UD;
    else if (!validAddress(this.addr)) expected = vmfail(m, E.VMPTRLD_INVALID_ADDRESS);
    else if (this.addr === m.vmxonPointer) expected = vmfail(m, E.VMPTRLD_VMXON_POINTER);
    else if (this.addr === WRONG_REVISION) expected = vmfail(m, E.VMPTRLD_INCORRECT_REVISION);
    else {
      m.current = this.addr; m.active.add(this.addr);
      expected = SUCCEED;
    }
    expectResult(actual, expected, this.toString());
  }
  toString(): string { return `VMPTRLD(${addressName(this.addr)})`; }
}

class Vmptrst implements Cmd {
  check(): boolean { return true; }
  run(m: Model, r: Real): void {
    r.cpu.memory.write32(POINTER + 8, 0x12345678);
    const actual = observe(r, [...movRax(BigInt(POINTER + 8)), ...VMPTRST]);
    if (!m.on) { expectResult(actual, UD, 'VMPTRST'); return; }
    expectResult(actual, SUCCEED, 'VMPTRST');
    // The current-VMCS pointer, FFFFFFFF_FFFFFFFFH when there is none.
    expect([r.cpu.memory.read32(POINTER + 8) >>> 0, r.cpu.memory.read32(POINTER + 12) >>> 0])
      .toEqual(m.current === null ? [0xffffffff, 0xffffffff] : [m.current, 0]);
  }
  toString(): string { return 'VMPTRST'; }
}

class Vmwrite implements Cmd {
  constructor(readonly field: FieldChoice, readonly value: bigint) {}
  check(): boolean { return true; }
  run(m: Model, r: Real): void {
    const actual = observe(r, [...movRax(this.field.encoding), ...movRbx(this.value), ...VMWRITE_RAX_RBX]);
    let expected: Result;
    if (!m.on) expected = UD;
    else if (m.current === null) expected = { ud: false, flags: 'failInvalid' };
    else if (this.field.width === null) expected = vmfail(m, E.UNSUPPORTED_VMCS_COMPONENT);
    else {
      write(region(m, m.current), this.field, this.value);
      expected = SUCCEED;
    }
    expectResult(actual, expected, this.toString());
  }
  toString(): string { return `VMWRITE(${this.field.name}, ${hex(Number(this.value >> 32n))}_${hex(Number(this.value & 0xffffffffn))})`; }
}

/** The model of a VMWRITE that succeeds (25.11.2: bits beyond the width dropped; a high access sets bits 63:32). */
function write(reg: Region, c: FieldChoice, value: bigint): void {
  const { enc, high } = target(c);
  if (high) {
    const old = reg.fields.get(enc) ?? (reg.unknown ? null : 0n);
    if (old === null) reg.fields.delete(enc);
    else reg.fields.set(enc, (old & 0xffffffffn) | ((value & 0xffffffffn) << 32n));
  } else {
    reg.fields.set(enc, truncate(c.width!, value));
  }
  if (c.breaks !== undefined && reg.broken !== 'unknown') {
    const ok = truncate(c.width!, value) === c.breaks.valid;
    if (ok) reg.broken[c.breaks.kind].delete(c.name); else reg.broken[c.breaks.kind].add(c.name);
  }
}

class Vmread implements Cmd {
  constructor(readonly field: FieldChoice) {}
  check(): boolean { return true; }
  run(m: Model, r: Real): void {
    const actual = observe(r, [...movRax(this.field.encoding), ...movRbx(0x5a5a5a5a5a5a5a5an), ...VMREAD_RBX_RAX]);
    let expected: Result;
    if (!m.on) expected = UD;
    else if (m.current === null) expected = { ud: false, flags: 'failInvalid' };
    else if (this.field.width === null) expected = vmfail(m, E.UNSUPPORTED_VMCS_COMPONENT);
    else {
      expected = SUCCEED;
      const reg = region(m, m.current), { enc, high } = target(this.field);
      const known = reg.fields.get(enc) ?? (reg.unknown ? null : 0n);
      const got = r.cpu.reg64(3);
      if (known !== null) expect(got, `${this.toString()} reads`).toBe(high ? known >> 32n : known);
      else if (!high) reg.fields.set(enc, got); // an undefined value, now read
    }
    expectResult(actual, expected, this.toString());
  }
  toString(): string { return `VMREAD(${this.field.name})`; }
}

/** MakeValid: VMWRITE of every writable field of validVmcs (the VMCS then passes VM entry). */
class MakeValid implements Cmd {
  check(): boolean { return true; }
  run(m: Model, r: Real): void {
    const code: number[] = [];
    for (const f of WRITABLE) {
      const k = VALID.values, idx = VMCS_FIELDS.indexOf(f);
      const value = (BigInt(k[2 * idx + 1]! >>> 0) << 32n) | BigInt(k[2 * idx]! >>> 0);
      code.push(...movRax(BigInt(f.encoding)), ...movRbx(value), ...VMWRITE_RAX_RBX);
    }
    const actual = observe(r, code);
    let expected: Result;
    if (!m.on) expected = UD;
    else if (m.current === null) expected = { ud: false, flags: 'failInvalid' };
    else {
      const reg = region(m, m.current);
      for (const f of WRITABLE) {
        const idx = VMCS_FIELDS.indexOf(f);
        reg.fields.set(f.encoding, (BigInt(VALID.values[2 * idx + 1]! >>> 0) << 32n) | BigInt(VALID.values[2 * idx]! >>> 0));
      }
      reg.broken = { controls: new Set(), host: new Set(), guest: new Set() };
      expected = SUCCEED;
    }
    expectResult(actual, expected, 'MakeValid');
  }
  toString(): string { return 'MakeValid'; }
}

class Launch implements Cmd {
  constructor(readonly launch: boolean) {}
  check(): boolean { return true; }
  run(m: Model, r: Real): void {
    const actual = observe(r, this.launch ? VMLAUNCH : VMRESUME);
    const name = this.toString();
    if (!m.on) { expectResult(actual, UD, name); return; }
    if (m.current === null) { expectResult(actual, { ud: false, flags: 'failInvalid' }, name); return; }
    const reg = region(m, m.current);
    // 31.3: VMLAUNCH needs launch state clear (error 4), VMRESUME launched (error 5; 6 may be reported after VMXOFF).
    const wrongState = this.launch ? reg.launch === 'launched' : reg.launch === 'clear';
    if (wrongState) { expectResult(actual, vmfail(m, this.launch ? E.VMLAUNCH_NONCLEAR_VMCS : E.VMRESUME_NONLAUNCHED_VMCS), name); return; }
    let expected: Result | null = null;
    if (reg.launch !== 'unknown' && reg.broken !== 'unknown') {
      // 27.2 (VMfailValid 7, 8), then 27.3.1 (a VM exit with reason 80000021H), else the guest's VMCALL exits (reason 18).
      const b = reg.broken;
      expected = b.controls.size > 0 ? vmfail(m, E.ENTRY_INVALID_CONTROL_FIELDS)
        : b.host.size > 0 ? vmfail(m, E.ENTRY_INVALID_HOST_STATE)
          : { ud: false, flags: 'exit', reason: b.guest.size > 0 ? (ExitReason.VM_ENTRY_FAILURE_INVALID_GUEST_STATE | EXIT_REASON_VM_ENTRY_FAILURE) >>> 0 : ExitReason.VMCALL };
      expectResult(actual, expected, name);
    } else {
      // Undefined VMCS contents: any outcome the SDM allows; the model takes what it sees.
      const allowed = actual.ud === false && (actual.flags === 'exit'
        ? actual.reason === ExitReason.VMCALL || actual.reason === ((ExitReason.VM_ENTRY_FAILURE_INVALID_GUEST_STATE | EXIT_REASON_VM_ENTRY_FAILURE) >>> 0)
        : actual.flags === 'failValid' && [4, 5, 6, 7, 8].includes(actual.error));
      expect(allowed, `${name}: ${JSON.stringify(actual)}`).toBe(true);
      if (actual.ud === false && actual.flags === 'failValid') {
        reg.fields.set(F.VM_INSTRUCTION_ERROR, BigInt(actual.error));
        if (actual.error === 4) reg.launch = 'launched';
        if (actual.error === 5 || actual.error === 6) reg.launch = 'clear';
      }
    }
    if (actual.ud === false && actual.flags === 'exit') {
      // The exit wrote the exit-information fields and (after a real entry) saved the guest state (28.2, 28.3).
      for (const enc of [...reg.fields.keys()]) {
        const t = fieldType(enc);
        if (t === 'read-only' || (actual.reason === ExitReason.VMCALL && t === 'guest') ||
            enc === F.VM_ENTRY_CONTROLS || enc === F.VM_ENTRY_INTERRUPTION_INFORMATION_FIELD) reg.fields.delete(enc);
      }
      reg.unknown = true;
      reg.fields.set(F.EXIT_REASON, BigInt(actual.reason));
      if (actual.reason === ExitReason.VMCALL) {
        reg.fields.set(F.VM_EXIT_INSTRUCTION_LENGTH, 3n);
        reg.fields.set(F.GUEST_RIP, BigInt(VALID.num(F.GUEST_RIP))); // 28.3.3: the VMCALL's own address
        reg.launch = this.launch ? 'launched' : reg.launch;
        if (reg.broken === 'unknown') reg.broken = { controls: new Set(), host: new Set(), guest: new Set() };
      } else if (reg.broken === 'unknown') {
        reg.broken = { controls: new Set(), host: new Set(), guest: new Set(['undefined']) };
      }
      if (reg.launch === 'unknown' && this.launch) reg.launch = actual.reason === ExitReason.VMCALL ? 'launched' : 'clear';
      if (reg.launch === 'unknown' && !this.launch) reg.launch = 'launched';
    }
  }
  toString(): string { return this.launch ? 'VMLAUNCH' : 'VMRESUME'; }
}

// ---- the property ------------------------------------------------------------------------------

const address = fc.constantFrom(...ADDRESSES);
const usual = fc.constantFrom(A, B, C);
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
/** Weighted so that sequences spend most of their time in VMX operation with a current VMCS. */
const commands = [
  { weight: 3, arbitrary: fc.constantFrom(VMXON_REGION, VMXON_REGION, VMXON_REGION, A, UNALIGNED, WRONG_REVISION).map((a): Cmd => new Vmxon(a)) },
  { weight: 1, arbitrary: fc.constant<Cmd>(new Vmxoff()) },
  { weight: 2, arbitrary: fc.oneof(usual, address).map((a): Cmd => new Vmclear(a)) },
  { weight: 4, arbitrary: fc.oneof(usual, usual, address).map((a): Cmd => new Vmptrld(a)) },
  { weight: 1, arbitrary: fc.constant<Cmd>(new Vmptrst()) },
  {
    weight: 5,
    arbitrary: fc.record({ field: fc.constantFrom(...FIELDS), value: u64, keep: fc.boolean(), high: fc.bigInt({ min: 0n, max: 0xffffffffn }) })
      .map(({ field, value, keep, high }): Cmd => {
        // Breaking fields: their valid value (a 32-bit field with junk in bits 63:32, which VMWRITE drops) or a random one.
        if (field.breaks === undefined || !keep) return new Vmwrite(field, value);
        return new Vmwrite(field, field.breaks.valid | (field.width === '32' ? high << 32n : 0n));
      }),
  },
  { weight: 4, arbitrary: fc.constantFrom(...FIELDS).map((f): Cmd => new Vmread(f)) },
  { weight: 2, arbitrary: fc.constant<Cmd>(new MakeValid()) },
  { weight: 4, arbitrary: fc.boolean().map((l): Cmd => new Launch(l)) },
];

describe('VMCS lifecycle: VMX instructions against a model of their Operation sections (SDM vol. 3C, 31.2, 31.3, 25.1, 25.11)', () => {
  it('31.3: random sequences of VMXON, VMXOFF, VMCLEAR, VMPTRLD, VMPTRST, VMREAD, VMWRITE, VMLAUNCH, VMRESUME give the results the model predicts', () => {
    fc.assert(fc.property(fc.commands([fc.oneof(...commands)], { maxCommands: 60, size: 'max' }), (cmds) => {
      fc.modelRun(() => ({ model: newModel(), real: newReal() }), cmds);
    }), { numRuns: 150 * SCALE, seed: SEED });
  });

  it('31.3: VMXON, VMPTRLD, MakeValid, VMLAUNCH enters and the guest\'s VMCALL exits; VMRESUME enters again; VMLAUNCH again is VMfailValid(4)', () => {
    const model = newModel(), real = newReal();
    const seq: Cmd[] = [new Vmxon(VMXON_REGION), new Vmptrld(A), new Launch(true), new MakeValid(), new Launch(false), new Launch(true),
      new Launch(false), new Launch(true), new Vmread(FIELDS[10]!), new Vmclear(A), new Vmptrld(A), new Launch(false), new Launch(true)];
    for (const c of seq) c.run(model, real);
    expect(real.vmx.current!.launched).toBe(true);
    expect(real.vmx.current!.lo(F.EXIT_REASON)).toBe(ExitReason.VMCALL);
  });
});
