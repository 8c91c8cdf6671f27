//! End-to-end processing latency (nsqd's `--e2e-processing-latency-*`): the
//! time from a message's publish timestamp to its FIN, kept per channel over
//! a sliding window and reported as percentiles. Recording is a few relaxed
//! atomic adds into a fixed log-linear histogram (no lock, no allocation), so
//! the FIN path stays cheap; quantiles are computed only when stats are read.
//!
//! Like nsqd's `internal/quantile`, the window is two halves that take turns:
//! a sample lands in the half of the current `window / 2` period, and a read
//! merges the current and the previous half, so it covers between half the
//! window and the whole of it. Values are exact below 32 ns and within 1/32
//! (reported at the bucket's middle, so within about 1.6%) above; the largest
//! sample of the window is reported exactly for the 1.0 quantile.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::sync::lock;

/// Sub-buckets per power of two: the relative width of a bucket is 1/32.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for every `u64` nanosecond value.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// The settings shared by every channel's window.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyOptions {
    /// The whole window; each half lasts `window / 2`.
    pub window: Duration,
    /// The quantiles reported, in (0, 1], in the order given (nsqd sorts
    /// them from the largest down).
    pub percentiles: Vec<f64>,
}

/// One half of the window.
struct Half {
    /// Which `window / 2` period the counts belong to; a writer that finds
    /// an older period here zeroes the half first.
    period: AtomicU64,
    /// The largest latency recorded in this period, for the 1.0 quantile.
    max: AtomicU64,
    counts: Box<[AtomicU32]>,
}

impl Half {
    fn new() -> Half {
        Half {
            period: AtomicU64::new(0),
            max: AtomicU64::new(0),
            counts: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

/// A channel's latency window.
pub struct LatencyWindow {
    /// Length of one half, in nanoseconds (at least 1).
    half_nanos: u64,
    halves: [Half; 2],
    /// Taken only to move a half to a new period (once per `window / 2`),
    /// so two writers never zero the same half twice.
    roll: Mutex<()>,
}

impl LatencyWindow {
    pub fn new(window: Duration) -> LatencyWindow {
        let half = u64::try_from(window.as_nanos() / 2).unwrap_or(u64::MAX);
        LatencyWindow {
            half_nanos: half.max(1),
            halves: [Half::new(), Half::new()],
            roll: Mutex::new(()),
        }
    }

    /// Records a message published at `published` (ns since the epoch)
    /// and finished at `now` (likewise). A clock that went backwards
    /// counts as 0.
    pub fn record(&self, published: i64, now: i64) {
        let latency = u64::try_from(now.saturating_sub(published)).unwrap_or(0);
        let period = u64::try_from(now).unwrap_or(0) / self.half_nanos;
        let half = &self.halves[(period & 1) as usize];
        let current = half.period.load(Ordering::Acquire);
        if current != period {
            if current > period {
                // A writer from a period already over: its half is reused.
                return;
            }
            self.start_period(half, period);
        }
        half.counts[bucket(latency)].fetch_add(1, Ordering::Relaxed);
        if half.max.load(Ordering::Relaxed) < latency {
            half.max.fetch_max(latency, Ordering::Relaxed);
        }
    }

    /// Zeroes `half` for `period`, unless another writer already did.
    fn start_period(&self, half: &Half, period: u64) {
        let _guard = lock(&self.roll);
        if half.period.load(Ordering::Acquire) >= period {
            return;
        }
        for c in half.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
        half.max.store(0, Ordering::Relaxed);
        half.period.store(period, Ordering::Release);
    }

    /// The counts of the window as of `now` (ns since the epoch).
    pub fn snapshot(&self, now: i64) -> LatencySnapshot {
        let period = u64::try_from(now).unwrap_or(0) / self.half_nanos;
        let mut snap = LatencySnapshot::empty();
        for half in &self.halves {
            let p = half.period.load(Ordering::Acquire);
            // The current period and the one before it; a half never
            // written has period 0 and counts of 0.
            if p > period || period - p > 1 {
                continue;
            }
            for (acc, c) in snap.counts.iter_mut().zip(half.counts.iter()) {
                let n = u64::from(c.load(Ordering::Relaxed));
                *acc += n;
                snap.count += n;
            }
            snap.max = snap.max.max(half.max.load(Ordering::Relaxed));
        }
        snap
    }
}

/// Summed counts of one or more windows, for computing quantiles.
#[derive(Clone)]
pub struct LatencySnapshot {
    count: u64,
    max: u64,
    counts: Vec<u64>,
}

impl LatencySnapshot {
    pub fn empty() -> LatencySnapshot {
        LatencySnapshot {
            count: 0,
            max: 0,
            counts: vec![0; BUCKETS],
        }
    }

    /// Adds `other`'s samples (a topic sums its channels, as nsqd merges
    /// their streams).
    pub fn merge(&mut self, other: &LatencySnapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value (ns) at quantile `q`: the sample of rank `ceil(q * count)`,
    /// or 0 without samples.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank == self.count {
            return self.max as f64;
        }
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return middle(i).min(self.max) as f64;
            }
        }
        self.max as f64
    }

    /// nsqd's `quantile.Result` for `percentiles`.
    pub fn result(&self, percentiles: &[f64]) -> E2eLatency {
        E2eLatency {
            count: self.count,
            percentiles: Some(
                percentiles
                    .iter()
                    .map(|&q| Percentile {
                        quantile: q,
                        value: self.quantile(q),
                    })
                    .collect(),
            ),
        }
    }
}

/// The bucket of a latency of `v` ns.
fn bucket(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = ((v >> shift) as usize) & (SUB - 1);
    (shift as usize + 1) * SUB + sub
}

/// The value reported for bucket `i`: its middle.
fn middle(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    let low = ((SUB + i % SUB) as u64) << shift;
    low + ((1u64 << shift) >> 1)
}

/// nsqd's `e2e_processing_latency` object: `percentiles` is `null` when
/// none are configured (or, for a topic, when it has no channel).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct E2eLatency {
    pub count: u64,
    pub percentiles: Option<Vec<Percentile>>,
}

/// One `{quantile, value}` entry; the value is in nanoseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentile {
    #[serde(serialize_with = "go_float")]
    pub quantile: f64,
    #[serde(serialize_with = "go_float")]
    pub value: f64,
}

/// Writes a float as Go's `encoding/json` does for whole numbers (`1`, not
/// `1.0`).
fn go_float<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

impl E2eLatency {
    /// nsqd's `quantile.Result.String()`: each value in human units, joined
    /// by ", " (empty without percentiles).
    pub fn human(&self) -> String {
        let Some(ps) = &self.percentiles else {
            return String::new();
        };
        ps.iter()
            .map(|p| nanos_to_human(p.value))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// nsqd's `stringy.NanoSecondToHuman`.
fn nanos_to_human(v: f64) -> String {
    let (v, suffix) = if v > 1e9 {
        (v / 1e9, "s")
    } else if v > 1e6 {
        (v / 1e6, "ms")
    } else if v > 1e3 {
        (v / 1e3, "us")
    } else {
        (v, "ns")
    };
    format!("{v:.1}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for v in (0..5000u64).chain([1 << 20, 123_456_789, u64::MAX / 3, u64::MAX]) {
            let b = bucket(v);
            assert!(b < BUCKETS, "{v}");
            assert!(b >= last || v > 5000, "{v}");
            last = b;
            let m = middle(b) as f64;
            let err = (m - v as f64).abs() / (v as f64).max(1.0);
            assert!(err <= 1.0 / 32.0, "{v}: middle {m}, error {err}");
        }
        assert_eq!(middle(bucket(17)), 17);
        assert_eq!(middle(bucket(40)), 40);
    }

    #[test]
    fn quantiles_by_rank() {
        let w = LatencyWindow::new(Duration::from_secs(600));
        let now = 1_000 * SEC;
        for ms in 1..=100 {
            w.record(now - ms * 1_000_000, now);
        }
        let s = w.snapshot(now);
        assert_eq!(s.count(), 100);
        let near = |got: f64, want: f64| (got - want).abs() / want < 0.02;
        assert!(near(s.quantile(0.5), 50e6), "{}", s.quantile(0.5));
        assert!(near(s.quantile(0.99), 99e6), "{}", s.quantile(0.99));
        assert_eq!(s.quantile(1.0), 100e6, "the maximum is exact");
        let r = s.result(&[1.0, 0.5]);
        assert_eq!(r.percentiles.as_ref().map(Vec::len), Some(2));
        assert_eq!(LatencySnapshot::empty().result(&[0.9]).human(), "0.0ns");
    }

    #[test]
    fn the_window_slides_by_halves() {
        let w = LatencyWindow::new(Duration::from_secs(10));
        let t0 = 1_000 * SEC; // the start of a 5 s period
        w.record(t0 - SEC, t0);
        assert_eq!(w.snapshot(t0 + 4 * SEC).count(), 1);
        // The next half: the first one still counts.
        w.record(t0 + 5 * SEC - SEC, t0 + 5 * SEC);
        assert_eq!(w.snapshot(t0 + 6 * SEC).count(), 2);
        // Two halves on, the first one is out of the window.
        assert_eq!(w.snapshot(t0 + 10 * SEC).count(), 1);
        w.record(t0 + 10 * SEC, t0 + 10 * SEC);
        let s = w.snapshot(t0 + 10 * SEC);
        assert_eq!(s.count(), 2);
        assert_eq!(s.quantile(1.0), 1e9);
        assert_eq!(w.snapshot(t0 + 60 * SEC).count(), 0);
    }

    #[test]
    fn merged_snapshots_add_up() {
        let (a, b) = (
            LatencyWindow::new(Duration::from_secs(60)),
            LatencyWindow::new(Duration::from_secs(60)),
        );
        let now = 100 * SEC;
        a.record(now - 10, now);
        b.record(now - 1000, now);
        let mut s = a.snapshot(now);
        s.merge(&b.snapshot(now));
        assert_eq!(s.count(), 2);
        assert_eq!(s.quantile(1.0), 1000.0);
        assert_eq!(s.quantile(0.5), 10.0);
    }

    #[test]
    fn json_and_text_are_nsqds() {
        let r = E2eLatency {
            count: 3,
            percentiles: Some(vec![
                Percentile {
                    quantile: 1.0,
                    value: 2_500_000_000.0,
                },
                Percentile {
                    quantile: 0.99,
                    value: 1500.0,
                },
            ]),
        };
        assert_eq!(
            serde_json::to_string(&r).expect("json"),
            r#"{"count":3,"percentiles":[{"quantile":1,"value":2500000000},{"quantile":0.99,"value":1500}]}"#
        );
        assert_eq!(r.human(), "2.5s, 1.5us");
        assert_eq!(
            serde_json::to_string(&E2eLatency::default()).expect("json"),
            r#"{"count":0,"percentiles":null}"#
        );
    }
}
