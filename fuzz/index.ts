export { instructionForms, instructionArbitrary, anyInstruction, edgeBiasedInteger, isStringForm } from './instructions.js';
export type {
  Mode, ModConstraint, InstructionForm, MemoryOperand, InstructionLayout, GeneratedInstruction, EncodeOptions,
} from './instructions.js';
