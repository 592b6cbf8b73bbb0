/* PVH entry: QEMU (or any PVH loader) starts us in 32-bit flat protected mode, paging
 * off, with %ebx = physical address of hvm_start_info. We build boot page tables that
 * identity-map the first GiB (only for the jump) and map the first 4 GiB of physical
 * memory at DIRECTMAP_BASE, enter long mode and jump to the linked (high) address.
 * Every symbol is linked high, so 32-bit code uses (symbol - DIRECTMAP_BASE). */

.set DIRECTMAP_BASE, 0xffff830000000000
.set PTE_P,  0x001
.set PTE_RW, 0x002
.set PTE_PS, 0x080
.set PTE_G,  0x100

.section .note.Xen, "a"
    .p2align 2
    .long 4                 /* name size: "Xen\0" */
    .long 8                 /* descriptor size */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .quad pvh_entry32 - DIRECTMAP_BASE
    .p2align 2

.section .text.boot32, "ax"
.code32
.global pvh_entry32
pvh_entry32:
    cld
    mov %ebx, %esi                      /* keep hvm_start_info */

    /* Zero .bss (the loader zeroes it too, but do not rely on that), four bytes a step:
     * both ends are page-aligned (link.ld). */
    mov $(__bss_start - DIRECTMAP_BASE), %edi
    mov $(__bss_end - DIRECTMAP_BASE), %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl

    /* Identity PD: 512 x 2 MiB covering the first GiB, not global. */
    mov $(boot_pd_identity - DIRECTMAP_BASE), %edi
    mov $(PTE_P | PTE_RW | PTE_PS), %eax
    xor %ecx, %ecx
1:  mov %eax, (%edi,%ecx,8)
    movl $0, 4(%edi,%ecx,8)
    add $0x200000, %eax
    inc %ecx
    cmp $512, %ecx
    jne 1b

    /* Direct-map PDs: 4 x 512 x 2 MiB covering 4 GiB, global. */
    mov $(boot_pd_directmap - DIRECTMAP_BASE), %edi
    mov $(PTE_P | PTE_RW | PTE_PS | PTE_G), %eax
    xor %ecx, %ecx
1:  mov %eax, (%edi,%ecx,8)
    movl $0, 4(%edi,%ecx,8)
    add $0x200000, %eax
    inc %ecx
    cmp $2048, %ecx
    jne 1b

    /* PDPTs. */
    mov $(boot_pdpt_identity - DIRECTMAP_BASE), %edi
    mov $(boot_pd_identity - DIRECTMAP_BASE + PTE_P + PTE_RW), %eax
    mov %eax, (%edi)
    mov $(boot_pdpt_directmap - DIRECTMAP_BASE), %edi
    mov $(boot_pd_directmap - DIRECTMAP_BASE + PTE_P + PTE_RW), %eax
    xor %ecx, %ecx
1:  mov %eax, (%edi,%ecx,8)
    add $4096, %eax
    inc %ecx
    cmp $4, %ecx
    jne 1b

    /* PML4: slot 0 identity (dropped once we run high), slot 262 direct map. */
    mov $(boot_pml4 - DIRECTMAP_BASE), %edi
    mov $(boot_pdpt_identity - DIRECTMAP_BASE + PTE_P + PTE_RW), %eax
    mov %eax, (%edi)
    mov $(boot_pdpt_directmap - DIRECTMAP_BASE + PTE_P + PTE_RW), %eax
    mov %eax, 262*8(%edi)

    mov %edi, %cr3
    /* CR4: PAE | PGE | OSFXSR | OSXMMEXCPT (Rust code uses SSE from the first line). */
    mov %cr4, %eax
    or $((1 << 5) | (1 << 7) | (1 << 9) | (1 << 10)), %eax
    mov %eax, %cr4
    /* EFER: LME | SCE | NXE. */
    mov $0xc0000080, %ecx
    rdmsr
    or $((1 << 8) | (1 << 0) | (1 << 11)), %eax
    wrmsr
    /* CR0: PE | MP | WP | PG; clear EM and TS. */
    mov %cr0, %eax
    and $~((1 << 2) | (1 << 3)), %eax
    or $((1 << 0) | (1 << 1) | (1 << 16) | (1 << 31)), %eax
    mov %eax, %cr0

    lgdt (boot_gdt_ptr - DIRECTMAP_BASE)
    ljmp $0x08, $(boot64_low - DIRECTMAP_BASE)

.code64
boot64_low:
    movabs $boot64_high, %rax
    jmp *%rax

.text
boot64_high:
    xor %eax, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    movabs $boot_stack_top, %rsp
    xor %ebp, %ebp
    mov %esi, %edi                      /* hvm_start_info physical address */
    call hv_start
1:  cli
    hlt
    jmp 1b

/* Filled in above, once .bss is zeroed: nothing of them is in the image. */
.section .bss.boot_pagetables, "aw", @nobits
.p2align 12
.global boot_pml4
boot_pml4:          .skip 4096
boot_pdpt_identity: .skip 4096
boot_pdpt_directmap:.skip 4096
boot_pd_identity:   .skip 4096
boot_pd_directmap:  .skip 16384

.section .rodata
.p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff            /* 0x08: 64-bit ring-0 code */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt - DIRECTMAP_BASE

.section .bss
.p2align 12
/* The page below the boot stack, unmapped once the direct map is in place (as below
 * each CPU's stacks: arch::x86_64::unmap_guard_pages). */
.global boot_stack_guard
boot_stack_guard:
    .skip 4096
/* 128 KiB: booting (building every domain) goes 25 KiB deep, an unoptimised build 60. */
boot_stack:
    .skip 131072
.global boot_stack_top
boot_stack_top:
