//! The node's calls into libc, each behind a safe function: the crate's only `unsafe`.
//!
//! Everything else in the crate is safe Rust (`unsafe_code` is denied in the workspace);
//! a new system call goes here, with a `// SAFETY:` note saying why its arguments are valid.
#![allow(unsafe_code)]

/// Sets glibc malloc's mmap threshold to `bytes`: allocations at least this large get
/// their own mapping, and the threshold no longer moves by itself. A no-op on other
/// C libraries. Called by the binary at start-up (see `main.rs` for why).
pub fn set_mmap_threshold(bytes: libc::c_int) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes no pointers; it only sets an allocator parameter, under
    // malloc's own lock, and rejects a value it does not accept with its return code.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}

/// This process's resource usage (`getrusage(RUSAGE_SELF)`), or `None` if the call fails.
pub(crate) fn rusage_self() -> Option<libc::rusage> {
    // SAFETY: `rusage` is plain integers, so all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to `ru`, which getrusage only writes into.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    Some(ru)
}

/// Fills `buf` with this host's name (`gethostname`), NUL-terminated if it fits;
/// false if the call fails.
pub(crate) fn host_name(buf: &mut [u8]) -> bool {
    // SAFETY: the pointer and length describe `buf`, which gethostname writes at most
    // `len` bytes into.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    rc == 0
}

/// Hands the whole pages inside `buf` back to the kernel (`madvise(MADV_DONTNEED)`),
/// so a freed heap block stops counting in RSS. The bytes of those pages read as zero
/// afterwards; the partial pages at either end are untouched. A no-op off Linux.
pub(crate) fn discard_pages(buf: &mut [u8]) {
    #[cfg(target_os = "linux")]
    {
        static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        // SAFETY: sysconf only reads a system constant.
        let page = *PAGE.get_or_init(|| usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(0));
        if page.is_power_of_two() {
            let start = buf.as_ptr() as usize;
            let first = (start + page - 1) & !(page - 1);
            let last = (start + buf.len()) & !(page - 1);
            if last > first {
                // SAFETY: [first, last) is whole pages inside `buf`, which we borrow
                // exclusively, and any byte value is a valid `u8`. MADV_DONTNEED on
                // private anonymous memory (the heap, where the store's buffers live)
                // only swaps those pages for zero-filled ones on next touch; malloc's
                // own bookkeeping lies outside the range (before `buf`).
                unsafe {
                    libc::madvise(first as *mut libc::c_void, last - first, libc::MADV_DONTNEED);
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

/// The binary's global allocator: the system's (glibc malloc), except for small
/// over-aligned blocks, which come from per-size slabs.
///
/// tokio aligns each task and each socket's I/O registration to 128 bytes (a cache
/// line pair), and glibc serves such a request by carving an aligned block out of one
/// `alignment + 32` bytes larger, leaving the rest as small free chunks that later
/// requests rarely fit: a 256-byte task or registration takes about 430 bytes of heap.
/// With 10,000 idle connections (a task and a registration each) that was 3.6 MiB of
/// holes. Here a block of at most [`SLOT_CLASSES`] × 128 bytes with an alignment above
/// 16 and at most 128 takes a slot of its size rounded up to 128 bytes, in 64 KiB
/// slabs that are 128-byte aligned; freed slots are kept per size for reuse (never
/// returned to the system: the most such blocks ever live at once stay allocated).
pub struct Allocator;

/// Slot size step, and the largest alignment the slabs serve.
const SLOT: usize = 128;
/// Slot sizes: 128, 256, ..., `SLOT_CLASSES` × 128 bytes.
const SLOT_CLASSES: usize = 8;
/// Bytes per slab.
const SLAB: usize = 64 * 1024;

/// A freed slot, linked into its class's free list.
struct FreeSlot {
    next: *mut FreeSlot,
}

/// One slot size: its free slots, and the unused end of its newest slab.
struct Class {
    free: *mut FreeSlot,
    next: *mut u8,
    end: *mut u8,
}

// SAFETY: the pointers are to slab memory owned by the allocator, only ever read or
// written under the class's mutex.
unsafe impl Send for Class {}

static CLASSES: [std::sync::Mutex<Class>; SLOT_CLASSES] = [const {
    std::sync::Mutex::new(Class {
        free: std::ptr::null_mut(),
        next: std::ptr::null_mut(),
        end: std::ptr::null_mut(),
    })
}; SLOT_CLASSES];

/// The slot class serving `layout`, if a slab serves it.
fn slot_class(layout: &std::alloc::Layout) -> Option<usize> {
    let (size, align) = (layout.size(), layout.align());
    if align <= 16 || align > SLOT || size == 0 || size > SLOT * SLOT_CLASSES {
        return None;
    }
    Some((size - 1) / SLOT)
}

/// A slot of class `c`, or null when the system has no memory for a new slab.
fn take_slot(c: usize) -> *mut u8 {
    // The lock cannot be poisoned: nothing under it panics.
    let mut class = CLASSES[c].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !class.free.is_null() {
        let slot = class.free;
        // SAFETY: a free-list entry is a slot this allocator handed out and got back,
        // at least 128 bytes and 128-byte aligned, where `give_slot` wrote a `FreeSlot`.
        class.free = unsafe { (*slot).next };
        return slot.cast();
    }
    let size = (c + 1) * SLOT;
    if (class.end as usize) - (class.next as usize) < size {
        // SAFETY: the layout has a non-zero size and a power-of-two alignment.
        let slab = unsafe { std::alloc::System.alloc(std::alloc::Layout::from_size_align_unchecked(SLAB, SLOT)) };
        if slab.is_null() {
            return slab;
        }
        class.next = slab;
        // SAFETY: one past the end of the slab just allocated.
        class.end = unsafe { slab.add(SLAB) };
    }
    let slot = class.next;
    // SAFETY: `size` bytes from `slot` lie inside the slab (checked above).
    class.next = unsafe { slot.add(size) };
    slot
}

/// Returns a slot of class `c`.
///
/// # Safety
/// `slot` came from [`take_slot`]`(c)` and is no longer used.
unsafe fn give_slot(c: usize, slot: *mut u8) {
    let mut class = CLASSES[c].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let slot = slot.cast::<FreeSlot>();
    // SAFETY: the caller gives up the slot, which is large and aligned enough for a
    // `FreeSlot`.
    unsafe { slot.write(FreeSlot { next: class.free }) };
    class.free = slot;
}

use std::alloc::GlobalAlloc;

// SAFETY: blocks a slab serves are at least their size and 128-byte aligned (slots
// are multiples of 128 bytes in 128-byte aligned slabs), are handed out once until
// given back, and go back to the class their layout maps to, the same one as they
// came from (`dealloc` receives the layout `alloc` did); everything else is the
// system allocator's.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        match slot_class(&layout) {
            Some(c) => take_slot(c),
            // SAFETY: forwarded as received.
            None => unsafe { std::alloc::System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        match slot_class(&layout) {
            Some(c) => {
                let p = take_slot(c);
                if !p.is_null() {
                    // SAFETY: the slot holds at least `layout.size()` bytes.
                    unsafe { p.write_bytes(0, layout.size()) };
                }
                p
            }
            // SAFETY: forwarded as received.
            None => unsafe { std::alloc::System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        match slot_class(&layout) {
            // SAFETY: allocated by `alloc` with this layout, so from this class.
            Some(c) => unsafe { give_slot(c, ptr) },
            // SAFETY: forwarded as received.
            None => unsafe { std::alloc::System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to the alignment, fits
        // an `isize`, and the alignment is the old one, a power of two.
        let new = unsafe { std::alloc::Layout::from_size_align_unchecked(new_size, layout.align()) };
        if slot_class(&layout).is_none() && slot_class(&new).is_none() {
            // SAFETY: forwarded as received; both blocks are the system's.
            return unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new` is a valid non-zero layout (see above).
        let p = unsafe { self.alloc(new) };
        if !p.is_null() {
            // SAFETY: both blocks hold at least the bytes copied, and are distinct.
            unsafe { std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size)) };
            // SAFETY: `ptr` was allocated here with `layout` and is not used again.
            unsafe { self.dealloc(ptr, layout) };
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout};

    use super::*;

    #[test]
    fn over_aligned_blocks_come_from_slots_and_are_reused() {
        let a = Allocator;
        let layout = Layout::from_size_align(200, 128).unwrap();
        // SAFETY: each block is allocated with `layout`, written within its size, and
        // freed once with the same layout.
        unsafe {
            let p = a.alloc(layout);
            let q = a.alloc(layout);
            assert!(!p.is_null() && !q.is_null());
            assert_eq!(p as usize % 128, 0);
            assert_eq!(q as usize % 128, 0);
            assert_ne!(p, q);
            p.write_bytes(0xAB, 200);
            q.write_bytes(0xCD, 200);
            assert_eq!(*p.add(199), 0xAB);
            a.dealloc(p, layout);
            // A freed slot of the class is handed out again.
            let r = a.alloc(layout);
            assert_eq!(r, p);
            a.dealloc(r, layout);
            a.dealloc(q, layout);
        }
    }

    #[test]
    fn realloc_moves_between_slots_and_the_system() {
        let a = Allocator;
        let small = Layout::from_size_align(64, 64).unwrap();
        // SAFETY: as above; each realloc's result replaces the block it was given.
        unsafe {
            let p = a.alloc_zeroed(small);
            assert!((0..64).all(|i| *p.add(i) == 0));
            p.write_bytes(7, 64);
            // Past the largest slot: now the system's.
            let big = a.realloc(p, small, 4096);
            assert_eq!(big as usize % 64, 0);
            assert!((0..64).all(|i| *big.add(i) == 7));
            let big_layout = Layout::from_size_align(4096, 64).unwrap();
            // Back into a slot.
            let back = a.realloc(big, big_layout, 100);
            assert!((0..64).all(|i| *back.add(i) == 7));
            a.dealloc(back, Layout::from_size_align(100, 64).unwrap());
        }
        // Ordinary layouts are the system's.
        assert_eq!(slot_class(&Layout::from_size_align(64, 16).unwrap()), None);
        assert_eq!(slot_class(&Layout::from_size_align(1025, 128).unwrap()), None);
        assert_eq!(slot_class(&Layout::from_size_align(256, 128).unwrap()), Some(1));
    }
}
