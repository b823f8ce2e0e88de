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
);

/// A 4W task's id, as its nurse finds it.
async fn a_4w_task(server: &TestServer) -> DocumentId {
    let token = server.token("rn.evans", "phone-1", &["nurse"], &["4W"]);
    let index_id = baton_e2e::index_of(server.addr(), &token, "4W").await;
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let doc = phone.open(index_id).await.unwrap();
    let index = baton_core::index::read(&doc).unwrap();
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
    assert_eq!(all.len(), 8, "{all:?}");
    let ats: Vec<i64> = all.iter().map(|r| r["at"].as_i64().unwrap()).collect();
    assert!(
        ats.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {ats:?}"
    );

    let kinds = |list: &[serde_json::Value]| -> Vec<String> {
        list.iter()
            .map(|r| r["kind"].as_str().unwrap().to_owned())
            .collect()
    };
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
        8
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
