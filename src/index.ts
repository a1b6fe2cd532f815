/** hvsim: a model of an x86-64 processor with Intel VT-x. */
export { Cpu, type CpuOptions, type StopReason } from './cpu/cpu.js';
export { PhysicalMemory } from './cpu/memory.js';
export { run } from './cpu/run.js';
export * as regs from './cpu/regs.js';
