//! `baton-timer-bench`: the timer scheduler with many timers pending and some falling due.
//!
//! It starts an in-process server (demo units and people, routing off, so only the timers made
//! here fire) on SQLite in a temporary directory or on a scratch Postgres database, then:
//!
//! 1. opens `--due` real consult tasks through the hub (the path a trigger takes once its body
//!    is checked), each created at its own workflow time so that their acknowledgment windows
//!    end `--window` seconds apart in all; each commit writes the task's real timer row;
//! 2. inserts `--pending` minus `--due` more timer rows directly with SQL, due 30 to 60 days
//!    ahead (they never fall due during the run), in multi-row `INSERT`s inside transactions;
//! 3. **spread phase**: moves the workflow clock once ([`baton_server::WorkflowClock::advance`])
//!    to one second before the first real timer is due and leaves it running at real speed, so
//!    the real timers fall due one after another over `--window` seconds of real time while the
//!    scheduler runs its own loop (nothing here calls `fire_due`);
//! 4. **burst phase**: once the fired tasks have left memory, moves the clock past every real
//!    task's next timer at once, and times how fast the scheduler drains them.
//!
//! A firing counts as stored when the scheduler logs it: after the task's commit and the release
//! of its claim. Lateness is that moment minus the timer's due time, on the workflow clock. The
//! commit's own `received_at` (when its transaction began) is reported beside it.
//!
//! Only 127.0.0.1 is ever contacted.

use baton_core::ids::UnitId;
use baton_core::sync::DocumentId;
use baton_core::{Author, HlcClock, NewTask, Subject, TaskDoc};
use baton_server::{Config, Server, Storage, WorkflowClock, now_ms};
use clap::{Parser, ValueEnum};
use sqlx::{AnyConnection, Connection, Row};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, filter};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Parser, Debug)]
#[command(about = "Benchmark of the timer scheduler: many timers pending, some falling due")]
struct Args {
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// Timer rows in `task_timers` in all, the real ones included.
    #[arg(long, default_value_t = 1_000_000)]
    pending: usize,
    /// Real tasks, whose timers fall due during the run.
    #[arg(long, default_value_t = 10_000)]
    due: usize,
    /// Seconds of real time over which the real timers fall due, evenly spaced.
    #[arg(long, default_value_t = 60)]
    window: u64,
    /// Skip the burst phase.
    #[arg(long)]
    no_burst: bool,
    /// Give up a phase after this many seconds past its last due time.
    #[arg(long, default_value_t = 180)]
    phase_timeout: u64,
    /// The Postgres server to make the scratch database on (only 127.0.0.1).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres: String,
    /// Tasks opened at once during setup.
    #[arg(long, default_value_t = 16)]
    open_concurrency: usize,
}

/// Where the scheduler's "fired" log lines go: each doc with the workflow time it was logged at.
#[derive(Debug, Default)]
struct Firings {
    clock: OnceLock<Arc<WorkflowClock>>,
    log: Mutex<Vec<(String, i64)>>,
}

impl Firings {
    fn len(&self) -> usize {
        self.log.lock().map(|l| l.len()).unwrap_or(0)
    }

    fn since(&self, from: usize) -> Vec<(String, i64)> {
        self.log
            .lock()
            .map(|l| l.get(from..).unwrap_or_default().to_vec())
            .unwrap_or_default()
    }
}

#[derive(Debug)]
struct FiredLayer(Arc<Firings>);

#[derive(Default)]
struct FiredFields {
    doc: Option<String>,
    late: bool,
}

impl tracing_subscriber::field::Visit for FiredFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "doc" => self.doc = Some(format!("{value:?}")),
            "late_ms" => self.late = true,
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &tracing::field::Field, _value: i64) {
        if field.name() == "late_ms" {
            self.late = true;
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for FiredLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let Some(clock) = self.0.clock.get() else {
            return;
        };
        let mut fields = FiredFields::default();
        event.record(&mut fields);
        if let (Some(doc), true) = (fields.doc, fields.late) {
            let at = clock.now();
            if let Ok(mut log) = self.0.log.lock() {
                log.push((doc, at));
            }
        }
    }
}

/// CPU time this process has used (user and system), in ms. `/proc` counts in USER_HZ, 100 a
/// second on Linux.
fn cpu_ms() -> i64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<i64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum::<i64>() * 10
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn memory_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// The `p` quantile of sorted samples (nearest rank); 0 when there are none.
fn quantile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// xorshift64*: spread the filler rows' due times without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

const DAY_MS: i64 = 86_400_000;
/// Filler rows per `INSERT` and `INSERT`s per transaction.
const FILL_ROWS: usize = 500;
const FILL_STATEMENTS: usize = 100;

/// What one phase measured.
#[derive(Debug, Default)]
struct Phase {
    expected: usize,
    fired: usize,
    /// Stored (logged after commit and release) minus due, ms, sorted.
    late: Vec<i64>,
    /// The commit's `received_at` minus due, ms, sorted.
    commit_late: Vec<i64>,
    /// Firings per second, first to last stored (spread) or from becoming due to the last
    /// (burst).
    rate: f64,
    span_ms: i64,
    timed_out: bool,
}

impl Phase {
    fn row(&self, name: &str) -> String {
        let q = |v: &[i64], p| quantile(v, p);
        format!(
            "{name}: fired {} of {}{} in {:.1} s, {:.0}/s; stored − due p50 {} ms, p99 {} ms, max {} ms; commit start − due p50 {} ms, p99 {} ms, max {} ms",
            self.fired,
            self.expected,
            if self.timed_out { " (timed out)" } else { "" },
            self.span_ms as f64 / 1000.0,
            self.rate,
            q(&self.late, 0.5),
            q(&self.late, 0.99),
            self.late.last().copied().unwrap_or(0),
            q(&self.commit_late, 0.5),
            q(&self.commit_late, 0.99),
            self.commit_late.last().copied().unwrap_or(0),
        )
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    if args.due == 0 || args.pending < args.due {
        return Err("--pending must be at least --due, and --due at least 1".into());
    }
    let firings = Arc::new(Firings::default());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer().with_filter(
                tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            ),
        )
        .with(FiredLayer(firings.clone()).with_filter(
            filter::Targets::new().with_target("baton_server::timers", tracing::Level::INFO),
        ))
        .init();
    sqlx::any::install_default_drivers();

    let dir = tempfile::tempdir()?;
    let (storage, scratch) = match args.backend {
        Backend::Sqlite => (Storage::Sqlite, None),
        Backend::Postgres => {
            let (url, name) = create_scratch(&args.postgres).await?;
            (Storage::Postgres(url), Some(name))
        }
    };
    let result = run(&args, dir.path(), storage.clone(), &firings).await;
    if let Some(name) = scratch {
        drop_scratch(&args.postgres, &name).await?;
    }
    result
}

/// A fresh database on the Postgres at `admin`: its URL and name.
async fn create_scratch(admin: &str) -> Result<(String, String), Error> {
    let name = format!("baton_timer_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = AnyConnection::connect(admin).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    Ok((format!("{base}/{name}"), name))
}

async fn drop_scratch(admin: &str, name: &str) -> Result<(), Error> {
    let mut conn = AnyConnection::connect(admin).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    eprintln!("dropped scratch database {name}");
    Ok(())
}

async fn run(
    args: &Args,
    data_dir: &std::path::Path,
    storage: Storage,
    firings: &Arc<Firings>,
) -> Result<(), Error> {
    let backend = args.backend;
    let (rss_start, _) = memory_kb();
    let mut config = Config::new("127.0.0.1:0".parse()?, data_dir);
    config.storage = storage.clone();
    // Units, people and rotations to escalate to; routing off, so a new task's only timer is
    // its acknowledgment window's end.
    config.demo = true;
    config.routing = baton_core::policy::escalation::Routing::Off;
    let server = Server::start(config).await?;
    let state = server.state().clone();
    let clock = state.clock.clone();
    let _ = firings.clock.set(clock.clone());
    let url = match &storage {
        Storage::Sqlite => format!("sqlite://{}", data_dir.join("baton.db").display()),
        Storage::Postgres(url) => url.clone(),
    };
    let mut conn = AnyConnection::connect(&url).await?;
    if backend == Backend::Sqlite {
        sqlx::query("PRAGMA busy_timeout = 10000")
            .execute(&mut conn)
            .await?;
    }
    // The demo's own tasks have timers too; only the benchmark's fire.
    let demo_timers = sqlx::query("DELETE FROM task_timers")
        .execute(&mut conn)
        .await?
        .rows_affected();
    let (rss_server, _) = memory_kb();

    // 1. Real tasks, created `window / due` apart on the workflow clock.
    let window_ms = i64::try_from(args.window)? * 1_000;
    let template = state
        .hub
        .templates()
        .latest(&"consult".into())
        .ok_or("no consult template")?
        .clone();
    let base = clock.now();
    let opening = Instant::now();
    let mut docs: Vec<String> = Vec::with_capacity(args.due);
    let mut next = 0usize;
    let mut running = tokio::task::JoinSet::new();
    while next < args.due || !running.is_empty() {
        while next < args.due && running.len() < args.open_concurrency {
            let n = next;
            next += 1;
            let created = base + window_ms * i64::try_from(n)? / i64::try_from(args.due)?;
            let unit = if n.is_multiple_of(2) { "4W" } else { "ICU" };
            let (task, _) = TaskDoc::create(
                &template,
                NewTask {
                    unit: UnitId::new(unit),
                    subject: Subject {
                        reference: format!("bench-{n}"),
                        label: format!("Bench {n}"),
                    },
                    acuity: None,
                    note: None,
                },
                &Author::system("integration:bench"),
                &mut HlcClock::new(),
                created,
                automerge::ActorId::random(),
            )
            .map_err(|e| e.to_string())?;
            let id = DocumentId::random();
            docs.push(id.to_string());
            let hub = state.hub.clone();
            running.spawn(async move { hub.open_task(id, task, None).await });
        }
        if let Some(done) = running.join_next().await {
            done?.map_err(|e| e.to_string())?;
        }
    }
    let opened_in = opening.elapsed();
    let mine: HashSet<String> = docs.iter().cloned().collect();

    // The real timers, as their commits wrote them.
    let rows = sqlx::query("SELECT doc_id, due_at, event_id, action FROM task_timers")
        .fetch_all(&mut conn)
        .await?;
    let mut due_of: HashMap<String, (i64, String)> = HashMap::new();
    let mut sample = None;
    for r in &rows {
        let doc: String = r.try_get(0)?;
        let due: i64 = r.try_get(1)?;
        let event: String = r.try_get(2)?;
        let action: String = r.try_get(3)?;
        sample.get_or_insert((event.clone(), action));
        due_of.insert(doc, (due, event));
    }
    if due_of.len() != args.due || !due_of.keys().all(|d| mine.contains(d)) {
        return Err(format!(
            "{} timer rows after opening {} tasks",
            due_of.len(),
            args.due
        )
        .into());
    }
    let (sample_event, sample_action) = sample.ok_or("no timer rows")?;
    let first_due = due_of.values().map(|d| d.0).min().unwrap_or(0);
    let last_due = due_of.values().map(|d| d.0).max().unwrap_or(0);

    // 2. Filler rows, far ahead.
    let filling = Instant::now();
    let filler = args.pending - args.due;
    let mut rng = Rng(u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into()?) | 1);
    let far = clock.now() + 30 * DAY_MS;
    let mut left = filler;
    while left > 0 {
        let mut tx = conn.begin().await?;
        for _ in 0..FILL_STATEMENTS {
            if left == 0 {
                break;
            }
            let rows = left.min(FILL_ROWS);
            left -= rows;
            let values: Vec<String> = (0..rows)
                .map(|i| {
                    let p = i * 4;
                    format!("(${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4)
                })
                .collect();
            let sql = format!(
                "INSERT INTO task_timers (doc_id, due_at, event_id, action) VALUES {}",
                values.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for _ in 0..rows {
                let ahead = i64::try_from(rng.next() % u64::try_from(30 * DAY_MS)?)?;
                query = query
                    .bind(DocumentId::random().to_string())
                    .bind(far + ahead)
                    .bind(sample_event.clone())
                    .bind(sample_action.clone());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    let filled_in = filling.elapsed();
    let mid = first_due + (last_due - first_due) / 2;
    let mut unanalyzed = None;
    if backend == Backend::Postgres {
        // What autovacuum would do to a table that grew by a million rows (this server may run
        // without it).
        unanalyzed = Some(
            pg_plan(
                &mut conn,
                &format!("EXPLAIN {}", state.db.claim_due_timers_sql()),
                now_ms(),
                mid,
            )
            .await?,
        );
        sqlx::query("ANALYZE task_timers")
            .execute(&mut conn)
            .await?;
        // The filler's half a gigabyte of WAL sets off a checkpoint a few seconds later, which
        // would otherwise run through the measured phase; in service the load came in long ago.
        sqlx::query("CHECKPOINT").execute(&mut conn).await?;
    }
    let pending = state.db.pending_timers().await?;
    let (rss_before, _) = memory_kb();
    let size_before = table_size(&mut conn, backend).await?;

    // The claim query at a moment in the window: half the real timers due, none claimed.
    let plan = explain(&mut conn, &state.db, backend, mid).await?;
    let (claim_ms, claimed) = time_claim(&mut conn, &state.db, mid).await?;
    let min_ms = time_query(&mut conn, "SELECT MIN(due_at) FROM task_timers").await?;
    let count_ms = time_query(&mut conn, "SELECT COUNT(*) FROM task_timers").await?;

    println!(
        "backend {backend:?}: {pending} timers pending ({} real, {filler} far ahead; {demo_timers} demo timers removed)",
        args.due
    );
    println!(
        "setup: opened {} tasks in {:.1} s ({:.0}/s); inserted {filler} rows in {:.1} s",
        args.due,
        opened_in.as_secs_f64(),
        args.due as f64 / opened_in.as_secs_f64(),
        filled_in.as_secs_f64()
    );
    if let Some(unanalyzed) = unanalyzed {
        println!("claim query plan before ANALYZE:\n{unanalyzed}");
    }
    println!("the spread phase's timers write events like `{sample_event}`: {sample_action}");
    println!("claim query plan:\n{plan}");
    println!(
        "claim of up to 256 ({claimed} due, rolled back) {claim_ms:.2} ms; MIN(due_at) {min_ms:.2} ms; COUNT(*) {count_ms:.2} ms"
    );

    // 3. Spread: the clock one second before the first due time, then at real speed.
    let loaded_before = state.hub.loaded_documents();
    let lead = 1_000;
    let mut advanced = clock.now() - now_ms();
    let commits_before = Commits::of(&published(&state));
    let pg_before = pg_stats(&mut conn, backend).await?;
    let cpu_before = cpu_ms();
    // Measured from the clock as it is now: the reads above take time, on Postgres most of a
    // second, which would otherwise start the phase with that much already overdue.
    let step = first_due - lead - clock.now();
    if step <= 0 {
        return Err("setup took longer than the acknowledgment window".into());
    }
    clock.advance(step);
    advanced += step;
    let from = firings.len();
    let started_real = now_ms();
    println!("spread phase from {}", stamp(started_real));
    let deadline = Instant::now()
        + Duration::from_millis(u64::try_from(lead + window_ms)?)
        + phase_timeout(args);
    let spread_log = wait_for(firings, from, &mine, args.due, deadline).await;
    let mut spread = measure(
        &spread_log,
        &mine,
        |doc| due_of.get(doc).map(|d| d.0),
        args.due,
    );
    spread.timed_out = spread.fired < args.due;
    let first_stored = spread_log.iter().map(|f| f.1).min().unwrap_or(0);
    let last_stored = spread_log.iter().map(|f| f.1).max().unwrap_or(0);
    spread.span_ms = last_stored - first_stored;
    spread.rate = rate(spread.fired, spread.span_ms);
    spread.commit_late = commit_lateness(&mut conn, &due_of, started_real, advanced).await?;
    let (rss_after_spread, _) = memory_kb();
    let loaded_after_spread = state.hub.loaded_documents();
    let cpu = cpu_ms() - cpu_before;
    println!("spread phase to {}", stamp(now_ms()));
    println!("{}", spread.row("spread"));
    println!(
        "{}",
        by_tenth(&spread_log, &mine, &due_of, first_due, last_due)
    );
    println!("{}", cpu_line(cpu, spread.fired, now_ms() - started_real));
    let commits = Commits::of(&published(&state)).since(&commits_before);
    println!("{}", commits.line(spread.fired));
    if let (Some(before), Some(after)) = (pg_before, pg_stats(&mut conn, backend).await?) {
        println!("{}", pg_delta(&before, &after, spread.fired));
    }
    let metrics = published(&state);
    let timer_lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("baton_timer"))
        .collect();
    println!(
        "server's figures after the spread phase:\n{}",
        timer_lines.join("\n")
    );
    println!(
        "memory: RSS at start {}, server up {}, before firing {}, after the spread phase {} ({loaded_after_spread} documents in memory)",
        mib(rss_start),
        mib(rss_server),
        mib(rss_before),
        mib(rss_after_spread)
    );

    // 4. Burst: once the fired tasks left memory, every real task's next timer due at once.
    let mut burst = None;
    let mut rss_evicted = 0;
    if !args.no_burst {
        let idle_deadline = Instant::now() + Duration::from_secs(90);
        while state.hub.loaded_documents() > loaded_before && Instant::now() < idle_deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        rss_evicted = memory_kb().0;
        println!(
            "after waiting for idle documents to leave memory: {} documents in memory (before firing: {loaded_before})",
            state.hub.loaded_documents()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT doc_id, due_at, event_id FROM task_timers WHERE due_at < {far}"
        )))
        .fetch_all(&mut conn)
        .await?;
        let mut next_of: HashMap<String, (i64, String)> = HashMap::new();
        for r in &rows {
            next_of.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
        }
        if let Some((_, event)) = next_of.values().next() {
            println!("the burst's timers write events like `{event}`");
        }
        let expected = next_of.keys().filter(|d| mine.contains(*d)).count();
        let latest = next_of.values().map(|d| d.0).max().unwrap_or(0);
        let step = (latest + 1 - clock.now()).max(0);
        let from = firings.len();
        let commits_before = Commits::of(&published(&state));
        let pg_before = pg_stats(&mut conn, backend).await?;
        let started_real = now_ms();
        let cpu_before = cpu_ms();
        println!("burst phase from {}", stamp(started_real));
        clock.advance(step);
        advanced += step;
        let became_due = clock.now();
        let deadline = Instant::now() + phase_timeout(args);
        let log = wait_for(firings, from, &mine, expected, deadline).await;
        // Lateness here is how long each waited from the moment all fell due.
        let mut phase = measure(&log, &mine, |_| Some(became_due), expected);
        phase.timed_out = phase.fired < expected;
        phase.span_ms = log.iter().map(|f| f.1).max().unwrap_or(became_due) - became_due;
        phase.rate = rate(phase.fired, phase.span_ms);
        let became: HashMap<String, (i64, String)> = next_of
            .into_iter()
            .map(|(doc, (_, event))| (doc, (became_due, event)))
            .collect();
        phase.commit_late = commit_lateness(&mut conn, &became, started_real, advanced).await?;
        let cpu = cpu_ms() - cpu_before;
        println!("burst phase to {}", stamp(now_ms()));
        println!("{}", phase.row("burst (wait from all due)"));
        println!("{}", cpu_line(cpu, phase.fired, now_ms() - started_real));
        let commits = Commits::of(&published(&state)).since(&commits_before);
        println!("{}", commits.line(phase.fired));
        if let (Some(before), Some(after)) = (pg_before, pg_stats(&mut conn, backend).await?) {
            println!("{}", pg_delta(&before, &after, phase.fired));
        }
        burst = Some(phase);
    }
    let (rss_end, hwm) = memory_kb();
    let size_after = table_size(&mut conn, backend).await?;
    let evicted = if args.no_burst {
        "-".to_owned()
    } else {
        mib(rss_evicted)
    };
    println!(
        "memory: after eviction {evicted}, at the end {}, peak {}",
        mib(rss_end),
        mib(hwm)
    );
    println!("task_timers before firing: {size_before}");
    println!("task_timers at the end:    {size_after}");
    let kinds = sqlx::query(
        "SELECT kind, COUNT(*) FROM task_events
         WHERE user_id = 'baton' AND role_id = 'system' AND kind <> 'created'
         GROUP BY kind ORDER BY kind",
    )
    .fetch_all(&mut conn)
    .await?;
    let mut stored = Vec::new();
    for r in &kinds {
        stored.push(format!(
            "{} {}",
            r.try_get::<String, _>(0)?,
            r.try_get::<i64, _>(1)?
        ));
    }
    println!("system events stored by firings: {}", stored.join(", "));

    let burst = burst.unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({
            "backend": format!("{backend:?}").to_lowercase(),
            "pending": pending,
            "due": args.due,
            "window_s": args.window,
            "open_per_s": args.due as f64 / opened_in.as_secs_f64(),
            "fill_s": filled_in.as_secs_f64(),
            "spread": phase_json(&spread),
            "burst": phase_json(&burst),
            "rss_kib": {
                "start": rss_start, "server": rss_server, "before": rss_before,
                "after_spread": rss_after_spread, "evicted": rss_evicted, "end": rss_end, "peak": hwm,
            },
            "claim_ms": claim_ms, "min_due_ms": min_ms, "count_ms": count_ms,
            "table_before": size_before, "table_after": size_after,
        })
    );
    drop(conn);
    server.shutdown().await;
    Ok(())
}

fn phase_timeout(args: &Args) -> Duration {
    Duration::from_secs(args.phase_timeout)
}

fn rate(fired: usize, span_ms: i64) -> f64 {
    if span_ms <= 0 {
        0.0
    } else {
        fired as f64 * 1_000.0 / span_ms as f64
    }
}

fn phase_json(p: &Phase) -> serde_json::Value {
    serde_json::json!({
        "fired": p.fired, "expected": p.expected, "timed_out": p.timed_out,
        "rate_per_s": p.rate, "span_ms": p.span_ms,
        "late_ms": { "p50": quantile(&p.late, 0.5), "p99": quantile(&p.late, 0.99), "max": p.late.last() },
        "commit_start_late_ms": { "p50": quantile(&p.commit_late, 0.5), "p99": quantile(&p.commit_late, 0.99), "max": p.commit_late.last() },
    })
}

/// Wait until `expected` of `mine` have fired since log position `from`, or `deadline`.
async fn wait_for(
    firings: &Firings,
    from: usize,
    mine: &HashSet<String>,
    expected: usize,
    deadline: Instant,
) -> Vec<(String, i64)> {
    loop {
        let log = firings.since(from);
        let fired: HashSet<&String> = log
            .iter()
            .map(|f| &f.0)
            .filter(|d| mine.contains(*d))
            .collect();
        if fired.len() >= expected || Instant::now() >= deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first firing of each of `mine` in `log`, against its due time.
fn measure(
    log: &[(String, i64)],
    mine: &HashSet<String>,
    due: impl Fn(&str) -> Option<i64>,
    expected: usize,
) -> Phase {
    let mut first: HashMap<&str, i64> = HashMap::new();
    for (doc, at) in log.iter().filter(|f| mine.contains(&f.0)) {
        first.entry(doc.as_str()).or_insert(*at);
    }
    let mut late: Vec<i64> = first
        .iter()
        .filter_map(|(doc, at)| Some(at - due(doc)?))
        .collect();
    late.sort_unstable();
    Phase {
        expected,
        fired: first.len(),
        late,
        ..Phase::default()
    }
}

/// For each timer in `due_of` whose event was stored since `since_real`: the commit's
/// `received_at` (real time, when its transaction began) on the workflow clock, minus due.
async fn commit_lateness(
    conn: &mut AnyConnection,
    due_of: &HashMap<String, (i64, String)>,
    since_real: i64,
    offset: i64,
) -> Result<Vec<i64>, Error> {
    let rows = sqlx::query(
        "SELECT doc_id, event_id, received_at FROM task_events WHERE received_at >= $1",
    )
    .bind(since_real)
    .fetch_all(&mut *conn)
    .await?;
    let mut late = Vec::new();
    for r in &rows {
        let doc: String = r.try_get(0)?;
        let event: String = r.try_get(1)?;
        let received: i64 = r.try_get(2)?;
        if let Some((due, expected)) = due_of.get(&doc)
            && *expected == event
        {
            late.push(received + offset - due);
        }
    }
    late.sort_unstable();
    Ok(late)
}

/// The size of `task_timers` and its indexes.
async fn table_size(conn: &mut AnyConnection, backend: Backend) -> Result<String, Error> {
    match backend {
        Backend::Sqlite => {
            let rows = sqlx::query(
                "SELECT name, SUM(pgsize) FROM dbstat
                 WHERE name IN ('task_timers', 'task_timers_due', 'sqlite_autoindex_task_timers_1')
                 GROUP BY name ORDER BY name",
            )
            .fetch_all(&mut *conn)
            .await?;
            let mut parts = Vec::new();
            let mut total = 0i64;
            for r in &rows {
                let name: String = r.try_get(0)?;
                let bytes: i64 = r.try_get(1)?;
                total += bytes;
                parts.push(format!("{name} {}", bytes_text(bytes)));
            }
            let pages: i64 = sqlx::query("PRAGMA page_count")
                .fetch_one(&mut *conn)
                .await?
                .try_get(0)?;
            let page: i64 = sqlx::query("PRAGMA page_size")
                .fetch_one(&mut *conn)
                .await?
                .try_get(0)?;
            Ok(format!(
                "{} in all ({}); whole database {}",
                bytes_text(total),
                parts.join(", "),
                bytes_text(pages * page)
            ))
        }
        Backend::Postgres => {
            let r = sqlx::query(
                "SELECT pg_total_relation_size('task_timers'), pg_relation_size('task_timers'),
                        pg_indexes_size('task_timers'), pg_database_size(current_database())",
            )
            .fetch_one(&mut *conn)
            .await?;
            let (total, heap, indexes, db): (i64, i64, i64, i64) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
            Ok(format!(
                "{} in all (heap {}, indexes {}); whole database {}",
                bytes_text(total),
                bytes_text(heap),
                bytes_text(indexes),
                bytes_text(db)
            ))
        }
    }
}

fn bytes_text(bytes: i64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The claim statement's plan at workflow time `now`.
async fn explain(
    conn: &mut AnyConnection,
    db: &baton_server::db::Db,
    backend: Backend,
    now: i64,
) -> Result<String, Error> {
    let real = now_ms();
    let sql = db.claim_due_timers_sql();
    match backend {
        Backend::Sqlite => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .bind("bench")
                .bind(real + 30_000)
                .bind(now)
                .bind(real)
                .bind(256i64)
                .fetch_all(&mut *conn)
                .await?;
            let mut depth: HashMap<i64, usize> = HashMap::new();
            let mut out = Vec::new();
            for r in &rows {
                let id: i64 = r.try_get(0)?;
                let parent: i64 = r.try_get(1)?;
                let detail: String = r.try_get(3)?;
                let d = depth.get(&parent).map_or(0, |d| d + 1);
                depth.insert(id, d);
                out.push(format!("{}{detail}", "  ".repeat(d)));
            }
            Ok(out.join("\n"))
        }
        Backend::Postgres => {
            let plain = pg_plan(conn, &format!("EXPLAIN {sql}"), real, now).await?;
            // Run for real inside a transaction that is rolled back: the rows it read.
            let mut tx = conn.begin().await?;
            let analyzed = pg_plan(
                &mut tx,
                &format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"),
                real,
                now,
            )
            .await?;
            tx.rollback().await?;
            // The plan a prepared statement may settle on after five runs, made for any values.
            let mut tx = conn.begin().await?;
            for statement in [
                "SET LOCAL plan_cache_mode = force_generic_plan".to_owned(),
                format!("PREPARE bench_claim (text, bigint, bigint, bigint, bigint) AS {sql}"),
            ] {
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(&mut *tx)
                    .await?;
            }
            let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "EXPLAIN EXECUTE bench_claim('bench', {}, {now}, {real}, 256)",
                real + 30_000
            )))
            .fetch_all(&mut *tx)
            .await?;
            let generic: Result<Vec<String>, sqlx::Error> =
                rows.iter().map(|r| r.try_get(0)).collect();
            let generic = generic?.join("\n");
            tx.rollback().await?;
            Ok(format!(
                "{plain}\n-- EXPLAIN (ANALYZE, BUFFERS), rolled back:\n{analyzed}\n-- generic plan:\n{generic}"
            ))
        }
    }
}

async fn pg_plan(
    conn: &mut AnyConnection,
    sql: &str,
    real: i64,
    now: i64,
) -> Result<String, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind("bench")
        .bind(real + 30_000)
        .bind(now)
        .bind(real)
        .bind(256i64)
        .fetch_all(&mut *conn)
        .await?;
    let lines: Result<Vec<String>, sqlx::Error> = rows.iter().map(|r| r.try_get(0)).collect();
    Ok(lines?.join("\n"))
}

/// How long one claim of 256 due rows takes, inside a transaction that is rolled back.
async fn time_claim(
    conn: &mut AnyConnection,
    db: &baton_server::db::Db,
    now: i64,
) -> Result<(f64, usize), Error> {
    let sql = db.claim_due_timers_sql();
    let mut best = f64::MAX;
    let mut claimed = 0;
    for _ in 0..3 {
        let mut tx = conn.begin().await?;
        let real = now_ms();
        let started = Instant::now();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind("bench")
            .bind(real + 30_000)
            .bind(now)
            .bind(real)
            .bind(256i64)
            .fetch_all(&mut *tx)
            .await?;
        best = best.min(started.elapsed().as_secs_f64() * 1_000.0);
        tx.rollback().await?;
        claimed = rows.len();
    }
    Ok((best, claimed))
}

async fn time_query(conn: &mut AnyConnection, sql: &'static str) -> Result<f64, Error> {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        sqlx::query(sql).fetch_one(&mut *conn).await?;
        best = best.min(started.elapsed().as_secs_f64() * 1_000.0);
    }
    Ok(best)
}

/// A real time (Unix ms) as UTC, to line the phases up with the server's log.
fn stamp(ms: i64) -> String {
    let at =
        jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string());
    // Others may share the machine: its load average at the moment.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{at} (load average {})", load.join(" "))
}

/// The value of an unlabelled series in Prometheus text.
/// What the server's `/metrics` would show now.
fn published(state: &baton_server::AppState) -> String {
    state.published.encode().unwrap_or_default()
}

fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The group commits' figures (`baton_commit_seconds`).
#[derive(Debug)]
struct Commits {
    count: f64,
    seconds: f64,
    within_10ms: f64,
}

impl Commits {
    fn of(metrics: &str) -> Commits {
        Commits {
            count: series(metrics, "baton_commit_seconds_count"),
            seconds: series(metrics, "baton_commit_seconds_sum"),
            within_10ms: series(metrics, "baton_commit_seconds_bucket{le=\"0.01\"}"),
        }
    }

    fn since(&self, before: &Commits) -> Commits {
        Commits {
            count: self.count - before.count,
            seconds: self.seconds - before.seconds,
            within_10ms: self.within_10ms - before.within_10ms,
        }
    }

    fn line(&self, fired: usize) -> String {
        format!(
            "group commits: {:.0} ({:.2} per firing), {:.1} s in all, mean {:.2} ms, {:.1}% within 10 ms",
            self.count,
            self.count / fired.max(1) as f64,
            self.seconds,
            self.seconds * 1_000.0 / self.count.max(1.0),
            self.within_10ms * 100.0 / self.count.max(1.0)
        )
    }
}

const PG_STATS: [&str; 7] = [
    "xact_commit",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "blks_hit",
    "blks_read",
];

/// This database's counters in `pg_stat_database` (Postgres only), once the backends have
/// reported them.
async fn pg_stats(conn: &mut AnyConnection, backend: Backend) -> Result<Option<Vec<i64>>, Error> {
    if backend != Backend::Postgres {
        return Ok(None);
    }
    // Backends report their counters at most once a second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await?;
    let sql = format!(
        "SELECT {} FROM pg_stat_database WHERE datname = current_database()",
        PG_STATS.map(|c| format!("{c}::BIGINT")).join(", ")
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut *conn)
        .await?;
    let values: Result<Vec<i64>, sqlx::Error> =
        (0..PG_STATS.len()).map(|i| row.try_get(i)).collect();
    Ok(Some(values?))
}

fn pg_delta(before: &[i64], after: &[i64], fired: usize) -> String {
    let parts: Vec<String> = PG_STATS
        .iter()
        .zip(before.iter().zip(after))
        .map(|(name, (b, a))| format!("{name} {:.1}", (a - b) as f64 / fired.max(1) as f64))
        .collect();
    format!(
        "Postgres, per firing (whole database, this run's connections included): {}",
        parts.join(", ")
    )
}

fn cpu_line(cpu: i64, fired: usize, wall: i64) -> String {
    format!(
        "this process's CPU: {:.1} s over {:.1} s ({:.0}% of one core), {:.2} ms per firing",
        cpu as f64 / 1_000.0,
        wall as f64 / 1_000.0,
        cpu as f64 * 100.0 / wall.max(1) as f64,
        cpu as f64 / fired.max(1) as f64
    )
}

/// Median lateness of the timers due in each tenth of the window, to tell a scheduler that falls
/// steadily behind from one that stalled once.
fn by_tenth(
    log: &[(String, i64)],
    mine: &HashSet<String>,
    due_of: &HashMap<String, (i64, String)>,
    first_due: i64,
    last_due: i64,
) -> String {
    let mut first: HashMap<&str, i64> = HashMap::new();
    for (doc, at) in log.iter().filter(|f| mine.contains(&f.0)) {
        first.entry(doc.as_str()).or_insert(*at);
    }
    let span = (last_due - first_due).max(1);
    let mut tenths: Vec<Vec<i64>> = vec![Vec::new(); 10];
    for (doc, at) in first {
        if let Some((due, _)) = due_of.get(doc) {
            let tenth = usize::try_from((due - first_due) * 10 / span)
                .unwrap_or(0)
                .min(9);
            tenths[tenth].push(at - due);
        }
    }
    let medians: Vec<String> = tenths
        .iter_mut()
        .map(|t| {
            t.sort_unstable();
            format!("{}", quantile(t, 0.5))
        })
        .collect();
    format!(
        "median lateness by tenth of the window (ms): {}",
        medians.join(" ")
    )
}
