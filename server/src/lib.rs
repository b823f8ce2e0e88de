//! # baton-server
//!
//! The sync server: it merges task documents from devices over the automerge-repo protocol,
//! validates every change before it stores or relays it, stores changes durably (SQLite by
//! default, Postgres for production), keeps each unit's index document, and serves the REST API.
//!
//! [`Server::start`] builds and runs the whole server from a [`Config`]; `main.rs` only parses
//! flags. Tests start the real server in-process on port 0.

pub mod audit;
pub mod auth;
pub mod board;
pub mod commit;
pub mod config;
pub mod db;
pub mod demo;
pub mod directory;
pub mod fhir;
pub mod http;
pub mod hub;
pub mod measures;
pub mod metrics;
pub mod notify;
pub mod serve;
pub mod timers;
pub mod triggers;
pub mod ws;

pub use config::{Config, Storage};

use auth::{AuthError, Integration, Keys, Session, Verifier};
use axum::Router;
use baton_core::{Template, TemplateRegistry};
use db::{AuditRecord, Db};
use hub::Hub;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Milliseconds since the Unix epoch, from the system clock: the server's time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The clock workflow deadlines are judged by: real time, or (`--time-scale`, demo and tests
/// only) time that runs faster from the moment the server started. Tests move it on by hand
/// ([`WorkflowClock::advance`]) instead of sleeping.
#[derive(Debug)]
pub struct WorkflowClock {
    started: i64,
    scale: u32,
    /// Moved on by hand, in milliseconds.
    offset: std::sync::atomic::AtomicI64,
}

impl WorkflowClock {
    pub fn new(scale: u32) -> Self {
        WorkflowClock {
            started: now_ms(),
            scale: scale.max(1),
            offset: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// The workflow time now, in Unix milliseconds.
    pub fn now(&self) -> i64 {
        let elapsed = now_ms().saturating_sub(self.started);
        self.started
            .saturating_add(elapsed.saturating_mul(i64::from(self.scale)))
            .saturating_add(self.offset.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// How many workflow milliseconds pass per real one.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// Move the clock on by `ms` (tests and demos).
    pub fn advance(&self, ms: i64) {
        self.offset
            .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Key(#[from] auth::KeyError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("a stored template is unreadable: {0}")]
    Template(String),
    #[error("seeding demo data: {0}")]
    Demo(String),
    #[error("{0}")]
    Jwks(String),
}

/// What every request handler and connection shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub hub: Hub,
    pub verifier: Verifier,
    pub connections: Arc<ws::Connections>,
    pub cancel: CancellationToken,
    /// The peer id this server announces in the handshake.
    pub peer_id: String,
    /// Writes every security audit record, throttled per device and per address.
    pub auditor: Arc<audit::Auditor>,
    /// What deadlines are judged by.
    pub clock: Arc<WorkflowClock>,
    /// Fires due timers.
    pub scheduler: timers::Scheduler,
    /// Delivers notifications.
    pub notifier: notify::Notifier,
    /// What `/metrics` publishes.
    pub published: Arc<metrics::Published>,
    /// Live board streams open at once, at most [`board::MAX_STREAMS`].
    pub board_streams: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// Authenticate a bearer token, presented from `from`, against the server's records.
    pub async fn session(
        &self,
        token: Option<String>,
        from: Option<IpAddr>,
    ) -> Result<Session, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let result = Session::establish(&self.db, &self.verifier, &token, now_ms()).await;
        match result {
            Ok(mut session) => {
                session.address = from;
                Ok(session)
            }
            Err(e) => {
                self.refused(&e, from).await;
                Err(e)
            }
        }
    }

    /// Authenticate an integration's bearer token, presented from `from`.
    pub async fn integration(
        &self,
        token: Option<String>,
        from: Option<IpAddr>,
    ) -> Result<Integration, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let result = Integration::establish(&self.verifier, &token, now_ms()).await;
        if let Err(e) = &result {
            self.refused(e, from).await;
        }
        result
    }

    /// Write a refused token to the security audit (a missing one, and failures of the server's
    /// own, aside).
    async fn refused(&self, e: &AuthError, from: Option<IpAddr>) {
        if matches!(
            e,
            AuthError::Missing | AuthError::Db(_) | AuthError::Keys(_)
        ) {
            return;
        }
        let at = from.map_or_else(|| "an unknown address".to_owned(), |a| a.to_string());
        let record = AuditRecord {
            kind: "refused_token",
            detail: format!("{}: {e}; from {at}", e.code()),
            ..AuditRecord::default()
        };
        self.auditor.record(record, from).await;
    }
}

/// The HTTP routes.
pub fn router(app: AppState) -> Router {
    http::router(app)
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    app: AppState,
    tracker: TaskTracker,
    serve: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Open storage, bring the schema up to date, load templates, and start listening.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let db = Db::open(&config.storage, &config.data_dir).await?;
        let placed = audit::chain::seal(&db).await?;
        if placed > 0 {
            tracing::info!(
                rows = placed,
                "audit rows written before the audit chains were put on them"
            );
        }
        let keys = Keys::load_or_create(&config.data_dir)?;
        let verifier = match &config.jwks_url {
            Some(url) => Verifier::jwks(
                url,
                &config.tokens,
                Duration::from_millis(config.jwks_min_refresh.as_millis()),
            )
            .await
            .map_err(|e| StartError::Jwks(e.to_string()))?,
            None => Verifier::embedded(&keys, &config.tokens),
        };
        let templates = load_templates(&db).await?;
        let auditor = Arc::new(audit::Auditor::new(db.clone()));
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let clock = Arc::new(WorkflowClock::new(config.time_scale));
        let notifier = notify::Notifier::new(db.clone(), config.notify.clone());
        let hub = Hub::new(
            db.clone(),
            auditor.clone(),
            hub::HubOptions {
                templates,
                idle: Duration::from_millis(config.idle_document.as_millis()),
                routing: config.routing,
            },
            clock.clone(),
            tracker.clone(),
            cancel.clone(),
            notifier.clone(),
        );
        let scheduler = timers::Scheduler::new(db.clone(), hub.clone(), clock.clone());
        tracker.spawn(checkpoints(db.clone(), cancel.clone()));
        let mut published = metrics::Published::new();
        published.add(&hub);
        published.add(&scheduler);
        published.add(&notifier);
        published.add(auditor.as_ref());
        let app = AppState {
            published: Arc::new(published),
            board_streams: Arc::new(tokio::sync::Semaphore::new(board::MAX_STREAMS)),
            config: Arc::new(config.clone()),
            db,
            hub,
            verifier,
            connections: Arc::new(ws::Connections::default()),
            auditor,
            clock,
            scheduler,
            notifier,
            cancel: cancel.clone(),
            peer_id: format!("baton-server-{}", uuid::Uuid::new_v4()),
        };
        // Index entries owed by commits before a crash are applied before anyone connects.
        match app.hub.drain_index_entries().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(entries = n, "applied index entries owed from before"),
            Err(e) => tracing::error!(error = %e, "owed index entries could not be applied yet"),
        }
        app.hub.start_index_writer();
        // Tasks stored before summaries were kept get theirs, so every task is listed.
        match app.hub.backfill_summaries().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(tasks = n, "wrote the summaries of tasks stored before"),
            Err(e) => {
                tracing::error!(error = %e, "the summaries of tasks stored before could not all be written; the next start tries again")
            }
        }
        // Overdue timers fire first thing, oldest first; then each as it falls due.
        app.scheduler.start(&tracker, cancel.clone());
        // Deliveries owed from before (a crash, a receiver that was down) go out at once.
        app.notifier.start(&tracker, cancel.clone());
        if config.demo {
            demo::seed(&app)
                .await
                .map_err(|e| StartError::Demo(e.to_string()))?;
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        let routes = router(app.clone());
        let stop = cancel.clone();
        let timeouts = serve::Timeouts::of(&config.limits);
        let serve = tokio::spawn(serve::serve(listener, routes, timeouts, stop));
        tracing::info!(%addr, backend = ?app.db.backend(), "listening");
        if config.time_scale > 1 {
            tracing::warn!(
                scale = config.time_scale,
                "the workflow clock runs fast (--time-scale): for demos and tests only"
            );
        }
        Ok(Server {
            addr,
            app,
            tracker,
            serve,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.app
    }

    /// Stop accepting, close connections, let every document finish its batch, close storage.
    pub async fn shutdown(self) {
        self.app.cancel.cancel();
        let _ = self.serve.await;
        self.tracker.close();
        self.tracker.wait().await;
        self.app.db.close().await;
    }

    /// Run until `signal` completes, then shut down gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// How often the SQLite write-ahead log is copied into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Checkpoint the write-ahead log beside the commits, until `cancel` fires.
async fn checkpoints(db: Db, cancel: CancellationToken) {
    if db.backend() != db::Backend::Sqlite {
        return;
    }
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {
                if let Err(e) = db.checkpoint().await {
                    tracing::warn!(error = %e, "a checkpoint of the write-ahead log failed");
                }
            }
            () = cancel.cancelled() => return,
        }
    }
}

/// Store the shipped templates (new versions only), then load every stored version.
async fn load_templates(db: &Db) -> Result<TemplateRegistry, StartError> {
    let now = now_ms();
    for template in TemplateRegistry::shipped().iter() {
        let body = serde_json::to_string(template.as_ref())
            .map_err(|e| StartError::Template(e.to_string()))?;
        db.insert_template(
            template.id.as_str(),
            i64::from(template.version),
            &body,
            now,
        )
        .await?;
    }
    let mut registry = TemplateRegistry::new();
    for body in db.templates().await? {
        let template = Template::from_json("stored", &body)
            .map_err(|e| StartError::Template(e.to_string()))?;
        registry
            .insert(template)
            .map_err(|e| StartError::Template(e.to_string()))?;
    }
    Ok(registry)
}
