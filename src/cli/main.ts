#!/usr/bin/env node
/** Entry point of the `hvsim` command. */
import { main } from './hvsim.js';

process.exitCode = main(process.argv.slice(2), (line) => console.log(line), (line) => console.error(line));
