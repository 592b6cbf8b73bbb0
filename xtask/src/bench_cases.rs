//! The benchmark's cases: what each one measures, which paravirtual operation each
//! trapping twin stands next to, and the targets of the issue. The guest
//! (`pv-guest-kernel/src/bench*.rs`) and the hypervisor's floor print results by these
//! names; everything else about a case lives here.

/// What kind of path a case times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A paravirtual operation: a hypercall or a write to shared memory.
    Pv,
    /// The trap-and-emulate twin: the instruction an unmodified kernel would use.
    Trap,
    /// A PV kernel's own round trip through the hypervisor (system call, page fault).
    RoundTrip,
    /// The bare hardware round trip, measured by our hypervisor itself.
    Floor,
}

impl Kind {
    /// The short word used in tables.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Pv => "PV",
            Kind::Trap => "trap",
            Kind::RoundTrip => "round trip",
            Kind::Floor => "floor",
        }
    }
}

/// One case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The name in the result lines.
    pub name: &'static str,
    /// The chart group (cases that belong side by side).
    pub group: &'static str,
    /// What kind of path.
    pub kind: Kind,
    /// What is timed, in words (per operation).
    pub what: &'static str,
    /// For a trapping twin: the PV case it is compared with.
    pub twin_of: Option<&'static str>,
    /// The absolute target for our hypervisor, in instructions (`-icount`).
    pub target_instructions: Option<u64>,
    /// Whether the operation enters the hypervisor at all (a write to vcpu_info does
    /// not: it is the same guest code on both, so ours/Xen is 1 by construction).
    pub enters_hypervisor: bool,
    /// CR3 writes per operation, on either hypervisor: the switches of page table the
    /// operation cannot do without. Under TCG each one empties QEMU's software TLB and
    /// jump cache, which the report's explanation of a missed tick target weighs.
    pub cr3_writes: u32,
    /// Whether the figure is per entry of a batch that one call makes: the call's own
    /// entry and exit are shared by the whole batch.
    pub batched: bool,
}

const fn case(name: &'static str, group: &'static str, kind: Kind, what: &'static str) -> Case {
    Case {
        name,
        group,
        kind,
        what,
        twin_of: None,
        target_instructions: None,
        enters_hypervisor: true,
        cr3_writes: 0,
        batched: false,
    }
}

const fn twin(
    name: &'static str,
    group: &'static str,
    of: &'static str,
    what: &'static str,
) -> Case {
    Case {
        twin_of: Some(of),
        ..case(name, group, Kind::Trap, what)
    }
}

const fn target(mut case: Case, instructions: u64) -> Case {
    case.target_instructions = Some(instructions);
    case
}

const fn batched(mut case: Case) -> Case {
    case.batched = true;
    case
}

const fn writes_cr3(mut case: Case, times: u32) -> Case {
    case.cr3_writes = times;
    case
}

/// The PV case that is one CR3 write and little else (a hypercall that reloads the
/// current root): the report measures what a CR3 write costs by it.
pub const ONE_CR3_WRITE: &str = "new_baseptr";

/// The PV case that does nothing but enter the hypervisor and leave it: the least any
/// hypercall costs.
pub const NULL_CALL: &str = "null_hypercall";

/// Every case, in report order.
pub const CASES: &[Case] = &[
    target(
        case(
            "null_hypercall",
            "null",
            Kind::Pv,
            "xen_version(XENVER_version)",
        ),
        100,
    ),
    twin(
        "cr0_read_trap",
        "null",
        "null_hypercall",
        "mov from CR0: #GP, decoded and emulated",
    ),
    Case {
        enters_hypervisor: false,
        ..case(
            "vcpu_mask_unmask",
            "irq",
            Kind::Pv,
            "vcpu_info mask byte set and cleared, pending byte checked",
        )
    },
    twin(
        "cli_sti_trap",
        "irq",
        "vcpu_mask_unmask",
        "cli then sti, both trapped",
    ),
    writes_cr3(
        target(
            case(
                "new_baseptr",
                "cr3",
                Kind::Pv,
                "mmuext_op(MMUEXT_NEW_BASEPTR) to the current root",
            ),
            200,
        ),
        1,
    ),
    writes_cr3(
        twin(
            "mov_cr3_trap",
            "cr3",
            "new_baseptr",
            "mov to CR3 (current root), trapped",
        ),
        1,
    ),
    target(
        case(
            "pte_mmu_update",
            "pte1",
            Kind::Pv,
            "mmu_update of one L1 entry",
        ),
        300,
    ),
    case(
        "pte_update_va_mapping",
        "pte1",
        Kind::Pv,
        "update_va_mapping of one entry with UVMF_INVLPG",
    ),
    twin(
        "pte_store_trap",
        "pte1",
        "pte_mmu_update",
        "a store into a read-only L1 table (writable page tables)",
    ),
    batched(target(
        case(
            "pte64_mmu_update",
            "pte-batch",
            Kind::Pv,
            "per entry, one mmu_update of 64 entries",
        ),
        120,
    )),
    batched(case(
        "pte512_mmu_update",
        "pte-batch",
        Kind::Pv,
        "per entry, one mmu_update of 512 entries",
    )),
    batched(case(
        "pte512_multicall",
        "pte-batch",
        Kind::Pv,
        "per entry, one multicall of 512 update_va_mapping",
    )),
    // Each store traps on its own: not a batch.
    twin(
        "pte512_store_trap",
        "pte-batch",
        "pte512_mmu_update",
        "per entry, 512 stores into a read-only L1 table",
    ),
    case(
        "invlpg_mmuext",
        "tlb",
        Kind::Pv,
        "mmuext_op(MMUEXT_INVLPG_LOCAL)",
    ),
    twin("invlpg_trap", "tlb", "invlpg_mmuext", "invlpg, trapped"),
    case(
        "port_out_hypercall",
        "io",
        Kind::Pv,
        "a byte to port 0x80 by hypercall",
    ),
    twin(
        "port_out_trap",
        "io",
        "port_out_hypercall",
        "out to port 0x80, trapped (privileged domain, virtual IOPL 1)",
    ),
    // A process runs on its own user root (x86_64 PV: the guest kernel runs in ring 3
    // too), so the bounce to the kernel loads the kernel's root and the iret the user's.
    writes_cr3(
        case(
            "syscall_roundtrip",
            "guest",
            Kind::RoundTrip,
            "user getpid() -> guest kernel -> HYPERVISOR_iret -> user",
        ),
        2,
    ),
    case(
        "pagefault_roundtrip",
        "guest",
        Kind::RoundTrip,
        "kernel #PF bounced to the guest's handler and back by HYPERVISOR_iret",
    ),
    target(
        case(
            "evtchn_send",
            "events",
            Kind::Pv,
            "EVTCHNOP_send on a bound (masked) channel",
        ),
        150,
    ),
    case(
        "evtchn_send_upcall",
        "events",
        Kind::Pv,
        "send to self until the upcall handler ran",
    ),
    // Two switches between the domains' vCPUs, each to the other's page table.
    writes_cr3(
        case(
            "evtchn_pingpong",
            "events",
            Kind::Pv,
            "interdomain round trip: send, block, pong upcall",
        ),
        2,
    ),
    case(
        "floor_syscall",
        "floor",
        Kind::Floor,
        "bare syscall -> sysretq from ring 3",
    ),
    case(
        "floor_gp",
        "floor",
        Kind::Floor,
        "bare cli -> #GP -> iretq from ring 3",
    ),
];

/// The case called `name`.
pub fn find(name: &str) -> Option<&'static Case> {
    CASES.iter().find(|case| case.name == name)
}

/// The relative targets.
pub mod targets {
    /// Every PV case on ours at most this fraction of Xen's instructions.
    pub const PV_INSTRUCTIONS_VS_XEN: f64 = 0.35;
    /// ... and of Xen's TCG ticks.
    pub const PV_TICKS_VS_XEN: f64 = 0.5;
    /// Each trap twin at least this many times its PV operation, on ours.
    pub const TRAP_OVER_PV: f64 = 20.0;
    /// The hypervisor image, at most.
    pub const IMAGE_BYTES: u64 = 1 << 20;
    /// Hypervisor memory per domain: at most 1% of the domain's memory plus this.
    pub const PER_DOMAIN_FIXED_BYTES: u64 = 64 << 10;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_twins_point_at_pv_cases() {
        for (i, case) in CASES.iter().enumerate() {
            assert!(
                CASES[i + 1..].iter().all(|other| other.name != case.name),
                "{} twice",
                case.name
            );
            if let Some(of) = case.twin_of {
                assert_eq!(case.kind, Kind::Trap);
                let pv = find(of).expect("twin of a known case");
                assert_eq!(pv.kind, Kind::Pv, "{} is a twin of {of}", case.name);
                assert_eq!(pv.group, case.group);
            }
        }
        assert!(find("null_hypercall").is_some());
        assert!(find("nope").is_none());
    }

    #[test]
    fn the_reference_cases_are_what_the_explanations_say() {
        let one = find(ONE_CR3_WRITE).expect("a known case");
        assert_eq!((one.kind, one.cr3_writes), (Kind::Pv, 1));
        let null = find(NULL_CALL).expect("a known case");
        assert_eq!((null.kind, null.cr3_writes), (Kind::Pv, 0));
        // A twin writes CR3 as often as its PV operation: both do the same thing.
        for case in CASES {
            if let Some(of) = case.twin_of {
                assert_eq!(
                    case.cr3_writes,
                    find(of).unwrap().cr3_writes,
                    "{}",
                    case.name
                );
            }
        }
    }
}
