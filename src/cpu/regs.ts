/** Register numbers in x86 encoding order (SDM vol. 2, 2.1.5, table 2-2). */
export const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, RBP = 5, RSI = 6, RDI = 7;
export const R8 = 8, R9 = 9, R10 = 10, R11 = 11, R12 = 12, R13 = 13, R14 = 14, R15 = 15;

/** Segment registers in encoding order (SDM vol. 2, 3.1.1.3, table 3-1 "Sreg"). */
export const ES = 0, CS = 1, SS = 2, DS = 3, FS = 4, GS = 5;
/** LDTR and TR share the segment arrays (selector, base, limit, access rights), as in the VMCS. */
export const LDTR = 6, TR = 7;
export const SEG_NAMES = ['es', 'cs', 'ss', 'ds', 'fs', 'gs', 'ldtr', 'tr'] as const;

export const GPR_NAMES = [
  'rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
] as const;

/** RFLAGS bits (SDM vol. 1, 3.4.3, figure 3-8). */
export const CF = 1 << 0, PF = 1 << 2, AF = 1 << 4, ZF = 1 << 6, SF = 1 << 7;
export const TF = 1 << 8, IF = 1 << 9, DF = 1 << 10, OF = 1 << 11;
export const IOPL = 3 << 12, NT = 1 << 14, RF = 1 << 16, VM = 1 << 17, AC = 1 << 18;
export const VIF = 1 << 19, VIP = 1 << 20, ID = 1 << 21;
/** The six status flags that arithmetic sets. */
export const STATUS_FLAGS = CF | PF | AF | ZF | SF | OF;
/** Bit 1 of RFLAGS reads as 1. */
export const RFLAGS_FIXED1 = 1 << 1;

/** Exception vectors (SDM vol. 3A, 6.3.1, table 6-1). */
export const enum Vector {
  DE = 0, DB = 1, NMI = 2, BP = 3, OF = 4, BR = 5, UD = 6, NM = 7,
  DF = 8, TS = 10, NP = 11, SS = 12, GP = 13, PF = 14, MF = 16, AC = 17,
  MC = 18, XM = 19, VE = 20, CP = 21,
}
export const VECTOR_NAMES: Record<number, string> = {
  0: '#DE', 1: '#DB', 2: 'NMI', 3: '#BP', 4: '#OF', 5: '#BR', 6: '#UD', 7: '#NM',
  8: '#DF', 10: '#TS', 11: '#NP', 12: '#SS', 13: '#GP', 14: '#PF', 16: '#MF', 17: '#AC',
  18: '#MC', 19: '#XM', 20: '#VE', 21: '#CP',
};

/** Segment access rights in the VMCS layout (SDM vol. 3C, 25.4.1 "Guest Register State", table 25-2). */
export const enum SegAttr {
  TYPE = 0xf, S = 1 << 4, DPL = 3 << 5, P = 1 << 7, AVL = 1 << 12,
  L = 1 << 13, DB = 1 << 14, G = 1 << 15, UNUSABLE = 1 << 16,
}

/** EFER bits (SDM vol. 3A, 2.2.1). */
export const EFER_SCE = 1 << 0, EFER_LME = 1 << 8, EFER_LMA = 1 << 10, EFER_NXE = 1 << 11;
