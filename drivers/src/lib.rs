//! Paravirtual split drivers: frontends and backends that talk over shared rings, grant
//! tables and event channels, written against `pv-abi`.
//!
//! This crate is the home of the console, block and network drivers and of the framework
//! for writing new ones. They arrive with the events and I/O issues; until then it holds
//! nothing but this description, so that the workspace layout is the final one from day
//! one.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
