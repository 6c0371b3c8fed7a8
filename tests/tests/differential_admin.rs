//! Differential cases for the administrative commands real clients send (pymemcache's
//! `stats("cachedump", ...)` and `cache_memlimit`): the same bytes to a real memcached and
//! to ringcache, full replies compared (see `ringcache_tests::diff`).
//!
//! The group is sequential and stores no item: `cache_memlimit` changes the whole
//! server, and memcached's `stats cachedump` lists the items of a class once they have
//! aged into its cold LRU (ringcache has no slab classes and always answers `END`), so
//! only an empty server's replies are comparable. The limits the cases set are read
//! back by `tests/compat.rs` (`stats settings` values are normalised away here).
//!
//! Self-check: `RINGCACHE_DIFF_AGAINST=memcached cargo test -p ringcache-tests --test
//! differential_admin` compares two memcached processes instead.

use ringcache_tests::diff::{assert_group, Case, Group};

fn c(name: &str) -> Case {
    Case::new(name)
}

fn admin() -> Group {
    Group {
        name: "admin",
        flags: vec!["-m", "64", "-I", "1m", "-t", "2"],
        parallel: false,
        cases: vec![
            // stats cachedump <class> <limit>
            c("cachedump_empty_class").send("stats cachedump 1 1\r\n"),
            c("cachedump_class_zero").send("stats cachedump 0 0\r\n"),
            c("cachedump_last_class").send("stats cachedump 63 100\r\n"),
            c("cachedump_extra_tokens").send("stats cachedump 1 1 1\r\n"),
            c("cachedump_plus_and_zeros").send("stats cachedump 01 +1\r\n"),
            c("cachedump_class_truncated").send("stats cachedump 4294967297 1\r\n"),
            c("cachedump_no_args").send("stats cachedump\r\n"),
            c("cachedump_one_arg").send("stats cachedump 1\r\n"),
            c("cachedump_not_numbers").send("stats cachedump x y\r\n"),
            c("cachedump_negative_class").send("stats cachedump -1 1\r\n"),
            c("cachedump_negative_limit").send("stats cachedump 63 -1\r\n"),
            c("cachedump_trailing_junk").send("stats cachedump 1 1x\r\n"),
            c("cachedump_class_64").send("stats cachedump 64 1\r\n"),
            c("cachedump_class_100").send("stats cachedump 100 1\r\n"),
            c("cachedump_then_more").send("stats cachedump 1 1\r\nversion\r\n"),
            // cache_memlimit <MiB> [noreply]
            c("memlimit_shrink").send("cache_memlimit 50\r\n"),
            c("memlimit_minimum").send("cache_memlimit 8\r\n"),
            c("memlimit_grow").send("cache_memlimit 128\r\n"),
            c("memlimit_double_space").send("cache_memlimit  64\r\n"),
            c("memlimit_plus").send("cache_memlimit +64\r\n"),
            c("memlimit_junk_second_token").send("cache_memlimit 64 x\r\n"),
            c("memlimit_noreply").send("cache_memlimit 64 noreply\r\n"),
            c("memlimit_largest").send("cache_memlimit 1000000000\r\n"),
            c("memlimit_back_to_64").send("cache_memlimit 64\r\n"),
            c("memlimit_too_small").send("cache_memlimit 7\r\n"),
            c("memlimit_zero").send("cache_memlimit 0\r\n"),
            c("memlimit_truncated_to_zero").send("cache_memlimit 4294967296\r\n"),
            c("memlimit_too_small_noreply").send("cache_memlimit 7 noreply\r\nversion\r\n"),
            c("memlimit_bytes_not_megabytes").send("cache_memlimit 1000000001\r\n"),
            c("memlimit_no_arg").send("cache_memlimit\r\n"),
            c("memlimit_three_args").send("cache_memlimit 64 1 2\r\n"),
            c("memlimit_not_number").send("cache_memlimit x\r\n"),
            c("memlimit_not_number_noreply").send("cache_memlimit x noreply\r\nversion\r\n"),
            c("memlimit_negative").send("cache_memlimit -1\r\n"),
            c("memlimit_hex").send("cache_memlimit 0x10\r\n"),
            c("memlimit_trailing_junk").send("cache_memlimit 64x\r\n"),
            c("memlimit_overflow").send("cache_memlimit 99999999999999999999\r\n"),
            c("memlimit_upper_case").send("CACHE_MEMLIMIT 64\r\n"),
            c("memlimit_then_store").send("cache_memlimit 16\r\nset $Ka 0 0 1\r\nx\r\nget $Ka\r\ndelete $Ka\r\n"),
            c("memlimit_restore").send("cache_memlimit 64\r\n"),
        ],
    }
}

#[test]
fn diff_admin() {
    assert_group(&admin());
}
