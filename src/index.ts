/** hvsim: a model of an x86-64 processor with Intel VT-x. */
export { Cpu, type CpuOptions, type StopReason } from './cpu/cpu.js';
export { PhysicalMemory } from './cpu/memory.js';
export { run } from './cpu/run.js';
export * as regs from './cpu/regs.js';
export { createVm, Vm, VmConfigError, HOST_TIMER_VECTOR, type VmStop, type HandlerResult, type VmOptions } from './hv/vm.js';
export { vmConfig, DEFAULT_CONFIG, type VmConfig, type VmConfigInput, type ExitConfig } from './hv/config.js';
export { type ExitRecord, type EventRecord } from './hv/record.js';
export { type ExitHandler, HYPERVISOR_SIGNATURE } from './hv/handlers.js';
export { Hypercall } from './hv/hypercall.js';
export { Guest, type GuestEvent } from './hv/guest.js';
// The cost model (its fast-check arbitraries are in hvsim/fuzz, so that the main entry needs no fast-check).
export { price, overhead, evaluate, type CostResult, type CostBreakdown } from './cost/model.js';
export { COST_PROFILES, findProfile, type CostProfile } from './cost/profiles.js';
export { emptyCounts, addCounts, type CostCounts, type PhaseCounts } from './cost/counts.js';
export { renderText, renderJson, toJson } from './cost/report.js';
export { renderSvg } from './cost/plot.js';
export { CostRecorder, countsNow, type CountSource } from './cost/collect.js';
