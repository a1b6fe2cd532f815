; Nanobenchmark (lib/nano.inc): IN AL, 80H, a read of the POST-code port. On
; the bare PC the device answers at once; under the hypervisor every IN exits
; (the I/O bitmaps trap every port, SDM vol. 3C 26.1.3; the handler emulates
; the read and skips the instruction): the family's one exit per iteration.
; Setup writes POST_CODE to the port, which keeps it, and the line prints the
; value the last IN read: "nano-in: 10000 iterations, read 0x5a".
;
;   hvsim run guests/nano-in.bin           (under the hypervisor)
;   hvsim run guests/nano-in.bin --bare    (on the bare processor)
;
; SDM vol. 2: IN.
%include "lib/bootsector.inc"

POST_CODE equ 0x5A

%define NANO_NAME "nano-in"
%macro NANO_OPERATION 0
        in al, 0x80
%endmacro

bits 64
nano_setup:
        mov al, POST_CODE
        out 0x80, al
        ret

nano_report:
        push rax
        lea rsi, [rel msg_read]
        call puts
        pop rax
        movzx eax, al
        jmp puthex

msg_read: db ", read ", 0

%include "lib/nano.inc"
