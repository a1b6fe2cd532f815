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
