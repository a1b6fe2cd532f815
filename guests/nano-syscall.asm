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
%include "lib/syscall64.inc"

%define NANO_USER
%define NANO_NAME "nano-syscall"
%macro NANO_OPERATION 0
        syscall
%endmacro


bits 64
nano_setup:
        ENABLE_SYSCALL syscall_entry, 0x40700 ; SYSCALL clears TF, IF, DF and AC
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
