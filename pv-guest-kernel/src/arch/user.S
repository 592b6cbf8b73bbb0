/* User-mode support: the syscall callback entry, entering and leaving the "user world"
 * from kmain, and the user programs (position-independent, copied to 0x400000). */

.set SYSCALL_MARKER, {syscall_marker}

.text
/* The hypervisor delivers a user `syscall` here on the kernel stack registered with
 * stack_switch, with rcx, r11, rip, cs, rflags, rsp, ss on it. Build the same frame as
 * an exception (error code 0, vector SYSCALL_MARKER) and share the trap path. */
.global user_syscall_entry
user_syscall_entry:
    pop %rcx
    pop %r11
    push $0
    push $SYSCALL_MARKER
    jmp guest_trap_common

/* enter_user_world(frame, fpu): saves kmain's callee-saved registers and stack, loads the
 * first process's x87/SSE state from `fpu` (an FXSAVE image: nothing of the kernel's is
 * left in those registers), then returns to user mode through the trap-return path with
 * `frame` (a GuestFrame at the top of the user trap stack). leave_user_world() comes
 * back here as if enter_user_world returned. */
.global enter_user_world
enter_user_world:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, user_world_saved_rsp(%rip)
    fxrstor64 (%rsi)
    mov %rdi, %rsp
    jmp guest_trap_return

.global leave_user_world
leave_user_world:
    mov user_world_saved_rsp(%rip), %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

.section .bss
.p2align 3
user_world_saved_rsp: .quad 0

/* User programs. Syscalls: rax = number (0 write, 1 exit, 2 getpid, 3 yield,
 * 4 sleep_ms, 5 brk, 6 mmap, 7 gs_word), rdi/rsi/rdx = arguments, result in rax. */
.section .rodata.user_programs, "a"
.p2align 12

/* hello: greet, check it started with the initial x87/SSE state, keep its pid in xmm5
 * and on the x87 stack, with an x87 control word of its own, across a yield (other
 * processes, the other hellos among them, run meanwhile: the kernel must switch x87/SSE
 * state per process), grow the heap and touch it (demand
 * paging), map anonymous memory and touch it, check every value, exit 0 (or 99). All
 * the while the other fifteen XMM registers hold values of its own and MXCSR a rounding
 * mode of its own, checked at the end: system calls and page faults from user mode,
 * through the hypervisor's express paths or its lanes (`express=off`), keep them. */
.global user_hello_start, user_hello_end
user_hello_start:
    mov $1, %edi
    lea hello_msg(%rip), %rsi
    mov $(hello_msg_end - hello_msg), %edx
    xor %eax, %eax
    syscall
    /* A new process starts with the initial x87/SSE state, which a system call keeps:
     * every XMM register zero, MXCSR 0x1f80, FCW 0x37f (nothing the kernel or another
     * process left there). Checked after the first system call, which must come before
     * any use of the stack (corrupt-guest-state's bad-sys-stack expects its crash
     * there). */
    .irp n, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    por %xmm\n, %xmm0
    .endr
    movq %xmm0, %rax
    psrldq $8, %xmm0
    movq %xmm0, %rdx
    or %rdx, %rax
    jnz 1f
    sub $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    mov (%rsp), %eax
    movzwl 4(%rsp), %edx
    add $8, %rsp
    cmp $0x1f80, %eax
    jne 1f
    cmp $0x37f, %edx
    jne 1f
    mov $2, %eax                 /* getpid */
    syscall
    mov %rax, %r15
    movq %rax, %xmm5
    push %rax
    fildq (%rsp)                 /* the pid on the x87 stack */
    movq $0x27f, (%rsp)
    fldcw (%rsp)                 /* 53-bit precision, not the initial 0x37f */
    movl $0x3f80, (%rsp)
    ldmxcsr (%rsp)               /* round toward -inf, not the initial 0x1f80 */
    add $8, %rsp
    .irp n, 0,1,2,3,4,6,7,8,9,10,11,12,13,14,15
    lea \n*0x10001(%r15), %rax
    movq %rax, %xmm\n
    .endr
    mov $3, %eax
    syscall
    movq %xmm5, %rax
    cmp %r15, %rax
    jne 1f
    sub $16, %rsp
    fistpq (%rsp)
    fnstcw 8(%rsp)
    pop %rax
    pop %rdx
    cmp %r15, %rax
    jne 1f
    cmp $0x27f, %dx
    jne 1f
    mov $5, %eax                 /* brk(0): current break */
    xor %edi, %edi
    syscall
    mov %rax, %r13
    lea 3*4096(%rax), %rdi       /* brk(+3 pages) */
    mov $5, %eax
    syscall
    movq $0x1111, (%r13)
    movq $0x2222, 4096(%r13)
    movq $0x3333, 8192(%r13)
    mov $3, %eax
    syscall
    cmpq $0x1111, (%r13)
    jne 1f
    cmpq $0x2222, 4096(%r13)
    jne 1f
    cmpq $0x3333, 8192(%r13)
    jne 1f
    mov $6, %eax                 /* mmap(2 pages) */
    mov $8192, %edi
    syscall
    mov %rax, %r14
    movq $0x4444, (%r14)
    movq $0x5555, 4096(%r14)
    cmpq $0x4444, (%r14)
    jne 1f
    cmpq $0x5555, 4096(%r14)
    jne 1f
    cmpq $0, 8(%r14)             /* fresh memory reads as zero */
    jne 1f
    /* A system call with a hypervisor event send's registers (rax the event-channel
     * hypercall, rdi EVTCHNOP_send, rsi a port): it is this kernel's, which has no
     * such call (ENOSYS), never a send by the hypervisor's send lane. */
    lea hello_port(%rip), %rsi
    mov $4, %edi
    mov $32, %eax
    syscall
    cmp $-38, %rax
    jne 1f
    /* A system call with HYPERVISOR_iret's number (23), an iret_context on the stack
     * that would return in kernel mode (CS with RPL 0) to hello_escaped: it is this
     * kernel's (ENOSYS) too, never the hypervisor's iret, so a process cannot enter
     * its kernel's mode. (Taken as an iret, the ud2 there would be a kernel-mode #UD,
     * which stops the kernel.) */
    mov %rsp, %rax
    push $0xe02b                 /* ss */
    push %rax                    /* rsp */
    push $0x202                  /* rflags */
    push $0xe030                 /* cs: RPL 0 */
    lea hello_escaped(%rip), %rax
    push %rax                    /* rip */
    push $0                      /* flags */
    push $0                      /* rcx */
    push $0                      /* r11 */
    push $0                      /* rax */
    mov $23, %eax
    syscall
    add $72, %rsp
    cmp $-38, %rax
    jne 1f
    /* The fifteen XMM registers and MXCSR it set before the first yield. */
    .irp n, 0,1,2,3,4,6,7,8,9,10,11,12,13,14,15
    movq %xmm\n, %rax
    lea \n*0x10001(%r15), %rdx
    cmp %rdx, %rax
    jne 1f
    .endr
    sub $8, %rsp
    stmxcsr (%rsp)
    pop %rax
    cmp $0x3f80, %eax
    jne 1f
    mov $1, %eax
    xor %edi, %edi
    syscall
1:  mov $1, %eax
    mov $99, %edi
    syscall
hello_escaped:
    ud2
hello_msg: .ascii "hello from user space\n"
hello_msg_end:
hello_port: .long 1
user_hello_end:

/* divzero: divides by zero; the kernel kills it. */
.global user_divzero_start, user_divzero_end
user_divzero_start:
    xor %edx, %edx
    xor %ecx, %ecx
    mov $1, %eax
    div %rcx
    mov $1, %eax
    mov $98, %edi
    syscall
user_divzero_end:

/* badaccess: writes to the kernel's address range; the kernel kills it. */
.global user_badaccess_start, user_badaccess_end
user_badaccess_start:
    movabs $0xffffffff80000000, %rax
    movq $1, (%rax)
    mov $1, %eax
    mov $97, %edi
    syscall
user_badaccess_end:

/* gsload: loads %gs with the flat data selector (its base becomes 0, the
 * descriptor's, without the hypervisor knowing), then asks the kernel for the word at
 * the kernel's GS base: it must be the kernel's (process::GS_MAGIC), whatever the
 * process did to its own. Exits 0 if so, else 94. */
.global user_gsload_start, user_gsload_end
user_gsload_start:
    mov $0xe02b, %eax
    mov %eax, %gs
    mov $7, %eax
    syscall
    movabs $0x6773626173656b72, %rcx
    xor %edi, %edi
    cmp %rcx, %rax
    je 1f
    mov $94, %edi
1:  mov $1, %eax
    syscall
user_gsload_end:

/* hostileargs: system calls with arguments a careless kernel trips on: the GS word
 * with no kernel GS base set (ENOSYS, where the kernel used to read at address 0 and
 * crash), then an mmap of nearly 2^64 bytes (ENOMEM, where the length used to wrap into
 * a success). exit(0) if both are refused so, else 96 or 97. */
.global user_hostileargs_start, user_hostileargs_end
user_hostileargs_start:
    mov $7, %eax
    syscall
    mov $96, %edi
    cmp $-38, %rax
    jne 1f
    mov $6, %eax
    mov $-4096, %rdi
    syscall
    mov $97, %edi
    cmp $-12, %rax
    jne 1f
    xor %edi, %edi
1:  mov $1, %eax
    syscall
user_hostileargs_end:

/* compat: far-jumps to Xen's 32-bit user code selector, FLAT_RING3_CS32 (0xe023), and
 * makes a system call from compatibility mode (exit(95), were it ever run). Xen has that
 * segment and, since this kernel registers no syscall32 callback, makes the `syscall` a
 * #UD; ours has no segment a guest can load there, so the jump raises #GP. The kernel
 * kills the process either way, and the hypervisor runs on. */
.global user_compat_start, user_compat_end
user_compat_start:
    lea 9f(%rip), %rax
    sub $16, %rsp
    movl %eax, (%rsp)
    movw $0xe023, 4(%rsp)
    ljmpl *(%rsp)
9:
    .code32
    mov $1, %eax
    mov $95, %edi
    syscall
    .code64
    ud2
user_compat_end:

/* sleeper: sleeps 20 ms, then exits 3. */
.global user_sleeper_start, user_sleeper_end
user_sleeper_start:
    mov $4, %eax
    mov $20, %edi
    syscall
    mov $2, %eax                 /* getpid must not be 0 */
    syscall
    test %rax, %rax
    jz 1f
    mov $1, %eax
    mov $3, %edi
    syscall
1:  mov $1, %eax
    mov $96, %edi
    syscall
user_sleeper_end:

/* fpuspin: takes an x87/SSE state of its own (its pid on the x87 stack, in xmm5 and in
 * xmm15, and a rounding mode chosen by its pid in the x87 control word and in MXCSR),
 * then spins without a system call for FPUSPIN_TICKS of the TSC: the timer preempts it
 * and other fpuspins run meanwhile with states of their own. Exits 0 if its state
 * survived, else 93. */
.set FPUSPIN_TICKS, 100000000
.global user_fpuspin_start, user_fpuspin_end
user_fpuspin_start:
    mov $2, %eax                 /* getpid */
    syscall
    mov %rax, %r15
    movq %rax, %xmm5
    movq %rax, %xmm15
    mov %eax, %ebx
    and $3, %ebx                 /* the rounding mode: pid mod 4 */
    push %rax
    fildq (%rsp)
    mov %ebx, %eax
    shl $10, %eax
    or $0x27f, %eax              /* 53-bit precision, the pid's rounding */
    mov %eax, %r13d
    mov %eax, (%rsp)
    fldcw (%rsp)
    mov %ebx, %eax
    shl $13, %eax
    or $0x1f80, %eax             /* exceptions masked, the pid's rounding */
    mov %eax, %r12d
    mov %eax, (%rsp)
    ldmxcsr (%rsp)
    add $8, %rsp
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    mov %rdx, %r14
2:  rdtsc
    shl $32, %rdx
    or %rax, %rdx
    sub %r14, %rdx
    cmp $FPUSPIN_TICKS, %rdx
    jb 2b
    movq %xmm5, %rax
    cmp %r15, %rax
    jne 1f
    movq %xmm15, %rax
    cmp %r15, %rax
    jne 1f
    sub $16, %rsp
    stmxcsr 8(%rsp)
    fnstcw 12(%rsp)
    fistpq (%rsp)
    pop %rax
    cmp %r15, %rax
    jne 1f
    mov (%rsp), %eax
    and $~0x3f, %eax             /* the exception flags may be set */
    cmp %r12d, %eax
    jne 1f
    movzwl 4(%rsp), %eax
    cmp %r13d, %eax
    jne 1f
    add $8, %rsp
    mov $1, %eax
    xor %edi, %edi
    syscall
1:  mov $1, %eax
    mov $93, %edi
    syscall
user_fpuspin_end:

/* regkeep: every general register is the process's own across what enters its kernel
 * without a system call (a demand-paging fault; the timer taking the CPU for another
 * process, while it spins as fpuspin does), and all but rax, rcx and r11 across a
 * system call (getpid; yield, which lets another process run), after which rcx is the
 * address after the `syscall` and r11 the RFLAGS it was made with. The kernel returns
 * "in syscall" (VGCF_in_syscall) only from a system call's frame: returned so from the
 * fault's or the timer's, the process would lose rcx and r11. Exits 0, or 41 (after the
 * fault), 42 (after the preemption), 43 (after getpid), 44 (after yield), 45 (rcx after
 * a system call), 46 (r11). */
/* Loads (op "load") or compares (op "cmp", any difference jumping to `fail`) the
 * registers `regs` with their marks, which regkeep_marks holds from byte `first` on, in
 * this order: rbx rsi rdi r8 r9 r10 r12 r13 r14 r15 (what a system call keeps), rax rdx
 * (from 80), rcx r11 (from 96). */
.macro REGKEEP_GROUP op, fail, first, regs:vararg
    .set regkeep_off, \first
    .irp reg, \regs
    .ifc \op, load
    mov regkeep_marks+regkeep_off(%rip), %\reg
    .else
    cmp regkeep_marks+regkeep_off(%rip), %\reg
    jne \fail
    .endif
    .set regkeep_off, regkeep_off + 8
    .endr
.endm
.macro REGKEEP_MARKS skip_rax_rdx=0
    REGKEEP_GROUP load, -, 0, rbx, rsi, rdi, r8, r9, r10, r12, r13, r14, r15
    .if \skip_rax_rdx == 0
    REGKEEP_GROUP load, -, 80, rax, rdx
    .endif
    REGKEEP_GROUP load, -, 96, rcx, r11
.endm
/* Compares the marked registers (rax and rdx unless skipped, rcx and r11 unless
 * skipped: a system call's) with their marks; any difference jumps to `fail`. rbp
 * holds the fresh page's address, kept at rbp_at(%rsp). */
.macro REGKEEP_CHECK fail, skip_rax_rdx=0, skip_rcx_r11=0, rbp_at=0
    REGKEEP_GROUP cmp, \fail, 0, rbx, rsi, rdi, r8, r9, r10, r12, r13, r14, r15
    .if \skip_rax_rdx == 0
    REGKEEP_GROUP cmp, \fail, 80, rax, rdx
    .endif
    .if \skip_rcx_r11 == 0
    REGKEEP_GROUP cmp, \fail, 96, rcx, r11
    .endif
    cmp \rbp_at(%rsp), %rbp
    jne \fail
.endm
/* A system call `number` with every register marked: then the registers a system call
 * keeps, rcx (the address after it) and r11 (the RFLAGS it was made with). */
.macro REGKEEP_SYSCALL number, fail
    REGKEEP_MARKS
    pushfq
    mov $\number, %eax
    syscall
0:  REGKEEP_CHECK \fail, skip_rax_rdx=1, skip_rcx_r11=1, rbp_at=8
    REGKEEP_GROUP cmp, \fail, 88, rdx
    lea 0b(%rip), %rax
    cmp %rax, %rcx
    jne 95f
    pop %rax
    cmp %rax, %r11
    jne 96f
.endm
.global user_regkeep_start, user_regkeep_end
user_regkeep_start:
    mov $5, %eax                 /* brk(0): the current break */
    xor %edi, %edi
    syscall
    mov %rax, %rbp               /* the page to fault in */
    lea 4096(%rax), %rdi         /* brk(+1 page) */
    mov $5, %eax
    syscall
    push %rbp
    /* A not-present fault: the store's page is mapped on demand. */
    REGKEEP_MARKS
    mov %rax, (%rbp)
    REGKEEP_CHECK 91f
    /* The timer: spin (rax and rdx hold the time) until the kernel has had the CPU
     * for long enough to give it to another process. */
    REGKEEP_MARKS skip_rax_rdx=1
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    push %rdx
2:  rdtsc
    shl $32, %rdx
    or %rax, %rdx
    sub (%rsp), %rdx
    cmp $FPUSPIN_TICKS, %rdx
    jb 2b
    add $8, %rsp
    REGKEEP_CHECK 92f, skip_rax_rdx=1
    REGKEEP_SYSCALL 2, 93f       /* getpid */
    REGKEEP_SYSCALL 3, 94f       /* yield */
    mov $1, %eax
    xor %edi, %edi
    syscall
91: mov $41, %edi
    jmp 1f
92: mov $42, %edi
    jmp 1f
93: mov $43, %edi
    jmp 1f
94: mov $44, %edi
    jmp 1f
95: mov $45, %edi
    jmp 1f
96: mov $46, %edi
1:  mov $1, %eax
    syscall
    .p2align 3
regkeep_marks:                   /* the order REGKEEP_GROUP gives */
    .quad 0x0b0b0b0b0b0b0b0b, 0x5151515151515151, 0xd1d1d1d1d1d1d1d1, 0x0808080808080808
    .quad 0x0909090909090909, 0x1010101010101010, 0x1212121212121212, 0x1313131313131313
    .quad 0x1414141414141414, 0x1515151515151515
    .quad 0x0a0a0a0a0a0a0a0a, 0x0d0d0d0d0d0d0d0d
    .quad 0x0c0c0c0c0c0c0c0c, 0x1111111111111111
user_regkeep_end:

/* spin: never makes a system call; only the timer can take the CPU from it (the kernel
 * stops it once it has used its CPU budget). */
.global user_spin_start, user_spin_end
user_spin_start:
1:  inc %rax
    jmp 1b
user_spin_end:
