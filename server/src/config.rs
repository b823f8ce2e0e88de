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
    /// A Postgres database (`postgres://…`), for production and for several nodes.
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
        }
    }
}
