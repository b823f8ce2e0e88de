//! What follows from a change is written in the change's own transaction: every accepted event
//! is recorded as the server received it, and stays recorded when the changes are compacted.
#![allow(clippy::unwrap_used)]

use baton_core::{Author, EventBody};
use baton_e2e::{Backend, Phone, TestServer, append, listed_task};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    accepted_events_are_recorded_with_their_receipt_time(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    accepted_events_are_recorded_with_their_receipt_time(Backend::Postgres).await;
}

async fn accepted_events_are_recorded_with_their_receipt_time(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.token("rn.evans", "phone-1", &["nurse"], &["4W"]);
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let id = listed_task(&mut phone, server.addr(), &token, "4W", "discharge").await;
    let db = server.server().state().db.clone();

    // The demo's own events are recorded too (the server imported the task).
    let seeded = db.task_events(&id.to_string()).await.unwrap();
    assert_eq!(seeded.len(), 1);
    assert_eq!(seeded[0].kind, "created");

    let mut doc = phone.open(id).await.unwrap();
    let author = Author::new("rn.evans", "nurse", "phone-1");
    let mut mine = Vec::new();
    let before = baton_server::now_ms();
    // Enough to have the changes compacted into a snapshot on the way.
    for n in 0..260 {
        let (next, event) = append(
            &doc,
            &author,
            EventBody::Note {
                text: format!("note {n}"),
            },
        );
        phone.push(id, next).await.unwrap();
        doc = phone.doc(id).clone();
        mine.push(event);
    }
    let after = baton_server::now_ms();
    assert!(
        db.change_count(&id.to_string()).await.unwrap() < 260,
        "compacted"
    );
    let rows = db.task_events(&id.to_string()).await.unwrap();
    assert_eq!(rows.len(), 261);
    for event in &mine {
        let row = rows
            .iter()
            .find(|r| r.event == event.id.as_str())
            .expect("every accepted event is recorded");
        assert_eq!(
            (
                row.kind.as_str(),
                row.user.as_str(),
                row.role.as_str(),
                row.device.as_str()
            ),
            ("note", "rn.evans", "nurse", "phone-1")
        );
        assert_eq!(row.device_time, event.device_time);
        assert_eq!(row.hlc, event.hlc.to_string());
        assert!((before..=after).contains(&row.received_at), "{row:?}");
    }
}
