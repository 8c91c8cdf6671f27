//! Time rendering the way nsqd's Go prints it: RFC 3339 timestamps (UTC) and
//! `time.Duration.String()` (`1h2m3.5s`, `250ms`), for the text `/stats`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `2006-01-02T15:04:05Z` for `secs` since the epoch, in UTC.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil conversion.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Go's `time.Duration.String()` for a non-negative number of seconds.
pub fn go_duration(secs: f64) -> String {
    let ns = (secs * 1e9).round().clamp(0.0, u64::MAX as f64) as u64;
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (div, unit) = if ns < 1_000 {
            (1, "ns")
        } else if ns < 1_000_000 {
            (1_000, "µs")
        } else {
            (1_000_000, "ms")
        };
        return format!("{}{unit}", fraction(ns / div, ns % div, div));
    }
    let total_s = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (h, m, s) = (total_s / 3600, (total_s / 60) % 60, total_s % 60);
    let s = format!("{}s", fraction(s, frac, 1_000_000_000));
    if h > 0 {
        format!("{h}h{m}m{s}")
    } else if m > 0 {
        format!("{m}m{s}")
    } else {
        s
    }
}

/// `whole.frac` with the fraction's trailing zeros trimmed.
fn fraction(whole: u64, frac: u64, div: u64) -> String {
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_match_go() {
        assert_eq!(go_duration(0.0), "0s");
        assert_eq!(go_duration(0.25), "250ms");
        assert_eq!(go_duration(0.0000015), "1.5µs");
        assert_eq!(go_duration(5.0), "5s");
        assert_eq!(go_duration(65.5), "1m5.5s");
        assert_eq!(go_duration(3600.0), "1h0m0s");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
