//! Group commit: every document actor's new changes go through one writer, which commits
//! whatever has queued up meanwhile in a single transaction (one fsync for many documents), then
//! answers each actor. An actor still acknowledges nothing before its changes are committed;
//! under load, many actors share one commit instead of queueing for one each. What each write's
//! changes imply ([`Derived`]: event rows, owed index entries, timers, summaries, trigger keys)
//! goes into the same transaction.

use crate::db::{Db, Derived, DocRecord, StoredChange, Write, Written};
use crate::metrics::{self, Figures};
use crate::now_ms;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Writes taken into one transaction at most.
const MAX_GROUP: usize = 512;

struct Queued {
    write: Write,
    done: oneshot::Sender<Result<Written, String>>,
}

/// The way to the writer.
#[derive(Clone, Debug)]
pub(crate) struct Committer {
    tx: mpsc::Sender<Queued>,
    stats: Arc<CommitStats>,
}

/// What the writer did, for `/metrics`.
#[derive(Debug)]
pub(crate) struct CommitStats {
    took: Histogram,
    changes: Counter,
    failures: Counter,
}

impl Default for CommitStats {
    fn default() -> Self {
        CommitStats {
            took: metrics::histogram(&metrics::LATENCY),
            changes: Counter::default(),
            failures: Counter::default(),
        }
    }
}

impl CommitStats {
    fn record(&self, took: std::time::Duration, changes: usize, ok: bool) {
        metrics::observe(&self.took, took);
        if ok {
            self.changes.inc_by(changes as u64);
        } else {
            self.failures.inc();
        }
    }
}

impl Figures for CommitStats {
    fn register(&self, registry: &mut Registry) {
        metrics::register_seconds(
            registry,
            "baton_commit",
            "Time to commit one group of changes durably",
            &self.took,
        );
        registry.register(
            "baton_changes_stored",
            "Changes committed",
            self.changes.clone(),
        );
        registry.register(
            "baton_commit_failures",
            "Group commits that failed (nothing of them stored)",
            self.failures.clone(),
        );
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

    /// Commit `changes` with what they imply (and register `new_docs`); returns once they are
    /// durable, or once it is known that their trigger's key was taken and nothing was stored.
    pub(crate) async fn commit(
        &self,
        new_docs: Vec<DocRecord>,
        changes: Vec<StoredChange>,
        derived: Derived,
    ) -> Result<Written, CommitError> {
        let (done, wait) = oneshot::channel();
        let write = Write {
            new_docs,
            changes,
            derived,
        };
        self.tx
            .send(Queued { write, done })
            .await
            .map_err(|_| CommitError("the server is shutting down".into()))?;
        wait.await
            .map_err(|_| CommitError("the server is shutting down".into()))?
            .map_err(CommitError)
    }
}

async fn writer(
    db: Db,
    mut rx: mpsc::Receiver<Queued>,
    cancel: CancellationToken,
    stats: Arc<CommitStats>,
) {
    loop {
        // Whatever has queued up, once at least one write is there.
        let mut group = Vec::new();
        let taken = tokio::select! {
            taken = rx.recv_many(&mut group, MAX_GROUP) => taken,
            () = cancel.cancelled() => {
                // Write what is queued, refuse what comes later.
                rx.close();
                rx.recv_many(&mut group, MAX_GROUP).await
            }
        };
        if taken == 0 {
            return;
        }
        let writes: Vec<&Write> = group.iter().map(|q| &q.write).collect();
        let started = Instant::now();
        let result = db.store_changes(&writes, now_ms()).await.map_err(|e| {
            tracing::error!(error = %e, writes = group.len(), "a group commit failed");
            e.to_string()
        });
        let changes: usize = match &result {
            Ok(outcomes) => writes
                .iter()
                .zip(outcomes)
                .filter(|(_, outcome)| **outcome == Written::Stored)
                .map(|(write, _)| write.changes.len())
                .sum(),
            Err(_) => 0,
        };
        stats.record(started.elapsed(), changes, result.is_ok());
        for (i, queued) in group.into_iter().enumerate() {
            let outcome = match &result {
                Ok(outcomes) => outcomes
                    .get(i)
                    .copied()
                    .ok_or_else(|| "the commit reported nothing of this write".to_owned()),
                Err(e) => Err(e.clone()),
            };
            let _ = queued.done.send(outcome);
        }
    }
}
