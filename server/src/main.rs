//! `baton-server`: flags and environment in, [`baton_server::Server`] out.

use baton_core::time::Span;
use baton_server::auth::{IntegrationTokenRequest, Keys, MAX_INTEGRATION_NAME, TokenRequest};
use baton_server::config::{Config, ConnectionLimits, Storage, TokenConfig};
use baton_server::notify::{ApnsConfig, FcmConfig, NotifyConfig, WebhookConfig, WebhookSecret};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "baton-server",
    version,
    about = "Baton sync server: task documents, validation, admin API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<Serve>),
    /// Tokens of the embedded issuer.
    #[command(subcommand)]
    Token(Token),
    /// Who administers the server, in its records.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Write a consistent copy of the SQLite database and the signing key to a new directory,
    /// while the server serves. (Postgres: pg_dump.)
    Backup(Backup),
}

#[derive(Args)]
struct Backup {
    #[command(flatten)]
    records: Records,
    /// The directory to write `baton.db` and `signing-key.pem` to; it must not exist yet, or be
    /// empty.
    #[arg(long)]
    to: PathBuf,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check both audit chains and every task's history against its change hashes; exit 0
    /// when all of it checks out, 1 naming the first broken link.
    Verify(Records),
}

/// The server's records.
#[derive(Args)]
struct Records {
    #[command(flatten)]
    common: Common,
    /// A Postgres URL (`postgres://…`); without it the SQLite database in --data-dir.
    #[arg(long, env = "BATON_DATABASE_URL")]
    database_url: Option<String>,
}

impl Records {
    /// Open the records and run `work` on them, on a runtime of its own.
    fn with<T>(
        &self,
        work: impl AsyncFnOnce(&baton_server::db::Db) -> Result<T, Box<dyn std::error::Error>>,
    ) -> Result<T, Box<dyn std::error::Error>> {
        let storage = match &self.database_url {
            Some(url) => Storage::Postgres(url.clone()),
            None => Storage::Sqlite,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let db = baton_server::db::Db::open(&storage, &self.common.data_dir).await?;
            let out = work(&db).await;
            db.close().await;
            out
        })
    }
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Record a user as an administrator: of the server (every unit), or with --unit of those
    /// units only. Creates the user when the records do not have them. Their tokens must also
    /// claim `admin` (`token issue --admin`).
    Grant(Grant),
}

#[derive(Args)]
struct Grant {
    #[command(flatten)]
    records: Records,
    /// The user.
    #[arg(long)]
    user: String,
    /// Their name as people see it, when the user is new (the user id otherwise).
    #[arg(long)]
    display_name: Option<String>,
    /// A unit they administer (repeat for several); none: the server.
    #[arg(long = "unit")]
    units: Vec<String>,
}

#[derive(Args)]
struct Common {
    /// Holds the SQLite database (unless --database-url is given) and the embedded signing key.
    #[arg(long, env = "BATON_DATA_DIR", default_value = "./baton-data")]
    data_dir: PathBuf,
    /// The `iss` claim of tokens.
    #[arg(long, env = "BATON_ISSUER", default_value = "baton")]
    issuer: String,
    /// The `aud` claim of tokens.
    #[arg(long, env = "BATON_AUDIENCE", default_value = "baton")]
    audience: String,
}

#[derive(Args)]
struct Serve {
    /// Address to listen on.
    #[arg(long, env = "BATON_LISTEN", default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// A Postgres URL (`postgres://…`); without it the server uses SQLite in --data-dir.
    #[arg(long, env = "BATON_DATABASE_URL")]
    database_url: Option<String>,
    /// Seed demo units, people, templates and tasks.
    #[arg(long, env = "BATON_DEMO")]
    demo: bool,
    /// Demo and tests only: run the workflow clock (deadlines, what is overdue) N times as fast
    /// as real time, so a 30-minute acknowledgment window passes in 30 s at 60.
    #[arg(long, env = "BATON_TIME_SCALE", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    time_scale: u32,
    /// Log as JSON lines.
    #[arg(long, env = "BATON_LOG_JSON")]
    log_json: bool,
    /// Production: verify an identity provider's tokens with the keys it publishes at this URL
    /// (with --issuer and --audience) instead of the embedded issuer's.
    #[arg(long, env = "BATON_JWKS_URL")]
    jwks_url: Option<String>,
    /// How long a client has to send a request's headers once it has begun (`10s`).
    #[arg(long, env = "BATON_HEADER_READ_TIMEOUT", default_value = "10s")]
    header_read_timeout: Span,
    /// How long an HTTP connection may sit with no request in progress before it is closed
    /// (`60s`). Sync connections, once upgraded, are kept by pings instead.
    #[arg(long, env = "BATON_IDLE_TIMEOUT", default_value = "60s")]
    idle_timeout: Span,
    /// Sync connections one device may have open at once.
    #[arg(long, env = "BATON_MAX_CONNECTIONS_PER_DEVICE", default_value_t = ConnectionLimits::default().max_connections_per_device)]
    max_connections_per_device: usize,
    /// Sync connections one user may have open at once, on all of their devices.
    #[arg(long, env = "BATON_MAX_CONNECTIONS_PER_USER", default_value_t = ConnectionLimits::default().max_connections_per_user)]
    max_connections_per_user: usize,
    /// Sync connections from one address at once (behind a reverse proxy: the whole server).
    #[arg(long, env = "BATON_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = ConnectionLimits::default().max_connections_per_address)]
    max_connections_per_address: usize,
    /// Documents one user may have open at once, across all of their sync connections.
    #[arg(long, env = "BATON_MAX_DOCUMENTS_PER_USER", default_value_t = ConnectionLimits::default().max_documents_per_user)]
    max_documents_per_user: usize,
    /// Deliver every notification as a Standard Webhooks POST to this URL.
    #[arg(long, env = "BATON_WEBHOOK_URL", requires = "webhook_secret", value_parser = web_url)]
    webhook_url: Option<String>,
    /// The webhook signing secret, `whsec_` and base64 key bytes (24 to 64).
    #[arg(
        long,
        env = "BATON_WEBHOOK_SECRET",
        requires = "webhook_url",
        hide_env_values = true
    )]
    webhook_secret: Option<WebhookSecret>,
    /// APNs: the team's signing key (`.p8`); with --apns-key-id, --apns-team-id, --apns-topic.
    #[arg(long, env = "BATON_APNS_KEY_FILE", requires_all = ["apns_key_id", "apns_team_id", "apns_topic"])]
    apns_key_file: Option<PathBuf>,
    #[arg(long, env = "BATON_APNS_KEY_ID")]
    apns_key_id: Option<String>,
    #[arg(long, env = "BATON_APNS_TEAM_ID")]
    apns_team_id: Option<String>,
    /// The iOS app's bundle id.
    #[arg(long, env = "BATON_APNS_TOPIC")]
    apns_topic: Option<String>,
    /// Where APNs requests go, over HTTP/2 (`http://` is cleartext HTTP/2: a local gateway).
    #[arg(long, env = "BATON_APNS_URL", default_value = "https://api.push.apple.com", value_parser = web_url)]
    apns_url: String,
    /// Root certificates (PEM) to trust for --apns-url besides the public ones.
    #[arg(long, env = "BATON_APNS_CA_FILE", requires = "apns_key_file")]
    apns_ca_file: Option<PathBuf>,
    /// FCM: the service account's key file (JSON, as Google issues it).
    #[arg(long, env = "BATON_FCM_SERVICE_ACCOUNT")]
    fcm_service_account: Option<PathBuf>,
    /// Where FCM requests go.
    #[arg(long, env = "BATON_FCM_URL", default_value = "https://fcm.googleapis.com", value_parser = web_url)]
    fcm_url: String,
    /// Tries before a notification is a dead letter.
    #[arg(long, env = "BATON_NOTIFY_MAX_ATTEMPTS", default_value_t = NotifyConfig::default().max_attempts, value_parser = clap::value_parser!(u32).range(1..=50))]
    notify_max_attempts: u32,
    /// The first retry's delay (`2s`); each later one doubles, at most an hour, with jitter.
    #[arg(long, env = "BATON_NOTIFY_RETRY_BASE", default_value = "2s")]
    notify_retry_base: Span,
    #[command(flatten)]
    common: Common,
}

#[derive(Subcommand)]
enum Token {
    /// Print a token for a user on a device, or (with --integration) for an integration.
    Issue(Issue),
}

#[derive(Args)]
struct Issue {
    #[arg(long, required_unless_present = "integration")]
    user: Option<String>,
    #[arg(long, required_unless_present = "integration")]
    device: Option<String>,
    /// A token for this integration (the EHR, say), good for `POST /api/v1/triggers` on its
    /// units (--unit) and nothing else.
    #[arg(long, conflicts_with_all = ["user", "device", "roles", "admin"])]
    integration: Option<String>,
    /// A role the token may act in (repeat for several).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// A unit the token may act on (repeat for several); an integration's token needs one.
    #[arg(long = "unit")]
    units: Vec<String>,
    /// May use the admin API.
    #[arg(long)]
    admin: bool,
    /// How long the token lasts (`30m`, `8h`, `2d`).
    #[arg(long, default_value = "8h")]
    ttl: Span,
    #[command(flatten)]
    common: Common,
}

/// A configuration file's text, or an error naming the file.
fn read_text(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// An `http://` or `https://` URL.
fn web_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or("a URL must start with https:// or http://")?;
    if rest.is_empty() || s.len() > 2048 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("not a URL".into());
    }
    Ok(s.to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(serve) => run(*serve),
        Command::Token(Token::Issue(issue)) => issue_token(issue),
        Command::Admin(AdminCommand::Grant(grant)) => grant_admin(grant),
        Command::Backup(b) => backup(b),
        Command::Audit(AuditCommand::Verify(records)) => match verify_audit(records) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baton-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tokens(common: &Common) -> TokenConfig {
    TokenConfig {
        issuer: common.issuer.clone(),
        audience: common.audience.clone(),
    }
}

fn issue_token(issue: Issue) -> Result<(), Box<dyn std::error::Error>> {
    let keys = Keys::load_or_create(&issue.common.data_dir)?;
    let ttl_secs = i64::try_from(issue.ttl.as_millis() / 1000)?;
    let now = baton_server::now_ms() / 1000;
    let tokens = tokens(&issue.common);
    let claims = match (issue.integration, issue.user, issue.device) {
        (Some(name), _, _) => {
            if name.is_empty() || name.len() > MAX_INTEGRATION_NAME {
                return Err(
                    format!("an integration's name is 1 to {MAX_INTEGRATION_NAME} bytes").into(),
                );
            }
            if issue.units.is_empty() {
                return Err("an integration's token needs at least one --unit".into());
            }
            let request = IntegrationTokenRequest {
                name,
                units: issue.units,
                ttl_secs,
            };
            request.claims(&tokens, now)
        }
        (None, Some(user), Some(device)) => {
            let request = TokenRequest {
                user,
                device,
                roles: issue.roles,
                units: issue.units,
                admin: issue.admin,
                ttl_secs,
            };
            request.claims(&tokens, now)
        }
        _ => return Err("--user and --device, or --integration, are required".into()),
    };
    println!("{}", keys.issue(&claims)?);
    Ok(())
}

fn grant_admin(grant: Grant) -> Result<(), Box<dyn std::error::Error>> {
    if grant.user.is_empty() || grant.user.len() > 128 {
        return Err("--user is 1 to 128 bytes".into());
    }
    grant.records.with(async |db| {
        let now = baton_server::now_ms();
        if db.user(&grant.user).await?.is_none() {
            let name = grant.display_name.as_deref().unwrap_or(&grant.user);
            db.upsert_user(&grant.user, name, now).await?;
        }
        for unit in &grant.units {
            if !db.unit_exists(unit).await? {
                return Err(format!("there is no unit `{unit}`").into());
            }
        }
        if grant.units.is_empty() {
            db.add_admin(&grant.user, now).await?;
            println!("{} administers the server", grant.user);
        } else {
            for unit in &grant.units {
                db.add_unit_admin(&grant.user, unit, now).await?;
            }
            println!("{} administers {}", grant.user, grant.units.join(", "));
        }
        Ok(())
    })
}

fn backup(backup: Backup) -> Result<(), Box<dyn std::error::Error>> {
    if backup.records.database_url.is_some() {
        return Err("a Postgres database is backed up with pg_dump (docs/operations.md)".into());
    }
    if backup.to.exists() && std::fs::read_dir(&backup.to)?.next().is_some() {
        return Err(format!("{} exists and is not empty", backup.to.display()).into());
    }
    std::fs::create_dir_all(&backup.to)?;
    let database = backup.to.join(baton_server::db::SQLITE_FILE);
    backup
        .records
        .with(async |db| Ok(db.backup_to(&database).await?))?;
    let key = baton_server::auth::KEY_FILE;
    let from = backup.records.common.data_dir.join(key);
    if from.exists() {
        let copied = backup.to.join(key);
        std::fs::copy(&from, &copied)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&copied, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    println!(
        "backed up to {}: {} and {key}",
        backup.to.display(),
        baton_server::db::SQLITE_FILE
    );
    Ok(())
}

fn verify_audit(records: Records) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let report = records.with(async |db| Ok(baton_server::audit::verify::verify(db).await?))?;
    println!("{report}");
    Ok(if report.broken.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run(serve: Serve) -> Result<(), Box<dyn std::error::Error>> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if serve.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let mut config = Config::new(serve.listen, serve.common.data_dir.clone());
    config.storage = match serve.database_url {
        Some(url) => Storage::Postgres(url),
        None => Storage::Sqlite,
    };
    config.demo = serve.demo;
    config.time_scale = serve.time_scale;
    config.tokens = tokens(&serve.common);
    config.jwks_url = serve.jwks_url;
    config.limits.header_read_timeout = serve.header_read_timeout;
    config.limits.idle_timeout = serve.idle_timeout;
    config.limits.max_connections_per_device = serve.max_connections_per_device;
    config.limits.max_connections_per_user = serve.max_connections_per_user;
    config.limits.max_connections_per_address = serve.max_connections_per_address;
    config.limits.max_documents_per_user = serve.max_documents_per_user;
    config.notify = NotifyConfig {
        webhook: serve
            .webhook_url
            .zip(serve.webhook_secret)
            .map(|(url, secret)| WebhookConfig { url, secret }),
        apns: match &serve.apns_key_file {
            Some(file) => {
                let apns = ApnsConfig::new(
                    serve.apns_url.clone(),
                    serve.apns_topic.clone().unwrap_or_default(),
                    serve.apns_team_id.clone().unwrap_or_default(),
                    serve.apns_key_id.clone().unwrap_or_default(),
                    &read_text(file)?,
                )?;
                Some(match &serve.apns_ca_file {
                    Some(roots) => apns.trusting(&read_text(roots)?)?,
                    None => apns,
                })
            }
            None => None,
        },
        fcm: match &serve.fcm_service_account {
            Some(file) => Some(FcmConfig::from_service_account(
                &read_text(file)?,
                serve.fcm_url.clone(),
            )?),
            None => None,
        },
        max_attempts: serve.notify_max_attempts,
        retry_base: serve.notify_retry_base,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let server = baton_server::Server::start(config).await?;
        if serve.demo {
            println!(
                "{}",
                baton_server::demo::banner(server.addr(), &serve.common.data_dir, serve.time_scale)
            );
        }
        server.run_until(shutdown_signal()).await;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
