//! `GET /api/v1/openapi.json`: the HTTP API described in OpenAPI 3.1, for integrators' tools.
//! docs/api.md is the prose; the end-to-end tests check this lists every route the server has.

use serde_json::{Value, json};

/// An operation: what it does, whether it needs a token (and an admin's), its path parameters.
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
            "/api/v1/tasks/{id}": { "get": operation("A task's fields and folded state.", Session, Some("id"), object("the task")) },
            "/api/v1/devices/{id}/revoke": { "post": operation("Refuse a device from now on and tell it to wipe.", Admin, Some("id"), object("the device, revoked")) },
            "/api/v1/users/{id}/disable": { "post": operation("Refuse a user from now on, on every device.", Admin, Some("id"), object("the user, disabled")) },
            "/api/v1/users/{id}/memberships/{unit}/{role}": {
                "put": operation_with("Grant a user a role on a unit; their open connections follow at once.", Admin, &membership, object("the membership, granted")),
                "delete": operation_with("Take a role on a unit from a user; their open connections follow at once.", Admin, &membership, object("the membership, taken away")),
            },
            "/api/v1/audit/security": { "get": audit },
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
                        },
                    } } },
                },
            },
        },
    })
}
