//! A task's summary: the few fields lists of tasks show and filter by, taken from its folded
//! state. The server writes it with every change of the task (the document actor derives it
//! with the index entry and the timer), so a list is one query and never a fold per task.

use crate::doc::TaskMeta;
use crate::event::{EscalationReason, EventKind};
use crate::fold::{Outcome, Status, TaskState};
use crate::ids::{Role, UnitId, UserId};
use crate::template::{Template, TemplateRef};
use crate::time::Millis;
use serde::{Deserialize, Serialize};

/// What a list of tasks shows of one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSummary {
    pub unit: UnitId,
    pub template: TemplateRef,
    pub status: Status,
    /// Who owns the task now, if anyone does.
    pub owner: Option<UserId>,
    /// The role tasks of this template are owned in.
    pub owner_role: Role,
    pub acuity: String,
    /// The escalation level reached since the last progress.
    pub escalation_level: u32,
    /// The earliest open deadline (acknowledgment window, a step's due time, a wait's
    /// follow-up, a handoff offer); none once the task is closed or nothing is due.
    pub next_due_at: Option<Millis>,
    /// The subject's display label.
    pub label: String,
    /// What the operational metrics are computed from.
    pub measures: Measures,
}

/// The facts of one task the operational metrics are computed from (docs/metrics.md defines
/// each). Times are events' stamps (workflow time, Unix ms).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measures {
    /// The template's program.
    pub program: String,
    /// When the task was created.
    pub opened_at: Option<Millis>,
    /// The first acknowledgment (or claim, which acknowledges).
    pub first_ack_at: Option<Millis>,
    /// The first outreach: the first step begun or completed, or the first wait on someone
    /// outside the task.
    pub first_outreach_at: Option<Millis>,
    /// When the task was completed or cancelled.
    pub closed_at: Option<Millis>,
    /// Escalations stored, by reason.
    pub escalations_time: u32,
    pub escalations_acuity: u32,
    pub escalations_manual: u32,
    /// Actions people took to steer the task rather than do it: assigning, reassigning,
    /// escalating by hand, raising or resolving an exception.
    pub interventions: u32,
    /// When the template's first step was completed, and its last.
    pub first_step_done_at: Option<Millis>,
    pub last_step_done_at: Option<Millis>,
}

impl Measures {
    pub fn of(template: &Template, state: &TaskState) -> Self {
        let applied = || {
            state
                .history
                .iter()
                .filter(|h| h.outcome == Outcome::Applied)
        };
        let first = |kinds: &[EventKind]| {
            applied()
                .filter(|h| kinds.contains(&h.kind))
                .map(|h| h.hlc.wall)
                .min()
        };
        let escalations = |reason: EscalationReason| {
            let n = state
                .escalations
                .iter()
                .filter(|e| e.reason == reason)
                .count();
            u32::try_from(n).unwrap_or(u32::MAX)
        };
        let steered = applied()
            .filter(|h| {
                !h.actor.is_system()
                    && matches!(
                        h.kind,
                        EventKind::Assigned
                            | EventKind::Reassigned
                            | EventKind::ExceptionRaised
                            | EventKind::ExceptionResolved
                    )
            })
            .count();
        let done_at = |step: Option<&crate::template::StepDef>| {
            let step = step?;
            state
                .steps
                .iter()
                .find(|s| s.id == step.id)?
                .completed
                .as_ref()
                .map(|c| c.at)
        };
        let manual = escalations(EscalationReason::Manual);
        Measures {
            program: template.program.id.clone(),
            opened_at: state.created_at,
            first_ack_at: first(&[EventKind::Acknowledged, EventKind::Claimed]),
            first_outreach_at: first(&[
                EventKind::StepStarted,
                EventKind::StepCompleted,
                EventKind::Waiting,
            ]),
            closed_at: state.closed_at,
            escalations_time: escalations(EscalationReason::Time),
            escalations_acuity: escalations(EscalationReason::Acuity),
            escalations_manual: manual,
            interventions: u32::try_from(steered)
                .unwrap_or(u32::MAX)
                .saturating_add(manual),
            first_step_done_at: done_at(template.steps.first()),
            last_step_done_at: done_at(template.steps.last()),
        }
    }
}

impl TaskSummary {
    /// The summary of a task of `template` whose fixed fields are `meta` and whose events fold
    /// to `state`.
    pub fn of(template: &Template, meta: &TaskMeta, state: &TaskState) -> Self {
        TaskSummary {
            unit: meta.unit.clone(),
            template: meta.template.clone(),
            status: state.status,
            owner: state.owner.as_ref().map(|owner| owner.user.clone()),
            owner_role: state.owner_role.clone(),
            acuity: state.acuity.clone(),
            escalation_level: state.escalation_level,
            next_due_at: state.next_deadline().map(|deadline| deadline.at),
            label: meta.subject.label.clone(),
            measures: Measures::of(template, state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Author, EventBody, HlcClock, NewTask, Subject, TaskDoc, TemplateRegistry};

    #[test]
    fn the_summary_follows_the_fold() {
        let templates = TemplateRegistry::shipped();
        let consult = templates.latest(&"consult".into()).expect("shipped");
        let nurse = Author::new("rn.evans", "nurse", "phone-1");
        let mut clock = HlcClock::new();
        let now = 1_767_596_400_000;
        let new = NewTask {
            unit: "4W".into(),
            subject: Subject {
                reference: "enc-1".into(),
                label: "Bed 1".into(),
            },
            acuity: Some("urgent".into()),
            note: None,
        };
        let (mut task, _) = TaskDoc::create(
            consult,
            new,
            &nurse,
            &mut clock,
            now,
            automerge::ActorId::random(),
        )
        .expect("created");
        let opened = TaskSummary::of(consult, task.meta(), &task.state(consult).expect("folds"));
        assert_eq!(opened.status, Status::Open);
        assert_eq!(opened.owner, None);
        assert_eq!(opened.owner_role.as_str(), "physician");
        assert_eq!(opened.acuity, "urgent");
        assert_eq!(opened.label, "Bed 1");
        // Urgent halves the 30-minute acknowledgment window.
        assert_eq!(opened.next_due_at, Some(now + 15 * 60_000));

        let physician = Author::new("dr.fox", "physician", "phone-2");
        task.append(
            consult,
            &physician,
            &mut clock,
            now + 60_000,
            EventBody::Acknowledged {},
        )
        .expect("acknowledged");
        let owned = TaskSummary::of(consult, task.meta(), &task.state(consult).expect("folds"));
        assert_eq!(owned.owner.as_ref().map(UserId::as_str), Some("dr.fox"));
        assert_ne!(owned.next_due_at, opened.next_due_at);
    }
}
