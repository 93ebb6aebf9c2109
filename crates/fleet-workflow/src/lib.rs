//! The workflow engine of fleet: Claude-Code-compatible workflow scripts run on an embedded
//! JavaScript engine, with resume from a journal of finished agent calls.
//!
//! Nothing is here yet: this crate is filled by the workflow-engine work. It exists now so that
//! the workspace layout and the dependency rule (it depends on `fleet-core` only) hold from the
//! start.
