//! A hybrid logical clock.
//!
//! Every event carries an [`Hlc`] stamp. A device stamps a new event after *observing* every
//! event in the document it is appending to, so an event always sorts after everything its
//! author had seen, whatever the device's wall clock says. Events are folded in
//! `(hlc, user, id)` order.
//!
//! On the wire a stamp is the string `"<wall ms, 15 digits>-<counter, 6 digits>"`, for example
//! `"001767225600000-000003"`: it sorts as text the same way it sorts as a stamp.

use crate::time::Millis;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The largest counter the wire form can carry; past it the clock moves its wall time on by 1 ms.
const MAX_COUNTER: u32 = 999_999;
/// The largest wall time the wire form can carry (15 decimal digits: year 33658).
const MAX_WALL: i64 = 999_999_999_999_999;

/// One stamp of a hybrid logical clock: wall time in ms and a counter for events within one ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc {
    pub wall: Millis,
    pub counter: u32,
}

impl Hlc {
    pub const fn new(wall: Millis, counter: u32) -> Self {
        Hlc { wall, counter }
    }

    /// The smallest stamp strictly greater than `self`.
    pub fn successor(self) -> Hlc {
        if self.counter >= MAX_COUNTER {
            Hlc::new(self.wall.saturating_add(1), 0)
        } else {
            Hlc::new(self.wall, self.counter + 1)
        }
    }
}

/// A device's clock: remembers the last stamp it issued so stamps never go backwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Resume from the last stamp this device issued (from its local store).
    pub fn resume(last: Hlc) -> Self {
        HlcClock { last }
    }

    /// The last stamp issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// Take note of a stamp seen in a document so the next stamp sorts after it.
    pub fn observe(&mut self, seen: Hlc) {
        self.last = self.last.max(seen);
    }

    /// Issue a stamp for an event written at wall time `now`: greater than every stamp issued or
    /// observed before, and equal to `now` when the wall clock is ahead of them.
    pub fn tick(&mut self, now: Millis) -> Hlc {
        let now = now.clamp(0, MAX_WALL);
        self.last = if now > self.last.wall {
            Hlc::new(now, 0)
        } else {
            self.last.successor()
        };
        self.last
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:015}-{:06}", self.wall, self.counter)
    }
}

/// Why a stamp could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an HLC stamp (expected 15 digits, '-', 6 digits, e.g. 001767225600000-000000)"
)]
pub struct HlcParseError(String);

impl FromStr for Hlc {
    type Err = HlcParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || HlcParseError(s.chars().take(40).collect());
        let (wall, counter) = s.split_once('-').ok_or_else(err)?;
        let digits =
            |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(wall, 15) || !digits(counter, 6) {
            return Err(err());
        }
        Ok(Hlc::new(
            wall.parse().map_err(|_| err())?,
            counter.parse().map_err(|_| err())?,
        ))
    }
}

impl Serialize for Hlc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hlc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_follows_the_wall_clock_when_it_is_ahead() {
        let mut clock = HlcClock::new();
        assert_eq!(clock.tick(1_000), Hlc::new(1_000, 0));
        assert_eq!(clock.tick(2_000), Hlc::new(2_000, 0));
    }

    #[test]
    fn tick_never_goes_backwards_when_the_wall_clock_does() {
        let mut clock = HlcClock::new();
        clock.tick(5_000);
        assert_eq!(clock.tick(4_000), Hlc::new(5_000, 1));
        assert_eq!(clock.tick(5_000), Hlc::new(5_000, 2));
    }

    #[test]
    fn observed_stamps_push_the_clock_forward() {
        let mut clock = HlcClock::new();
        clock.observe(Hlc::new(9_000, 7));
        assert_eq!(clock.tick(1_000), Hlc::new(9_000, 8));
    }

    #[test]
    fn counter_overflow_moves_wall_time_on() {
        let mut clock = HlcClock::resume(Hlc::new(10, MAX_COUNTER));
        assert_eq!(clock.tick(0), Hlc::new(11, 0));
    }

    #[test]
    fn wire_form_round_trips_and_sorts_as_text() {
        let a = Hlc::new(1_767_225_600_000, 3);
        let b = Hlc::new(1_767_225_600_001, 0);
        assert_eq!(a.to_string(), "001767225600000-000003");
        assert_eq!(a.to_string().parse::<Hlc>(), Ok(a));
        assert!(a < b && a.to_string() < b.to_string());
    }

    #[test]
    fn refuses_malformed_stamps() {
        for bad in [
            "",
            "1-2",
            "001767225600000",
            "001767225600000-00000x",
            "+01767225600000-000000",
            "001767225600000-0000001",
        ] {
            assert!(bad.parse::<Hlc>().is_err(), "{bad}");
        }
    }
}
