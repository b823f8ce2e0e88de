//! `GET /api/v1/openapi.json`: the HTTP API described in OpenAPI 3.1, for integrators' tools.
//! docs/api.md is the prose; the end-to-end tests check this lists every route the server has.

use serde_json::{Value, json};

/// An operation: what it does, whether it needs a token (and an admin's), its path parameters.
/// `PUT /api/v1/devices/me/push`.
fn push_registration() -> Value {
    json!({
        "summary": "Register the calling device's push token; notices naming its user are pushed to it.",
        "security": [{ "bearer": [] }],
        "requestBody": {
            "required": true,
            "content": { "application/json": { "schema": {
                "type": "object",
                "additionalProperties": false,
                "required": ["platform", "token"],
                "properties": {
                    "platform": { "type": "string", "enum": ["apns", "fcm"] },
                    "token": { "type": "string", "minLength": 1, "maxLength": 4096, "pattern": "^[!-~]+$" },
                },
            } } },
        },
        "responses": {
            "204": { "description": "registered" },
            "default": { "$ref": "#/components/responses/Error" },
        },
    })
}

fn operation(summary: &str, auth: Auth, param: Option<&str>, ok: Value) -> Value {
    operation_with(summary, auth, param.as_slice(), ok)
}

fn operation_with(summary: &str, auth: Auth, params: &[&str], ok: Value) -> Value {
    let mut op = json!({
        "summary": summary,
        "responses": {
            "200": ok,
            "default": { "$ref": "#/components/responses/Error" },
        },
    });
    if auth != Auth::None {
        op["security"] = json!([{ "bearer": [] }]);
    }
    if auth == Auth::Admin {
        op["description"] = json!(
            "Needs an admin: the token claims `admin` and the server's records list the user."
        );
    }
    if !params.is_empty() {
        let params: Vec<Value> = params
            .iter()
            .map(|name| {
                json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
            })
            .collect();
        op["parameters"] = json!(params);
    }
    op
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    Session,
    Admin,
}

fn text(description: &str) -> Value {
    json!({ "description": description, "content": { "text/plain": { "schema": { "type": "string" } } } })
}

fn object(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "type": "object" } } } })
}

/// The document.
pub fn spec() -> Value {
    use Auth::{Admin, None as Open, Session};
    let mut audit = operation(
        "Security audit records, newest first (by time, then id), filtered and paged.",
        Admin,
        None,
        object("{ records: [...], next_cursor: string | null }"),
    );
    let query = |name: &str, schema: Value, description: &str| json!({ "name": name, "in": "query", "schema": schema, "description": description });
    audit["parameters"] = json!([
        query(
            "limit",
            json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 }),
            "Records per page."
        ),
        query(
            "kind",
            json!({ "type": "string" }),
            "Only records of this kind."
        ),
        query(
            "user",
            json!({ "type": "string" }),
            "Only records about this user."
        ),
        query(
            "device",
            json!({ "type": "string" }),
            "Only records about this device."
        ),
        query(
            "since",
            json!({ "type": "integer" }),
            "Only records at or after this time (Unix ms)."
        ),
        query(
            "until",
            json!({ "type": "integer" }),
            "Only records before this time (Unix ms)."
        ),
        query(
            "cursor",
            json!({ "type": "string" }),
            "The `next_cursor` of the previous page: the records after it."
        ),
    ]);
    let mut dead = operation(
        "Notifications given up after every try (dead letters), newest first, paged.",
        Admin,
        None,
        object(
            "{ notifications: [{ id, task_id, event_id, kind, channel, recipient, attempts, created_at, dead_at, last_error }], next_cursor: string | null }",
        ),
    );
    dead["parameters"] = json!([
        query(
            "limit",
            json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 }),
            "Dead letters per page."
        ),
        query(
            "cursor",
            json!({ "type": "string" }),
            "The previous page's `next_cursor`."
        ),
    ]);
    let mut tasks = operation(
        "The tasks of the caller's units (every unit, for an admin), oldest first (by when the server first stored them, then id), filtered and paged. Not for integration tokens.",
        Session,
        None,
        json!({ "description": "a page of tasks", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/TaskList" } } } }),
    );
    tasks["parameters"] = json!([
        query(
            "unit",
            json!({ "type": "string" }),
            "Only tasks of this unit (one the caller may see)."
        ),
        query(
            "status",
            json!({ "type": "string", "enum": ["pending", "open", "waiting", "completed", "cancelled"] }),
            "Only tasks with this status."
        ),
        query(
            "owner",
            json!({ "type": "string" }),
            "Only tasks this user owns."
        ),
        query(
            "overdue",
            json!({ "type": "boolean" }),
            "Only tasks whose earliest open deadline has passed (true) or has not (false), on the server's workflow clock."
        ),
        query(
            "escalated",
            json!({ "type": "boolean" }),
            "Only tasks escalated at least once since their last progress (true), or not (false)."
        ),
        query(
            "template",
            json!({ "type": "string" }),
            "Only tasks of this template."
        ),
        query(
            "cursor",
            json!({ "type": "string" }),
            "The `next_cursor` of the previous page: the tasks after it."
        ),
        query(
            "limit",
            json!({ "type": "integer", "minimum": 1, "maximum": 200, "default": 50 }),
            "Tasks per page."
        ),
    ]);
    let trigger = json!({
        "summary": "Open a task from a template, as the system, for an integration (the EHR). The same idempotency key again answers with the same task.",
        "description": "Needs an integration token (`baton-server token issue --integration NAME --unit U`) that covers the unit; user and admin tokens are refused with `403 not_integration`. Sent again with the same key and the same request, it answers the same `201` with the same task; with another request, `409 idempotency_key_reused`.",
        "security": [{ "bearer": [] }],
        "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Trigger" } } } },
        "responses": {
            "201": { "description": "the task the trigger opened (now or before, for this key)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/TriggerOpened" } } } },
            "default": { "$ref": "#/components/responses/Error" },
        },
    });
    let membership = ["id", "unit", "role"];
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Baton",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Clinical coordination workflows on Automerge documents. The sync \
                endpoint speaks the automerge-repo protocol over WebSocket (docs/protocol.md).",
        },
        "paths": {
            "/healthz": { "get": operation("The process is up.", Open, None, text("ok")) },
            "/readyz": { "get": operation("The database answers and the server is not shutting down.", Open, None, text("ready")) },
            "/metrics": { "get": operation("Prometheus metrics.", Open, None, text("metrics in the Prometheus text format")) },
            "/sync": { "get": operation(
                "The WebSocket sync endpoint (automerge-repo protocol). Browsers may pass the token as the subprotocol `baton.bearer.<token>` or as `?token=`.",
                Session, None, json!({ "description": "not used: the upgrade answers 101 Switching Protocols" }),
            ) },
            "/api/v1/me": { "get": operation("The caller, their units and each unit's index document URL.", Session, None, object("the caller")) },
            "/api/v1/templates": { "get": operation("Every template version the server knows (`{templates: [...]}`), for devices to validate against.", Session, None, object("the templates")) },
            "/api/v1/triggers": { "post": trigger },
            "/api/v1/tasks": { "get": tasks },
            "/api/v1/tasks/{id}": { "get": operation("A task's fields and folded state.", Session, Some("id"), object("the task")) },
            "/api/v1/devices/me/push": {
                "put": push_registration(),
                "delete": {
                    "summary": "Stop pushing to the calling device.",
                    "security": [{ "bearer": [] }],
                    "responses": {
                        "204": { "description": "no longer registered" },
                        "default": { "$ref": "#/components/responses/Error" },
                    },
                },
            },
            "/api/v1/devices/{id}/revoke": { "post": operation("Refuse a device from now on and tell it to wipe.", Admin, Some("id"), object("the device, revoked")) },
            "/api/v1/users/{id}/disable": { "post": operation("Refuse a user from now on, on every device.", Admin, Some("id"), object("the user, disabled")) },
            "/api/v1/users/{id}/memberships/{unit}/{role}": {
                "put": operation_with("Grant a user a role on a unit; their open connections follow at once.", Admin, &membership, object("the membership, granted")),
                "delete": operation_with("Take a role on a unit from a user; their open connections follow at once.", Admin, &membership, object("the membership, taken away")),
            },
            "/api/v1/audit/security": { "get": audit },
            "/api/v1/notifications/dead": { "get": dead },
            "/api/v1/openapi.json": { "get": operation("This document.", Open, None, object("OpenAPI 3.1")) },
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
            },
            "responses": {
                "Error": {
                    "description": "An error: a stable code, a message safe to show, and `wipe: true` when the device must erase its local data.",
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "required": ["error", "message"],
                        "properties": {
                            "error": { "type": "string" },
                            "message": { "type": "string" },
                            "wipe": { "type": "boolean" },
                            "field": { "type": "string", "description": "the body field or query parameter a 422 is about" },
                        },
                    } } },
                },
            },
            "schemas": {
                "Trigger": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["template", "unit", "subject", "idempotency_key"],
                    "properties": {
                        "template": { "type": "string", "maxLength": 64, "description": "a template id; its latest version is used" },
                        "unit": { "type": "string", "maxLength": 64, "description": "a unit the token covers" },
                        "subject": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["ref", "label"],
                            "properties": {
                                "ref": { "type": "string", "maxLength": 128, "description": "an opaque patient or encounter reference" },
                                "label": { "type": "string", "maxLength": 128, "description": "a minimal display label" },
                            },
                        },
                        "acuity": { "type": "string", "maxLength": 64, "description": "one of the template's acuity levels; its first by default" },
                        "note": { "type": "string", "maxLength": 2000 },
                        "idempotency_key": { "type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!-~]+$" },
                    },
                },
                "TriggerOpened": {
                    "type": "object",
                    "required": ["task_id", "url"],
                    "properties": {
                        "task_id": { "type": "string", "description": "the task document's bare id" },
                        "url": { "type": "string", "description": "its `automerge:` URL" },
                    },
                },
                "TaskSummary": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" },
                        "url": { "type": "string" },
                        "template": { "type": "string" },
                        "template_version": { "type": "integer" },
                        "unit": { "type": "string" },
                        "status": { "type": "string", "enum": ["pending", "open", "waiting", "completed", "cancelled"] },
                        "owner": { "type": ["string", "null"] },
                        "owner_role": { "type": "string" },
                        "acuity": { "type": "string" },
                        "escalation_level": { "type": "integer" },
                        "next_due_at": { "type": ["integer", "null"], "description": "the earliest open deadline (Unix ms, workflow clock)" },
                        "overdue": { "type": "boolean" },
                        "label": { "type": "string" },
                        "created_at": { "type": "integer", "description": "when the server first stored the task (Unix ms)" },
                        "updated_at": { "type": "integer", "description": "when the server last stored a change of it (Unix ms)" },
                    },
                },
                "TaskList": {
                    "type": "object",
                    "required": ["tasks", "next_cursor"],
                    "properties": {
                        "tasks": { "type": "array", "items": { "$ref": "#/components/schemas/TaskSummary" } },
                        "next_cursor": { "type": ["string", "null"] },
                    },
                },
            },
        },
    })
}
