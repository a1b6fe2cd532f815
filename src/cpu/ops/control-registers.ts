import type { Entry } from '../insn.js';

export const CONTROL_REGISTER_TABLE: Record<number, Entry> = {};
