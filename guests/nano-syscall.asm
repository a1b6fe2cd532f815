; Nanobenchmark (lib/nano.inc): a system call round trip in 64-bit mode. Both
; loops run in ring 3 (NANO_USER); each SYSCALL enters the kernel at
; syscall_entry, which counts the call and returns at once with SYSRETQ
; (RIP = RCX, RFLAGS = R11). Neither instruction exits under the hypervisor
; (SDM vol. 3C 26.1 lists neither). Prints "nano-syscall: 10000 iterations,
; 10000 system calls".
;
;   hvsim run guests/nano-syscall.bin           (under the hypervisor)
;   hvsim run guests/nano-syscall.bin --bare    (on the bare processor)
;
; SDM vol. 2: SYSCALL, SYSRET; vol. 3A: 5.8.8 (STAR, LSTAR, FMASK, EFER.SCE).
%include "lib/bootsector.inc"

%define NANO_USER
%define NANO_NAME "nano-syscall"
%macro NANO_OPERATION 0
        syscall
%endmacro

IA32_EFER  equ 0xC0000080
IA32_STAR  equ 0xC0000081
IA32_LSTAR equ 0xC0000082
IA32_FMASK equ 0xC0000084

bits 64
nano_setup:
        ; STAR[47:32] = 08H: SYSCALL loads CS 08H, SS 10H. STAR[63:48] =
        ; 18H: SYSRETQ loads CS 18H + 16 = 2BH, SS 18H + 8 = 23H (5.8.8).
        mov ecx, IA32_STAR
        xor eax, eax
        mov edx, (0x18 << 16) | SEL_KCODE
        wrmsr
        mov ecx, IA32_LSTAR
        lea rax, [rel syscall_entry]
        mov rdx, rax
        shr rdx, 32
        wrmsr
        mov ecx, IA32_FMASK          ; TF, IF, DF, AC: cleared in the kernel
        mov eax, 0x40700
        xor edx, edx
        wrmsr
        mov ecx, IA32_EFER
        rdmsr
        or eax, 1                    ; SCE
        wrmsr
        ret

; SYSCALL leaves RSP alone; the handler needs no stack.
syscall_entry:
        inc qword [rel system_calls]
        o64 sysret

nano_report:
        mov rax, [rel system_calls]
        lea rsi, [rel msg_calls]
        jmp nano_put_count

msg_calls: db " system calls", 0

section .bss
system_calls: resq 1
section .text

%include "lib/nano.inc"
