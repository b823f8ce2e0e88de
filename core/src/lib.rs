//! # baton-core
//!
//! The shared core of Baton: the same code runs on the sync server and, through the bindings,
//! inside the iOS and Android apps. It does no I/O: every function is a pure function of its
//! inputs and the time it is given.
//!
//! - [`template`]: workflow templates (steps, roles, windows, escalation, off-track rules).
//! - [`doc`]: task documents in Automerge, changed only by appending [`event`]s.
//! - [`fold`]: a task's state, derived deterministically from its events, with conflicts kept.
//! - [`rules`]: what may happen to a task, in one place.
//! - [`validate`]: the check every incoming change passes before it is stored or relayed.
//! - [`policy`]: coverage (who is on) and escalation (what is due next).
//! - [`hlc`]: the hybrid logical clock that orders events.

pub mod codec;
pub mod doc;
pub mod event;
pub mod fold;
pub mod hlc;
pub mod ids;
pub mod policy;
pub mod rules;
pub mod shipped;
pub mod template;
pub mod time;
pub mod validate;

pub use doc::{Author, NewTask, Subject, TaskDoc, TaskMeta};
pub use event::{Actor, Event, EventBody, EventKind, FieldValue};
pub use fold::{TaskState, fold};
pub use hlc::{Hlc, HlcClock};
pub use template::{Template, TemplateRef, TemplateRegistry};
pub use time::{Millis, Span};
