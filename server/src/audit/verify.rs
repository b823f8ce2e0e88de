//! `baton-server audit verify`: check both audit chains and every task's history, and name the
//! first broken link.
//!
//! - Each chain is walked from its first row: places must run 1, 2, 3, … with no gap, each
//!   row's hash must be the one its content and the row before give, and the last row must be
//!   the chain's recorded last link (rows cut off the end show there). A row without a place
//!   was not written by the server.
//! - Each task's history is covered by Automerge's own hashes: every stored change must decode
//!   (its checksum) to the hash it is stored under, the snapshot must load (Automerge checks its
//!   heads), and nothing may depend on a change that is not there. Then the two are tied
//!   together: each event on the chain must be in the task's history at the heads it arrived
//!   with, as the chain says it was (kind, author, role, device, times), and each event in the
//!   history must be on the chain.

use super::chain::{self, Link, SECURITY_AUDIT, TASK_EVENTS, audit_content, event_content};
use crate::db::{Db, DbError, EventRow};
use automerge::{Automerge, Change, ChangeHash, ReadDoc};
use baton_core::Event;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

/// Rows read at once.
const PAGE: i64 = 1_000;

/// What a verification found.
#[derive(Debug)]
pub struct Report {
    /// Each chain's last link, as the walk reached it: worth keeping somewhere else, since a
    /// chain rewritten from some row on would end elsewhere.
    pub events: Link,
    pub audits: Link,
    /// Task histories checked.
    pub tasks: u64,
    /// The first broken link, if any.
    pub broken: Option<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "task events: {} links, last {}",
            self.events.seq,
            shown(&self.events.hash)
        )?;
        writeln!(
            f,
            "security audit: {} links, last {}",
            self.audits.seq,
            shown(&self.audits.hash)
        )?;
        writeln!(f, "task histories: {}", self.tasks)?;
        match &self.broken {
            None => write!(f, "every chain and every task history checks out"),
            Some(broken) => write!(f, "BROKEN: {broken}"),
        }
    }
}

fn shown(hash: &str) -> &str {
    if hash.is_empty() { "(none)" } else { hash }
}

/// Check everything; stop at the first broken link.
pub async fn verify(db: &Db) -> Result<Report, DbError> {
    let mut report = Report {
        events: Link::default(),
        audits: Link::default(),
        tasks: 0,
        broken: None,
    };
    report.broken = match walk_events(db, &mut report.events).await? {
        Some(broken) => Some(broken),
        None => walk_audits(db, &mut report.audits).await?,
    };
    if report.broken.is_none() {
        report.broken = histories(db, &mut report.tasks).await?;
    }
    Ok(report)
}

async fn walk_events(db: &Db, reached: &mut Link) -> Result<Option<String>, DbError> {
    loop {
        let page = chain::events_after(db, reached.seq, PAGE).await?;
        let done = (page.len() as i64) < PAGE;
        for (event, received_at, stored) in page {
            let what = format!("event {} of task {}", event.event, event.doc);
            if let Some(broken) = link(TASK_EVENTS, reached, &stored, &what, || {
                event_content(&event, received_at)
            }) {
                return Ok(Some(broken));
            }
        }
        if done {
            break;
        }
    }
    end_of(db, TASK_EVENTS, reached).await
}

async fn walk_audits(db: &Db, reached: &mut Link) -> Result<Option<String>, DbError> {
    loop {
        let page = chain::audits_after(db, reached.seq, PAGE).await?;
        let done = (page.len() as i64) < PAGE;
        for (record, stored) in page {
            let what = format!("record {} ({})", record.id, record.kind);
            if let Some(broken) = link(SECURITY_AUDIT, reached, &stored, &what, || {
                audit_content(&record)
            }) {
                return Ok(Some(broken));
            }
        }
        if done {
            break;
        }
    }
    end_of(db, SECURITY_AUDIT, reached).await
}

/// Check the row `stored` as the link after `reached`, and move on to it.
fn link(
    chain: &str,
    reached: &mut Link,
    stored: &Link,
    what: &str,
    content: impl FnOnce() -> Vec<serde_json::Value>,
) -> Option<String> {
    let expected = reached.seq + 1;
    if stored.seq != expected {
        return Some(format!(
            "{chain}: link {expected} is missing (the next stored is {}, {what})",
            stored.seq
        ));
    }
    let next = reached.next(content());
    if next.hash != stored.hash {
        return Some(format!(
            "{chain}: link {expected}, {what}, does not match its content and the link before it"
        ));
    }
    *reached = next;
    None
}

/// After the walk: the chain must end where its last link is recorded, and hold no row
/// without a place.
async fn end_of(db: &Db, chain: &str, reached: &Link) -> Result<Option<String>, DbError> {
    let last = chain::last_link(db, chain).await?;
    if last != *reached {
        return Ok(Some(format!(
            "{chain}: the rows end at link {}, but the chain's last link is {} ({})",
            reached.seq,
            last.seq,
            shown(&last.hash)
        )));
    }
    let unplaced = chain::unplaced(db, chain).await?;
    Ok(unplaced.first().map(|row| {
        format!(
            "{chain}: {} row(s) have no place on the chain, the first {row}",
            unplaced.len()
        )
    }))
}

async fn histories(db: &Db, tasks: &mut u64) -> Result<Option<String>, DbError> {
    let mut after = String::new();
    loop {
        let ids = db.task_ids_after(&after, PAGE).await?;
        let done = (ids.len() as i64) < PAGE;
        for id in ids {
            if let Some(broken) = history(db, &id).await? {
                return Ok(Some(broken));
            }
            *tasks += 1;
            after = id;
        }
        if done {
            return Ok(None);
        }
    }
}

/// Check one task's history, and its events on the chain against it.
async fn history(db: &Db, id: &str) -> Result<Option<String>, DbError> {
    let Some((_, stored)) = db.load_document(id).await? else {
        return Ok(Some(format!("task {id}: its document is gone")));
    };
    let mut doc = match stored.snapshot.as_deref().map(Automerge::load).transpose() {
        Ok(doc) => doc.unwrap_or_default(),
        Err(e) => return Ok(Some(format!("task {id}: its snapshot does not load: {e}"))),
    };
    for (hash, bytes) in stored.changes {
        let change = match Change::from_bytes(bytes) {
            Ok(change) => change,
            Err(e) => {
                return Ok(Some(format!(
                    "task {id}: change {hash} does not decode: {e}"
                )));
            }
        };
        if change.hash().to_string() != hash {
            return Ok(Some(format!(
                "task {id}: the change stored as {hash} hashes to {}",
                change.hash()
            )));
        }
        if let Err(e) = doc.apply_changes([change]) {
            return Ok(Some(format!(
                "task {id}: change {hash} does not apply: {e}"
            )));
        }
    }
    if let Some(missing) = doc.get_missing_deps(&[]).first() {
        return Ok(Some(format!(
            "task {id}: its history depends on change {missing}, which is not stored"
        )));
    }
    let chained = chain::events_of(db, id).await?;
    let mut at_heads: HashMap<String, HashMap<String, Event>> = HashMap::new();
    for row in &chained {
        if !at_heads.contains_key(&row.heads) {
            let Some(heads) = parse_heads(&row.heads) else {
                return Ok(Some(format!(
                    "task {id}: event {} names heads that are not change hashes",
                    row.event
                )));
            };
            if let Some(absent) = heads.iter().find(|h| doc.get_change_by_hash(h).is_none()) {
                return Ok(Some(format!(
                    "task {id}: event {} arrived with change {absent}, which is not in its history",
                    row.event
                )));
            }
            at_heads.insert(row.heads.clone(), events_at(&doc, Some(&heads)));
        }
        let found = at_heads[&row.heads].get(&row.event);
        if let Some(differs) = differs(row, found) {
            return Ok(Some(format!("task {id}: event {}: {differs}", row.event)));
        }
    }
    let on_chain: HashSet<&str> = chained.iter().map(|r| r.event.as_str()).collect();
    let mut now: Vec<String> = events_at(&doc, None).into_keys().collect();
    now.sort();
    if let Some(off) = now.iter().find(|e| !on_chain.contains(e.as_str())) {
        return Ok(Some(format!(
            "task {id}: event {off} is in its history but not on the chain"
        )));
    }
    Ok(None)
}

fn parse_heads(text: &str) -> Option<Vec<ChangeHash>> {
    text.split(',')
        .filter(|h| !h.is_empty())
        .map(|h| ChangeHash::from_str(h).ok())
        .collect()
}

fn events_at(doc: &Automerge, heads: Option<&[ChangeHash]>) -> HashMap<String, Event> {
    baton_core::doc::read_events(doc, heads)
        .map(|log| {
            log.events
                .into_iter()
                .map(|e| (e.id.to_string(), e))
                .collect()
        })
        .unwrap_or_default()
}

/// How the chain's row differs from the event in the history, if it does.
fn differs(row: &EventRow, event: Option<&Event>) -> Option<String> {
    let Some(event) = event else {
        return Some("it is not in the task's history at the heads it arrived with".into());
    };
    let in_history = EventRow::of(&row.doc, event, &row.heads);
    (in_history != *row).then(|| {
        format!(
            "the chain says {} by {} ({}) on {} at {}, the history {} by {} ({}) on {} at {}",
            row.kind,
            row.user,
            row.role,
            row.device,
            row.hlc,
            in_history.kind,
            in_history.user,
            in_history.role,
            in_history.device,
            in_history.hlc
        )
    })
}
