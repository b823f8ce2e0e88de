//! Shared helpers for the core's integration tests: a simulated ward of people and devices with
//! a controllable clock.
#![allow(dead_code, unreachable_pub)]

use automerge::ActorId;
use automerge::{Automerge, ReadDoc};
use baton_core::doc::{AppendError, NewTask, Subject};
use baton_core::event::{Event, EventBody};
use baton_core::fold::TaskState;
use baton_core::{Author, HlcClock, Millis, TaskDoc, Template, TemplateRegistry};
use std::sync::Arc;

/// 2026-01-05 07:00 UTC, a Monday.
pub const T0: Millis = 1_767_596_400_000;
pub const MINUTE: Millis = 60_000;
pub const HOUR: Millis = 60 * MINUTE;

pub fn template(id: &str) -> Arc<Template> {
    TemplateRegistry::shipped()
        .latest(&id.into())
        .expect("shipped template")
        .clone()
}

/// One person with a phone.
#[derive(Debug, Clone)]
pub struct Person {
    pub author: Author,
    pub clock: HlcClock,
}

impl Person {
    pub fn new(user: &str, role: &str) -> Self {
        Person {
            author: Author::new(user, role, format!("{user}-phone")),
            clock: HlcClock::new(),
        }
    }

    /// Open a task on unit 4W.
    pub fn create(&mut self, template: &Template, now: Millis) -> TaskDoc {
        self.create_with(template, now, None)
    }

    pub fn create_with(
        &mut self,
        template: &Template,
        now: Millis,
        acuity: Option<&str>,
    ) -> TaskDoc {
        let new = NewTask {
            unit: "4W".into(),
            subject: Subject {
                reference: "enc-1001".into(),
                label: "Bed 12 · J.D.".into(),
            },
            acuity: acuity.map(str::to_owned),
            note: None,
        };
        let (doc, _) = TaskDoc::create(
            template,
            new,
            &self.author,
            &mut self.clock,
            now,
            ActorId::random(),
        )
        .expect("create");
        doc
    }

    pub fn act(
        &mut self,
        doc: &mut TaskDoc,
        template: &Template,
        now: Millis,
        body: EventBody,
    ) -> Event {
        self.try_act(doc, template, now, body)
            .expect("event accepted")
    }

    pub fn try_act(
        &mut self,
        doc: &mut TaskDoc,
        template: &Template,
        now: Millis,
        body: EventBody,
    ) -> Result<Event, AppendError> {
        doc.append(template, &self.author, &mut self.clock, now, body)
    }
}

pub fn state(doc: &TaskDoc, template: &Template) -> TaskState {
    doc.state(template).expect("state")
}

/// A copy of `doc` as another device would hold it after syncing (its own Automerge actor).
pub fn replica(doc: &TaskDoc) -> TaskDoc {
    let mut copy = TaskDoc::load(&doc.save()).expect("load");
    copy.set_actor(ActorId::random());
    copy
}

/// Build a `fields` map from pairs.
#[macro_export]
macro_rules! fields {
    ($($k:expr => $v:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut m = std::collections::BTreeMap::new();
        $(m.insert($k.to_string(), $v);)*
        m
    }};
}

// --- Changes as a peer sends them ---------------------------------------------------------------

/// A discharge task, and a nurse's replica of it with a fresh Automerge actor.
pub fn task_and_replica() -> (Automerge, TaskDoc) {
    let mut creator = Person::new("dr.adams", "physician");
    let task = creator.create(&template("discharge"), T0);
    let copy = replica(&task);
    (task.into_automerge(), copy)
}

/// The change `doc` gained from `f`.
pub fn change_by(doc: &mut TaskDoc, f: impl FnOnce(&mut TaskDoc)) -> automerge::Change {
    let before = doc.automerge().get_heads();
    f(doc);
    let mut changes = doc.automerge().get_changes(&before);
    assert_eq!(changes.len(), 1);
    changes.remove(0)
}

pub fn note(person: &mut Person, doc: &mut TaskDoc, at: i64, text: &str) -> automerge::Change {
    change_by(doc, |doc| {
        person.act(
            doc,
            &template("discharge"),
            at,
            EventBody::Note { text: text.into() },
        );
    })
}

/// On `phone` (rn.evans's replica): her own note, then on top of it a note in another nurse's
/// name, sent from her phone. Returns `(mine, forged)`.
pub fn mine_then_forged(phone: &mut TaskDoc) -> (automerge::Change, automerge::Change) {
    let mut nurse = Person::new("rn.evans", "nurse");
    let mine = note(&mut nurse, phone, T0 + MINUTE, "mine");
    let mut other = Person::new("rn.lopez", "nurse");
    other.author.device = "rn.evans-phone".into();
    let forged = note(&mut other, phone, T0 + 2 * MINUTE, "not mine");
    (mine, forged)
}

/// A sync message that carries `changes` and claims `heads`, as a raw peer would send it.
pub fn carrying(heads: Vec<automerge::ChangeHash>, changes: &[automerge::Change]) -> Vec<u8> {
    automerge::sync::Message {
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
    .encode()
}

/// A change by `phone` that appends an event whose payload nests `depth` maps deep, with the
/// heads it leaves.
pub fn nested_event(
    phone: TaskDoc,
    depth: usize,
) -> (Vec<automerge::Change>, Vec<automerge::ChangeHash>) {
    use automerge::transaction::Transactable;
    let mut doc = phone.into_automerge();
    let before = doc.get_heads();
    let mut tx = doc.transaction();
    let (_, events) = tx
        .get(automerge::ROOT, "events")
        .expect("read")
        .expect("an event list");
    let len = tx.length(&events);
    let mut obj = tx
        .insert_object(&events, len, automerge::ObjType::Map)
        .expect("insert");
    for _ in 0..depth {
        obj = tx
            .put_object(&obj, "payload", automerge::ObjType::Map)
            .expect("nest");
    }
    tx.commit();
    (doc.get_changes(&before), doc.get_heads())
}
