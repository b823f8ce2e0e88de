//! The security audit, throttled so that it cannot be flooded.
//!
//! Whatever a peer can provoke a record of (a refused token, a refused change, a request for a
//! document outside its units) it can provoke thousands of times a second. Every record goes
//! through one [`Auditor`]: each device and each address gets a few records of each kind per
//! window; what it provokes beyond that is counted (`baton_audit_unrecorded_total{kind}`), and
//! its next record says how many went unrecorded. Admin actions are the exception: each is
//! written, since each is itself a change an administrator made to the records.

pub mod chain;
pub mod trail;
pub mod verify;

use crate::auth::Session;
use crate::db::{AuditRecord, Db};
use crate::metrics::{self, Figures};
use crate::now_ms;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Records per kind per device, and per kind per address, in each window.
pub const PER_WINDOW: u32 = 10;
/// The length of a window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Windows tracked at most; beyond that, expired windows are forgotten, and if none has
/// expired, records about new devices and addresses share one window.
pub const MAX_KEYS: usize = 4_096;
/// Kinds counted by name at most (kinds come from the code, so this is never reached in
/// practice); beyond it they are counted as `other`.
const MAX_KINDS: usize = 64;

/// Whom a window counts records about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    Device(String),
    Address(IpAddr),
    /// Records that name neither a device nor an address.
    Unknown,
    /// Everyone, once [`MAX_KEYS`] windows are tracked.
    Overflow,
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Device(d) => write!(f, "device {d}"),
            Subject::Address(a) => write!(f, "address {a}"),
            Subject::Unknown => f.write_str("unknown senders"),
            Subject::Overflow => f.write_str("senders beyond the tracked ones"),
        }
    }
}

#[derive(Debug)]
struct Window {
    started: Instant,
    recorded: u32,
    /// Records not written since the last one that was.
    unrecorded: u64,
}

/// How many records of each kind were provoked, and how many of them went unrecorded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub unrecorded: u64,
}

#[derive(Debug, Default)]
struct State {
    windows: HashMap<(String, Subject), Window>,
    counts: BTreeMap<String, Counts>,
}

/// The throttle alone, without storage: which records to write. [`Auditor`] wraps it.
#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<State>,
}

impl Throttle {
    /// Count a record of `kind` about `device` from `from`. `Some(note)`: write it, with `note`
    /// appended to its detail (empty, or how many earlier ones went unrecorded); `None`: it is
    /// only counted.
    pub fn admit(
        &self,
        kind: &str,
        device: Option<&str>,
        from: Option<IpAddr>,
        now: Instant,
    ) -> Option<String> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let kind_key = if state.counts.contains_key(kind) || state.counts.len() < MAX_KINDS {
            kind.to_owned()
        } else {
            "other".to_owned()
        };
        state.counts.entry(kind_key.clone()).or_default().total += 1;
        let mut subjects: Vec<Subject> = device
            .map(|d| Subject::Device(d.to_owned()))
            .into_iter()
            .chain(from.map(Subject::Address))
            .collect();
        if subjects.is_empty() {
            subjects.push(Subject::Unknown);
        }
        let keys: Vec<(String, Subject)> = subjects
            .into_iter()
            .map(|subject| state.key(&kind_key, subject, now))
            .collect();
        let allowed = keys.iter().all(|key| {
            state
                .windows
                .get(key)
                .is_none_or(|w| now.duration_since(w.started) >= WINDOW || w.recorded < PER_WINDOW)
        });
        let mut note = String::new();
        for key in &keys {
            let window = state.windows.entry(key.clone()).or_insert(Window {
                started: now,
                recorded: 0,
                unrecorded: 0,
            });
            if now.duration_since(window.started) >= WINDOW {
                window.started = now;
                window.recorded = 0;
            }
            if allowed {
                window.recorded += 1;
                let missed = std::mem::take(&mut window.unrecorded);
                if missed > 0 {
                    note.push_str(&format!(
                        "; {missed} more about {} went unrecorded since its last record",
                        key.1
                    ));
                }
            } else {
                window.unrecorded += 1;
            }
        }
        if allowed {
            Some(note)
        } else {
            state.counts.entry(kind_key).or_default().unrecorded += 1;
            None
        }
    }

    /// What was provoked, by kind.
    pub fn counts(&self) -> BTreeMap<String, Counts> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .counts
            .clone()
    }

    /// How many windows are tracked.
    pub fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .windows
            .len()
    }
}

impl State {
    /// The window key for `subject`, keeping the number tracked bounded.
    fn key(&mut self, kind: &str, subject: Subject, now: Instant) -> (String, Subject) {
        let key = (kind.to_owned(), subject);
        if self.windows.len() >= MAX_KEYS && !self.windows.contains_key(&key) {
            self.windows
                .retain(|_, w| now.duration_since(w.started) < WINDOW);
            if self.windows.len() >= MAX_KEYS {
                return (key.0, Subject::Overflow);
            }
        }
        key
    }
}

/// Writes security audit records through the [`Throttle`]. One per server, shared by every
/// writer of audit records (REST handlers, the sync upgrade, the hub).
#[derive(Debug)]
pub struct Auditor {
    db: Db,
    throttle: Throttle,
    /// Records not written for the throttle, by kind.
    unrecorded: metrics::Labelled,
    /// Tokens refused, recorded or not.
    refused_tokens: Counter,
}

impl Auditor {
    pub fn new(db: Db) -> Self {
        Auditor {
            db,
            throttle: Throttle::default(),
            unrecorded: metrics::Labelled::default(),
            refused_tokens: Counter::default(),
        }
    }

    /// Record `record`, provoked from `from`, unless its device or address has used up its
    /// allowance for its kind in this window (then it is only counted).
    pub async fn record(&self, mut record: AuditRecord<'_>, from: Option<IpAddr>) {
        if record.kind == "refused_token" {
            self.refused_tokens.inc();
        }
        let Some(note) = self
            .throttle
            .admit(record.kind, record.device, from, Instant::now())
        else {
            metrics::labelled(&self.unrecorded, "kind", record.kind).inc();
            return;
        };
        record.detail.push_str(&note);
        self.write(record).await;
    }

    /// Record `kind` about what `session` did (on `doc`, if any), throttled like
    /// [`Auditor::record`] by the session's device and address.
    pub async fn session_record(
        &self,
        session: &Session,
        kind: &str,
        doc: Option<&str>,
        detail: String,
    ) {
        let record = AuditRecord {
            kind,
            user: Some(session.user.as_str()),
            device: Some(session.device.as_str()),
            doc,
            detail,
        };
        self.record(record, session.address).await;
    }

    /// Record an administrator's action. Never throttled.
    pub async fn admin_action(&self, admin: &Session, kind: &str, detail: String) {
        let record = AuditRecord {
            kind,
            user: Some(admin.user.as_str()),
            device: Some(admin.device.as_str()),
            doc: None,
            detail,
        };
        self.write(record).await;
    }

    async fn write(&self, record: AuditRecord<'_>) {
        if let Err(e) = self.db.audit(record, now_ms()).await {
            tracing::error!(error = %e, "a security audit record could not be written");
        }
    }
}

impl Figures for Auditor {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "baton_audit_unrecorded",
            "Security audit records not written because their device or address had used up its allowance (counted instead)",
            self.unrecorded.clone(),
        );
        registry.register(
            "baton_refused_tokens",
            "Tokens refused (each address's first few a minute are audited)",
            self.refused_tokens.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_flood_from_one_address_is_counted_not_written() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        let written = (0..100)
            .filter(|_| throttle.admit("refused_token", None, a, t0).is_some())
            .count();
        assert_eq!(written, PER_WINDOW as usize);
        // Another address has its own allowance, and so has another kind.
        assert_eq!(
            throttle.admit("refused_token", None, ip("10.0.0.2"), t0),
            Some(String::new())
        );
        assert!(throttle.admit("invalid_change", None, a, t0).is_some());
        // The next window's first record carries the count of what went unrecorded.
        let note = throttle
            .admit("refused_token", None, a, t0 + WINDOW)
            .unwrap();
        assert!(note.contains("90 more about address 10.0.0.1"), "{note}");
        let counts = throttle.counts();
        assert_eq!(
            counts["refused_token"],
            Counts {
                total: 102,
                unrecorded: 90
            }
        );
    }

    #[test]
    fn a_device_is_throttled_across_addresses() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        let written = (0..50u8)
            .filter(|i| {
                let from = Some(IpAddr::from([10, 0, 1, *i]));
                throttle
                    .admit("forged_event", Some("phone-1"), from, t0)
                    .is_some()
            })
            .count();
        assert_eq!(written, PER_WINDOW as usize, "one device, many addresses");
        // And an address across devices.
        let written = (0..50)
            .filter(|i| {
                let device = format!("phone-{i}");
                throttle
                    .admit("forged_event", Some(&device), ip("10.0.2.1"), t0)
                    .is_some()
            })
            .count();
        assert_eq!(written, PER_WINDOW as usize, "one address, many devices");
    }

    #[test]
    fn the_windows_tracked_are_bounded() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS as u32 + 100) {
            throttle.admit(
                "refused_token",
                None,
                Some(IpAddr::from(i.to_be_bytes())),
                t0,
            );
        }
        assert!(throttle.tracked() <= MAX_KEYS + 1, "{}", throttle.tracked());
        // The ones beyond share one window, so they are throttled too.
        let late = (0..100)
            .filter(|i| {
                let from = Some(IpAddr::from([172, 16, 0, *i]));
                throttle.admit("refused_token", None, from, t0).is_some()
            })
            .count();
        assert!(late <= PER_WINDOW as usize, "{late}");
    }
}
