//! The sync server end to end, in-process: real WebSockets, real JWTs, real SQLite files and a
//! real Postgres server. Every scenario runs on both backends.
#![allow(clippy::unwrap_used)]

use automerge::{ActorId, ReadDoc};
use baton_core::index;
use baton_core::sync::{DocumentId, Message};
use baton_core::{Author, EventBody, HlcClock, NewTask, Subject, TaskDoc, TemplateRegistry};
use baton_e2e::{Backend, Phone, TestServer, event_count};
use tokio_tungstenite::tungstenite::Message as WsMessage;

baton_e2e::on_both_backends!(
    me_bootstraps_a_device,
    bad_tokens_are_refused,
    a_phone_gets_the_worklist_from_the_server_alone,
    two_phones_see_each_others_events,
    a_forged_event_is_refused_recorded_and_not_stored,
    an_event_the_rules_forbid_is_refused,
    documents_outside_the_callers_units_are_unavailable,
    a_task_created_on_a_phone_reaches_the_index_and_other_phones,
    the_unit_index_is_read_only_for_devices,
    changes_survive_a_restart,
    a_revoked_device_is_cut_off_and_told_to_wipe,
    malformed_frames_get_errors_and_harm_nothing,
    stored_changes_are_compacted_into_snapshots,
    roles_count_only_on_the_unit_that_grants_them,
    the_unit_index_follows_acuity_and_closes_with_the_task,
    a_disabled_user_is_cut_off_on_every_device,
    browsers_pass_the_token_as_a_subprotocol_or_in_the_query,
    the_unit_index_carries_the_roster_and_the_rotation,
    a_flood_of_bad_tokens_is_counted_not_written,
    the_openapi_document_lists_every_route,
    deadlines_are_judged_by_the_workflow_clock,
);

fn nurse(server: &TestServer, device: &str) -> String {
    server.token("rn.evans", device, &["nurse"], &["4W"])
}

fn physician(server: &TestServer, device: &str) -> String {
    server.token("dr.fox", device, &["physician"], &["4W", "ICU"])
}

/// The unit's index URL from `/api/v1/me`.
async fn index_of(server: &TestServer, token: &str, unit: &str) -> DocumentId {
    baton_e2e::index_of(server.addr(), token, unit).await
}

/// The open tasks on a unit's index, by template id.
async fn tasks_on(phone: &mut Phone, index_id: DocumentId) -> Vec<(DocumentId, String)> {
    let doc = phone.open(index_id).await.expect("the index is available");
    let index = index::read(&doc).unwrap();
    index
        .tasks
        .iter()
        .map(|(id, t)| (id.parse().unwrap(), t.template.id.to_string()))
        .collect()
}

async fn task_of(phone: &mut Phone, index_id: DocumentId, template: &str) -> DocumentId {
    tasks_on(phone, index_id)
        .await
        .into_iter()
        .find(|(_, t)| t == template)
        .unwrap()
        .0
}

fn append(doc: &automerge::Automerge, author: &Author, body: EventBody) -> automerge::Automerge {
    baton_e2e::append(doc, author, body).0
}

async fn me_bootstraps_a_device(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.token("cn.patel", "phone-9", &["charge_nurse"], &["4W", "ICU"]);
    let (status, me) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"], "cn.patel");
    assert_eq!(me["device"], "phone-9");
    let units: Vec<&str> = me["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(units, ["4W", "ICU"]);
    for unit in me["units"].as_array().unwrap() {
        assert_eq!(unit["roles"], serde_json::json!(["charge_nurse"]));
        assert!(
            unit["index_url"]
                .as_str()
                .unwrap()
                .starts_with("automerge:")
        );
    }
    // A token narrowed to one unit sees one unit, even though the records grant two.
    let narrow = server.token("cn.patel", "phone-9", &["charge_nurse"], &["ICU"]);
    let (_, me) = server.get("/api/v1/me", Some(&narrow)).await;
    assert_eq!(me["units"].as_array().unwrap().len(), 1);
    // A token cannot widen what the records grant: rn.evans is not a physician.
    let widened = server.token(
        "rn.evans",
        "phone-1",
        &["nurse", "physician"],
        &["4W", "ICU"],
    );
    let (_, me) = server.get("/api/v1/me", Some(&widened)).await;
    assert_eq!(me["units"].as_array().unwrap().len(), 1);
    assert_eq!(me["units"][0]["roles"], serde_json::json!(["nurse"]));
}

async fn bad_tokens_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.get("/api/v1/me", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_missing"))
    );

    let expired = server.token_with("rn.evans", "phone-1", &["nurse"], &["4W"], false, -3_600);
    let (status, body) = server.get("/api/v1/me", Some(&expired)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_expired"))
    );

    // Signed by another server's key.
    let other = TestServer::start(Backend::Sqlite).await;
    let foreign = other.token("rn.evans", "phone-1", &["nurse"], &["4W"]);
    let (status, body) = server.get("/api/v1/me", Some(&foreign)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_invalid"))
    );

    let mut tampered = nurse(&server, "phone-1");
    tampered.insert(tampered.len() - 3, 'x');
    let (status, _) = server.get("/api/v1/me", Some(&tampered)).await;
    assert_eq!(status, 401);

    let stranger = server.token("mallory", "phone-x", &["nurse"], &["4W"]);
    let (status, body) = server.get("/api/v1/me", Some(&stranger)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("unknown_user"))
    );

    // The WebSocket upgrade refuses the same tokens, before any frame is exchanged.
    let refused = Phone::connect(server.addr(), &expired).await.err().unwrap();
    assert_eq!(refused.status, 401);
    let refused = Phone::connect(server.addr(), &foreign).await.err().unwrap();
    assert_eq!(refused.status, 401);

    // Every refusal is in the security audit.
    let (status, audit) = server
        .get("/api/v1/audit/security", Some(&server.admin_token()))
        .await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.iter().filter(|k| **k == "refused_token").count() >= 5,
        "{kinds:?}"
    );
    // The admin API is for admins only.
    let (status, _) = server
        .get("/api/v1/audit/security", Some(&nurse(&server, "phone-1")))
        .await;
    assert_eq!(status, 403);
}

async fn a_phone_gets_the_worklist_from_the_server_alone(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = nurse(&server, "phone-1");
    let index_id = index_of(&server, &token, "4W").await;
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let tasks = tasks_on(&mut phone, index_id).await;
    let mut templates: Vec<&str> = tasks.iter().map(|(_, t)| t.as_str()).collect();
    templates.sort();
    assert_eq!(templates, ["consult", "discharge", "nonformulary_med"]);
    let index = index::read(phone.doc(index_id)).unwrap();
    assert!(index.roster.contains_key(&"rn.okafor".into()));
    assert!(
        !index.roster.contains_key(&"rn.silva".into()),
        "ICU staff are not on 4W"
    );
    for (id, template) in tasks {
        let doc = phone.open(id).await.expect("an open task is available");
        let task = TaskDoc::from_automerge(doc).unwrap();
        assert_eq!(task.meta().template.id.as_str(), template);
        assert_eq!(task.meta().unit.as_str(), "4W");
        assert_eq!(task.events().unwrap().events.len(), 1);
    }
}

async fn two_phones_see_each_others_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token_a = nurse(&server, "phone-a");
    let index_id = index_of(&server, &token_a, "4W").await;
    let mut a = Phone::connect(server.addr(), &token_a).await.unwrap();
    let mut b = Phone::connect(server.addr(), &physician(&server, "phone-b"))
        .await
        .unwrap();
    let consult = task_of(&mut a, index_id, "consult").await;
    let doc_a = a.open(consult).await.unwrap();
    let doc_b = b.open(consult).await.unwrap();

    // Both act at once: the physician acknowledges, the nurse adds a note.
    let fox = Author::new("dr.fox", "physician", "phone-b");
    let evans = Author::new("rn.evans", "nurse", "phone-a");
    let acked = append(&doc_b, &fox, EventBody::Acknowledged {});
    let noted = append(
        &doc_a,
        &evans,
        EventBody::Note {
            text: "Family at bedside".into(),
        },
    );
    b.push(consult, acked).await.unwrap();
    a.push(consult, noted).await.unwrap();
    a.wait_for(consult, |d| event_count(d) == 3).await;
    b.wait_for(consult, |d| event_count(d) == 3).await;

    let templates = TemplateRegistry::shipped();
    let state_of = |doc: &automerge::Automerge| {
        let task = TaskDoc::from_automerge(doc.clone()).unwrap();
        let template = templates.get(&task.meta().template).unwrap().clone();
        task.state(&template).unwrap()
    };
    let (sa, sb) = (state_of(a.doc(consult)), state_of(b.doc(consult)));
    assert_eq!(sa, sb);
    assert_eq!(sa.owner.unwrap().user.as_str(), "dr.fox");

    // The server's own view agrees.
    let (status, view) = server
        .get(&format!("/api/v1/tasks/{consult}"), Some(&token_a))
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["state"]["owner"]["user"], "dr.fox");
    assert_eq!(view["state"]["history"].as_array().unwrap().len(), 3);
}

async fn a_forged_event_is_refused_recorded_and_not_stored(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = nurse(&server, "phone-1");
    let index_id = index_of(&server, &token, "4W").await;
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let consult = task_of(&mut phone, index_id, "consult").await;
    let doc = phone.open(consult).await.unwrap();

    // The nurse's phone writes an acknowledgment in the physician's name.
    let forged = append(
        &doc,
        &Author::new("dr.fox", "physician", "phone-1"),
        EventBody::Acknowledged {},
    );
    let error = phone.push(consult, forged).await.unwrap_err();
    assert!(error.contains("dr.fox"), "{error}");

    // Nothing was stored or relayed: a fresh device sees one event.
    let mut other = Phone::connect(server.addr(), &physician(&server, "phone-2"))
        .await
        .unwrap();
    let fresh = other.open(consult).await.unwrap();
    assert_eq!(event_count(&fresh), 1);
    let (_, view) = server
        .get(&format!("/api/v1/tasks/{consult}"), Some(&token))
        .await;
    assert_eq!(view["state"]["history"].as_array().unwrap().len(), 1);

    let (_, audit) = server
        .get("/api/v1/audit/security", Some(&server.admin_token()))
        .await;
    let record = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "forged_event")
        .expect("a security audit record");
    assert_eq!(record["user"], "rn.evans");
    assert_eq!(record["device"], "phone-1");
    assert_eq!(record["doc"], consult.to_string());

    // The same phone can still write valid events on another task.
    let discharge = task_of(&mut phone, index_id, "discharge").await;
    let doc = phone.open(discharge).await.unwrap();
    let noted = append(
        &doc,
        &Author::new("rn.evans", "nurse", "phone-1"),
        EventBody::Note {
            text: "Patient asks about transport".into(),
        },
    );
    phone.push(discharge, noted).await.unwrap();
}

async fn an_event_the_rules_forbid_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.token("tr.kim", "phone-t", &["transport"], &["4W"]);
    let index_id = index_of(&server, &token, "4W").await;
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let consult = task_of(&mut phone, index_id, "consult").await;
    let doc = phone.open(consult).await.unwrap();
    // Transport has no part in a consult: it may not acknowledge one. The typed API refuses it
    // locally, so write the event the way a careless third-party client would.
    let mut raw = doc.clone();
    raw.set_actor(ActorId::random());
    let event = serde_json::json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "kind": "acknowledged",
        "actor": { "user": "tr.kim", "role": "transport" },
        "device": "phone-t",
        "device_time": baton_server::now_ms(),
        "hlc": format!("{:015}-000000", baton_server::now_ms()),
        "payload": {}
    });
    append_raw(&mut raw, &event);
    let error = phone.push(consult, raw).await.unwrap_err();
    assert!(error.contains("refused"), "{error}");
    let (_, view) = server
        .get(
            &format!("/api/v1/tasks/{consult}"),
            Some(&nurse(&server, "p")),
        )
        .await;
    assert_eq!(view["state"]["history"].as_array().unwrap().len(), 1);
}

/// Append a JSON event to the `events` list with plain Automerge calls.
fn append_raw(doc: &mut automerge::Automerge, event: &serde_json::Value) {
    use automerge::transaction::Transactable;
    let events = match doc.get(automerge::ROOT, "events").unwrap() {
        Some((_, id)) => id,
        None => panic!("no events list"),
    };
    let at = doc.length(&events);
    let map = event.as_object().unwrap().clone();
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        let obj = tx.insert_object(&events, at, automerge::ObjType::Map)?;
        baton_core::codec::write_map(tx, &obj, &map)
    })
    .unwrap();
}

async fn documents_outside_the_callers_units_are_unavailable(backend: Backend) {
    let server = TestServer::start(backend).await;
    let evans = nurse(&server, "phone-1");
    let index_4w = index_of(&server, &evans, "4W").await;
    let mut phone = Phone::connect(server.addr(), &evans).await.unwrap();
    let consult_4w = task_of(&mut phone, index_4w, "consult").await;

    let silva = server.token("rn.silva", "phone-icu", &["nurse"], &["ICU"]);
    let mut icu = Phone::connect(server.addr(), &silva).await.unwrap();
    assert!(icu.open(consult_4w).await.is_none(), "a 4W task");
    assert!(icu.open(index_4w).await.is_none(), "the 4W index");
    assert!(
        icu.open(DocumentId::random()).await.is_none(),
        "a document nobody has"
    );
    assert!(
        icu.docs[&consult_4w].doc.get_heads().is_empty(),
        "no bytes were sent"
    );
    assert!(
        icu.docs[&index_4w].doc.get_heads().is_empty(),
        "no bytes were sent"
    );

    let (status, _) = server
        .get(&format!("/api/v1/tasks/{consult_4w}"), Some(&silva))
        .await;
    assert_eq!(status, 404);
    let (_, audit) = server
        .get("/api/v1/audit/security", Some(&server.admin_token()))
        .await;
    assert!(
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "document_outside_units" && r["user"] == "rn.silva"),
        "{audit}"
    );
}

async fn a_task_created_on_a_phone_reaches_the_index_and_other_phones(backend: Backend) {
    let server = TestServer::start(backend).await;
    let evans = nurse(&server, "phone-1");
    let index_id = index_of(&server, &evans, "4W").await;
    let mut creator = Phone::connect(server.addr(), &evans).await.unwrap();
    let mut watcher = Phone::connect(server.addr(), &physician(&server, "phone-2"))
        .await
        .unwrap();
    assert_eq!(tasks_on(&mut watcher, index_id).await.len(), 3);

    let templates = TemplateRegistry::shipped();
    let consult = templates.latest(&"consult".into()).unwrap();
    let author = Author::new("rn.evans", "nurse", "phone-1");
    let new = |unit: &str| NewTask {
        unit: unit.into(),
        subject: Subject {
            reference: "enc-4w-20".into(),
            label: "Bed 20 · R.P.".into(),
        },
        acuity: Some("stat".into()),
        note: None,
    };
    let now = baton_server::now_ms();
    let (task, _) = TaskDoc::create(
        consult,
        new("4W"),
        &author,
        &mut HlcClock::new(),
        now,
        ActorId::random(),
    )
    .unwrap();
    let id = DocumentId::random();
    creator.push(id, task.into_automerge()).await.unwrap();

    // The index lists it, and the other phone can open it.
    watcher
        .wait_for(index_id, |d| {
            index::read(d).is_ok_and(|i| i.tasks.contains_key(&id.to_string()))
        })
        .await;
    let doc = watcher.open(id).await.expect("the new task");
    assert_eq!(event_count(&doc), 1);

    // A task on a unit the nurse does not work on is refused and not stored.
    let (elsewhere, _) = TaskDoc::create(
        consult,
        new("ICU"),
        &author,
        &mut HlcClock::new(),
        now,
        ActorId::random(),
    )
    .unwrap();
    let other = DocumentId::random();
    let error = creator
        .push(other, elsewhere.into_automerge())
        .await
        .unwrap_err();
    assert!(error.contains("ICU"), "{error}");
    let mut third = Phone::connect(server.addr(), &physician(&server, "phone-3"))
        .await
        .unwrap();
    assert!(third.open(other).await.is_none());
}

async fn the_unit_index_is_read_only_for_devices(backend: Backend) {
    let server = TestServer::start(backend).await;
    let evans = nurse(&server, "phone-1");
    let index_id = index_of(&server, &evans, "4W").await;
    let mut phone = Phone::connect(server.addr(), &evans).await.unwrap();
    let mut doc = phone.open(index_id).await.unwrap();
    doc.set_actor(ActorId::random());
    let tasks = match doc.get(automerge::ROOT, "tasks").unwrap() {
        Some((_, id)) => id,
        None => panic!("no tasks map"),
    };
    let victim = index::read(&doc)
        .unwrap()
        .tasks
        .keys()
        .next()
        .unwrap()
        .clone();
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        use automerge::transaction::Transactable;
        tx.delete(&tasks, victim.as_str())
    })
    .unwrap();
    let error = phone.push(index_id, doc).await.unwrap_err();
    assert!(error.contains("server"), "{error}");
    let mut other = Phone::connect(server.addr(), &physician(&server, "phone-2"))
        .await
        .unwrap();
    assert_eq!(tasks_on(&mut other, index_id).await.len(), 3);
}

async fn changes_survive_a_restart(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let evans = nurse(&server, "phone-1");
    let index_id = index_of(&server, &evans, "4W").await;
    let mut phone = Phone::connect(server.addr(), &evans).await.unwrap();
    let task = task_of(&mut phone, index_id, "nonformulary_med").await;
    let doc = phone.open(task).await.unwrap();
    let acked = append(
        &doc,
        &Author::new("rn.evans", "nurse", "phone-1"),
        EventBody::Acknowledged {},
    );
    phone.push(task, acked).await.unwrap();
    phone.close().await;

    // The commit shows in the metrics an operator scrapes.
    let (status, metrics) = server.get("/metrics", None).await;
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    assert!(value("baton_changes_stored_total") >= 1.0);
    let commits = value("baton_commit_seconds_count");
    assert!(commits >= 1.0);
    assert_eq!(value("baton_commit_seconds_bucket{le=\"+Inf\"}"), commits);
    assert_eq!(value("baton_commit_failures_total"), 0.0);
    // The phone's change was acknowledged, and how long that took is counted.
    assert!(value("baton_ack_seconds_count") >= 1.0);

    server.restart().await;
    // The demo seed ran again and added nothing.
    let mut again = Phone::connect(server.addr(), &evans).await.unwrap();
    assert_eq!(tasks_on(&mut again, index_id).await.len(), 3);
    let doc = again.open(task).await.unwrap();
    assert_eq!(event_count(&doc), 2);
}

async fn a_revoked_device_is_cut_off_and_told_to_wipe(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = nurse(&server, "phone-lost");
    let index_id = index_of(&server, &token, "4W").await;
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    tasks_on(&mut phone, index_id).await;

    let (status, body) = server
        .post(
            "/api/v1/devices/phone-lost/revoke",
            Some(&server.admin_token()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connections_closed"], 1);
    while phone.step().await {}
    assert_eq!(phone.closed.as_ref().unwrap().0, 4403, "{:?}", phone.closed);
    assert!(
        phone.errors.iter().any(|e| e.contains("wipe")),
        "{:?}",
        phone.errors
    );

    // The device cannot come back, with this token or a new one.
    let refused = Phone::connect(server.addr(), &token).await.err().unwrap();
    assert_eq!(refused.status, 403);
    let (status, body) = server
        .get("/api/v1/me", Some(&nurse(&server, "phone-lost")))
        .await;
    assert_eq!(
        (status, &body["error"], &body["wipe"]),
        (
            403,
            &serde_json::json!("device_revoked"),
            &serde_json::json!(true)
        )
    );
    // Other devices of the same user are unaffected.
    assert!(
        Phone::connect(server.addr(), &nurse(&server, "phone-new"))
            .await
            .is_ok()
    );
}

async fn malformed_frames_get_errors_and_harm_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let evans = nurse(&server, "phone-1");
    let index_id = index_of(&server, &evans, "4W").await;
    let mut phone = Phone::connect(server.addr(), &evans).await.unwrap();
    let task = task_of(&mut phone, index_id, "consult").await;

    phone
        .send_raw(WsMessage::Binary(vec![0xff, 0x00, 0x13].into()))
        .await;
    phone.until(|p| !p.errors.is_empty()).await;
    phone.send_raw(WsMessage::Text("hello".into())).await;
    phone.until(|p| p.errors.len() >= 2).await;
    // A sync frame whose payload is not a sync message.
    phone
        .send(&Message::Sync {
            sender_id: phone.peer.clone(),
            target_id: phone.server_peer.clone(),
            document_id: task,
            data: vec![0x42, 0xde, 0xad],
        })
        .await;
    phone.until(|p| p.errors.len() >= 3).await;

    // The connection still works and the document is whole.
    let mut other = Phone::connect(server.addr(), &physician(&server, "phone-2"))
        .await
        .unwrap();
    let doc = other.open(task).await.unwrap();
    assert_eq!(event_count(&doc), 1);
    assert_eq!(
        baton_e2e::root_str(&doc, "type").as_deref(),
        Some(baton_core::doc::TASK_TYPE)
    );
}

async fn stored_changes_are_compacted_into_snapshots(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let evans = nurse(&server, "phone-1");
    let index_id = index_of(&server, &evans, "4W").await;
    let hub = server.server().state().hub.clone();
    for n in 0..300 {
        hub.change(index_id, move |doc| {
            use automerge::transaction::Transactable;
            doc.transact::<_, _, automerge::AutomergeError>(|tx| {
                tx.put(automerge::ROOT, "generation", n as i64)
            })
            .map(|_| ())
            .map_err(|f| f.error.to_string())
        })
        .await
        .unwrap();
    }
    let db = server.server().state().db.clone();
    let loose = db.change_count(&index_id.to_string()).await.unwrap();
    assert!(loose < 256, "{loose} changes left outside the snapshot");

    // A restarted server reads snapshot and changes back, and phones get all of it.
    server.restart().await;
    let mut phone = Phone::connect(server.addr(), &evans).await.unwrap();
    let doc = phone.open(index_id).await.unwrap();
    assert_eq!(
        doc.get(automerge::ROOT, "generation").unwrap().unwrap().0,
        automerge::Value::int(299)
    );
    assert_eq!(index::read(&doc).unwrap().tasks.len(), 3);
}

async fn roles_count_only_on_the_unit_that_grants_them(backend: Backend) {
    let server = TestServer::start(backend).await;
    let db = &server.server().state().db;
    db.upsert_user("mx.dual", "Morgan Dual", 0).await.unwrap();
    db.add_membership("mx.dual", "4W", "nurse").await.unwrap();
    db.add_membership("mx.dual", "ICU", "physician")
        .await
        .unwrap();
    let token = server.token(
        "mx.dual",
        "phone-d",
        &["nurse", "physician"],
        &["4W", "ICU"],
    );
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let as_physician = Author::new("mx.dual", "physician", "phone-d");

    // A physician on ICU is only a nurse on 4W: acknowledging a 4W consult as physician fails.
    let consult_4w = task_of(&mut phone, index_of(&server, &token, "4W").await, "consult").await;
    let doc = phone.open(consult_4w).await.unwrap();
    let error = phone
        .push(
            consult_4w,
            append(&doc, &as_physician, EventBody::Acknowledged {}),
        )
        .await
        .unwrap_err();
    assert!(error.contains("physician"), "{error}");

    // On ICU the same act is theirs to do.
    let consult_icu = task_of(
        &mut phone,
        index_of(&server, &token, "ICU").await,
        "consult",
    )
    .await;
    let doc = phone.open(consult_icu).await.unwrap();
    phone
        .push(
            consult_icu,
            append(&doc, &as_physician, EventBody::Acknowledged {}),
        )
        .await
        .unwrap();
}

async fn the_unit_index_follows_acuity_and_closes_with_the_task(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.token("cn.patel", "phone-c", &["charge_nurse"], &["4W"]);
    let index_id = index_of(&server, &token, "4W").await;
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let consult = task_of(&mut phone, index_id, "consult").await;
    let charge = Author::new("cn.patel", "charge_nurse", "phone-c");
    let listed = |d: &automerge::Automerge| {
        index::read(d)
            .unwrap()
            .tasks
            .get(&consult.to_string())
            .cloned()
    };

    let doc = phone.open(consult).await.unwrap();
    let raised = append(
        &doc,
        &charge,
        EventBody::AcuityChanged {
            acuity: "stat".into(),
        },
    );
    phone.push(consult, raised).await.unwrap();
    phone
        .wait_for(index_id, |d| listed(d).is_some_and(|t| t.acuity == "stat"))
        .await;

    let doc = phone.doc(consult).clone();
    let cancelled = append(
        &doc,
        &charge,
        EventBody::Cancelled {
            reason: "Patient transferred".into(),
        },
    );
    phone.push(consult, cancelled).await.unwrap();
    phone.wait_for(index_id, |d| listed(d).is_none()).await;
    assert_eq!(index::read(phone.doc(index_id)).unwrap().tasks.len(), 2);
}

async fn a_disabled_user_is_cut_off_on_every_device(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut phone = Phone::connect(server.addr(), &nurse(&server, "phone-1"))
        .await
        .unwrap();
    let mut tablet = Phone::connect(server.addr(), &nurse(&server, "tablet-1"))
        .await
        .unwrap();
    let mut colleague = Phone::connect(server.addr(), &physician(&server, "phone-2"))
        .await
        .unwrap();

    let (status, body) = server
        .post(
            "/api/v1/users/rn.evans/disable",
            Some(&server.admin_token()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connections_closed"], 2);
    while phone.step().await {}
    while tablet.step().await {}

    // Refused from now on, with any token; other people are unaffected.
    let refused = Phone::connect(server.addr(), &nurse(&server, "phone-3"))
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("user_disabled"), "{}", refused.body);
    let index = index_of(&server, &physician(&server, "phone-2"), "4W").await;
    assert_eq!(tasks_on(&mut colleague, index).await.len(), 3);
    let roster = index::read(colleague.doc(index)).unwrap().roster;
    assert!(
        !roster.contains_key(&"rn.evans".into()),
        "off the roster: {roster:?}"
    );
    assert!(roster.contains_key(&"rn.okafor".into()));
    let (status, _) = server
        .post("/api/v1/users/nobody/disable", Some(&server.admin_token()))
        .await;
    assert_eq!(status, 404);
}

async fn browsers_pass_the_token_as_a_subprotocol_or_in_the_query(backend: Backend) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = TestServer::start(backend).await;
    let token = nurse(&server, "browser-1");
    let index = index_of(&server, &token, "4W").await;
    let offer = |token: &str| {
        let mut request = format!("ws://{}/sync", server.addr())
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            format!("baton, baton.bearer.{token}").parse().unwrap(),
        );
        request
    };

    // As a subprotocol. The server must answer with `baton`: a browser, like this client,
    // drops a connection whose offered subprotocols the server ignored.
    let mut phone = Phone::connect_request(offer(&token)).await.unwrap();
    assert!(phone.open(index).await.is_some());

    // In the query.
    let request = format!("ws://{}/sync?token={token}", server.addr())
        .into_client_request()
        .unwrap();
    let mut phone = Phone::connect_request(request).await.unwrap();
    assert!(phone.open(index).await.is_some());

    // A bad token is refused the same way wherever it comes.
    let expired = server.token_with("rn.evans", "browser-1", &["nurse"], &["4W"], false, -3_600);
    let refused = Phone::connect_request(offer(&expired)).await.err().unwrap();
    assert_eq!(refused.status, 401);
}

async fn the_unit_index_carries_the_roster_and_the_rotation(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let evans = nurse(&server, "phone-1");
    let index_id = index_of(&server, &evans, "4W").await;
    let mut phone = Phone::connect(server.addr(), &evans).await.unwrap();
    let doc = phone.open(index_id).await.unwrap();
    let unit = index::read(&doc).unwrap();
    let okafor = &unit.roster[&baton_core::ids::UserId::new("rn.okafor".to_owned())];
    assert_eq!(
        okafor.roles,
        vec![baton_core::ids::Role::new("nurse".to_owned())]
    );

    // Who covers a role, answered on the phone from the index alone.
    let schedule = unit.coverage.expect("coverage").schedule().unwrap();
    let at = |local: &str| {
        local
            .parse::<jiff::civil::DateTime>()
            .unwrap()
            .in_tz("America/New_York")
            .unwrap()
            .timestamp()
            .as_millisecond()
    };
    let covering = |role: &str, local: &str| {
        schedule
            .covering(&"4W".into(), &role.into(), at(local))
            .primary
            .map(|u| u.to_string())
    };
    assert_eq!(
        covering("nurse", "2026-12-01T08:00").as_deref(),
        Some("rn.evans")
    );
    assert_eq!(
        covering("nurse", "2026-12-01T20:00").as_deref(),
        Some("rn.okafor")
    );
    assert_eq!(
        covering("physician", "2026-12-01T03:00").as_deref(),
        Some("dr.fox")
    );
    assert_eq!(covering("transport", "2026-12-01T08:00"), None);
    phone.close().await;

    // Seeding again on restart rewrites nothing: the index only grows with real changes.
    let heads = doc.get_heads();
    server.restart().await;
    let mut again = Phone::connect(server.addr(), &evans).await.unwrap();
    let doc = again.open(index_id).await.unwrap();
    assert_eq!(doc.get_heads(), heads);
}

async fn a_flood_of_bad_tokens_is_counted_not_written(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut tampered = nurse(&server, "phone-1");
    tampered.insert(tampered.len() - 3, 'x');
    for _ in 0..30 {
        let (status, _) = server.get("/api/v1/me", Some(&tampered)).await;
        assert_eq!(status, 401);
    }
    let refused = Phone::connect(server.addr(), &tampered)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status, 401, "the sync endpoint refuses it too");

    // Every refusal is counted; only the first few from the address are written down, each
    // naming where it came from.
    let (_, metrics) = server.get("/metrics", None).await;
    let total: u64 = metrics
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("baton_refused_tokens_total ")?.parse().ok())
        .unwrap();
    assert_eq!(total, 31);
    let (_, audit) = server
        .get(
            "/api/v1/audit/security?limit=1000",
            Some(&server.admin_token()),
        )
        .await;
    let records: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "refused_token")
        .map(|r| r["detail"].as_str().unwrap())
        .collect();
    assert_eq!(records.len(), 10, "{records:?}");
    assert!(
        records.iter().all(|d| d.contains("from 127.0.0.1")),
        "{records:?}"
    );
}

async fn the_openapi_document_lists_every_route(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, spec) = server.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().unwrap();
    let mut listed: Vec<&str> = paths.keys().map(String::as_str).collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "/api/v1/audit/events",
            "/api/v1/audit/events/export",
            "/api/v1/audit/security",
            "/api/v1/devices",
            "/api/v1/devices/me/push",
            "/api/v1/devices/{id}/revoke",
            "/api/v1/fhir/AuditEvent",
            "/api/v1/fhir/Task",
            "/api/v1/fhir/Task/{id}",
            "/api/v1/fhir/metadata",
            "/api/v1/me",
            "/api/v1/metrics/breach-rate",
            "/api/v1/metrics/completed-without-intervention",
            "/api/v1/metrics/discharge-order-to-confirmed",
            "/api/v1/metrics/escalations",
            "/api/v1/metrics/summary",
            "/api/v1/metrics/task-aging",
            "/api/v1/metrics/time-to-acknowledgment",
            "/api/v1/metrics/time-to-first-outreach",
            "/api/v1/metrics/workload",
            "/api/v1/notifications/dead",
            "/api/v1/openapi.json",
            "/api/v1/programs",
            "/api/v1/roles",
            "/api/v1/roles/{id}",
            "/api/v1/tasks",
            "/api/v1/tasks/{id}",
            "/api/v1/tasks/{id}/cancel",
            "/api/v1/tasks/{id}/reassign",
            "/api/v1/templates",
            "/api/v1/triggers",
            "/api/v1/units",
            "/api/v1/units/{id}",
            "/api/v1/units/{unit}/overrides",
            "/api/v1/units/{unit}/overrides/{id}",
            "/api/v1/units/{unit}/rotations/{role}",
            "/api/v1/users",
            "/api/v1/users/{id}/disable",
            "/api/v1/users/{id}/memberships/{unit}/{role}",
            "/healthz",
            "/metrics",
            "/readyz",
        ]
    );
    // Every operation it lists is one the server routes: an unrouted path gets the framework's
    // bare 404, a routed one answers (with its own JSON error where the call is refused, an
    // OperationOutcome under FHIR).
    let admin = server.admin_token();
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            let path = path
                .replace("{id}", "nobody")
                .replace("{unit}", "4W")
                .replace("{role}", "nurse");
            let (status, body) =
                baton_e2e::http(server.addr(), &method.to_uppercase(), &path, Some(&admin)).await;
            assert!(
                status != 404
                    || body["error"] == "not_found"
                    || body["issue"][0]["code"] == "not-found",
                "{method} {path}: {status} {body}"
            );
        }
    }
}

async fn deadlines_are_judged_by_the_workflow_clock(backend: Backend) {
    // Real time: the demo's urgent consult, opened a moment ago, is not overdue yet.
    let server = TestServer::start(backend).await;
    let view = consult_view(&server).await;
    let due = view["next_due"]["at"]
        .as_i64()
        .expect("an acknowledgment deadline");
    assert_eq!(view["next_due"]["action"]["action"], "escalate");
    assert!(due > view["now"].as_i64().unwrap());
    assert_eq!(view["overdue"], false);

    // `--time-scale`: a day passes in a tenth of a second, so the acknowledgment window has
    // lapsed, and the server's scheduler has escalated the consult on the workflow clock.
    let fast = TestServer::start_with(backend, |c| c.time_scale = 1_000_000).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let view = consult_view(&fast).await;
        assert!(view["now"].as_i64().unwrap() > due);
        let escalated = view["state"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["kind"] == "escalated");
        if escalated {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never escalated: {view}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The task view of the demo's consult on 4W, as its nurse sees it.
async fn consult_view(server: &TestServer) -> serde_json::Value {
    let evans = nurse(server, "phone-1");
    let index_id = index_of(server, &evans, "4W").await;
    let mut phone = Phone::connect(server.addr(), &evans).await.unwrap();
    let consult = task_of(&mut phone, index_id, "consult").await;
    phone.close().await;
    let (status, view) = server
        .get(&format!("/api/v1/tasks/{consult}"), Some(&evans))
        .await;
    assert_eq!(status, 200, "{view}");
    view
}
