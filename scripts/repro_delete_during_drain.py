"""Reproduction (found by tests/tests/membership_events.rs, rolling restart, --replicas 1):
a delete acknowledged (NOT_FOUND) while the key's owner drains after SIGTERM is undone
by the drain's hand-off: the old value comes back, on every node, for good.

    python3 scripts/repro_delete_during_drain.py target/release/ringcache [BASE_PORT] [REPLICAS] [delete|set]

Starts 3 nodes (client ports BASE..BASE+2, gossip BASE+1000..), sets 3,000 keys to v0,
SIGTERMs n1 and at once deletes (or sets to v1) every key through n2, waits for n1 to
exit, then reads every key through n3. Exit status 1 when an acknowledged delete (or
set) was undone."""
import os, signal, socket, subprocess, sys, time

BIN = sys.argv[1]
BASE = int(sys.argv[2]) if len(sys.argv) > 2 else 21311  # client ports BASE..BASE+2, gossip +1000
REPLICAS = sys.argv[3] if len(sys.argv) > 3 else "1"
OP = sys.argv[4] if len(sys.argv) > 4 else "delete"

def start(i):
    args = [BIN, "-p", str(BASE + i), "-l", "127.0.0.1", "-t", "2", "--node-name", f"n{i+1}",
            "--gossip-addr", f"127.0.0.1:{BASE + 1000 + i}", "--replicas", REPLICAS]
    for j in range(3):
        if j != i:
            args += ["--seed", f"127.0.0.1:{BASE + 1000 + j}"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def conn(i):
    for _ in range(100):
        try:
            s = socket.create_connection(("127.0.0.1", BASE + i), timeout=5)
            return s
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"n{i+1} does not answer")

def req(s, data, end):
    s.sendall(data)
    out = b""
    while not out.endswith(end):
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    return out

procs = [start(i) for i in range(3)]
try:
    c = [conn(i) for i in range(3)]
    # wait until every node sees 3 members
    for _ in range(200):
        if all(req(x, b"topology\r\n", b"END\r\n").count(b"\nn") + req(x, b"topology\r\n", b"END\r\n").count(b" n") >= 3 for x in c):
            break
        time.sleep(0.05)
    time.sleep(1)
    N = 3000
    keys = [f"k{i}" for i in range(N)]
    for i in range(0, N, 100):
        batch = b"".join(f"set {k} 0 0 2\r\nv0\r\n".encode() for k in keys[i:i+100])
        r = req(c[1], batch, b"\r\n" * 1)
        while r.count(b"\r\n") < 100:
            r += c[1].recv(65536)
    # SIGTERM n1, then at once delete (or set to v1) every key through n2
    procs[0].send_signal(signal.SIGTERM)
    replies = {}
    for k in keys:
        cmd = f"delete {k}\r\n" if OP == "delete" else f"set {k} 0 0 2\r\nv1\r\n"
        replies[k] = req(c[1], cmd.encode(), b"\r\n").strip().decode()
    procs[0].wait(timeout=20)
    time.sleep(2)
    back = []
    for k in keys:
        r = req(c[2], f"get {k}\r\n".encode(), b"END\r\n")
        acked = replies[k] in ("DELETED", "NOT_FOUND", "STORED")
        if acked and r != b"END\r\n" and b"v1" not in r:
            back.append((k, replies[k], r.split(b"\r\n")[1].decode()))
    from collections import Counter
    print(f"--replicas {REPLICAS}, {OP} replies:", Counter(replies.values()))
    print(f"{len(back)} of {N} acknowledged {OP}s undone after the drain (v0 is back), e.g. {back[:5]}")
    sys.exit(1 if back else 0)
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
