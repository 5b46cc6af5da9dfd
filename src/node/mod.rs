//! What pmi gives Node apps: a real IPC channel (`channel`) and the preload that shares pmi's
//! sockets with an unchanged app (`shim`). SPEC §9.
//!
//! Invariant: nothing here decides policy. The supervisor creates a channel per instance and
//! the preload memfd once, passes their child ends at spawn, and turns the channel's `Event`s
//! into readiness.

pub mod channel;
pub mod shim;
