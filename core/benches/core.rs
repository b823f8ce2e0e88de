//! Benchmarks of the core's hot paths: the fold, reading a task out of Automerge, appending and
//! saving, merging and syncing diverged replicas, and the server's per-change validation.
//!
//! Run with `cargo bench -p baton-core --bench core`. Results are described in
//! `docs/benchmarks.md`.

use automerge::sync::{self, SyncDoc};
use automerge::{ActorId, Automerge, ChangeHash};
use baton_core::doc::{NewTask, Subject};
use baton_core::event::{Actor, EventBody, EventKind, FieldValue, Transfer};
use baton_core::fold::TaskState;
use baton_core::policy::coverage::{Rotation, Schedule};
use baton_core::policy::escalation;
use baton_core::time::Span;
use baton_core::validate::{AuthContext, Limits, validate_changes, validate_changes_with};
use baton_core::{Author, Event, HlcClock, Millis, TaskDoc, Template, TemplateRegistry};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::collections::{BTreeMap, VecDeque};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

/// 2026-01-05 07:00 UTC, a Monday.
const T0: Millis = 1_767_596_400_000;
const MINUTE: Millis = 60_000;
/// How far the ward's clock moves between two actions while a history is built.
const STEP: Millis = 25_000;
const UNIT: &str = "4W";

/// One person with a phone.
#[derive(Clone, Debug)]
struct Person {
    author: Author,
    clock: HlcClock,
}

impl Person {
    fn new(user: &str, role: &str) -> Self {
        Person {
            author: Author::new(user, role, format!("{user}-phone")),
            clock: HlcClock::new(),
        }
    }

    fn actor(&self) -> Actor {
        Actor::new(self.author.user.as_str(), self.author.role.as_str())
    }
}

/// What someone does at a point in a scripted history.
#[derive(Clone, Debug)]
enum Action {
    Do(&'static str, EventBody),
    /// The owner offers the task to `to`; the offer's id is remembered for the answer.
    Offer(&'static str, &'static str),
    Decline(&'static str),
    Accept(&'static str),
    /// The charge nurse resolves the oldest open exception (a note when there is none).
    ResolveException,
}

/// A discharge task on unit 4W, its document, and the people (and server) writing to it.
#[derive(Debug)]
struct History {
    template: Arc<Template>,
    schedule: Schedule,
    people: BTreeMap<&'static str, Person>,
    system: Author,
    system_clock: HlcClock,
    doc: TaskDoc,
    events: Vec<Event>,
    now: Millis,
    last_offer: Option<baton_core::ids::EventId>,
    notes: usize,
}

const NOTE_AUTHORS: [&str; 7] = [
    "rn.evans",
    "cm.brown",
    "ph.chen",
    "tr.diaz",
    "dr.adams",
    "rn.charge",
    "cm.green",
];

const NOTE_TEXTS: [&str; 8] = [
    "Patient ambulating in hallway with walker, steady gait.",
    "Called daughter, no answer; left voicemail with callback number.",
    "Home oxygen vendor confirmed delivery window 13:00-15:00.",
    "Pain 3/10 after oral analgesia; tolerating diet.",
    "Discussed follow-up appointment with cardiology clinic next week.",
    "Insurance authorization for home health pending, reference 48213.",
    "Patient asks whether the wheelchair van can take the rear entrance.",
    "Reviewed discharge medication list with patient; questions answered.",
];

fn text(s: &str) -> FieldValue {
    FieldValue::Text(s.into())
}

fn fields(pairs: &[(&str, FieldValue)]) -> BTreeMap<String, FieldValue> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn template() -> Arc<Template> {
    TemplateRegistry::shipped()
        .latest(&"discharge".into())
        .expect("the discharge template is shipped")
        .clone()
}

fn schedule() -> Schedule {
    let rotation = |role: &str, primary: &[&str], secondary: &[&str]| Rotation {
        unit: UNIT.into(),
        role: role.into(),
        anchor: jiff::civil::date(2026, 1, 5).at(7, 0, 0, 0),
        shift: Span::from_hours(12),
        primary: primary.iter().map(|&u| u.into()).collect(),
        secondary: secondary.iter().map(|&u| u.into()).collect(),
    };
    Schedule::new(
        jiff::tz::TimeZone::UTC,
        vec![
            rotation("charge_nurse", &["rn.charge", "rn.night"], &[]),
            rotation(
                "case_manager",
                &["cm.brown", "cm.white"],
                &["cm.green", "cm.black"],
            ),
            rotation("physician", &["dr.adams", "dr.baker"], &[]),
        ],
        Vec::new(),
    )
    .expect("a valid schedule")
}

/// The script of a discharge, by the number of events the task holds when each action is due.
/// Everything else is notes, and escalations and off-track exceptions the server fires as
/// deadlines pass.
fn script() -> VecDeque<(usize, Action)> {
    use Action::{Accept, Decline, Do, Offer, ResolveException};
    let step = |s: &str| s.into();
    VecDeque::from([
        // Nobody takes the task within the 30 minute acknowledgment window: the server gives
        // it to the secondary owner, escalates and raises `stalled_to_level_two` before that
        // case manager acknowledges it.
        (160, Do("cm.green", EventBody::Acknowledged {})),
        (165, ResolveException),
        (
            170,
            Do(
                "dr.adams",
                EventBody::StepStarted {
                    step: step("order_placed"),
                },
            ),
        ),
        (
            180,
            Do(
                "dr.adams",
                EventBody::StepCompleted {
                    step: step("order_placed"),
                    fields: fields(&[
                        ("order_time", FieldValue::Int(T0 + 70 * MINUTE)),
                        ("disposition", text("home_with_services")),
                    ]),
                },
            ),
        ),
        (
            210,
            Do(
                "ph.chen",
                EventBody::StepStarted {
                    step: step("medication_reconciliation"),
                },
            ),
        ),
        (
            240,
            Do(
                "rn.evans",
                EventBody::ExceptionRaised {
                    rule: None,
                    alert_role: "charge_nurse".into(),
                    reason: "Home oxygen not arranged; patient cannot leave without it.".into(),
                    resolution: None,
                },
            ),
        ),
        (
            260,
            Do(
                "tr.diaz",
                EventBody::Waiting {
                    on: "transport_vendor".into(),
                    reason: Some("no wheelchair van until 14:00".into()),
                    follow_up_at: None,
                    step: None,
                    transfer: Some(Transfer {
                        to: "Metro Wheelchair Van".into(),
                        contact: Some("dispatch 555-0142".into()),
                        documentation: vec!["transport order".into()],
                    }),
                },
            ),
        ),
        (
            300,
            Do(
                "tr.diaz",
                EventBody::Resumed {
                    note: Some("vendor called back".into()),
                    wait: None,
                    confirmation: Some("pickup time confirmed by phone with dispatch".into()),
                },
            ),
        ),
        (310, ResolveException),
        (
            330,
            Do(
                "rn.charge",
                EventBody::Reassigned {
                    user: "cm.brown".into(),
                    role: "case_manager".into(),
                    reason: Some("cm.green in clinic this afternoon".into()),
                },
            ),
        ),
        (335, Do("cm.brown", EventBody::Acknowledged {})),
        (
            380,
            Do(
                "ph.chen",
                EventBody::StepCompleted {
                    step: step("medication_reconciliation"),
                    fields: fields(&[
                        ("discrepancies", FieldValue::Int(1)),
                        ("notes", text("held lisinopril; potassium 5.4")),
                    ]),
                },
            ),
        ),
        (400, Offer("cm.brown", "cm.green")),
        (410, Decline("cm.green")),
        (430, Offer("cm.brown", "cm.green")),
        (440, Accept("cm.green")),
        (
            460,
            Do(
                "tr.diaz",
                EventBody::StepStarted {
                    step: step("transport"),
                },
            ),
        ),
        // This wait outlasts its one hour follow-up: the server escalates before it resumes.
        (
            480,
            Do(
                "tr.diaz",
                EventBody::Waiting {
                    on: "transport_vendor".into(),
                    reason: Some("vendor short of drivers".into()),
                    follow_up_at: None,
                    step: None,
                    transfer: Some(Transfer {
                        to: "Metro Wheelchair Van".into(),
                        contact: Some("dispatch 555-0142".into()),
                        documentation: vec!["transport order".into()],
                    }),
                },
            ),
        ),
        (
            650,
            Do(
                "tr.diaz",
                EventBody::Resumed {
                    note: Some("vendor confirmed 15:30 pickup".into()),
                    wait: None,
                    confirmation: Some("15:30 pickup confirmed by phone with dispatch".into()),
                },
            ),
        ),
        (
            680,
            Do(
                "tr.diaz",
                EventBody::StepCompleted {
                    step: step("transport"),
                    fields: fields(&[
                        ("mode", text("wheelchair")),
                        ("pickup_at", FieldValue::Int(T0 + 8 * 60 * MINUTE)),
                    ]),
                },
            ),
        ),
        (
            700,
            Do(
                "rn.evans",
                EventBody::Waiting {
                    on: "family".into(),
                    reason: Some("daughter driving in from out of town".into()),
                    follow_up_at: None,
                    step: None,
                    transfer: None,
                },
            ),
        ),
        (
            740,
            Do(
                "rn.evans",
                EventBody::Resumed {
                    note: Some("daughter arrived".into()),
                    wait: None,
                    confirmation: None,
                },
            ),
        ),
        // Expediting halves the windows: the family step is now overdue and escalates.
        (
            750,
            Do(
                "dr.adams",
                EventBody::AcuityChanged {
                    acuity: "expedited".into(),
                },
            ),
        ),
        (
            800,
            Do(
                "rn.evans",
                EventBody::StepCompleted {
                    step: step("family_notified"),
                    fields: fields(&[
                        ("contact", text("daughter, in person")),
                        ("teach_back_done", FieldValue::Bool(true)),
                    ]),
                },
            ),
        ),
        (820, ResolveException),
        (
            830,
            Do(
                "dr.adams",
                EventBody::AcuityChanged {
                    acuity: "routine".into(),
                },
            ),
        ),
        (840, ResolveException),
        (
            860,
            Do(
                "rn.evans",
                EventBody::StepStarted {
                    step: step("discharge_confirmed"),
                },
            ),
        ),
        (
            960,
            Do(
                "rn.evans",
                EventBody::StepCompleted {
                    step: step("discharge_confirmed"),
                    fields: fields(&[("left_unit_at", FieldValue::Int(T0 + 7 * 60 * MINUTE))]),
                },
            ),
        ),
        // Documentation goes on after the patient has left: notes and open exceptions.
        (970, ResolveException),
        (980, ResolveException),
        (990, ResolveException),
    ])
}

impl History {
    /// A discharge task opened by the physician at `T0`, with no other events yet.
    fn open() -> History {
        let template = template();
        let mut people: BTreeMap<&'static str, Person> = [
            ("dr.adams", "physician"),
            ("cm.brown", "case_manager"),
            ("cm.green", "case_manager"),
            ("ph.chen", "pharmacist"),
            ("tr.diaz", "transport"),
            ("rn.evans", "nurse"),
            ("rn.charge", "charge_nurse"),
        ]
        .into_iter()
        .map(|(user, role)| (user, Person::new(user, role)))
        .collect();
        let physician = people.get_mut("dr.adams").expect("the physician");
        let (doc, created) = TaskDoc::create(
            &template,
            NewTask {
                unit: UNIT.into(),
                subject: Subject {
                    reference: "enc-1001".into(),
                    label: "Bed 12 · J.D.".into(),
                },
                acuity: None,
                note: Some("Medically ready; discharge home with services today.".into()),
            },
            &physician.author,
            &mut physician.clock,
            T0,
            ActorId::random(),
        )
        .expect("create the task");
        History {
            template,
            schedule: schedule(),
            people,
            system: Author::system("node-1"),
            system_clock: HlcClock::new(),
            doc,
            events: vec![created],
            now: T0,
            last_offer: None,
            notes: 0,
        }
    }

    /// Build a history of exactly `total` events from the script.
    fn build(total: usize) -> History {
        let mut h = History::open();
        let mut script = script();
        while h.events.len() < total {
            h.now += STEP;
            h.fire_due(total);
            if h.events.len() >= total {
                break;
            }
            let action = match script.front() {
                Some((at, _)) if h.events.len() >= *at => script.pop_front().map(|(_, a)| a),
                _ => None,
            };
            match action {
                Some(action) => h.perform(action),
                None => h.note(),
            }
        }
        h
    }

    fn state(&self) -> TaskState {
        baton_core::fold(&self.template, self.doc.meta(), &self.events)
    }

    fn act(&mut self, who: &str, body: EventBody) -> Event {
        let kind = body.kind();
        let person = self.people.get_mut(who).expect("a known person");
        let event = self
            .doc
            .append(
                &self.template,
                &person.author,
                &mut person.clock,
                self.now,
                body,
            )
            .unwrap_or_else(|e| {
                panic!(
                    "{who} could not append {kind} as event #{}: {e}",
                    self.events.len()
                )
            });
        self.events.push(event.clone());
        event
    }

    fn note(&mut self) {
        let who = NOTE_AUTHORS[self.notes % NOTE_AUTHORS.len()];
        let text = NOTE_TEXTS[(self.notes / 3) % NOTE_TEXTS.len()].to_owned();
        self.notes += 1;
        self.act(who, EventBody::Note { text });
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Do(who, body) => {
                self.act(who, body);
            }
            Action::Offer(from, to) => {
                let to = self.people[to].actor();
                let offer = self.act(
                    from,
                    EventBody::HandoffOffered {
                        to,
                        item: None,
                        note: Some("back from clinic, can you take it?".into()),
                    },
                );
                self.last_offer = Some(offer.id);
            }
            Action::Decline(who) => {
                let offer = self.last_offer.clone().expect("an offer to decline");
                self.act(
                    who,
                    EventBody::HandoffDeclined {
                        offer,
                        reason: Some("in a family meeting until 13:00".into()),
                    },
                );
            }
            Action::Accept(who) => {
                let offer = self.last_offer.clone().expect("an offer to accept");
                self.act(who, EventBody::HandoffAccepted { offer });
            }
            Action::ResolveException => {
                let open = self
                    .state()
                    .open_exceptions()
                    .next()
                    .map(|e| e.event.clone());
                match open {
                    Some(exception) => {
                        self.act(
                            "rn.charge",
                            EventBody::ExceptionResolved {
                                exception,
                                note: Some("discussed at huddle; plan in place".into()),
                            },
                        );
                    }
                    None => self.note(),
                }
            }
        }
    }

    /// Append what the server's escalation timer would write now (escalations and off-track
    /// exceptions), as the system, with the deterministic ids the policy gives. Routing is off:
    /// the script has people claim and hand the task over themselves.
    fn fire_due(&mut self, total: usize) {
        while self.events.len() < total {
            let Some((id, body)) = escalation::fire_with(
                &self.template,
                &self.state(),
                &self.schedule,
                self.now,
                escalation::Routing::Off,
            ) else {
                break;
            };
            let kind = body.kind();
            let event = self
                .doc
                .append_with_id(
                    &self.template,
                    &self.system,
                    &mut self.system_clock,
                    self.now,
                    id,
                    body,
                )
                .unwrap_or_else(|e| {
                    panic!(
                        "the server could not append {kind} as event #{}: {e}",
                        self.events.len()
                    )
                });
            self.events.push(event);
        }
    }
}

/// The kinds of events in a history, for the record.
fn describe(events: &[Event]) -> String {
    let mut counts: BTreeMap<EventKind, usize> = BTreeMap::new();
    for e in events {
        *counts.entry(e.kind()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bench_fold(c: &mut Criterion, h: &History, small: &History) {
    let events = h.doc.events().expect("read the events").events;
    assert_eq!(events.len(), 1_000);
    let state = baton_core::fold(&h.template, h.doc.meta(), &events);
    assert!(
        state.conflicts.is_empty(),
        "the history folds without conflicts"
    );
    eprintln!(
        "history of {} events ({:?}, {} escalations, {} exceptions): {}",
        events.len(),
        state.status,
        state.escalations.len(),
        state.exceptions.len(),
        describe(&events)
    );

    let mut g = c.benchmark_group("fold");
    g.bench_function("1000_events", |b| {
        b.iter(|| baton_core::fold(black_box(&h.template), h.doc.meta(), black_box(&events)));
    });
    g.finish();

    let mut g = c.benchmark_group("read_and_fold");
    g.bench_function("1000_events", |b| {
        b.iter(|| black_box(&h.doc).state(&h.template).expect("state"));
    });
    g.bench_function("100_events", |b| {
        b.iter(|| black_box(&small.doc).state(&small.template).expect("state"));
    });
    g.finish();

    // The parts of reading: Automerge's hydrate alone, then hydrate and decode into events.
    let mut g = c.benchmark_group("read");
    g.bench_function("hydrate_1000_events", |b| {
        b.iter(|| black_box(h.doc.automerge()).hydrate(None));
    });
    g.bench_function("events_1000_events", |b| {
        b.iter(|| black_box(&h.doc).events().expect("events"));
    });
    g.finish();
}

fn bench_append(c: &mut Criterion, base: &History) {
    let template = &base.template;
    let nurse = base.people["rn.evans"].clone();
    let now = base.now + MINUTE;
    let heads: Vec<ChangeHash> = base.doc.heads();
    let note = || EventBody::Note {
        text: "Patient ambulating in hallway with walker, steady gait.".into(),
    };

    let mut g = c.benchmark_group("append");
    g.bench_function("one_event_and_save", |b| {
        b.iter_batched(
            || (base.doc.clone(), nurse.clone()),
            |(mut doc, mut p)| {
                doc.append(template, &p.author, &mut p.clock, now, note())
                    .expect("append a note");
                doc.save()
            },
            BatchSize::SmallInput,
        );
    });
    g.bench_function("one_event_incremental_save", |b| {
        b.iter_batched(
            || (base.doc.clone(), nurse.clone()),
            |(mut doc, mut p)| {
                doc.append(template, &p.author, &mut p.clock, now, note())
                    .expect("append a note");
                doc.automerge().save_after(&heads)
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// Two replicas of `base`, each with 100 notes the other has not seen.
fn diverged(base: &History) -> (TaskDoc, TaskDoc) {
    let bytes = base.doc.save();
    let template = &base.template;
    let branch = |who: &str| {
        let mut doc = TaskDoc::load(&bytes).expect("load the saved task");
        doc.set_actor(ActorId::random());
        let mut p = base.people[who].clone();
        for i in 0..100_i64 {
            let text = format!("{}: {}", i, NOTE_TEXTS[i as usize % NOTE_TEXTS.len()]);
            doc.append(
                template,
                &p.author,
                &mut p.clock,
                base.now + (i + 1) * 30_000,
                EventBody::Note { text },
            )
            .expect("append a note");
        }
        doc
    };
    (branch("rn.evans"), branch("cm.brown"))
}

/// Exchange sync messages (encoded and decoded, as on the wire) until neither side has more.
fn sync_until_quiet(a: &mut Automerge, b: &mut Automerge) -> usize {
    let mut sa = sync::State::new();
    let mut sb = sync::State::new();
    let mut messages = 0;
    loop {
        let mut quiet = true;
        if let Some(m) = a.generate_sync_message(&mut sa) {
            quiet = false;
            messages += 1;
            let m = sync::Message::decode(&m.encode()).expect("decode");
            b.receive_sync_message(&mut sb, m).expect("receive");
        }
        if let Some(m) = b.generate_sync_message(&mut sb) {
            quiet = false;
            messages += 1;
            let m = sync::Message::decode(&m.encode()).expect("decode");
            a.receive_sync_message(&mut sa, m).expect("receive");
        }
        if quiet {
            return messages;
        }
    }
}

fn bench_merge(c: &mut Criterion, base: &History) {
    let (a, b) = diverged(base);

    // Check once, outside the timings, that both ways end with every event.
    let mut merged = a.clone();
    merged.merge(&mut b.clone()).expect("merge");
    let events = merged.events().expect("read").events;
    assert_eq!(events.len(), 300);
    let (mut sa, mut sb) = (a.automerge().clone(), b.automerge().clone());
    let messages = sync_until_quiet(&mut sa, &mut sb);
    assert_eq!(sa.get_heads(), sb.get_heads());
    assert_eq!(sa.get_heads(), merged.heads());
    eprintln!("sync of 100 + 100 diverged changes: {messages} messages until quiet");

    let mut g = c.benchmark_group("merge");
    g.bench_function("diverged_100_each", |bench| {
        bench.iter_batched(
            || (a.clone(), b.clone()),
            |(mut a, mut b)| {
                a.merge(&mut b).expect("merge");
                (a, b)
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();

    let mut g = c.benchmark_group("sync");
    g.bench_function("diverged_100_each", |bench| {
        bench.iter_batched(
            || (a.automerge().clone(), b.automerge().clone()),
            |(mut a, mut b)| {
                sync_until_quiet(&mut a, &mut b);
                (a, b)
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// `validate/append_one_to_{n}` (and `_known`, given `before`'s decoded events); with `ten`, the
/// same for a batch of ten changes.
fn bench_validate(c: &mut Criterion, h: &History, ten: bool) {
    let n = h.events.len();
    let registry = TemplateRegistry::shipped();
    let before = h.doc.automerge();
    let nurse = &h.people["rn.evans"];
    let now = h.now + 10 * MINUTE;
    // `before` and `n` notes by the nurse, one change each.
    let with_notes = |n: i64| {
        let mut after = h.doc.clone();
        let mut p = nurse.clone();
        for i in 0..n {
            after
                .append(
                    &h.template,
                    &p.author,
                    &mut p.clock,
                    h.now + (i + 1) * 30_000,
                    EventBody::Note {
                        text: format!("Follow-up call {i} booked for tomorrow 10:00."),
                    },
                )
                .expect("append a note");
        }
        after.into_automerge()
    };
    let one = with_notes(1);
    let batch = with_notes(10);
    let auth = AuthContext {
        user: nurse.author.user.clone(),
        device: nurse.author.device.clone(),
        roles: vec!["nurse".into()],
        units: vec![UNIT.into()],
        system: false,
    };
    let limits = Limits::default();
    // What a server that keeps the task's decoded events in memory holds.
    let known = h.doc.events().expect("read").events;
    for (after, count) in [(&one, 1), (&batch, 10)] {
        let accepted = validate_changes(before, after, &auth, &registry, now, &limits)
            .expect("the changes are valid");
        assert_eq!(accepted.len(), count);
        let with_known =
            validate_changes_with(before, after, Some(&known), &auth, &registry, now, &limits)
                .expect("the changes are valid");
        assert_eq!(with_known, accepted);
    }

    let mut g = c.benchmark_group("validate");
    g.bench_function(format!("append_one_to_{n}"), |b| {
        b.iter(|| {
            validate_changes(
                black_box(before),
                black_box(&one),
                &auth,
                &registry,
                now,
                &limits,
            )
            .expect("valid")
        });
    });
    g.bench_function(format!("append_one_to_{n}_known"), |b| {
        b.iter(|| {
            validate_changes_with(
                black_box(before),
                black_box(&one),
                Some(black_box(&known)),
                &auth,
                &registry,
                now,
                &limits,
            )
            .expect("valid")
        });
    });
    // The same note, written by a nurse who had not seen a note the charge nurse added on the
    // server meanwhile: judged by what she had seen, from the events the server holds.
    let mut beside = h.doc.clone();
    beside.set_actor(ActorId::random());
    let mut charge = h.people["rn.charge"].clone();
    beside
        .append(
            &h.template,
            &charge.author,
            &mut charge.clock,
            h.now + 10_000,
            EventBody::Note {
                text: "Bed 12 family asked for an update.".into(),
            },
        )
        .expect("append a note");
    let beside_before = beside.automerge().clone();
    let mut beside_after = beside_before.clone();
    beside_after.merge(&mut one.clone()).expect("merge");
    let beside_known = beside.events().expect("read").events;
    let accepted = validate_changes_with(
        &beside_before,
        &beside_after,
        Some(&beside_known),
        &auth,
        &registry,
        now,
        &limits,
    )
    .expect("the change is valid");
    assert_eq!(accepted.len(), 1);
    g.bench_function(format!("append_one_to_{n}_beside_known"), |b| {
        b.iter(|| {
            validate_changes_with(
                black_box(&beside_before),
                black_box(&beside_after),
                Some(black_box(&beside_known)),
                &auth,
                &registry,
                now,
                &limits,
            )
            .expect("valid")
        });
    });
    if !ten {
        g.finish();
        return;
    }
    // One batch of ten changes, as a device sends after a while offline.
    g.sample_size(10);
    g.bench_function(format!("append_ten_to_{n}"), |b| {
        b.iter(|| {
            validate_changes(
                black_box(before),
                black_box(&batch),
                &auth,
                &registry,
                now,
                &limits,
            )
            .expect("valid")
        });
    });
    g.bench_function(format!("append_ten_to_{n}_known"), |b| {
        b.iter(|| {
            validate_changes_with(
                black_box(before),
                black_box(&batch),
                Some(black_box(&known)),
                &auth,
                &registry,
                now,
                &limits,
            )
            .expect("valid")
        });
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let thousand = History::build(1_000);
    let hundred = History::build(100);
    assert_eq!(hundred.doc.events().expect("read").events.len(), 100);
    bench_fold(c, &thousand, &hundred);
    bench_append(c, &hundred);
    bench_merge(c, &hundred);
    bench_validate(c, &thousand, true);
    bench_validate(c, &hundred, false);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = core;
    config = config();
    targets = benches
}
criterion_main!(core);
