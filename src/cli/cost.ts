/**
 * `hvsim cost` and `hvsim run --cost`: a guest's run counted (src/cost/collect.ts)
 * and priced on processor profiles (src/cost/profiles.ts). `cost` runs the
 * image on the bare processor (the native run) and under the hypervisor in the
 * way each profile's processor allows: EPT and VPID from Nehalem on, shadow
 * paging without VPID before.
 */
import { writeFileSync } from 'node:fs';
import { COST_PROFILES, findProfile, type CostProfile } from '../cost/profiles.js';
import { CostRecorder, type CountSource } from '../cost/collect.js';
import type { CostCounts } from '../cost/counts.js';
import { evaluate, type CostResult } from '../cost/model.js';
import { renderJson, renderText } from '../cost/report.js';
import { renderSvg } from '../cost/plot.js';
import { vmConfig } from '../hv/config.js';
import { createVm, VmConfigError, type Vm, type VmStop } from '../hv/vm.js';
import { loadImage } from '../platform/loaders/index.js';
import { PcMachine, type MachineStop } from '../platform/machine.js';
import { attachVmx, type Vmx } from '../vmx/vmx.js';
import type { Cpu } from '../cpu/cpu.js';
import { UsageError, type RunOptions } from './args.js';
import { checkWritable, type Output } from './image.js';

/** The cost profiles named, or every profile. */
export function costProfiles(names: readonly string[]): CostProfile[] {
  if (names.length === 0) return [...COST_PROFILES];
  return names.map((name) => {
    const p = findProfile(name.trim());
    if (p === undefined) throw new UsageError(`unknown cost profile '${name}' (known: ${COST_PROFILES.map((q) => q.name).join(', ')})`);
    return p;
  });
}

/** Counts under the hypervisor as a VM's own counters give them. */
export function hypervisorSource(vm: Vm): CountSource {
  const s = vm.shadow?.counters;
  return {
    units: [{ cpu: vm.cpu, vmx: vm.vmx }],
    hypervisor: {
      entries: vm.entries, vmreads: vm.guest.vmreads, vmwrites: vm.guest.vmwrites, deviceOps: vm.deviceOps,
      injections: vm.guest.injections, vpid: vm.config.vpid,
      shadow: s === undefined ? undefined
        : { hiddenFaults: s.hiddenFaults, pteWrites: s.pteWrites, cr3Switches: s.cr3Switches, entriesBuilt: s.entriesBuilt },
    },
  };
}

/** A stop that ends a run normally: the guest exited or halted. */
function normal(stop: VmStop | MachineStop): boolean {
  return stop.kind === 'exit' || stop.kind === 'halt';
}

/** The image on the bare processor, counted. */
export function countBare(o: RunOptions, image: Uint8Array, io: Output): CostCounts {
  const units: { cpu: Cpu; vmx: Vmx }[] = [];
  const machine = new PcMachine({ memorySize: o.memory, cpus: o.cpus, attach: (cpu) => { units.push({ cpu, vmx: attachVmx(cpu) }); } });
  loadImage(machine.cpu, image, { format: o.format, load: o.load, mode: o.mode, cmdline: o.cmdline || undefined });
  const recorder = new CostRecorder(() => ({ units }), machine.ports.phase, () => { for (const { cpu } of units) cpu.stop({ kind: 'stop' }); });
  const stop = machine.run(o.maxInsns, () => recorder.sync());
  if (!normal(stop)) io.err(`hvsim: the bare run ended with '${stop.kind}': its counts are of what ran`);
  return recorder.finish();
}

/** The image under the hypervisor, with or without EPT and VPID, counted. */
export function countHypervisor(o: RunOptions, image: Uint8Array, ept: boolean, vpid: boolean, io: Output): CostCounts {
  let vm: Vm;
  try {
    vm = createVm(vmConfig({ memory: o.memory, profile: o.profile, ept, vpid, unrestrictedGuest: ept }));
    vm.load(image, { format: o.format, load: o.load, mode: o.mode, cmdline: o.cmdline || undefined });
  } catch (e) {
    if (e instanceof VmConfigError) throw new UsageError(`${ept ? 'with EPT' : 'with shadow paging'}: ${e.message}`);
    throw e;
  }
  const recorder = new CostRecorder(() => hypervisorSource(vm), vm.machine.ports.phase, () => vm.cpu.stop({ kind: 'stop' }));
  const stop = vm.run(o.maxInsns, () => recorder.sync());
  if (!normal(stop)) io.err(`hvsim: the run ${ept ? 'with EPT' : 'with shadow paging'} ended with '${stop.kind}': its counts are of what ran`);
  return recorder.finish();
}

/** Prices on each profile the counts `runs` gives for it (`runs(native)` for one run of all), with `native` for the overhead. */
export function priceRuns(profiles: readonly CostProfile[], runs: (p: CostProfile) => CostCounts, native?: CostCounts): CostResult[] {
  return profiles.map((profile) => evaluate({
    profile, counts: runs(profile), native, label: `${profile.name} (${profile.ept ? 'EPT' : 'shadow paging'})`,
  }));
}

/** One run's counts priced on each profile (no native run: no overhead). */
export function priceRun(profiles: readonly CostProfile[], counts: CostCounts): CostResult[] {
  return priceRuns(profiles, () => counts);
}

/** `hvsim cost`: IMAGE (read from `path`) bare and under the hypervisor, priced on the profiles. */
export function runCost(o: RunOptions, io: Output, path: string, image: Uint8Array): number {
  const profiles = costProfiles(o.costProfiles);
  if (o.plot !== null) checkWritable(o.plot);
  const native = countBare(o, image, io);
  const runs = new Map<string, CostCounts>();
  const results = priceRuns(profiles, (p) => {
    const key = `${p.ept}/${p.vpid}`;
    let counts = runs.get(key);
    if (counts === undefined) { counts = countHypervisor(o, image, p.ept, p.vpid, io); runs.set(key, counts); }
    return counts;
  }, native);
  if (o.plot !== null) writeFileSync(o.plot, renderSvg(results, `hvsim cost ${path}`));
  io.out(o.json ? renderJson(results) : renderText(results));
  return 0;
}
