//! Shared helpers for the core's integration tests: a simulated ward of people and devices with
//! a controllable clock.
#![allow(dead_code, unreachable_pub)]

use automerge::ActorId;
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
