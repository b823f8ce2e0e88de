//! An administrator reassigns and cancels tasks over REST: each action is an event in the task's
//! history by the administrator (role `admin`), under the task's rules, within the units they
//! administer, and on the security audit; no device may write as an administrator. On SQLite
//! and Postgres.
#![allow(clippy::unwrap_used)]

use baton_core::{Author, EventBody};
use baton_e2e::{Backend, Phone, TestServer, append};
use serde_json::{Value, json};

baton_e2e::on_both_backends!(admins_reassign_and_cancel_as_events_of_their_own);

async fn task_of(server: &TestServer, unit: &str, template: &str) -> String {
    let (_, page) = server
        .get(
            &format!("/api/v1/tasks?unit={unit}&template={template}"),
            Some(&server.admin_token()),
        )
        .await;
    page["tasks"][0]["id"].as_str().unwrap().to_owned()
}

fn refused(answer: &(u16, Value), status: u16, error: &str) {
    assert_eq!(
        (answer.0, answer.1["error"].as_str()),
        (status, Some(error)),
        "{}",
        answer.1
    );
}

async fn admins_reassign_and_cancel_as_events_of_their_own(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token();
    let discharge = task_of(&server, "4W", "discharge").await;
    let reassign = format!("/api/v1/tasks/{discharge}/reassign");

    // Nobody owns it: assigned, by the administrator, in the owner role.
    let done = server
        .post_json(&reassign, Some(&admin), &json!({ "user": "cm.garcia" }))
        .await;
    assert_eq!(done.0, 200, "{}", done.1);
    assert_eq!(done.1["kind"], "assigned");
    let (_, view) = server
        .get(&format!("/api/v1/tasks/{discharge}"), Some(&admin))
        .await;
    assert_eq!(view["state"]["owner"]["user"], "cm.garcia", "{view}");
    let last = view["state"]["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last["actor"],
        json!({ "user": "admin", "role": "admin" }),
        "{last}"
    );
    assert_eq!(last["event"], done.1["event_id"]);
    // The rules still hold: the same owner again; someone without the role.
    refused(
        &server
            .post_json(&reassign, Some(&admin), &json!({ "user": "cm.garcia" }))
            .await,
        409,
        "refused",
    );
    refused(
        &server
            .post_json(&reassign, Some(&admin), &json!({ "user": "rn.evans" }))
            .await,
        409,
        "not_a_member",
    );
    refused(
        &server
            .post_json(
                &reassign,
                Some(&admin),
                &json!({ "user": "cm.garcia", "why": "x" }),
            )
            .await,
        422,
        "invalid_field",
    );

    // A unit's admin acts on their unit's tasks alone.
    let unit_admin = server.token_with("admin.4w", "console-4w", &[], &[], true, 3_600);
    let icu = task_of(&server, "ICU", "consult").await;
    refused(
        &server
            .post_json(
                &format!("/api/v1/tasks/{icu}/cancel"),
                Some(&unit_admin),
                &json!({ "reason": "duplicate" }),
            )
            .await,
        404,
        "not_found",
    );
    let cancel = format!("/api/v1/tasks/{discharge}/cancel");
    let done = server
        .post_json(
            &cancel,
            Some(&unit_admin),
            &json!({ "reason": "Patient transferred to another hospital" }),
        )
        .await;
    assert_eq!(
        (done.0, &done.1["kind"]),
        (200, &"cancelled".into()),
        "{}",
        done.1
    );
    let (_, view) = server
        .get(&format!("/api/v1/tasks/{discharge}"), Some(&admin))
        .await;
    assert_eq!(view["state"]["status"], "cancelled");
    refused(
        &server
            .post_json(&cancel, Some(&unit_admin), &json!({ "reason": "again" }))
            .await,
        409,
        "refused",
    );
    let nurse = server.token("rn.evans", "phone-1", &["nurse"], &["4W"]);
    let (status, _) = server
        .post_json(&cancel, Some(&nurse), &json!({ "reason": "x" }))
        .await;
    assert_eq!(status, 403);

    // On the security audit, by who did it.
    let (_, audit) = server
        .get("/api/v1/audit/security?limit=1000", Some(&admin))
        .await;
    let mine: Vec<(&str, &str)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"].as_str().unwrap().starts_with("task_"))
        .map(|r| (r["kind"].as_str().unwrap(), r["user"].as_str().unwrap()))
        .collect();
    assert_eq!(
        mine,
        [("task_cancelled", "admin.4w"), ("task_assigned", "admin")]
    );

    // No device writes as an administrator.
    let consult = task_of(&server, "4W", "consult").await;
    let mut phone = Phone::connect(server.addr(), &nurse).await.unwrap();
    let doc = phone.open(consult.parse().unwrap()).await.unwrap();
    let (forged, _) = append(
        &doc,
        &Author::new("rn.evans", "admin", "phone-1"),
        EventBody::Note {
            text: "as an admin".into(),
        },
    );
    let error = phone
        .push(consult.parse().unwrap(), forged)
        .await
        .unwrap_err();
    assert!(error.contains("role"), "{error}");
}
