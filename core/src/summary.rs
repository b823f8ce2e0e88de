//! A task's summary: the few fields lists of tasks show and filter by, taken from its folded
//! state. The server writes it with every change of the task (the document actor derives it
//! with the index entry and the timer), so a list is one query and never a fold per task.

use crate::doc::TaskMeta;
use crate::fold::{Status, TaskState};
use crate::ids::{Role, UnitId, UserId};
use crate::template::TemplateRef;
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
}

impl TaskSummary {
    /// The summary of a task whose fixed fields are `meta` and whose events fold to `state`.
    pub fn of(meta: &TaskMeta, state: &TaskState) -> Self {
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
        let opened = TaskSummary::of(task.meta(), &task.state(consult).expect("folds"));
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
        let owned = TaskSummary::of(task.meta(), &task.state(consult).expect("folds"));
        assert_eq!(owned.owner.as_ref().map(UserId::as_str), Some("dr.fox"));
        assert_ne!(owned.next_due_at, opened.next_due_at);
    }
}
