//! The meta response parser (client side).
//!
//! [`parse_meta_response`] reads one reply from the front of a connection's buffer:
//! `HD`, `VA <len>` plus its data block, `EN`, `NS`, `EX`, `NF`, `MN`, `ME ...`, or an
//! error line (`ERROR`, `CLIENT_ERROR <msg>`, `SERVER_ERROR <msg>`). Like the request
//! parser it is incremental (`Ok(None)` and an untouched buffer until a whole reply is
//! buffered), zero-copy (the flags and the value are `Bytes` slices of the buffer) and
//! bounded: a line longer than [`MAX_REPLY_LINE`] or a value longer than
//! [`MAX_REPLY_VALUE`] (the crate's [`crate::limits`]) is an error, so a broken or hostile server cannot make a client buffer without limit.
//! After an error the buffer is in an unknown state and the connection must be closed.

use bytes::{Bytes, BytesMut};

use crate::limits::{MAX_REPLY_LINE, MAX_REPLY_VALUE};
use crate::text::frame::{reply_line, va_len, FrameError};

/// The reply code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaStatus {
    /// `HD`: success without a value.
    Hd,
    /// `VA`: success with a value.
    Va,
    /// `EN`: miss.
    En,
    /// `NS`: not stored.
    Ns,
    /// `EX`: CAS mismatch.
    Ex,
    /// `NF`: not found.
    Nf,
    /// `MN`: the no-op's answer.
    Mn,
    /// `ME`: the debug line; [`MetaResponse::rest`] holds `<key> exp=... la=...`.
    Me,
    /// `ERROR`: unknown command.
    Error,
    /// `CLIENT_ERROR <msg>`; the message is [`MetaResponse::rest`].
    ClientError,
    /// `SERVER_ERROR <msg>`; the message is [`MetaResponse::rest`].
    ServerError,
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaResponse {
    /// The reply code (`HD`, `VA`, `EN`, ...).
    pub status: MetaStatus,
    /// The rest of the line after the code (and after the length of `VA`), without its
    /// leading space: the return flags, the `ME` fields, or the error message.
    pub rest: Bytes,
    /// The data block of `VA`, without its `\r\n`.
    pub value: Option<Bytes>,
}

impl MetaResponse {
    /// The return flags, one token each (`c42`, `W`, `Oabc`).
    pub fn flags(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.rest.split(|&b| b == b' ').filter(|t| !t.is_empty())
    }

    /// The argument of the return flag `letter` (`b'c'` gives the CAS digits), or
    /// `None` if the reply lacks it. A flag without argument (`W`) gives `Some(b"")`.
    pub fn flag(&self, letter: u8) -> Option<&[u8]> {
        if !self.has_flags() {
            return None;
        }
        self.flags().find(|t| t[0] == letter).map(|t| &t[1..])
    }

    /// Whether the reply carries the bare flag `letter` (`W`, `X`, `Z`).
    pub fn has(&self, letter: u8) -> bool {
        self.flag(letter).is_some()
    }

    /// A numeric return flag (`c`, `f`, `s`, `t`, `l`, `h`).
    pub fn number(&self, letter: u8) -> Option<i64> {
        std::str::from_utf8(self.flag(letter)?).ok()?.parse().ok()
    }

    fn has_flags(&self) -> bool {
        !matches!(
            self.status,
            MetaStatus::Me | MetaStatus::Error | MetaStatus::ClientError | MetaStatus::ServerError
        )
    }
}

/// Why a reply could not be parsed. The connection is unusable afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MetaResponseError {
    #[error("reply line longer than {MAX_REPLY_LINE} bytes")]
    /// No `\r\n` within the longest reply line allowed.
    LineTooLong,
    #[error("unknown reply code")]
    /// The line does not start with a meta reply code.
    UnknownCode,
    #[error("bad VA length")]
    /// The length after `VA` is not a number.
    BadLength,
    #[error("VA value longer than {MAX_REPLY_VALUE} bytes")]
    /// A `VA` value longer than the limit.
    ValueTooLarge,
    #[error("VA data block not terminated by \\r\\n")]
    /// The `VA` data block is not followed by `\r\n`.
    BadDataBlock,
}

/// Parses one reply from the front of `buf`; see the module documentation.
pub fn parse_meta_response(buf: &mut BytesMut) -> Result<Option<MetaResponse>, MetaResponseError> {
    let Some((line, next)) = reply_line(buf).map_err(|_| MetaResponseError::LineTooLong)? else {
        return Ok(None);
    };
    let nl = next - 1;
    let line_len = line.strip_suffix(b"\r").unwrap_or(line).len();
    let line = &buf[..line_len];
    let (word, rest_at) = match memchr::memchr(b' ', line) {
        Some(sp) => (&line[..sp], sp + 1),
        None => (line, line_len),
    };
    let status = match word {
        b"HD" => MetaStatus::Hd,
        b"VA" => MetaStatus::Va,
        b"EN" => MetaStatus::En,
        b"NS" => MetaStatus::Ns,
        b"EX" => MetaStatus::Ex,
        b"NF" => MetaStatus::Nf,
        b"MN" => MetaStatus::Mn,
        b"ME" => MetaStatus::Me,
        b"ERROR" => MetaStatus::Error,
        b"CLIENT_ERROR" => MetaStatus::ClientError,
        b"SERVER_ERROR" => MetaStatus::ServerError,
        _ => return Err(MetaResponseError::UnknownCode),
    };
    if status != MetaStatus::Va {
        let all = buf.split_to(nl + 1).freeze();
        return Ok(Some(MetaResponse {
            status,
            rest: all.slice(rest_at..line_len),
            value: None,
        }));
    }
    let after = &line[rest_at.min(line_len)..];
    let digits_end = after.iter().position(|&b| b == b' ').unwrap_or(after.len());
    let len = match va_len(after) {
        Ok(len) => len,
        Err(FrameError::ValueTooLarge(_)) => return Err(MetaResponseError::ValueTooLarge),
        Err(_) => return Err(MetaResponseError::BadLength),
    };
    let flags_at = (rest_at + digits_end + 1).min(line_len);
    let data_at = nl + 1;
    let end = data_at + len + 2;
    if buf.len() < end {
        return Ok(None);
    }
    if &buf[end - 2..end] != b"\r\n" {
        return Err(MetaResponseError::BadDataBlock);
    }
    let all = buf.split_to(end).freeze();
    Ok(Some(MetaResponse {
        status,
        rest: all.slice(flags_at..line_len),
        value: Some(all.slice(data_at..data_at + len)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    type Row = (
        &'static [u8],
        MetaStatus,
        &'static [u8],
        Option<&'static [u8]>,
        &'static [u8],
    );

    /// (input, status, rest, value, left over); inputs are replies memcached 1.6.18 sent.
    const TABLE: &[Row] = &[
        (b"HD\r\n", MetaStatus::Hd, b"", None, b""),
        (
            b"HD c5 kczE= b O5\r\nMN\r\n",
            MetaStatus::Hd,
            b"c5 kczE= b O5",
            None,
            b"MN\r\n",
        ),
        (
            b"VA 3 O1 khk c3 f5 t100 s3 h0 l0\r\nabc\r\n",
            MetaStatus::Va,
            b"O1 khk c3 f5 t100 s3 h0 l0",
            Some(b"abc"),
            b"",
        ),
        (
            b"VA 0 c18 t30 s0 f0 W\r\n\r\n",
            MetaStatus::Va,
            b"c18 t30 s0 f0 W",
            Some(b""),
            b"",
        ),
        (b"VA 2\r\n10\r\nHD\r\n", MetaStatus::Va, b"", Some(b"10"), b"HD\r\n"),
        (b"VA 4\r\na\r\nb\r\n", MetaStatus::Va, b"", Some(b"a\r\nb"), b""),
        (b"EN\r\n", MetaStatus::En, b"", None, b""),
        (b"EN O12 knokey\r\n", MetaStatus::En, b"O12 knokey", None, b""),
        (b"NS c0\r\n", MetaStatus::Ns, b"c0", None, b""),
        (b"EX kd1 O1\r\n", MetaStatus::Ex, b"kd1 O1", None, b""),
        (b"NF\r\n", MetaStatus::Nf, b"", None, b""),
        (b"MN\r\n", MetaStatus::Mn, b"", None, b""),
        (
            b"ME hk exp=-98 la=0 cas=3 fetch=yes cls=1 size=68\r\n",
            MetaStatus::Me,
            b"hk exp=-98 la=0 cas=3 fetch=yes cls=1 size=68",
            None,
            b"",
        ),
        (b"ERROR\r\n", MetaStatus::Error, b"", None, b""),
        (
            b"CLIENT_ERROR bad data chunk\r\n",
            MetaStatus::ClientError,
            b"bad data chunk",
            None,
            b"",
        ),
        (
            b"SERVER_ERROR object too large for cache\r\n",
            MetaStatus::ServerError,
            b"object too large for cache",
            None,
            b"",
        ),
    ];

    #[test]
    fn whole_and_byte_by_byte() {
        for &(input, status, rest, value, left) in TABLE {
            let mut buf = BytesMut::from(input);
            let r = parse_meta_response(&mut buf).unwrap().unwrap();
            assert_eq!((r.status, &r.rest[..], r.value.as_deref()), (status, rest, value));
            assert_eq!(&buf[..], left);

            let mut buf = BytesMut::new();
            let mut found = None;
            for (i, &b) in input.iter().enumerate() {
                buf.put_u8(b);
                let before = buf.clone();
                match parse_meta_response(&mut buf).unwrap() {
                    None => assert_eq!(buf, before),
                    Some(r) => {
                        buf.extend_from_slice(&input[i + 1..]);
                        found = Some(r);
                        break;
                    }
                }
            }
            let r = found.unwrap();
            assert_eq!((r.status, &r.rest[..], r.value.as_deref()), (status, rest, value));
            assert_eq!(&buf[..], left);
        }
    }

    #[test]
    fn flag_accessors() {
        let mut buf = BytesMut::from(&b"VA 1 c26 t-1 ka1 O1 Z X W\r\n1\r\n"[..]);
        let r = parse_meta_response(&mut buf).unwrap().unwrap();
        assert_eq!(r.number(b'c'), Some(26));
        assert_eq!(r.number(b't'), Some(-1));
        assert_eq!(r.flag(b'k'), Some(&b"a1"[..]));
        assert_eq!(r.flag(b'O'), Some(&b"1"[..]));
        assert!(r.has(b'W') && r.has(b'X') && r.has(b'Z'));
        assert!(!r.has(b'f'));
        let mut buf = BytesMut::from(&b"CLIENT_ERROR bad command line format\r\n"[..]);
        let r = parse_meta_response(&mut buf).unwrap().unwrap();
        assert!(!r.has(b'b'));
    }

    #[test]
    fn errors_are_bounded() {
        let cases: &[(&[u8], MetaResponseError)] = &[
            (b"XX\r\n", MetaResponseError::UnknownCode),
            (b"\r\n", MetaResponseError::UnknownCode),
            (b"VA\r\n", MetaResponseError::BadLength),
            (b"VA x\r\n", MetaResponseError::BadLength),
            (b"VA -1\r\n", MetaResponseError::BadLength),
            (b"VA 99999999999\r\n", MetaResponseError::ValueTooLarge),
            (b"VA 184467440737095516160\r\n", MetaResponseError::BadLength),
            (b"VA 1073741825\r\n", MetaResponseError::ValueTooLarge),
            (b"VA 1\r\nab\r\n", MetaResponseError::BadDataBlock),
        ];
        for &(input, want) in cases {
            let mut buf = BytesMut::from(input);
            assert_eq!(parse_meta_response(&mut buf), Err(want), "{input:?}");
        }
        let mut buf = BytesMut::from(&vec![b'H'; MAX_REPLY_LINE + 2][..]);
        assert_eq!(parse_meta_response(&mut buf), Err(MetaResponseError::LineTooLong));
        let mut buf = BytesMut::from(&vec![b'H'; MAX_REPLY_LINE][..]);
        assert_eq!(parse_meta_response(&mut buf), Ok(None));
    }
}
