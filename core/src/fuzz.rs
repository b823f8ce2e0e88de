//! The bodies of Baton's fuzz targets, as plain functions of the fuzzer's bytes.
//!
//! `core/fuzz/` (cargo-fuzz, libFuzzer, nightly) calls each from a one-line `fuzz_target!`, and
//! `core/tests/fuzz_corpus.rs` replays the committed corpus through the same functions under an
//! ordinary `cargo test`, so what fuzzing found is checked on every build without nightly. Each
//! takes any bytes and panics only when an invariant fails:
//!
//! - [`frame`]: one WebSocket frame through [`Message::decode`]; a message that decodes encodes
//!   to a frame that decodes to the same message.
//! - [`sync_run`]: a byte-driven program in which phones append honest, forged, deeply nested and
//!   out-of-order events and send them, with raw bytes mixed in, to a document's receive path in
//!   runs; after every run the document holds only changes validation accepted.
//! - [`validate`]: raw change bytes, raw appends and typed appends on a task, through
//!   [`validate_changes`].
//! - [`template`]: template text through [`Template::from_toml`] and [`Template::from_json`].
//!
//! The bugs the fuzzers found are fixed; each has a switch ([`ORPHANS_REFUSED`],
//! [`CHECKSUMS_VERIFIED`], [`UNKNOWN_ACTORS_REFUSED`], [`DELETED_EVENTS_SAFE`],
//! [`JOIN_WITHOUT_VERSIONS_ROUND_TRIPS`]) that the generators stepped around it with while it was
//! open, now on, and the inputs that showed them are in the corpus as `fixed-*`. A bug found
//! later gets the same: a switch, and its input kept out of the corpus until it is fixed.

use crate::codec;
use crate::doc::{Author, EVENTS, NewTask, Subject, TaskDoc};
use crate::event::{Actor, Event, EventBody, EventKind, FieldValue};
use crate::hlc::{Hlc, HlcClock};
use crate::ids::UnitId;
use crate::ids::{EventId, StepId};
use crate::sync::actor::{
    DocActor, DocKind, Input as ActorInput, Outgoing, Peer, Record, Settings, Stored,
};
use crate::sync::handshake;
use crate::sync::{DocSync, DocumentId, Message, PeerId, PeerMetadata};
use crate::template::{FieldKind, Template, TemplateRegistry};
use crate::time::Millis;
use crate::validate::{Applied, AuthContext, Known, Limits, validate_applied, validate_changes};
use automerge::sync::{self as am_sync, ChunkList, MessageVersion};
use automerge::transaction::{Transactable, Transaction};
use automerge::{ActorId, Automerge, AutomergeError, Change, ChangeHash, ObjType, ROOT, ReadDoc};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

/// The deepest map nesting the generators build into an event: past validation's limit (32
/// levels from the root), so refusals of deep events are fuzzed too. The generators build their
/// nests recursively themselves, so this stays far below what would overflow their own stack;
/// the corpus holds raw changes nested 300, 1,000 and 5,000 deep (`fixed-nested-*`), which
/// validation refuses from the operations before anything recurses.
pub const MAX_NESTING: usize = 40;

/// Whether runs may end with dependencies missing, and nothing may be left queued after one.
///
/// Fixed: a change whose dependencies are missing waits beside the document for the peer that
/// sent it and is judged with them (ADR 0006); the document never has a queue.
/// `corpus/sync_run/fixed-orphan-accepted-on-another-peers-authority` showed the bug.
pub const ORPHANS_REFUSED: bool = true;

/// Whether [`sync_run`] sends changes that name an actor the document has never seen.
///
/// Fixed in the receive path: Automerge 0.12 panics applying such a change (an `unwrap` in
/// `import_ops`), and `DocSync` turns a panic while a run is applied or judged into a refusal
/// and poisons the document (its owner loads it again). [`validate`] applies changes with
/// Automerge's own `apply_changes` and so always leaves them out.
/// `corpus/*/fixed-change-naming-an-unknown-actor` showed the bug.
pub const UNKNOWN_ACTORS_REFUSED: bool = true;

/// Whether [`sync_run`] sends changes whose chunk checksum does not match their contents.
///
/// Fixed: `DocSync` refuses a message carrying such a change before applying anything
/// (`Change::try_from` does not check checksums; `load_incremental` does). [`validate`] applies
/// changes itself and so always leaves them out. `corpus/sync_run/fixed-mangled-change-*`
/// showed the bug.
pub const CHECKSUMS_VERIFIED: bool = true;

/// Whether the generators delete events.
///
/// Fixed: validation described a refused write by asking Automerge for the written object's
/// parents, which panics for an object a later change deleted; it now looks only at the root's
/// fields as they stood before the changes. `corpus/*/fixed-edit-then-delete-an-event` showed it.
pub const DELETED_EVENTS_SAFE: bool = true;

/// Whether the generators leave `chunk` out of a run for a known bug: its checksum does not
/// match ([`CHECKSUMS_VERIFIED`]) or it names an actor `doc` does not know
/// ([`UNKNOWN_ACTORS_REFUSED`]).
fn steered_around(chunk: &[u8], doc: &Automerge) -> bool {
    steered_around_when(chunk, doc, CHECKSUMS_VERIFIED, UNKNOWN_ACTORS_REFUSED)
}

/// [`steered_around`] with the fixes taken as given or not: [`validate`] applies changes with
/// Automerge's own `apply_changes`, which panics on both kinds whatever Baton does (the receive
/// path checks checksums before applying and turns a panic into a refusal), so it always steers
/// around them.
fn steered_around_when(
    chunk: &[u8],
    doc: &Automerge,
    checksums_verified: bool,
    unknown_actors_refused: bool,
) -> bool {
    let change = match read_change(chunk) {
        Read::Change(change) => *change,
        Read::NotAChange => return false,
        Read::Panics => return true,
    };
    let checksum_matches = chunk.get(4..8) == change.hash().0.get(..4);
    (!checksums_verified && !checksum_matches)
        || (!unknown_actors_refused && names_unknown_actor(&change, doc))
}

/// Whether `change` names, besides its own actor, an actor none of `doc`'s changes is by.
fn names_unknown_actor(change: &Change, doc: &Automerge) -> bool {
    if change.other_actor_ids().is_empty() {
        return false;
    }
    let known: HashSet<ActorId> = doc
        .get_changes_meta(&[])
        .into_iter()
        .map(|m| m.actor.into_owned())
        .collect();
    change
        .other_actor_ids()
        .iter()
        .any(|actor| !known.contains(actor))
}

/// Whether a sync message carries a chunk [`steered_around`].
fn carries_steered_around(message: &[u8], doc: &Automerge) -> bool {
    match quietly(|| Some(am_sync::Message::decode(message).ok())) {
        Some(Some(m)) => m.changes.iter().any(|chunk| steered_around(chunk, doc)),
        Some(None) => false,
        None => true,
    }
}

/// Whether a `join` that offers no protocol versions is compared whole after a round trip.
///
/// Fixed: such a `join` is encoded without the field, as it came.
/// `corpus/frame/fixed-join-without-versions-encodes-an-empty-list` showed the bug.
pub const JOIN_WITHOUT_VERSIONS_ROUND_TRIPS: bool = true;

/// 2026-01-05 07:00 UTC, a Monday: when the fuzzed task was created.
const T0: Millis = 1_767_596_400_000;
const MINUTE: Millis = 60_000;
/// The most operations one [`sync_run`] or [`validate`] program performs (each writes at most
/// one change, so a program stays far inside [`Limits::max_changes`]).
const MAX_OPS: usize = 64;

// --- reading the fuzzer's bytes ---------------------------------------------------------------

/// The fuzzer's bytes, read front to back. Reading past the end gives zeros and empty slices, so
/// every input is a complete program.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn bit(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// A number below `n` (which is not zero).
    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// A slice whose length comes first, in one byte.
    fn short_bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte());
        self.take(n)
    }

    /// A slice whose length comes first, in two bytes.
    fn long_bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.take(n)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(self.short_bytes()).into_owned()
    }

    fn pick<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[self.below(items.len())]
    }
}

// --- frame ------------------------------------------------------------------------------------

/// One WebSocket frame: decoding never panics, and a message that decodes encodes to a frame
/// that decodes to the same message. A `join` is also answered by the handshake, and the
/// automerge sync message inside a `sync` or `request` is decoded as the document actor would.
pub fn frame(data: &[u8]) {
    let Ok(message) = Message::decode(data) else {
        return;
    };
    let encoded = message.encode();
    match Message::decode(&encoded) {
        Ok(mut again) => {
            if !JOIN_WITHOUT_VERSIONS_ROUND_TRIPS
                && let (
                    Message::Join {
                        supported_protocol_versions: None,
                        ..
                    },
                    Message::Join {
                        supported_protocol_versions: versions,
                        ..
                    },
                ) = (&message, &mut again)
                && versions.as_deref() == Some(&[])
            {
                *versions = None;
            }
            assert_eq!(
                again, message,
                "a decoded message encodes to a frame that decodes to another message"
            );
        }
        Err(e) => panic!("{message:?} encodes to a frame that does not decode: {e}"),
    }
    match &message {
        Message::Sync { data, .. } | Message::Request { data, .. } => {
            let _ = am_sync::Message::decode(data);
        }
        Message::Join { .. } => {
            let server = PeerId::from("baton");
            let _ = handshake::accept_join(&server, &PeerMetadata::default(), 0, message.clone());
        }
        Message::Peer { .. } | Message::Error { .. } => {
            let _ = handshake::read_peer(&PeerId::from("phone"), message.clone());
        }
        _ => {}
    }
}

// --- template ---------------------------------------------------------------------------------

/// Template text: parsing never panics; a template that parses written out as JSON reads back
/// the same; a task opened from it by its owner role folds.
///
/// The first byte chooses the format (even: TOML, odd: JSON); the rest is the text.
pub fn template(data: &[u8]) {
    let Some((&format, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let parsed = if format % 2 == 0 {
        Template::from_toml("fuzz.toml", text)
    } else {
        Template::from_json("fuzz.json", text)
    };
    let Ok(template) = parsed else {
        return;
    };
    let json = serde_json::to_string(&template).expect("a template serializes to JSON");
    match Template::from_json("written.json", &json) {
        Ok(again) => assert_eq!(again, template, "a template written out reads back changed"),
        Err(e) => panic!("a template that parsed, written out, no longer parses: {e}\n{json}"),
    }
    let owner = Author::new("fuzz.owner", template.owner_role.as_str(), "fuzz-phone");
    let new = NewTask {
        unit: "4W".into(),
        subject: Subject {
            reference: "enc-1".into(),
            label: "Bed 1".into(),
        },
        acuity: None,
        note: None,
    };
    let mut clock = HlcClock::new();
    if let Ok((task, _)) = TaskDoc::create(
        &template,
        new,
        &owner,
        &mut clock,
        T0,
        ActorId::from([1; 16]),
    ) {
        let state = task.state(&template).expect("a new task folds");
        let _ = crate::policy::escalation::next_due(&template, &state);
    }
}

// --- the shared task and people ---------------------------------------------------------------

/// The people of the fuzzed ward: `(user, role)`; each has one phone (`<user>-phone`). The first
/// opened the task.
const PEOPLE: [(&str, &str); 5] = [
    ("dr.adams", "physician"),
    ("cm.lee", "case_manager"),
    ("rn.evans", "nurse"),
    ("rph.okafor", "pharmacist"),
    ("cn.diaz", "charge_nurse"),
];

fn author(person: usize) -> Author {
    let (user, role) = PEOPLE[person];
    Author::new(user, role, format!("{user}-phone"))
}

fn auth(person: usize) -> AuthContext {
    let a = author(person);
    AuthContext {
        user: a.user,
        device: a.device,
        roles: vec![a.role],
        units: vec!["4W".into()],
        system: false,
    }
}

fn system_auth() -> AuthContext {
    AuthContext {
        user: "baton".into(),
        device: "baton".into(),
        roles: vec!["system".into()],
        units: Vec::new(),
        system: true,
    }
}

/// A discharge task on unit 4W opened by the physician at [`T0`], and the registry.
struct Base {
    templates: TemplateRegistry,
    template: Arc<Template>,
    doc: Automerge,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let templates = TemplateRegistry::shipped();
        let template = templates
            .latest(&"discharge".into())
            .expect("discharge is shipped")
            .clone();
        let new = NewTask {
            unit: "4W".into(),
            subject: Subject {
                reference: "enc-1001".into(),
                label: "Bed 12 · J.D.".into(),
            },
            acuity: None,
            note: None,
        };
        let actor = ActorId::from([0xba; 16]);
        let (task, _) = TaskDoc::create(
            &template,
            new,
            &author(0),
            &mut HlcClock::new(),
            T0,
            actor.clone(),
        )
        .expect("the physician may open a discharge");
        // `create` gives the `created` event a random id; the same layout is written again with
        // a fixed one, so every run of an input sees the same change hashes.
        let mut root = match codec::to_json(&task.automerge().hydrate(None)) {
            Ok(Value::Object(root)) => root,
            other => panic!("a new task reads as a JSON object, not {other:?}"),
        };
        root[EVENTS][0]["id"] = json!("created");
        let mut doc = Automerge::new().with_actor(actor);
        doc.transact::<_, _, AutomergeError>(|tx| codec::write_map(tx, &ROOT, &root))
            .expect("writing a task");
        validate_changes(
            &Automerge::new(),
            &doc,
            &auth(0),
            &templates,
            T0,
            &Limits::default(),
        )
        .expect("the fuzzed task is valid");
        Base {
            templates,
            template,
            doc,
        }
    })
}

/// The discharge task every [`sync_run`] and [`validate`] program starts from, opened by
/// `dr.adams` (physician) on unit 4W at 2026-01-05 07:00 UTC, its `created` event's id
/// `created`. Seeds that carry change bytes are written on top of it.
pub fn fuzzed_task() -> &'static Automerge {
    &base().doc
}

/// An event by `person` at `hlc`, as JSON.
fn event_json(person: usize, id: &str, hlc: Hlc, body: EventBody) -> Map<String, Value> {
    let a = author(person);
    let event = Event {
        id: EventId::new(id),
        actor: Actor::new(a.user.clone(), a.role.clone()),
        device: a.device,
        device_time: hlc.wall,
        hlc,
        body,
    };
    match serde_json::to_value(&event) {
        Ok(Value::Object(map)) => map,
        other => panic!("an event serializes to an object, not {other:?}"),
    }
}

/// The task's event list in `doc`.
fn events_list(doc: &Automerge) -> Option<automerge::ObjId> {
    match doc.get(ROOT, EVENTS) {
        Ok(Some((automerge::Value::Object(ObjType::List), id))) => Some(id),
        _ => None,
    }
}

/// The greatest readable HLC stamp among `doc`'s events, read without hydrating them.
fn last_hlc(doc: &Automerge) -> Hlc {
    let Some(events) = events_list(doc) else {
        return Hlc::default();
    };
    doc.list_range(&events, ..)
        .filter_map(|item| match doc.get(item.id(), "hlc") {
            Ok(Some((automerge::Value::Scalar(s), _))) => s.as_str().and_then(|t| t.parse().ok()),
            _ => None,
        })
        .max()
        .unwrap_or_default()
}

/// Append `event` to `doc`'s event list as any Automerge client could, with a chain of `depth`
/// nested maps under `nest_at` (`payload` or the event itself) if `depth` is not zero.
fn raw_append(doc: &mut Automerge, event: &Map<String, Value>, depth: usize, in_payload: bool) {
    let Some(events) = events_list(doc) else {
        return;
    };
    let at = doc.length(&events);
    let _ = doc.transact::<_, _, AutomergeError>(|tx| {
        let obj = tx.insert_object(&events, at, ObjType::Map)?;
        codec::write_map(tx, &obj, event)?;
        if depth > 0 {
            let mut parent = if in_payload {
                match tx.get(&obj, "payload")? {
                    Some((automerge::Value::Object(ObjType::Map), id)) => id,
                    _ => tx.put_object(&obj, "payload", ObjType::Map)?,
                }
            } else {
                obj
            };
            for _ in 0..depth {
                parent = tx.put_object(&parent, "nested", ObjType::Map)?;
            }
            tx.put(&parent, "leaf", true)?;
        }
        Ok(())
    });
}

/// A body for `person` to write through the typed API, chosen by the input. The rules may
/// refuse it in the task's state; then nothing is written.
fn typed_body(input: &mut Input<'_>, template: &Template, now: Millis) -> EventBody {
    let step = |input: &mut Input<'_>| input.pick(&template.steps).id.clone();
    match input.below(15) {
        0 => EventBody::Note { text: input.text() },
        1 => EventBody::Claimed {},
        2 => EventBody::Acknowledged {},
        3 => EventBody::StepStarted { step: step(input) },
        4 => {
            let def = input.pick(&template.steps);
            let fields = def
                .fields
                .iter()
                .map(|f| {
                    let value = match &f.kind {
                        FieldKind::Text { .. } => FieldValue::Text("done".into()),
                        FieldKind::Number { min, .. } => FieldValue::Number(min.unwrap_or(0.0)),
                        FieldKind::Choice { options } => {
                            FieldValue::Text(input.pick(options).clone())
                        }
                        FieldKind::Boolean => FieldValue::Bool(true),
                        FieldKind::Timestamp => FieldValue::Int(now),
                    };
                    (f.name.clone(), value)
                })
                .collect();
            EventBody::StepCompleted {
                step: def.id.clone(),
                fields,
            }
        }
        5 => EventBody::Waiting {
            on: input.pick(&["family", "transport_vendor"]).to_string(),
            step: None,
            reason: None,
            follow_up_at: None,
            transfer: None,
        },
        6 => EventBody::Resumed {
            note: None,
            wait: None,
            confirmation: None,
        },
        7 => EventBody::HandoffOffered {
            to: {
                let (user, role) = PEOPLE[input.below(PEOPLE.len())];
                Actor::new(user, role)
            },
            item: None,
            note: None,
        },
        8 => EventBody::HandoffAccepted {
            offer: EventId::new(format!("e{}", input.below(MAX_OPS))),
        },
        9 => EventBody::AcuityChanged {
            acuity: input.pick(&["routine", "expedited"]).to_string(),
        },
        10 => EventBody::ExceptionRaised {
            rule: None,
            alert_role: "charge_nurse".into(),
            reason: input.text(),
            resolution: None,
        },
        11 => EventBody::Cancelled {
            reason: input.text(),
        },
        12 => EventBody::Completed { note: None },
        13 => {
            let (user, role) = PEOPLE[input.below(PEOPLE.len())];
            EventBody::Assigned {
                user: user.into(),
                role: role.into(),
            }
        }
        _ => {
            let (user, role) = PEOPLE[input.below(PEOPLE.len())];
            EventBody::Reassigned {
                user: user.into(),
                role: role.into(),
                reason: None,
            }
        }
    }
}

/// `person` appends `body` to `doc` through the typed API (which checks the rules first).
/// Returns whether a change was written.
fn typed_append(
    doc: &mut Automerge,
    template: &Template,
    person: usize,
    clock: &mut HlcClock,
    now: Millis,
    id: String,
    body: EventBody,
) -> bool {
    let Ok(mut task) = TaskDoc::from_automerge(doc.clone()) else {
        return false;
    };
    let written = task
        .append_with_id(
            template,
            &author(person),
            clock,
            now,
            EventId::new(id),
            body,
        )
        .is_ok();
    if written {
        *doc = task.into_automerge();
    }
    written
}

/// Write to `doc` in one change, given its event list.
fn write(
    doc: &mut Automerge,
    f: impl FnOnce(&mut Transaction<'_>, &automerge::ObjId) -> Result<(), AutomergeError>,
) {
    if let Some(events) = events_list(doc) {
        let _ = doc.transact::<_, _, AutomergeError>(|tx| f(tx, &events));
    }
}

/// A write that validation must refuse, by `person` on `doc` (each kind of forgery the server
/// defends against).
fn forge(
    input: &mut Input<'_>,
    doc: &mut Automerge,
    person: usize,
    clock: &mut HlcClock,
    now: Millis,
    id: String,
) {
    clock.observe(last_hlc(doc));
    let hlc = clock.tick(now);
    let note = EventBody::Note {
        text: "forged".into(),
    };
    let other = (person + 1 + input.below(PEOPLE.len() - 1)) % PEOPLE.len();
    match input.below(10) {
        // In someone else's name.
        0 => raw_append(doc, &event_json(other, &id, hlc, note), 0, false),
        // In one's own name but another's role.
        1 => {
            let mut event = event_json(person, &id, hlc, note);
            event["actor"]["role"] = json!(PEOPLE[other].1);
            raw_append(doc, &event, 0, false);
        }
        // Stamped a day ahead of the clock.
        2 => {
            let ahead = Hlc::new(now + 24 * 60 * MINUTE, 0);
            raw_append(doc, &event_json(person, &id, ahead, note), 0, false);
        }
        // Stamped before what its author saw.
        3 => raw_append(
            doc,
            &event_json(person, &id, Hlc::new(T0, 0), note),
            0,
            false,
        ),
        // An id already used.
        4 => raw_append(doc, &event_json(person, "created", hlc, note), 0, false),
        // An existing event edited.
        5 => write(doc, |tx, events| {
            if let Some((_, first)) = tx.get(events, 0)? {
                tx.put(&first, "device_time", 0)?;
            }
            Ok(())
        }),
        // A fixed field changed.
        6 => write(doc, |tx, _| tx.put(ROOT, "unit", "ICU")),
        // An event removed.
        7 => write(doc, |tx, events| {
            let n = tx.length(events);
            if DELETED_EVENTS_SAFE && n > 0 {
                tx.delete(events, n - 1)?;
            } else {
                tx.insert(events, n, "removed")?;
            }
            Ok(())
        }),
        // Something that is not an event.
        8 => write(doc, |tx, events| {
            let n = tx.length(events);
            tx.insert(events, n, 42)
        }),
        // What the rules do not allow: a nurse completes a step that is not hers.
        _ => {
            let body = EventBody::StepCompleted {
                step: StepId::new("order_placed"),
                fields: BTreeMap::new(),
            };
            raw_append(doc, &event_json(person, &id, hlc, body), 0, false);
        }
    }
}

// --- sync_run ---------------------------------------------------------------------------------

/// What one run did, as the receive path reports it.
#[derive(Debug)]
pub enum RunOutcome {
    /// The run was applied: these changes are new to the document (what the caller persists).
    Accepted(Vec<ChangeHash>),
    /// The run was refused or could not be applied; the document is as it was.
    Refused(String),
}

/// The receive path [`sync_run`] drives: a document, the peers syncing it, and a way to hand it
/// one run of a peer's sync messages, which it must validate as the server does.
///
/// [`ActorPath`] is the server's path (the document actor, with its commits stored);
/// [`DocSyncPath`] is the gate beneath it alone. [`sync_run_on`] drives either.
pub trait ReceivePath {
    /// A path holding `doc`, with no peers yet.
    fn open(doc: Automerge) -> Self;
    /// The document as it stands.
    fn doc(&self) -> &Automerge;
    /// `peer` connects (again): everything known of its earlier connection is forgotten.
    fn connect(&mut self, peer: &PeerId);
    /// `peer`, authenticated as `auth`, sent `run` (sync messages, one per frame, one after the
    /// other). Validate with `templates` at `now` and apply, or refuse the whole run; then
    /// produce whatever replies the path owes its peers.
    fn receive_run(
        &mut self,
        peer: &PeerId,
        auth: &AuthContext,
        run: &[Vec<u8>],
        templates: &TemplateRegistry,
        now: Millis,
    ) -> RunOutcome;
}

/// [`DocSync`] with [`validate_applied`] as its gate, as the server's hub uses it.
#[derive(Debug)]
pub struct DocSyncPath(DocSync);

impl ReceivePath for DocSyncPath {
    fn open(doc: Automerge) -> Self {
        DocSyncPath(DocSync::new(doc))
    }

    fn doc(&self) -> &Automerge {
        self.0.doc()
    }

    fn connect(&mut self, peer: &PeerId) {
        self.0.add_peer(peer.clone());
    }

    fn receive_run(
        &mut self,
        peer: &PeerId,
        auth: &AuthContext,
        run: &[Vec<u8>],
        templates: &TemplateRegistry,
        now: Millis,
    ) -> RunOutcome {
        let outcome = self.0.receive_all(peer, run, |applied: &Applied<'_>| {
            validate_applied(
                applied,
                Known::default(),
                auth,
                templates,
                now,
                &Limits::default(),
            )
            .map(|_| ())
        });
        let _ = self.0.generate_all();
        match outcome {
            Ok(received) => {
                RunOutcome::Accepted(received.changes.iter().map(Change::hash).collect())
            }
            Err(e) => RunOutcome::Refused(e.to_string()),
        }
    }
}

/// The server's document actor ([`DocActor`]) with the storage it commits to, as the hub runs
/// it: a run goes in as one batch, its commit is stored and reported, and an actor that stops
/// (its document poisoned) is loaded again from what was stored.
#[derive(Debug)]
pub struct ActorPath {
    actor: DocActor<FuzzPeer>,
    settings: Arc<Settings>,
    /// What storage holds: the record, the snapshot it was opened with, every change committed.
    stored: Stored,
    /// Connection ids by peer; a reconnecting peer gets a new one.
    conns: HashMap<PeerId, u64>,
    next_conn: u64,
}

/// A peer of [`ActorPath`]: one connection, authenticated as one person on unit 4W.
#[derive(Debug)]
pub struct FuzzPeer {
    conn: u64,
    auth: AuthContext,
}

impl Peer for FuzzPeer {
    fn id(&self) -> u64 {
        self.conn
    }

    fn may_see(&self, unit: &UnitId) -> bool {
        self.auth.units.contains(unit)
    }

    fn auth_on(&self, unit: Option<&UnitId>) -> AuthContext {
        match unit {
            Some(unit) if self.auth.units.contains(unit) => self.auth.clone(),
            _ => AuthContext {
                roles: Vec::new(),
                units: Vec::new(),
                ..self.auth.clone()
            },
        }
    }
}

impl ActorPath {
    fn reload(&mut self) {
        let id = self.actor.id();
        self.actor = DocActor::load(id, self.settings.clone(), Some(self.stored.clone()))
            .expect("what was stored loads again");
    }
}

impl ReceivePath for ActorPath {
    fn open(doc: Automerge) -> Self {
        let settings = Arc::new(Settings {
            templates: crate::template::SharedTemplates::new(base().templates.clone()),
            limits: Limits::default(),
            actor: ActorId::from([0x5e; 16]),
            routing: crate::policy::escalation::Routing::On,
        });
        let stored = Stored {
            record: Record {
                kind: DocKind::Task,
                unit: "4W".into(),
                template: None,
            },
            snapshot: Some(doc.save()),
            changes: Vec::new(),
        };
        let id = DocumentId::from_bytes([0xd0; 16]);
        let actor = DocActor::load(id, settings.clone(), Some(stored.clone()))
            .expect("the base task loads");
        ActorPath {
            actor,
            settings,
            stored,
            conns: HashMap::new(),
            next_conn: 0,
        }
    }

    fn doc(&self) -> &Automerge {
        self.actor.doc()
    }

    fn connect(&mut self, peer: &PeerId) {
        if let Some(old) = self.conns.remove(peer) {
            let effects = self.actor.handle(0, [ActorInput::Leave { peer: old }]);
            assert!(effects.commit.is_none(), "a peer leaving commits nothing");
        }
        self.next_conn += 1;
        self.conns.insert(peer.clone(), self.next_conn);
    }

    fn receive_run(
        &mut self,
        peer: &PeerId,
        auth: &AuthContext,
        run: &[Vec<u8>],
        _templates: &TemplateRegistry,
        now: Millis,
    ) -> RunOutcome {
        let conn = *self
            .conns
            .get(peer)
            .expect("a peer connects before it sends");
        let from = Arc::new(FuzzPeer {
            conn,
            auth: auth.clone(),
        });
        let arrived = std::time::Instant::now();
        let inputs = run.iter().map(|data| ActorInput::Sync {
            from: from.clone(),
            data: data.clone(),
            request: false,
            arrived,
        });
        let mut effects = self.actor.handle(now, inputs.collect::<Vec<_>>());
        let mut accepted = Vec::new();
        let mut sent = std::mem::take(&mut effects.send);
        if let Some(commit) = effects.commit.take() {
            assert!(
                sent.iter().all(|(_, m)| !matches!(m, Outgoing::Sync(_))),
                "sync messages went out before their commit was stored"
            );
            accepted = commit.changes.iter().map(Change::hash).collect();
            self.stored.changes.extend(
                commit
                    .changes
                    .iter()
                    .map(|c| (c.hash().to_string(), c.raw_bytes().to_vec())),
            );
            let after = self.actor.committed(now, Ok(()));
            assert!(after.commit.is_none(), "one run, one commit");
            sent.extend(after.send);
            if after.stop.is_some() {
                self.reload();
            }
        } else if effects.stop.is_some() {
            self.reload();
        }
        let refusal = sent.iter().find_map(|(to, message)| match message {
            Outgoing::Error(e) if to.conn == conn => Some(e.clone()),
            _ => None,
        });
        match refusal {
            Some(why) => RunOutcome::Refused(why),
            None => RunOutcome::Accepted(accepted),
        }
    }
}

/// A phone: one person's replica of the task.
struct Phone {
    person: usize,
    clock: HlcClock,
    doc: Automerge,
    /// How often the replica was thrown away, for fresh Automerge actors.
    resets: u8,
    /// The replica holds a change that is not honest work (a forgery, a nested payload).
    tainted: bool,
    /// The changes written on this replica since it was last reset, in order.
    written: Vec<ChangeHash>,
}

impl Phone {
    fn actor(person: usize, resets: u8) -> ActorId {
        let mut bytes = [0u8; 16];
        bytes[0] = 0xf0;
        bytes[1] = u8::try_from(person).unwrap_or(u8::MAX);
        bytes[2] = resets;
        ActorId::from(bytes)
    }

    fn new(person: usize, doc: &Automerge) -> Phone {
        Phone {
            person,
            clock: HlcClock::new(),
            doc: doc.fork().with_actor(Phone::actor(person, 0)),
            resets: 0,
            tainted: false,
            written: Vec::new(),
        }
    }

    /// Record the changes written on this replica since `heads` (at most one per operation).
    fn wrote_since(&mut self, heads: &[ChangeHash], ledger: &mut Ledger, honest: bool) {
        for change in self.doc.get_changes(heads) {
            if honest && !self.tainted {
                ledger.honest.insert(change.hash(), self.person);
            }
            self.written.push(change.hash());
            ledger.made.insert(change.hash(), change);
        }
    }
}

/// Phone `p`, made with a replica of the base task on first use.
fn phone<'a>(phones: &'a mut [Option<Phone>], p: usize, base: &Automerge) -> &'a mut Phone {
    phones[p].get_or_insert_with(|| Phone::new(p, base))
}

/// The run being put together, and what is known of its changes.
#[derive(Default)]
struct Run {
    messages: Vec<Vec<u8>>,
    /// Every change the run's chunks hold, as far as they can be read.
    carried: Vec<ChangeHash>,
    /// Everything in the run was generated (no raw or mutated bytes).
    generated: bool,
}

/// What `sync_run` knows of every change it made and sent.
#[derive(Default)]
struct Ledger {
    /// Every change any phone wrote, by hash.
    made: HashMap<ChangeHash, Change>,
    /// Honest work: written through the typed API on a replica holding only honest work and
    /// accepted changes. The value is the author.
    honest: HashMap<ChangeHash, usize>,
    /// The base task and every change a run was reported to have added.
    accepted: HashSet<ChangeHash>,
    /// Who sent each change (as far as its bytes could be read).
    sent_by: HashMap<ChangeHash, BTreeSet<usize>>,
    /// Peers whose run was refused on the current connection.
    refused: HashSet<usize>,
    /// Peers that have connected.
    connected: HashSet<usize>,
    next_id: usize,
}

impl Ledger {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("e{}", self.next_id)
    }
}

fn sync_message(heads: Vec<ChangeHash>, chunks: Vec<Vec<u8>>) -> Vec<u8> {
    am_sync::Message {
        heads,
        need: Vec::new(),
        have: Vec::new(),
        changes: ChunkList::from(chunks),
        flags: None,
        version: MessageVersion::V1,
    }
    .encode()
}

/// The hashes of the changes a chunk of a sync message holds, if it can be read: one change, or
/// a whole document.
fn chunk_changes(chunk: &[u8]) -> Vec<ChangeHash> {
    match read_change(chunk) {
        Read::Change(change) => vec![change.hash()],
        Read::Panics => Vec::new(),
        Read::NotAChange => quietly(|| {
            Automerge::load(chunk)
                .ok()
                .map(|doc| doc.get_changes(&[]).iter().map(Change::hash).collect())
        })
        .unwrap_or_default(),
    }
}

/// What bytes meant to be one change turned out to be.
enum Read {
    Change(Box<Change>),
    NotAChange,
    /// Automerge panicked reading them (see [`quietly`]).
    Panics,
}

/// Read one change from `bytes` as the receive path does: a panic inside Automerge is a
/// malformed chunk.
fn read_change(bytes: &[u8]) -> Read {
    match quietly(|| Some(Change::try_from(bytes).ok())) {
        Some(Some(change)) => Read::Change(Box::new(change)),
        Some(None) => Read::NotAChange,
        None => Read::Panics,
    }
}

/// `f`, with a panic inside it taken as `None`.
///
/// Automerge 0.12 panics on some malformed bytes instead of returning an error (`Change::try_from`
/// on an operation counter past `u32::MAX`: an `unwrap` in `OpId::new`, `types.rs:464`); the
/// receive path catches such panics and refuses the message. libFuzzer's panic hook aborts the
/// process on any panic, caught or not, so it is set aside while `f` runs, and the generators
/// leave such bytes out of their runs: the fuzzer could not survive the receive path catching
/// the same panic. (One thread: libFuzzer runs the targets on one; in the corpus test another
/// test's panic message may go unprinted meanwhile, its failure is still reported.)
fn quietly<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .ok()
        .flatten();
    std::panic::set_hook(hook);
    out
}

/// The hashes of the changes a sync message carries, if it decodes.
fn message_changes(message: &[u8]) -> Vec<ChangeHash> {
    quietly(|| am_sync::Message::decode(message).ok())
        .map(|m| m.changes.iter().flat_map(chunk_changes).collect())
        .unwrap_or_default()
}

/// A document's receive path fed arbitrary runs of sync messages, through [`ActorPath`]: the
/// server's document actor, as its hub runs it.
///
/// The input is a program. Five phones (a physician, case manager, nurse, pharmacist and charge
/// nurse on unit 4W) hold replicas of one discharge task; operations make them append events
/// through the typed API (honest work), forge events, nest maps deep inside an event, send some
/// of their changes with others withheld (out of causal order), put raw or mutated bytes into the
/// run, deliver the run as some peer, pull the server's document, reconnect, and let time pass.
///
/// After every run: the changes the path reports added are exactly the document's new history,
/// and each was sent by the peer on whose authority it was accepted; a refused run leaves the
/// document as it was; a run of one peer's honest work, complete with its dependencies, is
/// accepted; with [`ORPHANS_REFUSED`], nothing is left queued. At the end the whole document,
/// validated from empty as the server itself, is accepted, and every event in it is readable.
pub fn sync_run(data: &[u8]) {
    sync_run_on::<ActorPath>(data);
}

/// [`sync_run`] on any [`ReceivePath`].
pub fn sync_run_on<P: ReceivePath>(data: &[u8]) {
    let base = base();
    let template = &base.template;
    let mut input = Input(data);
    let mut path = P::open(base.doc.clone());
    let mut phones: Vec<Option<Phone>> = (0..PEOPLE.len()).map(|_| None).collect();
    let mut ledger = Ledger::default();
    ledger
        .accepted
        .extend(base.doc.get_changes_meta(&[]).iter().map(|m| m.hash));
    let mut run = Run {
        generated: true,
        ..Run::default()
    };
    let mut now = T0 + MINUTE;

    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.below(11) {
            // A person acts through the typed API.
            0 | 1 => {
                let p = input.below(PEOPLE.len());
                now += Millis::from(input.byte() % 16) * MINUTE;
                let body = typed_body(&mut input, template, now);
                let id = ledger.id();
                let phone = phone(&mut phones, p, &base.doc);
                let heads = phone.doc.get_heads();
                if typed_append(&mut phone.doc, template, p, &mut phone.clock, now, id, body) {
                    phone.wrote_since(&heads, &mut ledger, true);
                }
            }
            // A person writes an event with maps nested deep inside it.
            2 => {
                let p = input.below(PEOPLE.len());
                let depth = 1 + usize::from(input.u16()) % MAX_NESTING;
                let in_payload = input.bit();
                let id = ledger.id();
                let phone = phone(&mut phones, p, &base.doc);
                phone.clock.observe(last_hlc(&phone.doc));
                let hlc = phone.clock.tick(now);
                let event = event_json(
                    p,
                    &id,
                    hlc,
                    EventBody::Note {
                        text: "deep".into(),
                    },
                );
                let heads = phone.doc.get_heads();
                raw_append(&mut phone.doc, &event, depth, in_payload);
                phone.tainted = true;
                phone.wrote_since(&heads, &mut ledger, false);
            }
            // A person forges a change.
            3 => {
                let p = input.below(PEOPLE.len());
                let id = ledger.id();
                let phone = phone(&mut phones, p, &base.doc);
                let heads = phone.doc.get_heads();
                forge(&mut input, &mut phone.doc, p, &mut phone.clock, now, id);
                phone.tainted = true;
                phone.wrote_since(&heads, &mut ledger, false);
            }
            // A phone's changes the server lacks go into the run, some withheld, in some order,
            // over one to three messages.
            4 | 5 => {
                let phone = phone(&mut phones, input.below(PEOPLE.len()), &base.doc);
                let withhold = input.byte();
                let reverse = input.bit();
                let split = 1 + input.below(3);
                let mut chosen: Vec<&Change> = phone
                    .written
                    .iter()
                    .filter(|h| path.doc().get_change_by_hash(h).is_none())
                    .enumerate()
                    .filter(|(i, _)| *i >= 8 || withhold & (1 << i) == 0)
                    .filter_map(|(_, h)| ledger.made.get(h))
                    .collect();
                if reverse {
                    chosen.reverse();
                }
                let per_message = chosen.len().div_ceil(split).max(1);
                for chunk in chosen.chunks(per_message) {
                    run.carried.extend(chunk.iter().map(|c| c.hash()));
                    let chunks = chunk.iter().map(|c| c.raw_bytes().to_vec()).collect();
                    run.messages
                        .push(sync_message(phone.doc.get_heads(), chunks));
                }
            }
            // Raw bytes as a message of the run.
            6 => {
                let bytes = input.long_bytes().to_vec();
                if carries_steered_around(&bytes, path.doc()) {
                    continue;
                }
                run.carried.extend(message_changes(&bytes));
                run.messages.push(bytes);
                run.generated = false;
            }
            // A sync message whose one chunk is raw bytes, or a known change with bytes changed.
            7 => {
                let chunk = if input.bit() || ledger.made.is_empty() {
                    input.long_bytes().to_vec()
                } else {
                    let mut hashes: Vec<&ChangeHash> = ledger.made.keys().collect();
                    hashes.sort();
                    let mut bytes = ledger.made[*input.pick(&hashes)].raw_bytes().to_vec();
                    for _ in 0..1 + input.below(4) {
                        let at = usize::from(input.u16()) % bytes.len().max(1);
                        if let Some(b) = bytes.get_mut(at) {
                            *b ^= input.byte().max(1);
                        }
                    }
                    bytes
                };
                if steered_around(&chunk, path.doc()) {
                    continue;
                }
                run.carried.extend(chunk_changes(&chunk));
                run.messages.push(sync_message(Vec::new(), vec![chunk]));
                run.generated = false;
            }
            // The run arrives, as sent by one peer.
            8 => {
                let peer = input.below(PEOPLE.len());
                deliver(&mut path, peer, std::mem::take(&mut run), &mut ledger, now);
                run.generated = true;
            }
            // A phone takes what the server has, or starts again from it.
            9 => {
                let phone = phone(&mut phones, input.below(PEOPLE.len()), &base.doc);
                if input.bit() {
                    let mut server = path.doc().clone();
                    let _ = phone.doc.merge(&mut server);
                } else {
                    phone.resets = phone.resets.wrapping_add(1);
                    phone.doc = path
                        .doc()
                        .fork()
                        .with_actor(Phone::actor(phone.person, phone.resets));
                    phone.tainted = false;
                    phone.written.clear();
                }
            }
            // A peer reconnects, or time passes.
            _ => {
                if input.bit() {
                    let peer = input.below(PEOPLE.len());
                    path.connect(&peer_id(peer));
                    ledger.connected.insert(peer);
                    ledger.refused.remove(&peer);
                } else {
                    now += Millis::from(input.byte()) * 10 * MINUTE;
                }
            }
        }
    }
    if !run.messages.is_empty() {
        let peer = input.below(PEOPLE.len());
        deliver(&mut path, peer, run, &mut ledger, now);
    }

    let doc = path.doc();
    if doc.get_heads() == base.doc.get_heads() {
        return;
    }
    for change in doc.get_changes_meta(&[]) {
        assert!(
            ledger.accepted.contains(&change.hash),
            "the document holds change {} that no run was reported to add",
            change.hash
        );
    }
    if let Err(e) = validate_changes(
        &Automerge::new(),
        doc,
        &system_auth(),
        &base.templates,
        now,
        &Limits::default(),
    ) {
        panic!("the document, validated from empty as the server, is refused: {e}");
    }
    let saved = Automerge::load(&doc.save()).expect("the document, saved, loads");
    let (mut ours, mut theirs) = (doc.get_heads(), saved.get_heads());
    ours.sort();
    theirs.sort();
    assert_eq!(
        ours, theirs,
        "the document, saved and loaded, has other heads"
    );
    if ORPHANS_REFUSED {
        let missing = saved.get_missing_deps(&[]);
        assert!(
            missing.is_empty(),
            "the saved document holds changes waiting for {missing:?}, unvalidated"
        );
    }
    let task = TaskDoc::from_automerge(doc.clone()).expect("the document is still a task");
    let log = task.events().expect("its events read");
    assert!(
        log.unreadable.is_empty(),
        "the document holds unreadable events: {:?}",
        log.unreadable
    );
    task.state(template).expect("the task folds");
}

fn peer_id(person: usize) -> PeerId {
    format!("phone-{person}")
}

/// Complete `run` with every dependency it withholds that some phone wrote, at its end (so the
/// run still arrives out of causal order).
fn complete(run: &mut Run, doc: &Automerge, ledger: &Ledger) {
    let mut present: HashSet<ChangeHash> = run.carried.iter().copied().collect();
    let mut missing: Vec<ChangeHash> = Vec::new();
    let mut stack: Vec<ChangeHash> = run
        .carried
        .iter()
        .filter_map(|h| ledger.made.get(h))
        .flat_map(|c| c.deps().iter().copied())
        .collect();
    while let Some(hash) = stack.pop() {
        if present.contains(&hash) || doc.get_change_by_hash(&hash).is_some() {
            continue;
        }
        if let Some(change) = ledger.made.get(&hash) {
            present.insert(hash);
            missing.push(hash);
            stack.extend_from_slice(change.deps());
        }
    }
    if missing.is_empty() {
        return;
    }
    let chunks = missing
        .iter()
        .map(|h| ledger.made[h].raw_bytes().to_vec())
        .collect();
    run.carried.extend(&missing);
    run.messages.push(sync_message(Vec::new(), chunks));
}

/// Deliver `run` to `path` as sent by `peer`, and check what it did.
fn deliver<P: ReceivePath>(
    path: &mut P,
    peer: usize,
    mut run: Run,
    ledger: &mut Ledger,
    now: Millis,
) {
    if run.messages.is_empty() {
        return;
    }
    if ledger.connected.insert(peer) {
        path.connect(&peer_id(peer));
    }
    if !ORPHANS_REFUSED {
        complete(&mut run, path.doc(), ledger);
    }
    let before = path.doc().get_heads();
    for hash in &run.carried {
        ledger.sent_by.entry(*hash).or_default().insert(peer);
    }
    // One peer's honest work, complete with its dependencies, sent on a connection that has
    // refused nothing: it must be accepted.
    let honest = run.generated
        && !ledger.refused.contains(&peer)
        && run
            .carried
            .iter()
            .all(|h| ledger.accepted.contains(h) || ledger.honest.get(h) == Some(&peer))
        && run.carried.iter().all(|h| {
            ledger.made.get(h).is_none_or(|c| {
                c.deps()
                    .iter()
                    .all(|d| run.carried.contains(d) || path.doc().get_change_by_hash(d).is_some())
            })
        });

    let outcome = path.receive_run(
        &peer_id(peer),
        &auth(peer),
        &run.messages,
        &base().templates,
        now,
    );

    let doc = path.doc();
    let added: BTreeSet<ChangeHash> = doc
        .get_changes_meta(&before)
        .iter()
        .map(|m| m.hash)
        .collect();
    match outcome {
        RunOutcome::Accepted(reported) => {
            let reported: BTreeSet<ChangeHash> = reported.into_iter().collect();
            assert_eq!(
                reported, added,
                "the changes reported added are not the document's new history"
            );
            for hash in &added {
                assert!(
                    ledger.sent_by.get(hash).is_some_and(|s| s.contains(&peer)),
                    "change {hash} was accepted on the authority of {}, who never sent it",
                    peer_id(peer)
                );
            }
            ledger.accepted.extend(added);
        }
        RunOutcome::Refused(why) => {
            assert!(
                added.is_empty() && doc.get_heads() == before,
                "a refused run changed the document ({why})"
            );
            assert!(
                !honest,
                "{}'s honest work, complete with its dependencies, was refused: {why}",
                peer_id(peer)
            );
            ledger.refused.insert(peer);
        }
    }
    if honest {
        for hash in &run.carried {
            assert!(
                doc.get_change_by_hash(hash).is_some(),
                "{}'s honest change {hash} was accepted but is not in the document",
                peer_id(peer)
            );
        }
    }
    for head in doc.get_heads() {
        assert!(
            ledger.accepted.contains(&head),
            "the document's heads hold change {head}, which no run was reported to add"
        );
    }
    if ORPHANS_REFUSED {
        let missing = doc.get_missing_deps(&[]);
        assert!(
            missing.is_empty(),
            "changes wait in the document for missing dependencies {missing:?}, unvalidated"
        );
    }
}

// --- validate ---------------------------------------------------------------------------------

/// Event validation on a task changed by the input: raw change bytes applied as they are, raw
/// JSON appends, structured appends of any shape, typed appends, edits, and offline work merged
/// in; then [`validate_changes`] as one person or the server.
///
/// Validation never panics; it gives the same verdict when the task's fixed fields and events
/// are known in advance (as the server's document actors know them); and when it accepts, every
/// event in the task reads.
pub fn validate(data: &[u8]) {
    let base = base();
    let template = &base.template;
    let mut input = Input(data);
    let who = input.below(PEOPLE.len() + 1);
    let auth = if who == PEOPLE.len() {
        system_auth()
    } else {
        auth(who)
    };
    let now = T0 + Millis::from(input.u16()) * MINUTE;
    let mut before = base.doc.clone();
    let mut after = before.fork().with_actor(ActorId::from([0xaa; 16]));
    let mut clocks = vec![HlcClock::new(); PEOPLE.len()];
    let mut next_id = 0usize;
    let mut id = || {
        next_id += 1;
        format!("v{next_id}")
    };

    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.below(8) {
            // Change bytes, applied as they are.
            0 => {
                let bytes = input.long_bytes();
                if steered_around_when(bytes, &after, false, false) {
                    continue;
                }
                if let Read::Change(change) = read_change(bytes) {
                    let _ = after.apply_changes([*change]);
                }
            }
            // A JSON object appended as an event.
            1 => {
                if let Ok(Value::Object(event)) = serde_json::from_slice(input.long_bytes()) {
                    raw_append(&mut after, &event, 0, false);
                }
            }
            // An event of any shape: fields from small vocabularies, nesting up to MAX_NESTING.
            2 => {
                let event = structured_event(&mut input, &id());
                let depth = usize::from(input.u16()) % (MAX_NESTING + 1);
                let in_payload = input.bit();
                raw_append(&mut after, &event, depth, in_payload);
            }
            // A person acts through the typed API.
            3 => {
                let p = input.below(PEOPLE.len());
                let at = now - Millis::from(input.byte()) * MINUTE;
                let body = typed_body(&mut input, template, at);
                typed_append(&mut after, template, p, &mut clocks[p], at, id(), body);
            }
            // Offline work: a person acts on the task as it stood earlier; merged in.
            4 => {
                let p = input.below(PEOPLE.len());
                let at = now - Millis::from(input.byte()) * MINUTE;
                let body = typed_body(&mut input, template, at);
                let mut offline = before
                    .fork()
                    .with_actor(ActorId::from([0xab, input.byte()]));
                if typed_append(&mut offline, template, p, &mut clocks[p], at, id(), body) {
                    let _ = after.merge(&mut offline);
                }
            }
            // A forgery.
            5 => {
                let p = input.below(PEOPLE.len());
                forge(&mut input, &mut after, p, &mut clocks[p], now, id());
            }
            // What is there so far becomes the task as the server holds it.
            6 => before = after.clone(),
            // A raw put, insert or delete anywhere in the task.
            _ => raw_edit(&mut input, &mut after),
        }
    }

    let verdict = validate_changes(
        &before,
        &after,
        &auth,
        &base.templates,
        now,
        &Limits::default(),
    );
    let Ok(task) = TaskDoc::from_automerge(before.clone()) else {
        return;
    };
    let Ok(log) = task.events() else {
        return;
    };
    let heads = before.get_heads();
    let changes = after.get_changes(&heads);
    let applied = Applied {
        before: &heads,
        after: &after,
        changes: &changes,
    };
    let known = Known {
        meta: Some(task.meta()),
        events: Some(&log.events),
    };
    assert_eq!(
        validate_applied(
            &applied,
            known,
            &auth,
            &base.templates,
            now,
            &Limits::default()
        ),
        verdict,
        "another verdict when the task's fields and events are known in advance"
    );
    if verdict.is_ok() && log.unreadable.is_empty() {
        let task = TaskDoc::from_automerge(after.clone()).expect("an accepted change keeps a task");
        let after_log = task.events().expect("events read");
        assert!(
            after_log.unreadable.is_empty(),
            "validation accepted unreadable events: {:?}",
            after_log.unreadable
        );
        task.state(template).expect("the task folds");
    }
}

/// An event-shaped JSON object whose every field the input chooses from small vocabularies.
fn structured_event(input: &mut Input<'_>, id: &str) -> Map<String, Value> {
    const WORDS: [&str; 16] = [
        "created",
        "v1",
        "order_placed",
        "transport",
        "family",
        "nurse",
        "physician",
        "charge_nurse",
        "dr.adams",
        "rn.evans",
        "rn.evans-phone",
        "routine",
        "expedited",
        "time",
        "",
        "x",
    ];
    const KEYS: [&str; 16] = [
        "text",
        "step",
        "user",
        "role",
        "on",
        "offer",
        "acuity",
        "reason",
        "fields",
        "level",
        "to",
        "exception",
        "note",
        "follow_up_at",
        "item",
        "alert_role",
    ];
    fn value(input: &mut Input<'_>) -> Value {
        match input.below(7) {
            0 => json!(input.pick(&WORDS)),
            1 => json!(i64::from(input.u16()) - 100),
            2 => json!(input.bit()),
            3 => json!(f64::from(input.u16()) / 7.0),
            4 => Value::Null,
            5 => json!({ "user": input.pick(&WORDS), "role": input.pick(&WORDS) }),
            _ => json!(input.text()),
        }
    }
    let (user, role) = PEOPLE[input.below(PEOPLE.len())];
    let kind = match input.below(EventKind::ALL.len() + 1) {
        i if i < EventKind::ALL.len() => EventKind::ALL[i].as_str().to_owned(),
        _ => input.text(),
    };
    let hlc = if input.below(8) == 0 {
        input.text()
    } else {
        Hlc::new(
            T0 + Millis::from(input.u16()) * MINUTE,
            u32::from(input.byte()),
        )
        .to_string()
    };
    let mut payload = Map::new();
    for _ in 0..input.below(4) {
        payload.insert(input.pick(&KEYS).to_string(), value(input));
    }
    let mut event = Map::new();
    let id = if input.below(4) == 0 {
        input.pick(&WORDS).to_string()
    } else {
        id.to_owned()
    };
    event.insert("id".into(), json!(id));
    event.insert("kind".into(), json!(kind));
    event.insert("actor".into(), json!({ "user": user, "role": role }));
    event.insert("device".into(), json!(format!("{user}-phone")));
    event.insert("device_time".into(), json!(T0));
    event.insert("hlc".into(), json!(hlc));
    event.insert("payload".into(), Value::Object(payload));
    // Now and then a field goes missing or an unknown one appears.
    match input.below(8) {
        0 => {
            let key = *input.pick(&[
                "id",
                "kind",
                "actor",
                "device",
                "device_time",
                "hlc",
                "payload",
            ]);
            event.remove(key);
        }
        1 => {
            event.insert(input.pick(&KEYS).to_string(), value(input));
        }
        _ => {}
    }
    event
}

/// A raw write somewhere in the task: a root field, inside an event, or on the event list.
fn raw_edit(input: &mut Input<'_>, doc: &mut Automerge) {
    let Some(events) = events_list(doc) else {
        return;
    };
    let n = doc.length(&events);
    let at = input.below(n.max(1));
    let what = input.below(5);
    let _ = doc.transact::<_, _, AutomergeError>(|tx| {
        match what {
            0 => tx.put(
                ROOT,
                *input.pick(&["unit", "acuity", "schema", "extra"]),
                "x",
            )?,
            1 => {
                if let Some((_, event)) = tx.get(&events, at)? {
                    tx.put(&event, *input.pick(&["id", "hlc", "kind", "new"]), "x")?;
                }
            }
            2 if DELETED_EVENTS_SAFE && n > 0 => tx.delete(&events, at)?,
            3 => {
                let obj = tx.insert_object(&events, at, ObjType::List)?;
                tx.insert(&obj, 0, 1)?;
            }
            _ => tx.insert(&events, at, "not an event")?,
        }
        Ok(())
    });
}
