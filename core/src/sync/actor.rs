//! One document's actor, sans-IO: what the server does with a document everyone syncs.
//!
//! The actor owns a [`DocSync`] (the document and every peer's sync state) and what the server
//! knows of the document (its unit, its kind, the task's fixed fields and events, what the unit
//! index lists for it). It does no I/O. Inputs go in — a run of a peer's sync messages, a peer
//! leaving, an ephemeral message, a change the server makes, the outcome of a commit or a
//! compaction — and [`Effects`] come out: one [`Commit`] of new changes **and everything
//! derived from them** (their events, the unit index entry, the task's timer and its summary),
//! messages per peer, audit records, replies to server changes, a compaction, or word that the
//! actor must stop. Its owner (the server's hub) is the loop that
//! executes them.
//!
//! The order that keeps the server's promise is built in:
//!
//! 1. a peer that may not see the document's unit gets `doc-unavailable` and nothing else;
//! 2. each run goes through the core's validation gate ([`validate_applied`]); a refused run is
//!    answered with an error and an audit record, and is neither stored nor relayed;
//! 3. the batch's accepted changes leave as one [`Commit`] with their events and the index
//!    entry they imply; until [`DocActor::committed`] reports it stored, nobody hears of them;
//! 4. only then are sync messages generated, for peers that may still see the document.
//!
//! A document nobody has created keeps no peer: a change-less `sync` for it is answered as a
//! `request` when the peer has nothing either, and asked for what it has otherwise.

use super::doc::{DocSync, ReceiveError, SyncLimits, without_queue};
use super::doc_id::DocumentId;
use super::message::PeerId;
use crate::TaskMeta;
use crate::doc::{Author, TaskDoc};
use crate::doc::{read_events, read_meta_of};
use crate::event::Event;
use crate::fold::fold;
use crate::hlc::HlcClock;
use crate::ids::UnitId;
use crate::index::IndexedTask;
use crate::notice::{Notice, name_covering, notices};
use crate::policy::coverage::Schedule;
use crate::policy::escalation::{self, Due, Routing, next_due_with};
use crate::policy::handover;
use crate::summary::TaskSummary;
use crate::template::{SharedTemplates, TemplateRef, TemplateRegistry};
use crate::time::Millis;
use crate::validate::{AuthContext, Known, Limits, ValidationError, validate_applied};
use automerge::{ActorId, Automerge, Change, ChangeHash};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// A connection syncing documents, as an actor sees it: who it is and what it may see, asked
/// afresh every time (grants change while a connection is open). Actors hold peers as
/// `Arc<P>`, handles shared with whatever owns the connection.
pub trait Peer {
    /// Unique among the actor's peers for as long as the connection lasts.
    fn id(&self) -> u64;
    /// Whether the peer's session may see documents of `unit`.
    fn may_see(&self, unit: &UnitId) -> bool;
    /// What validation needs to know about the peer acting on a document of `unit` (none, when
    /// the document is new and its unit is not known yet).
    fn auth_on(&self, unit: Option<&UnitId>) -> AuthContext;
}

/// The kind of an Automerge document the server holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocKind {
    Task,
    UnitIndex,
}

/// What the server records of a document besides its changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: DocKind,
    pub unit: UnitId,
    /// The template a task follows (none for a unit index).
    pub template: Option<TemplateRef>,
}

/// A document as storage holds it: its record, a snapshot, and the changes stored since.
#[derive(Clone, Debug)]
pub struct Stored {
    pub record: Record,
    pub snapshot: Option<Vec<u8>>,
    /// (hash, bytes) of every change stored outside the snapshot.
    pub changes: Vec<(String, Vec<u8>)>,
}

/// What every actor of one server shares.
#[derive(Clone, Debug)]
pub struct Settings {
    pub templates: SharedTemplates,
    pub limits: Limits,
    /// The Automerge actor the server writes its own changes as.
    pub actor: ActorId,
    /// Whether new tasks are routed to whoever covers their owner role.
    pub routing: Routing,
}

/// A change the server makes to a document; an error leaves what it changed in place.
pub type LocalChange = Box<dyn FnOnce(&mut Automerge) -> Result<(), String> + Send>;

/// An ephemeral message to pass on unchanged: its original sender, session and count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ephemeral {
    pub sender: PeerId,
    pub session_id: String,
    pub count: u64,
    pub data: Vec<u8>,
}

/// Something for the actor to act on.
pub enum Input<P> {
    /// A `sync` (or, with `request`, a `request`) message from `from`. Consecutive messages of
    /// one peer in one batch are taken as one run: applied, judged and acknowledged together.
    /// `arrived` is handed back in [`Effects::acknowledged`] once the run is answered.
    Sync {
        from: Arc<P>,
        data: Vec<u8>,
        request: bool,
        arrived: Instant,
    },
    /// `peer` stopped syncing the document.
    Leave { peer: u64 },
    /// An ephemeral message from a peer, for everyone else syncing the document.
    Ephemeral { from: u64, message: Arc<Ephemeral> },
    /// A change the server makes; its outcome comes back in [`Effects::replies`] under `ticket`.
    Local { ticket: u64, change: LocalChange },
    /// The task's timer fell due: append the event its next due action writes, if it is due at
    /// `now` (the workflow clock), resolving escalation targets against `schedule`. The
    /// outcome comes back under `ticket` once the event is stored: `Ok` also when nothing was
    /// due any more (progress got there first).
    Fire {
        ticket: u64,
        now: Millis,
        schedule: Arc<Schedule>,
    },
}

impl<P> std::fmt::Debug for Input<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Sync { data, request, .. } => f
                .debug_struct("Sync")
                .field("bytes", &data.len())
                .field("request", request)
                .finish_non_exhaustive(),
            Input::Leave { peer } => f.debug_struct("Leave").field("peer", peer).finish(),
            Input::Ephemeral { from, .. } => f
                .debug_struct("Ephemeral")
                .field("from", from)
                .finish_non_exhaustive(),
            Input::Local { ticket, .. } => f
                .debug_struct("Local")
                .field("ticket", ticket)
                .finish_non_exhaustive(),
            Input::Fire { ticket, now, .. } => f
                .debug_struct("Fire")
                .field("ticket", ticket)
                .field("now", now)
                .finish_non_exhaustive(),
        }
    }
}

/// A message for one peer about this document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    Sync(Vec<u8>),
    /// `doc-unavailable`: said of a document that does not exist and of one the peer may not
    /// see alike, so a peer learns nothing of what it may not see.
    Unavailable,
    Error(String),
    Ephemeral(Arc<Ephemeral>),
}

/// A security audit record about what a peer did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audit {
    pub kind: &'static str,
    pub detail: String,
}

/// What a task's unit index owes it after a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexChange {
    pub unit: UnitId,
    /// The task's listing, or `None` to take it off (it closed).
    pub listing: Option<IndexedTask>,
}

/// What a task's timer becomes after a commit: one timer per open task, at its next due action
/// ([`next_due`]), gone when nothing is pending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimerChange {
    Set(Due),
    Clear,
}

/// New changes and everything derived from them, to be stored in one transaction.
#[derive(Debug)]
pub struct Commit {
    /// The document's record, when these changes created it.
    pub created: Option<Record>,
    /// Changes new to the document, in causal order.
    pub changes: Vec<Change>,
    /// The events the changes added, received now.
    pub events: Vec<Event>,
    /// The entry the unit index now owes the task, if its listing changed.
    pub index: Option<IndexChange>,
    /// The task's timer, if it changed.
    pub timer: Option<TimerChange>,
    /// Whom the events ask to act; the server writes their deliveries with the commit.
    pub notices: Vec<Notice>,
    /// Whether `notices` that name only a role were already given whoever covered it: a
    /// firing's are, on the schedule it fired with. Otherwise the owner looks coverage up.
    pub notices_named: bool,
    /// The task's summary as these changes leave it (every commit of a readable task carries
    /// it, so the summary row is always the one its latest changes imply).
    pub summary: Option<TaskSummary>,
}

/// Stored changes folded into one snapshot.
#[derive(Clone, Debug)]
pub struct Compaction {
    pub snapshot: Vec<u8>,
    pub heads: Vec<ChangeHash>,
    /// The hashes of the stored changes the snapshot replaces.
    pub folded: Vec<String>,
}

/// What the actor's owner must do.
///
/// Everything here but `commit` may be done at once and in any order. A `commit` must be stored
/// and its outcome handed to [`DocActor::committed`] before the effects that depend on it (the
/// sync messages announcing its changes, the replies to server changes) come out of it.
#[derive(Debug)]
pub struct Effects<P> {
    pub commit: Option<Commit>,
    pub send: Vec<(Arc<P>, Outgoing)>,
    pub audit: Vec<(Arc<P>, Audit)>,
    /// Outcomes of server changes, by ticket; sent once their changes are stored.
    pub replies: Vec<(u64, Result<(), String>)>,
    /// When each run whose changes were accepted arrived, now that it is answered.
    pub acknowledged: Vec<Instant>,
    pub compact: Option<Compaction>,
    /// The actor must stop (its document could not be stored, or holds changes nobody
    /// accepted): its owner drops it, and the next message loads the document from storage.
    /// Every peer has been told to sync again.
    pub stop: Option<String>,
}

impl<P> Default for Effects<P> {
    fn default() -> Self {
        Effects {
            commit: None,
            send: Vec::new(),
            audit: Vec::new(),
            replies: Vec::new(),
            acknowledged: Vec::new(),
            compact: None,
            stop: None,
        }
    }
}

impl<P> Effects<P> {
    fn absorb(&mut self, other: Effects<P>) {
        debug_assert!(self.commit.is_none() || other.commit.is_none());
        self.commit = self.commit.take().or(other.commit);
        self.send.extend(other.send);
        self.audit.extend(other.audit);
        self.replies.extend(other.replies);
        self.acknowledged.extend(other.acknowledged);
        self.compact = self.compact.take().or(other.compact);
        self.stop = self.stop.take().or(other.stop);
    }
}

/// Why a stored document could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("the stored document could not be loaded: {0}")]
pub struct LoadError(#[from] automerge::AutomergeError);

/// Stored changes of one document that trigger a compaction into a snapshot.
pub const COMPACT_AFTER: usize = 256;

/// A stored document, opened: the snapshot, then every change stored since. Nothing that is not
/// causally ready is kept, so nothing unvalidated is ever applied: a snapshot may carry changes
/// Automerge queued for want of their dependencies (saved by an earlier version), which were
/// never validated; every stored change row was validated, and one that is still not ready goes
/// too.
pub fn open_stored(
    snapshot: Option<&[u8]>,
    changes: impl IntoIterator<Item = impl AsRef<[u8]>>,
) -> Result<Automerge, LoadError> {
    let doc = match snapshot {
        Some(bytes) => Automerge::load(bytes)?,
        None => Automerge::new(),
    };
    let mut doc = without_queue(doc)?;
    for change in changes {
        doc.load_incremental(change.as_ref())?;
    }
    Ok(without_queue(doc)?)
}

/// What one batch did, until its commit is stored.
#[derive(Default)]
struct Batch {
    changes: Vec<Change>,
    events: Vec<Event>,
    created: Option<Record>,
    replies: Vec<(u64, Result<(), String>)>,
    acknowledged: Vec<Instant>,
    /// The coverage a firing in the batch resolved its targets on, and when.
    coverage: Option<(Arc<Schedule>, Millis)>,
}

/// A commit handed out and not yet reported stored, and what follows once it is.
struct Pending {
    created: Option<Record>,
    /// What the index lists once the commit is stored, if the commit changed it.
    listing: Option<Option<IndexedTask>>,
    /// The task's timer once the commit is stored, if the commit changed it.
    timer: Option<Option<Due>>,
    hashes: Vec<String>,
    replies: Vec<(u64, Result<(), String>)>,
    acknowledged: Vec<Instant>,
}

/// One document's actor.
pub struct DocActor<P: Peer> {
    id: DocumentId,
    settings: Arc<Settings>,
    sync: DocSync,
    record: Option<Record>,
    peers: BTreeMap<u64, Arc<P>>,
    /// What the unit index lists for this task: its entry while it is open, nothing once closed.
    listed: Option<IndexedTask>,
    /// The task's timer as stored: its next due action, none once nothing is pending.
    timer: Option<Due>,
    /// The task's fixed fields, once read (they never change).
    meta: Option<TaskMeta>,
    /// The task's events, decoded once something needed them and kept up to date with every
    /// accepted change, so validation and the fold never re-read the document.
    events: Option<Vec<Event>>,
    /// Hashes of the stored changes not yet folded into the stored snapshot.
    unsnapshotted: Vec<String>,
    pending: Option<Pending>,
    /// Inputs handed in while a commit was pending, taken up once it is stored.
    stash: Vec<Input<P>>,
}

impl<P: Peer> std::fmt::Debug for DocActor<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocActor")
            .field("id", &self.id)
            .field("record", &self.record)
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .field("pending", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

/// A peer's key in the document's sync state.
fn key(peer: u64) -> PeerId {
    peer.to_string()
}

impl<P: Peer> DocActor<P> {
    /// The actor of document `id`, as storage holds it (`None`: nobody has created it).
    pub fn load(
        id: DocumentId,
        settings: Arc<Settings>,
        stored: Option<Stored>,
    ) -> Result<Self, LoadError> {
        let (mut doc, record, unsnapshotted) = match stored {
            Some(stored) => {
                let doc = open_stored(
                    stored.snapshot.as_deref(),
                    stored.changes.iter().map(|(_, bytes)| bytes),
                )?;
                let hashes = stored.changes.into_iter().map(|(hash, _)| hash).collect();
                (doc, Some(stored.record), hashes)
            }
            None => (Automerge::new(), None, Vec::new()),
        };
        doc.set_actor(settings.actor.clone());
        let limits = SyncLimits {
            max_changes: settings.limits.max_changes,
            ..SyncLimits::default()
        };
        let mut actor = DocActor {
            id,
            sync: DocSync::with_limits(doc, limits),
            settings,
            record,
            peers: BTreeMap::new(),
            listed: None,
            timer: None,
            meta: None,
            events: None,
            unsnapshotted,
            pending: None,
            stash: Vec::new(),
        };
        if let Some(derived) = actor.derived(&[]) {
            actor.listed = derived.listing;
            actor.timer = derived.timer;
        }
        Ok(actor)
    }

    pub fn id(&self) -> DocumentId {
        self.id
    }

    pub fn doc(&self) -> &Automerge {
        self.sync.doc()
    }

    /// The document's record; `None` until someone creates it.
    pub fn record(&self) -> Option<&Record> {
        self.record.as_ref()
    }

    /// Whether any peer is syncing the document.
    pub fn has_peers(&self) -> bool {
        !self.peers.is_empty()
    }

    /// Whether a commit is out and not yet reported.
    pub fn is_committing(&self) -> bool {
        self.pending.is_some()
    }

    /// Changes held for `peer` while they wait for their dependencies.
    pub fn held(&self, peer: u64) -> usize {
        self.sync.held(&key(peer))
    }

    /// Take a batch of inputs at `now` (the server's clock, which validation judges by and
    /// events are received at). While a commit is pending the inputs wait, and are taken up by
    /// [`DocActor::committed`].
    pub fn handle(
        &mut self,
        now: Millis,
        inputs: impl IntoIterator<Item = Input<P>>,
    ) -> Effects<P> {
        if self.pending.is_some() {
            self.stash.extend(inputs);
            return Effects::default();
        }
        let mut effects = Effects::default();
        let mut batch = Batch::default();
        let mut inputs = inputs.into_iter().peekable();
        while let Some(input) = inputs.next() {
            match input {
                Input::Sync {
                    from,
                    data,
                    request,
                    arrived,
                } => {
                    // A peer's messages that queued up one after the other are taken as one.
                    let mut run = vec![data];
                    while let Some(Input::Sync { from: next, .. }) = inputs.peek()
                        && next.id() == from.id()
                    {
                        if let Some(Input::Sync { data, .. }) = inputs.next() {
                            run.push(data);
                        }
                    }
                    if self.receive(now, &mut batch, &mut effects, from, &run, request) {
                        batch.acknowledged.push(arrived);
                    }
                }
                Input::Leave { peer } => {
                    if self.peers.remove(&peer).is_some() {
                        self.sync.remove_peer(&key(peer));
                    }
                }
                Input::Ephemeral { from, message } => self.relay(&mut effects, from, message),
                Input::Local { ticket, change } => self.local(&mut batch, ticket, change),
                Input::Fire {
                    ticket,
                    now,
                    schedule,
                } => {
                    let result = self.fire(&mut batch, now, &schedule);
                    batch.replies.push((ticket, result));
                    batch.coverage = Some((schedule, now));
                }
            }
        }
        if batch.changes.is_empty() {
            effects.replies = batch.replies;
            effects.absorb(self.answer(batch.acknowledged));
            return effects;
        }
        effects.commit = Some(self.commit(batch));
        effects
    }

    /// The outcome of the commit the last effects handed out. Stored: peers hear of its changes
    /// and server changes are answered. Not stored: the document in memory holds changes
    /// storage does not, so the actor stops and every peer is told to sync again.
    pub fn committed(&mut self, now: Millis, result: Result<(), String>) -> Effects<P> {
        let Some(pending) = self.pending.take() else {
            return Effects::default();
        };
        if let Err(e) = result {
            let mut effects = self.stop_all(format!("the changes could not be stored: {e}"));
            effects.replies = pending
                .replies
                .into_iter()
                .map(|(ticket, _)| (ticket, Err("the change could not be stored".to_owned())))
                .collect();
            return effects;
        }
        self.unsnapshotted.extend(pending.hashes);
        if let Some(record) = pending.created {
            self.record = Some(record);
        }
        if let Some(listing) = pending.listing {
            self.listed = listing;
        }
        if let Some(timer) = pending.timer {
            self.timer = timer;
        }
        let mut effects = Effects {
            replies: pending.replies,
            ..Effects::default()
        };
        if self.unsnapshotted.len() >= COMPACT_AFTER {
            effects.compact = Some(Compaction {
                snapshot: self.sync.doc().save(),
                heads: self.sync.doc().get_heads(),
                folded: self.unsnapshotted.clone(),
            });
        }
        effects.absorb(self.answer(pending.acknowledged));
        if effects.stop.is_none() && !self.stash.is_empty() {
            let stash = std::mem::take(&mut self.stash);
            effects.absorb(self.handle(now, stash));
        }
        effects
    }

    /// A compaction was stored: the changes it folded are in the snapshot now. (A compaction
    /// that failed costs only space: its changes stay stored.)
    pub fn compacted(&mut self, compaction: &Compaction) {
        let folded: HashSet<&str> = compaction.folded.iter().map(String::as_str).collect();
        self.unsnapshotted.retain(|h| !folded.contains(h.as_str()));
    }

    /// Apply a run of sync messages from `from`, if it may see this document and their changes
    /// are valid. Returns whether they brought new changes that were accepted.
    fn receive(
        &mut self,
        now: Millis,
        batch: &mut Batch,
        effects: &mut Effects<P>,
        from: Arc<P>,
        run: &[Vec<u8>],
        request: bool,
    ) -> bool {
        match &self.record {
            Some(record) if !from.may_see(&record.unit) => {
                // Say nothing about whether it exists.
                let detail = format!("requested a document of unit {}", record.unit);
                effects.send.push((from.clone(), Outgoing::Unavailable));
                effects
                    .audit
                    .push((from, audit("document_outside_units", detail)));
                return false;
            }
            None if request && batch.created.is_none() => {
                // A peer asking for a document nobody has created.
                effects.send.push((from, Outgoing::Unavailable));
                return false;
            }
            _ => {}
        }
        let peer = key(from.id());
        let settings = Arc::clone(&self.settings);
        let known_unit = self
            .record
            .as_ref()
            .or(batch.created.as_ref())
            .map(|r| r.unit.clone());
        let known = Known {
            meta: self.meta.as_ref(),
            events: self.events.as_deref(),
        };
        let mut accepted = Vec::new();
        let result = self.sync.receive_all(&peer, run, |applied| {
            // The roles the sender holds on this document's unit, and only those.
            let unit = known_unit
                .clone()
                .or_else(|| read_meta_of(applied.after).ok().map(|meta| meta.unit));
            let auth = from.auth_on(unit.as_ref());
            accepted = validate_applied(
                applied,
                known,
                &auth,
                &settings.templates.current(),
                now,
                &settings.limits,
            )?;
            Ok(())
        });
        let existed = self.record.is_some() || batch.created.is_some();
        let brought = match result {
            Ok(received) if received.changes.is_empty() => {
                if !existed {
                    // Nothing here and nothing brought: answered as a `request` when the peer
                    // has nothing either, else asked for what it has.
                    if self.sync.their_heads(&peer).is_none_or(<[_]>::is_empty) {
                        effects.send.push((from.clone(), Outgoing::Unavailable));
                    } else if let Some(data) = self.sync.generate(&peer) {
                        effects.send.push((from.clone(), Outgoing::Sync(data)));
                    }
                }
                false
            }
            Ok(received) => {
                if !existed {
                    batch.created = self.new_task_record();
                }
                let brought = batch.created.is_some() || self.record.is_some();
                if brought {
                    batch.changes.extend(received.changes);
                    if let Some(events) = self.events.as_mut() {
                        events.extend(accepted.iter().cloned());
                    }
                    batch.events.append(&mut accepted);
                }
                brought
            }
            Err(ReceiveError::Refused(refusal)) => {
                let kind = match refusal {
                    ValidationError::Impersonation { .. } => "forged_event",
                    ValidationError::UnitNotAllowed { .. } => "document_outside_units",
                    _ => "invalid_change",
                };
                self.refuse(effects, &from, format!("refused: {refusal}"), kind);
                false
            }
            Err(ReceiveError::Blocked) => false,
            Err(e @ ReceiveError::TooManyChanges { .. }) => {
                self.refuse(effects, &from, format!("refused: {e}"), "too_many_changes");
                false
            }
            Err(e @ (ReceiveError::Malformed(_) | ReceiveError::Apply(_))) => {
                self.refuse(effects, &from, format!("refused: {e}"), "malformed_sync");
                false
            }
        };
        if self.record.is_some() || batch.created.is_some() {
            self.peers.entry(from.id()).or_insert(from);
        } else {
            // A document that does not exist keeps nothing of the peer, so one created later
            // under this id is never sent to it unasked.
            self.sync.remove_peer(&peer);
        }
        brought
    }

    /// Answer `peer` with an error and record the refusal in the security audit.
    fn refuse(&self, effects: &mut Effects<P>, peer: &Arc<P>, message: String, kind: &'static str) {
        effects
            .audit
            .push((peer.clone(), audit(kind, message.clone())));
        effects.send.push((peer.clone(), Outgoing::Error(message)));
    }

    /// Make a server change. Its events are read afresh from the document.
    fn local(&mut self, batch: &mut Batch, ticket: u64, change: LocalChange) {
        let known: HashSet<String> = self
            .task_events()
            .iter()
            .map(|e| e.id.to_string())
            .collect();
        let (result, changes) = self.sync.update(change);
        self.events = None;
        if !changes.is_empty() {
            let new = self
                .task_events()
                .iter()
                .filter(|e| !known.contains(e.id.as_str()))
                .cloned()
                .collect::<Vec<_>>();
            batch.events.extend(new);
        }
        batch.changes.extend(changes);
        batch.replies.push((ticket, result));
    }

    /// Append the event the task's next due action writes, if it is due at `now`: the system's
    /// own event, with the action's deterministic id (so a second firing anywhere writes
    /// nothing new), passing the same rules as everyone's. Nothing due is no error.
    fn fire(&mut self, batch: &mut Batch, now: Millis, schedule: &Schedule) -> Result<(), String> {
        // What is due may be several things at once (an escalation and a shift change); each
        // appended event can make the next one due, so a few rounds, bounded.
        for _ in 0..4 {
            if !self.fire_one(batch, now, schedule)? {
                break;
            }
        }
        Ok(())
    }

    /// Append the one event due now, if any. Returns whether it appended one.
    fn fire_one(
        &mut self,
        batch: &mut Batch,
        now: Millis,
        schedule: &Schedule,
    ) -> Result<bool, String> {
        let settings = Arc::clone(&self.settings);
        let Some((meta, events)) = self.task() else {
            return Err("not a task".to_owned());
        };
        let template = settings
            .templates
            .get(&meta.template)
            .ok_or_else(|| format!("unknown template {}", meta.template))?;
        let template = &*template;
        let state = fold(template, meta, events);
        let Some((id, body)) =
            escalation::fire_with(template, &state, schedule, now, settings.routing).or_else(
                || match settings.routing {
                    Routing::On => handover::handover(template, &state, schedule, now),
                    Routing::Off => None,
                },
            )
        else {
            return Ok(false);
        };
        if state.history.iter().any(|h| h.event == id) {
            return Ok(false);
        }
        let author = Author::system(settings.actor.to_hex_string());
        let meta = meta.clone();
        let (written, changes) = self.sync.update(|doc| {
            let mut task = TaskDoc::with_meta(std::mem::take(doc), meta);
            let written = task
                .append_to(
                    template,
                    &state,
                    &author,
                    &mut HlcClock::new(),
                    now,
                    now,
                    id,
                    body,
                )
                .map_err(|e| e.to_string());
            *doc = task.into_automerge();
            written
        });
        let event = written?;
        if let Some(events) = self.events.as_mut() {
            events.push(event.clone());
        }
        batch.events.push(event);
        batch.changes.extend(changes);
        Ok(true)
    }

    /// Pass an ephemeral message on to everyone else who may still see the document. Only a
    /// peer already syncing it may speak on it.
    fn relay(&mut self, effects: &mut Effects<P>, from: u64, message: Arc<Ephemeral>) {
        self.drop_unauthorized(effects);
        if !self.peers.contains_key(&from) {
            return;
        }
        for (id, peer) in &self.peers {
            if *id != from {
                let message = Outgoing::Ephemeral(Arc::clone(&message));
                effects.send.push((peer.clone(), message));
            }
        }
    }

    /// Hand out the batch's changes with what follows from them: their events, the entry the
    /// unit index owes this task if it opened, changed what its listing shows, or closed, and
    /// its timer if the next due action moved.
    fn commit(&mut self, batch: Batch) -> Commit {
        let record = self.record.as_ref().or(batch.created.as_ref());
        let task_unit = record
            .filter(|r| r.kind == DocKind::Task)
            .map(|r| r.unit.clone());
        let derived = match task_unit {
            Some(_) => self.derived(&batch.events),
            None => None,
        };
        let mut notices = derived
            .as_ref()
            .map(|d| d.notices.clone())
            .unwrap_or_default();
        let notices_named = match &batch.coverage {
            Some((schedule, at)) => {
                name_covering(&mut notices, schedule, *at);
                true
            }
            None => false,
        };
        let summary = derived.as_ref().map(|d| d.summary.clone());
        let (index, listing, timer, next_timer) = match (task_unit, derived) {
            (Some(unit), Some(now)) => {
                let index = (now.listing != self.listed).then(|| IndexChange {
                    unit,
                    listing: now.listing.clone(),
                });
                let timer = (now.timer != self.timer).then(|| match &now.timer {
                    Some(due) => TimerChange::Set(due.clone()),
                    None => TimerChange::Clear,
                });
                let next_timer = timer.as_ref().map(|_| now.timer);
                (index, Some(now.listing), timer, next_timer)
            }
            _ => (None, None, None, None),
        };
        self.pending = Some(Pending {
            created: batch.created.clone(),
            listing,
            timer: next_timer,
            hashes: batch.changes.iter().map(|c| c.hash().to_string()).collect(),
            replies: batch.replies,
            acknowledged: batch.acknowledged,
        });
        Commit {
            created: batch.created,
            changes: batch.changes,
            events: batch.events,
            index,
            timer,
            notices,
            notices_named,
            summary,
        }
    }

    /// Sync messages for every peer that may see the document, now that what it holds is
    /// stored; or, if refused changes could not be taken back out, the end of the actor.
    fn answer(&mut self, acknowledged: Vec<Instant>) -> Effects<P> {
        if self.sync.is_poisoned() {
            return self.stop_all(
                "refused changes could not be taken back out of the document".to_owned(),
            );
        }
        let mut effects = Effects {
            acknowledged,
            ..Effects::default()
        };
        self.drop_unauthorized(&mut effects);
        for (peer, data) in self.sync.generate_all() {
            if let Some(peer) = peer.parse().ok().and_then(|id: u64| self.peers.get(&id)) {
                effects.send.push((peer.clone(), Outgoing::Sync(data)));
            }
        }
        effects
    }

    /// Tell every peer to sync again, and stop.
    fn stop_all(&mut self, reason: String) -> Effects<P> {
        let message = "the server could not store changes; sync again";
        let send = self
            .peers
            .values()
            .map(|peer| (peer.clone(), Outgoing::Error(message.to_owned())))
            .collect();
        self.peers.clear();
        Effects {
            send,
            stop: Some(reason),
            ..Effects::default()
        }
    }

    /// Stop syncing with every peer that may no longer see this document's unit (its grants
    /// changed since it joined): nothing of the document is sent to it any more.
    fn drop_unauthorized(&mut self, effects: &mut Effects<P>) {
        let Some(unit) = self.record.as_ref().map(|r| r.unit.clone()) else {
            return;
        };
        let gone: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, peer)| !peer.may_see(&unit))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(peer) = self.peers.remove(&id) {
                self.sync.remove_peer(&key(id));
                effects.send.push((peer, Outgoing::Unavailable));
            }
        }
    }

    /// The record of a task document created by the changes just accepted.
    fn new_task_record(&self) -> Option<Record> {
        let meta = read_meta_of(self.sync.doc()).ok()?;
        Some(Record {
            kind: DocKind::Task,
            unit: meta.unit,
            template: Some(meta.template),
        })
    }

    /// The task's fixed fields and events, read once and kept (none for a unit index).
    fn task(&mut self) -> Option<(&TaskMeta, &[Event])> {
        if self
            .record
            .as_ref()
            .is_some_and(|r| r.kind != DocKind::Task)
        {
            return None;
        }
        let doc = self.sync.doc();
        if self.meta.is_none() {
            self.meta = Some(read_meta_of(doc).ok()?);
        }
        if self.events.is_none() {
            self.events = Some(read_events(doc, None).ok()?.events);
        }
        Some((self.meta.as_ref()?, self.events.as_deref()?))
    }

    fn task_events(&mut self) -> &[Event] {
        self.task().map_or(&[], |(_, events)| events)
    }

    /// What the task's state implies, as it stands: its index entry (while it is open) and its
    /// timer. `None` for a document that is not a readable task.
    fn derived(&mut self, new: &[Event]) -> Option<Derived> {
        let settings = Arc::clone(&self.settings);
        let id = self.id;
        let (meta, events) = self.task()?;
        let template = settings.templates.get(&meta.template)?;
        Some(derive(&id, &template, meta, events, new, settings.routing))
    }
}

/// What a task's state implies beyond its document: its index entry while it is open, its
/// timer at its next due action, its summary, and whom its `new` events ask to act.
fn derive(
    id: &DocumentId,
    template: &crate::Template,
    meta: &TaskMeta,
    events: &[Event],
    new: &[Event],
    routing: Routing,
) -> Derived {
    let state = fold(template, meta, events);
    let timer = next_due_with(template, &state, routing);
    let listing = (!state.status.is_closed()).then(|| IndexedTask {
        acuity: state.acuity.clone(),
        ..IndexedTask::of(id, meta)
    });
    Derived {
        listing,
        timer,
        notices: notices(&state, new),
        summary: TaskSummary::of(template, meta, &state),
    }
}

/// The commit that stores a task the server opened itself (demo data, inbound triggers) as
/// document `id`: its record, every change, every event, its index entry, its timer and its
/// summary, derived as for any other commit.
pub fn new_task_commit(
    id: &DocumentId,
    templates: &TemplateRegistry,
    task: &TaskDoc,
    routing: Routing,
) -> Result<Commit, crate::doc::DocError> {
    let meta = task.meta();
    let events = task.events()?.events;
    let derived = templates
        .get(&meta.template)
        .map(|template| derive(id, template, meta, &events, &events, routing));
    let (listing, timer, notices, summary) = match derived {
        Some(d) => (d.listing, d.timer, d.notices, Some(d.summary)),
        None => (Some(IndexedTask::of(id, meta)), None, Vec::new(), None),
    };
    Ok(Commit {
        created: Some(Record {
            kind: DocKind::Task,
            unit: meta.unit.clone(),
            template: Some(meta.template.clone()),
        }),
        changes: task.automerge().get_changes(&[]),
        events,
        index: Some(IndexChange {
            unit: meta.unit.clone(),
            listing,
        }),
        timer: timer.map(TimerChange::Set),
        notices,
        notices_named: false,
        summary,
    })
}

/// What a task's state implies beyond its document.
struct Derived {
    listing: Option<IndexedTask>,
    timer: Option<Due>,
    notices: Vec<Notice>,
    summary: TaskSummary,
}

fn audit(kind: &'static str, detail: String) -> Audit {
    Audit { kind, detail }
}
