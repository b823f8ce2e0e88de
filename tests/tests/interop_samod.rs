//! The Rust automerge-repo implementation, `samod`, as a phone through the Baton server: it
//! dials with a token, bootstraps from `/api/v1/me`, opens the unit index and a task, appends a
//! valid event written with plain Automerge calls from `docs/protocol.md`, and sees another
//! device's concurrent event. A forged event is refused and stored nowhere.
#![allow(clippy::unwrap_used)]

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT, ReadDoc};
use baton_core::{Author, EventBody};
use baton_e2e::{Backend, Phone, TestServer, append, index_of};
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use samod::{DialError, Dialer, Repo, Transport, Url};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage, client::IntoClientRequest};

/// Dials the Baton server with a bearer token at the upgrade, over the workspace's WebSocket
/// client: binary frames in, binary frames out.
#[derive(Debug)]
struct BatonDialer {
    url: Url,
    token: String,
}

impl Dialer for BatonDialer {
    type Error = tungstenite::Error;

    fn url(&self) -> Url {
        self.url.clone()
    }

    fn connect(&self) -> BoxFuture<'static, Result<Transport, DialError<Self::Error>>> {
        let (url, token) = (self.url.to_string(), self.token.clone());
        Box::pin(async move {
            let mut request = url
                .into_client_request()
                .map_err(DialError::PermanentFailure)?;
            request.headers_mut().insert(
                "Authorization",
                format!("Bearer {token}").parse().expect("a header value"),
            );
            let (socket, _) = tokio_tungstenite::connect_async(request)
                .await
                .map_err(DialError::transient)?;
            let (sink, stream) = socket.split();
            let stream = stream
                .try_filter_map(|m| async move {
                    Ok(match m {
                        WsMessage::Binary(bytes) => Some(bytes.to_vec()),
                        _ => None,
                    })
                })
                .boxed();
            let sink = sink.with(|bytes: Vec<u8>| async move {
                Ok::<_, tungstenite::Error>(WsMessage::Binary(bytes.into()))
            });
            Ok(Transport::new(stream, Box::pin(sink)))
        })
    }
}

/// A samod repo connected to the server (a `find` before the connection is up would find no
/// peer to ask and say "unavailable").
async fn samod_phone(server: &TestServer, token: String) -> Repo {
    let repo = Repo::build_tokio().load().await;
    let url = Url::parse(&format!("ws://{}/sync", server.addr())).unwrap();
    repo.dial(
        samod::BackoffConfig::default(),
        Arc::new(BatonDialer { url, token }),
    )
    .unwrap();
    let server_peer = samod::PeerId::from(server.server().state().peer_id.as_str());
    tokio::time::timeout(baton_e2e::WAIT, repo.when_connected(server_peer))
        .await
        .expect("samod connects")
        .unwrap();
    repo
}

/// Append an event to `events` with plain Automerge calls, as docs/protocol.md describes it.
fn append_raw(doc: &mut Automerge, event: &serde_json::Value) {
    let events = match doc.get(ROOT, "events").unwrap() {
        Some((_, id)) => id,
        None => panic!("a task has an events list"),
    };
    let at = doc.length(&events);
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        let obj = tx.insert_object(&events, at, ObjType::Map)?;
        for (key, value) in event.as_object().unwrap() {
            match value {
                serde_json::Value::Object(inner) => {
                    let child = tx.put_object(&obj, key.as_str(), ObjType::Map)?;
                    for (k, v) in inner {
                        tx.put(&child, k.as_str(), v.as_str().unwrap_or_default())?;
                    }
                }
                serde_json::Value::Number(n) => tx.put(&obj, key.as_str(), n.as_i64().unwrap())?,
                other => tx.put(&obj, key.as_str(), other.as_str().unwrap())?,
            }
        }
        Ok(())
    })
    .unwrap();
}

/// The stamp docs/protocol.md asks for: after every stamp in the task, `<wall>-<counter>`.
fn next_hlc(doc: &Automerge) -> String {
    let task = baton_core::TaskDoc::from_automerge(doc.clone()).unwrap();
    let seen = task.events().unwrap().events.iter().map(|e| e.hlc).max();
    let now = baton_server::now_ms();
    let (wall, counter) = match seen {
        Some(h) if h.wall >= now => (h.wall, h.counter + 1),
        _ => (now, 0),
    };
    format!("{wall:015}-{counter:06}")
}

fn note(user: &str, device: &str, text: &str, doc: &Automerge) -> serde_json::Value {
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "kind": "note",
        "actor": { "user": user, "role": "nurse" },
        "device": device,
        "device_time": baton_server::now_ms(),
        "hlc": next_hlc(doc),
        "payload": { "text": text },
    })
}

fn notes(doc: &Automerge) -> Vec<String> {
    baton_core::TaskDoc::from_automerge(doc.clone())
        .unwrap()
        .events()
        .unwrap()
        .events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Note { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

async fn eventually(mut check: impl FnMut() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + baton_e2e::WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samod_is_a_phone_and_cannot_forge() {
    let server = TestServer::start(Backend::Sqlite).await;
    let token = server.token("rn.evans", "samod-phone", &["nurse"], &["4W"]);
    let index_id = index_of(server.addr(), &token, "4W").await;
    let repo = samod_phone(&server, token).await;

    // The unit index, then a task from it.
    let index = repo
        .find(index_id.to_string().parse().unwrap())
        .await
        .unwrap()
        .expect("the unit index");
    let listed = index.with_document(|d| baton_core::index::read(d).unwrap());
    let (task_id, _) = listed
        .tasks
        .iter()
        .find(|(_, t)| t.template.id.as_str() == "discharge")
        .unwrap();
    let task = repo
        .find(task_id.parse().unwrap())
        .await
        .unwrap()
        .expect("the task");

    // Another device writes at the same time.
    let other_token = server.token("rn.okafor", "phone-2", &["nurse"], &["4W"]);
    let mut other = Phone::connect(server.addr(), &other_token).await.unwrap();
    let doc = other.open(task_id.parse().unwrap()).await.unwrap();
    let (theirs, _) = append(
        &doc,
        &Author::new("rn.okafor", "nurse", "phone-2"),
        EventBody::Note {
            text: "From the other phone".into(),
        },
    );
    task.with_document(|d| {
        let event = note("rn.evans", "samod-phone", "From samod", d);
        append_raw(d, &event);
    });
    other.push(task_id.parse().unwrap(), theirs).await.unwrap();

    // Each sees the other's note; the server holds both.
    eventually(
        || task.with_document(|d| notes(d).contains(&"From the other phone".to_owned())),
        "samod sees the other phone's note",
    )
    .await;
    other
        .wait_for(task_id.parse().unwrap(), |d| {
            notes(d).contains(&"From samod".to_owned())
        })
        .await;

    // A note in someone else's name is refused: the server never stores it.
    task.with_document(|d| {
        let event = note("rn.okafor", "samod-phone", "Forged", d);
        append_raw(d, &event);
    });
    let admin = server.admin_token();
    let mut forged_recorded = false;
    let deadline = tokio::time::Instant::now() + baton_e2e::WAIT;
    while !forged_recorded {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no forged_event record"
        );
        let (_, audit) = server.get("/api/v1/audit/security", Some(&admin)).await;
        forged_recorded = audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "forged_event" && r["device"] == "samod-phone");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut fresh = Phone::connect(server.addr(), &other_token).await.unwrap();
    let stored = fresh.open(task_id.parse().unwrap()).await.unwrap();
    assert!(notes(&stored).contains(&"From samod".to_owned()));
    assert!(!notes(&stored).contains(&"Forged".to_owned()));
}
