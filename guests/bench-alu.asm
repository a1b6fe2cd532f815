; Benchmark workload: a register-only loop of the integer operations compiled
; code is made of. Flat binary at 0x1000, 64-bit mode; halts when done.
bits 64
org 0x1000
        mov ecx, 5000000
.loop:  add rax, rcx
        xor rdx, rax
        lea rbx, [rbx + rax*2 + 1]
        sub rsi, rdx
        and r8, rsi
        cmp rcx, 7
        cmove rax, r9
        dec rcx
        jnz .loop
        hlt
