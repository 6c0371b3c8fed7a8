//! The harness's calls into libc, each behind a safe function: the crate's only `unsafe`.
#![allow(unsafe_code)]

/// Whether this process runs as root (effective uid 0): memcached then needs `-u root`,
/// and the partition test needs it for network namespaces.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Sends signal `sig` to process `pid` (`kill(2)`).
pub(crate) fn kill(pid: libc::pid_t, sig: libc::c_int) -> std::io::Result<()> {
    // SAFETY: kill takes no pointers; a bad pid or signal is reported through its return
    // code. Callers pass a pid they spawned and have not reaped, so it cannot have been reused.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
