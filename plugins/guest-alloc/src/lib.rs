//! A front allocator for the guest plugins: blocks of up to 256 bytes come
//! from a 2 KiB arena in the guest's own static data, everything else from
//! the standard allocator (on `wasm32-wasip2`, wasi-libc's dlmalloc).
//!
//! The point is the memory of an idle connection. The first dlmalloc call
//! writes the top-chunk marker at the far end of the initial heap, which
//! makes one more 4 KiB page resident in every instance (measured: 4.1 KB of
//! an idle LINE connection's 57.4 KB). The few small blocks a connection
//! needs before it goes idle (lifting `connect-info`, a partial frame) fit
//! in the arena, which sits next to the static data the instance touches
//! anyway, so an idle connection never starts dlmalloc. A busy one uses it
//! as usual.
//!
//! Install it in a guest with
//! `#[cfg(target_arch = "wasm32")] #[global_allocator] static ALLOC:
//! guest_alloc::FrontAlloc = guest_alloc::FrontAlloc::new();`. It assumes a
//! single thread, which a guest is (one instance per connection, no wasm
//! threads); keep it off native test builds, whose harness is threaded.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;

/// Block sizes the arena serves; each freed block goes back to its class.
const CLASSES: [usize; 5] = [16, 32, 64, 128, 256];
/// Bytes in the arena.
const ARENA: usize = 2048;

/// The arena's bytes, aligned for any block.
#[repr(C, align(16))]
struct Arena([u8; ARENA]);

/// The arena's bookkeeping, apart from the arena so that no reference to
/// it ever covers blocks in use.
struct Meta {
    /// Bytes of the arena handed out so far (blocks are carved in order).
    used: usize,
    /// Per class, the first free block (its first word links the next);
    /// null when the class has none.
    free: [*mut u8; CLASSES.len()],
}

/// The allocator; see the crate docs.
pub struct FrontAlloc {
    /// Only ever accessed through raw pointers to its blocks.
    arena: UnsafeCell<Arena>,
    meta: UnsafeCell<Meta>,
}

// SAFETY: a guest is single-threaded (see the crate docs), so the state is
// never touched from two threads. The cfg makes that a compile-time fact: on
// any target with threads (native builds, wasm32 with the atomics feature)
// the allocator is not `Sync`, so it cannot be put in a shared static there.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for FrontAlloc {}

impl Default for FrontAlloc {
    fn default() -> Self {
        Self::new()
    }
}

impl FrontAlloc {
    pub const fn new() -> Self {
        FrontAlloc {
            arena: UnsafeCell::new(Arena([0; ARENA])),
            meta: UnsafeCell::new(Meta {
                used: 0,
                free: [std::ptr::null_mut(); CLASSES.len()],
            }),
        }
    }

    /// The arena class for `layout`, if it is small enough.
    fn class(layout: Layout) -> Option<usize> {
        if layout.align() > 16 {
            return None;
        }
        CLASSES.iter().position(|&c| layout.size() <= c)
    }

    /// Whether `ptr` is an arena block.
    fn owns(&self, ptr: *mut u8) -> bool {
        let base = self.arena.get() as usize;
        (base..base + ARENA).contains(&(ptr as usize))
    }

    /// A block of class `class` from the arena, or None when it is full.
    ///
    /// # Safety
    /// No other reference to the state may be live (single thread).
    unsafe fn take(&self, class: usize) -> Option<*mut u8> {
        // SAFETY: exclusive by the caller's contract.
        let meta = unsafe { &mut *self.meta.get() };
        let head = meta.free[class];
        if !head.is_null() {
            // SAFETY: a free block's first word holds the next free block.
            meta.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return Some(head);
        }
        let size = CLASSES[class];
        if ARENA - meta.used < size {
            return None;
        }
        // SAFETY: `used + size <= ARENA`, so the block is inside the arena.
        let block = unsafe { self.arena.get().cast::<u8>().add(meta.used) };
        meta.used += size;
        Some(block)
    }

    /// Puts an arena block of class `class` back on its free list.
    ///
    /// # Safety
    /// `ptr` is an arena block of that class, no longer in use; no other
    /// reference to the state may be live.
    unsafe fn give_back(&self, ptr: *mut u8, class: usize) {
        // SAFETY: exclusive by the caller's contract.
        let meta = unsafe { &mut *self.meta.get() };
        // SAFETY: every block is at least 16 bytes and 16-aligned, room for
        // the link.
        unsafe { ptr.cast::<*mut u8>().write(meta.free[class]) };
        meta.free[class] = ptr;
    }
}

// SAFETY: arena blocks are 16-aligned (`Arena` is, and every class is a
// multiple of 16), at least `layout.size()` long, and handed out once until
// freed; everything else is `System`'s.
unsafe impl GlobalAlloc for FrontAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(class) = Self::class(layout)
            // SAFETY: single thread.
            && let Some(block) = unsafe { self.take(class) }
        {
            return block;
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if let Some(class) = Self::class(layout)
            // SAFETY: single thread.
            && let Some(block) = unsafe { self.take(class) }
        {
            // SAFETY: the block has at least `layout.size()` bytes; a reused
            // one is not zero.
            unsafe { block.write_bytes(0, layout.size()) };
            return block;
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owns(ptr) {
            // An arena block was allocated with a layout of its class, and
            // `dealloc` gets the same layout back.
            if let Some(class) = Self::class(layout) {
                // SAFETY: `ptr` is ours, of this class, and now free.
                unsafe { self.give_back(ptr, class) };
            }
            return;
        }
        // SAFETY: not ours, so `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.owns(ptr) {
            // Large blocks stay with `System`, which may grow them in place.
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees the new size with this alignment is
        // a valid layout.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if Self::class(new).is_some() && Self::class(new) == Self::class(layout) {
            return ptr;
        }
        // SAFETY: `new` is a valid layout of non-zero size (the caller's
        // guarantees).
        let moved = unsafe { self.alloc(new) };
        if !moved.is_null() {
            // SAFETY: both blocks hold at least the smaller size, and are
            // distinct (the old one is still in use).
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    #[test]
    fn small_blocks_come_from_the_arena_and_are_reused_by_class() {
        let a = FrontAlloc::new();
        unsafe {
            let p = a.alloc(layout(20));
            assert!(a.owns(p));
            assert!((p as usize).is_multiple_of(16));
            p.write_bytes(0xab, 20);
            let q = a.alloc(layout(30));
            assert!(a.owns(q) && q != p);
            a.dealloc(p, layout(20));
            // Same class (32): the freed block comes back.
            assert_eq!(a.alloc(layout(17)), p);
            // Zeroed even when reused.
            a.dealloc(p, layout(17));
            let z = a.alloc_zeroed(layout(32));
            assert_eq!(z, p);
            assert!(std::slice::from_raw_parts(z, 32).iter().all(|&b| b == 0));
            a.dealloc(z, layout(32));
            a.dealloc(q, layout(30));
        }
    }

    #[test]
    fn large_or_overaligned_blocks_and_a_full_arena_go_to_system() {
        let a = FrontAlloc::new();
        unsafe {
            let big = a.alloc(layout(257));
            assert!(!a.owns(big));
            a.dealloc(big, layout(257));
            let aligned = Layout::from_size_align(16, 64).unwrap();
            let p = a.alloc(aligned);
            assert!(!a.owns(p) && (p as usize).is_multiple_of(64));
            a.dealloc(p, aligned);
            let blocks: Vec<_> = (0..ARENA / 256).map(|_| a.alloc(layout(256))).collect();
            assert!(blocks.iter().all(|&b| a.owns(b)));
            let spill = a.alloc(layout(16));
            assert!(!a.owns(spill));
            a.dealloc(spill, layout(16));
            for b in blocks {
                a.dealloc(b, layout(256));
            }
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_across_the_arena_and_system() {
        let a = FrontAlloc::new();
        unsafe {
            let p = a.alloc(layout(10));
            for i in 0..10 {
                p.add(i).write(i as u8);
            }
            // Within its class: same block.
            let p = a.realloc(p, layout(10), 16);
            assert!(a.owns(p));
            let p2 = a.realloc(p, layout(16), 100);
            assert!(a.owns(p2) && p2 != p);
            let big = a.realloc(p2, layout(100), 1000);
            assert!(!a.owns(big));
            let small = a.realloc(big, layout(1000), 8);
            assert!(!a.owns(small), "System's blocks stay with System");
            assert_eq!(
                std::slice::from_raw_parts(small, 8),
                &[0, 1, 2, 3, 4, 5, 6, 7]
            );
            a.dealloc(small, layout(8));
        }
    }
}
