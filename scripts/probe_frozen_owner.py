"""Probe: how long a get through a healthy node takes for keys a frozen node owns.

    python3 scripts/probe_frozen_owner.py target/release/ringcache BASE_PORT REPLICAS

Starts 3 nodes (client ports BASE..BASE+2, gossip BASE+1000..), sets 300 keys through
n1, SIGSTOPs n2 and gets the keys one by one through n1 for 2.5 s; prints the gets that
took over 50 ms (seconds, when, reply). At e52bf77 every get of a key n2 owns waits
about 1 s (the peer timeout) and then answers (from the other owner with
--replicas 2, a miss with --replicas 1): the freeze stall of
docs/bench/membership-events.md.
"""
import signal, socket, subprocess, sys, time
BIN=sys.argv[1]; BASE=int(sys.argv[2]); REPL=sys.argv[3]
def start(i):
    a=[BIN,"-p",str(BASE+i),"-l","127.0.0.1","-t","2","--node-name",f"n{i+1}","--gossip-addr",f"127.0.0.1:{BASE+1000+i}","--replicas",REPL]
    for j in range(3):
        if j!=i: a+=["--seed",f"127.0.0.1:{BASE+1000+j}"]
    return subprocess.Popen(a,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
def conn(i):
    for _ in range(100):
        try: return socket.create_connection(("127.0.0.1",BASE+i),timeout=10)
        except OSError: time.sleep(0.05)
def req(s,d,end):
    s.sendall(d); o=b""
    while not o.endswith(end):
        c=s.recv(65536)
        if not c: break
        o+=c
    return o
P=[start(i) for i in range(3)]
try:
    time.sleep(3)
    c0=conn(0)
    for i in range(300):
        req(c0,f"set f{i} 0 0 1\r\nx\r\n".encode(),b"\r\n")
    P[1].send_signal(signal.SIGSTOP)
    t0=time.time()
    lat=[]
    for i in range(300):
        t=time.time(); r=req(c0,f"get f{i}\r\n".encode(),b"END\r\n")
        lat.append((round(time.time()-t,3), round(t-t0,2), r[:30]))
        if time.time()-t0>2.5: break
    P[1].send_signal(signal.SIGCONT)
    slow=[l for l in lat if l[0]>0.05]
    print(f"replicas {REPL}: {len(lat)} gets through n1 while n2 frozen; slow ones (s, at, reply): {slow[:10]}")
finally:
    for p in P:
        p.send_signal(signal.SIGCONT); p.kill(); p.wait()
