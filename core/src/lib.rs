//! # baton-core
//!
//! The shared core of Baton: the sync server runs it, and so does the device client behind the
//! `client` feature (native apps are to embed it through uniffi bindings, which are planned). It
//! does no I/O: every function is a pure function of its inputs and the time it is given.
//!
//! - [`template`]: workflow templates (steps, roles, windows, escalation, off-track rules).
//! - [`doc`]: task documents in Automerge, changed only by appending [`event`]s.
//! - [`fold`]: a task's state, derived deterministically from its events, with conflicts kept.
//! - [`rules`]: what may happen to a task, in one place.
//! - [`index`]: unit index documents, the server-written list of a unit's open tasks.
//! - [`summary`]: a task's summary, the fields lists of tasks show and filter by.
//! - [`worklist`]: a person's open work, filtered and ordered by risk.
//! - [`view`]: a task as one person sees it, with what they may do now.
//! - [`validate`]: the check every incoming change passes before it is stored or relayed.
//! - [`policy`]: coverage (who is on) and escalation (what is due next).
//! - [`hlc`]: the hybrid logical clock that orders events.
//! - [`sync`]: the automerge-repo sync protocol: messages, handshake, per-peer document sync,
//!   and the document actor the server runs.
//! - `client` (feature `client`): the device client, the I/O shell around all of the above.
//!
//! ```
//! use baton_core::{Author, EventBody, HlcClock, NewTask, Subject, TaskDoc, TemplateRegistry};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let templates = TemplateRegistry::shipped();
//! let consult = templates.latest(&"consult".into()).expect("shipped");
//! let nurse = Author::new("rn.evans", "nurse", "phone-17");
//! let mut clock = HlcClock::new();
//! let now = 1_767_596_400_000; // the caller supplies time; the core never reads a clock
//! let new = NewTask {
//!     unit: "4W".into(),
//!     subject: Subject { reference: "enc-1001".into(), label: "Bed 12 · J.D.".into() },
//!     acuity: Some("urgent".into()),
//!     note: None,
//! };
//! let (mut task, _) = TaskDoc::create(consult, new, &nurse, &mut clock, now, automerge::ActorId::random())?;
//!
//! let physician = Author::new("dr.fox", "physician", "phone-3");
//! task.append(consult, &physician, &mut clock, now + 60_000, EventBody::Acknowledged {})?;
//! let state = task.state(consult)?;
//! assert_eq!(state.owner.expect("owned").user.as_str(), "dr.fox");
//! assert_eq!(state.current_step.expect("a step is open").as_str(), "request");
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "client")]
pub mod client;
pub mod codec;
pub mod doc;
pub mod event;
pub mod fold;
#[doc(hidden)]
pub mod fuzz;
pub mod hlc;
pub mod ids;
pub mod index;
pub mod notice;
pub mod policy;
pub mod rules;
pub mod shipped;
pub mod summary;
pub mod sync;
pub mod template;
pub mod time;
pub mod validate;
pub mod view;
pub mod worklist;

pub use doc::{Author, NewTask, Subject, TaskDoc, TaskMeta};
pub use event::{Actor, Event, EventBody, EventKind, FieldValue};
pub use fold::{TaskState, fold};
pub use hlc::{Hlc, HlcClock};
pub use template::{Template, TemplateRef, TemplateRegistry};
pub use time::{Millis, Span};
