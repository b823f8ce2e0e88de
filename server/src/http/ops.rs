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

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "metrics in the Prometheus text format", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(app): State<AppState>) -> Response {
    // A scrape that cannot count the timers leaves the series out rather than report a wrong 0.
    let timers = match app.db.pending_timers().await {
        Ok(n) => format!(
            "# HELP baton_timers_pending Open tasks with a timer (their next due action).\n\
             # TYPE baton_timers_pending gauge\n\
             baton_timers_pending {n}\n"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "pending timers could not be counted");
            String::new()
        }
    };
    let body = format!(
        "# HELP baton_connections Open WebSocket sync connections.\n\
         # TYPE baton_connections gauge\n\
         baton_connections {}\n\
         # HELP baton_documents_loaded Documents held in memory.\n\
         # TYPE baton_documents_loaded gauge\n\
         baton_documents_loaded {}\n\
         # HELP baton_refused_tokens_total Tokens refused (each address's first few a minute are audited).\n\
         # TYPE baton_refused_tokens_total counter\n\
         baton_refused_tokens_total {}\n{}{}{timers}{}{}",
        app.connections.count(),
        app.hub.loaded_documents(),
        app.auditor.total("refused_token"),
        app.auditor.metrics(),
        app.hub.metrics(),
        app.scheduler.metrics(),
        app.notifier.metrics().await,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
