//! `kill -9` of the server during a burst of writes loses no change that a phone saw
//! acknowledged (the server's heads, sent only after the commit, included it).
#![allow(clippy::unwrap_used)]

use baton_core::sync::DocumentId;
use baton_core::{Author, EventBody};
use baton_e2e::process::ServerProcess;
use baton_e2e::{Backend, Phone, append, fresh_postgres, index_of, token_in};
use baton_server::Storage;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_baton-server-e2e");
/// Acknowledged writes before the kill.
const KILL_AFTER: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    kill_9_during_a_write_burst_loses_nothing_acknowledged(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    kill_9_during_a_write_burst_loses_nothing_acknowledged(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_entries_sqlite() {
    a_task_acknowledged_just_before_kill_9_is_still_listed(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_entries_postgres() {
    a_task_acknowledged_just_before_kill_9_is_still_listed(Backend::Postgres).await;
}

/// Tasks created on a phone and acknowledged, the server killed the moment the last one is:
/// after a restart every one of them is on the unit's index (its entry was written in the
/// task's own transaction, and start-up applies what was owed).
async fn a_task_acknowledged_just_before_kill_9_is_still_listed(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let storage = match backend {
        Backend::Sqlite => Storage::Sqlite,
        Backend::Postgres => Storage::Postgres(fresh_postgres().await),
    };
    let mut server = ServerProcess::start(Path::new(BIN), dir.path(), &storage).await;
    let token = token_in(dir.path(), "rn.evans", "phone-1", &["nurse"], &["4W"]);
    let mut phone = Phone::connect(server.addr, &token).await.unwrap();
    let templates = baton_core::TemplateRegistry::shipped();
    let consult = templates.latest(&"consult".into()).unwrap();
    let author = Author::new("rn.evans", "nurse", "phone-1");
    let mut created = Vec::new();
    for n in 0..5 {
        let (task, _) = baton_core::TaskDoc::create(
            consult,
            baton_core::NewTask {
                unit: "4W".into(),
                subject: baton_core::Subject {
                    reference: format!("enc-4w-{n}"),
                    label: format!("Bed {n}"),
                },
                acuity: None,
                note: None,
            },
            &author,
            &mut baton_core::HlcClock::new(),
            baton_server::now_ms(),
            automerge::ActorId::random(),
        )
        .unwrap();
        let id = DocumentId::random();
        assert_eq!(phone.try_push(id, task.into_automerge()).await, Ok(true));
        created.push(id);
    }
    server.kill_9();

    let server = ServerProcess::start(Path::new(BIN), dir.path(), &storage).await;
    let index = index_of(server.addr, &token, "4W").await;
    let mut phone = Phone::connect(server.addr, &token).await.unwrap();
    let listed = baton_core::index::read(&phone.open(index).await.unwrap()).unwrap();
    for id in created {
        assert!(
            listed.tasks.contains_key(&id.to_string()),
            "task {id} was acknowledged but is not on the index"
        );
    }
}

/// One phone writing notes to one task as fast as the server acknowledges them, until the
/// connection ends. Returns the ids of the acknowledged events.
async fn writer(
    addr: std::net::SocketAddr,
    data_dir: &Path,
    device: String,
    task: DocumentId,
    acked: Arc<AtomicUsize>,
) -> BTreeSet<String> {
    let token = token_in(data_dir, "rn.evans", &device, &["nurse"], &["4W"]);
    let mut phone = Phone::connect(addr, &token).await.unwrap();
    let mut doc = phone.open(task).await.unwrap();
    let author = Author::new("rn.evans", "nurse", device.as_str());
    let mut mine = BTreeSet::new();
    for n in 0.. {
        let (next, event) = append(
            &doc,
            &author,
            EventBody::Note {
                text: format!("{device} note {n}"),
            },
        );
        match phone.try_push(task, next).await {
            Ok(true) => {
                mine.insert(event.id.to_string());
                acked.fetch_add(1, Ordering::SeqCst);
                doc = phone.doc(task).clone();
            }
            Ok(false) => break,
            Err(refused) => panic!("a valid note was refused: {refused}"),
        }
    }
    mine
}

async fn kill_9_during_a_write_burst_loses_nothing_acknowledged(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let storage = match backend {
        Backend::Sqlite => Storage::Sqlite,
        Backend::Postgres => Storage::Postgres(fresh_postgres().await),
    };
    let mut server = ServerProcess::start(Path::new(BIN), dir.path(), &storage).await;
    let reader = token_in(dir.path(), "rn.evans", "reader", &["nurse"], &["4W"]);
    let index = index_of(server.addr, &reader, "4W").await;
    let mut phone = Phone::connect(server.addr, &reader).await.unwrap();
    let listed = baton_core::index::read(&phone.open(index).await.unwrap()).unwrap();
    let tasks: Vec<DocumentId> = listed.tasks.keys().map(|k| k.parse().unwrap()).collect();
    phone.close().await;

    // Four phones write at once: three tasks, two phones on the first.
    let acked = Arc::new(AtomicUsize::new(0));
    let addr = server.addr;
    let writers: Vec<_> = [0, 1, 2, 0]
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let (acked, data_dir, task) = (acked.clone(), dir.path().to_path_buf(), tasks[t]);
            tokio::spawn(async move {
                let device = format!("phone-{i}");
                (task, writer(addr, &data_dir, device, task, acked).await)
            })
        })
        .collect();

    // Mid-burst, with writes in flight on every connection: SIGKILL.
    let deadline = tokio::time::Instant::now() + baton_e2e::WAIT;
    while acked.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the burst did not get going"
        );
        tokio::task::yield_now().await;
    }
    server.kill_9();
    let mut acknowledged: Vec<(DocumentId, BTreeSet<String>)> = Vec::new();
    for writer in writers {
        acknowledged.push(writer.await.unwrap());
    }
    let total: usize = acknowledged.iter().map(|(_, ids)| ids.len()).sum();
    assert!(total >= KILL_AFTER, "{total} acknowledged");

    // Restarted on the same storage, the server holds every acknowledged event.
    let server = ServerProcess::start(Path::new(BIN), dir.path(), &storage).await;
    let mut phone = Phone::connect(server.addr, &reader).await.unwrap();
    for (task, ids) in acknowledged {
        let doc = phone.open(task).await.unwrap();
        let stored: BTreeSet<String> = baton_core::TaskDoc::from_automerge(doc)
            .unwrap()
            .events()
            .unwrap()
            .events
            .iter()
            .map(|e| e.id.to_string())
            .collect();
        let lost: Vec<&String> = ids.difference(&stored).collect();
        assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    }
}
