//! Refused tokens go to the security audit, but a flood of them must not become a flood of
//! database writes: each address gets a few records per window; what it sends beyond that is
//! counted, and the count goes into its next record.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Records per address per window.
const PER_WINDOW: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most; beyond that, expired windows are forgotten, and if none has
/// expired, refusals from new addresses share one window.
const MAX_ADDRESSES: usize = 4_096;

/// Where refusals came from, and how many were recorded.
#[derive(Debug, Default)]
pub struct RefusalLog {
    windows: Mutex<HashMap<Option<IpAddr>, Window>>,
    total: AtomicU64,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    recorded: u32,
    /// Refusals not recorded since the last record.
    unrecorded: u64,
}

impl RefusalLog {
    /// Count a refusal from `from`. `Some(n)`: write a record, saying `n` earlier refusals from
    /// the same address went unrecorded; `None`: count it only.
    pub fn note(&self, from: Option<IpAddr>, now: Instant) -> Option<u64> {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() >= MAX_ADDRESSES && !windows.contains_key(&from) {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
        }
        let key = if windows.len() >= MAX_ADDRESSES && !windows.contains_key(&from) {
            None
        } else {
            from
        };
        let window = windows.entry(key).or_insert(Window {
            started: now,
            recorded: 0,
            unrecorded: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            window.started = now;
            window.recorded = 0;
        }
        if window.recorded < PER_WINDOW {
            window.recorded += 1;
            Some(std::mem::take(&mut window.unrecorded))
        } else {
            window.unrecorded += 1;
            None
        }
    }

    /// Every refusal counted since the server started.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_one_address_is_counted_not_written() {
        let log = RefusalLog::default();
        let (a, b) = (
            Some("10.0.0.1".parse().unwrap()),
            Some("10.0.0.2".parse().unwrap()),
        );
        let t0 = Instant::now();
        let written = (0..100).filter(|_| log.note(a, t0).is_some()).count();
        assert_eq!(written, PER_WINDOW as usize);
        // Another address has its own allowance.
        assert_eq!(log.note(b, t0), Some(0));
        // The next window's first record carries the count of what went unrecorded.
        assert_eq!(log.note(a, t0 + WINDOW), Some(90));
        assert_eq!(log.total(), 102);
    }

    #[test]
    fn the_addresses_tracked_are_bounded() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            log.note(Some(IpAddr::from(i.to_be_bytes())), t0);
        }
        let windows = log.windows.lock().unwrap();
        assert!(windows.len() <= MAX_ADDRESSES + 1, "{}", windows.len());
    }
}
