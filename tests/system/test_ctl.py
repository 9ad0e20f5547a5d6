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
import signal
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

