//! The control socket: protocol, server (inside the supervisor process) and client (the verbs).
