//! Units: byte sizes ("256M", "1G", "512K", plain bytes) and durations
//! ("1.5s", "500ms", "2m"). Used by profiles and by CLI flags.

use std::time::Duration;

/// A value that is not a valid size or duration. The message names the bad
/// value and the valid forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error(
        "invalid size \"{0}\" (valid: a byte count like 1048576, or a number with a unit K, M, G, T (powers of 1024; optional B/iB suffix), e.g. \"512K\", \"256M\", \"1.5G\")"
    )]
    Size(String),
    #[error(
        "invalid duration \"{0}\" (valid: a number with a unit us, ms, s, m, h, e.g. \"500ms\", \"1.5s\", \"2m\")"
    )]
    Duration(String),
    #[error("size \"{0}\" is too large (maximum 2^64-1 bytes)")]
    SizeOverflow(String),
    #[error("duration \"{0}\" is too large")]
    DurationOverflow(String),
}

/// Split "1.5G" into ("1.5", "G"); the number part is digits and at most one dot.
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    (&s[..end], s[end..].trim_start())
}

fn parse_number(num: &str) -> Option<f64> {
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1
    {
        return None;
    }
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// Parse a byte size: `"1048576"`, `"512K"`, `"256M"`, `"1G"`, `"1.5G"`, `"2T"`.
/// Units are binary (K = 1024) and case-insensitive; `KB`, `KiB` are accepted
/// as synonyms of `K`. A plain number is bytes.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    let (num, unit) = split_number(t);
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(UnitError::Size(s.to_string())),
    };
    if !num.contains('.') {
        let n: u64 = num.parse().map_err(|_| {
            if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) {
                UnitError::SizeOverflow(s.to_string())
            } else {
                UnitError::Size(s.to_string())
            }
        })?;
        return n
            .checked_mul(mult)
            .ok_or_else(|| UnitError::SizeOverflow(s.to_string()));
    }
    if mult == 1 {
        // Fractional bytes make no sense.
        return Err(UnitError::Size(s.to_string()));
    }
    let v = parse_number(num).ok_or_else(|| UnitError::Size(s.to_string()))? * mult as f64;
    if v >= u64::MAX as f64 {
        return Err(UnitError::SizeOverflow(s.to_string()));
    }
    Ok(v.round() as u64)
}

/// Parse a duration: `"500ms"`, `"1.5s"`, `"2m"`, `"1h"`, `"250us"`. A unit is required.
/// The decimal is converted exactly (integer arithmetic, no binary floating
/// point), rounded to the nearest nanosecond, so that what
/// [`format_duration`] prints parses back to the same value.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let t = s.trim();
    let (num, unit) = split_number(t);
    let ns_per_unit: u128 = match unit {
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" | "min" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        _ => return Err(UnitError::Duration(s.to_string())),
    };
    parse_number(num).ok_or_else(|| UnitError::Duration(s.to_string()))?;
    let overflow = || UnitError::DurationOverflow(s.to_string());
    // `num` is now digits with at most one inner dot.
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let int: u128 = int.parse().map_err(|_| overflow())?;
    // Fraction digits past the 24th are below 10^-11 ns for every unit: ignored.
    let frac = &frac[..frac.len().min(24)];
    let scale = 10u128.pow(frac.len() as u32);
    let frac: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| overflow())?
    };
    let frac_ns = frac * ns_per_unit;
    let frac_ns = frac_ns / scale + u128::from(frac_ns % scale * 2 >= scale);
    let ns = int
        .checked_mul(ns_per_unit)
        .and_then(|n| n.checked_add(frac_ns))
        .ok_or_else(overflow)?;
    let secs = u64::try_from(ns / NANOS_PER_SEC).map_err(|_| overflow())?;
    Ok(Duration::new(secs, (ns % NANOS_PER_SEC) as u32))
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Render a size the way a profile would write it (exact: "64M", "1536K", "1000").
pub fn format_size(v: u64) -> String {
    for (unit, m) in [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if v >= m && v.is_multiple_of(m) {
            return format!("{}{unit}", v / m);
        }
    }
    v.to_string()
}

/// Render a duration exactly ("1.5s", "500ms", "250us", "2m", "10.000040706s").
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns.is_multiple_of(60 * NANOS_PER_SEC) {
        format!("{}m", ns / (60 * NANOS_PER_SEC))
    } else if ns.is_multiple_of(1_000_000) && ns < NANOS_PER_SEC {
        format!("{}ms", ns / 1_000_000)
    } else if ns.is_multiple_of(1_000) && ns < NANOS_PER_SEC {
        format!("{}us", ns / 1000)
    } else {
        // Seconds with up to nine exact decimals.
        let frac = format!("{:09}", d.subsec_nanos());
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{}s", d.as_secs())
        } else {
            format!("{}.{frac}s", d.as_secs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size(" 64M "), Ok(64 << 20));
        for bad in [
            "banana",
            "",
            "12X",
            "1.5",
            "M",
            "-1M",
            "1..2M",
            ".5M",
            "99999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("99999999T").is_err());
        let msg = parse_size("banana").unwrap_err().to_string();
        assert!(msg.contains("\"banana\"") && msg.contains("256M"), "{msg}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1.0000000005s"), Ok(Duration::new(1, 1)));
        assert_eq!(parse_duration("0.0000001us"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("18446744073709551615s"),
            Ok(Duration::new(u64::MAX, 0))
        );
        assert!(matches!(
            parse_duration("18446744073709551616s"),
            Err(UnitError::DurationOverflow(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999999999999999999999h"),
            Err(UnitError::DurationOverflow(_))
        ));
        for bad in ["banana", "10", "", "s", "1.2.3s", "5 parsecs", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let msg = parse_duration("10").unwrap_err().to_string();
        assert!(msg.contains("\"10\"") && msg.contains("500ms"), "{msg}");
    }

    #[test]
    fn formatting_round_trips() {
        for s in ["64M", "1G", "1536K", "1000"] {
            assert_eq!(format_size(parse_size(s).unwrap()), s);
        }
        for s in [
            "1.5s",
            "500ms",
            "2m",
            "10s",
            "250us",
            "1.000001s",
            "10.000040706s",
        ] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
        // Found by fuzzing (fuzz/regressions/units): sub-microsecond parts
        // were dropped by the formatting, so `profile show` printed another
        // value than the one that runs.
        let d = parse_duration("10.00004070579635112s").unwrap();
        assert_eq!(d, Duration::new(10, 40_706));
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
}
