import type { Entry } from '../insn.js';

export const SSE_TABLE: Record<number, Entry> = {};
