//! The fold: a task's state, derived from its events and nothing else.
//!
//! Events are sorted by `(hlc, user, id)` and applied one by one. Each is first checked against
//! the state so far with the same rules that validate it before it is written
//! ([`crate::rules::check`]). An event that its author could validly write but that no longer
//! holds once merged with concurrent events (two nurses both claimed; a step completed twice; a
//! reassignment of a task someone else just completed) is **not applied and is listed as a
//! conflict**, naming the rule and the event it lost to. The written rule is simple: *the
//! earlier event in fold order wins*. Nothing is dropped silently: every event appears in
//! `history` with its outcome.
//!
//! The fold is deterministic: replicas holding the same events produce byte-identical state
//! (only ordered collections are used).

use crate::doc::TaskMeta;
use crate::event::{
    Actor, EscalationReason, EscalationTo, Event, EventBody, EventKind, FieldValue, Transfer,
};
use crate::hlc::Hlc;
use crate::ids::{EventId, Role, StepId, UnitId, UserId};
use crate::rules::{self, Refusal};
use crate::template::{Template, TemplateRef};
use crate::time::{Millis, Span};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The document exists but its `created` event has not arrived yet.
    Pending,
    Open,
    /// A step waits on someone outside the task; its follow-up replaces that step's due time.
    Waiting,
    Completed,
    Cancelled,
}

impl Status {
    pub fn is_closed(self) -> bool {
        matches!(self, Status::Completed | Status::Cancelled)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    pub user: UserId,
    pub role: Role,
    pub since: Millis,
    pub event: EventId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Acknowledgment {
    pub user: UserId,
    /// HLC wall time of the acknowledgment.
    pub at: Millis,
    /// What the acknowledging device's clock read.
    pub device_time: Millis,
    pub event: EventId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Waiting for the steps it comes after.
    Blocked,
    Available,
    InProgress,
    Completed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepCompletion {
    pub by: Actor,
    pub at: Millis,
    pub fields: BTreeMap<String, FieldValue>,
    pub event: EventId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub id: StepId,
    pub role: Role,
    pub status: StepStatus,
    pub available_since: Option<Millis>,
    pub due_at: Option<Millis>,
    pub started_by: Option<Actor>,
    pub completed: Option<StepCompletion>,
}

/// A step waiting on someone outside the task. Several steps may wait at once; completing a
/// step ends only its own waits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    pub on: String,
    pub step: StepId,
    pub reason: Option<String>,
    pub since: Millis,
    pub follow_up_at: Millis,
    /// When the server told the owner the follow-up was due.
    pub prompted_at: Option<Millis>,
    /// How long the owner has, once prompted, before the chain escalates (acuity applied).
    pub prompt_window: Span,
    /// Set when the party is outside the hospital.
    pub external: Option<ExternalWait>,
    pub by: Actor,
    pub event: EventId,
}

/// Responsibility handed to an outside party, and what ends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalWait {
    pub transfer: Transfer,
    /// How the follow-up is confirmed, as the template says.
    pub confirm_by: String,
    /// The documentation the template requires with the handoff.
    pub documentation_required: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum HandoffStatus {
    Pending,
    Accepted {
        event: EventId,
        at: Millis,
    },
    Declined {
        event: EventId,
        at: Millis,
        reason: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    pub offer: EventId,
    pub from: Actor,
    pub to: Actor,
    pub item: Option<String>,
    pub note: Option<String>,
    pub offered_at: Millis,
    pub status: HandoffStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    pub by: Actor,
    pub at: Millis,
    pub note: Option<String>,
    pub event: EventId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exception {
    pub event: EventId,
    pub rule: Option<String>,
    pub alert_role: Role,
    pub reason: String,
    /// What the alerted role should do.
    pub resolution: Option<String>,
    pub raised_by: Actor,
    pub raised_at: Millis,
    pub resolved: Option<Resolution>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EscalationRecord {
    pub event: EventId,
    pub level: u32,
    pub round: u32,
    pub reason: EscalationReason,
    pub to: EscalationTo,
    pub cause: Option<String>,
    pub at: Millis,
}

/// What a deadline is for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "for", content = "ref")]
pub enum Cause {
    /// The owner has not acknowledged the task.
    Acknowledgment,
    /// A step is not done.
    Step(StepId),
    /// A wait (the `waiting` event's id) was due for follow-up, the owner was prompted, and
    /// the prompt's window passed.
    FollowUp(EventId),
    /// A handoff offer (its event id) has not been accepted.
    Handoff(EventId),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Acknowledgment => f.write_str("ack"),
            Cause::Step(step) => write!(f, "step:{step}"),
            Cause::FollowUp(wait) => write!(f, "follow_up:{wait}"),
            Cause::Handoff(offer) => write!(f, "handoff:{offer}"),
        }
    }
}

/// A time by which something must happen.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Deadline {
    pub at: Millis,
    pub cause: Cause,
}

/// What became of an event in the fold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    /// A second copy of an action already folded: same id and content, or the server's event of
    /// the same id and kind (two server nodes firing one timer).
    Duplicate,
    /// Could not hold together with an earlier event; see `conflicts`.
    Conflict,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub event: EventId,
    pub kind: EventKind,
    pub actor: Actor,
    pub hlc: Hlc,
    pub device_time: Millis,
    pub outcome: Outcome,
}

/// A note on the task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoteEntry {
    pub by: Actor,
    pub at: Millis,
    pub text: String,
    pub event: EventId,
}

/// A concurrent action that could not hold, kept visible.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    pub event: EventId,
    pub kind: EventKind,
    pub actor: Actor,
    /// The rule the event broke once merged.
    pub refusal: Refusal,
    /// The earlier event that won, when there is one.
    pub lost_to: Option<EventId>,
}

/// Everything a worklist, a task view or the escalation scheduler needs to know about a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub template: TemplateRef,
    pub unit: UnitId,
    pub status: Status,
    pub acuity: String,
    /// The template's program priority (1 is most urgent).
    pub priority: u8,
    pub created_at: Option<Millis>,
    pub created_by: Option<Actor>,
    pub owner_role: Role,
    pub owner: Option<Owner>,
    pub acknowledged: Option<Acknowledgment>,
    /// When the current acknowledgment window opened (creation or the last change of owner).
    pub ack_window_from: Option<Millis>,
    pub steps: Vec<StepState>,
    /// The first step, in template order, that can be worked on now.
    pub current_step: Option<StepId>,
    /// Open waits, in the order they began.
    pub waits: Vec<Waiting>,
    /// Whether the server has routed the new task (assigned it, or raised that nobody covers).
    pub routed: bool,
    /// The escalation level reached since the last progress (ack, claim, step done, ...).
    pub escalation_level: u32,
    /// The pass through a repeating chain, counting from 0.
    pub escalation_round: u32,
    /// How many times progress has reset the escalation chain; part of escalation event ids.
    pub escalation_epoch: u32,
    /// When the current escalation target was last told (escalation or re-notification).
    pub notified_at: Option<Millis>,
    /// Re-notifications sent at the current level.
    pub renotified: u32,
    /// A level that a rise in acuity calls for and that has not been reached yet.
    pub acuity_escalation: Option<AcuityEscalation>,
    pub escalations: Vec<EscalationRecord>,
    pub handoffs: Vec<Handoff>,
    pub exceptions: Vec<Exception>,
    /// Notes, in fold order.
    pub notes: Vec<NoteEntry>,
    /// Open deadlines, earliest first.
    pub deadlines: Vec<Deadline>,
    pub closed_at: Option<Millis>,
    pub history: Vec<HistoryEntry>,
    pub conflicts: Vec<Conflict>,
    /// The greatest stamp among the events: a device stamps its next event after it.
    pub last_hlc: Hlc,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcuityEscalation {
    pub level: u32,
    pub at: Millis,
    pub event: EventId,
}

impl TaskState {
    /// The state of a task before any event: what its document's fixed fields say.
    pub fn new(template: &Template, meta: &TaskMeta) -> Self {
        TaskState {
            template: meta.template.clone(),
            unit: meta.unit.clone(),
            status: Status::Pending,
            acuity: meta.acuity.clone(),
            priority: template.program.priority,
            created_at: None,
            created_by: None,
            owner_role: template.owner_role.clone(),
            owner: None,
            acknowledged: None,
            ack_window_from: None,
            steps: template
                .steps
                .iter()
                .map(|s| StepState {
                    id: s.id.clone(),
                    role: s.role.clone(),
                    status: StepStatus::Blocked,
                    available_since: None,
                    due_at: None,
                    started_by: None,
                    completed: None,
                })
                .collect(),
            current_step: None,
            waits: Vec::new(),
            routed: false,
            escalation_level: 0,
            escalation_round: 0,
            escalation_epoch: 0,
            notified_at: None,
            renotified: 0,
            acuity_escalation: None,
            escalations: Vec::new(),
            handoffs: Vec::new(),
            exceptions: Vec::new(),
            notes: Vec::new(),
            deadlines: Vec::new(),
            closed_at: None,
            history: Vec::new(),
            conflicts: Vec::new(),
            last_hlc: Hlc::default(),
        }
    }

    pub fn step(&self, id: &StepId) -> Option<&StepState> {
        self.steps.iter().find(|s| &s.id == id)
    }

    pub fn handoff(&self, offer: &EventId) -> Option<&Handoff> {
        self.handoffs.iter().find(|h| &h.offer == offer)
    }

    pub fn exception(&self, event: &EventId) -> Option<&Exception> {
        self.exceptions.iter().find(|e| &e.event == event)
    }

    pub fn open_exceptions(&self) -> impl Iterator<Item = &Exception> {
        self.exceptions.iter().filter(|e| e.resolved.is_none())
    }

    pub fn pending_handoffs(&self) -> impl Iterator<Item = &Handoff> {
        self.handoffs
            .iter()
            .filter(|h| h.status == HandoffStatus::Pending)
    }

    pub fn wait(&self, event: &EventId) -> Option<&Waiting> {
        self.waits.iter().find(|w| &w.event == event)
    }

    /// The latest note `user` wrote at or after `since`.
    pub fn last_note_by(&self, user: &UserId, since: Millis) -> Option<String> {
        self.notes
            .iter()
            .rev()
            .find(|n| &n.by.user == user && n.at >= since)
            .map(|n| n.text.clone())
    }

    /// Required steps that are not completed yet, in template order.
    pub fn incomplete_required_steps<'a>(
        &'a self,
        template: &'a Template,
    ) -> impl Iterator<Item = &'a StepId> + 'a {
        template
            .steps
            .iter()
            .filter(|def| !def.optional)
            .filter(|def| self.step(&def.id).is_none_or(|s| s.completed.is_none()))
            .map(|def| &def.id)
    }

    /// The earliest open deadline, if any.
    pub fn next_deadline(&self) -> Option<&Deadline> {
        self.deadlines.first()
    }

    /// Apply one event (already known to pass [`rules::check`]).
    fn apply(&mut self, template: &Template, event: &Event) {
        let at = event.at();
        let percent = template.window_percent(&self.acuity);
        if event.actor.is_system() && event.id.as_str() == crate::policy::escalation::ROUTE_EVENT {
            self.routed = true;
        }
        match &event.body {
            EventBody::Created { .. } => {
                self.status = Status::Open;
                self.created_at = Some(at);
                self.created_by = Some(event.actor.clone());
                self.ack_window_from = Some(at);
                self.enter_acuity(template, at, &event.id);
            }
            EventBody::Claimed {} => {
                self.set_owner(
                    event.actor.user.clone(),
                    event.actor.role.clone(),
                    at,
                    &event.id,
                );
                self.acknowledge(event);
                self.progress();
            }
            EventBody::Assigned { user, role } | EventBody::Reassigned { user, role, .. } => {
                self.set_owner(user.clone(), role.clone(), at, &event.id);
                self.acknowledged = None;
                self.progress();
            }
            EventBody::Acknowledged {} => {
                if self.owner.is_none() {
                    self.set_owner(
                        event.actor.user.clone(),
                        event.actor.role.clone(),
                        at,
                        &event.id,
                    );
                }
                self.acknowledge(event);
                self.progress();
            }
            EventBody::StepStarted { step } => {
                if let Some(s) = self.step_mut(step) {
                    s.status = StepStatus::InProgress;
                    s.started_by = Some(event.actor.clone());
                }
            }
            EventBody::StepCompleted { step, fields } => {
                if let Some(s) = self.step_mut(step) {
                    s.status = StepStatus::Completed;
                    s.completed = Some(StepCompletion {
                        by: event.actor.clone(),
                        at,
                        fields: fields.clone(),
                        event: event.id.clone(),
                    });
                }
                self.waits.retain(|w| &w.step != step);
                self.settle_waiting();
                self.progress();
                if self.steps.iter().all(|s| s.completed.is_some()) {
                    self.close(Status::Completed, at);
                }
            }
            EventBody::Waiting {
                on,
                step,
                reason,
                follow_up_at,
                transfer,
            } => {
                // Checked by the rules: the step is current and may wait on `on`.
                if let Ok((step_def, def)) = rules::wait_def(template, self, on, step.as_ref()) {
                    let step = step_def.id.clone();
                    self.waits.retain(|w| !(w.step == step && &w.on == on));
                    self.waits.push(Waiting {
                        on: on.clone(),
                        step,
                        reason: reason.clone(),
                        since: at,
                        follow_up_at: follow_up_at
                            .unwrap_or_else(|| def.follow_up.scaled(percent).after(at)),
                        prompted_at: None,
                        prompt_window: def
                            .prompt_window
                            .unwrap_or(template.ack_window)
                            .scaled(percent),
                        external: def.external.as_ref().zip(transfer.as_ref()).map(
                            |(party, transfer)| ExternalWait {
                                transfer: transfer.clone(),
                                confirm_by: party.confirm_by.clone(),
                                documentation_required: party.documentation.clone(),
                            },
                        ),
                        by: event.actor.clone(),
                        event: event.id.clone(),
                    });
                    self.settle_waiting();
                    self.progress();
                }
            }
            EventBody::Resumed { wait, .. } => {
                match wait {
                    Some(wait) => self.waits.retain(|w| &w.event != wait),
                    None => self.waits.clear(),
                }
                self.settle_waiting();
                self.progress();
            }
            EventBody::FollowUpDue { wait } => {
                if let Some(w) = self.waits.iter_mut().find(|w| &w.event == wait) {
                    w.prompted_at = Some(at);
                }
            }
            EventBody::Note { text } => self.notes.push(NoteEntry {
                by: event.actor.clone(),
                at,
                text: text.clone(),
                event: event.id.clone(),
            }),
            EventBody::HandoffOffered { to, item, note } => self.handoffs.push(Handoff {
                offer: event.id.clone(),
                // The server offers at a shift change on the owner's behalf.
                from: match (&self.owner, event.actor.is_system()) {
                    (Some(owner), true) => Actor::new(owner.user.clone(), owner.role.clone()),
                    _ => event.actor.clone(),
                },
                to: to.clone(),
                item: item.clone(),
                note: note.clone(),
                offered_at: at,
                status: HandoffStatus::Pending,
            }),
            EventBody::HandoffAccepted { offer } => {
                let mut takes_task = None;
                if let Some(h) = self.handoffs.iter_mut().find(|h| &h.offer == offer) {
                    h.status = HandoffStatus::Accepted {
                        event: event.id.clone(),
                        at,
                    };
                    if h.item.is_none() {
                        takes_task = Some(h.to.clone());
                    }
                }
                if let Some(to) = takes_task {
                    self.set_owner(to.user, to.role, at, &event.id);
                    self.acknowledge(event);
                }
                self.progress();
            }
            EventBody::HandoffDeclined { offer, reason } => {
                if let Some(h) = self.handoffs.iter_mut().find(|h| &h.offer == offer) {
                    h.status = HandoffStatus::Declined {
                        event: event.id.clone(),
                        at,
                        reason: reason.clone(),
                    };
                }
            }
            EventBody::Escalated {
                level,
                reason,
                to,
                cause,
                round,
            } => {
                if *round > self.escalation_round {
                    self.escalation_round = *round;
                    self.escalation_level = *level;
                } else {
                    self.escalation_level = self.escalation_level.max(*level);
                }
                self.notified_at = Some(at);
                self.renotified = 0;
                // The server hands an unacknowledged task to the person its chain names in the
                // owner role (the secondary owner): they are now accountable and must
                // acknowledge in their own window. The climb goes on from this level.
                if event.actor.is_system()
                    && to.role == self.owner_role
                    && self.acknowledged.is_none()
                    && let Some(user) = &to.user
                    && self.owner.as_ref().is_none_or(|o| &o.user != user)
                {
                    self.set_owner(user.clone(), to.role.clone(), at, &event.id);
                }
                if self
                    .acuity_escalation
                    .as_ref()
                    .is_some_and(|a| a.level <= *level)
                {
                    self.acuity_escalation = None;
                }
                self.escalations.push(EscalationRecord {
                    event: event.id.clone(),
                    level: *level,
                    round: *round,
                    reason: *reason,
                    to: to.clone(),
                    cause: cause.clone(),
                    at,
                });
            }
            EventBody::Renotified { .. } => {
                self.notified_at = Some(at);
                self.renotified += 1;
            }
            EventBody::ExceptionRaised {
                rule,
                alert_role,
                reason,
                resolution,
            } => self.exceptions.push(Exception {
                event: event.id.clone(),
                rule: rule.clone(),
                alert_role: alert_role.clone(),
                reason: reason.clone(),
                resolution: resolution.clone(),
                raised_by: event.actor.clone(),
                raised_at: at,
                resolved: None,
            }),
            EventBody::ExceptionResolved { exception, note } => {
                if let Some(e) = self.exceptions.iter_mut().find(|e| &e.event == exception) {
                    e.resolved = Some(Resolution {
                        by: event.actor.clone(),
                        at,
                        note: note.clone(),
                        event: event.id.clone(),
                    });
                }
            }
            EventBody::AcuityChanged { acuity } => {
                self.acuity = acuity.clone();
                self.enter_acuity(template, at, &event.id);
            }
            EventBody::Cancelled { .. } => self.close(Status::Cancelled, at),
            EventBody::Completed { .. } => self.close(Status::Completed, at),
        }
        // Only these move the task's status, its steps or its acuity, which step availability
        // and due times are made of.
        if matches!(
            event.body,
            EventBody::Created { .. }
                | EventBody::StepStarted { .. }
                | EventBody::StepCompleted { .. }
                | EventBody::AcuityChanged { .. }
                | EventBody::Waiting { .. }
                | EventBody::Resumed { .. }
                | EventBody::Cancelled { .. }
                | EventBody::Completed { .. }
        ) {
            self.refresh_steps(template, at);
        }
    }

    fn step_mut(&mut self, id: &StepId) -> Option<&mut StepState> {
        self.steps.iter_mut().find(|s| &s.id == id)
    }

    fn set_owner(&mut self, user: UserId, role: Role, at: Millis, event: &EventId) {
        self.owner = Some(Owner {
            user,
            role,
            since: at,
            event: event.clone(),
        });
        self.ack_window_from = Some(at);
    }

    fn acknowledge(&mut self, event: &Event) {
        self.acknowledged = Some(Acknowledgment {
            user: event.actor.user.clone(),
            at: event.at(),
            device_time: event.device_time,
            event: event.id.clone(),
        });
    }

    /// Progress resets the escalation chain: the next stall starts again at level one.
    fn progress(&mut self) {
        if self.escalation_level > 0 || self.escalation_round > 0 {
            self.escalation_level = 0;
            self.escalation_round = 0;
            self.escalation_epoch += 1;
        }
        self.notified_at = None;
        self.renotified = 0;
    }

    /// The task waits while any of its steps does.
    fn settle_waiting(&mut self) {
        if !self.status.is_closed() {
            self.status = if self.waits.is_empty() {
                Status::Open
            } else {
                Status::Waiting
            };
        }
    }

    fn enter_acuity(&mut self, template: &Template, at: Millis, event: &EventId) {
        self.acuity_escalation = template
            .acuity_level(&self.acuity)
            .and_then(|a| a.escalate_to)
            .filter(|&level| level > self.escalation_level)
            .map(|level| AcuityEscalation {
                level,
                at,
                event: event.clone(),
            });
    }

    fn close(&mut self, status: Status, at: Millis) {
        self.status = status;
        self.closed_at = Some(at);
        self.waits.clear();
        self.acuity_escalation = None;
    }

    /// Make steps whose dependencies are complete available, and settle due times.
    fn refresh_steps(&mut self, template: &Template, at: Millis) {
        if self.status == Status::Pending {
            return;
        }
        let done: BTreeSet<StepId> = self
            .steps
            .iter()
            .filter(|s| s.completed.is_some())
            .map(|s| s.id.clone())
            .collect();
        let percent = template.window_percent(&self.acuity);
        for (def, step) in template.steps.iter().zip(self.steps.iter_mut()) {
            if step.status == StepStatus::Blocked
                && def.dependencies().iter().all(|d| done.contains(d))
            {
                step.status = StepStatus::Available;
                step.available_since = Some(at);
            }
            step.due_at = match (step.status, step.available_since, def.due) {
                (StepStatus::Available | StepStatus::InProgress, Some(since), Some(due)) => {
                    Some(due.scaled(percent).after(since))
                }
                _ => None,
            };
        }
        self.current_step = self
            .steps
            .iter()
            .find(|s| matches!(s.status, StepStatus::Available | StepStatus::InProgress))
            .map(|s| s.id.clone());
    }

    /// Recompute the open deadlines from the state.
    fn settle_deadlines(&mut self, template: &Template) {
        self.deadlines.clear();
        if self.status.is_closed() || self.status == Status::Pending {
            return;
        }
        let window = template
            .ack_window
            .scaled(template.window_percent(&self.acuity));
        if self.acknowledged.is_none()
            && let Some(from) = self.ack_window_from
        {
            self.deadlines.push(Deadline {
                at: window.after(from),
                cause: Cause::Acknowledgment,
            });
        }
        // A waiting step's due time gives way to its wait: the server prompts the owner at the
        // follow-up time, and the wait is a deadline once that prompt's window has passed.
        let waits = &self.waits;
        self.deadlines.extend(
            self.steps
                .iter()
                .filter(|s| !waits.iter().any(|w| w.step == s.id))
                .filter_map(|s| {
                    s.due_at.map(|at| Deadline {
                        at,
                        cause: Cause::Step(s.id.clone()),
                    })
                }),
        );
        self.deadlines.extend(waits.iter().filter_map(|w| {
            w.prompted_at.map(|prompted| Deadline {
                at: w.prompt_window.after(prompted),
                cause: Cause::FollowUp(w.event.clone()),
            })
        }));
        let handoffs: Vec<Deadline> = self
            .pending_handoffs()
            .map(|h| Deadline {
                at: window.after(h.offered_at),
                cause: Cause::Handoff(h.offer.clone()),
            })
            .collect();
        self.deadlines.extend(handoffs);
        self.deadlines.sort();
    }
}

/// Fold a task's events into its state. `events` may be in any order and hold duplicates.
pub fn fold<'a>(
    template: &Template,
    meta: &TaskMeta,
    events: impl IntoIterator<Item = &'a Event>,
) -> TaskState {
    let mut sorted: Vec<&Event> = events.into_iter().collect();
    sorted.sort_by(|a, b| {
        a.order_key()
            .cmp(&b.order_key())
            .then_with(|| canonical(a).cmp(&canonical(b)))
    });
    let mut state = TaskState::new(template, meta);
    let mut seen: BTreeMap<&EventId, &Event> = BTreeMap::new();
    for event in sorted {
        state.last_hlc = state.last_hlc.max(event.hlc);
        let outcome = match seen.get(&event.id) {
            Some(first) if is_same_action(first, event) => Outcome::Duplicate,
            Some(first) => {
                state.conflicts.push(Conflict {
                    event: event.id.clone(),
                    kind: event.kind(),
                    actor: event.actor.clone(),
                    refusal: Refusal::DuplicateId {
                        id: event.id.clone(),
                    },
                    lost_to: Some(first.id.clone()),
                });
                Outcome::Conflict
            }
            None => {
                // An id the server reserves, taken by someone else, must not shadow the
                // server's own event: the rules refuse it, and it claims nothing.
                if !rules::takes_server_id(event) {
                    seen.insert(&event.id, event);
                }
                match rules::check(template, &state, event) {
                    Ok(()) => {
                        state.apply(template, event);
                        Outcome::Applied
                    }
                    Err(refusal) => {
                        state.conflicts.push(Conflict {
                            event: event.id.clone(),
                            kind: event.kind(),
                            actor: event.actor.clone(),
                            lost_to: refusal.lost_to(&state),
                            refusal,
                        });
                        Outcome::Conflict
                    }
                }
            }
        };
        state.history.push(HistoryEntry {
            event: event.id.clone(),
            kind: event.kind(),
            actor: event.actor.clone(),
            hlc: event.hlc,
            device_time: event.device_time,
            outcome,
        });
    }
    state.settle_deadlines(template);
    state
}

/// Two events with one id are one action written twice when their content is the same, or when
/// both are the server's and of one kind: server events carry deterministic ids (level, cause,
/// epoch), and two nodes firing one timer a moment apart may resolve a different person on
/// call. The first in fold order is kept.
fn is_same_action(first: &Event, again: &Event) -> bool {
    (first.body == again.body && first.actor == again.actor)
        || (first.actor.is_system() && again.actor.is_system() && first.kind() == again.kind())
}

/// A total order on events with equal keys (same id written twice with different content), so
/// the fold does not depend on the order events arrived in.
fn canonical(event: &Event) -> String {
    serde_json::to_string(event).unwrap_or_default()
}

/// Convenience for policies: the window for `span` at the task's current acuity.
pub fn scaled(template: &Template, state: &TaskState, span: Span) -> Span {
    span.scaled(template.window_percent(&state.acuity))
}
