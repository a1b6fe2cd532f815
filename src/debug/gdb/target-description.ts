/**
 * The x86-64 target description that the stub hands to gdb through
 * `qXfer:features:read:target.xml` (GDB manual, "Target Descriptions").
 *
 * One table, {@link X86_64_REGISTERS}, is the single source of truth: the XML
 * is generated from it, and the `g`/`G`/`p`/`P` packets lay registers out in
 * the same order, each as `bitSize / 8` bytes, least significant byte first.
 *
 * The features are the ones gdb's amd64 support looks for:
 * - `org.gnu.gdb.i386.core`: the general registers in gdb's amd64 order, RIP,
 *   EFLAGS, the six segment selectors, then the x87 registers st0-st7 and
 *   fctrl...fop (gdb refuses a core feature without them);
 * - `org.gnu.gdb.i386.sse`: xmm0-xmm15 and mxcsr;
 * - `org.gnu.gdb.i386.segments`: fs_base and gs_base (which gdb knows by
 *   name) and k_gs_base, the IA32_KERNEL_GS_BASE MSR that SWAPGS exchanges
 *   with gs_base (gdb shows it as an extra register);
 * - `org.hvsim.system`: cr0, cr2, cr3, cr4, cr8 and efer.
 */

/** The feature a register belongs to. */
export type FeatureName =
  | 'org.gnu.gdb.i386.core'
  | 'org.gnu.gdb.i386.sse'
  | 'org.gnu.gdb.i386.segments'
  | 'org.hvsim.system';

/** One register of the target description. */
export interface RegisterInfo {
  /** The name gdb shows (`$rax`). */
  readonly name: string;
  /** Width in bits; the register takes `bitSize / 8` bytes in a `g` reply. */
  readonly bitSize: number;
  /** A predefined gdb type (`int64`, `code_ptr`, `i387_ext`, ...) or one defined in the XML. */
  readonly type: string;
  /** The register group gdb lists it under (`info registers float`), if not the default. */
  readonly group?: 'general' | 'float' | 'vector' | 'system';
  /** The feature that holds it. */
  readonly feature: FeatureName;
}

const GENERAL_NAMES = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
] as const;
const SEGMENT_NAMES = ['cs', 'ss', 'ds', 'es', 'fs', 'gs'] as const;
const X87_STACK_NAMES = ['st0', 'st1', 'st2', 'st3', 'st4', 'st5', 'st6', 'st7'] as const;
const X87_CONTROL_NAMES = ['fctrl', 'fstat', 'ftag', 'fiseg', 'fioff', 'foseg', 'fooff', 'fop'] as const;
const XMM_NAMES = [
  'xmm0', 'xmm1', 'xmm2', 'xmm3', 'xmm4', 'xmm5', 'xmm6', 'xmm7',
  'xmm8', 'xmm9', 'xmm10', 'xmm11', 'xmm12', 'xmm13', 'xmm14', 'xmm15',
] as const;
const SYSTEM_NAMES = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer'] as const;

/** The name of a register in {@link X86_64_REGISTERS}. */
export type GdbRegisterName =
  | (typeof GENERAL_NAMES)[number]
  | 'rip' | 'eflags'
  | (typeof SEGMENT_NAMES)[number]
  | (typeof X87_STACK_NAMES)[number]
  | (typeof X87_CONTROL_NAMES)[number]
  | (typeof XMM_NAMES)[number]
  | 'mxcsr' | 'fs_base' | 'gs_base' | 'k_gs_base'
  | (typeof SYSTEM_NAMES)[number];

const CORE = 'org.gnu.gdb.i386.core';
const SSE = 'org.gnu.gdb.i386.sse';
const SEGMENTS = 'org.gnu.gdb.i386.segments';
const SYSTEM = 'org.hvsim.system';

function systemRegisterType(name: (typeof SYSTEM_NAMES)[number]): string {
  switch (name) {
    case 'cr0': return 'hvsim_cr0';
    case 'cr4': return 'hvsim_cr4';
    case 'efer': return 'hvsim_efer';
    case 'cr2':
    case 'cr3': return 'data_ptr';
    default: return 'int64';
  }
}

/**
 * The registers in gdb's numbering: index n here is register n of the `p`
 * packet and the n-th field of a `g` reply.
 *
 * | numbers | registers | bits |
 * |---|---|---|
 * | 0-15 | rax rbx rcx rdx rsi rdi rbp rsp r8-r15 | 64 |
 * | 16 | rip | 64 |
 * | 17 | eflags | 32 |
 * | 18-23 | cs ss ds es fs gs (selectors) | 32 |
 * | 24-31 | st0-st7 | 80 |
 * | 32-39 | fctrl fstat ftag fiseg fioff foseg fooff fop | 32 |
 * | 40-55 | xmm0-xmm15 | 128 |
 * | 56 | mxcsr | 32 |
 * | 57-59 | fs_base gs_base k_gs_base | 64 |
 * | 60-65 | cr0 cr2 cr3 cr4 cr8 efer | 64 |
 */
export const X86_64_REGISTERS: readonly RegisterInfo[] = [
  ...GENERAL_NAMES.map((name): RegisterInfo => ({
    name,
    bitSize: 64,
    type: name === 'rbp' || name === 'rsp' ? 'data_ptr' : 'int64',
    feature: CORE,
  })),
  { name: 'rip', bitSize: 64, type: 'code_ptr', feature: CORE },
  { name: 'eflags', bitSize: 32, type: 'i386_eflags', feature: CORE },
  ...SEGMENT_NAMES.map((name): RegisterInfo => ({ name, bitSize: 32, type: 'int32', feature: CORE })),
  ...X87_STACK_NAMES.map((name): RegisterInfo => ({ name, bitSize: 80, type: 'i387_ext', feature: CORE })),
  ...X87_CONTROL_NAMES.map((name): RegisterInfo => ({ name, bitSize: 32, type: 'int', group: 'float', feature: CORE })),
  ...XMM_NAMES.map((name): RegisterInfo => ({ name, bitSize: 128, type: 'vec128', feature: SSE })),
  { name: 'mxcsr', bitSize: 32, type: 'i386_mxcsr', group: 'vector', feature: SSE },
  { name: 'fs_base', bitSize: 64, type: 'int', feature: SEGMENTS },
  { name: 'gs_base', bitSize: 64, type: 'int', feature: SEGMENTS },
  { name: 'k_gs_base', bitSize: 64, type: 'int', feature: SEGMENTS },
  ...SYSTEM_NAMES.map((name): RegisterInfo => ({
    name,
    bitSize: 64,
    type: systemRegisterType(name),
    group: 'system',
    feature: SYSTEM,
  })),
];

/** Register numbers by name, e.g. `GDB_REGISTER.rip === 16`. */
export const GDB_REGISTER: Readonly<Record<GdbRegisterName, number>> = Object.fromEntries(
  X86_64_REGISTERS.map((info, index) => [info.name, index]),
) as Record<GdbRegisterName, number>;

/** Bytes of a `g` reply (before hex encoding): the sum of all register widths. */
export const REGISTER_FILE_BYTES: number = X86_64_REGISTERS.reduce((sum, info) => sum + info.bitSize / 8, 0);

/** A one-bit field of a flags type: its name and bit number. */
type FlagBit = readonly [name: string, bit: number];

// RFLAGS (SDM vol. 1, 3.4.3, figure 3-8).
const EFLAGS_BITS: readonly FlagBit[] = [
  ['CF', 0], ['PF', 2], ['AF', 4], ['ZF', 6], ['SF', 7], ['TF', 8], ['IF', 9], ['DF', 10],
  ['OF', 11], ['NT', 14], ['RF', 16], ['VM', 17], ['AC', 18], ['VIF', 19], ['VIP', 20], ['ID', 21],
];
// MXCSR (SDM vol. 1, 10.2.3, figure 10-3); the rounding-control field (bits 14:13) is left out.
const MXCSR_BITS: readonly FlagBit[] = [
  ['IE', 0], ['DE', 1], ['ZE', 2], ['OE', 3], ['UE', 4], ['PE', 5], ['DAZ', 6],
  ['IM', 7], ['DM', 8], ['ZM', 9], ['OM', 10], ['UM', 11], ['PM', 12], ['FZ', 15],
];
// CR0 (SDM vol. 3A, 2.5, figure 2-7).
const CR0_BITS: readonly FlagBit[] = [
  ['PE', 0], ['MP', 1], ['EM', 2], ['TS', 3], ['ET', 4], ['NE', 5], ['WP', 16], ['AM', 18],
  ['NW', 29], ['CD', 30], ['PG', 31],
];
// CR4 (SDM vol. 3A, 2.5, figure 2-7).
const CR4_BITS: readonly FlagBit[] = [
  ['VME', 0], ['PVI', 1], ['TSD', 2], ['DE', 3], ['PSE', 4], ['PAE', 5], ['MCE', 6], ['PGE', 7],
  ['PCE', 8], ['OSFXSR', 9], ['OSXMMEXCPT', 10], ['UMIP', 11], ['LA57', 12], ['VMXE', 13],
  ['SMXE', 14], ['FSGSBASE', 16], ['PCIDE', 17], ['OSXSAVE', 18], ['SMEP', 20], ['SMAP', 21],
  ['PKE', 22], ['CET', 23], ['PKS', 24],
];
// IA32_EFER (SDM vol. 3A, 2.2.1, figure 2-4).
const EFER_BITS: readonly FlagBit[] = [['SCE', 0], ['LME', 8], ['LMA', 10], ['NXE', 11]];

function flagsType(id: string, size: number, bits: readonly FlagBit[]): string {
  const fields = bits.map(([name, bit]) => `    <field name="${name}" start="${bit}" end="${bit}"/>`);
  return [`  <flags id="${id}" size="${size}">`, ...fields, '  </flags>'].join('\n');
}

const VECTOR_TYPES = [
  '  <vector id="v4f" type="ieee_single" count="4"/>',
  '  <vector id="v2d" type="ieee_double" count="2"/>',
  '  <vector id="v16i8" type="int8" count="16"/>',
  '  <vector id="v8i16" type="int16" count="8"/>',
  '  <vector id="v4i32" type="int32" count="4"/>',
  '  <vector id="v2i64" type="int64" count="2"/>',
  '  <union id="vec128">',
  '    <field name="v4_float" type="v4f"/>',
  '    <field name="v2_double" type="v2d"/>',
  '    <field name="v16_int8" type="v16i8"/>',
  '    <field name="v8_int16" type="v8i16"/>',
  '    <field name="v4_int32" type="v4i32"/>',
  '    <field name="v2_int64" type="v2i64"/>',
  '    <field name="uint128" type="uint128"/>',
  '  </union>',
].join('\n');

/** Type definitions each feature needs ahead of its registers. */
const FEATURE_TYPES: Record<FeatureName, string> = {
  'org.gnu.gdb.i386.core': flagsType('i386_eflags', 4, EFLAGS_BITS),
  'org.gnu.gdb.i386.sse': `${VECTOR_TYPES}\n${flagsType('i386_mxcsr', 4, MXCSR_BITS)}`,
  'org.gnu.gdb.i386.segments': '',
  'org.hvsim.system': [
    flagsType('hvsim_cr0', 8, CR0_BITS),
    flagsType('hvsim_cr4', 8, CR4_BITS),
    flagsType('hvsim_efer', 8, EFER_BITS),
  ].join('\n'),
};

function buildTargetXml(registers: readonly RegisterInfo[]): string {
  const lines = [
    '<?xml version="1.0"?>',
    '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
    '<target version="1.0">',
    '<architecture>i386:x86-64</architecture>',
  ];
  let open: FeatureName | null = null;
  registers.forEach((info, index) => {
    if (info.feature !== open) {
      if (open !== null) lines.push('</feature>');
      open = info.feature;
      lines.push(`<feature name="${info.feature}">`);
      const types = FEATURE_TYPES[info.feature];
      if (types !== '') lines.push(types);
    }
    const group = info.group === undefined ? '' : ` group="${info.group}"`;
    lines.push(
      `  <reg name="${info.name}" bitsize="${info.bitSize}" type="${info.type}" regnum="${index}"${group}/>`,
    );
  });
  if (open !== null) lines.push('</feature>');
  lines.push('</target>');
  return `${lines.join('\n')}\n`;
}

/** The target description document served as `target.xml` (ASCII only). */
export const X86_64_TARGET_XML: string = buildTargetXml(X86_64_REGISTERS);

/** A register layout and the XML that describes it, as the protocol engine uses them. */
export interface TargetDescription {
  /** Registers in `g` order. */
  readonly registers: readonly RegisterInfo[];
  /** The `target.xml` document. */
  readonly xml: string;
}

/** The x86-64 description: {@link X86_64_REGISTERS} and {@link X86_64_TARGET_XML}. */
export const X86_64_DESCRIPTION: TargetDescription = {
  registers: X86_64_REGISTERS,
  xml: X86_64_TARGET_XML,
};
