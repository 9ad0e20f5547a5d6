"""System tests of the daemon's life under a service manager: the
sd_notify protocol (READY, STATUS, RELOADING, STOPPING, the watchdog
keep-alive) through a NOTIFY_SOCKET the test binds, `pgvigil
--release-vip` (the unit's ExecStopPost) after a kill -9, and the shipped
systemd unit.

The notification socket is a path in the lab's workdir (a filesystem
Unix socket: reachable from any network namespace); the daemon runs in a
lab namespace like everywhere else.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import pgvlab
from test_vip import BOOT_BOUND, PROBE_TIMEOUT, VIP4, VipCluster

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "etc" / "pgvigil.service"
IP = pgvlab.IP


def wait_for(what, timeout, fn, period=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what() if callable(what) else what}: not within {timeout}s")
        time.sleep(period)


class NotifyListener:
    """The service manager's end: a datagram socket, each message recorded
    as (monotonic time, {key: value}, raw text). on_ready(msg) is called
    from the receiving thread when a message with READY=1 arrives, before
    the next datagram is read."""

    def __init__(self, path, on_ready=None):
        self.path = path
        self.on_ready = on_ready
        self.msgs = []
        self.ready_checks = []
        self._lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode(errors="replace")
            kv = dict(ln.split("=", 1) for ln in text.split("\n") if "=" in ln)
            if kv.get("READY") == "1" and self.on_ready:
                self.ready_checks.append(self.on_ready(kv))
            with self._lock:
                self.msgs.append((time.monotonic(), kv, text))

    def messages(self, key=None, since=0.0):
        with self._lock:
            return [(t, kv) for t, kv, _ in self.msgs
                    if t >= since and (key is None or key in kv)]

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def one_peer_of_three(lab, hooks=None):
    for i in (1, 2, 3):
        lab.add_host(f"gw{i}", *pgvlab.peer_addr(i))
    return lab.pgvigil_config([(1, "gw1"), (2, "gw2"), (3, "gw3")], hooks=hooks)


# --------------------------------------------------------------------------
# 1. the notification protocol

def test_notify_ready_after_control_socket_watchdog_reload_stop(lab, pgvigil_bin):
    env_out = os.path.join(lab.workdir, "hook-env.out")
    conf = one_peer_of_three(lab, hooks={"notify_command": f"env > {env_out}.%e"})
    sock_path = lab.pgvigil_socket("gw1")

    def control_answers(kv):
        # Called the moment READY=1 arrives: the control socket must answer now.
        return pgvlab.control_status(sock_path, timeout=2.0) is not None

    nl = NotifyListener(os.path.join(lab.workdir, "notify.sock"), control_answers)
    try:
        pv = lab.start_pgvigil("gw1", pgvigil_bin, conf,
                               env={"NOTIFY_SOCKET": nl.path, "WATCHDOG_USEC": "1000000"})
        pv.wait_log(r"event=daemon-started peer=1 ")
        wait_for("READY=1", 10, lambda: nl.messages("READY"))
        first_ready = nl.messages("READY")[0]
        # READY=1 came once start-up was done: the control socket answered at
        # that moment, and nothing said READY before.
        assert nl.ready_checks[:1] == [True], nl.ready_checks
        assert "STATUS" in first_ready[1] and "peer 1" in first_ready[1]["STATUS"], first_ready
        # The keep-alive: WATCHDOG=1 at half of WATCHDOG_USEC, from the loop.
        t0 = time.monotonic()
        wait_for(lambda: f"3 WATCHDOG=1 (got {nl.messages('WATCHDOG', t0)})", 8,
                 lambda: len(nl.messages("WATCHDOG", t0)) >= 3)
        assert all(kv["WATCHDOG"] == "1" for _, kv in nl.messages("WATCHDOG"))
        assert nl.messages("WATCHDOG")[0][0] >= first_ready[0]

        # A stalled loop stops feeding it (that is what the watchdog is for).
        pv.signal(signal.SIGSTOP)
        try:
            time.sleep(0.3)     # a feed already on its way may still land
            t_stop = time.monotonic()
            time.sleep(2.0)
            assert nl.messages("WATCHDOG", t_stop) == [], "a stopped daemon fed the watchdog"
        finally:
            pv.signal(signal.SIGCONT)
        t_cont = time.monotonic()
        wait_for("WATCHDOG=1 after SIGCONT", 8, lambda: nl.messages("WATCHDOG", t_cont))

        # Reload: RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
        t1 = time.monotonic()
        mark = pv.mark()
        pv.signal(signal.SIGHUP)
        pv.wait_log(r"event=config-reloaded ", since=mark)
        wait_for("READY=1 after the reload", 10, lambda: nl.messages("READY", t1))
        rel = nl.messages("RELOADING", t1)
        assert len(rel) == 1 and rel[0][1]["RELOADING"] == "1", rel
        mono = int(rel[0][1]["MONOTONIC_USEC"])
        now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert 0 < now_us - mono < 60_000_000, (mono, now_us)
        assert rel[0][0] <= nl.messages("READY", t1)[0][0]

        # Stop: STOPPING=1, then the daemon exits 0.
        t2 = time.monotonic()
        assert pv.stop() == 0
        stopping = nl.messages("STOPPING", t2)
        assert [kv["STOPPING"] for _, kv in stopping] == ["1"], nl.messages(since=t2)

        # Hooks never see the notification socket (nor the watchdog settings).
        wait_for("the notify hook's environment", 10,
                 lambda: os.path.exists(env_out + ".daemon-started"))
        for f in Path(lab.workdir).glob("hook-env.out.*"):
            text = f.read_text()
            assert "PGVIGIL_HOOK=notify" in text, text
            for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                assert var not in text, f"{var} in {f.name}:\n{text}"
    finally:
        nl.close()


def test_notify_watchdog_pid_of_another_process_is_not_fed(lab, pgvigil_bin):
    conf = one_peer_of_three(lab)
    nl = NotifyListener(os.path.join(lab.workdir, "notify.sock"))
    try:
        pv = lab.start_pgvigil("gw1", pgvigil_bin, conf,
                               env={"NOTIFY_SOCKET": nl.path, "WATCHDOG_USEC": "400000",
                                    "WATCHDOG_PID": "1"})
        wait_for("READY=1", 10, lambda: nl.messages("READY"))
        t0 = time.monotonic()
        time.sleep(1.5)
        assert nl.messages("WATCHDOG") == [], nl.messages()
        assert pv.alive()
        assert pv.stop() == 0
        assert nl.messages("STOPPING", t0)
    finally:
        nl.close()


def test_without_notify_socket_the_daemon_runs_as_before(lab, pgvigil_bin):
    conf = one_peer_of_three(lab)
    pv = lab.start_pgvigil("gw1", pgvigil_bin, conf, env={"WATCHDOG_USEC": "100000"})
    pv.wait_log(r"event=daemon-started peer=1 ")
    assert "service manager" not in pv.log_text()
    assert pv.stop() == 0


# --------------------------------------------------------------------------
# 2. --release-vip: what ExecStopPost runs after a crash

def test_release_vip_after_kill_9_removes_only_the_tagged_vip(lab, pgvigil_bin):
    cl = VipCluster(lab, pgvigil_bin)
    cl.start_all()
    h, _ = cl.wait_holder(BOOT_BOUND + PROBE_TIMEOUT + 3)
    host = cl.hosts[h]
    cl.kill(h)
    assert cl.vip_line(h) is not None, "the kernel dropped the VIP of a killed daemon?"
    # Another address, not tagged, on the same interface: not ours to remove.
    other = "192.0.2.201"
    lab.run(host, [IP, "addr", "add", f"{other}/32", "dev", "eth0"], check=True, timeout=10)
    conf = cl.pv[h].conf_path

    r = lab.run(host, [pgvigil_bin, "--release-vip", "-c", conf], timeout=20)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert f"event=vip-purged vip={VIP4} " in r.stderr, r.stderr
    assert cl.vip_line(h) is None, cl.addr_lines(h)
    assert any(f"inet {other}/32" in ln for ln in cl.addr_lines(h)), cl.addr_lines(h)

    # Nothing left to do: still exit 0, and an untagged copy of the same
    # address (someone else's, added by hand) stays.
    lab.run(host, [IP, "addr", "add", f"{VIP4}/32", "dev", "eth0"], check=True, timeout=10)
    r = lab.run(host, [pgvigil_bin, "--release-vip", "-c", conf], timeout=20)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert "vip-purged" not in r.stderr, r.stderr
    assert cl.vip_line(h) is not None, "an address not tagged as pgvigil's was removed"

    # A broken configuration is an error, not a silent success.
    bad = os.path.join(lab.workdir, "bad.conf")
    Path(bad).write_text("[cluster]\nname = x\n")
    r = lab.run(host, [pgvigil_bin, "--release-vip", "-c", bad], timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr)


# --------------------------------------------------------------------------
# 3. the systemd unit

REQUIRED_UNIT = {
    ("Service", "Type"): "notify",
    ("Service", "NotifyAccess"): "main",
    ("Service", "WatchdogSec"): "5",
    ("Service", "Restart"): "on-failure",
    ("Service", "User"): "pgvigil",
    ("Service", "AmbientCapabilities"): "CAP_NET_ADMIN CAP_NET_RAW",
    ("Service", "CapabilityBoundingSet"): "CAP_NET_ADMIN CAP_NET_RAW",
    ("Service", "NoNewPrivileges"): "yes",
    ("Service", "ProtectSystem"): "strict",
    ("Service", "StateDirectory"): "pgvigil",
}


def parse_unit(text):
    out, sect = {}, None
    for ln in text.splitlines():
        ln = ln.strip()
        if not ln or ln[0] in "#;":
            continue
        m = re.fullmatch(r"\[(\w+)\]", ln)
        if m:
            sect = m.group(1)
            continue
        k, _, v = ln.partition("=")
        out.setdefault((sect, k.strip()), []).append(v.strip())
    return out


def test_unit_file_has_the_required_settings():
    u = parse_unit(UNIT.read_text())
    for key, want in REQUIRED_UNIT.items():
        assert u.get(key) == [want], f"{key}: {u.get(key)} (want {want})"
    start = u[("Service", "ExecStart")][0]
    assert start.startswith("@SBINDIR@/pgvigil ") or start.startswith("/"), start
    assert "-c" in start.split()
    stop_post = u[("Service", "ExecStopPost")][0]
    assert "--release-vip" in stop_post and "-c" in stop_post.split(), stop_post
    assert u.get(("Service", "ReadWritePaths")) == ["@LOCALSTATEDIR@/lib/pgvigil"], u
    # No privilege besides the two capabilities.
    assert ("Service", "PermissionsStartOnly") not in u
    assert not any(v.startswith("+") or v.startswith("!")
                   for k, vs in u.items() if k[1].startswith("Exec") for v in vs), u


def test_unit_file_passes_systemd_analyze_verify(tmp_path, pgvigil_bin):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze not found (Debian package systemd): "
                    "install it, it is in tools/install-deps", pytrace=False)
    # The installed form: paths substituted as make install does.
    text = UNIT.read_text().replace("@SBINDIR@", os.path.dirname(os.path.abspath(pgvigil_bin))) \
                           .replace("@SYSCONFDIR@", "/etc").replace("@LOCALSTATEDIR@", "/var")
    unit = tmp_path / "pgvigil.service"
    unit.write_text(text)
    r = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"))
    lines = [ln for ln in (r.stdout + r.stderr).splitlines()
             if ln.strip() and "pgvigil.service" in ln]
    assert r.returncode == 0 and not lines, f"exit {r.returncode}:\n{r.stdout}{r.stderr}"
