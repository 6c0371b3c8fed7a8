#!/usr/bin/env python3
"""Charts and a Markdown table from the membership-event test's JSON.

    python3 scripts/membership_events_chart.py [IN_DIR] [OUT_DIR]

IN_DIR (default target/membership-events) holds r<replicas>-<event>.json as written by
tests/tests/membership_events.rs; OUT_DIR (default docs/bench) gets one PNG per event,
membership-events-<event>.png, a panel per replication setting: the served rate and
the offered rate, origin loads (misses) and client-visible errors per second, over
time from the event's start, the event's own span shaded. The table of figures is
printed on stdout (Markdown). Needs matplotlib (pip install matplotlib).
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EVENTS = ["join", "leave", "crash", "freeze", "restart", "rolling"]
SMOOTH = 2  # timeline buckets per plotted point (100 ms buckets -> 200 ms points)


def load(in_dir):
    runs = {}
    for name in sorted(os.listdir(in_dir)):
        if name.endswith(".json"):
            with open(os.path.join(in_dir, name)) as f:
                r = json.load(f)
            rep = "memcached" if r.get("target") == "memcached+ketama" else r["replicas"]
            runs[(r["event"], rep)] = r
    return runs


def series(r, col):
    b = r["bucket_ms"] / 1000.0
    rows = r["timeline"]
    xs, ys = [], []
    for i in range(0, len(rows) - SMOOTH + 1, SMOOTH):
        xs.append(i * b - r["event_start_s"] + SMOOTH * b / 2)
        ys.append(sum(row[col] for row in rows[i : i + SMOOTH]) / (SMOOTH * b))
    return xs, ys


def chart(event, runs, out_dir):
    reps = sorted((rep for (ev, rep) in runs if ev == event), key=str)
    if not reps:
        return None
    fig, axes = plt.subplots(len(reps), 1, figsize=(9, 3.2 * len(reps)), sharex=True, squeeze=False)
    for ax, rep in zip(axes[:, 0], reps):
        r = runs[(event, rep)]
        x, served = series(r, 1)
        _, offered = series(r, 0)
        _, loads = series(r, 3)
        _, errors = series(r, 4)
        ax.plot(x, offered, color="0.6", lw=1, label="offered ops/s")
        ax.plot(x, served, color="tab:blue", lw=1.5, label="served ops/s")
        ax.axhline(0.9 * r["rate"], color="tab:blue", ls=":", lw=0.8, label="90% of offered")
        ax.set_ylabel("ops/s")
        # A catch-up burst after a stall can reach several times the rate: cut it.
        ax.set_ylim(0, r["rate"] * 2.5)
        ax2 = ax.twinx()
        ax2.plot(x, loads, color="tab:orange", lw=1.2, label="origin loads/s")
        ax2.plot(x, errors, color="tab:red", lw=1.2, label="errors/s")
        ax2.set_ylabel("origin loads, errors /s")
        ax2.set_ylim(bottom=0, top=max(max(loads + errors) * 1.15, 50))
        ax.axvspan(0, r["event_end_s"] - r["event_start_s"], color="0.9", zorder=0)
        ax.axvline(r["window_end_s"] - r["event_start_s"], color="0.4", ls="--", lw=0.8)
        ax.axvline(r["baseline_start_s"] - r["event_start_s"], color="0.4", ls="--", lw=0.8)
        ax.set_title(
            f"{event}, {'memcached + informed ketama' if rep == 'memcached' else f'ringcache --replicas {rep}'}: extra origin loads {r['extra_origin_loads']:.0f}, "
            f"errors {r['errors_in_window']}, seconds under 90% {r['seconds_under_90']}",
            fontsize=10,
        )
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="lower left", fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("seconds from the event's start (shaded: until the cluster settled; dashed: windows)")
    fig.tight_layout()
    path = os.path.join(out_dir, f"membership-events-{event}.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def table(runs):
    print("| event | ringcache --replicas | event took (s) | window (s) | offered ops | extra origin loads | "
          "errors (% of ops) | errors by kind | s under 90% | stale | lost | misses / keys read after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for event in EVENTS:
        for rep in (1, 2, "memcached"):
            r = runs.get((event, rep))
            if r is None:
                continue
            kinds = ", ".join(f"`{k}` {v}" for k, v in sorted(r["errors"].items(), key=lambda kv: -kv[1])) or "-"
            pct = 100.0 * r["errors_in_window"] / max(r["offered_in_window"], 1)
            print(
                f"| {event} | {'memcached+ketama' if rep == 'memcached' else rep} | {r['event_end_s'] - r['event_start_s']:.1f} | "
                f"{r['window_end_s'] - r['event_start_s']:.1f} | {r['offered_in_window']} | "
                f"{r['extra_origin_loads']:.0f} ({r['origin_loads_in_window']} vs {r['origin_loads_expected']:.0f}) | "
                f"{r['errors_in_window']} ({pct:.2f}%) | {kinds} | {r['seconds_under_90']} | "
                f"{r['stale_reads']} | {r['lost_acknowledged']} | {r['sweep_misses']} / {r['sweep_checked']} |"
            )


def main():
    in_dir = sys.argv[1] if len(sys.argv) > 1 else "target/membership-events"
    out_dir = sys.argv[2] if len(sys.argv) > 2 else "docs/bench"
    os.makedirs(out_dir, exist_ok=True)
    runs = load(in_dir)
    if not runs:
        sys.exit(f"no r*-*.json in {in_dir}: run the test first")
    for event in EVENTS:
        path = chart(event, runs, out_dir)
        if path:
            print(f"wrote {path}", file=sys.stderr)
    table(runs)


if __name__ == "__main__":
    main()
