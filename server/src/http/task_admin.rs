//! An administrator's actions on a task: reassign it, cancel it. Each is written into the
//! task's history as an event by the administrator (actor role `admin`), under the same rules
//! as everyone's, and on the security audit.

use super::body::JsonBody;
use super::{Admin, ApiError, ErrorBody};
use crate::AppState;
use crate::hub::HubError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use baton_core::ids::{ADMIN_ROLE, Role, UserId};
use baton_core::sync::DocumentId;
use baton_core::{Author, EventBody};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest reason, in characters.
const MAX_REASON: usize = 1_000;

/// Who takes the task over, and why.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reassign {
    /// The new owner; they must hold the role on the task's unit.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    user: String,
    /// The role they own it in (the template's owner role when left out).
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    role: Option<String>,
    /// Why, for the task's history.
    #[schema(schema_with = reason_schema)]
    reason: Option<String>,
}

/// Why the task is cancelled.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cancel {
    /// Why, for the task's history.
    #[schema(schema_with = reason_schema)]
    reason: String,
}

fn reason_schema() -> utoipa::openapi::Object {
    crate::triggers::text_schema(MAX_REASON, true)
}

/// The event an administrator's action wrote.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Acted {
    task_id: String,
    event_id: String,
    /// The event's kind: `assigned`, `reassigned` or `cancelled`.
    kind: String,
}

/// The task `id` names, if it exists and `admin` administers its unit (a task of another unit
/// is answered as one that does not exist).
async fn administered_task(
    app: &AppState,
    admin: &Admin,
    id: &str,
) -> Result<(DocumentId, crate::db::DocRecord), ApiError> {
    let id: DocumentId = id
        .strip_prefix("automerge:")
        .unwrap_or(id)
        .parse()
        .map_err(|_| ApiError::not_found())?;
    let record = app
        .db
        .document(&id.to_string())
        .await?
        .filter(|r| r.kind == crate::db::DocKind::Task && admin.0.admin.administers(&r.unit))
        .ok_or_else(ApiError::not_found)?;
    Ok((id, record))
}

/// Write `body` on the task as `admin`; a refusal by the task's rules is `409 refused`.
async fn act(
    app: &AppState,
    admin: &Admin,
    id: DocumentId,
    body: EventBody,
) -> Result<Json<Acted>, ApiError> {
    let session = &admin.0;
    let author = Author::new(session.user.clone(), ADMIN_ROLE, session.device.clone());
    let event = app
        .hub
        .append_as(id, author, body)
        .await
        .map_err(|e| match e {
            HubError::Refused(why) => ApiError::new(StatusCode::CONFLICT, "refused", why),
            other => other.into(),
        })?;
    let kind = event.kind().to_string();
    app.auditor
        .admin_action(
            session,
            &format!("task_{kind}"),
            format!("{kind} task {id} (event {})", event.id),
        )
        .await;
    Ok(Json(Acted {
        task_id: id.to_string(),
        event_id: event.id.to_string(),
        kind,
    }))
}

/// Give a task to someone: assigned when nobody owns it, reassigned otherwise. The new owner
/// must hold the role on the task's unit.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/reassign", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "the task's document id")),
    request_body = Reassign,
    responses(
        (status = 200, description = "the event written", body = Acted),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn reassign(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Reassign>,
) -> Result<Json<Acted>, ApiError> {
    let (id, record) = administered_task(&app, &admin, &id).await?;
    let view = app.hub.load(&id).await?.ok_or_else(ApiError::not_found)?;
    let task = baton_core::TaskDoc::from_automerge(view).map_err(ApiError::internal)?;
    let template = app
        .hub
        .templates()
        .get(&task.meta().template)
        .cloned()
        .ok_or_else(|| ApiError::internal(format!("template of {id} unknown")))?;
    let state = task.state(&template).map_err(ApiError::internal)?;
    let role = Role::new(body.role.unwrap_or_else(|| template.owner_role.to_string()));
    super::directory::require_holder(&app, "user", &body.user, &record.unit, &role).await?;
    if let Some(reason) = &body.reason {
        crate::triggers::check_text("reason", reason, MAX_REASON, true)?;
    }
    let user = UserId::new(body.user);
    let event = match state.owner {
        None => EventBody::Assigned { user, role },
        Some(_) => EventBody::Reassigned {
            user,
            role,
            reason: body.reason,
        },
    };
    act(&app, &admin, id, event).await
}

/// Cancel a task, saying why.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "the task's document id")),
    request_body = Cancel,
    responses(
        (status = 200, description = "the event written", body = Acted),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn cancel(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Cancel>,
) -> Result<Json<Acted>, ApiError> {
    let (id, _) = administered_task(&app, &admin, &id).await?;
    crate::triggers::check_text("reason", &body.reason, MAX_REASON, true)?;
    act(
        &app,
        &admin,
        id,
        EventBody::Cancelled {
            reason: body.reason,
        },
    )
    .await
}
