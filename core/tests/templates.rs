//! Template loading and checking: the shipped templates, the JSON form, the errors a template
//! author sees, and versioning in the registry.

mod common;

use baton_core::doc::AppendError;
use baton_core::event::EventBody;
use baton_core::template::{TemplateError, TemplateRef};
use baton_core::{Span, Template, TemplateRegistry, shipped};
use common::*;

/// A small template that passes every check. Each bad-input test edits one piece of it.
const MINI: &str = r#"
id = "mini"
version = 1
name = "Mini"
program = { id = "testing", priority = 3 }
owner_role = "nurse"
supervisor_roles = ["charge_nurse"]
ack_window = "30m"

[[steps]]
id = "first"
name = "First"
role = "nurse"
due = "1h"
fields = [
  { name = "count", type = "number", min = 0, max = 10 },
  { name = "mode", type = "choice", options = ["a", "b"] },
]

[[steps]]
id = "second"
name = "Second"
role = "nurse"
after = ["first"]
due = "2h"

[[acuity]]
id = "routine"

[[acuity]]
id = "urgent"
window_percent = 50
escalate_to = 1

[[escalation]]
after = "0m"
target = { role = "charge_nurse" }

[[escalation]]
after = "30m"
target = { secondary_owner = {} }

[[off_track]]
id = "stuck"
when = { escalation_level = 2 }
alert_role = "charge_nurse"
"#;

const FILE: &str = "mini.toml";

/// `MINI` with `from` replaced by `to`. Panics if `from` is not in it, so a test cannot pass on
/// an edit that did nothing.
fn edited(from: &str, to: &str) -> String {
    assert!(MINI.contains(from), "`{from}` is not in the mini template");
    MINI.replacen(from, to, 1)
}

/// Load an edited mini template, expecting it to be refused.
fn refused(from: &str, to: &str) -> TemplateError {
    match Template::from_toml(FILE, &edited(from, to)) {
        Ok(_) => panic!("editing `{from}` to `{to}` should make the template invalid"),
        Err(e) => e,
    }
}

/// Assert the error names the file, the given step (or none) and contains `phrase`.
#[track_caller]
fn assert_error(err: &TemplateError, step: Option<&str>, phrase: &str) {
    assert_eq!(err.file, FILE, "{err}");
    assert_eq!(err.step.as_ref().map(|s| s.as_str()), step, "{err}");
    let message = err.to_string();
    assert!(message.starts_with(FILE), "{message}");
    if let Some(step) = step {
        assert!(message.contains(&format!("step `{step}`")), "{message}");
    }
    assert!(
        message.contains(phrase),
        "expected `{phrase}` in: {message}"
    );
}

// ---- the shipped templates ----

#[test]
fn every_shipped_template_file_loads() {
    assert_eq!(shipped::FILES.len(), 4);
    for (file, text) in shipped::FILES {
        let t = Template::from_toml(file, text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            format!("{}.toml", t.id),
            file,
            "file named after its template"
        );
        assert!(!t.steps.is_empty());
        assert!(!t.escalation.is_empty(), "{file} has an escalation chain");
    }
}

#[test]
fn shipped_registry_holds_the_four_templates_at_version_one() {
    let registry = TemplateRegistry::shipped();
    let mut ids: Vec<String> = registry
        .iter()
        .map(|t| format!("{}@{}", t.id, t.version))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "consult@1",
            "discharge@1",
            "nonformulary_med@1",
            "shift_handoff@1"
        ]
    );
    for id in ["discharge", "consult", "shift_handoff", "nonformulary_med"] {
        let latest = registry.latest(&id.into()).expect(id);
        assert_eq!(latest.version, 1);
        let exact = registry
            .get(&TemplateRef {
                id: id.into(),
                version: 1,
            })
            .expect(id);
        assert_eq!(latest, exact);
    }
    assert!(registry.latest(&"no_such_template".into()).is_none());
}

#[test]
fn defaults_are_filled_in_when_loading() {
    let t = Template::from_toml(FILE, MINI).expect("mini template is valid");
    // A step without `after` follows the one before it; the first follows nothing.
    assert!(t.steps[0].dependencies().is_empty());
    let t = Template::from_toml(FILE, &edited("after = [\"first\"]\n", "")).expect("valid");
    assert_eq!(
        t.steps[1].dependencies(),
        [baton_core::ids::StepId::from("first")]
    );
    // Without `acuity`, a single routine level.
    let no_acuity = MINI.split("[[acuity]]").next().expect("head").to_owned();
    let t = Template::from_toml(FILE, &no_acuity).expect("valid without acuity");
    assert_eq!(t.default_acuity(), "routine");
    assert_eq!(t.acuity.len(), 1);
    assert_eq!(t.ack_window, Span::from_minutes(30));
}

#[test]
fn json_template_loads_the_same_as_its_toml_twin() {
    for template in TemplateRegistry::shipped().iter() {
        let json = serde_json::to_string_pretty(&**template).expect("serialize");
        let file = format!("{}.json", template.id);
        let from_json = Template::from_json(&file, &json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&from_json, &**template);
    }
}

#[test]
fn json_errors_name_the_file_and_line() {
    let err = Template::from_json("mini.json", "{\n  \"id\": \"mini\",\n  \"version\": }")
        .expect_err("malformed JSON");
    assert_eq!(err.file, "mini.json");
    assert_eq!(err.step, None);
    assert!(err.to_string().contains("line 3"), "{err}");
}

// ---- errors a template author sees ----

#[test]
fn toml_syntax_error_names_the_file_and_line() {
    let err = refused("name = \"Mini\"", "name = \"Mini");
    assert_error(&err, None, "line 4");
}

#[test]
fn unknown_top_level_key_is_refused() {
    let err = refused("version = 1\n", "version = 1\ncolour = \"red\"\n");
    assert_error(&err, None, "unknown field `colour`");
}

#[test]
fn unknown_step_key_names_the_step() {
    let err = refused("due = \"2h\"", "due = \"2h\"\ndeadline = \"3h\"");
    assert_error(&err, Some("second"), "unknown field `deadline`");
}

#[test]
fn duplicate_step_id_is_refused() {
    let err = refused("id = \"second\"", "id = \"first\"");
    assert_error(&err, Some("first"), "used twice");
}

#[test]
fn after_naming_an_unknown_step_is_refused() {
    let err = refused("after = [\"first\"]", "after = [\"nowhere\"]");
    assert_error(&err, Some("second"), "`after` names `nowhere`");
}

#[test]
fn after_naming_a_later_step_is_refused() {
    let err = refused(
        "due = \"1h\"\nfields",
        "due = \"1h\"\nafter = [\"second\"]\nfields",
    );
    assert_error(
        &err,
        Some("first"),
        "`after` names `second`, which is not an earlier step",
    );
}

#[test]
fn step_depending_on_itself_is_refused() {
    let err = refused("after = [\"first\"]", "after = [\"second\"]");
    assert_error(&err, Some("second"), "cannot come after itself");
}

#[test]
fn required_step_after_an_optional_step_is_refused() {
    let err = refused(
        "role = \"nurse\"\ndue = \"1h\"",
        "role = \"nurse\"\noptional = true\ndue = \"1h\"",
    );
    assert_error(
        &err,
        Some("second"),
        "a required step cannot wait for the optional step `first`",
    );
    // Both optional is fine.
    let both = edited(
        "role = \"nurse\"\ndue = \"1h\"",
        "role = \"nurse\"\noptional = true\ndue = \"1h\"",
    )
    .replacen(
        "after = [\"first\"]",
        "after = [\"first\"]\noptional = true",
        1,
    );
    Template::from_toml(FILE, &both).expect("an optional step may follow an optional step");
}

#[test]
fn choice_field_without_options_is_refused() {
    let err = refused(", options = [\"a\", \"b\"]", "");
    assert_error(&err, Some("first"), "choice field `mode` needs `options`");
    let err = refused("options = [\"a\", \"b\"]", "options = []");
    assert_error(&err, Some("first"), "choice field `mode` has no options");
}

#[test]
fn options_on_a_number_field_are_refused() {
    let err = refused("max = 10 }", "max = 10, options = [\"x\"] }");
    assert_error(
        &err,
        Some("first"),
        "`options` does not apply to a number field",
    );
}

#[test]
fn number_field_with_min_above_max_is_refused() {
    let err = refused("min = 0, max = 10", "min = 11, max = 10");
    assert_error(
        &err,
        Some("first"),
        "field `count` has min greater than max",
    );
}

#[test]
fn duplicate_field_names_are_refused() {
    let err = refused("name = \"mode\"", "name = \"count\"");
    assert_error(&err, Some("first"), "field `count` is declared twice");
}

#[test]
fn zero_due_is_refused() {
    let err = refused("due = \"2h\"", "due = \"0m\"");
    assert_error(&err, Some("second"), "`due` must be longer than zero");
}

#[test]
fn zero_ack_window_is_refused() {
    let err = refused("ack_window = \"30m\"", "ack_window = \"0m\"");
    assert_error(&err, None, "ack_window must be longer than zero");
}

#[test]
fn template_without_steps_is_refused() {
    let head = MINI.split("[[steps]]").next().expect("head");
    let tail = &MINI[MINI.find("[[acuity]]").expect("acuity")..];
    let err =
        Template::from_toml(FILE, &format!("{head}steps = []\n{tail}")).expect_err("no steps");
    assert_error(&err, None, "at least one step");
    // Leaving `steps` out altogether is a missing field.
    let err = Template::from_toml(FILE, &format!("{head}{tail}")).expect_err("no steps key");
    assert_error(&err, None, "missing field `steps`");
}

#[test]
fn version_zero_is_refused() {
    let err = refused("version = 1", "version = 0");
    assert_error(&err, None, "version must be 1 or more");
}

#[test]
fn program_priority_outside_one_to_five_is_refused() {
    for bad in ["0", "6"] {
        let err = refused("priority = 3", &format!("priority = {bad}"));
        assert_error(
            &err,
            None,
            &format!("program priority {bad} must be between 1"),
        );
    }
    for good in ["1", "5"] {
        Template::from_toml(FILE, &edited("priority = 3", &format!("priority = {good}")))
            .expect("priority within range");
    }
}

#[test]
fn acuity_window_percent_outside_one_to_hundred_is_refused() {
    for bad in ["0", "101"] {
        let err = refused("window_percent = 50", &format!("window_percent = {bad}"));
        assert_error(
            &err,
            None,
            "acuity level `urgent`: window_percent must be between 1 and 100",
        );
    }
}

#[test]
fn acuity_escalating_beyond_the_chain_is_refused() {
    let err = refused("escalate_to = 1", "escalate_to = 3");
    assert_error(
        &err,
        None,
        "acuity level `urgent` escalates to level 3, but the chain has 2 levels",
    );
    let err = refused("escalate_to = 1", "escalate_to = 0");
    assert_error(&err, None, "escalates to level 0");
}

#[test]
fn escalation_levels_out_of_order_are_refused() {
    let err = refused(
        "after = \"0m\"\ntarget = { role",
        "after = \"1h\"\ntarget = { role",
    );
    assert_error(
        &err,
        None,
        "escalation levels must be listed in order of their `after` delay",
    );
    // Equal delays are in order.
    Template::from_toml(FILE, &edited("after = \"30m\"", "after = \"0m\""))
        .expect("equal delays are allowed");
}

#[test]
fn off_track_rule_waiting_for_a_level_beyond_the_chain_is_refused() {
    let err = refused("escalation_level = 2", "escalation_level = 3");
    assert_error(
        &err,
        None,
        "off-track rule `stuck` waits for escalation level 3, but the chain has 2 levels",
    );
}

#[test]
fn bad_durations_say_they_are_not_durations() {
    let err = refused("ack_window = \"30m\"", "ack_window = \"5x\"");
    assert_error(&err, None, "`5x` is not a duration");
    let err = refused("due = \"2h\"", "due = \"2 hours\"");
    assert_error(&err, Some("second"), "`2 hours` is not a duration");
}

#[test]
fn json_step_problems_name_the_step() {
    let discharge = template("discharge");
    let mut json = serde_json::to_value(&*discharge).expect("serialize");
    json["steps"][1]["due"] = "5x".into();
    let text = serde_json::to_string_pretty(&json).expect("json");
    let err = Template::from_json("discharge.json", &text).expect_err("bad due");
    assert_eq!(err.file, "discharge.json");
    assert_eq!(
        err.step.as_ref().map(|s| s.as_str()),
        Some("medication_reconciliation")
    );
    let message = err.to_string();
    assert!(message.contains("`5x` is not a duration"), "{message}");
    assert!(message.contains("line"), "{message}");
}

// ---- versioning ----

/// Discharge v2: the same work with a 10 minute acknowledgment window.
fn discharge_v2() -> Template {
    let mut v2 = (*template("discharge")).clone();
    v2.version = 2;
    v2.ack_window = Span::from_minutes(10);
    v2
}

fn discharge_ref(version: u32) -> TemplateRef {
    TemplateRef {
        id: "discharge".into(),
        version,
    }
}

#[test]
fn newer_version_becomes_latest_and_older_stays_available() {
    let mut registry = TemplateRegistry::shipped();
    registry.insert(discharge_v2()).expect("v2 is new");
    let latest = registry.latest(&"discharge".into()).expect("latest");
    assert_eq!(latest.version, 2);
    assert_eq!(latest.ack_window, Span::from_minutes(10));
    let v1 = registry.get(&discharge_ref(1)).expect("v1 kept");
    assert_eq!(v1.version, 1);
    assert_eq!(v1.ack_window, Span::from_minutes(30));
    assert_eq!(registry.iter().count(), 5);
    // Other templates are untouched.
    assert_eq!(
        registry.latest(&"consult".into()).map(|t| t.version),
        Some(1)
    );
}

#[test]
fn registered_version_cannot_be_replaced_with_other_content() {
    let mut registry = TemplateRegistry::shipped();
    let mut changed = (*template("discharge")).clone();
    changed.ack_window = Span::from_minutes(5);
    let err = registry
        .insert(changed)
        .expect_err("v1 is already registered");
    assert_eq!(err.file, "discharge@1");
    assert!(err.to_string().contains("already registered"), "{err}");
    assert_eq!(
        registry.get(&discharge_ref(1)).map(|t| t.ack_window),
        Some(Span::from_minutes(30)),
        "the registered version is unchanged"
    );
    // The same content again is accepted and changes nothing.
    registry
        .insert((*template("discharge")).clone())
        .expect("identical re-insert");
    assert_eq!(registry.iter().count(), 4);
}

#[test]
fn task_keeps_folding_with_the_version_it_was_created_under() {
    let mut registry = TemplateRegistry::shipped();
    let v1 = registry.latest(&"discharge".into()).expect("v1").clone();
    let mut physician = Person::new("dr.adams", "physician");
    let mut doc = physician.create(&v1, T0);

    let v2 = registry.insert(discharge_v2()).expect("v2");
    assert_eq!(doc.meta().template, discharge_ref(1));
    let task_template = registry.get(&doc.meta().template).expect("known").clone();
    assert_eq!(task_template.version, 1);

    // The old task's acknowledgment window is still v1's 30 minutes.
    let s = state(&doc, &task_template);
    assert_eq!(s.template, discharge_ref(1));
    assert_eq!(s.deadlines.first().map(|d| d.at), Some(T0 + 30 * MINUTE));

    // Folding or appending with v2 is refused: it is not the task's template.
    match doc.state(&v2) {
        Err(AppendError::WrongTemplate { task, given }) => {
            assert_eq!(task, discharge_ref(1));
            assert_eq!(given, discharge_ref(2));
        }
        other => panic!("expected WrongTemplate, got {other:?}"),
    }
    let mut case_manager = Person::new("cm.brown", "case_manager");
    let refused = case_manager.try_act(&mut doc, &v2, T0 + MINUTE, EventBody::Claimed {});
    assert!(matches!(refused, Err(AppendError::WrongTemplate { .. })));

    // A task opened now starts on v2 with its 10 minute window.
    let latest = registry
        .latest(&"discharge".into())
        .expect("latest")
        .clone();
    let new_doc = physician.create(&latest, T0);
    assert_eq!(new_doc.meta().template, discharge_ref(2));
    assert_eq!(
        state(&new_doc, &latest).deadlines.first().map(|d| d.at),
        Some(T0 + 10 * MINUTE)
    );
}

// ---- repeat, re-notify, outside parties ----

#[test]
fn escalation_repeat_and_renotify_are_bounded() {
    let with = |line: &str| {
        edited(
            "ack_window = \"30m\"\n",
            &format!("ack_window = \"30m\"\n{line}\n"),
        )
    };
    let ok = Template::from_toml(
        FILE,
        &with("renotify = { every = \"10m\", times = 3 }\nescalation_repeat = { times = 2, after = \"15m\" }"),
    )
    .expect("valid");
    assert_eq!(
        ok.renotify.map(|r| (r.every, r.times)),
        Some((Span::from_minutes(10), 3))
    );
    assert_eq!(ok.escalation_repeat.map(|r| r.times), Some(2));

    for (line, phrase) in [
        (
            "renotify = { every = \"30s\", times = 3 }",
            "at least a minute",
        ),
        (
            "renotify = { every = \"10m\", times = 0 }",
            "times between 1 and 20",
        ),
        (
            "renotify = { every = \"10m\", times = 500 }",
            "times between 1 and 20",
        ),
        (
            "escalation_repeat = { times = 0, after = \"15m\" }",
            "between 1 and 10",
        ),
        (
            "escalation_repeat = { times = 2, after = \"0m\" }",
            "longer than zero",
        ),
    ] {
        let err = Template::from_toml(FILE, &with(line)).expect_err(line);
        assert_error(&err, None, phrase);
    }
}

#[test]
fn an_outside_party_wait_needs_its_confirmation_and_a_prompt_window_longer_than_zero() {
    let step = "due = \"2h\"\n";
    let err = refused(
        step,
        "due = \"2h\"\nwaits = [{ on = \"pharmacy\", follow_up = \"1h\", external = { confirm_by = \" \" } }]\n",
    );
    assert_error(&err, Some("second"), "needs `confirm_by`");
    let err = refused(
        step,
        "due = \"2h\"\nwaits = [{ on = \"pharmacy\", follow_up = \"1h\", prompt_window = \"0m\" }]\n",
    );
    assert_error(&err, Some("second"), "prompt window");
    let ok = Template::from_toml(
        FILE,
        &edited(
            step,
            "due = \"2h\"\nwaits = [{ on = \"pharmacy\", follow_up = \"1h\", prompt_window = \"20m\", external = { confirm_by = \"fill confirmation faxed\", documentation = [\"prescription\"] } }]\n",
        ),
    )
    .expect("valid");
    let wait = &ok.steps[1].waits[0];
    assert_eq!(wait.prompt_window, Some(Span::from_minutes(20)));
    assert_eq!(
        wait.external.as_ref().map(|e| e.documentation.clone()),
        Some(vec!["prescription".to_owned()])
    );
}

#[test]
fn off_track_rules_carry_their_resolution() {
    let t = Template::from_toml(
        FILE,
        &edited(
            "alert_role = \"charge_nurse\"\n",
            "alert_role = \"charge_nurse\"\nresolution = \"Call the attending.\"\n\n[[off_track]]\nid = \"uncovered\"\nwhen = { nobody_covers = {} }\nalert_role = \"charge_nurse\"\n",
        ),
    )
    .expect("valid");
    assert_eq!(
        t.off_track[0].resolution.as_deref(),
        Some("Call the attending.")
    );
    assert_eq!(t.off_track[1].id, "uncovered");
}
