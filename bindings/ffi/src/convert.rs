//! The records and enums the bindings carry, each made from its core type and nothing more.
//! Enumerations the core keeps as Rust enums with data (statuses, kinds) travel as their stable
//! snake_case names, the same strings the server's JSON uses.

use crate::BatonError;
use baton_core::client;
use baton_core::event::FieldValue as CoreValue;
use baton_core::fold::HandoffStatus;
use baton_core::sync::DocumentId;
use baton_core::template::FieldKind;
use baton_core::{view, worklist};

/// The snake_case name serde gives a unit-like enum value.
fn name(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// The text fields of a core value as serde writes it (tags, ids, names), read by key.
pub(crate) struct Fields(serde_json::Value);

impl Fields {
    pub(crate) fn of(value: &impl serde::Serialize) -> Self {
        Fields(serde_json::to_value(value).unwrap_or_default())
    }

    pub(crate) fn text(&self, key: &str) -> Option<String> {
        self.0.get(key).and_then(|v| v.as_str()).map(str::to_owned)
    }
}

/// The signed-in person.
#[derive(Clone, Debug, uniffi::Record)]
pub struct Me {
    pub user: String,
    pub display_name: String,
    pub device: String,
    pub units: Vec<CareUnit>,
    pub server_time: Option<i64>,
}

/// A unit the person works on, with their roles there.
#[derive(Clone, Debug, uniffi::Record)]
pub struct CareUnit {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
}

impl From<client::Me> for Me {
    fn from(me: client::Me) -> Self {
        Me {
            user: me.user.to_string(),
            display_name: me.display_name,
            device: me.device,
            units: me
                .units
                .into_iter()
                .map(|u| CareUnit {
                    id: u.id.to_string(),
                    name: u.name,
                    roles: u.roles.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            server_time: me.server_time,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Connection {
    Offline,
    Connecting,
    Online,
    /// The server refused the token: sign in again.
    Refused,
    /// The device's data was wiped.
    Wiped,
}

/// Whether the device is connected, and how much of its work the server has.
#[derive(Clone, Debug, uniffi::Record)]
pub struct SyncStatus {
    pub connection: Connection,
    /// Why the server refused the token, when it did.
    pub refused_reason: Option<String>,
    /// Local changes the server has not acknowledged yet.
    pub unacknowledged: u64,
    pub last_error: Option<String>,
    /// Online with every local change acknowledged.
    pub synced: bool,
}

impl From<client::SyncStatus> for SyncStatus {
    fn from(status: client::SyncStatus) -> Self {
        let synced = status.is_synced();
        let (connection, refused_reason) = match status.connection {
            client::Connection::Offline => (Connection::Offline, None),
            client::Connection::Connecting => (Connection::Connecting, None),
            client::Connection::Online => (Connection::Online, None),
            client::Connection::Refused(reason) => (Connection::Refused, Some(reason)),
            client::Connection::Wiped => (Connection::Wiped, None),
        };
        SyncStatus {
            connection,
            refused_reason,
            unacknowledged: status.unacknowledged as u64,
            last_error: status.last_error,
            synced,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Scope {
    All,
    Mine,
    MyRoles,
    Unowned,
}

/// Which tasks a worklist holds.
#[derive(Clone, Debug, uniffi::Record)]
pub struct WorklistFilter {
    pub scope: Scope,
    pub unit: Option<String>,
    pub role: Option<String>,
}

impl From<WorklistFilter> for worklist::Filter {
    fn from(f: WorklistFilter) -> Self {
        worklist::Filter {
            scope: match f.scope {
                Scope::All => worklist::Scope::All,
                Scope::Mine => worklist::Scope::Mine,
                Scope::MyRoles => worklist::Scope::MyRoles,
                Scope::Unowned => worklist::Scope::Unowned,
            },
            unit: f.unit.map(Into::into),
            role: f.role.map(Into::into),
        }
    }
}

/// One line of a worklist.
#[derive(Clone, Debug, uniffi::Record)]
pub struct WorkItem {
    pub id: String,
    pub unit: String,
    pub template: String,
    pub template_version: u32,
    pub name: String,
    pub label: String,
    pub status: String,
    pub acuity: String,
    pub priority: u8,
    pub owner: Option<String>,
    pub owner_role: String,
    pub acknowledged: bool,
    pub escalation_level: u32,
    pub escalated_to: Option<String>,
    pub next_due_at: Option<i64>,
    pub overdue: bool,
    pub waiting: bool,
    pub open_exceptions: u32,
    pub mine: bool,
    pub offered_to_me: bool,
}

impl From<worklist::WorkItem> for WorkItem {
    fn from(i: worklist::WorkItem) -> Self {
        WorkItem {
            id: i.id,
            unit: i.unit.to_string(),
            template: i.template.id.to_string(),
            template_version: i.template.version,
            name: i.name,
            label: i.label,
            status: name(&i.status),
            acuity: i.acuity,
            priority: i.priority,
            owner: i.owner.map(|o| o.to_string()),
            owner_role: i.owner_role.to_string(),
            acknowledged: i.acknowledged,
            escalation_level: i.escalation_level,
            escalated_to: i.escalated_to.map(|r| r.to_string()),
            next_due_at: i.next_due_at,
            overdue: i.overdue,
            waiting: i.waiting,
            open_exceptions: u32::try_from(i.open_exceptions).unwrap_or(u32::MAX),
            mine: i.mine,
            offered_to_me: i.offered_to_me,
        }
    }
}

/// What completing a step records.
#[derive(Clone, Debug, uniffi::Record)]
pub struct FieldDef {
    pub name: String,
    /// `text`, `number`, `choice`, `boolean` or `timestamp`.
    pub kind: String,
    pub required: bool,
    /// The choices, for `choice`.
    pub options: Vec<String>,
    pub max_len: Option<u32>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl From<&baton_core::template::FieldDef> for FieldDef {
    fn from(f: &baton_core::template::FieldDef) -> Self {
        let mut def = FieldDef {
            name: f.name.clone(),
            kind: String::new(),
            required: f.required,
            options: Vec::new(),
            max_len: None,
            min: None,
            max: None,
        };
        def.kind = match &f.kind {
            FieldKind::Text { max_len } => {
                def.max_len = max_len.and_then(|n| u32::try_from(n).ok());
                "text"
            }
            FieldKind::Number { min, max } => {
                (def.min, def.max) = (*min, *max);
                "number"
            }
            FieldKind::Choice { options } => {
                def.options = options.clone();
                "choice"
            }
            FieldKind::Boolean => "boolean",
            FieldKind::Timestamp => "timestamp",
        }
        .to_owned();
        def
    }
}

#[derive(Clone, Debug, uniffi::Record)]
pub struct Step {
    pub id: String,
    pub name: String,
    pub role: String,
    /// `blocked`, `available`, `in_progress` or `completed`.
    pub status: String,
    pub optional: bool,
    pub due_at: Option<i64>,
    pub fields: Vec<FieldDef>,
    pub waits_on: Vec<String>,
    pub completed_by: Option<String>,
    pub completed_at: Option<i64>,
}

/// One event in the task's history.
#[derive(Clone, Debug, uniffi::Record)]
pub struct HistoryEntry {
    pub event: String,
    pub kind: String,
    pub user: String,
    pub role: String,
    /// When it happened (its stamp's wall time, in server time).
    pub at: i64,
    /// The device's own clock when it was written.
    pub device_time: i64,
    /// `applied`, `duplicate` or `conflict`.
    pub outcome: String,
}

/// An event that lost to a concurrent one, and why.
#[derive(Clone, Debug, uniffi::Record)]
pub struct Conflict {
    pub event: String,
    pub kind: String,
    pub user: String,
    pub reason: String,
    pub lost_to: Option<String>,
}

#[derive(Clone, Debug, uniffi::Record)]
pub struct Wait {
    pub id: String,
    pub on: String,
    pub step: String,
    pub since: i64,
    pub follow_up_at: i64,
    /// Where responsibility went, for a party outside the hospital.
    pub transferred_to: Option<String>,
}

#[derive(Clone, Debug, uniffi::Record)]
pub struct Handoff {
    pub offer: String,
    pub from_user: String,
    pub to_user: String,
    pub note: Option<String>,
    pub offered_at: Option<i64>,
    /// `pending`, `accepted` or `declined`.
    pub status: String,
}

#[derive(Clone, Debug, uniffi::Record)]
pub struct TaskException {
    pub id: String,
    pub alert_role: String,
    pub reason: String,
    pub resolution: Option<String>,
    pub resolved: bool,
}

/// Something the person may do now, in `role`. `step`, `on`, `wait`, `offer` and `exception`
/// say what it applies to, where it applies to something.
#[derive(Clone, Debug, uniffi::Record)]
pub struct MayDo {
    /// `claim`, `acknowledge`, `start_step`, `complete_step`, `wait`, `resume`, `note`,
    /// `hand_off`, `accept_handoff`, `decline_handoff`, `escalate`, `raise_exception`,
    /// `resolve_exception`, `change_acuity`, `cancel` or `complete`.
    pub action: String,
    pub role: String,
    pub step: Option<String>,
    pub on: Option<String>,
    pub wait: Option<String>,
    pub offer: Option<String>,
    pub exception: Option<String>,
}

impl From<view::MayDo> for MayDo {
    fn from(m: view::MayDo) -> Self {
        let fields = Fields::of(&m);
        let text = |key: &str| fields.text(key);
        MayDo {
            action: text("action").unwrap_or_default(),
            role: m.role.to_string(),
            step: text("step"),
            on: text("on"),
            wait: text("wait"),
            offer: text("offer"),
            exception: text("exception"),
        }
    }
}

/// A task as the signed-in person sees it.
#[derive(Clone, Debug, uniffi::Record)]
pub struct TaskView {
    pub id: String,
    pub name: String,
    pub template: String,
    pub template_version: u32,
    pub unit: String,
    pub label: String,
    pub subject_ref: String,
    /// `open`, `waiting`, `completed`, `cancelled`, … as the server's JSON says.
    pub status: String,
    pub acuity: String,
    pub owner: Option<String>,
    pub owner_role: String,
    pub acknowledged_by: Option<String>,
    pub escalation_level: u32,
    pub next_due_at: Option<i64>,
    pub steps: Vec<Step>,
    pub waits: Vec<Wait>,
    pub handoffs: Vec<Handoff>,
    pub exceptions: Vec<TaskException>,
    pub notes: Vec<String>,
    pub history: Vec<HistoryEntry>,
    pub conflicts: Vec<Conflict>,
    pub may: Vec<MayDo>,
    /// The whole view as JSON, for what the records above leave out.
    pub json: String,
}

impl TaskView {
    pub(crate) fn from_core(v: view::TaskView) -> Result<Self, BatonError> {
        let json = serde_json::to_string(&v).map_err(|e| BatonError::Internal {
            code: "json".into(),
            reason: e.to_string(),
        })?;
        let s = v.state;
        Ok(TaskView {
            id: v.id,
            name: v.name,
            template: v.meta.template.id.to_string(),
            template_version: v.meta.template.version,
            unit: v.meta.unit.to_string(),
            label: v.meta.subject.label.clone(),
            subject_ref: v.meta.subject.reference.clone(),
            status: name(&s.status),
            acuity: s.acuity.clone(),
            owner: s.owner.as_ref().map(|o| o.user.to_string()),
            owner_role: s.owner_role.to_string(),
            acknowledged_by: s.acknowledged.as_ref().map(|a| a.user.to_string()),
            escalation_level: s.escalation_level,
            next_due_at: v.next_due.as_ref().map(|d| d.at),
            steps: v
                .steps
                .iter()
                .map(|st| Step {
                    id: st.id.to_string(),
                    name: st.name.clone(),
                    role: st.role.to_string(),
                    status: name(&st.status),
                    optional: st.optional,
                    due_at: st.due_at,
                    fields: st.fields.iter().map(Into::into).collect(),
                    waits_on: st.waits_on.clone(),
                    completed_by: st.completed.as_ref().map(|c| c.by.user.to_string()),
                    completed_at: st.completed.as_ref().map(|c| c.at),
                })
                .collect(),
            waits: s
                .waits
                .iter()
                .map(|w| Wait {
                    id: w.event.to_string(),
                    on: w.on.clone(),
                    step: w.step.to_string(),
                    since: w.since,
                    follow_up_at: w.follow_up_at,
                    transferred_to: w.external.as_ref().map(|e| e.transfer.to.clone()),
                })
                .collect(),
            handoffs: s
                .handoffs
                .iter()
                .map(|h| Handoff {
                    offer: h.offer.to_string(),
                    from_user: h.from.user.to_string(),
                    to_user: h.to.user.to_string(),
                    note: h.note.clone(),
                    offered_at: Some(h.offered_at),
                    status: match h.status {
                        HandoffStatus::Pending => "pending",
                        HandoffStatus::Accepted { .. } => "accepted",
                        HandoffStatus::Declined { .. } => "declined",
                    }
                    .to_owned(),
                })
                .collect(),
            exceptions: s
                .exceptions
                .iter()
                .map(|e| TaskException {
                    id: e.event.to_string(),
                    alert_role: e.alert_role.to_string(),
                    reason: e.reason.clone(),
                    resolution: e.resolution.clone(),
                    resolved: e.resolved.is_some(),
                })
                .collect(),
            notes: s.notes.iter().map(|n| n.text.clone()).collect(),
            history: s
                .history
                .iter()
                .map(|h| HistoryEntry {
                    event: h.event.to_string(),
                    kind: name(&h.kind),
                    user: h.actor.user.to_string(),
                    role: h.actor.role.to_string(),
                    at: h.hlc.wall,
                    device_time: h.device_time,
                    outcome: name(&h.outcome),
                })
                .collect(),
            conflicts: s
                .conflicts
                .iter()
                .map(|c| Conflict {
                    event: c.event.to_string(),
                    kind: name(&c.kind),
                    user: c.actor.user.to_string(),
                    reason: c.refusal.to_string(),
                    lost_to: c.lost_to.as_ref().map(ToString::to_string),
                })
                .collect(),
            may: v.may.into_iter().map(Into::into).collect(),
            json,
        })
    }
}

/// What opening a task needs.
#[derive(Clone, Debug, uniffi::Record)]
pub struct NewTask {
    /// The template's id (`consult`, `discharge`, …); its latest version is used.
    pub template: String,
    pub unit: String,
    /// The subject's reference in the EHR (an encounter id).
    pub subject_ref: String,
    /// What people see: "Bed 12 · J.D.".
    pub subject_label: String,
    pub acuity: Option<String>,
    pub note: Option<String>,
}

/// What an action wrote: stored on the device, and on its way to the server.
#[derive(Clone, Debug, uniffi::Record)]
pub struct ActionResult {
    pub task_id: String,
    pub event_id: String,
    pub kind: String,
    /// Its stamp's wall time (server time).
    pub at: i64,
}

impl ActionResult {
    pub(crate) fn of(task: DocumentId, event: &baton_core::Event) -> Self {
        ActionResult {
            task_id: task.to_string(),
            event_id: event.id.to_string(),
            kind: name(&event.kind()),
            at: event.hlc.wall,
        }
    }
}

/// A value recorded when completing a step.
#[derive(Clone, Debug, uniffi::Enum)]
pub enum FieldValue {
    /// `text` and `choice` fields.
    Text {
        value: String,
    },
    Number {
        value: f64,
    },
    /// `timestamp` fields (ms since 1970), and whole numbers.
    Integer {
        value: i64,
    },
    Boolean {
        value: bool,
    },
}

#[derive(Clone, Debug, uniffi::Record)]
pub struct FieldInput {
    pub name: String,
    pub value: FieldValue,
}

impl FieldInput {
    pub(crate) fn into_pair(self) -> (String, CoreValue) {
        let value = match self.value {
            FieldValue::Text { value } => CoreValue::Text(value),
            FieldValue::Number { value } => CoreValue::Number(value),
            FieldValue::Integer { value } => CoreValue::Int(value),
            FieldValue::Boolean { value } => CoreValue::Bool(value),
        };
        (self.name, value)
    }
}

/// Where responsibility goes when a task waits on a party outside the hospital.
#[derive(Clone, Debug, uniffi::Record)]
pub struct Transfer {
    pub to: String,
    pub contact: Option<String>,
    pub documentation: Vec<String>,
}

impl From<Transfer> for baton_core::event::Transfer {
    fn from(t: Transfer) -> Self {
        baton_core::event::Transfer {
            to: t.to,
            contact: t.contact,
            documentation: t.documentation,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Origin {
    /// This device.
    Local,
    /// The server: another device, or the server's own escalations.
    Remote,
    /// The server refused a change of this device's, and it was taken out.
    Refused,
}

/// A task changed.
#[derive(Clone, Debug, uniffi::Record)]
pub struct TaskChange {
    pub task_id: String,
    pub origin: Origin,
    /// The task is gone from the device (the server refused the task itself).
    pub gone: bool,
}

impl From<client::DocChanged> for TaskChange {
    fn from(c: client::DocChanged) -> Self {
        TaskChange {
            task_id: c.doc.to_string(),
            origin: match c.origin {
                client::Origin::Local => Origin::Local,
                client::Origin::Remote => Origin::Remote,
                client::Origin::Refused => Origin::Refused,
            },
            gone: c.heads.is_empty(),
        }
    }
}

/// The server refused changes this device sent; they were taken out of its copy.
#[derive(Clone, Debug, uniffi::Record)]
pub struct Refused {
    pub task_id: String,
    /// The events no longer on the device.
    pub events: Vec<String>,
    pub message: String,
}

impl From<client::Refused> for Refused {
    fn from(r: client::Refused) -> Self {
        Refused {
            task_id: r.doc.to_string(),
            events: r.events.iter().map(ToString::to_string).collect(),
            message: r.message,
        }
    }
}
