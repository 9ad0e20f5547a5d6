"""System tests of the backend health checks against real PostgreSQL 15.

A primary on db1 and a streaming standby on db2 (a cascading standby db3 for
the timeline test); three pgvigil peers check them. Asserts on the control
socket's "backends" status and on event tokens (doc/events.md), never on
prose. [failover] auto_failover is off: these tests are about what the
checks see, not about what the coordinator does with it.
"""

import os
import signal
import subprocess
import time

import pytest

import pgvlab

INTERVAL_MS = 500
TIMEOUT_MS = 2000
RECHECK_MS = 200
THRESHOLD = 3


def health_conf(timeout_ms=TIMEOUT_MS):
    return f"""
[health]
interval = {INTERVAL_MS}ms
timeout = {timeout_ms}ms
recheck_interval = {RECHECK_MS}ms
failure_threshold = {THRESHOLD}
write_probe = yes

[failover]
auto_failover = no
"""


HEALTH = health_conf()


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
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last}")


def lsn(text):
    hi, lo = text.split("/")
    return int(hi, 16) << 32 | int(lo, 16)


def next_xid(lab, host):
    """The next transaction id the server will hand out (reading it takes none)."""
    return int(lab.psql(host, "SELECT txid_snapshot_xmax(txid_current_snapshot())"))


def run_root(argv, timeout=30):
    """A command in the root namespace that touches no network (mount, mkfs, fsfreeze)."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def test_health_reports_roles_lsns_and_detects_a_stopped_standby(pg_cluster, pgvigil_bin):
    lab = pg_cluster
    peers = three_peers(lab)
    # A timeout far above what THRESHOLD refused connects take: a stopped
    # server must be failed by refusals, at recheck_interval, never by waiting.
    timeout_ms = 10000
    conf = lab.pgvigil_config(peers, backends=[(1, "db1"), (2, "db2")],
                              extra_sections=health_conf(timeout_ms))
    procs = [lab.start_pgvigil(h, pgvigil_bin, conf) for _, h in peers]
    pv = procs[0]
    pv.wait_log(r"event=daemon-started peer=1 ")

    def both_up(b):
        return (1 in b and 2 in b and b[1]["state"] == "up" and b[2]["state"] == "up"
                and b[2]["replay_lsn"] is not None)

    b = wait_backends(lab, "gw1", both_up, 15, "db1 and db2 up")
    # Read after the status: the primary's WAL can only have moved on since.
    primary_now = lsn(lab.psql("db1", "SELECT pg_current_wal_lsn()"))
    p, s = b[1], b[2]
    assert p["role"] == "primary"
    assert s["role"] == "standby"
    assert p["host"] == lab.addr("db1") and s["host"] == lab.addr("db2")
    assert p["lsn"] is not None and lsn(p["lsn"]) > 0
    assert p["last_primary_lsn"] == p["lsn"]
    assert p["receive_lsn"] is None and p["replay_lsn"] is None
    assert s["lsn"] is None and s["last_primary_lsn"] is None
    assert s["receive_lsn"] is not None and lsn(s["receive_lsn"]) > 0
    assert lsn(s["replay_lsn"]) > 0
    assert lsn(s["replay_lsn"]) <= primary_now
    assert p["system_id"] is not None and p["system_id"] == s["system_id"]
    assert p["timeline"] == 1 and s["timeline"] == 1
    assert p["error"] is None and s["consecutive_failures"] == 0
    assert p["latency_ms"] is not None and p["last_ok_ms"] is not None
    pgvlab.wait_log_event(pv, "backend-up", 5, backend=1, role="primary")
    pgvlab.wait_log_event(pv, "backend-up", 5, backend=2, role="standby")

    # The connection is kept between checks: several checks, no new backend-up.
    checks = s["checks"]
    b = wait_backends(lab, "gw1", lambda x: x[2]["checks"] >= checks + 2, 5, "more checks")
    assert len(pgvlab.log_events(pv, "backend-up", backend=2)) == 1
    seen_standby = b[2]

    mark = pv.mark()
    lab.stop_postgres("db2", "immediate")
    t0 = time.monotonic()
    seen = set()

    def failed(x):
        seen.add(x[2]["state"])
        return x[2]["state"] == "failed"

    # The lost connection is noticed at once, then THRESHOLD refused connects
    # recheck_interval apart; slack for a loaded machine, and still well
    # below a single timeout.
    limit = (THRESHOLD * RECHECK_MS) / 1000 + 3
    assert limit < timeout_ms / 1000
    b = wait_backends(lab, "gw1", failed, limit, "db2 failed")
    assert time.monotonic() - t0 <= limit
    assert "suspect" in seen or THRESHOLD == 1
    assert b[2]["consecutive_failures"] >= THRESHOLD
    assert b[2]["error"] and "timed out" not in b[2]["error"]
    assert b[2]["failures"] >= THRESHOLD
    assert b[1]["state"] == "up"
    # A failed backend keeps what its last successful check saw.
    for k in ("role", "timeline", "system_id"):
        assert b[2][k] == seen_standby[k], k
    for k in ("receive_lsn", "replay_lsn"):  # the last check's, maybe newer than seen
        assert b[2][k] is not None and lsn(b[2][k]) >= lsn(seen_standby[k]), k
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


def test_health_write_probe_runs_on_the_primary_only(pg_cluster, pgvigil_bin):
    lab = pg_cluster
    peers = three_peers(lab)
    conf = lab.pgvigil_config(peers, backends=[(1, "db1"), (2, "db2")],
                              extra_sections=HEALTH)
    for _, h in peers:
        lab.start_pgvigil(h, pgvigil_bin, conf)
    b = wait_backends(lab, "gw1", lambda x: x[1]["state"] == "up" and x[2]["state"] == "up",
                      15, "both up")
    checks = b[2]["checks"]
    xid0 = next_xid(lab, "db1")
    b = wait_backends(lab, "gw1", lambda x: x[2]["checks"] >= checks + 3
                      and x[1]["write_latency_ms"] is not None, 10, "three more checks")
    # The primary's probe committed transactions (three peers probe it).
    assert next_xid(lab, "db1") >= xid0 + 3
    assert b[1]["role"] == "primary" and b[1]["state"] == "up"
    assert b[1]["write_latency_ms"] > 0
    # The standby is checked but never probed: a probe there would fail the
    # check (no WAL can be written in recovery), so up after checks with no
    # latency is the proof.
    assert b[2]["role"] == "standby" and b[2]["state"] == "up"
    assert b[2]["write_latency_ms"] is None
    assert b[2]["failures"] == 0 and b[2]["error"] is None
    # Every peer sees it the same way.
    for _, h in peers[1:]:
        x = wait_backends(lab, h, lambda x: x[1]["state"] == "up" and x[2]["state"] == "up"
                          and x[1]["write_latency_ms"] is not None, 10, f"{h} sees both up")
        assert x[1]["write_latency_ms"] > 0 and x[2]["write_latency_ms"] is None


class WalOnLoopFs:
    """db1's pg_wal moved to an ext4 file system of its own on a loop device,
    so that fsfreeze can stop writes to it: a write(2) or fsync(2) on a
    frozen file system blocks in the kernel until it is thawed, while reads
    go on. That is a primary whose WAL flush hangs - deterministically, for
    every process, with nothing else on the machine affected."""

    FREEZE_LIMIT_S = 90  # a stand-alone thaw, should this test die while frozen

    def __init__(self, lab, host):
        self.lab, self.host = lab, host
        self.img = os.path.join(lab.workdir, f"walfs-{host}.img")
        self.mnt = os.path.join(lab.workdir, f"walfs-{host}")
        self.mounted = False
        self.frozen = False
        self.guard = None

    def setup(self):
        inst = self.lab.pg_instance(self.host)
        self.lab.stop_postgres(self.host, "fast")
        with open(self.img, "wb") as f:
            f.truncate(512 << 20)
        for argv in (["mkfs.ext4", "-q", "-F", self.img],):
            r = run_root(argv)
            assert r.returncode == 0, f"{argv}: {r.stderr}"
        os.mkdir(self.mnt, 0o755)
        r = run_root(["mount", "-o", "loop", self.img, self.mnt])
        if r.returncode != 0:
            pytest.fail(f"could not loop-mount a file system for the WAL: {r.stderr.strip()}",
                        pytrace=False)
        self.mounted = True
        self._check_ours()
        wal = os.path.join(inst.datadir, "pg_wal")
        r = run_root(["cp", "-a", wal, os.path.join(self.mnt, "pg_wal")], timeout=60)
        assert r.returncode == 0, r.stderr
        r = run_root(["rm", "-rf", wal])
        assert r.returncode == 0, r.stderr
        os.symlink(os.path.join(self.mnt, "pg_wal"), wal)
        self.lab.start_postgres(self.host)

    def _check_ours(self):
        """Never freeze anything but the loop device mounted here."""
        r = run_root(["findmnt", "-n", "-o", "SOURCE,TARGET", "--mountpoint", self.mnt])
        src, _, target = r.stdout.strip().partition(" ")
        assert r.returncode == 0 and src.startswith("/dev/loop") and \
            target.strip() == self.mnt, f"not our loop mount: {r.stdout!r}"

    def freeze(self):
        self._check_ours()
        # Thaws on its own if this process dies with the file system frozen.
        self.guard = subprocess.Popen(
            ["sh", "-c", f'sleep {self.FREEZE_LIMIT_S}; exec fsfreeze -u "$0"', self.mnt],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = run_root(["fsfreeze", "-f", self.mnt])
        assert r.returncode == 0, r.stderr
        self.frozen = True

    def thaw(self):
        if self.frozen:
            r = run_root(["fsfreeze", "-u", self.mnt])
            assert r.returncode == 0, r.stderr
            self.frozen = False
        if self.guard is not None:
            if self.guard.poll() is None:
                os.killpg(self.guard.pid, signal.SIGTERM)  # its own group: sh and sleep
            self.guard.wait(10)
            self.guard = None

    def teardown(self):
        try:
            self.thaw()
        finally:
            if self.mounted:
                # the server holds files on it: stop it first
                self.lab.stop_postgres(self.host, "fast")
                deadline = time.monotonic() + 10
                while True:
                    r = run_root(["umount", self.mnt])
                    if r.returncode == 0:
                        break
                    if time.monotonic() >= deadline:
                        run_root(["umount", "-l", self.mnt])
                        break
                    time.sleep(0.1)
                self.mounted = False


@pytest.fixture
def db1_wal_on_loop_fs(pg_cluster):
    fs = WalOnLoopFs(pg_cluster, "db1")
    try:
        fs.setup()
        yield fs
    finally:
        fs.teardown()


def test_health_write_probe_fails_a_primary_whose_wal_flush_hangs(pg_cluster, db1_wal_on_loop_fs,
                                                                  pgvigil_bin):
    lab = pg_cluster
    fs = db1_wal_on_loop_fs
    peers = three_peers(lab)
    conf = lab.pgvigil_config(peers, backends=[(1, "db1"), (2, "db2")],
                              extra_sections=HEALTH)
    procs = [lab.start_pgvigil(h, pgvigil_bin, conf) for _, h in peers]
    pv = procs[0]
    b = wait_backends(lab, "gw1", lambda x: x[1]["state"] == "up" and x[2]["state"] == "up"
                      and x[1]["write_latency_ms"] is not None, 20, "both up, db1 probed")
    before = b[1]
    assert before["role"] == "primary" and before["timeline"] == 1

    mark = pv.mark()
    fs.freeze()
    try:
        # Reads still work on the frozen primary: the status query answers.
        assert lab.psql("db1", "SELECT pg_is_in_recovery()", timeout=10) == "f"
        limit = (THRESHOLD * (TIMEOUT_MS + RECHECK_MS) + INTERVAL_MS) / 1000 + 5
        b = wait_backends(lab, "gw1", lambda x: x[1]["state"] == "failed", limit, "db1 failed")
        frozen_view = b[1]
        ev = pgvlab.wait_log_event(pv, "backend-failed", 5, since=mark, backend=1)
    finally:
        fs.thaw()
    expected = f"write probe timed out after {TIMEOUT_MS} ms"
    assert frozen_view["error"] == expected
    assert ev["error"] == expected
    # Every failure was the probe: the connect and the status query went through.
    assert frozen_view["consecutive_failures"] >= THRESHOLD
    # It keeps what the last successful check saw.
    assert frozen_view["role"] == "primary" and frozen_view["timeline"] == 1
    assert frozen_view["lsn"] is not None and lsn(frozen_view["lsn"]) >= lsn(before["lsn"])
    assert frozen_view["last_primary_lsn"] == frozen_view["lsn"]
    assert frozen_view["system_id"] == before["system_id"]
    # The standby's storage is fine and it stays up.
    assert b[2]["state"] == "up"

    mark = pv.mark()
    b = wait_backends(lab, "gw1", lambda x: x[1]["state"] == "up", 20, "db1 up after the thaw")
    assert b[1]["write_latency_ms"] > 0 and b[1]["error"] is None
    pgvlab.wait_log_event(pv, "backend-up", 5, since=mark, backend=1, role="primary")


def checkpointer_of(lab, host):
    """The pid of host's checkpointer, checked to work in host's data directory."""
    pid = int(lab.psql(host, "SELECT pid FROM pg_stat_activity "
                             "WHERE backend_type = 'checkpointer'"))
    datadir = os.path.realpath(lab.pg_instance(host).datadir)
    assert os.readlink(f"/proc/{pid}/cwd") == datadir
    return pid


def checkpoint_timeline(lab, host):
    return int(lab.psql(host, "SELECT timeline_id FROM pg_control_checkpoint()"))


def test_health_timeline_moves_at_the_first_check_after_promotion(pg_cluster, pgvigil_bin):
    """The checkpointers of db2 and of its cascading standby db3 are stopped,
    so no checkpoint or restartpoint records the new timeline: a timeline
    read from the last checkpoint would stay at 1."""
    lab = pg_cluster
    lab.add_host("db3", *pgvlab.pg_addr(3))
    lab.add_postgres_standby("db3", "db2")
    peers = three_peers(lab)
    conf = lab.pgvigil_config(peers, backends=[(1, "db1"), (2, "db2"), (3, "db3")],
                              extra_sections=HEALTH)
    for _, h in peers:
        lab.start_pgvigil(h, pgvigil_bin, conf)
    b = wait_backends(lab, "gw1", lambda x: all(x[i]["state"] == "up" for i in (1, 2, 3)),
                      20, "all three up")
    assert [b[i]["role"] for i in (1, 2, 3)] == ["primary", "standby", "standby"]
    assert [b[i]["timeline"] for i in (1, 2, 3)] == [1, 1, 1]

    stopped = []
    try:
        for host in ("db2", "db3"):
            pid = checkpointer_of(lab, host)
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        assert lab.psql("db2", "SELECT pg_promote()", timeout=30) == "t"
        # The first status that shows db2 as a primary shows the new timeline.
        b = wait_backends(lab, "gw1", lambda x: x[2]["role"] == "primary", 10,
                          "db2 seen as primary")
        assert b[2]["state"] == "up"
        assert b[2]["timeline"] == 2
        assert checkpoint_timeline(lab, "db2") == 1  # what the old reading would say
        assert b[2]["lsn"] is not None and b[2]["replay_lsn"] is None
        # The new primary gets the write probe.
        b = wait_backends(lab, "gw1", lambda x: x[2]["write_latency_ms"] is not None, 10,
                          "db2 probed")
        assert b[2]["write_latency_ms"] > 0
        # The cascading standby follows the new timeline: its receiver says so.
        b = wait_backends(lab, "gw1", lambda x: x[3]["timeline"] == 2, 20, "db3 on timeline 2")
        assert b[3]["role"] == "standby" and b[3]["state"] == "up"
        assert checkpoint_timeline(lab, "db3") == 1
        # The old primary is untouched.
        assert b[1]["role"] == "primary" and b[1]["timeline"] == 1
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)


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
