//! `POST /api/v1/triggers`: an integration (the EHR) starts a workflow.
//!
//! The request is read within bounds and checked field by field before anything else is done
//! with it; the task is opened by the server as the system (`baton` / `system`), on the workflow
//! clock, and stored like any task the server opens ([`crate::hub::Hub::open_task`]), with the
//! request's idempotency key taken **in the same transaction**. So one key opens one task: sent
//! again (after a timeout, a restart of either side, or twice at once) it answers with the same
//! task, and a crash never leaves a task without its key or a key without its task. The same key
//! with another request is refused, since the caller has mixed up two requests.

use crate::AppState;
use crate::db::{TriggerRow, Written};
use crate::http::{ApiError, PeerAddr};
use crate::ws::bearer;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_core::ids::UnitId;
use baton_core::sync::DocumentId;
use baton_core::{Author, HlcClock, NewTask, Subject, TaskDoc};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The largest request body read, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The longest template id, unit id and acuity level, in characters.
pub const MAX_ID_CHARS: usize = 64;
/// The longest subject reference and label, in characters.
pub const MAX_SUBJECT_CHARS: usize = 128;
/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 2_000;
/// The longest idempotency key, in characters (visible ASCII).
pub const MAX_KEY_CHARS: usize = 128;

/// A trigger, as read from its body and checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Trigger {
    template: String,
    unit: String,
    subject_ref: String,
    subject_label: String,
    acuity: Option<String>,
    note: Option<String>,
    #[serde(skip)]
    idempotency_key: String,
}

impl Trigger {
    /// Read a trigger from a body: a JSON object with exactly the fields of a trigger, each of
    /// the right type and within its bounds.
    fn read(bytes: &[u8]) -> Result<Trigger, ApiError> {
        // serde_json refuses nesting past 128 levels; the body is bounded before this.
        let body: Value = serde_json::from_slice(bytes).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "the body is not JSON",
            )
        })?;
        let Value::Object(body) = body else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "the body is not a JSON object",
            ));
        };
        only_fields(
            &body,
            "",
            &[
                "template",
                "unit",
                "subject",
                "acuity",
                "note",
                "idempotency_key",
            ],
        )?;
        let subject = match body.get("subject") {
            None | Some(Value::Null) => {
                return Err(ApiError::invalid_field("subject", "`subject` is required"));
            }
            Some(Value::Object(subject)) => subject,
            Some(_) => {
                return Err(ApiError::invalid_field(
                    "subject",
                    "`subject` is an object: {ref, label}",
                ));
            }
        };
        only_fields(subject, "subject.", &["ref", "label"])?;
        let key = required(&body, "idempotency_key", "idempotency_key", MAX_KEY_CHARS)?;
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::invalid_field(
                "idempotency_key",
                "`idempotency_key` is visible ASCII characters, without spaces",
            ));
        }
        Ok(Trigger {
            template: required(&body, "template", "template", MAX_ID_CHARS)?,
            unit: required(&body, "unit", "unit", MAX_ID_CHARS)?,
            subject_ref: required(subject, "ref", "subject.ref", MAX_SUBJECT_CHARS)?,
            subject_label: required(subject, "label", "subject.label", MAX_SUBJECT_CHARS)?,
            acuity: optional(&body, "acuity", "acuity", MAX_ID_CHARS, false)?,
            note: optional(&body, "note", "note", MAX_NOTE_CHARS, true)?,
            idempotency_key: key,
        })
    }

    /// What identifies the request behind a key: the same request, however it is spelled
    /// (order of fields, whitespace, escapes), has the same fingerprint.
    fn fingerprint(&self) -> Result<String, ApiError> {
        let canonical = serde_json::to_vec(self).map_err(ApiError::internal)?;
        Ok(Sha256::digest(&canonical)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}

/// Refuse any field of `object` not in `known` (`prefix` names where `object` is).
fn only_fields(object: &Map<String, Value>, prefix: &str, known: &[&str]) -> Result<(), ApiError> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => {
            let shown: String = unknown.chars().take(MAX_ID_CHARS).collect();
            Err(ApiError::invalid_field(
                format!("{prefix}{shown}"),
                format!("`{prefix}{shown}` is not a field of a trigger"),
            ))
        }
        None => Ok(()),
    }
}

fn required(
    object: &Map<String, Value>,
    name: &str,
    field: &str,
    max: usize,
) -> Result<String, ApiError> {
    optional(object, name, field, max, false)?
        .ok_or_else(|| ApiError::invalid_field(field, format!("`{field}` is required")))
}

/// A string field: absent or null is `None`; otherwise it must be a non-empty string of at most
/// `max` characters, without control characters (but for line breaks and tabs, where
/// `multiline`).
fn optional(
    object: &Map<String, Value>,
    name: &str,
    field: &str,
    max: usize,
    multiline: bool,
) -> Result<Option<String>, ApiError> {
    let text = match object.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text,
        Some(_) => {
            return Err(ApiError::invalid_field(
                field,
                format!("`{field}` is a string"),
            ));
        }
    };
    check_text(field, text, max, multiline)?;
    Ok(Some(text.clone()))
}

/// Refuse `text` as `field` unless it is 1 to `max` characters, not only spaces, and without
/// control characters (but line breaks and tabs where `multiline`): what [`text_schema`] says.
pub(crate) fn check_text(
    field: &str,
    text: &str,
    max: usize,
    multiline: bool,
) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::invalid_field(
            field,
            format!("`{field}` is empty"),
        ));
    }
    if text.chars().count() > max {
        return Err(ApiError::invalid_field(
            field,
            format!("`{field}` is longer than {max} characters"),
        ));
    }
    let allowed = |c: char| !c.is_control() || (multiline && matches!(c, '\n' | '\r' | '\t'));
    if !text.chars().all(allowed) {
        return Err(ApiError::invalid_field(
            field,
            format!("`{field}` holds control characters"),
        ));
    }
    Ok(())
}

/// What [`optional`] accepts on one line: no control characters, not only spaces.
pub(crate) const ONE_LINE: &str = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";
/// What [`optional`] accepts where `multiline`: line breaks and tabs too.
const MULTILINE: &str = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$";

/// The schema of a text field [`optional`] reads: 1 to `max` characters, on one line or not.
pub(crate) fn text_schema(max: usize, multiline: bool) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(if multiline { MULTILINE } else { ONE_LINE }))
        .build()
}

fn id_text() -> utoipa::openapi::Object {
    text_schema(MAX_ID_CHARS, false)
}

fn subject_text() -> utoipa::openapi::Object {
    text_schema(MAX_SUBJECT_CHARS, false)
}

fn note_text() -> utoipa::openapi::Object {
    text_schema(MAX_NOTE_CHARS, true)
}

/// A trigger's body, as the OpenAPI document describes it. [`Trigger::read`] reads it field by
/// field, to name the field a refusal is about.
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = Trigger)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Only describes the body.
pub(crate) struct TriggerRequest {
    /// A template id; its latest version is used.
    #[schema(schema_with = id_text)]
    template: String,
    /// A unit the token covers.
    #[schema(schema_with = id_text)]
    unit: String,
    subject: TriggerSubject,
    /// One of the template's acuity levels; its first by default.
    #[schema(schema_with = id_text)]
    acuity: Option<String>,
    /// Free text; line breaks and tabs allowed.
    #[schema(schema_with = note_text)]
    note: Option<String>,
    /// The same key again answers with the same task.
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]+$")]
    idempotency_key: String,
}

/// Whom a triggered task is about: references, never a record.
#[derive(Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Only describes the body.
pub(crate) struct TriggerSubject {
    /// An opaque patient or encounter reference.
    #[schema(rename = "ref", schema_with = subject_text)]
    reference: String,
    /// A minimal display label.
    #[schema(schema_with = subject_text)]
    label: String,
}

/// The task a trigger opened.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TriggerOpened {
    /// The task document's bare id.
    task_id: String,
    /// Its `automerge:` URL.
    url: String,
}

/// `201 {task_id, url}`: the task a trigger opened, whether now or before.
fn opened(doc: &str) -> Result<Response, ApiError> {
    let id: DocumentId = doc
        .parse()
        .map_err(|e| ApiError::internal(format!("a trigger names document `{doc}`: {e}")))?;
    let body = TriggerOpened {
        task_id: id.to_string(),
        url: id.url(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The answer to a key already taken: the task it opened, if the request is the same.
fn replay(taken: &TriggerRow, fingerprint: &str) -> Result<Response, ApiError> {
    if taken.request != fingerprint {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "this idempotency key was used for another request",
        ));
    }
    opened(&taken.doc)
}

/// Open a task from a template, as the system, for an integration (the EHR). Needs an
/// integration token (`baton-server token issue --integration NAME --unit U`) that covers the
/// unit; user and admin tokens are refused with `403 not_integration`. Sent again with the same
/// key and the same request, it answers the same `201` with the same task; with another request,
/// `409 idempotency_key_reused`.
#[utoipa::path(post, path = "/api/v1/triggers", tag = "integrations", security(("bearer" = [])),
    request_body = TriggerRequest,
    responses(
        (status = 201, description = "the task the trigger opened (now or before, for this key)", body = TriggerOpened),
        (status = "default", description = "an error", body = crate::http::ErrorBody),
))]
pub(crate) async fn trigger(
    State(app): State<AppState>,
    PeerAddr(from): PeerAddr,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let integration = app.integration(bearer(&headers, None), from).await?;
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("a trigger's body is at most {MAX_BODY_BYTES} bytes"),
            )
        })?;
    let trigger = Trigger::read(&bytes)?;
    let unit = UnitId::new(trigger.unit.clone());
    if !integration.covers(&unit) {
        return Err(ApiError::unit_not_allowed(&trigger.unit));
    }
    let template = app
        .hub
        .templates()
        .latest(&trigger.template.as_str().into())
        .cloned()
        .ok_or_else(|| {
            ApiError::unknown(
                "template",
                format!("there is no template `{}`", trigger.template),
            )
        })?
        .clone();
    if let Some(acuity) = &trigger.acuity
        && template.acuity_level(acuity).is_none()
    {
        let levels: Vec<&str> = template.acuity.iter().map(|a| a.id.as_str()).collect();
        return Err(ApiError::unknown(
            "acuity",
            format!(
                "`{acuity}` is not an acuity level of template `{}` ({})",
                template.id,
                levels.join(", ")
            ),
        ));
    }
    if !app.db.unit_exists(&trigger.unit).await? {
        return Err(ApiError::unknown(
            "unit",
            format!("there is no unit `{}`", trigger.unit),
        ));
    }
    let fingerprint = trigger.fingerprint()?;
    if let Some(taken) = app
        .db
        .trigger(&integration.name, &trigger.idempotency_key)
        .await?
    {
        return replay(&taken, &fingerprint);
    }

    // Opened by the system, on the workflow clock deadlines are judged by; the event's device
    // names the integration that asked.
    let id = DocumentId::random();
    let author = Author::system(format!("integration:{}", integration.name));
    let new = NewTask {
        unit,
        subject: Subject {
            reference: trigger.subject_ref.clone(),
            label: trigger.subject_label.clone(),
        },
        acuity: trigger.acuity.clone(),
        note: trigger.note.clone(),
    };
    let (task, _) = TaskDoc::create(
        &template,
        new,
        &author,
        &mut HlcClock::new(),
        app.clock.now(),
        automerge::ActorId::random(),
    )
    .map_err(ApiError::internal)?;
    let key = TriggerRow {
        integration: integration.name.clone(),
        key: trigger.idempotency_key.clone(),
        request: fingerprint.clone(),
        doc: id.to_string(),
    };
    match app.hub.open_task(id, task, Some(key)).await? {
        Written::Stored => {
            tracing::info!(integration = %integration.name, task = %id, template = %template.id, unit = %trigger.unit, "a trigger opened a task");
            opened(&id.to_string())
        }
        // Another request with this key got there first (at the same moment, or on another
        // node): its task is the one.
        Written::KeyTaken => {
            tracing::debug!(integration = %integration.name, "a trigger's key was taken meanwhile");
            let taken = app
                .db
                .trigger(&integration.name, &trigger.idempotency_key)
                .await?
                .ok_or_else(|| ApiError::internal("a taken trigger key is not stored"))?;
            replay(&taken, &fingerprint)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(body: Value) -> Result<Trigger, ApiError> {
        // Through text, as a body arrives.
        Trigger::read(body.to_string().as_bytes())
    }

    fn field_of(result: Result<Trigger, ApiError>) -> (&'static str, Option<String>) {
        let e = result.expect_err("refused");
        (e.code(), e.field().map(str::to_owned))
    }

    fn good() -> Value {
        json!({
            "template": "consult", "unit": "4W",
            "subject": { "ref": "enc-1", "label": "Bed 1" },
            "acuity": "urgent", "note": "from the EHR\nline two", "idempotency_key": "ehr-1",
        })
    }

    #[test]
    fn a_good_trigger_is_read() {
        let trigger = read(good()).expect("read");
        assert_eq!(trigger.subject_label, "Bed 1");
        assert_eq!(trigger.acuity.as_deref(), Some("urgent"));
        assert_eq!(trigger.idempotency_key, "ehr-1");
    }

    #[test]
    fn the_fingerprint_ignores_spelling_but_not_content_or_the_key() {
        let a = read(good()).expect("read");
        let spelled =
            br#"{"idempotency_key":"ehr-2","note":"from the EHR\nline two","acuity":"urgent",
            "subject":{"label":"Bed 1","ref":"enc-1"},"unit":"4W","template":"consult"}"#;
        let b = Trigger::read(spelled).expect("read");
        assert_eq!(a.fingerprint().ok(), b.fingerprint().ok());
        let mut other = good();
        other["subject"]["label"] = json!("Bed 2");
        let c = read(other).expect("read");
        assert_ne!(a.fingerprint().ok(), c.fingerprint().ok());
    }

    #[test]
    fn bad_fields_are_named() {
        type Edit = fn(&mut Value);
        let cases: [(&str, Edit); 11] = [
            ("template", |b| {
                if let Some(o) = b.as_object_mut() {
                    o.remove("template");
                }
            }),
            ("unit", |b| b["unit"] = json!(7)),
            ("subject", |b| b["subject"] = json!("Bed 1")),
            ("subject.label", |b| {
                b["subject"]["label"] = json!("x".repeat(129))
            }),
            ("subject.ref", |b| b["subject"]["ref"] = json!("")),
            ("subject.bed", |b| b["subject"]["bed"] = json!("12")),
            ("note", |b| b["note"] = json!("n".repeat(2_001))),
            ("acuity", |b| b["acuity"] = json!("urgent\u{0}")),
            ("idempotency_key", |b| {
                b["idempotency_key"] = json!("two words")
            }),
            ("idempotency_key", |b| {
                b["idempotency_key"] = json!("k".repeat(129))
            }),
            ("priority", |b| b["priority"] = json!(1)),
        ];
        for (field, edit) in cases {
            let mut body = good();
            edit(&mut body);
            assert_eq!(
                field_of(read(body)),
                ("invalid_field", Some(field.to_owned())),
                "{field}"
            );
        }
        for junk in [&b"not json"[..], b"[1, 2]", b"{\"a\":"] {
            assert_eq!(field_of(Trigger::read(junk)), ("invalid_json", None));
        }
    }
}
