//! Every open task has one timer, at its next due action, written in the same transaction as
//! the changes it follows from: set when a task opens, moved by progress, gone when it closes.
#![allow(clippy::unwrap_used)]

use automerge::Automerge;
use baton_core::policy::escalation::{Due, Routing, next_due_with};
use baton_core::{Author, EventBody, TaskDoc, TemplateRegistry};
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

/// Two servers on one Postgres, 200 tasks due at once: each timer fires on one node, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_postgres_fire_each_of_200_due_timers_once() {
    let a = TestServer::start_with(Backend::Postgres, |c| {
        c.routing = baton_core::policy::escalation::Routing::On;
    })
    .await;
    let mut config = a.config.clone();
    config.listen = "127.0.0.1:0".parse().unwrap();
    let b = baton_server::Server::start(config).await.unwrap();

    // 200 consults from the EHR, each routed the moment it opens: 200 timers due now.
    let before = a.metric("baton_timers_fired_total").await.unwrap();
    let ehr = a.integration_token("ehr", &["4W"]);
    let mut tasks = Vec::new();
    for n in 0..200 {
        let (status, body) = a
            .post_json(
                "/api/v1/triggers",
                Some(&ehr),
                &serde_json::json!({
                    "template": "consult",
                    "unit": "4W",
                    "subject": { "ref": format!("enc-{n}"), "label": format!("Bed {n}") },
                    "idempotency_key": format!("load-{n}"),
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        tasks.push(body["task_id"].as_str().unwrap().to_owned());
    }

    // Both schedulers take them as they fall due.
    let db = a.server().state().db.clone();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut routed = 0;
        for task in &tasks {
            let rows = db.task_events(task).await.unwrap();
            routed += usize::from(rows.iter().any(|r| r.event == "route:open"));
        }
        if routed == tasks.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{routed} of 200 routed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // One routing event per task, written once (a second firing would be a duplicate in the
    // history), and the two nodes' firings add up to 200.
    let admin = a.admin_token();
    for task in &tasks {
        let (status, view) = a.get(&format!("/api/v1/tasks/{task}"), Some(&admin)).await;
        assert_eq!(status, 200, "{view}");
        let routes: Vec<&serde_json::Value> = view["state"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["event"] == "route:open")
            .collect();
        assert_eq!(routes.len(), 1, "{task}: {routes:?}");
        assert_eq!(routes[0]["outcome"], "applied");
    }
    let fired_a = a.metric("baton_timers_fired_total").await.unwrap() - before;
    let (_, metrics_b) = baton_e2e::http(b.addr(), "GET", "/metrics", None).await;
    let fired_b: f64 = metrics_b
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("baton_timers_fired_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        fired_a + fired_b,
        200.0,
        "a fired {fired_a}, b fired {fired_b}"
    );
    b.shutdown().await;
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
