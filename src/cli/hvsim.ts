/** The `hvsim` command: main() returns the exit status; output goes through `out` and `err`. */
import { writeFileSync } from 'node:fs';
import { exitReasonName } from '../../vmcs/exit-reasons.js';
import type { Cpu } from '../cpu/cpu.js';
import { GPR_NAMES, VECTOR_NAMES } from '../cpu/regs.js';
import { InternalError } from '../cpu/run.js';
import { ImageError, loadImage } from '../platform/loaders/index.js';
import { PcMachine, SOLO_QUANTUM } from '../platform/machine.js';
import { attachVmx, type Vmx } from '../vmx/vmx.js';
import { PROFILES } from '../cpu/profile.js';
import { vmConfig } from '../hv/config.js';
import type { ExitRecord } from '../hv/record.js';
import { createVm, VmConfigError, type Vm, type VmStop } from '../hv/vm.js';
import { EXIT, parseArgs, UsageError, USAGE, type RunOptions } from './args.js';
import { costProfiles, hypervisorSource, priceRun, runCost } from './cost.js';
import { CostRecorder } from '../cost/collect.js';
import { renderText, toJson } from '../cost/report.js';
import { bundledGuest, checkWritable, readImage, type Output } from './image.js';
import { Progress } from './progress.js';

export { bundledGuest, type Output, type Print } from './image.js';

const VERSION = '0.1.0';


/**
 * Exit statuses (documented in --help and the README). The model's own are even:
 * a debug-exit status ((v << 1) | 1) is always odd, so the two never collide.
 */


function hex(v: bigint): string { return `0x${v.toString(16)}`; }



/**
 * A failed VM entry is the guest hypervisor's business (VMfailValid or an exit
 * with reason bit 31), but its author wants to know which check failed: one
 * line on stderr, naming the check, the SDM section and the values.
 */
function watchEntries(vmx: Vmx, io: Output, json: boolean): void {
  if (json) return;
  vmx.onEntryFailure = (f) => {
    const result = f.kind === 'controls' ? 'VMfailValid(7)' : f.kind === 'host' ? 'VMfailValid(8)' : 'exit reason 0x80000021';
    io.err(`hvsim: VM entry failed with ${result}: ${f.check} (SDM ${f.section}): ${f.detail}`);
  };
}

/** What the processors counted: VM exits by reason, walks of both dimensions, TLB work (all processors together). */
interface Counts {
  vmExits: Record<string, number>;
  paging: { walks: number; references: number; tlbHits: number; flushes: Record<string, number> };
  ept: { walks: number; references: number };
}

function countsOf(units: readonly { cpu: Cpu; vmx: Vmx }[]): Counts {
  const c: Counts = { vmExits: {}, paging: { walks: 0, references: 0, tlbHits: 0, flushes: {} }, ept: { walks: 0, references: 0 } };
  for (const { cpu, vmx } of units) {
    vmx.exitCounts.forEach((n, reason) => {
      if (n > 0) { const name = exitReasonName(reason) ?? `reason ${reason}`; c.vmExits[name] = (c.vmExits[name] ?? 0) + n; }
    });
    const p = cpu.paging.counters;
    c.paging.walks += p.walks; c.paging.references += p.references; c.paging.tlbHits += p.hits;
    for (const [cause, n] of Object.entries(p.flushes)) c.paging.flushes[cause] = (c.paging.flushes[cause] ?? 0) + n;
    c.ept.walks += vmx.ept.counters.walks; c.ept.references += vmx.ept.counters.references;
  }
  return c;
}

/** The --stats lines after the MIPS line: exits by reason (most first), then walks and TLB work. */
function countLines(c: Counts): string[] {
  const lines: string[] = [];
  const exits = Object.entries(c.vmExits).sort((a, b) => b[1] - a[1]);
  if (exits.length > 0) {
    const total = exits.reduce((t, [, n]) => t + n, 0);
    lines.push(`hvsim: ${total} VM exits: ${exits.map(([name, n]) => `${name} ${n}`).join(', ')}`);
  }
  const flushes = Object.entries(c.paging.flushes).filter(([, n]) => n > 0).map(([cause, n]) => `${cause} ${n}`);
  lines.push(`hvsim: ${c.paging.walks} page walks (${c.paging.references} entries read), ${c.paging.tlbHits} TLB hits after a fast-path miss` +
    (flushes.length > 0 ? `; invalidations: ${flushes.join(', ')}` : ''));
  if (c.ept.walks > 0) lines.push(`hvsim: ${c.ept.walks} EPT walks (${c.ept.references} entries read)`);
  return lines;
}

/** One line of --trace: the exit record with numbers as the trace format gives them (hex strings for addresses). */
function traceLine(e: ExitRecord): string {
  return JSON.stringify({
    seq: e.seq, reason: e.reason, name: e.name, rip: hex(e.rip), len: e.length, qualification: hex(e.qualification),
    decoded: e.decoded, insn: e.insn, sinceLast: e.sinceLast,
  });
}

/** `hvsim run` under the hypervisor: the guest in VMX non-root operation, every exit served by src/hv. */
function runHypervisor(o: RunOptions, io: Output, path: string, image: Uint8Array): number {
  if (o.cpus !== 1) throw new UsageError('the hypervisor runs one virtual processor: --cpus needs --bare');
  if (!(o.profile in PROFILES)) throw new UsageError(`unknown profile '${o.profile}' (known: ${Object.keys(PROFILES).join(', ')})`);
  const serialFile = o.serial === null ? null : openOutput(o.serial);
  const serial = serialFile !== null ? (b: number): void => { serialFile.bytes.push(b); } : o.json ? undefined : io.serial;
  let vm: Vm, loaded: ReturnType<Vm['load']>;
  try {
    // --no-ept: shadow paging, and so no unrestricted guest (it needs EPT, SDM vol. 3C 27.2.1.1).
    vm = createVm(vmConfig({ memory: o.memory, profile: o.profile, vpid: o.vpid, ept: o.ept, unrestrictedGuest: o.ept }), { serialOut: serial });
    loaded = vm.load(image, { format: o.format, load: o.load, mode: o.mode, cmdline: o.cmdline || undefined });
  } catch (e) {
    if (e instanceof VmConfigError) throw new UsageError(e.message);
    throw e;
  }
  const trace = o.trace === null ? null : openOutput(o.trace);
  const profiles = costProfiles(o.costProfiles);
  const recorder = profiles.length === 0 || o.costProfiles.length === 0 ? null
    : new CostRecorder(() => hypervisorSource(vm), vm.machine.ports.phase, () => vm.cpu.stop({ kind: 'stop' }));
  const t0 = performance.now(), progress = new Progress(o.quiet ? null : io.progress ?? null);
  let inHandlers = 0, stop: VmStop;
  const end = o.maxInsns;
  for (;;) {
    progress.update(vm.instructions, vm.exits);
    recorder?.sync();
    // A stretch is at most SOLO_QUANTUM instructions long, so that the progress line moves in a guest that rarely exits.
    const e = vm.runUntilExit(Math.min(end - vm.instructions, SOLO_QUANTUM));
    if ('kind' in e) {
      if (e.kind === 'budget' && vm.instructions < end) continue;
      stop = e; break;
    }
    const h0 = performance.now();
    if (trace !== null) trace.lines.push(traceLine(e));
    const result = vm.handle(e);
    const failed = result === 'resume' ? vm.resume() : result;
    inHandlers += performance.now() - h0;
    if (failed !== null) { stop = failed; break; }
  }
  const seconds = (performance.now() - t0) / 1000;
  progress.done();
  const cost = recorder === null ? null : priceRun(profiles, recorder.finish());
  trace?.close();
  serialFile?.close();
  const cpu = vm.cpu, retired = vm.instructions, mips = retired / seconds / 1e6;
  const status = stop.kind === 'exit' ? stop.status : EXIT[stop.kind];
  const counts = countsOf([{ cpu, vmx: vm.vmx }]);
  if (o.json) {
    io.out(JSON.stringify({ image: path, format: loaded.format, hypervisor: true, stop, status, rip: hex(vm.guest.rip),
      instructions: retired, seconds: Number(seconds.toFixed(3)), mips: Number(mips.toFixed(1)), ...counts,
      ...(vm.shadow !== null ? { shadow: vm.shadow.counters } : {}), ...(cost !== null ? { cost: toJson(cost) } : {}) }));
    return status;
  }
  if (cost !== null && !o.quiet) for (const line of renderText(cost).trimEnd().split('\n')) io.err(line);
  const rip = hex(vm.guest.rip);
  if (stop.kind === 'budget') io.err(`hvsim: stopped: instruction budget exhausted after ${retired.toLocaleString('en-US')} instructions at rip=${rip}`);
  else if (stop.kind === 'shutdown') io.err(`hvsim: shutdown: triple fault at rip=${rip}`);
  else if (stop.kind === 'entry-failed') io.err(`hvsim: VM entry failed: ${stop.failure.check} (SDM ${stop.failure.section}): ${stop.failure.detail}`);
  else if (stop.kind === 'unhandled') io.err(`hvsim: stopped at VM exit ${stop.name} at rip=${rip}: ${stop.detail}`);
  if (o.stats && !o.quiet) {
    io.err(`hvsim: ${retired} guest instructions in ${seconds.toFixed(3)} s: ${mips.toFixed(1)} MIPS; ` +
      `${vm.exits} VM exits, ${(inHandlers / 1000).toFixed(3)} s in handlers, ${(seconds - inHandlers / 1000).toFixed(3)} s in the guest`);
    for (const line of countLines(counts)) io.err(line);
    if (vm.shadow !== null) {
      const s = vm.shadow.counters;
      io.err(`hvsim: shadow paging: ${s.hiddenFaults} hidden #PF, ${s.trueFaults} true #PF, ${s.mmioFaults} MMIO #PF, ` +
        `${s.pteWrites} paging-structure writes (${s.emulatedWrites} emulated), ${s.cr3Switches} CR3 loads (${s.rootHits} cached roots), ` +
        `${s.entriesBuilt} entries built, ${s.protects} pages protected, ${s.invalidations} INVLPG/INVPCID, ` +
        `${s.flushes} flushes (${s.poolResets} pool resets)`);
    }
  }
  return status;
}

/** A file written when the run ends (so a bad path is found before the run, and nothing half-written is left on error). */
function openOutput(file: string): { lines: string[]; bytes: number[]; close(): void } {
  checkWritable(file);
  const out = { lines: [] as string[], bytes: [] as number[], close: (): void => {
    writeFileSync(file, out.lines.length > 0 ? out.lines.join('\n') + '\n' : Buffer.from(out.bytes));
  } };
  return out;
}

function runCommand(o: RunOptions, io: Output): number {
  const path = o.image ?? bundledGuest('demo.bin');
  const image = readImage(path);
  if (o.command === 'cost') return runCost(o, io, path, image);
  if (!o.bare) return runHypervisor(o, io, path, image);
  const units: { cpu: Cpu; vmx: Vmx }[] = [];
  const attach = (cpu: Cpu): void => {
    const vmx = attachVmx(cpu);
    watchEntries(vmx, io, o.json);
    units.push({ cpu, vmx });
  };
  const machine = new PcMachine({ memorySize: o.memory, cpus: o.cpus, attach, serialOut: o.json ? undefined : io.serial });
  const cpu = machine.cpu;
  const loaded = loadImage(cpu, image, {
    format: o.format, load: o.load, mode: o.mode, cmdline: o.cmdline || undefined,
  });
  const t0 = performance.now(), progress = new Progress(o.quiet ? null : io.progress ?? null);
  const recorder = o.costProfiles.length === 0 ? null
    : new CostRecorder(() => ({ units }), machine.ports.phase, () => { for (const u of units) u.cpu.stop({ kind: 'stop' }); });
  const profiles = costProfiles(o.costProfiles);
  const stop = machine.run(o.maxInsns, () => { progress.update(machine.retired, null); recorder?.sync(); });
  const seconds = (performance.now() - t0) / 1000;
  progress.done();
  const cost = recorder === null ? null : priceRun(profiles, recorder.finish());
  const retired = machine.retired;
  const mips = retired / seconds / 1e6;
  const status = stop.kind === 'exit' ? stop.status : EXIT[stop.kind];
  if (o.json) {
    const regs = Object.fromEntries(GPR_NAMES.map((n, k) => [n, hex(cpu.reg64(k))]));
    io.out(JSON.stringify({ image: path, format: loaded.format, stop, status, rip: hex(cpu.rip),
      instructions: retired, seconds: Number(seconds.toFixed(3)), mips: Number(mips.toFixed(1)), registers: regs,
      ...countsOf(units), ...(cost !== null ? { cost: toJson(cost) } : {}) }));
    return status;
  }
  if (cost !== null && !o.quiet) for (const line of renderText(cost).trimEnd().split('\n')) io.err(line);
  if (stop.kind === 'budget') io.err(`hvsim: stopped: instruction budget exhausted after ${retired.toLocaleString('en-US')} instructions at rip=${hex(cpu.rip)}`);
  else if (stop.kind === 'shutdown') io.err(`hvsim: shutdown: triple fault at rip=${hex(cpu.rip)}`);
  else if (stop.kind === 'exception') {
    io.err(`hvsim: unhandled exception ${VECTOR_NAMES[stop.vector] ?? `vector ${stop.vector}`} at rip=${hex(cpu.rip)}`);
  }
  if (o.stats) {
    io.err(`hvsim: ${retired} instructions in ${seconds.toFixed(3)} s: ${mips.toFixed(1)} MIPS`);
    for (const line of countLines(countsOf(units))) io.err(line);
  }
  return status;
}

export function main(argv: readonly string[], io: Output): number {
  try {
    const cmd = parseArgs(argv);
    if (cmd.command === 'help') { io.out(USAGE); return 0; }
    if (cmd.command === 'version') { io.out(VERSION); return 0; }
    return runCommand(cmd, io);
  } catch (e) {
    if (e instanceof UsageError || e instanceof ImageError) {
      io.err(`hvsim: ${e.message}`);
      return EXIT.usage;
    }
    if (e instanceof InternalError) {
      // A bug of the model, not of the guest: say where, with the state around it.
      io.err(`hvsim: ${e.message}`);
      io.err(`hvsim: ${e.state}`);
      return EXIT.internal;
    }
    throw e;
  }
}
