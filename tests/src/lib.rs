//! The end-to-end harness: a real server in-process on port 0, on SQLite in a temporary
//! directory or on a fresh Postgres database; phones that speak the automerge-repo protocol to
//! it over real WebSockets; and stock JavaScript automerge-repo clients run by Node.
//!
//! Failures here are test failures, so the harness panics with a message instead of returning
//! errors.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod apns;
pub mod js;
pub mod process;

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ReadDoc};
use baton_core::sync::handshake::{join, read_peer};
use baton_core::sync::{DocumentId, Message, PeerMetadata};
use baton_server::auth::{IntegrationTokenRequest, Keys, TokenRequest};
use baton_server::{Config, Server, Storage};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

pub const WAIT: Duration = Duration::from_secs(20);

/// One test module per scenario, each with a test on SQLite and one on Postgres: a scenario is
/// an `async fn(Backend)` in the calling file.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario($crate::Backend::Postgres).await;
            }
        }
    )*};
}

/// Which database a test server uses.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The Postgres server tests use: `BATON_TEST_POSTGRES`, or the local one. Tests that need it
/// fail when it is unreachable; they never skip.
pub fn postgres_admin_url() -> String {
    std::env::var("BATON_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh, empty Postgres database for one test.
pub async fn fresh_postgres() -> String {
    sqlx::any::install_default_drivers();
    let admin = postgres_admin_url();
    let name = format!("baton_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("Postgres at {admin} is required for this test: {e}"));
    let create = format!("CREATE DATABASE {name}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap().to_owned();
    format!("{base}/{name}")
}

/// Fire whatever is due at start (the demo's tasks are routed the moment they open), so every
/// test begins from the same state instead of racing the scheduler.
async fn settle(server: &Server) {
    server.state().scheduler.fire_due().await.unwrap();
}

#[derive(Debug)]
pub struct TestServer {
    pub server: Option<Server>,
    pub config: Config,
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A demo-seeded server.
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// A demo-seeded server, its configuration adjusted by `configure`.
    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestServer {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let storage = match backend {
            Backend::Sqlite => Storage::Sqlite,
            Backend::Postgres => Storage::Postgres(fresh_postgres().await),
        };
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dir.path());
        config.storage = storage;
        config.demo = true;
        // These tests script every event on the demo's tasks; the ones about routing turn it
        // back on.
        config.routing = baton_core::policy::escalation::Routing::Off;
        configure(&mut config);
        let server = Server::start(config.clone()).await.unwrap();
        settle(&server).await;
        TestServer {
            server: Some(server),
            config,
            data_dir: dir.path().to_path_buf(),
            _dir: Some(dir),
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server().addr()
    }

    /// Stop gracefully and start again on the same storage (a new port).
    pub async fn restart(&mut self) {
        self.server.take().unwrap().shutdown().await;
        let server = Server::start(self.config.clone()).await.unwrap();
        settle(&server).await;
        self.server = Some(server);
    }

    pub fn token(&self, user: &str, device: &str, roles: &[&str], units: &[&str]) -> String {
        self.token_with(user, device, roles, units, false, 3_600)
    }

    pub fn admin_token(&self) -> String {
        self.token_with("admin", "admin-console", &[], &[], true, 3_600)
    }

    pub fn token_with(
        &self,
        user: &str,
        device: &str,
        roles: &[&str],
        units: &[&str],
        admin: bool,
        ttl_secs: i64,
    ) -> String {
        token_with_in(&self.data_dir, user, device, roles, units, admin, ttl_secs)
    }

    /// A token for integration `name` on `units`, as `token issue --integration` prints it.
    pub fn integration_token(&self, name: &str, units: &[&str]) -> String {
        integration_token_in(&self.data_dir, name, units)
    }

    /// `POST path` with `body` as JSON.
    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        http_with_body(
            self.addr(),
            "POST",
            path,
            token,
            body.to_string().as_bytes(),
        )
        .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        http(self.addr(), "GET", path, token).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        http(self.addr(), "POST", path, token).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        http(self.addr(), "PUT", path, token).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        http(self.addr(), "DELETE", path, token).await
    }

    /// A token whose claims `edit` adjusts after they are made as [`TestServer::token_with`]
    /// makes them.
    pub fn token_edited(
        &self,
        user: &str,
        device: &str,
        roles: &[&str],
        units: &[&str],
        admin: bool,
        edit: impl FnOnce(&mut baton_server::auth::Claims),
    ) -> String {
        let keys = Keys::load_or_create(&self.data_dir).unwrap();
        let request = TokenRequest {
            user: user.into(),
            device: device.into(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            units: units.iter().map(|s| s.to_string()).collect(),
            admin,
            ttl_secs: 3_600,
        };
        let tokens = baton_server::config::TokenConfig::default();
        let mut claims = request.claims(&tokens, baton_server::now_ms() / 1000);
        edit(&mut claims);
        keys.issue(&claims).unwrap()
    }

    /// The value of the metric line that starts with `series` (name and labels), if any.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (_, metrics) = self.get("/metrics", None).await;
        metrics.as_str()?.lines().find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Wait until the server counts `n` open sync connections.
    pub async fn until_connections(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.metric("baton_connections").await != Some(n as f64) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server never counted {n} connections"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A connection of its own to the server's database, beside the server's.
    pub async fn database(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        let url = match &self.config.storage {
            Storage::Sqlite => format!("sqlite://{}", self.data_dir.join("baton.db").display()),
            Storage::Postgres(url) => url.clone(),
        };
        <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap()
    }
}

/// A minimal HTTP/1.1 request over a real socket (no client library needed for a few calls).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    http_on(stream, addr, method, path, token, "", b"").await
}

/// [`http`] with a request body (sent as `application/json`).
pub async fn http_with_body(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, serde_json::Value) {
    http_typed(addr, method, path, token, "application/json", body).await
}

/// [`http`] with a request body of `content_type`.
pub async fn http_typed(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    http_on(stream, addr, method, path, token, content_type, body).await
}

/// [`http`] from another local address (any of 127.0.0.0/8 on a loopback server).
pub async fn http_from(
    local: std::net::IpAddr,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(local, 0)).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    http_on(stream, addr, method, path, token, "", b"").await
}

async fn http_on(
    mut stream: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let content_type = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {content_type}\r\n")
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The server may answer (a refusal) before it has read a large body.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("the server did not answer");
    // A server that answered before reading the whole body may reset the connection after
    // its answer: what arrived is the answer.
    if response.is_empty() {
        read.unwrap();
    }
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (status, json)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a phone's copy of one document knows.
#[derive(Debug)]
pub struct Replica {
    pub doc: Automerge,
    pub state: sync::State,
    pub unavailable: bool,
}

/// A phone: one WebSocket, the join handshake done, documents synced by hand.
#[derive(Debug)]
pub struct Phone {
    socket: Socket,
    pub peer: String,
    pub server_peer: String,
    pub docs: HashMap<DocumentId, Replica>,
    pub errors: Vec<String>,
    pub closed: Option<(u16, String)>,
}

/// Why a connection was refused at the upgrade.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: String,
}

impl Phone {
    pub async fn connect(addr: std::net::SocketAddr, token: &str) -> Result<Phone, Refused> {
        let mut request = format!("ws://{addr}/sync").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        Self::connect_request(request).await
    }

    /// The WebSocket upgrade alone, with the token as a header: no `join` sent yet.
    pub async fn upgrade(addr: std::net::SocketAddr, token: &str) -> Result<Socket, Refused> {
        let mut request = format!("ws://{addr}/sync").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        Self::upgrade_request(request).await
    }

    async fn upgrade_request(
        request: tungstenite::handshake::client::Request,
    ) -> Result<Socket, Refused> {
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => Ok(socket),
            Err(tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err(Refused {
                    status: response.status().as_u16(),
                    body,
                })
            }
            Err(e) => panic!("connect: {e}"),
        }
    }

    pub async fn connect_request(
        request: tungstenite::handshake::client::Request,
    ) -> Result<Phone, Refused> {
        let mut socket = Self::upgrade_request(request).await?;
        let peer = format!("phone-{}", uuid::Uuid::new_v4().simple());
        let hello = join(&peer, &PeerMetadata::default());
        socket
            .send(WsMessage::Binary(hello.encode().into()))
            .await
            .unwrap();
        let reply = loop {
            match tokio::time::timeout(WAIT, socket.next()).await.unwrap() {
                Some(Ok(WsMessage::Binary(bytes))) => break Message::decode(&bytes).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("no handshake reply: {other:?}"),
            }
        };
        let server_peer = read_peer(&peer, reply).unwrap().peer;
        Ok(Phone {
            socket,
            peer,
            server_peer,
            docs: HashMap::new(),
            errors: Vec::new(),
            closed: None,
        })
    }

    pub async fn send(&mut self, message: &Message) {
        self.socket
            .send(WsMessage::Binary(message.encode().into()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, frame: WsMessage) {
        self.socket.send(frame).await.unwrap();
    }

    fn replica(&mut self, id: DocumentId) -> &mut Replica {
        self.docs.entry(id).or_insert_with(|| Replica {
            doc: Automerge::new(),
            state: sync::State::new(),
            unavailable: false,
        })
    }

    /// Send our side of a sync round for `id`, as `request` if we hold nothing of it.
    /// Returns false if the connection is gone.
    async fn offer(&mut self, id: DocumentId) -> bool {
        let (peer, server) = (self.peer.clone(), self.server_peer.clone());
        let replica = self.replica(id);
        let empty = replica.doc.get_heads().is_empty();
        let Some(message) = replica.doc.generate_sync_message(&mut replica.state) else {
            return true;
        };
        let data = message.encode();
        let message = Message::sync_round(empty, peer, server, id, data);
        self.socket
            .send(WsMessage::Binary(message.encode().into()))
            .await
            .is_ok()
    }

    /// Read one frame and act on it. Returns false once the connection is closed.
    pub async fn step(&mut self) -> bool {
        self.step_until(tokio::time::Instant::now() + WAIT).await
    }

    async fn step_until(&mut self, deadline: tokio::time::Instant) -> bool {
        let next = tokio::time::timeout_at(deadline, self.socket.next())
            .await
            .expect("the server did not say what was expected in time");
        let frame = match next {
            Some(Ok(frame)) => frame,
            Some(Err(_)) | None => {
                self.closed.get_or_insert((0, "connection ended".into()));
                return false;
            }
        };
        self.handle(frame).await
    }

    /// Read for `span`, acting on what arrives as [`Phone::step`] does. Returns the documents
    /// the server sent sync messages for meanwhile (once each, in order of arrival).
    pub async fn listen(&mut self, span: Duration) -> Vec<DocumentId> {
        let deadline = tokio::time::Instant::now() + span;
        let mut synced = Vec::new();
        while let Ok(next) = tokio::time::timeout_at(deadline, self.socket.next()).await {
            let Some(Ok(frame)) = next else {
                self.closed.get_or_insert((0, "connection ended".into()));
                break;
            };
            if let WsMessage::Binary(bytes) = &frame
                && let Ok(Message::Sync { document_id, .. }) = Message::decode(bytes)
                && !synced.contains(&document_id)
            {
                synced.push(document_id);
            }
            if !self.handle(frame).await {
                break;
            }
        }
        synced
    }

    /// Act on one frame. Returns false once the connection is closed.
    async fn handle(&mut self, frame: WsMessage) -> bool {
        match frame {
            WsMessage::Binary(bytes) => match Message::decode(&bytes).unwrap() {
                Message::Sync {
                    document_id, data, ..
                } => {
                    let replica = self.replica(document_id);
                    let message = sync::Message::decode(&data).unwrap();
                    replica
                        .doc
                        .receive_sync_message(&mut replica.state, message)
                        .unwrap();
                    if !self.offer(document_id).await {
                        self.closed.get_or_insert((0, "connection ended".into()));
                        return false;
                    }
                }
                Message::DocUnavailable { document_id, .. } => {
                    self.replica(document_id).unavailable = true;
                }
                Message::Error { message, .. } => self.errors.push(message),
                _ => {}
            },
            WsMessage::Close(frame) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                self.closed = Some((code, reason));
                return false;
            }
            _ => {}
        }
        true
    }

    /// Keep reading until `done` holds (pings do not extend the wait).
    pub async fn until(&mut self, mut done: impl FnMut(&Phone) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(self) {
            assert!(
                self.step_until(deadline).await,
                "closed while waiting: {:?}",
                self.closed
            );
        }
    }

    /// Fetch a document from the server: its content, or None if the server says it is
    /// unavailable.
    pub async fn open(&mut self, id: DocumentId) -> Option<Automerge> {
        self.replica(id).unavailable = false;
        assert!(self.offer(id).await, "the connection is gone");
        self.until(|p| {
            let r = &p.docs[&id];
            r.unavailable || (!r.doc.get_heads().is_empty() && p.in_sync(id))
        })
        .await;
        let replica = &self.docs[&id];
        (!replica.unavailable).then(|| replica.doc.clone())
    }

    /// Whether the server has told us it holds exactly what we hold of `id`.
    pub fn in_sync(&self, id: DocumentId) -> bool {
        let r = &self.docs[&id];
        let mut ours = r.doc.get_heads();
        ours.sort();
        r.state.their_heads.as_ref().is_some_and(|theirs| {
            let mut theirs = theirs.clone();
            theirs.sort();
            theirs == ours
        })
    }

    /// Replace our copy of `id` with `doc` (after local edits) and sync until the server has it,
    /// or refuses it.
    pub async fn push(&mut self, id: DocumentId, doc: Automerge) -> Result<(), String> {
        let errors_before = self.errors.len();
        self.replica(id).doc = doc;
        assert!(self.offer(id).await, "the connection is gone");
        self.until(|p| p.errors.len() > errors_before || p.in_sync(id))
            .await;
        match self.errors.get(errors_before) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Like [`Phone::push`], for a server that may die meanwhile: `Ok(true)` once the server's
    /// heads include ours (acknowledged: durable), `Ok(false)` if the connection ended first.
    pub async fn try_push(&mut self, id: DocumentId, doc: Automerge) -> Result<bool, String> {
        let errors_before = self.errors.len();
        self.replica(id).doc = doc;
        if !self.offer(id).await {
            return Ok(false);
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        while !(self.errors.len() > errors_before || self.in_sync(id)) {
            if !self.step_until(deadline).await {
                return Ok(false);
            }
        }
        match self.errors.get(errors_before) {
            Some(e) => Err(e.clone()),
            None => Ok(true),
        }
    }

    /// Keep syncing until `id` satisfies `check`.
    pub async fn wait_for(&mut self, id: DocumentId, mut check: impl FnMut(&Automerge) -> bool) {
        self.until(|p| p.docs.get(&id).is_some_and(|r| check(&r.doc)))
            .await;
    }

    pub fn doc(&self, id: DocumentId) -> &Automerge {
        &self.docs[&id].doc
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// The value at `key` of the root map, as a JSON-ish string (for quick checks).
pub fn root_str(doc: &Automerge, key: &str) -> Option<String> {
    match doc.get(automerge::ROOT, key).ok()?? {
        (automerge::Value::Scalar(s), _) => s.as_str().map(str::to_owned),
        _ => None,
    }
}

/// The number of events in a task document.
pub fn event_count(doc: &Automerge) -> usize {
    baton_core::TaskDoc::from_automerge(doc.clone())
        .unwrap()
        .events()
        .unwrap()
        .events
        .len()
}

/// Append `body` as `author` to a copy of a task, through the typed API (the core's rules run
/// first), as a new Automerge actor.
pub fn append(
    doc: &Automerge,
    author: &baton_core::Author,
    body: baton_core::EventBody,
) -> (Automerge, baton_core::Event) {
    let templates = baton_core::TemplateRegistry::shipped();
    let mut task = baton_core::TaskDoc::from_automerge(doc.clone()).unwrap();
    task.set_actor(automerge::ActorId::random());
    let template = templates.get(&task.meta().template).unwrap();
    let event = task
        .append(
            template,
            author,
            &mut baton_core::HlcClock::new(),
            baton_server::now_ms(),
            body,
        )
        .unwrap();
    (task.into_automerge(), event)
}

/// The unit's index document from `GET /api/v1/me`.
pub async fn index_of(addr: std::net::SocketAddr, token: &str, unit: &str) -> DocumentId {
    let (status, me) = http(addr, "GET", "/api/v1/me", Some(token)).await;
    assert_eq!(status, 200, "{me}");
    let units = me["units"].as_array().unwrap();
    let unit = units.iter().find(|u| u["id"] == unit).unwrap();
    DocumentId::from_url(unit["index_url"].as_str().unwrap()).unwrap()
}

/// The id of the task of `template` on `unit`'s index, as `phone` (signed in with `token`)
/// finds it there (the demo seeds one of each).
pub async fn listed_task(
    phone: &mut Phone,
    addr: std::net::SocketAddr,
    token: &str,
    unit: &str,
    template: &str,
) -> DocumentId {
    let index = index_of(addr, token, unit).await;
    let doc = phone.open(index).await.expect("the unit's index");
    baton_core::index::read(&doc)
        .expect("an index")
        .tasks
        .iter()
        .find(|(_, t)| t.template.id.as_str() == template)
        .map(|(id, _)| id.parse().expect("a document id"))
        .expect("a task of the template on the index")
}

/// A token for the embedded issuer whose key is in `data_dir`.
pub fn token_in(
    data_dir: &std::path::Path,
    user: &str,
    device: &str,
    roles: &[&str],
    units: &[&str],
) -> String {
    token_with_in(data_dir, user, device, roles, units, false, 3_600)
}

/// A user's token from the embedded issuer whose key is in `data_dir`, an admin's if `admin`,
/// lasting `ttl_secs`.
pub fn token_with_in(
    data_dir: &std::path::Path,
    user: &str,
    device: &str,
    roles: &[&str],
    units: &[&str],
    admin: bool,
    ttl_secs: i64,
) -> String {
    let keys = Keys::load_or_create(data_dir).unwrap();
    let request = TokenRequest {
        user: user.into(),
        device: device.into(),
        roles: roles.iter().map(|s| s.to_string()).collect(),
        units: units.iter().map(|s| s.to_string()).collect(),
        admin,
        ttl_secs,
    };
    let tokens = baton_server::config::TokenConfig::default();
    keys.issue(&request.claims(&tokens, baton_server::now_ms() / 1000))
        .unwrap()
}

/// A token for integration `name` on `units`, as `token issue --integration` prints it, from the
/// key in `data_dir`.
pub fn integration_token_in(data_dir: &std::path::Path, name: &str, units: &[&str]) -> String {
    let keys = Keys::load_or_create(data_dir).unwrap();
    let request = IntegrationTokenRequest {
        name: name.into(),
        units: units.iter().map(|s| s.to_string()).collect(),
        ttl_secs: 3_600,
    };
    let tokens = baton_server::config::TokenConfig::default();
    keys.issue(&request.claims(&tokens, baton_server::now_ms() / 1000))
        .unwrap()
}
