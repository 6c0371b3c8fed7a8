//! A network partition between network namespaces: one node on one side, two on the
//! other, joined by a veth pair that the test takes down and up again. The test process
//! reaches every node through veths of its own, which the partition leaves alone.
//!
//! During the partition the side of two keeps serving and the node cut off refuses key
//! commands (`SERVER_ERROR no quorum`): it holds no majority of the cluster it knew.
//! After healing the cluster converges to one ring and every read is the newest
//! acknowledged value or a miss (every node declared down drops its data when it
//! rejoins: docs/ARCHITECTURE.md, "Quorum"). Needs root and `ip` (iproute2); traffic stays inside the namespaces the test
//! creates (10.231.0.0/16 on its own veths) and on loopback.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringcache_protocol::cluster::Topology;
use ringcache_tests::cluster::{get_all, set_all};
use ringcache_tests::process::ringcache_bin;
use ringcache_tests::tools::require_command;
use ringcache_tests::{poll_until, RawConn};

/// Runs `ip` with `args`; panics with its output if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces (`a`, `b`) joined by the veth `ab`, each also joined to the test's
/// namespace; removed on drop.
struct Net {
    a: String,
    b: String,
}

impl Net {
    fn new() -> Net {
        let tag = std::process::id() % 100_000;
        let net = Net {
            a: format!("rca{tag}"),
            b: format!("rcb{tag}"),
        };
        let (a, b) = (net.a.as_str(), net.b.as_str());
        ip(&["netns", "add", a]);
        ip(&["netns", "add", b]);
        for ns in [a, b] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // The link the partition cuts.
        let (ab, ba) = (format!("ab{tag}"), format!("ba{tag}"));
        ip(&["link", "add", &ab, "type", "veth", "peer", "name", &ba]);
        ip(&["link", "set", &ab, "netns", a]);
        ip(&["link", "set", &ba, "netns", b]);
        ip(&["-n", a, "addr", "add", "10.231.1.1/30", "dev", &ab]);
        ip(&["-n", b, "addr", "add", "10.231.1.2/30", "dev", &ba]);
        ip(&["-n", a, "link", "set", &ab, "up"]);
        ip(&["-n", b, "link", "set", &ba, "up"]);
        // The test's own links to each side.
        for (ns, root_if, ns_if, root_ip, ns_ip) in [
            (
                a,
                format!("ra{tag}"),
                format!("ar{tag}"),
                "10.231.2.1/30",
                "10.231.2.2/30",
            ),
            (
                b,
                format!("rb{tag}"),
                format!("br{tag}"),
                "10.231.3.1/30",
                "10.231.3.2/30",
            ),
        ] {
            ip(&["link", "add", &root_if, "type", "veth", "peer", "name", &ns_if]);
            ip(&["link", "set", &ns_if, "netns", ns]);
            ip(&["addr", "add", root_ip, "dev", &root_if]);
            ip(&["-n", ns, "addr", "add", ns_ip, "dev", &ns_if]);
            ip(&["link", "set", &root_if, "up"]);
            ip(&["-n", ns, "link", "set", &ns_if, "up"]);
        }
        net
    }

    fn cut(&self, up: bool) {
        let tag = std::process::id() % 100_000;
        ip(&[
            "-n",
            &self.a,
            "link",
            "set",
            &format!("ab{tag}"),
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veths in it, and with them their peers.
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A ringcache process inside a namespace, killed on drop.
struct NsNode {
    name: String,
    child: Child,
    /// Where the test reaches it.
    addr: SocketAddr,
}

impl Drop for NsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(ns: &str, name: &str, cluster_ip: &str, test_ip: &str, port: u16, seed: Option<&str>) -> NsNode {
    let bin = ringcache_bin();
    let gossip = format!("{cluster_ip}:{}", port + 1000);
    let advertise = format!("{cluster_ip}:{port}");
    let mut args: Vec<String> = ["netns", "exec", ns].iter().map(|s| s.to_string()).collect();
    args.push(bin.display().to_string());
    for a in [
        "-l",
        "0.0.0.0",
        "-p",
        &port.to_string(),
        "-m",
        "32",
        "-t",
        "2",
        "--node-name",
        name,
        "--gossip-addr",
        &gossip,
        "--advertise-addr",
        &advertise,
        "--gossip-key",
        "partition-test",
        "--replicas",
        "2",
    ] {
        args.push(a.to_string());
    }
    if let Some(seed) = seed {
        args.push("--seed".into());
        args.push(seed.into());
    }
    let child = Command::new("ip")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ringcache in a namespace");
    let addr: SocketAddr = format!("{test_ip}:{port}").parse().expect("addr");
    let ok = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    });
    assert!(ok, "{name} did not start in {ns}");
    NsNode {
        name: name.into(),
        child,
        addr,
    }
}

fn members(n: &NsNode) -> Option<(u64, Vec<String>)> {
    let mut c = RawConn::connect(n.addr).ok()?;
    c.send(b"topology\r\n").ok()?;
    let mut out = Vec::new();
    c.read_until_suffix(&mut out, b"END\r\n", Duration::from_secs(2));
    let (t, _) = Topology::parse(&out).ok()??;
    Some((t.version, t.members.into_iter().map(|m| m.name).collect()))
}

fn sees(n: &NsNode, names: &[&str]) -> bool {
    members(n).is_some_and(|(_, m)| m == names)
}

/// `stats <name>` of a node, as a number.
fn stat(n: &NsNode, name: &str) -> Option<u64> {
    let mut c = RawConn::connect(n.addr).ok()?;
    let out = c.request(b"stats\r\n", b"END\r\n");
    let text = String::from_utf8_lossy(&out).into_owned();
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("STAT") && w.next() == Some(name)).then(|| w.next()?.parse().ok())?
    })
}

#[test]
fn the_cut_off_node_refuses_keys_and_nothing_stale_after_healing() {
    require_command("ip", "apt-get install iproute2");
    assert!(
        ringcache_tests::sys::is_root(),
        "the partition test needs root (network namespaces)"
    );
    let net = Net::new();
    let n1 = start(&net.a, "n1", "10.231.1.1", "10.231.2.2", 21211, None);
    let seed = "10.231.1.1:22211";
    let n2 = start(&net.b, "n2", "10.231.1.2", "10.231.3.2", 21212, Some(seed));
    let n3 = start(&net.b, "n3", "10.231.1.2", "10.231.3.2", 21213, Some(seed));
    let all = ["n1", "n2", "n3"];
    let converged = |nodes: &[&NsNode], names: &[&str]| {
        poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
            let views: Vec<_> = nodes.iter().map(|n| members(n)).collect();
            views.iter().all(|v| v.as_ref().is_some_and(|(_, m)| m == names))
                && views
                    .windows(2)
                    .all(|w| w[0].as_ref().map(|v| v.0) == w[1].as_ref().map(|v| v.0))
        })
    };
    assert!(converged(&[&n1, &n2, &n3], &all), "no single ring before the partition");

    let keys: Vec<String> = (0..600).map(|i| format!("part:{i}")).collect();
    // Half the keys are written again by the majority during the partition.
    let (kept, rewritten) = keys.split_at(300);
    let write = |n: &NsNode, keys: &[String], tag: &str| {
        let items: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("{k}-{tag}"))).collect();
        let mut c = RawConn::connect(n.addr).expect("connect");
        set_all(&mut c, &items)
    };
    // Every write acknowledged (through n1, so a third goes to each primary).
    let ok = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        write(&n1, &keys, "v0").is_empty()
    });
    assert!(ok, "writes before the partition failed: {:?}", write(&n1, &keys, "v0"));

    let cut_at = Instant::now();
    net.cut(false);
    // The majority drops the cut-off node from its ring. The cut-off node suspects
    // both others but, seeing no majority alive, declares neither down: its verdicts
    // would reach the majority at the heal and make its members rejoin, each dropping
    // its data.
    let refused = b"SERVER_ERROR no quorum: this node is cut off from most of its cluster\r\n";
    let n1_refuses = || RawConn::connect(n1.addr).is_ok_and(|mut c| c.request(b"get part:1\r\n", b"\r\n") == refused);
    let (mut dropped, mut refusing) = (None, None);
    let split = poll_until(Duration::from_secs(15), Duration::from_millis(20), || {
        if dropped.is_none() && sees(&n2, &["n2", "n3"]) && sees(&n3, &["n2", "n3"]) {
            dropped = Some(cut_at.elapsed());
        }
        // Its quorum count (a key command would wait on the owners it cannot reach).
        if refusing.is_none() && stat(&n1, "cluster_quorum_up").is_some_and(|up| up < 2) {
            refusing = Some(cut_at.elapsed());
        }
        dropped.is_some() && refusing.is_some()
    });
    assert!(
        split,
        "the majority did not drop the cut-off node, or it kept serving: {:?} {:?}",
        members(&n1),
        members(&n2)
    );
    println!("after the cut: the majority dropped the cut-off node at {dropped:?}, the cut-off node refused keys from {refusing:?}");
    assert!(n1_refuses(), "the cut-off node serves keys without a quorum");
    let held = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        stat(&n1, "gossip_verdicts_held").is_some_and(|h| h > 0)
    });
    assert!(held, "the cut-off node held no verdict");
    assert!(
        sees(&n1, &all),
        "the cut-off node declared the majority down: {:?}",
        members(&n1)
    );
    // The cut-off node serves no key: not what it holds (the majority may overwrite
    // it), and it acknowledges no write (the majority would never see it).
    let mut c = RawConn::connect(n1.addr).expect("connect");
    assert_eq!(c.request(b"get part:1\r\n", b"\r\n"), refused);
    assert_eq!(c.request(b"set part:1 0 0 1\r\nx\r\n", b"\r\n"), refused);
    assert!(c.request(b"version\r\n", b"\r\n").starts_with(b"VERSION "));
    // The majority serves every key: its own, and (with two copies) n1's too.
    let ok = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        write(&n2, rewritten, "b1").is_empty()
    });
    assert!(ok, "the majority refused writes: {:?}", write(&n2, rewritten, "b1"));
    let current = |k: &String, i: usize| format!("{k}-{}", if i < kept.len() { "v0" } else { "b1" });
    for n in [&n2, &n3] {
        let mut c = RawConn::connect(n.addr).expect("connect");
        for (i, (k, g)) in keys.iter().zip(get_all(&mut c, &keys, 50)).enumerate() {
            assert_eq!(g, Some(current(k, i)), "{} during the partition", n.name);
        }
    }

    let healed_at = Instant::now();
    net.cut(true);
    assert!(
        converged(&[&n1, &n2, &n3], &all),
        "no single ring after healing: {:?} {:?} {:?}",
        members(&n1),
        members(&n2),
        members(&n3)
    );
    println!("one ring again after {:?}", healed_at.elapsed());
    // The cut-off node counts the others up again once they refuted its suspicions.
    // Regaining its majority drops its store, which refuses keys too until the others
    // confirm its ring (`SERVER_ERROR store dropped: ...`): served means no error.
    let back = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        RawConn::connect(n1.addr).is_ok_and(|mut c| !c.request(b"get part:1\r\n", b"\r\n").starts_with(b"SERVER_ERROR"))
    });
    assert!(back, "the cut-off node still refuses keys after the heal");
    println!("the cut-off node serves again after {:?}", healed_at.elapsed());
    // Every read, through every node, is the newest acknowledged value or a miss (read
    // a few times, as the hand-offs of the heal settle).
    let mut misses = 0;
    for _ in 0..5 {
        misses = 0;
        for n in [&n1, &n2, &n3] {
            let mut c = RawConn::connect(n.addr).expect("connect");
            for (i, (k, g)) in keys.iter().zip(get_all(&mut c, &keys, 50)).enumerate() {
                match g {
                    Some(g) => assert_eq!(g, current(k, i), "stale value through {} after healing", n.name),
                    None => misses += 1,
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "after healing: {misses} misses of {} reads {:?} after the heal",
        3 * keys.len(),
        healed_at.elapsed()
    );
    // The majority was never declared down, so it kept its data: once the hand-off
    // to the cut-off node (back under a new identity, empty) is done, every key reads
    // back through every node.
    for n in [&n2, &n3] {
        assert_eq!(stat(n, "gossip_rejoins"), Some(0), "{} was declared down", n.name);
        assert_eq!(stat(n, "cluster_resets"), Some(0), "{} dropped its store", n.name);
    }
    let settled = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
        [&n1, &n2, &n3].iter().all(|n| {
            let (ring, handoff) = (stat(n, "cluster_ring_version"), stat(n, "cluster_handoff_version"));
            ring.is_some() && ring == handoff
        })
    });
    assert!(settled, "the hand-offs of the heal did not finish");
    for n in [&n1, &n2, &n3] {
        let mut c = RawConn::connect(n.addr).expect("connect");
        for (i, (k, g)) in keys.iter().zip(get_all(&mut c, &keys, 50)).enumerate() {
            assert_eq!(g, Some(current(k, i)), "{} after the heal's hand-off", n.name);
        }
    }
}
