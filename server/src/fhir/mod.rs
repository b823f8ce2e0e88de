//! FHIR R4 views of Baton's records: a task as a `Task`, lists as searchset `Bundle`s, a task's
//! history as `AuditEvent`s, the server's `CapabilityStatement`, and refusals as
//! `OperationOutcome`s. Pure functions from the folded state to JSON; `http::fhir` serves them.
//!
//! Baton's own names travel as identifiers under `urn:baton:` systems (users, roles, units,
//! templates): Baton does not serve Practitioner or Location resources, so references to them
//! are logical (an identifier and a display), which R4 allows.

use crate::audit::trail::TrailEvent;
use baton_core::doc::TaskMeta;
use baton_core::fold::{Status, StepStatus, TaskState};
use baton_core::sync::DocumentId;
use baton_core::template::Template;
use serde_json::{Map, Value, json};

/// The media type of FHIR JSON.
pub const FHIR_JSON: &str = "application/fhir+json";
/// The FHIR version the resources follow.
pub const FHIR_VERSION: &str = "4.0.1";

const USER: &str = "urn:baton:user";
const ROLE: &str = "urn:baton:role";
const UNIT: &str = "urn:baton:unit";
const TEMPLATE: &str = "urn:baton:template";
const BUSINESS_STATUS: &str = "urn:baton:business-status";
const EVENT_KIND: &str = "urn:baton:event-kind";
const DEVICE: &str = "urn:baton:device";

/// A Unix-ms time as a FHIR `instant` / `dateTime` (UTC, milliseconds).
pub fn instant(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The FHIR Task status of a task's state, one of the 12 R4 codes. Baton uses eight:
///
/// | Baton | FHIR |
/// |---|---|
/// | pending (document without its `created` event) | `draft` |
/// | open, nobody owns it | `requested` |
/// | open, owned, not acknowledged | `received` |
/// | open, acknowledged, no step begun | `accepted` |
/// | open, a step begun or done | `in-progress` |
/// | waiting (a step waits on someone outside) | `on-hold` |
/// | completed | `completed` |
/// | cancelled | `cancelled` |
///
/// `ready`, `rejected`, `failed` and `entered-in-error` have no Baton state: an owner cannot
/// decline a task (they hand it off), and a task that cannot go on raises an exception while it
/// stays open (shown in `businessStatus`).
pub fn status(state: &TaskState) -> &'static str {
    match state.status {
        Status::Pending => "draft",
        Status::Waiting => "on-hold",
        Status::Completed => "completed",
        Status::Cancelled => "cancelled",
        Status::Open => {
            let begun = state
                .steps
                .iter()
                .any(|s| matches!(s.status, StepStatus::InProgress | StepStatus::Completed));
            if state.owner.is_none() {
                "requested"
            } else if begun {
                "in-progress"
            } else if state.acknowledged.is_none() {
                "received"
            } else {
                "accepted"
            }
        }
    }
}

/// Where the work stands in Baton's terms: a code under `urn:baton:business-status` and a line
/// of text naming the step, the waits, the escalation level and open exceptions.
pub fn business_status(state: &TaskState, template: &Template) -> Value {
    let open_exception = state.exceptions.iter().find(|e| e.resolved.is_none());
    let step_name = |id: &baton_core::ids::StepId| {
        template
            .steps
            .iter()
            .find(|s| &s.id == id)
            .map_or_else(|| id.to_string(), |s| s.name.clone())
    };
    let (code, display) = match state.status {
        Status::Pending => ("pending", "Not yet created"),
        Status::Completed => ("completed", "Completed"),
        Status::Cancelled => ("cancelled", "Cancelled"),
        _ if open_exception.is_some() => ("exception", "Exception raised"),
        Status::Waiting => ("waiting", "Waiting on someone outside the task"),
        _ if state.escalation_level > 0 => ("escalated", "Escalated"),
        _ if state.owner.is_none() => ("awaiting-owner", "Awaiting an owner"),
        _ if state.acknowledged.is_none() => ("awaiting-acknowledgment", "Awaiting acknowledgment"),
        _ => ("in-step", "Under way"),
    };
    let mut text = vec![display.to_owned()];
    if !state.status.is_closed() {
        if let Some(step) = &state.current_step {
            text.push(format!("step: {}", step_name(step)));
        }
        for wait in &state.waits {
            text.push(format!(
                "waiting on {} ({})",
                wait.on,
                step_name(&wait.step)
            ));
        }
        if state.escalation_level > 0 {
            text.push(format!("escalation level {}", state.escalation_level));
        }
        if let Some(exception) = open_exception {
            text.push(format!("exception: {}", exception.reason));
        }
    }
    json!({
        "coding": [{ "system": BUSINESS_STATUS, "code": code, "display": display }],
        "text": text.join(" · "),
    })
}

/// A logical reference: an identifier under `system`, what it names, and a display.
fn logical(kind: &str, system: &str, value: &str, display: &str) -> Value {
    json!({
        "type": kind,
        "identifier": { "system": system, "value": value },
        "display": display,
    })
}

/// The FHIR priority of an acuity, where it has one.
fn priority(acuity: &str) -> Option<&'static str> {
    match acuity {
        "routine" => Some("routine"),
        "urgent" => Some("urgent"),
        "asap" => Some("asap"),
        "stat" => Some("stat"),
        _ => None,
    }
}

/// What the subject reference is: a FHIR reference (`Patient/123`) when it looks like one,
/// an identifier otherwise.
fn subject(reference: &str, label: &str) -> Value {
    let looks_like_fhir = reference.split_once('/').is_some_and(|(kind, id)| {
        kind.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && kind.chars().all(|c| c.is_ascii_alphabetic())
            && (1..=64).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    });
    if looks_like_fhir {
        json!({ "reference": reference, "display": label })
    } else {
        json!({ "identifier": { "value": reference }, "display": label })
    }
}

/// One task as a FHIR `Task`. `updated_at` is when the server last stored a change of it.
pub fn task(
    id: &DocumentId,
    meta: &TaskMeta,
    state: &TaskState,
    template: &Template,
    updated_at: i64,
) -> Value {
    let mut task = Map::new();
    task.insert("resourceType".into(), json!("Task"));
    task.insert("id".into(), json!(id.to_string()));
    task.insert("meta".into(), json!({ "lastUpdated": instant(updated_at) }));
    task.insert(
        "identifier".into(),
        json!([{ "system": "urn:ietf:rfc:3986", "value": id.url() }]),
    );
    task.insert("status".into(), json!(status(state)));
    task.insert("businessStatus".into(), business_status(state, template));
    task.insert("intent".into(), json!("order"));
    if let Some(priority) = priority(&state.acuity) {
        task.insert("priority".into(), json!(priority));
    }
    task.insert(
        "code".into(),
        json!({
            "coding": [{
                "system": TEMPLATE,
                "code": template.id.to_string(),
                "version": template.version.to_string(),
                "display": template.name,
            }],
            "text": template.name,
        }),
    );
    task.insert("description".into(), json!(template.name));
    task.insert(
        "for".into(),
        subject(&meta.subject.reference, &meta.subject.label),
    );
    let authored = state.created_at.unwrap_or(meta.created);
    task.insert("authoredOn".into(), json!(instant(authored)));
    task.insert("lastModified".into(), json!(instant(updated_at)));
    if let Some(by) = &state.created_by {
        task.insert(
            "requester".into(),
            logical("Practitioner", USER, by.user.as_str(), by.user.as_str()),
        );
    }
    let owner = match &state.owner {
        Some(owner) => logical(
            "Practitioner",
            USER,
            owner.user.as_str(),
            owner.user.as_str(),
        ),
        None => logical(
            "PractitionerRole",
            ROLE,
            state.owner_role.as_str(),
            &format!("{} (unassigned)", state.owner_role),
        ),
    };
    task.insert("owner".into(), owner);
    task.insert(
        "location".into(),
        logical("Location", UNIT, state.unit.as_str(), state.unit.as_str()),
    );
    let started = state.acknowledged.as_ref().map(|a| a.at);
    if started.is_some() || state.closed_at.is_some() {
        let mut period = Map::new();
        if let Some(start) = started {
            period.insert("start".into(), json!(instant(start)));
        }
        if let Some(end) = state.closed_at {
            period.insert("end".into(), json!(instant(end)));
        }
        task.insert("executionPeriod".into(), Value::Object(period));
    }
    if !state.status.is_closed()
        && let Some(due) = state.deadlines.first()
    {
        task.insert(
            "restriction".into(),
            json!({ "period": { "start": instant(authored), "end": instant(due.at) } }),
        );
    }
    if !state.notes.is_empty() {
        let notes: Vec<Value> = state
            .notes
            .iter()
            .map(|n| {
                json!({
                    "authorReference": logical("Practitioner", USER, n.by.user.as_str(), n.by.user.as_str()),
                    "time": instant(n.at),
                    "text": n.text,
                })
            })
            .collect();
        task.insert("note".into(), Value::Array(notes));
    }
    Value::Object(task)
}

/// One event of a task's history as a FHIR `AuditEvent`: who (the person in their role, and
/// the device), what kind,
/// recorded when the server received it, with the device's stamp as the period it claims.
pub fn audit_event(event: &TrailEvent) -> Value {
    let action = if event.kind == "created" { "C" } else { "U" };
    json!({
        "resourceType": "AuditEvent",
        "id": format!("task-event-{}", event.seq),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [{ "system": EVENT_KIND, "code": event.kind }],
        "action": action,
        "period": { "start": instant(event.stamp_at), "end": instant(event.stamp_at) },
        "recorded": instant(event.received_at),
        "outcome": "0",
        "agent": [
            {
                "type": { "coding": [{ "system": ROLE, "code": event.role }] },
                "who": logical("Practitioner", USER, &event.user, &event.user),
                "requestor": true,
            },
            {
                "type": { "text": "device" },
                "who": logical("Device", DEVICE, &event.device, &event.device),
                "requestor": false,
            },
        ],
        "source": {
            "site": event.unit,
            "observer": { "display": "Baton" },
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server",
            }],
        },
        "entity": [{
            "what": { "reference": format!("Task/{}", event.task_id) },
            "detail": [
                { "type": "event_id", "valueString": event.event_id },
                { "type": "stamp", "valueString": event.stamp },
                { "type": "device_time", "valueString": instant(event.device_time) },
                { "type": "late", "valueString": event.late.to_string() },
                { "type": "chain_hash", "valueString": event.hash },
            ],
        }],
    })
}

/// A searchset `Bundle` of `resources`, with its own link and the next page's.
pub fn bundle(resources: Vec<Value>, this: &str, next: Option<String>) -> Value {
    let mut links = vec![json!({ "relation": "self", "url": this })];
    if let Some(next) = next {
        links.push(json!({ "relation": "next", "url": next }));
    }
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|resource| json!({ "resource": resource, "search": { "mode": "match" } }))
        .collect();
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": entries,
    })
}

/// A refusal as a FHIR `OperationOutcome`; `code` is an R4 issue type (`not-found`, `invalid`,
/// `forbidden`, `login`, `exception`, …).
pub fn operation_outcome(code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": code, "diagnostics": diagnostics }],
    })
}

/// What this server offers over FHIR.
pub fn capability_statement(software_version: &str, now: i64) -> Value {
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(now),
        "publisher": "Baton",
        "kind": "instance",
        "software": { "name": "Baton", "version": software_version },
        "implementation": { "description": "Baton coordination server", "url": "/api/v1/fhir" },
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": false,
                "description": "Bearer tokens (JWT), as for the rest of the API",
            },
            "resource": [
                {
                    "type": "Task",
                    "interaction": [{ "code": "read" }, { "code": "search-type" }],
                    "searchParam": [
                        { "name": "status", "type": "token" },
                        { "name": "owner", "type": "reference" },
                        { "name": "code", "type": "token" },
                        { "name": "location", "type": "reference",
                          "documentation": "Baton's unit, as `Location/<unit>` or the unit id" },
                        { "name": "_count", "type": "number" },
                    ],
                },
                {
                    "type": "AuditEvent",
                    "interaction": [{ "code": "search-type" }],
                    "searchParam": [
                        { "name": "entity", "type": "reference",
                          "documentation": "`Task/<id>`: the task's history" },
                        { "name": "_count", "type": "number" },
                    ],
                },
            ],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A consult's state before any event, opened.
    fn open_consult() -> (std::sync::Arc<Template>, TaskState) {
        let templates = baton_core::TemplateRegistry::shipped();
        let template = templates
            .get(&baton_core::template::TemplateRef {
                id: "consult".into(),
                version: 1,
            })
            .unwrap()
            .clone();
        let meta = TaskMeta {
            schema: 1,
            doc_type: "task".into(),
            template: baton_core::template::TemplateRef {
                id: template.id.clone(),
                version: template.version,
            },
            unit: "4W".into(),
            subject: baton_core::doc::Subject {
                reference: "Patient/1".into(),
                label: "Bed 1".into(),
            },
            acuity: "routine".into(),
            created: 1_767_225_600_000,
        };
        let mut state = TaskState::new(&template, &meta);
        state.status = Status::Open;
        (template, state)
    }

    #[test]
    fn each_state_of_the_work_has_its_task_status() {
        let (template, mut state) = open_consult();
        assert_eq!(status(&state), "requested");
        assert_eq!(
            business_status(&state, &template)["coding"][0]["code"],
            "awaiting-owner"
        );
        state.owner = Some(baton_core::fold::Owner {
            user: "dr.fox".into(),
            role: "physician".into(),
            since: 1,
            event: "e1".into(),
        });
        assert_eq!(status(&state), "received");
        assert_eq!(
            business_status(&state, &template)["coding"][0]["code"],
            "awaiting-acknowledgment"
        );
        state.acknowledged = Some(baton_core::fold::Acknowledgment {
            user: "dr.fox".into(),
            at: 2,
            device_time: 2,
            event: "e2".into(),
        });
        assert_eq!(status(&state), "accepted");
        state.steps[0].status = StepStatus::InProgress;
        assert_eq!(status(&state), "in-progress");
        state.escalation_level = 2;
        let business = business_status(&state, &template);
        assert_eq!(business["coding"][0]["code"], "escalated");
        assert!(
            business["text"]
                .as_str()
                .unwrap()
                .contains("escalation level 2")
        );
        for (fold, fhir) in [
            (Status::Pending, "draft"),
            (Status::Waiting, "on-hold"),
            (Status::Completed, "completed"),
            (Status::Cancelled, "cancelled"),
        ] {
            state.status = fold;
            assert_eq!(status(&state), fhir);
        }
    }

    #[test]
    fn instants_are_utc_with_milliseconds() {
        assert_eq!(instant(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
        assert_eq!(instant(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_subject_reference_is_a_reference_only_when_it_looks_like_one() {
        assert_eq!(subject("Patient/123", "Bed 1")["reference"], "Patient/123");
        assert_eq!(
            subject("MRN 123", "Bed 1")["identifier"]["value"],
            "MRN 123"
        );
        assert_eq!(
            subject("patient/1", "x")["identifier"]["value"],
            "patient/1"
        );
        assert!(subject("Patient/a b", "x")["reference"].is_null());
    }
}
