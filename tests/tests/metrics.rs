//! Operational metrics against a scripted scenario whose answers are known: three consults and
//! a discharge on 4W, each event stamped at a chosen minute of the workflow clock, and every
//! figure of `GET /api/v1/metrics/summary` and of its own endpoint checked. On SQLite and
//! Postgres.
#![allow(clippy::unwrap_used)]

use baton_core::event::FieldValue;
use baton_core::sync::DocumentId;
use baton_core::{Author, EventBody, HlcClock, NewTask, Subject, TaskDoc, TemplateRegistry};
use baton_e2e::{Backend, Phone, TestServer};
use serde_json::{Value, json};
use std::collections::BTreeMap;

baton_e2e::on_both_backends!(every_figure_matches_a_scripted_scenario);

const MIN: i64 = 60_000;

struct Script<'s> {
    server: &'s TestServer,
    /// The scenario's minute 0, on the workflow clock.
    start: i64,
}

impl Script<'_> {
    /// Move the workflow clock on to minute `minute`, if it is not there yet.
    fn at(&self, minute: i64) -> i64 {
        let clock = &self.server.server().state().clock;
        let at = self.start + minute * MIN;
        let ahead = at - clock.now();
        if ahead > 0 {
            clock.advance(ahead);
        }
        at
    }

    fn author(user: &str, role: &str) -> Author {
        Author::new(user, role, format!("phone-{user}"))
    }

    async fn phone(&self, user: &str, role: &str) -> Phone {
        let token = self
            .server
            .token(user, &format!("phone-{user}"), &[role], &["4W"]);
        Phone::connect(self.server.addr(), &token).await.unwrap()
    }

    /// `user` opens a task of `template` at minute `minute`.
    async fn open(&self, template: &str, user: &str, role: &str, minute: i64) -> DocumentId {
        let now = self.at(minute);
        let templates = TemplateRegistry::shipped();
        let template = templates.latest(&template.into()).unwrap();
        let new = NewTask {
            unit: "4W".into(),
            subject: Subject {
                reference: format!("enc-{minute}"),
                label: format!("Bed {minute}"),
            },
            acuity: None,
            note: None,
        };
        let (task, _) = TaskDoc::create(
            template,
            new,
            &Self::author(user, role),
            &mut HlcClock::new(),
            now,
            automerge::ActorId::random(),
        )
        .unwrap();
        let id = DocumentId::random();
        let mut phone = self.phone(user, role).await;
        phone.push(id, task.into_automerge()).await.unwrap();
        phone.close().await;
        id
    }

    /// `user`, in `role`, writes `body` on `task` at minute `minute`.
    async fn act(&self, task: DocumentId, user: &str, role: &str, minute: i64, body: EventBody) {
        let now = self.at(minute);
        let mut phone = self.phone(user, role).await;
        let doc = phone.open(task).await.unwrap();
        let templates = TemplateRegistry::shipped();
        let mut written = TaskDoc::from_automerge(doc).unwrap();
        written.set_actor(automerge::ActorId::random());
        let template = templates.get(&written.meta().template).unwrap();
        written
            .append(
                template,
                &Self::author(user, role),
                &mut HlcClock::new(),
                now,
                body,
            )
            .unwrap();
        phone.push(task, written.into_automerge()).await.unwrap();
        phone.close().await;
    }

    async fn complete(
        &self,
        task: DocumentId,
        user: &str,
        role: &str,
        minute: i64,
        step: &str,
        fields: Value,
    ) {
        let fields: BTreeMap<String, FieldValue> = serde_json::from_value(fields).unwrap();
        let body = EventBody::StepCompleted {
            step: step.into(),
            fields,
        };
        self.act(task, user, role, minute, body).await;
    }
}

async fn every_figure_matches_a_scripted_scenario(backend: Backend) {
    let server = TestServer::start(backend).await;
    let state = server.server().state();
    // A day on, so that the demo's tasks are outside the range.
    state.clock.advance(24 * 60 * MIN);
    let script = Script {
        server: &server,
        start: state.clock.now(),
    };
    let t = |minute: i64| script.start + minute * MIN;

    // Minute 0: two consults and a discharge.
    let c1 = script.open("consult", "rn.evans", "nurse", 0).await;
    let c2 = script.open("consult", "rn.evans", "nurse", 0).await;
    let d1 = script.open("discharge", "dr.fox", "physician", 0).await;
    // Consult 1: claimed (which acknowledges) at 4, first step begun at 10.
    script
        .act(c1, "dr.fox", "physician", 4, EventBody::Claimed {})
        .await;
    script
        .act(
            c1,
            "dr.fox",
            "physician",
            10,
            EventBody::StepStarted {
                step: "request".into(),
            },
        )
        .await;
    // The discharge: claimed at 5, ordered at 10, confirmed (which completes it) at 70.
    script
        .act(d1, "cm.garcia", "case_manager", 5, EventBody::Claimed {})
        .await;
    script
        .complete(
            d1,
            "dr.fox",
            "physician",
            10,
            "order_placed",
            json!({ "order_time": t(10), "disposition": "home" }),
        )
        .await;
    // Consult 2: claimed at 20.
    script
        .act(c2, "dr.fox", "physician", 20, EventBody::Claimed {})
        .await;
    script
        .complete(
            d1,
            "ph.nguyen",
            "pharmacist",
            40,
            "medication_reconciliation",
            json!({ "discrepancies": 0 }),
        )
        .await;
    // Consult 3 opens at 40 and nobody acknowledges it.
    let c3 = script.open("consult", "rn.evans", "nurse", 40).await;
    script
        .complete(
            d1,
            "tr.kim",
            "transport",
            50,
            "transport",
            json!({ "mode": "wheelchair", "pickup_at": t(55) }),
        )
        .await;
    script
        .complete(
            d1,
            "rn.evans",
            "nurse",
            60,
            "family_notified",
            json!({ "contact": "daughter", "teach_back_done": true }),
        )
        .await;
    script
        .complete(
            d1,
            "rn.evans",
            "nurse",
            70,
            "discharge_confirmed",
            json!({ "left_unit_at": t(70) }),
        )
        .await;
    // Consult 3's 30-minute window lapses at 70: the server escalates it, once.
    script.at(71);
    state.scheduler.fire_due().await.unwrap();
    let _ = (c1, c2, c3);

    let admin = server.admin_token();
    let range = format!("since={}&until={}", t(0), t(1_000));
    let (status, summary) = server
        .get(&format!("/api/v1/metrics/summary?{range}"), Some(&admin))
        .await;
    assert_eq!(status, 200, "{summary}");
    let now = summary["now"].as_i64().unwrap();
    assert_eq!(summary["tasks"], 4, "{summary:#}");

    let elapsed = |count: u64, mean: i64, p50: i64, p90: i64, max: i64, not_reached: u64| {
        json!({ "count": count, "mean_ms": mean, "p50_ms": p50, "p90_ms": p90, "max_ms": max,
                "not_reached": not_reached })
    };
    // Acknowledged after 4, 5 and 20 minutes; consult 3 never.
    assert_eq!(
        summary["time_to_acknowledgment"],
        elapsed(3, (4 + 5 + 20) * MIN / 3, 5 * MIN, 20 * MIN, 20 * MIN, 1)
    );
    // Consult 1's step begun and the discharge ordered, both at 10.
    assert_eq!(
        summary["time_to_first_outreach"],
        elapsed(2, 10 * MIN, 10 * MIN, 10 * MIN, 10 * MIN, 2)
    );
    // Three open consults, all the physicians': two opened at 0, one at 40.
    let (old, young) = (now - t(0), now - t(40));
    assert_eq!(
        summary["task_aging"],
        json!([{ "role": "physician", "count": 3, "mean_ms": (2 * old + young) / 3,
                 "p50_ms": old, "p90_ms": old, "max_ms": old }])
    );
    assert_eq!(
        summary["escalations"],
        json!({ "tasks": 4, "escalated_tasks": 1, "time": 1, "acuity": 0, "manual": 0,
                "per_task": 0.25 })
    );
    assert_eq!(
        summary["breach_rate"],
        json!({ "of": 4, "count": 1, "rate": 0.25 })
    );
    assert_eq!(
        summary["workload"],
        json!({ "by_person": [{ "user": "dr.fox", "open": 2 }],
                "by_role": [{ "role": "physician", "open": 3, "unowned": 1 }] })
    );
    assert_eq!(
        summary["completed_without_intervention"],
        json!({ "of": 1, "count": 1, "rate": 1.0 })
    );
    // Ordered at 10, confirmed at 70.
    assert_eq!(
        summary["discharge_order_to_confirmed"],
        elapsed(1, 60 * MIN, 60 * MIN, 60 * MIN, 60 * MIN, 0)
    );

    // Each figure's own endpoint answers what the summary says.
    for (path, field) in [
        ("time-to-acknowledgment", "time_to_acknowledgment"),
        ("time-to-first-outreach", "time_to_first_outreach"),
        ("escalations", "escalations"),
        ("breach-rate", "breach_rate"),
        ("workload", "workload"),
        (
            "completed-without-intervention",
            "completed_without_intervention",
        ),
        (
            "discharge-order-to-confirmed",
            "discharge_order_to_confirmed",
        ),
    ] {
        let (status, figure) = server
            .get(&format!("/api/v1/metrics/{path}?{range}"), Some(&admin))
            .await;
        assert_eq!(status, 200, "{path}: {figure}");
        assert_eq!(figure, summary[field], "{path}");
    }
    let (_, aging) = server
        .get(&format!("/api/v1/metrics/task-aging?{range}"), Some(&admin))
        .await;
    assert_eq!(aging["roles"][0]["role"], "physician");
    assert_eq!(aging["roles"][0]["count"], 3);

    // Filters: by template, program and unit; a unit the caller may not see is refused.
    let count = |query: String, token: String| {
        let server = &server;
        async move {
            let (status, body) = server
                .get(&format!("/api/v1/metrics/summary?{query}"), Some(&token))
                .await;
            assert_eq!(status, 200, "{query}: {body}");
            body["tasks"].as_u64().unwrap()
        }
    };
    assert_eq!(
        count(format!("{range}&template=discharge"), admin.clone()).await,
        1
    );
    assert_eq!(
        count(format!("{range}&program=patient_flow"), admin.clone()).await,
        1
    );
    assert_eq!(
        count(format!("{range}&template=consult&unit=4W"), admin.clone()).await,
        3
    );
    assert_eq!(count(format!("{range}&unit=ICU"), admin.clone()).await, 0);
    assert_eq!(count(format!("since={}", t(30)), admin.clone()).await, 1);
    let icu = server.token("rn.silva", "phone-icu", &["nurse"], &["ICU"]);
    assert_eq!(
        count(range.clone(), icu.clone()).await,
        0,
        "an ICU nurse sees ICU's only"
    );
    let (status, body) = server
        .get("/api/v1/metrics/summary?unit=4W", Some(&icu))
        .await;
    assert_eq!(
        (status, &body["error"]),
        (403, &"unit_not_allowed".into()),
        "{body}"
    );
    let nurse = server.token("rn.evans", "phone-rn.evans", &["nurse"], &["4W"]);
    assert_eq!(count(range.clone(), nurse).await, 4, "a 4W nurse sees 4W's");

    // The task list filters by program the same way.
    let (status, page) = server
        .get("/api/v1/tasks?program=patient_flow&limit=200", Some(&admin))
        .await;
    assert_eq!(status, 200, "{page}");
    let templates: Vec<&str> = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["template"].as_str().unwrap())
        .collect();
    assert!(
        !templates.is_empty() && templates.iter().all(|t| *t == "discharge"),
        "{templates:?}"
    );
}
