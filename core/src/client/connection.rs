//! The connection to the server: connect with the token at the upgrade, `join`, sync every
//! document held, and reconnect with exponential backoff and jitter whenever the connection
//! ends, until the client is closed, refused for good, or wiped.

use super::{Connection, Settings, Shared};
use crate::sync::handshake::{ServerPeer, join, read_peer};
use crate::sync::{DocumentId, Message, PeerId, PeerMetadata, REVOKED_ERROR};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_util::sync::CancellationToken;

/// Close code: the token expired.
const TOKEN_EXPIRED: u16 = 4401;
/// Close code: the device was revoked and must wipe its data.
const DEVICE_REVOKED: u16 = 4403;
/// The first reconnect waits about this long; each failure doubles it.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Reconnects never wait longer than this.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// How long connecting and the handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the client pings, so an idle connection is known to be alive.
const PING_EVERY: Duration = Duration::from_secs(15);
/// A connection that has heard nothing (not even a ping) for this long is dead.
const SILENCE_LIMIT: Duration = Duration::from_secs(45);
/// The largest frame accepted from the server.
const MAX_FRAME: usize = 64 << 20;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How one connection ended.
#[derive(Debug)]
enum Ended {
    /// It dropped (or never came up): try again after a while.
    Dropped { was_online: bool },
    /// The server will not take this token: wait for a new one.
    Refused(String),
    /// The device was revoked.
    Wipe,
}

/// Keep the client connected until `cancel`.
pub(super) async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut settings = shared.settings.subscribe();
    let mut backoff = Backoff::default();
    loop {
        let current = settings.borrow_and_update().clone();
        let Some(token) = current.token.clone() else {
            shared.set_connection(Connection::Offline);
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = settings.changed() => if changed.is_err() { return } else { continue },
            }
        };
        shared.set_connection(Connection::Connecting);
        let ended = tokio::select! {
            () = cancel.cancelled() => return,
            ended = session(&shared, &current.sync_url, &token) => ended,
            // The server moved: connect there now. (A new token waits for the next connection.)
            () = moved(&mut settings, &current.sync_url) => continue,
        };
        let delay = match ended {
            Ended::Wipe => {
                shared.wipe();
                return;
            }
            Ended::Refused(reason) => {
                shared.set_connection(Connection::Refused(reason));
                backoff = Backoff::default();
                None
            }
            Ended::Dropped { was_online } => {
                shared.set_connection(Connection::Offline);
                if was_online {
                    backoff = Backoff::default();
                }
                Some(backoff.next())
            }
        };
        if *settings.borrow() != current {
            // New settings arrived during the connection: use them at once.
            continue;
        }
        // Wait out the backoff (or, when refused, for new settings); new settings cut it short.
        let wait = async {
            match delay {
                Some(delay) => tokio::time::sleep(delay).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = wait => {}
            changed = settings.changed() => if changed.is_err() { return },
        }
    }
}

/// Resolves once the sync URL is no longer `url`.
async fn moved(settings: &mut watch::Receiver<Settings>, url: &str) {
    while settings.changed().await.is_ok() {
        if settings.borrow().sync_url != url {
            return;
        }
    }
    std::future::pending().await
}

/// One connection, from the upgrade to its end.
async fn session(shared: &Shared, url: &str, token: &str) -> Ended {
    let offline = Ended::Dropped { was_online: false };
    let mut request = match url.into_client_request() {
        Ok(request) => request,
        Err(e) => return Ended::Refused(format!("the sync URL is not usable: {e}")),
    };
    match format!("Bearer {token}").parse() {
        Ok(value) => {
            request.headers_mut().insert("Authorization", value);
        }
        Err(_) => return Ended::Refused("the token is not a valid header value".to_owned()),
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let mut socket = match timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(tungstenite::Error::Http(response))) => return refusal(&response),
        Ok(Err(_)) | Err(_) => return offline,
    };
    let me: PeerId = format!("baton-client-{}", uuid::Uuid::new_v4().simple());
    let asked = Instant::now();
    let server = match timeout(CONNECT_TIMEOUT, handshake(&mut socket, &me)).await {
        Ok(Ok(server)) => server,
        Ok(Err(ended)) => return ended,
        Err(_) => return offline,
    };
    let answered = Instant::now();
    if let Some(time) = server.server_time {
        shared.server_time(time, answered - asked, answered);
    }
    // Who is signed in may have changed since the last connection (a role granted or taken
    // away): ask again beside the sync. A failure keeps what the device already knows.
    let identity = shared.fetch_identity(url, token);
    tokio::pin!(identity);
    let mut asking = true;
    let link = Link {
        me,
        server: server.peer,
    };
    let first = shared.connected();
    let (mut sink, mut stream) = socket.split();
    for message in first {
        if sink.send(link.frame(message)).await.is_err() {
            return Ended::Dropped { was_online: true };
        }
    }
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut heard = Instant::now();
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = shared.outbox.notified() => {
                for message in shared.outgoing() {
                    if sink.send(link.frame(message)).await.is_err() {
                        return Ended::Dropped { was_online: true };
                    }
                }
                continue;
            }
            asked = &mut identity, if asking => {
                asking = false;
                if let Err(e) = asked {
                    shared.report(e.to_string());
                }
                continue;
            }
            _ = ping.tick() => {
                if heard.elapsed() > SILENCE_LIMIT
                    || sink.send(WsMessage::Ping(Default::default())).await.is_err()
                {
                    return Ended::Dropped { was_online: true };
                }
                continue;
            }
        };
        heard = Instant::now();
        let message = match frame {
            Some(Ok(WsMessage::Binary(bytes))) => match Message::decode(&bytes) {
                Ok(message) => message,
                // A frame this client cannot read harms nothing; the next sync round repairs.
                Err(_) => continue,
            },
            Some(Ok(WsMessage::Close(frame))) => return closed(frame),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Ended::Dropped { was_online: true },
        };
        match message {
            Message::Sync {
                document_id, data, ..
            } => {
                if let Some(reply) = shared.receive(document_id, &data)
                    && sink.send(link.frame(reply)).await.is_err()
                {
                    return Ended::Dropped { was_online: true };
                }
            }
            Message::DocUnavailable { document_id, .. } => shared.unavailable(document_id),
            Message::Error { message, .. } if message == REVOKED_ERROR => return Ended::Wipe,
            Message::Error { message, .. } => match refused_doc(&message) {
                Some(doc) => {
                    for message in shared.refused(doc, message) {
                        if sink.send(link.frame(message)).await.is_err() {
                            return Ended::Dropped { was_online: true };
                        }
                    }
                }
                None => shared.server_error(message),
            },
            _ => {}
        }
    }
}

/// The document a refusal is about: ``<document id>: refused: …``.
fn refused_doc(message: &str) -> Option<DocumentId> {
    let (doc, _) = message.split_once(": refused: ")?;
    doc.parse().ok()
}

/// Send `join` and read the server's `peer`.
async fn handshake(socket: &mut Socket, me: &PeerId) -> Result<ServerPeer, Ended> {
    let offline = || Ended::Dropped { was_online: false };
    let hello = join(me, &PeerMetadata::default());
    socket
        .send(WsMessage::Binary(hello.encode().into()))
        .await
        .map_err(|_| offline())?;
    loop {
        match socket.next().await {
            Some(Ok(WsMessage::Binary(bytes))) => {
                let reply = Message::decode(&bytes)
                    .map_err(|e| Ended::Refused(format!("the server's reply to join: {e}")))?;
                if let Message::Error { message, .. } = &reply
                    && message == REVOKED_ERROR
                {
                    return Err(Ended::Wipe);
                }
                return read_peer(me, reply).map_err(|e| Ended::Refused(e.to_string()));
            }
            Some(Ok(WsMessage::Close(frame))) => return Err(closed(frame)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(offline()),
        }
    }
}

/// What a close frame from the server means.
fn closed(frame: Option<CloseFrame>) -> Ended {
    match frame.map(|f| u16::from(f.code)) {
        Some(DEVICE_REVOKED) => Ended::Wipe,
        Some(TOKEN_EXPIRED) => Ended::Refused("the token expired".to_owned()),
        _ => Ended::Dropped { was_online: true },
    }
}

/// What an HTTP answer to the upgrade means: 401/403 refuse the token (403 with `"wipe": true`
/// revokes the device); anything else is a server that is not ready yet.
fn refusal(response: &tungstenite::http::Response<Option<Vec<u8>>>) -> Ended {
    let body: serde_json::Value = response
        .body()
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_default();
    if body["wipe"] == serde_json::Value::Bool(true) {
        return Ended::Wipe;
    }
    match response.status().as_u16() {
        401 | 403 => Ended::Refused(
            body["error"]
                .as_str()
                .unwrap_or("the server refused the token")
                .to_owned(),
        ),
        _ => Ended::Dropped { was_online: false },
    }
}

/// The two ends of one connection, for addressing frames.
struct Link {
    me: PeerId,
    server: PeerId,
}

impl Link {
    fn frame(&self, message: super::state::Outgoing) -> WsMessage {
        let message = Message::sync_round(
            message.request,
            self.me.clone(),
            self.server.clone(),
            message.doc,
            message.data,
        );
        WsMessage::Binary(message.encode().into())
    }
}

/// Exponential backoff with jitter: each delay is drawn from the upper half of a window that
/// doubles after every failure, up to [`BACKOFF_CAP`].
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let window = BACKOFF_BASE
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_CAP);
        self.failures = self.failures.saturating_add(1);
        // Without randomness the full window is still a fine delay.
        let jitter = getrandom::u64().unwrap_or(u64::MAX) % 1_000;
        window / 2 + window / 2 * u32::try_from(jitter).unwrap_or(999) / 1_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..12).map(|_| backoff.next()).collect();
        assert!(delays[0] >= BACKOFF_BASE / 2 && delays[0] <= BACKOFF_BASE);
        assert!(delays[3] >= BACKOFF_BASE * 4);
        for delay in &delays {
            assert!(*delay <= BACKOFF_CAP);
        }
        assert!(delays[11] >= BACKOFF_CAP / 2);
    }

    #[test]
    fn close_codes_and_refusals_are_read() {
        let frame = |code: u16| {
            Some(CloseFrame {
                code: code.into(),
                reason: "".into(),
            })
        };
        assert!(matches!(closed(frame(4403)), Ended::Wipe));
        assert!(matches!(closed(frame(4401)), Ended::Refused(_)));
        assert!(matches!(
            closed(frame(1001)),
            Ended::Dropped { was_online: true }
        ));
        let response = |status: u16, body: &str| {
            tungstenite::http::Response::builder()
                .status(status)
                .body(Some(body.as_bytes().to_vec()))
                .expect("a valid response")
        };
        let revoked = r#"{"error":"device_revoked","wipe":true}"#;
        assert!(matches!(refusal(&response(403, revoked)), Ended::Wipe));
        assert!(matches!(
            refusal(&response(401, r#"{"error":"token_expired"}"#)),
            Ended::Refused(reason) if reason == "token_expired"
        ));
        assert!(matches!(refusal(&response(503, "")), Ended::Dropped { .. }));
    }
}
