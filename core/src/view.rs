//! A task as a person sees it: its state, its steps with what completing each must record, its
//! history and conflicts, what is due next, and **what this person may do now**.
//!
//! "May do" is asked of the rules themselves ([`crate::rules::check`]): each action is tried,
//! in each of the person's roles on the task's unit, as a probe event that is never written. An
//! action refused only for want of what the person has yet to fill in (a step's required
//! fields, a transfer, a confirmation) is one they may take. So the list can never disagree with
//! what the rules will accept.

use crate::doc::TaskMeta;
use crate::event::{Actor, EscalationReason, EscalationTo, Event, EventBody};
use crate::fold::{Deadline, HandoffStatus, StepCompletion, StepStatus, TaskState};
use crate::hlc::Hlc;
use crate::ids::{EventId, Role, StepId, UserId};
use crate::rules::{self, Refusal};
use crate::template::{EscalationTarget, FieldDef, Template};
use crate::time::Millis;
use serde::{Deserialize, Serialize};

/// Something a person can do to a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    Claim,
    Acknowledge,
    StartStep {
        step: StepId,
    },
    /// Complete a step, recording its fields.
    CompleteStep {
        step: StepId,
    },
    /// Wait on a party a current step may wait on.
    Wait {
        step: StepId,
        on: String,
    },
    Resume {
        wait: EventId,
    },
    Note,
    /// Offer the task to someone else in the owner role.
    HandOff,
    AcceptHandoff {
        offer: EventId,
    },
    DeclineHandoff {
        offer: EventId,
    },
    /// Escalate to the chain's next level now.
    Escalate,
    RaiseException,
    ResolveException {
        exception: EventId,
    },
    ChangeAcuity,
    Cancel,
    Complete,
}

/// An action the person may take now, and the role they take it in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MayDo {
    #[serde(flatten)]
    pub action: Action,
    pub role: Role,
}

/// One step of the task, with its definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    pub id: StepId,
    pub name: String,
    pub role: Role,
    pub status: StepStatus,
    pub optional: bool,
    pub due_at: Option<Millis>,
    /// What completing the step records.
    pub fields: Vec<FieldDef>,
    /// The parties the step may wait on.
    pub waits_on: Vec<String>,
    pub completed: Option<StepCompletion>,
}

/// A task as one person sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub id: String,
    pub meta: TaskMeta,
    /// The template's display name.
    pub name: String,
    /// The folded state: owner, waits, handoffs, exceptions, escalations, history, conflicts.
    pub state: TaskState,
    pub steps: Vec<StepView>,
    pub next_due: Option<Deadline>,
    /// What the viewer may do now.
    pub may: Vec<MayDo>,
}

/// The view of task `id` for `user`, whose roles on the task's unit are `roles`, at `now`.
pub fn view(
    id: &str,
    meta: &TaskMeta,
    state: &TaskState,
    template: &Template,
    user: &UserId,
    roles: &[Role],
    now: Millis,
) -> TaskView {
    let steps = template
        .steps
        .iter()
        .map(|def| {
            let step = state.step(&def.id);
            StepView {
                id: def.id.clone(),
                name: def.name.clone(),
                role: def.role.clone(),
                status: step.map_or(StepStatus::Blocked, |s| s.status),
                optional: def.optional,
                due_at: step.and_then(|s| s.due_at),
                fields: def.fields.clone(),
                waits_on: def.waits.iter().map(|w| w.on.clone()).collect(),
                completed: step.and_then(|s| s.completed.clone()),
            }
        })
        .collect();
    TaskView {
        id: id.to_owned(),
        meta: meta.clone(),
        name: template.name.clone(),
        state: state.clone(),
        steps,
        next_due: state.next_deadline().cloned(),
        may: may_do(state, template, user, roles, now),
    }
}

/// What `user`, in any of `roles`, may do to the task now, each action once, in the first role
/// that may take it.
pub fn may_do(
    state: &TaskState,
    template: &Template,
    user: &UserId,
    roles: &[Role],
    now: Millis,
) -> Vec<MayDo> {
    candidates(state, template, user)
        .into_iter()
        .filter_map(|(action, body)| {
            role_for(state, template, user, roles, now, &body).map(|role| MayDo {
                action,
                role: role.clone(),
            })
        })
        .collect()
}

/// The first of `roles` in which `user` may write `body` now (its fields aside: a refusal only
/// for what is yet to be filled in counts as may).
pub fn role_for<'a>(
    state: &TaskState,
    template: &Template,
    user: &UserId,
    roles: &'a [Role],
    now: Millis,
    body: &EventBody,
) -> Option<&'a Role> {
    roles.iter().find(|role| {
        let probe = Event {
            id: EventId::from("probe"),
            actor: Actor::new(user.clone(), (*role).clone()),
            device: "probe".into(),
            device_time: now,
            hlc: Hlc::new(now, 0).max(state.last_hlc.successor()),
            body: body.clone(),
        };
        match rules::check(template, state, &probe) {
            Ok(()) => true,
            Err(refusal) => needs_input(&refusal),
        }
    })
}

/// A refusal that only says what the person has yet to fill in.
fn needs_input(refusal: &Refusal) -> bool {
    matches!(
        refusal,
        Refusal::MissingField { .. }
            | Refusal::BadField { .. }
            | Refusal::TransferNeeded { .. }
            | Refusal::ConfirmationNeeded { .. }
    )
}

/// The escalation a person asks for now: the chain's next level, to its target role.
pub fn manual_escalation(template: &Template, state: &TaskState) -> Option<EventBody> {
    let level = state.escalation_level + 1;
    let def = template.escalation.get(usize::try_from(level - 1).ok()?)?;
    let role = match &def.target {
        EscalationTarget::Role(role) => role.clone(),
        EscalationTarget::SecondaryOwner {} => state.owner_role.clone(),
    };
    Some(EventBody::Escalated {
        level,
        reason: EscalationReason::Manual,
        to: EscalationTo { role, user: None },
        cause: None,
        round: state.escalation_round,
    })
}

/// Every action worth asking about, with a probe body for it.
fn candidates(state: &TaskState, template: &Template, user: &UserId) -> Vec<(Action, EventBody)> {
    let text = || "…".to_owned();
    let mut out = vec![
        (Action::Claim, EventBody::Claimed {}),
        (Action::Acknowledge, EventBody::Acknowledged {}),
    ];
    for def in &template.steps {
        let step = def.id.clone();
        out.push((
            Action::StartStep { step: step.clone() },
            EventBody::StepStarted { step: step.clone() },
        ));
        out.push((
            Action::CompleteStep { step: step.clone() },
            EventBody::StepCompleted {
                step: step.clone(),
                fields: Default::default(),
            },
        ));
        for wait in &def.waits {
            out.push((
                Action::Wait {
                    step: step.clone(),
                    on: wait.on.clone(),
                },
                EventBody::Waiting {
                    on: wait.on.clone(),
                    step: Some(step.clone()),
                    reason: None,
                    follow_up_at: None,
                    transfer: None,
                },
            ));
        }
    }
    for wait in &state.waits {
        out.push((
            Action::Resume {
                wait: wait.event.clone(),
            },
            EventBody::Resumed {
                note: None,
                wait: Some(wait.event.clone()),
                confirmation: None,
            },
        ));
    }
    out.push((Action::Note, EventBody::Note { text: text() }));
    out.push((
        Action::HandOff,
        EventBody::HandoffOffered {
            // Someone else in the owner role: who exactly is chosen when offering.
            to: Actor::new(format!("{user}~someone-else"), state.owner_role.clone()),
            item: None,
            note: None,
        },
    ));
    for handoff in &state.handoffs {
        if handoff.status != HandoffStatus::Pending {
            continue;
        }
        let offer = handoff.offer.clone();
        out.push((
            Action::AcceptHandoff {
                offer: offer.clone(),
            },
            EventBody::HandoffAccepted {
                offer: offer.clone(),
            },
        ));
        out.push((
            Action::DeclineHandoff {
                offer: offer.clone(),
            },
            EventBody::HandoffDeclined {
                offer,
                reason: None,
            },
        ));
    }
    if let Some(body) = manual_escalation(template, state) {
        out.push((Action::Escalate, body));
    }
    let alert_role = template
        .supervisor_roles
        .first()
        .unwrap_or(&template.owner_role)
        .clone();
    out.push((
        Action::RaiseException,
        EventBody::ExceptionRaised {
            rule: None,
            alert_role,
            reason: text(),
            resolution: None,
        },
    ));
    for exception in state.open_exceptions() {
        out.push((
            Action::ResolveException {
                exception: exception.event.clone(),
            },
            EventBody::ExceptionResolved {
                exception: exception.event.clone(),
                note: None,
            },
        ));
    }
    if let Some(other) = template.acuity.iter().find(|a| a.id != state.acuity) {
        out.push((
            Action::ChangeAcuity,
            EventBody::AcuityChanged {
                acuity: other.id.clone(),
            },
        ));
    }
    out.push((Action::Cancel, EventBody::Cancelled { reason: text() }));
    out.push((Action::Complete, EventBody::Completed { note: None }));
    out
}
