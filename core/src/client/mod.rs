//! The device client: the I/O shell around the sans-IO core, for apps to embed.
//!
//! - [`store`]: one encrypted file holding every document the device has.
//! - `state`: the documents, their sync states and the changes the server has not yet
//!   acknowledged, changed only under one lock and always stored before they are seen.
//! - `connection`: one WebSocket to the server at a time, reconnected with backoff and jitter.
//! - [`clock`]: the server's time, which the client stamps its events in.
//! - `rest`: who is signed in and the server's templates, from the REST API.
//! - `tasks`: the task-shaped front door — my worklist by risk, a task view with what I may do,
//!   and one method per action.
//!
//! A [`Client`] works offline: what it holds can be read and changed without a connection, and
//! local changes go to the server when it is reachable again. Its [`SyncStatus`] says whether it
//! is connected and how many local changes wait for the server's acknowledgment (heads that
//! include them). A revoked device is told to wipe: the client deletes its store and reports
//! [`Connection::Wiped`].
//!
//! Before it writes, the client runs the server's whole validation, with the person's roles and
//! the templates as the server last told them, so an honest app never sends a change the server
//! refuses. If the server refuses one anyway (a role taken away while the phone was offline,
//! say), the client takes it out of its copy, writes the device's later events again where the
//! rules still allow them, reports a [`Refused`], and the document syncs on.
//!
//! ```no_run
//! # async fn demo(index: baton_core::sync::DocumentId) -> Result<(), baton_core::client::ClientError> {
//! use baton_core::client::{Client, ClientConfig};
//! let client = Client::open(ClientConfig::new(
//!     "wss://baton.example.org/sync",
//!     "baton.store",
//!     [0; 32], // from the Keychain / Keystore
//! ))
//! .await?;
//! client.sign_in("eyJ…").await?;
//! let worklist = client.worklist(index).await?;
//! for task in worklist.tasks.values() {
//!     println!("{} ({})", task.label, task.acuity);
//! }
//! # Ok(()) }
//! ```

pub mod clock;
mod connection;
mod rest;
mod state;
pub mod store;
mod tasks;

pub use clock::{SystemClock, WallClock};
pub use rest::{Me, MeUnit};
pub use tasks::OpenTask;

use crate::doc::{AppendError, Author, DocError, NewTask};
use crate::event::{Event, EventBody};
use crate::ids::EventId;
use crate::index::{self, IndexError, UnitIndex};
use crate::sync::DocumentId;
use crate::template::{TemplateRef, TemplateRegistry};
use crate::time::Millis;
use crate::validate::ValidationError;
use automerge::{Automerge, ChangeHash};
use state::{Outgoing, State};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;
use store::{Store, StoreError};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long [`Client::open_doc`] waits for the server to send a document.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Notifications a [`Subscription`] can have waiting before more are coalesced.
const LISTENER_QUEUE: usize = 16;
/// Refusals a [`Client::refusals`] receiver can have waiting before it lags.
const REFUSAL_QUEUE: usize = 64;

/// Where the client syncs and keeps its data.
#[derive(Clone)]
pub struct ClientConfig {
    /// The server's WebSocket endpoint, e.g. `wss://baton.example.org/sync`. The REST API is
    /// at the same host (`https://baton.example.org/api/v1/…`).
    pub sync_url: String,
    /// The store file.
    pub store_path: PathBuf,
    /// The key the store is encrypted with, kept in the platform's Keychain/Keystore.
    pub store_key: [u8; 32],
    /// The device's wall clock ([`SystemClock`] unless a test says otherwise). Events are
    /// stamped in the server's time; this clock is read between handshakes and kept beside
    /// each event as the device's time.
    pub clock: Arc<dyn WallClock>,
}

impl ClientConfig {
    pub fn new(
        sync_url: impl Into<String>,
        store_path: impl Into<PathBuf>,
        store_key: [u8; 32],
    ) -> Self {
        ClientConfig {
            sync_url: sync_url.into(),
            store_path: store_path.into(),
            store_key,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("sync_url", &self.sync_url)
            .field("store_path", &self.store_path)
            .field("store_key", &"<redacted>")
            .field("clock", &self.clock)
            .finish()
    }
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("document {doc} in the store cannot be read: {problem}")]
    Document { doc: DocumentId, problem: String },
    #[error("document {0} is not on this device")]
    NotHeld(DocumentId),
    #[error("the server has no document {0} for this device")]
    Unavailable(DocumentId),
    #[error("document {0} is not on this device and the server cannot be reached")]
    Offline(DocumentId),
    #[error("the server did not send document {0} in time")]
    Timeout(DocumentId),
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The change would not pass the server's validation.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("the server's REST API: {0}")]
    Api(String),
    #[error("not signed in")]
    SignedOut,
    #[error(transparent)]
    Doc(#[from] DocError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("the server sent what this client cannot read: {0}")]
    Protocol(String),
    #[error("this device's data was wiped")]
    Wiped,
}

/// The connection, as the app shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Not connected (no token yet, or waiting to reconnect).
    Offline,
    Connecting,
    Online,
    /// The server refused the token; a new one ([`Client::set_token`]) is needed.
    Refused(String),
    /// The device was revoked (or wiped locally): everything it held is gone.
    Wiped,
}

/// The client's sync status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncStatus {
    pub connection: Connection,
    /// Local changes the server has not yet acknowledged.
    pub unacknowledged: usize,
    /// The last error the server reported (a refused change, say).
    pub last_error: Option<String>,
}

impl SyncStatus {
    /// Online, with every local change acknowledged.
    pub fn is_synced(&self) -> bool {
        self.connection == Connection::Online && self.unacknowledged == 0
    }
}

/// Where a change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// This device.
    Local,
    /// The server (another device, or the server's own escalations).
    Remote,
    /// The server refused changes of this device's: they were taken out of the copy (or, when
    /// the task itself was refused, the whole document is gone from the device).
    Refused,
}

/// The server refused changes this device sent, and they were taken out of its copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub doc: DocumentId,
    /// The events that are no longer on the device: the refused one, and any of this device's
    /// later events that the task's rules no longer allow without it.
    pub events: Vec<EventId>,
    /// What the server said.
    pub message: String,
}

/// A document changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocChanged {
    pub doc: DocumentId,
    /// The document's heads after the change.
    pub heads: Vec<ChangeHash>,
    pub origin: Origin,
}

/// Changes to one document, until dropped.
#[derive(Debug)]
pub struct Subscription {
    doc: DocumentId,
    listener: u64,
    rx: mpsc::Receiver<DocChanged>,
    shared: Weak<Shared>,
}

impl Subscription {
    pub fn doc(&self) -> DocumentId {
        self.doc
    }

    /// The next change; `None` once the client is closed or wiped.
    pub async fn recv(&mut self) -> Option<DocChanged> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.state().unlisten(self.listener);
        }
    }
}

/// Where and as whom the connection syncs.
#[derive(Clone, PartialEq, Eq)]
struct Settings {
    sync_url: String,
    token: Option<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("sync_url", &self.sync_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What the client's handle and its connection task share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    status: watch::Sender<SyncStatus>,
    settings: watch::Sender<Settings>,
    /// Something new to send: the connection generates messages for every document.
    outbox: Notify,
    /// A document arrived, changed or was found unavailable.
    changed: Notify,
    refusals: broadcast::Sender<Refused>,
    wall: Arc<dyn WallClock>,
}

impl Shared {
    /// The state. Its lock is never held across an `await`; a panic while it was held leaves
    /// nothing half-written to the store, so the state is used on.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_connection(&self, connection: Connection) {
        self.status.send_if_modified(|s| {
            let wiped = s.connection == Connection::Wiped;
            let modified = !wiped && s.connection != connection;
            if modified {
                s.connection = connection;
            }
            modified
        });
    }

    /// Publish the count of unacknowledged changes.
    fn refresh(&self, state: &State) {
        let pending = state.pending();
        self.status.send_if_modified(|s| {
            let modified = s.unacknowledged != pending;
            s.unacknowledged = pending;
            modified
        });
    }

    fn report(&self, error: String) {
        self.status.send_modify(|s| s.last_error = Some(error));
    }

    /// A connection is up: every document starts syncing from scratch.
    fn connected(&self) -> Vec<Outgoing> {
        let messages = {
            let mut state = self.state();
            state.reset_sync();
            state.outgoing()
        };
        self.set_connection(Connection::Online);
        messages
    }

    fn outgoing(&self) -> Vec<Outgoing> {
        self.state().outgoing()
    }

    fn receive(&self, doc: DocumentId, data: &[u8]) -> Option<Outgoing> {
        let reply = {
            let mut state = self.state();
            let reply = state.receive(doc, data);
            self.refresh(&state);
            reply
        };
        self.changed.notify_waiters();
        reply.unwrap_or_else(|e| {
            self.report(e.to_string());
            None
        })
    }

    fn unavailable(&self, doc: DocumentId) {
        self.state().unavailable(doc);
        self.changed.notify_waiters();
    }

    fn server_error(&self, message: String) {
        self.report(message);
    }

    /// The server refused changes of `doc`: take them out and report it. Returns the first
    /// message of the fresh sync.
    fn refused(&self, doc: DocumentId, message: String) -> Vec<Outgoing> {
        let (report, messages) = {
            let mut state = self.state();
            let report = state.refused(doc, &message);
            self.refresh(&state);
            (report, state.outgoing())
        };
        self.report(message);
        match report {
            Ok(report) => {
                let _ = self.refusals.send(report);
            }
            Err(e) => self.report(e.to_string()),
        }
        self.changed.notify_waiters();
        messages
    }

    /// The server's time now, as well as the client knows it, and the device's.
    fn now(&self) -> (Millis, Millis) {
        let device = self.wall.now_ms();
        (self.state().time.now(device), device)
    }

    /// The handshake told the server's time.
    fn server_time(&self, server: Millis, round_trip: Duration, received: tokio::time::Instant) {
        let device = self.wall.now_ms();
        let mut state = self.state();
        let offset = state
            .time
            .observe(server, round_trip, received.into_std(), device);
        if let Err(e) = state.set_clock_offset(offset) {
            drop(state);
            self.report(e.to_string());
        }
    }

    /// Ask the server who is signed in and for its templates, and keep the answers.
    async fn fetch_identity(&self, sync_url: &str, token: &str) -> Result<Me, ClientError> {
        let base = rest::api_base(sync_url);
        let me = rest::me(&base, token).await?;
        let templates = rest::templates_with_json(&base, token).await?;
        self.state().set_identity(me.clone(), Some(templates))?;
        Ok(me)
    }

    /// Delete everything the device holds and say so.
    fn wipe(&self) {
        let wiped = self.state().wipe();
        self.status.send_modify(|s| {
            s.connection = Connection::Wiped;
            s.unacknowledged = 0;
            if let Err(e) = wiped {
                s.last_error = Some(e.to_string());
            }
        });
        self.changed.notify_waiters();
    }
}

/// A device's connection to Baton and everything it holds. Dropping it stops the connection.
///
/// Store writes are small and synchronous (appended and `fsync`ed on the calling task before a
/// change is visible); the client expects a multi-threaded Tokio runtime.
#[derive(Debug)]
pub struct Client {
    shared: Arc<Shared>,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl Client {
    /// Open the store (creating it if needed) and start connecting, with the token kept from the
    /// last sign-in if there is one. Must be called within a Tokio runtime.
    pub async fn open(config: ClientConfig) -> Result<Client, ClientError> {
        let store = Store::open(&config.store_path, &config.store_key)?;
        let state = State::load(store)?;
        let token = state.token();
        let status = SyncStatus {
            connection: if token.is_some() {
                Connection::Connecting
            } else {
                Connection::Offline
            },
            unacknowledged: state.pending(),
            last_error: None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            status: watch::Sender::new(status),
            settings: watch::Sender::new(Settings {
                sync_url: config.sync_url,
                token,
            }),
            outbox: Notify::new(),
            changed: Notify::new(),
            refusals: broadcast::Sender::new(REFUSAL_QUEUE),
            wall: config.clock,
        });
        let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
        tasks.spawn(connection::run(shared.clone(), cancel.clone()));
        tasks.close();
        Ok(Client {
            shared,
            tasks,
            cancel,
        })
    }

    /// Sign in (or refresh the token): kept in the store, used from the next connection on.
    pub fn set_token(&self, token: impl Into<String>) -> Result<(), ClientError> {
        let token = token.into();
        {
            let mut state = self.live()?;
            state.set_token(&token)?;
        }
        self.shared.set_connection(Connection::Connecting);
        self.shared.settings.send_modify(|s| s.token = Some(token));
        Ok(())
    }

    /// Sign in: keep the token, then ask the server who it belongs to ([`Me`]) and for the
    /// templates, which the device keeps for working offline. Needs the server.
    pub async fn sign_in(&self, token: impl Into<String>) -> Result<Me, ClientError> {
        let token = token.into();
        self.set_token(token.clone())?;
        let url = self.shared.settings.borrow().sync_url.clone();
        self.shared.fetch_identity(&url, &token).await
    }

    /// Who is signed in, as the server last said (kept on the device).
    pub fn me(&self) -> Option<Me> {
        self.shared.state().me.clone()
    }

    /// The templates the device validates against: the server's, once it said.
    pub fn templates(&self) -> Arc<TemplateRegistry> {
        self.shared.state().templates.clone()
    }

    /// The server's time now, as well as the device knows it.
    pub fn server_now(&self) -> Millis {
        self.shared.now().0
    }

    /// Changes of this device's that the server refused, as they are taken out.
    pub fn refusals(&self) -> broadcast::Receiver<Refused> {
        self.shared.refusals.subscribe()
    }

    /// Sync with another server address: a connection to the old one is closed, and the new one
    /// is tried at once.
    pub fn set_sync_url(&self, url: impl Into<String>) {
        let url = url.into();
        self.shared.settings.send_modify(|s| s.sync_url = url);
    }

    /// The sync status, as it changes.
    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.shared.status.subscribe()
    }

    /// Changes to `doc` from now on, until the subscription is dropped.
    pub fn subscribe(&self, doc: DocumentId) -> Subscription {
        let (tx, rx) = mpsc::channel(LISTENER_QUEUE);
        let listener = self.shared.state().listen(doc, tx);
        Subscription {
            doc,
            listener,
            rx,
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// How many subscriptions are live.
    pub fn listener_count(&self) -> usize {
        self.shared.state().listener_count()
    }

    /// The documents on this device.
    pub fn documents(&self) -> Vec<DocumentId> {
        let state = self.shared.state();
        state
            .docs
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(id, _)| *id)
            .collect()
    }

    /// A document as this device holds it, without asking the server.
    pub fn local_doc(&self, id: DocumentId) -> Option<Automerge> {
        self.shared.state().doc(&id).cloned()
    }

    /// A document: from the device if it holds it, otherwise from the server (`None` if the
    /// server has no such document for this device). Fails when it is not held and the server
    /// cannot be reached.
    pub async fn open_doc(&self, id: DocumentId) -> Result<Option<Automerge>, ClientError> {
        if let Some(doc) = self.live()?.doc(&id) {
            return Ok(Some(doc.clone()));
        }
        self.fetch(&[id])?;
        let deadline = tokio::time::Instant::now() + FETCH_TIMEOUT;
        let mut status = self.status();
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.live()?;
                let connection = status.borrow_and_update().connection.clone();
                match state.docs.get(&id) {
                    Some(r) if r.unavailable => {
                        state.forget_if_empty(&id);
                        return Ok(None);
                    }
                    Some(r) if !r.is_empty() && r.in_sync() => return Ok(Some(r.doc.clone())),
                    Some(r) if !r.is_empty() && !connected(&connection) => {
                        // What arrived before the connection ended.
                        return Ok(Some(r.doc.clone()));
                    }
                    _ if !connected(&connection) => return Err(ClientError::Offline(id)),
                    _ => {}
                }
            }
            tokio::select! {
                () = changed => {}
                _ = status.changed() => {}
                () = tokio::time::sleep_until(deadline) => return Err(ClientError::Timeout(id)),
            }
        }
    }

    /// Wait (at most `timeout`) until the device is online, the server has every local change,
    /// and every document on the device is as the server holds it: what a one-shot reader (a
    /// widget, a script) waits for before it trusts what it reads. False if that did not happen
    /// in time.
    pub async fn caught_up(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut status = self.status();
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let online = status.borrow_and_update().is_synced();
                let state = self.shared.state();
                if state.wiped {
                    return false;
                }
                let all_in_sync = state
                    .docs
                    .values()
                    .filter(|r| !r.is_empty() && !r.unavailable)
                    .all(state::Replica::in_sync);
                if online && all_in_sync {
                    return true;
                }
            }
            tokio::select! {
                () = changed => {}
                _ = status.changed() => {}
                () = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// A unit's worklist, read from its index document; every task it lists is fetched too, so
    /// the whole worklist stays on the device.
    pub async fn worklist(&self, index_id: DocumentId) -> Result<UnitIndex, ClientError> {
        let doc = self
            .open_doc(index_id)
            .await?
            .ok_or(ClientError::Unavailable(index_id))?;
        let worklist = index::read(&doc)?;
        let tasks: Vec<DocumentId> = worklist
            .tasks
            .keys()
            .filter_map(|id| id.parse().ok())
            .collect();
        self.fetch(&tasks)?;
        Ok(worklist)
    }

    /// Append an event to a task, following the task's own template. The server's validation
    /// runs first; the change is stored on the device, then sent to the server (now, or when it
    /// is reachable again).
    pub async fn append(
        &self,
        task: DocumentId,
        author: &Author,
        body: EventBody,
    ) -> Result<Event, ClientError> {
        if self.live()?.doc(&task).is_none() {
            self.open_doc(task)
                .await?
                .ok_or(ClientError::Unavailable(task))?;
        }
        let (now, device) = self.shared.now();
        let event = {
            let mut state = self.live()?;
            let event = state.append(task, author, now, device, body)?;
            self.shared.refresh(&state);
            event
        };
        self.wrote();
        Ok(event)
    }

    /// Open a new task from `template` on this device; it reaches the server with the next sync.
    pub fn create_task(
        &self,
        template: &TemplateRef,
        new: NewTask,
        author: &Author,
    ) -> Result<(DocumentId, Event), ClientError> {
        let (now, _) = self.shared.now();
        let created = {
            let mut state = self.live()?;
            let created = state.create(template, new, author, now)?;
            self.shared.refresh(&state);
            created
        };
        self.wrote();
        Ok(created)
    }

    /// A local change was stored: wake whoever waits and send it.
    fn wrote(&self) {
        self.shared.changed.notify_waiters();
        self.shared.outbox.notify_one();
    }

    /// Delete everything on this device (sign-out) and stop syncing.
    pub fn wipe(&self) {
        self.shared.wipe();
        self.cancel.cancel();
    }

    /// Stop syncing and wait until the connection is closed and the store released.
    pub async fn close(self) {
        self.stop().await;
    }

    /// [`Client::close`] through a shared handle: syncing stops for good, and the store is
    /// released once the last handle is dropped.
    pub async fn stop(&self) {
        self.cancel.cancel();
        self.tasks.wait().await;
    }

    /// The state, unless the device was wiped.
    fn live(&self) -> Result<MutexGuard<'_, State>, ClientError> {
        let state = self.shared.state();
        if state.wiped {
            return Err(ClientError::Wiped);
        }
        Ok(state)
    }

    /// Ask the server for the documents among `ids` that this device does not hold.
    fn fetch(&self, ids: &[DocumentId]) -> Result<(), ClientError> {
        let mut state = self.live()?;
        for id in ids {
            if state.doc(id).is_none() {
                state.want(*id);
            }
        }
        drop(state);
        self.shared.outbox.notify_one();
        Ok(())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Whether the connection is up or coming up.
fn connected(connection: &Connection) -> bool {
    matches!(connection, Connection::Connecting | Connection::Online)
}
