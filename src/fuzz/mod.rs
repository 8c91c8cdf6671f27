//! Fuzz targets for every parser a client or a plugin can reach, run as
//! ordinary unit tests with a short budget (see `fuzzkit`): the V2 codec and
//! its commands, whole V2 sessions over a socket, IDENTIFY, the compressed
//! streams, the disk record and metadata decoders with the deferred store
//! that reads them back, the config loader, the HTTP query string and `/mpub` bodies, the plugin
//! host's checks of guest-supplied names, lengths, ids and handles, and the
//! LINE, STOMP and RESP components served by the host over a socket. The
//! guests' parsers are also fuzzed natively in their crates under
//! `plugins/`. `FUZZ_SECS=60 cargo test --lib fuzz::` runs longer;
//! docs/internals.md ("Fuzzing") has the details.

mod compress;
mod config;
mod disk;
mod guests;
mod http;
mod plugin_host;
mod v2;
mod v2_session;

/// Every allocation of the unit-test binary goes through the system
/// allocator via this wrapper, which notes the largest single request made
/// while a fuzz target runs (a few nanoseconds per allocation otherwise).
#[global_allocator]
static ALLOC: fuzzkit::TrackingAlloc = fuzzkit::TrackingAlloc;

/// The harness itself: it must get past a length check to a planted bug, and
/// `max_alloc` must catch a length prefix allocated before it is checked.
/// Panics inside these runs are expected (their messages are captured).
mod canary {
    use std::panic::catch_unwind;

    use fuzzkit::Fuzzer;

    fn length_prefixed(d: &[u8]) -> Option<usize> {
        let rest = d.strip_prefix(b"MSG ")?;
        let raw = rest.get(..4)?;
        Some(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize)
    }

    #[test]
    fn finds_a_bug_behind_a_length_check() {
        let found = catch_unwind(|| {
            Fuzzer::new("canary_planted")
                .seed(b"MSG \x00\x00\x00\x05hello")
                .run(|d| {
                    if let Some(n) = length_prefixed(d) {
                        assert!(n <= 1 << 20, "planted");
                    }
                })
        });
        assert!(found.is_err(), "the harness missed a planted bug");
    }

    #[test]
    fn catches_an_allocation_sized_by_the_input() {
        let found = catch_unwind(|| {
            Fuzzer::new("canary_alloc")
                .seed(b"MSG \x00\x00\x00\x05hello")
                .max_alloc(64 * 1024)
                .run(|d| {
                    let n = length_prefixed(d).unwrap_or(0).min(16 << 20);
                    std::hint::black_box(Vec::<u8>::with_capacity(n)).capacity()
                })
        });
        assert!(found.is_err(), "an unchecked length went unnoticed");
    }
}
