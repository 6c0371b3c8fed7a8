#!/usr/bin/env bash
# Start, inspect and stop a local ringcache cluster on 127.0.0.1.
#
#   scripts/cluster.sh start [N]   build once (release), start N nodes (default 3)
#   scripts/cluster.sh status      each node's view: members, ring version, its share
#   scripts/cluster.sh add         start one more node, seeded from the first
#   scripts/cluster.sh kill NAME   SIGKILL one node (to try failures), e.g. node-2
#   scripts/cluster.sh stop        SIGTERM every node (they leave the cluster politely)
#
# Node i (1-based) is named node-i, serves memcached on port BASE_PORT+i-1 and gossips
# on UDP port GOSSIP_BASE+i-1. Logs and pid files live in .cluster/ at the repo root.
# Environment: BASE_PORT (11211), GOSSIP_BASE (17946), REPLICAS (1), MEMORY (64, MiB),
# THREADS (2), RINGCACHE_BIN (a prebuilt binary; skips the build), CLUSTER_STATE (the
# folder for logs and pid files, .cluster).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${CLUSTER_STATE:-"$root/.cluster"}
BASE_PORT=${BASE_PORT:-11211}
GOSSIP_BASE=${GOSSIP_BASE:-17946}
REPLICAS=${REPLICAS:-1}
MEMORY=${MEMORY:-64}
THREADS=${THREADS:-2}

die() { echo "cluster.sh: $*" >&2; exit 1; }

binary() {
  if [ -n "${RINGCACHE_BIN:-}" ]; then
    echo "$RINGCACHE_BIN"
    return
  fi
  (cd "$root" && cargo build --release -q -p ringcache-server) >&2 || die "build failed"
  echo "$root/target/release/ringcache"
}

# Sends one command to a node and prints its reply up to END (or the first line that
# is not STAT/MEMBER/TOPOLOGY). Gives up after 2 seconds.
ask() {
  local port=$1 cmd=$2 line
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf '%s\r\n' "$cmd" >&3
  while IFS= read -r -t 2 line <&3; do
    line=${line%$'\r'}
    echo "$line"
    case $line in STAT*|MEMBER*|TOPOLOGY*) ;; *) break ;; esac
  done
  exec 3<&- 3>&-
}

node_alive() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

# A port another program holds would make a node exit while that program answers in
# its place: refuse before starting anything.
check_port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    die "port $1 (for $2) is already taken by another process; choose another BASE_PORT"
  fi
}

start_node() {
  local bin=$1 i=$2 name="node-$2"
  local port=$((BASE_PORT + i - 1)) gossip=$((GOSSIP_BASE + i - 1))
  node_alive "$name" && die "$name is already running"
  check_port_free "$port" "$name"
  local seed=()
  [ "$i" -gt 1 ] && seed=(--seed "127.0.0.1:$GOSSIP_BASE")
  "$bin" -p "$port" -l 127.0.0.1 -m "$MEMORY" -t "$THREADS" \
    --node-name "$name" --gossip-addr "127.0.0.1:$gossip" --replicas "$REPLICAS" "${seed[@]}" \
    >"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
  echo "$port" >"$state/$name.port"
  # Wait (bounded) until this node answers on its port with its own name (not some
  # other program that took the port in the meantime).
  for _ in $(seq 1 100); do
    node_alive "$name" || { rm -f "$state/$name.pid"; die "$name exited; see $state/$name.log"; }
    if ask "$port" topology 2>/dev/null | grep -q "^MEMBER $name "; then
      echo "started $name: memcached on 127.0.0.1:$port, gossip on udp 127.0.0.1:$gossip (log: $state/$name.log)"
      return
    fi
    sleep 0.1
  done
  die "$name did not start listening on $port"
}

nodes() { ls "$state"/*.pid 2>/dev/null | sed 's#.*/##; s#\.pid$##' | sort -V; }

cmd=${1:-}
case $cmd in
  start)
    n=${2:-3}
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || die "start takes a node count"
    mkdir -p "$state"
    for i in $(seq 1 "$n"); do
      node_alive "node-$i" || check_port_free $((BASE_PORT + i - 1)) "node-$i"
    done
    bin=$(binary)
    for i in $(seq 1 "$n"); do start_node "$bin" "$i"; done
    echo
    echo "Connect with any memcached client to any node, e.g.: telnet 127.0.0.1 $BASE_PORT"
    echo "Then: set greeting 0 0 5 / hello / get greeting. Inspect: scripts/cluster.sh status"
    ;;
  add)
    mkdir -p "$state"
    last=$(nodes | sed 's/node-//' | sort -n | tail -1)
    bin=$(binary)
    start_node "$bin" $(( ${last:-0} + 1 ))
    ;;
  status)
    [ -n "$(nodes)" ] || die "no cluster in $state (start one with: scripts/cluster.sh start)"
    for name in $(nodes); do
      port=$(cat "$state/$name.port")
      if node_alive "$name"; then
        echo "== $name (127.0.0.1:$port, pid $(cat "$state/$name.pid"))"
        ask "$port" topology || echo "   (no answer)"
        ask "$port" stats | grep -E 'STAT (curr_items|cluster_ring_share|cluster_forwarded) ' || true
      else
        echo "== $name (127.0.0.1:$port): not running"
      fi
    done
    ;;
  kill)
    name=${2:-}
    [ -n "$name" ] || die "kill takes a node name, e.g. node-2"
    node_alive "$name" || die "$name is not running"
    kill -KILL "$(cat "$state/$name.pid")"
    echo "killed $name (SIGKILL)"
    ;;
  stop)
    for name in $(nodes); do
      if node_alive "$name"; then
        kill -TERM "$(cat "$state/$name.pid")"
        echo "stopping $name"
      fi
    done
    for name in $(nodes); do
      for _ in $(seq 1 50); do node_alive "$name" || break; sleep 0.1; done
      node_alive "$name" && kill -KILL "$(cat "$state/$name.pid")"
      rm -f "$state/$name.pid" "$state/$name.port"
    done
    echo "stopped"
    ;;
  *)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$cmd" ] || exit 2
    ;;
esac
