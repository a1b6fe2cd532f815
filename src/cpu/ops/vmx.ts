/**
 * The VMX instructions' encodings (SDM vol. 3C, chapter 31; vol. 2, appendix A,
 * opcode map group 7 and group 9). What they do is the hardware-assist unit's
 * (`cpu.virt`); without one they are #UD.
 */
import type { Cpu } from '../cpu.js';
import { OpMap, Sz, type Entry, type Insn, type OpDef } from '../insn.js';
import { VmxInstruction } from '../virtualization.js';

const TWO = OpMap.TWO * 256, THREE_38 = OpMap.THREE_38 * 256;

/**
 * VMLAUNCH, VMRESUME, VMCALL, VMXON, VMXOFF and VMFUNC may change mode and
 * address space: they end a block. The others change no control flow (a VM
 * exit from non-root operation unwinds like a fault).
 */
function vmx(name: string, op: VmxInstruction, extra: Partial<OpDef> = {}): OpDef {
  const ends = op === VmxInstruction.VMLAUNCH || op === VmxInstruction.VMRESUME || op === VmxInstruction.VMCALL ||
    op === VmxInstruction.VMXON || op === VmxInstruction.VMXOFF || op === VmxInstruction.VMFUNC;
  return { name, exec: (cpu: Cpu, i: Insn) => cpu.virt.vmx(cpu, i, op), ends, ...extra };
}

/** The 0F 01 register forms take no 66, F2 or F3 prefix (#UD with one, as iced-x86 decodes them). */
const bare = (d: OpDef): Entry => ({ prefixed: [d] });

/** Memory operand; the operand size is 64 bits in 64-bit mode and 32 bits outside (VMREAD, VMWRITE, INVEPT, INVVPID). */
const m64 = { modrm: true, memOnly: true };
const natural = { modrm: true, size: Sz.NATURAL };

export const VMX_TABLE: Record<number, Entry> = {
  // 0F 01 C1-C4: VMCALL, VMLAUNCH, VMRESUME, VMXOFF; 0F 01 D4: VMFUNC.
  [TWO + 0x01]: { group: [
    { reg: { rm: [undefined, bare(vmx('vmcall', VmxInstruction.VMCALL)), bare(vmx('vmlaunch', VmxInstruction.VMLAUNCH)),
      bare(vmx('vmresume', VmxInstruction.VMRESUME)), bare(vmx('vmxoff', VmxInstruction.VMXOFF))] } },
    undefined,
    { reg: { rm: [undefined, undefined, undefined, undefined, bare(vmx('vmfunc', VmxInstruction.VMFUNC))] } }] },
  // Group 9: /6 VMPTRLD, 66 /6 VMCLEAR, F3 /6 VMXON, /7 VMPTRST (memory operands).
  [TWO + 0xc7]: { group: [undefined, undefined, undefined, undefined, undefined, undefined,
    { mem: { prefixed: [vmx('vmptrld', VmxInstruction.VMPTRLD, m64), vmx('vmclear', VmxInstruction.VMCLEAR, m64),
      vmx('vmxon', VmxInstruction.VMXON, m64)] } },
    { mem: { prefixed: [vmx('vmptrst', VmxInstruction.VMPTRST, m64)] } }] },
  [TWO + 0x78]: { prefixed: [vmx('vmread', VmxInstruction.VMREAD, natural)] },
  [TWO + 0x79]: { prefixed: [vmx('vmwrite', VmxInstruction.VMWRITE, natural)] },
  [THREE_38 + 0x80]: { prefixed: [undefined, vmx('invept', VmxInstruction.INVEPT, { ...natural, memOnly: true })] },
  [THREE_38 + 0x81]: { prefixed: [undefined, vmx('invvpid', VmxInstruction.INVVPID, { ...natural, memOnly: true })] },
};
