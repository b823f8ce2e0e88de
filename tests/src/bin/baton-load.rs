//! `baton-load`: drives simulated devices over real WebSockets against a sync server that speaks
//! the automerge-repo protocol (Baton, or the stock JavaScript sync server) and reports:
//!
//! - connect time (WebSocket upgrade + join/peer) per device, p50/p99;
//! - server memory per idle connection (RSS growth / devices, with `--server-pid`);
//! - fan-out: all devices open one shared document (the shape of a unit index) at once; the time
//!   until every one of them holds it;
//! - propagation: a write on one device → visible on another device syncing the same task,
//!   p50/p99, at a target rate of changes per second;
//! - sustained changes/s: changes the server acknowledged (its heads included them) per second;
//! - ingest (`--ingest N`): every writing device prepares N changes offline, then all of them send
//!   their changes as fast as the connection takes them, `--ingest-batch` changes per sync message;
//!   the changes acknowledged per second, from the first send to the last acknowledgment. The
//!   messages are built before the clock starts, so the figure is the server's, not the generator's.
//!
//! Every write is a valid Baton event (a note on a task), so both servers carry the same data.
//! Only ever point it at 127.0.0.1.

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash, ReadDoc};
use baton_core::sync::handshake::{join, read_peer};
use baton_core::sync::{DocumentId, Message, PeerMetadata};
use baton_core::{Author, HlcClock, NewTask, Subject, TaskDoc, TemplateRegistry};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    /// A Baton server: tokens are minted with the key in --data-dir.
    Baton,
    /// The stock automerge-repo sync server: no authentication.
    Stock,
}

#[derive(Parser, Debug)]
#[command(about = "Load generator for automerge-repo sync servers")]
struct Args {
    #[arg(long, value_enum)]
    target: Target,
    /// WebSocket URL of the sync endpoint.
    #[arg(long)]
    url: String,
    /// Baton's data directory (its embedded signing key mints the devices' tokens).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Simulated devices.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Devices per task in the write phase (one writes, the others watch).
    #[arg(long, default_value_t = 4)]
    per_task: usize,
    /// Target changes per second in the write phase.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Length of the write phase, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The server's process id, to read its memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Changes each writing device sends in the ingest phase (0: no ingest phase).
    #[arg(long, default_value_t = 0)]
    ingest: usize,
    /// Changes per sync message in the ingest phase.
    #[arg(long, default_value_t = 1)]
    ingest_batch: usize,
    /// A label for the report.
    #[arg(long, default_value = "")]
    label: String,
    /// Baton only: consults opened per second through `POST /api/v1/triggers`, from the start
    /// to the end of the write phase, so that escalations fire while devices write (0: none).
    #[arg(long, default_value_t = 0)]
    escalations: u32,
    /// Seconds from a consult opening to its acknowledgment window lapsing: the server's
    /// `--time-scale` must make the consult's 30 minutes take this long (180 for 10 s). The
    /// write phase waits until the first consults have escalated.
    #[arg(long, default_value_t = 10)]
    escalate_after: u64,
    /// Baton only: the server's `--time-scale`. Devices then stamp from the server's workflow
    /// clock, read once at the start.
    #[arg(long, default_value_t = 1)]
    time_scale: i64,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// When each change was written, by hash; filled by writers, read by observers.
type Written = Arc<Mutex<HashMap<ChangeHash, Instant>>>;

/// What devices report.
#[derive(Debug)]
enum Report {
    /// A change someone else wrote became visible here.
    Seen(Duration),
    /// The server acknowledged one of this device's changes.
    Acked,
    /// This device now holds the document it was asked to open.
    Opened(DocumentId, Instant),
    /// This device built its ingest messages.
    Prepared,
    /// The server acknowledged this many more of this device's ingest changes.
    IngestAcked(usize),
}

/// Commands to a device.
#[derive(Debug)]
enum Command {
    Open(DocumentId),
    /// Hold this new document (written by this device) and sync it to the server.
    Adopt(DocumentId, Box<Automerge>),
    Write(DocumentId),
    /// Write this many changes offline and build the sync messages that carry them, this many
    /// changes to a message.
    Prepare(DocumentId, usize, usize),
    /// Send the prepared messages.
    Go,
    Stop,
}

struct Device {
    socket: Socket,
    peer: String,
    server: String,
    author: Author,
    docs: HashMap<DocumentId, (Automerge, sync::State)>,
    /// Documents this device was asked to open and does not hold yet.
    opening: HashMap<DocumentId, ()>,
    /// Own changes not yet acknowledged.
    unacked: Vec<ChangeHash>,
    written: Written,
    reports: mpsc::UnboundedSender<Report>,
    ingest: Option<Ingest>,
}

/// One device's ingest phase: its changes in order, and the messages that carry them.
struct Ingest {
    doc: DocumentId,
    /// Position of each change in the order it was written, from 1.
    position: HashMap<ChangeHash, usize>,
    frames: Vec<Vec<u8>>,
    acked: usize,
}

/// The process-wide hybrid clock of every simulated device: each stamp is greater than every
/// stamp issued before it, so a new event sorts after everything its device could have seen.
fn next_hlc(now: i64) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    // Packed as wall ms × 1,000,000 + counter.
    let floor = u64::try_from(now).unwrap_or(0) * 1_000_000;
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = floor.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return format!("{:015}-{:06}", next / 1_000_000, next % 1_000_000),
            Err(seen) => last = seen,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The server's workflow clock as read once at the start (its time then, ours then, its
/// scale), when it runs faster than real time.
static SERVER_CLOCK: std::sync::OnceLock<(i64, i64, i64)> = std::sync::OnceLock::new();

/// What the devices stamp their events with: the server's workflow time, so that under a
/// `--time-scale` the server's own events (routing, escalations) do not run ahead of theirs.
fn stamp_ms() -> i64 {
    let now = now_ms();
    match SERVER_CLOCK.get() {
        Some((server, ours, scale)) => server + (now - ours) * scale,
        None => now,
    }
}

fn token(data_dir: &std::path::Path, device: &str) -> Result<String, Box<dyn std::error::Error>> {
    let keys = baton_server::auth::Keys::load_or_create(data_dir)?;
    let request = baton_server::auth::TokenRequest {
        user: "rn.evans".into(),
        device: device.into(),
        roles: vec!["nurse".into()],
        units: vec!["4W".into()],
        admin: false,
        ttl_secs: 3_600,
    };
    let claims = request.claims(
        &baton_server::config::TokenConfig::default(),
        now_ms() / 1000,
    );
    Ok(keys.issue(&claims)?)
}

impl Device {
    async fn connect(
        url: &str,
        token: Option<String>,
        name: String,
        written: Written,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Result<Device, Box<dyn std::error::Error + Send + Sync>> {
        let mut request = url.into_client_request()?;
        if let Some(token) = token {
            request
                .headers_mut()
                .insert("Authorization", format!("Bearer {token}").parse()?);
        }
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        let peer = format!("load-{name}");
        let hello = join(&peer, &PeerMetadata::default());
        socket
            .send(WsMessage::Binary(hello.encode().into()))
            .await?;
        let server = loop {
            match socket.next().await {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    break read_peer(&peer, Message::decode(&bytes)?)?.peer;
                }
                Some(Ok(_)) => continue,
                other => return Err(format!("no handshake reply: {other:?}").into()),
            }
        };
        Ok(Device {
            socket,
            peer,
            server,
            author: Author::new("rn.evans", "nurse", name.as_str()),
            docs: HashMap::new(),
            opening: HashMap::new(),
            unacked: Vec::new(),
            written,
            reports,
            ingest: None,
        })
    }

    /// Write `count` notes to `id` offline and build one sync message per `batch` of them, each
    /// announcing the device's heads after its changes and the heads before them as the last sync,
    /// the way a device that had synced up to there would send them.
    fn prepare(&mut self, id: DocumentId, count: usize, batch: usize) {
        let Some((doc, _)) = self.docs.get(&id) else {
            return;
        };
        let start = doc.get_heads();
        for _ in 0..count {
            self.write(id);
        }
        self.unacked.clear();
        self.written.lock().expect("written").clear();
        let Some((doc, _)) = self.docs.get(&id) else {
            return;
        };
        let changes = doc.get_changes(&start);
        let position = changes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.hash(), i + 1))
            .collect();
        let mut last_sync = start;
        let frames = changes
            .chunks(batch.max(1))
            .map(|chunk| {
                let heads = vec![chunk[chunk.len() - 1].hash()];
                let message = sync::Message {
                    heads: heads.clone(),
                    need: Vec::new(),
                    have: vec![sync::Have {
                        last_sync: std::mem::replace(&mut last_sync, heads),
                        bloom: sync::BloomFilter::default(),
                    }],
                    changes: chunk
                        .iter()
                        .map(|c| c.raw_bytes().to_vec())
                        .collect::<Vec<_>>()
                        .into(),
                    flags: None,
                    version: sync::MessageVersion::V1,
                };
                let data = message.encode();
                Message::sync_round(false, self.peer.clone(), self.server.clone(), id, data)
                    .encode()
            })
            .collect();
        self.ingest = Some(Ingest {
            doc: id,
            position,
            frames,
            acked: 0,
        });
        let _ = self.reports.send(Report::Prepared);
    }

    async fn go(&mut self) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let frames = self
            .ingest
            .as_mut()
            .map(|i| std::mem::take(&mut i.frames))
            .unwrap_or_default();
        for frame in frames {
            self.socket.feed(WsMessage::Binary(frame.into())).await?;
        }
        self.socket.flush().await
    }

    /// Count the ingest changes the server's heads now cover (each change depends on the one
    /// before, so the newest one covered says how many are).
    fn on_ingest_reply(&mut self, data: &[u8]) {
        let (Some(ingest), Ok(message)) = (self.ingest.as_mut(), sync::Message::decode(data))
        else {
            return;
        };
        let covered = message
            .heads
            .iter()
            .filter_map(|h| ingest.position.get(h))
            .max()
            .copied()
            .unwrap_or(0);
        if covered > ingest.acked {
            let _ = self
                .reports
                .send(Report::IngestAcked(covered - ingest.acked));
            ingest.acked = covered;
        }
    }

    async fn offer(&mut self, id: DocumentId) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let Some((doc, state)) = self.docs.get_mut(&id) else {
            return Ok(());
        };
        let empty = doc.get_heads().is_empty();
        let Some(message) = doc.generate_sync_message(state) else {
            return Ok(());
        };
        let (sender_id, target_id, data) =
            (self.peer.clone(), self.server.clone(), message.encode());
        let message = Message::sync_round(empty, sender_id, target_id, id, data);
        self.socket
            .send(WsMessage::Binary(message.encode().into()))
            .await
    }

    fn on_sync(&mut self, id: DocumentId, data: &[u8]) {
        let Some((doc, state)) = self.docs.get_mut(&id) else {
            return;
        };
        let Ok(message) = sync::Message::decode(data) else {
            return;
        };
        let before = doc.get_heads();
        if doc.receive_sync_message(state, message).is_err() {
            return;
        }
        let now = Instant::now();
        if !self.written.lock().expect("written").is_empty() {
            let written = self.written.lock().expect("written");
            // Metadata only: rebuilding whole changes would cost the generator a walk over the
            // document for every message.
            for change in doc.get_changes_meta(&before) {
                if let Some(at) = written.get(&change.hash) {
                    let _ = self.reports.send(Report::Seen(now - *at));
                }
            }
        }
        if let Some(theirs) = &state.their_heads {
            let before = self.unacked.len();
            // Still unacknowledged: what the server's heads do not cover yet.
            let missing: std::collections::HashSet<ChangeHash> = doc
                .get_changes_meta(theirs)
                .iter()
                .map(|c| c.hash)
                .collect();
            self.unacked.retain(|h| missing.contains(h));
            for _ in self.unacked.len()..before {
                let _ = self.reports.send(Report::Acked);
            }
        }
        if self.opening.contains_key(&id) && !doc.get_heads().is_empty() {
            self.opening.remove(&id);
            let _ = self.reports.send(Report::Opened(id, now));
        }
    }

    /// Append a note the way a lean third-party client would (docs/protocol.md): one map
    /// inserted at the end of `events`, stamped by the process-wide clock so it sorts after
    /// every event any simulated device has seen. Costs what the write costs, not a re-read of
    /// the task, so the generator measures the server rather than itself.
    fn write(&mut self, id: DocumentId) {
        use automerge::transaction::Transactable;
        let Some((doc, _)) = self.docs.get_mut(&id) else {
            return;
        };
        let Ok(Some((_, events))) = doc.get(automerge::ROOT, "events") else {
            return;
        };
        let before = doc.get_heads();
        let at = doc.length(&events);
        let now = stamp_ms();
        let hlc = next_hlc(now);
        let device = self.author.device.to_string();
        let written = doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            let event = tx.insert_object(&events, at, automerge::ObjType::Map)?;
            tx.put(&event, "id", uuid::Uuid::new_v4().to_string())?;
            tx.put(&event, "kind", "note")?;
            let actor = tx.put_object(&event, "actor", automerge::ObjType::Map)?;
            tx.put(&actor, "user", "rn.evans")?;
            tx.put(&actor, "role", "nurse")?;
            tx.put(&event, "device", device.as_str())?;
            tx.put(&event, "device_time", now)?;
            tx.put(&event, "hlc", hlc.as_str())?;
            let payload = tx.put_object(&event, "payload", automerge::ObjType::Map)?;
            tx.put(&payload, "text", "load")?;
            Ok(())
        });
        let written_at = Instant::now();
        if written.is_ok() {
            let mut written = self.written.lock().expect("written");
            for change in doc.get_changes_meta(&before) {
                written.insert(change.hash, written_at);
                self.unacked.push(change.hash);
            }
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Open(id)) => {
                        self.docs.entry(id).or_insert_with(|| (Automerge::new(), sync::State::new()));
                        self.opening.insert(id, ());
                        if self.offer(id).await.is_err() { return; }
                    }
                    Some(Command::Adopt(id, doc)) => {
                        self.unacked.extend(doc.get_heads());
                        self.docs.insert(id, (*doc, sync::State::new()));
                        if self.offer(id).await.is_err() { return; }
                    }
                    Some(Command::Write(id)) => {
                        self.write(id);
                        if self.offer(id).await.is_err() { return; }
                    }
                    Some(Command::Prepare(id, count, batch)) => self.prepare(id, count, batch),
                    Some(Command::Go) => {
                        if self.go().await.is_err() { return; }
                    }
                    Some(Command::Stop) | None => {
                        let _ = self.socket.close(None).await;
                        return;
                    }
                },
                frame = self.socket.next() => match frame {
                    Some(Ok(WsMessage::Binary(bytes))) => {
                        if let Ok(Message::Sync { document_id, data, .. }) = Message::decode(&bytes) {
                            if self.ingest.as_ref().is_some_and(|i| i.doc == document_id) {
                                // The device's own sync state does not know what it sent.
                                self.on_ingest_reply(&data);
                                continue;
                            }
                            self.on_sync(document_id, &data);
                            if self.offer(document_id).await.is_err() { return; }
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
            }
        }
    }
}

/// Wait (up to a minute) for `count` reports that match.
async fn wait_for(
    reports: &mut mpsc::UnboundedReceiver<Report>,
    count: usize,
    matches: impl Fn(&Report) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < count {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(report)) if matches(&report) => seen += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                eprintln!("gave up waiting: {seen} of {count}");
                return;
            }
        }
    }
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The `p` quantile in milliseconds; 0 when there are no samples.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1_000.0
}

fn new_task(templates: &TemplateRegistry, creator: &Author, n: usize) -> Automerge {
    let consult = templates.latest(&"consult".into()).expect("shipped");
    let (task, _) = TaskDoc::create(
        consult,
        NewTask {
            unit: "4W".into(),
            subject: Subject {
                reference: format!("load-{n}"),
                label: format!("Load {n}"),
            },
            acuity: Some("routine".into()),
            note: None,
        },
        creator,
        &mut HlcClock::new(),
        stamp_ms(),
        automerge::ActorId::random(),
    )
    .expect("a nurse may open a consult");
    task.into_automerge()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let written: Written = Arc::new(Mutex::new(HashMap::new()));
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let templates = TemplateRegistry::shipped();
    let rss_before = args.server_pid.and_then(rss_kb);

    // 0. Consults from the EHR, whose acknowledgment windows lapse during the write phase.
    let started = Instant::now();
    let (stop_opening, opening) = tokio::sync::watch::channel(false);
    let http_addr: Option<std::net::SocketAddr> = args
        .url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|host| host.parse().ok());
    let opener = match (args.escalations, &args.data_dir, http_addr) {
        (0, _, _) => None,
        (per_s, Some(dir), Some(addr)) => {
            let token = baton_e2e::integration_token_in(dir, "load", &["4W"]);
            if args.time_scale > 1 {
                read_server_clock(addr, &token, dir, args.time_scale).await?;
            }
            Some(tokio::spawn(open_consults(addr, token, per_s, opening)))
        }
        _ => return Err("--escalations needs Baton, --data-dir and a ws:// URL".into()),
    };

    // 1. Connect every device.
    let mut connects = Vec::with_capacity(args.devices);
    let mut handles = Vec::with_capacity(args.devices);
    let mut tasks = tokio::task::JoinSet::new();
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..args.devices {
        let token = match (args.target, &args.data_dir) {
            (Target::Baton, Some(dir)) => {
                Some(token(dir, &format!("load-{i}")).map_err(|e| e.to_string())?)
            }
            (Target::Baton, None) => return Err("--data-dir is required for Baton".into()),
            (Target::Stock, _) => None,
        };
        let (url, written, reports) = (args.url.clone(), written.clone(), report_tx.clone());
        pending.spawn(async move {
            let t = Instant::now();
            let device = Device::connect(&url, token, format!("load-{i}"), written, reports).await;
            (i, t.elapsed(), device)
        });
        // Bounded concurrency while connecting, as phones coming online would be.
        while pending.len() >= 64 {
            let (i, took, device) = pending.join_next().await.expect("pending")?;
            connects.push(took);
            handles.push((i, device.map_err(|e| e.to_string())?));
        }
    }
    while let Some(done) = pending.join_next().await {
        let (i, took, device) = done?;
        connects.push(took);
        handles.push((i, device.map_err(|e| e.to_string())?));
    }
    let connect_all = started.elapsed();
    handles.sort_by_key(|(i, _)| *i);
    let mut senders = Vec::with_capacity(args.devices);
    for (_, device) in handles {
        let (tx, rx) = mpsc::channel(1_024);
        senders.push(tx);
        tasks.spawn(device.run(rx));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = args.server_pid.and_then(rss_kb);

    // 2. Fan-out: one shared document, opened by every device at once.
    let creator = Author::new("rn.evans", "nurse", "load-0");
    let shared = DocumentId::random();
    senders[0]
        .send(Command::Adopt(
            shared,
            Box::new(new_task(&templates, &creator, 0)),
        ))
        .await?;
    loop {
        match reports.recv().await {
            Some(Report::Acked) => break,
            Some(_) => {}
            None => return Err("devices stopped".into()),
        }
    }
    // Wait until the creator's change is acknowledged, then everyone opens it.
    let fanout_start = Instant::now();
    for tx in &senders[1..] {
        tx.send(Command::Open(shared)).await?;
    }
    let mut opened = 1;
    let mut fanout_last = fanout_start;
    while opened < args.devices {
        match tokio::time::timeout(Duration::from_secs(60), reports.recv()).await {
            Ok(Some(Report::Opened(id, at))) if id == shared => {
                opened += 1;
                fanout_last = at;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let fanout = fanout_last - fanout_start;

    // 3. Writes: tasks of `per_task` devices. The first of each group opens the task, the others
    // fetch it once the server has it; then they take turns writing notes.
    let per_task = args.per_task.clamp(1, args.devices);
    let groups = (args.devices / per_task).max(1);
    let mut task_ids = Vec::with_capacity(groups);
    for g in 0..groups {
        let id = DocumentId::random();
        let opener = Author::new(
            "rn.evans",
            "nurse",
            format!("load-{}", g * per_task).as_str(),
        );
        senders[g * per_task]
            .send(Command::Adopt(
                id,
                Box::new(new_task(&templates, &opener, g + 1)),
            ))
            .await?;
        task_ids.push(id);
    }
    wait_for(&mut reports, groups, |r| matches!(r, Report::Acked)).await;
    for (g, id) in task_ids.iter().enumerate() {
        for member in 1..per_task {
            senders[g * per_task + member]
                .send(Command::Open(*id))
                .await?;
        }
    }
    wait_for(&mut reports, groups * (per_task - 1), |r| {
        matches!(r, Report::Opened(..))
    })
    .await;
    written.lock().expect("written").clear();
    let mut timers_before = None;
    if let (Some(_), Some(addr)) = (&opener, http_addr) {
        tokio::time::sleep_until((started + Duration::from_secs(args.escalate_after + 1)).into())
            .await;
        timers_before = Some(timer_counts(addr).await);
    }

    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let phase = Instant::now();
    let end = phase + Duration::from_secs(args.seconds);
    let (mut seen, mut acked, mut issued) = (Vec::new(), 0usize, 0usize);
    let mut g = 0usize;
    while Instant::now() < end {
        tokio::select! {
            _ = ticker.tick() => {
                let writer = (g % groups) * per_task + (g / groups) % per_task;
                if writer < senders.len() && senders[writer].try_send(Command::Write(task_ids[g % groups])).is_ok() {
                    issued += 1;
                }
                g += 1;
            }
            report = reports.recv() => match report {
                Some(Report::Seen(d)) => seen.push(d),
                Some(Report::Acked) => acked += 1,
                Some(_) => {}
                None => break,
            },
        }
    }
    let elapsed = phase.elapsed();
    let timers = match (timers_before, http_addr) {
        (Some((fired, escalated)), Some(addr)) => {
            let (fired_after, escalated_after) = timer_counts(addr).await;
            let per_s = |n: u64| n as f64 / elapsed.as_secs_f64();
            Some((
                per_s(fired_after.saturating_sub(fired)),
                per_s(escalated_after.saturating_sub(escalated)),
            ))
        }
        _ => None,
    };
    let _ = stop_opening.send(true);
    let opened_consults = match opener {
        Some(task) => task.await.unwrap_or(0),
        None => 0,
    };
    // Drain what is in flight for a moment (counted for latency, not for throughput).
    let drain_end = Instant::now() + Duration::from_secs(2);
    while let Ok(Some(report)) = tokio::time::timeout_at(drain_end.into(), reports.recv()).await {
        if let Report::Seen(d) = report {
            seen.push(d);
        }
    }

    // 4. Ingest: the first device of each task sends a prepared burst of changes.
    let mut ingest = None;
    if args.ingest > 0 {
        for (g, id) in task_ids.iter().enumerate() {
            senders[g * per_task]
                .send(Command::Prepare(*id, args.ingest, args.ingest_batch))
                .await?;
        }
        wait_for(&mut reports, groups, |r| matches!(r, Report::Prepared)).await;
        let total = groups * args.ingest;
        let started = Instant::now();
        for g in 0..groups {
            senders[g * per_task].send(Command::Go).await?;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut done = 0;
        while done < total {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(Report::IngestAcked(n))) => done += n,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let took = started.elapsed();
        if done < total {
            eprintln!("ingest: {done} of {total} changes acknowledged before giving up");
        }
        ingest = Some((done, took));
    }

    for tx in &senders {
        let _ = tx.try_send(Command::Stop);
    }
    drop(senders);
    while tasks.join_next().await.is_some() {}

    connects.sort();
    seen.sort();
    let per_conn = match (rss_before, rss_idle) {
        (Some(a), Some(b)) => format!("{:.1}", (b.saturating_sub(a)) as f64 / args.devices as f64),
        _ => "n/a".into(),
    };
    println!(
        "{{\"label\":{:?},\"target\":\"{:?}\",\"devices\":{},\"connect_all_ms\":{:.0},\"connect_p50_ms\":{:.1},\"connect_p99_ms\":{:.1},\
\"rss_kb_per_idle_connection\":\"{}\",\"fanout_devices\":{},\"fanout_all_current_ms\":{:.0},\
\"rate_target\":{},\"issued\":{},\"acked_per_s\":{:.0},\"propagation_samples\":{},\"propagation_p50_ms\":{:.1},\"propagation_p99_ms\":{:.1},\
\"ingest_changes\":{},\"ingest_batch\":{},\"ingest_ms\":{:.0},\"ingest_per_s\":{:.0},\
\"consults_opened\":{},\"timers_fired_per_s\":{:.1},\"escalations_per_s\":{:.1}}}",
        args.label,
        args.target,
        args.devices,
        connect_all.as_secs_f64() * 1_000.0,
        percentile(&connects, 0.5),
        percentile(&connects, 0.99),
        per_conn,
        opened,
        fanout.as_secs_f64() * 1_000.0,
        args.rate,
        issued,
        acked as f64 / elapsed.as_secs_f64(),
        seen.len(),
        percentile(&seen, 0.5),
        percentile(&seen, 0.99),
        ingest.map_or(0, |(done, _)| done),
        args.ingest_batch,
        ingest.map_or(0.0, |(_, took)| took.as_secs_f64() * 1_000.0),
        ingest.map_or(0.0, |(done, took)| done as f64 / took.as_secs_f64()),
        opened_consults,
        timers.map_or(0.0, |t| t.0),
        timers.map_or(0.0, |t| t.1),
    );
    Ok(())
}

/// Open consults on 4W as the EHR would, `per_s` a second, until told to stop. Returns how many
/// were opened.
async fn open_consults(
    addr: std::net::SocketAddr,
    token: String,
    per_s: u32,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> usize {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(per_s)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut opened = 0;
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                n += 1;
                let (token, key) = (token.clone(), format!("load-{}-{n}", now_ms()));
                in_flight.spawn(async move { open_consult(addr, &token, &key).await.0 });
            }
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                opened += usize::from(matches!(done, Ok(201)));
            }
            _ = stop.changed() => break,
        }
    }
    while let Some(done) = in_flight.join_next().await {
        opened += usize::from(matches!(done, Ok(201)));
    }
    opened
}

/// Open a consult on 4W through `POST /api/v1/triggers`, with `key` as its idempotency key
/// and subject: the answer's status and body.
async fn open_consult(
    addr: std::net::SocketAddr,
    integration: &str,
    key: &str,
) -> (u16, serde_json::Value) {
    let body = serde_json::json!({
        "template": "consult",
        "unit": "4W",
        "subject": { "ref": key, "label": "Load" },
        "idempotency_key": key,
    });
    let body = body.to_string();
    baton_e2e::http_with_body(
        addr,
        "POST",
        "/api/v1/triggers",
        Some(integration),
        body.as_bytes(),
    )
    .await
}

/// Read the server's workflow clock (a task's view carries it) into [`SERVER_CLOCK`].
async fn read_server_clock(
    addr: std::net::SocketAddr,
    integration: &str,
    dir: &std::path::Path,
    scale: i64,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (status, opened) = open_consult(addr, integration, &format!("clock-{}", now_ms())).await;
    let id = opened["task_id"]
        .as_str()
        .ok_or(format!("opening a consult: {status} {opened}"))?;
    let nurse = token(dir, "load-clock").map_err(|e| e.to_string())?;
    let ours = now_ms();
    let (_, task) =
        baton_e2e::http(addr, "GET", &format!("/api/v1/tasks/{id}"), Some(&nurse)).await;
    let server = task["now"].as_i64().ok_or(format!("no clock in {task}"))?;
    let _ = SERVER_CLOCK.set((server, ours, scale));
    Ok(())
}

/// The server's timers fired and escalations stored so far, from `/metrics`.
async fn timer_counts(addr: std::net::SocketAddr) -> (u64, u64) {
    let (_, body) = baton_e2e::http(addr, "GET", "/metrics", None).await;
    let text = body.as_str().unwrap_or_default().to_owned();
    let sum = |prefix: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    (
        sum("baton_timers_fired_total"),
        sum("baton_escalations_total"),
    )
}
