/**
 * The hypercall interface: VMCALL (which always exits in non-root operation,
 * SDM vol. 3C, 26.1.2) with the call number in RAX and arguments in RBX, RCX;
 * the result comes back in RAX. A guest finds the interface through CPUID leaf
 * 40000000H (signature) and 40000001H (EAX: bit n set when call n exists).
 *
 *   0 PRINT  RBX = guest-linear address, RCX = length (at most 4096): the bytes
 *            go to the VM's serial output. RAX = 0, or 1 when the buffer is
 *            not mapped readable.
 *   1 EXIT   RBX = v (bits 7:0): the VM stops as on a write of v to the
 *            debug-exit port, with status (v << 1) | 1.
 *   2 TIME   RAX = guest time in ns (1 ns per guest instruction retired).
 * Any other number: RAX = all ones. A call from CPL > 0: RAX = all ones but
 * bit 0 (refused), as hypervisors keep hypercalls to the guest's kernel.
 */
import { RAX, RBX, RCX } from '../cpu/regs.js';
import { GuestFault } from './guest.js';
import type { ExitHandler } from './handlers.js';
import type { HandlerResult } from './vm.js';

export const Hypercall = { PRINT: 0, EXIT: 1, TIME: 2 } as const;
const UNKNOWN = (1n << 64n) - 1n, REFUSED = UNKNOWN - 1n, MAX_PRINT = 4096;

export const hypercall: ExitHandler = (e, vm): HandlerResult => {
  const g = vm.guest, call = g.reg(RAX);
  let result = UNKNOWN;
  if (g.cpl !== 0) result = REFUSED;
  else if (call === BigInt(Hypercall.PRINT)) {
    const length = Number(g.reg(RCX) > BigInt(MAX_PRINT) ? BigInt(MAX_PRINT) : g.reg(RCX));
    const bytes = g.readLinear(g.reg(RBX), length);
    if (bytes instanceof GuestFault) result = 1n;
    else { for (const b of bytes) vm.serialOut(b); result = 0n; }
  } else if (call === BigInt(Hypercall.EXIT)) {
    g.retire(e.length);
    return { kind: 'exit', status: (Number(g.reg(RBX) & 0xffn) << 1) | 1 };
  } else if (call === BigInt(Hypercall.TIME)) {
    result = BigInt(vm.machine.ports.clock.ns());
  }
  g.setReg(RAX, result);
  g.retire(e.length);
  return 'resume';
};
