; Multiprocessor start-up: the bootstrap processor reads the processor count
; from fw_cfg, copies a real-mode trampoline below 1 MiB and wakes the other
; processors with INIT and two start-up IPIs; each application processor
; climbs from real mode to protected mode, marks itself present and waits with
; HLT. The BSP then sends each one a fixed IPI and waits for its handler.
; Ends by writing 0 to the debug-exit port (status 1).
;
; Multiboot a.out kludge, loaded at 1 MiB: hvsim run --cpus 4 guests/smp.bin
;
; SDM vol. 3A: 9.4 (MP initialization: INIT-SIPI-SIPI, the SIPI vector gives
; the start address 000VV000H), 11.6.1 (interrupt command register: delivery
; modes, shorthands, delivery status), 11.4.6 (local APIC ID), 11.8.5 (EOI).
bits 32
org 0x100000

MB_MAGIC   equ 0x1BADB002
MB_FLAGS   equ 1 << 16
COM1       equ 0x3f8
APIC       equ 0xfee00000
APIC_ID    equ 0x20
APIC_EOI   equ 0xb0
APIC_SVR   equ 0xf0
APIC_ICR   equ 0x300             ; low dword; the high dword (destination) at 0x310
ICR_BUSY   equ 1 << 12           ; delivery status: send pending
IPI_INIT   equ 0x000c4500        ; all excluding self, level assert, INIT
IPI_SIPI   equ 0x000c4600        ; all excluding self, start-up (vector in bits 7:0)
IPI_FIXED  equ 0x00004000        ; to the destination field, assert, fixed
VECTOR     equ 0x40
TRAMPOLINE equ 0x8000            ; SIPI vector 08H starts processors at 00008000H
MAX_CPUS   equ 16

header:
        dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
        dd header, 0x100000, image_end, bss_end, start

start:
        mov esp, stack_top
        lgdt [gdt_ptr]
        jmp 0x08:.cs
.cs:    mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax

        ; fw_cfg item 5 (number of processors), little-endian 16 bits.
        mov dx, 0x510
        mov ax, 5
        out dx, ax
        mov dx, 0x511
        in al, dx
        mov bl, al
        in al, dx
        mov bh, al
        movzx ebx, bx
        mov [cpus], ebx
        mov esi, msg_cpus
        mov eax, ebx
        call report

        ; The handler of the fixed IPI, shared by every processor.
        mov eax, ipi_handler
        mov [idt + 8 * VECTOR], ax
        mov word [idt + 8 * VECTOR + 2], 0x08
        mov word [idt + 8 * VECTOR + 4], 0x8e00 ; 32-bit interrupt gate, present
        shr eax, 16
        mov [idt + 8 * VECTOR + 6], ax
        lidt [idt_ptr]

        mov esi, trampoline
        mov edi, TRAMPOLINE
        mov ecx, trampoline_end - trampoline
        rep movsb

        mov ebx, APIC
        mov dword [ebx + APIC_SVR], 0x1ff
        mov eax, IPI_INIT
        call send_ipi
        mov ecx, 10000               ; the SDM asks for 10 ms; guest time here is cheap
        loop $
        mov eax, IPI_SIPI | (TRAMPOLINE >> 12)
        call send_ipi
        mov ecx, 200
        loop $
        mov eax, IPI_SIPI | (TRAMPOLINE >> 12) ; the second SIPI is ignored by a started processor
        call send_ipi

        ; Wait until every application processor has checked in.
        mov ecx, 10000000
.wait:  mov eax, [ap_count]
        inc eax
        cmp eax, [cpus]
        jae .all
        pause
        loop .wait
        mov esi, msg_missing
        mov eax, [ap_count]
        call report
        jmp finish
.all:   mov esi, msg_all
        mov eax, [ap_count]
        call report

        ; Each processor present: report it, send it a fixed IPI, wait for its handler.
        mov edi, 1
.each:  cmp edi, MAX_CPUS
        jae finish
        cmp byte [present + edi], 0
        je .next
        mov esi, msg_up
        mov eax, edi
        call report
        mov eax, edi                 ; destination: APIC ID in ICR bits 63:56
        shl eax, 24
        mov [ebx + APIC_ICR + 0x10], eax
        mov eax, IPI_FIXED | VECTOR
        call send_ipi
        mov ecx, 1000000
.ack:   cmp dword [taken + 4 * edi], 0
        jne .acked
        pause
        loop .ack
        mov esi, msg_no_ipi
        mov eax, edi
        call report
        jmp .next
.acked: mov esi, msg_ipi
        mov eax, edi
        call report
.next:  inc edi
        jmp .each

finish: mov esi, msg_done
        call puts32
        mov al, 0
        out 0xf4, al
        cli
        hlt

; Writes EAX to the ICR and waits until the APIC has sent it.
send_ipi:
        mov [ebx + APIC_ICR], eax
.busy:  test dword [ebx + APIC_ICR], ICR_BUSY
        jnz .busy
        ret

; Prints the string at ESI, then EAX in hex and a newline.
report: push eax
        call puts32
        pop eax
        call hex32
        mov al, 10
        jmp putc32

%include "lib/serial32.inc"

; An application processor after its climb to protected mode.
ap_main:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov esp, ap_stacks_top
        mov eax, 4096
        lock xadd [ap_stack_next], eax
        sub esp, eax
        lidt [idt_ptr]
        mov ebx, APIC
        mov dword [ebx + APIC_SVR], 0x1ff
        mov eax, [ebx + APIC_ID]
        shr eax, 24
        cmp eax, MAX_CPUS
        jae .idle
        mov byte [present + eax], 1
        lock inc dword [ap_count]
        sti
.idle:  hlt
        jmp .idle

ipi_handler:
        push eax
        mov eax, [APIC + APIC_ID]
        shr eax, 24
        lock inc dword [taken + 4 * eax]
        mov dword [APIC + APIC_EOI], 0
        pop eax
        iret

; Copied to TRAMPOLINE and run there in real mode with CS = 0800H, IP = 0.
%define T(label) (label - trampoline + TRAMPOLINE)
bits 16
trampoline:
        cli
        xor ax, ax
        mov ds, ax
        o32 lgdt [T(tramp_gdt_ptr)]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp dword 0x08:ap_main
tramp_gdt_ptr:
        dw gdt_end - gdt - 1
        dd gdt
trampoline_end:
bits 32

align 8
gdt:    dq 0
        dq 0x00cf9a000000ffff        ; 0x08: code, 32-bit, flat
        dq 0x00cf92000000ffff        ; 0x10: data, flat
gdt_end:
gdt_ptr:
        dw gdt_end - gdt - 1
        dd gdt
idt_ptr:
        dw 256 * 8 - 1
        dd idt

msg_cpus:    db "smp: processors (fw_cfg) ", 0
msg_all:     db "smp: application processors up ", 0
msg_missing: db "smp: application processors missing, up ", 0
msg_up:      db "cpu up in protected mode, APIC ID ", 0
msg_ipi:     db "cpu took the fixed IPI, APIC ID ", 0
msg_no_ipi:  db "cpu did not take the IPI, APIC ID ", 0
msg_done:    db "smp: done", 10, 0

ap_stack_next: dd 0

image_end:

section .bss align=16
cpus:     resd 1
ap_count: resd 1
present:  resb MAX_CPUS
taken:    resd MAX_CPUS
alignb 8
idt:      resq 256
          resb 4096
stack_top:
          resb 4096 * MAX_CPUS
ap_stacks_top:
bss_end:
