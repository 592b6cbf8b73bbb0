/* The event-channel upcall entry (CALLBACKTYPE_EVENT).
 *
 * The hypervisor delivers with events masked and this frame on the kernel stack:
 *     rcx, r11, rip, cs, rflags, rsp, ss
 * The stub builds the same GuestFrame as the trap stubs (vector 0x200, no error code)
 * and calls guest_event(frame), which returns the frame to resume: the same one, or
 * another kernel thread's (a thread switch is a change of stack). The common return
 * path of traps.S pops it and returns through HYPERVISOR_iret. */

.set EVENT_VECTOR, 0x200

.text
.p2align 4
.global guest_event_entry
guest_event_entry:
    pop %rcx
    pop %r11
    push $0                     /* error code */
    push $EVENT_VECTOR
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
    mov %rsp, %rdi
    cld
    and $~0xf, %rsp             /* the ABI's alignment; the old rsp is the frame */
    call guest_event
    mov %rax, %rsp
    jmp guest_trap_return
