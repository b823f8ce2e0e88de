//! A task's next deadline and what happens when it passes.
//!
//! The rule, in words:
//! - A task **stalls** when its earliest open deadline passes (acknowledgment window, a step's
//!   due time, a wait's follow-up, an unaccepted handoff). Windows are scaled by the acuity.
//! - The template's chain then escalates level by level: level `k` is reached `after[k]` past
//!   the stall (also scaled by acuity).
//! - Progress (acknowledge, claim, complete a step, resume, accept a handoff, reassign) resets
//!   the chain; the next stall starts again at level one.
//! - Entering an acuity level with `escalate_to` escalates to that level at once.
//! - An off-track rule raises an exception, once per occurrence, alerting its role.
//!
//! The server keeps one timer per open task at [`next_due`]'s time, written with the changes it
//! follows from (the document actor derives it), and fires it through the actor.
//! When it fires, [`fire`] gives the event to append, with a deterministic id, so two firings of
//! the same timer write one event.

use super::coverage::Schedule;
use crate::event::{EscalationReason, EscalationTo, EventBody};
use crate::fold::TaskState;
use crate::ids::{EventId, Role};
use crate::template::{EscalationTarget, OffTrackWhen, Template};
use crate::time::Millis;
use serde::{Deserialize, Serialize};

/// Something the server must do at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Due {
    pub at: Millis,
    /// The id of the event the action writes: the same on every node.
    pub event_id: EventId,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    Escalate {
        level: u32,
        reason: EscalationReason,
        target: EscalationTarget,
        cause: String,
    },
    RaiseException {
        rule: String,
        alert_role: Role,
        reason: String,
    },
}

/// The task's next action, which may already be due (`at` in the past). `None` when nothing is
/// pending: the task is closed, or every chain has run out.
pub fn next_due(template: &Template, state: &TaskState) -> Option<Due> {
    if state.status.is_closed() || state.created_at.is_none() {
        return None;
    }
    let percent = template.window_percent(&state.acuity);
    let epoch = state.escalation_epoch;
    let mut candidates = Vec::new();
    let level_target = |level: u32| {
        template
            .escalation
            .get(level.checked_sub(1)? as usize)
            .map(|l| l.target.clone())
    };

    if let Some(acuity) = &state.acuity_escalation
        && let Some(target) = level_target(acuity.level)
    {
        let cause = format!("acuity:{}", acuity.event);
        candidates.push(Due {
            at: acuity.at,
            event_id: EventId(format!("esc:{epoch}:{}:{cause}", acuity.level)),
            action: Action::Escalate {
                level: acuity.level,
                reason: EscalationReason::Acuity,
                target,
                cause,
            },
        });
    }

    if let Some(stall) = state.next_deadline() {
        let next = state.escalation_level + 1;
        if let (Some(level), Some(target)) = (
            template.escalation.get(state.escalation_level as usize),
            level_target(next),
        ) {
            let cause = format!("{}@{}", stall.cause, stall.at);
            candidates.push(Due {
                at: level.after.scaled(percent).after(stall.at),
                event_id: EventId(format!("esc:{epoch}:{next}:{cause}")),
                action: Action::Escalate {
                    level: next,
                    reason: EscalationReason::Time,
                    target,
                    cause,
                },
            });
        }
    }

    for rule in &template.off_track {
        let trigger = match &rule.when {
            OffTrackWhen::EscalationLevel(n) => state
                .escalations
                .iter()
                .rev()
                .find(|e| e.level >= *n && state.escalation_level >= *n)
                .map(|e| {
                    (
                        e.at,
                        format!("epoch{epoch}"),
                        format!("escalation reached level {n}"),
                    )
                }),
            OffTrackWhen::OpenLongerThan(span) => state.created_at.map(|created| {
                (
                    span.after(created),
                    "open".to_owned(),
                    format!("open longer than {span}"),
                )
            }),
            OffTrackWhen::WaitingLongerThan(span) => state.waiting.as_ref().map(|w| {
                (
                    span.after(w.since),
                    w.event.to_string(),
                    format!("waiting on {} longer than {span}", w.on),
                )
            }),
        };
        if let Some((at, occurrence, reason)) = trigger {
            let event_id = EventId(format!("offtrack:{}:{occurrence}", rule.id));
            if state.exception(&event_id).is_none() {
                candidates.push(Due {
                    at,
                    event_id,
                    action: Action::RaiseException {
                        rule: rule.id.clone(),
                        alert_role: rule.alert_role.clone(),
                        reason,
                    },
                });
            }
        }
    }
    candidates
        .into_iter()
        .min_by(|a, b| (a.at, &a.event_id).cmp(&(b.at, &b.event_id)))
}

/// The event to append now, if the next action is due: its id and body, with the escalation
/// target resolved against who covers the role at `now`.
pub fn fire(
    template: &Template,
    state: &TaskState,
    schedule: &Schedule,
    now: Millis,
) -> Option<(EventId, EventBody)> {
    let due = next_due(template, state).filter(|d| d.at <= now)?;
    let body = match due.action {
        Action::Escalate {
            level,
            reason,
            target,
            cause,
        } => {
            let to = match target {
                EscalationTarget::Role(role) => EscalationTo {
                    user: schedule.covering(&state.unit, &role, now).primary,
                    role,
                },
                EscalationTarget::SecondaryOwner {} => EscalationTo {
                    user: schedule
                        .covering(&state.unit, &state.owner_role, now)
                        .secondary,
                    role: state.owner_role.clone(),
                },
            };
            EventBody::Escalated {
                level,
                reason,
                to,
                cause: Some(cause),
            }
        }
        Action::RaiseException {
            rule,
            alert_role,
            reason,
        } => EventBody::ExceptionRaised {
            rule: Some(rule),
            alert_role,
            reason,
        },
    };
    Some((due.event_id, body))
}
