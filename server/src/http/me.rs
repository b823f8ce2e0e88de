//! What a device asks first: who it is signed in as, its units, and the templates it runs.

use super::{ApiError, Caller, ErrorBody};
use crate::AppState;
use crate::db::AdminScope;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

/// A unit the caller holds a role on.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MeUnit {
    id: String,
    name: String,
    /// The roles the caller holds on it.
    roles: Vec<String>,
    /// The unit's index document (`automerge:` URL): its open tasks and roster.
    index_url: String,
}

/// The caller, as the server's records have them.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Me {
    user: String,
    display_name: String,
    device: String,
    /// Whether the caller administers anything (this token claims it, and the records agree).
    admin: bool,
    /// Whether the caller administers the server: every unit, and what belongs to none.
    server_admin: bool,
    /// The units the caller administers (every unit, for the server's admins).
    admin_units: Vec<String>,
    units: Vec<MeUnit>,
    /// Where to sync (WebSocket, automerge-repo protocol).
    sync_path: &'static str,
    /// The server's (workflow) clock, ms since 1970: devices stamp their events in it.
    server_time: i64,
}

/// The caller, their units and each unit's index document URL: how a device bootstraps.
#[utoipa::path(get, path = "/api/v1/me", tag = "devices", security(("bearer" = [])), responses(
    (status = 200, description = "the caller", body = Me),
    (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn me(
    State(app): State<AppState>,
    Caller(session): Caller,
) -> Result<Json<Me>, ApiError> {
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
    Ok(Json(Me {
        user: session.user.to_string(),
        display_name: session.display_name,
        device: session.device.to_string(),
        admin: session.admin.is_admin(),
        server_admin: session.admin == AdminScope::Server,
        admin_units: match session.admin.units() {
            Some(units) => units.iter().map(ToString::to_string).collect(),
            None => names.iter().map(|(id, _)| id.to_string()).collect(),
        },
        units,
        sync_path: "/sync",
        server_time: app.clock.now(),
    }))
}

/// Every template version the server knows.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Templates {
    /// Each template as `core/templates/*.toml` describes it, in JSON.
    #[schema(value_type = Vec<Object>)]
    templates: Vec<serde_json::Value>,
}

/// Every template version the server knows, so a device can run the same rules and validation
/// before it writes.
#[utoipa::path(get, path = "/api/v1/templates", tag = "devices", security(("bearer" = [])), responses(
    (status = 200, description = "the templates", body = Templates),
    (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn templates(
    State(app): State<AppState>,
    Caller(_): Caller,
) -> Result<Json<Templates>, ApiError> {
    let templates = app
        .hub
        .templates()
        .iter()
        .map(|t| serde_json::to_value(t.as_ref()))
        .collect::<Result<_, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(Templates { templates }))
}
