; Nanobenchmark (lib/nano.inc): a guest page fault. A load from the page at
; NP_PAGE, whose page-table entry is not present (P = 0), raises #PF (a
; fault: the saved RIP is the load's; SDM vol. 3A 4.7, 6.15 "Interrupt 14");
; the handler counts it, adds the load's length to the saved RIP and returns
; with IRETQ. The entry is never made present, so every iteration faults.
; Under the hypervisor's default configuration (EPT; exception bitmap 0,
; SDM vol. 3C 25.6.3) the fault goes to the guest's IDT without an exit. The
; line adds the count and CR2 after the last fault: "nano-pgfault: 10000
; iterations, 10000 page faults, CR2 0x200000".
;
;   hvsim run guests/nano-pgfault.bin           (under the hypervisor)
;   hvsim run guests/nano-pgfault.bin --bare    (on the bare processor)
;
; SDM vol. 3A: 4.5 (4-level paging), 4.7 (#PF error code, CR2), 4.10.4.1
; (INVLPG), 6.13 (error code), 6.14.2 (stack frame); vol. 2: IRET.
%include "lib/bootsector.inc"

NP_PAGE equ NANO_4K_BASE            ; the first 4 KiB page of nano_pt

%define NANO_NAME "nano-pgfault"
%macro NANO_OPERATION 0
..@load: mov eax, [rsi]
..@load_end:
%endmacro

bits 64
nano_setup:
        mov qword [rel nano_pt + ((NP_PAGE - NANO_4K_BASE) >> 12) * 8], 0
        mov esi, NP_PAGE
        invlpg [rsi]                 ; no translation of it may stay cached (4.10.4.1)
        mov eax, 14                  ; #PF
        lea rbx, [rel pf_handler]
        call set_gate
        ret

; [RSP] = the error code (6.13, 4.7), then the saved RIP.
pf_handler:
        add rsp, 8
        inc qword [rel page_faults]
        add qword [rsp], ..@load_end - ..@load
        iretq

nano_report:
        mov rax, [rel page_faults]
        lea rsi, [rel msg_faults]
        call nano_put_count
        lea rsi, [rel msg_cr2]
        call puts
        mov rax, cr2
        jmp puthex

msg_faults: db " page faults", 0
msg_cr2:    db ", CR2 ", 0

section .bss
page_faults: resq 1
section .text

%include "lib/nano.inc"
