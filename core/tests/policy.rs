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
        let doc = Person::new("creator", creator).create(&t, T0);
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
    let mut doc = Person::new("rn.evans", "nurse").create_with(&t, T0, Some("urgent"));
    let d = due(&doc, &t);
    assert_eq!(d.at, T0 + 15 * MINUTE, "urgent is 50% of 30 minutes");

    let mut node = Node::new("node-1");
    node.tick(&mut doc, &t, d.at).expect("level 1");
    let d = due(&doc, &t);
    assert_eq!(escalation(&d).0, 2);
    assert_eq!(
        d.at,
        T0 + 15 * MINUTE + 7 * MINUTE + 30_000,
        "level 2 is 50% of 15 minutes past the stall"
    );
}

#[test]
fn fire_gives_nothing_before_the_due_time_and_the_due_event_at_or_after_it() {
    let t = template("discharge");
    let doc = Person::new("dr.adams", "physician").create(&t, T0);
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
    let t = template("discharge");
    let mut doc = Person::new("dr.adams", "physician").create(&t, T0);
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

    // Reaching level 2 raises the off-track exception at once.
    let d = due(&doc, &t);
    assert_eq!(d.at, stall + 30 * MINUTE);
    assert!(matches!(d.action, Action::RaiseException { .. }));
    node.tick(&mut doc, &t, d.at).expect("exception");

    // Level 3 is an hour past the stall: the physician.
    let d = due(&doc, &t);
    assert_eq!((d.at, escalation(&d).0), (stall + HOUR, 3));
    assert_eq!(d.event_id, EventId(format!("esc:0:3:{cause}")));
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
    let mut doc = Person::new("dr.adams", "physician").create(&t, T0);
    let mut case_manager = Person::new("cm.brown", "case_manager");
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
    let t = template("consult");
    let mut nurse = Person::new("rn.evans", "nurse");
    let mut doc = nurse.create(&t, T0);
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
    // The time chain carries on from level 1 on stat's windows (20%): the 6 minute
    // acknowledgment window has passed, and level 2 comes 3 minutes after it.
    let d = due(&doc, &t);
    assert_eq!(d.at, T0 + 9 * MINUTE);
    assert_eq!(
        escalation(&d),
        (
            2,
            EscalationReason::Time,
            &charge_nurse(),
            format!("ack@{}", T0 + 6 * MINUTE).as_str()
        )
    );
}

#[test]
fn consult_opened_at_stat_escalates_on_creation() {
    let t = template("consult");
    let doc = Person::new("rn.evans", "nurse").create_with(&t, T0, Some("stat"));
    let created = state(&doc, &t).history[0].event.clone();
    let d = due(&doc, &t);
    assert_eq!(d.at, T0);
    assert_eq!(escalation(&d).0, 1);
    assert_eq!(escalation(&d).1, EscalationReason::Acuity);
    assert_eq!(escalation(&d).3, format!("acuity:{created}"));
}

#[test]
fn nonformulary_becoming_time_critical_escalates_at_once() {
    let t = template("nonformulary_med");
    let mut pharmacist = Person::new("ph.chen", "pharmacist");
    let mut nurse = Person::new("rn.evans", "nurse");
    let mut doc = pharmacist.create(&t, T0);
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
    let t = template("discharge");
    let mut doc = Person::new("dr.adams", "physician").create(&t, T0);
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
    let mut doc = Person::new("dr.adams", "physician").create(&t, T0);
    let mut node = Node::new("node-1");
    // Run the chain out.
    let mut now = T0;
    while now < T0 + 2 * HOUR {
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
    let mut pharmacist = Person::new("ph.chen", "pharmacist");
    let mut nurse = Person::new("rn.evans", "nurse");
    let mut doc = pharmacist.create(&t, T0);
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

    // Once raised, the next thing due is the follow-up's escalation.
    let d = due(&doc, &t);
    assert_eq!(d.at, since + 24 * HOUR);
    assert_eq!(
        escalation(&d).3,
        format!("follow_up:{}@{}", wait.id, since + 24 * HOUR)
    );
}

#[test]
fn escalation_targets_resolve_through_coverage_when_fired() {
    let t = template("discharge");
    let doc = Person::new("dr.adams", "physician").create(&t, T0);
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
    let t = template("consult");
    let mut doc = Person::new("rn.evans", "nurse").create(&t, T0);
    let mut node = Node::new("node-1");
    let e = node.tick(&mut doc, &t, T0 + 30 * MINUTE).expect("level 1");
    assert_eq!(escalated_to(&e), &to("physician", Some("dr.backup.night")));
    // Level 2 names a role: its primary.
    let e = node.tick(&mut doc, &t, T0 + 45 * MINUTE).expect("level 2");
    assert_eq!(escalated_to(&e), &to("charge_nurse", Some("cn.night")));
}

#[test]
fn two_nodes_firing_together_write_one_event() {
    let t = template("discharge");
    let mut doc_a = Person::new("dr.adams", "physician").create(&t, T0);
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
        [Outcome::Applied, Outcome::Applied, Outcome::Duplicate]
    );
    assert!(s.conflicts.is_empty());
}

#[test]
fn two_nodes_firing_either_side_of_a_shift_change_still_write_one_escalation() {
    // The day shift starts at 07:00 New York time, T0 + 5h. The task falls due a minute before.
    let t = template("discharge");
    let mut doc_a = Person::new("dr.adams", "physician").create(&t, T0 + 4 * HOUR + 29 * MINUTE);
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
        let mut doc = Person::new("creator", creator).create(&t, T0);
        let mut node = Node::new("node-1");
        let mut written = 0;
        let mut now = T0;
        while now <= T0 + 48 * HOUR {
            let mut this_tick = 0;
            while node.tick(&mut doc, &t, now).is_some() {
                this_tick += 1;
                assert!(this_tick <= 10, "{id}: actions keep coming at {now}");
            }
            written += this_tick;
            now += 5 * MINUTE;
        }

        let s = state(&doc, &t);
        let levels: Vec<u32> = s.escalations.iter().map(|e| e.level).collect();
        let chain: Vec<u32> = (1..=t.escalation.len() as u32).collect();
        assert_eq!(levels, chain, "{id}: every level once, in order");
        let raised: Vec<&str> = s
            .exceptions
            .iter()
            .filter_map(|e| e.rule.as_deref())
            .collect();
        assert_eq!(raised, rules, "{id}");
        assert_eq!(written, chain.len() + rules.len(), "{id}");
        assert_eq!(next_due(&t, &s), None, "{id}: nothing more to do");
        assert!(s.conflicts.is_empty(), "{id}");
        assert!(
            s.history.iter().all(|h| h.outcome == Outcome::Applied),
            "{id}"
        );
        assert_eq!(s.status, Status::Open, "{id}");
    }
}
