//! Every event kind: what it does to a task, what the rules refuse, and how concurrent actions
//! that cannot both hold become visible conflicts.

mod common;

use baton_core::doc::AppendError;
use baton_core::event::{Actor, EscalationReason, EscalationTo, EventBody, EventKind, FieldValue};
use baton_core::fold::{Cause, HandoffStatus, Outcome, Status, StepStatus};
use baton_core::rules::{Refusal, is_permitted, permitted_roles};
use baton_core::{Author, HlcClock, TaskDoc, Template};
use common::*;

fn refusal(result: Result<baton_core::Event, AppendError>) -> Refusal {
    match result {
        Err(AppendError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn consult() -> (std::sync::Arc<Template>, TaskDoc, Person, Person) {
    let t = template("consult");
    let mut nurse = Person::new("rn.evans", "nurse");
    let doc = nurse.create(&t, T0);
    (t, doc, nurse, Person::new("dr.fox", "physician"))
}

fn request_fields() -> std::collections::BTreeMap<String, FieldValue> {
    fields! { "question" => FieldValue::Text("chest pain?".into()), "urgency" => FieldValue::Text("routine".into()) }
}

#[test]
fn created_is_first_and_only_once() {
    let (t, mut doc, mut nurse, _) = consult();
    let s = state(&doc, &t);
    assert_eq!(s.status, Status::Open);
    assert_eq!(s.created_at, Some(T0));
    assert_eq!(s.created_by, Some(Actor::new("rn.evans", "nurse")));
    assert_eq!(
        refusal(nurse.try_act(&mut doc, &t, T0 + 1, EventBody::Created { note: None })),
        Refusal::AlreadyCreated
    );
}

#[test]
fn only_permitted_roles_may_create() {
    let t = template("consult");
    let mut transport = Person::new("tr.diaz", "transport");
    let new = baton_core::NewTask {
        unit: "4W".into(),
        subject: baton_core::Subject {
            reference: "enc".into(),
            label: "Bed 1".into(),
        },
        acuity: None,
        note: None,
    };
    let err = TaskDoc::create(
        &t,
        new,
        &transport.author,
        &mut transport.clock,
        T0,
        automerge::ActorId::random(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::Refused(Refusal::NotPermitted {
                kind: EventKind::Created,
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn claimed_takes_ownership_and_acknowledges() {
    let (t, mut doc, _, mut dr) = consult();
    dr.act(&mut doc, &t, T0 + MINUTE, EventBody::Claimed {});
    let s = state(&doc, &t);
    assert_eq!(
        s.owner.as_ref().map(|o| (o.user.as_str(), o.since)),
        Some(("dr.fox", T0 + MINUTE))
    );
    assert!(s.acknowledged.is_some());
    assert!(!s.deadlines.iter().any(|d| d.cause == Cause::Acknowledgment));
    let mut other = Person::new("dr.gray", "physician");
    assert_eq!(
        refusal(other.try_act(&mut doc, &t, T0 + 2 * MINUTE, EventBody::Claimed {})),
        Refusal::AlreadyOwned {
            owner: "dr.fox".into()
        }
    );
    // A nurse may not claim a physician's consult.
    let (t, mut doc, mut nurse, _) = consult();
    assert!(matches!(
        refusal(nurse.try_act(&mut doc, &t, T0 + 1, EventBody::Claimed {})),
        Refusal::NotPermitted { .. }
    ));
}

#[test]
fn assigned_and_reassigned_by_a_supervisor_need_a_fresh_acknowledgment() {
    let (t, mut doc, _, mut dr) = consult();
    let mut charge = Person::new("cn.hill", "charge_nurse");
    charge.act(
        &mut doc,
        &t,
        T0 + MINUTE,
        EventBody::Assigned {
            user: "dr.fox".into(),
            role: "physician".into(),
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.owner.as_ref().map(|o| o.user.as_str()), Some("dr.fox"));
    assert!(s.acknowledged.is_none());
    assert_eq!(
        s.deadlines.first().map(|d| (d.at, &d.cause)),
        Some((T0 + MINUTE + 30 * MINUTE, &Cause::Acknowledgment)),
        "the window restarts at assignment"
    );
    assert_eq!(
        refusal(charge.try_act(
            &mut doc,
            &t,
            T0 + 2 * MINUTE,
            EventBody::Assigned {
                user: "dr.gray".into(),
                role: "physician".into()
            }
        )),
        Refusal::AlreadyOwned {
            owner: "dr.fox".into()
        }
    );
    assert!(matches!(
        refusal(charge.try_act(
            &mut doc,
            &t,
            T0 + 2 * MINUTE,
            EventBody::Reassigned {
                user: "rn.x".into(),
                role: "nurse".into(),
                reason: None
            }
        )),
        Refusal::WrongOwnerRole { .. }
    ));
    assert_eq!(
        refusal(charge.try_act(
            &mut doc,
            &t,
            T0 + 2 * MINUTE,
            EventBody::Reassigned {
                user: "dr.fox".into(),
                role: "physician".into(),
                reason: None
            }
        )),
        Refusal::SameOwner {
            user: "dr.fox".into()
        }
    );
    dr.act(&mut doc, &t, T0 + 3 * MINUTE, EventBody::Acknowledged {});
    charge.act(
        &mut doc,
        &t,
        T0 + 4 * MINUTE,
        EventBody::Reassigned {
            user: "dr.gray".into(),
            role: "physician".into(),
            reason: Some("dr.fox in theatre".into()),
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.owner.as_ref().map(|o| o.user.as_str()), Some("dr.gray"));
    assert!(
        s.acknowledged.is_none(),
        "a new owner must acknowledge again"
    );
    // A physician may not reassign: supervisors do.
    assert!(matches!(
        refusal(dr.try_act(
            &mut doc,
            &t,
            T0 + 5 * MINUTE,
            EventBody::Reassigned {
                user: "dr.fox".into(),
                role: "physician".into(),
                reason: None
            }
        )),
        Refusal::NotPermitted { .. }
    ));
}

#[test]
fn acknowledged_only_by_the_owner_and_only_once() {
    let (t, mut doc, _, mut dr) = consult();
    let mut charge = Person::new("cn.hill", "charge_nurse");
    charge.act(
        &mut doc,
        &t,
        T0 + MINUTE,
        EventBody::Assigned {
            user: "dr.fox".into(),
            role: "physician".into(),
        },
    );
    let mut other = Person::new("dr.gray", "physician");
    assert_eq!(
        refusal(other.try_act(&mut doc, &t, T0 + 2 * MINUTE, EventBody::Acknowledged {})),
        Refusal::NotOwner {
            owner: "dr.fox".into()
        }
    );
    let ack = dr.act(&mut doc, &t, T0 + 3 * MINUTE, EventBody::Acknowledged {});
    let s = state(&doc, &t);
    let a = s.acknowledged.as_ref().expect("acknowledged");
    assert_eq!(
        (a.user.as_str(), a.at, a.device_time, &a.event),
        ("dr.fox", T0 + 3 * MINUTE, T0 + 3 * MINUTE, &ack.id)
    );
    assert_eq!(
        refusal(dr.try_act(&mut doc, &t, T0 + 4 * MINUTE, EventBody::Acknowledged {})),
        Refusal::AlreadyAcknowledged {
            by: "dr.fox".into()
        }
    );
}

#[test]
fn step_started_marks_progress_in_sequence() {
    let (t, mut doc, _, mut dr) = consult();
    assert!(matches!(
        refusal(dr.try_act(
            &mut doc,
            &t,
            T0 + 1,
            EventBody::StepStarted {
                step: "seen".into()
            }
        )),
        Refusal::OutOfSequence { .. }
    ));
    assert_eq!(
        refusal(dr.try_act(
            &mut doc,
            &t,
            T0 + 1,
            EventBody::StepStarted {
                step: "nope".into()
            }
        )),
        Refusal::UnknownStep {
            step: "nope".into()
        }
    );
    dr.act(
        &mut doc,
        &t,
        T0 + 1,
        EventBody::StepStarted {
            step: "request".into(),
        },
    );
    let s = state(&doc, &t);
    let step = s.step(&"request".into()).expect("step");
    assert_eq!(step.status, StepStatus::InProgress);
    assert_eq!(step.started_by, Some(Actor::new("dr.fox", "physician")));
}

#[test]
fn step_completed_checks_sequence_role_and_every_field_type() {
    let (t, mut doc, _, mut dr) = consult();
    let complete = |fields| EventBody::StepCompleted {
        step: "request".into(),
        fields,
    };
    let r = refusal(dr.try_act(
        &mut doc,
        &t,
        T0 + 1,
        complete(fields! { "question" => FieldValue::Text("q".into()) }),
    ));
    assert_eq!(
        r,
        Refusal::MissingField {
            step: "request".into(),
            field: "urgency".into()
        }
    );
    let r = refusal(dr.try_act(&mut doc, &t, T0 + 1, complete(fields! { "question" => FieldValue::Text("q".into()), "urgency" => FieldValue::Text("whenever".into()) })));
    assert!(
        matches!(&r, Refusal::BadField { field, problem, .. } if field == "urgency" && problem.contains("not one of")),
        "{r:?}"
    );
    let r = refusal(dr.try_act(&mut doc, &t, T0 + 1, complete(fields! { "question" => FieldValue::Int(3), "urgency" => FieldValue::Text("stat".into()) })));
    assert!(
        matches!(&r, Refusal::BadField { field, problem, .. } if field == "question" && problem == "expected text"),
        "{r:?}"
    );
    let mut extra = request_fields();
    extra.insert("mood".into(), FieldValue::Bool(true));
    assert!(matches!(
        refusal(dr.try_act(&mut doc, &t, T0 + 1, complete(extra))),
        Refusal::UnknownField { .. }
    ));
    let mut nurse = Person::new("rn.evans", "nurse");
    assert!(matches!(
        refusal(nurse.try_act(&mut doc, &t, T0 + 1, complete(request_fields()))),
        Refusal::NotPermitted { .. }
    ));
    dr.act(&mut doc, &t, T0 + 2, complete(request_fields()));
    assert_eq!(
        refusal(dr.try_act(&mut doc, &t, T0 + 3, complete(request_fields()))),
        Refusal::StepAlreadyCompleted {
            step: "request".into()
        }
    );

    // Timestamps are integer milliseconds; booleans are booleans; numbers respect bounds.
    let seen = |v| EventBody::StepCompleted {
        step: "seen".into(),
        fields: fields! { "seen_at" => v },
    };
    assert!(matches!(
        refusal(dr.try_act(&mut doc, &t, T0 + 4, seen(FieldValue::Text("09:00".into())))),
        Refusal::BadField { .. }
    ));
    assert!(matches!(
        refusal(dr.try_act(&mut doc, &t, T0 + 4, seen(FieldValue::Int(-5)))),
        Refusal::BadField { .. }
    ));
    dr.act(&mut doc, &t, T0 + 4, seen(FieldValue::Int(T0)));
    let rec = |v| EventBody::StepCompleted {
        step: "recommendation".into(),
        fields: fields! { "recommendation" => FieldValue::Text("ok".into()), "follow_up_needed" => v },
    };
    assert!(matches!(
        refusal(dr.try_act(&mut doc, &t, T0 + 5, rec(FieldValue::Int(1)))),
        Refusal::BadField { .. }
    ));

    let mut ph = Person::new("ph.chen", "pharmacist");
    let d = template("discharge");
    let mut md = Person::new("dr.adams", "physician");
    let mut ddoc = md.create(&d, T0);
    md.act(&mut ddoc, &d, T0 + 1, EventBody::StepCompleted {
        step: "order_placed".into(),
        fields: fields! { "order_time" => FieldValue::Int(T0), "disposition" => FieldValue::Text("home".into()) },
    });
    let medrec = |n| EventBody::StepCompleted {
        step: "medication_reconciliation".into(),
        fields: fields! { "discrepancies" => n },
    };
    let r = refusal(ph.try_act(&mut ddoc, &d, T0 + 2, medrec(FieldValue::Int(101))));
    assert!(
        matches!(&r, Refusal::BadField { problem, .. } if problem.contains("outside")),
        "{r:?}"
    );
    assert!(matches!(
        refusal(ph.try_act(&mut ddoc, &d, T0 + 2, medrec(FieldValue::Number(f64::NAN)))),
        Refusal::BadField { .. }
    ));
    ph.act(&mut ddoc, &d, T0 + 2, medrec(FieldValue::Number(2.0)));
    dr.act(&mut doc, &t, T0 + 6, rec(FieldValue::Bool(true)));
    assert_eq!(state(&doc, &t).status, Status::Completed);
}

#[test]
fn waiting_and_resumed_follow_the_template() {
    let t = template("nonformulary_med");
    let mut ph = Person::new("ph.chen", "pharmacist");
    let mut nurse = Person::new("rn.evans", "nurse");
    let mut doc = ph.create(&t, T0);
    // Nothing to wait on before the step that waits on family is current.
    let r = refusal(nurse.try_act(
        &mut doc,
        &t,
        T0 + 1,
        EventBody::Waiting {
            on: "family".into(),
            reason: None,
            follow_up_at: None,
            step: None,
            transfer: None,
        },
    ));
    assert!(matches!(r, Refusal::UnknownWait { .. }), "{r:?}");
    assert_eq!(
        refusal(nurse.try_act(
            &mut doc,
            &t,
            T0 + 1,
            EventBody::Resumed {
                note: None,
                wait: None,
                confirmation: None,
            }
        )),
        Refusal::NotWaiting
    );
    nurse.act(&mut doc, &t, T0 + 2, EventBody::StepCompleted {
        step: "family_contacted".into(),
        fields: fields! { "method" => FieldValue::Text("phone".into()), "contacted_at" => FieldValue::Int(T0) },
    });
    assert_eq!(
        refusal(nurse.try_act(
            &mut doc,
            &t,
            T0 + HOUR,
            EventBody::Waiting {
                on: "family".into(),
                reason: None,
                follow_up_at: Some(T0),
                step: None,
                transfer: None,
            }
        )),
        Refusal::FollowUpInPast
    );
    nurse.act(
        &mut doc,
        &t,
        T0 + HOUR,
        EventBody::Waiting {
            on: "family".into(),
            reason: None,
            follow_up_at: Some(T0 + 2 * HOUR),
            step: None,
            transfer: None,
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.status, Status::Waiting);
    let w = &s.waits[0];
    assert_eq!(
        (w.on.as_str(), w.step.as_str(), w.since, w.follow_up_at),
        ("family", "medication_arrived", T0 + HOUR, T0 + 2 * HOUR)
    );
    assert!(
        !s.deadlines
            .iter()
            .any(|d| matches!(d.cause, Cause::Step(_) | Cause::FollowUp(_))),
        "the wait pauses its step's due time; its follow-up is a deadline only once prompted"
    );
    // Waiting again on the same party records the follow-up and replaces the wait.
    nurse.act(
        &mut doc,
        &t,
        T0 + HOUR + 1,
        EventBody::Waiting {
            on: "family".into(),
            reason: Some("called again; coming at five".into()),
            follow_up_at: None,
            step: None,
            transfer: None,
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.waits.len(), 1, "{:?}", s.waits);
    assert_eq!(s.waits[0].follow_up_at, T0 + HOUR + 1 + 4 * HOUR);
    nurse.act(
        &mut doc,
        &t,
        T0 + 90 * MINUTE,
        EventBody::Resumed {
            note: None,
            wait: None,
            confirmation: None,
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.status, Status::Open);
    assert!(s.waits.is_empty());
}

#[test]
fn notes_are_open_to_every_role_of_the_template_even_after_closing() {
    let (t, mut doc, mut nurse, mut dr) = consult();
    nurse.act(
        &mut doc,
        &t,
        T0 + 1,
        EventBody::Note {
            text: "family at bedside".into(),
        },
    );
    assert!(matches!(
        refusal(nurse.try_act(&mut doc, &t, T0 + 2, EventBody::Note { text: "   ".into() })),
        Refusal::BadText { .. }
    ));
    assert!(matches!(
        refusal(nurse.try_act(
            &mut doc,
            &t,
            T0 + 2,
            EventBody::Note {
                text: "x".repeat(4_001)
            }
        )),
        Refusal::BadText { .. }
    ));
    let mut outsider = Person::new("tr.diaz", "transport");
    assert!(matches!(
        refusal(outsider.try_act(&mut doc, &t, T0 + 2, EventBody::Note { text: "hi".into() })),
        Refusal::NotPermitted { .. }
    ));
    let mut charge = Person::new("cn.hill", "charge_nurse");
    charge.act(
        &mut doc,
        &t,
        T0 + 3,
        EventBody::Cancelled {
            reason: "patient transferred".into(),
        },
    );
    dr.act(
        &mut doc,
        &t,
        T0 + 4,
        EventBody::Note {
            text: "seen before transfer".into(),
        },
    );
    assert!(matches!(
        refusal(dr.try_act(&mut doc, &t, T0 + 5, EventBody::Claimed {})),
        Refusal::Closed {
            status: Status::Cancelled
        }
    ));
    assert_eq!(state(&doc, &t).history.len(), 4);
}

#[test]
fn handoff_offered_accepted_and_declined_move_ownership_only_on_acceptance() {
    let t = template("discharge");
    let mut md = Person::new("dr.adams", "physician");
    let mut cm1 = Person::new("cm.brown", "case_manager");
    let mut cm2 = Person::new("cm.green", "case_manager");
    let mut doc = md.create(&t, T0);
    let to = Actor::new("cm.green", "case_manager");
    assert_eq!(
        refusal(cm1.try_act(
            &mut doc,
            &t,
            T0 + 1,
            EventBody::HandoffOffered {
                to: to.clone(),
                item: None,
                note: None
            }
        )),
        Refusal::NotOwned
    );
    cm1.act(&mut doc, &t, T0 + 2, EventBody::Claimed {});
    assert!(matches!(
        refusal(cm1.try_act(
            &mut doc,
            &t,
            T0 + 3,
            EventBody::HandoffOffered {
                to: Actor::new("rn.x", "nurse"),
                item: None,
                note: None
            }
        )),
        Refusal::BadHandoffTarget { .. }
    ));
    let offer = cm1.act(
        &mut doc,
        &t,
        T0 + 3,
        EventBody::HandoffOffered {
            to: to.clone(),
            item: None,
            note: Some("end of my shift".into()),
        },
    );
    assert!(matches!(
        refusal(cm1.try_act(
            &mut doc,
            &t,
            T0 + 4,
            EventBody::HandoffOffered {
                to: to.clone(),
                item: None,
                note: None
            }
        )),
        Refusal::HandoffAlreadyPending { .. }
    ));
    assert_eq!(
        state(&doc, &t).owner.as_ref().map(|o| o.user.as_str()),
        Some("cm.brown"),
        "nothing moves until accepted"
    );
    let mut cm3 = Person::new("cm.white", "case_manager");
    assert!(matches!(
        refusal(cm3.try_act(
            &mut doc,
            &t,
            T0 + 5,
            EventBody::HandoffAccepted {
                offer: offer.id.clone()
            }
        )),
        Refusal::NotOfferedToYou { .. }
    ));
    cm2.act(
        &mut doc,
        &t,
        T0 + 6,
        EventBody::HandoffDeclined {
            offer: offer.id.clone(),
            reason: Some("already at capacity".into()),
        },
    );
    assert!(matches!(
        refusal(cm2.try_act(
            &mut doc,
            &t,
            T0 + 7,
            EventBody::HandoffAccepted {
                offer: offer.id.clone()
            }
        )),
        Refusal::OfferSettled { .. }
    ));
    assert!(matches!(
        state(&doc, &t).handoff(&offer.id).map(|h| &h.status),
        Some(HandoffStatus::Declined { .. })
    ));
    let offer2 = cm1.act(
        &mut doc,
        &t,
        T0 + 8,
        EventBody::HandoffOffered {
            to,
            item: None,
            note: None,
        },
    );
    cm2.act(
        &mut doc,
        &t,
        T0 + 9,
        EventBody::HandoffAccepted {
            offer: offer2.id.clone(),
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.owner.as_ref().map(|o| o.user.as_str()), Some("cm.green"));
    assert_eq!(
        s.acknowledged.as_ref().map(|a| a.user.as_str()),
        Some("cm.green"),
        "accepting is acknowledging"
    );
    assert_eq!(
        refusal(cm2.try_act(
            &mut doc,
            &t,
            T0 + 10,
            EventBody::HandoffAccepted {
                offer: "missing".into()
            }
        )),
        Refusal::UnknownOffer {
            offer: "missing".into()
        }
    );
}

#[test]
fn escalated_manually_goes_one_level_at_a_time_and_time_escalations_are_the_servers() {
    let (t, mut doc, mut nurse, _) = consult();
    let to = EscalationTo {
        role: "charge_nurse".into(),
        user: None,
    };
    let manual = |level| EventBody::Escalated {
        level,
        reason: EscalationReason::Manual,
        to: to.clone(),
        cause: None,
        round: 0,
    };
    let r = refusal(nurse.try_act(&mut doc, &t, T0 + 1, manual(2)));
    assert!(matches!(r, Refusal::BadEscalationLevel { .. }), "{r:?}");
    nurse.act(&mut doc, &t, T0 + 1, manual(1));
    assert_eq!(state(&doc, &t).escalation_level, 1);
    let time = EventBody::Escalated {
        level: 2,
        reason: EscalationReason::Time,
        to: to.clone(),
        cause: None,
        round: 0,
    };
    assert_eq!(
        refusal(nurse.try_act(&mut doc, &t, T0 + 2, time.clone())),
        Refusal::ServerOnly {
            kind: EventKind::Escalated
        }
    );
    let mut clock = HlcClock::new();
    doc.append(&t, &Author::system("node-1"), &mut clock, T0 + 3, time)
        .expect("server escalation");
    let s = state(&doc, &t);
    assert_eq!(s.escalation_level, 2);
    assert_eq!(s.escalations.len(), 2);
    assert_eq!(
        refusal(nurse.try_act(&mut doc, &t, T0 + 4, manual(3))),
        Refusal::BadEscalationLevel {
            level: 3,
            levels: 2
        }
    );
    // The server may not pose as a person.
    let r = doc.append(
        &t,
        &Author::system("node-1"),
        &mut clock,
        T0 + 5,
        EventBody::Acknowledged {},
    );
    assert!(matches!(
        r,
        Err(AppendError::Refused(Refusal::NotPermitted { .. }))
    ));
}

#[test]
fn exceptions_are_raised_by_anyone_involved_and_resolved_by_the_alerted_role() {
    let (t, mut doc, mut nurse, mut dr) = consult();
    let raised = nurse.act(
        &mut doc,
        &t,
        T0 + 1,
        EventBody::ExceptionRaised {
            rule: None,
            alert_role: "charge_nurse".into(),
            reason: "patient deteriorating".into(),
            resolution: None,
        },
    );
    assert!(matches!(
        refusal(nurse.try_act(
            &mut doc,
            &t,
            T0 + 2,
            EventBody::ExceptionRaised {
                rule: Some("consult_unanswered".into()),
                alert_role: "charge_nurse".into(),
                reason: "x".into(),
                resolution: None,
            }
        )),
        Refusal::ServerOnly { .. }
    ));
    assert!(matches!(
        refusal(nurse.try_act(
            &mut doc,
            &t,
            T0 + 2,
            EventBody::ExceptionRaised {
                rule: None,
                alert_role: "janitor".into(),
                reason: "x".into(),
                resolution: None,
            }
        )),
        Refusal::UnknownRole { .. }
    ));
    let s = state(&doc, &t);
    assert_eq!(s.open_exceptions().count(), 1);
    assert!(matches!(
        refusal(dr.try_act(
            &mut doc,
            &t,
            T0 + 3,
            EventBody::ExceptionResolved {
                exception: raised.id.clone(),
                note: None
            }
        )),
        Refusal::NotPermitted { .. }
    ));
    let mut charge = Person::new("cn.hill", "charge_nurse");
    charge.act(
        &mut doc,
        &t,
        T0 + 4,
        EventBody::ExceptionResolved {
            exception: raised.id.clone(),
            note: Some("rapid response called".into()),
        },
    );
    assert!(matches!(
        refusal(charge.try_act(
            &mut doc,
            &t,
            T0 + 5,
            EventBody::ExceptionResolved {
                exception: raised.id.clone(),
                note: None
            }
        )),
        Refusal::ExceptionAlreadyResolved { .. }
    ));
    assert_eq!(state(&doc, &t).open_exceptions().count(), 0);
}

#[test]
fn acuity_changes_rescale_every_window() {
    let (t, mut doc, mut nurse, _) = consult();
    assert_eq!(state(&doc, &t).deadlines[0].at, T0 + 30 * MINUTE);
    nurse.act(
        &mut doc,
        &t,
        T0 + MINUTE,
        EventBody::AcuityChanged {
            acuity: "urgent".into(),
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.acuity, "urgent");
    assert_eq!(
        s.deadlines[0].at,
        T0 + 15 * MINUTE,
        "urgent halves the acknowledgment window"
    );
    assert_eq!(
        refusal(nurse.try_act(
            &mut doc,
            &t,
            T0 + 2,
            EventBody::AcuityChanged {
                acuity: "urgent".into()
            }
        )),
        Refusal::SameAcuity {
            acuity: "urgent".into()
        }
    );
    assert!(matches!(
        refusal(nurse.try_act(
            &mut doc,
            &t,
            T0 + 2,
            EventBody::AcuityChanged {
                acuity: "meh".into()
            }
        )),
        Refusal::UnknownAcuity { .. }
    ));
}

#[test]
fn cancelled_closes_the_task_with_a_reason() {
    let (t, mut doc, mut nurse, _) = consult();
    assert!(matches!(
        refusal(nurse.try_act(
            &mut doc,
            &t,
            T0 + 1,
            EventBody::Cancelled { reason: "".into() }
        )),
        Refusal::BadText { .. }
    ));
    nurse.act(
        &mut doc,
        &t,
        T0 + 1,
        EventBody::Cancelled {
            reason: "entered on wrong patient".into(),
        },
    );
    let s = state(&doc, &t);
    assert_eq!((s.status, s.closed_at), (Status::Cancelled, Some(T0 + 1)));
    assert!(s.deadlines.is_empty());
}

#[test]
fn completed_closes_once_required_steps_are_done() {
    let t = template("discharge");
    let mut md = Person::new("dr.adams", "physician");
    let mut cm = Person::new("cm.brown", "case_manager");
    let mut doc = md.create(&t, T0);
    cm.act(&mut doc, &t, T0 + 1, EventBody::Claimed {});
    let r = refusal(cm.try_act(&mut doc, &t, T0 + 2, EventBody::Completed { note: None }));
    assert!(
        matches!(&r, Refusal::StepsIncomplete { steps } if steps.len() == 5),
        "{r:?}"
    );
}

#[test]
fn default_permissions_follow_the_template_roles() {
    let t = template("discharge");
    let names = |kind| {
        permitted_roles(&t, kind)
            .into_iter()
            .map(|r| r.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(EventKind::Claimed), ["case_manager"]);
    assert_eq!(names(EventKind::Reassigned), ["charge_nurse"]);
    assert_eq!(
        names(EventKind::Created),
        ["case_manager", "charge_nurse", "physician"]
    );
    assert_eq!(
        names(EventKind::StepCompleted),
        ["nurse", "pharmacist", "physician", "transport"]
    );
}

#[test]
fn the_permission_check_agrees_with_the_listed_roles() {
    let outsider = baton_core::ids::Role::from("visitor");
    let registry = baton_core::TemplateRegistry::shipped();
    for t in registry.iter().map(|t| &**t) {
        let mut roles: Vec<baton_core::ids::Role> = t.roles().into_iter().cloned().collect();
        roles.push(outsider.clone());
        for kind in EventKind::ALL {
            let listed = permitted_roles(t, kind);
            for role in &roles {
                assert_eq!(
                    is_permitted(t, kind, role),
                    listed.contains(&role),
                    "{} {kind} {role}",
                    t.id
                );
            }
        }
    }
}

// --- Concurrency: actions taken offline on two phones, merged. -------------------------------

#[test]
fn two_nurses_claim_offline_the_earlier_wins_and_the_other_is_a_conflict() {
    let t = template("nonformulary_med");
    let mut ph = Person::new("ph.chen", "pharmacist");
    let mut a = Person::new("rn.a", "nurse");
    let mut b = Person::new("rn.b", "nurse");
    let mut doc_a = ph.create(&t, T0);
    let mut doc_b = replica(&doc_a);
    let claim_a = a.act(&mut doc_a, &t, T0 + 2 * MINUTE, EventBody::Claimed {});
    let claim_b = b.act(&mut doc_b, &t, T0 + 3 * MINUTE, EventBody::Claimed {});
    doc_a.merge(&mut doc_b).expect("merge");
    doc_b.merge(&mut doc_a).expect("merge");
    let s = state(&doc_a, &t);
    assert_eq!(s, state(&doc_b, &t), "both phones see the same outcome");
    assert_eq!(s.owner.as_ref().map(|o| o.user.as_str()), Some("rn.a"));
    assert_eq!(s.conflicts.len(), 1);
    let c = &s.conflicts[0];
    assert_eq!(
        (&c.event, &c.lost_to),
        (&claim_b.id, &Some(claim_a.id.clone()))
    );
    assert_eq!(
        c.refusal,
        Refusal::AlreadyOwned {
            owner: "rn.a".into()
        }
    );
    assert_eq!(
        s.history
            .iter()
            .find(|h| h.event == claim_b.id)
            .map(|h| h.outcome),
        Some(Outcome::Conflict),
        "kept in history, not dropped"
    );
}

#[test]
fn a_step_completed_twice_offline_keeps_the_first_and_lists_the_second() {
    let t = template("nonformulary_med");
    let mut ph = Person::new("ph.chen", "pharmacist");
    let mut a = Person::new("rn.a", "nurse");
    let mut b = Person::new("rn.b", "nurse");
    let mut doc_a = ph.create(&t, T0);
    let mut doc_b = replica(&doc_a);
    let body = |method: &str| EventBody::StepCompleted {
        step: "family_contacted".into(),
        fields: fields! { "method" => FieldValue::Text(method.into()), "contacted_at" => FieldValue::Int(T0) },
    };
    a.act(&mut doc_a, &t, T0 + 5 * MINUTE, body("phone"));
    let second = b.act(&mut doc_b, &t, T0 + 6 * MINUTE, body("in_person"));
    doc_a.merge(&mut doc_b).expect("merge");
    let s = state(&doc_a, &t);
    let done = s
        .step(&"family_contacted".into())
        .and_then(|s| s.completed.as_ref())
        .expect("done");
    assert_eq!(
        done.fields.get("method"),
        Some(&FieldValue::Text("phone".into()))
    );
    assert_eq!(s.conflicts.len(), 1);
    assert_eq!(s.conflicts[0].event, second.id);
    assert_eq!(s.conflicts[0].lost_to, Some(done.event.clone()));
}

#[test]
fn completion_and_cancellation_offline_the_earlier_closes_the_task() {
    let t = template("consult");
    let mut nurse = Person::new("rn.evans", "nurse");
    let mut dr = Person::new("dr.fox", "physician");
    let mut doc = nurse.create(&t, T0);
    let steps = [
        ("request", request_fields()),
        ("seen", fields! { "seen_at" => FieldValue::Int(T0) }),
    ];
    for (i, (step, fields)) in steps.into_iter().enumerate() {
        dr.act(
            &mut doc,
            &t,
            T0 + i as i64 + 1,
            EventBody::StepCompleted {
                step: step.into(),
                fields,
            },
        );
    }
    let mut other = replica(&doc);
    let cancel = nurse.act(
        &mut other,
        &t,
        T0 + HOUR,
        EventBody::Cancelled {
            reason: "patient discharged".into(),
        },
    );
    let finish = dr.act(&mut doc, &t, T0 + 2 * HOUR, EventBody::StepCompleted {
        step: "recommendation".into(),
        fields: fields! { "recommendation" => FieldValue::Text("none".into()), "follow_up_needed" => FieldValue::Bool(false) },
    });
    doc.merge(&mut other).expect("merge");
    let s = state(&doc, &t);
    assert_eq!(s.status, Status::Cancelled);
    assert_eq!(s.conflicts.len(), 1);
    assert_eq!(s.conflicts[0].event, finish.id);
    assert_eq!(
        s.conflicts[0].refusal,
        Refusal::Closed {
            status: Status::Cancelled
        }
    );
    assert_eq!(s.conflicts[0].lost_to, Some(cancel.id));
}

#[test]
fn a_reassignment_while_the_owner_completes_both_hold() {
    let t = template("nonformulary_med");
    let mut ph = Person::new("ph.chen", "pharmacist");
    let mut a = Person::new("rn.a", "nurse");
    let mut charge = Person::new("cn.hill", "charge_nurse");
    let mut doc = ph.create(&t, T0);
    a.act(&mut doc, &t, T0 + 1, EventBody::Claimed {});
    let mut other = replica(&doc);
    charge.act(
        &mut other,
        &t,
        T0 + 10 * MINUTE,
        EventBody::Reassigned {
            user: "rn.b".into(),
            role: "nurse".into(),
            reason: None,
        },
    );
    a.act(&mut doc, &t, T0 + 11 * MINUTE, EventBody::StepCompleted {
        step: "family_contacted".into(),
        fields: fields! { "method" => FieldValue::Text("phone".into()), "contacted_at" => FieldValue::Int(T0) },
    });
    doc.merge(&mut other).expect("merge");
    let s = state(&doc, &t);
    assert!(s.conflicts.is_empty(), "{:?}", s.conflicts);
    assert_eq!(s.owner.as_ref().map(|o| o.user.as_str()), Some("rn.b"));
    assert!(
        s.step(&"family_contacted".into())
            .is_some_and(|s| s.completed.is_some())
    );
}

#[test]
fn the_same_event_twice_is_folded_once() {
    let (t, doc, _, _) = consult();
    let mut events = doc.events().expect("events").events;
    events.push(events[0].clone());
    let s = baton_core::fold(&t, doc.meta(), &events);
    assert_eq!(
        s.history.iter().map(|h| h.outcome).collect::<Vec<_>>(),
        [Outcome::Applied, Outcome::Duplicate]
    );
    assert!(s.conflicts.is_empty());
    // Same id, different content: a conflict, whichever copy arrived first.
    let mut forged = events[0].clone();
    forged.body = EventBody::Created {
        note: Some("forged".into()),
    };
    let mut one = vec![events[0].clone(), forged.clone()];
    let a = baton_core::fold(&t, doc.meta(), &one);
    one.reverse();
    let b = baton_core::fold(&t, doc.meta(), &one);
    assert_eq!(a, b);
    assert_eq!(a.conflicts.len(), 1);
    assert!(matches!(
        a.conflicts[0].refusal,
        Refusal::DuplicateId { .. }
    ));
}
