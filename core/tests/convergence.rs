//! Convergence: replicas that receive the same events, in any order and through any pattern of
//! merges, hold identical event sets and fold to byte-identical state. No event is lost.

mod common;

use baton_core::event::{Actor, EscalationReason, EscalationTo, Event, EventBody, FieldValue};
use baton_core::fold::{Status, StepStatus};
use baton_core::template::FieldKind;
use baton_core::{TaskDoc, Template, fold};
use common::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// The people (one phone each) taking part in each template's scenario.
fn cast(template: &str) -> &'static [&'static str] {
    match template {
        "discharge" => &[
            "physician",
            "case_manager",
            "case_manager",
            "pharmacist",
            "charge_nurse",
        ],
        "consult" => &["nurse", "physician", "physician", "charge_nurse"],
        "shift_handoff" => &["nurse", "nurse", "nurse", "charge_nurse"],
        _ => &["pharmacist", "nurse", "nurse", "charge_nurse", "physician"],
    }
}

const TEMPLATES: [&str; 4] = ["discharge", "consult", "shift_handoff", "nonformulary_med"];

#[derive(Clone, Debug)]
enum Step {
    /// Phone `who` tries action number `action`, `minutes` after the previous step.
    Act {
        who: usize,
        action: u8,
        minutes: i64,
    },
    /// Phone `to` syncs with phone `from` (one direction).
    Sync { from: usize, to: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..8usize, 0..18u8, 0..30i64).prop_map(|(who, action, minutes)| Step::Act { who, action, minutes }),
        1 => (0..8usize, 0..8usize).prop_map(|(from, to)| Step::Sync { from, to }),
    ]
}

fn valid_fields(
    template: &Template,
    step: &baton_core::ids::StepId,
) -> BTreeMap<String, FieldValue> {
    let def = template.step(step).expect("step");
    def.fields
        .iter()
        .map(|f| {
            let value = match &f.kind {
                FieldKind::Text { .. } => FieldValue::Text("ok".into()),
                FieldKind::Number { min, .. } => FieldValue::Number(min.unwrap_or(1.0).max(1.0)),
                FieldKind::Choice { options } => FieldValue::Text(options[0].clone()),
                FieldKind::Boolean => FieldValue::Bool(true),
                FieldKind::Timestamp => FieldValue::Int(T0),
            };
            (f.name.clone(), value)
        })
        .collect()
}

/// Choose a plausible action for `me` given what this phone sees. The rules may still refuse it
/// (that is fine: a refused action is simply not written).
fn action(
    template: &Template,
    doc: &TaskDoc,
    me: &Person,
    people: &[Actor],
    n: u8,
) -> Option<EventBody> {
    let s = doc.state(template).ok()?;
    let my = Actor::new(me.author.user.clone(), me.author.role.clone());
    let other_owner = people
        .iter()
        .find(|p| p.role == template.owner_role && p.user != my.user)
        .cloned();
    let my_step = s
        .steps
        .iter()
        .find(|st| {
            matches!(st.status, StepStatus::Available | StepStatus::InProgress)
                && st.role == my.role
        })
        .map(|st| st.id.clone());
    Some(match n {
        0 => EventBody::Note {
            text: format!("note by {}", my.user),
        },
        1 => EventBody::Claimed {},
        2 => EventBody::Acknowledged {},
        3 | 4 => {
            let step = my_step?;
            EventBody::StepCompleted {
                fields: valid_fields(template, &step),
                step,
            }
        }
        5 => EventBody::StepStarted { step: my_step? },
        6 => {
            let on = s
                .current_step
                .as_ref()
                .and_then(|c| template.step(c))
                .and_then(|d| d.waits.first())?
                .on
                .clone();
            EventBody::Waiting {
                on,
                reason: None,
                follow_up_at: None,
                step: None,
                transfer: None,
            }
        }
        7 => EventBody::Resumed {
            note: None,
            wait: None,
            confirmation: None,
        },
        8 => {
            let other = template
                .acuity
                .iter()
                .find(|a| a.id != s.acuity)?
                .id
                .clone();
            EventBody::AcuityChanged { acuity: other }
        }
        9 | 17 => EventBody::HandoffOffered {
            to: other_owner?,
            item: (n == 17).then(|| "bed 7".into()),
            note: None,
        },
        10 => EventBody::HandoffAccepted {
            offer: s
                .pending_handoffs()
                .find(|h| h.to.user == my.user)?
                .offer
                .clone(),
        },
        11 => EventBody::HandoffDeclined {
            offer: s
                .pending_handoffs()
                .find(|h| h.to.user == my.user)?
                .offer
                .clone(),
            reason: None,
        },
        12 => EventBody::ExceptionRaised {
            rule: None,
            alert_role: template.owner_role.clone(),
            reason: "concern".into(),
            resolution: None,
        },
        13 => EventBody::ExceptionResolved {
            exception: s.open_exceptions().next()?.event.clone(),
            note: None,
        },
        14 => match &s.owner {
            None => EventBody::Assigned {
                user: other_owner?.user,
                role: template.owner_role.clone(),
            },
            Some(_) => EventBody::Reassigned {
                user: other_owner?.user,
                role: template.owner_role.clone(),
                reason: None,
            },
        },
        16 => EventBody::Cancelled {
            reason: "no longer needed".into(),
        },
        _ => EventBody::Escalated {
            level: s.escalation_level + 1,
            reason: EscalationReason::Manual,
            to: EscalationTo {
                role: template.owner_role.clone(),
                user: None,
            },
            cause: None,
            round: 0,
        },
    })
}

fn sorted_events(doc: &TaskDoc) -> Vec<Event> {
    let mut events = doc.events().expect("events").events;
    events.sort_by(|a, b| a.id.cmp(&b.id));
    events
}

fn run(
    template_index: usize,
    steps: Vec<Step>,
    final_order: Vec<usize>,
    rotate: usize,
) -> Result<(), TestCaseError> {
    let t = template(TEMPLATES[template_index]);
    let roles = cast(TEMPLATES[template_index]);
    let mut people: Vec<Person> = roles
        .iter()
        .enumerate()
        .map(|(i, role)| Person::new(&format!("u{i}"), role))
        .collect();
    let actors: Vec<Actor> = people
        .iter()
        .map(|p| Actor::new(p.author.user.clone(), p.author.role.clone()))
        .collect();
    let n = people.len();
    let first = people[0].create(&t, T0);
    let mut phones: Vec<TaskDoc> = (0..n)
        .map(|i| {
            if i == 0 {
                first.clone()
            } else {
                replica(&first)
            }
        })
        .collect();

    let mut now = T0;
    let mut written: BTreeSet<String> = BTreeSet::new();
    written.insert(first.events().expect("events").events[0].id.to_string());
    for step in steps {
        match step {
            Step::Act {
                who,
                action: a,
                minutes,
            } => {
                let who = who % n;
                now += minutes * MINUTE + 1;
                if let Some(body) = action(&t, &phones[who], &people[who], &actors, a)
                    && let Ok(event) = people[who].try_act(&mut phones[who], &t, now, body)
                {
                    written.insert(event.id.to_string());
                }
            }
            Step::Sync { from, to } => {
                let (from, to) = (from % n, to % n);
                if from != to {
                    let mut source = phones[from].clone();
                    phones[to].merge(&mut source).expect("merge");
                }
            }
        }
    }

    // Everyone syncs with everyone, in a random order, through a random hub.
    let hub = rotate % n;
    for &i in final_order.iter().filter(|&&i| i < n) {
        let mut source = phones[i].clone();
        phones[hub].merge(&mut source).expect("merge");
    }
    for i in 0..n {
        let mut source = phones[hub].clone();
        phones[i].merge(&mut source).expect("merge");
    }

    let reference = sorted_events(&phones[0]);
    let ids: BTreeSet<String> = reference.iter().map(|e| e.id.to_string()).collect();
    prop_assert_eq!(
        &ids,
        &written,
        "every written event is present, and nothing else"
    );
    let reference_state = serde_json::to_vec(&phones[0].state(&t).expect("state")).expect("json");
    for phone in &phones[1..] {
        prop_assert_eq!(&sorted_events(phone), &reference);
        let bytes = serde_json::to_vec(&phone.state(&t).expect("state")).expect("json");
        prop_assert!(
            bytes == reference_state,
            "folded state differs between replicas"
        );
    }
    // The fold does not depend on the order the events are listed in.
    let mut reversed = phones[0].events().expect("events").events;
    reversed.reverse();
    let refolded = serde_json::to_vec(&fold(&t, phones[0].meta(), &reversed)).expect("json");
    prop_assert!(refolded == reference_state);
    // Every event has its place in the history: applied, duplicate or conflict.
    let s = phones[0].state(&t).expect("state");
    prop_assert_eq!(s.history.len(), reference.len());
    prop_assert!(s.status != Status::Pending);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_to_identical_events_and_state(
        template_index in 0..TEMPLATES.len(),
        steps in prop::collection::vec(step(), 1..40),
        final_order in Just((0..8usize).collect::<Vec<_>>()).prop_shuffle(),
        rotate in 0..8usize,
    ) {
        run(template_index, steps, final_order, rotate)?;
    }
}
