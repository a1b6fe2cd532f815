; Nanobenchmark (lib/nano.inc): MOV CR8, RAX with RAX = 0, a write of the task
; priority (TPR[7:4] = CR8[3:0]), as a kernel raises and lowers it around
; critical sections. Under the hypervisor's default configuration
; ("CR8-load exiting" = 0, SDM vol. 3C 26.1.3) it does not exit. The line
; prints CR8 read back after the loop: "nano-cr8wr: 10000 iterations, CR8 0x0".
;
;   hvsim run guests/nano-cr8wr.bin           (under the hypervisor)
;   hvsim run guests/nano-cr8wr.bin --bare    (on the bare processor)
;
; SDM vol. 2: MOV (control registers; CR8 in 64-bit mode); vol. 3A, APIC
; chapter, "Interaction of Task Priorities between CR8 and APIC".
%include "lib/bootsector.inc"

%define NANO_NAME "nano-cr8wr"
%macro NANO_OPERATION 0
        mov cr8, rax
%endmacro

bits 64
nano_setup:
        xor eax, eax                 ; the value written: priority class 0
        ret

nano_report:
        lea rsi, [rel msg_cr8]
        call puts
        mov rax, cr8
        jmp puthex

msg_cr8: db ", CR8 ", 0

%include "lib/nano.inc"
