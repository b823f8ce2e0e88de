"""Validate FHIR resources with the `fhir.resources` R4B models.

Reads a JSON array of resources on stdin; parses each with the model its `resourceType` names
(a Bundle's entries are parsed as part of it), then checks the codes of the required value
sets the models leave unchecked (Task.status among the 12, AuditEvent.action, ...). Prints one
line per resource and exits 1 if any is rejected, naming it and why.
"""

import importlib
import json
import sys


def model(resource_type):
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    return getattr(module, resource_type)


# Required bindings (R4): the element's path within its resource, and its codes.
REQUIRED = {
    "Task": {
        "status": {"draft", "requested", "received", "accepted", "rejected", "ready",
                   "cancelled", "in-progress", "on-hold", "failed", "completed",
                   "entered-in-error"},
        "intent": {"unknown", "proposal", "plan", "order", "original-order", "reflex-order",
                   "filler-order", "instance-order", "option"},
        "priority": {"routine", "urgent", "asap", "stat"},
    },
    "AuditEvent": {"action": {"C", "R", "U", "D", "E"}, "outcome": {"0", "4", "8", "12"}},
    "Bundle": {"type": {"document", "message", "transaction", "transaction-response", "batch",
                        "batch-response", "history", "searchset", "collection"}},
    "CapabilityStatement": {"status": {"draft", "active", "retired", "unknown"},
                            "kind": {"instance", "capability", "requirements"}},
}
ISSUE_CODES = {"invalid", "structure", "required", "value", "invariant", "security", "login",
               "unknown", "expired", "forbidden", "suppressed", "processing", "not-supported",
               "duplicate", "multiple-matches", "not-found", "deleted", "too-long",
               "code-invalid", "extension", "too-costly", "business-rule", "conflict",
               "transient", "lock-error", "no-store", "exception", "timeout", "incomplete",
               "throttled", "informational"}


def codes_wrong(resource):
    """What in `resource` (and a Bundle's entries) is outside a required value set."""
    kind = resource.get("resourceType")
    wrong = []
    for element, codes in REQUIRED.get(kind, {}).items():
        if element in resource and resource[element] not in codes:
            wrong.append(f"{kind}.{element} = {resource[element]!r}")
    if kind == "OperationOutcome":
        for issue in resource.get("issue", []):
            if issue.get("severity") not in {"fatal", "error", "warning", "information"}:
                wrong.append(f"OperationOutcome.issue.severity = {issue.get('severity')!r}")
            if issue.get("code") not in ISSUE_CODES:
                wrong.append(f"OperationOutcome.issue.code = {issue.get('code')!r}")
    for entry in resource.get("entry", []) if kind == "Bundle" else []:
        wrong.extend(codes_wrong(entry.get("resource", {})))
    return wrong


def main():
    resources = json.load(sys.stdin)
    rejected = 0
    for index, resource in enumerate(resources):
        kind = resource.get("resourceType", "?")
        name = f"{index}: {kind}/{resource.get('id', '-')}"
        try:
            model(kind).model_validate(resource)
            wrong = codes_wrong(resource)
            if wrong:
                raise ValueError("codes outside their required value sets: " + "; ".join(wrong))
            print(f"ok {name}")
        except Exception as error:  # the model's own errors, named in full
            rejected += 1
            print(f"REJECTED {name}: {error}")
    sys.exit(1 if rejected else 0)


if __name__ == "__main__":
    main()
