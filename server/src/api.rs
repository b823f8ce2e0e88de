//! HTTP: health, metrics, and the REST API under `/api/v1`.
//!
//! Errors leave as a small JSON body with a stable `error` code and a message safe to show;
//! internal detail goes to the log only.

use crate::AppState;
use crate::auth::{AuthError, Session};
use crate::db::{AuditFilter, StoredSummary, TaskFilter};
use crate::hub::HubError;
use crate::now_ms;
use crate::ws::{LimitError, bearer, follow_memberships};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_core::TaskDoc;
use baton_core::fold::Status;
use baton_core::ids::UnitId;
use baton_core::policy::escalation::next_due_with;
use baton_core::sync::DocumentId;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// An error as an HTTP client sees it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    wipe: bool,
    /// The body field or query parameter the error is about.
    field: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            wipe: false,
            field: None,
        }
    }

    /// `422 invalid_field`: a field of the request's body is missing or not acceptable.
    pub(crate) fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
        }
    }

    /// `422 invalid_parameter`: a query parameter is unknown, repeated or not acceptable.
    pub(crate) fn invalid_parameter(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(param.into()),
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_parameter",
                message,
            )
        }
    }

    /// `403 unit_not_allowed`: the caller may not act on that unit.
    pub(crate) fn unit_not_allowed(unit: &str) -> Self {
        ApiError {
            field: Some("unit".to_owned()),
            ..ApiError::new(
                StatusCode::FORBIDDEN,
                "unit_not_allowed",
                format!("unit `{unit}` is not one this token covers"),
            )
        }
    }

    #[cfg(test)]
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    #[cfg(test)]
    pub(crate) fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not complete the request",
        )
    }

    fn not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "message": self.message });
        if self.wipe {
            body["wipe"] = json!(true);
        }
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match &e {
            AuthError::Missing
            | AuthError::Expired
            | AuthError::NotYetValid
            | AuthError::IssuedInFuture
            | AuthError::Invalid(_) => StatusCode::UNAUTHORIZED,
            AuthError::UnknownUser(_)
            | AuthError::UserDisabled(_)
            | AuthError::DeviceRevoked(_)
            | AuthError::NoAccess
            | AuthError::NotAdmin
            | AuthError::IntegrationToken
            | AuthError::NotIntegration => StatusCode::FORBIDDEN,
            AuthError::Keys(detail) => {
                tracing::error!(%detail, "identity provider keys unavailable");
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    e.code(),
                    "tokens cannot be checked right now",
                );
            }
            AuthError::Db(db) => return ApiError::internal(db),
        };
        let code = e.code();
        let message = match &e {
            // Say why a token failed in the log, not to the caller.
            AuthError::Invalid(detail) => {
                tracing::info!(%detail, "refused a token");
                "the token is not valid".to_owned()
            }
            other => other.to_string(),
        };
        ApiError {
            wipe: matches!(e, AuthError::DeviceRevoked(_)),
            ..ApiError::new(status, code, message)
        }
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.code(), e.to_string())
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        ApiError::internal(e)
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        ApiError::internal(e)
    }
}

/// The address a request came from, when the server knows it.
pub(crate) struct PeerAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(PeerAddr(addr))
    }
}

/// The authenticated caller of a REST endpoint.
pub(crate) struct Caller(pub Session);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Ok(PeerAddr(from)) = PeerAddr::from_request_parts(parts, app).await;
        Ok(Caller(
            app.session(bearer(&parts.headers, None), from).await?,
        ))
    }
}

/// An authenticated caller who is an administrator.
pub(crate) struct Admin(pub Session);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Caller(session) = Caller::from_request_parts(parts, app).await?;
        if !session.admin {
            return Err(AuthError::NotAdmin.into());
        }
        Ok(Admin(session))
    }
}

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

pub(crate) async fn readyz(State(app): State<AppState>) -> Response {
    match app.db.ping().await {
        Ok(()) if !app.cancel.is_cancelled() => (StatusCode::OK, "ready").into_response(),
        Ok(()) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

pub(crate) async fn metrics(State(app): State<AppState>) -> Response {
    // A scrape that cannot count the timers leaves the series out rather than report a wrong 0.
    let timers = match app.db.pending_timers().await {
        Ok(n) => format!(
            "# HELP baton_timers_pending Open tasks with a timer (their next due action).\n\
             # TYPE baton_timers_pending gauge\n\
             baton_timers_pending {n}\n"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "pending timers could not be counted");
            String::new()
        }
    };
    let body = format!(
        "# HELP baton_connections Open WebSocket sync connections.\n\
         # TYPE baton_connections gauge\n\
         baton_connections {}\n\
         # HELP baton_documents_loaded Documents held in memory.\n\
         # TYPE baton_documents_loaded gauge\n\
         baton_documents_loaded {}\n\
         # HELP baton_refused_tokens_total Tokens refused (each address's first few a minute are audited).\n\
         # TYPE baton_refused_tokens_total counter\n\
         baton_refused_tokens_total {}\n{}{}{timers}{}{}",
        app.connections.count(),
        app.hub.loaded_documents(),
        app.auditor.total("refused_token"),
        app.auditor.metrics(),
        app.hub.metrics(),
        app.scheduler.metrics(),
        app.notifier.metrics().await,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[derive(Serialize)]
struct MeUnit {
    id: String,
    name: String,
    roles: Vec<String>,
    /// The unit's index document: its open tasks and roster.
    index_url: String,
}

#[derive(Serialize)]
struct Me {
    user: String,
    display_name: String,
    device: String,
    admin: bool,
    units: Vec<MeUnit>,
    /// Where to sync.
    sync_path: &'static str,
    /// The server's (workflow) clock, ms since 1970: devices stamp their events in it.
    server_time: i64,
}

/// `GET /api/v1/openapi.json`: the API in OpenAPI 3.1.
pub(crate) async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::spec())
}

/// `GET /api/v1/me`: how a device bootstraps.
pub(crate) async fn me(
    State(app): State<AppState>,
    Caller(session): Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let names = app.db.units().await?;
    let grants = session.grants();
    let mut units = Vec::new();
    for unit in session.units() {
        let index = app.hub.ensure_unit_index(unit.as_str()).await?;
        units.push(MeUnit {
            name: names
                .iter()
                .find(|(id, _)| *id == unit)
                .map(|(_, n)| n.clone())
                .unwrap_or_else(|| unit.to_string()),
            roles: grants
                .iter()
                .filter(|(u, _)| *u == unit)
                .map(|(_, r)| r.to_string())
                .collect(),
            id: unit.to_string(),
            index_url: index.url(),
        });
    }
    let me = Me {
        user: session.user.to_string(),
        display_name: session.display_name,
        device: session.device.to_string(),
        admin: session.admin,
        units,
        sync_path: "/sync",
        server_time: app.clock.now(),
    };
    Ok(Json(serde_json::to_value(me).map_err(ApiError::internal)?))
}

/// `GET /api/v1/templates`: every template version the server knows, so a device can run the
/// same rules and validation before it writes.
pub(crate) async fn templates(
    State(app): State<AppState>,
    Caller(_): Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let templates: Vec<&baton_core::Template> = app.templates.iter().map(AsRef::as_ref).collect();
    Ok(Json(serde_json::json!({ "templates": templates })))
}

/// `GET /api/v1/tasks/{id}`: a task's document fields and folded state.
pub(crate) async fn task(
    State(app): State<AppState>,
    Caller(session): Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: DocumentId = id
        .strip_prefix("automerge:")
        .unwrap_or(&id)
        .parse()
        .map_err(|_| ApiError::not_found())?;
    let record = app
        .db
        .document(&id.to_string())
        .await?
        .filter(|r| r.kind == crate::db::DocKind::Task)
        .ok_or_else(ApiError::not_found)?;
    if !(session.admin || session.may_see(&record.unit)) {
        // Answered like a task that does not exist, and recorded like the same request over sync.
        let detail = format!("requested a document of unit {} over REST", record.unit);
        app.auditor
            .session_record(&session, "document_outside_units", Some(&record.id), detail)
            .await;
        return Err(ApiError::not_found());
    }
    let doc = app.hub.load(&id).await?.ok_or_else(ApiError::not_found)?;
    let task = TaskDoc::from_automerge(doc).map_err(ApiError::internal)?;
    let template = app
        .templates
        .get(&task.meta().template)
        .ok_or_else(|| ApiError::internal(format!("template of {} unknown", record.id)))?;
    let state = task.state(template).map_err(ApiError::internal)?;
    let next_due = next_due_with(template, &state, app.config.routing);
    let now = app.clock.now();
    Ok(Json(json!({
        "id": id.to_string(),
        "url": id.url(),
        "meta": task.meta(),
        "state": state,
        "next_due": next_due,
        "overdue": next_due.as_ref().is_some_and(|due| due.at <= now),
        "now": now,
    })))
}

/// Tasks per page of `GET /api/v1/tasks` unless `limit` says otherwise, and at most.
pub const TASKS_PER_PAGE: i64 = 50;
pub const MAX_TASKS_PER_PAGE: i64 = 200;

/// The query parameters of `GET /api/v1/tasks`.
const TASK_LIST_PARAMS: [&str; 8] = [
    "unit",
    "status",
    "owner",
    "overdue",
    "escalated",
    "template",
    "cursor",
    "limit",
];

/// The longest value of a task list parameter (a cursor is hex of a time and an id).
const MAX_PARAM_LEN: usize = 256;

/// What `GET /api/v1/tasks` was asked, checked.
#[derive(Debug, Default)]
struct TaskQuery {
    unit: Option<String>,
    status: Option<String>,
    owner: Option<String>,
    template: Option<String>,
    overdue: Option<bool>,
    escalated: Option<bool>,
    after: Option<(i64, String)>,
    limit: i64,
}

impl TaskQuery {
    /// Read the parameters: each known, given at most once, and acceptable. An empty value is
    /// taken as not given.
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
            if value.is_empty() {
                continue;
            }
            if value.len() > MAX_PARAM_LEN {
                return Err(ApiError::invalid_parameter(
                    param,
                    format!("`{param}` is longer than {MAX_PARAM_LEN} bytes"),
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
                            "`cursor` is not one this server gave out",
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

/// `GET /api/v1/tasks`: the tasks of the caller's units, filtered, oldest first, paged.
pub(crate) async fn tasks(
    State(app): State<AppState>,
    Caller(session): Caller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(pairs) = query.map_err(|e| {
        ApiError::invalid_parameter("query", format!("the query cannot be read: {e}"))
    })?;
    let query = TaskQuery::parse(pairs)?;
    let units = match &query.unit {
        Some(unit) => {
            if !(session.admin || session.may_see(&UnitId::new(unit.clone()))) {
                let detail = format!("listed the tasks of unit {unit} over REST");
                app.auditor
                    .session_record(&session, "document_outside_units", None, detail)
                    .await;
                return Err(ApiError::unit_not_allowed(unit));
            }
            Some(vec![unit.clone()])
        }
        // Admins see every unit's tasks.
        None if session.admin => None,
        None => Some(session.units().iter().map(ToString::to_string).collect()),
    };
    let now = app.clock.now();
    let filter = TaskFilter {
        units,
        status: query.status,
        owner: query.owner,
        template: query.template,
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
        .filter(|r| session.admin || session.may_see(&UnitId::new(r.row.unit.clone())))
        .map(|r| summary_json(r, now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "tasks": tasks, "next_cursor": next_cursor })))
}

/// One task of `GET /api/v1/tasks`.
fn summary_json(stored: &StoredSummary, now: i64) -> Result<serde_json::Value, ApiError> {
    let row = &stored.row;
    let id: DocumentId = row.doc.parse().map_err(|e| {
        ApiError::internal(format!(
            "a stored summary names document `{}`: {e}",
            row.doc
        ))
    })?;
    Ok(json!({
        "id": row.doc,
        "url": id.url(),
        "template": row.template_id,
        "template_version": row.template_version,
        "unit": row.unit,
        "status": row.status,
        "owner": row.owner,
        "owner_role": row.owner_role,
        "acuity": row.acuity,
        "escalation_level": row.escalation_level,
        "next_due_at": row.next_due_at,
        "overdue": row.next_due_at.is_some_and(|at| at < now),
        "label": row.label,
        "created_at": stored.created_at,
        "updated_at": stored.updated_at,
    }))
}

/// `POST /api/v1/devices/{id}/revoke` (admin): refuse the device from now on and tell its open
/// connections to wipe.
pub(crate) async fn revoke_device(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Path(device): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !app.db.revoke_device(&device, now_ms()).await? {
        return Err(ApiError::not_found());
    }
    let closed = app.connections.kick_device(&device, true);
    app.auditor
        .admin_action(
            &admin,
            "device_revoked",
            format!("device {device}; {closed} connection(s) closed"),
        )
        .await;
    Ok(Json(
        json!({ "device": device, "revoked": true, "connections_closed": closed }),
    ))
}

/// `POST /api/v1/users/{id}/disable` (admin): refuse the user from now on, on every device, and
/// close their open connections.
pub(crate) async fn disable_user(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Path(user): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !app.db.set_user_disabled(&user, Some(now_ms())).await? {
        return Err(ApiError::not_found());
    }
    let closed = app.connections.kick_user(&user);
    // Their open tasks go to whoever covers, or raise that nobody does, at once.
    let rerouted = app.scheduler.reroute(&user).await?;
    // Off the rosters phones show.
    let mut units: Vec<_> = app
        .db
        .memberships(&user)
        .await?
        .into_iter()
        .map(|(u, _)| u)
        .collect();
    units.dedup();
    for unit in units {
        app.hub.refresh_roster(unit.as_str()).await?;
    }
    app.auditor
        .admin_action(
            &admin,
            "user_disabled",
            format!(
                "user {user}; {closed} connection(s) closed; {rerouted} open task(s) re-routed"
            ),
        )
        .await;
    Ok(Json(
        json!({ "user": user, "disabled": true, "connections_closed": closed, "tasks_rerouted": rerouted }),
    ))
}

/// `PUT /api/v1/users/{id}/memberships/{unit}/{role}` (admin): grant `role` on `unit`. Takes
/// effect at once, on the user's open connections too.
pub(crate) async fn grant_membership(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Path((user, unit, role)): Path<(String, String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if app.db.user(&user).await?.is_none()
        || !app.db.unit_exists(&unit).await?
        || !app.db.role_exists(&role).await?
    {
        return Err(ApiError::not_found());
    }
    app.db.add_membership(&user, &unit, &role).await?;
    let updated = follow_memberships(&app, &user).await?;
    app.hub.refresh_roster(&unit).await?;
    app.auditor
        .admin_action(
            &admin,
            "membership_granted",
            format!("user {user}: {role} on {unit}; {updated} connection(s) updated"),
        )
        .await;
    Ok(Json(json!({
        "user": user, "unit": unit, "role": role, "member": true,
        "connections_updated": updated,
    })))
}

/// `DELETE /api/v1/users/{id}/memberships/{unit}/{role}` (admin): take `role` on `unit` away.
/// Takes effect at once: a unit the user no longer holds any role on stops reaching their open
/// connections.
pub(crate) async fn revoke_membership(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Path((user, unit, role)): Path<(String, String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !app.db.remove_membership(&user, &unit, &role).await? {
        return Err(ApiError::not_found());
    }
    let updated = follow_memberships(&app, &user).await?;
    app.hub.refresh_roster(&unit).await?;
    app.auditor
        .admin_action(
            &admin,
            "membership_revoked",
            format!("user {user}: {role} on {unit}; {updated} connection(s) updated"),
        )
        .await;
    Ok(Json(json!({
        "user": user, "unit": unit, "role": role, "member": false,
        "connections_updated": updated,
    })))
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    limit: Option<i64>,
    kind: Option<String>,
    user: Option<String>,
    device: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    cursor: Option<String>,
}

/// Where a page ends (of audit records, of tasks), as the client holds it: opaque, but it is the
/// last item's time and id, hex-encoded.
pub(crate) fn encode_cursor(at: i64, id: &str) -> String {
    format!("{at}.{id}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    if cursor.len() > 512 || !cursor.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let (at, id) = text.split_once('.')?;
    Some((at.parse().ok()?, id.to_owned()))
}

/// Where the page a `cursor` asks for starts.
fn page_after(cursor: Option<&str>) -> Result<Option<(i64, String)>, ApiError> {
    cursor
        .map(|cursor| {
            decode_cursor(cursor).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_cursor",
                    "the cursor is not one this server gave out",
                )
            })
        })
        .transpose()
}

/// `GET /api/v1/audit/security` (admin): security audit records, newest first, filtered and
/// paged.
pub(crate) async fn security_audit(
    State(app): State<AppState>,
    Admin(_): Admin,
    Query(query): Query<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let after = page_after(query.cursor.as_deref())?;
    let filter = AuditFilter {
        kind: query.kind,
        user: query.user,
        device: query.device,
        since: query.since,
        until: query.until,
        after,
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1_000);
    let records = app.db.audit_records(&filter, limit).await?;
    let next_cursor = if records.len() as i64 == limit {
        records.last().map(|r| encode_cursor(r.at, &r.id))
    } else {
        None
    };
    Ok(Json(
        json!({ "records": records, "next_cursor": next_cursor }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushRegistration {
    platform: String,
    token: String,
}

/// `PUT /api/v1/devices/me/push`: the calling device's push token (`apns` or `fcm`). Revoking
/// the device removes it.
pub(crate) async fn register_push(
    State(app): State<AppState>,
    Caller(session): Caller,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let invalid = |field: &str, message: &str| {
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message);
        e.field = Some(field.to_owned());
        e
    };
    if body.len() > 8 * 1024 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "a push registration is at most 8 KiB",
        ));
    }
    let push: PushRegistration = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not a push registration: {e}"),
        )
    })?;
    if !matches!(push.platform.as_str(), "apns" | "fcm") {
        return Err(invalid("platform", "platform is `apns` or `fcm`"));
    }
    if push.token.is_empty()
        || push.token.len() > 4096
        || !push.token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(invalid(
            "token",
            "token is 1 to 4096 visible ASCII characters",
        ));
    }
    let registered = crate::notify::store::set_push(
        &app.db,
        session.device.as_str(),
        Some((&push.platform, &push.token)),
    )
    .await?;
    if !registered {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "device_revoked",
            "this device is revoked",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/devices/me/push`: stop pushing to the calling device.
pub(crate) async fn unregister_push(
    State(app): State<AppState>,
    Caller(session): Caller,
) -> Result<StatusCode, ApiError> {
    crate::notify::store::set_push(&app.db, session.device.as_str(), None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeadLetterQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /api/v1/notifications/dead` (admin): notifications given up after every try, newest
/// first, paged.
pub(crate) async fn dead_letters(
    State(app): State<AppState>,
    Admin(_): Admin,
    Query(query): Query<DeadLetterQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let after = page_after(query.cursor.as_deref())?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1_000);
    let dead = crate::notify::store::dead_letters(&app.db, after, limit).await?;
    let next_cursor = if dead.len() as i64 == limit {
        dead.last().map(|d| encode_cursor(d.dead_at, &d.id))
    } else {
        None
    };
    Ok(Json(
        json!({ "notifications": dead, "next_cursor": next_cursor }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let cursor = encode_cursor(1_767_596_400_000, "5b7e-…");
        assert_eq!(
            decode_cursor(&cursor),
            Some((1_767_596_400_000, "5b7e-…".to_owned()))
        );
        for junk in ["", "zz", "abc", "2e", &"00".repeat(300)] {
            assert_eq!(decode_cursor(junk), None, "{junk}");
        }
    }
}
