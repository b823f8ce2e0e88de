//! The document actor (`sync::actor`) driven as the server's hub drives it, with storage in
//! memory: every case of the sync path's promise, on the real path.
//!
//! A `Server` here is the hub's loop in miniature: it hands the actor a batch, stores the commit
//! it returns (or fails to, when told to), reports the outcome, and keeps every message the
//! actor sent, per peer, in the order it was allowed to send it.

mod common;

use automerge::{Automerge, Change, ChangeHash, ReadDoc};
use baton_core::event::EventBody;
use baton_core::ids::UnitId;
use baton_core::policy::escalation::next_due;
use baton_core::sync::DocumentId;
use baton_core::sync::actor::{
    Audit, COMPACT_AFTER, Commit, DocActor, DocKind, Effects, Input, Outgoing, Peer, Record,
    Settings, Stored, TimerChange,
};
use baton_core::validate::{AuthContext, Limits};
use baton_core::{TaskDoc, TemplateRegistry};
use common::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A connection: one person, with grants that can change while it is open.
#[derive(Debug)]
struct Conn {
    id: u64,
    user: &'static str,
    role: &'static str,
    units: Mutex<Vec<UnitId>>,
}

impl Conn {
    fn new(id: u64, user: &'static str, role: &'static str, unit: &str) -> Arc<Conn> {
        Arc::new(Conn {
            id,
            user,
            role,
            units: Mutex::new(vec![unit.into()]),
        })
    }

    fn revoke(&self) {
        self.units.lock().expect("grants").clear();
    }
}

impl Peer for Conn {
    fn id(&self) -> u64 {
        self.id
    }

    fn may_see(&self, unit: &UnitId) -> bool {
        self.units.lock().expect("grants").contains(unit)
    }

    fn auth_on(&self, unit: Option<&UnitId>) -> AuthContext {
        let on = unit.filter(|u| self.may_see(u));
        AuthContext {
            user: self.user.into(),
            device: format!("{}-phone", self.user).into(),
            roles: on.iter().map(|_| self.role.into()).collect(),
            units: on.into_iter().cloned().collect(),
            system: false,
        }
    }
}

/// What storage holds of the document.
#[derive(Default)]
struct Storage {
    record: Option<Record>,
    changes: Vec<Change>,
    commits: Vec<Commit>,
    compactions: usize,
}

/// The hub's loop in miniature.
struct Server {
    actor: DocActor<Conn>,
    storage: Storage,
    /// Every message sent, per connection, in order.
    inbox: HashMap<u64, Vec<Outgoing>>,
    audits: Vec<(u64, Audit)>,
    replies: Vec<(u64, Result<(), String>)>,
    stopped: Option<String>,
    /// The next commit fails.
    fail_next: bool,
}

const NOW: i64 = T0 + HOUR;

fn settings() -> Arc<Settings> {
    settings_with(Limits::default())
}

fn settings_with(limits: Limits) -> Arc<Settings> {
    Arc::new(Settings {
        templates: baton_core::template::SharedTemplates::new(TemplateRegistry::shipped()),
        limits,
        actor: automerge::ActorId::from([0x5e; 16]),
        routing: baton_core::policy::escalation::Routing::On,
    })
}

fn doc_id() -> DocumentId {
    DocumentId::from_bytes([7; 16])
}

impl Server {
    /// A server that has never heard of the document.
    fn empty() -> Server {
        Server::with(DocActor::load(doc_id(), settings(), None).expect("an empty actor"))
    }

    /// A server that stores `task` on unit 4W.
    fn storing(task: &Automerge) -> Server {
        let stored = Stored {
            record: task_record(),
            snapshot: Some(task.save()),
            changes: Vec::new(),
        };
        let mut server = Server::with(
            DocActor::load(doc_id(), settings(), Some(stored)).expect("a stored task loads"),
        );
        server.storage.record = Some(task_record());
        server
    }

    fn with(actor: DocActor<Conn>) -> Server {
        Server {
            actor,
            storage: Storage::default(),
            inbox: HashMap::new(),
            audits: Vec::new(),
            replies: Vec::new(),
            stopped: None,
            fail_next: false,
        }
    }

    /// Hand the actor one batch and execute what it asks, as the hub does.
    fn batch(&mut self, inputs: Vec<Input<Conn>>) {
        let mut effects = self.actor.handle(NOW, inputs);
        loop {
            let commit = effects.commit.take();
            self.deliver(effects);
            let Some(commit) = commit else { return };
            assert!(self.actor.is_committing());
            let result = if std::mem::take(&mut self.fail_next) {
                Err("disk full".to_owned())
            } else {
                if let Some(record) = &commit.created {
                    self.storage.record = Some(record.clone());
                }
                self.storage.changes.extend(commit.changes.iter().cloned());
                Ok(())
            };
            self.storage.commits.push(commit);
            effects = self.actor.committed(NOW, result);
        }
    }

    fn deliver(&mut self, effects: Effects<Conn>) {
        for (conn, message) in effects.send {
            self.inbox.entry(conn.id).or_default().push(message);
        }
        self.audits
            .extend(effects.audit.into_iter().map(|(c, a)| (c.id, a)));
        self.replies.extend(effects.replies);
        if let Some(compaction) = effects.compact {
            self.storage.compactions += 1;
            self.actor.compacted(&compaction);
        }
        if let Some(reason) = effects.stop {
            self.stopped = Some(reason);
        }
    }

    fn sync(&mut self, from: &Arc<Conn>, data: Vec<u8>) {
        self.batch(vec![sync_input(from, data)]);
    }

    /// What `conn` was sent, taken.
    fn take(&mut self, conn: &Conn) -> Vec<Outgoing> {
        self.inbox.remove(&conn.id).unwrap_or_default()
    }

    fn stored_hashes(&self) -> Vec<ChangeHash> {
        self.storage.changes.iter().map(Change::hash).collect()
    }
}

fn sync_input(from: &Arc<Conn>, data: Vec<u8>) -> Input<Conn> {
    Input::Sync {
        from: from.clone(),
        data,
        request: false,
        arrived: Instant::now(),
    }
}

fn task_record() -> Record {
    Record {
        kind: DocKind::Task,
        unit: "4W".into(),
        template: None,
    }
}

/// The whole of `doc`, as one message.
fn everything(doc: &Automerge) -> Vec<u8> {
    let changes: Vec<Change> = doc.get_changes(&[]).into_iter().collect();
    carrying(doc.get_heads(), &changes)
}

/// A message that announces `heads` and carries nothing.
fn announcing(heads: Vec<ChangeHash>) -> Vec<u8> {
    carrying(heads, &[])
}

fn nurse(id: u64) -> Arc<Conn> {
    Conn::new(id, "rn.evans", "nurse", "4W")
}

fn has(doc: &Automerge, hash: ChangeHash) -> bool {
    doc.get_change_meta_by_hash(&hash).is_some()
}

fn syncs(messages: &[Outgoing]) -> usize {
    messages
        .iter()
        .filter(|m| matches!(m, Outgoing::Sync(_)))
        .count()
}

fn errors(messages: &[Outgoing]) -> Vec<&str> {
    messages
        .iter()
        .filter_map(|m| match m {
            Outgoing::Error(e) => Some(e.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_task_is_committed_with_its_events_and_index_entry_before_anyone_hears_of_it() {
    let mut doctor = Person::new("dr.adams", "physician");
    let task = doctor.create(&template("discharge"), T0).into_automerge();
    let phone = Conn::new(1, "dr.adams", "physician", "4W");
    let mut server = Server::empty();

    let mut effects = server
        .actor
        .handle(NOW, vec![sync_input(&phone, everything(&task))]);
    let commit = effects.commit.take().expect("a commit");
    assert!(
        effects.send.is_empty(),
        "nothing said before the commit is stored"
    );
    let created = commit.created.as_ref().expect("the document is new");
    assert_eq!(created.kind, DocKind::Task);
    assert_eq!(created.unit.as_str(), "4W");
    assert_eq!(
        created.template.as_ref().map(|t| t.id.as_str()),
        Some("discharge")
    );
    assert_eq!(commit.changes.len(), task.get_changes(&[]).len());
    assert_eq!(commit.events.len(), 1, "the creation event, received now");
    let index = commit.index.as_ref().expect("the index owes it an entry");
    assert_eq!(index.unit.as_str(), "4W");
    let listing = index.listing.as_ref().expect("listed while open");
    assert_eq!(listing.url, doc_id().url());
    let registry = TemplateRegistry::shipped();
    let template = registry.latest(&"discharge".into()).expect("shipped");
    let state = TaskDoc::from_automerge(task.clone())
        .expect("a task")
        .state(template)
        .expect("state");
    let due = next_due(template, &state).expect("the acknowledgment window runs");
    assert_eq!(
        commit.timer,
        Some(TimerChange::Set(due)),
        "its timer, in the same commit"
    );

    let after = server.actor.committed(NOW, Ok(()));
    assert!(after.commit.is_none());
    assert_eq!(after.acknowledged.len(), 1, "the run is answered");
    let acks: Vec<_> = after.send.iter().filter(|(c, _)| c.id == 1).collect();
    assert_eq!(acks.len(), 1, "the sender hears the stored heads");
    assert_eq!(server.actor.record(), Some(created));
}

#[test]
fn a_change_whose_dependency_is_missing_is_held_not_committed_and_judged_with_it() {
    let (origin, mut phone) = task_and_replica();
    let mut rn = Person::new("rn.evans", "nurse");
    let first = note(&mut rn, &mut phone, T0 + MINUTE, "first");
    let second = note(&mut rn, &mut phone, T0 + 2 * MINUTE, "second");
    let mut server = Server::storing(&origin);
    let conn = nurse(1);

    server.sync(
        &conn,
        carrying(vec![second.hash()], std::slice::from_ref(&second)),
    );
    assert!(server.storage.commits.is_empty(), "nothing to store");
    assert_eq!(server.actor.held(1), 1);
    assert!(!has(server.actor.doc(), second.hash()));
    assert!(errors(&server.take(&conn)).is_empty(), "no refusal");

    server.sync(
        &conn,
        carrying(vec![second.hash()], std::slice::from_ref(&first)),
    );
    assert_eq!(server.stored_hashes(), vec![first.hash(), second.hash()]);
    assert_eq!(server.storage.commits[0].events.len(), 2);
    assert_eq!(server.actor.held(1), 0);
}

#[test]
fn a_forged_change_is_refused_audited_and_never_stored() {
    let (origin, mut phone) = task_and_replica();
    let (first, forged) = mine_then_forged(&mut phone);
    let mut server = Server::storing(&origin);
    let conn = nurse(1);
    let watcher = nurse(2);
    server.sync(&watcher, announcing(origin.get_heads()));
    server.take(&watcher);

    // The forgery first, held for its dependency; then the dependency: judged together.
    server.sync(
        &conn,
        carrying(vec![forged.hash()], std::slice::from_ref(&forged)),
    );
    server.sync(
        &conn,
        carrying(vec![forged.hash()], std::slice::from_ref(&first)),
    );
    assert!(server.storage.changes.is_empty(), "neither change stored");
    assert!(!has(server.actor.doc(), forged.hash()));
    let sent = server.take(&conn);
    assert!(
        errors(&sent).iter().any(|e| e.contains("refused")),
        "{sent:?}"
    );
    assert_eq!(server.audits.len(), 1);
    assert_eq!(server.audits[0].1.kind, "forged_event");
    assert_eq!(syncs(&server.take(&watcher)), 0, "nothing relayed");
}

#[test]
fn an_event_nested_too_deeply_is_refused_and_the_actor_lives_on() {
    let (origin, phone) = task_and_replica();
    let (changes, heads) = nested_event(phone, 300);
    let mut server = Server::storing(&origin);
    let conn = nurse(1);
    server.sync(&conn, carrying(heads, &changes));
    assert!(server.storage.commits.is_empty());
    assert_eq!(server.audits[0].1.kind, "invalid_change");
    assert!(server.stopped.is_none());
    assert_eq!(server.actor.doc().get_heads(), origin.get_heads());
}

#[test]
fn too_many_changes_in_one_run_are_refused_whole() {
    let (origin, mut phone) = task_and_replica();
    let mut rn = Person::new("rn.evans", "nurse");
    let limits = Limits {
        max_changes: 20,
        ..Limits::default()
    };
    let chain: Vec<Change> = (0..=limits.max_changes as i64)
        .map(|i| note(&mut rn, &mut phone, T0 + MINUTE + i, "more"))
        .collect();
    let mut server = Server::storing(&origin);
    server.actor = DocActor::load(
        doc_id(),
        settings_with(limits),
        Some(Stored {
            record: task_record(),
            snapshot: Some(origin.save()),
            changes: Vec::new(),
        }),
    )
    .expect("loads");
    let conn = nurse(1);
    let heads = vec![chain.last().expect("a chain").hash()];
    server.sync(&conn, carrying(heads, &chain));
    assert!(server.storage.commits.is_empty());
    assert_eq!(server.audits[0].1.kind, "too_many_changes");
}

#[test]
fn a_change_less_sync_for_an_unknown_document_keeps_nothing_and_hears_nothing_later() {
    let mut server = Server::empty();
    let snoop = Conn::new(1, "rn.snoop", "nurse", "5E");
    server.sync(&snoop, announcing(Vec::new()));
    assert_eq!(
        server.take(&snoop),
        vec![Outgoing::Unavailable],
        "answered as a request"
    );
    assert!(!server.actor.has_peers(), "no peer kept for an unknown id");

    // The task is then created under that id, on another unit.
    let mut doctor = Person::new("dr.adams", "physician");
    let task = doctor.create(&template("discharge"), T0).into_automerge();
    let creator = Conn::new(2, "dr.adams", "physician", "4W");
    server.sync(&creator, everything(&task));
    assert_eq!(server.storage.commits.len(), 1);
    assert!(
        server.take(&snoop).is_empty(),
        "the early asker is sent nothing"
    );

    // Asked again, it is told the document is unavailable: the same answer as for no document.
    server.sync(&snoop, announcing(Vec::new()));
    assert_eq!(server.take(&snoop), vec![Outgoing::Unavailable]);
    assert_eq!(server.audits[0].1.kind, "document_outside_units");
}

#[test]
fn a_sync_announcing_heads_for_an_unknown_document_asks_for_them() {
    let mut doctor = Person::new("dr.adams", "physician");
    let task = doctor.create(&template("discharge"), T0).into_automerge();
    let mut server = Server::empty();
    let phone = Conn::new(1, "dr.adams", "physician", "4W");
    server.sync(&phone, announcing(task.get_heads()));
    let sent = server.take(&phone);
    assert_eq!(
        syncs(&sent),
        1,
        "the server asks for what the peer has: {sent:?}"
    );
    assert!(!server.actor.has_peers());
    assert!(server.storage.commits.is_empty());
}

#[test]
fn a_peer_that_loses_the_unit_is_sent_nothing_more() {
    let (origin, mut phone) = task_and_replica();
    let mut server = Server::storing(&origin);
    let watcher = nurse(1);
    server.sync(&watcher, announcing(origin.get_heads()));
    server.take(&watcher);
    watcher.revoke();

    let writer = nurse(2);
    let mut rn = Person::new("rn.evans", "nurse");
    let change = note(&mut rn, &mut phone, T0 + MINUTE, "after the revoke");
    server.sync(
        &writer,
        carrying(vec![change.hash()], std::slice::from_ref(&change)),
    );
    assert_eq!(server.stored_hashes(), vec![change.hash()]);
    assert_eq!(server.take(&watcher), vec![Outgoing::Unavailable]);
    assert!(syncs(&server.take(&writer)) >= 1);

    // Its own messages are refused the same way, and audited.
    server.sync(&watcher, announcing(origin.get_heads()));
    assert_eq!(server.take(&watcher), vec![Outgoing::Unavailable]);
}

#[test]
fn ephemeral_messages_reach_only_peers_that_may_see_the_document() {
    let (origin, _) = task_and_replica();
    let mut server = Server::storing(&origin);
    let (a, b, c) = (nurse(1), nurse(2), nurse(3));
    for conn in [&a, &b, &c] {
        server.sync(conn, announcing(origin.get_heads()));
        server.take(conn);
    }
    c.revoke();
    let message = Arc::new(baton_core::sync::actor::Ephemeral {
        sender: "phone-a".into(),
        session_id: "s".into(),
        count: 1,
        data: vec![1, 2, 3],
    });
    server.batch(vec![Input::Ephemeral { from: 1, message }]);
    assert!(server.take(&a).is_empty(), "not echoed to its sender");
    assert!(matches!(
        server.take(&b).as_slice(),
        [Outgoing::Ephemeral(_)]
    ));
    assert_eq!(server.take(&c), vec![Outgoing::Unavailable]);

    // A peer that is not syncing the document may not speak on it.
    let stranger = nurse(9);
    let message = Arc::new(baton_core::sync::actor::Ephemeral {
        sender: "phone-x".into(),
        session_id: "s".into(),
        count: 1,
        data: vec![],
    });
    server.batch(vec![Input::Ephemeral {
        from: stranger.id,
        message,
    }]);
    assert!(server.take(&b).is_empty());
}

#[test]
fn a_failed_commit_stops_the_actor_and_tells_everyone_to_sync_again() {
    let (origin, mut phone) = task_and_replica();
    let mut server = Server::storing(&origin);
    let watcher = nurse(1);
    server.sync(&watcher, announcing(origin.get_heads()));
    server.take(&watcher);
    let writer = nurse(2);
    let mut rn = Person::new("rn.evans", "nurse");
    let change = note(&mut rn, &mut phone, T0 + MINUTE, "lost");

    server.fail_next = true;
    server.batch(vec![
        sync_input(
            &writer,
            carrying(vec![change.hash()], std::slice::from_ref(&change)),
        ),
        Input::Local {
            ticket: 7,
            change: Box::new(|_| Ok(())),
        },
    ]);
    assert!(server.stopped.is_some(), "the actor stops");
    assert!(server.storage.changes.is_empty());
    for conn in [&watcher, &writer] {
        let sent = server.take(conn);
        assert_eq!(syncs(&sent), 0, "no heads announced that are not stored");
        assert_eq!(errors(&sent).len(), 1, "told to sync again: {sent:?}");
    }
    assert!(matches!(server.replies.as_slice(), [(7, Err(_))]));
}

#[test]
fn a_server_change_is_answered_once_its_commit_is_stored() {
    let (origin, _) = task_and_replica();
    let mut server = Server::storing(&origin);
    let mut effects = server.actor.handle(
        NOW,
        vec![Input::Local {
            ticket: 1,
            change: Box::new(|doc| {
                use automerge::transaction::Transactable;
                let mut tx = doc.transaction();
                tx.put(automerge::ROOT, "touched", true)
                    .map_err(|e| e.to_string())?;
                tx.commit();
                Ok(())
            }),
        }],
    );
    assert!(effects.replies.is_empty(), "no answer before the commit");
    let commit = effects.commit.take().expect("a commit");
    assert_eq!(commit.changes.len(), 1);
    assert!(commit.events.is_empty(), "no event written");

    // Whatever comes in meanwhile waits for the commit.
    let conn = nurse(1);
    let waiting = server
        .actor
        .handle(NOW, vec![sync_input(&conn, announcing(Vec::new()))]);
    assert!(waiting.send.is_empty() && waiting.commit.is_none());

    let after = server.actor.committed(NOW, Ok(()));
    assert!(matches!(after.replies.as_slice(), [(1, Ok(()))]));
    assert!(
        after
            .send
            .iter()
            .any(|(c, m)| c.id == 1 && matches!(m, Outgoing::Sync(_))),
        "the waiting sync is taken up after the commit"
    );
}

#[test]
fn a_closed_task_owes_its_index_the_removal() {
    let mut doctor = Person::new("dr.adams", "physician");
    let mut task = doctor.create(&template("discharge"), T0);
    let mut server = Server::storing(task.automerge());
    let cancel = change_by(&mut task, |doc| {
        doctor.act(
            doc,
            &template("discharge"),
            T0 + MINUTE,
            EventBody::Cancelled {
                reason: "duplicate".into(),
            },
        );
    });
    let conn = Conn::new(1, "dr.adams", "physician", "4W");
    server.sync(
        &conn,
        carrying(vec![cancel.hash()], std::slice::from_ref(&cancel)),
    );
    let index = server.storage.commits[0].index.as_ref().expect("owed");
    assert!(index.listing.is_none(), "taken off the index");
    assert_eq!(
        server.storage.commits[0].timer,
        Some(TimerChange::Clear),
        "nothing is due on a closed task"
    );

    // Nothing more is owed for later changes of a closed task.
    let after = note(&mut doctor, &mut task, T0 + 2 * MINUTE, "after");
    server.sync(
        &conn,
        carrying(vec![after.hash()], std::slice::from_ref(&after)),
    );
    assert_eq!(
        server.storage.commits.len(),
        2,
        "a note on a closed task is stored"
    );
    assert!(server.storage.commits[1].index.is_none());
    assert!(
        server.storage.commits[1].timer.is_none(),
        "no timer to clear again"
    );
}

#[test]
fn a_stored_snapshot_with_queued_changes_loads_without_them() {
    let (origin, mut phone) = task_and_replica();
    let (first, forged) = mine_then_forged(&mut phone);
    let mut queued = origin.clone();
    queued.apply_changes([forged.clone()]).expect("queued");
    let stored = Stored {
        record: task_record(),
        snapshot: Some(queued.save()),
        changes: vec![(first.hash().to_string(), first.raw_bytes().to_vec())],
    };
    let actor: DocActor<Conn> = DocActor::load(doc_id(), settings(), Some(stored)).expect("loads");
    assert!(has(actor.doc(), first.hash()));
    assert!(
        !has(actor.doc(), forged.hash()),
        "the queued change never applied"
    );
    assert!(actor.doc().get_missing_deps(&[]).is_empty());
}

#[test]
fn stored_changes_are_compacted_once_enough_have_gathered() {
    let (origin, mut phone) = task_and_replica();
    let mut rn = Person::new("rn.evans", "nurse");
    let chain: Vec<Change> = (0..COMPACT_AFTER as i64)
        .map(|i| note(&mut rn, &mut phone, T0 + MINUTE + i, "more"))
        .collect();
    let mut server = Server::storing(&origin);
    let conn = nurse(1);
    let heads = vec![chain.last().expect("a chain").hash()];
    server.sync(&conn, carrying(heads, &chain));
    assert_eq!(server.storage.changes.len(), COMPACT_AFTER);
    assert_eq!(server.storage.compactions, 1);
}

#[test]
fn a_due_timer_fires_once_as_the_system_and_moves_on() {
    use baton_core::policy::coverage::Schedule;
    let mut doctor = Person::new("dr.adams", "physician");
    let task = doctor.create(&template("discharge"), T0);
    let mut server = Server::storing(task.automerge());
    let watcher = nurse(1);
    server.sync(&watcher, announcing(task.automerge().get_heads()));
    server.take(&watcher);
    let due = next_due(
        &template("discharge"),
        &state(&task, &template("discharge")),
    )
    .expect("the new task is routed at once");
    let schedule = Arc::new(
        Schedule::new(jiff::tz::TimeZone::UTC, Vec::new(), Vec::new()).expect("a schedule"),
    );
    let fire = |ticket, now| Input::Fire {
        ticket,
        now,
        schedule: schedule.clone(),
    };

    // Not yet due: nothing happens.
    server.batch(vec![fire(1, due.at - 1)]);
    assert!(server.storage.commits.is_empty());
    assert!(matches!(server.replies.as_slice(), [(1, Ok(()))]));

    // Due: the system's routing (nobody covers the case manager here, so an exception), stored
    // with the next timer, then sent.
    server.batch(vec![fire(2, due.at)]);
    let commit = &server.storage.commits[0];
    assert_eq!(commit.events.len(), 1);
    let event = &commit.events[0];
    assert_eq!(event.id, due.event_id);
    assert!(event.actor.is_system());
    assert_eq!(event.id.as_str(), "route:open");
    assert!(
        matches!(&event.body, EventBody::ExceptionRaised { rule: Some(rule), .. } if rule == "nobody_covers"),
        "{:?}",
        event.body
    );
    match &commit.timer {
        Some(TimerChange::Set(next)) => assert_ne!(next.event_id, due.event_id),
        other => panic!("the chain goes on: {other:?}"),
    }
    assert!(
        syncs(&server.take(&watcher)) >= 1,
        "everyone syncing hears of it"
    );

    // Fired again (a second node, a lease that ran out): nothing new.
    server.batch(vec![fire(3, due.at + MINUTE)]);
    assert_eq!(server.storage.commits.len(), 1);
}

#[test]
fn a_firing_names_whoever_covers_the_role_its_notice_alerts() {
    use baton_core::Span;
    use baton_core::notice::NoticeKind;
    use baton_core::policy::coverage::{Rotation, Schedule};
    let mut doctor = Person::new("dr.adams", "physician");
    let task = doctor.create(&template("discharge"), T0);
    let mut server = Server::storing(task.automerge());
    let due = next_due(
        &template("discharge"),
        &state(&task, &template("discharge")),
    )
    .expect("the new task is routed at once");
    // Nobody covers the case manager; rn.kim is the charge nurse, whom that exception alerts.
    let charge = Rotation {
        unit: task.meta().unit.clone(),
        role: "charge_nurse".into(),
        anchor: "2020-01-06T07:00".parse().expect("a date"),
        shift: Span::from_hours(12),
        primary: vec!["rn.kim".into()],
        secondary: Vec::new(),
    };
    let schedule = Arc::new(
        Schedule::new(jiff::tz::TimeZone::UTC, vec![charge], Vec::new()).expect("a schedule"),
    );
    server.batch(vec![Input::Fire {
        ticket: 1,
        now: due.at,
        schedule,
    }]);

    let commit = &server.storage.commits[0];
    assert!(commit.notices_named, "named on the coverage it fired with");
    let [notice] = commit.notices.as_slice() else {
        panic!("one notice: {:?}", commit.notices);
    };
    assert_eq!(notice.kind, NoticeKind::Exception);
    assert_eq!(notice.role.as_str(), "charge_nurse");
    assert_eq!(notice.user.as_ref().map(|u| u.as_str()), Some("rn.kim"));
}
