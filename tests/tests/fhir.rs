//! FHIR R4 end to end: a task's Task as its work moves (status, owner, periods), searchset
//! Bundles paged by their `next` links, its history as AuditEvents, the CapabilityStatement and
//! refusals as OperationOutcomes, every resource parsed by the `fhir.resources` R4B models
//! (PyPI). On SQLite and Postgres.
#![allow(clippy::unwrap_used)]

use baton_core::{Author, EventBody};
use baton_e2e::{Backend, Phone, TestServer, append};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

baton_e2e::on_both_backends!(tasks_and_their_histories_are_valid_fhir);

/// The FHIR Task of `id`, as `token` reads it.
async fn read(server: &TestServer, id: &str, token: &str) -> Value {
    let (status, task) = server
        .get(&format!("/api/v1/fhir/Task/{id}"), Some(token))
        .await;
    assert_eq!(status, 200, "{task}");
    task
}

/// Parse `resources` with the R4B models; panic naming what they reject.
fn assert_valid(resources: &[Value]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/validate_fhir.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the FHIR validator (pip install fhir.resources)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(resources).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "rejected:\n{printed}");
    assert_eq!(
        printed.lines().filter(|l| l.starts_with("ok ")).count(),
        resources.len()
    );
}

async fn tasks_and_their_histories_are_valid_fhir(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut kept: Vec<Value> = Vec::new();
    let fox = server.token("dr.fox", "phone-fox", &["physician"], &["4W"]);
    let mut phone = Phone::connect(server.addr(), &fox).await.unwrap();
    let consult = baton_e2e::listed_task(&mut phone, server.addr(), &fox, "4W", "consult").await;
    let author = Author::new("dr.fox", "physician", "phone-fox");
    // Unowned, then claimed (which accepts it) and under way: the status follows the work.
    let task = read(&server, &consult.to_string(), &fox).await;
    assert_eq!(
        (
            &task["resourceType"],
            &task["id"],
            &task["status"],
            &task["intent"]
        ),
        (
            &"Task".into(),
            &consult.to_string().into(),
            &"requested".into(),
            &"order".into()
        )
    );
    assert_eq!(task["owner"]["identifier"]["system"], "urn:baton:role");
    assert_eq!(task["code"]["coding"][0]["code"], "consult");
    assert_eq!(task["location"]["identifier"]["value"], "4W");
    assert!(task["restriction"]["period"]["end"].is_string(), "{task}");
    kept.push(task);
    for (body, status) in [
        (EventBody::Claimed {}, "accepted"),
        (
            EventBody::StepStarted {
                step: "request".into(),
            },
            "in-progress",
        ),
    ] {
        let doc = phone.open(consult).await.unwrap();
        let (next, _) = append(&doc, &author, body);
        phone.push(consult, next).await.unwrap();
        let task = read(&server, &consult.to_string(), &fox).await;
        assert_eq!(task["status"], status, "{task}");
        kept.push(task);
    }
    let task = kept.last().unwrap();
    assert_eq!(task["owner"]["identifier"]["value"], "dr.fox");
    assert!(task["executionPeriod"]["start"].is_string(), "{task}");
    phone.close().await;

    // Every task the admin may see, two to a page, by the `next` links.
    let admin = server.admin_token();
    let mut next = Some("/api/v1/fhir/Task?_count=2".to_owned());
    let mut listed = Vec::new();
    while let Some(page) = next.take() {
        let (status, bundle) = server.get(&page, Some(&admin)).await;
        assert_eq!(status, 200, "{bundle}");
        assert_eq!(
            (&bundle["resourceType"], &bundle["type"]),
            (&"Bundle".into(), &"searchset".into())
        );
        for entry in bundle["entry"].as_array().unwrap() {
            listed.push(entry["resource"]["id"].as_str().unwrap().to_owned());
        }
        next = bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        kept.push(bundle);
        assert!(listed.len() < 100, "the pages never end");
    }
    let (_, all) = server.get("/api/v1/tasks?limit=200", Some(&admin)).await;
    let mut expected: Vec<String> = all["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    listed.sort();
    assert_eq!(listed, expected, "every task once");
    // Filters: by status, owner, template and unit.
    let (_, mine) = server
        .get(
            "/api/v1/fhir/Task?status=in-progress&owner=Practitioner/dr.fox",
            Some(&admin),
        )
        .await;
    let ids: Vec<&Value> = mine["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"]["id"])
        .collect();
    assert_eq!(ids, [&Value::from(consult.to_string())]);
    let (_, icu) = server
        .get(
            "/api/v1/fhir/Task?location=Location/ICU&code=urn:baton:template|consult",
            Some(&admin),
        )
        .await;
    for entry in icu["entry"].as_array().unwrap() {
        assert_eq!(entry["resource"]["location"]["identifier"]["value"], "ICU");
        assert_eq!(entry["resource"]["code"]["coding"][0]["code"], "consult");
    }
    kept.push(mine);
    kept.push(icu);

    // The consult's history: each event as an AuditEvent, in the order received.
    let (status, history) = server
        .get(
            &format!("/api/v1/fhir/AuditEvent?entity=Task/{consult}"),
            Some(&fox),
        )
        .await;
    assert_eq!(status, 200, "{history}");
    let events: Vec<&Value> = history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["subtype"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"created"));
    assert!(kinds.ends_with(&["claimed", "step_started"]), "{kinds:?}");
    let last = events.last().unwrap();
    assert_eq!(last["agent"][0]["who"]["identifier"]["value"], "dr.fox");
    assert_eq!(last["agent"][1]["who"]["identifier"]["value"], "phone-fox");
    assert_eq!(
        last["entity"][0]["what"]["reference"],
        format!("Task/{consult}")
    );
    kept.push(history);

    // What the server offers, and refusals as OperationOutcomes.
    let (status, metadata) = server.get("/api/v1/fhir/metadata", None).await;
    assert_eq!(status, 200);
    assert_eq!(metadata["resourceType"], "CapabilityStatement");
    kept.push(metadata);
    let icu_nurse = server.token("rn.silva", "phone-icu", &["nurse"], &["ICU"]);
    for (path, token, status, code) in [
        (
            format!("/api/v1/fhir/Task/{consult}"),
            Some(icu_nurse.as_str()),
            404,
            "not-found",
        ),
        (
            "/api/v1/fhir/Task/nothing".to_owned(),
            Some(admin.as_str()),
            404,
            "not-found",
        ),
        ("/api/v1/fhir/Task".to_owned(), None, 401, "login"),
        (
            "/api/v1/fhir/Task?status=bogus".to_owned(),
            Some(admin.as_str()),
            422,
            "invalid",
        ),
        (
            "/api/v1/fhir/Task?_count=0".to_owned(),
            Some(admin.as_str()),
            422,
            "invalid",
        ),
        (
            "/api/v1/fhir/AuditEvent?entity=Patient/1".to_owned(),
            Some(admin.as_str()),
            422,
            "invalid",
        ),
        (
            format!("/api/v1/fhir/AuditEvent?entity=Task/{consult}"),
            Some(icu_nurse.as_str()),
            404,
            "not-found",
        ),
    ] {
        let (got, outcome) = server.get(&path, token).await;
        assert_eq!(
            (got, &outcome["resourceType"]),
            (status, &"OperationOutcome".into()),
            "{path}: {outcome}"
        );
        assert_eq!(outcome["issue"][0]["code"], code, "{path}: {outcome}");
        kept.push(outcome);
    }
    // An ICU nurse's search holds no 4W task.
    let (_, theirs) = server
        .get("/api/v1/fhir/Task?_count=100", Some(&icu_nurse))
        .await;
    for entry in theirs["entry"].as_array().unwrap() {
        assert_eq!(entry["resource"]["location"]["identifier"]["value"], "ICU");
    }
    kept.push(theirs);

    assert_valid(&kept);
}
