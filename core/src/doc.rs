//! Task documents: one Automerge document per workflow instance.
//!
//! ```text
//! { schema: 1, type: "baton/task",
//!   template: { id, version }, unit, subject: { ref, label }, acuity, created,
//!   events: [ { id, kind, actor: { user, role }, device, device_time, hlc, payload }, ... ] }
//! ```
//!
//! Everything but `events` is written once, when the task is created. `events` is append-only.
//! Callers change a task only through [`TaskDoc::append`], which checks the event against the
//! task's rules before writing it.

use crate::codec::{self, CodecError};
use crate::event::{Actor, Event, EventBody};
use crate::fold::{self, TaskState};
use crate::hlc::HlcClock;
use crate::ids::{DeviceId, EventId, Role, UnitId, UserId};
use crate::rules::{self, Refusal};
use crate::template::{Template, TemplateRef};
use crate::time::Millis;
use automerge::{
    ActorId, Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, hydrate,
    transaction::Transactable,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The version of the document layout this code writes and reads.
pub const SCHEMA: u32 = 1;
/// The `type` of a task document.
pub const TASK_TYPE: &str = "baton/task";
/// The key of the event list.
pub const EVENTS: &str = "events";

/// The patient or encounter a task is about. Keep protected health information out of it beyond
/// what a clinician needs to recognise the patient on a worklist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// An opaque reference to the patient or encounter in the EHR.
    #[serde(rename = "ref")]
    pub reference: String,
    /// A minimal display label, e.g. "Bed 12 · J.D.".
    pub label: String,
}

/// The fixed fields of a task document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskMeta {
    pub schema: u32,
    #[serde(rename = "type")]
    pub doc_type: String,
    pub template: TemplateRef,
    pub unit: UnitId,
    pub subject: Subject,
    /// The acuity the task was opened at; `acuity_changed` events move it.
    pub acuity: String,
    /// When the task was created (the creating device's HLC wall time).
    pub created: Millis,
}

/// The person (in one role, on one device) writing to a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    pub user: UserId,
    pub role: Role,
    pub device: DeviceId,
}

impl Author {
    pub fn new(
        user: impl Into<UserId>,
        role: impl Into<Role>,
        device: impl Into<DeviceId>,
    ) -> Self {
        Author {
            user: user.into(),
            role: role.into(),
            device: device.into(),
        }
    }

    /// The server, writing escalations and exceptions from `device` (its node id).
    pub fn system(device: impl Into<DeviceId>) -> Self {
        let actor = Actor::system();
        Author {
            user: actor.user,
            role: actor.role,
            device: device.into(),
        }
    }

    fn actor(&self) -> Actor {
        Actor {
            user: self.user.clone(),
            role: self.role.clone(),
        }
    }
}

/// An event in the list that could not be read; the fold skips it, validation refuses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreadable {
    pub index: usize,
    pub problem: String,
}

/// The events of a task as read from its document.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventLog {
    pub events: Vec<Event>,
    pub unreadable: Vec<Unreadable>,
}

/// A document that is not a readable task.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("not an Automerge document: {0}")]
    Load(String),
    #[error("not a task document: {0}")]
    NotATask(String),
    #[error("task document of schema {0}; this version reads schema {SCHEMA}")]
    Schema(u32),
    #[error("the task's template {0} is not known here")]
    UnknownTemplate(TemplateRef),
    #[error("{0}")]
    Automerge(String),
}

/// Why an event could not be appended.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Doc(#[from] DocError),
    #[error("the task uses template {task}, not {given}")]
    WrongTemplate {
        task: TemplateRef,
        given: TemplateRef,
    },
}

/// What is needed to open a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTask {
    pub unit: UnitId,
    pub subject: Subject,
    /// Defaults to the template's first acuity level.
    pub acuity: Option<String>,
    pub note: Option<String>,
}

/// A task document.
#[derive(Debug, Clone)]
pub struct TaskDoc {
    doc: Automerge,
    meta: TaskMeta,
}

impl TaskDoc {
    /// Open a new task from `template`, written by `author`. Returns the document and its
    /// `created` event.
    pub fn create(
        template: &Template,
        new: NewTask,
        author: &Author,
        clock: &mut HlcClock,
        now: Millis,
        actor_id: ActorId,
    ) -> Result<(TaskDoc, Event), AppendError> {
        let acuity = new
            .acuity
            .unwrap_or_else(|| template.default_acuity().to_owned());
        if template.acuity_level(&acuity).is_none() {
            return Err(Refusal::UnknownAcuity { acuity }.into());
        }
        let hlc = clock.tick(now);
        let meta = TaskMeta {
            schema: SCHEMA,
            doc_type: TASK_TYPE.to_owned(),
            template: TemplateRef {
                id: template.id.clone(),
                version: template.version,
            },
            unit: new.unit,
            subject: new.subject,
            acuity,
            created: hlc.wall,
        };
        let event = Event {
            id: EventId::random(),
            actor: author.actor(),
            device: author.device.clone(),
            device_time: now,
            hlc,
            body: EventBody::Created { note: new.note },
        };
        rules::check(template, &TaskState::new(template, &meta), &event)?;

        let mut doc = Automerge::new().with_actor(actor_id);
        let Value::Object(root) = serde_json::to_value(&meta).map_err(internal)? else {
            return Err(DocError::Automerge("task metadata is not an object".into()).into());
        };
        let event_json = event_to_json(&event)?;
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            codec::write_map(tx, &ROOT, &root)?;
            let events = tx.put_object(ROOT, EVENTS, ObjType::List)?;
            let obj = tx.insert_object(&events, 0, ObjType::Map)?;
            codec::write_map(tx, &obj, &event_json)
        })
        .map_err(|f| DocError::Automerge(f.error.to_string()))?;
        Ok((TaskDoc { doc, meta }, event))
    }

    /// Load a task from its saved bytes.
    pub fn load(bytes: &[u8]) -> Result<TaskDoc, DocError> {
        let doc = Automerge::load(bytes).map_err(|e| DocError::Load(e.to_string()))?;
        TaskDoc::from_automerge(doc)
    }

    /// Treat an Automerge document as a task, checking its fixed fields.
    pub fn from_automerge(doc: Automerge) -> Result<TaskDoc, DocError> {
        let meta = read_meta(&doc.hydrate(None))?;
        Ok(TaskDoc { doc, meta })
    }

    pub fn meta(&self) -> &TaskMeta {
        &self.meta
    }

    /// A task document whose fixed fields were already read from it.
    pub(crate) fn with_meta(doc: Automerge, meta: TaskMeta) -> TaskDoc {
        TaskDoc { doc, meta }
    }

    pub fn automerge(&self) -> &Automerge {
        &self.doc
    }

    pub fn into_automerge(self) -> Automerge {
        self.doc
    }

    /// Write future changes as `actor` (one Automerge actor per device and document session).
    pub fn set_actor(&mut self, actor: ActorId) {
        self.doc.set_actor(actor);
    }

    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }

    /// Merge another replica of the same task into this one.
    pub fn merge(&mut self, other: &mut TaskDoc) -> Result<(), DocError> {
        self.doc
            .merge(&mut other.doc)
            .map(|_| ())
            .map_err(|e| DocError::Automerge(e.to_string()))
    }

    /// The events as they stand.
    pub fn events(&self) -> Result<EventLog, DocError> {
        read_events(&self.doc, None)
    }

    /// The task's state under `template` (the version the task was created with).
    pub fn state(&self, template: &Template) -> Result<TaskState, AppendError> {
        self.check_template(template)?;
        Ok(fold::fold(template, &self.meta, &self.events()?.events))
    }

    /// Append an event written by `author` now, if the task's rules allow it.
    pub fn append(
        &mut self,
        template: &Template,
        author: &Author,
        clock: &mut HlcClock,
        now: Millis,
        body: EventBody,
    ) -> Result<Event, AppendError> {
        self.append_with_id(template, author, clock, now, EventId::random(), body)
    }

    /// Append with a chosen id: the server uses deterministic ids for escalations so two nodes
    /// firing the same timer write one event.
    pub fn append_with_id(
        &mut self,
        template: &Template,
        author: &Author,
        clock: &mut HlcClock,
        now: Millis,
        id: EventId,
        body: EventBody,
    ) -> Result<Event, AppendError> {
        let state = self.state(template)?;
        self.append_to(template, &state, author, clock, now, now, id, body)
    }

    /// Append an event a device writes: stamped at `now`, the server's time as the device knows
    /// it, with the device's own clock reading (`device_time`) kept beside it for the record.
    pub fn append_on_device(
        &mut self,
        template: &Template,
        author: &Author,
        clock: &mut HlcClock,
        now: Millis,
        device_time: Millis,
        body: EventBody,
    ) -> Result<Event, AppendError> {
        let state = self.state(template)?;
        let id = EventId::random();
        self.append_to(template, &state, author, clock, now, device_time, id, body)
    }

    /// Append to a task whose current state the caller holds already (`state` must be the fold
    /// of this document's events under `template`, the task's own version), without reading
    /// the document again: the server keeps each task's events in memory.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append_to(
        &mut self,
        template: &Template,
        state: &TaskState,
        author: &Author,
        clock: &mut HlcClock,
        now: Millis,
        device_time: Millis,
        id: EventId,
        body: EventBody,
    ) -> Result<Event, AppendError> {
        if state.history.iter().any(|h| h.event == id) {
            return Err(Refusal::DuplicateId { id }.into());
        }
        clock.observe(state.last_hlc);
        let event = Event {
            id,
            actor: author.actor(),
            device: author.device.clone(),
            device_time,
            hlc: clock.tick(now),
            body,
        };
        rules::check(template, state, &event)?;
        self.write_event(&event)?;
        Ok(event)
    }

    /// Write `event`, made earlier, again: its rules are checked in `state` (this document's
    /// fold under `template`), and it keeps its id and stamps. A device uses it to replay its
    /// own unacknowledged events onto a copy that a refused change was taken out of.
    pub fn replay(
        &mut self,
        template: &Template,
        state: &TaskState,
        event: &Event,
    ) -> Result<(), AppendError> {
        self.check_template(template)?;
        if state.history.iter().any(|h| h.event == event.id) {
            return Err(Refusal::DuplicateId {
                id: event.id.clone(),
            }
            .into());
        }
        rules::check(template, state, event)?;
        self.write_event(event)
    }

    /// Insert `event` at the end of the event list, in one change.
    fn write_event(&mut self, event: &Event) -> Result<(), AppendError> {
        let json = event_to_json(event)?;
        let events = match self.doc.get(ROOT, EVENTS) {
            Ok(Some((automerge::Value::Object(ObjType::List), id))) => id,
            _ => return Err(DocError::NotATask("`events` is not a list".into()).into()),
        };
        let at = self.doc.length(&events);
        self.doc
            .transact::<_, _, automerge::AutomergeError>(|tx| {
                let obj: ObjId = tx.insert_object(&events, at, ObjType::Map)?;
                codec::write_map(tx, &obj, &json)
            })
            .map_err(|f| DocError::Automerge(f.error.to_string()))?;
        Ok(())
    }

    fn check_template(&self, template: &Template) -> Result<(), AppendError> {
        let given = TemplateRef {
            id: template.id.clone(),
            version: template.version,
        };
        if given != self.meta.template {
            return Err(AppendError::WrongTemplate {
                task: self.meta.template.clone(),
                given,
            });
        }
        Ok(())
    }
}

fn internal(e: serde_json::Error) -> DocError {
    DocError::Automerge(e.to_string())
}

fn event_to_json(event: &Event) -> Result<serde_json::Map<String, Value>, DocError> {
    match serde_json::to_value(event).map_err(internal)? {
        Value::Object(map) => Ok(map),
        _ => Err(DocError::Automerge(
            "an event did not serialize to an object".into(),
        )),
    }
}

/// Read the fixed fields of a task from its hydrated root.
pub(crate) fn read_meta(root: &hydrate::Value) -> Result<TaskMeta, DocError> {
    let hydrate::Value::Map(map) = root else {
        return Err(DocError::NotATask("the root is not a map".into()));
    };
    let mut fields = serde_json::Map::new();
    for (key, value) in map.iter().filter(|(k, _)| k.as_str() != EVENTS) {
        if value.conflict {
            return Err(DocError::NotATask(format!(
                "`{key}` holds conflicting values"
            )));
        }
        fields.insert(
            key.clone(),
            codec::to_json(&value.value)
                .map_err(|e| DocError::NotATask(format!("`{key}`: {e}")))?,
        );
    }
    if let Some(schema) = fields.get("schema").and_then(Value::as_u64)
        && schema != u64::from(SCHEMA)
    {
        return Err(DocError::Schema(u32::try_from(schema).unwrap_or(u32::MAX)));
    }
    let meta: TaskMeta = serde_json::from_value(Value::Object(fields))
        .map_err(|e| DocError::NotATask(e.to_string()))?;
    if meta.doc_type != TASK_TYPE {
        return Err(DocError::NotATask(format!(
            "its type is `{}`",
            meta.doc_type
        )));
    }
    match map.get(EVENTS) {
        Some(hydrate::Value::List(_)) => Ok(meta),
        _ => Err(DocError::NotATask("it has no `events` list".into())),
    }
}

/// Read the fixed fields of a task without hydrating its event list (which only has to be a list).
pub fn read_meta_of(doc: &Automerge) -> Result<TaskMeta, DocError> {
    let encoding = doc.text_encoding();
    let mut root = hydrate::Map::default();
    for item in doc.map_range(ROOT, ..) {
        let value = match item.value.clone().into_value() {
            automerge::Value::Object(_) if item.key != EVENTS => {
                ReadDoc::hydrate(doc, item.id(), None)
                    .map_err(|e| DocError::Automerge(e.to_string()))?
            }
            value => hydrate::Value::new(value, encoding),
        };
        root.insert(
            item.key.to_string(),
            hydrate::MapValue {
                value,
                conflict: item.conflict,
            },
        );
    }
    read_meta(&hydrate::Value::Map(root))
}

/// Read the events of `doc` as they were at `heads` (now, when `None`).
pub fn read_events(doc: &Automerge, heads: Option<&[ChangeHash]>) -> Result<EventLog, DocError> {
    Ok(events_of(&doc.hydrate(heads)))
}

/// The events in a hydrated task root (none if it has no event list yet).
pub(crate) fn events_of(root: &hydrate::Value) -> EventLog {
    let mut log = EventLog::default();
    let hydrate::Value::Map(map) = root else {
        return log;
    };
    let Some(hydrate::Value::List(list)) = map.get(EVENTS) else {
        return log;
    };
    for (index, item) in list.iter().enumerate() {
        match parse_event(&item.value) {
            Ok(event) => log.events.push(event),
            Err(problem) => log.unreadable.push(Unreadable { index, problem }),
        }
    }
    log
}

pub(crate) fn parse_event(value: &hydrate::Value) -> Result<Event, String> {
    if !matches!(value, hydrate::Value::Map(_)) {
        return Err("an event must be a map".into());
    }
    let json = codec::to_json(value).map_err(|e: CodecError| e.to_string())?;
    serde_json::from_value(json).map_err(|e| e.to_string())
}
