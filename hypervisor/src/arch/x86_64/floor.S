/* The floor measurement (see floor.rs): a ring-3 snippet that times bare round trips
 * into ring 0 and back, and the three ring-0 stubs it meets while the measurement runs.
 * Nothing here touches guest state: the measurement runs at boot, before any domain. */

.set FLOOR_RING3_CS64, 0xe033
.set FLOOR_RING3_SS64, 0xe02b
.set FLOOR_RFLAGS,     0x2          /* IF off, IOPL 0: cli from ring 3 raises #GP */

.text
/* floor_enter(user_rip, iterations, results): runs the snippet in ring 3 once; the
 * snippet's six timestamps come back in results[0..6]. */
.global floor_enter
floor_enter:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdx
    mov %rsp, floor_saved_rsp(%rip)
    push $FLOOR_RING3_SS64
    push $0                         /* the snippet uses no stack */
    push $FLOOR_RFLAGS
    push $FLOOR_RING3_CS64
    push %rdi
    mov %rsi, %rdi
    iretq

/* #UD gate while measuring: the snippet's closing ud2. Back to floor_enter's caller. */
.global floor_exit
floor_exit:
    mov floor_saved_rsp(%rip), %rsp
    pop %rdx
    mov %r12, 0(%rdx)
    mov %r13, 8(%rdx)
    mov %r14, 16(%rdx)
    mov %r15, 24(%rdx)
    mov %rbx, 32(%rdx)
    mov %rbp, 40(%rdx)
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

/* LSTAR while measuring: straight back. */
.global floor_sysret
floor_sysret:
    sysretq

/* #GP gate while measuring: drop the error code, step over the one-byte cli, return. */
.global floor_gp_skip
floor_gp_skip:
    add $8, %rsp
    incq (%rsp)
    iretq

/* The ring-3 snippet, alone in its page (mapped user, read-only, at a low address while
 * the measurement runs). %rdi = iterations per loop. Timestamps: r12 start, r13 after
 * the empty loop, r14 after the syscall loop, r15 after the cli loop. */
.p2align 12
.global floor_user_page
floor_user_page:
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r12
    mov %rdi, %rsi
1:  dec %rsi
    jnz 1b
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r13
    mov %rdi, %rsi
2:  syscall
    dec %rsi
    jnz 2b
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r14
    mov %rdi, %rsi
3:  cli
    dec %rsi
    jnz 3b
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r15
    xor %ebx, %ebx
    xor %ebp, %ebp
    ud2
.p2align 12

.section .bss
.p2align 3
floor_saved_rsp: .quad 0
