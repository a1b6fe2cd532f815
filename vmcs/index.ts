/** VMX architecture facts as data (SDM vol. 3C chapter 25, vol. 3D appendices A-C). */
export * from './fields.js';
export * from './controls.js';
export * from './exit-reasons.js';
export * from './instruction-errors.js';
export * from './qualifications.js';
export * from './layout.js';
