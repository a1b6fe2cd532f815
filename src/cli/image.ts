/** Images and output of the `hvsim` command: where bundled guests are, reading an image, where output goes. */
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { ImageError } from '../platform/loaders/index.js';
import { UsageError } from './args.js';

/** A bundled guest: guests/NAME in the package, found from this module in src/ or dist/. */
export function bundledGuest(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'guests', name);
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) throw new ImageError(`the bundled guest ${name} is missing from this installation`);
    dir = up;
  }
}

export type Print = (line: string) => void;

/** Reads an image; a gzip-compressed one is decompressed, as GRUB does for kernels and modules. */
export function readImage(path: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ImageError(`cannot read image '${path}': ${code === 'ENOENT' ? 'no such file' : code ?? String(e)}`);
  }
  if (bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    return gunzipSync(bytes);
  } catch (e) {
    throw new ImageError(`cannot decompress gzip image '${path}': ${(e as Error).message}`);
  }
}

/**
 * Where the command writes: result lines, diagnostics, the guest's serial
 * bytes, and (when stderr is a terminal) the progress line of a long run.
 */
export interface Output { out: Print; err: Print; serial: (byte: number) => void; progress?: (text: string) => void }

/**
 * Fails with a usage error, before any run, when `file` cannot be written;
 * opens it for appending, so an existing file keeps its contents until the
 * run's output replaces it at the end.
 */
export function checkWritable(file: string): void {
  try {
    closeSync(openSync(file, 'a'));
  } catch (e) {
    throw new UsageError(`cannot write '${file}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}
