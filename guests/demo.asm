; hvsim's default guest: a small preemptive multitasking kernel.
;
; A Multiboot kernel (a.out kludge, loaded at 1 MiB) that
;   1. starts in 32-bit protected mode, checks the loader's magic and the CPUID
;      bits it needs, builds 4-level page tables and enters 64-bit mode;
;   2. prints a few CPUID facts and MSR values and sets up SYSCALL/SYSRET;
;   3. runs three ring-3 tasks, A (Fibonacci numbers), B (primes) and C (a
;      CRC-32), each in its own address space: its own PML4, the kernel mapped
;      supervisor-only and global in all three, and a private page at the same
;      linear address 0x400000 backed by a different physical page per task.
;      The tasks print lines through SYSCALL (write, exit); the PIT's IRQ 0
;      preempts them, and every task switch is a MOV to CR3;
;   4. once every task has ended, prints a summary and halts with interrupts
;      off (hvsim's exit status 0).
; Everything goes to COM1. Which task prints which line when depends on where
; the timer ticks fall, which the model makes the same on every run; nothing
; printed depends on the TSC or on whether a hypervisor is underneath.
;
;   hvsim run guests/demo.bin --bare
;
; Memory: the image at 1 MiB, its .bss (page tables, stacks, the tasks'
; pages) right after it, all inside the first 2 MiB, which the kernel maps to
; itself with one global 2 MiB page. Every task sees:
;   0x000000-0x1fffff  the kernel (supervisor-only: a user access faults)
;   0x400000-0x400fff  its private page: line buffer and stack (no-execute)
;   0x401000-0x401fff  the tasks' code, shared and read-only (section utext)
bits 32
org 0x100000

%include "lib/pic8259.inc"
%include "lib/tss64.inc"

; The decimal digits of RAX, most significant first, each handed to %1 as an
; ASCII character in AL; RBX, RCX, RDX kept. Ends with RET.
%macro DECIMAL_DIGITS 1
        push rbx
        push rcx
        push rdx
        mov ebx, 10
        xor ecx, ecx
.div:   xor edx, edx
        div rbx
        push rdx
        inc ecx
        test rax, rax
        jnz .div
.out:   pop rax
        add al, '0'
        %1
        loop .out
        pop rdx
        pop rcx
        pop rbx
        ret
%endmacro

COM1        equ 0x3f8

; Multiboot 0.6.96: header magic and flags (3.1.1), the loader's magic (3.2).
MB_MAGIC    equ 0x1BADB002
MB_FLAGS    equ 1 << 16                 ; the address fields of the header are valid (3.1.3)
MB_LOADED   equ 0x2BADB002

; Selectors of the GDT below; STAR is laid out for them (5.8.8).
SEL_KCODE   equ 0x08
SEL_KDATA   equ 0x10
SEL_UDATA   equ 0x20 | 3
SEL_UCODE   equ 0x28 | 3
SEL_TSS     equ 0x30

IA32_PAT    equ 0x277
IA32_EFER   equ 0xc0000080
IA32_STAR   equ 0xc0000081
IA32_LSTAR  equ 0xc0000082
IA32_FMASK  equ 0xc0000084
EFER_SCE    equ 1 << 0                  ; SYSCALL enable (vol. 3A 2.2.1)
EFER_LME    equ 1 << 8                  ; IA-32e mode enable
EFER_NXE    equ 1 << 11                 ; execute-disable bit enable

CR0_PG      equ 1 << 31
CR4_PAE     equ 1 << 5
CR4_PGE     equ 1 << 7                  ; global pages (4.10.2.4)

; Paging-structure entry bits (vol. 3A 4.5, tables 4-15 to 4-20); XD is bit 63.
PG_P        equ 1 << 0
PG_RW       equ 1 << 1
PG_US       equ 1 << 2                  ; user-mode access allowed (4.6)
PG_PS       equ 1 << 7                  ; in a PDE: maps a 2 MiB page
PG_G        equ 1 << 8                  ; global: MOV to CR3 keeps its TLB entries
PG_TABLE    equ PG_P | PG_RW | PG_US    ; a table entry: the leaf decides the rights

; The tasks' address space.
USER_DATA   equ 0x400000                ; private page: line buffer at the bottom, stack at the top
USER_TEXT   equ 0x401000                ; shared code and strings
USER_END    equ 0x402000
LINE        equ USER_DATA

%define UADDR(label) ((label) - utext_start + USER_TEXT)

SYS_WRITE   equ 1                       ; RDI = buffer, RSI = length; RAX = bytes written or -1
SYS_EXIT    equ 2                       ; RDI = status

; The 8254's channel 0 count: 239 / 1.193182 MHz = 200.3 us, i.e. a tick every
; 200 300 instructions of the model's guest time (1 instruction per ns).
PIT_DIVISOR equ 239

; Each task owns 6 zeroed pages of .bss: its 4 paging structures, its private
; page and its kernel stack.
NTASKS      equ 3
TM_PML4     equ 0x0000
TM_PDPT     equ 0x1000
TM_PD       equ 0x2000
TM_PT       equ 0x3000
TM_DATA     equ 0x4000
TM_KSTACK   equ 0x5000
TASK_MEM    equ 0x6000

; What the kernel keeps of a task.
struc task
.rsp:       resq 1                      ; kernel RSP while it is not running: its saved frame
.cr3:       resq 1                      ; physical address of its PML4
.rsp0:      resq 1                      ; top of its kernel stack: TSS.RSP0 while it runs
.entry:     resq 1
.ticks:     resq 1                      ; timer ticks that interrupted it
.lines:     resq 1                      ; lines it wrote
.alive:     resq 1
.name:      resq 1                      ; 'A', 'B' or 'C'
endstruc

; PUTS "text", ...: prints a string constant on COM1 (64-bit code).
%macro PUTS 1+
[section .rodata]
%%s:    db %1, 0
__SECT__
        lea rsi, [rel %%s]
        call puts
%endmacro

%macro NEWLINE 0
        mov al, 10
        call putc
%endmacro

; The general-purpose registers an interrupted task keeps on its kernel stack,
; below the frame the processor pushed (SS, RSP, RFLAGS, CS, RIP).
%macro PUSH_GPRS 0
        push rax
        push rbx
        push rcx
        push rdx
        push rsi
        push rdi
        push rbp
        push r8
        push r9
        push r10
        push r11
        push r12
        push r13
        push r14
        push r15
%endmacro
%macro POP_GPRS 0
        pop r15
        pop r14
        pop r13
        pop r12
        pop r11
        pop r10
        pop r9
        pop r8
        pop rbp
        pop rdi
        pop rsi
        pop rdx
        pop rcx
        pop rbx
        pop rax
%endmacro
SAVED_FRAME equ (15 + 5) * 8

section .text
section .rodata follows=.text
section .data follows=.rodata align=16
section utext follows=.data align=4096
section .text

header:
        dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
        dd header, 0x100000, utext_end, bss_end, start32

; ---------------------------------------------------------------------------
; 32-bit protected mode, as the Multiboot loader leaves it (Multiboot 3.2):
; flat segments, paging off, interrupts off, EAX = the magic.
start32:
        mov esp, boot_stack_top
        cmp eax, MB_LOADED
        jne .no_multiboot
        mov esi, msg_pm
        call puts32

        ; What long mode needs (vol. 2A CPUID; vol. 3A 4.1.4): CPUID.80000001H:EDX
        ; LM (29) and NX (20); CPUID.01H:EDX PAE (6) and PGE (13). (SYSCALL,
        ; bit 11, Intel reports only to 64-bit code: start64 checks it.)
        mov eax, 0x80000000
        cpuid
        cmp eax, 0x80000001
        jb .no_long_mode
        mov eax, 0x80000001
        cpuid
        and edx, (1 << 29) | (1 << 20)
        cmp edx, (1 << 29) | (1 << 20)
        jne .no_long_mode
        mov eax, 1
        cpuid
        and edx, (1 << 6) | (1 << 13)
        cmp edx, (1 << 6) | (1 << 13)
        jne .no_long_mode

        ; The kernel's own address space (4.5): PML4[0] -> PDPT[0] -> PD[0], a
        ; 2 MiB page at physical 0, supervisor-only and global. (.bss is zeroed
        ; by the loader, so the upper halves of the entries are 0.)
        mov dword [kpml4], kpdpt + PG_P + PG_RW
        mov dword [kpdpt], kpd + PG_P + PG_RW
        mov dword [kpd], PG_P | PG_RW | PG_PS | PG_G

        ; Enter IA-32e mode (10.8.5): CR4.PAE (and PGE), CR3, EFER.LME (and
        ; NXE), then CR0.PG; EFER.LMA turns on with paging. A far jump to a
        ; 64-bit code segment (CS.L = 1, 5.2.1) leaves compatibility mode.
        mov eax, cr4
        or eax, CR4_PAE | CR4_PGE
        mov cr4, eax
        mov eax, kpml4
        mov cr3, eax
        mov ecx, IA32_EFER
        rdmsr
        or eax, EFER_LME | EFER_NXE
        wrmsr
        mov eax, cr0
        or eax, CR0_PG
        mov cr0, eax
        lgdt [gdt_ptr]
        jmp SEL_KCODE:start64

.no_multiboot:
        mov esi, msg_no_mb
        jmp .stop
.no_long_mode:
        mov esi, msg_no_lm
.stop:  call puts32
        cli
        hlt

%include "lib/serial32.inc"

; ---------------------------------------------------------------------------
bits 64
start64:
        mov ax, SEL_KDATA
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov rsp, boot_stack_top
        PUTS "hvsim demo: 64-bit mode, 4-level paging: CR0 "
        mov rax, cr0
        call puthex
        PUTS ", CR4 "
        mov rax, cr4
        call puthex
        NEWLINE

; --- CPUID (vol. 2A, CPUID) -------------------------------------------------
        ; Leaf 0: the highest basic leaf in EAX, the vendor in EBX, EDX, ECX.
        xor eax, eax
        cpuid
        mov [rel vendor], ebx
        mov [rel vendor + 4], edx
        mov [rel vendor + 8], ecx
        mov r12d, eax
        PUTS "cpuid: "
        lea rsi, [rel vendor]
        call puts
        PUTS ", highest basic leaf "
        mov eax, r12d
        call puthex
        mov eax, 0x80000000              ; the highest extended leaf
        cpuid
        mov r12d, eax
        PUTS ", highest extended leaf "
        mov eax, r12d
        call puthex
        NEWLINE

        ; Leaf 1 EAX: stepping 3:0, model 7:4, family 11:8, extended model
        ; 19:16, extended family 27:20. DisplayFamily adds the extended family
        ; when the family is 0FH; DisplayModel prepends the extended model
        ; when the family is 06H or 0FH.
        mov eax, 1
        cpuid
        mov r12d, eax
        mov r13d, eax
        shr r13d, 8
        and r13d, 0xf                    ; r13 = family
        mov r14d, eax
        shr r14d, 4
        and r14d, 0xf                    ; r14 = model
        cmp r13d, 0xf
        jne .model
        mov eax, r12d
        shr eax, 20
        movzx eax, al
        add r13d, eax
.model: cmp r13d, 6
        je .extmodel
        cmp r13d, 0xf
        jb .fms
.extmodel:
        mov eax, r12d
        shr eax, 12
        and eax, 0xf0
        or r14d, eax
.fms:   PUTS "cpuid: family "
        mov eax, r13d
        call puthex
        PUTS " model "
        mov eax, r14d
        call puthex
        PUTS " stepping "
        mov eax, r12d
        and eax, 0xf
        call puthex

        ; Leaves 80000002H-80000004H: the brand string, 48 bytes.
        lea rdi, [rel brand]
        mov r12d, 0x80000002
.brand: mov eax, r12d
        cpuid
        mov [rdi], eax
        mov [rdi + 4], ebx
        mov [rdi + 8], ecx
        mov [rdi + 12], edx
        add rdi, 16
        inc r12d
        cmp r12d, 0x80000004
        jbe .brand
        PUTS ', "'
        lea rsi, [rel brand]
        call puts
        PUTS '"', 10

        ; Leaf 80000008H: MAXPHYADDR in EAX[7:0], linear-address width in EAX[15:8].
        mov eax, 0x80000008
        cpuid
        mov r12d, eax
        PUTS "cpuid: "
        movzx eax, r12b
        call putdec
        PUTS " physical and "
        movzx eax, r12w
        shr eax, 8
        call putdec
        PUTS " linear address bits", 10

; --- MSRs (vol. 4 lists them; vol. 2B RDMSR, WRMSR) -------------------------
        ; IA32_PAT: its power-up value, WB WT UC- UC twice (13.12.4, table 13-12).
        mov ecx, IA32_PAT
        call rdmsr64
        mov r12, rax
        PUTS "msr: IA32_PAT "
        mov rax, r12
        call puthex
        NEWLINE

        ; SYSCALL and SYSRET (5.8.8), which CPUID.80000001H:EDX[11] announces
        ; in 64-bit mode: STAR[47:32] = 08H, SYSCALL loads CS 08H and
        ; SS 10H; STAR[63:48] = 18H, SYSRETQ loads CS 18H + 16 = 28H | 3 and
        ; SS 18H + 8 = 20H | 3. LSTAR is the entry point, FMASK the RFLAGS bits
        ; SYSCALL clears: TF, IF, DF (so a system call runs with interrupts off).
        mov eax, 0x80000001
        cpuid
        bt edx, 11
        jnc no_syscall
        mov ecx, IA32_STAR
        xor eax, eax
        mov edx, (0x18 << 16) | SEL_KCODE
        wrmsr
        mov ecx, IA32_LSTAR
        mov rax, syscall_entry
        mov rdx, rax
        shr rdx, 32
        wrmsr
        mov ecx, IA32_FMASK
        mov eax, 0x700
        xor edx, edx
        wrmsr
        mov ecx, IA32_EFER
        rdmsr
        or eax, EFER_SCE
        wrmsr
        PUTS "msr: IA32_STAR "
        mov ecx, IA32_STAR
        call rdmsr64
        call puthex
        PUTS ", IA32_LSTAR "
        mov ecx, IA32_LSTAR
        call rdmsr64
        call puthex
        PUTS ", IA32_FMASK "
        mov ecx, IA32_FMASK
        call rdmsr64
        call puthex
        NEWLINE
        ; IA32_EFER now: SCE (0), LME (8), LMA (10), NXE (11).
        PUTS "msr: IA32_EFER "
        mov ecx, IA32_EFER
        call rdmsr64
        call puthex
        NEWLINE

; --- TSS, IDT, tasks ---------------------------------------------------------
        ; The 64-bit TSS (8.7) holds RSP0, the stack the processor switches to
        ; when an interrupt or exception arrives in ring 3 (6.14.4). Its
        ; descriptor (8.2.3): 16 bytes, base = tss, limit 67H, type 9.
        mov rax, tss
        FILL_TSS_DESCRIPTOR tss_end - tss - 1
        mov ax, SEL_TSS
        ltr ax

        ; Interrupt gates (6.14.1): #PF and IRQ 0, DPL 0 (ring 3 cannot INT n them).
        mov eax, 14
        mov rbx, page_fault
        call set_gate
        mov eax, 0x20
        mov rbx, irq0
        call set_gate
        lidt [rel idt_ptr]

        lea rbx, [rel tasks]
        mov rdi, task_mem
.task:  call make_task
        PUTS "kernel: task "
        mov al, [rbx + task.name]
        call putc
        PUTS ": PML4 at "
        mov rax, [rbx + task.cr3]
        call puthex
        PUTS ", its page 0x400000 is at physical "
        lea rax, [rdi + TM_DATA]
        call puthex
        NEWLINE
        add rbx, task_size
        add rdi, TASK_MEM
        cmp rbx, tasks_end
        jb .task

        PIC_INIT_IRQ0_ONLY               ; lib/pic8259.inc
        ; The 8254 (8254 datasheet): channel 0, LSB then MSB, mode 2 (rate
        ; generator), binary: one IRQ 0 edge every PIT_DIVISOR input clocks.
        mov al, 0x34
        out 0x43, al
        mov ax, PIT_DIVISOR
        out 0x40, al
        mov al, ah
        out 0x40, al

        ; Wait for the first tick, so that task A starts with a whole time
        ; slice: STI's interrupt shadow lets HLT begin before IRQ 0 can be
        ; taken (6.8.3), and the interrupt ends the HLT.
        sti
        hlt
        cli

        ; Run task A: its kernel stack holds a frame as if an interrupt had
        ; stopped it at its first instruction; the IRETQ sets IF.
        lea rbx, [rel tasks]
        jmp switch_to

no_syscall:
        PUTS "hvsim demo: this processor lacks SYSCALL", 10
        cli
        hlt

; make_task: builds task RBX's address space in the 6 zeroed pages at RDI
; (physical = linear in the kernel's mapping) and its first frame.
make_task:
        ; 4-level paging (4.5): PML4[0] -> PDPT[0] -> PD; U/S = 1 in the upper
        ; levels so that the leaves decide who may access (4.6).
        lea rax, [rdi + TM_PDPT + PG_TABLE]
        mov [rdi + TM_PML4], rax
        lea rax, [rdi + TM_PD + PG_TABLE]
        mov [rdi + TM_PDPT], rax
        ; PD[0]: the kernel, the same 2 MiB page as in the kernel's own tables:
        ; supervisor-only (U/S = 0) and global, so its TLB entries survive the
        ; MOV to CR3 of each task switch (4.10.2.4, 4.10.4.1).
        mov qword [rdi + TM_PD], PG_P | PG_RW | PG_PS | PG_G
        ; PD[2] covers 0x400000-0x5fffff with a page table of 4 KiB pages.
        lea rax, [rdi + TM_PT + PG_TABLE]
        mov [rdi + TM_PD + 2 * 8], rax
        ; PT[0], 0x400000: the private page, user read/write, execute-disable
        ; (XD, bit 63, with EFER.NXE: 4.6).
        lea rax, [rdi + TM_DATA + (PG_P | PG_RW | PG_US)]
        bts rax, 63
        mov [rdi + TM_PT], rax
        ; PT[1], 0x401000: the code of every task, one physical page, read-only.
        mov rax, utext_start + (PG_P | PG_US)
        mov [rdi + TM_PT + 8], rax
        mov [rbx + task.cr3], rdi

        ; The frame IRETQ pops (6.14.2): SS, RSP, RFLAGS (IF = 1), CS, RIP, in
        ; ring 3; below it the task's 15 registers, 0 (the page is zeroed).
        lea rax, [rdi + TM_KSTACK + 0x1000]
        mov [rbx + task.rsp0], rax
        mov qword [rax - 8], SEL_UDATA
        mov qword [rax - 16], USER_DATA + 0x1000
        mov qword [rax - 24], 0x202
        mov qword [rax - 32], SEL_UCODE
        mov rcx, [rbx + task.entry]
        mov [rax - 40], rcx
        sub rax, SAVED_FRAME
        mov [rbx + task.rsp], rax
        mov qword [rbx + task.alive], 1
        ret

; --- Scheduling ----------------------------------------------------------------
; IRQ 0 (vector 20H). The kernel keeps interrupts off but for the HLT that
; waits for the first tick, so any other tick interrupts ring 3: the processor
; switched to TSS.RSP0, the current task's kernel stack, and pushed SS, RSP,
; RFLAGS, CS, RIP (6.14.2, 6.14.4).
irq0:
        test qword [rsp + 8], 3          ; the interrupted CS: from ring 3?
        jnz .task
        push rax                         ; the first tick, ending the kernel's HLT
        mov al, 0x20
        out 0x20, al                     ; OCW2: non-specific EOI to the master
        inc qword [rel ticks]
        pop rax
        iretq
.task:  PUSH_GPRS
        mov al, 0x20
        out 0x20, al
        inc qword [rel ticks]
        mov rbx, [rel current]
        inc qword [rbx + task.ticks]
        mov [rbx + task.rsp], rsp
        call next_task                   ; round robin
        cmp rbx, [rel current]
        je resume                        ; the only task left goes on

; switch_to: runs task RBX from its saved frame, in its address space.
switch_to:
        inc qword [rel switches]
        mov [rel current], rbx
        mov rax, [rbx + task.cr3]
        mov cr3, rax                     ; drops the TLB's non-global entries (4.10.4.1)
        mov rax, [rbx + task.rsp0]
        mov [rel tss + 4], rax           ; TSS.RSP0: its interrupts land on its kernel stack
resume: mov rsp, [rbx + task.rsp]
        POP_GPRS
        iretq

; next_task: RBX = the first live task after the current one, round robin
; (the current one last); 0 when none is left.
next_task:
        mov rbx, [rel current]
        mov ecx, NTASKS
.next:  add rbx, task_size
        lea rax, [rel tasks_end]
        cmp rbx, rax
        jb .check
        lea rbx, [rel tasks]
.check: cmp qword [rbx + task.alive], 0
        jne .found
        loop .next
        xor ebx, ebx
.found: ret

; --- System calls ------------------------------------------------------------
; SYSCALL (vol. 2B; 5.8.8): CPL 0, CS and SS from STAR, RIP from LSTAR,
; RCX = the user RIP, R11 = the user RFLAGS, RFLAGS &= ~FMASK (IF = 0: no tick
; splits a line), RSP still the user's. The kernel keeps every register but
; RAX, RCX and R11.
syscall_entry:
        mov [rel user_rsp], rsp
        mov rsp, [rel tss + 4]           ; the task's kernel stack
        push qword [rel user_rsp]
        push rcx
        push r11
        cmp rax, SYS_WRITE
        je sys_write
        cmp rax, SYS_EXIT
        je sys_exit
        mov rax, -1
sysret_to_user:
        pop r11
        pop rcx
        pop rsp
        o64 sysret                       ; RIP = RCX, RFLAGS = R11, CPL 3, CS 2BH, SS 23H

; write(RDI = buffer, RSI = length): the bytes must lie in the task's pages
; at 0x400000-0x401fff. The kernel reads them through the task's own mapping.
sys_write:
        mov rax, rdi
        add rax, rsi
        jc .bad
        cmp rdi, USER_DATA
        jb .bad
        cmp rax, USER_END
        ja .bad
        push rbx
        push rsi
        push rdi
        mov rbx, [rel current]
        mov rcx, rsi
        mov rsi, rdi
        jrcxz .done
.byte:  mov al, [rsi]
        inc rsi
        call putc
        cmp al, 10
        jne .more
        inc qword [rel lines]
        inc qword [rbx + task.lines]
.more:  dec rcx
        jnz .byte
.done:  pop rdi
        pop rsi
        pop rbx
        mov rax, rsi
        jmp sysret_to_user
.bad:   mov rax, -1
        jmp sysret_to_user

; exit(RDI = status): the task ends; another one runs, or the kernel is done.
sys_exit:
        mov rbx, [rel current]
        PUTS "kernel: task "
        mov al, [rbx + task.name]
        call putc
        PUTS " exited with status "
        mov rax, rdi
        call putdec
        jmp task_over

; #PF (vector 14, 6.15): an error code on the stack (6.13), the linear
; address in CR2 (4.7). A task touching the kernel's supervisor-only page
; comes here (4.6); the kernel ends it.
page_fault:
        test qword [rsp + 16], 3         ; the saved CS: from ring 3?
        jz .kernel
        mov rbx, [rel current]
        mov r12, [rsp]
        PUTS "kernel: task "
        mov al, [rbx + task.name]
        call putc
        PUTS ": #PF at "
        mov rax, cr2
        call puthex
        PUTS ", error code "
        mov rax, r12
        call puthex
        ; Error code bits (4.7, figure 4-12): P, W/R, U/S.
        lea rsi, [rel msg_not_present]
        test r12b, 1
        jz .p
        lea rsi, [rel msg_protection]
.p:     call puts
        lea rsi, [rel msg_read]
        test r12b, 2
        jz .w
        lea rsi, [rel msg_write]
.w:     call puts
        lea rsi, [rel msg_supervisor]
        test r12b, 4
        jz .u
        lea rsi, [rel msg_user]
.u:     call puts
        PUTS "): killed"
        jmp task_over
.kernel:
        PUTS "kernel: #PF in the kernel at "
        mov rax, cr2
        call puthex
        NEWLINE
        cli
        hlt

; task_over: ends the current task (RBX), whose exit line is under way.
task_over:
        mov qword [rbx + task.alive], 0
        PUTS ", ran "
        mov rax, [rbx + task.ticks]
        call putdec
        PUTS " ticks, wrote "
        mov rax, [rbx + task.lines]
        call putdec
        PUTS " lines", 10
        call next_task
        test rbx, rbx
        jnz switch_to

        ; Every task has ended.
        PUTS "kernel: all tasks done: "
        mov rax, [rel ticks]
        call putdec
        PUTS " timer ticks, "
        mov rax, [rel switches]
        call putdec
        PUTS " task switches (MOV to CR3), "
        mov rax, [rel lines]
        call putdec
        PUTS " lines written", 10
        cli
        hlt                              ; interrupts off: the machine stops here

; rdmsr64: RAX = MSR ECX.
rdmsr64:
        rdmsr
        shl rdx, 32
        or rax, rdx
        ret

; putdec: prints RAX in decimal.
putdec: DECIMAL_DIGITS {call putc}

%include "lib/idt64.inc"
%include "lib/serial64.inc"

; ---------------------------------------------------------------------------
section .data
msg_pm:     db "hvsim demo: started by a Multiboot loader, in 32-bit protected mode", 10, 0
msg_no_mb:  db "hvsim demo: not started by a Multiboot loader", 10, 0
msg_no_lm:  db "hvsim demo: this processor lacks long mode, NX, PAE or PGE", 10, 0
msg_not_present: db " (not present, ", 0
msg_protection:  db " (protection, ", 0
msg_read:        db "read, ", 0
msg_write:       db "write, ", 0
msg_supervisor:  db "supervisor mode", 0
msg_user:        db "user mode", 0

%include "lib/gdt-user64.inc"
idt_ptr:
        dw 256 * 16 - 1
        dq idt

; The 64-bit TSS (8.7, figure 8-11): only RSP0 (offset 4) is used.
align 16
tss:    times 0x66 db 0
        dw tss_end - tss                 ; I/O map base beyond the limit: no I/O bitmap
tss_end:

align 8
tasks:
        istruc task
        at task.entry, dq UADDR(task_a)
        at task.name,  dq 'A'
        iend
        istruc task
        at task.entry, dq UADDR(task_b)
        at task.name,  dq 'B'
        iend
        istruc task
        at task.entry, dq UADDR(task_c)
        at task.name,  dq 'C'
        iend
tasks_end:
current:    dq 0                         ; the running task
user_rsp:   dq 0                         ; the user RSP during a system call
ticks:      dq 0
switches:   dq 0
lines:      dq 0
vendor:     times 13 db 0
brand:      times 49 db 0

; ---------------------------------------------------------------------------
; Ring 3: the tasks' code, one page of the image mapped read-only at
; USER_TEXT in every task's address space. It is assembled where it lies in
; the image (1 MiB + x) and runs 0x300000 higher, so it addresses only
; RIP-relative or absolute constants; UADDR gives a label's user address.
; A task builds a line in its private page at LINE (RDI is the cursor) and
; writes it with one system call.
section utext
utext_start:

; A: Fibonacci numbers, the slow (doubly recursive) way.
FIB_FIRST   equ 16
FIB_LAST    equ 26
FIB_STEP    equ 2
task_a:
        mov r12d, FIB_FIRST
.next:  mov ecx, r12d
        call fib
        mov r13, rax
        mov rdi, LINE
        lea rsi, [rel s_fib]
        call u_str
        mov eax, r12d
        call u_dec
        lea rsi, [rel s_is]
        call u_str
        mov rax, r13
        call u_dec
        call u_line
        add r12d, FIB_STEP
        cmp r12d, FIB_LAST
        jbe .next
        xor edi, edi
        jmp u_exit

; fib: RAX = fib(ECX) = fib(ECX - 1) + fib(ECX - 2), fib(0) = 0, fib(1) = 1.
fib:    cmp ecx, 2
        jb .small
        push rbx
        push rcx
        dec ecx
        call fib
        mov rbx, rax
        dec ecx
        call fib
        add rax, rbx
        pop rcx
        pop rbx
        ret
.small: mov eax, ecx
        ret

; B: the primes by trial division; every PRIME_STEP-th one is reported.
PRIME_STEP  equ 400
PRIME_LAST  equ 2400
task_b:
        xor r12d, r12d                   ; primes found
        mov r13d, 1                      ; the candidate
        mov r14d, PRIME_STEP             ; primes until the next report
.next:  inc r13d
        mov ecx, 2                       ; the divisor
.try:   mov eax, ecx
        mul ecx
        cmp eax, r13d
        ja .prime                        ; divisor² > candidate: no factor left
        mov eax, r13d
        xor edx, edx
        div ecx
        test edx, edx
        jz .next                         ; a factor: not a prime
        inc ecx
        jmp .try
.prime: inc r12d
        dec r14d
        jnz .next
        mov r14d, PRIME_STEP
        mov rdi, LINE
        lea rsi, [rel s_prime]
        call u_str
        mov eax, r12d
        call u_dec
        lea rsi, [rel s_prime_is]
        call u_str
        mov eax, r13d
        call u_dec
        call u_line
        cmp r12d, PRIME_LAST
        jb .next
        xor edi, edi
        jmp u_exit

; C: CRC-32 (the polynomial of IEEE 802.3 and zlib, reflected: 0EDB88320H),
; bit by bit. First the standard check value, then a running CRC over the
; bytes 00 01 .. ff 00 01 .., reported every CRC_CHUNK bytes. Then C tries to
; read the kernel, which its page tables map supervisor-only.
CRC_CHUNK   equ 8192
CRC_LAST    equ 6 * CRC_CHUNK
task_c:
        mov eax, -1
        lea rsi, [rel s_check]
        mov ecx, 9
.check: mov bl, [rsi]
        inc rsi
        call crc_byte
        loop .check
        not eax
        mov r13d, eax
        mov rdi, LINE
        lea rsi, [rel s_crc_check]
        call u_str
        mov eax, r13d
        call u_hex8
        call u_line

        xor r12d, r12d                   ; bytes so far
        mov r13d, -1                     ; the running CRC register
.chunk: mov ecx, CRC_CHUNK
        mov eax, r13d
.byte:  mov bl, r12b
        call crc_byte
        inc r12d
        loop .byte
        mov r13d, eax
        mov rdi, LINE
        lea rsi, [rel s_crc]
        call u_str
        mov eax, r12d
        call u_dec
        lea rsi, [rel s_crc_is]
        call u_str
        mov eax, r13d
        not eax
        call u_hex8
        call u_line
        cmp r12d, CRC_LAST
        jb .chunk

        mov rdi, LINE
        lea rsi, [rel s_peek]
        call u_str
        call u_line
        mov al, [abs 0x100000]           ; #PF: a user read of a supervisor page
        mov edi, 1                       ; (not reached: the kernel ends C)
        jmp u_exit

; crc_byte: EAX = the CRC register after the byte BL.
crc_byte:
        push rcx
        xor al, bl
        mov ecx, 8
.bit:   shr eax, 1
        jnc .zero
        xor eax, 0xEDB88320
.zero:  loop .bit
        pop rcx
        ret

; The tasks' library: append to the line at RDI, write it, exit. (Ring 3
; cannot call serial64.inc's routines: they lie in the kernel's supervisor-only
; page, and print with IN and OUT, which IOPL 0 keeps from ring 3.)
; u_str: the zero-terminated string at RSI.
u_str:  lodsb
        test al, al
        jz .done
        stosb
        jmp u_str
.done:  ret

; u_dec: RAX in decimal.
u_dec:  DECIMAL_DIGITS stosb

; u_hex8: EAX as 8 hex digits.
u_hex8: push rcx
        mov ecx, 8
.next:  rol eax, 4
        push rax
        and al, 0xf
        add al, '0'
        cmp al, '9'
        jbe .put
        add al, 'a' - '9' - 1
.put:   stosb
        pop rax
        loop .next
        pop rcx
        ret

; u_line: ends the line, writes it (SYSCALL clobbers RCX and R11), and starts
; the next one at LINE.
u_line: mov al, 10
        stosb
        mov rsi, rdi
        mov edi, LINE
        sub rsi, rdi                     ; the length
        mov eax, SYS_WRITE
        syscall
        mov edi, LINE
        ret

; u_exit: exit(EDI).
u_exit: mov eax, SYS_EXIT
        syscall
        ud2                              ; exit does not return

s_fib:      db "A: fib(", 0
s_is:       db ") = ", 0
s_prime:    db "B: prime number ", 0
s_prime_is: db " is ", 0
s_check:    db "123456789"
s_crc_check: db 'C: crc32("123456789") = ', 0
s_crc:      db "C: crc32 of the first ", 0
s_crc_is:   db " bytes of 00 01 .. ff 00 01 .. = ", 0
s_peek:     db "C: now reading the kernel at 0x100000", 0
utext_end:

; ---------------------------------------------------------------------------

section .bss align=4096
kpml4:      resb 4096
kpdpt:      resb 4096
kpd:        resb 4096
idt:        resb 4096
            resb 4096
boot_stack_top:
task_mem:   resb NTASKS * TASK_MEM
bss_end:
