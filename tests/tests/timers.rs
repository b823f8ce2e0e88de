//! Every open task has one timer, at its next due action, written in the same transaction as
//! the changes it follows from: set when a task opens, moved by progress, gone when it closes.
#![allow(clippy::unwrap_used)]

use automerge::Automerge;
use baton_core::policy::escalation::{Due, next_due};
use baton_core::{Author, EventBody, TaskDoc, TemplateRegistry};
use baton_e2e::{Backend, Phone, TestServer, append, listed_task};

baton_e2e::on_both_backends!(a_task_s_timer_follows_its_state);

/// What the core says `doc`'s next due action is.
fn due_of(doc: &Automerge) -> Option<Due> {
    let task = TaskDoc::from_automerge(doc.clone()).unwrap();
    let registry = TemplateRegistry::shipped();
    let template = registry.get(&task.meta().template).unwrap();
    next_due(template, &task.state(template).unwrap())
}

async fn a_task_s_timer_follows_its_state(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.token("cm.garcia", "phone-7", &["case_manager"], &["4W"]);
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let id = listed_task(&mut phone, server.addr(), &token, "4W", "discharge").await;
    let db = server.server().state().db.clone();

    // Imported by the demo, unacknowledged: its timer is the acknowledgment window's end.
    let doc = phone.open(id).await.unwrap();
    let expected = due_of(&doc).expect("an open task has something due");
    let timer = db.timer(&id.to_string()).await.unwrap().expect("a timer");
    assert_eq!(timer.due_at, expected.at);
    assert_eq!(timer.event_id, expected.event_id.to_string());
    assert!(timer.action.contains("escalate"), "{}", timer.action);
    let pending = server.metric("baton_timers_pending").await.unwrap();
    assert!(pending >= 1.0, "{pending}");

    // Acknowledged: the timer moves to what is due next, in the acknowledgment's transaction.
    let owner = Author::new("cm.garcia", "case_manager", "phone-7");
    let (next, _) = append(&doc, &owner, EventBody::Acknowledged {});
    phone.push(id, next).await.unwrap();
    let doc = phone.doc(id).clone();
    let moved = due_of(&doc).expect("steps are due");
    assert_ne!(moved.event_id, expected.event_id);
    let timer = db.timer(&id.to_string()).await.unwrap().expect("a timer");
    assert_eq!(
        (timer.due_at, timer.event_id.as_str()),
        (moved.at, moved.event_id.as_str())
    );

    // Cancelled by the charge nurse: nothing is pending, so the timer is gone.
    let token = server.token("cn.patel", "phone-8", &["charge_nurse"], &["4W"]);
    let mut charge = Phone::connect(server.addr(), &token).await.unwrap();
    let doc = charge.open(id).await.unwrap();
    let supervisor = Author::new("cn.patel", "charge_nurse", "phone-8");
    let (next, _) = append(
        &doc,
        &supervisor,
        EventBody::Cancelled {
            reason: "patient stays".into(),
        },
    );
    charge.push(id, next).await.unwrap();
    assert!(due_of(charge.doc(id)).is_none());
    assert_eq!(db.timer(&id.to_string()).await.unwrap(), None);
    assert_eq!(
        server.metric("baton_timers_pending").await,
        Some(pending - 1.0)
    );
}

baton_e2e::on_both_backends!(a_timer_fires_while_every_phone_is_offline);

fn events_of(doc: &Automerge) -> Vec<baton_core::Event> {
    TaskDoc::from_automerge(doc.clone())
        .unwrap()
        .events()
        .unwrap()
        .events
}

async fn a_timer_fires_while_every_phone_is_offline(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.token("cn.patel", "phone-8", &["charge_nurse"], &["4W"]);
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let id = listed_task(&mut phone, server.addr(), &token, "4W", "discharge").await;
    let doc = phone.open(id).await.unwrap();
    let due = due_of(&doc).unwrap();
    let before = events_of(&doc).len();
    phone.close().await;

    // Every phone is offline; the acknowledgment window lapses on the workflow clock.
    let state = server.server().state();
    state.clock.advance(due.at - state.clock.now() + 1);
    state.scheduler.fire_due().await.unwrap();

    // The escalation is stored, with the next level's timer, before anyone reconnects.
    let db = state.db.clone();
    let rows = db.task_events(&id.to_string()).await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.event == due.event_id.as_str())
        .expect("the escalation is stored");
    assert_eq!(
        (row.kind.as_str(), row.user.as_str(), row.role.as_str()),
        ("escalated", "baton", "system")
    );
    let timer = db
        .timer(&id.to_string())
        .await
        .unwrap()
        .expect("the chain goes on");
    assert_ne!(
        timer.event_id,
        due.event_id.to_string(),
        "the next level is due"
    );

    // A phone that reconnects sees it.
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let doc = phone.open(id).await.unwrap();
    let events = events_of(&doc);
    assert_eq!(events.len(), before + 1);
    let fired = events
        .iter()
        .find(|e| e.id == due.event_id)
        .expect("seen on reconnect");
    assert!(fired.actor.is_system());
    match &fired.body {
        EventBody::Escalated { level, to, .. } => {
            assert_eq!(*level, 1);
            assert_eq!(to.role.as_str(), "charge_nurse");
        }
        other => panic!("not an escalation: {other:?}"),
    }

    // Firing again writes nothing more: nothing is due until the next level.
    state.scheduler.fire_due().await.unwrap();
    let again = db.task_events(&id.to_string()).await.unwrap();
    assert_eq!(again.len(), rows.len());
    let fired_total = server.metric("baton_timers_fired_total").await.unwrap();
    assert!(fired_total >= 1.0, "{fired_total}");
}
