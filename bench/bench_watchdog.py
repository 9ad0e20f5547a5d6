#!/usr/bin/python3
"""bench_watchdog.py - coordinator failover time and a peer's footprint.

Run as root (it builds a lab of network namespaces, see tests/lab):

    bench/bench_watchdog.py [--runs 20] [--bin build/release/pgvigil]

1. failover: 3 peers at default settings; kill -9 of the coordinator ->
   the first moment another peer reports a valid lease on its control
   socket (polled every 5 ms). Repeated --runs times, each on a fresh
   cluster, so boot holds and old terms do not blur the figure.
2. clean stop: SIGTERM of the coordinator -> a new valid lease (handover).
3. footprint: 5 peers at default heartbeat for --seconds; CPU time (utime +
   stime from /proc) per wall second and peak RSS (VmHWM) of one peer.

Prints tables with p50/p99 (nearest-rank) and min/max. Timings are not
asserted anywhere: this is a measurement, not a test.
"""

import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "tests", "lab"))
import pgvlab  # noqa: E402


def status(lab, host, timeout=0.2):
    return lab.pgvigil_status(host, timeout)


def holder(lab, hosts):
    for h in hosts:
        st = status(lab, h)
        if st and st.get("lease_remaining_ms") is not None:
            return h
    return None


def wait_holder(lab, hosts, deadline_s, exclude=None):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        h = holder(lab, [x for x in hosts if x != exclude])
        if h:
            return h, time.monotonic()
        time.sleep(0.005)
    return None, None


def cluster(binary, n):
    lab = pgvlab.Lab()
    peers = [(i, f"gw{i}") for i in range(1, n + 1)]
    for i, h in peers:
        lab.add_host(h, *pgvlab.peer_addr(i))
    conf = lab.pgvigil_config(peers, log_level="warning")
    pvs = {h: lab.start_pgvigil(h, binary, conf) for _, h in peers}
    return lab, [h for _, h in peers], pvs


def pct(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, -(-len(xs) * p // 100) - 1))
    return xs[int(k)]


def row(name, xs, unit="ms"):
    if not xs:
        return f"| {name} | 0 | - | - | - | - |"
    return (f"| {name} | {len(xs)} | {pct(xs, 50):.0f} {unit} | {pct(xs, 99):.0f} {unit} | "
            f"{min(xs):.0f} {unit} | {max(xs):.0f} {unit} |")


def bench_failover(binary, runs, sig):
    out = []
    for r in range(runs):
        lab, hosts, pvs = cluster(binary, 3)
        try:
            old, _ = wait_holder(lab, hosts, 5)
            if not old:
                print(f"run {r}: no coordinator at start", file=sys.stderr)
                continue
            time.sleep(0.3)  # a steady lease, echoes flowing
            t0 = time.monotonic()
            pvs[old].signal(sig)
            new, t1 = wait_holder(lab, hosts, 5, exclude=old)
            if new:
                out.append((t1 - t0) * 1000)
            else:
                print(f"run {r}: no new coordinator within 5 s", file=sys.stderr)
        finally:
            lab.teardown()
    return out


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def bench_footprint(binary, seconds):
    lab, hosts, pvs = cluster(binary, 5)
    try:
        wait_holder(lab, hosts, 5)
        time.sleep(1)
        res = []
        for h in hosts:
            pid = pvs[h].pid
            c0, t0 = proc_stat(pid), time.monotonic()
            res.append((h, pid, c0, t0))
        time.sleep(seconds)
        rows = []
        coord = holder(lab, hosts)
        for h, pid, c0, t0 in res:
            cpu = (proc_stat(pid) - c0) / (time.monotonic() - t0) * 100
            rows.append((h, cpu, proc_kib(pid, "VmHWM") / 1024,
                         proc_kib(pid, "RssAnon") / 1024, h == coord))
        return rows
    finally:
        lab.teardown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.realpath(__file__)),
                                                  "..", "build", "release", "pgvigil"))
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    if os.geteuid() != 0:
        sys.exit("bench_watchdog: run as root (network namespaces)")
    kill = bench_failover(binary, a.runs, signal.SIGKILL)
    stop = bench_failover(binary, a.runs, signal.SIGTERM)
    print("\nCoordinator failover, 3 peers, default settings (heartbeat 100 ms, "
          "election timeout 700-1100 ms, lease 500 ms)\n")
    print("| fault -> another peer holds a valid lease | runs | p50 | p99 | min | max |")
    print("|---|---|---|---|---|---|")
    print(row("kill -9 of the coordinator", kill))
    print(row("SIGTERM of the coordinator (handover)", stop))
    fp = bench_footprint(binary, a.seconds)
    print(f"\nFootprint, 5 peers, default heartbeat, {a.seconds} s\n")
    print("| peer | role | CPU (% of a core) | peak RSS | of which private (RssAnon) |")
    print("|---|---|---|---|---|")
    for h, cpu, rss, anon, is_coord in fp:
        print(f"| {h} | {'coordinator' if is_coord else 'follower'} | {cpu:.2f} % | "
              f"{rss:.1f} MiB | {anon:.1f} MiB |")
    print("\n(The rest of RSS is file-backed pages of shared libraries, mostly libcrypto,"
          " shared with every other process that maps them.)")


if __name__ == "__main__":
    main()
