//! Cursor pagination: every list answers a page and the cursor of the next.

use super::ApiError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// A query string read into `T`, refused as `422 invalid_parameter` (JSON, like every error)
/// when it cannot be: an unknown parameter, a repeated one, a value of the wrong type.
#[derive(Debug)]
pub(crate) struct Params<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let query: Result<Query<T>, QueryRejection> = Query::from_request_parts(parts, state).await;
        match query {
            Ok(Query(t)) => Ok(Params(t)),
            Err(e) => Err(ApiError::invalid_parameter(
                "query",
                format!("the query cannot be read: {}", e.body_text()),
            )),
        }
    }
}

/// The longest value of a filter by name (a unit, a user, a device…), in characters.
pub(crate) const MAX_FILTER_LEN: usize = 256;

/// A filter by name as given: empty is taken as not given; longer than [`MAX_FILTER_LEN`] is
/// refused as `422 invalid_parameter` naming `param`.
pub(crate) fn filter_text(
    param: &'static str,
    value: Option<String>,
) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.chars().count() > MAX_FILTER_LEN => Err(ApiError::invalid_parameter(
            param,
            format!("`{param}` is longer than {MAX_FILTER_LEN} characters"),
        )),
        Some(v) if v.is_empty() => Ok(None),
        value => Ok(value),
    }
}

/// The page size asked for (`limit`), `default` when not given, refused outside 1 to `max`.
pub(crate) fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid_parameter(
            "limit",
            format!("`limit` is a whole number from 1 to {max}"),
        )),
    }
}

/// Where a page ends, as the client holds it: the last item's time and id, `<ms>.<id>`.
/// Pass it back as given. Any cursor of this shape names a position in the list (keyset
/// pagination), so a well-formed one is never refused; a malformed one is.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct Cursor(String);

impl utoipa::PartialSchema for Cursor {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^-?[0-9]{1,18}\.[!-~]{1,200}$"))
            .max_length(Some(219))
            .description(Some("a `next_cursor` this server gave out"))
            .into()
    }
}

impl ToSchema for Cursor {}

impl Cursor {
    /// The cursor of the item at `at` with `id`.
    pub(crate) fn of(at: i64, id: &str) -> String {
        format!("{at}.{id}")
    }

    /// The position a cursor names.
    pub(crate) fn position(&self) -> (i64, String) {
        decode_cursor(&self.0).expect("a Cursor is only made from a cursor that decodes")
    }
}

impl TryFrom<String> for Cursor {
    type Error = &'static str;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        match decode_cursor(&s) {
            Some(_) => Ok(Cursor(s)),
            None => Err("`cursor` is not a cursor this server gives out"),
        }
    }
}

/// Where a page ends (of audit records, of tasks), as [`Cursor`] holds it.
pub(crate) fn encode_cursor(at: i64, id: &str) -> String {
    Cursor::of(at, id)
}

/// The position `<ms>.<id>` names: at most 18 digits (an optional `-`), then 1 to 200 visible
/// ASCII characters.
pub(crate) fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let (at, id) = cursor.split_once('.')?;
    let digits = at.strip_prefix('-').unwrap_or(at);
    let well_formed = (1..=18).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (1..=200).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_graphic());
    well_formed.then(|| Some((at.parse().ok()?, id.to_owned())))?
}

/// Where the page a `cursor` asks for starts.
pub(crate) fn page_after(cursor: Option<&Cursor>) -> Option<(i64, String)> {
    cursor.map(Cursor::position)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let cursor = encode_cursor(1_767_596_400_000, "4Ntj5NmqJ9xWsjwf5JqFZZHuA7ig");
        assert_eq!(
            decode_cursor(&cursor),
            Some((1_767_596_400_000, "4Ntj5NmqJ9xWsjwf5JqFZZHuA7ig".to_owned()))
        );
        assert_eq!(decode_cursor("-5.a.b"), Some((-5, "a.b".to_owned())));
        let long = format!("1.{}", "x".repeat(201));
        for junk in [
            "",
            "zz",
            "abc",
            ".x",
            "1.",
            "1 .x",
            "1.a b",
            "1.é",
            &long,
            "1234567890123456789.x",
        ] {
            assert_eq!(decode_cursor(junk), None, "{junk}");
        }
    }
}
