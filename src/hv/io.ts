/**
 * I/O instruction exits (SDM vol. 3C, 26.1.3; qualification table 28-5): the
 * handler performs IN, OUT, INS and OUTS on the platform's ports, as the guest
 * would have. String forms move their data through the guest's paging: the
 * address size and segment come from the VM-exit instruction information
 * (28.2.5), the direction from RFLAGS.DF; a REP prefix repeats RCX times
 * (masked to the address size). A page fault part way stops the instruction
 * with the registers of the iterations done, and the guest takes the #PF, as
 * on the processor (SDM vol. 2, INS/OUTS, REP).
 */
import { DF, ES, RAX, RCX, RDI, RSI } from '../cpu/regs.js';
import { GuestFault, type Guest } from './guest.js';
import type { ExitHandler } from './handlers.js';
import { addressMask, linearAddress } from './memory-operand.js';
import type { HandlerResult, Vm } from './vm.js';

/** RAX with its low `size` bytes replaced by `value` (a 4-byte IN zero-extends, as a 32-bit write does). */
function merge(rax: bigint, value: number, size: number): bigint {
  if (size === 4) return BigInt(value >>> 0);
  const mask = size === 2 ? 0xffffn : 0xffn;
  return (rax & ~mask) | (BigInt(value) & mask);
}

export const ioInstruction: ExitHandler = (e, vm): HandlerResult => {
  const g = vm.guest, q = Number(e.qualification & 0xffffffffn);
  const size = ((q & 7) + 1) as 1 | 2 | 4, isIn = (q & 8) !== 0, port = q >>> 16;
  if ((q & 0x10) === 0) {
    vm.deviceOps++;
    if (isIn) g.setReg(RAX, merge(g.reg(RAX), vm.cpu.io.read(port, size), size));
    else vm.cpu.io.write(port, size, Number(g.reg(RAX) & 0xffffffffn) & (size === 4 ? -1 : (1 << (8 * size)) - 1));
    g.retire(e.length);
    return 'resume';
  }
  const fault = stringIo(vm, g, e.instructionInformation, size, isIn, port, (q & 0x20) !== 0);
  if (fault !== null) g.injectFault(fault);
  else g.retire(e.length);
  return 'resume';
};

/** INS/OUTS, REP or not: the iterations, with RSI/RDI/RCX kept current; the fault that stopped them, or null. */
function stringIo(vm: Vm, g: Guest, info: number, size: 1 | 2 | 4, isIn: boolean, port: number, rep: boolean): GuestFault | null {
  const mask = addressMask(info);
  const index = isIn ? RDI : RSI, segment = isIn ? ES : (info >>> 15) & 7;
  const step = (g.rflags & DF) !== 0 ? -BigInt(size) : BigInt(size);
  let count = rep ? g.reg(RCX) & mask : 1n;
  while (count > 0n) {
    vm.deviceOps++;
    const offset = g.reg(index) & mask;
    const linear = linearAddress(g, segment, offset);
    if (isIn) {
      const v = vm.cpu.io.read(port, size), bytes = new Uint8Array(size);
      for (let k = 0; k < size; k++) bytes[k] = (v >>> (8 * k)) & 0xff;
      const f = g.writeLinear(linear, bytes, true);
      if (f !== null) return f;
    } else {
      const bytes = g.readLinear(linear, size, 'read', g.translationState(), true);
      if (bytes instanceof GuestFault) return bytes;
      let v = 0;
      for (let k = size - 1; k >= 0; k--) v = (v << 8) | bytes[k]!;
      vm.cpu.io.write(port, size, v);
    }
    g.setReg(index, (g.reg(index) & ~mask) | ((offset + step) & mask));
    count--;
    if (rep) g.setReg(RCX, (g.reg(RCX) & ~mask) | count);
  }
  return null;
}
