; The smallest guest for comparing hvsim with Bochs (spec-tests/oracle): boots
; through lib/bootsector.inc (a floppy boot sector on Bochs, Multiboot on
; hvsim), reaches 64-bit mode, takes two exceptions and reads the CMOS, and
; prints only what the SDM and the PC's CMOS layout fix, so both machines
; print the same lines. Ends with debug-exit status 1 (AL = 0).
;
; SDM vol. 3A: 6.15 "Exception and Interrupt Reference" (#DE: fault, no
; error code; #GP: the error code of a segment-limit violation is the
; selector, 6.13 "Error Code"); vol. 2, MOV (to DS: index outside the
; descriptor table limit -> #GP(selector)).
%include "lib/bootsector.inc"

COM1    equ 0x3F8
BAD_SEL equ 0x1233                   ; index 246: far beyond the 3-entry GDT

bits 64
start64:
        lea rsi, [rel msg_hello]
        call puts

        xor eax, eax
        lea rbx, [rel de_handler]
        call set_gate
        mov eax, 13
        lea rbx, [rel gp_handler]
        call set_gate
        lidt [rel idt_ptr]

        xor ecx, ecx
        mov eax, 1
        xor edx, edx
        div ecx                      ; #DE: the handler skips these 2 bytes
        lea rsi, [rel msg_after_de]
        call puts

        mov ax, BAD_SEL
        mov ds, ax                   ; #GP(1230H): the handler skips these 2 bytes
        lea rsi, [rel msg_after_gp]
        call puts

        ; INT 21H through an empty (type 0) 16-byte gate: #GP with the vector in the
        ; error code's index field and IDT = 1 (6.13; vol. 2 INT n, IA-32e mode).
        ; The #GP is a fault of the INT: the saved RIP is the INT's, so the
        ; handler's 2-byte skip lands on the JMP to .int_at.
        int 0x21
        jmp short .int_at
        lea rsi, [rel msg_after_int]
        call puts
        jmp .int_done
.int_at:
        lea rsi, [rel msg_int_at]
        call puts
.int_done:

        ; CMOS (MC146818 index 70H, data 71H): the date the RTC starts from
        ; (both machines are started at 2024-01-01 00:00:00) and the memory
        ; size bytes (64 MiB: 0280H KiB base, FC00H KiB above 1 MiB, 0300H
        ; 64 KiB blocks above 16 MiB).
        lea rsi, [rel msg_date]
        call puts
        mov bl, 0x32                 ; century, year, month, day (BCD)
        call cmos_hex2
        mov bl, 0x09
        call cmos_hex2
        mov al, '-'
        call putc
        mov bl, 0x08
        call cmos_hex2
        mov al, '-'
        call putc
        mov bl, 0x07
        call cmos_hex2
        mov al, 10
        call putc
        lea rsi, [rel msg_base]
        mov bl, 0x15
        call cmos_word
        lea rsi, [rel msg_ext]
        mov bl, 0x17
        call cmos_word
        lea rsi, [rel msg_ext16]
        mov bl, 0x34
        call cmos_word

        lea rsi, [rel msg_done]
        call puts
        xor eax, eax
        MACHINE_EXIT

; cmos_read: AL = CMOS byte BL.
cmos_read:
        mov al, bl
        out 0x70, al
        in al, 0x71
        ret

; cmos_hex2: prints CMOS byte BL as 2 hex digits (a BCD byte reads as decimal).
cmos_hex2:
        call cmos_read
        push rax
        shr al, 4
        call .digit
        pop rax
        and al, 0xF
.digit: add al, '0'
        cmp al, '9'
        jbe .put
        add al, 'a' - '9' - 1
.put:   jmp putc

; cmos_word: prints RSI, then the 16-bit CMOS value at BL (low) and BL+1 (high).
cmos_word:
        call cmos_read
        movzx edx, al
        inc bl
        call cmos_read
        movzx eax, al
        shl eax, 8
        or eax, edx
        jmp report

de_handler:
        lea rsi, [rel msg_de]
        call puts
        add qword [rsp], 2
        iretq

gp_handler:
        lea rsi, [rel msg_gp]
        mov rax, [rsp]               ; the error code
        call report
        add rsp, 8
        add qword [rsp], 2
        iretq

%include "lib/idt64.inc"
%include "lib/serial64.inc"

msg_hello:    db "oracle-hello: 64-bit mode", 10, 0
msg_de:       db "oracle-hello: #DE handled", 10, 0
msg_after_de: db "oracle-hello: resumed after #DE", 10, 0
msg_gp:       db "oracle-hello: #GP error code ", 0
msg_after_gp: db "oracle-hello: resumed after #GP", 10, 0
msg_date:     db "oracle-hello: CMOS date ", 0
msg_base:     db "oracle-hello: CMOS 15h base memory KiB ", 0
msg_ext:      db "oracle-hello: CMOS 17h memory above 1 MiB KiB ", 0
msg_ext16:    db "oracle-hello: CMOS 34h 64 KiB blocks above 16 MiB ", 0
msg_after_int: db "oracle-hello: resumed after INT 21H", 10, 0
msg_int_at:   db "oracle-hello: resumed at INT 21H", 10, 0
msg_done:     db "oracle-hello: done", 10, 0

align 8
idt_ptr:
        dw 256 * 16 - 1
        dq idt

        IMAGE_END

section .bss
alignb 4096
idt:    resb 4096
bss_end:
