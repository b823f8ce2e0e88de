//! A person's worklist: the open tasks they should look at, filtered and **ordered by risk**, not
//! by arrival. Phones and the unit board both list work through [`worklist`].
//!
//! Risk order: overdue work first (the most overdue first), then the higher escalation level,
//! the higher acuity (the template's levels are lowest first), the more urgent program priority
//! (1 is most urgent), the earlier next due time (none last), the older task, and the id, so
//! the order is total and every device shows the same list.

use crate::doc::TaskMeta;
use crate::fold::{HandoffStatus, Status, TaskState};
use crate::ids::{Role, UnitId, UserId};
use crate::template::{Template, TemplateRef};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::cmp::{Ordering, Reverse};

/// Which tasks a worklist holds, among those the person may see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every open task.
    #[default]
    All,
    /// Tasks the person owns, or that are offered to them.
    Mine,
    /// Tasks that fall to one of the person's roles: owned in it, escalated to it, or with an
    /// open exception alerting it.
    MyRoles,
    /// Tasks nobody owns yet.
    Unowned,
}

/// What a worklist is filtered by.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub scope: Scope,
    /// Only this unit's tasks.
    #[serde(default)]
    pub unit: Option<UnitId>,
    /// Only tasks that fall to this role (as [`Scope::MyRoles`] reads "falls to").
    #[serde(default)]
    pub role: Option<Role>,
}

/// Who looks: a person and their roles on each of their units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    pub user: UserId,
    pub roles: Vec<(UnitId, Role)>,
}

impl Viewer {
    fn roles_on<'a>(&'a self, unit: &'a UnitId) -> impl Iterator<Item = &'a Role> + 'a {
        self.roles
            .iter()
            .filter(move |(u, _)| u == unit)
            .map(|(_, r)| r)
    }
}

/// One task as a task and the template it follows.
#[derive(Clone, Copy, Debug)]
pub struct Listed<'a> {
    /// The task's document id.
    pub id: &'a str,
    pub meta: &'a TaskMeta,
    pub state: &'a TaskState,
    pub template: &'a Template,
}

/// One line of a worklist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    pub id: String,
    pub unit: UnitId,
    pub template: TemplateRef,
    /// The template's display name.
    pub name: String,
    pub label: String,
    pub status: Status,
    pub acuity: String,
    pub priority: u8,
    pub owner: Option<UserId>,
    pub owner_role: Role,
    pub acknowledged: bool,
    pub escalation_level: u32,
    /// The role the task is escalated to now, if it is.
    pub escalated_to: Option<Role>,
    pub next_due_at: Option<Millis>,
    /// The next due time has passed.
    pub overdue: bool,
    /// The task waits on someone outside it.
    pub waiting: bool,
    pub open_exceptions: usize,
    /// The viewer owns it.
    pub mine: bool,
    /// A handoff of it is offered to the viewer.
    pub offered_to_me: bool,
    pub created_at: Option<Millis>,
    /// Where the template's acuity levels rank this one (0 is the lowest).
    #[serde(skip)]
    acuity_rank: usize,
}

/// The open tasks among `tasks` that `viewer` may see and `filter` keeps, ordered by risk at
/// `now`.
pub fn worklist<'a>(
    tasks: impl IntoIterator<Item = Listed<'a>>,
    viewer: &Viewer,
    filter: &Filter,
    now: Millis,
) -> Vec<WorkItem> {
    let mut items: Vec<WorkItem> = tasks
        .into_iter()
        .filter(|t| !t.state.status.is_closed())
        .filter(|t| viewer.roles_on(&t.meta.unit).next().is_some())
        .filter(|t| filter.unit.as_ref().is_none_or(|u| *u == t.meta.unit))
        .filter(|t| filter.role.as_ref().is_none_or(|r| falls_to(t.state, r)))
        .filter(|t| match filter.scope {
            Scope::All => true,
            Scope::Mine => is_mine(t.state, &viewer.user) || offered_to(t.state, &viewer.user),
            Scope::MyRoles => viewer.roles_on(&t.meta.unit).any(|r| falls_to(t.state, r)),
            Scope::Unowned => t.state.owner.is_none(),
        })
        .map(|t| item(t, viewer, now))
        .collect();
    items.sort_by(|a, b| by_risk(a, b, now));
    items
}

/// The risk order: the riskiest first.
fn by_risk(a: &WorkItem, b: &WorkItem, now: Millis) -> Ordering {
    let key = |i: &WorkItem| {
        (
            Reverse(i.overdue),
            // The most overdue first; among tasks not overdue this is the same for all.
            i.next_due_at.filter(|_| i.overdue).map(|at| at - now),
            Reverse(i.escalation_level),
            Reverse(i.acuity_rank),
            i.priority,
            (i.next_due_at.is_none(), i.next_due_at),
            i.created_at,
        )
    };
    key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
}

fn item(t: Listed<'_>, viewer: &Viewer, now: Millis) -> WorkItem {
    let state = t.state;
    let next_due_at = state.next_deadline().map(|d| d.at);
    WorkItem {
        id: t.id.to_owned(),
        unit: t.meta.unit.clone(),
        template: t.meta.template.clone(),
        name: t.template.name.clone(),
        label: t.meta.subject.label.clone(),
        status: state.status,
        acuity: state.acuity.clone(),
        priority: state.priority,
        owner: state.owner.as_ref().map(|o| o.user.clone()),
        owner_role: state.owner_role.clone(),
        acknowledged: state.acknowledged.is_some(),
        escalation_level: state.escalation_level,
        escalated_to: escalated_to(state).cloned(),
        next_due_at,
        overdue: next_due_at.is_some_and(|at| at <= now),
        waiting: !state.waits.is_empty(),
        open_exceptions: state.open_exceptions().count(),
        mine: is_mine(state, &viewer.user),
        offered_to_me: offered_to(state, &viewer.user),
        created_at: state.created_at,
        acuity_rank: t
            .template
            .acuity
            .iter()
            .position(|a| a.id == state.acuity)
            .unwrap_or(0),
    }
}

/// The role the task is escalated to now, if the chain has climbed since the last progress.
pub fn escalated_to(state: &TaskState) -> Option<&Role> {
    if state.escalation_level == 0 {
        return None;
    }
    state.escalations.last().map(|e| &e.to.role)
}

fn is_mine(state: &TaskState, user: &UserId) -> bool {
    state.owner.as_ref().is_some_and(|o| &o.user == user)
}

fn offered_to(state: &TaskState, user: &UserId) -> bool {
    state
        .handoffs
        .iter()
        .any(|h| h.status == HandoffStatus::Pending && &h.to.user == user)
}

/// Whether the task falls to `role`: owned in it, escalated to it, or alerting it.
fn falls_to(state: &TaskState, role: &Role) -> bool {
    state.owner_role == *role
        || escalated_to(state) == Some(role)
        || state.open_exceptions().any(|e| e.alert_role == *role)
}
