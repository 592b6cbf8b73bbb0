/* Entry and exit stubs. Every entry from a guest builds the same TrapFrame (see
 * src/regs.rs) on the per-CPU stack and calls into Rust (the send lane excepted: it
 * saves only what Rust may clobber); the exit path pops the frame of whatever vCPU is
 * current by then and returns to ring 3.
 *
 * The guest's FPU/SSE registers. Rust code in ring 0 uses the XMM registers (as integer
 * storage for copies: it has no floating-point or x87 code), so the guest's must not be
 * lost. A `syscall` (hypercall, send lane, a process's system call) and a not-present
 * page fault mostly never touch them: the express paths are assembly without SSE, and
 * in release builds the fast path and the lanes behind them are checked to reach no SSE
 * instruction (SSE_FREE_FAST_PATH, xtask's sse_check.rs), so those entries neither save
 * nor write CR0. Where they hand over to code that may use SSE, the stub sets CR0.TS
 * (FPU_NET_FOR_FULL_PATH; debug builds set it on entry), and the hypervisor's first SSE
 * instruction then takes a #NM in ring 0 (ring0_nm) that saves the guest's XMM
 * registers and MXCSR into the XMM slots of its vCPU's FXSAVE area, clears TS and marks
 * them saved (PERCPU_FPU_SAVED = FPU_SAVED_XMM); Rust code that knows it will use SSE
 * does the same up front (percpu::save_fpu, hv_save_fpu_xmm below). Every
 * other exception and interrupt saves them in its stub at once, with no CR0 write
 * (guest_entry_common). The x87 state stays in the CPU, untouched. Before a vCPU switch
 * the image is completed (hv_save_fpu_full: XMM reloaded, then fxsave, FPU_SAVED_FULL).
 * The exit reloads what was saved, then sets the real TS to the guest's virtual TS.
 * Saving sixteen registers instead of the whole FXSAVE image keeps a saved entry cheap
 * under QEMU, whose fxsave/fxrstor cost thousands of cycles each; and every CR0 write
 * ends QEMU's translation block, so the paths write it as little as they can. */

.set PERCPU_SCRATCH,   8
.set PERCPU_STACK_TOP, 16
.set PERCPU_FPU_AREA,  24
.set PERCPU_FPU_SAVED, 40
.set PERCPU_GUEST_TS,  41
.set PERCPU_CR0_TS,    48
.set PERCPU_LANE_RAX,  56
.set PERCPU_EXPRESS_VCPU,  64
.set PERCPU_VCPU_INFO, {percpu_vcpu_info}
/* Both bytes above as one word: zero when the exit has nothing to reload and no TS to
 * set. */
.set PERCPU_FPU_FLAGS, 40
/* PerCpu::fpu_saved: 0 = live in the CPU (also percpu::FPU_SAVED_FULL) */
.set FPU_SAVED_FULL,   1
.set FPU_SAVED_XMM,    2
/* Offsets in the FXSAVE image. */
.set FXSAVE_MXCSR,     24
.set FXSAVE_XMM0,      160
.set FLAT_RING3_CS32,  0xe023
.set FLAT_RING3_CS64,  0xe033
.set FLAT_RING3_SS64,  0xe02b
.set VECTOR_SYSCALL,   0x100
.set FRAME_VECTOR,     15*8
.set FRAME_ERROR,      16*8
.set FRAME_RIP,        17*8
.set FRAME_CS,         18*8
.set FRAME_RFLAGS,     19*8
.set FRAME_RSP,        20*8
.set FRAME_SS,         21*8
/* The RFLAGS bits a sysretq exit must not see set: those it does not take from r11 (it
 * keeps r11 & 0x3c7fd7 and sets bit 1: RF, VM, reserved ones), and TF, which it takes
 * but acts on at once (the single-step #DB comes at the target, before its first
 * instruction, where after an iretq that instruction runs first). */
.set RFLAGS_TF,        0x100
.set SYSRET_RFLAGS_DROPPED, ~(0x3c7fd7 & ~RFLAGS_TF)
.set VECTOR_UD,        6
.set VECTOR_PF,        14
/* The #PF express path's stack: the CPU's frame and the stub's vector above the six
 * registers it saves. */
.set PF_RCX,           4*8
.set PF_ERROR,         7*8
.set PF_RIP,           8*8
.set PF_CS,            9*8
.set PF_RFLAGS,        10*8
.set PF_RSP,           11*8
.set PF_SS,            12*8
/* TrapFrame (src/regs.rs): r15 first, rax last of the 15 general registers. */
.set FRAME_GPRS,       15*8
.set FRAME_R15,        0*8
.set FRAME_R14,        1*8
.set FRAME_R13,        2*8
.set FRAME_R12,        3*8
.set FRAME_R11,        4*8
.set FRAME_R10,        5*8
.set FRAME_R9,         6*8
.set FRAME_R8,         7*8
.set FRAME_RBP,        8*8
.set FRAME_RDI,        9*8
.set FRAME_RSI,        10*8
.set FRAME_RDX,        11*8
.set FRAME_RCX,        12*8
.set FRAME_RBX,        13*8
.set FRAME_RAX,        14*8
/* machine::FastEntry */
.set FAST_DECLINED,    0
.set FAST_RESUME,      1
.set FAST_FINISH,      2
.set FAST_RETURN,      3
.set FAST_GENERAL,     5
/* 1 when the hypercall fast path and the lanes run with CR0.TS as the guest left it
 * (release builds: `cargo xtask test` checks that no code they reach touches SSE state,
 * sse_check.rs); 0 in debug builds, whose unoptimised code copies through XMM registers
 * anywhere, so these paths keep the lazy-FPU net there. */
.set SSE_FREE_FAST_PATH, {sse_free_fast_path}
/* pv_abi: Hypercall::EventChannelOp, EVTCHNOP_SEND, Hypercall::Iret */
.set HYPERCALL_EVENT_CHANNEL_OP, {hypercall_event_channel_op}
.set EVTCHNOP_SEND,    {evtchnop_send}
/* The express null hypercall's: xen_version (XENVER_version is 0: mod.rs) and its
 * answer (hypercall::version::VERSION_WORD). */
.set HYPERCALL_XEN_VERSION, {hypercall_xen_version}
.set XEN_VERSION_WORD, {xen_version_word}
/* The paging lane's calls (both numbered below HYPERVISOR_iret: mod.rs). */
.set HYPERCALL_MMU_UPDATE, {hypercall_mmu_update}
.set HYPERCALL_UPDATE_VA_MAPPING, {hypercall_update_va_mapping}
/* The express mmuext_op's view of the call (pv_abi, from arch/x86_64/mod.rs). */
.set HYPERCALL_MMUEXT_OP, {hypercall_mmuext_op}
.set MMUEXT_NEW_BASEPTR, {mmuext_new_baseptr}
.set MMUEXT_TLB_FLUSH_LOCAL, {mmuext_tlb_flush_local}
.set MMUEXT_INVLPG_LOCAL, {mmuext_invlpg_local}
.set MMUEXT_OP_CMD,    {mmuext_op_cmd}
.set MMUEXT_OP_ARG1,   {mmuext_op_arg1}
.set MMUEXT_OP_ARG2,   {mmuext_op_arg2}
.set MMUEXT_OP_SIZE,   {mmuext_op_size}
.set DOMID_SELF,       {domid_self}
.set CR4_PGE,          {cr4_pge}
.set CR0_TS,           {cr0_ts}
/* The express send's view of the event state (arch/x86_64/mod.rs). */
.set PERCPU_EXPRESS_EVENTS, {percpu_express_events}
.set PERCPU_EXPRESS_SHARED, {percpu_express_shared}
.set VCPU_ID,          {vcpu_id}
.set RUNTIME_POLLERS,  {runtime_pollers}
.set RUNTIME_CHANNELS, {runtime_channels}
.set CHANNEL_TAG,      {channel_tag}
.set CHANNEL_VCPU,     {channel_vcpu}
.set BINDING_IPI,      {binding_ipi}
.set MAX_PORTS,        {max_ports}
.set PORT_NOT_READ,    -1
.set SI_PENDING,       {si_pending}
.set SI_MASK,          {si_mask}
.set VI_SEL,           {vi_sel}
.set HYPERCALL_IRET,   {hypercall_iret}
/* For the express paths (see "The express paths" below): fields of the on-CPU Vcpu
 * (hypervisor::domain) and of the per-CPU block (arch/x86_64/percpu.rs), from Rust. */
.set VCPU_KERNEL_MODE,   {vcpu_kernel_mode}
.set VCPU_KERNEL_ROOT,   {vcpu_kernel_root}
.set VCPU_USER_ROOT,     {vcpu_user_root}
.set VCPU_KERNEL_FRAME_TOP, {vcpu_kernel_frame_top}
.set VCPU_GS_KERNEL,     {vcpu_gs_kernel}
.set VCPU_GS_USER,       {vcpu_gs_user}
.set VCPU_SYSCALL,       {vcpu_syscall}
.set VCPU_SYSCALL_MASKS, {vcpu_syscall_masks}
.set VCPU_EVENT_CALLBACK, {vcpu_event_callback}
.set VCPU_PF_HANDLER,    {vcpu_pf_handler}
.set VCPU_PF_FLAGS,      {vcpu_pf_flags}
.set TI_IF,              {ti_if}
.set VI_CR2,             {vi_cr2}
.set PFEC_USER,          {pfec_user}
.set PERCPU_LOADED_ROOT, {percpu_loaded_root}
.set PERCPU_LOADED_GS,   {percpu_loaded_gs}
.set PERCPU_LOADED_MODE, {percpu_loaded_mode}
.set MODE_KERNEL,        {mode_kernel}
.set MODE_USER,          {mode_user}
.set GUEST_RANGE_BIAS,   {guest_range_bias}
.set GUEST_RANGE_SPAN,   {guest_range_span}
.set GUEST_UPPER_DISTANCE, {guest_upper_distance}
.set LOWER_HALF_END,     {lower_half_end}
.set GUEST_RFLAGS_SETTABLE, {guest_rflags_settable}
.set VGCF_IN_SYSCALL,    {vgcf_in_syscall}
.set MSR_KERNEL_GS_BASE, {msr_kernel_gs_base}
/* vcpu_info: the pending and mask bytes (machine::upcall_due asserts the offsets). */
.set VI_PENDING,         0
.set VI_MASK,            1
.set RFLAGS_IF,          0x200
.set RFLAGS_RESERVED_ONE, 0x2
/* The RFLAGS bits a bounce keeps for the guest kernel's handler, and those it sets
 * (traps::bounce::handler_rflags; from mod.rs). */
.set BOUNCE_RFLAGS_KEEP, {bounce_rflags_keep}
.set BOUNCE_RFLAGS_SET,  {bounce_rflags_set}

.macro PUSH_GPRS
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

/* Entry from ring 3: FPU use in ring 0 from now on traps (see the top): CR0 with TS,
 * as the per-CPU block keeps it. Clobbers rax. */
.macro LAZY_FPU_ENTRY
    mov %gs:PERCPU_CR0_TS, %rax
    mov %rax, %cr0
.endm

/* Entry into the SSE-free fast path or a lane: nothing in release builds (see
 * SSE_FREE_FAST_PATH), the lazy-FPU net in debug builds. Clobbers rax. Every Rust
 * function called after it (or on any path that set no CR0.TS and saved nothing) is
 * called by SSE_FREE_CALL. */
.macro SSE_FREE_ENTRY
.if SSE_FREE_FAST_PATH == 0
    LAZY_FPU_ENTRY
.endif
.endm

/* A call into Rust that runs with the guest's SSE registers live and CR0.TS as the
 * guest left it: the callee's address goes in .hv_sse_free (between __hv_sse_free_start
 * and __hv_sse_free_end), where xtask's SSE check finds the functions it must prove
 * SSE-free (sse_check.rs). */
.macro SSE_FREE_CALL fn
    call \fn
.pushsection .hv_sse_free, "a"
.balign 8
    .quad \fn
.popsection
.endm

/* From the SSE-free paths into code that may use SSE (the full exit path, the general
 * trap path): the lazy-FPU net, unless the guest's registers are saved already.
 * Clobbers rax and the flags. */
.macro FPU_NET_FOR_FULL_PATH
    cmpb $0, %gs:PERCPU_FPU_SAVED
    jne .Lfpu_net_done\@
    LAZY_FPU_ENTRY
.Lfpu_net_done\@:
.endm

/* The guest's XMM registers and MXCSR to and from the XMM slots of the FXSAVE image at
 * \area (16-byte aligned). */
.macro SAVE_XMM area
    stmxcsr FXSAVE_MXCSR(\area)
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    movaps %xmm\n, FXSAVE_XMM0 + 16*\n(\area)
    .endr
.endm

.macro RESTORE_XMM area
    ldmxcsr FXSAVE_MXCSR(\area)
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    movaps FXSAVE_XMM0 + 16*\n(\area), %xmm\n
    .endr
.endm

/* Exit to ring 3: reload the guest's FPU/SSE registers if they were saved (the XMM part
 * or the whole image), then set the real CR0.TS to the guest's virtual TS. Clobbers
 * \scratch (rax unless told). */
.macro LAZY_FPU_EXIT scratch=%rax
    /* The common case (the guest's registers live, no virtual TS) in one compare; the
     * rest out of line. TS is cleared only if an entry set it: the SSE-free fast path
     * sets none, and a read of CR0 is cheaper than a write (which serialises a CPU and
     * ends QEMU's translation block). */
    cmpw $0, %gs:PERCPU_FPU_FLAGS
    jne .Lfpu_slow\@
    mov %cr0, \scratch
    test $CR0_TS, \scratch
    jz .Lfpu_exit_done\@
    clts
.Lfpu_exit_done\@:
.pushsection .text.hv_fpu_exit, "ax"
.Lfpu_slow\@:
    /* Saved registers come back without a CR0 write: every save clears TS first (and
     * were TS ever set here, the reload's #NM would clear it: ring0_nm). */
    cmpb $0, %gs:PERCPU_FPU_SAVED
    je .Lfpu_live\@
    mov %gs:PERCPU_FPU_AREA, \scratch
    cmpb $FPU_SAVED_XMM, %gs:PERCPU_FPU_SAVED
    je .Lfpu_xmm\@
    fxrstor64 (\scratch)
    jmp .Lfpu_restored\@
.Lfpu_xmm\@:
    RESTORE_XMM \scratch
.Lfpu_restored\@:
    movb $0, %gs:PERCPU_FPU_SAVED
.Lfpu_live\@:
    /* TS is clear here if anything was restored (every save clears it); otherwise the
     * guest's virtual TS is set (the only other way the flags are nonzero), and TS may
     * be set already (left so by the SSE-free fast path): set it for such a guest. */
    cmpb $0, %gs:PERCPU_GUEST_TS
    je .Lfpu_done\@
    mov %gs:PERCPU_CR0_TS, \scratch
    mov \scratch, %cr0
.Lfpu_done\@:
    jmp .Lfpu_exit_done\@
.popsection
.endm

/* The exit of the SSE-free paths (the fast path, the lanes): LAZY_FPU_EXIT, but in
 * release builds those paths never set CR0.TS (FPU_NET_FOR_FULL_PATH sets it only before
 * paths that leave by guest_exit), so with nothing saved and no virtual TS there is
 * nothing to do, not even the CR0 read. Clobbers \scratch. */
.macro FAST_FPU_EXIT scratch=%rax
.if SSE_FREE_FAST_PATH
    cmpw $0, %gs:PERCPU_FPU_FLAGS
    je .Lfast_fpu_done\@
.endif
    LAZY_FPU_EXIT \scratch
.Lfast_fpu_done\@:
.endm

/* The fast path's exits: the caller-saved registers the stub saved, from the frame at
 * %rsp (rcx is loaded by each exit itself; rax last). */
.macro RESTORE_CALLER_SAVED_BUT_RCX
    mov FRAME_RDX(%rsp), %rdx
    mov FRAME_RSI(%rsp), %rsi
    mov FRAME_RDI(%rsp), %rdi
    mov FRAME_R8(%rsp), %r8
    mov FRAME_R9(%rsp), %r9
    mov FRAME_R10(%rsp), %r10
    mov FRAME_R11(%rsp), %r11
    mov FRAME_RAX(%rsp), %rax
.endm

/* Jumps to \iret unless leaving by sysretq from the frame at rsp changes nothing the
 * guest would see after an iretq from it: rip already in the frame's rcx and RFLAGS in
 * its r11 (after a bounce, whose frame on the guest's stack holds the guest's two, so
 * that traps::bounce::deliver_inline sets them so, as Xen's sysretq after a bounce
 * leaves them; after a hypercall, as its `syscall` left them), no RFLAGS bit that
 * sysretq drops and not TF (SYSRET_RFLAGS_DROPPED), CS and SS the selectors STAR gives
 * it (as iretq reads the slots: the low 16 bits), and rip canonical, or the sysretq
 * would fault in ring 0. Xen makes the same choice by a flag in its frame
 * (TRAP_syscall); this test needs none. Clobbers rax and rcx, which the exit reloads. */
.macro JUMP_UNLESS_SYSRET_SAME iret
    mov FRAME_RIP(%rsp), %rcx
    cmp FRAME_RCX(%rsp), %rcx
    jne \iret
    mov FRAME_RFLAGS(%rsp), %rax
    cmp FRAME_R11(%rsp), %rax
    jne \iret
    test $SYSRET_RFLAGS_DROPPED, %rax
    jnz \iret
    cmpw $FLAT_RING3_CS64, FRAME_CS(%rsp)
    jne \iret
    cmpw $FLAT_RING3_SS64, FRAME_SS(%rsp)
    jne \iret
    JUMP_UNLESS_CANONICAL %rcx, %rax, \iret
.endm

.macro POP_GPRS
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
.endm

/* The general syscall stub's frame: the iret part, then the caller-saved registers
 * (the callee-saved ones only if the fast path hands over: see syscall_entry); error
 * code 0. Expects the guest's rsp in PERCPU_SCRATCH. CR0.TS is the caller's to set. */
.macro SYSCALL_FRAME
    push $FLAT_RING3_SS64
    push %gs:PERCPU_SCRATCH
    push %r11
    push $FLAT_RING3_CS64
    push %rcx
    push $0
    push $VECTOR_SYSCALL
    sub $FRAME_GPRS, %rsp
    SAVE_CALLER_SAVED
.endm

/* The caller-saved registers into the frame at %rsp (the callee-saved ones stay in the
 * CPU: Rust preserves them). */
.macro SAVE_CALLER_SAVED
    mov %rax, FRAME_RAX(%rsp)
    mov %rcx, FRAME_RCX(%rsp)
    mov %rdx, FRAME_RDX(%rsp)
    mov %rsi, FRAME_RSI(%rsp)
    mov %rdi, FRAME_RDI(%rsp)
    mov %r8, FRAME_R8(%rsp)
    mov %r9, FRAME_R9(%rsp)
    mov %r10, FRAME_R10(%rsp)
    mov %r11, FRAME_R11(%rsp)
.endm

/* The callee-saved registers into the frame at %rsp: what completes a frame the fast
 * path left half-built (Rust preserved them, so they are still the guest's). */
.macro SAVE_CALLEE_SAVED
    mov %rbx, FRAME_RBX(%rsp)
    mov %rbp, FRAME_RBP(%rsp)
    mov %r12, FRAME_R12(%rsp)
    mov %r13, FRAME_R13(%rsp)
    mov %r14, FRAME_R14(%rsp)
    mov %r15, FRAME_R15(%rsp)
.endm

/* Jumps to \target unless rcx is canonical. Clobbers rax. */
.macro JUMP_UNLESS_RCX_CANONICAL target
    JUMP_UNLESS_CANONICAL %rcx, %rax, \target
.endm

/* The send lane's save area: every register Rust may clobber but rax (the result);
 * eight of them, so that the call finds the stack 16-byte aligned. */
.macro LANE_PUSH
    push %rcx
    push %r11
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
.endm

.macro LANE_POP
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %r11
    pop %rcx
.endm

/* After a lane's call (its machine::LaneExit in rax:rdx): back to the guest by sysretq
 * when the lane says Return, with rax its result and every other register from
 * LANE_PUSH's save area; else on to \other, the save area still pushed. */
.macro LANE_RETURN_OR other
    cmp $FAST_RETURN, %edx
    jne \other
    FAST_FPU_EXIT %rdx
    LANE_POP
    mov %gs:PERCPU_SCRATCH, %rsp
    swapgs
    sysretq
.endm

/* Calls the jumping lane \fn(rip, rflags, rsp = the guest's, saved in PERCPU_SCRATCH)
 * from LANE_PUSH's save area, the guest's rax in PERCPU_LANE_RAX; leaves its
 * machine::LaneJump in rax:rdx and ZF set when it declined. */
.macro CALL_JUMPING_LANE fn, rip, rflags
    mov \rip, %rdi
    mov \rflags, %rsi
    mov %gs:PERCPU_SCRATCH, %rdx
    SSE_FREE_CALL \fn
    test %rax, %rax
.endm

/* The express paths. The crossings every PV kernel makes all the time are done here in
 * assembly first, the way Xen does them: HYPERVISOR_iret (iret_lane), a process's
 * system call (user_syscall_entry), a not-present page fault (exception_stub_14), a
 * send to the sending vCPU itself and the upcall a send leaves due (send_lane), one
 * TLB operation by mmuext_op (mmuext_express) and the null hypercall with the upcall it
 * may leave due (lower_calls), whose lane is the fast path behind the general stub
 * (fast_mmuext_one; hypercall_fast's register_only and upcall_fast). Each
 * takes 40-110 instructions against 150-190 for its lane, whose call into Rust, lock
 * and general checks are most of the cost. An express path takes only the plain case
 * and declines everything else, having changed nothing the guest can see, to its
 * lane, which does it all again with the checked Rust code (and itself declines to the
 * general path): so every refusal, report, failsafe and upcall delivery stays in Rust,
 * in one place. What they do is the lanes' (machine/lanes.rs: iret_lane,
 * user_syscall_lane, page_fault_lane, send_lane, upcall_lane), check for check
 * (docs/architecture.md, "The express paths", lists them):
 *  - the vCPU on this CPU (PERCPU_EXPRESS_VCPU, set by machine.rs's switch_to; 0 turns
 *    them off: `express=off`, which also points LSTAR at syscall_entry_lanes, without
 *    the null hypercall's and mmuext_op's, which therefore test no switch), in the mode
 *    the entry serves;
 *  - guest memory only inside the guest's part of the address space, tested as the
 *    accessor does (JUMP_UNLESS_GUEST_RANGE; JUMP_UNLESS_GUEST_PAGE for stores, which
 *    stay inside one page, so that the first faults or none does), read or written by
 *    GUARDED instructions, whose page fault declines; each guest word read once;
 *  - every value checked as the Rust code checks it (iret::checked, push_bounce), the
 *    event mask and pending byte of the vcpu_info as the lanes test them;
 *  - on success the machine state they change recorded where Rust keeps it (the
 *    vCPU's mode, the per-CPU Loaded record's root, GS base and mode), every field found by
 *    an offset Rust computes (offset_of!, the constants above).
 * The machine lock is not taken: these run only while a guest runs, which on this one
 * CPU means nothing in the hypervisor holds it. A ring-0 fault on anything but a
 * guarded access is a hypervisor bug, reported as one (ring0_pf). */

/* An exception-table entry: a page fault at \at resumes at \fixup (ring0_pf). */
.macro EXTABLE at, fixup
    .pushsection .hv_extable, "a"
    .balign 4
    .long \at - .
    .long \fixup - .
    .popsection
.endm

/* \insn, an access to guest memory: a page fault on it resumes at \fixup. */
.macro GUARDED fixup, insn:vararg
.Lguarded\@:
    \insn
    EXTABLE .Lguarded\@, \fixup
.endm

/* \insn (stac or clac), a SMAP site: its address goes in .hv_smap_sites (a 32-bit offset
 * from the entry itself, between __hv_smap_sites_start and __hv_smap_sites_end), and
 * where the CPU has no SMAP the boot overwrites it with a three-byte nop (patch.rs),
 * before any guest runs: as Xen's and Linux's alternatives, one instruction per site
 * with no test of a flag, and no #UD where stac/clac do not exist. */
.macro SMAP_SITE insn
.Lsmap_site\@:
    \insn
    .pushsection .hv_smap_sites, "a"
    .balign 4
    .long .Lsmap_site\@ - .
    .popsection
.endm

/* Guest accesses from ring 0 need RFLAGS.AC while SMAP is on: open and close them. */
.macro SMAP_OPEN
    SMAP_SITE stac
.endm

.macro SMAP_CLOSE
    SMAP_SITE clac
.endm

/* Jumps to \target unless \reg is canonical (bits 63..47 all equal: \reg + 2^47 <
 * 2^48). Clobbers \tmp. */
.macro JUMP_UNLESS_CANONICAL reg, tmp, target
    movabs $0x800000000000, \tmp
    add \reg, \tmp
    shr $48, \tmp
    jnz \target
.endm

/* Jumps to \target unless the \size bytes at \reg lie in the guest's part of the
 * address space, as hypervisor::guestmem::mmu_may_copy tests it: the upper part first
 * (\reg - GUEST_UPPER_START <= 2^64 - 1 - GUEST_UPPER_START - (\size - 1), one unsigned
 * compare of the difference), then below the canonical hole. For loads, each guarded:
 * the bytes may span two pages. Clobbers \tmp and \tmp2. */
.macro JUMP_UNLESS_GUEST_RANGE reg, size, tmp, tmp2, target
    movabs $(GUEST_UPPER_DISTANCE - (\size - 1)), \tmp2
    lea (\reg, \tmp2), \tmp
    add $(\size - 1), \tmp         /* \reg - GUEST_UPPER_START */
    cmp \tmp2, \tmp
    jb .Lguest_range\@
    movabs $(LOWER_HALF_END - \size), \tmp
    cmp \tmp, \reg
    ja \target
.Lguest_range\@:
.endm

/* Jumps to \target unless the \size bytes at \reg lie inside one page of the guest's
 * part of the address space: below the canonical hole or above the hypervisor's L4
 * slots (GUEST_RANGE_*, see arch/x86_64/mod.rs; the bounds are page-aligned, so a page
 * is wholly in or out). Clobbers \tmp. */
.macro JUMP_UNLESS_GUEST_PAGE reg, size, tmp, target
    mov \reg, \tmp
    and $0xfff, \tmp
    cmp $(4096 - \size), \tmp
    ja \target
    mov \reg, \tmp
    sar $43, \tmp
    add $GUEST_RANGE_BIAS, \tmp
    cmp $GUEST_RANGE_SPAN, \tmp
    jae \target
.endm

/* Loads the guest GS base of the mode just entered from \field of the vCPU at \vcpu
 * into KERNEL_GS_BASE (where the guest's waits until the exit's swapgs), and records it
 * in the per-CPU Loaded record; unless it and the recorded one are both 0. (The
 * record is what was written, not what is live: ring 3 can load %gs, which sets the
 * base to its descriptor's, 0 for every one a guest can load. So only a 0 is known
 * to be live still; as machine::load_hardware.) Clobbers rax, rcx, rdx. */
.macro LOAD_GUEST_GS vcpu, field
    mov \field(\vcpu), %rax
    mov %rax, %rdx
    or %gs:PERCPU_LOADED_GS, %rdx
    jz .Lgs_loaded\@
    mov %rax, %gs:PERCPU_LOADED_GS
    mov %rax, %rdx
    shr $32, %rdx
    mov $MSR_KERNEL_GS_BASE, %ecx
    wrmsr
.Lgs_loaded\@:
.endm

/* The on-CPU vCPU of the express paths into \reg; to \decline if there is none
 * (express=off, or none loaded). */
.macro EXPRESS_VCPU reg, decline
    mov %gs:PERCPU_EXPRESS_VCPU, \reg
    test \reg, \reg
    jz \decline
.endm

/* A guest handler's address, \field of the vCPU at \vcpu, into \reg; to \decline if
 * it is 0 (none registered). Any other value is a canonical guest address: the
 * hypercalls that register handlers refuse the rest (domain.rs, `Callbacks`), so
 * push_bounce's canonical test holds already. */
.macro EXPRESS_HANDLER vcpu, field, reg, decline
    mov \field(\vcpu), \reg
    test \reg, \reg
    jz \decline
.endm

/* The on-CPU vCPU's vcpu_info (its direct-map address, PerCpu::vcpu_info) into \reg. */
.macro EXPRESS_VCPU_INFO reg
    mov %gs:PERCPU_VCPU_INFO, \reg
.endm

/* Sets CF exactly when an upcall is due for the vcpu_info at \vi: its pending byte set
 * and its mask clear, read as one word (machine::upcall_due). Clobbers \tmp32. */
.macro TEST_UPCALL_DUE vi, tmp32
    movzwl VI_PENDING(\vi), \tmp32
    dec \tmp32
    cmp $0xff, \tmp32
.endm

/* Makes \reg, a guest stack pointer, the address of a \size-byte bounce frame below it
 * (16-byte aligned first, as push_frame does); to \decline if that wraps or the frame
 * does not lie in one page of the guest's part. Clobbers \tmp. */
.macro BOUNCE_FRAME reg, size, tmp, decline
    and $-16, \reg
    sub $\size, \reg
    jb \decline
    JUMP_UNLESS_GUEST_PAGE \reg, \size, \tmp, \decline
.endm

/* Writes the bounce frame of an upcall after a kernel's syscall at \frame (from
 * BOUNCE_FRAME, 56 bytes: one page, so the first store faults or none does): rcx r11
 * rip cs(RPL 0) rflags(IF) rsp ss, rip and RFLAGS the syscall's (rcx and r11 as the
 * syscall left them), the stack pointer the kernel's (PERCPU_SCRATCH); a fault goes to
 * \fixup. Clobbers \tmp. */
.macro UPCALL_AFTER_SYSCALL_FRAME frame, tmp, fixup
    GUARDED \fixup, mov %rcx, (\frame)
    GUARDED \fixup, mov %r11, 8(\frame)
    GUARDED \fixup, mov %rcx, 16(\frame)
    GUARDED \fixup, movq $(FLAT_RING3_CS64 & ~3), 24(\frame)
    mov %r11, \tmp
    or $RFLAGS_IF, \tmp
    GUARDED \fixup, mov \tmp, 32(\frame)
    mov %gs:PERCPU_SCRATCH, \tmp
    GUARDED \fixup, mov \tmp, 40(\frame)
    GUARDED \fixup, movq $FLAT_RING3_SS64, 48(\frame)
.endm

/* The upcall due after an express call (the express send, the null hypercall),
 * bounced as upcall_lane bounces the kernel's context after its syscall: a frame on
 * the kernel's stack below its rsp at the syscall (UPCALL_AFTER_SYSCALL_FRAME, with rcx
 * and r11 still the syscall's), events masked, and sysretq into the event callback
 * with rax \result and edi \edi_value (immediates: what the call gives back there),
 * every other register as the syscall left it. Entered with rdi the vcpu_info and rdx
 * pushed; to \decline, having written nothing (no callback, no room for the frame, or
 * its first store faulted: it lies in one page), with SMAP closed, rsi as it came and
 * rdx still pushed. */
.macro EXPRESS_UPCALL_AFTER_SYSCALL result, edi_value, decline
    push %rsi
    mov %gs:PERCPU_EXPRESS_VCPU, %rax
    EXPRESS_HANDLER %rax, VCPU_EVENT_CALLBACK, %rax, .Lupcall_declined\@
    mov %gs:PERCPU_SCRATCH, %rdx    /* the kernel's stack pointer */
    BOUNCE_FRAME %rdx, 56, %rsi, .Lupcall_declined\@
    SMAP_OPEN
    UPCALL_AFTER_SYSCALL_FRAME %rdx, %rsi, .Lupcall_declined\@
    SMAP_CLOSE
    movb $1, VI_MASK(%rdi)
    /* To the callback on that frame, by sysretq: rcx the callback, r11 its RFLAGS (as
     * lane_jump leaves them). */
    mov \edi_value, %edi
    mov %rdx, %gs:PERCPU_SCRATCH
    pop %rsi
    pop %rdx
    mov %rax, %rcx
    and $BOUNCE_RFLAGS_KEEP, %r11
    or $BOUNCE_RFLAGS_SET, %r11
    mov \result, %eax
    mov %gs:PERCPU_SCRATCH, %rsp
    swapgs
    sysretq
.Lupcall_declined\@:
    SMAP_CLOSE
    pop %rsi
    jmp \decline
.endm

/* Makes \reg the address of a \size-byte bounce frame below the guest kernel stack of
 * the vCPU at \vcpu; to \decline if none fits there. The vCPU keeps the stack's
 * 16-byte aligned top checked (domain::kernel_frame_top: frames of seven and eight
 * words inside one page of the guest's part; 0 if not), so no test is left here. */
.macro KERNEL_FRAME vcpu, size, reg, decline
    mov VCPU_KERNEL_FRAME_TOP(\vcpu), \reg
    test \reg, \reg
    jz \decline
    sub $\size, \reg
.endm

/* Loads the kernel page table of the vCPU at \vcpu unless it is the loaded one, and
 * records it in the per-CPU Loaded record (so that a decline after it leaves the
 * record true). Clobbers rax. */
.macro LOAD_KERNEL_ROOT vcpu
    mov VCPU_KERNEL_ROOT(\vcpu), %rax
    shl $12, %rax
    cmp %gs:PERCPU_LOADED_ROOT, %rax
    je .Lroot_loaded\@
    mov %rax, %cr3
    mov %rax, %gs:PERCPU_LOADED_ROOT
.Lroot_loaded\@:
.endm

/* The event mask of the vcpu_info at \vi, read once, as a bounce frame shows it:
 * \reg = RFLAGS_IF if unmasked, 0 if masked (SHOWN_MASK_CS_BIT then turns that into
 * the CS slot's mask bit, 1 << 32 if masked). */
.macro SHOWN_MASK_IF vi, reg, reg32
    cmpb $1, VI_MASK(\vi)
    sbb \reg, \reg                 /* -1: unmasked, 0: masked */
    and $RFLAGS_IF, \reg32
.endm

.macro SHOWN_MASK_CS_BIT reg, reg32
    xor $RFLAGS_IF, \reg32
    shl $(32 - 9), \reg             /* RFLAGS_IF is bit 9 */
.endm

/* The vCPU at \vcpu is now in its kernel mode: recorded in it and in the per-CPU
 * Loaded record (whose mode byte the syscall entry dispatches on), with the kernel's GS
 * base loaded (load_mode; the page table is the caller's, loaded before the frame was
 * written). Clobbers rax, rcx, rdx. */
.macro ENTER_KERNEL_MODE vcpu
    movb $1, VCPU_KERNEL_MODE(\vcpu)
    movb $MODE_KERNEL, %gs:PERCPU_LOADED_MODE
    LOAD_GUEST_GS \vcpu, VCPU_GS_KERNEL
.endm

/* The registers the #PF express path uses, below the CPU's frame (PF_* offsets). */
.macro PF_EXPRESS_PUSH
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
.endm

.macro PF_EXPRESS_POP
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
.endm

/* The stubs have a section of their own, first in .text (link.ld). */
.section .text.entry, "ax"
/* syscall from ring 3 (LSTAR, set once at boot). Unless the vCPU on this CPU is in its
 * kernel mode (the mode byte of the per-CPU Loaded record, which every mode switch
 * writes, as Xen tests its vCPU's kernel-mode flag), a process's system call for its
 * kernel: user_syscall_entry below (it reaches the general stub only when its lane
 * declines). In kernel mode, a hypercall. HYPERVISOR_iret takes the iret lane, an
 * event send the send lane, mmuext_op the express mmuext_op and xen_version the
 * express null hypercall, all below (each declines to the general stub what it does
 * not take); everything else the general stub,
 * which saves only what Rust may clobber (the caller-saved registers) and asks
 * hv_hypercall_fast, which either declines (nothing happened), finishes the call
 * (return straight to the guest), or ran it but needs the full exit path. For the last
 * two, the callee-saved registers (still the guest's: Rust preserved them) complete the
 * frame first. */
.macro SYSCALL_ENTRY_HEAD
    swapgs
    mov %rsp, %gs:PERCPU_SCRATCH
    mov %gs:PERCPU_STACK_TOP, %rsp
    /* Anything but kernel mode (None: no vCPU loaded, never while a guest runs) takes
     * the less privileged way, as Rust's dispatch does. */
    cmpb $MODE_KERNEL, %gs:PERCPU_LOADED_MODE
    jne user_syscall_entry
.endm

/* The entry with the express paths off (`express=off`, for the `lanes` scenario: LSTAR
 * points here instead, arch::x86_64::express_off): no express null hypercall or
 * mmuext_op, whose lane is the general stub; the iret and the send keep their lanes,
 * whose express parts decline (PERCPU_EXPRESS_VCPU is 0). So the express null
 * hypercall needs no switch of its own. */
.global syscall_entry_lanes
syscall_entry_lanes:
    SYSCALL_ENTRY_HEAD
    cmp $HYPERCALL_IRET, %rax
    je iret_lane
    cmp $HYPERCALL_EVENT_CHANNEL_OP, %rax
    je send_lane
    jmp syscall_general

.global syscall_entry
syscall_entry:
    SYSCALL_ENTRY_HEAD
    /* HYPERVISOR_iret first, the commonest (every return from a trap or an event);
     * every call numbered below it (the null hypercall, the page-table calls, the
     * multicall) goes to the null hypercall's test on the same compare. */
    cmp $HYPERCALL_IRET, %rax
    je iret_lane
    jb lower_calls
    cmp $HYPERCALL_EVENT_CHANNEL_OP, %rax
    je send_lane
    cmp $HYPERCALL_MMUEXT_OP, %rax
    je mmuext_express

syscall_general:
    SYSCALL_FRAME
    /* CR0.TS stays as the guest left it on the SSE-free fast path (release builds; see
     * SSE_FREE_FAST_PATH): everything after it sets TS or saves first. */
    SSE_FREE_ENTRY
    /* The return address must be canonical: a `syscall` in the last two bytes of the
     * lower half leaves rcx past its top, where neither sysretq nor iretq may go (on a
     * real CPU both fault in ring 0, with the guest's registers loaded). That syscall
     * becomes the #GP it raises instead (syscall_off_the_end), before anything runs. */
    JUMP_UNLESS_RCX_CANONICAL syscall_off_the_end
    /* (FMASK cleared DF.) */
    mov %rsp, %rdi
    SSE_FREE_CALL hv_hypercall_fast
syscall_fast_exit:
    cmp $FAST_RETURN, %eax
    jne 5f
    /* Only rax changed: back after the syscall by sysretq, which takes rip from rcx and
     * rflags from r11 as the syscall left them (frame.rip and frame.rflags hold the same;
     * rcx was checked canonical on entry) and CS/SS from STAR (FLAT_RING3_CS64/SS64). */
    mov FRAME_RCX(%rsp), %rcx
    FAST_FPU_EXIT
    RESTORE_CALLER_SAVED_BUT_RCX
    mov FRAME_RSP(%rsp), %rsp
    swapgs
    sysretq
5:  cmp $FAST_RESUME, %eax
    jne 2f
/* Back to the guest from a frame that holds only the caller-saved registers (the
 * callee-saved ones never left the CPU): the fast path's Resume, the #PF lane. By
 * sysretq when that leaves what iretq would (JUMP_UNLESS_SYSRET_SAME), else iretq. */
resume_caller_saved:
    FAST_FPU_EXIT
    JUMP_UNLESS_SYSRET_SAME 1f
    mov FRAME_RCX(%rsp), %rcx
    RESTORE_CALLER_SAVED_BUT_RCX
    mov FRAME_RSP(%rsp), %rsp
    swapgs
    sysretq
1:  mov FRAME_RCX(%rsp), %rcx
    RESTORE_CALLER_SAVED_BUT_RCX
    add $(FRAME_GPRS + 16), %rsp
    swapgs
    iretq
2:  cmp $FAST_GENERAL, %eax
    je 6f
    SAVE_CALLEE_SAVED
    mov %rsp, %rdi
    cmp $FAST_DECLINED, %eax
    je 4f
    /* The full exit path uses SSE. */
    FPU_NET_FOR_FULL_PATH
    call hv_hypercall_finish
    jmp guest_exit
    /* Declined: the general trap path, which uses SSE; the guest's XMM registers saved
     * here, since a syscall's full path is sure to use them. */
4:  call hv_save_fpu_xmm
    mov %rsp, %rdi
    call hv_trap_entry
    jmp guest_exit
/* General: a per-domain call for the general handlers, which use SSE: the guest's XMM
 * registers saved first, then hv_hypercall_domain, which answers as hv_hypercall_fast
 * does (never General). */
6:  call hv_save_fpu_xmm
    mov %rsp, %rdi
    call hv_hypercall_domain
    jmp syscall_fast_exit

/* A `syscall` whose return address is not canonical (see syscall_general): the frame
 * becomes that of the #GP the instruction raises, at the instruction itself (rcx - 2,
 * canonical since the instruction ran there), error code 0 (the frame's already), every
 * register as the guest left it; the trap path reflects it to the guest kernel like any
 * #GP it does not emulate. The call is not made. */
syscall_off_the_end:
    movq $13, FRAME_VECTOR(%rsp)
    LAZY_FPU_ENTRY
/* A `syscall` whose general frame is built becomes the fault in FRAME_VECTOR, raised at
 * the instruction itself (rip back over its two bytes), taken by the trap path. */
syscall_as_fault:
    subq $2, FRAME_RIP(%rsp)
    SAVE_CALLEE_SAVED
    mov %rsp, %rdi
    call hv_trap_entry
    jmp guest_exit

/* `syscall` from compatibility mode (CSTAR). No guest reaches it: the GDT has no 32-bit
 * code segment a guest can load (FLAT_RING3_CS32 is only the sysret base: see gdt.rs)
 * and a guest cannot install descriptors of its own. It is here so that CSTAR never
 * points anywhere else: were it reached, the instruction becomes a #UD at itself (rcx
 * - 2, a zero-extended 32-bit address), shown with the selector it ran under and every
 * register as the guest left it, which the trap path reflects to the guest kernel (or
 * stops the domain). That is what an Intel CPU does, and what Xen does for a guest with
 * no syscall32 callback (CALLBACKOP_register refuses that type here). */
.global compat_syscall_entry
compat_syscall_entry:
    swapgs
    mov %rsp, %gs:PERCPU_SCRATCH
    mov %gs:PERCPU_STACK_TOP, %rsp
    SYSCALL_FRAME
    LAZY_FPU_ENTRY
    movq $FLAT_RING3_CS32, FRAME_CS(%rsp)
    movq $VECTOR_UD, FRAME_VECTOR(%rsp)
    jmp syscall_as_fault

/* The express null hypercall (see "The express paths" above): xen_version with
 * XENVER_version, which the fast path answers before building any context
 * (hypercall::version::register_only). A PV kernel makes it to have an upcall
 * delivered that became due while events were masked, after it unmasks them (Linux's
 * xen_force_evtchn_callback, on every irq enable that finds an event pending): so an
 * upcall due is bounced from here, as after the express send. A return address that
 * is not canonical, any other sub-command or a bounce that does not fit: the general
 * stub, with every register as it came. rdi (0, tested) is scratch, given back as 0.
 * Only syscall_entry comes here, never syscall_entry_lanes (express=off), so the
 * vCPU's vcpu_info (and, in the bounce, the vCPU itself: EXPRESS_UPCALL_AFTER_SYSCALL)
 * is read without the test of PERCPU_EXPRESS_VCPU the other express paths make: a
 * guest in kernel mode (the entry's mode test) is the loaded vCPU, whose words
 * switch_to recorded (machine.rs, which asserts them; 0 only after a teardown, which
 * leaves no mode loaded). */
lower_calls:
    cmp $HYPERCALL_XEN_VERSION, %rax
    jne paging_calls
    test %rdi, %rdi
    jnz syscall_general
    JUMP_UNLESS_CANONICAL %rcx, %rdi, .Lversion_decline
    EXPRESS_VCPU_INFO %rdi
    TEST_UPCALL_DUE %rdi, %eax
    jb 6f
    mov $XEN_VERSION_WORD, %eax
    xor %edi, %edi
    mov %gs:PERCPU_SCRATCH, %rsp
    swapgs
    sysretq
6:  push %rdx
    EXPRESS_UPCALL_AFTER_SYSCALL $XEN_VERSION_WORD, $0, 7f
7:  pop %rdx
.Lversion_decline:
    mov $HYPERCALL_XEN_VERSION, %eax
    xor %edi, %edi
    jmp syscall_general

/* The paging lane (machine/lanes.rs, paging_lane): update_va_mapping, and mmu_update
 * of one request (the low 32 bits of the count, as mmu_update reads it), the page-table
 * calls a PV kernel makes one at a time, with no trap frame, no dispatch and nothing
 * saved but what Rust may clobber (LANE_PUSH). The lane does the fast path's work with
 * the same code (hypercall::light_update_va_mapping, light_mmu_update) and leaves by
 * sysretq with every register but rax as it was. Declined (nothing done): a batch, a
 * non-canonical return address, a busy lock, an upcall due, anything the light paths
 * leave to the general path; the general stub then takes the call with every register
 * as it came. Only syscall_entry comes here, never syscall_entry_lanes (express=off),
 * so that the `lanes` scenario runs these calls on the fast path behind it. rax (the
 * number) waits in PERCPU_LANE_RAX for a decline. */
paging_calls:
    cmp $HYPERCALL_UPDATE_VA_MAPPING, %rax
    je paging_lane
    cmp $HYPERCALL_MMU_UPDATE, %rax
    jne syscall_general
    cmp $1, %esi
    jne syscall_general
paging_lane:
    mov %rax, %gs:PERCPU_LANE_RAX
    LANE_PUSH
    SSE_FREE_ENTRY
    /* (r11, the guest's RFLAGS, is saved: scratch until LANE_POP.) */
    JUMP_UNLESS_CANONICAL %rcx, %r11, 1f
    /* hv_paging_lane(number, rdi, rsi, rdx, r10): the call's four arguments. */
    mov %r10, %r8
    mov %rdx, %rcx
    mov %rsi, %rdx
    mov %rdi, %rsi
    mov %gs:PERCPU_LANE_RAX, %rdi
    SSE_FREE_CALL hv_paging_lane    /* (result, how) in rax:rdx */
    LANE_RETURN_OR 1f
1:  LANE_POP
    mov %gs:PERCPU_LANE_RAX, %rax
    jmp syscall_general

/* The express mmuext_op (see "The express paths" above): one TLB operation of the
 * caller's own, what light_mmuext_op (hypercall/mmu.rs) does on the fast path, check
 * for check, without the frame, the lock, Rust or a CR0 write: an INVLPG or a TLB flush
 * (each _LOCAL or _ALL: the domain's vCPUs all run on this CPU), or MMUEXT_NEW_BASEPTR
 * to the vCPU's current kernel root (a reload). Linux issues these one at a time, as
 * plain hypercalls (its xen_mc_flush calls a batch of one directly: a flush of one
 * page after a PTE change, of the whole TLB). Only the plain case: a count of 1 (the
 * low 32 bits, mmuext_op's unsigned int), no done count, DOMID_SELF, a canonical
 * return address, no upcall due (else the fast path delivers it on the way out); all
 * else, and any fault reading the request, declines to the general stub with every
 * register as it came, nothing done. rax is free (the number, put back on a decline);
 * rdx and r10 serve as scratch and are given back (0 and DOMID_SELF, the values
 * tested). Only syscall_entry comes here, never syscall_entry_lanes (express=off), so
 * the vCPU (PERCPU_EXPRESS_VCPU, set whenever a vCPU is loaded while the express paths
 * are on) is read without a test, and only by NEW_BASEPTR. */
mmuext_express:
    cmp $1, %esi
    jne syscall_general
    test %rdx, %rdx
    jnz syscall_general
    cmp $DOMID_SELF, %r10
    jne syscall_general
    JUMP_UNLESS_CANONICAL %rcx, %rdx, .Lmmuext_decline
    EXPRESS_VCPU_INFO %rdx
    TEST_UPCALL_DUE %rdx, %edx
    jb .Lmmuext_decline
    /* The request: its 24 bytes, each word read once (a fault anywhere in them is the
     * general path's EFAULT, as the Rust reading the whole struct meets it). */
    JUMP_UNLESS_GUEST_RANGE %rdi, MMUEXT_OP_SIZE, %rdx, %r10, .Lmmuext_decline
    SMAP_OPEN
    GUARDED .Lmmuext_fault, mov MMUEXT_OP_ARG2(%rdi), %rdx
    GUARDED .Lmmuext_fault, mov MMUEXT_OP_ARG1(%rdi), %r10
    GUARDED .Lmmuext_fault, movl MMUEXT_OP_CMD(%rdi), %edx
    SMAP_CLOSE
    cmp $MMUEXT_NEW_BASEPTR, %edx
    je 3f
    /* simple_tlb_op: cmd - LOCAL being 0 or 4 (the _ALL form). */
    sub $MMUEXT_INVLPG_LOCAL, %edx
    test $~4, %edx
    jz 2f
    add $(MMUEXT_INVLPG_LOCAL - MMUEXT_TLB_FLUSH_LOCAL), %edx
    test $~4, %edx
    jnz .Lmmuext_decline
    /* The whole TLB, global entries too (cpu::flush_tlb_all: CR4.PGE off and on). */
    mov %cr4, %rax
    mov %rax, %rdx
    and $~CR4_PGE, %rdx
    mov %rdx, %cr4
    mov %rax, %cr4
    jmp 4f
    /* One page, if the address is the guest's (Xen's __addr_ok, mmu_may_copy(va, 1));
     * any other: nothing, and success. */
2:  JUMP_UNLESS_GUEST_RANGE %r10, 1, %rax, %rdx, 4f
    invlpg (%r10)
    jmp 4f
    /* To the vCPU's kernel root, the one loaded: a reload, recorded as the Rust path
     * records it; to any other root the general path's (it validates and counts). */
3:  mov %gs:PERCPU_EXPRESS_VCPU, %rax
    cmp VCPU_KERNEL_ROOT(%rax), %r10
    jne .Lmmuext_decline
    shl $12, %r10
    mov %r10, %cr3
    mov %r10, %gs:PERCPU_LOADED_ROOT
    /* Done: the result 0, every register but rax as the syscall left it. */
4:  xor %eax, %eax
    xor %edx, %edx
    mov $DOMID_SELF, %r10d
    mov %gs:PERCPU_SCRATCH, %rsp
    swapgs
    sysretq
.Lmmuext_fault:
    SMAP_CLOSE
.Lmmuext_decline:
    mov $HYPERCALL_MMUEXT_OP, %eax
    xor %edx, %edx
    mov $DOMID_SELF, %r10d
    jmp syscall_general

/* The send lane: EVTCHNOP_send from a guest kernel, the notification of every PV ring,
 * with the least around it. No TrapFrame: the registers Rust may clobber are pushed as
 * they are (see LANE_PUSH), and hv_send_lane(rdi, rsi) returns the call's result (rax)
 * and how to leave (rdx, a machine::FastEntry): Return, back by sysretq with every
 * register but rax as it was; Declined, nothing happened: the registers as they came,
 * to the general stub (a process's system call, a busy lock, anything unusual);
 * Finish, the call ran but the way out needs more (an upcall to deliver, a vCPU
 * switch): the general frame is built with the result in rax and hv_send_lane_exit
 * says how to leave, as hv_hypercall_fast would. */
send_lane:
    cmp $EVTCHNOP_SEND, %rdi
    jne syscall_general
    /* A return address that is not canonical is the general stub's to refuse (see
     * syscall_general). */
    JUMP_UNLESS_RCX_CANONICAL 2f
    /* The express send first (see "The express paths" above): a send on an IPI port
     * bound to the sending vCPU itself (a kernel's self-notification: Linux's irq_work
     * self-IPI, the benchmark's send), while no vCPU of its domain polls: what
     * events::send_raise does for it, check for check, with no wake-up to owe (the
     * receiver is running). Every other send (to another vCPU or domain, which may
     * need waking) is the lane's. rax and rdi are free (the call's number and
     * EVTCHNOP_SEND, given back on a decline); rdx is saved. The order of the tests
     * puts a send to another domain (a split driver's) on its way to the lane soonest. */
    mov %gs:PERCPU_EXPRESS_EVENTS, %rdi     /* the domain's guests::Runtime; 0: off */
    test %rdi, %rdi
    jz .Lsend_lane_rust
    push %rdx
    /* The port: four bytes of guest memory, read once. */
    JUMP_UNLESS_GUEST_RANGE %rsi, 4, %rax, %rdx, .Lsend_decline
    SMAP_OPEN
    GUARDED .Lsend_decline, movl (%rsi), %eax
    SMAP_CLOSE
    /* Its channel (EventTable::open: in range, then bound; port 0 never is): an IPI
     * (Binding::IPI_TAG, the tag byte) notifying the vCPU on this CPU. */
    cmp $MAX_PORTS, %eax
    jae .Lsend_decline_port
    lea (%rax,%rax,2), %rdx
    lea RUNTIME_CHANNELS(%rdi,%rdx,4), %rdx         /* + port * 12 */
    cmpb $BINDING_IPI, CHANNEL_TAG(%rdx)
    jne .Lsend_decline_port
    /* No vCPU of the domain polls (else a raise may owe a poller its wake-up). */
    cmpb $0, RUNTIME_POLLERS(%rdi)
    jne .Lsend_decline_port
    mov CHANNEL_VCPU(%rdx), %edx
    mov %gs:PERCPU_EXPRESS_VCPU, %rdi
    cmp VCPU_ID(%rdi), %edx
    jne .Lsend_decline_port
    /* Accepted: from here on nothing declines. The raise (evtchn::shared, Xen's
     * evtchn_2l_set_pending): the pending bit; unless it was set or the port is masked
     * (no vCPU polls), the selector bit of port / 64; if that was clear, the upcall
     * flag. The domain is running: its vCPU is on the CPU, and a domain that stops is
     * torn down (teardown clears these pointers) before any guest runs again
     * (switch_to asserts it). */
    mov %gs:PERCPU_EXPRESS_SHARED, %rdi
    lock bts %rax, SI_PENDING(%rdi)
    jc 5f
    bt %rax, SI_MASK(%rdi)
    jc 5f
    shr $6, %eax
    EXPRESS_VCPU_INFO %rdi
    lock bts %rax, VI_SEL(%rdi)
    jc 5f
    movb $1, VI_PENDING(%rdi)
    /* The result is 0. An upcall due (this send's, or one due before it, as the lane
     * asks upcall_due) is delivered on the way out (6: below); else back by sysretq,
     * every register but rax as it came (rdi EVTCHNOP_SEND again: it held hypervisor
     * addresses). */
5:  EXPRESS_VCPU_INFO %rdi
    TEST_UPCALL_DUE %rdi, %edx
    jb 6f
    pop %rdx
    mov $EVTCHNOP_SEND, %edi
    xor %eax, %eax
    mov %gs:PERCPU_SCRATCH, %rsp
    swapgs
    sysretq
    /* Deliver, as the Deliver code below does it (upcall_lane's bounce of the
     * kernel's context after its syscall to the event callback), with rcx and r11
     * still the syscall's; rsi saved too. Declined, the lane's Rust part delivers it. */
6:  EXPRESS_UPCALL_AFTER_SYSCALL $0, $EVTCHNOP_SEND, 7f
7:  pop %rdx
    mov $EVTCHNOP_SEND, %edi
    LANE_PUSH
    SSE_FREE_ENTRY                  /* Rust from here (the express send left CR0 alone) */
    movq $0, %gs:PERCPU_LANE_RAX
    jmp .Lupcall_lane_rust
/* Declined, nothing changed: the lane, with the registers as they came (rdi
 * EVTCHNOP_SEND again) and the port if it was read (machine::send_lane: then it is not
 * read twice), else PORT_NOT_READ. */
.Lsend_decline_port:
    pop %rdx
    mov $EVTCHNOP_SEND, %edi
    LANE_PUSH
    mov %eax, %edi                  /* the port as read (zero-extended) */
    jmp .Lsend_lane_call
.Lsend_decline:
    SMAP_CLOSE
    pop %rdx
.Lsend_lane_rust:
    mov $EVTCHNOP_SEND, %edi
    LANE_PUSH
    or $PORT_NOT_READ, %rdi
.Lsend_lane_call:
    SSE_FREE_ENTRY
    SSE_FREE_CALL hv_send_lane      /* (port read or PORT_NOT_READ, port pointer) */
    LANE_RETURN_OR 1f
1:  cmp $FAST_DECLINED, %edx
    je 4f
    cmp $FAST_FINISH, %edx
    jne 3f
    LANE_POP
    /* Finish: the send woke a vCPU, which the scheduler must see: the general frame,
     * completed, and the full exit path, as syscall_fast_exit does for a Finish. */
    SYSCALL_FRAME
    SAVE_CALLEE_SAVED
    FPU_NET_FOR_FULL_PATH
    mov %rsp, %rdi
    call hv_hypercall_finish
    jmp guest_exit
    /* Deliver: an upcall is due. hv_upcall_lane bounces the send's own context (after
     * the syscall: rip the saved rcx, rflags the saved r11, the stack as it came, rax
     * the result) to the event callback, from the same save area and by the
     * user-syscall lane's way out (lane_jump). Declined, hv_send_lane_exit delivers it
     * from the general frame. */
3:  mov %rax, %gs:PERCPU_LANE_RAX
    /* The express path first (see "The express paths"): the bounce of the kernel's
     * context after its syscall to the event callback, as hv_upcall_lane does it, on
     * its own stack; left by lane_jump (rax the callback, rdx its stack). The
     * registers in LANE_PUSH's area come back by lane_jump's LANE_POP. */
    /* The rest of what upcall_lane checks holds by construction: the send lane says
     * Deliver only with nothing left for the exit path (a wake-up that dirtied the
     * machine is Finish), from kernel mode, for the domain that made the call, which
     * is running (send_lane asserts the first two in debug builds). */
    EXPRESS_VCPU %rdi, .Lupcall_lane
    EXPRESS_HANDLER %rdi, VCPU_EVENT_CALLBACK, %rax, .Lupcall_lane
    /* Still due, read once: pending, unmasked (so the frame shows events unmasked). */
    EXPRESS_VCPU_INFO %rsi
    TEST_UPCALL_DUE %rsi, %edx
    jae .Lupcall_lane
    mov %gs:PERCPU_SCRATCH, %rdx    /* the kernel's stack pointer */
    BOUNCE_FRAME %rdx, 56, %r9, .Lupcall_lane
    mov 56(%rsp), %rcx
    mov 48(%rsp), %r11
    SMAP_OPEN
    UPCALL_AFTER_SYSCALL_FRAME %rdx, %r8, .Lupcall_lane
    SMAP_CLOSE
    movb $1, VI_MASK(%rsi)
    jmp lane_jump
.Lupcall_lane:
    SMAP_CLOSE
/* (SSE-free from here: hv_upcall_lane and hv_send_lane_exit are checked entries.) */
.Lupcall_lane_rust:
    CALL_JUMPING_LANE hv_upcall_lane, 56(%rsp), 48(%rsp)
    jnz lane_jump
    LANE_POP
    mov %gs:PERCPU_LANE_RAX, %rax
    SYSCALL_FRAME
    mov %rsp, %rdi
    SSE_FREE_CALL hv_send_lane_exit
    jmp syscall_fast_exit
4:  LANE_POP
2:  mov $HYPERCALL_EVENT_CHANNEL_OP, %eax
    jmp syscall_general

/* The iret lane's express path once the guest's iret_context is accepted (rsi its rax,
 * r11 its RFLAGS, cl its CS's low byte, rdi the vCPU; the iretq frame's rip and rsp
 * filled in, rcx and r11 saved at 32 and 24 from rsp, from the context unless it is
 * "in syscall"): the event mask from IF, the sanitised RFLAGS, after a return to user
 * mode its page table, GS base and mode; then out by `leave`. With sysretq (the
 * context "in syscall") rcx takes the return address and r11 the RFLAGS, as the
 * instruction needs them, and CS and SS are the flat selectors STAR names, which are
 * the ones iretq would load; rip was tested canonical, so sysretq cannot fault in ring 0. */
.macro IRET_LANE_ACCEPT leave
    mov %rsi, %gs:PERCPU_LANE_RAX
    EXPRESS_VCPU_INFO %rdx
    test $RFLAGS_IF, %r11d
    setz VI_MASK(%rdx)
    and $GUEST_RFLAGS_SETTABLE, %r11
    or $(RFLAGS_IF | RFLAGS_RESERVED_ONE), %r11
    .ifc \leave, iretq
    mov %r11, 56(%rsp)
    movq $FLAT_RING3_CS64, 48(%rsp)
    movq $FLAT_RING3_SS64, 72(%rsp)
    .endif
    cmp $(FLAT_RING3_CS64 & 0xff), %cl
    jne 5f
    /* To user mode: its page table and GS base, and the mode (from here on its
     * `syscall` is a system call). */
    movb $0, VCPU_KERNEL_MODE(%rdi)
    movb $MODE_USER, %gs:PERCPU_LOADED_MODE
    mov VCPU_USER_ROOT(%rdi), %rax
    cmp %gs:PERCPU_LOADED_ROOT, %rax
    je 6f
    mov %rax, %cr3
    mov %rax, %gs:PERCPU_LOADED_ROOT
6:  LOAD_GUEST_GS %rdi, VCPU_GS_USER
5:  pop %rdi
    pop %rsi
    pop %rdx
    .ifc \leave, iretq
    pop %r11
    pop %rcx
    mov %gs:PERCPU_LANE_RAX, %rax
    swapgs
    iretq
    .else
    mov 16(%rsp), %rcx              /* the return address (the iretq frame's rip) */
    mov 40(%rsp), %rsp              /* the guest's rsp (the frame's): no stack from here */
    mov %gs:PERCPU_LANE_RAX, %rax
    swapgs
    sysretq
    .endif
.endm

/* The iret lane: HYPERVISOR_iret from a guest kernel (its return to a process, and from
 * every exception and event), with no trap frame: the stub reserves the iretq frame,
 * pushes the registers Rust may clobber below it (LANE_PUSH) and calls
 * hv_iret_lane(frame, guest rsp), which reads and checks the guest's iret_context and
 * fills in the iretq frame and, unless the return keeps them, the saved rcx and r11
 * (machine::IretLaneFrame is this layout). It returns rax and how to leave (rdx):
 * Resume, by iretq; or Declined, having changed nothing (a process's system call, an
 * unreadable or refused frame, an upcall due on return): the general stub takes the
 * call. */
iret_lane:
    /* The express path first (see "The express paths" above). The iretq frame, then
     * the registers it uses; rcx and r11 are the guest's at the call (for a decline),
     * replaced by the context's, or as a sysret leaves them "in syscall". */
    sub $40, %rsp                   /* rip, cs, rflags, rsp, ss at 40..80 */
    push %rcx                       /* 32 */
    push %r11                       /* 24 */
    push %rdx
    push %rsi
    push %rdi
    /* The vCPU is in kernel mode: syscall_entry came here only in the loaded kernel
     * mode, which with a vCPU on the CPU is the vCPU's. */
    EXPRESS_VCPU %rdi, .Liret_decline
    mov %gs:PERCPU_SCRATCH, %rsi    /* the iret_context: rax r11 rcx flags rip cs rflags rsp ss */
    JUMP_UNLESS_GUEST_RANGE %rsi, 72, %rax, %rdx, .Liret_decline
    SMAP_OPEN
    /* Each word of the guest's context is read once. CS and SS: the flat selectors
     * (only their low 16 bits count, RPL any); CS's RPL 3 returns to user mode, which
     * needs a user page table, any other RPL to kernel mode (as iret::checked: the
     * CS test leaves only the RPL to tell, in cl). */
    GUARDED .Liret_decline, mov 40(%rsi), %rcx
    mov %ecx, %eax
    or $3, %eax
    cmp $FLAT_RING3_CS64, %ax
    jne .Liret_decline
    GUARDED .Liret_decline, mov 64(%rsi), %rax
    or $3, %eax
    cmp $FLAT_RING3_SS64, %ax
    jne .Liret_decline
    cmp $(FLAT_RING3_CS64 & 0xff), %cl
    jne 1f
    cmpq $0, VCPU_USER_ROOT(%rdi)
    je .Liret_decline
1:  GUARDED .Liret_decline, mov 32(%rsi), %rax
    JUMP_UNLESS_CANONICAL %rax, %rdx, .Liret_decline
    mov %rax, 40(%rsp)
    GUARDED .Liret_decline, mov 56(%rsi), %rax
    JUMP_UNLESS_CANONICAL %rax, %rdx, .Liret_decline
    mov %rax, 64(%rsp)
    /* RFLAGS: IF clear masks events on return; one that unmasks them with an upcall
     * pending is the lane's (the general path delivers it on the way out). */
    GUARDED .Liret_decline, mov 48(%rsi), %r11
    test $RFLAGS_IF, %r11d
    jz 2f
    EXPRESS_VCPU_INFO %rdx
    cmpb $0, VI_PENDING(%rdx)
    jne .Liret_decline
    /* rax from the context, and rcx and r11 too unless it returns "in syscall": all
     * read before the first is stored, so that a fault still changes nothing. */
2:  GUARDED .Liret_decline, mov 24(%rsi), %rax
    test $VGCF_IN_SYSCALL, %eax
    jnz 3f
    GUARDED .Liret_decline, mov 8(%rsi), %rax
    GUARDED .Liret_decline, mov 16(%rsi), %rdx
    GUARDED .Liret_decline, mov (%rsi), %rsi
    SMAP_CLOSE
    mov %rax, 24(%rsp)
    mov %rdx, 32(%rsp)
    jmp 4f
3:  GUARDED .Liret_decline, mov (%rsi), %rsi
    SMAP_CLOSE
    /* Accepted: from here on nothing declines. "In syscall": rcx and r11 as a sysret
     * leaves them (the return address and the returned RFLAGS, IretReturn::rcx_r11),
     * so it leaves by sysretq, as Xen does (Linux returns from every system call so). */
    IRET_LANE_ACCEPT sysretq
    /* Otherwise rcx and r11 from the context, by iretq. */
4:  IRET_LANE_ACCEPT iretq
/* Declined (nothing changed; a fault on the context lands here too): the lane. */
.Liret_decline:
    SMAP_CLOSE
    pop %rdi
    pop %rsi
    pop %rdx
    pop %r11
    pop %rcx
    add $40, %rsp
iret_lane_rust:
    sub $48, %rsp                   /* rip, cs, rflags, rsp, ss; a word that keeps the
                                     * call's 16-byte alignment */
    LANE_PUSH
    SSE_FREE_ENTRY
    mov %rsp, %rdi
    mov %gs:PERCPU_SCRATCH, %rsi
    SSE_FREE_CALL hv_iret_lane
    cmp $FAST_RESUME, %edx
    jne 1f
    FAST_FPU_EXIT %rdx
    LANE_POP
    swapgs
    iretq
1:  LANE_POP
    add $48, %rsp
    mov $HYPERCALL_IRET, %eax
    jmp syscall_general

/* syscall from guest user mode: syscall_entry comes here (on the hypervisor stack, the
 * guest's rsp in PERCPU_SCRATCH) while the vCPU on this CPU runs its user mode, so a
 * process's system call never meets the hypercall checks. The user-syscall lane bounces it to the guest kernel's syscall
 * callback with no trap frame: every register a process may expect back is pushed,
 * hv_user_syscall_lane(rip, rflags, rsp) writes the bounce frame on the guest kernel's
 * stack and switches the vCPU to kernel mode, and returns the callback (rax; 0:
 * declined, nothing changed) and its stack pointer (rdx); the stub leaves by sysretq
 * with the callback's RFLAGS in r11 (rcx and r11 are in the bounce frame, as after any
 * syscall). Declined (no callback, a bad stack, an upcall due, a non-canonical return
 * address): the general stub, which handles a process's system call too. */
user_syscall_entry:
    mov %rax, %gs:PERCPU_LANE_RAX
    /* The express path first (see "The express paths" above): the registers it uses
     * besides rax (in PERCPU_LANE_RAX); rcx and r11 stay the process's rip and RFLAGS
     * until the frame holds them. */
    push %rdx
    push %rsi
    push %rdi
    push %r8
    /* The vCPU is in user mode: syscall_entry came here for any loaded mode but
     * kernel mode, and with a vCPU on the CPU (EXPRESS_VCPU, else a decline) the loaded
     * mode is the vCPU's, user mode. */
    EXPRESS_VCPU %rdi, .Lsys_decline
    JUMP_UNLESS_RCX_CANONICAL .Lsys_decline
    EXPRESS_HANDLER %rdi, VCPU_SYSCALL, %rax, .Lsys_decline
    /* An upcall due (pending and unmasked) that the callback would not mask: the
     * lane's, whose general path delivers it on the way out. */
    EXPRESS_VCPU_INFO %rsi
    cmpb $0, VCPU_SYSCALL_MASKS(%rdi)
    jne 1f
    TEST_UPCALL_DUE %rsi, %eax
    jb .Lsys_decline
    /* The bounce frame (traps::bounce::push_bounce): seven words below the 16-byte
     * aligned kernel stack pointer, inside one page of the guest's part. */
1:  KERNEL_FRAME %rdi, 56, %r8, .Lsys_decline
    /* The kernel's page table, through which the frame is written (recorded, so that
     * a decline from here on leaves the machine state true). */
    LOAD_KERNEL_ROOT %rdi
    /* rcx r11 rip cs|mask<<32 rflags(IF = !mask) rsp ss; one page, so the first
     * store faults or none does. The mask is read before the first (the frame may
     * be anywhere in the guest's memory, its vcpu_info included). */
    SHOWN_MASK_IF %rsi, %rdx, %edx
    SMAP_OPEN
    GUARDED .Lsys_decline, mov %rcx, (%r8)
    GUARDED .Lsys_decline, mov %r11, 8(%r8)
    GUARDED .Lsys_decline, mov %rcx, 16(%r8)
    mov %r11, %rax
    and $~RFLAGS_IF, %rax
    or %rdx, %rax
    GUARDED .Lsys_decline, mov %rax, 32(%r8)
    SHOWN_MASK_CS_BIT %rdx, %edx
    or $FLAT_RING3_CS64, %rdx
    GUARDED .Lsys_decline, mov %rdx, 24(%r8)
    mov %gs:PERCPU_SCRATCH, %rax
    GUARDED .Lsys_decline, mov %rax, 40(%r8)
    GUARDED .Lsys_decline, movq $FLAT_RING3_SS64, 48(%r8)
    SMAP_CLOSE
    /* Written: events masked if the callback says so, kernel mode with its GS base;
     * into the callback by sysretq on the frame. */
    cmpb $0, VCPU_SYSCALL_MASKS(%rdi)
    je 4f
    movb $1, VI_MASK(%rsi)
4:  mov %r8, %gs:PERCPU_SCRATCH
    ENTER_KERNEL_MODE %rdi
    mov VCPU_SYSCALL(%rdi), %rcx
    and $BOUNCE_RFLAGS_KEEP, %r11
    or $BOUNCE_RFLAGS_SET, %r11
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    mov %gs:PERCPU_LANE_RAX, %rax
    mov %gs:PERCPU_SCRATCH, %rsp
    swapgs
    sysretq
/* Declined (nothing changed but, maybe, the loaded page table, as recorded): the lane. */
.Lsys_decline:
    SMAP_CLOSE
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    LANE_PUSH
    SSE_FREE_ENTRY
    JUMP_UNLESS_RCX_CANONICAL 2f
    CALL_JUMPING_LANE hv_user_syscall_lane, %rcx, %r11
    jz 2f
/* A lane's jump into the guest kernel (machine::LaneJump in rax:rdx) from LANE_PUSH's
 * save area, the guest's rax in PERCPU_LANE_RAX: rip rax, stack rdx, the handler's
 * RFLAGS from r11 (traps::bounce::handler_rflags); every other register as saved. */
lane_jump:
    mov %rdx, %gs:PERCPU_SCRATCH
    FAST_FPU_EXIT %rdx
    LANE_POP
    mov %rax, %rcx
    and $BOUNCE_RFLAGS_KEEP, %r11
    or $BOUNCE_RFLAGS_SET, %r11
    mov %gs:PERCPU_LANE_RAX, %rax
    mov %gs:PERCPU_SCRATCH, %rsp
    swapgs
    sysretq
2:  LANE_POP
    mov %gs:PERCPU_LANE_RAX, %rax
    jmp syscall_general

/* Exception stubs: vectors without a CPU error code push a zero first. */
.macro EXCEPTION_STUB vector, has_error
.p2align 4
exception_stub_\vector:
    .if \has_error == 0
    push $0
    .endif
    push $\vector
    jmp exception_common
.endm

.irp v, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
EXCEPTION_STUB \v, 0
.endr
.irp v, 8,10,11,12,13,17,21,29,30
EXCEPTION_STUB \v, 1
.endr

/* #PF. A not-present fault from a guest, the commonest exception, goes to the #PF lane
 * (hv_page_fault_lane) with a frame of the caller-saved registers only: the lane, like
 * any Rust function, keeps the callee-saved ones, and the general path completes the
 * frame if the lane declines. A fault in ring 0 (a guest access's fix-up: ring0_pf) or
 * a protection fault (maybe a write to a page table, to emulate) takes the common stub.
 * Not-present faults are only ever bounced, on an SSE-free path: the guest's XMM
 * registers stay live behind CR0.TS, as for a syscall. */
.p2align 4
exception_stub_14:
    push $VECTOR_PF
    testb $3, 24(%rsp)              /* the CS the CPU pushed (above rip and the code) */
    jz exception_common
    testb $1, 8(%rsp)               /* error code bit 0: the page was present */
    jnz exception_common
    swapgs
    /* RFLAGS.AC as a guest may leave it (an exception gate keeps it) would switch SMAP
     * off in ring 0 here: cleared, as exception_common does. */
    SMAP_CLOSE
    /* The express path first (see "The express paths"): the bounce of
     * traps::reflect_page_fault as the #PF lane does it, from either guest mode. Its
     * registers below the CPU's frame; rcx and r11 stay the guest's until the bounce
     * frame holds them. */
    PF_EXPRESS_PUSH
    EXPRESS_VCPU %rdi, .Lpf_decline
    EXPRESS_HANDLER %rdi, VCPU_PF_HANDLER, %rax, .Lpf_decline
    EXPRESS_VCPU_INFO %rsi
    /* An upcall due that the handler would not mask: the lane's. */
    testb $TI_IF, VCPU_PF_FLAGS(%rdi)
    jnz 1f
    TEST_UPCALL_DUE %rsi, %eax
    jb .Lpf_decline
    /* ecx: 1 from user mode (the kernel's stack, page table and mode to enter), 0
     * from kernel mode (its own stack). Eight words below the 16-byte aligned stack,
     * inside one page of the guest's part. */
1:  movzbl VCPU_KERNEL_MODE(%rdi), %ecx
    xor $1, %ecx
    jnz 2f
    mov PF_RSP(%rsp), %rdx
    BOUNCE_FRAME %rdx, 64, %rax, .Lpf_decline
    jmp 3f
2:  KERNEL_FRAME %rdi, 64, %rdx, .Lpf_decline
    LOAD_KERNEL_ROOT %rdi
    /* rcx r11 code rip cs|mask<<32 rflags(IF = !mask) rsp ss; the code "user" only
     * from user mode (traps::guest_pf_code), CS with RPL 0 from kernel mode. The mask
     * is read before the first store (as in the syscall path). */
    /* The guest's CR2 into its vcpu_info first, as reflect_page_fault does: every way
     * on from a decline after this bounces this fault or stops the domain. A guarded
     * store's fault overwrites CR2, which the decline then takes back from there. */
3:  mov %cr2, %rax
    mov %rax, VI_CR2(%rsi)
    SHOWN_MASK_IF %rsi, %r8, %r8d
    SMAP_OPEN
    mov PF_RCX(%rsp), %rax
    GUARDED .Lpf_decline_stored, mov %rax, (%rdx)
    GUARDED .Lpf_decline_stored, mov %r11, 8(%rdx)
    mov PF_ERROR(%rsp), %rax
    and $~PFEC_USER, %rax
    lea (%rax,%rcx,PFEC_USER), %rax
    GUARDED .Lpf_decline_stored, mov %rax, 16(%rdx)
    mov PF_RIP(%rsp), %rax
    GUARDED .Lpf_decline_stored, mov %rax, 24(%rdx)
    mov PF_RFLAGS(%rsp), %rax
    and $~RFLAGS_IF, %rax
    or %r8, %rax
    GUARDED .Lpf_decline_stored, mov %rax, 40(%rdx)
    SHOWN_MASK_CS_BIT %r8, %r8d
    or PF_CS(%rsp), %r8             /* RPL 3: the CPU's, from ring 3 */
    lea -3(%r8,%rcx,2), %rax        /* RPL 3 from user mode, else 0 */
    add %rcx, %rax
    GUARDED .Lpf_decline_stored, mov %rax, 32(%rdx)
    mov PF_RSP(%rsp), %rax
    GUARDED .Lpf_decline_stored, mov %rax, 48(%rdx)
    mov PF_SS(%rsp), %rax
    GUARDED .Lpf_decline_stored, mov %rax, 56(%rdx)
    SMAP_CLOSE
    /* Written: the mask if the handler asks, and after user mode the kernel's mode. */
    testb $TI_IF, VCPU_PF_FLAGS(%rdi)
    jz 4f
    movb $1, VI_MASK(%rsi)
4:  mov %rdx, PF_RSP(%rsp)          /* (ENTER_KERNEL_MODE clobbers rdx) */
    test %ecx, %ecx
    jz 5f
    ENTER_KERNEL_MODE %rdi
    /* To the handler (traps::bounce::deliver's rip, RFLAGS and stack) by sysretq, as
     * Xen leaves after any bounce: the guest's rcx and r11 are in the bounce frame,
     * which the handler pops first, so the two registers are free to carry the
     * handler's address and RFLAGS. sysretq loads the flat selectors an iretq would
     * take from the frame (STAR's: FLAT_RING3_CS64, FLAT_RING3_SS64), and the handler's
     * address is canonical (every registration checks it), so it cannot fault in ring
     * 0. It reads no memory, where an iretq pops five words and loads two descriptors. */
5:  mov PF_RFLAGS(%rsp), %r11
    and $BOUNCE_RFLAGS_KEEP, %r11
    or $BOUNCE_RFLAGS_SET, %r11
    mov VCPU_PF_HANDLER(%rdi), %rcx
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    mov 8(%rsp), %rax               /* (rcx's slot, then rax's) */
    mov PF_RSP - 4*8(%rsp), %rsp    /* the bounce frame */
    swapgs
    sysretq
/* Declined (nothing changed but, maybe, the loaded page table, as recorded, and the
 * vcpu_info's CR2): the lane, with the guest's fault address in CR2. */
.Lpf_decline_stored:
    mov VI_CR2(%rsi), %rax          /* a guarded store faulted: CR2 is its address */
    mov %rax, %cr2
.Lpf_decline:
    SMAP_CLOSE
    PF_EXPRESS_POP
    sub $FRAME_GPRS, %rsp
    SAVE_CALLER_SAVED
    /* (RFLAGS.AC, which a guest may run with and an exception gate keeps: cleared by
     * the SMAP_CLOSE above, as exception_common does.) */
    SSE_FREE_ENTRY
    mov %rsp, %rdi
    cld
    SSE_FREE_CALL hv_page_fault_lane
    test %al, %al
    jnz resume_caller_saved
    /* Declined, having changed nothing: the general trap path, which uses SSE, with the
     * frame completed (the callee-saved registers are still the guest's). */
    SAVE_CALLEE_SAVED
    FPU_NET_FOR_FULL_PATH
    mov %rsp, %rdi
    call hv_trap_entry
    jmp guest_exit
.irp v, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,128,240,255
EXCEPTION_STUB \v, 0
.endr
.global exception_stub_128
/* The APIC timer and the APIC's spurious vector. */
.global exception_stub_240
.global exception_stub_255

exception_common:
    PUSH_GPRS
    testb $3, FRAME_CS(%rsp)
    jz ring0_entry
    swapgs
    /* A guest may run with RFLAGS.AC set, and an exception gate keeps it: clear it, or
     * SMAP would not apply in ring 0 (syscall clears it through FMASK). A nop without
     * SMAP (SMAP_SITE). */
    SMAP_CLOSE
guest_entry_common:
    /* The guest's XMM registers. Every entry here (an exception to emulate or bounce, an
     * interrupt; a not-present page fault has its own stub) goes down paths that use
     * SSE: save them now, with no CR0 write unless the guest's virtual TS has the real
     * one set. */
    cmpb $0, %gs:PERCPU_GUEST_TS
    je 2f
    clts
2:  mov %gs:PERCPU_FPU_AREA, %rax
    SAVE_XMM %rax
    movb $FPU_SAVED_XMM, %gs:PERCPU_FPU_SAVED
    mov %rsp, %rdi
    cld
    call hv_trap_entry
.global guest_exit
guest_exit:
    LAZY_FPU_EXIT
    JUMP_UNLESS_SYSRET_SAME 1f
    POP_GPRS
    mov FRAME_RSP - FRAME_GPRS(%rsp), %rsp
    swapgs
    sysretq
1:  POP_GPRS
    add $16, %rsp
    swapgs
    iretq

/* From ring 0, an exception is a hypervisor bug; an interrupt (vector 32 and up) can
 * only arrive in the idle wait (sti; hlt; cli), which declares every call-clobbered
 * register clobbered: acknowledge it and return there. No swapgs (GS is already the
 * hypervisor's), no FPU save (no guest state is live). */
ring0_entry:
    cmpq $7, FRAME_VECTOR(%rsp)
    je ring0_nm
    cmpq $VECTOR_PF, FRAME_VECTOR(%rsp)
    je ring0_pf
    cmpq $32, FRAME_VECTOR(%rsp)
    jb hypervisor_fault
    mov %rsp, %rdi
    cld
    call hv_ring0_interrupt
    POP_GPRS
    add $16, %rsp
    iretq

/* #NM in ring 0: the hypervisor's first SSE use since a guest entry set CR0.TS. Save
 * the guest's XMM registers (unless they were saved already: then only TS is left to
 * clear, which no path should leave set, but this is the net), clear TS, and retry the
 * instruction. */
ring0_nm:
    cmpb $0, %gs:PERCPU_FPU_SAVED
    je 1f
    clts
    jmp 2f
1:  call hv_save_fpu_xmm
2:  POP_GPRS
    add $16, %rsp
    iretq

/* #PF in ring 0: expected only on an instruction that accesses guest virtual memory
 * (guest_access.rs, hv_guest_copy), each listed in the exception table (.hv_extable,
 * between __hv_extable_start and __hv_extable_end: per entry, the instruction's address
 * and its fix-up's, each as a 32-bit offset from itself). Resume at the fix-up, which
 * records the fault; anywhere else a ring-0 #PF is a hypervisor bug. A linear search:
 * the table is small and only a guest's bad pointer gets here. */
ring0_pf:
    mov FRAME_RIP(%rsp), %rdx
    lea __hv_extable_start(%rip), %rcx
    lea __hv_extable_end(%rip), %rsi
1:  cmp %rsi, %rcx
    jae hypervisor_fault
    movslq (%rcx), %rax
    add %rcx, %rax
    cmp %rax, %rdx
    je 2f
    add $8, %rcx
    jmp 1b
2:  movslq 4(%rcx), %rax
    lea 4(%rcx,%rax), %rax
    mov %rax, FRAME_RIP(%rsp)
    POP_GPRS
    add $16, %rsp
    iretq

hypervisor_fault:
    mov %rsp, %rdi
    cld
    call hv_hypervisor_fault
1:  cli
    hlt
    jmp 1b

/* hv_save_fpu_xmm(): saves the guest's XMM registers and MXCSR into the current vCPU's
 * FXSAVE image if they are still live (FPU_SAVED_XMM), clearing CR0.TS first: for
 * ring0_nm and for Rust code about to use SSE (percpu::save_fpu). Once they are saved TS
 * is clear (every save clears it, and only a guest entry sets it), so a second call
 * writes nothing. Clobbers rax only. */
.global hv_save_fpu_xmm
hv_save_fpu_xmm:
    cmpb $0, %gs:PERCPU_FPU_SAVED
    jne 1f
    clts
    mov %gs:PERCPU_FPU_AREA, %rax
    SAVE_XMM %rax
    movb $FPU_SAVED_XMM, %gs:PERCPU_FPU_SAVED
1:  ret

/* hv_save_fpu_full(): the current vCPU's whole FPU/SSE image into its area
 * (FPU_SAVED_FULL), completing an XMM-only save first (the x87 state is still the
 * guest's; its XMM registers and MXCSR come back from the area): before a vCPU switch
 * (percpu::save_fpu_full). Clobbers rax and the XMM registers. */
.global hv_save_fpu_full
hv_save_fpu_full:
    cmpb $FPU_SAVED_FULL, %gs:PERCPU_FPU_SAVED
    je 2f
    clts
    mov %gs:PERCPU_FPU_AREA, %rax
    cmpb $0, %gs:PERCPU_FPU_SAVED
    je 1f
    RESTORE_XMM %rax
1:  fxsave64 (%rax)
    movb $FPU_SAVED_FULL, %gs:PERCPU_FPU_SAVED
2:  ret

/* usize hv_guest_copy(dst %rdi, src %rsi, len %rdx): copies between hypervisor memory
 * and guest virtual memory through the page tables loaded on this CPU (the guest's, whose
 * every entry the hypervisor validated), eight bytes at a time and then the tail, and
 * returns the bytes left uncopied: 0, or what remained when a page fault stopped it
 * (ring0_pf resumes at the matching *_fault label, where %rcx counts what the rep had
 * left). The caller checks the range: only guest slots, so a fault can only be a #PF.
 * The copy runs between stac and clac, SMAP sites (nops where the CPU has no SMAP; the
 * fault path's iretq restores AC=1, the common tail clears it). */
.global hv_guest_copy
hv_guest_copy:
    SMAP_OPEN               /* guest pages are user pages: allow the copy (SMAP) */
    mov %rdx, %rcx
    shr $3, %rcx
    and $7, %edx
guest_copy_quads:
    rep movsq
    mov %rdx, %rcx
guest_copy_bytes:
    rep movsb
.pushsection .hv_extable, "a"
.balign 4
    .long guest_copy_quads - .
    .long guest_copy_quads_fault - .
    .long guest_copy_bytes - .
    .long guest_copy_bytes_fault - .
.popsection
guest_copy_bytes_fault:
    mov %rcx, %rax
    jmp 2f
guest_copy_quads_fault:
    lea (%rdx,%rcx,8), %rax
2:  SMAP_CLOSE
    ret

/* Enters the guest for the first time on this CPU: %rdi = TrapFrame at the top of the
 * per-CPU stack, already filled in. */
.global enter_guest_first
enter_guest_first:
    mov %rdi, %rsp
    jmp guest_exit

.section .rodata
.p2align 3
.global exception_stub_table
exception_stub_table:
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
    .quad exception_stub_\v
.endr
