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
