//! What a server is started with. `main.rs` fills it from flags and `BATON_*` variables; tests
//! build it directly.

use baton_core::time::Span;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the server keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// SQLite in `<data dir>/baton.db` (the embedded default).
    Sqlite,
    /// A Postgres database (`postgres://…`), for production. One server process per database:
    /// several nodes on one database are not supported yet.
    Postgres(String),
}

/// How tokens are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    /// The `iss` claim tokens must carry, and that embedded tokens are issued with.
    pub issuer: String,
    /// The `aud` claim tokens must carry.
    pub audience: String,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            issuer: "baton".to_owned(),
            audience: "baton".to_owned(),
        }
    }
}

/// Bounds on what one connection may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The largest WebSocket message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Messages queued for one connection before it counts as too slow and is dropped.
    pub outbound_queue: usize,
    /// How often the server pings; a connection silent for two intervals is closed.
    pub ping_interval: Span,
    /// How long a new connection has to send `join`.
    pub join_timeout: Span,
    /// Documents one connection may have open at once.
    pub max_documents: usize,
    /// Documents one user may have open at once, across all of their connections.
    pub max_documents_per_user: usize,
    /// Sync connections one device may have open at once.
    pub max_connections_per_device: usize,
    /// Sync connections one user may have open at once, on all of their devices.
    pub max_connections_per_user: usize,
    /// Sync connections from one address at once. Behind a reverse proxy every connection comes
    /// from the proxy's address, so there this caps the whole server.
    pub max_connections_per_address: usize,
    /// How long a client has to send a request's headers once it has sent its first byte.
    pub header_read_timeout: Span,
    /// How long an HTTP connection may sit with no request in progress (a kept-alive
    /// connection between requests, or one opened and never used) before it is closed. Sync
    /// connections, once upgraded, are kept alive by pings instead.
    pub idle_timeout: Span,
    /// Initial read and write buffer of a connection, in bytes.
    pub buffer_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_message_bytes: 8 * 1024 * 1024,
            outbound_queue: 1_024,
            ping_interval: Span::from_millis(15_000),
            join_timeout: Span::from_millis(10_000),
            max_documents: 10_000,
            max_documents_per_user: 20_000,
            max_connections_per_device: 8,
            max_connections_per_user: 32,
            max_connections_per_address: 10_000,
            header_read_timeout: Span::from_millis(10_000),
            idle_timeout: Span::from_millis(60_000),
            buffer_bytes: 1024,
        }
    }
}

/// Everything a server needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Holds the SQLite file (with the embedded default) and the embedded signing key.
    pub data_dir: PathBuf,
    pub storage: Storage,
    /// Seed demo units, people, templates and tasks on start.
    pub demo: bool,
    pub tokens: TokenConfig,
    /// Verify an identity provider's tokens with the keys published here, instead of the
    /// embedded issuer's.
    pub jwks_url: Option<String>,
    /// The shortest time between two fetches of the identity provider's keys.
    pub jwks_min_refresh: Span,
    pub limits: ConnectionLimits,
    /// How long a document nobody is syncing stays in memory.
    pub idle_document: Span,
    /// Demo and tests only: the workflow clock (deadlines, what is overdue) runs this many times
    /// as fast as real time, from the moment the server starts. 1 in production.
    pub time_scale: u32,
    /// Where notifications go and how they are retried.
    pub notify: crate::notify::NotifyConfig,
    /// Route new tasks to whoever covers their owner role (`serve` always does; tests of the
    /// sync path that script every event themselves turn it off).
    pub routing: baton_core::policy::escalation::Routing,
}

impl Config {
    /// A server on `listen` with data in `data_dir`, on SQLite, with default limits.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen,
            data_dir: data_dir.into(),
            storage: Storage::Sqlite,
            demo: false,
            tokens: TokenConfig::default(),
            jwks_url: None,
            jwks_min_refresh: Span::from_millis(30_000),
            limits: ConnectionLimits::default(),
            idle_document: Span::from_millis(30_000),
            time_scale: 1,
            notify: crate::notify::NotifyConfig::default(),
            routing: baton_core::policy::escalation::Routing::On,
        }
    }
}
