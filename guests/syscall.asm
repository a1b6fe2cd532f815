; System calls from ring 3 in 64-bit mode. The kernel sets up a GDT with ring-3
; code and data segments and a 64-bit TSS, programs STAR, LSTAR and FMASK with
; WRMSR, sets EFER.SCE, and enters ring 3 with IRETQ. The user code makes 3
; SYSCALLs (the handler prints RAX, the caller's selectors, R11 and its own
; RFLAGS, and returns with SYSRETQ), an INT 0x80 through a DPL-3 gate (the
; processor switches to TSS.RSP0; the handler prints its frame and returns
; with IRETQ), and a last SYSCALL with RAX = 60 on which the kernel exits:
; writes 0 to the debug-exit port (status 1).
;
; Flat binary at 1 MiB, started in 64-bit mode:
;   hvsim run guests/syscall.bin --format flat --mode 64 --load 0x100000
;
; SDM vol. 2: SYSCALL, SYSRET, IRET, INT n (each instruction's Operation).
; SDM vol. 3A: 5.8.8 (fast system calls in 64-bit mode: STAR, LSTAR, FMASK),
; 8.7 (64-bit TSS, RSP0), 6.12.1 and 6.14 (interrupt gates, privilege checks,
; stack switching in 64-bit mode), 5.10.1 (gate DPL for INT n), 4.6 (U/S).
bits 64
org 0x100000

COM1       equ 0x3f8
SEL_KCODE  equ 0x08
SEL_KDATA  equ 0x10
SEL_UDATA  equ 0x20 | 3
SEL_UCODE  equ 0x28 | 3
SEL_TSS    equ 0x30

%include "lib/syscall64.inc"
%include "lib/tss64.inc"

start:
        mov rsp, kstack_top
        ; The TSS descriptor (8.2.3): 16 bytes, base = tss, limit 67H, type 9.
        lea rax, [rel tss]
        FILL_TSS_DESCRIPTOR 0x67
        lgdt [rel gdt_ptr]
        push SEL_KCODE               ; reload CS from this GDT
        lea rax, [rel .cs]
        push rax
        o64 retf
.cs:    mov ax, SEL_KDATA
        mov ds, ax
        mov es, ax
        mov ss, ax

        ; Page tables: the first GiB identity-mapped with 2 MiB pages, user
        ; accessible (U/S = 1 at every level, 4.6) so ring 3 can run here.
        lea rdi, [rel pml4]
        mov ecx, 4 * 4096 / 8        ; page tables and IDT
        xor eax, eax
        rep stosq
        lea rax, [rel pdpt]
        or eax, 7
        mov [rel pml4], rax
        lea rax, [rel pd]
        or eax, 7
        mov [rel pdpt], rax
        xor ecx, ecx
.pd:    mov eax, ecx
        shl eax, 21
        or eax, 0x87                 ; present, writable, user, 2 MiB page
        mov [pd + rcx * 8], rax
        inc ecx
        cmp ecx, 512
        jb .pd
        lea rax, [rel pml4]
        mov cr3, rax

        ; TSS.RSP0 (offset 4): the stack for interrupts from ring 3 (6.14.4).
        lea rax, [rel int_stack_top]
        mov [rel tss + 4], rax
        mov word [rel tss + 0x66], 0x68 ; I/O map base beyond the limit: no bitmap
        mov ax, SEL_TSS
        ltr ax

        mov eax, 0x80                ; INT 0x80: DPL 3 so ring 3 may use it (5.10.1)
        lea rbx, [rel int80]
        mov edx, 0xee00              ; present, DPL 3, 64-bit interrupt gate
        call set_gate
        lidt [rel idt_ptr]

        ENABLE_SYSCALL syscall_entry, 0x700   ; SYSCALL clears TF, IF and DF

        ; Enter ring 3: IRETQ pops RIP, CS, RFLAGS, RSP, SS.
        push SEL_UDATA
        lea rax, [rel user_stack_top]
        push rax
        push 0x202                   ; IF = 1
        push SEL_UCODE
        lea rax, [rel user]
        push rax
        iretq

; Ring 3. Each call passes the caller's CS and SS in RDI and RSI.
user:
        mov eax, 1
        call user_syscall
        mov eax, 2
        call user_syscall
        std                          ; DF = 1: R11 keeps it, FMASK clears it
        mov eax, 3
        call user_syscall
        cld
        mov eax, 0x80
        int 0x80
        mov eax, 60                  ; exit
        call user_syscall
.hang:  jmp .hang

user_syscall:
        mov di, cs
        mov si, ss
        movzx edi, di
        movzx esi, si
        syscall
        ret

; SYSCALL: CPL 0, RCX = the user RIP, R11 = the user RFLAGS, RSP unchanged.
syscall_entry:
        mov [rel user_rsp], rsp
        lea rsp, [rel kstack_top]
        push rcx
        push r11
        pushfq                       ; R11 & ~FMASK: nothing has changed the flags yet
        pop qword [rel kernel_rflags]
        push rax
        cmp eax, 60
        je .exit
        push rsi
        push rdi
        lea rsi, [rel msg_syscall]
        call puts
        mov rax, [rsp + 16]
        call puthex
        lea rsi, [rel msg_from_cs]
        call puts
        pop rax                      ; the caller's CS
        call puthex
        lea rsi, [rel msg_ss]
        call puts
        pop rax                      ; the caller's SS
        call puthex
        lea rsi, [rel msg_r11]
        call puts
        mov rax, [rsp + 8]
        call puthex
        lea rsi, [rel msg_kflags]
        call puts
        mov rax, [rel kernel_rflags]
        call puthex
        lea rsi, [rel msg_kcs]
        call puts
        mov ax, cs
        movzx eax, ax
        call puthex
        lea rsi, [rel msg_ss]
        call puts
        mov ax, ss
        movzx eax, ax
        call puthex
        mov al, 10
        call putc
        pop rax
        pop r11
        pop rcx
        mov rsp, [rel user_rsp]
        o64 sysret                   ; RIP = RCX, RFLAGS = R11, CPL 3
.exit:  lea rsi, [rel msg_exit]
        call puts
        xor eax, eax
        out 0xf4, al                 ; debug exit, status 1
        cli
        hlt

; INT 0x80 from ring 3: the processor loaded RSP from TSS.RSP0 (aligned to 16)
; and pushed SS, RSP, RFLAGS, CS, RIP.
int80:  push rax
        push rbx
        push rsi
        lea rsi, [rel msg_int80]
        call puts
        mov rax, [rsp + 16]
        call puthex
        lea rsi, [rel msg_frame]
        call puts
        lea rax, [rel int_stack_top]
        lea rbx, [rsp + 24]          ; the frame's base: the saved RIP
        sub rax, rbx
        call puthex
        lea rsi, [rel msg_saved_cs]
        call puts
        mov rax, [rsp + 32]
        call puthex
        lea rsi, [rel msg_ss]
        call puts
        mov rax, [rsp + 56]
        call puthex
        lea rsi, [rel msg_rflags]
        call puts
        mov rax, [rsp + 40]
        call puthex
        mov al, 10
        call putc
        pop rsi
        pop rbx
        pop rax
        iretq

; set_gate: IDT entry EAX -> 64-bit gate to RBX, CS 08H, type/DPL/P word DX.
set_gate:
        lea rdi, [rel idt]
        shl eax, 4
        add rdi, rax
        mov word [rdi], bx
        mov word [rdi + 2], SEL_KCODE
        mov word [rdi + 4], dx
        shr rbx, 16
        mov word [rdi + 6], bx
        shr rbx, 16
        mov dword [rdi + 8], ebx
        mov dword [rdi + 12], 0
        ret

%include "lib/serial64.inc"

msg_syscall:  db "syscall rax=", 0
msg_from_cs:  db " from cs=", 0
msg_ss:       db " ss=", 0
msg_r11:      db ", r11=", 0
msg_kflags:   db ", kernel rflags=", 0
msg_kcs:      db " cs=", 0
msg_int80:    db "int 0x80 rax=", 0
msg_frame:    db ": frame at TSS.RSP0-", 0
msg_saved_cs: db ", saved cs=", 0
msg_rflags:   db " rflags=", 0
msg_exit:     db "exit from ring 3", 10, 0

%include "lib/gdt-user64.inc"
idt_ptr:
        dw 256 * 16 - 1
        dq idt
user_rsp: dq 0
kernel_rflags: dq 0

section .bss align=4096
pml4:   resb 4096
pdpt:   resb 4096
pd:     resb 4096
idt:    resb 4096
tss:    resb 4096
        resb 4096
kstack_top:
        resb 4096
int_stack_top:
        resb 4096
user_stack_top:
