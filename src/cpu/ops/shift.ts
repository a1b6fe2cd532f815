import type { Entry } from '../insn.js';

export const SHIFT_TABLE: Record<number, Entry> = {};
