//! Every open task has one timer, at its next due action, written in the same transaction as
//! the changes it follows from: set when a task opens, moved by progress, gone when it closes.
#![allow(clippy::unwrap_used)]

use automerge::Automerge;
use baton_core::policy::escalation::{Due, Routing, next_due_with};
use baton_core::{Author, EventBody, TaskDoc, TemplateRegistry};
use baton_e2e::process::ServerProcess;
use baton_e2e::{Backend, Phone, TestServer, append, listed_task};

baton_e2e::on_both_backends!(a_task_s_timer_follows_its_state);

/// What the core says `doc`'s next due action is.
fn due_of(doc: &Automerge) -> Option<Due> {
    let task = TaskDoc::from_automerge(doc.clone()).unwrap();
    let registry = TemplateRegistry::shipped();
    let template = registry.get(&task.meta().template).unwrap();
    next_due_with(template, &task.state(template).unwrap(), Routing::Off)
}

async fn a_task_s_timer_follows_its_state(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.token("cm.garcia", "phone-7", &["case_manager"], &["4W"]);
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let id = listed_task(&mut phone, server.addr(), &token, "4W", "discharge").await;
    let db = server.server().state().db.clone();

    // Imported by the demo, unacknowledged: its timer is the acknowledgment window's end.
    let doc = phone.open(id).await.unwrap();
    let expected = due_of(&doc).expect("an open task has something due");
    let timer = db.timer(&id.to_string()).await.unwrap().expect("a timer");
    assert_eq!(timer.due_at, expected.at);
    assert_eq!(timer.event_id, expected.event_id.to_string());
    assert!(timer.action.contains("escalate"), "{}", timer.action);
    let pending = server.metric("baton_timers_pending").await.unwrap();
    assert!(pending >= 1.0, "{pending}");

    // Acknowledged: the timer moves to what is due next, in the acknowledgment's transaction.
    let owner = Author::new("cm.garcia", "case_manager", "phone-7");
    let (next, _) = append(&doc, &owner, EventBody::Acknowledged {});
    phone.push(id, next).await.unwrap();
    let doc = phone.doc(id).clone();
    let moved = due_of(&doc).expect("steps are due");
    assert_ne!(moved.event_id, expected.event_id);
    let timer = db.timer(&id.to_string()).await.unwrap().expect("a timer");
    assert_eq!(
        (timer.due_at, timer.event_id.as_str()),
        (moved.at, moved.event_id.as_str())
    );

    // Cancelled by the charge nurse: nothing is pending, so the timer is gone.
    let token = server.token("cn.patel", "phone-8", &["charge_nurse"], &["4W"]);
    let mut charge = Phone::connect(server.addr(), &token).await.unwrap();
    let doc = charge.open(id).await.unwrap();
    let supervisor = Author::new("cn.patel", "charge_nurse", "phone-8");
    let (next, _) = append(
        &doc,
        &supervisor,
        EventBody::Cancelled {
            reason: "patient stays".into(),
        },
    );
    charge.push(id, next).await.unwrap();
    assert!(due_of(charge.doc(id)).is_none());
    assert_eq!(db.timer(&id.to_string()).await.unwrap(), None);
    assert_eq!(
        server.metric("baton_timers_pending").await,
        Some(pending - 1.0)
    );
}

baton_e2e::on_both_backends!(a_timer_fires_while_every_phone_is_offline);

fn events_of(doc: &Automerge) -> Vec<baton_core::Event> {
    TaskDoc::from_automerge(doc.clone())
        .unwrap()
        .events()
        .unwrap()
        .events
}

async fn a_timer_fires_while_every_phone_is_offline(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.token("cn.patel", "phone-8", &["charge_nurse"], &["4W"]);
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let id = listed_task(&mut phone, server.addr(), &token, "4W", "discharge").await;
    let doc = phone.open(id).await.unwrap();
    let due = due_of(&doc).unwrap();
    let before = events_of(&doc).len();
    phone.close().await;

    // Every phone is offline; the acknowledgment window lapses on the workflow clock.
    let state = server.server().state();
    state.clock.advance(due.at - state.clock.now() + 1);
    state.scheduler.fire_due().await.unwrap();

    // The escalation is stored, with the next level's timer, before anyone reconnects.
    let db = state.db.clone();
    let rows = db.task_events(&id.to_string()).await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.event == due.event_id.as_str())
        .expect("the escalation is stored");
    assert_eq!(
        (row.kind.as_str(), row.user.as_str(), row.role.as_str()),
        ("escalated", "baton", "system")
    );
    let timer = db
        .timer(&id.to_string())
        .await
        .unwrap()
        .expect("the chain goes on");
    assert_ne!(
        timer.event_id,
        due.event_id.to_string(),
        "the next level is due"
    );

    // A phone that reconnects sees it.
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let doc = phone.open(id).await.unwrap();
    let events = events_of(&doc);
    assert_eq!(events.len(), before + 1);
    let fired = events
        .iter()
        .find(|e| e.id == due.event_id)
        .expect("seen on reconnect");
    assert!(fired.actor.is_system());
    match &fired.body {
        EventBody::Escalated { level, to, .. } => {
            assert_eq!(*level, 1);
            assert_eq!(to.role.as_str(), "charge_nurse");
        }
        other => panic!("not an escalation: {other:?}"),
    }

    // Firing again writes nothing more: nothing is due until the next level.
    state.scheduler.fire_due().await.unwrap();
    let again = db.task_events(&id.to_string()).await.unwrap();
    assert_eq!(again.len(), rows.len());
    let fired_total = server.metric("baton_timers_fired_total").await.unwrap();
    assert!(fired_total >= 1.0, "{fired_total}");
}

baton_e2e::on_both_backends!(a_timer_that_cannot_fire_is_tried_again_later_not_at_once);

/// A due timer whose firing fails (here: its task is not stored) does not keep the scheduler's
/// pass busy trying it again and again: the pass ends, and the timer waits a few seconds before
/// anyone claims it again.
async fn a_timer_that_cannot_fire_is_tried_again_later_not_at_once(backend: Backend) {
    use baton_server::db::{Derived, DueTimer, TimerRow, Write};
    let server = TestServer::start(backend).await;
    let state = server.server().state();
    let orphan = baton_core::sync::DocumentId::random().to_string();
    let write = Write {
        new_docs: Vec::new(),
        changes: Vec::new(),
        derived: Derived {
            events: Vec::new(),
            index: None,
            timer: Some(TimerRow {
                doc: orphan.clone(),
                due: Some(DueTimer {
                    due_at: 0,
                    event_id: "esc:0:1:ack@0".to_owned(),
                    action: "{}".to_owned(),
                }),
            }),
            notifications: Vec::new(),
            summary: None,
            trigger: None,
        },
    };
    state.db.store_changes(&[&write], 0).await.unwrap();

    let pass = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        state.scheduler.fire_due(),
    )
    .await
    .expect("the pass ends although the timer cannot fire");
    assert_eq!(pass.unwrap(), 0);
    assert_eq!(server.metric("baton_timer_failures_total").await, Some(1.0));
    // Tried once; a pass right after leaves it alone.
    assert_eq!(state.scheduler.fire_due().await.unwrap(), 0);
    assert_eq!(server.metric("baton_timer_failures_total").await, Some(1.0));
    assert!(state.db.timer(&orphan).await.unwrap().is_some());
}

baton_e2e::on_both_backends!(timers_overdue_at_a_restart_fire_first_thing);

/// The server was down while the acknowledgment windows lapsed: on start, before any phone
/// connects, the overdue timers fire.
async fn timers_overdue_at_a_restart_fire_first_thing(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let db = server.server().state().db.clone();
    let token = server.token("cn.patel", "phone-8", &["charge_nurse"], &["4W"]);
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let id = listed_task(&mut phone, server.addr(), &token, "4W", "discharge").await;
    let due = due_of(&phone.open(id).await.unwrap()).unwrap();
    phone.close().await;
    let escalated = |rows: &[baton_server::db::StoredEvent]| {
        rows.iter().any(|r| r.event == due.event_id.as_str())
    };
    assert!(!escalated(&db.task_events(&id.to_string()).await.unwrap()));

    // Down; back up with the workflow clock far past every window (a day a tenth of a second).
    server.config.time_scale = 1_000_000;
    server.restart().await;
    let db = server.server().state().db.clone();
    let rows = db.task_events(&id.to_string()).await.unwrap();
    assert!(
        escalated(&rows),
        "fired at start, before anyone connected: {:?}",
        rows.iter().map(|r| &r.event).collect::<Vec<_>>()
    );
    assert!(server.metric("baton_timers_fired_total").await.unwrap() >= 1.0);
    let time = server
        .metric("baton_escalations_total{reason=\"time\"}")
        .await
        .unwrap();
    assert!(time >= 1.0, "{time}");
}

/// Two server processes on one Postgres, 200 tasks due at once: each timer fires on one node,
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_server_processes_on_one_postgres_fire_each_of_200_due_timers_once() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_baton-server-e2e"));
    let dir = tempfile::tempdir().unwrap();
    let storage = baton_server::Storage::Postgres(baton_e2e::fresh_postgres().await);
    let a = ServerProcess::start(bin, dir.path(), &storage).await;
    let b = ServerProcess::start(bin, dir.path(), &storage).await;
    let fired = |addr| async move {
        let (_, metrics) = baton_e2e::http(addr, "GET", "/metrics", None).await;
        metrics
            .as_str()
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("baton_timers_fired_total "))
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };

    // 200 consults from the EHR through node A, each routed the moment it opens: 200 timers due
    // now, which both nodes' schedulers race for.
    let ehr = baton_e2e::integration_token_in(dir.path(), "ehr", &["4W"]);
    let mut tasks = Vec::new();
    for n in 0..200 {
        let body = serde_json::json!({
            "template": "consult",
            "unit": "4W",
            "subject": { "ref": format!("enc-{n}"), "label": format!("Bed {n}") },
            "idempotency_key": format!("load-{n}"),
        });
        let (status, body) = baton_e2e::http_with_body(
            a.addr,
            "POST",
            "/api/v1/triggers",
            Some(&ehr),
            body.to_string().as_bytes(),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        tasks.push(body["task_id"].as_str().unwrap().to_owned());
    }

    // Every one is routed, by one node or the other, and written once: a second firing would
    // show in the history as a duplicate.
    let admin = token_in_admin(dir.path());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    for task in &tasks {
        loop {
            let (status, view) = baton_e2e::http(
                b.addr,
                "GET",
                &format!("/api/v1/tasks/{task}"),
                Some(&admin),
            )
            .await;
            assert_eq!(status, 200, "{view}");
            let routes: Vec<&serde_json::Value> = view["state"]["history"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h["event"] == "route:open")
                .collect();
            if !routes.is_empty() {
                assert_eq!(routes.len(), 1, "{task}: {routes:?}");
                assert_eq!(routes[0]["outcome"], "applied");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{task} never routed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    // The two nodes' firings add up to one per timer: ours and the demo's own tasks (routed,
    // oldest first, before ours).
    let mut all = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/tasks?limit=200&cursor={c}"),
            None => "/api/v1/tasks?limit=200".to_owned(),
        };
        let (status, page) = baton_e2e::http(a.addr, "GET", &path, Some(&admin)).await;
        assert_eq!(status, 200, "{page}");
        all += page["tasks"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert!(all > 200, "the demo's tasks are there too: {all}");
    let (fired_a, fired_b) = (fired(a.addr).await, fired(b.addr).await);
    assert_eq!(
        fired_a + fired_b,
        all as f64,
        "each timer fired on one node: a {fired_a}, b {fired_b}, {all} tasks"
    );
}

fn token_in_admin(dir: &std::path::Path) -> String {
    baton_e2e::token_with_in(dir, "admin", "admin-console", &[], &[], true, 3_600)
}

baton_e2e::on_both_backends!(
    at_shift_change_the_server_offers_the_outgoing_nurse_s_task_to_the_incoming_one,
    a_disabled_owner_s_tasks_are_re_routed_at_once
);

async fn routing_server(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |c| {
        c.routing = baton_core::policy::escalation::Routing::On;
    })
    .await
}

/// The EHR opens a task on 4W; the server routes it. Returns its id.
async fn ehr_opens(server: &TestServer, template: &str, key: &str) -> String {
    let ehr = server.integration_token("ehr", &["4W"]);
    let (status, body) = server
        .post_json(
            "/api/v1/triggers",
            Some(&ehr),
            &serde_json::json!({
                "template": template,
                "unit": "4W",
                "subject": { "ref": "enc-5", "label": "Bed 5" },
                "idempotency_key": key,
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let task = body["task_id"].as_str().unwrap().to_owned();
    server.server().state().scheduler.fire_due().await.unwrap();
    task
}

async fn history(server: &TestServer, task: &str) -> Vec<serde_json::Value> {
    let admin = server.admin_token();
    let (status, view) = server
        .get(&format!("/api/v1/tasks/{task}"), Some(&admin))
        .await;
    assert_eq!(status, 200, "{view}");
    view["state"]["history"].as_array().unwrap().clone()
}

async fn at_shift_change_the_server_offers_the_outgoing_nurse_s_task_to_the_incoming_one(
    backend: Backend,
) {
    let server = routing_server(backend).await;
    let state = server.server().state();
    let task = ehr_opens(&server, "nonformulary_med", "med-1").await;
    let (status, view) = server
        .get(
            &format!("/api/v1/tasks/{task}"),
            Some(&server.admin_token()),
        )
        .await;
    assert_eq!(status, 200);
    let outgoing = view["state"]["owner"]["user"].as_str().unwrap().to_owned();

    // Move the workflow clock a second past the end of this nurse's shift (07:00 or 19:00 in
    // New York, whatever the day).
    let plan = state.db.coverage("4W").await.unwrap();
    let schedule = plan.schedule().unwrap();
    let now = state.clock.now();
    let shift = schedule
        .covering(&"4W".into(), &"nurse".into(), now)
        .shift
        .unwrap();
    let incoming = schedule
        .covering(&"4W".into(), &"nurse".into(), shift.end)
        .primary
        .unwrap();
    assert_ne!(incoming.as_str(), outgoing);
    state.clock.advance(shift.end - now + 1_000);
    state.scheduler.shift_changes().await.unwrap();

    let offers: Vec<serde_json::Value> = history(&server, &task)
        .await
        .into_iter()
        .filter(|h| h["kind"] == "handoff_offered")
        .collect();
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_eq!(
        offers[0]["event"],
        format!("shift:{}:{outgoing}", shift.end)
    );
    assert_eq!(offers[0]["actor"]["user"], "baton");
    let (_, view) = server
        .get(
            &format!("/api/v1/tasks/{task}"),
            Some(&server.admin_token()),
        )
        .await;
    assert_eq!(
        view["state"]["owner"]["user"], outgoing,
        "accountable until the incoming nurse accepts"
    );
    assert_eq!(
        view["state"]["handoffs"][0]["to"]["user"],
        incoming.as_str()
    );
    // Looking again changes nothing.
    state.scheduler.shift_changes().await.unwrap();
    state.scheduler.fire_due().await.unwrap();
    let again = history(&server, &task).await;
    assert_eq!(
        again
            .iter()
            .filter(|h| h["kind"] == "handoff_offered")
            .count(),
        1
    );
}

async fn a_disabled_owner_s_tasks_are_re_routed_at_once(backend: Backend) {
    let server = routing_server(backend).await;
    // dr.fox is the only physician on 4W's rotation: the consult is his.
    let task = ehr_opens(&server, "consult", "consult-1").await;
    let (_, view) = server
        .get(
            &format!("/api/v1/tasks/{task}"),
            Some(&server.admin_token()),
        )
        .await;
    assert_eq!(view["state"]["owner"]["user"], "dr.fox");

    let (status, body) = server
        .post("/api/v1/users/dr.fox/disable", Some(&server.admin_token()))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["tasks_rerouted"].as_u64().unwrap() >= 1, "{body}");
    // Nobody else covers the physician role: the charge nurse is alerted, with the way out.
    let (_, view) = server
        .get(
            &format!("/api/v1/tasks/{task}"),
            Some(&server.admin_token()),
        )
        .await;
    let exceptions = view["state"]["exceptions"].as_array().unwrap();
    let raised = exceptions
        .iter()
        .find(|e| e["event"].as_str().unwrap().starts_with("reroute:dr.fox:"))
        .unwrap_or_else(|| panic!("{exceptions:?}"));
    assert_eq!(raised["alert_role"], "charge_nurse");
    assert_eq!(raised["rule"], "nobody_covers");
    assert!(raised["resolution"].as_str().is_some());
}

/// The scheduler benchmark still runs: a small SQLite run of its spread phase, every timer fired.
#[test]
fn the_timer_benchmark_runs_small() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_baton-timer-bench"))
        .args(["--backend", "sqlite", "--pending", "2000", "--due", "100"])
        .args(["--window", "1", "--no-burst", "--phase-timeout", "60"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("spread: fired 100 of 100 in"), "{stdout}");
}
