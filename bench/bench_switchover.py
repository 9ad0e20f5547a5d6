#!/usr/bin/python3
"""bench_switchover.py - how long writes stop in a planned switchover, and what is lost.

Run as root (it builds a lab of network namespaces, see tests/lab):

    bench/bench_switchover.py [--runs 20] [--bin build/release/pgvigil] [--sync]

One lab in the colocated layout of bench_failover.py: PostgreSQL 15 on h1
(the primary) and h2 (its streaming standby, synchronous with --sync), pgvigil
peers 1-3 (3 a witness) with default timings, [vip] follow = primary and the
shipped hook scripts. A writer in the client namespace opens a new connection
to the VIP every 50 ms and INSERTs one row in it (Lab.start_writer).

Each run, once the cluster is steady (the record names the primary, no step,
nobody flagged needs-rejoin, both backends up, the VIP held next to the
primary) and the writer has been acknowledged for 0.5 s, runs
`pgvigilctl switchover --to OTHER` on the witness's peer (t0 = just before)
and measures:

  gap     the longest time between two consecutive acknowledged INSERTs
          around the switchover: the clients' write outage;
  first   t0 -> the first INSERT acknowledged by the new primary (the old
          one may acknowledge some that started after t0, until it stops);
  ctl     how long pgvigilctl took: request, checks, every step, done.

Runs alternate h1 -> h2 and h2 -> h1 (the old primary rejoins as a standby
between them: rejoin_command). At the end every acknowledged id is looked up
on the current primary: "acked rows lost" must be 0 (the clean stop sends all
WAL to the standby before the target is promoted).

Prints a markdown table with p50/p99 (nearest-rank), min and max. Timings are
not asserted: a measurement, not a test.
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.realpath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))
sys.path.insert(0, HERE)
import pgvlab  # noqa: E402
import bench_failover as bf  # noqa: E402

VIP = bf.VIP


def wait_steady(lab, layout, primary, timeout=120.0):
    """The record names `primary`, no step, no needs-rejoin on every peer;
    the primary's peer coordinates and holds the VIP; every backend is up
    (the other one as a standby)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        sts = {i: lab.pgvigil_status(h) for i, h in layout["peers"]}
        last = {i: st and st.get("failover") for i, st in sts.items()}
        ok = all(st and (st.get("failover") or {}).get("primary") == primary and
                 (st.get("failover") or {}).get("step") == "none" and
                 not (st.get("failover") or {}).get("needs_rejoin") for st in sts.values())
        if ok:
            st = sts[primary]
            b = {x["id"]: x for x in st.get("backends") or []}
            if st.get("coordinator") == primary and (st.get("vip") or {}).get("state") == "held" \
                    and all((b.get(i) or {}).get("state") == "up" for i, _ in layout["backends"]) \
                    and all((b.get(i) or {}).get("role") == ("primary" if i == primary else "standby")
                            for i, _ in layout["backends"]):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not steady with primary {primary} within {timeout} s: {last}")
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--bin", default=os.environ.get("PGVIGIL_BIN") or os.path.join(
        REPO, "build", "release", "pgvigil"))
    ap.add_argument("--sync", action="store_true", help="h2 is a synchronous standby of h1")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_switchover: run as root (network namespaces)")
    binary = os.path.abspath(a.bin)
    ctl = os.path.join(os.path.dirname(binary), "pgvigilctl")
    if not os.access(binary, os.X_OK) or not os.access(ctl, os.X_OK):
        sys.exit(f"bench_switchover: {binary} or {ctl} not found (--bin)")
    bf.SYNC = a.sync
    t_start = time.monotonic()
    gaps, firsts, ctls, errors = [], [], [], 0
    lab, layout = bf.make_lab()
    try:
        conf = bf.pgvigil_config(lab, layout)
        for _, h in layout["peers"]:
            lab.start_pgvigil(h, binary, conf)
        wait_steady(lab, layout, 1)
        writer = lab.start_writer(VIP, bf.PG_PORT, period=bf.PERIOD,
                                  attempt_timeout=bf.ATTEMPT_TIMEOUT)
        primary = 1
        for r in range(a.runs):
            target = 2 if primary == 1 else 1
            try:
                wait_steady(lab, layout, primary)
                bf.wait_steady(writer)
                t0 = time.monotonic()
                p = subprocess.run([ctl, "-s", lab.pgvigil_socket("h3"), "switchover", "--to",
                                    str(target)], capture_output=True, text=True, timeout=180,
                                   stdin=subprocess.DEVNULL)
                t_ctl = time.monotonic() - t0
                if p.returncode != 0:
                    raise RuntimeError(f"pgvigilctl exit {p.returncode}: {p.stderr.strip()}")
                # The old primary may still acknowledge writes that started
                # just after the request: it runs until its clean stop.
                deadline = time.monotonic() + bf.RUN_DEADLINE
                while not writer.acks_after(t0, srv=f"h{target}") and time.monotonic() < deadline:
                    time.sleep(0.02)
                acks = writer.acks_after(t0, srv=f"h{target}")
                if not acks:
                    raise RuntimeError(f"no write acknowledged by h{target} within "
                                       f"{bf.RUN_DEADLINE:.0f} s")
                first = min(a[1] for a in acks) - t0
                time.sleep(0.5)
                gap = writer.write_gap(t0 - 1.0, time.monotonic())
                primary = target
            except Exception as e:                  # a broken run is reported, not hidden
                errors += 1
                print(f"run {r + 1}: error: {e}", file=sys.stderr, flush=True)
                break
            gaps.append(gap * 1000)
            firsts.append(first * 1000)
            ctls.append(t_ctl * 1000)
            fails = " ".join(f"{k}x{v}" for k, v in sorted(writer.failures(t0).items()))
            print(f"run {r + 1}: h{3 - target} -> h{target}: write gap {gap * 1000:.0f} ms, "
                  f"first ack {first * 1000:.0f} ms, pgvigilctl {t_ctl * 1000:.0f} ms; "
                  f"failed attempts since the request: {fails or 'none'}",
                  file=sys.stderr, flush=True)
        writer.stop()
        acked = set(writer.acked())
        lost, where = bf.rows_lost(lab, acked)
    finally:
        lab.teardown()
    print(f"\nSwitchover: pgvigilctl switchover --to OTHER, alternating h1 <-> h2; writes through "
          f"the VIP {VIP} (a new connection every {bf.PERIOD * 1000:.0f} ms; "
          f"{'synchronous' if a.sync else 'asynchronous'} standby)\n")
    print("| measure | runs | p50 | p99 | min | max |")
    print("|---|---|---|---|---|---|")
    for name, xs in (("write gap (longest between two acknowledged INSERTs)", gaps),
                     ("request -> first INSERT acknowledged by the new primary", firsts),
                     ("pgvigilctl switchover, request to done", ctls)):
        runs = f"{len(xs)}" + (f" ({errors} broken)" if errors else "")
        if xs:
            print(f"| {name} | {runs} | {bf.pct(xs, 50):.0f} ms | {bf.pct(xs, 99):.0f} ms | "
                  f"{min(xs):.0f} ms | {max(xs):.0f} ms |")
        else:
            print(f"| {name} | {runs} | - | - | - | - |")
    print(f"\nacknowledged rows lost: {len(lost) if lost is not None else '?'} of {len(acked)} "
          f"(read on {where})")
    print(f"(total runtime {time.monotonic() - t_start:.0f} s)")
    if errors or lost:
        sys.exit(1)


if __name__ == "__main__":
    main()
