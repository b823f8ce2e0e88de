//! Unit index documents: written by the server, read by phones, offline included.
#![allow(clippy::unwrap_used)]

use automerge::ActorId;
use baton_core::index::{self, CoverageError, CoveragePlan, RosterEntry};
use baton_core::policy::coverage::Rotation;
use baton_core::time::Span;
use std::collections::BTreeMap;

fn day_night() -> CoveragePlan {
    let rotation = Rotation {
        unit: "4W".into(),
        role: "nurse".into(),
        anchor: "2026-01-05T07:00".parse().unwrap(),
        shift: Span::from_minutes(12 * 60),
        primary: vec!["rn.evans".into(), "rn.okafor".into()],
        secondary: Vec::new(),
    };
    CoveragePlan {
        zone: "America/New_York".into(),
        rotations: BTreeMap::from([("nurse".into(), rotation)]),
        overrides: Vec::new(),
    }
}

/// Milliseconds since the epoch of a New York wall-clock time.
fn new_york(local: &str) -> i64 {
    local
        .parse::<jiff::civil::DateTime>()
        .unwrap()
        .in_tz("America/New_York")
        .unwrap()
        .timestamp()
        .as_millisecond()
}

#[test]
fn a_phone_reads_who_covers_a_role_from_the_index_alone() {
    let roster = BTreeMap::from([(
        "rn.evans".into(),
        RosterEntry {
            name: "Riley Evans".into(),
            roles: vec!["nurse".into()],
        },
    )]);
    let mut doc = index::create(&"4W".into(), &roster, 0, ActorId::random()).unwrap();
    assert_eq!(index::read(&doc).unwrap().coverage, None, "none until set");

    index::set_coverage(&mut doc, &day_night()).unwrap();
    // What a phone holds: the bytes it synced.
    let phone = automerge::Automerge::load(&doc.save()).unwrap();
    let read = index::read(&phone).unwrap();
    assert_eq!(read.roster, roster);
    let plan = read.coverage.expect("coverage");
    assert_eq!(plan, day_night());

    let schedule = plan.schedule().unwrap();
    let nurse = |at: &str| {
        schedule
            .covering(&"4W".into(), &"nurse".into(), new_york(at))
            .primary
            .map(|u| u.to_string())
    };
    assert_eq!(nurse("2026-03-02T08:00").as_deref(), Some("rn.evans"));
    assert_eq!(nurse("2026-03-02T20:00").as_deref(), Some("rn.okafor"));
    // Across the change to daylight saving time the day shift still starts at 07:00.
    assert_eq!(nurse("2026-03-09T07:30").as_deref(), Some("rn.evans"));
    assert_eq!(nurse("2026-03-09T06:30").as_deref(), Some("rn.okafor"));
}

#[test]
fn a_plan_in_an_unknown_time_zone_is_an_error() {
    let plan = CoveragePlan {
        zone: "Mars/Olympus_Mons".into(),
        ..day_night()
    };
    assert_eq!(
        plan.schedule().err(),
        Some(CoverageError::Zone("Mars/Olympus_Mons".into()))
    );
}
