//! The control socket: protocol, server (inside the supervisor process) and client (the verbs).
//!
//! `proto` is the one wire format both sides use; `server` answers on a Unix socket from the
//! supervisor's `Handle` (reads from the snapshot, mutations through its inbox); `client` runs the
//! verbs; `socket` is where the socket lives and how to reach it (both sides), `bind` makes it;
//! `slots` caps connections and followers; `logsrc` selects
//! log lines; `render` turns answers into text. The answers themselves come from
//! `crate::report`. Invariant: the server only reads the snapshot and sends ops to the inbox; it
//! never touches supervisor state, and no client can affect the apps except by a well-formed op
//! from an allowed peer.

mod bind;
pub mod client;
mod hangup;
mod logsrc;
pub mod proto;
pub mod render;
pub mod server;
mod slots;
pub mod socket;

#[cfg(test)]
mod tests;
