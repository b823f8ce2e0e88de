//! The live unit board: a page for a ward workstation, its assets built into the binary
//! (`server/board/assets/`, the charting library among them, see `server/board/README.md`), and
//! the stream of task changes it follows (`GET /api/v1/board/events`).
//!
//! The page signs in with the same tokens as everything else, taken from the URL fragment
//! (`/board#token=…`, which browsers never send) or a sign-in form, and reads the REST API with
//! it. It learns of changes from a server-sent event stream read with `fetch` (so the token
//! travels in the `Authorization` header, never in a URL).

use crate::AppState;
use crate::http::page::{Params, filter_text};
use crate::http::{ApiError, Caller};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use baton_core::ids::UnitId;
use futures_util::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Board streams open at once across the server; one more is answered `503`.
pub const MAX_STREAMS: usize = 512;
/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

const INDEX: &str = include_str!("../../board/assets/index.html");
const APP_JS: &str = include_str!("../../board/assets/app.js");
const APP_CSS: &str = include_str!("../../board/assets/app.css");
const CHART_JS: &str = include_str!("../../board/assets/chart.umd.min.js");

/// The page's own rules: its scripts and styles come from the server alone, it may call the
/// server alone, and no other site may frame it.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; form-action 'none'; base-uri 'none'; \
    frame-ancestors 'none'";

/// The board's routes: the page and its assets (outside the REST API and its document).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/board",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/board/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/board/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/board/chart.js",
            get(|| async { asset(CHART_JS, "text/javascript; charset=utf-8") }),
        )
        .route("/api/v1/board/events", get(events))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// What `GET /api/v1/board/events` is asked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    unit: String,
}

/// The changes of a unit's tasks as they are stored, as server-sent events: `task` with
/// `{"task_id": …}` for each, `resync` when the stream fell behind (read everything again).
/// Ends when the token expires or the server shuts down.
async fn events(
    State(app): State<AppState>,
    Caller(session): Caller,
    Params(query): Params<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let unit = filter_text("unit", Some(query.unit))?
        .ok_or_else(|| ApiError::invalid_parameter("unit", "`unit` names the unit to follow"))?;
    if !session.may_read(&UnitId::new(unit.clone())) {
        return Err(ApiError::unit_not_allowed(&unit));
    }
    let permit = app.board_streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many live boards are open; try again shortly",
        )
    })?;
    let left = session
        .expires_at
        .saturating_sub(crate::now_ms() / 1_000)
        .max(0);
    let until = tokio::time::Instant::now() + Duration::from_secs(left.unsigned_abs());
    let changes = app.hub.task_changes();
    let cancel = app.cancel.clone();
    let stream = futures_util::stream::unfold(
        (changes, permit, unit, cancel),
        move |(mut changes, permit, unit, cancel)| async move {
            loop {
                let event = tokio::select! {
                    () = cancel.cancelled() => return None,
                    () = tokio::time::sleep_until(until) => return None,
                    change = changes.recv() => match change {
                        Ok(change) if change.unit == unit => Event::default()
                            .event("task")
                            .data(serde_json::json!({ "task_id": change.doc }).to_string()),
                        Ok(_) => continue,
                        Err(RecvError::Lagged(_)) => Event::default().event("resync").data("{}"),
                        Err(RecvError::Closed) => return None,
                    },
                };
                return Some((Ok(event), (changes, permit, unit, cancel)));
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}
