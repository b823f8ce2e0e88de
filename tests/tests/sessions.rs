//! Sessions that can be cut off, end to end: revocations that land while a connection is being
//! set up, grants that follow membership changes on open sockets, admin rights that need the
//! records, tokens from the future, HTTP connections that are not used, and caps on sockets and
//! open documents. Every scenario runs on SQLite and on Postgres.
#![allow(clippy::unwrap_used)]

use baton_core::index;
use baton_core::sync::{DocumentId, Message, REVOKED_ERROR};
use baton_core::{Author, EventBody};
use baton_e2e::{Backend, Phone, TestServer, WAIT};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

baton_e2e::on_both_backends!(
    a_revocation_while_a_connection_is_set_up_is_not_missed,
    a_nurse_who_loses_her_unit_stops_receiving_its_tasks,
    membership_changes_are_for_admins_and_known_records_only,
    a_token_claim_alone_makes_no_one_an_admin,
    tokens_from_the_future_are_refused,
    slow_headers_and_idle_connections_are_cut_off,
    sockets_are_capped_per_device_user_and_address,
    documents_are_capped_per_user_across_connections,
);

fn evans(server: &TestServer, device: &str) -> String {
    server.token("rn.evans", device, &["nurse"], &["4W"])
}

async fn index_of(server: &TestServer, token: &str, unit: &str) -> DocumentId {
    baton_e2e::index_of(server.addr(), token, unit).await
}

/// Start syncing `id` over, as after a reconnect, so the next round has something to say.
fn fresh_sync(phone: &mut Phone, id: DocumentId) {
    if let Some(replica) = phone.docs.get_mut(&id) {
        replica.state = automerge::sync::State::new();
    }
}

async fn consult_on(phone: &mut Phone, index_id: DocumentId) -> DocumentId {
    let doc = phone.open(index_id).await.expect("the index is available");
    let index = index::read(&doc).unwrap();
    index
        .tasks
        .iter()
        .find(|(_, t)| t.template.id.as_str() == "consult")
        .map(|(id, _)| id.parse().unwrap())
        .unwrap()
}

/// The moment between a session's checks and its connection's registration: the server's
/// `touch_device` (the last step of establishing a session, after the checks) waits on a lock the
/// test holds while it revokes the device, and the test then cuts off the device's registered
/// connections, as the revoke endpoint does. Either the registry has the connection by then, or
/// the connection's second look at the records sees the revocation: it never gets to sync.
async fn a_revocation_while_a_connection_is_set_up_is_not_missed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = evans(&server, "phone-race");
    let (status, _) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 200, "the device is enrolled");

    let mut lock = server.database().await;
    let mut watch = server.database().await;
    let begin = match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    sqlx::raw_sql(begin).execute(&mut lock).await.unwrap();
    sqlx::query("UPDATE devices SET revoked_at = $1 WHERE id = 'phone-race'")
        .bind(baton_server::now_ms())
        .execute(&mut lock)
        .await
        .unwrap();

    let addr = server.addr();
    let upgrade = tokio::spawn(async move { Phone::upgrade(addr, &token).await });
    // Wait until the server is held up writing the device's last use: its checks are behind it.
    match backend {
        Backend::Postgres => {
            let deadline = Instant::now() + WAIT;
            loop {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_one(&mut watch)
                .await
                .unwrap();
                if waiting > 0 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the server never waited on the lock"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // SQLite says nothing about who waits on its lock; the checks take milliseconds.
        Backend::Sqlite => tokio::time::sleep(Duration::from_millis(1_000)).await,
    }
    assert!(!upgrade.is_finished(), "the upgrade waits on the lock");
    sqlx::raw_sql("COMMIT").execute(&mut lock).await.unwrap();
    let closed = server
        .server()
        .state()
        .connections
        .kick_device("phone-race", true);

    match upgrade.await.unwrap() {
        Err(refused) => {
            assert_eq!(refused.status, 403, "{}", refused.body);
            assert!(refused.body.contains("device_revoked"), "{}", refused.body);
        }
        Ok(mut socket) => {
            // It was registered in time to be cut off: it is told to wipe before it syncs.
            assert_eq!(closed, 1);
            let join =
                baton_core::sync::handshake::join(&"phone-x".to_owned(), &Default::default());
            let _ = socket.send(WsMessage::Binary(join.encode().into())).await;
            let mut told = false;
            let close = tokio::time::timeout(WAIT, async {
                while let Some(Ok(frame)) = socket.next().await {
                    match frame {
                        WsMessage::Binary(bytes) => match Message::decode(&bytes).unwrap() {
                            Message::Error { message, .. } => told |= message == REVOKED_ERROR,
                            other => panic!("a revoked device was answered: {other:?}"),
                        },
                        WsMessage::Close(frame) => return frame.map(|f| u16::from(f.code)),
                        _ => {}
                    }
                }
                None
            })
            .await
            .expect("the connection was not closed");
            assert!(told, "told to wipe");
            assert_eq!(close, Some(4403));
        }
    }
    server.until_connections(0).await;
}

/// A nurse syncing a 4W task loses her 4W membership: her open socket stops receiving the task
/// at once, her next sync of it is answered `doc-unavailable` (and audited), and she is off the
/// unit's roster. Given back, the unit is open to her next sync on the same socket.
async fn a_nurse_who_loses_her_unit_stops_receiving_its_tasks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token();
    let token = evans(&server, "phone-1");
    let index_4w = index_of(&server, &token, "4W").await;
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let consult = consult_on(&mut phone, index_4w).await;
    phone.open(consult).await.unwrap();

    let okafor_token = server.token("rn.okafor", "phone-2", &["nurse"], &["4W"]);
    let mut okafor = Phone::connect(server.addr(), &okafor_token).await.unwrap();
    let doc = okafor.open(consult).await.unwrap();
    // While she holds the unit, a colleague's note reaches her.
    let author = Author::new("rn.okafor", "nurse", "phone-2");
    let note = |doc: &automerge::Automerge, text: &str| {
        baton_e2e::append(doc, &author, EventBody::Note { text: text.into() }).0
    };
    let doc = note(&doc, "first");
    okafor.push(consult, doc.clone()).await.unwrap();
    phone
        .wait_for(consult, |d| baton_e2e::event_count(d) == 2)
        .await;

    let (status, body) = server
        .delete("/api/v1/users/rn.evans/memberships/4W/nurse", Some(&admin))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connections_updated"], 1);

    let doc = note(&doc, "after she left the unit");
    okafor.push(consult, doc.clone()).await.unwrap();
    let synced = phone.listen(Duration::from_millis(1_000)).await;
    assert!(
        !synced.contains(&consult) && !synced.contains(&index_4w),
        "still receiving: {synced:?}"
    );
    assert_eq!(baton_e2e::event_count(phone.doc(consult)), 2);
    assert!(phone.closed.is_none(), "the socket stays open");
    // Her next sync of it, from scratch so that there is something to send.
    fresh_sync(&mut phone, consult);
    assert!(phone.open(consult).await.is_none(), "doc-unavailable");

    let (_, audit) = server
        .get(
            "/api/v1/audit/security?kind=document_outside_units&user=rn.evans",
            Some(&admin),
        )
        .await;
    assert!(
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["doc"] == consult.to_string()),
        "{audit}"
    );
    let (_, audit) = server
        .get(
            "/api/v1/audit/security?kind=membership_revoked",
            Some(&admin),
        )
        .await;
    assert_eq!(audit["records"][0]["user"], "admin", "{audit}");
    let doc = okafor.open(index_4w).await.unwrap();
    let roster = index::read(&doc).unwrap().roster;
    assert!(!roster.contains_key(&"rn.evans".into()), "{roster:?}");
    // REST follows the records too.
    let (status, _) = server
        .get(&format!("/api/v1/tasks/{consult}"), Some(&token))
        .await;
    assert_eq!(status, 403, "no role on any unit is left: no_access");

    // Given back: the same socket syncs the unit again, and she is on the roster.
    let (status, body) = server
        .put("/api/v1/users/rn.evans/memberships/4W/nurse", Some(&admin))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connections_updated"], 1);
    fresh_sync(&mut phone, consult);
    let back = phone.open(consult).await.expect("available again");
    assert_eq!(baton_e2e::event_count(&back), 3);
    okafor
        .wait_for(index_4w, |d| {
            index::read(d)
                .unwrap()
                .roster
                .contains_key(&"rn.evans".into())
        })
        .await;
}

async fn membership_changes_are_for_admins_and_known_records_only(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token();
    for path in [
        "/api/v1/users/nobody/memberships/4W/nurse",
        "/api/v1/users/rn.evans/memberships/5E/nurse",
        "/api/v1/users/rn.evans/memberships/4W/surgeon",
    ] {
        let (status, body) = server.put(path, Some(&admin)).await;
        assert_eq!(
            (status, &body["error"]),
            (404, &"not_found".into()),
            "{path}"
        );
    }
    let (status, _) = server
        .delete("/api/v1/users/rn.evans/memberships/ICU/nurse", Some(&admin))
        .await;
    assert_eq!(status, 404, "she holds no such membership");
    let (status, body) = server
        .put(
            "/api/v1/users/rn.evans/memberships/ICU/nurse",
            Some(&evans(&server, "phone-1")),
        )
        .await;
    assert_eq!((status, &body["error"]), (403, &"not_admin".into()));
    // A grant shows at once in what the session may see.
    let (status, _) = server
        .put("/api/v1/users/rn.evans/memberships/ICU/nurse", Some(&admin))
        .await;
    assert_eq!(status, 200);
    let wide = server.token("rn.evans", "phone-1", &["nurse"], &["4W", "ICU"]);
    let (_, me) = server.get("/api/v1/me", Some(&wide)).await;
    assert_eq!(me["units"].as_array().unwrap().len(), 2, "{me}");
    let (_, audit) = server
        .get(
            "/api/v1/audit/security?kind=membership_granted",
            Some(&admin),
        )
        .await;
    let records = audit["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{audit}");
    assert!(
        records[0]["detail"]
            .as_str()
            .unwrap()
            .contains("nurse on ICU")
    );
}

async fn a_token_claim_alone_makes_no_one_an_admin(backend: Backend) {
    let server = TestServer::start(backend).await;
    // A nurse with a token that claims admin rights: the records do not list her.
    let claimed = server.token_with("rn.evans", "phone-1", &["nurse"], &["4W"], true, 3_600);
    let (status, body) = server.get("/api/v1/audit/security", Some(&claimed)).await;
    assert_eq!(
        (status, &body["error"]),
        (403, &"not_admin".into()),
        "{body}"
    );
    let (status, _) = server
        .post("/api/v1/devices/phone-2/revoke", Some(&claimed))
        .await;
    assert_eq!(status, 403);
    let (_, me) = server.get("/api/v1/me", Some(&claimed)).await;
    assert_eq!(me["admin"], false);
    // A token that claims admin rights for someone with no role anywhere gets nothing.
    let (status, body) = server
        .get(
            "/api/v1/me",
            Some(&server.token_with("rn.evans", "phone-1", &[], &["5E"], true, 3_600)),
        )
        .await;
    assert_eq!((status, &body["error"]), (403, &"no_access".into()));

    // The demo's admin is in the records: with the claim, an admin; without it, not.
    let (status, _) = server
        .get("/api/v1/audit/security", Some(&server.admin_token()))
        .await;
    assert_eq!(status, 200);
    let (_, me) = server.get("/api/v1/me", Some(&server.admin_token())).await;
    assert_eq!(me["admin"], true);
    let unclaimed = server.token_with("admin", "admin-console", &[], &[], false, 3_600);
    let (status, body) = server.get("/api/v1/me", Some(&unclaimed)).await;
    assert_eq!((status, &body["error"]), (403, &"no_access".into()));
}

async fn tokens_from_the_future_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let now = baton_server::now_ms() / 1000;
    let edited = |edit: &dyn Fn(&mut baton_server::auth::Claims)| {
        server.token_edited("rn.evans", "phone-1", &["nurse"], &["4W"], false, edit)
    };
    let not_yet = edited(&|c| c.nbf = Some(now + 600));
    let future = edited(&|c| c.iat = now + 600);
    for (token, code) in [
        (&not_yet, "token_not_yet_valid"),
        (&future, "token_issued_in_future"),
    ] {
        let (status, body) = server.get("/api/v1/me", Some(token)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some(code)),
            "{body}"
        );
        let refused = Phone::connect(server.addr(), token).await.err().unwrap();
        assert_eq!(refused.status, 401);
        assert!(refused.body.contains(code), "{}", refused.body);
    }
    // Within the leeway, clocks may differ; a past `nbf` is fine.
    for token in [
        edited(&|c| c.iat = now + 10),
        edited(&|c| c.nbf = Some(now + 10)),
        edited(&|c| c.nbf = Some(now - 60)),
    ] {
        let (status, body) = server.get("/api/v1/me", Some(&token)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, audit) = server
        .get(
            "/api/v1/audit/security?kind=refused_token",
            Some(&server.admin_token()),
        )
        .await;
    let details: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["detail"].as_str().unwrap())
        .collect();
    assert!(
        details.iter().any(|d| d.starts_with("token_not_yet_valid"))
            && details
                .iter()
                .any(|d| d.starts_with("token_issued_in_future")),
        "{details:?}"
    );
}

/// How long until the server closes `stream`, reading (and dropping) whatever it sends.
async fn closed_after(stream: &mut tokio::net::TcpStream, start: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server kept the connection open"),
        }
    }
}

async fn slow_headers_and_idle_connections_are_cut_off(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.header_read_timeout = baton_core::time::Span::from_millis(1_000);
        c.limits.idle_timeout = baton_core::time::Span::from_millis(2_500);
    })
    .await;
    let addr = server.addr();

    // Slowloris: headers that never end, a line every 100 ms.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: baton\r\n")
        .await
        .unwrap();
    let (mut read, mut write) = slow.into_split();
    let dribble = tokio::spawn(async move {
        for i in 0..200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let line = format!("X-Slow-{i}: still coming\r\n");
            if write.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 1024];
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("slow headers were let trickle on");
    dribble.abort();
    assert!(
        ended >= Duration::from_millis(900) && ended < Duration::from_millis(2_400),
        "closed after {ended:?}"
    );

    // A connection opened and never used is idle: closed after the idle timeout.
    let mut unused = tokio::net::TcpStream::connect(addr).await.unwrap();
    let ended = closed_after(&mut unused, Instant::now()).await;
    assert!(
        ended >= Duration::from_millis(2_300) && ended < Duration::from_millis(5_000),
        "closed after {ended:?}"
    );

    // A kept-alive connection: answered, then closed once idle for the idle timeout.
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: baton\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"ok") {
        let n = kept.read(&mut buf).await.unwrap();
        assert!(n > 0, "no answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    let ended = closed_after(&mut kept, answered).await;
    assert!(
        ended >= Duration::from_millis(2_300) && ended < Duration::from_millis(5_000),
        "closed after {ended:?}"
    );

    // A sync connection is not an idle HTTP connection: it lives on past both.
    let token = evans(&server, "phone-1");
    let index_id = index_of(&server, &token, "4W").await;
    let mut phone = Phone::connect(addr, &token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert!(phone.open(index_id).await.is_some());
}

async fn sockets_are_capped_per_device_user_and_address(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.max_connections_per_device = 2;
        c.limits.max_connections_per_user = 3;
        c.limits.max_connections_per_address = 5;
    })
    .await;
    let addr = server.addr();
    let refused_with = |refused: baton_e2e::Refused, code: &str| {
        assert_eq!(refused.status, 429, "{}", refused.body);
        let body: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
        assert_eq!(body["error"], code, "{body}");
    };

    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(
            Phone::connect(addr, &evans(&server, "phone-1"))
                .await
                .unwrap(),
        );
    }
    let refused = Phone::connect(addr, &evans(&server, "phone-1"))
        .await
        .err()
        .unwrap();
    refused_with(refused, "too_many_connections_device");
    open.push(
        Phone::connect(addr, &evans(&server, "tablet-1"))
            .await
            .unwrap(),
    );
    let refused = Phone::connect(addr, &evans(&server, "desk-1"))
        .await
        .err()
        .unwrap();
    refused_with(refused, "too_many_connections_user");
    let okafor = |device: &str| server.token("rn.okafor", device, &["nurse"], &["4W"]);
    open.push(Phone::connect(addr, &okafor("phone-2")).await.unwrap());
    open.push(Phone::connect(addr, &okafor("phone-3")).await.unwrap());
    let refused = Phone::connect(addr, &okafor("phone-4"))
        .await
        .err()
        .unwrap();
    refused_with(refused, "too_many_connections_address");
    server.until_connections(5).await;

    // A closed connection frees its place.
    open.remove(0).close().await;
    server.until_connections(4).await;
    let mut again = Phone::connect(addr, &evans(&server, "phone-1"))
        .await
        .unwrap();
    let index_id = index_of(&server, &evans(&server, "phone-1"), "4W").await;
    assert!(again.open(index_id).await.is_some());
}

async fn documents_are_capped_per_user_across_connections(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.max_documents = 10;
        c.limits.max_documents_per_user = 2;
    })
    .await;
    let token = evans(&server, "phone-1");
    let index_id = index_of(&server, &token, "4W").await;
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let consult = consult_on(&mut phone, index_id).await;
    phone.open(consult).await.unwrap();

    // Her tablet is another connection, but the same user: the limit is across both.
    let mut tablet = Phone::connect(server.addr(), &evans(&server, "tablet-1"))
        .await
        .unwrap();
    let refused = tablet
        .push(index_id, automerge::Automerge::new())
        .await
        .unwrap_err();
    assert!(
        refused.contains("limit max_documents_per_user (2)"),
        "{refused}"
    );
    assert!(tablet.doc(index_id).get_heads().is_empty(), "nothing sent");
    // Another user is not held back by hers.
    let mut okafor = Phone::connect(
        server.addr(),
        &server.token("rn.okafor", "phone-2", &["nurse"], &["4W"]),
    )
    .await
    .unwrap();
    assert!(okafor.open(index_id).await.is_some());

    // Closing the phone frees its documents for the tablet.
    phone.close().await;
    server.until_connections(2).await;
    fresh_sync(&mut tablet, index_id);
    assert!(tablet.open(index_id).await.is_some());
}
