//! The sync path keeps its promise against a hostile peer with a valid token: nothing that
//! validation did not accept is stored, no message takes the server down, and no document reaches
//! a connection that may not see it. Every scenario runs on both backends.
#![allow(clippy::unwrap_used)]

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, Change, ChangeHash, ObjType, ROOT, ReadDoc};
use baton_core::sync::{DocumentId, Message};
use baton_core::{Author, EventBody, HlcClock, NewTask, Subject, TaskDoc, TemplateRegistry};
use baton_e2e::{Backend, Phone, TestServer, event_count};
use std::time::Duration;

baton_e2e::on_both_backends!(
    a_change_without_its_dependency_never_reaches_storage,
    a_deeply_nested_event_is_refused_and_the_server_stays_up,
    a_sync_for_a_document_not_yet_created_leaks_nothing_later,
    answers_about_unknown_documents_keep_nothing_in_memory,
    too_many_changes_in_one_message_are_refused,
    a_failed_server_change_is_reported,
);

fn evans(server: &TestServer, device: &str) -> String {
    server.token("rn.evans", device, &["nurse"], &["4W"])
}

async fn task_of(
    server: &TestServer,
    phone: &mut Phone,
    token: &str,
    template: &str,
) -> DocumentId {
    let index_id = baton_e2e::index_of(server.addr(), token, "4W").await;
    let doc = phone.open(index_id).await.unwrap();
    let index = baton_core::index::read(&doc).unwrap();
    index
        .tasks
        .iter()
        .find(|(_, t)| t.template.id.as_str() == template)
        .map(|(id, _)| id.parse().unwrap())
        .unwrap()
}

/// `n` notes by `author` on `doc`, one change each, with one clock (so their stamps rise).
fn notes(
    doc: &Automerge,
    author: &Author,
    clock: &mut HlcClock,
    n: usize,
    text: &str,
) -> (Automerge, Vec<Change>) {
    let templates = TemplateRegistry::shipped();
    let mut task = TaskDoc::from_automerge(doc.clone()).unwrap();
    task.set_actor(ActorId::random());
    let template = templates.get(&task.meta().template).unwrap();
    let before = task.automerge().get_heads();
    for i in 0..n {
        task.append(
            template,
            author,
            clock,
            baton_server::now_ms(),
            EventBody::Note {
                text: format!("{text} {i}"),
            },
        )
        .unwrap();
    }
    let changes = task.automerge().get_changes(&before);
    (task.into_automerge(), changes)
}

/// A raw `sync` message carrying `changes` and claiming `heads`, as a hostile client sends it.
fn carrying(phone: &Phone, id: DocumentId, heads: Vec<ChangeHash>, changes: &[Change]) -> Message {
    let data = automerge::sync::Message {
        heads,
        need: Vec::new(),
        have: Vec::new(),
        changes: changes
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect::<Vec<_>>()
            .into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    }
    .encode();
    Message::Sync {
        sender_id: phone.peer.clone(),
        target_id: phone.server_peer.clone(),
        document_id: id,
        data,
    }
}

/// Read what the server sends until it has answered everything sent so far that went before
/// an answer on another document (answers on one document go out after everything the server
/// sent on documents it answered earlier).
async fn settle(phone: &mut Phone, probe: DocumentId) {
    phone.docs.remove(&probe);
    phone.open(probe).await;
}

/// Wait until the server announces heads that include `change` for `id`: it is stored.
async fn acknowledged(phone: &mut Phone, id: DocumentId, change: ChangeHash) {
    phone
        .until(|p| {
            p.docs[&id]
                .state
                .their_heads
                .as_ref()
                .is_some_and(|h| h.contains(&change))
        })
        .await;
}

/// A task of `template` on 4W and its content, fetched on a connection of its own (so the
/// changes a test builds from it take no connection's time).
async fn fetch(server: &TestServer, token: &str, template: &str) -> (DocumentId, Automerge) {
    let mut phone = Phone::connect(server.addr(), token).await.unwrap();
    let id = task_of(server, &mut phone, token, template).await;
    let doc = phone.open(id).await.unwrap();
    phone.close().await;
    (id, doc)
}

fn events_by(doc: &Automerge, user: &str) -> usize {
    TaskDoc::from_automerge(doc.clone())
        .unwrap()
        .events()
        .unwrap()
        .events
        .iter()
        .filter(|e| e.actor.user.as_str() == user)
        .count()
}

/// The stored document, as a fresh load from storage gives it.
async fn stored(server: &TestServer, id: DocumentId) -> Automerge {
    server
        .server()
        .state()
        .hub
        .load(&id)
        .await
        .unwrap()
        .unwrap()
}

/// A change whose dependency is withheld is not stored with the snapshot, and once its
/// dependency is accepted, no later load applies it unchecked. (Before, Automerge queued it,
/// compaction saved it, and every load from storage applied it without validation.)
async fn a_change_without_its_dependency_never_reaches_storage(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.idle_document = baton_core::time::Span::from_millis(200);
    })
    .await;
    let token = evans(&server, "phone-1");
    let (id, doc) = fetch(&server, &token, "discharge").await;
    let nurse = Author::new("rn.evans", "nurse", "phone-1");

    // Enough valid notes to have the document compacted while F waits for D; then D, a note of
    // her own (stamped after them: a device's events on a task follow one another), and on top
    // of it F, a note in the charge nurse's name.
    // One clock, as a phone has.
    let mut clock = HlcClock::new();
    let (_, many) = notes(&doc, &nurse, &mut clock, 300, "filler");
    let (with_d, d) = notes(&doc, &nurse, &mut clock, 1, "mine");
    let charge = Author::new("cn.patel", "charge_nurse", "phone-1");
    let (_, f) = notes(&with_d, &charge, &mut clock, 1, "forged");

    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    phone.open(id).await.unwrap();
    phone
        .send(&carrying(&phone, id, vec![f[0].hash()], &f))
        .await;
    let last = many.last().unwrap().hash();
    phone.send(&carrying(&phone, id, vec![last], &many)).await;
    acknowledged(&mut phone, id, last).await;

    // D arrives: F is judged with it, and both are refused.
    phone
        .send(&carrying(&phone, id, vec![f[0].hash()], &d))
        .await;
    phone.until(|p| !p.errors.is_empty()).await;
    assert!(phone.errors[0].contains("cn.patel"), "{:?}", phone.errors);
    phone.close().await;

    // D alone, on a new connection: accepted.
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    phone.open(id).await.unwrap();
    phone
        .send(&carrying(&phone, id, vec![d[0].hash()], &d))
        .await;
    acknowledged(&mut phone, id, d[0].hash()).await;
    assert!(phone.errors.is_empty(), "{:?}", phone.errors);
    phone.close().await;

    // Once the document has left memory, storage gives back D and the notes, never F.
    let hub = server.server().state().hub.clone();
    for _ in 0..100 {
        if hub.loaded_documents() <= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let loaded = stored(&server, id).await;
    assert_eq!(
        events_by(&loaded, "cn.patel"),
        0,
        "the forged event is not stored"
    );
    assert_eq!(events_by(&loaded, "rn.evans"), 301);
    assert!(loaded.get_missing_deps(&[]).is_empty());
    let (_, view) = server
        .get(&format!("/api/v1/tasks/{id}"), Some(&token))
        .await;
    let history = view["state"]["history"].as_array().unwrap();
    assert!(
        !history.iter().any(|h| h.to_string().contains("cn.patel")),
        "{view}"
    );

    // A new phone syncs the same.
    let mut other = Phone::connect(server.addr(), &evans(&server, "phone-2"))
        .await
        .unwrap();
    let fresh = other.open(id).await.unwrap();
    assert_eq!(events_by(&fresh, "cn.patel"), 0);
    assert_eq!(event_count(&fresh), event_count(&loaded));
}

/// An event payload nested far past the limit is refused before anything recurses into it:
/// one small message used to overflow a runtime thread's stack and abort the process.
async fn a_deeply_nested_event_is_refused_and_the_server_stays_up(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = evans(&server, "phone-1");
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let id = task_of(&server, &mut phone, &token, "consult").await;
    let mut doc = phone.open(id).await.unwrap();
    let before = doc.get_heads();
    let events_before = event_count(&doc);
    {
        let mut tx = doc.transaction();
        let (_, events) = tx.get(ROOT, "events").unwrap().unwrap();
        let len = tx.length(&events);
        let mut obj = tx.insert_object(&events, len, ObjType::Map).unwrap();
        for _ in 0..2_000 {
            obj = tx.put_object(&obj, "payload", ObjType::Map).unwrap();
        }
        tx.commit();
    }
    let changes = doc.get_changes(&before);
    let message = carrying(&phone, id, doc.get_heads(), &changes);
    assert!(message.encode().len() < 64 * 1024, "a small message");
    phone.send(&message).await;
    phone.until(|p| !p.errors.is_empty()).await;
    assert!(phone.errors[0].contains("nest"), "{:?}", phone.errors);

    // The server is still up, and the task is as it was.
    let mut other = Phone::connect(server.addr(), &evans(&server, "phone-2"))
        .await
        .unwrap();
    let fresh = other.open(id).await.unwrap();
    assert_eq!(fresh.get_heads(), before);
    assert_eq!(event_count(&fresh), events_before);
    let (status, _) = server.get("/healthz", None).await;
    assert_eq!(status, 200);
}

/// A `sync` (not `request`) for an id nobody has created yet keeps nothing of the peer, so the
/// task created later under that id on another unit never reaches it.
async fn a_sync_for_a_document_not_yet_created_leaks_nothing_later(backend: Backend) {
    let server = TestServer::start(backend).await;
    let icu = server.token("rn.silva", "phone-9", &["nurse"], &["ICU"]);
    let mut attacker = Phone::connect(server.addr(), &icu).await.unwrap();
    let id = DocumentId::random();
    let empty = automerge::sync::Message {
        heads: Vec::new(),
        need: Vec::new(),
        have: Vec::new(),
        changes: automerge::sync::ChunkList::empty(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    };
    attacker
        .send(&Message::Sync {
            sender_id: attacker.peer.clone(),
            target_id: attacker.server_peer.clone(),
            document_id: id,
            data: empty.encode(),
        })
        .await;
    attacker
        .until(|p| p.docs.get(&id).is_some_and(|r| r.unavailable))
        .await;

    // A 4W nurse creates the task under that id.
    let token = evans(&server, "phone-1");
    let mut creator = Phone::connect(server.addr(), &token).await.unwrap();
    let templates = TemplateRegistry::shipped();
    let (task, _) = TaskDoc::create(
        templates.latest(&"consult".into()).unwrap(),
        NewTask {
            unit: "4W".into(),
            subject: Subject {
                reference: "enc-4w-31".into(),
                label: "Bed 31".into(),
            },
            acuity: None,
            note: None,
        },
        &Author::new("rn.evans", "nurse", "phone-1"),
        &mut HlcClock::new(),
        baton_server::now_ms(),
        ActorId::random(),
    )
    .unwrap();
    creator.push(id, task.into_automerge()).await.unwrap();

    // Whatever the task's actor sent out went before this round trip's answer.
    let index_id = baton_e2e::index_of(server.addr(), &icu, "ICU").await;
    settle(&mut attacker, index_id).await;
    assert!(
        attacker.docs[&id].doc.get_heads().is_empty(),
        "the 4W task reached an ICU nurse's connection"
    );
    // Asking now is refused as for any document outside her units.
    assert!(attacker.open(id).await.is_none());
}

/// `sync` for ids that were never created is answered, and leaves no document in memory
/// behind (it used to cost an actor and a sync state per id for as long as the socket lived).
async fn answers_about_unknown_documents_keep_nothing_in_memory(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = evans(&server, "phone-1");
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let index_id = baton_e2e::index_of(server.addr(), &token, "4W").await;
    phone.open(index_id).await.unwrap();
    let hub = server.server().state().hub.clone();
    let baseline = hub.loaded_documents();
    let ids: Vec<DocumentId> = (0..200).map(|_| DocumentId::random()).collect();
    for id in &ids {
        let mut doc = Automerge::new();
        // A peer that claims to hold something, so it is asked for it rather than told no.
        doc.transact::<_, _, automerge::AutomergeError>(|tx| tx.put(ROOT, "x", 1))
            .unwrap();
        let data = automerge::sync::Message {
            heads: doc.get_heads(),
            need: Vec::new(),
            have: Vec::new(),
            changes: automerge::sync::ChunkList::empty(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        }
        .encode();
        phone
            .send(&Message::Sync {
                sender_id: phone.peer.clone(),
                target_id: phone.server_peer.clone(),
                document_id: *id,
                data,
            })
            .await;
    }
    settle(&mut phone, index_id).await;
    let mut loaded = hub.loaded_documents();
    for _ in 0..100 {
        if loaded <= baseline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        loaded = hub.loaded_documents();
    }
    assert!(
        loaded <= baseline,
        "{loaded} documents in memory, {baseline} before"
    );
}

/// Every change a message carries counts against the per-message limit, whether or not its
/// dependencies are there (5,000 changes waiting on a withheld one used to pass uncounted).
async fn too_many_changes_in_one_message_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = evans(&server, "phone-1");
    let (id, doc) = fetch(&server, &token, "discharge").await;
    // A chain of 1,200 changes whose first is withheld: none is ready, all count.
    let mut copy = doc.clone();
    copy.set_actor(ActorId::random());
    let before = copy.get_heads();
    for i in 0..1_201 {
        copy.transact::<_, _, automerge::AutomergeError>(|tx| tx.put(ROOT, "n", i as i64))
            .unwrap();
    }
    let mut chain = copy.get_changes(&before);
    chain.remove(0);
    let heads = copy.get_heads();
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    phone.open(id).await.unwrap();
    phone.send(&carrying(&phone, id, heads, &chain)).await;
    phone.until(|p| !p.errors.is_empty()).await;
    assert!(
        phone.errors[0].contains("too many changes"),
        "{:?}",
        phone.errors
    );
    let loaded = stored(&server, id).await;
    assert_eq!(loaded.get_heads(), doc.get_heads());
}

/// A change the server makes itself that fails says so (it used to report success).
async fn a_failed_server_change_is_reported(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = evans(&server, "phone-1");
    let index_id = baton_e2e::index_of(server.addr(), &token, "4W").await;
    let hub = server.server().state().hub.clone();
    let result = hub
        .change(index_id, |_| Err("nothing to do here".to_owned()))
        .await;
    assert!(
        result.is_err_and(|e| e.to_string().contains("nothing to do here")),
        "a failure is reported"
    );
}
