; Walks the processor through its operating modes, starting from real mode:
; real-address mode -> 32-bit protected mode -> IA-32e 64-bit mode ->
; compatibility mode (far return to a 32-bit code segment) -> 64-bit mode, and
; reports on COM1 in each. Ends by writing 0 to the debug-exit port (status 1).
;
; Flat binary, loaded at 0x7C00 and started in real mode (the PC boot-sector
; address): hvsim run guests/modes.bin --format flat --mode real --load 0x7c00
; The loader starts at CS:IP = 07C0:0000; the first far jump moves to
; 0000:7C05 so that offsets equal linear addresses throughout.
;
; SDM vol. 3A: 10.1.1 (real mode after reset), 10.9.1 (switching to protected
; mode), 10.8.5 (initializing IA-32e mode), 2.2.1 / 5.2.1 (64-bit and
; compatibility mode chosen by CS.L), 3.4.5 (segment descriptors).
bits 16
org 0x7c00

COM1      equ 0x3f8
PML4      equ 0x10000              ; page tables: PML4, PDPT, PD (4 KiB each)
PDPT      equ 0x11000
PD        equ 0x12000
STACK_TOP equ 0x7c00               ; the stack grows down below the image

        jmp 0:real16               ; CS = 0: offsets are linear addresses

real16:
        cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, STACK_TOP
        mov si, msg_real
        call puts16
        mov eax, cr0                 ; PE = 0, PG = 0
        call hex16
        call nl16

        lgdt [gdt_ptr]
        mov eax, cr0
        or al, 1                     ; CR0.PE
        mov cr0, eax
        jmp 0x08:pm32                ; the far jump loads a 32-bit CS (10.9.1 step 4)

; puts16: prints the NUL-terminated string at DS:SI.
puts16: lodsb
        test al, al
        jz .done
        call putc16
        jmp puts16
.done:  ret

putc16: mov ah, al
        mov dx, COM1 + 5
.wait:  in al, dx
        test al, 0x20                ; LSR.THRE
        jz .wait
        mov al, ah
        mov dx, COM1
        out dx, al
        ret

; hex16: prints EAX as 8 hex digits.
hex16:  mov cx, 8
.next:  rol eax, 4
        push eax
        and al, 0xf
        add al, '0'
        cmp al, '9'
        jbe .put
        add al, 'a' - '9' - 1
.put:   call putc16
        pop eax
        loop .next
        ret

nl16:   mov al, 10
        jmp putc16

bits 32
pm32:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov esp, STACK_TOP
        mov esi, msg_pm
        call puts32
        mov eax, cr0
        call hex32
        call nl32

        ; Identity map the first 2 MiB with one 2 MiB page (4.5).
        mov edi, PML4
        mov ecx, 3 * 4096 / 4
        xor eax, eax
        rep stosd
        mov dword [PML4], PDPT + 3
        mov dword [PDPT], PD + 3
        mov dword [PD], 0x83         ; present, writable, PS

        mov eax, cr4
        or eax, 1 << 5               ; CR4.PAE
        mov cr4, eax
        mov eax, PML4
        mov cr3, eax
        mov ecx, 0xc0000080          ; IA32_EFER
        rdmsr
        or eax, 1 << 8               ; LME
        wrmsr
        mov eax, cr0
        or eax, 1 << 31              ; CR0.PG: IA-32e mode becomes active (LMA = 1)
        mov cr0, eax
        jmp 0x18:lm64                ; CS.L = 1: 64-bit mode

; probe: the same bytes decode differently by mode. 31 C0 = XOR EAX, EAX;
; 40 = INC EAX in 32-bit code but a REX prefix in 64-bit code (SDM vol. 2,
; 2.2.1), where it prefixes the NOP; C3 = RET (pops 4 or 8 bytes by mode).
probe:  xor eax, eax
        db 0x40
        nop
        ret

%include "lib/serial32.inc"

nl32:   mov al, 10
        jmp putc32

; Compatibility mode: CS.L = 0 with EFER.LMA = 1 (5.2.1).
compat32:
        mov esi, msg_compat
        call puts32
        mov ecx, 0xc0000080
        rdmsr
        call hex32
        mov esi, msg_probe
        call puts32
        call probe
        call hex32
        call nl32
        jmp 0x18:lm64_again          ; back to 64-bit mode

bits 64
lm64:
        mov rsp, STACK_TOP
        mov esi, msg_lm
        call puts
        mov rax, cr0
        call puthex8
        mov esi, msg_efer
        call puts
        mov ecx, 0xc0000080
        rdmsr
        call puthex8
        call nl32_64

        ; A far return pops RIP then CS (8 bytes each with REX.W); the 32-bit
        ; code segment 08H has L = 0, so execution continues in compatibility mode.
        push 0x08
        lea rax, [rel compat32]
        push rax
        o64 retf

lm64_again:
        mov esi, msg_back
        call puts
        call probe
        call puthex8
        call nl32_64
        xor eax, eax
        out 0xf4, al                 ; debug exit, status 1
        cli
        hlt

; 64-bit code has serial routines of its own: the operand size differs, so
; the 32-bit ones cannot be shared by CALL.
%include "lib/serial64.inc"

nl32_64:
        mov al, 10
        jmp putc

msg_real:   db "real mode: CR0=", 0
msg_pm:     db "protected mode: CR0=", 0
msg_lm:     db "64-bit mode: CR0=", 0
msg_efer:   db " EFER=", 0
msg_compat: db "compatibility mode: EFER=", 0
msg_probe:  db " probe EAX=", 0
msg_back:   db "64-bit mode again: probe EAX=", 0

align 8
gdt:    dq 0
        dq 0x00CF9A000000FFFF        ; 08H: 32-bit code, base 0, 4 GiB
        dq 0x00CF92000000FFFF        ; 10H: data, base 0, 4 GiB
        dq 0x00209A0000000000        ; 18H: 64-bit code (L = 1, D = 0)
gdt_ptr:
        dw gdt_ptr - gdt - 1
        dd gdt
