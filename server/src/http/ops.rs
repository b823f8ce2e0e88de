//! What operators and their monitoring call: liveness, readiness, Prometheus metrics.

use crate::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "the process is up", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// The database answers and the server is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "ready to serve", body = String, content_type = "text/plain"),
    (status = 503, description = "the database does not answer, or the server is shutting down", body = String, content_type = "text/plain"),
))]
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

/// Prometheus metrics, in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "metrics in the OpenMetrics text format", body = String,
        content_type = "application/openmetrics-text")))]
pub(crate) async fn metrics(State(app): State<AppState>) -> Response {
    let published = &app.published;
    let sampled = &published.sampled;
    sampled.connections.set(gauge(app.connections.count()));
    sampled
        .documents_loaded
        .set(gauge(app.hub.loaded_documents()));
    // A scrape that cannot count leaves the last count standing rather than report a wrong 0.
    match app.db.pending_timers().await {
        Ok(n) => {
            sampled.timers_pending.set(n);
        }
        Err(e) => tracing::warn!(error = %e, "pending timers could not be counted"),
    }
    match app.notifier.backlog().await {
        Ok((pending, dead)) => {
            sampled.notifications_pending.set(pending);
            sampled.notifications_dead.set(dead);
        }
        Err(e) => tracing::warn!(error = %e, "the outbox could not be counted"),
    }
    match published.encode() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the metrics could not be encoded");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn gauge(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}
