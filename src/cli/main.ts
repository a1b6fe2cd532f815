#!/usr/bin/env node
/** Entry point of the `hvsim` command. */
import { readFileSync } from 'node:fs';
import { debugMain, isDebugInvocation } from './debug.js';
import { main } from './hvsim.js';

// Serial bytes are collected and written in chunks: one write per byte would be slow.
const serial: number[] = [];
const flush = (): void => {
  if (serial.length > 0) process.stdout.write(Buffer.from(serial.splice(0)));
};
const argv = process.argv.slice(2);
// `hvsim debug` and `hvsim run --gdb` wait for a REPL or gdb: they run asynchronously.
if (isDebugInvocation(argv)) {
  process.exitCode = await debugMain(argv, {
    out: (line) => { flush(); console.log(line); },
    err: (line) => { flush(); console.error(line); },
    serial: (byte) => { serial.push(byte); if (byte === 10 || serial.length >= 4096) flush(); },
    stdinScript: () => (process.stdin.isTTY ? null : readFileSync(0, 'utf8')),
    terminal: { input: process.stdin, output: process.stdout },
  });
} else process.exitCode = main(argv, {
  out: (line) => { flush(); console.log(line); },
  err: (line) => { flush(); console.error(line); },
  serial: (byte) => { serial.push(byte); if (byte === 10 || serial.length >= 4096) flush(); },
  // The progress line of a long run, on a terminal only (not in a pipe or a file).
  progress: process.stderr.isTTY ? (text) => { flush(); process.stderr.write(text); } : undefined,
});
flush();
