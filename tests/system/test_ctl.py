"""System tests of pgvigilctl against real daemons in lab namespaces: the
status table and its JSON schema, --watch, the event history (persisted
across restarts, each failover shown as a timeline), events --follow, and
who asked for a mutating request (doc/pgvigilctl.8, doc/events.md).

pgvigilctl reaches the daemons through their control sockets, files
reachable from any namespace; nothing here sends traffic to a lab address
from the root namespace.
"""

import json
import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

import pgvlab
from test_failover import FAILOVER, FoCluster

REPO = Path(__file__).resolve().parents[2]
EVENT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \d+ \d+ [a-z0-9-]+( .*)?$")


def wait_for(what, timeout, fn, period=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(period)


def ctl_bin(pgvigil_bin):
    path = os.environ.get("PGVIGIL_CTL") or \
        os.path.join(os.path.dirname(os.path.abspath(pgvigil_bin)), "pgvigilctl")
    if not os.access(path, os.X_OK):
        pytest.fail(f"pgvigilctl not found: {path}", pytrace=False)
    return path


class Peers:
    """Three peers without PostgreSQL, as tests/system/test_daemon.py runs them."""

    def __init__(self, lab, binary):
        self.lab, self.binary = lab, binary
        self.ctl_bin = ctl_bin(binary)
        self.hosts = {}
        for i in (1, 2, 3):
            lab.add_host(f"gw{i}", *pgvlab.peer_addr(i))
            self.hosts[i] = f"gw{i}"
        self.conf = lab.pgvigil_config([(i, h) for i, h in self.hosts.items()])
        self.pv = {i: lab.start_pgvigil(h, binary, self.conf) for i, h in self.hosts.items()}
        for i, pv in self.pv.items():
            pv.wait_log(rf"event=daemon-started peer={i} ")

    def sock(self, i):
        return self.lab.pgvigil_socket(self.hosts[i])

    def ctl(self, i, *args, timeout=15):
        return subprocess.run([self.ctl_bin, "-s", self.sock(i), *args], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def coordinator(self, timeout=30):
        def agreed():
            sts = [pgvlab.control_status(self.sock(i)) for i in self.pv]
            cs = {st and st["coordinator"] for st in sts}
            return len(cs) == 1 and None not in cs and next(iter(cs))
        return wait_for("one coordinator", timeout, agreed)


def events_json(cl, i, *args):
    r = cl.ctl(i, "events", "--json", *args)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema_version"] == 1
    return doc


# --------------------------------------------------------------------------
# event history

def test_events_history_survives_a_restart_and_counts_and_since_filter(lab, pgvigil_bin):
    cl = Peers(lab, pgvigil_bin)
    cl.coordinator()
    doc = events_json(cl, 1)
    names = [e["event"] for e in doc["events"]]
    assert "watchdog-started" in names and "daemon-started" in names, names
    started = [e for e in doc["events"] if e["event"] == "daemon-started"]
    assert started[0]["fields"]["peer"] == "1" and started[0]["peer"] == 1
    # The file holds one line per event, the same ones.
    state = Path(cl.pv[1].state_dir)
    lines = (state / "events.log").read_text().splitlines()
    assert lines and all(EVENT_LINE.match(ln) for ln in lines), lines[:5]
    assert len(lines) >= len(doc["events"])

    # A clean restart: the old history is still there, followed by the new start.
    assert cl.pv[1].stop() == 0
    cl.pv[1] = lab.start_pgvigil(cl.hosts[1], pgvigil_bin, cl.conf)
    cl.pv[1].wait_log(r"event=daemon-started peer=1 cluster=lab boot=2 ")
    doc = events_json(cl, 1)
    names = [e["event"] for e in doc["events"]]
    boots = [e["fields"]["boot"] for e in doc["events"] if e["event"] == "daemon-started"]
    assert boots == ["1", "2"], names
    i_stop = names.index("daemon-stopped")
    assert names.index("daemon-stopping") < i_stop < len(names) - 1, names

    # -n: the last N; --since: only newer ones.
    r = cl.ctl(1, "events", "-n", "3")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 3, r.stdout
    r = cl.ctl(1, "events", "--since", "1h")
    assert r.returncode == 0 and "daemon-started" in r.stdout
    r = cl.ctl(1, "events", "--since", "2000-01-01T00:00")
    assert r.returncode == 0 and r.stdout.count("daemon-started") == 2
    r = cl.ctl(1, "events", "--since", "2999-01-01T00:00")
    assert (r.returncode, r.stdout) == (0, "")
    # Human errors: one line, exit 2.
    for args in (("events", "--since", "yesterday"), ("events", "-n", "0"),
                 ("events", "extra"), ("pause", "--since", "1h"), ("events", "-w")):
        r = cl.ctl(1, *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert r.stderr.startswith("pgvigilctl: ") and len(r.stderr.splitlines()) == 2, r.stderr


def test_events_follow_receives_an_event_that_happens_after_it_connected(lab, pgvigil_bin):
    cl = Peers(lab, pgvigil_bin)
    c = cl.coordinator()
    p = subprocess.Popen([cl.ctl_bin, "-s", cl.sock(c), "events", "--follow", "-n", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    try:
        out = ""

        def read_until(pattern, timeout):
            nonlocal out
            deadline = time.monotonic() + timeout
            while not re.search(pattern, out, re.M):
                left = deadline - time.monotonic()
                assert left > 0, f"no {pattern!r} from events --follow; got:\n{out}"
                r, _, _ = select.select([p.stdout], [], [], left)
                if r:
                    chunk = os.read(p.stdout.fileno(), 65536)
                    assert chunk, f"events --follow ended: {p.stderr.read()}"
                    out += chunk.decode()
        # the last two events first
        read_until(r"\S", 10)
        # A pause after the follower connected: it streams the request, with who asked.
        r = cl.ctl(c, "pause")
        assert r.returncode == 0, r.stderr
        read_until(r"operator-request request=pause backend=0 by=\"uid=0\(root\) pid=\d+\"", 10)
        read_until(r"maintenance-on", 10)
        # The follower does not hold a control slot: status still answers.
        assert cl.ctl(c, "status").returncode == 0
        r = cl.ctl(c, "resume")
        assert r.returncode == 0, r.stderr
        read_until(r"operator-request request=resume", 10)
        # Stopping the daemon ends the stream: the follower exits 3.
        assert cl.pv[c].stop() == 0
        rc = p.wait(10)
        assert rc == 3, (rc, p.stderr.read())
        assert b"closed the stream" in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    # The log names who asked, too.
    ev = pgvlab.log_events(cl.pv[c], "operator-request", request="pause")
    assert ev and re.fullmatch(r"uid=0\(root\) pid=\d+", ev[0]["by"]), ev


def test_status_watch_prints_twice_and_stops(lab, pgvigil_bin):
    cl = Peers(lab, pgvigil_bin)
    cl.coordinator()
    t0 = time.monotonic()
    r = cl.ctl(1, "status", "-w", "1", "-n", "2", timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("every 1s: pgvigilctl status") == 2, r.stdout
    assert r.stdout.count("\nPeers:\n") == 2 and r.stdout.count("Cluster lab, as peer 1") == 2, r.stdout
    assert time.monotonic() - t0 >= 1.0
    # With --json: one document per line, nothing else.
    r = cl.ctl(1, "status", "--watch=1", "-n", "2", "--json", timeout=30)
    assert r.returncode == 0, r.stderr
    docs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(docs) == 2 and all(d["schema_version"] == 1 for d in docs), r.stdout
    for args in (("status", "-w", "0"), ("status", "-n", "2"), ("status", "-w", "x")):
        r = cl.ctl(1, *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)


# --------------------------------------------------------------------------
# status and a failover's timeline, against PostgreSQL

def table_rows(text, section):
    """The data lines of a table of the status ("Peers:" / "Backends:")."""
    lines = text.split(f"\n{section}\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return lines[1:]


def test_status_table_and_json_then_failover_timeline_in_events(lab, pgvigil_bin):
    cl = FoCluster(lab, pgvigil_bin)
    cl.wait_steady()
    st = cl.ctl_status(1)
    # JSON: the versioned schema and the fields the table shows.
    assert st["schema_version"] == 1 and st["version"] == 1
    sysid = st["system_identifier"]
    assert re.fullmatch(r"\d+", sysid), st
    b = {x["id"]: x for x in st["backends"]}
    assert (b[1]["cluster_role"], b[1]["role"], b[1]["state"]) == ("primary", "primary", "up")
    assert b[1]["lag_bytes"] is None and b[1]["replay_lag_ms"] is None
    assert (b[2]["cluster_role"], b[2]["role"], b[2]["state"]) == ("standby", "standby", "up")
    assert isinstance(b[2]["lag_bytes"], int) and b[2]["lag_bytes"] >= 0, b[2]
    assert isinstance(b[2]["replay_lag_ms"], int) and b[2]["replay_lag_ms"] >= 0, b[2]
    assert all(x["system_id"] == sysid for x in b.values())
    assert st["failover"]["step"] == "none" and st["failover"]["name"] is None
    assert st["failover"]["kind"] is None and st["failover"]["maintenance"] is False
    assert st["vip"]["holder"] == 1 and st["vip"]["address"] == pgvlab.vip_addr(0)[0]

    # The table: header, peers, backends with their marks.
    r = cl.ctl(1, "status")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("Cluster lab, as peer 1 sees it\n"), out
    assert f"  term {st['term']}, coordinator 1 (this peer, lease " in out, out
    assert f"  system identifier {sysid}\n" in out, out
    assert f"  VIP {st['vip']['address']} on eth0: holder peer 1, held here\n" in out, out
    assert "  maintenance off\n" in out and "  failover: none in progress; primary backend 1," in out
    peers = table_rows(out, "Peers:")
    assert len(peers) == len(cl.ids) and peers[0].startswith("*  1 "), out
    rows = {int(ln[3:].split()[0]): ln for ln in table_rows(out, "Backends:")}
    assert sorted(rows) == sorted(b), out
    f1, f2 = rows[1][3:].split(), rows[2][3:].split()
    assert rows[1].startswith("*  1 ") and f1[2:5] == ["primary", "primary", "up"], out
    assert rows[2].startswith("   2 ") and f2[2:5] == ["standby", "standby", "up"], out
    assert f1[1] == f"{b[1]['host']}:{b[1]['port']}"
    assert re.fullmatch(r"\d+", f2[7]) and re.fullmatch(r"\d+\.\d", f2[8]), rows[2]

    # A failover: kill -9 of the primary's postmaster.
    since = cl.mark()
    lab.stop_postgres("h1", "kill")
    done = cl.wait_event("failover-done", FAILOVER, since)
    started = cl.events("failover-started", since)[0]
    name = done.get("failover")
    socks = [a for i in cl.ids for a in ("-s", cl.sock(i))]

    def ctl_all(*args):
        return subprocess.run([cl.ctl_bin, *socks, *args], capture_output=True, text=True,
                              timeout=15, stdin=subprocess.DEVNULL)
    # The histories of every peer, merged: one failover, done, every step in it
    # (the coordinator that started it may have handed it over to the new
    # primary's peer, which logged the rest).
    r = ctl_all("events", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    fos = [f for f in doc["failovers"] if f["outcome"] == "done"]
    assert len(fos) == 1, doc["failovers"]
    fo = fos[0]
    assert (fo["old_primary"], fo["new_primary"]) == (1, 2), fo
    assert name and fo["name"] == name, (fo, done)
    steps = [e for e in doc["events"] if e["failover"] == fo["name"]]
    tokens = [e["event"] for e in steps]
    for t in ("failover-started", "backend-fence-done", "candidate-chosen", "promote-started",
              "promote-done", "promote-verified", "failover-done"):
        assert t in tokens, (t, tokens)
    assert tokens[0] == "failover-started" and tokens[-1] == "failover-done", tokens
    assert len(steps) == fo["events"]
    hooks = [e["fields"] for e in steps if e["event"] == "hook-finished"]
    assert any(h["hook"] == "failover" and h["outcome"] == "ok" for h in hooks), hooks
    offs = [e["offset_ms"] for e in steps]
    assert offs[0] == 0 and offs == sorted(offs) and offs[-1] == fo["duration_ms"], offs
    # The text view: a header, then every step with its offset.
    r = ctl_all("events")
    assert r.returncode == 0, r.stderr
    head = re.search(rf"== failover {re.escape(name)}: backend 1 -> 2, done after "
                     rf"{fo['duration_ms']} ms, {fo['events']} events\n", r.stdout)
    assert head, r.stdout
    print("\n" + r.stdout[head.start():])
    # Its steps carry their offset; other events may come between them.
    tail = [ln for ln in r.stdout[head.end():].splitlines() if re.search(r"\s\+\d+ ms ", ln)]
    assert len(tail) == len(steps), tail
    assert "failover-started" in tail[0] and "failover-done" in tail[-1], tail
    # One peer's own history: the failover it started, done or handed over.
    own = events_json(cl, started["peer"])
    mine = [f for f in own["failovers"] if f["name"] == name]
    assert len(mine) == 1 and mine[0]["outcome"] in ("done", "handed-over"), own["failovers"]
    c = done["peer"]

    # After it: the table marks the new primary and the unreachable old one.
    def after():
        s = cl.ctl(c, "status")
        rows = {int(ln[3:].split()[0]): ln for ln in table_rows(s.stdout, "Backends:")}
        return rows if rows[2].startswith("*  2 ") and rows[1][:3] == " ? " else None
    rows = wait_for("backend 2 marked primary, 1 unreachable", 20, after)
    assert rows[1][3:].split()[2] == "needs-rejoin", rows[1]


def test_switchover_is_one_switchover_timeline_across_peers(lab, pgvigil_bin):
    cl = FoCluster(lab, pgvigil_bin)
    cl.wait_steady()
    since = cl.mark()
    r = cl.ctl(3, "switchover", "--to", "2", timeout=150)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    done = cl.wait_event("failover-done", FAILOVER, since)
    assert done["kind"] == "switchover", done
    socks = [a for i in cl.ids for a in ("-s", cl.sock(i))]
    r = subprocess.run([cl.ctl_bin, *socks, "events", "--json"], capture_output=True,
                       text=True, timeout=15, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    fos = [f for f in doc["failovers"] if f["name"] == done["failover"]]
    assert len(fos) == 1, doc["failovers"]
    assert (fos[0]["kind"], fos[0]["outcome"]) == ("switchover", "done"), fos[0]
    assert (fos[0]["old_primary"], fos[0]["new_primary"]) == (1, 2), fos[0]
    tokens = [e["event"] for e in doc["events"] if e["failover"] == done["failover"]]
    for t in ("failover-started", "backend-stop-started", "backend-stopped",
              "backend-fence-done", "candidate-chosen", "promote-verified", "failover-done"):
        assert t in tokens, (t, tokens)
    # Who asked is in the history of the peer it was asked on.
    req = [e for e in events_json(cl, 3)["events"] if e["event"] == "operator-request"]
    assert req and req[-1]["fields"]["request"] == "switchover", req
    assert re.fullmatch(r"uid=0\(root\) pid=\d+", req[-1]["fields"]["by"]), req
    r = subprocess.run([cl.ctl_bin, *socks, "events"], capture_output=True, text=True,
                       timeout=15, stdin=subprocess.DEVNULL)
    assert re.search(rf"== switchover {re.escape(done['failover'])}: backend 1 -> 2, done after "
                     r"\d+ ms", r.stdout), r.stdout
