//! Latency histograms for `/metrics`, in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in milliseconds.
const BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000];

/// How long something took, counted into fixed buckets from 1 ms to 1 s.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations that fell into each bucket (not cumulative; summed when rendered).
    buckets: [AtomicU64; BUCKETS_MS.len()],
    count: AtomicU64,
    micros: AtomicU64,
}

impl Histogram {
    pub fn record(&self, took: Duration) {
        let ms = took.as_millis();
        if let Some(i) = BUCKETS_MS.iter().position(|b| ms <= u128::from(*b)) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The histogram as `name`, in seconds.
    pub fn render(&self, name: &str, help: &str) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = format!("# HELP {name} {help}\n# TYPE {name} histogram\n");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS_MS.iter().zip(&self.buckets) {
            cumulative += get(count);
            let le = *bound as f64 / 1_000.0;
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
}
