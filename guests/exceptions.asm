; Exceptions in 64-bit mode: an IDT of 64-bit interrupt gates whose handlers
; print the vector, the error code (when the exception has one), CR2 (for #PF)
; and where the saved RIP points relative to the instruction that raised the
; exception (+0x0 for a fault, past it for a trap), then fix up and resume:
; #PF handlers make the page present or writable and retry the instruction,
; the others resume after it. Ends by writing 0 to the debug-exit port
; (status 1).
;
; Flat binary at 1 MiB, started in 64-bit mode:
;   hvsim run guests/exceptions.bin --format flat --mode 64 --load 0x100000
;
; SDM vol. 3A: 6.5 (faults and traps), 6.13 (error code), 6.14.1 (64-bit IDT
; gates), 6.15 (#DE, #BP, #UD, #GP, #PF, each with its error code and saved
; RIP), 4.7 (page-fault error code), 4.6.1 (CR0.WP), 3.4.5 (descriptors).
bits 64
org 0x100000

COM1    equ 0x3f8
NP_PAGE equ 0x200000               ; PT entry 0: not present
RO_PAGE equ 0x201000               ; PT entry 1: read-only

; try INSN: records INSN's address (fault_ip) and the address after it
; (resume) for the handlers, then executes INSN.
%macro try 1
        lea rax, [rel %%insn]
        mov [rel fault_ip], rax
        lea rax, [rel %%after]
        mov [rel resume], rax
%%insn: %1
%%after:
%endmacro

start:
        mov rsp, stack_top
        lgdt [rel gdt_ptr]
        push 0x08                    ; reload CS from this GDT
        lea rax, [rel .cs]
        push rax
        o64 retf
.cs:    mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax

        ; Page tables (4.5): the first GiB identity-mapped with 2 MiB pages,
        ; but 2-4 MiB through a page table of 4 KiB pages, where the page at
        ; NP_PAGE is not present and the page at RO_PAGE is read-only.
        lea rdi, [rel pml4]
        mov ecx, 5 * 4096 / 8            ; page tables and IDT
        xor eax, eax
        rep stosq
        lea rax, [rel pdpt]
        or eax, 3
        mov [rel pml4], rax
        lea rax, [rel pd]
        or eax, 3
        mov [rel pdpt], rax
        xor ecx, ecx
.pd:    mov eax, ecx
        shl eax, 21
        or eax, 0x83                 ; present, writable, 2 MiB page
        mov [pd + rcx * 8], rax
        inc ecx
        cmp ecx, 512
        jb .pd
        lea rax, [rel pt]
        or eax, 3
        mov [rel pd + 8], rax        ; 2-4 MiB: page table
        mov ecx, 2
.pt:    mov eax, ecx
        shl eax, 12
        add eax, NP_PAGE + 3
        mov [pt + rcx * 8], rax
        inc ecx
        cmp ecx, 512
        jb .pt
        mov qword [rel pt + 8], RO_PAGE + 1 ; present, read-only
        lea rax, [rel pml4]
        mov cr3, rax

        mov eax, 0
        lea rbx, [rel isr0]
        call set_gate
        mov eax, 3
        lea rbx, [rel isr3]
        call set_gate
        mov eax, 6
        lea rbx, [rel isr6]
        call set_gate
        mov eax, 13
        lea rbx, [rel isr13]
        call set_gate
        mov eax, 14
        lea rbx, [rel isr14]
        call set_gate
        lidt [rel idt_ptr]

        ; #DE: divide by zero, a fault.
        mov eax, 1
        xor edx, edx
        xor ecx, ecx
        try {div ecx}

        ; #BP: INT3 is a trap, the saved RIP follows it.
        try {int3}

        ; #UD: UD2.
        try {ud2}

        ; #GP(selector): the selector's index lies beyond the GDT limit.
        mov cx, 0x4b                 ; index 9, RPL 3: bits 1:0 of the error code are EXT and IDT, not the RPL (6.13)
        try {mov ds, cx}

        ; #GP(0): a non-canonical address.
        mov rcx, 0x8000000000000000
        try {mov rax, [rcx]}

        ; #PF, write to a not-present page: P = 0, W/R = 1 (error code 2).
        ; The handler maps the page and the write is retried.
        try {mov dword [NP_PAGE], 0x1234}
        lea rsi, [rel msg_np]
        mov eax, [NP_PAGE]
        call report

        ; A supervisor write to a read-only page succeeds while CR0.WP = 0 (4.6.1).
        mov dword [RO_PAGE], 0x5678
        lea rsi, [rel msg_wp0]
        mov eax, [RO_PAGE]
        call report

        ; With CR0.WP = 1 it faults: P = 1, W/R = 1 (error code 3). The
        ; handler makes the page writable and the write is retried.
        mov rax, cr0
        or eax, 1 << 16              ; CR0.WP
        mov cr0, rax
        try {mov dword [RO_PAGE], 0x9abc}
        lea rsi, [rel msg_wp1]
        mov eax, [RO_PAGE]
        call report

        lea rsi, [rel msg_done]
        call puts
        xor eax, eax
        out 0xf4, al                 ; debug exit, status 1
        cli
        hlt

; The stubs push a dummy error code for exceptions that have none, then the
; vector, with bit 8 set when the error code is real.
%macro isr 2
isr%1:
%if %2 == 0
        push 0
%endif
        push %1 | (%2 << 8)
        jmp exc_common
%endmacro
isr 0, 0
isr 3, 0
isr 6, 0
isr 13, 1
isr 14, 1

; The stack: vector, error code, RIP, CS, RFLAGS, RSP, SS (6.14.2).
exc_common:
        push rax
        push rcx
        push rdx
        push rsi
        lea rsi, [rel msg_exc]
        call puts
        movzx eax, byte [rsp + 32]   ; vector
        call puthex
        test byte [rsp + 33], 1
        jz .no_error
        lea rsi, [rel msg_error]
        call puts
        mov rax, [rsp + 40]
        call puthex
.no_error:
        cmp byte [rsp + 32], 14
        jne .no_cr2
        lea rsi, [rel msg_cr2]
        call puts
        mov rax, cr2
        call puthex
.no_cr2:
        lea rsi, [rel msg_rip]
        call puts
        mov rax, [rsp + 48]
        sub rax, [rel fault_ip]
        call puthex
        mov al, 10
        call putc

        cmp byte [rsp + 32], 14
        jne .skip
        ; #PF: the error code says what to fix (4.7): P = 0, make the page
        ; present; P = 1 (a protection violation on a write), make it writable.
        mov rax, cr2
        sub rax, NP_PAGE
        shr rax, 12
        lea rdx, [rel pt]
        lea rdx, [rdx + rax * 8]
        mov ecx, 1                   ; P
        test byte [rsp + 40], 1
        jz .fix
        mov ecx, 2                   ; R/W
.fix:   or [rdx], rcx
        mov rax, cr2
        invlpg [rax]
        jmp .return                  ; RIP still names the instruction: retry
.skip:  mov rax, [rel resume]
        mov [rsp + 48], rax
.return:
        pop rsi
        pop rdx
        pop rcx
        pop rax
        add rsp, 16                  ; vector and error code
        iretq

%include "lib/idt64.inc"

%include "lib/serial64.inc"

msg_exc:   db "exception ", 0
msg_error: db " error ", 0
msg_cr2:   db " cr2 ", 0
msg_rip:   db " rip +", 0
msg_np:    db "not-present page mapped by the handler, read back ", 0
msg_wp0:   db "CR0.WP=0: supervisor write to a read-only page, read back ", 0
msg_wp1:   db "CR0.WP=1: page made writable by the handler, read back ", 0
msg_done:  db "all exceptions handled", 10, 0

align 8
gdt:    dq 0
        dq 0x00209A0000000000        ; 08H: 64-bit code
        dq 0x00CF92000000FFFF        ; 10H: data
gdt_ptr:
        dw gdt_ptr - gdt - 1
        dq gdt
idt_ptr:
        dw 256 * 16 - 1
        dq idt
fault_ip: dq 0
resume:   dq 0

section .bss align=4096
pml4:   resb 4096
pdpt:   resb 4096
pd:     resb 4096
pt:     resb 4096
idt:    resb 4096
        resb 8192
stack_top:
