//! A counting global allocator: the decoders must reject absurd sizes rather than
//! allocate them, so each target runs its decoder "armed" and then checks the largest
//! single allocation and the total bytes allocated during the call.
//!
//! This is the crate's only `unsafe`: `GlobalAlloc` is an unsafe trait. Every method
//! delegates to [`System`] unchanged and only updates two counters.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Wraps the system allocator with counters.
pub struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);
static TOTAL: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only the fuzzing thread's allocations count (the runner is single-threaded;
    /// this keeps any other thread from polluting a measurement).
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn record(size: usize) {
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        LARGEST.fetch_max(size, Relaxed);
        TOTAL.fetch_add(size, Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` with the caller's arguments; the counters
// do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// What a measured call allocated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// The largest single allocation (or reallocation target) in bytes.
    pub largest: usize,
    /// The sum of all allocation sizes in bytes.
    pub total: usize,
}

/// Runs `f` with allocation counting on and returns its result and usage.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Usage) {
    LARGEST.store(0, Relaxed);
    TOTAL.store(0, Relaxed);
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    let usage = Usage {
        largest: LARGEST.load(Relaxed),
        total: TOTAL.load(Relaxed),
    };
    (out, usage)
}

/// Fails when `usage` passes the bounds.
pub fn check(what: &str, usage: Usage, largest: usize, total: usize) -> Result<(), String> {
    if usage.largest > largest || usage.total > total {
        return Err(format!(
            "{what} allocated {} bytes at once / {} in total (bounds {largest} / {total})",
            usage.largest, usage.total
        ));
    }
    Ok(())
}
