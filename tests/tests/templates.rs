//! Publishing a template version over REST: checked like the shipped ones, with errors naming
//! the step and field; new tasks start with the new version while running ones keep theirs; and
//! the programs list follows. On SQLite and Postgres.
#![allow(clippy::unwrap_used)]

use baton_e2e::{Backend, TestServer, http_typed};
use serde_json::{Value, json};

baton_e2e::on_both_backends!(a_new_version_serves_new_tasks_and_running_ones_keep_theirs);

const CONSULT: &str = include_str!("../../core/templates/consult.toml");
const DISCHARGE: &str = include_str!("../../core/templates/discharge.toml");

async fn publish(server: &TestServer, token: &str, content_type: &str, body: &str) -> (u16, Value) {
    http_typed(
        server.addr(),
        "POST",
        "/api/v1/templates",
        Some(token),
        content_type,
        body.as_bytes(),
    )
    .await
}

async fn a_new_version_serves_new_tasks_and_running_ones_keep_theirs(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token();
    let (_, before) = server
        .get("/api/v1/tasks?template=consult&unit=4W", Some(&admin))
        .await;
    let running = before["tasks"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(before["tasks"][0]["template_version"], 1);

    // Version 2 of the consult: a ten-minute acknowledgment window.
    let v2 = CONSULT.replacen("version = 1", "version = 2", 1).replacen(
        "ack_window = \"30m\"",
        "ack_window = \"10m\"",
        1,
    );
    let (status, body) = publish(&server, &admin, "application/toml", &v2).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (&body["id"], &body["version"]),
        (&"consult".into(), &2.into())
    );
    let (status, body) = publish(&server, &admin, "application/toml", &v2).await;
    assert_eq!(
        (status, &body["error"], &body["field"]),
        (409, &"version_exists".into(), &"version".into()),
        "{body}"
    );

    // Devices learn of it; the program lists its newest version.
    let nurse = server.token("rn.evans", "phone-1", &["nurse"], &["4W"]);
    let (_, templates) = server.get("/api/v1/templates", Some(&nurse)).await;
    let versions: Vec<i64> = templates["templates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["id"] == "consult")
        .map(|t| t["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2]);
    let (_, programs) = server.get("/api/v1/programs", Some(&nurse)).await;
    let listed: Vec<(String, i64)> = programs["programs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["templates"].as_array().unwrap().clone())
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(listed.contains(&("consult".to_owned(), 2)), "{programs}");

    // A new consult starts with version 2; the running one keeps version 1.
    let ehr = server.integration_token("ehr", &["4W"]);
    let (status, opened) = server
        .post_json(
            "/api/v1/triggers",
            Some(&ehr),
            &json!({
                "template": "consult", "unit": "4W",
                "subject": { "ref": "enc-99", "label": "Bed 9" }, "idempotency_key": "v2-consult",
            }),
        )
        .await;
    assert_eq!(status, 201, "{opened}");
    let (_, view) = server
        .get(
            &format!("/api/v1/tasks/{}", opened["task_id"].as_str().unwrap()),
            Some(&admin),
        )
        .await;
    assert_eq!(view["meta"]["template"]["version"], 2, "{view}");
    let window =
        view["next_due"]["at"].as_i64().unwrap() - view["state"]["created_at"].as_i64().unwrap();
    assert_eq!(window, 10 * 60_000, "the new version's window");
    let (_, kept) = server
        .get(&format!("/api/v1/tasks/{running}"), Some(&admin))
        .await;
    assert_eq!(kept["meta"]["template"]["version"], 1);

    // What does not check out names the step and the field.
    let broken = DISCHARGE
        .replacen("version = 1", "version = 2", 1)
        .replacen("due = \"3h\"", "due = \"soon\"", 1);
    let (status, body) = publish(&server, &admin, "application/toml", &broken).await;
    assert_eq!(
        (status, &body["error"]),
        (422, &"invalid_template".into()),
        "{body}"
    );
    assert_eq!(body["field"], "steps.medication_reconciliation", "{body}");
    assert!(body["message"].as_str().unwrap().contains("due"), "{body}");
    let (status, body) = publish(&server, &admin, "text/plain", &v2).await;
    assert_eq!((status, &body["field"]), (422, &"body".into()), "{body}");
    let unit_admin = server.token_with("admin.4w", "console-4w", &[], &[], true, 3_600);
    let (status, body) = publish(&server, &unit_admin, "application/toml", &v2).await;
    assert_eq!(
        (status, &body["error"]),
        (403, &"not_server_admin".into()),
        "{body}"
    );

    // On the record, and still there after a restart.
    let (_, audit) = server
        .get(
            "/api/v1/audit/security?kind=template_published",
            Some(&admin),
        )
        .await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 1, "{audit}");
    let mut server = server;
    server.restart().await;
    let (_, templates) = server
        .get("/api/v1/templates", Some(&server.admin_token()))
        .await;
    assert!(
        templates["templates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == "consult" && t["version"] == 2)
    );
}
