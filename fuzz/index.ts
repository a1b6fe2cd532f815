export { instructionForms, instructionArbitrary, anyInstruction, edgeBiasedInteger, isStringForm } from './instructions.js';
export type {
  Mode, ModConstraint, InstructionForm, MemoryOperand, InstructionLayout, GeneratedInstruction, EncodeOptions,
} from './instructions.js';
export {
  runInGuest, guestPteAddress, GUEST_CODE, HANDLERS, HOST_RIP, LAUNCH_ADDRESS, SCRATCH_PAGES, VMCS_REGION, VMXON_REGION,
} from '../src/vmx/testing.js';
export type { GuestRun, GuestRunOptions, GuestMode } from '../src/vmx/testing.js';
export {
  validVmcsConfig, violatingVmcsConfig, guestState, ioInstruction, msrAccess, crAccess, applyVmcsConfig, applyViolation,
  guestMode, modeOf, VIOLATIONS, IO_DATA,
} from './vmx-arbitraries.js';
export type {
  GuestKind, GuestState, GuestStateOptions, VmcsConfig, VmcsConfigOptions, Violation, ViolatingConfig, GuestInstruction,
  IoInstruction, MsrAccess, CrAccess,
} from './vmx-arbitraries.js';
export { hypervisorProgram, programStep, exitChoices, programImage, expectedExits, PROGRAM_BASE } from './hv-programs.js';
export type { HypervisorProgram, ProgramStep, ExitPoint, ExitCause, ExpectedExit, OwnedBits } from './hv-programs.js';
export { costCountsArbitrary, phaseCountsArbitrary, costPricesArbitrary, costProfileArbitrary } from '../src/cost/arbitraries.js';
