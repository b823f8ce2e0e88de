//! Durable storage through sqlx: SQLite (one file in the data dir) or Postgres, with the same
//! migrations (`server/migrations/`) and the same queries (`$n` placeholders, which both accept).
//!
//! Every query the server runs is here, so the schema has one reader and one writer.

use crate::config::Storage;
use baton_core::ids::{Role, UnitId, UserId};
use baton_core::index::CoveragePlan;
use baton_core::policy::coverage::{Override, Rotation, Schedule};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;

/// A storage failure. Its detail goes to the log, never to a client.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("stored {what} cannot be read: {problem}")]
    Unreadable { what: String, problem: String },
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Overrides one unit holds at most (past ones count until they are deleted): the index
/// document carries them all to phones.
pub const MAX_OVERRIDES: i64 = 500;

/// The SQLite database's file in the data directory.
pub const SQLITE_FILE: &str = "baton.db";

/// Which database the server talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub use baton_core::sync::actor::DocKind;

/// A document kind as stored.
fn kind_str(kind: DocKind) -> &'static str {
    match kind {
        DocKind::Task => "task",
        DocKind::UnitIndex => "unit_index",
    }
}

fn parse_kind(s: &str) -> Option<DocKind> {
    match s {
        "task" => Some(DocKind::Task),
        "unit_index" => Some(DocKind::UnitIndex),
        _ => None,
    }
}

/// What the server knows about a document without loading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocRecord {
    pub id: String,
    pub kind: DocKind,
    pub unit: UnitId,
    pub template: Option<(String, i64)>,
    pub created_at: i64,
}

/// A user as the server records them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub display_name: String,
    pub disabled_at: Option<i64>,
}

/// A device as the server records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: String,
    pub last_user: UserId,
    pub revoked_at: Option<i64>,
}

/// A security-relevant fact to record.
#[derive(Clone, Debug, Default)]
pub struct AuditRecord<'a> {
    pub kind: &'a str,
    pub user: Option<&'a str>,
    pub device: Option<&'a str>,
    pub doc: Option<&'a str>,
    pub detail: String,
}

/// What a user administers, by the server's records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AdminScope {
    /// Nothing.
    #[default]
    None,
    /// These units (sorted): their memberships, users, devices, tasks and notifications.
    Units(Vec<UnitId>),
    /// The server: every unit, and what belongs to no unit.
    Server,
}

impl AdminScope {
    /// Whether this administers anything.
    pub fn is_admin(&self) -> bool {
        !matches!(self, AdminScope::None)
    }

    /// Whether this administers `unit`.
    pub fn administers(&self, unit: &UnitId) -> bool {
        match self {
            AdminScope::None => false,
            AdminScope::Units(units) => units.contains(unit),
            AdminScope::Server => true,
        }
    }

    /// The units administered, or `None` for every unit.
    pub fn units(&self) -> Option<&[UnitId]> {
        match self {
            AdminScope::None => Some(&[]),
            AdminScope::Units(units) => Some(units),
            AdminScope::Server => None,
        }
    }
}

/// A stored audit record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = AuditRecord)]
pub struct StoredAudit {
    pub id: String,
    pub at: i64,
    pub kind: String,
    pub user: Option<String>,
    pub device: Option<String>,
    pub doc: Option<String>,
    pub detail: String,
}

/// Which audit records to read: each field that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub kind: Option<String>,
    pub user: Option<String>,
    pub device: Option<String>,
    /// Records at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Records before this time (Unix ms).
    pub until: Option<i64>,
    /// Records that come after this one, newest first: (at, id).
    pub after: Option<(i64, String)>,
}

/// One Automerge change to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredChange {
    pub doc: String,
    pub hash: String,
    pub bytes: Vec<u8>,
}

impl StoredChange {
    pub fn of(doc: &str, change: &automerge::Change) -> Self {
        StoredChange {
            doc: doc.to_owned(),
            hash: change.hash().to_string(),
            bytes: change.raw_bytes().to_vec(),
        }
    }
}

/// What one document's changes imply, written in the same transaction as the changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Derived {
    /// The events the changes added.
    pub events: Vec<EventRow>,
    /// The entry its unit's index now owes the task, if it changed.
    pub index: Option<IndexRow>,
    /// The task's timer, if it changed.
    pub timer: Option<TimerRow>,
    /// Deliveries its events' notices owe.
    pub notifications: Vec<crate::notify::store::Outbound>,
    /// The task's summary as the changes leave it.
    pub summary: Option<SummaryRow>,
    /// The trigger that opened the task: its idempotency key is taken in the same transaction,
    /// or, if another task took it first, nothing of this write is stored.
    pub trigger: Option<TriggerRow>,
}

/// One document's write: its record if new, its changes and what they imply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Write {
    pub new_docs: Vec<DocRecord>,
    pub changes: Vec<StoredChange>,
    pub derived: Derived,
}

/// What became of one write of a group commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Stored,
    /// The write opened a task for a trigger whose idempotency key another task already holds:
    /// nothing of it was stored.
    KeyTaken,
}

/// A task's summary row: what `GET /api/v1/tasks` lists and filters by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRow {
    pub doc: String,
    pub unit: String,
    pub template_id: String,
    pub template_version: i64,
    /// `fold::Status` as its JSON name (`open`, `completed`, ...).
    pub status: String,
    pub owner: Option<String>,
    pub owner_role: String,
    pub acuity: String,
    pub escalation_level: i64,
    /// The earliest open deadline, on the workflow clock.
    pub next_due_at: Option<i64>,
    pub label: String,
    pub measures: MeasureRow,
}

/// A task's measures as stored (`baton_core::summary::Measures`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeasureRow {
    pub program: String,
    pub opened_at: Option<i64>,
    pub first_ack_at: Option<i64>,
    pub first_outreach_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub escalations_time: i64,
    pub escalations_acuity: i64,
    pub escalations_manual: i64,
    pub interventions: i64,
    pub first_step_done_at: Option<i64>,
    pub last_step_done_at: Option<i64>,
}

impl MeasureRow {
    /// The columns, in the order they are bound and read.
    pub(crate) const COLUMNS: &'static str = "program, opened_at, first_ack_at, \
        first_outreach_at, closed_at, escalations_time, escalations_acuity, escalations_manual, \
        interventions, first_step_done_at, last_step_done_at";

    /// Read from `row`, its columns from `at` on in [`MeasureRow::COLUMNS`] order.
    pub(crate) fn read(row: &sqlx::any::AnyRow, at: usize) -> Result<MeasureRow, sqlx::Error> {
        Ok(MeasureRow {
            program: row.try_get(at)?,
            opened_at: row.try_get(at + 1)?,
            first_ack_at: row.try_get(at + 2)?,
            first_outreach_at: row.try_get(at + 3)?,
            closed_at: row.try_get(at + 4)?,
            escalations_time: row.try_get(at + 5)?,
            escalations_acuity: row.try_get(at + 6)?,
            escalations_manual: row.try_get(at + 7)?,
            interventions: row.try_get(at + 8)?,
            first_step_done_at: row.try_get(at + 9)?,
            last_step_done_at: row.try_get(at + 10)?,
        })
    }

    fn bind<'q>(&'q self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        query
            .bind(self.program.as_str())
            .bind(self.opened_at)
            .bind(self.first_ack_at)
            .bind(self.first_outreach_at)
            .bind(self.closed_at)
            .bind(self.escalations_time)
            .bind(self.escalations_acuity)
            .bind(self.escalations_manual)
            .bind(self.interventions)
            .bind(self.first_step_done_at)
            .bind(self.last_step_done_at)
    }
}

/// A stored summary, with when the server first stored the task and last stored a change of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSummary {
    pub row: SummaryRow,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Which task summaries to read: each field that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only tasks of these units (`None`: every unit).
    pub units: Option<Vec<String>>,
    pub status: Option<String>,
    pub owner: Option<String>,
    pub template: Option<String>,
    /// Only tasks of templates of this program.
    pub program: Option<String>,
    /// Whether the earliest open deadline is before `now`.
    pub overdue: Option<bool>,
    /// Whether the escalation level is above 0.
    pub escalated: Option<bool>,
    /// The workflow time `overdue` is judged at.
    pub now: i64,
    /// Tasks that come after this one, in (created_at, id) order.
    pub after: Option<(i64, String)>,
}

/// The idempotency key of the trigger that opened a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TriggerRow {
    pub integration: String,
    pub key: String,
    /// A fingerprint of the request: the same request again has the same one.
    pub request: String,
    pub doc: String,
}

/// A task's timer as it is to be stored: set to its next due action, or cleared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerRow {
    pub doc: String,
    pub due: Option<DueTimer>,
}

/// A timer a node claimed to fire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedTimer {
    pub doc: String,
    pub due_at: i64,
    pub event_id: String,
}

/// A timer: when, the event it writes, and what it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueTimer {
    pub due_at: i64,
    pub event_id: String,
    /// `policy::escalation::Action`, as JSON.
    pub action: String,
}

/// One event as the server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub doc: String,
    pub event: String,
    pub kind: String,
    pub user: String,
    pub role: String,
    pub device: String,
    pub device_time: i64,
    pub hlc: String,
    /// The heads of the changes it arrived in (hex hashes, comma-separated).
    pub heads: String,
}

impl EventRow {
    pub fn of(doc: &str, event: &baton_core::Event, heads: &str) -> Self {
        EventRow {
            doc: doc.to_owned(),
            event: event.id.to_string(),
            kind: event.kind().to_string(),
            user: event.actor.user.to_string(),
            role: event.actor.role.to_string(),
            device: event.device.to_string(),
            device_time: event.device_time,
            hlc: event.hlc.to_string(),
            heads: heads.to_owned(),
        }
    }
}

/// The entry a unit's index owes a task: its listing as JSON, or `None` to take it off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRow {
    pub doc: String,
    pub unit: String,
    pub entry: Option<String>,
}

/// An index entry written with a change and not yet applied to the index document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwedIndexEntry {
    pub doc: String,
    pub unit: String,
    pub entry: Option<String>,
    pub queued_at: i64,
}

/// One event as the server received it, read back.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StoredEvent {
    pub event: String,
    pub kind: String,
    pub user: String,
    pub role: String,
    pub device: String,
    pub device_time: i64,
    pub hlc: String,
    pub received_at: i64,
}

/// The stored form of one document: its snapshot, if compacted, and the changes since, each
/// with its hash.
#[derive(Debug, Default)]
pub struct StoredDoc {
    pub snapshot: Option<Vec<u8>>,
    pub changes: Vec<(String, Vec<u8>)>,
}

/// A connection pool and the backend behind it.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Open the configured database and bring its schema up to date.
    pub async fn open(storage: &Storage, data_dir: &Path) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let db = match storage {
            Storage::Sqlite => {
                std::fs::create_dir_all(data_dir).map_err(|source| DbError::DataDir {
                    path: data_dir.display().to_string(),
                    source,
                })?;
                let url = format!("sqlite://{}?mode=rwc", data_dir.join(SQLITE_FILE).display());
                let pool = AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL lets readers run beside the writer; FULL makes every commit
                            // durable before the server tells anyone about it. Checkpoints run
                            // beside the commits ([`Db::checkpoint`]), not inside one of them.
                            for pragma in [
                                "PRAGMA journal_mode = WAL",
                                "PRAGMA synchronous = FULL",
                                "PRAGMA wal_autocheckpoint = 0",
                                // After a burst, the log shrinks back to this once checkpointed.
                                "PRAGMA journal_size_limit = 67108864",
                                "PRAGMA foreign_keys = ON",
                                "PRAGMA busy_timeout = 10000",
                            ] {
                                conn.execute(pragma).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_with(AnyConnectOptions::from_str(&url)?)
                    .await?;
                Db {
                    pool,
                    backend: Backend::Sqlite,
                }
            }
            Storage::Postgres(url) => Db {
                pool: AnyPoolOptions::new()
                    .max_connections(16)
                    .connect_with(AnyConnectOptions::from_str(url)?)
                    .await?,
                backend: Backend::Postgres,
            },
        };
        sqlx::migrate!("./migrations").run(&db.pool).await?;
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Write a consistent copy of the SQLite database to `to` (a file that must not exist),
    /// while the server goes on serving: `VACUUM INTO` reads one snapshot of the database, so
    /// the copy holds every committed transaction up to a moment and nothing of one after it.
    /// Postgres is backed up with its own tools (`pg_dump`).
    pub async fn backup_to(&self, to: &Path) -> Result<(), DbError> {
        if self.backend != Backend::Sqlite {
            return Err(DbError::Unsupported(
                "a Postgres database is backed up with pg_dump (docs/operations.md)",
            ));
        }
        sqlx::query("VACUUM INTO $1")
            .bind(to.display().to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Copy what SQLite's write-ahead log holds into the database file, without waiting for
    /// readers or writers (nothing to do on Postgres). SQLite would otherwise do this inside
    /// whichever commit filled the log, and that commit, with every change waiting on it, would
    /// wait for the copy and its fsync.
    pub async fn checkpoint(&self) -> Result<(), DbError> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    // --- directory: units, roles, users, memberships, devices ---

    pub async fn upsert_unit(&self, id: &str, name: &str, now: i64) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO units (id, name, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        )
        .bind(id)
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Set the IANA time zone `unit`'s shifts are counted in.
    pub async fn set_unit_zone(&self, unit: &str, zone: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE units SET time_zone = $1 WHERE id = $2")
            .bind(zone)
            .bind(unit)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Add or replace the rotation of a role on a unit.
    pub async fn put_rotation(&self, rotation: &Rotation) -> Result<(), DbError> {
        let users = |list: &[UserId]| {
            serde_json::to_string(&list).map_err(|e| DbError::Unreadable {
                what: "rotation".into(),
                problem: e.to_string(),
            })
        };
        sqlx::query(
            "INSERT INTO rotations (unit_id, role_id, anchor, shift, primary_users, secondary_users)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (unit_id, role_id) DO UPDATE SET anchor = excluded.anchor,
               shift = excluded.shift, primary_users = excluded.primary_users,
               secondary_users = excluded.secondary_users",
        )
        .bind(rotation.unit.as_str())
        .bind(rotation.role.as_str())
        .bind(rotation.anchor.to_string())
        .bind(rotation.shift.to_string())
        .bind(users(&rotation.primary)?)
        .bind(users(&rotation.secondary)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `unit`'s coverage plan: its time zone and its rotations.
    pub async fn coverage(&self, unit: &str) -> Result<CoveragePlan, DbError> {
        let zone: String = sqlx::query("SELECT time_zone FROM units WHERE id = $1")
            .bind(unit)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?
            .unwrap_or_else(|| "UTC".to_owned());
        let rows = sqlx::query(
            "SELECT role_id, anchor, shift, primary_users, secondary_users FROM rotations
             WHERE unit_id = $1 ORDER BY role_id",
        )
        .bind(unit)
        .fetch_all(&self.pool)
        .await?;
        let mut rotations = BTreeMap::new();
        for row in &rows {
            let role = Role::new(row.try_get::<String, _>(0)?);
            let unreadable = |problem: String| DbError::Unreadable {
                what: format!("rotation of {role} on {unit}"),
                problem,
            };
            let users = |column: usize| -> Result<Vec<UserId>, DbError> {
                serde_json::from_str(&row.try_get::<String, _>(column)?)
                    .map_err(|e| unreadable(e.to_string()))
            };
            let rotation = Rotation {
                unit: UnitId::new(unit.to_owned()),
                role: role.clone(),
                anchor: parse_text(&row.try_get::<String, _>(1)?).map_err(unreadable)?,
                shift: parse_text(&row.try_get::<String, _>(2)?).map_err(unreadable)?,
                primary: users(3)?,
                secondary: users(4)?,
            };
            rotations.insert(role, rotation);
        }
        let overrides = self.overrides(unit, i64::MIN, MAX_OVERRIDES).await?;
        Ok(CoveragePlan {
            zone,
            rotations,
            overrides: overrides.into_iter().map(|(_, o)| o).collect(),
        })
    }

    /// `unit`'s overrides that end after `ended_after` (workflow ms), earliest first, at most
    /// `limit`, each with its id.
    pub async fn overrides(
        &self,
        unit: &str,
        ended_after: i64,
        limit: i64,
    ) -> Result<Vec<(String, Override)>, DbError> {
        let rows = sqlx::query(
            "SELECT id, role_id, user_id, starts_at, ends_at, secondary FROM coverage_overrides
             WHERE unit_id = $1 AND ends_at > $2 ORDER BY starts_at, id LIMIT $3",
        )
        .bind(unit)
        .bind(ended_after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    Override {
                        unit: UnitId::new(unit.to_owned()),
                        role: Role::new(r.try_get::<String, _>(1)?),
                        user: UserId::new(r.try_get::<String, _>(2)?),
                        from: r.try_get(3)?,
                        until: r.try_get(4)?,
                        secondary: r.try_get::<i64, _>(5)? != 0,
                    },
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }

    /// Record an override by `by`; `false` when the unit has [`MAX_OVERRIDES`] already.
    pub async fn add_override(
        &self,
        id: &str,
        cover: &Override,
        by: &str,
        now: i64,
    ) -> Result<bool, DbError> {
        let held: i64 = sqlx::query("SELECT COUNT(*) FROM coverage_overrides WHERE unit_id = $1")
            .bind(cover.unit.as_str())
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        if held >= MAX_OVERRIDES {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO coverage_overrides
               (id, unit_id, role_id, user_id, starts_at, ends_at, secondary, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(cover.unit.as_str())
        .bind(cover.role.as_str())
        .bind(cover.user.as_str())
        .bind(cover.from)
        .bind(cover.until)
        .bind(i64::from(cover.secondary))
        .bind(by)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(true)
    }

    /// Take override `id` off `unit`; `false` when it has no such override.
    pub async fn delete_override(&self, unit: &str, id: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM coverage_overrides WHERE unit_id = $1 AND id = $2")
            .bind(unit)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Who covers what on `unit` as the server hands out work: its coverage plan, and the
    /// schedule it gives, in which disabled people cover nothing.
    pub async fn unit_schedule(&self, unit: &str) -> Result<(CoveragePlan, Schedule), DbError> {
        let plan = self.coverage(unit).await?;
        let schedule = plan.schedule().map_err(|e| DbError::Unreadable {
            what: format!("coverage of {unit}"),
            problem: e.to_string(),
        })?;
        let schedule = schedule.without(self.disabled_users().await?);
        Ok((plan, schedule))
    }

    pub async fn units(&self) -> Result<Vec<(UnitId, String)>, DbError> {
        let rows = sqlx::query("SELECT id, name FROM units ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((UnitId::new(r.try_get::<String, _>(0)?), r.try_get(1)?)))
            .collect()
    }

    pub async fn upsert_role(&self, id: &str, name: &str) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO roles (id, name) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        )
        .bind(id)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record a new user; `false` when the id is taken.
    pub async fn create_user(
        &self,
        id: &str,
        display_name: &str,
        now: i64,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO users (id, display_name, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(display_name)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Take `role`'s rotation off `unit`; `false` when it had none.
    pub async fn delete_rotation(&self, unit: &str, role: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM rotations WHERE unit_id = $1 AND role_id = $2")
            .bind(unit)
            .bind(role)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn upsert_user(&self, id: &str, display_name: &str, now: i64) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO users (id, display_name, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name",
        )
        .bind(id)
        .bind(display_name)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn user(&self, id: &str) -> Result<Option<UserRecord>, DbError> {
        let row = sqlx::query("SELECT id, display_name, disabled_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(UserRecord {
                id: UserId::new(r.try_get::<String, _>(0)?),
                display_name: r.try_get(1)?,
                disabled_at: r.try_get(2)?,
            })
        })
        .transpose()
    }

    /// Disable a user (`Some(now)`) or enable them again (`None`).
    pub async fn set_user_disabled(&self, id: &str, at: Option<i64>) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn add_membership(&self, user: &str, unit: &str, role: &str) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO memberships (user_id, unit_id, role_id) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, unit_id, role_id) DO NOTHING",
        )
        .bind(user)
        .bind(unit)
        .bind(role)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Take `role` on `unit` from `user`. Returns whether they held it.
    pub async fn remove_membership(
        &self,
        user: &str,
        unit: &str,
        role: &str,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "DELETE FROM memberships WHERE user_id = $1 AND unit_id = $2 AND role_id = $3",
        )
        .bind(user)
        .bind(unit)
        .bind(role)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether a unit `id` is in the records.
    pub async fn unit_exists(&self, id: &str) -> Result<bool, DbError> {
        let row = sqlx::query("SELECT 1 FROM units WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Whether a role `id` is in the records.
    pub async fn role_exists(&self, id: &str) -> Result<bool, DbError> {
        let row = sqlx::query("SELECT 1 FROM roles WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Record `user` as an administrator of the server (every unit).
    pub async fn add_admin(&self, user: &str, now: i64) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO admins (user_id, granted_at) VALUES ($1, $2)
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record `user` as an administrator of `unit`.
    pub async fn add_unit_admin(&self, user: &str, unit: &str, now: i64) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO unit_admins (user_id, unit_id, granted_at) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, unit_id) DO NOTHING",
        )
        .bind(user)
        .bind(unit)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What the records make `user` an administrator of: the server, some units, or nothing.
    pub async fn admin_scope(&self, user: &str) -> Result<AdminScope, DbError> {
        let server = sqlx::query("SELECT 1 FROM admins WHERE user_id = $1")
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        if server.is_some() {
            return Ok(AdminScope::Server);
        }
        let rows =
            sqlx::query("SELECT unit_id FROM unit_admins WHERE user_id = $1 ORDER BY unit_id")
                .bind(user)
                .fetch_all(&self.pool)
                .await?;
        let units = rows
            .iter()
            .map(|row| row.try_get::<String, _>(0).map(UnitId::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(if units.is_empty() {
            AdminScope::None
        } else {
            AdminScope::Units(units)
        })
    }

    /// The units of those of `ids` that are stored documents: (id, unit).
    pub async fn document_units(&self, ids: &[String]) -> Result<Vec<(String, UnitId)>, DbError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(256) {
            let sql = format!(
                "SELECT id, unit_id FROM documents WHERE id IN ({})",
                numbered(chunk.len())
            );
            // Safe: the statement is made of fixed text and numbered placeholders only.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                found.push((row.try_get(0)?, UnitId::new(row.try_get::<String, _>(1)?)));
            }
        }
        Ok(found)
    }

    /// The (unit, role) pairs `user` holds.
    pub async fn memberships(&self, user: &str) -> Result<Vec<(UnitId, Role)>, DbError> {
        let rows = sqlx::query(
            "SELECT unit_id, role_id FROM memberships WHERE user_id = $1 ORDER BY unit_id, role_id",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    UnitId::new(r.try_get::<String, _>(0)?),
                    Role::new(r.try_get::<String, _>(1)?),
                ))
            })
            .collect()
    }

    /// Everyone on `unit`: (user, display name, role), ordered.
    pub async fn unit_roster(&self, unit: &str) -> Result<Vec<(UserId, String, Role)>, DbError> {
        let rows = sqlx::query(
            "SELECT u.id, u.display_name, m.role_id FROM memberships m
             JOIN users u ON u.id = m.user_id
             WHERE m.unit_id = $1 AND u.disabled_at IS NULL
             ORDER BY u.id, m.role_id",
        )
        .bind(unit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    UserId::new(r.try_get::<String, _>(0)?),
                    r.try_get(1)?,
                    Role::new(r.try_get::<String, _>(2)?),
                ))
            })
            .collect()
    }

    pub async fn device(&self, id: &str) -> Result<Option<DeviceRecord>, DbError> {
        let row = sqlx::query("SELECT id, last_user_id, revoked_at FROM devices WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(DeviceRecord {
                id: r.try_get(0)?,
                last_user: UserId::new(r.try_get::<String, _>(1)?),
                revoked_at: r.try_get(2)?,
            })
        })
        .transpose()
    }

    /// Record that `device` was used by `user` now, enrolling it on first use.
    pub async fn touch_device(&self, id: &str, user: &str, now: i64) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO devices (id, last_user_id, first_seen_at, last_seen_at)
             VALUES ($1, $2, $3, $3)
             ON CONFLICT (id) DO UPDATE SET last_user_id = excluded.last_user_id,
                                            last_seen_at = excluded.last_seen_at",
        )
        .bind(id)
        .bind(user)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Revoke a device. Returns whether it was known.
    pub async fn revoke_device(&self, id: &str, now: i64) -> Result<bool, DbError> {
        // A revoked device is told nothing more: its push registration goes with it.
        let done = sqlx::query(
            "UPDATE devices SET revoked_at = $1, push_platform = NULL, push_token = NULL
             WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    // --- templates ---

    /// Store a template version unless it is already there.
    pub async fn insert_template(
        &self,
        id: &str,
        version: i64,
        body: &str,
        now: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO templates (id, version, body, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id, version) DO NOTHING",
        )
        .bind(id)
        .bind(version)
        .bind(body)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every stored template version, as JSON text.
    pub async fn templates(&self) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT body FROM templates ORDER BY id, version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    // --- documents ---

    pub async fn document(&self, id: &str) -> Result<Option<DocRecord>, DbError> {
        let row = sqlx::query(
            "SELECT id, kind, unit_id, template_id, template_version, created_at
             FROM documents WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(doc_record).transpose()
    }

    /// A document's record and stored bytes (`None`: there is no such document), read in one
    /// statement: as of one moment, so a compaction in between cannot leave out changes it
    /// folded into a newer snapshot, and in one round trip, which is most of what loading a task
    /// costs on Postgres. The snapshot's row has an empty hash (a change's never is); a
    /// document with neither has one row with no hash.
    pub async fn load_document(&self, id: &str) -> Result<Option<(DocRecord, StoredDoc)>, DbError> {
        let rows = sqlx::query(
            "SELECT d.id, d.kind, d.unit_id, d.template_id, d.template_version, d.created_at,
                 b.hash, b.bytes
             FROM documents d
             LEFT JOIN (
                 SELECT doc_id, '' AS hash, bytes FROM doc_snapshots WHERE doc_id = $1
                 UNION ALL
                 SELECT doc_id, hash, bytes FROM doc_changes WHERE doc_id = $1
             ) b ON b.doc_id = d.id
             WHERE d.id = $1",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let record = doc_record(first)?;
        let mut stored = StoredDoc {
            snapshot: None,
            changes: Vec::with_capacity(rows.len()),
        };
        for row in &rows {
            match (
                row.try_get::<Option<String>, _>(6)?,
                row.try_get::<Option<Vec<u8>>, _>(7)?,
            ) {
                (Some(hash), Some(bytes)) if hash.is_empty() => stored.snapshot = Some(bytes),
                (Some(hash), Some(bytes)) => stored.changes.push((hash, bytes)),
                _ => {}
            }
        }
        Ok(Some((record, stored)))
    }

    /// Store the writes of one or more documents in one transaction, each with everything
    /// derived from it (documents seen for the first time, event rows, owed index entries,
    /// timers, summaries, trigger keys). A write whose trigger key is already taken, by an
    /// earlier transaction or an earlier write of this group, is left out whole. Returns what
    /// became of each write, once the transaction is committed.
    pub async fn store_changes(
        &self,
        writes: &[&Write],
        now: i64,
    ) -> Result<Vec<Written>, DbError> {
        let mut tx = self.pool.begin().await?;
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            let outcome = match &write.derived.trigger {
                Some(trigger) => {
                    let taken = sqlx::query(
                        "INSERT INTO trigger_requests (integration, idem_key, request, doc_id, created_at)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (integration, idem_key) DO NOTHING",
                    )
                    .bind(trigger.integration.as_str())
                    .bind(trigger.key.as_str())
                    .bind(trigger.request.as_str())
                    .bind(trigger.doc.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if taken.rows_affected() == 0 {
                        Written::KeyTaken
                    } else {
                        Written::Stored
                    }
                }
                None => Written::Stored,
            };
            outcomes.push(outcome);
        }
        let stored: Vec<&Write> = writes
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| **outcome == Written::Stored)
            .map(|(write, _)| *write)
            .collect();
        let new_docs: Vec<&DocRecord> = stored.iter().flat_map(|w| &w.new_docs).collect();
        let changes: Vec<&StoredChange> = stored.iter().flat_map(|w| &w.changes).collect();
        let derived: Vec<&Derived> = stored.iter().map(|w| &w.derived).collect();
        for doc in &new_docs {
            sqlx::query(
                "INSERT INTO documents (id, kind, unit_id, template_id, template_version, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&doc.id)
            .bind(kind_str(doc.kind))
            .bind(doc.unit.as_str())
            .bind(doc.template.as_ref().map(|t| t.0.as_str()))
            .bind(doc.template.as_ref().map(|t| t.1))
            .bind(doc.created_at)
            .execute(&mut *tx)
            .await?;
        }
        insert_changes(&mut tx, &changes, now).await?;
        let events: Vec<&EventRow> = derived.iter().flat_map(|d| &d.events).collect();
        crate::audit::chain::append_events(&mut tx, &events, now).await?;
        let owed: Vec<&IndexRow> =
            last_per_doc(derived.iter().filter_map(|d| d.index.as_ref()), |r| &r.doc);
        queue_index_entries(&mut tx, &owed, now).await?;
        let notifications: Vec<&crate::notify::store::Outbound> =
            derived.iter().flat_map(|d| &d.notifications).collect();
        crate::notify::store::insert(&mut tx, &notifications, now).await?;
        let timers: Vec<&TimerRow> =
            last_per_doc(derived.iter().filter_map(|d| d.timer.as_ref()), |t| &t.doc);
        write_timers(&mut tx, &timers).await?;
        let summaries: Vec<&SummaryRow> =
            derived.iter().filter_map(|d| d.summary.as_ref()).collect();
        upsert_summaries(&mut tx, &summaries, now).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    /// The task a trigger's idempotency key opened, and the fingerprint of its request.
    pub async fn trigger(
        &self,
        integration: &str,
        key: &str,
    ) -> Result<Option<TriggerRow>, DbError> {
        let row = sqlx::query(
            "SELECT request, doc_id FROM trigger_requests WHERE integration = $1 AND idem_key = $2",
        )
        .bind(integration)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(TriggerRow {
                integration: integration.to_owned(),
                key: key.to_owned(),
                request: r.try_get(0)?,
                doc: r.try_get(1)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| DbError::from(e))
    }

    /// Task summaries that match `filter`, oldest first (by the time the server first stored
    /// the task, then id), at most `limit`, starting after `filter.after`.
    pub async fn task_summaries(
        &self,
        filter: &TaskFilter,
        limit: i64,
    ) -> Result<Vec<StoredSummary>, DbError> {
        let mut conditions = Conditions::default();
        if let Some(units) = &filter.units {
            if units.is_empty() {
                return Ok(Vec::new());
            }
            conditions.any_of("unit_id", units.iter().map(String::as_str));
        }
        for (column, value) in [
            ("status =", &filter.status),
            ("owner_id =", &filter.owner),
            ("template_id =", &filter.template),
            ("program =", &filter.program),
        ] {
            if let Some(value) = value {
                conditions.add(column, Bound::Text(value));
            }
        }
        match filter.overdue {
            Some(true) => {
                let p = conditions.bind(Bound::Number(filter.now));
                conditions.raw(format!("(next_due_at IS NOT NULL AND next_due_at < {p})"));
            }
            Some(false) => {
                let p = conditions.bind(Bound::Number(filter.now));
                conditions.raw(format!("(next_due_at IS NULL OR next_due_at >= {p})"));
            }
            None => {}
        }
        match filter.escalated {
            Some(true) => conditions.raw("escalation_level > 0".to_owned()),
            Some(false) => conditions.raw("escalation_level = 0".to_owned()),
            None => {}
        }
        if let Some((at, id)) = &filter.after {
            let after = conditions.bind(Bound::Number(*at));
            let same = conditions.bind(Bound::Number(*at));
            let id = conditions.bind(Bound::Text(id));
            conditions.raw(format!(
                "(created_at > {after} OR (created_at = {same} AND doc_id > {id}))"
            ));
        }
        if conditions.holds_nul() {
            return Ok(Vec::new());
        }
        let limit = conditions.bind(Bound::Number(limit));
        let sql = format!(
            "SELECT doc_id, unit_id, template_id, template_version, status, owner_id, owner_role,
                    acuity, escalation_level, next_due_at, label, created_at, updated_at, {}
             FROM task_summaries WHERE {} ORDER BY created_at, doc_id LIMIT {limit}",
            MeasureRow::COLUMNS,
            conditions.clause()
        );
        let query = conditions.query(sql);
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(StoredSummary {
                    row: SummaryRow {
                        doc: r.try_get(0)?,
                        unit: r.try_get(1)?,
                        template_id: r.try_get(2)?,
                        template_version: r.try_get(3)?,
                        status: r.try_get(4)?,
                        owner: r.try_get(5)?,
                        owner_role: r.try_get(6)?,
                        acuity: r.try_get(7)?,
                        escalation_level: r.try_get(8)?,
                        next_due_at: r.try_get(9)?,
                        label: r.try_get(10)?,
                        measures: MeasureRow::read(r, 13)?,
                    },
                    created_at: r.try_get(11)?,
                    updated_at: r.try_get(12)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }

    /// Task documents that have no summary yet (stored before summaries were kept), by id after
    /// `after`, at most `limit`.
    pub async fn tasks_without_summary(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<String>, DbError> {
        self.task_ids(
            " AND NOT EXISTS (SELECT 1 FROM task_summaries s WHERE s.doc_id = d.id)",
            after,
            limit,
        )
        .await
    }

    /// When the server last stored a change of task `doc`, by its summary.
    pub async fn task_updated_at(&self, doc: &str) -> Result<Option<i64>, DbError> {
        let row = sqlx::query("SELECT updated_at FROM task_summaries WHERE doc_id = $1")
            .bind(doc)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Ids of task documents after `after`, in id order, at most `limit`.
    pub async fn task_ids_after(&self, after: &str, limit: i64) -> Result<Vec<String>, DbError> {
        self.task_ids("", after, limit).await
    }

    /// Ids of task documents `d` after `after` that also meet `and` (fixed text), in id order,
    /// at most `limit`.
    async fn task_ids(
        &self,
        and: &'static str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<String>, DbError> {
        let sql = format!(
            "SELECT d.id FROM documents d WHERE d.kind = $1 AND d.id > $2{and}
             ORDER BY d.id LIMIT $3"
        );
        // Safe: the statement is made of fixed text and numbered placeholders only.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(kind_str(DocKind::Task))
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }

    /// Store the summary of a task that has none, unless a commit wrote one meanwhile (which,
    /// following the task's latest changes, wins).
    pub async fn insert_missing_summary(&self, row: &SummaryRow, now: i64) -> Result<(), DbError> {
        let sql = format!(
            "INSERT INTO task_summaries ({SUMMARY_COLUMNS}) VALUES {}
             ON CONFLICT (doc_id) DO NOTHING",
            summary_values(1)
        );
        // Safe: the statement is made of fixed text and numbered placeholders only.
        let query = bind_summary(sqlx::query(sqlx::AssertSqlSafe(sql)), row, now);
        query.execute(&self.pool).await?;
        Ok(())
    }

    /// A task's timer, if it has one.
    pub async fn timer(&self, doc: &str) -> Result<Option<DueTimer>, DbError> {
        let row = sqlx::query("SELECT due_at, event_id, action FROM task_timers WHERE doc_id = $1")
            .bind(doc)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(DueTimer {
                due_at: r.try_get(0)?,
                event_id: r.try_get(1)?,
                action: r.try_get(2)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| DbError::from(e))
    }

    /// Claim up to `limit` timers due at workflow time `now` for node `node` until `lease_until`
    /// (real time): the oldest first, none another node holds a live claim on. On Postgres the
    /// rows are locked `FOR UPDATE SKIP LOCKED`, so nodes claiming at once take different
    /// timers; SQLite has one writer.
    pub async fn claim_due_timers(
        &self,
        node: &str,
        now: i64,
        real_now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedTimer>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(self.claim_due_timers_sql()))
            .bind(node)
            .bind(lease_until)
            .bind(now)
            .bind(real_now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                Ok(ClaimedTimer {
                    doc: r.try_get(0)?,
                    due_at: r.try_get(1)?,
                    event_id: r.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        claimed.sort_by(|a, b| (a.due_at, &a.doc).cmp(&(b.due_at, &b.doc)));
        Ok(claimed)
    }

    /// The statement [`Db::claim_due_timers`] runs on this backend (`$1` the node, `$2` the
    /// lease's end, `$3` the workflow time, `$4` the real time, `$5` the limit), for `EXPLAIN`.
    ///
    /// On Postgres the claimed ids are gathered into an array first (`= ANY(ARRAY(…))`), so
    /// the update finds them through the primary key under any plan. With `IN (…)`, the
    /// generic plan Postgres switches a prepared statement to after five runs (the limit and
    /// the due time unknown to it) joined the subquery against a sequential scan of the whole
    /// table: a million rows read per claim.
    pub fn claim_due_timers_sql(&self) -> String {
        let due = "SELECT doc_id FROM task_timers
                 WHERE due_at <= $3 AND (claimed_until IS NULL OR claimed_until < $4)
                 ORDER BY due_at, doc_id LIMIT $5";
        let claimed = match self.backend {
            Backend::Postgres => format!("doc_id = ANY(ARRAY({due} FOR UPDATE SKIP LOCKED))"),
            Backend::Sqlite => format!("doc_id IN ({due})"),
        };
        format!(
            "UPDATE task_timers SET claimed_by = $1, claimed_until = $2
             WHERE {claimed}
             RETURNING doc_id, due_at, event_id"
        )
    }

    /// Keep `node`'s claim on `doc`'s timer only until `until` (real time): it could not be
    /// fired, and is tried again then, by whichever node claims it.
    pub async fn defer_timer(&self, doc: &str, node: &str, until: i64) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE task_timers SET claimed_until = $3 WHERE doc_id = $1 AND claimed_by = $2",
        )
        .bind(doc)
        .bind(node)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When the earliest timer falls due (workflow time), if any is pending.
    pub async fn next_timer_due(&self) -> Result<Option<i64>, DbError> {
        let row = sqlx::query("SELECT MIN(due_at) FROM task_timers")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    /// Open tasks of `unit` owned in `role` (`None`: in any role), or owned by `owner`: those a
    /// shift change or a disabled account may move.
    pub async fn owned_open_tasks(
        &self,
        unit: Option<&str>,
        role: Option<&str>,
        owner: Option<&str>,
    ) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query(
            "SELECT doc_id FROM task_summaries
             WHERE owner_id IS NOT NULL AND status IN ('open', 'waiting')
               AND ($1 IS NULL OR unit_id = $1) AND ($2 IS NULL OR owner_role = $2)
               AND ($3 IS NULL OR owner_id = $3)
             ORDER BY created_at, doc_id",
        )
        .bind(unit)
        .bind(role)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }

    /// Users whose accounts are disabled.
    pub async fn disabled_users(&self) -> Result<Vec<UserId>, DbError> {
        let rows = sqlx::query("SELECT id FROM users WHERE disabled_at IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map(UserId::new))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }

    /// How many tasks have a timer.
    pub async fn pending_timers(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) FROM task_timers")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Index entries still owed, oldest first, at most `limit`.
    pub async fn owed_index_entries(&self, limit: i64) -> Result<Vec<OwedIndexEntry>, DbError> {
        let rows = sqlx::query(
            "SELECT doc_id, unit_id, entry, queued_at FROM index_outbox
             ORDER BY queued_at, doc_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OwedIndexEntry {
                    doc: r.try_get(0)?,
                    unit: r.try_get(1)?,
                    entry: r.try_get(2)?,
                    queued_at: r.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }

    /// Forget owed index entries once applied, each unless a newer one replaced it meanwhile.
    pub async fn index_entries_applied(&self, owed: &[&OwedIndexEntry]) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        for entry in owed {
            sqlx::query("DELETE FROM index_outbox WHERE doc_id = $1 AND queued_at = $2")
                .bind(entry.doc.as_str())
                .bind(entry.queued_at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The events of `doc` as received, in the order the server received them.
    pub async fn task_events(&self, doc: &str) -> Result<Vec<StoredEvent>, DbError> {
        let rows = sqlx::query(
            "SELECT event_id, kind, user_id, role_id, device_id, device_time, hlc, received_at
             FROM task_events WHERE doc_id = $1 ORDER BY received_at, hlc, event_id",
        )
        .bind(doc)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredEvent {
                    event: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    user: r.try_get(2)?,
                    role: r.try_get(3)?,
                    device: r.try_get(4)?,
                    device_time: r.try_get(5)?,
                    hlc: r.try_get(6)?,
                    received_at: r.try_get(7)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }

    /// Replace the changes `hashes` of `doc` with a snapshot that includes them.
    pub async fn compact(
        &self,
        doc: &str,
        snapshot: &[u8],
        heads: &str,
        hashes: &[String],
        now: i64,
    ) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO doc_snapshots (doc_id, bytes, heads, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (doc_id) DO UPDATE SET bytes = excluded.bytes, heads = excluded.heads,
                                                updated_at = excluded.updated_at",
        )
        .bind(doc)
        .bind(snapshot)
        .bind(heads)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for hash in hashes {
            sqlx::query("DELETE FROM doc_changes WHERE doc_id = $1 AND hash = $2")
                .bind(doc)
                .bind(hash.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many changes of `doc` are stored outside its snapshot.
    pub async fn change_count(&self, doc: &str) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) FROM doc_changes WHERE doc_id = $1")
            .bind(doc)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    // --- unit indexes ---

    pub async fn unit_index(&self, unit: &str) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT doc_id FROM unit_indexes WHERE unit_id = $1")
            .bind(unit)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Register `doc` as the index of `unit` (with its first changes), unless the unit has one.
    /// Returns the unit's index document id, which is `doc` unless another node got there first.
    pub async fn create_unit_index(
        &self,
        unit: &str,
        doc: &str,
        changes: &[StoredChange],
        now: i64,
    ) -> Result<String, DbError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO unit_indexes (unit_id, doc_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (unit_id) DO NOTHING",
        )
        .bind(unit)
        .bind(doc)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await?;
            return self
                .unit_index(unit)
                .await?
                .ok_or_else(|| DbError::Sqlx(sqlx::Error::RowNotFound));
        }
        sqlx::query(
            "INSERT INTO documents (id, kind, unit_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(doc)
        .bind(kind_str(DocKind::UnitIndex))
        .bind(unit)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let changes: Vec<&StoredChange> = changes.iter().collect();
        insert_changes(&mut tx, &changes, now).await?;
        tx.commit().await?;
        Ok(doc.to_owned())
    }

    // --- security audit ---

    /// Append `record` to the security audit's chain.
    pub async fn audit(&self, record: AuditRecord<'_>, now: i64) -> Result<(), DbError> {
        let record = StoredAudit {
            id: uuid::Uuid::new_v4().to_string(),
            at: now,
            kind: record.kind.to_owned(),
            user: record.user.map(str::to_owned),
            device: record.device.map(str::to_owned),
            doc: record.doc.map(str::to_owned),
            detail: record.detail,
        };
        let mut tx = self.pool.begin().await?;
        crate::audit::chain::append_audit(&mut tx, &record).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audit records that match `filter`, newest first (by `at`, then `id`), at most `limit`,
    /// starting after `filter.after`.
    pub async fn audit_records(
        &self,
        filter: &AuditFilter,
        limit: i64,
    ) -> Result<Vec<StoredAudit>, DbError> {
        let mut conditions = Conditions::default();
        for (column, value) in [
            ("kind =", &filter.kind),
            ("user_id =", &filter.user),
            ("device_id =", &filter.device),
        ] {
            if let Some(value) = value {
                conditions.add(column, Bound::Text(value));
            }
        }
        if let Some(since) = filter.since {
            conditions.add("at >=", Bound::Number(since));
        }
        if let Some(until) = filter.until {
            conditions.add("at <", Bound::Number(until));
        }
        if let Some((at, id)) = &filter.after {
            let before = conditions.bind(Bound::Number(*at));
            let same = conditions.bind(Bound::Number(*at));
            let id = conditions.bind(Bound::Text(id));
            conditions.raw(format!("(at < {before} OR (at = {same} AND id < {id}))"));
        }
        if conditions.holds_nul() {
            return Ok(Vec::new());
        }
        let limit = conditions.bind(Bound::Number(limit));
        let sql = format!(
            "SELECT id, at, kind, user_id, device_id, doc_id, detail FROM security_audit
             WHERE {} ORDER BY at DESC, id DESC LIMIT {limit}",
            conditions.clause()
        );
        let query = conditions.query(sql);
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(StoredAudit {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    user: r.try_get(3)?,
                    device: r.try_get(4)?,
                    doc: r.try_get(5)?,
                    detail: r.try_get(6)?,
                })
            })
            .collect()
    }
}

/// Store `changes` in `tx`, in multi-row statements; a change already stored is left as it is.
async fn insert_changes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    changes: &[&StoredChange],
    now: i64,
) -> Result<(), DbError> {
    let statement = |rows| {
        format!(
            "INSERT INTO doc_changes (doc_id, hash, bytes, received_at) VALUES {}
             ON CONFLICT (doc_id, hash) DO NOTHING",
            placeholders(rows, 4)
        )
    };
    in_multi_row_statements(tx, changes, statement, |query, change| {
        query
            .bind(change.doc.as_str())
            .bind(change.hash.as_str())
            .bind(change.bytes.as_slice())
            .bind(now)
    })
    .await
}

/// A `documents` row (`id, kind, unit_id, template_id, template_version, created_at`, first).
fn doc_record(r: &sqlx::any::AnyRow) -> Result<DocRecord, DbError> {
    let kind: String = r.try_get(1)?;
    let Some(kind) = parse_kind(&kind) else {
        return Err(DbError::Sqlx(sqlx::Error::Decode(
            format!("unknown document kind `{kind}`").into(),
        )));
    };
    let template = match (
        r.try_get::<Option<String>, _>(3)?,
        r.try_get::<Option<i64>, _>(4)?,
    ) {
        (Some(id), Some(version)) => Some((id, version)),
        _ => None,
    };
    Ok(DocRecord {
        id: r.try_get(0)?,
        kind,
        unit: UnitId::new(r.try_get::<String, _>(2)?),
        template,
        created_at: r.try_get(5)?,
    })
}

/// A stamp for an owed index entry: microseconds from `now_ms`, and strictly after every stamp
/// this process gave before. The writer deletes an entry only if its stamp is unchanged, so two
/// entries for one task written in the same millisecond must not share one, or the newer would
/// be deleted when the older is applied.
fn queue_stamp(now_ms: i64) -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let wanted = now_ms.saturating_mul(1_000);
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(wanted.max(last.saturating_add(1)))
        })
        .unwrap_or(wanted);
    wanted.max(previous.saturating_add(1))
}

/// The columns of `task_summaries`, in the order [`summary_values`] lists them.
const SUMMARY_COLUMNS: &str = "doc_id, unit_id, template_id, template_version, status, owner_id,
    owner_role, acuity, escalation_level, next_due_at, label, program, opened_at, first_ack_at,
    first_outreach_at, closed_at, escalations_time, escalations_acuity, escalations_manual,
    interventions, first_step_done_at, last_step_done_at, created_at, updated_at";

/// Values bound per summary row by [`bind_summary`].
const SUMMARY_BINDS: usize = 25;

/// The `VALUES` of `rows` summary rows: a task's `created_at` is when the server first stored it
/// (its `documents` row, written earlier in the same transaction for a new task).
fn summary_values(rows: usize) -> String {
    (0..rows)
        .map(|row| {
            let p = |n: usize| format!("${}", row * SUMMARY_BINDS + n);
            let fields: Vec<String> = (1..=22).map(p).collect();
            format!(
                "({}, COALESCE((SELECT created_at FROM documents WHERE id = {}), {}), {})",
                fields.join(", "),
                p(23),
                p(24),
                p(25)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bind one summary row for [`summary_values`]: its fields, then its document's id,
/// `created_at` should the document have no record, and `updated_at`.
fn bind_summary<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    row: &'q SummaryRow,
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let query = query
        .bind(row.doc.as_str())
        .bind(row.unit.as_str())
        .bind(row.template_id.as_str())
        .bind(row.template_version)
        .bind(row.status.as_str())
        .bind(row.owner.as_deref())
        .bind(row.owner_role.as_str())
        .bind(row.acuity.as_str())
        .bind(row.escalation_level)
        .bind(row.next_due_at)
        .bind(row.label.as_str());
    row.measures
        .bind(query)
        .bind(row.doc.as_str())
        .bind(now)
        .bind(now)
}

/// Write tasks' summaries in `tx`: a new task's row is created, a known task's replaced (but for
/// when it was first stored). A task summarized twice in one group keeps its last summary.
async fn upsert_summaries(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    summaries: &[&SummaryRow],
    now: i64,
) -> Result<(), DbError> {
    let rows = last_per_doc(summaries.iter().copied(), |r| &r.doc);
    let statement = |rows| {
        format!(
            "INSERT INTO task_summaries ({SUMMARY_COLUMNS}) VALUES {}
             ON CONFLICT (doc_id) DO UPDATE SET unit_id = excluded.unit_id,
                 template_id = excluded.template_id, template_version = excluded.template_version,
                 status = excluded.status, owner_id = excluded.owner_id,
                 owner_role = excluded.owner_role, acuity = excluded.acuity,
                 escalation_level = excluded.escalation_level, next_due_at = excluded.next_due_at,
                 label = excluded.label, program = excluded.program,
                 opened_at = excluded.opened_at, first_ack_at = excluded.first_ack_at,
                 first_outreach_at = excluded.first_outreach_at, closed_at = excluded.closed_at,
                 escalations_time = excluded.escalations_time,
                 escalations_acuity = excluded.escalations_acuity,
                 escalations_manual = excluded.escalations_manual,
                 interventions = excluded.interventions,
                 first_step_done_at = excluded.first_step_done_at,
                 last_step_done_at = excluded.last_step_done_at,
                 updated_at = excluded.updated_at",
            summary_values(rows)
        )
    };
    in_multi_row_statements(tx, &rows, statement, |query, row| {
        bind_summary(query, row, now)
    })
    .await
}

/// Text read as a `T`, or why it cannot be.
fn parse_text<T: FromStr>(text: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| format!("`{text}`: {e}"))
}

/// Rows per multi-row `INSERT`, largest first: a batch goes in a few statements of a few distinct
/// shapes, so each connection's statement cache keeps them all prepared.
const CHUNK_ROWS: [usize; 4] = [64, 16, 4, 1];

/// Of rows keyed by document, the last for each document, in the order they came: a statement
/// that upserts several rows may not touch one row twice.
fn last_per_doc<'r, T>(
    rows: impl Iterator<Item = &'r T>,
    doc: impl Fn(&T) -> &String,
) -> Vec<&'r T> {
    let rows: Vec<&T> = rows.collect();
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        last.insert(doc(row).as_str(), i);
    }
    rows.iter()
        .enumerate()
        .filter(|(i, row)| last.get(doc(row).as_str()) == Some(i))
        .map(|(_, row)| *row)
        .collect()
}

/// Owe each of `owed` to its unit's index (one entry per document: a newer one replaces it).
async fn queue_index_entries(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    owed: &[&IndexRow],
    now: i64,
) -> Result<(), DbError> {
    let statement = |rows| {
        format!(
            "INSERT INTO index_outbox (doc_id, unit_id, entry, queued_at) VALUES {}
             ON CONFLICT (doc_id) DO UPDATE SET unit_id = excluded.unit_id,
                 entry = excluded.entry, queued_at = excluded.queued_at",
            placeholders(rows, 4)
        )
    };
    in_multi_row_statements(tx, owed, statement, |query, row| {
        query
            .bind(row.doc.as_str())
            .bind(row.unit.as_str())
            .bind(row.entry.as_deref())
            .bind(queue_stamp(now))
    })
    .await
}

/// Set each task's timer to its next due action (ending any claim on it) or clear it.
async fn write_timers(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    timers: &[&TimerRow],
) -> Result<(), DbError> {
    let set: Vec<(&str, &DueTimer)> = timers
        .iter()
        .filter_map(|t| t.due.as_ref().map(|due| (t.doc.as_str(), due)))
        .collect();
    let statement = |rows| {
        format!(
            "INSERT INTO task_timers (doc_id, due_at, event_id, action) VALUES {}
             ON CONFLICT (doc_id) DO UPDATE SET due_at = excluded.due_at,
                 event_id = excluded.event_id, action = excluded.action,
                 claimed_by = NULL, claimed_until = NULL",
            placeholders(rows, 4)
        )
    };
    in_multi_row_statements(tx, &set, statement, |query, (doc, due)| {
        query
            .bind(*doc)
            .bind(due.due_at)
            .bind(due.event_id.as_str())
            .bind(due.action.as_str())
    })
    .await?;
    let cleared: Vec<&str> = timers
        .iter()
        .filter(|t| t.due.is_none())
        .map(|t| t.doc.as_str())
        .collect();
    let statement = |rows| {
        format!(
            "DELETE FROM task_timers WHERE doc_id IN ({})",
            numbered(rows)
        )
    };
    in_multi_row_statements(tx, &cleared, statement, |query, doc| query.bind(*doc)).await
}

pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Run a multi-row statement over `rows`, in chunks of the sizes in [`CHUNK_ROWS`] (so few
/// statement shapes are prepared): `statement(n)` is its text for `n` rows, and `bind` binds
/// one row's values, in the order its placeholders number them.
pub(crate) async fn in_multi_row_statements<'r, T>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &'r [T],
    statement: impl Fn(usize) -> String,
    bind: impl Fn(AnyQuery<'r>, &'r T) -> AnyQuery<'r>,
) -> Result<(), DbError> {
    for chunk in in_chunks(rows) {
        // Safe: every statement here is made of fixed text and numbered placeholders only.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement(chunk.len())));
        for row in chunk {
            query = bind(query, row);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// `rows` cut into chunks of the sizes in [`CHUNK_ROWS`].
fn in_chunks<T>(mut rows: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    for size in CHUNK_ROWS {
        while rows.len() >= size {
            let (chunk, rest) = rows.split_at(size);
            chunks.push(chunk);
            rows = rest;
        }
    }
    chunks
}

/// `$1, $2, …, $n`: a list of `n` values.
fn numbered(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` values.
pub(crate) fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let values: Vec<String> = (1..=columns)
                .map(|column| format!("${}", row * columns + column))
                .collect();
            format!("({})", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owed_index_entries_written_in_one_millisecond_get_distinct_stamps() {
        let stamps: Vec<i64> = (0..1_000).map(|_| queue_stamp(1_000)).collect();
        assert!(
            stamps.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing"
        );
        assert!(stamps[0] >= 1_000_000, "in microseconds");
    }

    #[test]
    fn rows_go_in_few_chunks_of_few_shapes_and_none_is_lost() {
        for n in 0..300 {
            let rows: Vec<usize> = (0..n).collect();
            let chunks = in_chunks(&rows);
            assert_eq!(chunks.concat(), rows, "in order, each once");
            assert!(chunks.iter().all(|c| CHUNK_ROWS.contains(&c.len())));
            assert!(
                chunks.len() <= n / 64 + 3 + 3 + 3,
                "{n} rows in {}",
                chunks.len()
            );
        }
    }

    #[test]
    fn of_rows_for_one_document_only_the_last_is_kept_in_order() {
        let rows = [
            ("a".to_owned(), 1),
            ("b".to_owned(), 2),
            ("a".to_owned(), 3),
            ("c".to_owned(), 4),
        ];
        let kept: Vec<i32> = last_per_doc(rows.iter(), |r| &r.0)
            .iter()
            .map(|r| r.1)
            .collect();
        assert_eq!(kept, [2, 3, 4]);
    }

    #[test]
    fn placeholders_number_every_value() {
        assert_eq!(placeholders(1, 2), "($1, $2)");
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }
}

/// The conditions of a query whose filters are chosen at run time, each with its value bound to
/// a numbered placeholder in order, so the statement holds fixed text and placeholders only.
#[derive(Debug, Default)]
pub(crate) struct Conditions<'v> {
    conditions: Vec<String>,
    values: Vec<Bound<'v>>,
}

/// A value bound to a placeholder.
#[derive(Debug)]
pub(crate) enum Bound<'v> {
    Text(&'v str),
    Number(i64),
}

impl<'v> Conditions<'v> {
    /// Add `{test} $n`, such as `user_id =` with its value.
    pub(crate) fn add(&mut self, test: &str, value: Bound<'v>) {
        let placeholder = self.bind(value);
        self.conditions.push(format!("{test} {placeholder}"));
    }

    /// Add a condition that binds its values itself, through [`Conditions::bind`].
    pub(crate) fn raw(&mut self, condition: String) {
        self.conditions.push(condition);
    }

    /// Add `column IN ($n, …)` over `values`. An empty list matches nothing.
    pub(crate) fn any_of(&mut self, column: &str, values: impl IntoIterator<Item = &'v str>) {
        let list: Vec<String> = values
            .into_iter()
            .map(|v| self.bind(Bound::Text(v)))
            .collect();
        if list.is_empty() {
            self.conditions.push("1 = 0".to_owned());
        } else {
            self.conditions
                .push(format!("{column} IN ({})", list.join(", ")));
        }
    }

    /// Bind `value` to the next placeholder, and name it.
    pub(crate) fn bind(&mut self, value: Bound<'v>) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    /// The conditions joined by `AND` (`1 = 1` when there are none).
    pub(crate) fn clause(&self) -> String {
        if self.conditions.is_empty() {
            "1 = 1".to_owned()
        } else {
            self.conditions.join(" AND ")
        }
    }

    /// Whether a text value holds a NUL. No stored text holds one (Postgres cannot store one),
    /// so such a filter matches nothing; a caller answers so rather than let Postgres refuse.
    pub(crate) fn holds_nul(&self) -> bool {
        self.values
            .iter()
            .any(|v| matches!(v, Bound::Text(t) if t.contains('\0')))
    }

    /// `sql` (which must use these conditions' placeholders only) with every value bound.
    pub(crate) fn query(self, sql: String) -> AnyQuery<'v> {
        // Safe: callers build `sql` of fixed text and these numbered placeholders only.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in self.values {
            query = match value {
                Bound::Text(text) => query.bind(text),
                Bound::Number(number) => query.bind(number),
            };
        }
        query
    }
}
