import type { Entry } from '../insn.js';

export const SYSTEM_TABLE: Record<number, Entry> = {};
