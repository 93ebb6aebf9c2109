//! The OS sandbox for fleet's specialist workers (Landlock, seccomp, capabilities, an
//! unprivileged uid), the supervisor that runs them, and their JSON-RPC 2.0 protocol over stdio.
//!
//! Nothing is here yet: this crate is filled by the sandbox work. It exists now so that the
//! workspace layout and the dependency rule (it depends on `fleet-core` only) hold from the start.
