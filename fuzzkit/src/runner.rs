//! The fuzz loop: a target's configuration (seeds, dictionary, limits,
//! budget), running it on the seeds and then on mutants until the budget is
//! spent, keeping inputs with new outcomes, and turning a panic or an
//! oversized allocation into a failure that shows the input and the seed.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::rng::Rng;
use crate::track_alloc::{track_start, track_stop, tracking_installed};

/// Most inputs kept in the corpus; beyond it new outcomes are only counted.
const MAX_CORPUS: usize = 1024;

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
    pub(crate) dict: Vec<Vec<u8>>,
    /// Mutants are cut to this length, so time goes to variety, not size.
    pub(crate) max_len: usize,
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
}

fn hash_of<T: Hash + ?Sized>(v: &T) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}
