//! The outbox's rows: written with a commit, claimed, and settled.

use crate::db::{AnyQuery, Backend, Db, DbError, in_multi_row_statements, placeholders};
use baton_core::ids::UnitId;
use sha2::{Digest, Sha256};
use sqlx::Row;

/// Where a notice goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// The configured webhook, at this URL.
    Webhook(String),
    /// Every device this user signed in on that registered for push and is not revoked, as the
    /// transaction finds them.
    DevicesOf(String),
}

/// A delivery owed, as a commit writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// The delivery's id (for push, the prefix of one id per device).
    pub id: String,
    pub doc: String,
    pub event: String,
    pub kind: &'static str,
    pub body: String,
    pub to: Recipient,
}

/// A delivery claimed for sending.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub doc: String,
    pub kind: String,
    pub channel: String,
    pub recipient: String,
    pub body: String,
    pub attempts: i64,
}

/// A delivery that was given up.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub id: String,
    pub task_id: String,
    pub event_id: String,
    pub kind: String,
    pub channel: String,
    pub recipient: String,
    pub attempts: i64,
    pub created_at: i64,
    pub dead_at: i64,
    pub last_error: Option<String>,
    /// The task's unit.
    pub unit: String,
}

/// A delivery's stable id: the same for the same event and channel however often the event is
/// written, so a double write is one delivery.
pub fn row_id(doc: &str, event: &str, channel: &str) -> String {
    let digest = Sha256::digest(format!("{doc}\n{event}\n{channel}").as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// Write `rows` in the commit's transaction, in multi-row statements: the webhook's rows as
/// they are, and one push row for each registered, unrevoked device of each person named.
pub(crate) async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &[&Outbound],
    now: i64,
) -> Result<(), DbError> {
    let (webhooks, pushes): (Vec<&Outbound>, Vec<&Outbound>) = rows
        .iter()
        .partition(|row| matches!(row.to, Recipient::Webhook(_)));
    let webhook = |n| {
        format!(
            "INSERT INTO notifications (id, doc_id, event_id, kind, body, created_at, recipient,
                 channel, next_attempt_at)
             VALUES {}
             ON CONFLICT (id) DO NOTHING",
            placeholders(n, 9)
        )
    };
    in_multi_row_statements(tx, &webhooks, webhook, |query, row| {
        bind_outbound(query, row, now).bind("webhook").bind(now)
    })
    .await?;
    // `VALUES` names its columns column1, column2, … (SQLite and Postgres alike); the `WHERE`
    // also keeps SQLite from reading `ON CONFLICT` as a join's `ON`.
    let push = |n| {
        format!(
            "INSERT INTO notifications (id, doc_id, event_id, kind, channel, recipient, body,
                 created_at, next_attempt_at)
             SELECT v.column1 || '_' || d.id, v.column2, v.column3, v.column4, 'push', d.id,
                 v.column5, v.column6, v.column6
             FROM (VALUES {}) AS v, devices d
             WHERE d.last_user_id = v.column7 AND d.push_token IS NOT NULL
                 AND d.revoked_at IS NULL
             ON CONFLICT (id) DO NOTHING",
            placeholders(n, 7)
        )
    };
    in_multi_row_statements(tx, &pushes, push, |query, row| {
        bind_outbound(query, row, now)
    })
    .await
}

/// An outbound row's id, task, event, kind, body, time and recipient, in that order (the
/// webhook's statement binds its channel and first try's time after them).
fn bind_outbound<'q>(query: AnyQuery<'q>, row: &'q Outbound, now: i64) -> AnyQuery<'q> {
    let recipient = match &row.to {
        Recipient::Webhook(url) => url.as_str(),
        Recipient::DevicesOf(user) => user.as_str(),
    };
    query
        .bind(row.id.as_str())
        .bind(row.doc.as_str())
        .bind(row.event.as_str())
        .bind(row.kind)
        .bind(row.body.as_str())
        .bind(now)
        .bind(recipient)
}

/// The deliveries due at `$1` that nobody holds a claim on.
const DUE: &str = "delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $1
    AND (claimed_until IS NULL OR claimed_until < $1)";

/// Claim up to `limit` deliveries due at `now`, oldest first, until `lease_until`.
pub(crate) async fn claim_due(
    db: &Db,
    node: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Delivery>, DbError> {
    // A read first, so that a look that finds nothing writes nothing: on SQLite a write waits
    // for the one writer's lock, which the group commits hold most of the time under load.
    let any_due: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM notifications WHERE {DUE} LIMIT 1"
    )))
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    if any_due.is_none() {
        return Ok(Vec::new());
    }
    let lock = match db.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE notifications SET claimed_by = $2, claimed_until = $3
         WHERE id IN (
             SELECT id FROM notifications WHERE {DUE}
             ORDER BY next_attempt_at, id LIMIT $4{lock})
         RETURNING id, doc_id, kind, channel, recipient, body, attempts, next_attempt_at"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(node)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    let mut due = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<i64, _>(7)?,
                Delivery {
                    id: r.try_get(0)?,
                    doc: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    channel: r.try_get(3)?,
                    recipient: r.try_get(4)?,
                    body: r.try_get(5)?,
                    attempts: r.try_get(6)?,
                },
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    due.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
    Ok(due.into_iter().map(|(_, d)| d).collect())
}

pub(crate) async fn delivered(db: &Db, id: &str, attempts: i64, now: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE notifications SET delivered_at = $2, attempts = $3, claimed_by = NULL,
             claimed_until = NULL, last_error = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .bind(attempts)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// What becomes of a delivery whose try failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    RetryAt(i64),
    /// A dead letter, from this moment.
    Dead(i64),
}

/// Record a failed try.
pub(crate) async fn failed(
    db: &Db,
    id: &str,
    attempts: i64,
    then: Then,
    error: &str,
) -> Result<(), DbError> {
    let (next_attempt, dead_at) = match then {
        Then::RetryAt(next) => (Some(next), None),
        Then::Dead(now) => (None, Some(now)),
    };
    sqlx::query(
        "UPDATE notifications SET attempts = $2,
             next_attempt_at = COALESCE($3, next_attempt_at), dead_at = $4, last_error = $5,
             claimed_by = NULL, claimed_until = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(attempts)
    .bind(next_attempt)
    .bind(dead_at)
    .bind(truncated(error))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// `(pending, dead)` deliveries.
pub(crate) async fn counts(db: &Db) -> Result<(i64, i64), DbError> {
    let row = sqlx::query(
        "SELECT
             COALESCE(SUM(CASE WHEN delivered_at IS NULL AND dead_at IS NULL THEN 1 ELSE 0 END), 0),
             COALESCE(SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END), 0)
         FROM notifications",
    )
    .fetch_one(db.pool())
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Dead letters, newest first, after the cursor `(dead_at, id)` of the last one seen.
pub async fn dead_letters(
    db: &Db,
    units: Option<&[UnitId]>,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<DeadLetter>, DbError> {
    let (at, id) = after.unwrap_or((i64::MAX, String::new()));
    // Only the tasks of `units`, when given.
    let of_units = match units {
        None => String::new(),
        Some([]) => return Ok(Vec::new()),
        Some(units) => format!(
            " AND d.unit_id IN ({})",
            (4..4 + units.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let sql = format!(
        "SELECT n.id, n.doc_id, n.event_id, n.kind, n.channel, n.recipient, n.attempts,
             n.created_at, n.dead_at, n.last_error, d.unit_id
         FROM notifications n JOIN documents d ON d.id = n.doc_id
         WHERE n.dead_at IS NOT NULL AND (n.dead_at < $1 OR (n.dead_at = $1 AND n.id > $2)){of_units}
         ORDER BY n.dead_at DESC, n.id LIMIT $3"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(at)
        .bind(id)
        .bind(limit);
    for unit in units.unwrap_or_default() {
        query = query.bind(unit.as_str().to_owned());
    }
    let rows = query.fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| {
            Ok(DeadLetter {
                id: r.try_get(0)?,
                task_id: r.try_get(1)?,
                event_id: r.try_get(2)?,
                kind: r.try_get(3)?,
                channel: r.try_get(4)?,
                recipient: r.try_get(5)?,
                attempts: r.try_get(6)?,
                created_at: r.try_get(7)?,
                dead_at: r.try_get(8)?,
                last_error: r.try_get(9)?,
                unit: r.try_get(10)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// Every delivery of a task's notices: `(kind, channel, recipient, attempts, delivered)`.
pub async fn of_task(
    db: &Db,
    doc: &str,
) -> Result<Vec<(String, String, String, i64, bool)>, DbError> {
    let rows = sqlx::query(
        "SELECT kind, channel, recipient, attempts, delivered_at FROM notifications
         WHERE doc_id = $1 ORDER BY created_at, id",
    )
    .bind(doc)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get::<Option<i64>, _>(4)?.is_some(),
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// A device's push registration: `(platform, token)`, unless it is revoked or has none.
pub(crate) async fn push_registration(
    db: &Db,
    device: &str,
) -> Result<Option<(String, String)>, DbError> {
    let row = sqlx::query(
        "SELECT push_platform, push_token FROM devices
         WHERE id = $1 AND revoked_at IS NULL AND push_token IS NOT NULL",
    )
    .bind(device)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
        .map_err(|e: sqlx::Error| DbError::from(e))
}

/// Register (or, with `None`, remove) a device's push token.
pub async fn set_push(
    db: &Db,
    device: &str,
    registration: Option<(&str, &str)>,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE devices SET push_platform = $2, push_token = $3
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(device)
    .bind(registration.map(|r| r.0))
    .bind(registration.map(|r| r.1))
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Remove a device's push registration the push service refused, if it still holds `token`
/// (the phone may have registered a new one meanwhile).
pub(crate) async fn forget_push(db: &Db, device: &str, token: &str) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE devices SET push_platform = NULL, push_token = NULL
         WHERE id = $1 AND push_token = $2",
    )
    .bind(device)
    .bind(token)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Errors are kept short: a receiver's answer may be long.
fn truncated(error: &str) -> String {
    error.chars().take(500).collect()
}
