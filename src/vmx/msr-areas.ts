/**
 * The VM-entry MSR-load, VM-exit MSR-store and VM-exit MSR-load areas (SDM
 * vol. 3C, 27.4 "Loading MSRs", 28.4 "Saving MSRs", 28.6 "Loading Host MSRs";
 * entry format in 25.7.2, table 25-15): 16-byte entries of an MSR index (bits
 * 31:0), 32 reserved bits, and the value.
 */
import { FAULT, type Cpu } from '../cpu/cpu.js';

const IA32_FS_BASE = 0xc0000100, IA32_GS_BASE = 0xc0000101, IA32_SMM_MONITOR_CTL = 0x9b, IA32_SMBASE = 0x9e;

/** x2APIC MSRs (index bits 31:8 = 000008H) may not be in the areas while the APIC is in x2APIC mode. */
function x2apicMsr(cpu: Cpu, index: number): boolean {
  if (index >>> 8 !== 0x8) return false;
  const h = cpu.msrs.handlerOf(0x1b);
  return h !== undefined && h.rdmsr(0x1b) && (h.msrLo & (1 << 10)) !== 0;
}

/**
 * Loads `count` MSRs from the area at physical address `address` with WRMSR's
 * checks. Returns 0 on success, or the 1-based number of the entry that failed
 * (the VM-entry failure's exit qualification, 27.8); entries before it stay loaded.
 */
export function loadMsrs(cpu: Cpu, address: number, count: number, onEntry = false): number {
  const m = cpu.memory;
  for (let k = 0; k < count; k++) {
    const at = address + 16 * k;
    const index = m.read32(at) >>> 0, reserved = m.read32(at + 4);
    if (reserved !== 0 || index === IA32_SMM_MONITOR_CTL || x2apicMsr(cpu, index)) return k + 1;
    // 27.4: FS and GS bases may not be loaded on VM entry; 28.6: IA32_SMBASE may not be loaded on VM exit.
    if (onEntry ? index === IA32_FS_BASE || index === IA32_GS_BASE : index === IA32_SMBASE) return k + 1;
    try {
      cpu.msrs.write(cpu, index, m.read32(at + 8), m.read32(at + 12));
    } catch (e) {
      if (e !== FAULT) throw e;
      return k + 1;
    }
  }
  return 0;
}

/** Stores `count` MSRs into the area at `address` with RDMSR's checks (28.4); false when one fails (a VMX abort). */
export function storeMsrs(cpu: Cpu, address: number, count: number): boolean {
  const m = cpu.memory;
  for (let k = 0; k < count; k++) {
    const at = address + 16 * k;
    const index = m.read32(at) >>> 0;
    if (m.read32(at + 4) !== 0 || index === IA32_SMBASE || x2apicMsr(cpu, index)) return false;
    try {
      const lo = cpu.msrs.read(cpu, index);
      m.write32(at + 8, lo);
      m.write32(at + 12, cpu.msrs.hi);
    } catch (e) {
      if (e !== FAULT) throw e;
      return false;
    }
  }
  return true;
}
