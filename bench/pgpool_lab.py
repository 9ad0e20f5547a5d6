#!/usr/bin/python3
"""pgpool_lab.py - pgpool-II (Debian 12 package pgpool2, 4.3) inside a pgvlab lab.

The reference row of bench/bench_failover.py. One pgpool per host namespace,
next to that host's PostgreSQL (the colocated layout), plus one on a host
without PostgreSQL (the witness), like our 2 data peers + 1 witness:

    PgpoolCluster(lab, nodes=["h1", "h2", "h3"], backends=["h1", "h2"],
                  vip=pgvlab.vip_addr(0)[0], profile="fastest").start()

* streaming replication mode, load balancing off (every statement goes to the
  primary), connection cache on (pgpool's default);
* watchdog on, heartbeat lifecheck, delegate IP = the lab VIP; if_up_cmd,
  if_down_cmd and arping_cmd act on eth0 of the pgpool's own namespace (the
  lab veth), with absolute paths and no sudo (pgpool runs as root in the
  lab); the first node gets the highest wd_priority and is started first,
  alone until it is the watchdog leader, so it holds the VIP;
* failover_command = <workdir>/pgpool/failover.sh: when the failed node is
  the primary, `pg_ctl promote -w` of the new main node's data directory as
  user postgres. pgpool runs the script locally on its watchdog leader; in
  the lab every namespace shares the filesystem, so a local pg_ctl reaches
  another host's data directory (in production pgpool's sample does it over
  ssh, which only adds time). No fencing: pgpool has none (its sample
  failover.sh does not fence either);
* health checks and watchdog timings from one of two profiles:
    defaults  pgpool-II's defaults (health_check_period 0 = no health check,
              wd_interval 10, heartbeat keepalive 2 s / deadtime 30 s),
              consensus and quorum on;
    fastest   the fastest settings we call sane: health_check_period 1,
              health_check_timeout 1, connect_timeout 1000 ms, no retries,
              sr_check_period 1, wd_interval 1, heartbeat keepalive 1 s /
              deadtime 2 s (one lost heartbeat tolerated); consensus and
              quorum still on (the safety the docs recommend);
* every config file, socket, pid file, status file and log under
  <workdir>/pgpool/<host>/ (the pgpool_node_id file sits next to pgpool.conf,
  where pgpool 4.3 looks for it); pgpool is started with -n (no daemon, so
  the tracked pid is the main process) and -D (no stale pgpool_status).

Steady state (wait_ready): pgpool's lifecheck starts watching only ~10
wd_intervals after pgpool starts (10 s fastest, 100 s defaults; it polls its
readiness every 10 x wd_interval), so start() takes that long.

Needs the Debian packages pgpool2 and iputils-arping (`apt-get install
pgpool2 iputils-arping`); the package's own service is not used (keep it
stopped). Each pgpool allocates ~130 MB of shared memory.

Processes are started through lab.popen() (tracked by pid, own session) and
stopped by pid: SIGINT (fast shutdown) of the main process, then SIGKILL of
what is left of it and of its children, found through /proc by parent pid.
"""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "tests", "lab"))
import pgvlab  # noqa: E402

PGPOOL = "/usr/sbin/pgpool"
IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "/sbin/ip"
ARPING = "/usr/bin/arping" if os.path.exists("/usr/bin/arping") else "/usr/sbin/arping"
PGPOOL_PORT = 9999
WD_PORT = 9000
HB_PORT = 9694
PCP_PORT = 9898

PROFILES = ("defaults", "fastest")

FAILOVER_SH = """\
#!/bin/sh
# failover.sh - pgpool-II failover_command for the lab (written by bench/pgpool_lab.py).
#   failover_command = '{path} %d %h %p %D %m %H %r %R %M %P'
# When the failed node is the primary: promote the new main node's data directory
# with pg_ctl promote -w, as user postgres (pgpool runs as root in the lab). The
# lab's namespaces share one filesystem, so this works from any pgpool node.
failed=$1 failed_host=$2 failed_port=$3 failed_dir=$4
new_id=$5 new_host=$6 new_port=$7 new_dir=$8 old_main=$9
shift 9
old_primary=$1
log={log}
echo "$(date +%s.%N) pid $$ failed=$failed ($failed_host:$failed_port) new=$new_id ($new_host:$new_port $new_dir) old_main=$old_main old_primary=$old_primary" >>"$log"
if [ "$failed" != "$old_primary" ]; then
	echo "$(date +%s.%N) a standby failed: nothing to do" >>"$log"
	exit 0
fi
if [ -z "$new_id" ] || [ "$new_id" -lt 0 ] || [ -z "$new_dir" ]; then
	echo "$(date +%s.%N) no node left to promote" >>"$log"
	exit 1
fi
{setpriv} --reuid=postgres --regid=postgres --init-groups -- \\
	{pg_ctl} promote -D "$new_dir" -w -t 30 >>"$log" 2>&1
rc=$?
echo "$(date +%s.%N) promote of node $new_id exit $rc" >>"$log"
exit $rc
"""


def pgpool_version() -> str:
    r = subprocess.run([PGPOOL, "--version"], capture_output=True, text=True, timeout=10)
    out = (r.stdout or r.stderr).strip()
    # "pgpool-II version 4.3.5 (tamahomeboshi)"
    parts = out.split()
    return parts[2] if len(parts) >= 3 else out


def _children(pid):
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = pgvlab._proc_stat(int(name))
            if st:
                kids.setdefault(st[1], []).append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def _q(v) -> str:
    return "'" + str(v).replace("'", "''") + "'"


class PgpoolCluster:
    """pgpool-II on `nodes` (host names, one pgpool each, node id = index),
    PostgreSQL `backends` (host names with a lab PostgreSQL instance, backend
    id = index; backends[0] must be the primary)."""

    def __init__(self, lab, nodes, backends, vip, profile="fastest", port=PGPOOL_PORT,
                 log_level="info"):
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}")
        if not os.access(PGPOOL, os.X_OK):
            raise pgvlab.LabError(f"{PGPOOL} not found: apt-get install pgpool2")
        if not os.access(ARPING, os.X_OK):
            raise pgvlab.LabError(f"{ARPING} not found: apt-get install iputils-arping")
        self.lab, self.nodes, self.backends = lab, list(nodes), list(backends)
        self.vip, self.profile, self.port, self.log_level = vip, profile, port, log_level
        self.base = os.path.join(lab.workdir, "pgpool")
        self.procs = {}                                   # host -> Popen of the main pgpool
        self.failover_log = os.path.join(self.base, "failover.log")
        self.failover_sh = os.path.join(self.base, "failover.sh")

    # ---- files

    def dir(self, host):
        return os.path.join(self.base, host)

    def conf_path(self, host):
        return os.path.join(self.dir(host), "pgpool.conf")

    def log_path(self, host):
        return os.path.join(self.dir(host), "pgpool.log")

    def log_text(self, host):
        try:
            with open(self.log_path(host), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def _settings(self, host):
        idx = self.nodes.index(host)
        d = self.dir(host)
        s = {
            "backend_clustering_mode": "streaming_replication",
            "listen_addresses": "*",
            "port": self.port,
            "socket_dir": d,
            "pcp_listen_addresses": "",
            "pcp_port": PCP_PORT,
            "pcp_socket_dir": d,
            "pid_file_name": os.path.join(d, "pgpool.pid"),
            "logdir": d,
            "log_destination": "stderr",
            "log_line_prefix": "%m: %a pid %p: ",
            "log_min_messages": self.log_level,
            "logging_collector": "off",
            "enable_pool_hba": "off",
            "pool_passwd": os.path.join(d, "pool_passwd"),
            "num_init_children": 16,
            "max_pool": 1,
            "load_balance_mode": "off",
            "memory_cache_enabled": "off",
            "sr_check_user": "postgres",
            "sr_check_database": "postgres",
            "health_check_user": "postgres",
            "health_check_database": "postgres",
            "failover_command": f"{self.failover_sh} %d %h %p %D %m %H %r %R %M %P",
            "use_watchdog": "on",
            "wd_ipc_socket_dir": d,
            "wd_priority": len(self.nodes) - idx,
            "delegate_IP": self.vip,
            "if_cmd_path": os.path.dirname(IP),
            "if_up_cmd": f"{IP} addr add $_IP_$/24 dev eth0 label eth0:0",
            "if_down_cmd": f"{IP} addr del $_IP_$/24 dev eth0",
            "arping_path": os.path.dirname(ARPING),
            "arping_cmd": f"{ARPING} -U $_IP_$ -w 1 -I eth0",
            "ping_path": "/usr/bin" if os.path.exists("/usr/bin/ping") else "/bin",
            "wd_lifecheck_method": "heartbeat",
        }
        for i, h in enumerate(self.backends):
            inst = self.lab.pg_instance(h)
            s[f"backend_hostname{i}"] = self.lab.addr(h)
            s[f"backend_port{i}"] = inst.port
            s[f"backend_weight{i}"] = 1
            s[f"backend_data_directory{i}"] = inst.datadir
            s[f"backend_flag{i}"] = "ALLOW_TO_FAILOVER"
            s[f"backend_application_name{i}"] = h
        for i, h in enumerate(self.nodes):
            s[f"hostname{i}"] = self.lab.addr(h)
            s[f"wd_port{i}"] = WD_PORT
            s[f"pgpool_port{i}"] = self.port
            s[f"heartbeat_hostname{i}"] = self.lab.addr(h)
            s[f"heartbeat_port{i}"] = HB_PORT
            s[f"heartbeat_device{i}"] = ""
        if self.profile == "fastest":
            s.update({
                "health_check_period": 1,
                "health_check_timeout": 1,
                "health_check_max_retries": 0,
                "health_check_retry_delay": 1,
                "connect_timeout": 1000,
                "sr_check_period": 1,
                "wd_interval": 1,
                "wd_heartbeat_keepalive": 1,
                "wd_heartbeat_deadtime": 2,
            })
        return s

    def write_files(self):
        self.lab._mkdir(self.base)
        with open(self.failover_sh, "w") as f:
            f.write(FAILOVER_SH.format(path=self.failover_sh, log=self.failover_log,
                                       setpriv=pgvlab.SETPRIV, pg_ctl=self.lab.pg_bin("pg_ctl")))
        os.chmod(self.failover_sh, 0o755)
        for host in self.nodes:
            d = self.lab._mkdir(self.dir(host), 0o755)
            with open(self.conf_path(host), "w") as f:
                f.write(f"# pgpool-II {self.profile} profile for lab host {host} "
                        "(written by bench/pgpool_lab.py)\n")
                for k, v in self._settings(host).items():
                    f.write(f"{k} = {v if isinstance(v, int) else _q(v)}\n")
            with open(os.path.join(d, "pgpool_node_id"), "w") as f:
                f.write(f"{self.nodes.index(host)}\n")
            open(os.path.join(d, "pcp.conf"), "w").close()
            open(os.path.join(d, "pool_passwd"), "w").close()
            with open(os.path.join(d, "pool_hba.conf"), "w") as f:
                f.write("host all all 0.0.0.0/0 trust\nlocal all all trust\n")

    # ---- processes

    def start_node(self, host):
        d = self.dir(host)
        logf = open(self.log_path(host), "ab")
        try:
            self.procs[host] = self.lab.popen(
                host, [PGPOOL, "-n", "-D", "-f", self.conf_path(host),
                       "-F", os.path.join(d, "pcp.conf"), "-a", os.path.join(d, "pool_hba.conf")],
                stdout=logf, stderr=subprocess.STDOUT, kind="pgpool",
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
        finally:
            logf.close()
        return self.procs[host]

    def start(self, timeout=None):
        """Write the files, start the first node alone until it is the
        watchdog leader (a lone node elects itself after its 5-6 s of
        LOADING/INITIALIZING; without quorum it does not take the VIP yet),
        then the others, which join it as standbys; wait until ready().
        Starting all at once lets any of them win: its election has no
        deterministic tie-break."""
        self.write_files()
        first = self.nodes[0]
        self.start_node(first)
        deadline = time.monotonic() + 30
        while "I am the cluster leader node" not in self.log_text(first):
            if not self.alive(first) or time.monotonic() > deadline:
                raise pgvlab.LabError(f"pgpool on {first} did not become the watchdog leader; "
                                      "log tail:\n" + self.log_tail(first))
            time.sleep(0.1)
        for h in self.nodes[1:]:
            self.start_node(h)
        self.wait_ready(timeout)
        return self

    def alive(self, host):
        p = self.procs.get(host)
        return p is not None and p.poll() is None

    def vip_holders(self):
        out = []
        for h in self.nodes:
            if not self.lab.hosts.get(h) or h in self.lab._isolated:
                continue
            r = self.lab.run(h, [IP, "-o", "-4", "addr", "show", "dev", "eth0"], timeout=10)
            if f" {self.vip}/" in r.stdout:
                out.append(h)
        return out

    def ready_timeout(self):
        """pgpool's lifecheck process checks whether every node's heartbeat has
        been heard, and when not, sleeps 10 x wd_interval before it looks
        again: it starts watching ~10 wd_intervals after pgpool starts (10 s
        with the fastest profile, 100 s with the defaults). Allow that."""
        return 10 * self._settings(self.nodes[0]).get("wd_interval", 10) + 60.0

    def wait_ready(self, timeout=None):
        """Steady state: every node logged "watchdog: lifecheck started" (so a
        lost node is detected by heartbeat, as configured), exactly one
        namespace holds the VIP, every other node logged that it joined the
        watchdog cluster as a standby, and a write through VIP:port from the
        first node's namespace reaches the primary."""
        timeout = self.ready_timeout() if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for h in self.nodes:
                if not self.alive(h):
                    raise pgvlab.LabError(f"pgpool on {h} exited ({self.procs[h].returncode}); "
                                          "log tail:\n" + self.log_tail(h))
            started = [h for h in self.nodes if "watchdog: lifecheck started" in self.log_text(h)]
            if len(started) < len(self.nodes):
                last = f"lifecheck started on {started} only"
                time.sleep(0.2)
                continue
            holders = self.vip_holders()
            joined = [h for h in self.nodes
                      if "successfully joined the watchdog cluster as standby" in self.log_text(h)]
            if len(holders) == 1 and len(joined) == len(self.nodes) - 1 and holders[0] not in joined:
                try:
                    srv = simple_query(self.lab, self.nodes[0], self.vip, self.port,
                                       "SELECT inet_server_addr()::text, pg_is_in_recovery()")
                    if srv and srv[0][1] == "f":
                        return holders[0]
                    last = f"query through the VIP answered {srv}"
                except Exception as e:
                    last = f"query through the VIP failed: {e}"
            else:
                last = f"VIP holders {holders}, standbys joined {joined}"
            time.sleep(0.2)
        raise pgvlab.LabError(f"pgpool cluster not ready after {timeout}s ({last}); log tails:\n"
                              + "\n".join(f"--- {h}\n{self.log_tail(h, 15)}" for h in self.nodes))

    def log_tail(self, host, n=30):
        return "\n".join(self.log_text(host).splitlines()[-n:])

    def stop(self, timeout=10.0):
        """Fast shutdown (SIGINT) of every main pgpool by pid, then SIGKILL of
        whatever is left of it and its children."""
        kids = {}
        for h, p in self.procs.items():
            if p.poll() is None:
                kids[h] = [(c, pgvlab._starttime(c)) for c in _children(p.pid)]
                pgvlab._kill(p.pid, signal.SIGINT, self.lab._starttimes.get(p.pid))
        deadline = time.monotonic() + timeout
        for h, p in self.procs.items():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            if p.pid in self.lab._procs:
                self.lab.stop(p, signal.SIGKILL, 5.0)
        for h, cs in kids.items():
            for c, st in cs:
                pgvlab._kill(c, signal.SIGKILL, st)
        self.procs = {}


# --------------------------------------------------------------------------
# one query with the lab's pure-Python PostgreSQL client (no driver needed)

_QUERY_MAIN = pgvlab.Lab.PG_CLIENT_PY + r'''
import json
host, port, sql, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
try:
    print(json.dumps({"rows": pg_query(host, port, sql, timeout)}))
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
'''


def simple_query(lab, from_host, host, port, sql, timeout=5.0):
    """Run one query against host:port from inside from_host's namespace with
    the lab's client (Lab.PG_CLIENT_PY); returns the rows, raises LabError on
    an error."""
    r = lab.run(from_host, ["/usr/bin/python3", "-c", _QUERY_MAIN, host, str(port), sql,
                            str(timeout)], timeout=timeout + 10)
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise pgvlab.LabError(f"query client failed: {r.stderr.strip()}") from None
    if "error" in out:
        raise pgvlab.LabError(out["error"])
    return out["rows"]
