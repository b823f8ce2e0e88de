//! The directory over REST: units (with their time zones), roles, users, devices, and each
//! unit's rotations (coverage, which the unit's index document carries to phones). The server's
//! admins change units and roles; any admin creates users and pages what they administer; a
//! unit's admin edits that unit's coverage. Every change is written to the security audit.

use super::body::JsonBody;
use super::page::{Cursor, Params, encode_cursor, filter_text, page_after, page_limit};
use super::{Admin, ApiError, ErrorBody, ServerAdmin};
use crate::AppState;
use crate::directory::{self, Device, RoleEntry, Unit, User};
use crate::now_ms;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use baton_core::ids::{Role, SYSTEM_ROLE, UnitId, UserId};
use baton_core::index::CoveragePlan;
use baton_core::policy::coverage::Rotation;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use utoipa::{IntoParams, ToSchema};

/// Longest id of a unit, role or user.
const MAX_ID: usize = 64;
/// Longest display name.
const MAX_NAME: usize = 200;
/// Most people in one list of a rotation.
const MAX_ROTATION_PEOPLE: usize = 100;
/// Roles the server keeps for itself.
const RESERVED_ROLES: [&str; 2] = [SYSTEM_ROLE, "admin"];

/// The schema of a display name, as [`check_name`] reads it.
fn name_schema() -> utoipa::openapi::Object {
    crate::triggers::text_schema(MAX_NAME, false)
}

/// The schema of a time zone: one of the IANA names the server knows.
fn zone_schema() -> utoipa::openapi::Object {
    let mut zones: Vec<String> = jiff::tz::db()
        .available()
        .map(|name| name.to_string())
        .collect();
    zones.sort();
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(zones))
        .description(Some(
            "an IANA time zone the server knows, such as America/New_York",
        ))
        .build()
}

/// What a rotation's `anchor` may be: a local date and time to the minute or second, on any day
/// but the 29th of February (which most years lack), so that every anchor the pattern allows is
/// a date.
const ANCHOR_PATTERN: &str = r"^[0-9]{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?$";
/// What a rotation's `shift` may be: 1 to 48 hours, and minutes.
const SHIFT_PATTERN: &str = r"^(?:[1-9]|[1-3][0-9]|4[0-8])h(?:(?:[1-9]|[1-5][0-9])m)?$";
/// What an id may be.
const ID_PATTERN: &str = r"^[A-Za-z0-9._-]{1,64}$";

static ANCHOR: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(ANCHOR_PATTERN).ok());
static SHIFT: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(SHIFT_PATTERN).ok());
static ID: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(ID_PATTERN).ok());

/// Whether `value` matches `pattern` (a pattern above, which the schema states too; one that
/// did not compile matches nothing, and a test sees that they all do).
fn matches(pattern: &LazyLock<Option<Regex>>, value: &str) -> bool {
    pattern.as_ref().is_some_and(|p| p.is_match(value))
}

/// A unit named in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Describes the path; handlers read it as a string.
pub(crate) struct IdPath {
    /// The id: 1 to 64 letters, digits, `.`, `_` or `-`.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    id: String,
}

/// A role named in the path, not one of the server's own (`system`, `admin`).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Describes the path; handlers read it as a string.
pub(crate) struct RolePath {
    /// The role's id: 1 to 64 letters, digits, `.`, `_` or `-`, not `system` or `admin`.
    #[param(pattern = r"^(?!(system|admin)$)[A-Za-z0-9._-]{1,64}$")]
    id: String,
}

/// `value` as an id: 1 to 64 letters, digits, `.`, `_` or `-`.
fn check_id(field: &str, value: &str) -> Result<(), ApiError> {
    if matches(&ID, value) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            format!("`{field}` is 1 to {MAX_ID} letters, digits, `.`, `_` or `-`"),
        ))
    }
}

/// `value` as a display name: 1 to 200 characters on one line, not only spaces.
fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    crate::triggers::check_text(field, value, MAX_NAME, false)
}

/// `409 not_a_member` about `field`: `user` does not hold `role` on `unit`.
fn not_holding(field: String, user: &str, role: &str, unit: &str) -> ApiError {
    let user: String = user.chars().take(64).collect();
    ApiError::not_a_member(
        field,
        format!("`{user}` does not hold the role {role} on {unit}"),
    )
}

/// Refuse (`409 not_a_member` about `field`) unless `user` holds `role` on `unit` in the
/// records: work is handed only to people who may do it.
pub(crate) async fn require_holder(
    app: &AppState,
    field: &str,
    user: &str,
    unit: &UnitId,
    role: &Role,
) -> Result<(), ApiError> {
    let holds = app
        .db
        .memberships(user)
        .await?
        .iter()
        .any(|(u, r)| u == unit && r == role);
    if holds {
        Ok(())
    } else {
        Err(not_holding(
            field.to_owned(),
            user,
            role.as_str(),
            unit.as_str(),
        ))
    }
}

/// After `unit`'s coverage changed in the records: its index document follows (so phones and
/// routing see it), and the change goes on the security audit as `kind`.
async fn coverage_changed(
    app: &AppState,
    admin: &Admin,
    unit: &str,
    kind: &str,
    detail: String,
) -> Result<(), ApiError> {
    app.hub.refresh_roster(unit).await?;
    app.auditor.admin_action(&admin.0, kind, detail).await;
    Ok(())
}

/// A page of a list: `limit` (1 to 500, default 100) and the previous page's `cursor`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Entries per page.
    #[param(minimum = 1, maximum = 500, default = 100)]
    limit: Option<i64>,
    /// The previous page's `next_cursor`.
    cursor: Option<Cursor>,
}

impl PageQuery {
    fn read(&self) -> Result<(String, i64), ApiError> {
        let after = page_after(self.cursor.as_ref()).map_or(String::new(), |(_, id)| id);
        Ok((after, page_limit(self.limit, 100, 500)?))
    }
}

/// The next page's cursor, when this one is full.
fn next_cursor<T>(page: &[T], limit: i64, id: impl Fn(&T) -> &str) -> Option<String> {
    (page.len() as i64 == limit)
        .then(|| page.last())
        .flatten()
        .map(|last| encode_cursor(0, id(last)))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UnitPage {
    units: Vec<Unit>,
    next_cursor: Option<String>,
}

/// The units the caller administers (every unit, for the server's admins), in id order.
#[utoipa::path(get, path = "/api/v1/units", tag = "directory", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "a page of units", body = UnitPage),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn units(
    State(app): State<AppState>,
    admin: Admin,
    Params(query): Params<PageQuery>,
) -> Result<Json<UnitPage>, ApiError> {
    let (after, limit) = query.read()?;
    let units = directory::units(&app.db, admin.0.admin.units(), &after, limit).await?;
    let next_cursor = next_cursor(&units, limit, |u| &u.id);
    Ok(Json(UnitPage { units, next_cursor }))
}

/// A unit as an admin sets it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnitBody {
    /// Its name as people see it.
    #[schema(schema_with = name_schema)]
    name: String,
    /// Its IANA time zone (`America/New_York`).
    #[schema(schema_with = zone_schema)]
    time_zone: String,
}

/// A unit, saved, with its index document.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SavedUnit {
    #[serde(flatten)]
    unit: Unit,
    /// The `automerge:` URL of its index document, which phones sync.
    index_url: String,
}

/// Create or change a unit; its index document is created with it and carries its time zone.
#[utoipa::path(put, path = "/api/v1/units/{id}", tag = "directory", security(("bearer" = [])),
    params(IdPath),
    request_body = UnitBody,
    responses(
        (status = 200, description = "the unit", body = SavedUnit),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn put_unit(
    State(app): State<AppState>,
    ServerAdmin(session): ServerAdmin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UnitBody>,
) -> Result<Json<SavedUnit>, ApiError> {
    check_id("id", &id)?;
    check_name("name", &body.name)?;
    if jiff::tz::TimeZone::get(&body.time_zone).is_err() {
        return Err(ApiError::invalid_field(
            "time_zone",
            "`time_zone` is an IANA time zone, such as America/New_York",
        ));
    }
    app.db.upsert_unit(&id, &body.name, now_ms()).await?;
    app.db.set_unit_zone(&id, &body.time_zone).await?;
    let index = app.hub.ensure_unit_index(&id).await?;
    app.hub.refresh_roster(&id).await?;
    app.auditor
        .admin_action(
            &session,
            "unit_saved",
            format!("saved unit {id} ({}, {})", body.name, body.time_zone),
        )
        .await;
    Ok(Json(SavedUnit {
        unit: Unit {
            id,
            name: body.name,
            time_zone: body.time_zone,
        },
        index_url: index.url(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RolePage {
    roles: Vec<RoleEntry>,
    next_cursor: Option<String>,
}

/// Every role, in id order.
#[utoipa::path(get, path = "/api/v1/roles", tag = "directory", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "a page of roles", body = RolePage),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn roles(
    State(app): State<AppState>,
    _: Admin,
    Params(query): Params<PageQuery>,
) -> Result<Json<RolePage>, ApiError> {
    let (after, limit) = query.read()?;
    let roles = directory::roles(&app.db, &after, limit).await?;
    let next_cursor = next_cursor(&roles, limit, |r| &r.id);
    Ok(Json(RolePage { roles, next_cursor }))
}

/// A role as an admin sets it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleBody {
    /// Its name as people see it.
    #[schema(schema_with = name_schema)]
    name: String,
}

/// Create or rename a role. `system` and `admin` are the server's own.
#[utoipa::path(put, path = "/api/v1/roles/{id}", tag = "directory", security(("bearer" = [])),
    params(RolePath),
    request_body = RoleBody,
    responses(
        (status = 200, description = "the role", body = RoleEntry),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn put_role(
    State(app): State<AppState>,
    ServerAdmin(session): ServerAdmin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RoleBody>,
) -> Result<Json<RoleEntry>, ApiError> {
    check_id("id", &id)?;
    if RESERVED_ROLES.contains(&id.as_str()) {
        return Err(ApiError::invalid_field(
            "id",
            format!("`{id}` is a role the server keeps for itself"),
        ));
    }
    check_name("name", &body.name)?;
    app.db.upsert_role(&id, &body.name).await?;
    app.auditor
        .admin_action(
            &session,
            "role_saved",
            format!("saved role {id} ({})", body.name),
        )
        .await;
    Ok(Json(RoleEntry {
        id,
        name: body.name,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserPage {
    users: Vec<User>,
    next_cursor: Option<String>,
}

/// The users the caller administers (those holding a role on one of their units; everyone,
/// for the server's admins), in id order.
#[utoipa::path(get, path = "/api/v1/users", tag = "directory", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "a page of users", body = UserPage),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn users(
    State(app): State<AppState>,
    admin: Admin,
    Params(query): Params<PageQuery>,
) -> Result<Json<UserPage>, ApiError> {
    let (after, limit) = query.read()?;
    let users = directory::users(&app.db, admin.0.admin.units(), &after, limit).await?;
    let next_cursor = next_cursor(&users, limit, |u| &u.id);
    Ok(Json(UserPage { users, next_cursor }))
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    /// Their id: what tokens name as `sub`.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    id: String,
    /// Their name as people see it.
    #[schema(schema_with = name_schema)]
    display_name: String,
}

/// Record a new user. They hold no role until an admin grants one (`PUT
/// /api/v1/users/{id}/memberships/{unit}/{role}`).
#[utoipa::path(post, path = "/api/v1/users", tag = "directory", security(("bearer" = [])),
    request_body = NewUser,
    responses(
        (status = 201, description = "the user", body = User),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn create_user(
    State(app): State<AppState>,
    Admin(session): Admin,
    JsonBody(body): JsonBody<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    check_id("id", &body.id)?;
    check_name("display_name", &body.display_name)?;
    let now = now_ms();
    if !app
        .db
        .create_user(&body.id, &body.display_name, now)
        .await?
    {
        return Err(ApiError::already_exists(
            "id",
            format!("there is a user `{}` already", body.id),
        ));
    }
    app.auditor
        .admin_action(
            &session,
            "user_created",
            format!("created user {} ({})", body.id, body.display_name),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(User {
            id: body.id,
            display_name: body.display_name,
            created_at: now,
            disabled_at: None,
            memberships: Vec::new(),
        }),
    ))
}

/// What `GET /api/v1/devices` may be asked.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeviceQuery {
    /// Only devices this user last signed in on.
    #[param(max_length = 256)]
    user: Option<String>,
    /// Entries per page.
    #[param(minimum = 1, maximum = 500, default = 100)]
    limit: Option<i64>,
    /// The previous page's `next_cursor`.
    cursor: Option<Cursor>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DevicePage {
    devices: Vec<Device>,
    next_cursor: Option<String>,
}

/// The devices the caller administers (those whose last user holds a role on one of their
/// units; every device, for the server's admins), in id order.
#[utoipa::path(get, path = "/api/v1/devices", tag = "directory", security(("bearer" = [])),
    params(DeviceQuery),
    responses(
        (status = 200, description = "a page of devices", body = DevicePage),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn devices(
    State(app): State<AppState>,
    admin: Admin,
    Params(query): Params<DeviceQuery>,
) -> Result<Json<DevicePage>, ApiError> {
    let user = filter_text("user", query.user)?;
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    };
    let (after, limit) = page.read()?;
    let devices = directory::devices(
        &app.db,
        admin.0.admin.units(),
        user.as_deref(),
        &after,
        limit,
    )
    .await?;
    let next_cursor = next_cursor(&devices, limit, |d| &d.id);
    Ok(Json(DevicePage {
        devices,
        next_cursor,
    }))
}

/// A role's rotation on a unit: who covers each shift in turn.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotationBody {
    /// The local start of shift 0 (`2026-01-05T07:00`), in the unit's time zone: any day but
    /// the 29th of February.
    #[schema(
        pattern = r"^[0-9]{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?$"
    )]
    anchor: String,
    /// The length of a shift in local wall-clock time: 1 to 48 hours, and minutes (`12h`,
    /// `8h30m`).
    #[schema(pattern = r"^(?:[1-9]|[1-3][0-9]|4[0-8])h(?:(?:[1-9]|[1-5][0-9])m)?$")]
    shift: String,
    /// Who covers shifts 0, 1, 2, … in turn (cycling); each must hold the role on the unit
    /// (`409 not_a_member` otherwise).
    #[schema(min_items = 1, max_items = 100, inline, value_type = Vec<IdText>)]
    primary: Vec<String>,
    /// Their backups, shift by shift; may be empty.
    #[serde(default)]
    #[schema(max_items = 100, inline, value_type = Vec<IdText>)]
    secondary: Vec<String>,
}

/// An id, as the schema describes it.
#[derive(ToSchema)]
#[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
#[allow(dead_code)] // Describes ids in bodies.
pub(crate) struct IdText(String);

/// A rotation, saved.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SavedRotation {
    unit: String,
    role: String,
    #[serde(flatten)]
    rotation: RotationBody,
}

/// Set who covers `role` on `unit`, shift by shift. The unit's index document follows at once,
/// so phones learn the new coverage when they next sync, and routing uses it from now on.
#[utoipa::path(put, path = "/api/v1/units/{unit}/rotations/{role}", tag = "directory", security(("bearer" = [])),
    params(("unit" = String, Path, description = "the unit"), ("role" = String, Path, description = "the role")),
    request_body = RotationBody,
    responses(
        (status = 200, description = "the rotation", body = SavedRotation),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn put_rotation(
    State(app): State<AppState>,
    admin: Admin,
    Path((unit, role)): Path<(String, String)>,
    JsonBody(body): JsonBody<RotationBody>,
) -> Result<Json<SavedRotation>, ApiError> {
    let unit_id = UnitId::new(unit.clone());
    admin.of(&unit_id)?;
    if !app.db.unit_exists(&unit).await? {
        return Err(ApiError::unknown(
            "unit",
            format!("there is no unit `{unit}`"),
        ));
    }
    if !app.db.role_exists(&role).await? {
        return Err(ApiError::unknown(
            "role",
            format!("there is no role `{role}`"),
        ));
    }
    let anchor = matches(&ANCHOR, &body.anchor)
        .then(|| body.anchor.parse().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::invalid_field(
                "anchor",
                "`anchor` is a local date and time such as 2026-01-05T07:00, not on 29 February",
            )
        })?;
    let shift = matches(&SHIFT, &body.shift)
        .then(|| body.shift.parse().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::invalid_field(
                "shift",
                "`shift` is 1 to 48 hours and minutes, such as 12h or 8h30m",
            )
        })?;
    // Each person must hold the role on the unit, so the rotation hands work only to people
    // who may do it.
    let roster = app.db.unit_roster(&unit).await?;
    for (field, people) in [("primary", &body.primary), ("secondary", &body.secondary)] {
        if people.len() > MAX_ROTATION_PEOPLE || (field == "primary" && people.is_empty()) {
            return Err(ApiError::invalid_field(
                field,
                format!("`{field}` lists 1 to {MAX_ROTATION_PEOPLE} people"),
            ));
        }
        for (i, person) in people.iter().enumerate() {
            let holds = roster
                .iter()
                .any(|(user, _, r)| user.as_str() == person && r.as_str() == role);
            if !holds {
                return Err(not_holding(format!("{field}[{i}]"), person, &role, &unit));
            }
        }
    }
    let rotation = Rotation {
        unit: unit_id,
        role: Role::new(role.clone()),
        anchor,
        shift,
        primary: body
            .primary
            .iter()
            .map(|u| UserId::new(u.clone()))
            .collect(),
        secondary: body
            .secondary
            .iter()
            .map(|u| UserId::new(u.clone()))
            .collect(),
    };
    // The plan with it must still give a schedule (a shift that is too short, say).
    let mut plan: CoveragePlan = app.db.coverage(&unit).await?;
    plan.rotations
        .insert(rotation.role.clone(), rotation.clone());
    plan.schedule().map_err(|e| {
        ApiError::invalid_field("shift", format!("the rotation cannot be used: {e}"))
    })?;
    app.db.put_rotation(&rotation).await?;
    coverage_changed(
        &app,
        &admin,
        &unit,
        "rotation_saved",
        format!(
            "set the rotation of {role} on {unit}: {} from {}, every {}",
            body.primary.join(", "),
            body.anchor,
            body.shift
        ),
    )
    .await?;
    Ok(Json(SavedRotation {
        unit,
        role,
        rotation: body,
    }))
}

/// A rotation taken off a unit.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RemovedRotation {
    unit: String,
    role: String,
}

/// Take `role`'s rotation off `unit`: nobody covers the role there by rotation any more.
#[utoipa::path(delete, path = "/api/v1/units/{unit}/rotations/{role}", tag = "directory", security(("bearer" = [])),
    params(("unit" = String, Path, description = "the unit"), ("role" = String, Path, description = "the role")),
    responses(
        (status = 200, description = "the rotation is gone", body = RemovedRotation),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn delete_rotation(
    State(app): State<AppState>,
    admin: Admin,
    Path((unit, role)): Path<(String, String)>,
) -> Result<Json<RemovedRotation>, ApiError> {
    admin.of(&UnitId::new(unit.clone()))?;
    if !app.db.delete_rotation(&unit, &role).await? {
        return Err(ApiError::not_found());
    }
    coverage_changed(
        &app,
        &admin,
        &unit,
        "rotation_removed",
        format!("took the rotation of {role} off {unit}"),
    )
    .await?;
    Ok(Json(RemovedRotation { unit, role }))
}

/// Longest override, in minutes (31 days), so a mistyped length does not take someone's
/// rotation away for years.
const MAX_OVERRIDE_MINUTES: i64 = 31 * 24 * 60;
/// The latest start an override may have (the end of year 9999, Unix ms).
const MAX_START: i64 = 253_402_300_799_999;

/// Someone in instead of the rotation for a period.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewOverride {
    /// The role they cover; they must hold it on the unit (`409 not_a_member` otherwise).
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    role: String,
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    user: String,
    /// From when (Unix ms, workflow time).
    #[schema(minimum = 0, maximum = 253_402_300_799_999_i64)]
    #[serde(deserialize_with = "super::body::whole_number")]
    from: i64,
    /// For how long, in minutes: 1 to 44,640 (31 days).
    #[schema(minimum = 1, maximum = 44_640)]
    #[serde(deserialize_with = "super::body::whole_number")]
    minutes: i64,
    /// Whether they are the backup (secondary owner) for the period rather than the one who
    /// covers.
    #[serde(default)]
    secondary: bool,
}

/// An override, as stored.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OverrideEntry {
    id: String,
    unit: String,
    role: String,
    user: String,
    from: i64,
    until: i64,
    secondary: bool,
}

impl OverrideEntry {
    fn of(id: String, o: baton_core::policy::coverage::Override) -> Self {
        OverrideEntry {
            id,
            unit: o.unit.to_string(),
            role: o.role.to_string(),
            user: o.user.to_string(),
            from: o.from,
            until: o.until,
            secondary: o.secondary,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OverridePage {
    overrides: Vec<OverrideEntry>,
    next_cursor: Option<String>,
}

/// What `GET /api/v1/units/{unit}/overrides` may be asked.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct OverrideQuery {
    /// Overrides per page.
    #[param(minimum = 1, maximum = 500, default = 100)]
    limit: Option<i64>,
    /// The previous page's `next_cursor`.
    cursor: Option<Cursor>,
}

/// The unit's overrides that have not ended (on the workflow clock), earliest first.
#[utoipa::path(get, path = "/api/v1/units/{unit}/overrides", tag = "directory", security(("bearer" = [])),
    params(("unit" = String, Path, description = "the unit"), OverrideQuery),
    responses(
        (status = 200, description = "a page of overrides", body = OverridePage),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn overrides(
    State(app): State<AppState>,
    admin: Admin,
    Path(unit): Path<String>,
    Params(query): Params<OverrideQuery>,
) -> Result<Json<OverridePage>, ApiError> {
    admin.of(&UnitId::new(unit.clone()))?;
    let limit = page_limit(query.limit, 100, 500)?;
    // Paged by (start, id): the cursor holds the last start and id.
    let after = page_after(query.cursor.as_ref());
    let now = app.clock.now();
    let all = app
        .db
        .overrides(&unit, now, crate::db::MAX_OVERRIDES)
        .await?;
    let overrides: Vec<OverrideEntry> = all
        .into_iter()
        .filter(|(id, o)| {
            after
                .as_ref()
                .is_none_or(|(at, last)| (o.from, id.as_str()) > (*at, last.as_str()))
        })
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|(id, o)| OverrideEntry::of(id, o))
        .collect();
    let next_cursor = (overrides.len() as i64 == limit)
        .then(|| overrides.last())
        .flatten()
        .map(|o| encode_cursor(o.from, &o.id));
    Ok(Json(OverridePage {
        overrides,
        next_cursor,
    }))
}

/// Put someone in instead of the rotation for a period. The unit's index document follows at
/// once, and routing and escalation use it from then on.
#[utoipa::path(post, path = "/api/v1/units/{unit}/overrides", tag = "directory", security(("bearer" = [])),
    params(("unit" = String, Path, description = "the unit")),
    request_body = NewOverride,
    responses(
        (status = 201, description = "the override", body = OverrideEntry),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn add_override(
    State(app): State<AppState>,
    admin: Admin,
    Path(unit): Path<String>,
    JsonBody(body): JsonBody<NewOverride>,
) -> Result<(StatusCode, Json<OverrideEntry>), ApiError> {
    let unit_id = UnitId::new(unit.clone());
    admin.of(&unit_id)?;
    if !app.db.unit_exists(&unit).await? {
        return Err(ApiError::unknown(
            "unit",
            format!("there is no unit `{unit}`"),
        ));
    }
    check_id("role", &body.role)?;
    check_id("user", &body.user)?;
    if !(0..=MAX_START).contains(&body.from) {
        return Err(ApiError::invalid_field(
            "from",
            "`from` is a time in Unix milliseconds",
        ));
    }
    if !(1..=MAX_OVERRIDE_MINUTES).contains(&body.minutes) {
        return Err(ApiError::invalid_field(
            "minutes",
            format!("`minutes` is 1 to {MAX_OVERRIDE_MINUTES} (31 days)"),
        ));
    }
    if !app.db.role_exists(&body.role).await? {
        return Err(ApiError::unknown(
            "role",
            format!("there is no role `{}`", body.role),
        ));
    }
    let role = Role::new(body.role);
    require_holder(&app, "user", &body.user, &unit_id, &role).await?;
    let cover = baton_core::policy::coverage::Override {
        unit: unit_id,
        role,
        user: UserId::new(body.user),
        from: body.from,
        until: body.from + body.minutes * 60_000,
        secondary: body.secondary,
    };
    let id = uuid::Uuid::new_v4().to_string();
    if !app
        .db
        .add_override(&id, &cover, admin.0.user.as_str(), now_ms())
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_overrides",
            format!(
                "{unit} holds {} overrides; delete past ones first",
                crate::db::MAX_OVERRIDES
            ),
        ));
    }
    coverage_changed(
        &app,
        &admin,
        &unit,
        "override_added",
        format!(
            "{} covers {} on {unit} from {} until {}{}",
            cover.user,
            cover.role,
            cover.from,
            cover.until,
            if cover.secondary { " (as backup)" } else { "" }
        ),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(OverrideEntry::of(id, cover))))
}

/// An override taken off.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RemovedOverride {
    unit: String,
    id: String,
}

/// Take an override off: the rotation covers that period again.
#[utoipa::path(delete, path = "/api/v1/units/{unit}/overrides/{id}", tag = "directory", security(("bearer" = [])),
    params(("unit" = String, Path, description = "the unit"), ("id" = String, Path, description = "the override")),
    responses(
        (status = 200, description = "the override is gone", body = RemovedOverride),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn delete_override(
    State(app): State<AppState>,
    admin: Admin,
    Path((unit, id)): Path<(String, String)>,
) -> Result<Json<RemovedOverride>, ApiError> {
    admin.of(&UnitId::new(unit.clone()))?;
    if !app.db.delete_override(&unit, &id).await? {
        return Err(ApiError::not_found());
    }
    coverage_changed(
        &app,
        &admin,
        &unit,
        "override_removed",
        format!("took override {id} off {unit}"),
    )
    .await?;
    Ok(Json(RemovedOverride { unit, id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patterns_compile_and_say_what_the_schema_says() {
        for pattern in [&ANCHOR, &SHIFT, &ID] {
            assert!(pattern.is_some());
        }
        for anchor in [
            "2026-01-05T07:00",
            "2026-12-31T23:59:59",
            "2028-03-29T00:00",
        ] {
            assert!(matches(&ANCHOR, anchor), "{anchor}");
            assert!(anchor.parse::<jiff::civil::DateTime>().is_ok(), "{anchor}");
        }
        for anchor in [
            "2026-02-29T07:00",
            "2026-04-31T07:00",
            "2026-01-05 07:00",
            "2026-01-05T24:00",
        ] {
            assert!(!matches(&ANCHOR, anchor), "{anchor}");
        }
        for shift in ["1h", "12h", "8h30m", "48h", "47h59m"] {
            assert!(matches(&SHIFT, shift), "{shift}");
            assert!(shift.parse::<baton_core::time::Span>().is_ok(), "{shift}");
        }
        for shift in ["0h", "49h", "12h0m", "12h60m", "30m", "12"] {
            assert!(!matches(&SHIFT, shift), "{shift}");
        }
    }
}
