//! Policies: pure functions of state and time that the server runs and phones can preview.
//!
//! - [`coverage`]: who covers a role on a unit at a given time.
//! - [`escalation`]: a task's next deadline and what happens when it passes.
//! - [`handover`]: work that moves at a shift change or when an account is disabled.

pub mod coverage;
pub mod escalation;
pub mod handover;
