//! Durations and sizes as operators write them: `"10s"`, `"1m"`, `"60k"`.
//!
//! Both follow HAProxy, so an imported haproxy.cfg keeps its meaning:
//! - a duration is a whole number followed by `ms`, `s`, `m`, `h` or `d`; a **bare number is
//!   milliseconds** (HAProxy's default time unit). Fractions (`1.5s`) are refused: write `1500ms`.
//! - where nothing says a bare number means milliseconds (command-line flags such as
//!   `tether probe --timeout`, `tether sim --duration`, and simulator scenario files), the same
//!   grammar is read by [`parse_duration_with_unit`], which **refuses a bare number** and says
//!   to write the unit: `3` meant seconds there once and means milliseconds in HAProxy, and a
//!   silent factor of 1000 is worse than an error.
//! - a size is a whole number optionally followed by `k` (×1024), `m` (×1048576) or `g`
//!   (×1073741824), case-insensitive, so `60k` = 61440.

use std::time::Duration;

/// Why a duration or size could not be read; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Empty text where a value was expected.
    #[error("empty value: write a number with a unit, e.g. \"10s\" or \"60k\"")]
    Empty,
    /// The text does not start with a whole number.
    #[error("invalid {kind} \"{text}\": expected a whole number with a unit, e.g. {example}")]
    NotANumber {
        /// "duration" or "size".
        kind: &'static str,
        /// The offending text.
        text: String,
        /// A valid example for the same kind.
        example: &'static str,
    },
    /// The unit suffix is unknown.
    #[error("invalid {kind} \"{text}\": unknown unit \"{unit}\", expected one of {valid}")]
    UnknownUnit {
        /// "duration" or "size".
        kind: &'static str,
        /// The offending text.
        text: String,
        /// The suffix that was not understood.
        unit: String,
        /// The accepted suffixes.
        valid: &'static str,
    },
    /// A bare number where the unit must be written.
    #[error("duration \"{text}\" has no unit: write it with one, e.g. \"{text}s\" or \"{text}ms\" (units: ms, s, m, h, d)")]
    MissingUnit {
        /// The offending text, trimmed.
        text: String,
    },
    /// The value does not fit in 64 bits of milliseconds or bytes.
    #[error("{kind} \"{text}\" is too large")]
    Overflow {
        /// "duration" or "size".
        kind: &'static str,
        /// The offending text.
        text: String,
    },
}

const DURATION_UNITS: &str = "ms, s, m, h, d (a bare number is milliseconds)";
const SIZE_UNITS: &str = "k, m, g (powers of 1024) or none";

fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Reads a duration such as `"10s"`, `"1m"`, `"500ms"`, `"2h"`, `"1d"`; a bare number is in
/// milliseconds, as in HAProxy.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    read_duration(text, BareNumber::Milliseconds)
}

/// Reads a duration like [`parse_duration`] but refuses a bare number
/// ([`UnitError::MissingUnit`]): for flags and files outside haproxy.cfg, where a reader cannot
/// know whether `3` means seconds or milliseconds.
pub fn parse_duration_with_unit(text: &str) -> Result<Duration, UnitError> {
    read_duration(text, BareNumber::Refused)
}

/// What a duration without a unit means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BareNumber {
    /// HAProxy's default time unit.
    Milliseconds,
    /// Not a duration: the unit must be written.
    Refused,
}

fn read_duration(text: &str, bare: BareNumber) -> Result<Duration, UnitError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(UnitError::Empty);
    }
    let (digits, unit) = split_number(t);
    if digits.is_empty() {
        return Err(UnitError::NotANumber {
            kind: "duration",
            text: text.to_string(),
            example: "\"10s\", \"500ms\" or \"1m\"",
        });
    }
    let multiplier: u64 = match unit {
        "" if bare == BareNumber::Refused => {
            return Err(UnitError::MissingUnit {
                text: t.to_string(),
            })
        }
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            if unit.starts_with('.') {
                return Err(UnitError::NotANumber {
                    kind: "duration",
                    text: text.to_string(),
                    example: "\"1500ms\" instead of a fraction",
                });
            }
            return Err(UnitError::UnknownUnit {
                kind: "duration",
                text: text.to_string(),
                unit: unit.to_string(),
                valid: DURATION_UNITS,
            });
        }
    };
    let overflow = || UnitError::Overflow {
        kind: "duration",
        text: text.to_string(),
    };
    let n: u64 = digits.parse().map_err(|_| overflow())?;
    let ms = n.checked_mul(multiplier).ok_or_else(overflow)?;
    Ok(Duration::from_millis(ms))
}

/// Writes a duration with the largest unit that keeps it exact, so `parse_duration` reads it back
/// unchanged (sub-millisecond parts are dropped: configuration has millisecond resolution).
pub fn format_duration(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_string();
    }
    for (unit, size) in [
        ("d", 86_400_000u64),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Reads a size such as `"60k"` (61440), `"1m"` (1048576) or `"512"`, as HAProxy does. The
/// parsing itself is the stick table's ([`crate::stick::parse_size`]), so the config, the
/// importer and the table can never disagree; this only words the errors for a config file.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    use crate::stick::SizeError;
    match crate::stick::parse_size(text.trim()) {
        Ok(n) => Ok(n as u64),
        Err(SizeError::Empty) => Err(UnitError::Empty),
        Err(SizeError::Invalid(_)) => Err(UnitError::NotANumber {
            kind: "size",
            text: text.to_string(),
            example: "\"60k\" or \"1m\"",
        }),
        Err(SizeError::UnknownSuffix { suffix, .. }) => Err(UnitError::UnknownUnit {
            kind: "size",
            text: text.to_string(),
            unit: suffix,
            valid: SIZE_UNITS,
        }),
        Err(SizeError::Overflow(_)) => Err(UnitError::Overflow {
            kind: "size",
            text: text.to_string(),
        }),
    }
}

/// Writes a size with the largest power-of-1024 suffix that keeps it exact.
pub fn format_size(n: u64) -> String {
    if n == 0 {
        return "0".to_string();
    }
    for (unit, size) in [("g", 1u64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
        if n % size == 0 {
            return format!("{}{unit}", n / size);
        }
    }
    n.to_string()
}

/// serde glue: durations as text (or a bare integer of milliseconds).
pub(crate) mod duration_text {
    use super::{format_duration, parse_duration};
    use serde::{de, Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Millis(u64),
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Repr::deserialize(d).map_err(|_| {
            de::Error::custom("invalid duration: expected text such as \"10s\" or \"500ms\"")
        })? {
            Repr::Text(t) => parse_duration(&t).map_err(de::Error::custom),
            Repr::Millis(ms) => Ok(Duration::from_millis(ms)),
        }
    }

    /// The same for optional durations.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// serde glue: sizes as text such as `"60k"` or as a bare integer.
pub(crate) mod size_text {
    use super::{format_size, parse_size};
    use serde::{de, Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Count(u64),
    }

    pub fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_size(*n))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Repr::deserialize(d)
            .map_err(|_| de::Error::custom("invalid size: expected text such as \"60k\""))?
        {
            Repr::Text(t) => parse_size(&t).map_err(de::Error::custom),
            Repr::Count(n) => Ok(n),
        }
    }

    /// The same for optional sizes.
    pub mod option {
        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(n: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
            match n {
                Some(n) => super::serialize(n, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_follow_haproxy_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_duration_with_unit(" 250ms "),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration_with_unit(" 3 "),
            Err(UnitError::MissingUnit { text: "3".into() })
        );
        assert_eq!(
            parse_duration_with_unit("3").unwrap_err().to_string(),
            "duration \"3\" has no unit: write it with one, e.g. \"3s\" or \"3ms\" (units: ms, s, m, h, d)"
        );
        assert!(matches!(
            parse_duration("5x"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("1.5s"),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(UnitError::NotANumber { .. })
        ));
        assert_eq!(parse_duration(""), Err(UnitError::Empty));
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(UnitError::Overflow { .. })
        ));
        assert!(matches!(
            parse_duration("999999999999999d"),
            Err(UnitError::Overflow { .. })
        ));
    }

    #[test]
    fn sizes_are_powers_of_1024() {
        assert_eq!(parse_size("60k"), Ok(61440));
        assert_eq!(parse_size("1m"), Ok(1_048_576));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("32"), Ok(32));
        assert!(matches!(
            parse_size("60kb"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size("-1"),
            Err(UnitError::NotANumber { .. })
        ));
    }

    #[test]
    fn formatting_picks_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_size(61440), "60k");
        assert_eq!(format_size(15360), "15k");
        assert_eq!(format_size(1000), "1000");
    }

    proptest! {
        #[test]
        fn duration_round_trips_through_text(ms in 0u64..u64::MAX / 2) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn size_round_trips_through_text(n in any::<u64>()) {
            prop_assert_eq!(parse_size(&format_size(n)), Ok(n));
        }

        #[test]
        fn with_a_unit_both_readings_agree(
            n in 0u64..10_000_000,
            unit in proptest::sample::select(&["ms", "s", "m", "h", "d"][..]),
        ) {
            let text = format!("{n}{unit}");
            prop_assert!(parse_duration(&text).is_ok());
            prop_assert_eq!(parse_duration_with_unit(&text), parse_duration(&text));
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,24}") {
            let _ = parse_duration_with_unit(&s);
            let _ = parse_duration(&s);
            let _ = parse_size(&s);
        }
    }
}
