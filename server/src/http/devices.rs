//! The calling device's own settings: its push registration.

use super::{ApiError, Caller, ErrorBody};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

/// A device's push registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushRegistration {
    /// `apns` or `fcm`.
    #[schema(pattern = "^(apns|fcm)$")]
    platform: String,
    /// The token the platform gave the app.
    #[schema(min_length = 1, max_length = 4096, pattern = "^[!-~]+$")]
    token: String,
}

/// Register the calling device's push token (`apns` or `fcm`); notices naming its user are
/// pushed to it. Revoking the device removes it.
#[utoipa::path(put, path = "/api/v1/devices/me/push", tag = "devices", security(("bearer" = [])),
    request_body = PushRegistration,
    responses(
        (status = 204, description = "registered"),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn register_push(
    State(app): State<AppState>,
    Caller(session): Caller,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
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
        return Err(ApiError::invalid_field(
            "platform",
            "platform is `apns` or `fcm`",
        ));
    }
    if push.token.is_empty()
        || push.token.len() > 4096
        || !push.token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::invalid_field(
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

/// Stop pushing to the calling device.
#[utoipa::path(delete, path = "/api/v1/devices/me/push", tag = "devices", security(("bearer" = [])),
    responses(
        (status = 204, description = "no longer registered"),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn unregister_push(
    State(app): State<AppState>,
    Caller(session): Caller,
) -> Result<StatusCode, ApiError> {
    crate::notify::store::set_push(&app.db, session.device.as_str(), None).await?;
    Ok(StatusCode::NO_CONTENT)
}
