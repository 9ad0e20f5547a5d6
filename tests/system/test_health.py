"""System tests of the backend health checks against real PostgreSQL 15.

A primary on db1 and a streaming standby on db2; three pgvigil peers check
both. Asserts on the control socket's "backends" status and on event tokens
(doc/events.md), never on prose.
"""

import time

import pgvlab

INTERVAL_MS = 500
TIMEOUT_MS = 2000
RECHECK_MS = 200
THRESHOLD = 3

HEALTH = f"""
[health]
interval = {INTERVAL_MS}ms
timeout = {TIMEOUT_MS}ms
recheck_interval = {RECHECK_MS}ms
failure_threshold = {THRESHOLD}
"""


def three_peers(lab):
    for i in (1, 2, 3):
        lab.add_host(f"gw{i}", *pgvlab.peer_addr(i))
    return [(1, "gw1"), (2, "gw2"), (3, "gw3")]


def backends_of(lab, host):
    st = lab.pgvigil_status(host)
    if not st or "backends" not in st:
        return None
    return {b["id"]: b for b in st["backends"]}


def wait_backends(lab, host, pred, timeout, what):
    """Polls the status until pred(backends by id) holds; returns them."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = backends_of(lab, host)
        if last is not None and pred(last):
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last}")


def lsn(text):
    hi, lo = text.split("/")
    return int(hi, 16) << 32 | int(lo, 16)


def test_health_reports_roles_lsns_and_detects_a_stopped_standby(pg_cluster, pgvigil_bin):
    lab = pg_cluster
    peers = three_peers(lab)
    conf = lab.pgvigil_config(peers, backends=[(1, "db1"), (2, "db2")],
                              extra_sections=HEALTH)
    procs = [lab.start_pgvigil(h, pgvigil_bin, conf) for _, h in peers]
    pv = procs[0]
    pv.wait_log(r"event=daemon-started peer=1 ")

    def both_up(b):
        return (1 in b and 2 in b and b[1]["state"] == "up" and b[2]["state"] == "up"
                and b[2]["replay_lsn"] is not None)

    b = wait_backends(lab, "gw1", both_up, 15, "db1 and db2 up")
    p, s = b[1], b[2]
    assert p["role"] == "primary"
    assert s["role"] == "standby"
    assert p["host"] == lab.addr("db1") and s["host"] == lab.addr("db2")
    assert p["lsn"] is not None and lsn(p["lsn"]) > 0
    assert p["receive_lsn"] is None and p["replay_lsn"] is None
    assert s["lsn"] is None
    assert s["receive_lsn"] is not None and lsn(s["receive_lsn"]) > 0
    assert lsn(s["replay_lsn"]) > 0
    assert lsn(s["replay_lsn"]) <= lsn(p["lsn"])
    assert p["system_id"] is not None and p["system_id"] == s["system_id"]
    assert p["timeline"] == 1 and s["timeline"] == 1
    assert p["error"] is None and s["consecutive_failures"] == 0
    assert p["latency_ms"] is not None and p["last_ok_ms"] is not None
    pgvlab.wait_log_event(pv, "backend-up", 5, backend=1, role="primary")
    pgvlab.wait_log_event(pv, "backend-up", 5, backend=2, role="standby")

    # The connection is kept between checks: several checks, no new backend-up.
    checks = s["checks"]
    wait_backends(lab, "gw1", lambda x: x[2]["checks"] >= checks + 2, 5, "more checks")
    assert len(pgvlab.log_events(pv, "backend-up", backend=2)) == 1

    mark = pv.mark()
    lab.stop_postgres("db2", "immediate")
    t0 = time.monotonic()
    seen = set()

    def failed(x):
        seen.add(x[2]["state"])
        return x[2]["state"] == "failed"

    # threshold x recheck + timeout, plus the interval the loss may wait for
    # and slack for a loaded CI machine
    limit = (THRESHOLD * RECHECK_MS + TIMEOUT_MS + INTERVAL_MS) / 1000 + 3
    b = wait_backends(lab, "gw1", failed, limit, "db2 failed")
    assert time.monotonic() - t0 <= limit
    assert "suspect" in seen or THRESHOLD == 1
    assert b[2]["consecutive_failures"] >= THRESHOLD
    assert b[2]["error"]
    assert b[2]["failures"] >= THRESHOLD
    assert b[1]["state"] == "up"
    ev = pgvlab.wait_log_event(pv, "backend-failed", 5, since=mark, backend=2)
    assert int(ev["failures"]) == THRESHOLD

    mark = pv.mark()
    lab.start_postgres("db2")
    b = wait_backends(lab, "gw1", lambda x: x[2]["state"] == "up", 15, "db2 up again")
    assert b[2]["role"] == "standby" and b[2]["consecutive_failures"] == 0
    assert b[2]["error"] is None
    pgvlab.wait_log_event(pv, "backend-up", 5, since=mark, backend=2, role="standby")
    # Every peer checks on its own.
    for _, h in peers[1:]:
        wait_backends(lab, h, lambda x: x[1]["state"] == "up" and x[2]["state"] == "up",
                      10, f"{h} sees both up")


def test_health_times_out_a_black_holed_backend(pg_cluster, pgvigil_bin):
    """Frames dropped: no refusal, no reset; only our own deadline ends the check."""
    lab = pg_cluster
    peers = three_peers(lab)
    conf = lab.pgvigil_config(peers, backends=[(1, "db1"), (2, "db2")],
                              extra_sections=HEALTH)
    procs = [lab.start_pgvigil(h, pgvigil_bin, conf) for _, h in peers]
    pv = procs[0]
    wait_backends(lab, "gw1", lambda x: x[1]["state"] == "up" and x[2]["state"] == "up",
                  15, "both up")

    mark = pv.mark()
    t0 = time.monotonic()
    lab.block("gw1", "db2")
    limit = (THRESHOLD * (TIMEOUT_MS + RECHECK_MS) + INTERVAL_MS) / 1000 + 3
    b = wait_backends(lab, "gw1", lambda x: x[2]["state"] == "failed", limit, "db2 failed")
    assert time.monotonic() - t0 <= limit
    assert b[2]["error"] == f"timed out after {TIMEOUT_MS} ms"
    assert b[1]["state"] == "up"
    pgvlab.wait_log_event(pv, "backend-failed", 5, since=mark, backend=2,
                          error=f"timed out after {TIMEOUT_MS} ms")
    # Another peer, not cut off, still sees db2 up.
    assert backends_of(lab, "gw2")[2]["state"] == "up"

    mark = pv.mark()
    lab.unblock("gw1", "db2")
    wait_backends(lab, "gw1", lambda x: x[2]["state"] == "up", limit, "db2 up again")
    pgvlab.wait_log_event(pv, "backend-up", 5, since=mark, backend=2)
