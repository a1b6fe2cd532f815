import { describe, expect, it } from 'vitest';
import { VmxMsr } from '../../vmcs/controls.js';
import { Cpu } from '../cpu/cpu.js';
import { cr4Supported } from '../cpu/cpuid.js';
import { skylakeWith } from '../cpu/testing.js';
import { capabilityMsr, SKYLAKE_VMX } from './capabilities.js';
import { attachVmx } from './vmx.js';

const CR4_VMXE = 1 << 13, CR4_FSGSBASE = 1 << 16, CR4_PCIDE = 1 << 17, CR4_SMAP = 1 << 21, CR4_LA57 = 1 << 12;

describe('SDM vol. 3D, A.8 (VMX-fixed bits in CR4): IA32_VMX_CR4_FIXED1 follows the processor', () => {
  it('on skylake it reports exactly the CR4 bits MOV to CR4 accepts, VMXE among them', () => {
    const cpu = new Cpu({ memorySize: 1 << 20 });
    const vmx = attachVmx(cpu);
    const [fixed1] = capabilityMsr(vmx.caps, VmxMsr.IA32_VMX_CR4_FIXED1)!;
    expect((fixed1 >>> 0).toString(16)).toBe((cr4Supported(cpu) >>> 0).toString(16));
    expect(SKYLAKE_VMX.cr4Fixed1).toBe(cr4Supported(cpu) >>> 0);
    expect(fixed1 & (CR4_VMXE | CR4_FSGSBASE | CR4_PCIDE | CR4_SMAP)).toBe(CR4_VMXE | CR4_FSGSBASE | CR4_PCIDE | CR4_SMAP);
    expect(fixed1 & CR4_LA57).toBe(0);
  });

  it('a processor without PCID, SMAP or FSGSBASE reports those bits 0: VMX operation cannot allow a reserved bit', () => {
    const cpu = new Cpu({ memorySize: 1 << 20, profile: skylakeWith({ remove: ['pcid', 'smap', 'fsgsbase'] }) });
    const [fixed1] = capabilityMsr(attachVmx(cpu).caps, VmxMsr.IA32_VMX_CR4_FIXED1)!;
    expect(fixed1 & (CR4_FSGSBASE | CR4_PCIDE | CR4_SMAP)).toBe(0);
    expect(fixed1 >>> 0).toBe(cr4Supported(cpu) >>> 0);
  });
});
