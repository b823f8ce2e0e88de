//! Who must be told: the notices that follow from a task's new events.
//!
//! Every event that asks someone to act (an assignment, an escalation or its re-notification, a
//! handoff offer, a follow-up coming due, an exception) gives one [`Notice`], naming the role
//! and, where the event says, the person. The server writes a notice's deliveries (webhook,
//! push) in the same transaction as the event. Only events the fold applied give notices, so a
//! server event fired twice, or an action that lost a conflict, tells no one a second time.

use crate::Millis;
use crate::event::{Event, EventBody};
use crate::fold::{Outcome, TaskState};
use crate::ids::{EventId, Role, UnitId, UserId};
use crate::policy::coverage::Schedule;
use serde::{Deserialize, Serialize};

/// What a notice is about. On the wire (`type` of a webhook): `task.assigned`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NoticeKind {
    #[serde(rename = "task.assigned")]
    Assigned,
    #[serde(rename = "task.escalated")]
    Escalated,
    #[serde(rename = "task.renotified")]
    Renotified,
    #[serde(rename = "task.handoff_offered")]
    HandoffOffered,
    #[serde(rename = "task.follow_up_due")]
    FollowUpDue,
    #[serde(rename = "task.exception")]
    Exception,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Assigned => "task.assigned",
            NoticeKind::Escalated => "task.escalated",
            NoticeKind::Renotified => "task.renotified",
            NoticeKind::HandoffOffered => "task.handoff_offered",
            NoticeKind::FollowUpDue => "task.follow_up_due",
            NoticeKind::Exception => "task.exception",
        }
    }
}

/// Someone must act on a task. Carries no patient information: a phone syncs the task to learn
/// more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub kind: NoticeKind,
    /// The event that asks.
    pub event: EventId,
    pub unit: UnitId,
    /// The role asked to act.
    pub role: Role,
    /// The person, when the event names one.
    pub user: Option<UserId>,
    /// The escalation level, for escalations and re-notifications.
    pub level: Option<u32>,
}

/// The notices `new` events give, with `state` the task's state after them.
pub fn notices(state: &TaskState, new: &[Event]) -> Vec<Notice> {
    new.iter()
        .filter(|e| {
            state.history.iter().any(|h| {
                h.event == e.id
                    && h.hlc == e.hlc
                    && h.actor == e.actor
                    && h.outcome == Outcome::Applied
            })
        })
        .filter_map(|e| {
            let notice = |kind, role: &Role, user: Option<&UserId>, level| Notice {
                kind,
                event: e.id.clone(),
                unit: state.unit.clone(),
                role: role.clone(),
                user: user.cloned(),
                level,
            };
            Some(match &e.body {
                EventBody::Assigned { user, role } | EventBody::Reassigned { user, role, .. } => {
                    notice(NoticeKind::Assigned, role, Some(user), None)
                }
                EventBody::Escalated { level, to, .. } => notice(
                    NoticeKind::Escalated,
                    &to.role,
                    to.user.as_ref(),
                    Some(*level),
                ),
                EventBody::Renotified { level, to } => notice(
                    NoticeKind::Renotified,
                    &to.role,
                    to.user.as_ref(),
                    Some(*level),
                ),
                EventBody::HandoffOffered { to, .. } => {
                    notice(NoticeKind::HandoffOffered, &to.role, Some(&to.user), None)
                }
                EventBody::FollowUpDue { .. } => notice(
                    NoticeKind::FollowUpDue,
                    &state.owner_role,
                    state.owner.as_ref().map(|o| &o.user),
                    None,
                ),
                EventBody::ExceptionRaised { alert_role, .. } => {
                    notice(NoticeKind::Exception, alert_role, None, None)
                }
                _ => return None,
            })
        })
        .collect()
}

/// Give each notice that names only a role whoever covers that role on its unit at `at` (the
/// primary), so a person is told and not only the webhook. A notice nobody covers stays a
/// role's.
pub fn name_covering(notices: &mut [Notice], schedule: &Schedule, at: Millis) {
    for notice in notices.iter_mut().filter(|n| n.user.is_none()) {
        notice.user = schedule.covering(&notice.unit, &notice.role, at).primary;
    }
}
