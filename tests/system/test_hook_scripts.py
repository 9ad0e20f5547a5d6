"""System tests of the shipped hook scripts (hooks/scripts) against real PostgreSQL 15.

Each test builds its own lab (conftest.py): PostgreSQL on db1 (primary) and
db2, db3 (streaming standbys with slots db2, db3), and a pgvigil peer host
gw (192.0.2.1) that plays the coordinator. A script runs the way pgvigil
runs it (Lab.run_hook): the pgvigil.conf line from the script's own header
comment, LIBEXECDIR/pgvigil replaced by hooks/scripts, each placeholder
replaced by its shell-quoted value, through /bin/sh -c, with exactly the
hook environment (PATH, LANG, PGVIGIL_*), as root, inside the namespace of
the host whose peer runs that hook. Lab-only options are appended to the
documented line: --state-dir (terms), --pg-log (the lab's log file),
--ssh-command (Lab.ssh_shim(), which stands in for ssh by running the
remote command as that user in the namespace of the host with that
address).

Lab property: every namespace shares one filesystem and one pid namespace,
so a script's data-directory steps could run from any namespace with
--local as far as files and signals go (pg_ctl stop, pg_rewind), but a
server started by `pg_ctl start` lives in the network namespace of its
caller and cannot bind its host's address anywhere else. So --local runs
in the backend's own namespace here (a coordinator on that host), and a
coordinator elsewhere (gw) uses --ssh with the lab's ssh stand-in, as a
real one would use ssh.

The tests assert on what PostgreSQL says afterwards (pg_is_in_recovery,
the WAL file's timeline, pg_stat_wal_receiver, rows written before and
after the fork), on processes (/proc), on the network (veth state), and on
exit codes; the scripts' messages are only checked for the path taken
(rewind or not, base backup or not).
"""

import os
import re
import signal
import time
from pathlib import Path

import pgvlab

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "hooks" / "scripts"
FENCE_BACKEND_LAB = REPO / "tests" / "lab" / "fence-backend-lab"
PORT = 5432
# The [backend.N] user/dbname the lab's pgvigil config uses (Lab.pgvigil_config).
HOOK_USERS = {"PGVIGIL_NODE_USER": "pgvigil", "PGVIGIL_NODE_DBNAME": "postgres",
              "PGVIGIL_NEW_PRIMARY_USER": "pgvigil", "PGVIGIL_NEW_PRIMARY_DBNAME": "postgres"}
BACKEND_ID = {"db1": 1, "db2": 2, "db3": 3}


# --------------------------------------------------------------------------
# helpers

def conf_lines(script, key):
    """The `key = ...` lines of a script's header comment, with the install
    directory replaced by the repository's hooks/scripts."""
    out = []
    for line in (SCRIPTS / script).read_text().splitlines():
        if not line.startswith("#"):
            break
        m = re.match(rf"#\s+({key} = .*)$", line)
        if m:
            out.append(m.group(1).split(" = ", 1)[1]
                       .replace("LIBEXECDIR/pgvigil", str(SCRIPTS)))
    assert out, f"{script} documents no {key} line"
    return out


def placeholders(lab, node=None, new=None, old="db1", term=5, peer=1):
    """Placeholder values of a failover hook: %d/%h/%p/%D the backend acted
    on, %m/%H/%r/%R the new primary, %M/%P/%N/%S the old primary."""
    def backend(h):
        if h is None:
            return "", "", "", ""
        return BACKEND_ID[h], lab.addr(h), PORT, lab.pg_instance(h).datadir
    d, h, p, D = backend(node)
    m, H, r, R = backend(new)
    P, N, S, _ = backend(old)
    return {"d": d, "h": h, "p": p, "D": D, "m": m, "H": H, "r": r, "R": R,
            "M": P, "P": P, "N": N, "S": S, "T": term, "i": peer, "c": "lab"}


def run(lab, where, command, values, hook, extra_env=None, timeout=180):
    r = lab.run_hook(where, command, values, hook, dict(HOOK_USERS, **(extra_env or {})),
                     timeout=timeout)
    print(f"--- {hook} on {where} (exit {r.returncode}): {command}\n{r.stdout}")
    return r


def state_dir(lab):
    return os.path.join(lab.workdir, "hookstate")


def in_recovery(lab, host):
    return lab.psql(host, "SELECT pg_is_in_recovery()") == "t"


def timeline(lab, host):
    return int(lab.psql(host, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"), 16)


def receiver(lab, host):
    """status|sender_host|sender_port of host's WAL receiver ('' when none)."""
    return lab.psql(host, "SELECT status || '|' || sender_host || '|' || sender_port "
                          "FROM pg_stat_wal_receiver")


def streams_from(lab, host, primary):
    return in_recovery(lab, host) and receiver(lab, host) == f"streaming|{lab.addr(primary)}|{PORT}"


def wait_rows(lab, host, sql, expect, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = lab.psql(host, sql)
        except pgvlab.LabError as e:        # not replayed yet, not up yet
            got = str(e)
        if got == expect:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"{host}: {sql!r} gave {got!r}, not {expect!r} within {timeout}s")
        time.sleep(0.05)


def postgres_pids(lab, host):
    return pgvlab._pids_with_cwd(lab.pg_instance(host).datadir)


def setup_cluster(lab, standbys=("db2", "db3")):
    for h in ("db1",) + tuple(standbys):
        lab.add_host(h, *pgvlab.pg_addr(BACKEND_ID[h]))
    lab.add_host("gw", *pgvlab.peer_addr(1))
    lab.add_postgres_primary("db1")
    for h in standbys:
        lab.add_postgres_standby(h, "db1")
    lab.psql("db1", "CREATE TABLE t (v text); INSERT INTO t VALUES ('before');")
    for h in standbys:
        wait_rows(lab, h, "SELECT string_agg(v, ',' ORDER BY v) FROM t", "before")
    return lab


def detach(lab, standby):
    """Stop standby's replication (empty primary_conninfo) and wait until its
    WAL receiver is gone: what the primary writes next, only it has."""
    lab.psql(standby, "ALTER SYSTEM SET primary_conninfo = ''")
    lab.psql(standby, "SELECT pg_reload_conf()")
    deadline = time.monotonic() + 20
    while lab.psql(standby, "SELECT count(*) FROM pg_stat_wal_receiver") != "0":
        assert time.monotonic() < deadline, f"{standby}'s WAL receiver did not stop"
        time.sleep(0.05)


def promote_line(lab):
    return conf_lines("pgvigil-promote", "failover_command")[0] + f" --state-dir {state_dir(lab)}"


def promote(lab, new, term=5, old="db1"):
    r = run(lab, "gw", promote_line(lab), placeholders(lab, old, new, old, term), "failover")
    assert r.returncode == 0, r.stdout
    return r


def standby_line(lab, script, key, host, local=False):
    """The documented line for follow/rejoin, with the lab's ssh stand-in
    (or --local), state dir and log file."""
    line = conf_lines(script, key)[0]
    if local:
        line = line.replace(" --ssh postgres@%h", " --local")
    return (line + f" --state-dir {state_dir(lab)} --ssh-command {lab.ssh_shim()}"
            f" --pg-log {lab.pg_log_for_hooks(host)}")


# --------------------------------------------------------------------------
# pgvigil-promote

def test_promote_makes_the_standby_a_primary_once_and_refuses_a_stale_term(lab):
    setup_cluster(lab)
    lab.stop_postgres("db1", "kill")
    assert in_recovery(lab, "db2")

    r = promote(lab, "db2", term=5)
    assert not in_recovery(lab, "db2")
    assert timeline(lab, "db2") == 2
    assert "pg_promote" in r.stdout
    lab.psql("db2", "INSERT INTO t VALUES ('after')")

    # The same call again (a retry in the same term): a success, nothing done.
    r = run(lab, "gw", promote_line(lab), placeholders(lab, "db1", "db2", term=5), "failover")
    assert r.returncode == 0, r.stdout
    assert "already a primary" in r.stdout
    assert timeline(lab, "db2") == 2

    # Everything from the environment alone: a higher term is fine.
    r = run(lab, "gw", f"{SCRIPTS}/pgvigil-promote --state-dir {state_dir(lab)}",
            placeholders(lab, "db1", "db2", term=6), "failover")
    assert r.returncode == 0, r.stdout
    assert "already a primary" in r.stdout

    # A call from an older term is refused before anything is looked at.
    r = run(lab, "gw", promote_line(lab), placeholders(lab, "db1", "db2", term=5), "failover")
    assert r.returncode == 3, r.stdout
    assert "stale" in r.stdout and "already a primary" not in r.stdout

    # A late promotion of another standby from that older term must not
    # make a second primary: the term seen for db3 (a follow in term 6)
    # refuses it, and db3 goes on streaming from db2.
    r = run(lab, "gw", standby_line(lab, "pgvigil-follow", "follow_primary_command", "db3"),
            placeholders(lab, "db3", "db2", term=6), "follow_primary")
    assert r.returncode == 0, r.stdout
    r = run(lab, "gw", promote_line(lab), placeholders(lab, "db1", "db3", term=5), "failover")
    assert r.returncode == 3, r.stdout
    assert in_recovery(lab, "db3") and streams_from(lab, "db3", "db2")
    wait_rows(lab, "db3", "SELECT string_agg(v, ',' ORDER BY v) FROM t", "after,before")


def test_promote_with_pg_ctl_over_ssh(lab):
    setup_cluster(lab, standbys=("db2",))
    lab.stop_postgres("db1", "kill")
    line = conf_lines("pgvigil-promote", "failover_command")[1]
    assert "--pg-ctl" in line
    line += f" --state-dir {state_dir(lab)} --ssh-command {lab.ssh_shim()}"
    values = placeholders(lab, "db1", "db2", term=3)
    r = run(lab, "gw", line, values, "failover")
    assert r.returncode == 0, r.stdout
    assert "pg_ctl" in r.stdout
    assert not in_recovery(lab, "db2") and timeline(lab, "db2") == 2
    r = run(lab, "gw", line, values, "failover")
    assert r.returncode == 0 and "already a primary" in r.stdout, r.stdout


def test_promote_fails_on_an_unreachable_primary(lab):
    setup_cluster(lab, standbys=())
    lab.stop_postgres("db1", "fast")
    r = run(lab, "gw", promote_line(lab) + " --connect-timeout 2",
            placeholders(lab, None, "db1", term=1), "failover")
    assert r.returncode == 1, r.stdout
    r = run(lab, "gw", f"{SCRIPTS}/pgvigil-promote --port 5432",
            placeholders(lab, None, None, term=1), "failover")
    assert r.returncode == 2 and "--host" in r.stdout, r.stdout


# --------------------------------------------------------------------------
# pgvigil-follow

def test_follow_points_a_standby_at_the_new_primary_without_a_restart(lab):
    setup_cluster(lab)
    lab.stop_postgres("db1", "kill")
    promote(lab, "db2")
    lab.psql("db2", "INSERT INTO t VALUES ('after')")
    pid_before = lab.pg_instance("db3").pid

    line = standby_line(lab, "pgvigil-follow", "follow_primary_command", "db3")
    r = run(lab, "gw", line, placeholders(lab, "db3", "db2"), "follow_primary")
    assert r.returncode == 0, r.stdout
    assert streams_from(lab, "db3", "db2")
    assert "pg_rewind" not in r.stdout
    assert lab.pg_instance("db3").pid == pid_before          # reloaded, not restarted
    # its slot came along: created on the new primary, and in use
    assert lab.psql("db2", "SELECT active FROM pg_replication_slots WHERE slot_name = 'db3'") == "t"
    assert f"host='{lab.addr('db2')}'" in lab.psql("db3", "SHOW primary_conninfo")
    assert "user='replicator'" in lab.psql("db3", "SHOW primary_conninfo")
    wait_rows(lab, "db3", "SELECT string_agg(v, ',' ORDER BY v) FROM t", "after,before")

    r = run(lab, "gw", line, placeholders(lab, "db3", "db2"), "follow_primary")
    assert r.returncode == 0 and "already streams" in r.stdout, r.stdout


def test_follow_rewinds_a_diverged_old_primary(lab):
    """db1 goes on as a primary after db2 was promoted (a split): follow
    (run by a coordinator on db1's own host, --local) rewinds it."""
    setup_cluster(lab, standbys=("db2",))
    promote(lab, "db2")
    lab.psql("db2", "INSERT INTO t VALUES ('new-primary')")
    lab.psql("db1", "INSERT INTO t VALUES ('lost'); SELECT pg_switch_wal();")
    assert not in_recovery(lab, "db1")

    line = standby_line(lab, "pgvigil-follow", "follow_primary_command", "db1", local=True)
    assert "--local" in line
    r = run(lab, "db1", line, placeholders(lab, "db1", "db2"), "follow_primary")
    assert r.returncode == 0, r.stdout
    assert "is not a standby" in r.stdout and "pg_rewind" in r.stdout
    assert "base backup" not in r.stdout
    assert streams_from(lab, "db1", "db2")
    wait_rows(lab, "db1", "SELECT string_agg(v, ',' ORDER BY v) FROM t", "before,new-primary")
    # its own configuration survived the rewind (pg_rewind copies db2's)
    assert lab.psql("db1", "SHOW cluster_name") == "db1"
    assert os.path.exists(os.path.join(lab.pg_instance("db1").datadir, "standby.signal"))


def test_follow_rewinds_a_standby_past_the_fork_point(lab):
    """db3 received WAL that db2 never had, then db2 was promoted: db3 cannot
    follow. The script sees it from db2's timeline history (not by waiting
    for streaming to time out) and rewinds db3."""
    setup_cluster(lab)
    detach(lab, "db2")
    lab.psql("db1", "INSERT INTO t VALUES ('only-db1-and-db3'); SELECT pg_switch_wal();")
    wait_rows(lab, "db3", "SELECT string_agg(v, ',' ORDER BY v) FROM t", "before,only-db1-and-db3")
    lab.stop_postgres("db1", "kill")
    promote(lab, "db2")
    lab.psql("db2", "INSERT INTO t VALUES ('after')")

    line = standby_line(lab, "pgvigil-follow", "follow_primary_command", "db3")
    r = run(lab, "gw", line, placeholders(lab, "db3", "db2"), "follow_primary")
    assert r.returncode == 0, r.stdout
    assert "left that timeline at" in r.stdout and "pg_rewind" in r.stdout
    assert "did not follow" not in r.stdout
    assert streams_from(lab, "db3", "db2")
    wait_rows(lab, "db3", "SELECT string_agg(v, ',' ORDER BY v) FROM t", "after,before")


def test_follow_without_rewind_fails_for_a_diverged_server(lab):
    setup_cluster(lab, standbys=("db2",))
    promote(lab, "db2")
    line = standby_line(lab, "pgvigil-follow", "follow_primary_command", "db1") + " --no-rewind"
    r = run(lab, "gw", line, placeholders(lab, "db1", "db2"), "follow_primary")
    assert r.returncode == 1, r.stdout
    assert not in_recovery(lab, "db1")                     # left alone


# --------------------------------------------------------------------------
# pgvigil-stop

def stop_line():
    return conf_lines("pgvigil-stop", "stop_command")[0]


def test_stop_stops_a_running_server_and_an_already_stopped_one(lab):
    setup_cluster(lab, standbys=())
    inst = lab.pg_instance("db1")
    assert postgres_pids(lab, "db1")
    values = placeholders(lab, "db1", None)
    r = run(lab, "db1", stop_line(), values, "stop")
    assert r.returncode == 0, r.stdout
    assert postgres_pids(lab, "db1") == []
    assert not os.path.exists(os.path.join(inst.datadir, "postmaster.pid"))

    r = run(lab, "db1", stop_line(), values, "stop")
    assert r.returncode == 0 and "not running" in r.stdout, r.stdout

    r = run(lab, "db1", stop_line(), dict(values, D=inst.datadir + "-missing"), "stop")
    assert r.returncode == 1, r.stdout
    r = run(lab, "db1", f"{SCRIPTS}/pgvigil-stop --id %d", dict(values, D=""), "stop")
    assert r.returncode == 2, r.stdout


def test_stop_after_kill_9_of_the_postmaster(lab):
    """A dead postmaster leaves a stale postmaster.pid; one of its children
    is made unable to exit (SIGSTOP): the script waits --timeout for it,
    then kills it, and succeeds only once nothing of the data directory is
    left."""
    setup_cluster(lab, standbys=())
    inst = lab.pg_instance("db1")
    pm = inst.pid
    children = [p for p in postgres_pids(lab, "db1") if p != pm]
    assert children
    stuck = children[0]
    os.kill(stuck, signal.SIGSTOP)
    lab.stop_postgres("db1", "kill")
    assert os.path.exists(os.path.join(inst.datadir, "postmaster.pid"))
    assert pgvlab._alive(stuck)

    r = run(lab, "db1", stop_line() + " --timeout 1", placeholders(lab, "db1", None), "stop")
    assert r.returncode == 0, r.stdout
    assert "no running postmaster" in r.stdout
    assert "SIGKILL" in r.stdout
    assert not pgvlab._alive(stuck)
    assert postgres_pids(lab, "db1") == []
    lab.start_postgres("db1")                               # the data directory is fine
    assert not in_recovery(lab, "db1")


# --------------------------------------------------------------------------
# pgvigil-rejoin

def rejoin_line(lab, host):
    return standby_line(lab, "pgvigil-rejoin", "rejoin_command", host)


def test_rejoin_rewinds_the_old_primary(lab):
    setup_cluster(lab, standbys=("db2",))
    detach(lab, "db2")
    lab.psql("db1", "INSERT INTO t VALUES ('lost'); SELECT pg_switch_wal();")
    lab.stop_postgres("db1", "kill")                       # crashed, diverged
    promote(lab, "db2", term=7)
    lab.psql("db2", "INSERT INTO t VALUES ('after')")

    values = placeholders(lab, "db1", "db2", term=8)
    r = run(lab, "gw", rejoin_line(lab, "db1"), values, "rejoin")
    assert r.returncode == 0, r.stdout
    assert "pg_rewind" in r.stdout and "base backup" not in r.stdout
    assert streams_from(lab, "db1", "db2")
    wait_rows(lab, "db1", "SELECT string_agg(v, ',' ORDER BY v) FROM t", "after,before")
    assert lab.psql("db1", "SHOW cluster_name") == "db1"

    r = run(lab, "gw", rejoin_line(lab, "db1"), values, "rejoin")
    assert r.returncode == 0 and "already streams" in r.stdout, r.stdout
    r = run(lab, "gw", rejoin_line(lab, "db1"), dict(values, T=7), "rejoin")
    assert r.returncode == 3, r.stdout


def test_rejoin_takes_a_base_backup_when_pg_rewind_cannot_work(lab):
    """Without wal_log_hints (and without checksums) pg_rewind refuses:
    with --no-basebackup that is a failure; by default a new base backup
    replaces the data directory, its own configuration kept."""
    setup_cluster(lab, standbys=("db2",))
    lab.psql("db1", "ALTER SYSTEM SET wal_log_hints = off")
    lab.stop_postgres("db1", "fast")
    lab.start_postgres("db1")
    assert lab.psql("db1", "SHOW wal_log_hints") == "off"
    detach(lab, "db2")
    lab.psql("db1", "INSERT INTO t VALUES ('lost'); SELECT pg_switch_wal();")
    lab.stop_postgres("db1", "kill")
    promote(lab, "db2")
    lab.psql("db2", "INSERT INTO t VALUES ('after')")
    values = placeholders(lab, "db1", "db2")

    r = run(lab, "gw", rejoin_line(lab, "db1") + " --no-basebackup", values, "rejoin")
    assert r.returncode == 1, r.stdout
    assert "pg_rewind failed" in r.stdout
    assert lab.pg_instance("db1").pid is None

    r = run(lab, "gw", rejoin_line(lab, "db1"), values, "rejoin")
    assert r.returncode == 0, r.stdout
    assert "pg_rewind failed" in r.stdout and "base backup done" in r.stdout
    assert streams_from(lab, "db1", "db2")
    wait_rows(lab, "db1", "SELECT string_agg(v, ',' ORDER BY v) FROM t", "after,before")
    assert lab.psql("db1", "SHOW cluster_name") == "db1"
    assert lab.psql("db1", "SHOW wal_log_hints") == "off"   # its postgresql.auto.conf kept


def test_rejoin_no_rewind_goes_straight_to_a_base_backup(lab):
    setup_cluster(lab, standbys=("db2",))
    lab.stop_postgres("db1", "kill")
    promote(lab, "db2")
    r = run(lab, "gw", rejoin_line(lab, "db1") + " --no-rewind",
            placeholders(lab, "db1", "db2"), "rejoin")
    assert r.returncode == 0, r.stdout
    assert "pg_rewind -D" not in r.stdout and "base backup done" in r.stdout
    assert streams_from(lab, "db1", "db2")


# --------------------------------------------------------------------------
# tests/lab/fence-backend-lab

FENCE_LAB_LINE = f"{FENCE_BACKEND_LAB} @WORKDIR@ %d %h %D %T"


def fence_lab_log(lab):
    try:
        return Path(lab.workdir, "fence-backend.log").read_text()
    except FileNotFoundError:
        return ""


def veth_up(lab, host):
    r = lab.run("br", [pgvlab.IP, "-o", "link", "show", lab.host(host).veth], check=True)
    return ",UP" in r.stdout or "<UP" in r.stdout


def test_fence_backend_lab_isolates_the_host_and_kills_postgres(lab):
    setup_cluster(lab, standbys=("db2",))
    line = FENCE_LAB_LINE.replace("@WORKDIR@", lab.workdir)
    values = placeholders(lab, "db1", None, term=4)
    assert veth_up(lab, "db1") and postgres_pids(lab, "db1")

    r = run(lab, "gw", line, values, "fence")
    assert r.returncode == 0, r.stdout
    assert not veth_up(lab, "db1")
    assert postgres_pids(lab, "db1") == []
    ping = lab.run("gw", ["ping", "-c", "1", "-W", "1", lab.addr("db1")])
    assert ping.returncode != 0
    log = fence_lab_log(lab)
    assert f"fence backend=1 host={lab.addr('db1')} data={lab.pg_instance('db1').datadir} term=4" in log
    assert "PGVIGIL_HOOK=fence" in log and "fenced 1" in log
    assert veth_up(lab, "db2") and postgres_pids(lab, "db2")  # nobody else touched

    r = run(lab, "gw", line, values, "fence")                # fencing the fenced: fine
    assert r.returncode == 0, r.stdout
    lab.heal("db1")
    lab.start_postgres("db1")


def test_fence_backend_lab_forced_failure_touches_nothing(lab):
    setup_cluster(lab, standbys=())
    Path(lab.workdir, "fence-backend.exit").write_text("7\n")
    r = run(lab, "gw", FENCE_LAB_LINE.replace("@WORKDIR@", lab.workdir),
            placeholders(lab, "db1", None), "fence")
    assert r.returncode == 7, r.stdout
    assert "failed 1 exit 7" in fence_lab_log(lab)
    assert veth_up(lab, "db1") and postgres_pids(lab, "db1")


def test_fence_backend_lab_never_signals_a_recycled_pid(lab):
    """A stale postmaster.pid naming a live process that is not that
    postmaster (here a sleep with the data directory's pid file forged)."""
    setup_cluster(lab, standbys=())
    inst = lab.pg_instance("db1")
    lab.stop_postgres("db1", "fast")
    sleeper = lab.popen("db1", ["sleep", "60"], kind="sleeper")
    pidfile = Path(inst.datadir, "postmaster.pid")
    pidfile.write_text(f"{sleeper.pid}\n{inst.datadir}\n{int(time.time())}\n{PORT}\n")
    r = run(lab, "gw", FENCE_LAB_LINE.replace("@WORKDIR@", lab.workdir),
            placeholders(lab, "db1", None), "fence")
    assert r.returncode == 0, r.stdout
    assert sleeper.poll() is None and pgvlab._alive(sleeper.pid)
    assert not veth_up(lab, "db1")
    pidfile.unlink()
    lab.stop(sleeper)
    lab.heal("db1")


# --------------------------------------------------------------------------
# fence-ssh and fence-ipmilan (examples)

def test_fence_ssh_stops_the_old_primary_and_handles_its_arguments(lab):
    setup_cluster(lab, standbys=())
    shim = lab.ssh_shim()
    lines = conf_lines("fence-ssh", "fence_command")
    line, poweroff_line = lines[0], lines[1]
    values = placeholders(lab, "db1", None)
    assert "--poweroff" in poweroff_line

    r = run(lab, "gw", line + f" --ssh-command {shim} --dry-run", values, "fence")
    assert r.returncode == 0, r.stdout
    assert "dry run" in r.stdout and f"postgres@{lab.addr('db1')}" in r.stdout
    assert lab.pg_instance("db1").pid is not None          # dry run: nothing done

    r = run(lab, "gw", f"{SCRIPTS}/fence-ssh --data %D", values, "fence")
    assert r.returncode == 2 and "--ssh" in r.stdout, r.stdout
    for bad in (" --ssh nobody-at-all", " --timeout 0", " --frobnicate", " --dry-run=yes"):
        r = run(lab, "gw", f"{SCRIPTS}/fence-ssh --ssh postgres@%h --data %D{bad}", values, "fence")
        assert r.returncode == 2, (bad, r.stdout)
    r = run(lab, "gw", f"{SCRIPTS}/fence-ssh --ssh postgres@%h", dict(values, D=""), "fence")
    assert r.returncode == 2, r.stdout

    # an unreachable host (ssh exits 255): not fenced
    r = run(lab, "gw", line + f" --ssh-command {shim}", dict(values, h="192.0.2.99"), "fence")
    assert r.returncode == 1 and "NOT fenced" in r.stdout, r.stdout

    r = run(lab, "gw", poweroff_line + f" --ssh-command {shim}"
            " --poweroff-command 'echo power-off-requested'", values, "fence")
    assert r.returncode == 0, r.stdout
    assert postgres_pids(lab, "db1") == []
    assert "power-off-requested" in r.stdout
    # a refused power-off after a confirmed stop: still fenced
    r = run(lab, "gw", poweroff_line + f" --ssh-command {shim} --poweroff-command false",
            values, "fence")
    assert r.returncode == 0 and "power-off request failed" in r.stdout, r.stdout


def test_fence_ipmilan_arguments_dry_run_and_exit_codes(lab):
    lab.add_host("gw", *pgvlab.peer_addr(1))
    wd = Path(lab.workdir)
    mapfile = wd / "ipmi.map"
    mapfile.write_text("# backend controller\n1 192.0.2.101\n2 192.0.2.102  # rack 2\n")
    line = conf_lines("fence-ipmilan", "fence_command")[0].replace(
        "/etc/pgvigil/ipmi.map", str(mapfile))
    values = {"d": 2, "T": 3}

    r = run(lab, "gw", line + " --dry-run", values, "fence")
    assert r.returncode == 0, r.stdout
    for word in ("'fence_ipmilan'", "'--ip=192.0.2.102'", "'--username=pgvigil'",
                 "'--password-script=/etc/pgvigil/bmc-password.sh'", "'--lanplus'",
                 "'--action=off'", "'--power-timeout=20'"):
        assert word in r.stdout, (word, r.stdout)
    r = run(lab, "gw", line + " --dry-run --agent-option=--cipher=3 --agent-option '--ipport=6230'",
            values, "fence")
    assert r.returncode == 0 and "'--cipher=3' '--ipport=6230'" in r.stdout, r.stdout

    for vals, extra in (({"d": 9}, ""), ({"d": ""}, ""), (values, " --action status"),
                        (values, " --timeout x"), (values, " --map /nonexistent")):
        r = run(lab, "gw", line + extra + " --dry-run", vals, "fence")
        assert r.returncode == 2, (vals, extra, r.stdout)
    r = run(lab, "gw", f"{SCRIPTS}/fence-ipmilan --id %d --ip 192.0.2.102 --dry-run", values, "fence")
    assert r.returncode == 2 and "--username" in r.stdout, r.stdout

    # The agent: missing, failing, succeeding (a stub that records its arguments).
    r = run(lab, "gw", line + " --agent /nonexistent/fence_ipmilan", values, "fence")
    assert r.returncode == 1 and "NOT fenced" in r.stdout, r.stdout
    stub = wd / "fence_stub"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$0.args"\nexit "$(cat "$0.exit")"\n')
    stub.chmod(0o755)
    (wd / "fence_stub.exit").write_text("1\n")
    r = run(lab, "gw", line + f" --agent {stub}", values, "fence")
    assert r.returncode == 1 and "exited with status 1" in r.stdout, r.stdout
    (wd / "fence_stub.exit").write_text("0\n")
    r = run(lab, "gw", line + f" --agent {stub}", values, "fence")
    assert r.returncode == 0, r.stdout
    assert (wd / "fence_stub.args").read_text().splitlines() == [
        "--ip=192.0.2.102", "--username=pgvigil",
        "--password-script=/etc/pgvigil/bmc-password.sh", "--lanplus", "--action=off",
        "--power-timeout=20"]


# --------------------------------------------------------------------------
# the documented pgvigil.conf lines

def test_documented_conf_lines_load(pgvigil_bin, tmp_path):
    """Every `*_command = ...` line of the scripts' headers is accepted by
    pgvigil -t in [failover] (placeholders known, none inside quotes)."""
    key = tmp_path / "key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    base = (f"[cluster]\nname = lab\nstate_dir = {tmp_path}/state\nkey_file = {key}\n\n"
            "[peer.1]\naddress = 192.0.2.1\n[peer.2]\naddress = 192.0.2.2\n"
            "[peer.3]\naddress = 192.0.2.3\n\n"
            "[backend.1]\nhost = 192.0.2.11\npeer = 1\n"
            "data_directory = /var/lib/postgresql/15/main\n\n[failover]\n")
    checked = 0
    for script in sorted(p.name for p in SCRIPTS.iterdir() if not p.name.endswith(".sh")):
        for line in (SCRIPTS / script).read_text().splitlines():
            if not line.startswith("#"):
                break
            m = re.match(r"#\s+([a-z_]+_command) = (.*)$", line)
            if not m:
                continue
            conf = tmp_path / "pgvigil.conf"
            # A failover_command is only accepted beside a way to fence.
            extra = "stop_command = /bin/true\n" if m.group(1) == "failover_command" else ""
            conf.write_text(base + f"{m.group(1)} = {m.group(2)}\n" + extra)
            r = pgvlab._run([pgvigil_bin, "-t", "-c", str(conf)], timeout=10, check=False)
            assert r.returncode == 0, f"{script}: {line}\n{r.stdout}{r.stderr}"
            checked += 1
    assert checked >= 8
