//! A task's next deadline and what happens when it passes.
//!
//! The rule, in words:
//! - A new task nobody owns is **routed** at once: assigned to whoever covers its owner role on
//!   its unit, or, when nobody does, an exception alerts the unit's supervisor role.
//! - When a wait's follow-up time comes, the server **prompts the owner** first; the wait
//!   becomes a deadline only when the owner has done nothing within the prompt window.
//! - A task **stalls** when its earliest open deadline passes (acknowledgment window, a step's
//!   due time, a prompted follow-up, an unaccepted handoff). Windows are scaled by the acuity.
//! - The template's chain then escalates level by level: level `k` is reached `after[k]` past
//!   the stall (also scaled by acuity). A chain that repeats starts again at level one
//!   `repeat.after` past its last level, `repeat.times` times. An escalation to the secondary
//!   owner of a task nobody has acknowledged makes them its owner.
//! - The current target is told again every `renotify.every`, up to `renotify.times` times per
//!   level, until someone acts.
//! - Progress (acknowledge, claim, complete a step, wait, resume, accept a handoff, reassign)
//!   resets the chain; the next stall starts again at level one.
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
use crate::template::{EscalationTarget, OffTrackRule, OffTrackWhen, Template};
use crate::time::{Millis, Span};
use serde::{Deserialize, Serialize};

/// The id of the server's routing event (assignment, or the exception that nobody covers).
pub const ROUTE_EVENT: &str = "route:open";

/// How the ids the server derives for its own events begin. Nobody else may use them.
pub const SERVER_ID_PREFIXES: [&str; 7] = [
    "esc:",
    "offtrack:",
    "route:",
    "followup:",
    "renotify:",
    "shift:",
    "reroute:",
];

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
    /// Give the new task to whoever covers its owner role.
    Route,
    /// Tell the owner a wait's follow-up time has come.
    PromptFollowUp { wait: EventId },
    Escalate {
        level: u32,
        #[serde(default)]
        round: u32,
        reason: EscalationReason,
        target: EscalationTarget,
        cause: String,
    },
    /// Tell the current escalation target again.
    Renotify { level: u32, role: Role },
    RaiseException {
        rule: String,
        alert_role: Role,
        reason: String,
    },
}

/// The task's next action, which may already be due (`at` in the past). `None` when nothing is
/// pending: the task is closed, or every chain has run out.
pub fn next_due(template: &Template, state: &TaskState) -> Option<Due> {
    next_due_with(template, state, Routing::On)
}

/// Whether the server moves work between people by itself: routes new tasks, re-routes a
/// disabled owner's, offers tasks at shift change. Always on in service; a test of the sync
/// path that scripts every event itself turns it off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Routing {
    #[default]
    On,
    Off,
}

/// [`next_due`], with routing on or off.
pub fn next_due_with(template: &Template, state: &TaskState, routing: Routing) -> Option<Due> {
    if state.status.is_closed() {
        return None;
    }
    let created = state.created_at?;
    let percent = template.window_percent(&state.acuity);
    let epoch = state.escalation_epoch;
    let mut candidates = Vec::new();
    let level_target = |level: u32| {
        template
            .escalation
            .get(level.checked_sub(1)? as usize)
            .map(|l| l.target.clone())
    };

    if routing == Routing::On && state.owner.is_none() && !state.routed {
        candidates.push(Due {
            at: created,
            event_id: EventId::new(ROUTE_EVENT),
            action: Action::Route,
        });
    }

    for wait in state.waits.iter().filter(|w| w.prompted_at.is_none()) {
        candidates.push(Due {
            at: wait.follow_up_at,
            event_id: EventId(format!("followup:{}", wait.event)),
            action: Action::PromptFollowUp {
                wait: wait.event.clone(),
            },
        });
    }

    if let Some(acuity) = &state.acuity_escalation
        && let Some(target) = level_target(acuity.level)
    {
        let cause = format!("acuity:{}", acuity.event);
        candidates.push(Due {
            at: acuity.at,
            event_id: EventId(format!("esc:{epoch}:{}:{cause}", acuity.level)),
            action: Action::Escalate {
                level: acuity.level,
                round: state.escalation_round,
                reason: EscalationReason::Acuity,
                target,
                cause,
            },
        });
    }

    if let Some(stall) = state.next_deadline()
        && let Some((round, level)) = next_step_of_chain(template, state)
        && let Some(target) = level_target(level)
    {
        let after = template.escalation[level as usize - 1].after;
        let cause = format!("{}@{}", stall.cause, stall.at);
        let pass = if round == 0 {
            level.to_string()
        } else {
            format!("{level}r{round}")
        };
        candidates.push(Due {
            at: round_offset(template, round)
                .plus(after)
                .scaled(percent)
                .after(stall.at),
            event_id: EventId(format!("esc:{epoch}:{pass}:{cause}")),
            action: Action::Escalate {
                level,
                round,
                reason: EscalationReason::Time,
                target,
                cause,
            },
        });
    }

    if let (Some(renotify), Some(told), Some(last)) = (
        template.renotify,
        state.notified_at,
        state.escalations.last(),
    ) && state.escalation_level > 0
        && state.renotified < renotify.times
    {
        let n = state.renotified + 1;
        candidates.push(Due {
            at: renotify.every.after(told),
            event_id: EventId(format!(
                "renotify:{epoch}:{}r{}:{n}",
                state.escalation_level, state.escalation_round
            )),
            action: Action::Renotify {
                level: state.escalation_level,
                role: last.to.role.clone(),
            },
        });
    }

    for rule in &template.off_track {
        for (at, occurrence, reason) in off_track_triggers(rule, state) {
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
    // Routing comes first when several actions fall due together: an owner is named before
    // anything escalates past them.
    let rank = |d: &Due| !matches!(d.action, Action::Route);
    candidates
        .into_iter()
        .min_by(|a, b| (a.at, rank(a), &a.event_id).cmp(&(b.at, rank(b), &b.event_id)))
}

/// The next `(round, level)` of the chain after the one reached, if the chain has one.
fn next_step_of_chain(template: &Template, state: &TaskState) -> Option<(u32, u32)> {
    let levels = u32::try_from(template.escalation.len()).ok()?;
    if state.escalation_level < levels {
        return Some((state.escalation_round, state.escalation_level + 1));
    }
    let repeat = template.escalation_repeat.as_ref()?;
    (levels > 0 && state.escalation_round < repeat.times).then(|| (state.escalation_round + 1, 1))
}

/// How far past the stall round `round` of a repeating chain begins, unscaled: each pass is
/// the last level's delay plus the pause before the next pass.
fn round_offset(template: &Template, round: u32) -> Span {
    let last = template.escalation.last().map_or(Span::ZERO, |l| l.after);
    let pause = template
        .escalation_repeat
        .as_ref()
        .map_or(Span::ZERO, |r| r.after);
    last.plus(pause).times(round)
}

/// When each occurrence of an off-track rule comes due: `(at, occurrence, reason)`.
fn off_track_triggers(rule: &OffTrackRule, state: &TaskState) -> Vec<(Millis, String, String)> {
    let epoch = state.escalation_epoch;
    match &rule.when {
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
            })
            .into_iter()
            .collect(),
        OffTrackWhen::OpenLongerThan(span) => state
            .created_at
            .map(|created| {
                (
                    span.after(created),
                    "open".to_owned(),
                    format!("open longer than {span}"),
                )
            })
            .into_iter()
            .collect(),
        OffTrackWhen::WaitingLongerThan(span) => state
            .waits
            .iter()
            .map(|w| {
                (
                    span.after(w.since),
                    w.event.to_string(),
                    format!("waiting on {} longer than {span}", w.on),
                )
            })
            .collect(),
        OffTrackWhen::PartnerUnresponsive(span) => state
            .waits
            .iter()
            .filter_map(|w| {
                let external = w.external.as_ref()?;
                Some((
                    span.after(w.follow_up_at),
                    w.event.to_string(),
                    format!(
                        "{} ({}) has not confirmed the follow-up {span} after it was due",
                        w.on, external.transfer.to
                    ),
                ))
            })
            .collect(),
        // Raised when the task is routed, not on a timer.
        OffTrackWhen::NobodyCovers {} => Vec::new(),
    }
}

/// The event to append now, if the next action is due: its id and body, with every target
/// resolved against who covers the role at `now`.
pub fn fire(
    template: &Template,
    state: &TaskState,
    schedule: &Schedule,
    now: Millis,
) -> Option<(EventId, EventBody)> {
    fire_with(template, state, schedule, now, Routing::On)
}

/// [`fire`], with routing on or off.
pub fn fire_with(
    template: &Template,
    state: &TaskState,
    schedule: &Schedule,
    now: Millis,
    routing: Routing,
) -> Option<(EventId, EventBody)> {
    let due = next_due_with(template, state, routing).filter(|d| d.at <= now)?;
    let covering = |role: &Role| schedule.covering(&state.unit, role, now);
    let body = match due.action {
        Action::Route => match covering(&template.owner_role).primary {
            Some(user) => EventBody::Assigned {
                user,
                role: template.owner_role.clone(),
            },
            None => nobody_covers(
                template,
                format!(
                    "nobody covers {} on {}; the task has no owner",
                    template.owner_role, state.unit
                ),
            ),
        },
        Action::PromptFollowUp { wait } => EventBody::FollowUpDue { wait },
        Action::Escalate {
            level,
            round,
            reason,
            target,
            cause,
        } => {
            let to = match target {
                EscalationTarget::Role(role) => EscalationTo {
                    user: covering(&role).primary,
                    role,
                },
                EscalationTarget::SecondaryOwner {} => EscalationTo {
                    user: covering(&state.owner_role).secondary,
                    role: state.owner_role.clone(),
                },
            };
            EventBody::Escalated {
                level,
                reason,
                to,
                cause: Some(cause),
                round,
            }
        }
        Action::Renotify { level, role } => {
            // The person the last escalation named, or whoever covers that role now.
            let named = state.escalations.last().and_then(|e| e.to.user.clone());
            let user = if role == state.owner_role {
                named
            } else {
                covering(&role).primary.or(named)
            };
            EventBody::Renotified {
                level,
                to: EscalationTo { role, user },
            }
        }
        Action::RaiseException {
            rule,
            alert_role,
            reason,
        } => EventBody::ExceptionRaised {
            resolution: template
                .off_track
                .iter()
                .find(|r| r.id == rule)
                .and_then(|r| r.resolution.clone()),
            rule: Some(rule),
            alert_role,
            reason,
        },
    };
    Some((due.event_id, body))
}

/// The exception a task nobody covers raises: the template's `nobody_covers` rule, or else an
/// alert to its first supervisor role (the owner role when it names none).
pub(crate) fn nobody_covers(template: &Template, reason: String) -> EventBody {
    let rule = template
        .off_track
        .iter()
        .find(|r| matches!(r.when, OffTrackWhen::NobodyCovers {}));
    EventBody::ExceptionRaised {
        rule: rule.map(|r| r.id.clone()),
        alert_role: rule.map_or_else(
            || {
                template
                    .supervisor_roles
                    .first()
                    .unwrap_or(&template.owner_role)
                    .clone()
            },
            |r| r.alert_role.clone(),
        ),
        reason,
        resolution: rule.and_then(|r| r.resolution.clone()),
    }
}
