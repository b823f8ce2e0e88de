//! The WebSocket sync endpoint: `GET /sync`, the automerge-repo protocol over binary frames.
//!
//! The token comes at the upgrade: `Authorization: Bearer …`, or for browsers, which cannot set
//! headers on a WebSocket, as the subprotocol `baton.bearer.<token>` offered beside `baton` (the
//! one the server picks), or `?token=…`. Neither is ever logged. After `join`/`peer`, each
//! `sync`/`request` goes to its document's actor ([`crate::hub`]); replies come back through a
//! bounded queue, and a connection that cannot keep up is dropped rather than allowed to grow.

use crate::AppState;
use crate::auth::{AuthError, Session};
use crate::config::ConnectionLimits;
use crate::db::DbError;
use crate::http::{ApiError, PeerAddr};
use crate::hub::{Conn, Outbound};
use crate::now_ms;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use baton_core::sync::actor::Ephemeral;
use baton_core::sync::handshake::{Handshake, accept_join};
use baton_core::sync::{DocumentId, Message, PeerId, PeerMetadata, REVOKED_ERROR};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// WebSocket close codes Baton uses (4000–4999 are for applications).
pub mod close {
    /// The token expired; connect again with a fresh one.
    pub const TOKEN_EXPIRED: u16 = 4401;
    /// The device was revoked: wipe local data.
    pub const DEVICE_REVOKED: u16 = 4403;
    /// The connection broke the protocol (no `join`, a refused handshake, no pongs).
    pub const POLICY: u16 = 1008;
    /// The server is shutting down, or the connection did not keep up with what it was sent.
    pub const GOING_AWAY: u16 = 1001;
}

#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// The subprotocol a browser offers with its token, and the one the server answers with.
pub const SUBPROTOCOL: &str = "baton";
/// What precedes the token in the subprotocol that carries it.
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "baton.bearer.";

/// The token at the upgrade: the `Authorization` header first, then the subprotocol, then
/// `?token=`.
pub(crate) fn bearer(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization =
        header(axum::http::header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "));
    let subprotocol = header(axum::http::header::SEC_WEBSOCKET_PROTOCOL).and_then(|offered| {
        offered
            .split(',')
            .find_map(|p| p.trim().strip_prefix(TOKEN_SUBPROTOCOL_PREFIX))
    });
    authorization.or(subprotocol).or(query).map(str::to_owned)
}

pub(crate) async fn upgrade(
    State(app): State<AppState>,
    headers: HeaderMap,
    PeerAddr(from): PeerAddr,
    Query(query): Query<TokenQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let token = bearer(&headers, query.token.as_deref());
    let session = match app.session(token, from).await {
        Ok(session) => Arc::new(session),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let limits = app.config.limits.clone();
    let registration = match Connections::register(
        &app.connections,
        session.clone(),
        &limits,
        &app.cancel,
    ) {
        Ok(registration) => registration,
        Err(limit) => {
            tracing::info!(user = %session.user, device = %session.device, %limit, "refused a connection");
            return ApiError::from(limit).into_response();
        }
    };
    // Registered before anything is read. A revocation, a disabled user or a membership change
    // from now on reaches this connection through the registry; one made since the session was
    // established is seen by this second look at the records.
    let seq = app.connections.next_seq();
    if let Err(e) = session.recheck(&app.db, seq).await {
        if !matches!(e, AuthError::Db(_)) {
            let detail = format!("{}: {e}; while connecting", e.code());
            app.auditor
                .session_record(&session, "refused_token", None, detail)
                .await;
        }
        return ApiError::from(e).into_response();
    }
    ws.protocols([SUBPROTOCOL])
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        // Small buffers that grow with large messages: idle connections stay cheap.
        .read_buffer_size(limits.buffer_bytes)
        .write_buffer_size(limits.buffer_bytes)
        .on_upgrade(move |socket| async move {
            // Every sync connection is on the security audit (throttled per device and address
            // like every record a caller can provoke): who, from where, and for how long.
            let session = registration.tracked.session.clone();
            let auditor = app.auditor.clone();
            let opened = std::time::Instant::now();
            auditor
                .session_record(
                    &session,
                    "sync_connected",
                    None,
                    "opened a sync connection".into(),
                )
                .await;
            connection(app, registration, socket).await;
            let detail = format!(
                "closed a sync connection after {} s",
                opened.elapsed().as_secs()
            );
            auditor
                .session_record(&session, "sync_closed", None, detail)
                .await;
        })
}

struct Live {
    app: AppState,
    conn: Arc<Conn>,
    tracked: Arc<Tracked>,
    client: PeerId,
}

/// Tell a peer its device was revoked, and close.
async fn revoked<S>(sink: &mut S, server: &PeerId, client: Option<PeerId>)
where
    S: futures_util::Sink<WsMessage> + Unpin,
{
    let revoked = Message::Error {
        sender_id: server.clone(),
        target_id: client,
        message: REVOKED_ERROR.to_owned(),
    };
    let _ = sink.send(frame(&revoked)).await;
    let _ = sink
        .send(close_frame(close::DEVICE_REVOKED, "device revoked: wipe"))
        .await;
}

async fn connection(app: AppState, registration: Registration, socket: WebSocket) {
    let tracked = registration.tracked.clone();
    let session = tracked.session.clone();
    let limits = app.config.limits.clone();
    let (out_tx, mut out_rx) = mpsc::channel(limits.outbound_queue);
    let kick = tracked.kick.clone();
    let wipe = tracked.wipe.clone();
    let id = tracked.id;
    let conn = Arc::new(Conn {
        id,
        session: session.clone(),
        out: out_tx,
        kick: kick.clone(),
    });
    let (mut sink, mut stream) = socket.split();
    let ping_every = Duration::from_millis(limits.ping_interval.as_millis());
    let join_timeout = Duration::from_millis(limits.join_timeout.as_millis());
    let server = app.peer_id.clone();

    // Handshake: the first frame must be `join`. A connection revoked or kicked since it was
    // registered reads nothing.
    let first = tokio::select! {
        biased;
        () = wipe.cancelled() => {
            revoked(&mut sink, &server, None).await;
            return;
        }
        () = kick.cancelled() => {
            let _ = sink.send(close_frame(close::GOING_AWAY, "closing")).await;
            return;
        }
        first = tokio::time::timeout(join_timeout, stream.next()) => first,
    };
    let first = match first {
        Ok(Some(Ok(WsMessage::Binary(bytes)))) => Message::decode(&bytes).ok(),
        _ => None,
    };
    let Some(first) = first else {
        let _ = sink
            .send(frame(&Message::Error {
                sender_id: server.clone(),
                target_id: None,
                message: "the first message must be a binary `join` frame".to_owned(),
            }))
            .await;
        let _ = sink.send(close_frame(close::POLICY, "no join")).await;
        return;
    };
    let client = match accept_join(&server, &PeerMetadata::default(), app.clock.now(), first) {
        Handshake::Joined { peer, reply, .. } => {
            if sink.send(frame(&reply)).await.is_err() {
                return;
            }
            peer
        }
        Handshake::Refused { reply } => {
            let _ = sink.send(frame(&reply)).await;
            let _ = sink
                .send(close_frame(close::POLICY, "handshake refused"))
                .await;
            return;
        }
    };
    tracing::info!(conn = conn.id, user = %session.user, device = %session.device, peer = %client, "connected");

    // Writer: drains the outbound queue and pings.
    let writer_kick = kick.clone();
    let writer_wipe = wipe.clone();
    let writer_tracked = tracked.clone();
    let (server_w, client_w) = (server.clone(), client.clone());
    let last_heard = Arc::new(AtomicU64::new(now_ms().max(0) as u64));
    let heard = last_heard.clone();
    let expires_in =
        Duration::from_secs(u64::try_from(session.expires_at - now_ms() / 1000).unwrap_or(0));
    let writer = async move {
        let mut ping = tokio::time::interval(ping_every);
        ping.tick().await;
        let expiry = tokio::time::sleep(expires_in);
        tokio::pin!(expiry);
        let reason = loop {
            tokio::select! {
                biased;
                () = writer_wipe.cancelled() => {
                    revoked(&mut sink, &server_w, Some(client_w.clone())).await;
                    return;
                }
                message = out_rx.recv() => {
                    let Some(message) = message else { break close_frame(close::GOING_AWAY, "closing") };
                    // Nothing of a document this connection no longer has open (its unit was
                    // taken from the user) leaves, whatever was queued before.
                    if !writer_tracked.delivers(&message) {
                        continue;
                    }
                    let wire = to_wire(&server_w, &client_w, message);
                    if sink.send(frame(&wire)).await.is_err() {
                        return;
                    }
                }
                _ = ping.tick() => {
                    let silent = (now_ms().max(0) as u64).saturating_sub(heard.load(Ordering::Relaxed));
                    if silent > 2 * ping_every.as_millis() as u64 {
                        break close_frame(close::POLICY, "ping timeout");
                    }
                    if sink.send(WsMessage::Ping(Bytes::new())).await.is_err() {
                        return;
                    }
                }
                () = &mut expiry => break close_frame(close::TOKEN_EXPIRED, "token expired"),
                () = writer_kick.cancelled() => break close_frame(close::GOING_AWAY, "closing"),
            }
        };
        // What is still queued is durable already; the peer gets it when it syncs again.
        let _ = sink.send(reason).await;
    };

    let mut live = Live {
        app: app.clone(),
        conn: conn.clone(),
        tracked: tracked.clone(),
        client,
    };
    let reader = async {
        loop {
            let next = tokio::select! {
                biased;
                () = kick.cancelled() => break,
                () = wipe.cancelled() => break,
                next = stream.next() => next,
            };
            let Some(Ok(message)) = next else { break };
            last_heard.store(now_ms().max(0) as u64, Ordering::Relaxed);
            match message {
                WsMessage::Binary(bytes) => live.frame(&bytes).await,
                WsMessage::Text(_) => live.error(
                    None,
                    "text frames are not part of the protocol; send binary CBOR",
                ),
                WsMessage::Close(_) => break,
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            }
        }
        kick.cancel();
    };
    tokio::join!(reader, writer);
    for doc in tracked.close_all() {
        app.hub.leave(doc, conn.id).await;
    }
    drop(registration);
    tracing::info!(conn = conn.id, user = %session.user, "disconnected");
}

impl Live {
    fn error(&self, doc: Option<DocumentId>, message: &str) {
        self.conn.send(Outbound::Error {
            doc,
            message: message.to_owned(),
        });
    }

    async fn frame(&mut self, bytes: &[u8]) {
        let message = match Message::decode(bytes) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(conn = self.conn.id, error = %e, "malformed frame");
                self.error(None, &e.to_string());
                return;
            }
        };
        // Frames that claim another sender are dropped, as the stock server does (it stops
        // gossip loops of ephemeral messages).
        if message.sender_id().is_some_and(|s| s != self.client) {
            return;
        }
        match message {
            Message::Sync {
                document_id, data, ..
            } => self.sync(document_id, data, false).await,
            Message::Request {
                document_id, data, ..
            } => self.sync(document_id, data, true).await,
            Message::Ephemeral {
                document_id,
                data,
                count,
                session_id,
                sender_id,
                ..
            } => {
                if self.tracked.has_doc(&document_id) {
                    let relay = Ephemeral {
                        sender: sender_id,
                        session_id,
                        count,
                        data,
                    };
                    self.app
                        .hub
                        .ephemeral(document_id, self.conn.id, relay)
                        .await;
                }
            }
            Message::Join { .. } => self.error(None, "already joined"),
            Message::DocUnavailable { .. }
            | Message::Error { .. }
            | Message::Peer { .. }
            | Message::Other { .. } => {}
        }
    }

    async fn sync(&mut self, doc: DocumentId, data: Vec<u8>, request: bool) {
        if let Err(limit) = self.tracked.open_doc(doc, &self.app.config.limits) {
            self.error(Some(doc), &limit.to_string());
            return;
        }
        self.app
            .hub
            .sync(doc, self.conn.clone(), data, request)
            .await;
    }
}

fn to_wire(server: &PeerId, client: &PeerId, message: Outbound) -> Message {
    match message {
        Outbound::Sync { doc, data } => Message::Sync {
            sender_id: server.clone(),
            target_id: client.clone(),
            document_id: doc,
            data,
        },
        Outbound::Unavailable { doc } => Message::DocUnavailable {
            sender_id: server.clone(),
            target_id: client.clone(),
            document_id: doc,
        },
        Outbound::Error { doc, message } => Message::Error {
            sender_id: server.clone(),
            target_id: Some(client.clone()),
            message: match doc {
                Some(doc) => format!("{doc}: {message}"),
                None => message,
            },
        },
        Outbound::Ephemeral { doc, relay } => Message::Ephemeral {
            sender_id: relay.sender.clone(),
            target_id: client.clone(),
            document_id: doc,
            data: relay.data.clone(),
            count: relay.count,
            session_id: relay.session_id.clone(),
        },
    }
}

fn frame(message: &Message) -> WsMessage {
    WsMessage::Binary(Bytes::from(message.encode()))
}

fn close_frame(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// One connection as [`Connections`] tracks it, shared with the connection itself.
#[derive(Debug)]
pub(crate) struct Tracked {
    id: u64,
    session: Arc<Session>,
    kick: CancellationToken,
    wipe: CancellationToken,
    /// The documents the connection has open.
    docs: Mutex<HashSet<DocumentId>>,
    /// Documents open across all of the user's connections.
    user_docs: Arc<AtomicUsize>,
}

/// A limit a connection or its user reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "limit max_connections_per_device ({0}): this device has as many sync connections open as it may"
    )]
    ConnectionsPerDevice(usize),
    #[error(
        "limit max_connections_per_user ({0}): this user has as many sync connections open as they may"
    )]
    ConnectionsPerUser(usize),
    #[error(
        "limit max_connections_per_address ({0}): this address has as many sync connections open as it may"
    )]
    ConnectionsPerAddress(usize),
    #[error("limit max_documents ({0}): too many documents open on this connection")]
    DocumentsPerConnection(usize),
    #[error(
        "limit max_documents_per_user ({0}): too many documents open across this user's connections"
    )]
    DocumentsPerUser(usize),
}

impl LimitError {
    /// The stable code this limit goes by.
    pub fn code(&self) -> &'static str {
        match self {
            LimitError::ConnectionsPerDevice(_) => "too_many_connections_device",
            LimitError::ConnectionsPerUser(_) => "too_many_connections_user",
            LimitError::ConnectionsPerAddress(_) => "too_many_connections_address",
            LimitError::DocumentsPerConnection(_) => "too_many_documents_connection",
            LimitError::DocumentsPerUser(_) => "too_many_documents_user",
        }
    }
}

impl Tracked {
    fn has_doc(&self, doc: &DocumentId) -> bool {
        self.docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(doc)
    }

    /// Count `doc` as open on this connection, unless that would break a limit.
    fn open_doc(&self, doc: DocumentId, limits: &ConnectionLimits) -> Result<(), LimitError> {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        if docs.contains(&doc) {
            return Ok(());
        }
        if docs.len() >= limits.max_documents {
            return Err(LimitError::DocumentsPerConnection(limits.max_documents));
        }
        if self.user_docs.fetch_add(1, Ordering::SeqCst) >= limits.max_documents_per_user {
            self.user_docs.fetch_sub(1, Ordering::SeqCst);
            return Err(LimitError::DocumentsPerUser(limits.max_documents_per_user));
        }
        docs.insert(doc);
        Ok(())
    }

    /// Take `doc` off this connection. Returns whether it was open.
    fn withdraw(&self, doc: &DocumentId) -> bool {
        let removed = self
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(doc);
        if removed {
            self.user_docs.fetch_sub(1, Ordering::SeqCst);
        }
        removed
    }

    /// Every document open, taken off the connection (it is closing).
    fn close_all(&self) -> Vec<DocumentId> {
        let docs: Vec<DocumentId> = self
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        self.user_docs.fetch_sub(docs.len(), Ordering::SeqCst);
        docs
    }

    fn open_docs(&self) -> Vec<DocumentId> {
        self.docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Whether `message` may still go out: nothing about a document no longer open here.
    fn delivers(&self, message: &Outbound) -> bool {
        match message {
            Outbound::Sync { doc, .. } => self.has_doc(doc),
            Outbound::Ephemeral { doc, .. } => self.has_doc(doc),
            Outbound::Unavailable { .. } | Outbound::Error { .. } => true,
        }
    }
}

/// A connection's place in [`Connections`], from the upgrade until the connection ends: dropping
/// it (or the upgrade that never completed) takes the connection off the registry.
#[derive(Debug)]
pub(crate) struct Registration {
    connections: Arc<Connections>,
    tracked: Arc<Tracked>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.remove(self.tracked.id);
    }
}

#[derive(Debug)]
struct UserEntry {
    connections: usize,
    docs: Arc<AtomicUsize>,
}

#[derive(Debug, Default)]
struct Registry {
    conns: HashMap<u64, Arc<Tracked>>,
    per_device: HashMap<String, usize>,
    per_address: HashMap<IpAddr, usize>,
    per_user: HashMap<String, UserEntry>,
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// Live connections, from their upgrade on, so revoking a device, disabling a user or changing
/// a user's memberships reaches them at once; and the caps on connections per device, user and
/// address.
#[derive(Debug, Default)]
pub struct Connections {
    registry: Mutex<Registry>,
    /// Orders grant updates: see [`Session::update_grants`].
    seq: AtomicU64,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a connection of `session`, unless a cap is reached. `stop` closes it along with
    /// everything else (shutdown).
    fn register(
        this: &Arc<Connections>,
        session: Arc<Session>,
        limits: &ConnectionLimits,
        stop: &CancellationToken,
    ) -> Result<Registration, LimitError> {
        let mut registry = this.lock();
        let device = session.device.to_string();
        let user = session.user.to_string();
        if registry.per_device.get(&device).copied().unwrap_or(0)
            >= limits.max_connections_per_device
        {
            return Err(LimitError::ConnectionsPerDevice(
                limits.max_connections_per_device,
            ));
        }
        if registry.per_user.get(&user).map_or(0, |u| u.connections)
            >= limits.max_connections_per_user
        {
            return Err(LimitError::ConnectionsPerUser(
                limits.max_connections_per_user,
            ));
        }
        if let Some(address) = session.address
            && registry.per_address.get(&address).copied().unwrap_or(0)
                >= limits.max_connections_per_address
        {
            return Err(LimitError::ConnectionsPerAddress(
                limits.max_connections_per_address,
            ));
        }
        *registry.per_device.entry(device).or_default() += 1;
        if let Some(address) = session.address {
            *registry.per_address.entry(address).or_default() += 1;
        }
        let entry = registry.per_user.entry(user).or_insert_with(|| UserEntry {
            connections: 0,
            docs: Arc::default(),
        });
        entry.connections += 1;
        let tracked = Arc::new(Tracked {
            id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            user_docs: entry.docs.clone(),
            session,
            kick: stop.child_token(),
            wipe: CancellationToken::new(),
            docs: Mutex::default(),
        });
        registry.conns.insert(tracked.id, tracked.clone());
        Ok(Registration {
            connections: this.clone(),
            tracked,
        })
    }

    /// Take a connection off the registry (if it is still on it).
    fn remove(&self, id: u64) -> Option<Arc<Tracked>> {
        let mut registry = self.lock();
        let tracked = registry.conns.remove(&id)?;
        decrement(
            &mut registry.per_device,
            &tracked.session.device.to_string(),
        );
        if let Some(address) = tracked.session.address {
            decrement(&mut registry.per_address, &address);
        }
        let user = tracked.session.user.to_string();
        if let Some(entry) = registry.per_user.get_mut(&user) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 {
                registry.per_user.remove(&user);
            }
        }
        Some(tracked)
    }

    /// Take off the registry, and return, the connections `which` picks.
    fn take(&self, which: impl Fn(&Tracked) -> bool) -> Vec<Arc<Tracked>> {
        let ids: Vec<u64> = self
            .lock()
            .conns
            .values()
            .filter(|t| which(t))
            .map(|t| t.id)
            .collect();
        ids.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    /// Close every connection of `device`; with `wipe`, tell it to wipe its local data first.
    /// Returns how many connections there were.
    pub fn kick_device(&self, device: &str, wipe: bool) -> usize {
        let list = self.take(|t| t.session.device.as_str() == device);
        for tracked in &list {
            if wipe {
                tracked.wipe.cancel();
            } else {
                tracked.kick.cancel();
            }
        }
        list.len()
    }

    /// Close every connection of `user`, on any device. Returns how many there were.
    pub fn kick_user(&self, user: &str) -> usize {
        let list = self.take(|t| t.session.user.as_str() == user);
        for tracked in &list {
            tracked.kick.cancel();
        }
        list.len()
    }

    /// How many connections are open.
    pub fn count(&self) -> usize {
        self.lock().conns.len()
    }

    /// A number to order grant updates by, taken before their records are read.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn of_user(&self, user: &str) -> Vec<Arc<Tracked>> {
        self.lock()
            .conns
            .values()
            .filter(|t| t.session.user.as_str() == user)
            .cloned()
            .collect()
    }
}

/// Bring the grants of every live session of `user` in line with the membership records, at
/// once: a unit taken away stops reaching the user's connections (their documents on it are
/// closed, nothing more of them is sent, and the next sync for one is answered
/// `doc-unavailable`); a unit granted is open to their next sync. Returns how many connections
/// were updated.
pub async fn follow_memberships(app: &AppState, user: &str) -> Result<usize, DbError> {
    let seq = app.connections.next_seq();
    let records = app.db.memberships(user).await?;
    let live = app.connections.of_user(user);
    for tracked in &live {
        let lost = tracked.session.update_grants(seq, records.clone());
        if lost.is_empty() {
            continue;
        }
        let open: Vec<String> = tracked
            .open_docs()
            .iter()
            .map(ToString::to_string)
            .collect();
        for (id, unit) in app.db.document_units(&open).await? {
            if !lost.contains(&unit) {
                continue;
            }
            if let Ok(doc) = id.parse::<DocumentId>()
                && tracked.withdraw(&doc)
            {
                app.hub.leave(doc, tracked.id).await;
            }
        }
    }
    Ok(live.len())
}
