/**
 * The exit trace of every guest that runs under the hypervisor, checked exit
 * by exit against iced-x86, a decoder no one here wrote: each instruction exit
 * names the instruction at the guest's RIP (28.3.3: RIP of the exiting
 * instruction), its VM-exit instruction length is that instruction's length
 * (28.2.5), and its exit qualification says what the instruction does (28.2.1,
 * table 28-5 for I/O, 28-3 for control-register access). Sequence numbers run
 * 1, 2, 3, ..., and the instructions between exits add up to the run's.
 */
import { readFileSync } from 'node:fs';
import { Decoder, DecoderOptions, Mnemonic, OpKind, Register, type Instruction } from 'iced-x86';
import { describe, expect, it } from 'vitest';
import { ExitReason } from '../../vmcs/exit-reasons.js';
import { parseArgs, type RunOptions } from '../../src/cli/args.js';
import { bundledGuest } from '../../src/cli/hvsim.js';
import { vmConfig } from '../../src/hv/config.js';
import { fetchInstruction } from '../../src/hv/mmio.js';
import type { ExitRecord } from '../../src/hv/record.js';
import { createVm } from '../../src/hv/vm.js';
import { GUESTS } from './bundled-guests.js';

const R = ExitReason;

/** The mnemonics each instruction exit may come from (26.1, 26.2 and 25.6). */
const EXITING: Partial<Record<number, readonly Mnemonic[]>> = {
  [R.CPUID]: [Mnemonic.Cpuid],
  [R.HLT]: [Mnemonic.Hlt],
  [R.RDMSR]: [Mnemonic.Rdmsr],
  [R.WRMSR]: [Mnemonic.Wrmsr],
  [R.XSETBV]: [Mnemonic.Xsetbv],
  [R.VMCALL]: [Mnemonic.Vmcall],
  [R.INVLPG]: [Mnemonic.Invlpg],
  [R.RDTSC]: [Mnemonic.Rdtsc],
  [R.IO_INSTRUCTION]: [Mnemonic.In, Mnemonic.Out, Mnemonic.Insb, Mnemonic.Insw, Mnemonic.Insd, Mnemonic.Outsb, Mnemonic.Outsw, Mnemonic.Outsd],
  [R.CONTROL_REGISTER_ACCESS]: [Mnemonic.Mov, Mnemonic.Clts, Mnemonic.Lmsw],
};

function crIndex(r: Register): number { return r - Register.CR0; }
function gprIndex(r: Register): number {
  for (const base of [Register.RAX, Register.EAX]) if (r >= base && r < base + 16) return r - base;
  throw new Error(`not a 32/64-bit GPR: ${r}`);
}

/** What table 28-5 says an I/O instruction's qualification holds. */
function checkIo(e: ExitRecord, insn: Instruction): void {
  const d = e.decoded, m = insn.mnemonic;
  const string = m !== Mnemonic.In && m !== Mnemonic.Out;
  const isIn = m === Mnemonic.In || m === Mnemonic.Insb || m === Mnemonic.Insw || m === Mnemonic.Insd;
  expect(d.DIRECTION, 'direction (1 = IN)').toBe(isIn ? 1 : 0);
  expect(d.STRING_INSTRUCTION).toBe(string ? 1 : 0);
  expect(d.REP_PREFIXED).toBe(insn.hasRepPrefix ? 1 : 0);
  // The data operand: AL/AX/EAX for IN/OUT, the element for INS/OUTS.
  const data = isIn ? insn.op0Register : insn.op1Register;
  const size = string ? [Mnemonic.Insb, Mnemonic.Outsb].includes(m) ? 1 : [Mnemonic.Insw, Mnemonic.Outsw].includes(m) ? 2 : 4
    : data === Register.AL ? 1 : data === Register.AX ? 2 : data === Register.EAX ? 4 : 0;
  expect(d.SIZE_OF_ACCESS! + 1, 'size of access').toBe(size);
  const portOperand = string ? -1 : isIn ? 1 : 0;
  const immediate = portOperand >= 0 && insn.opKind(portOperand) === OpKind.Immediate8;
  expect(d.OPERAND_ENCODING, 'operand encoding (1 = immediate)').toBe(immediate ? 1 : 0);
  if (immediate) expect(d.PORT_NUMBER).toBe(insn.immediate8);
}

/** Table 28-3: MOV to/from CRn with its GPR, CLTS, LMSW. */
function checkCr(e: ExitRecord, insn: Instruction): void {
  const d = e.decoded;
  if (insn.mnemonic === Mnemonic.Clts) { expect(d.ACCESS_TYPE).toBe(2); return; }
  if (insn.mnemonic === Mnemonic.Lmsw) { expect(d.ACCESS_TYPE).toBe(3); return; }
  const toCr = insn.opKind(0) === OpKind.Register && insn.op0Register >= Register.CR0 && insn.op0Register <= Register.CR15;
  expect(d.ACCESS_TYPE).toBe(toCr ? 0 : 1);
  expect(d.CONTROL_REGISTER).toBe(crIndex(toCr ? insn.op0Register : insn.op1Register));
  expect(d.GENERAL_PURPOSE_REGISTER).toBe(gprIndex(toCr ? insn.op1Register : insn.op0Register));
}

interface Traced { exits: ExitRecord[]; checked: number; instructions: number }

/** Runs a guest under the hypervisor with the default handlers, checking each exit before its handler runs. */
function traceGuest(name: string, options: readonly string[]): Traced {
  const o = parseArgs(['run', bundledGuest(name), ...options]) as RunOptions;
  const vm = createVm(vmConfig({ memory: o.memory }));
  vm.load(readFileSync(bundledGuest(name)), { format: o.format, load: o.load, mode: o.mode, cmdline: o.cmdline || undefined });
  const exits: ExitRecord[] = [];
  let checked = 0;
  for (;;) {
    const e = vm.runUntilExit(50_000_000);
    if ('kind' in e) break;
    exits.push(e);
    const mnemonics = EXITING[e.reason];
    if (mnemonics !== undefined) {
      const bytes = fetchInstruction(vm.guest.view());
      expect(bytes, `exit ${e.seq} (${e.name}): the instruction at RIP can be fetched`).not.toBeNull();
      const bitness = ({ 2: 16, 4: 32, 8: 64 } as const)[vm.guest.codeSize];
      const insn = new Decoder(bitness, bytes!, DecoderOptions.None).decode();
      const where = `exit ${e.seq} (${e.name}) at ${e.rip.toString(16)}: ${e.insn}`;
      expect(mnemonics, where).toContain(insn.mnemonic);
      expect(e.length, `${where}: VM-exit instruction length`).toBe(insn.length);
      if (e.reason === R.IO_INSTRUCTION) checkIo(e, insn);
      if (e.reason === R.CONTROL_REGISTER_ACCESS) checkCr(e, insn);
      checked++;
    }
    const result = vm.handle(e);
    if (result !== 'resume' || vm.resume() !== null) break;
  }
  return { exits, checked, instructions: vm.instructions };
}

describe('exit traces: every exit of every guest agrees with iced-x86 (SDM vol. 3C 28.2.1, 28.2.5, 28.3.3)', () => {
  for (const [name, options] of GUESTS) {
    it(`guests/${name}`, () => {
      const t = traceGuest(name, options);
      expect(t.exits.length).toBeGreaterThan(0);
      expect(t.checked).toBeGreaterThan(0);
      expect(t.exits.map((e) => e.seq)).toEqual(t.exits.map((_, k) => k + 1));
      // Guest instructions between exits: each record's sinceLast adds to its own total.
      let sum = 0;
      for (const e of t.exits) { sum += e.sinceLast; expect(e.instructions, `exit ${e.seq}`).toBe(sum); }
      expect(sum).toBeLessThanOrEqual(t.instructions);
    });
  }
});
