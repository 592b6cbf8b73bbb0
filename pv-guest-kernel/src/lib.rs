//! The guest kernel's host-testable logic: command-line parsing and the self-test
//! bookkeeping. The binary (`src/main.rs`, `src/arch/`) holds everything that only runs
//! as a PV guest.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod bench_stats;
pub mod cmdline;
pub mod pfn_alloc;
pub mod scenario;
pub mod selftest;
