//! The security audit end to end: records that a caller can provoke are throttled per device
//! and per address with counted overflow, REST reads outside a caller's units are recorded like
//! sync ones, and the audit API filters and pages. Every scenario runs on SQLite and Postgres.
#![allow(clippy::unwrap_used)]

use baton_core::sync::DocumentId;
use baton_e2e::{Backend, Phone, TestServer, http_from};
use std::net::IpAddr;

baton_e2e::on_both_backends!(
    rest_reads_outside_units_are_audited_and_throttled,
    the_audit_api_filters_and_pages,
    the_event_trail_shows_device_claims_beside_receipt_and_exports,
);

/// A 4W task's id, as its nurse finds it.
async fn a_4w_task(server: &TestServer) -> DocumentId {
    let token = server.token("rn.evans", "phone-1", &["nurse"], &["4W"]);
    let index_id = baton_e2e::index_of(server.addr(), &token, "4W").await;
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let doc = phone.open(index_id).await.unwrap();
    let index = baton_core::index::read(&doc).unwrap();
    phone.close().await;
    // The connection is on the audit, opened and closed, once the server has seen it go.
    for _ in 0..200 {
        if !records(server, "kind=sync_closed&device=phone-1")
            .await
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    index.tasks.keys().next().unwrap().parse().unwrap()
}

async fn records(server: &TestServer, query: &str) -> Vec<serde_json::Value> {
    let (status, body) = server
        .get(
            &format!("/api/v1/audit/security?limit=1000&{query}"),
            Some(&server.admin_token()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["records"].as_array().unwrap().clone()
}

async fn rest_reads_outside_units_are_audited_and_throttled(backend: Backend) {
    let server = TestServer::start(backend).await;
    let task = a_4w_task(&server).await;
    let path = format!("/api/v1/tasks/{task}");
    let addr = server.addr();

    // An ICU nurse reads a 4W task over REST: answered as if it did not exist, and recorded.
    let silva = server.token("rn.silva", "phone-icu", &["nurse"], &["ICU"]);
    let (status, body) = server.get(&path, Some(&silva)).await;
    assert_eq!((status, &body["error"]), (404, &"not_found".into()));
    let found = records(&server, "kind=document_outside_units").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["user"], "rn.silva");
    assert_eq!(found[0]["device"], "phone-icu");
    assert_eq!(found[0]["doc"], task.to_string());

    // One device from thirty addresses: ten records in the window, the rest counted.
    for i in 2..32u8 {
        let from = IpAddr::from([127, 0, 0, i]);
        let (status, _) = http_from(from, addr, "GET", &path, Some(&silva)).await;
        assert_eq!(status, 404);
    }
    let found = records(&server, "kind=document_outside_units&device=phone-icu").await;
    assert_eq!(found.len(), 10, "{found:?}");
    // Thirty devices from one address: ten more records (that address's own allowance).
    for i in 0..30 {
        let device = format!("shared-{i}");
        let token = server.token("rn.moreau", &device, &["nurse"], &["ICU"]);
        let from = IpAddr::from([127, 0, 0, 99]);
        let (status, _) = http_from(from, addr, "GET", &path, Some(&token)).await;
        assert_eq!(status, 404);
    }
    let found = records(&server, "kind=document_outside_units&user=rn.moreau").await;
    assert_eq!(found.len(), 10, "{found:?}");
    let unrecorded = server
        .metric("baton_audit_unrecorded_total{kind=\"document_outside_units\"}")
        .await;
    assert_eq!(
        unrecorded,
        Some(41.0),
        "21 of the device's and 20 of the address's"
    );

    // Whoever may see the task reads it, unrecorded.
    let fox = server.token("dr.fox", "phone-2", &["physician"], &["4W"]);
    let (status, _) = server.get(&path, Some(&fox)).await;
    assert_eq!(status, 200);
    let found = records(&server, "kind=document_outside_units&user=dr.fox").await;
    assert!(found.is_empty());
}

fn kinds(list: &[serde_json::Value]) -> Vec<String> {
    list.iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_audit_api_filters_and_pages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let task = a_4w_task(&server).await;
    let admin = server.admin_token();
    // Records of a few kinds, users and devices.
    let silva = server.token("rn.silva", "phone-icu", &["nurse"], &["ICU"]);
    for _ in 0..3 {
        server
            .get(&format!("/api/v1/tasks/{task}"), Some(&silva))
            .await;
    }
    let mut tampered = server.token("rn.evans", "phone-1", &["nurse"], &["4W"]);
    tampered.insert(tampered.len() - 3, 'x');
    for _ in 0..4 {
        server.get("/api/v1/me", Some(&tampered)).await;
    }
    let (status, _) = server
        .put("/api/v1/users/rn.silva/memberships/4W/nurse", Some(&admin))
        .await;
    assert_eq!(status, 200);

    let all = records(&server, "").await;
    assert_eq!(all.len(), 10, "{all:?}");
    assert_eq!(
        kinds(&records(&server, "device=phone-1").await),
        ["sync_closed", "sync_connected"],
        "the phone's sync connection, newest first"
    );
    let ats: Vec<i64> = all.iter().map(|r| r["at"].as_i64().unwrap()).collect();
    assert!(
        ats.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {ats:?}"
    );

    assert_eq!(
        kinds(&records(&server, "kind=refused_token").await),
        ["refused_token"; 4]
    );
    let silvas = records(&server, "user=rn.silva").await;
    assert_eq!(kinds(&silvas), ["document_outside_units"; 3]);
    assert_eq!(records(&server, "device=phone-icu").await, silvas);
    assert_eq!(
        kinds(&records(&server, "user=admin&device=admin-console").await),
        ["membership_granted"]
    );
    assert!(records(&server, "kind=forged_event").await.is_empty());
    // `since` is inclusive, `until` exclusive.
    let (newest, oldest) = (ats[0], ats[ats.len() - 1]);
    assert_eq!(
        records(&server, &format!("since={newest}")).await.len(),
        ats.iter().filter(|a| **a >= newest).count()
    );
    assert_eq!(records(&server, &format!("until={oldest}")).await.len(), 0);
    assert_eq!(
        records(&server, &format!("since={oldest}&until={}", newest + 1))
            .await
            .len(),
        10
    );

    // Pages of three, with new records arriving between pages: every record that was there is
    // on exactly one page, in order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        let query = match &cursor {
            Some(c) => format!("/api/v1/audit/security?limit=3&cursor={c}"),
            None => "/api/v1/audit/security?limit=3".to_owned(),
        };
        let (status, body) = server.get(&query, Some(&admin)).await;
        assert_eq!(status, 200, "{body}");
        paged.extend(body["records"].as_array().unwrap().iter().cloned());
        // A new record meanwhile: newer than every page still to come.
        server.get("/api/v1/me", Some(&tampered)).await;
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(page < 10, "the pages never end");
    }
    assert_eq!(paged, all);

    let (status, body) = server
        .get("/api/v1/audit/security?cursor=not-a-cursor", Some(&admin))
        .await;
    assert_eq!(
        (status, &body["error"]),
        (422, &"invalid_parameter".into()),
        "{body}"
    );
}

/// The events of `GET /api/v1/audit/events` (one page) for `query`, as `token`.
async fn trail(
    server: &TestServer,
    query: &str,
    token: &str,
) -> (Vec<serde_json::Value>, Option<String>) {
    let (status, body) = server
        .get(&format!("/api/v1/audit/events?{query}"), Some(token))
        .await;
    assert_eq!(status, 200, "{body}");
    (
        body["events"].as_array().unwrap().clone(),
        body["next_cursor"].as_str().map(str::to_owned),
    )
}

async fn the_event_trail_shows_device_claims_beside_receipt_and_exports(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token();
    // A nurse's phone whose own clock is two hours behind notes something on a 4W task.
    let token = server.token("rn.evans", "phone-1", &["nurse"], &["4W"]);
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let task = baton_e2e::listed_task(&mut phone, server.addr(), &token, "4W", "discharge").await;
    let doc = phone.open(task).await.unwrap();
    let mut written = baton_core::TaskDoc::from_automerge(doc).unwrap();
    written.set_actor(automerge::ActorId::random());
    let templates = baton_core::TemplateRegistry::shipped();
    let template = templates.get(&written.meta().template).unwrap();
    let slow_clock = baton_server::now_ms() - 2 * 3_600_000;
    let before = baton_server::now_ms();
    let note = written
        .append(
            template,
            &baton_core::Author::new("rn.evans", "nurse", "phone-1"),
            &mut baton_core::HlcClock::new(),
            slow_clock,
            baton_core::EventBody::Note {
                text: "Family on the way".into(),
            },
        )
        .unwrap();
    phone.push(task, written.into_automerge()).await.unwrap();
    let after = baton_server::now_ms();
    phone.close().await;

    // The task's trail: the demo's events, then the note, each as received.
    let (events, _) = trail(&server, &format!("task=automerge:{task}"), &admin).await;
    let noted = events.last().unwrap();
    assert_eq!(noted["event_id"], note.id.to_string());
    assert_eq!(
        (
            &noted["kind"],
            &noted["user"],
            &noted["role"],
            &noted["device"],
            &noted["unit"]
        ),
        (
            &"note".into(),
            &"rn.evans".into(),
            &"nurse".into(),
            &"phone-1".into(),
            &"4W".into()
        )
    );
    assert_eq!(
        noted["device_time"], slow_clock,
        "the device's clock, shown as it was"
    );
    assert_eq!(noted["stamp"], note.hlc.to_string());
    assert_eq!(noted["stamp_at"], note.hlc.wall);
    let received = noted["received_at"].as_i64().unwrap();
    assert!((before..=after).contains(&received), "{noted}");
    assert_eq!(noted["late"], false);
    assert_eq!(noted["hash"].as_str().unwrap().len(), 64);
    assert_eq!(noted["heads"].as_array().unwrap().len(), 1);
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in the order received: {seqs:?}"
    );
    assert!(events.iter().all(|e| e["task_id"] == task.to_string()));
    // By user and device; by time received.
    let (by_user, _) = trail(&server, "user=rn.evans", &admin).await;
    assert!(by_user.contains(noted));
    assert!(by_user.iter().all(|e| e["user"] == "rn.evans"));
    let (by_other, _) = trail(&server, "user=dr.fox", &admin).await;
    assert!(!by_other.contains(noted));
    let (by_device, _) = trail(&server, "device=phone-1", &admin).await;
    assert_eq!(by_device, vec![noted.clone()]);
    let (since, _) = trail(&server, &format!("since={received}"), &admin).await;
    assert!(since.contains(noted));
    let (until, _) = trail(&server, &format!("until={received}"), &admin).await;
    assert!(!until.contains(noted));

    // Every unit's events for the server's admin; a unit's admin sees their unit's only.
    let (everything, _) = trail(&server, "limit=1000", &admin).await;
    let units: std::collections::BTreeSet<&str> = everything
        .iter()
        .map(|e| e["unit"].as_str().unwrap())
        .collect();
    assert_eq!(units, ["4W", "ICU"].into_iter().collect());
    let unit_admin = server.token_with("admin.4w", "admin-4w-console", &[], &[], true, 3_600);
    let (theirs, _) = trail(&server, "limit=1000", &unit_admin).await;
    let only_4w: Vec<&serde_json::Value> =
        everything.iter().filter(|e| e["unit"] == "4W").collect();
    assert_eq!(theirs.iter().collect::<Vec<_>>(), only_4w);
    let (status, body) = server
        .get("/api/v1/audit/events?unit=ICU", Some(&unit_admin))
        .await;
    assert_eq!(
        (status, &body["error"]),
        (403, &"not_unit_admin".into()),
        "{body}"
    );
    let nurse = server.token("rn.evans", "phone-1", &["nurse"], &["4W"]);
    let (status, _) = server.get("/api/v1/audit/events", Some(&nurse)).await;
    assert_eq!(status, 403);

    // Pages of two: every event once, in order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".to_owned(),
        };
        let (page, next) = trail(&server, &query, &admin).await;
        paged.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(paged.len() <= everything.len(), "the pages never end");
    }
    assert_eq!(paged, everything);

    // The export: the same events, one JSON object per line.
    let (status, body) = server
        .get("/api/v1/audit/events/export", Some(&admin))
        .await;
    assert_eq!(status, 200);
    let text = match body {
        serde_json::Value::String(text) => text,
        one => format!("{one}\n"),
    };
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, everything);
    let (status, body) = server
        .get(
            &format!("/api/v1/audit/events/export?task={task}"),
            Some(&unit_admin),
        )
        .await;
    assert_eq!(status, 200);
    let exported = match body {
        serde_json::Value::String(text) => text.lines().count(),
        _ => 1,
    };
    assert_eq!(exported, events.len());
}
