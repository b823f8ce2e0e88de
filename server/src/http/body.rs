//! Request bodies: JSON read into a type, bounded in size, refused as `422 invalid_field` naming
//! the field when it cannot be.

use super::ApiError;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The largest body an endpoint taking [`JsonBody`] reads.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// A JSON body read into `T` (whose unknown fields are refused by `T` itself).
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim() == "application/json")
            });
        if !json {
            return Err(ApiError::invalid_field(
                "body",
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY)
            .await
            .map_err(|_| {
                ApiError::invalid_field("body", format!("the body is larger than {MAX_BODY} bytes"))
            })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            let message = e.to_string();
            // serde names the field in backticks: "missing field `name`", "unknown field `x`".
            let field = message
                .split('`')
                .nth(1)
                .filter(|_| message.contains("field"))
                .unwrap_or("body")
                .chars()
                .take(64)
                .collect::<String>();
            ApiError::invalid_field(field, format!("the body cannot be read: {message}"))
        })
    }
}

/// A whole number as JSON Schema counts one: `5096` or `5096.0` (serde alone refuses the
/// second, which a client is free to send for an `integer`).
pub(crate) fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(d)?;
    if let Some(n) = number.as_i64() {
        return Ok(n);
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= -(2f64.powi(53)) && f <= 2f64.powi(53) => Ok(f as i64),
        _ => Err(serde::de::Error::custom(format!(
            "{number} is not a whole number in range"
        ))),
    }
}
