//! The scheduler: fires every task's timer when it falls due, even while no phone is connected.
//!
//! Each open task has one timer row (`task_timers`), written by its document's commits. The
//! scheduler claims the rows due on the workflow clock (oldest first, with a lease, so another
//! node never takes the same one meanwhile and a node that dies loses its claims), and fires
//! each through the document's actor: the event the due action writes is appended as the
//! system, stored with the task's next timer in one transaction, and sent to everyone syncing
//! the task. Its id is deterministic, so a timer fired twice (a lease that ran out, two nodes)
//! writes one event. Overdue timers fire at start, oldest first.

use crate::db::{ClaimedTimer, Db, DbError};
use crate::hub::Hub;
use crate::metrics::{self, Figures};
use crate::{WorkflowClock, now_ms};
use baton_core::policy::coverage::Schedule;
use baton_core::sync::DocumentId;
use futures_util::StreamExt as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Timers claimed per query.
const CLAIM_BATCH: i64 = 256;
/// Claimed timers fired at once: each waits for its own document's commit, and the group
/// committer stores those that arrive together in one transaction. Few enough that a batch of
/// firings does not crowd out the phones' changes waiting for the same cores and commits
/// (docs/benchmarks.md, "While escalations fire"); enough to keep up with a thousand falling
/// due a second with a million pending (the timer benchmark there).
const FIRE_AT_ONCE: usize = 8;
/// How long a claim holds (real time) before another node may take the timer. A fired timer's
/// claim ends with the commit that writes the task's next timer; a timer that fired nothing
/// keeps its claim until the lease runs out, so it is looked at again only then.
const LEASE: Duration = Duration::from_secs(30);
/// How long a timer that could not be fired waits before it is tried again (real time).
const RETRY: Duration = Duration::from_secs(5);
/// The longest the scheduler sleeps between looks (real time).
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Fires due timers.
#[derive(Clone, Debug)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    hub: Hub,
    clock: Arc<WorkflowClock>,
    /// This node's name in claims.
    node: String,
    /// Fired − due, in workflow time.
    lateness: Histogram,
    fired: Counter,
    failed: Counter,
    /// One pass at a time.
    pass: tokio::sync::Mutex<()>,
    /// The shift each (unit, role) rotation was in at the last look: a change is a handover.
    shifts: std::sync::Mutex<HashMap<(String, String), i64>>,
}

impl Scheduler {
    pub fn new(db: Db, hub: Hub, clock: Arc<WorkflowClock>) -> Self {
        Scheduler {
            inner: Arc::new(Inner {
                db,
                hub,
                clock,
                node: format!("node-{}", uuid::Uuid::new_v4()),
                lateness: metrics::histogram(&metrics::LATENESS),
                fired: Counter::default(),
                failed: Counter::default(),
                pass: tokio::sync::Mutex::new(()),
                shifts: std::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Fire due timers until `cancel` fires: at once (whatever is overdue), then as each falls
    /// due.
    pub fn start(&self, tracker: &TaskTracker, cancel: CancellationToken) {
        let scheduler = self.clone();
        tracker.spawn(async move {
            loop {
                if let Err(e) = scheduler.shift_changes().await {
                    tracing::error!(error = %e, "shift changes could not be looked at; retrying");
                }
                let wait = match scheduler.fire_due().await {
                    Ok(_) => scheduler.until_next().await,
                    Err(e) => {
                        tracing::error!(error = %e, "due timers could not be read; retrying");
                        LOOK_EVERY
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = cancel.cancelled() => return,
                }
            }
        });
    }

    /// Fire every timer due now, oldest first. Returns how many were fired.
    pub async fn fire_due(&self) -> Result<usize, DbError> {
        let inner = &self.inner;
        let _one_pass = inner.pass.lock().await;
        let mut fired = 0;
        loop {
            let now = inner.clock.now();
            let real = now_ms();
            let due = inner
                .db
                .claim_due_timers(
                    &inner.node,
                    now,
                    real,
                    real.saturating_add(millis(LEASE)),
                    CLAIM_BATCH,
                )
                .await?;
            if due.is_empty() {
                return Ok(fired);
            }
            let docs: Vec<String> = due.iter().map(|t| t.doc.clone()).collect();
            let schedules = self.schedules(&docs).await?;
            let fires = due.into_iter().map(|timer| {
                let scheduler = self.clone();
                let schedule = schedules.get(&timer.doc).cloned();
                async move { scheduler.fire(&timer, schedule).await }
            });
            let mut firing = futures_util::stream::iter(fires).buffer_unordered(FIRE_AT_ONCE);
            while let Some(done) = firing.next().await {
                fired += usize::from(done);
            }
        }
    }

    /// Fire one claimed timer with its unit's `schedule` (`None`: the task is not stored).
    /// Returns whether it fired; a timer that could not be is tried again after [`RETRY`].
    async fn fire(&self, timer: &ClaimedTimer, schedule: Option<Arc<Schedule>>) -> bool {
        let inner = &self.inner;
        let now = inner.clock.now();
        let outcome = async {
            let id: DocumentId = timer
                .doc
                .parse()
                .map_err(|e: baton_core::sync::doc_id::DocumentIdError| e.to_string())?;
            let schedule = schedule.ok_or_else(|| "the task is not stored".to_owned())?;
            inner
                .hub
                .fire(id, now, schedule)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match outcome {
            Ok(()) => {
                let late = now.saturating_sub(timer.due_at).max(0);
                metrics::observe(
                    &inner.lateness,
                    Duration::from_millis(u64::try_from(late).unwrap_or(0)),
                );
                inner.fired.inc();
                tracing::info!(doc = %timer.doc, event = %timer.event_id, late_ms = late, "{}", what_fired(&timer.event_id));
                true
            }
            Err(e) => {
                inner.failed.inc();
                tracing::error!(doc = %timer.doc, error = %e, "a due timer could not be fired; it is tried again shortly");
                let again = now_ms().saturating_add(millis(RETRY));
                if let Err(e) = inner.db.defer_timer(&timer.doc, &inner.node, again).await {
                    tracing::warn!(doc = %timer.doc, error = %e, "a timer's claim could not be shortened; its lease will run out");
                }
                false
            }
        }
    }

    /// Who covers what on each task's unit, by task (stored tasks only): one read for the
    /// tasks' units, one per unit.
    async fn schedules(&self, docs: &[String]) -> Result<HashMap<String, Arc<Schedule>>, DbError> {
        let db = &self.inner.db;
        let mut by_unit: HashMap<String, Arc<Schedule>> = HashMap::new();
        let mut by_doc = HashMap::new();
        for (doc, unit) in db.document_units(docs).await? {
            let schedule = match by_unit.get(unit.as_str()) {
                Some(schedule) => schedule.clone(),
                None => {
                    let (_, schedule) = db.unit_schedule(unit.as_str()).await?;
                    let schedule = Arc::new(schedule);
                    by_unit.insert(unit.to_string(), schedule.clone());
                    schedule
                }
            };
            by_doc.insert(doc, schedule);
        }
        Ok(by_doc)
    }

    /// Hand work over where a rotation has moved to its next shift since the last look (at
    /// start: everywhere, which catches up on shift changes missed while down): every open
    /// task owned in that role on that unit is given to its actor, which offers it to whoever
    /// came on if its owner just went off. Returns how many tasks were looked at.
    pub async fn shift_changes(&self) -> Result<usize, DbError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut looked = 0;
        for (unit, _) in inner.db.units().await? {
            let (plan, schedule) = match inner.db.unit_schedule(unit.as_str()).await {
                Ok(found) => found,
                // A plan that cannot be used hands nothing over; its rotation is refused when
                // it is edited.
                Err(DbError::Unreadable { .. }) => continue,
                Err(e) => return Err(e),
            };
            if plan.rotations.is_empty() {
                continue;
            }
            let schedule = Arc::new(schedule);
            for role in plan.rotations.keys() {
                let Some(shift) = schedule.covering(&unit, role, now).shift else {
                    continue;
                };
                let key = (unit.to_string(), role.to_string());
                let moved = {
                    let mut seen = inner.shifts.lock().unwrap_or_else(|e| e.into_inner());
                    seen.insert(key, shift.index) != Some(shift.index)
                };
                if !moved {
                    continue;
                }
                let tasks = inner
                    .db
                    .owned_open_tasks(Some(unit.as_str()), Some(role.as_str()), None)
                    .await?;
                for doc in tasks {
                    looked += 1;
                    self.hand_over(&doc, now, schedule.clone()).await;
                }
            }
        }
        Ok(looked)
    }

    /// Move at once every open task `user` owns: their account was disabled. Returns how many
    /// tasks were looked at.
    pub async fn reroute(&self, user: &str) -> Result<usize, DbError> {
        let now = self.inner.clock.now();
        let tasks = self
            .inner
            .db
            .owned_open_tasks(None, None, Some(user))
            .await?;
        let schedules = self.schedules(&tasks).await?;
        for doc in &tasks {
            match schedules.get(doc) {
                Some(schedule) => self.hand_over(doc, now, schedule.clone()).await,
                None => {
                    tracing::error!(%doc, "a disabled owner's task is not stored; not re-routed")
                }
            }
        }
        Ok(tasks.len())
    }

    async fn hand_over(&self, doc: &str, now: i64, schedule: Arc<Schedule>) {
        let Ok(id) = doc.parse::<DocumentId>() else {
            return;
        };
        if let Err(e) = self.inner.hub.fire(id, now, schedule).await {
            tracing::error!(%doc, error = %e, "a task could not be handed over");
        }
    }

    /// How long to sleep before the next look: until the earliest timer falls due (in real
    /// time), at most [`LOOK_EVERY`].
    async fn until_next(&self) -> Duration {
        let inner = &self.inner;
        match inner.db.next_timer_due().await {
            Ok(Some(due)) => {
                let ahead = due.saturating_sub(inner.clock.now()).max(0);
                let real = ahead / i64::from(inner.clock.scale());
                Duration::from_millis(u64::try_from(real).unwrap_or(0)).min(LOOK_EVERY)
            }
            Ok(None) | Err(_) => LOOK_EVERY,
        }
    }
}

impl Figures for Scheduler {
    fn register(&self, registry: &mut Registry) {
        let inner = &self.inner;
        metrics::register_seconds(
            registry,
            "baton_timer_lateness",
            "How late each timer fired: fired minus due, on the workflow clock",
            &inner.lateness,
        );
        registry.register(
            "baton_timers_fired",
            "Timers fired on this node",
            inner.fired.clone(),
        );
        registry.register(
            "baton_timer_failures",
            "Due timers this node could not fire (retried)",
            inner.failed.clone(),
        );
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A log line's words for what a timer did, from its event id's shape.
fn what_fired(event: &str) -> &'static str {
    match event.split(':').next() {
        Some("route") => "task routed",
        Some("esc") => "task escalated",
        Some("renotify") => "escalation target re-notified",
        Some("followup") => "owner prompted: a follow-up is due",
        Some("offtrack") => "exception raised",
        _ => "timer fired",
    }
}
