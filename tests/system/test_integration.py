"""System tests of pgvigil with the tools users already run in front of
PostgreSQL: pgbouncer repointed by primary_change_command (the shipped
hooks/scripts/pgvigil-pgbouncer), and HAProxy routing by the HTTP API's
health endpoints (etc/haproxy.cfg.sample).

Layout: the colocated cluster of test_failover.py (FoCluster): hN runs
pgvigil peer N and PostgreSQL backend N, h1 the primary, h2 its standby,
h3 a witness peer; 'client' writes. pgbouncer and HAProxy run on h3, as the
application's local pooler / proxy would, and the client connects to them
only: after a kill -9 of the primary's postmaster and the failover, its
writes succeed again against the new primary with no change on its side.
"""

import os
import pwd
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import pgvlab
from test_failover import FAILOVER, FoCluster, wait_for

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "hooks" / "scripts"
PGBOUNCER = "/usr/sbin/pgbouncer"
PSQL = "/usr/bin/psql"
PGB_PORT = 6432


def need(path, pkg):
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not found: install the Debian package {pkg} "
                    "(tools/install-deps)", pytrace=False)


def chown_pg(path):
    pw = pwd.getpwnam("postgres")
    os.chown(path, pw.pw_uid, pw.pw_gid)


def lines_of(path):
    try:
        return Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------
# pgbouncer

class Pgbouncer:
    """pgbouncer on a lab host, as user postgres: listens on the host's lab
    address and a Unix socket in <workdir>/pgbouncer; its [databases] come
    from the include file that pgvigil-pgbouncer owns (empty at start)."""

    def __init__(self, lab, host):
        need(PGBOUNCER, "pgbouncer")
        need(PSQL, "postgresql-client-15")
        self.lab, self.host = lab, host
        self.dir = os.path.join(lab.workdir, "pgbouncer")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        chown_pg(self.dir)
        self.include = os.path.join(self.dir, "databases.ini")
        self.ini = os.path.join(self.dir, "pgbouncer.ini")
        self.log = os.path.join(self.dir, "pgbouncer.log")
        Path(os.path.join(self.dir, "userlist.txt")).write_text('"postgres" ""\n')
        Path(self.include).write_text("[databases]\n")
        Path(self.ini).write_text(f"""\
[pgbouncer]
listen_addr = {lab.addr(host)}
listen_port = {PGB_PORT}
unix_socket_dir = {self.dir}
auth_type = trust
auth_file = {self.dir}/userlist.txt
admin_users = postgres
pool_mode = session
server_login_retry = 1
server_connect_timeout = 3
query_wait_timeout = 30
pidfile = {self.dir}/pgbouncer.pid
%include {self.include}
""")
        with open(self.log, "ab") as f:
            self.proc = lab.popen(host, [PGBOUNCER, self.ini], user="postgres", stdout=f,
                                  stderr=f, kind="pgbouncer")
        wait_for(lambda: f"pgbouncer on {host} answering (log: {lines_of(self.log)[-5:]})", 15,
                 lambda: self.admin("SHOW VERSION", check=False) is not None)

    @property
    def admin_conninfo(self):
        return f"host={self.dir} port={PGB_PORT} user=postgres dbname=pgbouncer"

    def admin(self, sql, check=True):
        r = self.lab.run(self.host, [PSQL, "-X", "-A", "-t", "-d", self.admin_conninfo,
                                     "-c", sql], timeout=15)
        if r.returncode != 0:
            if check:
                raise AssertionError(f"pgbouncer admin '{sql}': {r.stderr.strip()}")
            return None
        return r.stdout

    def database_host(self, name):
        """host:port of [databases] entry name as pgbouncer has it loaded."""
        out = self.admin("SHOW DATABASES")
        for ln in out.splitlines():
            f = ln.split("|")
            if f[0] == name:
                return f"{f[1]}:{f[2]}"
        return None


def pgbouncer_hook(lab, pgb, peer_with_pgbouncer, calls):
    """primary_change_command: on every peer, record the call (peer, new,
    old, host, port, term) in `calls`; on the peer next to pgbouncer, run
    the shipped script with the lab's options (the include file, the admin
    console)."""
    hk = os.path.join(lab.workdir, "hk")
    os.makedirs(hk, exist_ok=True)
    path = os.path.join(hk, "pgbouncer")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                'echo "$PGVIGIL_PEER_ID $PGVIGIL_NEW_PRIMARY_ID ${PGVIGIL_OLD_PRIMARY_ID:-0} '
                f'$PGVIGIL_NEW_PRIMARY_HOST $PGVIGIL_NEW_PRIMARY_PORT $PGVIGIL_TERM" >> {calls}\n'
                f'[ "$PGVIGIL_PEER_ID" = {peer_with_pgbouncer} ] || exit 0\n'
                f'exec {SCRIPTS}/pgvigil-pgbouncer "$@" --include {pgb.include} '
                f'--admin "{pgb.admin_conninfo}"\n')
    os.chmod(path, 0o755)
    return f"{path} --db postgres --host %H --port %r --id %m --term %T"


def test_pgbouncer_follows_the_primary_writes_resume_after_kill_9(lab, pgvigil_bin):
    calls = os.path.join(lab.workdir, "primary-change.calls")
    # The cluster first (its hosts), then pgbouncer on the witness's host h3.
    cl = FoCluster(lab, pgvigil_bin, start=False)
    pgb = Pgbouncer(lab, "h3")
    cl.conf = cl.conf.replace("[failover]\n", "[failover]\nprimary_change_command = "
                              f"{pgbouncer_hook(lab, pgb, 3, calls)}\n", 1)
    cl.start_all()
    cl.wait_steady()
    h1, h2 = lab.addr("h1"), lab.addr("h2")

    # primary-known: every peer ran the hook once, for backend 1; the one
    # next to pgbouncer wrote the include file and reloaded it.
    wait_for(lambda: f"a primary_change run on every peer (calls: {lines_of(calls)})", 20,
             lambda: sorted(ln.split()[0] for ln in lines_of(calls)) == ["1", "2", "3"])
    for ln in lines_of(calls):
        peer, new, old, host, port, term = ln.split()
        assert (new, old, host, port) == ("1", "0", h1, "5432"), ln
    assert pgb.database_host("postgres") == f"{h1}:5432"
    cl.wait_event("primary-change-hook-done", 20, count=3)
    done = cl.events("primary-change-hook-done")
    assert sorted(e["peer"] for e in done) == [1, 2, 3], done
    assert all(e["new"] == "1" and e["old"] == "0" for e in done), done

    # The application writes through pgbouncer only.
    w = lab.start_writer(lab.addr("h3"), port=PGB_PORT, attempt_timeout=5.0)
    w.wait_acks(10, 20, srv="h1")
    since = cl.mark()
    t0 = time.monotonic()
    lab.stop_postgres("h1", "kill")
    cl.wait_event("failover-done", FAILOVER, since)
    # Writes through the same pgbouncer address reach the new primary.
    w.wait_acks(10, FAILOVER, after=t0, srv="h2")
    took = time.monotonic() - t0
    gap = w.write_gap(t0 - 1)
    print(f"\n  writes through pgbouncer back on h2 {took:.2f} s after kill -9 of h1; "
          f"longest gap between acknowledged writes {gap:.2f} s; failures: {w.failures(t0)}")
    w.stop()
    assert pgb.database_host("postgres") == f"{h2}:5432"
    assert "host=%s port=5432 dbname=postgres" % h2 in Path(pgb.include).read_text()

    # After the failover every peer ran the hook again: new 2, old 1, in a
    # term at least that of the first runs.
    wait_for(lambda: f"a second run on every peer (calls: {lines_of(calls)})", 20,
             lambda: sorted(ln.split()[0] for ln in lines_of(calls)[3:]) == ["1", "2", "3"])
    after = [ln.split() for ln in lines_of(calls)[3:]]
    for peer, new, old, host, port, term in after:
        assert (new, old, host, port) == ("2", "1", h2, "5432"), after
    started = cl.events("primary-change-hook-started", since)
    assert sorted(e["peer"] for e in started) == [1, 2, 3], started
    assert all(e["new"] == "2" and e["old"] == "1" for e in started), started
    # Nothing written on h1 after the kill; everything acknowledged is on h2.
    acked = w.acked()
    assert set(acked) <= lab.table_ids("h2"), "acknowledged rows missing on the new primary"


def test_pgbouncer_script_file_stale_term_pidfile_and_bad_values(tmp_path):
    """pgvigil-pgbouncer without a pgbouncer: the file it owns, a stale
    term refused without a change, a pid file of no running process
    (written, exit 0), values that would break the ini refused."""
    script = str(SCRIPTS / "pgvigil-pgbouncer")
    inc = tmp_path / "databases.ini"

    def run(*args, env=None):
        return subprocess.run([script, "--include", str(inc), *args], capture_output=True,
                              text=True, timeout=30, env=env or {"PATH": "/usr/bin:/bin"})

    r = run("--db", "app", "--db", "rep=reporting", "--db-options", "pool_size=5",
            "--host", "192.0.2.12", "--port", "5433", "--id", "2", "--term", "7",
            "--pidfile", str(tmp_path / "none.pid"))
    assert r.returncode == 0, r.stderr
    assert "not running" in r.stderr
    text = inc.read_text()
    assert "; term 7\n[databases]\n" in text
    assert "app = host=192.0.2.12 port=5433 dbname=app pool_size=5\n" in text
    assert "rep = host=192.0.2.12 port=5433 dbname=reporting pool_size=5\n" in text
    # The environment pgvigil sets is enough; a lower term changes nothing.
    env = {"PATH": "/usr/bin:/bin", "PGVIGIL_NEW_PRIMARY_HOST": "192.0.2.11",
           "PGVIGIL_NEW_PRIMARY_PORT": "5432", "PGVIGIL_TERM": "6"}
    r = run("--db", "app", env=env)
    assert r.returncode == 3, r.stderr
    assert inc.read_text() == text
    env["PGVIGIL_TERM"] = "8"
    r = run("--db", "app", env=env)
    assert r.returncode == 0, r.stderr
    assert "app = host=192.0.2.11 port=5432 dbname=app\n" in inc.read_text()
    for bad in (["--db", "a;b", "--host", "192.0.2.1"],
                ["--db", "app", "--host", "192.0.2.1 port=1"],
                ["--db", "app", "--host", "192.0.2.1", "--db-options", "x=1 ; y"],
                ["--db", "app"],
                ["--host", "192.0.2.1"]):
        r = run(*bad)
        assert r.returncode == 2, (bad, r.stderr)
    assert "192.0.2.1 " not in inc.read_text()


# --------------------------------------------------------------------------
# HAProxy

HAPROXY = "/usr/sbin/haproxy"
SAMPLE = REPO / "etc" / "haproxy.cfg.sample"
API_PORT = 8008


def haproxy_config(lab, backends, statsock):
    """etc/haproxy.cfg.sample adapted to the lab: the sample's backend
    addresses 192.0.2.11, .12, .13 become the lab hosts of backends 1, 2
    (the server line of a backend the lab does not have is dropped), and a
    stats socket is added for the test. Nothing else changes."""
    text = SAMPLE.read_text()
    sample_addr = {1: "192.0.2.11", 2: "192.0.2.12", 3: "192.0.2.13"}
    out = []
    for ln in text.splitlines():
        m = re.match(r"\s+server pg(\d+) ", ln)
        if m:
            i = int(m.group(1))
            if i not in backends:
                continue
            ln = ln.replace(sample_addr[i] + ":", lab.addr(backends[i]) + ":")
        out.append(ln)
        if ln.strip() == "maxconn 1000":
            out.append(f"    stats socket {statsock} mode 600 level admin")
    text = "\n".join(out) + "\n"
    servers = [ln for ln in out if re.match(r"\s+server ", ln)]
    assert len(servers) == 2 * len(backends), servers
    assert not any(a in ln for ln in servers for a in sample_addr.values()), servers
    return text


def test_haproxy_sample_routes_to_the_primary_and_follows_a_failover(lab, pgvigil_bin):
    need(HAPROXY, "haproxy")
    need(PSQL, "postgresql-client-15")
    cl = FoCluster(lab, pgvigil_bin, sections={"api": {"listen": f"0.0.0.0:{API_PORT}"}})
    cl.wait_steady()
    h1, h2, h3 = lab.addr("h1"), lab.addr("h2"), lab.addr("h3")
    d = os.path.join(lab.workdir, "haproxy")
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "haproxy.cfg")
    Path(cfg).write_text(haproxy_config(lab, cl.backends, os.path.join(d, "admin.sock")))
    r = lab.run("h3", [HAPROXY, "-c", "-f", cfg], timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    log = os.path.join(d, "haproxy.log")
    with open(log, "ab") as f:
        lab.popen("h3", [HAPROXY, "-db", "-f", cfg], stdout=f, stderr=f, kind="haproxy")

    def through(port):
        """(in recovery, server address) of a new connection through
        HAProxy on h3, from the client host; None when it fails."""
        r = lab.run("client", [PSQL, "-X", "-A", "-t", "-h", h3, "-p", str(port), "-U",
                               "postgres", "-d", "postgres", "-c",
                               "SELECT pg_is_in_recovery(), host(inet_server_addr())"],
                    timeout=15, env={"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "3"})
        if r.returncode != 0:
            return None
        rec, addr = r.stdout.strip().split("|")
        return (rec == "t", addr)

    # Port 5000 reaches the primary, port 5001 the standby.
    wait_for(lambda: f"port 5000 to h1 (got {through(5000)}; log {lines_of(log)[-5:]})", 20,
             lambda: through(5000) == (False, h1))
    wait_for(lambda: f"port 5001 to h2 (got {through(5001)})", 20,
             lambda: through(5001) == (True, h2))
    w = lab.start_writer(h3, port=5000, attempt_timeout=5.0)
    w.wait_acks(10, 20, srv="h1")

    since = cl.mark()
    t0 = time.monotonic()
    lab.stop_postgres("h1", "kill")
    cl.wait_event("failover-done", FAILOVER, since)
    # New connections through the same port reach the new primary.
    wait_for(lambda: f"port 5000 to h2 (got {through(5000)}; log {lines_of(log)[-5:]})",
             FAILOVER, lambda: through(5000) == (False, h2), period=0.2)
    w.wait_acks(10, FAILOVER, after=t0, srv="h2")
    took = time.monotonic() - t0
    print(f"\n  writes through HAProxy back on h2 {took:.2f} s after kill -9 of h1; "
          f"longest gap between acknowledged writes {w.write_gap(t0 - 1):.2f} s; "
          f"failures: {w.failures(t0)}")
    w.stop()
    # Every acknowledged write after the failover is on h2, none on a
    # restarted h1 (it is dead, and HAProxy no longer routes to it).
    late = [n for n, srv in w.acked().items() if srv != "h1"]
    assert set(late) <= lab.table_ids("h2")
    # The health endpoints HAProxy used, asked directly (HEAD, as a check would).
    for host, want in (("h2", "200"), ("h1", "503")):
        code = ("import http.client, sys; c = http.client.HTTPConnection(sys.argv[1], "
                f"{API_PORT}, timeout=5); c.request('HEAD', '/primary'); "
                "print(c.getresponse().status)")
        r = lab.run("client", ["/usr/bin/python3", "-c", code, lab.addr(host)], timeout=15)
        assert r.stdout.strip() == want, (host, r.stdout, r.stderr)
