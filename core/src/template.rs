//! Workflow templates: the steps of a kind of work, who does each, what must be recorded, how
//! long people have, and what happens when they do not act.
//!
//! Templates are written in TOML (or JSON) and loaded with [`Template::from_toml`] /
//! [`Template::from_json`], which check them and report problems naming the file, the step and
//! the problem. A task records the `(id, version)` of its template and keeps it for life; a
//! [`TemplateRegistry`] holds every version so old tasks fold with the rules they started under.

use crate::event::EventKind;
use crate::ids::{Role, StepId, TemplateId};
use crate::time::Span;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// A checked workflow template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub id: TemplateId,
    pub version: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The clinical program this work belongs to and its priority within that program.
    pub program: Program,
    /// The role accountable for the task: its owner claims it and must acknowledge it.
    pub owner_role: Role,
    /// Roles that may open a task from this template. The owner role always may.
    #[serde(default)]
    pub create_roles: Vec<Role>,
    /// Roles that may assign, reassign and cancel, and resolve any exception.
    #[serde(default)]
    pub supervisor_roles: Vec<Role>,
    /// Other roles that may read the task and add notes or raise exceptions.
    #[serde(default)]
    pub participant_roles: Vec<Role>,
    /// How long a new owner has to acknowledge the task.
    pub ack_window: Span,
    pub steps: Vec<StepDef>,
    /// Acuity or risk levels, lowest first. The first is the default for new tasks.
    #[serde(default = "default_acuity")]
    pub acuity: Vec<AcuityLevel>,
    /// What happens, level by level, when a task stalls.
    #[serde(default)]
    pub escalation: Vec<EscalationLevel>,
    /// After the last level, start the chain again from level one (PagerDuty's "repeat").
    /// Without it the chain ends at its last level; an off-track rule on that level turns the
    /// end into an exception.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_repeat: Option<Repeat>,
    /// Tell the current escalation target again until someone acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renotify: Option<Renotify>,
    /// What makes a task an exception, and who is alerted.
    #[serde(default)]
    pub off_track: Vec<OffTrackRule>,
    /// Per event kind, the roles allowed to write it, replacing the defaults.
    #[serde(default)]
    pub permissions: BTreeMap<EventKind, Vec<Role>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    pub id: String,
    /// 1 is the most urgent.
    pub priority: u8,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    pub id: StepId,
    pub name: String,
    /// The role that performs this step.
    pub role: Role,
    /// Steps that must be complete first. When omitted, the step follows the one before it.
    #[serde(default)]
    pub after: Option<Vec<StepId>>,
    /// How long after the step becomes available it is due.
    #[serde(default)]
    pub due: Option<Span>,
    /// An optional step may be skipped; the task completes without it when closed.
    #[serde(default)]
    pub optional: bool,
    /// Every handoff offered on the task must be accepted or declined before this step completes.
    #[serde(default)]
    pub requires_settled_handoffs: bool,
    /// What must be recorded when the step is completed.
    #[serde(default)]
    pub fields: Vec<FieldDef>,
    /// The parties this step may wait on, and when to follow up.
    #[serde(default)]
    pub waits: Vec<WaitDef>,
}

impl StepDef {
    /// The steps that must be complete before this one, after defaults are applied.
    pub fn dependencies(&self) -> &[StepId] {
        self.after.as_deref().unwrap_or_default()
    }
}

/// A field recorded when a step is completed. Written as
/// `{ name = "mode", type = "choice", options = [...], required = true }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawField", into = "RawField")]
pub struct FieldDef {
    pub name: String,
    pub kind: FieldKind,
    pub required: bool,
}

/// The type of a recorded field.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldKind {
    /// Free text, at most `max_len` characters.
    Text {
        max_len: Option<usize>,
    },
    Number {
        min: Option<f64>,
        max: Option<f64>,
    },
    /// One of `options`, as text.
    Choice {
        options: Vec<String>,
    },
    Boolean,
    /// Milliseconds since the Unix epoch.
    Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FieldType {
    Text,
    Number,
    Choice,
    Boolean,
    Timestamp,
}

/// A field as written in a template file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(rename = "type")]
    kind: FieldType,
    #[serde(default = "yes")]
    required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_len: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    options: Option<Vec<String>>,
}

impl TryFrom<RawField> for FieldDef {
    type Error = String;

    fn try_from(raw: RawField) -> Result<Self, String> {
        let misplaced = |key: &str, kind: &str| {
            Err(format!(
                "field `{}`: `{key}` does not apply to a {kind} field",
                raw.name
            ))
        };
        let kind = match raw.kind {
            FieldType::Text => FieldKind::Text {
                max_len: raw.max_len,
            },
            FieldType::Number => FieldKind::Number {
                min: raw.min,
                max: raw.max,
            },
            FieldType::Choice => FieldKind::Choice {
                options: raw
                    .options
                    .clone()
                    .ok_or_else(|| format!("choice field `{}` needs `options`", raw.name))?,
            },
            FieldType::Boolean => FieldKind::Boolean,
            FieldType::Timestamp => FieldKind::Timestamp,
        };
        let kind_name = format!("{:?}", raw.kind).to_lowercase();
        if raw.max_len.is_some() && raw.kind != FieldType::Text {
            return misplaced("max_len", &kind_name);
        }
        if (raw.min.is_some() || raw.max.is_some()) && raw.kind != FieldType::Number {
            return misplaced("min/max", &kind_name);
        }
        if raw.options.is_some() && raw.kind != FieldType::Choice {
            return misplaced("options", &kind_name);
        }
        Ok(FieldDef {
            name: raw.name,
            kind,
            required: raw.required,
        })
    }
}

impl From<FieldDef> for RawField {
    fn from(field: FieldDef) -> Self {
        let mut raw = RawField {
            name: field.name,
            kind: FieldType::Text,
            required: field.required,
            max_len: None,
            min: None,
            max: None,
            options: None,
        };
        match field.kind {
            FieldKind::Text { max_len } => raw.max_len = max_len,
            FieldKind::Number { min, max } => {
                raw.kind = FieldType::Number;
                raw.min = min;
                raw.max = max;
            }
            FieldKind::Choice { options } => {
                raw.kind = FieldType::Choice;
                raw.options = Some(options);
            }
            FieldKind::Boolean => raw.kind = FieldType::Boolean,
            FieldKind::Timestamp => raw.kind = FieldType::Timestamp,
        }
        raw
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitDef {
    /// Who or what is waited on: `family`, `transport_vendor`, `pharmacy`, ...
    pub on: String,
    /// When the owner must follow up if nothing has happened.
    pub follow_up: Span,
    /// How long the owner has, once prompted at the follow-up time, before the chain escalates
    /// (default: the acknowledgment window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_window: Option<Span>,
    /// The party is outside the hospital: responsibility is handed to it, and the wait ends
    /// only with a confirmation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalParty>,
}

/// What handing work to an outside party requires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalParty {
    /// How the follow-up is confirmed: "pharmacy faxes the fill confirmation".
    pub confirm_by: String,
    /// The documents that go with the handoff.
    #[serde(default)]
    pub documentation: Vec<String>,
}

/// Re-notification: every `every`, at most `times` times per level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Renotify {
    pub every: Span,
    pub times: u32,
}

/// The chain's repeat: how many more passes, and the pause after the last level before each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub times: u32,
    pub after: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcuityLevel {
    pub id: String,
    /// Every window (acknowledgment, step due, follow-up, escalation delays) is scaled to this
    /// percentage: 50 halves them.
    #[serde(default = "hundred")]
    pub window_percent: u32,
    /// Entering this level escalates the task at once to this level of the chain.
    #[serde(default)]
    pub escalate_to: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationLevel {
    /// How long after the task stalled (a deadline passed) this level is reached.
    pub after: Span,
    pub target: EscalationTarget,
}

/// Who an escalation goes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum EscalationTarget {
    /// Whoever covers this role on the task's unit.
    Role(Role),
    /// The secondary owner covering the owner role on the task's unit.
    SecondaryOwner {},
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffTrackRule {
    pub id: String,
    pub when: OffTrackWhen,
    pub alert_role: Role,
    /// What the alerted role should do, carried on the exception.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

/// The condition that makes a task an exception.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OffTrackWhen {
    /// The escalation chain reached at least this level.
    EscalationLevel(u32),
    /// The task is still open this long after it was created.
    OpenLongerThan(Span),
    /// The task has been waiting this long.
    WaitingLongerThan(Span),
    /// Nobody covers the owner role on the task's unit when the server routes a new task.
    NobodyCovers {},
    /// An outside party's follow-up is still unconfirmed this long after it was due.
    PartnerUnresponsive(Span),
}

fn default_acuity() -> Vec<AcuityLevel> {
    vec![AcuityLevel {
        id: "routine".into(),
        window_percent: 100,
        escalate_to: None,
    }]
}

fn yes() -> bool {
    true
}

fn hundred() -> u32 {
    100
}

/// A template file with a problem: which file, which step (if any), what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct TemplateError {
    pub file: String,
    pub step: Option<StepId>,
    pub problem: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Some(step) => write!(f, "{}: step `{}`: {}", self.file, step, self.problem),
            None => write!(f, "{}: {}", self.file, self.problem),
        }
    }
}

impl Template {
    /// Read and check a template written in TOML. `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Template, TemplateError> {
        let template: Template = toml::from_str(text).map_err(|e| {
            let steps = toml::from_str::<toml::Table>(text)
                .ok()
                .and_then(|t| t.get("steps")?.as_array().cloned())
                .unwrap_or_default();
            TemplateError {
                file: file.to_owned(),
                step: step_with_problem(
                    &steps,
                    e.message(),
                    |s| s.clone().try_into().map_err(|e| e.message().to_owned()),
                    |s| s.get("id")?.as_str(),
                ),
                problem: e.to_string().trim_end().replace('\n', " "),
            }
        })?;
        template.checked(file)
    }

    /// Read and check a template written in JSON. `file` names it in errors.
    pub fn from_json(file: &str, text: &str) -> Result<Template, TemplateError> {
        let template: Template = serde_json::from_str(text).map_err(|e| {
            let problem = e.to_string();
            let steps = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|t| t.get("steps")?.as_array().cloned())
                .unwrap_or_default();
            TemplateError {
                file: file.to_owned(),
                step: step_with_problem(
                    &steps,
                    &problem,
                    |s| serde_json::from_value(s.clone()).map_err(|e| e.to_string()),
                    |s| s.get("id")?.as_str(),
                ),
                problem,
            }
        })?;
        template.checked(file)
    }

    pub fn step(&self, id: &StepId) -> Option<&StepDef> {
        self.steps.iter().find(|s| &s.id == id)
    }

    pub fn acuity_level(&self, id: &str) -> Option<&AcuityLevel> {
        self.acuity.iter().find(|a| a.id == id)
    }

    /// The acuity a new task starts at when none is given.
    pub fn default_acuity(&self) -> &str {
        self.acuity.first().map_or("routine", |a| a.id.as_str())
    }

    /// The window percentage of an acuity level (100 for an unknown level).
    pub fn window_percent(&self, acuity: &str) -> u32 {
        self.acuity_level(acuity).map_or(100, |a| a.window_percent)
    }

    /// Every role that takes part in this template in any way.
    pub fn roles(&self) -> BTreeSet<&Role> {
        let mut roles: BTreeSet<&Role> = BTreeSet::new();
        roles.insert(&self.owner_role);
        roles.extend(&self.create_roles);
        roles.extend(&self.supervisor_roles);
        roles.extend(&self.participant_roles);
        roles.extend(self.steps.iter().map(|s| &s.role));
        roles.extend(self.off_track.iter().map(|r| &r.alert_role));
        roles.extend(self.escalation.iter().filter_map(|l| match &l.target {
            EscalationTarget::Role(role) => Some(role),
            EscalationTarget::SecondaryOwner {} => None,
        }));
        roles.extend(self.permissions.values().flatten());
        roles
    }

    /// Whether the template names `role` anywhere: [`Template::roles`] without building the set.
    pub fn names_role(&self, role: &Role) -> bool {
        self.owner_role == *role
            || self.create_roles.contains(role)
            || self.supervisor_roles.contains(role)
            || self.participant_roles.contains(role)
            || self.steps.iter().any(|s| s.role == *role)
            || self.off_track.iter().any(|r| r.alert_role == *role)
            || self.escalation.iter().any(|l| match &l.target {
                EscalationTarget::Role(r) => r == role,
                EscalationTarget::SecondaryOwner {} => false,
            })
            || self.permissions.values().flatten().any(|r| r == role)
    }

    /// Fill in defaults and check every rule a template must follow.
    fn checked(mut self, file: &str) -> Result<Template, TemplateError> {
        let fail = |step: Option<&StepId>, problem: String| TemplateError {
            file: file.to_owned(),
            step: step.cloned(),
            problem,
        };
        if self.id.as_str().is_empty() || !is_identifier(self.id.as_str()) {
            return Err(fail(
                None,
                format!(
                    "template id `{}` must be lower-case letters, digits and `_`",
                    self.id
                ),
            ));
        }
        if self.version == 0 {
            return Err(fail(None, "version must be 1 or more".into()));
        }
        if self.steps.is_empty() {
            return Err(fail(None, "a template needs at least one step".into()));
        }
        if self.ack_window == Span::ZERO {
            return Err(fail(None, "ack_window must be longer than zero".into()));
        }
        if !(1..=5).contains(&self.program.priority) {
            return Err(fail(
                None,
                format!(
                    "program priority {} must be between 1 (most urgent) and 5",
                    self.program.priority
                ),
            ));
        }
        for role in self.roles() {
            if !is_identifier(role.as_str()) {
                return Err(fail(
                    None,
                    format!("role `{role}` must be lower-case letters, digits and `_`"),
                ));
            }
        }

        // Steps: unique ids, known dependencies that come earlier, sound fields and waits.
        let mut seen: BTreeMap<StepId, &StepDef> = BTreeMap::new();
        let mut previous: Option<StepId> = None;
        for step in &mut self.steps {
            let id = step.id.clone();
            if !is_identifier(id.as_str()) {
                return Err(fail(
                    Some(&id),
                    "step ids must be lower-case letters, digits and `_`".into(),
                ));
            }
            if seen.contains_key(&id) {
                return Err(fail(Some(&id), "this step id is used twice".into()));
            }
            if step.after.is_none() {
                step.after = Some(previous.iter().cloned().collect());
            }
            for dep in step.dependencies() {
                match seen.get(dep) {
                    None if dep == &id => {
                        return Err(fail(Some(&id), "a step cannot come after itself".into()));
                    }
                    None => {
                        return Err(fail(
                            Some(&id),
                            format!(
                                "`after` names `{dep}`, which is not an earlier step of this template"
                            ),
                        ));
                    }
                    Some(dep_step) if dep_step.optional && !step.optional => {
                        return Err(fail(
                            Some(&id),
                            format!("a required step cannot wait for the optional step `{dep}`"),
                        ));
                    }
                    Some(_) => {}
                }
            }
            if step.due == Some(Span::ZERO) {
                return Err(fail(Some(&id), "`due` must be longer than zero".into()));
            }
            let mut names = BTreeSet::new();
            for field in &step.fields {
                if !names.insert(field.name.as_str()) {
                    return Err(fail(
                        Some(&id),
                        format!("field `{}` is declared twice", field.name),
                    ));
                }
                if !is_identifier(&field.name) {
                    return Err(fail(
                        Some(&id),
                        format!(
                            "field name `{}` must be lower-case letters, digits and `_`",
                            field.name
                        ),
                    ));
                }
                match &field.kind {
                    FieldKind::Choice { options } if options.is_empty() => {
                        return Err(fail(
                            Some(&id),
                            format!("choice field `{}` has no options", field.name),
                        ));
                    }
                    FieldKind::Number {
                        min: Some(min),
                        max: Some(max),
                    } if min > max => {
                        return Err(fail(
                            Some(&id),
                            format!("number field `{}` has min greater than max", field.name),
                        ));
                    }
                    _ => {}
                }
            }
            let mut waits = BTreeSet::new();
            for wait in &step.waits {
                if !waits.insert(wait.on.as_str()) {
                    return Err(fail(
                        Some(&id),
                        format!("waiting on `{}` is declared twice", wait.on),
                    ));
                }
                if wait.prompt_window == Some(Span::ZERO) {
                    return Err(fail(
                        Some(&id),
                        format!(
                            "the prompt window when waiting on `{}` must be longer than zero",
                            wait.on
                        ),
                    ));
                }
                if wait
                    .external
                    .as_ref()
                    .is_some_and(|e| e.confirm_by.trim().is_empty())
                {
                    return Err(fail(
                        Some(&id),
                        format!(
                            "waiting on the outside party `{}` needs `confirm_by`",
                            wait.on
                        ),
                    ));
                }
                if wait.follow_up == Span::ZERO {
                    return Err(fail(
                        Some(&id),
                        format!(
                            "the follow-up when waiting on `{}` must be longer than zero",
                            wait.on
                        ),
                    ));
                }
            }
            previous = Some(id.clone());
            seen.insert(id, step);
        }

        if self.acuity.is_empty() {
            return Err(fail(
                None,
                "at least one acuity level is needed (omit `acuity` for the default)".into(),
            ));
        }
        let mut acuity_ids = BTreeSet::new();
        for level in &self.acuity {
            if !acuity_ids.insert(level.id.as_str()) {
                return Err(fail(
                    None,
                    format!("acuity level `{}` is declared twice", level.id),
                ));
            }
            if !(1..=100).contains(&level.window_percent) {
                return Err(fail(
                    None,
                    format!(
                        "acuity level `{}`: window_percent must be between 1 and 100",
                        level.id
                    ),
                ));
            }
            if let Some(to) = level.escalate_to
                && (to == 0 || to as usize > self.escalation.len())
            {
                return Err(fail(
                    None,
                    format!(
                        "acuity level `{}` escalates to level {to}, but the chain has {} levels",
                        level.id,
                        self.escalation.len()
                    ),
                ));
            }
        }
        for pair in self.escalation.windows(2) {
            if pair[1].after < pair[0].after {
                return Err(fail(
                    None,
                    "escalation levels must be listed in order of their `after` delay".into(),
                ));
            }
        }
        if let Some(repeat) = &self.escalation_repeat {
            if self.escalation.is_empty() {
                return Err(fail(
                    None,
                    "escalation_repeat needs an escalation chain to repeat".into(),
                ));
            }
            if repeat.times == 0 || repeat.times > 10 || repeat.after == Span::ZERO {
                return Err(fail(
                    None,
                    "escalation_repeat: times must be between 1 and 10 and after longer than zero"
                        .into(),
                ));
            }
        }
        if self
            .renotify
            .is_some_and(|r| r.every < Span::from_minutes(1) || r.times == 0 || r.times > 20)
        {
            return Err(fail(
                None,
                "renotify: every must be at least a minute, times between 1 and 20".into(),
            ));
        }
        let mut rule_ids = BTreeSet::new();
        for rule in &self.off_track {
            if !rule_ids.insert(rule.id.as_str()) || !is_identifier(&rule.id) {
                return Err(fail(
                    None,
                    format!(
                        "off-track rule id `{}` must be unique, lower-case letters, digits and `_`",
                        rule.id
                    ),
                ));
            }
            if let OffTrackWhen::EscalationLevel(level) = rule.when
                && (level == 0 || level as usize > self.escalation.len())
            {
                return Err(fail(
                    None,
                    format!(
                        "off-track rule `{}` waits for escalation level {level}, but the chain has {} levels",
                        rule.id,
                        self.escalation.len()
                    ),
                ));
            }
        }
        for (kind, roles) in &self.permissions {
            if roles.is_empty() {
                return Err(fail(
                    None,
                    format!(
                        "permissions for `{kind}` list no roles; remove the entry to keep the default"
                    ),
                ));
            }
        }
        Ok(self)
    }
}

/// The step a problem found while reading a template comes from. Serde names only a line, so
/// each step is read on its own: the first that fails with the same message is the one.
fn step_with_problem<V>(
    steps: &[V],
    problem: &str,
    read: impl Fn(&V) -> Result<StepDef, String>,
    id: impl Fn(&V) -> Option<&str>,
) -> Option<StepId> {
    steps.iter().find_map(|step| match read(step) {
        Err(message) if problem.contains(&message) => id(step).map(StepId::from),
        _ => None,
    })
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A task's reference to the template version it was created from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TemplateRef {
    pub id: TemplateId,
    pub version: u32,
}

impl fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.version)
    }
}

/// Every version of every known template.
#[derive(Clone, Debug, Default)]
pub struct TemplateRegistry {
    templates: BTreeMap<TemplateRef, Arc<Template>>,
}

impl TemplateRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The four templates Baton ships with.
    pub fn shipped() -> Self {
        let mut registry = Self::new();
        for template in crate::shipped::templates() {
            registry
                .insert(template)
                .expect("shipped templates are distinct");
        }
        registry
    }

    /// Add a template version. A version already registered with other content is refused:
    /// running tasks depend on it staying as it was.
    pub fn insert(&mut self, template: Template) -> Result<Arc<Template>, TemplateError> {
        let key = TemplateRef {
            id: template.id.clone(),
            version: template.version,
        };
        if let Some(existing) = self.templates.get(&key) {
            if **existing != template {
                return Err(TemplateError {
                    file: key.to_string(),
                    step: None,
                    problem: "this version is already registered with different content; publish a new version".into(),
                });
            }
            return Ok(existing.clone());
        }
        let template = Arc::new(template);
        self.templates.insert(key, template.clone());
        Ok(template)
    }

    pub fn get(&self, template: &TemplateRef) -> Option<&Arc<Template>> {
        self.templates.get(template)
    }

    /// The newest version of a template: what new tasks start with.
    pub fn latest(&self, id: &TemplateId) -> Option<&Arc<Template>> {
        self.templates
            .range(
                TemplateRef {
                    id: id.clone(),
                    version: 0,
                }..=TemplateRef {
                    id: id.clone(),
                    version: u32::MAX,
                },
            )
            .next_back()
            .map(|(_, t)| t)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Template>> {
        self.templates.values()
    }
}

/// The templates a server knows, shared by everything that reads them, to which an
/// administrator may add versions while it runs. Readers take the registry as it is now
/// ([`SharedTemplates::current`]); a task keeps the version it started with.
/// Clones share the one registry.
#[derive(Clone, Debug, Default)]
pub struct SharedTemplates(Arc<std::sync::RwLock<Arc<TemplateRegistry>>>);

impl SharedTemplates {
    pub fn new(registry: TemplateRegistry) -> Self {
        SharedTemplates(Arc::new(std::sync::RwLock::new(Arc::new(registry))))
    }

    /// The registry as it is now.
    pub fn current(&self) -> Arc<TemplateRegistry> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn get(&self, template: &TemplateRef) -> Option<Arc<Template>> {
        self.current().get(template).cloned()
    }

    /// Add `template` as its id's newest version: refused unless its version is above every
    /// version of that id already known (a known version never changes, since running tasks
    /// depend on it).
    pub fn add(&self, template: Template) -> Result<Arc<Template>, TemplateError> {
        let mut registry = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(latest) = registry.latest(&template.id)
            && latest.version >= template.version
        {
            return Err(TemplateError {
                file: template.id.to_string(),
                step: None,
                problem: format!(
                    "version {} is not newer than version {}, the latest; publish version {}",
                    template.version,
                    latest.version,
                    latest.version + 1
                ),
            });
        }
        let mut next = TemplateRegistry::clone(&registry);
        let added = next.insert(template)?;
        *registry = Arc::new(next);
        Ok(added)
    }
}
