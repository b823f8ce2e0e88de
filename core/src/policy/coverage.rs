//! Who covers a role on a unit at a time: rotations of shifts, overrides, secondary owners.
//!
//! A [`Rotation`] hands a role on a unit from person to person at fixed local wall-clock times
//! (07:00 and 19:00, say). Shift boundaries are computed in the hospital's time zone, so they
//! stay at 07:00 local across daylight-saving changes (that night's shift is 11 or 13 hours).
//! An [`Override`] puts someone else in for a period (sick call, swap) and wins over the rotation.

use crate::ids::{Role, UnitId, UserId};
use crate::time::{Millis, Span};
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A rotation: `primary[k]` (and `secondary[k]`) cover shift `k`, counting from `anchor`, cycling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub unit: UnitId,
    pub role: Role,
    /// The local start of shift 0, e.g. `2026-01-05T07:00`.
    pub anchor: DateTime,
    /// The length of a shift in local wall-clock time, e.g. `12h`.
    pub shift: Span,
    pub primary: Vec<UserId>,
    /// The secondary owners (backup) in the same cycle; may be empty.
    #[serde(default)]
    pub secondary: Vec<UserId>,
}

/// Who is in for a period, replacing the rotation's primary or secondary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub unit: UnitId,
    pub role: Role,
    pub user: UserId,
    pub from: Millis,
    pub until: Millis,
    #[serde(default)]
    pub secondary: bool,
}

/// A unit's coverage plan, in one time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    zone: TimeZone,
    rotations: Vec<Rotation>,
    overrides: Vec<Override>,
    /// People who may not be given work (disabled accounts): they cover nothing.
    unavailable: BTreeSet<UserId>,
}

/// Who covers a role at a moment, and the shift they are in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub primary: Option<UserId>,
    pub secondary: Option<UserId>,
    /// The rotation shift containing the moment, when a rotation covers it.
    pub shift: Option<Shift>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shift {
    /// The shift's number counting from the rotation's anchor.
    pub index: i64,
    pub start: Millis,
    pub end: Millis,
}

/// A schedule that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("rotation for {role} on {unit}: {problem}")]
    Rotation {
        unit: UnitId,
        role: Role,
        problem: String,
    },
    #[error("override for {user}: it ends before it starts")]
    Override { user: UserId },
}

impl Schedule {
    /// A schedule in `zone` (resolve the zone name with `jiff::tz::TimeZone::get` at the edge).
    pub fn new(
        zone: TimeZone,
        rotations: Vec<Rotation>,
        overrides: Vec<Override>,
    ) -> Result<Schedule, ScheduleError> {
        for r in &rotations {
            let problem = if r.primary.is_empty() {
                Some("no one is in the rotation")
            } else if r.shift < Span::from_minutes(1) {
                Some("a shift must be at least a minute")
            } else if !r.secondary.is_empty() && r.secondary.len() != r.primary.len() {
                Some("secondary owners must follow the primary cycle one for one")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ScheduleError::Rotation {
                    unit: r.unit.clone(),
                    role: r.role.clone(),
                    problem: problem.into(),
                });
            }
        }
        if let Some(o) = overrides.iter().find(|o| o.until <= o.from) {
            return Err(ScheduleError::Override {
                user: o.user.clone(),
            });
        }
        Ok(Schedule {
            zone,
            rotations,
            overrides,
            unavailable: BTreeSet::new(),
        })
    }

    /// The same schedule with `users` covering nothing: their shifts are uncovered.
    pub fn without(mut self, users: impl IntoIterator<Item = UserId>) -> Schedule {
        self.unavailable.extend(users);
        self
    }

    /// Whether `user` may be given work.
    pub fn is_available(&self, user: &UserId) -> bool {
        !self.unavailable.contains(user)
    }

    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// Who covers `role` on `unit` at `at`.
    pub fn covering(&self, unit: &UnitId, role: &Role, at: Millis) -> Coverage {
        let mut coverage = Coverage {
            primary: None,
            secondary: None,
            shift: None,
        };
        if let Some(rotation) = self
            .rotations
            .iter()
            .find(|r| &r.unit == unit && &r.role == role)
            && let Some(shift) = self.shift_at(rotation, at)
        {
            let n = rotation.primary.len() as i64;
            let slot = shift.index.rem_euclid(n) as usize;
            coverage.primary = rotation.primary.get(slot).cloned();
            coverage.secondary = rotation.secondary.get(slot).cloned();
            coverage.shift = Some(shift);
        }
        // The override listed last wins where several apply.
        for o in self
            .overrides
            .iter()
            .filter(|o| &o.unit == unit && &o.role == role && o.from <= at && at < o.until)
        {
            if o.secondary {
                coverage.secondary = Some(o.user.clone());
            } else {
                coverage.primary = Some(o.user.clone());
            }
        }
        coverage.primary = coverage.primary.filter(|u| self.is_available(u));
        coverage.secondary = coverage.secondary.filter(|u| self.is_available(u));
        coverage
    }

    /// The shift of `rotation` that contains `at`.
    fn shift_at(&self, rotation: &Rotation, at: Millis) -> Option<Shift> {
        let local = self.zone.to_datetime(Timestamp::from_millisecond(at).ok()?);
        let shift_ms = i64::try_from(rotation.shift.as_millis()).ok()?;
        let elapsed = local.duration_since(rotation.anchor).as_millis();
        let index = i64::try_from(elapsed.div_euclid(i128::from(shift_ms))).ok()?;
        let start = self.instant(rotation, index)?;
        let end = self.instant(rotation, index.checked_add(1)?)?;
        Some(Shift { index, start, end })
    }

    /// The instant the `index`th shift starts: the anchor plus `index` shifts of local wall time.
    fn instant(&self, rotation: &Rotation, index: i64) -> Option<Millis> {
        let offset = jiff::SignedDuration::from_millis(
            i64::try_from(rotation.shift.as_millis())
                .ok()?
                .checked_mul(index)?,
        );
        let local = rotation.anchor.checked_add(offset).ok()?;
        Some(self.zone.to_timestamp(local).ok()?.as_millisecond())
    }
}
