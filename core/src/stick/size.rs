//! Table sizes as operators write them: `60k`, `1m`, `100`.
//!
//! HAProxy's `size` takes a count with an optional binary suffix (`k` = 1024, `m` = 1024²,
//! `g` = 1024³, either case), so `size 60k` means 61440 entries, not 60000. Both the TOML config and
//! the haproxy.cfg importer parse sizes through [`parse_size`] so they cannot disagree.

/// Why a size string was rejected; each variant says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Nothing to parse.
    #[error("empty size: write a count such as `60k` or `1000`")]
    Empty,
    /// The part before the suffix is not a decimal number.
    #[error("invalid size `{0}`: write digits optionally followed by k, m or g, e.g. `60k`")]
    Invalid(String),
    /// A suffix other than k, m or g.
    #[error("unknown size suffix `{suffix}` in `{input}`: use k (1024), m (1024*1024) or g")]
    UnknownSuffix {
        /// The offending suffix.
        suffix: String,
        /// The whole input.
        input: String,
    },
    /// The value does not fit in a `usize`.
    #[error("size `{0}` is too large")]
    Overflow(String),
}

/// Parse a HAProxy-style size: decimal digits, optionally followed by one of `k`/`K` (×1024),
/// `m`/`M` (×1024²) or `g`/`G` (×1024³). `"60k"` → 61440.
pub fn parse_size(input: &str) -> Result<usize, SizeError> {
    if input.is_empty() {
        return Err(SizeError::Empty);
    }
    let digits_end = input
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(input.len());
    let (digits, suffix) = input.split_at(digits_end);
    if digits.is_empty() {
        return Err(SizeError::Invalid(input.to_owned()));
    }
    let multiplier: usize = match suffix {
        "" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => {
            return Err(SizeError::UnknownSuffix {
                suffix: suffix.to_owned(),
                input: input.to_owned(),
            })
        }
    };
    let count: usize = digits
        .parse()
        .map_err(|_| SizeError::Overflow(input.to_owned()))?;
    count
        .checked_mul(multiplier)
        .ok_or_else(|| SizeError::Overflow(input.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn suffixes_are_binary() {
        assert_eq!(parse_size("60k"), Ok(61440));
        assert_eq!(parse_size("60K"), Ok(61440));
        assert_eq!(parse_size("1m"), Ok(1024 * 1024));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn rejects_malformed_sizes() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert!(matches!(parse_size("k"), Err(SizeError::Invalid(_))));
        assert!(matches!(parse_size("-5"), Err(SizeError::Invalid(_))));
        assert!(matches!(parse_size(" 60k"), Err(SizeError::Invalid(_))));
        assert!(matches!(
            parse_size("60kb"),
            Err(SizeError::UnknownSuffix { .. })
        ));
        assert!(matches!(
            parse_size("60 k"),
            Err(SizeError::UnknownSuffix { .. })
        ));
        assert!(matches!(
            parse_size("1.5k"),
            Err(SizeError::UnknownSuffix { .. })
        ));
        assert!(matches!(
            parse_size("99999999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            parse_size("18014398509481984k"),
            Err(SizeError::Overflow(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = parse_size(&s);
        }

        #[test]
        fn round_trips_counts(n in 0usize..1_000_000, suffix in prop::sample::select(vec![("", 1usize), ("k", 1024), ("m", 1 << 20)])) {
            prop_assert_eq!(parse_size(&format!("{n}{}", suffix.0)), Ok(n * suffix.1));
        }
    }
}
