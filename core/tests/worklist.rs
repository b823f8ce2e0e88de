//! Worklists ordered by risk, and what a person may do to a task.

mod common;

use baton_core::ids::{Role, UnitId};
use baton_core::view::{self, Action};
use baton_core::worklist::{self, Filter, Listed, Scope, Viewer};
use baton_core::{EventBody, TaskDoc, TaskState};
use common::*;

fn viewer(user: &str, roles: &[&str]) -> Viewer {
    Viewer {
        user: user.into(),
        roles: roles
            .iter()
            .map(|r| (UnitId::from("4W"), Role::from(*r)))
            .collect(),
    }
}

/// Consults, each with its id and state.
struct Tasks(
    Vec<(String, TaskDoc, TaskState)>,
    std::sync::Arc<baton_core::Template>,
);

impl Tasks {
    fn of(tasks: Vec<(String, TaskDoc, TaskState)>) -> Self {
        Tasks(tasks, template("consult"))
    }

    fn listed(&self) -> Vec<Listed<'_>> {
        self.0
            .iter()
            .map(|(id, doc, state)| Listed {
                id,
                meta: doc.meta(),
                state,
                template: &self.1,
            })
            .collect()
    }

    fn ids(&self, viewer: &Viewer, filter: &Filter, now: i64) -> Vec<String> {
        worklist::worklist(self.listed(), viewer, filter, now)
            .into_iter()
            .map(|i| i.id)
            .collect()
    }
}

#[test]
fn a_worklist_is_ordered_by_risk_not_by_arrival() {
    let consult = template("consult");
    let mut nurse = Person::new("rn.evans", "nurse");
    let mut charge = Person::new("rn.lee", "charge_nurse");
    let mut tasks = Vec::new();
    for (id, at, acuity) in [
        ("routine-old", T0 - HOUR, "routine"),
        ("routine-new", T0, "routine"),
        ("urgent", T0 + 10 * MINUTE, "urgent"),
        ("stat", T0 + 20 * MINUTE, "stat"),
    ] {
        let mut doc = nurse.create_with(&consult, at, Some(acuity));
        if id == "routine-old" {
            // Given to a physician an hour ago, and never acknowledged.
            let assigned = EventBody::Assigned {
                user: "dr.grey".into(),
                role: "physician".into(),
            };
            charge.act(&mut doc, &consult, at + MINUTE, assigned);
        }
        let state = state(&doc, &consult);
        tasks.push((id.to_owned(), doc, state));
    }
    let tasks = Tasks::of(tasks);
    let now = T0 + 24 * MINUTE;
    let fox = viewer("dr.fox", &["physician"]);
    // The old task's acknowledgment window has passed: it comes first, whatever its acuity;
    // then the higher acuity; the newest routine task last, though it arrived second.
    assert_eq!(
        tasks.ids(&fox, &Filter::default(), now),
        ["routine-old", "stat", "urgent", "routine-new"]
    );
    let listed = worklist::worklist(tasks.listed(), &fox, &Filter::default(), now);
    assert!(listed[0].overdue && !listed[1].overdue);

    // Dr. Fox owns none of them.
    let mine = Filter {
        scope: Scope::Mine,
        ..Filter::default()
    };
    assert!(tasks.ids(&fox, &mine, now).is_empty());
    let unowned = Filter {
        scope: Scope::Unowned,
        ..Filter::default()
    };
    assert_eq!(tasks.ids(&fox, &unowned, now).len(), 3);
    // They fall to the physician role, not the nurse's...
    let my_roles = Filter {
        scope: Scope::MyRoles,
        ..Filter::default()
    };
    assert_eq!(tasks.ids(&fox, &my_roles, now).len(), 4);
    assert!(
        tasks
            .ids(&viewer("rn.evans", &["nurse"]), &my_roles, now)
            .is_empty()
    );
    // ...though the nurse, who works on the unit, sees them all; someone from elsewhere sees none.
    assert_eq!(
        tasks
            .ids(&viewer("rn.evans", &["nurse"]), &Filter::default(), now)
            .len(),
        4
    );
    let elsewhere = Viewer {
        user: "rn.icu".into(),
        roles: vec![("ICU".into(), "nurse".into())],
    };
    assert!(tasks.ids(&elsewhere, &Filter::default(), now).is_empty());
}

#[test]
fn owning_and_closing_move_a_task_between_lists() {
    let consult = template("consult");
    let mut nurse = Person::new("rn.evans", "nurse");
    let mut fox = Person::new("dr.fox", "physician");
    let mut a = nurse.create(&consult, T0);
    let b = nurse.create(&consult, T0);
    let mut c = nurse.create(&consult, T0);
    fox.act(&mut a, &consult, T0 + MINUTE, EventBody::Acknowledged {});
    nurse.act(
        &mut c,
        &consult,
        T0 + MINUTE,
        EventBody::Cancelled {
            reason: "duplicate".into(),
        },
    );
    let tasks = Tasks::of(
        [("a", a), ("b", b), ("c", c)]
            .into_iter()
            .map(|(id, doc)| {
                let s = state(&doc, &consult);
                (id.to_owned(), doc, s)
            })
            .collect(),
    );
    let fox_view = viewer("dr.fox", &["physician"]);
    let scoped = |scope| Filter {
        scope,
        ..Filter::default()
    };
    let now = T0 + 2 * MINUTE;
    assert_eq!(tasks.ids(&fox_view, &scoped(Scope::Mine), now), ["a"]);
    assert_eq!(tasks.ids(&fox_view, &scoped(Scope::Unowned), now), ["b"]);
    // A closed task is on no worklist.
    assert_eq!(tasks.ids(&fox_view, &scoped(Scope::All), now).len(), 2);
}

#[test]
fn what_a_person_may_do_is_what_the_rules_accept() {
    let consult = template("consult");
    let mut nurse = Person::new("rn.evans", "nurse");
    let mut fox = Person::new("dr.fox", "physician");
    let mut doc = nurse.create(&consult, T0);
    let now = T0 + MINUTE;
    let may = |doc: &TaskDoc, user: &str, roles: &[&str]| -> Vec<Action> {
        let roles: Vec<Role> = roles.iter().map(|r| Role::from(*r)).collect();
        view::may_do(&state(doc, &consult), &consult, &user.into(), &roles, now)
            .into_iter()
            .map(|m| m.action)
            .collect()
    };
    let physician = may(&doc, "dr.fox", &["physician"]);
    assert!(physician.contains(&Action::Claim), "{physician:?}");
    assert!(physician.contains(&Action::Acknowledge));
    let evans = may(&doc, "rn.evans", &["nurse"]);
    assert!(
        evans.contains(&Action::Note) && evans.contains(&Action::Cancel),
        "{evans:?}"
    );
    assert!(!evans.contains(&Action::Acknowledge) && !evans.contains(&Action::Claim));

    fox.act(&mut doc, &consult, now, EventBody::Acknowledged {});
    let owner = may(&doc, "dr.fox", &["physician"]);
    let request = "request".into();
    // The first step may be completed (its fields are filled in when completing); the next
    // steps must wait for it.
    assert!(
        owner.contains(&Action::CompleteStep { step: request }),
        "{owner:?}"
    );
    assert!(!owner.contains(&Action::CompleteStep {
        step: "seen".into()
    }));
    assert!(!owner.contains(&Action::Claim) && !owner.contains(&Action::Acknowledge));
    assert!(owner.contains(&Action::HandOff));
    // Every listed action with its inputs goes through; each unlisted one is refused.
    assert!(
        fox.try_act(&mut doc.clone(), &consult, now, EventBody::Claimed {})
            .is_err()
    );

    // In the view, each step shows what completing it records.
    let state = state(&doc, &consult);
    let view = view::view(
        "task-1",
        doc.meta(),
        &state,
        &consult,
        &"dr.fox".into(),
        &["physician".into()],
        now,
    );
    assert_eq!(view.steps.len(), 3);
    assert_eq!(view.steps[0].fields.len(), 2);
    assert_eq!(view.name, "Consult response");
}
