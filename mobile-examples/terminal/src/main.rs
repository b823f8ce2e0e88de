//! `baton-phone`: a phone in a terminal. It embeds Baton's device client exactly as an app does
//! (an encrypted store, sync over WebSocket, offline work, the task-shaped API) and prints what
//! a phone's screens would show, so people can try Baton and scripts can drive it.
//!
//! ```sh
//! baton-phone --server http://127.0.0.1:7700 --token "$TOKEN" --store ./phone worklist
//! baton-phone --server http://127.0.0.1:7700 --store ./phone worklist --json
//! baton-phone --server http://127.0.0.1:7700 --store ./phone acknowledge <TASK_ID>
//! baton-phone --server http://127.0.0.1:7700 --store ./phone watch
//! ```
//!
//! The store's key is kept in `<store>/key` (a phone keeps it in the Keychain or Keystore).

use baton_core::client::{Client, ClientConfig, ClientError, Connection, SyncStatus};
use baton_core::event::FieldValue;
use baton_core::sync::DocumentId;
use baton_core::worklist::{Filter, Scope, WorkItem};
use clap::{Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "baton-phone", version, about = "A Baton phone in a terminal")]
struct Args {
    /// The server: `http://host:port` (its `/sync` is used) or a `ws://…/sync` URL.
    #[arg(long, env = "BATON_SERVER")]
    server: String,
    /// Sign in with this token (kept in the store; later runs need it no more).
    #[arg(long, env = "BATON_TOKEN")]
    token: Option<String>,
    /// The phone's data: its encrypted store and the store's key.
    #[arg(long, env = "BATON_STORE", default_value = "./baton-phone")]
    store: PathBuf,
    /// How long to wait for the server before working from what the phone holds.
    #[arg(long, default_value = "10")]
    wait_secs: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScopeArg {
    All,
    Mine,
    MyRoles,
    Unowned,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Who is signed in.
    Me,
    /// My worklist, riskiest first.
    Worklist {
        /// `{tasks: [{id, …, state}]}` on stdout, for scripts.
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value = "all")]
        scope: ScopeArg,
        #[arg(long)]
        unit: Option<String>,
        #[arg(long)]
        role: Option<String>,
    },
    /// The worklist, redrawn at every change until interrupted.
    Watch,
    /// A task: its steps, history, conflicts and what I may do now.
    Task {
        task: String,
        #[arg(long)]
        json: bool,
    },
    Claim {
        task: String,
    },
    Acknowledge {
        task: String,
    },
    StartStep {
        task: String,
        step: String,
    },
    /// Complete a step: `--field name=value` for each field it records.
    CompleteStep {
        task: String,
        step: String,
        #[arg(long = "field", value_parser = parse_field)]
        fields: Vec<(String, FieldValue)>,
    },
    Note {
        task: String,
        text: String,
    },
    /// Offer the task to someone else in its owner role.
    HandOff {
        task: String,
        to: String,
        #[arg(long)]
        note: Option<String>,
    },
    AcceptHandoff {
        task: String,
        offer: String,
    },
    Escalate {
        task: String,
    },
    Complete {
        task: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// The sync status.
    Status,
    /// Delete everything on this phone.
    Wipe,
}

/// `name=value`: `true`/`false` are booleans, whole numbers integers (timestamps), other
/// numbers numbers, anything else text.
fn parse_field(arg: &str) -> Result<(String, FieldValue), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("`{arg}` is not name=value"))?;
    let value = match value {
        "true" => FieldValue::Bool(true),
        "false" => FieldValue::Bool(false),
        v => v
            .parse::<i64>()
            .map(FieldValue::Int)
            .or_else(|_| v.parse::<f64>().map(FieldValue::Number))
            .unwrap_or_else(|_| FieldValue::Text(v.to_owned())),
    };
    Ok((name.to_owned(), value))
}

/// The sync endpoint for `--server`.
fn sync_url(server: &str) -> String {
    let server = server.trim_end_matches('/');
    if server.starts_with("ws://") || server.starts_with("wss://") {
        return server.to_owned();
    }
    let server = server
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    format!("{server}/sync")
}

/// The store's key, made on first use (readable by this user only).
fn store_key(dir: &Path) -> Result<[u8; 32], String> {
    let path = dir.join("key");
    if let Ok(bytes) = std::fs::read(&path) {
        return bytes
            .try_into()
            .map_err(|_| format!("{} is not a 32-byte key", path.display()));
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| e.to_string())?;
    std::fs::write(&path, key).map_err(|e| format!("{}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
    }
    Ok(key)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baton-phone: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.store).map_err(|e| e.to_string())?;
    let key = store_key(&args.store)?;
    let config = ClientConfig::new(sync_url(&args.server), args.store.join("phone.store"), key);
    let client = Client::open(config).await.map_err(|e| e.to_string())?;
    let wait = Duration::from_secs(args.wait_secs);
    if let Some(token) = &args.token {
        match client.sign_in(token.clone()).await {
            Ok(_) => {}
            // Offline: the token is kept, and who signed in is known from an earlier run.
            Err(ClientError::Api(e)) if client.me().is_some() => banner(&format!("offline: {e}")),
            Err(e) => return Err(e.to_string()),
        }
    }
    if client.me().is_none() {
        return Err("not signed in on this phone: pass --token".to_owned());
    }
    let online = settle(&client, wait).await;
    if !online {
        banner("offline: showing what this phone holds; changes sync when it reconnects");
    }
    let result = command(&client, args.command, wait).await;
    client.close().await;
    result
}

/// Wait (at most `wait`) until the phone is online, the server has everything it wrote, and
/// what it holds is what the server holds.
async fn settle(client: &Client, wait: Duration) -> bool {
    client.caught_up(wait).await
}

fn banner(text: &str) {
    eprintln!("⚠ {text}");
}

fn task_id(arg: &str) -> Result<DocumentId, String> {
    arg.strip_prefix("automerge:")
        .unwrap_or(arg)
        .parse()
        .map_err(|_| format!("`{arg}` is not a task id"))
}

async fn command(client: &Client, command: Command, wait: Duration) -> Result<(), String> {
    let e = |e: ClientError| e.to_string();
    let written = match command {
        Command::Me => {
            let me = client.me().ok_or("not signed in")?;
            println!("{} ({}) on {}", me.display_name, me.user, me.device);
            for unit in me.units {
                println!("  {} {}: {}", unit.id, unit.name, join(&unit.roles));
            }
            return Ok(());
        }
        Command::Status => {
            print_status(&client.status().borrow());
            return Ok(());
        }
        Command::Worklist {
            json,
            scope,
            unit,
            role,
        } => {
            let filter = Filter {
                scope: match scope {
                    ScopeArg::All => Scope::All,
                    ScopeArg::Mine => Scope::Mine,
                    ScopeArg::MyRoles => Scope::MyRoles,
                    ScopeArg::Unowned => Scope::Unowned,
                },
                unit: unit.map(Into::into),
                role: role.map(Into::into),
            };
            let items = client.my_worklist(&filter).await.map_err(e)?;
            if json {
                let mut tasks = Vec::new();
                for item in &items {
                    tasks.push(item_json(client, item).await?);
                }
                println!("{}", serde_json::json!({ "tasks": tasks }));
            } else {
                print_worklist(client, &items);
            }
            return Ok(());
        }
        Command::Watch => return watch(client).await,
        Command::Task { task, json } => {
            let view = client.task(task_id(&task)?).await.map_err(e)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&view).map_err(|e| e.to_string())?
                );
            } else {
                print_task(&view);
            }
            return Ok(());
        }
        Command::Claim { task } => client.claim(task_id(&task)?).await,
        Command::Acknowledge { task } => client.acknowledge(task_id(&task)?).await,
        Command::StartStep { task, step } => client.start_step(task_id(&task)?, step.into()).await,
        Command::CompleteStep { task, step, fields } => {
            let fields: BTreeMap<String, FieldValue> = fields.into_iter().collect();
            client
                .complete_step(task_id(&task)?, step.into(), fields)
                .await
        }
        Command::Note { task, text } => client.note(task_id(&task)?, text).await,
        Command::HandOff { task, to, note } => {
            client.hand_off(task_id(&task)?, to.into(), note).await
        }
        Command::AcceptHandoff { task, offer } => {
            client.accept_handoff(task_id(&task)?, offer.into()).await
        }
        Command::Escalate { task } => client.escalate(task_id(&task)?).await,
        Command::Complete { task, note } => client.complete(task_id(&task)?, note).await,
        Command::Wipe => {
            client.wipe();
            println!("wiped");
            return Ok(());
        }
    };
    let event = written.map_err(|err| match err.refusal() {
        Some(refusal) => format!("refused: {refusal}"),
        None => err.to_string(),
    })?;
    if settle(client, wait).await {
        println!("{} {} (synced)", event.kind(), event.id);
    } else {
        println!(
            "{} {} (saved on this phone; it syncs when the phone is online)",
            event.kind(),
            event.id
        );
    }
    Ok(())
}

/// A worklist line for scripts: the item's fields, and the task's folded `state`.
async fn item_json(client: &Client, item: &WorkItem) -> Result<serde_json::Value, String> {
    let mut json = serde_json::to_value(item).map_err(|e| e.to_string())?;
    let id = task_id(&item.id)?;
    let view = client.task(id).await.map_err(|e| e.to_string())?;
    json["url"] = id.url().into();
    json["state"] = serde_json::to_value(&view.state).map_err(|e| e.to_string())?;
    Ok(json)
}

fn join(items: &[impl ToString]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_status(status: &SyncStatus) {
    let connection = match &status.connection {
        Connection::Offline => "offline".to_owned(),
        Connection::Connecting => "connecting".to_owned(),
        Connection::Online => "online".to_owned(),
        Connection::Refused(why) => format!("refused: {why}"),
        Connection::Wiped => "wiped".to_owned(),
    };
    println!(
        "{connection} · {} change(s) waiting for the server{}",
        status.unacknowledged,
        status
            .last_error
            .as_ref()
            .map(|e| format!(" · last error: {e}"))
            .unwrap_or_default()
    );
}

fn minutes(client: &Client, at: Option<i64>) -> String {
    match at {
        None => "—".to_owned(),
        Some(at) => {
            let m = (at - client.server_now()) / 60_000;
            if m < 0 {
                format!("{} min overdue", -m)
            } else {
                format!("due in {m} min")
            }
        }
    }
}

fn print_worklist(client: &Client, items: &[WorkItem]) {
    if items.is_empty() {
        println!("nothing on the worklist");
    }
    for item in items {
        let flags = [
            (item.overdue, "OVERDUE"),
            (item.escalation_level > 0, "ESCALATED"),
            (item.waiting, "waiting"),
            (item.offered_to_me, "offered to you"),
            (item.open_exceptions > 0, "exception"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, f)| *f)
        .collect::<Vec<_>>()
        .join(" ");
        println!(
            "{:<8} {:<24.24} {:<20.20} {:<5} {:<12} {:<18} {}",
            item.acuity,
            item.label,
            item.name,
            item.unit,
            item.owner
                .as_ref()
                .map_or_else(|| "unowned".to_owned(), ToString::to_string),
            minutes(client, item.next_due_at),
            flags
        );
        println!("         {}", item.id);
    }
}

fn print_task(view: &baton_core::view::TaskView) {
    let s = &view.state;
    println!("{} · {} · {}", view.name, view.meta.subject.label, s.acuity);
    println!(
        "status {:?} · owner {} · {}",
        s.status,
        s.owner
            .as_ref()
            .map_or_else(|| "nobody".to_owned(), |o| o.user.to_string()),
        if s.acknowledged.is_some() {
            "acknowledged"
        } else {
            "not acknowledged"
        }
    );
    println!("steps:");
    for step in &view.steps {
        let fields = join(&step.fields.iter().map(|f| &f.name).collect::<Vec<_>>());
        println!(
            "  [{:?}] {} ({}){}",
            step.status,
            step.name,
            step.role,
            if fields.is_empty() {
                String::new()
            } else {
                format!(" — records {fields}")
            }
        );
    }
    println!("history:");
    for h in &s.history {
        println!(
            "  {} {:?} by {} ({}) · device clock {} · {:?}",
            h.hlc, h.kind, h.actor.user, h.actor.role, h.device_time, h.outcome
        );
    }
    for c in &s.conflicts {
        println!(
            "  conflict: {:?} by {}: {}",
            c.kind, c.actor.user, c.refusal
        );
    }
    let may: Vec<String> = view
        .may
        .iter()
        .map(|m| {
            serde_json::to_value(&m.action)
                .map_or_else(|_| String::new(), |v| v["action"].to_string())
        })
        .collect();
    println!("you may: {}", may.join(", ").replace('"', ""));
}

/// Redraw the worklist whenever the sync status or any listed task changes.
async fn watch(client: &Client) -> Result<(), String> {
    let mut status = client.status();
    loop {
        let items = client
            .my_worklist(&Filter::default())
            .await
            .map_err(|e| e.to_string())?;
        print!("\x1b[2J\x1b[H");
        let now = status.borrow_and_update().clone();
        if now.connection != Connection::Online {
            banner("offline: showing what this phone holds");
        }
        print_status(&now);
        print_worklist(client, &items);
        // A task changing, or a unit's index (a task added or closed), redraws.
        let indexes = client
            .me()
            .map(|me| {
                me.units
                    .iter()
                    .filter_map(|u| u.index())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut subscriptions: Vec<_> = items
            .iter()
            .filter_map(|i| i.id.parse().ok())
            .chain(indexes)
            .map(|id| client.subscribe(id))
            .collect();
        let changed = async {
            if subscriptions.is_empty() {
                std::future::pending::<()>().await;
            }
            let waits = subscriptions.iter_mut().map(|s| Box::pin(s.recv()));
            futures_select(waits).await;
        };
        tokio::select! {
            _ = status.changed() => {}
            () = changed => {}
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Resolves when the first of `futures` does.
async fn futures_select<F: std::future::Future + Unpin>(futures: impl Iterator<Item = F>) {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(|cx| {
        for f in &mut futures {
            if std::pin::Pin::new(f).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await;
}
