; Nanobenchmark (lib/nano.inc): DIV ECX with ECX = 0, a #DE delivered through
; the guest's IDT. #DE is a fault: the saved RIP is the DIV's (SDM vol. 3A,
; 6.5, 6.15 "Interrupt 0"), so the handler counts the exception, adds the
; DIV's length to the saved RIP and returns with IRETQ. Under the
; hypervisor's default configuration (exception bitmap 0, SDM vol. 3C 25.6.3)
; it does not exit. Prints "nano-divzero: 10000 iterations, 10000 divide
; errors".
;
;   hvsim run guests/nano-divzero.bin           (under the hypervisor)
;   hvsim run guests/nano-divzero.bin --bare    (on the bare processor)
;
; SDM vol. 2: DIV, IRET; vol. 3A: 6.14.1, 6.14.2 (64-bit gate, stack frame).
%include "lib/bootsector.inc"

%define NANO_NAME "nano-divzero"
%macro NANO_OPERATION 0
..@div: div ecx
..@div_end:
%endmacro

bits 64
nano_setup:
        xor eax, eax                 ; vector 0, #DE
        lea rbx, [rel de_handler]
        call set_gate
        xor ecx, ecx                 ; the divisor
        ret

; No error code for #DE (6.13): [RSP] = the saved RIP.
de_handler:
        inc qword [rel divide_errors]
        add qword [rsp], ..@div_end - ..@div
        iretq

nano_report:
        mov rax, [rel divide_errors]
        lea rsi, [rel msg_errors]
        jmp nano_put_count

msg_errors: db " divide errors", 0

section .bss
divide_errors: resq 1
section .text

%include "lib/nano.inc"
