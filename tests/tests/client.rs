//! The device client (`baton-core`, feature `client`) against the real server, in-process:
//! sign-in, worklist, events between devices, offline work, the encrypted store, remote wipe
//! and change listeners.
#![allow(clippy::unwrap_used)]

use automerge::Automerge;
use baton_core::client::store::StoreError;
use baton_core::client::{Client, ClientConfig, ClientError, Connection, Origin, SyncStatus};
use baton_core::sync::DocumentId;
use baton_core::{Author, EventBody, TaskDoc, TaskState, TemplateRegistry};
use baton_e2e::{Backend, TestServer, WAIT, event_count};
use baton_server::Server;
use std::net::SocketAddr;
use std::path::Path;

const KEY: [u8; 32] = [42; 32];

fn nurse(server: &TestServer, device: &str) -> String {
    server.token("rn.evans", device, &["nurse"], &["4W"])
}

fn physician(server: &TestServer, device: &str) -> String {
    server.token("dr.fox", device, &["physician"], &["4W", "ICU"])
}

fn config(addr: SocketAddr, store: &Path, key: [u8; 32]) -> ClientConfig {
    ClientConfig::new(format!("ws://{addr}/sync"), store, key)
}

/// A client on a fresh store, signed in and online.
async fn signed_in(server: &TestServer, store: &Path, token: String) -> Client {
    let client = Client::open(config(server.addr(), store, KEY))
        .await
        .unwrap();
    client.set_token(token).unwrap();
    status_until(&client, |s| s.connection == Connection::Online).await;
    client
}

/// Wait (at most [`WAIT`]) until the client's status satisfies `done`.
async fn status_until(client: &Client, done: impl FnMut(&SyncStatus) -> bool) -> SyncStatus {
    let mut status = client.status();
    tokio::time::timeout(WAIT, status.wait_for(done))
        .await
        .unwrap_or_else(|_| panic!("status stayed {:?}", *client.status().borrow()))
        .unwrap()
        .clone()
}

/// Wait (at most [`WAIT`]) until the client's copy of `doc` has `n` events.
async fn events_until(client: &Client, doc: DocumentId, n: usize) -> Automerge {
    let mut changes = client.subscribe(doc);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(local) = client.local_doc(doc).filter(|d| event_count(d) == n) {
            return local;
        }
        tokio::time::timeout_at(deadline, changes.recv())
            .await
            .unwrap_or_else(|_| panic!("{doc} never reached {n} events"))
            .expect("the client is open");
    }
}

/// The unit's index document, from `GET /api/v1/me`.
async fn index_of(server: &TestServer, token: &str, unit: &str) -> DocumentId {
    baton_e2e::index_of(server.addr(), token, unit).await
}

/// The first task on the client's worklist made from `template`.
async fn task_on(client: &Client, index: DocumentId, template: &str) -> DocumentId {
    let worklist = client.worklist(index).await.unwrap();
    let (id, _) = worklist
        .tasks
        .iter()
        .find(|(_, t)| t.template.id.as_str() == template)
        .unwrap();
    id.parse().unwrap()
}

/// Append through the client, with the task's own template.
async fn append(
    client: &Client,
    task: DocumentId,
    author: &Author,
    body: EventBody,
) -> Result<baton_core::Event, ClientError> {
    client.append(task, author, body).await
}

fn state_of(doc: &Automerge) -> TaskState {
    let templates = TemplateRegistry::shipped();
    let task = TaskDoc::from_automerge(doc.clone()).unwrap();
    task.state(templates.get(&task.meta().template).unwrap())
        .unwrap()
}

fn evans(device: &str) -> Author {
    Author::new("rn.evans", "nurse", device)
}

fn fox(device: &str) -> Author {
    Author::new("dr.fox", "physician", device)
}

/// How many events the server's view of `task` holds.
async fn history_len(server: &TestServer, task: DocumentId) -> usize {
    let (status, view) = server
        .get(&format!("/api/v1/tasks/{task}"), Some(&nurse(server, "x")))
        .await;
    assert_eq!(status, 200, "{view}");
    view["state"]["history"].as_array().unwrap().len()
}

/// Stop the server gracefully; returns the address it listened on.
async fn stop(server: &mut TestServer) -> SocketAddr {
    let running = server.server.take().unwrap();
    let addr = running.addr();
    running.shutdown().await;
    addr
}

/// Start the server again on its storage, at `addr`.
async fn start_at(server: &mut TestServer, addr: SocketAddr) {
    let mut config = server.config.clone();
    config.listen = addr;
    server.server = Some(Server::start(config).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_client_gets_its_worklist_and_another_client_sees_its_event() {
    let server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let token = nurse(&server, "phone-a");
    let index = index_of(&server, &token, "4W").await;
    let a = signed_in(&server, &dir.path().join("a.store"), token).await;
    let b = signed_in(
        &server,
        &dir.path().join("b.store"),
        physician(&server, "phone-b"),
    )
    .await;

    let worklist = a.worklist(index).await.unwrap();
    let mut templates: Vec<&str> = worklist
        .tasks
        .values()
        .map(|t| t.template.id.as_str())
        .collect();
    templates.sort();
    assert_eq!(templates, ["consult", "discharge", "nonformulary_med"]);
    assert_eq!(worklist.unit.as_str(), "4W");

    let consult = task_on(&a, index, "consult").await;
    let seen = b.open_doc(consult).await.unwrap().unwrap();
    assert_eq!(event_count(&seen), 1);
    let mut changes = b.subscribe(consult);

    let note = EventBody::Note {
        text: "Family at bedside".into(),
    };
    let event = append(&a, consult, &evans("phone-a"), note).await.unwrap();
    // The server acknowledges the change: its heads include it.
    status_until(&a, SyncStatus::is_synced).await;

    let changed = tokio::time::timeout(WAIT, changes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((changed.doc, changed.origin), (consult, Origin::Remote));
    let doc = events_until(&b, consult, 2).await;
    let state = state_of(&doc);
    assert!(state.history.iter().any(|h| h.event == event.id));

    assert_eq!(history_len(&server, consult).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_act_offline_and_converge_when_the_server_returns() {
    let mut server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let token = nurse(&server, "phone-a");
    let index = index_of(&server, &token, "4W").await;
    let a = signed_in(&server, &dir.path().join("a.store"), token).await;
    let b = signed_in(
        &server,
        &dir.path().join("b.store"),
        physician(&server, "phone-b"),
    )
    .await;
    let consult = task_on(&a, index, "consult").await;
    for client in [&a, &b] {
        client.open_doc(consult).await.unwrap().unwrap();
    }

    let addr = stop(&mut server).await;
    for client in [&a, &b] {
        status_until(client, |s| s.connection != Connection::Online).await;
    }
    // Both act with no server: the physician acknowledges, the nurse adds a note.
    append(&b, consult, &fox("phone-b"), EventBody::Acknowledged {})
        .await
        .unwrap();
    let note = EventBody::Note {
        text: "Family at bedside".into(),
    };
    append(&a, consult, &evans("phone-a"), note).await.unwrap();
    for client in [&a, &b] {
        assert_eq!(client.status().borrow().unacknowledged, 1);
        assert_eq!(event_count(&client.local_doc(consult).unwrap()), 2);
    }

    // The server comes back where it was; the clients find it on their own.
    start_at(&mut server, addr).await;
    for client in [&a, &b] {
        status_until(client, SyncStatus::is_synced).await;
    }
    let (doc_a, doc_b) = (
        events_until(&a, consult, 3).await,
        events_until(&b, consult, 3).await,
    );
    let (state_a, state_b) = (state_of(&doc_a), state_of(&doc_b));
    assert_eq!(state_a, state_b);
    assert_eq!(state_a.owner.unwrap().user.as_str(), "dr.fox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_follows_a_new_sync_url() {
    let mut server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let a = signed_in(
        &server,
        &dir.path().join("a.store"),
        nurse(&server, "phone-a"),
    )
    .await;
    // The server moves to a new port: the client keeps failing at the old one until told.
    server.restart().await;
    status_until(&a, |s| s.connection == Connection::Offline).await;
    a.set_sync_url(format!("ws://{}/sync", server.addr()));
    status_until(&a, |s| s.connection == Connection::Online).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_survives_reopening_and_refuses_a_wrong_key() {
    let mut server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.store");
    let token = nurse(&server, "phone-a");
    let index = index_of(&server, &token, "4W").await;
    let a = signed_in(&server, &path, token).await;
    let consult = task_on(&a, index, "consult").await;
    let note = EventBody::Note {
        text: "Family at bedside".into(),
    };
    append(&a, consult, &evans("phone-a"), note).await.unwrap();
    status_until(&a, SyncStatus::is_synced).await;
    a.close().await;

    // With no server at all, the reopened client has the worklist and the task.
    let addr = stop(&mut server).await;
    let again = Client::open(config(addr, &path, KEY)).await.unwrap();
    let worklist = again.worklist(index).await.unwrap();
    assert_eq!(worklist.tasks.len(), 3);
    let doc = again.open_doc(consult).await.unwrap().unwrap();
    assert_eq!(event_count(&doc), 2);
    assert_eq!(again.status().borrow().unacknowledged, 0);
    // A task it never fetched cannot come from nowhere.
    let unknown = DocumentId::random();
    status_until(&again, |s| s.connection == Connection::Offline).await;
    assert!(matches!(
        again.open_doc(unknown).await,
        Err(ClientError::Offline(id)) if id == unknown
    ));
    // The file is in use while the client is open.
    assert!(matches!(
        Client::open(config(addr, &path, KEY)).await,
        Err(ClientError::Store(StoreError::Locked { .. }))
    ));
    again.close().await;

    let err = Client::open(config(addr, &path, [7; 32]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Store(StoreError::WrongKey { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("a.store"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_wipes_its_store() {
    let server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lost.store");
    let token = nurse(&server, "phone-lost");
    let index = index_of(&server, &token, "4W").await;
    let client = signed_in(&server, &path, token).await;
    let consult = task_on(&client, index, "consult").await;
    client.open_doc(consult).await.unwrap().unwrap();
    let mut changes = client.subscribe(consult);
    assert!(!client.documents().is_empty());

    let (status, body) = server
        .post(
            "/api/v1/devices/phone-lost/revoke",
            Some(&server.admin_token()),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    status_until(&client, |s| s.connection == Connection::Wiped).await;
    assert!(!path.exists(), "the store file is gone");
    assert!(client.documents().is_empty());
    assert!(client.local_doc(consult).is_none());
    assert!(matches!(
        client.open_doc(consult).await,
        Err(ClientError::Wiped)
    ));
    // Listeners are closed.
    tokio::time::timeout(WAIT, async { while changes.recv().await.is_some() {} })
        .await
        .unwrap();
    // Wiped is final: a new token does not bring the data back.
    assert!(matches!(
        client.set_token(nurse(&server, "phone-lost")),
        Err(ClientError::Wiped)
    ));
    client.close().await;
    let reopened = Client::open(config(server.addr(), &path, KEY))
        .await
        .unwrap();
    assert!(reopened.documents().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscription_stops_receiving() {
    let server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let token = nurse(&server, "phone-a");
    let index = index_of(&server, &token, "4W").await;
    let a = signed_in(&server, &dir.path().join("a.store"), token).await;
    let b = signed_in(
        &server,
        &dir.path().join("b.store"),
        physician(&server, "phone-b"),
    )
    .await;
    let consult = task_on(&a, index, "consult").await;
    for client in [&a, &b] {
        client.open_doc(consult).await.unwrap().unwrap();
    }

    let mut kept = b.subscribe(consult);
    let dropped = b.subscribe(consult);
    let mut own = a.subscribe(consult);
    assert_eq!(b.listener_count(), 2);
    drop(dropped);
    assert_eq!(b.listener_count(), 1);

    append(&b, consult, &fox("phone-b"), EventBody::Acknowledged {})
        .await
        .unwrap();
    let local = kept.recv().await.unwrap();
    assert_eq!(local.origin, Origin::Local);
    let remote = tokio::time::timeout(WAIT, own.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((remote.doc, remote.origin), (consult, Origin::Remote));
    events_until(&a, consult, 2).await;

    drop(kept);
    assert_eq!(b.listener_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_until_a_new_one_is_set() {
    let server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::open(config(server.addr(), &dir.path().join("a.store"), KEY))
        .await
        .unwrap();
    assert_eq!(client.status().borrow().connection, Connection::Offline);
    let expired = server.token_with("rn.evans", "phone-a", &["nurse"], &["4W"], false, -3_600);
    client.set_token(expired).unwrap();
    let status = status_until(&client, |s| matches!(s.connection, Connection::Refused(_))).await;
    assert_eq!(
        status.connection,
        Connection::Refused("token_expired".into())
    );
    client.set_token(nurse(&server, "phone-a")).unwrap();
    status_until(&client, |s| s.connection == Connection::Online).await;
}

/// A device clock that is wrong by however much a test says.
#[derive(Debug, Default)]
struct SkewedClock(std::sync::atomic::AtomicI64);

impl SkewedClock {
    fn set(&self, skew_ms: i64) {
        self.0.store(skew_ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl baton_core::client::WallClock for SkewedClock {
    fn now_ms(&self) -> baton_core::Millis {
        baton_server::now_ms() + self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

const HOUR_MS: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_whose_clock_is_two_hours_fast_stamps_in_server_time() {
    let server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let token = nurse(&server, "phone-fast");
    let index = index_of(&server, &token, "4W").await;
    let clock = std::sync::Arc::new(SkewedClock::default());
    clock.set(2 * HOUR_MS);
    let mut config = config(server.addr(), &dir.path().join("fast.store"), KEY);
    config.clock = clock.clone();
    let client = Client::open(config).await.unwrap();
    let me = client.sign_in(token).await.unwrap();
    assert_eq!(me.user.as_str(), "rn.evans");
    assert!(me.server_time.is_some());
    status_until(&client, |s| s.connection == Connection::Online).await;
    let consult = task_on(&client, index, "consult").await;
    let mut refusals = client.refusals();

    let note = |text: &str| EventBody::Note { text: text.into() };
    let first = append(&client, consult, &evans("phone-fast"), note("clock fast"))
        .await
        .unwrap();
    status_until(&client, SyncStatus::is_synced).await;
    // Stamped in the server's time; the device's own reading is kept beside it.
    let server_now = baton_server::now_ms();
    assert!((first.hlc.wall - server_now).abs() < 60_000, "{first:?}");
    assert!(first.device_time - server_now > HOUR_MS, "{first:?}");

    // The clock is put right: later events go through as well.
    clock.set(0);
    let second = append(&client, consult, &evans("phone-fast"), note("clock fixed"))
        .await
        .unwrap();
    status_until(&client, SyncStatus::is_synced).await;
    assert!(second.hlc > first.hlc);
    assert!(refusals.try_recv().is_err(), "nothing was refused");
    assert_eq!(history_len(&server, consult).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_refuses_locally_what_the_server_would_refuse() {
    let server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let token = nurse(&server, "phone-a");
    let index = index_of(&server, &token, "4W").await;
    let client = Client::open(config(server.addr(), &dir.path().join("a.store"), KEY))
        .await
        .unwrap();
    client.sign_in(token).await.unwrap();
    let consult = task_on(&client, index, "consult").await;
    client.open_doc(consult).await.unwrap().unwrap();

    // The rules let a physician write a note, but rn.evans is no physician here.
    let note = EventBody::Note {
        text: "as someone else".into(),
    };
    let as_physician = Author::new("rn.evans", "physician", "phone-a");
    let refused = append(&client, consult, &as_physician, note.clone()).await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Invalid(
                baton_core::validate::ValidationError::Impersonation { field: "role", .. }
            ))
        ),
        "{refused:?}"
    );
    // Nor in someone else's name.
    let refused = append(&client, consult, &fox("phone-a"), note).await;
    assert!(
        matches!(refused, Err(ClientError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(client.status().borrow().unacknowledged, 0, "nothing stored");
    assert_eq!(event_count(&client.local_doc(consult).unwrap()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_is_taken_out_and_the_document_syncs_on() {
    let server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let admin = server.admin_token();
    let (status, body) = server
        .put(
            "/api/v1/users/rn.evans/memberships/4W/charge_nurse",
            Some(&admin),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = server.token("rn.evans", "phone-a", &["nurse", "charge_nurse"], &["4W"]);
    let index = index_of(&server, &token, "4W").await;
    let client = Client::open(config(server.addr(), &dir.path().join("a.store"), KEY))
        .await
        .unwrap();
    let me = client.sign_in(token).await.unwrap();
    assert_eq!(me.roles_on(&"4W".into()).len(), 2, "{me:?}");
    status_until(&client, |s| s.connection == Connection::Online).await;
    let consult = task_on(&client, index, "consult").await;
    client.open_doc(consult).await.unwrap().unwrap();
    let mut refusals = client.refusals();

    // The charge nurse role is taken away; the phone still believes it has it.
    let (status, body) = server
        .delete(
            "/api/v1/users/rn.evans/memberships/4W/charge_nurse",
            Some(&admin),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let as_charge = Author::new("rn.evans", "charge_nurse", "phone-a");
    let refused = append(
        &client,
        consult,
        &as_charge,
        EventBody::Note {
            text: "as charge nurse".into(),
        },
    )
    .await
    .unwrap();

    // The server refuses it; the client takes it out of its copy and says so.
    let report = tokio::time::timeout(WAIT, refusals.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.doc, consult);
    assert_eq!(report.events, vec![refused.id.clone()]);
    assert!(report.message.contains("refused"), "{}", report.message);
    let local = client.local_doc(consult).unwrap();
    assert!(
        !state_of(&local)
            .history
            .iter()
            .any(|h| h.event == refused.id),
        "taken out"
    );
    assert_eq!(client.status().borrow().unacknowledged, 0);

    // The same connection carries on with the document: an allowed event goes through...
    let kept = append(
        &client,
        consult,
        &evans("phone-a"),
        EventBody::Note {
            text: "as nurse".into(),
        },
    )
    .await
    .unwrap();
    status_until(&client, SyncStatus::is_synced).await;
    // ...and another device's change arrives.
    let b = signed_in(
        &server,
        &dir.path().join("b.store"),
        physician(&server, "phone-b"),
    )
    .await;
    b.append(consult, &fox("phone-b"), EventBody::Acknowledged {})
        .await
        .unwrap();
    let doc = events_until(&client, consult, 3).await;
    let history = state_of(&doc).history;
    assert!(history.iter().any(|h| h.event == kept.id));
    let (status, view) = server
        .get(&format!("/api/v1/tasks/{consult}"), Some(&admin))
        .await;
    assert_eq!(status, 200, "{view}");
    let ids: Vec<&str> = view["state"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["event"].as_str())
        .collect();
    assert!(
        ids.contains(&kept.id.as_str()) && !ids.contains(&refused.id.as_str()),
        "{ids:?}"
    );
}

/// A client on a fresh store, signed in through `/api/v1/me` and online.
async fn signed_in_fully(server: &TestServer, store: &Path, token: String) -> Client {
    let client = Client::open(config(server.addr(), store, KEY))
        .await
        .unwrap();
    client.sign_in(token).await.unwrap();
    status_until(&client, |s| s.connection == Connection::Online).await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_act_on_tasks_through_the_worklist_and_task_view() {
    use baton_core::client::OpenTask;
    use baton_core::rules::Refusal;
    use baton_core::view::Action;
    use baton_core::worklist::{Filter, Scope};
    use baton_core::{FieldValue, Subject};

    let server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let nurse = signed_in_fully(&server, &dir.path().join("n.store"), nurse(&server, "n")).await;
    let fox = signed_in_fully(
        &server,
        &dir.path().join("f.store"),
        physician(&server, "f"),
    )
    .await;

    // The nurse opens a stat consult; it reaches the server and the physician's worklist, ahead
    // of the routine demo consult that arrived before it.
    let (consult, _) = nurse
        .open_task(OpenTask {
            template: "consult".into(),
            unit: "4W".into(),
            subject: Subject {
                reference: "enc-77".into(),
                label: "Bed 7 · A.B.".into(),
            },
            acuity: Some("stat".into()),
            note: None,
        })
        .unwrap();
    status_until(&nurse, SyncStatus::is_synced).await;
    let unowned = Filter {
        scope: Scope::Unowned,
        unit: Some("4W".into()),
        role: None,
    };
    let list = tokio::time::timeout(WAIT, async {
        loop {
            let list = fox.my_worklist(&unowned).await.unwrap();
            if list.iter().any(|i| i.id == consult.to_string()) {
                return list;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    let first_consult = list
        .iter()
        .find(|i| i.template.id.as_str() == "consult")
        .unwrap();
    assert_eq!(
        first_consult.id,
        consult.to_string(),
        "stat first: {list:?}"
    );

    // What the physician may do, then doing it.
    let view = fox.task(consult).await.unwrap();
    let may: Vec<&Action> = view.may.iter().map(|m| &m.action).collect();
    assert!(may.contains(&&Action::Acknowledge), "{may:?}");
    fox.acknowledge(consult).await.unwrap();
    // A step completed without its required fields is refused, naming the step and field.
    let refused = fox
        .complete_step(consult, "request".into(), Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused.refusal(),
            Some(Refusal::MissingField { step, .. }) if step.as_str() == "request"
        ),
        "{refused:?}"
    );
    let fields = [
        (
            "question".to_owned(),
            FieldValue::Text("Chest pain?".into()),
        ),
        ("urgency".to_owned(), FieldValue::Text("stat".into())),
    ]
    .into();
    fox.complete_step(consult, "request".into(), fields)
        .await
        .unwrap();
    status_until(&fox, SyncStatus::is_synced).await;

    // The nurse sees it: owned by the physician, first step done.
    let doc = events_until(&nurse, consult, 3).await;
    let state = state_of(&doc);
    assert_eq!(state.owner.unwrap().user.as_str(), "dr.fox");
    let view = nurse.task(consult).await.unwrap();
    assert!(view.steps[0].completed.is_some());
    let mine = Filter {
        scope: Scope::Mine,
        ..Filter::default()
    };
    let fox_mine = fox.my_worklist(&mine).await.unwrap();
    assert_eq!(fox_mine.len(), 1);
    assert!(fox_mine[0].mine && fox_mine[0].acknowledged);
}
