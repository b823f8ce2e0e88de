//! Unit index documents: one per unit, written only by the server.
//!
//! ```text
//! { schema: 1, type: "baton/unit-index", unit, created,
//!   tasks:    { <document id>: { url, template: { id, version }, label, acuity, created } },
//!   roster:   { <user id>: { name, roles: [role, ...] } },
//!   coverage: { zone, rotations: { <role>: { unit, role, anchor, shift, primary, secondary } },
//!               overrides: [ { unit, role, user, from, until, secondary } ] } }
//! ```
//!
//! `coverage` is the unit's rotations, so a phone can tell who covers a role at any moment
//! without the server ([`CoveragePlan::schedule`]); an index written before coverage existed has
//! none.
//!
//! A phone opens its unit's index (the URL comes from `GET /api/v1/me`) and from it every open
//! task document, so a new device gets the whole worklist from the server alone, and keeps it
//! offline. Devices never write to an index: validation refuses any change from them.

use crate::codec;
use crate::doc::{SCHEMA, TaskMeta};
use crate::ids::{Role, UnitId, UserId};
use crate::policy::coverage::{Override, Rotation, Schedule, ScheduleError};
use crate::sync::DocumentId;
use crate::template::TemplateRef;
use crate::time::Millis;
use automerge::{
    ActorId, Automerge, ChangeHash, ObjType, ROOT, ReadDoc, transaction::Transactable,
};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The `type` of a unit index document.
pub const INDEX_TYPE: &str = "baton/unit-index";
const TASKS: &str = "tasks";
const ROSTER: &str = "roster";
const COVERAGE: &str = "coverage";

/// One open task as the index lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedTask {
    /// The task document's `automerge:` URL.
    pub url: String,
    pub template: TemplateRef,
    /// The subject's display label.
    pub label: String,
    pub acuity: String,
    pub created: Millis,
}

impl IndexedTask {
    pub fn of(id: &DocumentId, meta: &TaskMeta) -> Self {
        IndexedTask {
            url: id.url(),
            template: meta.template.clone(),
            label: meta.subject.label.clone(),
            acuity: meta.acuity.clone(),
            created: meta.created,
        }
    }
}

/// A person who works on the unit, with the roles they hold there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    pub name: String,
    pub roles: Vec<Role>,
}

/// A unit's coverage plan, as its index carries it for phones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoveragePlan {
    /// The unit's IANA time zone (`America/New_York`): shifts start at local wall-clock times.
    pub zone: String,
    /// One rotation per role.
    pub rotations: BTreeMap<Role, Rotation>,
    /// Who is in instead for a period (a sick call, a swap), over the rotation. Absent from
    /// indexes written before overrides existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
}

/// Why a coverage plan cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoverageError {
    #[error("unknown time zone `{0}`")]
    Zone(String),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

impl CoveragePlan {
    /// The schedule that answers who covers a role when.
    pub fn schedule(&self) -> Result<Schedule, CoverageError> {
        let zone = TimeZone::get(&self.zone).map_err(|_| CoverageError::Zone(self.zone.clone()))?;
        let rotations = self.rotations.values().cloned().collect();
        Ok(Schedule::new(zone, rotations, self.overrides.clone())?)
    }
}

/// An index document, read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitIndex {
    pub schema: u32,
    #[serde(rename = "type")]
    pub doc_type: String,
    pub unit: UnitId,
    pub created: Millis,
    /// Open tasks by document id.
    pub tasks: BTreeMap<String, IndexedTask>,
    pub roster: BTreeMap<UserId, RosterEntry>,
    /// Absent from indexes written before coverage existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<CoveragePlan>,
}

/// Why an index could not be written or read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("not a unit index: {0}")]
    NotAnIndex(String),
    #[error("{0}")]
    Automerge(String),
}

fn am(e: automerge::AutomergeError) -> IndexError {
    IndexError::Automerge(e.to_string())
}

fn json_map<T: Serialize>(value: &T) -> Result<serde_json::Map<String, Value>, IndexError> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(IndexError::Automerge(
            "a value did not serialize to a map".into(),
        )),
    }
}

/// A new, empty index for `unit`, written by `actor` (the server).
pub fn create(
    unit: &UnitId,
    roster: &BTreeMap<UserId, RosterEntry>,
    now: Millis,
    actor: ActorId,
) -> Result<Automerge, IndexError> {
    let index = UnitIndex {
        schema: SCHEMA,
        doc_type: INDEX_TYPE.to_owned(),
        unit: unit.clone(),
        created: now,
        tasks: BTreeMap::new(),
        roster: roster.clone(),
        coverage: None,
    };
    let fields = json_map(&index)?;
    let mut doc = Automerge::new().with_actor(actor);
    doc.transact::<_, _, automerge::AutomergeError>(|tx| codec::write_map(tx, &ROOT, &fields))
        .map_err(|f| am(f.error))?;
    Ok(doc)
}

fn map_at(doc: &Automerge, key: &str) -> Result<automerge::ObjId, IndexError> {
    match doc.get(ROOT, key) {
        Ok(Some((automerge::Value::Object(ObjType::Map), id))) => Ok(id),
        _ => Err(IndexError::NotAnIndex(format!("`{key}` is not a map"))),
    }
}

/// List `task` as open.
pub fn put_task(
    doc: &mut Automerge,
    id: &DocumentId,
    task: &IndexedTask,
) -> Result<(), IndexError> {
    let tasks = map_at(doc, TASKS)?;
    let fields = json_map(task)?;
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        let obj = tx.put_object(&tasks, id.to_string(), ObjType::Map)?;
        codec::write_map(tx, &obj, &fields)
    })
    .map_err(|f| am(f.error))?;
    Ok(())
}

/// Take a closed task off the index. Does nothing if it is not listed.
pub fn remove_task(doc: &mut Automerge, id: &DocumentId) -> Result<(), IndexError> {
    let tasks = map_at(doc, TASKS)?;
    let key = id.to_string();
    if doc.get(&tasks, key.as_str()).map_err(am)?.is_none() {
        return Ok(());
    }
    doc.transact::<_, _, automerge::AutomergeError>(|tx| tx.delete(&tasks, key.as_str()))
        .map_err(|f| am(f.error))?;
    Ok(())
}

/// Replace the roster.
pub fn set_roster(
    doc: &mut Automerge,
    roster: &BTreeMap<UserId, RosterEntry>,
) -> Result<(), IndexError> {
    let Value::Object(fields) = serde_json::to_value(roster).unwrap_or(Value::Null) else {
        return Err(IndexError::Automerge("the roster did not serialize".into()));
    };
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        let obj = tx.put_object(ROOT, ROSTER, ObjType::Map)?;
        codec::write_map(tx, &obj, &fields)
    })
    .map_err(|f| am(f.error))?;
    Ok(())
}

/// Replace the coverage plan.
pub fn set_coverage(doc: &mut Automerge, coverage: &CoveragePlan) -> Result<(), IndexError> {
    let fields = json_map(coverage)?;
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        let obj = tx.put_object(ROOT, COVERAGE, ObjType::Map)?;
        codec::write_map(tx, &obj, &fields)
    })
    .map_err(|f| am(f.error))?;
    Ok(())
}

/// Read an index document.
pub fn read(doc: &Automerge) -> Result<UnitIndex, IndexError> {
    let json =
        codec::to_json(&doc.hydrate(None)).map_err(|e| IndexError::NotAnIndex(e.to_string()))?;
    let index: UnitIndex =
        serde_json::from_value(json).map_err(|e| IndexError::NotAnIndex(e.to_string()))?;
    if index.doc_type != INDEX_TYPE {
        return Err(IndexError::NotAnIndex(format!(
            "its type is `{}`",
            index.doc_type
        )));
    }
    Ok(index)
}

/// Whether a document declares itself a unit index (without reading the rest).
pub fn is_index(doc: &Automerge) -> bool {
    is_index_at(doc, None)
}

/// Whether a document declared itself a unit index as it stood at `heads` (now, without them).
pub fn is_index_at(doc: &Automerge, heads: Option<&[ChangeHash]>) -> bool {
    let kind = match heads {
        Some(heads) => doc.get_at(ROOT, "type", heads),
        None => doc.get(ROOT, "type"),
    };
    matches!(
        kind,
        Ok(Some((automerge::Value::Scalar(s), _))) if s.as_str() == Some(INDEX_TYPE)
    )
}
