; A triple fault: with an empty IDT (limit 0) the #UD from UD2 cannot be
; delivered, nor can the #GP that reports it, nor the #DF that follows, and the
; processor shuts down (hvsim: stop 'shutdown', exit status 10). The guest
; prints a line first; the line after UD2 must never appear.
;
; Flat binary at 1 MiB, started in 64-bit mode:
;   hvsim run guests/triple.bin --format flat --mode 64 --load 0x100000
;
; SDM vol. 3A: 6.10 (IDT limit: a vector beyond it gives #GP with error code
; vector * 16 + 2 in IA-32e mode), 6.15 "Interrupt 8 - Double Fault Exception"
; (table 6-5: contributory fault during delivery -> #DF; a fault while
; delivering #DF -> shutdown), 6.15 "Interrupt 6 - Invalid Opcode".
bits 64
org 0x100000

COM1 equ 0x3f8

start:
        mov rsp, stack_top
        lea rsi, [rel msg_before]
        call puts
        lidt [rel idt_ptr]           ; base 0, limit 0: no gate is inside it
        ud2
        lea rsi, [rel msg_after]     ; never reached
        call puts
        cli
        hlt

%include "lib/serial64.inc"

msg_before: db "empty IDT loaded, executing UD2", 10, 0
msg_after:  db "not reached", 10, 0

align 8
idt_ptr:
        dw 0
        dq 0

section .bss align=16
        resb 4096
stack_top:
