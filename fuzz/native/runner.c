/*
 * hvsim native oracle: run single x86-64 instructions on the host CPU.
 *
 * Reads fixed-size binary cases from stdin, runs each one natively and writes
 * one fixed-size binary result per case to stdout, until EOF.
 *
 * Case (input), CASE_SIZE bytes, little-endian:
 *   0    code[16]      instruction bytes (first codeLen used)
 *   16   u32 codeLen   1..15
 *   20   u32 reserved  0
 *   24   u64 gpr[16]   RAX RCX RDX RBX RSP RBP RSI RDI R8..R15
 *   152  u64 rflags    loaded as-is with POPFQ
 *   160  xmm[16][16]   XMM0..XMM15
 *   416  mem[DATA_SIZE] initial content of the data window
 *
 * Result (output), RESULT_SIZE bytes, little-endian:
 *   0    u32 signal    signal that ended the case (0xFFFFFFFF: impossible)
 *   4    u32 si_code
 *   8    u64 rip       from the ucontext
 *   16   u64 gpr[16]   same order as input
 *   144  u64 rflags    REG_EFL from the ucontext
 *   152  xmm[16][16]   from the ucontext's fpregs
 *   408  mem[DATA_SIZE] data window after the run
 *
 * How a case runs: the code page (CODE_BASE) is filled with 0xF4 (HLT) and the
 * instruction is copied to offset 0. The assembly stub hv_enter loads the
 * extended state, RFLAGS and all GPRs and jumps to CODE_BASE. Every case ends
 * in a signal (normally #GP on the HLT after the instruction -> SIGSEGV). The
 * handler copies the ucontext into the result and siglongjmp()s back.
 *
 * Safety nets:
 *  - ITIMER_REAL per case (CASE_TIMEOUT_USEC) -> SIGALRM for endless loops.
 *  - A seccomp filter makes any system call issued from the code page raise
 *    SIGSYS instead of running (so `syscall` / `int 0x80` can't hurt us).
 *  - The handler restores the host FS base (glibc TLS) before touching libc,
 *    in case the instruction loaded FS.
 *  - XRSTOR from an all-init XSAVE image before every case, so x87/SSE/AVX/
 *    AVX-512 state never leaks between cases (fallback: FNINIT).
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/ucontext.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef ARCH_GET_FS
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003
#endif

#define CODE_BASE 0x40000000UL
#define CODE_SIZE 4096UL
#define DATA_BASE 0x10000000UL
#define DATA_SIZE 8192UL

/* Safety net for cases that never fault (e.g. `jmp $`). */
#define CASE_TIMEOUT_USEC 200000

#define C_CODE 0
#define C_CODELEN 16
#define C_RESERVED 20
#define C_GPR 24
#define C_RFLAGS 152
#define C_XMM 160
#define C_MEM 416
#define CASE_SIZE (C_MEM + DATA_SIZE)

#define R_SIGNAL 0
#define R_SICODE 4
#define R_RIP 8
#define R_GPR 16
#define R_RFLAGS 144
#define R_XMM 152
#define R_MEM 408
#define RESULT_SIZE (R_MEM + DATA_SIZE)

#define HV_GLOBAL __attribute__((used, visibility("hidden")))

/* Storage shared with the assembly stub (referenced RIP-relative). */
HV_GLOBAL uint64_t hv_in_gpr[16];
HV_GLOBAL uint64_t hv_in_rflags;
HV_GLOBAL uint8_t hv_in_xmm[256] __attribute__((aligned(16)));
HV_GLOBAL uint64_t hv_code_target = CODE_BASE;
HV_GLOBAL uint32_t hv_mxcsr_init = 0x1F80;
HV_GLOBAL uint64_t hv_host_save[8];
HV_GLOBAL uint8_t hv_use_xrstor;
/* All-init XSAVE image (standard form): XSTATE_BV = 0, MXCSR = 0x1F80. */
HV_GLOBAL uint8_t hv_xinit[4096] __attribute__((aligned(64)));

void hv_enter(void);

/*
 * hv_enter: never returns; the case always ends in a signal.
 * Saves host callee-saved registers and RSP (informational only: the way back
 * is siglongjmp, which restores them from the sigjmp_buf), resets extended
 * state, loads XMM0-15, then RFLAGS via POPFQ on the host stack, then the 16
 * GPRs with MOV (flags untouched), RSP last, and jumps through a memory slot.
 */
__asm__(
    ".text\n"
    ".intel_syntax noprefix\n"
    ".globl hv_enter\n"
    ".hidden hv_enter\n"
    ".type hv_enter, @function\n"
    "hv_enter:\n"
    "  mov [rip + hv_host_save + 0], rbx\n"
    "  mov [rip + hv_host_save + 8], rbp\n"
    "  mov [rip + hv_host_save + 16], r12\n"
    "  mov [rip + hv_host_save + 24], r13\n"
    "  mov [rip + hv_host_save + 32], r14\n"
    "  mov [rip + hv_host_save + 40], r15\n"
    "  mov [rip + hv_host_save + 48], rsp\n"
    "  cmp byte ptr [rip + hv_use_xrstor], 0\n"
    "  je 1f\n"
    /* RFBM = x87|SSE|AVX|...|AVX-512, excluding PKRU (9) and AMX (17, 18). */
    "  mov eax, 0xFFF9FDFF\n"
    "  xor edx, edx\n"
    "  xrstor [rip + hv_xinit]\n"
    "  jmp 2f\n"
    "1:\n"
    "  fninit\n"
    "2:\n"
    "  ldmxcsr [rip + hv_mxcsr_init]\n"
    "  movdqu xmm0,  [rip + hv_in_xmm + 0]\n"
    "  movdqu xmm1,  [rip + hv_in_xmm + 16]\n"
    "  movdqu xmm2,  [rip + hv_in_xmm + 32]\n"
    "  movdqu xmm3,  [rip + hv_in_xmm + 48]\n"
    "  movdqu xmm4,  [rip + hv_in_xmm + 64]\n"
    "  movdqu xmm5,  [rip + hv_in_xmm + 80]\n"
    "  movdqu xmm6,  [rip + hv_in_xmm + 96]\n"
    "  movdqu xmm7,  [rip + hv_in_xmm + 112]\n"
    "  movdqu xmm8,  [rip + hv_in_xmm + 128]\n"
    "  movdqu xmm9,  [rip + hv_in_xmm + 144]\n"
    "  movdqu xmm10, [rip + hv_in_xmm + 160]\n"
    "  movdqu xmm11, [rip + hv_in_xmm + 176]\n"
    "  movdqu xmm12, [rip + hv_in_xmm + 192]\n"
    "  movdqu xmm13, [rip + hv_in_xmm + 208]\n"
    "  movdqu xmm14, [rip + hv_in_xmm + 224]\n"
    "  movdqu xmm15, [rip + hv_in_xmm + 240]\n"
    "  push qword ptr [rip + hv_in_rflags]\n"
    "  popfq\n"
    "  mov rax, [rip + hv_in_gpr + 0]\n"
    "  mov rcx, [rip + hv_in_gpr + 8]\n"
    "  mov rdx, [rip + hv_in_gpr + 16]\n"
    "  mov rbx, [rip + hv_in_gpr + 24]\n"
    "  mov rbp, [rip + hv_in_gpr + 40]\n"
    "  mov rsi, [rip + hv_in_gpr + 48]\n"
    "  mov rdi, [rip + hv_in_gpr + 56]\n"
    "  mov r8,  [rip + hv_in_gpr + 64]\n"
    "  mov r9,  [rip + hv_in_gpr + 72]\n"
    "  mov r10, [rip + hv_in_gpr + 80]\n"
    "  mov r11, [rip + hv_in_gpr + 88]\n"
    "  mov r12, [rip + hv_in_gpr + 96]\n"
    "  mov r13, [rip + hv_in_gpr + 104]\n"
    "  mov r14, [rip + hv_in_gpr + 112]\n"
    "  mov r15, [rip + hv_in_gpr + 120]\n"
    "  mov rsp, [rip + hv_in_gpr + 32]\n"
    "  jmp qword ptr [rip + hv_code_target]\n"
    ".size hv_enter, . - hv_enter\n"
    ".att_syntax prefix\n");

static sigjmp_buf g_jb;
static volatile sig_atomic_t g_in_guest;
static uint64_t g_host_fs;
static uint8_t g_case[CASE_SIZE];
static uint8_t g_out[RESULT_SIZE];
static uint8_t g_altstack[256 * 1024] __attribute__((aligned(64)));

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static void die(const char *msg) {
  fprintf(stderr, "hvsim-native runner: %s (errno %d: %s)\n", msg, errno, strerror(errno));
  exit(2);
}

/* Async-signal-safe message + exit, for signals that hit host code. */
static void fatal_host_signal(int sig, uint64_t rip) {
  char buf[128];
  const char *hex = "0123456789abcdef";
  int n = 0;
  const char *pre = "hvsim-native runner: signal ";
  for (const char *s = pre; *s; s++) buf[n++] = *s;
  if (sig >= 10) buf[n++] = (char)('0' + sig / 10);
  buf[n++] = (char)('0' + sig % 10);
  const char *mid = " in host code at rip=0x";
  for (const char *s = mid; *s; s++) buf[n++] = *s;
  for (int i = 60; i >= 0; i -= 4) buf[n++] = hex[(rip >> i) & 15];
  buf[n++] = '\n';
  ssize_t ignored = write(2, buf, (size_t)n);
  (void)ignored;
  _exit(3);
}

static const int GPR_REG[16] = {
    REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
    REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15,
};

__attribute__((no_stack_protector)) static void on_signal(int sig, siginfo_t *si, void *ctx) {
  /* Restore glibc's TLS base first: the case may have loaded FS, and
   * siglongjmp's pointer demangling reads %fs:0x30. Raw syscall, no libc. */
  {
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"((long)SYS_arch_prctl), "D"((long)ARCH_SET_FS), "S"(g_host_fs)
                     : "rcx", "r11", "memory");
    (void)ret;
  }
  /* Clear AC (and DF/TF) in our own RFLAGS; the kernel leaves AC as the case
   * set it and siglongjmp does not restore flags. */
  __asm__ volatile("pushfq\n\tandq $~0x40500, (%%rsp)\n\tpopfq" ::: "cc", "memory");

  ucontext_t *uc = (ucontext_t *)ctx;
  if (!g_in_guest) {
    if (sig == SIGALRM) return; /* stale timer after the case ended */
    fatal_host_signal(sig, (uint64_t)uc->uc_mcontext.gregs[REG_RIP]);
  }
  g_in_guest = 0;

  put32(g_out + R_SIGNAL, (uint32_t)sig);
  put32(g_out + R_SICODE, (uint32_t)si->si_code);
  put64(g_out + R_RIP, (uint64_t)uc->uc_mcontext.gregs[REG_RIP]);
  for (int i = 0; i < 16; i++) put64(g_out + R_GPR + 8 * i, (uint64_t)uc->uc_mcontext.gregs[GPR_REG[i]]);
  put64(g_out + R_RFLAGS, (uint64_t)uc->uc_mcontext.gregs[REG_EFL]);
  if (uc->uc_mcontext.fpregs) {
    memcpy(g_out + R_XMM, uc->uc_mcontext.fpregs->_xmm, 256);
  } else {
    memset(g_out + R_XMM, 0, 256);
  }
  siglongjmp(g_jb, 1);
}

static void install_handlers(void) {
  stack_t ss;
  memset(&ss, 0, sizeof ss);
  ss.ss_sp = g_altstack;
  ss.ss_size = sizeof g_altstack;
  if (sigaltstack(&ss, NULL) != 0) die("sigaltstack");

  static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGALRM, SIGSYS};
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaddset(&sa.sa_mask, sigs[i]);
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    if (sigaction(sigs[i], &sa, NULL) != 0) die("sigaction");
  }
}

static void *map_fixed(uint64_t addr, size_t size, int prot) {
  void *p = mmap((void *)addr, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) die("mmap at fixed address failed");
  if ((uint64_t)p != addr) {
    /* Old kernel that ignores MAP_FIXED_NOREPLACE: the hint was not honoured. */
    munmap(p, size);
    errno = EEXIST;
    die("fixed address not available");
  }
  return p;
}

/* System calls whose instruction pointer lies in the code page raise SIGSYS. */
static void install_seccomp(void) {
  const uint32_t lo = (uint32_t)CODE_BASE, hi_end = (uint32_t)(CODE_BASE + CODE_SIZE + 16);
  struct sock_filter prog[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, instruction_pointer) + 4),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 4),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, instruction_pointer)),
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, lo, 0, 2),
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, hi_end, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog fprog = {.len = (unsigned short)(sizeof prog / sizeof prog[0]), .filter = prog};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) != 0) {
    fprintf(stderr, "hvsim-native runner: warning: seccomp unavailable (%s); "
                    "system calls from cases are not contained\n", strerror(errno));
  }
}

static void detect_xsave(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return;
  if (!(c & (1u << 27))) return; /* OSXSAVE */
  memset(hv_xinit, 0, sizeof hv_xinit);
  put32(hv_xinit + 24, 0x1F80);   /* MXCSR */
  put32(hv_xinit + 28, 0xFFFF);   /* MXCSR_MASK (ignored by XRSTOR) */
  hv_use_xrstor = 1;
}

static int read_case(void) {
  size_t got = 0;
  while (got < CASE_SIZE) {
    size_t n = fread(g_case + got, 1, CASE_SIZE - got, stdin);
    if (n == 0) {
      if (ferror(stdin)) die("read error on stdin");
      if (got == 0) return 0;
      errno = 0;
      die("truncated case at end of input");
    }
    got += n;
  }
  return 1;
}

int main(void) {
  static char outbuf[1 << 20];
  setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);

  if (syscall(SYS_arch_prctl, ARCH_GET_FS, &g_host_fs) != 0) die("arch_prctl(ARCH_GET_FS)");
  uint8_t *code = map_fixed(CODE_BASE, CODE_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC);
  uint8_t *data = map_fixed(DATA_BASE, DATA_SIZE, PROT_READ | PROT_WRITE);
  detect_xsave();
  install_handlers();
  install_seccomp();

  const struct itimerval arm = {.it_interval = {0, 0}, .it_value = {0, CASE_TIMEOUT_USEC}};
  const struct itimerval disarm = {{0, 0}, {0, 0}};

  while (read_case()) {
    uint32_t len = get32(g_case + C_CODELEN);
    if (len < 1 || len > 15) {
      errno = 0;
      die("codeLen out of range 1..15");
    }
    memset(code, 0xF4, CODE_SIZE);
    memcpy(code, g_case + C_CODE, len);
    for (int i = 0; i < 16; i++) hv_in_gpr[i] = get64(g_case + C_GPR + 8 * i);
    hv_in_rflags = get64(g_case + C_RFLAGS);
    memcpy(hv_in_xmm, g_case + C_XMM, 256);
    memcpy(data, g_case + C_MEM, DATA_SIZE);

    memset(g_out, 0, R_MEM);
    put32(g_out + R_SIGNAL, 0xFFFFFFFFu);

    if (sigsetjmp(g_jb, 1) == 0) {
      setitimer(ITIMER_REAL, &arm, NULL);
      g_in_guest = 1;
      hv_enter();
      /* not reached */
      g_in_guest = 0;
    }
    setitimer(ITIMER_REAL, &disarm, NULL);

    memcpy(g_out + R_MEM, data, DATA_SIZE);
    if (fwrite(g_out, 1, RESULT_SIZE, stdout) != RESULT_SIZE) die("write error on stdout");
  }
  if (fflush(stdout) != 0) die("flush error on stdout");
  return 0;
}
