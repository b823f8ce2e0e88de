//! The audit trails' hash chains.
//!
//! Both trails (`task_events`, every event of every task as it was received, and
//! `security_audit`, refusals, connections and admin actions) are chains: each row has its place
//! (`seq`, from 1 with no gaps) and a hash over its place, the hash of the row before and its own
//! content. Changing, removing or slipping in a row breaks every hash from there on.
//! `audit_chains` holds each chain's last link; a transaction that appends locks it first, so
//! appends from several nodes on one Postgres take their turns, and a row is appended at most
//! once.

use crate::db::{Db, DbError, EventRow, StoredAudit, in_multi_row_statements, placeholders};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::collections::HashSet;

/// Every task event as the server received it.
pub const TASK_EVENTS: &str = "task_events";
/// The security audit.
pub const SECURITY_AUDIT: &str = "security_audit";

/// A link of a chain: its place and hash. The chain before its first row is `seq` 0, hash "".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub seq: i64,
    pub hash: String,
}

impl Link {
    /// The link after this one, holding `content`: SHA-256, in hex, over the JSON array of the
    /// new place, this link's hash and the content's fields.
    pub fn next(&self, content: Vec<Value>) -> Link {
        let seq = self.seq + 1;
        let mut fields = vec![json!(seq), json!(self.hash)];
        fields.extend(content);
        let digest = Sha256::digest(Value::Array(fields).to_string().as_bytes());
        Link {
            seq,
            hash: digest.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// What a task event's link covers, in order.
pub fn event_content(row: &EventRow, received_at: i64) -> Vec<Value> {
    vec![
        json!(row.doc),
        json!(row.event),
        json!(row.kind),
        json!(row.user),
        json!(row.role),
        json!(row.device),
        json!(row.device_time),
        json!(row.hlc),
        json!(received_at),
        json!(row.heads),
    ]
}

/// What a security audit record's link covers, in order.
pub fn audit_content(record: &StoredAudit) -> Vec<Value> {
    vec![
        json!(record.id),
        json!(record.at),
        json!(record.kind),
        json!(record.user),
        json!(record.device),
        json!(record.doc),
        json!(record.detail),
    ]
}

/// Lock `chain` for this transaction and read its last link.
async fn lock(tx: &mut sqlx::Transaction<'_, sqlx::Any>, chain: &str) -> Result<Link, DbError> {
    // An update that changes nothing takes the row's lock until the transaction ends (Postgres),
    // or the database's write lock (SQLite).
    let row = sqlx::query("UPDATE audit_chains SET seq = seq WHERE chain = $1 RETURNING seq, hash")
        .bind(chain)
        .fetch_one(&mut **tx)
        .await?;
    Ok(Link {
        seq: row.try_get(0)?,
        hash: row.try_get(1)?,
    })
}

async fn save(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    chain: &str,
    last: &Link,
) -> Result<(), DbError> {
    sqlx::query("UPDATE audit_chains SET seq = $1, hash = $2 WHERE chain = $3")
        .bind(last.seq)
        .bind(last.hash.as_str())
        .bind(chain)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Append the events of one group commit that are not stored yet (another node, or an earlier
/// write of the same change, may have stored some), received `now`.
pub(crate) async fn append_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    events: &[&EventRow],
    now: i64,
) -> Result<(), DbError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut last = lock(tx, TASK_EVENTS).await?;
    let stored = stored_events(tx, events).await?;
    let mut seen = HashSet::new();
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        let key = (event.doc.as_str(), event.event.as_str());
        if stored.contains(&(key.0.to_owned(), key.1.to_owned())) || !seen.insert(key) {
            continue;
        }
        last = last.next(event_content(event, now));
        rows.push((*event, last.clone()));
    }
    if rows.is_empty() {
        return Ok(());
    }
    let statement = |rows| {
        format!(
            "INSERT INTO task_events (doc_id, event_id, kind, user_id, role_id, device_id,
                                      device_time, hlc, received_at, heads, seq, hash) VALUES {}",
            placeholders(rows, 12)
        )
    };
    in_multi_row_statements(tx, &rows, statement, |query, (row, link)| {
        query
            .bind(row.doc.as_str())
            .bind(row.event.as_str())
            .bind(row.kind.as_str())
            .bind(row.user.as_str())
            .bind(row.role.as_str())
            .bind(row.device.as_str())
            .bind(row.device_time)
            .bind(row.hlc.as_str())
            .bind(now)
            .bind(row.heads.as_str())
            .bind(link.seq)
            .bind(link.hash.as_str())
    })
    .await?;
    save(tx, TASK_EVENTS, &last).await
}

/// Which of `events` are stored already, as (document, event) ids.
async fn stored_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    events: &[&EventRow],
) -> Result<HashSet<(String, String)>, DbError> {
    let mut stored = HashSet::new();
    for chunk in events.chunks(256) {
        let docs: Vec<&str> = chunk
            .iter()
            .map(|e| e.doc.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let ids: Vec<&str> = chunk.iter().map(|e| e.event.as_str()).collect();
        let sql = format!(
            "SELECT doc_id, event_id FROM task_events WHERE doc_id IN ({}) AND event_id IN ({})",
            numbered(1, docs.len()),
            numbered(docs.len() + 1, ids.len())
        );
        // Safe: the statement is made of fixed text and numbered placeholders only.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in docs.iter().chain(&ids) {
            query = query.bind(*value);
        }
        for row in query.fetch_all(&mut **tx).await? {
            stored.insert((row.try_get(0)?, row.try_get(1)?));
        }
    }
    Ok(stored)
}

/// `$from, …` for `n` values.
fn numbered(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Append one security audit record.
pub(crate) async fn append_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    record: &StoredAudit,
) -> Result<(), DbError> {
    let last = lock(tx, SECURITY_AUDIT).await?.next(audit_content(record));
    sqlx::query(
        "INSERT INTO security_audit (id, at, kind, user_id, device_id, doc_id, detail, seq, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(record.id.as_str())
    .bind(record.at)
    .bind(record.kind.as_str())
    .bind(record.user.as_deref())
    .bind(record.device.as_deref())
    .bind(record.doc.as_deref())
    .bind(record.detail.as_str())
    .bind(last.seq)
    .bind(last.hash.as_str())
    .execute(&mut **tx)
    .await?;
    save(tx, SECURITY_AUDIT, &last).await
}

/// Put the rows written before the chains existed on their chains, oldest first; once per
/// chain, so that a row slipped in later without a place is never made to look genuine.
/// Returns how many rows it placed.
pub async fn seal(db: &Db) -> Result<u64, DbError> {
    let mut tx = db.pool().begin().await?;
    let mut placed = 0;
    for chain in [TASK_EVENTS, SECURITY_AUDIT] {
        let sealed: i64 = sqlx::query("SELECT sealed FROM audit_chains WHERE chain = $1")
            .bind(chain)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if sealed != 0 {
            continue;
        }
        let mut last = lock(&mut tx, chain).await?;
        if chain == TASK_EVENTS {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{EVENT_COLUMNS} WHERE seq IS NULL ORDER BY received_at, doc_id, event_id"
            )))
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                let (event, received_at, _) = chained_event(&row)?;
                last = last.next(event_content(&event, received_at));
                sqlx::query(
                    "UPDATE task_events SET seq = $1, hash = $2 WHERE doc_id = $3 AND event_id = $4",
                )
                .bind(last.seq)
                .bind(last.hash.as_str())
                .bind(event.doc.as_str())
                .bind(event.event.as_str())
                .execute(&mut *tx)
                .await?;
                placed += 1;
            }
        } else {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{AUDIT_COLUMNS} WHERE seq IS NULL ORDER BY at, id"
            )))
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                let (record, _) = chained_audit(&row)?;
                last = last.next(audit_content(&record));
                sqlx::query("UPDATE security_audit SET seq = $1, hash = $2 WHERE id = $3")
                    .bind(last.seq)
                    .bind(last.hash.as_str())
                    .bind(record.id.as_str())
                    .execute(&mut *tx)
                    .await?;
                placed += 1;
            }
        }
        save(&mut tx, chain, &last).await?;
        sqlx::query("UPDATE audit_chains SET sealed = 1 WHERE chain = $1")
            .bind(chain)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(placed)
}

const EVENT_COLUMNS: &str = "SELECT doc_id, event_id, kind, user_id, role_id, device_id, \
     device_time, hlc, received_at, COALESCE(heads, ''), seq, hash FROM task_events";

const AUDIT_COLUMNS: &str =
    "SELECT id, at, kind, user_id, device_id, doc_id, detail, seq, hash FROM security_audit";

/// A stored row of a chain: its place and hash as stored (`None` for a row without a place).
pub type Stored = Option<Link>;

fn stored_link(row: &sqlx::any::AnyRow, seq: usize) -> Result<Stored, sqlx::Error> {
    let place: Option<i64> = row.try_get(seq)?;
    let hash: Option<String> = row.try_get(seq + 1)?;
    Ok(place.map(|seq| Link {
        seq,
        hash: hash.unwrap_or_default(),
    }))
}

fn chained_event(row: &sqlx::any::AnyRow) -> Result<(EventRow, i64, Stored), DbError> {
    Ok((
        EventRow {
            doc: row.try_get(0)?,
            event: row.try_get(1)?,
            kind: row.try_get(2)?,
            user: row.try_get(3)?,
            role: row.try_get(4)?,
            device: row.try_get(5)?,
            device_time: row.try_get(6)?,
            hlc: row.try_get(7)?,
            heads: row.try_get(9)?,
        },
        row.try_get(8)?,
        stored_link(row, 10)?,
    ))
}

fn chained_audit(row: &sqlx::any::AnyRow) -> Result<(StoredAudit, Stored), DbError> {
    Ok((
        StoredAudit {
            id: row.try_get(0)?,
            at: row.try_get(1)?,
            kind: row.try_get(2)?,
            user: row.try_get(3)?,
            device: row.try_get(4)?,
            doc: row.try_get(5)?,
            detail: row.try_get(6)?,
        },
        stored_link(row, 7)?,
    ))
}

/// The chain's last link, as `audit_chains` holds it.
pub async fn last_link(db: &Db, chain: &str) -> Result<Link, DbError> {
    let row = sqlx::query("SELECT seq, hash FROM audit_chains WHERE chain = $1")
        .bind(chain)
        .fetch_one(db.pool())
        .await?;
    Ok(Link {
        seq: row.try_get(0)?,
        hash: row.try_get(1)?,
    })
}

/// Task events with a place after `after`, in chain order, at most `limit`.
pub async fn events_after(
    db: &Db,
    after: i64,
    limit: i64,
) -> Result<Vec<(EventRow, i64, Link)>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{EVENT_COLUMNS} WHERE seq > $1 ORDER BY seq LIMIT $2"
    )))
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let (event, received_at, link) = chained_event(row)?;
            Ok((event, received_at, link.unwrap_or_default()))
        })
        .collect()
}

/// Security audit records with a place after `after`, in chain order, at most `limit`.
pub async fn audits_after(
    db: &Db,
    after: i64,
    limit: i64,
) -> Result<Vec<(StoredAudit, Link)>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{AUDIT_COLUMNS} WHERE seq > $1 ORDER BY seq LIMIT $2"
    )))
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let (record, link) = chained_audit(row)?;
            Ok((record, link.unwrap_or_default()))
        })
        .collect()
}

/// A task's events on the chain, in chain order.
pub async fn events_of(db: &Db, doc: &str) -> Result<Vec<EventRow>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{EVENT_COLUMNS} WHERE doc_id = $1 ORDER BY seq"
    )))
    .bind(doc)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|row| Ok(chained_event(row)?.0)).collect()
}

/// Rows of `chain` without a place: (table key, as text).
pub async fn unplaced(db: &Db, chain: &str) -> Result<Vec<String>, DbError> {
    let sql = if chain == TASK_EVENTS {
        "SELECT doc_id || ' ' || event_id FROM task_events WHERE seq IS NULL"
    } else {
        "SELECT id FROM security_audit WHERE seq IS NULL"
    };
    let rows = sqlx::query(sql).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(DbError::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_depends_on_its_place_its_predecessor_and_every_field() {
        let start = Link::default();
        let a = start.next(vec![json!("x"), json!(1)]);
        assert_eq!(a.seq, 1);
        assert_eq!(a.hash.len(), 64);
        assert_eq!(a, start.next(vec![json!("x"), json!(1)]));
        assert_ne!(a.hash, start.next(vec![json!("x"), json!(2)]).hash);
        assert_ne!(a.hash, start.next(vec![json!("y"), json!(1)]).hash);
        let other = Link {
            seq: 0,
            hash: "00".into(),
        };
        assert_ne!(a.hash, other.next(vec![json!("x"), json!(1)]).hash);
        // Fields are kept apart: moving text from one to the next changes the hash.
        assert_ne!(
            start.next(vec![json!("ab"), json!("c")]).hash,
            start.next(vec![json!("a"), json!("bc")]).hash
        );
    }
}
