//! fuzzkit: a small mutation fuzzer that runs as an ordinary `#[test]` on
//! stable Rust, so the normal `cargo test` exercises every parser target for a
//! fixed, short budget, with no nightly toolchain and no instrumentation.
//!
//! A target is a closure over bytes. The fuzzer starts from seeds (real,
//! valid inputs, so mutants get past the first checks), mutates them with the
//! usual byte-level operators (bit flips, interesting integers in both byte
//! orders, dictionary tokens, block insert/delete/duplicate, splicing), and
//! keeps a mutant in its corpus when the target reports an outcome not seen
//! before: a cheap stand-in for coverage feedback. Structured targets turn the
//! bytes into values with [`arbitrary::Unstructured`].
//!
//! Properties checked for every input: the target does not panic (its own
//! asserts included), and, when [`Fuzzer::max_alloc`] is set and
//! [`TrackingAlloc`] is the global allocator, no single allocation made while
//! the target runs is larger than the limit (a length prefix is checked
//! before it is allocated).
//!
//! Budget and reproduction come from the environment: `FUZZ_SECS` (seconds
//! per target, default 1), `FUZZ_ITERS` (executions per target, no default
//! cap) and `FUZZ_SEED` (`random`, or a number; default fixed per target so a
//! CI run is reproducible). A failure prints the input and the seed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

pub use arbitrary;

/// Most inputs kept in the corpus; beyond it new outcomes are only counted.
const MAX_CORPUS: usize = 1024;

/// Integers that make parsers take their edge paths: zero, one, signs,
/// powers of two and their neighbours, type bounds.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    4,
    5,
    7,
    8,
    16,
    32,
    64,
    100,
    127,
    128,
    255,
    256,
    1000,
    1024,
    4096,
    32767,
    32768,
    65535,
    65536,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// Bytes worth planting: separators and terminators of the text protocols,
/// high bits, NUL.
const INTERESTING_BYTES: &[u8] = b"\0\n\r \t:\\*$#-+0129\x7f\x80\xff";

/// A seeded xorshift64* generator: tiny, fast, and reproducible from one
/// number, which is all a fuzzer's choices need.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so nearby seeds diverge at once; never 0.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// What one target run did with its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Inputs the target was run on (seeds included).
    pub execs: u64,
    /// Inputs kept because they gave a new outcome.
    pub corpus: usize,
    /// Distinct outcomes the target reported.
    pub outcomes: usize,
    /// Largest single allocation seen during a run (0 when not tracked).
    pub peak_alloc: usize,
}

/// One fuzz target's configuration; [`Fuzzer::run`] executes it.
pub struct Fuzzer {
    /// Printed with the figures and any failure.
    name: String,
    /// Valid inputs the corpus starts from.
    seeds: Vec<Vec<u8>>,
    /// Tokens of the input language, planted by one of the mutators.
    dict: Vec<Vec<u8>>,
    /// Mutants are cut to this length, so time goes to variety, not size.
    max_len: usize,
    /// Largest single allocation allowed while the target runs.
    max_alloc: Option<usize>,
    /// Wall-clock budget.
    secs: f64,
    /// Optional cap on executions.
    iters: Option<u64>,
    /// First state of the generator.
    seed: u64,
}

impl Fuzzer {
    /// A target named `name`, with the budget and seed from the environment.
    pub fn new(name: &str) -> Fuzzer {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let secs = env("FUZZ_SECS")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(1.0);
        let iters = env("FUZZ_ITERS").and_then(|v| v.parse().ok());
        let seed = match env("FUZZ_SEED").as_deref() {
            Some("random") => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                t.as_nanos() as u64 ^ u64::from(std::process::id())
            }
            Some(v) => v.parse().unwrap_or_else(|_| hash_of(&v)),
            None => hash_of(&name),
        };
        Fuzzer {
            name: name.to_string(),
            seeds: Vec::new(),
            dict: Vec::new(),
            max_len: 4096,
            max_alloc: None,
            secs,
            iters,
            seed,
        }
    }

    /// Adds one valid input to start from.
    pub fn seed(mut self, input: impl AsRef<[u8]>) -> Fuzzer {
        self.seeds.push(input.as_ref().to_vec());
        self
    }

    /// Adds valid inputs to start from.
    pub fn seeds<I>(mut self, inputs: I) -> Fuzzer
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.seeds
            .extend(inputs.into_iter().map(|s| s.as_ref().to_vec()));
        self
    }

    /// Adds tokens (keywords, separators) that mutations may plant.
    pub fn dict<I>(mut self, tokens: I) -> Fuzzer
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.dict
            .extend(tokens.into_iter().map(|s| s.as_ref().to_vec()));
        self
    }

    /// Longest mutant (default 4096 bytes).
    pub fn max_len(mut self, n: usize) -> Fuzzer {
        self.max_len = n.max(1);
        self
    }

    /// Fails the target if a single allocation made while it runs (on this
    /// thread) is larger than `bytes`. Needs [`TrackingAlloc`] installed as
    /// the global allocator of the test binary; `run` checks that it is.
    pub fn max_alloc(mut self, bytes: usize) -> Fuzzer {
        self.max_alloc = Some(bytes);
        self
    }

    /// Scales the budget for a slow target (a fraction of `FUZZ_SECS`).
    pub fn budget_scale(mut self, factor: f64) -> Fuzzer {
        self.secs *= factor;
        self
    }

    /// Runs `target` on the seeds, then on mutants until the budget is
    /// spent, and prints the figures. The value the target returns is its
    /// outcome: a new one keeps the input in the corpus. Panics (with the
    /// input and the seed to reproduce it) on the first failing input.
    pub fn run<R: Hash>(self, mut target: impl FnMut(&[u8]) -> R) -> Stats {
        if self.max_alloc.is_some() {
            assert!(
                tracking_installed(),
                "fuzz target {}: max_alloc needs fuzzkit::TrackingAlloc as the #[global_allocator]",
                self.name
            );
        }
        let mut rng = Rng::new(self.seed);
        let mut corpus: Vec<Vec<u8>> = Vec::new();
        let mut seen: HashSet<u64> = HashSet::new();
        let mut stats = Stats {
            execs: 0,
            corpus: 0,
            outcomes: 0,
            peak_alloc: 0,
        };
        let start = Instant::now();
        let budget = Duration::from_secs_f64(self.secs);
        let mut seeds = self.seeds.clone();
        if seeds.is_empty() {
            seeds.push(Vec::new());
        }
        let mut pending = seeds.into_iter();
        loop {
            let input = match pending.next() {
                Some(s) => s,
                None => {
                    if start.elapsed() >= budget || self.iters.is_some_and(|n| stats.execs >= n) {
                        break;
                    }
                    self.mutant(&mut rng, &corpus)
                }
            };
            let outcome = self.exec(&mut target, &input, &mut stats);
            stats.execs += 1;
            if seen.insert(outcome) {
                if corpus.len() < MAX_CORPUS {
                    corpus.push(input);
                }
            } else if corpus.is_empty() {
                corpus.push(input);
            }
        }
        stats.corpus = corpus.len();
        stats.outcomes = seen.len();
        let peak = if self.max_alloc.is_some() {
            format!(", largest allocation {} bytes", stats.peak_alloc)
        } else {
            String::new()
        };
        println!(
            "fuzz {}: {} execs in {:.2} s, {} outcomes, corpus {}{peak} (FUZZ_SEED={})",
            self.name,
            stats.execs,
            start.elapsed().as_secs_f64(),
            stats.outcomes,
            stats.corpus,
            self.seed
        );
        stats
    }

    /// Runs the target once, turning a panic or an oversized allocation
    /// into a failure that shows the input.
    fn exec<R: Hash>(
        &self,
        target: &mut impl FnMut(&[u8]) -> R,
        input: &[u8],
        stats: &mut Stats,
    ) -> u64 {
        let tracked = self.max_alloc.is_some();
        if tracked {
            track_start();
        }
        let result = catch_unwind(AssertUnwindSafe(|| hash_of(&target(input))));
        let peak = if tracked { track_stop() } else { 0 };
        stats.peak_alloc = stats.peak_alloc.max(peak);
        match result {
            Ok(outcome) => {
                if let Some(limit) = self.max_alloc.filter(|l| peak > *l) {
                    self.fail(
                        input,
                        &format!("allocated {peak} bytes at once, over the limit of {limit}"),
                    );
                }
                outcome
            }
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-string panic)".into());
                self.fail(input, &format!("panicked: {msg}"))
            }
        }
    }

    fn fail(&self, input: &[u8], why: &str) -> ! {
        panic!(
            "fuzz target {} {why}\ninput ({} bytes): b\"{}\"\nreproduce with FUZZ_SEED={}",
            self.name,
            input.len(),
            input.escape_ascii(),
            self.seed
        );
    }

    /// A corpus entry with a few stacked mutations.
    fn mutant(&self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut data = corpus[rng.below(corpus.len())].clone();
        let rounds = 1 + if rng.one_in(4) {
            rng.below(16)
        } else {
            rng.below(3)
        };
        for _ in 0..rounds {
            self.mutate_once(rng, corpus, &mut data);
        }
        data.truncate(self.max_len);
        data
    }

    fn mutate_once(&self, rng: &mut Rng, corpus: &[Vec<u8>], data: &mut Vec<u8>) {
        let len = data.len();
        match rng.below(14) {
            // Flip one bit.
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            // Replace a byte with a random or an interesting one.
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = if rng.one_in(2) {
                    rng.next_u64() as u8
                } else {
                    INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]
                };
            }
            // Overwrite an integer (1, 2, 4 or 8 bytes, either order, maybe
            // nudged by one) with an interesting value.
            2 if len > 0 => {
                let width = [1usize, 2, 4, 8][rng.below(4)].min(len);
                let at = rng.below(len - width + 1);
                let mut v = INTERESTING[rng.below(INTERESTING.len())];
                match rng.below(4) {
                    0 => v = v.wrapping_add(1),
                    1 => v = v.wrapping_sub(1),
                    _ => {}
                }
                let bytes = if rng.one_in(2) {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                let src = if rng.one_in(2) {
                    &bytes[8 - width..]
                } else {
                    &bytes[..width]
                };
                data[at..at + width].copy_from_slice(src);
            }
            // Write a number in decimal (text protocols carry lengths so).
            3 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let text = if rng.one_in(4) {
                    format!("-{v}")
                } else {
                    v.to_string()
                };
                let at = rng.below(len + 1);
                let cut = rng.below(4).min(len - at);
                data.splice(at..at + cut, text.bytes());
            }
            // Plant a dictionary token.
            4 | 5 if !self.dict.is_empty() => {
                let token = &self.dict[rng.below(self.dict.len())];
                let at = rng.below(len + 1);
                if rng.one_in(2) {
                    data.splice(at..at, token.iter().copied());
                } else {
                    let end = (at + token.len()).min(len);
                    data.splice(at..end, token.iter().copied());
                }
            }
            // Delete a block.
            6 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                data.drain(at..at + n);
            }
            // Insert random bytes.
            7 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                data.splice(at..at, bytes);
            }
            // Duplicate a block (repeats frames, headers, elements).
            8 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(256));
                let block = data[at..at + n].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, block);
            }
            // Splice in a piece of another corpus entry.
            9 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below(other.len() - from);
                    let at = rng.below(len + 1);
                    let end = if rng.one_in(2) { at } else { len };
                    data.splice(at..end, other[from..from + n].iter().copied());
                }
            }
            // Truncate.
            10 if len > 0 => data.truncate(rng.below(len)),
            // Repeat one byte many times (long lines, deep nesting).
            11 => {
                let at = rng.below(len + 1);
                let b = if len > 0 && rng.one_in(2) {
                    data[rng.below(len)]
                } else {
                    INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]
                };
                let n = 1 + rng.below(512);
                data.splice(at..at, std::iter::repeat_n(b, n));
            }
            // Change a decimal number already in the input (lengths, counts,
            // positions of text formats) to an edge value or a neighbour.
            12 | 13 => {
                let runs = digit_runs(data);
                if runs.is_empty() {
                    data.push(b'0' + rng.below(10) as u8);
                    return;
                }
                let (at, end) = runs[rng.below(runs.len())];
                let old = data[at..end].iter().fold(0u64, |n, &d| {
                    n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                });
                let new = match rng.below(6) {
                    0 => old.wrapping_add(1),
                    1 => old.wrapping_sub(1),
                    2 => old.wrapping_mul(2),
                    3 => old / 2,
                    4 => rng.next_u64() >> rng.below(64),
                    _ => INTERESTING[rng.below(INTERESTING.len())],
                };
                data.splice(at..end, new.to_string().bytes());
            }
            // A mutator that did not apply (empty input, no dict): add a byte.
            _ => data.push(rng.next_u64() as u8),
        }
    }
}

/// `(start, end)` of every run of ASCII digits, at most 256 of them.
fn digit_runs(data: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < data.len() && runs.len() < 256 {
        if data[i].is_ascii_digit() {
            let start = i;
            while i < data.len() && data[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    runs
}

fn hash_of<T: Hash + ?Sized>(v: &T) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// Splits `data` into chunks at points taken from `cuts` (for targets that
/// check a streaming parser gives the same answer however bytes arrive).
pub fn chunks<'a>(data: &'a [u8], cuts: &mut arbitrary::Unstructured<'_>) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = cuts
            .int_in_range(1..=rest.len().min(64))
            .unwrap_or(rest.len());
        let n = if cuts.is_empty() { rest.len() } else { n };
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

thread_local! {
    /// Per thread (the test harness runs targets on several threads at
    /// once): whether tracking is on, and the largest request since it was
    /// switched on. `const` so reading it never allocates.
    static TRACK: Cell<(bool, usize)> = const { Cell::new((false, 0)) };
}

fn note(size: usize) {
    let _ = TRACK.try_with(|t| {
        let (on, peak) = t.get();
        if on && size > peak {
            t.set((on, size));
        }
    });
}

fn track_start() {
    TRACK.with(|t| t.set((true, 0)));
}

fn track_stop() -> usize {
    TRACK.with(|t| {
        let (_, peak) = t.get();
        t.set((false, 0));
        peak
    })
}

fn tracking_installed() -> bool {
    track_start();
    let probe = std::hint::black_box(vec![0u8; 4096]);
    drop(probe);
    track_stop() >= 4096
}

/// The system allocator, noting the largest single request made on each
/// thread while a target runs. Install it in the test binary:
/// `#[global_allocator] static A: fuzzkit::TrackingAlloc = fuzzkit::TrackingAlloc;`
pub struct TrackingAlloc;

// SAFETY: every method forwards to `System` unchanged; `note` only reads and
// writes a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_planted_bug_past_a_length_check() {
        // A "parser" that panics only on a magic word followed by a length
        // over 1000: the seed and the integer mutators must find it.
        let found = catch_unwind(|| {
            Fuzzer::new("planted")
                .seed(b"MAGIC\x00\x00\x00\x05hello")
                .dict([&b"MAGIC"[..]])
                .run(|d| {
                    if let Some(rest) = d.strip_prefix(b"MAGIC")
                        && rest.len() >= 4
                    {
                        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                        assert!(n <= 1000, "planted");
                        return 1;
                    }
                    0
                })
        });
        assert!(found.is_err(), "the planted bug was not found");
    }

    #[test]
    fn chunks_cover_the_input() {
        let data: Vec<u8> = (0..200).collect();
        let cuts = [3u8, 250, 7, 0, 9];
        let mut u = arbitrary::Unstructured::new(&cuts);
        let parts = chunks(&data, &mut u);
        assert_eq!(parts.concat(), data);
    }
}
