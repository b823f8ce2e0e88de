//! Tasks as lists and views: `GET /api/v1/tasks` (from the summaries kept with every commit)
//! and `GET /api/v1/tasks/{id}` (the document folded).

use super::page::{Cursor, MAX_FILTER_LEN, decode_cursor, encode_cursor};
use super::{ApiError, Caller, ErrorBody};
use crate::AppState;
use crate::auth::Session;
use crate::db::{DocRecord, StoredSummary, TaskFilter};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use baton_core::TaskDoc;
use baton_core::fold::{Status, TaskState};
use baton_core::ids::UnitId;
use baton_core::policy::escalation::next_due_with;
use baton_core::sync::DocumentId;
use baton_core::template::Template;
use serde::Serialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// A task: its document's fields, its folded state and what falls due next.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskView {
    /// The task document's bare id.
    id: String,
    /// Its `automerge:` URL.
    url: String,
    /// The document's `meta` map (docs/protocol.md).
    #[schema(value_type = Object)]
    meta: serde_json::Value,
    /// The folded state: owner, acknowledgment, steps, deadlines, escalation, waits, exceptions.
    #[schema(value_type = Object)]
    state: serde_json::Value,
    /// The next due action and when (workflow clock), or null.
    #[schema(value_type = Option<Object>)]
    next_due: serde_json::Value,
    /// Whether `next_due` has passed.
    overdue: bool,
    /// The workflow clock now (Unix ms).
    now: i64,
}

/// A task's fields and folded state.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks", security(("bearer" = [])),
    params(("id" = String, Path, description = "the task's document id, bare or as an `automerge:` URL")),
    responses(
        (status = 200, description = "the task", body = TaskView),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn task(
    State(app): State<AppState>,
    Caller(session): Caller,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let Readable {
        id,
        task,
        template,
        state,
        ..
    } = readable_task(&app, &session, &id).await?;
    let next_due = next_due_with(&template, &state, app.config.routing);
    let now = app.clock.now();
    Ok(Json(TaskView {
        id: id.to_string(),
        url: id.url(),
        meta: serde_json::to_value(task.meta()).map_err(ApiError::internal)?,
        state: serde_json::to_value(&state).map_err(ApiError::internal)?,
        next_due: serde_json::to_value(&next_due).map_err(ApiError::internal)?,
        overdue: next_due.as_ref().is_some_and(|due| due.at <= now),
        now,
    }))
}

/// A task the caller may read, loaded and folded.
pub(crate) struct Readable {
    pub id: DocumentId,
    pub record: DocRecord,
    pub task: TaskDoc,
    pub template: std::sync::Arc<Template>,
    pub state: TaskState,
}

/// The task `id` names (bare or as an `automerge:` URL), if it exists and `session` may read
/// its unit; otherwise `404 not_found`, and a task of another unit is recorded on the security
/// audit like the same request over sync.
pub(crate) async fn readable_task(
    app: &AppState,
    session: &Session,
    id: &str,
) -> Result<Readable, ApiError> {
    let id: DocumentId = id
        .strip_prefix("automerge:")
        .unwrap_or(id)
        .parse()
        .map_err(|_| ApiError::not_found())?;
    let record = app
        .db
        .document(&id.to_string())
        .await?
        .filter(|r| r.kind == crate::db::DocKind::Task)
        .ok_or_else(ApiError::not_found)?;
    if !session.may_read(&record.unit) {
        // Answered like a task that does not exist, and recorded like the same request over sync.
        let detail = format!("requested a document of unit {} over REST", record.unit);
        app.auditor
            .session_record(session, "document_outside_units", Some(&record.id), detail)
            .await;
        return Err(ApiError::not_found());
    }
    let doc = app.hub.load(&id).await?.ok_or_else(ApiError::not_found)?;
    let task = TaskDoc::from_automerge(doc).map_err(ApiError::internal)?;
    let template = app
        .hub
        .templates()
        .get(&task.meta().template)
        .ok_or_else(|| ApiError::internal(format!("template of {} unknown", record.id)))?
        .clone();
    let state = task.state(&template).map_err(ApiError::internal)?;
    Ok(Readable {
        id,
        record,
        task,
        template,
        state,
    })
}

/// Tasks per page of `GET /api/v1/tasks` unless `limit` says otherwise, and at most.
pub const TASKS_PER_PAGE: i64 = 50;
pub const MAX_TASKS_PER_PAGE: i64 = 200;

/// The query parameters of `GET /api/v1/tasks`, as the OpenAPI document describes them.
/// [`TaskQuery::parse`] reads them (refusing unknown and repeated ones, naming each); a test
/// keeps the two lists the same.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by `TaskQuery::parse`; this type only describes them.
pub(crate) struct TaskListParams {
    /// Only tasks of this unit (one the caller may see).
    #[param(max_length = 256)]
    unit: Option<String>,
    /// Only tasks with this status.
    status: Option<TaskStatus>,
    /// Only tasks this user owns.
    #[param(max_length = 256)]
    owner: Option<String>,
    /// Only tasks whose earliest open deadline has passed (true) or has not (false), on the
    /// server's workflow clock.
    overdue: Option<bool>,
    /// Only tasks escalated at least once since their last progress (true), or not (false).
    escalated: Option<bool>,
    /// Only tasks of this template.
    #[param(max_length = 256)]
    template: Option<String>,
    /// Only tasks of templates of this program.
    #[param(max_length = 256)]
    program: Option<String>,
    /// The `next_cursor` of the previous page: the tasks after it.
    cursor: Option<Cursor>,
    /// Tasks per page.
    #[param(minimum = 1, maximum = 200, default = 50)]
    limit: Option<i64>,
}

/// The names [`TaskListParams`] declares, in its order.
const TASK_LIST_PARAMS: [&str; 9] = [
    "unit",
    "status",
    "owner",
    "overdue",
    "escalated",
    "template",
    "program",
    "cursor",
    "limit",
];

/// A task's status, as lists show and filter by it (`baton_core::fold::Status` by name).
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)] // Only describes the values.
#[serde(rename_all = "lowercase")]
pub(crate) enum TaskStatus {
    Pending,
    Open,
    Waiting,
    Completed,
    Cancelled,
}

/// One task of a list, from its summary.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskSummary {
    /// The task document's bare id.
    id: String,
    /// Its `automerge:` URL.
    url: String,
    template: String,
    template_version: i64,
    unit: String,
    #[schema(value_type = TaskStatus)]
    status: String,
    /// Who owns it now; null while nobody does.
    owner: Option<String>,
    owner_role: String,
    acuity: String,
    /// Escalations since the last progress.
    escalation_level: i64,
    /// The earliest open deadline (Unix ms, workflow clock).
    next_due_at: Option<i64>,
    /// Whether `next_due_at` has passed.
    overdue: bool,
    /// The subject's display label.
    label: String,
    /// When the server first stored the task (Unix ms).
    created_at: i64,
    /// When the server last stored a change of it (Unix ms).
    updated_at: i64,
}

/// A page of tasks.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskList {
    tasks: Vec<TaskSummary>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// What `GET /api/v1/tasks` was asked, checked.
#[derive(Debug, Default)]
struct TaskQuery {
    unit: Option<String>,
    status: Option<String>,
    owner: Option<String>,
    template: Option<String>,
    program: Option<String>,
    overdue: Option<bool>,
    escalated: Option<bool>,
    after: Option<(i64, String)>,
    limit: i64,
}

impl TaskQuery {
    /// Read the parameters: each known, given at most once, and acceptable. An empty filter by
    /// name (`unit=`, `owner=`, `template=`) is taken as not given; an empty status, flag,
    /// cursor or limit is refused, like any other value those cannot take.
    fn parse(pairs: Vec<(String, String)>) -> Result<TaskQuery, ApiError> {
        let mut seen: Vec<&'static str> = Vec::new();
        let mut query = TaskQuery {
            limit: TASKS_PER_PAGE,
            ..TaskQuery::default()
        };
        for (name, value) in pairs {
            let Some(&param) = TASK_LIST_PARAMS.iter().find(|p| **p == name) else {
                let shown: String = name.chars().take(64).collect();
                return Err(ApiError::invalid_parameter(
                    shown.clone(),
                    format!("`{shown}` is not a parameter of this endpoint"),
                ));
            };
            if seen.contains(&param) {
                return Err(ApiError::invalid_parameter(
                    param,
                    format!("`{param}` is given more than once"),
                ));
            }
            seen.push(param);
            if value.is_empty() && matches!(param, "unit" | "owner" | "template" | "program") {
                continue;
            }
            if value.chars().count() > MAX_FILTER_LEN {
                return Err(ApiError::invalid_parameter(
                    param,
                    format!("`{param}` is longer than {MAX_FILTER_LEN} characters"),
                ));
            }
            let flag = |value: &str| match value {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::invalid_parameter(
                    param,
                    format!("`{param}` is `true` or `false`"),
                )),
            };
            match param {
                "unit" => query.unit = Some(value),
                "owner" => query.owner = Some(value),
                "template" => query.template = Some(value),
                "program" => query.program = Some(value),
                "status" => {
                    if serde_json::from_value::<Status>(json!(value)).is_err() {
                        return Err(ApiError::invalid_parameter(
                            param,
                            "`status` is one of pending, open, waiting, completed, cancelled",
                        ));
                    }
                    query.status = Some(value);
                }
                "overdue" => query.overdue = Some(flag(&value)?),
                "escalated" => query.escalated = Some(flag(&value)?),
                "cursor" => {
                    query.after = Some(decode_cursor(&value).ok_or_else(|| {
                        ApiError::invalid_parameter(
                            param,
                            "`cursor` is not a cursor this server gives out",
                        )
                    })?);
                }
                _ => {
                    query.limit = value
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_TASKS_PER_PAGE).contains(n))
                        .ok_or_else(|| {
                            ApiError::invalid_parameter(
                                param,
                                format!("`limit` is a whole number from 1 to {MAX_TASKS_PER_PAGE}"),
                            )
                        })?;
                }
            }
        }
        Ok(query)
    }
}

/// The tasks of the caller's units (those they hold a role on or administer; every unit, for
/// the server's admins), oldest first (by when the server
/// first stored them, then id), filtered and paged. Not for integration tokens.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", security(("bearer" = [])),
    params(TaskListParams),
    responses(
        (status = 200, description = "a page of tasks", body = TaskList),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn tasks(
    State(app): State<AppState>,
    Caller(session): Caller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<TaskList>, ApiError> {
    let Query(pairs) = query.map_err(|e| {
        ApiError::invalid_parameter("query", format!("the query cannot be read: {e}"))
    })?;
    let query = TaskQuery::parse(pairs)?;
    let units = match &query.unit {
        Some(unit) => {
            if !session.may_read(&UnitId::new(unit.clone())) {
                let detail = format!("listed the tasks of unit {unit} over REST");
                app.auditor
                    .session_record(&session, "document_outside_units", None, detail)
                    .await;
                return Err(ApiError::unit_not_allowed(unit));
            }
            Some(vec![unit.clone()])
        }
        // The units the caller holds a role on or administers; the server's admins, every unit.
        None => session
            .readable_units()
            .map(|units| units.iter().map(ToString::to_string).collect()),
    };
    let now = app.clock.now();
    let filter = TaskFilter {
        units,
        status: query.status,
        owner: query.owner,
        template: query.template,
        program: query.program,
        overdue: query.overdue,
        escalated: query.escalated,
        now,
        after: query.after,
    };
    let mut rows = app.db.task_summaries(&filter, query.limit + 1).await?;
    let more = rows.len() as i64 > query.limit;
    rows.truncate(usize::try_from(query.limit).unwrap_or(0));
    let next_cursor = if more {
        rows.last().map(|r| encode_cursor(r.created_at, &r.row.doc))
    } else {
        None
    };
    // Access checked again on the way out: only tasks of units the session may see leave.
    let tasks = rows
        .iter()
        .filter(|r| session.may_read(&UnitId::new(r.row.unit.clone())))
        .map(|r| summary(r, now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(TaskList { tasks, next_cursor }))
}

/// One task of `GET /api/v1/tasks`.
fn summary(stored: &StoredSummary, now: i64) -> Result<TaskSummary, ApiError> {
    let row = &stored.row;
    let id: DocumentId = row.doc.parse().map_err(|e| {
        ApiError::internal(format!(
            "a stored summary names document `{}`: {e}",
            row.doc
        ))
    })?;
    Ok(TaskSummary {
        id: row.doc.clone(),
        url: id.url(),
        template: row.template_id.clone(),
        template_version: row.template_version,
        unit: row.unit.clone(),
        status: row.status.clone(),
        owner: row.owner.clone(),
        owner_role: row.owner_role.clone(),
        acuity: row.acuity.clone(),
        escalation_level: row.escalation_level,
        next_due_at: row.next_due_at,
        overdue: row.next_due_at.is_some_and(|at| at < now),
        label: row.label.clone(),
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_parameters_are_the_ones_read() {
        let documented: Vec<String> = TaskListParams::into_params(|| None)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(documented, TASK_LIST_PARAMS);
    }
}
