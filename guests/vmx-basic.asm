; A small VMX hypervisor. The host (64-bit, identity-mapped) enters VMX
; operation and launches a 64-bit guest that shares its address space. The
; guest makes CPUIDs (always exit; the host emulates them), an OUT to port
; 80H (exits: set in I/O bitmap A) and OUTs to COM1 (do not exit: the guest
; prints its own lines), an RDMSR of IA32_FEATURE_CONTROL (exits: set in the
; MSR read bitmap) and one of IA32_SYSENTER_CS (does not exit: reads the
; value VM entry loaded from the VMCS), a HLT (exits: HLT exiting) and a
; VMCALL (always exits), on which the host prints the exits it counted. Then
; two VM entries that must fail: bad controls (VMfailValid 7) and bad guest
; state (a VM exit with reason 80000021H). Ends with VMXOFF, status 1.
;
; Only values the SDM fixes are printed (no revision identifier, no
; capability MSR, no host CPUID value), so Bochs and hvsim print the same
; lines (spec-tests/oracle/bochs.test.ts).
;
; One image for both machines (lib/bootsector.inc): hvsim run guests/vmx-basic.bin
; loads it as Multiboot; Bochs boots it from a floppy.
;
; Intel SDM vol. 3C: 25.6.4 (I/O bitmaps), 25.6.9 (MSR bitmaps), 26.1.2-26.1.3
; (instructions that cause VM exits: CPUID, VMCALL always; HLT, I/O, RDMSR by
; control), 27.2.1.1 (reserved controls -> VMfailValid 7, table 31-1),
; 27.3.1.4 (RFLAGS bit 1 must be 1), 27.8 (VM-entry failure: exit reason
; bit 31, basic reason 33), 28.2.1 (exit qualification for I/O, table 28-5),
; 28.2.5 (VM-exit instruction length), 27.3.2.1 / 28.5.1 (SYSENTER MSRs
; loaded on entry and exit), appendix C (exit reasons).
%include "lib/bootsector.inc"

COM1      equ 0x3F8
EXIT_PORT equ 0x80                   ; the one port in the I/O bitmaps
EXIT_MSR  equ IA32_FEATURE_CONTROL   ; the one MSR in the read bitmap
HV_LEAF   equ 0x40000000             ; the hypervisor's CPUID leaves

%include "lib/vmx64.inc"
%include "lib/idt64.inc"
%include "lib/serial64.inc"

bits 64
start64:
        call host_init
        lea rsi, [rel msg_start]
        call say
        call vmx_enable
        lea rsi, [rel msg_vmxon]
        call say

        or byte [rel io_bitmap_a + EXIT_PORT / 8], 1 << (EXIT_PORT % 8)
        or byte [rel msr_bitmaps + EXIT_MSR / 8], 1 << (EXIT_MSR % 8)  ; read bitmap, low MSRs
        lea rdi, [rel vmcs1]
        call vmcs_activate
        mov r8d, CPU_HLT_EXITING | CPU_IO_BITMAPS | CPU_MSR_BITMAPS
        lea r9, [rel vm_exit]
        lea r10, [rel guest_main]
        lea r11, [rel guest_stack_top]
        call vmcs_setup
        lea rsi, [rel msg_launch]
        call say
        VMX "VMLAUNCH", vmlaunch     ; on success the guest runs

; ---- The guest (VMX non-root operation, CPL 0, 64-bit) ----
guest_main:
        lea rsi, [rel msg_g_hello]
        call puts
        mov eax, HV_LEAF
        xor ecx, ecx
        cpuid
        mov [rel guest_vendor], ebx
        mov [rel guest_vendor + 4], ecx
        mov [rel guest_vendor + 8], edx
        mov r12d, eax
        lea rsi, [rel msg_g_leaf]
        call puts
        lea rsi, [rel guest_vendor]
        call puts
        lea rsi, [rel msg_g_max]
        mov eax, r12d
        call report
        mov eax, 1
        xor ecx, ecx
        cpuid                        ; the host hides VMX from the guest
        shr ecx, 5
        and ecx, 1
        mov eax, ecx
        lea rsi, [rel msg_g_vmx]
        call report
        mov eax, HV_LEAF + 1
        xor ecx, ecx
        cpuid
        lea rsi, [rel msg_g_count]
        call report
        mov al, 0x42
        out EXIT_PORT, al            ; exits
        mov ecx, EXIT_MSR
        rdmsr                        ; exits: the host answers
        lea rsi, [rel msg_g_fc]
        call report
        mov ecx, IA32_SYSENTER_CS
        rdmsr                        ; no exit
        lea rsi, [rel msg_g_sysenter]
        call report
        hlt                          ; exits; the host skips it
        lea rsi, [rel msg_g_hlt]
        call puts
        vmcall                       ; exits: the guest is done
        ud2

guest_vmcall:                        ; the guest of vmcs2, should an entry succeed
        vmcall
        ud2

; ---- VM exits from vmcs1 (HOST_RIP) ----
; The guest's general registers, pushed on the exit stack (HOST_RSP).
G_RAX equ 14 * 8
G_RBX equ 13 * 8
G_RCX equ 12 * 8
G_RDX equ 11 * 8
vm_exit:
        PUSH_GPRS
        mov rbp, rsp
        vmr VMCS_EXIT_REASON
        cmp rax, 64                  ; a basic reason, bits 31:16 clear
        jae report_exit
        lea rbx, [rel exit_counts]
        inc qword [rbx + rax * 8]
        inc qword [rel exits_total]
        cmp eax, EXIT_REASON_CPUID
        je .cpuid
        cmp eax, EXIT_REASON_HLT
        je .next
        cmp eax, EXIT_REASON_IO
        je .io
        cmp eax, EXIT_REASON_RDMSR
        je .rdmsr
        cmp eax, EXIT_REASON_VMCALL
        je guest_done
        jmp report_exit

.cpuid: mov eax, [rbp + G_RAX]
        cmp eax, HV_LEAF
        je .hv_id
        cmp eax, HV_LEAF + 1
        je .hv_count
        mov ecx, [rbp + G_RCX]       ; any other leaf: the processor's answer,
        cpuid                        ; less CPUID.1:ECX.VMX
        cmp dword [rbp + G_RAX], 1
        jne .cpuid_out
        and ecx, ~(1 << 5)
        jmp .cpuid_out
.hv_id: mov eax, HV_LEAF + 1         ; highest hypervisor leaf, and a signature
        mov ebx, 'VMXG'
        mov ecx, 'uest'
        mov edx, 'Test'
        jmp .cpuid_out
.hv_count:
        mov rax, [rel exits_total]   ; VM exits so far, this one included
        xor ebx, ebx
        xor ecx, ecx
        xor edx, edx
.cpuid_out:                          ; CPUID writes 32 bits: 63:32 become 0
        mov [rbp + G_RAX], rax
        mov [rbp + G_RBX], rbx
        mov [rbp + G_RCX], rcx
        mov [rbp + G_RDX], rdx
        jmp .next

.io:    vmr VMCS_EXIT_QUALIFICATION
        mov [rel io_qualification], rax
        movzx eax, byte [rbp + G_RAX]
        mov [rel io_value], rax
        jmp .next

.rdmsr: cmp dword [rbp + G_RCX], EXIT_MSR
        jne report_exit
        mov qword [rbp + G_RAX], FC_LOCK  ; locked, VMX off: no nesting
        mov qword [rbp + G_RDX], 0

.next:  vmr VMCS_EXIT_INSTRUCTION_LEN     ; skip the instruction (28.2.5)
        mov rbx, rax
        vmr VMCS_GUEST_RIP
        add rax, rbx
        vmw VMCS_GUEST_RIP, rax
        POP_GPRS
        VMX "VMRESUME", vmresume

; ---- After the guest's VMCALL: VMX root operation ----
guest_done:
        lea rsp, [rel exit_stack_top]
        lea rsi, [rel msg_done_guest]
        call say

        xor r12d, r12d               ; each exit reason seen: "exit N NAME: count"
.count: lea rbx, [rel exit_counts]
        mov r13, [rbx + r12 * 8]
        test r13, r13
        jz .skip
        lea rsi, [rel msg_exit]
        call say
        mov rax, r12
        call putdec
        mov al, ' '
        call putc
        lea rbx, [rel exit_names]
.name:  mov rax, [rbx]
        cmp rax, -1
        je .named
        cmp rax, r12
        je .found
        add rbx, 16
        jmp .name
.found: mov rsi, [rbx + 8]
        call puts
.named: mov al, ':'
        call putc
        mov al, ' '
        call putc
        mov rax, r13
        call putdec
        mov al, 10
        call putc
.skip:  inc r12d
        cmp r12d, 64
        jb .count

        ; Exit qualification for I/O instructions (28.2.1, table 28-5):
        ; bits 2:0 size - 1, bit 3 direction (1 = IN), bit 4 string, bit 5
        ; REP, bit 6 operand encoding (1 = immediate), bits 31:16 port.
        lea rsi, [rel msg_io]
        call say
        mov r13, [rel io_qualification]
        mov rax, r13
        call puthex
        lea rsi, [rel msg_io_port]
        call puts
        mov rax, r13
        shr rax, 16
        call puthex
        mov al, ','
        call putc
        mov al, ' '
        call putc
        mov eax, r13d
        and eax, 7
        inc eax
        call putdec
        lea rsi, [rel msg_io_byte]
        call puts
        lea rsi, [rel msg_io_out]
        bt r13d, 3
        jnc .dir
        lea rsi, [rel msg_io_in]
.dir:   call puts
        lea rsi, [rel msg_io_dx]
        bt r13d, 6
        jnc .enc
        lea rsi, [rel msg_io_imm]
.enc:   call puts
        lea rsi, [rel msg_io_al]
        mov rax, [rel io_value]
        call report

        ; 28.5.1: VM exit loaded IA32_SYSENTER_CS from the host-state field
        ; (0, the host's value), replacing the guest's 8.
        mov ecx, IA32_SYSENTER_CS
        rdmsr
        lea rsi, [rel msg_sysenter]
        call say_report

        ; A second VMCS with a default1 pin-based control cleared (A.3.1;
        ; the capability MSRs of every processor so far, TRUE one included,
        ; report bit 1 as must-be-1): 27.2.1.1 fails VMLAUNCH with
        ; VMfailValid 7, "VM entry with invalid control field(s)" (table 31-1).
        ; Were the entry to succeed, guest_vmcall's exit would show it.
        lea rdi, [rel vmcs2]
        call vmcs_activate
        xor r8d, r8d
        lea r9, [rel entry_failed]
        lea r10, [rel guest_vmcall]
        lea r11, [rel guest_stack_top]
        call vmcs_setup
        vmr VMCS_PIN_CONTROLS
        mov r13, rax
        btr eax, PIN_DEFAULT1_BIT
        vmw VMCS_PIN_CONTROLS, rax
        lea rsi, [rel msg_bad_pin]
        call say
        vmlaunch
        call print_vmfail

        ; The controls again valid, guest RFLAGS bit 1 = 0 (27.3.1.4): the
        ; guest-state checks fail after the processor has committed to the
        ; entry, so it ends in a VM exit to HOST_RIP with exit reason
        ; 80000021H (27.8) rather than in VMfail.
        vmw VMCS_PIN_CONTROLS, r13
        vmw VMCS_GUEST_RFLAGS, 0
        lea rsi, [rel msg_bad_rflags]
        call say
        vmlaunch
        call print_vmfail            ; not what the SDM says: the line shows it
        jmp finish

entry_failed:                        ; HOST_RIP of vmcs2
        lea rsp, [rel exit_stack_top]
        lea rsi, [rel msg_reason]
        call puts
        vmr VMCS_EXIT_REASON
        call puthex
        lea rsi, [rel msg_qualification]
        call puts
        vmr VMCS_EXIT_QUALIFICATION
        call puthex
        mov al, 10
        call putc

finish: VMX "VMXOFF", vmxoff
        lea rsi, [rel msg_vmxoff]
        call say
        lea rsi, [rel msg_finished]
        call say
        mov al, EXIT_OK
        MACHINE_EXIT

%include "lib/vmfail.inc"

; say_report: the host prefix, then report (RSI, RAX in hex, newline).
say_report:
        push rax
        call say
        pop rax
        call puthex
        mov al, 10
        jmp putc

align 8
exit_names:                          ; appendix C
        dq EXIT_REASON_CPUID, name_cpuid
        dq EXIT_REASON_HLT, name_hlt
        dq EXIT_REASON_VMCALL, name_vmcall
        dq EXIT_REASON_IO, name_io
        dq EXIT_REASON_RDMSR, name_rdmsr
        dq -1
name_cpuid:  db "CPUID", 0
name_hlt:    db "HLT", 0
name_vmcall: db "VMCALL", 0
name_io:     db "I/O instruction", 0
name_rdmsr:  db "RDMSR", 0

msg_prefix:     db "vmx-basic: ", 0
msg_start:      db "64-bit host", 10, 0
msg_vmxon:      db "VMXON", 10, 0
msg_launch:     db "VMLAUNCH", 10, 0
msg_g_hello:    db "guest: VMX non-root operation; COM1 output does not exit", 10, 0
msg_g_leaf:     db "guest: CPUID 40000000H: ", 0
msg_g_max:      db ", max leaf ", 0
msg_g_vmx:      db "guest: CPUID.1:ECX.VMX = ", 0
msg_g_count:    db "guest: CPUID 40000001H: VM exits so far ", 0
msg_g_fc:       db "guest: RDMSR 3AH (exits): ", 0
msg_g_sysenter: db "guest: RDMSR 174H (does not exit): ", 0
msg_g_hlt:      db "guest: HLT exited and was skipped; VMCALL", 10, 0
msg_done_guest: db "VMCALL: the guest is done", 10, 0
msg_exit:       db "exit ", 0
msg_io:         db "I/O exit qualification ", 0
msg_io_port:    db ": port ", 0
msg_io_byte:    db " byte, ", 0
msg_io_out:     db "OUT", 0
msg_io_in:      db "IN", 0
msg_io_imm:     db ", immediate port", 0
msg_io_dx:      db ", port in DX", 0
msg_io_al:      db "; value ", 0
msg_sysenter:   db "host IA32_SYSENTER_CS after VM exit: ", 0
msg_bad_pin:    db "VMLAUNCH with pin-based control bit 1 cleared:", 0
msg_bad_rflags: db "VMLAUNCH with GUEST_RFLAGS bit 1 cleared:", 0
msg_reason:     db " exit reason ", 0
msg_succeeded:  db " succeeded", 10, 0
msg_fail_invalid: db " VMfailInvalid", 10, 0
msg_fail_valid: db " VMfailValid ", 0
msg_vmxoff:     db "VMXOFF", 10, 0
msg_finished:   db "done", 10, 0
guest_vendor:   times 13 db 0

        IMAGE_END

section .bss
alignb 4096
vmcs1:            resb 4096
vmcs2:            resb 4096
exit_counts:      resq 64
exits_total:      resq 1
io_qualification: resq 1
io_value:         resq 1
bss_end:
