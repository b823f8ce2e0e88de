//! The time a device stamps its events with: the server's, as the server last told it.
//!
//! A phone's own clock can be hours off. Stamping from it would make the server refuse every
//! event it writes while the clock is ahead, and even after the clock is fixed, since an event's
//! stamp must come after every stamp its author had seen. So the client stamps in server time:
//! each handshake tells it the server's clock, which the client anchors to its monotonic clock
//! (immune to the wall clock being changed meanwhile). Before the first handshake of a run it
//! uses the offset measured on the last connection, kept in the store; before any, its own clock.

use crate::time::Millis;
use std::fmt;
use std::time::{Duration, Instant};

/// The device's wall clock. Apps use [`SystemClock`]; tests use one that is wrong on purpose.
pub trait WallClock: Send + Sync + fmt::Debug {
    /// Milliseconds since 1970, as the device believes.
    fn now_ms(&self) -> Millis;
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_ms(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
            .unwrap_or(0)
    }
}

/// What the client knows of the server's clock.
#[derive(Debug, Default)]
pub(crate) struct ServerTime {
    /// The server's time at a moment of this run, measured at a handshake.
    anchor: Option<(Instant, Millis)>,
    /// Server time minus device time, as last measured (kept in the store across runs).
    offset: Option<i64>,
}

impl ServerTime {
    pub(crate) fn with_offset(offset: Option<i64>) -> Self {
        ServerTime {
            anchor: None,
            offset,
        }
    }

    /// The server's time now, as well as the client knows it.
    pub(crate) fn now(&self, device: Millis) -> Millis {
        match (self.anchor, self.offset) {
            (Some((at, server)), _) => server.saturating_add(elapsed_ms(at.elapsed())),
            (None, Some(offset)) => device.saturating_add(offset),
            (None, None) => device,
        }
    }

    /// The server said its time was `server` in a reply that took `round_trip` from request to
    /// answer, received at `received` (device time `device`). Returns the new offset to keep.
    pub(crate) fn observe(
        &mut self,
        server: Millis,
        round_trip: Duration,
        received: Instant,
        device: Millis,
    ) -> i64 {
        // The answer was written about half-way through the round trip.
        let server_now = server.saturating_add(elapsed_ms(round_trip / 2));
        self.anchor = Some((received, server_now));
        let offset = server_now.saturating_sub(device);
        self.offset = Some(offset);
        offset
    }
}

fn elapsed_ms(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_time_follows_the_anchor_not_the_device_clock() {
        let hour = 3_600_000;
        let server = 1_767_596_400_000;
        let mut time = ServerTime::default();
        assert_eq!(
            time.now(server + 2 * hour),
            server + 2 * hour,
            "nothing known yet"
        );
        let offset = time.observe(
            server,
            Duration::from_millis(200),
            Instant::now(),
            server + 2 * hour,
        );
        assert_eq!(offset, 100 - 2 * hour);
        // The device clock is fixed (or moved again): server time does not care.
        let now = time.now(0);
        assert!((server + 100..server + 100 + 1_000).contains(&now), "{now}");
        // A new run starts from the kept offset.
        let next = ServerTime::with_offset(Some(offset));
        assert_eq!(next.now(server + 2 * hour + 5), server + 105);
    }
}
