import { MAX_CPUS } from '../platform/machine.js';
/** Command-line parsing for `hvsim`: pure functions, so every error path is testable. */

/**
 * Exit statuses of `hvsim run` for the ways a run ends (the guest's own
 * debug-exit status is odd, these are even; README, --help).
 */
export const EXIT = { halt: 0, usage: 2, exception: 4, 'entry-failed': 6, budget: 8, shutdown: 10, unhandled: 12, internal: 70 } as const;

export class UsageError extends Error {}

export interface RunOptions {
  /** `run`: one run; `cost`: a bare and a hypervisor run of the image, priced on cost profiles. */
  command: 'run' | 'cost';
  image: string | null;
  bare: boolean;
  load: number;
  /** Start mode of a flat binary. */
  mode: 'real' | '32' | '64';
  /** Image format: detected from its contents unless given. */
  format: 'auto' | 'multiboot' | 'elf' | 'flat';
  /** Multiboot command line. */
  cmdline: string;
  memory: number;
  /** Logical processors. */
  cpus: number;
  maxInsns: number;
  stats: boolean;
  json: boolean;
  /** CPU profile of the guest. */
  profile: string;
  vpid: boolean;
  /** EPT; off: the hypervisor shadows the guest's page tables. */
  ept: boolean;
  /** Cost profiles (src/cost/profiles.ts) to price the run on: `run --cost NAME`, `cost --profile A,B,C`. */
  costProfiles: string[];
  /** `cost`: the breakdown as an SVG stacked bar chart to this file. */
  plot: string | null;
  /** One JSON object per VM exit to this file. */
  trace: string | null;
  /** The guest's serial output to this file instead of stdout. */
  serial: string | null;
  quiet: boolean;
}
export type Command = RunOptions | { command: 'help' } | { command: 'version' };

export const USAGE = `usage: hvsim run [IMAGE] [options]

Runs IMAGE as a guest in VMX non-root operation under hvsim's hypervisor (a
root-mode handler written in TypeScript serves every VM exit), on a PC built
around the x86-64 processor model: a Multiboot kernel (ELF32, ELF64 or a.out
kludge), a plain ELF, or a flat binary. The guest's COM1 output goes to stdout.
With no IMAGE, runs the bundled default guest (guests/demo.bin: three tasks in
their own address spaces, switched by timer interrupts).

options:
  --bare            run on the bare processor, without the hypervisor
  --profile NAME    CPU profile of the guest (default skylake)
  --no-vpid         no VPID: every VM exit and entry flushes the guest's TLB
  --no-ept          no EPT: the hypervisor shadows the guest's page tables, as
                    first-generation VT-x monitors did (the guest must start in
                    protected mode: real mode needs unrestricted guest, and so EPT)
  --trace FILE      one JSON object per VM exit (seq, reason, name, rip, len,
                    qualification, decoded, insn, sinceLast) to FILE
  --serial FILE     the guest's COM1 output to FILE instead of stdout
  --quiet           no diagnostics or progress line on stderr, only errors
  --format F        auto, multiboot, elf or flat (default auto)
  --load ADDR       flat binaries: physical load and start address (default 0x1000)
  --mode M          flat binaries: start in real, 32 (protected) or 64 (long) mode (default 64)
  --cmdline TEXT    Multiboot command line
  --memory SIZE     physical memory, e.g. 64M or 1G (default 64M)
  --cpus N          logical processors (default 1); the others wait for INIT and SIPI
  --max-insns N     stop after N instructions, all processors together (default 10000000000)
  --stats           print instructions retired, MIPS, VM exits by reason, page and EPT walks
                    (with --no-ept, shadow paging's faults, roots and entries) on stderr
  --json            print the result as one JSON object on stdout (serial output is not printed)
  --cost NAME       price the run on a processor's cost profile (prescott, merom, penryn,
                    nehalem, westmere, sandybridge, skylake) and print the breakdown on stderr
  --gdb PORT        serve the run to gdb on 127.0.0.1:PORT (0: a free port): in
                    gdb, target remote 127.0.0.1:PORT
  -h, --help        this text
  --version         the version

usage: hvsim debug [IMAGE] [options]

The debugger: step instructions and VM exits, break on RIPs, exit reasons
and memory, see the VMCS and what each handler changed, go back to earlier
exits. 'hvsim debug --help' tells more.

usage: hvsim cost [IMAGE] [--profile A,B,C] [--json] [--plot FILE.svg] [image options]

Runs IMAGE on the bare processor and under the hypervisor, as each processor
would: with EPT and VPID where it has them, with shadow paging where it has
not, and prices both runs with the published figures of each profile (default:
every profile): cycles in the guest, in VM transitions, in handlers and in
page walks, the overhead against native, and the costliest exit reasons.
--json prints one JSON array (per profile its name and total cycles, the
breakdown and the top exits); --plot draws the breakdown as a stacked bar chart.

exit status: the guest's debug-exit status ((v << 1) | 1 for a write of v to
port 0xF4 or v of the EXIT hypercall: always odd); 0 when it halts with
interrupts off; 2 bad usage or a bad image; 4 an exception with no way to
deliver it; 6 VM-entry failure; 8 instruction budget exhausted; 10 triple
fault (shutdown); 12 a VM exit the hypervisor has no handler for; 70 an
internal error of the model (reported with the guest's state).`;

/** Parses a size such as 4096, 0x1000, 64K, 64M or 1G. */
export function parseSize(text: string, what: string): number {
  const m = /^(0x[0-9a-f]+|\d+)([kmg]?)$/i.exec(text);
  if (m === null) throw new UsageError(`${what} must be a number like 4096, 0x1000, 64M or 1G, not '${text}'`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  const v = Number(m[1]) * unit;
  if (!Number.isSafeInteger(v)) throw new UsageError(`${what} is too large: '${text}'`);
  return v;
}

export function parseArgs(argv: readonly string[]): Command {
  if (argv.length === 0 || argv[0] === '-h' || argv[0] === '--help' || argv[0] === 'help') return { command: 'help' };
  if (argv[0] === '--version') return { command: 'version' };
  if (argv[0] !== 'run' && argv[0] !== 'cost') throw new UsageError(`unknown command '${argv[0]}' (try 'hvsim --help')`);
  const cost = argv[0] === 'cost';
  const o: RunOptions = {
    command: cost ? 'cost' : 'run', image: null, bare: false, costProfiles: [], plot: null, load: 0x1000, mode: '64', format: 'auto', cmdline: '',
    memory: 64 * 1024 * 1024,
    cpus: 1, maxInsns: 1e10, stats: false, json: false, profile: 'skylake', vpid: true, ept: true, trace: null, serial: null, quiet: false,
  };
  const value = (k: number, name: string): string => {
    const v = argv[k + 1];
    if (v === undefined || v.startsWith('--')) throw new UsageError(`${name} needs a value`);
    return v;
  };
  for (let k = 1; k < argv.length; k++) {
    const a = argv[k]!;
    switch (a) {
      case '--bare': o.bare = true; break;
      case '--stats': o.stats = true; break;
      case '--json': o.json = true; break;
      case '--no-vpid': o.vpid = false; break;
      case '--no-ept': o.ept = false; break;
      case '--quiet': o.quiet = true; break;
      // For `cost`, the cost profiles to price on; for `run`, the guest's CPU profile.
      case '--profile': if (cost) o.costProfiles = value(k++, a).split(','); else o.profile = value(k++, a); break;
      case '--cost': if (cost) throw new UsageError('--cost is an option of run; cost takes --profile A,B,C'); o.costProfiles = [value(k++, a)]; break;
      case '--plot': if (!cost) throw new UsageError('--plot is an option of cost'); o.plot = value(k++, a); break;
      case '--trace': o.trace = value(k++, a); break;
      case '--serial': o.serial = value(k++, a); break;
      case '-h': case '--help': return { command: 'help' };
      case '--load': o.load = parseSize(value(k++, a), a); break;
      case '--memory': {
        o.memory = parseSize(value(k++, a), a);
        if (o.memory < 4096 || o.memory % 4096 !== 0) throw new UsageError('--memory must be a multiple of 4K');
        break;
      }
      case '--cpus': {
        const v = value(k++, a);
        if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > MAX_CPUS) throw new UsageError(`--cpus must be 1 to ${MAX_CPUS}, not '${v}'`);
        o.cpus = Number(v);
        break;
      }
      case '--max-insns': {
        const v = value(k++, a);
        if (!/^\d+$/.test(v) || Number(v) <= 0) throw new UsageError(`--max-insns must be a positive integer, not '${v}'`);
        o.maxInsns = Number(v);
        break;
      }
      case '--format': {
        const v = value(k++, a);
        if (v !== 'auto' && v !== 'multiboot' && v !== 'elf' && v !== 'flat') {
          throw new UsageError(`--format must be auto, multiboot, elf or flat, not '${v}'`);
        }
        o.format = v;
        break;
      }
      case '--cmdline': o.cmdline = value(k++, a); break;
      case '--mode': {
        const v = value(k++, a);
        if (v !== '64' && v !== '32' && v !== 'real') throw new UsageError(`--mode must be real, 32 or 64, not '${v}'`);
        o.mode = v;
        break;
      }
      default:
        if (a.startsWith('-')) throw new UsageError(`unknown option '${a}' (try 'hvsim --help')`);
        if (o.image !== null) throw new UsageError(`more than one image: '${o.image}' and '${a}'`);
        o.image = a;
    }
  }
  return o;
}
