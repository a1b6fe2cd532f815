/**
 * What guests/vmx-ept.bin prints on COM1, line by line, with the Intel SDM
 * vol. 3C rule behind each value. Bochs (corei7_haswell_4770) and hvsim both
 * print exactly this (spec-tests/oracle/bochs.test.ts).
 *
 * The addresses are the image's own choice (FIXED_BASE = 0x180000 in the
 * source): EPT_PML4 0x180000, G 0x185000, H 0x186000, U 0x187000, U's
 * host page 0x188000, RO 0x189000, M 0x18a000, the guest page table 0x18c000.
 * No capability MSR value is printed: the lines do not depend on which
 * optional EPT features (2 MiB pages, A/D flags, VPID) the processor offers.
 */
export const VMX_EPT: readonly string[] = [
  'vmx-ept: 64-bit host',
  'vmx-ept: VMXON',
  // IA32_VMX_EPT_VPID_CAP (A.10): bits 6, 14, 20, 25, 26; "enable EPT" allowed (A.3.3).
  'vmx-ept: EPT: 4-level page walk, write-back, INVEPT single-context and all-context',
  // 25.6.11: EPTP = PML4 address | (walk length 4 - 1) << 3 | memory type WB (6); bit 6 (A/D) = 0.
  'vmx-ept: EPTP 0x18001e',
  'vmx-ept: G 0x185000 -> host-physical H 0x186000; the host reads G: identity page',
  'vmx-ept: U not present: 0x187000',
  'vmx-ept: RO read-only: 0x189000',
  'vmx-ept: M write-only (misconfigured): 0x18a000',
  'vmx-ept: guest page table not present: 0x18c000, maps linear 0x40003000',
  'vmx-ept: INVEPT all-context; VMLAUNCH',                      // 31.3 INVEPT type 2: VMsucceed
  // 29.3.2: the guest-physical address G is translated through the EPT leaf, which names H.
  'guest: reads G: remapped page',
  'guest: reads RO: 0x11111111',                                 // R = 1: a read is allowed (29.3.3.2)
  'guest: writes 0x22222222 to RO',
  // 29.3.3.2: a write to a page whose leaf has W = 0 is an EPT violation, exit reason 48 (appendix C).
  // 28.2.1, table 28-7: bit 1 data write; bits 3-5 = R, W, X of the entries (1, 0, 0); bit 7 linear
  // address valid; bit 8 = 1, the access was to the translation of that linear address.
  'vmx-ept: exit 48 EPT violation, qualification 0x18a: write; readable, not writable, not executable; guest-linear address valid, access to its translation',
  // 28.2.3: the faulting guest-physical address, page offset included; 0x640A: the linear address.
  'vmx-ept:   guest-physical 0x189010, guest-linear 0x189010',
  'vmx-ept: RO made writable; INVEPT single-context; VMRESUME',
  // An EPT violation is fault-like (29.3.3.2): the MOV was not done and runs again after VMRESUME.
  'guest: reads RO back: 0x22222222',
  // A not-present leaf (R = W = X = 0): bit 0 data read, bits 3-5 = 0 (table 28-7).
  'vmx-ept: exit 48 EPT violation, qualification 0x181: read; not readable, not writable, not executable; guest-linear address valid, access to its translation',
  'vmx-ept:   guest-physical 0x187100, guest-linear 0x187100',
  'vmx-ept: U mapped to host-physical 0x188000; INVEPT single-context; VMRESUME',
  'guest: reads U: mapped by the host',                          // read through the new leaf
  // 29.3.3.1: R = 0 with W = 1 is an EPT misconfiguration, exit reason 49 (appendix C); 28.2.1:
  // the exit qualification is cleared (not an exit that defines one); 28.2.3: the guest-physical address.
  'vmx-ept: exit 49 EPT misconfiguration, qualification 0x0, guest-physical 0x18a200',
  'vmx-ept: M given R = 1; INVEPT single-context; VMRESUME',
  'guest: reads M: R = 1 after the misconfiguration',
  // The guest's own walk reads its PTE (PT index 3, at 0x18c000 + 3 × 8) from a guest-physical
  // page EPT does not map: bit 0 read, bit 7 = 1, bit 8 = 0 (a paging-structure entry, table 28-7).
  'vmx-ept: exit 48 EPT violation, qualification 0x81: read; not readable, not writable, not executable; guest-linear address valid, access to a guest paging-structure entry',
  'vmx-ept:   guest-physical 0x18c018, guest-linear 0x40003000',
  'vmx-ept: guest page table mapped; INVEPT single-context; VMRESUME',
  // Two dimensions: linear 0x40003000 -> guest-physical G (guest paging) -> H (EPT).
  'guest: reads 0x40003000: remapped page',
  // Above 2 MiB: a 2 MiB EPT page where A.10 bit 16 offers them, else 4 KiB pages: the same bytes.
  'guest: reads 0x3ff000: identity map above 2 MiB',
  'guest: VMCALL',                                               // VMCALL exits unconditionally (26.1.2)
  'vmx-ept: VMCALL: EPT violations 3, EPT misconfigurations 1',
  // Unrestricted guest (25.6.2): CR0.PE = PG = 0 pass the VM-entry checks (27.3.1.1), and the
  // real-mode segments (CS type 11, base = selector << 4, limit FFFFH) those of 27.3.1.2.
  'vmx-ept: unrestricted guest: real-mode VMLAUNCH at CS:IP 0x800:0x0',
  'real-mode guest: CR0.PE = 0, OUT to COM1',                    // no I/O exiting: OUT does not exit (26.1.3)
  // HLT exiting (26.1.3); 28.3.3: the RIP saved is that of the instruction that caused the exit.
  'vmx-ept: real-mode guest: exit 12 HLT at CS:IP 0x800:0x21',
  // RIP += VM-exit instruction length (28.2.5); VMCALL exits in real mode too (26.1.2).
  'vmx-ept: real-mode guest: exit 18 VMCALL at CS:IP 0x800:0x22',
  // 25.6.6: MOV from CR0 reads NE (owned by the host: guest/host mask bit 5) from the read shadow (0);
  // ET = 1; CD = NW = 0 as the host left them (27.3.2.1: VM entry does not change CD, NW, ET).
  // 28.3.1: VM exit saves the real CR0, NE = 1 (a fixed bit, A.7).
  'vmx-ept: real-mode guest read CR0 = 0x10, GUEST_CR0 = 0x30',
  'vmx-ept: VMXOFF',
  'vmx-ept: done',
  '',
];

/** Debug-exit status of the run: MACHINE_EXIT with AL = 0, (0 << 1) | 1. */
export const VMX_EPT_STATUS = 1;
