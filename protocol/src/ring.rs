//! Key placement on a consistent-hash ring.
