//! The pure policies: coverage (who is on) and escalation (what is due next, and the event that
//! carries it out).

mod common;

use baton_core::event::{EscalationReason, EscalationTo, Event, EventBody};
use baton_core::fold::{Outcome, Status};
use baton_core::ids::{EventId, UserId};
use baton_core::policy::coverage::{Override, Rotation, Schedule, ScheduleError};
use baton_core::policy::escalation::{Action, Due, fire, next_due};
use baton_core::template::EscalationTarget;
use baton_core::{Author, FieldValue, HlcClock, Millis, Span, TaskDoc, Template};
use common::*;
use jiff::Timestamp;
use jiff::civil::date;
use jiff::tz::TimeZone;
use std::sync::Arc;

// ---- helpers ----

fn new_york() -> TimeZone {
    TimeZone::get("America/New_York").expect("America/New_York in the time zone database")
}

/// An instant written with its UTC offset, e.g. `2026-03-08T07:00-04:00`.
fn at(s: &str) -> Millis {
    s.parse::<Timestamp>().expect(s).as_millisecond()
}

fn user(name: &str) -> Option<UserId> {
    Some(name.into())
}

fn users(names: &[&str]) -> Vec<UserId> {
    names.iter().map(|&n| n.into()).collect()
}

/// A 12-hour day/night rotation on 4W, shift 0 starting 2026-01-05 07:00 local.
fn rotation(role: &str, primary: &[&str], secondary: &[&str]) -> Rotation {
    Rotation {
        unit: "4W".into(),
        role: role.into(),
        anchor: date(2026, 1, 5).at(7, 0, 0, 0),
        shift: Span::from_hours(12),
        primary: users(primary),
        secondary: users(secondary),
    }
}

fn nurses() -> Rotation {
    rotation(
        "nurse",
        &["rn.a", "rn.b", "rn.c"],
        &["rn.x", "rn.y", "rn.z"],
    )
}

fn schedule(rotations: Vec<Rotation>, overrides: Vec<Override>) -> Schedule {
    Schedule::new(new_york(), rotations, overrides).expect("valid schedule")
}

fn override_for(role: &str, who: &str, from: Millis, until: Millis, secondary: bool) -> Override {
    Override {
        unit: "4W".into(),
        role: role.into(),
        user: who.into(),
        from,
        until,
        secondary,
    }
}

/// (primary, secondary, shift index, shift start, shift end) of the nurse role on 4W at `t`.
fn nurse_on(s: &Schedule, t: Millis) -> (String, String, i64, Millis, Millis) {
    let c = s.covering(&"4W".into(), &"nurse".into(), t);
    let shift = c.shift.expect("a rotation covers 4W nurses");
    (
        c.primary.expect("primary").0,
        c.secondary.expect("secondary").0,
        shift.index,
        shift.start,
        shift.end,
    )
}

// ---- coverage ----

#[test]
fn day_night_rotation_cycles_primary_and_secondary_through_the_users() {
    let s = schedule(vec![nurses()], vec![]);
    let expected = [
        ("2026-01-05T08:00-05:00", "rn.a", "rn.x", 0),
        ("2026-01-05T20:00-05:00", "rn.b", "rn.y", 1),
        ("2026-01-06T08:00-05:00", "rn.c", "rn.z", 2),
        ("2026-01-06T20:00-05:00", "rn.a", "rn.x", 3),
        ("2026-01-07T08:00-05:00", "rn.b", "rn.y", 4),
        ("2026-01-07T20:00-05:00", "rn.c", "rn.z", 5),
    ];
    for (time, primary, secondary, index) in expected {
        let (p, sec, i, _, _) = nurse_on(&s, at(time));
        assert_eq!(
            (p.as_str(), sec.as_str(), i),
            (primary, secondary, index),
            "at {time}"
        );
    }
}

#[test]
fn shifts_change_exactly_at_seven_and_nineteen_local() {
    let s = schedule(vec![nurses()], vec![]);
    let seven = at("2026-01-06T07:00-05:00");
    let nineteen = at("2026-01-06T19:00-05:00");

    let (before, ..) = nurse_on(&s, seven - 1);
    let (day, _, index, start, end) = nurse_on(&s, seven);
    assert_eq!((before.as_str(), day.as_str()), ("rn.b", "rn.c"));
    assert_eq!((index, start, end), (2, seven, nineteen));

    let (last_of_day, ..) = nurse_on(&s, nineteen - 1);
    let (night, _, _, start, _) = nurse_on(&s, nineteen);
    assert_eq!((last_of_day.as_str(), night.as_str()), ("rn.c", "rn.a"));
    assert_eq!(start, nineteen);
}

#[test]
fn spring_forward_night_is_eleven_hours_and_next_day_starts_at_seven_local() {
    let s = schedule(vec![nurses()], vec![]);
    // 2026-03-08: clocks go from 02:00 EST to 03:00 EDT.
    let (who, _, index, start, end) = nurse_on(&s, at("2026-03-08T03:30-04:00"));
    assert_eq!(start, at("2026-03-07T19:00-05:00"));
    assert_eq!(end, at("2026-03-08T07:00-04:00"));
    assert_eq!(end - start, 11 * HOUR);
    // 62 days after the anchor: the night shift is number 123.
    assert_eq!((who.as_str(), index), ("rn.a", 123));

    let (still_night, ..) = nurse_on(&s, end - 1);
    let (day, _, index, day_start, day_end) = nurse_on(&s, end);
    assert_eq!((still_night.as_str(), day.as_str()), ("rn.a", "rn.b"));
    assert_eq!(index, 124);
    assert_eq!(day_start, at("2026-03-08T07:00-04:00"));
    assert_eq!(day_end, at("2026-03-08T19:00-04:00"));
    assert_eq!(day_end - day_start, 12 * HOUR);
}

#[test]
fn fall_back_night_is_thirteen_hours_and_next_day_starts_at_seven_local() {
    let s = schedule(vec![nurses()], vec![]);
    // 2026-11-01: clocks go from 02:00 EDT back to 01:00 EST; 01:30 happens twice.
    let first_0130 = nurse_on(&s, at("2026-11-01T01:30-04:00"));
    let second_0130 = nurse_on(&s, at("2026-11-01T01:30-05:00"));
    assert_eq!(
        first_0130, second_0130,
        "both 01:30s are the same night shift"
    );
    let (who, _, index, start, end) = first_0130;
    assert_eq!(start, at("2026-10-31T19:00-04:00"));
    assert_eq!(end, at("2026-11-01T07:00-05:00"));
    assert_eq!(end - start, 13 * HOUR);
    // 300 days after the anchor: the night shift is number 599.
    assert_eq!((who.as_str(), index), ("rn.c", 599));

    let (day, _, index, day_start, day_end) = nurse_on(&s, end);
    assert_eq!((day.as_str(), index), ("rn.a", 600));
    assert_eq!(day_start, at("2026-11-01T07:00-05:00"));
    assert_eq!(day_end - day_start, 12 * HOUR);
}

#[test]
fn times_before_the_anchor_fall_in_earlier_shifts_of_the_cycle() {
    let s = schedule(vec![nurses()], vec![]);
    let anchor = at("2026-01-05T07:00-05:00");
    let (who, _, index, start, end) = nurse_on(&s, anchor - 1);
    assert_eq!((who.as_str(), index), ("rn.c", -1));
    assert_eq!((start, end), (anchor - 12 * HOUR, anchor));

    let expected = [
        ("2026-01-04T20:00-05:00", "rn.c", "rn.z", -1),
        ("2026-01-04T08:00-05:00", "rn.b", "rn.y", -2),
        ("2026-01-03T20:00-05:00", "rn.a", "rn.x", -3),
        ("2026-01-03T08:00-05:00", "rn.c", "rn.z", -4),
        ("2025-12-05T08:00-05:00", "rn.b", "rn.y", -62),
    ];
    for (time, primary, secondary, index) in expected {
        let (p, sec, i, _, _) = nurse_on(&s, at(time));
        assert_eq!(
            (p.as_str(), sec.as_str(), i),
            (primary, secondary, index),
            "at {time}"
        );
    }
}

#[test]
fn overrides_replace_primary_or_secondary_only_inside_their_period() {
    let from = at("2026-01-05T10:00-05:00");
    let until = at("2026-01-05T14:00-05:00");
    let s = schedule(
        vec![nurses()],
        vec![
            override_for("nurse", "rn.sub", from, until, false),
            override_for("nurse", "rn.backup", until, until + HOUR, true),
        ],
    );
    let who = |t: Millis| {
        let c = s.covering(&"4W".into(), &"nurse".into(), t);
        (c.primary, c.secondary)
    };
    assert_eq!(who(from - 1), (user("rn.a"), user("rn.x")));
    assert_eq!(who(from), (user("rn.sub"), user("rn.x")));
    assert_eq!(who(until - 1), (user("rn.sub"), user("rn.x")));
    // `until` is excluded; the secondary override starts there and leaves the primary alone.
    assert_eq!(who(until), (user("rn.a"), user("rn.backup")));
    assert_eq!(who(until + HOUR), (user("rn.a"), user("rn.x")));
}

#[test]
fn the_override_listed_last_wins_where_overrides_overlap() {
    let t = at("2026-01-05T10:00-05:00");
    let s = schedule(
        vec![nurses()],
        vec![
            override_for("nurse", "rn.first", t, t + 4 * HOUR, false),
            override_for("nurse", "rn.second", t + 2 * HOUR, t + 6 * HOUR, false),
        ],
    );
    let primary = |at: Millis| s.covering(&"4W".into(), &"nurse".into(), at).primary;
    assert_eq!(primary(t + HOUR), user("rn.first"));
    assert_eq!(primary(t + 3 * HOUR), user("rn.second"));
    assert_eq!(primary(t + 5 * HOUR), user("rn.second"));
    assert_eq!(primary(t + 6 * HOUR), user("rn.a"));
}

#[test]
fn overrides_apply_only_to_their_unit_and_role() {
    let t = at("2026-01-05T10:00-05:00");
    let mut icu = override_for("nurse", "rn.icu", t, t + HOUR, false);
    icu.unit = "ICU".into();
    let s = schedule(
        vec![nurses()],
        vec![
            icu,
            override_for("pharmacist", "ph.sub", t, t + HOUR, false),
        ],
    );
    let c = s.covering(&"4W".into(), &"nurse".into(), t);
    assert_eq!(c.primary, user("rn.a"));
    // A role without a rotation is still covered by its override, without a shift.
    let c = s.covering(&"4W".into(), &"pharmacist".into(), t);
    assert_eq!(
        (c.primary, c.secondary, c.shift),
        (user("ph.sub"), None, None)
    );
}

#[test]
fn unit_or_role_without_a_rotation_has_no_one() {
    let s = schedule(vec![nurses()], vec![]);
    let t = at("2026-01-05T10:00-05:00");
    for (unit, role) in [("ICU", "nurse"), ("4W", "physician")] {
        let c = s.covering(&unit.into(), &role.into(), t);
        assert_eq!((c.primary, c.secondary, c.shift), (None, None, None));
    }
    // A rotation without secondaries covers the primary only.
    let s = schedule(vec![rotation("nurse", &["rn.a"], &[])], vec![]);
    let c = s.covering(&"4W".into(), &"nurse".into(), t);
    assert_eq!((c.primary, c.secondary), (user("rn.a"), None));
}

#[test]
fn schedule_refuses_rotations_and_overrides_it_cannot_use() {
    let problem = |r: Rotation| match Schedule::new(new_york(), vec![r], vec![]) {
        Err(e @ ScheduleError::Rotation { .. }) => e.to_string(),
        other => panic!("expected a rotation error, got {other:?}"),
    };
    let empty = problem(rotation("nurse", &[], &[]));
    assert!(empty.contains("rotation for nurse on 4W"), "{empty}");
    assert!(empty.contains("no one is in the rotation"), "{empty}");
    let mismatched = problem(rotation("nurse", &["rn.a", "rn.b"], &["rn.x"]));
    assert!(mismatched.contains("one for one"), "{mismatched}");
    let mut short = nurses();
    short.shift = Span::from_millis(59_999);
    assert!(problem(short).contains("at least a minute"));

    let t = at("2026-01-05T10:00-05:00");
    for until in [t - 1, t] {
        let err = Schedule::new(
            new_york(),
            vec![nurses()],
            vec![override_for("nurse", "rn.sub", t, until, false)],
        )
        .expect_err("an override must end after it starts");
        assert_eq!(
            err,
            ScheduleError::Override {
                user: "rn.sub".into()
            }
        );
        assert!(err.to_string().contains("ends before it starts"), "{err}");
    }
}

// ---- escalation ----

/// Who is on for 4W. T0 (02:00 New York time) is in the night shift; 07:00 local starts the day.
fn ward() -> Schedule {
    schedule(
        vec![
            rotation("charge_nurse", &["cn.day", "cn.night"], &[]),
            rotation(
                "case_manager",
                &["cm.day", "cm.night"],
                &["cm.backup.day", "cm.backup.night"],
            ),
            rotation(
                "physician",
                &["dr.day", "dr.night"],
                &["dr.backup.day", "dr.backup.night"],
            ),
            rotation("pharmacist", &["ph.day", "ph.night"], &[]),
            rotation("nurse", &["rn.day", "rn.night"], &[]),
        ],
        vec![],
    )
}

/// A server node: fires due actions and appends them as the system.
struct Node {
    author: Author,
    clock: HlcClock,
    schedule: Schedule,
}

impl Node {
    fn new(name: &str) -> Self {
        Node {
            author: Author::system(name),
            clock: HlcClock::new(),
            schedule: ward(),
        }
    }

    /// Fire the task's next action if it is due at `now`, appending it. The rules must accept it.
    fn tick(&mut self, doc: &mut TaskDoc, t: &Template, now: Millis) -> Option<Event> {
        let (id, body) = fire(t, &state(doc, t), &self.schedule, now)?;
        let event = doc
            .append_with_id(t, &self.author, &mut self.clock, now, id, body)
            .unwrap_or_else(|e| panic!("a fired action must be accepted: {e}"));
        Some(event)
    }
}

/// A task opened at `at` and routed by the server at once, as every new task is: assigned to
/// whoever covers its owner role on 4W.
fn opened(creator: &str, role: &str, t: &Template, at: Millis, acuity: Option<&str>) -> TaskDoc {
    let mut doc = Person::new(creator, role).create_with(t, at, acuity);
    let routed = Node::new("node-0")
        .tick(&mut doc, t, at)
        .expect("routed at once");
    assert!(
        matches!(routed.body, EventBody::Assigned { .. }),
        "{routed:?}"
    );
    doc
}

/// The template without re-notification, for tests about the chain's levels alone.
fn quiet(t: Arc<Template>) -> Arc<Template> {
    Arc::new(Template {
        renotify: None,
        ..(*t).clone()
    })
}

fn due(doc: &TaskDoc, t: &Template) -> Due {
    next_due(t, &state(doc, t)).expect("something is due")
}

/// `(level, reason, target, cause)` of an escalation action.
fn escalation(d: &Due) -> (u32, EscalationReason, &EscalationTarget, &str) {
    match &d.action {
        Action::Escalate {
            level,
            reason,
            target,
            cause,
            ..
        } => (*level, *reason, target, cause.as_str()),
        other => panic!("expected an escalation, got {other:?}"),
    }
}

fn charge_nurse() -> EscalationTarget {
    EscalationTarget::Role("charge_nurse".into())
}

fn escalated_to(e: &Event) -> &EscalationTo {
    match &e.body {
        EventBody::Escalated { to, .. } => to,
        other => panic!("expected an escalation, got {other:?}"),
    }
}

fn to(role: &str, who: Option<&str>) -> EscalationTo {
    EscalationTo {
        role: role.into(),
        user: who.map(UserId::from),
    }
}

#[test]
fn unacknowledged_task_escalates_at_the_end_of_its_ack_window() {
    let cases = [
        ("discharge", "physician", 30, charge_nurse()),
        ("consult", "nurse", 30, EscalationTarget::SecondaryOwner {}),
        ("nonformulary_med", "pharmacist", 15, charge_nurse()),
    ];
    for (id, creator, minutes, target) in cases {
        let t = template(id);
        let doc = opened("creator", creator, &t, T0, None);
        let d = due(&doc, &t);
        let end = T0 + minutes * MINUTE;
        assert_eq!(d.at, end, "{id}");
        assert_eq!(d.event_id, EventId(format!("esc:0:1:ack@{end}")), "{id}");
        assert_eq!(
            escalation(&d),
            (
                1,
                EscalationReason::Time,
                &target,
                format!("ack@{end}").as_str()
            ),
            "{id}"
        );
    }
}

#[test]
fn acuity_shortens_the_ack_window_and_the_escalation_delays() {
    let t = template("consult");
    let t = quiet(t);
    let mut doc = opened("rn.evans", "nurse", &t, T0, Some("urgent"));
    let d = due(&doc, &t);
    assert_eq!(d.at, T0 + 15 * MINUTE, "urgent is 50% of 30 minutes");

    let mut node = Node::new("node-1");
    node.tick(&mut doc, &t, d.at).expect("level 1");
    let d = due(&doc, &t);
    assert_eq!(escalation(&d).0, 2);
    assert_eq!(
        d.at,
        T0 + 30 * MINUTE + 7 * MINUTE + 30_000,
        "level 1 gave the task to the secondary owner, whose own 15 minute window runs; \
         level 2 is 50% of 15 minutes past it"
    );
}

#[test]
fn fire_gives_nothing_before_the_due_time_and_the_due_event_at_or_after_it() {
    let t = template("discharge");
    let doc = opened("dr.adams", "physician", &t, T0, None);
    let s = state(&doc, &t);
    let schedule = ward();
    let d = due(&doc, &t);
    assert_eq!(d.at, T0 + 30 * MINUTE);
    assert_eq!(fire(&t, &s, &schedule, d.at - 1), None);
    let (id, body) = fire(&t, &s, &schedule, d.at).expect("due now");
    assert_eq!(id, d.event_id);
    assert!(matches!(body, EventBody::Escalated { level: 1, .. }));
    let (late_id, _) = fire(&t, &s, &schedule, d.at + 3 * HOUR).expect("still due");
    assert_eq!(late_id, d.event_id, "firing late writes the same event");
}

#[test]
fn chain_advances_level_by_level_after_the_stall() {
    let t = quiet(template("discharge"));
    let mut doc = opened("dr.adams", "physician", &t, T0, None);
    let mut node = Node::new("node-1");
    let stall = T0 + 30 * MINUTE;
    let cause = format!("ack@{stall}");

    let d = due(&doc, &t);
    assert_eq!((d.at, escalation(&d).0), (stall, 1));
    let e = node.tick(&mut doc, &t, stall).expect("level 1");
    assert_eq!(escalated_to(&e), &to("charge_nurse", Some("cn.night")));
    assert_eq!(state(&doc, &t).escalation_level, 1);

    // Level 2 is 30 minutes past the stall: the case manager's secondary owner.
    let d = due(&doc, &t);
    assert_eq!(d.at, stall + 30 * MINUTE);
    assert_eq!(
        escalation(&d),
        (
            2,
            EscalationReason::Time,
            &EscalationTarget::SecondaryOwner {},
            cause.as_str()
        )
    );
    assert!(node.tick(&mut doc, &t, d.at - 1).is_none(), "not yet");
    let e = node.tick(&mut doc, &t, d.at).expect("level 2");
    assert_eq!(
        escalated_to(&e),
        &to("case_manager", Some("cm.backup.night"))
    );
    // Nobody acknowledged, so the secondary owner now owns the task, in their own window.
    let s = state(&doc, &t);
    assert_eq!(
        s.owner.as_ref().map(|o| o.user.as_str()),
        Some("cm.backup.night")
    );
    let backup_stall = stall + HOUR;

    // Reaching level 2 raises the off-track exception at once.
    let d = due(&doc, &t);
    assert_eq!(d.at, stall + 30 * MINUTE);
    assert!(matches!(d.action, Action::RaiseException { .. }));
    node.tick(&mut doc, &t, d.at).expect("exception");

    // Level 3 is an hour past the secondary owner's lapsed window: the physician.
    let d = due(&doc, &t);
    assert_eq!((d.at, escalation(&d).0), (backup_stall + HOUR, 3));
    assert_eq!(d.event_id, EventId(format!("esc:0:3:ack@{backup_stall}")));
    let e = node.tick(&mut doc, &t, d.at).expect("level 3");
    assert_eq!(escalated_to(&e), &to("physician", Some("dr.night")));

    let s = state(&doc, &t);
    assert_eq!(s.escalation_level, 3);
    let levels: Vec<u32> = s.escalations.iter().map(|e| e.level).collect();
    assert_eq!(levels, [1, 2, 3]);
    assert!(s.conflicts.is_empty());
}

#[test]
fn progress_resets_the_chain_and_later_escalations_get_new_ids() {
    let t = template("discharge");
    let mut doc = opened("dr.adams", "physician", &t, T0, None);
    let mut case_manager = Person::new("cm.night", "case_manager");
    let mut charge = Person::new("cn.green", "charge_nurse");
    let mut node = Node::new("node-1");

    let first = node.tick(&mut doc, &t, T0 + 30 * MINUTE).expect("level 1");
    assert_eq!(
        first.id,
        EventId(format!("esc:0:1:ack@{}", T0 + 30 * MINUTE))
    );

    case_manager.act(&mut doc, &t, T0 + 40 * MINUTE, EventBody::Acknowledged {});
    let s = state(&doc, &t);
    assert_eq!((s.escalation_level, s.escalation_epoch), (0, 1));

    // The next stall is the order's due time; the chain starts again at level 1, epoch 1.
    let order_due = T0 + 2 * HOUR;
    let d = due(&doc, &t);
    assert_eq!(d.at, order_due);
    assert_eq!(
        d.event_id,
        EventId(format!("esc:1:1:step:order_placed@{order_due}"))
    );
    let second = node.tick(&mut doc, &t, order_due).expect("level 1 again");
    assert_eq!(second.id, d.event_id);

    // Reassigning is progress too. The order is still overdue, so the same stall escalates
    // again, under a new epoch: a new event, not a copy of the last one.
    charge.act(
        &mut doc,
        &t,
        order_due + 5 * MINUTE,
        EventBody::Reassigned {
            user: "cm.grey".into(),
            role: "case_manager".into(),
            reason: None,
        },
    );
    let s = state(&doc, &t);
    assert_eq!((s.escalation_level, s.escalation_epoch), (0, 2));
    let d = due(&doc, &t);
    assert_eq!(d.at, order_due);
    assert_eq!(
        d.event_id,
        EventId(format!("esc:2:1:step:order_placed@{order_due}"))
    );
    node.tick(&mut doc, &t, order_due + 5 * MINUTE)
        .expect("level 1, epoch 2");

    let s = state(&doc, &t);
    assert_eq!(s.escalation_level, 1);
    assert_eq!(s.escalations.len(), 3);
    assert!(s.history.iter().all(|h| h.outcome == Outcome::Applied));
    assert!(s.conflicts.is_empty());
}

#[test]
fn consult_entering_stat_escalates_at_once() {
    let t = quiet(template("consult"));
    let mut nurse = Person::new("rn.evans", "nurse");
    let mut doc = opened("rn.evans", "nurse", &t, T0, None);
    let change = nurse.act(
        &mut doc,
        &t,
        T0 + 2 * MINUTE,
        EventBody::AcuityChanged {
            acuity: "stat".into(),
        },
    );
    let d = due(&doc, &t);
    let cause = format!("acuity:{}", change.id);
    assert_eq!(d.at, T0 + 2 * MINUTE);
    assert_eq!(d.event_id, EventId(format!("esc:0:1:{cause}")));
    assert_eq!(
        escalation(&d),
        (
            1,
            EscalationReason::Acuity,
            &EscalationTarget::SecondaryOwner {},
            cause.as_str()
        )
    );

    let e = Node::new("node-1")
        .tick(&mut doc, &t, T0 + 2 * MINUTE)
        .expect("acuity escalation");
    assert_eq!(escalated_to(&e), &to("physician", Some("dr.backup.night")));
    let s = state(&doc, &t);
    assert_eq!(s.escalation_level, 1);
    assert_eq!(s.acuity_escalation, None);
    // Level 1 gave the unacknowledged consult to the secondary owner. The time chain carries
    // on from level 1 on stat's windows (20%): their 6 minute window, and level 2 3 minutes
    // after it.
    assert_eq!(
        s.owner.as_ref().map(|o| o.user.as_str()),
        Some("dr.backup.night")
    );
    let d = due(&doc, &t);
    assert_eq!(d.at, T0 + 11 * MINUTE);
    assert_eq!(
        escalation(&d),
        (
            2,
            EscalationReason::Time,
            &charge_nurse(),
            format!("ack@{}", T0 + 8 * MINUTE).as_str()
        )
    );
}

#[test]
fn consult_opened_at_stat_escalates_on_creation() {
    let t = template("consult");
    let doc = opened("rn.evans", "nurse", &t, T0, Some("stat"));
    let created = state(&doc, &t).history[0].event.clone();
    let d = due(&doc, &t);
    assert_eq!(d.at, T0);
    assert_eq!(escalation(&d).0, 1);
    assert_eq!(escalation(&d).1, EscalationReason::Acuity);
    assert_eq!(escalation(&d).3, format!("acuity:{created}"));
}

#[test]
fn nonformulary_becoming_time_critical_escalates_at_once() {
    let t = quiet(template("nonformulary_med"));
    let mut pharmacist = Person::new("ph.chen", "pharmacist");
    let mut nurse = Person::new("rn.night", "nurse");
    let mut doc = opened("ph.chen", "pharmacist", &t, T0, None);
    nurse.act(&mut doc, &t, T0 + 2 * MINUTE, EventBody::Acknowledged {});
    // Acknowledged: the next action is the first step's due time, an hour after creation.
    assert_eq!(due(&doc, &t).at, T0 + HOUR);

    pharmacist.act(
        &mut doc,
        &t,
        T0 + 10 * MINUTE,
        EventBody::AcuityChanged {
            acuity: "time_critical".into(),
        },
    );
    let d = due(&doc, &t);
    assert_eq!(d.at, T0 + 10 * MINUTE);
    assert_eq!(escalation(&d).0, 1);
    assert_eq!(escalation(&d).1, EscalationReason::Acuity);
    assert_eq!(escalation(&d).2, &charge_nurse());
    let e = Node::new("node-1")
        .tick(&mut doc, &t, T0 + 10 * MINUTE)
        .expect("acuity escalation");
    assert_eq!(escalated_to(&e), &to("charge_nurse", Some("cn.night")));
    // Windows are halved: the step is due at +30m and level 2 comes 15 minutes after that.
    let d = due(&doc, &t);
    assert_eq!(escalation(&d).0, 2);
    assert_eq!(
        escalation(&d).3,
        format!("step:family_contacted@{}", T0 + 30 * MINUTE)
    );
    assert_eq!(d.at, T0 + 45 * MINUTE);
}

#[test]
fn off_track_level_rule_fires_once_when_the_chain_reaches_its_level() {
    let t = quiet(template("discharge"));
    let mut doc = opened("dr.adams", "physician", &t, T0, None);
    let mut node = Node::new("node-1");
    node.tick(&mut doc, &t, T0 + 30 * MINUTE).expect("level 1");
    assert!(
        matches!(due(&doc, &t).action, Action::Escalate { level: 2, .. }),
        "no exception at level 1"
    );
    node.tick(&mut doc, &t, T0 + HOUR).expect("level 2");

    let d = due(&doc, &t);
    assert_eq!(d.at, T0 + HOUR);
    assert_eq!(
        d.event_id,
        EventId("offtrack:stalled_to_level_two:epoch0".into())
    );
    assert_eq!(
        d.action,
        Action::RaiseException {
            rule: "stalled_to_level_two".into(),
            alert_role: "charge_nurse".into(),
            reason: "escalation reached level 2".into(),
        }
    );
    node.tick(&mut doc, &t, T0 + HOUR).expect("exception");
    let s = state(&doc, &t);
    assert_eq!(s.open_exceptions().count(), 1);

    // Not again: the next action is level 3, and after it nothing but the 12 hour rule.
    let d = due(&doc, &t);
    assert!(matches!(d.action, Action::Escalate { level: 3, .. }));
    node.tick(&mut doc, &t, d.at).expect("level 3");
    let d = due(&doc, &t);
    assert_eq!(
        d.event_id,
        EventId("offtrack:discharge_delayed:open".into())
    );
}

#[test]
fn off_track_open_longer_than_fires_once_at_twelve_hours() {
    let t = template("discharge");
    let mut doc = opened("dr.adams", "physician", &t, T0, None);
    let mut node = Node::new("node-1");
    // Run the chain and its re-notifications out.
    let mut now = T0;
    while now < T0 + 4 * HOUR {
        while node.tick(&mut doc, &t, now).is_some() {}
        now += 5 * MINUTE;
    }
    let d = due(&doc, &t);
    assert_eq!(d.at, T0 + 12 * HOUR);
    assert_eq!(
        d.action,
        Action::RaiseException {
            rule: "discharge_delayed".into(),
            alert_role: "case_manager".into(),
            reason: "open longer than 12h".into(),
        }
    );
    assert!(node.tick(&mut doc, &t, T0 + 12 * HOUR - 1).is_none());
    let e = node.tick(&mut doc, &t, T0 + 12 * HOUR).expect("raised");
    assert_eq!(e.id, EventId("offtrack:discharge_delayed:open".into()));
    assert_eq!(next_due(&t, &state(&doc, &t)), None, "raised once only");
    assert!(node.tick(&mut doc, &t, T0 + 30 * HOUR).is_none());
}

#[test]
fn off_track_waiting_longer_than_fires_once_per_wait() {
    let t = template("nonformulary_med");
    let mut nurse = Person::new("rn.night", "nurse");
    let mut doc = opened("ph.chen", "pharmacist", &t, T0, None);
    nurse.act(&mut doc, &t, T0 + 2 * MINUTE, EventBody::Acknowledged {});
    nurse.act(
        &mut doc,
        &t,
        T0 + 20 * MINUTE,
        EventBody::StepCompleted {
            step: "family_contacted".into(),
            fields: fields! {
                "method" => FieldValue::Text("phone".into()),
                "contacted_at" => FieldValue::Int(T0 + 20 * MINUTE),
            },
        },
    );
    // A follow-up a day out, so the 8 hour rule is the first thing due.
    let since = T0 + 21 * MINUTE;
    let wait = nurse.act(
        &mut doc,
        &t,
        since,
        EventBody::Waiting {
            on: "family".into(),
            reason: None,
            follow_up_at: Some(since + 24 * HOUR),
            step: None,
            transfer: None,
        },
    );
    let d = due(&doc, &t);
    assert_eq!(d.at, since + 8 * HOUR);
    assert_eq!(
        d.event_id,
        EventId(format!("offtrack:family_not_responding:{}", wait.id))
    );
    assert_eq!(
        d.action,
        Action::RaiseException {
            rule: "family_not_responding".into(),
            alert_role: "charge_nurse".into(),
            reason: "waiting on family longer than 8h".into(),
        }
    );
    let mut node = Node::new("node-1");
    assert!(node.tick(&mut doc, &t, since + 8 * HOUR - 1).is_none());
    node.tick(&mut doc, &t, since + 8 * HOUR).expect("raised");

    // Once raised, the next thing due is the follow-up: the owner is prompted first, and the
    // chain escalates only when the 30 minute prompt window passes with nothing done.
    let follow_up = since + 24 * HOUR;
    let d = due(&doc, &t);
    assert_eq!(d.at, follow_up);
    assert_eq!(d.event_id, EventId(format!("followup:{}", wait.id)));
    let prompt = node.tick(&mut doc, &t, follow_up).expect("prompted");
    assert_eq!(
        prompt.body,
        EventBody::FollowUpDue {
            wait: wait.id.clone()
        }
    );
    let d = due(&doc, &t);
    assert_eq!(d.at, follow_up + 30 * MINUTE);
    assert_eq!(
        escalation(&d).3,
        format!("follow_up:{}@{}", wait.id, follow_up + 30 * MINUTE)
    );
}

#[test]
fn escalation_targets_resolve_through_coverage_when_fired() {
    let t = template("discharge");
    let doc = opened("dr.adams", "physician", &t, T0, None);
    let s = state(&doc, &t);
    let ward = ward();
    let body_to = |schedule: &Schedule, now: Millis| {
        let (_, body) = fire(&t, &s, schedule, now).expect("due");
        match body {
            EventBody::Escalated { to, .. } => to,
            other => panic!("expected an escalation, got {other:?}"),
        }
    };
    // Level 1 goes to the charge nurse on at the moment of firing, not at the due time.
    assert_eq!(
        body_to(&ward, T0 + 30 * MINUTE),
        to("charge_nurse", Some("cn.night"))
    );
    let day_starts = at("2026-01-05T07:00-05:00");
    assert_eq!(
        body_to(&ward, day_starts),
        to("charge_nurse", Some("cn.day"))
    );
    // An override wins.
    let covered = schedule(
        vec![rotation("charge_nurse", &["cn.day", "cn.night"], &[])],
        vec![override_for(
            "charge_nurse",
            "cn.float",
            T0,
            T0 + HOUR,
            false,
        )],
    );
    assert_eq!(
        body_to(&covered, T0 + 30 * MINUTE),
        to("charge_nurse", Some("cn.float"))
    );
    // No one on: the escalation still names the role.
    let nobody = schedule(vec![], vec![]);
    assert_eq!(body_to(&nobody, T0 + 30 * MINUTE), to("charge_nurse", None));
}

#[test]
fn secondary_owner_target_is_the_owner_roles_secondary() {
    let t = quiet(template("consult"));
    let mut doc = opened("rn.evans", "nurse", &t, T0, None);
    let mut node = Node::new("node-1");
    let e = node.tick(&mut doc, &t, T0 + 30 * MINUTE).expect("level 1");
    assert_eq!(escalated_to(&e), &to("physician", Some("dr.backup.night")));
    // Level 2 names a role: its primary. It comes 15 minutes after the secondary owner's own
    // window.
    assert!(node.tick(&mut doc, &t, T0 + 75 * MINUTE - 1).is_none());
    let e = node.tick(&mut doc, &t, T0 + 75 * MINUTE).expect("level 2");
    assert_eq!(escalated_to(&e), &to("charge_nurse", Some("cn.night")));
}

#[test]
fn two_nodes_firing_together_write_one_event() {
    let t = template("discharge");
    let mut doc_a = opened("dr.adams", "physician", &t, T0, None);
    let mut doc_b = replica(&doc_a);
    let now = T0 + 30 * MINUTE;

    // Each node computes independently, from its own copy and its own schedule.
    let (a, b) = (Node::new("node-1"), Node::new("node-2"));
    let fired_a = fire(&t, &state(&doc_a, &t), &a.schedule, now).expect("due");
    let fired_b = fire(&t, &state(&doc_b, &t), &b.schedule, now).expect("due");
    assert_eq!(fired_a, fired_b);
    assert_eq!(
        next_due(&t, &state(&doc_a, &t)),
        next_due(&t, &state(&doc_b, &t))
    );

    let (mut a, mut b) = (a, b);
    a.tick(&mut doc_a, &t, now).expect("node-1 writes");
    b.tick(&mut doc_b, &t, now + 1).expect("node-2 writes");
    doc_a.merge(&mut doc_b).expect("merge");
    let s = state(&doc_a, &t);
    assert_eq!(s.escalations.len(), 1);
    assert_eq!(s.escalation_level, 1);
    let outcomes: Vec<Outcome> = s.history.iter().map(|h| h.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Applied,
            Outcome::Applied,
            Outcome::Applied,
            Outcome::Duplicate
        ]
    );
    assert!(s.conflicts.is_empty());
}

#[test]
fn two_nodes_firing_either_side_of_a_shift_change_still_write_one_escalation() {
    // The day shift starts at 07:00 New York time, T0 + 5h. The task falls due a minute before.
    let t = template("discharge");
    let mut doc_a = opened(
        "dr.adams",
        "physician",
        &t,
        T0 + 4 * HOUR + 29 * MINUTE,
        None,
    );
    let mut doc_b = replica(&doc_a);
    let (mut a, mut b) = (Node::new("node-1"), Node::new("node-2"));
    let before = a
        .tick(&mut doc_a, &t, T0 + 4 * HOUR + 59 * MINUTE)
        .expect("due");
    let after = b.tick(&mut doc_b, &t, T0 + 5 * HOUR + MINUTE).expect("due");
    assert_eq!(before.id, after.id);
    assert_eq!(escalated_to(&before), &to("charge_nurse", Some("cn.night")));
    assert_eq!(escalated_to(&after), &to("charge_nurse", Some("cn.day")));

    doc_a.merge(&mut doc_b).expect("merge");
    let s = state(&doc_a, &t);
    assert_eq!(s.escalations.len(), 1, "one escalation, the earlier");
    assert_eq!(s.escalations[0].to, to("charge_nurse", Some("cn.night")));
    assert_eq!(
        s.history.last().map(|h| h.outcome),
        Some(Outcome::Duplicate)
    );
    assert!(s.conflicts.is_empty());
}

#[test]
fn closed_task_has_nothing_due() {
    let t = template("discharge");
    let mut physician = Person::new("dr.adams", "physician");
    let mut doc = physician.create(&t, T0);
    let mut node = Node::new("node-1");
    node.tick(&mut doc, &t, T0 + 30 * MINUTE).expect("level 1");
    physician.act(
        &mut doc,
        &t,
        T0 + 35 * MINUTE,
        EventBody::Cancelled {
            reason: "patient transferred to ICU".into(),
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.status, Status::Cancelled);
    assert_eq!(next_due(&t, &s), None);
    assert_eq!(fire(&t, &s, &ward(), T0 + 48 * HOUR), None);
}

#[test]
fn untouched_tasks_escalate_to_the_end_of_their_chains_and_then_stop() {
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "discharge",
            "physician",
            &["stalled_to_level_two", "discharge_delayed"],
        ),
        ("consult", "nurse", &["consult_unanswered"]),
        ("shift_handoff", "nurse", &["handoff_not_accepted"]),
        ("nonformulary_med", "pharmacist", &["dose_at_risk"]),
    ];
    for (id, creator, rules) in cases {
        let t = template(id);
        let mut doc = opened("creator", creator, &t, T0, None);
        let mut node = Node::new("node-1");
        let mut now = T0;
        while now <= T0 + 48 * HOUR {
            let mut this_tick = 0;
            while node.tick(&mut doc, &t, now).is_some() {
                this_tick += 1;
                assert!(this_tick <= 10, "{id}: actions keep coming at {now}");
            }
            now += 5 * MINUTE;
        }

        let s = state(&doc, &t);
        // Every level once per pass, in order; a repeating chain makes its passes.
        let levels: Vec<(u32, u32)> = s.escalations.iter().map(|e| (e.round, e.level)).collect();
        let passes = t.escalation_repeat.as_ref().map_or(0, |r| r.times);
        let chain: Vec<(u32, u32)> = (0..=passes)
            .flat_map(|round| (1..=t.escalation.len() as u32).map(move |l| (round, l)))
            .collect();
        assert_eq!(levels, chain, "{id}");
        let raised: Vec<&str> = s
            .exceptions
            .iter()
            .filter_map(|e| e.rule.as_deref())
            .collect();
        assert_eq!(raised, rules, "{id}");
        // Re-notifications are bounded per level.
        let renotified = s
            .history
            .iter()
            .filter(|h| h.kind == baton_core::EventKind::Renotified)
            .count();
        let most = t.renotify.map_or(0, |r| r.times as usize) * chain.len();
        assert!(renotified <= most, "{id}: {renotified} > {most}");
        assert_eq!(t.renotify.is_some(), renotified > 0, "{id}");
        assert_eq!(next_due(&t, &s), None, "{id}: nothing more to do");
        assert!(s.conflicts.is_empty(), "{id}: {:?}", s.conflicts);
        assert!(
            s.history.iter().all(|h| h.outcome == Outcome::Applied),
            "{id}"
        );
        assert_eq!(s.status, Status::Open, "{id}");
    }
}

// ---- routing ----

#[test]
fn a_new_task_is_assigned_to_whoever_covers_its_owner_role_now() {
    let t = template("discharge");
    let mut doc = Person::new("dr.adams", "physician").create(&t, T0);
    let d = due(&doc, &t);
    assert_eq!((d.at, d.event_id.as_str()), (T0, "route:open"));
    assert_eq!(d.action, Action::Route);
    let e = Node::new("node-1").tick(&mut doc, &t, T0).expect("routed");
    assert_eq!(
        e.body,
        EventBody::Assigned {
            user: "cm.night".into(),
            role: "case_manager".into()
        }
    );
    let s = state(&doc, &t);
    assert!(s.routed);
    assert_eq!(s.owner.as_ref().map(|o| o.user.as_str()), Some("cm.night"));
    assert_eq!(s.acknowledged, None, "the assignee must still acknowledge");

    // Opened in the day shift, it goes to the day's case manager.
    let day = at("2026-01-05T09:00-05:00");
    let mut doc = Person::new("dr.adams", "physician").create(&t, day);
    let e = Node::new("node-1").tick(&mut doc, &t, day).expect("routed");
    assert!(matches!(e.body, EventBody::Assigned { ref user, .. } if user == "cm.day"));
}

#[test]
fn a_task_nobody_covers_raises_its_exception_to_the_supervisor_at_once() {
    let t = template("nonformulary_med");
    let mut doc = Person::new("ph.chen", "pharmacist").create(&t, T0);
    let mut node = Node::new("node-1");
    node.schedule = schedule(
        vec![rotation("charge_nurse", &["cn.day", "cn.night"], &[])],
        vec![],
    );
    let e = node.tick(&mut doc, &t, T0).expect("routed");
    assert_eq!(e.id.as_str(), "route:open");
    assert_eq!(
        e.body,
        EventBody::ExceptionRaised {
            rule: Some("nobody_covers".into()),
            alert_role: "charge_nurse".into(),
            reason: "nobody covers nurse on 4W; the task has no owner".into(),
            resolution: Some("Assign a nurse, or fix the unit's rotation.".into()),
        }
    );
    let s = state(&doc, &t);
    assert!(s.routed && s.owner.is_none());
    assert_eq!(s.open_exceptions().count(), 1);
    // Routing is done; what comes next is the acknowledgment window's escalation.
    assert!(matches!(
        due(&doc, &t).action,
        Action::Escalate { level: 1, .. }
    ));
}

#[test]
fn a_task_someone_claimed_first_is_not_routed() {
    let t = template("consult");
    let mut physician = Person::new("dr.kim", "physician");
    let mut doc = Person::new("rn.evans", "nurse").create(&t, T0);
    physician.act(&mut doc, &t, T0 + 1, EventBody::Claimed {});
    let s = state(&doc, &t);
    assert!(next_due(&t, &s).is_none_or(|d| d.action != Action::Route));
    assert!(fire(&t, &s, &ward(), T0 + 1).is_none());
}

#[test]
fn nobody_else_may_take_an_id_the_server_derives() {
    let t = template("discharge");
    let mut doc = Person::new("dr.adams", "physician").create(&t, T0);
    let nurse = Person::new("rn.evans", "nurse");
    let forged = doc.append_with_id(
        &t,
        &nurse.author,
        &mut nurse.clock.clone(),
        T0 + 1,
        EventId::new("route:open"),
        EventBody::Note {
            text: "mine".into(),
        },
    );
    assert!(
        matches!(forged, Err(ref e) if e.to_string().contains("only the server writes")),
        "{forged:?}"
    );
    // Even written past validation (an old client), it cannot shadow the server's routing.
    let mut events = doc.events().expect("events").events;
    let event = |id: &str, actor: baton_core::Actor, wall: Millis, body: EventBody| Event {
        id: EventId::new(id),
        actor,
        device: "phone".into(),
        device_time: wall,
        hlc: baton_core::Hlc::new(wall, 0),
        body,
    };
    events.push(event(
        "route:open",
        baton_core::Actor::new("rn.evans", "nurse"),
        T0 + 1,
        EventBody::Note {
            text: "mine".into(),
        },
    ));
    events.push(event(
        "route:open",
        baton_core::Actor::system(),
        T0 + 2,
        EventBody::Assigned {
            user: "cm.night".into(),
            role: "case_manager".into(),
        },
    ));
    let s = baton_core::fold(&t, doc.meta(), &events);
    assert_eq!(s.owner.as_ref().map(|o| o.user.as_str()), Some("cm.night"));
    assert!(s.routed);
    assert_eq!(
        s.conflicts.len(),
        1,
        "the taken id is a conflict: {:?}",
        s.conflicts
    );
    assert!(matches!(
        s.conflicts[0].refusal,
        baton_core::rules::Refusal::ReservedId { .. }
    ));
}

// ---- the secondary owner ----

#[test]
fn the_secondary_owner_takes_a_task_its_primary_never_acknowledged() {
    let t = quiet(template("consult"));
    let mut doc = opened("rn.evans", "nurse", &t, T0, None);
    let mut primary = Person::new("dr.night", "physician");
    let mut backup = Person::new("dr.backup.night", "physician");
    Node::new("node-1")
        .tick(&mut doc, &t, T0 + 30 * MINUTE)
        .expect("level 1: the secondary owner");
    let s = state(&doc, &t);
    assert_eq!(
        s.owner.as_ref().map(|o| o.user.as_str()),
        Some("dr.backup.night")
    );
    // The primary, too late, may no longer acknowledge; the backup may.
    let late = primary.try_act(&mut doc, &t, T0 + 31 * MINUTE, EventBody::Acknowledged {});
    assert!(late.is_err(), "{late:?}");
    backup.act(&mut doc, &t, T0 + 32 * MINUTE, EventBody::Acknowledged {});
    let s = state(&doc, &t);
    assert_eq!(
        s.acknowledged.as_ref().map(|a| a.user.as_str()),
        Some("dr.backup.night")
    );
    assert_eq!(s.escalation_level, 0, "acknowledging stops the climb");
}

#[test]
fn an_acknowledgment_racing_the_escalation_keeps_the_task_with_its_owner() {
    // The primary acknowledged offline a minute before the window closed; the server, not
    // having heard, escalated to the secondary owner. Merged, the fold orders the
    // acknowledgment first: the task stays the primary's, and the escalation is on record.
    let t = quiet(template("consult"));
    let mut server_copy = opened("rn.evans", "nurse", &t, T0, None);
    let mut phone_copy = replica(&server_copy);
    let mut primary = Person::new("dr.night", "physician");
    primary.act(
        &mut phone_copy,
        &t,
        T0 + 29 * MINUTE,
        EventBody::Acknowledged {},
    );
    Node::new("node-1")
        .tick(&mut server_copy, &t, T0 + 30 * MINUTE)
        .expect("escalated");
    server_copy.merge(&mut phone_copy).expect("merge");
    let s = state(&server_copy, &t);
    assert_eq!(s.owner.as_ref().map(|o| o.user.as_str()), Some("dr.night"));
    assert_eq!(
        s.acknowledged.as_ref().map(|a| a.user.as_str()),
        Some("dr.night")
    );
    assert!(s.conflicts.is_empty(), "{:?}", s.conflicts);
}

// ---- waits ----

/// A discharge with its order placed, so transport, family and reconciliation are current.
fn discharge_under_way() -> (Arc<Template>, TaskDoc) {
    let t = quiet(template("discharge"));
    let mut doc = opened("dr.adams", "physician", &t, T0, None);
    Person::new("cm.night", "case_manager").act(
        &mut doc,
        &t,
        T0 + MINUTE,
        EventBody::Acknowledged {},
    );
    Person::new("dr.adams", "physician").act(
        &mut doc,
        &t,
        T0 + 2 * MINUTE,
        EventBody::StepCompleted {
            step: "order_placed".into(),
            fields: fields! {
                "order_time" => FieldValue::Int(T0),
                "disposition" => FieldValue::Text("home".into()),
            },
        },
    );
    (t, doc)
}

fn wait_on(on: &str, transfer: Option<baton_core::event::Transfer>) -> EventBody {
    EventBody::Waiting {
        on: on.into(),
        step: None,
        reason: None,
        follow_up_at: None,
        transfer,
    }
}

fn van() -> baton_core::event::Transfer {
    baton_core::event::Transfer {
        to: "Metro Wheelchair Van".into(),
        contact: Some("dispatch 555-0142".into()),
        documentation: vec!["transport order".into()],
    }
}

#[test]
fn waits_belong_to_their_step_and_several_can_be_open() {
    let (t, mut doc) = discharge_under_way();
    let mut nurse = Person::new("rn.evans", "nurse");
    let mut transport = Person::new("tp.lee", "transport");
    let family = nurse.act(&mut doc, &t, T0 + 10 * MINUTE, wait_on("family", None));
    transport.act(
        &mut doc,
        &t,
        T0 + 11 * MINUTE,
        wait_on("transport_vendor", Some(van())),
    );
    let s = state(&doc, &t);
    let waits: Vec<(&str, &str)> = s
        .waits
        .iter()
        .map(|w| (w.step.as_str(), w.on.as_str()))
        .collect();
    assert_eq!(
        waits,
        [
            ("family_notified", "family"),
            ("transport", "transport_vendor")
        ]
    );
    assert_eq!(s.status, Status::Waiting);

    // The pharmacist completing medication reconciliation ends neither wait.
    Person::new("ph.chen", "pharmacist").act(
        &mut doc,
        &t,
        T0 + 20 * MINUTE,
        EventBody::StepCompleted {
            step: "medication_reconciliation".into(),
            fields: fields! { "discrepancies" => FieldValue::Int(0) },
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.waits.len(), 2, "{:?}", s.waits);
    assert_eq!(s.status, Status::Waiting);
    // The family's follow-up is still what comes due for it.
    assert!(
        s.waits
            .iter()
            .any(|w| w.event == family.id && w.follow_up_at == T0 + 10 * MINUTE + 2 * HOUR)
    );

    // Completing the transport step ends only the transport wait.
    transport.act(
        &mut doc,
        &t,
        T0 + 30 * MINUTE,
        EventBody::StepCompleted {
            step: "transport".into(),
            fields: fields! {
                "mode" => FieldValue::Text("wheelchair".into()),
                "pickup_at" => FieldValue::Int(T0 + 5 * HOUR),
            },
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.waits.len(), 1);
    assert_eq!(s.waits[0].on, "family");
    assert_eq!(s.status, Status::Waiting);
}

#[test]
fn a_lapsed_follow_up_prompts_the_owner_before_anything_escalates() {
    let (t, mut doc) = discharge_under_way();
    let mut nurse = Person::new("rn.evans", "nurse");
    let mut node = Node::new("node-1");
    let since = T0 + 10 * MINUTE;
    let wait = nurse.act(&mut doc, &t, since, wait_on("family", None));
    let follow_up = since + 2 * HOUR;

    // Nothing before the follow-up time except other steps' due times.
    let d = due(&doc, &t);
    assert_eq!(
        d.action,
        Action::PromptFollowUp {
            wait: wait.id.clone()
        }
    );
    assert_eq!(d.at, follow_up, "{d:?}");
    let prompt = node.tick(&mut doc, &t, follow_up).expect("prompt");
    assert_eq!(
        prompt.body,
        EventBody::FollowUpDue {
            wait: wait.id.clone()
        }
    );
    assert_eq!(prompt.id, EventId(format!("followup:{}", wait.id)));

    // The chain waits for the prompt's 30 minute window.
    let d = due(&doc, &t);
    assert_eq!(d.at, follow_up + 30 * MINUTE);
    assert_eq!(escalation(&d).0, 1);

    // The owner follows up within it (the family will come at five): the climb never starts,
    // and the new follow-up prompts again in its turn.
    let renewed = nurse.act(
        &mut doc,
        &t,
        follow_up + 10 * MINUTE,
        wait_on("family", None),
    );
    let s = state(&doc, &t);
    assert_eq!(s.escalation_level, 0);
    assert_eq!(s.waits.len(), 1);
    let d = due(&doc, &t);
    assert!(d.at > follow_up + 30 * MINUTE);
    assert!(
        !matches!(d.action, Action::Escalate { ref cause, .. } if cause.contains(wait.id.as_str())),
        "{d:?}"
    );
    assert!(s.waits.iter().all(|w| w.event == renewed.id));
}

#[test]
fn an_outside_party_takes_responsibility_and_its_confirmation_ends_the_wait() {
    let (t, mut doc) = discharge_under_way();
    let mut transport = Person::new("tp.lee", "transport");
    let refused = transport.try_act(
        &mut doc,
        &t,
        T0 + 10 * MINUTE,
        wait_on("transport_vendor", None),
    );
    assert!(
        matches!(refused, Err(ref e) if e.to_string().contains("needs `transfer`")),
        "{refused:?}"
    );
    let wait = transport.act(
        &mut doc,
        &t,
        T0 + 10 * MINUTE,
        wait_on("transport_vendor", Some(van())),
    );
    let s = state(&doc, &t);
    let external = s.waits[0].external.as_ref().expect("external");
    assert_eq!(external.transfer, van());
    assert_eq!(
        external.confirm_by,
        "the vendor confirms the pickup time by phone"
    );
    assert_eq!(
        external.documentation_required,
        ["transport order", "face sheet"]
    );

    // Ending it takes a confirmation.
    let resume = |confirmation: Option<&str>| EventBody::Resumed {
        note: None,
        wait: Some(wait.id.clone()),
        confirmation: confirmation.map(str::to_owned),
    };
    let refused = transport.try_act(&mut doc, &t, T0 + 20 * MINUTE, resume(None));
    assert!(
        matches!(refused, Err(ref e) if e.to_string().contains("needs `confirmation`")),
        "{refused:?}"
    );
    transport.act(
        &mut doc,
        &t,
        T0 + 20 * MINUTE,
        resume(Some("dispatch confirmed 14:00 pickup, ref 8812")),
    );
    assert!(state(&doc, &t).waits.is_empty());
}

#[test]
fn an_unresponsive_partner_prompts_the_owner_then_escalates_then_raises_its_exception() {
    let (t, mut doc) = discharge_under_way();
    let mut node = Node::new("node-1");
    let since = T0 + 10 * MINUTE;
    let wait = Person::new("tp.lee", "transport").act(
        &mut doc,
        &t,
        since,
        wait_on("transport_vendor", Some(van())),
    );
    let follow_up = since + HOUR;
    let mut written = Vec::new();
    let mut now = since;
    while now <= follow_up + 2 * HOUR {
        while let Some(e) = node.tick(&mut doc, &t, now) {
            written.push((now, e));
        }
        now += MINUTE;
    }
    let prompt = written
        .iter()
        .position(|(_, e)| {
            e.body
                == EventBody::FollowUpDue {
                    wait: wait.id.clone(),
                }
        })
        .expect("prompted");
    assert_eq!(written[prompt].0, follow_up);
    let first_escalation = written
        .iter()
        .position(|(_, e)| matches!(&e.body, EventBody::Escalated { cause: Some(c), .. } if c.starts_with("follow_up:")))
        .expect("escalated on the follow-up");
    assert!(first_escalation > prompt);
    assert_eq!(written[first_escalation].0, follow_up + 30 * MINUTE);
    let (raised_at, raised) = written
        .iter()
        .find(|(_, e)| matches!(&e.body, EventBody::ExceptionRaised { rule: Some(r), .. } if r == "partner_unresponsive"))
        .expect("partner unresponsive");
    assert_eq!(*raised_at, follow_up + 2 * HOUR);
    match &raised.body {
        EventBody::ExceptionRaised {
            alert_role,
            reason,
            resolution,
            ..
        } => {
            assert_eq!(alert_role, "case_manager");
            assert!(reason.contains("Metro Wheelchair Van"), "{reason}");
            assert_eq!(
                resolution.as_deref(),
                Some("Book another transport vendor.")
            );
        }
        other => panic!("{other:?}"),
    }
}

// ---- repeat and re-notify ----

#[test]
fn a_repeating_chain_starts_again_after_its_last_level_and_then_stops() {
    let t = quiet(template("consult"));
    let mut doc = opened("rn.evans", "nurse", &t, T0, None);
    let mut node = Node::new("node-1");
    let mut escalations = Vec::new();
    let mut now = T0;
    while now <= T0 + 12 * HOUR {
        while let Some(e) = node.tick(&mut doc, &t, now) {
            if let EventBody::Escalated { level, round, .. } = e.body {
                escalations.push((round, level, now, e.id.clone()));
            }
        }
        now += MINUTE;
    }
    let passes: Vec<(u32, u32)> = escalations.iter().map(|&(r, l, ..)| (r, l)).collect();
    assert_eq!(passes, [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]);
    // Each pass is the last level's delay plus the pause after it: 15m + 15m.
    let round_starts: Vec<Millis> = escalations
        .iter()
        .filter(|e| e.1 == 1)
        .map(|e| e.2)
        .collect();
    assert_eq!(round_starts[2] - round_starts[1], 30 * MINUTE);
    let ids: std::collections::BTreeSet<&EventId> = escalations.iter().map(|e| &e.3).collect();
    assert_eq!(
        ids.len(),
        escalations.len(),
        "every pass writes its own event"
    );
    assert_eq!(next_due(&t, &state(&doc, &t)), None);
}

#[test]
fn the_current_target_is_told_again_until_someone_acts() {
    let t = template("discharge");
    let mut doc = opened("dr.adams", "physician", &t, T0, None);
    let mut node = Node::new("node-1");
    let stall = T0 + 30 * MINUTE;
    node.tick(&mut doc, &t, stall).expect("level 1");
    let mut again = Vec::new();
    for minutes in 1..=25 {
        if let Some(e) = node.tick(&mut doc, &t, stall + minutes * MINUTE) {
            again.push((minutes, e));
        }
    }
    let renotified: Vec<(i64, &EventBody)> = again.iter().map(|(m, e)| (*m, &e.body)).collect();
    assert_eq!(
        renotified,
        [
            (
                10,
                &EventBody::Renotified {
                    level: 1,
                    to: to("charge_nurse", Some("cn.night"))
                }
            ),
            (
                20,
                &EventBody::Renotified {
                    level: 1,
                    to: to("charge_nurse", Some("cn.night"))
                }
            ),
        ]
    );
    // The owner acknowledges: nobody is told again.
    Person::new("cm.night", "case_manager").act(
        &mut doc,
        &t,
        stall + 26 * MINUTE,
        EventBody::Acknowledged {},
    );
    let d = due(&doc, &t);
    assert!(!matches!(d.action, Action::Renotify { .. }), "{d:?}");
}

// ---- shift change and disabled accounts ----

use baton_core::policy::handover::handover;

#[test]
fn at_shift_change_the_outgoing_owner_s_tasks_are_offered_to_whoever_comes_on() {
    let t = quiet(template("nonformulary_med"));
    let mut doc = opened("ph.chen", "pharmacist", &t, T0, None);
    let mut night = Person::new("rn.night", "nurse");
    night.act(&mut doc, &t, T0 + MINUTE, EventBody::Acknowledged {});
    night.act(
        &mut doc,
        &t,
        T0 + 2 * MINUTE,
        EventBody::Note {
            text: "family bringing the inhaler at 8".into(),
        },
    );
    let day_starts = at("2026-01-05T07:00-05:00");
    let s = state(&doc, &t);
    assert_eq!(
        handover(&t, &s, &ward(), day_starts - 1),
        None,
        "not before 07:00"
    );
    let (id, body) = handover(&t, &s, &ward(), day_starts).expect("offered at 07:00");
    assert_eq!(id, EventId(format!("shift:{day_starts}:rn.night")));
    assert_eq!(
        body,
        EventBody::HandoffOffered {
            to: baton_core::Actor::new("rn.day", "nurse"),
            item: None,
            note: Some("family bringing the inhaler at 8".into()),
        }
    );
    let system = Author::system("node-1");
    doc.append_with_id(&t, &system, &mut HlcClock::new(), day_starts, id, body)
        .expect("the rules take the server's offer");
    let s = state(&doc, &t);
    // The outgoing owner stays accountable until the incoming one accepts.
    assert_eq!(s.owner.as_ref().map(|o| o.user.as_str()), Some("rn.night"));
    let offer = s.pending_handoffs().next().expect("pending").clone();
    assert_eq!(offer.from, baton_core::Actor::new("rn.night", "nurse"));
    assert!(
        handover(&t, &s, &ward(), day_starts + MINUTE).is_none(),
        "once"
    );
    // Unaccepted, the offer is a deadline the chain escalates.
    assert!(
        s.deadlines
            .iter()
            .any(|d| d.cause == baton_core::fold::Cause::Handoff(offer.offer.clone()))
    );
    Person::new("rn.day", "nurse").act(
        &mut doc,
        &t,
        day_starts + 5 * MINUTE,
        EventBody::HandoffAccepted {
            offer: offer.offer.clone(),
        },
    );
    let s = state(&doc, &t);
    assert_eq!(s.owner.as_ref().map(|o| o.user.as_str()), Some("rn.day"));
    assert_eq!(handover(&t, &s, &ward(), day_starts + 6 * MINUTE), None);
}

#[test]
fn shift_change_on_the_spring_forward_day_comes_at_seven_local() {
    let t = quiet(template("nonformulary_med"));
    // 01:00 EST on 2026-03-08: the night shift, which lasts 11 hours this once.
    let opened_at = at("2026-03-08T01:00-05:00");
    let mut doc = opened("ph.chen", "pharmacist", &t, opened_at, None);
    let s = state(&doc, &t);
    assert_eq!(s.owner.as_ref().map(|o| o.user.as_str()), Some("rn.night"));
    let seven = at("2026-03-08T07:00-04:00");
    assert_eq!(seven - at("2026-03-07T19:00-05:00"), 11 * HOUR);
    assert_eq!(handover(&t, &s, &ward(), seven - 1), None);
    let (_, body) = handover(&t, &s, &ward(), seven).expect("offered at 07:00 EDT");
    assert!(matches!(body, EventBody::HandoffOffered { ref to, .. } if to.user == "rn.day"));
    let _ = &mut doc;
}

#[test]
fn a_disabled_owner_s_task_goes_to_whoever_covers_or_raises_that_nobody_does() {
    let t = quiet(template("nonformulary_med"));
    let doc = opened("ph.chen", "pharmacist", &t, T0, None);
    let s = state(&doc, &t);
    // A float nurse is in for the night: the task is reassigned to her.
    let float = schedule(
        vec![rotation("nurse", &["rn.day", "rn.night"], &[])],
        vec![override_for(
            "nurse",
            "rn.float",
            T0 - HOUR,
            T0 + HOUR,
            false,
        )],
    );
    // rn.night owns it (routed at T0 before the override was known); she is disabled.
    let (id, body) = handover(&t, &s, &float.without(["rn.night".into()]), T0 + MINUTE)
        .expect("re-routed at once");
    assert!(id.as_str().starts_with("reroute:rn.night:"), "{id}");
    assert!(
        matches!(body, EventBody::Reassigned { ref user, .. } if user == "rn.float"),
        "{body:?}"
    );
    // Nobody else on: the exception goes to the charge nurse.
    let (_, body) = handover(&t, &s, &ward().without(["rn.night".into()]), T0 + MINUTE)
        .expect("raised at once");
    assert!(
        matches!(body, EventBody::ExceptionRaised { ref rule, ref alert_role, .. }
            if rule.as_deref() == Some("nobody_covers") && alert_role == "charge_nurse"),
        "{body:?}"
    );
}
