/** Command-line parsing for `hvsim`: pure functions, so every error path is testable. */

export class UsageError extends Error {}

export interface RunOptions {
  command: 'run';
  image: string | null;
  bare: boolean;
  load: number;
  mode: 64 | 32;
  memory: number;
  maxInsns: number;
  stats: boolean;
  json: boolean;
}
export type Command = RunOptions | { command: 'help' } | { command: 'version' };

export const USAGE = `usage: hvsim run [IMAGE] [options]

Runs IMAGE (a flat binary) on the x86-64 processor model. With no IMAGE, runs
the bundled default guest (guests/sieve.bin).

options:
  --bare            run on the bare processor (until the hypervisor exists, every run is bare)
  --load ADDR       physical load and start address (default 0x1000)
  --mode 64|32      start in 64-bit mode or 32-bit protected mode (default 64)
  --memory SIZE     physical memory, e.g. 64M or 1G (default 64M)
  --max-insns N     stop after N instructions (default 10000000000)
  --stats           print instructions retired and MIPS
  --json            print the result as one JSON object
  -h, --help        this text
  --version         the version

exit status: 0 halted, 3 instruction budget exhausted, 4 unhandled exception,
5 triple fault (shutdown), 2 bad usage or a bad image.`;

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
  if (argv[0] !== 'run') throw new UsageError(`unknown command '${argv[0]}' (try 'hvsim --help')`);
  const o: RunOptions = {
    command: 'run', image: null, bare: false, load: 0x1000, mode: 64, memory: 64 * 1024 * 1024,
    maxInsns: 1e10, stats: false, json: false,
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
      case '-h': case '--help': return { command: 'help' };
      case '--load': o.load = parseSize(value(k++, a), a); break;
      case '--memory': {
        o.memory = parseSize(value(k++, a), a);
        if (o.memory < 4096 || o.memory % 4096 !== 0) throw new UsageError('--memory must be a multiple of 4K');
        break;
      }
      case '--max-insns': {
        const v = value(k++, a);
        if (!/^\d+$/.test(v) || Number(v) <= 0) throw new UsageError(`--max-insns must be a positive integer, not '${v}'`);
        o.maxInsns = Number(v);
        break;
      }
      case '--mode': {
        const v = value(k++, a);
        if (v !== '64' && v !== '32') throw new UsageError(`--mode must be 64 or 32, not '${v}'`);
        o.mode = Number(v) as 64 | 32;
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
