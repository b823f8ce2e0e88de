//! The audit trail over REST: the security audit, and every task event as the server received
//! it (paged, or exported whole as JSON lines). Both are the chains `audit verify` checks.

use super::page::{Cursor, Params, encode_cursor, filter_text, page_after, page_limit};
use super::{Admin, ApiError, ErrorBody, ServerAdmin};
use crate::AppState;
use crate::audit::trail::{self, TrailEvent, TrailFilter};
use crate::db::{AuditFilter, StoredAudit};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use baton_core::ids::UnitId;
use baton_core::sync::DocumentId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What `GET /api/v1/audit/security` may be asked.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Records per page.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
    /// Only records of this kind (`refused_token`, `invalid_change`, `device_revoked`, …).
    #[param(max_length = 256)]
    kind: Option<String>,
    /// Only records about this user.
    #[param(max_length = 256)]
    user: Option<String>,
    /// Only records about this device.
    #[param(max_length = 256)]
    device: Option<String>,
    /// Only records at or after this time (Unix ms).
    since: Option<i64>,
    /// Only records before this time (Unix ms).
    until: Option<i64>,
    /// The `next_cursor` of the previous page: the records after it.
    cursor: Option<Cursor>,
}

/// A page of security audit records.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditPage {
    records: Vec<StoredAudit>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// Security audit records, newest first (by time, then id), filtered and paged.
#[utoipa::path(get, path = "/api/v1/audit/security", tag = "audit", security(("bearer" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "a page of records", body = AuditPage),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn security_audit(
    State(app): State<AppState>,
    ServerAdmin(_): ServerAdmin,
    Params(query): Params<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let after = page_after(query.cursor.as_ref());
    let filter = AuditFilter {
        kind: filter_text("kind", query.kind)?,
        user: filter_text("user", query.user)?,
        device: filter_text("device", query.device)?,
        since: query.since,
        until: query.until,
        after,
    };
    let limit = page_limit(query.limit, 100, 1_000)?;
    let records = app.db.audit_records(&filter, limit).await?;
    let next_cursor = if records.len() as i64 == limit {
        records.last().map(|r| encode_cursor(r.at, &r.id))
    } else {
        None
    };
    Ok(Json(AuditPage {
        records,
        next_cursor,
    }))
}

/// What `GET /api/v1/audit/events` may be asked.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Only events of this task (its document id, bare or as an `automerge:` URL).
    #[param(max_length = 256)]
    task: Option<String>,
    /// Only events of tasks on this unit.
    #[param(max_length = 256)]
    unit: Option<String>,
    /// Only events this user wrote.
    #[param(max_length = 256)]
    user: Option<String>,
    /// Only events written on this device.
    #[param(max_length = 256)]
    device: Option<String>,
    /// Only events received at or after this time (Unix ms).
    since: Option<i64>,
    /// Only events received before this time (Unix ms).
    until: Option<i64>,
    /// The `next_cursor` of the previous page: the events after it.
    cursor: Option<Cursor>,
    /// Events per page.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// What `GET /api/v1/audit/events/export` may be asked: the page's filters, without paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportQuery {
    /// Only events of this task (its document id, bare or as an `automerge:` URL).
    #[param(max_length = 256)]
    task: Option<String>,
    /// Only events of tasks on this unit.
    #[param(max_length = 256)]
    unit: Option<String>,
    /// Only events this user wrote.
    #[param(max_length = 256)]
    user: Option<String>,
    /// Only events written on this device.
    #[param(max_length = 256)]
    device: Option<String>,
    /// Only events received at or after this time (Unix ms).
    since: Option<i64>,
    /// Only events received before this time (Unix ms).
    until: Option<i64>,
}

/// A page of the task events' trail.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventsPage {
    events: Vec<TrailEvent>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// The filter a query asks for, within what `admin` administers.
fn trail_filter(
    admin: &Admin,
    task: Option<String>,
    unit: Option<String>,
    (user, device): (Option<String>, Option<String>),
    (since, until): (Option<i64>, Option<i64>),
) -> Result<TrailFilter, ApiError> {
    let mut units = admin.0.admin.units().map(<[UnitId]>::to_vec);
    if let Some(unit) = filter_text("unit", unit)? {
        let unit = UnitId::new(unit);
        admin.of(&unit)?;
        units = Some(vec![unit]);
    }
    let task = match filter_text("task", task)? {
        None => None,
        Some(task) => {
            let bare = task.strip_prefix("automerge:").unwrap_or(&task);
            // An id that is no document id names no task: nothing matches.
            Some(match bare.parse::<DocumentId>() {
                Ok(id) => id.to_string(),
                Err(_) => bare.to_owned(),
            })
        }
    };
    Ok(TrailFilter {
        units,
        task,
        user: filter_text("user", user)?,
        device: filter_text("device", device)?,
        since,
        until,
        after: 0,
    })
}

/// Every event of every task as the server received it, in the order received: who wrote it, in
/// which role, from which device, its stamp and the device's time beside the server's receipt
/// time, and whether it arrived late. A unit's admin sees their units' tasks only.
#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit", security(("bearer" = [])),
    params(EventsQuery),
    responses(
        (status = 200, description = "a page of events", body = EventsPage),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn task_events(
    State(app): State<AppState>,
    admin: Admin,
    Params(query): Params<EventsQuery>,
) -> Result<Json<EventsPage>, ApiError> {
    let limit = page_limit(query.limit, 100, 1_000)?;
    let mut filter = trail_filter(
        &admin,
        query.task,
        query.unit,
        (query.user, query.device),
        (query.since, query.until),
    )?;
    filter.after = page_after(query.cursor.as_ref()).map_or(0, |(seq, _)| seq);
    let events = trail::events(&app.db, &filter, limit).await?;
    let next_cursor = if events.len() as i64 == limit {
        events.last().map(|e| encode_cursor(e.seq, "seq"))
    } else {
        None
    };
    Ok(Json(EventsPage {
        events,
        next_cursor,
    }))
}

/// Events per read while an export streams.
const EXPORT_PAGE: i64 = 1_000;

/// The same trail, exported whole: one JSON object per line (`application/jsonl`), as
/// `GET /api/v1/audit/events` shows each event, read from the database a page at a time as it
/// is sent.
#[utoipa::path(get, path = "/api/v1/audit/events/export", tag = "audit", security(("bearer" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "the events, one JSON object per line", body = String,
            content_type = "application/jsonl"),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn export_task_events(
    State(app): State<AppState>,
    admin: Admin,
    Params(query): Params<ExportQuery>,
) -> Result<Response, ApiError> {
    let filter = trail_filter(
        &admin,
        query.task,
        query.unit,
        (query.user, query.device),
        (query.since, query.until),
    )?;
    let lines = futures_util::stream::try_unfold(Some(filter), move |filter| {
        let db = app.db.clone();
        async move {
            let Some(mut filter) = filter else {
                return Ok::<_, std::io::Error>(None);
            };
            let events = trail::events(&db, &filter, EXPORT_PAGE)
                .await
                .map_err(std::io::Error::other)?;
            if events.is_empty() {
                return Ok(None);
            }
            let mut text = String::new();
            for event in &events {
                text.push_str(&serde_json::to_string(event).map_err(std::io::Error::other)?);
                text.push('\n');
            }
            let more = events.len() as i64 == EXPORT_PAGE;
            filter.after = events.last().map_or(filter.after, |e| e.seq);
            Ok(Some((text, more.then_some(filter))))
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/jsonl")],
        Body::from_stream(lines),
    )
        .into_response())
}
