import type { Entry } from '../insn.js';

export const IO_TABLE: Record<number, Entry> = {};
