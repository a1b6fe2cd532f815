; Runs under each paging mode in turn and shows each translation at work: in
; every mode one linear address is mapped to a different physical page, the
; guest writes through that mapping and reads the value back through the
; identity mapping of the physical page, and prints the paging-structure
; entry's flags (accessed and dirty set by the write). Then, under 4-level
; paging, a stale TLB entry: the PTE is changed without INVLPG and the old
; translation stays in use (the SDM allows a processor to keep it, 4.10.4.4;
; this model keeps every translation until it is invalidated) until INVLPG.
; Ends by writing 0 to the debug-exit port (status 1).
;
; A Multiboot kernel (a.out kludge), loaded at 1 MiB: hvsim run guests/paging.bin
;
; SDM vol. 3A: 4.1.2 (changing paging modes), 4.3 (32-bit paging, 4 KiB and
; 4 MiB pages with CR4.PSE), 4.4 (PAE paging, PDPTEs, 2 MiB pages), 4.5
; (4-level paging), 4.8 (accessed and dirty flags), 4.10.4 (invalidation).
bits 32
org 0x100000

MB_MAGIC equ 0x1BADB002
MB_FLAGS equ 1 << 16
COM1     equ 0x3f8

LIN_4K   equ 0x00400000            ; 32-bit paging: PDE 1 -> page table, PTE 0 -> page A
LIN_4M   equ 0x80000000            ; 32-bit paging: PDE 0x200 -> 4 MiB page at physical 0
LIN_2M   equ 0x40000000            ; PAE: PDPTE 1 -> PD, PDE 0 -> 2 MiB page at physical 0
LIN_HIGH equ 0xffff800000000000    ; 4-level: PML4E 256 -> ... -> PTE 0 -> page D

header:
        dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
        dd header, 0x100000, image_end, bss_end, start32

start32:
        mov esp, stack_top
        ; The bss is zero (Multiboot 3.1.3), so unused entries are not present.

        ; --- 32-bit paging (4.3): CR4.PSE enables 4 MiB pages (PDE.PS = 1).
        mov dword [pd32], 0x83                    ; 0-4 MiB identity: 4 MiB page
        mov dword [pd32 + 4 * (LIN_4K >> 22)], pt32 + 3
        mov dword [pt32], page_a + 3
        mov dword [pd32 + 4 * (LIN_4M >> 22)], 0x83 ; 4 MiB page at physical 0
        mov eax, cr4
        or eax, 1 << 4                            ; CR4.PSE
        mov cr4, eax
        mov eax, pd32
        mov cr3, eax
        mov eax, cr0
        or eax, 1 << 31                           ; CR0.PG
        mov cr0, eax

        mov dword [LIN_4K], 0x11111111
        mov esi, msg_32_4k
        mov eax, [page_a]
        mov ebx, [pt32]
        call report32

        mov dword [LIN_4M + page_b], 0x22222222
        mov esi, msg_32_4m
        mov eax, [page_b]
        mov ebx, [pd32 + 4 * (LIN_4M >> 22)]
        call report32

        ; --- PAE paging (4.4). Paging must be off to change CR4.PAE (4.1.2).
        mov eax, cr0
        and eax, ~(1 << 31)
        mov cr0, eax
        ; PDPTEs have only P, PWT, PCD and the address: R/W is reserved (4.4.1).
        mov dword [pdpt_pae], pd_pae0 + 1
        mov dword [pdpt_pae + 8 * (LIN_2M >> 30)], pd_pae1 + 1
        mov dword [pd_pae0], 0x83                 ; 0-2 MiB identity: 2 MiB page
        mov dword [pd_pae1], 0x83                 ; LIN_2M -> 2 MiB page at physical 0
        mov eax, cr4
        or eax, 1 << 5                            ; CR4.PAE
        mov cr4, eax
        mov eax, pdpt_pae                         ; the 4 PDPTEs load here (4.4.1)
        mov cr3, eax
        mov eax, cr0
        or eax, 1 << 31
        mov cr0, eax

        mov dword [LIN_2M + page_c], 0x33333333
        mov esi, msg_pae
        mov eax, [page_c]
        mov ebx, [pd_pae1]
        call report32

        ; --- 4-level paging (4.5): paging off, EFER.LME, paging on (10.8.5).
        mov eax, cr0
        and eax, ~(1 << 31)
        mov cr0, eax
        mov dword [pml4], pdpt_lo + 3
        mov dword [pdpt_lo], pd_lo + 3
        mov dword [pd_lo], 0x83                   ; 0-2 MiB identity
        mov dword [pml4 + 8 * 256], pdpt_hi + 3   ; LIN_HIGH: bits 47:39 = 256
        mov dword [pdpt_hi], pd_hi + 3
        mov dword [pd_hi], pt64 + 3
        mov dword [pt64], page_d + 3
        mov eax, pml4
        mov cr3, eax
        mov ecx, 0xc0000080                       ; IA32_EFER
        rdmsr
        or eax, 1 << 8                            ; LME
        wrmsr
        mov eax, cr0
        or eax, 1 << 31
        mov cr0, eax
        lgdt [gdt_ptr]
        jmp 0x18:start64

; report32: prints ESI, then "read " EAX, " flags " EBX[11:0], newline.
report32:
        push ebx
        push eax
        call puts32
        mov esi, msg_read
        call puts32
        pop eax
        call hex32
        mov esi, msg_flags
        call puts32
        pop eax
        and eax, 0xfff
        call hex32
        mov al, 10
        jmp putc32

%include "lib/serial32.inc"

bits 64
start64:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov rsp, stack_top
        mov rbx, LIN_HIGH
        mov dword [rbx], 0x44444444
        mov esi, msg_4level
        mov eax, [page_d]
        mov ebx, [pt64]
        call report64

        ; Stale TLB entry: the translation of LIN_HIGH (-> page D) is cached by
        ; the accesses above. Point the PTE at page E without invalidating.
        mov dword [page_e], 0x55555555
        mov dword [pt64], page_e + 3
        mov rbx, LIN_HIGH
        mov esi, msg_stale
        call puts
        mov eax, [rbx]                            ; still page D
        call puthex8
        invlpg [rbx]                              ; 4.10.4.1: drops the translation
        mov esi, msg_invlpg
        call puts
        mov eax, [rbx]                            ; now page E
        call puthex8
        mov al, 10
        call putc

        xor eax, eax
        out 0xf4, al                              ; debug exit, status 1
        cli
        hlt

; The 64-bit twins of the helpers above (CALL/RET and PUSH/POP are 8 bytes here).
report64:
        push rbx
        push rax
        call puts
        mov esi, msg_read
        call puts
        pop rax
        call puthex8
        mov esi, msg_flags
        call puts
        pop rax
        and eax, 0xfff
        call puthex8
        mov al, 10
        jmp putc

%include "lib/serial64.inc"

msg_32_4k:  db "32-bit paging, 4 KiB page 00400000 -> page A:", 0
msg_32_4m:  db "32-bit paging, 4 MiB page 80000000 -> physical 0:", 0
msg_pae:    db "PAE paging, 2 MiB page 40000000 -> physical 0:", 0
msg_4level: db "4-level paging, 4 KiB page ffff800000000000 -> page D:", 0
msg_read:   db " read ", 0
msg_flags:  db " flags ", 0
msg_stale:  db "PTE -> page E without INVLPG: read ", 0
msg_invlpg: db ", after INVLPG: read ", 0

align 8
gdt:    dq 0
        dq 0x00CF9A000000FFFF        ; 08H: 32-bit code
        dq 0x00CF92000000FFFF        ; 10H: data
        dq 0x00209A0000000000        ; 18H: 64-bit code
gdt_ptr:
        dw gdt_ptr - gdt - 1
        dd gdt

image_end:

section .bss align=4096
pd32:     resb 4096
pt32:     resb 4096
pdpt_pae: resb 4096                  ; 32-byte aligned is enough (4.4.1)
pd_pae0:  resb 4096
pd_pae1:  resb 4096
pml4:     resb 4096
pdpt_lo:  resb 4096
pd_lo:    resb 4096
pdpt_hi:  resb 4096
pd_hi:    resb 4096
pt64:     resb 4096
page_a:   resb 4096
page_b:   resb 4096
page_c:   resb 4096
page_d:   resb 4096
page_e:   resb 4096
          resb 4096
stack_top:
bss_end:
