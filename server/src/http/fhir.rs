//! FHIR R4 over REST, under `/api/v1/fhir`: `metadata`, `Task/{id}`, `Task?…` and
//! `AuditEvent?entity=Task/{id}`. Answers and refusals are FHIR JSON (`application/fhir+json`);
//! refusals are `OperationOutcome`s carrying the same HTTP status as the rest of the API.
//! Access is the task API's: a session sees the tasks of the units it may read.

use super::page::{Cursor, Params, encode_cursor, filter_text, page_after};
use super::tasks::{Readable, readable_task};
use super::{ApiError, Caller};
use crate::AppState;
use crate::audit::trail::{self, TrailFilter};
use crate::db::TaskFilter;
use crate::fhir;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_core::ids::UnitId;
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// A FHIR resource, as FHIR JSON.
#[derive(Debug)]
pub(crate) struct Fhir(Value);

impl IntoResponse for Fhir {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, fhir::FHIR_JSON)],
            self.0.to_string(),
        )
            .into_response()
    }
}

/// A FHIR resource (R4 JSON): `Task`, `Bundle`, `CapabilityStatement` or `OperationOutcome`.
#[derive(ToSchema)]
#[schema(as = FhirResource)]
#[allow(dead_code)] // Describes the answers; they are built as JSON.
pub(crate) struct FhirResource {
    #[schema(rename = "resourceType")]
    resource_type: String,
}

/// A refusal, as an `OperationOutcome` with the status the rest of the API would answer.
#[derive(Debug)]
pub(crate) struct FhirError(ApiError);

impl From<ApiError> for FhirError {
    fn from(e: ApiError) -> Self {
        FhirError(e)
    }
}

impl From<crate::db::DbError> for FhirError {
    fn from(e: crate::db::DbError) -> Self {
        FhirError(e.into())
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        let code = match status {
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::UNAUTHORIZED => "login",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::CONFLICT => "conflict",
            s if s.is_server_error() => "exception",
            _ => "invalid",
        };
        let outcome = fhir::operation_outcome(code, self.0.message());
        (status, Fhir(outcome)).into_response()
    }
}

/// The server's FHIR capabilities.
#[utoipa::path(get, path = "/api/v1/fhir/metadata", tag = "fhir",
    responses((status = 200, description = "the CapabilityStatement", body = FhirResource,
        content_type = "application/fhir+json")))]
pub(crate) async fn metadata(State(app): State<AppState>) -> Fhir {
    Fhir(fhir::capability_statement(
        env!("CARGO_PKG_VERSION"),
        app.clock.now(),
    ))
}

/// One task as a FHIR `Task`.
#[utoipa::path(get, path = "/api/v1/fhir/Task/{id}", tag = "fhir", security(("bearer" = [])),
    params(("id" = String, Path, description = "the task's document id")),
    responses(
        (status = 200, description = "the Task", body = FhirResource, content_type = "application/fhir+json"),
        (status = "default", description = "an OperationOutcome", body = FhirResource,
            content_type = "application/fhir+json"),
))]
pub(crate) async fn task(
    State(app): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> Result<Fhir, FhirError> {
    let Caller(session) = caller?;
    let readable = readable_task(&app, &session, &id).await?;
    let updated_at = app
        .db
        .task_updated_at(&readable.id.to_string())
        .await?
        .unwrap_or(readable.record.created_at);
    Ok(Fhir(task_resource(&readable, updated_at)))
}

/// `readable` as a FHIR `Task`, last stored a change of at `updated_at`.
fn task_resource(readable: &Readable, updated_at: i64) -> Value {
    fhir::task(
        &readable.id,
        readable.task.meta(),
        &readable.state,
        &readable.template,
        updated_at,
    )
}

/// Tasks per page of a FHIR search unless `_count` says otherwise, and at most.
const PER_PAGE: i64 = 20;
const MAX_PER_PAGE: i64 = 100;

/// What `GET /api/v1/fhir/Task` may be asked.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TaskSearch {
    /// FHIR Task status codes, comma-separated (`requested,in-progress`).
    #[param(
        max_length = 256,
        pattern = r"^(draft|requested|received|accepted|in-progress|on-hold|completed|cancelled)(,(draft|requested|received|accepted|in-progress|on-hold|completed|cancelled))*$"
    )]
    status: Option<String>,
    /// The owner: `Practitioner/<user>` or the user id.
    #[param(max_length = 256)]
    owner: Option<String>,
    /// The template: `urn:baton:template|<id>` or the id.
    #[param(max_length = 256)]
    code: Option<String>,
    /// Baton's unit: `Location/<unit>` or the unit id.
    #[param(max_length = 256)]
    location: Option<String>,
    /// Tasks per page (1 to 100, default 20).
    #[serde(rename = "_count")]
    #[param(rename = "_count", minimum = 1, maximum = 100)]
    count: Option<i64>,
    /// The `next` link's position: the tasks after it.
    #[serde(rename = "_cursor")]
    #[param(rename = "_cursor")]
    cursor: Option<Cursor>,
}

/// The FHIR statuses [`fhir::status`] gives.
const STATUSES: [&str; 8] = [
    "draft",
    "requested",
    "received",
    "accepted",
    "in-progress",
    "on-hold",
    "completed",
    "cancelled",
];

/// The summaries' status every one of `statuses` comes from, when they share one.
fn summary_status(statuses: &[String]) -> Option<&'static str> {
    let of = |s: &str| match s {
        "on-hold" => "waiting",
        "completed" => "completed",
        "cancelled" => "cancelled",
        "draft" => "pending",
        _ => "open",
    };
    let first = of(statuses.first()?);
    statuses.iter().all(|s| of(s) == first).then_some(first)
}

/// A page size, refused outside 1 to `MAX_PER_PAGE`.
fn count(count: Option<i64>) -> Result<i64, ApiError> {
    match count {
        None => Ok(PER_PAGE),
        Some(n) if (1..=MAX_PER_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid_parameter(
            "_count",
            format!("`_count` is a whole number from 1 to {MAX_PER_PAGE}"),
        )),
    }
}

/// `path` with `pairs` as its query, for a Bundle's links.
fn link(path: &str, pairs: &[(&str, String)]) -> String {
    match serde_urlencoded::to_string(pairs) {
        Ok(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_owned(),
    }
}

/// A search's `self` link (its parameters and the cursor it was asked with) and its `next`
/// link (the same parameters and `next`, the cursor after its last entry), if there is more.
fn links(
    path: &str,
    pairs: &[(&str, String)],
    cursor: Option<&Cursor>,
    next: Option<String>,
) -> (String, Option<String>) {
    let with = |cursor: Option<String>| {
        let mut pairs = pairs.to_vec();
        pairs.extend(cursor.map(|c| ("_cursor", c)));
        link(path, &pairs)
    };
    let this = page_after(cursor).map(|(at, id)| encode_cursor(at, &id));
    (with(this), next.map(|next| with(Some(next))))
}

/// Tasks as a searchset `Bundle`, oldest first, of the units the caller may read.
#[utoipa::path(get, path = "/api/v1/fhir/Task", tag = "fhir", security(("bearer" = [])),
    params(TaskSearch),
    responses(
        (status = 200, description = "a searchset Bundle of Tasks", body = FhirResource,
            content_type = "application/fhir+json"),
        (status = "default", description = "an OperationOutcome", body = FhirResource,
            content_type = "application/fhir+json"),
))]
pub(crate) async fn search_tasks(
    State(app): State<AppState>,
    caller: Result<Caller, ApiError>,
    query: Result<Params<TaskSearch>, ApiError>,
) -> Result<Fhir, FhirError> {
    let Caller(session) = caller?;
    let Params(query) = query?;
    let limit = count(query.count)?;
    // Unlike a filter by name, an empty status is no status: refused like any unknown code.
    let statuses: Vec<String> = match query.status {
        Some(s) if s.is_empty() => vec![String::new()],
        status => filter_text("status", status)?
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
    };
    if let Some(unknown) = statuses.iter().find(|s| !STATUSES.contains(&s.as_str())) {
        return Err(ApiError::invalid_parameter(
            "status",
            format!(
                "`{}` is not a Task status Baton gives: one of {}",
                unknown.chars().take(64).collect::<String>(),
                STATUSES.join(", ")
            ),
        )
        .into());
    }
    let owner = filter_text("owner", query.owner)?;
    let code = filter_text("code", query.code)?;
    let location = filter_text("location", query.location)?;
    let owner_id = owner
        .as_deref()
        .map(|o| o.strip_prefix("Practitioner/").unwrap_or(o).to_owned());
    let template = code.as_deref().map(|c| {
        c.strip_prefix("urn:baton:template|")
            .unwrap_or(c)
            .to_owned()
    });
    let unit = location
        .as_deref()
        .map(|l| l.strip_prefix("Location/").unwrap_or(l).to_owned());
    let units = match &unit {
        Some(unit) if !session.may_read(&UnitId::new(unit.clone())) => Some(Vec::new()),
        Some(unit) => Some(vec![unit.clone()]),
        None => session
            .readable_units()
            .map(|units| units.iter().map(ToString::to_string).collect()),
    };
    let filter = TaskFilter {
        units,
        status: summary_status(&statuses).map(str::to_owned),
        owner: owner_id,
        template,
        program: None,
        overdue: None,
        escalated: None,
        now: app.clock.now(),
        after: page_after(query.cursor.as_ref()),
    };
    let rows = app.db.task_summaries(&filter, limit).await?;
    let mut resources = Vec::with_capacity(rows.len());
    for row in &rows {
        // Access checked again on the way out, as the task is read.
        let readable = match readable_task(&app, &session, &row.row.doc).await {
            Ok(readable) => readable,
            Err(e) if e.status == StatusCode::NOT_FOUND => continue,
            Err(e) => return Err(e.into()),
        };
        if !statuses.is_empty() && !statuses.iter().any(|s| s == fhir::status(&readable.state)) {
            continue;
        }
        // The summary the search read says when the task last changed.
        resources.push(task_resource(&readable, row.updated_at));
    }
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if !statuses.is_empty() {
        pairs.push(("status", statuses.join(",")));
    }
    for (name, value) in [("owner", owner), ("code", code), ("location", location)] {
        if let Some(value) = value {
            pairs.push((name, value));
        }
    }
    pairs.push(("_count", limit.to_string()));
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last())
        .flatten()
        .map(|last| encode_cursor(last.created_at, &last.row.doc));
    let (this, next) = links("/api/v1/fhir/Task", &pairs, query.cursor.as_ref(), next);
    Ok(Fhir(fhir::bundle(resources, &this, next)))
}

/// What `GET /api/v1/fhir/AuditEvent` may be asked.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditEventSearch {
    /// The task whose history to list: `Task/<id>`.
    #[param(max_length = 256, pattern = r"^Task/[!-~]{1,200}$")]
    entity: String,
    /// Events per page (1 to 100, default 20).
    #[serde(rename = "_count")]
    #[param(rename = "_count", minimum = 1, maximum = 100)]
    count: Option<i64>,
    /// The `next` link's position: the events after it.
    #[serde(rename = "_cursor")]
    #[param(rename = "_cursor")]
    cursor: Option<Cursor>,
}

/// A task's history as a searchset `Bundle` of `AuditEvent`s, in the order the server received
/// the events: who wrote each, in which role, on which device, the device's stamp and the
/// server's receipt time.
#[utoipa::path(get, path = "/api/v1/fhir/AuditEvent", tag = "fhir", security(("bearer" = [])),
    params(AuditEventSearch),
    responses(
        (status = 200, description = "a searchset Bundle of AuditEvents", body = FhirResource,
            content_type = "application/fhir+json"),
        (status = "default", description = "an OperationOutcome", body = FhirResource,
            content_type = "application/fhir+json"),
))]
pub(crate) async fn search_audit_events(
    State(app): State<AppState>,
    caller: Result<Caller, ApiError>,
    query: Result<Params<AuditEventSearch>, ApiError>,
) -> Result<Fhir, FhirError> {
    let Caller(session) = caller?;
    let Params(query) = query?;
    let limit = count(query.count)?;
    let entity = filter_text("entity", Some(query.entity))?.unwrap_or_default();
    let Some(task) = entity.strip_prefix("Task/") else {
        return Err(ApiError::invalid_parameter("entity", "`entity` is `Task/<id>`").into());
    };
    let readable = readable_task(&app, &session, task).await?;
    let filter = TrailFilter {
        units: Some(vec![readable.record.unit.clone()]),
        task: Some(readable.id.to_string()),
        after: page_after(query.cursor.as_ref()).map_or(0, |(seq, _)| seq),
        ..TrailFilter::default()
    };
    let events = trail::events(&app.db, &filter, limit).await?;
    let pairs = vec![
        ("entity", format!("Task/{}", readable.id)),
        ("_count", limit.to_string()),
    ];
    let next = (events.len() as i64 == limit)
        .then(|| events.last())
        .flatten()
        .map(|last| encode_cursor(last.seq, "seq"));
    let (this, next) = links(
        "/api/v1/fhir/AuditEvent",
        &pairs,
        query.cursor.as_ref(),
        next,
    );
    let resources = events.iter().map(fhir::audit_event).collect();
    Ok(Fhir(fhir::bundle(resources, &this, next)))
}
