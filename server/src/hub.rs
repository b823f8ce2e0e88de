//! Documents in memory: one actor task per document that someone is syncing.
//!
//! A document's actor owns its [`DocSync`] (the document and every peer's sync state) and handles
//! that document's messages one batch at a time:
//!
//! 1. check that each sender may see the document (its unit, against the sender's session);
//! 2. apply each sync message through the core's validation gate (a refused change is answered
//!    with an error, recorded in the security audit, and neither stored nor forwarded);
//! 3. **commit the batch's new changes to the database**;
//! 4. only then generate sync messages for every peer, so no peer is ever told about heads that
//!    are not durable.
//!
//! When no peer has synced a document for `idle_document`, its actor ends and the document
//! leaves memory: memory follows the working set, not the number of stored documents.

use crate::audit::Auditor;
use crate::auth::Session;
use crate::commit::Committer;
use crate::db::{
    Db, DbError, Derived, DocKind, DocRecord, EventRow, IndexRow, OwedIndexEntry, StoredChange,
};
use crate::metrics::Histogram;
use crate::now_ms;
use automerge::{ActorId, Automerge, Change};
use baton_core::doc::{read_events, read_meta_of};
use baton_core::index::{self, IndexedTask, RosterEntry};
use baton_core::sync::{DocSync, DocumentId, ReceiveError, SyncLimits, without_queue};
use baton_core::validate::{Known, Limits, ValidationError, validate_applied};
use baton_core::{Event, TaskMeta};
use baton_core::{TaskDoc, TemplateRegistry, fold};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Messages a document actor sends to a connection.
#[derive(Debug)]
pub(crate) enum Outbound {
    Sync {
        doc: DocumentId,
        data: Vec<u8>,
    },
    Unavailable {
        doc: DocumentId,
    },
    Error {
        doc: Option<DocumentId>,
        message: String,
    },
    /// Boxed: every connection's queue holds blocks of this enum, so its size is paid per idle
    /// connection.
    Ephemeral(Box<EphemeralRelay>),
}

/// An ephemeral message passed on unchanged (original sender, session and count).
#[derive(Debug, Clone)]
pub(crate) struct EphemeralRelay {
    pub doc: DocumentId,
    pub sender: String,
    pub session_id: String,
    pub count: u64,
    pub data: Vec<u8>,
}

/// One WebSocket connection, as the documents it syncs see it.
#[derive(Debug)]
pub(crate) struct Conn {
    pub id: u64,
    pub session: Arc<Session>,
    pub out: mpsc::Sender<Outbound>,
    /// Cancelled to drop the connection (too slow, revoked, shutting down).
    pub kick: CancellationToken,
}

impl Conn {
    /// Queue a message; a connection whose queue is full is too slow and is dropped, and a
    /// dropped connection is sent nothing more.
    pub(crate) fn send(&self, message: Outbound) {
        if self.kick.is_cancelled() {
            return;
        }
        if self.out.try_send(message).is_err() {
            self.kick.cancel();
        }
    }

    fn key(&self) -> String {
        self.id.to_string()
    }
}

/// A change the server makes to a document.
type LocalChange = Box<dyn FnOnce(&mut Automerge) -> Result<(), String> + Send>;
/// Where the outcome of a server change goes.
type LocalDone = oneshot::Sender<Result<(), String>>;

enum DocCmd {
    /// A `sync` or `request` message.
    Sync {
        conn: Arc<Conn>,
        data: Vec<u8>,
        request: bool,
        arrived: Instant,
    },
    Ephemeral {
        conn: Arc<Conn>,
        relay: EphemeralRelay,
    },
    Leave {
        conn: u64,
    },
    /// A change the server itself makes.
    Local {
        change: LocalChange,
        done: LocalDone,
    },
}

/// Why the hub could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("document {0}: {1}")]
    Doc(DocumentId, String),
    #[error("the server is shutting down")]
    Closed,
}

struct Shared {
    db: Db,
    /// The security audit, throttled per device and address.
    auditor: Arc<Auditor>,
    committer: Committer,
    templates: TemplateRegistry,
    limits: Limits,
    idle: Duration,
    docs: Mutex<HashMap<DocumentId, mpsc::Sender<DocCmd>>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    loaded: AtomicU64,
    /// From a message with new changes arriving to its acknowledgment being queued.
    ack_latency: Histogram,
    /// Wakes the index writer: an owed index entry was committed.
    index_owed: tokio::sync::Notify,
    /// One drain of the owed index entries at a time.
    index_drain: tokio::sync::Mutex<()>,
}

/// The documents in memory and the way to them.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("loaded", &self.loaded_documents())
            .finish_non_exhaustive()
    }
}

/// Owed index entries read per query while draining.
const INDEX_DRAIN_BATCH: i64 = 256;
/// How often the index writer retries owed entries it could not apply.
const INDEX_RETRY: Duration = Duration::from_secs(5);

/// Commands a document actor takes in one batch.
const BATCH: usize = 64;
/// Queued commands per document before senders wait.
const DOC_QUEUE: usize = 1_024;

impl Hub {
    pub fn new(
        db: Db,
        auditor: Arc<Auditor>,
        templates: TemplateRegistry,
        idle: Duration,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        Hub {
            shared: Arc::new(Shared {
                committer: Committer::start(db.clone(), &tracker, cancel.clone()),
                db,
                auditor,
                templates,
                limits: Limits::default(),
                idle,
                docs: Mutex::new(HashMap::new()),
                tracker,
                cancel,
                loaded: AtomicU64::new(0),
                ack_latency: Histogram::default(),
                index_owed: tokio::sync::Notify::new(),
                index_drain: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Apply owed index entries to the unit index documents until `cancel` fires: whenever a
    /// commit owes one, and every few seconds to retry what failed.
    pub fn start_index_writer(&self) {
        let hub = self.clone();
        self.shared.tracker.spawn(async move {
            let cancel = hub.shared.cancel.clone();
            loop {
                if let Err(e) = hub.drain_index_entries().await {
                    tracing::error!(error = %e, "owed index entries could not be applied; retrying");
                }
                tokio::select! {
                    () = hub.shared.index_owed.notified() => {}
                    () = tokio::time::sleep(INDEX_RETRY) => {}
                    () = cancel.cancelled() => return,
                }
            }
        });
    }

    /// Apply every index entry owed (written with the changes they follow from, so none is lost
    /// to a crash): put each task on its unit's index or take it off, then forget the entry.
    pub async fn drain_index_entries(&self) -> Result<usize, HubError> {
        let _one_at_a_time = self.shared.index_drain.lock().await;
        let mut applied = 0;
        loop {
            let owed = self.shared.db.owed_index_entries(INDEX_DRAIN_BATCH).await?;
            if owed.is_empty() {
                return Ok(applied);
            }
            for entry in &owed {
                self.apply_index_entry(entry).await?;
                self.shared.db.index_entry_applied(entry).await?;
                applied += 1;
            }
        }
    }

    async fn apply_index_entry(&self, owed: &OwedIndexEntry) -> Result<(), HubError> {
        let id = parse_id(&owed.doc)?;
        let listing = match owed
            .entry
            .as_deref()
            .map(serde_json::from_str::<IndexedTask>)
        {
            None => None,
            Some(Ok(task)) => Some(task),
            Some(Err(e)) => {
                // Written by this server from an `IndexedTask`; unreadable only if damaged.
                tracing::error!(doc = %owed.doc, error = %e, "an owed index entry is unreadable; dropped");
                return Ok(());
            }
        };
        let index = self.ensure_unit_index(&owed.unit).await?;
        self.change(index, move |doc| match &listing {
            Some(task) => index::put_task(doc, &id, task).map_err(|e| e.to_string()),
            None => index::remove_task(doc, &id).map_err(|e| e.to_string()),
        })
        .await
    }

    /// The hub's figures (acknowledgment latency, the group commit), in Prometheus text.
    pub fn metrics(&self) -> String {
        let ack = self.shared.ack_latency.render(
            "baton_ack_seconds",
            "From a message with new changes arriving to the server's acknowledgment, committed, being sent.",
        );
        ack + &self.shared.committer.stats().render()
    }

    /// Documents currently in memory.
    pub fn loaded_documents(&self) -> u64 {
        self.shared.loaded.load(Ordering::Relaxed)
    }

    pub(crate) async fn sync(
        &self,
        doc: DocumentId,
        conn: Arc<Conn>,
        data: Vec<u8>,
        request: bool,
    ) {
        self.send(
            doc,
            DocCmd::Sync {
                conn,
                data,
                request,
                arrived: Instant::now(),
            },
        )
        .await;
    }

    pub(crate) async fn ephemeral(&self, conn: Arc<Conn>, relay: EphemeralRelay) {
        self.send(relay.doc, DocCmd::Ephemeral { conn, relay })
            .await;
    }

    pub(crate) async fn leave(&self, doc: DocumentId, conn: u64) {
        let tx = self
            .shared
            .docs
            .lock()
            .expect("hub lock")
            .get(&doc)
            .cloned();
        if let Some(tx) = tx {
            let _ = tx.send(DocCmd::Leave { conn }).await;
        }
    }

    /// Make a change as the server, persist it and send it to everyone syncing the document.
    pub async fn change(
        &self,
        doc: DocumentId,
        change: impl FnOnce(&mut Automerge) -> Result<(), String> + Send + 'static,
    ) -> Result<(), HubError> {
        let (done, wait) = oneshot::channel();
        let change = Box::new(change);
        self.send(doc, DocCmd::Local { change, done }).await;
        match wait.await {
            Ok(result) => result.map_err(|e| HubError::Doc(doc, e)),
            Err(_) => Err(HubError::Closed),
        }
    }

    /// Deliver a command to the document's actor, starting it if needed. An actor that ended
    /// between the lookup and the send hands the command back, and a new actor gets it.
    async fn send(&self, doc: DocumentId, mut cmd: DocCmd) {
        for _ in 0..3 {
            let tx = {
                let mut docs = self.shared.docs.lock().expect("hub lock");
                match docs.get(&doc) {
                    Some(tx) if !tx.is_closed() => tx.clone(),
                    _ => {
                        if self.shared.cancel.is_cancelled() {
                            return;
                        }
                        let (tx, rx) = mpsc::channel(DOC_QUEUE);
                        docs.insert(doc, tx.clone());
                        self.shared.loaded.fetch_add(1, Ordering::Relaxed);
                        let hub = self.clone();
                        self.shared
                            .tracker
                            .spawn(async move { hub.run_doc(doc, rx).await });
                        tx
                    }
                }
            };
            match tx.send(cmd).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => cmd = back,
            }
        }
        tracing::error!(%doc, "a document actor could not be reached");
    }

    /// Ensure `unit` has an index document, creating it with the current roster. Returns its id.
    pub async fn ensure_unit_index(&self, unit: &str) -> Result<DocumentId, HubError> {
        let db = &self.shared.db;
        if let Some(id) = db.unit_index(unit).await? {
            return parse_id(&id);
        }
        let roster = self.roster(unit).await?;
        let id = DocumentId::random();
        let doc = index::create(&unit.into(), &roster, now_ms(), server_actor())
            .map_err(|e| HubError::Doc(id, e.to_string()))?;
        let doc_id = id.to_string();
        let changes: Vec<StoredChange> = doc
            .get_changes(&[])
            .iter()
            .map(|c| StoredChange::of(&doc_id, c))
            .collect();
        let stored = db
            .create_unit_index(unit, &doc_id, &changes, now_ms())
            .await?;
        parse_id(&stored)
    }

    /// Bring the roster and coverage on `unit`'s index in line with the server's records
    /// (writing only what differs, so the index's history grows only with real changes).
    pub async fn refresh_roster(&self, unit: &str) -> Result<(), HubError> {
        let id = self.ensure_unit_index(unit).await?;
        let roster = self.roster(unit).await?;
        let coverage = self.shared.db.coverage(unit).await?;
        self.change(id, move |doc| {
            let current = index::read(doc).map_err(|e| e.to_string())?;
            if current.roster != roster {
                index::set_roster(doc, &roster).map_err(|e| e.to_string())?;
            }
            if current.coverage.as_ref() != Some(&coverage) {
                index::set_coverage(doc, &coverage).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await
    }

    async fn roster(
        &self,
        unit: &str,
    ) -> Result<BTreeMap<baton_core::ids::UserId, RosterEntry>, HubError> {
        let mut roster: BTreeMap<_, RosterEntry> = BTreeMap::new();
        for (user, name, role) in self.shared.db.unit_roster(unit).await? {
            roster
                .entry(user)
                .or_insert_with(|| RosterEntry {
                    name,
                    roles: Vec::new(),
                })
                .roles
                .push(role);
        }
        Ok(roster)
    }

    /// Store a task the server opened itself (demo data, inbound triggers) and list it on its
    /// unit's index: the task, its events and the owed index entry in one transaction, the
    /// entry applied before this returns.
    pub async fn import_task(
        &self,
        id: DocumentId,
        record: DocRecord,
        task: TaskDoc,
    ) -> Result<(), HubError> {
        let doc_id = id.to_string();
        let failed = |e: String| HubError::Doc(id, e);
        let indexed = IndexedTask::of(&id, task.meta());
        let events = task
            .events()
            .map_err(|e| failed(e.to_string()))?
            .events
            .iter()
            .map(|e| EventRow::of(&doc_id, e))
            .collect();
        let derived = Derived {
            events,
            index: Some(index_row(&doc_id, record.unit.as_str(), Some(&indexed))?),
        };
        let doc = task.into_automerge();
        let changes = doc
            .get_changes(&[])
            .iter()
            .map(|c| StoredChange::of(&doc_id, c))
            .collect();
        self.shared
            .committer
            .commit(vec![record], changes, derived)
            .await
            .map_err(|e| failed(e.to_string()))?;
        self.drain_index_entries().await.map(|_| ())
    }

    /// A document's current bytes, loaded from storage if it is not in memory.
    pub async fn load(&self, id: &DocumentId) -> Result<Option<Automerge>, HubError> {
        if self.shared.db.document(&id.to_string()).await?.is_none() {
            return Ok(None);
        }
        load_stored(&self.shared.db, id)
            .await
            .map(|(doc, _)| Some(doc))
    }

    async fn run_doc(self, id: DocumentId, rx: mpsc::Receiver<DocCmd>) {
        let actor = DocActor::start(self.clone(), id).await;
        match actor {
            Ok(actor) => actor.run(rx).await,
            Err(e) => {
                tracing::error!(doc = %id, error = %e, "a document could not be loaded");
                fail_all(rx, "the document could not be loaded").await;
            }
        }
        self.shared
            .docs
            .lock()
            .expect("hub lock")
            .retain(|doc, tx| *doc != id || !tx.is_closed());
        self.shared.loaded.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The index entry a task owes its unit's index: its listing, or `None` to take it off.
fn index_row(doc: &str, unit: &str, listing: Option<&IndexedTask>) -> Result<IndexRow, HubError> {
    let entry = listing
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| HubError::Db(DbError::Sqlx(sqlx::Error::Encode(e.into()))))?;
    Ok(IndexRow {
        doc: doc.to_owned(),
        unit: unit.to_owned(),
        entry,
    })
}

fn parse_id(id: &str) -> Result<DocumentId, HubError> {
    id.parse()
        .map_err(|e: baton_core::sync::doc_id::DocumentIdError| {
            HubError::Db(DbError::Sqlx(sqlx::Error::Decode(e.to_string().into())))
        })
}

/// The Automerge actor this server process writes as: one per process, so every node (and every
/// restart) has its own and their changes never collide.
fn server_actor() -> ActorId {
    static ACTOR: std::sync::OnceLock<ActorId> = std::sync::OnceLock::new();
    ACTOR.get_or_init(ActorId::random).clone()
}

/// Load a stored document. Returns it with the hashes of its changes stored outside the snapshot.
async fn load_stored(db: &Db, id: &DocumentId) -> Result<(Automerge, Vec<String>), HubError> {
    let stored = db.load_doc(&id.to_string()).await?;
    let failed = |e: automerge::AutomergeError| HubError::Doc(*id, e.to_string());
    let doc = match &stored.snapshot {
        Some(bytes) => Automerge::load(bytes).map_err(failed)?,
        None => Automerge::new(),
    };
    // A snapshot may carry changes Automerge queued for want of their dependencies (saved by
    // an earlier version): they were never validated, so they go before anything can make them
    // ready. Every stored change row was validated; one that is still not ready goes too.
    let mut doc = without_queue(doc).map_err(failed)?;
    let mut hashes = Vec::with_capacity(stored.changes.len());
    for (hash, change) in stored.changes {
        doc.load_incremental(&change).map_err(failed)?;
        hashes.push(hash);
    }
    let mut doc = without_queue(doc).map_err(failed)?;
    doc.set_actor(server_actor());
    Ok((doc, hashes))
}

async fn fail_all(mut rx: mpsc::Receiver<DocCmd>, message: &str) {
    rx.close();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            DocCmd::Sync { conn, .. } => conn.send(Outbound::Error {
                doc: None,
                message: message.to_owned(),
            }),
            DocCmd::Local { done, .. } => {
                let _ = done.send(Err(message.to_owned()));
            }
            DocCmd::Ephemeral { .. } | DocCmd::Leave { .. } => {}
        }
    }
}

/// A document's actor state.
struct DocActor {
    hub: Hub,
    id: DocumentId,
    record: Option<DocRecord>,
    sync: DocSync,
    conns: HashMap<u64, Arc<Conn>>,
    /// What the unit index lists for this task: its entry while it is open, nothing once closed.
    listed: Option<IndexedTask>,
    /// The task's fixed fields, once read (they never change).
    meta: Option<TaskMeta>,
    /// The task's events, decoded, once something needed them; kept up to date with every
    /// accepted change, so validation and the fold never re-read the document.
    events: Option<Vec<Event>>,
    /// Hashes of the stored changes not yet folded into the stored snapshot.
    unsnapshotted: Vec<String>,
}

/// What one peer may send to one document: as many changes as validation takes at once.
fn sync_limits(limits: &Limits) -> SyncLimits {
    SyncLimits {
        max_changes: limits.max_changes,
        ..SyncLimits::default()
    }
}

/// How long a document that does not exist stays in memory once nobody is asking for it.
const UNKNOWN_IDLE: Duration = Duration::from_secs(1);

/// Stored changes of one document that trigger a compaction into a snapshot.
const COMPACT_AFTER: usize = 256;

/// What one batch did that must happen after its changes are committed.
#[derive(Default)]
struct Batch {
    changes: Vec<Change>,
    /// The events the changes added, stored with them.
    events: Vec<EventRow>,
    new_doc: Option<DocRecord>,
    /// Server changes: who waits for each, and how it went.
    local_done: Vec<(LocalDone, Result<(), String>)>,
    /// When the first message of each accepted run with new changes arrived.
    arrivals: Vec<Instant>,
    /// Refused changes: (sender, message), answered with an error after the commit.
    refusals: Vec<(Arc<Conn>, String)>,
    /// Security audit records: (sender, kind, detail), written after the commit.
    audits: Vec<(Arc<Conn>, &'static str, String)>,
}

impl Batch {
    /// Answer `conn` with an error and record the refusal in the security audit.
    fn refuse(&mut self, conn: Arc<Conn>, message: String, kind: &'static str) {
        self.audits.push((conn.clone(), kind, message.clone()));
        self.refusals.push((conn, message));
    }
}

impl DocActor {
    async fn start(hub: Hub, id: DocumentId) -> Result<DocActor, HubError> {
        let record = hub.shared.db.document(&id.to_string()).await?;
        let (doc, unsnapshotted) = match record {
            Some(_) => load_stored(&hub.shared.db, &id).await?,
            None => {
                let mut doc = Automerge::new();
                doc.set_actor(server_actor());
                (doc, Vec::new())
            }
        };
        let limits = sync_limits(&hub.shared.limits);
        let mut actor = DocActor {
            hub,
            id,
            record,
            sync: DocSync::with_limits(doc, limits),
            conns: HashMap::new(),
            listed: None,
            meta: None,
            events: None,
            unsnapshotted,
        };
        actor.listed = actor.index_entry();
        Ok(actor)
    }

    async fn run(mut self, mut rx: mpsc::Receiver<DocCmd>) {
        let cancel = self.hub.shared.cancel.clone();
        let idle = self.hub.shared.idle;
        loop {
            // Whatever has queued up, once at least one command is there.
            let mut cmds = Vec::with_capacity(BATCH);
            // A document that does not exist keeps no memory once nobody asks for it.
            let idle = if self.record.is_none() {
                UNKNOWN_IDLE
            } else {
                idle
            };
            let taken = tokio::select! {
                taken = rx.recv_many(&mut cmds, BATCH) => taken,
                () = tokio::time::sleep(idle), if self.conns.is_empty() => 0,
                () = cancel.cancelled() => 0,
            };
            if taken == 0 {
                break;
            }
            if let Err(e) = self.handle(cmds).await {
                tracing::error!(doc = %self.id, error = %e, "the document is dropped from memory");
                for conn in self.conns.values() {
                    conn.send(Outbound::Error {
                        doc: Some(self.id),
                        message: "the server could not store changes; sync again".to_owned(),
                    });
                }
                break;
            }
        }
        // Nothing is pending here: every batch was committed before it was acknowledged.
        rx.close();
        fail_all(rx, "the document was closed; sync again").await;
    }

    async fn handle(&mut self, cmds: Vec<DocCmd>) -> Result<(), HubError> {
        let mut batch = Batch::default();
        let mut cmds = cmds.into_iter().peekable();
        while let Some(cmd) = cmds.next() {
            match cmd {
                DocCmd::Sync {
                    conn,
                    data,
                    request,
                    arrived,
                } => {
                    // A peer's messages that queued up one after the other are taken as one.
                    let mut run = vec![data];
                    while let Some(DocCmd::Sync { conn: next, .. }) = cmds.peek()
                        && next.id == conn.id
                    {
                        if let Some(DocCmd::Sync { data, .. }) = cmds.next() {
                            run.push(data);
                        }
                    }
                    if self.receive(&mut batch, conn, &run, request) {
                        batch.arrivals.push(arrived);
                    }
                }
                DocCmd::Ephemeral { conn, relay } => self.relay(&conn, relay),
                DocCmd::Leave { conn } => {
                    if let Some(conn) = self.conns.remove(&conn) {
                        self.sync.remove_peer(&conn.key());
                    }
                }
                DocCmd::Local { change, done } => {
                    let known = self.event_ids();
                    let (result, changes) = self.sync.update(change);
                    // The server wrote something itself: read the events afresh.
                    self.events = None;
                    if !changes.is_empty() {
                        batch.events.extend(self.events_not_in(&known));
                    }
                    batch.changes.extend(changes);
                    if let Err(e) = &result {
                        tracing::error!(doc = %self.id, error = %e, "a server change failed");
                    }
                    batch.local_done.push((done, result));
                }
            }
        }
        self.commit(&mut batch).await?;
        for (conn, message) in batch.refusals {
            conn.send(Outbound::Error {
                doc: Some(self.id),
                message,
            });
        }
        let doc = self.id.to_string();
        for (conn, kind, detail) in batch.audits {
            self.hub
                .shared
                .auditor
                .session_record(&conn.session, kind, Some(&doc), detail)
                .await;
        }
        for (done, result) in batch.local_done {
            let _ = done.send(result);
        }
        if self.sync.is_poisoned() {
            return Err(HubError::Doc(
                self.id,
                "refused changes could not be taken back out of the document".to_owned(),
            ));
        }
        self.drop_unauthorized();
        let outgoing = self.sync.generate_all();
        tracing::debug!(doc = %self.id, changes = batch.changes.len(), messages = outgoing.len(), "batch");
        for (key, data) in outgoing {
            if let Some(conn) = key.parse().ok().and_then(|k: u64| self.conns.get(&k)) {
                conn.send(Outbound::Sync { doc: self.id, data });
            }
        }
        for arrived in batch.arrivals {
            self.hub.shared.ack_latency.record(arrived.elapsed());
        }
        Ok(())
    }

    /// Apply sync messages from `conn`, if it may see this document and their changes are valid.
    /// Returns whether they brought new changes that were accepted.
    fn receive(
        &mut self,
        batch: &mut Batch,
        conn: Arc<Conn>,
        data: &[Vec<u8>],
        request: bool,
    ) -> bool {
        match &self.record {
            Some(record) if !conn.session.may_see(&record.unit) => {
                // Say nothing about whether it exists.
                conn.send(Outbound::Unavailable { doc: self.id });
                let detail = format!("requested a document of unit {}", record.unit);
                batch.audits.push((conn, "document_outside_units", detail));
                return false;
            }
            None if request && batch.new_doc.is_none() => {
                // A peer asking for a document nobody has created.
                conn.send(Outbound::Unavailable { doc: self.id });
                return false;
            }
            _ => {}
        }
        let key = conn.key();
        let templates = &self.hub.shared.templates;
        let limits = &self.hub.shared.limits;
        let now = now_ms();
        let known_unit = self.record.as_ref().map(|r| r.unit.clone());
        let session = &conn.session;
        let known = Known {
            meta: self.meta.as_ref(),
            events: self.events.as_deref(),
        };
        let mut accepted = Vec::new();
        let result = self.sync.receive_all(&key, data, |applied| {
            // The roles the sender holds on this document's unit, and only those.
            let unit = known_unit
                .clone()
                .or_else(|| read_meta_of(applied.after).ok().map(|meta| meta.unit));
            let auth = session.auth_context_on(unit.as_ref());
            accepted = validate_applied(applied, known, &auth, templates, now, limits)?;
            Ok(())
        });
        if result.is_ok() {
            let doc = self.id.to_string();
            batch
                .events
                .extend(accepted.iter().map(|e| EventRow::of(&doc, e)));
            if let Some(events) = self.events.as_mut() {
                events.append(&mut accepted);
            }
        }
        let existed = self.record.is_some() || batch.new_doc.is_some();
        let brought = match result {
            Ok(received) if received.changes.is_empty() => {
                if !existed {
                    // Nothing here and nothing brought: answered as a `request` when the peer
                    // has nothing either, else asked for what it has.
                    if self.sync.their_heads(&key).is_none_or(<[_]>::is_empty) {
                        conn.send(Outbound::Unavailable { doc: self.id });
                    } else if let Some(data) = self.sync.generate(&key) {
                        conn.send(Outbound::Sync { doc: self.id, data });
                    }
                }
                false
            }
            Ok(received) => {
                if !existed {
                    match self.new_task_record() {
                        Some(new) => batch.new_doc = Some(new),
                        None => {
                            tracing::error!(doc = %self.id, "an accepted new document is not a task");
                        }
                    }
                }
                let brought = batch.new_doc.is_some() || self.record.is_some();
                if brought {
                    batch.changes.extend(received.changes);
                }
                brought
            }
            Err(ReceiveError::Refused(refusal)) => {
                let kind = match refusal {
                    ValidationError::Impersonation { .. } => "forged_event",
                    ValidationError::UnitNotAllowed { .. } => "document_outside_units",
                    _ => "invalid_change",
                };
                tracing::warn!(doc = %self.id, user = %conn.session.user, device = %conn.session.device, %refusal, "refused a change");
                batch.refuse(conn.clone(), format!("refused: {refusal}"), kind);
                false
            }
            Err(ReceiveError::Blocked) => false,
            Err(e @ ReceiveError::TooManyChanges { .. }) => {
                batch.refuse(conn.clone(), format!("refused: {e}"), "too_many_changes");
                false
            }
            Err(e @ (ReceiveError::Malformed(_) | ReceiveError::Apply(_))) => {
                batch.refuse(conn.clone(), format!("refused: {e}"), "malformed_sync");
                false
            }
        };
        if self.record.is_some() || batch.new_doc.is_some() {
            self.conns.entry(conn.id).or_insert(conn);
        } else {
            // A document that does not exist keeps nothing of the peer, so one created later
            // under this id is never sent to it unasked.
            self.sync.remove_peer(&key);
        }
        brought
    }

    /// Stop syncing with every connection that may no longer see this document's unit (its
    /// grants changed since it joined): nothing of the document is sent to it any more.
    fn drop_unauthorized(&mut self) {
        let Some(unit) = self.record.as_ref().map(|r| r.unit.clone()) else {
            return;
        };
        let gone: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, conn)| !conn.session.may_see(&unit))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(conn) = self.conns.remove(&id) {
                self.sync.remove_peer(&conn.key());
                conn.send(Outbound::Unavailable { doc: self.id });
            }
        }
    }

    /// The record of a task document created by the changes just accepted.
    fn new_task_record(&self) -> Option<DocRecord> {
        let meta = read_meta_of(self.sync.doc()).ok()?;
        Some(DocRecord {
            id: self.id.to_string(),
            kind: DocKind::Task,
            unit: meta.unit.clone(),
            template: Some((
                meta.template.id.to_string(),
                i64::from(meta.template.version),
            )),
            created_at: now_ms(),
        })
    }

    fn relay(&mut self, from: &Conn, relay: EphemeralRelay) {
        // Only a peer already syncing this document may speak on it, and only to those who may
        // still see it.
        self.drop_unauthorized();
        if !self.conns.contains_key(&from.id) {
            return;
        }
        for (id, conn) in &self.conns {
            if *id != from.id {
                conn.send(Outbound::Ephemeral(Box::new(relay.clone())));
            }
        }
    }

    /// Commit the batch's changes with what follows from them: their events, and the entry the
    /// unit index owes this task if it opened, changed what its listing shows, or closed.
    async fn commit(&mut self, batch: &mut Batch) -> Result<(), HubError> {
        if batch.changes.is_empty() {
            return Ok(());
        }
        let doc_id = self.id.to_string();
        let new_docs: Vec<DocRecord> = batch.new_doc.iter().cloned().collect();
        let rows: Vec<StoredChange> = batch
            .changes
            .iter()
            .map(|c| StoredChange::of(&doc_id, c))
            .collect();
        let hashes: Vec<String> = rows.iter().map(|r| r.hash.clone()).collect();
        let task_unit = self
            .record
            .as_ref()
            .or(batch.new_doc.as_ref())
            .filter(|r| r.kind == DocKind::Task)
            .map(|r| r.unit.to_string());
        let listing = task_unit.as_ref().map(|_| self.index_entry());
        let index = match (&task_unit, &listing) {
            (Some(unit), Some(entry)) if *entry != self.listed => {
                Some(index_row(&doc_id, unit, entry.as_ref())?)
            }
            _ => None,
        };
        let owes_index = index.is_some();
        let derived = Derived {
            events: std::mem::take(&mut batch.events),
            index,
        };
        self.hub
            .shared
            .committer
            .commit(new_docs, rows, derived)
            .await
            .map_err(|e| HubError::Doc(self.id, e.to_string()))?;
        self.unsnapshotted.extend(hashes);
        if self.unsnapshotted.len() >= COMPACT_AFTER {
            self.compact().await;
        }
        if let Some(record) = batch.new_doc.take() {
            self.record = Some(record);
        }
        if let Some(entry) = listing {
            self.listed = entry;
        }
        if owes_index {
            self.hub.shared.index_owed.notify_one();
        }
        Ok(())
    }

    /// The ids of the events the task holds now.
    fn event_ids(&mut self) -> HashSet<String> {
        self.task_events()
            .iter()
            .map(|e| e.id.to_string())
            .collect()
    }

    /// The task's events whose ids are not in `known`, as rows to store.
    fn events_not_in(&mut self, known: &HashSet<String>) -> Vec<EventRow> {
        let doc = self.id.to_string();
        self.task_events()
            .iter()
            .filter(|e| !known.contains(e.id.as_str()))
            .map(|e| EventRow::of(&doc, e))
            .collect()
    }

    /// The task's fixed fields and events, read once and kept (none for a unit index).
    fn task(&mut self) -> Option<(&TaskMeta, &[Event])> {
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

    /// Fold the stored changes into one snapshot. A failure costs only space: the changes stay.
    async fn compact(&mut self) {
        let doc = self.sync.doc();
        let heads: Vec<String> = doc.get_heads().iter().map(ToString::to_string).collect();
        let result = self
            .hub
            .shared
            .db
            .compact(
                &self.id.to_string(),
                &doc.save(),
                &heads.join(","),
                &self.unsnapshotted,
                now_ms(),
            )
            .await;
        match result {
            Ok(()) => self.unsnapshotted.clear(),
            Err(e) => tracing::warn!(doc = %self.id, error = %e, "compaction failed"),
        }
    }

    /// The index entry this document should have: a task that is still open, as it stands.
    fn index_entry(&mut self) -> Option<IndexedTask> {
        let hub = self.hub.clone();
        let id = self.id;
        let (meta, events) = self.task()?;
        let template = hub.shared.templates.get(&meta.template)?;
        let state = fold(template, meta, events);
        (!state.status.is_closed()).then(|| IndexedTask {
            acuity: state.acuity,
            ..IndexedTask::of(&id, meta)
        })
    }
}
