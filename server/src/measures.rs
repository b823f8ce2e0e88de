//! Operational metrics, computed from the measures each task's summary carries (written with
//! every change of the task), for a unit, program, template and time range. docs/metrics.md
//! defines each figure; [`Figures::of`] is the one place that computes them.

use crate::db::{Bound, Conditions, Db, DbError};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

/// Tasks one query reads at most; a wider selection is refused, to be narrowed by range or unit.
pub const MAX_TASKS: i64 = 100_000;

/// Which tasks the figures cover: those of these units (`None`: every unit), program and
/// template, opened in `[since, until)` (workflow time, Unix ms).
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub units: Option<Vec<String>>,
    pub program: Option<String>,
    pub template: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// One task's measures, as the figures read them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFacts {
    pub template: String,
    pub status: String,
    pub owner: Option<String>,
    pub owner_role: String,
    pub opened_at: Option<i64>,
    pub first_ack_at: Option<i64>,
    pub first_outreach_at: Option<i64>,
    pub escalations_time: i64,
    pub escalations_acuity: i64,
    pub escalations_manual: i64,
    pub interventions: i64,
    pub first_step_done_at: Option<i64>,
    pub last_step_done_at: Option<i64>,
}

impl TaskFacts {
    fn is_open(&self) -> bool {
        matches!(self.status.as_str(), "open" | "waiting")
    }
}

/// Why the figures could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the selection holds more than {MAX_TASKS} tasks: narrow it by unit or time range")]
    TooMany,
}

/// The tasks of `scope`.
pub async fn facts(db: &Db, scope: &Scope) -> Result<Vec<TaskFacts>, MeasureError> {
    let mut conditions = Conditions::default();
    conditions.add("status <>", Bound::Text("pending"));
    if let Some(program) = &scope.program {
        conditions.add("program =", Bound::Text(program));
    }
    if let Some(template) = &scope.template {
        conditions.add("template_id =", Bound::Text(template));
    }
    if let Some(since) = scope.since {
        conditions.add("opened_at >=", Bound::Number(since));
    }
    if let Some(until) = scope.until {
        conditions.add("opened_at <", Bound::Number(until));
    }
    if let Some(units) = &scope.units {
        conditions.any_of("unit_id", units.iter().map(String::as_str));
    }
    if conditions.holds_nul() {
        return Ok(Vec::new());
    }
    let limit = conditions.bind(Bound::Number(MAX_TASKS + 1));
    let sql = format!(
        "SELECT template_id, status, owner_id, owner_role, opened_at, first_ack_at,
                first_outreach_at, escalations_time, escalations_acuity, escalations_manual,
                interventions, first_step_done_at, last_step_done_at
         FROM task_summaries WHERE {} LIMIT {limit}",
        conditions.clause()
    );
    let query = conditions.query(sql);
    let rows = query.fetch_all(db.pool()).await.map_err(DbError::from)?;
    if rows.len() as i64 > MAX_TASKS {
        return Err(MeasureError::TooMany);
    }
    rows.iter()
        .map(|r| {
            Ok(TaskFacts {
                template: r.try_get(0)?,
                status: r.try_get(1)?,
                owner: r.try_get(2)?,
                owner_role: r.try_get(3)?,
                opened_at: r.try_get(4)?,
                first_ack_at: r.try_get(5)?,
                first_outreach_at: r.try_get(6)?,
                escalations_time: r.try_get(7)?,
                escalations_acuity: r.try_get(8)?,
                escalations_manual: r.try_get(9)?,
                interventions: r.try_get(10)?,
                first_step_done_at: r.try_get(11)?,
                last_step_done_at: r.try_get(12)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| MeasureError::Db(e.into()))
}

/// A distribution of durations, in ms. The percentiles are nearest-rank; all but `count` are
/// null when there is nothing to measure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Durations {
    pub count: u64,
    pub mean_ms: Option<i64>,
    pub p50_ms: Option<i64>,
    pub p90_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

impl Durations {
    fn of(mut values: Vec<i64>) -> Durations {
        values.sort_unstable();
        let count = values.len();
        if count == 0 {
            return Durations::default();
        }
        let rank = |q: f64| values[((q * count as f64).ceil() as usize).clamp(1, count) - 1];
        let sum: i128 = values.iter().map(|v| i128::from(*v)).sum();
        Durations {
            count: count as u64,
            mean_ms: i64::try_from(sum / count as i128).ok(),
            p50_ms: Some(rank(0.5)),
            p90_ms: Some(rank(0.9)),
            max_ms: values.last().copied(),
        }
    }
}

/// A duration measured on the tasks that reached it, and how many have not yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Elapsed {
    #[serde(flatten)]
    pub durations: Durations,
    /// Tasks in the selection that have not reached it (yet).
    pub not_reached: u64,
}

/// Open tasks' ages by the role that owns them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct RoleAging {
    pub role: String,
    #[serde(flatten)]
    pub ages: Durations,
}

/// Escalations by source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct Escalations {
    /// Tasks in the selection.
    pub tasks: u64,
    /// Tasks escalated at least once.
    pub escalated_tasks: u64,
    /// Escalations by reason: a window lapsed, acuity rose, someone escalated by hand.
    pub time: u64,
    pub acuity: u64,
    pub manual: u64,
    /// Escalations per task.
    pub per_task: f64,
}

/// A share of tasks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct Share {
    /// The tasks it is a share of.
    pub of: u64,
    /// The tasks it counts.
    pub count: u64,
    /// `count / of`; null when `of` is 0.
    pub rate: Option<f64>,
}

impl Share {
    fn of(count: u64, of: u64) -> Share {
        Share {
            of,
            count,
            rate: (of > 0).then(|| count as f64 / of as f64),
        }
    }
}

/// Open tasks by whom and by which role they are owned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Workload {
    pub by_person: Vec<PersonLoad>,
    pub by_role: Vec<RoleLoad>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct PersonLoad {
    pub user: String,
    pub open: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct RoleLoad {
    pub role: String,
    pub open: u64,
    /// Of those, owned by nobody yet.
    pub unowned: u64,
}

/// Every figure, for one selection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct Figures {
    /// Tasks in the selection (opened in the range, of the units, program and template).
    pub tasks: u64,
    pub time_to_acknowledgment: Elapsed,
    pub time_to_first_outreach: Elapsed,
    pub task_aging: Vec<RoleAging>,
    pub escalations: Escalations,
    /// Tasks that missed a window (at least one escalation because a deadline passed).
    pub breach_rate: Share,
    pub workload: Workload,
    /// Completed tasks that no one had to steer (no assignment, reassignment, manual
    /// escalation or exception by a person).
    pub completed_without_intervention: Share,
    /// Discharges: from the order's step completed to the discharge confirmed.
    pub discharge_order_to_confirmed: Elapsed,
}

/// The template whose first and last steps are the discharge order and its confirmation.
pub const DISCHARGE: &str = "discharge";

impl Figures {
    /// The figures of `tasks`, their open tasks' ages judged at `now`.
    pub fn of(tasks: &[TaskFacts], now: i64) -> Figures {
        let elapsed = |from: fn(&TaskFacts) -> Option<i64>,
                       to: fn(&TaskFacts) -> Option<i64>,
                       among: &dyn Fn(&TaskFacts) -> bool| {
            let among: Vec<&TaskFacts> = tasks.iter().filter(|t| among(t)).collect();
            let values: Vec<i64> = among
                .iter()
                .filter_map(|t| Some(to(t)?.saturating_sub(from(t)?).max(0)))
                .collect();
            Elapsed {
                not_reached: (among.len() - values.len()) as u64,
                durations: Durations::of(values),
            }
        };
        let mut roles: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
        let mut people: std::collections::BTreeMap<&str, u64> = Default::default();
        let mut role_load: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        for task in tasks.iter().filter(|t| t.is_open()) {
            if let Some(opened) = task.opened_at {
                roles
                    .entry(&task.owner_role)
                    .or_default()
                    .push(now.saturating_sub(opened).max(0));
            }
            let load = role_load.entry(&task.owner_role).or_default();
            load.0 += 1;
            match &task.owner {
                Some(owner) => *people.entry(owner).or_default() += 1,
                None => load.1 += 1,
            }
        }
        let count = |f: &dyn Fn(&TaskFacts) -> bool| tasks.iter().filter(|t| f(t)).count() as u64;
        let sum = |f: fn(&TaskFacts) -> i64| tasks.iter().map(f).sum::<i64>().max(0) as u64;
        let all = tasks.len() as u64;
        let escalated =
            count(&|t| t.escalations_time + t.escalations_acuity + t.escalations_manual > 0);
        let (time, acuity, manual) = (
            sum(|t| t.escalations_time),
            sum(|t| t.escalations_acuity),
            sum(|t| t.escalations_manual),
        );
        let completed = count(&|t| t.status == "completed");
        let mut by_person: Vec<PersonLoad> = people
            .into_iter()
            .map(|(user, open)| PersonLoad {
                user: user.to_owned(),
                open,
            })
            .collect();
        by_person.sort_by(|a, b| b.open.cmp(&a.open).then_with(|| a.user.cmp(&b.user)));
        Figures {
            tasks: all,
            time_to_acknowledgment: elapsed(|t| t.opened_at, |t| t.first_ack_at, &|_| true),
            time_to_first_outreach: elapsed(|t| t.opened_at, |t| t.first_outreach_at, &|_| true),
            task_aging: roles
                .into_iter()
                .map(|(role, ages)| RoleAging {
                    role: role.to_owned(),
                    ages: Durations::of(ages),
                })
                .collect(),
            escalations: Escalations {
                tasks: all,
                escalated_tasks: escalated,
                time,
                acuity,
                manual,
                per_task: if all > 0 {
                    (time + acuity + manual) as f64 / all as f64
                } else {
                    0.0
                },
            },
            breach_rate: Share::of(count(&|t| t.escalations_time > 0), all),
            workload: Workload {
                by_person,
                by_role: role_load
                    .into_iter()
                    .map(|(role, (open, unowned))| RoleLoad {
                        role: role.to_owned(),
                        open,
                        unowned,
                    })
                    .collect(),
            },
            completed_without_intervention: Share::of(
                count(&|t| t.status == "completed" && t.interventions == 0),
                completed,
            ),
            discharge_order_to_confirmed: elapsed(
                |t| t.first_step_done_at,
                |t| t.last_step_done_at,
                &|t| t.template == DISCHARGE && t.first_step_done_at.is_some(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn task(status: &str, role: &str, owner: Option<&str>, opened: i64) -> TaskFacts {
        TaskFacts {
            template: "consult".into(),
            status: status.into(),
            owner: owner.map(str::to_owned),
            owner_role: role.into(),
            opened_at: Some(opened),
            ..TaskFacts::default()
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let d = Durations::of(vec![5, 1, 4, 2, 3, 10, 9, 8, 7, 6]);
        assert_eq!(
            d,
            Durations {
                count: 10,
                mean_ms: Some(5),
                p50_ms: Some(5),
                p90_ms: Some(9),
                max_ms: Some(10)
            }
        );
        assert_eq!(Durations::of(vec![]), Durations::default());
        assert_eq!(Durations::of(vec![7]).p90_ms, Some(7));
    }

    #[test]
    fn each_figure_counts_what_it_says() {
        let now = 100 * MIN;
        let mut acked = task("completed", "physician", Some("dr.fox"), 0);
        acked.first_ack_at = Some(4 * MIN);
        acked.first_outreach_at = Some(10 * MIN);
        let mut late = task("open", "physician", Some("dr.fox"), 50 * MIN);
        late.first_ack_at = Some(70 * MIN);
        late.escalations_time = 2;
        let mut steered = task("completed", "case_manager", Some("cm.ito"), 20 * MIN);
        steered.interventions = 1;
        steered.escalations_manual = 1;
        steered.template = DISCHARGE.into();
        steered.first_step_done_at = Some(30 * MIN);
        steered.last_step_done_at = Some(90 * MIN);
        let unowned = task("waiting", "case_manager", None, 80 * MIN);
        let figures = Figures::of(&[acked, late, steered, unowned], now);

        assert_eq!(figures.tasks, 4);
        let ack = &figures.time_to_acknowledgment;
        assert_eq!((ack.durations.count, ack.not_reached), (2, 2));
        assert_eq!(ack.durations.mean_ms, Some(12 * MIN));
        assert_eq!(ack.durations.max_ms, Some(20 * MIN));
        assert_eq!(
            figures.time_to_first_outreach.durations.p50_ms,
            Some(10 * MIN)
        );
        assert_eq!(figures.escalations.time, 2);
        assert_eq!(figures.escalations.manual, 1);
        assert_eq!(figures.escalations.escalated_tasks, 2);
        assert_eq!(figures.escalations.per_task, 0.75);
        assert_eq!((figures.breach_rate.count, figures.breach_rate.of), (1, 4));
        assert_eq!(figures.completed_without_intervention.rate, Some(0.5));
        assert_eq!(
            figures.discharge_order_to_confirmed.durations.mean_ms,
            Some(60 * MIN)
        );
        // Aging and workload count open tasks only: the late consult and the waiting one.
        let roles: Vec<(&str, u64, Option<i64>)> = figures
            .task_aging
            .iter()
            .map(|r| (r.role.as_str(), r.ages.count, r.ages.max_ms))
            .collect();
        assert_eq!(
            roles,
            [
                ("case_manager", 1, Some(20 * MIN)),
                ("physician", 1, Some(50 * MIN))
            ]
        );
        assert_eq!(
            figures.workload.by_person,
            [PersonLoad {
                user: "dr.fox".into(),
                open: 1
            }]
        );
        assert_eq!(
            figures.workload.by_role,
            [
                RoleLoad {
                    role: "case_manager".into(),
                    open: 1,
                    unowned: 1
                },
                RoleLoad {
                    role: "physician".into(),
                    open: 1,
                    unowned: 0
                }
            ]
        );
    }
}
