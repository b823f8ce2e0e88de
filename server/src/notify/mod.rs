//! Notifications: a transactional outbox and the worker that delivers it.
//!
//! A commit whose events ask someone to act (the core's [`Notice`]s) writes one row per
//! delivery in the same transaction as the events: one for the webhook, if one is configured,
//! and one per registered device of the person named ([`store`]). The worker claims due rows
//! with a lease, delivers each at least once with the row id as its idempotency key
//! (`webhook-id`), retries failures with exponential backoff and jitter, and after
//! `max_attempts` marks the row dead, where admins list it.
//!
//! Payloads carry no patient information: a task id, the kind of notice, the unit, the role and
//! the person asked. A phone syncs the task to learn more.

mod h2;
mod push;
pub mod store;
mod webhook;

use crate::db::{Db, DbError};
use crate::metrics::Figures;
use crate::now_ms;
use baton_core::Span;
use baton_core::notice::Notice;
use baton_core::sync::DocumentId;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use push::PushError;
use std::sync::Arc;
use std::time::Duration;
use store::{Delivery, Outbound, Recipient, Then};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use push::{ApnsConfig, FcmConfig};
pub use webhook::{SecretError, WebhookSecret, signature};

/// Where and how notifications go.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    pub webhook: Option<WebhookConfig>,
    /// Push to iOS devices registered with an APNs token.
    pub apns: Option<ApnsConfig>,
    /// Push to Android devices registered with an FCM token.
    pub fcm: Option<FcmConfig>,
    /// Deliveries tried this many times are dead letters.
    pub max_attempts: u32,
    /// The first retry's delay; each later one doubles it (at most an hour), with jitter.
    pub retry_base: Span,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook: None,
            apns: None,
            fcm: None,
            max_attempts: 8,
            retry_base: Span::from_millis(2_000),
        }
    }
}

/// A Standard Webhooks receiver.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: WebhookSecret,
}

/// The rows a commit's notices owe, to be written with it.
pub fn outbound(doc: &DocumentId, notices: &[Notice], config: &NotifyConfig) -> Vec<Outbound> {
    let mut rows = Vec::new();
    for notice in notices {
        let body = serde_json::json!({
            "type": notice.kind.as_str(),
            "task_id": doc.to_string(),
            "url": doc.url(),
            "unit": notice.unit,
            "event_id": notice.event,
            "role": notice.role,
            "user": notice.user,
            "level": notice.level,
        });
        let row = |channel: &str, to: Recipient| Outbound {
            id: store::row_id(&doc.to_string(), notice.event.as_str(), channel),
            doc: doc.to_string(),
            event: notice.event.to_string(),
            kind: notice.kind.as_str(),
            body: body.to_string(),
            to,
        };
        if let Some(webhook) = &config.webhook {
            rows.push(row("webhook", Recipient::Webhook(webhook.url.clone())));
        }
        if let Some(user) = &notice.user {
            rows.push(row("push", Recipient::DevicesOf(user.to_string())));
        }
    }
    rows
}

/// Deliveries claimed per look.
const CLAIM_BATCH: i64 = 32;
/// How long a claim holds before another node may take the delivery.
const LEASE: Duration = Duration::from_secs(60);
/// The longest the worker sleeps between looks.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// The longest delay between two tries.
const MAX_DELAY: Duration = Duration::from_secs(3_600);

/// Delivers the outbox.
#[derive(Clone, Debug)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    config: NotifyConfig,
    node: String,
    wake: tokio::sync::Notify,
    agent: ureq::Agent,
    pusher: Arc<push::Pusher>,
    delivered: Counter,
    failed: Counter,
}

impl Notifier {
    pub fn new(db: Db, config: NotifyConfig) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let pusher = Arc::new(push::Pusher::new(config.apns.clone(), config.fcm.clone()));
        Notifier {
            inner: Arc::new(Inner {
                db,
                config,
                node: format!("node-{}", uuid::Uuid::new_v4()),
                wake: tokio::sync::Notify::new(),
                agent,
                pusher,
                delivered: Counter::default(),
                failed: Counter::default(),
            }),
        }
    }

    pub fn config(&self) -> &NotifyConfig {
        &self.inner.config
    }

    /// Look for work now: a commit just wrote deliveries.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Deliver until `cancel` fires.
    pub fn start(&self, tracker: &TaskTracker, cancel: CancellationToken) {
        let notifier = self.clone();
        tracker.spawn(async move {
            loop {
                if let Err(e) = notifier.deliver_due().await {
                    tracing::error!(error = %e, "notifications could not be read; retrying");
                }
                tokio::select! {
                    () = tokio::time::sleep(LOOK_EVERY) => {}
                    () = notifier.inner.wake.notified() => {}
                    () = cancel.cancelled() => return,
                }
            }
        });
    }

    /// Try every delivery due now once. Returns how many were delivered.
    pub async fn deliver_due(&self) -> Result<usize, DbError> {
        let inner = &self.inner;
        let mut delivered = 0;
        loop {
            let now = now_ms();
            let lease = now.saturating_add(i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX));
            let due = store::claim_due(&inner.db, &inner.node, now, lease, CLAIM_BATCH).await?;
            if due.is_empty() {
                return Ok(delivered);
            }
            for delivery in due {
                if self.deliver(delivery).await? {
                    delivered += 1;
                }
            }
        }
    }

    async fn deliver(&self, delivery: Delivery) -> Result<bool, DbError> {
        let inner = &self.inner;
        let attempt = delivery.attempts + 1;
        let outcome = match (&delivery.channel[..], &inner.config.webhook) {
            ("webhook", Some(webhook)) => {
                let agent = inner.agent.clone();
                let secret = webhook.secret.clone();
                let d = delivery.clone();
                tokio::task::spawn_blocking(move || webhook::post(&agent, &secret, &d))
                    .await
                    .unwrap_or_else(|e| Err(format!("the delivery stopped: {e}")))
                    .map_err(PushError::Retry)
            }
            ("webhook", None) => Err("no webhook is configured any more".into()),
            ("push", _) => match store::push_registration(&inner.db, &delivery.recipient).await? {
                Some((platform, token)) => {
                    let outcome = inner
                        .pusher
                        .send(&inner.agent, &delivery, &platform, &token)
                        .await;
                    if let Err(PushError::Gone(why)) = &outcome {
                        // The service no longer knows this token: forget it (unless the phone
                        // has registered a new one since), so nothing more is sent to it.
                        store::forget_push(&inner.db, &delivery.recipient, &token).await?;
                        tracing::warn!(device = %delivery.recipient, %why, "push token no longer valid; registration removed");
                    }
                    outcome
                }
                None => Err(PushError::Gone(
                    "the device no longer has a push registration".to_owned(),
                )),
            },
            (other, _) => Err(format!("unknown channel `{other}`").into()),
        };
        let now = now_ms();
        match outcome {
            Ok(()) => {
                store::delivered(&inner.db, &delivery.id, attempt, now).await?;
                inner.delivered.inc();
                tracing::info!(id = %delivery.id, kind = %delivery.kind, doc = %delivery.doc, attempt, "notification delivered");
                Ok(true)
            }
            Err(PushError::Gone(error)) => {
                // Revoked, wiped, unregistered or refused by the service: nobody to tell on that
                // device, now or later.
                store::failed(&inner.db, &delivery.id, attempt, Then::Dead(now), &error).await?;
                tracing::warn!(id = %delivery.id, kind = %delivery.kind, doc = %delivery.doc, attempt, %error, "notification is a dead letter");
                Ok(false)
            }
            Err(PushError::Retry(error)) => {
                inner.failed.inc();
                if attempt >= i64::from(inner.config.max_attempts) {
                    store::failed(&inner.db, &delivery.id, attempt, Then::Dead(now), &error)
                        .await?;
                    tracing::error!(id = %delivery.id, kind = %delivery.kind, doc = %delivery.doc, attempt, %error, "notification is a dead letter");
                } else {
                    let next = now.saturating_add(self.delay(attempt));
                    store::failed(
                        &inner.db,
                        &delivery.id,
                        attempt,
                        Then::RetryAt(next),
                        &error,
                    )
                    .await?;
                    tracing::warn!(id = %delivery.id, kind = %delivery.kind, attempt, %error, retry_in_ms = next - now, "notification failed; retrying");
                }
                Ok(false)
            }
        }
    }

    /// The delay before try `attempt + 1`: the base doubled per try, at most an hour, with
    /// "equal jitter" (between half and all of it) so receivers coming back are not stampeded.
    fn delay(&self, attempt: i64) -> i64 {
        let base = u128::from(self.inner.config.retry_base.as_millis().max(1));
        let doubled = base << u32::try_from(attempt.clamp(1, 40) - 1).unwrap_or(0);
        let full = doubled.min(MAX_DELAY.as_millis());
        let half = full / 2;
        let jitter = u128::from(getrandom::u64().unwrap_or(0)) % (half + 1);
        i64::try_from(half + jitter).unwrap_or(i64::MAX)
    }

    /// The outbox's backlog and dead letters, counted now: (pending, dead).
    pub async fn backlog(&self) -> Result<(i64, i64), crate::db::DbError> {
        store::counts(&self.inner.db).await
    }
}

impl Figures for Notifier {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "baton_notifications_delivered",
            "Deliveries made by this node",
            self.inner.delivered.clone(),
        );
        registry.register(
            "baton_notification_failures",
            "Failed delivery tries on this node (each is retried until it is a dead letter)",
            self.inner.failed.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Storage;

    #[tokio::test]
    async fn a_look_that_finds_nothing_does_not_wait_for_the_writer() {
        let dir = std::env::temp_dir().join(format!("baton-notify-{}", uuid::Uuid::new_v4()));
        let db = Db::open(&Storage::Sqlite, &dir).await.expect("open");
        let notifier = Notifier::new(db.clone(), NotifyConfig::default());
        // Another writer holds SQLite's write lock, as a long group commit does.
        let mut writer = db.pool().acquire().await.expect("connection");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *writer)
            .await
            .expect("lock");
        let looked = tokio::time::timeout(Duration::from_secs(5), notifier.deliver_due()).await;
        sqlx::query("ROLLBACK")
            .execute(&mut *writer)
            .await
            .expect("unlock");
        drop(writer);
        db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            looked
                .expect("answered without waiting for the lock")
                .expect("read"),
            0
        );
    }
}
