//! `GET /api/v1/openapi.json`: the HTTP API described in OpenAPI 3.1, for integrators' tools.
//! docs/api.md is the prose; the end-to-end tests check this lists every route the server has.

use serde_json::{Value, json};

/// An operation: what it does, whether it needs a token (and an admin's), its path parameter.
fn operation(summary: &str, auth: Auth, param: Option<&str>, ok: Value) -> Value {
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
        op["description"] = json!("Needs an admin token.");
    }
    if let Some(name) = param {
        op["parameters"] = json!([{
            "name": name, "in": "path", "required": true, "schema": { "type": "string" },
        }]);
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
        "The newest security audit records.",
        Admin,
        None,
        object("{ records: [...] }"),
    );
    audit["parameters"] = json!([{
        "name": "limit", "in": "query",
        "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 },
    }]);
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
