/**
 * Instruction text for exit records, traces and the debugger, formatted by
 * iced-x86 (a decoder no one here wrote, so the text is a second opinion on
 * the bytes the model executed): Intel syntax as nasm writes it, or AT&T.
 */
import { Decoder, DecoderOptions, Formatter, FormatterSyntax } from 'iced-x86';

export type Syntax = 'intel' | 'att';

const formatters = new Map<Syntax, Formatter>();

function formatter(syntax: Syntax): Formatter {
  let f = formatters.get(syntax);
  if (f === undefined) {
    f = new Formatter(syntax === 'att' ? FormatterSyntax.Gas : FormatterSyntax.Nasm);
    f.spaceAfterOperandSeparator = true;
    f.hexPrefix = '0x';
    f.hexSuffix = '';
    f.uppercaseHex = false;
    formatters.set(syntax, f);
  }
  return f;
}

/**
 * The first instruction of `bytes` at address `ip` in code of `bitness` bits:
 * its text and length, or '(bad)' with length 0 when the bytes do not form one.
 */
export function disassemble(bytes: Uint8Array, bitness: 16 | 32 | 64, ip: bigint, syntax: Syntax = 'intel'): { text: string; length: number } {
  const decoder = new Decoder(bitness, bytes, DecoderOptions.None);
  try {
    decoder.ip = BigInt.asUintN(64, ip);
    const insn = decoder.decode();
    try {
      if (insn.isInvalid) return { text: '(bad)', length: 0 };
      return { text: formatter(syntax).format(insn), length: insn.length };
    } finally {
      insn.free();
    }
  } finally {
    decoder.free();
  }
}
