//! The directory as admins page through it: units, roles, users and devices, each list in id
//! order after a given id, limited to the units an admin administers. (Single records and
//! changes are `db`'s.)

use crate::db::{Db, DbError};
use baton_core::ids::UnitId;
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

/// A unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Unit {
    pub id: String,
    pub name: String,
    /// Its IANA time zone: shifts start at its local wall-clock times.
    pub time_zone: String,
}

/// A role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct RoleEntry {
    pub id: String,
    pub name: String,
}

/// A user, with the roles they hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub display_name: String,
    pub created_at: i64,
    /// When they were disabled (Unix ms); null while they may sign in.
    pub disabled_at: Option<i64>,
    pub memberships: Vec<MembershipEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct MembershipEntry {
    pub unit: String,
    pub role: String,
}

/// A device the server has seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Device {
    pub id: String,
    /// The user who last signed in on it.
    pub last_user: String,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
    /// When it was revoked (Unix ms); null while it may sync.
    pub revoked_at: Option<i64>,
    /// Whether it has registered for push notifications.
    pub push: bool,
}

/// `IN ($from, …)` over `n` values.
fn list(from: usize, n: usize) -> String {
    let items: Vec<String> = (from..from + n).map(|i| format!("${i}")).collect();
    format!("({})", items.join(", "))
}

/// Units (of `units`, or every one) after `after`, at most `limit`.
pub async fn units(
    db: &Db,
    units: Option<&[UnitId]>,
    after: &str,
    limit: i64,
) -> Result<Vec<Unit>, DbError> {
    let within = units.map_or(String::new(), |u| {
        format!(" AND id IN {}", list(3, u.len()))
    });
    if units.is_some_and(<[UnitId]>::is_empty) {
        return Ok(Vec::new());
    }
    let sql =
        format!("SELECT id, name, time_zone FROM units WHERE id > $1{within} ORDER BY id LIMIT $2");
    // Safe: the statement is made of fixed text and numbered placeholders only.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(after)
        .bind(limit);
    for unit in units.unwrap_or_default() {
        query = query.bind(unit.as_str());
    }
    let rows = query.fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| {
            Ok(Unit {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                time_zone: r.try_get(2)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// Roles after `after`, at most `limit`.
pub async fn roles(db: &Db, after: &str, limit: i64) -> Result<Vec<RoleEntry>, DbError> {
    let rows = sqlx::query("SELECT id, name FROM roles WHERE id > $1 ORDER BY id LIMIT $2")
        .bind(after)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| {
            Ok(RoleEntry {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// Users after `after`, at most `limit`: every user, or (`units`) those holding a role on one
/// of `units` (their memberships listed on those units only).
pub async fn users(
    db: &Db,
    units: Option<&[UnitId]>,
    after: &str,
    limit: i64,
) -> Result<Vec<User>, DbError> {
    if units.is_some_and(<[UnitId]>::is_empty) {
        return Ok(Vec::new());
    }
    let within = units.map_or(String::new(), |u| {
        format!(
            " AND id IN (SELECT user_id FROM memberships WHERE unit_id IN {})",
            list(3, u.len())
        )
    });
    let sql = format!(
        "SELECT id, display_name, created_at, disabled_at FROM users WHERE id > $1{within}
         ORDER BY id LIMIT $2"
    );
    // Safe: the statement is made of fixed text and numbered placeholders only.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(after)
        .bind(limit);
    for unit in units.unwrap_or_default() {
        query = query.bind(unit.as_str());
    }
    let rows = query.fetch_all(db.pool()).await?;
    let mut users = rows
        .iter()
        .map(|r| {
            Ok(User {
                id: r.try_get(0)?,
                display_name: r.try_get(1)?,
                created_at: r.try_get(2)?,
                disabled_at: r.try_get(3)?,
                memberships: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    if users.is_empty() {
        return Ok(users);
    }
    // The page's memberships in one query, on the units it is limited to.
    let sql = format!(
        "SELECT user_id, unit_id, role_id FROM memberships WHERE user_id IN {}
         ORDER BY user_id, unit_id, role_id",
        list(1, users.len())
    );
    // Safe: the statement is made of fixed text and numbered placeholders only.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for user in &users {
        query = query.bind(user.id.as_str());
    }
    let mut held: std::collections::HashMap<String, Vec<MembershipEntry>> = Default::default();
    for r in query.fetch_all(db.pool()).await? {
        let unit: String = r.try_get(1)?;
        if units.is_some_and(|u| !u.iter().any(|x| x.as_str() == unit)) {
            continue;
        }
        held.entry(r.try_get(0)?)
            .or_default()
            .push(MembershipEntry {
                unit,
                role: r.try_get(2)?,
            });
    }
    for user in &mut users {
        user.memberships = held.remove(&user.id).unwrap_or_default();
    }
    Ok(users)
}

/// Devices after `after`, at most `limit`: every device, or (`units`) those whose last user
/// holds a role on one of `units`; only `user`'s, when given.
pub async fn devices(
    db: &Db,
    units: Option<&[UnitId]>,
    user: Option<&str>,
    after: &str,
    limit: i64,
) -> Result<Vec<Device>, DbError> {
    if units.is_some_and(<[UnitId]>::is_empty) || user.is_some_and(|u| u.contains('\0')) {
        return Ok(Vec::new());
    }
    let by_user = if user.is_some() {
        " AND last_user_id = $3"
    } else {
        ""
    };
    let first = if user.is_some() { 4 } else { 3 };
    let within = units.map_or(String::new(), |u| {
        format!(
            " AND last_user_id IN (SELECT user_id FROM memberships WHERE unit_id IN {})",
            list(first, u.len())
        )
    });
    let sql = format!(
        "SELECT id, last_user_id, first_seen_at, last_seen_at, revoked_at,
                CASE WHEN push_token IS NULL THEN 0 ELSE 1 END
         FROM devices WHERE id > $1{by_user}{within} ORDER BY id LIMIT $2"
    );
    // Safe: the statement is made of fixed text and numbered placeholders only.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(after)
        .bind(limit);
    if let Some(user) = user {
        query = query.bind(user);
    }
    for unit in units.unwrap_or_default() {
        query = query.bind(unit.as_str());
    }
    let rows = query.fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| {
            Ok(Device {
                id: r.try_get(0)?,
                last_user: r.try_get(1)?,
                first_seen_at: r.try_get(2)?,
                last_seen_at: r.try_get(3)?,
                revoked_at: r.try_get(4)?,
                push: r.try_get::<i64, _>(5)? != 0,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}
