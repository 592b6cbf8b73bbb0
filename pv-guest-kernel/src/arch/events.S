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
/* Offsets in an FXSAVE image. */
.set FX_MXCSR, 24
.set FX_XMM, 160

.text
.p2align 4
.global guest_event_entry
guest_event_entry:
    pop %rcx
    pop %r11
    push $0                     /* error code */
    push $EVENT_VECTOR
    PUSH_GUEST_FRAME_GPRS
    /* The SSE state (MXCSR and the sixteen XMM registers) goes right below the frame,
     * where an FXSAVE image keeps it: the handler's Rust code uses the XMM registers,
     * and a thread switch resumes another thread's. The x87 registers stay as they are
     * (no code of this kernel touches them, which a test checks on its binary): they
     * belong to the current process, and the process switch moves them (process.rs).
     * Both hypervisors align the bounce frame to 16 bytes, so the area is aligned. */
    mov %rsp, %rdi
    sub $FXSAVE_SIZE, %rsp
    stmxcsr FX_MXCSR(%rsp)
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    movaps %xmm\n, FX_XMM+16*\n(%rsp)
    .endr
    cld
    call guest_event
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    movaps FX_XMM+16*\n-FXSAVE_SIZE(%rax), %xmm\n
    .endr
    ldmxcsr FX_MXCSR-FXSAVE_SIZE(%rax)
    mov %rax, %rsp
    jmp guest_trap_return
