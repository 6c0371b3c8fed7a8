//! The ringcache client library.
#![forbid(unsafe_code)]
