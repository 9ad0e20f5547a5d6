"""System tests of the failover: real PostgreSQL 15 in lab namespaces, the
shipped hook scripts, pgvigil peers deciding (doc/failover.md).

Layout (Lab.add_colocated_cluster), "colocated pair + witness" unless a test
says otherwise: lab host hN (192.0.2.N) runs pgvigil peer N and PostgreSQL
backend N, h1 the primary and the others streaming standbys of it; the last
host runs a witness peer and no PostgreSQL; 'client' (192.0.2.100) writes
through the VIP 192.0.2.200 ([vip] follow = primary, so the VIP is on the
primary's host; PostgreSQL listens on every address). [failover] runs the
shipped scripts of hooks/scripts with the command lines of their header
comments (pgvigil-promote by SQL, pgvigil-stop locally on the old primary's
peer, pgvigil-follow and pgvigil-rejoin over the lab's ssh stand-in) and the
lab's STONITH tests/lab/fence-backend-lab as fence_command. Each script is
called through a two-line wrapper that adds the lab's options (the ssh
stand-in, the term records per host in <workdir>/hookstate/<peer id>, the
lab's PostgreSQL logs, the replication user): see failover_commands().

Assertions are on event tokens (doc/events.md) merged from every peer's log
in time order, on `pgvigilctl status --json`, and on what PostgreSQL says
(pg_is_in_recovery, the timeline of the current WAL file,
pg_stat_wal_receiver, the rows). The daemon runs with its default timings.

Everything aimed at a lab address runs inside a lab namespace (lab.psql,
the writer); pgvigilctl and the status requests only use the daemons'
control sockets, files reachable from any namespace.
"""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import pgvlab

REPO = Path(__file__).resolve().parents[2]
FENCE_LAB = REPO / "tests" / "lab" / "fence-lab"
VIP = pgvlab.vip_addr(0)[0]
IP = pgvlab.IP

# Bounds, in seconds. Start: an election, the first checks, primary-known,
# the coordinator role handed to the primary's peer, the VIP probe.
BOOT = 25
# Fault -> failover-done: detection (about 1 s for a dead postmaster, a few
# check timeouts for a silent host), an election when the coordinator died,
# the fence, fresh checks, the promotion and its verification, the
# coordinator handover, the follows. Generous: the machine is shared.
FAILOVER = 40
# "Nothing happens": watched for this long.
QUIET = 10

TS_RE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC")
# The tokens a failover summary shows (see FoCluster.summary).
FO_TOKENS = {
    "primary-known", "two-primaries", "failover-started", "failover-blocked",
    "failover-refused", "failover-resumed", "backend-fence-started", "backend-fence-done",
    "backend-fence-failed", "backend-stop-started", "backend-stopped", "backend-stop-failed",
    "candidate-chosen", "promote-started", "promote-done", "promote-failed",
    "promote-verified", "follow-started", "follow-done", "follow-failed", "failover-done",
    "maintenance-on", "maintenance-off", "rejoin-started", "rejoin-done", "rejoin-failed",
    "coordinator-transfer", "hook-started", "hook-finished", "hook-timeout", "role-changed",
    "vip-acquired", "vip-released", "operator-request", "backend-failed", "fence-started",
    "fence-succeeded", "fence-failed", "self-fence",
}


def wait_for(what, timeout, fn, period=0.05):
    """Poll fn() until it returns something true; return it (bounded).
    `what` may be a callable, for a message showing the state at the end."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what() if callable(what) else what}: not within {timeout}s")
        time.sleep(period)


def failover_commands(lab):
    """[failover] hook command lines: the shipped scripts through the lab's
    wrappers (Lab.failover_hooks)."""
    return lab.failover_hooks()


def write_script(lab, name, body):
    """An executable shell script in the lab workdir; returns its path."""
    path = os.path.join(lab.workdir, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def lines_of(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


class FoCluster:
    """A colocated cluster (Lab.add_colocated_cluster) and its pgvigil peers."""

    def __init__(self, lab, binary, backends=2, witness=True, sync_standby=None,
                 failover=None, hooks=None, sections=None, start=True):
        self.lab, self.binary = lab, binary
        self.ctl_bin = os.path.join(os.path.dirname(os.path.abspath(binary)), "pgvigilctl")
        if not os.access(self.ctl_bin, os.X_OK):
            pytest.fail(f"pgvigilctl not found next to {binary}", pytrace=False)
        self.layout = lab.add_colocated_cluster(backends, witness, sync_standby=sync_standby)
        self.ids = [i for i, _ in self.layout["peers"]]
        self.hosts = dict(self.layout["peers"])
        self.backends = dict(self.layout["backends"])
        fo = failover_commands(lab)
        fo.update(failover or {})
        fo = {k: v for k, v in fo.items() if v is not None}
        secs = {"vip": {"address": VIP, "interface": "eth0", "follow": "primary"},
                "failover": fo}
        for k, v in (sections or {}).items():
            secs.setdefault(k, {}).update(v)
        hk = {"hook_timeout": "90s"}
        hk.update(hooks or {})
        self.conf = lab.colocated_config(self.layout, secs, hooks=hk)
        self.pv = {}
        if start:
            self.start_all()

    # ---- daemons

    def start(self, i):
        self.pv[i] = self.lab.start_pgvigil(self.hosts[i], self.binary, self.conf)
        return self.pv[i]

    def start_all(self):
        for i in self.ids:
            self.start(i)

    def kill(self, i):
        rc = self.lab.stop(self.pv[i].proc, signal.SIGKILL, 5.0)
        assert rc == -signal.SIGKILL, f"peer {i} exited {rc} before it was killed"

    def live(self):
        return [i for i in self.ids if i in self.pv and self.pv[i].alive()]

    def sock(self, i):
        return self.lab.pgvigil_socket(self.hosts[i])

    def status(self, i, timeout=1.0):
        if i not in self.live():
            return None
        return pgvlab.control_status(self.sock(i), timeout)

    def ctl(self, i, *args, timeout=15):
        """pgvigilctl -s <peer i's socket> ARGS (a Unix socket: no network)."""
        return subprocess.run([self.ctl_bin, "-s", self.sock(i), *args], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def ctl_status(self, i):
        r = self.ctl(i, "status", "--json")
        assert r.returncode == 0, f"pgvigilctl status --json on peer {i}: exit {r.returncode} " \
                                  f"{r.stderr.strip()}"
        return json.loads(r.stdout)

    def brief(self):
        """Per live peer: (term, coordinator, vip state, cluster record summary)."""
        out = {}
        for i in self.live():
            st = self.status(i)
            if not st:
                out[i] = None
                continue
            c = st.get("failover") or {}
            out[i] = (st.get("term"), st.get("coordinator"), (st.get("vip") or {}).get("state"),
                      {k: c.get(k) for k in ("primary", "timeline", "step", "maintenance",
                                             "needs_rejoin", "waiting")})
        return out

    def mark(self):
        return {i: self.pv[i].mark() for i in self.pv}

    # ---- events of every peer, in time order

    def events(self, token=None, since=None, **fields):
        out = []
        for i in sorted(self.pv):
            pv = self.pv[i]
            text = pv.log_text()
            for ev in pgvlab.log_events(pv, token, (since or {}).get(i, 0), **fields):
                m = TS_RE.search(text, text.rfind("\n", 0, ev["pos"]) + 1, ev["pos"])
                ev["ts"] = m.group(1) if m else ""
                ev["peer"] = i
                out.append(ev)
        out.sort(key=lambda e: e["ts"])     # stable: a peer's own order is kept
        return out

    def summary(self, since=None, limit=80):
        rows = []
        for e in self.events(since=since):
            if e["event"] not in FO_TOKENS:
                continue
            f = " ".join(f"{k}={v}" for k, v in e.items()
                         if k not in ("event", "pos", "ts", "peer"))
            rows.append(f"  {e['ts'][11:]} peer {e['peer']} {e['event']} {f}")
        return "\n".join(rows[-limit:])

    def wait_event(self, token, timeout, since=None, count=1, **fields):
        """Wait (bounded) until the peers logged `count` matching events in
        all; return the last of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(token, since, **fields)
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"no {count} x event={token} {fields} within {timeout}s; events since the "
                    f"mark:\n{self.summary(since)}\nstatus: {self.brief()}")
            time.sleep(0.05)

    def assert_no_event(self, tokens, since, **fields):
        bad = [e for e in self.events(since=since, **fields) if e["event"] in tokens]
        assert not bad, (f"unexpected {[e['event'] for e in bad]}:\n{self.summary(since)}")

    def assert_coordinator_kept(self, since):
        """No coordinator lost its lease since the mark: while a failover
        waits (blocked, refused, maintenance) the cluster itself stays up."""
        lost = [e for e in self.events("role-changed", since) if e.get("reason") == "lease expired"]
        assert not lost, (f"{len(lost)} coordinator(s) lost their lease (heartbeats stopped?), "
                          f"first on peer {lost[0]['peer']} at {lost[0]['ts']}:\n"
                          f"{self.summary(since)}")

    def order(self, tokens, since):
        """The first event of each token, in time order; asserts each exists."""
        evs = self.events(since=since)
        firsts = {}
        for e in evs:
            if e["event"] in tokens and e["event"] not in firsts:
                firsts[e["event"]] = e
        missing = [t for t in tokens if t not in firsts]
        assert not missing, f"events {missing} missing:\n{self.summary(since)}"
        return firsts

    def assert_order(self, tokens, since):
        firsts = self.order(tokens, since)
        seq = sorted(tokens, key=lambda t: (firsts[t]["ts"], evs_index(self, firsts[t])))
        assert seq == list(tokens), \
            f"events out of order: got {seq}, want {list(tokens)}:\n{self.summary(since)}"
        return firsts

    # ---- steady state

    def wait_steady(self, timeout=BOOT, primary=1):
        """Every peer answers and records `primary` as the primary with no step
        in progress; that backend's peer coordinates and holds the VIP; every
        backend is up in its checks."""
        def ok():
            for i, pv in self.pv.items():
                if not pv.alive():
                    raise AssertionError(f"peer {i} exited ({pv.returncode}); log tail:\n"
                                         f"{pv.log_tail(20)}")
            sts = {i: self.status(i) for i in self.live()}
            if len(sts) != len(self.ids) or any(st is None for st in sts.values()):
                return None
            for st in sts.values():
                c = st.get("failover") or {}
                if c.get("primary") != primary or c.get("step") != "none":
                    return None
            st = sts[primary]
            if st.get("coordinator") != primary or (st.get("vip") or {}).get("state") != "held":
                return None
            b = {x["id"]: x for x in st.get("backends") or []}
            if any((b.get(i) or {}).get("state") != "up" for i in self.backends):
                return None
            return sts
        sts = wait_for(lambda: f"steady state, primary {primary} (status per peer: "
                               f"{self.brief()})\n{self.summary()}", timeout, ok)
        assert self.vip_hosts() == [self.hosts[primary]], self.vip_hosts()
        return sts

    def vip_hosts(self, exclude=()):
        """Hosts whose kernel has the VIP on eth0 (isolated ones left out)."""
        out = []
        for i in self.ids:
            h = self.hosts[i]
            if h in exclude or h in self.lab._isolated:
                continue
            r = self.lab.run(h, [IP, "-o", "-4", "addr", "show", "dev", "eth0"], timeout=10)
            if f" {VIP}/" in r.stdout:
                out.append(h)
        return out

    def wait_vip_on(self, i, timeout, exclude=()):
        """Peer i holds the VIP (status and kernel) and no other reachable
        host's kernel has it."""
        h = self.hosts[i]

        def ok():
            st = self.status(i)
            return (st and (st.get("vip") or {}).get("state") == "held" and
                    self.vip_hosts(exclude) == [h])
        wait_for(lambda: f"VIP on {h} only (kernels: {self.vip_hosts(exclude)}, "
                         f"status: {self.brief()})", timeout, ok, period=0.1)

    def wait_record(self, timeout, pred, what, peers=None):
        """Every live peer (or `peers`) reports a cluster record with pred(c)."""
        def ok():
            for i in peers or self.live():
                st = self.status(i)
                if not st or not pred(st.get("failover") or {}):
                    return False
            return True
        wait_for(lambda: f"{what} (status: {self.brief()})", timeout, ok, period=0.1)

    # ---- PostgreSQL

    def in_recovery(self, h):
        return self.lab.psql(h, "SELECT pg_is_in_recovery()", timeout=10) == "t"

    def timeline(self, h):
        """Timeline of a primary's current WAL file."""
        return int(self.lab.psql(h, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
                                 timeout=10), 16)

    def receiver(self, h):
        """(status, sender_host) of h's WAL receiver, or None."""
        out = self.lab.psql(h, "SELECT status || ' ' || coalesce(sender_host, '') "
                               "FROM pg_stat_wal_receiver", timeout=10)
        return tuple(out.split(" ", 1)) if out else None

    def wait_streaming_from(self, h, src, timeout):
        want = ("streaming", self.lab.addr(src))

        def ok():
            try:
                return self.in_recovery(h) and self.receiver(h) == want
            except pgvlab.LabError:
                return False
        wait_for(lambda: f"{h} streaming from {src} (receiver: {self._safe(self.receiver, h)})",
                 timeout, ok, period=0.2)

    def wait_promoted(self, h, timeout):
        def ok():
            try:
                return not self.in_recovery(h)
            except pgvlab.LabError:
                return False
        wait_for(f"{h} promoted", timeout, ok, period=0.1)

    def promotions(self, h):
        """How many times h's PostgreSQL left recovery (its own log)."""
        return len(re.findall(r"selected new timeline ID", self.lab.pg_instance(h).log_text()))

    def stop_receiving(self, h):
        """h stops receiving WAL (its WAL receiver ends, nothing restarts it);
        what it received stays its receive LSN."""
        self.lab.psql(h, "ALTER SYSTEM SET primary_conninfo = ''")
        self.lab.psql(h, "SELECT pg_reload_conf()")
        wait_for(f"{h}'s WAL receiver gone", 15,
                 lambda: self.receiver(h) is None, period=0.1)

    @staticmethod
    def _safe(fn, *a):
        try:
            return fn(*a)
        except Exception as e:
            return f"<{e}>"

    def backend_view(self, i, b):
        st = self.status(i)
        for x in (st or {}).get("backends") or []:
            if x["id"] == b:
                return x
        return None


def evs_index(cl, ev):
    """Tie-breaker for events of the same millisecond: peer, then log offset."""
    return (ev["peer"], ev["pos"])


def lsn_int(text):
    hi, lo = text.split("/")
    return int(hi, 16) << 32 | int(lo, 16)


@pytest.fixture
def fo_bin(pgvigil_bin):
    return pgvigil_bin


# --------------------------------------------------------------------------
# 1. kill -9 of the primary's postmaster

def test_killed_primary_postmaster_standby_promoted_vip_moves_writes_resume(lab, fo_bin):
    cl = FoCluster(lab, fo_bin)
    cl.wait_steady()
    assert cl.timeline("h1") == 1
    w = lab.start_writer(VIP)
    w.wait_acks(10, 15, srv="h1")
    since = cl.mark()
    t0 = time.monotonic()
    lab.stop_postgres("h1", "kill")
    done = cl.wait_event("failover-done", FAILOVER, since)
    took = time.monotonic() - t0
    seq = ["failover-started", "backend-fence-done", "candidate-chosen", "promote-started",
           "promote-verified", "failover-done"]
    ev = cl.assert_order(seq, since)
    print(f"\n  failover-done {took:.2f} s after kill -9 of the primary postmaster\n"
          + cl.summary(since))
    assert ev["failover-started"]["old"] == "1", ev["failover-started"]
    assert ev["backend-fence-done"]["method"] == "cooperative", ev["backend-fence-done"]
    assert ev["backend-fence-done"]["backend"] == "1"
    assert ev["candidate-chosen"]["backend"] == "2", ev["candidate-chosen"]
    assert ev["promote-started"]["backend"] == "2"
    assert ev["promote-verified"]["backend"] == "2"
    assert ev["promote-verified"]["timeline"] == "2", ev["promote-verified"]
    assert done["new"] == "2" and done["old"] == "1", done
    # The cooperative fence ran stop_command on peer 1, next to backend 1.
    stops = cl.events("hook-started", since, hook="stop")
    assert stops and all(e["peer"] == 1 for e in stops), cl.summary(since)
    cl.assert_no_event({"backend-fence-failed", "promote-failed", "failover-refused",
                        "failover-blocked", "two-primaries"}, since)
    assert len(cl.events("candidate-chosen", since)) == 1
    # PostgreSQL: h2 is a primary on timeline 2, promoted once.
    assert not cl.in_recovery("h2")
    assert cl.timeline("h2") == 2
    assert cl.promotions("h2") == 1
    # The VIP moved to h2 and writes through it resume there.
    cl.wait_vip_on(2, 15)
    acks = w.wait_acks(10, 20, after=t0, srv="h2")
    first = min(r[1] for r in acks)
    gap = w.write_gap(t0 - 1)
    w.stop()
    print(f"  first write acknowledged by h2 {first - t0:.2f} s after the kill; "
          f"longest gap between acknowledged writes {gap:.2f} s; failures {w.failures(t0)}")
    # pgvigilctl status --json: primary 2, backend 1 needs a rejoin, on every peer.
    cl.wait_record(10, lambda c: c.get("primary") == 2 and c.get("step") == "none" and
                   1 in (c.get("needs_rejoin") or []), "record: primary 2, 1 needs rejoin")
    for i in cl.ids:
        c = cl.ctl_status(i)["failover"]
        assert c["primary"] == 2 and c["timeline"] == 2, (i, c)
        assert c["needs_rejoin"] == [1], (i, c)
        assert c["step"] == "none", (i, c)


# --------------------------------------------------------------------------
# 2. the primary's whole host is lost: STONITH first

def test_primary_host_lost_fence_command_then_promotion(lab, fo_bin):
    cl = FoCluster(lab, fo_bin)
    cl.wait_steady()
    w = lab.start_writer(VIP)
    w.wait_acks(10, 15, srv="h1")
    since = cl.mark()
    fence_log = os.path.join(lab.workdir, "fence-backend.log")
    t0 = time.monotonic()
    lab.crash_host("h1", "link")
    done = cl.wait_event("failover-done", FAILOVER, since)
    print(f"\n  failover-done {time.monotonic() - t0:.2f} s after the loss of h1\n"
          + cl.summary(since))
    ev = cl.assert_order(["failover-started", "backend-fence-started", "backend-fence-done",
                          "candidate-chosen", "promote-started", "promote-verified",
                          "failover-done"], since)
    assert ev["backend-fence-started"]["method"] == "command", ev["backend-fence-started"]
    assert ev["backend-fence-done"]["method"] == "command", ev["backend-fence-done"]
    assert ev["backend-fence-done"]["backend"] == "1"
    assert ev["candidate-chosen"]["backend"] == "2" and done["new"] == "2"
    # The STONITH hook ran once per attempt, for backend 1, and succeeded,
    # before any promotion was started.
    fl = lines_of(fence_log)
    assert fl and fl[0].startswith("fence backend=1 host=192.0.2.1 "), fl
    assert f"data={lab.pg_instance('h1').datadir} " in fl[0], fl
    assert "fenced 1" in fl, fl
    fh = cl.events("hook-started", since, hook="fence_backend")
    ph = cl.events("hook-started", since, hook="failover")
    assert fh and ph and fh[0]["ts"] <= ph[0]["ts"], cl.summary(since)
    assert not cl.events("hook-started", since, hook="stop"), \
        "stop_command ran although the old primary's peer was gone"
    assert not cl.in_recovery("h2") and cl.timeline("h2") == 2
    cl.wait_vip_on(2, 15)
    acks = w.wait_acks(10, 20, after=t0, srv="h2")
    w.stop()
    print(f"  first write acknowledged by h2 {min(r[1] for r in acks) - t0:.2f} s after the "
          f"loss of h1; failures {w.failures(t0)}")
    for i in (2, 3):
        c = cl.ctl_status(i)["failover"]
        assert c["primary"] == 2 and 1 in c["needs_rejoin"], (i, c)


# --------------------------------------------------------------------------
# 3. the fence hook fails: nothing is promoted

def test_fence_failure_blocks_promotion(lab, fo_bin):
    cl = FoCluster(lab, fo_bin, failover={"retry_max": "4s"})
    cl.wait_steady()
    with open(os.path.join(lab.workdir, "fence-backend.exit"), "w") as f:
        f.write("1\n")
    since = cl.mark()
    lab.crash_host("h1", "link")
    cl.wait_event("failover-started", FAILOVER, since, old=1)
    cl.wait_event("backend-fence-failed", 20, since, backend=1, method="command")
    blocked = cl.wait_event("failover-blocked", 10, since)
    assert "fence" in blocked.get("reason", ""), blocked
    # A while later: still no promotion, h2 still a standby, nobody has the VIP.
    t_end = time.monotonic() + QUIET
    while time.monotonic() < t_end:
        cl.assert_no_event({"candidate-chosen", "promote-started", "backend-fence-done"}, since)
        assert cl.vip_hosts() == [], f"VIP on {cl.vip_hosts()} while the fence fails"
        time.sleep(0.5)
    assert cl.in_recovery("h2"), "h2 was promoted although the old primary was not fenced"
    cl.assert_coordinator_kept(since)
    attempts = [ln for ln in lines_of(os.path.join(lab.workdir, "fence-backend.log"))
                if ln.startswith("fence ")]
    assert len(attempts) >= 2, f"the fence was not retried: {attempts}"
    for i in (2, 3):
        st = cl.status(i)
        assert (st.get("vip") or {}).get("state") != "held", (i, st.get("vip"))
        c = st["failover"]
        assert c["primary"] == 1 and c["step"] == "fencing", (i, c)
    st = cl.ctl_status(blocked["peer"])     # the coordinator's own counters
    assert st["failover"]["fences_failed"] >= 2, st["failover"]
    print(f"\n  {len(attempts)} fence attempts failed, no promotion:\n" + cl.summary(since))
    # The fence works again: the next retry fences, and only then promotes.
    os.unlink(os.path.join(lab.workdir, "fence-backend.exit"))
    cl.wait_event("failover-done", FAILOVER, since)
    cl.assert_order(["backend-fence-done", "candidate-chosen", "promote-verified"], since)
    assert not cl.in_recovery("h2")


# --------------------------------------------------------------------------
# 4. a promote hook that hangs is killed, and the same candidate is retried

def test_hung_promote_hook_killed_and_same_candidate_retried(lab, fo_bin):
    real = failover_commands(lab)["failover_command"]
    runs = os.path.join(lab.workdir, "promote-runs.log")
    hang = write_script(lab, "promote-hangs-once", f"""\
# The first call hangs (until killed); the next ones promote.
echo "run term=$PGVIGIL_TERM peer=$PGVIGIL_PEER_ID new=$PGVIGIL_NEW_PRIMARY_ID pid=$$" >>{runs}
if mkdir {lab.workdir}/promote-hung 2>/dev/null; then
	echo "hanging"
	sleep 600
	echo "woke up" >>{runs}
	exit 0
fi
exec "$@"
""")
    # hook_timeout is for every hook: 3 s is enough for this cluster's
    # stop (of a dead server) and follow (a reload), and short for a hang.
    cl = FoCluster(lab, fo_bin, backends=3, start=False,
                   failover={"failover_command": f"{hang} {real}"},
                   hooks={"hook_timeout": "3s", "hook_kill_grace": "1s"})
    cl.start_all()
    cl.wait_steady()
    since = cl.mark()
    lab.stop_postgres("h1", "kill")
    cl.wait_event("promote-started", FAILOVER, since, backend=2)
    to = cl.wait_event("hook-timeout", 15, since, hook="failover")
    cl.wait_event("promote-failed", 10, since, backend=2)
    cl.wait_event("promote-started", 20, since, count=2, backend=2)
    cl.wait_event("promote-verified", 30, since, backend=2)
    print("\n" + cl.summary(since))
    chosen = cl.events("candidate-chosen", since)
    assert [e["backend"] for e in chosen] == ["2"], f"candidates: {chosen}"
    assert not cl.events("promote-started", since, backend=3), cl.summary(since)
    assert to["timeout_ms"] == "3000", to
    r = lines_of(runs)
    assert len(r) >= 2 and "woke up" not in r, r
    assert all("new=2 " in x for x in r), r
    # The hung hook is gone: no process of it left anywhere.
    pid = int(re.search(r"pid=(\d+)", r[0]).group(1))
    wait_for(f"hung hook pid {pid} gone", 10, lambda: not pgvlab._alive(pid))
    assert not cl.in_recovery("h2") and cl.timeline("h2") == 2
    assert cl.promotions("h2") == 1 and cl.in_recovery("h3")


# --------------------------------------------------------------------------
# 5. a standby too far behind is not promoted

def test_stale_standby_refused(lab, fo_bin):
    cl = FoCluster(lab, fo_bin, failover={"max_lag": "64kB", "retry_max": "4s"})
    cl.wait_steady()
    # h2 stops receiving; h1 writes about 4 MB of WAL it will never get.
    cl.stop_receiving("h2")
    stuck = cl.backend_view(1, 2)
    lab.psql("h1", "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad "
                   "FROM generate_series(1, 15000) g")
    target = lsn_int(lab.psql("h1", "SELECT pg_current_wal_lsn()"))
    # Every peer's checks saw the primary past that (the coordinator's
    # last primary LSN is the highest it heard of).
    wait_for("peers see h1's new LSN", 15, lambda: all(
        (cl.backend_view(i, 1) or {}).get("lsn") and
        lsn_int(cl.backend_view(i, 1)["lsn"]) >= target for i in cl.ids))
    behind = target - lsn_int(cl.backend_view(1, 2)["receive_lsn"])
    assert behind > 1024 * 1024, (behind, stuck, cl.backend_view(1, 2))
    since = cl.mark()
    lab.stop_postgres("h1", "kill")
    started = cl.wait_event("failover-started", FAILOVER, since, old=1)
    assert int(started["last_lsn"]) >= target, (started, target)
    cl.wait_event("backend-fence-done", 20, since, backend=1)
    refused = cl.wait_event("failover-refused", 20, since)
    assert "candidate 2" in refused["reason"] and "max_lag" in refused["reason"], refused
    t_end = time.monotonic() + QUIET
    while time.monotonic() < t_end:
        cl.assert_no_event({"candidate-chosen", "promote-started"}, since)
        time.sleep(0.5)
    print("\n" + cl.summary(since))
    assert cl.in_recovery("h2"), "a standby 4 MB behind was promoted"
    cl.assert_coordinator_kept(since)
    # The counters are the coordinator's own: ask the peer that refused.
    st = cl.ctl_status(refused["peer"])["failover"]
    assert st["refusals"] >= 1 and st["primary"] == 1 and st["step"] == "selecting", st
    assert cl.vip_hosts() == []


def test_replay_paused_standby_counts_what_it_received(lab, fo_bin):
    """The other side of the refusal: a standby that received the WAL but
    has not replayed it (replay paused) is as far as its receive LSN, so it
    is not refused; promoting it replays the rest."""
    cl = FoCluster(lab, fo_bin, failover={"max_lag": "64kB"})
    cl.wait_steady()
    lab.psql("h2", "SELECT pg_wal_replay_pause()")
    wait_for("h2's replay paused", 10,
             lambda: lab.psql("h2", "SELECT pg_get_wal_replay_pause_state()") == "paused")
    lab.psql("h1", "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad "
                   "FROM generate_series(1, 15000) g")
    target = lsn_int(lab.psql("h1", "SELECT pg_current_wal_lsn()"))
    wait_for("h2 received everything", 15, lambda: lsn_int(
        lab.psql("h2", "SELECT pg_last_wal_receive_lsn()")) >= target)
    replayed = lsn_int(lab.psql("h2", "SELECT pg_last_wal_replay_lsn()"))
    assert target - replayed > 1024 * 1024, (target, replayed)
    wait_for("peers see h1's new LSN", 15, lambda: all(
        (cl.backend_view(i, 1) or {}).get("lsn") and
        lsn_int(cl.backend_view(i, 1)["lsn"]) >= target for i in cl.ids))
    since = cl.mark()
    lab.stop_postgres("h1", "kill")
    cl.wait_event("failover-done", FAILOVER, since)
    print("\n" + cl.summary(since))
    chosen = cl.wait_event("candidate-chosen", 1, since, backend=2)
    assert int(chosen["lsn"]) >= target and int(chosen["lag"]) <= 65536, chosen
    cl.assert_no_event({"failover-refused"}, since)
    assert not cl.in_recovery("h2")
    assert lab.psql("h2", "SELECT count(*) FROM filler") == "15000"


# --------------------------------------------------------------------------
# 6. three backends: the most advanced standby wins, the other follows it

def test_most_advanced_standby_wins_and_the_other_follows(lab, fo_bin):
    cl = FoCluster(lab, fo_bin, backends=3)
    cl.wait_steady()
    # h2 would win a tie (lowest id): make it lag, so h3 must win on LSN.
    cl.stop_receiving("h2")
    lab.psql("h1", "INSERT INTO fo_rows (id) SELECT g FROM generate_series(1000001, 1000100) g")
    target = lsn_int(lab.psql("h1", "SELECT pg_current_wal_lsn()"))
    wait_for("h3 received h1's last write", 15, lambda: lsn_int(lab.psql(
        "h3", "SELECT pg_last_wal_receive_lsn()")) >= target)
    wait_for("peer 1 sees h3 ahead of h2", 10, lambda: (
        lsn_int((cl.backend_view(1, 3) or {}).get("receive_lsn") or "0/0") >= target and
        lsn_int((cl.backend_view(1, 2) or {}).get("receive_lsn") or "0/0") < target))
    since = cl.mark()
    lab.stop_postgres("h1", "kill")
    done = cl.wait_event("failover-done", FAILOVER + 30, since)
    print("\n" + cl.summary(since))
    ev = cl.assert_order(["candidate-chosen", "promote-verified", "follow-started",
                          "follow-done", "failover-done"], since)
    assert ev["candidate-chosen"]["backend"] == "3", ev["candidate-chosen"]
    assert done["new"] == "3" and done["followed"] == "1", done
    fs = cl.events("follow-started", since)
    assert [(e["backend"], e["new"]) for e in fs] == [("2", "3")], fs
    cl.assert_no_event({"follow-failed", "promote-failed"}, since)
    assert not cl.in_recovery("h3") and cl.timeline("h3") == 2
    # h2 streams from h3 now, and has every row h3 has.
    cl.wait_streaming_from("h2", "h3", 30)
    lab.psql("h3", "INSERT INTO fo_rows (id) VALUES (2000001)")
    wait_for("h2 replays h3's new row", 15,
             lambda: 2000001 in lab.table_ids("h2"))
    assert lab.table_ids("h2") == lab.table_ids("h3")
    cl.wait_record(10, lambda c: c.get("primary") == 3 and c.get("needs_rejoin") == [1],
                   "record: primary 3, only 1 needs a rejoin")
    cl.wait_vip_on(3, 15)


# --------------------------------------------------------------------------
# 7. one peer that cannot reach the primary starts nothing

def test_one_peer_cut_off_from_the_primary_no_failover(lab, fo_bin):
    cl = FoCluster(lab, fo_bin)
    cl.wait_steady()
    since = cl.mark()
    # The standby's host (peer 2 and backend 2) loses h1 entirely.
    lab.block("h1", "h2")
    wait_for(lambda: f"peer 2 sees backend 1 failed ({cl.backend_view(2, 1)})", 15,
             lambda: (cl.backend_view(2, 1) or {}).get("state") == "failed")
    t_end = time.monotonic() + QUIET
    while time.monotonic() < t_end:
        cl.assert_no_event({"failover-started", "failover-blocked", "backend-fence-started",
                            "backend-stop-started", "promote-started"}, since)
        time.sleep(0.5)
    assert (cl.backend_view(3, 1) or {}).get("state") == "up"
    assert (cl.backend_view(2, 1) or {}).get("state") == "failed"
    assert cl.in_recovery("h2") and not cl.in_recovery("h1")
    for i in cl.ids:
        c = cl.status(i)["failover"]
        assert c["primary"] == 1 and c["step"] == "none" and c["needs_rejoin"] == [], (i, c)
    assert cl.vip_hosts() == ["h1"]
    cl.assert_coordinator_kept(since)
    lab.unblock("h1", "h2")
    lab.wait_streaming("h2", 30)
    cl.wait_steady()
    cl.assert_no_event({"failover-started"}, since)


# --------------------------------------------------------------------------
# 8. the coordinator dies between the fence and the promotion

def test_coordinator_killed_mid_promotion_completes_exactly_once(lab, fo_bin):
    """Three backends, so that a coordinator that chose again could pick the
    other standby. The promote hook sleeps 2 s first; its coordinator (peer
    1) is killed -9 meanwhile. The orphaned hook goes on (its output goes to
    a file, so the dead daemon's pipe does not end it) and promotes h2 while
    the next coordinator resumes the recorded step."""
    real = failover_commands(lab)["failover_command"]
    runs = os.path.join(lab.workdir, "promote-runs.log")
    slow = write_script(lab, "promote-slow", f"""\
# Sleeps 2 s, then promotes; logs each run and its outcome.
exec >>{runs}.out 2>&1
echo "start term=$PGVIGIL_TERM peer=$PGVIGIL_PEER_ID new=$PGVIGIL_NEW_PRIMARY_ID" >>{runs}
sleep 2
"$@"
rc=$?
echo "end term=$PGVIGIL_TERM peer=$PGVIGIL_PEER_ID rc=$rc" >>{runs}
exit $rc
""")
    cl = FoCluster(lab, fo_bin, backends=3, start=False,
                   failover={"failover_command": f"{slow} {real}"})
    cl.start_all()
    cl.wait_steady()
    since = cl.mark()
    lab.stop_postgres("h1", "kill")
    ps = cl.wait_event("promote-started", FAILOVER, since, backend=2)
    assert ps["peer"] == 1, f"peer {ps['peer']} coordinates, expected 1:\n{cl.summary(since)}"
    wait_for("the promote hook started", 5, lambda: lines_of(runs))
    cl.kill(1)
    t_kill = time.monotonic()
    res = cl.wait_event("failover-resumed", FAILOVER, since)
    assert res["peer"] in (2, 3), res
    assert res["step"] in ("promoting", "following"), res
    assert res["candidate"] == "2", res
    cl.wait_event("failover-done", FAILOVER, since)
    print(f"\n  killed coordinator 1 during its promote hook; resumed by peer {res['peer']} "
          f"at step {res['step']}; done {time.monotonic() - t_kill:.2f} s after the kill\n"
          + cl.summary(since) + "\n  promote runs:\n    " + "\n    ".join(lines_of(runs)))
    assert len(cl.events("failover-done", since)) == 1
    assert len(cl.events("failover-started", since)) == 1
    chosen = cl.events("candidate-chosen", since)
    assert [(e["peer"], e["backend"]) for e in chosen] == [(1, "2")], chosen
    assert not cl.events("promote-started", since, backend=3)
    cl.assert_no_event({"two-primaries"}, since)
    # Exactly one promotion: h2 left recovery once, onto timeline 2; h3 never.
    assert not cl.in_recovery("h2")
    assert cl.timeline("h2") == 2
    assert cl.promotions("h2") == 1, lab.pg_instance("h2").log_text()[-2000:]
    assert cl.promotions("h3") == 0 and cl.in_recovery("h3")
    assert lab.pg_instance("h1").pid is None
    cl.wait_streaming_from("h3", "h2", 30)
    cl.wait_record(10, lambda c: c.get("primary") == 2 and c.get("step") == "none",
                   "record: primary 2", peers=[2, 3, 4])
    cl.wait_vip_on(2, 15)
    # The killed peer comes back and adopts the record; it starts nothing.
    mark = cl.mark()
    cl.start(1)
    cl.wait_record(15, lambda c: c.get("primary") == 2 and c.get("needs_rejoin") == [1],
                   "restarted peer 1 adopted the record", peers=[1])
    time.sleep(2)
    cl.assert_no_event({"failover-started", "promote-started", "two-primaries"}, mark)
    assert cl.vip_hosts() == ["h2"]


# --------------------------------------------------------------------------
# 9. synchronous replication: no acknowledged row is lost

def test_sync_replication_no_acknowledged_row_lost(lab, fo_bin):
    cl = FoCluster(lab, fo_bin, sync_standby="h2")
    cl.wait_steady()
    w = lab.start_writer(VIP)
    w.wait_acks(40, 20, srv="h1")
    since = cl.mark()
    t0 = time.monotonic()
    lab.stop_postgres("h1", "kill")
    cl.wait_event("failover-done", FAILOVER, since)
    cl.wait_vip_on(2, 15)
    w.wait_acks(20, 20, after=t0, srv="h2")
    w.stop()
    acked = w.acked()
    by = {s: sum(1 for v in acked.values() if v == s) for s in set(acked.values())}
    present = lab.table_ids("h2")
    lost = sorted(set(acked) - present)
    print(f"\n  acknowledged {len(acked)} rows ({by}); write gap "
          f"{w.write_gap(t0 - 1):.2f} s; lost {len(lost)}")
    assert by.get("h1", 0) >= 40 and by.get("h2", 0) >= 20, by
    assert not lost, f"acknowledged rows missing on the new primary: {lost[:20]}"


# --------------------------------------------------------------------------
# 10. maintenance mode: failures are reported, nothing is done

def test_pause_blocks_failover_and_resume_lets_it_happen(lab, fo_bin):
    cl = FoCluster(lab, fo_bin)
    cl.wait_steady()
    since = cl.mark()
    r = cl.ctl(3, "pause")       # on the witness: carried to the coordinator
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    cl.wait_event("maintenance-on", 10, since)
    cl.wait_record(10, lambda c: c.get("maintenance") is True, "maintenance on everywhere")
    lab.stop_postgres("h1", "kill")
    blocked = cl.wait_event("failover-blocked", 20, since)
    assert "maintenance" in blocked["reason"], blocked
    t_end = time.monotonic() + QUIET
    while time.monotonic() < t_end:
        cl.assert_no_event({"failover-started", "backend-fence-started", "backend-stop-started",
                            "promote-started"}, since)
        time.sleep(0.5)
    assert cl.in_recovery("h2")
    assert cl.vip_hosts() == ["h1"], "the VIP moved during maintenance"
    cl.assert_coordinator_kept(since)
    mark = cl.mark()
    r = cl.ctl(2, "resume")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    cl.wait_event("maintenance-off", 10, mark)
    done = cl.wait_event("failover-done", FAILOVER, mark)
    print("\n" + cl.summary(since))
    assert done["new"] == "2"
    assert not cl.in_recovery("h2")
    cl.wait_vip_on(2, 15)


# --------------------------------------------------------------------------
# 11. rejoin: the old primary comes back as a standby of the new one

def test_rejoin_old_primary_streams_from_new_primary(lab, fo_bin):
    cl = FoCluster(lab, fo_bin)
    cl.wait_steady()
    since = cl.mark()
    lab.stop_postgres("h1", "kill")
    cl.wait_event("failover-done", FAILOVER, since)
    cl.wait_record(10, lambda c: c.get("primary") == 2 and c.get("needs_rejoin") == [1],
                   "record: primary 2, 1 needs a rejoin")
    lab.psql("h2", "INSERT INTO fo_rows (id) VALUES (3000001)")
    r = cl.ctl(1, "rejoin", "2")
    assert r.returncode != 0, f"rejoin of the primary accepted: {r.stdout} {r.stderr}"
    mark = cl.mark()
    r = cl.ctl(1, "rejoin", "1")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    cl.wait_event("rejoin-started", 15, mark, backend=1)
    done = cl.wait_event("rejoin-done", 120, mark, backend=1)
    print("\n" + cl.summary(mark))
    assert done["new"] == "2", done
    cl.assert_no_event({"rejoin-failed"}, mark)
    cl.wait_streaming_from("h1", "h2", 30)
    assert cl.timeline("h2") == 2
    lab.psql("h2", "INSERT INTO fo_rows (id) VALUES (3000002)")
    wait_for("h1 replays h2's rows", 15,
             lambda: {3000001, 3000002} <= lab.table_ids("h1"))
    cl.wait_record(10, lambda c: c.get("needs_rejoin") == [] and c.get("primary") == 2,
                   "backend 1 left needs_rejoin")
    wait_for(lambda: f"backend 1 up as a standby ({cl.backend_view(2, 1)})", 15,
             lambda: (cl.backend_view(2, 1) or {}).get("state") == "up" and
             cl.backend_view(2, 1).get("role") == "standby")
    for i in cl.ids:
        assert cl.ctl_status(i)["failover"]["needs_rejoin"] == [], i


# --------------------------------------------------------------------------
# 12. two nodes, no witness: the survivor fences the peer, then the backend

def test_two_node_host_lost_fence_peer_then_backend_then_promote(lab, fo_bin):
    wd = lab.workdir
    cl = FoCluster(lab, fo_bin, witness=False, start=False, sections={
        "watchdog": {"fence_command": f"{FENCE_LAB} {wd} %t %a %i %T %c",
                     "fence_retry": "300ms"}})
    cl.start_all()
    cl.wait_steady()
    w = lab.start_writer(VIP)
    w.wait_acks(10, 15, srv="h1")
    since = cl.mark()
    t0 = time.monotonic()
    lab.crash_host("h1", "link")
    done = cl.wait_event("failover-done", FAILOVER, since)
    print(f"\n  two-node: failover-done {time.monotonic() - t0:.2f} s after the loss of h1\n"
          + cl.summary(since))
    ev = cl.assert_order(["fence-succeeded", "failover-started", "backend-fence-done",
                          "promote-started", "promote-verified", "failover-done"], since)
    assert ev["backend-fence-done"]["method"] == "command", ev["backend-fence-done"]
    assert done["new"] == "2"
    assert any(ln.startswith("fence target=1 ") for ln in lines_of(os.path.join(wd, "fence.log")))
    assert "fenced 1" in lines_of(os.path.join(wd, "fence-backend.log"))
    assert not cl.in_recovery("h2") and cl.timeline("h2") == 2
    cl.wait_vip_on(2, 15)
    w.wait_acks(10, 20, after=t0, srv="h2")
    w.stop()
    assert cl.ctl_status(2)["failover"]["primary"] == 2


# --------------------------------------------------------------------------
# 13. the hook command lines as an operator writes them load

def test_long_failover_hook_command_lines_load(tmp_path, fo_bin):
    """The scripts' header-comment command lines plus the usual extra
    options (an ssh wrapper, the term records, a log file) are 250-300
    characters; pgvigil.conf(5) allows lines of up to 4096. (The other
    tests call the scripts through short wrappers, see failover_commands.)"""
    key = tmp_path / "key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    ssh = "--ssh postgres@%h --ssh-command /usr/local/bin/site-ssh-wrapper"
    opts = ("--state-dir /var/lib/pgvigil/hooks --pg-log /var/log/postgresql/pgvigil-hooks.log "
            "--repl-user replicator")
    standby = ("--host %h --port %p --data %D --id %d --primary-host %H --primary-port %r "
               f"--term %T {ssh} {opts}")
    lines = {
        "failover_command": "/usr/local/libexec/pgvigil/pgvigil-promote --host %H --port %r "
                            "--id %m --term %T --state-dir /var/lib/pgvigil/hooks "
                            "--connect-timeout 5 --timeout 20",
        "stop_command": "/usr/local/libexec/pgvigil/pgvigil-stop --data %D --id %d",
        "follow_primary_command": f"/usr/local/libexec/pgvigil/pgvigil-follow {standby}",
        "rejoin_command": f"/usr/local/libexec/pgvigil/pgvigil-rejoin {standby}",
    }
    conf = tmp_path / "pgvigil.conf"
    conf.write_text(
        f"[cluster]\nname = lab\nstate_dir = {tmp_path}/state\nkey_file = {key}\n\n"
        "[peer.1]\naddress = 192.0.2.1\n\n[peer.2]\naddress = 192.0.2.2\n\n"
        "[peer.3]\naddress = 192.0.2.3\nwitness = yes\n\n"
        "[backend.1]\nhost = 192.0.2.1\npeer = 1\ndata_directory = /var/lib/postgresql/15/main\n\n"
        "[backend.2]\nhost = 192.0.2.2\npeer = 2\ndata_directory = /var/lib/postgresql/15/main\n\n"
        "[failover]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items()))
    longest = max(len(f"{k} = {v}") for k, v in lines.items())
    assert 250 <= longest <= 400, longest
    r = subprocess.run([fo_bin, "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "configuration OK" in r.stdout, \
        f"pgvigil -t refused lines of {longest} characters (exit {r.returncode}):\n" \
        f"{r.stdout}{r.stderr}"
