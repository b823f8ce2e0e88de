//! Administration: devices, users, memberships, dead letters.
//! Every change an admin makes is written to the security audit.

use super::page::{Cursor, Params, encode_cursor, page_after, page_limit};
use super::{Admin, ApiError, ErrorBody};
use crate::AppState;
use crate::auth::Session;
use crate::db::AdminScope;
use crate::notify::store::DeadLetter;
use crate::now_ms;
use crate::ws::follow_memberships;
use axum::Json;
use axum::extract::{Path, State};
use baton_core::ids::UnitId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// How far a unit's admin must reach to act on a user: some of the user's units, or all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    Some,
    All,
}

/// Refuse an action by `admin` on `user` unless `admin` administers the server, or (`reach`)
/// some or all of the units `user` holds roles on and `user` administers nothing beyond
/// `admin`. A user `admin` has no business with is answered as one that does not exist.
async fn managed_user(
    app: &AppState,
    admin: &Session,
    user: &str,
    reach: Reach,
) -> Result<(), ApiError> {
    if app.db.user(user).await?.is_none() {
        return Err(ApiError::not_found());
    }
    let Some(administered) = admin.admin.units() else {
        return Ok(());
    };
    let mut units: Vec<UnitId> = app
        .db
        .memberships(user)
        .await?
        .into_iter()
        .map(|(unit, _)| unit)
        .collect();
    units.dedup();
    if !units.iter().any(|u| administered.contains(u)) {
        return Err(ApiError::not_found());
    }
    if let Some(outside) = units.iter().find(|u| !administered.contains(u))
        && reach == Reach::All
    {
        return Err(ApiError::not_unit_admin(outside.as_str()));
    }
    // Nobody acts on an admin wider than themselves.
    match app.db.admin_scope(user).await? {
        AdminScope::Server => Err(ApiError::not_server_admin()),
        AdminScope::Units(theirs) => match theirs.iter().find(|u| !administered.contains(u)) {
            Some(outside) => Err(ApiError::not_unit_admin(outside.as_str())),
            None => Ok(()),
        },
        AdminScope::None => Ok(()),
    }
}

/// A device, revoked.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeviceRevoked {
    device: String,
    revoked: bool,
    /// Its sync connections, closed and told to wipe.
    connections_closed: usize,
}

/// A user, disabled.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserDisabled {
    user: String,
    disabled: bool,
    connections_closed: usize,
    /// Their open tasks, handed to whoever covers (or raised as nobody covering).
    tasks_rerouted: usize,
}

/// A membership, as it now stands.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Membership {
    user: String,
    unit: String,
    role: String,
    /// Whether the user now holds the role on the unit.
    member: bool,
    /// The user's open connections that follow the change at once.
    connections_updated: usize,
}

/// Refuse a device from now on and tell its open connections to wipe.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "the device")),
    responses(
        (status = 200, description = "the device, revoked", body = DeviceRevoked),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn revoke_device(
    State(app): State<AppState>,
    admin: Admin,
    Path(device): Path<String>,
) -> Result<Json<DeviceRevoked>, ApiError> {
    if device == admin.0.device.as_str() {
        return Err(ApiError::self_lockout(
            "an admin cannot revoke the device they call from",
        ));
    }
    // A unit's admin may revoke a device last used by someone of their units (a lost phone
    // on their ward); the server's admins, any.
    let record = app
        .db
        .device(&device)
        .await?
        .ok_or_else(ApiError::not_found)?;
    managed_user(&app, &admin.0, record.last_user.as_str(), Reach::Some).await?;
    if !app.db.revoke_device(&device, now_ms()).await? {
        return Err(ApiError::not_found());
    }
    let closed = app.connections.kick_device(&device, true);
    app.auditor
        .admin_action(
            &admin.0,
            "device_revoked",
            format!("device {device}; {closed} connection(s) closed"),
        )
        .await;
    Ok(Json(DeviceRevoked {
        device,
        revoked: true,
        connections_closed: closed,
    }))
}

/// Refuse a user from now on, on every device, close their open connections, and re-route
/// their open tasks at once.
#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "the user")),
    responses(
        (status = 200, description = "the user, disabled", body = UserDisabled),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn disable_user(
    State(app): State<AppState>,
    admin: Admin,
    Path(user): Path<String>,
) -> Result<Json<UserDisabled>, ApiError> {
    if user == admin.0.user.as_str() {
        return Err(ApiError::self_lockout("an admin cannot disable themselves"));
    }
    // Disabling reaches every unit the user works on: a unit's admin may do it only when those
    // are all theirs.
    managed_user(&app, &admin.0, &user, Reach::All).await?;
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
            &admin.0,
            "user_disabled",
            format!(
                "user {user}; {closed} connection(s) closed; {rerouted} open task(s) re-routed"
            ),
        )
        .await;
    Ok(Json(UserDisabled {
        user,
        disabled: true,
        connections_closed: closed,
        tasks_rerouted: rerouted,
    }))
}

/// Grant a user a role on a unit. Takes effect at once, on the user's open connections too.
#[utoipa::path(put, path = "/api/v1/users/{id}/memberships/{unit}/{role}", tag = "admin", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "the user"),
        ("unit" = String, Path, description = "the unit"),
        ("role" = String, Path, description = "the role"),
    ),
    responses(
        (status = 200, description = "the membership as it now stands", body = Membership),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn grant_membership(
    State(app): State<AppState>,
    admin: Admin,
    Path((user, unit, role)): Path<(String, String, String)>,
) -> Result<Json<Membership>, ApiError> {
    admin.of(&UnitId::new(unit.clone()))?;
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
            &admin.0,
            "membership_granted",
            format!("user {user}: {role} on {unit}; {updated} connection(s) updated"),
        )
        .await;
    Ok(Json(Membership {
        user,
        unit,
        role,
        member: true,
        connections_updated: updated,
    }))
}

/// Take a role on a unit from a user. Takes effect at once: a unit the user no longer holds any
/// role on stops reaching their open connections.
#[utoipa::path(delete, path = "/api/v1/users/{id}/memberships/{unit}/{role}", tag = "admin", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "the user"),
        ("unit" = String, Path, description = "the unit"),
        ("role" = String, Path, description = "the role"),
    ),
    responses(
        (status = 200, description = "the membership as it now stands", body = Membership),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn revoke_membership(
    State(app): State<AppState>,
    admin: Admin,
    Path((user, unit, role)): Path<(String, String, String)>,
) -> Result<Json<Membership>, ApiError> {
    admin.of(&UnitId::new(unit.clone()))?;
    if !app.db.remove_membership(&user, &unit, &role).await? {
        return Err(ApiError::not_found());
    }
    let updated = follow_memberships(&app, &user).await?;
    app.hub.refresh_roster(&unit).await?;
    app.auditor
        .admin_action(
            &admin.0,
            "membership_revoked",
            format!("user {user}: {role} on {unit}; {updated} connection(s) updated"),
        )
        .await;
    Ok(Json(Membership {
        user,
        unit,
        role,
        member: false,
        connections_updated: updated,
    }))
}

/// What `GET /api/v1/notifications/dead` may be asked.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeadLetterQuery {
    /// Dead letters per page.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
    /// The previous page's `next_cursor`.
    cursor: Option<Cursor>,
}

/// A page of dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterPage {
    notifications: Vec<DeadLetter>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// Notifications given up after every try (dead letters), newest first, paged.
#[utoipa::path(get, path = "/api/v1/notifications/dead", tag = "admin", security(("bearer" = [])),
    params(DeadLetterQuery),
    responses(
        (status = 200, description = "a page of dead letters", body = DeadLetterPage),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn dead_letters(
    State(app): State<AppState>,
    admin: Admin,
    Params(query): Params<DeadLetterQuery>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let after = page_after(query.cursor.as_ref());
    let limit = page_limit(query.limit, 100, 1_000)?;
    let units = admin.0.admin.units().map(<[UnitId]>::to_vec);
    let dead = crate::notify::store::dead_letters(&app.db, units.as_deref(), after, limit).await?;
    let next_cursor = if dead.len() as i64 == limit {
        dead.last().map(|d| encode_cursor(d.dead_at, &d.id))
    } else {
        None
    };
    Ok(Json(DeadLetterPage {
        notifications: dead,
        next_cursor,
    }))
}
