//! Validation of incoming changes: what a phone (or anyone holding a token) may send.

mod common;

use automerge::{ActorId, Automerge, ObjType, ROOT, ReadDoc, transaction::Transactable};
use baton_core::codec;
use baton_core::event::{EventBody, FieldValue};
use baton_core::rules::Refusal;
use baton_core::validate::{
    Applied, AuthContext, Known, Limits, ValidationError, validate_applied, validate_changes,
    validate_changes_with,
};
use baton_core::{Hlc, TaskDoc, TemplateRegistry};
use common::*;
use serde_json::{Value, json};

fn auth(person: &Person) -> AuthContext {
    AuthContext {
        user: person.author.user.clone(),
        device: person.author.device.clone(),
        roles: vec![person.author.role.clone()],
        units: vec!["4W".into()],
        system: false,
    }
}

/// The verdict on the changes from `before` to `after`; when `before` is a task, the same verdict
/// must come when its fixed fields and events are known in advance, as the server knows them.
fn check(
    before: &Automerge,
    after: &Automerge,
    who: &AuthContext,
) -> Result<Vec<baton_core::Event>, ValidationError> {
    let (templates, now, limits) = (
        TemplateRegistry::shipped(),
        T0 + 10 * HOUR,
        Limits::default(),
    );
    let verdict = validate_changes(before, after, who, &templates, now, &limits);
    if let Ok(task) = TaskDoc::from_automerge(before.clone())
        && let Ok(log) = task.events()
    {
        let heads = before.get_heads();
        let changes = after.get_changes(&heads);
        let applied = Applied {
            before: &heads,
            after,
            changes: &changes,
        };
        let known = Known {
            meta: Some(task.meta()),
            events: Some(&log.events),
        };
        assert_eq!(
            validate_applied(&applied, known, who, &templates, now, &limits),
            verdict,
            "the same verdict when the task is known in advance"
        );
    }
    verdict
}

/// A consult created by a nurse, as the server holds it.
fn server_copy() -> (std::sync::Arc<baton_core::Template>, TaskDoc, Person) {
    let t = template("consult");
    let mut nurse = Person::new("rn.evans", "nurse");
    let doc = nurse.create(&t, T0);
    (t, doc, nurse)
}

/// Append raw JSON as a new event map, the way any Automerge client could.
fn raw_append(doc: &mut Automerge, event: Value) {
    let Value::Object(map) = event else {
        panic!("object")
    };
    let events = match doc.get(ROOT, "events").expect("get") {
        Some((_, id)) => id,
        None => panic!("no events"),
    };
    let at = doc.length(&events);
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        let obj = tx.insert_object(&events, at, ObjType::Map)?;
        codec::write_map(tx, &obj, &map)
    })
    .expect("write");
}

/// A well-formed note event by `user` on `device` with stamp `hlc`.
fn note_json(id: &str, user: &str, role: &str, device: &str, hlc: Hlc) -> Value {
    json!({
        "id": id, "kind": "note", "actor": { "user": user, "role": role }, "device": device,
        "device_time": hlc.wall, "hlc": hlc.to_string(), "payload": { "text": "called family" }
    })
}

fn fork(doc: &TaskDoc) -> Automerge {
    let mut copy = doc.automerge().fork();
    copy.set_actor(ActorId::random());
    copy
}

#[test]
fn a_valid_append_is_accepted_and_returned() {
    let (t, server, _) = server_copy();
    let mut phone = replica(&server);
    let mut dr = Person::new("dr.fox", "physician");
    let ack = dr.act(&mut phone, &t, T0 + MINUTE, EventBody::Acknowledged {});
    let events = check(server.automerge(), phone.automerge(), &auth(&dr)).expect("valid");
    assert_eq!(events, vec![ack]);
    assert_eq!(
        check(phone.automerge(), phone.automerge(), &auth(&dr)),
        Ok(vec![]),
        "nothing new, nothing to check"
    );
}

#[test]
fn a_new_task_is_accepted_on_the_senders_units_only() {
    let (_, created, nurse) = server_copy();
    let empty = Automerge::new();
    let events = check(&empty, created.automerge(), &auth(&nurse)).expect("creation is valid");
    assert_eq!(events.len(), 1);
    let mut elsewhere = auth(&nurse);
    elsewhere.units = vec!["ICU".into()];
    assert_eq!(
        check(&empty, created.automerge(), &elsewhere),
        Err(ValidationError::UnitNotAllowed { unit: "4W".into() })
    );
    // A role that may not open consults cannot create one either.
    let mut transport = auth(&nurse);
    transport.roles = vec!["transport".into()];
    assert!(matches!(
        check(&empty, created.automerge(), &transport),
        Err(ValidationError::Impersonation { field: "role", .. })
    ));
}

#[test]
fn documents_that_are_not_tasks_or_use_unknown_templates_are_refused() {
    let nurse = Person::new("rn.evans", "nurse");
    let mut junk = Automerge::new();
    junk.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.put(ROOT, "hello", "world").map(|_| ())
    })
    .expect("write");
    assert!(matches!(
        check(&Automerge::new(), &junk, &auth(&nurse)),
        Err(ValidationError::NotATask { .. })
    ));

    let (_, doc, nurse) = server_copy();
    let registry = TemplateRegistry::new();
    let r = validate_changes(
        &Automerge::new(),
        doc.automerge(),
        &auth(&nurse),
        &registry,
        T0,
        &Limits::default(),
    );
    assert!(
        matches!(r, Err(ValidationError::UnknownTemplate { .. })),
        "{r:?}"
    );
}

#[test]
fn events_written_in_someone_elses_name_are_refused() {
    let (_, server, nurse) = server_copy();
    let after_hlc = Hlc::new(T0 + MINUTE, 0);
    let cases = [
        (
            note_json("e1", "rn.other", "nurse", "rn.evans-phone", after_hlc),
            "user",
        ),
        (
            note_json("e2", "rn.evans", "nurse", "stolen-phone", after_hlc),
            "device",
        ),
        (
            note_json(
                "e3",
                "rn.evans",
                "charge_nurse",
                "rn.evans-phone",
                after_hlc,
            ),
            "role",
        ),
    ];
    for (event, field) in cases {
        let mut after = fork(&server);
        raw_append(&mut after, event);
        match check(server.automerge(), &after, &auth(&nurse)) {
            Err(ValidationError::Impersonation { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    // The same note in the sender's own name passes.
    let mut after = fork(&server);
    raw_append(
        &mut after,
        note_json("e4", "rn.evans", "nurse", "rn.evans-phone", after_hlc),
    );
    assert_eq!(
        check(server.automerge(), &after, &auth(&nurse)).map(|e| e.len()),
        Ok(1)
    );
}

#[test]
fn editing_an_existing_event_is_refused() {
    let (_, server, nurse) = server_copy();
    let mut after = fork(&server);
    let events = after.get(ROOT, "events").expect("get").expect("events").1;
    let first = after.get(&events, 0).expect("get").expect("event").1;
    after
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(&first, "device_time", 0).map(|_| ())
        })
        .expect("write");
    assert!(matches!(
        check(server.automerge(), &after, &auth(&nurse)),
        Err(ValidationError::NotAnAppend { .. })
    ));
}

#[test]
fn changing_fixed_fields_is_refused() {
    let (_, server, nurse) = server_copy();
    for (key, value) in [
        ("unit", json!("ICU")),
        ("acuity", json!("stat")),
        ("extra", json!(1)),
    ] {
        let mut after = fork(&server);
        after
            .transact::<_, _, automerge::AutomergeError>(|tx| {
                codec::write_map(
                    tx,
                    &ROOT,
                    json!({ key: value }).as_object().expect("object"),
                )
            })
            .expect("write");
        let r = check(server.automerge(), &after, &auth(&nurse));
        assert!(
            matches!(r, Err(ValidationError::NotAnAppend { .. })),
            "{key}: {r:?}"
        );
    }
}

#[test]
fn removing_an_event_is_refused() {
    let (t, mut server, mut nurse) = server_copy();
    nurse.act(
        &mut server,
        &t,
        T0 + 1,
        EventBody::Note { text: "one".into() },
    );
    let mut after = fork(&server);
    let events = after.get(ROOT, "events").expect("get").expect("events").1;
    after
        .transact::<_, _, automerge::AutomergeError>(|tx| tx.delete(&events, 1))
        .expect("delete");
    assert!(matches!(
        check(server.automerge(), &after, &auth(&nurse)),
        Err(ValidationError::NotAnAppend { .. })
    ));
}

#[test]
fn unreadable_events_are_refused() {
    let (_, server, nurse) = server_copy();
    let bad = [
        json!({ "id": "x", "kind": "note" }),
        json!({ "id": "x", "kind": "teleport", "actor": { "user": "rn.evans", "role": "nurse" }, "device": "rn.evans-phone", "device_time": 1, "hlc": Hlc::new(T0 + 1, 0).to_string(), "payload": {} }),
        json!({ "id": "x", "kind": "note", "actor": { "user": "rn.evans", "role": "nurse" }, "device": "rn.evans-phone", "device_time": 1, "hlc": "yesterday", "payload": { "text": "hi" } }),
    ];
    for event in bad {
        let mut after = fork(&server);
        raw_append(&mut after, event.clone());
        let r = check(server.automerge(), &after, &auth(&nurse));
        assert!(
            matches!(r, Err(ValidationError::Unreadable { .. })),
            "{event}: {r:?}"
        );
    }
    // A scalar where an event belongs.
    let mut after = fork(&server);
    let events = after.get(ROOT, "events").expect("get").expect("events").1;
    after
        .transact::<_, _, automerge::AutomergeError>(|tx| tx.insert(&events, 1, 42))
        .expect("insert");
    assert!(matches!(
        check(server.automerge(), &after, &auth(&nurse)),
        Err(ValidationError::Unreadable { .. })
    ));
}

#[test]
fn stamps_must_follow_what_the_author_saw_and_not_run_ahead_of_the_clock() {
    let (_, server, nurse) = server_copy();
    let created = server.events().expect("events").events[0].hlc;
    let mut after = fork(&server);
    raw_append(
        &mut after,
        note_json("old", "rn.evans", "nurse", "rn.evans-phone", created),
    );
    assert!(matches!(
        check(server.automerge(), &after, &auth(&nurse)),
        Err(ValidationError::StampNotAfterSeen { .. })
    ));

    let mut after = fork(&server);
    raw_append(
        &mut after,
        note_json(
            "future",
            "rn.evans",
            "nurse",
            "rn.evans-phone",
            Hlc::new(T0 + 11 * HOUR, 0),
        ),
    );
    assert!(matches!(
        check(server.automerge(), &after, &auth(&nurse)),
        Err(ValidationError::StampInFuture { .. })
    ));
}

#[test]
fn an_event_id_cannot_be_reused() {
    let (_, server, nurse) = server_copy();
    let existing = server.events().expect("events").events[0].id.clone();
    let mut after = fork(&server);
    raw_append(
        &mut after,
        note_json(
            existing.as_str(),
            "rn.evans",
            "nurse",
            "rn.evans-phone",
            Hlc::new(T0 + MINUTE, 0),
        ),
    );
    assert!(matches!(
        check(server.automerge(), &after, &auth(&nurse)),
        Err(ValidationError::DuplicateId { .. })
    ));
}

#[test]
fn the_tasks_rules_apply_to_appended_events() {
    let (_, server, _) = server_copy();
    let dr = Person::new("dr.fox", "physician");
    let mut after = fork(&server);
    raw_append(
        &mut after,
        json!({
            "id": "skip", "kind": "step_completed", "actor": { "user": "dr.fox", "role": "physician" }, "device": "dr.fox-phone",
            "device_time": T0, "hlc": Hlc::new(T0 + MINUTE, 0).to_string(),
            "payload": { "step": "recommendation", "fields": { "recommendation": "x", "follow_up_needed": false } }
        }),
    );
    match check(server.automerge(), &after, &auth(&dr)) {
        Err(ValidationError::Refused {
            refusal: Refusal::OutOfSequence { waiting_for, .. },
            ..
        }) => {
            assert_eq!(waiting_for, vec![baton_core::ids::StepId::from("seen")]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn offline_work_is_judged_by_what_its_author_saw() {
    // The physician works offline; meanwhile the charge nurse cancels on the server.
    let (t, mut server, _) = server_copy();
    let mut phone = replica(&server);
    let mut dr = Person::new("dr.fox", "physician");
    dr.act(&mut phone, &t, T0 + MINUTE, EventBody::Claimed {});
    dr.act(
        &mut phone,
        &t,
        T0 + 2 * MINUTE,
        EventBody::StepCompleted {
            step: "request".into(),
            fields: fields! { "question" => FieldValue::Text("q".into()), "urgency" => FieldValue::Text("routine".into()) },
        },
    );
    let mut charge = Person::new("cn.hill", "charge_nurse");
    charge.act(
        &mut server,
        &t,
        T0 + 90_000,
        EventBody::Cancelled {
            reason: "duplicate request".into(),
        },
    );

    let before = server.automerge().clone();
    let mut merged = server.clone();
    merged.merge(&mut phone).expect("merge");
    let accepted = check(&before, merged.automerge(), &auth(&dr))
        .expect("the physician's offline work is valid");
    assert_eq!(accepted.len(), 2);
    // ... and the fold shows what held: the claim (earlier than the cancel); the step came after.
    let s = state(&merged, &t);
    assert_eq!(s.status, baton_core::fold::Status::Cancelled);
    assert_eq!(s.owner.as_ref().map(|o| o.user.as_str()), Some("dr.fox"));
    assert_eq!(s.conflicts.len(), 1);
}

#[test]
fn a_batch_with_one_bad_event_is_refused_whole() {
    let (t, server, _) = server_copy();
    let mut phone = replica(&server);
    let mut dr = Person::new("dr.fox", "physician");
    dr.act(&mut phone, &t, T0 + MINUTE, EventBody::Claimed {});
    let mut raw = phone.automerge().clone();
    raw.set_actor(ActorId::random());
    raw_append(
        &mut raw,
        note_json(
            "fake",
            "dr.gray",
            "physician",
            "dr.fox-phone",
            Hlc::new(T0 + 3 * MINUTE, 0),
        ),
    );
    assert!(matches!(
        check(server.automerge(), &raw, &auth(&dr)),
        Err(ValidationError::Impersonation { .. })
    ));
}

#[test]
fn strings_written_as_collaborative_text_are_read_like_plain_strings() {
    // The JavaScript Automerge library writes strings as text objects by default.
    let (_, server, nurse) = server_copy();
    let mut after = fork(&server);
    let events = after.get(ROOT, "events").expect("get").expect("events").1;
    let hlc = Hlc::new(T0 + MINUTE, 0).to_string();
    after
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            let ev = tx.insert_object(&events, 1, ObjType::Map)?;
            for (key, value) in [
                ("id", "js-1"),
                ("kind", "note"),
                ("device", "rn.evans-phone"),
                ("hlc", hlc.as_str()),
            ] {
                let text = tx.put_object(&ev, key, ObjType::Text)?;
                tx.splice_text(&text, 0, 0, value)?;
            }
            tx.put(&ev, "device_time", automerge::ScalarValue::Timestamp(T0))?;
            let actor = tx.put_object(&ev, "actor", ObjType::Map)?;
            tx.put(&actor, "user", "rn.evans")?;
            tx.put(&actor, "role", "nurse")?;
            let payload = tx.put_object(&ev, "payload", ObjType::Map)?;
            let text = tx.put_object(&payload, "text", ObjType::Text)?;
            tx.splice_text(&text, 0, 0, "family called back")?;
            Ok(())
        })
        .expect("write");
    let events = check(server.automerge(), &after, &auth(&nurse)).expect("valid");
    assert_eq!(
        events[0].body,
        EventBody::Note {
            text: "family called back".into()
        }
    );
    assert_eq!(events[0].device_time, T0);
}

#[test]
fn conflicting_writes_to_fixed_fields_are_refused() {
    let (_, server, nurse) = server_copy();
    // Two concurrent writes of `unit` (neither overwrites the other) leave a conflict.
    let mut a = fork(&server);
    let mut b = fork(&server);
    for (doc, unit) in [(&mut a, "ICU"), (&mut b, "5E")] {
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(ROOT, "unit", unit).map(|_| ())
        })
        .expect("write");
    }
    a.merge(&mut b).expect("merge");
    assert!(matches!(
        check(server.automerge(), &a, &auth(&nurse)),
        Err(ValidationError::NotAnAppend { .. })
    ));
}

#[test]
fn limits_bound_one_batch() {
    let (t, server, _) = server_copy();
    let mut phone = replica(&server);
    let mut nurse = Person::new("rn.evans", "nurse");
    for i in 0..5 {
        nurse.act(
            &mut phone,
            &t,
            T0 + i,
            EventBody::Note {
                text: format!("note {i}"),
            },
        );
    }
    let limits = Limits {
        max_changes: 3,
        ..Limits::default()
    };
    let r = validate_changes(
        server.automerge(),
        phone.automerge(),
        &auth(&nurse),
        &TemplateRegistry::shipped(),
        T0 + HOUR,
        &limits,
    );
    assert_eq!(
        r,
        Err(ValidationError::TooManyChanges { count: 5, limit: 3 })
    );
    let limits = Limits {
        max_events: 4,
        ..Limits::default()
    };
    let r = validate_changes(
        server.automerge(),
        phone.automerge(),
        &auth(&nurse),
        &TemplateRegistry::shipped(),
        T0 + HOUR,
        &limits,
    );
    assert_eq!(r, Err(ValidationError::TooManyEvents { limit: 4 }));
}

#[test]
fn every_append_through_the_typed_api_passes_validation() {
    let (t, mut doc, mut nurse) = server_copy();
    let mut dr = Person::new("dr.fox", "physician");
    let steps = [
        (true, EventBody::Claimed {}),
        (
            false,
            EventBody::Note {
                text: "bed 4".into(),
            },
        ),
        (
            false,
            EventBody::AcuityChanged {
                acuity: "urgent".into(),
            },
        ),
    ];
    for (by_physician, body) in steps {
        let person = if by_physician { &mut dr } else { &mut nurse };
        let before = doc.automerge().clone();
        let event = person.act(&mut doc, &t, T0 + MINUTE, body);
        assert_eq!(
            check(&before, doc.automerge(), &auth(person)),
            Ok(vec![event])
        );
    }
}

/// `validate_changes_with`, given `before`'s decoded events.
fn check_known(
    before: &Automerge,
    after: &Automerge,
    who: &AuthContext,
) -> Result<Vec<baton_core::Event>, ValidationError> {
    let mut known = TaskDoc::from_automerge(before.clone())
        .expect("task")
        .events()
        .expect("events")
        .events;
    // Any order will do.
    known.reverse();
    validate_changes_with(
        before,
        after,
        Some(&known),
        who,
        &TemplateRegistry::shipped(),
        T0 + 10 * HOUR,
        &Limits::default(),
    )
}

#[test]
fn known_events_give_the_same_verdicts() {
    let (t, mut server, mut nurse) = server_copy();
    for i in 0..3 {
        nurse.act(
            &mut server,
            &t,
            T0 + i,
            EventBody::Note {
                text: format!("note {i}"),
            },
        );
    }
    let mut phone = replica(&server);
    let mut dr = Person::new("dr.fox", "physician");
    let claim = dr.act(&mut phone, &t, T0 + MINUTE, EventBody::Claimed {});
    let ack = dr.act(
        &mut phone,
        &t,
        T0 + 2 * MINUTE,
        EventBody::Note {
            text: "on my way".into(),
        },
    );
    let valid = check_known(server.automerge(), phone.automerge(), &auth(&dr));
    assert_eq!(valid, Ok(vec![claim, ack]));
    assert_eq!(
        valid,
        check(server.automerge(), phone.automerge(), &auth(&dr))
    );

    let last = server.events().expect("events").events[3].hlc;
    let bad = [
        note_json(
            "a",
            "rn.other",
            "nurse",
            "rn.evans-phone",
            Hlc::new(T0 + MINUTE, 0),
        ),
        note_json("b", "rn.evans", "nurse", "rn.evans-phone", last),
        note_json(
            "c",
            "rn.evans",
            "nurse",
            "rn.evans-phone",
            Hlc::new(T0 + 11 * HOUR, 0),
        ),
    ];
    for event in bad {
        let mut after = fork(&server);
        raw_append(&mut after, event.clone());
        let known = check_known(server.automerge(), &after, &auth(&nurse));
        assert!(known.is_err(), "{event}");
        assert_eq!(
            known,
            check(server.automerge(), &after, &auth(&nurse)),
            "{event}"
        );
    }
}

#[test]
fn offline_work_with_known_events_is_judged_by_what_its_author_saw() {
    // As in `offline_work_is_judged_by_what_its_author_saw`, but the server passes the events it
    // holds: the physician's changes were not written on top of them and are read at their deps.
    let (t, mut server, _) = server_copy();
    let mut phone = replica(&server);
    let mut dr = Person::new("dr.fox", "physician");
    dr.act(&mut phone, &t, T0 + MINUTE, EventBody::Claimed {});
    let mut charge = Person::new("cn.hill", "charge_nurse");
    charge.act(
        &mut server,
        &t,
        T0 + 30_000,
        EventBody::Cancelled {
            reason: "duplicate request".into(),
        },
    );
    let before = server.automerge().clone();
    let mut merged = server.clone();
    merged.merge(&mut phone).expect("merge");
    let accepted = check_known(&before, merged.automerge(), &auth(&dr)).expect("valid");
    assert_eq!(accepted.len(), 1);
    assert_eq!(Ok(accepted), check(&before, merged.automerge(), &auth(&dr)));
}

#[test]
fn each_change_of_a_batch_is_judged_with_the_batch_changes_before_it() {
    let (t, server, _) = server_copy();
    let mut phone = replica(&server);
    let mut dr = Person::new("dr.fox", "physician");
    let claim = dr.act(&mut phone, &t, T0 + MINUTE, EventBody::Claimed {});
    // The next change's stamp does not follow the claim its author had just written.
    let mut after = phone.automerge().clone();
    raw_append(
        &mut after,
        note_json("late", "dr.fox", "physician", "dr.fox-phone", claim.hlc),
    );
    assert!(matches!(
        check_known(server.automerge(), &after, &auth(&dr)),
        Err(ValidationError::StampNotAfterSeen { .. })
    ));
    // Nor may it reuse the claim's id.
    let mut after = phone.automerge().clone();
    raw_append(
        &mut after,
        note_json(
            claim.id.as_str(),
            "dr.fox",
            "physician",
            "dr.fox-phone",
            Hlc::new(T0 + 2 * MINUTE, 0),
        ),
    );
    assert_eq!(
        check_known(server.automerge(), &after, &auth(&dr)),
        Err(ValidationError::DuplicateId {
            event: claim.id.clone()
        })
    );
    // The rules see the claim: the owner may now complete the first step.
    let step = dr.act(
        &mut phone,
        &t,
        T0 + 2 * MINUTE,
        EventBody::StepCompleted {
            step: "request".into(),
            fields: fields! { "question" => FieldValue::Text("q".into()), "urgency" => FieldValue::Text("routine".into()) },
        },
    );
    let accepted = check_known(server.automerge(), phone.automerge(), &auth(&dr));
    assert_eq!(accepted, Ok(vec![claim, step]));
    assert_eq!(
        accepted,
        check(server.automerge(), phone.automerge(), &auth(&dr))
    );
}

#[test]
fn editing_an_event_inside_its_nested_maps_is_refused() {
    let (_, server, nurse) = server_copy();
    for field in ["actor", "payload"] {
        let mut after = fork(&server);
        let events = after.get(ROOT, "events").expect("get").expect("events").1;
        let first = after.get(&events, 0).expect("get").expect("event").1;
        after
            .transact::<_, _, automerge::AutomergeError>(|tx| {
                let inner = tx.put_object(&first, field, ObjType::Map)?;
                tx.put(&inner, "user", "rn.other")
            })
            .expect("write");
        assert!(
            matches!(
                check_known(server.automerge(), &after, &auth(&nurse)),
                Err(ValidationError::NotAnAppend { .. })
            ),
            "{field}"
        );
    }
    let mut after = fork(&server);
    let actor = {
        let events = after.get(ROOT, "events").expect("get").expect("events").1;
        let first = after.get(&events, 0).expect("get").expect("event").1;
        after.get(&first, "actor").expect("get").expect("actor").1
    };
    after
        .transact::<_, _, automerge::AutomergeError>(|tx| tx.put(&actor, "role", "charge_nurse"))
        .expect("write");
    assert!(matches!(
        check(server.automerge(), &after, &auth(&nurse)),
        Err(ValidationError::NotAnAppend { .. })
    ));
}

#[test]
fn a_later_change_may_not_edit_an_event_added_earlier_in_the_same_batch() {
    let (_, server, nurse) = server_copy();
    let mut a = fork(&server);
    raw_append(
        &mut a,
        note_json(
            "n1",
            "rn.evans",
            "nurse",
            "rn.evans-phone",
            Hlc::new(T0 + MINUTE, 0),
        ),
    );
    // Two devices that have the note both rewrite its id: a conflict inside the new event.
    let mut b = a.fork();
    b.set_actor(ActorId::random());
    let mut c = a.fork();
    c.set_actor(ActorId::random());
    for (doc, id) in [(&mut b, "n2"), (&mut c, "n3")] {
        let events = doc.get(ROOT, "events").expect("get").expect("events").1;
        let note = doc.get(&events, 1).expect("get").expect("note").1;
        doc.transact::<_, _, automerge::AutomergeError>(|tx| tx.put(&note, "id", id))
            .expect("write");
    }
    b.merge(&mut c).expect("merge");
    for after in [&a, &b] {
        let r = check_known(server.automerge(), after, &auth(&nurse));
        if std::ptr::eq(after, &a) {
            assert_eq!(r.map(|e| e.len()), Ok(1));
        } else {
            assert!(
                matches!(r, Err(ValidationError::NotAnAppend { .. })),
                "{r:?}"
            );
            assert_eq!(r, check(server.automerge(), after, &auth(&nurse)));
        }
    }
}

#[test]
fn a_copy_of_an_existing_event_is_a_reused_id() {
    let (_, server, nurse) = server_copy();
    let created = server.events().expect("events").events[0].clone();
    let mut after = fork(&server);
    raw_append(&mut after, serde_json::to_value(&created).expect("json"));
    assert_eq!(
        check(server.automerge(), &after, &auth(&nurse)),
        Err(ValidationError::DuplicateId { event: created.id })
    );
}

#[test]
fn an_unreadable_event_is_reported_at_its_place_in_the_list() {
    let (t, mut server, mut nurse) = server_copy();
    nurse.act(
        &mut server,
        &t,
        T0 + 1,
        EventBody::Note { text: "one".into() },
    );
    let mut after = fork(&server);
    raw_append(&mut after, json!({ "id": "x", "kind": "note" }));
    match check_known(server.automerge(), &after, &auth(&nurse)) {
        Err(ValidationError::Unreadable { index, .. }) => assert_eq!(index, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn after_the_change_that_creates_a_task_only_appends_follow() {
    let (t, created, mut nurse) = server_copy();
    let empty = Automerge::new();
    // Created and then added to before the first sync: both changes are checked.
    let mut offline = created.clone();
    let note = nurse.act(
        &mut offline,
        &t,
        T0 + 1,
        EventBody::Note { text: "one".into() },
    );
    let accepted = check(&empty, offline.automerge(), &auth(&nurse)).expect("valid");
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[1], note);
    // A later change that rewrites a fixed field is not an append.
    let mut after = fork(&created);
    after
        .transact::<_, _, automerge::AutomergeError>(|tx| tx.put(ROOT, "acuity", "stat"))
        .expect("write");
    assert!(matches!(
        check(&empty, &after, &auth(&nurse)),
        Err(ValidationError::NotAnAppend { .. })
    ));
}

/// `before` with the changes of `phone` merged in: what the server holds once a phone that had
/// synced earlier sends what it wrote since.
fn merged(before: &Automerge, phone: &Automerge) -> Automerge {
    let mut after = before.clone();
    after.merge(&mut phone.clone()).expect("merge");
    after
}

/// Another device's copy of `doc`.
fn device_copy(doc: &Automerge) -> Automerge {
    let mut copy = doc.fork();
    copy.set_actor(ActorId::random());
    copy
}

/// A note by the nurse on her phone, stamped `at`.
fn nurse_note(doc: &mut Automerge, id: &str, at: Hlc) {
    raw_append(
        doc,
        note_json(id, "rn.evans", "nurse", "rn.evans-phone", at),
    );
}

/// A note by the charge nurse, stamped `at`.
fn charge_note(doc: &mut Automerge, id: &str, at: Hlc) {
    raw_append(
        doc,
        note_json(id, "cn.hill", "charge_nurse", "cn.hill-phone", at),
    );
}

#[test]
fn events_the_author_had_not_seen_do_not_count_against_its_work() {
    // The nurse writes offline at 2 minutes; meanwhile the server took a note stamped at 5.
    let (_, server, nurse) = server_copy();
    let mut phone = fork(&server);
    nurse_note(&mut phone, "offline", Hlc::new(T0 + 2 * MINUTE, 0));
    let mut before = fork(&server);
    charge_note(&mut before, "meanwhile", Hlc::new(T0 + 5 * MINUTE, 0));
    let after = merged(&before, &phone);
    let accepted = check_known(&before, &after, &auth(&nurse)).expect("valid");
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].id.as_str(), "offline");
    assert_eq!(Ok(accepted), check(&before, &after, &auth(&nurse)));
}

/// The verdict on a note the nurse stamped `written` on a copy holding `synced`, once the
/// server also holds a note stamped `meanwhile` by `id`; `seen` is the stamp she is held to.
fn judged_beside(synced: &Automerge, written: Hlc, id: &str, meanwhile: Hlc, seen: Hlc) {
    let (_, _, nurse) = server_copy();
    let mut phone = device_copy(synced);
    nurse_note(&mut phone, "offline", written);
    let mut before = synced.clone();
    charge_note(&mut before, id, meanwhile);
    let after = merged(&before, &phone);
    let verdict = check_known(&before, &after, &auth(&nurse));
    match &verdict {
        Err(ValidationError::StampNotAfterSeen { seen: at, .. }) => assert_eq!(*at, seen),
        other => panic!("{other:?}"),
    }
    assert_eq!(verdict, check(&before, &after, &auth(&nurse)));
}

#[test]
fn events_the_author_had_seen_count_beside_those_it_had_not() {
    // The nurse had seen a note stamped at 3 minutes and stamps hers no later; the server also
    // holds a note at 5 minutes she had not seen. She is held to the one she saw.
    let (_, server, _) = server_copy();
    let seen = Hlc::new(T0 + 3 * MINUTE, 0);
    let mut synced = fork(&server);
    charge_note(&mut synced, "seen", seen);
    judged_beside(
        &synced,
        seen,
        "meanwhile",
        Hlc::new(T0 + 5 * MINUTE, 0),
        seen,
    );
}

#[test]
fn an_event_held_twice_is_counted_as_seen_if_either_copy_was() {
    // Two copies of one event (two nodes that fired the same timer): the nurse had seen the
    // first, not the second. Her stamp must follow the copy she saw.
    let (_, server, _) = server_copy();
    let first = Hlc::new(T0 + 3 * MINUTE, 0);
    let mut synced = fork(&server);
    charge_note(&mut synced, "twice", first);
    judged_beside(
        &synced,
        Hlc::new(T0 + 2 * MINUTE, 0),
        "twice",
        Hlc::new(T0 + 6 * MINUTE, 0),
        first,
    );
}

#[test]
fn a_device_cannot_stamp_behind_what_it_has_already_synced_on_a_task() {
    let (_, server, nurse) = server_copy();
    let created = server.events().expect("events").events[0].hlc;
    let later = Hlc::new(created.wall + 2 * HOUR, 0);
    // The nurse's phone syncs a note stamped two hours on.
    let mut synced = fork(&server);
    raw_append(
        &mut synced,
        note_json("late-note", "rn.evans", "nurse", "rn.evans-phone", later),
    );
    assert!(check(server.automerge(), &synced, &auth(&nurse)).is_ok());
    // Then a change written beside it, on the copy from before it (so the note is not in its
    // past), stamped an hour back: what a slow clock or a forger would send.
    let mut beside = fork(&server);
    let back = Hlc::new(created.wall + HOUR, 0);
    raw_append(
        &mut beside,
        note_json("backdated", "rn.evans", "nurse", "rn.evans-phone", back),
    );
    let mut after = synced.fork();
    after.merge(&mut beside).expect("merge");
    match check(&synced, &after, &auth(&nurse)) {
        Err(ValidationError::StampBehindDevice { hlc, synced, .. }) => {
            assert_eq!((hlc, synced), (back, later));
        }
        other => panic!("expected StampBehindDevice, got {other:?}"),
    }
    // Another device's concurrent work at that stamp is offline work, not a refusal.
    let fox = Person::new("dr.fox", "physician");
    let mut theirs = fork(&server);
    raw_append(
        &mut theirs,
        note_json("offline", "dr.fox", "physician", "dr.fox-phone", back),
    );
    let mut after = synced.fork();
    after.merge(&mut theirs).expect("merge");
    assert!(check(&synced, &after, &auth(&fox)).is_ok());
}
