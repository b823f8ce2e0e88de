//! HTTP: health, metrics, and the REST API under `/api/v1`.
//!
//! [`routes`] is the one list of operations: the router and the OpenAPI document
//! (`GET /api/v1/openapi.json`) are both made from it, and each operation's parameters, body and
//! responses are read from its handler's own types, so the document cannot drift from what the
//! server answers. Errors leave as a small JSON body with a stable `error` code and a message
//! safe to show ([`ErrorBody`]); internal detail goes to the log only.

mod admin;
mod audit;
mod body;
mod devices;
mod directory;
mod error;
mod extract;
mod fhir;
mod me;
mod measures;
mod ops;
pub(crate) mod page;
mod task_admin;
mod tasks;
mod templates;

pub use error::{ApiError, ErrorBody};
pub(crate) use extract::{Admin, Caller, PeerAddr, ServerAdmin};
pub use tasks::{MAX_TASKS_PER_PAGE, TASKS_PER_PAGE};

use crate::AppState;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use std::sync::LazyLock;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the OpenAPI document says besides its operations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Baton",
        description = "Clinical coordination workflows on Automerge documents. The sync endpoint \
            (`GET /sync`, a WebSocket speaking the automerge-repo protocol) is described in \
            docs/protocol.md; everything else is here.",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Liveness, readiness and metrics, for monitoring."),
        (name = "devices", description = "What phones and other devices call."),
        (name = "tasks", description = "Tasks as lists and views."),
        (name = "integrations", description = "What the EHR calls, with an integration token."),
        (name = "admin", description = "Administration; needs an admin of the units concerned."),
        (name = "audit", description = "The audit trail."),
    ),
)]
struct ApiDoc;

/// Bearer JWTs, for the operations that name `bearer` as their security.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".to_owned());
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// Every documented operation, with its handler.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(openapi))
        .routes(routes!(me::me))
        .routes(routes!(me::templates, templates::publish))
        .routes(routes!(crate::triggers::trigger))
        .routes(routes!(tasks::tasks))
        .routes(routes!(tasks::task))
        .routes(routes!(devices::register_push, devices::unregister_push))
        .routes(routes!(admin::revoke_device))
        .routes(routes!(admin::disable_user))
        .routes(routes!(admin::grant_membership, admin::revoke_membership))
        .routes(routes!(audit::security_audit))
        .routes(routes!(audit::task_events))
        .routes(routes!(audit::export_task_events))
        .routes(routes!(templates::programs))
        .routes(routes!(task_admin::reassign))
        .routes(routes!(task_admin::cancel))
        .routes(routes!(directory::units))
        .routes(routes!(directory::put_unit))
        .routes(routes!(directory::roles))
        .routes(routes!(directory::put_role))
        .routes(routes!(directory::users, directory::create_user))
        .routes(routes!(directory::devices))
        .routes(routes!(directory::put_rotation, directory::delete_rotation))
        .routes(routes!(directory::overrides, directory::add_override))
        .routes(routes!(directory::delete_override))
        .routes(routes!(measures::summary))
        .routes(routes!(measures::time_to_acknowledgment))
        .routes(routes!(measures::time_to_first_outreach))
        .routes(routes!(measures::task_aging))
        .routes(routes!(measures::escalations))
        .routes(routes!(measures::breach_rate))
        .routes(routes!(measures::workload))
        .routes(routes!(measures::completed_without_intervention))
        .routes(routes!(measures::discharge_order_to_confirmed))
        .routes(routes!(fhir::metadata))
        .routes(routes!(fhir::task))
        .routes(routes!(fhir::search_tasks))
        .routes(routes!(fhir::search_audit_events))
        .routes(routes!(admin::dead_letters))
}

/// The OpenAPI document, as JSON: made once.
static SPEC: LazyLock<String> = LazyLock::new(|| {
    let (_, spec) = routes().split_for_parts();
    spec.to_json()
        .expect("an OpenAPI document built from types serializes")
});

/// The OpenAPI 3.1 document of this API, as JSON.
pub fn spec() -> &'static str {
    &SPEC
}

/// This document: the HTTP API in OpenAPI 3.1.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], spec())
}

/// The HTTP routes: every documented operation, and the WebSocket sync endpoint.
pub fn router(app: AppState) -> Router {
    let (api, _) = routes().split_for_parts();
    api.route("/sync", axum::routing::get(crate::ws::upgrade))
        .merge(crate::board::routes())
        .layer(axum::middleware::from_fn(no_nul_in_path))
        .with_state(app)
}

/// A path that names something with a NUL in it (`%00`) names nothing the server holds: no
/// stored id can hold one. Answered here, before a handler looks it up (Postgres would refuse
/// the lookup rather than find nothing).
async fn no_nul_in_path(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if request.uri().path().contains("%00") {
        return ApiError::not_found().into_response();
    }
    next.run(request).await
}
