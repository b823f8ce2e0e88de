//! `serve --demo`: two units, the people who work on them, a day/night rotation, and a few live
//! tasks, so a new user can connect a phone (or any automerge-repo client) and see a worklist at
//! once.
//!
//! Seeding is idempotent: people and units are upserted; tasks are opened only on a unit that has
//! no index document yet.

use crate::AppState;
use crate::hub::HubError;
use crate::now_ms;
use baton_core::policy::coverage::Rotation;
use baton_core::sync::DocumentId;
use baton_core::{Author, HlcClock, NewTask, Span, Subject, TaskDoc, TemplateRegistry};

/// The demo's units: (id, name).
pub const UNITS: [(&str, &str); 2] = [
    ("4W", "4 West, medical-surgical"),
    ("ICU", "Intensive care"),
];

/// The demo's roles: (id, name).
pub const ROLES: [(&str, &str); 6] = [
    ("nurse", "Nurse"),
    ("charge_nurse", "Charge nurse"),
    ("physician", "Physician"),
    ("pharmacist", "Pharmacist"),
    ("case_manager", "Case manager"),
    ("transport", "Transport"),
];

/// A person: (user, name, [(unit, role)]).
pub type Person = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The demo's people.
pub const PEOPLE: [Person; 11] = [
    ("rn.evans", "Riley Evans", &[("4W", "nurse")]),
    ("rn.okafor", "Chidi Okafor", &[("4W", "nurse")]),
    ("rn.silva", "Ana Silva", &[("ICU", "nurse")]),
    ("rn.moreau", "Luc Moreau", &[("ICU", "nurse")]),
    (
        "cn.patel",
        "Priya Patel",
        &[("4W", "charge_nurse"), ("ICU", "charge_nurse")],
    ),
    (
        "dr.fox",
        "Dana Fox",
        &[("4W", "physician"), ("ICU", "physician")],
    ),
    (
        "ph.nguyen",
        "Minh Nguyen",
        &[("4W", "pharmacist"), ("ICU", "pharmacist")],
    ),
    (
        "cm.garcia",
        "Sofia Garcia",
        &[("4W", "case_manager"), ("ICU", "case_manager")],
    ),
    (
        "tr.kim",
        "Jae Kim",
        &[("4W", "transport"), ("ICU", "transport")],
    ),
    ("admin", "Baton administrator", &[]),
    ("admin.4w", "4W unit administrator", &[]),
];

/// The demo's administrator: an admin of the server (every unit) in the records.
pub const ADMIN: &str = "admin";

/// The demo's administrator of 4W alone.
pub const UNIT_ADMIN: &str = "admin.4w";

/// The demo hospital's time zone.
pub const ZONE: &str = "America/New_York";

/// When shift 0 of every demo rotation starts (local time): a Monday, 07:00.
const ROTATION_ANCHOR: &str = "2026-01-05T07:00";

/// The demo's rotations: (unit, role, shift, who covers shifts 0, 1, 2, … in turn). The nurses
/// alternate days (07:00–19:00) and nights; the charge nurse and the physician cover every shift.
const ROTATIONS: [(&str, &str, &str, &[&str]); 6] = [
    ("4W", "nurse", "12h", &["rn.evans", "rn.okafor"]),
    ("ICU", "nurse", "12h", &["rn.silva", "rn.moreau"]),
    ("4W", "charge_nurse", "12h", &["cn.patel"]),
    ("ICU", "charge_nurse", "12h", &["cn.patel"]),
    ("4W", "physician", "24h", &["dr.fox"]),
    ("ICU", "physician", "24h", &["dr.fox"]),
];

/// Live tasks per unit: (unit, template, author, role, subject ref, label, acuity).
const TASKS: [(&str, &str, &str, &str, &str, &str, &str); 5] = [
    (
        "4W",
        "discharge",
        "dr.fox",
        "physician",
        "enc-4w-12",
        "Bed 12 · J.D.",
        "routine",
    ),
    (
        "4W",
        "consult",
        "rn.evans",
        "nurse",
        "enc-4w-07",
        "Bed 7 · M.R.",
        "urgent",
    ),
    (
        "4W",
        "nonformulary_med",
        "ph.nguyen",
        "pharmacist",
        "enc-4w-03",
        "Bed 3 · A.K.",
        "routine",
    ),
    (
        "ICU",
        "consult",
        "rn.silva",
        "nurse",
        "enc-icu-02",
        "Bed 2 · T.B.",
        "urgent",
    ),
    (
        "ICU",
        "discharge",
        "cn.patel",
        "charge_nurse",
        "enc-icu-05",
        "Bed 5 · L.W.",
        "routine",
    ),
];

/// Why the demo data could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("a demo rotation: {0}")]
    Rotation(String),
}

/// Seed the demo data.
pub async fn seed(app: &AppState) -> Result<(), SeedError> {
    let db = &app.db;
    let now = now_ms();
    for (id, name) in ROLES {
        db.upsert_role(id, name).await?;
    }
    for (id, name) in UNITS {
        db.upsert_unit(id, name, now).await?;
    }
    for (user, name, grants) in PEOPLE {
        db.upsert_user(user, name, now).await?;
        for (unit, role) in grants {
            db.add_membership(user, unit, role).await?;
        }
    }
    for (unit, _) in UNITS {
        db.set_unit_zone(unit, ZONE).await?;
    }
    // The demo's administrators, in the records: one of the server (every unit), one of 4W.
    db.add_admin(ADMIN, now).await?;
    db.add_unit_admin(UNIT_ADMIN, "4W", now).await?;
    for (unit, role, shift, primary) in ROTATIONS {
        let rotation = Rotation {
            unit: unit.into(),
            role: role.into(),
            anchor: ROTATION_ANCHOR
                .parse()
                .map_err(|e| SeedError::Rotation(format!("its anchor: {e}")))?,
            shift: shift
                .parse()
                .map_err(|e| SeedError::Rotation(format!("its shift: {e}")))?,
            primary: primary.iter().map(|u| (*u).into()).collect(),
            secondary: Vec::new(),
        };
        db.put_rotation(&rotation).await?;
    }
    for (unit, _) in UNITS {
        let fresh = db.unit_index(unit).await?.is_none();
        app.hub.ensure_unit_index(unit).await?;
        app.hub.refresh_roster(unit).await?;
        if !fresh {
            continue;
        }
        for (_, template, user, role, reference, label, acuity) in
            TASKS.iter().filter(|t| t.0 == unit)
        {
            open_task(app, unit, template, user, role, reference, label, acuity).await?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn open_task(
    app: &AppState,
    unit: &str,
    template: &str,
    user: &str,
    role: &str,
    reference: &str,
    label: &str,
    acuity: &str,
) -> Result<(), HubError> {
    let id = DocumentId::random();
    let template = app
        .hub
        .templates()
        .latest(&template.into())
        .cloned()
        .ok_or_else(|| HubError::Doc(id, format!("template {template} is not loaded")))?;
    let author = Author::new(user, role, "demo-seed");
    let new = NewTask {
        unit: unit.into(),
        subject: Subject {
            reference: reference.to_owned(),
            label: label.to_owned(),
        },
        acuity: Some(acuity.to_owned()),
        note: Some("Opened by the demo".to_owned()),
    };
    let (task, _) = TaskDoc::create(
        &template,
        new,
        &author,
        &mut HlcClock::new(),
        now_ms(),
        automerge::ActorId::random(),
    )
    .map_err(|e| HubError::Doc(id, e.to_string()))?;
    app.hub.import_task(id, task).await
}

/// What `serve --demo` prints once it is listening.
pub fn banner(addr: std::net::SocketAddr, data_dir: &std::path::Path, time_scale: u32) -> String {
    let banner = format!(
        "Baton demo is running on http://{addr}\n\
         \n\
         Units: 4W (medical-surgical) and ICU. People: rn.evans, rn.okafor (4W nurses), rn.silva,\n\
         rn.moreau (ICU nurses), cn.patel (charge nurse), dr.fox (physician), ph.nguyen (pharmacist),\n\
         cm.garcia (case manager), tr.kim (transport); admin (the server's administrator) and\n\
         admin.4w (4W's). Nurses rotate days (07:00-19:00\n\
         New York time) and nights: rn.evans and rn.okafor on 4W, rn.silva and rn.moreau on ICU.\n\
         \n\
         Issue a token for a phone:\n\
         \x20 baton-server token issue --data-dir {dir} --user rn.evans --device phone-1 --role nurse --unit 4W\n\
         Bootstrap it:\n\
         \x20 curl -H \"Authorization: Bearer $TOKEN\" http://{addr}/api/v1/me\n\
         Then sync over ws://{addr}/sync with the same token (automerge-repo protocol): open the\n\
         unit's index_url, and from it every open task.\n\
         \n\
         Watch 4W as its charge nurse: open http://{addr}/board#token=$TOKEN with\n\
         \x20 baton-server token issue --data-dir {dir} --user cn.patel --device ward-pc --role charge_nurse --unit 4W\n\
         Administer (API: http://{addr}/api/v1/openapi.json) with\n\
         \x20 baton-server token issue --data-dir {dir} --user admin --device console --admin\n\
         Check the audit trail at any time: baton-server audit verify --data-dir {dir}\n",
        dir = data_dir.display(),
    );
    banner + "\n" + &story(time_scale)
}

/// What the server will do with the demo's tasks, and when, in real time at `time_scale`.
fn story(time_scale: u32) -> String {
    let templates = TemplateRegistry::shipped();
    let real = |span: Span| {
        let secs = span.as_millis() / 1000 / u64::from(time_scale.max(1));
        if secs >= 120 {
            format!("{} min", secs / 60)
        } else {
            format!("{secs} s")
        }
    };
    let mut lines = vec![
        format!("What happens next (the workflow clock runs {time_scale}x real time):"),
        "  at once: every task is routed: the consults to dr.fox, the 4W medication to the nurse on"
            .to_owned(),
        "    shift; the discharges raise `nobody_covers` to the charge nurse (no case manager rotation)."
            .to_owned(),
    ];
    for (unit, id, .., acuity) in TASKS {
        let Some(t) = templates.latest(&id.into()) else {
            continue;
        };
        let window = t.ack_window.scaled(t.window_percent(acuity));
        let first = t.escalation.first().map_or_else(
            || "its owner".to_owned(),
            |level| match &level.target {
                baton_core::template::EscalationTarget::Role(role) => role.to_string(),
                baton_core::template::EscalationTarget::SecondaryOwner {} => {
                    "the secondary owner".to_owned()
                }
            },
        );
        lines.push(format!(
            "  in {}: unacknowledged, the {unit} {id} ({acuity}) escalates to {first}",
            real(window)
        ));
    }
    lines.push(
        "  then each level of its chain, re-notifying, and at 07:00 and 19:00 (New York) the"
            .into(),
    );
    lines.push(
        "    outgoing nurse's tasks are offered to the incoming one. The log has a line per".into(),
    );
    lines.push(
        "    routing, escalation and notification; acknowledge from a phone to stop the climb."
            .into(),
    );
    lines.join("\n") + "\n"
}
