#!/usr/bin/env node
/** Entry point of the `hvsim` command. */
import { main } from './hvsim.js';

// Serial bytes are collected and written in chunks: one write per byte would be slow.
const serial: number[] = [];
const flush = (): void => {
  if (serial.length > 0) process.stdout.write(Buffer.from(serial.splice(0)));
};
process.exitCode = main(process.argv.slice(2), {
  out: (line) => { flush(); console.log(line); },
  err: (line) => { flush(); console.error(line); },
  serial: (byte) => { serial.push(byte); if (byte === 10 || serial.length >= 4096) flush(); },
  // The progress line of a long run, on a terminal only (not in a pipe or a file).
  progress: process.stderr.isTTY ? (text) => { flush(); process.stderr.write(text); } : undefined,
});
flush();
