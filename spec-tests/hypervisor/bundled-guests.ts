/** The bare-metal guests of guests/ that the hypervisor's tests run: file, `hvsim run` options, exit status. */
export const FLAT64 = ['--format', 'flat', '--mode', '64', '--load', '0x100000'];

export const GUESTS: readonly (readonly [string, readonly string[], number])[] = [
  ['demo.bin', [], 0],
  ['boot64.bin', [], 0],
  ['modes.bin', ['--format', 'flat', '--mode', 'real', '--load', '0x7c00'], 1],
  ['paging.bin', [], 1],
  ['exceptions.bin', FLAT64, 1],
  ['syscall.bin', FLAT64, 1],
  ['triple.bin', FLAT64, 10],
  ['oracle-hello.bin', [], 1],
  ['apic-timer.bin', FLAT64, 1],
  ['smp.bin', [], 1],
];
