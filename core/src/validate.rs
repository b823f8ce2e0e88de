//! Validation of incoming changes, shared by the server (before it stores or relays anything) and
//! the device client.
//!
//! Given a task document before and after a set of changes, and the authenticated party that
//! sent them, [`validate_changes`] accepts the changes only if:
//! - nothing but the event list changed: each change only inserts new items into `events` and
//!   writes inside the objects it created there, so the fixed fields are untouched, every
//!   existing event is still there exactly as it was, and no new event holds conflicting values;
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
//! list whose first event is `created`) on a unit the party may act on, from a known template;
//! any further changes in the same batch are appends like any other.

use crate::doc::{self, EVENTS, TaskMeta};
use crate::event::{Event, EventKind};
use crate::fold;
use crate::hlc::Hlc;
use crate::ids::{DeviceId, EventId, Role, UnitId, UserId};
use crate::index;
use crate::rules::{self, Refusal};
use crate::template::{Template, TemplateRef, TemplateRegistry};
use crate::time::{Millis, Span};
use automerge::{Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, hydrate, legacy};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};

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
    /// How deeply objects may nest in a task, counted from its root (an event in `events` is
    /// at depth 2). Checked from a change's operations before anything reads the objects.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_clock_skew: Span::from_minutes(5),
            max_changes: 1_000,
            max_events: 10_000,
            max_depth: 32,
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
    #[error("objects nest more than {limit} levels deep")]
    TooDeep { limit: usize },
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
    #[error(
        "event {event}: stamp {hlc} does not come after {synced}, which its device has already synced on this task"
    )]
    StampBehindDevice {
        event: EventId,
        hlc: Hlc,
        synced: Hlc,
    },
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
///
/// The same as [`validate_changes_with`] without events known in advance: `before`'s events are
/// read from it when a change needs them.
pub fn validate_changes(
    before: &Automerge,
    after: &Automerge,
    auth: &AuthContext,
    templates: &TemplateRegistry,
    now: Millis,
    limits: &Limits,
) -> Result<Vec<Event>, ValidationError> {
    validate_changes_with(before, after, None, auth, templates, now, limits)
}

/// Check the changes that turn `before` into `after`. Returns the new events, in fold order.
///
/// `known`, when given, are the readable events of `before` (in any order), as a server that
/// keeps each task's decoded events in memory holds them. They stand for what the author of a
/// change saw whenever the change was written on top of everything in `before`, so `before` is
/// never read again. Without them they are read from `before`, once, when needed.
pub fn validate_changes_with(
    before: &Automerge,
    after: &Automerge,
    known: Option<&[Event]>,
    auth: &AuthContext,
    templates: &TemplateRegistry,
    now: Millis,
    limits: &Limits,
) -> Result<Vec<Event>, ValidationError> {
    let before = before.get_heads();
    let changes = after.get_changes(&before);
    let applied = Applied {
        before: &before,
        after,
        changes: &changes,
    };
    let known = Known {
        meta: None,
        events: known,
    };
    validate_applied(&applied, known, auth, templates, now, limits)
}

/// What the caller already knows of a task document as it stood before the changes, as a server
/// that keeps its open tasks in memory does; validation reads what is not given from the document.
#[derive(Clone, Copy, Debug, Default)]
pub struct Known<'a> {
    /// The task's fixed fields (they never change once the task is created).
    pub meta: Option<&'a TaskMeta>,
    /// The task's readable events, in any order.
    pub events: Option<&'a [Event]>,
}

/// A document with a set of changes just applied: everything validation reads.
#[derive(Clone, Copy, Debug)]
pub struct Applied<'a> {
    /// The document's heads before the changes.
    pub before: &'a [ChangeHash],
    /// The document with the changes.
    pub after: &'a Automerge,
    /// The changes: everything in `after` that is not in `before`, in causal order.
    pub changes: &'a [automerge::Change],
}

/// Check the changes of `applied`. Returns the new events, in fold order. `known.events` stand
/// in for the events before the changes as in [`validate_changes_with`].
///
/// Only the new changes and the objects they create are read: the changes' operations show that
/// they do nothing but add new items to `events` and fill them; the new events are read from
/// those items alone. A change written without having seen all of `before` (offline work
/// arriving after concurrent changes) is judged against the document as it stood at the
/// change's dependencies, read in full.
pub fn validate_applied(
    applied: &Applied<'_>,
    known: Known<'_>,
    auth: &AuthContext,
    templates: &TemplateRegistry,
    now: Millis,
    limits: &Limits,
) -> Result<Vec<Event>, ValidationError> {
    let Applied {
        before: before_heads,
        after,
        changes,
    } = *applied;
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    // A known task stays a task: the checks below refuse any change to its top-level fields.
    let task_before = known.meta.is_some();
    if !task_before && (index::is_index_at(after, Some(before_heads)) || index::is_index(after)) {
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

    let creating = before_heads.is_empty();
    if creating {
        check_creation(changes)?;
    }
    let events_list = events_list(after);
    // Every change's operations are checked before any object is read: a change later in the
    // batch may write into what an earlier one created, and reading recurses.
    let mut inserted = Vec::with_capacity(changes.len());
    for (i, change) in changes.iter().enumerate() {
        let lays_out = creating && i == 0;
        inserted.push(appended_items(
            after,
            before_heads,
            change,
            events_list.as_ref(),
            lays_out,
            limits.max_depth,
        )?);
    }
    let appended = inserted
        .into_iter()
        .map(|items| items.into_iter().map(|i| i.read(after)).collect())
        .collect::<Result<Vec<Vec<Item>>, _>>()?;
    if !creating && events_list.is_none() {
        return Err(not_an_append("`events` is not a list"));
    }

    let meta = match known.meta {
        Some(meta) => Cow::Borrowed(meta),
        None => Cow::Owned(
            doc::read_meta_of(after).map_err(|e| ValidationError::NotATask {
                problem: e.to_string(),
            })?,
        ),
    };
    if !auth.system && !auth.units.contains(&meta.unit) {
        return Err(ValidationError::UnitNotAllowed {
            unit: meta.unit.clone(),
        });
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
    let total = events_list.as_ref().map_or(0, |list| after.length(list));
    if total > limits.max_events {
        return Err(ValidationError::TooManyEvents {
            limit: limits.max_events,
        });
    }

    let context = Context {
        template,
        meta: &meta,
        auth,
        now,
        limits,
    };
    let batch: HashMap<ChangeHash, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.hash(), i))
        .collect();
    let mut before_events: Option<Cow<'_, [Event]>> = known.events.map(Cow::Borrowed);
    // The latest stamp the sending device has already synced on this task: its new events must
    // come after it, whatever their changes depend on, so a change written beside the device's
    // own earlier ones cannot backdate an action (an honest device's events on a task follow
    // one another). Moves on with each change of the batch, in causal order.
    let mut device_floor: Option<Hlc> = None;
    if !auth.system {
        let before = match &mut before_events {
            Some(events) => events,
            None => before_events.insert(Cow::Owned(
                doc::read_events(after, Some(before_heads))
                    .map_err(|e| ValidationError::NotATask {
                        problem: e.to_string(),
                    })?
                    .events,
            )),
        };
        device_floor = before
            .iter()
            .filter(|e| e.device == auth.device)
            .map(|e| e.hlc)
            .max();
    }
    // The events each change added, once checked.
    let mut added_by: Vec<Option<Vec<Event>>> = vec![None; changes.len()];
    for (i, (change, items)) in changes.iter().zip(appended).enumerate() {
        let added = read_items(after, change, events_list.as_ref(), items)?;
        // What the change's author had seen, read from the events already decoded where that is
        // cheap: `before`'s events without those of the changes of `before` it was written
        // without (none, for a change written on top of everything), and the events of the
        // batch's changes before it. Otherwise the document is read at the change's deps.
        let from_known = match past_of(change, changes, &batch, &added_by) {
            Some(past) => {
                let base = match &mut before_events {
                    Some(events) => events,
                    None => before_events.insert(Cow::Owned(
                        doc::read_events(after, Some(before_heads))
                            .map_err(|e| ValidationError::NotATask {
                                problem: e.to_string(),
                            })?
                            .events,
                    )),
                };
                let unseen = if before_heads.iter().all(|h| past.reached.contains(h)) {
                    Some(HashSet::new())
                } else {
                    events_list
                        .as_ref()
                        .and_then(|list| unseen_events(after, list, &past.reached, &batch, base))
                };
                unseen.map(|unseen| {
                    let mut seen: Vec<&Event> =
                        base.iter().filter(|e| !unseen.contains(&e.id)).collect();
                    for a in &past.ancestors {
                        if let Some(Some(events)) = added_by.get(*a) {
                            seen.extend(events);
                        }
                    }
                    seen
                })
            }
            None => None,
        };
        let added = match from_known {
            Some(seen) => check_added(&context, seen, added)?,
            None => {
                let at_deps = doc::read_events(after, Some(change.deps()))
                    .map_err(|e| ValidationError::NotATask {
                        problem: e.to_string(),
                    })?
                    .events;
                check_added(&context, at_deps.iter().collect(), added)?
            }
        };
        if !auth.system {
            for event in added.iter().filter(|e| e.device == auth.device) {
                if let Some(synced) = device_floor
                    && event.hlc <= synced
                {
                    return Err(ValidationError::StampBehindDevice {
                        event: event.id.clone(),
                        hlc: event.hlc,
                        synced,
                    });
                }
            }
            device_floor = device_floor.max(
                added
                    .iter()
                    .filter(|e| e.device == auth.device)
                    .map(|e| e.hlc)
                    .max(),
            );
        }
        added_by[i] = Some(added);
    }
    let mut accepted: Vec<Event> = added_by.into_iter().flatten().flatten().collect();
    accepted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    Ok(accepted)
}

/// What the per-event checks need besides the events.
struct Context<'a> {
    template: &'a Template,
    meta: &'a TaskMeta,
    auth: &'a AuthContext,
    now: Millis,
    limits: &'a Limits,
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

/// The task's event list, if it has one.
fn events_list(doc: &Automerge) -> Option<ObjId> {
    match doc.get(ROOT, EVENTS) {
        Ok(Some((automerge::Value::Object(ObjType::List), id))) => Some(id),
        _ => None,
    }
}

/// One item a change inserted into `events`, not read yet.
struct Inserted {
    /// The operation that inserted it (for an object, the object's id).
    id: ObjId,
    /// The value, for a scalar; `None` for an object, read from the document.
    scalar: Option<automerge::ScalarValue>,
}

impl Inserted {
    /// Read the item as the document holds it. Its depth was checked from the operations.
    fn read(self, after: &Automerge) -> Result<Item, ValidationError> {
        let value = match self.scalar {
            Some(scalar) => hydrate::Value::Scalar(scalar),
            None => {
                ReadDoc::hydrate(after, &self.id, None).map_err(|e| not_an_append(e.to_string()))?
            }
        };
        if has_conflict(&value) {
            return Err(not_an_append("an event holds conflicting values"));
        }
        Ok(Item { id: self.id, value })
    }
}

/// One item a change inserted into `events`.
struct Item {
    /// The operation that inserted it (for an object, the object's id).
    id: ObjId,
    /// Its value as the document holds it.
    value: hydrate::Value,
}

/// The items `change` adds to `events`, after checking that it does nothing else: every
/// operation inserts a new item into `events` or writes inside an object the same change created
/// there, and no object it makes nests deeper than `max_depth`. `lays_out` allows anything else
/// in the change that creates the document.
fn appended_items(
    after: &Automerge,
    before: &[ChangeHash],
    change: &automerge::Change,
    events: Option<&ObjId>,
    lays_out: bool,
    max_depth: usize,
) -> Result<Vec<Inserted>, ValidationError> {
    let expanded = change.decode();
    let actor = &expanded.actor_id;
    let start = expanded.start_op.get();
    // The objects this change created and may fill, by counter, with their depth.
    let mut own: HashMap<u64, usize> = HashMap::new();
    let mut items = Vec::new();
    for (i, op) in expanded.operations.iter().enumerate() {
        let counter = u64::try_from(i)
            .ok()
            .and_then(|i| start.checked_add(i))
            .ok_or_else(|| not_an_append("the change's operation ids run out"))?;
        let target = match &op.obj {
            legacy::ObjectId::Root if lays_out => None,
            legacy::ObjectId::Root => return Err(root_key_changed(after, before, &op.key)),
            legacy::ObjectId::Id(obj) => Some(obj),
        };
        let parent_depth = match target {
            Some(obj) if events.is_some_and(|list| same_object(list, obj)) => {
                if !op.insert || !op.pred.is_empty() {
                    return Err(not_an_append("an existing event was changed or removed"));
                }
                let id = ObjId::Id(counter, actor.clone(), 0);
                let scalar = match &op.action {
                    legacy::OpType::Make(_) => None,
                    legacy::OpType::Put(scalar) => Some(scalar.clone()),
                    _ => return Err(not_an_append("`events` may only receive new events")),
                };
                items.push(Inserted { id, scalar });
                1
            }
            Some(obj) if obj.actor() == actor && own.contains_key(&obj.counter()) => {
                own.get(&obj.counter()).copied().unwrap_or_default()
            }
            Some(obj) if !lays_out => return Err(existing_object_changed(after, before, obj)),
            Some(_) | None => 0,
        };
        if matches!(op.action, legacy::OpType::Make(_)) {
            let depth = parent_depth + 1;
            if depth > max_depth {
                return Err(ValidationError::TooDeep { limit: max_depth });
            }
            own.insert(counter, depth);
        }
    }
    Ok(items)
}

fn same_object(list: &ObjId, obj: &legacy::OpId) -> bool {
    matches!(list, ObjId::Id(counter, actor, _) if *counter == obj.counter() && actor == obj.actor())
}

/// The problem with a write to the root of a task (`before`: the heads it was written against).
fn root_key_changed(
    after: &Automerge,
    before: &[ChangeHash],
    key: &legacy::Key,
) -> ValidationError {
    match key {
        legacy::Key::Map(key) if key.as_str() == EVENTS => {
            not_an_append("an existing event was changed or removed")
        }
        legacy::Key::Map(key)
            if matches!(after.get_at(ROOT, key.as_str(), before), Ok(Some(_))) =>
        {
            not_an_append(format!("`{key}` was changed"))
        }
        _ => not_an_append("top-level fields were added or removed"),
    }
}

/// The problem with a write inside an object that existed before the change: a top-level field
/// of the task, or else an event. Only the root's fields are looked at, as they stood before the
/// changes (Automerge cannot walk up from an object a later change deleted, or one that did not
/// exist yet, without panicking, so its parents are never asked for).
fn existing_object_changed(
    after: &Automerge,
    before: &[ChangeHash],
    obj: &legacy::OpId,
) -> ValidationError {
    let id = ObjId::Id(obj.counter(), obj.actor().clone(), 0);
    let field = after
        .map_range_at(ROOT, .., before)
        .find(|item| item.id() == id)
        .map(|item| item.key.to_string());
    match field {
        Some(key) if key != EVENTS => not_an_append(format!("`{key}` was changed")),
        _ => not_an_append("an existing event was changed or removed"),
    }
}

fn has_conflict(value: &hydrate::Value) -> bool {
    match value {
        hydrate::Value::Map(m) => m.iter().any(|(_, v)| v.conflict || has_conflict(&v.value)),
        hydrate::Value::List(l) => l.iter().any(|v| v.conflict || has_conflict(&v.value)),
        hydrate::Value::Scalar(_) | hydrate::Value::Text(_) => false,
    }
}

/// The events a change added, read from the items it inserted.
fn read_items(
    after: &Automerge,
    change: &automerge::Change,
    events: Option<&ObjId>,
    items: Vec<Item>,
) -> Result<Vec<Event>, ValidationError> {
    let mut added = Vec::with_capacity(items.len());
    for item in items {
        match doc::parse_event(&item.value) {
            Ok(event) => added.push(event),
            Err(problem) => {
                return Err(ValidationError::Unreadable {
                    index: index_of(after, change, events, &item.id),
                    problem,
                });
            }
        }
    }
    Ok(added)
}

/// Where an item stands in `events` once `change` is applied.
fn index_of(
    after: &Automerge,
    change: &automerge::Change,
    events: Option<&ObjId>,
    id: &ObjId,
) -> usize {
    let Some(events) = events else {
        return 0;
    };
    let heads = [change.hash()];
    after
        .list_range_at(events, .., &heads)
        .find(|item| &item.id() == id)
        .map_or_else(|| after.length_at(events, &heads), |item| item.index)
}

/// The causal past of a change of the batch.
struct Past {
    /// The changes of this batch in it (their indices in the batch).
    ancestors: BTreeSet<usize>,
    /// The changes outside the batch (of `before`) it depends on directly, or through changes
    /// of the batch.
    reached: Vec<ChangeHash>,
}

/// The causal past of `change`, or `None` when it runs through a change of this batch not
/// checked yet.
fn past_of(
    change: &automerge::Change,
    changes: &[automerge::Change],
    batch: &HashMap<ChangeHash, usize>,
    checked: &[Option<Vec<Event>>],
) -> Option<Past> {
    let mut ancestors = BTreeSet::new();
    let mut reached = BTreeSet::new();
    let mut stack: Vec<ChangeHash> = change.deps().to_vec();
    while let Some(hash) = stack.pop() {
        match batch.get(&hash) {
            Some(&i) => {
                if checked.get(i).is_none_or(Option::is_none) {
                    return None;
                }
                if ancestors.insert(i)
                    && let Some(c) = changes.get(i)
                {
                    stack.extend_from_slice(c.deps());
                }
            }
            None => {
                reached.insert(hash);
            }
        }
    }
    Some(Past {
        ancestors,
        reached: reached.into_iter().collect(),
    })
}

/// At most this many changes of `before` a change may have been written without and still be
/// judged from the decoded events; beyond, the document is read at the change's deps.
const MAX_UNSEEN: usize = 64;

/// The ids of the events that the changes of `before` outside the causal past of `reached`
/// added: those an author who had seen only `reached` did not see. `None` when they cannot be
/// told from `before`'s decoded events alone: too many such changes, an item that does not
/// read as an event, or an id that `before` holds other than once (a second copy may have come
/// from a change the author did see).
///
/// Every change of `before` passed validation, so it inserted its events whole and touched
/// nothing else: an event belongs to the change whose operation inserted it.
fn unseen_events(
    after: &Automerge,
    list: &ObjId,
    reached: &[ChangeHash],
    batch: &HashMap<ChangeHash, usize>,
    before_events: &[Event],
) -> Option<HashSet<EventId>> {
    if reached.is_empty() {
        return None;
    }
    let unseen: Vec<_> = after
        .get_changes_meta(reached)
        .into_iter()
        .filter(|m| !batch.contains_key(&m.hash))
        .collect();
    if unseen.len() > MAX_UNSEEN {
        return None;
    }
    let mut ids = HashSet::new();
    for item in after.list_range(list, ..) {
        let ObjId::Id(counter, actor, _) = item.id() else {
            continue;
        };
        let inserted_unseen = unseen
            .iter()
            .any(|m| *m.actor == actor && (m.start_op..=m.max_op).contains(&counter));
        if inserted_unseen {
            ids.insert(event_id(after, &item.id())?);
        }
    }
    let mut held: HashMap<&EventId, usize> = ids.iter().map(|id| (id, 0)).collect();
    for event in before_events {
        if let Some(count) = held.get_mut(&event.id) {
            *count += 1;
        }
    }
    held.values().all(|&n| n == 1).then_some(ids)
}

/// The id of the event `item` of the list, read alone.
fn event_id(after: &Automerge, item: &ObjId) -> Option<EventId> {
    match after.get(item, "id").ok()?? {
        (automerge::Value::Scalar(s), _) => s.as_str().map(EventId::from),
        (automerge::Value::Object(ObjType::Text), text) => {
            after.text(&text).ok().map(EventId::from)
        }
        (automerge::Value::Object(_), _) => None,
    }
}

/// The checks every new event passes, against the events its author had seen: fresh ids;
/// identity, stamp ([`check_event`]); and the task's rules in the state the author saw.
fn check_added(
    cx: &Context<'_>,
    seen: Vec<&Event>,
    mut added: Vec<Event>,
) -> Result<Vec<Event>, ValidationError> {
    {
        let seen_ids: HashSet<&EventId> = seen.iter().map(|e| &e.id).collect();
        let mut fresh = HashSet::new();
        if let Some(dup) = added
            .iter()
            .find(|e| seen_ids.contains(&e.id) || !fresh.insert(&e.id))
        {
            return Err(ValidationError::DuplicateId {
                event: dup.id.clone(),
            });
        }
    }
    added.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    let mut view = seen;
    for event in &added {
        check_event(&view, event, cx.auth, cx.now, cx.limits)?;
        let state = fold::fold(cx.template, cx.meta, view.iter().copied());
        rules::check(cx.template, &state, event).map_err(|refusal| ValidationError::Refused {
            event: event.id.clone(),
            kind: event.kind(),
            refusal,
        })?;
        view.push(event);
    }
    Ok(added)
}

/// Identity and stamp checks for one new event.
fn check_event(
    view: &[&Event],
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
        // The admin role is the server's to write in, for an administrator's action: no
        // device holds it, whatever its records say.
        if !auth.roles.contains(&event.actor.role) || event.actor.is_admin() {
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
    Ok(())
}
