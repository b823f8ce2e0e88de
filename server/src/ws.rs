//! The WebSocket sync endpoint: `GET /sync`, the automerge-repo protocol over binary frames.
//!
//! The token comes at the upgrade: `Authorization: Bearer …`, or for browsers, which cannot set
//! headers on a WebSocket, as the subprotocol `baton.bearer.<token>` offered beside `baton` (the
//! one the server picks), or `?token=…`. Neither is ever logged. After `join`/`peer`, each
//! `sync`/`request` goes to its document's actor ([`crate::hub`]); replies come back through a
//! bounded queue, and a connection that cannot keep up is dropped rather than allowed to grow.

use crate::AppState;
use crate::api::PeerAddr;
use crate::auth::Session;
use crate::hub::{Conn, EphemeralRelay, Outbound};
use crate::now_ms;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use baton_core::sync::handshake::{Handshake, accept_join};
use baton_core::sync::{DocumentId, Message, PeerId, PeerMetadata, REVOKED_ERROR};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
        Ok(session) => session,
        Err(e) => return crate::api::ApiError::from(e).into_response(),
    };
    let limits = app.config.limits.clone();
    ws.protocols([SUBPROTOCOL])
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        // Small buffers that grow with large messages: idle connections stay cheap.
        .read_buffer_size(limits.buffer_bytes)
        .write_buffer_size(limits.buffer_bytes)
        .on_upgrade(move |socket| async move {
            connection(app, Arc::new(session), socket).await;
        })
}

struct Live {
    app: AppState,
    conn: Arc<Conn>,
    client: PeerId,
    docs: HashSet<DocumentId>,
}

async fn connection(app: AppState, session: Arc<Session>, socket: WebSocket) {
    let limits = app.config.limits.clone();
    let (out_tx, mut out_rx) = mpsc::channel(limits.outbound_queue);
    let kick = app.cancel.child_token();
    let wipe = CancellationToken::new();
    let id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let device = session.device.to_string();
    app.connections.register(
        &device,
        Tracked {
            id,
            user: session.user.to_string(),
            kick: kick.clone(),
            wipe: wipe.clone(),
        },
    );
    let conn = Arc::new(Conn {
        id,
        session: session.clone(),
        out: out_tx,
        kick: kick.clone(),
    });
    let (mut sink, mut stream) = socket.split();
    let ping_every = Duration::from_millis(limits.ping_interval.as_millis());
    let join_timeout = Duration::from_millis(limits.join_timeout.as_millis());

    // Handshake: the first frame must be `join`.
    let first = tokio::time::timeout(join_timeout, stream.next()).await;
    let first = match first {
        Ok(Some(Ok(WsMessage::Binary(bytes)))) => Message::decode(&bytes).ok(),
        _ => None,
    };
    let server = app.peer_id.clone();
    let Some(first) = first else {
        let _ = sink
            .send(frame(&Message::Error {
                sender_id: server.clone(),
                target_id: None,
                message: "the first message must be a binary `join` frame".to_owned(),
            }))
            .await;
        let _ = sink.send(close_frame(close::POLICY, "no join")).await;
        app.connections.unregister(&device, id);
        return;
    };
    let client = match accept_join(&server, &PeerMetadata::default(), first) {
        Handshake::Joined { peer, reply, .. } => {
            if sink.send(frame(&reply)).await.is_err() {
                app.connections.unregister(&device, id);
                return;
            }
            peer
        }
        Handshake::Refused { reply } => {
            let _ = sink.send(frame(&reply)).await;
            let _ = sink
                .send(close_frame(close::POLICY, "handshake refused"))
                .await;
            app.connections.unregister(&device, id);
            return;
        }
    };
    tracing::info!(conn = conn.id, user = %session.user, device = %session.device, peer = %client, "connected");

    // Writer: drains the outbound queue and pings.
    let writer_kick = kick.clone();
    let writer_wipe = wipe.clone();
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
                    let revoked = Message::Error {
                        sender_id: server_w.clone(),
                        target_id: Some(client_w.clone()),
                        message: REVOKED_ERROR.to_owned(),
                    };
                    let _ = sink.send(frame(&revoked)).await;
                    let _ = sink.send(close_frame(close::DEVICE_REVOKED, "device revoked: wipe")).await;
                    return;
                }
                message = out_rx.recv() => {
                    let Some(message) = message else { break close_frame(close::GOING_AWAY, "closing") };
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
        client,
        docs: HashSet::new(),
    };
    let reader = async {
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                () = kick.cancelled() => break,
                () = wipe.cancelled() => break,
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
    for doc in &live.docs {
        app.hub.leave(*doc, conn.id).await;
    }
    app.connections.unregister(&device, id);
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
                if self.docs.contains(&document_id) {
                    let relay = EphemeralRelay {
                        doc: document_id,
                        sender: sender_id,
                        session_id,
                        count,
                        data,
                    };
                    self.app.hub.ephemeral(self.conn.clone(), relay).await;
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
        if !self.docs.contains(&doc) {
            if self.docs.len() >= self.app.config.limits.max_documents {
                self.error(Some(doc), "too many documents open on this connection");
                return;
            }
            self.docs.insert(doc);
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
        Outbound::Ephemeral(relay) => {
            let relay = *relay;
            Message::Ephemeral {
                sender_id: relay.sender,
                target_id: client.clone(),
                document_id: relay.doc,
                data: relay.data,
                count: relay.count,
                session_id: relay.session_id,
            }
        }
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

/// One connection as [`Connections`] tracks it.
#[derive(Debug, Clone)]
struct Tracked {
    id: u64,
    user: String,
    kick: CancellationToken,
    wipe: CancellationToken,
}

/// Live connections by device, so revoking a device or disabling a user cuts them off at once.
#[derive(Debug, Default)]
pub struct Connections {
    by_device: std::sync::Mutex<std::collections::HashMap<String, Vec<Tracked>>>,
}

impl Connections {
    fn register(&self, device: &str, tracked: Tracked) {
        self.by_device
            .lock()
            .expect("connections lock")
            .entry(device.to_owned())
            .or_default()
            .push(tracked);
    }

    fn unregister(&self, device: &str, id: u64) {
        let mut map = self.by_device.lock().expect("connections lock");
        if let Some(list) = map.get_mut(device) {
            list.retain(|t| t.id != id);
            if list.is_empty() {
                map.remove(device);
            }
        }
    }

    /// Close every connection of `device`; with `wipe`, tell it to wipe its local data first.
    /// Returns how many connections there were.
    pub fn kick_device(&self, device: &str, wipe: bool) -> usize {
        let list = self
            .by_device
            .lock()
            .expect("connections lock")
            .remove(device)
            .unwrap_or_default();
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
        let mut map = self.by_device.lock().expect("connections lock");
        let mut closed = 0;
        for list in map.values_mut() {
            list.retain(|tracked| {
                let theirs = tracked.user == user;
                if theirs {
                    tracked.kick.cancel();
                    closed += 1;
                }
                !theirs
            });
        }
        map.retain(|_, list| !list.is_empty());
        closed
    }

    /// How many connections are open.
    pub fn count(&self) -> usize {
        self.by_device
            .lock()
            .expect("connections lock")
            .values()
            .map(Vec::len)
            .sum()
    }
}
