//! The structure-aware mutator: valid inputs (a target's seeds and the corpus grown
//! from them) are changed by a stack of 1 to 8 edits that hostile or broken peers
//! produce: bit flips, interesting bytes (`\r`, `\n`, NUL, space, DEL, 0xff, bincode's
//! varint markers), cut/duplicate/delete ranges, splices of another input, dictionary
//! tokens (command words, flags, `noreply`, `HTTP/1.1`), and edits of the *numbers* in
//! the text (a length field becomes -1, 2^31-1, 2^32-1, 2^64, or its value ± 1).

use crate::rng::Rng;

/// Inputs never grow past this (the decoders' interesting limits are all smaller,
/// except the 1 MiB get line, which the unit tests cover).
pub const MAX_INPUT: usize = 64 * 1024;

/// Bytes that matter to the text protocol and to bincode.
const INTERESTING_BYTES: &[u8] = &[
    b' ', b'\r', b'\n', 0, 0x7f, 0xff, b'\t', b'0', b'9', b'-', b'+', b'=', b'/', 0xfb, 0xfc, 0xfd, 0x80, 0x01,
];

/// Replacements for a decimal field.
const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "-0",
    "+1",
    "2",
    "250",
    "251",
    "2147483645",
    "2147483646",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "1048576",
    "1048516",
    "1073741824",
    "1073741825",
    "16384",
    "65536",
    "",
    " ",
    "x",
    "1x",
    "0x10",
    "1\t",
];

/// Draws a mutated input from `corpus`.
pub fn mutate(rng: &mut Rng, corpus: &[Vec<u8>], dictionary: &[&[u8]]) -> Vec<u8> {
    let mut data = rng.pick(corpus).clone();
    let edits = 1 + rng.below(8);
    for _ in 0..edits {
        edit(rng, &mut data, corpus, dictionary);
        if data.len() > MAX_INPUT {
            data.truncate(MAX_INPUT);
        }
    }
    data
}

fn edit(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&[u8]]) {
    let len = data.len();
    match rng.below(13) {
        // Flip one bit.
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        // Overwrite a byte with an interesting one.
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = *rng.pick(INTERESTING_BYTES);
        }
        // Insert an interesting byte.
        2 => {
            let i = rng.below(len + 1);
            data.insert(i, *rng.pick(INTERESTING_BYTES));
        }
        // Delete a range.
        3 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(16));
            data.drain(i..i + n);
        }
        // Duplicate a range in place.
        4 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(64));
            let copy = data[i..i + n].to_vec();
            let at = rng.below(data.len() + 1);
            data.splice(at..at, copy);
        }
        // Splice: our head, another input's tail (pipelines mixed commands).
        5 => {
            let other = rng.pick(corpus);
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        // Append a whole other input (pipelining).
        6 => {
            let other = rng.pick(corpus).clone();
            data.extend_from_slice(&other);
        }
        // Insert a dictionary token.
        7 | 8 if !dictionary.is_empty() => {
            let tok = *rng.pick(dictionary);
            let i = rng.below(len + 1);
            data.splice(i..i, tok.iter().copied());
        }
        // Rewrite a number (length fields, flags, exptimes, CAS, varints).
        9 | 10 => edit_number(rng, data),
        // Truncate.
        11 if len > 0 => data.truncate(rng.below(len)),
        // Repeat a byte many times (long keys, long lines, long tokens).
        12 => {
            let b = if len > 0 && rng.one_in(2) {
                data[rng.below(len)]
            } else {
                *rng.pick(b"xk \r\n")
            };
            let n = *rng.pick(&[2usize, 3, 8, 200, 250, 251, 2049, 4096, 16385]);
            let i = rng.below(len + 1);
            data.splice(i..i, std::iter::repeat_n(b, n));
        }
        _ => {
            let i = rng.below(len + 1);
            data.insert(i, rng.next_u64() as u8);
        }
    }
}

/// Replaces one run of ASCII digits (with its sign) by an interesting number or the
/// old value plus or minus one.
fn edit_number(rng: &mut Rng, data: &mut Vec<u8>) {
    let runs = digit_runs(data);
    if runs.is_empty() {
        return;
    }
    let (s, e) = *rng.pick(&runs);
    let replacement = if rng.one_in(3) {
        let old: i128 = std::str::from_utf8(&data[s..e])
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let delta = *rng.pick(&[-2i128, -1, 1, 2]);
        (old + delta).to_string()
    } else {
        rng.pick(INTERESTING_NUMBERS).to_string()
    };
    data.splice(s..e, replacement.into_bytes());
}

/// The (start, end) of each run of digits, a leading `-`/`+` included.
fn digit_runs(data: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if data[i].is_ascii_digit() {
            let mut s = i;
            if s > 0 && (data[s - 1] == b'-' || data[s - 1] == b'+') {
                s -= 1;
            }
            while i < data.len() && data[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((s, i));
        } else {
            i += 1;
        }
    }
    runs
}

/// Random cut points for feeding `len` bytes in several reads: a few random cuts, or
/// (for short inputs, sometimes) one byte at a time.
pub fn splits(rng: &mut Rng, len: usize) -> Vec<usize> {
    if len < 2 {
        return Vec::new();
    }
    if len <= 512 && rng.one_in(4) {
        return (1..len).collect();
    }
    let mut cuts: Vec<usize> = (0..1 + rng.below(8)).map(|_| 1 + rng.below(len - 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// `data` cut at `cuts` (ascending, inside `1..len`).
pub fn chunks<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut prev = 0;
    for &c in cuts {
        out.push(&data[prev..c]);
        prev = c;
    }
    out.push(&data[prev..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_numbers_and_cuts_cover_the_input() {
        assert_eq!(digit_runs(b"set k 0 -1 12\r\n"), vec![(6, 7), (8, 10), (11, 13)]);
        let data = b"0123456789";
        let mut rng = Rng::new(3);
        for _ in 0..50 {
            let cuts = splits(&mut rng, data.len());
            assert_eq!(chunks(data, &cuts).concat(), data);
        }
    }

    #[test]
    fn mutation_is_bounded_and_seeded() {
        let corpus = vec![b"get a\r\n".to_vec(), b"set k 0 0 1\r\nx\r\n".to_vec()];
        let a: Vec<Vec<u8>> = (0..100)
            .scan(Rng::new(9), |r, _| Some(mutate(r, &corpus, &[b"noreply"])))
            .collect();
        let b: Vec<Vec<u8>> = (0..100)
            .scan(Rng::new(9), |r, _| Some(mutate(r, &corpus, &[b"noreply"])))
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|m| m.len() <= MAX_INPUT));
        assert!(a.iter().any(|m| !corpus.contains(m)));
    }
}
