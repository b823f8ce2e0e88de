//! Work that moves because people do: a shift ends, or an account is disabled.
//!
//! - **Shift change.** When the rotation hands a role to the next person, every open task the
//!   outgoing person owns in that role is *offered* to the incoming one (a server-written
//!   `handoff_offered`, carrying the outgoing owner's latest note as the handoff note). The
//!   outgoing owner stays accountable until the incoming one accepts; an offer nobody accepts is
//!   a deadline like any other, so the chain escalates it. Boundaries are local wall-clock
//!   times ([`Schedule`]), so a DST night's 11- or 13-hour shift hands over at 07:00 all the same.
//! - **A disabled account.** Its open tasks are reassigned at once to whoever covers the owner
//!   role, or, when nobody does, raise the `nobody_covers` exception — as routing a new task does.
//!
//! Both are pure functions of the task, the schedule and the time, with deterministic event ids,
//! so two nodes acting at once write one event.

use super::coverage::Schedule;
use super::escalation::nobody_covers;
use crate::event::{Actor, EventBody};
use crate::fold::TaskState;
use crate::ids::EventId;
use crate::template::Template;
use crate::time::Millis;

/// The server's event for a task whose owner is no longer available (disabled) or whose owner's
/// shift has just ended, if one is owed now.
pub fn handover(
    template: &Template,
    state: &TaskState,
    schedule: &Schedule,
    now: Millis,
) -> Option<(EventId, EventBody)> {
    if state.status.is_closed() {
        return None;
    }
    let owner = state.owner.as_ref()?;
    let coverage = schedule.covering(&state.unit, &owner.role, now);
    let done = |id: &EventId| state.history.iter().any(|h| &h.event == id);

    if !schedule.is_available(&owner.user) {
        let id = EventId(format!("reroute:{}:{}", owner.user, owner.event));
        if done(&id) {
            return None;
        }
        let body = match coverage.primary {
            Some(user) => EventBody::Reassigned {
                user,
                role: owner.role.clone(),
                reason: Some(format!("{} can no longer take work", owner.user)),
            },
            None => nobody_covers(
                template,
                format!(
                    "{} can no longer take work and nobody covers {} on {}",
                    owner.user, owner.role, state.unit
                ),
            ),
        };
        return Some((id, body));
    }

    // A shift change: the owner covered the role until this shift began, someone else now does.
    let shift = coverage.shift?;
    let incoming = coverage.primary?;
    if incoming == owner.user || owner.since >= shift.start {
        return None;
    }
    let outgoing = schedule
        .covering(&state.unit, &owner.role, shift.start - 1)
        .primary;
    if outgoing.as_ref() != Some(&owner.user) {
        return None;
    }
    if state.pending_handoffs().any(|h| h.item.is_none()) {
        return None;
    }
    let id = EventId(format!("shift:{}:{}", shift.start, owner.user));
    if done(&id) {
        return None;
    }
    Some((
        id,
        EventBody::HandoffOffered {
            to: Actor::new(incoming, owner.role.clone()),
            item: None,
            note: Some(
                state
                    .last_note_by(&owner.user, owner.since)
                    .unwrap_or_else(|| format!("Shift change: {} goes off shift.", owner.user)),
            ),
        },
    ))
}
