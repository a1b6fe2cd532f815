; A VMX hypervisor that runs its guests under EPT. The host (64-bit,
; identity-mapped) checks the EPT capabilities it needs, builds 4-level EPT
; tables that identity-map guest-physical memory except for a few pages, and
; launches the 64-bit guest of vmx-basic (same CR3: its own page tables are
; identity and are now translated through EPT). Each guest step prints a line:
;   G   guest-physical G maps to host-physical H: the guest reads H's string
;   RO  read-only: a read passes, a write is an EPT violation; the host makes
;       it writable, INVEPT, and the write completes
;   U   not present: a read is an EPT violation; the host maps U to a page
;   M   write-only, R = 0 W = 1: an EPT misconfiguration; the host fixes it
;   PT  a page of the guest's own page tables lies in a not-present EPT page:
;       the guest's page walk is an EPT violation (qualification bit 8 = 0)
;   and a page above 2 MiB (a 2 MiB EPT page where the CPU has them).
; At the guest's VMCALL the host prints what it counted, then, if the CPU
; offers "unrestricted guest", launches a second VMCS whose guest starts in
; real mode (CR0.PE = PG = 0), prints on COM1 with OUT, and exits on HLT and
; VMCALL. Ends with VMXOFF, status 1.
;
; Only values the SDM fixes or the image chose are printed (no capability
; MSR, no raw exit qualification bits the SDM leaves undefined), so Bochs and
; hvsim print the same lines (spec-tests/oracle/vmx-ept.transcript.ts). A/D
; flags in EPT are not used, whatever the CPU offers, for the same reason.
;
; Intel SDM vol. 3C: 25.6.2 (secondary controls), 25.6.11 (EPTP), 27.2.1.1
; (EPT and unrestricted-guest control checks), 27.3.1 (guest state with
; unrestricted guest), 28.2.1 (exit qualification for EPT violations, table
; 28-7; cleared for EPT misconfigurations), 28.2.3 (guest-physical address),
; 29.3 (EPT: 29.3.2 translation, 29.3.3.1 misconfigurations, 29.3.3.2
; violations), 29.4.3 (INVEPT), 31.3 INVEPT, appendix A.3.3 and A.10.
%include "lib/bootsector.inc"

COM1       equ 0x3F8
RM_BASE    equ 0x8000                ; the real-mode stub's copy in low memory
RM_SEG     equ RM_BASE >> 4          ; its CS and DS: base = selector << 4
RM_STACK   equ 0x7000
; The EPT tables and the pages EPT treats specially, at fixed addresses
; above the image (start64 checks bss_end <= FIXED_BASE and zeroes them):
; their addresses are printed, and stay put whatever size the code has.
FIXED_BASE  equ 0x180000
EPT_PML4    equ FIXED_BASE
EPT_PDPT    equ FIXED_BASE + 0x1000
EPT_PD      equ FIXED_BASE + 0x2000
EPT_PT      equ FIXED_BASE + 0x3000  ; guest-physical 0-2 MiB, 4 KiB pages
EPT_PT2     equ FIXED_BASE + 0x4000  ; 2-4 MiB, without 2 MiB EPT pages
PAGE_G      equ FIXED_BASE + 0x5000  ; each special page alone in its 4 KiB
PAGE_H      equ FIXED_BASE + 0x6000
PAGE_U      equ FIXED_BASE + 0x7000
PAGE_U_HOST equ FIXED_BASE + 0x8000
PAGE_RO     equ FIXED_BASE + 0x9000
PAGE_M      equ FIXED_BASE + 0xA000
GUEST_PD    equ FIXED_BASE + 0xB000  ; the guest's page tables for PT_LINEAR
GUEST_PT    equ FIXED_BASE + 0xC000
FIXED_END   equ FIXED_BASE + 0xD000
HIGH_PAGE   equ 0x3FF000             ; a page above 2 MiB (EPT: 2 MiB page or second PT)
PT_LINEAR   equ 0x40003000            ; PML4[0], PDPT[1] -> GUEST_PD, PD[0] -> GUEST_PT, PT[3] -> G
RO_OFFSET  equ 0x10                  ; offsets of the guest's accesses in their pages:
U_OFFSET   equ 0x100                 ; the guest-physical address field holds them too
M_OFFSET   equ 0x200
RO_OLD     equ 0x11111111
RO_NEW     equ 0x22222222
VPID_GUEST equ 1                     ; used where "enable VPID" is offered
VPID_REAL  equ 2
CR0_PE     equ 1 << 0
CR0_ET     equ 1 << 4
CR0_NE     equ 1 << 5
CR0_NW     equ 1 << 29
CR0_CD     equ 1 << 30
CR0_PG     equ 1 << 31

; IA32_VMX_EPT_VPID_CAP bits this hypervisor needs (A.10): page-walk length 4
; (6), WB paging-structure memory type (14), INVEPT (20), single-context (25)
; and all-context (26) INVEPT types.
EPT_CAP_NEEDED equ (1 << 6) | (1 << 14) | (1 << 20) | (1 << 25) | (1 << 26)
EPT_CAP_2MB_BIT equ 16                ; 2 MiB EPT pages

%include "lib/vmx64.inc"
%include "lib/idt64.inc"
%include "lib/serial64.inc"

bits 64
start64:
        call host_init
        ; Normal cache mode, CD = NW = 0 (vol. 3A, 12.5.1): the BIOS (Bochs)
        ; may leave the reset value CD = NW = 1, a Multiboot loader (hvsim)
        ; not. VM entry keeps the current CD and NW (27.3.2.1), so the
        ; real-mode guest's CR0 shows them: make them the same everywhere.
        mov rax, cr0
        and eax, ~(CR0_CD | CR0_NW)
        mov cr0, rax
        lea rsi, [rel msg_start]
        call say
        lea rax, [rel bss_end]
        cmp rax, FIXED_BASE
        jbe .fits
        lea rsi, [rel msg_too_big]
        call say
        mov al, EXIT_UNEXPECTED
        MACHINE_EXIT
.fits:  mov edi, FIXED_BASE
        mov ecx, (FIXED_END - FIXED_BASE) / 8
        xor eax, eax
        rep stosq
        call vmx_enable
        lea rsi, [rel msg_vmxon]
        call say
        call ept_check
        call ept_build
        call pages_prepare

        lea rdi, [rel vmcs1]
        call vmcs_activate
        mov r8d, CPU_SECONDARY
        lea r9, [rel vm_exit]
        lea r10, [rel guest_main]
        lea r11, [rel guest_stack_top]
        call vmcs_setup
        mov eax, CPU2_ENABLE_EPT
        mov ebx, VPID_GUEST
        call use_ept
        ; 29.4.3.1: nothing may be cached for this EPTP before its first use.
        mov eax, INVEPT_ALL
        VMX "INVEPT", invept rax, [rel invept_desc]
        lea rsi, [rel msg_launch]
        call say
        VMX "VMLAUNCH", vmlaunch

; ---- The guest (VMX non-root operation, CPL 0, 64-bit, under EPT) ----
guest_main:
        lea rsi, [rel msg_g_g]       ; G: EPT maps it to H
        call puts
        mov esi, PAGE_G
        call putline

        mov eax, [PAGE_RO + RO_OFFSET]
        lea rsi, [rel msg_g_ro_read]
        call report
        lea rsi, [rel msg_g_ro_write]
        mov eax, RO_NEW
        call puts_hex
        lea rsi, [rel msg_g_ro_write2]
        call puts
        mov dword [PAGE_RO + RO_OFFSET], RO_NEW  ; EPT violation, then completes
        mov eax, [PAGE_RO + RO_OFFSET]
        lea rsi, [rel msg_g_ro_back]
        call report

        ; Each access first, then the line: the host's lines come in between.
        mov al, [PAGE_U + U_OFFSET]  ; U: not present until the host maps it
        lea rsi, [rel msg_g_u]
        call puts
        lea rsi, [PAGE_U + U_OFFSET]
        call putline

        mov al, [PAGE_M + M_OFFSET]  ; M: R = 0, W = 1, a misconfiguration
        lea rsi, [rel msg_g_m]
        call puts
        lea rsi, [PAGE_M + M_OFFSET]
        call putline

        mov al, [PT_LINEAR]          ; its PTE lies in an EPT-unmapped page
        lea rsi, [rel msg_g_reads]
        mov eax, PT_LINEAR
        call puts_addr
        mov esi, PT_LINEAR
        call putline

        lea rsi, [rel msg_g_reads]
        mov eax, HIGH_PAGE
        call puts_addr
        mov esi, HIGH_PAGE
        call putline

        lea rsi, [rel msg_g_vmcall]
        call puts
        vmcall
        ud2

; puts_addr: prints RSI, RAX in hex and ": ".
puts_addr:
        call puts_hex
        mov al, ':'
        call putc
        mov al, ' '
        jmp putc

; putline: prints the string at RSI and a newline.
putline:
        call puts
        mov al, 10
        jmp putc

; ---- VM exits of the 64-bit guest (HOST_RIP of vmcs1) ----
vm_exit:
        PUSH_GPRS
        vmr VMCS_EXIT_REASON
        cmp eax, EXIT_REASON_EPT_VIOLATION
        je ept_violation
        cmp eax, EXIT_REASON_EPT_MISCONFIG
        je ept_misconfig
        cmp eax, EXIT_REASON_VMCALL
        je guest_done
        jmp report_exit

; QBIT bit, set-text, clear-text: prints one of the texts for bit `bit` of R12.
%macro QBIT 3
        mov ecx, %1
        lea rsi, [rel %%set]
        lea rdi, [rel %%clear]
        call print_bit
        jmp %%end
%%set:   db %2, 0
%%clear: db %3, 0
%%end:
%endmacro
print_bit:
        bt r12, rcx
        jc puts
        mov rsi, rdi
        jmp puts

; An EPT violation (29.3.3.2): prints the exit qualification (28.2.1, table
; 28-7) and the guest-physical and guest-linear addresses (28.2.3), gives the
; page what the guest asked for, invalidates and resumes: the instruction is
; executed again (an EPT violation is a fault-like exit: GUEST_RIP is its own).
ept_violation:
        inc qword [rel ept_violations]
        vmr VMCS_EXIT_QUALIFICATION
        mov r12, rax
        vmr VMCS_GUEST_PHYSICAL_ADDRESS
        mov r13, rax
        lea rsi, [rel msg_violation]
        call say
        ; Bits 0-5, 7 and 8 only: bit 6 is defined only with mode-based execute
        ; control, 9-11 only with advanced VM-exit information (A.10 bit 22).
        mov rax, r12
        and eax, 0x1BF
        call puthex
        mov al, ':'
        call putc
        mov al, ' '
        call putc
        xor ebx, ebx                 ; the access: bits 0-2
        xor ecx, ecx
.access:
        bt r12, rcx
        jnc .next_access
        test ebx, ebx
        jz .first_access
        mov al, '+'
        call putc
.first_access:
        lea rsi, [rel access_names]
        mov rsi, [rsi + rcx * 8]
        call puts
        inc ebx
.next_access:
        inc ecx
        cmp ecx, 3
        jb .access
        ; Bits 3-5: the AND of bits 0-2 of the EPT entries used (0 from a
        ; not-present entry).
        QBIT 3, "; readable", "; not readable"
        QBIT 4, ", writable", ", not writable"
        QBIT 5, ", executable", ", not executable"
        QBIT 7, "; guest-linear address valid", "; no guest-linear address"
        bt r12, 7
        jnc .addresses
        ; Bit 8, when bit 7 is 1: the access was to the linear address's
        ; translation, or to a guest paging-structure entry in the page walk.
        QBIT 8, ", access to its translation", ", access to a guest paging-structure entry"
.addresses:
        mov al, 10
        call putc
        lea rsi, [rel msg_gpa]
        call say
        mov rax, r13
        call puthex
        bt r12, 7
        jnc .gpa_done
        lea rsi, [rel msg_gla]       ; 0x640A is defined only when bit 7 is 1
        call puts
        vmr VMCS_GUEST_LINEAR_ADDRESS
        call puthex
.gpa_done:
        mov al, 10
        call putc

        mov rax, r13                 ; the page, and what the host does with it
        and rax, ~0xFFF
        mov ebx, PAGE_RO
        cmp rax, rbx
        je .ro
        mov ebx, PAGE_U
        cmp rax, rbx
        je .u
        mov ebx, GUEST_PT
        cmp rax, rbx
        je .pt
        jmp report_exit
.ro:    or rbx, EPT_R | EPT_W | EPT_LEAF_WB
        lea rsi, [rel msg_fix_ro]
        jmp ept_fix
.u:     mov ebx, PAGE_U_HOST | EPT_RWX | EPT_LEAF_WB
        call ept_set_leaf
        lea rsi, [rel msg_fix_u]
        mov eax, PAGE_U_HOST
        call say_hex
        jmp ept_resume
.pt:    or rbx, EPT_RWX | EPT_LEAF_WB
        lea rsi, [rel msg_fix_pt]
        jmp ept_fix

; An EPT misconfiguration (29.3.3.1): exit reason 49, exit qualification
; cleared (28.2.1: not one of the exits that define it), guest-physical
; address saved (28.2.3); no guest-linear address.
ept_misconfig:
        inc qword [rel ept_misconfigs]
        lea rsi, [rel msg_misconfig]
        call say
        vmr VMCS_EXIT_QUALIFICATION
        call puthex
        lea rsi, [rel msg_misconfig_gpa]
        call puts
        vmr VMCS_GUEST_PHYSICAL_ADDRESS
        mov r13, rax
        call puthex
        mov al, 10
        call putc
        mov rax, r13
        and rax, ~0xFFF
        mov ebx, PAGE_M
        cmp rax, rbx
        jne report_exit
        or rbx, EPT_RWX | EPT_LEAF_WB
        lea rsi, [rel msg_fix_m]
        ; fall through

; ept_fix: RAX = a guest-physical page below 2 MiB, RBX = its new EPT leaf,
; RSI = what the host did. Writes the leaf, invalidates what the processor may
; have cached for this EPTP (29.4.3.1: INVEPT single-context) and resumes the
; guest where it stopped.
ept_fix:
        call ept_set_leaf
        call say
ept_resume:
        lea rsi, [rel msg_invept]
        call puts
        mov eax, INVEPT_SINGLE
        VMX "INVEPT", invept rax, [rel invept_desc]
        POP_GPRS
        VMX "VMRESUME", vmresume

; ---- After the guest's VMCALL: VMX root operation ----
guest_done:
        lea rsp, [rel exit_stack_top]
        lea rsi, [rel msg_done_guest]
        call say
        mov rax, [rel ept_violations]
        call putdec
        lea rsi, [rel msg_count_misconfig]
        call puts
        mov rax, [rel ept_misconfigs]
        call putdec
        mov al, 10
        call putc

        test dword [rel ctls2_allowed1], CPU2_UNRESTRICTED
        jnz real_mode_guest
        lea rsi, [rel msg_no_ug]
        call say
        jmp finish

; A second VMCS with "unrestricted guest" (25.6.2): the guest starts in real
; mode at RM_SEG:0000 through the same EPT (its identity map covers the stub).
real_mode_guest:
        lea rsi, [rel rm_stub]
        mov edi, RM_BASE
        mov ecx, rm_stub_end - rm_stub
        rep movsb
        lea rdi, [rel vmcs2]
        call vmcs_activate
        mov r8d, CPU_SECONDARY | CPU_HLT_EXITING
        lea r9, [rel real_mode_exit]
        xor r10d, r10d               ; GUEST_RIP = IP 0
        mov r11d, RM_STACK
        call vmcs_setup
        mov eax, CPU2_ENABLE_EPT | CPU2_UNRESTRICTED
        mov ebx, VPID_REAL
        call use_ept
        xor eax, eax                 ; "IA-32e mode guest" = 0 (27.3.1.1: CR0.PG = 0)
        mov ecx, IA32_VMX_ENTRY_CTLS
        call vmx_controls
        vmw VMCS_ENTRY_CONTROLS, rax
        ; 27.3.1.1: CR0 and CR4 must keep the fixed bits of A.7 and A.8,
        ; except PE and PG with unrestricted guest; NE stays 1. The guest
        ; owns CR0 but NE, which reads 0 from the read shadow (25.6.6), as
        ; after reset.
        mov ebx, CR0_ET
        mov ecx, IA32_VMX_CR0_FIXED0
        call apply_fixed
        and ebx, ~(CR0_PE | CR0_PG)
        vmw VMCS_GUEST_CR0, rbx
        xor ebx, ebx
        mov ecx, IA32_VMX_CR4_FIXED0
        call apply_fixed
        vmw VMCS_GUEST_CR4, rbx
        vmw VMCS_CR0_MASK, CR0_NE
        vmw VMCS_CR0_SHADOW, 0
        lea rsi, [rel real_mode_fields]
        call vmcs_write_fields
        lea rsi, [rel msg_launch_real]
        mov eax, RM_SEG
        call say_hex
        lea rsi, [rel msg_launch_real_ip]
        call puts
        VMX "VMLAUNCH", vmlaunch

; VM exits of the real-mode guest (HOST_RIP of vmcs2). The stub keeps nothing
; in registers across its exits.
real_mode_exit:
        lea rsp, [rel exit_stack_top]
        vmr VMCS_EXIT_REASON
        mov r12, rax
        lea r13, [rel name_hlt]
        cmp r12, EXIT_REASON_HLT
        je .named
        lea r13, [rel name_vmcall]
        cmp r12, EXIT_REASON_VMCALL
        jne report_exit
.named: lea rsi, [rel msg_real_exit]
        call say
        mov rax, r12
        call putdec
        mov rsi, r13
        call puts
        lea rsi, [rel msg_at]
        call puts
        vmr VMCS_GUEST_CS_SELECTOR
        call puthex
        mov al, ':'
        call putc
        vmr VMCS_GUEST_RIP
        call puthex
        mov al, 10
        call putc
        cmp r12d, EXIT_REASON_HLT
        je .hlt
        ; CR0 as the guest read it: NE from the read shadow (0), ET = 1, PE
        ; = PG = 0; and as VM exit saved it (28.3.1): NE = 1.
        lea rsi, [rel msg_real_cr0]
        mov eax, [RM_BASE + rm_cr0 - rm_stub]
        call say_hex
        lea rsi, [rel msg_real_guest_cr0]
        vmr VMCS_GUEST_CR0
        call puts_hex
        mov al, 10
        call putc
        jmp finish
.hlt:   vmr VMCS_EXIT_INSTRUCTION_LEN     ; skip the HLT (28.2.5)
        mov rbx, rax
        vmr VMCS_GUEST_RIP
        add rax, rbx
        vmw VMCS_GUEST_RIP, rax
        VMX "VMRESUME", vmresume

finish: VMX "VMXOFF", vmxoff
        lea rsi, [rel msg_vmxoff]
        call say
        lea rsi, [rel msg_finished]
        call say
        mov al, EXIT_OK
        MACHINE_EXIT

; ---- Set-up ----

; ept_check: the controls and EPT capabilities this hypervisor needs (A.3.3,
; A.10); ends the run, naming what is missing, if any is not offered.
ept_check:
        mov ecx, IA32_VMX_PROCBASED_CTLS
        rdmsr
        bt edx, 31                   ; may "activate secondary controls" be 1
        jnc .no_ept
        mov ecx, IA32_VMX_PROCBASED_CTLS2
        rdmsr
        mov [rel ctls2_allowed0], eax
        mov [rel ctls2_allowed1], edx
        test edx, CPU2_ENABLE_EPT
        jz .no_ept
        mov ecx, IA32_VMX_EPT_VPID_CAP
        rdmsr
        mov [rel ept_cap], eax
        and eax, EPT_CAP_NEEDED
        cmp eax, EPT_CAP_NEEDED
        jne .no_cap
        lea rsi, [rel msg_ept_caps]
        jmp say
.no_ept:
        lea rsi, [rel msg_no_ept]
        jmp .end
.no_cap:
        lea rsi, [rel msg_no_cap]
.end:   call say
        mov al, EXIT_NO_VMX
        MACHINE_EXIT

; ept_build: EPT paging structures (29.3.2) that identity-map guest-physical
; memory: PML4[0] -> PDPT, PDPT[0] -> PD, PD[0] -> a page table of 4 KiB
; pages (0-2 MiB, where the special pages are); above that 2 MiB pages up to
; 1 GiB where the CPU has them (A.10 bit 16), else a second page table (2-4
; MiB). Leaves: R, W, X, memory type WB; IPAT = 0. Entries that reference a
; table: R, W, X; bits 7:3 reserved (0). EPTP (25.6.11): the PML4's address,
; walk length 4, WB, no A/D flags (bit 6 = 0).
ept_build:
        mov qword [EPT_PML4], EPT_PDPT | EPT_RWX
        mov qword [EPT_PDPT], EPT_PD | EPT_RWX
        mov qword [EPT_PD], EPT_PT | EPT_RWX
        mov edi, EPT_PT
        mov eax, EPT_RWX | EPT_LEAF_WB
        call ept_fill_pt
        bt dword [rel ept_cap], EPT_CAP_2MB_BIT
        jnc .small
        lea rdi, [EPT_PD + 8]
        mov eax, 0x200000 | EPT_RWX | EPT_LEAF_WB | EPT_LARGE
        mov ecx, 511
.large: mov [rdi], rax
        add rdi, 8
        add rax, 0x200000
        loop .large
        jmp .eptp
.small: mov qword [EPT_PD + 8], EPT_PT2 | EPT_RWX
        mov edi, EPT_PT2
        mov eax, 0x200000 | EPT_RWX | EPT_LEAF_WB
        call ept_fill_pt
.eptp:  ; The INVEPT descriptor: the EPTP, then 64 reserved bits (0).
        mov qword [rel invept_desc], EPT_PML4 | EPTP_WALK4 | EPTP_WB
        ret

; ept_fill_pt: RDI = a page table, RAX = its first leaf: 512 consecutive 4 KiB pages.
ept_fill_pt:
        mov ecx, 512
.leaf:  mov [rdi], rax
        add rdi, 8
        add rax, 4096
        loop .leaf
        ret

; ept_set_leaf: RAX = a guest-physical address below 2 MiB, RBX = its new 4 KiB leaf.
ept_set_leaf:
        shr eax, 12
        mov edi, EPT_PT
        mov [rdi + rax * 8], rbx
        ret

; pages_prepare: the pages' contents (written host-physically), their EPT
; leaves, and the guest page table behind PT_LINEAR; prints the map.
pages_prepare:
        lea rsi, [rel str_identity]
        mov edi, PAGE_G
        call copy_string
        lea rsi, [rel str_remapped]
        mov edi, PAGE_H
        call copy_string
        lea rsi, [rel str_mapped]
        lea rdi, [PAGE_U_HOST + U_OFFSET]
        call copy_string
        lea rsi, [rel str_fixed]
        lea rdi, [PAGE_M + M_OFFSET]
        call copy_string
        lea rsi, [rel str_high]
        mov edi, HIGH_PAGE
        call copy_string
        mov dword [PAGE_RO + RO_OFFSET], RO_OLD

        mov eax, PAGE_G              ; G -> H
        mov ebx, PAGE_H | EPT_RWX | EPT_LEAF_WB
        call ept_set_leaf
        mov eax, PAGE_U              ; U: not present
        xor ebx, ebx
        call ept_set_leaf
        mov eax, PAGE_RO             ; RO: R = 1, W = 0, X = 0
        mov ebx, PAGE_RO | EPT_R | EPT_LEAF_WB
        call ept_set_leaf
        mov eax, PAGE_M              ; M: R = 0 with W = 1 (29.3.3.1)
        mov ebx, PAGE_M | EPT_W | EPT_LEAF_WB
        call ept_set_leaf
        mov eax, GUEST_PT            ; the guest page table: not present
        xor ebx, ebx
        call ept_set_leaf

        ; The guest's (and host's) 4-level paging, entries present and
        ; writable (bits 0, 1): PDPT[1] -> GUEST_PD, GUEST_PD[0] -> GUEST_PT,
        ; GUEST_PT[3] -> G. The host never uses linear 1 GiB and up: nothing
        ; to invalidate.
        mov qword [rel boot_pdpt + 8], GUEST_PD | 3
        mov qword [GUEST_PD], GUEST_PT | 3
        mov qword [GUEST_PT + ((PT_LINEAR >> 12) & 511) * 8], PAGE_G | 3

        lea rsi, [rel msg_eptp]
        mov rax, [rel invept_desc]
        call say_report
        lea rsi, [rel msg_map_g]
        mov eax, PAGE_G
        call say_hex
        lea rsi, [rel msg_map_h]
        mov eax, PAGE_H
        call puts_hex
        lea rsi, [rel msg_map_host_g]
        call puts
        mov esi, PAGE_G
        call putline
        lea rsi, [rel msg_map_u]
        mov eax, PAGE_U
        call say_report
        lea rsi, [rel msg_map_ro]
        mov eax, PAGE_RO
        call say_report
        lea rsi, [rel msg_map_m]
        mov eax, PAGE_M
        call say_report
        lea rsi, [rel msg_map_pt]
        mov eax, GUEST_PT
        call say_hex
        lea rsi, [rel msg_map_pt_linear]
        mov eax, PT_LINEAR
        call puts_hex
        mov al, 10
        jmp putc

; use_ept: the current VMCS's secondary controls = EAX (each offered: checked
; by the caller) with "enable VPID" added where offered (VPID = EBX, 29.1), and
; the EPTP.
use_ept:
        or eax, [rel ctls2_allowed0] ; bits that must be 1 (A.3.3)
        test dword [rel ctls2_allowed1], CPU2_ENABLE_VPID
        jz .write
        or eax, CPU2_ENABLE_VPID
        push rax
        vmw VMCS_VPID, rbx
        pop rax
.write: vmw VMCS_CPU_CONTROLS2, rax
        mov rax, [rel invept_desc]
        vmw VMCS_EPT_POINTER, rax
        ret

; vmcs_write_fields: RSI = (encoding, value) pairs ended by -1: VMWRITE each.
vmcs_write_fields:
        mov rdx, [rsi]
        cmp rdx, -1
        je .done
        mov rax, [rsi + 8]
        call vmwrite_checked
        add rsi, 16
        jmp vmcs_write_fields
.done:  ret

; copy_string: RSI -> RDI, the terminating zero included.
copy_string:
        lodsb
        stosb
        test al, al
        jnz copy_string
        ret

; say_report: the host prefix, then RSI, RAX in hex and a newline.
say_report:
        call say_hex
        mov al, 10
        jmp putc

; say_hex: the host prefix, then RSI and RAX in hex. puts_hex: without the prefix.
say_hex:
        push rax
        call say
        pop rax
        jmp puthex
puts_hex:
        push rax
        call puts
        pop rax
        jmp puthex

; ---- The real-mode guest: copied to RM_BASE, runs at RM_SEG:0000 with DS = CS ----
bits 16
rm_stub:
        mov eax, cr0                 ; NE comes from the read shadow (25.6.6)
        mov [rm_cr0 - rm_stub], eax
        mov si, rm_msg - rm_stub
.put:   lodsb
        test al, al
        jz .done
        mov bl, al
        mov dx, COM1 + 5
.wait:  in al, dx
        test al, 0x20                ; LSR.THRE
        jz .wait
        mov al, bl
        mov dx, COM1
        out dx, al
        jmp .put
.done:  hlt                          ; HLT exiting: the host skips it
        vmcall                       ; exits unconditionally (26.1.2), in real mode too
        jmp .done
rm_msg: db "real-mode guest: CR0.PE = 0, OUT to COM1", 10, 0
align 4, db 0
rm_cr0: dd 0
rm_stub_end:
bits 64

align 8
; Real-mode guest state (27.3.1.2 with unrestricted guest): CS type 11
; (execute/read, accessed), data type 3 (read/write, accessed), DPL 0,
; limit FFFFH byte-granular, base = selector << 4; the real-mode IVT.
real_mode_fields:
%macro real_segment 3                ; name, selector, access rights
        dq VMCS_GUEST_%1_SELECTOR, %2
        dq VMCS_GUEST_%1_BASE, %2 << 4
        dq VMCS_GUEST_%1_LIMIT, 0xFFFF
        dq VMCS_GUEST_%1_AR, %3
%endmacro
        real_segment CS, RM_SEG, 0x9B
        real_segment DS, RM_SEG, 0x93
        real_segment SS, 0, 0x93
        real_segment ES, 0, 0x93
        real_segment FS, 0, 0x93
        real_segment GS, 0, 0x93
        dq VMCS_GUEST_IDTR_BASE, 0
        dq VMCS_GUEST_IDTR_LIMIT, 0x3FF
        dq -1

align 8
access_names:                        ; exit qualification bits 0-2 (table 28-7)
        dq name_read, name_write, name_fetch
name_read:  db "read", 0
name_write: db "write", 0
name_fetch: db "instruction fetch", 0

str_identity: db "identity page", 0
str_remapped: db "remapped page", 0
str_mapped:   db "mapped by the host", 0
str_fixed:    db "R = 1 after the misconfiguration", 0
str_high:     db "identity map above 2 MiB", 0

msg_prefix:        db "vmx-ept: ", 0
msg_start:         db "64-bit host", 10, 0
msg_vmxon:         db "VMXON", 10, 0
msg_too_big:       db "the image reaches FIXED_BASE: move it up", 10, 0
msg_ept_caps:      db "EPT: 4-level page walk, write-back, INVEPT single-context and all-context", 10, 0
msg_no_ept:        db "EPT not offered (IA32_VMX_PROCBASED_CTLS2 bit 33)", 10, 0
msg_no_cap:        db "EPT lacks walk length 4, WB or INVEPT single/all-context (IA32_VMX_EPT_VPID_CAP)", 10, 0
msg_eptp:          db "EPTP ", 0
msg_map_g:         db "G ", 0
msg_map_h:         db " -> host-physical H ", 0
msg_map_host_g:    db "; the host reads G: ", 0
msg_map_u:         db "U not present: ", 0
msg_map_ro:        db "RO read-only: ", 0
msg_map_m:         db "M write-only (misconfigured): ", 0
msg_map_pt:        db "guest page table not present: ", 0
msg_map_pt_linear: db ", maps linear ", 0
msg_launch:        db "INVEPT all-context; VMLAUNCH", 10, 0
msg_g_g:           db "guest: reads G: ", 0
msg_g_ro_read:     db "guest: reads RO: ", 0
msg_g_ro_write:    db "guest: writes ", 0
msg_g_ro_write2:   db " to RO", 10, 0
msg_g_ro_back:     db "guest: reads RO back: ", 0
msg_g_u:           db "guest: reads U: ", 0
msg_g_m:           db "guest: reads M: ", 0
msg_g_reads:       db "guest: reads ", 0
msg_g_vmcall:      db "guest: VMCALL", 10, 0
msg_violation:     db "exit 48 EPT violation, qualification ", 0
msg_gpa:           db "  guest-physical ", 0
msg_gla:           db ", guest-linear ", 0
msg_fix_ro:        db "RO made writable", 0
msg_fix_u:         db "U mapped to host-physical ", 0
msg_fix_pt:        db "guest page table mapped", 0
msg_fix_m:         db "M given R = 1", 0
msg_invept:        db "; INVEPT single-context; VMRESUME", 10, 0
msg_misconfig:     db "exit 49 EPT misconfiguration, qualification ", 0
msg_misconfig_gpa: db ", guest-physical ", 0
msg_done_guest:    db "VMCALL: EPT violations ", 0
msg_count_misconfig: db ", EPT misconfigurations ", 0
msg_no_ug:         db "unrestricted guest not offered", 10, 0
msg_launch_real:   db "unrestricted guest: real-mode VMLAUNCH at CS:IP ", 0
msg_launch_real_ip: db ":0x0", 10, 0
msg_real_exit:     db "real-mode guest: exit ", 0
msg_at:            db " at CS:IP ", 0
msg_real_cr0:      db "real-mode guest read CR0 = ", 0
msg_real_guest_cr0: db ", GUEST_CR0 = ", 0
name_hlt:          db " HLT", 0
name_vmcall:       db " VMCALL", 0
msg_vmxoff:        db "VMXOFF", 10, 0
msg_finished:      db "done", 10, 0

        IMAGE_END

section .bss
alignb 4096
vmcs1:          resb 4096
vmcs2:          resb 4096
invept_desc:    resq 2
ept_violations: resq 1
ept_misconfigs: resq 1
ept_cap:        resd 1
ctls2_allowed0: resd 1
ctls2_allowed1: resd 1
bss_end:
