/* Xen PV ELF notes, the hypercall page and the entry point.
 * Xen (or our hypervisor) enters at _start in ring 3 with %rsi = start_info and %rsp at
 * the top of the boot stack page, inside the boot region. */

.macro XEN_NOTE type, descsize
    .p2align 2
    .long 4
    .long \descsize
    .long \type
    .asciz "Xen"
    .p2align 2
.endm

.section .note.Xen, "a"
    XEN_NOTE 6, 9                /* XEN_ELFNOTE_GUEST_OS */
    .asciz "pvkernel"
    .p2align 2
    XEN_NOTE 5, 8                /* XEN_ELFNOTE_XEN_VERSION */
    .asciz "xen-3.0"
    .p2align 2
    XEN_NOTE 8, 8                /* XEN_ELFNOTE_LOADER */
    .asciz "generic"
    .p2align 2
    XEN_NOTE 3, 8                /* XEN_ELFNOTE_VIRT_BASE */
    .quad 0xffffffff80000000
    XEN_NOTE 4, 8                /* XEN_ELFNOTE_PADDR_OFFSET */
    .quad 0
    XEN_NOTE 1, 8                /* XEN_ELFNOTE_ENTRY */
    .quad _start
    XEN_NOTE 2, 8                /* XEN_ELFNOTE_HYPERCALL_PAGE */
    .quad hypercall_page
    XEN_NOTE 10, 1               /* XEN_ELFNOTE_FEATURES: none required */
    .byte 0
    .p2align 2
    XEN_NOTE 17, 4               /* XEN_ELFNOTE_SUPPORTED_FEATURES: bit 11 = XENFEAT_dom0 */
    .long (1 << 11)

.section .text.entry, "ax"
.global _start
_start:
    cld
    mov %rsp, boot_rsp(%rip)
    mov %rsi, boot_start_info(%rip)
    lea kernel_stack_top(%rip), %rsp
    xor %ebp, %ebp
    mov %rsi, %rdi
    call kmain
1:  ud2
    jmp 1b

.section .text.hypercall_page, "ax"
.p2align 12
.global hypercall_page
hypercall_page:
    .fill 4096, 1, 0xcc

.section .bss
.p2align 4
.global boot_rsp
boot_rsp: .quad 0
.global boot_start_info
boot_start_info: .quad 0
.p2align 12
kernel_stack:
    .skip 65536
kernel_stack_top:
