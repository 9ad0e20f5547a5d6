"""Tests that prove the netns lab itself (tests/lab/pgvlab.py, tests/lab/labctl).

They need no pgvigil binary; they need root and Debian's postgresql-15.
"""

import os
import re
import select
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import pgvlab

REPO = Path(__file__).resolve().parents[2]
LAB_DIR = REPO / "tests" / "lab"
LABCTL = LAB_DIR / "labctl"
PY = "/usr/bin/python3"


def _gone(pid):
    """True if pid no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _netns():
    return set(pgvlab._list_netns())


def _readline(proc, timeout):
    """One line from proc.stdout within timeout (the child prints READY lines)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else ""
            raise AssertionError(f"no line from child within {timeout}s: {buf!r} {err}")
        r, _, _ = select.select([proc.stdout], [], [], left)
        if r:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                continue
            buf += chunk
    return buf.decode().strip()


# ---------------------------------------------------------------------------

def _root_view():
    """(links, addresses) of the root namespace, one normalised line each."""
    def run(*a):
        return subprocess.run(["ip", *a], capture_output=True, text=True, timeout=10,
                              check=True).stdout
    links = {re.sub(r"\s+", " ", l) for l in run("-d", "-o", "link", "show").splitlines()}
    addrs = {re.sub(r"\s+", " ", l.split("valid_lft")[0])
             for l in run("-o", "addr", "show").splitlines()}
    return links, addrs


def test_lab_hosts_reach_each_other_only_inside_lab(request):
    # Snapshot the root namespace before the lab exists (so not the `lab` fixture).
    # Note: the root namespace may legitimately own a 192.0.2.0/24 address of its own
    # (this VM's uplink is 192.0.2.2/24, gateway 192.0.2.1); the lab must add nothing.
    root_links_before, root_addrs_before = _root_view()
    lab = pgvlab.Lab()
    request.addfinalizer(lab.teardown)
    hosts = {"peer1": pgvlab.peer_addr(1), "db1": pgvlab.pg_addr(1), "client": pgvlab.client_addr()}
    for name, (v4, v6) in hosts.items():
        lab.add_host(name, v4, v6)

    # every host pings every other one over IPv4 and IPv6, through the bridge
    for src in hosts:
        for dst, (v4, v6) in hosts.items():
            if src == dst:
                continue
            for addr in (v4, v6):
                r = lab.run(src, ["ping", "-c", "1", "-W", "2", addr], timeout=10)
                assert r.returncode == 0, f"{src} -> {dst} {addr}: {r.stdout}{r.stderr}"

    for name in hosts:
        ns = lab.ns(name)
        # only lo and eth0, no default route: nothing outside the lab is reachable
        links = lab.run(name, ["ip", "-o", "link", "show"], check=True).stdout
        assert sorted(re.findall(r"^\d+: ([^:@]+)", links, re.M)) == ["eth0", "lo"]
        for fam in ("-4", "-6"):
            r = lab.run(name, ["ip", fam, "route", "show", "default"], check=True)
            assert r.stdout.strip() == "", f"{ns} has a default route: {r.stdout}"
        r = lab.run(name, ["ip", "route", "get", "198.51.100.1"])
        assert r.returncode != 0 and "unreachable" in r.stderr.lower()
        r = lab.run(name, ["ip", "-6", "route", "get", "2001:db8:ffff::1"])
        assert r.returncode != 0 and "unreachable" in r.stderr.lower()

    # the root namespace's own 192.0.2.x addresses (if any) are not reachable from the lab
    used = {v4 for v4, _ in hosts.values()}
    for entry in pgvlab.root_lab_addresses():
        a = entry.split()[1].split("/")[0]
        if a.startswith("192.0.2.") and a not in used:
            r = lab.run("client", ["ping", "-c", "1", "-W", "0.5", a], timeout=10)
            assert r.returncode != 0, f"lab host reached the root namespace's {a}"

    # bridge namespace: br0 with one veth per host, and no address at all
    br_links = lab.run("br", ["ip", "-o", "link", "show", "master", "br0"], check=True).stdout
    assert sorted(re.findall(r"^\d+: ([^:@]+)", br_links, re.M)) == sorted(f"ve-{h}" for h in hosts)
    br_addrs = lab.run("br", ["ip", "-o", "addr", "show"], check=True).stdout
    assert not [l for l in br_addrs.splitlines() if " lo " not in l], br_addrs

    # root namespace: unchanged by the lab - no new link, no new address, no veth of
    # ours, nothing that names our namespaces, no 2001:db8::/64 address, and any
    # 192.0.2.x address it has is on a pre-existing, non-veth interface
    root_links, root_addrs = _root_view()
    assert root_links == root_links_before, root_links ^ root_links_before
    assert root_addrs == root_addrs_before, root_addrs ^ root_addrs_before
    text = "\n".join(root_links)
    assert lab.prefix not in text and not re.search(r"^\d+: ve-", text, re.M), text
    assert not [a for a in root_addrs if " 2001:db8::" in a], root_addrs
    for a in root_addrs:
        if " inet 192.0.2." in a:
            dev = a.split()[1]
            assert not [l for l in root_links if l.split()[1].rstrip(":").split("@")[0] == dev
                        and " veth " in l], f"root has a lab address on a veth: {a}"


def test_primary_and_standby_really_replicate(pg_cluster):
    lab = pg_cluster
    token = uuid.uuid4().hex
    lab.psql("db1", "CREATE TABLE labcheck (id serial PRIMARY KEY, token text NOT NULL)")
    lab.psql("db1", f"INSERT INTO labcheck (token) VALUES ('{token}')")

    deadline = time.monotonic() + 15
    seen = ""
    while time.monotonic() < deadline:
        try:
            seen = lab.psql("db2", f"SELECT token FROM labcheck WHERE token = '{token}'")
        except pgvlab.LabError:
            seen = ""  # table not replayed yet
        if seen == token:
            break
        time.sleep(0.05)
    assert seen == token, "row never reached the standby"

    assert lab.psql("db1", "SELECT pg_is_in_recovery()") == "f"
    assert lab.psql("db2", "SELECT pg_is_in_recovery()") == "t"
    assert lab.psql("db1", "SELECT application_name, state FROM pg_stat_replication") == "db2|streaming"
    assert lab.psql("db1", "SELECT slot_name, active FROM pg_replication_slots") == "db2|t"
    conninfo = lab.psql("db2", "SELECT conninfo FROM pg_stat_wal_receiver")
    assert f"host={lab.addr('db1')}" in conninfo and "user=replicator" in conninfo
    with pytest.raises(pgvlab.LabError, match="read-only"):
        lab.psql("db2", "INSERT INTO labcheck (token) VALUES ('nope')")
    # the roles the daemon and the hooks use
    assert lab.psql("db1", "SELECT rolname, rolsuper, rolreplication FROM pg_roles "
                           "WHERE rolname IN ('pgvigil', 'replicator') ORDER BY 1") == \
        "pgvigil|t|f\nreplicator|f|t"
    assert lab.psql("db1", "SELECT 1", user="pgvigil") == "1"
    # IPv6 listener too
    r = lab.run("client", [lab.pg_bin("psql"), "-XAtq", "-h", lab.addr("db1", 6), "-U", "pgvigil",
                           "-d", "postgres", "-c", "SELECT inet_server_addr()"],
                timeout=15, check=True)
    assert r.stdout.strip() == lab.addr("db1", 6)

    # postmasters: run as postgres, inside their own host namespace, tracked by pid
    pg_uid = pgvlab.pwd.getpwnam("postgres").pw_uid
    for host in ("db1", "db2"):
        pid = lab.pg[host].pid
        assert pid in lab.tracked_pids()
        status = Path(f"/proc/{pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{pg_uid}\s", status, re.M)
        assert os.readlink(f"/proc/{pid}/exe") == f"{pgvlab.PG_BINDIR}/postgres"
        ns_ino = os.stat(f"/run/netns/{lab.ns(host)}").st_ino
        assert os.readlink(f"/proc/{pid}/ns/net") == f"net:[{ns_ino}]"


def test_teardown_removes_only_our_namespaces_and_processes(lab):
    # Decoys: same characters as our prefix but not our prefix, and an unrelated
    # lab-looking prefix; each with a process inside, plus one in the root namespace.
    other = lab.prefix
    while other == lab.prefix:
        other = f"pgv{uuid.uuid4().hex[:6]}-"
    decoys = [lab.prefix[:-1] + "decoy", other + "x"]
    decoy_procs = []
    try:
        for d in decoys:
            assert d not in _netns()
            subprocess.run(["ip", "netns", "add", d], check=True, timeout=10)
            decoy_procs.append(subprocess.Popen(["ip", "netns", "exec", d, "sleep", "60"],
                                                start_new_session=True))
        decoy_procs.append(subprocess.Popen(["sleep", "60"], start_new_session=True))

        lab.add_host("a", *pgvlab.peer_addr(1))
        lab.add_host("db1", *pgvlab.pg_addr(1))
        lab.add_postgres_primary("db1")
        tracked = lab.popen("a", ["sleep", "60"])
        # an untracked process inside a lab namespace (like a hook's child)
        stray = int(lab.run("a", ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"],
                            check=True).stdout)
        pg_pid = lab.pg["db1"].pid
        ours = {n for n in _netns() if n.startswith(lab.prefix)}
        assert ours == {lab.prefix + "br", lab.prefix + "a", lab.prefix + "db1"}
        workdir = lab.workdir
        for pid in (tracked.pid, stray, pg_pid):
            assert not _gone(pid)

        lab.teardown()
        lab.teardown()  # idempotent

        after = _netns()
        assert not {n for n in after if n.startswith(lab.prefix)}
        for d in decoys:
            assert d in after, f"decoy namespace {d} was removed"
        for pid in (tracked.pid, stray, pg_pid):
            assert _gone(pid), f"lab pid {pid} survived teardown"
        assert not pgvlab._pids_with_cwd(os.path.join(workdir, "pg", "db1")), "postgres backends left"
        for p in decoy_procs:
            assert p.poll() is None, f"decoy pid {p.pid} was killed"
        assert not os.path.exists(workdir)
    finally:
        for p in decoy_procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(5)
        for d in decoys:
            if d in _netns():
                subprocess.run(["ip", "netns", "delete", d], timeout=10)
    assert not set(decoys) & _netns()


_CHILD_LAB = r"""
import sys, time
sys.path.insert(0, {labdir!r})
import pgvlab
lab = pgvlab.Lab()
lab.add_host("db1", *pgvlab.pg_addr(1))
lab.add_host("client", *pgvlab.client_addr())
if {with_pg!r}:
    lab.add_postgres_primary("db1")
lab.popen("client", ["sleep", "120"])
stray = lab.run("client", ["sh", "-c", "sleep 120 >/dev/null 2>&1 & echo $!"], check=True).stdout.strip()
pg = lab.pg["db1"].pid if {with_pg!r} else 0
print("READY", lab.state_path, lab.prefix, stray, pg, flush=True)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    time.sleep(0.2)
"""


def _start_child_lab(with_pg):
    code = _CHILD_LAB.format(labdir=str(LAB_DIR), with_pg=with_pg)
    child = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        line = _readline(child, 60)
    except BaseException:
        child.kill()
        child.wait(5)
        raise
    _, state_path, prefix, stray, pg = line.split()
    return child, state_path, prefix, int(stray), int(pg)


def _reap_child_lab(child, prefix, workdir):
    """Whatever a test asserted, leave no child process and none of its namespaces."""
    if child.poll() is None:
        child.kill()
        child.wait(5)
    if any(n.startswith(prefix) for n in _netns()):
        pgvlab.cleanup_stale(prefix, workdir if os.path.isdir(workdir) else None)


def test_teardown_after_failure(request):
    """A lab whose creator was SIGKILLed (no atexit, no handler) is torn down by
    `labctl down --state <workdir>/lab.json`."""
    child, state_path, prefix, stray, pg_pid = _start_child_lab(with_pg=True)
    workdir = os.path.dirname(state_path)
    try:
        state = pgvlab.load_state(state_path)
        pids = [p["pid"] for p in state["procs"]] + [stray, pg_pid]
        assert set(state["namespaces"]) == {prefix + "br", prefix + "db1", prefix + "client"}
        assert all(not _gone(p) for p in pids)

        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        assert child.returncode == -signal.SIGKILL
        # nothing cleaned itself up
        assert {n for n in _netns() if n.startswith(prefix)} == set(state["namespaces"])
        assert all(not _gone(p) for p in pids)

        ls = subprocess.run([str(LABCTL), "ls"], capture_output=True, text=True, timeout=20)
        assert ls.returncode == 0 and prefix in ls.stdout and "gone" in ls.stdout, ls.stdout
        r = subprocess.run([str(LABCTL), "down", "--state", state_path],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"down {prefix}" in r.stdout

        assert not {n for n in _netns() if n.startswith(prefix)}
        _wait(lambda: all(_gone(p) for p in pids), 5, "lab processes to disappear")
        assert not os.path.exists(workdir)
        # a second run finds nothing to do and still succeeds
        r = subprocess.run([str(LABCTL), "down", "--prefix", prefix],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        _reap_child_lab(child, prefix, workdir)


def test_sigterm_to_lab_process_tears_lab_down():
    """The Lab's SIGTERM handler tears the lab down, then the process dies of SIGTERM."""
    child, state_path, prefix, stray, _ = _start_child_lab(with_pg=False)
    workdir = os.path.dirname(state_path)
    try:
        state = pgvlab.load_state(state_path)
        pids = [p["pid"] for p in state["procs"]] + [stray]
        os.kill(child.pid, signal.SIGTERM)
        child.wait(30)
        assert child.returncode == -signal.SIGTERM, child.stderr.read()
        assert not {n for n in _netns() if n.startswith(prefix)}
        _wait(lambda: all(_gone(p) for p in pids), 5, "lab processes to disappear")
        assert not os.path.exists(workdir)
    finally:
        _reap_child_lab(child, prefix, workdir)


def test_isolate_heal_block_and_loss(lab):
    for name, addr in (("a", pgvlab.peer_addr(1)), ("b", pgvlab.peer_addr(2)),
                       ("c", pgvlab.peer_addr(3))):
        lab.add_host(name, *addr)

    def ping(src, dst, wait="0.5"):
        return lab.run(src, ["ping", "-c", "1", "-W", wait, lab.addr(dst)], timeout=10).returncode == 0

    assert ping("a", "b", "2") and ping("a", "c", "2")
    lab.isolate("b")                       # link mode: bridge-side veth down
    assert not ping("a", "b") and ping("a", "c", "2")
    carrier = lab.run("b", ["cat", "/sys/class/net/eth0/carrier"]).stdout.strip()
    assert carrier in ("0", "")
    lab.heal("b")
    _wait(lambda: ping("a", "b"), 10, "b to come back after heal")

    lab.isolate("b", mode="drop")          # carrier stays up, frames dropped
    assert lab.run("b", ["cat", "/sys/class/net/eth0/carrier"]).stdout.strip() == "1"
    assert not ping("a", "b") and not ping("c", "b")
    lab.heal("b")
    _wait(lambda: ping("a", "b"), 10, "b to come back after drop-heal")

    lab.block("a", "b")                    # a<->b cut, both still reach c
    assert not ping("a", "b") and not ping("b", "a")
    assert ping("a", "c", "2") and ping("b", "c", "2")
    lab.unblock("a", "b")
    _wait(lambda: ping("a", "b"), 10, "a<->b after unblock")

    backend = lab.set_loss("a", 30)
    assert backend in ("netem", "nft")
    r = lab.run("a", ["ping", "-q", "-c", "200", "-i", "0.002", "-W", "1", lab.addr("b")], timeout=30)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", r.stdout)
    lost = 1 - int(m.group(2)) / int(m.group(1))
    assert 0.15 <= lost <= 0.45, f"expected ~30% loss with {backend}, got {lost:.0%}"
    lab.set_loss("a", 0)
    r = lab.run("a", ["ping", "-q", "-c", "50", "-i", "0.002", "-W", "1", lab.addr("b")], timeout=30)
    assert " 0% packet loss" in r.stdout, r.stdout


def test_start_pgvigil_helper_with_stand_in_daemon(pg_cluster):
    """start_pgvigil()/pgvigil_config() plumbing, proven with a shell stand-in for the daemon."""
    lab = pg_cluster
    lab.add_host("peer1", *pgvlab.peer_addr(1))
    lab.add_host("peer2", *pgvlab.peer_addr(2))
    conf = lab.pgvigil_config(peers=[(1, "peer1"), (2, "peer2")],
                              backends=[(1, "db1"), (2, "db2")],
                              hooks={"notify_command": "/bin/true %e", "hook_timeout": "30s"})
    assert "[peer.2]\naddress = 192.0.2.2\nport = 5480" in conf
    assert "[backend.1]\nhost = 192.0.2.11\nport = 5432\ndbname = postgres\nuser = pgvigil\n" in conf
    stand_in = os.path.join(lab.workdir, "fake-pgvigil")
    with open(stand_in, "w") as f:
        f.write('#!/bin/sh\ntrap \'echo "event=stop"; exit 0\' TERM\n'
                'echo "started args=$* ip=$(ip -o -4 addr show dev eth0 | awk \'{print $4}\')"\n'
                'grep "^state_dir" "$2"\n'
                'while :; do sleep 0.1; done\n')
    os.chmod(stand_in, 0o755)
    pv = lab.start_pgvigil("peer1", stand_in, conf, extra_args=("-v",))
    m = pv.wait_log(r"started args=-c (\S+) -v ip=(\S+)", timeout=10)
    assert m.group(1) == pv.conf_path and m.group(2) == "192.0.2.1/24"
    pv.wait_log(rf"^state_dir = {re.escape(pv.state_dir)}$", timeout=10)
    assert os.path.isdir(pv.state_dir) and pv.pid in lab.tracked_pids()
    with pytest.raises(pgvlab.LabError, match="never-logged"):
        pv.wait_log("never-logged", timeout=0.3)
    mark = pv.mark()
    assert pv.stop(timeout=5) == 0
    assert "event=stop" in pv.log_text()[mark:]
    assert pv.pid not in lab.tracked_pids()
