#!/usr/bin/env bash
# Side-by-side benchmark of ringcache against memcached; writes docs/bench/.
#
#   scripts/bench.sh [--quick] [--self-check] [--rounds N] [--only LIST] [--out DIR]
#
#   --quick        short runs (about 4 minutes in all instead of about 12)
#   --self-check   memcached in both columns (side B is a second memcached): every
#                  ratio should come out near 1.0, which shows the harness is unbiased.
#                  Scenarios 7-11 (ringcache clusters) are skipped. Writes docs/bench/self-check/.
#   --rounds N     A B rounds per scenario (default 2, at least 2)
#   --only LIST    comma-separated scenario numbers, e.g. --only 1,5; `replicated` stands
#                  for 10,11. The report then goes to target/bench/only/ unless --out is
#                  given, so a partial run never replaces the full one in docs/bench.
#   --out DIR      where the report goes (default docs/bench, or docs/bench/self-check)
#
# Scenarios (A = memcached, B = ringcache; every server fresh, -m 64, -t $THREADS):
#   1 get-heavy: 90% get / 10% set, 100-byte values, 50 connections, no pipelining
#   2 the same with pipeline depth 16
#   3 set-only, 1 KiB values
#   4 multi-get of 10 keys
#   5 memory efficiency: fill with 100-byte values until evictions start: items per MiB
#   6 hit ratio: Zipf 0.99 over 3.5M keys (~10x what -m 64 holds), read-through; run by
#     request count (3M to warm up, 1.5M measured; 1M and 300k with --quick), so both
#     caches fill whatever the machine's speed (a timed window measured speed instead)
#   7 cluster: 3 ringcache nodes; A = every key sent to one node (forwarding),
#     B = every key sent straight to its owner (placement computed from `topology`)
#   8 the hop: as 7 with one connection (no queueing); A = direct, B = forward
#   9 direct routing against one node, one connection: A = a single ringcache node,
#     B = 3 nodes with every key sent to its owner
#  10 replicated sets: 32 connections, each `set` of a key never written before, 32-byte
#     values, no pipelining. Sides: replicas-1, replicas-2 = 3 ringcache nodes started
#     with --replicas 1 or 2, the connections spread round robin over the nodes;
#     single = one ringcache node; memcached. Counts error replies and requests that
#     waited >= 900 ms (the peer timeout is 1 s).
#  11 replicated 90/10 mix: as 10, 90% get / 10% set over 1,000 prefilled keys
#  12 as 1, with both servers started with -t 2 (on a 2-CPU machine the two server
#     threads share the one server CPU)
#  13 idle connections: 10,000 connections (IDLE_CONNS), each used for one set and one
#     get of a 4 KiB value (one key for all, so the store holds one item), then left idle for 5 s (2 s with --quick); the server's RSS
#     before and after. Servers get -c IDLE_CONNS+100; the script raises ulimit -n.
#  14 large values: 10 KiB - 512 KiB per key (log-uniform, fixed per key), Zipf 0.99
#     read-through over 2,000 keys (~4x what -m 64 holds), 90% get: throughput, then
#     items per MiB of -m from the server's stats
# Scenarios 7-11 are skipped by --self-check.
#
# Environment: MEMCACHED_BIN (memcached), RINGCACHE_BIN (a prebuilt ringcache: skips
# its build), THREADS (server threads, default 1; scenario 12 uses 2), BENCH_PORT (first
# port, 23211), IDLE_CONNS (scenario 13's connections, default 10000).
# Servers listen on 127.0.0.1 only and are killed when the script exits.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

quick=0 self_check=0 rounds=2 only="" out=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --self-check) self_check=1 ;;
    --rounds) rounds=$2; shift ;;
    --only) only=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,47p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$rounds" -ge 2 ] || { echo "bench.sh: --rounds must be at least 2" >&2; exit 2; }
only=${only//replicated/10,11}
if [ -z "$out" ]; then
  out=docs/bench
  [ "$self_check" = 1 ] && out=docs/bench/self-check
  [ -n "$only" ] && out=target/bench/only
fi

MEMCACHED_BIN=${MEMCACHED_BIN:-memcached}
THREADS=${THREADS:-1}
MEMORY=64
PORT=${BENCH_PORT:-23211}
IDLE_CONNS=${IDLE_CONNS:-10000}
# Per-server overrides, set around one scenario.
server_threads=$THREADS max_conns=1024
command -v "$MEMCACHED_BIN" >/dev/null || { echo "bench.sh: $MEMCACHED_BIN not found (apt-get install memcached)" >&2; exit 1; }

echo "== building (release)" >&2
cargo build --release -q -p ringcache-bench
bench=$root/target/release/ringcache-bench
if [ "$self_check" = 0 ]; then
  if [ -z "${RINGCACHE_BIN:-}" ]; then
    cargo build --release -q -p ringcache-server
    RINGCACHE_BIN=$root/target/release/ringcache
  fi
fi

# Pinning: load generator on CPU 0, servers on the others, when there are >= 2.
cpus=$(nproc)
if [ "$cpus" -ge 2 ] && command -v taskset >/dev/null; then
  gen_pin=(taskset -c 0)
  srv_pin=(taskset -c "1-$((cpus - 1))")
  pinning="load generator on CPU 0, servers on CPUs 1-$((cpus - 1)) (taskset)"
else
  gen_pin=()
  srv_pin=()
  pinning="no pinning ($cpus CPU)"
fi
clk_tck=$(getconf CLK_TCK 2>/dev/null || echo 100)

# Replicated writes (10, 11) measure for at least 3 s: a request that stalls for the
# 1 s peer timeout must not be a large part of the window.
if [ "$quick" = 1 ]; then
  dur=1.5 warm=0.5 hr_warm=2 repl_dur=3 idle_dur=2 hr_warm_n=1000000 hr_n=300000
else
  dur=8 warm=1 hr_warm=10 repl_dur=8 idle_dur=5 hr_warm_n=3000000 hr_n=1500000
fi

mkdir -p target/bench
results=target/bench/runs-$(date +%Y%m%d-%H%M%S).jsonl
: >"$results"

pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap cleanup EXIT INT TERM

# Waits up to 5 s for 127.0.0.1:$1 to accept connections.
wait_port() {
  local i
  for i in $(seq 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# start_server KIND PORT [extra args...]: starts one server in the background, pinned;
# sets $server_pid.
start_server() {
  local kind=$1 port=$2
  shift 2
  local bin=$MEMCACHED_BIN extra=(-u root)
  if [ "$kind" = ringcache ]; then bin=$RINGCACHE_BIN extra=(); fi
  [ "$(id -u)" = 0 ] || [ "$kind" = ringcache ] || extra=()
  "${srv_pin[@]}" "$bin" "${extra[@]}" -p "$port" -l 127.0.0.1 -m "$MEMORY" -t "$server_threads" -c "$max_conns" "$@" \
    >"target/bench/$kind-$port.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  wait_port "$port" || echo "bench.sh: $kind on port $port is not accepting connections" >&2
}

# Writes a JSON error line for a run that could not happen.
fail_line() {
  printf '{"scenario":"%s","side":"%s","round":%s,"error":"%s"}\n' "$1" "$2" "$3" "$4" >>"$results"
}

# run_load SCENARIO SIDE ROUND PIDS [bench flags...]: one measured run, appended to $results.
run_load() {
  local scenario=$1 side=$2 round=$3 pid_list=$4
  shift 4
  local pid_flags=() p
  for p in $pid_list; do pid_flags+=(--server-pid "$p"); done
  "${gen_pin[@]}" "$bench" load --scenario "$scenario" --side "$side" --round "$round" \
    --clk-tck "$clk_tck" "${pid_flags[@]}" "$@" >>"$results" || true
}

# side_kind SIDE: which binary serves a side.
side_kind() {
  if [ "$1" = memcached ] || [ "$self_check" = 1 ]; then echo memcached; else echo ringcache; fi
}

wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

if [ "$self_check" = 1 ]; then sides=(memcached memcached-B); else sides=(memcached ringcache); fi

# single SCENARIO [bench flags...]: A B A B on fresh single servers.
single() {
  local scenario=$1 round side port
  shift
  for round in $(seq "$rounds"); do
    for side in "${sides[@]}"; do
      port=$PORT
      echo "== $scenario: $side, round $round" >&2
      start_server "$(side_kind "$side")" "$port"
      run_load "$scenario" "$side" "$round" "$server_pid" -s "127.0.0.1:$port" "$@"
      cleanup
    done
  done
}

common=(-c 50 -v 100 -k 100000 --warmup "$warm" -D "$dur")
wanted 1 && single 1-get-heavy "${common[@]}" -g 0.9 -d 1 --prefill
wanted 2 && single 2-pipelined-16 "${common[@]}" -g 0.9 -d 16 --prefill
wanted 3 && single 3-set-only-1k -c 50 -v 1024 -k 30000 -g 0 --warmup "$warm" -D "$dur"
wanted 4 && single 4-multiget-10 "${common[@]}" -g 1 -w 10 --prefill
wanted 5 && single 5-fill-items-per-mib -c 8 -d 16 -v 100 --fill --key-prefix fill: -D 60
wanted 6 && single 6-hit-ratio-zipf -c 50 -v 100 -k 3500000 --dist zipf:0.99 -g 1 --read-through \
  --warmup-requests "$hr_warm_n" -n "$hr_n" -D 60
if wanted 12; then
  server_threads=2
  single 12-get-heavy-t2 "${common[@]}" -g 0.9 -d 1 --prefill
  server_threads=$THREADS
fi
if wanted 13; then
  # Each side holds IDLE_CONNS sockets in the generator and in the server.
  need=$((IDLE_CONNS + 1000))
  [ "$(ulimit -n)" -ge "$need" ] || ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  if [ "$(ulimit -n)" -lt "$need" ]; then
    echo "bench.sh: scenario 13 needs ulimit -n >= $need (hard limit $(ulimit -Hn)); skipped" >&2
  else
    max_conns=$((IDLE_CONNS + 100))
    single 13-idle-connections --idle -c "$IDLE_CONNS" -v 4096 --key-prefix idle: -D "$idle_dur"
    max_conns=1024
  fi
fi
wanted 14 && single 14-large-values-zipf -c 50 -v 10240 --value-max 524288 -k 2000 --dist zipf:0.99 \
  -g 0.9 --read-through --count-items --warmup "$hr_warm" -D "$dur"

# Scenarios 7-11: three ringcache nodes gossiping on 127.0.0.1.
# cluster_view PORT: "<ring version> <replicas> <alive members>" from the node's `topology`.
cluster_view() {
  local line n=0 version=- replicas=-
  exec 4<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'topology\r\n' >&4
  while IFS= read -r -t 2 line <&4; do
    line=${line%$'\r'}
    case $line in
      TOPOLOGY*) read -r _ version _ _ replicas _ <<<"$line" ;;
      MEMBER*alive) n=$((n + 1)) ;;
      MEMBER*) ;;
      *) break ;;
    esac
  done
  exec 4<&- 4>&-
  echo "$version $replicas $n"
}

# start_cluster REPLICAS SCENARIO SIDE ROUND [server args...]: starts nodes n1-n3 (client
# ports PORT+101..103, gossip PORT+1101..1103, seeded from n1) and waits up to 10 s until
# every node lists the 3 members alive with the same ring version and REPLICAS; sets
# $node_pids. If they do not converge, records a failed run and returns 1.
start_cluster() {
  local replicas=$1 scenario=$2 side=$3 round=$4 i seed views
  shift 4
  node_pids=""
  for i in 1 2 3; do
    seed=()
    [ "$i" -gt 1 ] && seed=(--seed "127.0.0.1:$((PORT + 1101))")
    start_server ringcache "$((PORT + 100 + i))" --node-name "n$i" \
      --gossip-addr "127.0.0.1:$((PORT + 1100 + i))" "${seed[@]}" "$@"
    node_pids="$node_pids $server_pid"
  done
  for _ in $(seq 50); do
    views=()
    for i in 1 2 3; do views+=("$(cluster_view "$((PORT + 100 + i))" 2>/dev/null || echo -)"); done
    if [ "${views[0]}" = "${views[1]}" ] && [ "${views[0]}" = "${views[2]}" ] &&
      [[ ${views[0]} == *" $replicas 3" ]]; then
      return 0
    fi
    sleep 0.2
  done
  fail_line "$scenario" "$side" "$round" \
    "cluster did not converge: within 10 s the nodes did not all list 3 alive members with one ring version and $replicas replicas (last seen: ${views[*]})"
  return 1
}

# cluster SCENARIO SIDE_A SIDE_B [bench flags...]: A B A B, each run on fresh nodes.
# Sides: single = one ringcache node; forward = 3 nodes, every key sent to node 1;
# direct = 3 nodes, every key sent straight to its owner.
cluster() {
  local scenario=$1 a=$2 b=$3 round side flags
  shift 3
  for round in $(seq "$rounds"); do
    for side in "$a" "$b"; do
      echo "== $scenario: $side, round $round" >&2
      if [ "$side" = single ]; then
        start_server ringcache "$((PORT + 101))"
        run_load "$scenario" "$side" "$round" "$server_pid" -s "127.0.0.1:$((PORT + 101))" "$@"
        cleanup
        continue
      fi
      if start_cluster 1 "$scenario" "$side" "$round"; then
        flags=(-s "127.0.0.1:$((PORT + 101))")
        [ "$side" = direct ] && flags+=(--direct)
        run_load "$scenario" "$side" "$round" "$node_pids" "${flags[@]}" "$@"
      fi
      cleanup
    done
  done
}

# replicated SCENARIO [bench flags...]: rounds of replicas-1, replicas-2, single and
# memcached, each run on fresh servers; on the 3-node sides the connections are spread
# round robin over the nodes. The report's A and B are replicas-1 and replicas-2.
replicated() {
  local scenario=$1 round side all
  shift
  all="127.0.0.1:$((PORT + 101)),127.0.0.1:$((PORT + 102)),127.0.0.1:$((PORT + 103))"
  for round in $(seq "$rounds"); do
    for side in replicas-1 replicas-2 single memcached; do
      echo "== $scenario: $side, round $round" >&2
      case $side in
        replicas-*)
          if start_cluster "${side#replicas-}" "$scenario" "$side" "$round" --replicas "${side#replicas-}"; then
            run_load "$scenario" "$side" "$round" "$node_pids" -s "$all" "$@"
          fi
          ;;
        single)
          start_server ringcache "$((PORT + 101))"
          run_load "$scenario" "$side" "$round" "$server_pid" -s "127.0.0.1:$((PORT + 101))" "$@"
          ;;
        memcached)
          start_server memcached "$PORT"
          run_load "$scenario" "$side" "$round" "$server_pid" -s "127.0.0.1:$PORT" "$@"
          ;;
      esac
      cleanup
    done
  done
}

if [ "$self_check" = 0 ]; then
  wanted 7 && cluster 7-cluster-3-nodes forward direct "${common[@]}" -g 0.9 --prefill
  # One connection, one request at a time: latency without queueing, so forward's p50
  # minus direct's is the price of the extra hop.
  wanted 8 && cluster 8-hop-1-conn direct forward -c 1 -v 100 -k 100000 -g 0.9 --prefill \
    --warmup "$warm" -D "$dur"
  # The same single connection against one node and against the owners of a 3-node
  # cluster: direct routing should cost nothing. (With 50 connections the three nodes
  # would share one core and batch less per wakeup, which measures the box, not us.)
  wanted 9 && cluster 9-direct-vs-single single direct -c 1 -v 100 -k 100000 -g 0.9 --prefill \
    --warmup "$warm" -D "$dur"
  repl=(-c 32 -v 32 --warmup "$warm" -D "$repl_dur" --slow-ms 900)
  wanted 10 && replicated 10-replicated-sets "${repl[@]}" -g 0 -k 1000000 --unique-sets
  # Prefilled one set at a time per connection: a replicated set may wait for the peer
  # timeout, and 32 of them queued on one connection would outlast the reply timeout.
  wanted 11 && replicated 11-replicated-mix "${repl[@]}" -g 0.9 -k 1000 --prefill --prefill-depth 1
fi

note="$(nproc) CPUs, $pinning; servers -m $MEMORY -t $THREADS; $rounds rounds (A B A B); raw runs in $results."
[ "$self_check" = 1 ] && note="SELF-CHECK: memcached in both columns, so every ratio should be near 1.0. $note"
cmd="scripts/bench.sh"
[ "$quick" = 1 ] && cmd="$cmd --quick"
[ "$self_check" = 1 ] && cmd="$cmd --self-check"
[ -n "$only" ] && cmd="$cmd --only $only"
[ "$rounds" != 2 ] && cmd="$cmd --rounds $rounds"
"$bench" report "$results" --out "$out" --command "$cmd" --note "$note"
