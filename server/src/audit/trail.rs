//! Reading the task events' trail: every event as the server received it, with the device's
//! claims (stamp, device time) beside the server's receipt time.

use crate::db::{Bound, Conditions, Db, DbError};
use baton_core::Hlc;
use baton_core::ids::UnitId;
use serde::Serialize;
use sqlx::Row;
use std::str::FromStr;
use utoipa::ToSchema;

/// An event is marked late when it reached the server this long after its stamp (ms): it was
/// written offline, or its device's clock is behind. Its stamp stays what the device said.
pub const LATE_AFTER_MS: i64 = 5 * 60 * 1_000;

/// Whether an event stamped at `stamp_at` and received at `received_at` arrived late.
pub fn late(stamp_at: i64, received_at: i64) -> bool {
    received_at.saturating_sub(stamp_at) > LATE_AFTER_MS
}

/// One event on the trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct TrailEvent {
    /// Its place on the task events' chain.
    pub seq: i64,
    /// The task's bare document id.
    pub task_id: String,
    pub unit: String,
    pub event_id: String,
    pub kind: String,
    pub user: String,
    pub role: String,
    pub device: String,
    /// The event's HLC stamp, as the device wrote it (the fold orders by it).
    pub stamp: String,
    /// The stamp's wall time (Unix ms).
    pub stamp_at: i64,
    /// What the device's own clock read when the event was written (Unix ms): shown, never used.
    pub device_time: i64,
    /// When the server received and stored it (Unix ms, the server's clock).
    pub received_at: i64,
    /// Whether it arrived more than five minutes after its stamp.
    pub late: bool,
    /// The heads of the changes it arrived in.
    pub heads: Vec<String>,
    /// Its link's hash on the chain.
    pub hash: String,
}

/// Which events to read: each field that is set must match.
#[derive(Clone, Debug, Default)]
pub struct TrailFilter {
    /// Only events of tasks on these units (`None`: every unit).
    pub units: Option<Vec<UnitId>>,
    pub task: Option<String>,
    pub user: Option<String>,
    pub device: Option<String>,
    /// Received at or after (Unix ms).
    pub since: Option<i64>,
    /// Received before (Unix ms).
    pub until: Option<i64>,
    /// After this place on the chain.
    pub after: i64,
}

/// Events matching `filter` in the order they were received (their places on the chain), at
/// most `limit`.
pub async fn events(db: &Db, filter: &TrailFilter, limit: i64) -> Result<Vec<TrailEvent>, DbError> {
    let mut conditions = Conditions::default();
    conditions.add("e.seq >", Bound::Number(filter.after));
    for (column, value) in [
        ("e.doc_id =", &filter.task),
        ("e.user_id =", &filter.user),
        ("e.device_id =", &filter.device),
    ] {
        if let Some(value) = value {
            conditions.add(column, Bound::Text(value));
        }
    }
    if let Some(since) = filter.since {
        conditions.add("e.received_at >=", Bound::Number(since));
    }
    if let Some(until) = filter.until {
        conditions.add("e.received_at <", Bound::Number(until));
    }
    if let Some(units) = &filter.units {
        conditions.any_of("d.unit_id", units.iter().map(UnitId::as_str));
    }
    if conditions.holds_nul() {
        return Ok(Vec::new());
    }
    let limit = conditions.bind(Bound::Number(limit));
    let sql = format!(
        "SELECT e.seq, e.doc_id, d.unit_id, e.event_id, e.kind, e.user_id, e.role_id, e.device_id,
                e.hlc, e.device_time, e.received_at, COALESCE(e.heads, ''), e.hash
         FROM task_events e JOIN documents d ON d.id = e.doc_id
         WHERE e.seq IS NOT NULL AND {} ORDER BY e.seq LIMIT {limit}",
        conditions.clause()
    );
    let query = conditions.query(sql);
    let rows = query.fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| {
            let stamp: String = r.try_get(8)?;
            let received_at: i64 = r.try_get(10)?;
            let stamp_at = Hlc::from_str(&stamp).map_or(0, |h| h.wall);
            let heads: String = r.try_get(11)?;
            Ok(TrailEvent {
                seq: r.try_get(0)?,
                task_id: r.try_get(1)?,
                unit: r.try_get(2)?,
                event_id: r.try_get(3)?,
                kind: r.try_get(4)?,
                user: r.try_get(5)?,
                role: r.try_get(6)?,
                device: r.try_get(7)?,
                stamp,
                stamp_at,
                device_time: r.try_get(9)?,
                received_at,
                late: late(stamp_at, received_at),
                heads: heads
                    .split(',')
                    .filter(|h| !h.is_empty())
                    .map(str::to_owned)
                    .collect(),
                hash: r.try_get::<Option<String>, _>(12)?.unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_late_past_five_minutes_after_its_stamp_and_never_for_a_stamp_ahead() {
        let stamped = 1_767_225_600_000;
        assert!(!late(stamped, stamped));
        assert!(!late(stamped, stamped + LATE_AFTER_MS));
        assert!(late(stamped, stamped + LATE_AFTER_MS + 1));
        assert!(late(stamped, stamped + 2 * 3_600_000));
        assert!(!late(stamped, stamped - 60_000));
        assert!(late(i64::MIN, i64::MAX));
    }
}
