import type { Entry } from '../insn.js';

export const STRING_TABLE: Record<number, Entry> = {};
