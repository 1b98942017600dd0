//! Go-style duration strings (`"90s"`, `"15m"`, `"1h30m"`, `"720h"`, `"0s"`), as used in the
//! AuthStack spec.

use std::time::Duration;

/// The schema pattern of a duration field. Kept in sync with [`parse`] by a test.
///
/// One or more `<number><unit>` groups (units `ns`, `us`, `ms`, `s`, `m`, `h`; the number may
/// have a fraction), or a bare `0`. Negative durations are not accepted.
pub const PATTERN: &str = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$";

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {reason} (expected e.g. \"90s\", \"15m\", \"1h30m\")")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

fn error(input: &str, reason: &'static str) -> DurationError {
    DurationError {
        input: input.to_owned(),
        reason,
    }
}

/// Parses a Go-style duration string.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(error(input, "empty"));
    }
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    let bytes = input.as_bytes();
    let mut total_nanos: u128 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(error(input, "expected a number"));
        }
        let whole: u128 = input[start..i]
            .parse()
            .map_err(|_| error(input, "number too large"))?;
        // Fraction as (numerator, denominator).
        let mut frac = (0u128, 1u128);
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let fstart = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == fstart {
                return Err(error(input, "expected digits after the decimal point"));
            }
            let digits = &input[fstart..i];
            if digits.len() > 18 {
                return Err(error(input, "too many fractional digits"));
            }
            let numerator: u128 = digits.parse().map_err(|_| error(input, "bad fraction"))?;
            frac = (numerator, 10u128.pow(digits.len() as u32));
        }
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit: u128 = match &input[ustart..i] {
            "ns" => 1,
            "us" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(error(input, "missing unit")),
            _ => return Err(error(input, "unknown unit")),
        };
        let part = whole
            .checked_mul(unit)
            .and_then(|w| w.checked_add(frac.0 * unit / frac.1))
            .ok_or_else(|| error(input, "too large"))?;
        total_nanos = total_nanos
            .checked_add(part)
            .ok_or_else(|| error(input, "too large"))?;
    }
    // Cap at ~292 years, which every consumer (chrono, i64 seconds) can represent.
    if total_nanos > i64::MAX as u128 {
        return Err(error(input, "too large"));
    }
    let secs = (total_nanos / 1_000_000_000) as u64;
    let nanos = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("0", 0.0),
            ("0s", 0.0),
            ("90s", 90.0),
            ("15m", 900.0),
            ("1h30m", 5400.0),
            ("720h", 2_592_000.0),
            ("1.5h", 5400.0),
            ("2s500ms", 2.5),
            ("250ms", 0.25),
            ("1us", 0.000_001),
            ("10ns", 0.000_000_01),
        ];
        for (input, secs) in cases {
            let d = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert!((d.as_secs_f64() - secs).abs() < 1e-9, "{input} -> {d:?}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for input in [
            "", "15", "m", "1x", "-5s", "1.s", ".5s", "1h 30m", "5S", "1d", "s5",
        ] {
            assert!(parse(input).is_err(), "{input} should be rejected");
        }
        let err = parse("10parsecs").unwrap_err().to_string();
        assert!(
            err.contains("10parsecs") && err.contains("unknown unit"),
            "{err}"
        );
        assert!(parse("999999999999999999999h").is_err());
    }

    /// The schema pattern accepts exactly what the parser accepts (on a representative set).
    #[test]
    fn schema_pattern_matches_parser() {
        let re = regex::Regex::new(PATTERN).unwrap();
        let samples = [
            "0", "0s", "90s", "15m", "1h30m", "1.5h", "2s500ms", "10ns", "3us", "", "15", "m",
            "1x", "-5s", "1.s", ".5s", "1h 30m", "5S", "1d", "s5", "1h1h", "00", "0h0m",
        ];
        for s in samples {
            assert_eq!(
                re.is_match(s),
                parse(s).is_ok(),
                "pattern and parser disagree on {s:?}"
            );
        }
    }
}
