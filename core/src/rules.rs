//! The rules of a task, in one place.
//!
//! [`check`] decides whether an event may be applied to a task's state. The same function
//! validates an event before a device writes it or the server accepts it (against the state its
//! author saw) and decides conflicts in the fold (against the merged state).

use crate::event::{Actor, EscalationReason, Event, EventBody, EventKind, FieldValue};
use crate::fold::{HandoffStatus, Status, TaskState};
use crate::ids::{EventId, Role, StepId, UserId};
use crate::template::{FieldKind, StepDef, Template, WaitDef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest free text accepted in a note, reason or text field.
pub const MAX_TEXT: usize = 4_000;

/// The most documents one transfer to an outside party lists.
pub const MAX_DOCUMENTS: usize = 20;

/// Why an event may not be applied. Stable, serializable, and specific enough to show a
/// clinician what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "refusal")]
pub enum Refusal {
    #[error("a {role} may not write `{kind}` events on this task")]
    NotPermitted { role: Role, kind: EventKind },
    #[error("`{kind}` events are written by the server")]
    ServerOnly { kind: EventKind },
    #[error("the task has not been created yet")]
    NotCreated,
    #[error("the task was already created")]
    AlreadyCreated,
    #[error("the task is {status:?}; it cannot change any more")]
    Closed { status: Status },
    #[error("the task is already owned by {owner}")]
    AlreadyOwned { owner: UserId },
    #[error("the task has no owner to replace")]
    NotOwned,
    #[error("only the owner ({owner}) may do this")]
    NotOwner { owner: UserId },
    #[error("tasks from this template are owned by a {expected}, not a {role}")]
    WrongOwnerRole { expected: Role, role: Role },
    #[error("{user} already owns the task")]
    SameOwner { user: UserId },
    #[error("the task was already acknowledged by {by}")]
    AlreadyAcknowledged { by: UserId },
    #[error("this template has no step `{step}`")]
    UnknownStep { step: StepId },
    #[error("step `{step}` must wait for {waiting_for:?}")]
    OutOfSequence {
        step: StepId,
        waiting_for: Vec<StepId>,
    },
    #[error("step `{step}` was already completed")]
    StepAlreadyCompleted { step: StepId },
    #[error("step `{step}` is done by a {expected}, not a {role}")]
    WrongRoleForStep {
        step: StepId,
        expected: Role,
        role: Role,
    },
    #[error("step `{step}` needs field `{field}`")]
    MissingField { step: StepId, field: String },
    #[error("step `{step}` has no field `{field}`")]
    UnknownField { step: StepId, field: String },
    #[error("field `{field}` of step `{step}`: {problem}")]
    BadField {
        step: StepId,
        field: String,
        problem: String,
    },
    #[error("step `{step}` cannot complete while handoffs are still pending")]
    HandoffsPending { step: StepId },
    #[error("the task cannot wait on `{on}` at this point; the current steps wait on {allowed:?}")]
    UnknownWait { on: String, allowed: Vec<String> },
    #[error("step `{step}` is not current, so it cannot wait")]
    StepNotCurrent { step: StepId },
    #[error("waiting on the outside party `{on}` needs `transfer`: where responsibility goes")]
    TransferNeeded { on: String },
    #[error("ending the wait on the outside party `{on}` needs `confirmation`: {confirm_by}")]
    ConfirmationNeeded { on: String, confirm_by: String },
    #[error("the task is not waiting")]
    NotWaiting,
    #[error("a transfer lists at most {max} documents")]
    TooManyDocuments { max: usize },
    #[error("there is no open wait `{wait}`")]
    UnknownWaitRef { wait: EventId },
    #[error("event id `{id}` is of a kind only the server writes")]
    ReservedId { id: EventId },
    #[error("the follow-up time must be after the moment of waiting")]
    FollowUpInPast,
    #[error("a handoff of this is already pending")]
    HandoffAlreadyPending { offer: EventId },
    #[error("a handoff goes to someone else in the owner role ({expected})")]
    BadHandoffTarget { expected: Role },
    #[error("there is no handoff offer `{offer}`")]
    UnknownOffer { offer: EventId },
    #[error("handoff offer `{offer}` was already settled")]
    OfferSettled { offer: EventId },
    #[error("handoff offer `{offer}` was made to {to}")]
    NotOfferedToYou { offer: EventId, to: UserId },
    #[error("escalation level {level} is not the next level of a {levels}-level chain")]
    BadEscalationLevel { level: u32, levels: u32 },
    #[error("escalation round {round} is past the chain's repeats")]
    BadEscalationRound { round: u32 },
    #[error("the task is not escalated to level {level}")]
    NotAtLevel { level: u32 },
    #[error("the task is already escalated to level {current}")]
    AlreadyEscalated { current: u32 },
    #[error("this template has no off-track rule `{rule}`")]
    UnknownRule { rule: String },
    #[error("there is no exception `{exception}`")]
    UnknownException { exception: EventId },
    #[error("exception `{exception}` was already resolved")]
    ExceptionAlreadyResolved { exception: EventId },
    #[error("the alert role {role} takes no part in this template")]
    UnknownRole { role: Role },
    #[error("this template has no acuity level `{acuity}`")]
    UnknownAcuity { acuity: String },
    #[error("the task is already at acuity `{acuity}`")]
    SameAcuity { acuity: String },
    #[error("required steps are not complete: {steps:?}")]
    StepsIncomplete { steps: Vec<StepId> },
    #[error("{what} must be between 1 and {MAX_TEXT} characters")]
    BadText { what: String },
    #[error("event id `{id}` is used twice with different content")]
    DuplicateId { id: EventId },
}

impl Refusal {
    /// The earlier event that made `self` inapplicable, for the conflict list.
    pub(crate) fn lost_to(&self, state: &TaskState) -> Option<EventId> {
        match self {
            Refusal::AlreadyOwned { .. } | Refusal::SameOwner { .. } => {
                state.owner.as_ref().map(|o| o.event.clone())
            }
            Refusal::AlreadyAcknowledged { .. } => {
                state.acknowledged.as_ref().map(|a| a.event.clone())
            }
            Refusal::StepAlreadyCompleted { step } => state
                .step(step)
                .and_then(|s| s.completed.as_ref())
                .map(|c| c.event.clone()),
            Refusal::OfferSettled { offer } => state.handoff(offer).and_then(|h| match &h.status {
                HandoffStatus::Accepted { event, .. } | HandoffStatus::Declined { event, .. } => {
                    Some(event.clone())
                }
                HandoffStatus::Pending => None,
            }),
            Refusal::HandoffAlreadyPending { offer } => Some(offer.clone()),
            Refusal::ExceptionAlreadyResolved { exception } => state
                .exception(exception)
                .and_then(|e| e.resolved.as_ref())
                .map(|r| r.event.clone()),
            Refusal::Closed { .. } => state
                .history
                .iter()
                .rev()
                .find(|h| {
                    matches!(
                        h.kind,
                        EventKind::Completed | EventKind::Cancelled | EventKind::StepCompleted
                    ) && h.outcome == crate::fold::Outcome::Applied
                })
                .map(|h| h.event.clone()),
            Refusal::AlreadyEscalated { .. } | Refusal::NotAtLevel { .. } => {
                state.escalations.last().map(|e| e.event.clone())
            }
            _ => None,
        }
    }
}

/// Which of a template's role groups may write an event kind by default.
#[derive(Clone, Copy)]
struct Groups {
    owner: bool,
    create: bool,
    supervisors: bool,
    steps: bool,
    /// Every role the template names.
    all: bool,
}

impl Groups {
    const NONE: Groups = Groups {
        owner: false,
        create: false,
        supervisors: false,
        steps: false,
        all: false,
    };

    fn of(kind: EventKind) -> Groups {
        let none = Groups::NONE;
        match kind {
            EventKind::Created => Groups {
                owner: true,
                create: true,
                ..none
            },
            EventKind::Claimed
            | EventKind::Acknowledged
            | EventKind::HandoffOffered
            | EventKind::HandoffAccepted
            | EventKind::HandoffDeclined => Groups {
                owner: true,
                ..none
            },
            EventKind::Assigned | EventKind::Reassigned => Groups {
                supervisors: true,
                ..none
            },
            EventKind::Cancelled => Groups {
                supervisors: true,
                create: true,
                ..none
            },
            EventKind::AcuityChanged => Groups {
                owner: true,
                supervisors: true,
                create: true,
                ..none
            },
            EventKind::Completed => Groups {
                owner: true,
                supervisors: true,
                ..none
            },
            EventKind::StepStarted | EventKind::StepCompleted => Groups {
                steps: true,
                ..none
            },
            EventKind::Waiting | EventKind::Resumed => Groups {
                owner: true,
                steps: true,
                supervisors: true,
                ..none
            },
            // Whoever asked for the work may also push it up the chain by hand.
            EventKind::Escalated => Groups {
                owner: true,
                steps: true,
                supervisors: true,
                create: true,
                all: false,
            },
            EventKind::Note | EventKind::ExceptionRaised | EventKind::ExceptionResolved => {
                Groups { all: true, ..none }
            }
            EventKind::FollowUpDue | EventKind::Renotified => none,
        }
    }
}

/// The roles that may write `kind` on tasks of `template`, by default or as the template says.
pub fn permitted_roles(template: &Template, kind: EventKind) -> Vec<&Role> {
    if let Some(roles) = template.permissions.get(&kind) {
        return roles.iter().collect();
    }
    let groups = Groups::of(kind);
    if groups.all {
        return template.roles().into_iter().collect();
    }
    let mut roles: Vec<&Role> = Vec::new();
    if groups.owner {
        roles.push(&template.owner_role);
    }
    if groups.create {
        roles.extend(&template.create_roles);
    }
    if groups.supervisors {
        roles.extend(&template.supervisor_roles);
    }
    if groups.steps {
        roles.extend(template.steps.iter().map(|s| &s.role));
    }
    roles.sort();
    roles.dedup();
    roles
}

/// Whether `role` may write `kind` on tasks of `template`: [`permitted_roles`] without building
/// the list, as the fold asks for every event.
pub fn is_permitted(template: &Template, kind: EventKind, role: &Role) -> bool {
    if let Some(roles) = template.permissions.get(&kind) {
        return roles.contains(role);
    }
    let groups = Groups::of(kind);
    if groups.all {
        return template.names_role(role);
    }
    (groups.owner && template.owner_role == *role)
        || (groups.create && template.create_roles.contains(role))
        || (groups.supervisors && template.supervisor_roles.contains(role))
        || (groups.steps && template.steps.iter().any(|s| s.role == *role))
}

/// What the server (the system actor) may write: tasks opened by triggers, their routing,
/// re-routing and shift-change offers, escalations and re-notifications, follow-up prompts,
/// off-track exceptions, and notes.
fn system_may(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Created
            | EventKind::Assigned
            | EventKind::Reassigned
            | EventKind::HandoffOffered
            | EventKind::Escalated
            | EventKind::Renotified
            | EventKind::FollowUpDue
            | EventKind::ExceptionRaised
            | EventKind::Note
    )
}

/// What an administrator may write, through the server's admin API: give work to someone, move
/// it, cancel it, and say why in a note.
fn admin_may(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Assigned | EventKind::Reassigned | EventKind::Cancelled | EventKind::Note
    )
}

/// Kinds nobody but the server writes, whatever a template's permissions say.
fn server_only(kind: EventKind) -> bool {
    matches!(kind, EventKind::FollowUpDue | EventKind::Renotified)
}

/// Whether `event` uses an id of the kind the server derives for its own events, without being
/// the server's. Taking one would shadow the server's event of that id.
pub fn takes_server_id(event: &Event) -> bool {
    !event.actor.is_system()
        && crate::policy::escalation::SERVER_ID_PREFIXES
            .iter()
            .any(|p| event.id.as_str().starts_with(p))
}

/// The current step that waits on `on` (the named one, or the first in template order), and
/// the wait as the template declares it.
pub(crate) fn wait_def<'a>(
    template: &'a Template,
    state: &TaskState,
    on: &str,
    step: Option<&StepId>,
) -> Result<(&'a StepDef, &'a WaitDef), Refusal> {
    if let Some(step) = step {
        let def = template
            .step(step)
            .ok_or_else(|| Refusal::UnknownStep { step: step.clone() })?;
        if !current_step_defs(template, state).any(|s| s.id == def.id) {
            return Err(Refusal::StepNotCurrent { step: step.clone() });
        }
        return def
            .waits
            .iter()
            .find(|w| w.on == on)
            .map(|w| (def, w))
            .ok_or_else(|| Refusal::UnknownWait {
                on: on.to_owned(),
                allowed: def.waits.iter().map(|w| w.on.clone()).collect(),
            });
    }
    current_step_defs(template, state)
        .find_map(|s| s.waits.iter().find(|w| w.on == on).map(|w| (s, w)))
        .ok_or_else(|| Refusal::UnknownWait {
            on: on.to_owned(),
            allowed: current_step_defs(template, state)
                .flat_map(|s| &s.waits)
                .map(|w| w.on.clone())
                .collect(),
        })
}

/// May `event` be applied to `state`?
pub fn check(template: &Template, state: &TaskState, event: &Event) -> Result<(), Refusal> {
    let kind = event.kind();
    let actor = &event.actor;
    if takes_server_id(event) {
        return Err(Refusal::ReservedId {
            id: event.id.clone(),
        });
    }
    if server_only(kind) && !actor.is_system() {
        return Err(Refusal::ServerOnly { kind });
    }
    if actor.is_system() {
        if !system_may(kind) {
            return Err(Refusal::NotPermitted {
                role: actor.role.clone(),
                kind,
            });
        }
    } else if actor.is_admin() {
        if !admin_may(kind) {
            return Err(Refusal::NotPermitted {
                role: actor.role.clone(),
                kind,
            });
        }
    } else if !is_permitted(template, kind, &actor.role) {
        return Err(Refusal::NotPermitted {
            role: actor.role.clone(),
            kind,
        });
    }

    match (&event.body, state.status) {
        (EventBody::Created { note }, Status::Pending) => {
            return check_optional_text("the note", note);
        }
        (EventBody::Created { .. }, _) => return Err(Refusal::AlreadyCreated),
        (_, Status::Pending) => return Err(Refusal::NotCreated),
        // A closed task still takes notes and the resolution of its exceptions.
        (EventBody::Note { .. } | EventBody::ExceptionResolved { .. }, _) => {}
        (_, status) if status.is_closed() => return Err(Refusal::Closed { status }),
        _ => {}
    }

    match &event.body {
        EventBody::Created { .. } => Ok(()),
        EventBody::Claimed {} => unowned(state),
        EventBody::Assigned { role, .. } => {
            unowned(state)?;
            owner_role(template, role)
        }
        EventBody::Reassigned { user, role, reason } => {
            let owner = state.owner.as_ref().ok_or(Refusal::NotOwned)?;
            if &owner.user == user {
                return Err(Refusal::SameOwner { user: user.clone() });
            }
            owner_role(template, role)?;
            check_optional_text("the reason", reason)
        }
        EventBody::Acknowledged {} => {
            if let Some(owner) = &state.owner
                && owner.user != actor.user
            {
                return Err(Refusal::NotOwner {
                    owner: owner.user.clone(),
                });
            }
            match &state.acknowledged {
                Some(ack) => Err(Refusal::AlreadyAcknowledged {
                    by: ack.user.clone(),
                }),
                None => Ok(()),
            }
        }
        EventBody::StepStarted { step } => available_step(template, state, step, actor).map(|_| ()),
        EventBody::StepCompleted { step, fields } => {
            let def = available_step(template, state, step, actor)?;
            if def.requires_settled_handoffs && state.pending_handoffs().next().is_some() {
                return Err(Refusal::HandoffsPending { step: step.clone() });
            }
            check_fields(def, fields)
        }
        EventBody::Waiting {
            on,
            step,
            reason,
            follow_up_at,
            transfer,
        } => {
            let (_, def) = wait_def(template, state, on, step.as_ref())?;
            if follow_up_at.is_some_and(|f| f <= event.at()) {
                return Err(Refusal::FollowUpInPast);
            }
            match (def.external.is_some(), transfer) {
                (true, None) => return Err(Refusal::TransferNeeded { on: on.clone() }),
                (_, Some(transfer)) => {
                    check_text("the transfer's `to`", &transfer.to)?;
                    check_optional_text("the transfer's contact", &transfer.contact)?;
                    if transfer.documentation.len() > MAX_DOCUMENTS {
                        return Err(Refusal::TooManyDocuments { max: MAX_DOCUMENTS });
                    }
                    for item in &transfer.documentation {
                        check_text("each documentation item", item)?;
                    }
                }
                (false, None) => {}
            }
            check_optional_text("the reason", reason)
        }
        EventBody::Resumed {
            note,
            wait,
            confirmation,
        } => {
            let ending: Vec<&crate::fold::Waiting> = match wait {
                Some(id) => vec![
                    state
                        .wait(id)
                        .ok_or_else(|| Refusal::UnknownWaitRef { wait: id.clone() })?,
                ],
                None => state.waits.iter().collect(),
            };
            if ending.is_empty() {
                return Err(Refusal::NotWaiting);
            }
            if confirmation.is_none()
                && let Some((w, external)) = ending
                    .iter()
                    .find_map(|w| w.external.as_ref().map(|e| (w, e)))
            {
                return Err(Refusal::ConfirmationNeeded {
                    on: w.on.clone(),
                    confirm_by: external.confirm_by.clone(),
                });
            }
            check_optional_text("the confirmation", confirmation)?;
            check_optional_text("the note", note)
        }
        EventBody::FollowUpDue { wait } => match state.wait(wait) {
            Some(_) => Ok(()),
            None => Err(Refusal::UnknownWaitRef { wait: wait.clone() }),
        },
        EventBody::Renotified { level, to } => {
            if *level == 0 || *level != state.escalation_level {
                return Err(Refusal::NotAtLevel { level: *level });
            }
            known_role(template, &to.role)
        }
        EventBody::Note { text } => check_text("the note", text),
        EventBody::HandoffOffered { to, item, note } => {
            // The server offers on the owner's behalf (a shift change).
            let from = if actor.is_system() {
                &state.owner.as_ref().ok_or(Refusal::NotOwned)?.user
            } else {
                is_owner(state, actor)?;
                &actor.user
            };
            if to.role != template.owner_role || &to.user == from {
                return Err(Refusal::BadHandoffTarget {
                    expected: template.owner_role.clone(),
                });
            }
            if let Some(pending) = state.pending_handoffs().find(|h| &h.item == item) {
                return Err(Refusal::HandoffAlreadyPending {
                    offer: pending.offer.clone(),
                });
            }
            check_optional_text("the item", item)?;
            check_optional_text("the note", note)
        }
        EventBody::HandoffAccepted { offer } => pending_offer_to(state, offer, actor),
        EventBody::HandoffDeclined { offer, reason } => {
            pending_offer_to(state, offer, actor)?;
            check_optional_text("the reason", reason)
        }
        EventBody::Escalated {
            level,
            reason,
            to,
            cause,
            round,
        } => {
            let levels = u32::try_from(template.escalation.len()).unwrap_or(u32::MAX);
            let manual = *reason == EscalationReason::Manual;
            if manual == actor.is_system() {
                return Err(Refusal::ServerOnly { kind });
            }
            let repeats = template.escalation_repeat.as_ref().map_or(0, |r| r.times);
            if *round > repeats || (manual && *round != state.escalation_round) {
                return Err(Refusal::BadEscalationRound { round: *round });
            }
            if *level == 0 || *level > levels || (manual && *level != state.escalation_level + 1) {
                return Err(Refusal::BadEscalationLevel {
                    level: *level,
                    levels,
                });
            }
            if (*round, *level) <= (state.escalation_round, state.escalation_level) {
                return Err(Refusal::AlreadyEscalated {
                    current: state.escalation_level,
                });
            }
            known_role(template, &to.role)?;
            check_optional_text("the cause", cause)
        }
        EventBody::ExceptionRaised {
            rule,
            alert_role,
            reason,
            resolution,
        } => {
            check_optional_text("the resolution", resolution)?;
            if let Some(rule) = rule {
                if !actor.is_system() {
                    return Err(Refusal::ServerOnly { kind });
                }
                if !template.off_track.iter().any(|r| &r.id == rule) {
                    return Err(Refusal::UnknownRule { rule: rule.clone() });
                }
            }
            known_role(template, alert_role)?;
            check_text("the reason", reason)
        }
        EventBody::ExceptionResolved { exception, note } => {
            let e = state
                .exception(exception)
                .ok_or_else(|| Refusal::UnknownException {
                    exception: exception.clone(),
                })?;
            if e.resolved.is_some() {
                return Err(Refusal::ExceptionAlreadyResolved {
                    exception: exception.clone(),
                });
            }
            if actor.role != e.alert_role
                && !template.supervisor_roles.contains(&actor.role)
                && !template.permissions.contains_key(&kind)
            {
                return Err(Refusal::NotPermitted {
                    role: actor.role.clone(),
                    kind,
                });
            }
            check_optional_text("the note", note)
        }
        EventBody::AcuityChanged { acuity } => {
            if template.acuity_level(acuity).is_none() {
                return Err(Refusal::UnknownAcuity {
                    acuity: acuity.clone(),
                });
            }
            if &state.acuity == acuity {
                return Err(Refusal::SameAcuity {
                    acuity: acuity.clone(),
                });
            }
            Ok(())
        }
        EventBody::Cancelled { reason } => check_text("the reason", reason),
        EventBody::Completed { note } => {
            let steps: Vec<StepId> = state.incomplete_required_steps(template).cloned().collect();
            if !steps.is_empty() {
                return Err(Refusal::StepsIncomplete { steps });
            }
            check_optional_text("the note", note)
        }
    }
}

fn unowned(state: &TaskState) -> Result<(), Refusal> {
    match &state.owner {
        Some(owner) => Err(Refusal::AlreadyOwned {
            owner: owner.user.clone(),
        }),
        None => Ok(()),
    }
}

fn is_owner(state: &TaskState, actor: &Actor) -> Result<(), Refusal> {
    match &state.owner {
        Some(owner) if owner.user == actor.user => Ok(()),
        Some(owner) => Err(Refusal::NotOwner {
            owner: owner.user.clone(),
        }),
        None => Err(Refusal::NotOwned),
    }
}

fn owner_role(template: &Template, role: &Role) -> Result<(), Refusal> {
    if role == &template.owner_role {
        Ok(())
    } else {
        Err(Refusal::WrongOwnerRole {
            expected: template.owner_role.clone(),
            role: role.clone(),
        })
    }
}

fn known_role(template: &Template, role: &Role) -> Result<(), Refusal> {
    if template.roles().contains(role) {
        Ok(())
    } else {
        Err(Refusal::UnknownRole { role: role.clone() })
    }
}

fn pending_offer_to(state: &TaskState, offer: &EventId, actor: &Actor) -> Result<(), Refusal> {
    let h = state.handoff(offer).ok_or_else(|| Refusal::UnknownOffer {
        offer: offer.clone(),
    })?;
    if h.status != HandoffStatus::Pending {
        return Err(Refusal::OfferSettled {
            offer: offer.clone(),
        });
    }
    if h.to.user != actor.user {
        return Err(Refusal::NotOfferedToYou {
            offer: offer.clone(),
            to: h.to.user.clone(),
        });
    }
    Ok(())
}

fn current_step_defs<'t>(
    template: &'t Template,
    state: &TaskState,
) -> impl Iterator<Item = &'t StepDef> {
    template
        .steps
        .iter()
        .zip(&state.steps)
        .filter(|(_, s)| s.completed.is_none() && s.available_since.is_some())
        .map(|(def, _)| def)
}

/// The step, if the actor's role does it and it is next in sequence.
fn available_step<'a>(
    template: &'a Template,
    state: &TaskState,
    step: &StepId,
    actor: &Actor,
) -> Result<&'a StepDef, Refusal> {
    let def = template
        .step(step)
        .ok_or_else(|| Refusal::UnknownStep { step: step.clone() })?;
    if def.role != actor.role {
        return Err(Refusal::WrongRoleForStep {
            step: step.clone(),
            expected: def.role.clone(),
            role: actor.role.clone(),
        });
    }
    if state.step(step).is_some_and(|s| s.completed.is_some()) {
        return Err(Refusal::StepAlreadyCompleted { step: step.clone() });
    }
    let waiting_for: Vec<StepId> = def
        .dependencies()
        .iter()
        .filter(|d| state.step(d).is_none_or(|s| s.completed.is_none()))
        .cloned()
        .collect();
    if !waiting_for.is_empty() {
        return Err(Refusal::OutOfSequence {
            step: step.clone(),
            waiting_for,
        });
    }
    Ok(def)
}

/// Required fields present, none unknown, each of its declared type.
fn check_fields(def: &StepDef, fields: &BTreeMap<String, FieldValue>) -> Result<(), Refusal> {
    if let Some(name) = fields
        .keys()
        .find(|name| !def.fields.iter().any(|f| &f.name == *name))
    {
        return Err(Refusal::UnknownField {
            step: def.id.clone(),
            field: name.clone(),
        });
    }
    for field in &def.fields {
        let Some(value) = fields.get(&field.name) else {
            if field.required {
                return Err(Refusal::MissingField {
                    step: def.id.clone(),
                    field: field.name.clone(),
                });
            }
            continue;
        };
        field_value_problem(&field.kind, value).map_or(Ok(()), |problem| {
            Err(Refusal::BadField {
                step: def.id.clone(),
                field: field.name.clone(),
                problem,
            })
        })?;
    }
    Ok(())
}

/// What is wrong with `value` as a field of `kind`, if anything.
fn field_value_problem(kind: &FieldKind, value: &FieldValue) -> Option<String> {
    match (kind, value) {
        (FieldKind::Text { max_len }, FieldValue::Text(text)) => {
            let max = max_len.unwrap_or(MAX_TEXT).min(MAX_TEXT);
            (text.trim().is_empty() || text.chars().count() > max)
                .then(|| format!("text must be between 1 and {max} characters"))
        }
        (FieldKind::Number { min, max }, FieldValue::Number(_) | FieldValue::Int(_)) => {
            let n = match value {
                FieldValue::Number(n) => *n,
                FieldValue::Int(i) => *i as f64,
                _ => return None,
            };
            if !n.is_finite() {
                return Some("must be a finite number".into());
            }
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                return Some(format!(
                    "{n} is outside {}..={}",
                    fmt_bound(*min),
                    fmt_bound(*max)
                ));
            }
            None
        }
        (FieldKind::Choice { options }, FieldValue::Text(choice)) => {
            (!options.contains(choice)).then(|| format!("`{choice}` is not one of {options:?}"))
        }
        (FieldKind::Boolean, FieldValue::Bool(_)) => None,
        (FieldKind::Timestamp, FieldValue::Int(ms)) => {
            (*ms < 0).then(|| "a timestamp is milliseconds since 1970, not negative".into())
        }
        (kind, _) => Some(format!("expected {}", expected_name(kind))),
    }
}

fn fmt_bound(bound: Option<f64>) -> String {
    bound.map_or_else(String::new, |b| b.to_string())
}

fn expected_name(kind: &FieldKind) -> &'static str {
    match kind {
        FieldKind::Text { .. } => "text",
        FieldKind::Number { .. } => "a number",
        FieldKind::Choice { .. } => "one of the choices, as text",
        FieldKind::Boolean => "true or false",
        FieldKind::Timestamp => "a timestamp (integer milliseconds since 1970)",
    }
}

fn check_text(what: &str, text: &str) -> Result<(), Refusal> {
    if text.trim().is_empty() || text.chars().count() > MAX_TEXT {
        return Err(Refusal::BadText {
            what: what.to_owned(),
        });
    }
    Ok(())
}

fn check_optional_text(what: &str, text: &Option<String>) -> Result<(), Refusal> {
    text.as_deref().map_or(Ok(()), |t| check_text(what, t))
}
