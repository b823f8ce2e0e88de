//! Latency histograms for `/metrics`, in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets for work that takes milliseconds (a commit, an
/// acknowledgment), in microseconds: 1 ms to 1 s.
pub const LATENCY: &[u64] = &[
    1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
];

/// Upper bounds of the buckets for lateness that may run to minutes (a timer firing after it
/// fell due), in microseconds: 10 ms to 10 min.
pub const LATENESS: &[u64] = &[
    10_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    600_000_000,
];

/// How long something took, counted into fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, in microseconds, ascending.
    bounds: &'static [u64],
    /// Observations that fell into each bucket (not cumulative; summed when rendered).
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(LATENCY)
    }
}

impl Histogram {
    /// A histogram with buckets up to each of `bounds` (microseconds, ascending).
    pub fn new(bounds: &'static [u64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            micros: AtomicU64::new(0),
        }
    }

    pub fn record(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = self.bounds.iter().position(|b| micros <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The histogram as `name`, in seconds.
    pub fn render(&self, name: &str, help: &str) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = format!("# HELP {name} {help}\n# TYPE {name} histogram\n");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.buckets) {
            cumulative += get(count);
            let le = *bound as f64 / 1_000_000.0;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = get(&self.count);
        let sum = get(&self.micros) as f64 / 1_000_000.0;
        let _ = write!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}\n"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_slowest_lands_in_inf_only() {
        let h = Histogram::default();
        for ms in [0, 1, 3, 3, 40, 5_000] {
            h.record(Duration::from_millis(ms));
        }
        let text = h.render("t_seconds", "test");
        assert!(
            text.contains("t_seconds_bucket{le=\"0.001\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{le=\"0.005\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("t_seconds_bucket{le=\"0.05\"} 5\n"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"1\"} 5\n"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"+Inf\"} 6\n"), "{text}");
        assert!(text.contains("t_seconds_sum 5.047\n"), "{text}");
        assert!(text.contains("t_seconds_count 6\n"), "{text}");
    }

    #[test]
    fn a_fraction_of_a_millisecond_over_a_bound_falls_in_the_next_bucket() {
        let h = Histogram::default();
        h.record(Duration::from_micros(1_900));
        let text = h.render("t_seconds", "test");
        assert!(
            text.contains("t_seconds_bucket{le=\"0.001\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{le=\"0.002\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn lateness_buckets_reach_minutes() {
        let h = Histogram::new(LATENESS);
        h.record(Duration::from_secs(3));
        h.record(Duration::from_secs(200));
        let text = h.render("late_seconds", "test");
        assert!(
            text.contains("late_seconds_bucket{le=\"2.5\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("late_seconds_bucket{le=\"5\"} 1\n"), "{text}");
        assert!(
            text.contains("late_seconds_bucket{le=\"300\"} 2\n"),
            "{text}"
        );
    }
}
