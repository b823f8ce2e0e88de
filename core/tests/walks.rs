//! The four shipped templates, walked end to end.

mod common;

use baton_core::event::{Actor, EventBody, FieldValue, Transfer};
use baton_core::fold::{HandoffStatus, Outcome, Status, StepStatus};
use common::*;

fn text(s: &str) -> FieldValue {
    FieldValue::Text(s.into())
}

#[test]
fn discharge_from_order_to_confirmed_discharge() {
    let t = template("discharge");
    let mut physician = Person::new("dr.adams", "physician");
    let mut case_manager = Person::new("cm.brown", "case_manager");
    let mut pharmacist = Person::new("ph.chen", "pharmacist");
    let mut transport = Person::new("tr.diaz", "transport");
    let mut nurse = Person::new("rn.evans", "nurse");

    let mut doc = physician.create(&t, T0);
    let s = state(&doc, &t);
    assert_eq!(s.status, Status::Open);
    assert_eq!(
        s.current_step.as_ref().map(|s| s.as_str()),
        Some("order_placed")
    );
    assert!(s.owner.is_none() && s.acknowledged.is_none());

    case_manager.act(&mut doc, &t, T0 + 5 * MINUTE, EventBody::Claimed {});
    physician.act(
        &mut doc,
        &t,
        T0 + 10 * MINUTE,
        EventBody::StepCompleted {
            step: "order_placed".into(),
            fields: fields! { "order_time" => FieldValue::Int(T0), "disposition" => text("home") },
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.owner.as_ref().map(|o| o.user.as_str()), Some("cm.brown"));
    assert_eq!(
        s.acknowledged.as_ref().map(|a| a.user.as_str()),
        Some("cm.brown")
    );
    // Three steps open at once after the order; confirmation waits for all three.
    let available: Vec<_> = s
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Available)
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(
        available,
        ["medication_reconciliation", "transport", "family_notified"]
    );
    assert_eq!(
        s.step(&"discharge_confirmed".into()).map(|s| s.status),
        Some(StepStatus::Blocked)
    );

    // Confirming early is refused: sequence is enforced.
    let early = nurse.try_act(
        &mut doc,
        &t,
        T0 + 11 * MINUTE,
        EventBody::StepCompleted {
            step: "discharge_confirmed".into(),
            fields: fields! { "left_unit_at" => FieldValue::Int(T0) },
        },
    );
    assert!(early.unwrap_err().to_string().contains("must wait for"));

    pharmacist.act(
        &mut doc,
        &t,
        T0 + 40 * MINUTE,
        EventBody::StepCompleted {
            step: "medication_reconciliation".into(),
            fields: fields! { "discrepancies" => FieldValue::Int(1), "notes" => text("held lisinopril") },
        },
    );
    transport.act(
        &mut doc,
        &t,
        T0 + 45 * MINUTE,
        EventBody::Waiting {
            on: "transport_vendor".into(),
            reason: Some("no wheelchair van until 14:00".into()),
            follow_up_at: None,
            step: None,
            transfer: Some(Transfer {
                to: "Metro Wheelchair Van".into(),
                contact: Some("dispatch 555-0142".into()),
                documentation: vec!["transport order".into(), "face sheet".into()],
            }),
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.status, Status::Waiting);
    assert_eq!(
        s.waits.first().map(|w| w.follow_up_at),
        Some(T0 + 45 * MINUTE + HOUR)
    );
    transport.act(
        &mut doc,
        &t,
        T0 + 90 * MINUTE,
        EventBody::StepCompleted {
            step: "transport".into(),
            fields: fields! { "mode" => text("wheelchair"), "pickup_at" => FieldValue::Int(T0 + 7 * HOUR) },
        },
    );
    nurse.act(
        &mut doc,
        &t,
        T0 + 2 * HOUR,
        EventBody::StepCompleted {
            step: "family_notified".into(),
            fields: fields! { "contact" => text("daughter, by phone"), "teach_back_done" => FieldValue::Bool(true) },
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.status, Status::Open, "completing a step ends the wait");
    assert_eq!(
        s.current_step.as_ref().map(|s| s.as_str()),
        Some("discharge_confirmed")
    );

    nurse.act(
        &mut doc,
        &t,
        T0 + 7 * HOUR,
        EventBody::StepCompleted {
            step: "discharge_confirmed".into(),
            fields: fields! { "left_unit_at" => FieldValue::Int(T0 + 7 * HOUR) },
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.status, Status::Completed);
    assert_eq!(s.closed_at, Some(T0 + 7 * HOUR));
    assert!(s.deadlines.is_empty());
    assert!(s.conflicts.is_empty());
    assert_eq!(s.history.len(), 8);
    assert!(s.history.iter().all(|h| h.outcome == Outcome::Applied));
    let done = s
        .step(&"medication_reconciliation".into())
        .and_then(|s| s.completed.as_ref())
        .expect("completed");
    assert_eq!(done.by, Actor::new("ph.chen", "pharmacist"));
    assert_eq!(done.fields.get("discrepancies"), Some(&FieldValue::Int(1)));
}

#[test]
fn consult_acknowledged_within_window_then_seen_and_answered() {
    let t = template("consult");
    let mut nurse = Person::new("rn.evans", "nurse");
    let mut consultant = Person::new("dr.fox", "physician");

    let mut doc = nurse.create(&t, T0);
    let s = state(&doc, &t);
    assert_eq!(
        s.deadlines.first().map(|d| d.at),
        Some(T0 + 30 * MINUTE),
        "30 minute acknowledgment window"
    );

    consultant.act(&mut doc, &t, T0 + 12 * MINUTE, EventBody::Acknowledged {});
    let s = state(&doc, &t);
    assert_eq!(
        s.owner.as_ref().map(|o| o.user.as_str()),
        Some("dr.fox"),
        "acknowledging an unowned task takes it"
    );
    assert!(s.escalations.is_empty());

    consultant.act(
        &mut doc,
        &t,
        T0 + 13 * MINUTE,
        EventBody::StepCompleted {
            step: "request".into(),
            fields: fields! { "question" => text("new AF, anticoagulation?"), "urgency" => text("urgent") },
        },
    );
    consultant.act(
        &mut doc,
        &t,
        T0 + 2 * HOUR,
        EventBody::StepCompleted {
            step: "seen".into(),
            fields: fields! { "seen_at" => FieldValue::Int(T0 + 2 * HOUR) },
        },
    );
    consultant.act(
        &mut doc,
        &t,
        T0 + 3 * HOUR,
        EventBody::StepCompleted {
            step: "recommendation".into(),
            fields: fields! { "recommendation" => text("start apixaban 5 mg twice daily"), "follow_up_needed" => FieldValue::Bool(false) },
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.status, Status::Completed);
    assert!(s.conflicts.is_empty());
}

#[test]
fn shift_handoff_incoming_nurse_accepts_each_task() {
    let t = template("shift_handoff");
    let mut outgoing = Person::new("rn.night", "nurse");
    let mut incoming = Person::new("rn.day", "nurse");
    let incoming_actor = Actor::new("rn.day", "nurse");

    let mut doc = outgoing.create(&t, T0);
    outgoing.act(&mut doc, &t, T0 + MINUTE, EventBody::Claimed {});
    outgoing.act(
        &mut doc,
        &t,
        T0 + 5 * MINUTE,
        EventBody::StepCompleted {
            step: "list_open_tasks".into(),
            fields: fields! { "open_tasks" => FieldValue::Int(2), "summary" => text("bed 12 discharge pending transport; bed 14 consult awaiting cardiology") },
        },
    );
    let offer_a = outgoing.act(
        &mut doc,
        &t,
        T0 + 6 * MINUTE,
        EventBody::HandoffOffered {
            to: incoming_actor.clone(),
            item: Some("automerge:task-bed12".into()),
            note: None,
        },
    );
    let offer_b = outgoing.act(
        &mut doc,
        &t,
        T0 + 6 * MINUTE,
        EventBody::HandoffOffered {
            to: incoming_actor.clone(),
            item: Some("automerge:task-bed14".into()),
            note: Some("cardiology paged 06:40".into()),
        },
    );

    // The handoff cannot be signed while an item is still unaccepted.
    incoming.act(
        &mut doc,
        &t,
        T0 + 8 * MINUTE,
        EventBody::HandoffAccepted {
            offer: offer_a.id.clone(),
        },
    );
    let refused = incoming.try_act(
        &mut doc,
        &t,
        T0 + 9 * MINUTE,
        EventBody::StepCompleted {
            step: "accept_all".into(),
            fields: fields! { "accepted_by_incoming" => FieldValue::Bool(true) },
        },
    );
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("handoffs are still pending")
    );
    let s = state(&doc, &t);
    assert_eq!(s.pending_handoffs().count(), 1);
    assert!(
        s.deadlines
            .iter()
            .any(|d| d.cause == baton_core::fold::Cause::Handoff(offer_b.id.clone())),
        "an unaccepted handoff has a deadline"
    );

    incoming.act(
        &mut doc,
        &t,
        T0 + 10 * MINUTE,
        EventBody::HandoffAccepted {
            offer: offer_b.id.clone(),
        },
    );
    incoming.act(
        &mut doc,
        &t,
        T0 + 11 * MINUTE,
        EventBody::StepCompleted {
            step: "accept_all".into(),
            fields: fields! { "accepted_by_incoming" => FieldValue::Bool(true) },
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.status, Status::Completed);
    assert!(
        s.handoffs
            .iter()
            .all(|h| matches!(h.status, HandoffStatus::Accepted { .. }))
    );
    assert_eq!(
        s.owner.as_ref().map(|o| o.user.as_str()),
        Some("rn.night"),
        "item handoffs move the listed tasks, not the handoff itself"
    );
}

#[test]
fn nonformulary_medication_from_alert_to_available() {
    let t = template("nonformulary_med");
    let mut pharmacist = Person::new("ph.chen", "pharmacist");
    let mut nurse = Person::new("rn.evans", "nurse");

    // Alert: pharmacy opens the task; the nurse acknowledges within 15 minutes.
    let mut doc = pharmacist.create(&t, T0);
    assert_eq!(
        state(&doc, &t).deadlines.first().map(|d| d.at),
        Some(T0 + 15 * MINUTE)
    );
    nurse.act(&mut doc, &t, T0 + 4 * MINUTE, EventBody::Acknowledged {});
    nurse.act(
        &mut doc,
        &t,
        T0 + 20 * MINUTE,
        EventBody::StepCompleted { step: "family_contacted".into(), fields: fields! { "method" => text("phone"), "contacted_at" => FieldValue::Int(T0 + 20 * MINUTE) } },
    );
    // Waiting on the family, with the template's 4 hour follow-up.
    nurse.act(
        &mut doc,
        &t,
        T0 + 21 * MINUTE,
        EventBody::Waiting {
            on: "family".into(),
            reason: Some("son bringing it after work".into()),
            follow_up_at: None,
            step: None,
            transfer: None,
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.status, Status::Waiting);
    assert!(
        s.deadlines.is_empty(),
        "the wait replaces the step's due time; its follow-up prompts the owner first: {:?}",
        s.deadlines
    );
    assert_eq!(s.waits[0].follow_up_at, T0 + 21 * MINUTE + 4 * HOUR);

    nurse.act(
        &mut doc,
        &t,
        T0 + 3 * HOUR,
        EventBody::Resumed {
            note: Some("son arrived".into()),
            wait: None,
            confirmation: None,
        },
    );
    nurse.act(
        &mut doc,
        &t,
        T0 + 3 * HOUR + MINUTE,
        EventBody::StepCompleted {
            step: "medication_arrived".into(),
            fields: fields! { "received_from" => text("son"), "quantity" => FieldValue::Int(28) },
        },
    );
    // A nurse cannot verify for pharmacy.
    let refused = nurse.try_act(
        &mut doc,
        &t,
        T0 + 3 * HOUR + 2 * MINUTE,
        EventBody::StepCompleted {
            step: "pharmacy_verified".into(),
            fields: fields! { "identity_confirmed" => FieldValue::Bool(true) },
        },
    );
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("done by a pharmacist")
    );
    pharmacist.act(
        &mut doc,
        &t,
        T0 + 4 * HOUR,
        EventBody::StepCompleted { step: "pharmacy_verified".into(), fields: fields! { "identity_confirmed" => FieldValue::Bool(true), "lot_number" => text("A1234") } },
    );
    nurse.act(
        &mut doc,
        &t,
        T0 + 4 * HOUR + 10 * MINUTE,
        EventBody::StepCompleted {
            step: "available".into(),
            fields: fields! { "location" => text("patient_bin") },
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.status, Status::Completed);
    assert!(s.conflicts.is_empty());
    assert_eq!(s.history.len(), 8);
}
