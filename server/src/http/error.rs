//! How a refused or failed request answers: a small JSON body with a stable `error` code and a
//! message safe to show. Internal detail goes to the log only.

use crate::auth::AuthError;
use crate::hub::HubError;
use crate::ws::LimitError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// A stable code, such as `not_found`, `invalid_field` or `unit_not_allowed`.
    pub error: &'static str,
    /// What went wrong, safe to show.
    pub message: String,
    /// The body field or query parameter the error is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `true` when the device must erase what it holds (it was revoked).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub wipe: bool,
}

/// An error as an HTTP client sees it.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
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

    /// `404 not_found` about `field`: the body names something (a template, a unit) that does
    /// not exist.
    pub(crate) fn unknown(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
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

    /// `403 not_unit_admin`: the caller administers other units, not this one.
    pub(crate) fn not_unit_admin(unit: &str) -> Self {
        ApiError {
            field: Some("unit".to_owned()),
            ..ApiError::new(
                StatusCode::FORBIDDEN,
                "not_unit_admin",
                format!("you do not administer unit `{unit}`"),
            )
        }
    }

    /// `403 not_server_admin`: only the server's admins (not a unit's) may do this.
    pub(crate) fn not_server_admin() -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "not_server_admin",
            "only an administrator of the server may do this",
        )
    }

    /// `409 already_exists` about `field`: the body names something new that exists already.
    pub(crate) fn already_exists(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.to_owned()),
            ..ApiError::new(StatusCode::CONFLICT, "already_exists", message)
        }
    }

    /// `409 not_a_member` about `field`: it names someone who does not hold the role there.
    pub(crate) fn not_a_member(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::CONFLICT, "not_a_member", message)
        }
    }

    /// `409 self_lockout`: an admin asked to shut themselves out.
    pub(crate) fn self_lockout(message: &str) -> Self {
        ApiError::new(StatusCode::CONFLICT, "self_lockout", message)
    }

    /// The same error, about `field`.
    pub(crate) fn with_field(self, field: String) -> Self {
        ApiError {
            field: Some(field),
            ..self
        }
    }

    /// What went wrong, safe to show.
    pub(crate) fn message(&self) -> &str {
        &self.message
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

    pub(crate) fn not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: self.message,
            field: self.field,
            wipe: self.wipe,
        };
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
