import type { Entry } from '../insn.js';

export const BITS_TABLE: Record<number, Entry> = {};
