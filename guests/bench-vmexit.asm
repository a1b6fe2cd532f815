; VM-exit benchmark: a 64-bit guest runs CPUID N times (N = 1,000,000 unless
; assembled with -DN=...); every CPUID exits (SDM vol. 3C, 26.1.2: CPUID
; causes a VM exit unconditionally), and the host counts the exit, skips the
; instruction (VM-exit instruction length, 28.2.5) and resumes the guest.
; The guest's registers are left as they were: its CPUIDs return nothing.
; At the guest's VMCALL the host prints the count and ends with status 1.
; Boots on hvsim (Multiboot) and Bochs (floppy) alike: lib/bootsector.inc.
%include "lib/bootsector.inc"

COM1 equ 0x3F8
%ifndef N
N equ 1000000
%endif

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
        lea r9, [rel bench_exit]
        lea r10, [rel bench_guest]
        lea r11, [rel guest_stack_top]
        call vmcs_setup
        call use_vpid
        lea rsi, [rel msg_start]
        call say
        VMX "VMLAUNCH", vmlaunch

; As hypervisors do where the processor offers it, tag the guest's TLB entries
; with VPID 1, so that VM entries and exits need not flush the TLB (SDM vol. 3C,
; 29.1, 29.4.3.1): "activate secondary controls" (IA32_VMX_PROCBASED_CTLS[63])
; and "enable VPID" (IA32_VMX_PROCBASED_CTLS2[37]) must both be allowed (A.3.2, A.3.3).
use_vpid:
        mov ecx, 0x482               ; IA32_VMX_PROCBASED_CTLS
        rdmsr
        bt edx, 31
        jnc .no
        mov ecx, 0x48b               ; IA32_VMX_PROCBASED_CTLS2
        rdmsr
        bt edx, 5
        jnc .no
        vmr VMCS_CPU_CONTROLS
        bts eax, 31
        vmw VMCS_CPU_CONTROLS, rax
        mov eax, 1 << 5
        vmw 0x401e, rax              ; secondary processor-based controls: enable VPID
        mov eax, 1
        vmw 0x0000, rax              ; VIRTUAL_PROCESSOR_IDENTIFIER
.no:    ret

bench_guest:
        mov r8d, N
.loop:  xor eax, eax
        cpuid
        dec r8d
        jnz .loop
        vmcall
        ud2

; The exit handler: only RAX, RBX and RDX are its own; the rest stay the guest's.
bench_exit:
        push rax
        push rbx
        push rdx
        vmr VMCS_EXIT_REASON
        cmp eax, EXIT_REASON_CPUID
        jne .other
        inc qword [rel cpuid_exits]
        vmr VMCS_EXIT_INSTRUCTION_LEN
        mov rbx, rax
        vmr VMCS_GUEST_RIP
        add rax, rbx
        vmw VMCS_GUEST_RIP, rax
        pop rdx
        pop rbx
        pop rax
        VMX "VMRESUME", vmresume

.other: cmp eax, EXIT_REASON_VMCALL
        jne report_exit
        lea rsi, [rel msg_count]
        call say
        mov rax, [rel cpuid_exits]
        call putdec
        mov al, 10
        call putc
        VMX "VMXOFF", vmxoff
        mov al, EXIT_OK
        MACHINE_EXIT

msg_prefix: db "bench-vmexit: ", 0
msg_start:  db "VMLAUNCH", 10, 0
msg_count:  db "CPUID exits: ", 0

        IMAGE_END

section .bss
alignb 4096
vmcs:        resb 4096
cpuid_exits: resq 1
bss_end:
