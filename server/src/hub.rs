//! Documents in memory: one task per document that someone is syncing, running the core's
//! [`DocActor`] and executing what it asks for.
//!
//! The actor (sans-IO, in `baton_core::sync::actor`) decides; this loop does the I/O: it takes
//! whatever commands have queued up for the document, hands them to the actor as one batch,
//! stores the [`Commit`] it returns (changes, events, the owed index entry, the timer and the
//! task's summary in one transaction, through the group committer), reports the outcome, and
//! only then delivers the
//! messages, audit records and replies that follow. No peer is ever told about heads that are
//! not durable.
//!
//! When no peer has synced a document for `idle_document`, its task ends and the document
//! leaves memory: memory follows the working set, not the number of stored documents.

use crate::audit::Auditor;
use crate::auth::Session;
use crate::commit::Committer;
use crate::db::{
    Db, DbError, Derived, DocRecord, DueTimer, EventRow, IndexRow, OwedIndexEntry, StoredChange,
    SummaryRow, TimerRow, TriggerRow, Written,
};
use crate::metrics::{self, Figures};
use crate::notify::Notifier;
use crate::{WorkflowClock, now_ms};
use automerge::{ActorId, Automerge};
use baton_core::ids::UnitId;
use baton_core::index::{self, IndexedTask, RosterEntry};
use baton_core::notice::{Notice, name_covering};
use baton_core::policy::coverage::Schedule;
use baton_core::summary::TaskSummary;
use baton_core::sync::DocumentId;
use baton_core::sync::actor::{
    Commit, DocActor, Effects, Ephemeral, Input, LocalChange, Outgoing, Peer, Record, Settings,
    Stored, TimerChange, new_task_commit, open_stored,
};
use baton_core::template::TemplateRef;
use baton_core::validate::{AuthContext, Limits};
use baton_core::{TaskDoc, TemplateRegistry};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// An ephemeral message passed on unchanged (original sender, session and count), shared
    /// by every connection it goes to.
    Ephemeral {
        doc: DocumentId,
        relay: Arc<Ephemeral>,
    },
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
}

impl Peer for Conn {
    fn id(&self) -> u64 {
        self.id
    }

    fn may_see(&self, unit: &baton_core::ids::UnitId) -> bool {
        self.session.may_see(unit)
    }

    fn auth_on(&self, unit: Option<&baton_core::ids::UnitId>) -> AuthContext {
        self.session.auth_context_on(unit)
    }
}

/// Where the outcome of a server change goes.
type LocalDone = oneshot::Sender<Result<(), String>>;

enum DocCmd {
    /// Anything for the actor but a server change.
    Actor(Input<Conn>),
    /// A change the server itself makes, and who waits for its outcome.
    Local {
        change: LocalChange,
        done: LocalDone,
    },
    /// The document's timer fell due, and who waits for the outcome.
    Fire {
        now: i64,
        schedule: Arc<Schedule>,
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
    /// The task's rules refused an event the server was asked to append.
    #[error("{0}")]
    Refused(String),
}

struct Shared {
    db: Db,
    /// The security audit, throttled per device and address.
    auditor: Arc<Auditor>,
    committer: Committer,
    /// What every document actor shares: templates, limits, the server's Automerge actor.
    settings: Arc<Settings>,
    /// The workflow clock: what changes are judged at and timers fire by.
    clock: Arc<WorkflowClock>,
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
    /// Delivers the notifications commits write.
    notifier: Notifier,
    /// Escalations stored, by reason: time, acuity, manual.
    escalations: metrics::Labelled,
    /// Every task change stored, for live views (the unit board).
    changes: tokio::sync::broadcast::Sender<TaskChanged>,
}

/// A task whose change was stored: its unit and document id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskChanged {
    pub unit: String,
    pub doc: String,
}

/// Task changes a live view may fall behind by before it is told to read everything again.
const CHANGES_BUFFERED: usize = 1_024;

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

/// Tasks without a summary read per query while backfilling.
const SUMMARY_BACKFILL_BATCH: i64 = 256;
/// Owed index entries read per query while draining.
const INDEX_DRAIN_BATCH: i64 = 256;
/// How often the index writer retries owed entries it could not apply.
const INDEX_RETRY: Duration = Duration::from_secs(5);

/// Commands a document actor takes in one batch.
const BATCH: usize = 64;
/// Queued commands per document before senders wait.
const DOC_QUEUE: usize = 1_024;

/// How the hub's documents behave.
#[derive(Debug)]
pub struct HubOptions {
    pub templates: TemplateRegistry,
    /// How long a document nobody syncs stays in memory.
    pub idle: Duration,
    /// Whether new tasks are routed.
    pub routing: baton_core::policy::escalation::Routing,
}

impl Figures for Hub {
    fn register(&self, registry: &mut Registry) {
        metrics::register_seconds(
            registry,
            "baton_ack",
            "From a message with new changes arriving to the server's acknowledgment, committed, being sent",
            &self.shared.ack_latency,
        );
        self.shared.committer.stats().register(registry);
        // Every reason shows from the start, at 0.
        for reason in ["time", "acuity", "manual"] {
            metrics::labelled(&self.shared.escalations, "reason", reason);
        }
        registry.register(
            "baton_escalations",
            "Escalations stored, by reason (time: a deadline passed; acuity: a rise in acuity; manual: by hand)",
            self.shared.escalations.clone(),
        );
    }
}

impl Hub {
    pub fn new(
        db: Db,
        auditor: Arc<Auditor>,
        options: HubOptions,
        clock: Arc<WorkflowClock>,
        tracker: TaskTracker,
        cancel: CancellationToken,
        notifier: Notifier,
    ) -> Self {
        let HubOptions {
            templates,
            idle,
            routing,
        } = options;
        Hub {
            shared: Arc::new(Shared {
                committer: Committer::start(db.clone(), &tracker, cancel.clone()),
                db,
                auditor,
                settings: Arc::new(Settings {
                    templates: baton_core::template::SharedTemplates::new(templates),
                    limits: Limits::default(),
                    actor: server_actor(),
                    routing,
                }),
                clock,
                idle,
                docs: Mutex::new(HashMap::new()),
                tracker,
                cancel,
                loaded: AtomicU64::new(0),
                ack_latency: metrics::histogram(&metrics::LATENCY),
                index_owed: tokio::sync::Notify::new(),
                index_drain: tokio::sync::Mutex::new(()),
                notifier,
                escalations: Default::default(),
                changes: tokio::sync::broadcast::channel(CHANGES_BUFFERED).0,
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
    /// Entries for one unit that are owed together are applied in one change to its index.
    pub async fn drain_index_entries(&self) -> Result<usize, HubError> {
        let _one_at_a_time = self.shared.index_drain.lock().await;
        let mut applied = 0;
        loop {
            let owed = self.shared.db.owed_index_entries(INDEX_DRAIN_BATCH).await?;
            if owed.is_empty() {
                return Ok(applied);
            }
            let mut by_unit: BTreeMap<&str, Vec<&OwedIndexEntry>> = BTreeMap::new();
            for entry in &owed {
                by_unit.entry(entry.unit.as_str()).or_default().push(entry);
            }
            for (unit, entries) in by_unit {
                self.apply_index_entries(unit, &entries).await?;
                self.shared.db.index_entries_applied(&entries).await?;
                applied += entries.len();
            }
        }
    }

    /// Put each of `owed` (all of `unit`) on the unit's index or take it off, in one change.
    async fn apply_index_entries(
        &self,
        unit: &str,
        owed: &[&OwedIndexEntry],
    ) -> Result<(), HubError> {
        let mut listings = Vec::with_capacity(owed.len());
        for entry in owed {
            let id = parse_id(&entry.doc)?;
            let listing = match entry
                .entry
                .as_deref()
                .map(serde_json::from_str::<IndexedTask>)
            {
                None => None,
                Some(Ok(task)) => Some(task),
                Some(Err(e)) => {
                    // Written by this server from an `IndexedTask`; unreadable only if damaged.
                    tracing::error!(doc = %entry.doc, error = %e, "an owed index entry is unreadable; dropped");
                    continue;
                }
            };
            listings.push((id, listing));
        }
        let index = self.ensure_unit_index(unit).await?;
        self.change(index, move |doc| {
            for (id, listing) in &listings {
                match listing {
                    Some(task) => index::put_task(doc, id, task),
                    None => index::remove_task(doc, id),
                }
                .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await
    }

    /// The templates as they are now: every version of each.
    pub fn templates(&self) -> Arc<TemplateRegistry> {
        self.shared.settings.templates.current()
    }

    /// Add a template version, newer than every known version of its id; new tasks of the
    /// template start with it, running ones keep theirs.
    pub fn add_template(
        &self,
        template: baton_core::template::Template,
    ) -> Result<Arc<baton_core::template::Template>, baton_core::template::TemplateError> {
        self.shared.settings.templates.add(template)
    }

    /// Every task change stored from now on. A receiver that falls more than
    /// [`CHANGES_BUFFERED`] behind is told it lagged, and should read everything again.
    pub fn task_changes(&self) -> tokio::sync::broadcast::Receiver<TaskChanged> {
        self.shared.changes.subscribe()
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
        let input = Input::Sync {
            from: conn,
            data,
            request,
            arrived: Instant::now(),
        };
        self.send(doc, DocCmd::Actor(input)).await;
    }

    pub(crate) async fn ephemeral(&self, doc: DocumentId, from: u64, message: Ephemeral) {
        let input = Input::Ephemeral {
            from,
            message: Arc::new(message),
        };
        self.send(doc, DocCmd::Actor(input)).await;
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
            let _ = tx.send(DocCmd::Actor(Input::Leave { peer: conn })).await;
        }
    }

    /// Fire the task's timer at workflow time `now`: the event its due action writes, stored
    /// and sent to everyone syncing the task, with escalation targets resolved on `schedule`.
    /// Returns once the event is stored (or nothing was due any more).
    pub async fn fire(
        &self,
        doc: DocumentId,
        now: i64,
        schedule: Arc<Schedule>,
    ) -> Result<(), HubError> {
        let (done, wait) = oneshot::channel();
        self.send(
            doc,
            DocCmd::Fire {
                now,
                schedule,
                done,
            },
        )
        .await;
        match wait.await {
            Ok(result) => result.map_err(|e| HubError::Doc(doc, e)),
            Err(_) => Err(HubError::Closed),
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

    /// Append `body` to task `id` as `author` (an administrator, through the admin API), under
    /// the rules everyone's events pass, stamped on the workflow clock. Stored, with everything
    /// it implies, before this returns; a refusal says why.
    pub async fn append_as(
        &self,
        id: DocumentId,
        author: baton_core::Author,
        body: baton_core::EventBody,
    ) -> Result<baton_core::Event, HubError> {
        let settings = self.shared.settings.clone();
        let now = self.shared.clock.now();
        let appended = Arc::new(std::sync::Mutex::new(None));
        let slot = appended.clone();
        let result = self
            .change(id, move |doc| {
                let mut task = TaskDoc::from_automerge(doc.clone()).map_err(|e| e.to_string())?;
                let template = settings
                    .templates
                    .get(&task.meta().template)
                    .ok_or_else(|| format!("template {} is unknown", task.meta().template))?;
                task.set_actor(server_actor());
                let appended_event = task.append(
                    &template,
                    &author,
                    &mut baton_core::HlcClock::new(),
                    now,
                    body,
                );
                let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
                match appended_event {
                    Ok(event) => {
                        *doc = task.into_automerge();
                        *slot = Some(Ok(event));
                        Ok(())
                    }
                    Err(e) => {
                        *slot = Some(Err(e.to_string()));
                        Err(e.to_string())
                    }
                }
            })
            .await;
        let outcome = appended.lock().unwrap_or_else(|e| e.into_inner()).take();
        match (outcome, result) {
            (Some(Err(refusal)), _) => Err(HubError::Refused(refusal)),
            (_, Err(e)) => Err(e),
            (Some(Ok(event)), Ok(())) => Ok(event),
            (None, Ok(())) => Err(HubError::Doc(id, "nothing was appended".into())),
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

    /// Store a task the server opened itself (demo data) and list it on its unit's index: the
    /// task, its events, the owed index entry, its timer and its summary in one transaction,
    /// the entry applied before this returns.
    pub async fn import_task(&self, id: DocumentId, task: TaskDoc) -> Result<(), HubError> {
        self.open_task(id, task, None).await.map(|_| ())
    }

    /// Store a task the server opened itself, as [`Hub::import_task`] does, with the key of the
    /// trigger that asked for it taken in the same transaction. [`Written::KeyTaken`]: another
    /// task holds the key, and nothing of this one was stored.
    pub async fn open_task(
        &self,
        id: DocumentId,
        task: TaskDoc,
        trigger: Option<TriggerRow>,
    ) -> Result<Written, HubError> {
        let commit = new_task_commit(
            &id,
            &self.shared.settings.templates.current(),
            &task,
            self.shared.settings.routing,
        )
        .map_err(|e| HubError::Doc(id, e.to_string()))?;
        let written = store(self, id, commit, trigger).await?;
        if written == Written::Stored {
            self.drain_index_entries().await?;
        }
        Ok(written)
    }

    /// Write the summary of every task stored before summaries were kept (a database from an
    /// earlier version), from the task as stored. A task whose commit writes its summary
    /// meanwhile keeps that one. Returns how many were written.
    pub async fn backfill_summaries(&self) -> Result<usize, HubError> {
        let db = &self.shared.db;
        let mut after = String::new();
        let mut written = 0;
        loop {
            let missing = db
                .tasks_without_summary(&after, SUMMARY_BACKFILL_BATCH)
                .await?;
            let Some(last) = missing.last() else {
                return Ok(written);
            };
            after = last.clone();
            for doc in missing {
                let id = parse_id(&doc)?;
                let summary = self.load(&id).await?.and_then(|doc| {
                    let task = TaskDoc::from_automerge(doc).ok()?;
                    let template = self.shared.settings.templates.get(&task.meta().template)?;
                    let state = task.state(&template).ok()?;
                    Some(TaskSummary::of(&template, task.meta(), &state))
                });
                match summary {
                    Some(summary) => {
                        let row = summary_row(&doc, &summary)?;
                        db.insert_missing_summary(&row, now_ms()).await?;
                        written += 1;
                    }
                    None => {
                        tracing::warn!(%doc, "a stored task could not be read; it has no summary")
                    }
                }
            }
        }
    }

    /// A document's current bytes as stored (`None`: there is no such document).
    pub async fn load(&self, id: &DocumentId) -> Result<Option<Automerge>, HubError> {
        let Some((_, stored)) = self.shared.db.load_document(&id.to_string()).await? else {
            return Ok(None);
        };
        open_stored(
            stored.snapshot.as_deref(),
            stored.changes.iter().map(|(_, c)| c),
        )
        .map(Some)
        .map_err(|e| HubError::Doc(*id, e.to_string()))
    }

    async fn run_doc(self, id: DocumentId, rx: mpsc::Receiver<DocCmd>) {
        match self.open(id).await {
            Ok(actor) => DocLoop::new(self.clone(), actor).run(rx).await,
            Err(e) => {
                tracing::error!(doc = %id, error = %e, "a document could not be loaded");
                fail_all(rx, "the document could not be loaded").await;
            }
        }
        {
            // Unless a new actor for the document has taken its place meanwhile.
            let mut docs = self.shared.docs.lock().expect("hub lock");
            if docs.get(&id).is_some_and(mpsc::Sender::is_closed) {
                docs.remove(&id);
            }
        }
        self.shared.loaded.fetch_sub(1, Ordering::Relaxed);
    }

    /// Document `id`'s actor, with what storage holds of it.
    async fn open(&self, id: DocumentId) -> Result<DocActor<Conn>, HubError> {
        let stored = match self.shared.db.load_document(&id.to_string()).await? {
            Some((record, doc)) => Some(Stored {
                record: Record {
                    kind: record.kind,
                    unit: record.unit,
                    template: record.template.and_then(|(id, version)| {
                        Some(TemplateRef {
                            id: id.as_str().into(),
                            version: u32::try_from(version).ok()?,
                        })
                    }),
                },
                snapshot: doc.snapshot,
                changes: doc.changes,
            }),
            None => None,
        };
        DocActor::load(id, self.shared.settings.clone(), stored)
            .map_err(|e| HubError::Doc(id, e.to_string()))
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

/// A task's summary as stored.
fn summary_row(doc: &str, summary: &TaskSummary) -> Result<SummaryRow, HubError> {
    let status = serde_json::to_value(summary.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or_else(|| {
            HubError::Db(DbError::Sqlx(sqlx::Error::Encode(
                format!("status {:?} has no name", summary.status).into(),
            )))
        })?;
    Ok(SummaryRow {
        doc: doc.to_owned(),
        unit: summary.unit.to_string(),
        template_id: summary.template.id.to_string(),
        template_version: i64::from(summary.template.version),
        status,
        owner: summary.owner.as_ref().map(ToString::to_string),
        owner_role: summary.owner_role.to_string(),
        acuity: summary.acuity.clone(),
        escalation_level: i64::from(summary.escalation_level),
        next_due_at: summary.next_due_at,
        label: summary.label.clone(),
        measures: measure_row(&summary.measures),
    })
}

fn measure_row(m: &baton_core::summary::Measures) -> crate::db::MeasureRow {
    crate::db::MeasureRow {
        program: m.program.clone(),
        opened_at: m.opened_at,
        first_ack_at: m.first_ack_at,
        first_outreach_at: m.first_outreach_at,
        closed_at: m.closed_at,
        escalations_time: i64::from(m.escalations_time),
        escalations_acuity: i64::from(m.escalations_acuity),
        escalations_manual: i64::from(m.escalations_manual),
        interventions: i64::from(m.interventions),
        first_step_done_at: m.first_step_done_at,
        last_step_done_at: m.last_step_done_at,
    }
}

/// A task's timer as stored.
fn timer_row(doc: &str, timer: &TimerChange) -> Result<TimerRow, HubError> {
    let due = match timer {
        TimerChange::Set(due) => Some(DueTimer {
            due_at: due.at,
            event_id: due.event_id.to_string(),
            action: serde_json::to_string(&due.action)
                .map_err(|e| HubError::Db(DbError::Sqlx(sqlx::Error::Encode(e.into()))))?,
        }),
        TimerChange::Clear => None,
    };
    Ok(TimerRow {
        doc: doc.to_owned(),
        due,
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

async fn fail_all(mut rx: mpsc::Receiver<DocCmd>, message: &str) {
    rx.close();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            DocCmd::Actor(Input::Sync { from, .. }) => from.send(Outbound::Error {
                doc: None,
                message: message.to_owned(),
            }),
            DocCmd::Local { done, .. } | DocCmd::Fire { done, .. } => {
                let _ = done.send(Err(message.to_owned()));
            }
            DocCmd::Actor(_) => {}
        }
    }
}

/// How long a document that does not exist stays in memory once nobody is asking for it.
const UNKNOWN_IDLE: Duration = Duration::from_secs(1);
/// How long a document only the server has touched (a fired timer, a shift change, an index
/// entry) stays in memory: a burst of firings does not keep thousands of tasks loaded.
const SERVER_ONLY_IDLE: Duration = Duration::from_secs(10);

/// The loop around one document's actor: it feeds the actor and executes its effects.
struct DocLoop {
    hub: Hub,
    actor: DocActor<Conn>,
    /// Server changes waiting for their outcome, by ticket.
    waiting: HashMap<u64, LocalDone>,
    next_ticket: u64,
    /// Whether a peer has synced the document since it was loaded.
    synced: bool,
}

impl DocLoop {
    fn new(hub: Hub, actor: DocActor<Conn>) -> Self {
        DocLoop {
            hub,
            actor,
            waiting: HashMap::new(),
            next_ticket: 0,
            synced: false,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<DocCmd>) {
        let cancel = self.hub.shared.cancel.clone();
        loop {
            // A document that does not exist keeps no memory once nobody asks for it.
            let idle = match self.actor.record() {
                Some(_) if self.synced => self.hub.shared.idle,
                Some(_) => self.hub.shared.idle.min(SERVER_ONLY_IDLE),
                None => UNKNOWN_IDLE,
            };
            // Whatever has queued up, once at least one command is there.
            let mut cmds = Vec::with_capacity(BATCH);
            let taken = tokio::select! {
                taken = rx.recv_many(&mut cmds, BATCH) => taken,
                () = tokio::time::sleep(idle), if !self.actor.has_peers() => 0,
                () = cancel.cancelled() => 0,
            };
            if taken == 0 {
                break;
            }
            let inputs: Vec<Input<Conn>> = cmds.into_iter().map(|cmd| self.input(cmd)).collect();
            let effects = self.actor.handle(self.hub.shared.clock.now(), inputs);
            if let Err(reason) = self.execute(effects).await {
                tracing::error!(doc = %self.actor.id(), %reason, "the document is dropped from memory");
                break;
            }
        }
        // Nothing is pending here: every batch was committed before it was acknowledged.
        for (_, done) in self.waiting.drain() {
            let _ = done.send(Err("the document was closed".to_owned()));
        }
        fail_all(rx, "the document was closed; sync again").await;
    }

    fn input(&mut self, cmd: DocCmd) -> Input<Conn> {
        match cmd {
            DocCmd::Actor(input) => {
                self.synced |= matches!(input, Input::Sync { .. });
                input
            }
            DocCmd::Local { change, done } => Input::Local {
                ticket: self.ticket(done),
                change,
            },
            DocCmd::Fire {
                now,
                schedule,
                done,
            } => Input::Fire {
                ticket: self.ticket(done),
                now,
                schedule,
            },
        }
    }

    /// A ticket for an input whose outcome `done` waits for.
    fn ticket(&mut self, done: LocalDone) -> u64 {
        self.next_ticket += 1;
        self.waiting.insert(self.next_ticket, done);
        self.next_ticket
    }

    /// Do what the actor asks, storing each commit and reporting it before what depends on it.
    /// Fails with why the actor stopped, if it did.
    async fn execute(&mut self, mut effects: Effects<Conn>) -> Result<(), String> {
        loop {
            let commit = effects.commit.take();
            self.deliver(effects).await;
            let Some(commit) = commit else {
                return Ok(());
            };
            let result = store(&self.hub, self.actor.id(), commit, None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            if let Err(e) = &result {
                tracing::error!(doc = %self.actor.id(), error = %e, "changes could not be stored");
            }
            effects = self.actor.committed(self.hub.shared.clock.now(), result);
            if let Some(reason) = effects.stop.take() {
                self.deliver(effects).await;
                return Err(reason);
            }
        }
    }

    /// Everything in `effects` but its commit.
    async fn deliver(&mut self, effects: Effects<Conn>) {
        let doc = self.actor.id();
        // A refusal is on the record before the peer hears of it.
        let shared = &self.hub.shared;
        let doc_id = doc.to_string();
        for (conn, audit) in effects.audit {
            let session: &Session = &conn.session;
            tracing::warn!(%doc, user = %session.user, device = %session.device, kind = audit.kind, detail = %audit.detail, "refused");
            shared
                .auditor
                .session_record(session, audit.kind, Some(&doc_id), audit.detail)
                .await;
        }
        for (conn, message) in effects.send {
            conn.send(match message {
                Outgoing::Sync(data) => Outbound::Sync { doc, data },
                Outgoing::Unavailable => Outbound::Unavailable { doc },
                Outgoing::Error(message) => Outbound::Error {
                    doc: Some(doc),
                    message,
                },
                Outgoing::Ephemeral(relay) => Outbound::Ephemeral { doc, relay },
            });
        }
        for (ticket, result) in effects.replies {
            if let Err(e) = &result {
                tracing::error!(%doc, error = %e, "a server change failed");
            }
            if let Some(done) = self.waiting.remove(&ticket) {
                let _ = done.send(result);
            }
        }
        for arrived in effects.acknowledged {
            metrics::observe(&shared.ack_latency, arrived.elapsed());
        }
        if let Some(compaction) = effects.compact {
            let heads: Vec<String> = compaction.heads.iter().map(ToString::to_string).collect();
            let result = shared
                .db
                .compact(
                    &doc_id,
                    &compaction.snapshot,
                    &heads.join(","),
                    &compaction.folded,
                    now_ms(),
                )
                .await;
            match result {
                Ok(()) => self.actor.compacted(&compaction),
                // A failure costs only space: the changes stay stored.
                Err(e) => tracing::warn!(%doc, error = %e, "compaction failed"),
            }
        }
    }
}

/// Notices that name only a role (an exception, an escalation whose chain names a role) go to
/// whoever covers that role now, so a person is told and not only the webhook.
async fn named(hub: &Hub, mut notices: Vec<Notice>) -> Vec<Notice> {
    let now = hub.shared.clock.now();
    let units: BTreeSet<UnitId> = notices
        .iter()
        .filter(|n| n.user.is_none())
        .map(|n| n.unit.clone())
        .collect();
    for unit in units {
        match hub.shared.db.unit_schedule(unit.as_str()).await {
            Ok((_, schedule)) => name_covering(&mut notices, &schedule, now),
            Err(e) => {
                tracing::warn!(%unit, error = %e, "coverage unreadable; the notice names only its role");
            }
        }
    }
    notices
}

/// Store a commit: the document's record if new, its changes, their events, the index entry
/// they owe, the task's timer and summary, the deliveries its notices owe, and the key of the
/// trigger that opened it, in one transaction.
async fn store(
    hub: &Hub,
    id: DocumentId,
    commit: Commit,
    trigger: Option<TriggerRow>,
) -> Result<Written, HubError> {
    let doc_id = id.to_string();
    let new_docs: Vec<DocRecord> = commit
        .created
        .iter()
        .map(|record| DocRecord {
            id: doc_id.clone(),
            kind: record.kind,
            unit: record.unit.clone(),
            template: record
                .template
                .as_ref()
                .map(|t| (t.id.to_string(), i64::from(t.version))),
            created_at: now_ms(),
        })
        .collect();
    let rows = commit
        .changes
        .iter()
        .map(|c| StoredChange::of(&doc_id, c))
        .collect();
    let index = commit
        .index
        .as_ref()
        .map(|owed| index_row(&doc_id, owed.unit.as_str(), owed.listing.as_ref()))
        .transpose()?;
    let owes_index = index.is_some();
    let timer = commit
        .timer
        .as_ref()
        .map(|timer| timer_row(&doc_id, timer))
        .transpose()?;
    let notices = if commit.notices_named {
        commit.notices
    } else {
        named(hub, commit.notices).await
    };
    let notifications = crate::notify::outbound(&id, &notices, hub.shared.notifier.config());
    let notifies = !notifications.is_empty();
    let summary = commit
        .summary
        .as_ref()
        .map(|summary| summary_row(&doc_id, summary))
        .transpose()?;
    let heads = tips(&commit.changes);
    let derived = Derived {
        events: commit
            .events
            .iter()
            .map(|e| EventRow::of(&doc_id, e, &heads))
            .collect(),
        index,
        timer,
        notifications,
        summary,
        trigger,
    };
    let written = hub
        .shared
        .committer
        .commit(new_docs, rows, derived)
        .await
        .map_err(|e| HubError::Doc(id, e.to_string()))?;
    if owes_index && written == Written::Stored {
        hub.shared.index_owed.notify_one();
    }
    if notifies && written == Written::Stored {
        hub.shared.notifier.wake();
    }
    if written == Written::Stored {
        if let Some(summary) = &commit.summary {
            // Nobody listening is no error.
            let _ = hub.shared.changes.send(TaskChanged {
                unit: summary.unit.to_string(),
                doc: doc_id.clone(),
            });
        }
        for event in &commit.events {
            if let baton_core::EventBody::Escalated { reason, .. } = &event.body {
                let reason = match reason {
                    baton_core::event::EscalationReason::Time => "time",
                    baton_core::event::EscalationReason::Acuity => "acuity",
                    baton_core::event::EscalationReason::Manual => "manual",
                };
                metrics::labelled(&hub.shared.escalations, "reason", reason).inc();
            }
        }
    }
    Ok(written)
}

/// The heads of `changes` among themselves (those no other of them depends on), in hex,
/// comma-separated: the events they carry are in the document at these heads.
fn tips(changes: &[automerge::Change]) -> String {
    let deps: std::collections::HashSet<automerge::ChangeHash> = changes
        .iter()
        .flat_map(|c| c.deps().iter().copied())
        .collect();
    changes
        .iter()
        .map(automerge::Change::hash)
        .filter(|h| !deps.contains(h))
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
