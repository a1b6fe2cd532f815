/**
 * The same guest images on hvsim and on Bochs (an independent x86 model with
 * VMX): guests/lib/bootsector.inc makes one file a floppy boot sector for
 * Bochs's BIOS and a Multiboot kernel for hvsim's loader. The transcripts
 * below are the SDM's results; both machines are checked against them. The
 * Bochs tests are skipped where Bochs is not installed (.ci/run installs it).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseMultibootHeader } from '../../src/platform/loaders/multiboot.js';
import { bochsAvailable, compareWithBochs, runOnBochs, runOnHvsim } from './bochs.js';
import { VMX_EPT, VMX_EPT_STATUS } from './vmx-ept.transcript.js';

const guest = (name: string): string => new URL(`../../guests/${name}`, import.meta.url).pathname;
const lines = (serial: string): string[] => serial.split('\n');

/** Debug-exit status of a guest that wrote 0 (MACHINE_EXIT with AL = 0). */
const STATUS_OK = 1;

const HELLO = [
  'oracle-hello: 64-bit mode',
  'oracle-hello: #DE handled',                 // SDM vol. 3A, 6.15 #DE: fault, no error code
  'oracle-hello: resumed after #DE',
  'oracle-hello: #GP error code 0x1230',       // vol. 2 MOV: DS index beyond the GDT limit -> #GP(selector); 6.13: RPL bits read as EXT = IDT = 0
  'oracle-hello: resumed after #GP',
  // INT 21H through a type-0 gate: #GP(21H << 3 | IDT) (6.13; vol. 2 INT n, "error_code(vector, 1, EXT)"),
  // not 21H × 16, reported as a fault of the INT: the saved RIP is the INT's.
  'oracle-hello: #GP error code 0x10a',
  'oracle-hello: resumed at INT 21H',
  'oracle-hello: CMOS date 2024-01-01',        // both RTCs start at 2024-01-01 00:00:00, BCD
  'oracle-hello: CMOS 15h base memory KiB 0x280',
  'oracle-hello: CMOS 17h memory above 1 MiB KiB 0xfc00',  // 64 MiB - 1 MiB
  'oracle-hello: CMOS 34h 64 KiB blocks above 16 MiB 0x300',
  'oracle-hello: done',
  '',
];

/** guests/vmx-basic.bin, line by line, with the SDM vol. 3C rule behind each value. */
const VMX_BASIC = [
  'vmx-basic: 64-bit host',
  'vmx-basic: VMXON',                                          // 24.7, 31.3 VMXON: VMsucceed
  'vmx-basic: VMLAUNCH',
  // The guest's own OUTs to COM1 pass: their ports are clear in the I/O bitmaps (25.6.4, 26.1.3).
  'guest: VMX non-root operation; COM1 output does not exit',
  // CPUID exits unconditionally (26.1.2); the host answers leaf 40000000H itself.
  'guest: CPUID 40000000H: VMXGuestTest, max leaf 0x40000001',
  'guest: CPUID.1:ECX.VMX = 0x0',                               // the host's emulation hides VMX
  'guest: CPUID 40000001H: VM exits so far 0x3',               // three CPUIDs, three exits
  // RDMSR of an MSR whose read-bitmap bit is 1 exits (25.6.9, 26.1.3); the host answers FC_LOCK.
  'guest: RDMSR 3AH (exits): 0x1',
  // No exit: the MSR holds what VM entry loaded from GUEST_IA32_SYSENTER_CS (27.3.2.1).
  'guest: RDMSR 174H (does not exit): 0x8',
  'guest: HLT exited and was skipped; VMCALL',                 // HLT exiting (26.1.3), RIP += exit instruction length (28.2.5)
  'vmx-basic: VMCALL: the guest is done',                      // VMCALL exits unconditionally (26.1.2)
  // Basic exit reasons (appendix C): each exit counted once.
  'vmx-basic: exit 10 CPUID: 3',
  'vmx-basic: exit 12 HLT: 1',
  'vmx-basic: exit 18 VMCALL: 1',
  'vmx-basic: exit 30 I/O instruction: 1',                     // OUT 80H only: port 80H set in bitmap A
  'vmx-basic: exit 31 RDMSR: 1',
  // 28.2.1, exit qualification for I/O instructions: size - 1 = 0 (bits 2:0), OUT (bit 3 = 0),
  // not string/REP, immediate operand (bit 6), port 80H (bits 31:16).
  'vmx-basic: I/O exit qualification 0x800040: port 0x80, 1 byte, OUT, immediate port; value 0x42',
  'vmx-basic: host IA32_SYSENTER_CS after VM exit: 0x0',       // 28.5.1: loaded from the host-state field
  // 27.2.1.1: a default1 pin-based control (A.3.1) cleared -> VMfailValid 7 (31.4, table 31-1).
  'vmx-basic: VMLAUNCH with pin-based control bit 1 cleared: VMfailValid 7',
  // 27.3.1.4: RFLAGS bit 1 must be 1; a guest-state failure is a VM exit with reason
  // bit 31 set and basic reason 33 (27.8, appendix C), qualification 0 (27.8).
  'vmx-basic: VMLAUNCH with GUEST_RFLAGS bit 1 cleared: exit reason 0x80000021, qualification 0x0',
  'vmx-basic: VMXOFF',
  'vmx-basic: done',
  '',
];

describe('guests built on lib/bootsector.inc: one file, a boot sector and a Multiboot kernel', () => {
  it.each(['oracle-hello.bin', 'vmx-basic.bin', 'bench-vmexit.bin', 'vmx-ept.bin'])(
    '%s: the boot signature at 510, the Multiboot header at offset 0x200 with header_addr - load_addr = 0x200 (Multiboot 0.6.96, 3.1.3)',
    (name) => {
      const bytes = readFileSync(guest(name));
      expect(bytes[510]).toBe(0x55);
      expect(bytes[511]).toBe(0xaa);
      expect(bytes.length % 512).toBe(0); // whole sectors: the boot sector reads them all
      const h = parseMultibootHeader(bytes);
      expect(h.offset).toBe(0x200);
      expect(h.loadAddr).toBe(0x100000);
      expect(h.headerAddr - h.loadAddr).toBe(h.offset);
      expect(h.loadEndAddr - h.loadAddr).toBe(bytes.length); // the whole file, boot sector included
      expect(h.bssEndAddr).toBeGreaterThan(h.loadEndAddr);
    },
  );
});

describe('guests/vmx-basic.bin on hvsim', () => {
  it('boots through Multiboot and prints the SDM transcript, the one Bochs prints (SDM vol. 3C 24-28, 31, appendix C)', () => {
    const r = runOnHvsim(guest('vmx-basic.bin'));
    expect(lines(r.serial)).toEqual(VMX_BASIC);
    expect(r.status).toBe(STATUS_OK);
    // The two deliberate entry failures are named on stderr (27.2.1.1, 27.3.1.4); nothing else is.
    expect(r.err.map((l) => l.replace(/:.*/, ''))).toEqual(['hvsim', 'hvsim']);
    expect(r.err[0]).toContain('(SDM 27.2.1.1)');
    expect(r.err[1]).toContain('(SDM 27.3.1.4)');
  });
});

describe('guests/vmx-ept.bin on hvsim', () => {
  it('EPT remapping, violations, a misconfiguration and an unrestricted real-mode guest: the transcript Bochs prints (SDM vol. 3C 25.6.11, 28.2.1, 29.3, 31.3 INVEPT)', () => {
    const r = runOnHvsim(guest('vmx-ept.bin'));
    expect(lines(r.serial)).toEqual(VMX_EPT);
    expect(r.status).toBe(VMX_EPT_STATUS);
    expect(r.err).toEqual([]);
  });
});

describe.skipIf(!bochsAvailable())('Bochs as an oracle', () => {
  it('oracle-hello: hvsim and Bochs print the same lines and end with the same status (SDM vol. 3A 6.15 #DE, #GP; CMOS)', () => {
    const r = compareWithBochs(guest('oracle-hello.bin'));
    expect(r.bochs.timedOut).toBe(false);
    expect(lines(r.bochs.serial)).toEqual(HELLO);
    expect(lines(r.hvsim.serial)).toEqual(HELLO);
    expect(r.bochs.status).toBe(STATUS_OK);
    expect(r.hvsim.status).toBe(STATUS_OK);
    expect(r.same).toBe(true);
  });

  it('vmx-basic: Bochs boots the image from a floppy and prints the SDM transcript (SDM vol. 3C 24-28, 31, appendix C)', () => {
    const r = runOnBochs(guest('vmx-basic.bin'));
    expect(r.timedOut).toBe(false);
    expect(lines(r.serial)).toEqual(VMX_BASIC);
    expect(r.status).toBe(STATUS_OK);
  });

  // The transcript and the SDM rule behind each line: vmx-ept.transcript.ts (shared with the hvsim run above).
  it('vmx-ept: EPT remapping, violations, a misconfiguration and an unrestricted real-mode guest print the SDM transcript (SDM vol. 3C 25.6.11, 28.2.1, 29.3, 31.3 INVEPT)', () => {
    const r = runOnBochs(guest('vmx-ept.bin'));
    expect(r.timedOut).toBe(false);
    expect(lines(r.serial)).toEqual(VMX_EPT);
    expect(r.status).toBe(VMX_EPT_STATUS);
  });
});
