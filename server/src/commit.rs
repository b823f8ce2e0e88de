//! Group commit: every document actor's new changes go through one writer, which commits
//! whatever has queued up meanwhile in a single transaction (one fsync for many documents), then
//! answers each actor. An actor still acknowledges nothing before its changes are committed;
//! under load, many actors share one commit instead of queueing for one each.

use crate::db::{Db, DocRecord, StoredChange};
use crate::now_ms;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Writes taken into one transaction at most.
const MAX_GROUP: usize = 512;

struct Write {
    new_docs: Vec<DocRecord>,
    changes: Vec<StoredChange>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The way to the writer.
#[derive(Clone, Debug)]
pub(crate) struct Committer {
    tx: mpsc::Sender<Write>,
    stats: Arc<CommitStats>,
}

/// Upper bounds of the commit-time histogram's buckets, in milliseconds.
const BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000];

/// What the writer did, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct CommitStats {
    /// Commits that took at most each bucket's bound (not cumulative; summed when rendered).
    buckets: [AtomicU64; BUCKETS_MS.len()],
    commits: AtomicU64,
    micros: AtomicU64,
    changes: AtomicU64,
    failures: AtomicU64,
}

impl CommitStats {
    fn record(&self, took: std::time::Duration, changes: usize, ok: bool) {
        let ms = took.as_millis();
        if let Some(i) = BUCKETS_MS.iter().position(|b| ms <= u128::from(*b)) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::Relaxed);
        if ok {
            self.changes.fetch_add(changes as u64, Ordering::Relaxed);
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text of these figures.
    pub(crate) fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::from(
            "# HELP baton_commit_seconds Time to commit one group of changes durably.\n\
             # TYPE baton_commit_seconds histogram\n",
        );
        let mut cumulative = 0;
        for (bound, count) in BUCKETS_MS.iter().zip(&self.buckets) {
            cumulative += get(count);
            let _ = writeln!(
                out,
                "baton_commit_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1_000.0
            );
        }
        let commits = get(&self.commits);
        let _ = write!(
            out,
            "baton_commit_seconds_bucket{{le=\"+Inf\"}} {commits}\n\
             baton_commit_seconds_sum {}\n\
             baton_commit_seconds_count {commits}\n\
             # HELP baton_changes_stored_total Changes committed.\n\
             # TYPE baton_changes_stored_total counter\n\
             baton_changes_stored_total {}\n\
             # HELP baton_commit_failures_total Group commits that failed (nothing of them stored).\n\
             # TYPE baton_commit_failures_total counter\n\
             baton_commit_failures_total {}\n",
            get(&self.micros) as f64 / 1_000_000.0,
            get(&self.changes),
            get(&self.failures),
        );
        out
    }
}

/// Why a write was not committed. Nothing of it was.
#[derive(Debug, thiserror::Error)]
#[error("the changes could not be stored: {0}")]
pub struct CommitError(String);

impl Committer {
    /// Start the writer; it stops once `cancel` fires and what was queued is written.
    pub(crate) fn start(db: Db, tracker: &TaskTracker, cancel: CancellationToken) -> Committer {
        let (tx, rx) = mpsc::channel(4_096);
        let stats = Arc::new(CommitStats::default());
        tracker.spawn(writer(db, rx, cancel, stats.clone()));
        Committer { tx, stats }
    }

    pub(crate) fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// Commit `changes` (and register `new_docs`); returns once they are durable.
    pub(crate) async fn commit(
        &self,
        new_docs: Vec<DocRecord>,
        changes: Vec<StoredChange>,
    ) -> Result<(), CommitError> {
        let (done, wait) = oneshot::channel();
        let write = Write {
            new_docs,
            changes,
            done,
        };
        self.tx
            .send(write)
            .await
            .map_err(|_| CommitError("the server is shutting down".into()))?;
        wait.await
            .map_err(|_| CommitError("the server is shutting down".into()))?
            .map_err(CommitError)
    }
}

async fn writer(
    db: Db,
    mut rx: mpsc::Receiver<Write>,
    cancel: CancellationToken,
    stats: Arc<CommitStats>,
) {
    loop {
        let first = tokio::select! {
            write = rx.recv() => write,
            () = cancel.cancelled() => {
                // Write what is queued, refuse what comes later.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { return };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        let new_docs: Vec<&DocRecord> = group.iter().flat_map(|w| &w.new_docs).collect();
        let changes: Vec<&StoredChange> = group.iter().flat_map(|w| &w.changes).collect();
        let started = Instant::now();
        let result = db
            .store_changes(&new_docs, &changes, now_ms())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, writes = group.len(), "a group commit failed");
                e.to_string()
            });
        stats.record(started.elapsed(), changes.len(), result.is_ok());
        for write in group {
            let _ = write.done.send(result.clone());
        }
    }
}
