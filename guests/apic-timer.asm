; The local APIC in xAPIC mode (MMIO at 0xFEE00000): reads IA32_APIC_BASE and
; the ID and version registers, software-enables the APIC through the SVR,
; runs the timer once in one-shot mode and then in periodic mode (divide by 16,
; LVT timer vector 0x40) until 3 interrupts, waiting with HLT and ending each
; interrupt with a write to the EOI register. Ends by writing 0 to the
; debug-exit port (status 1).
;
; Flat binary at 1 MiB, started in 64-bit mode (the loader's identity map
; covers the APIC page): hvsim run guests/apic-timer.bin --format flat --mode 64 --load 0x100000
;
; SDM vol. 3A: 11.4.1 and 11.4.4 (IA32_APIC_BASE, BSP flag), 11.4.6 (local APIC
; ID), 11.4.8 (version register), 11.9 (SVR, software enable), 11.5.1 (LVT),
; 11.5.4 (APIC timer: divide configuration, one-shot and periodic modes),
; 11.8.4 (ISR), 11.8.5 (EOI).
bits 64
org 0x100000

COM1       equ 0x3f8
APIC       equ 0xfee00000
APIC_ID    equ 0x20
APIC_VER   equ 0x30
APIC_EOI   equ 0xb0
APIC_SVR   equ 0xf0
APIC_ISR2  equ 0x120               ; ISR bits for vectors 64-95
APIC_LVT_T equ 0x320
APIC_INIT  equ 0x380
APIC_CUR   equ 0x390
APIC_DIV   equ 0x3e0
VECTOR     equ 0x40
COUNT      equ 0x1000

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

        lea rdi, [rel idt]
        mov ecx, 4096 / 8
        xor eax, eax
        rep stosq
        mov eax, VECTOR              ; 64-bit interrupt gate (6.14.1)
        lea rbx, [rel timer]
        call set_gate
        lidt [rel idt_ptr]

        mov ecx, 0x1b                ; IA32_APIC_BASE: base, enable (bit 11), BSP (bit 8)
        rdmsr
        lea rsi, [rel msg_base]
        call report
        mov rbx, APIC
        mov eax, [rbx + APIC_ID]
        lea rsi, [rel msg_id]
        call report
        mov eax, [rbx + APIC_VER]
        lea rsi, [rel msg_ver]
        call report

        mov dword [rbx + APIC_SVR], 0x1ff ; APIC software enabled, spurious vector 0xFF
        mov eax, [rbx + APIC_SVR]
        lea rsi, [rel msg_svr]
        call report

        ; One-shot: the count runs down once and the interrupt comes once.
        mov dword [rbx + APIC_DIV], 0x3 ; divide by 16 (bits 3, 1:0 = 0 11b)
        mov dword [rbx + APIC_LVT_T], VECTOR ; one-shot (bits 18:17 = 00b), unmasked
        mov dword [rbx + APIC_INIT], COUNT ; starts the count
        mov edx, 1
        call wait_ticks
        sti                          ; a one-shot timer fires once: wait 2 more periods
        mov ecx, 2 * 16 * COUNT      ; (guest time: 1 instruction = 1 ns)
        loop $
        cli
        lea rsi, [rel msg_oneshot]
        call puts
        mov rax, [rel ticks]
        call puthex
        lea rsi, [rel msg_isr]
        call puts
        mov eax, [rel isr_in_handler]
        call puthex
        lea rsi, [rel msg_after_eoi]
        call puts
        mov eax, [rbx + APIC_ISR2]
        call puthex
        lea rsi, [rel msg_current]
        call puts
        mov eax, [rbx + APIC_CUR]    ; stays 0 after a one-shot count
        call puthex
        mov al, 10
        call putc

        ; Periodic: the count reloads from the initial count each time it reaches 0.
        mov qword [rel ticks], 0
        mov dword [rbx + APIC_LVT_T], VECTOR | (1 << 17)
        mov dword [rbx + APIC_INIT], COUNT
        mov edx, 3
        call wait_ticks
        mov eax, [rbx + APIC_LVT_T]
        or eax, 1 << 16              ; mask the timer
        mov [rbx + APIC_LVT_T], eax
        lea rsi, [rel msg_periodic]
        call puts
        mov rax, [rel ticks]
        call puthex
        lea rsi, [rel msg_lvt]
        call puts
        mov eax, [rbx + APIC_LVT_T]
        call puthex
        mov al, 10
        call putc

        xor eax, eax
        out 0xf4, al                 ; debug exit, status 1
        cli
        hlt

; wait_ticks: halts with interrupts enabled until `ticks` reaches EDX.
wait_ticks:
.wait:  sti                          ; the STI shadow keeps the interrupt after HLT
        hlt
        cli
        cmp [rel ticks], rdx
        jb .wait
        ret

timer:  push rax
        push rbx
        mov rbx, APIC
        mov eax, [rbx + APIC_ISR2]   ; in service: bit 0 = vector 0x40
        mov [rel isr_in_handler], eax
        inc qword [rel ticks]
        mov dword [rbx + APIC_EOI], 0
        pop rbx
        pop rax
        iretq

%include "lib/idt64.inc"

%include "lib/serial64.inc"

msg_base:      db "IA32_APIC_BASE ", 0
msg_id:        db "APIC ID register ", 0
msg_ver:       db "APIC version register ", 0
msg_svr:       db "SVR ", 0
msg_oneshot:   db "one-shot timer: interrupts ", 0
msg_isr:       db ", ISR[95:64] in the handler ", 0
msg_after_eoi: db ", after EOI ", 0
msg_current:   db ", current count ", 0
msg_periodic:  db "periodic timer: interrupts ", 0
msg_lvt:       db ", LVT timer ", 0

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
ticks:          dq 0
isr_in_handler: dd 0

section .bss align=4096
idt:    resb 4096
        resb 8192
stack_top:
