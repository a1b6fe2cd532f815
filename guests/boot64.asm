; A Multiboot kernel that walks the PC from the loader's 32-bit protected mode
; into long mode and exercises exceptions and timer interrupts, reporting on
; COM1, and halts with interrupts off (hvsim's exit status 0).
; Flat binary with the Multiboot a.out-kludge header, loaded at 1 MiB.
bits 32
org 0x100000

%include "lib/pic8259.inc"

MB_MAGIC equ 0x1BADB002
MB_FLAGS equ 1 << 16               ; the address fields below are valid
COM1     equ 0x3f8

header:
        dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
        dd header, 0x100000, image_end, bss_end, start32

start32:
        mov esp, stack_top
        cmp eax, 0x2BADB002          ; the loader's magic (Multiboot 0.6.96, 3.2)
        jne .bad
        mov esi, msg_pm
        call puts32

        ; Identity map the first GiB with 2 MiB pages: PML4 -> PDPT -> PD.
        mov dword [pml4], pdpt + 3
        mov dword [pdpt], pd + 3
        xor ecx, ecx
.map:   mov eax, ecx
        shl eax, 21
        or eax, 0x83                 ; present, writable, 2 MiB page
        mov [pd + ecx * 8], eax
        inc ecx
        cmp ecx, 512
        jb .map

        mov eax, cr4
        or eax, 1 << 5               ; CR4.PAE
        mov cr4, eax
        mov eax, pml4
        mov cr3, eax
        mov ecx, 0xC0000080          ; IA32_EFER
        rdmsr
        or eax, 1 << 8               ; LME
        wrmsr
        mov eax, cr0
        or eax, 1 << 31              ; CR0.PG: IA-32e mode becomes active
        mov cr0, eax
        lgdt [gdt_ptr]
        jmp 0x08:start64
.bad:   hlt

puts32: lodsb
        test al, al
        jz .done
        mov dx, COM1 + 5
        mov ah, al
.wait:  in al, dx
        test al, 0x20                ; LSR.THRE
        jz .wait
        mov al, ah
        mov dx, COM1
        out dx, al
        jmp puts32
.done:  ret

bits 64
start64:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov rsp, stack_top
        lea rsi, [rel msg_lm]
        call puts

        mov eax, 0
        mov rbx, de_handler
        call set_gate
        mov eax, 0x20
        mov rbx, timer_handler
        call set_gate
        lidt [rel idt_ptr]

        xor ecx, ecx
        mov eax, 1
        xor edx, edx
        div ecx                      ; #DE: the handler skips these 2 bytes
        lea rsi, [rel msg_after]
        call puts

        PIC_INIT_IRQ0_ONLY               ; lib/pic8259.inc
        ; 8254 channel 0, mode 2, count 1193: about 1 kHz.
        mov al, 0x34
        out 0x43, al
        mov ax, 1193
        out 0x40, al
        mov al, ah
        out 0x40, al

        sti
.idle:  hlt
        cmp qword [rel ticks], 3
        jb .idle
        cli
        lea rsi, [rel msg_timer]
        call puts
        hlt                          ; interrupts off: the machine stops here

%include "lib/idt64.inc"

de_handler:
        lea rsi, [rel msg_de]
        call puts
        add qword [rsp], 2
        iretq

timer_handler:
        push rax
        inc qword [rel ticks]
        mov al, 0x20
        out 0x20, al                 ; non-specific EOI
        pop rax
        iretq

%include "lib/serial64.inc"

msg_pm:    db "hvsim guest: protected mode", 10, 0
msg_lm:    db "hvsim guest: long mode", 10, 0
msg_de:    db "hvsim guest: #DE handled", 10, 0
msg_after: db "hvsim guest: resumed after #DE", 10, 0
msg_timer: db "hvsim guest: 3 timer interrupts", 10, 0

align 8
gdt:    dq 0
        dq 0x00209A0000000000        ; 0x08: 64-bit code
        dq 0x00CF92000000FFFF        ; 0x10: data
gdt_ptr:
        dw gdt_ptr - gdt - 1
        dd gdt
idt_ptr:
        dw 256 * 16 - 1
        dq idt
ticks:  dq 0

image_end:

section .bss align=4096
pml4:   resb 4096
pdpt:   resb 4096
pd:     resb 4096
idt:    resb 4096
        resb 4096
stack_top:
bss_end:
