//! The Xen x86_64 PV guest ABI (placeholder root; being written).
#![cfg_attr(not(test), no_std)]
