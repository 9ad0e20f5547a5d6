"""pgvlab - the network-namespace test lab for pgvigil system tests and the demo.

Stdlib only; runs under Debian's /usr/bin/python3 as root (DESIGN.md section 11).

Topology
--------
One bridge namespace ``<prefix>br`` holds a Linux bridge ``br0``.  It has no IP
address and is never linked to the root namespace.  Every lab host is a namespace
``<prefix><name>`` joined to ``br0`` by a veth pair that is *created inside the
bridge namespace* (``ve-<name>``) with its peer moved straight into the host
namespace (``eth0``), so no lab interface ever exists in the root namespace.
Host namespaces have no default route: anything outside 192.0.2.0/24 and
2001:db8::/64 is unreachable and no packet can leave the lab.

Addressing plan (documentation ranges only, RFC 5737 / RFC 3849)
----------------------------------------------------------------
    bridge namespace        no address at all
    pgvigil peers           192.0.2.1   - 192.0.2.9     2001:db8::1   - 2001:db8::9
    PostgreSQL hosts        192.0.2.11  - 192.0.2.19    2001:db8::11  - 2001:db8::19
    client                  192.0.2.100                 2001:db8::100
    VIPs (later tests)      192.0.2.200 - 192.0.2.250   2001:db8::200 - 2001:db8::250
    IPv4 prefix /24, IPv6 prefix /64 (addresses added with nodad)
The IPv6 host part is written with the same digits as the IPv4 last octet
(``peer_addr(3) == ("192.0.2.3", "2001:db8::3")``); see peer_addr(), pg_addr(),
client_addr(), vip_addr().

Safety rules kept by this module
--------------------------------
* Namespaces carry a per-run prefix (``pgv`` + 6 random hex chars + ``-``);
  teardown and cleanup_stale() delete only namespaces whose name starts with
  that exact prefix.
* Every process started is tracked by pid (plus its /proc start time, so a
  recycled pid is never signalled) and stopped by pid; tracked processes get a
  session of their own so escalation can also signal the group they lead.
  Processes nobody tracked but that live inside one of *our* namespaces (hook
  children, a postmaster restarted by a hook) are found through
  /proc/<pid>/ns/net and stopped by pid as well.  Never pkill/killall.
* Every wait has a deadline; every subprocess call has a timeout.
* The lab state (prefix, workdir, pids, PostgreSQL data directories) is kept in
  ``<workdir>/lab.json`` so a different process (``labctl down``) can tear a
  lab down after its creator died.

Root-namespace caveat found on the reference machine: the VM's own uplink is
192.0.2.2/24 with its default gateway at 192.0.2.1 (same documentation range as
the lab).  The lab never touches it and cannot reach it (separate namespaces, no
link), but a process accidentally started in the *root* namespace and aimed at a
lab address would talk to the real uplink.  Always start lab processes through
Lab.run()/Lab.popen()/Lab.start_pgvigil(); root_lab_addresses() lists such
overlaps.

Kernel caveat found on the reference machine: sch_netem is not built
(``tc ... netem`` -> "Specified qdisc kind is unknown").  set_loss() uses netem
when the kernel has it and otherwise falls back to a random-drop nftables rule
in the bridge namespace (same semantics: frames *sent* by the host are lost);
if neither is available it raises LabError saying what is missing.
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

__all__ = [
    "Lab", "LabError", "Host", "PgInstance", "PgvigilProcess",
    "cleanup_stale", "list_lab_namespaces", "load_state", "root_lab_addresses",
    "control_status", "parse_control_reply", "log_events", "wait_log_event",
    "peer_addr", "pg_addr", "client_addr", "vip_addr",
    "PG_BINDIR", "PREFIX_RE",
]

# --------------------------------------------------------------------------
# constants

PG_BINDIR = "/usr/lib/postgresql/15/bin"
PG_PACKAGE = "postgresql-15"
PG_OS_USER = "postgres"
IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"
SETPRIV = "/usr/bin/setpriv" if os.path.exists("/usr/bin/setpriv") else "setpriv"
NETNS_DIR = "/run/netns"

LAB_V4_NET = "192.0.2."
LAB_V6_NET = "2001:db8::"
# Default prefix pattern, used by `labctl ls` to recognise labs.
PREFIX_RE = re.compile(r"^pgv[0-9a-f]{6}-")
# Any prefix we accept: short, ends with '-', cannot be empty or a bare "pgv".
_PREFIX_OK = re.compile(r"^[a-z][a-z0-9]{3,11}-$")
_HOST_OK = re.compile(r"^[a-z][a-z0-9]{0,11}$")
BRIDGE_HOST = "br"          # reserved: the bridge namespace is <prefix>br
NFT_TABLE = "pgvlab"

DEFAULT_TIMEOUT = 30.0


class LabError(RuntimeError):
    """Anything the lab could not do; the message says what and why."""


# --------------------------------------------------------------------------
# addressing helpers

def peer_addr(i: int) -> tuple[str, str]:
    """(IPv4, IPv6) of pgvigil peer i, 1..9."""
    if not 1 <= i <= 9:
        raise ValueError("peer index must be 1..9")
    return f"{LAB_V4_NET}{i}", f"{LAB_V6_NET}{i}"


def pg_addr(i: int) -> tuple[str, str]:
    """(IPv4, IPv6) of PostgreSQL host i, 1..9 -> 192.0.2.1i."""
    if not 1 <= i <= 9:
        raise ValueError("postgres host index must be 1..9")
    return f"{LAB_V4_NET}{10 + i}", f"{LAB_V6_NET}{10 + i}"


def client_addr() -> tuple[str, str]:
    return f"{LAB_V4_NET}100", f"{LAB_V6_NET}100"


def vip_addr(i: int = 0) -> tuple[str, str]:
    """(IPv4, IPv6) of VIP i, 0..50 -> 192.0.2.200+i."""
    if not 0 <= i <= 50:
        raise ValueError("vip index must be 0..50")
    return f"{LAB_V4_NET}{200 + i}", f"{LAB_V6_NET}{200 + i}"


def root_lab_addresses() -> list[str]:
    """Addresses of the *root* namespace inside the lab ranges (should be none,
    but some VMs use 192.0.2.0/24 for their uplink: see the module docstring)."""
    r = subprocess.run([IP, "-o", "addr", "show"], capture_output=True, text=True, timeout=10)
    out = []
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] in ("inet", "inet6") and (
                f[3].startswith(LAB_V4_NET) or f[3].lower().startswith("2001:db8:")):
            out.append(f"{f[1]} {f[3]}")
    return out


def _check_lab_v4(a: str) -> None:
    parts = a.split(".")
    if not (a.startswith(LAB_V4_NET) and len(parts) == 4 and parts[3].isdigit()
            and 1 <= int(parts[3]) <= 254):
        raise LabError(f"address {a!r} is outside the lab range 192.0.2.0/24")


def _check_lab_v6(a: str) -> None:
    import ipaddress
    try:
        ok = ipaddress.IPv6Address(a) in ipaddress.IPv6Network("2001:db8::/64")
    except ValueError:
        ok = False
    if not ok:
        raise LabError(f"address {a!r} is outside the lab range 2001:db8::/64")


# --------------------------------------------------------------------------
# /proc helpers (identity-checked, pid-based)

def _proc_stat(pid: int):
    """(state, ppid, pgrp, starttime) or None if the pid does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = data[data.rfind(")") + 2:].split()
    # rest[0] is field 3 (state); starttime is field 22 -> rest[19]
    try:
        return rest[0], int(rest[1]), int(rest[2]), int(rest[19])
    except (IndexError, ValueError):
        return None


def _starttime(pid: int) -> int | None:
    st = _proc_stat(pid)
    return st[3] if st else None


def _alive(pid: int, starttime: int | None = None) -> bool:
    """True if pid exists, is not a zombie and (if given) has that start time."""
    st = _proc_stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return starttime is None or st[3] == starttime


def _kill(pid: int, sig: int, starttime: int | None = None, group: bool = False) -> bool:
    """Signal pid (and, if group, the process group it leads) after checking identity."""
    if pid <= 1 or pid == os.getpid():
        return False
    st = _proc_stat(pid)
    if st is None or (starttime is not None and st[3] != starttime):
        return False
    try:
        if group and st[2] == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def _wait_gone(pid: int, starttime: int | None, timeout: float, popen=None) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if popen is not None:
            try:
                popen.poll()
            except Exception:
                pass
        if not _alive(pid, starttime):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _netns_inode(ns: str) -> int | None:
    try:
        return os.stat(os.path.join(NETNS_DIR, ns)).st_ino
    except FileNotFoundError:
        return None


def _pids_in_netns(inodes: set[int]) -> list[int]:
    """Pids whose network namespace is one of `inodes` (bounded: one /proc scan)."""
    out = []
    if not inodes:
        return out
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == me:
            continue
        try:
            link = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        m = re.match(r"net:\[(\d+)\]", link)
        if m and int(m.group(1)) in inodes and _alive(pid):
            out.append(pid)
    return out


def _pids_with_cwd(path: str) -> list[int]:
    """Pids whose cwd is exactly `path` (PostgreSQL processes chdir to their data dir)."""
    out = []
    real = os.path.realpath(path)
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            if os.readlink(f"/proc/{name}/cwd") == real and _alive(int(name)):
                out.append(int(name))
        except OSError:
            continue
    return out


def _stop_pids(pids_st: list[tuple[int, int | None]], first_sig=signal.SIGTERM,
               timeout: float = 5.0, log=None) -> list[int]:
    """Signal each (pid, starttime), wait up to timeout for all, SIGKILL the rest.
    Returns pids that survived even SIGKILL (should be empty)."""
    live = [(p, s) for p, s in pids_st if _alive(p, s)]
    for p, s in live:
        _kill(p, first_sig, s)
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        live = [(p, s) for p, s in live if _alive(p, s)]
        if live:
            time.sleep(0.02)
    for p, s in live:
        if log:
            log(f"pid {p} ignored signal {first_sig}, sending SIGKILL")
        _kill(p, signal.SIGKILL, s, group=True)
        _kill(p, signal.SIGKILL, s)
    left = [p for p, s in live if not _wait_gone(p, s, 3.0)]
    return left


def _list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def list_lab_namespaces(prefix: str | None = None) -> list[str]:
    """Namespaces that start with `prefix`, or look like ours (PREFIX_RE) if None."""
    names = _list_netns()
    if prefix is None:
        return [n for n in names if PREFIX_RE.match(n)]
    return [n for n in names if n.startswith(prefix)]


def _run(argv, timeout=DEFAULT_TIMEOUT, check=True, input=None, env=None, *,
         capture=True, cwd=None, where="", shown=None):
    """subprocess.run with a timeout always; LabError on timeout (and on a
    non-zero exit with check).  where/shown only shape the messages."""
    shown = " ".join(map(str, shown if shown is not None else argv))
    try:
        r = subprocess.run(argv, capture_output=capture, text=True, timeout=timeout,
                           input=input, env=env, cwd=cwd,
                           stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise LabError(f"timed out after {timeout}s{where}: {shown}") from e
    if check and r.returncode != 0:
        raise LabError(f"command failed{where} (exit {r.returncode}): {shown}\n"
                       f"{(r.stderr or '').strip()}")
    return r


def _delete_netns(ns: str) -> None:
    if _netns_inode(ns) is not None:
        r = _run([IP, "netns", "delete", ns], timeout=10, check=False)
        if r.returncode != 0 and _netns_inode(ns) is not None:
            raise LabError(f"could not delete namespace {ns}: {r.stderr.strip()}")


def _postmaster_pid(datadir: str) -> int | None:
    try:
        with open(os.path.join(datadir, "postmaster.pid")) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def _stop_postgres_dir(datadir: str, timeout: float = 10.0, log=None) -> None:
    """Fast shutdown of the postmaster of datadir, by the pid in postmaster.pid,
    escalating SIGINT -> SIGQUIT -> SIGKILL; then stop any process still
    working in that data directory (orphaned backends)."""
    pid = _postmaster_pid(datadir)
    real = os.path.realpath(datadir)
    if pid and _alive(pid):
        # Identity: a postmaster has its data dir as cwd.
        try:
            ours = os.readlink(f"/proc/{pid}/cwd") == real
        except OSError:
            ours = False
        if ours:
            st = _starttime(pid)
            _kill(pid, signal.SIGINT, st)
            if not _wait_gone(pid, st, timeout):
                if log:
                    log(f"postmaster {pid} ({datadir}) slow to stop, SIGQUIT")
                _kill(pid, signal.SIGQUIT, st)
                if not _wait_gone(pid, st, 3.0):
                    _kill(pid, signal.SIGKILL, st, group=True)
                    _kill(pid, signal.SIGKILL, st)
                    _wait_gone(pid, st, 3.0)
    rest = [(p, _starttime(p)) for p in _pids_with_cwd(datadir)]
    if rest:
        _stop_pids(rest, signal.SIGQUIT, 3.0, log)


# --------------------------------------------------------------------------
# state file

def load_state(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def cleanup_stale(prefix: str, workdir: str | None = None, *, remove_workdir: bool = True,
                  log=None) -> dict:
    """Tear down what a lab with `prefix` left behind, from any process.

    Kills the processes recorded in <workdir>/lab.json (pid + start time checked),
    stops the PostgreSQL instances recorded there, stops any process still living
    in a namespace whose name starts with exactly `prefix`, deletes those
    namespaces (hosts first, bridge last) and removes the workdir when the lab
    created it.  Returns a summary dict.  Idempotent."""
    if not prefix or not _PREFIX_OK.match(prefix):
        raise LabError(f"refusing to clean up with prefix {prefix!r}: "
                       "it must look like 'pgvXXXXXX-' (letters/digits, ending in '-')")
    log = log or (lambda m: None)
    summary = {"prefix": prefix, "killed": [], "namespaces": [], "postgres": [],
               "workdir_removed": False}
    state = {}
    if workdir:
        sp = os.path.join(workdir, "lab.json")
        if os.path.exists(sp):
            try:
                state = load_state(sp)
            except (OSError, ValueError) as e:
                log(f"could not read {sp}: {e}")
        if state and state.get("prefix") != prefix:
            raise LabError(f"{sp} belongs to prefix {state.get('prefix')!r}, not {prefix!r}")
    # 1. tracked non-postgres processes, then postgres instances
    procs = state.get("procs", [])
    plain = [(p["pid"], p.get("starttime")) for p in procs if p.get("kind") != "postgres"]
    for pid, st in plain:
        if _alive(pid, st):
            summary["killed"].append(pid)
    _stop_pids(plain, signal.SIGTERM, 5.0, log)
    for inst in state.get("postgres", []):
        dd = inst.get("datadir")
        if dd and os.path.isdir(dd):
            _stop_postgres_dir(dd, 10.0, log)
            summary["postgres"].append(dd)
    pgp = [(p["pid"], p.get("starttime")) for p in procs if p.get("kind") == "postgres"]
    for pid, st in pgp:
        if _alive(pid, st):
            summary["killed"].append(pid)
    _stop_pids(pgp, signal.SIGINT, 5.0, log)
    # 2. anything else still inside our namespaces
    names = list_lab_namespaces(prefix)
    inodes = {i for i in (_netns_inode(n) for n in names) if i is not None}
    stray = _pids_in_netns(inodes)
    if stray:
        summary["killed"].extend(stray)
        _stop_pids([(p, _starttime(p)) for p in stray], signal.SIGTERM, 3.0, log)
    # 3. namespaces: hosts first, bridge last
    br = prefix + BRIDGE_HOST
    errors = []
    for n in sorted(names, key=lambda n: n == br):
        try:
            _delete_netns(n)
            summary["namespaces"].append(n)
        except LabError as e:
            errors.append(str(e))
    # 4. workdir
    if workdir and remove_workdir and os.path.isdir(workdir):
        if state.get("owns_workdir") and not state.get("keep"):
            shutil.rmtree(workdir, ignore_errors=True)
            summary["workdir_removed"] = not os.path.exists(workdir)
    if errors:
        raise LabError("; ".join(errors))
    return summary


# --------------------------------------------------------------------------
# signal / atexit plumbing: every live Lab is torn down on exit or SIGINT/SIGTERM

# Strong references on purpose: a Lab nobody holds any more must still be torn
# down at exit.
_live_labs: "set[Lab]" = set()
_prev_handlers: dict[int, object] = {}
_atexit_registered = False
_plumbing_lock = threading.Lock()


def _teardown_all(reason: str) -> None:
    for lab in list(_live_labs):
        try:
            lab.teardown()
        except Exception as e:  # keep going; report
            print(f"pgvlab: teardown of {lab.prefix} on {reason} failed: {e}", file=sys.stderr)


def _on_signal(signum, frame):
    # Read the previous handler first: the last teardown restores (and forgets) it.
    prev = _prev_handlers.get(signum, signal.SIG_DFL)
    _teardown_all(signal.Signals(signum).name)
    _restore_handlers()
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_DFL:
        # Die the way the signal would have killed us.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    # SIG_IGN: nothing


def _install_handlers() -> None:
    global _atexit_registered
    with _plumbing_lock:
        if not _atexit_registered:
            atexit.register(_teardown_all, "exit")
            _atexit_registered = True
        if threading.current_thread() is not threading.main_thread():
            return
        for s in (signal.SIGINT, signal.SIGTERM):
            if s in _prev_handlers:
                continue
            cur = signal.getsignal(s)
            if cur is _on_signal or cur == signal.SIG_IGN:
                continue  # ignored on purpose (e.g. background job): leave it ignored
            _prev_handlers[s] = cur if cur is not None else signal.SIG_DFL
            signal.signal(s, _on_signal)


def _restore_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for s, prev in list(_prev_handlers.items()):
        if signal.getsignal(s) is _on_signal:
            signal.signal(s, prev)
        del _prev_handlers[s]


# --------------------------------------------------------------------------
# model objects

class Host:
    def __init__(self, name, ns, ipv4, ipv6, veth):
        self.name, self.ns, self.ipv4, self.ipv6, self.veth = name, ns, ipv4, ipv6, veth

    def __repr__(self):
        return f"Host({self.name!r}, ns={self.ns!r}, ipv4={self.ipv4!r}, ipv6={self.ipv6!r})"


class PgInstance:
    """One PostgreSQL instance of the lab."""

    def __init__(self, lab, host, datadir, sockdir, logfile, port, role):
        self.lab, self.host, self.datadir, self.sockdir = lab, host, datadir, sockdir
        self.logfile, self.port, self.role = logfile, port, role
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        """The running postmaster's pid (from postmaster.pid, so it follows restarts)."""
        p = _postmaster_pid(self.datadir)
        if p and _alive(p):
            try:  # a stale postmaster.pid may name a recycled pid: a postmaster's cwd is its data dir
                if os.readlink(f"/proc/{p}/cwd") == os.path.realpath(self.datadir):
                    return p
            except OSError:
                pass
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def log_text(self) -> str:
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def __repr__(self):
        return f"PgInstance({self.host!r}, role={self.role!r}, port={self.port})"


class PgvigilProcess:
    """A pgvigil daemon started by Lab.start_pgvigil()."""

    def __init__(self, lab, host, proc, conf_path, log_path, state_dir):
        self.lab, self.host, self.proc = lab, host, proc
        self.pid = proc.pid
        self.conf_path, self.log_path, self.state_dir = conf_path, log_path, state_dir

    def log_text(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        """Current log length; pass as since= to wait_log() to match only newer lines."""
        return len(self.log_text())

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def wait_log(self, regex, timeout: float = 10.0, since: int = 0):
        """Poll the log until `regex` matches (after offset `since`); return the match.
        Raises LabError with the log tail on timeout or if the daemon exits first
        without having logged it."""
        rx = re.compile(regex, re.M) if isinstance(regex, str) else regex
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            m = rx.search(text, since)
            if m:
                return m
            rc = self.proc.poll()
            if rc is not None:
                m = rx.search(self.log_text(), since)
                if m:
                    return m
                raise LabError(f"pgvigil on {self.host} exited ({rc}) before logging "
                               f"/{rx.pattern}/; log tail:\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise LabError(f"timed out after {timeout}s waiting for /{rx.pattern}/ in "
                               f"{self.log_path}; log tail:\n{self.log_tail()}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig) -> None:
        if self.proc.poll() is None:
            _kill(self.pid, sig, self.lab._starttimes.get(self.pid))

    def wait(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as e:
            raise LabError(f"pgvigil on {self.host} still running after {timeout}s") from e

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to timeout (then SIGKILL); returns the exit code
        (negative = killed by that signal)."""
        return self.lab.stop(self.proc, signal.SIGTERM, timeout)

    @property
    def returncode(self):
        return self.proc.poll()


EVENT_RE = re.compile(r"event=([a-z-]+)(.*)$", re.M)
FIELD_RE = re.compile(r'([a-z_]+)=("[^"]*"|\S*)')


def log_events(pv, token=None, since=0, **fields):
    """Event lines of a pgvigil's log (doc/events.md) after offset `since`, as
    dicts of their fields plus 'event' and 'pos' (the offset in the log),
    filtered by token and by exact field values."""
    out = []
    for m in EVENT_RE.finditer(pv.log_text(), since):
        if token is not None and m.group(1) != token:
            continue
        f = {k: v.strip('"') for k, v in FIELD_RE.findall(m.group(2))}
        if all(f.get(k) == str(v) for k, v in fields.items()):
            out.append(dict(f, event=m.group(1), pos=m.start()))
    return out


def wait_log_event(pv, token, timeout, since=0, count=1, **fields):
    """Wait (bounded) until pv logged `count` matching events; return the last of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = log_events(pv, token, since, **fields)
        if len(found) >= count:
            return found[count - 1]
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"peer on {pv.host}: no {count} x event={token} {fields} within {timeout}s; "
                f"log tail:\n{pv.log_tail(30)}")
        time.sleep(0.02)


def parse_control_reply(raw: bytes):
    """A control socket reply: 'ok' then a JSON body; None if it is not that."""
    first, _, body = raw.partition(b"\n")
    if first != b"ok":
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def control_status(path: str, timeout: float = 1.0):
    """One 'status json' request on a pgvigil control socket (a file: it can be
    reached from any namespace); None when nothing usable comes back in time."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(b"status json\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    except OSError:
        return None
    finally:
        s.close()
    return parse_control_reply(data)


# --------------------------------------------------------------------------
# the lab

class Lab:
    """A network-namespace lab.  See the module docstring for the topology."""

    def __init__(self, prefix: str | None = None, workdir: str | None = None,
                 keep: bool | None = None, verbose: bool | None = None):
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, veth, bridge)")
        self.prefix = prefix or f"pgv{secrets.token_hex(3)}-"
        if not _PREFIX_OK.match(self.prefix):
            raise LabError(f"bad prefix {self.prefix!r}: 4-12 lowercase letters/digits then '-'")
        self.keep = bool(int(os.environ.get("PGVLAB_KEEP", "0"))) if keep is None else keep
        self.verbose = bool(int(os.environ.get("PGVLAB_VERBOSE", "0"))) if verbose is None else verbose
        self.hosts: dict[str, Host] = {}
        self.pg: dict[str, PgInstance] = {}
        self.pgvigil: dict[str, PgvigilProcess] = {}
        self._procs: dict[int, tuple[subprocess.Popen, str, str]] = {}   # pid -> (popen, host, kind)
        self._starttimes: dict[int, int | None] = {}
        self._namespaces: list[str] = []
        self._nft = {"block": set(), "drop": set(), "loss": {}}
        self._isolated: dict[str, str] = {}
        self._loss_backend: dict[str, str] = {}
        self._torn_down = False
        self._lock = threading.RLock()
        if workdir:
            workdir = os.path.abspath(workdir)
            self.owns_workdir = not os.path.exists(workdir)
            created, p = [], workdir
            while not os.path.exists(p):
                created.append(p)
                p = os.path.dirname(p)
            os.makedirs(workdir, exist_ok=True)
            for c in created:  # components we made must be traversable by postgres
                os.chmod(c, 0o711)
        else:
            workdir = tempfile.mkdtemp(prefix=f"pgvlab-{self.prefix[3:-1]}-", dir="/tmp")
            self.owns_workdir = True
        self.workdir = workdir
        self._chmod_traversable(workdir)
        self.state_path = os.path.join(workdir, "lab.json")
        _live_labs.add(self)
        _install_handlers()
        self._write_state()
        try:
            self.bridge_ns = self.prefix + BRIDGE_HOST
            self._add_ns(self.bridge_ns)
            self._ip(self.bridge_ns, "link", "set", "lo", "up")
            self._ip(self.bridge_ns, "link", "add", "br0", "type", "bridge",
                     "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
            # The bridge namespace has no address, not even IPv6 link-local.
            self._sysctl(self.bridge_ns, "net.ipv6.conf.br0.disable_ipv6", "1", check=False)
            self._ip(self.bridge_ns, "link", "set", "br0", "up")
        except Exception:
            self.teardown()
            raise

    # ---- logging / small helpers

    def _log(self, msg: str) -> None:
        if self.verbose:
            print(f"pgvlab[{self.prefix}] {msg}", file=sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def __repr__(self):
        return f"Lab(prefix={self.prefix!r}, workdir={self.workdir!r}, hosts={list(self.hosts)})"

    @staticmethod
    def _chmod_traversable(path: str) -> None:
        os.chmod(path, 0o711)

    def _mkdir(self, path: str, mode=0o711, owner: str | None = None) -> str:
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        if owner:
            pw = pwd.getpwnam(owner)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        return path

    def _write_state(self) -> None:
        st = {
            "version": 1,
            "prefix": self.prefix,
            "workdir": self.workdir,
            "owns_workdir": self.owns_workdir,
            "keep": self.keep,
            "creator_pid": os.getpid(),
            "namespaces": list(self._namespaces),
            "hosts": {h.name: {"ns": h.ns, "ipv4": h.ipv4, "ipv6": h.ipv6, "veth": h.veth}
                      for h in self.hosts.values()},
            "procs": [{"pid": pid, "starttime": self._starttimes.get(pid), "host": host,
                       "kind": kind, "argv": list(map(str, p.args))[:12]}
                      for pid, (p, host, kind) in self._procs.items()],
            "postgres": [{"host": i.host, "datadir": i.datadir, "port": i.port, "role": i.role}
                         for i in self.pg.values()],
        }
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f, indent=1)
        os.replace(tmp, self.state_path)

    def _check_live(self):
        if self._torn_down:
            raise LabError(f"lab {self.prefix} has been torn down")

    def _ip(self, ns, *args, check=True, timeout=10):
        return _run([IP, "-n", ns, *args], timeout=timeout, check=check)

    def _sysctl(self, ns, key, value, check=True):
        return _run([IP, "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}"],
                    timeout=10, check=check)

    def _add_ns(self, ns):
        if _netns_inode(ns) is not None:
            raise LabError(f"namespace {ns} already exists (prefix collision?)")
        _run([IP, "netns", "add", ns], timeout=10)
        self._namespaces.append(ns)
        self._write_state()

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise LabError(f"no lab host {name!r} (have {sorted(self.hosts)})") from None

    def ns(self, host: str) -> str:
        """Namespace name of a host ('br' gives the bridge namespace)."""
        if host == BRIDGE_HOST:
            return self.bridge_ns
        return self.host(host).ns

    def addr(self, host: str, family: int = 4) -> str:
        """Lab IPv4 (family=4) or IPv6 (family=6) address of a host."""
        h = self.host(host)
        a = h.ipv4 if family == 4 else h.ipv6
        if a is None:
            raise LabError(f"host {host} has no IPv{family} address")
        return a

    # ---- hosts

    def add_host(self, name: str, ipv4: str, ipv6: str | None = None) -> Host:
        """Create namespace <prefix><name>, wire it to br0, address eth0 and bring it up."""
        self._check_live()
        if not _HOST_OK.match(name) or name == BRIDGE_HOST:
            raise LabError(f"bad host name {name!r}: 1-12 lowercase letters/digits, not 'br'")
        if name in self.hosts:
            raise LabError(f"host {name} already exists")
        _check_lab_v4(ipv4)
        if ipv6 is not None:
            _check_lab_v6(ipv6)
        for h in self.hosts.values():
            if ipv4 == h.ipv4 or (ipv6 and ipv6 == h.ipv6):
                raise LabError(f"address already used by host {h.name}")
        ns = self.prefix + name
        veth = f"ve-{name}"
        self._add_ns(ns)
        # Created inside the bridge namespace, peer moved straight into the host
        # namespace: the pair never exists in the root namespace.
        self._ip(self.bridge_ns, "link", "add", veth, "type", "veth",
                 "peer", "name", "eth0", "netns", ns)
        self._ip(self.bridge_ns, "link", "set", veth, "master", "br0")
        self._sysctl(self.bridge_ns, f"net.ipv6.conf.{veth}.disable_ipv6", "1", check=False)
        self._ip(self.bridge_ns, "link", "set", veth, "up")
        self._ip(ns, "link", "set", "lo", "up")
        self._sysctl(ns, "net.ipv6.conf.all.accept_dad", "0", check=False)
        self._sysctl(ns, "net.ipv6.conf.default.accept_dad", "0", check=False)
        self._sysctl(ns, "net.ipv6.conf.eth0.accept_dad", "0", check=False)
        self._ip(ns, "addr", "add", f"{ipv4}/24", "dev", "eth0")
        if ipv6:
            self._ip(ns, "-6", "addr", "add", f"{ipv6}/64", "dev", "eth0", "nodad")
        self._ip(ns, "link", "set", "eth0", "up")
        h = Host(name, ns, ipv4, ipv6, veth)
        self.hosts[name] = h
        self._write_state()
        self._log(f"host {name}: ns={ns} {ipv4} {ipv6 or ''}")
        return h

    # ---- processes

    def _ns_argv(self, host, argv, user=None):
        base = [IP, "netns", "exec", self.ns(host)]
        if user:
            # setpriv execs: the pid we get is the real process, not a wrapper.
            base += [SETPRIV, f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        return base + [str(a) for a in argv]

    @staticmethod
    def _user_env(user, env):
        e = dict(env) if env is not None else dict(os.environ)
        if user:
            pw = pwd.getpwnam(user)
            e.update(HOME=pw.pw_dir, USER=user, LOGNAME=user)
        return e

    def run(self, host: str, argv, *, user: str | None = None, timeout: float = DEFAULT_TIMEOUT,
            check: bool = False, input: str | None = None, env: dict | None = None,
            capture: bool = True) -> subprocess.CompletedProcess:
        """subprocess.run(argv) inside the host's namespace (as `user` if given).
        Always bounded by `timeout` (LabError on expiry); text mode."""
        self._check_live()
        return _run(self._ns_argv(host, argv, user), timeout, check, input,
                    self._user_env(user, env), capture=capture, cwd="/",
                    where=f" on {host}", shown=argv)

    def popen(self, host: str, argv, user: str | None = None, stdout=None, stderr=None,
              env: dict | None = None, kind: str = "proc") -> subprocess.Popen:
        """Start argv in the host's namespace and track its pid.  stdout/stderr
        default to /dev/null (pass a file object, PIPE, ...).  The process leads
        its own session so it cannot be hit by our terminal's signals."""
        self._check_live()
        full = self._ns_argv(host, argv, user)
        with self._lock:
            p = subprocess.Popen(full, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL if stdout is None else stdout,
                                 stderr=subprocess.DEVNULL if stderr is None else stderr,
                                 env=self._user_env(user, env), cwd="/",
                                 start_new_session=True, close_fds=True)
            self._procs[p.pid] = (p, host, kind)
            self._starttimes[p.pid] = _starttime(p.pid)
            self._write_state()
        self._log(f"started pid {p.pid} on {host}: {' '.join(map(str, argv))}")
        return p

    def tracked_pids(self) -> list[int]:
        return [pid for pid, (p, _, _) in self._procs.items() if p.poll() is None]

    def stop(self, proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Send `sig` to proc's pid, wait up to timeout, then SIGKILL (pid and the
        group it leads).  Reaps it, forgets it, returns the exit code."""
        pid = proc.pid
        st = self._starttimes.get(pid)
        if proc.poll() is None:
            _kill(pid, sig, st)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._log(f"pid {pid} ignored {sig}, SIGKILL")
                _kill(pid, signal.SIGKILL, st, group=True)
                _kill(pid, signal.SIGKILL, st)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    raise LabError(f"pid {pid} survived SIGKILL for 5s") from None
        with self._lock:
            self._procs.pop(pid, None)
            self._starttimes.pop(pid, None)
            if not self._torn_down or os.path.isdir(self.workdir):
                try:
                    self._write_state()
                except OSError:
                    pass
        return proc.returncode

    # ---- isolation & loss

    def _nft_apply(self):
        rules = []
        for a, b in sorted(self._nft["block"]):
            va, vb = self.host(a).veth, self.host(b).veth
            rules.append(f'iifname "{va}" oifname "{vb}" drop')
            rules.append(f'iifname "{vb}" oifname "{va}" drop')
        for h in sorted(self._nft["drop"]):
            v = self.host(h).veth
            rules.append(f'iifname "{v}" drop')
            rules.append(f'oifname "{v}" drop')
        for h, pct in sorted(self._nft["loss"].items()):
            v = self.host(h).veth
            rules.append(f'iifname "{v}" numgen random mod 100 < {int(pct)} drop')
        text = f"add table bridge {NFT_TABLE}\ndelete table bridge {NFT_TABLE}\n"
        if rules:
            text += (f"table bridge {NFT_TABLE} {{\n chain labfwd {{\n"
                     "  type filter hook forward priority 0; policy accept;\n"
                     + "".join(f"  {r}\n" for r in rules) + " }\n}\n")
        if shutil.which("nft") is None:
            raise LabError("nft (package nftables) is needed for this isolation mode: "
                           "apt-get install nftables")
        _run([IP, "netns", "exec", self.bridge_ns, "nft", "-f", "-"], input=text, timeout=10)

    def isolate(self, host: str, mode: str = "link") -> None:
        """Cut a host off the bridge.  mode='link': set its bridge-side veth down
        (the host sees carrier loss); mode='drop': silently drop every frame to and
        from it in the bridge (carrier stays up, like a switch-side partition)."""
        self._check_live()
        h = self.host(host)
        if mode == "link":
            self._ip(self.bridge_ns, "link", "set", h.veth, "down")
        elif mode == "drop":
            self._nft["drop"].add(host)
            self._nft_apply()
        else:
            raise LabError(f"unknown isolate mode {mode!r} (link|drop)")
        self._isolated[host] = mode

    def heal(self, host: str) -> None:
        """Undo isolate(host) (either mode)."""
        self._check_live()
        h = self.host(host)
        mode = self._isolated.pop(host, None)
        if mode == "drop" or host in self._nft["drop"]:
            self._nft["drop"].discard(host)
            self._nft_apply()
        self._ip(self.bridge_ns, "link", "set", h.veth, "up")

    def block(self, a: str, b: str) -> None:
        """Drop all frames between hosts a and b (both directions), others unaffected."""
        self._check_live()
        self.host(a), self.host(b)
        self._nft["block"].add(tuple(sorted((a, b))))
        self._nft_apply()

    def unblock(self, a: str, b: str) -> None:
        self._check_live()
        self._nft["block"].discard(tuple(sorted((a, b))))
        self._nft_apply()

    _netem_ok: bool | None = None

    def netem_available(self) -> bool:
        """Probe sch_netem once (on the bridge namespace's lo, harmless)."""
        if Lab._netem_ok is None:
            if shutil.which("tc") is None:
                Lab._netem_ok = False
            else:
                r = _run([IP, "netns", "exec", self.bridge_ns, "tc", "qdisc", "add", "dev", "lo",
                          "root", "netem", "loss", "0%"], timeout=10, check=False)
                Lab._netem_ok = r.returncode == 0
                if Lab._netem_ok:
                    _run([IP, "netns", "exec", self.bridge_ns, "tc", "qdisc", "del", "dev", "lo",
                          "root"], timeout=10, check=False)
        return Lab._netem_ok

    def set_loss(self, host: str, percent: float, backend: str = "auto") -> str:
        """Lose `percent`% of the frames the host sends (0 removes the loss).
        backend: 'netem' (tc qdisc netem on the host's eth0), 'nft' (random drop
        in the bridge namespace) or 'auto' (netem if the kernel has it).
        Returns the backend used."""
        self._check_live()
        h = self.host(host)
        if not 0 <= percent <= 100:
            raise LabError("loss percent must be within 0..100")
        if backend == "auto":
            if self.netem_available():
                backend = "netem"
            elif shutil.which("nft"):
                backend = "nft"
            else:
                raise LabError("cannot emulate loss: sch_netem is not available in this kernel "
                               "(CONFIG_NET_SCH_NETEM; tc says 'Specified qdisc kind is unknown') "
                               "and nft (package nftables) is not installed")
        if backend == "netem":
            if not self.netem_available():
                raise LabError("sch_netem is not available in this kernel (CONFIG_NET_SCH_NETEM) "
                               "or tc (iproute2) is missing; use backend='nft'")
            if percent == 0:
                self.run(host, ["tc", "qdisc", "del", "dev", "eth0", "root"], timeout=10)
            else:
                self.run(host, ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem",
                                "loss", f"{percent}%"], timeout=10, check=True)
        elif backend == "nft":
            if percent == 0:
                self._nft["loss"].pop(host, None)
            else:
                self._nft["loss"][host] = max(1, round(percent))
            self._nft_apply()
        else:
            raise LabError(f"unknown loss backend {backend!r} (auto|netem|nft)")
        if percent == 0:
            self._loss_backend.pop(host, None)
        else:
            self._loss_backend[host] = backend
        return backend

    # ---- PostgreSQL

    @staticmethod
    def pg_bin(name: str) -> str:
        p = os.path.join(PG_BINDIR, name)
        if not os.access(p, os.X_OK):
            raise LabError(f"{p} not found: install Debian package {PG_PACKAGE}")
        return p

    @staticmethod
    def ensure_pg_user() -> None:
        try:
            pwd.getpwnam(PG_OS_USER)
        except KeyError:
            _run(["useradd", "--system", "--home-dir", "/var/lib/postgresql", "--shell",
                  "/bin/bash", "--user-group", PG_OS_USER], timeout=30)

    def _check_traversable(self) -> None:
        """Every ancestor of the workdir must let the postgres user through."""
        pw = pwd.getpwnam(PG_OS_USER)
        p = self.workdir
        while True:
            st = os.stat(p)
            ok = (st.st_mode & 0o001) or (st.st_uid == pw.pw_uid and st.st_mode & 0o100) or \
                 (st.st_gid == pw.pw_gid and st.st_mode & 0o010)
            if not ok:
                raise LabError(f"{p} is not traversable by user {PG_OS_USER}; put the lab "
                               f"workdir elsewhere (default: /tmp) or chmod o+x {p}")
            if p == "/":
                return
            p = os.path.dirname(p)

    def _pg_paths(self, host):
        self._check_traversable()
        root = self._mkdir(os.path.join(self.workdir, "pg"))
        sock_root = self._mkdir(os.path.join(self.workdir, "pgsock"))
        log_root = self._mkdir(os.path.join(self.workdir, "pglog"))
        datadir = os.path.join(root, host)
        sockdir = self._mkdir(os.path.join(sock_root, host), 0o755, PG_OS_USER)
        return datadir, sockdir, os.path.join(log_root, f"{host}.log")

    def _pg_overrides(self, inst: PgInstance) -> None:
        h = self.host(inst.host)
        listen = ",".join(a for a in (h.ipv4, h.ipv6) if a)
        conf = f"""\
# written by pgvlab (tests/lab/pgvlab.py) for lab host {inst.host}
listen_addresses = '{listen}'
port = {inst.port}
unix_socket_directories = '{inst.sockdir}'
cluster_name = '{inst.host}'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on
wal_keep_size = 64MB
wal_log_hints = on
wal_receiver_status_interval = 1s
shared_buffers = 16MB
max_connections = 30
logging_collector = off
log_line_prefix = '%m [%p] {inst.host} '
log_connections = off
fsync = on
"""
        path = os.path.join(inst.datadir, "pgvlab.conf")
        with open(path, "w") as f:
            f.write(conf)
        pw = pwd.getpwnam(PG_OS_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)
        os.chmod(path, 0o600)

    def _pg_hba(self, datadir):
        hba = """\
# written by pgvlab.  This cluster lives in an isolated network-namespace lab
# (192.0.2.0/24 and 2001:db8::/64, no route out), so trust is acceptable here
# and nowhere else.
local   all          all                  trust
local   replication  all                  trust
host    all          all   127.0.0.1/32   trust
host    all          all   ::1/128        trust
host    all          all   192.0.2.0/24   trust
host    all          all   2001:db8::/64  trust
host    replication  all   127.0.0.1/32   trust
host    replication  all   192.0.2.0/24   trust
host    replication  all   2001:db8::/64  trust
"""
        path = os.path.join(datadir, "pg_hba.conf")
        with open(path, "w") as f:
            f.write(hba)
        pw = pwd.getpwnam(PG_OS_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)

    def start_postgres(self, host: str, timeout: float = 30.0) -> PgInstance:
        """(Re)start the postmaster of host's instance as user postgres, tracked,
        and wait until pg_isready answers on its lab address."""
        self._check_live()
        inst = self.pg_instance(host)
        if inst.pid:
            raise LabError(f"postgres on {host} is already running (pid {inst.pid})")
        # After a crash (SIGKILL of the postmaster) its children exit on their own
        # a moment later; a new postmaster refuses to start while they hold the
        # old shared memory, so wait for them (bounded).
        deadline = time.monotonic() + 10.0
        while _pids_with_cwd(inst.datadir):
            if time.monotonic() >= deadline:
                raise LabError(f"old postgres processes of {host} still running: "
                               f"{_pids_with_cwd(inst.datadir)}")
            time.sleep(0.02)
        logf = open(inst.logfile, "ab")
        try:
            inst.proc = self.popen(host, [self.pg_bin("postgres"), "-D", inst.datadir],
                                   user=PG_OS_USER, stdout=logf, stderr=subprocess.STDOUT,
                                   env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, kind="postgres")
        finally:
            logf.close()
        self.wait_pg_ready(host, timeout)
        return inst

    def wait_pg_ready(self, host: str, timeout: float = 30.0) -> None:
        inst = self.pg_instance(host)
        deadline = time.monotonic() + timeout
        while True:
            if inst.proc is not None and inst.proc.poll() is not None:
                raise LabError(f"postgres on {host} exited ({inst.proc.returncode}); log tail:\n"
                               + "\n".join(inst.log_text().splitlines()[-20:]))
            r = self.run(host, [self.pg_bin("pg_isready"), "-q", "-h", self.addr(host),
                                "-p", str(inst.port), "-U", "postgres", "-d", "postgres",
                                "-t", "1"], timeout=5)
            if r.returncode == 0:
                return
            if time.monotonic() >= deadline:
                raise LabError(f"postgres on {host} not ready after {timeout}s; log tail:\n"
                               + "\n".join(inst.log_text().splitlines()[-20:]))
            time.sleep(0.05)

    def stop_postgres(self, host: str, mode: str = "fast", timeout: float = 15.0) -> None:
        """Stop host's postmaster by pid: mode fast (SIGINT), smart (SIGTERM),
        immediate (SIGQUIT) or kill (SIGKILL, a crash).  Escalates after timeout."""
        self._check_live()
        inst = self.pg_instance(host)
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT,
               "kill": signal.SIGKILL}[mode]
        if inst.proc is not None and inst.proc.pid in self._procs and inst.proc.poll() is None:
            self.stop(inst.proc, sig, timeout)
        pid = inst.pid
        if pid:  # a postmaster we did not start (e.g. restarted by a hook)
            st = _starttime(pid)
            _kill(pid, sig, st)
            if not _wait_gone(pid, st, timeout):
                _kill(pid, signal.SIGKILL, st)
                _wait_gone(pid, st, 3.0)
        if mode != "kill":
            _stop_postgres_dir(inst.datadir, 3.0, self._log)

    def pg_instance(self, host: str) -> PgInstance:
        try:
            return self.pg[host]
        except KeyError:
            raise LabError(f"no PostgreSQL instance on host {host!r}") from None

    def add_postgres_primary(self, host_name: str, port: int = 5432,
                             timeout: float = 60.0) -> PgInstance:
        """initdb (as postgres) into <workdir>/pg/<host>, configure, start, create
        roles pgvigil (superuser) and replicator (REPLICATION LOGIN)."""
        self._check_live()
        self.host(host_name)
        if host_name in self.pg:
            raise LabError(f"host {host_name} already has a PostgreSQL instance")
        self.ensure_pg_user()
        datadir, sockdir, logfile = self._pg_paths(host_name)
        self._mkdir(datadir, 0o700, PG_OS_USER)
        self.run(host_name, [self.pg_bin("initdb"), "-D", datadir, "-U", "postgres",
                             "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                 user=PG_OS_USER, timeout=timeout, check=True,
                 env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
        inst = PgInstance(self, host_name, datadir, sockdir, logfile, port, "primary")
        self.pg[host_name] = inst
        self._write_state()
        self._pg_hba(datadir)
        with open(os.path.join(datadir, "postgresql.conf"), "a") as f:
            f.write("\n# lab overrides (pgvlab)\ninclude 'pgvlab.conf'\n")
        self._pg_overrides(inst)
        self.start_postgres(host_name, timeout)
        self.psql(host_name, "CREATE ROLE pgvigil SUPERUSER LOGIN; "
                             "CREATE ROLE replicator REPLICATION LOGIN;")
        return inst

    def add_postgres_standby(self, host_name: str, primary_host_name: str, port: int = 5432,
                             timeout: float = 60.0) -> PgInstance:
        """pg_basebackup -R -X stream -C -S <slot> from the primary (run in the
        standby's namespace, as postgres, over the lab network), configure, start,
        wait until in recovery and streaming."""
        self._check_live()
        self.host(host_name)
        prim = self.pg_instance(primary_host_name)
        if host_name in self.pg:
            raise LabError(f"host {host_name} already has a PostgreSQL instance")
        self.ensure_pg_user()
        datadir, sockdir, logfile = self._pg_paths(host_name)
        self._mkdir(datadir, 0o700, PG_OS_USER)
        slot = re.sub(r"[^a-z0-9_]", "_", host_name.lower())
        self.run(host_name, [self.pg_bin("pg_basebackup"), "-D", datadir,
                             "-h", self.addr(primary_host_name), "-p", str(prim.port),
                             "-U", "replicator", "-X", "stream", "-c", "fast",
                             "-C", "-S", slot, "-R", "--no-sync"],
                 user=PG_OS_USER, timeout=timeout, check=True,
                 env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "PGCONNECT_TIMEOUT": "5"})
        inst = PgInstance(self, host_name, datadir, sockdir, logfile, port, "standby")
        self.pg[host_name] = inst
        self._write_state()
        self._pg_overrides(inst)
        self.start_postgres(host_name, timeout)
        self.wait_streaming(host_name, timeout)
        return inst

    def wait_streaming(self, host: str, timeout: float = 30.0) -> None:
        """Wait until host is in recovery and its WAL receiver is streaming."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            try:
                last = self.psql(host, "SELECT pg_is_in_recovery()::text || ',' || "
                                       "coalesce((SELECT status FROM pg_stat_wal_receiver), '')",
                                 timeout=5)
                if last == "true,streaming":
                    return
            except LabError as e:
                last = str(e)
            if time.monotonic() >= deadline:
                raise LabError(f"standby {host} not streaming after {timeout}s (last: {last}); "
                               "log tail:\n" + "\n".join(
                                   self.pg_instance(host).log_text().splitlines()[-20:]))
            time.sleep(0.1)

    def psql(self, host_name: str, sql: str, db: str = "postgres", user: str = "postgres",
             timeout: float = 20.0) -> str:
        """Run sql with psql -XAtq -v ON_ERROR_STOP=1 against host's instance over
        its lab address (from inside its namespace).  Returns stdout stripped."""
        inst = self.pg_instance(host_name)
        r = self.run(host_name, [self.pg_bin("psql"), "-XAtq", "-v", "ON_ERROR_STOP=1",
                                 "-h", self.addr(host_name), "-p", str(inst.port),
                                 "-U", user, "-d", db, "-c", sql],
                     timeout=timeout,
                     env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "PGCONNECT_TIMEOUT": "5"})
        if r.returncode != 0:
            raise LabError(f"psql on {host_name} failed (exit {r.returncode}): {r.stderr.strip()}\n"
                           f"sql: {sql}")
        return r.stdout.strip()

    # ---- pgvigil

    def pgvigil_dir(self, host: str) -> dict:
        base = os.path.join(self.workdir, "pgvigil", host)
        return {"dir": base, "conf": os.path.join(base, "pgvigil.conf"),
                "state": os.path.join(base, "state"), "log": os.path.join(base, "pgvigil.log")}

    def cluster_key(self) -> str:
        """The lab's cluster key file (32 random bytes as hex, mode 0600), made once."""
        path = os.path.join(self.workdir, "cluster.key")
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        return path

    def pgvigil_config(self, peers, backends=(), extra_sections: str = "", state_dir=None,
                       name: str = "lab", log_level: str = "info", peer_port: int = 5480,
                       hooks: dict | None = None, cluster_extra: dict | None = None) -> str:
        """Render a pgvigil INI config from lab addresses.
        peers: [(id, host_name)]; backends: [(id, host_name)] (hosts with a
        PostgreSQL instance).  state_dir=None renders the token @STATE_DIR@, which
        start_pgvigil() replaces with that host's state directory."""
        out = ["[cluster]", f"name = {name}", f"state_dir = {state_dir or '@STATE_DIR@'}",
               f"log_level = {log_level}", f"key_file = {self.cluster_key()}"]
        for k, v in (cluster_extra or {}).items():
            out.append(f"{k} = {v}")
        if hooks:
            out += ["", "[hooks]"] + [f"{k} = {v}" for k, v in hooks.items()]
        for pid_, h in peers:
            out += ["", f"[peer.{pid_}]", f"address = {self.addr(h)}", f"port = {peer_port}"]
        for bid, h in backends:
            inst = self.pg_instance(h)
            out += ["", f"[backend.{bid}]", f"host = {self.addr(h)}", f"port = {inst.port}",
                    "dbname = postgres", "user = pgvigil"]
        text = "\n".join(out) + "\n"
        if extra_sections:
            text += "\n" + extra_sections.strip("\n") + "\n"
        return text

    def pgvigil_socket(self, host: str) -> str:
        """The control socket of the pgvigil on host (the default beside its state dir)."""
        return os.path.join(self.pgvigil_dir(host)["state"], "pgvigil.sock")

    def pgvigil_status(self, host: str, timeout: float = 1.0):
        """That daemon's status (the JSON of `pgvigilctl status --json`), read
        straight from its control socket; None when it does not answer in
        time (stopped, killed) or answers something else."""
        return control_status(self.pgvigil_socket(host), timeout)

    def start_pgvigil(self, host_name: str, binary: str, config_text: str,
                      extra_args=(), env: dict | None = None) -> PgvigilProcess:
        """Write <workdir>/pgvigil/<host>/pgvigil.conf, create the state dir, start
        `binary -c conf` as root in the host namespace (tracked), output to
        <workdir>/pgvigil/<host>/pgvigil.log.  env: variables added to the
        daemon's environment (NOTIFY_SOCKET, say)."""
        self._check_live()
        self.host(host_name)
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise LabError(f"pgvigil binary {binary!r} not found or not executable")
        old = self.pgvigil.get(host_name)
        if old is not None and old.alive():
            raise LabError(f"pgvigil already running on {host_name} (pid {old.pid})")
        d = self.pgvigil_dir(host_name)
        self._mkdir(os.path.join(self.workdir, "pgvigil"))
        self._mkdir(d["dir"])
        self._mkdir(d["state"], 0o700)
        with open(d["conf"], "w") as f:
            f.write(config_text.replace("@STATE_DIR@", d["state"]))
        logf = open(d["log"], "ab")
        try:
            p = self.popen(host_name, [os.path.abspath(binary), "-c", d["conf"], *extra_args],
                           stdout=logf, stderr=subprocess.STDOUT, kind="pgvigil",
                           env=dict(os.environ, **env) if env else None)
        finally:
            logf.close()
        pv = PgvigilProcess(self, host_name, p, d["conf"], d["log"], d["state"])
        self.pgvigil[host_name] = pv
        return pv

    # ---- teardown

    def detach(self) -> str:
        """Leave the lab running after this process exits (the demo's --keep):
        no teardown at exit or on a signal.  Returns the state file that
        `labctl down --state` takes to remove the lab later."""
        with self._lock:
            self._write_state()
            _live_labs.discard(self)
            self._torn_down = True
        return self.state_path

    def teardown(self) -> None:
        """Stop every tracked process by pid, stop PostgreSQL instances, stop any
        process left in our namespaces, delete this run's namespaces, remove the
        workdir (unless keep).  Idempotent; raises LabError at the end if
        something could not be cleaned."""
        with self._lock:
            if self._torn_down:
                return
            self._torn_down = True
        errors = []

        def step(fn, *a):
            try:
                fn(*a)
            except Exception as e:
                errors.append(f"{getattr(fn, '__name__', fn)}: {e}")

        # 1. tracked non-postgres processes (pgvigil, clients, ...)
        for pid, (p, host, kind) in list(self._procs.items()):
            if kind != "postgres":
                step(self.stop, p, signal.SIGTERM, 5.0)
        # 2. PostgreSQL: fast shutdown of tracked postmasters, then by postmaster.pid
        pg_tracked = [p for (p, host, kind) in self._procs.values() if kind == "postgres"]
        for p in pg_tracked:
            if p.poll() is None:
                _kill(p.pid, signal.SIGINT, self._starttimes.get(p.pid))
        deadline = time.monotonic() + 10.0
        for p in pg_tracked:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in pg_tracked:
            step(self.stop, p, signal.SIGQUIT, 3.0)
        for inst in self.pg.values():
            step(_stop_postgres_dir, inst.datadir, 5.0, self._log)
        # 3. anything else living in our namespaces
        inodes = {i for i in (_netns_inode(n) for n in self._namespaces) if i is not None}
        stray = _pids_in_netns(inodes)
        if stray:
            self._log(f"stopping untracked processes in lab namespaces: {stray}")
            left = _stop_pids([(p, _starttime(p)) for p in stray], signal.SIGTERM, 3.0, self._log)
            if left:
                errors.append(f"processes survived SIGKILL: {left}")
        # 4. namespaces (hosts first, bridge last); then anything else with our prefix
        for ns in [n for n in self._namespaces if n != self.bridge_ns] + \
                  [n for n in self._namespaces if n == self.bridge_ns]:
            step(_delete_netns, ns)
        for ns in list_lab_namespaces(self.prefix):
            step(_delete_netns, ns)
        # 5. workdir
        if self.keep:
            try:
                self._write_state()
            except OSError:
                pass
            print(f"pgvlab: kept workdir {self.workdir}", file=sys.stderr)
        elif self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            for sub in ("pg", "pgsock", "pglog", "pgvigil", "lab.json", "lab.json.tmp"):
                p = os.path.join(self.workdir, sub)
                if os.path.isdir(p):
                    shutil.rmtree(p, ignore_errors=True)
                elif os.path.exists(p):
                    os.unlink(p)
        _live_labs.discard(self)
        if not len(_live_labs):
            _restore_handlers()
        if errors:
            raise LabError(f"teardown of lab {self.prefix} incomplete: " + "; ".join(errors))

    # ---- host crash (bench_failover) ------------------------------------
    # Added for bench/bench_failover.py; other helpers may add their own
    # blocks below this one.

    def host_pids(self, host: str) -> list[int]:
        """Pids of every live process inside host's namespace (one /proc scan)."""
        ino = _netns_inode(self.ns(host))
        return _pids_in_netns({ino} if ino is not None else set())

    def crash_host(self, host: str, mode: str = "link") -> list[int]:
        """A host crash: freeze (SIGSTOP) every process in host's namespace at
        once, cut it off the bridge (isolate(host, mode)), then SIGKILL those
        processes, by pid with their start time checked, and reap the tracked
        ones.  Nothing it ran gets to shut down cleanly or send a last packet.
        Returns the pids killed."""
        self._check_live()
        pids, seen = [], set()
        for _ in range(10):  # a process may fork between a scan and its SIGSTOP
            new = [(p, _starttime(p)) for p in self.host_pids(host) if p not in seen]
            if not new:
                break
            for p, st in new:
                _kill(p, signal.SIGSTOP, st)
                seen.add(p)
            pids += new
        self.isolate(host, mode)
        for p, st in pids:
            _kill(p, signal.SIGKILL, st)
        for p, st in pids:
            _wait_gone(p, st, 5.0, self._procs.get(p, (None,))[0])
        with self._lock:
            for p, _ in pids:
                if p in self._procs and self._procs[p][0].poll() is not None:
                    self._procs.pop(p, None)
                    self._starttimes.pop(p, None)
            self._write_state()
        return [p for p, _ in pids]

    # ---- shipped hook scripts (tests/system/test_hook_scripts.py) --------
    # Run a failover hook the way pgvigil does (doc/hooks.md): the command
    # line with each placeholder replaced by its shell-quoted value, through
    # /bin/sh -c, with exactly the hook environment, inside a host's namespace.

    HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    # placeholder letter -> environment variable (failover hooks, pgpool-II letters)
    HOOK_PLACEHOLDERS = {
        "d": "PGVIGIL_NODE_ID", "h": "PGVIGIL_NODE_HOST", "p": "PGVIGIL_NODE_PORT",
        "D": "PGVIGIL_NODE_DATA", "m": "PGVIGIL_NEW_PRIMARY_ID",
        "H": "PGVIGIL_NEW_PRIMARY_HOST", "r": "PGVIGIL_NEW_PRIMARY_PORT",
        "R": "PGVIGIL_NEW_PRIMARY_DATA", "M": "PGVIGIL_OLD_MAIN_ID",
        "P": "PGVIGIL_OLD_PRIMARY_ID", "N": "PGVIGIL_OLD_PRIMARY_HOST",
        "S": "PGVIGIL_OLD_PRIMARY_PORT", "T": "PGVIGIL_TERM", "i": "PGVIGIL_PEER_ID",
        "c": "PGVIGIL_CLUSTER",
    }

    @staticmethod
    def hook_quote(value) -> str:
        """A value as pgvigil substitutes it: POSIX single quotes, ' as '\\''."""
        return "'" + str(value).replace("'", "'\\''") + "'"

    @classmethod
    def hook_command(cls, template: str, values: dict) -> str:
        """template with %X replaced by the shell-quoted values[X] ('' when
        missing) and %% by %; an unknown letter raises LabError."""
        out, i = [], 0
        while i < len(template):
            c = template[i]
            if c != "%":
                out.append(c)
                i += 1
                continue
            letter = template[i + 1:i + 2]
            if letter == "%":
                out.append("%")
            elif letter in cls.HOOK_PLACEHOLDERS:
                out.append(cls.hook_quote(values.get(letter, "")))
            else:
                raise LabError(f"unknown placeholder %{letter} in {template!r}")
            i += 2
        return "".join(out)

    @classmethod
    def hook_env(cls, hook: str, values: dict, extra: dict | None = None) -> dict:
        """The environment of a failover hook: PATH, LANG, PGVIGIL_HOOK and
        every placeholder's variable (empty when unknown), plus extra."""
        env = {"PATH": cls.HOOK_PATH, "LANG": "C", "PGVIGIL_HOOK": hook}
        for letter, var in cls.HOOK_PLACEHOLDERS.items():
            env[var] = str(values.get(letter, ""))
        env.update(extra or {})
        return env

    def run_hook(self, host: str, template: str, values: dict, hook: str,
                 extra_env: dict | None = None,
                 timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run a hook command line in host's namespace as root, as pgvigil
        would: sh -c with quoted values, the hook environment, stdin
        /dev/null, cwd /.  stdout holds both output streams."""
        self._check_live()
        cmd = self.hook_command(template, values)
        try:
            return subprocess.run(self._ns_argv(host, ["/bin/sh", "-c", cmd]),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                  env=self.hook_env(hook, values, extra_env), cwd="/")
        except subprocess.TimeoutExpired as e:
            raise LabError(f"hook {hook} on {host} timed out after {timeout}s: {cmd}\n"
                           f"{e.output or ''}") from e

    def ssh_shim(self) -> str:
        """Write <workdir>/lab-ssh, a stand-in for ssh(1) for hook scripts'
        --ssh-command: `lab-ssh [-o OPT]... USER@ADDRESS COMMAND...` runs
        COMMAND (its words joined by spaces, as ssh does) with /bin/sh as
        USER inside the namespace of the lab host that has ADDRESS, stdin
        passed through.  An unknown address exits 255, like ssh.  Rewritten
        on each call, so it knows every host added so far."""
        self._check_live()
        cases = "".join(
            f"{h.ipv4}{'|' + h.ipv6 if h.ipv6 else ''}) ns={h.ns} ;;\n"
            for h in self.hosts.values())
        text = f"""#!/bin/sh
# lab-ssh: ssh(1) stand-in of lab {self.prefix} (written by pgvlab.Lab.ssh_shim)
set -eu
while [ $# -gt 0 ]; do
	case $1 in
	-o|-i|-p|-l) shift 2 ;;
	-*) shift ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || {{ echo "lab-ssh: no destination" >&2; exit 255; }}
dest=$1; shift
user=${{dest%@*}}; addr=${{dest#*@}}
[ "$user" != "$dest" ] || user=root
case $addr in
{cases}*) echo "lab-ssh: no lab host has address $addr" >&2; exit 255 ;;
esac
home=$(getent passwd "$user" | cut -d: -f6)
exec {IP} netns exec "$ns" {SETPRIV} --reuid="$user" --regid="$user" --init-groups -- \\
	env HOME="${{home:-/}}" USER="$user" LOGNAME="$user" /bin/sh -c "cd / && $*"
"""
        path = os.path.join(self.workdir, "lab-ssh")
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.chmod(path + ".tmp", 0o755)
        os.replace(path + ".tmp", path)
        return path

    def pg_log_for_hooks(self, host: str) -> str:
        """host's PostgreSQL log file, made writable by the postgres user so
        that a hook's `pg_ctl start -l FILE` appends to the lab's log."""
        inst = self.pg_instance(host)
        if not os.path.exists(inst.logfile):
            open(inst.logfile, "a").close()
        pw = pwd.getpwnam(PG_OS_USER)
        os.chown(inst.logfile, pw.pw_uid, pw.pw_gid)
        return inst.logfile

    # ---- failover cluster and client writer (tests/system/test_failover.py)
    # The colocated layout of the failover design: lab host hN runs pgvigil
    # peer N and PostgreSQL backend N (h1 the primary, the others streaming
    # standbys), an optional witness host runs a peer only, and 'client'
    # writes through the VIP.  Other helpers may add their own blocks below.

    FO_TABLE = "fo_rows"
    FO_PORT = 5432

    def add_colocated_cluster(self, backends: int = 2, witness: bool = True,
                              port: int = FO_PORT, sync_standby: str | None = None,
                              timeout: float = 60.0) -> dict:
        """Hosts h1..hB at peer_addr(1..B), each with PostgreSQL backend i:
        h1 the primary, the others streaming standbys of it (slot = host
        name), all listening on every address (so the VIP reaches them) with
        max_connections 100 and the table fo_rows (id bigint primary key, srv
        text: the cluster_name, i.e. the host, that inserted it).  With
        witness, host h{B+1} (a peer, no backend).  And 'client' at
        client_addr().  sync_standby: a standby host named in h1's
        synchronous_standby_names, set after the base backups so that no
        standby inherits it.  Returns the layout: {"peers": [(id, host)],
        "backends": [(id, host)], "witness": id or None, "port": port}."""
        self._check_live()
        if not 1 <= backends <= 8 or backends + int(witness) > 9:
            raise LabError("1..8 backends, at most 9 hosts with the witness")
        npeers = backends + int(witness)
        for i in range(1, npeers + 1):
            self.add_host(f"h{i}", *peer_addr(i))
        self.add_host("client", *client_addr())
        self.add_postgres_primary("h1", port=port, timeout=timeout)
        # postgresql.auto.conf is read after pgvlab.conf; pg_basebackup copies it.
        self.psql("h1", "ALTER SYSTEM SET listen_addresses = '*'")
        self.psql("h1", "ALTER SYSTEM SET max_connections = 100")
        self.psql("h1", f"CREATE TABLE {self.FO_TABLE} (id bigint PRIMARY KEY, "
                        "srv text NOT NULL DEFAULT current_setting('cluster_name'), "
                        "at timestamptz NOT NULL DEFAULT clock_timestamp())")
        self.stop_postgres("h1")
        self.start_postgres("h1", timeout)
        for i in range(2, backends + 1):
            self.add_postgres_standby(f"h{i}", "h1", port=port, timeout=timeout)
        if sync_standby:
            self.psql("h1", f"ALTER SYSTEM SET synchronous_standby_names = '{sync_standby}'")
            self.psql("h1", "SELECT pg_reload_conf()")
            deadline = time.monotonic() + timeout
            while self.psql("h1", "SELECT sync_state FROM pg_stat_replication "
                                  f"WHERE application_name = '{sync_standby}'") != "sync":
                if time.monotonic() >= deadline:
                    raise LabError(f"{sync_standby} not a synchronous standby after {timeout}s")
                time.sleep(0.1)
        for i in range(1, backends + 1):
            self.pg_log_for_hooks(f"h{i}")
        return {"peers": [(i, f"h{i}") for i in range(1, npeers + 1)],
                "backends": [(i, f"h{i}") for i in range(1, backends + 1)],
                "witness": npeers if witness else None, "port": port}

    def colocated_config(self, layout: dict, sections: dict | None = None,
                         hooks: dict | None = None, extra_sections: str = "") -> str:
        """The pgvigil.conf of a layout from add_colocated_cluster(): every
        peer, every backend with `peer = N` and its data_directory, the
        witness flagged.  sections: {"failover": {key: value}, "vip": {...},
        ...} rendered as INI sections in that order; hooks: the [hooks]
        settings."""
        text = self.pgvigil_config(layout["peers"], layout["backends"], hooks=hooks)
        w = layout.get("witness")
        if w:
            text = text.replace(f"[peer.{w}]\n", f"[peer.{w}]\nwitness = yes\n")
        for i, h in layout["backends"]:
            text = text.replace(f"[backend.{i}]\n", f"[backend.{i}]\npeer = {i}\n"
                                f"data_directory = {self.pg_instance(h).datadir}\n")
        for name, kv in (sections or {}).items():
            text += f"\n[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items())
        if extra_sections:
            text += "\n" + extra_sections.strip("\n") + "\n"
        return text

    # A PostgreSQL client in pure Python (the lab's interpreter has no
    # driver): trust authentication, one simple query per connection.
    PG_CLIENT_PY = r'''
import socket, struct, sys

def pg_query(host, port, sql, timeout, user="postgres", db="postgres"):
    """Connect, authenticate (trust), run one simple query; the rows (lists
    of str/None). RuntimeError("<SQLSTATE> <message>") on an ErrorResponse,
    OSError on a socket problem."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.settimeout(timeout)
        body = struct.pack("!i", 196608) + b"user\0" + user.encode() + b"\0database\0" + \
            db.encode() + b"\0application_name\0pgvlab-writer\0\0"
        s.sendall(struct.pack("!i", len(body) + 4) + body)
        buf = b""

        def msg():
            nonlocal buf
            while True:
                if len(buf) >= 5:
                    n = struct.unpack("!i", buf[1:5])[0]
                    if len(buf) >= n + 1:
                        t, m = buf[0:1], buf[5:n + 1]
                        buf = buf[n + 1:]
                        return t, m
                d = s.recv(65536)
                if not d:
                    raise OSError("connection closed")
                buf += d

        def err(m):
            f = {}
            for part in m.split(b"\0"):
                if part:
                    f[part[:1]] = part[1:].decode(errors="replace")
            return RuntimeError(f"{f.get(b'C', '?')} {f.get(b'M', '')}")

        while True:
            t, m = msg()
            if t == b"R":
                if struct.unpack("!i", m[:4])[0] != 0:
                    raise RuntimeError("auth: only trust is supported")
            elif t == b"E":
                raise err(m)
            elif t == b"Z":
                break
        q = sql.encode() + b"\0"
        s.sendall(b"Q" + struct.pack("!i", len(q) + 4) + q)
        rows, error, done = [], None, False
        while True:
            t, m = msg()
            if t == b"D":
                n = struct.unpack("!h", m[:2])[0]
                off, row = 2, []
                for _ in range(n):
                    ln = struct.unpack("!i", m[off:off + 4])[0]
                    off += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(m[off:off + ln].decode(errors="replace"))
                        off += ln
                rows.append(row)
            elif t == b"C":
                done = True
            elif t == b"E":
                error = err(m)
            elif t == b"Z":
                break
        if error is not None:
            raise error
        if not done:
            raise RuntimeError("no CommandComplete")
        try:
            s.sendall(b"X\0\0\0\4")
        except OSError:
            pass
        return rows
    finally:
        s.close()
'''

    # One line per attempt, written when it ends:
    #   "<t_start> <t_end> ok <n> <srv>"   /   "<t_start> <t_end> fail <n> <why>"
    # (CLOCK_MONOTONIC seconds, the clock of time.monotonic() here).
    WRITER_PY = PG_CLIENT_PY + r'''
import threading, time
host, port, table = sys.argv[1], int(sys.argv[2]), sys.argv[3]
period, tmo, maxsec = float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
lock = threading.Lock()

def attempt(n, t0):
    try:
        rows = pg_query(host, port, "INSERT INTO %s (id) VALUES (%d) RETURNING srv" % (table, n), tmo)
        res = "ok %d %s" % (n, rows[0][0] if rows and rows[0] and rows[0][0] else "?")
    except RuntimeError as e:
        res = "fail %d sql:%s" % (n, str(e).replace(" ", "_")[:100])
    except socket.timeout:
        res = "fail %d timeout" % n
    except OSError as e:
        res = "fail %d %s" % (n, (getattr(e, "strerror", None) or str(e)).replace(" ", "_")[:60])
    except Exception as e:
        res = "fail %d %s" % (n, type(e).__name__)
    with lock:
        sys.stdout.write("%.6f %.6f %s\n" % (t0, time.monotonic(), res))
        sys.stdout.flush()

print("ready", flush=True)
start = time.monotonic()
end, nxt, n = start + maxsec, start, 0
while True:
    now = time.monotonic()
    if now >= end:
        break
    if now >= nxt:
        n += 1
        threading.Thread(target=attempt, args=(n, now), daemon=True).start()
        nxt += period
        if nxt < now:
            nxt = now + period
    time.sleep(max(0.0, min(nxt, end) - time.monotonic()))
time.sleep(tmo + 1)
'''

    class Writer:
        """A client writer (Lab.start_writer): every `period` s a new
        connection INSERTs the next number into the table through `target`;
        each attempt is bounded by `attempt_timeout`.  Results are read from
        its output file; stop() ends it by pid."""

        def __init__(self, lab, host, target, port, table, period, attempt_timeout, maxsec):
            self.lab, self.host, self.target, self.port = lab, host, target, port
            self.table, self.period, self.attempt_timeout = table, period, attempt_timeout
            self.path = os.path.join(lab.workdir, f"writer.{time.monotonic_ns()}.out")
            with open(self.path, "wb") as f:
                self.proc = lab.popen(host, ["/usr/bin/python3", "-c", Lab.WRITER_PY, target,
                                             str(port), table, str(period), str(attempt_timeout),
                                             str(maxsec)], stdout=f, stderr=f, kind="writer")
            deadline = time.monotonic() + 10
            while "ready" not in self.lines():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise LabError(f"writer on {host} did not start: {self.lines()[-5:]}")
                time.sleep(0.01)

        def lines(self) -> list[str]:
            try:
                with open(self.path, errors="replace") as f:
                    return f.read().splitlines()
            except FileNotFoundError:
                return []

        def results(self) -> list[tuple]:
            """[(t_start, t_end, ok, n, srv or why)] in the order they ended."""
            out = []
            for ln in self.lines():
                f = ln.split(None, 4)
                if len(f) == 5 and f[2] in ("ok", "fail"):
                    try:
                        out.append((float(f[0]), float(f[1]), f[2] == "ok", int(f[3]), f[4]))
                    except ValueError:
                        continue
            return out

        def acked(self) -> dict:
            """{n: srv} of every acknowledged INSERT."""
            return {n: w for ts, te, ok, n, w in self.results() if ok}

        def acks_after(self, t: float, srv: str | None = None) -> list[tuple]:
            """Acknowledged attempts that started at or after t (by srv)."""
            return [r for r in self.results()
                    if r[2] and r[0] >= t and (srv is None or r[4] == srv)]

        def wait_acks(self, count: int, timeout: float, after: float | None = None,
                      srv: str | None = None) -> list[tuple]:
            """Wait (bounded) for `count` acknowledged attempts started after
            `after` (default now), by srv if given."""
            after = time.monotonic() if after is None else after
            deadline = time.monotonic() + timeout
            while True:
                got = self.acks_after(after, srv)
                if len(got) >= count:
                    return got
                if self.proc.poll() is not None or time.monotonic() >= deadline:
                    raise AssertionError(
                        f"writer: {len(got)} of {count} acknowledged INSERTs through "
                        f"{self.target}{' by ' + srv if srv else ''} within {timeout}s; "
                        f"failures: {self.failures(after)}; last lines: {self.lines()[-3:]}")
                time.sleep(0.05)

        def failures(self, after: float = 0.0) -> dict:
            """{reason: count} of failed attempts started at or after `after`."""
            why = {}
            for ts, te, ok, n, w in self.results():
                if not ok and ts >= after:
                    why[w[:60]] = why.get(w[:60], 0) + 1
            return why

        def write_gap(self, after: float, before: float | None = None) -> float | None:
            """Longest time between two consecutive acknowledgements (by
            t_end) in [after, before]: the writes' outage; None with fewer
            than two."""
            ends = sorted(te for ts, te, ok, n, w in self.results()
                          if ok and te >= after and (before is None or te <= before))
            if len(ends) < 2:
                return None
            return max(b - a for a, b in zip(ends, ends[1:]))

        def stop(self) -> None:
            if self.proc.pid in self.lab._procs:
                self.lab.stop(self.proc, signal.SIGTERM, 5.0)

    def start_writer(self, target: str, port: int = FO_PORT, table: str = FO_TABLE,
                     period: float = 0.05, attempt_timeout: float = 3.0,
                     maxsec: float = 300.0, host: str = "client") -> "Lab.Writer":
        """Start a Writer in host's namespace aimed at target:port (the VIP)."""
        self._check_live()
        return Lab.Writer(self, host, target, port, table, period, attempt_timeout, maxsec)

    def failover_hooks(self) -> dict:
        """[failover] command lines of the shipped hook scripts (those of
        their header comments), each called through a wrapper in
        <workdir>/hk that adds the lab's options: the ssh stand-in, the term
        records per peer (<workdir>/hookstate/<peer id>), the lab's
        PostgreSQL log of the backend, the replication user; and the lab's
        STONITH tests/lab/fence-backend-lab as fence_command. Used by the
        failover system tests, the demo and the failover bench."""
        self._check_live()
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
        scripts = os.path.join(repo, "hooks", "scripts")
        fence = os.path.join(repo, "tests", "lab", "fence-backend-lab")
        wd = self.workdir
        ssh = self.ssh_shim()
        hk = os.path.join(wd, "hk")
        os.makedirs(hk, exist_ok=True)
        common = f'--state-dir "{wd}/hookstate/$PGVIGIL_PEER_ID"'
        standby = (f'{common} --ssh-command {ssh} --pg-log "{wd}/pglog/h$PGVIGIL_NODE_ID.log" '
                   "--repl-user replicator")
        for name, script, extra in (("promote", "pgvigil-promote", common),
                                    ("stop", "pgvigil-stop", ""),
                                    ("follow", "pgvigil-follow", standby),
                                    ("rejoin", "pgvigil-rejoin", standby)):
            path = os.path.join(hk, name)
            with open(path, "w") as f:
                f.write(f'#!/bin/sh\nexec {scripts}/{script} "$@" {extra}\n')
            os.chmod(path, 0o755)
        standby_args = ("--host %h --port %p --data %D --id %d --primary-host %H "
                        "--primary-port %r --term %T --ssh postgres@%h")
        return {
            "failover_command": f"{hk}/promote --host %H --port %r --id %m --term %T",
            "stop_command": f"{hk}/stop --data %D --id %d",
            "follow_primary_command": f"{hk}/follow {standby_args}",
            "fence_command": f"{fence} {wd} %d %h %D %T",
            "rejoin_command": f"{hk}/rejoin {standby_args}",
        }

    def table_ids(self, host: str, table: str = FO_TABLE) -> set[int]:
        """Every id in host's table (psql in host's namespace)."""
        out = self.psql(host, f"SELECT id FROM {table}", timeout=30)
        return {int(x) for x in out.split()} if out else set()
