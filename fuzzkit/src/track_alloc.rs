//! Allocation tracking for `Fuzzer::max_alloc`: a global allocator that
//! forwards to the system one and notes, per thread, the largest single
//! request made while a target runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

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

pub(crate) fn track_start() {
    TRACK.with(|t| t.set((true, 0)));
}

pub(crate) fn track_stop() -> usize {
    TRACK.with(|t| {
        let (_, peak) = t.get();
        t.set((false, 0));
        peak
    })
}

pub(crate) fn tracking_installed() -> bool {
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
