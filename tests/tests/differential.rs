//! Differential tests: every case's raw bytes go to a real memcached and to ringcache (both
//! started with the group's flags, on fresh connections) and the full replies must match after
//! the normalisation described in `ringcache_tests::diff`.
//!
//! Every group runs twice: against one ringcache node (`diff_<group>`) and through node 1 of
//! a 3-node `--replicas 2` ringcache cluster (`diff_<group>_through_cluster`), with each
//! case's keys placed on the other nodes, since a cluster must be indistinguishable from one
//! memcached. Where a cluster legitimately answers otherwise, the case says so
//! (`diverges_in_cluster`) and docs/PROTOCOL.md lists it.
//!
//! Keys are written `$K<name>`: the runner replaces `$K` with a prefix unique to the case, so
//! the cases of a group can share one server pair and run at once. `$B(name)` is the base64 of
//! the same key, `$X(hex)` the base64 of the prefix followed by the bytes `hex` spells. Cases
//! that touch global state (`flush_all`) live in a sequential group.
//!
//! Self-check: `RINGCACHE_DIFF_AGAINST=memcached cargo test -p ringcache-tests --test differential`
//! compares two memcached processes instead (the cluster target becomes a memcached too);
//! every case must then pass.

use ringcache_tests::diff::{assert_group, assert_group_through_cluster, Case, Group, PREFIX_LEN};

/// The flags of most groups (as the brief's memcached: 64 MiB, 1 MiB items, 2 threads).
const FLAGS: &[&str] = &["-m", "64", "-I", "1m", "-t", "2"];

fn c(name: &str) -> Case {
    Case::new(name)
}

/// A classic storage command with its data block.
fn st(cmd: &str, key: &str, flags: &str, exp: &str, data: &str) -> String {
    format!("{cmd} {key} {flags} {exp} {}\r\n{data}\r\n", data.len())
}

fn set(key: &str, data: &str) -> String {
    st("set", key, "0", "0", data)
}

/// A key of exactly `len` bytes once `$K` is replaced.
fn key_of_len(len: usize) -> String {
    format!("$K{}", "a".repeat(len - PREFIX_LEN))
}

fn group(name: &'static str, parallel: bool, cases: Vec<Case>) -> Group {
    Group {
        name,
        flags: FLAGS.to_vec(),
        cases,
        parallel,
    }
}

fn storage() -> Group {
    let big = "x".repeat(500 * 1024);
    let too_big = "y".repeat(1024 * 1024 + 100);
    group(
        "storage",
        true,
        vec![
            c("set_get").send(set("$Ka", "hello")).send("get $Ka\r\n"),
            c("set_flags_max")
                .send(st("set", "$Ka", "4294967295", "0", "x"))
                .send("get $Ka\r\n"),
            c("set_flags_overflow")
                .send(st("set", "$Ka", "4294967296", "0", "x"))
                .send("get $Ka\r\n"),
            c("set_flags_negative")
                .send(st("set", "$Ka", "-1", "0", "x"))
                .send("get $Ka\r\n"),
            c("set_flags_not_number")
                .send(st("set", "$Ka", "abc", "0", "x"))
                .send("get $Ka\r\n"),
            c("set_exptime_not_number")
                .send(st("set", "$Ka", "0", "abc", "x"))
                .send("get $Ka\r\n"),
            c("set_exptime_overflow")
                .send(st("set", "$Ka", "0", "99999999999999999999", "x"))
                .send("get $Ka\r\n"),
            c("set_empty_value").send(set("$Ka", "")).send("get $Ka\r\n"),
            c("set_binary_value")
                .send(b"set $Ka 0 0 8\r\n\x00\x01\xff\r\n\x7fz \r\n".as_slice())
                .send("get $Ka\r\n"),
            c("set_value_looks_like_reply")
                .send(set("$Ka", "END\r\nVALUE x 0 1"))
                .send("get $Ka\r\n"),
            c("set_overwrite")
                .send(set("$Ka", "one"))
                .send(set("$Ka", "second"))
                .send("get $Ka\r\n"),
            c("set_noreply").send("set $Ka 0 0 1 noreply\r\nx\r\nget $Ka\r\n"),
            c("set_noreply_misspelled").send("set $Ka 0 0 1 norepl\r\nx\r\nget $Ka\r\n"),
            c("set_too_many_tokens").send("set $Ka 0 0 1 noreply extra\r\nx\r\nget $Ka\r\n"),
            c("set_too_few_tokens").send("set $Ka 0 0\r\nget $Ka\r\n"),
            c("set_no_tokens").send("set\r\n"),
            c("set_utf8_key").send(set("$Kключ", "v")).send("get $Kключ\r\n"),
            c("add_new").send(st("add", "$Ka", "3", "0", "v")).send("get $Ka\r\n"),
            c("add_existing")
                .send(set("$Ka", "old"))
                .send(st("add", "$Ka", "0", "0", "new"))
                .send("get $Ka\r\n"),
            c("add_noreply").send("add $Ka 0 0 1 noreply\r\nx\r\nadd $Ka 0 0 1 noreply\r\ny\r\nget $Ka\r\n"),
            c("replace_missing")
                .send(st("replace", "$Ka", "0", "0", "v"))
                .send("get $Ka\r\n"),
            c("replace_existing")
                .send(set("$Ka", "old"))
                .send(st("replace", "$Ka", "9", "0", "new"))
                .send("get $Ka\r\n"),
            c("replace_noreply")
                .send(set("$Ka", "a"))
                .send("replace $Ka 0 0 1 noreply\r\nb\r\nget $Ka\r\n"),
            c("append_missing")
                .send(st("append", "$Ka", "0", "0", "v"))
                .send("get $Ka\r\n"),
            c("append_existing_keeps_flags")
                .send(st("set", "$Ka", "7", "0", "ab"))
                .send(st("append", "$Ka", "99", "0", "cd"))
                .send("gets $Ka\r\n"),
            c("append_noreply")
                .send(set("$Ka", "ab"))
                .send("append $Ka 0 0 2 noreply\r\ncd\r\nget $Ka\r\n"),
            c("prepend_missing")
                .send(st("prepend", "$Ka", "0", "0", "v"))
                .send("get $Ka\r\n"),
            c("prepend_existing")
                .send(st("set", "$Ka", "5", "0", "cd"))
                .send(st("prepend", "$Ka", "0", "0", "ab"))
                .send("get $Ka\r\n"),
            c("prepend_noreply")
                .send(set("$Ka", "cd"))
                .send("prepend $Ka 0 0 2 noreply\r\nab\r\nget $Ka\r\n"),
            c("append_prepend_empty")
                .send(set("$Ka", "x"))
                .send(st("append", "$Ka", "0", "0", ""))
                .send(st("prepend", "$Ka", "0", "0", ""))
                .send("get $Ka\r\n"),
            c("cas_missing").send("cas $Ka 0 0 1 123\r\nx\r\n"),
            c("cas_match")
                .send(set("$Ka", "v1"))
                .send("gets $Ka\r\n")
                .send_cas("cas $Ka 0 0 2 $CAS\r\nv2\r\ngets $Ka\r\n"),
            c("cas_mismatch")
                .send(set("$Ka", "v1"))
                .send("gets $Ka\r\n")
                .send_cas("cas $Ka 0 0 2 $CAS1\r\nv2\r\ngets $Ka\r\n"),
            c("cas_noreply")
                .send(set("$Ka", "v1"))
                .send("gets $Ka\r\n")
                .send_cas("cas $Ka 0 0 2 $CAS noreply\r\nv2\r\ngets $Ka\r\n"),
            c("cas_after_update")
                .send(set("$Ka", "v1"))
                .send("gets $Ka\r\n")
                .send_cas(format!("{}cas $Ka 0 0 2 $CAS\r\nv3\r\nget $Ka\r\n", set("$Ka", "v2"))),
            c("cas_twice_second_fails")
                .send(set("$Ka", "v1"))
                .send("gets $Ka\r\n")
                .send_cas("cas $Ka 0 0 2 $CAS\r\nv2\r\ncas $Ka 0 0 2 $CAS\r\nv3\r\nget $Ka\r\n"),
            c("cas_bad_number").send("cas $Ka 0 0 1 abc\r\nx\r\n"),
            c("cas_negative_number").send("cas $Ka 0 0 1 -1\r\nx\r\n"),
            c("cas_missing_token").send("cas $Ka 0 0 1\r\nx\r\n"),
            c("cas_after_delete")
                .send(set("$Ka", "v1"))
                .send("gets $Ka\r\n")
                .send_cas("delete $Ka\r\ncas $Ka 0 0 2 $CAS\r\nv2\r\n"),
            c("set_500k_value").send(set("$Ka", &big)).send("get $Ka\r\n"),
            // Big values are read straight into the store (`connection::land`): every
            // storage command that can take that path, sent whole and in pieces.
            c("set_500k_value_in_pieces")
                .send(format!("get $Ka\r\nset $Ka 5 0 {}\r\n{}", big.len(), &big[..1000]))
                .pause_ms(20)
                .send(&big[1000..300 * 1024])
                .pause_ms(20)
                .send(format!("{}\r\nget $Ka\r\n", &big[300 * 1024..])),
            c("big_add_replace_cas")
                .send(st("add", "$Ka", "1", "0", &big))
                .send(st("add", "$Ka", "2", "0", &big[1..]))
                .send(st("replace", "$Kb", "3", "0", &big))
                .send(st("replace", "$Ka", "4", "0", &big[2..]))
                .send("gets $Ka\r\n")
                .send_cas(format!("cas $Ka 6 0 {} $CAS\r\n{}\r\n", big.len() - 3, &big[3..]))
                .send_cas(format!("cas $Ka 7 0 {} $CAS\r\n{}\r\n", big.len() - 4, &big[4..]))
                .send("get $Ka $Kb\r\n"),
            c("big_set_noreply_and_bad_chunk")
                .send(format!("set $Ka 0 0 {} noreply\r\n{big}\r\n", big.len()))
                .send(format!("set $Kb 0 0 {}\r\n{big}XYget $Kb\r\n", big.len()))
                .send(format!("set $Kb 0 0 {} noreply\r\n{big}\nXget $Kb\r\n", big.len()))
                .send("get $Ka\r\n"),
            c("big_append_prepend")
                .send(set("$Ka", "<>"))
                .send(st("append", "$Ka", "0", "0", &big[..100 * 1024]))
                .send(st("prepend", "$Ka", "0", "0", &big[..200 * 1024]))
                .send("get $Ka\r\n"),
            c("set_value_over_item_size")
                .send(set("$Ka", &too_big))
                .send("get $Ka\r\n"),
            c("set_over_item_size_replaces_nothing")
                .send(set("$Ka", "keep"))
                .send(set("$Ka", &too_big))
                .send("get $Ka\r\n"),
            c("storage_pipeline").send(format!(
                "{}{}{}{}{}get $Ka $Kb\r\n",
                set("$Ka", "1"),
                st("add", "$Kb", "0", "0", "2"),
                st("replace", "$Ka", "0", "0", "3"),
                st("append", "$Ka", "0", "0", "4"),
                st("prepend", "$Kb", "0", "0", "5")
            )),
        ],
    )
}

fn retrieval() -> Group {
    let many_keys: String = (0..100)
        .map(|i| format!(" $Kkey_number_{i:03}_padding_padding"))
        .collect();
    let long_key_250 = key_of_len(250);
    let long_key_251 = key_of_len(251);
    let v100k = "v".repeat(100 * 1024);
    group(
        "retrieval",
        true,
        vec![
            c("get_no_key").send("get\r\n"),
            c("gets_no_key").send("gets\r\n"),
            c("get_miss").send("get $Ka\r\n"),
            c("get_hit").send(set("$Ka", "v")).send("get $Ka\r\n"),
            c("get_flags")
                .send(st("set", "$Ka", "123", "0", "v"))
                .send("get $Ka\r\n"),
            c("get_many_mixed")
                .send(set("$Ka", "1"))
                .send(set("$Kc", "3"))
                .send("get $Ka $Kb $Kc\r\n"),
            c("get_duplicate_keys")
                .send(set("$Ka", "1"))
                .send("get $Ka $Ka $Ka\r\n"),
            c("get_all_miss").send("get $Ka $Kb $Kc $Kd\r\n"),
            c("gets_one").send(set("$Ka", "1")).send("gets $Ka\r\n"),
            c("gets_many")
                .send(set("$Ka", "1"))
                .send(set("$Kb", "2"))
                .send("gets $Ka $Kx $Kb\r\n"),
            c("gets_cas_stable")
                .send(set("$Ka", "1"))
                .send("gets $Ka\r\ngets $Ka\r\n"),
            c("gets_cas_changes_on_set")
                .send(set("$Ka", "1"))
                .send("gets $Ka\r\n")
                .send(set("$Ka", "1"))
                .send("gets $Ka\r\n"),
            c("gets_distinct_keys_distinct_cas")
                .send(set("$Ka", "1"))
                .send(set("$Kb", "1"))
                .send("gets $Ka $Kb\r\n"),
            c("get_100_keys_long_line").send(format!(
                "{}get{many_keys}\r\n",
                set("$Kkey_number_042_padding_padding", "x")
            )),
            c("get_key_250")
                .send(set(&long_key_250, "v"))
                .send(format!("get {long_key_250}\r\n")),
            c("get_key_251").send(format!("get {long_key_251}\r\n")),
            c("get_key_251_among_others")
                .send(set("$Ka", "v"))
                .send(format!("get $Ka {long_key_251} $Ka\r\n"))
                .diverges(
                    "memcached also drops the replies of earlier pipelined commands not yet sent",
                    "STORED\r\nCLIENT_ERROR bad command line format\r\nMN\r\n",
                ),
            c("get_trailing_space").send(set("$Ka", "v")).send("get $Ka \r\n"),
            c("get_many_spaces")
                .send(set("$Ka", "1"))
                .send(set("$Kb", "2"))
                .send("get   $Ka    $Kb  \r\n"),
            c("get_uppercase_command").send("GET $Ka\r\n"),
            c("get_two_large_values")
                .send(set("$Ka", &v100k))
                .send(set("$Kb", &v100k))
                .send("get $Ka $Kb\r\n"),
            c("get_after_delete")
                .send(set("$Ka", "v"))
                .send("delete $Ka\r\nget $Ka\r\n"),
            c("gat_hit").send(set("$Ka", "v")).send("gat 100 $Ka\r\n"),
            c("gat_miss").send("gat 100 $Ka\r\n"),
            c("gat_many")
                .send(set("$Ka", "1"))
                .send(set("$Kc", "3"))
                .send("gat 100 $Ka $Kb $Kc\r\n"),
            c("gats_hit").send(set("$Ka", "v")).send("gats 100 $Ka\r\ngets $Ka\r\n"),
            c("gats_many")
                .send(set("$Ka", "1"))
                .send(set("$Kb", "2"))
                .send("gats 0 $Ka $Kb $Kc\r\n"),
            c("gat_no_key").send("gat 10\r\n"),
            c("gat_no_args").send("gat\r\n"),
            c("gat_bad_exptime").send(set("$Ka", "v")).send("gat abc $Ka\r\n"),
            c("gat_sets_ttl")
                .send(set("$Ka", "v"))
                .send("gat 1000 $Ka\r\nmg $Ka t\r\n"),
            c("gat_zero_clears_ttl")
                .send(st("set", "$Ka", "0", "1000", "v"))
                .send("gat 0 $Ka\r\nmg $Ka t\r\n"),
        ],
    )
}

fn arith() -> Group {
    group(
        "arith",
        true,
        vec![
            c("incr_basic").send(set("$Ka", "10")).send("incr $Ka 5\r\nget $Ka\r\n"),
            c("decr_basic").send(set("$Ka", "10")).send("decr $Ka 3\r\nget $Ka\r\n"),
            c("incr_missing").send("incr $Ka 1\r\n"),
            c("decr_missing").send("decr $Ka 1\r\n"),
            c("incr_zero").send(set("$Ka", "7")).send("incr $Ka 0\r\n"),
            c("incr_wrap_64bit")
                .send(set("$Ka", "18446744073709551615"))
                .send("incr $Ka 1\r\nget $Ka\r\n"),
            c("incr_wrap_64bit_large")
                .send(set("$Ka", "18446744073709551610"))
                .send("incr $Ka 10\r\n"),
            c("incr_max_delta")
                .send(set("$Ka", "0"))
                .send("incr $Ka 18446744073709551615\r\n"),
            c("incr_delta_overflow")
                .send(set("$Ka", "0"))
                .send("incr $Ka 18446744073709551616\r\n"),
            c("decr_below_zero")
                .send(set("$Ka", "5"))
                .send("decr $Ka 10\r\nget $Ka\r\n"),
            c("decr_zero_stays_zero").send(set("$Ka", "0")).send("decr $Ka 1\r\n"),
            c("decr_huge_delta")
                .send(set("$Ka", "5"))
                .send("decr $Ka 18446744073709551615\r\n"),
            c("incr_length_grows")
                .send(set("$Ka", "99"))
                .send("incr $Ka 1\r\nget $Ka\r\n"),
            c("incr_length_grows_a_lot")
                .send(set("$Ka", "1"))
                .send("incr $Ka 18446744073709551614\r\nget $Ka\r\n"),
            c("decr_length_shrinks")
                .send(set("$Ka", "100"))
                .send("decr $Ka 1\r\nget $Ka\r\n"),
            c("decr_shrink_then_incr")
                .send(set("$Ka", "10"))
                .send("decr $Ka 1\r\nincr $Ka 1\r\nget $Ka\r\n"),
            c("incr_non_numeric").send(set("$Ka", "abc")).send("incr $Ka 1\r\n"),
            c("incr_numeric_prefix")
                .send(set("$Ka", "12abc"))
                .send("incr $Ka 1\r\n"),
            c("incr_negative_value").send(set("$Ka", "-5")).send("incr $Ka 1\r\n"),
            c("incr_empty_value").send(set("$Ka", "")).send("incr $Ka 1\r\n"),
            c("incr_value_too_long")
                .send(set("$Ka", "1234567890123456789012345"))
                .send("incr $Ka 1\r\n"),
            c("incr_value_leading_space")
                .send(set("$Ka", " 5"))
                .send("incr $Ka 1\r\n"),
            c("incr_bad_delta").send(set("$Ka", "1")).send("incr $Ka abc\r\n"),
            c("incr_negative_delta").send(set("$Ka", "1")).send("incr $Ka -1\r\n"),
            c("decr_negative_delta").send(set("$Ka", "1")).send("decr $Ka -1\r\n"),
            c("incr_noreply")
                .send(set("$Ka", "1"))
                .send("incr $Ka 5 noreply\r\nget $Ka\r\n"),
            c("decr_noreply")
                .send(set("$Ka", "9"))
                .send("decr $Ka 5 noreply\r\nget $Ka\r\n"),
            c("incr_missing_noreply").send("incr $Ka 5 noreply\r\nget $Ka\r\n"),
            c("incr_preserves_flags")
                .send(st("set", "$Ka", "42", "0", "1"))
                .send("incr $Ka 1\r\nget $Ka\r\n"),
            c("incr_changes_cas")
                .send(set("$Ka", "1"))
                .send("gets $Ka\r\nincr $Ka 1\r\ngets $Ka\r\n"),
            c("incr_no_delta").send(set("$Ka", "1")).send("incr $Ka\r\n"),
            c("incr_no_args").send("incr\r\n"),
            c("incr_after_append")
                .send(set("$Ka", "1"))
                .send(st("append", "$Ka", "0", "0", "0"))
                .send("incr $Ka 1\r\n"),
        ],
    )
}

fn misc() -> Group {
    group(
        "misc",
        true,
        vec![
            c("delete_hit").send(set("$Ka", "v")).send("delete $Ka\r\n"),
            c("delete_miss").send("delete $Ka\r\n"),
            c("delete_noreply")
                .send(set("$Ka", "v"))
                .send("delete $Ka noreply\r\nget $Ka\r\n"),
            c("delete_twice")
                .send(set("$Ka", "v"))
                .send("delete $Ka\r\ndelete $Ka\r\n"),
            c("delete_then_add")
                .send(set("$Ka", "v"))
                .send("delete $Ka\r\n")
                .send(st("add", "$Ka", "0", "0", "w"))
                .send("get $Ka\r\n"),
            c("delete_time_zero").send(set("$Ka", "v")).send("delete $Ka 0\r\n"),
            c("delete_time_nonzero")
                .send(set("$Ka", "v"))
                .send("delete $Ka 10\r\nget $Ka\r\n"),
            c("delete_no_key").send("delete\r\n"),
            c("delete_key_251").send(format!("delete {}\r\n", key_of_len(251))),
            c("touch_hit")
                .send(set("$Ka", "v"))
                .send("touch $Ka 100\r\nmg $Ka t\r\n"),
            c("touch_miss").send("touch $Ka 100\r\n"),
            c("touch_noreply")
                .send(set("$Ka", "v"))
                .send("touch $Ka 100 noreply\r\nmg $Ka t\r\n"),
            c("touch_bad_exptime").send(set("$Ka", "v")).send("touch $Ka abc\r\n"),
            c("touch_no_exptime").send(set("$Ka", "v")).send("touch $Ka\r\n"),
            c("touch_key_251").send(format!("touch {} 10\r\n", key_of_len(251))),
            c("version").send("version\r\n"),
            c("version_trailing_spaces").send("version   \r\n"),
            c("verbosity").send("verbosity 1\r\nverbosity 0\r\n"),
            c("verbosity_noreply").send("verbosity 1 noreply\r\nverbosity 0 noreply\r\n"),
            c("verbosity_no_arg").send("verbosity\r\n"),
            c("quit").send("quit\r\n").closes(),
            c("quit_after_commands")
                .send(set("$Ka", "v"))
                .send("get $Ka\r\nquit\r\n")
                .closes(),
            c("quit_with_argument").send("quit now\r\n").closes(),
            c("stats").send("stats\r\n"),
            c("stats_after_traffic")
                .send(set("$Ka", "v"))
                .send("get $Ka $Kb\r\nstats\r\n"),
            c("mn_alone").send("mn\r\n"),
            c("mn_twice").send("mn\r\nmn\r\n"),
        ],
    )
}

fn meta() -> Group {
    let long_key_251 = key_of_len(251);
    let too_big = "z".repeat(1024 * 1024 + 100);
    group(
        "meta",
        true,
        vec![
            // mg
            c("mg_miss").send("mg $Ka v\r\n"),
            c("mg_miss_no_flags").send("mg $Ka\r\n"),
            c("mg_miss_opaque_key").send("mg $Ka v O123 k\r\n"),
            c("mg_hit_no_flags").send(set("$Ka", "v")).send("mg $Ka\r\n"),
            c("mg_v").send(set("$Ka", "hello")).send("mg $Ka v\r\n"),
            c("mg_all_flags")
                .send(st("set", "$Ka", "5", "0", "hello"))
                .send("mg $Ka s v f t c k O77 h l\r\n"),
            c("mg_flag_order")
                .send(st("set", "$Ka", "5", "0", "hello"))
                .send("mg $Ka O1 k f v s\r\n"),
            c("mg_f_zero").send(set("$Ka", "x")).send("mg $Ka f\r\n"),
            c("mg_s").send(set("$Ka", "12345")).send("mg $Ka s\r\n"),
            c("mg_t_no_ttl").send(set("$Ka", "x")).send("mg $Ka t\r\n"),
            c("mg_t_with_ttl")
                .send(st("set", "$Ka", "0", "100", "x"))
                .send("mg $Ka t\r\n"),
            c("mg_c_matches_gets")
                .send(set("$Ka", "x"))
                .send("mg $Ka c\r\ngets $Ka\r\n"),
            c("mg_h_l").send(set("$Ka", "x")).send("mg $Ka h l\r\nmg $Ka h l\r\n"),
            c("mg_u_no_bump").send(set("$Ka", "x")).send("mg $Ka u v\r\n"),
            c("mg_T_touches")
                .send(set("$Ka", "x"))
                .send("mg $Ka T30 t\r\nmg $Ka t\r\n"),
            c("mg_q_hit_and_miss")
                .send(set("$Ka", "x"))
                .send("mg $Ka v q\r\nmg $Kmiss v q\r\nmn\r\n"),
            c("mg_q_miss_only").send("mg $Ka v q\r\nmg $Kb q\r\nmn\r\n"),
            c("mg_q_hit_no_value").send(set("$Ka", "x")).send("mg $Ka q\r\nmn\r\n"),
            c("mg_k_hit").send(set("$Ka", "x")).send("mg $Ka k v\r\n"),
            c("mg_opaque_31").send(format!("mg $Ka O{}\r\n", "o".repeat(31))),
            c("mg_opaque_32_too_long").send(format!("mg $Ka O{}\r\n", "o".repeat(32))),
            c("mg_base64_key")
                .send(set("$Kb64", "x"))
                .send("mg $B(b64) b v k\r\n")
                .diverges(
                    "k echoes the key in the request's encoding; memcached uses the encoding it was stored with",
                    "STORED\r\nVA 1 k$B(b64) b\r\nx\r\nMN\r\n",
                ),
            c("mg_base64_miss").send("mg $B(none) b v k O5\r\n"),
            c("mg_base64_invalid").send("mg !!!!notbase64 b v\r\n"),
            c("mg_duplicate_flag").send(set("$Ka", "x")).send("mg $Ka v v\r\n"),
            c("mg_unknown_flag").send(set("$Ka", "x")).send("mg $Ka !\r\n"),
            c("mg_bad_token").send(set("$Ka", "x")).send("mg $Ka Tabc\r\n"),
            c("mg_no_key").send("mg\r\n"),
            c("mg_key_251").send(format!("mg {long_key_251} v\r\n")),
            c("mg_key_250")
                .send(set(&key_of_len(250), "x"))
                .send(format!("mg {} v\r\n", key_of_len(250))),
            c("mg_control_char_key").send("mg $Ka\x01b v\r\n"),
            // leases: N (vivify on miss), R (recache), I (invalidate); W/X/Z replies
            c("mg_N_vivify_then_Z").send("mg $Ka N30 c v t\r\nmg $Ka N30 c v t\r\n"),
            c("mg_N_vivify_then_set")
                .send("mg $Ka N30 s\r\n")
                .send("ms $Ka 3\r\nnew\r\nmg $Ka v c\r\n"),
            c("mg_N_vivify_no_value_flag").send("mg $Ka N30\r\nmg $Ka N30\r\n"),
            c("mg_R_recache_win")
                .send(st("set", "$Ka", "0", "10", "old"))
                .send("mg $Ka R30 v t\r\nmg $Ka R30 v t\r\n"),
            c("mg_R_not_due")
                .send(st("set", "$Ka", "0", "100", "old"))
                .send("mg $Ka R30 v t\r\n"),
            c("md_I_then_mg_X")
                .send(set("$Ka", "v"))
                .send("md $Ka I T30\r\nmg $Ka v c\r\nmg $Ka v c\r\n"),
            c("md_I_then_ms_clears")
                .send(set("$Ka", "v"))
                .send("md $Ka I T30\r\nmg $Ka v\r\nms $Ka 3\r\nnew\r\nmg $Ka v\r\n"),
            c("ms_I_current_cas")
                .send(set("$Ka", "v"))
                .send("mg $Ka c\r\n")
                .send_cas("ms $Ka 3 I C$CAS\r\nnew\r\nmg $Ka v c\r\n"),
            c("ms_I_older_cas_invalidates")
                .send(set("$Ka", "v"))
                .send("mg $Ka c\r\n")
                .send_cas("ms $Ka 3 I C$PREVCAS\r\nold\r\nmg $Ka v c\r\nmg $Ka v c\r\n"),
            c("ms_older_cas_without_I")
                .send(set("$Ka", "v"))
                .send("mg $Ka c\r\n")
                .send_cas("ms $Ka 3 C$PREVCAS\r\nold\r\nmg $Ka v\r\n"),
            // ms
            c("ms_basic").send("ms $Ka 2\r\nhi\r\nmg $Ka v\r\n"),
            c("ms_flags_echo").send("ms $Ka 2 F5 T0 c k O1\r\nhi\r\n"),
            c("ms_F_T").send("ms $Ka 2 F9 T100\r\nhi\r\nmg $Ka f t v\r\n"),
            c("ms_empty").send("ms $Ka 0\r\n\r\nmg $Ka v s\r\n"),
            c("ms_invalid_size").send("ms $Ka abc\r\nhi\r\n"),
            c("ms_no_size").send("ms $Ka\r\n"),
            c("ms_negative_size").send("ms $Ka -1\r\n"),
            c("ms_size_too_big_data").send(format!("ms $Ka {}\r\n{too_big}\r\nmg $Ka\r\n", too_big.len())),
            c("ms_size_too_big_drops_the_old_value")
                .send(set("$Ka", "keep"))
                .send(format!("ms $Ka {}\r\n{too_big}\r\nmg $Ka v\r\n", too_big.len())),
            c("ms_bad_data_chunk").send("ms $Ka 2\r\nhello\r\nmg $Ka v\r\n"),
            c("ms_mode_add_missing").send("ms $Ka 1 ME\r\nx\r\nmg $Ka v\r\n"),
            c("ms_mode_add_existing")
                .send(set("$Ka", "v"))
                .send("ms $Ka 1 ME\r\nx\r\nmg $Ka v\r\n"),
            c("ms_mode_replace_missing").send("ms $Ka 1 MR\r\nx\r\n"),
            c("ms_mode_replace_existing")
                .send(set("$Ka", "v"))
                .send("ms $Ka 1 MR\r\nx\r\nmg $Ka v\r\n"),
            c("ms_mode_append")
                .send(set("$Ka", "ab"))
                .send("ms $Ka 2 MA\r\ncd\r\nmg $Ka v\r\n"),
            c("ms_mode_prepend")
                .send(set("$Ka", "ab"))
                .send("ms $Ka 2 MP\r\ncd\r\nmg $Ka v\r\n"),
            c("ms_mode_append_missing").send("ms $Ka 2 MA\r\ncd\r\n"),
            c("ms_mode_append_vivify")
                .send("ms $Ka 2 MA N30\r\ncd\r\nmg $Ka v t\r\n")
                .diverges(
                    "N on ms (autovivify an append miss) as later memcached releases do",
                    "HD\r\nVA 2 t30\r\ncd\r\nMN\r\n",
                ),
            c("ms_mode_set_explicit").send("ms $Ka 1 MS\r\nx\r\nmg $Ka v\r\n"),
            c("ms_mode_lowercase").send("ms $Ka 1 Ms\r\nx\r\nmg $Ka v\r\n"),
            c("ms_mode_invalid").send("ms $Ka 1 MZ\r\nx\r\n"),
            c("ms_C_match")
                .send(set("$Ka", "v"))
                .send("mg $Ka c\r\n")
                .send_cas("ms $Ka 1 C$CAS c\r\nw\r\nmg $Ka v c\r\n"),
            c("ms_C_mismatch")
                .send(set("$Ka", "v"))
                .send("mg $Ka c\r\n")
                .send_cas("ms $Ka 1 C$CAS1\r\nw\r\nmg $Ka v\r\n"),
            c("ms_C_missing").send("ms $Ka 1 C12345\r\nw\r\n"),
            c("ms_E_flag_rejected")
                .send("ms $Ka 1 E987654\r\nw\r\nmg $Ka c\r\ngets $Ka\r\n")
                .diverges(
                    "E (explicit new CAS) as later memcached releases do",
                    "HD\r\nHD c987654\r\nVALUE $Ka 0 1 987654\r\nw\r\nEND\r\nMN\r\n",
                ),
            c("ms_E_below_current_cas")
                .send(set("$Ka", "v"))
                .send("ms $Ka 1 E555\r\nw\r\nmg $Ka c v\r\n")
                .diverges(
                    "E (explicit new CAS) as later memcached releases do",
                    "STORED\r\nHD\r\nVA 1 c555\r\nw\r\nMN\r\n",
                )
                .diverges_in_cluster(
                    "a cluster orders versions by CAS: E must name a newer one (docs/PROTOCOL.md)",
                    "STORED\r\nEX\r\nVA 1 c1\r\nv\r\nMN\r\n",
                ),
            c("ms_q_success_silent").send("ms $Ka 1 q\r\nx\r\nmn\r\nmg $Ka v\r\n"),
            c("ms_q_failure_shown")
                .send(set("$Ka", "v"))
                .send("ms $Ka 1 q ME\r\nx\r\nmn\r\n"),
            c("ms_base64_key").send("ms $B(k) 1 b\r\nx\r\nmg $B(k) b v k\r\nget $Kk\r\n"),
            c("ms_key_251").send(format!("ms {long_key_251} 1\r\nx\r\n")),
            c("ms_opaque").send("ms $Ka 1 O4242 k\r\nx\r\n"),
            // md
            c("md_hit").send(set("$Ka", "v")).send("md $Ka\r\nmg $Ka\r\n"),
            c("md_miss").send("md $Ka\r\n"),
            c("md_q").send(set("$Ka", "v")).send("md $Ka q\r\nmd $Kb q\r\nmn\r\n"),
            c("md_k_O").send(set("$Ka", "v")).send("md $Ka k O9\r\n"),
            c("md_C_match")
                .send(set("$Ka", "v"))
                .send("mg $Ka c\r\n")
                .send_cas("md $Ka C$CAS\r\nmg $Ka\r\n"),
            c("md_C_mismatch")
                .send(set("$Ka", "v"))
                .send("mg $Ka c\r\n")
                .send_cas("md $Ka C$CAS1\r\nmg $Ka\r\n"),
            c("md_x_flag_rejected")
                .send(st("set", "$Ka", "3", "0", "value"))
                .send("md $Ka x\r\nmg $Ka v f s\r\n")
                .diverges(
                    "md x (drop the value, keep the item) as later memcached releases do",
                    "STORED\r\nHD\r\nVA 0 f3 s0\r\n\r\nMN\r\n",
                ),
            c("md_base64").send(set("$Kk", "v")).send("md $B(k) b\r\nget $Kk\r\n"),
            c("md_no_key").send("md\r\n"),
            // ma
            c("ma_incr_default")
                .send(set("$Ka", "5"))
                .send("ma $Ka\r\nmg $Ka v\r\n"),
            c("ma_v").send(set("$Ka", "5")).send("ma $Ka v\r\n"),
            c("ma_decr")
                .send(set("$Ka", "5"))
                .send("ma $Ka MD v\r\nma $Ka M- v\r\n"),
            c("ma_incr_modes")
                .send(set("$Ka", "5"))
                .send("ma $Ka MI v\r\nma $Ka M+ v\r\nma $Ka Mi v\r\n"),
            c("ma_delta").send(set("$Ka", "5")).send("ma $Ka D10 v\r\n"),
            c("ma_miss").send("ma $Ka\r\n"),
            c("ma_miss_q").send("ma $Ka q\r\nmn\r\n"),
            c("ma_q_hit")
                .send(set("$Ka", "1"))
                .send("ma $Ka q\r\nmn\r\nmg $Ka v\r\n"),
            c("ma_vivify").send("ma $Ka N0 J10 v\r\nma $Ka N0 J10 v\r\n"),
            c("ma_vivify_default_initial").send("ma $Ka N0 v\r\n"),
            c("ma_t_c_k_O")
                .send(st("set", "$Ka", "0", "100", "5"))
                .send("ma $Ka t c k O3 v\r\n"),
            c("ma_T_sets_ttl").send(set("$Ka", "5")).send("ma $Ka T100 t\r\n"),
            c("ma_C_mismatch")
                .send(set("$Ka", "5"))
                .send("mg $Ka c\r\n")
                .send_cas("ma $Ka C$CAS1 v\r\n"),
            c("ma_C_match")
                .send(set("$Ka", "5"))
                .send("mg $Ka c\r\n")
                .send_cas("ma $Ka C$CAS v c\r\n"),
            c("ma_E_flag_rejected")
                .send(set("$Ka", "5"))
                .send("ma $Ka E555 c\r\nmg $Ka c\r\n")
                .diverges(
                    "E (explicit new CAS) as later memcached releases do",
                    "STORED\r\nHD c555\r\nHD c555\r\nMN\r\n",
                )
                .diverges_in_cluster(
                    "a cluster orders versions by CAS: E must name a newer one (docs/PROTOCOL.md)",
                    "STORED\r\nEX\r\nHD c1\r\nMN\r\n",
                ),
            c("ma_non_numeric").send(set("$Ka", "abc")).send("ma $Ka\r\n"),
            c("ma_bad_delta").send(set("$Ka", "5")).send("ma $Ka Dabc\r\n"),
            c("ma_wrap")
                .send(set("$Ka", "18446744073709551615"))
                .send("ma $Ka v\r\n"),
            c("ma_decr_below_zero")
                .send(set("$Ka", "3"))
                .send("ma $Ka MD D10 v\r\n"),
            c("ma_invalid_mode").send(set("$Ka", "5")).send("ma $Ka MX\r\n"),
            c("ma_length_grows")
                .send(set("$Ka", "99"))
                .send("ma $Ka v\r\nget $Ka\r\n"),
            c("ma_base64").send(set("$Kn", "1")).send("ma $B(n) b v k\r\n"),
            // me, mn, mixing
            c("me_hit").send(set("$Ka", "v")).send("me $Ka\r\n"),
            c("me_miss").send("me $Ka\r\n"),
            c("me_no_key").send("me\r\n"),
            c("mn_after_quiet")
                .send(set("$Ka", "v"))
                .send("mg $Ka q v\r\nmg $Kb q v\r\nmd $Kc q\r\nmn\r\n"),
            c("meta_pipeline_opaques")
                .send("ms $Ka 1 O1\r\nx\r\nmg $Ka v O2\r\nma $Kn N0 J1 O3 v\r\nmd $Ka O4\r\nmg $Ka O5\r\nmn\r\n"),
            c("meta_and_classic_interleaved")
                .send("ms $Ka 1 F3\r\nx\r\nget $Ka\r\nset $Ka 0 0 1\r\ny\r\nmg $Ka v f\r\n"),
            c("meta_unknown_command").send("mz $Ka\r\n"),
        ],
    )
}

fn errors() -> Group {
    let long_line = "a".repeat(3000);
    let many_short: String = (0..250).map(|i| format!(" $Kk{i:03}")).collect();
    group(
        "errors",
        true,
        vec![
            c("unknown_command").send("foo\r\n"),
            c("unknown_command_with_args").send("foo bar baz\r\n"),
            c("empty_line").send("\r\n"),
            c("bare_newline_line").send("\n"),
            c("only_spaces").send("   \r\n"),
            c("leading_spaces").send(set("$Ka", "v")).send("   get $Ka\r\n"),
            c("tab_separator").send("get\t$Ka\r\n"),
            c("bare_newline_commands").send("set $Ka 0 0 1\nx\r\nget $Ka\n"),
            c("bare_newline_after_data").send("set $Ka 0 0 1\r\nx\nget $Ka\r\n"),
            c("extra_cr_in_key")
                .send(set("$Ka", "v"))
                .send("get $Ka\r\r\n")
                .diverges(
                    "keys with control characters are refused",
                    "STORED\r\nCLIENT_ERROR bad command line format\r\nMN\r\n",
                ),
            c("several_spaces_between_tokens").send("set  $Ka  0  0  1\r\nx\r\nget $Ka\r\n"),
            c("data_block_too_long").send("set $Ka 0 0 3\r\nabcde\r\nget $Ka\r\n"),
            c("data_block_too_short").send("set $Ka 0 0 5\r\nabc\r\nget $Ka\r\n"),
            c("data_block_missing_crlf").send("set $Ka 0 0 3\r\nabcXYget $Ka\r\n"),
            c("length_not_number").send("set $Ka 0 0 abc\r\nget $Ka\r\n"),
            c("length_negative").send("set $Ka 0 0 -1\r\nget $Ka\r\n"),
            c("length_overflow").send("set $Ka 0 0 99999999999999999999\r\nget $Ka\r\n"),
            c("length_over_int_max").send("set $Ka 0 0 4294967295\r\nget $Ka\r\n"),
            c("length_with_plus").send("set $Ka 0 0 +1\r\nx\r\nget $Ka\r\n"),
            c("bad_length_noreply").send("set $Ka 0 0 abc noreply\r\nget $Ka\r\n"),
            c("key_250_set")
                .send(set(&key_of_len(250), "v"))
                .send(format!("get {}\r\n", key_of_len(250))),
            c("key_251_set").send(set(&key_of_len(251), "v")),
            c("key_251_add").send(st("add", &key_of_len(251), "0", "0", "v")),
            c("key_251_incr").send(format!("incr {} 1\r\n", key_of_len(251))),
            c("key_3000_set").send(format!("set $K{long_line} 0 0 1\r\nx\r\n")),
            c("key_control_char_set")
                .send(b"set $Ka\x01b 0 0 1\r\nx\r\nget $Ka\x01b\r\n".as_slice())
                .diverges(
                    "keys with control characters are refused",
                    "CLIENT_ERROR bad command line format\r\nERROR\r\nCLIENT_ERROR bad command line format\r\nMN\r\n",
                ),
            c("key_del_char_get").send(b"get $Ka\x7fb\r\n".as_slice()).diverges(
                "keys with control characters are refused",
                "CLIENT_ERROR bad command line format\r\nMN\r\n",
            ),
            c("key_nul_byte_get").send(b"get $Ka\x00b\r\n".as_slice()),
            c("line_too_long_closes").send(&long_line).closes(),
            c("line_too_long_get_is_kept")
                .send(set("$Kk001", "x"))
                .send(format!("get{many_short}"))
                .pause_ms(50)
                .send(" $Klast\r\n"),
            c("get_very_long_line_in_one_write")
                .send(set("$Kk249", "x"))
                .send(format!("get{many_short}\r\n")),
            c("line_2048_then_newline").send(format!("{}\r\n", "b".repeat(2040))),
            c("noreply_on_error").send("set $Ka abc 0 1 noreply\r\nx\r\n"),
            c("incr_too_many_tokens")
                .send(set("$Ka", "1"))
                .send("incr $Ka 1 noreply extra\r\n"),
            c("delete_too_many_tokens")
                .send(set("$Ka", "1"))
                .send("delete $Ka 0 noreply extra\r\nget $Ka\r\n"),
            c("get_many_tokens_24_plus")
                .send(set("$Kk010", "x"))
                .send(format!("gets{}\r\n", &many_short[..many_short.len() / 5])),
            c("error_then_valid")
                .send("bogus\r\n")
                .send(set("$Ka", "v"))
                .send("get $Ka\r\n"),
            c("verbosity_bad_arg").send("verbosity abc\r\n"),
            c("cr_only_line_end").send("get $Ka\r").pause_ms(20).send("\n"),
        ],
    )
}

fn framing() -> Group {
    let fifty_sets: String = (0..50).map(|i| set(&format!("$Kp{i}"), &format!("value{i}"))).collect();
    let fifty_gets: String = (0..50).map(|i| format!("get $Kp{i}\r\n")).collect();
    let thousand_gets = "get $Kmiss\r\n".repeat(1000);
    let hundred_noreply: String = (0..100)
        .map(|i| format!("set $Kn{i} 0 0 1 noreply\r\n{}\r\n", i % 10))
        .collect();
    let v200k = "w".repeat(200 * 1024);
    let mixed = format!(
        "{}get $Ka\r\nincr $Ka 1\r\nmg $Ka v\r\ndelete $Ka\r\nms $Kb 2 T0\r\nhi\r\nmg $Kb v\r\nversion\r\nmn\r\n",
        set("$Ka", "1")
    );
    group(
        "framing",
        true,
        vec![
            c("pipeline_50_sets_50_gets").send(format!("{fifty_sets}{fifty_gets}")),
            c("pipeline_mixed").send(&mixed),
            c("pipeline_1000_gets").send(&thousand_gets),
            c("pipeline_noreply_then_get").send(format!("{hundred_noreply}get $Kn0 $Kn99\r\n")),
            c("split_set_bytewise").split(format!("{}get $Ka\r\n", set("$Ka", "hello")), 1, 2),
            c("split_meta_bytewise").split("ms $Ka 3 T0 F1\r\nabc\r\nmg $Ka v f\r\n", 1, 2),
            c("split_before_lf")
                .send("set $Ka 0 0 1\r")
                .pause_ms(20)
                .send("\nx\r")
                .pause_ms(20)
                .send("\nget $Ka\r\n"),
            c("split_inside_data")
                .send("set $Ka 0 0 10\r\n01234")
                .pause_ms(20)
                .send("56789\r\nget $Ka\r\n"),
            c("split_inside_key").send("get $K").pause_ms(20).send("a\r\n"),
            c("split_large_value").split(format!("{}get $Ka\r\n", set("$Ka", &v200k)), 30_000, 5),
            c("split_mixed_7_bytes").split(&mixed, 7, 0),
            c("split_get_response_many").split(format!("{fifty_sets}{fifty_gets}"), 64, 0),
            c("pipeline_quit_in_middle")
                .send(format!("{}get $Ka\r\nquit\r\nget $Ka\r\n", set("$Ka", "v")))
                .closes(),
        ],
    )
}

fn ttl() -> Group {
    group(
        "ttl",
        true,
        vec![
            c("set_negative_exptime")
                .send(st("set", "$Ka", "0", "-1", "v"))
                .send("get $Ka\r\n"),
            c("add_after_negative_exptime")
                .send(st("set", "$Ka", "0", "-1", "v"))
                .send(st("add", "$Ka", "0", "0", "w"))
                .send("get $Ka\r\n"),
            c("touch_negative")
                .send(set("$Ka", "v"))
                .send("touch $Ka -1\r\nget $Ka\r\n"),
            c("gat_negative")
                .send(set("$Ka", "v"))
                .send("gat -1 $Ka\r\nget $Ka\r\n"),
            c("ms_T_negative").send("ms $Ka 1 T-1\r\nx\r\nmg $Ka v\r\n"),
            c("absolute_exptime_past")
                .send(st("set", "$Ka", "0", "1000000000", "v"))
                .send("get $Ka\r\n"),
            c("exptime_30_days_is_relative")
                .send(st("set", "$Ka", "0", "2592000", "v"))
                .send("get $Ka\r\n"),
            c("exptime_30_days_plus_1_is_absolute")
                .send(st("set", "$Ka", "0", "2592001", "v"))
                .send("get $Ka\r\n"),
            c("expires_after_1s")
                .send(st("set", "$Ka", "0", "1", "v"))
                .send("get $Ka\r\n")
                .sync()
                .pause_ms(2200)
                .send("get $Ka\r\n"),
            c("ms_T1_expires")
                .send("ms $Ka 1 T1\r\nx\r\nmg $Ka v\r\n")
                .sync()
                .pause_ms(2200)
                .send("mg $Ka v\r\n"),
            c("touch_extends")
                .send(st("set", "$Ka", "0", "1", "v"))
                .send("touch $Ka 100\r\n")
                .sync()
                .pause_ms(2200)
                .send("get $Ka\r\n"),
            c("gat_extends")
                .send(st("set", "$Ka", "0", "1", "v"))
                .send("gat 100 $Ka\r\n")
                .sync()
                .pause_ms(2200)
                .send("get $Ka\r\n"),
            c("expired_add_succeeds")
                .send(st("set", "$Ka", "0", "1", "v"))
                .sync()
                .pause_ms(2200)
                .send(st("add", "$Ka", "0", "0", "w"))
                .send("get $Ka\r\n"),
            c("expired_incr_not_found")
                .send(st("set", "$Ka", "0", "1", "5"))
                .sync()
                .pause_ms(2200)
                .send("incr $Ka 1\r\n"),
        ],
    )
}

fn flush() -> Group {
    group(
        "flush",
        false,
        vec![
            c("flush_all").send(set("$Ka", "v")).send("flush_all\r\nget $Ka\r\n"),
            c("flush_all_noreply")
                .send(set("$Ka", "v"))
                .send("flush_all noreply\r\nget $Ka\r\n"),
            c("flush_all_zero")
                .send(set("$Ka", "v"))
                .send("flush_all 0\r\nget $Ka\r\n"),
            c("flush_all_bad_arg")
                .send(set("$Ka", "v"))
                .send("flush_all abc\r\nget $Ka\r\n"),
            c("flush_all_negative")
                .send(set("$Ka", "v"))
                .send("flush_all -1\r\nget $Ka\r\n"),
            c("flush_all_too_many_args")
                .send(set("$Ka", "v"))
                .send("flush_all 0 noreply extra\r\nget $Ka\r\n"),
            c("flush_then_add")
                .send(set("$Ka", "v"))
                .send("flush_all\r\n")
                .send(st("add", "$Ka", "0", "0", "w"))
                .send("get $Ka\r\n"),
            c("flush_then_meta").send("ms $Ka 1\r\nx\r\nflush_all\r\nmg $Ka v\r\nms $Ka 1\r\ny\r\nmg $Ka v\r\n"),
            c("flush_all_delayed")
                .send(set("$Ka", "v"))
                .send("flush_all 2\r\nget $Ka\r\n")
                .sync()
                .pause_ms(3200)
                .send("get $Ka\r\n"),
            c("flush_all_delayed_noreply")
                .send(set("$Ka", "v"))
                .send("flush_all 2 noreply\r\nget $Ka\r\n")
                .sync()
                .pause_ms(3200)
                .send("get $Ka\r\n"),
        ],
    )
}

/// Hex of a key's bytes after the prefix, for `$X(..)`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Keys holding any byte, sent base64-encoded with the meta `b` flag: for each byte value
/// `b` the key `x<b>y`, then keys made of spaces, CR, LF and NUL, the longest key `b`
/// allows, and several such keys in one pipeline. (memcached 1.6.18 drops the key's
/// "binary" mark when `ma` replaces the item, after which `k` echoes the raw bytes, so the
/// cases never ask for `k` after an `ma` that autovivifies or changes the value's length,
/// nor after an append.)
fn binary_keys() -> Group {
    let mut cases = Vec::new();
    for b in 0..=255u8 {
        let k = format!("$X({})", hex(&[b'x', b, b'y']));
        let mut req = format!(
            "ms {k} 2 b F{b} T0\r\n10\r\nmg {k} b v k f\r\nmg {k} b s c k t\r\nma {k} b v\r\nma {k} b MD v k\r\n"
        )
        .into_bytes();
        // The same key as a classic one where memcached's classic syntax allows it (no
        // space or control byte; those are the byte values `b` exists for).
        if (0x21..0x7f).contains(&b) || b >= 0x80 {
            req.extend_from_slice(b"get $Kx");
            req.push(b);
            req.extend_from_slice(b"y\r\n");
        }
        req.extend_from_slice(
            format!("md {k} b k\r\nmg {k} b v k\r\nmd {k} b q\r\nma {k} b N0 J3 v k\r\nmg {k} b v s\r\n").as_bytes(),
        );
        cases.push(c(&format!("b64_key_byte_{b:02x}")).send(req));
    }
    let special: &[(&str, &[u8])] = &[
        ("space", b"a b"),
        ("only_space", b" "),
        ("crlf", b"\r\n"),
        ("lf_then_command", b"\nget x\r\n"),
        ("nul", b"\0"),
        ("nuls", b"\0\0\0\0"),
        ("space_cr_lf_nul", b" \r\n\0 \r\n\0"),
        ("looks_like_a_reply", b"x\r\nVALUE y 0 1\r\nz\r\nEND"),
    ];
    for (name, key) in special {
        let k = format!("$X({})", hex(key));
        cases.push(c(&format!("b64_key_{name}")).send(format!(
            "ms {k} 3 b F7 c k\r\nabc\r\nmg {k} b v k f s\r\nms {k} 2 b MA\r\nde\r\nmg {k} b v s f\r\nmd {k} b k\r\nmg {k} b v k O1\r\nma {k} b\r\n"
        )));
    }
    let low: Vec<u8> = (0..=180u8).collect();
    let high: Vec<u8> = (181..=255u8).collect();
    cases.extend([
        c("b64_keys_every_byte_in_two_keys").send(format!(
            "ms $X({lo}) 1 b\r\nL\r\nms $X({hi}) 1 b\r\nH\r\nmg $X({lo}) b v k\r\nmg $X({hi}) b v k\r\nmd $X({lo}) b\r\nmd $X({hi}) b\r\nmg $X({lo}) b v\r\nmg $X({hi}) b v\r\n",
            lo = hex(&low),
            hi = hex(&high)
        )),
        // 186 bytes encode to 248 characters; 187 bytes to 252, over the 250 a key token may have.
        c("b64_key_186_bytes").send(format!(
            "ms $X({k}) 1 b\r\nz\r\nmg $X({k}) b v s\r\n",
            k = hex(&[0xfe; 186 - PREFIX_LEN])
        )),
        c("b64_key_187_bytes").send(format!(
            "ms $X({k}) 1 b\r\nz\r\nmg $X({k}) b v s\r\n",
            k = hex(&[0xfe; 187 - PREFIX_LEN])
        )),
        c("b64_keys_pipelined").send({
            let keys: Vec<String> = (0..16u8).map(|i| format!("$X({})", hex(&[b' ', i, b'\r', b'\n', i]))).collect();
            let mut r = String::new();
            for (i, k) in keys.iter().enumerate() {
                r.push_str(&format!("ms {k} 2 b F{i} q\r\nv{}\r\n", i % 10));
            }
            for k in &keys {
                r.push_str(&format!("mg {k} b v k f q\r\n"));
            }
            r.push_str("mn\r\n");
            for k in keys.iter().step_by(2) {
                r.push_str(&format!("md {k} b q\r\n"));
            }
            for k in &keys {
                r.push_str(&format!("mg {k} b k q\r\nmg {k} b s\r\n"));
            }
            r
        }),
        c("b64_key_quiet_miss_then_hit")
            .send("mg $X(000d0a) b v q\r\nms $X(000d0a) 1 b q\r\nx\r\nmg $X(000d0a) b v q k\r\nmn\r\n"),
        c("b64_key_me").send("ms $X(20200a) 1 b\r\nx\r\nme $X(20200a) b\r\n"),
        c("b64_key_plain_text_classic_get").send("ms $B(plain) 1 b\r\nz\r\nget $Kplain\r\nmd $B(plain) b\r\nget $Kplain\r\n"),
        c("b64_invalid_one_pad_short").send("mg YQ= b v\r\n"),
        c("b64_invalid_only_padding").send("mg ==== b v\r\n"),
        c("b64_unpadded").send("mg YQ b v\r\n"),
        c("b64_invalid_on_ms").send("ms !!!! 1 b\r\nx\r\nmd ???? b\r\nma **** b\r\n"),
    ]);
    group("binary_keys", true, cases)
}

fn all_groups() -> Vec<Group> {
    vec![
        storage(),
        retrieval(),
        arith(),
        misc(),
        meta(),
        errors(),
        framing(),
        ttl(),
        flush(),
        binary_keys(),
    ]
}

#[test]
fn case_table_is_complete() {
    let groups = all_groups();
    let total: usize = groups.iter().map(|g| g.cases.len()).sum();
    let mut names = std::collections::HashSet::new();
    for g in &groups {
        for case in &g.cases {
            assert!(names.insert(case.name.clone()), "duplicate case name {}", case.name);
            assert!(!case.steps.is_empty(), "case {} sends nothing", case.name);
        }
        println!("group {:<10} {:>3} cases  flags {:?}", g.name, g.cases.len(), g.flags);
    }
    println!("total: {total} differential cases");
    assert!(
        total >= 180,
        "only {total} differential cases; the suite promises at least 180"
    );
}

/// Each group as two tests: against one node, and through node 1 of a 3-node cluster.
macro_rules! on_a_node_and_through_a_cluster {
    ($($group:ident: $node:ident, $cluster:ident;)*) => {$(
        #[test]
        fn $node() {
            assert_group(&$group());
        }

        #[test]
        fn $cluster() {
            assert_group_through_cluster(&$group());
        }
    )*};
}

on_a_node_and_through_a_cluster! {
    storage: diff_storage, diff_storage_through_cluster;
    retrieval: diff_retrieval, diff_retrieval_through_cluster;
    arith: diff_arith, diff_arith_through_cluster;
    misc: diff_misc, diff_misc_through_cluster;
    meta: diff_meta, diff_meta_through_cluster;
    errors: diff_errors, diff_errors_through_cluster;
    framing: diff_framing, diff_framing_through_cluster;
    ttl: diff_ttl, diff_ttl_through_cluster;
    flush: diff_flush, diff_flush_through_cluster;
    binary_keys: diff_binary_keys, diff_binary_keys_through_cluster;
}
