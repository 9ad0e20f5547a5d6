#!/usr/bin/python3
"""bench_failover.py - how long writes stop when the primary fails, and what is lost.

Run as root (it builds a lab of network namespaces, see tests/lab):

    bench/bench_failover.py [--runs 20] [--bin build/release/pgvigil]
                            [--only pgvigil|pgpool] [--profile defaults|fastest]
                            [--fault kill|host] [--sync]

Each run builds a fresh lab in the colocated layout (Lab.add_colocated_cluster):
hosts h1, h2, h3 (192.0.2.1-3) and a client (192.0.2.100). PostgreSQL 15 runs
on h1 (the primary) and h2 (an asynchronous streaming standby), listening on
all addresses; h3 has none (the witness). The failover manager runs on all
three:

  pgvigil     peers 1-3 (peer 3 a witness), default timings, [vip] follow =
              primary, the failover hooks of hooks/scripts and the lab's fence
              hook (tests/lab/fence-backend-lab); clients write to VIP:5432,
              straight to PostgreSQL.
  pgpool-II   one pgpool per host (bench/pgpool_lab.py): watchdog with the VIP
              as delegate IP, h1 the watchdog leader, heartbeat lifecheck,
              failover_command = pg_ctl promote; clients write to VIP:9999,
              through pgpool. Two profiles: its defaults (health checks off)
              and the fastest sane settings (1 s health checks, 1 s / 2 s
              heartbeat); see pgpool_lab.py.

In the client namespace a writer (Lab.start_writer) opens a new connection to
the VIP every 50 ms and INSERTs one row (its own sequence number) in it,
several attempts in flight, 5 s timeout each, and logs every attempt (start,
end, acked or why not, the host whose PostgreSQL acked). Before the fault the
system must be steady (pgvigil: the VIP held on h1; pgpool: see
PgpoolCluster.wait_ready, its lifecheck only starts ~10 wd_intervals after
pgpool does, so a defaults run spends ~100 s there) and the writer
acknowledged steadily for 0.5 s. Faults (t0 = just before the first step):

  kill   kill -9 of the primary's postmaster (the host and its failover
         manager stay up).
  host   primary host lost: every process in h1's namespace frozen, its link
         set down (on the bridge side), then every process killed
         (Lab.crash_host); for both systems h1 also holds the VIP.

The figure of a run (RTO) is t0 -> the acknowledgement of the first INSERT
that *started* after t0. A run with no acknowledgement within 30 s counts as
"did not recover". After the first acknowledgement the writer goes on for
1 s, then the rows are read back from the (new) primary (without one, from
the surviving standby): "acked rows lost" counts acknowledged ids missing
there; each one is listed on stderr with when it was acked and by whom.
Replication is asynchronous (the lab's default), so a commit acknowledged in
the last milliseconds before the fault and not yet streamed is lost by any
failover manager: after a kill -9 of the postmaster, a backend already
running a client's INSERT still commits and acknowledges it while the
WAL sender, which exits as soon as its postmaster is gone, never sends it
(such a row shows as acked a few ms *after* t0 by the old primary). With
--sync, h2 is a synchronous standby: such a commit is never acknowledged.

Everything runs inside lab namespaces through lab.popen()/lab.run(), is
tracked and stopped by pid, and has a deadline. Nothing is aimed at a lab
address from the root namespace. Prints a markdown table with p50/p99
(nearest-rank), min and max. Timings are not asserted: a measurement, not a
test.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.realpath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))
sys.path.insert(0, HERE)
import pgvlab  # noqa: E402
import pgpool_lab  # noqa: E402

VIP = pgvlab.vip_addr(0)[0]
HOSTS = [(1, "h1"), (2, "h2"), (3, "h3")]
PG_HOSTS = ["h1", "h2"]                # backends 1, 2; h1 starts as the primary
PRIMARY = "h1"
PG_PORT = 5432
RUN_DEADLINE = 30.0                    # fault -> first ack, at most
AFTER = 1.0                            # writer keeps going this long after the first ack
PERIOD = 0.050
ATTEMPT_TIMEOUT = 5.0


def wait_steady(writer, timeout=30.0, need=0.5):
    """Every attempt that ended in the last `need` s (at least 5 of them) was
    acknowledged, and attempts have been ending for longer than that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        res = writer.results()
        recent = [r for r in res if r[1] >= now - need]
        if len(recent) >= 5 and all(r[2] for r in recent) and \
                any(r[1] <= now - need for r in res):
            return
        time.sleep(0.05)
    raise RuntimeError(f"writes through the VIP not steady within {timeout}s; "
                       f"last attempts: {writer.lines()[-3:]}")


def first_ack_after(writer, t0, timeout=RUN_DEADLINE):
    """(seconds from t0, server) of the first acknowledged INSERT that started
    at or after t0, waiting up to `timeout` s after t0; (None, None) if none."""
    while True:
        acks = writer.acks_after(t0)
        best = min(acks, key=lambda r: r[1]) if acks else None
        if best is not None and time.monotonic() - best[1] > 2 * PERIOD:
            return best[1] - t0, best[4]
        if time.monotonic() - t0 > timeout:
            if best is not None and best[1] - t0 <= timeout:
                return best[1] - t0, best[4]
            return None, None
        time.sleep(0.02)


# --------------------------------------------------------------------------
# the lab

SYNC = False                           # --sync: h2 a synchronous standby of h1


def make_lab():
    """The colocated layout (Lab.add_colocated_cluster): h1 primary, h2 its
    streaming standby (synchronous with --sync), h3 the witness host, the
    client; PostgreSQL on every address with room for pgpool's connections;
    the table fo_rows."""
    lab = pgvlab.Lab()
    try:
        layout = lab.add_colocated_cluster(backends=2, witness=True, port=PG_PORT,
                                           sync_standby="h2" if SYNC else None)
    except BaseException:
        lab.teardown()
        raise
    return lab, layout


def rows_lost(lab, acked, skip=()):
    """Acknowledged ids missing on the primary; without a primary, on the
    surviving standby. Returns (set of lost ids, where they were read)."""
    alive = []
    for h in PG_HOSTS:
        if h in skip or h in lab._isolated or not lab.pg_instance(h).pid:
            continue
        try:
            rec = lab.psql(h, "SELECT pg_is_in_recovery()", timeout=10)
        except pgvlab.LabError:
            continue
        alive.append((rec == "f", h))
    if not alive:
        return None, "no PostgreSQL left"
    alive.sort(reverse=True)
    h = alive[0][1]
    return acked - lab.table_ids(h), h + ("" if alive[0][0] else " (standby: no primary)")


def inject(lab, fault):
    if fault == "kill":
        lab.stop_postgres(PRIMARY, "kill", 5.0)
    elif fault == "host":
        lab.crash_host(PRIMARY, "link")
    else:
        raise ValueError(fault)


def measure(lab, writer, fault):
    """Fault, first ack, the writer's extra second, rows read back."""
    t0 = time.monotonic()
    inject(lab, fault)
    took, server = first_ack_after(writer, t0)
    if took is not None:
        time.sleep(AFTER)
    writer.stop()
    acked = set(writer.acked())
    lost, where = rows_lost(lab, acked)
    info = {n: (ts - t0, te - t0, what) for ts, te, ok, n, what in writer.results() if ok}
    return {"rto": took, "server": server, "acked": len(acked),
            "lost": len(lost) if lost is not None else None,
            "lost_detail": " ".join(f"id {n} (started {info[n][0] * 1000:+.0f} ms, acked "
                                    f"{info[n][1] * 1000:+.0f} ms by {info[n][2]})"
                                    for n in sorted(lost or ())),
            "where": where, "fail": writer.failures(t0)}


# --------------------------------------------------------------------------
# pgpool-II

def run_pgpool(profile, fault):
    lab, _ = make_lab()
    try:
        pp = pgpool_lab.PgpoolCluster(lab, [h for _, h in HOSTS], PG_HOSTS, VIP, profile=profile)
        pp.start()
        holders = pp.vip_holders()
        if holders != [PRIMARY]:
            raise RuntimeError(f"pgpool VIP on {holders}, expected on {PRIMARY}")
        writer = lab.start_writer(VIP, pgpool_lab.PGPOOL_PORT, period=PERIOD,
                                  attempt_timeout=ATTEMPT_TIMEOUT)
        wait_steady(writer)
        res = measure(lab, writer, fault)
        res["holder"] = ",".join(pp.vip_holders()) or "none"
        pp.stop()
        return res
    finally:
        lab.teardown()


# --------------------------------------------------------------------------
# pgvigil

def failover_commands(lab):
    """[failover] hook command lines as the system tests use them: the
    shipped scripts (pgvigil-promote by SQL, pgvigil-stop on the old
    primary's own peer, pgvigil-follow over the lab's ssh stand-in) and the
    lab's STONITH tests/lab/fence-backend-lab (Lab.failover_hooks)."""
    return lab.failover_hooks()


def pgvigil_config(lab, layout):
    """Peers 1-3 (3 the witness), backends 1-2 with their peer and data
    directory, [vip] follow = primary, the failover hooks; default timings."""
    return lab.colocated_config(layout, {
        "vip": {"address": VIP, "interface": "eth0", "follow": "primary"},
        "failover": failover_commands(lab)})


def wait_pgvigil_steady(lab, pvs, layout, timeout=30.0):
    """Every peer answers and records backend 1 as the primary with no step
    in progress; peer 1 coordinates and holds the VIP; every backend is up in
    its checks (the steady state of tests/system/test_failover.py)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        for h, pv in pvs.items():
            if not pv.alive():
                raise RuntimeError(f"pgvigil on {h} exited; log tail:\n{pv.log_tail(20)}")
        sts = {i: lab.pgvigil_status(h) for i, h in layout["peers"]}
        last = {i: st and {"failover": st.get("failover"), "coordinator": st.get("coordinator"),
                           "vip": (st.get("vip") or {}).get("state")} for i, st in sts.items()}
        if all(st and (st.get("failover") or {}).get("primary") == 1 and
               (st.get("failover") or {}).get("step") == "none" for st in sts.values()):
            st = sts[1]
            b = {x["id"]: x for x in st.get("backends") or []}
            if st.get("coordinator") == 1 and (st.get("vip") or {}).get("state") == "held" and \
                    all((b.get(i) or {}).get("state") == "up" for i, _ in layout["backends"]):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"pgvigil not steady within {timeout} s: {last}")
        time.sleep(0.1)


def run_pgvigil(binary, fault):
    lab, layout = make_lab()
    try:
        conf = pgvigil_config(lab, layout)
        pvs = {h: lab.start_pgvigil(h, binary, conf) for _, h in layout["peers"]}
        wait_pgvigil_steady(lab, pvs, layout)
        writer = lab.start_writer(VIP, PG_PORT, period=PERIOD, attempt_timeout=ATTEMPT_TIMEOUT)
        wait_steady(writer)
        res = measure(lab, writer, fault)
        holders = []
        for _, h in HOSTS:
            if h in lab._isolated:
                continue
            r = lab.run(h, [pgvlab.IP, "-o", "-4", "addr", "show", "dev", "eth0"], timeout=10)
            if f" {VIP}/" in r.stdout:
                holders.append(h)
        res["holder"] = ",".join(holders) or "none"
        done = [e for pv in pvs.values() for e in pgvlab.log_events(pv, "failover-done")]
        res["note"] = "; failover-done " + (", ".join(
            (f"{e['duration_ms']} ms" if "duration_ms" in e else "resumed by another coordinator")
            + f" (new {e.get('new', '?')})" for e in done) or "never")
        return res
    finally:
        lab.teardown()


# --------------------------------------------------------------------------

def pct(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, -(-len(xs) * p // 100) - 1))
    return xs[int(k)]


def row(system, fault, xs, failed, errors, lost, acked):
    runs = f"{len(xs) + failed + errors}"
    notes = []
    if failed:
        notes.append(f"{failed} did not recover within {RUN_DEADLINE:.0f} s")
    if errors:
        notes.append(f"{errors} broken")
    if notes:
        runs += " (" + ", ".join(notes) + ")"
    lost_s = f"{lost} of {acked}"
    if not xs:
        return f"| {system} | {fault} | {runs} | - | - | - | - | {lost_s} |"
    return (f"| {system} | {fault} | {runs} | {pct(xs, 50):.0f} ms | {pct(xs, 99):.0f} ms | "
            f"{min(xs):.0f} ms | {max(xs):.0f} ms | {lost_s} |")


def series(name, fn, runs):
    xs, failed, errors, lost, acked = [], 0, 0, 0, 0
    for r in range(runs):
        t = time.monotonic()
        try:
            res = fn()
        except Exception as e:                          # a broken run is reported, not hidden
            print(f"{name} run {r + 1}: error: {e}", file=sys.stderr, flush=True)
            errors += 1
            continue
        acked += res["acked"]
        if res["lost"] is not None:
            lost += res["lost"]
        took = res["rto"]
        fails = " ".join(f"{k}x{v}" for k, v in sorted(res["fail"].items()))
        if took is None:
            failed += 1
            if res["lost"]:
                print(f"{name} run {r + 1}: lost {res['lost_detail']} (times from the fault)",
                      file=sys.stderr, flush=True)
            print(f"{name} run {r + 1}: no acknowledged write within {RUN_DEADLINE:.0f} s; "
                  f"VIP on {res['holder']}; acked {res['acked']}, lost {res['lost']} "
                  f"(read on {res['where']}); failures: {fails}{res.get('note', '')} "
                  f"[{time.monotonic() - t:.0f} s]", file=sys.stderr, flush=True)
            continue
        if res["lost"]:
            print(f"{name} run {r + 1}: lost {res['lost_detail']} (times from the fault)",
                  file=sys.stderr, flush=True)
        xs.append(took * 1000)
        print(f"{name} run {r + 1}: {took * 1000:.0f} ms, first ack by {res['server']}, "
              f"VIP on {res['holder']}; acked {res['acked']}, lost {res['lost']} "
              f"(read on {res['where']}); failures: {fails}{res.get('note', '')} "
              f"[{time.monotonic() - t:.0f} s]", file=sys.stderr, flush=True)
    return xs, failed, errors, lost, acked


FAULTS = {"kill": "primary postmaster kill -9",
          "host": "primary host lost (link down + kill -9 of all)"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--bin", default=os.environ.get("PGVIGIL_BIN") or os.path.join(
        REPO, "build", "release", "pgvigil"))
    ap.add_argument("--only", choices=("pgvigil", "pgpool"))
    ap.add_argument("--profile", choices=pgpool_lab.PROFILES, action="append",
                    help="pgpool-II profile(s) to run (default: both)")
    ap.add_argument("--fault", choices=tuple(FAULTS), action="append",
                    help="fault(s) to inject (default: both)")
    ap.add_argument("--sync", action="store_true",
                    help="h2 is a synchronous standby (synchronous_standby_names on h1 "
                         "only, so the promoted h2 does not wait for anyone)")
    a = ap.parse_args()
    global SYNC
    SYNC = a.sync
    if os.geteuid() != 0:
        sys.exit("bench_failover: run as root (network namespaces)")
    binary = os.path.abspath(a.bin)
    faults = a.fault or list(FAULTS)
    profiles = a.profile or list(pgpool_lab.PROFILES)
    t_start = time.monotonic()
    rows = []
    if a.only in (None, "pgvigil"):
        if not os.access(binary, os.X_OK):
            sys.exit(f"bench_failover: {binary} not found (--bin)")
        for fault in faults:
            s = series(f"pgvigil {fault}", lambda: run_pgvigil(binary, fault), a.runs)
            rows.append(row("pgvigil (defaults)", FAULTS[fault], *s))
    if a.only in (None, "pgpool"):
        ver = pgpool_lab.pgpool_version()
        for profile in profiles:
            for fault in faults:
                s = series(f"pgpool {profile} {fault}", lambda: run_pgpool(profile, fault),
                           a.runs)
                rows.append(row(f"pgpool-II {ver} ({profile})", FAULTS[fault], *s))
    print(f"\nFailover: fault -> first acknowledged INSERT through the VIP {VIP} (a new "
          f"connection every {PERIOD * 1000:.0f} ms; colocated layout, 2 PostgreSQL 15 "
          f"({'synchronous' if SYNC else 'asynchronous'} standby) + 1 witness host)\n")
    print("| system | fault | runs | p50 | p99 | min | max | acked rows lost |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(r)
    print(f"\n(total runtime {time.monotonic() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
