//! The guest kernel's command line: space-separated `key=value` words.

/// A deliberate fault to raise right after the banner (`crash=...`), to show that a
/// guest's crash takes down only that guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// `ud2`: invalid opcode (#UD).
    InvalidOpcode,
    /// A store to an unmapped address (#PF).
    PageFault,
    /// `lgdt` in ring 3 (#GP, never emulated).
    GeneralProtection,
    /// Division by zero (#DE).
    DivideError,
    /// With handlers installed, re-register a trap table whose every handler points at
    /// unmapped memory, then fault: the faults cascade until the hypervisor can no longer
    /// push a frame and stops the domain.
    BadTrapTable,
    /// With handlers installed, point the stack at unmapped memory and fault: the
    /// hypervisor cannot deliver the fault and stops the domain.
    BadKernelStack,
    /// With handlers installed, point the stack at unmapped guest memory and take a
    /// not-present page fault: writing the bounce frame faults in the hypervisor itself,
    /// and the domain is stopped.
    BadFaultStack,
    /// Return with `HYPERVISOR_iret` from a stack in unmapped guest memory: the
    /// hypervisor cannot read the frame and stops the domain.
    BadIretFrame,
    /// Return with `HYPERVISOR_iret` through a readable frame whose CS is the
    /// hypervisor's own ring-0 code selector (`0xe008`): refused, the domain stopped (a
    /// hypervisor that took it would run this kernel in ring 0).
    BadIretSelector,
    /// Return with `HYPERVISOR_iret` through a readable frame whose rip is not canonical:
    /// refused, the domain stopped (taken, the hypervisor's own `iretq` would fault).
    BadIretRip,
    /// The same "in syscall" (`VGCF_in_syscall`, rcx and r11 as a `sysret` leaves
    /// them): refused, the domain stopped (taken, the hypervisor's `sysretq` would fault
    /// in ring 0 on Intel CPUs, or return to the non-canonical address elsewhere).
    BadIretSyscallRip,
    /// Return with `HYPERVISOR_iret` through a readable frame whose SS is the
    /// hypervisor's own data selector (`0xe010`): refused, the domain stopped.
    BadIretStackSelector,
    /// Return with `HYPERVISOR_iret` through a readable frame whose rsp is not
    /// canonical: refused, the domain stopped (taken, the hypervisor's `iretq` would
    /// fault).
    BadIretRsp,
    /// Point the kernel stack for entries from user mode (`stack_switch`) at unmapped
    /// memory and run a process: its first system call cannot be bounced (writing the
    /// frame faults in the hypervisor), and the domain is stopped.
    BadSyscallStack,
    /// As [`CrashMode::BadSyscallStack`], with a process whose first act is a store to
    /// its (demand-paged) stack: a not-present page fault from user mode, whose frame
    /// cannot be written once the hypervisor has loaded the kernel's page table.
    BadUserFaultStack,
    /// Register a failsafe callback in unmapped memory and no kernel stack, then make
    /// delivery fail: the failsafe cannot be delivered either.
    BadCallbacks,
    /// Send an event to ourselves, unmasked, with the stack pointing at unmapped memory:
    /// the upcall the send makes due cannot be pushed, and the hypervisor stops the
    /// domain (on its hypercall fast path).
    BadUpcallStack,
    /// Make an event due while events are masked, unmask them without a hypercall, then
    /// make the null hypercall a kernel makes to have it delivered (Linux's
    /// `xen_force_evtchn_callback`) with the stack pointing at unmapped memory: the
    /// upcall cannot be pushed, and the hypervisor stops the domain.
    BadNullUpcallStack,
}

/// Where the crash modes that corrupt a stack pointer point it (`bad-address=...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BadAddress {
    /// Guest memory this kernel never maps (the default; each mode says where).
    #[default]
    Unmapped,
    /// Guest memory this kernel never maps, in the middle of the lower half
    /// (`bad-address=lower-half`) for every mode, also those whose own choice is the
    /// bottom of memory (where the frame's address wraps and is refused before any
    /// store): the hypervisor's guarded stores fault.
    LowerHalf,
    /// The hypervisor's own memory (`bad-address=hypervisor`): mapped in every address
    /// space, readable and writable in ring 0, and never the guest's, so only the
    /// hypervisor's range checks stand between a frame and its memory.
    Hypervisor,
}

impl CrashMode {
    /// Whether the mode needs the kernel set up first (shared info mapped, for events).
    pub fn after_setup(self) -> bool {
        matches!(
            self,
            CrashMode::BadUpcallStack
                | CrashMode::BadNullUpcallStack
                | CrashMode::BadSyscallStack
                | CrashMode::BadUserFaultStack
        )
    }

    /// Whether the mode corrupts state after the trap table is registered (rather than
    /// faulting before any handler exists).
    pub fn after_traps(self) -> bool {
        matches!(
            self,
            CrashMode::BadTrapTable
                | CrashMode::BadKernelStack
                | CrashMode::BadFaultStack
                | CrashMode::BadIretFrame
                | CrashMode::BadIretSelector
                | CrashMode::BadIretRip
                | CrashMode::BadIretSyscallRip
                | CrashMode::BadIretStackSelector
                | CrashMode::BadIretRsp
                | CrashMode::BadSyscallStack
                | CrashMode::BadUserFaultStack
                | CrashMode::BadCallbacks
                | CrashMode::BadUpcallStack
                | CrashMode::BadNullUpcallStack
        )
    }
}

/// What the command line asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Crash on purpose instead of running the self-tests.
    pub crash: Option<CrashMode>,
    /// Attack the hypervisor's memory model instead of running the self-tests (`hostile`).
    pub hostile: bool,
    /// Use the trapping instructions (cli/sti, mov cr3, page-table stores) instead of
    /// hypercalls and shared memory (`mode=trap`; `mode=pv` is the default).
    pub trap_mode: bool,
    /// Run the benchmark suite (or its ping-pong partner) instead of the self-tests
    /// (`bench`, `bench=quick`, `bench=pong`).
    pub bench: Option<crate::bench_stats::Role>,
    /// Where a crash mode's bad stack points.
    pub bad_address: BadAddress,
}

/// Why a command line was not understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownWord<'a>(pub &'a str);

/// Parses `line`. Unknown words are reported (so a typo does not go unnoticed) but do
/// not stop parsing: the first is returned alongside the options.
pub fn parse(line: &str) -> (Options, Option<UnknownWord<'_>>) {
    let mut options = Options::default();
    let mut unknown = None;
    for word in line.split_ascii_whitespace() {
        let crash = match word {
            "crash=ud2" => Some(CrashMode::InvalidOpcode),
            "crash=pf" => Some(CrashMode::PageFault),
            "crash=gp" => Some(CrashMode::GeneralProtection),
            "crash=de" => Some(CrashMode::DivideError),
            "crash=bad-trap-table" => Some(CrashMode::BadTrapTable),
            "crash=bad-kernel-stack" => Some(CrashMode::BadKernelStack),
            "crash=bad-fault-stack" => Some(CrashMode::BadFaultStack),
            "crash=bad-iret-frame" => Some(CrashMode::BadIretFrame),
            "crash=bad-iret-selector" => Some(CrashMode::BadIretSelector),
            "crash=bad-iret-rip" => Some(CrashMode::BadIretRip),
            "crash=bad-iret-syscall-rip" => Some(CrashMode::BadIretSyscallRip),
            "crash=bad-iret-ss" => Some(CrashMode::BadIretStackSelector),
            "crash=bad-iret-rsp" => Some(CrashMode::BadIretRsp),
            "crash=bad-syscall-stack" => Some(CrashMode::BadSyscallStack),
            "crash=bad-user-fault-stack" => Some(CrashMode::BadUserFaultStack),
            "crash=bad-callbacks" => Some(CrashMode::BadCallbacks),
            "crash=bad-upcall-stack" => Some(CrashMode::BadUpcallStack),
            "crash=bad-null-upcall-stack" => Some(CrashMode::BadNullUpcallStack),
            _ => None,
        };
        match crash {
            Some(mode) => options.crash = Some(mode),
            None if word == "hostile" => options.hostile = true,
            None if word == "mode=trap" => options.trap_mode = true,
            None if word == "mode=pv" => options.trap_mode = false,
            None if word == "bad-address=hypervisor" => {
                options.bad_address = BadAddress::Hypervisor
            }
            None if word == "bad-address=unmapped" => options.bad_address = BadAddress::Unmapped,
            None if word == "bad-address=lower-half" => options.bad_address = BadAddress::LowerHalf,
            // Scenario programs (`workload=...`) have their own parser.
            None if crate::scenario::knows(word) => {}
            None if crate::bench_stats::Role::from_word(word).is_some() => {
                options.bench = crate::bench_stats::Role::from_word(word)
            }
            None if unknown.is_none() => unknown = Some(UnknownWord(word)),
            None => {}
        }
    }
    (options, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_crash_modes_and_reports_unknown_words() {
        assert_eq!(parse(""), (Options::default(), None));
        assert_eq!(parse("crash=ud2").0.crash, Some(CrashMode::InvalidOpcode));
        assert_eq!(parse("  crash=pf  ").0.crash, Some(CrashMode::PageFault));
        let (options, unknown) = parse("bogus crash=de other");
        assert_eq!(options.crash, Some(CrashMode::DivideError));
        assert_eq!(unknown, Some(UnknownWord("bogus")));
        assert_eq!(parse("crash=nope").1, Some(UnknownWord("crash=nope")));
        assert!(parse("crash=bad-callbacks").0.crash.unwrap().after_traps());
        assert!(!parse("crash=pf").0.crash.unwrap().after_traps());
        let (options, unknown) = parse("crash=bad-iret-frame bad-address=hypervisor");
        assert_eq!(options.bad_address, BadAddress::Hypervisor);
        assert_eq!(unknown, None);
        assert_eq!(parse("crash=pf").0.bad_address, BadAddress::Unmapped);
        assert!(parse("mode=trap").0.trap_mode);
        assert!(!parse("mode=trap mode=pv").0.trap_mode);
        let quick = Some(crate::bench_stats::Role::Quick);
        assert_eq!(parse("bench=quick").0.bench, quick);
    }
}
