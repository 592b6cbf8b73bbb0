/* Exception entry stubs for the PV trap table, and the common return path through
 * HYPERVISOR_iret.
 *
 * The hypervisor delivers with this frame on the guest kernel stack:
 *     rcx, r11, [error code], rip, cs, rflags, rsp, ss
 * The stubs pop rcx and r11 (restoring the interrupted values), push an error code where
 * the CPU has none, push the vector and all registers, and call guest_kernel_trap(frame)
 * for an exception in kernel mode, guest_trap(frame) with the x87/SSE state saved for
 * one from user mode or a system call. The return path pops everything and jumps to the
 * hypercall page's iret stub with the iret_context the hypervisor expects (flags,
 * VGCF_in_syscall for a system call's frame and 0 for any other, on top of rip, cs,
 * rflags, rsp, ss). */

.set HYPERCALL_IRET, 23
.set VGCF_IN_SYSCALL, {vgcf_in_syscall}
/* The vector user.S's syscall entry gives its frames (process.rs). */
.set SYSCALL_MARKER, {syscall_marker}
/* GuestFrame offsets (traps.rs). */
.set FRAME_VECTOR, {frame_vector}
.set FRAME_CS,     {frame_cs}

/* Pushes the general-purpose registers of a GuestFrame (rax first, r15 last): shared by
 * these stubs and the event upcall stub (arch/events.S, assembled in the same block). */
.macro PUSH_GUEST_FRAME_GPRS
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
.endm

.macro GUEST_TRAP vector, has_error
.p2align 4
.global guest_trap_\vector
guest_trap_\vector:
    pop %rcx
    pop %r11
    .if \has_error == 0
    push $0
    .endif
    push $\vector
    jmp guest_trap_common
.endm

.text
.irp v, 0,1,3,4,5,6,7,9,16,18,19,20,64
GUEST_TRAP \v, 0
.endr
.irp v, 8,10,11,12,13,14,17
GUEST_TRAP \v, 1
.endr

guest_trap_common:
    PUSH_GUEST_FRAME_GPRS
    mov %rsp, %rdi
    mov %rsp, %rbx
    /* An exception in kernel mode (CS with RPL 0 in the frame; not a process's system
     * call, which user.S marks): its handler, guest_kernel_trap, touches no SSE or x87
     * register (`cargo xtask test` checks the built kernel: xtask/src/sse_check.rs), so
     * the interrupted kernel code's stay in the CPU, unsaved, as a kernel's do. */
    cmpq $SYSCALL_MARKER, FRAME_VECTOR(%rsp)
    je 1f
    testb $3, FRAME_CS(%rsp)
    jnz 1f
    and $~0xf, %rsp
    cld
    call guest_kernel_trap
    mov %rbx, %rsp
    jmp guest_trap_return
    /* From user mode: save the interrupted x87/SSE state below the frame, since the
     * handler (a system call, a process's fault) uses SSE registers and may switch
     * processes. The area is 16-byte aligned and directly below the (aligned) frame
     * area, where the user-event path finds it (process switches swap its contents). */
1:  sub $512, %rsp
    and $~0xf, %rsp
    fxsave64 (%rsp)
    cld
    call guest_trap
    fxrstor64 (%rsp)
    mov %rbx, %rsp
.global guest_trap_return
guest_trap_return:
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    /* iret_context.flags: VGCF_in_syscall for a frame a system call made (its vector
     * SYSCALL_MARKER, user.S), as Linux returns from one: rcx and r11 come back as a
     * sysret leaves them (the return address and RFLAGS, which the `syscall` put there
     * and the ABI gives the process back clobbered), which lets the hypervisor leave by
     * sysretq; any other frame gets its rcx and r11 back from the context. */
    cmpq $SYSCALL_MARKER, (%rsp)
    lea 16(%rsp), %rsp          /* vector and error code (the flags kept) */
    jne 1f
    push $VGCF_IN_SYSCALL
    jmp hypercall_page + HYPERCALL_IRET * 32
1:  push $0
    jmp hypercall_page + HYPERCALL_IRET * 32
