; Benchmark workload: copies a 64 KiB buffer 8 bytes at a time, 600 times.
; Flat binary at 0x1000, 64-bit mode; halts when done.
bits 64
org 0x1000
BUFFER equ 64 * 1024
        mov ebp, 600
.pass:  mov esi, 0x100000
        mov edi, 0x200000
        mov ecx, BUFFER / 8
.copy:  mov rax, [rsi]
        mov [rdi], rax
        add rsi, 8
        add rdi, 8
        dec ecx
        jnz .copy
        dec ebp
        jnz .pass
        hlt
