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
//!
//! Layout: `runner` holds the [`Fuzzer`] and its loop, `mutate` the
//! byte-level operators, `rng` the generator and `track_alloc` the
//! allocation limit's [`TrackingAlloc`].

mod mutate;
mod rng;
mod runner;
mod track_alloc;

pub use arbitrary;
pub use rng::Rng;
pub use runner::{Fuzzer, Stats};
pub use track_alloc::TrackingAlloc;

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

#[cfg(test)]
mod tests {
    use std::panic::catch_unwind;

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
