/* The event-channel upcall entry (CALLBACKTYPE_EVENT).
 *
 * The hypervisor delivers with events masked and this frame on the kernel stack:
 *     rcx, r11, rip, cs, rflags, rsp, ss
 * The stub builds the same GuestFrame as the trap stubs (vector 0x200, no error code)
 * with the x87/SSE state saved below it, and calls guest_event(frame), which returns the
 * frame to resume: the same one, or another kernel thread's (a thread switch is a
 * change of stack). The state below that frame is restored, and the common return path
 * of traps.S pops the frame and returns through HYPERVISOR_iret. */

.set EVENT_VECTOR, 0x200
.set FXSAVE_SIZE, 512

.text
.p2align 4
.global guest_event_entry
guest_event_entry:
    pop %rcx
    pop %r11
    push $0                     /* error code */
    push $EVENT_VECTOR
    PUSH_GUEST_FRAME_GPRS
    /* The x87/SSE state goes right below the frame: the handler's Rust code uses SSE
     * registers, and a thread switch resumes another thread's state. Both hypervisors
     * align the bounce frame to 16 bytes, so the frame and this area are aligned. */
    mov %rsp, %rdi
    sub $FXSAVE_SIZE, %rsp
    fxsave64 (%rsp)
    cld
    call guest_event
    lea -FXSAVE_SIZE(%rax), %rsp
    fxrstor64 (%rsp)
    add $FXSAVE_SIZE, %rsp
    jmp guest_trap_return
