//! The control socket: protocol, server (inside the supervisor process) and client (the verbs).
//!
//! `proto` is the one wire format both sides use; `server` answers on a Unix socket from the
//! supervisor's `Handle` (reads from the snapshot, mutations through its inbox); `client` runs the
//! verbs; `view` computes answers from a snapshot; `sample` reads CPU and memory when asked;
//! `render` turns answers into text. Invariant: the server only reads the snapshot and sends ops
//! to the inbox; it never touches supervisor state, and no client can affect the apps except by
//! a well-formed op from an allowed peer.

pub mod client;
pub mod proto;
pub mod render;
pub mod sample;
pub mod server;
pub mod socket;
pub mod view;

#[cfg(test)]
mod tests;
