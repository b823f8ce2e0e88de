//! Operational metrics over REST: `GET /api/v1/metrics/summary` and one endpoint per figure,
//! for the units the caller may see, filtered by unit, program, template and time range.
//! docs/metrics.md defines each figure.

use super::page::{Params, filter_text};
use super::{ApiError, Caller, ErrorBody};
use crate::AppState;
use crate::measures::{
    self, Elapsed, Escalations, Figures, MeasureError, RoleAging, Scope, Share, Workload,
};
use axum::Json;
use axum::extract::State;
use baton_core::ids::UnitId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Which tasks the figures cover.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct MetricsQuery {
    /// Only tasks of this unit (one the caller may see); otherwise every unit they may see.
    #[param(max_length = 256)]
    unit: Option<String>,
    /// Only tasks of this program (`discharge`, `consults`, …).
    #[param(max_length = 256)]
    program: Option<String>,
    /// Only tasks of this template.
    #[param(max_length = 256)]
    template: Option<String>,
    /// Only tasks opened at or after this time (Unix ms, workflow time).
    since: Option<i64>,
    /// Only tasks opened before this time (Unix ms, workflow time).
    until: Option<i64>,
}

impl From<MeasureError> for ApiError {
    fn from(e: MeasureError) -> Self {
        match e {
            MeasureError::Db(e) => e.into(),
            MeasureError::TooMany => ApiError::invalid_parameter("since", e.to_string()),
        }
    }
}

/// The figures of the tasks `query` selects among those `caller` may see, open tasks' ages
/// judged at `now`.
async fn figures(
    app: &AppState,
    caller: Caller,
    query: MetricsQuery,
    now: i64,
) -> Result<Figures, ApiError> {
    let Caller(session) = caller;
    let units = match filter_text("unit", query.unit)? {
        Some(unit) => {
            if !session.may_read(&UnitId::new(unit.clone())) {
                return Err(ApiError::unit_not_allowed(&unit));
            }
            Some(vec![unit])
        }
        None => session
            .readable_units()
            .map(|units| units.iter().map(ToString::to_string).collect()),
    };
    let scope = Scope {
        units,
        program: filter_text("program", query.program)?,
        template: filter_text("template", query.template)?,
        since: query.since,
        until: query.until,
    };
    let tasks = measures::facts(&app.db, &scope).await?;
    Ok(Figures::of(&tasks, now))
}

/// Every figure at once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Summary {
    /// The workflow time the figures were computed at (Unix ms): open tasks' ages are judged
    /// at it.
    now: i64,
    #[serde(flatten)]
    figures: Figures,
}

/// Every operational metric for the selection.
#[utoipa::path(get, path = "/api/v1/metrics/summary", tag = "metrics", security(("bearer" = [])),
    params(MetricsQuery),
    responses(
        (status = 200, description = "every figure", body = Summary),
        (status = "default", description = "an error", body = ErrorBody),
))]
pub(crate) async fn summary(
    State(app): State<AppState>,
    caller: Caller,
    Params(query): Params<MetricsQuery>,
) -> Result<Json<Summary>, ApiError> {
    // The `now` shown is the one the ages were judged at.
    let now = app.clock.now();
    let figures = figures(&app, caller, query, now).await?;
    Ok(Json(Summary { now, figures }))
}

/// Open tasks' ages by owner role.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Aging {
    roles: Vec<RoleAging>,
}

/// One endpoint per figure: its path, handler and the part of [`Figures`] it answers.
macro_rules! figure {
    ($name:ident, $path:literal, $body:ty, $what:literal, |$f:ident| $take:expr) => {
        #[doc = $what]
        #[utoipa::path(get, path = $path, tag = "metrics", security(("bearer" = [])),
                            params(MetricsQuery),
                            responses(
                                (status = 200, description = $what, body = $body),
                                (status = "default", description = "an error", body = ErrorBody),
                        ))]
        pub(crate) async fn $name(
            State(app): State<AppState>,
            caller: Caller,
            Params(query): Params<MetricsQuery>,
        ) -> Result<Json<$body>, ApiError> {
            let $f = figures(&app, caller, query, app.clock.now()).await?;
            Ok(Json($take))
        }
    };
}

figure!(
    time_to_acknowledgment,
    "/api/v1/metrics/time-to-acknowledgment",
    Elapsed,
    "From a task's creation to its first acknowledgment.",
    |f| f.time_to_acknowledgment
);
figure!(
    time_to_first_outreach,
    "/api/v1/metrics/time-to-first-outreach",
    Elapsed,
    "From a task's creation to its first outreach (a step begun or done, or a wait on someone outside).",
    |f| f.time_to_first_outreach
);
figure!(
    task_aging,
    "/api/v1/metrics/task-aging",
    Aging,
    "Open tasks' ages, by the role that owns them.",
    |f| Aging {
        roles: f.task_aging
    }
);
figure!(
    escalations,
    "/api/v1/metrics/escalations",
    Escalations,
    "How often tasks escalated, by source.",
    |f| f.escalations
);
figure!(
    breach_rate,
    "/api/v1/metrics/breach-rate",
    Share,
    "The share of tasks that missed a window.",
    |f| f.breach_rate
);
figure!(
    workload,
    "/api/v1/metrics/workload",
    Workload,
    "Open tasks by person and by role.",
    |f| f.workload
);
figure!(
    completed_without_intervention,
    "/api/v1/metrics/completed-without-intervention",
    Share,
    "The share of completed tasks nobody had to steer.",
    |f| f.completed_without_intervention
);
figure!(
    discharge_order_to_confirmed,
    "/api/v1/metrics/discharge-order-to-confirmed",
    Elapsed,
    "From the discharge order to the confirmed discharge.",
    |f| f.discharge_order_to_confirmed
);
