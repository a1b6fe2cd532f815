/**
 * Bochs as an oracle: runs a guest image built on guests/lib/bootsector.inc
 * both on Bochs (booted from a floppy through its BIOS) and on hvsim (loaded
 * by the Multiboot loader), and returns what each wrote to COM1 and how each
 * ended, so a test can hold hvsim's output against a second, independent
 * model of the processor. Facts about Debian's Bochs 2.7 used here are in
 * shared/notes/bochs-oracle.md; where Bochs and the SDM disagree, the SDM wins.
 *
 * The exit status is hvsim's debug-exit status, (v << 1) | 1 for the byte v
 * the guest writes to port 0F4H. Bochs ignores that port; the guest's
 * MACHINE_EXIT also writes 01H and v to port E9H, which Bochs (port_e9_hack)
 * prints on its stdout, and the same status is computed from that.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { main } from '../../src/cli/hvsim.js';

export const BOCHS_BIOS = '/usr/share/bochs/BIOS-bochs-latest';
export const VGA_BIOS = '/usr/share/vgabios/vgabios.bin';
/** A 1.44 MB floppy: 80 cylinders × 2 heads × 18 sectors × 512 bytes. */
export const FLOPPY_SIZE = 1_474_560;
/** The RTC's start on both machines: 2024-01-01 00:00:00 (hvsim's CMOS_EPOCH). */
const RTC_START = 1_704_067_200;

/** One machine's run: COM1's bytes and the debug-exit status (null: the guest never reached MACHINE_EXIT). */
export interface GuestRun {
  serial: string;
  status: number | null;
}

export interface BochsRun extends GuestRun {
  /** Bochs's stdout (debugger chatter and the port E9H bytes). */
  stdout: string;
  /** Bochs's log file, for a failing test to show. */
  log: string;
  /** The run was killed at the time limit. */
  timedOut: boolean;
}

function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, name)));
}

/** Debian's Bochs has no display-less GUI: the SDL2 one (bochs-sdl) runs with SDL's dummy driver. */
function hasSdl2Plugin(): boolean {
  try {
    return readdirSync('/usr/lib').some((d) => existsSync(join('/usr/lib', d, 'bochs', 'plugins', 'libbx_sdl2_gui.so')));
  } catch {
    return false;
  }
}

/** Bochs, its BIOS, VGA BIOS and SDL2 display are installed (apt-get install bochs bochsbios vgabios bochs-sdl). */
export function bochsAvailable(): boolean {
  return onPath('bochs') && existsSync(BOCHS_BIOS) && existsSync(VGA_BIOS) && hasSdl2Plugin();
}

export interface BochsOptions {
  /** Wall-clock limit for the Bochs process (default 20 s). */
  timeoutMs?: number;
  /** Bochs CPU model (default corei7_haswell_4770: VMX with EPT, VPID, unrestricted guest). */
  cpuModel?: string;
  /** RAM in MiB (default 64, as hvsim's default). */
  memoryMiB?: number;
}

/** The status from Bochs's stdout: the byte after the 01H marker MACHINE_EXIT writes to port E9H. */
function bochsStatus(stdout: Buffer): number | null {
  const at = stdout.lastIndexOf(1);
  return at < 0 || at + 1 >= stdout.length ? null : (stdout[at + 1]! << 1) | 1;
}

/** Boots the image from a floppy on Bochs and returns COM1's output. */
export function runOnBochs(binPath: string, options: BochsOptions = {}): BochsRun {
  const dir = mkdtempSync(join(tmpdir(), 'hvsim-bochs-'));
  try {
    const image = readFileSync(binPath);
    if (image.length > FLOPPY_SIZE) throw new Error(`${binPath} does not fit on a 1.44 MB floppy`);
    const floppy = new Uint8Array(FLOPPY_SIZE);
    floppy.set(image);
    writeFileSync(join(dir, 'floppy.img'), floppy);
    writeFileSync(join(dir, 'debugger.rc'), 'continue\n');
    writeFileSync(join(dir, 'bochsrc'), [
      `megs: ${options.memoryMiB ?? 64}`,
      `romimage: file=${BOCHS_BIOS}`,
      `vgaromimage: file=${VGA_BIOS}`,
      `cpu: model=${options.cpuModel ?? 'corei7_haswell_4770'}, count=1, reset_on_triple_fault=0`,
      'floppya: 1_44=floppy.img, status=inserted',
      'boot: floppy',
      'com1: enabled=1, mode=file, dev=com1.txt',
      `clock: sync=none, time0=${RTC_START}`,
      'port_e9_hack: enabled=1',
      'display_library: sdl2',
      'mouse: enabled=0',
      'log: bochs.log',
      'panic: action=fatal',
      '',
    ].join('\n'));
    const r = spawnSync('bochs', ['-q', '-f', 'bochsrc', '-rc', 'debugger.rc'], {
      cwd: dir,
      env: { ...process.env, SDL_VIDEODRIVER: 'dummy', SDL_AUDIODRIVER: 'dummy', TZ: 'UTC' },
      timeout: options.timeoutMs ?? 20_000,
      killSignal: 'SIGKILL',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 64 * 1024 * 1024,
    });
    if (r.error && (r.error as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw r.error;
    const read = (name: string): string => (existsSync(join(dir, name)) ? readFileSync(join(dir, name), 'latin1') : '');
    const stdout = r.stdout ?? Buffer.alloc(0);
    return {
      serial: read('com1.txt'),
      status: bochsStatus(stdout),
      stdout: stdout.toString('latin1'),
      log: read('bochs.log'),
      timedOut: r.signal === 'SIGKILL',
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the image on hvsim (Multiboot, `hvsim run IMAGE`) and returns COM1's output. */
export function runOnHvsim(binPath: string, maxInsns = 200_000_000): GuestRun & { err: string[] } {
  const serial: number[] = [], err: string[] = [];
  const status = main(['run', binPath, '--bare', '--max-insns', String(maxInsns)], {
    out: () => {}, err: (l) => err.push(l), serial: (b) => serial.push(b),
  });
  // hvsim's own endings share numbers with debug-exit statuses (3 = budget,
  // 5 = triple fault) but, unlike a debug exit, each says why on stderr
  // (other stderr lines, such as a failed VM entry's, are diagnostics only).
  const ownEnding = err.some((l) => /^hvsim: (stopped|shutdown|unhandled|internal)/.test(l));
  return { serial: Buffer.from(serial).toString('latin1'), status: !ownEnding && status % 2 === 1 ? status : null, err };
}

export interface Comparison {
  hvsim: GuestRun & { err: string[] };
  bochs: BochsRun;
  /** Same COM1 output and the same exit status. */
  same: boolean;
}

/** Runs the same image on both machines. */
export function compareWithBochs(binPath: string, options: BochsOptions = {}): Comparison {
  const hvsim = runOnHvsim(binPath);
  const bochs = runOnBochs(binPath, options);
  return { hvsim, bochs, same: hvsim.serial === bochs.serial && hvsim.status === bochs.status };
}
