/**
 * The VM-exit instruction-information field for instructions with a ModRM
 * operand (SDM vol. 3C, 28.2.5, tables 28-10 to 28-14): scaling, address size,
 * register or memory operand, segment, index and base registers, and the
 * second register of VMREAD, VMWRITE, INVEPT and INVVPID; and for RDRAND and
 * RDSEED, their destination register and operand size.
 */
import { BASE_RIP, type Insn } from '../cpu/insn.js';
import { VmxInstruction } from '../cpu/virtualization.js';

/** `op` -1: an instruction that is not a VMX instruction (descriptor-table accesses). */
export function instructionInformation(i: Insn, op: VmxInstruction | -1): number {
  let info = (i.adSize === 2 ? 0 : i.adSize === 4 ? 1 : 2) << 7;
  if (i.isReg) {
    info |= (i.rm << 3) | (1 << 10);
  } else {
    info |= i.scale | (i.seg << 15);
    info |= i.index >= 0 ? i.index << 18 : 1 << 22;
    info |= i.base >= 0 && i.base !== BASE_RIP ? i.base << 23 : 1 << 27;
  }
  if (op === VmxInstruction.VMREAD || op === VmxInstruction.VMWRITE || op === VmxInstruction.INVEPT ||
      op === VmxInstruction.INVVPID) info |= i.reg << 28;
  return info | 0;
}

/**
 * RDRAND and RDSEED (28.2.5, the table for RDRAND, RDSEED, TPAUSE and UMWAIT):
 * the destination register in bits 6:3, the operand size in bits 12:11 (0: 16-bit,
 * 1: 32-bit, 2: 64-bit). The other bits are undefined; the model clears them.
 */
export function registerOperandInformation(i: Insn): number {
  return (i.rm << 3) | ((i.opSize === 2 ? 0 : i.opSize === 4 ? 1 : 2) << 11);
}
