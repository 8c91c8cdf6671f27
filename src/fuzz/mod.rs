//! Fuzz targets for every parser a client or a plugin can reach, run as
//! ordinary unit tests with a short budget (see `fuzzkit`): the V2 codec and
//! its commands, IDENTIFY, the compressed streams, the disk record and
//! metadata decoders with the deferred store that reads them back, the
//! config loader, and the plugin host's checks of guest-supplied names,
//! lengths, ids and handles. The guests' own parsers (LINE, STOMP, RESP) are
//! fuzzed in their crates under `plugins/`. `FUZZ_SECS=60 cargo test --lib
//! fuzz::` runs longer; docs/internals.md ("Fuzzing") has the details.

mod compress;
mod config;
mod disk;
mod plugin_host;
mod v2;

/// Every allocation of the unit-test binary goes through the system
/// allocator via this wrapper, which notes the largest single request made
/// while a fuzz target runs (a few nanoseconds per allocation otherwise).
#[global_allocator]
static ALLOC: fuzzkit::TrackingAlloc = fuzzkit::TrackingAlloc;
