import type { Entry } from '../insn.js';

export const MULDIV_TABLE: Record<number, Entry> = {};
