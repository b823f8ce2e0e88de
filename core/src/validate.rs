//! Validation of incoming changes, shared by the server (before it stores or relays anything) and
//! the device client.
//!
//! Given a task document before and after a set of changes, and the authenticated party that
//! sent them, [`validate_changes`] accepts the changes only if:
//! - nothing but the event list changed: the fixed fields are untouched, every existing event is
//!   still there exactly as it was, nothing holds conflicting values;
//! - each new event reads as an event, has a fresh id, and names the authenticated user, one of
//!   their roles, and their device;
//! - its HLC stamp sorts after every event its author had seen and is not ahead of the server's
//!   clock by more than the allowed skew;
//! - the task's rules ([`crate::rules::check`]) allow it **in the state its author saw**: the
//!   events in the causal past of the change that added it. A concurrent event the author could
//!   not have seen makes a conflict in the fold, not a refusal here, so offline work is never
//!   refused for what happened elsewhere meanwhile.
//!
//! A new document is accepted when its first change creates a task (all fixed fields, an event
//! list whose first event is `created`) on a unit the party may act on, from a known template.

use crate::doc::{self, EVENTS, EventLog};
use crate::event::{Event, EventKind};
use crate::fold;
use crate::hlc::Hlc;
use crate::ids::{DeviceId, EventId, Role, UnitId, UserId};
use crate::index;
use crate::rules::{self, Refusal};
use crate::template::{TemplateRef, TemplateRegistry};
use crate::time::{Millis, Span};
use automerge::{Automerge, hydrate};
use serde::Serialize;
use std::collections::BTreeSet;

/// Who sent the changes, as authenticated and checked against the server's records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthContext {
    pub user: UserId,
    pub device: DeviceId,
    pub roles: Vec<Role>,
    pub units: Vec<UnitId>,
    /// The server itself (its own escalations). Skips the identity checks, not the rules.
    pub system: bool,
}

/// Bounds on what one batch of changes may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How far ahead of the validating clock an event's HLC may be.
    pub max_clock_skew: Span,
    /// How many new changes one validation accepts.
    pub max_changes: usize,
    /// How many events a task may hold.
    pub max_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_clock_skew: Span::from_minutes(5),
            max_changes: 1_000,
            max_events: 10_000,
        }
    }
}

/// Why a set of changes was refused. Every variant is safe to show the sender.
#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize)]
#[serde(rename_all = "snake_case", tag = "error")]
pub enum ValidationError {
    #[error("not a task document: {problem}")]
    NotATask { problem: String },
    #[error("unknown template {template}")]
    UnknownTemplate { template: TemplateRef },
    #[error("unit index documents are written by the server only")]
    ServerWritten,
    #[error("not allowed on unit {unit}")]
    UnitNotAllowed { unit: UnitId },
    #[error("only appends to `events` are allowed: {problem}")]
    NotAnAppend { problem: String },
    #[error("too many changes at once ({count}, limit {limit})")]
    TooManyChanges { count: usize, limit: usize },
    #[error("the task would hold more than {limit} events")]
    TooManyEvents { limit: usize },
    #[error("event #{index} cannot be read: {problem}")]
    Unreadable { index: usize, problem: String },
    #[error("event {event}: its {field} is `{claimed}` but the sender is `{authenticated}`")]
    Impersonation {
        event: EventId,
        field: &'static str,
        claimed: String,
        authenticated: String,
    },
    #[error("event {event}: stamp {hlc} does not come after {seen}, which its author had seen")]
    StampNotAfterSeen { event: EventId, hlc: Hlc, seen: Hlc },
    #[error("event {event}: stamp {hlc} is ahead of the clock ({now} ms)")]
    StampInFuture {
        event: EventId,
        hlc: Hlc,
        now: Millis,
    },
    #[error("event id {event} is already used")]
    DuplicateId { event: EventId },
    #[error("event {event} ({kind}): {refusal}")]
    Refused {
        event: EventId,
        kind: EventKind,
        refusal: Refusal,
    },
}

fn not_an_append(problem: impl Into<String>) -> ValidationError {
    ValidationError::NotAnAppend {
        problem: problem.into(),
    }
}

/// Check the changes that turn `before` into `after`. Returns the new events, in fold order.
pub fn validate_changes(
    before: &Automerge,
    after: &Automerge,
    auth: &AuthContext,
    templates: &TemplateRegistry,
    now: Millis,
    limits: &Limits,
) -> Result<Vec<Event>, ValidationError> {
    let before_heads = before.get_heads();
    let changes = after.get_changes(&before_heads);
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    if index::is_index(before) || index::is_index(after) {
        return if auth.system {
            Ok(Vec::new())
        } else {
            Err(ValidationError::ServerWritten)
        };
    }
    if changes.len() > limits.max_changes {
        return Err(ValidationError::TooManyChanges {
            count: changes.len(),
            limit: limits.max_changes,
        });
    }

    let after_root = after.hydrate(None);
    if before_heads.is_empty() {
        check_creation(&changes)?;
    } else {
        check_append_only(&before.hydrate(None), &after_root)?;
    }
    let meta = doc::read_meta(&after_root).map_err(|e| ValidationError::NotATask {
        problem: e.to_string(),
    })?;
    if !auth.system && !auth.units.contains(&meta.unit) {
        return Err(ValidationError::UnitNotAllowed { unit: meta.unit });
    }
    let template =
        templates
            .get(&meta.template)
            .ok_or_else(|| ValidationError::UnknownTemplate {
                template: meta.template.clone(),
            })?;
    if template.acuity_level(&meta.acuity).is_none() {
        return Err(ValidationError::NotATask {
            problem: format!(
                "acuity `{}` is not a level of {}",
                meta.acuity, meta.template
            ),
        });
    }
    let total = doc::events_of(&after_root);
    if total.events.len() + total.unreadable.len() > limits.max_events {
        return Err(ValidationError::TooManyEvents {
            limit: limits.max_events,
        });
    }

    let mut accepted = Vec::new();
    for change in &changes {
        let seen = doc::read_events(after, Some(change.deps())).map_err(|e| {
            ValidationError::NotATask {
                problem: e.to_string(),
            }
        })?;
        let with = doc::read_events(after, Some(&[change.hash()])).map_err(|e| {
            ValidationError::NotATask {
                problem: e.to_string(),
            }
        })?;
        let mut added = new_events(&seen, with)?;
        added.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let mut view = seen.events;
        for event in added {
            check_event(&view, &event, auth, now, limits)?;
            let state = fold::fold(template, &meta, &view);
            rules::check(template, &state, &event).map_err(|refusal| ValidationError::Refused {
                event: event.id.clone(),
                kind: event.kind(),
                refusal,
            })?;
            view.push(event.clone());
            accepted.push(event);
        }
    }
    accepted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    Ok(accepted)
}

/// The first change of a new document must lay out the whole task.
fn check_creation(changes: &[automerge::Change]) -> Result<(), ValidationError> {
    match changes.first() {
        Some(first) if first.deps().is_empty() => Ok(()),
        _ => Err(not_an_append(
            "a new task must start with the change that creates it",
        )),
    }
}

/// Fixed fields untouched, every earlier event still present and unchanged, no conflicts.
fn check_append_only(
    before: &hydrate::Value,
    after: &hydrate::Value,
) -> Result<(), ValidationError> {
    let (hydrate::Value::Map(before), hydrate::Value::Map(after)) = (before, after) else {
        return Err(not_an_append("the root is not a map"));
    };
    let keys = |m: &hydrate::Map| m.iter().map(|(k, _)| k.clone()).collect::<BTreeSet<_>>();
    if keys(before) != keys(after) {
        return Err(not_an_append("top-level fields were added or removed"));
    }
    for (key, value) in after.iter() {
        if value.conflict {
            return Err(not_an_append(format!(
                "`{key}` now holds conflicting values"
            )));
        }
        if key != EVENTS && Some(&value.value) != before.get(key) {
            return Err(not_an_append(format!("`{key}` was changed")));
        }
    }
    let (Some(hydrate::Value::List(old)), Some(hydrate::Value::List(new))) =
        (before.get(EVENTS), after.get(EVENTS))
    else {
        return Err(not_an_append("`events` is not a list"));
    };
    // Earlier events must appear, unchanged and in order, among the new list's items (concurrent
    // appends may land between them).
    let mut new_items = new.iter();
    for item in old.iter() {
        if !new_items.any(|n| n.value == item.value) {
            return Err(not_an_append("an existing event was changed or removed"));
        }
    }
    if new
        .iter()
        .any(|item| item.conflict || has_conflict(&item.value))
    {
        return Err(not_an_append("an event holds conflicting values"));
    }
    Ok(())
}

fn has_conflict(value: &hydrate::Value) -> bool {
    match value {
        hydrate::Value::Map(m) => m.iter().any(|(_, v)| v.conflict || has_conflict(&v.value)),
        hydrate::Value::List(l) => l.iter().any(|v| v.conflict || has_conflict(&v.value)),
        hydrate::Value::Scalar(_) | hydrate::Value::Text(_) => false,
    }
}

/// The events in `with` that are not in `seen`: what one change added.
fn new_events(seen: &EventLog, with: EventLog) -> Result<Vec<Event>, ValidationError> {
    if let Some(bad) = with
        .unreadable
        .iter()
        .find(|u| !seen.unreadable.contains(u))
    {
        return Err(ValidationError::Unreadable {
            index: bad.index,
            problem: bad.problem.clone(),
        });
    }
    let seen_ids: BTreeSet<&EventId> = seen.events.iter().map(|e| &e.id).collect();
    let with_ids: BTreeSet<&EventId> = with.events.iter().map(|e| &e.id).collect();
    if !seen_ids.is_subset(&with_ids) {
        return Err(not_an_append("events were removed"));
    }
    let mut fresh = BTreeSet::new();
    let mut added = Vec::new();
    for event in with.events.iter().cloned() {
        if seen_ids.contains(&event.id) {
            if !seen.events.contains(&event) {
                return Err(ValidationError::DuplicateId { event: event.id });
            }
            continue;
        }
        if !fresh.insert(event.id.clone()) {
            return Err(ValidationError::DuplicateId { event: event.id });
        }
        added.push(event);
    }
    Ok(added)
}

/// Identity, stamp and id checks for one new event.
fn check_event(
    view: &[Event],
    event: &Event,
    auth: &AuthContext,
    now: Millis,
    limits: &Limits,
) -> Result<(), ValidationError> {
    if !auth.system {
        let impersonation = |field: &'static str, claimed: &str, authenticated: &str| {
            ValidationError::Impersonation {
                event: event.id.clone(),
                field,
                claimed: claimed.to_owned(),
                authenticated: authenticated.to_owned(),
            }
        };
        if event.actor.user != auth.user {
            return Err(impersonation(
                "user",
                event.actor.user.as_str(),
                auth.user.as_str(),
            ));
        }
        if event.device != auth.device {
            return Err(impersonation(
                "device",
                event.device.as_str(),
                auth.device.as_str(),
            ));
        }
        if !auth.roles.contains(&event.actor.role) {
            let roles: Vec<&str> = auth.roles.iter().map(Role::as_str).collect();
            return Err(impersonation(
                "role",
                event.actor.role.as_str(),
                &roles.join(", "),
            ));
        }
    }
    if let Some(seen) = view.iter().map(|e| e.hlc).max()
        && event.hlc <= seen
    {
        return Err(ValidationError::StampNotAfterSeen {
            event: event.id.clone(),
            hlc: event.hlc,
            seen,
        });
    }
    if event.hlc.wall > limits.max_clock_skew.after(now) {
        return Err(ValidationError::StampInFuture {
            event: event.id.clone(),
            hlc: event.hlc,
            now,
        });
    }
    if view.iter().any(|e| e.id == event.id) {
        return Err(ValidationError::DuplicateId {
            event: event.id.clone(),
        });
    }
    Ok(())
}
