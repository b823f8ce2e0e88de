//! Triggers from the EHR and the task list: an integration's token opens tasks on its units by
//! `POST /api/v1/triggers` (one task per idempotency key, however often and however
//! concurrently it is sent, across restarts) and can do nothing else; `GET /api/v1/tasks` lists
//! the tasks of the caller's units from the summaries written with every change, filtered and
//! paged. Every scenario runs on SQLite and on Postgres.
#![allow(clippy::unwrap_used)]

use automerge::Automerge;
use baton_core::sync::DocumentId;
use baton_core::{Author, EventBody, TaskDoc};
use baton_e2e::{Backend, Phone, TestServer, append, index_of};
use serde_json::{Value, json};
use sqlx::Row;
use std::collections::BTreeSet;

baton_e2e::on_both_backends!(
    a_trigger_opens_a_task_the_unit_then_sees,
    one_key_opens_one_task,
    a_key_with_another_request_conflicts,
    a_key_survives_a_restart,
    integration_tokens_open_nothing_else,
    an_integration_triggers_only_on_its_units,
    user_tokens_may_not_trigger,
    bad_triggers_are_refused_naming_the_field,
    the_task_list_filters_by_status_owner_overdue_and_escalation,
    the_task_list_pages_without_duplicates_or_gaps,
    a_nurse_lists_only_her_units_tasks,
    bad_list_parameters_are_refused_naming_them,
    tasks_stored_before_summaries_are_listed_after_a_restart,
);

/// A consult requested from the EHR on 4W.
fn consult(key: &str, label: &str) -> Value {
    json!({
        "template": "consult",
        "unit": "4W",
        "subject": { "ref": format!("enc-{key}"), "label": label },
        "acuity": "routine",
        "note": "Consult requested in the EHR",
        "idempotency_key": key,
    })
}

async fn trigger(server: &TestServer, token: &str, body: &Value) -> (u16, Value) {
    server
        .post_json("/api/v1/triggers", Some(token), body)
        .await
}

/// Trigger `body`, which must open a task; its id.
async fn opened(server: &TestServer, token: &str, body: &Value) -> String {
    let (status, answer) = trigger(server, token, body).await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["task_id"].as_str().unwrap().to_owned();
    assert_eq!(answer["url"], format!("automerge:{id}"));
    id
}

async fn count(server: &TestServer, sql: &str) -> i64 {
    let mut db = server.database().await;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut db)
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

async fn task_count(server: &TestServer) -> i64 {
    count(server, "SELECT COUNT(*) FROM documents WHERE kind = 'task'").await
}

/// `GET /api/v1/tasks?query`, which must answer 200.
async fn list(server: &TestServer, token: &str, query: &str) -> Value {
    let (status, page) = server
        .get(&format!("/api/v1/tasks?{query}"), Some(token))
        .await;
    assert_eq!(status, 200, "{query}: {page}");
    page
}

fn ids(page: &Value) -> Vec<String> {
    page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The listed ids of `query`, as a set.
async fn listed(server: &TestServer, token: &str, query: &str) -> BTreeSet<String> {
    ids(&list(server, token, query).await).into_iter().collect()
}

fn nurse(server: &TestServer) -> String {
    server.token("rn.evans", "phone-1", &["nurse"], &["4W"])
}

async fn a_trigger_opens_a_task_the_unit_then_sees(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ehr = server.integration_token("epic", &["4W"]);
    let id = opened(&server, &ehr, &consult("ehr-1", "Bed 21 · P.Q.")).await;

    // On the unit's index before the trigger was answered: a nurse's phone finds it there.
    let token = nurse(&server);
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let index = index_of(server.addr(), &token, "4W").await;
    let listing = phone.open(index).await.unwrap();
    let on_index = baton_core::index::read(&listing).unwrap();
    assert!(on_index.tasks.contains_key(&id), "{id} on the 4W index");

    // Opened by the system, in the integration's name, with what the EHR sent.
    let doc: DocumentId = id.parse().unwrap();
    let task = TaskDoc::from_automerge(phone.open(doc).await.unwrap()).unwrap();
    assert_eq!(task.meta().subject.label, "Bed 21 · P.Q.");
    assert_eq!(task.meta().subject.reference, "enc-ehr-1");
    assert_eq!(task.meta().unit.as_str(), "4W");
    let events = task.events().unwrap().events;
    assert_eq!(events.len(), 1);
    assert!(events[0].actor.is_system(), "{:?}", events[0].actor);
    assert_eq!(events[0].device.as_str(), "integration:epic");
    match &events[0].body {
        EventBody::Created { note } => {
            assert_eq!(note.as_deref(), Some("Consult requested in the EHR"));
        }
        other => panic!("not a created event: {other:?}"),
    }
    let rows = server.server().state().db.task_events(&id).await.unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (r.kind.as_str(), r.user.as_str(), r.role.as_str()))
            .collect::<Vec<_>>(),
        [("created", "baton", "system")]
    );

    // Over REST too: the task, and its summary in the unit's list.
    let (status, view) = server
        .get(&format!("/api/v1/tasks/{id}"), Some(&token))
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["state"]["status"], "open");
    let page = list(&server, &token, "unit=4W&template=consult").await;
    let summary = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .expect("listed")
        .clone();
    assert_eq!(summary["url"], format!("automerge:{id}"));
    assert_eq!(summary["template"], "consult");
    assert_eq!(summary["unit"], "4W");
    assert_eq!(summary["status"], "open");
    assert_eq!(summary["owner"], Value::Null);
    assert_eq!(summary["owner_role"], "physician");
    assert_eq!(summary["acuity"], "routine");
    assert_eq!(summary["escalation_level"], 0);
    assert_eq!(summary["label"], "Bed 21 · P.Q.");
    assert_eq!(summary["overdue"], false);
    // A routine consult is to be acknowledged within 30 minutes of its creation.
    assert_eq!(
        summary["next_due_at"].as_i64(),
        Some(task.meta().created + 30 * 60_000)
    );
    assert!(summary["created_at"].as_i64().unwrap() > 0);
    assert!(summary["updated_at"].as_i64() >= summary["created_at"].as_i64());
}

async fn one_key_opens_one_task(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ehr = server.integration_token("epic", &["4W"]);
    let before = task_count(&server).await;

    let body = consult("ehr-2", "Bed 2");
    let first = trigger(&server, &ehr, &body).await;
    assert_eq!(first.0, 201, "{}", first.1);
    let again = trigger(&server, &ehr, &body).await;
    assert_eq!(again, first, "the same status and body");
    assert_eq!(task_count(&server).await, before + 1);
    let keys = count(
        &server,
        "SELECT COUNT(*) FROM trigger_requests WHERE idem_key = 'ehr-2'",
    )
    .await;
    assert_eq!(keys, 1);

    // Eight at once with one new key: one task, and every answer names it.
    let burst = consult("ehr-burst", "Bed 8");
    let answers =
        futures_util::future::join_all((0..8).map(|_| trigger(&server, &ehr, &burst))).await;
    assert!(answers.iter().all(|a| a.0 == 201), "{answers:?}");
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_ne!(answers[0], first);
    assert_eq!(task_count(&server).await, before + 2);
    let summaries = count(&server, "SELECT COUNT(*) FROM task_summaries").await;
    assert_eq!(summaries, before + 2, "one summary per task");

    // Another key is another task.
    let other = opened(&server, &ehr, &consult("ehr-3", "Bed 2")).await;
    assert_ne!(json!(other), first.1["task_id"]);
    assert_eq!(task_count(&server).await, before + 3);
}

async fn a_key_with_another_request_conflicts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ehr = server.integration_token("epic", &["4W"]);
    let id = opened(&server, &ehr, &consult("ehr-4", "Bed 4")).await;
    let before = task_count(&server).await;

    let mut changed = consult("ehr-4", "Bed 5");
    let (status, answer) = trigger(&server, &ehr, &changed).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"], "idempotency_key_reused");
    changed["acuity"] = json!("urgent");
    changed["subject"]["label"] = json!("Bed 4");
    let (status, answer) = trigger(&server, &ehr, &changed).await;
    assert_eq!(
        (status, answer["error"].clone()),
        (409, json!("idempotency_key_reused"))
    );
    assert_eq!(task_count(&server).await, before, "no task for a conflict");

    // The original request still answers with its task; another integration's keys are its own.
    assert_eq!(opened(&server, &ehr, &consult("ehr-4", "Bed 4")).await, id);
    let lab = server.integration_token("lab", &["4W"]);
    let theirs = opened(&server, &lab, &consult("ehr-4", "Bed 5")).await;
    assert_ne!(theirs, id);
    assert_eq!(task_count(&server).await, before + 1);
}

async fn a_key_survives_a_restart(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let ehr = server.integration_token("epic", &["4W"]);
    let body = consult("ehr-6", "Bed 6");
    let first = trigger(&server, &ehr, &body).await;
    assert_eq!(first.0, 201, "{}", first.1);
    let before = task_count(&server).await;

    server.restart().await;
    let again = trigger(&server, &ehr, &body).await;
    assert_eq!(again, first);
    assert_eq!(task_count(&server).await, before);
    let (status, answer) = trigger(&server, &ehr, &consult("ehr-6", "Bed 7")).await;
    assert_eq!(
        (status, answer["error"].clone()),
        (409, json!("idempotency_key_reused"))
    );
    let id = first.1["task_id"].as_str().unwrap().to_owned();
    assert!(listed(&server, &nurse(&server), "").await.contains(&id));
}

async fn integration_tokens_open_nothing_else(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ehr = server.integration_token("epic", &["4W"]);
    let id = opened(&server, &ehr, &consult("ehr-7", "Bed 7")).await;

    let refused = Phone::connect(server.addr(), &ehr).await.unwrap_err();
    assert_eq!(refused.status, 403, "{}", refused.body);
    let body: Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(body["error"], "integration_token");
    for path in [
        "/api/v1/me".to_owned(),
        "/api/v1/tasks".to_owned(),
        format!("/api/v1/tasks/{id}"),
        "/api/v1/audit/security".to_owned(),
    ] {
        let (status, body) = server.get(&path, Some(&ehr)).await;
        assert_eq!(
            (status, body["error"].clone()),
            (403, json!("integration_token")),
            "{path}: {body}"
        );
    }
    let (status, body) = server
        .post("/api/v1/devices/phone-1/revoke", Some(&ehr))
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (403, json!("integration_token")),
        "{body}"
    );
    let (status, body) = server
        .put("/api/v1/users/rn.evans/memberships/ICU/nurse", Some(&ehr))
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (403, json!("integration_token")),
        "{body}"
    );

    // Each refusal is in the security audit, as refused tokens are.
    let admin = server.admin_token();
    let (status, audit) = server
        .get("/api/v1/audit/security?kind=refused_token", Some(&admin))
        .await;
    assert_eq!(status, 200, "{audit}");
    let refusals = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["detail"]
                .as_str()
                .unwrap()
                .starts_with("integration_token:")
        })
        .count();
    assert_eq!(refusals, 7, "{audit}");
    // Nothing was revoked or granted.
    let (status, me) = server.get("/api/v1/me", Some(&nurse(&server))).await;
    assert_eq!(status, 200);
    assert_eq!(me["units"].as_array().unwrap().len(), 1, "{me}");
}

async fn an_integration_triggers_only_on_its_units(backend: Backend) {
    let server = TestServer::start(backend).await;
    // Issued by the command line, as an operator would.
    let issue = |units: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_baton-server-e2e"));
        command
            .args(["token", "issue", "--data-dir"])
            .arg(&server.data_dir);
        command.args(["--integration", "epic"]);
        for unit in units {
            command.args(["--unit", unit]);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let on_4w = issue(&["4W"]);
    let before = task_count(&server).await;

    let mut icu = consult("ehr-8", "Bed 8");
    icu["unit"] = json!("ICU");
    let (status, answer) = trigger(&server, &on_4w, &icu).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"], "unit_not_allowed");
    assert_eq!(task_count(&server).await, before);
    // The refused request took no key: a token that covers ICU opens the task with it.
    let on_both = issue(&["4W", "ICU"]);
    let id = opened(&server, &on_both, &icu).await;
    let silva = server.token("rn.silva", "phone-3", &["nurse"], &["ICU"]);
    assert!(listed(&server, &silva, "unit=ICU").await.contains(&id));

    // A unit the token names but the server does not know.
    let on_5e = issue(&["5E"]);
    let mut unknown = consult("ehr-9", "Bed 9");
    unknown["unit"] = json!("5E");
    let (status, answer) = trigger(&server, &on_5e, &unknown).await;
    assert_eq!(
        (status, answer["field"].clone()),
        (404, json!("unit")),
        "{answer}"
    );
    assert_eq!(task_count(&server).await, before + 1);

    // The command refuses an integration token without a unit, or with user claims.
    let bin = env!("CARGO_BIN_EXE_baton-server-e2e");
    for extra in [&[][..], &["--unit", "4W", "--user", "rn.evans"][..]] {
        let out = std::process::Command::new(bin)
            .args(["token", "issue", "--data-dir"])
            .arg(&server.data_dir)
            .args(["--integration", "epic"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?}");
        assert!(out.stdout.is_empty());
    }
}

async fn user_tokens_may_not_trigger(backend: Backend) {
    let server = TestServer::start(backend).await;
    let before = task_count(&server).await;
    let body = consult("ehr-10", "Bed 10");
    for token in [nurse(&server), server.admin_token()] {
        let (status, answer) = trigger(&server, &token, &body).await;
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["error"], "not_integration");
    }
    let (status, answer) = server.post_json("/api/v1/triggers", None, &body).await;
    assert_eq!(
        (status, answer["error"].clone()),
        (401, json!("token_missing"))
    );

    // A token that claims to be both is neither: not a user's session, not an integration.
    let both = server.token_edited("rn.evans", "phone-1", &["nurse"], &["4W"], false, |c| {
        c.integration = Some("epic".into());
    });
    let (status, answer) = trigger(&server, &both, &body).await;
    assert_eq!(
        (status, answer["error"].clone()),
        (401, json!("token_invalid")),
        "{answer}"
    );
    let (status, answer) = server.get("/api/v1/me", Some(&both)).await;
    assert_eq!(
        (status, answer["error"].clone()),
        (403, json!("integration_token"))
    );
    assert_eq!(task_count(&server).await, before);
}

async fn bad_triggers_are_refused_naming_the_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ehr = server.integration_token("epic", &["4W"]);
    let before = task_count(&server).await;
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 10] = [
        ("template", |b| {
            b.as_object_mut().unwrap().remove("template");
        }),
        ("unit", |b| b["unit"] = json!(["4W"])),
        ("subject", |b| {
            b.as_object_mut().unwrap().remove("subject");
        }),
        ("subject.label", |b| {
            b["subject"]["label"] = json!("L".repeat(129))
        }),
        ("subject.ref", |b| b["subject"]["ref"] = json!("   ")),
        ("note", |b| b["note"] = json!("n".repeat(2_001))),
        ("idempotency_key", |b| b["idempotency_key"] = json!("")),
        ("idempotency_key", |b| {
            b["idempotency_key"] = json!("has space")
        }),
        ("idempotency_key", |b| b["idempotency_key"] = json!(42)),
        ("idempotencyKey", |b| b["idempotencyKey"] = json!("ehr-11")),
    ];
    for (field, edit) in cases {
        let mut body = consult("ehr-11", "Bed 11");
        edit(&mut body);
        let (status, answer) = trigger(&server, &ehr, &body).await;
        assert_eq!(status, 422, "{field}: {answer}");
        assert_eq!(answer["error"], "invalid_field", "{field}: {answer}");
        assert_eq!(answer["field"], field, "{answer}");
    }
    // Well-formed, but naming what does not exist.
    let unknown: [(&str, Edit); 2] = [
        ("template", |b| b["template"] = json!("no_such_template")),
        ("acuity", |b| b["acuity"] = json!("critical")),
    ];
    for (field, edit) in unknown {
        let mut body = consult("ehr-11", "Bed 11");
        edit(&mut body);
        let (status, answer) = trigger(&server, &ehr, &body).await;
        assert_eq!(status, 404, "{field}: {answer}");
        assert_eq!(answer["error"], "not_found", "{field}: {answer}");
        assert_eq!(answer["field"], field, "{answer}");
    }
    let addr = server.addr();
    let (status, answer) = baton_e2e::http_with_body(
        addr,
        "POST",
        "/api/v1/triggers",
        Some(&ehr),
        b"{\"template\":",
    )
    .await;
    assert_eq!(
        (status, answer["error"].clone()),
        (400, json!("invalid_json"))
    );
    let mut huge = consult("ehr-11", "Bed 11");
    huge["note"] = json!("n".repeat(20_000));
    let (status, answer) = trigger(&server, &ehr, &huge).await;
    assert_eq!(
        (status, answer["error"].clone()),
        (413, json!("body_too_large"))
    );
    assert_eq!(task_count(&server).await, before);
    // None of them took the key.
    opened(&server, &ehr, &consult("ehr-11", "Bed 11")).await;
}

async fn the_task_list_filters_by_status_owner_overdue_and_escalation(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ehr = server.integration_token("epic", &["4W"]);
    let a = opened(&server, &ehr, &consult("f-a", "Bed A")).await;
    let b = opened(&server, &ehr, &consult("f-b", "Bed B")).await;
    let c = opened(&server, &ehr, &consult("f-c", "Bed C")).await;
    let ours = |set: BTreeSet<String>| -> Vec<&'static str> {
        [("a", &a), ("b", &b), ("c", &c)]
            .into_iter()
            .filter(|(_, id)| set.contains(id.as_str()))
            .map(|(name, _)| name)
            .collect()
    };

    // The physician acknowledges B (and so owns it); the charge nurse cancels C.
    let fox = server.token("dr.fox", "phone-4", &["physician"], &["4W"]);
    let mut phone = Phone::connect(server.addr(), &fox).await.unwrap();
    let doc: DocumentId = b.parse().unwrap();
    let current = phone.open(doc).await.unwrap();
    let physician = Author::new("dr.fox", "physician", "phone-4");
    let (next, _) = append(&current, &physician, EventBody::Acknowledged {});
    phone.push(doc, next).await.unwrap();
    let charge = server.token("cn.patel", "phone-5", &["charge_nurse"], &["4W"]);
    let mut phone = Phone::connect(server.addr(), &charge).await.unwrap();
    let doc: DocumentId = c.parse().unwrap();
    let current: Automerge = phone.open(doc).await.unwrap();
    let supervisor = Author::new("cn.patel", "charge_nurse", "phone-5");
    let cancel = EventBody::Cancelled {
        reason: "ordered in error".into(),
    };
    let (next, _) = append(&current, &supervisor, cancel);
    phone.push(doc, next).await.unwrap();

    let q = |query: &str| format!("template=consult&{query}");
    // Closed tasks stay listed, with their final status.
    assert_eq!(
        ours(listed(&server, &charge, &q("status=cancelled")).await),
        ["c"]
    );
    assert_eq!(
        ours(listed(&server, &charge, &q("status=open")).await),
        ["a", "b"]
    );
    assert_eq!(
        ours(listed(&server, &charge, &q("")).await),
        ["a", "b", "c"]
    );
    let owned = list(&server, &charge, &q("owner=dr.fox")).await;
    assert_eq!(ids(&owned), std::slice::from_ref(&b), "only B is dr.fox's");
    assert_eq!(owned["tasks"][0]["owner"], "dr.fox");
    assert!(ours(listed(&server, &charge, &q("owner=rn.evans")).await).is_empty());
    assert!(ours(listed(&server, &charge, &q("overdue=true")).await).is_empty());
    assert_eq!(
        ours(listed(&server, &charge, &q("overdue=false")).await),
        ["a", "b", "c"]
    );
    assert!(ours(listed(&server, &charge, &q("escalated=true")).await).is_empty());

    // Half an hour on, A's acknowledgment window has lapsed: it is overdue, and stays so when
    // the server escalates it; B is acknowledged and C closed.
    let state = server.server().state();
    state.clock.advance(31 * 60_000);
    assert_eq!(
        ours(listed(&server, &charge, &q("overdue=true")).await),
        ["a"]
    );
    assert_eq!(
        ours(listed(&server, &charge, &q("overdue=false")).await),
        ["b", "c"]
    );
    state.scheduler.fire_due().await.unwrap();
    let escalated = list(&server, &charge, &q("escalated=true&overdue=true")).await;
    assert_eq!(ours(ids(&escalated).into_iter().collect()), ["a"]);
    let item = escalated["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == a.as_str())
        .unwrap();
    assert_eq!(item["escalation_level"], 1);
    assert_eq!(item["overdue"], true);
    assert_eq!(
        ours(listed(&server, &charge, &q("escalated=false")).await),
        ["b", "c"]
    );
    // Filters combine.
    assert_eq!(
        ours(
            listed(
                &server,
                &charge,
                &q("status=open&escalated=false&owner=dr.fox")
            )
            .await
        ),
        ["b"]
    );
}

async fn the_task_list_pages_without_duplicates_or_gaps(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ehr = server.integration_token("epic", &["4W"]);
    let token = nurse(&server);
    for n in 0..7 {
        let mut body = consult(&format!("page-{n}"), &format!("Bed {n}"));
        body["template"] = json!("nonformulary_med");
        body["acuity"] = Value::Null;
        opened(&server, &ehr, &body).await;
    }
    let all = ids(&list(&server, &token, "template=nonformulary_med&limit=200").await);
    assert_eq!(all.len(), 8, "the demo's and the seven triggered");

    // Walked three at a time, with a task opened mid-walk: every task once, in order, the new
    // one last.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    let mut late = None;
    loop {
        let mut query = "template=nonformulary_med&limit=3".to_owned();
        if let Some(c) = &cursor {
            query.push_str(&format!("&cursor={c}"));
        }
        let page = list(&server, &token, &query).await;
        let got = ids(&page);
        assert!(got.len() <= 3);
        walked.extend(got);
        pages += 1;
        if pages == 1 {
            let mut body = consult("page-late", "Bed late");
            body["template"] = json!("nonformulary_med");
            body["acuity"] = Value::Null;
            late = Some(opened(&server, &ehr, &body).await);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "the walk ends");
    }
    assert_eq!(pages, 3, "3 + 3 + 3");
    let mut expected = all.clone();
    expected.push(late.unwrap());
    assert_eq!(walked, expected);
    let distinct: BTreeSet<&String> = walked.iter().collect();
    assert_eq!(distinct.len(), walked.len(), "no task twice");
    // The order is the server's first storing of each, then id.
    let page = list(&server, &token, "template=nonformulary_med&limit=200").await;
    let keys: Vec<(i64, String)> = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["created_at"].as_i64().unwrap(),
                t["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(page["next_cursor"], Value::Null);
}

async fn a_nurse_lists_only_her_units_tasks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ehr = server.integration_token("epic", &["4W", "ICU"]);
    let on_4w = opened(&server, &ehr, &consult("u-4w", "Bed 1")).await;
    let mut body = consult("u-icu", "Bed 2");
    body["unit"] = json!("ICU");
    let on_icu = opened(&server, &ehr, &body).await;

    let units_of = |page: &Value| -> BTreeSet<String> {
        page["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["unit"].as_str().unwrap().to_owned())
            .collect()
    };
    let evans = nurse(&server);
    let page = list(&server, &evans, "limit=200").await;
    assert_eq!(units_of(&page), BTreeSet::from(["4W".to_owned()]));
    assert!(ids(&page).contains(&on_4w));
    assert!(!ids(&page).contains(&on_icu));
    let (status, answer) = server.get("/api/v1/tasks?unit=ICU", Some(&evans)).await;
    assert_eq!(
        (status, answer["error"].clone()),
        (403, json!("unit_not_allowed")),
        "{answer}"
    );

    let silva = server.token("rn.silva", "phone-3", &["nurse"], &["ICU"]);
    let page = list(&server, &silva, "limit=200").await;
    assert_eq!(units_of(&page), BTreeSet::from(["ICU".to_owned()]));
    assert!(ids(&page).contains(&on_icu));

    // A charge nurse on both units, signed in for 4W only, sees 4W only; an admin sees both.
    let patel = server.token("cn.patel", "phone-5", &["charge_nurse"], &["4W"]);
    let page = list(&server, &patel, "limit=200").await;
    assert_eq!(units_of(&page), BTreeSet::from(["4W".to_owned()]));
    let admin = server.admin_token();
    let page = list(&server, &admin, "limit=200").await;
    assert!(ids(&page).contains(&on_4w) && ids(&page).contains(&on_icu));
    assert_eq!(ids(&page).len() as i64, task_count(&server).await);
}

async fn bad_list_parameters_are_refused_naming_them(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = nurse(&server);
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("status=done", "status"),
        ("overdue=yes", "overdue"),
        ("escalated=1", "escalated"),
        ("cursor=zz", "cursor"),
        ("cursor=2e", "cursor"),
        ("status=", "status"),
        ("limit=", "limit"),
        ("colour=red", "colour"),
        ("unit=4W&unit=ICU", "unit"),
    ] {
        let (status, answer) = server
            .get(&format!("/api/v1/tasks?{query}"), Some(&token))
            .await;
        assert_eq!(status, 422, "{query}: {answer}");
        assert_eq!(answer["error"], "invalid_parameter", "{query}");
        assert_eq!(answer["field"], param, "{query}: {answer}");
    }
    // The bounds themselves are fine, and an empty name is no filter.
    let page = list(&server, &token, "limit=200&owner=&overdue=false").await;
    assert_eq!(ids(&page).len(), 3, "the demo's three 4W tasks: {page}");
    let page = list(&server, &token, "limit=1").await;
    assert_eq!(ids(&page).len(), 1);
    assert!(page["next_cursor"].is_string());
}

async fn tasks_stored_before_summaries_are_listed_after_a_restart(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let ehr = server.integration_token("epic", &["4W"]);
    let id = opened(&server, &ehr, &consult("old-1", "Bed 1")).await;
    let admin = server.admin_token();
    let before = list(&server, &admin, "limit=200").await;
    assert_eq!(ids(&before).len() as i64, task_count(&server).await);

    // As a database from before summaries were kept: none.
    let mut db = server.database().await;
    sqlx::query("DELETE FROM task_summaries")
        .execute(&mut db)
        .await
        .unwrap();
    drop(db);
    assert!(ids(&list(&server, &admin, "").await).is_empty());

    server.restart().await;
    let after = list(&server, &admin, "limit=200").await;
    assert_eq!(ids(&after), ids(&before));
    for (old, new) in before["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .zip(after["tasks"].as_array().unwrap())
    {
        for field in [
            "template",
            "unit",
            "status",
            "owner",
            "owner_role",
            "acuity",
            "escalation_level",
            "next_due_at",
            "label",
            "created_at",
        ] {
            assert_eq!(old[field], new[field], "{field} of {}", old["id"]);
        }
    }
    assert!(ids(&after).contains(&id));
}
