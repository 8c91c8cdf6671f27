//! Go-style durations, as nsqd's flags and config file write them
//! (`60s`, `250ms`, `1h0m0s`): the parser every setting and tool shares,
//! the renderer, and the serde adapter the YAML settings use.

use std::fmt;
use std::time::Duration;

/// Renders a duration the way Go and nsqd write them (`60s`, `250ms`, `1h0m0s`).
pub struct DurationDisplay(pub Duration);

impl fmt::Display for DurationDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ms = d.as_millis();
        if ms < 1000 && d.subsec_nanos().is_multiple_of(1_000_000) {
            return write!(f, "{ms}ms");
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        let frac = d.subsec_millis();
        let s_text = if frac == 0 {
            format!("{s}s")
        } else {
            format!("{s}.{frac:03}s")
        };
        if h > 0 {
            write!(f, "{h}h{m}m{s_text}")
        } else if m > 0 {
            write!(f, "{m}m{s_text}")
        } else {
            f.write_str(&s_text)
        }
    }
}

/// Parses a Go duration string: a sequence of decimal numbers with units
/// `ns`, `us`, `ms`, `s`, `m`, `h` (e.g. `60s`, `1m30s`, `250ms`, `1.5h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {text:?}: expected a number with a unit (ns, us, ms, s, m, h), e.g. 60s or 250ms"
        )
    };
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Serde adapter: durations as Go strings (a bare integer is milliseconds,
/// as nsqd's config file accepts).
pub(crate) mod go_duration {
    use std::fmt;
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    use super::{DurationDisplay, parse_duration};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&DurationDisplay(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Visitor)
    }

    struct Visitor;

    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as 60s, 250ms or 1h, or a number of milliseconds")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_millis(v))
        }
    }
}
