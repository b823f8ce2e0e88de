//! The task-shaped front door apps act from: my worklist, a task view, and one method per
//! action. Each action is written as the signed-in person, in the first of their roles on the
//! task's unit that the rules allow, and runs the server's whole validation before it is
//! stored; a refusal comes back typed ([`ClientError::refusal`]) and names the rule and field.

use super::{Client, ClientError, Me};
use crate::doc::{AppendError, Author, NewTask, Subject, TaskDoc};
use crate::event::{Actor, Event, EventBody, FieldValue, Transfer};
use crate::ids::{EventId, Role, StepId, UnitId, UserId};
use crate::rules::Refusal;
use crate::sync::DocumentId;
use crate::template::{Template, TemplateRef};
use crate::view::{self, TaskView};
use crate::worklist::{self, Filter, Listed, Viewer, WorkItem};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A task as the device holds it: document, template and folded state.
struct Held {
    id: String,
    task: TaskDoc,
    template: Arc<Template>,
    state: crate::fold::TaskState,
}

/// What opening a task needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenTask {
    /// The template's id; the latest version the server knows is used.
    pub template: String,
    pub unit: UnitId,
    pub subject: Subject,
    pub acuity: Option<String>,
    pub note: Option<String>,
}

impl ClientError {
    /// The rule that refused an action, if the task's rules did.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            ClientError::Append(AppendError::Refused(refusal)) => Some(refusal),
            ClientError::Invalid(crate::validate::ValidationError::Refused { refusal, .. }) => {
                Some(refusal)
            }
            _ => None,
        }
    }
}

impl Client {
    /// The signed-in person, or [`ClientError::SignedOut`].
    fn signed_in(&self) -> Result<Me, ClientError> {
        self.live()?.me.clone().ok_or(ClientError::SignedOut)
    }

    /// The person's worklist across their units: open tasks that `filter` keeps, ordered by
    /// risk. Online, every task on the units' indexes is fetched first; offline, it is made from
    /// what the device holds.
    pub async fn my_worklist(&self, filter: &Filter) -> Result<Vec<WorkItem>, ClientError> {
        let me = self.signed_in()?;
        let mut ids: Vec<DocumentId> = Vec::new();
        for unit in &me.units {
            if filter.unit.as_ref().is_some_and(|u| *u != unit.id) {
                continue;
            }
            let Some(index) = unit.index() else { continue };
            match self.worklist(index).await {
                Ok(listed) => ids.extend(
                    listed
                        .tasks
                        .keys()
                        .filter_map(|id| id.parse::<DocumentId>().ok()),
                ),
                Err(ClientError::Offline(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let mut held = Vec::new();
        for id in ids {
            match self.held(id).await {
                Ok(Some(task)) => held.push(task),
                // Not here yet, or not readable: the next sync brings it.
                Ok(None) | Err(ClientError::Offline(_) | ClientError::Timeout(_)) => {}
                Err(ClientError::Doc(_) | ClientError::Append(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let listed = held.iter().map(|h| Listed {
            id: &h.id,
            meta: h.task.meta(),
            state: &h.state,
            template: &h.template,
        });
        Ok(worklist::worklist(
            listed,
            &viewer(&me),
            filter,
            self.server_now(),
        ))
    }

    /// A task as the signed-in person sees it, with what they may do now.
    pub async fn task(&self, id: DocumentId) -> Result<TaskView, ClientError> {
        let me = self.signed_in()?;
        let held = self.held(id).await?.ok_or(ClientError::Unavailable(id))?;
        let roles = me.roles_on(&held.task.meta().unit);
        Ok(view::view(
            &held.id,
            held.task.meta(),
            &held.state,
            &held.template,
            &me.user,
            roles,
            self.server_now(),
        ))
    }

    /// Open a task from the latest version of a template, as the signed-in person.
    pub fn open_task(&self, open: OpenTask) -> Result<(DocumentId, Event), ClientError> {
        let me = self.signed_in()?;
        let template = self
            .templates()
            .latest(&open.template.as_str().into())
            .cloned()
            .ok_or_else(|| {
                ClientError::Doc(crate::doc::DocError::UnknownTemplate(TemplateRef {
                    id: open.template.as_str().into(),
                    version: 0,
                }))
            })?;
        let fits = me
            .roles_on(&open.unit)
            .iter()
            .find(|r| crate::rules::is_permitted(&template, crate::event::EventKind::Created, r));
        let author = author_on(&me, &open.unit, fits)?;
        let new = NewTask {
            unit: open.unit,
            subject: open.subject,
            acuity: open.acuity,
            note: open.note,
        };
        let template = TemplateRef {
            id: template.id.clone(),
            version: template.version,
        };
        self.create_task(&template, new, &author)
    }

    pub async fn claim(&self, task: DocumentId) -> Result<Event, ClientError> {
        self.act(task, EventBody::Claimed {}).await
    }

    pub async fn acknowledge(&self, task: DocumentId) -> Result<Event, ClientError> {
        self.act(task, EventBody::Acknowledged {}).await
    }

    pub async fn start_step(&self, task: DocumentId, step: StepId) -> Result<Event, ClientError> {
        self.act(task, EventBody::StepStarted { step }).await
    }

    /// Complete a step with its fields (checked against the template's field definitions).
    pub async fn complete_step(
        &self,
        task: DocumentId,
        step: StepId,
        fields: BTreeMap<String, FieldValue>,
    ) -> Result<Event, ClientError> {
        self.act(task, EventBody::StepCompleted { step, fields })
            .await
    }

    /// Wait on `on` (a party the current step may wait on), following up at `follow_up_at` or
    /// the template's default; a party outside the hospital needs `transfer`.
    pub async fn wait(
        &self,
        task: DocumentId,
        on: String,
        step: Option<StepId>,
        reason: Option<String>,
        follow_up_at: Option<crate::time::Millis>,
        transfer: Option<Transfer>,
    ) -> Result<Event, ClientError> {
        let body = EventBody::Waiting {
            on,
            step,
            reason,
            follow_up_at,
            transfer,
        };
        self.act(task, body).await
    }

    /// End a wait (`wait`, or every open wait); an outside party's needs `confirmation`.
    pub async fn resume(
        &self,
        task: DocumentId,
        wait: Option<EventId>,
        note: Option<String>,
        confirmation: Option<String>,
    ) -> Result<Event, ClientError> {
        let body = EventBody::Resumed {
            note,
            wait,
            confirmation,
        };
        self.act(task, body).await
    }

    pub async fn note(&self, task: DocumentId, text: String) -> Result<Event, ClientError> {
        self.act(task, EventBody::Note { text }).await
    }

    /// Offer the task to `to`, someone else in the owner role.
    pub async fn hand_off(
        &self,
        task: DocumentId,
        to: UserId,
        note: Option<String>,
    ) -> Result<Event, ClientError> {
        self.act_with(task, |held| {
            Ok(EventBody::HandoffOffered {
                to: Actor {
                    user: to,
                    role: held.state.owner_role.clone(),
                },
                item: None,
                note,
            })
        })
        .await
    }

    pub async fn accept_handoff(
        &self,
        task: DocumentId,
        offer: EventId,
    ) -> Result<Event, ClientError> {
        self.act(task, EventBody::HandoffAccepted { offer }).await
    }

    pub async fn decline_handoff(
        &self,
        task: DocumentId,
        offer: EventId,
        reason: Option<String>,
    ) -> Result<Event, ClientError> {
        self.act(task, EventBody::HandoffDeclined { offer, reason })
            .await
    }

    /// Escalate to the chain's next level now.
    pub async fn escalate(&self, task: DocumentId) -> Result<Event, ClientError> {
        self.act_with(task, |held| {
            view::manual_escalation(&held.template, &held.state).ok_or(ClientError::Append(
                AppendError::Refused(Refusal::BadEscalationLevel {
                    level: held.state.escalation_level + 1,
                    levels: u32::try_from(held.template.escalation.len()).unwrap_or(u32::MAX),
                }),
            ))
        })
        .await
    }

    pub async fn raise_exception(
        &self,
        task: DocumentId,
        alert_role: Role,
        reason: String,
    ) -> Result<Event, ClientError> {
        let body = EventBody::ExceptionRaised {
            rule: None,
            alert_role,
            reason,
            resolution: None,
        };
        self.act(task, body).await
    }

    pub async fn resolve_exception(
        &self,
        task: DocumentId,
        exception: EventId,
        note: Option<String>,
    ) -> Result<Event, ClientError> {
        self.act(task, EventBody::ExceptionResolved { exception, note })
            .await
    }

    pub async fn change_acuity(
        &self,
        task: DocumentId,
        acuity: String,
    ) -> Result<Event, ClientError> {
        self.act(task, EventBody::AcuityChanged { acuity }).await
    }

    pub async fn cancel(&self, task: DocumentId, reason: String) -> Result<Event, ClientError> {
        self.act(task, EventBody::Cancelled { reason }).await
    }

    pub async fn complete(
        &self,
        task: DocumentId,
        note: Option<String>,
    ) -> Result<Event, ClientError> {
        self.act(task, EventBody::Completed { note }).await
    }

    /// Write `body` on `task` as the signed-in person, in the first of their roles there that
    /// the rules allow (or their first role, to be refused in it).
    async fn act(&self, task: DocumentId, body: EventBody) -> Result<Event, ClientError> {
        self.act_with(task, |_| Ok(body)).await
    }

    /// [`Client::act`] with the body made from the task as the device holds it, so the task
    /// is read and folded once.
    async fn act_with(
        &self,
        task: DocumentId,
        body: impl FnOnce(&Held) -> Result<EventBody, ClientError>,
    ) -> Result<Event, ClientError> {
        let me = self.signed_in()?;
        let held = self
            .held(task)
            .await?
            .ok_or(ClientError::Unavailable(task))?;
        let body = body(&held)?;
        let unit = &held.task.meta().unit;
        let fits = view::role_for(
            &held.state,
            &held.template,
            &me.user,
            me.roles_on(unit),
            self.server_now(),
            &body,
        );
        let author = author_on(&me, unit, fits)?;
        self.append(task, &author, body).await
    }

    /// A task as the device holds it (fetched if it does not), folded.
    async fn held(&self, id: DocumentId) -> Result<Option<Held>, ClientError> {
        let Some(doc) = self.open_doc(id).await? else {
            return Ok(None);
        };
        let task = TaskDoc::from_automerge(doc)?;
        let template = self.shared.state().template(&task.meta().template)?;
        let state = task.state(&template)?;
        Ok(Some(Held {
            id: id.to_string(),
            task,
            template,
            state,
        }))
    }
}

/// The signed-in person acting on `unit` in `role` (the one the rules allow), else in their first
/// role there, to be refused in it; refused at once if they have no role there.
fn author_on(me: &Me, unit: &UnitId, role: Option<&Role>) -> Result<Author, ClientError> {
    let role = role
        .or_else(|| me.roles_on(unit).first())
        .cloned()
        .ok_or_else(|| {
            ClientError::Invalid(crate::validate::ValidationError::UnitNotAllowed {
                unit: unit.clone(),
            })
        })?;
    Ok(Author::new(me.user.clone(), role, me.device.clone()))
}

/// The person as a worklist sees them.
fn viewer(me: &Me) -> Viewer {
    Viewer {
        user: me.user.clone(),
        roles: me
            .units
            .iter()
            .flat_map(|u| u.roles.iter().map(|r| (u.id.clone(), r.clone())))
            .collect(),
    }
}
