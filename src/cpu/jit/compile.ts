/**
 * The block compiler: turns a hot block into one JavaScript function. Each
 * instruction with a template (OpDef.compile) becomes inline code; any other
 * becomes a direct call of its interpreter handler. The generated text holds
 * only numbers and the model's identifiers.
 *
 * Contract with the run loop (run.ts): the function runs the whole block from
 * its first instruction with RIP at the block's address, returns the number of
 * instructions retired, and leaves RIP at the next instruction to run. When an
 * instruction raises, cpu.blockIndex names it and the flags are exact.
 */
import { NO_LINK, SAME_PAGE, type Block } from '../blocks.js';
import type { Cpu } from '../cpu.js';
import { getCF, testCondition } from '../flags.js';
import { branchRelative } from '../operands.js';
import { checkOffset } from '../segment-limits.js';
import { Emitter } from './emitter.js';

export type CompiledBlock = (cpu: Cpu) => number;

/** Compiles `block`, or returns null where the interpreter must run it (16-bit code). */
export function compileBlock(block: Block): CompiledBlock | null {
  if (block.mode === 2) return null;
  const e = new Emitter(block.mode);
  const insns = block.insns;
  for (let k = 0; k < insns.length; k++) {
    const i = insns[k]!;
    e.index = k;
    e.last = k === insns.length - 1;
    e.startOffset = block.offsets[k]!;
    e.nextOffset = e.startOffset + i.len;
    e.wroteMemory = false;
    e.linked = block.links[k] !== NO_LINK;
    const inline = i.def.compile !== undefined && i.def.compile(e, i);
    // Pending work a write raised (code written, say) ends the block once the whole instruction is done
    // (a transfer has set RIP itself).
    if (inline && e.wroteMemory && !e.last) e.exitIf('cpu.pending !== 0', i.def.ends ? '' : e.ripStatement(e.nextOffset));
    if (!inline) {
      e.flush();
      e.emit(`${e.ripStatement(e.nextOffset)} cpu.blockIndex = ${k}; h${k}(cpu, i${k});`);
      if (k < insns.length - 1) e.emit(`if (cpu.pending !== 0) return ${k + 1};`);
    } else if (e.last && !i.def.ends && !i.def.exits) {
      e.emit(e.ripStatement(e.nextOffset));
    }
    // A link the block follows: on only where the transfer went where it was decoded to go (blocks.ts followsLink, inline).
    if (e.linked) {
      const ppn = block.links[k]!, at = `((rl + ${block.offsets[k + 1]}) | 0)`;
      e.exitIf(`cpu.ripLo !== ${at} || cpu.ripHi !== rh` + (ppn === SAME_PAGE ? '' : ` || m.cachedFetchPage(${at}, rh) !== ${ppn}`), '');
    }
  }
  e.flush();
  e.emit(`return ${insns.length};`);

  const bind = insns.map((_, k) => `const h${k} = H[${k}], i${k} = I[${k}];`).join('\n');
  const text = `${bind}\nreturn function block(cpu) {\n` +
    `const g = cpu.gpr, m = cpu.mmu, rl = cpu.ripLo, rh = cpu.ripHi;\n${e.source()}\n};`;
  const factory = new Function('H', 'I', 'getCF', 'testCondition', 'branchRelative', 'checkOffset', text) as (
    ...args: unknown[]) => CompiledBlock;
  return factory(insns.map((i) => i.exec), insns, getCF, testCondition, branchRelative, checkOffset);
}
