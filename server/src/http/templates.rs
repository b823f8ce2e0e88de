//! Publishing templates: the server's admins add a new version of a template (checked as the
//! shipped ones are, errors naming the step and field); new tasks of it start with that version,
//! running tasks keep theirs. And the programs the templates belong to.

use super::{ApiError, Caller, ErrorBody, ServerAdmin};
use crate::AppState;
use crate::now_ms;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use baton_core::template::{Template, TemplateError};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The largest template body read.
const MAX_TEMPLATE: usize = 256 * 1024;

/// One publish at a time, so the stored versions and the registry agree.
static PUBLISHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A template version, published.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Published {
    id: String,
    version: u32,
    name: String,
    program: String,
    steps: usize,
}

/// A template that does not check out: `422 invalid_template`, naming the step (`steps.<id>`)
/// when the problem is in one, with what is wrong (and which field) in the message.
fn invalid(e: TemplateError) -> ApiError {
    let field = match &e.step {
        Some(step) => format!("steps.{step}"),
        None => "template".to_owned(),
    };
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_template",
        e.problem,
    )
    .with_field(field)
}

/// Publish a new version of a template, as TOML (`application/toml`, the format of
/// `core/templates/*.toml`) or JSON (`application/json`, as `GET /api/v1/templates` shows them).
/// Its `version` must be above every version of its id the server has.
#[utoipa::path(post, path = "/api/v1/templates", tag = "admin", security(("bearer" = [])),
    request_body(content = Object, description = "the template, in TOML or JSON",
        content_type = "application/json"),
    responses(
        (status = 201, description = "the version, published", body = Published),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn publish(
    State(app): State<AppState>,
    ServerAdmin(session): ServerAdmin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    if body.len() > MAX_TEMPLATE {
        return Err(ApiError::invalid_field(
            "body",
            format!("a template is at most {MAX_TEMPLATE} bytes"),
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid_field("body", "the template is not UTF-8 text"))?;
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    let template = match media {
        "application/toml" => Template::from_toml("request", text),
        "application/json" => Template::from_json("request", text),
        _ => {
            return Err(ApiError::invalid_field(
                "body",
                "send the template as application/toml or application/json",
            ));
        }
    }
    .map_err(invalid)?;
    let _one_at_a_time = PUBLISHING.lock().await;
    if let Some(latest) = app.hub.templates().latest(&template.id)
        && latest.version >= template.version
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "version_exists",
            format!(
                "{} has version {} already; publish version {}",
                template.id,
                latest.version,
                latest.version + 1
            ),
        )
        .with_field("version".to_owned()));
    }
    let stored = serde_json::to_string(&template).map_err(ApiError::internal)?;
    app.db
        .insert_template(
            template.id.as_str(),
            i64::from(template.version),
            &stored,
            now_ms(),
        )
        .await?;
    let added = app.hub.add_template(template).map_err(invalid)?;
    app.auditor
        .admin_action(
            &session,
            "template_published",
            format!(
                "published {} version {} ({})",
                added.id, added.version, added.name
            ),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(Published {
            id: added.id.to_string(),
            version: added.version,
            name: added.name.clone(),
            program: added.program.id.clone(),
            steps: added.steps.len(),
        }),
    ))
}

/// A clinical program and the templates (newest versions) that belong to it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProgramEntry {
    id: String,
    /// 1 is the most urgent.
    priority: u8,
    /// `{id, version, name}` of each template's newest version.
    templates: Vec<ProgramTemplate>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProgramTemplate {
    id: String,
    version: u32,
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Programs {
    programs: Vec<ProgramEntry>,
}

/// The programs the templates belong to, each with its templates' newest versions.
#[utoipa::path(get, path = "/api/v1/programs", tag = "directory", security(("bearer" = [])),
    responses(
        (status = 200, description = "the programs", body = Programs),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn programs(
    State(app): State<AppState>,
    Caller(_): Caller,
) -> Result<Json<Programs>, ApiError> {
    let registry = app.hub.templates();
    let mut newest: BTreeMap<&str, &Template> = BTreeMap::new();
    for template in registry.iter() {
        newest.insert(template.id.as_str(), template);
    }
    let mut programs: BTreeMap<String, ProgramEntry> = BTreeMap::new();
    for template in newest.values() {
        let entry = programs
            .entry(template.program.id.clone())
            .or_insert_with(|| ProgramEntry {
                id: template.program.id.clone(),
                priority: template.program.priority,
                templates: Vec::new(),
            });
        entry.priority = entry.priority.min(template.program.priority);
        entry.templates.push(ProgramTemplate {
            id: template.id.to_string(),
            version: template.version,
            name: template.name.clone(),
        });
    }
    Ok(Json(Programs {
        programs: programs.into_values().collect(),
    }))
}
