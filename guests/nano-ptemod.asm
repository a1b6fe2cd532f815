; Nanobenchmark (lib/nano.inc): a store to a guest page-table entry that
; writes back the value it already holds: the 4 KiB PTE of PTE_PAGE, mapped
; and never accessed, written through the identity mapping of the page table
; (nano_pt lies in the first 2 MiB). The entry does not change, so no TLB
; entry can become stale and no INVLPG follows (SDM vol. 3A 4.10.4). A
; shadow-paging hypervisor must trap such writes; with EPT (the hypervisor's
; default, SDM vol. 3C 29.3) they are ordinary stores and do not exit. The
; line prints the entry read back: "nano-ptemod: 10000 iterations, PTE
; 0x201027" (P, R/W, U/S, A from the read; D still 0: nothing wrote the page).
;
;   hvsim run guests/nano-ptemod.bin           (under the hypervisor)
;   hvsim run guests/nano-ptemod.bin --bare    (on the bare processor)
;
; SDM vol. 3A: 4.5 (4-level paging, table 4-20: a PTE that maps a 4 KiB
; page), 4.8 (accessed and dirty flags), 4.10.4.
%include "lib/bootsector.inc"

PTE_PAGE equ NANO_4K_BASE + 0x1000   ; the second 4 KiB page of nano_pt
PTE_ADDR equ nano_pt + ((PTE_PAGE - NANO_4K_BASE) >> 12) * 8

%define NANO_NAME "nano-ptemod"
%macro NANO_OPERATION 0
        mov [rdi], rax
%endmacro

bits 64
nano_setup:
        mov al, [PTE_PAGE]           ; the walk sets A in the PTE (4.8)
        lea rdi, [rel PTE_ADDR]
        mov rax, [rdi]
        ret

nano_report:
        lea rsi, [rel msg_pte]
        call puts
        mov rax, [rel PTE_ADDR]
        jmp puthex

msg_pte: db ", PTE ", 0

%include "lib/nano.inc"
