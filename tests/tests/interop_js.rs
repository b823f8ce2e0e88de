//! Stock JavaScript automerge-repo clients (npm `@automerge/automerge-repo` with its WebSocket
//! adapter) act as phones through the Baton server, written from `docs/protocol.md` alone:
//! they bootstrap from `/api/v1/me`, open the unit index and a task, append valid events and see
//! each other's. What they invent, or forge, is refused: interop opens no hole in validation.
#![allow(clippy::unwrap_used)]

use baton_e2e::{Backend, TestServer, js};
use serde_json::{Value, json};
use std::time::Duration;

fn phone(server: &TestServer, user: &str, role: &str, device: &str, unit: &str) -> Value {
    json!({
        "http": format!("http://{}", server.addr()),
        "ws": format!("ws://{}", server.addr()),
        "token": server.token(user, device, &[role], &[unit]),
        "user": user,
        "role": role,
        "device": device,
    })
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

/// The newest security audit records of `kind`.
async fn audit(server: &TestServer, kind: &str) -> Vec<Value> {
    let (status, body) = server
        .get(
            "/api/v1/audit/security?limit=1000",
            Some(&server.admin_token()),
        )
        .await;
    assert_eq!(status, 200);
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == kind)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_js_phones_append_events_and_see_each_other() {
    let server = TestServer::start(Backend::Sqlite).await;
    let nurse = with(
        phone(&server, "rn.evans", "nurse", "js-phone-1", "4W"),
        json!({ "mode": "note", "template": "discharge", "text": "Daughter will drive",
                "expect": ["Daughter will drive", "Ride booked for 14:00"] }),
    );
    let manager = with(
        phone(&server, "cm.garcia", "case_manager", "js-phone-2", "4W"),
        json!({ "mode": "note", "template": "discharge", "text": "Ride booked for 14:00",
                "expect": ["Daughter will drive", "Ride booked for 14:00"] }),
    );
    // Both write at once, each on its own copy, and each must see the other's note.
    let (a, b) = tokio::join!(js::run("phone.mjs", &nurse), js::run("phone.mjs", &manager));
    assert_eq!(a["ok"], true, "{a}");
    assert_eq!(b["ok"], true, "{b}");
    assert_eq!(a["task"], b["task"]);

    // The server folded both into the task's history, in its own view.
    let task = a["task"].as_str().unwrap();
    let token = server.token("rn.evans", "js-phone-1", &["nurse"], &["4W"]);
    let (status, view) = server
        .get(&format!("/api/v1/tasks/{task}"), Some(&token))
        .await;
    assert_eq!(status, 200, "{view}");
    let history = view["state"]["history"].as_array().unwrap();
    for event in [&a["event"], &b["event"]] {
        let entry = history
            .iter()
            .find(|h| &h["event"] == event)
            .unwrap_or_else(|| panic!("{event} not in {view}"));
        assert_eq!(entry["kind"], "note", "{entry}");
    }
    assert!(audit(&server, "forged_event").await.is_empty());
    assert!(audit(&server, "invalid_change").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_js_phone_cannot_forge_or_invent() {
    let server = TestServer::start(Backend::Sqlite).await;
    let forger = with(
        phone(&server, "rn.evans", "nurse", "js-phone-3", "4W"),
        json!({ "mode": "forge", "template": "consult", "text": "I am the physician" }),
    );
    let out = js::run("phone.mjs", &forger).await;
    assert_eq!(out["ok"], true, "{out}");
    let task = out["task"].as_str().unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while audit(&server, "forged_event").await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no forged_event record"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = &audit(&server, "forged_event").await[0];
    assert_eq!(record["user"], "rn.evans");
    assert_eq!(record["device"], "js-phone-3");
    let token = server.token("dr.fox", "phone-2", &["physician"], &["4W"]);
    let (_, view) = server
        .get(&format!("/api/v1/tasks/{task}"), Some(&token))
        .await;
    let history = view["state"]["history"].as_array().unwrap();
    assert!(
        history.iter().all(|h| h["event"] != out["event"]),
        "the forged note was stored: {view}"
    );

    // A document that is not a task is refused, and nobody can fetch it.
    let inventor = with(
        phone(&server, "rn.evans", "nurse", "js-phone-4", "4W"),
        json!({ "mode": "invent" }),
    );
    let out = js::run("phone.mjs", &inventor).await;
    assert_eq!(out["ok"], true, "{out}");
    let url = out["url"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while audit(&server, "invalid_change").await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no invalid_change record"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut other = baton_e2e::Phone::connect(server.addr(), &token)
        .await
        .unwrap();
    let id = baton_core::sync::DocumentId::from_url(url).unwrap();
    assert!(
        other.open(id).await.is_none(),
        "an invented document was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_js_phone_cannot_crash_the_server_with_a_deep_event() {
    let server = TestServer::start(Backend::Sqlite).await;
    let attacker = with(
        phone(&server, "rn.evans", "nurse", "js-phone-5", "4W"),
        json!({ "mode": "nest", "template": "consult", "text": "deep" }),
    );
    let out = js::run("phone.mjs", &attacker).await;
    assert_eq!(out["ok"], true, "{out}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while audit(&server, "invalid_change").await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no invalid_change record"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = &audit(&server, "invalid_change").await[0];
    assert!(
        record["detail"].as_str().unwrap_or("").contains("deep"),
        "{record}"
    );

    // The server is up, and an honest phone's note on the same task still goes through.
    let honest = with(
        phone(&server, "rn.evans", "nurse", "js-phone-6", "4W"),
        json!({ "mode": "note", "template": "consult", "text": "after the attack", "expect": ["after the attack"] }),
    );
    let after = js::run("phone.mjs", &honest).await;
    assert_eq!(after["ok"], true, "{after}");
    assert_eq!(after["task"], out["task"]);
    let token = server.token("dr.fox", "phone-2", &["physician"], &["4W"]);
    let task = out["task"].as_str().unwrap();
    let (_, view) = server
        .get(&format!("/api/v1/tasks/{task}"), Some(&token))
        .await;
    let history = view["state"]["history"].as_array().unwrap();
    assert!(
        history.iter().all(|h| h["event"] != out["event"]),
        "the nested note was stored: {view}"
    );
}
