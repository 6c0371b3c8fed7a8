//! Looking at a server from outside the load: its `stats`, its cluster `topology`,
//! and the CPU time its process has used (`/proc/<pid>/stat`).
//!
//! None of this is on the hot path, so it may allocate freely. Every network call is
//! bounded by the caller's timeout, and a server that answers with something
//! unexpected produces an error that says what came back.

use std::time::Duration;

use anyhow::{bail, Context};
use ringcache_protocol::cluster::Topology;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Longest `stats`/`topology` reply accepted.
const MAX_REPLY: usize = 1 << 20;

/// Sends `command\r\n` on `stream` and reads until `complete` recognizes a whole reply.
async fn ask<T>(
    stream: &mut TcpStream,
    command: &str,
    limit: Duration,
    complete: impl Fn(&[u8]) -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let exchange = async {
        stream.write_all(format!("{command}\r\n").as_bytes()).await?;
        let mut buf = Vec::with_capacity(4096);
        loop {
            if let Some(v) = complete(&buf)? {
                return Ok(v);
            }
            if buf.len() > MAX_REPLY {
                bail!("reply to {command:?} longer than {MAX_REPLY} bytes");
            }
            if stream.read_buf(&mut buf).await? == 0 {
                bail!(
                    "connection closed after {} bytes of the reply to {command:?}: {:?}",
                    buf.len(),
                    shown(&buf)
                );
            }
        }
    };
    timeout(limit, exchange)
        .await
        .with_context(|| format!("no complete reply to {command:?} within {limit:?}"))?
}

fn shown(buf: &[u8]) -> String {
    String::from_utf8_lossy(&buf[..buf.len().min(120)]).into_owned()
}

/// Opens a connection with a deadline.
pub(crate) async fn connect(addr: &str, limit: Duration) -> anyhow::Result<TcpStream> {
    let stream = timeout(limit, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {addr}: no answer within {limit:?}"))?
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The `STAT <name> <value>` pairs of a complete `stats` reply, or `None` if incomplete.
pub(crate) fn parse_stats(buf: &[u8]) -> anyhow::Result<Option<Vec<(String, String)>>> {
    let mut out = Vec::new();
    let mut rest = buf;
    loop {
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            return Ok(None);
        };
        let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
        rest = &rest[nl + 1..];
        if line == b"END" {
            return Ok(Some(out));
        }
        let text = String::from_utf8_lossy(line);
        let mut f = text.splitn(3, ' ');
        match (f.next(), f.next(), f.next()) {
            (Some("STAT"), Some(name), Some(value)) => out.push((name.to_string(), value.to_string())),
            _ => bail!("unexpected line in stats reply: {text:?}"),
        }
    }
}

/// A numeric statistic by name.
pub(crate) fn stat_u64(stats: &[(String, String)], name: &str) -> anyhow::Result<u64> {
    let (_, v) = stats
        .iter()
        .find(|(n, _)| n == name)
        .with_context(|| format!("stats has no {name}"))?;
    v.parse()
        .with_context(|| format!("stats {name} is not a number: {v:?}"))
}

/// The general-purpose `stats` of the server at `stream`.
pub(crate) async fn stats(stream: &mut TcpStream, limit: Duration) -> anyhow::Result<Vec<(String, String)>> {
    ask(stream, "stats", limit, parse_stats).await
}

/// The cluster view of the node at `addr`.
pub(crate) async fn topology(addr: &str, limit: Duration) -> anyhow::Result<Topology> {
    let mut stream = connect(addr, limit).await?;
    ask(&mut stream, "topology", limit, |buf| {
        if buf.starts_with(b"ERROR") || buf.starts_with(b"CLIENT_ERROR") || buf.starts_with(b"SERVER_ERROR") {
            if memchr::memchr(b'\n', buf).is_some() {
                bail!(
                    "{addr} does not support `topology` (not a ringcache node?): {:?}",
                    shown(buf)
                );
            }
            return Ok(None);
        }
        Ok(Topology::parse(buf)?.map(|(t, _)| t))
    })
    .await
}

/// user + system CPU time of `pid` in clock ticks, from the text of `/proc/<pid>/stat`.
///
/// Fields 14 and 15 (utime, stime) counted from 1; field 2 (the command name) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted
/// from the *last* `)`.
pub(crate) fn parse_proc_stat(text: &str) -> anyhow::Result<u64> {
    let after = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .context("no ')' in /proc stat")?;
    // After the name: field 3 (state) is index 0, so field k is index k - 3.
    let f: Vec<&str> = after.split_whitespace().collect();
    let num = |k: usize| -> anyhow::Result<u64> {
        f.get(k - 3)
            .with_context(|| format!("/proc stat has no field {k}"))?
            .parse()
            .context("bad CPU field")
    };
    Ok(num(14)? + num(15)?)
}

/// CPU ticks used so far by `pid`.
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_proc_stat(&text)
}

/// Resident set size in KiB from the text of `/proc/<pid>/status` (its `VmRSS:` line).
pub(crate) fn parse_vm_rss(text: &str) -> anyhow::Result<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("no VmRSS line in /proc status")?;
    let kib = line.trim().strip_suffix("kB").context("VmRSS not in kB")?;
    kib.trim().parse().context("bad VmRSS value")
}

/// Resident memory of `pid`, KiB.
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&text)
}

/// CPU ticks used so far by this process.
pub(crate) fn own_cpu_ticks() -> anyhow::Result<u64> {
    parse_proc_stat(&std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_fields_counted_after_the_name() {
        let line = "4242 (mem) cached) S 1 4242 4242 0 -1 4194560 900 0 0 0 123 45 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_proc_stat(line).unwrap(), 168);
        assert!(parse_proc_stat("12 (x) S 1 2").is_err());
        assert!(parse_proc_stat("garbage").is_err());
    }

    #[test]
    fn vm_rss_is_parsed() {
        let status = "Name:\tmemcached\nVmPeak:\t  80000 kB\nVmRSS:\t    4242 kB\nThreads:\t5\n";
        assert_eq!(parse_vm_rss(status).unwrap(), 4242);
        assert!(parse_vm_rss("Name:\tx\n").is_err());
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn own_cpu_is_readable() {
        own_cpu_ticks().unwrap();
    }

    #[test]
    fn stats_reply_parsing() {
        let r = b"STAT pid 1\r\nSTAT version 1.6.18\r\nSTAT evictions 7\r\nEND\r\n";
        let s = parse_stats(r).unwrap().unwrap();
        assert_eq!(stat_u64(&s, "evictions").unwrap(), 7);
        assert!(stat_u64(&s, "version").is_err());
        assert!(stat_u64(&s, "curr_items").is_err());
        assert_eq!(parse_stats(&r[..r.len() - 1]).unwrap(), None);
        assert!(parse_stats(b"ERROR\r\n").is_err());
    }
}
