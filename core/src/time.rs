//! Time as the core sees it: instants in milliseconds since the Unix epoch, and spans written
//! the way clinicians write them (`30m`, `4h`, `1h30m`, `2d`).
//!
//! The core never reads a clock: every function that needs "now" takes it as an argument.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// A non-negative length of time with millisecond precision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(u64);

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

impl Span {
    pub const ZERO: Span = Span(0);

    pub const fn from_millis(ms: u64) -> Self {
        Span(ms)
    }

    pub const fn from_minutes(minutes: u64) -> Self {
        Span(minutes * MINUTE)
    }

    pub const fn from_hours(hours: u64) -> Self {
        Span(hours * HOUR)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// This span scaled by `percent` / 100, rounded down. Used for acuity-shortened windows.
    pub fn scaled(self, percent: u32) -> Span {
        Span((u128::from(self.0) * u128::from(percent) / 100) as u64)
    }

    /// `self + other`, saturating.
    pub fn plus(self, other: Span) -> Span {
        Span(self.0.saturating_add(other.0))
    }

    /// `self × n`, saturating.
    pub fn times(self, n: u32) -> Span {
        Span(self.0.saturating_mul(u64::from(n)))
    }

    /// `at + self`, saturating instead of overflowing.
    pub fn after(self, at: Millis) -> Millis {
        at.saturating_add(i64::try_from(self.0).unwrap_or(i64::MAX))
    }
}

/// Why a span could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a duration: {reason} (write e.g. `30m`, `4h`, `1h30m`, `2d`)")]
pub struct SpanParseError {
    input: String,
    reason: &'static str,
}

impl FromStr for Span {
    type Err = SpanParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| SpanParseError {
            input: input.to_owned(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                'd' => DAY,
                'h' => HOUR,
                'm' => MINUTE,
                's' => SECOND,
                _ => return Err(err("units are d, h, m and s")),
            };
            if digits.is_empty() {
                return Err(err("a unit must follow a number"));
            }
            let n: u64 = digits.parse().map_err(|_| err("the number is too large"))?;
            digits.clear();
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| err("the number is too large"))?;
        }
        if !digits.is_empty() {
            return Err(err("every number needs a unit"));
        }
        Ok(Span(total))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0m");
        }
        let mut rest = self.0;
        for (unit, suffix) in [(DAY, 'd'), (HOUR, 'h'), (MINUTE, 'm'), (SECOND, 's')] {
            if rest >= unit {
                write!(f, "{}{}", rest / unit, suffix)?;
                rest %= unit;
            }
        }
        if rest > 0 {
            write!(f, "{rest}ms")?;
        }
        Ok(())
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_clinical_spans() {
        assert_eq!("30m".parse::<Span>(), Ok(Span::from_minutes(30)));
        assert_eq!("1h30m".parse::<Span>(), Ok(Span::from_minutes(90)));
        assert_eq!("2d".parse::<Span>(), Ok(Span::from_hours(48)));
        assert_eq!("0m".parse::<Span>(), Ok(Span::ZERO));
        assert_eq!("45s".parse::<Span>(), Ok(Span::from_millis(45_000)));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in ["", "30", "m", "3x", "-5m", "99999999999999999999d", "1.5h"] {
            let e = bad.parse::<Span>().expect_err(bad);
            assert!(e.to_string().contains("is not a duration"), "{e}");
        }
    }

    #[test]
    fn displays_round_trip() {
        for s in ["30m", "1h30m", "2d", "1d2h3m4s", "0m"] {
            let span: Span = s.parse().expect("valid");
            assert_eq!(span.to_string(), s);
        }
    }

    #[test]
    fn scales_by_percent() {
        assert_eq!(Span::from_minutes(30).scaled(50), Span::from_minutes(15));
        assert_eq!(Span::from_minutes(30).scaled(100), Span::from_minutes(30));
        assert_eq!(Span::from_millis(u64::MAX).after(i64::MAX - 1), i64::MAX);
    }
}
