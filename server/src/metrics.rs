//! `/metrics`: what the server publishes for Prometheus, on `prometheus-client` (the Prometheus
//! project's Rust client) rather than hand-written exposition.
//!
//! Each part of the server owns its figures (counters and histograms are cheap shared handles)
//! and registers them into one [`Registry`] at start ([`Published`]); figures only known by
//! asking (open connections, documents in memory, the timer and outbox backlogs) are gauges set
//! just before each scrape is encoded.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::time::Duration;

/// Upper bounds of the buckets for work that takes milliseconds (a commit, an acknowledgment),
/// in seconds: 1 ms to 1 s.
pub const LATENCY: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Upper bounds of the buckets for lateness that may run to minutes (a timer firing after it
/// fell due), in seconds: 10 ms to 10 min.
pub const LATENESS: [f64; 13] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
];

/// A histogram of durations with buckets up to each of `bounds` (seconds).
pub fn histogram(bounds: &[f64]) -> Histogram {
    Histogram::new(bounds.iter().copied())
}

/// Count `took` into `histogram`, in seconds.
pub fn observe(histogram: &Histogram, took: Duration) {
    histogram.observe(took.as_secs_f64());
}

/// Counters by one label.
pub type Labelled = Family<Vec<(&'static str, String)>, Counter>;

/// The counter of `family` for `label` = `value`.
pub fn labelled(family: &Labelled, label: &'static str, value: &str) -> Counter {
    family
        .get_or_create(&vec![(label, value.to_owned())])
        .clone()
}

/// The figures set just before each scrape.
#[derive(Debug, Default)]
pub struct Sampled {
    pub connections: Gauge,
    pub documents_loaded: Gauge,
    pub timers_pending: Gauge,
    pub notifications_pending: Gauge,
    pub notifications_dead: Gauge,
}

/// Everything `/metrics` shows: the registry of every part's figures and the sampled gauges.
#[derive(Debug)]
pub struct Published {
    pub registry: Registry,
    pub sampled: Sampled,
}

impl Published {
    /// A registry holding the sampled gauges; the parts add their own with [`Published::add`].
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let sampled = Sampled::default();
        registry.register(
            "baton_connections",
            "Open WebSocket sync connections",
            sampled.connections.clone(),
        );
        registry.register(
            "baton_documents_loaded",
            "Documents held in memory",
            sampled.documents_loaded.clone(),
        );
        registry.register(
            "baton_timers_pending",
            "Open tasks with a timer (their next due action)",
            sampled.timers_pending.clone(),
        );
        registry.register(
            "baton_notifications_pending",
            "Deliveries not yet made (the outbox backlog)",
            sampled.notifications_pending.clone(),
        );
        registry.register(
            "baton_notifications_dead",
            "Deliveries given up after every try (dead letters)",
            sampled.notifications_dead.clone(),
        );
        Published { registry, sampled }
    }

    /// Register the figures of one part of the server.
    pub fn add(&mut self, part: &dyn Figures) {
        part.register(&mut self.registry);
    }

    /// The exposition, in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Published {
    fn default() -> Self {
        Published::new()
    }
}

/// A part of the server that publishes figures.
pub trait Figures {
    fn register(&self, registry: &mut Registry);
}

/// Register `histogram` as `name` in seconds (`name_seconds`).
pub fn register_seconds(registry: &mut Registry, name: &str, help: &str, histogram: &Histogram) {
    registry.register_with_unit(name, help, Unit::Seconds, histogram.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(h: &Histogram) -> String {
        let mut registry = Registry::default();
        register_seconds(&mut registry, "t", "test", h);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn a_fraction_of_a_millisecond_over_a_bound_falls_in_the_next_bucket() {
        let h = histogram(&LATENCY);
        observe(&h, Duration::from_micros(1_900));
        let text = exposition(&h);
        assert!(
            text.contains("t_seconds_bucket{le=\"0.001\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{le=\"0.002\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("t_seconds_count 1\n"), "{text}");
    }

    #[test]
    fn buckets_are_cumulative_and_the_slowest_lands_in_inf_only() {
        let h = histogram(&LATENCY);
        for ms in [0, 1, 3, 3, 40, 5_000] {
            observe(&h, Duration::from_millis(ms));
        }
        let text = exposition(&h);
        assert!(
            text.contains("t_seconds_bucket{le=\"0.001\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{le=\"0.005\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("t_seconds_bucket{le=\"1.0\"} 5\n"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"+Inf\"} 6\n"), "{text}");
        assert!(text.contains("t_seconds_count 6\n"), "{text}");
    }

    #[test]
    fn lateness_buckets_reach_minutes() {
        let h = histogram(&LATENESS);
        observe(&h, Duration::from_secs(3));
        observe(&h, Duration::from_secs(200));
        let text = exposition(&h);
        assert!(text.contains("t_seconds_bucket{le=\"2.5\"} 0\n"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"5.0\"} 1\n"), "{text}");
        assert!(
            text.contains("t_seconds_bucket{le=\"300.0\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn counters_end_in_total_and_labels_are_kept_apart() {
        let family = Labelled::default();
        labelled(&family, "reason", "time").inc();
        labelled(&family, "reason", "time").inc();
        labelled(&family, "reason", "manual").inc();
        let mut registry = Registry::default();
        registry.register("baton_escalations", "test", family);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("baton_escalations_total{reason=\"time\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("baton_escalations_total{reason=\"manual\"} 1\n"),
            "{out}"
        );
    }
}
