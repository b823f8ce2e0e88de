//! Baton's device client speaks the stock protocol both ways: through the stock JavaScript
//! automerge-repo sync server (which knows nothing of Baton and checks nothing), it fetches a
//! task document another peer put there, appends an event, and that peer reads it back.
#![allow(clippy::unwrap_used)]

use automerge::ActorId;
use baton_core::client::{Client, ClientConfig, Connection};
use baton_core::sync::DocumentId;
use baton_core::{Author, EventBody, HlcClock, NewTask, Subject, TaskDoc, TemplateRegistry};
use baton_e2e::{Phone, WAIT, event_count, js};
use std::process::Stdio;

/// The stock sync server on a free loopback port; killed when dropped.
struct StockServer {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
    _data: tempfile::TempDir,
}

impl StockServer {
    async fn start() -> StockServer {
        js::ensure_installed();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let data = tempfile::tempdir().unwrap();
        let child = tokio::process::Command::new("node")
            .arg(js::dir().join("stock-sync-server.mjs"))
            .env("PORT", port.to_string())
            .env("DATA_DIR", data.path())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node is needed for the interop tests");
        let addr = ([127, 0, 0, 1], port).into();
        // Ready once it answers a `join` (a listening socket alone is not enough on a busy
        // machine).
        let deadline = tokio::time::Instant::now() + WAIT;
        while !answers_join(addr).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the stock server did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        StockServer {
            child,
            addr,
            _data: data,
        }
    }
}

/// Whether a sync server at `addr` completes the join/peer handshake within a second.
async fn answers_join(addr: std::net::SocketAddr) -> bool {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let attempt = async {
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
            .await
            .ok()?;
        let join = baton_core::sync::handshake::join(&"probe".to_owned(), &Default::default());
        socket
            .send(WsMessage::Binary(join.encode().into()))
            .await
            .ok()?;
        while let Some(Ok(frame)) = socket.next().await {
            if let WsMessage::Binary(bytes) = frame {
                let _ = socket.close(None).await;
                return baton_core::sync::Message::decode(&bytes).ok();
            }
        }
        None
    };
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(1), attempt).await,
        Ok(Some(baton_core::sync::Message::Peer { .. }))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_client_syncs_through_the_stock_sync_server() {
    let mut stock = StockServer::start().await;
    let templates = TemplateRegistry::shipped();
    let consult = templates.latest(&"consult".into()).unwrap();

    // A peer puts a task document on the stock server.
    let nurse = Author::new("rn.evans", "nurse", "phone-1");
    let (task, _) = TaskDoc::create(
        consult,
        NewTask {
            unit: "4W".into(),
            subject: Subject {
                reference: "enc-1".into(),
                label: "Bed 1".into(),
            },
            acuity: None,
            note: None,
        },
        &nurse,
        &mut HlcClock::new(),
        baton_server::now_ms(),
        ActorId::random(),
    )
    .unwrap();
    let id = DocumentId::random();
    let mut peer = Phone::connect(stock.addr, "the stock server checks no token")
        .await
        .unwrap();
    peer.push(id, task.into_automerge()).await.unwrap();

    // Baton's client fetches it from there, and appends a note.
    let store = tempfile::tempdir().unwrap();
    let client = Client::open(ClientConfig::new(
        format!("ws://{}", stock.addr),
        store.path().join("phone.store"),
        [7; 32],
    ))
    .await
    .unwrap();
    client.set_token("unused").unwrap();
    let mut status = client.status();
    tokio::time::timeout(
        WAIT,
        status.wait_for(|s| s.connection == Connection::Online),
    )
    .await
    .unwrap()
    .unwrap();
    let doc = client
        .open_doc(id)
        .await
        .unwrap()
        .expect("the stock server has it");
    assert_eq!(event_count(&doc), 1);
    let physician = Author::new("dr.fox", "physician", "phone-2");
    client
        .append(id, &physician, EventBody::Acknowledged {})
        .await
        .unwrap();
    tokio::time::timeout(WAIT, status.wait_for(|s| s.unacknowledged == 0))
        .await
        .expect("the stock server acknowledged the change")
        .unwrap();

    // The first peer, and a new one, read the event back from the stock server.
    peer.wait_for(id, |d| event_count(d) == 2).await;
    let mut fresh = Phone::connect(stock.addr, "unused").await.unwrap();
    let stored = fresh.open(id).await.unwrap();
    let task = TaskDoc::from_automerge(stored).unwrap();
    let state = task.state(consult).unwrap();
    assert_eq!(state.owner.unwrap().user.as_str(), "dr.fox");
    client.close().await;
    stock.child.kill().await.unwrap();
}
