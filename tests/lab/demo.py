#!/usr/bin/python3
"""demo.py - the pgvigil demo: a PostgreSQL failover in a lab of network namespaces.

Run through ./run-demo, which installs what is missing and builds pgvigil first.

    demo.py BINARY          bring the lab up, show it, tear it down on Enter
    demo.py BINARY --keep   leave it running; `demo.py down` removes it
    demo.py down            tear down a lab left by --keep (or the logs of a failed run)

The colocated layout (doc/failover.md): host h1 runs pgvigil peer 1 and the
PostgreSQL 15 primary, h2 peer 2 and a streaming standby, h3 a witness peer;
'client' writes through the VIP. [failover] runs the shipped hook scripts of
hooks/scripts (promote by SQL, stop on the old primary's own host, follow and
rejoin through the lab's ssh stand-in) and the lab's STONITH
tests/lab/fence-backend-lab. The demo kills the primary's postmaster, rejoins
it, switches over back to it (planned, no data loss), then loses its whole
host. Every claim printed is read
back from the lab (psql, the kernels' addresses, the client's acknowledged
writes, the daemons' event tokens and status), not asserted.
"""

import calendar
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import pgvlab  # noqa: E402

DEMO_DIR = "/tmp/pgvigil-demo"
VIP = pgvlab.vip_addr(0)[0]
STATE = os.path.join(DEMO_DIR, "lab.json")
TTY = sys.stdout.isatty()
BOLD = "\033[1m" if TTY else ""
DIM = "\033[2m" if TTY else ""
RESET = "\033[0m" if TTY else ""

# Bounds of the waits, in seconds (the machine may be shared and slow).
BOOT = 30        # start -> election, first checks, primary known, VIP held
FAILOVER = 40    # fault -> failover-done (a silent host takes a few check timeouts)
REJOIN = 120     # pg_rewind of the old primary, its start, streaming

TS_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) UTC ", re.M)
# The event tokens a failover timeline shows.
TIMELINE = {
    "backend-failed", "failover-started", "failover-resumed", "failover-blocked",
    "failover-refused", "backend-stop-started", "backend-stopped", "backend-stop-failed",
    "backend-fence-started", "backend-fence-done", "backend-fence-failed", "candidate-chosen",
    "promote-started", "promote-done", "promote-failed", "promote-verified",
    "coordinator-transfer", "vip-released", "vip-acquired", "follow-started", "follow-done",
    "follow-failed", "failover-done", "role-changed", "hook-started", "hook-finished",
    "primary-known", "operator-request", "rejoin-started", "rejoin-done", "rejoin-failed",
}
# Fields too long or too internal for the timeline.
QUIET_FIELDS = {"standbys", "pid", "timeout_ms", "signal", "interface", "lsn", "last_lsn",
                "error", "host", "port", "vip"}


class DemoFailed(Exception):
    """Something the demo shows did not happen; the message says what."""


def say(msg=""):
    print(msg, flush=True)


def step(n, title):
    say()
    say(f"{BOLD}[{n}] {title}{RESET}")


def show(lines, indent="    "):
    for line in lines:
        say(f"{indent}{DIM}{line}{RESET}")


def wait_for(what, timeout, fn, period=0.05):
    """Poll fn() until it returns something true and return it; DemoFailed
    after timeout (what may be a callable giving the state at the end)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise DemoFailed(f"{what() if callable(what) else what}: not within {timeout} s")
        time.sleep(period)


def hook_wrappers(lab):
    """[failover] command lines of the shipped scripts (Lab.failover_hooks)."""
    return lab.failover_hooks()


class Demo:
    def __init__(self, lab, binary):
        self.lab, self.binary = lab, binary
        self.ctl_bin = os.path.join(os.path.dirname(binary), "pgvigilctl")
        self.layout = None
        self.hosts = {}          # peer id -> host
        self.pv = {}             # peer id -> PgvigilProcess
        self.conf = None
        self.writer = None

    # ---- daemons

    def start(self, i, conf=None):
        self.pv[i] = self.lab.start_pgvigil(self.hosts[i], self.binary, conf or self.conf)
        return self.pv[i]

    def live(self):
        return [i for i in sorted(self.pv) if self.pv[i].alive()]

    def sock(self, i):
        return self.lab.pgvigil_socket(self.hosts[i])

    def status(self, i, timeout=1.0):
        if i not in self.live():
            return None
        return pgvlab.control_status(self.sock(i), timeout)

    def ctl(self, i, *args, timeout=15):
        """pgvigilctl -s <peer i's control socket> ARGS (a file: no network)."""
        return subprocess.run([self.ctl_bin, "-s", self.sock(i), *args], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def ctl_lines(self, i, *args):
        r = self.ctl(i, *args)
        out = (r.stdout + r.stderr).rstrip().splitlines()
        return [f"$ pgvigilctl {' '.join(args)}   (peer {i}, exit {r.returncode})"] + out, r

    def ctl_events(self, since_wall):
        """The first failover since since_wall as `pgvigilctl events` shows it,
        with the histories of every live peer merged (-s once per peer)."""
        socks = [a for i in sorted(self.pv) if self.pv[i].alive() for a in ("-s", self.sock(i))]
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since_wall - 1))
        args = ["-s", "...", "events", "--since", since]
        r = subprocess.run([self.ctl_bin, *socks, "events", "--since", since],
                           capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
        lines = r.stdout.splitlines()
        start = next((k for k, ln in enumerate(lines) if "== failover" in ln), None)
        if start is None:
            return [f"$ pgvigilctl {' '.join(args)}   (exit {r.returncode})"] + \
                (r.stdout + r.stderr).splitlines()
        end = next((k for k, ln in enumerate(lines[start:], start) if "failover-done" in ln),
                   len(lines) - 1)
        return [f"$ pgvigilctl {' '.join(args)}   (every peer's socket; exit {r.returncode})"] + \
            [ln[11:180] for ln in lines[start:end + 1]]

    def marks(self):
        return {i: self.pv[i].mark() for i in self.pv}

    def brief(self):
        """Per live peer: term, coordinator, VIP state, cluster record."""
        out = {}
        for i in self.live():
            st = self.status(i)
            if not st:
                out[i] = None
                continue
            c = st.get("failover") or {}
            out[i] = {"term": st.get("term"), "coordinator": st.get("coordinator"),
                      "vip": (st.get("vip") or {}).get("state"),
                      **{k: c.get(k) for k in ("primary", "step", "needs_rejoin", "waiting")}}
        return out

    # ---- events of every peer, merged in time order

    def events(self, since=None, token=None, **fields):
        out = []
        for i in sorted(self.pv):
            pv = self.pv[i]
            text = pv.log_text()
            for ev in pgvlab.log_events(pv, token, (since or {}).get(i, 0), **fields):
                m = TS_RE.search(text, text.rfind("\n", 0, ev["pos"]) + 1)
                if m:
                    ev["t"] = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) \
                        + int(m.group(2)) / 1000.0
                else:
                    ev["t"] = 0.0
                ev["peer"] = i
                out.append(ev)
        out.sort(key=lambda e: (e["t"], e["peer"], e["pos"]))
        return out

    def wait_event(self, token, timeout, since=None, **fields):
        """The first matching event of any peer (bounded wait)."""
        def found():
            evs = self.events(since, token, **fields)
            return evs[0] if evs else None
        try:
            return wait_for(f"event={token} {fields} from any peer", timeout, found)
        except DemoFailed as e:
            raise DemoFailed(f"{e}; the peers' events since the step began:\n"
                             + "\n".join(self.timeline(since)[-30:])) from None

    def timeline(self, since, t0=None, keep=None):
        """Rows of the merged timeline: ms from t0 (wall clock; the time of
        day without t0), peer, token, fields."""
        rows = []
        for e in self.events(since):
            tok = e["event"]
            if tok not in TIMELINE or (keep and not keep(e)):
                continue
            f = " ".join(f"{k}={v}" for k, v in e.items()
                         if k not in ("event", "pos", "t", "peer") and k not in QUIET_FIELDS)
            if t0 is not None:
                when = f"{1000 * (e['t'] - t0):+7.0f} ms"
            else:
                when = time.strftime("%H:%M:%S", time.gmtime(e["t"])) \
                    + f".{round(e['t'] * 1000) % 1000:03d}"
            rows.append(f"{when}  peer {e['peer']}  {tok:22} {f}")
        return rows

    # ---- the lab's truth

    def vip_hosts(self):
        """Hosts whose kernel has the VIP on eth0 (isolated hosts left out)."""
        out = []
        for i in sorted(self.hosts):
            h = self.hosts[i]
            if h in self.lab._isolated:
                continue
            r = self.lab.run(h, [pgvlab.IP, "-o", "-4", "addr", "show", "dev", "eth0"],
                             timeout=10)
            if f" {VIP}/" in r.stdout:
                out.append(h)
        return out

    def wait_vip_on(self, i, timeout):
        h = self.hosts[i]

        def ok():
            st = self.status(i)
            return (st and (st.get("vip") or {}).get("state") == "held"
                    and self.vip_hosts() == [h])
        wait_for(lambda: f"the VIP on {h} only (kernels: {self.vip_hosts()}, "
                         f"status: {self.brief()})", timeout, ok, period=0.1)

    def wait_record(self, timeout, pred, what, peers=None):
        def ok():
            for i in peers or self.live():
                st = self.status(i)
                if not st or not pred(st.get("failover") or {}):
                    return False
            return True
        wait_for(lambda: f"{what} (status: {self.brief()})", timeout, ok, period=0.1)

    def wait_steady(self, primary, timeout):
        """Every live peer records `primary` with no step in progress, its peer
        coordinates and holds the VIP, and its check of the primary is up."""
        def ok():
            for i, pv in self.pv.items():
                if not pv.alive() and self.hosts[i] not in self.lab._isolated:
                    raise DemoFailed(f"peer {i} exited ({pv.returncode})")
            sts = {i: self.status(i) for i in self.live()}
            if any(st is None for st in sts.values()):
                return None
            for st in sts.values():
                c = st.get("failover") or {}
                if c.get("primary") != primary or c.get("step") != "none":
                    return None
            st = sts.get(primary)
            if not st or st.get("coordinator") != primary or \
                    (st.get("vip") or {}).get("state") != "held":
                return None
            b = {x["id"]: x for x in st.get("backends") or []}
            return (b.get(primary) or {}).get("state") == "up"
        wait_for(lambda: f"steady state with primary {primary} (status: {self.brief()})",
                 timeout, ok, period=0.1)

    def in_recovery(self, h):
        return self.lab.psql(h, "SELECT pg_is_in_recovery()", timeout=10)

    def timeline_id(self, h):
        return int(self.lab.psql(h, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
                                 timeout=10), 16)

    def receiver(self, h):
        try:
            return self.lab.psql(h, "SELECT status || ' from ' || sender_host || ':' || "
                                    "sender_port FROM pg_stat_wal_receiver", timeout=10)
        except pgvlab.LabError:
            return ""

    # ---- the client's writes

    def outage(self, t_kill, old, new):
        """Print the client's view of a failover: last ack from old, first
        from new, the write gap, failed attempts; rows acknowledged and lost
        (acknowledged ids missing from the new primary's table)."""
        res = self.writer.results()
        last_old = max((r[1] for r in res if r[2] and r[4] == old and r[0] < t_kill),
                       default=None)
        first_new = min((r[1] for r in res if r[2] and r[4] == new and r[0] >= t_kill),
                        default=None)
        acked = self.writer.acked()            # before the table is read: all committed
        present = self.lab.table_ids(new)
        lost = sorted(set(acked) - present)
        by = {}
        for srv in acked.values():
            by[srv] = by.get(srv, 0) + 1
        fails = self.writer.failures(t_kill)
        lines = []
        if last_old is not None and first_new is not None:
            lines.append(f"client: last write acknowledged by {old} at "
                         f"{1000 * (last_old - t_kill):+.0f} ms, first by {new} at "
                         f"{1000 * (first_new - t_kill):+.0f} ms: write gap "
                         f"{1000 * (first_new - last_old):.0f} ms "
                         f"({sum(fails.values())} attempts failed meanwhile: "
                         f"{', '.join(f'{k} x{v}' for k, v in sorted(fails.items())) or 'none'})")
        lines.append(f"client: {len(acked)} INSERTs acknowledged so far "
                     f"({', '.join(f'{n} by {s}' for s, n in sorted(by.items()))}); "
                     f"{new}'s table has {len(present)} rows; acknowledged but lost: {len(lost)}"
                     + (f" {lost[:10]}" if lost else ""))
        show(lines)
        return lost

    # ---- failure report

    def report(self):
        say(f"{BOLD}what the peers logged last:{RESET}")
        for i in sorted(self.pv):
            say(f"  --- peer {i} on {self.hosts[i]} ({self.pv[i].log_path}), "
                f"{'running' if self.pv[i].alive() else 'exited ' + str(self.pv[i].returncode)}")
            show(self.pv[i].log_tail(25).splitlines())
        for h, inst in sorted(self.lab.pg.items()):
            say(f"  --- PostgreSQL on {h} ({inst.logfile})")
            show(inst.log_text().splitlines()[-8:])
        if self.writer:
            say(f"  --- client writer ({self.writer.path})")
            show(self.writer.lines()[-5:])


def down():
    """Remove the lab a --keep run (or a failed run, which keeps its logs)
    left: its processes, namespaces and DEMO_DIR."""
    if not os.path.exists(STATE):
        say(f"no demo lab recorded in {STATE}")
        return 0
    res = pgvlab.cleanup_stale(pgvlab.load_state(STATE)["prefix"], DEMO_DIR)
    if os.path.isdir(DEMO_DIR):    # a failed run's lab keeps its workdir: the demo's own
        shutil.rmtree(DEMO_DIR, ignore_errors=True)
        res["workdir_removed"] = not os.path.exists(DEMO_DIR)
    say(f"demo lab removed: {res}")
    return 0


def demo(binary, keep):
    if os.path.exists(STATE):
        say(f"removing the lab a previous demo left in {DEMO_DIR}")
        down()
    lab = pgvlab.Lab(workdir=DEMO_DIR)
    d = Demo(lab, binary)
    try:
        return run(d, keep)
    except (DemoFailed, pgvlab.LabError, AssertionError, subprocess.TimeoutExpired) as e:
        say()
        say(f"{BOLD}demo FAILED: {e}{RESET}")
        try:
            d.report()
        except Exception as e2:  # the report must not hide the failure
            say(f"(could not read the logs: {e2})")
        lab.keep = True          # the logs stay; the next run or `down` removes them
        lab.teardown()
        say(f"lab stopped; its logs are kept in {DEMO_DIR} (./run-demo down removes them)")
        return 1


def run(d, keep):
    lab = d.lab
    t_begin = time.monotonic()

    step(1, "the lab: network namespaces on a private bridge (never linked to this host)")
    d.layout = lab.add_colocated_cluster(backends=2, witness=True)
    d.hosts = dict(d.layout["peers"])
    role = {"h1": "pgvigil peer 1 + PostgreSQL primary",
            "h2": "pgvigil peer 2 + streaming standby",
            "h3": "pgvigil peer 3, witness (votes, no PostgreSQL)",
            "client": f"writes through the VIP {VIP}"}
    for name, h in lab.hosts.items():
        say(f"    {name:7} {lab.ns(name):18} {h.ipv4:14} {h.ipv6:16} {role.get(name, '')}")

    step(2, "PostgreSQL 15 replication is real: a row written on h1 appears on h2")
    rep = lab.psql("h1", "SELECT application_name || ' ' || client_addr || ' ' || state "
                         "FROM pg_stat_replication")
    show([f"h1 pg_stat_replication: {rep}",
          f"h2 pg_is_in_recovery(): {d.in_recovery('h2')}"])
    token = uuid.uuid4().hex[:12]
    lab.run("client", [lab.pg_bin("psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-h",
                       lab.addr("h1"), "-U", "postgres",
                       "-c", "CREATE TABLE demo(t text, at timestamptz DEFAULT now());"
                             f"INSERT INTO demo(t) VALUES ('{token}')"],
            check=True, timeout=20)
    start = time.monotonic()

    def replayed():
        try:
            return lab.psql("h2", f"SELECT t FROM demo WHERE t = '{token}'") == token
        except pgvlab.LabError:
            return False    # the CREATE TABLE has not been replayed yet
    wait_for("the row written on h1 on the standby h2", 10, replayed, period=0.02)
    show([f"the client wrote {token} on h1 ({lab.addr('h1')}); "
          f"read back on h2 after {1000 * (time.monotonic() - start):.0f} ms"])

    step(3, "configuration check: pgvigil -t")
    notify_log = os.path.join(lab.workdir, "notify.log")
    failover = hook_wrappers(lab)
    hooks = {"notify_command": f"echo $(date +%%T) peer %i: %e >> {notify_log}",
             "hook_timeout": "60s", "hook_kill_grace": "1s"}
    d.conf = lab.colocated_config(
        d.layout, {"vip": {"address": VIP, "interface": "eth0", "follow": "primary"},
                   "failover": failover}, hooks=hooks)
    conf_path = os.path.join(lab.workdir, "pgvigil.conf")
    with open(conf_path, "w") as f:
        f.write(d.conf.replace("@STATE_DIR@", "/var/lib/pgvigil"))
    r = subprocess.run([d.binary, "-t", "-c", conf_path], capture_output=True, text=True,
                       timeout=10)
    show([f"$ pgvigil -t -c pgvigil.conf  ->  {(r.stdout + r.stderr).strip()} "
          f"(exit {r.returncode})"])
    if r.returncode != 0:
        raise DemoFailed("the demo's own configuration was refused")
    bad_path = os.path.join(lab.workdir, "broken.conf")
    with open(bad_path, "w") as f:
        f.write(d.conf.replace("@STATE_DIR@", "var/lib/pgvigil")
                .replace("port = 5480", "port = 0", 1)
                .replace("follow = primary", "follow = standby")
                .replace("[backend.2]\n", "[backend.2]\npriority = 300\n")
                + "[vip]\naddress = 192.0.2.201\n")
    r = subprocess.run([d.binary, "-t", "-c", bad_path], capture_output=True, text=True,
                       timeout=10)
    show([f"$ pgvigil -t -c broken.conf  ->  exit {r.returncode}"]
         + [f"  {line}" for line in (r.stdout + r.stderr).splitlines()])
    if r.returncode == 0:
        raise DemoFailed("a broken configuration passed pgvigil -t")

    step(4, "three pgvigil peers start; each finds its [peer.N] by its own address")
    t_start, t_start_wall = time.monotonic(), time.time()
    since = {}              # a fresh lab: every log starts empty
    for i in sorted(d.hosts):
        d.start(i)
    for i in sorted(d.hosts):
        d.pv[i].wait_log(rf"event=daemon-started peer={i} ", timeout=15)
        show([e for e in d.pv[i].log_text().splitlines() if "event=daemon-started" in e][-1:])

    step(5, "they elect a coordinator; the role goes to the primary's peer "
            "([vip] follow = primary)")
    d.wait_steady(1, BOOT)
    took = time.monotonic() - t_start
    say("    merged from every peer's log (ms after the start):")
    show(d.timeline(since, t_start_wall, keep=lambda e: e["event"] in (
        "role-changed", "coordinator-transfer", "vip-acquired", "primary-known")
        and (e["event"] != "role-changed" or e.get("role") == "coordinator")), indent="      ")
    first = d.events(since, "role-changed", role="coordinator")
    moved = d.events(since, "coordinator-transfer")
    show([f"peer {first[0]['peer']} was elected first; " + (
        f"it handed the role to peer {moved[0].get('to')}, the primary's peer"
        if moved else "it is the primary's peer, so it keeps the role")
        if first else "no election logged?",
        f"steady {1000 * took:.0f} ms after the start: peer 1 coordinates and holds the VIP, "
        "every peer records backend 1 as the primary"])
    lines, _ = d.ctl_lines(1, "status")
    show(lines)

    step(6, f"the VIP {VIP} is on h1; a client writes through it")
    d.wait_vip_on(1, 10)
    show([f"VIP on: {', '.join(d.vip_hosts()) or 'nobody'} (read from each host's kernel)"])
    d.writer = lab.start_writer(VIP)
    acks = d.writer.wait_acks(20, 20, srv="h1")
    show([f"client: a new connection to {VIP}:5432 every 50 ms, one INSERT INTO fo_rows each; "
          f"{len(acks)} acknowledged so far, RETURNING srv (cluster_name) = "
          f"{', '.join(sorted({a[4] for a in acks}))}"])

    step(7, "kill -9 of the primary's postmaster on h1")
    since = d.marks()
    acks_before = len(d.writer.acked())
    t_wall, t_kill = time.time(), time.monotonic()
    pid = lab.pg_instance("h1").pid
    lab.stop_postgres("h1", "kill")
    show([f"killed postmaster {pid} on h1 with {acks_before} rows acknowledged"])
    done = d.wait_event("failover-done", FAILOVER, since)
    d.wait_vip_on(2, 15)
    d.writer.wait_acks(10, 20, after=t_kill, srv="h2")
    d.wait_record(10, lambda c: c.get("primary") == 2 and c.get("step") == "none",
                  "every peer records primary 2, no step in progress")
    say("    the failover, merged from every peer's log (ms after the kill):")
    show(d.timeline(since, t_wall, keep=lambda e: not (
        e["event"] == "role-changed" and e.get("role") != "coordinator")
        and e["event"] not in ("hook-started", "hook-finished")), indent="      ")
    show([done_line(done, t_wall, "kill"),
          f"h2: pg_is_in_recovery() = {d.in_recovery('h2')}, timeline {d.timeline_id('h2')}",
          f"VIP on: {', '.join(d.vip_hosts())} (read from each host's kernel)"])
    say("    the same failover in the daemons' event history, each step with its offset and,")
    say("    in parentheses, the ms since the step before:")
    show(d.ctl_events(t_wall), indent="      ")
    lost = d.outage(t_kill, "h1", "h2")
    if lost:
        show([f"NOTE: {len(lost)} acknowledged rows are not on h2: asynchronous replication "
              "lost the last commits before the kill"])
    lines, _ = d.ctl_lines(3, "status")
    show(lines)

    step(8, "pgvigilctl rejoin 1: the old primary is rewound and follows h2")
    since = d.marks()
    t_wall = time.time()
    lines, r = d.ctl_lines(1, "rejoin", "1")
    show(lines)
    if r.returncode != 0:
        raise DemoFailed("pgvigilctl rejoin 1 was refused")
    rj = d.wait_event("rejoin-done", REJOIN, since, backend=1)
    wait_for(lambda: f"h1 streaming from h2 (receiver: {d.receiver('h1')!r})", 30,
             lambda: d.receiver("h1").startswith(f"streaming from {lab.addr('h2')}:"),
             period=0.2)
    d.wait_record(15, lambda c: c.get("needs_rejoin") == [] and c.get("primary") == 2,
                  "every peer: needs_rejoin empty")
    say("    merged from every peer's log (ms after the request), with the hook's own lines:")
    show(d.timeline(since, t_wall, keep=lambda e: e["event"] not in ("role-changed",)),
         indent="      ")
    show([re.sub(r"^.*hook rejoin\[\d+\]: ", "", ln)
          for ln in d.pv[rj["peer"]].log_text()[since[rj["peer"]]:].splitlines()
          if re.search(r"hook rejoin\[\d+\]: pgvigil-rejoin: ", ln)], indent="      ")
    nr = {i: ((d.status(i) or {}).get("failover") or {}).get("needs_rejoin") for i in d.live()}
    show([f"h1 pg_is_in_recovery() = {d.in_recovery('h1')}; pg_stat_wal_receiver: "
          f"{d.receiver('h1')}",
          "needs_rejoin in each peer's status: "
          + ", ".join(f"peer {i} {json.dumps(v)}" for i, v in nr.items())])
    token = uuid.uuid4().hex[:12]
    lab.psql("h2", f"INSERT INTO demo(t) VALUES ('{token}')")
    wait_for("h1 replays a row written on h2", 15, lambda: lab.psql(
        "h1", f"SELECT t FROM demo WHERE t = '{token}'") == token, period=0.05)
    show([f"a row written on h2 ({token}) is read back on h1"])

    step(9, "pgvigilctl switchover --to 1: the planned way back, with no data loss")
    d.writer.wait_acks(10, 20, srv="h2")
    wait_for("peer 3 checked h1 as a standby", 15, lambda: any(
        b.get("id") == 1 and b.get("state") == "up" and b.get("role") == "standby"
        for b in ((d.status(3) or {}).get("backends") or [])), period=0.1)
    since = d.marks()
    t_wall, t_sw = time.time(), time.monotonic()
    lines, r = d.ctl_lines(3, "switchover", "--to", "1")
    show(lines)
    if r.returncode != 0:
        raise DemoFailed("pgvigilctl switchover --to 1 failed")
    d.wait_vip_on(1, 15)
    d.writer.wait_acks(10, 20, after=t_sw, srv="h1")
    d.wait_event("rejoin-done", REJOIN, since, backend=2)
    wait_for(lambda: f"h2 streaming from h1 (receiver: {d.receiver('h2')!r})", 30,
             lambda: d.receiver("h2").startswith(f"streaming from {lab.addr('h1')}:"),
             period=0.2)
    d.wait_record(15, lambda c: c.get("primary") == 1 and c.get("needs_rejoin") == [],
                  "every peer: primary 1, needs_rejoin empty")
    say("    the switchover, merged from every peer's log (ms after the request):")
    show(d.timeline(since, t_wall, keep=lambda e: not (
        e["event"] == "role-changed" and e.get("role") != "coordinator")
        and e["event"] not in ("hook-started", "hook-finished", "backend-failed",
                               "backend-up", "backend-role-changed")), indent="      ")
    gap = d.writer.write_gap(t_sw - 1.0, time.monotonic())
    present = lab.table_ids("h1")
    lost = sorted(set(d.writer.acked()) - present)
    show([f"the client's longest wait between two acknowledged writes: {1000 * gap:.0f} ms; "
          f"acknowledged rows missing on h1: {len(lost)} of {len(d.writer.acked())}",
          "h2 stopped cleanly, h1 promoted once it had all of h2's WAL, h2 follows h1 "
          f"(h2 pg_is_in_recovery() = {d.in_recovery('h2')})"])
    if lost:
        raise DemoFailed(f"the switchover lost acknowledged rows: {lost[:10]}")
    lines, _ = d.ctl_lines(3, "status")
    show(lines)

    step(10, "h1, the primary's whole host, is lost (frozen, cut off, killed)")
    d.writer.wait_acks(10, 20, srv="h1")
    since = d.marks()
    t_wall, t_kill = time.time(), time.monotonic()
    killed = lab.crash_host("h1")
    show([f"h1 crashed: {len(killed)} processes killed (pgvigil peer 1, PostgreSQL), "
          "its link cut"])
    done = d.wait_event("failover-done", FAILOVER, since)
    d.wait_vip_on(2, 15)
    d.writer.wait_acks(10, 20, after=t_kill, srv="h2")
    d.wait_record(10, lambda c: c.get("primary") == 2 and c.get("step") == "none",
                  "peers 2 and 3 record primary 2, no step in progress")
    say("    the failover, merged from every peer's log (ms after the crash):")
    show(d.timeline(since, t_wall, keep=lambda e: not (
        e["event"] == "role-changed" and e.get("role") != "coordinator")
        and not (e["event"] in ("hook-started", "hook-finished")
                 and e.get("hook") != "fence_backend")), indent="      ")
    failed = d.events(since, "backend-failed", backend=1)
    if failed:
        f = failed[0]
        show([f"peer {f['peer']} failed backend 1 {1000 * (f['t'] - t_wall):.0f} ms after the "
              f"crash, after {f.get('failures')} failed checks in a row (the last: "
              f"{f.get('error')}): a silent host costs failure_threshold check timeouts"])
    # Fence first: the promote hook must not start before the fence hook succeeded.
    fenced = d.events(since, "hook-finished", hook="fence_backend", outcome="ok")
    ph = d.events(since, "hook-started", hook="failover")
    if not fenced or not ph:
        raise DemoFailed(f"no fence hook that succeeded ({len(fenced)}) or no promote hook "
                         f"({len(ph)}) in the peers' logs")
    f0, p0 = fenced[0], ph[0]
    if p0["t"] < f0["t"] or (p0["t"] == f0["t"] and p0["peer"] == f0["peer"]
                             and p0["pos"] < f0["pos"]):
        raise DemoFailed("the promote hook started before the fence hook succeeded")
    log_path = os.path.join(lab.workdir, "fence-backend.log")
    fence_log = [ln.split(" env=")[0] for ln in open(log_path).read().splitlines()] \
        if os.path.exists(log_path) else []
    show([f"fence-backend.log: {' | '.join(fence_log) or 'empty'}",
          f"the promote hook started {1000 * (ph[0]['t'] - fenced[0]['t']):.0f} ms after "
          "the fence hook succeeded",
          done_line(done, t_wall, "crash"),
          f"h2: pg_is_in_recovery() = {d.in_recovery('h2')}, timeline {d.timeline_id('h2')}",
          f"VIP on: {', '.join(d.vip_hosts())} (h1 is cut off)"])
    lost = d.outage(t_kill, "h1", "h2")
    if lost:
        show([f"NOTE: {len(lost)} acknowledged rows are not on h2: asynchronous replication "
              "lost the last commits before the crash"])
    lines, _ = d.ctl_lines(2, "status")
    show(lines)
    d.writer.stop()

    step(11, "SIGHUP reload is all or nothing (on the witness, peer 3)")
    pv = d.pv[3]
    good = open(pv.conf_path).read()
    with open(pv.conf_path, "w") as f:
        f.write(good + "\nthis line is not INI\n")
    mark = pv.mark()
    pv.signal(signal.SIGHUP)
    pv.wait_log(r"event=config-reload-failed", since=mark)
    show(events_text(pv, mark, r"error|event=config"))
    with open(pv.conf_path, "w") as f:
        f.write(good.replace("log_level = info", "log_level = debug"))
    mark = pv.mark()
    pv.signal(signal.SIGHUP)
    pv.wait_log(r"event=config-reloaded", since=mark)
    show(events_text(pv, mark, r"event=config"))
    # notify_command runs on config-reloaded: let it finish before the next step.
    pv.wait_log(r"event=hook-finished hook=notify ", since=mark)

    step(12, "hooks: notify_command ran on daemon events; a hung one is killed at its timeout")
    wait_for("notify_command output for config-reloaded", 10, lambda: [
        ln for ln in (open(notify_log).read().splitlines()
                      if os.path.exists(notify_log) else [])
        if ln.endswith(" config-reloaded")])
    show([f"{notify_log}:"] + open(notify_log).read().splitlines())
    hung = os.path.join(lab.workdir, "hung.conf")
    with open(hung, "w") as f:
        f.write(good.replace(f"echo $(date +%%T) peer %i: %e >> {notify_log}",
                             "trap '' TERM; sleep 600 & echo grandchild $!; wait")
                .replace("hook_timeout = 60s", "hook_timeout = 2s"))
    os.replace(hung, pv.conf_path)
    mark = pv.mark()
    pv.signal(signal.SIGHUP)
    pv.wait_log(r"event=hook-finished hook=notify .*outcome=timeout", since=mark, timeout=10)
    show(events_text(pv, mark, r"event=hook|hook notify\["))
    gc = int(pv.wait_log(r"hook notify\[\d+\]: grandchild (\d+)", since=mark).group(1))
    end = time.monotonic() + 5
    while os.path.exists(f"/proc/{gc}") and time.monotonic() < end:
        time.sleep(0.05)
    gone = not os.path.exists(f"/proc/{gc}")
    show([f"grandchild {gc} (sleep 600): {'gone' if gone else 'STILL RUNNING'}"])
    with open(pv.conf_path, "w") as f:
        f.write(good)
    mark = pv.mark()
    pv.signal(signal.SIGHUP)
    pv.wait_log(r"event=config-reloaded", since=mark)

    step(13, "clean stop: SIGTERM (peer 1 died with h1)")
    for i in d.live():
        mark = d.pv[i].mark()
        rc = d.pv[i].stop()
        show(events_text(d.pv[i], mark, r"event=(daemon-stop|vip-released)")
             + [f"peer {i} exit status {rc}"])
    show([f"VIP on: {', '.join(d.vip_hosts()) or 'nobody'}"])

    say()
    say(f"{BOLD}The demo ran in {time.monotonic() - t_begin:.1f} s.{RESET}")
    say(f"Logs and data: {lab.workdir}")
    if keep:
        return keep_running(d)
    if sys.stdin.isatty():
        try:
            input("Press Enter to tear the lab down... ")
        except EOFError:
            pass
    lab.teardown()
    say("lab torn down: namespaces, processes and files removed")
    return 0


def keep_running(d):
    """--keep: h1 back on the network, the three daemons started again; the
    lab outlives this process (`./run-demo down` removes it)."""
    lab = d.lab
    lab.heal("h1")
    for i in sorted(d.hosts):
        d.start(i)
    d.wait_steady(2, BOOT)
    d.wait_vip_on(2, 10)
    holders = ", ".join(d.vip_hosts())
    client_ns = lab.ns("client")
    state = lab.detach()            # last: after it the lab object refuses to act
    say(f"The lab keeps running: pgvigil on h1-h3, the primary on h2, VIP {VIP} on {holders}; "
        "PostgreSQL on h1 is down and flagged needs_rejoin.")
    say(f"  status:         {d.ctl_bin} -s {d.sock(2)} status")
    say(f"  bring h1 back:  {d.ctl_bin} -s {d.sock(2)} rejoin 1")
    say(f"  switch back:    {d.ctl_bin} -s {d.sock(2)} switchover --to 1")
    say(f"  enter a host:   ip netns exec {client_ns} bash")
    say(f"Remove it with: ./run-demo down   (state: {state})")
    return 0


def done_line(done, t_wall, what):
    took = (f"duration_ms={done['duration_ms']} from failover-started" if "duration_ms" in done
            else "resumed by the new coordinator")
    return (f"failover-done {1000 * (done['t'] - t_wall):.0f} ms after the {what} "
            f"(peer {done['peer']}, {took}): backend {done.get('new')} replaces "
            f"backend {done.get('old')}")


def events_text(pv, since, pattern):
    """A daemon's log lines after offset since that match, without the timestamp prefix."""
    out = []
    for line in pv.log_text()[since:].splitlines():
        if re.search(pattern, line):
            out.append(re.sub(r"^\S+ \S+ UTC \[\d+\] ", "", line))
    return out


def main(argv):
    if len(argv) >= 1 and argv[0] == "down":
        return down()
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    return demo(os.path.abspath(argv[0]), "--keep" in argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
