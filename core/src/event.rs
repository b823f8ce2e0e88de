//! Events: the only way a task changes. A task document holds an append-only list of them; the
//! task's state is their fold ([`crate::fold`]).

use crate::hlc::Hlc;
use crate::ids::{DeviceId, EventId, Role, SYSTEM_ROLE, SYSTEM_USER, StepId, UserId};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Who did something: a person acting in one of their roles.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub user: UserId,
    pub role: Role,
}

impl Actor {
    pub fn new(user: impl Into<UserId>, role: impl Into<Role>) -> Self {
        Actor {
            user: user.into(),
            role: role.into(),
        }
    }

    /// The server, writing escalations and off-track exceptions.
    pub fn system() -> Self {
        Actor::new(SYSTEM_USER, SYSTEM_ROLE)
    }

    pub fn is_system(&self) -> bool {
        self.user == SYSTEM_USER && self.role == SYSTEM_ROLE
    }
}

/// One event in a task's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub actor: Actor,
    pub device: DeviceId,
    /// What the author's device clock read. Shown to people; never used for ordering.
    pub device_time: Millis,
    pub hlc: Hlc,
    #[serde(flatten)]
    pub body: EventBody,
}

impl Event {
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }

    /// The order in which events are folded: `(hlc, user, id)`.
    pub fn order_key(&self) -> (Hlc, &str, &str) {
        (self.hlc, self.actor.user.as_str(), self.id.as_str())
    }

    /// The time the event takes effect for deadlines: its HLC wall time.
    pub fn at(&self) -> Millis {
        self.hlc.wall
    }
}

/// A value recorded in a step's field. Which variants a field accepts depends on its
/// [`crate::template::FieldKind`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Bool(bool),
    Int(i64),
    Number(f64),
    Text(String),
}

/// Why an escalation happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationReason {
    /// A deadline passed.
    Time,
    /// The task's acuity rose to a level that escalates at once.
    Acuity,
    /// Someone escalated it by hand.
    Manual,
}

/// Who an escalation was sent to, resolved against coverage when it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationTo {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
}

/// What happened, with its details. On the wire: `kind` (snake_case) and a `payload` map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    content = "payload",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum EventBody {
    /// The task was opened. Always the first event.
    Created {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The author takes ownership of an unowned task.
    Claimed {},
    /// A supervisor gives an unowned task to someone.
    Assigned {
        user: UserId,
        role: Role,
    },
    /// A supervisor moves an owned task to someone else.
    Reassigned {
        user: UserId,
        role: Role,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The owner has seen the task and accepts responsibility for it.
    Acknowledged {},
    StepStarted {
        step: StepId,
    },
    StepCompleted {
        step: StepId,
        #[serde(default)]
        fields: BTreeMap<String, FieldValue>,
    },
    /// The task waits on someone outside it; follow up at `follow_up_at` (default: the
    /// template's follow-up for that party).
    Waiting {
        on: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        follow_up_at: Option<Millis>,
    },
    Resumed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    Note {
        text: String,
    },
    /// The owner offers the task (or, with `item`, one piece of work listed in a shift handoff)
    /// to another person. Nothing moves until they accept.
    HandoffOffered {
        to: Actor,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    HandoffAccepted {
        offer: EventId,
    },
    HandoffDeclined {
        offer: EventId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Escalated {
        level: u32,
        reason: EscalationReason,
        to: EscalationTo,
        /// The deadline that passed, for time escalations (see [`crate::fold::Cause`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<String>,
    },
    ExceptionRaised {
        /// The template's off-track rule, when the server raised it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        alert_role: Role,
        reason: String,
    },
    ExceptionResolved {
        exception: EventId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    AcuityChanged {
        acuity: String,
    },
    Cancelled {
        reason: String,
    },
    /// The owner closes a task whose required steps are all done (optional ones skipped).
    Completed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

/// The kind of an event, without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created,
    Claimed,
    Assigned,
    Reassigned,
    Acknowledged,
    StepStarted,
    StepCompleted,
    Waiting,
    Resumed,
    Note,
    HandoffOffered,
    HandoffAccepted,
    HandoffDeclined,
    Escalated,
    ExceptionRaised,
    ExceptionResolved,
    AcuityChanged,
    Cancelled,
    Completed,
}

impl EventKind {
    pub const ALL: [EventKind; 19] = [
        EventKind::Created,
        EventKind::Claimed,
        EventKind::Assigned,
        EventKind::Reassigned,
        EventKind::Acknowledged,
        EventKind::StepStarted,
        EventKind::StepCompleted,
        EventKind::Waiting,
        EventKind::Resumed,
        EventKind::Note,
        EventKind::HandoffOffered,
        EventKind::HandoffAccepted,
        EventKind::HandoffDeclined,
        EventKind::Escalated,
        EventKind::ExceptionRaised,
        EventKind::ExceptionResolved,
        EventKind::AcuityChanged,
        EventKind::Cancelled,
        EventKind::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Claimed => "claimed",
            EventKind::Assigned => "assigned",
            EventKind::Reassigned => "reassigned",
            EventKind::Acknowledged => "acknowledged",
            EventKind::StepStarted => "step_started",
            EventKind::StepCompleted => "step_completed",
            EventKind::Waiting => "waiting",
            EventKind::Resumed => "resumed",
            EventKind::Note => "note",
            EventKind::HandoffOffered => "handoff_offered",
            EventKind::HandoffAccepted => "handoff_accepted",
            EventKind::HandoffDeclined => "handoff_declined",
            EventKind::Escalated => "escalated",
            EventKind::ExceptionRaised => "exception_raised",
            EventKind::ExceptionResolved => "exception_resolved",
            EventKind::AcuityChanged => "acuity_changed",
            EventKind::Cancelled => "cancelled",
            EventKind::Completed => "completed",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EventBody {
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::Created { .. } => EventKind::Created,
            EventBody::Claimed {} => EventKind::Claimed,
            EventBody::Assigned { .. } => EventKind::Assigned,
            EventBody::Reassigned { .. } => EventKind::Reassigned,
            EventBody::Acknowledged {} => EventKind::Acknowledged,
            EventBody::StepStarted { .. } => EventKind::StepStarted,
            EventBody::StepCompleted { .. } => EventKind::StepCompleted,
            EventBody::Waiting { .. } => EventKind::Waiting,
            EventBody::Resumed { .. } => EventKind::Resumed,
            EventBody::Note { .. } => EventKind::Note,
            EventBody::HandoffOffered { .. } => EventKind::HandoffOffered,
            EventBody::HandoffAccepted { .. } => EventKind::HandoffAccepted,
            EventBody::HandoffDeclined { .. } => EventKind::HandoffDeclined,
            EventBody::Escalated { .. } => EventKind::Escalated,
            EventBody::ExceptionRaised { .. } => EventKind::ExceptionRaised,
            EventBody::ExceptionResolved { .. } => EventKind::ExceptionResolved,
            EventBody::AcuityChanged { .. } => EventKind::AcuityChanged,
            EventBody::Cancelled { .. } => EventKind::Cancelled,
            EventBody::Completed { .. } => EventKind::Completed,
        }
    }
}
