; A VMX hypervisor whose handler gets its VM entries wrong on purpose, for the
; debugger's finish-handler (src/debug/bare-engine.ts): VMLAUNCH and VMRESUME
; that fail as instructions, before any check of the VM entry (SDM vol. 3C,
; 31.3 VMLAUNCH/VMRESUME "Operation"; 31.2 "Conventions"), which the model's
; VMX unit reports only through the flags and VM_INSTRUCTION_ERROR.
;
; The guest makes three CPUIDs (each exits, 26.1.2) and a VMCALL. The handler
; skips each CPUID (28.2.5) and returns to the guest, but:
; - after exit 1 it first tries VMLAUNCH on the launched VMCS: VMfailValid,
;   error 4 "VMLAUNCH with non-clear VMCS" (table 31-1);
; - after exit 2 it VMCLEARs the current VMCS (25.11.3: the current-VMCS
;   pointer becomes invalid, the launch state clear), so VMRESUME fails with
;   VMfailInvalid; then VMPTRLD makes it current again and VMRESUME fails
;   with VMfailValid, error 5 "VMRESUME with non-launched VMCS"; then
;   VMLAUNCH enters the guest;
; - after exit 3 it simply resumes.
; Each failure prints one line; at the VMCALL the host ends with status 1.
; Boots on hvsim (Multiboot) and Bochs (floppy) alike: lib/bootsector.inc.
%include "lib/bootsector.inc"

COM1 equ 0x3F8

%include "lib/vmx64.inc"
%include "lib/idt64.inc"
%include "lib/serial64.inc"

bits 64
start64:
        call host_init
        call vmx_enable
        lea rdi, [rel vmcs]
        call vmcs_activate
        xor r8d, r8d                 ; no optional exits: CPUID and VMCALL exit anyway
        lea r9, [rel vm_exit]
        lea r10, [rel guest_main]
        lea r11, [rel guest_stack_top]
        call vmcs_setup
        lea rsi, [rel msg_start]
        call say
        VMX "VMLAUNCH", vmlaunch

guest_main:
        cpuid                        ; exit 1
        cpuid                        ; exit 2
        cpuid                        ; exit 3
        vmcall                       ; exit 4: done
        ud2

; HOST_RIP. The guest's registers are not kept: its CPUIDs return nothing it reads.
vm_exit:
        vmr VMCS_EXIT_REASON
        cmp eax, EXIT_REASON_VMCALL
        je done
        cmp eax, EXIT_REASON_CPUID
        jne report_exit
        vmr VMCS_EXIT_INSTRUCTION_LEN
        mov rbx, rax
        vmr VMCS_GUEST_RIP
        add rax, rbx
        vmw VMCS_GUEST_RIP, rax
        inc qword [rel cpuid_exits]
        mov rax, [rel cpuid_exits]
        cmp rax, 1
        je .relaunch
        cmp rax, 2
        je .cleared
        VMX "VMRESUME", vmresume

.relaunch:                           ; VMLAUNCH of a launched VMCS: VMfailValid 4
        lea rsi, [rel msg_relaunch]
        call say
        vmlaunch
        call print_vmfail
        VMX "VMRESUME", vmresume

.cleared:                            ; no current VMCS: VMfailInvalid
        VMX "VMCLEAR", vmclear [rel vmx_operand]
        lea rsi, [rel msg_no_vmcs]
        call say
        vmresume
        call print_vmfail
        VMX "VMPTRLD", vmptrld [rel vmx_operand]
        lea rsi, [rel msg_clear]     ; launch state clear: VMfailValid 5
        call say
        vmresume
        call print_vmfail
        VMX "VMLAUNCH", vmlaunch

done:   lea rsi, [rel msg_done]
        call say
        VMX "VMXOFF", vmxoff
        mov al, EXIT_OK
        MACHINE_EXIT

%include "lib/vmfail.inc"

msg_prefix:       db "vmx-vmfail: ", 0
msg_start:        db "VMLAUNCH", 10, 0
msg_relaunch:     db "VMLAUNCH of the launched VMCS:", 0
msg_no_vmcs:      db "VMRESUME after VMCLEAR of the current VMCS:", 0
msg_clear:        db "VMRESUME of the VMCS made current again, launch state clear:", 0
msg_succeeded:    db " succeeded", 10, 0
msg_fail_invalid: db " VMfailInvalid", 10, 0
msg_fail_valid:   db " VMfailValid ", 0
msg_done:         db "VMCALL: the guest is done", 10, 0

        IMAGE_END

section .bss
alignb 4096
vmcs:        resb 4096
cpuid_exits: resq 1
bss_end:
