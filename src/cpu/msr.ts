/**
 * Model-specific registers (SDM vol. 4). The processor's MSR state that no
 * other unit owns lives here; RDMSR/WRMSR dispatch by MSR number.
 */
export class MsrFile {}
