; The default guest: a sieve of Eratosthenes in 64-bit mode, on the bare
; processor. Counts the primes below LIMIT and halts with the count in RAX
; (148933 for 2,000,000) and the sum of the primes in RDX.
; Flat binary, loaded at 0x1000 and entered in 64-bit mode.
bits 64
org 0x1000

LIMIT  equ 2000000
SIEVE  equ 0x100000            ; one byte per number: 1 = composite

start:
        ; clear the sieve with REP STOSQ
        mov rdi, SIEVE
        mov rcx, (LIMIT + 7) / 8
        xor eax, eax
        cld
        rep stosq

        ; cross out multiples of every prime p with p*p < LIMIT
        mov rbx, 2
.outer:
        mov rax, rbx
        imul rax, rbx
        cmp rax, LIMIT
        jae .count
        cmp byte [SIEVE + rbx], 0
        jne .next
.cross:
        mov byte [SIEVE + rax], 1
        add rax, rbx
        cmp rax, LIMIT
        jb .cross
.next:
        inc rbx
        jmp .outer

        ; count and sum what is left
.count:
        xor eax, eax
        xor edx, edx
        mov rbx, 2
.scan:
        cmp byte [SIEVE + rbx], 0
        jne .skip
        inc rax
        add rdx, rbx
.skip:
        inc rbx
        cmp rbx, LIMIT
        jb .scan
        hlt
