//! Events: the only way a task changes. A task document holds an append-only list of them; the
//! task's state is their fold ([`crate::fold`]).

use crate::hlc::Hlc;
use crate::ids::{ADMIN_ROLE, DeviceId, EventId, Role, SYSTEM_ROLE, SYSTEM_USER, StepId, UserId};
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

    /// An administrator, acting through the server's admin API.
    pub fn admin(user: impl Into<UserId>) -> Self {
        Actor::new(user, ADMIN_ROLE)
    }

    pub fn is_admin(&self) -> bool {
        self.role == ADMIN_ROLE && self.user != SYSTEM_USER
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

/// Where responsibility went when a task waits on a party outside the hospital.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// Who holds it now: "Walgreens, 5th Ave", "Aetna prior-auth desk".
    pub to: String,
    /// How to reach them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// Documents sent with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documentation: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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
    /// A step waits on someone outside the task; follow up at `follow_up_at` (default: the
    /// template's follow-up for that party). Waiting again on the same party of the same step
    /// records a follow-up and replaces the wait.
    Waiting {
        on: String,
        /// The step that waits (default: the first current step that may wait on `on`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<StepId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        follow_up_at: Option<Millis>,
        /// Where responsibility went, when the party is outside the hospital (pharmacy, payer,
        /// community partner). Required for waits the template declares external.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer: Option<Transfer>,
    },
    /// A wait (`wait`, or every open wait when omitted) is over.
    Resumed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait: Option<EventId>,
        /// How the external party's follow-up was confirmed; required to end an external wait.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confirmation: Option<String>,
    },
    /// The server tells the owner that a wait's follow-up time has come. The chain escalates
    /// only if the owner does nothing within the wait's prompt window.
    FollowUpDue {
        wait: EventId,
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
        /// Which pass through the chain, counting from 0, for templates whose chain repeats.
        #[serde(default, skip_serializing_if = "is_zero")]
        round: u32,
    },
    /// The server tells the current escalation target again: nobody has acted yet.
    Renotified {
        level: u32,
        to: EscalationTo,
    },
    ExceptionRaised {
        /// The template's off-track rule, when the server raised it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        alert_role: Role,
        reason: String,
        /// How to resolve it, as the off-track rule says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resolution: Option<String>,
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
    FollowUpDue,
    Note,
    HandoffOffered,
    HandoffAccepted,
    HandoffDeclined,
    Escalated,
    Renotified,
    ExceptionRaised,
    ExceptionResolved,
    AcuityChanged,
    Cancelled,
    Completed,
}

impl EventKind {
    pub const ALL: [EventKind; 21] = [
        EventKind::Created,
        EventKind::Claimed,
        EventKind::Assigned,
        EventKind::Reassigned,
        EventKind::Acknowledged,
        EventKind::StepStarted,
        EventKind::StepCompleted,
        EventKind::Waiting,
        EventKind::Resumed,
        EventKind::FollowUpDue,
        EventKind::Note,
        EventKind::HandoffOffered,
        EventKind::HandoffAccepted,
        EventKind::HandoffDeclined,
        EventKind::Escalated,
        EventKind::Renotified,
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
            EventKind::FollowUpDue => "follow_up_due",
            EventKind::Note => "note",
            EventKind::HandoffOffered => "handoff_offered",
            EventKind::HandoffAccepted => "handoff_accepted",
            EventKind::HandoffDeclined => "handoff_declined",
            EventKind::Escalated => "escalated",
            EventKind::Renotified => "renotified",
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
            EventBody::FollowUpDue { .. } => EventKind::FollowUpDue,
            EventBody::Note { .. } => EventKind::Note,
            EventBody::HandoffOffered { .. } => EventKind::HandoffOffered,
            EventBody::HandoffAccepted { .. } => EventKind::HandoffAccepted,
            EventBody::HandoffDeclined { .. } => EventKind::HandoffDeclined,
            EventBody::Escalated { .. } => EventKind::Escalated,
            EventBody::Renotified { .. } => EventKind::Renotified,
            EventBody::ExceptionRaised { .. } => EventKind::ExceptionRaised,
            EventBody::ExceptionResolved { .. } => EventKind::ExceptionResolved,
            EventBody::AcuityChanged { .. } => EventKind::AcuityChanged,
            EventBody::Cancelled { .. } => EventKind::Cancelled,
            EventBody::Completed { .. } => EventKind::Completed,
        }
    }
}
